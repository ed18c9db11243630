//! `[redis]`: where the fleet's shared state lives and how it is used.

use serde::{Deserialize, Serialize};

/// `[redis]` in the config file. With a `url` here or `REDIS_URL` in the
/// environment, limits, cache, breakers and budget are shared through
/// Redis; with neither, each process keeps its own in memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`; `REDIS_URL` when absent.
    pub url: Option<String>,
    /// Every key leadflow writes starts with this, so several fleets (or
    /// tests) share one Redis apart.
    pub key_prefix: String,
    /// How long a worker may hold leased rate-limit permits before it hands
    /// back what it did not use, in ms.
    pub lease_ms: u64,
    /// Most permits one lease takes.
    pub max_lease: u32,
    /// How often a worker tells the fleet it is alive, in ms; a worker not
    /// heard from for three beats no longer counts.
    pub heartbeat_ms: u64,
    /// A Redis command not answered within this (ms) counts as Redis gone.
    pub timeout_ms: u64,
    /// Set by the run, not the file: the name this worker's spend and
    /// reservations are also kept under in the day's budget, so that once
    /// the worker is gone what it spent can be settled from its usage log
    /// ([`crate::Fleet::settle_spend`]).
    #[serde(skip)]
    pub spend_tag: Option<String>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "leadflow".into(),
            lease_ms: 1_000,
            max_lease: 4_096,
            heartbeat_ms: 1_000,
            timeout_ms: 1_000,
            spend_tag: None,
        }
    }
}

impl RedisConfig {
    /// Checks the ranges the types cannot.
    pub fn check(&self) -> Result<(), String> {
        let within = |key: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("redis.{key} must be from {lo} to {hi}, not {v}"))
            }
        };
        within("lease_ms", self.lease_ms, 1, 60_000)?;
        within("max_lease", u64::from(self.max_lease), 1, 1_000_000)?;
        within("heartbeat_ms", self.heartbeat_ms, 10, 60_000)?;
        within("timeout_ms", self.timeout_ms, 1, 60_000)?;
        if self.key_prefix.is_empty() || self.key_prefix.contains(['{', '}', ' ']) {
            return Err(format!(
                "redis.key_prefix must be non-empty, without braces or spaces: `{}`",
                self.key_prefix
            ));
        }
        Ok(())
    }
}
