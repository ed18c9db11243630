//! Parquet input: each column is read as text and goes through the same
//! checks as CSV, so a Parquet file and its CSV export give the same leads.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::parquet::arrow::ParquetRecordBatchStreamBuilder;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use futures::StreamExt;

use crate::storage::ObjectStoreReader;

use super::BatchSink;
use super::input::{InputFile, Place};
use crate::error::{Error, Result};
use crate::lead::{ColumnMap, LeadBuilder, RecordFields};
use crate::sinks::rejects::Reject;

const READ_BATCH: usize = 8192;

pub(crate) fn columns(file: &InputFile) -> Result<Vec<String>> {
    let schema = match &file.place {
        Place::Local(path) => {
            let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            ParquetRecordBatchReaderBuilder::try_new(f)?
                .schema()
                .clone()
        }
        Place::Object { store, path } => {
            let reader = ObjectStoreReader::new(store.clone(), path.clone());
            tokio::runtime::Handle::current()
                .block_on(ParquetRecordBatchStreamBuilder::new(reader))?
                .schema()
                .clone()
        }
    };
    Ok(schema.fields().iter().map(|f| f.name().clone()).collect())
}

pub(crate) fn read(
    file: &InputFile,
    columns: &[String],
    map: &ColumnMap,
    builder: &mut LeadBuilder,
    sink: &mut BatchSink,
) -> Result<()> {
    let mut row = 0i64;
    let mut on_batch = |batch: RecordBatch| -> Result<bool> {
        let mut text = Vec::with_capacity(batch.num_columns());
        let mut not_utf8: Vec<Option<Vec<bool>>> = Vec::with_capacity(batch.num_columns());
        for column in batch.columns() {
            let (t, bad) = as_text(column)?;
            text.push(t);
            not_utf8.push(bad);
        }
        for i in 0..batch.num_rows() {
            row += 1;
            let record = ParquetRow {
                columns: &text,
                row: i,
            };
            let bad_column = not_utf8
                .iter()
                .position(|bad| bad.as_ref().is_some_and(|bad| bad[i]));
            let pushed = match bad_column {
                Some(c) => Err(format!("column `{}` is not UTF-8 text", columns[c])),
                None => builder.push(&record, map),
            };
            if let Err(reason) = pushed {
                sink.reject(Reject {
                    source: file.name.clone(),
                    line: Some(row),
                    raw: record.raw(columns),
                    reason,
                });
            }
            sink.after_record(builder)?;
            if sink.is_closed() {
                return Ok(false);
            }
        }
        Ok(true)
    };
    match &file.place {
        Place::Local(path) => {
            let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(f)?
                .with_batch_size(READ_BATCH)
                .build()?;
            for batch in reader {
                if !on_batch(batch?)? {
                    break;
                }
            }
        }
        Place::Object { store, path } => {
            let handle = tokio::runtime::Handle::current();
            let reader = ObjectStoreReader::new(Arc::clone(store), path.clone());
            let mut stream = handle
                .block_on(ParquetRecordBatchStreamBuilder::new(reader))?
                .with_batch_size(READ_BATCH)
                .build()?;
            while let Some(batch) = handle.block_on(stream.next()) {
                if !on_batch(batch?)? {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// A column as text, the way CSV gives it: numbers, dates and booleans as
/// their text, nested values (structs, lists, maps) in Arrow's display form,
/// binary as UTF-8, with the rows that are not UTF-8 marked (they become
/// rejects, as in CSV, not NULLs).
fn as_text(column: &ArrayRef) -> Result<(StringArray, Option<Vec<bool>>)> {
    let binary = |values: &mut dyn Iterator<Item = Option<&[u8]>>| {
        let mut bad = Vec::new();
        let text: StringArray = values
            .map(|v| {
                let s = v.map(std::str::from_utf8);
                bad.push(matches!(s, Some(Err(_))));
                s.and_then(|s| s.ok())
            })
            .collect();
        (text, Some(bad))
    };
    Ok(match column.data_type() {
        DataType::Binary => binary(&mut column.as_binary::<i32>().iter()),
        DataType::LargeBinary => binary(&mut column.as_binary::<i64>().iter()),
        DataType::BinaryView => binary(&mut column.as_binary_view().iter()),
        DataType::FixedSizeBinary(_) => binary(&mut column.as_fixed_size_binary().iter()),
        t if t.is_nested() => {
            let formatter = ArrayFormatter::try_new(column, &FormatOptions::default())?;
            let text: StringArray = (0..column.len())
                .map(|i| column.is_valid(i).then(|| formatter.value(i).to_string()))
                .collect();
            (text, None)
        }
        _ => {
            let c = cast(column, &DataType::Utf8)?;
            (c.as_string::<i32>().clone(), None)
        }
    })
}

struct ParquetRow<'a> {
    columns: &'a [StringArray],
    row: usize,
}

impl ParquetRow<'_> {
    /// The row as a JSON object, for the reject's `raw` column.
    fn raw(&self, names: &[String]) -> String {
        let object: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .zip(self.columns)
            .map(|(n, c)| {
                let v = if c.is_null(self.row) {
                    serde_json::Value::Null
                } else {
                    c.value(self.row).into()
                };
                (n.clone(), v)
            })
            .collect();
        serde_json::Value::Object(object).to_string()
    }
}

impl RecordFields for ParquetRow<'_> {
    fn field(&self, col: usize) -> Result<Option<&str>, String> {
        let c = &self.columns[col];
        Ok((!c.is_null(self.row)).then(|| c.value(self.row)))
    }
}
