//! The stream's ledger is its output. Each partition's committed cuts form
//! a chain: a cut of offsets `first..=last` is committed by creating the
//! entry `_leadflow/stream/{topic}/{partition}/cuts/{first:020}.json`, only
//! if absent (S3's conditional PUT, a hard link on disk), and the next cut
//! of the partition begins at `last + 1`. The entry with the highest
//! `first` says what the output holds.
//!
//! A cut is first written under its writer's own staging directory
//! (`…/{partition}/staging/{writer}/`, names carry the offsets), committed,
//! then its files are moved into the tables. On assignment, whoever takes
//! the partition finishes the newest cut's moves (every step is
//! idempotent), deletes staged files at or below its offsets (cuts that
//! never committed) and skips those offsets.
//!
//! **Fencing.** A consumer that lost its partition without noticing (paused
//! past `max.poll.interval.ms`) still holds a cut. Its entry's name is the
//! one the partition's new owner creates for the same offsets, so only one
//! of the two commits. A zombie that comes back after the chain moved past
//! its offsets (the entries there deleted) creates its entry, then finds
//! the chain's next entry does not follow it (each entry names the cut it
//! follows, `after`): it deletes its entry, which nobody reads (readers
//! read the newest), and fails. The last [`KEPT`] entries of each
//! partition are kept, so the entry after a new one is still there while
//! its writer checks.
//!
//! A cut's several files (a day per file, three tables) appear as one
//! commit, as a run's do through the commit log ([`crate::publish`]); a
//! chain per partition, not the output's log, because each partition has
//! one writer at a time and thousands of commits a day.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::publish::log::create_if_absent;
use crate::publish::{
    Lease, META_DIR, crash_point, delete_if_present, delete_under, rename_if_present,
};
use crate::storage::Location;

/// Entries kept behind each partition's newest: the window in which a new
/// entry's writer still finds the entry after it.
pub const KEPT: usize = 32;

/// What one committed cut wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommittedCut {
    pub topic: String,
    pub partition: i32,
    pub first: i64,
    pub last: i64,
    /// Files, relative to the output (and to the cut's staging directory).
    pub files: Vec<String>,
    pub leads: u64,
    pub rejects: u64,
    pub usage_rows: u64,
    pub committed_at: chrono::DateTime<chrono::Utc>,
    /// This cut's id (its usage log's write id). Empty in a marker from
    /// before the chain.
    #[serde(default)]
    pub id: String,
    /// Its staging directory, relative to the output. Empty in a marker
    /// from before the chain, which staged under `…/{partition}/staging/`.
    #[serde(default)]
    pub staging: String,
    /// The id of the cut it follows in its partition's chain.
    #[serde(default)]
    pub after: Option<String>,
}

/// One topic's ledger in an output, as one writer (a stream process) sees
/// it.
#[derive(Debug, Clone)]
pub struct StreamLedger {
    location: Location,
    topic: String,
    /// This writer's staging directory name under each partition.
    writer: String,
    /// The id of the newest cut this writer knows of in each partition it
    /// took: what its next cut follows.
    heads: Arc<Mutex<HashMap<i32, String>>>,
    /// On local disk, held while this writer lives: whoever recovers a
    /// partition deletes the staging of writers whose lease is free.
    lease: Arc<Mutex<Option<Lease>>>,
}

impl StreamLedger {
    /// The ledger as a reader sees it (it stages nothing).
    pub fn new(location: Location, topic: &str) -> Self {
        Self {
            location,
            topic: topic.to_string(),
            writer: crate::publish::new_write_id(topic),
            heads: Arc::default(),
            lease: Arc::default(),
        }
    }

    /// The ledger of a new writer, holding its lease until [`Self::leave`].
    pub fn writer(location: Location, topic: &str) -> Result<Self> {
        let ledger = Self::new(location, topic);
        let lease = Lease::take(&ledger.location, &ledger.writer)?;
        *ledger.lease.lock().expect("lease lock") = Some(lease);
        Ok(ledger)
    }

    /// Gives the writer's lease up, its staging empty (every cut it wrote
    /// committed and moved, or deleted).
    pub fn leave(&self) {
        if let Some(lease) = self.lease.lock().expect("lease lock").take() {
            lease.release();
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    fn partition_root(&self, partition: i32) -> String {
        format!("{META_DIR}/stream/{}/{partition}", self.topic)
    }

    fn range(first: i64, last: i64) -> String {
        format!("{first:020}-{last:020}")
    }

    /// Where this writer stages `partition`'s cuts before their commit,
    /// relative to the output.
    fn staging_rel(&self, partition: i32) -> String {
        format!("{}/staging/{}", self.partition_root(partition), self.writer)
    }

    /// Where this writer stages `partition`'s cuts before their commit.
    pub fn staging(&self, partition: i32) -> Location {
        self.location.under(&self.staging_rel(partition))
    }

    /// Where `cut`'s files were staged.
    fn staged(&self, cut: &CommittedCut) -> Location {
        if cut.staging.is_empty() {
            let legacy = format!("{}/staging", self.partition_root(cut.partition));
            self.location.under(&legacy)
        } else {
            self.location.under(&cut.staging)
        }
    }

    /// The stem of the cut's file names: topic, partition and offsets.
    pub fn file_stem(&self, partition: i32, first: i64, last: i64) -> String {
        format!("{}-{partition}-{}", self.topic, Self::range(first, last))
    }

    fn entry(&self, partition: i32, first: i64) -> ObjectPath {
        self.location.child(&format!(
            "{}/cuts/{first:020}.json",
            self.partition_root(partition)
        ))
    }

    /// A commit marker from before the chain (one per cut, named by its
    /// offsets; the highest was the newest).
    fn legacy_marker(&self, partition: i32, first: i64, last: i64) -> ObjectPath {
        self.location.child(&format!(
            "{}/committed/{}.json",
            self.partition_root(partition),
            Self::range(first, last)
        ))
    }

    /// A cut of `partition` from this writer: its staging, and what it
    /// follows. `id` names it (its usage log's write id).
    pub fn cut(&self, partition: i32, first: i64, last: i64, id: &str) -> CommittedCut {
        let after = self
            .heads
            .lock()
            .expect("heads lock")
            .get(&partition)
            .cloned();
        CommittedCut {
            topic: self.topic.clone(),
            partition,
            first,
            last,
            files: Vec::new(),
            leads: 0,
            rejects: 0,
            usage_rows: 0,
            committed_at: chrono::Utc::now(),
            id: id.to_string(),
            staging: self.staging_rel(partition),
            after,
        }
    }

    /// Commits a cut whose files are staged: from here it is in the output.
    /// Fails with [`Error::Conflict`] when another consumer committed these
    /// offsets: this one lost the partition, and its cut is not in the
    /// output (its staged files are deleted).
    pub async fn commit(&self, cut: &CommittedCut) -> Result<()> {
        let body = serde_json::to_vec_pretty(cut)
            .map_err(|e| Error::Internal(format!("cut entry: {e}")))?;
        // The staged files reach the disk before the entry that names them.
        let staging = self.staged(cut);
        sync_local(&staging, cut.files.iter().map(String::as_str)).await?;
        crash_point("stream_before_ledger");
        let entry = self.entry(cut.partition, cut.first);
        let created = create_if_absent(&self.location, &entry, body).await?;
        let in_chain = if created {
            match self.follows_in_chain(cut).await {
                Ok(follows) => follows,
                Err(e) => {
                    // Not known to be in the chain: taken out of it, so its
                    // calls are not taken for committed (best effort; an
                    // entry left is not followed and so not held either).
                    let _ = delete_if_present(&self.location, &entry).await;
                    return Err(e);
                }
            }
        } else {
            false
        };
        if !in_chain {
            if created {
                delete_if_present(&self.location, &entry).await?;
            }
            for rel in &cut.files {
                delete_if_present(&self.location, &staging.child(rel)).await?;
            }
            return Err(Error::Conflict(format!(
                "another consumer committed offsets {}..={} of {} partition {} (this one lost \
                 the partition while it worked, e.g. paused past max.poll.interval.ms): its \
                 cut is dropped, its provider calls stay in provider_usage; restart it to \
                 rejoin the group",
                cut.first, cut.last, self.topic, cut.partition
            )));
        }
        self.heads
            .lock()
            .expect("heads lock")
            .insert(cut.partition, cut.id.clone());
        crash_point("stream_after_ledger");
        Ok(())
    }

    /// Whether the entry after `cut`'s (if any yet) follows it: false when
    /// the chain had moved past these offsets before `cut`'s entry was
    /// created (its earlier entry there was deleted).
    async fn follows_in_chain(&self, cut: &CommittedCut) -> Result<bool> {
        let next = self
            .entries(cut.partition)
            .await?
            .into_iter()
            .find(|&first| first > cut.first);
        let Some(next) = next else {
            return Ok(true);
        };
        match self.read_entry(cut.partition, next).await? {
            Some(next) => Ok(next.after.as_deref() == Some(cut.id.as_str())),
            // Deleted since the listing: the chain moved on past it.
            None => Ok(false),
        }
    }

    /// Whether the cut `first..=last` of `partition` named `id` is in the
    /// output (asked of a usage log its writer left behind): its entry is
    /// there and in the chain (a fenced writer's stale entry left by a
    /// crash is not), or, once the chain deleted it, the cut's
    /// `provider_usage` files are in the table; for a cut from before the
    /// chain, its marker is there.
    pub async fn holds_cut(&self, partition: i32, first: i64, last: i64, id: &str) -> Result<bool> {
        if let Some(cut) = self.read_entry(partition, first).await? {
            return Ok(cut.id == id && self.follows_in_chain(&cut).await?);
        }
        match self
            .location
            .store
            .head(&self.legacy_marker(partition, first, last))
            .await
        {
            Ok(_) => return Ok(true),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let passed = match self.entries(partition).await?.last() {
            Some(&newest) => newest > first,
            None => false,
        };
        if !passed {
            return Ok(false);
        }
        // Files are named by the cut's offsets: another writer's cut of
        // exactly these offsets (a fenced zombie's twin) shares the names,
        // and then its calls are taken for this one's.
        let prefix = format!("part-{}-", self.file_stem(partition, first, last));
        let table = self.location.child("provider_usage");
        let mut files = self.location.store.list(Some(&table));
        while let Some(meta) = files.try_next().await? {
            if meta
                .location
                .filename()
                .is_some_and(|name| name.starts_with(&prefix))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Moves a committed cut's files into the tables and deletes the
    /// entries more than [`KEPT`] behind it. Idempotent.
    pub async fn publish(&self, cut: &CommittedCut) -> Result<()> {
        let staging = self.staged(cut);
        for rel in &cut.files {
            rename_if_present(
                &self.location,
                &staging.child(rel),
                &self.location.child(rel),
            )
            .await?;
        }
        // The moves reach the disk before the entry that could redo them
        // goes and before the offsets are committed.
        sync_local(&self.location, cut.files.iter().map(String::as_str)).await?;
        let older: Vec<i64> = self
            .entries(cut.partition)
            .await?
            .into_iter()
            .filter(|&first| first < cut.first)
            .collect();
        for &first in older.iter().rev().skip(KEPT) {
            delete_if_present(&self.location, &self.entry(cut.partition, first)).await?;
        }
        for (first, last) in self.legacy_markers(cut.partition).await? {
            if last < cut.last {
                let marker = self.legacy_marker(cut.partition, first, last);
                delete_if_present(&self.location, &marker).await?;
            }
        }
        Ok(())
    }

    /// Makes `partition`'s output whole after whatever happened to its last
    /// writer, and returns the highest offset it holds. From here this
    /// writer's cuts of `partition` follow the newest.
    pub async fn recover(&self, partition: i32) -> Result<Option<i64>> {
        let newest = match self.entries(partition).await?.last() {
            Some(&first) => self.read_entry(partition, first).await?,
            None => self.legacy_newest(partition).await?,
        };
        let through = match &newest {
            Some(cut) => {
                self.publish(cut).await?;
                // Staged at or below it: cuts that never committed, whose
                // offsets are in the output already.
                self.delete_staged_through(partition, cut.last).await?;
                Some(cut.last)
            }
            None => None,
        };
        self.delete_dead_writers_staging(partition).await?;
        let mut heads = self.heads.lock().expect("heads lock");
        match newest {
            Some(cut) => heads.insert(partition, cut.id),
            None => heads.remove(&partition),
        };
        Ok(through)
    }

    /// Deletes the staged files (any writer's) of cuts of `partition` that
    /// end at or below `through`. Staged files past it may be a live
    /// writer's (one about to find itself fenced): they stay until the
    /// chain passes them.
    async fn delete_staged_through(&self, partition: i32, through: i64) -> Result<()> {
        let root = self
            .location
            .child(&format!("{}/staging", self.partition_root(partition)));
        let staged: Vec<_> = self.location.store.list(Some(&root)).try_collect().await?;
        for meta in staged {
            let ended = meta
                .location
                .filename()
                .and_then(cut_file)
                .is_some_and(|(_, p, _, last)| p == partition && last <= through);
            if ended {
                delete_if_present(&self.location, &meta.location).await?;
            }
        }
        Ok(())
    }

    /// On local disk, deletes the staging of `partition`'s writers that are
    /// gone (their lease is free; a staging directory without a lease is
    /// from before leases). On S3 there are no leases: a writer's staging
    /// may be a live one's, and goes once the chain passes its offsets.
    async fn delete_dead_writers_staging(&self, partition: i32) -> Result<()> {
        if self.location.local_root.is_none() {
            return Ok(());
        }
        let root = self
            .location
            .child(&format!("{}/staging", self.partition_root(partition)));
        let listed = self.location.store.list_with_delimiter(Some(&root)).await?;
        for dir in listed.common_prefixes {
            let Some(writer) = dir.filename().filter(|w| *w != self.writer) else {
                continue;
            };
            let Some(lease) = Lease::claim(&self.location, writer)? else {
                continue; // a live writer's
            };
            // Its directories too, on disk.
            delete_under(&self.location, &dir).await?;
            lease.release();
        }
        Ok(())
    }

    /// The `first` offsets of `partition`'s entries, in order.
    async fn entries(&self, partition: i32) -> Result<Vec<i64>> {
        let dir = self
            .location
            .child(&format!("{}/cuts", self.partition_root(partition)));
        let metas: Vec<_> = self.location.store.list(Some(&dir)).try_collect().await?;
        let mut firsts: Vec<i64> = metas
            .iter()
            .filter_map(|m| m.location.filename()?.strip_suffix(".json")?.parse().ok())
            .collect();
        firsts.sort_unstable();
        Ok(firsts)
    }

    /// The newest entry of `partition`, listed at `first`: read again from
    /// a new listing while the chain moves on faster than it is read.
    async fn newest(&self, partition: i32, mut first: i64) -> Result<CommittedCut> {
        for _ in 0..8 {
            if let Some(cut) = self.read_entry(partition, first).await? {
                return Ok(cut);
            }
            match self.entries(partition).await?.last() {
                Some(&newer) => first = newer,
                None => break,
            }
        }
        Err(Error::Internal(format!(
            "the newest entry of {} partition {partition} kept moving while it was read",
            self.topic
        )))
    }

    /// The entry of `partition` at `first`, if it is there.
    async fn read_entry(&self, partition: i32, first: i64) -> Result<Option<CommittedCut>> {
        let path = self.entry(partition, first);
        self.read_cut(&path, partition, first).await
    }

    async fn read_cut(
        &self,
        path: &ObjectPath,
        partition: i32,
        first: i64,
    ) -> Result<Option<CommittedCut>> {
        let bytes = match self.location.store.get(path).await {
            Ok(got) => got.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::Usage(format!(
                "the stream ledger's entry for {} partition {partition} from offset {first} \
                 ({path}) is unreadable: {e}",
                self.topic
            ))
        })
    }

    /// The newest cut of `partition` committed before the chain, if any.
    async fn legacy_newest(&self, partition: i32) -> Result<Option<CommittedCut>> {
        let newest = self
            .legacy_markers(partition)
            .await?
            .into_iter()
            .max_by_key(|r| r.1);
        let Some((first, last)) = newest else {
            return Ok(None);
        };
        let marker = self.legacy_marker(partition, first, last);
        self.read_cut(&marker, partition, first).await
    }

    /// The offset ranges of `partition`'s markers from before the chain.
    async fn legacy_markers(&self, partition: i32) -> Result<Vec<(i64, i64)>> {
        let dir = self
            .location
            .child(&format!("{}/committed", self.partition_root(partition)));
        let metas: Vec<_> = self.location.store.list(Some(&dir)).try_collect().await?;
        Ok(metas
            .iter()
            .filter_map(|m| {
                let name = m.location.filename()?.strip_suffix(".json")?;
                let (first, last) = name.split_once('-')?;
                Some((first.parse().ok()?, last.parse().ok()?))
            })
            .collect())
    }
}

/// The topic, partition and offsets in a cut's file name,
/// `part-{topic}-{partition}-{first}-{last}-{seq}.parquet`.
pub(crate) fn cut_file(file_name: &str) -> Option<(&str, i32, i64, i64)> {
    let stem = file_name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let mut fields = stem.rsplitn(5, '-');
    let _seq = fields.next()?;
    let last = fields.next()?.parse().ok()?;
    let first = fields.next()?.parse().ok()?;
    let partition = fields.next()?.parse().ok()?;
    let topic = fields.next()?;
    Some((topic, partition, first, last))
}

/// What every topic's ledger in an output has committed: the highest
/// committed offset of each partition. A cut's files are named by
/// [`StreamLedger::file_stem`] and reach the tables only after its entry is
/// committed and found in the chain, so a stream file in a table is
/// committed exactly when its `last` offset is at or below its partition's
/// newest entry's.
#[derive(Debug, Default)]
pub struct StreamCommits {
    through: HashMap<(String, i32), i64>,
    /// Each partition's newest entry in its chain.
    newest: HashMap<(String, i32), CommittedCut>,
}

impl StreamCommits {
    /// The commits recorded under the output's `_leadflow/stream/`.
    pub async fn read(location: &Location) -> Result<Self> {
        let root = location.child(&format!("{META_DIR}/stream"));
        let metas: Vec<_> = location.store.list(Some(&root)).try_collect().await?;
        let mut through = HashMap::new();
        let mut newest: HashMap<(String, i32), i64> = HashMap::new();
        for meta in metas {
            let Some(parts) = meta.location.prefix_match(&root) else {
                continue;
            };
            let parts: Vec<String> = parts.map(|p| p.as_ref().to_string()).collect();
            let [topic, partition, kind, name] = parts.as_slice() else {
                continue;
            };
            let (Ok(partition), Some(name)) =
                (partition.parse::<i32>(), name.strip_suffix(".json"))
            else {
                continue;
            };
            let key = (topic.clone(), partition);
            match kind.as_str() {
                "cuts" => {
                    if let Ok(first) = name.parse::<i64>() {
                        let at = newest.entry(key).or_insert(first);
                        *at = (*at).max(first);
                    }
                }
                // Markers from before the chain name their offsets.
                "committed" => {
                    if let Some(Ok(last)) = name.split_once('-').map(|(_, l)| l.parse::<i64>()) {
                        let highest = through.entry(key).or_insert(last);
                        *highest = (*highest).max(last);
                    }
                }
                _ => {}
            }
        }
        let mut cuts = HashMap::new();
        for ((topic, partition), first) in newest {
            let ledger = StreamLedger::new(location.clone(), &topic);
            let cut = ledger.newest(partition, first).await?;
            let highest = through
                .entry((topic.clone(), partition))
                .or_insert(cut.last);
            *highest = (*highest).max(cut.last);
            cuts.insert((topic, partition), cut);
        }
        Ok(Self {
            through,
            newest: cuts,
        })
    }

    /// For each partition with a chain, the highest offset whose cuts'
    /// files are all in their tables and will never be moved again: a
    /// cut's files are moved in before the next cut of its partition
    /// commits, so every cut below the newest; the newest too once none
    /// of its files is left to move (its writer, or whoever recovers it,
    /// then finds nothing staged).
    pub async fn settled(&self, location: &Location) -> Result<HashMap<(String, i32), i64>> {
        let mut settled = HashMap::new();
        for (key, cut) in &self.newest {
            let mut moved = true;
            for rel in &cut.files {
                match location.store.head(&location.child(rel)).await {
                    Ok(_) => {}
                    Err(object_store::Error::NotFound { .. }) => {
                        moved = false;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            settled.insert(key.clone(), if moved { cut.last } else { cut.first - 1 });
        }
        Ok(settled)
    }

    /// The topics whose messages the output holds.
    pub fn topics(&self) -> std::collections::BTreeSet<&str> {
        self.through
            .keys()
            .map(|(topic, _)| topic.as_str())
            .collect()
    }

    /// Whether the output has a stream ledger at all.
    pub fn is_empty(&self) -> bool {
        self.through.is_empty()
    }

    /// Whether `file_name` (`part-{topic}-{partition}-{first}-{last}-{seq}.parquet`)
    /// is a file of a committed cut.
    pub fn holds(&self, file_name: &str) -> bool {
        cut_file(file_name).is_some_and(|(topic, partition, _, last)| {
            self.through
                .get(&(topic.to_string(), partition))
                .is_some_and(|&through| last <= through)
        })
    }
}

/// On local disk, flushes the files at `rels` (relative to `location`) and
/// their directories to the device, so what a commit names survives a power
/// loss, not only the process. object_store does not sync; on S3 a completed
/// PUT is durable and this does nothing.
pub(crate) async fn sync_local<'a>(
    location: &Location,
    rels: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    let Some(root) = &location.local_root else {
        return Ok(());
    };
    let relative = |rel: &str| {
        let path = ObjectPath::from(rel);
        // `rels` may be object paths under the store's root or paths
        // relative to `location`.
        match path.prefix_match(&location.prefix) {
            Some(parts) => root.join(ObjectPath::from_iter(parts).as_ref()),
            None => root.join(rel),
        }
    };
    let files: Vec<std::path::PathBuf> = rels.into_iter().map(relative).collect();
    let root = root.clone();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut dirs = std::collections::BTreeSet::new();
        for file in &files {
            match std::fs::File::open(file) {
                Ok(f) => f.sync_all()?,
                // Already moved (a publish being finished again).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            // The file's directory holds its entry; the one above holds
            // the entry of a `dt=` directory the cut may have created.
            // (Higher ones are created once per partition.)
            let mut dir = file.parent();
            for _ in 0..2 {
                let Some(d) = dir.filter(|d| d.starts_with(&root)) else {
                    break;
                };
                dirs.insert(d.to_path_buf());
                dir = d.parent();
            }
        }
        for dir in dirs {
            std::fs::File::open(&dir)?.sync_all()?;
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::Internal(format!("sync task: {e}")))?
    .map_err(|e| Error::io("syncing the stream's output", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "leads.eu-west";

    fn file_name(ledger: &StreamLedger, partition: i32, first: i64, last: i64) -> String {
        format!(
            "part-{}-0000.parquet",
            ledger.file_stem(partition, first, last)
        )
    }

    /// Stages one file for the cut `first..=last` of partition 3 and
    /// commits it as `ledger`'s writer: the commit's outcome.
    async fn commit(ledger: &StreamLedger, first: i64, last: i64) -> Result<CommittedCut> {
        let rel = format!(
            "enriched_leads/dt=2026-11-25/{}",
            file_name(ledger, 3, first, last)
        );
        let staged = ledger.staging(3).child(&rel);
        ledger
            .location
            .store
            .put(&staged, b"x".to_vec().into())
            .await?;
        let id = crate::publish::new_write_id("test");
        let cut = CommittedCut {
            files: vec![rel],
            leads: 1,
            ..ledger.cut(3, first, last, &id)
        };
        ledger.commit(&cut).await?;
        ledger.publish(&cut).await?;
        Ok(cut)
    }

    /// The cuts' files in the table, as offset ranges.
    async fn published(location: &Location) -> Vec<(i64, i64)> {
        let dir = location.child("enriched_leads");
        let metas: Vec<_> = location.store.list(Some(&dir)).try_collect().await.unwrap();
        let mut ranges: Vec<_> = metas
            .iter()
            .filter_map(|m| cut_file(m.location.filename()?).map(|(_, _, f, l)| (f, l)))
            .collect();
        ranges.sort_unstable();
        ranges
    }

    fn local() -> (tempfile::TempDir, Location) {
        let dir = tempfile::tempdir().unwrap();
        let location = crate::storage::open(dir.path().to_str().unwrap()).unwrap();
        (dir, location)
    }

    /// A cut committed and published by the ledger itself: its files are
    /// held, a later cut's name is not, and only once an entry exists.
    #[tokio::test]
    async fn commits_hold_the_files_of_published_cuts_only() {
        let (_dir, location) = local();
        assert!(StreamCommits::read(&location).await.unwrap().is_empty());
        let ledger = StreamLedger::new(location.clone(), TOPIC);
        ledger.recover(3).await.unwrap();
        for (first, last) in [(0, 99), (100, 199)] {
            commit(&ledger, first, last).await.unwrap();
        }
        let commits = StreamCommits::read(&location).await.unwrap();
        assert!(!commits.is_empty());
        assert!(commits.holds(&file_name(&ledger, 3, 0, 99)));
        assert!(commits.holds(&file_name(&ledger, 3, 100, 199)));
        assert!(!commits.holds(&file_name(&ledger, 3, 200, 299)));
        assert!(!commits.holds(&file_name(&ledger, 4, 0, 99)));
        assert!(!commits.holds("part-0.parquet"));
        assert!(!commits.holds("x.parquet"));
    }

    /// A consumer paused with a cut in hand while the partition's new owner
    /// commits the same offsets: only one of the two is in the output, the
    /// zombie's commit fails and its staged files go.
    #[tokio::test]
    async fn a_zombie_cannot_commit_offsets_the_new_owner_committed() {
        let (_dir, location) = local();
        let zombie = StreamLedger::new(location.clone(), TOPIC);
        zombie.recover(3).await.unwrap();
        commit(&zombie, 0, 99).await.unwrap();
        // The zombie pauses; the group gives partition 3 to `owner`.
        let owner = StreamLedger::new(location.clone(), TOPIC);
        assert_eq!(owner.recover(3).await.unwrap(), Some(99));
        commit(&owner, 100, 249).await.unwrap();
        let err = commit(&zombie, 100, 199).await.unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        assert!(err.to_string().contains("another consumer"), "{err}");
        assert_eq!(published(&location).await, [(0, 99), (100, 249)]);
        let staged: Vec<_> = location
            .store
            .list(Some(&zombie.staging(3).prefix))
            .try_collect()
            .await
            .unwrap();
        assert!(staged.is_empty(), "{staged:?}");
        let commits = StreamCommits::read(&location).await.unwrap();
        assert!(commits.holds(&file_name(&owner, 3, 100, 249)));
    }

    /// A zombie that comes back after the chain moved far past its
    /// offsets (their entry deleted) creates its entry, finds the chain
    /// does not follow it, and fails without a file in the output.
    #[tokio::test]
    async fn a_zombie_back_after_its_entry_was_deleted_is_fenced_too() {
        let (_dir, location) = local();
        let zombie = StreamLedger::new(location.clone(), TOPIC);
        zombie.recover(3).await.unwrap();
        commit(&zombie, 0, 9).await.unwrap();
        let owner = StreamLedger::new(location.clone(), TOPIC);
        owner.recover(3).await.unwrap();
        let cuts = KEPT as i64 + 5;
        for i in 1..=cuts {
            commit(&owner, i * 10, i * 10 + 9).await.unwrap();
        }
        assert!(
            owner.read_entry(3, 10).await.unwrap().is_none(),
            "the entries far behind the newest are deleted"
        );
        let err = commit(&zombie, 10, 14).await.unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        assert!(
            owner.read_entry(3, 10).await.unwrap().is_none(),
            "the zombie's entry is gone again"
        );
        let ranges = published(&location).await;
        assert_eq!(ranges.len() as i64, cuts + 1, "{ranges:?}");
        assert!(!ranges.contains(&(10, 14)), "{ranges:?}");
        let next = owner.recover(3).await.unwrap();
        assert_eq!(next, Some(cuts * 10 + 9));
    }

    /// When the zombie commits first, the new owner is the one fenced: the
    /// zombie's cut is the output's, and a recovery starts after it.
    #[tokio::test]
    async fn whoever_commits_the_offsets_first_wins_them() {
        let (_dir, location) = local();
        let zombie = StreamLedger::new(location.clone(), TOPIC);
        zombie.recover(3).await.unwrap();
        let owner = StreamLedger::new(location.clone(), TOPIC);
        owner.recover(3).await.unwrap();
        commit(&zombie, 0, 49).await.unwrap();
        let err = commit(&owner, 0, 99).await.unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        assert_eq!(published(&location).await, [(0, 49)]);
        let restarted = StreamLedger::new(location.clone(), TOPIC);
        assert_eq!(restarted.recover(3).await.unwrap(), Some(49));
        commit(&restarted, 50, 99).await.unwrap();
        assert_eq!(published(&location).await, [(0, 49), (50, 99)]);
    }

    /// An output whose stream committed by the markers from before the
    /// chain: recovery finishes the newest marker's cut and the chain
    /// goes on after it.
    #[tokio::test]
    async fn the_chain_goes_on_from_a_marker_written_before_it() {
        let (_dir, location) = local();
        let ledger = StreamLedger::new(location.clone(), TOPIC);
        let rel = format!(
            "enriched_leads/dt=2026-11-25/{}",
            file_name(&ledger, 3, 0, 99)
        );
        let legacy_staging = location.under(&format!("{META_DIR}/stream/{TOPIC}/3/staging"));
        let put = |path: ObjectPath, body: Vec<u8>| {
            let store = location.store.clone();
            async move { store.put(&path, body.into()).await.unwrap() }
        };
        put(legacy_staging.child(&rel), b"x".to_vec()).await;
        let marker = serde_json::json!({
            "topic": TOPIC, "partition": 3, "first": 0, "last": 99, "files": [rel],
            "leads": 1, "rejects": 0, "usage_rows": 0,
            "committed_at": "2026-11-25T10:00:00Z"
        });
        put(
            ledger.legacy_marker(3, 0, 99),
            serde_json::to_vec(&marker).unwrap(),
        )
        .await;
        assert!(
            StreamCommits::read(&location)
                .await
                .unwrap()
                .holds(&file_name(&ledger, 3, 0, 99))
        );
        assert_eq!(ledger.recover(3).await.unwrap(), Some(99));
        commit(&ledger, 100, 199).await.unwrap();
        assert_eq!(published(&location).await, [(0, 99), (100, 199)]);
        assert!(ledger.legacy_markers(3).await.unwrap().is_empty());
        assert_eq!(
            StreamLedger::new(location.clone(), TOPIC)
                .recover(3)
                .await
                .unwrap(),
            Some(199)
        );
    }

    /// A usage log's cut is held while its entry is in the chain, and once
    /// the chain deleted the entry, by its `provider_usage` files; a stale
    /// entry a fenced writer left (killed before deleting it) is not.
    #[tokio::test]
    async fn a_left_over_cut_log_is_held_by_the_chain_or_the_cuts_usage_files() {
        let (_dir, location) = local();
        let owner = StreamLedger::new(location.clone(), TOPIC);
        owner.recover(3).await.unwrap();
        let first = commit(&owner, 0, 9).await.unwrap();
        assert!(owner.holds_cut(3, 0, 9, &first.id).await.unwrap());
        assert!(!owner.holds_cut(3, 0, 9, "another-cut").await.unwrap());
        assert!(!owner.holds_cut(3, 10, 19, "not-yet").await.unwrap());

        // A cut whose entry the chain deleted: held through its usage file.
        let rel = format!(
            "provider_usage/dt=2026-11-25/{}",
            file_name(&owner, 3, 10, 19)
        );
        let staged = owner.staging(3).child(&rel);
        location
            .store
            .put(&staged, b"x".to_vec().into())
            .await
            .unwrap();
        let id = crate::publish::new_write_id("test");
        let paid = CommittedCut {
            files: vec![rel],
            ..owner.cut(3, 10, 19, &id)
        };
        owner.commit(&paid).await.unwrap();
        owner.publish(&paid).await.unwrap();
        for i in 2..=(KEPT as i64 + 3) {
            commit(&owner, i * 10, i * 10 + 9).await.unwrap();
        }
        assert!(owner.read_entry(3, 10).await.unwrap().is_none());
        assert!(owner.holds_cut(3, 10, 19, &id).await.unwrap());
        assert!(
            !owner.holds_cut(3, 0, 9, &first.id).await.unwrap(),
            "no usage file"
        );

        // A fenced writer's stale entry, left behind.
        let zombie = StreamLedger::new(location.clone(), TOPIC);
        let stale = CommittedCut {
            after: Some("gone".into()),
            ..zombie.cut(3, 20, 24, "zombie-cut")
        };
        let body = serde_json::to_vec(&stale).unwrap();
        assert!(
            create_if_absent(&location, &zombie.entry(3, 20), body.clone())
                .await
                .unwrap()
        );
        assert!(!zombie.holds_cut(3, 20, 24, "zombie-cut").await.unwrap());
        // Creating it again with the same bytes is this writer's own create
        // (an S3 PUT retried after it was applied); other bytes are not.
        assert!(
            create_if_absent(&location, &zombie.entry(3, 20), body)
                .await
                .unwrap()
        );
        assert!(
            !create_if_absent(&location, &zombie.entry(3, 20), b"{}".to_vec())
                .await
                .unwrap()
        );
    }
}
