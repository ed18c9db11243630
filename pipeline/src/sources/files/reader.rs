//! Byte streams of input files, local or remote, counted for the progress bar.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::ObjectStoreExt;

use super::input::{Format, InputFile, Place};
use crate::error::{Error, Result};
use crate::sources::SourceProgress;

/// The file's bytes from the start, buffered. Blocking: call it on a blocking thread.
pub(crate) fn open(
    file: &InputFile,
    progress: Arc<SourceProgress>,
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
        Counting { inner, progress },
    )))
}

/// The column names of a file: a CSV header, every key of an NDJSON file (in
/// order of first appearance), a Parquet schema.
pub(crate) fn columns(file: &InputFile, delimiter: Option<u8>) -> Result<Vec<String>> {
    let progress = Arc::new(SourceProgress::default());
    match file.format {
        Format::Csv => super::csv::header(file, open(file, progress)?, delimiter),
        Format::Ndjson => super::ndjson::keys(open(file, progress)?),
        Format::Parquet => super::parquet::columns(file),
    }
}

struct Counting {
    inner: Box<dyn Read + Send>,
    progress: Arc<SourceProgress>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        SourceProgress::add(&self.progress.bytes_read, n as u64);
        Ok(n)
    }
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
