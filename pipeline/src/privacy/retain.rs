//! `leadflow retain` (and `batch` after each publish): the day partitions
//! older than `[retention]` allows dropped, every table at once, as one
//! commit.
//!
//! A table with `N` days keeps the `dt=` partitions of the last `N` days,
//! today (UTC) included: `dt=D` goes once `today − D ≥ N` days. The files
//! of such partitions leave their runs in one `retain` commit and are
//! deleted from the tables before this returns; readers see the output
//! before or after. A partition holding stream files (which no run lists)
//! is compacted first, as `forget` does. Runs, streams and serve keep
//! committing meanwhile; a compaction that read the log before and would
//! bring dropped rows back conflicts and commits nothing.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

use crate::config::RetentionConfig;
use crate::error::{Error, Result};
use crate::publish::erase::{self, Erasure};
use crate::publish::log::{Operation, Rewrite, Snapshot};
use crate::storage::Location;

/// Plans tried before giving up when other writers keep taking the files.
const ATTEMPTS: usize = 20;

/// What a retention pass dropped (or, dry, would drop).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retained {
    /// The commit; `None` when nothing was old enough (or a dry run).
    pub version: Option<u64>,
    /// `table/dt=YYYY-MM-DD` partitions dropped, with their files and bytes.
    pub partitions: BTreeMap<String, (usize, u64)>,
}

impl Retained {
    pub fn files(&self) -> usize {
        self.partitions.values().map(|(files, _)| files).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.partitions.values().map(|(_, bytes)| bytes).sum()
    }
}

/// The day of a `table/dt=YYYY-MM-DD` directory.
fn day_of(dir: &str) -> Option<NaiveDate> {
    let (_, day) = dir.split_once("/dt=")?;
    NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()
}

/// Drops the partitions of `location` past `retention` as of `today`.
pub async fn retain(
    location: &Location,
    retention: &RetentionConfig,
    today: NaiveDate,
    dry_run: bool,
) -> Result<Retained> {
    let tables: Vec<&str> = crate::sql::OUTPUT_TABLES
        .iter()
        .copied()
        .filter(|t| retention.days(t).is_some())
        .collect();
    if tables.is_empty() {
        return Ok(Retained::default());
    }
    super::refuse_non_output(location).await?;
    let expired = |dir: &str, table: &str| {
        let days = i64::from(retention.days(table).unwrap_or(u32::MAX));
        day_of(dir).is_some_and(|d| (today - d).num_days() >= days)
    };
    let erasure = match dry_run {
        true => None,
        false => Some(Erasure::open(location).await?),
    };
    let result = async {
        let mut compacted = BTreeSet::new();
        for _ in 0..ATTEMPTS {
            let snapshot = Snapshot::read(location).await?;
            let old: Vec<_> = erase::live_files(location, &snapshot, &tables)
                .await?
                .into_iter()
                .filter(|f| expired(f.dir(), f.table()))
                .collect();
            let mut retained = Retained::default();
            for file in &old {
                let (files, bytes) = retained
                    .partitions
                    .entry(file.dir().to_string())
                    .or_default();
                *files += 1;
                *bytes += file.size;
            }
            let Some(erasure) = &erasure else {
                return Ok(retained);
            };
            let streamed: BTreeSet<String> = old
                .iter()
                .filter(|f| f.stream)
                .map(|f| f.dir().to_string())
                .collect();
            if !streamed.is_empty() {
                super::compact_streamed(location, streamed, &mut compacted).await?;
                continue;
            }
            if old.is_empty() {
                return Ok(retained);
            }
            let rewrites = old
                .iter()
                .map(|f| Rewrite {
                    from: f.rel.clone(),
                    to: None,
                })
                .collect();
            if let Some(version) = erasure
                .commit(Operation::Retain, &snapshot, rewrites, None)
                .await?
            {
                retained.version = Some(version);
                return Ok(retained);
            }
        }
        Err(Error::Conflict(format!(
            "{}: other writers kept changing the old partitions ({ATTEMPTS} tries); nothing \
             was dropped. Run it again.",
            location.url_of("").trim_end_matches('/')
        )))
    }
    .await;
    if let Some(erasure) = erasure {
        erasure.close().await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_goes_once_it_is_as_old_as_its_days() {
        assert_eq!(
            day_of("rejects/dt=2026-12-01"),
            NaiveDate::from_ymd_opt(2026, 12, 1)
        );
        assert_eq!(day_of("rejects/part-0.parquet"), None);
        assert_eq!(day_of("rejects/dt=yesterday"), None);
    }
}
