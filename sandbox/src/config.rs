//! How the sandbox behaves: rates and latency, for all providers and per
//! provider. Each setting is declared once, below; the macro makes of it the
//! field of `[sandbox]`, its per-provider override and its default.

use std::collections::BTreeMap;

use leadflow_phone::EmailKind;
use serde::{Deserialize, Serialize};

macro_rules! settings {
    ($($(#[doc = $doc:literal])* $name:ident: $ty:ty = $default:expr;)*) => {
        /// The `[sandbox]` table of a leadflow config file.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct SandboxConfig {
            $($(#[doc = $doc])* pub $name: $ty,)*
            /// The hit rate for leads of these countries (ISO alpha-2, the
            /// country the contract sends, else the email's or domain's
            /// top-level domain, else US); others use `hit_rate`.
            pub hit_rate_by_country: BTreeMap<String, f64>,
            /// A factor on the hit rate by the lead's email kind.
            pub email_kind_factor: EmailKindFactor,
            /// Settings for one provider (by its configured name), overriding the above.
            pub providers: BTreeMap<String, SandboxProvider>,
        }

        impl Default for SandboxConfig {
            fn default() -> Self {
                Self {
                    $($name: $default,)*
                    hit_rate_by_country: BTreeMap::new(),
                    email_kind_factor: EmailKindFactor::default(),
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
            /// This provider's rates by country; countries not listed use
            /// its `hit_rate` when set, else `[sandbox]`'s rates.
            pub hit_rate_by_country: Option<BTreeMap<String, f64>>,
            /// This provider's factors by email kind, in place of `[sandbox]`'s.
            pub email_kind_factor: Option<EmailKindFactor>,
        }

        /// The settings in force for one provider.
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub(crate) struct Settings {
            $(pub $name: $ty,)*
        }

        impl SandboxConfig {
            /// The share of leads of `country` with an email of `kind` that
            /// provider `name` finds a phone for: its country's rate times
            /// its kind's factor; the provider's own settings first.
            pub(crate) fn hit_rate(&self, name: &str, country: &str, kind: EmailKind) -> f64 {
                let p = self.providers.get(name);
                // Countries as written in the config, any case.
                let of = |rates: &BTreeMap<String, f64>| {
                    rates
                        .iter()
                        .find(|(c, _)| c.eq_ignore_ascii_case(country))
                        .map(|(_, rate)| *rate)
                };
                let own = p.and_then(|p| of(p.hit_rate_by_country.as_ref()?));
                let rate = own
                    .or(p.and_then(|p| p.hit_rate))
                    .or_else(|| of(&self.hit_rate_by_country))
                    .unwrap_or(self.hit_rate);
                let factor = p
                    .and_then(|p| p.email_kind_factor.as_ref())
                    .unwrap_or(&self.email_kind_factor);
                rate * factor.of(kind)
            }

            pub(crate) fn provider(&self, name: &str) -> Settings {
                let p = self.providers.get(name);
                Settings {
                    $($name: p.and_then(|p| p.$name).unwrap_or(self.$name),)*
                }
            }
        }
    };
}

/// `email_kind_factor = { free = 0.1, corporate = 1.0, none = 0.5 }`:
/// factors on a provider's hit rate by the kind of the lead's email.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailKindFactor {
    /// A free-mail address (gmail.com, web.de, …).
    pub free: f64,
    /// Any other domain.
    pub corporate: f64,
    /// No email.
    pub none: f64,
}

impl Default for EmailKindFactor {
    fn default() -> Self {
        Self {
            free: 1.0,
            corporate: 1.0,
            none: 1.0,
        }
    }
}

impl SandboxConfig {
    /// Checks what the types cannot: shares are from 0 to 1, countries
    /// are ISO alpha-2, factors are not negative. Errors name the key.
    pub fn check(&self) -> Result<(), String> {
        check_rates(
            "[sandbox]",
            &self.hit_rate_by_country,
            &self.email_kind_factor,
        )?;
        for (name, p) in &self.providers {
            let at = format!("[sandbox.providers.{name}]");
            if let Some(rates) = &p.hit_rate_by_country {
                check_rates(&at, rates, &EmailKindFactor::default())?;
            }
            if let Some(factor) = &p.email_kind_factor {
                check_rates(&at, &BTreeMap::new(), factor)?;
            }
        }
        Ok(())
    }
}

fn check_rates(
    at: &str,
    by_country: &BTreeMap<String, f64>,
    factor: &EmailKindFactor,
) -> Result<(), String> {
    for (country, rate) in by_country {
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(format!(
                "{at} hit_rate_by_country: `{country}` is not an ISO alpha-2 country code (like US, DE, GB)"
            ));
        }
        if !(0.0..=1.0).contains(rate) {
            return Err(format!(
                "{at} hit_rate_by_country.{country} = {rate} must be a share from 0 to 1"
            ));
        }
    }
    for (kind, f) in [
        ("free", factor.free),
        ("corporate", factor.corporate),
        ("none", factor.none),
    ] {
        if !(0.0..=1_000.0).contains(&f) {
            return Err(format!(
                "{at} email_kind_factor.{kind} = {f} must be a number from 0 to 1000"
            ));
        }
    }
    Ok(())
}

impl EmailKindFactor {
    fn of(&self, kind: EmailKind) -> f64 {
        match kind {
            EmailKind::Free => self.free,
            EmailKind::Corporate => self.corporate,
            EmailKind::None => self.none,
        }
    }
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
