//! A deterministic corpus of phone inputs from every region, for the
//! agreement tests and the benchmarks.
//!
//! For each region and each number type it has an example of, the corpus
//! holds the example in E.164, international, national and RFC 3966 form and
//! in the shapes people type (digits only, dots, dashes, `00` prefix), numbers
//! of the same range with random subscriber digits, mutations (a digit
//! dropped, added or changed) and junk. The same seed gives the same corpus.

pub mod export;

use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumberFormat, PhoneNumberType, Region};

/// One input: a raw string and the default region it is parsed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub raw: String,
    pub region: Option<Region>,
}

const TYPES: [PhoneNumberType; 11] = [
    PhoneNumberType::FixedLine,
    PhoneNumberType::Mobile,
    PhoneNumberType::TollFree,
    PhoneNumberType::PremiumRate,
    PhoneNumberType::SharedCost,
    PhoneNumberType::VoIP,
    PhoneNumberType::PersonalNumber,
    PhoneNumberType::Pager,
    PhoneNumberType::UAN,
    PhoneNumberType::VoiceMail,
    PhoneNumberType::FixedLineOrMobile,
];

const JUNK: &[&str] = &[
    "n/a",
    "N/A",
    "none",
    "-",
    "0",
    "000",
    "123",
    "+",
    "++44 20 7183 8750",
    "abc",
    "call me",
    "555-CALL-NOW",
    "1-800-FLOWERS",
    "+1 (650) 253-0000 ext. 123",
    "+44 20 7183 8750 x12",
    "tel:+1-650-253-0000",
    "+1 650 253 0000;ext=77",
    "０２０ ７１８３ ８７５０",
    "+49 (0) 30 1234567",
    "0049 30 1234567",
    "011 44 20 7183 8750",
    "+999 123 456",
    "+0 123",
    "12345678901234567890",
    "+1 650 253 00000000",
    "(650) 253-0000 / (650) 253-0001",
    "+33 (0)1 23 45 67 89",
    "+1-201-555-0123",
    "201.555.0123",
    "2015550123",
    "1-201-555-0123",
    "+61 2 9374 4000",
    "+81 3-1234-5678",
    "+86 10 1234 5678",
    "+91 98765 43210",
    "+55 11 91234-5678",
    "+7 495 123-45-67",
    "+27 21 123 4567",
    "+52 1 55 1234 5678",
    "+54 9 11 1234-5678",
    "phone: 415 555 0132",
    "#415-555-0132",
    "\t(415)\u{a0}555-0132 ",
    "++",
    "+()",
    "()",
];

/// Builds the corpus for `seed`; `variants` random subscriber numbers are
/// drawn per region and type (the bulk of the corpus).
pub fn build(seed: u64, variants: usize) -> Vec<Case> {
    let mut rng = XorShift(seed | 1);
    let mut out = Vec::new();
    let regions: Vec<Region> = PHONE_NUMBER_UTIL.get_supported_regions().collect();
    for &region in &regions {
        for ty in TYPES {
            let Ok(example) = PHONE_NUMBER_UTIL.get_example_number_for_type_and_region(region, ty)
            else {
                continue;
            };
            let e164 = PHONE_NUMBER_UTIL
                .format(&example, PhoneNumberFormat::E164)
                .into_owned();
            let national = PHONE_NUMBER_UTIL
                .format(&example, PhoneNumberFormat::National)
                .into_owned();
            let intl = PHONE_NUMBER_UTIL
                .format(&example, PhoneNumberFormat::International)
                .into_owned();
            let rfc = PHONE_NUMBER_UTIL
                .format(&example, PhoneNumberFormat::RFC3966)
                .into_owned();
            let push = |out: &mut Vec<Case>, raw: String, region: Option<Region>| {
                out.push(Case { raw, region });
            };
            push(&mut out, e164.clone(), Some(region));
            push(&mut out, e164.clone(), None);
            push(&mut out, intl.clone(), Some(region));
            push(&mut out, national.clone(), Some(region));
            push(&mut out, rfc, Some(region));
            push(&mut out, digits_only(&national), Some(region));
            push(&mut out, national.replace([' ', '-'], "."), Some(region));
            push(&mut out, format!("00{}", &e164[1..]), Some(region));
            push(&mut out, intl.replace(' ', "-"), Some(Region::US));
            push(&mut out, national.clone(), Some(Region::GB));
            // Same range, other subscribers: keep the first digits, randomize the rest.
            let digits = digits_only(&e164);
            for _ in 0..variants {
                let keep = (digits.len() / 2).max(3).min(digits.len());
                let mut d: Vec<u8> = digits.bytes().collect();
                for b in d.iter_mut().skip(keep) {
                    *b = b'0' + rng.below(10) as u8;
                }
                let d = String::from_utf8(d).unwrap_or_default();
                let raw = match rng.below(4) {
                    0 => format!("+{d}"),
                    1 => format!("+{} {}", &d[..keep.min(d.len())], &d[keep.min(d.len())..]),
                    2 => format!("00{d}"),
                    _ => format!("+{}", spaced(&d, &mut rng)),
                };
                push(&mut out, raw, Some(region));
            }
            // Mutations: one digit changed, dropped or added.
            let mut d: Vec<u8> = digits.bytes().collect();
            let i = 1 + rng.below(d.len() as u64 - 1) as usize;
            d[i] = b'0' + ((d[i] - b'0' + 1 + rng.below(9) as u8) % 10);
            push(
                &mut out,
                format!("+{}", String::from_utf8_lossy(&d)),
                Some(region),
            );
            push(
                &mut out,
                format!("+{}", &digits[..digits.len() - 1]),
                Some(region),
            );
            push(
                &mut out,
                format!("+{digits}{}", rng.below(10)),
                Some(region),
            );
            let nat = digits_only(&national);
            if nat.len() > 2 {
                push(&mut out, nat[..nat.len() - 1].to_string(), Some(region));
                push(&mut out, format!("{nat}{}", rng.below(10)), Some(region));
            }
        }
    }
    for junk in JUNK {
        out.push(Case {
            raw: junk.to_string(),
            region: Some(Region::US),
        });
        out.push(Case {
            raw: junk.to_string(),
            region: None,
        });
        let r = regions[rng.below(regions.len() as u64) as usize];
        out.push(Case {
            raw: junk.to_string(),
            region: Some(r),
        });
    }
    out
}

fn digits_only(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn spaced(d: &str, rng: &mut XorShift) -> String {
    let mut s = String::with_capacity(d.len() * 2);
    for (i, c) in d.chars().enumerate() {
        if i > 0 && rng.below(4) == 0 {
            s.push(['-', ' ', '.'][rng.below(3) as usize]);
        }
        s.push(c);
    }
    s
}

/// A small, fixed PRNG so the corpus does not depend on a `rand` version.
#[derive(Debug, Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-enough integer in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
