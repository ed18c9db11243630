//! CSV records as the `csv` crate reads them (RFC 4180 quoting, `\n`, `\r`
//! and `\r\n` as terminators, blank lines skipped), with two differences:
//!
//! - A line without a quote or a stray `\r` is split here, a `memchr` for
//!   its end and for each delimiter, into one copy of the line; so is a
//!   line whose quoted fields are the spreadsheet kind (`"Smith, Ann"`,
//!   `""` for a quote), and lines a quoted field's line breaks join into
//!   one record (a CRM's multi-line note). Only a record with another use
//!   of quotes (text after a closing quote, a `\r` outside the record's
//!   end) goes through `csv_core`'s state machine, which `csv::Reader` runs
//!   for every byte.
//! - A record's line is the line its first byte is on. `csv::Reader` gives
//!   the line where the previous record ended: after a `\r\n` it has not
//!   read the `\n` yet, so in a CRLF file every record after the first was
//!   named one line too early.
//!
//! A unit test reads random mixes of quotes, CRs, LFs, delimiters and
//! multi-byte text through both readers, with every buffer size from one
//! byte, and holds the records to be the same.

use std::io::BufRead;
use std::ops::Range;

use csv_core::ReadRecordResult;

/// One record: its fields' bytes and where each field is in them.
#[derive(Debug, Default)]
pub(crate) struct Record {
    bytes: Vec<u8>,
    /// Each field's start and end in `bytes`.
    bounds: Vec<(u32, u32)>,
    line: u64,
}

impl Record {
    pub(crate) fn len(&self) -> usize {
        self.bounds.len()
    }

    /// Field `i`'s place in [`Self::as_slice`].
    #[inline]
    pub(crate) fn range(&self, i: usize) -> Option<Range<usize>> {
        self.bounds.get(i).map(|&(s, e)| s as usize..e as usize)
    }

    /// The bytes of every field, and perhaps delimiters between them.
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn fields(&self) -> impl Iterator<Item = &[u8]> {
        self.bounds
            .iter()
            .map(|&(s, e)| &self.bytes[s as usize..e as usize])
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.bounds.clear();
    }

    /// The line the record starts on (1-based).
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    /// A record of these fields, one after another.
    #[cfg(test)]
    pub(crate) fn from_fields(fields: &[&[u8]]) -> Self {
        let mut record = Self::default();
        for field in fields {
            let start = record.bytes.len() as u32;
            record.bytes.extend_from_slice(field);
            record.bounds.push((start, record.bytes.len() as u32));
        }
        record
    }
}

/// Reads [`Record`]s from `input`, refusing one longer than `max_bytes`.
pub(crate) struct Records<R> {
    input: R,
    core: csv_core::Reader,
    delimiter: u8,
    max_bytes: u64,
    /// The line the next byte is on.
    line: u64,
    eof: bool,
    /// `csv_core`'s output for a quoted record: its fields, and where each ends.
    out: Vec<u8>,
    ends: Vec<usize>,
}

impl<R: BufRead> Records<R> {
    pub(crate) fn new(input: R, delimiter: u8, max_bytes: u64) -> Self {
        Self {
            input,
            core: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            delimiter,
            max_bytes,
            line: 1,
            eof: false,
            out: vec![0; 1024],
            ends: vec![0; 64],
        }
    }

    pub(crate) fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// The next record into `record`; `false` at the end of the input.
    pub(crate) fn read(&mut self, record: &mut Record) -> std::io::Result<bool> {
        record.clear();
        if self.eof {
            return Ok(false);
        }
        // Blank lines, and the `\n` of a `\r\n` the state machine stopped
        // at, belong to no record.
        loop {
            let buf = self.input.fill_buf()?;
            let blank = buf
                .iter()
                .take_while(|&&b| b == b'\n' || b == b'\r')
                .count();
            if blank == 0 {
                break;
            }
            self.line += memchr::memchr_iter(b'\n', &buf[..blank]).count() as u64;
            self.input.consume(blank);
        }
        record.line = self.line;
        let buf = self.input.fill_buf()?;
        if let Some(mut end) = memchr::memchr(b'\n', buf) {
            // The record's lines so far: more while a quoted field is open
            // at the end of the last one and the buffer holds the next.
            let mut lines = 1;
            loop {
                let line = match &buf[..end] {
                    [head @ .., b'\r'] => head,
                    line => line,
                };
                let split = match memchr::memchr2(b'"', b'\r', line) {
                    None => {
                        split_plain(line, self.delimiter, record);
                        Split::Done
                    }
                    Some(at) if line[at] == b'"' && memchr::memchr(b'\r', line).is_none() => {
                        split_simply_quoted(line, self.delimiter, record)
                    }
                    Some(_) => Split::Other,
                };
                if split == Split::Done {
                    self.input.consume(end + 1);
                    self.line += lines;
                    return Ok(true);
                }
                record.clear();
                let next = (split == Split::Open && lines < MAX_JOINED_LINES)
                    .then(|| memchr::memchr(b'\n', &buf[end + 1..]))
                    .flatten();
                let Some(next) = next else { break };
                // The line break is inside the quoted field: read again
                // with the next line joined. Each read starts over from the
                // record's first byte, so a field left open costs at most
                // `MAX_JOINED_LINES` reads of what the buffer holds (256
                // KiB, below `max_bytes`, which only `read_quoted` checks)
                // before `csv_core` takes it.
                end += 1 + next;
                lines += 1;
            }
        }
        self.read_quoted(record)
    }

    /// A record `split_simply_quoted` cannot read (or a line the buffer
    /// does not hold whole), through `csv_core`.
    fn read_quoted(&mut self, record: &mut Record) -> std::io::Result<bool> {
        let (mut out_len, mut ends_len, mut consumed) = (0, 0, 0u64);
        loop {
            let input = self.input.fill_buf()?;
            let (result, read, written, ended) =
                self.core
                    .read_record(input, &mut self.out[out_len..], &mut self.ends[ends_len..]);
            self.line += memchr::memchr_iter(b'\n', &input[..read]).count() as u64;
            self.input.consume(read);
            consumed += read as u64;
            out_len += written;
            ends_len += ended;
            if consumed > self.max_bytes {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "the record starting on line {} is longer than {} MiB: a quoted field \
                         whose closing quote is missing? (the rest of the file would be one field)",
                        record.line,
                        self.max_bytes >> 20
                    ),
                ));
            }
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let len = self.out.len() * 2;
                    self.out.resize(len, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len() * 2;
                    self.ends.resize(len, 0);
                }
                ReadRecordResult::Record => {
                    record.bytes.extend_from_slice(&self.out[..out_len]);
                    let mut start = 0;
                    for &end in &self.ends[..ends_len] {
                        record.bounds.push((start as u32, end as u32));
                        start = end;
                    }
                    return Ok(true);
                }
                ReadRecordResult::End => {
                    self.eof = true;
                    return Ok(false);
                }
            }
        }
    }
}

/// A line without quotes: one copy, fields where the delimiters are.
fn split_plain(line: &[u8], delimiter: u8, record: &mut Record) {
    record.bytes.extend_from_slice(line);
    let mut start = 0;
    for at in memchr::memchr_iter(delimiter, line) {
        record.bounds.push((start as u32, at as u32));
        start = at + 1;
    }
    record.bounds.push((start as u32, line.len() as u32));
}

/// Lines of one record the fast path joins before leaving it to
/// `csv_core` (a quoted field with more line breaks than that).
const MAX_JOINED_LINES: u64 = 16;

/// What [`split_simply_quoted`] made of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    /// Its record, whole.
    Done,
    /// A quoted field is still open where the line ends: the line break is
    /// the field's, and the record goes on on the next line.
    Open,
    /// Quotes used otherwise: for `csv_core`.
    Other,
}

/// A line whose quoted fields are the common kind: `"…"` from a field's
/// start to its end, with `""` for a quote (the spreadsheet's
/// `"Smith, Ann"`, `"Umbrella ""Bio"""`). [`Split::Open`] when the last
/// field's closing quote is not in the line, [`Split::Other`] for any
/// other use of quotes (with `record` half filled either way).
fn split_simply_quoted(line: &[u8], delimiter: u8, record: &mut Record) -> Split {
    let mut at = 0;
    loop {
        let rest = &line[at..];
        let start = record.bytes.len() as u32;
        if rest.first() == Some(&b'"') {
            // `rest[taken..]` is what is left of the field after its
            // opening quote and any `""` read so far.
            let mut taken = 1;
            loop {
                let left = &rest[taken..];
                let Some(close) = memchr::memchr(b'"', left) else {
                    return Split::Open;
                };
                record.bytes.extend_from_slice(&left[..close]);
                match left.get(close + 1) {
                    Some(b'"') => {
                        record.bytes.push(b'"');
                        taken += close + 2;
                    }
                    None => {
                        record.bounds.push((start, record.bytes.len() as u32));
                        return Split::Done;
                    }
                    Some(&b) if b == delimiter => {
                        record.bounds.push((start, record.bytes.len() as u32));
                        at += taken + close + 2;
                        break;
                    }
                    Some(_) => return Split::Other,
                }
            }
        } else {
            let end = memchr::memchr(delimiter, rest).unwrap_or(rest.len());
            if memchr::memchr(b'"', &rest[..end]).is_some() {
                return Split::Other;
            }
            record.bytes.extend_from_slice(&rest[..end]);
            record.bounds.push((start, record.bytes.len() as u32));
            if end == rest.len() {
                return Split::Done;
            }
            at += end + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same_as_the_csv_crate(data: &[u8], buffer: usize) {
        let shown = String::from_utf8_lossy(data);
        let mut theirs = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(data);
        let mut ours = Records::new(
            std::io::BufReader::with_capacity(buffer, data),
            b',',
            1 << 20,
        );
        let (mut a, mut b) = (csv::ByteRecord::new(), Record::default());
        loop {
            let more = theirs.read_byte_record(&mut a).unwrap();
            assert_eq!(ours.read(&mut b).unwrap(), more, "{shown:?}");
            if !more {
                break;
            }
            assert_eq!(
                a.iter().collect::<Vec<_>>(),
                b.fields().collect::<Vec<_>>(),
                "{shown:?}"
            );
            // The record's line is its first byte's: the lines before it
            // end at or after where csv says the previous record ended.
            let ended = a.position().unwrap().byte() as usize;
            let skipped = data[ended..]
                .iter()
                .take_while(|&&c| c == b'\r' || c == b'\n')
                .count();
            let first = ended + skipped;
            let line = 1 + data[..first].iter().filter(|&&c| c == b'\n').count() as u64;
            assert_eq!(b.line(), line, "{shown:?}");
        }
    }

    #[test]
    fn records_are_the_csv_crates_and_lines_are_where_records_start() {
        let pieces: &[&[u8]] = &[
            b"a",
            b"bc",
            b",",
            b"\"",
            b"\r",
            b"\n",
            b"\r\n",
            "\u{e9}".as_bytes(),
            b" ",
            b"x,y\n",
            b"p,\"q\"\r\n",
            b"\"a,b\",",
            b"\"\"",
            b",\"c\"\n",
            b"\"d\"\"e\"",
            b"\"f\ng\",",
        ];
        let mut random = crate::sources::xorshift(0x9e37_79b9_7f4a_7c15);
        let mut next = move || random() as usize;
        for _ in 0..20_000 {
            let mut data = Vec::new();
            for _ in 0..next() % 30 {
                data.extend_from_slice(pieces[next() % pieces.len()]);
            }
            for buffer in [1, 2, 3, 7, 64] {
                same_as_the_csv_crate(&data, buffer);
            }
        }
    }

    #[test]
    fn a_crlf_files_records_are_on_their_own_lines() {
        let data = b"h1,h2\r\na,1\r\n\r\n\"b\r\nc\",2\r\nd,3\r\n";
        let mut records = Records::new(&data[..], b',', 1 << 20);
        let mut record = Record::default();
        let mut lines = Vec::new();
        while records.read(&mut record).unwrap() {
            lines.push((record.line(), record.fields().count()));
        }
        assert_eq!(lines, vec![(1, 2), (2, 2), (4, 2), (6, 2)]);
    }

    #[test]
    fn a_quoted_fields_line_breaks_join_its_lines_into_one_record() {
        let data =
            b"n,note,t\r\na,\"re-engage\nnext \"\"year\"\"\",1\r\nb,\"x\n\ny\n\",2\r\nc,,3\r\n";
        let mut records = Records::new(&data[..], b',', 1 << 20);
        let mut record = Record::default();
        let mut seen = Vec::new();
        while records.read(&mut record).unwrap() {
            let fields: Vec<String> = record
                .fields()
                .map(|f| String::from_utf8(f.to_vec()).unwrap())
                .collect();
            seen.push((record.line(), fields));
        }
        let row = |line, fields: [&str; 3]| (line, fields.map(String::from).to_vec());
        assert_eq!(
            seen,
            vec![
                row(1, ["n", "note", "t"]),
                row(2, ["a", "re-engage\nnext \"year\"", "1"]),
                row(4, ["b", "x\n\ny\n", "2"]),
                row(8, ["c", "", "3"]),
            ]
        );
    }

    #[test]
    fn a_record_over_the_limit_is_refused_naming_its_line() {
        let mut data = b"a,b\n\"open".to_vec();
        data.extend(std::iter::repeat_n(b'x', 5000));
        let mut records =
            Records::new(std::io::BufReader::with_capacity(64, &data[..]), b',', 1000);
        let mut record = Record::default();
        assert!(records.read(&mut record).unwrap());
        let err = records.read(&mut record).unwrap_err().to_string();
        assert!(err.contains("starting on line 2"), "{err}");
    }
}
