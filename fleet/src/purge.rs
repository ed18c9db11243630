//! What the fleet holds about one person, removed (`leadflow forget`): the
//! lookup cache's answers and claims about their leads and numbers, and
//! the idempotency records of `leadflow serve` whose stored answers name
//! them. A later lookup of the same person then asks (and pays) again.

use std::collections::HashSet;

use leadflow_waterfall::CacheKey;
use redis::Value;

use crate::Fleet;
use crate::conn::Failed;
use crate::keys::cache_key_of;

/// Whom to purge.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    /// Their leads' and numbers' cache keys.
    pub keys: HashSet<CacheKey>,
    /// Texts that, found in a stored answer, make it theirs: lead ids (as
    /// JSON strings), numbers in E.164, emails.
    pub needles: Vec<String>,
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Cached answers and claims.
    pub cache_keys: u64,
    /// Idempotency records.
    pub idempotency_keys: u64,
}

/// Keys one SCAN step asks for.
const SCAN_COUNT: usize = 1000;

impl Fleet {
    /// Removes `subject`'s entries (one pass over the cache's and the
    /// idempotency records' keys). Fails when Redis does not answer: an
    /// erasure must not be reported done while Redis still holds them.
    pub async fn purge(&self, subject: &Subject) -> Result<Purged, String> {
        let keys = self.redis.keys().clone();
        let mut purged = Purged::default();
        for pattern in [keys.answer_pattern(), keys.asking_pattern()] {
            let found = self
                .scan(&pattern, |key| {
                    cache_key_of(key).is_some_and(|k| subject.keys.contains(&k))
                })
                .await?;
            purged.cache_keys += self.delete(&found).await?;
        }
        if !subject.needles.is_empty() {
            let mut theirs = Vec::new();
            for key in self.scan(&keys.idempotency_pattern(), |_| true).await? {
                let value: Value = self
                    .redis
                    .try_query(redis::cmd("GET").arg(&key))
                    .await
                    .map_err(|e| unanswered(&format!("GET {key}"), e))?;
                let Value::BulkString(bytes) = value else {
                    continue;
                };
                let text = String::from_utf8_lossy(&bytes);
                if subject.needles.iter().any(|n| text.contains(n.as_str())) {
                    theirs.push(key);
                }
            }
            purged.idempotency_keys += self.delete(&theirs).await?;
        }
        Ok(purged)
    }

    /// The keys matching `pattern` that `keep` chooses.
    async fn scan(
        &self,
        pattern: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, String> {
        let mut cursor: u64 = 0;
        let mut found = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .redis
                .try_query(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT),
                )
                .await
                .map_err(|e| unanswered(&format!("SCAN {pattern}"), e))?;
            found.extend(batch.into_iter().filter(|k| keep(k)));
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// Deletes `keys`: how many there were.
    async fn delete(&self, keys: &[String]) -> Result<u64, String> {
        let mut deleted = 0;
        for chunk in keys.chunks(500) {
            // One key per DEL: keys of different hash tags may live on
            // different nodes of a cluster.
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("DEL").arg(key);
            }
            let counts: Vec<u64> = self
                .redis
                .try_pipe(&pipe)
                .await
                .map_err(|e| unanswered("DEL", e))?;
            deleted += counts.iter().sum::<u64>();
        }
        Ok(deleted)
    }
}

/// Why a purge stopped, in words.
fn unanswered(command: &str, e: Failed) -> String {
    match e {
        Failed::NotApplied => format!("Redis is offline or refused {command}"),
        Failed::Unknown => format!("Redis did not answer {command} in time"),
        Failed::Refused(said) => format!("Redis refused {command}: {said}"),
    }
}
