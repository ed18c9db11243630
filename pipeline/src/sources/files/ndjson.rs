//! NDJSON: one JSON object per line. Numbers and booleans are read as their
//! text; nested objects and arrays pass through as JSON text.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{BufRead, Read};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::input::InputFile;
use super::{BatchSink, MAX_RECORD_BYTES};
use crate::error::{Error, Result};
use crate::lead::{ColumnMap, LeadBuilder, RecordFields};
use crate::sinks::rejects::Reject;
use crate::sources::SourceProgress;
use crate::sources::json::{Flat, KeyIndex, Object, read_object};

/// How many lines of an NDJSON file fix its columns (as DataFusion's JSON
/// schema inference does): the file is then read once, not scanned for keys
/// first. A key first seen later is not kept; each is warned about and counted.
pub const SCHEMA_LINES: usize = 1000;

/// The keys of the file's first [`SCHEMA_LINES`] lines, in order of first
/// appearance. Lines that are not JSON objects are skipped here; reading
/// rejects them.
pub(crate) fn keys(mut input: Box<dyn BufRead + Send>) -> Result<Vec<String>> {
    let mut keys: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut line = Vec::new();
    for i in 0..SCHEMA_LINES {
        line.clear();
        let (n, whole) = read_line(&mut input, &mut line).map_err(|e| Error::io("ndjson", e))?;
        if n == 0 {
            break;
        }
        if !whole {
            continue;
        }
        let line = if i == 0 { without_bom(&line) } else { &line };
        let Ok(object) = serde_json::from_slice::<HashMap<Cow<'_, str>, de::IgnoredAny>>(line)
        else {
            continue;
        };
        for key in object.keys() {
            if seen.insert(key.to_string()) {
                keys.push(key.to_string());
            }
        }
    }
    Ok(keys)
}

/// Streams the lines of one NDJSON file into `builder`.
pub(crate) fn read(
    file: &InputFile,
    mut input: Box<dyn BufRead + Send>,
    columns: &[String],
    map: &ColumnMap,
    builder: &mut LeadBuilder,
    sink: &mut BatchSink,
) -> Result<()> {
    let mut keys = KeyIndex::new(columns);
    let mut unkept: HashSet<String> = HashSet::new();
    let mut line = Vec::new();
    let mut line_no = 0i64;
    loop {
        line.clear();
        let (n, whole) = read_line(&mut input, &mut line).map_err(|e| Error::io(&file.name, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if !whole {
            sink.reject(Reject {
                source: file.name.clone(),
                line: Some(line_no),
                raw: String::from_utf8_lossy(&line).into_owned(),
                reason: format!(
                    "the line is {n} bytes, more than a lead can be ({} MiB); skipped",
                    MAX_RECORD_BYTES >> 20
                ),
            });
            sink.after_record(builder)?;
            continue;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let json = if line_no == 1 {
            without_bom(&line)
        } else {
            &line
        };
        // Without its line break, so that a line cut short is named at its
        // end (`line 1 column 15`), not at the start of a next line.
        let json = json.strip_suffix(b"\n").unwrap_or(json);
        let json = json.strip_suffix(b"\r").unwrap_or(json);
        let result = match read_object::<Text<'_>>(json) {
            Err(e) => Err(format!("not a JSON object: {e}")),
            Ok(Object(object)) => {
                let mut values: Vec<Option<Cow<'_, str>>> = vec![None; columns.len()];
                for (position, (key, Text(value))) in object.into_iter().enumerate() {
                    match keys.column(position, &key) {
                        Some(i) => values[i] = value,
                        None if value.is_none() => {}
                        None => {
                            SourceProgress::add(&sink.progress.unkept_values, 1);
                            if unkept.insert(key.to_string()) {
                                tracing::warn!(
                                    file = %file.name,
                                    line = line_no,
                                    key = %key,
                                    "key first seen after the {SCHEMA_LINES} lines that fix the columns; its values are not kept"
                                );
                            }
                        }
                    }
                }
                builder.push(&JsonRecord(&values), map)
            }
        };
        if let Err(reason) = result {
            sink.reject(Reject {
                source: file.name.clone(),
                line: Some(line_no),
                raw: String::from_utf8_lossy(&line).trim_end().to_string(),
                reason,
            });
        }
        sink.after_record(builder)?;
        if sink.is_closed() {
            break;
        }
    }
    Ok(())
}

/// Reads one line (its `\n` included) into `line`: the bytes it took, and
/// whether `line` holds all of it. A line longer than [`MAX_RECORD_BYTES`]
/// is read past, keeping only its first KiB, so memory stays bounded.
fn read_line(input: &mut dyn BufRead, line: &mut Vec<u8>) -> std::io::Result<(usize, bool)> {
    let mut taken = Read::take(&mut *input, MAX_RECORD_BYTES + 1).read_until(b'\n', line)?;
    if taken as u64 <= MAX_RECORD_BYTES {
        return Ok((taken, true));
    }
    let ended = line.ends_with(b"\n");
    line.truncate(1024);
    if ended {
        return Ok((taken, false));
    }
    // The rest of the line, read and dropped.
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok((taken, false));
        }
        let (n, ends) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        input.consume(n);
        taken += n;
        if ends {
            return Ok((taken, false));
        }
    }
}

/// A line without the UTF-8 byte-order mark some tools write first.
fn without_bom(line: &[u8]) -> &[u8] {
    line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
}

/// A value as text: strings as they are, numbers and booleans as written
/// by JSON, arrays and objects as their JSON text; None for null.
struct Text<'a>(Option<Cow<'a, str>>);

impl<'a> From<Flat<'a>> for Text<'a> {
    fn from(v: Flat<'a>) -> Self {
        Text(match v {
            Flat::Null => None,
            Flat::Str(s) => Some(Cow::Borrowed(s)),
            Flat::Int(n) => Some(Cow::Owned(n.to_string())),
        })
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Borrowed(if v { "true" } else { "false" }))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text<'de>, E> {
                // As serde_json writes a number it read (JSON has no NaN).
                Ok(Text(
                    serde_json::Number::from_f64(v).map(|n| Cow::Owned(n.to_string())),
                ))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Text<'de>, A::Error> {
                let value = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Text(Some(Cow::Owned(value.to_string()))))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Text<'de>, A::Error> {
                let value = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Text(Some(Cow::Owned(value.to_string()))))
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

struct JsonRecord<'a, 'b>(&'a [Option<Cow<'b, str>>]);

impl RecordFields for JsonRecord<'_, '_> {
    fn field(&self, col: usize) -> Result<Option<&str>, String> {
        Ok(self.0.get(col).and_then(|v| v.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Vec<(String, Option<String>)> {
        let Object(fields) = serde_json::from_str::<Object<'_, Text<'_>>>(line).unwrap();
        fields
            .into_iter()
            .map(|(k, Text(v))| (k.into_owned(), v.map(Cow::into_owned)))
            .collect()
    }

    #[test]
    fn values_read_as_text_as_a_tree_of_values_would_give_them() {
        let line = r#"{"a":"x\"y","b":null,"c":true,"d":-12,"e":18446744073709551615,"f":1.50,"g":1e21,"h":[1,{"k":"v"}],"i":{"z":1,"a":[]},"a":"last"}"#;
        let tree: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
        let fields = texts(line);
        assert_eq!(fields[0], ("a".into(), Some("x\"y".into())));
        // The last of a repeated key is kept, as a map keeps it.
        let read: HashMap<String, Option<String>> = fields.into_iter().collect();
        assert_eq!(read.len(), tree.len());
        for (key, value) in &tree {
            let expected = match value {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
            assert_eq!(read[key], expected, "{key}");
        }
        assert!(serde_json::from_str::<Object<'_, Text<'_>>>("[1, 2]").is_err());
        assert!(serde_json::from_str::<Object<'_, Text<'_>>>("\"text\"").is_err());
    }

    #[test]
    fn a_line_just_past_the_limit_is_cut_and_the_next_line_is_whole() {
        let long = "z".repeat(MAX_RECORD_BYTES as usize) + "\n";
        let text = format!("{long}next\n");
        let mut input: &[u8] = text.as_bytes();
        let mut line = Vec::new();
        let (n, whole) = read_line(&mut input, &mut line).unwrap();
        assert_eq!((n, whole, line.len()), (long.len(), false, 1024));
        line.clear();
        let (n, whole) = read_line(&mut input, &mut line).unwrap();
        assert_eq!((n, whole, line.as_slice()), (5, true, &b"next\n"[..]));
    }
}
