//! Byte streams of input files, local or remote, counted for the progress bar.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::{GetOptions, GetRange, ObjectStoreExt};
use xxhash_rust::xxh3::Xxh3;

use super::input::{Format, InputFile, Place};
use crate::error::{Error, Result};
use crate::sources::SourceProgress;

/// What identifies an input file's content, whatever it is called: a hash of
/// every byte as it is read.
#[derive(Clone, Default)]
pub(crate) struct ContentHash(Arc<Mutex<Xxh3>>);

impl ContentHash {
    /// The content id once the whole file has been read: `xxh3:<hash>:<size>`.
    pub(crate) fn id(&self, size: u64) -> String {
        let hash = self.0.lock().expect("hasher lock").digest();
        format!("xxh3:{hash:016x}:{size}")
    }
}

/// The file's bytes from the start, buffered, hashed into `hash` as they
/// are read. Blocking: call it on a blocking thread.
pub(crate) fn open_hashed(
    file: &InputFile,
    progress: Arc<SourceProgress>,
    hash: ContentHash,
) -> Result<Box<dyn BufRead + Send>> {
    open_with(file, progress, Some(hash))
}

/// The file's bytes from the start, buffered. Blocking: call it on a blocking thread.
pub(crate) fn open(
    file: &InputFile,
    progress: Arc<SourceProgress>,
) -> Result<Box<dyn BufRead + Send>> {
    open_with(file, progress, None)
}

fn open_with(
    file: &InputFile,
    progress: Arc<SourceProgress>,
    hash: Option<ContentHash>,
) -> Result<Box<dyn BufRead + Send>> {
    let inner: Box<dyn Read + Send> = match &file.place {
        Place::Local(path) => Box::new(std::fs::File::open(path).map_err(|e| Error::io(path, e))?),
        Place::Object { store, path } => {
            let handle = tokio::runtime::Handle::current();
            let (store, path) = (store.clone(), path.clone());
            let stream = handle
                .block_on(async move { store.get(&path).await })?
                .into_stream();
            Box::new(ObjectReader {
                handle,
                stream,
                chunk: Bytes::new(),
            })
        }
    };
    Ok(Box::new(BufReader::with_capacity(
        256 * 1024,
        Counting {
            inner,
            progress,
            hash,
        },
    )))
}

/// The column names of a file: a CSV header, every key of an NDJSON file (in
/// order of first appearance), a Parquet schema.
pub(crate) fn columns(file: &InputFile, delimiter: Option<u8>) -> Result<Vec<String>> {
    let progress = Arc::new(SourceProgress::default());
    match file.format {
        Format::Csv => super::csv::header(file, utf8(file, open(file, progress)?)?, delimiter),
        Format::Ndjson => super::ndjson::keys(utf8(file, open(file, progress)?)?),
        Format::Parquet => super::parquet::columns(file),
    }
}

/// `input`, unless it starts with a UTF-16 or UTF-32 byte-order mark: such a
/// file would read as one field per line of garbage, so say what it is.
fn utf8(file: &InputFile, mut input: Box<dyn BufRead + Send>) -> Result<Box<dyn BufRead + Send>> {
    let start = input.fill_buf().map_err(|e| Error::io(&file.name, e))?;
    let encoding = match start {
        [0xFF, 0xFE, 0, 0, ..] | [0, 0, 0xFE, 0xFF, ..] => Some("UTF-32"),
        [0xFF, 0xFE, ..] | [0xFE, 0xFF, ..] => Some("UTF-16"),
        _ => None,
    };
    match encoding {
        Some(encoding) => Err(Error::BadInput {
            source_name: file.name.clone(),
            reason: format!(
                "the file is {encoding} text; leadflow reads UTF-8: convert it first, \
                 e.g. iconv -f {encoding} -t UTF-8 IN > OUT"
            ),
        }),
        None => Ok(input),
    }
}

struct Counting {
    inner: Box<dyn Read + Send>,
    progress: Arc<SourceProgress>,
    hash: Option<ContentHash>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        SourceProgress::add(&self.progress.bytes_read, n as u64);
        if let Some(hash) = &self.hash {
            hash.0.lock().expect("hasher lock").update(&buf[..n]);
        }
        Ok(n)
    }
}

/// The last `n` bytes of `file` (all of it when shorter). Blocking: call it
/// on a blocking thread.
fn tail(file: &InputFile, n: u64) -> Result<Bytes> {
    let n = n.min(file.size);
    match &file.place {
        Place::Local(path) => {
            use std::io::{Seek, SeekFrom};
            let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            f.seek(SeekFrom::End(-(n as i64)))
                .map_err(|e| Error::io(path, e))?;
            let mut tail = Vec::with_capacity(n as usize);
            f.read_to_end(&mut tail).map_err(|e| Error::io(path, e))?;
            Ok(Bytes::from(tail))
        }
        Place::Object { store, path } => {
            let options = GetOptions {
                range: Some(GetRange::Suffix(n)),
                ..Default::default()
            };
            let (store, path) = (store.clone(), path.clone());
            Ok(tokio::runtime::Handle::current().block_on(async move {
                let got = store.get_opts(&path, options).await?;
                got.bytes().await
            })?)
        }
    }
}

/// A Parquet file's content id, from its footer: the footer records every
/// column chunk's offset, size and statistics, so two files with one footer
/// hold the same data. Reads only the footer. Blocking.
pub(crate) fn parquet_content_id(file: &InputFile) -> Result<String> {
    let hash = xxhash_rust::xxh3::xxh3_64(&tail(file, 64 * 1024)?);
    Ok(format!("parquet-footer:{hash:016x}:{}", file.size))
}

/// Blocking `Read` over an object store GET stream.
struct ObjectReader {
    handle: tokio::runtime::Handle,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// Checks the end of a Parquet file before anything parses it: the magic
/// bytes, and a footer no longer than the file. (parquet's decoder panics on
/// a footer length past the start of the file.)
pub async fn check_parquet_footer(file: &InputFile) -> Result<()> {
    let bad = |reason: String| {
        Err(Error::BadInput {
            source_name: file.name.clone(),
            reason,
        })
    };
    if file.size < 12 {
        return bad(format!(
            "not a Parquet file: {} bytes is too short for one",
            file.size
        ));
    }
    let tail = {
        let file = file.clone();
        tokio::task::spawn_blocking(move || tail(&file, 8))
            .await
            .map_err(|e| Error::Internal(format!("reading a Parquet footer: {e}")))??
    };
    if &tail[4..] != b"PAR1" {
        return bad("not a Parquet file (it does not end in PAR1)".into());
    }
    let footer = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")));
    if footer + 12 > file.size {
        return bad(format!(
            "its footer claims {footer} bytes, more than the file's {}: the file is cut short or corrupt",
            file.size
        ));
    }
    Ok(())
}
