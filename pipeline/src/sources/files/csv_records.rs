//! CSV records as the `csv` crate reads them (RFC 4180 quoting, `\n`, `\r`
//! and `\r\n` as terminators, blank lines skipped), with two differences:
//!
//! - A line without a quote or a stray `\r` is split here, a `memchr` for
//!   its end and one pass over it for its delimiters, into one copy of
//!   the line; so is a line whose quoted fields are the spreadsheet kind
//!   (`"Smith, Ann"`, `""` for a quote), and lines a quoted field's line
//!   breaks join into one record (a CRM's multi-line note). Only a record
//!   with another use of quotes (text after a closing quote, a `\r`
//!   outside the record's end) goes through `csv_core`'s state machine,
//!   which `csv::Reader` runs for every byte; so does every record when
//!   the delimiter is `"`, `\r` or `\n`.
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
        let fast = !matches!(self.delimiter, b'"' | b'\r' | b'\n');
        if let Some(mut end) = memchr::memchr(b'\n', buf).filter(|_| fast) {
            // The record's lines so far: more while a quoted field is open
            // at the end of the last one and the buffer holds the next.
            let mut lines = 1;
            loop {
                let line = match &buf[..end] {
                    [head @ .., b'\r'] => head,
                    line => line,
                };
                let split = split_line(line, self.delimiter, record);
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

    /// A record `split_line` cannot read (or a line the buffer
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

/// Lines of one record the fast path joins before leaving it to
/// `csv_core` (a quoted field with more line breaks than that).
const MAX_JOINED_LINES: u64 = 16;

/// What [`split_line`] made of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    /// Its record, whole.
    Done,
    /// A quoted field is still open where the line ends: the line break is
    /// the field's, and the record goes on on the next line.
    Open,
    /// Quotes used otherwise, or a `\r`: for `csv_core`.
    Other,
}

/// Splits a line (its `\r\n`'s `\r` taken off) whose fields are plain or
/// quoted the common way: `"…"` from a field's start to its end, with `""`
/// for a quote (the spreadsheet's `"Smith, Ann"`, `"Umbrella ""Bio"""`).
/// [`Split::Open`] when the last field's closing quote is not in the line,
/// [`Split::Other`] for any other use of quotes or a `\r` (with `record`
/// half filled either way). One pass over the line finds every delimiter,
/// quote and `\r` ([`Marks`]); the fields are copied between them.
fn split_line(line: &[u8], delimiter: u8, record: &mut Record) -> Split {
    let mut marks = Marks::new(line, [delimiter, b'"', b'\r']);
    // The field's first byte in `line`.
    let mut start = 0;
    loop {
        let first = record.bytes.len() as u32;
        if line.get(start) == Some(&b'"') {
            // Copy from `from` to the next quote, which closes the field or
            // with the one after it stands for a quote.
            let mut from = start + 1;
            loop {
                let close = loop {
                    match marks.next() {
                        None => return Split::Open,
                        // The opening quote, or the second of a `""`.
                        Some(at) if at < from => {}
                        Some(at) if line[at] == b'"' => break at,
                        Some(at) if line[at] == b'\r' => return Split::Other,
                        // A delimiter inside the quotes: the field's.
                        Some(_) => {}
                    }
                };
                record.bytes.extend_from_slice(&line[from..close]);
                match line.get(close + 1) {
                    Some(b'"') => {
                        record.bytes.push(b'"');
                        from = close + 2;
                    }
                    None => {
                        record.bounds.push((first, record.bytes.len() as u32));
                        return Split::Done;
                    }
                    Some(&b) if b == delimiter => {
                        record.bounds.push((first, record.bytes.len() as u32));
                        start = close + 2;
                        // The delimiter just read.
                        marks.next();
                        break;
                    }
                    Some(_) => return Split::Other,
                }
            }
        } else {
            let end = match marks.next() {
                None => line.len(),
                Some(at) if line[at] == delimiter => at,
                // A quote inside an unquoted field, or a `\r`.
                Some(_) => return Split::Other,
            };
            record.bytes.extend_from_slice(&line[start..end]);
            record.bounds.push((first, record.bytes.len() as u32));
            if end == line.len() {
                return Split::Done;
            }
            start = end + 1;
        }
    }
}

/// The places in a line of any of three bytes, in order, found sixteen
/// bytes at a time: a record's fields are short, and a `memchr` for each
/// field's end (and one for a quote inside it) cost more in calls than in
/// bytes (a line of the foreign corpus: ~20 calls, ~1k instructions).
/// Eight bytes at a time in a `u64` was tried: no fewer instructions than
/// the `memchr`s.
struct Marks<'a> {
    line: &'a [u8],
    /// Where the chunk `found` was read from.
    at: usize,
    /// A bit for each mark in that chunk still to be returned.
    found: u32,
    finder: Finder,
}

impl<'a> Marks<'a> {
    fn new(line: &'a [u8], bytes: [u8; 3]) -> Self {
        let mut marks = Self {
            line,
            at: 0,
            found: 0,
            finder: Finder::new(bytes),
        };
        marks.found = marks.chunk(0);
        marks
    }

    /// The marks in the sixteen bytes at `at` (fewer at the line's end).
    fn chunk(&self, at: usize) -> u32 {
        let rest = &self.line[at..];
        match rest.first_chunk::<16>() {
            Some(chunk) => self.finder.marks(chunk),
            None => {
                let mut chunk = [0; 16];
                chunk[..rest.len()].copy_from_slice(rest);
                self.finder.marks(&chunk) & ((1 << rest.len()) - 1)
            }
        }
    }
}

impl Iterator for Marks<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.found == 0 {
            if self.at + 16 >= self.line.len() {
                return None;
            }
            self.at += 16;
            self.found = self.chunk(self.at);
        }
        let byte = self.found.trailing_zeros() as usize;
        self.found &= self.found - 1;
        Some(self.at + byte)
    }
}

/// Which of sixteen bytes are one of three: SSE2's byte compares where the
/// target has SSE2 (every x86-64 one but the kernel, bare-metal and UEFI
/// targets, which turn it off), a loop over the bytes elsewhere.
#[derive(Clone, Copy)]
struct Finder([u8; 3]);

impl Finder {
    fn new(bytes: [u8; 3]) -> Self {
        Self(bytes)
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline]
    fn marks(&self, chunk: &[u8; 16]) -> u32 {
        // SAFETY: compiled only for targets with SSE2 enabled, so the CPU
        // running this has it.
        unsafe { sse2_marks(chunk, self.0) }
    }

    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    #[inline]
    fn marks(&self, chunk: &[u8; 16]) -> u32 {
        portable_marks(chunk, self.0)
    }
}

/// # Safety
/// The CPU must have SSE2.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
unsafe fn sse2_marks(chunk: &[u8; 16], [a, b, c]: [u8; 3]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: `chunk` is sixteen readable bytes; `loadu` needs no alignment.
    let v = unsafe { _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>()) };
    // `as i8` keeps the byte's bits, which is all the compare looks at.
    let equal = |byte: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(byte as i8));
    _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(equal(a), equal(b)), equal(c))) as u32
}

/// [`Finder::marks`] a byte at a time (other targets, and a test's
/// reference).
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn portable_marks(chunk: &[u8; 16], [a, b, c]: [u8; 3]) -> u32 {
    (0..16).fold(0, |marks, i| {
        let x = chunk[i];
        marks | u32::from(x == a || x == b || x == c) << i
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same_as_the_csv_crate(data: &[u8], buffer: usize) {
        same_as_the_csv_crate_with(data, buffer, b',');
    }

    fn same_as_the_csv_crate_with(data: &[u8], buffer: usize, delimiter: u8) {
        let shown = String::from_utf8_lossy(data);
        let mut theirs = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(data);
        let mut ours = Records::new(
            std::io::BufReader::with_capacity(buffer, data),
            delimiter,
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
    fn quotes_at_every_offset_of_a_chunk_and_other_delimiters_read_as_the_csv_crate_does() {
        for delimiter in [b',', b'\t', b';', b'"'] {
            let d = char::from(delimiter);
            for pad in 0..40 {
                let p = "p".repeat(pad);
                let data = format!(
                    "{p}{d}\"a\"\"b\"{d}c{d}\"x{d}y\"{d}\"\"\n{p}\"q\"\"\"{d}\"z\nw\"{d}e\"n\"d\r\n{p}{d}\n"
                );
                for buffer in [1, 7, 64, 4096] {
                    same_as_the_csv_crate_with(data.as_bytes(), buffer, delimiter);
                }
            }
        }
    }

    #[test]
    fn marks_are_every_place_of_the_three_bytes_and_no_other() {
        // Each special, and bytes one bit or one value from one, mixed
        // with random bytes, in lines across one to three chunks.
        let near = [
            b',', b'"', b'\r', b'-', b'+', b'#', b'!', 0x0c, 0x0e, 0xac, 0xa2, 0x00, 0xff,
        ];
        let mut random = crate::sources::xorshift(0x2545_f491_4f6c_dd1d);
        for _ in 0..50_000 {
            let len = (random() % 41) as usize;
            let line: Vec<u8> = (0..len)
                .map(|_| match random() % 3 {
                    0 => random() as u8,
                    _ => near[(random() % near.len() as u64) as usize],
                })
                .collect();
            for specials in [[b',', b'"', b'\r'], [b'\t', b'"', b'\r'], [0, 0x80, 0xff]] {
                let want: Vec<usize> = (0..line.len())
                    .filter(|&i| specials.contains(&line[i]))
                    .collect();
                let got: Vec<usize> = Marks::new(&line, specials).collect();
                assert_eq!(got, want, "{line:?} {specials:?}");
                for chunk in line.windows(16) {
                    let chunk: &[u8; 16] = chunk.try_into().unwrap();
                    let finder = Finder::new(specials);
                    assert_eq!(finder.marks(chunk), portable_marks(chunk, specials));
                }
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
