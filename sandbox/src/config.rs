//! How the sandbox behaves: rates and latency, for all providers and per provider.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `[sandbox]` table of a leadflow config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Share of leads a provider finds a phone for, 0.0–1.0.
    pub hit_rate: f64,
    /// Milliseconds every answer waits before it is sent.
    pub latency_ms: u64,
    /// Share of requests answered `503`, 0.0–1.0.
    pub error_rate: f64,
    /// Share of requests answered `429` with `Retry-After`, 0.0–1.0.
    pub rate_limit_rate: f64,
    /// The `Retry-After` a `429` carries, in seconds.
    pub retry_after_secs: u64,
    /// Share of hits answered with a number that is not valid, 0.0–1.0.
    pub invalid_rate: f64,
    /// Settings for one provider (by its configured name), overriding the above.
    pub providers: BTreeMap<String, SandboxProvider>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            hit_rate: 0.5,
            latency_ms: 0,
            error_rate: 0.0,
            rate_limit_rate: 0.0,
            retry_after_secs: 1,
            invalid_rate: 0.0,
            providers: BTreeMap::new(),
        }
    }
}

/// Per-provider overrides of [`SandboxConfig`]; unset fields inherit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxProvider {
    /// Share of leads this provider finds a phone for, 0.0–1.0.
    pub hit_rate: Option<f64>,
    /// Milliseconds each of this provider's answers waits.
    pub latency_ms: Option<u64>,
    /// Share of this provider's requests answered `503`.
    pub error_rate: Option<f64>,
    /// Share of this provider's requests answered `429`.
    pub rate_limit_rate: Option<f64>,
    /// The `Retry-After` of this provider's `429`s, in seconds.
    pub retry_after_secs: Option<u64>,
    /// Share of this provider's hits that carry an invalid number.
    pub invalid_rate: Option<f64>,
}

/// The settings in force for one provider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Settings {
    pub hit_rate: f64,
    pub latency_ms: u64,
    pub error_rate: f64,
    pub rate_limit_rate: f64,
    pub retry_after_secs: u64,
    pub invalid_rate: f64,
}

impl SandboxConfig {
    pub(crate) fn provider(&self, name: &str) -> Settings {
        let p = self.providers.get(name).cloned().unwrap_or_default();
        Settings {
            hit_rate: p.hit_rate.unwrap_or(self.hit_rate),
            latency_ms: p.latency_ms.unwrap_or(self.latency_ms),
            error_rate: p.error_rate.unwrap_or(self.error_rate),
            rate_limit_rate: p.rate_limit_rate.unwrap_or(self.rate_limit_rate),
            retry_after_secs: p.retry_after_secs.unwrap_or(self.retry_after_secs),
            invalid_rate: p.invalid_rate.unwrap_or(self.invalid_rate),
        }
    }
}
