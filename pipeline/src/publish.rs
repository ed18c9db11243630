//! How a run's files become the output: all at once, and only when complete.
//!
//! An output directory (local or `s3://`) holds the tables and, under
//! `_leadflow/`, the bookkeeping that keeps them whole across crashes,
//! reruns and concurrent runs:
//!
//! - `_leadflow/lock`: one run writes into an output at a time. On local disk
//!   it is an OS file lock, released by the kernel when the process ends,
//!   however it ends; on S3 an object created only if absent, refreshed while
//!   the run lives and taken over once it has not been refreshed for
//!   [`LOCK_STALE`]. A second run waits for the first.
//! - `_leadflow/staging/<write_id>/`: a run writes every file here, under
//!   names no other run uses. Readers never look here (pyarrow, DuckDB and
//!   Polars skip `_`-prefixed directories; `leadflow sql` reads the tables).
//! - `_leadflow/manifest.json`: the runs whose files make up the output. A
//!   run **commits** by replacing it in one write (an atomic rename on local
//!   disk, a single PUT on S3); that is the moment its output exists. Then it
//!   moves its files from staging into the tables and deletes the files of
//!   the runs it replaces. Until that is done the manifest says so
//!   (`publishing`), and whichever run takes the lock next finishes it.
//!
//! A run replaces an earlier one when every input the earlier one read is
//! among its own inputs, compared by content, not by name: rerunning a file
//! replaces its output, a new file under yesterday's name adds to it.
//! `provider_usage` is the billing audit and only grows: a replaced run's
//! leads and rejects go, its calls stay (a `usage_only` entry keeps them).
//! The calls of a run that died before it committed are committed from its
//! usage log ([`crate::sinks::usage_log`]) by whoever takes the output next.
//!
//! A crash before the commit leaves the output as it was (the next run
//! deletes the staged files); a crash after it leaves the new output, which
//! the next run finishes publishing.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sinks::parquet::{ParquetSinkConfig, PartitionedWriter, WrittenFile};
use crate::sinks::provider_usage::UsageBatcher;
use crate::sinks::usage_log::{self, UsageLog};
use crate::storage::Location;

/// Where leadflow keeps its bookkeeping inside an output.
pub const META_DIR: &str = "_leadflow";
const MANIFEST: &str = "_leadflow/manifest.json";
const LOCK: &str = "_leadflow/lock";
const STAGING: &str = "_leadflow/staging";
const MANIFEST_VERSION: u32 = 1;

/// An S3 lock not refreshed for this long belongs to a run that died.
pub const LOCK_STALE: Duration = Duration::from_secs(120);
const LOCK_REFRESH: Duration = Duration::from_secs(30);
const LOCK_POLL: Duration = Duration::from_secs(1);

/// The runs whose files make up an output.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// Oldest first.
    pub runs: Vec<CommittedRun>,
    /// Present from a commit until its files are in place and the files it
    /// replaced are gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publishing: Option<Publishing>,
}

/// One run's contribution to an output.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Whether `rel` (a file relative to the output) is one of `provider_usage`'s.
fn is_usage(rel: &str) -> bool {
    rel.starts_with("provider_usage/")
}

impl CommittedRun {
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
        })
    }
}

/// A commit whose files are still being moved into place.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publishing {
    pub write_id: String,
    /// Files of the replaced runs, relative to the output.
    pub delete: Vec<String>,
}

impl Manifest {
    /// The output's manifest; empty for an output no run has committed to.
    pub async fn read(location: &Location) -> Result<Manifest> {
        let path = location.child(MANIFEST);
        match location.store.get(&path).await {
            Ok(got) => {
                let bytes = got.bytes().await?;
                serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Usage(format!(
                        "{}: not a leadflow manifest ({e}); was it edited by hand?",
                        location.url_of(MANIFEST).trim_end_matches('/')
                    ))
                })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(Manifest {
                version: MANIFEST_VERSION,
                ..Default::default()
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn write(&self, location: &Location) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        location
            .store
            .put(&location.child(MANIFEST), PutPayload::from(json))
            .await?;
        Ok(())
    }

    /// Every file the committed runs hold, relative to the output.
    pub fn files(&self) -> HashSet<&str> {
        self.runs
            .iter()
            .flat_map(|r| r.files.iter().map(String::as_str))
            .collect()
    }
}

/// The Parquet files a table reader would read in the output's tables that
/// neither `manifest` nor the stream ledger lists, sorted: files copied in
/// by hand, or those of an output written before manifests (or copied
/// without its `_leadflow/`).
pub(crate) async fn unlisted_files(
    location: &Location,
    manifest: &Manifest,
    stream: &crate::stream::ledger::StreamCommits,
) -> Result<Vec<String>> {
    use futures::TryStreamExt;
    let mut listed = manifest.files();
    // A publish under way (another run's, now) still lists what it replaces.
    if let Some(publishing) = &manifest.publishing {
        listed.extend(publishing.delete.iter().map(String::as_str));
    }
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
            if !rel.ends_with(".parquet") || below > 1 || listed.contains(rel.as_str()) {
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

/// A run's hold on an output, from before it writes until it has published.
pub struct Publisher {
    location: Location,
    write_id: String,
    run_id: String,
    lock: Lock,
}

/// What a commit did.
#[derive(Debug, Clone)]
pub struct Published {
    /// The run's files, in place (paths in the output's store).
    pub files: Vec<WrittenFile>,
    /// Earlier runs this one replaced.
    pub replaced_runs: Vec<String>,
}

impl Publisher {
    /// Takes the output's lock (waiting while another run holds it), then
    /// finishes what an interrupted run left: a publish to complete, staged
    /// files to delete.
    pub async fn open(location: Location, run_id: &str) -> Result<Self> {
        Self::open_as(location, run_id, new_write_id(run_id)).await
    }

    /// [`Publisher::open`] for a run whose `write_id` ([`new_write_id`]) was
    /// chosen before, to name its usage log.
    pub async fn open_as(location: Location, run_id: &str, write_id: String) -> Result<Self> {
        let lock = Lock::acquire(&location, run_id, &write_id).await?;
        let publisher = Self {
            location,
            write_id,
            run_id: run_id.to_string(),
            lock,
        };
        publisher.recover().await?;
        Ok(publisher)
    }

    /// Makes the output whole for a reader: when a commit's publish is not
    /// finished, waits for the run doing it or, when that run is gone,
    /// finishes it. Does nothing (and needs no write access) otherwise.
    pub async fn settle(location: &Location, reader: &str) -> Result<()> {
        if Manifest::read(location).await?.publishing.is_none()
            && usage_log::dead_logs(&usage_log::dir_for(location))?.is_empty()
        {
            return Ok(());
        }
        let publisher = Self::open(location.clone(), reader).await?;
        publisher.lock.release(&publisher.location).await;
        Ok(())
    }

    /// Whether the output holds a committed run of `batch` (`dt=DATE`).
    pub async fn has_batch(location: &Location, batch: &str) -> Result<bool> {
        let manifest = Manifest::read(location).await?;
        Ok(manifest
            .runs
            .iter()
            .any(|r| !r.usage_only && r.batch.as_deref() == Some(batch)))
    }

    /// Where this run writes its files: every table under it, as in the output.
    pub fn staging(&self) -> Location {
        self.location.under(&format!("{STAGING}/{}", self.write_id))
    }

    /// The unique id that names this run's files.
    pub fn write_id(&self) -> &str {
        &self.write_id
    }

    /// Commits `files` (written under [`Self::staging`]) as the output of a
    /// run over `inputs`, replacing the runs whose inputs are all among them
    /// and, for a `batch`, every earlier run of that batch; then moves them
    /// into place and releases the output.
    pub async fn commit(
        self,
        inputs: Vec<String>,
        batch: Option<String>,
        files: &[WrittenFile],
    ) -> Result<Published> {
        let relative = relative_to(&self.staging(), files)?;
        let batch_key = batch.clone();

        let mut manifest = Manifest::read(&self.location).await?;
        if manifest.runs.is_empty() {
            self.adopt_unlisted(&mut manifest).await?;
        }
        let ours: HashSet<&str> = inputs.iter().map(String::as_str).collect();
        let (replaced, kept): (Vec<CommittedRun>, Vec<CommittedRun>) =
            manifest.runs.into_iter().partition(|r| {
                !r.usage_only
                    && ((batch.is_some() && r.batch == batch)
                        || (!r.inputs.is_empty()
                            && r.inputs.iter().all(|i| ours.contains(i.as_str()))))
            });
        manifest.runs = kept;
        // The billing audit only grows: the replaced runs' calls stay.
        manifest
            .runs
            .extend(replaced.iter().filter_map(CommittedRun::usage_residue));
        manifest.runs.push(CommittedRun {
            run_id: self.run_id.clone(),
            write_id: self.write_id.clone(),
            committed_at: Utc::now(),
            inputs,
            files: relative.clone(),
            batch,
            usage_only: false,
        });
        manifest.publishing = Some(Publishing {
            write_id: self.write_id.clone(),
            delete: replaced
                .iter()
                .flat_map(|r| r.files.iter().filter(|f| !is_usage(f)).cloned())
                .collect(),
        });
        // A batch's `_manifest.json` describes the output it was written
        // after: it goes before that output is replaced (by a rerun of the
        // batch, or a run over the same inputs), and a batch writes its new
        // one once this commit is done. A kill in between leaves the date
        // without a manifest (not done), never with one that describes
        // other leads.
        let batches: HashSet<&str> = replaced
            .iter()
            .filter_map(|r| r.batch.as_deref())
            .chain(batch_key.as_deref())
            .collect();
        for batch in batches {
            let path = self.location.child(&crate::batch::manifest_path_of(batch));
            match self.location.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        crash_point("before_commit");
        manifest.write(&self.location).await?;
        crash_point("after_commit");
        self.finish_publish(&mut manifest).await?;
        self.lock.release(&self.location).await;
        Ok(Published {
            files: relative
                .iter()
                .zip(files)
                .map(|(rel, staged)| WrittenFile {
                    path: self.location.child(rel).to_string(),
                    rows: staged.rows,
                })
                .collect(),
            replaced_runs: replaced.into_iter().map(|r| r.run_id).collect(),
        })
    }

    /// The first commit into an output whose tables already hold files (an
    /// output written before manifests, or copied without its
    /// `_leadflow/`) lists them as one run with no inputs, so they stay in
    /// what readers read, and no rerun replaces them.
    async fn adopt_unlisted(&self, manifest: &mut Manifest) -> Result<()> {
        let stream = crate::stream::ledger::StreamCommits::read(&self.location).await?;
        let files = unlisted_files(&self.location, manifest, &stream).await?;
        if files.is_empty() {
            return Ok(());
        }
        tracing::info!(
            files = files.len(),
            "the output's tables hold files no commit lists (written before manifests, or \
             copied without _leadflow/): they are kept, as one run with no inputs"
        );
        manifest.runs.push(CommittedRun {
            run_id: "unlisted".into(),
            write_id: "unlisted".into(),
            committed_at: Utc::now(),
            inputs: Vec::new(),
            files,
            batch: None,
            usage_only: false,
        });
        Ok(())
    }

    /// Gives up: commits the calls this run paid for from its usage `log`
    /// (closed here), deletes what it staged and releases the output, whose
    /// leads stay as they were. Best effort; the next run finishes what is
    /// left.
    pub async fn abandon(self, log: Option<&UsageLog>) {
        if let Some(log) = log {
            log.close();
            if let Err(e) = self.commit_dead_usage().await {
                tracing::warn!(error = %e, "could not commit this run's provider calls; the next run into this output will");
            }
        }
        if let Err(e) = delete_under(&self.location, &self.staging().prefix).await {
            tracing::warn!(error = %e, "could not delete this run's staged files");
        }
        self.lock.release(&self.location).await;
    }

    /// Commits the usage logs of runs that are gone as `provider_usage`
    /// rows, one commit per log (a log already committed is only deleted).
    async fn commit_dead_usage(&self) -> Result<()> {
        for log in usage_log::dead_logs(&usage_log::dir_for(&self.location))? {
            let mut manifest = Manifest::read(&self.location).await?;
            if manifest.runs.iter().any(|r| r.write_id == log.write_id) {
                log.remove()?;
                continue;
            }
            // A stream cut's log outlives its commit only by the moment
            // between the marker's write and the log's removal; a stream
            // recovers before it writes the partition's next cut, so the
            // marker is still there.
            if let Some(cut) = &log.cut
                && crate::stream::ledger::StreamLedger::new(self.location.clone(), &cut.topic)
                    .has_marker(cut.partition, cut.first, cut.last)
                    .await?
            {
                log.remove()?;
                continue;
            }
            let staged_root = format!("{STAGING}/{}", log.write_id);
            let staging = self.location.under(&staged_root);
            // What the dead run staged is incomplete; its log is the record.
            delete_under(&self.location, &staging.prefix).await?;
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
            while let Some(rows) = reader.next_chunk(8192)? {
                for row in &rows {
                    batcher.append(row, &mut writer).await?;
                }
            }
            batcher.flush(&mut writer).await?;
            let files = writer.close().await?;
            let counts = reader.counts();
            if !files.is_empty() {
                if manifest.runs.is_empty() {
                    self.adopt_unlisted(&mut manifest).await?;
                }
                manifest.runs.push(CommittedRun {
                    run_id: log.run_id.clone(),
                    write_id: log.write_id.clone(),
                    committed_at: Utc::now(),
                    inputs: Vec::new(),
                    files: relative_to(&staging, &files)?,
                    batch: None,
                    usage_only: true,
                });
                manifest.publishing = Some(Publishing {
                    write_id: log.write_id.clone(),
                    delete: Vec::new(),
                });
                manifest.write(&self.location).await?;
                crash_point("after_usage_recovery_commit");
                self.finish_publish(&mut manifest).await?;
            }
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

    async fn recover(&self) -> Result<()> {
        let mut manifest = Manifest::read(&self.location).await?;
        if let Some(publishing) = &manifest.publishing {
            tracing::info!(
                write_id = publishing.write_id,
                "finishing the publish of an interrupted run"
            );
            self.finish_publish(&mut manifest).await?;
        }
        self.commit_dead_usage().await?;
        // We hold the lock: whatever is staged belongs to a run that died.
        delete_under(&self.location, &self.location.child(STAGING)).await
    }

    /// Moves the committing run's files into place, deletes the files of the
    /// runs it replaced, and records that the publish is done. Idempotent:
    /// a crash anywhere in it is finished by the next run.
    async fn finish_publish(&self, manifest: &mut Manifest) -> Result<()> {
        let Some(publishing) = manifest.publishing.clone() else {
            return Ok(());
        };
        let store = &self.location.store;
        let staged_root = format!("{STAGING}/{}", publishing.write_id);
        if let Some(run) = manifest
            .runs
            .iter()
            .find(|r| r.write_id == publishing.write_id)
        {
            for (i, rel) in run.files.iter().enumerate() {
                let from = self.location.child(&format!("{staged_root}/{rel}"));
                match store.rename(&from, &self.location.child(rel)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                if i == 0 {
                    crash_point("mid_publish");
                }
            }
        }
        let live = manifest.files();
        for rel in &publishing.delete {
            // A replaced run's file name is never reused, but stay safe.
            if live.contains(rel.as_str()) {
                continue;
            }
            match store.delete(&self.location.child(rel)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        manifest.publishing = None;
        manifest.write(&self.location).await?;
        delete_under(&self.location, &self.location.child(&staged_root)).await
    }
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
        match location.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
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
pub(crate) fn crash_point(name: &str) {
    if std::env::var_os("LEADFLOW_CRASH_AT").is_some_and(|v| v == name) {
        eprintln!("leadflow: LEADFLOW_CRASH_AT={name}: aborting");
        std::process::abort();
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

/// Who holds an output.
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    run_id: String,
    write_id: String,
    pid: u32,
    since: DateTime<Utc>,
    /// Refreshed while the run lives (S3).
    heartbeat: DateTime<Utc>,
}

impl Holder {
    fn new(run_id: &str, write_id: &str) -> Self {
        Self {
            run_id: run_id.to_string(),
            write_id: write_id.to_string(),
            pid: std::process::id(),
            since: Utc::now(),
            heartbeat: Utc::now(),
        }
    }

    fn describe(bytes: &[u8]) -> String {
        match serde_json::from_slice::<Holder>(bytes) {
            Ok(h) => format!("run {} (pid {}, since {})", h.run_id, h.pid, h.since),
            Err(_) => "another run".to_string(),
        }
    }
}

enum Lock {
    /// Held while the file is open; released by the kernel when it closes,
    /// crash or not.
    Local { _open: std::fs::File },
    /// An object that exists while a run holds the output.
    Object {
        path: ObjectPath,
        /// Refreshes the lock; taken when it is released.
        heartbeat: Option<tokio::task::JoinHandle<()>>,
    },
}

impl Lock {
    async fn acquire(location: &Location, run_id: &str, write_id: &str) -> Result<Self> {
        let holder = Holder::new(run_id, write_id);
        match &location.local_root {
            Some(root) => {
                let dir = root.join(META_DIR);
                std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                let path = root.join(LOCK);
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                let file = match file.try_lock() {
                    Ok(()) => file,
                    Err(std::fs::TryLockError::WouldBlock) => {
                        let held_by = Holder::describe(&std::fs::read(&path).unwrap_or_default());
                        tracing::warn!(
                            output = %root.display(),
                            "waiting for {held_by} to finish writing this output"
                        );
                        tokio::task::spawn_blocking(move || file.lock().map(|()| file))
                            .await
                            .map_err(|e| Error::Internal(format!("lock task: {e}")))?
                            .map_err(|e| Error::io(&path, e))?
                    }
                    Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
                };
                // Who holds it, for the message of a run that waits.
                let json = serde_json::to_vec(&holder).expect("serializes");
                std::fs::write(&path, json).map_err(|e| Error::io(&path, e))?;
                Ok(Lock::Local { _open: file })
            }
            None => {
                let path = location.child(LOCK);
                let mut warned = false;
                loop {
                    let json = serde_json::to_vec(&holder).expect("serializes");
                    let create = PutOptions {
                        mode: PutMode::Create,
                        ..Default::default()
                    };
                    match location.store.put_opts(&path, json.into(), create).await {
                        Ok(_) => break,
                        Err(object_store::Error::AlreadyExists { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                    let held = match location.store.get(&path).await {
                        Ok(got) => got.bytes().await?,
                        Err(object_store::Error::NotFound { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    };
                    let stale = serde_json::from_slice::<Holder>(&held)
                        .map(|h| {
                            Utc::now() - h.heartbeat
                                > chrono::Duration::from_std(LOCK_STALE).expect("small")
                        })
                        .unwrap_or(true);
                    if stale {
                        tracing::warn!(
                            "taking over the lock of {}: not refreshed for {}s",
                            Holder::describe(&held),
                            LOCK_STALE.as_secs()
                        );
                        location.store.delete(&path).await?;
                        continue;
                    }
                    if !warned {
                        tracing::warn!(
                            output = %location.url_of(""),
                            "waiting for {} to finish writing this output",
                            Holder::describe(&held)
                        );
                        warned = true;
                    }
                    tokio::time::sleep(LOCK_POLL).await;
                }
                let heartbeat = {
                    let (store, path) = (location.store.clone(), path.clone());
                    tokio::spawn(async move {
                        let mut holder = holder;
                        loop {
                            tokio::time::sleep(LOCK_REFRESH).await;
                            holder.heartbeat = Utc::now();
                            let json = serde_json::to_vec(&holder).expect("serializes");
                            if let Err(e) = store.put(&path, json.into()).await {
                                tracing::warn!(error = %e, "could not refresh the output lock");
                            }
                        }
                    })
                };
                Ok(Lock::Object {
                    path,
                    heartbeat: Some(heartbeat),
                })
            }
        }
    }

    async fn release(mut self, location: &Location) {
        if let Lock::Object { path, heartbeat } = &mut self {
            if let Some(heartbeat) = heartbeat.take() {
                heartbeat.abort();
                let _ = heartbeat.await;
            }
            if let Err(e) = location.store.delete(path).await {
                tracing::warn!(error = %e, "could not release the output lock");
            }
        }
    }
}

impl Drop for Lock {
    /// A run that fails stops refreshing its S3 lock, which then goes stale
    /// (a local lock is released with its file).
    fn drop(&mut self) {
        if let Lock::Object {
            heartbeat: Some(heartbeat),
            ..
        } = self
        {
            heartbeat.abort();
        }
    }
}
