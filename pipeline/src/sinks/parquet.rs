//! Parquet tables partitioned by day: `TABLE/dt=YYYY-MM-DD/part-….parquet`.
//!
//! Files are written through object_store, whose multipart upload completes a
//! file in one step (a rename on local disk, a completed multipart upload on
//! S3). A run writes them into its staging area under names unique to it;
//! [`crate::publish`] makes them the output.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate};
use datafusion::arrow::array::{
    Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use datafusion::arrow::compute::{cast, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;
use leadflow_schemas::{UTC, timestamp};
use object_store::buffered::BufWriter;

use crate::error::Result;
use crate::storage::Location;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// How a table's files are cut.
#[derive(Debug, Clone)]
pub struct ParquetSinkConfig {
    /// The table's directory under the output, e.g. `enriched_leads`.
    pub table: String,
    /// The run's part of every file name: its write id and the writer's
    /// partition.
    pub file_stem: String,
    /// The column whose UTC date picks the `dt=` partition; rows where it is
    /// NULL, or tables without it, go to `default_dt`.
    pub dt_column: Option<String>,
    pub default_dt: NaiveDate,
    /// A file is closed and the next one started past this many rows …
    pub max_rows_per_file: usize,
    /// … or past about this many bytes (its written row groups and the one
    /// being built, encoded).
    pub max_file_bytes: usize,
    /// A row group is closed past this many rows …
    pub row_group_rows: usize,
    /// … or when the row groups being built in this writer hold more than this.
    pub buffer_bytes: usize,
}

impl ParquetSinkConfig {
    pub fn new(
        table: &str,
        file_stem: String,
        dt_column: Option<&str>,
        default_dt: NaiveDate,
    ) -> Self {
        Self {
            table: table.to_string(),
            file_stem,
            dt_column: dt_column.map(str::to_string),
            default_dt,
            max_rows_per_file: 1024 * 1024,
            max_file_bytes: usize::MAX,
            row_group_rows: 1024 * 1024,
            buffer_bytes: 8 * 1024 * 1024,
        }
    }
}

/// What each open file's object-store writer buffers before it starts a
/// multipart upload, and the size of its parts: S3's smallest part …
const UPLOAD_PART_BYTES: usize = 5 * 1024 * 1024;
/// … and on local disk, where a part is a plain write at an offset and no
/// minimum applies, less: every open file holds one.
const LOCAL_PART_BYTES: usize = 1024 * 1024;

/// The schema a table is written with: timestamps as `TIMESTAMP(us, UTC)`,
/// plain UTF-8 strings, no unsigned integers.
pub fn output_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            f.as_ref()
                .clone()
                .with_data_type(output_type(f.data_type()))
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn output_type(t: &DataType) -> DataType {
    match t {
        DataType::Timestamp(_, _) => timestamp(),
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::Dictionary(_, v)
            if matches!(
                **v,
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            ) =>
        {
            DataType::Utf8
        }
        DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        other => other.clone(),
    }
}

/// A batch of `schema` (from [`output_schema`]) from `columns`, each cast to
/// its field's type where it differs.
pub fn conform(columns: &[ArrayRef], schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = columns
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                cast(c, f.data_type())
            }
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// How every table file is written: zstd, row groups of at most
/// `row_group_rows`, no dictionary for the columns that are distinct per
/// lead, and no statistics for those but `lead_id`, nor for
/// [`UNPRUNED_NAMES`] and [`SPANNED_DOMAINS`]. Their min and max prune
/// nothing (a file's emails span the alphabet) and cost 2% of a run's
/// instructions; `lead_id`'s prune compacted files, sorted by it. The
/// columns of [`SMALL_DOMAIN`] are not compressed.
pub fn writer_properties(row_group_rows: usize) -> WriterProperties {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid level"),
        ))
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_created_by(format!("leadflow {}", env!("CARGO_PKG_VERSION")));
    // Names a table lacks are ignored.
    for column in leadflow_schemas::DISTINCT_PER_LEAD {
        props = props.set_column_dictionary_enabled(ColumnPath::from(*column), false);
    }
    for column in SMALL_DOMAIN {
        props = props.set_column_compression(ColumnPath::from(*column), Compression::UNCOMPRESSED);
    }
    let unpruned = leadflow_schemas::DISTINCT_PER_LEAD
        .iter()
        .filter(|c| **c != "lead_id")
        .chain(UNPRUNED_NAMES)
        .chain(SPANNED_DOMAINS);
    for column in unpruned {
        props =
            props.set_column_statistics_enabled(ColumnPath::from(*column), EnabledStatistics::None);
    }
    props.build()
}

/// Enrichment columns whose values come from a small set fixed by leadflow
/// or the config (a flag, a phone or line type, an ISO region, an outcome,
/// a provider, the run), never from what a lead says: their dictionary
/// pages are a few hundred bytes and their data pages runs of small
/// indices, which zstd shrinks by a tenth or less, or grows (on a stream
/// cut's pages a frame costs more than it saves). Left uncompressed, they
/// need no zstd context: parquet-rs makes two per compressed column and
/// file, and each asks the CPU what it supports, which traps in a VM. All
/// are [`crate::lead::RESERVED_COLUMNS`], so an input column never lands
/// here uncompressed (it is renamed `input_…`).
const SMALL_DOMAIN: &[&str] = &[
    "phone_valid",
    "phone_country",
    "phone_type",
    "phone_error",
    "found_by",
    "lookup_status",
    "lookup_cost_usd",
    "lookup_attempts",
    "line_type",
    "line_type_status",
    "policy",
    "run_id",
    "enriched_at",
];

/// The text columns of [`SMALL_DOMAIN`] whose few values every file of a
/// run holds most of (countries, phone types, outcomes): their min and
/// max span the domain, so they would prune nothing, and computing them
/// was two string comparisons a row each, 1.9% of a run's instructions.
/// Their null counts go too (`found_by IS NULL` reads every row group).
/// `run_id`, `enriched_at` and `policy` (one value a run, or none) keep
/// theirs.
const SPANNED_DOMAINS: &[&str] = &[
    "phone_country",
    "phone_type",
    "phone_error",
    "found_by",
    "lookup_status",
    "line_type",
    "line_type_status",
];

/// Names that repeat (a dictionary pays) but whose min and max, like an
/// email's, span the alphabet in every file: statistics would prune no row
/// group, and computing them is two string comparisons per value. (Their
/// null counts go with them: `company IS NULL` reads every row group.)
const UNPRUNED_NAMES: &[&str] = &["first_name", "last_name", "company", "company_website"];

/// A Parquet writer of `schema` into the object at `path` (uploaded in
/// parts as it grows; complete, and visible, only once closed).
pub fn file_writer(
    location: &Location,
    path: &object_store::path::Path,
    schema: &SchemaRef,
    props: &WriterProperties,
) -> Result<AsyncArrowWriter<BufWriter>> {
    let part_bytes = match location.local_root {
        Some(_) => LOCAL_PART_BYTES,
        None => UPLOAD_PART_BYTES,
    };
    let object = BufWriter::with_capacity(location.store.clone(), path.clone(), part_bytes);
    Ok(AsyncArrowWriter::try_new(
        object,
        schema.clone(),
        Some(props.clone()),
    )?)
}

/// A file written by a sink.
#[derive(Debug, Clone)]
pub struct WrittenFile {
    pub path: String,
    pub rows: u64,
}

struct OpenFile {
    writer: AsyncArrowWriter<BufWriter>,
    path: object_store::path::Path,
    rows: usize,
}

/// Writes one stream of batches into day partitions of one table.
pub struct PartitionedWriter {
    location: Location,
    config: ParquetSinkConfig,
    schema: SchemaRef,
    dt_index: Option<usize>,
    props: WriterProperties,
    open: BTreeMap<NaiveDate, OpenFile>,
    /// Next file number per day.
    seq: BTreeMap<NaiveDate, usize>,
    written: Vec<WrittenFile>,
}

impl PartitionedWriter {
    /// `schema` must already be an [`output_schema`].
    pub fn new(location: Location, config: ParquetSinkConfig, schema: SchemaRef) -> Self {
        let dt_index = config.dt_column.as_deref().and_then(|c| {
            schema.index_of(c).ok().filter(|&i| {
                matches!(
                    schema.field(i).data_type(),
                    DataType::Timestamp(TimeUnit::Microsecond, _)
                )
            })
        });
        let props = writer_properties(config.row_group_rows);
        Self {
            location,
            config,
            schema,
            dt_index,
            props,
            open: BTreeMap::new(),
            seq: BTreeMap::new(),
            written: Vec::new(),
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Writes `batch` (of [`Self::schema`]) into its day partitions.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        for (day, part) in split_by_day(batch, self.dt_index, self.config.default_dt)? {
            self.write_day(day, &part).await?;
        }
        self.bound_memory().await
    }

    async fn write_day(&mut self, day: NaiveDate, batch: &RecordBatch) -> Result<()> {
        if !self.open.contains_key(&day) {
            let seq = self.seq.entry(day).or_insert(0);
            let name = format!(
                "{}/dt={}/part-{}-{:04}.parquet",
                self.config.table,
                day.format("%Y-%m-%d"),
                self.config.file_stem,
                *seq
            );
            *seq += 1;
            let path = self.location.child(&name);
            let writer = file_writer(&self.location, &path, &self.schema, &self.props)?;
            self.open.insert(
                day,
                OpenFile {
                    writer,
                    path,
                    rows: 0,
                },
            );
        }
        let file = self.open.get_mut(&day).expect("opened above");
        file.writer.write(batch).await?;
        file.rows += batch.num_rows();
        let bytes = file.writer.bytes_written() + file.writer.in_progress_size();
        if file.rows >= self.config.max_rows_per_file || bytes >= self.config.max_file_bytes {
            let file = self.open.remove(&day).expect("present");
            self.finish(file).await?;
        }
        Ok(())
    }

    /// Keeps the row groups under construction below the byte budget by
    /// flushing the largest early.
    async fn bound_memory(&mut self) -> Result<()> {
        loop {
            let total: usize = self
                .open
                .values()
                .map(|f| f.writer.in_progress_size())
                .sum();
            if total <= self.config.buffer_bytes {
                return Ok(());
            }
            let Some(largest) = self
                .open
                .values_mut()
                .max_by_key(|f| f.writer.in_progress_size())
            else {
                return Ok(());
            };
            largest.writer.flush().await?;
        }
    }

    async fn finish(&mut self, file: OpenFile) -> Result<()> {
        file.writer.close().await?;
        self.written.push(WrittenFile {
            path: file.path.to_string(),
            rows: file.rows as u64,
        });
        Ok(())
    }

    /// Closes every open file; returns all files written.
    pub async fn close(mut self) -> Result<Vec<WrittenFile>> {
        let open = std::mem::take(&mut self.open);
        for (_, file) in open {
            self.finish(file).await?;
        }
        Ok(self.written)
    }
}

/// `batch`'s rows by the UTC date of column `dt_index` (`default` where it is
/// NULL, or for every row without such a column), each part in row order.
fn split_by_day(
    batch: &RecordBatch,
    dt_index: Option<usize>,
    default: NaiveDate,
) -> Result<Vec<(NaiveDate, RecordBatch)>> {
    let Some(i) = dt_index else {
        return Ok(vec![(default, batch.clone())]);
    };
    let ts = batch
        .column(i)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .expect("dt column checked to be TIMESTAMP(us)");
    // Days as numbers first (UNIX days; None for NULL), dates only
    // once per distinct day: a chrono date per row was most of the split.
    let values = ts.values();
    let day_number = |row: usize| -> Option<i64> {
        ts.is_valid(row)
            .then(|| values[row].div_euclid(MICROS_PER_DAY))
    };
    let date_of = |day: Option<i64>| -> NaiveDate {
        day.and_then(|d| d.checked_mul(MICROS_PER_DAY))
            .and_then(DateTime::from_timestamp_micros)
            .map_or(default, |d| d.date_naive())
    };
    let first = day_number(0);
    if (1..batch.num_rows()).all(|r| day_number(r) == first) {
        return Ok(vec![(date_of(first), batch.clone())]);
    }
    // Rows by day, each list in row order: by offset from the first day
    // when the batch spans under a few years, else in a map.
    let numbers: Vec<Option<i64>> = (0..batch.num_rows()).map(day_number).collect();
    let (lo, hi) = numbers
        .iter()
        .flatten()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &d| (lo.min(d), hi.max(d)));
    let mut days: Vec<(Option<i64>, Vec<u32>)> = Vec::new();
    if hi >= lo && hi - lo < 2048 {
        let mut by_offset: Vec<Vec<u32>> = vec![Vec::new(); (hi - lo + 1) as usize];
        let mut nulls = Vec::new();
        for (r, day) in numbers.iter().enumerate() {
            match day {
                Some(d) => by_offset[(d - lo) as usize].push(r as u32),
                None => nulls.push(r as u32),
            }
        }
        days.extend(
            (lo..=hi)
                .zip(by_offset)
                .filter(|(_, idx)| !idx.is_empty())
                .map(|(d, idx)| (Some(d), idx)),
        );
        if !nulls.is_empty() {
            days.push((None, nulls));
        }
    } else {
        let mut map: BTreeMap<Option<i64>, Vec<u32>> = BTreeMap::new();
        for (r, day) in numbers.iter().enumerate() {
            map.entry(*day).or_default().push(r as u32);
        }
        days.extend(map);
    }
    // NULL's default date may also be a day of the batch: one file.
    let mut rows: BTreeMap<NaiveDate, Vec<u32>> = BTreeMap::new();
    for (day, idx) in days {
        let merged = rows.entry(date_of(day)).or_default();
        let resort = !merged.is_empty();
        merged.extend(idx);
        if resort {
            merged.sort_unstable();
        }
    }
    // A day whose rows are one run (input sorted by time, a stream's
    // messages) is a slice of the batch; only interleaved days are copied.
    rows.into_iter()
        .map(|(day, idx)| {
            let (first, last) = (idx[0] as usize, idx[idx.len() - 1] as usize);
            let part = if last - first + 1 == idx.len() {
                batch.slice(first, idx.len())
            } else {
                take_record_batch(batch, &UInt32Array::from(idx))?
            };
            Ok((day, part))
        })
        .collect()
}

/// `run_id` and `enriched_at` columns for a batch, appended when the query did
/// not return them.
pub fn run_columns(rows: usize, run_id: &str, at_micros: i64) -> [ArrayRef; 2] {
    [
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            run_id, rows,
        ))),
        Arc::new(TimestampMicrosecondArray::from(vec![at_micros; rows]).with_timezone(UTC)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reserved_enrichment_columns_go_uncompressed() {
        let props = writer_properties(1024);
        let enriched = leadflow_schemas::enriched_lead_schema(["Notes", "provider"]);
        for column in SMALL_DOMAIN {
            assert!(
                crate::lead::RESERVED_COLUMNS.contains(column),
                "{column}: an input column could be called so"
            );
        }
        for column in SPANNED_DOMAINS {
            assert!(SMALL_DOMAIN.contains(column), "{column}");
            let path = ColumnPath::from(*column);
            assert_eq!(
                props.statistics_enabled(&path),
                EnabledStatistics::None,
                "{column}"
            );
        }
        for field in enriched.fields() {
            let path = ColumnPath::from(field.name().as_str());
            let expected = if SMALL_DOMAIN.contains(&field.name().as_str()) {
                Compression::UNCOMPRESSED
            } else {
                Compression::ZSTD(ZstdLevel::try_new(1).unwrap())
            };
            assert_eq!(props.compression(&path), expected, "{}", field.name());
        }
        for kept in [
            "run_id",
            "enriched_at",
            "lead_id",
            "Notes",
            "provider",
            "country",
        ] {
            let path = ColumnPath::from(kept);
            assert_ne!(
                props.statistics_enabled(&path),
                EnabledStatistics::None,
                "{kept}"
            );
        }
        assert!(
            ["phone_valid", "phone_country", "run_id"]
                .iter()
                .all(|c| enriched.index_of(c).is_ok()),
            "the names are the enriched table's"
        );
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn split_rows(
        batch: &RecordBatch,
        dt_index: Option<usize>,
        default: &str,
    ) -> Vec<(NaiveDate, Vec<u32>)> {
        split_by_day(batch, dt_index, day(default))
            .unwrap()
            .iter()
            .map(|(d, b)| {
                let r = b.column(1).as_any().downcast_ref::<UInt32Array>().unwrap();
                (*d, r.values().to_vec())
            })
            .collect()
    }

    fn batch(days: Vec<Option<i64>>) -> RecordBatch {
        let n = days.len() as u32;
        let ts = TimestampMicrosecondArray::from(days).with_timezone(UTC);
        let schema = Arc::new(Schema::new(vec![
            Field::new("received_at", ts.data_type().clone(), true),
            Field::new("row", DataType::UInt32, false),
        ]));
        let rows = UInt32Array::from((0..n).collect::<Vec<u32>>());
        RecordBatch::try_new(schema, vec![Arc::new(ts), Arc::new(rows)]).unwrap()
    }

    fn at(d: &str, h: u32) -> i64 {
        day(d)
            .and_hms_opt(h, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros()
    }

    #[test]
    fn rows_split_by_utc_date_in_row_order() {
        let b = batch(vec![
            Some(at("2026-11-20", 23)),
            None,
            Some(at("2026-11-21", 0)),
            Some(at("1969-12-31", 12)),
            Some(at("2026-11-20", 1)),
            Some(at("2026-11-21", 5)),
            None,
        ]);
        // NULL's default is also a day of the batch: its rows join that day's, in order.
        let expected = vec![
            (day("1969-12-31"), vec![3]),
            (day("2026-11-20"), vec![0, 4]),
            (day("2026-11-21"), vec![1, 2, 5, 6]),
        ];
        assert_eq!(split_rows(&b, Some(0), "2026-11-21"), expected);
        // One day throughout, or no day column: the batch as it is.
        assert_eq!(
            split_rows(&b.slice(0, 1), Some(0), "2026-01-01"),
            vec![(day("2026-11-20"), vec![0])]
        );
        assert_eq!(
            split_rows(&b, None, "2026-01-01"),
            vec![(day("2026-01-01"), (0..7).collect())]
        );
    }

    #[test]
    fn a_day_of_consecutive_rows_is_a_slice_not_a_copy() {
        let b = batch(vec![
            Some(at("2026-11-20", 1)),
            Some(at("2026-11-20", 2)),
            Some(at("2026-11-21", 1)),
            Some(at("2026-11-21", 2)),
            Some(at("2026-11-21", 3)),
        ]);
        let parts = split_by_day(&b, Some(0), day("2000-01-01")).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].0, day("2026-11-21"));
        assert_eq!(parts[1].1.num_rows(), 3);
        // A slice shares the batch's buffers, at the day's first row.
        let values = |a: &ArrayRef| {
            a.as_any()
                .downcast_ref::<UInt32Array>()
                .unwrap()
                .values()
                .as_ptr()
        };
        assert_eq!(
            values(parts[1].1.column(1)),
            values(b.column(1)).wrapping_add(2)
        );
        assert_eq!(
            split_rows(&b, Some(0), "2000-01-01"),
            vec![
                (day("2026-11-20"), vec![0, 1]),
                (day("2026-11-21"), vec![2, 3, 4])
            ]
        );
    }

    #[test]
    fn days_decades_apart_and_out_of_range_split_too() {
        // Past the offset table's span (a map then), and a timestamp no
        // date holds (its row goes to the default day).
        let b = batch(vec![
            Some(at("2026-11-20", 3)),
            Some(at("1990-01-01", 0)),
            Some(i64::MIN),
            Some(at("2026-11-20", 4)),
        ]);
        assert_eq!(
            split_rows(&b, Some(0), "2000-01-01"),
            vec![
                (day("1990-01-01"), vec![1]),
                (day("2000-01-01"), vec![2]),
                (day("2026-11-20"), vec![0, 3]),
            ]
        );
    }
}
