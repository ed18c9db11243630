//! The commit log: what an output holds, as a sequence of versions.
//!
//! `_leadflow/log/{version:020}.json` is one commit. It is created only if
//! absent (S3's conditional PUT, `If-None-Match: *`; a hard link on local
//! disk), so two writers can never both write version `n`: the one that
//! loses reads what the winner did and tries `n + 1`. The newest version is
//! the output; no clock decides anything.
//!
//! A reader in any language follows it so:
//!
//! 1. Read `_leadflow/log/_last_checkpoint` (`{"version": c}`), a hint that
//!    may lag or be missing; then `_leadflow/log/{c:020}.checkpoint.json`,
//!    the state after version `c` (`{"format": 1, "version": c, "runs": [...]}`).
//! 2. List `_leadflow/log/` from there: every `{v:020}.json` with `v > c`,
//!    in order (contiguous; a newer checkpoint listed there is used instead).
//! 3. Apply each commit to the list of runs: first every run whose
//!    `write_id` is in `replaces` keeps only its `provider_usage/` files
//!    (as a `usage_only` run; dropped when it has none), then `run`, when
//!    present, is appended; an `upgrade` commit sets `runs` outright. A
//!    `compact` commit first takes the files in its `remove` out of every
//!    run's `files`; a `compacted` run left with no files is dropped, and
//!    its `covers` pass to the commit's `run` (the highest `through` of
//!    each `dir`, `topic` and `partition`). An `erase` commit replaces,
//!    in whichever run lists it, each file `from` of its `rewrites` by its
//!    `to` (or drops it when `to` is absent); the run keeps everything
//!    else, and a rewritten file not yet in its table is at
//!    `{staged_in}/{to}` (the run's `staged` says so).
//! 4. The output's files are the runs' `files`, relative to the output.
//!    A file not yet in its table (its writer is still moving it, or died
//!    doing so) is at `{staging}/{file}`, `staging` being its run's.
//!
//! With no version at all, an output written before the log is read from
//! `_leadflow/manifest.json` (its `runs`, the same shape) until its first
//! new commit upgrades it.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::{CommittedRun, Cover, Manifest};
use crate::error::{Error, Result};
use crate::storage::Location;

pub const LOG_DIR: &str = "_leadflow/log";
const LAST_CHECKPOINT: &str = "_leadflow/log/_last_checkpoint";
/// A checkpoint is written after every this many versions, so a reader
/// reads one checkpoint and fewer than this many commits.
pub const CHECKPOINT_EVERY: u64 = 50;
const FORMAT: u32 = 1;

/// What a commit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// A `run` or a `batch` (its `run.batch` says which date).
    Run,
    /// The provider calls of a run that died or lost a conflict, from its
    /// usage log or its staged files: a `usage_only` run.
    UsageRecovery,
    /// The first version of an output written before the log: `runs` is
    /// its whole state (the old manifest's runs, and any table files no
    /// commit listed, as a run named `unlisted`).
    Upgrade,
    /// `leadflow compact`: `remove` lists the small files it rewrote (they
    /// leave whichever run lists them), `run` is the compacted run holding
    /// their rows (see [`super::compact`]).
    Compact,
    /// `leadflow forget`: `rewrites` lists files rewritten without some
    /// rows, each staying in its run (see [`super::erase`]).
    Erase,
    /// `leadflow retain`: `rewrites` lists the files of the day partitions
    /// past their retention, each leaving its run with no replacement.
    Retain,
}

/// One file an erasure rewrote: `from` leaves its run, and `to` (the same
/// rows without the erased ones, written under the commit's `staged_in`)
/// takes its place; no `to` when no row was left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rewrite {
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// One version of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Commit {
    pub format: u32,
    pub version: u64,
    pub committed_at: DateTime<Utc>,
    pub operation: Operation,
    /// The newest version the writer had read when it began: commits after
    /// it are the ones it was checked against for conflicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_version: Option<u64>,
    /// The run this commit adds; its `files` are what the commit adds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<CommittedRun>,
    /// `write_id`s of the runs this one replaces (their calls stay).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaces: Vec<String>,
    /// The files that leave the output with this commit (those of the
    /// replaced runs outside `provider_usage/`, or those a compaction
    /// rewrote), for whoever deletes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// Their copies in the replaced runs' staging, deleted first, so a
    /// writer still moving them cannot put them back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_staged: Vec<String>,
    /// An upgrade's whole state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<Vec<CommittedRun>>,
    /// An erasure's rewritten files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrites: Vec<Rewrite>,
    /// Where a commit with no `run` (an erasure) staged the files it adds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub staged_in: String,
    /// An erasure's receipt (no personal data: counts, and subjects as
    /// keyed hashes), written to `_leadflow/erasures/{id}.json` with the
    /// commit's files by whoever finishes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<serde_json::Value>,
}

impl Commit {
    /// The files this commit adds.
    pub fn add(&self) -> Vec<&str> {
        match &self.run {
            Some(run) => run.files.iter().map(String::as_str).collect(),
            None => self
                .rewrites
                .iter()
                .filter_map(|r| r.to.as_deref())
                .collect(),
        }
    }

    /// Where its added files wait until they are moved into their tables
    /// (its run's `staging`), relative to the output.
    pub fn staging(&self) -> &str {
        self.run
            .as_ref()
            .map_or(self.staged_in.as_str(), |r| r.staging.as_str())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    format: u32,
    version: u64,
    runs: Vec<CommittedRun>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LastCheckpoint {
    version: u64,
}

/// The output at one version.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `None`: nothing committed through the log yet.
    pub version: Option<u64>,
    /// Oldest first.
    pub runs: Vec<CommittedRun>,
    /// The commits read after the checkpoint, oldest first.
    pub recent: Vec<Commit>,
    /// Read from an output's `manifest.json`, written before the log.
    pub legacy: Option<Manifest>,
}

fn version_path(location: &Location, version: u64) -> ObjectPath {
    location.child(&format!("{LOG_DIR}/{version:020}.json"))
}

fn checkpoint_path(location: &Location, version: u64) -> ObjectPath {
    location.child(&format!("{LOG_DIR}/{version:020}.checkpoint.json"))
}

/// A log file's name as (version, is a checkpoint).
fn parse_name(name: &str) -> Option<(u64, bool)> {
    let (digits, checkpoint) = match name.strip_suffix(".checkpoint.json") {
        Some(d) => (d, true),
        None => (name.strip_suffix(".json")?, false),
    };
    (digits.len() == 20)
        .then(|| digits.parse().ok())
        .flatten()
        .map(|v| (v, checkpoint))
}

async fn get_json<T: serde::de::DeserializeOwned>(
    location: &Location,
    path: &ObjectPath,
) -> Result<Option<T>> {
    let bytes = match location.store.get(path).await {
        Ok(got) => got.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::Usage(format!(
            "{}: not a leadflow commit log file ({e}); was it edited by hand?",
            location.url_of(path.as_ref())
        ))
    })
}

impl Snapshot {
    /// The output's newest version.
    pub async fn read(location: &Location) -> Result<Snapshot> {
        let hint = get_json::<LastCheckpoint>(location, &location.child(LAST_CHECKPOINT))
            .await?
            .map(|h| h.version);
        let offset = hint.map(|v| checkpoint_path(location, v));
        let dir = location.child(LOG_DIR);
        let listed: Vec<_> = match &offset {
            Some(offset) => location.store.list_with_offset(Some(&dir), offset),
            None => location.store.list(Some(&dir)),
        }
        .try_collect()
        .await?;
        let mut versions = Vec::new();
        let mut checkpoint = hint;
        for meta in &listed {
            match meta.location.filename().and_then(parse_name) {
                Some((v, true)) => checkpoint = checkpoint.max(Some(v)),
                Some((v, false)) => versions.push(v),
                None => {}
            }
        }
        let mut snapshot = Snapshot::default();
        if let Some(c) = checkpoint {
            let path = checkpoint_path(location, c);
            let Some(state) = get_json::<Checkpoint>(location, &path).await? else {
                return Err(Error::Usage(format!(
                    "{}: the commit log's checkpoint is missing; was _leadflow/log edited?",
                    location.url_of(path.as_ref())
                )));
            };
            snapshot.version = Some(state.version);
            snapshot.runs = state.runs;
        }
        versions.retain(|&v| checkpoint.is_none_or(|c| v > c));
        versions.sort_unstable();
        for v in versions {
            let expected = snapshot.version.map_or(0, |s| s + 1);
            if v != expected {
                return Err(Error::Usage(format!(
                    "{}: the commit log has no version {expected} before {v}; was _leadflow/log \
                     edited?",
                    location.url_of(LOG_DIR)
                )));
            }
            let path = version_path(location, v);
            let commit = get_json::<Commit>(location, &path).await?.ok_or_else(|| {
                Error::Usage(format!(
                    "{}: listed, then gone; was _leadflow/log edited?",
                    location.url_of(path.as_ref())
                ))
            })?;
            snapshot.apply(commit);
        }
        if snapshot.version.is_none() {
            let manifest = Manifest::read(location).await?;
            if manifest.exists {
                snapshot.runs = manifest.runs.clone();
                snapshot.legacy = Some(manifest);
            }
        }
        Ok(snapshot)
    }

    pub(crate) fn apply(&mut self, commit: Commit) {
        if let Some(runs) = &commit.runs {
            self.runs = runs.clone();
        }
        if !commit.replaces.is_empty() {
            let replaced: HashSet<&str> = commit.replaces.iter().map(String::as_str).collect();
            let runs = std::mem::take(&mut self.runs);
            self.runs = runs
                .into_iter()
                .filter_map(|r| {
                    if replaced.contains(r.write_id.as_str()) && !r.usage_only {
                        r.usage_residue()
                    } else {
                        Some(r)
                    }
                })
                .collect();
        }
        if !commit.rewrites.is_empty() {
            let rewritten: std::collections::HashMap<&str, Option<&String>> = commit
                .rewrites
                .iter()
                .map(|r| (r.from.as_str(), r.to.as_ref()))
                .collect();
            for run in &mut self.runs {
                if !run.files.iter().any(|f| rewritten.contains_key(f.as_str())) {
                    continue;
                }
                let files = std::mem::take(&mut run.files);
                for file in files {
                    let Some(to) = rewritten.get(file.as_str()) else {
                        run.files.push(file);
                        continue;
                    };
                    run.staged.remove(&file);
                    if let Some(to) = to {
                        run.staged.insert((*to).clone(), commit.staged_in.clone());
                        run.files.push((*to).clone());
                    }
                }
            }
        }
        let mut run = commit.run.clone();
        if commit.operation == Operation::Compact {
            let taken: HashSet<&str> = commit.remove.iter().map(String::as_str).collect();
            let mut passed = Vec::new();
            self.runs.retain_mut(|r| {
                r.files.retain(|f| !taken.contains(f.as_str()));
                let spent = (r.compacted || r.appended) && r.files.is_empty();
                if spent {
                    passed.append(&mut r.covers);
                }
                !spent
            });
            if let Some(run) = &mut run {
                run.covers = merge_covers(run.covers.drain(..).chain(passed));
            }
        }
        if let Some(run) = run {
            self.runs.push(run);
        }
        self.version = Some(commit.version);
        self.recent.push(commit);
    }

    /// The version a writer that read this snapshot commits as.
    pub fn next_version(&self) -> u64 {
        self.version.map_or(0, |v| v + 1)
    }

    /// The stream files compacted runs hold the rows of: the highest
    /// `through` by directory, topic and partition.
    pub fn covers(&self) -> Covers {
        let all = self.runs.iter().flat_map(|r| r.covers.iter().cloned());
        Covers(
            merge_covers(all)
                .into_iter()
                .map(|c| ((c.dir, c.topic, c.partition), c.through))
                .collect(),
        )
    }

    /// Every file the output holds, relative to it.
    pub fn files(&self) -> HashSet<&str> {
        self.runs
            .iter()
            .flat_map(|r| r.files.iter().map(String::as_str))
            .collect()
    }

    /// The commits after `version`, oldest first (read again from the log
    /// when they are older than this snapshot's checkpoint).
    pub async fn commits_after(
        &self,
        location: &Location,
        version: Option<u64>,
    ) -> Result<Vec<Commit>> {
        let first = version.map_or(0, |v| v + 1);
        let Some(last) = self.version else {
            return Ok(Vec::new());
        };
        let mut commits = Vec::new();
        for v in first..=last {
            if let Some(c) = self.recent.iter().find(|c| c.version == v) {
                commits.push(c.clone());
            } else if let Some(c) = get_json::<Commit>(location, &version_path(location, v)).await?
            {
                commits.push(c);
            }
        }
        Ok(commits)
    }
}

/// The highest `through` of each `dir`, `topic` and `partition` in `covers`.
pub(crate) fn merge_covers(covers: impl IntoIterator<Item = Cover>) -> Vec<Cover> {
    let mut merged: std::collections::BTreeMap<(String, String, i32), i64> = Default::default();
    for c in covers {
        let through = merged
            .entry((c.dir, c.topic, c.partition))
            .or_insert(c.through);
        *through = (*through).max(c.through);
    }
    merged
        .into_iter()
        .map(|((dir, topic, partition), through)| Cover {
            dir,
            topic,
            partition,
            through,
        })
        .collect()
}

/// Which stream files compactions have rewritten (see [`Cover`]).
#[derive(Debug, Clone, Default)]
pub struct Covers(std::collections::HashMap<(String, String, i32), i64>);

impl Covers {
    /// Whether the stream file at `rel` (relative to the output) has had
    /// its rows compacted: it is no longer part of the output.
    pub fn covers(&self, rel: &str) -> bool {
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        crate::stream::ledger::cut_file(name).is_some_and(|(topic, partition, _, last)| {
            self.0
                .get(&(dir.to_string(), topic.to_string(), partition))
                .is_some_and(|&through| last <= through)
        })
    }

    /// The `through` of `dir`, `topic` and `partition`, if any.
    pub fn through(&self, dir: &str, topic: &str, partition: i32) -> Option<i64> {
        self.0
            .get(&(dir.to_string(), topic.to_string(), partition))
            .copied()
    }
}

/// Whether the log has `version`.
pub async fn exists(location: &Location, version: u64) -> Result<bool> {
    match location.store.head(&version_path(location, version)).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The commit at `version`, if the log has it.
pub async fn read_version(location: &Location, version: u64) -> Result<Option<Commit>> {
    get_json(location, &version_path(location, version)).await
}

/// Writes `commit` as its version if no other writer has: `false` when the
/// version is taken.
pub async fn try_commit(location: &Location, commit: &Commit) -> Result<bool> {
    let json = serde_json::to_vec_pretty(commit).expect("a commit serializes");
    create_if_absent(location, &version_path(location, commit.version), json).await
}

/// Creates `path` holding `body` unless it exists (S3's conditional PUT, a
/// hard link on local disk, synced): whether this call created it.
///
/// A conditional PUT that S3 applied but answered with an error is sent
/// again by object_store's retry, and that one finds the object there: it
/// is this call's when it holds `body` (every body written this way names
/// its writer and time, so no other holds the same bytes).
pub(crate) async fn create_if_absent(
    location: &Location,
    path: &object_store::path::Path,
    body: Vec<u8>,
) -> Result<bool> {
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match location
        .store
        .put_opts(path, PutPayload::from(body.clone()), create)
        .await
    {
        Ok(_) => {}
        Err(object_store::Error::AlreadyExists { .. }) => {
            let there = location.store.get(path).await?.bytes().await?;
            if there.as_ref() != body.as_slice() {
                return Ok(false);
            }
        }
        Err(e) => return Err(e.into()),
    }
    crate::stream::ledger::sync_local(location, [path.as_ref()]).await?;
    Ok(true)
}

/// After version `snapshot.version`, when one is due: the state as a
/// checkpoint, then the hint that points at it. Best effort: a reader
/// without it reads more commits, nothing else.
pub async fn checkpoint_if_due(location: &Location, snapshot: &Snapshot) {
    let Some(version) = snapshot.version else {
        return;
    };
    if version == 0 || !version.is_multiple_of(CHECKPOINT_EVERY) {
        return;
    }
    let state = Checkpoint {
        format: FORMAT,
        version,
        runs: snapshot.runs.clone(),
    };
    let hint = LastCheckpoint { version };
    let store = &location.store;
    let written = async {
        store
            .put(
                &checkpoint_path(location, version),
                serde_json::to_vec(&state).expect("serializes").into(),
            )
            .await?;
        store
            .put(
                &location.child(LAST_CHECKPOINT),
                serde_json::to_vec(&hint).expect("serializes").into(),
            )
            .await
    };
    if let Err(e) = written.await {
        tracing::warn!(error = %e, version, "could not write the commit log's checkpoint");
    }
}

impl Commit {
    /// A new commit of `operation` at `version`.
    pub fn new(operation: Operation, version: u64, read_version: Option<u64>) -> Self {
        Self {
            format: FORMAT,
            version,
            committed_at: Utc::now(),
            operation,
            read_version,
            run: None,
            replaces: Vec::new(),
            remove: Vec::new(),
            remove_staged: Vec::new(),
            runs: None,
            rewrites: Vec::new(),
            staged_in: String::new(),
            receipt: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(write_id: &str, files: &[&str]) -> CommittedRun {
        CommittedRun {
            run_id: write_id.into(),
            write_id: write_id.into(),
            files: files.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        }
    }

    fn cover(dir: &str, partition: i32, through: i64) -> Cover {
        Cover {
            dir: dir.into(),
            topic: "leads".into(),
            partition,
            through,
        }
    }

    #[test]
    fn a_compaction_takes_files_from_their_runs_and_a_spent_compactions_covers_pass_on() {
        let dir = "enriched_leads/dt=2026-12-05";
        let mut snapshot = Snapshot::default();
        let mut first = Commit::new(Operation::Run, 0, None);
        first.run = Some(run("usage", &["provider_usage/dt=2026-12-05/a.parquet"]));
        snapshot.apply(first);
        let mut earlier = Commit::new(Operation::Compact, 1, Some(0));
        earlier.run = Some(CommittedRun {
            compacted: true,
            covers: vec![cover(dir, 0, 99), cover(dir, 1, 50)],
            ..run("c1", &["enriched_leads/dt=2026-12-05/c1.parquet"])
        });
        snapshot.apply(earlier);
        let covers = snapshot.covers();
        assert!(covers.covers(&format!(
            "{dir}/part-leads-0-00000000000000000090-00000000000000000099-0000.parquet"
        )));
        assert!(!covers.covers(&format!(
            "{dir}/part-leads-0-00000000000000000100-00000000000000000120-0000.parquet"
        )));
        assert!(!covers.covers("rejects/dt=2026-12-05/part-leads-0-00000000000000000090-00000000000000000099-0000.parquet"));

        let mut later = Commit::new(Operation::Compact, 2, Some(1));
        later.remove = vec![
            "enriched_leads/dt=2026-12-05/c1.parquet".into(),
            "provider_usage/dt=2026-12-05/a.parquet".into(),
        ];
        later.run = Some(CommittedRun {
            compacted: true,
            covers: vec![cover(dir, 0, 200)],
            ..run("c2", &["enriched_leads/dt=2026-12-05/c2.parquet"])
        });
        snapshot.apply(later);
        let ids: Vec<(&str, usize)> = snapshot
            .runs
            .iter()
            .map(|r| (r.write_id.as_str(), r.files.len()))
            .collect();
        // The usage run stays (its identity), the spent compaction goes.
        assert_eq!(ids, [("usage", 0), ("c2", 1)]);
        assert_eq!(
            snapshot.runs[1].covers,
            [cover(dir, 0, 200), cover(dir, 1, 50)]
        );
    }

    #[test]
    fn log_names_parse_and_strangers_do_not() {
        assert_eq!(parse_name("00000000000000000007.json"), Some((7, false)));
        assert_eq!(
            parse_name("00000000000000000050.checkpoint.json"),
            Some((50, true))
        );
        assert_eq!(parse_name("7.json"), None);
        assert_eq!(parse_name("_last_checkpoint"), None);
        assert_eq!(parse_name("00000000000000000007.json.tmp"), None);
    }
}
