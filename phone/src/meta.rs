//! The fast path: libphonenumber's `parse`, region, type and national
//! format for the inputs most leads carry, straight from its metadata.
//!
//! rlibphonenumber answers every call through several regex searches, some
//! of them twice (`get_number_type` resolves the region again, `is_valid`
//! repeats the type). Here a region's type and format patterns are walked as
//! the precompiled digit automata of [`crate::automata`], so a number's type
//! is one table walk, and the parse of simple inputs (from the first digit or
//! `+`: digits separated by spaces, `-`, `.`, `(`, `)` or `/`, an extension
//! typed as `x290` or `ext. 290`) follows libphonenumber's steps, national
//! prefixes with carrier codes and transform rules included. Whatever is not
//! simple (other letters, `;` parameters, non-geographic codes, fewer than
//! five digits) returns `None` and goes to rlibphonenumber.
//! `tests/agreement.rs` holds every field to it.

use std::sync::{LazyLock, OnceLock};

use prost::Message;
use regex::{Regex, RegexBuilder};
use rlibphonenumber::{PhoneMetadata, PhoneMetadataCollection, Region};

use crate::PhoneType;
use crate::automata::{self, Dfa, FORMAT_PATTERN, types, unwrap_pattern};

/// See `phone/data/README.md`.
static METADATA: &[u8] = include_bytes!("../data/metadata.bin");

/// Most digits a simple input may have.
const MAX_DIGITS: usize = 20;
const MIN_NSN: usize = 2;
const MAX_NSN: usize = 17;

/// Order of the special types in a type DFA's mask, as libphonenumber tests them.
const TYPE_ORDER: [PhoneType; types::SPECIAL] = [
    PhoneType::PremiumRate,
    PhoneType::TollFree,
    PhoneType::SharedCost,
    PhoneType::Voip,
    PhoneType::PersonalNumber,
    PhoneType::Pager,
    PhoneType::Uan,
    PhoneType::Voicemail,
];

/// One region's rules: its automata and what the parse needs besides.
struct RegionMeta {
    country_code: i32,
    code_digits: String,
    national_prefix: Option<DigitPrefix>,
    /// What replaces a national prefix with captured digits (`$1` syntax).
    transform_rule: Option<String>,
    idd: Option<DigitPrefix>,
    /// Full-match number types and the region's leading digits, one walk.
    types: Dfa<u16>,
    /// Possible lengths per type pattern (0: any length).
    lengths: [u64; 11],
    same_mobile_and_fixed: bool,
    possible_mask: u64,
    local_mask: u64,
    /// National formats, in libphonenumber's order.
    formats: Vec<NationalFormat>,
    /// Each format's leading digits and pattern, one walk.
    format_dfa: Dfa<u128>,
    /// What goes between a national number and its extension.
    extension_prefix: String,
}

/// A pattern matched at the start of the digits (the international dialing
/// prefix, the national prefix): a literal compares bytes, anything else is
/// a regex compiled the first time a number needs it.
enum DigitPrefix {
    Literal(String),
    Pattern {
        source: String,
        compiled: OnceLock<Option<Regex>>,
    },
}

impl DigitPrefix {
    fn new(pattern: Option<&str>) -> Option<Self> {
        let p = unwrap_pattern(pattern.filter(|p| !p.is_empty())?);
        Some(if p.bytes().all(|b| b.is_ascii_digit()) {
            DigitPrefix::Literal(p.to_string())
        } else {
            DigitPrefix::Pattern {
                source: format!("^(?:{p})"),
                compiled: OnceLock::new(),
            }
        })
    }

    /// The end of the prefix when `digits` start with it.
    fn find(&self, digits: &str) -> Option<usize> {
        match self {
            DigitPrefix::Literal(l) => digits.starts_with(l.as_str()).then_some(l.len()),
            DigitPrefix::Pattern { .. } => Some(self.regex()?.find(digits)?.end()),
        }
    }

    fn regex(&self) -> Option<&Regex> {
        match self {
            DigitPrefix::Literal(_) => None,
            DigitPrefix::Pattern { source, compiled } => {
                compiled.get_or_init(|| digit_regex(source)).as_ref()
            }
        }
    }
}

/// A metadata pattern for matching ASCII digits. Without Unicode, `\d` is
/// `[0-9]` and a pattern compiles in microseconds instead of a millisecond.
fn digit_regex(pattern: &str) -> Option<Regex> {
    RegexBuilder::new(pattern).unicode(false).build().ok()
}

/// One `numberFormat` of the metadata, ready for national formatting.
struct NationalFormat {
    /// The full-match pattern whose groups the template refers to, compiled
    /// when a number first needs its groups.
    pattern: String,
    compiled: OnceLock<Option<Regex>>,
    /// The format with the national prefix rule applied, in `${n}` syntax.
    template: String,
    /// When the pattern is only fixed-width digit groups (`(\d{3})(\d{4})`,
    /// most are): the number's length and the template split into literals
    /// and digit ranges, so filling it needs no regex.
    fixed: Option<(usize, Vec<Part>)>,
}

enum Part {
    Literal(String),
    /// Digits `start..end` of the national number.
    Digits(usize, usize),
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

/// A braced template as literals and the digit ranges of its `${n}`
/// references, group n being `widths[n - 1]` digits after the groups before it.
fn template_parts(template: &str, widths: &[usize]) -> Option<Vec<Part>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        if i > 0 {
            parts.push(Part::Literal(rest[..i].to_string()));
        }
        let r = rest[i..].strip_prefix("${")?;
        let end = r.find('}')?;
        let n: usize = r[..end].parse().ok()?;
        if n == 0 || n > widths.len() {
            return None;
        }
        let start = widths[..n - 1].iter().sum();
        parts.push(Part::Digits(start, start + widths[n - 1]));
        rest = &r[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_string()));
    }
    Some(parts)
}

/// Slot of a two-letter region in [`Tables::regions`].
fn slot(region: Region) -> Option<usize> {
    let code = region as u16;
    let (a, b) = ((code >> 8) as u8, code as u8);
    (a.is_ascii_uppercase() && b.is_ascii_uppercase())
        .then(|| usize::from(a - b'A') * 26 + usize::from(b - b'A'))
}

struct Tables {
    /// Every region's rules by [`slot`].
    regions: Vec<Option<RegionMeta>>,
    /// Calling code → its regions, main region first (libphonenumber's order).
    regions_of: Vec<Vec<Region>>,
}

/// The metadata of every region (not the non-geographic entity), by region.
pub(crate) fn decoded_metadata() -> Vec<(Region, PhoneMetadata)> {
    let collection = PhoneMetadataCollection::decode(METADATA).unwrap_or_default();
    let mut regions: Vec<(Region, PhoneMetadata)> = collection
        .metadata
        .into_iter()
        .filter_map(|m| Some((Region::from_code(&m.id).ok()?, m)))
        .filter(|(r, _)| *r != Region::World)
        .collect();
    regions.sort_by_key(|(r, _)| *r);
    regions
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| {
    // A broken or stale automata file fails `tests/automata.rs`; at run time
    // the fast path then answers nothing and rlibphonenumber answers all.
    let compiled = automata::decode(automata::AUTOMATA).ok();
    let mut tables = Tables {
        regions: (0..26 * 26).map(|_| None).collect(),
        regions_of: vec![Vec::new(); 1000],
    };
    let Some(compiled) = compiled else {
        return tables;
    };
    let mut metadata = decoded_metadata().into_iter().peekable();
    for (region, dfas) in compiled.regions {
        while metadata.next_if(|(r, _)| *r < region).is_some() {}
        let Some((_, m)) = metadata.next_if(|(r, _)| *r == region) else {
            continue;
        };
        if let (Some(slot), Some(meta)) = (slot(region), region_meta(&m, dfas)) {
            tables.regions[slot] = Some(meta);
        }
    }
    for (cc, regions) in compiled.regions_of {
        if let Some(list) = tables.regions_of.get_mut(cc as usize) {
            *list = regions;
        }
    }
    tables
});

fn lengths(lengths: &[i32]) -> u64 {
    // libphonenumber: -1 means "no lengths" and clears the mask.
    lengths
        .iter()
        .fold(0u64, |m, &l| if l == -1 { 0 } else { m | 1 << l })
}

fn meta(region: Region) -> Option<&'static RegionMeta> {
    TABLES.regions.get(slot(region)?)?.as_ref()
}

fn regions_of(country_code: i32) -> &'static [Region] {
    usize::try_from(country_code)
        .ok()
        .and_then(|cc| TABLES.regions_of.get(cc))
        .map_or(&[], Vec::as_slice)
}

// rlibphonenumber deprecates these fields because its wrapper moves them out
// of its own copy; ours is decoded from the file, where they are filled.
#[allow(deprecated)]
fn region_meta(m: &PhoneMetadata, dfas: automata::RegionAutomata) -> Option<RegionMeta> {
    let mut lens = [0u64; 11];
    for (l, d) in lens.iter_mut().zip(automata::type_descs(m)) {
        *l = d.as_ref().map_or(0, |d| lengths(&d.possible_length));
    }
    let general = m.general_desc.as_ref();
    let country_code = m.country_code?;
    let formats = m
        .number_format
        .iter()
        .map(|f| {
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
            let pattern = unwrap_pattern(&f.pattern);
            let fixed = fixed_groups(pattern).and_then(|widths| {
                Some((widths.iter().sum(), template_parts(&template, &widths)?))
            });
            NationalFormat {
                pattern: format!("^(?:{pattern})$"),
                compiled: OnceLock::new(),
                template,
                fixed,
            }
        })
        .collect::<Vec<_>>();
    Some(RegionMeta {
        country_code,
        code_digits: country_code.to_string(),
        national_prefix: DigitPrefix::new(m.national_prefix_for_parsing.as_deref()),
        transform_rule: m
            .national_prefix_transform_rule
            .clone()
            .filter(|r| !r.is_empty()),
        idd: DigitPrefix::new(m.international_prefix.as_deref()),
        types: dfas.types,
        lengths: lens,
        same_mobile_and_fixed: m.same_mobile_and_fixed_line_pattern.unwrap_or(false),
        possible_mask: general.map_or(0, |g| lengths(&g.possible_length)),
        local_mask: general.map_or(0, |g| lengths(&g.possible_length_local_only)),
        formats,
        format_dfa: dfas.formats,
        extension_prefix: m
            .preferred_extn_prefix
            .clone()
            .unwrap_or_else(|| " ext. ".to_string()),
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
    regions_of(country_code)
        .first()
        .and_then(|main| meta(*main))
        .is_some_and(|m| m.format_national(nsn, out))
}

impl RegionMeta {
    /// libphonenumber's `get_number_type_helper`, from the mask of the
    /// patterns `nsn` matches.
    fn number_type(&self, mask: u16, nsn_len: usize) -> PhoneType {
        let len_bit = 1u64.checked_shl(nsn_len as u32).unwrap_or(0);
        // `is_number_matching_desc`: possible lengths first, when the desc has them.
        let hit = |i: usize| {
            (self.lengths[i] == 0 || self.lengths[i] & len_bit != 0) && mask & (1 << i) != 0
        };
        if !hit(types::GENERAL) {
            return PhoneType::Unknown;
        }
        if let Some(i) = (0..types::SPECIAL).find(|&i| hit(i)) {
            return TYPE_ORDER[i];
        }
        if hit(types::FIXED) {
            return if self.same_mobile_and_fixed || hit(types::MOBILE) {
                PhoneType::FixedLineOrMobile
            } else {
                PhoneType::FixedLine
            };
        }
        if !self.same_mobile_and_fixed && hit(types::MOBILE) {
            PhoneType::Mobile
        } else {
            PhoneType::Unknown
        }
    }

    fn general_matches(&self, nsn: &str) -> bool {
        self.types.run(nsn.as_bytes()) & (1 << types::GENERAL) != 0
    }

    /// libphonenumber's national format of `nsn`, this being the main region
    /// of its calling code; `false` when the fast path cannot say.
    fn format_national(&self, nsn: &str, out: &mut String) -> bool {
        // `choose_formatting_pattern_for_number`: the first format whose
        // leading digits match and whose pattern matches all of it.
        let mask = self.format_dfa.run(nsn.as_bytes());
        let both = (mask as u64) & ((mask >> FORMAT_PATTERN) as u64);
        let Some(chosen) = self.formats.get(both.trailing_zeros() as usize) else {
            out.push_str(nsn);
            return true;
        };
        match &chosen.fixed {
            Some((len, parts)) if *len == nsn.len() => {
                for part in parts {
                    match part {
                        Part::Literal(l) => out.push_str(l),
                        Part::Digits(start, end) => out.push_str(&nsn[*start..*end]),
                    }
                }
                true
            }
            Some(_) => false,
            None => {
                let compiled = chosen.compiled.get_or_init(|| digit_regex(&chosen.pattern));
                match compiled.as_ref().and_then(|p| p.captures(nsn)) {
                    Some(caps) => {
                        caps.expand(&chosen.template, out);
                        true
                    }
                    None => false,
                }
            }
        }
    }
}

/// A number parsed by the fast path, with what `phone_info` needs of it.
pub(crate) struct Parsed<'a> {
    pub country_code: i32,
    pub nsn: &'a str,
    /// The extension's digits, when the input had one.
    pub extension: Option<&'a str>,
    pub region: Option<Region>,
    pub number_type: PhoneType,
    /// libphonenumber's `is_possible_number`.
    pub possible: bool,
    /// The main region of the calling code: its formats.
    main: &'static RegionMeta,
}

impl Parsed<'_> {
    /// Appends the E.164 form.
    pub(crate) fn write_e164(&self, out: &mut String) {
        out.push('+');
        out.push_str(&self.main.code_digits);
        out.push_str(self.nsn);
    }

    /// Appends libphonenumber's national format (with the extension);
    /// `false` when the fast path cannot say.
    pub(crate) fn write_national(&self, out: &mut String) -> bool {
        if !self.main.format_national(self.nsn, out) {
            return false;
        }
        if let Some(ext) = self.extension {
            out.push_str(&self.main.extension_prefix);
            out.push_str(ext);
        }
        true
    }
}

/// libphonenumber's extension for the labels people type at the end of a
/// number (`x290`, `ext. 290`, `extn 290`, `extension 290`, any case): the
/// number before it and the extension's digits. `None` when there is none
/// or it is written some other way (the parser of record reads those).
fn split_extension(raw: &str) -> Option<(&str, &str)> {
    let b = raw.as_bytes();
    let digits_end = b.len();
    let mut end = digits_end;
    while end > 0 && b[end - 1].is_ascii_digit() {
        end -= 1;
    }
    let extension = &raw[end..digits_end];
    if extension.is_empty() || end == 0 {
        return None;
    }
    // `[:.]?[ \t,-]*` between the label and the digits.
    while end > 0 && matches!(b[end - 1], b' ' | b'\t' | b',' | b'-') {
        end -= 1;
    }
    if end > 0 && matches!(b[end - 1], b':' | b'.') {
        end -= 1;
    }
    let head = &b[..end];
    let ends_with = |label: &[u8]| {
        head.len() >= label.len() && head[head.len() - label.len()..].eq_ignore_ascii_case(label)
    };
    // Longest label first; libphonenumber allows 20 digits after a word, 9 after `x`.
    let (label, max) = [
        (&b"extension"[..], 20),
        (b"extn", 20),
        (b"ext", 20),
        (b"x", 9),
    ]
    .into_iter()
    .find(|(label, _)| ends_with(label))?;
    if extension.len() > max {
        return None;
    }
    end -= label.len();
    // A letter before the label makes it part of a word, not a label.
    if end > 0 && b[end - 1].is_ascii_alphabetic() {
        return None;
    }
    while end > 0 && matches!(b[end - 1], b' ' | b'\t' | b',') {
        end -= 1;
    }
    // `/ x…` starts a second number for libphonenumber, not an extension.
    if end == 0 || matches!(b[end - 1], b'/' | b'\\') {
        return None;
    }
    Some((&raw[..end], extension))
}

/// Space a parse writes to and the [`Parsed`] it returns borrows from.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    digits: [u8; MAX_DIGITS],
    /// A national number after its region's transform rule.
    transformed: String,
}

/// Parses `raw` as libphonenumber's `parse(raw, region)` would and resolves
/// the number's region and type; `None` when the input is not simple.
pub(crate) fn parse<'a>(
    raw: &'a str,
    default_region: Option<Region>,
    scratch: &'a mut Scratch,
) -> Option<Parsed<'a>> {
    let Scratch {
        digits,
        transformed,
    } = scratch;
    // libphonenumber reads from the first digit or `+` (`tel:+1…`,
    // `Mobile: 0412…`); in another script a digit may hide before it.
    let start = raw.find(|c: char| c.is_ascii_digit() || c == '+' || !c.is_ascii())?;
    let raw = raw[start..].trim_ascii_end();
    let (number, extension) = match raw.as_bytes().last() {
        Some(b) if b.is_ascii_digit() && raw.bytes().any(|b| b.is_ascii_alphabetic()) => {
            let (number, extension) = split_extension(raw)?;
            (number, Some(extension))
        }
        _ => (raw, None),
    };
    let mut n = 0;
    let mut plus = false;
    let mut seen_digit = false;
    for b in number.bytes() {
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
            .map(|end| &digits[end..])
            .filter(|rest| !rest.starts_with('0'))
    };
    let (country_code, national, rules) = match international {
        Some(digits) => {
            if digits.len() <= MIN_NSN || digits.starts_with('0') {
                return None;
            }
            let (cc, cc_len) = (1..=3).find_map(|i| {
                let cc: i32 = digits.get(..i)?.parse().ok()?;
                (!regions_of(cc).is_empty()).then_some((cc, i))
            })?;
            let main = *regions_of(cc).first()?;
            (cc, &digits[cc_len..], meta(main)?)
        }
        None => {
            let rules = meta(default_region?)?;
            let national = match digits.strip_prefix(rules.code_digits.as_str()) {
                // libphonenumber's `maybe_extract_country_code` for digits
                // that start with the default region's calling code: they
                // are taken off when that makes a number of the region, or
                // when the whole is too long to be one.
                Some(rest) => {
                    let once = match strip_national_prefix(rest, rules, transformed)? {
                        Stripped::Same => rest,
                        Stripped::Cut(cut) => cut,
                        Stripped::Transformed => return None,
                    };
                    let better = !rules.general_matches(digits) && rules.general_matches(once);
                    if better || matches!(length_class(digits.len(), rules), Length::TooLong) {
                        once
                    } else {
                        digits
                    }
                }
                None => digits,
            };
            (rules.country_code, national, rules)
        }
    };
    if national.len() <= MIN_NSN {
        return None;
    }
    let nsn = national_significant_number(national, rules, transformed)?;
    if nsn.len() < MIN_NSN || nsn.len() > MAX_NSN {
        return None;
    }
    let regions = regions_of(country_code);
    let main = meta(*regions.first()?)?;
    let (region, number_type) = if let [only] = regions {
        (
            Some(*only),
            main.number_type(main.types.run(nsn.as_bytes()), nsn.len()),
        )
    } else {
        // libphonenumber's `get_region_for_number_from_region_list`.
        let mut found = None;
        for &r in regions {
            let m = meta(r)?;
            let mask = m.types.run(nsn.as_bytes());
            let t = m.number_type(mask, nsn.len());
            if mask & (1 << types::LEADING) != 0 || t != PhoneType::Unknown {
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
    let possible = matches!(
        length_class(nsn.len(), main),
        Length::Possible | Length::LocalOnly
    );
    Some(Parsed {
        country_code,
        nsn,
        extension,
        region,
        number_type,
        possible,
        main,
    })
}

/// What [`strip_national_prefix`] did.
enum Stripped<'a> {
    Same,
    Cut(&'a str),
    /// The region's transform rule rewrote it into the scratch string.
    Transformed,
}

/// libphonenumber's `maybe_strip_national_prefix_and_carrier_code`.
fn strip_national_prefix<'a>(
    national: &'a str,
    rules: &RegionMeta,
    transformed: &mut String,
) -> Option<Stripped<'a>> {
    let Some(prefix) = &rules.national_prefix else {
        return Some(Stripped::Same);
    };
    // The prefix goes only when what is left still fits the region.
    let keep_viable =
        |candidate: &str| rules.general_matches(national) && !rules.general_matches(candidate);
    let stripped = match prefix {
        DigitPrefix::Literal(l) => {
            let Some(stripped) = national.strip_prefix(l.as_str()) else {
                return Some(Stripped::Same);
            };
            stripped
        }
        DigitPrefix::Pattern { .. } => {
            let regex = prefix.regex()?;
            let Some(captures) = regex.captures(national) else {
                return Some(Stripped::Same);
            };
            let (first, second) = (captures.get(1), captures.get(2));
            let transform = rules.transform_rule.as_deref().filter(|_| {
                first.is_some_and(|f| {
                    second.is_some_and(|s| !s.is_empty()) || !f.is_empty() && second.is_none()
                })
            });
            if let Some(rule) = transform {
                transformed.clear();
                transformed.push_str(&regex.replace(national, rule));
                if keep_viable(transformed) || !transformed.bytes().all(|b| b.is_ascii_digit()) {
                    return Some(Stripped::Same);
                }
                return Some(Stripped::Transformed);
            }
            &national[captures.get(0)?.end()..]
        }
    };
    Some(if keep_viable(stripped) {
        Stripped::Same
    } else {
        Stripped::Cut(stripped)
    })
}

/// The national significant number: the national prefix stripped, unless
/// what is left is too short to be a number of the region (the length check
/// libphonenumber's `parse` makes after stripping).
fn national_significant_number<'a>(
    national: &'a str,
    rules: &RegionMeta,
    transformed: &'a mut String,
) -> Option<&'a str> {
    let candidate = match strip_national_prefix(national, rules, transformed)? {
        Stripped::Same => return Some(national),
        Stripped::Cut(cut) => cut,
        Stripped::Transformed => transformed.as_str(),
    };
    match length_class(candidate.len(), rules) {
        Length::TooShort | Length::Invalid | Length::LocalOnly => Some(national),
        Length::Possible | Length::TooLong => Some(candidate),
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
        let mut scratch = Scratch::default();
        let fast = cases
            .iter()
            .filter(|c| parse(&c.raw, c.region, &mut scratch).is_some())
            .count();
        assert!(
            fast * 10 > cases.len() * 7,
            "fast path took {fast} of {}",
            cases.len()
        );
    }

    #[test]
    fn gives_up_on_what_it_does_not_model() {
        let mut d = Scratch::default();
        for raw in [
            "+1 650 253 0000 ext. 12",
            "+1 650 253 0000 x12",
            "(650) 253-0000 EXT:12",
        ] {
            let p = parse(raw, Some(Region::US), &mut d).expect(raw);
            assert_eq!((p.nsn, p.extension), ("6502530000", Some("12")), "{raw}");
        }
        for raw in [
            "+1 650 253 0000 / x12",
            "+1 650 253 0000 next 12",
            "+1 650 253 0000 x1234567890",
            "+1 650 253 0000 #12",
        ] {
            assert!(parse(raw, Some(Region::US), &mut d).is_none(), "{raw}");
        }
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
