//! The adaptive order's evidence, pooled by the fleet: every worker adds
//! the calls and hits it learned to one Redis hash and reads the whole pool
//! back, in one `MULTI` round trip ([`RedisEvidence`]), every few seconds.
//! So workers order leads by what all of them have seen.
//!
//! The pool is the fleet's memory: `[waterfall] history` is added to it
//! once, by the first worker to claim `P:{learned}:seeded`, so evidence is
//! never counted twice by workers that each read the same history.
//! Counts, not money: an exchange whose answer is lost is sent again, and
//! may count twice; one Redis refuses (a foreign value under the key) is
//! dropped.

use std::sync::Arc;

use futures::future::BoxFuture;
use leadflow_waterfall::{Evidence, EvidenceStore, ExchangeFailed, Tally};

use crate::conn::{Failed, Redis};

/// Separates a field's parts: provider names are letters, digits, `_` and
/// `-`, and levels are made of countries (two letters), email kinds and tiers.
const SEP: char = '\t';

/// How long a worker seeding the pool from history holds the claim before
/// it is taken as dead (it makes the claim lasting once seeded).
const SEEDING_SECS: u64 = 600;

/// The fleet's pool of evidence, in `P:{learned}:evidence`.
#[derive(Debug)]
pub struct RedisEvidence {
    redis: Arc<Redis>,
}

impl RedisEvidence {
    pub(crate) fn new(redis: Arc<Redis>) -> Self {
        Self { redis }
    }
}

impl EvidenceStore for RedisEvidence {
    fn exchange(&self, deltas: Vec<Tally>) -> BoxFuture<'_, Result<Vec<Tally>, ExchangeFailed>> {
        Box::pin(async move {
            let key = self.redis.keys().learned();
            let mut pipe = redis::pipe();
            pipe.atomic();
            for t in &deltas {
                let field = |part: &str| format!("{}{SEP}{}{SEP}{part}", t.provider, t.level);
                pipe.hincr(&key, field("calls"), t.evidence.calls).ignore();
                pipe.hincr(&key, field("hits"), t.evidence.hits).ignore();
            }
            pipe.hgetall(&key);
            // Read as text: a value that is not a count is passed over,
            // never an error that would take this worker's Redis offline.
            match self.redis.try_pipe::<(Vec<(String, String)>,)>(&pipe).await {
                Ok((pool,)) => Ok(tallies(pool)),
                Err(Failed::Refused(why)) => Err(ExchangeFailed {
                    reason: format!("Redis refused the pool {key}: {why}"),
                    may_retry: false,
                }),
                Err(_) => Err(ExchangeFailed {
                    reason: "Redis did not answer".into(),
                    may_retry: true,
                }),
            }
        })
    }

    fn claim_seeding(&self) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.redis.keys().learned_seeded())
                .arg(self.redis.worker())
                .arg("NX")
                .arg("EX")
                .arg(SEEDING_SECS);
            match self.redis.try_query::<Option<String>>(&cmd).await {
                Ok(set) => Ok(set.is_some()),
                Err(Failed::Refused(why)) => Err(why),
                Err(_) => Err("Redis did not answer".into()),
            }
        })
    }

    fn seeded(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut cmd = redis::cmd("PERSIST");
            cmd.arg(self.redis.keys().learned_seeded());
            if let Err(Failed::Refused(why)) = self.redis.try_query::<i64>(&cmd).await {
                tracing::warn!(error = %why, "could not mark the adaptive order's pool as seeded");
            }
        })
    }
}

/// The hash's fields as tallies; fields it cannot read are passed over.
fn tallies(pool: Vec<(String, String)>) -> Vec<Tally> {
    let mut out: std::collections::HashMap<(String, String), Evidence> = Default::default();
    for (field, n) in pool {
        let mut parts = field.splitn(3, SEP);
        let (Some(provider), Some(level), Some(part), Ok(n)) =
            (parts.next(), parts.next(), parts.next(), n.parse::<u64>())
        else {
            continue;
        };
        let e = out
            .entry((provider.to_string(), level.to_string()))
            .or_default();
        match part {
            "calls" => e.calls = n,
            "hits" => e.hits = n,
            _ => {}
        }
    }
    out.into_iter()
        .map(|((provider, level), evidence)| Tally {
            provider,
            level,
            evidence,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_that_are_not_counts_are_passed_over() {
        let pool = vec![
            ("orion\t*\tcalls".to_string(), "10".to_string()),
            ("orion\t*\thits".to_string(), "4".to_string()),
            ("orion\t*\thits-ish".to_string(), "4".to_string()),
            ("astra\t*\tcalls".to_string(), "-3".to_string()),
            ("astra\t*\thits".to_string(), "many".to_string()),
            ("no separators".to_string(), "1".to_string()),
        ];
        let t = tallies(pool);
        assert_eq!(t.len(), 1, "astra's junk is passed over: {t:?}");
        assert_eq!(t[0].provider, "orion");
        assert_eq!(t[0].evidence, Evidence { calls: 10, hits: 4 });
    }
}
