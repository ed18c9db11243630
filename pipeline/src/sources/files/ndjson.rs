//! NDJSON: one JSON object per line. Numbers and booleans are read as their
//! text; nested objects and arrays pass through as JSON text.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Read};

use serde_json::{Map, Value};

use super::input::InputFile;
use super::{BatchSink, MAX_RECORD_BYTES};
use crate::error::{Error, Result};
use crate::lead::{ColumnMap, LeadBuilder, RecordFields};
use crate::sinks::rejects::Reject;
use crate::sources::SourceProgress;

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
        let Ok(object) =
            serde_json::from_slice::<HashMap<Cow<'_, str>, serde::de::IgnoredAny>>(line)
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
    let index: HashMap<&str, usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
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
        let result = match serde_json::from_slice::<Map<String, Value>>(json) {
            Err(e) => Err(format!("not a JSON object: {e}")),
            Ok(object) => {
                let mut values: Vec<Option<Cow<'_, str>>> = vec![None; columns.len()];
                for (key, value) in &object {
                    match index.get(key.as_str()) {
                        Some(&i) => values[i] = text(value),
                        None if value.is_null() => {}
                        None => {
                            SourceProgress::add(&sink.progress.unkept_values, 1);
                            if unkept.insert(key.clone()) {
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

fn text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        other => Some(Cow::Owned(other.to_string())),
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
