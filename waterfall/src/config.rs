//! The waterfall's config (the TOML sections it owns): providers, lookup
//! settings, cache, circuit breaker and budget. Typed, with unknown keys
//! rejected by name; defaults live here and only here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::template::Template;

/// The waterfall's part of a leadflow config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WaterfallConfig {
    /// How leads are looked up.
    pub lookup: LookupConfig,
    /// The lookup cache.
    pub cache: CacheConfig,
    /// When a failing provider is skipped.
    pub breaker: BreakerConfig,
    /// Caps on spend.
    pub budget: BudgetConfig,
    /// The order providers are asked in.
    #[serde(rename = "waterfall")]
    pub order: OrderConfig,
    /// The providers, tried by `priority` (lowest first).
    pub providers: Vec<ProviderConfig>,
}

/// `[waterfall]`: the order each lead's providers are asked in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderConfig {
    /// `"priority"`: by each provider's `priority`. `"adaptive"`: per lead,
    /// by expected cost to a hit, `cost_per_call / P(hit | segment) +
    /// cost_per_hit`, with P learned from history and as the run goes.
    pub order: Order,
    /// What a segment is made of: `country`, `email_kind` (free-mail,
    /// corporate, none), `user_tier`.
    pub segment_by: Vec<SegmentField>,
    /// Earlier outputs (a directory or `s3://…`) whose `provider_usage` and
    /// `enriched_leads` teach the estimates at start.
    pub history: Option<String>,
    /// Share of leads, 0–1, whose order samples the estimates (Thompson
    /// sampling) instead of using their means, so a provider that was bad
    /// before gets a chance to show it changed.
    pub explore_share: f64,
    /// Share of leads, 0–1, kept on the `priority` order to measure the
    /// saving (chosen by a hash of `lead_id`: the same leads on every rerun).
    pub ab_share: f64,
    /// A provider whose expected cost per hit for a lead is above this (USD)
    /// is not called for it (`skipped_value`).
    pub value_of_found_phone_usd: Option<f64>,
}

impl Default for OrderConfig {
    fn default() -> Self {
        Self {
            order: Order::Priority,
            segment_by: vec![
                SegmentField::Country,
                SegmentField::EmailKind,
                SegmentField::UserTier,
            ],
            history: None,
            explore_share: 0.05,
            ab_share: 0.0,
            value_of_found_phone_usd: None,
        }
    }
}

/// `[waterfall] order`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    #[default]
    Priority,
    Adaptive,
}

/// A lead property segments are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentField {
    /// The lead's `country`.
    Country,
    /// Free-mail, corporate or no email.
    EmailKind,
    /// The lead's `user_tier`.
    UserTier,
}

/// `[lookup]`: how each lead's waterfall runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LookupConfig {
    /// Leads looked up at the same time, across the whole process.
    pub concurrency: usize,
    /// Upper bound on one lead's whole waterfall, retries and waits included, in ms.
    pub deadline_ms: u64,
    /// Look leads up even when their own phone is already valid.
    pub lookup_when_phone_valid: bool,
    /// First retry delay after a `5xx`, timeout or connection error, in ms;
    /// doubles per retry, with full jitter.
    pub retry_base_ms: u64,
    /// Longest delay between two retries, in ms.
    pub retry_max_ms: u64,
    /// A `429` whose `Retry-After` is longer than this (ms) moves on to the
    /// next provider instead of waiting.
    pub max_retry_after_ms: u64,
    /// The window each provider's `max_requests_per_hour` is counted over,
    /// in seconds: an hour, unless a test wants seconds.
    pub rate_window_secs: u64,
}

impl Default for LookupConfig {
    fn default() -> Self {
        Self {
            concurrency: 256,
            deadline_ms: 30_000,
            lookup_when_phone_valid: false,
            retry_base_ms: 100,
            retry_max_ms: 5_000,
            max_retry_after_ms: 10_000,
            rate_window_secs: 3_600,
        }
    }
}

/// `[cache]`: answers kept so a lead is never paid for twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Consult and fill the cache.
    pub enabled: bool,
    /// How long a found phone is kept, in hours.
    pub ttl_hours: u64,
    /// How long a "no provider found one" answer is kept, in hours.
    pub miss_ttl_hours: u64,
    /// Most entries the in-memory cache holds; the oldest go first.
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl_hours: 30 * 24,
            miss_ttl_hours: 24,
            max_entries: 100_000,
        }
    }
}

/// `[breaker]`: a provider that failed `failures` times within `window_secs`
/// is skipped for `cooldown_secs`, then one probe call decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Failures (5xx, timeouts, connection errors, refused requests) that open the circuit.
    pub failures: u32,
    /// The window those failures are counted in, in seconds.
    pub window_secs: u64,
    /// How long an open circuit skips the provider, in seconds.
    pub cooldown_secs: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            window_secs: 60,
            cooldown_secs: 30,
        }
    }
}

/// `[budget]`: once spent, leads get `budget_exhausted` instead of calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// Most USD one run may spend on providers.
    pub per_run_usd: Option<f64>,
    /// Most USD spent on providers per UTC day (across every worker when
    /// the budget is kept in Redis).
    pub per_day_usd: Option<f64>,
    /// Most USD spent per UTC day on one `organization_id`'s leads.
    pub per_org_day_usd: Option<f64>,
}

/// The contract a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Orion Connect: `POST /v1/phone/find`, bearer token.
    Orion,
    /// Astra Dialer: `GET /lookup`, `X-Api-Key`.
    Astra,
    /// Nimbus Lookup: `POST /api/v2/enrich`, `X-Nimbus-Key`.
    Nimbus,
    /// Twilio Lookup v2: line type and carrier of a known number (`phone_line_type`).
    Twilio,
    /// Any JSON-over-HTTP provider, declared in the `http` table.
    Http,
}

impl ProviderKind {
    /// Whether the provider finds phones (`find_phone`) rather than describing them.
    pub fn finds_phones(self) -> bool {
        self != ProviderKind::Twilio
    }
}

/// `[[providers]]`: one paid provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Unique name; shows up in `found_by` and `provider_usage.provider`.
    /// Letters, digits, `_` and `-`.
    pub name: String,
    /// Which contract it speaks.
    pub kind: ProviderKind,
    /// Disabled providers are never called.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Order in the waterfall: lower is asked first.
    pub priority: i32,
    /// Calls allowed in any sliding hour, shared by every worker.
    pub max_requests_per_hour: u32,
    /// Leads whose `user_tier` is below this skip the provider.
    #[serde(default)]
    pub min_user_tier: i32,
    /// USD paid for every answered call, hit or miss.
    #[serde(default)]
    pub cost_per_call_usd: f64,
    /// USD paid on top for a call that returns a number.
    #[serde(default)]
    pub cost_per_hit_usd: f64,
    /// Where the provider lives, e.g. `https://api.orion.example` (the
    /// `leadflow` binary also takes `sandbox`: the in-process sandbox).
    pub base_url: String,
    /// Environment variable holding the API key (for Twilio: the Account SID
    /// or API key). The key itself is never read from this file.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Environment variable holding the secret paired with the key (Twilio's
    /// auth token or API secret).
    #[serde(default)]
    pub api_secret_env: Option<String>,
    /// Longest wait for one call, in ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries after a `429`, `5xx`, timeout or connection error.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The contract of a `kind = "http"` provider.
    #[serde(default)]
    pub http: Option<HttpContract>,
}

fn yes() -> bool {
    true
}

fn default_timeout_ms() -> u64 {
    5_000
}

fn default_retries() -> u32 {
    2
}

/// `[providers.http]`: a provider declared entirely in config. Templates may
/// use `{email}`, `{full_name}`, `{first_name}`, `{last_name}`,
/// `{company_domain}`, `{country}` and `{api_key}`; in `path` they are
/// URL-encoded, in `body` JSON-escaped (write `"{email}"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpContract {
    /// `GET` or `POST`.
    #[serde(default = "default_method")]
    pub method: HttpMethod,
    /// Path and query appended to `base_url`, e.g. `/lookup?email={email}`.
    pub path: String,
    /// Request headers, e.g. `{ Authorization = "Bearer {api_key}" }`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body template, sent with `Content-Type: application/json`.
    #[serde(default)]
    pub body: Option<String>,
    /// JSON pointer (RFC 6901) to the phone in the answer, e.g. `/data/phone`.
    pub phone_pointer: String,
    /// JSON pointer to the phone's ISO country, when the answer carries one.
    #[serde(default)]
    pub country_pointer: Option<String>,
    /// HTTP statuses that mean "no phone for this lead".
    #[serde(default)]
    pub miss_statuses: Vec<u16>,
    /// An answer whose value at this pointer equals `miss_equals` is a miss.
    #[serde(default)]
    pub miss_pointer: Option<String>,
    /// See `miss_pointer`.
    #[serde(default)]
    pub miss_equals: Option<serde_json::Value>,
}

fn default_method() -> HttpMethod {
    HttpMethod::Get
}

/// The HTTP methods a declared provider may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
}

impl WaterfallConfig {
    /// Parses and checks a config file's text.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// Checks what the types cannot: names, ranges, and that each kind has
    /// what it needs.
    pub fn check(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(msg));
        let (l, c, b) = (&self.lookup, &self.cache, &self.breaker);
        within("lookup.concurrency", l.concurrency as u64, 1, 100_000)?;
        within("lookup.deadline_ms", l.deadline_ms, 1, DAY_MS)?;
        within("lookup.retry_base_ms", l.retry_base_ms, 0, HOUR_MS)?;
        within("lookup.retry_max_ms", l.retry_max_ms, 0, HOUR_MS)?;
        within(
            "lookup.max_retry_after_ms",
            l.max_retry_after_ms,
            0,
            HOUR_MS,
        )?;
        within(
            "lookup.rate_window_secs",
            l.rate_window_secs,
            1,
            DAY_MS / 1_000,
        )?;
        within("cache.ttl_hours", c.ttl_hours, 0, TEN_YEARS_HOURS)?;
        within("cache.miss_ttl_hours", c.miss_ttl_hours, 0, TEN_YEARS_HOURS)?;
        within("cache.max_entries", c.max_entries as u64, 0, 1_000_000_000)?;
        within("breaker.failures", u64::from(b.failures), 1, 1_000_000)?;
        within("breaker.window_secs", b.window_secs, 1, WEEK_SECS)?;
        within("breaker.cooldown_secs", b.cooldown_secs, 0, WEEK_SECS)?;
        for (key, v) in [
            ("budget.per_run_usd", self.budget.per_run_usd),
            ("budget.per_day_usd", self.budget.per_day_usd),
            ("budget.per_org_day_usd", self.budget.per_org_day_usd),
        ] {
            if v.is_some_and(|v| !(0.0..=MAX_USD).contains(&v)) {
                return bad(format!("{key} must be a number from 0 to {MAX_USD}"));
            }
        }
        self.order.check()?;
        let mut names = std::collections::BTreeSet::new();
        for p in &self.providers {
            let at = format!("provider `{}`", p.name);
            if p.name.is_empty()
                || !p
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return bad(format!(
                    "{at}: name must be letters, digits, `_` or `-` (it appears in URLs and outputs)"
                ));
            }
            if !names.insert(p.name.as_str()) {
                return bad(format!("{at}: the name is used twice"));
            }
            for (key, v) in [
                ("cost_per_call_usd", p.cost_per_call_usd),
                ("cost_per_hit_usd", p.cost_per_hit_usd),
            ] {
                if !(0.0..1_000_000.0).contains(&v) {
                    return bad(format!("{at}: {key} must be a number ≥ 0"));
                }
            }
            within(&format!("{at}: timeout_ms"), p.timeout_ms, 1, HOUR_MS)?;
            within(&format!("{at}: retries"), u64::from(p.retries), 0, 100)?;
            match url::Url::parse(&p.base_url) {
                Err(e) => return bad(format!("{at}: base_url `{}`: {e}", p.base_url)),
                Ok(url) => {
                    if let Some(what) = url.host().and_then(|host| metadata_host(&host)) {
                        return bad(format!(
                            "{at}: base_url `{}` is {what}; a provider's API is never there, and the key would be sent to it",
                            p.base_url
                        ));
                    }
                }
            }
            match (p.kind, &p.http) {
                (ProviderKind::Http, None) => {
                    return bad(format!(
                        "{at}: kind = \"http\" needs a [providers.http] table"
                    ));
                }
                (ProviderKind::Http, Some(http)) => http.check(&at)?,
                (kind, Some(_)) => {
                    return bad(format!(
                        "{at}: a [providers.http] table only goes with kind = \"http\", not {kind:?}"
                    ));
                }
                (_, None) => {}
            }
        }
        Ok(())
    }
}

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;
const WEEK_SECS: u64 = 7 * 86_400;
const TEN_YEARS_HOURS: u64 = 10 * 366 * 24;
const MAX_USD: f64 = 1e9;

/// Checks that `key`'s value is in `min..=max`, naming it when not: every
/// number in the config has a range a person would use, so a typo cannot
/// overflow a timer or a semaphore.
fn within(key: &str, value: u64, min: u64, max: u64) -> Result<()> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{key} = {value} is out of range: it must be from {min} to {max}"
        )))
    }
}

impl OrderConfig {
    fn check(&self) -> Result<()> {
        let bad = |msg: &str| Err(Error::Config(format!("[waterfall] {msg}")));
        for (key, v) in [
            ("explore_share", self.explore_share),
            ("ab_share", self.ab_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(&format!("{key} = {v} must be a share from 0 to 1"));
            }
        }
        if self
            .value_of_found_phone_usd
            .is_some_and(|v| !(0.0..=MAX_USD).contains(&v))
        {
            return bad(&format!(
                "value_of_found_phone_usd must be a number from 0 to {MAX_USD}"
            ));
        }
        let mut fields = self.segment_by.clone();
        fields.sort_by_key(|f| *f as u8);
        fields.dedup();
        if fields.len() != self.segment_by.len() {
            return bad("segment_by names a field twice");
        }
        if self.order == Order::Priority {
            // Settings that only the adaptive order reads would be silently
            // ignored: a saving the operator expects and does not get.
            for (key, set) in [
                ("ab_share", self.ab_share > 0.0),
                ("history", self.history.is_some()),
                (
                    "value_of_found_phone_usd",
                    self.value_of_found_phone_usd.is_some(),
                ),
            ] {
                if set {
                    return bad(&format!(
                        "{key} is set, but order = \"priority\" never reads it; \
                         set order = \"adaptive\" or remove {key}"
                    ));
                }
            }
        }
        Ok(())
    }
}

impl HttpContract {
    fn check(&self, at: &str) -> Result<()> {
        Template::parse(&self.path).map_err(|e| Error::Config(format!("{at}: http.path: {e}")))?;
        if let Some(body) = &self.body {
            Template::parse(body).map_err(|e| Error::Config(format!("{at}: http.body: {e}")))?;
        }
        for (name, value) in &self.headers {
            Template::parse(value)
                .map_err(|e| Error::Config(format!("{at}: http.headers.{name}: {e}")))?;
        }
        for (key, pointer) in [
            ("phone_pointer", Some(&self.phone_pointer)),
            ("country_pointer", self.country_pointer.as_ref()),
            ("miss_pointer", self.miss_pointer.as_ref()),
        ] {
            if let Some(p) = pointer
                && !p.is_empty()
                && !p.starts_with('/')
            {
                return Err(Error::Config(format!(
                    "{at}: http.{key} `{p}` is not a JSON pointer (it starts with `/`, like `/data/phone`)"
                )));
            }
        }
        if self.miss_pointer.is_some() != self.miss_equals.is_some() {
            return Err(Error::Config(format!(
                "{at}: http.miss_pointer and http.miss_equals go together"
            )));
        }
        Ok(())
    }
}

/// What a host is when it is a link-local or cloud-metadata address, which
/// answer with the machine's own credentials. `url` has already read every
/// spelling of an IPv4 address (decimal, hex, octal, short forms) into one.
fn metadata_host(host: &url::Host<&str>) -> Option<&'static str> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let v4 = |ip: Ipv4Addr| {
        if ip.is_link_local() {
            Some("a link-local address (169.254.0.0/16, where cloud metadata services answer)")
        } else if ip == Ipv4Addr::new(100, 100, 100, 200) {
            Some("a cloud metadata address")
        } else {
            None
        }
    };
    match host {
        url::Host::Ipv4(ip) => v4(*ip),
        url::Host::Ipv6(ip) => {
            if let Some(mapped) = ip.to_ipv4() {
                // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d).
                if let Some(what) = v4(mapped) {
                    return Some(what);
                }
            }
            if ip.segments()[0] & 0xffc0 == 0xfe80 {
                Some("an IPv6 link-local address (fe80::/10)")
            } else if *ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Some("a cloud metadata address (fd00:ec2::254)")
            } else {
                None
            }
        }
        url::Host::Domain(name) => name
            .trim_end_matches('.')
            .eq_ignore_ascii_case("metadata.google.internal")
            .then_some("a cloud metadata host"),
    }
}

/// USD to micro-dollars, the unit of `DECIMAL(12,6)` money columns.
pub fn usd_to_micros(usd: f64) -> i64 {
    (usd * 1_000_000.0).round() as i64
}

/// µUSD as dollars, one rule everywhere money is shown (summaries, the
/// webhook, the report): whole cents from a dollar up (`$24.99`, rounded
/// half away from zero), and to a hundredth of a cent under a dollar
/// (`$0.0125`), where cents would round small calls away; less than half a hundredth of a cent is `$0.00`.
pub fn dollars(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    // In hundredths of a cent: under 10,000 is under a dollar, and 0 is
    // nothing worth a digit.
    let hundredths = (m + 50) / 100;
    if hundredths >= 10_000 || hundredths == 0 {
        let cents = (m + 5_000) / 10_000;
        format!("{sign}${}.{:02}", cents / 100, cents % 100)
    } else {
        format!("{sign}$0.{hundredths:04}")
    }
}

/// [`dollars`] of a computed amount (an expected cost): `unbounded` when
/// it is infinite (a provider that never hits).
pub fn usd_of_micros(micros: f64) -> String {
    if micros.is_finite() {
        dollars(micros.round() as i64)
    } else {
        "unbounded".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_cents_from_a_dollar_up_and_hundredths_of_a_cent_below() {
        let cases = [
            (0, "$0.00"),
            (40, "$0.00"),
            (50, "$0.0001"),
            (4_000, "$0.0040"),
            (380_000, "$0.3800"),
            (999_949, "$0.9999"),
            (999_950, "$1.00"),
            (1_362_000, "$1.36"),
            (1_440_000, "$1.44"),
            (24_994_000, "$24.99"),
            (24_995_000, "$25.00"),
            (-12_500, "-$0.0125"),
            (-2_000_000, "-$2.00"),
        ];
        for (micros, shown) in cases {
            assert_eq!(dollars(micros), shown, "{micros} µUSD");
        }
    }

    const ORION: &str = r#"
        [[providers]]
        name = "orion"
        kind = "orion"
        priority = 1
        max_requests_per_hour = 1000
        base_url = "https://api.orion.example"
    "#;

    #[test]
    fn a_minimal_provider_gets_the_documented_defaults() {
        let c = WaterfallConfig::from_toml(ORION).unwrap();
        let p = &c.providers[0];
        assert!(p.enabled);
        assert_eq!((p.timeout_ms, p.retries, p.min_user_tier), (5_000, 2, 0));
        assert_eq!(c.lookup.concurrency, 256);
    }

    #[test]
    fn an_unknown_key_is_named() {
        let err = WaterfallConfig::from_toml(&format!("{ORION}\nmax_request_per_hour = 3"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_request_per_hour"), "{err}");
        let err = WaterfallConfig::from_toml("[lookup]\nconcurrency = 4\ndeadline = 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("deadline"), "{err}");
    }

    #[test]
    fn bad_values_name_the_provider_and_field() {
        let twice = format!("{ORION}{ORION}");
        let err = WaterfallConfig::from_toml(&twice).unwrap_err().to_string();
        assert!(err.contains("`orion`") && err.contains("twice"), "{err}");

        let http_without_table = ORION.replace("kind = \"orion\"", "kind = \"http\"");
        let err = WaterfallConfig::from_toml(&http_without_table)
            .unwrap_err()
            .to_string();
        assert!(err.contains("[providers.http]"), "{err}");

        let bad_template = format!(
            "{}\n[providers.http]\npath = \"/x?e={{emial}}\"\nphone_pointer = \"/phone\"",
            http_without_table
        );
        let err = WaterfallConfig::from_toml(&bad_template)
            .unwrap_err()
            .to_string();
        assert!(err.contains("emial") && err.contains("http.path"), "{err}");

        for (line, key) in [
            (
                "[lookup]\nconcurrency = 9223372036854775807",
                "lookup.concurrency",
            ),
            (
                "[lookup]\ndeadline_ms = 9223372036854775807",
                "lookup.deadline_ms",
            ),
            (
                "[lookup]\nretry_max_ms = 9223372036854775807",
                "lookup.retry_max_ms",
            ),
            (
                "[breaker]\ncooldown_secs = 9223372036854775807",
                "breaker.cooldown_secs",
            ),
            ("[breaker]\nfailures = 0", "breaker.failures"),
            ("[budget]\nper_day_usd = inf", "budget.per_day_usd"),
        ] {
            let err = WaterfallConfig::from_toml(line).unwrap_err().to_string();
            assert!(err.contains(key), "{line}: {err}");
        }
        let retries = ORION.replace("priority = 1", "priority = 1\nretries = 4294967295");
        let err = WaterfallConfig::from_toml(&retries)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`orion`: retries") && err.contains("from 0 to 100"),
            "{err}"
        );

        for url in [
            "http://169.254.169.254/latest",
            "http://169.254.1.1",
            "http://2852039166/",
            "http://0xa9fea9fe/",
            "http://0xA9.0xFE.0xA9.0xFE/",
            "http://0251.0376.0251.0376/",
            "http://169.16689662/",
            "https://[::ffff:169.254.169.254]/",
            "https://[::ffff:a9fe:a9fe]/",
            "http://[fd00:ec2::254]/",
            "http://[fe80::1]:8080/",
            "http://[FEBF::1]/",
            "http://metadata.google.internal./",
        ] {
            let toml = ORION.replace("https://api.orion.example", url);
            let err = WaterfallConfig::from_toml(&toml)
                .expect_err(url)
                .to_string();
            assert!(
                err.contains("`orion`: base_url") && err.contains("never there"),
                "{url}: {err}"
            );
        }
        for url in [
            "http://127.0.0.1:8080",
            "http://[::1]:9",
            "https://169.255.0.1",
            "https://[fec0::1]",
        ] {
            let toml = ORION.replace("https://api.orion.example", url);
            WaterfallConfig::from_toml(&toml).expect(url);
        }

        let negative = ORION.replace("priority = 1", "priority = 1\ncost_per_hit_usd = -1");
        let err = WaterfallConfig::from_toml(&negative)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cost_per_hit_usd"), "{err}");
    }
}
