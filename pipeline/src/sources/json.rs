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
    let b = json;
    let mut i = skip_space(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_space(b, i + 1);
    let mut members = Vec::with_capacity(16);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
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
            members.push((Cow::Borrowed(key), V::from(value)));
            i = skip_space(b, i);
            match b.get(i)? {
                b',' => i = skip_space(b, i + 1),
                b'}' => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (skip_space(b, i) == b.len()).then_some(Object(members))
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
fn plain_string(text: &str, start: usize) -> Option<(&str, usize)> {
    let rest = &text.as_bytes()[start..];
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    if rest[end] != b'"' || rest[..end].iter().any(|&c| c < 0x20) {
        return None;
    }
    // Both ends are ASCII quotes, so both are character boundaries.
    Some((&text[start..start + end], start + end + 1))
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
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut taken = 0;
        for _ in 0..200_000 {
            let mut json = String::from("{\"k\":");
            for _ in 0..next() % 8 {
                json.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            if next() % 2 == 0 {
                json.push('}');
            }
            taken += usize::from(agrees(json.as_bytes()));
        }
        assert!(
            taken > 1_000,
            "the fast reader took {taken} of the random objects"
        );
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
