//! The leadflow config file (TOML): the waterfall's sections (`[lookup]`,
//! `[cache]`, `[breaker]`, `[budget]`, `[[providers]]`), the sandbox's
//! (`[sandbox]`) and the fleet's (`[redis]`). Typed, with unknown keys rejected by name; each section's
//! defaults live with its type.

use std::path::Path;

use leadflow_fleet::RedisConfig;
use leadflow_sandbox::SandboxConfig;
use leadflow_waterfall::WaterfallConfig;
use leadflow_waterfall::config::{
    BreakerConfig, BudgetConfig, CacheConfig, LookupConfig, OrderConfig, ProviderConfig,
};
use serde::Deserialize;

use crate::error::{Error, Result};

/// A provider `base_url` that means "answered by the in-process sandbox".
pub const SANDBOX_URL: &str = "sandbox";

/// A whole leadflow config file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeadflowConfig {
    /// How leads are looked up.
    pub lookup: LookupConfig,
    /// The lookup cache.
    pub cache: CacheConfig,
    /// When a failing provider is skipped.
    pub breaker: BreakerConfig,
    /// Caps on spend.
    pub budget: BudgetConfig,
    /// The order providers are asked in: by priority, or adaptive.
    pub waterfall: OrderConfig,
    /// How the provider sandbox answers (for providers with `base_url = "sandbox"`).
    pub sandbox: SandboxConfig,
    /// Where limits, cache, breakers and budget are shared with other
    /// workers; without a URL (here or `--redis`/`REDIS_URL`) they are
    /// kept in memory.
    pub redis: RedisConfig,
    /// Line type and carrier of each lead's final phone.
    pub line_type: LineTypeConfig,
    /// The providers, tried by `priority` (lowest first).
    pub providers: Vec<ProviderConfig>,
    /// `leadflow serve`: its API keys and limits.
    pub api: ApiConfig,
    /// `leadflow forget`: how its receipts name the subject.
    pub privacy: PrivacyConfig,
    /// How long each table's day partitions are kept (`leadflow retain`).
    pub retention: RetentionConfig,
}

/// `[privacy]`: erasure receipts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// The environment variable holding the key of the HMAC-SHA256 that
    /// names each subject in an erasure receipt (never the subject in
    /// clear): an auditor with the key checks a receipt against a request.
    pub receipt_key_env: Option<String>,
}

/// `[retention]`: days of each table kept, counted back from today (UTC);
/// a `dt=` partition older than that is dropped. Absent: kept forever.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    pub enriched_days: Option<u32>,
    pub usage_days: Option<u32>,
    /// Rejects hold raw input lines: keep them shortest.
    pub rejects_days: Option<u32>,
}

impl RetentionConfig {
    /// The days `table` keeps, if it is limited.
    pub fn days(&self, table: &str) -> Option<u32> {
        match table {
            "enriched_leads" => self.enriched_days,
            "provider_usage" => self.usage_days,
            "rejects" => self.rejects_days,
            _ => None,
        }
    }

    fn check(&self) -> std::result::Result<(), String> {
        for (key, days) in [
            ("enriched_days", self.enriched_days),
            ("usage_days", self.usage_days),
            ("rejects_days", self.rejects_days),
        ] {
            if days == Some(0) {
                return Err(format!(
                    "[retention] {key} = 0 would drop today's rows as they are written; \
                     give at least 1 (or leave it out to keep them)"
                ));
            }
        }
        Ok(())
    }
}

/// `[api]`: what `leadflow serve` accepts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// The keys (`[[api.keys]]`), each stored as its SHA-256, never in clear.
    pub keys: Vec<ApiKeyConfig>,
    /// Leads one `POST /v1/lookups` may carry.
    pub max_lookup_leads: usize,
    /// Bytes one request body may hold.
    pub max_body_bytes: usize,
    /// How often the leads and calls served are committed to the output, ms.
    pub commit_ms: u64,
    /// Leads one `POST /v1/jobs` may carry.
    pub max_job_leads: u64,
    /// Lets jobs' webhooks reach loopback, private and link-local
    /// addresses (tests, a receiver on the same network); off, such a
    /// `webhook_url` is refused.
    pub allow_private_webhooks: bool,
    /// Who may watch the console (`GET /`) and its events: `"key"` (any
    /// key, which sees its organization's jobs) or `"open"` (anyone, every
    /// organization's jobs).
    pub console: ConsoleAccess,
}

/// `[api] console`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleAccess {
    #[default]
    Key,
    Open,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            max_lookup_leads: 100,
            max_body_bytes: 1 << 20,
            commit_ms: 1000,
            max_job_leads: 1_000_000,
            allow_private_webhooks: false,
            console: ConsoleAccess::Key,
        }
    }
}

/// `[[api.keys]]`: one API key (`leadflow keys new` prints the block).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who holds it, named in logs and in `rejects`' `source`.
    pub name: String,
    /// The hex SHA-256 of the key.
    pub sha256: String,
    /// Every lead and provider call this key causes carries it.
    pub organization_id: String,
    /// The highest `user_tier` a lead sent with this key may claim.
    #[serde(default)]
    pub max_user_tier: Option<i32>,
    /// Requests a minute this key may make (sliding window), shared by
    /// every server on the same Redis; past it, 429.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// The environment variable holding the secret this key's job
    /// webhooks are signed with (Standard Webhooks: `whsec_` and base64).
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    /// May request erasures (`POST /v1/erasures`), of anyone's rows.
    #[serde(default)]
    pub admin: bool,
}

impl ApiConfig {
    fn check(&self) -> std::result::Result<(), String> {
        let mut names = std::collections::HashSet::new();
        let mut hashes = std::collections::HashSet::new();
        for key in &self.keys {
            let at = format!("[[api.keys]] name = {:?}", key.name);
            if key.name.trim().is_empty() {
                return Err("[[api.keys]]: name is empty".into());
            }
            if !names.insert(key.name.as_str()) {
                return Err(format!("{at}: two keys have this name"));
            }
            let hex = key.sha256.to_ascii_lowercase();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "{at}: sha256 must be 64 hex digits, the SHA-256 of the key \
                     (`leadflow keys new` prints it)"
                ));
            }
            if !hashes.insert(hex) {
                return Err(format!("{at}: another key has the same sha256"));
            }
            if key.organization_id.trim().is_empty() {
                return Err(format!("{at}: organization_id is empty"));
            }
            if key.requests_per_minute == Some(0) {
                return Err(format!(
                    "{at}: requests_per_minute = 0 would refuse every request; leave it out for no limit"
                ));
            }
        }
        if !(1..=10_000).contains(&self.max_lookup_leads) {
            return Err("[api] max_lookup_leads must be between 1 and 10000".into());
        }
        if self.max_body_bytes < 1024 {
            return Err("[api] max_body_bytes must be at least 1024".into());
        }
        if !(10..=60_000).contains(&self.commit_ms) {
            return Err("[api] commit_ms must be between 10 and 60000".into());
        }
        if self.max_job_leads == 0 {
            return Err("[api] max_job_leads = 0 would refuse every job".into());
        }
        Ok(())
    }
}

/// `[line_type]`: line type and carrier of each lead's final phone.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LineTypeConfig {
    /// Adds `line_type`, `carrier_name` and `line_type_status` (why a line
    /// type is NULL) to `enriched_leads`: the line-type
    /// providers (`kind = "twilio"`) are asked about each lead's final phone
    /// (its own valid one, else the one found), a paid call per number,
    /// cached like lookups and written to `provider_usage`. Off by default.
    pub enabled: bool,
}

impl LeadflowConfig {
    /// Reads and checks a config file; errors name the file and the key.
    pub fn load(path: &Path) -> Result<Self> {
        let at = |e: String| Error::Usage(format!("config {}: {e}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
        Self::from_toml(&text).map_err(|e| at(e.to_string()))
    }

    /// Parses and checks a config file's text.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| Error::Usage(e.to_string()))?;
        // Sandbox providers are checked as if served from a real address.
        config
            .waterfall(|name| format!("http://127.0.0.1/{name}"))
            .check()?;
        config.redis.check().map_err(Error::Usage)?;
        config.sandbox.check().map_err(Error::Usage)?;
        config.api.check().map_err(Error::Usage)?;
        config.retention.check().map_err(Error::Usage)?;
        if config.line_type.enabled && config.providers.iter().all(|p| p.kind.finds_phones()) {
            return Err(Error::Usage(
                "[line_type] enabled = true, but no provider describes numbers: \
                 add a [[providers]] entry with kind = \"twilio\""
                    .into(),
            ));
        }
        Ok(config)
    }

    /// Whether any provider is answered by the in-process sandbox.
    /// The enrichment query as runs execute it: with `[line_type]` on,
    /// `query`'s rows get `line_type`, `carrier_name` and `line_type_status` of their final
    /// phone, so `query` must return `phone_valid`, `phone_e164` and
    /// `found_phone_e164` (the shipped one does).
    pub fn enrichment_query(&self, query: &str) -> String {
        if !self.line_type.enabled {
            return query.to_string();
        }
        // The query on lines of its own: a trailing `--` comment ends there.
        let query = query.trim_end().trim_end_matches(';').trim_end();
        format!(
            "SELECT * EXCLUDE (described),\n\
             \x20      described['line_type'] AS line_type,\n\
             \x20      described['carrier_name'] AS carrier_name,\n\
             \x20      described['status'] AS line_type_status\n\
             FROM (\n\
             \x20   SELECT *,\n\
             \x20          phone_line_type(CASE WHEN phone_valid THEN phone_e164 ELSE found_phone_e164 END,\n\
             \x20                          lead_id, organization_id) AS described\n\
             \x20   FROM (\n{query}\n) AS enriched\n\
             ) AS described_leads"
        )
    }

    /// A planning error of [`Self::enrichment_query`]'s query, saying what
    /// the `[line_type]` wrapper needs when it is on.
    pub fn explain_query_error(&self, e: Error) -> Error {
        match e {
            Error::Usage(msg) if self.line_type.enabled => Error::Usage(format!(
                "{msg} ([line_type] enabled = true describes each lead's final phone: the \
                 query must return phone_valid, phone_e164 and found_phone_e164, as \
                 queries/enrich.sql does)"
            )),
            e => e,
        }
    }

    pub fn uses_sandbox(&self) -> bool {
        self.providers.iter().any(is_sandboxed)
    }

    /// The waterfall's config, with each sandbox provider's `base_url`
    /// replaced by `sandbox_url(name)`.
    pub fn waterfall(&self, sandbox_url: impl Fn(&str) -> String) -> WaterfallConfig {
        let mut providers = self.providers.clone();
        for p in providers.iter_mut().filter(|p| is_sandboxed(p)) {
            p.base_url = sandbox_url(&p.name);
        }
        WaterfallConfig {
            lookup: self.lookup.clone(),
            cache: self.cache.clone(),
            breaker: self.breaker.clone(),
            budget: self.budget.clone(),
            order: self.waterfall.clone(),
            providers,
        }
    }
}

/// Whether `provider` is answered by the in-process sandbox.
pub fn is_sandboxed(provider: &ProviderConfig) -> bool {
    provider.base_url == SANDBOX_URL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_parses() {
        let c = LeadflowConfig::from_toml(include_str!("../../examples/leadflow.toml")).unwrap();
        assert!(c.uses_sandbox());
        let finders = c.providers.iter().filter(|p| p.kind.finds_phones());
        assert!(finders.count() >= 3);
    }

    #[test]
    fn line_types_need_a_provider_that_describes_numbers_and_wrap_the_query() {
        let err = LeadflowConfig::from_toml("[line_type]\nenabled = true")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[line_type]") && err.contains("twilio"),
            "{err}"
        );
        let c = LeadflowConfig::from_toml(include_str!("../../examples/leadflow.toml")).unwrap();
        assert!(c.line_type.enabled);
        // A trailing comment or `;` in the user's query cannot swallow the wrapper.
        let q = c.enrichment_query("SELECT * FROM leads -- the end\n;\n");
        assert!(
            q.contains("SELECT * FROM leads -- the end\n) AS enriched"),
            "{q}"
        );
        assert_eq!(LeadflowConfig::default().enrichment_query("x"), "x");
    }

    #[test]
    fn a_typo_is_named_in_every_section() {
        for (text, key) in [
            ("[sandbox]\nhit_rat = 0.5", "hit_rat"),
            (
                "[sandbox]\nhit_rate_by_country = { Germany = 0.5 }",
                "Germany",
            ),
            (
                "[sandbox.providers.orion]\nhit_rate_by_country = { DE = 1.5 }",
                "hit_rate_by_country.DE",
            ),
            (
                "[sandbox]\nemail_kind_factor = { free = -1 }",
                "email_kind_factor.free",
            ),
            ("[lookup]\nconcurency = 4", "concurency"),
            ("colour = 1", "colour"),
        ] {
            let err = LeadflowConfig::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn sandbox_providers_get_the_sandbox_address_and_others_keep_theirs() {
        let c = LeadflowConfig::from_toml(
            r#"
            [[providers]]
            name = "a"
            kind = "orion"
            priority = 1
            max_requests_per_hour = 10
            base_url = "sandbox"
            [[providers]]
            name = "b"
            kind = "astra"
            priority = 2
            max_requests_per_hour = 10
            base_url = "https://api.astra.example"
            "#,
        )
        .unwrap();
        let w = c.waterfall(|name| format!("http://127.0.0.1:9/{name}"));
        let urls: Vec<&str> = w.providers.iter().map(|p| p.base_url.as_str()).collect();
        assert_eq!(urls, ["http://127.0.0.1:9/a", "https://api.astra.example"]);
    }
}
