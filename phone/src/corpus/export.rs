//! Leads as sales teams export them, for benchmarks that should not flatter
//! us: 20 countries weighted towards the US, and phones written every way
//! people write them:
//!
//! | share | phone |
//! |---|---|
//! | 25% | E.164 (`+14155550132`) |
//! | 25% | international (`+1 415-555-0132`) |
//! | 20% | national (`(415) 555-0132`) |
//! | 10% | bare digits (`4155550132`, sometimes with the country code) |
//! | 5% | national with an extension (`(415) 555-0132 x290`) |
//! | 5% | dotted international (`+1.415.555.0132`) |
//! | 5% | blank |
//! | 5% | junk (`n/a`, `TBD`, `000`, `call reception`, …) |
//!
//! A fifth of the leads give their company's main line, so numbers repeat
//! across a file as they do in exports. `country` is alpha-2 in upper or
//! lower case, or blank. Numbers come from libphonenumber's example ranges
//! (fixed line and mobile) with random subscriber digits, so some are not
//! valid, as in real data. The same seed gives the same leads.

use super::XorShift;
use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumberFormat, PhoneNumberType, Region};

/// Countries and their weight (per mille).
const COUNTRIES: &[(&str, u64)] = &[
    ("US", 400),
    ("GB", 80),
    ("CA", 60),
    ("DE", 60),
    ("FR", 50),
    ("IN", 50),
    ("AU", 40),
    ("BR", 40),
    ("MX", 30),
    ("ES", 30),
    ("IT", 30),
    ("NL", 20),
    ("JP", 20),
    ("SE", 15),
    ("CH", 15),
    ("IE", 15),
    ("SG", 10),
    ("ZA", 10),
    ("PL", 15),
    ("AE", 10),
];

const JUNK: &[&str] = &[
    "n/a",
    "N/A",
    "TBD",
    "000",
    "call reception",
    "none",
    "-",
    "ask front desk",
    "see notes",
    "0",
    "unknown",
    "N/A - email only",
];

/// One lead's phone and `country` column as an export has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPhone {
    pub raw: String,
    pub country: String,
}

impl ExportPhone {
    /// The region national numbers are read in, from `country` as a run reads it.
    pub fn region(&self) -> Option<Region> {
        crate::resolve_country(&self.country).and_then(crate::parse_region)
    }
}

/// Draws export-like phones: `companies` main lines shared by a fifth of
/// the leads, the rest each their own.
pub struct Exports {
    rng: XorShift,
    /// Per country: example numbers (E.164 digits) to vary.
    ranges: Vec<(Region, &'static str, Vec<String>)>,
    main_lines: Vec<ExportPhone>,
}

impl Exports {
    pub fn new(seed: u64, companies: usize) -> Self {
        let ranges = COUNTRIES
            .iter()
            .map(|&(code, _)| {
                let region = crate::parse_region(code).expect("a region");
                let examples = [PhoneNumberType::FixedLine, PhoneNumberType::Mobile]
                    .into_iter()
                    .filter_map(|ty| {
                        PHONE_NUMBER_UTIL
                            .get_example_number_for_type_and_region(region, ty)
                            .ok()
                    })
                    .map(|n| {
                        PHONE_NUMBER_UTIL
                            .format(&n, PhoneNumberFormat::E164)
                            .trim_start_matches('+')
                            .to_string()
                    })
                    .collect();
                (region, code, examples)
            })
            .collect();
        let mut exports = Self {
            rng: XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            ranges,
            main_lines: Vec::new(),
        };
        exports.main_lines = (0..companies).map(|_| exports.fresh()).collect();
        exports
    }

    /// The next lead's phone.
    pub fn next_phone(&mut self) -> ExportPhone {
        if !self.main_lines.is_empty() && self.rng.below(5) == 0 {
            let i = self.rng.below(self.main_lines.len() as u64) as usize;
            return self.main_lines[i].clone();
        }
        self.fresh()
    }

    fn fresh(&mut self) -> ExportPhone {
        let mut pick = self.rng.below(1_000);
        let mut at = 0;
        for (i, &(_, weight)) in COUNTRIES.iter().enumerate() {
            if pick < weight {
                at = i;
                break;
            }
            pick -= weight;
        }
        let (region, code, examples) = &self.ranges[at];
        let (region, code) = (*region, *code);
        let country = match self.rng.below(10) {
            0..=6 => code.to_string(),
            7 => code.to_ascii_lowercase(),
            _ => String::new(),
        };
        let example = &examples[self.rng.below(examples.len() as u64) as usize];
        // Same range, another subscriber: keep the leading half.
        let keep = (example.len() / 2).max(3);
        let mut digits: Vec<u8> = example.bytes().collect();
        for d in digits.iter_mut().skip(keep) {
            *d = b'0' + self.rng.below(10) as u8;
        }
        let e164 = format!("+{}", String::from_utf8(digits).expect("digits"));
        let raw = match self.rng.below(100) {
            0..=24 => e164,
            25..=49 => self.formatted(&e164, region, PhoneNumberFormat::International),
            50..=69 => self.formatted(&e164, region, PhoneNumberFormat::National),
            70..=79 => {
                let national = self.formatted(&e164, region, PhoneNumberFormat::National);
                let bare: String = national.chars().filter(char::is_ascii_digit).collect();
                if self.rng.below(4) == 0 {
                    e164[1..].to_string()
                } else {
                    bare
                }
            }
            80..=84 => format!(
                "{} x{}",
                self.formatted(&e164, region, PhoneNumberFormat::National),
                100 + self.rng.below(900)
            ),
            85..=89 => self
                .formatted(&e164, region, PhoneNumberFormat::International)
                .replace([' ', '-'], "."),
            90..=94 => String::new(),
            _ => JUNK[self.rng.below(JUNK.len() as u64) as usize].to_string(),
        };
        ExportPhone { raw, country }
    }

    fn formatted(&self, e164: &str, region: Region, format: PhoneNumberFormat) -> String {
        match PHONE_NUMBER_UTIL.parse(e164, Some(region)) {
            Ok(n) => PHONE_NUMBER_UTIL.format(&n, format).into_owned(),
            Err(_) => e164.to_string(),
        }
    }
}

/// `n` export-like phones for `seed`.
pub fn phones(n: usize, seed: u64) -> Vec<ExportPhone> {
    let mut exports = Exports::new(seed, (n / 50).max(1));
    (0..n).map(|_| exports.next_phone()).collect()
}
