//! Country names and codes as people write them, resolved to ISO 3166-1 alpha-2.

use std::sync::LazyLock;

use unicode_normalization::UnicodeNormalization;

use crate::countries_table::COUNTRY_ALIASES;

/// Resolves what a lead's `country` field says to an ISO 3166-1 alpha-2 code.
///
/// Accepts alpha-2 and alpha-3 codes in any case and English country names
/// (with or without accents, punctuation or a leading "the"), plus a few common
/// short forms ("USA", "UK", "South Korea"). Returns `None` for anything else.
///
/// ```
/// use leadflow_phone::resolve_country;
/// assert_eq!(resolve_country("us"), Some("US"));
/// assert_eq!(resolve_country("DEU"), Some("DE"));
/// assert_eq!(resolve_country("United Kingdom"), Some("GB"));
/// assert_eq!(resolve_country("Côte d'Ivoire"), Some("CI"));
/// assert_eq!(resolve_country("Atlantis"), None);
/// ```
pub fn resolve_country(input: &str) -> Option<&'static str> {
    let trimmed = input.trim();
    // The common case: a two-letter code. No allocation.
    if let [a, b] = trimmed.as_bytes()
        && a.is_ascii_alphabetic()
        && b.is_ascii_alphabetic()
    {
        return TWO_LETTERS[two_letter_slot(*a, *b)];
    }
    if trimmed.is_empty() {
        return None;
    }
    lookup(&normalize_key(trimmed))
}

/// Every two-letter alias, by [`two_letter_slot`]: most leads name their
/// country by its code, and a binary search of the alias table per lead was
/// a twentieth of a run's CPU.
static TWO_LETTERS: LazyLock<[Option<&'static str>; 26 * 26]> = LazyLock::new(|| {
    let mut table = [None; 26 * 26];
    for (alias, code) in COUNTRY_ALIASES {
        if let [a, b] = alias.as_bytes()
            && a.is_ascii_alphabetic()
            && b.is_ascii_alphabetic()
        {
            table[two_letter_slot(*a, *b)] = Some(*code);
        }
    }
    table
});

/// The slot of two ASCII letters, in any case.
fn two_letter_slot(a: u8, b: u8) -> usize {
    let letter = |c: u8| usize::from(c.to_ascii_lowercase() - b'a');
    letter(a) * 26 + letter(b)
}

fn lookup(key: &str) -> Option<&'static str> {
    COUNTRY_ALIASES
        .binary_search_by(|(alias, _)| (*alias).cmp(key))
        .ok()
        .map(|i| COUNTRY_ALIASES[i].1)
}

/// Lower-case ASCII words separated by single spaces, accents stripped and a
/// leading "the" dropped: the same key `tools/gen_countries.py` writes.
fn normalize_key(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.nfkd() {
        if c.is_ascii_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii() {
            pending_space = true;
        }
        // Non-ASCII after NFKD: combining marks and letters outside Latin; dropped.
    }
    match out.strip_prefix("the ") {
        Some(rest) => rest.to_string(),
        None => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_in_any_case() {
        assert_eq!(resolve_country("gb"), Some("GB"));
        assert_eq!(resolve_country(" Fr "), Some("FR"));
        assert_eq!(resolve_country("usa"), Some("US"));
        assert_eq!(resolve_country("BRA"), Some("BR"));
        assert_eq!(resolve_country("xx"), None);
        assert_eq!(resolve_country(""), None);
    }

    #[test]
    fn english_names_and_short_forms() {
        assert_eq!(resolve_country("United States"), Some("US"));
        assert_eq!(resolve_country("the Netherlands"), Some("NL"));
        assert_eq!(resolve_country("KOREA, REPUBLIC OF"), Some("KR"));
        assert_eq!(resolve_country("South Korea"), Some("KR"));
        assert_eq!(resolve_country("México"), Some("MX"));
        assert_eq!(resolve_country("Germany"), Some("DE"));
        assert_eq!(resolve_country("Viet Nam"), Some("VN"));
    }

    #[test]
    fn two_letter_codes_agree_with_the_table() {
        for a in b'a'..=b'z' {
            for b in b'a'..=b'z' {
                let key = String::from_utf8(vec![a, b]).unwrap();
                let upper = key.to_ascii_uppercase();
                assert_eq!(resolve_country(&key), lookup(&key), "{key}");
                assert_eq!(resolve_country(&upper), lookup(&key), "{upper}");
            }
        }
    }

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(COUNTRY_ALIASES.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
