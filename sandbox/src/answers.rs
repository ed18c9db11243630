//! The sandbox's answers: deterministic in the provider and the lead, and
//! numbers that are valid for the lead's country.

use leadflow_phone::{
    EmailKind, PhoneInfo, PhoneParser, PhoneType, Region, example_number_e164, parse_region,
};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::config::Settings;

/// A number far too short to be valid anywhere: what an "invalid" hit carries.
const INVALID_NUMBER: &str = "+1 555 0100";

/// The identity of a lead as a provider sees it.
#[derive(Debug, Clone)]
pub struct LeadKey {
    identity: String,
    region: Region,
    email_kind: EmailKind,
}

impl LeadKey {
    /// `country` (ISO alpha-2) when the contract sends one; otherwise the
    /// country is read from the email's or domain's top-level domain (the
    /// domain's first for a free-mail address), and defaults to the US.
    pub fn new(email: &str, name: &str, domain: &str, country: Option<&str>) -> Self {
        let email_kind = EmailKind::of(email);
        let email = email.trim().to_lowercase();
        let identity = if email.is_empty() {
            format!(
                "{}|{}",
                name.trim().to_lowercase(),
                domain.trim().to_lowercase()
            )
        } else {
            email
        };
        let from_tld = |host: &str| {
            let tld = host.rsplit('.').next().unwrap_or("");
            let tld = if tld.eq_ignore_ascii_case("uk") {
                "GB"
            } else {
                tld
            };
            (tld.len() == 2).then(|| parse_region(tld)).flatten()
        };
        let host = identity.rsplit('@').next().unwrap_or("");
        // A free-mail address (gmail.com) says nothing of where its owner
        // is; the company's domain does.
        let (first, then) = match email_kind {
            EmailKind::Free => (domain.trim(), host),
            _ => (host, domain.trim()),
        };
        let region = country
            .and_then(parse_region)
            .or_else(|| from_tld(first))
            .or_else(|| from_tld(then))
            .unwrap_or(Region::US);
        Self {
            email_kind,
            identity,
            region,
        }
    }
}

/// What a provider answers for a lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Hit {
        e164: String,
        national: String,
        /// ISO alpha-2 of the number.
        region: String,
        valid: bool,
    },
    Miss,
}

/// A number in `[0, 1)` from a hash of the parts: the sandbox's dice.
pub(crate) fn chance(provider: &str, what: &str, n: u64) -> f64 {
    let h = xxh3_64_with_seed(format!("{provider}\0{what}").as_bytes(), n);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl LeadKey {
    /// The country and email kind the sandbox's hit rates are set by.
    pub(crate) fn segment(&self) -> (String, EmailKind) {
        (self.region.as_region_str().to_string(), self.email_kind)
    }
}

/// `hit_rate`: the chance this provider finds this lead's phone.
pub(crate) fn verdict(
    settings: &Settings,
    hit_rate: f64,
    provider: &str,
    lead: &LeadKey,
) -> Verdict {
    let seed = xxh3_64_with_seed(lead.identity.as_bytes(), 0x1ead);
    if chance(provider, "hit", seed) >= hit_rate {
        return Verdict::Miss;
    }
    if chance(provider, "invalid", seed) < settings.invalid_rate {
        return Verdict::Hit {
            e164: INVALID_NUMBER.into(),
            national: INVALID_NUMBER.into(),
            region: lead.region.as_region_str().to_string(),
            valid: false,
        };
    }
    let info = valid_number(lead.region, xxh3_64_with_seed(provider.as_bytes(), seed));
    Verdict::Hit {
        region: info
            .country
            .unwrap_or(lead.region)
            .as_region_str()
            .to_string(),
        e164: info.e164,
        national: info.national,
        valid: true,
    }
}

/// A valid number of `region`: its example number with the last digits drawn
/// from `seed`, or the example itself when no variant validates.
fn valid_number(region: Region, seed: u64) -> PhoneInfo {
    let mut parser = PhoneParser::default();
    let mut info = PhoneInfo::default();
    let Some(example) = example_number_e164(region) else {
        parser.parse_into("+1 201 555 0123", None, &mut info);
        return info;
    };
    let keep = example.len().saturating_sub(4).max(4);
    for i in 0..8u64 {
        let tail = format!("{:04}", xxh3_64_with_seed(&seed.to_le_bytes(), i) % 10_000);
        let candidate = format!("{}{}", &example[..keep], &tail[..example.len() - keep]);
        parser.parse_into(&candidate, None, &mut info);
        if info.valid {
            return info;
        }
    }
    parser.parse_into(&example, None, &mut info);
    info
}

/// Twilio's view of a number.
#[derive(Debug, Clone)]
pub(crate) struct LineType {
    pub e164: String,
    pub region: String,
    pub line_type: &'static str,
    pub carrier_name: String,
    pub mcc: String,
    pub mnc: String,
}

pub(crate) fn line_type(number: &str) -> Option<LineType> {
    let mut info = PhoneInfo::default();
    PhoneParser::default().parse_into(number, None, &mut info);
    if !info.valid {
        return None;
    }
    let region = info.country.map(|r| r.as_region_str().to_string())?;
    let line_type = match info.phone_type? {
        PhoneType::Mobile | PhoneType::FixedLineOrMobile => "mobile",
        PhoneType::FixedLine => "landline",
        PhoneType::Voip => "nonFixedVoip",
        PhoneType::TollFree => "tollFree",
        PhoneType::PremiumRate => "premium",
        PhoneType::SharedCost => "sharedCost",
        PhoneType::PersonalNumber => "personal",
        PhoneType::Pager => "pager",
        PhoneType::Uan => "uan",
        PhoneType::Voicemail => "voicemail",
        PhoneType::Unknown => "unknown",
    };
    let h = xxh3_64_with_seed(info.e164.as_bytes(), 7);
    Some(LineType {
        carrier_name: format!(
            "Sandbox {} {region}",
            ["Mobile", "Telecom", "Wireless"][(h % 3) as usize]
        ),
        mcc: format!("{}", 200 + h % 600),
        mnc: format!("{:02}", (h >> 16) % 100),
        e164: info.e164,
        region,
        line_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SandboxConfig;

    #[test]
    fn hits_are_valid_numbers_of_the_lead_country() {
        let settings = SandboxConfig {
            hit_rate: 1.0,
            ..Default::default()
        }
        .provider("orion");
        for (email, region) in [
            ("a@b.de", "DE"),
            ("a@b.co.uk", "GB"),
            ("a@b.com", "US"),
            ("x@y.fr", "FR"),
        ] {
            let lead = LeadKey::new(email, "", "", None);
            let Verdict::Hit {
                e164,
                region: r,
                valid,
                ..
            } = verdict(&settings, 1.0, "orion", &lead)
            else {
                panic!("hit_rate 1 must hit");
            };
            assert!(valid);
            assert_eq!(r, region, "{email} -> {e164}");
            let mut info = PhoneInfo::default();
            PhoneParser::default().parse_into(&e164, None, &mut info);
            assert!(info.valid, "{e164}");
        }
    }

    #[test]
    fn the_hit_rate_holds_and_depends_on_provider_and_lead() {
        let settings = SandboxConfig::default().provider("x");
        let leads: Vec<LeadKey> = (0..4000)
            .map(|i| LeadKey::new(&format!("p{i}@acme.com"), "", "", None))
            .collect();
        let hits = |p: &str| {
            leads
                .iter()
                .map(|l| {
                    matches!(
                        verdict(&settings, settings.hit_rate, p, l),
                        Verdict::Hit { .. }
                    )
                })
                .collect::<Vec<_>>()
        };
        let a = hits("orion");
        assert_eq!(a, hits("orion"), "deterministic");
        let rate = a.iter().filter(|h| **h).count() as f64 / a.len() as f64;
        assert!((0.45..0.55).contains(&rate), "hit rate {rate}");
        assert_ne!(a, hits("astra"), "providers differ");
    }

    #[test]
    fn hit_rates_follow_the_country_and_the_email_kind() {
        let config: SandboxConfig = toml::from_str(
            r#"
            hit_rate = 0.5
            hit_rate_by_country = { de = 0.1 }
            email_kind_factor = { free = 0.2 }
            [providers.orion]
            hit_rate_by_country = { US = 0.8 }
            [providers.astra]
            hit_rate = 0.3
            email_kind_factor = { corporate = 0.5 }
            "#,
        )
        .unwrap();
        let rate = |provider: &str, email: &str| {
            let settings = config.provider(provider);
            let hits = (0..4000)
                .filter(|i| {
                    let lead = LeadKey::new(&email.replace('#', &i.to_string()), "", "", None);
                    let (country, kind) = lead.segment();
                    let p = config.hit_rate(provider, &country, kind);
                    matches!(verdict(&settings, p, provider, &lead), Verdict::Hit { .. })
                })
                .count();
            hits as f64 / 4000.0
        };
        for (provider, email, want) in [
            ("orion", "p#@acme.com", 0.8),
            ("orion", "p#@gmail.com", 0.8 * 0.2),
            ("orion", "p#@web.de", 0.1 * 0.2),
            ("orion", "p#@acme.de", 0.1),
            ("orion", "p#@acme.fr", 0.5),
            ("astra", "p#@acme.com", 0.3 * 0.5),
            ("astra", "p#@acme.de", 0.3 * 0.5),
            ("astra", "p#@gmail.com", 0.3),
            ("nimbus", "p#@gmail.com", 0.5 * 0.2),
        ] {
            let got = rate(provider, email);
            assert!(
                (got - want).abs() < 0.03,
                "{provider} {email}: {got} vs {want}"
            );
        }
        // A free-mail address is placed by its company's domain.
        let free = LeadKey::new("ana@gmail.com", "", "acme.de", None);
        assert_eq!(free.segment(), ("DE".to_string(), EmailKind::Free));
        let corporate = LeadKey::new("ana@acme.fr", "", "acme.de", None);
        assert_eq!(
            corporate.segment(),
            ("FR".to_string(), EmailKind::Corporate)
        );
    }

    #[test]
    fn line_types_of_valid_numbers_only() {
        let us = example_number_e164(Region::US).unwrap();
        assert_eq!(line_type(&us).unwrap().region, "US");
        assert!(line_type(INVALID_NUMBER).is_none());
    }
}
