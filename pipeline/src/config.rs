//! The leadflow config file (TOML): the waterfall's sections (`[lookup]`,
//! `[cache]`, `[breaker]`, `[budget]`, `[[providers]]`), the sandbox's
//! (`[sandbox]`) and the fleet's (`[redis]`). Typed, with unknown keys rejected by name; each section's
//! defaults live with its type.

use std::path::Path;

use leadflow_fleet::RedisConfig;
use leadflow_sandbox::SandboxConfig;
use leadflow_waterfall::WaterfallConfig;
use leadflow_waterfall::config::{
    BreakerConfig, BudgetConfig, CacheConfig, LookupConfig, ProviderConfig,
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
    /// How the provider sandbox answers (for providers with `base_url = "sandbox"`).
    pub sandbox: SandboxConfig,
    /// Where limits, cache, breakers and budget are shared with other
    /// workers; without a URL (here or `--redis`/`REDIS_URL`) they are
    /// kept in memory.
    pub redis: RedisConfig,
    /// The providers, tried by `priority` (lowest first).
    pub providers: Vec<ProviderConfig>,
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
        Ok(config)
    }

    /// Whether any provider is answered by the in-process sandbox.
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
    fn a_typo_is_named_in_every_section() {
        for (text, key) in [
            ("[sandbox]\nhit_rat = 0.5", "hit_rat"),
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
