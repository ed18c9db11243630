//! How a run's files become the output: all at once, and only when complete.
//!
//! An output directory (local or `s3://`) holds the tables and, under
//! `_leadflow/`, the bookkeeping that keeps them whole across crashes,
//! reruns and writers working at once:
//!
//! - `_leadflow/log/`: the commit log ([`log`]). Each version is one commit,
//!   created only if absent; the newest version is the output. A writer
//!   **commits** by creating the next version; when another writer took
//!   that number first it reads what that commit did and, unless the two
//!   conflict, tries the next. No lock is held while a run works: runs into
//!   one output proceed at once, and a short one publishes before a long one
//!   ends.
//! - `_leadflow/staging/<id>/`: a writer writes every file here, under names
//!   no other writer uses, with `_commit.json`, the commit it is about to
//!   make. Readers never look here (pyarrow, DuckDB and Polars skip
//!   `_`-prefixed directories; `leadflow sql` reads what the log lists).
//!   After its commit the writer moves its files into the tables, deletes
//!   the files its commit removed, then its staging directory.
//! - `_leadflow/leases/<id>`: on local disk, a writer holds an OS lock on
//!   its lease while it lives, released by the kernel however it ends. The
//!   next writer to open the output finishes the moves of a dead writer that
//!   had committed and deletes the staging of one that had not. (On S3 no
//!   lease tells a live writer from a dead one: a committed writer's moves
//!   are finished by whoever sees them, which is harmless, and uncommitted
//!   staging is left where it is.)
//!
//! A run replaces an earlier one when every input the earlier one read is
//! among its own inputs, compared by content, not by name: rerunning a file
//! replaces its output, a new file under yesterday's name adds to it.
//! `provider_usage` is the billing audit and only grows: a replaced run's
//! leads and rejects go, its calls stay (a `usage_only` run keeps them).
//! The calls of a run that died before it committed are committed from its
//! usage log ([`crate::sinks::usage_log`]) by the next writer.
//!
//! Two writers conflict when one commits a run over any input the other
//! read (or the same batch date) after the other began: the later one
//! fails, leaving the output as the first made it, and commits only the
//! provider calls it paid for. Run it again to replace the first.
//!
//! A crash before the commit leaves the output as it was; a crash after it
//! leaves the new output, whose files readers find in staging until the next
//! writer moves them.

pub mod compact;
pub mod erase;
pub mod log;
pub mod snapshot_store;

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sinks::parquet::{ParquetSinkConfig, PartitionedWriter, WrittenFile};
use crate::sinks::provider_usage::UsageBatcher;
use crate::sinks::usage_log::{self, UsageLog};
use crate::storage::Location;
pub use log::{Commit, Operation, Snapshot};

/// Where leadflow keeps its bookkeeping inside an output.
pub const META_DIR: &str = "_leadflow";
/// The manifest of outputs written before the log (read, and upgraded).
const MANIFEST: &str = "_leadflow/manifest.json";
/// The lock of outputs written before the log (deleted by the upgrade).
const LEGACY_LOCK: &str = "_leadflow/lock";
const STAGING: &str = "_leadflow/staging";
const LEASES: &str = "_leadflow/leases";
/// The commit a writer is about to make, in its staging directory.
const INTENT: &str = "_commit.json";

/// The runs whose files made up an output written before the log.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// Oldest first.
    pub runs: Vec<CommittedRun>,
    /// Present from a commit until its files were in place and the files it
    /// replaced were gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publishing: Option<Publishing>,
    /// Whether the output has one.
    #[serde(skip)]
    pub exists: bool,
}

/// One run's contribution to an output.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CommittedRun {
    pub run_id: String,
    /// Unique per run, whatever `run_id` the user gave: it names the files.
    pub write_id: String,
    pub committed_at: DateTime<Utc>,
    /// Content ids of the inputs it read (see [`crate::sources::files`]).
    pub inputs: Vec<String>,
    /// Its files, relative to the output (`enriched_leads/dt=…/part-….parquet`).
    pub files: Vec<String>,
    /// The nightly batch it was (`leadflow batch --date`): a later run of the
    /// same batch replaces it whatever it read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// Only `provider_usage` files: the calls of a run that was replaced, or
    /// that died and was recovered from its usage log. Never replaced.
    #[serde(default, skip_serializing_if = "is_false")]
    pub usage_only: bool,
    /// Where its files waited before they were moved into their tables
    /// (relative to the output); a file not yet moved is still there.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub staging: String,
    /// For the calls of a run that died, recovered from its usage log: what
    /// they cost per UTC day (`YYYY-MM-DD`, µUSD). A run with Redis settles
    /// the dead run's day spend there to it (tagged by its `write_id`, see
    /// `leadflow_fleet::Fleet::settle_spend`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settle: Vec<(String, i64)>,
    /// Written by `leadflow compact` (see [`compact`]): files that hold the
    /// rows of others', never replaced. Dropped once a later compaction has
    /// taken all its files, its `covers` passing to that compaction's run.
    #[serde(default, skip_serializing_if = "is_false")]
    pub compacted: bool,
    /// The stream files a compacted run holds the rows of (see [`Cover`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub covers: Vec<Cover>,
    /// A run over no input and of no batch (`leadflow serve`'s commits):
    /// nothing replaces it, so compaction may take its files, and it is
    /// dropped once it has none.
    #[serde(default, skip_serializing_if = "is_false")]
    pub appended: bool,
    /// Files of this run written by another writer (an erasure's rewrite:
    /// see [`log::Rewrite`]), by the staging directory each waited in
    /// before it was moved into its table (instead of `staging`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub staged: std::collections::BTreeMap<String, String>,
}

/// Every stream file in `dir` (`enriched_leads/dt=2026-12-05`) of one
/// topic's partition whose `last` offset is at or below `through` has had
/// its rows compacted into a compacted run's files: readers skip it (a
/// compaction that died before deleting it leaves it behind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cover {
    pub dir: String,
    pub topic: String,
    pub partition: i32,
    pub through: i64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Whether `rel` (a file relative to the output) is one of `provider_usage`'s.
fn is_usage(rel: &str) -> bool {
    rel.starts_with("provider_usage/")
}

impl CommittedRun {
    /// The staging directory `file` (one of this run's) waited in before it
    /// was moved into its table; empty when it was never staged.
    pub fn staging_of(&self, file: &str) -> &str {
        self.staged
            .get(file)
            .map_or(self.staging.as_str(), String::as_str)
    }

    /// Where `file` (one of this run's) is while it is not yet moved in,
    /// relative to the output; `None` when it was never staged.
    pub(crate) fn staged_path(&self, file: &str) -> Option<String> {
        let staging = self.staging_of(file);
        (!staging.is_empty()).then(|| format!("{staging}/{file}"))
    }

    /// What stays of this run when another replaces it: its paid calls.
    fn usage_residue(&self) -> Option<CommittedRun> {
        let files: Vec<String> = self.files.iter().filter(|f| is_usage(f)).cloned().collect();
        (!files.is_empty()).then(|| CommittedRun {
            run_id: self.run_id.clone(),
            write_id: self.write_id.clone(),
            committed_at: self.committed_at,
            inputs: Vec::new(),
            files,
            batch: None,
            usage_only: true,
            staging: self.staging.clone(),
            settle: self.settle.clone(),
            staged: self
                .staged
                .iter()
                .filter(|(f, _)| is_usage(f))
                .map(|(f, s)| (f.clone(), s.clone()))
                .collect(),
            ..Default::default()
        })
    }

    /// Whether a run over `inputs` (of `batch`) replaces this one.
    fn replaced_by(&self, inputs: &HashSet<&str>, batch: Option<&str>) -> bool {
        !self.usage_only
            && ((batch.is_some() && self.batch.as_deref() == batch)
                || (!self.inputs.is_empty()
                    && self.inputs.iter().all(|i| inputs.contains(i.as_str()))))
    }

    /// Whether this run and a run over `inputs` (of `batch`) read the same
    /// input or are the same batch.
    fn overlaps(&self, inputs: &HashSet<&str>, batch: Option<&str>) -> bool {
        !self.usage_only
            && ((batch.is_some() && self.batch.as_deref() == batch)
                || self.inputs.iter().any(|i| inputs.contains(i.as_str())))
    }
}

/// A commit of the manifest whose files were still being moved into place.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publishing {
    pub write_id: String,
    /// Files of the replaced runs, relative to the output.
    pub delete: Vec<String>,
}

impl Manifest {
    /// The output's pre-log manifest; empty (`exists` false) when it has none.
    pub async fn read(location: &Location) -> Result<Manifest> {
        let path = location.child(MANIFEST);
        match location.store.get(&path).await {
            Ok(got) => {
                let bytes = got.bytes().await?;
                let mut manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Usage(format!(
                        "{}: not a leadflow manifest ({e}); was it edited by hand?",
                        location.url_of(MANIFEST).trim_end_matches('/')
                    ))
                })?;
                manifest.exists = true;
                Ok(manifest)
            }
            Err(object_store::Error::NotFound { .. }) => Ok(Manifest::default()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The files leadflow knows in `snapshot`'s output: those it holds, those
/// recent commits removed (their writers may still be deleting them), and
/// those a pre-log publish was replacing.
pub(crate) fn known_files(snapshot: &Snapshot) -> HashSet<&str> {
    let mut known = snapshot.files();
    for commit in &snapshot.recent {
        known.extend(commit.remove.iter().map(String::as_str));
    }
    if let Some(publishing) = snapshot.legacy.as_ref().and_then(|m| m.publishing.as_ref()) {
        known.extend(publishing.delete.iter().map(String::as_str));
    }
    known
}

/// The Parquet files a table reader would read in the output's tables that
/// are not in `known` nor held by the stream ledger, sorted: files copied in
/// by hand, or those of an output written before manifests (or copied
/// without its `_leadflow/`).
pub(crate) async fn unlisted_files(
    location: &Location,
    known: &HashSet<&str>,
    stream: &crate::stream::ledger::StreamCommits,
) -> Result<Vec<String>> {
    use futures::TryStreamExt;
    let mut unlisted = Vec::new();
    for table in crate::sql::OUTPUT_TABLES {
        let prefix = location.child(table);
        let mut files = location.store.list(Some(&prefix));
        while let Some(meta) = files.try_next().await? {
            let Some(parts) = meta.location.prefix_match(&location.prefix) else {
                continue;
            };
            let rel = ObjectPath::from_iter(parts).to_string();
            // What DataFusion reads of a table directory: `.parquet` files
            // in it or in its `key=value` directories.
            let below = rel.split('/').skip(1).filter(|s| !s.contains('=')).count();
            if !rel.ends_with(".parquet") || below > 1 || known.contains(rel.as_str()) {
                continue;
            }
            if stream.holds(meta.location.filename().unwrap_or_default()) {
                continue;
            }
            unlisted.push(rel);
        }
    }
    unlisted.sort();
    Ok(unlisted)
}

/// A writer into an output, from before it writes until it has published.
pub struct Publisher {
    location: Location,
    write_id: String,
    run_id: String,
    /// The newest version when it began: commits after it are checked
    /// against this one's for conflicts.
    began_at: Option<u64>,
    lease: Lease,
}

/// What a commit did.
#[derive(Debug, Clone)]
pub struct Published {
    /// The run's files, in place (paths in the output's store).
    pub files: Vec<WrittenFile>,
    /// Earlier runs this one replaced.
    pub replaced_runs: Vec<String>,
    /// The version it committed as.
    pub version: u64,
}

impl Publisher {
    /// Begins writing into `location`: takes a lease, and first finishes what
    /// dead writers left (see [`Publisher::tidy`]). Waits for nobody.
    pub async fn open(location: Location, run_id: &str) -> Result<Self> {
        Self::open_as(location, run_id, new_write_id(run_id)).await
    }

    /// [`Publisher::open`] for a run whose `write_id` ([`new_write_id`]) was
    /// chosen before, to name its usage log.
    pub async fn open_as(location: Location, run_id: &str, write_id: String) -> Result<Self> {
        let lease = Lease::take(&location, &write_id)?;
        let began_at = match Self::tidy(&location).await {
            Ok(()) => Snapshot::read(&location).await.map(|s| s.version),
            Err(e) => Err(e),
        };
        let began_at = match began_at {
            Ok(version) => version,
            Err(e) => {
                lease.release();
                return Err(e);
            }
        };
        Ok(Self {
            location,
            write_id,
            run_id: run_id.to_string(),
            began_at,
            lease,
        })
    }

    /// Finishes what dead writers left in the output: upgrades an output
    /// written before the log, commits the calls of runs that died before
    /// they committed (from their usage logs), finishes the moves of a
    /// writer that died after its commit, and deletes the staging of one
    /// that died before it. Live writers' work is left alone.
    pub async fn tidy(location: &Location) -> Result<()> {
        let snapshot = Snapshot::read(location).await?;
        if snapshot.version.is_none() {
            upgrade(location, &snapshot).await?;
        }
        commit_dead_usage(location, true).await?;
        clear_dead_staging(location).await
    }

    /// Whether the output holds a committed run of `batch` (`dt=DATE`).
    pub async fn has_batch(location: &Location, batch: &str) -> Result<bool> {
        let snapshot = Snapshot::read(location).await?;
        Ok(snapshot
            .runs
            .iter()
            .any(|r| !r.usage_only && r.batch.as_deref() == Some(batch)))
    }

    /// Where this run writes its files: every table under it, as in the output.
    pub fn staging(&self) -> Location {
        self.location.under(&self.staging_rel())
    }

    fn staging_rel(&self) -> String {
        format!("{STAGING}/{}", self.write_id)
    }

    /// The unique id that names this run's files.
    pub fn write_id(&self) -> &str {
        &self.write_id
    }

    /// Commits `files` (written under [`Self::staging`]) as the output of a
    /// run over `inputs`, replacing the runs whose inputs are all among them
    /// and, for a `batch`, every earlier run of that batch; then moves them
    /// into place. Fails, committing only the run's provider calls, when a
    /// run over any of the same inputs (or the same batch) committed since
    /// this one began.
    pub async fn commit(
        self,
        inputs: Vec<String>,
        batch: Option<String>,
        files: &[WrittenFile],
    ) -> Result<Published> {
        let relative = relative_to(&self.staging(), files)?;
        let ours: HashSet<&str> = inputs.iter().map(String::as_str).collect();
        // Batch manifests this writer deleted, as they were.
        let mut taken: Vec<(String, ObjectPath, bytes::Bytes)> = Vec::new();
        let (commit, snapshot, replaced_runs) = loop {
            let mut snapshot = Snapshot::read(&self.location).await?;
            if snapshot.version.is_none() && upgrade(&self.location, &snapshot).await? {
                continue;
            }
            if let Some(conflict) = self.conflict(&snapshot, &ours, batch.as_deref()).await? {
                restore_manifests(&self.location, &snapshot, &taken).await?;
                let usage: Vec<String> = relative.iter().filter(|f| is_usage(f)).cloned().collect();
                self.commit_calls_only(usage).await?;
                self.lease.release();
                return Err(Error::Conflict(conflict));
            }
            let replaced: Vec<&CommittedRun> = snapshot
                .runs
                .iter()
                .filter(|r| r.replaced_by(&ours, batch.as_deref()))
                .collect();
            // A batch's `_manifest.json` describes the output it was written
            // after: it goes before that output is replaced (by a rerun of
            // the batch, or a run over the same inputs), and a batch writes
            // its new one once this commit is done. A kill in between leaves
            // the date without a manifest (not done), never with one that
            // describes other leads.
            let batches: HashSet<&str> = replaced
                .iter()
                .filter_map(|r| r.batch.as_deref())
                .chain(batch.as_deref())
                .collect();
            crash_point("before_replacing");
            for batch in batches {
                let path = self.location.child(&crate::batch::manifest_path_of(batch));
                match self.location.store.get(&path).await {
                    Ok(got) => taken.push((batch.to_string(), path.clone(), got.bytes().await?)),
                    Err(object_store::Error::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
                delete_if_present(&self.location, &path).await?;
            }
            let mut commit = Commit::new(Operation::Run, snapshot.next_version(), self.began_at);
            commit.replaces = replaced.iter().map(|r| r.write_id.clone()).collect();
            commit.remove = replaced
                .iter()
                .flat_map(|r| r.files.iter().filter(|f| !is_usage(f)).cloned())
                .collect();
            // A replaced run whose writer is still moving its files (or
            // died doing so) must not move them in after they are deleted:
            // their staged copies go first.
            commit.remove_staged = replaced
                .iter()
                .flat_map(|r| {
                    r.files
                        .iter()
                        .filter(|f| !is_usage(f))
                        .filter_map(|f| r.staged_path(f))
                })
                .collect();
            commit.run = Some(CommittedRun {
                run_id: self.run_id.clone(),
                write_id: self.write_id.clone(),
                committed_at: commit.committed_at,
                inputs: inputs.clone(),
                files: relative.clone(),
                batch: batch.clone(),
                usage_only: false,
                staging: self.staging_rel(),
                appended: inputs.is_empty() && batch.is_none(),
                ..Default::default()
            });
            let replaced_runs: Vec<String> = replaced.iter().map(|r| r.run_id.clone()).collect();
            if try_commit_staged(&self.location, &commit).await? {
                snapshot.apply(commit.clone());
                break (commit, snapshot, replaced_runs);
            }
            tracing::debug!(
                version = commit.version,
                "another writer committed this version first; reading what it did"
            );
        };
        crash_point("after_commit");
        finish(&self.location, &commit).await?;
        log::checkpoint_if_due(&self.location, &snapshot).await;
        self.lease.release();
        let run = commit.run.expect("a run commit has its run");
        Ok(Published {
            files: run
                .files
                .iter()
                .zip(files)
                .map(|(rel, staged)| WrittenFile {
                    path: self.location.child(rel).to_string(),
                    rows: staged.rows,
                })
                .collect(),
            replaced_runs,
            version: commit.version,
        })
    }

    /// Why this run may not commit: a commit since it began over any of
    /// its inputs or of its batch.
    async fn conflict(
        &self,
        snapshot: &Snapshot,
        ours: &HashSet<&str>,
        batch: Option<&str>,
    ) -> Result<Option<String>> {
        let since = snapshot
            .commits_after(&self.location, self.began_at)
            .await?;
        let Some((version, other)) = since.iter().find_map(|c| {
            c.run
                .as_ref()
                .filter(|r| c.operation == Operation::Run && r.overlaps(ours, batch))
                .map(|r| (c.version, r))
        }) else {
            return Ok(None);
        };
        let what = match (&other.batch, batch) {
            (Some(b), Some(ours)) if b == ours => format!("the batch {b}"),
            _ => "some of the same input".to_string(),
        };
        Ok(Some(format!(
            "{}: run `{}` committed {what} while this run worked (version {version}), so this \
             run's leads and rejects were not committed, to leave that run's output as it is; \
             the provider calls this run paid for are in provider_usage. Run it again to \
             replace that output.",
            self.location.url_of("").trim_end_matches('/'),
            other.run_id,
        )))
    }

    /// Commits only `usage` (staged files of this run): the calls it paid
    /// for, as a `usage_only` run. Never conflicts.
    async fn commit_calls_only(&self, usage: Vec<String>) -> Result<()> {
        if usage.is_empty() {
            return delete_under(&self.location, &self.staging().prefix).await;
        }
        let run = CommittedRun {
            run_id: self.run_id.clone(),
            write_id: self.write_id.clone(),
            committed_at: Utc::now(),
            inputs: Vec::new(),
            files: usage,
            batch: None,
            usage_only: true,
            staging: self.staging_rel(),
            ..Default::default()
        };
        let commit = commit_usage(&self.location, run).await?;
        finish(&self.location, &commit).await
    }

    /// Gives up: commits the calls this run paid for from its usage `log`
    /// (closed here), deletes what it staged, and leaves the output as it
    /// was. Best effort; the next writer finishes what is left.
    pub async fn abandon(self, log: Option<&UsageLog>) {
        if let Some(log) = log {
            log.close();
            if let Err(e) = commit_dead_usage(&self.location, true).await {
                tracing::warn!(error = %e, "could not commit this run's provider calls; the next run into this output will");
            }
        }
        if let Err(e) = delete_under(&self.location, &self.staging().prefix).await {
            tracing::warn!(error = %e, "could not delete this run's staged files");
        }
        self.lease.release();
    }
}

/// Commits `run` (a `usage_only` run whose files are staged under its
/// `staging`) at the next free version.
async fn commit_usage(location: &Location, run: CommittedRun) -> Result<Commit> {
    loop {
        let snapshot = Snapshot::read(location).await?;
        if snapshot.version.is_none() && upgrade(location, &snapshot).await? {
            continue;
        }
        let mut commit = Commit::new(
            Operation::UsageRecovery,
            snapshot.next_version(),
            snapshot.version,
        );
        commit.run = Some(run.clone());
        if try_commit_staged(location, &commit).await? {
            return Ok(commit);
        }
    }
}

/// Puts `commit` in its staging directory (for whoever finishes it if its
/// writer dies right after it), then tries to create its version.
async fn try_commit_staged(location: &Location, commit: &Commit) -> Result<bool> {
    let intent = serde_json::to_vec_pretty(commit).expect("a commit serializes");
    let path = location.child(&format!("{}/{INTENT}", commit.staging()));
    location.store.put(&path, PutPayload::from(intent)).await?;
    crash_point("before_commit");
    log::try_commit(location, commit).await
}

/// The first commit into an output written before the log (a
/// `manifest.json`, or tables with files no commit lists) is version 0, an
/// `upgrade` holding its state; a pre-log publish left unfinished is
/// finished first. `true` when the log now has a version 0 (this writer's
/// or another's), `false` when there was nothing to upgrade.
async fn upgrade(location: &Location, snapshot: &Snapshot) -> Result<bool> {
    let mut manifest = snapshot.legacy.clone().unwrap_or_default();
    if let Some(publishing) = manifest.publishing.take() {
        tracing::info!(
            write_id = publishing.write_id,
            "finishing the publish of a run interrupted before the commit log"
        );
        // The same finish as a commit's: the run's files from its staging,
        // then the replaced files (never one the manifest still lists).
        let live: HashSet<&str> = manifest
            .runs
            .iter()
            .flat_map(|r| r.files.iter().map(String::as_str))
            .collect();
        let staging = format!("{STAGING}/{}", publishing.write_id);
        let mut commit = Commit::new(Operation::Run, 0, None);
        commit.run = manifest
            .runs
            .iter()
            .find(|r| r.write_id == publishing.write_id)
            .map(|run| CommittedRun {
                staging: staging.clone(),
                ..run.clone()
            });
        commit.remove = publishing
            .delete
            .into_iter()
            .filter(|f| !live.contains(f.as_str()))
            .collect();
        finish(location, &commit).await?;
        delete_under(location, &location.child(&staging)).await?;
    }
    let stream = crate::stream::ledger::StreamCommits::read(location).await?;
    let listed: HashSet<&str> = manifest
        .runs
        .iter()
        .flat_map(|r| r.files.iter().map(String::as_str))
        .collect();
    let unlisted = unlisted_files(location, &listed, &stream).await?;
    let mut runs = manifest.runs.clone();
    if !unlisted.is_empty() {
        tracing::info!(
            files = unlisted.len(),
            "the output's tables hold files no commit lists (written before manifests, or \
             copied without _leadflow/): they are kept, as one run with no inputs"
        );
        runs.push(CommittedRun {
            run_id: "unlisted".into(),
            write_id: "unlisted".into(),
            committed_at: Utc::now(),
            inputs: Vec::new(),
            files: unlisted,
            batch: None,
            usage_only: false,
            staging: String::new(),
            ..Default::default()
        });
    }
    if runs.is_empty() {
        return Ok(false);
    }
    let mut commit = Commit::new(Operation::Upgrade, 0, None);
    commit.runs = Some(runs);
    if log::try_commit(location, &commit).await? {
        tracing::info!("upgraded the output to the commit log (_leadflow/log)");
        for old in [MANIFEST, LEGACY_LOCK] {
            if let Err(e) = delete_if_present(location, &location.child(old)).await {
                tracing::warn!(error = %e, "could not delete {old} after the upgrade");
            }
        }
    }
    Ok(true)
}

/// Commits the usage logs of runs that are gone as `provider_usage` rows,
/// one commit per log. A log already committed (its run's, or by another
/// writer) is deleted when `remove_committed`, else left for a writer (a
/// reader deletes nothing). A log is locked by whoever found it dead until
/// it is removed, so two writers never commit one log twice.
pub async fn commit_dead_usage(location: &Location, remove_committed: bool) -> Result<()> {
    for log in usage_log::dead_logs(&usage_log::dir_for(location))? {
        let snapshot = Snapshot::read(location).await?;
        if snapshot.runs.iter().any(|r| r.write_id == log.write_id) {
            if remove_committed {
                log.remove()?;
            }
            continue;
        }
        // A stream cut's log outlives its commit only when its writer died
        // between the entry's creation and the log's removal.
        if let Some(cut) = &log.cut
            && crate::stream::ledger::StreamLedger::new(location.clone(), &cut.topic)
                .holds_cut(cut.partition, cut.first, cut.last, &log.write_id)
                .await?
        {
            if remove_committed {
                log.remove()?;
            }
            continue;
        }
        // The dead run's staging is incomplete (its log is the record); it
        // is deleted with the rest of the dead staging. The recovered rows
        // are staged under a lease of this writer's.
        let id = new_write_id(&log.run_id);
        let lease = Lease::take(location, &id)?;
        let staging_rel = format!("{STAGING}/{id}");
        let staging = location.under(&staging_rel);
        let sink = ParquetSinkConfig::new(
            "provider_usage",
            format!("{}-log", log.write_id),
            Some("started_at"),
            Utc::now().date_naive(),
        );
        let mut writer = PartitionedWriter::new(
            staging.clone(),
            sink,
            leadflow_schemas::provider_usage_schema(),
        );
        let mut batcher = UsageBatcher::new(writer.schema().clone(), &log.run_id);
        let mut reader = log.reader()?;
        let mut cost_by_day: std::collections::BTreeMap<String, i64> = Default::default();
        while let Some(rows) = reader.next_chunk(8192)? {
            for row in &rows {
                batcher.append(row, &mut writer).await?;
                let day = DateTime::from_timestamp_micros(row.attempt.started_at)
                    .unwrap_or_default()
                    .format("%Y-%m-%d")
                    .to_string();
                *cost_by_day.entry(day).or_default() += row.attempt.cost_micros;
            }
        }
        batcher.flush(&mut writer).await?;
        let files = writer.close().await?;
        let counts = reader.counts();
        if !files.is_empty() {
            let run = CommittedRun {
                run_id: log.run_id.clone(),
                write_id: log.write_id.clone(),
                committed_at: Utc::now(),
                inputs: Vec::new(),
                files: relative_to(&staging, &files)?,
                batch: None,
                usage_only: true,
                staging: staging_rel.clone(),
                // A run's log (a stream's cut logs are not tagged).
                settle: match log.cut {
                    None => cost_by_day.into_iter().collect(),
                    Some(_) => Vec::new(),
                },
                ..Default::default()
            };
            let commit = commit_usage(location, run).await?;
            crash_point("after_usage_recovery_commit");
            finish(location, &commit).await?;
        }
        lease.release();
        tracing::warn!(
            run_id = log.run_id,
            rows = counts.rows,
            unknown = counts.unknown,
            "committed the provider calls of a run that stopped before it published \
             (`unknown`: requests sent whose answer was never recorded)"
        );
        log.remove()?;
    }
    Ok(())
}

/// Finishes or deletes what dead writers left under `_leadflow/staging/`: a
/// writer whose commit is in the output has its files moved into place and
/// the files its commit removed deleted; any other's staging is deleted.
async fn clear_dead_staging(location: &Location) -> Result<()> {
    let listed = location
        .store
        .list_with_delimiter(Some(&location.child(STAGING)))
        .await?;
    for dir in listed.common_prefixes {
        let Some(id) = dir.filename().map(str::to_string) else {
            continue;
        };
        let Some(lease) = Lease::claim(location, &id)? else {
            continue; // a live writer's
        };
        let staging_rel = format!("{STAGING}/{id}");
        let staging = location.under(&staging_rel);
        let intent = match location.store.get(&staging.child(INTENT)).await {
            Ok(got) => serde_json::from_slice::<Commit>(&got.bytes().await?).ok(),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        // Committed when the log's version of that number is this commit
        // (read now, after the lease: the writer cannot commit any more).
        let committed = match &intent {
            Some(c) => log::read_version(location, c.version)
                .await?
                .is_some_and(|v| v.staging() == staging_rel && v.committed_at == c.committed_at),
            None => false,
        };
        match intent.filter(|_| committed) {
            Some(commit) => {
                tracing::info!(
                    version = commit.version,
                    "finishing the publish of a writer that stopped after its commit"
                );
                // Files a later commit replaced are not moved back in.
                let snapshot = Snapshot::read(location).await?;
                let live = snapshot.files();
                let add: Vec<&str> = commit
                    .add()
                    .into_iter()
                    .filter(|f| live.contains(f))
                    .collect();
                finish_moving(location, &commit, &add).await?;
            }
            // On S3 no lease tells a live writer from a dead one: what is
            // not committed stays until `leadflow` is told otherwise (no
            // clock decides what a live run may lose).
            None if location.local_root.is_none() => continue,
            None => delete_under(location, &staging.prefix).await?,
        }
        lease.release();
    }
    Ok(())
}

/// Moves a committed writer's files into their tables, deletes the files its
/// commit removed, then its staging. Idempotent: a crash anywhere in it is
/// finished by the next writer.
async fn finish(location: &Location, commit: &Commit) -> Result<()> {
    finish_moving(location, commit, &commit.add()).await
}

/// [`finish`], moving in only `add` (the commit's files still live).
async fn finish_moving(location: &Location, commit: &Commit, add: &[&str]) -> Result<()> {
    let staging = location.under(commit.staging());
    for (i, rel) in add.iter().enumerate() {
        rename_if_present(location, &staging.child(rel), &location.child(rel)).await?;
        if i == 0 {
            crash_point("mid_publish");
        }
    }
    for staged in &commit.remove_staged {
        delete_if_present(location, &location.child(staged)).await?;
    }
    for rel in &commit.remove {
        delete_if_present(location, &location.child(rel)).await?;
    }
    if let Some(receipt) = &commit.receipt
        && let Some(id) = receipt["id"].as_str()
    {
        let path = location.child(&format!("{}/{id}.json", erase::RECEIPTS));
        let body = serde_json::to_vec_pretty(receipt).expect("a receipt serializes");
        location.store.put(&path, PutPayload::from(body)).await?;
    }
    if commit.staging().is_empty() {
        return Ok(()); // nothing was staged (a pre-log publish of deletes only)
    }
    delete_under(location, &staging.prefix).await
}

pub(crate) async fn rename_if_present(
    location: &Location,
    from: &ObjectPath,
    to: &ObjectPath,
) -> Result<()> {
    match location.store.rename(from, to).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn delete_if_present(location: &Location, path: &ObjectPath) -> Result<()> {
    match location.store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Puts back the batch manifests a writer that lost a conflict deleted
/// when they describe a run the output still holds: the winner's, written
/// after its commit and before the loser's delete.
async fn restore_manifests(
    location: &Location,
    snapshot: &Snapshot,
    taken: &[(String, ObjectPath, bytes::Bytes)],
) -> Result<()> {
    #[derive(Deserialize)]
    struct Described {
        run_id: String,
    }
    for (batch, path, bytes) in taken {
        let Ok(described) = serde_json::from_slice::<Described>(bytes) else {
            continue;
        };
        let held = snapshot.runs.iter().any(|r| {
            !r.usage_only
                && r.batch.as_deref() == Some(batch.as_str())
                && r.run_id == described.run_id
        });
        if held {
            log::create_if_absent(location, path, bytes.to_vec()).await?;
        }
    }
    Ok(())
}

/// A writer's claim on its staging directory: on local disk an OS lock on
/// `_leadflow/leases/<id>`, held while the writer lives and released by the
/// kernel however it ends. On S3 there is none.
#[derive(Debug)]
pub(crate) struct Lease {
    held: Option<(std::path::PathBuf, std::fs::File)>,
}

impl Lease {
    /// Takes the lease of a new writer `id`, before it stages anything.
    pub(crate) fn take(location: &Location, id: &str) -> Result<Lease> {
        let Some(root) = &location.local_root else {
            return Ok(Lease { held: None });
        };
        let dir = root.join(LEASES);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join(id);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        file.try_lock().map_err(|e| {
            Error::Internal(format!(
                "{}: a new writer's lease is held: {e}",
                path.display()
            ))
        })?;
        Ok(Lease {
            held: Some((path, file)),
        })
    }

    /// The lease of writer `id` when that writer is gone (on S3, always);
    /// `None` while it lives.
    pub(crate) fn claim(location: &Location, id: &str) -> Result<Option<Lease>> {
        let Some(root) = &location.local_root else {
            return Ok(Some(Lease { held: None }));
        };
        let path = root.join(LEASES).join(id);
        let file = match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            // A writer takes its lease before it stages anything and gives
            // it up after its staging is gone: without one, the staging is
            // a dead writer's (or from before leases).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Some(Lease { held: None }));
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        match file.try_lock() {
            Ok(()) => Ok(Some(Lease {
                held: Some((path, file)),
            })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }

    /// Gives the lease up once its staging is gone.
    pub(crate) fn release(self) {
        if let Some((path, _file)) = self.held {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The staged copies of `taken` (files leaving the output) in their runs'
/// staging: a writer that died while moving them in left them there, and
/// they go first, so no one finishing its moves puts them back.
pub(crate) fn staged_copies(snapshot: &Snapshot, taken: &HashSet<&str>) -> Vec<String> {
    snapshot
        .runs
        .iter()
        .flat_map(|r| {
            r.files
                .iter()
                .filter(|f| taken.contains(f.as_str()))
                .filter_map(|f| r.staged_path(f))
        })
        .collect()
}

/// The paths of `files`, written under `staging`, relative to it: where
/// they go in the output.
pub(crate) fn relative_to(staging: &Location, files: &[WrittenFile]) -> Result<Vec<String>> {
    files
        .iter()
        .map(|f| {
            ObjectPath::from(f.path.as_str())
                .prefix_match(&staging.prefix)
                .map(|parts| ObjectPath::from_iter(parts).to_string())
                .ok_or_else(|| Error::Internal(format!("{} was not written under staging", f.path)))
        })
        .collect()
}

/// Deletes every object under `prefix` (on local disk, empty directories stay).
pub(crate) async fn delete_under(location: &Location, prefix: &ObjectPath) -> Result<()> {
    use futures::TryStreamExt;
    let paths: Vec<ObjectPath> = location
        .store
        .list(Some(prefix))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await?;
    for path in &paths {
        delete_if_present(location, path).await?;
    }
    if let Some(root) = &location.local_root {
        let dir = root.join(
            prefix
                .prefix_match(&location.prefix)
                .map(|p| ObjectPath::from_iter(p).to_string())
                .unwrap_or_default(),
        );
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// Tests kill the process at named moments of a publish: the real binary,
/// stopped where a crash would stop it. Unset in normal use.
/// `LEADFLOW_STOP_AT` stops it there instead (SIGSTOP), the first time
/// only, as a paused machine would, until the test sends SIGCONT after
/// creating the file `LEADFLOW_STOP_UNTIL` names (a SIGCONT that comes
/// before it stops the process again).
pub(crate) fn crash_point(name: &str) {
    static STOPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if std::env::var_os("LEADFLOW_CRASH_AT").is_some_and(|v| v == name) {
        eprintln!("leadflow: LEADFLOW_CRASH_AT={name}: aborting");
        std::process::abort();
    }
    if std::env::var_os("LEADFLOW_STOP_AT").is_some_and(|v| v == name)
        && !STOPPED.swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        eprintln!("leadflow: LEADFLOW_STOP_AT={name}: stopping");
        let gate = std::env::var_os("LEADFLOW_STOP_UNTIL").map(std::path::PathBuf::from);
        loop {
            let _ = std::process::Command::new("kill")
                .args(["-STOP", &std::process::id().to_string()])
                .status();
            if gate.as_ref().is_none_or(|g| g.exists()) {
                break;
            }
        }
    }
}

/// A new id, unique to one run, that names its files.
pub fn new_write_id(run_id: &str) -> String {
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let seed = format!(
        "{run_id}\n{}\n{nanos}\n{:?}",
        std::process::id(),
        std::thread::current().id()
    );
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()))
}
