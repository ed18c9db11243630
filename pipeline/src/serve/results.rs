//! A job's results as the client asks for them: NDJSON, CSV or Parquet,
//! encoded a batch at a time as the body streams, so memory holds one
//! batch whatever the job's size.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::ArrowWriter;
use futures::{Stream, StreamExt};

use super::problem::Problem;
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Ndjson,
    Csv,
    Parquet,
}

impl Format {
    /// The `format` of a results query string (NDJSON when there is none).
    pub(super) fn of(query: Option<&str>) -> std::result::Result<Self, Problem> {
        let mut format = Self::Ndjson;
        for value in super::only_parameter(query, "format", "a job's results (they take")? {
            format = match value.as_str() {
                "ndjson" => Self::Ndjson,
                "csv" => Self::Csv,
                "parquet" => Self::Parquet,
                other => {
                    return Err(Problem::invalid(
                        "format",
                        format!("format `{other}`: expected ndjson, csv or parquet"),
                    ));
                }
            };
        }
        Ok(format)
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Ndjson => "application/x-ndjson",
            Self::Csv => "text/csv",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Ndjson => "ndjson",
            Self::Csv => "csv",
            Self::Parquet => "parquet",
        }
    }
}

/// A 200 streaming `batches` as `format`; `schema` is the Parquet file's
/// when there is no batch.
pub(super) fn response(
    id: &str,
    format: Format,
    batches: impl Stream<Item = Result<RecordBatch>> + Send + 'static,
    schema: SchemaRef,
) -> Response {
    let body = Body::from_stream(encode(format, batches, schema));
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(disposition) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{id}.{}\"",
        format.extension()
    )) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    response
}

/// The bytes of `batches` as `format`, a batch at a time.
fn encode(
    format: Format,
    batches: impl Stream<Item = Result<RecordBatch>> + Send + 'static,
    schema: SchemaRef,
) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
    let encoder = Encoder {
        format,
        batches: 0,
        parquet: None,
        schema,
    };
    let batches = batches
        .map(Some)
        .chain(futures::stream::once(async { None }));
    batches
        .scan(encoder, |encoder, batch| {
            let bytes = match batch {
                Some(Ok(batch)) => encoder.batch(&batch),
                Some(Err(e)) => Err(e),
                None => encoder.end(),
            };
            std::future::ready(Some(bytes))
        })
        .filter(|bytes| std::future::ready(!matches!(bytes, Ok(b) if b.is_empty())))
}

struct Encoder {
    format: Format,
    batches: usize,
    parquet: Option<(ArrowWriter<Shared>, Shared)>,
    schema: SchemaRef,
}

impl Encoder {
    fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes> {
        self.batches += 1;
        match self.format {
            Format::Ndjson => {
                let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(Vec::new());
                writer.write(batch)?;
                writer.finish()?;
                Ok(writer.into_inner().into())
            }
            Format::Csv => {
                let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(self.batches == 1)
                    .build(Vec::new());
                writer.write(batch)?;
                Ok(writer.into_inner().into())
            }
            Format::Parquet => {
                let (writer, out) = self.parquet_writer(batch.schema())?;
                writer.write(batch)?;
                // A row group per batch: what is written can be sent.
                writer.flush()?;
                Ok(out.take())
            }
        }
    }

    fn end(&mut self) -> Result<Bytes> {
        match self.format {
            Format::Ndjson | Format::Csv => Ok(Bytes::new()),
            Format::Parquet => {
                if self.parquet.is_none() {
                    self.parquet_writer(self.schema.clone())?;
                }
                let (writer, out) = self.parquet.take().expect("a writer");
                writer.close()?;
                Ok(out.take())
            }
        }
    }

    fn parquet_writer(&mut self, schema: SchemaRef) -> Result<(&mut ArrowWriter<Shared>, &Shared)> {
        if self.parquet.is_none() {
            let out = Shared::default();
            let props = datafusion::parquet::file::properties::WriterProperties::builder()
                .set_compression(datafusion::parquet::basic::Compression::ZSTD(
                    Default::default(),
                ))
                .build();
            let writer = ArrowWriter::try_new(out.clone(), schema, Some(props))?;
            self.parquet = Some((writer, out));
        }
        let (writer, out) = self.parquet.as_mut().expect("just made");
        Ok((writer, out))
    }
}

/// Where the Parquet writer writes, taken after each row group.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Shared {
    fn take(&self) -> Bytes {
        std::mem::take(&mut *self.0.lock().expect("buffer lock")).into()
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
