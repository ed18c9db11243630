//! The adaptive order's evidence, pooled by the fleet: every worker adds
//! the calls and hits it learned to one Redis hash and reads the whole pool
//! back, in one `MULTI` round trip ([`RedisEvidence`]), every few seconds.
//! So workers order leads by what all of them have seen. Counts, not money:
//! an exchange whose answer is lost is sent again, and may count twice.

use std::sync::Arc;

use futures::future::BoxFuture;
use leadflow_waterfall::{Evidence, EvidenceStore, Tally};

use crate::conn::Redis;

/// Separates a field's parts: provider names are letters, digits, `_` and
/// `-`, and levels are made of countries (two letters), email kinds and tiers.
const SEP: char = '\t';

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
    fn exchange(&self, deltas: Vec<Tally>) -> BoxFuture<'_, Result<Vec<Tally>, String>> {
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
            let (pool,): (Vec<(String, u64)>,) = self
                .redis
                .pipe(&pipe)
                .await
                .ok_or_else(|| "Redis did not answer".to_string())?;
            Ok(tallies(pool))
        })
    }
}

/// The hash's fields as tallies; fields it cannot read are passed over.
fn tallies(pool: Vec<(String, u64)>) -> Vec<Tally> {
    let mut out: std::collections::HashMap<(String, String), Evidence> = Default::default();
    for (field, n) in pool {
        let mut parts = field.splitn(3, SEP);
        let (Some(provider), Some(level), Some(part)) = (parts.next(), parts.next(), parts.next())
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
