//! CSV as people export it: a UTF-8 BOM, CRLF, quoted fields holding commas,
//! quotes and newlines, `,` `;` tab or `|` as delimiter, headers in any case.

use std::io::{BufRead, Read};

use csv::{ByteRecord, ReaderBuilder};

use super::input::InputFile;
use super::{BatchSink, MAX_RECORD_BYTES};
use crate::error::{Error, Result};
use crate::lead::{ColumnMap, LeadBuilder, RecordFields};
use crate::sinks::rejects::Reject;

/// The header row of a CSV file.
pub(crate) fn header(
    file: &InputFile,
    mut input: Box<dyn BufRead + Send>,
    delimiter: Option<u8>,
) -> Result<Vec<String>> {
    let delimiter = delimiter.unwrap_or_else(|| sniff_delimiter(&mut input));
    let mut reader = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(Bounded::new(input));
    let mut record = ByteRecord::new();
    let found = reader
        .read_byte_record(&mut record)
        .map_err(|e| bad(file, e))?;
    if !found {
        return Ok(Vec::new());
    }
    Ok(record
        .iter()
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
    let (mut reader, delimiter) = reader(input, delimiter);
    let mut record = ByteRecord::new();
    if !reader
        .read_byte_record(&mut record)
        .map_err(|e| bad(file, e))?
    {
        return Ok(());
    }
    let width = record.len();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            // Only I/O can fail with `flexible` byte records; the file is unreadable.
            Err(e) => return Err(bad(file, e)),
        }
        let line = record.position().map(|p| p.line() as i64);
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
                line,
                raw: raw_text(&record, delimiter),
                reason,
            });
        }
        let (end, line) = (reader.position().byte(), reader.position().line());
        reader.get_mut().record_ended(end, line);
        sink.after_record(builder)?;
        if sink.is_closed() {
            break;
        }
    }
    Ok(())
}

/// A record reader that checks field counts itself (so a short row becomes a
/// reject, not an error), with the given or sniffed delimiter.
fn reader(mut input: Box<dyn BufRead + Send>, delimiter: Option<u8>) -> (csv::Reader<Bounded>, u8) {
    let delimiter = delimiter.unwrap_or_else(|| sniff_delimiter(&mut input));
    let reader = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(Bounded::new(input));
    (reader, delimiter)
}

/// The file as the CSV reader reads it, which fails once the record being
/// read passes [`MAX_RECORD_BYTES`]: the reader holds a whole record in
/// memory, and a quote never closed makes the rest of a file one field.
struct Bounded {
    input: Box<dyn BufRead + Send>,
    /// Bytes handed to the CSV reader so far.
    read: u64,
    /// Where the last whole record ended, and on which line.
    record_end: u64,
    line: u64,
}

impl Bounded {
    fn new(input: Box<dyn BufRead + Send>) -> Self {
        Self {
            input,
            read: 0,
            record_end: 0,
            line: 1,
        }
    }

    fn record_ended(&mut self, byte: u64, line: u64) {
        self.record_end = byte;
        self.line = line;
    }
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        self.read += n as u64;
        // The reader reads ahead a buffer at a time: a record is too long
        // only well past the limit, never because of that.
        if self.read - self.record_end > MAX_RECORD_BYTES + (1 << 20) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the record starting on line {} is longer than {} MiB: a quoted field \
                     whose closing quote is missing? (the rest of the file would be one field)",
                    self.line,
                    MAX_RECORD_BYTES >> 20
                ),
            ));
        }
        Ok(n)
    }
}

/// A record's fields as text. The record's bytes are checked as UTF-8 once,
/// all fields together, and each field is a slice of that text; only a
/// record that fails (or a field cut inside a character) is checked field
/// by field, so the reason names the field.
struct CsvRecord<'a> {
    record: &'a ByteRecord,
    text: Option<&'a str>,
}

impl<'a> CsvRecord<'a> {
    fn new(record: &'a ByteRecord) -> Self {
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
fn raw_text(record: &ByteRecord, delimiter: u8) -> String {
    let mut writer = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let _ = writer.write_byte_record(record);
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

fn bad(file: &InputFile, e: csv::Error) -> Error {
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
        let record = ByteRecord::from(vec![&b"caf\xc3\xa9"[..], b"", b"\xff", b"ok"]);
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
        let record = ByteRecord::from(vec![&b"a\xc3"[..], b"\xa9b"]);
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
