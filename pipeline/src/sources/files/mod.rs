//! Leads from files: CSV, NDJSON and Parquet, on local disk or in S3.
//!
//! A run first resolves its input (a file, a directory, a glob or an
//! `s3://bucket/prefix`), reads each file's columns to fix the run's schema
//! (the lead fields plus every extra column any file has), then streams the
//! files one after another on a blocking thread, a batch at a time.

mod csv;
mod csv_records;
mod input;
mod ndjson;
mod parquet;
mod reader;

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use tokio::sync::mpsc;

pub use input::{Format, InputFile, resolve};
pub use ndjson::SCHEMA_LINES as NDJSON_SCHEMA_LINES;
pub use reader::check_parquet_footer;

use crate::error::{Error, Result};
use crate::lead::{ColumnMap, FieldMapping, LeadBuilder, LeadOptions};
use crate::sinks::rejects::Reject;
use crate::sources::SourceProgress;

/// What `leadflow run` reads, as the user gave it.
#[derive(Debug, Clone)]
pub struct FileSourceConfig {
    /// A file, a directory, a glob, or `s3://bucket/prefix`.
    pub input: String,
    /// Forces a format; otherwise each file's extension decides.
    pub format: Option<Format>,
    /// `lead_col=file_col` mappings.
    pub mapping: FieldMapping,
    /// CSV delimiter; sniffed from the header when not given.
    pub delimiter: Option<u8>,
    pub options: LeadOptions,
    /// An output location (a path or `s3://…`) inside the input whose files
    /// are not input: a run never reads what it or an earlier run wrote.
    pub skip_output: Option<String>,
}

/// The resolved input: its files and the run's lead schema.
pub struct FileSource {
    config: FileSourceConfig,
    files: Vec<InputFile>,
    columns: Vec<Vec<String>>,
    schema: SchemaRef,
}

impl FileSource {
    /// Resolves the input and reads every file's columns.
    pub async fn open(config: FileSourceConfig) -> Result<Self> {
        let mut files = resolve(&config.input, config.format).await?;
        if let Some(out) = &config.skip_output {
            let before = files.len();
            let out_place = input::OutputPlace::new(out);
            files.retain(|f| !out_place.holds(f));
            if files.is_empty() {
                return Err(Error::NoInput(format!(
                    "{} (its only files are under the output {out})",
                    config.input
                )));
            }
            if files.len() < before {
                tracing::info!(
                    skipped = before - files.len(),
                    "files under the output directory are not read as input"
                );
            }
        }
        let mut columns = Vec::with_capacity(files.len());
        let mut extras: Vec<String> = Vec::new();
        // The extras' names without case, to keep each once in one pass.
        let mut seen: HashSet<String> = HashSet::new();
        for file in &files {
            let file_columns = {
                let (owned, delimiter) = (file.clone(), config.delimiter);
                tokio::task::spawn_blocking(move || reader::columns(&owned, delimiter))
                    .await
                    .map_err(|e| Error::Internal(format!("reading columns: {e}")))?
                    .map_err(|e| e.in_file(&file.name))?
            };
            check_mapping(file, &file_columns, &config.mapping)?;
            for extra in ColumnMap::extra_columns(&file_columns, &config.mapping) {
                if seen.insert(extra.to_ascii_lowercase()) {
                    extras.push(extra);
                }
            }
            columns.push(file_columns);
        }
        let schema = leadflow_schemas::lead_schema(extras.iter().map(String::as_str));
        Ok(Self {
            config,
            files,
            columns,
            schema,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn files(&self) -> &[InputFile] {
        &self.files
    }

    /// The extra (pass-through) columns of the run.
    pub fn extras(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .skip(leadflow_schemas::LEAD_FIELDS.len())
            .map(|f| f.name().clone())
            .collect()
    }

    /// Files whose columns give no phone: usually a `--map` is missing.
    pub fn files_without_phone(&self) -> Vec<&str> {
        let extras = self.extras();
        self.files
            .iter()
            .zip(&self.columns)
            .filter(|(_, cols)| !ColumnMap::new(cols, &self.config.mapping, &extras).has_phone())
            .map(|(f, _)| f.name.as_str())
            .collect()
    }

    /// Reads every file on the current (blocking) thread, sending lead batches
    /// to `leads` and rejects to `rejects`. Stops early, without error, when
    /// the receiver of `leads` is gone. Returns each file's content id, which
    /// names the input whatever the file is called (see [`crate::publish`]).
    pub fn read_all(
        self,
        leads: mpsc::Sender<Result<RecordBatch>>,
        rejects: mpsc::Sender<Reject>,
        progress: Arc<SourceProgress>,
    ) -> Result<Vec<String>> {
        let total: u64 = self.files.iter().map(|f| f.size).sum();
        SourceProgress::add(&progress.bytes_total, total);
        let extras = self.extras();
        let mut builder = LeadBuilder::new(self.schema.clone(), self.config.options.clone());
        let mut content_ids = Vec::with_capacity(self.files.len());
        let mut sink = BatchSink {
            leads,
            rejects,
            progress: progress.clone(),
            closed: false,
        };
        for (file, columns) in self.files.iter().zip(&self.columns) {
            let widened;
            let columns = match file.format {
                // Its columns came from a sample: a later record may carry
                // any column of the run.
                Format::Ndjson => {
                    widened = ndjson_columns(columns, &self.config.mapping, &extras);
                    &widened
                }
                _ => columns,
            };
            let map = ColumnMap::new(columns, &self.config.mapping, &extras);
            let hash = reader::ContentHash::default();
            match file.format {
                Format::Csv => csv::read(
                    file,
                    reader::open_hashed(file, progress.clone(), hash.clone())?,
                    self.config.delimiter,
                    &map,
                    &mut builder,
                    &mut sink,
                )?,
                Format::Ndjson => ndjson::read(
                    file,
                    reader::open_hashed(file, progress.clone(), hash.clone())?,
                    columns,
                    &map,
                    &mut builder,
                    &mut sink,
                )?,
                Format::Parquet => parquet::read(file, columns, &map, &mut builder, &mut sink)
                    .map_err(|e| e.in_file(&file.name))?,
            }
            if sink.closed {
                return Ok(content_ids);
            }
            content_ids.push(match file.format {
                Format::Parquet => reader::parquet_content_id(file)?,
                Format::Csv | Format::Ndjson => hash.id(file.size),
            });
        }
        sink.flush(&mut builder)?;
        SourceProgress::add(&progress.unknown_countries, builder.unknown_countries);
        Ok(content_ids)
    }
}

/// Fails when a `--map` names a column `file` lacks. NDJSON's columns are a
/// sample, so a mapped key may still come later there.
fn check_mapping(file: &InputFile, columns: &[String], mapping: &FieldMapping) -> Result<()> {
    let missing = mapping.missing_in(columns);
    if file.format == Format::Ndjson || missing.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = columns.iter().take(30).map(|c| format!("`{c}`")).collect();
    let more = columns.len().saturating_sub(shown.len());
    Err(Error::BadInput {
        source_name: file.name.clone(),
        reason: format!(
            "--map {}: no such column; the columns are {}{}",
            missing.join(", --map "),
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ),
    })
}

/// An NDJSON file's sampled keys, then the lead fields and extras of the run
/// the sample did not show.
fn ndjson_columns(sampled: &[String], mapping: &FieldMapping, extras: &[String]) -> Vec<String> {
    let mut columns = sampled.to_vec();
    for name in ColumnMap::missing_lead_columns(sampled, mapping)
        .into_iter()
        .chain(extras.iter().cloned())
    {
        if !columns.contains(&name) {
            columns.push(name);
        }
    }
    columns
}

/// The most bytes one record (a CSV row, an NDJSON line) may take. A lead
/// is a few hundred bytes; a record this long is a file gone wrong, and
/// reading it whole would hold all of it in memory.
pub const MAX_RECORD_BYTES: u64 = 16 << 20;

/// Where a format reader puts what it read.
pub(crate) struct BatchSink {
    leads: mpsc::Sender<Result<RecordBatch>>,
    rejects: mpsc::Sender<Reject>,
    progress: Arc<SourceProgress>,
    /// The query side hung up (it failed or was cancelled): stop reading.
    closed: bool,
}

impl BatchSink {
    /// Called after each record was pushed or rejected; sends a full batch.
    pub(crate) fn after_record(&mut self, builder: &mut LeadBuilder) -> Result<()> {
        SourceProgress::add(&self.progress.records_read, 1);
        if builder.is_full() {
            self.flush(builder)?;
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self, builder: &mut LeadBuilder) -> Result<()> {
        if self.progress.stopped() {
            self.closed = true;
        }
        if builder.is_empty() || self.closed {
            return Ok(());
        }
        let batch = builder.finish()?;
        SourceProgress::add(&self.progress.leads, batch.num_rows() as u64);
        crate::telemetry::leads_in(batch.num_rows() as u64);
        if self.leads.blocking_send(Ok(batch)).is_err() {
            self.closed = true;
        }
        Ok(())
    }

    pub(crate) fn reject(&mut self, reject: Reject) {
        SourceProgress::add(&self.progress.rejects, 1);
        crate::telemetry::leads_in(1);
        crate::telemetry::rejects(1);
        // The reject writer lives as long as the run; if it is gone the run is failing anyway.
        let _ = self.rejects.blocking_send(reject);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }
}
