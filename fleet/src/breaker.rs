//! Circuit breakers shared by the fleet: a provider failing `failures` times
//! within `window_secs` (counted over every worker) is skipped by every
//! worker for `cooldown_secs`; then one probe, from one worker, decides.
//!
//! State is in Redis (`P:{breaker:NAME}:state` and `:failures`), changed by
//! two Lua scripts on Redis's clock. A closed circuit is not asked about on
//! every call: a worker rereads it at most every [`RECHECK`], and a success
//! on a closed circuit costs nothing; failures are always sent. So a
//! circuit opened by another worker is seen within `RECHECK`. While Redis
//! is gone each worker keeps its own breaker in memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use leadflow_waterfall::config::BreakerConfig;
use leadflow_waterfall::{CircuitBreaker, InMemoryCircuitBreaker, Micros};

use crate::conn::Redis;
use redis::Script;

/// How long a closed circuit is taken as closed without asking Redis again.
pub const RECHECK: Duration = Duration::from_millis(250);

static ALLOWS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/breaker_allows.lua")));
static RECORD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/breaker_record.lua")));

/// A [`CircuitBreaker`] whose circuits are shared through Redis.
#[derive(Debug)]
pub struct RedisCircuitBreaker {
    redis: Arc<Redis>,
    failures: u32,
    window: Micros,
    cooldown: Micros,
    /// Used while Redis is gone (and told every failure meanwhile).
    local: InMemoryCircuitBreaker,
    seen: Mutex<HashMap<String, Seen>>,
    failure_ids: AtomicU64,
}

/// A circuit as this worker last saw it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Closed, and when that was read.
    closed_at: Option<Instant>,
    /// This worker holds the fleet's one probe.
    probing: bool,
}

impl RedisCircuitBreaker {
    pub(crate) fn new(redis: Arc<Redis>, config: &BreakerConfig) -> Self {
        Self {
            redis,
            failures: config.failures.max(1),
            window: config.window_secs as i64 * 1_000_000,
            cooldown: config.cooldown_secs as i64 * 1_000_000,
            local: InMemoryCircuitBreaker::new(config),
            seen: Mutex::new(HashMap::new()),
            failure_ids: AtomicU64::new(0),
        }
    }

    fn seen(&self, provider: &str) -> Option<Seen> {
        self.seen
            .lock()
            .expect("breaker lock")
            .get(provider)
            .copied()
    }

    fn see(&self, provider: &str, seen: Seen) {
        self.seen
            .lock()
            .expect("breaker lock")
            .insert(provider.to_string(), seen);
    }
}

impl CircuitBreaker for RedisCircuitBreaker {
    fn allows<'a>(&'a self, provider: &'a str, now: Micros) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if let Some(Seen {
                closed_at: Some(at),
                ..
            }) = self.seen(provider)
                && at.elapsed() < RECHECK
            {
                return true;
            }
            let keys = self.redis.keys().breaker(provider);
            // A probe may take one failure window before it counts as lost.
            let args = [
                self.redis.clock_shift().to_string(),
                self.window.max(1).to_string(),
            ];
            let Some((code, _open_until, _now)): Option<(i64, i64, i64)> =
                self.redis.script(&ALLOWS, &keys[..1], &args).await
            else {
                return self.local.allows(provider, now).await;
            };
            self.see(
                provider,
                Seen {
                    closed_at: (code == 1).then(Instant::now),
                    probing: code == 2,
                },
            );
            code != 0
        })
    }

    fn record<'a>(&'a self, provider: &'a str, success: bool, now: Micros) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let seen = self.seen(provider);
            let probing = seen.is_some_and(|s| s.probing);
            // A success on a circuit seen closed changes nothing.
            if success && !probing {
                return;
            }
            if !success {
                self.local.record(provider, false, now).await;
            }
            let keys = self.redis.keys().breaker(provider);
            let id = self.failure_ids.fetch_add(1, Ordering::Relaxed);
            let args = [
                self.redis.clock_shift().to_string(),
                u8::from(success).to_string(),
                u8::from(probing).to_string(),
                self.failures.to_string(),
                self.window.to_string(),
                self.cooldown.to_string(),
                format!("{}:{id}", self.redis.worker()),
            ];
            let Some((open_until, opened)): Option<(i64, i64)> =
                self.redis.script(&RECORD, &keys, &args).await
            else {
                return;
            };
            if opened == 1 && !probing {
                tracing::warn!(
                    provider,
                    cooldown_secs = self.cooldown / 1_000_000,
                    "circuit opened for every worker: provider keeps failing"
                );
            }
            // After a failure the next call looks again (another worker's
            // failure may be the one that opens it).
            self.see(
                provider,
                Seen {
                    closed_at: (success && open_until == 0).then(Instant::now),
                    probing: false,
                },
            );
        })
    }
}
