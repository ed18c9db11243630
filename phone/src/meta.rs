//! The fast path: libphonenumber's `parse`, region and type for the inputs
//! most leads carry, straight from its metadata.
//!
//! rlibphonenumber answers every call through several regex searches, some
//! of them twice (`get_number_type` resolves the region again, `is_valid`
//! repeats the type). Here one region's patterns are compiled once into a
//! `RegexSet`, so a number's type is one scan, and the parse of simple
//! inputs (`+` or national digits separated by spaces, `-`, `.`, `(`, `)` or
//! `/`, with `+` or an international dialing prefix) follows
//! libphonenumber's steps with no regex on the common path. Whatever is not
//! simple (a calling code written without `+` or a dialing prefix, a national prefix with a carrier code or transform
//! rule, letters, extensions, non-geographic codes) returns `None` and goes
//! to rlibphonenumber. `tests/agreement.rs` holds every field to it.

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};

use prost::Message;
use regex::{Regex, RegexSet};
use rlibphonenumber::{
    PHONE_NUMBER_UTIL, PhoneMetadata, PhoneMetadataCollection, PhoneNumberDesc, Region,
};

use crate::PhoneType;

/// See `phone/data/README.md`.
static METADATA: &[u8] = include_bytes!("../data/metadata.bin");

/// Most digits a simple input may have.
pub(crate) const MAX_DIGITS: usize = 20;
const MIN_NSN: usize = 2;
const MAX_NSN: usize = 17;

/// Order of the type patterns in [`RegionMeta::types`], as libphonenumber tests them.
const TYPE_ORDER: [PhoneType; 8] = [
    PhoneType::PremiumRate,
    PhoneType::TollFree,
    PhoneType::SharedCost,
    PhoneType::Voip,
    PhoneType::PersonalNumber,
    PhoneType::Pager,
    PhoneType::Uan,
    PhoneType::Voicemail,
];
const FIXED: usize = 8;
const MOBILE: usize = 9;
const GENERAL: usize = 10;

/// One region's rules, compiled on first use.
struct RegionMeta {
    country_code: i32,
    code_digits: String,
    national_prefix: Option<Regex>,
    has_transform_rule: bool,
    idd: Option<Regex>,
    leading_digits: Option<Regex>,
    /// Full-match patterns: the 8 of [`TYPE_ORDER`], fixed line, mobile, general.
    types: RegexSet,
    /// Possible lengths per pattern (0: any length).
    lengths: [u64; 11],
    same_mobile_and_fixed: bool,
    possible_mask: u64,
    local_mask: u64,
    /// National formats, in libphonenumber's order.
    formats: Vec<NationalFormat>,
    /// Each format's last leading-digits pattern, anchored at the start (an
    /// empty pattern where it has none): one scan finds the candidates.
    format_leading: RegexSet,
}

/// One `numberFormat` of the metadata, ready for national formatting.
struct NationalFormat {
    /// The last (most specific) leading-digits pattern, anchored at the start.
    leading: String,
    /// The full-match pattern whose groups the template refers to.
    pattern: Regex,
    /// The format with the national prefix rule applied, in `${n}` syntax.
    template: String,
    /// When the pattern is only fixed-width digit groups (`(\d{3})(\d{4})`,
    /// most are): the group widths and the template split into literals and
    /// group references, so matching and filling need no regex.
    fixed: Option<(Vec<usize>, Vec<Part>)>,
}

enum Part {
    Literal(String),
    Group(usize),
}

/// Widths of a pattern made only of `(\d)` and `(\d{N})` groups.
fn fixed_groups(pattern: &str) -> Option<Vec<usize>> {
    let mut widths = Vec::new();
    let mut rest = pattern;
    while !rest.is_empty() {
        rest = rest.strip_prefix("(\\d")?;
        if let Some(r) = rest.strip_prefix(')') {
            widths.push(1);
            rest = r;
        } else {
            let r = rest.strip_prefix('{')?;
            let end = r.find('}')?;
            widths.push(r[..end].parse().ok()?);
            rest = r[end + 1..].strip_prefix(')')?;
        }
    }
    (!widths.is_empty()).then_some(widths)
}

/// `${n}` references and literals of a braced template.
fn template_parts(template: &str, groups: usize) -> Option<Vec<Part>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        if i > 0 {
            parts.push(Part::Literal(rest[..i].to_string()));
        }
        let r = rest[i..].strip_prefix("${")?;
        let end = r.find('}')?;
        let n: usize = r[..end].parse().ok()?;
        if n == 0 || n > groups {
            return None;
        }
        parts.push(Part::Group(n));
        rest = &r[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_string()));
    }
    Some(parts)
}

struct Tables {
    raw: HashMap<Region, PhoneMetadata>,
    compiled: HashMap<Region, OnceLock<Option<RegionMeta>>>,
    /// Calling code → its regions, main region first (libphonenumber's order).
    regions_of: HashMap<i32, Vec<Region>>,
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| {
    let collection = PhoneMetadataCollection::decode(METADATA).unwrap_or_default();
    let raw: HashMap<Region, PhoneMetadata> = collection
        .metadata
        .into_iter()
        .filter_map(|m| Some((Region::from_code(&m.id).ok()?, m)))
        .filter(|(r, _)| *r != Region::World)
        .collect();
    let compiled = raw.keys().map(|r| (*r, OnceLock::new())).collect();
    let regions_of = PHONE_NUMBER_UTIL
        .get_supported_calling_codes()
        .filter_map(|cc| {
            Some((
                cc,
                PHONE_NUMBER_UTIL
                    .get_regions_for_country_calling_code(cc)?
                    .collect(),
            ))
        })
        .collect();
    Tables {
        raw,
        compiled,
        regions_of,
    }
});

fn unwrap_pattern(p: &str) -> &str {
    p.strip_prefix("^(?:")
        .and_then(|p| p.strip_suffix(")$"))
        .unwrap_or(p)
}

fn anchored_start(p: Option<&str>) -> Option<Regex> {
    let p = unwrap_pattern(p.filter(|p| !p.is_empty())?);
    Regex::new(&format!("^(?:{p})")).ok()
}

fn lengths(lengths: &[i32]) -> u64 {
    // libphonenumber: -1 means "no lengths" and clears the mask.
    lengths
        .iter()
        .fold(0u64, |m, &l| if l == -1 { 0 } else { m | 1 << l })
}

fn meta(region: Region) -> Option<&'static RegionMeta> {
    let tables = &*TABLES;
    tables
        .compiled
        .get(&region)?
        .get_or_init(|| compile(tables.raw.get(&region)?))
        .as_ref()
}

// rlibphonenumber deprecates these fields because its wrapper moves them out
// of its own copy; ours is decoded from the file, where they are filled.
#[allow(deprecated)]
fn compile(m: &PhoneMetadata) -> Option<RegionMeta> {
    let descs: [&Option<PhoneNumberDesc>; 11] = [
        &m.premium_rate,
        &m.toll_free,
        &m.shared_cost,
        &m.voip,
        &m.personal_number,
        &m.pager,
        &m.uan,
        &m.voicemail,
        &m.fixed_line,
        &m.mobile,
        &m.general_desc,
    ];
    // An absent pattern never matches.
    const NEVER: &str = r"^[^\s\S]$";
    let patterns: Vec<String> = descs
        .iter()
        .map(|d| {
            match d
                .as_ref()
                .and_then(|d| d.national_number_pattern.as_deref())
            {
                Some(p) if !p.is_empty() => format!("^(?:{})$", unwrap_pattern(p)),
                _ => NEVER.to_string(),
            }
        })
        .collect();
    let mut lens = [0u64; 11];
    for (l, d) in lens.iter_mut().zip(descs) {
        *l = d.as_ref().map_or(0, |d| lengths(&d.possible_length));
    }
    let general = m.general_desc.as_ref();
    let country_code = m.country_code?;
    let formats = m
        .number_format
        .iter()
        .filter_map(|f| {
            let pattern = Regex::new(&format!("^(?:{})$", unwrap_pattern(&f.pattern))).ok()?;
            let leading = match f.leading_digits_pattern.last() {
                Some(l) => format!("^(?:{})", unwrap_pattern(l)),
                None => String::new(),
            };
            let mut rule = f.format.clone();
            // libphonenumber: the national prefix rule replaces the first `$n`
            // of the format, `$1` in the rule standing for that `$n`.
            let np_rule = f
                .national_prefix_formatting_rule
                .as_deref()
                .unwrap_or_default();
            if !np_rule.is_empty()
                && let Some(i) = rule
                    .find('$')
                    .filter(|&i| rule[i + 1..].starts_with(|c: char| c.is_ascii_digit()))
            {
                let token = rule[i..i + 2].to_string();
                rule.replace_range(i..i + 2, &np_rule.replace("$1", &token));
            }
            let template = braced_groups(&rule);
            let fixed = fixed_groups(unwrap_pattern(&f.pattern))
                .and_then(|w| Some((w.clone(), template_parts(&template, w.len())?)));
            Some(NationalFormat {
                leading,
                pattern,
                template,
                fixed,
            })
        })
        .collect::<Vec<_>>();
    let format_leading = RegexSet::new(formats.iter().map(|f| f.leading.as_str())).ok()?;
    Some(RegionMeta {
        country_code,
        code_digits: country_code.to_string(),
        national_prefix: anchored_start(m.national_prefix_for_parsing.as_deref()),
        has_transform_rule: m
            .national_prefix_transform_rule
            .as_deref()
            .is_some_and(|r| !r.is_empty()),
        idd: anchored_start(m.international_prefix.as_deref()),
        leading_digits: anchored_start(m.leading_digits.as_deref()),
        types: RegexSet::new(&patterns).ok()?,
        lengths: lens,
        same_mobile_and_fixed: m.same_mobile_and_fixed_line_pattern.unwrap_or(false),
        possible_mask: general.map_or(0, |g| lengths(&g.possible_length)),
        local_mask: general.map_or(0, |g| lengths(&g.possible_length_local_only)),
        formats,
        format_leading,
    })
}

/// `$1` → `${1}`, so a digit or letter after a group reference stays literal.
fn braced_groups(rule: &str) -> String {
    let mut out = String::with_capacity(rule.len() + 8);
    let mut chars = rule.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('$', Some(d)) if d.is_ascii_digit() => {
                out.push_str("${");
                out.push(*d);
                out.push('}');
                chars.next();
            }
            ('$', _) => out.push_str("$$"),
            _ => out.push(c),
        }
    }
    out
}

/// libphonenumber's national format of `nsn` for calling code
/// `country_code`, or `false` when the fast path cannot say.
pub(crate) fn format_national(country_code: i32, nsn: &str, out: &mut String) -> bool {
    let Some(main) = TABLES.regions_of.get(&country_code).and_then(|r| r.first()) else {
        return false;
    };
    let Some(m) = meta(*main) else { return false };
    // libphonenumber's `choose_formatting_pattern_for_number`: the first
    // format whose leading digits match and whose pattern matches all of it.
    let leading = m.format_leading.matches(nsn);
    let chosen = leading
        .iter()
        .map(|i| &m.formats[i])
        .find(|f| match &f.fixed {
            Some((widths, _)) => widths.iter().sum::<usize>() == nsn.len(),
            None => f.pattern.is_match(nsn),
        });
    match chosen {
        None => out.push_str(nsn),
        Some(NationalFormat {
            fixed: Some((widths, parts)),
            ..
        }) => {
            for part in parts {
                match part {
                    Part::Literal(l) => out.push_str(l),
                    Part::Group(n) => {
                        let start: usize = widths[..n - 1].iter().sum();
                        out.push_str(&nsn[start..start + widths[n - 1]]);
                    }
                }
            }
        }
        Some(f) => match f.pattern.captures(nsn) {
            Some(caps) => caps.expand(&f.template, out),
            None => return false,
        },
    }
    true
}

impl RegionMeta {
    /// libphonenumber's `get_number_type_helper`.
    fn number_type(&self, nsn: &str) -> PhoneType {
        let matches = self.types.matches(nsn);
        let len_bit = 1u64.checked_shl(nsn.len() as u32).unwrap_or(0);
        // `is_number_matching_desc`: possible lengths first, when the desc has them.
        let hit = |i: usize| {
            (self.lengths[i] == 0 || self.lengths[i] & len_bit != 0) && matches.matched(i)
        };
        if !hit(GENERAL) {
            return PhoneType::Unknown;
        }
        if let Some(i) = (0..TYPE_ORDER.len()).find(|&i| hit(i)) {
            return TYPE_ORDER[i];
        }
        if hit(FIXED) {
            return if self.same_mobile_and_fixed || hit(MOBILE) {
                PhoneType::FixedLineOrMobile
            } else {
                PhoneType::FixedLine
            };
        }
        if !self.same_mobile_and_fixed && hit(MOBILE) {
            PhoneType::Mobile
        } else {
            PhoneType::Unknown
        }
    }

    fn general_matches(&self, nsn: &str) -> bool {
        self.types.matches(nsn).matched(GENERAL)
    }
}

/// A number parsed by the fast path, with what `phone_info` needs of it.
pub(crate) struct Parsed<'a> {
    pub country_code: i32,
    pub nsn: &'a str,
    pub region: Option<Region>,
    pub number_type: PhoneType,
    /// libphonenumber's `is_possible_number`.
    pub possible: bool,
}

/// Parses `raw` as libphonenumber's `parse(raw, region)` would and resolves
/// the number's region and type; `None` when the input is not simple.
/// `digits` is scratch space the returned NSN borrows from.
pub(crate) fn parse<'a>(
    raw: &str,
    default_region: Option<Region>,
    digits: &'a mut [u8; MAX_DIGITS],
) -> Option<Parsed<'a>> {
    let mut n = 0;
    let mut plus = false;
    let mut seen_digit = false;
    for b in raw.trim_ascii().bytes() {
        match b {
            b'0'..=b'9' => {
                if n == MAX_DIGITS {
                    return None;
                }
                digits[n] = b;
                n += 1;
                seen_digit = true;
            }
            b'+' if !plus && !seen_digit => plus = true,
            b' ' | b'-' | b'.' | b'/' if seen_digit || plus => {}
            b'(' | b')' => {}
            _ => return None,
        }
    }
    // Short inputs meet libphonenumber's special cases (viability, IDD length).
    if n < 5 {
        return None;
    }
    let digits = std::str::from_utf8(&digits[..n]).ok()?;
    let tables = &*TABLES;

    // After a `+`, or after the default region's international dialing
    // prefix (unless a 0 follows it), the digits start with a calling code.
    let international = if plus {
        Some(digits)
    } else {
        let rules = meta(default_region?)?;
        rules
            .idd
            .as_ref()
            .and_then(|idd| idd.find(digits))
            .and_then(|m| {
                let rest = &digits[m.end()..];
                (!rest.starts_with('0')).then_some(rest)
            })
    };
    let (country_code, national, rules) = match international {
        Some(digits) => {
            if digits.len() <= MIN_NSN || digits.starts_with('0') {
                return None;
            }
            let (cc, cc_len) = (1..=3).find_map(|i| {
                let cc: i32 = digits.get(..i)?.parse().ok()?;
                tables.regions_of.contains_key(&cc).then_some((cc, i))
            })?;
            let main = *tables.regions_of.get(&cc)?.first()?;
            (cc, &digits[cc_len..], meta(main)?)
        }
        None => {
            let rules = meta(default_region?)?;
            if digits.starts_with(&rules.code_digits) {
                return None;
            }
            (rules.country_code, digits, rules)
        }
    };
    if national.len() <= MIN_NSN {
        return None;
    }
    let nsn = strip_national_prefix(national, rules)?;
    if nsn.len() < MIN_NSN || nsn.len() > MAX_NSN {
        return None;
    }
    let regions = tables.regions_of.get(&country_code)?;
    let (region, number_type) = if let [only] = regions.as_slice() {
        (Some(*only), meta(*only)?.number_type(nsn))
    } else {
        // libphonenumber's `get_region_for_number_from_region_list`.
        let mut found = None;
        for &r in regions {
            let m = meta(r)?;
            if m.leading_digits.as_ref().is_some_and(|l| l.is_match(nsn)) {
                found = Some((r, m.number_type(nsn)));
                break;
            }
            let t = m.number_type(nsn);
            if t != PhoneType::Unknown {
                found = Some((r, t));
                break;
            }
        }
        match found {
            Some((r, t)) => (Some(r), t),
            None => (None, PhoneType::Unknown),
        }
    };
    // `is_possible_number` tests lengths against the calling code's main region.
    let main = meta(*regions.first()?)?;
    let possible = matches!(
        length_class(nsn.len(), main),
        Length::Possible | Length::LocalOnly
    );
    Some(Parsed {
        country_code,
        nsn,
        region,
        number_type,
        possible,
    })
}

/// libphonenumber's national-prefix step for a prefix without carrier code
/// or transform rule; `None` for the cases that have them.
fn strip_national_prefix<'a>(national: &'a str, rules: &RegionMeta) -> Option<&'a str> {
    let Some(prefix) = &rules.national_prefix else {
        return Some(national);
    };
    let Some(captures) = prefix.captures(national) else {
        return Some(national);
    };
    let whole = captures.get(0)?;
    if captures.iter().skip(1).any(|c| c.is_some()) || rules.has_transform_rule {
        return None;
    }
    if whole.is_empty() {
        return Some(national);
    }
    let stripped = &national[whole.end()..];
    if rules.general_matches(national) && !rules.general_matches(stripped) {
        return Some(national);
    }
    // The prefix stays when what is left cannot be a number of the region.
    match length_class(stripped.len(), rules) {
        Length::TooShort | Length::Invalid | Length::LocalOnly => Some(national),
        Length::Possible | Length::TooLong => Some(stripped),
    }
}

enum Length {
    Possible,
    LocalOnly,
    TooShort,
    TooLong,
    Invalid,
}

/// libphonenumber's `test_number_length` for the unknown type.
fn length_class(len: usize, rules: &RegionMeta) -> Length {
    let possible = rules.possible_mask;
    if possible == 0 {
        return Length::Invalid;
    }
    if len >= 64 {
        return Length::TooLong;
    }
    let bit = 1u64 << len;
    if rules.local_mask & bit != 0 {
        return Length::LocalOnly;
    }
    let min = possible.trailing_zeros() as usize;
    let max = 63 - possible.leading_zeros() as usize;
    if min == len {
        Length::Possible
    } else if min > len {
        Length::TooShort
    } else if max < len {
        Length::TooLong
    } else if possible & bit != 0 {
        Length::Possible
    } else {
        Length::Invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agreement test only means something if the fast path answers most
    /// of the corpus itself.
    #[test]
    fn fast_path_answers_most_simple_inputs() {
        let cases = crate::corpus::build(42, 20);
        let mut digits = [0u8; MAX_DIGITS];
        let fast = cases
            .iter()
            .filter(|c| parse(&c.raw, c.region, &mut digits).is_some())
            .count();
        assert!(
            fast * 10 > cases.len() * 7,
            "fast path took {fast} of {}",
            cases.len()
        );
    }

    #[test]
    fn gives_up_on_what_it_does_not_model() {
        let mut d = [0u8; MAX_DIGITS];
        assert!(
            parse("+1 650 253 0000 ext. 12", Some(Region::US), &mut d).is_none(),
            "extension"
        );
        assert!(
            parse("+1 650 253 0000 x12", Some(Region::US), &mut d).is_none(),
            "extension"
        );
        assert!(
            parse("1-800-FLOWERS", Some(Region::US), &mut d).is_none(),
            "letters"
        );
        assert!(
            parse("+800 1234 5678", None, &mut d).is_none(),
            "non-geographic"
        );
        let p = parse("+44 20 7183 8750", None, &mut d).expect("simple");
        assert_eq!(
            (p.country_code, p.nsn, p.region),
            (44, "2071838750", Some(Region::GB))
        );
        let p = parse("011 44 20 7183 8750", Some(Region::US), &mut d).expect("IDD");
        assert_eq!((p.country_code, p.nsn), (44, "2071838750"));
    }
}
