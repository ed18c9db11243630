//! A JSON object read without a tree of values: its keys borrowed from the
//! input where they have no escapes, each value as the reader's own type.
//! A Kafka message and an NDJSON line are both read through it, and their
//! keys found among the lead's columns by [`KeyIndex`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

/// An object's keys and values in input order (a repeated key twice).
pub(crate) struct Object<'a, V>(pub(crate) Vec<(Cow<'a, str>, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Object<'de, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for ObjectVisitor<V> {
            type Value = Object<'de, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<'de, V>, A::Error> {
                let mut fields = Vec::with_capacity(16);
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    fields.push((key, map.next_value::<V>()?));
                }
                Ok(Object(fields))
            }
        }
        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

/// A key, borrowed when it has no escapes (serde's own `Cow` would copy it).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A member's value in an object [`flat_object`] reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Flat<'a> {
    Null,
    Str(&'a str),
    Int(i64),
}

/// `json` as an object: read by [`flat_object`] when it is plain, else by
/// serde_json (whose error says what is wrong).
pub(crate) fn read_object<'a, V>(json: &'a [u8]) -> serde_json::Result<Object<'a, V>>
where
    V: From<Flat<'a>> + Deserialize<'a>,
{
    match flat_object(json) {
        Some(object) => Ok(object),
        None => serde_json::from_slice(json),
    }
}

/// `json` as an object, without serde, when it is of the plain kind nearly
/// every lead is: one object whose keys and string values have no escapes
/// and whose other values are `null` or whole numbers of up to 18 digits.
/// `None` for anything else (an escape, a nested value, a boolean, another
/// number, bad JSON or bad UTF-8): serde_json reads those and names what is
/// wrong. What it returns is what serde_json would have given `V` for the
/// same text; the text is checked as UTF-8 once, not string by string.
fn flat_object<'a, V: From<Flat<'a>>>(json: &'a [u8]) -> Option<Object<'a, V>> {
    let text = std::str::from_utf8(json).ok()?;
    let mut members = Vec::with_capacity(16);
    let at = flat_members(text, skip_space(json, 0), |key, value| {
        members.push((Cow::Borrowed(key), V::from(value)));
    })?;
    (skip_space(json, at) == json.len()).then_some(Object(members))
}

/// The flat object (as [`flat_object`] takes it) starting at `text[i]`:
/// each member to `member`, in order, and the position after its closing
/// brace. `None` where it is not of that kind, after any number of
/// members.
fn flat_members<'a>(
    text: &'a str,
    mut i: usize,
    mut member: impl FnMut(&'a str, Flat<'a>),
) -> Option<usize> {
    let b = text.as_bytes();
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_space(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Some(i + 1);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (key, at) = plain_string(text, i + 1)?;
        i = skip_space(b, at);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_space(b, i + 1);
        let value = match *b.get(i)? {
            b'"' => {
                let (value, at) = plain_string(text, i + 1)?;
                i = at;
                Flat::Str(value)
            }
            b'n' if b[i..].starts_with(b"null") => {
                i += 4;
                Flat::Null
            }
            b'-' | b'0'..=b'9' => {
                let (n, at) = whole_number(b, i)?;
                i = at;
                Flat::Int(n)
            }
            _ => return None,
        };
        member(key, value);
        i = skip_space(b, i);
        match b.get(i)? {
            b',' => i = skip_space(b, i + 1),
            b'}' => return Some(i + 1),
            _ => return None,
        }
    }
}

/// Where each lead lies in a lookup request's body, when the body is of
/// the plain kind nearly every request is: `{"leads":[…]}` and nothing
/// else, each lead a flat object as [`flat_object`] takes it. `None` for
/// anything else, which serde_json then reads and names what is wrong.
/// The ranges are the ones serde_json's `RawValue`s would give.
pub(crate) fn plain_leads(body: &[u8]) -> Option<Vec<std::ops::Range<usize>>> {
    let text = std::str::from_utf8(body).ok()?;
    let b = body;
    let mut i = skip_space(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_space(b, i + 1);
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let (key, at) = plain_string(text, i + 1)?;
    i = skip_space(b, at);
    if key != "leads" || b.get(i) != Some(&b':') {
        return None;
    }
    i = skip_space(b, i + 1);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i = skip_space(b, i + 1);
    let mut leads = Vec::new();
    if b.get(i) == Some(&b']') {
        i += 1;
    } else {
        loop {
            let end = flat_members(text, i, |_, _| ())?;
            leads.push(i..end);
            i = skip_space(b, end);
            match b.get(i)? {
                b',' => i = skip_space(b, i + 1),
                b']' => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    i = skip_space(b, i);
    if b.get(i) != Some(&b'}') {
        return None;
    }
    (skip_space(b, i + 1) == b.len()).then_some(leads)
}

/// The first position from `i` that is not JSON whitespace.
fn skip_space(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The string starting at `start` (after its opening quote) and the
/// position after its closing quote, when it has no escape and no control
/// character (which JSON does not allow unescaped).
///
/// Eight bytes at a time: the first quote, backslash or control character
/// in a word is found from the word's bits, and only the last few bytes of
/// the text go one by one. (A `memchr2` for the end and a second look for
/// control characters each went byte by byte over a lead's short strings.)
#[inline(always)]
fn plain_string(text: &str, start: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    let mut i = start;
    let end = loop {
        let Some(word) = b.get(i..i + 8) else {
            break i + b.get(i..)?.iter().position(|&c| ends_string(c))?;
        };
        let found = string_ends(u64::from_le_bytes(word.try_into().expect("eight bytes")));
        if found != 0 {
            break i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    };
    // An ASCII quote is a character boundary.
    (b[end] == b'"').then(|| (&text[start..end], end + 1))
}

/// Whether `c` ends a plain string: its closing quote, or a backslash or
/// control character, which make it not plain.
fn ends_string(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

/// The bytes of `word` (read little-endian) that may [`ends_string`], as
/// their high bits. The lowest one set always does: a false one can only
/// follow a true one, whose borrow it is, further up the word.
fn string_ends(word: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    quote | backslash | control
}

/// A whole number at `start` as JSON writes it (no leading zero, no
/// fraction or exponent, which the caller's next check refuses), up to 18
/// digits so that it fits an `i64`; and the position after it. `-0` is
/// left to serde_json.
fn whole_number(b: &[u8], start: usize) -> Option<(i64, usize)> {
    let negative = b[start] == b'-';
    let first = start + usize::from(negative);
    let end = first + b[first..].iter().take_while(|c| c.is_ascii_digit()).count();
    let digits = &b[first..end];
    if digits.is_empty()
        || digits.len() > 18
        || (digits[0] == b'0' && (digits.len() > 1 || negative))
    {
        return None;
    }
    let n = digits
        .iter()
        .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    Some((if negative { -n } else { n }, end))
}

/// The columns of an object's keys. Objects from one file or producer
/// mostly list their keys in one order: a key is first checked against the
/// column the same position held in the object before, then hashed.
pub(crate) struct KeyIndex {
    columns: Vec<String>,
    index: HashMap<String, usize>,
    by_position: Vec<Option<usize>>,
}

impl KeyIndex {
    pub(crate) fn new(columns: &[impl AsRef<str>]) -> Self {
        let columns: Vec<String> = columns.iter().map(|c| c.as_ref().to_string()).collect();
        Self {
            index: columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.clone(), i))
                .collect(),
            columns,
            by_position: Vec::new(),
        }
    }

    /// The column of `key`, the object's `position`-th key.
    pub(crate) fn column(&mut self, position: usize, key: &str) -> Option<usize> {
        if let Some(Some(i)) = self.by_position.get(position)
            && self.columns[*i] == key
        {
            return Some(*i);
        }
        let found = self.index.get(key).copied();
        // Only the first positions are remembered (64, or one per column
        // where there are more): an object with a million keys does not
        // grow this for good.
        if position < REMEMBERED_POSITIONS.max(self.columns.len()) {
            if self.by_position.len() <= position {
                self.by_position.resize(position + 1, None);
            }
            self.by_position[position] = found;
        }
        found
    }
}

/// Key positions a [`KeyIndex`] remembers at least.
const REMEMBERED_POSITIONS: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    /// A value as serde_json reads it, to hold [`flat_object`] to.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Null,
        Str(String),
        Int(i64),
        Other,
    }

    impl From<Flat<'_>> for Seen {
        fn from(v: Flat<'_>) -> Self {
            match v {
                Flat::Null => Seen::Null,
                Flat::Str(s) => Seen::Str(s.to_string()),
                Flat::Int(n) => Seen::Int(n),
            }
        }
    }

    impl<'de> Deserialize<'de> for Seen {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            Ok(match serde_json::Value::deserialize(deserializer)? {
                serde_json::Value::Null => Seen::Null,
                serde_json::Value::String(s) => Seen::Str(s),
                serde_json::Value::Number(n) => n.as_i64().map_or(Seen::Other, Seen::Int),
                _ => Seen::Other,
            })
        }
    }

    fn members(object: Object<'_, Seen>) -> Vec<(String, Seen)> {
        object
            .0
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v))
            .collect()
    }

    /// Whatever the fast reader takes, serde_json reads alike; what it
    /// leaves, serde_json reads (or refuses) on its own.
    fn agrees(json: &[u8]) -> bool {
        let fast = flat_object::<Seen>(json);
        let slow = serde_json::from_slice::<Object<'_, Seen>>(json);
        if let Some(fast) = fast {
            let slow = slow.unwrap_or_else(|e| {
                panic!(
                    "{:?}: read without serde, refused by it: {e}",
                    String::from_utf8_lossy(json)
                )
            });
            assert_eq!(
                members(fast),
                members(slow),
                "{:?}",
                String::from_utf8_lossy(json)
            );
            true
        } else {
            false
        }
    }

    #[test]
    fn a_plain_object_is_read_as_serde_json_reads_it() {
        for json in [
            r#"{"lead_id":"L1","email":"a@b.c","user_tier":3,"phone_raw":null}"#,
            " {\r\n\t\"a\" : \"Zoë 李\" , \"b\":-12 ,\"a\":\"again\"} \n",
            "{}",
            r#"{"n":0,"m":-999999999999999999,"k":999999999999999999,"":""}"#,
        ] {
            assert!(
                agrees(json.as_bytes()),
                "{json} should be read without serde"
            );
        }
        for json in [
            r#"{"a":"tab\tin"}"#,
            r#"{"a\"b":1}"#,
            r#"{"a":1.5}"#,
            r#"{"a":1e3}"#,
            r#"{"a":-0}"#,
            r#"{"a":01}"#,
            r#"{"a":1234567890123456789}"#,
            r#"{"a":true}"#,
            r#"{"a":[1]}"#,
            r#"{"a":{"b":1}}"#,
            r#"{"a":nul}"#,
            r#"{"a":nullx}"#,
            r#"{"a":"b",}"#,
            r#"{"a":"b"} x"#,
            r#"{"a":"b""#,
            r#"["a"]"#,
            "{\"a\":\"\u{1}\"}",
            "",
        ] {
            assert!(!agrees(json.as_bytes()), "{json} is left to serde_json");
        }
        assert!(
            !agrees(b"{\"a\":\"\xff\"}"),
            "bad UTF-8 is left to serde_json"
        );
    }

    #[test]
    fn random_near_json_is_read_alike_or_left_to_serde() {
        const PIECES: &[&str] = &[
            "{",
            "}",
            "\"",
            "\\",
            ":",
            ",",
            " ",
            "\n",
            "a",
            "é",
            "李",
            "null",
            "nul",
            "0",
            "-",
            "12",
            "1.5",
            "e3",
            "true",
            "[",
            "]",
            "\u{1}",
            "\"k\"",
            "\"v\"",
            "\"k\":",
            "\"v\",",
            "-0",
            "007",
            "99999999999999999999",
            "abcdefghijklmnop",
            "\"a long plain value\"",
            "\u{1f}",
            "\u{7f}",
            "ünïcödé and 漢字 text",
        ];
        let mut next = crate::sources::xorshift(0x9e37_79b9_7f4a_7c15);
        let mut taken = 0;
        for _ in 0..200_000 {
            let mut json = random_text(&mut next, "{\"k\":", PIECES, 8);
            if next().is_multiple_of(2) {
                json.push('}');
            }
            taken += usize::from(agrees(json.as_bytes()));
        }
        assert!(
            taken > 1_000,
            "the fast reader took {taken} of the random objects"
        );
    }

    /// `start`, then fewer than `most` of `pieces`, picked by `next`.
    fn random_text(
        next: &mut impl FnMut() -> u64,
        start: &str,
        pieces: &[&str],
        most: u64,
    ) -> String {
        let mut text = String::from(start);
        for _ in 0..next() % most {
            text.push_str(pieces[(next() % pieces.len() as u64) as usize]);
        }
        text
    }

    /// Whatever [`plain_leads`] takes, serde_json reads to the same leads
    /// (as a lookup request's `RawValue`s); what it leaves, serde_json
    /// reads or refuses on its own.
    fn leads_agree(body: &str) -> bool {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Request<'a> {
            #[serde(borrow)]
            leads: Vec<&'a serde_json::value::RawValue>,
        }
        let Some(fast) = plain_leads(body.as_bytes()) else {
            return false;
        };
        let slow: Request<'_> = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{body:?}: scanned, refused by serde_json: {e}"));
        let slow: Vec<&str> = slow.leads.iter().map(|l| l.get()).collect();
        let fast: Vec<&str> = fast.into_iter().map(|r| &body[r]).collect();
        assert_eq!(fast, slow, "{body:?}");
        true
    }

    #[test]
    fn a_plain_lookup_body_is_split_as_serde_json_splits_it() {
        for body in [
            r#"{"leads":[{"lead_id":"L1","full_name":"Ada","user_tier":2}]}"#,
            " { \"leads\" :\n[ {} , {\"a\":null}\t] } \r\n",
            r#"{"leads":[]}"#,
        ] {
            assert!(leads_agree(body), "{body} should be scanned");
        }
        for body in [
            r#"{"leads":[{"a":"b"}],"x":1}"#,
            r#"{"x":1,"leads":[{"a":"b"}]}"#,
            r#"{"leads":[{"a":"b"}],"leads":[]}"#,
            r#"{"leads":[{"a":"b"},]}"#,
            r#"{"leads":[{"a":true}]}"#,
            r#"{"leads":[{"a":"\u00e9"}]}"#,
            r#"{"leads":[1,{"a":"b"}]}"#,
            r#"{"leads":{"a":"b"}}"#,
            r#"{"leads":[{"a":"b"}]} x"#,
            r#"{"lea\u0064s":[{"a":"b"}]}"#,
            r#"[{"a":"b"}]"#,
            "",
        ] {
            assert!(!leads_agree(body), "{body} is left to serde_json");
        }
    }

    #[test]
    fn random_lookup_bodies_are_split_alike_or_left_to_serde() {
        const PIECES: &[&str] = &[
            "{\"a\":\"b\"}",
            "{}",
            "{\"n\":12,\"m\":null}",
            "{\"a\":true}",
            ",",
            " ",
            "\n",
            "]",
            "[",
            "}",
            "{",
            "\"",
            "\\",
            "1",
            "\"leads\":",
            "é",
        ];
        let mut next = crate::sources::xorshift(0x2545_f491_4f6c_dd1d);
        let mut taken = 0;
        for _ in 0..100_000 {
            let mut body = random_text(&mut next, "{\"leads\":[", PIECES, 6);
            if !next().is_multiple_of(4) {
                body.push_str("]}");
            }
            taken += usize::from(leads_agree(&body));
        }
        assert!(taken > 1_000, "the scan took {taken} of the random bodies");
    }

    #[test]
    fn a_words_first_quote_backslash_or_control_character_is_found() {
        let first = |word: [u8; 8]| {
            let found = string_ends(u64::from_le_bytes(word));
            (found != 0).then(|| (found.trailing_zeros() / 8) as usize)
        };
        let mut next = crate::sources::xorshift(0x9e37_79b9_7f4a_7c15);
        for v in 0..=255u8 {
            for at in 0..8 {
                for _ in 0..64 {
                    // Random bytes, a quarter of them at the edges (0x1f,
                    // 0x20, 0x21), where a borrow would show.
                    let mut word = next().to_le_bytes().map(|c| match c % 4 {
                        0 => 0x1f + c % 3,
                        _ => c,
                    });
                    word[at] = v;
                    let expected = word.iter().position(|&c| ends_string(c));
                    assert_eq!(first(word), expected, "{word:?}");
                }
            }
        }
        assert_eq!(first(*b"plain ok"), None);
        assert_eq!(first(*b"\x7f\x80\xff~ az{"), None);
    }

    #[test]
    fn a_key_is_found_wherever_the_line_puts_it() {
        let columns: Vec<String> = ["a", "b", "c"].map(String::from).into();
        let mut keys = KeyIndex::new(&columns);
        assert_eq!(keys.column(0, "a"), Some(0));
        assert_eq!(keys.column(1, "b"), Some(1));
        assert_eq!(keys.column(0, "c"), Some(2));
        assert_eq!(keys.column(0, "a"), Some(0));
        assert_eq!(keys.column(5, "zz"), None);
        assert_eq!(keys.column(5, "b"), Some(1));
        assert_eq!(keys.column(1_000_000, "c"), Some(2));
        assert!(keys.by_position.len() <= REMEMBERED_POSITIONS);
    }

    #[test]
    fn every_column_of_a_wide_file_keeps_its_position() {
        let columns: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
        let mut keys = KeyIndex::new(&columns);
        for round in 0..2 {
            for (i, c) in columns.iter().enumerate() {
                assert_eq!(keys.column(i, c), Some(i), "round {round}");
            }
        }
        assert_eq!(keys.by_position.len(), 100);
        assert_eq!(keys.column(100, "c3"), Some(3));
        assert_eq!(keys.by_position.len(), 100, "past the columns' count");
    }
}
