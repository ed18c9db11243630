//! Rows removed from an output's files, as one commit: the mechanics of
//! `leadflow forget` (which rows go is [`crate::privacy`]'s to say).
//!
//! Parquet cannot delete a row in place, so an erasure rewrites each file
//! that holds rows to erase without them (copy-on-write, as Delta Lake and
//! Iceberg do), under a new name in its own staging. One `erase` commit
//! then swaps every rewritten file for its rewrite **inside the run that
//! lists it**: a rerun of that run's inputs still replaces it as a unit, a
//! compacted run keeps its covers, and `provider_usage` files stay the
//! billing audit (less the erased rows). The old files are deleted from
//! their tables before [`Erasure::commit`] returns, so no directory reader
//! (DuckDB, pyarrow, Polars) finds an erased row afterwards; a kill between
//! the commit and those deletes is finished by the next writer, as for any
//! commit. A file with no row to erase is never read past the columns that
//! decide it, nor written.
//!
//! Stream files are not listed in any run (the stream ledger holds them):
//! one that holds rows to erase is first compacted ([`super::compact`],
//! that partition only), which makes its rows a compacted run's file.
//!
//! An erasure conflicts with any commit since it read the log that took a
//! file it rewrote out of the output (a rerun, a compaction): it then
//! plans again from the newer version, so a row is never brought back by
//! a rewrite of a file that has since gone. A compaction that read the log
//! before an erasure committed, and would commit rows the erasure removed,
//! conflicts with it and commits nothing (see [`super::compact`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Utc;
use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::compute::{filter_record_batch, not};
use datafusion::arrow::error::ArrowError;
use datafusion::parquet::arrow::arrow_reader::{ArrowPredicateFn, RowFilter};
use datafusion::parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use super::log::{self, Commit, Operation, Rewrite, Snapshot};
use super::{Lease, STAGING, crash_point, delete_under, finish, try_commit_staged};
use crate::error::Result;
use crate::storage::{Location, ObjectStoreReader};
use crate::stream::ledger::StreamCommits;

/// Where erasure receipts are kept in an output.
pub const RECEIPTS: &str = "_leadflow/erasures";

/// Rows read at a time.
const BATCH_ROWS: usize = 8192;
/// A rewritten file's row group is closed once it holds this much.
const ROW_GROUP_BYTES: usize = 8 * 1024 * 1024;

/// One Parquet file of the output's newest version.
#[derive(Debug, Clone)]
pub struct LiveFile {
    /// Relative to the output: `enriched_leads/dt=2026-12-05/part-….parquet`.
    pub rel: String,
    /// Where it is read now: its table, or its writer's staging while it
    /// is not yet moved in.
    pub path: ObjectPath,
    /// A stream file (held by the stream ledger, not by a run).
    pub stream: bool,
    pub size: u64,
}

impl LiveFile {
    /// Its table: the first segment of its path.
    pub fn table(&self) -> &str {
        self.rel.split('/').next().unwrap_or_default()
    }

    /// Its directory, relative to the output.
    pub fn dir(&self) -> &str {
        self.rel.rsplit_once('/').map_or("", |(dir, _)| dir)
    }
}

/// Every Parquet file of `tables` in `snapshot`'s version: the runs' files
/// and the stream's committed cuts no compaction has rewritten.
pub async fn live_files(
    location: &Location,
    snapshot: &Snapshot,
    tables: &[&str],
) -> Result<Vec<LiveFile>> {
    let stream = StreamCommits::read(location).await?;
    let covers = snapshot.covers();
    let mut staged = std::collections::HashMap::new();
    for run in &snapshot.runs {
        for rel in &run.files {
            staged.insert(rel.as_str(), run.staged_path(rel));
        }
    }
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for table in tables {
        let mut listing = location.store.list(Some(&location.child(table)));
        while let Some(listed) = listing.next().await {
            let meta = match listed {
                Ok(meta) => meta,
                // Deleted between the directory's read and its own (a
                // writer finishing a commit): not in the newest version.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let Some(parts) = meta.location.prefix_match(&location.prefix) else {
                continue;
            };
            let rel = ObjectPath::from_iter(parts).to_string();
            let name = meta.location.filename().unwrap_or_default();
            let in_run = staged.contains_key(rel.as_str());
            let stream_file = !in_run && stream.holds(name) && !covers.covers(&rel);
            if in_run || stream_file {
                seen.insert(rel.clone());
                files.push(LiveFile {
                    rel,
                    path: meta.location,
                    stream: stream_file,
                    size: meta.size,
                });
            }
        }
    }
    // Files of the version not listed in their tables: still in their
    // writer's staging, or gone since the version was read (a later commit
    // took them out; their reader finds them gone, see [`is_gone`]).
    for (rel, staged_path) in staged {
        if seen.contains(rel) || !tables.iter().any(|t| rel.starts_with(&format!("{t}/"))) {
            continue;
        }
        let mut at = (location.child(rel), 0);
        let places = staged_path.map(|p| location.child(&p)).into_iter();
        for path in places.chain([location.child(rel)]) {
            match location.store.head(&path).await {
                Ok(meta) => {
                    at = (path, meta.size);
                    break;
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        files.push(LiveFile {
            rel: rel.to_string(),
            path: at.0,
            stream: false,
            size: at.1,
        });
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(files)
}

/// Whether `file` has left the output since it was listed: neither where
/// it was read nor in its table (it may have been moved in meanwhile).
pub async fn is_gone(location: &Location, file: &LiveFile) -> Result<bool> {
    for path in [file.path.clone(), location.child(&file.rel)] {
        match location.store.head(&path).await {
            Ok(_) => return Ok(false),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// The batches of `file`, every column.
pub async fn read(
    location: &Location,
    file: &LiveFile,
) -> Result<futures::stream::BoxStream<'static, Result<RecordBatch>>> {
    let reader = ObjectStoreReader::new(location.store.clone(), file.path.clone());
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await?
        .with_batch_size(BATCH_ROWS);
    Ok(builder.build()?.map_err(Into::into).boxed())
}

/// Writes `file` without the rows `erase` marks as `to`, at `staged`.
async fn rewrite(
    location: Location,
    file: LiveFile,
    to: String,
    staged: ObjectPath,
    erase: EraseRows,
) -> Result<Rewritten> {
    let mut batches = read(&location, &file).await?;
    let mut writer = None;
    let (mut removed, mut kept) = (0u64, 0u64);
    while let Some(batch) = batches.next().await.transpose()? {
        let goes = erase(file.table(), &batch)?;
        let stays = match goes.true_count() {
            0 => batch,
            n => {
                removed += n as u64;
                filter_record_batch(&batch, &not(&goes)?)?
            }
        };
        if stays.num_rows() == 0 {
            continue;
        }
        kept += stays.num_rows() as u64;
        let writer = match &mut writer {
            Some(w) => w,
            None => writer.insert(crate::sinks::parquet::file_writer(
                &location,
                &staged,
                &stays.schema(),
                &crate::sinks::parquet::writer_properties(1024 * 1024),
            )?),
        };
        writer.write(&stays).await?;
        // A row group is closed past the sink's budget, as runs close
        // theirs: memory stays bounded whatever the file's size.
        if writer.in_progress_size() > ROW_GROUP_BYTES {
            writer.flush().await?;
        }
    }
    let to = match writer {
        Some(writer) => {
            writer.close().await?;
            Some(to)
        }
        None => None,
    };
    Ok(Rewritten {
        rewrite: Rewrite { from: file.rel, to },
        rows_removed: removed,
        rows_kept: kept,
    })
}

/// What one file's rewrite did.
#[derive(Debug, Clone)]
pub struct Rewritten {
    pub rewrite: Rewrite,
    pub rows_removed: u64,
    pub rows_kept: u64,
}

/// The rows of `file` that `keep` chooses, its `columns` only (those it
/// has; all when `None`). `keep` sees the `by` columns of every row; the
/// other columns are decoded only for the rows it keeps (parquet's row
/// filter), so finding a few rows costs about a read of the `by` columns.
pub async fn select(
    location: &Location,
    file: &LiveFile,
    by: &[&str],
    columns: Option<&[&str]>,
    keep: EraseRows,
) -> Result<futures::stream::BoxStream<'static, Result<RecordBatch>>> {
    let reader = ObjectStoreReader::new(location.store.clone(), file.path.clone());
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await?
        .with_batch_size(BATCH_ROWS);
    let schema = builder.schema().clone();
    let roots = |names: &[&str]| -> Vec<usize> {
        names
            .iter()
            .filter_map(|c| schema.index_of(c).ok())
            .collect()
    };
    let by = roots(by);
    let projection = match columns {
        Some(columns) => ProjectionMask::roots(builder.parquet_schema(), roots(columns)),
        None => ProjectionMask::all(),
    };
    if by.is_empty() {
        // Nothing to choose by: no row is chosen (none is read).
        return Ok(futures::stream::empty().boxed());
    }
    let table = file.table().to_string();
    let predicate = ArrowPredicateFn::new(
        ProjectionMask::roots(builder.parquet_schema(), by),
        move |batch: RecordBatch| {
            keep(&table, &batch).map_err(|e| ArrowError::ExternalError(Box::new(e)))
        },
    );
    Ok(builder
        .with_projection(projection)
        .with_row_filter(RowFilter::new(vec![Box::new(predicate)]))
        .build()?
        .map_err(Into::into)
        .boxed())
}

/// Files read or written at once: one per core.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Which rows of a batch of a table go (`true`: the row goes).
pub type EraseRows = Arc<dyn Fn(&str, &RecordBatch) -> Result<BooleanArray> + Send + Sync>;

/// An erasure under way: a lease and a staging directory of its own.
pub struct Erasure {
    location: Location,
    write_id: String,
    lease: Lease,
    files: AtomicUsize,
}

impl Erasure {
    /// Begins an erasure of `location` (finishing first what dead writers
    /// left, as every writer does).
    pub async fn open(location: &Location) -> Result<Self> {
        let write_id = super::new_write_id("erasure");
        let lease = Lease::take(location, &write_id)?;
        if let Err(e) = super::Publisher::tidy(location).await {
            lease.release();
            return Err(e);
        }
        Ok(Self {
            location: location.clone(),
            write_id,
            lease,
            files: AtomicUsize::new(0),
        })
    }

    fn staging_rel(&self) -> String {
        format!("{STAGING}/{}", self.write_id)
    }

    /// Writes each of `files` without the rows `erase` marks into this
    /// erasure's staging, as many at once as the machine has cores (each
    /// file is decoded, filtered and encoded on a core of its own): what
    /// each rewrite did, in the order of `files`.
    pub async fn rewrite_all(
        &self,
        files: Vec<LiveFile>,
        erase: &EraseRows,
    ) -> Result<Vec<Rewritten>> {
        let jobs = files.into_iter().map(|file| {
            let n = self.files.fetch_add(1, Ordering::Relaxed);
            let to = format!(
                "{}/part-{}-erased-{n:04}.parquet",
                file.dir(),
                self.write_id
            );
            let staged = self.location.child(&format!("{}/{to}", self.staging_rel()));
            let (location, erase) = (self.location.clone(), erase.clone());
            async move {
                tokio::spawn(rewrite(location, file, to, staged, erase))
                    .await
                    .map_err(|e| crate::error::Error::Internal(format!("a rewrite failed: {e}")))?
            }
        });
        futures::stream::iter(jobs)
            .buffered(cores())
            .try_collect()
            .await
    }

    /// Commits `rewrites` (planned from `snapshot`) as one commit of
    /// `operation` (`erase`, or `retain` dropping whole files)
    /// at the next free version, then moves the new files in and deletes
    /// the old. `Ok(None)` when a commit since `snapshot` took one of the
    /// rewritten files out of the output: nothing was committed, and the
    /// erasure is to be planned again (its staged files are deleted).
    pub async fn commit(
        &self,
        operation: Operation,
        snapshot: &Snapshot,
        rewrites: Vec<Rewrite>,
        receipt: Option<serde_json::Value>,
    ) -> Result<Option<u64>> {
        let staging = self.location.under(&self.staging_rel());
        let added: Vec<&str> = rewrites.iter().filter_map(|r| r.to.as_deref()).collect();
        crate::stream::ledger::sync_local(&staging, added.iter().copied()).await?;
        let mut latest = snapshot.clone();
        let mut commit = Commit::new(operation, latest.next_version(), latest.version);
        commit.remove = rewrites.iter().map(|r| r.from.clone()).collect();
        commit.rewrites = rewrites;
        commit.staged_in = self.staging_rel();
        commit.receipt = receipt;
        loop {
            let taken: HashSet<&str> = commit.remove.iter().map(String::as_str).collect();
            let live = latest.files();
            if !taken.iter().all(|f| live.contains(f)) {
                delete_under(&self.location, &staging.prefix).await?;
                return Ok(None);
            }
            commit.remove_staged = super::staged_copies(&latest, &taken);
            if let Some(receipt) = &mut commit.receipt {
                receipt["version"] = commit.version.into();
            }
            crash_point("erase_before_commit");
            if try_commit_staged(&self.location, &commit).await? {
                latest.apply(commit.clone());
                break;
            }
            latest = Snapshot::read(&self.location).await?;
            commit.version = latest.next_version();
            commit.committed_at = Utc::now();
        }
        crash_point("erase_after_commit");
        finish(&self.location, &commit).await?;
        log::checkpoint_if_due(&self.location, &latest).await;
        Ok(Some(commit.version))
    }

    /// Deletes what this erasure staged so far (to plan again).
    pub async fn clear(&self) -> Result<()> {
        delete_under(&self.location, &self.location.child(&self.staging_rel())).await
    }

    /// Deletes what this erasure staged and gives its lease up.
    pub async fn close(self) {
        let staging = self.location.child(&self.staging_rel());
        if let Err(e) = delete_under(&self.location, &staging).await {
            tracing::warn!(error = %e, "could not delete the erasure's staged files");
        }
        self.lease.release();
    }
}
