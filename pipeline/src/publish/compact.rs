//! `leadflow compact`: a partition's small files rewritten into few large
//! ones, as one commit.
//!
//! The stream writes one file per cut per table, about one a second per
//! partition; a day of it is hundreds of thousands of files for every
//! reader to open. A compaction reads the small files of each `dt=`
//! directory, sorts their rows by `lead_id` (so Parquet statistics and
//! bloom filters prune well) and writes files of about `--target-mb`. It
//! takes:
//!
//! - **stream files** of committed cuts: for each topic's partition, every
//!   file at or below a `through` offset (the newest such file older than
//!   `--older-than`, and never a file of a cut whose files are still being
//!   moved in: see [`StreamCommits::settled`]). The compacted run records that
//!   offset as a [`Cover`]: readers skip the directory's files of that
//!   partition at or below it, so a file left behind by a kill is not read
//!   twice, and the next compaction deletes it;
//! - **compacted files** smaller than half the target (an earlier
//!   compaction's, to grow them);
//! - **`provider_usage` files of `usage_only` runs** (recovered and
//!   replaced runs' calls, which are never replaced);
//! - **files of `appended` runs** smaller than half the target (`leadflow
//!   serve` commits one such run per second of traffic; nothing replaces
//!   them, and a run whose files have all been taken is dropped).
//!
//! A run over inputs keeps its own leads and rejects in its files: a rerun
//! replaces them as a unit.
//!
//! The commit removes the files it took from whichever run lists them and
//! adds one `compacted` run; readers of the log see the old files or the
//! new, never both, never neither. It conflicts only with another
//! compaction of a directory it rewrites committed since it read the log
//! (two compactions at once: the later fails and leaves everything as it
//! was); runs, batches and stream cuts commit beside it. Memory is bounded
//! by DataFusion's sort, which spills to disk past [`SORT_MEMORY`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext, col};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use super::log::{self, Commit, Operation, Snapshot, merge_covers};
use super::{
    CommittedRun, Cover, Lease, STAGING, crash_point, delete_under, finish, is_usage, new_write_id,
    relative_to, try_commit_staged,
};
use crate::error::{Error, Result};
use crate::sinks::parquet::{ParquetSinkConfig, PartitionedWriter, output_schema};
use crate::storage::Location;
use crate::stream::ledger::{StreamCommits, cut_file};

/// What the sort of one directory may hold in memory before it spills.
pub const SORT_MEMORY: usize = 128 * 1024 * 1024;

/// What to compact.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// The tables to compact; all of the output's when empty.
    pub tables: Vec<String>,
    /// Only this `dt=` partition.
    pub dt: Option<NaiveDate>,
    /// About how large a compacted file grows.
    pub target_bytes: u64,
    /// Stream files written more recently than this are left for later.
    pub older_than: Duration,
    /// A partition is rewritten when it has at least this many files to
    /// take (`leadflow forget` takes even one stream file, to erase from it).
    pub min_files: usize,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self {
            tables: Vec::new(),
            dt: None,
            target_bytes: 128 * 1024 * 1024,
            older_than: Duration::ZERO,
            min_files: 2,
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compacted {
    /// The version it committed as; `None` when there was nothing to do.
    pub version: Option<u64>,
    /// `dt=` directories rewritten.
    pub dirs: usize,
    pub files_in: usize,
    pub files_out: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rows: u64,
    /// Files of an earlier compaction's cuts that a kill left behind, deleted.
    pub leftovers: usize,
    /// Partitions that could not be compacted, with why (left as they are).
    pub failed: Vec<String>,
}

/// One directory's plan.
#[derive(Debug, Default)]
struct DirPlan {
    /// Files to rewrite, relative to the output …
    take: Vec<String>,
    /// … as listed.
    metas: Vec<ObjectMeta>,
    bytes: u64,
    /// The new `through` of each stream partition whose files it takes.
    covers: BTreeMap<(String, i32), i64>,
    /// Stream files an earlier compaction covers, still there.
    leftovers: Vec<String>,
}

impl DirPlan {
    fn add(&mut self, file: &Listed) {
        self.take.push(file.rel.clone());
        self.metas.push(file.meta.clone());
        self.bytes += file.meta.size;
    }
}

/// A listed file of a table.
struct Listed {
    rel: String,
    meta: ObjectMeta,
}

/// Compacts `location`'s small files (see the module docs).
pub async fn compact(location: &Location, options: &CompactOptions) -> Result<Compacted> {
    compact_until(location, options, std::future::pending()).await
}

/// [`compact`], given up when `stop` completes first: what it staged is
/// deleted (a commit made stays, its moves finished by the next writer).
pub async fn compact_until(
    location: &Location,
    options: &CompactOptions,
    stop: impl Future<Output = ()>,
) -> Result<Compacted> {
    let write_id = new_write_id("compaction");
    let lease = Lease::take(location, &write_id)?;
    let prepared = tokio::select! {
        prepared = prepare(location, options, &write_id) => prepared,
        () = stop => Ok((None, Compacted::default())),
    };
    // Once prepared, nothing stops it: a commit cut short after its
    // version was created must not lose its staged files.
    let result = match prepared {
        Ok((Some((commit, snapshot)), outcome)) => {
            commit_compaction(location, commit, snapshot, outcome).await
        }
        Ok((None, outcome)) => Ok(outcome),
        Err(e) => Err(e),
    };
    if !matches!(
        result,
        Ok(Compacted {
            version: Some(_),
            ..
        })
    ) {
        let staging = location.child(&format!("{STAGING}/{write_id}"));
        if let Err(e) = delete_under(location, &staging).await {
            tracing::warn!(error = %e, "could not delete the compaction's staged files");
        }
    }
    lease.release();
    result
}

/// A compaction's commit (and the snapshot it was planned from), `None`
/// when there is nothing to commit, and what it did so far.
type Prepared = (Option<(Commit, Snapshot)>, Compacted);

/// Plans and writes a compaction.
async fn prepare(
    location: &Location,
    options: &CompactOptions,
    write_id: &str,
) -> Result<Prepared> {
    super::Publisher::tidy(location).await?;
    let snapshot = Snapshot::read(location).await?;
    let stream = StreamCommits::read(location).await?;
    let plans = plan(location, options, &snapshot, &stream).await?;
    let mut outcome = Compacted::default();
    if plans.is_empty() {
        return Ok((None, outcome));
    }
    // Files a committed compaction covers, left by a kill before its
    // deletes: no reader through the log reads them; they go now.
    for rel in plans.values().flat_map(|p| &p.leftovers) {
        super::delete_if_present(location, &location.child(rel)).await?;
        outcome.leftovers += 1;
    }
    let staging_rel = format!("{STAGING}/{write_id}");
    let staging = location.under(&staging_rel);
    let mut written = Vec::new();
    let mut remove = Vec::new();
    let mut covers = Vec::new();
    for (dir, plan) in &plans {
        let (table, dt) = split_dir(dir).expect("planned directories parse");
        if plan.take.len() >= options.min_files.max(1) {
            // One partition that cannot be read (a corrupt file, columns
            // of another type) does not hold back the others.
            let (files, rows) =
                match rewrite(location, &staging, table, dt, write_id, plan, options).await {
                    Ok(done) => done,
                    Err(e) => {
                        let why = format!("{}: {e}", location.url_of(dir).trim_end_matches('/'));
                        tracing::warn!(error = why, "could not compact a partition; left as it is");
                        outcome.failed.push(why);
                        continue;
                    }
                };
            outcome.dirs += 1;
            outcome.files_in += plan.take.len();
            outcome.bytes_in += plan.bytes;
            outcome.files_out += files.len();
            outcome.rows += rows;
            written.extend(files);
            remove.extend(plan.take.iter().cloned());
            covers.extend(
                plan.covers
                    .iter()
                    .map(|((topic, partition), through)| Cover {
                        dir: dir.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        through: *through,
                    }),
            );
        }
    }
    if remove.is_empty() {
        return Ok((None, outcome));
    }
    for file in &written {
        if let Ok(meta) = location
            .store
            .head(&ObjectPath::from(file.path.as_str()))
            .await
        {
            outcome.bytes_out += meta.size;
        }
    }
    let files = relative_to(&staging, &written)?;
    // Flushed before the commit names them (on local disk).
    crate::stream::ledger::sync_local(&staging, files.iter().map(String::as_str)).await?;
    let mut commit = Commit::new(
        Operation::Compact,
        snapshot.next_version(),
        snapshot.version,
    );
    // A taken file's copy in its run's staging (a writer that died while
    // moving it in left it there) goes first, so no one finishing that
    // writer's moves puts it back.
    let taken: HashSet<&str> = remove.iter().map(String::as_str).collect();
    commit.remove_staged = super::staged_copies(&snapshot, &taken);
    commit.remove = remove;
    commit.run = Some(CommittedRun {
        run_id: "compaction".into(),
        write_id: write_id.to_string(),
        committed_at: commit.committed_at,
        files,
        staging: staging_rel,
        compacted: true,
        covers: merge_covers(covers),
        ..Default::default()
    });
    Ok((Some((commit, snapshot)), outcome))
}

/// Commits a prepared compaction at the next free version, unless another
/// compaction of the same partitions committed since it read the log, then
/// moves its files in and deletes those it rewrote.
async fn commit_compaction(
    location: &Location,
    mut commit: Commit,
    snapshot: Snapshot,
    mut outcome: Compacted,
) -> Result<Compacted> {
    let ours: HashSet<String> = touches(&commit).map(str::to_string).collect();
    let mut latest = snapshot;
    loop {
        if try_commit_staged(location, &commit).await? {
            latest.apply(commit.clone());
            break;
        }
        latest = Snapshot::read(location).await?;
        let since = latest.commits_after(location, commit.read_version).await?;
        if let Some(other) = since.iter().find(|c| {
            matches!(
                c.operation,
                Operation::Compact | Operation::Erase | Operation::Retain
            ) && touches(c).any(|d| ours.contains(d))
        }) {
            return Err(Error::Conflict(format!(
                "{}: another compaction or an erasure (version {}) rewrote some of the same \
                 partitions while this one worked; this one committed nothing. Run it again to \
                 compact what is left.",
                location.url_of("").trim_end_matches('/'),
                other.version
            )));
        }
        commit.version = latest.next_version();
        commit.committed_at = Utc::now();
    }
    crash_point("compact_after_commit");
    // Committed: what is left of the moves and deletes, the next writer
    // finishes (its staging is then a dead writer's with a commit).
    if let Err(e) = finish(location, &commit).await {
        tracing::warn!(error = %e, "the compaction committed, but its files are not all moved in yet; the next writer into this output finishes it");
    }
    log::checkpoint_if_due(location, &latest).await;
    outcome.version = Some(commit.version);
    Ok(outcome)
}

/// The directories a compaction commit rewrote.
fn touches(commit: &Commit) -> impl Iterator<Item = &str> {
    commit
        .remove
        .iter()
        .map(String::as_str)
        .chain(commit.add())
        .filter_map(|f| f.rsplit_once('/').map(|(dir, _)| dir))
}

/// `table/dt=YYYY-MM-DD` as its parts.
fn split_dir(dir: &str) -> Option<(&str, NaiveDate)> {
    let (table, partition) = dir.split_once('/')?;
    let day = partition.strip_prefix("dt=")?;
    Some((table, NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?))
}

/// What each directory of the chosen tables has to compact.
async fn plan(
    location: &Location,
    options: &CompactOptions,
    snapshot: &Snapshot,
    stream: &StreamCommits,
) -> Result<BTreeMap<String, DirPlan>> {
    let covered = snapshot.covers();
    let settled = stream.settled(location).await?;
    // The runs whose files a compaction may take, by file.
    let mut takeable: HashMap<&str, bool> = HashMap::new();
    for run in &snapshot.runs {
        for f in &run.files {
            takeable.insert(
                f.as_str(),
                run.compacted || run.appended || (run.usage_only && is_usage(f)),
            );
        }
    }
    let cold_before = Utc::now()
        - chrono::Duration::from_std(options.older_than).unwrap_or(chrono::Duration::MAX);
    let small = options.target_bytes / 2;
    let mut plans: BTreeMap<String, DirPlan> = BTreeMap::new();
    for table in crate::sql::OUTPUT_TABLES {
        if !options.tables.is_empty() && !options.tables.iter().any(|t| t == table) {
            continue;
        }
        let mut by_dir: BTreeMap<String, Vec<Listed>> = BTreeMap::new();
        let mut listing = location.store.list(Some(&location.child(table)));
        while let Some(meta) = listing.try_next().await? {
            let Some(parts) = meta.location.prefix_match(&location.prefix) else {
                continue;
            };
            let rel = ObjectPath::from_iter(parts).to_string();
            let Some((dir, name)) = rel.rsplit_once('/') else {
                continue;
            };
            if !name.ends_with(".parquet") {
                continue;
            }
            let Some((_, dt)) = split_dir(dir) else {
                continue;
            };
            if options.dt.is_some_and(|d| d != dt) {
                continue;
            }
            by_dir.entry(dir.to_string()).or_default().push(Listed {
                rel: rel.clone(),
                meta,
            });
        }
        for (dir, files) in by_dir {
            let mut plan = DirPlan::default();
            // Each stream partition's files, and the newest cold one's `last`.
            let mut cuts: HashMap<(String, i32), Vec<(i64, &Listed)>> = HashMap::new();
            let mut through: HashMap<(String, i32), i64> = HashMap::new();
            for file in &files {
                let name = file.rel.rsplit('/').next().unwrap_or_default();
                match takeable.get(file.rel.as_str()) {
                    Some(true) if file.meta.size < small => {
                        plan.add(file);
                        continue;
                    }
                    Some(_) => continue,
                    None => {}
                }
                let Some((topic, partition, _, last)) = cut_file(name) else {
                    continue;
                };
                if !stream.holds(name) {
                    continue; // not committed (or not a stream file)
                }
                if covered.covers(&file.rel) {
                    plan.leftovers.push(file.rel.clone());
                    continue;
                }
                let key = (topic.to_string(), partition);
                if settled.get(&key).is_none_or(|&settled| last > settled) {
                    continue;
                }
                if file.meta.last_modified <= cold_before {
                    let at = through.entry(key.clone()).or_insert(last);
                    *at = (*at).max(last);
                }
                cuts.entry(key).or_default().push((last, file));
            }
            for (key, upto) in through {
                for (last, file) in &cuts[&key] {
                    if *last <= upto {
                        plan.add(file);
                    }
                }
                plan.covers.insert(key, upto);
            }
            if plan.take.len() >= options.min_files.max(1) || !plan.leftovers.is_empty() {
                plans.insert(dir, plan);
            }
        }
    }
    Ok(plans)
}

/// Writes `take`'s rows, sorted by `lead_id` where the table has it, into
/// files of about the target size under `staging`: the files and rows.
async fn rewrite(
    location: &Location,
    staging: &Location,
    table: &str,
    dt: NaiveDate,
    write_id: &str,
    plan: &DirPlan,
    options: &CompactOptions,
) -> Result<(Vec<crate::sinks::parquet::WrittenFile>, u64)> {
    // The sorters share the pool fairly and spill past their share; the
    // merges that cannot spill have their memory set aside up front.
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(SORT_MEMORY)))
        .build_arc()?;
    // One sorter: its spills merge within its own reservation (sorters on
    // several partitions would need a merge above them that cannot spill).
    let mut config = SessionConfig::new()
        .with_target_partitions(1)
        .with_batch_size(8192);
    config.options_mut().execution.sort_spill_reservation_bytes = SORT_MEMORY / 8;
    // Thousands of small files: no statistics kept per file (nothing is
    // pruned; every row is read).
    config.options_mut().execution.collect_statistics = false;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    // One table path whose listing is the chosen files: DataFusion lists
    // every table path at once, which thousands of file paths would make
    // thousands of open directories.
    let url = url::Url::parse("leadflow-compact://chosen/").expect("a valid URL");
    ctx.register_object_store(
        &url,
        Arc::new(Chosen {
            store: location.store.clone(),
            files: plan.metas.clone(),
        }),
    );
    let prefix = plan.metas[0]
        .location
        .as_ref()
        .rsplit_once('/')
        .map_or("", |(dir, _)| dir)
        .to_string();
    let mut df = ctx
        .read_parquet(format!("{url}{prefix}/"), ParquetReadOptions::default())
        .await?;
    if df.schema().has_column_with_unqualified_name("lead_id") {
        df = df.sort(vec![col("lead_id").sort(true, false)])?;
    }
    let schema = output_schema(df.schema().as_arrow());
    let mut sink = ParquetSinkConfig::new(table, write_id.to_string(), None, dt);
    sink.max_rows_per_file = usize::MAX;
    sink.max_file_bytes = usize::try_from(options.target_bytes).unwrap_or(usize::MAX);
    let mut writer = PartitionedWriter::new(staging.clone(), sink, schema.clone());
    let mut rows = 0u64;
    let mut batches = df.execute_stream().await?;
    while let Some(batch) = batches.next().await.transpose()? {
        rows += batch.num_rows() as u64;
        let batch = crate::sinks::parquet::conform(batch.columns(), &schema)?;
        writer.write(&batch).await?;
    }
    let files = writer.close().await?;
    Ok((files, rows))
}

/// The files a compaction rewrites, as a read-only store: listings show
/// only them, reads go to the output's store.
#[derive(Debug)]
struct Chosen {
    store: Arc<dyn ObjectStore>,
    files: Vec<ObjectMeta>,
}

impl std::fmt::Display for Chosen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the files a compaction rewrites ({})", self.store)
    }
}

fn read_only(operation: &str) -> object_store::Error {
    super::snapshot_store::refuse(operation, "leadflow compact's view of its input")
}

#[async_trait::async_trait]
impl ObjectStore for Chosen {
    async fn put_opts(
        &self,
        _: &ObjectPath,
        _: PutPayload,
        _: PutOptions,
    ) -> object_store::Result<PutResult> {
        Err(read_only("put"))
    }

    async fn put_multipart_opts(
        &self,
        _: &ObjectPath,
        _: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(read_only("put_multipart"))
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.store.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        locations.map(|_| Err(read_only("delete"))).boxed()
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let prefix = prefix.cloned().unwrap_or_default();
        let files: Vec<_> = self
            .files
            .iter()
            .filter(|m| m.location.prefix_matches(&prefix))
            .cloned()
            .map(Ok)
            .collect();
        futures::stream::iter(files).boxed()
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        let prefix = prefix.cloned().unwrap_or_default();
        let depth = prefix.parts().count();
        Ok(ListResult {
            common_prefixes: Vec::new(),
            objects: self
                .files
                .iter()
                .filter(|m| {
                    m.location.prefix_matches(&prefix) && m.location.parts().count() == depth + 1
                })
                .cloned()
                .collect(),
        })
    }

    async fn copy_opts(
        &self,
        _: &ObjectPath,
        _: &ObjectPath,
        _: CopyOptions,
    ) -> object_store::Result<()> {
        Err(read_only("copy"))
    }
}

/// Compacts the stream files older than `after` (and the small files of
/// runs nothing replaces), every quarter of it (at least every second, at
/// most every 15 minutes), until `stopped`. Two writers into one output may
/// both try: the commit's conflict check lets one win.
pub(crate) async fn compact_every(
    location: Location,
    after: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let every = (after / 4).clamp(Duration::from_secs(1), Duration::from_secs(15 * 60));
    let options = CompactOptions {
        older_than: after,
        ..Default::default()
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let mut stop = stopped.clone();
        let stop = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        match compact_until(&location, &options, stop).await {
            Ok(done) if done.version.is_some() => tracing::info!(
                version = done.version,
                dirs = done.dirs,
                files_in = done.files_in,
                files_out = done.files_out,
                rows = done.rows,
                "compacted the output's small files"
            ),
            Ok(_) => {}
            Err(Error::Conflict(why)) => tracing::debug!(why, "compaction skipped"),
            Err(e) => tracing::warn!(error = %e, "compaction failed; the next try is in {every:?}"),
        }
    }
}
