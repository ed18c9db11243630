//! CSV as people export it: a UTF-8 BOM, CRLF, quoted fields holding commas,
//! quotes and newlines, `,` `;` tab or `|` as delimiter, headers in any case.

use std::io::BufRead;

use super::csv_records::{Record, Records};
use super::input::InputFile;
use super::{BatchSink, MAX_RECORD_BYTES};
use crate::error::{Error, Result};
use crate::lead::{ColumnMap, LeadBuilder, RecordFields};
use crate::sinks::rejects::Reject;

/// The header row of a CSV file.
pub(crate) fn header(
    file: &InputFile,
    input: Box<dyn BufRead + Send>,
    delimiter: Option<u8>,
) -> Result<Vec<String>> {
    let mut reader = records(input, delimiter);
    let mut record = Record::default();
    if !reader.read(&mut record).map_err(|e| bad(file, e))? {
        return Ok(Vec::new());
    }
    Ok(record
        .fields()
        .map(|h| {
            String::from_utf8_lossy(h)
                .trim()
                .trim_start_matches('\u{feff}')
                .to_string()
        })
        .collect())
}

/// Streams the records of one CSV file into `builder`.
pub(crate) fn read(
    file: &InputFile,
    input: Box<dyn BufRead + Send>,
    delimiter: Option<u8>,
    map: &ColumnMap,
    builder: &mut LeadBuilder,
    sink: &mut BatchSink,
) -> Result<()> {
    let mut reader = records(input, delimiter);
    let mut record = Record::default();
    if !reader.read(&mut record).map_err(|e| bad(file, e))? {
        return Ok(());
    }
    let width = record.len();
    // Only I/O fails, or a record too long to be a lead: the file is unreadable.
    while reader.read(&mut record).map_err(|e| bad(file, e))? {
        let result = if record.len() != width {
            Err(format!(
                "expected {width} fields as in the header, found {}",
                record.len()
            ))
        } else {
            builder.push(&CsvRecord::new(&record), map)
        };
        if let Err(reason) = result {
            sink.reject(Reject {
                source: file.name.clone(),
                line: Some(record.line() as i64),
                raw: raw_text(&record, reader.delimiter()),
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

/// The records of `input`, split by the given or sniffed delimiter. Field
/// counts are checked by the caller, so a short row becomes a reject, not
/// an error. A record longer than [`MAX_RECORD_BYTES`] is an error: the
/// reader holds a whole record in memory, and a quote never closed makes
/// the rest of a file one field.
fn records(
    mut input: Box<dyn BufRead + Send>,
    delimiter: Option<u8>,
) -> Records<Box<dyn BufRead + Send>> {
    let delimiter = delimiter.unwrap_or_else(|| sniff_delimiter(&mut input));
    Records::new(input, delimiter, MAX_RECORD_BYTES)
}

/// A record's fields as text. The record's bytes are checked as UTF-8 once,
/// all fields together, and each field is a slice of that text; only a
/// record that fails (or a field cut inside a character) is checked field
/// by field, so the reason names the field.
struct CsvRecord<'a> {
    record: &'a Record,
    text: Option<&'a str>,
}

impl<'a> CsvRecord<'a> {
    fn new(record: &'a Record) -> Self {
        Self {
            record,
            text: std::str::from_utf8(record.as_slice()).ok(),
        }
    }
}

impl RecordFields for CsvRecord<'_> {
    #[inline]
    fn field(&self, col: usize) -> Result<Option<&str>, String> {
        let Some(range) = self.record.range(col) else {
            return Ok(None);
        };
        if let Some(field) = self.text.and_then(|text| text.get(range.clone())) {
            return Ok(Some(field));
        }
        std::str::from_utf8(&self.record.as_slice()[range])
            .map(Some)
            .map_err(|e| format!("not valid UTF-8 (byte {} of the field)", e.valid_up_to()))
    }
}

/// The record as it would be written back, for the reject's `raw` column.
fn raw_text(record: &Record, delimiter: u8) -> String {
    let mut writer = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let _ = writer.write_record(record.fields());
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .trim_end_matches('\n')
        .to_string()
}

/// Picks the delimiter that splits the first line into the most fields,
/// counting only outside quotes. Commas win ties.
fn sniff_delimiter(input: &mut Box<dyn BufRead + Send>) -> u8 {
    let Ok(buf) = input.fill_buf() else {
        return b',';
    };
    let mut counts = [0usize; 4];
    let candidates = [b',', b';', b'\t', b'|'];
    let mut quoted = false;
    for &b in buf {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => break,
            _ if !quoted => {
                if let Some(i) = candidates.iter().position(|&c| c == b) {
                    counts[i] += 1;
                }
            }
            _ => {}
        }
    }
    let best = (0..4)
        .max_by_key(|&i| (counts[i], std::cmp::Reverse(i)))
        .unwrap_or(0);
    if counts[best] == 0 {
        b','
    } else {
        candidates[best]
    }
}

fn bad(file: &InputFile, e: std::io::Error) -> Error {
    Error::BadInput {
        source_name: file.name.clone(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_text_unless_their_own_bytes_are_not() {
        let record = Record::from_fields(&[b"caf\xc3\xa9", b"", b"\xff", b"ok"]);
        let fields = CsvRecord::new(&record);
        assert_eq!(fields.field(0), Ok(Some("caf\u{e9}")));
        assert_eq!(fields.field(1), Ok(Some("")));
        assert_eq!(
            fields.field(2),
            Err("not valid UTF-8 (byte 0 of the field)".to_string())
        );
        assert_eq!(fields.field(3), Ok(Some("ok")));
        assert_eq!(fields.field(4), Ok(None));
        // A character cut by a delimiter: the record's bytes are valid
        // together, each field is not.
        let record = Record::from_fields(&[b"a\xc3", b"\xa9b"]);
        let fields = CsvRecord::new(&record);
        assert!(fields.text.is_some());
        assert_eq!(
            fields.field(0),
            Err("not valid UTF-8 (byte 1 of the field)".to_string())
        );
        assert_eq!(
            fields.field(1),
            Err("not valid UTF-8 (byte 0 of the field)".to_string())
        );
    }
}
