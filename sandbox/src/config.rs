//! How the sandbox behaves: rates and latency, for all providers and per
//! provider. Each setting is declared once, below; the macro makes of it the
//! field of `[sandbox]`, its per-provider override and its default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

macro_rules! settings {
    ($($(#[doc = $doc:literal])* $name:ident: $ty:ty = $default:expr;)*) => {
        /// The `[sandbox]` table of a leadflow config file.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct SandboxConfig {
            $($(#[doc = $doc])* pub $name: $ty,)*
            /// Settings for one provider (by its configured name), overriding the above.
            pub providers: BTreeMap<String, SandboxProvider>,
        }

        impl Default for SandboxConfig {
            fn default() -> Self {
                Self {
                    $($name: $default,)*
                    providers: BTreeMap::new(),
                }
            }
        }

        /// `[sandbox.providers.NAME]`: overrides of [`SandboxConfig`] for one
        /// provider; unset fields inherit.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct SandboxProvider {
            $($(#[doc = $doc])* pub $name: Option<$ty>,)*
        }

        /// The settings in force for one provider.
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub(crate) struct Settings {
            $(pub $name: $ty,)*
        }

        impl SandboxConfig {
            pub(crate) fn provider(&self, name: &str) -> Settings {
                let p = self.providers.get(name);
                Settings {
                    $($name: p.and_then(|p| p.$name).unwrap_or(self.$name),)*
                }
            }
        }
    };
}

settings! {
    /// Share of leads a provider finds a phone for, 0.0–1.0.
    hit_rate: f64 = 0.5;
    /// Milliseconds every answer waits before it is sent.
    latency_ms: u64 = 0;
    /// Share of requests answered `503`, 0.0–1.0.
    error_rate: f64 = 0.0;
    /// Share of requests answered `429` with `Retry-After`, 0.0–1.0.
    rate_limit_rate: f64 = 0.0;
    /// The `Retry-After` a `429` carries, in seconds.
    retry_after_secs: u64 = 1;
    /// Share of hits answered with a number that is not valid, 0.0–1.0.
    invalid_rate: f64 = 0.0;
}
