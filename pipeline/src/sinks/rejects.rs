//! Records that could not become leads, with where they came from and why.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::SchemaRef;
use leadflow_schemas::UTC;
use tokio::sync::mpsc;

use super::parquet::{PartitionedWriter, WrittenFile};
use crate::error::Result;

/// One rejected record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// File (or topic/partition) it came from.
    pub source: String,
    /// 1-based line (CSV: where the record starts; NDJSON: the line; Parquet: the row).
    pub line: Option<i64>,
    /// The record as read.
    pub raw: String,
    /// Why it was rejected, naming the field.
    pub reason: String,
}

/// Collects rejects into batches of the reject schema.
pub struct RejectBatcher {
    schema: SchemaRef,
    run_id: String,
    at_micros: i64,
    source: StringBuilder,
    line: Int64Builder,
    raw: StringBuilder,
    reason: StringBuilder,
    rows: usize,
}

impl RejectBatcher {
    pub fn new(run_id: &str, at_micros: i64) -> Self {
        Self {
            schema: leadflow_schemas::reject_schema(),
            run_id: run_id.to_string(),
            at_micros,
            source: StringBuilder::new(),
            line: Int64Builder::new(),
            raw: StringBuilder::new(),
            reason: StringBuilder::new(),
            rows: 0,
        }
    }

    pub fn push(&mut self, r: &Reject) {
        self.source.append_value(&r.source);
        self.line.append_option(r.line);
        self.raw.append_value(&r.raw);
        self.reason.append_value(&r.reason);
        self.rows += 1;
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn finish(&mut self) -> Result<RecordBatch> {
        let n = std::mem::take(&mut self.rows);
        let mut run_id = StringBuilder::with_capacity(n, n * self.run_id.len());
        let mut at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone(UTC);
        for _ in 0..n {
            run_id.append_value(&self.run_id);
            at.append_value(self.at_micros);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.source.finish()),
            Arc::new(self.line.finish()),
            Arc::new(self.raw.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(run_id.finish()),
            Arc::new(at.finish()),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Drains `rejects` into the `rejects` table; returns how many it wrote and
/// up to `samples` of them for the summary.
pub async fn write_rejects(
    mut rejects: mpsc::Receiver<Reject>,
    mut batcher: RejectBatcher,
    mut writer: PartitionedWriter,
    samples: usize,
) -> Result<RejectsWritten> {
    let mut count = 0u64;
    let mut kept = Vec::new();
    while let Some(r) = rejects.recv().await {
        count += 1;
        if kept.len() < samples {
            kept.push(r.clone());
        }
        batcher.push(&r);
        if batcher.len() >= 8192 {
            writer.write(&batcher.finish()?).await?;
        }
    }
    if !batcher.is_empty() {
        writer.write(&batcher.finish()?).await?;
    }
    Ok(RejectsWritten {
        count,
        samples: kept,
        files: writer.close().await?,
    })
}

/// What the reject writer wrote.
#[derive(Debug)]
pub struct RejectsWritten {
    pub count: u64,
    /// The first rejects, for the summary.
    pub samples: Vec<Reject>,
    pub files: Vec<WrittenFile>,
}
