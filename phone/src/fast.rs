//! Fast paths over rlibphonenumber, each checked against it by the corpus
//! tests (`tests/agreement.rs`).
//!
//! - Validity and type come from one `get_number_type` call: libphonenumber's
//!   `is_valid_number` is exactly "the region is known and the type is not
//!   unknown", computed over the same patterns a second time.
//! - The national format is the costliest field (a format-pattern search and a
//!   regex replacement per number). Numbers of one calling code, one length
//!   and the same leading digits share a format, so each thread keeps the
//!   format as a template (literal characters and digit slots) and fills it
//!   in; only a new (code, length, leading digits) key pays for the search.

use std::cell::RefCell;
use std::collections::HashMap;

use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumber, PhoneNumberFormat};

/// How many leading national digits select a format. libphonenumber's
/// leading-digit patterns look at up to six digits.
const KEY_DIGITS: usize = 6;
/// Bound on each thread's template cache.
const MAX_TEMPLATES: usize = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FormatKey {
    country_code: i32,
    len: u8,
    leading: [u8; KEY_DIGITS],
}

/// A national format with the national significant number's digits taken out:
/// `slot` bytes stand for "the next digit of the number".
#[derive(Debug, Clone)]
struct Template {
    bytes: Vec<u8>,
}

const SLOT: u8 = 0;

thread_local! {
    static TEMPLATES: RefCell<HashMap<FormatKey, Option<Template>>> = RefCell::new(HashMap::new());
}

/// Loads the tables the fast paths use (nothing global to build yet).
pub(crate) fn tables() {}

/// Writes the national format of `number` (whose national significant number
/// is `nsn`) into `out`.
pub(crate) fn format_national(number: &PhoneNumber, nsn: &str, out: &mut String) {
    let Some(key) = key(number, nsn).filter(|_| number.extension.is_none()) else {
        out.push_str(&PHONE_NUMBER_UTIL.format(number, PhoneNumberFormat::National));
        return;
    };
    TEMPLATES.with(|cell| {
        let mut cache = cell.borrow_mut();
        if let Some(template) = cache.get(&key) {
            match template {
                Some(t) => fill(t, nsn, out),
                None => {
                    out.push_str(&PHONE_NUMBER_UTIL.format(number, PhoneNumberFormat::National))
                }
            }
            return;
        }
        let formatted = PHONE_NUMBER_UTIL.format(number, PhoneNumberFormat::National);
        out.push_str(&formatted);
        if cache.len() >= MAX_TEMPLATES {
            cache.clear();
        }
        cache.insert(key, template_of(&formatted, nsn));
    });
}

fn key(number: &PhoneNumber, nsn: &str) -> Option<FormatKey> {
    let bytes = nsn.as_bytes();
    if bytes.len() > u8::MAX as usize || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut leading = [b'x'; KEY_DIGITS];
    for (slot, b) in leading.iter_mut().zip(bytes) {
        *slot = *b;
    }
    Some(FormatKey {
        country_code: number.country_code,
        len: bytes.len() as u8,
        leading,
    })
}

/// The template of `formatted`, if its digits end with exactly `nsn` (a
/// national prefix may come before). Formats that drop or reorder digits get
/// no template and are always formatted by libphonenumber.
fn template_of(formatted: &str, nsn: &str) -> Option<Template> {
    let digits: Vec<usize> = formatted
        .char_indices()
        .filter(|(_, c)| c.is_ascii_digit())
        .map(|(i, _)| i)
        .collect();
    if digits.len() < nsn.len() {
        return None;
    }
    let tail = &digits[digits.len() - nsn.len()..];
    if !tail
        .iter()
        .zip(nsn.bytes())
        .all(|(&i, d)| formatted.as_bytes()[i] == d)
    {
        return None;
    }
    let mut bytes = formatted.as_bytes().to_vec();
    for &i in tail {
        bytes[i] = SLOT;
    }
    Some(Template { bytes })
}

fn fill(t: &Template, nsn: &str, out: &mut String) {
    let mut digits = nsn.bytes();
    // Templates hold UTF-8 literals and ASCII slots; filling slots with ASCII
    // digits keeps it UTF-8.
    let mut buf = std::mem::take(out).into_bytes();
    for &b in &t.bytes {
        buf.push(if b == SLOT {
            digits.next().unwrap_or(b'0')
        } else {
            b
        });
    }
    *out = String::from_utf8(buf).unwrap_or_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_keeps_prefix_and_literals() {
        let t = template_of("020 7183 8750", "2071838750").expect("aligned");
        let mut out = String::new();
        fill(&t, "2071838751", &mut out);
        assert_eq!(out, "020 7183 8751");
    }

    #[test]
    fn misaligned_format_has_no_template() {
        assert!(template_of("011 15-2345-6789", "91123456789").is_none());
    }
}
