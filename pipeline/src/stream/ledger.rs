//! The stream's ledger is its output. Each cut of a partition (offsets
//! `first..=last`) is written under the partition's staging directory
//! (names carry the offsets, so cuts never share one; the directories stay,
//! so a cut creates no directory), then
//! committed by one marker object, `_leadflow/stream/{topic}/{partition}/
//! committed/{first}-{last}.json` (a rename on local disk, one PUT on S3),
//! then its files are moved into the tables. The marker with the highest
//! `last` says what the output holds; on assignment, whoever takes the
//! partition finishes that cut's moves (every step is idempotent), deletes
//! any staging a crash left, and skips the offsets at or below `last`.
//!
//! A cut's several files (a day per file, three tables) appear as one
//! commit, as a run's do through the manifest ([`crate::publish`]); a marker
//! per partition, not one manifest, because each partition has one writer
//! at a time and thousands of commits a day.

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::publish::{META_DIR, crash_point, delete_if_present, delete_under, rename_if_present};
use crate::storage::Location;

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
}

/// One topic's ledger in an output.
#[derive(Debug, Clone)]
pub struct StreamLedger {
    location: Location,
    topic: String,
}

impl StreamLedger {
    pub fn new(location: Location, topic: &str) -> Self {
        Self {
            location,
            topic: topic.to_string(),
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

    /// Where `partition`'s cuts are written before their commit.
    pub fn staging(&self, partition: i32) -> Location {
        self.location
            .under(&format!("{}/staging", self.partition_root(partition)))
    }

    /// The stem of the cut's file names: topic, partition and offsets.
    pub fn file_stem(&self, partition: i32, first: i64, last: i64) -> String {
        format!("{}-{partition}-{}", self.topic, Self::range(first, last))
    }

    fn marker(&self, partition: i32, first: i64, last: i64) -> ObjectPath {
        self.location.child(&format!(
            "{}/committed/{}.json",
            self.partition_root(partition),
            Self::range(first, last)
        ))
    }

    /// Commits a cut whose files are staged: from here it is in the output.
    pub async fn commit(&self, cut: &CommittedCut) -> Result<()> {
        let body = serde_json::to_vec_pretty(cut)
            .map_err(|e| Error::Internal(format!("cut marker: {e}")))?;
        // The staged files reach the disk before the marker that names them.
        let staging = self.staging(cut.partition);
        sync_local(&staging, cut.files.iter().map(String::as_str)).await?;
        crash_point("stream_before_ledger");
        let marker = self.marker(cut.partition, cut.first, cut.last);
        self.location.store.put(&marker, body.into()).await?;
        sync_local(&self.location, [marker.as_ref()]).await?;
        crash_point("stream_after_ledger");
        Ok(())
    }

    /// Whether the cut `first..=last` of `partition` is committed and no
    /// later cut of the partition has been published since (its marker is
    /// there).
    pub async fn has_marker(&self, partition: i32, first: i64, last: i64) -> Result<bool> {
        match self
            .location
            .store
            .head(&self.marker(partition, first, last))
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves a committed cut's files into the tables and deletes the
    /// markers before it. Idempotent.
    pub async fn publish(&self, cut: &CommittedCut) -> Result<()> {
        let staging = self.staging(cut.partition);
        for rel in &cut.files {
            rename_if_present(
                &self.location,
                &staging.child(rel),
                &self.location.child(rel),
            )
            .await?;
        }
        // The moves reach the disk before the marker that could redo them
        // goes (with the next cut's publish) and before the offsets are
        // committed.
        sync_local(&self.location, cut.files.iter().map(String::as_str)).await?;
        for (first, last) in self.markers(cut.partition).await? {
            if last < cut.last {
                delete_if_present(&self.location, &self.marker(cut.partition, first, last)).await?;
            }
        }
        Ok(())
    }

    /// Makes `partition`'s output whole after whatever happened to its last
    /// writer, and returns the highest offset it holds.
    pub async fn recover(&self, partition: i32) -> Result<Option<i64>> {
        let latest = self
            .markers(partition)
            .await?
            .into_iter()
            .max_by_key(|r| r.1);
        let staging_root = self.staging(partition).prefix;
        let Some((first, last)) = latest else {
            delete_under(&self.location, &staging_root).await?;
            return Ok(None);
        };
        let bytes = self
            .location
            .store
            .get(&self.marker(partition, first, last))
            .await?
            .bytes()
            .await?;
        let cut: CommittedCut = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Usage(format!(
                "the stream ledger's marker for {}/{partition} {first}-{last} is unreadable: {e}",
                self.topic
            ))
        })?;
        self.publish(&cut).await?;
        // Anything still staged was never committed: its offsets come again.
        delete_under(&self.location, &staging_root).await?;
        Ok(Some(last))
    }

    /// The committed cuts' offset ranges still recorded for `partition`.
    async fn markers(&self, partition: i32) -> Result<Vec<(i64, i64)>> {
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

/// What every topic's ledger in an output has committed: the highest
/// committed offset of each partition. A cut's files are named by
/// [`StreamLedger::file_stem`] and reach the tables only after its marker,
/// and markers go only once a later one is written, so a stream file in a
/// table is committed exactly when its `last` offset is at or below its
/// partition's highest marker.
#[derive(Debug, Default)]
pub struct StreamCommits {
    through: std::collections::HashMap<(String, i32), i64>,
}

impl StreamCommits {
    /// The commits recorded under the output's `_leadflow/stream/`.
    pub async fn read(location: &Location) -> Result<Self> {
        let root = location.child(&format!("{META_DIR}/stream"));
        let metas: Vec<_> = location.store.list(Some(&root)).try_collect().await?;
        let mut through = std::collections::HashMap::new();
        for meta in metas {
            let Some(parts) = meta.location.prefix_match(&root) else {
                continue;
            };
            let parts: Vec<String> = parts.map(|p| p.as_ref().to_string()).collect();
            let [topic, partition, committed, marker] = parts.as_slice() else {
                continue;
            };
            let range = marker.strip_suffix(".json").and_then(|r| r.split_once('-'));
            let (Ok(partition), Some(Ok(last))) = (
                partition.parse::<i32>(),
                range.map(|(_, last)| last.parse::<i64>()),
            ) else {
                continue;
            };
            if committed != "committed" {
                continue;
            }
            let highest = through.entry((topic.clone(), partition)).or_insert(last);
            *highest = (*highest).max(last);
        }
        Ok(Self { through })
    }

    /// Whether the output has a stream ledger at all.
    pub fn is_empty(&self) -> bool {
        self.through.is_empty()
    }

    /// Whether `file_name` (`part-{topic}-{partition}-{first}-{last}-{seq}.parquet`)
    /// is a file of a committed cut.
    pub fn holds(&self, file_name: &str) -> bool {
        let Some(stem) = file_name
            .strip_prefix("part-")
            .and_then(|n| n.strip_suffix(".parquet"))
        else {
            return false;
        };
        let mut fields = stem.rsplitn(5, '-');
        let (Some(_seq), Some(last), Some(_first), Some(partition), Some(topic)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return false;
        };
        let (Ok(last), Ok(partition)) = (last.parse::<i64>(), partition.parse::<i32>()) else {
            return false;
        };
        self.through
            .get(&(topic.to_string(), partition))
            .is_some_and(|&through| last <= through)
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

    /// A cut committed and published by the ledger itself: its files are
    /// held, a later cut's name is not, and only once a marker exists.
    #[tokio::test]
    async fn commits_hold_the_files_of_published_cuts_only() {
        let dir = tempfile::tempdir().unwrap();
        let location = crate::storage::open(dir.path().to_str().unwrap()).unwrap();
        assert!(StreamCommits::read(&location).await.unwrap().is_empty());
        let ledger = StreamLedger::new(location.clone(), "leads.eu-west");
        let name = |first, last| format!("part-{}-0000.parquet", ledger.file_stem(3, first, last));
        for (first, last) in [(0, 99), (100, 199)] {
            let rel = format!("enriched_leads/dt=2026-11-25/{}", name(first, last));
            let staged = ledger.staging(3).child(&rel);
            location
                .store
                .put(&staged, b"x".to_vec().into())
                .await
                .unwrap();
            let cut = CommittedCut {
                topic: "leads.eu-west".into(),
                partition: 3,
                first,
                last,
                files: vec![rel],
                leads: 1,
                rejects: 0,
                usage_rows: 0,
                committed_at: chrono::Utc::now(),
            };
            ledger.commit(&cut).await.unwrap();
            ledger.publish(&cut).await.unwrap();
        }
        let commits = StreamCommits::read(&location).await.unwrap();
        assert!(!commits.is_empty());
        // The first cut's marker is gone; its file is still committed.
        assert!(commits.holds(&name(0, 99)));
        assert!(commits.holds(&name(100, 199)));
        assert!(!commits.holds(&name(200, 299)));
        assert!(!commits.holds(&format!("part-{}-0000.parquet", ledger.file_stem(4, 0, 99))));
        assert!(!commits.holds("part-0.parquet"));
        assert!(!commits.holds("x.parquet"));
    }
}
