//! The key layout, so an operator reads a provider's usage with one
//! `redis-cli` command. `P` is `[redis] key_prefix` (`leadflow`); braces mark
//! the Redis Cluster hash tag: every key one script touches shares it.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{limit:NAME}:used` | string | permits taken in NAME's current window, leases included |
//! | `P:{limit:NAME}:leases` | zset | lease id → µs (Redis time) its permits count until the window forgets them, less the window |
//! | `P:{limit:NAME}:permits` | hash | lease id → permits it holds |
//! | `P:{breaker:NAME}:state` | hash | `open_until`, `probe_until` (µs, Redis time) |
//! | `P:{breaker:NAME}:failures` | zset | failure id → µs it happened |
//! | `P:{budget}:day:YYYY-MM-DD` | hash | `spent`, `reserved`, `org:ID:spent`, `org:ID:reserved` (µUSD) |
//! | `P:answer:{LEAD}:NAME` | string | `f +E164` (found) or `n` (none), with the cache TTL |
//! | `P:asking:{LEAD}:NAME` | string | the worker asking NAME about LEAD now, for a few seconds |
//! | `P:{learned}:evidence` | hash | `NAME\tLEVEL\tcalls` and `…\thits`: the adaptive order's evidence, pooled by every worker |
//! | `P:{learned}:seeded` | string | the worker that added `[waterfall] history` to the pool (with a TTL until it is done) |
//! | `P:workers` | zset | worker id → µs of its last heartbeat |
//! | `P:idem:{SCOPE}:KEY` | string | `leadflow serve`'s idempotency key: `r FP` while its request runs, then `d FP STATUS` and the answer |
//!
//! `redis-cli GET 'leadflow:{limit:orion}:used'` is orion's usage now;
//! `redis-cli HGETALL 'leadflow:{budget}:day:2026-11-27'` today's spend.

use leadflow_waterfall::CacheKey;

/// Builds keys under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    /// An idempotency key of `scope` (an API key's name): see
    /// [`crate::idempotency`].
    pub fn idempotency(&self, scope: &str, key: &str) -> String {
        format!("{}:idem:{{{scope}}}:{key}", self.prefix)
    }

    /// A provider's window: `[used, leases, permits]`.
    pub fn limit(&self, provider: &str) -> [String; 3] {
        let tag = format!("{}:{{limit:{provider}}}", self.prefix);
        [
            format!("{tag}:used"),
            format!("{tag}:leases"),
            format!("{tag}:permits"),
        ]
    }

    /// A provider's breaker: `[state, failures]`.
    pub fn breaker(&self, provider: &str) -> [String; 2] {
        let tag = format!("{}:{{breaker:{provider}}}", self.prefix);
        [format!("{tag}:state"), format!("{tag}:failures")]
    }

    /// Spend on the UTC day `date` (`YYYY-MM-DD`).
    pub fn budget_day(&self, date: &str) -> String {
        format!("{}:{{budget}}:day:{date}", self.prefix)
    }

    /// What `provider` answered about the lead `key`.
    pub fn answer(&self, key: CacheKey, provider: &str) -> String {
        format!("{}:answer:{{{:032x}}}:{provider}", self.prefix, key.0)
    }

    /// Who is asking `provider` about the lead `key` right now.
    pub fn asking(&self, key: CacheKey, provider: &str) -> String {
        format!("{}:asking:{{{:032x}}}:{provider}", self.prefix, key.0)
    }

    /// The adaptive order's evidence, pooled by the fleet.
    pub fn learned(&self) -> String {
        format!("{}:{{learned}}:evidence", self.prefix)
    }

    /// Who seeded the pool from `[waterfall] history` (expires unless the
    /// seeding worker finished).
    pub fn learned_seeded(&self) -> String {
        format!("{}:{{learned}}:seeded", self.prefix)
    }

    /// Live workers and their last heartbeat.
    pub fn workers(&self) -> String {
        format!("{}:workers", self.prefix)
    }

    /// A pattern matching every cached answer, for counting them.
    pub fn answer_pattern(&self) -> String {
        format!("{}:answer:*", self.prefix)
    }

    /// A pattern matching every claim on a lookup.
    pub fn asking_pattern(&self) -> String {
        format!("{}:asking:*", self.prefix)
    }

    /// A pattern matching every idempotency key.
    pub fn idempotency_pattern(&self) -> String {
        format!("{}:idem:*", self.prefix)
    }
}

/// The lead (or number) an `answer` or `asking` key is about: the hash
/// between its braces.
pub fn cache_key_of(key: &str) -> Option<CacheKey> {
    let (_, rest) = key.split_once('{')?;
    let (hex, _) = rest.split_once('}')?;
    (hex.len() == 32)
        .then(|| u128::from_str_radix(hex, 16).ok())
        .flatten()
        .map(CacheKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_one_script_touches_share_a_hash_tag() {
        let k = Keys::new("lf");
        assert_eq!(
            k.limit("orion"),
            [
                "lf:{limit:orion}:used",
                "lf:{limit:orion}:leases",
                "lf:{limit:orion}:permits"
            ]
        );
        assert_eq!(k.breaker("astra")[1], "lf:{breaker:astra}:failures");
        let lead = CacheKey(0xab);
        assert_eq!(
            k.answer(lead, "orion"),
            "lf:answer:{000000000000000000000000000000ab}:orion"
        );
        assert!(
            k.asking(lead, "orion")
                .contains("{000000000000000000000000000000ab}")
        );
    }
}
