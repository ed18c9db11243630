//! Rate limits shared by the fleet, exact under concurrency.
//!
//! Each provider's window lives in Redis (see [`crate::keys`]) and is only
//! changed by one Lua script (`lua/lease.lua`) that reads Redis `TIME`:
//! workers' clocks never decide what is in the window. A worker asks for up
//! to K permits in one round trip (a *lease*), spends them locally, and
//! hands back the ones it did not use when the lease time is up (or at the
//! end of the run). The whole lease counts against the window from the
//! moment it is granted, so the fleet never passes the limit; used permits
//! count from the moment they are handed back (every use was before), or,
//! if never handed back, from the end of the lease time.
//!
//! K starts at 1, doubles each time a lease is used up before its time, and
//! halves when one comes back unused; the script also caps it at this
//! worker's share of what is left (left ÷ live workers), so a nearly full
//! window is spread across the fleet rather than stranded in one lease.
//!
//! **A worker that dies holding a lease** wastes at most that lease's unused
//! permits (≤ `max_lease`) for one window: nobody can tell whether it used
//! them, so they are counted as used — the safe side of the limit.
//!
//! **When Redis is gone**, a worker spends what is left of its current lease,
//! then allows itself its share of what the window had left when it last
//! heard from Redis (that left ÷ the workers alive then), and no more until
//! Redis is back; then it records what it spent there. So the fleet's
//! overshoot during an outage is bounded by how stale those last views
//! were: at most what the fleet was granted between each worker's last
//! contact and the outage (with leases, about one lease per worker), never
//! the limit times the number of workers. A worker that never reached Redis
//! allows itself nothing (it cannot know its share).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use leadflow_waterfall::{Micros, RateLimiter};

use crate::config::RedisConfig;
use crate::conn::{Failed, Redis};
use redis::Script;

static LEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/lease.lua")));

/// A [`RateLimiter`] whose windows are shared through Redis, taken in leases.
#[derive(Debug)]
pub struct RedisRateLimiter {
    redis: Arc<Redis>,
    lease: Duration,
    max_lease: u32,
    /// Live workers, as the last heartbeat counted them (≥ 1).
    workers: Arc<AtomicU32>,
    providers: Mutex<HashMap<String, Arc<Window>>>,
    next_id: AtomicU64,
}

/// One provider's window as this worker sees it.
#[derive(Debug)]
struct Window {
    /// The permits of the lease out now: taken without awaiting anything.
    spare: Mutex<Spare>,
    /// The rest, held by the one task that talks to Redis for this provider.
    held: tokio::sync::Mutex<Held>,
}

#[derive(Debug, Clone, Copy)]
struct Spare {
    /// Permits of the current lease not yet used.
    unused: u32,
    /// When the lease must be handed back (local clock; it was asked for
    /// before Redis started counting its time, so this is never late).
    until: Instant,
}

impl Window {
    /// Takes one permit of the current lease, if it has one.
    fn take(&self, now: Instant) -> bool {
        let mut spare = self.spare.lock().expect("lease lock");
        let ok = spare.unused > 0 && now < spare.until;
        if ok {
            spare.unused -= 1;
        }
        ok
    }
}

#[derive(Debug)]
struct Held {
    /// The lease out now, if any.
    id: Option<String>,
    /// How many permits the next lease asks for.
    want: u32,
    /// The limit and window the last lease was taken under.
    limit: u32,
    window: Micros,
    /// What the window had left when Redis last answered.
    left_seen: Option<i64>,
    /// While Redis is gone: what this worker still allows itself.
    offline_allowance: Option<u32>,
    /// Permits spent while Redis was gone, not yet known to be recorded
    /// there, and the id they are booked under: sent again under the same
    /// id until Redis answers, so a stalled Redis that applies an earlier
    /// try late counts them once.
    offline_spent: u32,
    offline_id: Option<String>,
}

impl RedisRateLimiter {
    pub(crate) fn new(redis: Arc<Redis>, config: &RedisConfig) -> Self {
        Self {
            redis,
            lease: Duration::from_millis(config.lease_ms),
            max_lease: config.max_lease,
            workers: Arc::new(AtomicU32::new(1)),
            providers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }

    /// The fleet size as last counted, shared with whoever divides by it.
    pub(crate) fn fleet_size(&self) -> Arc<AtomicU32> {
        self.workers.clone()
    }

    pub(crate) fn saw_fleet(&self, workers: u32) {
        self.workers.store(workers.max(1), Ordering::Release);
    }

    fn window(&self, provider: &str) -> Arc<Window> {
        let mut providers = self.providers.lock().expect("limiter lock");
        if let Some(w) = providers.get(provider) {
            return w.clone();
        }
        let window = Arc::new(Window {
            spare: Mutex::new(Spare {
                unused: 0,
                until: self.local_now(),
            }),
            held: tokio::sync::Mutex::new(Held {
                id: None,
                want: 1,
                limit: 0,
                window: 0,
                left_seen: None,
                offline_allowance: None,
                offline_spent: 0,
                offline_id: None,
            }),
        });
        providers.insert(provider.to_string(), window.clone());
        window
    }

    fn windows(&self) -> Vec<(String, Arc<Window>)> {
        let providers = self.providers.lock().expect("limiter lock");
        providers
            .iter()
            .map(|(p, w)| (p.clone(), w.clone()))
            .collect()
    }

    /// The local clock leases are timed on (moved with Redis's in tests).
    fn local_now(&self) -> Instant {
        Instant::now() + Duration::from_micros(self.redis.clock_shift().max(0) as u64)
    }

    fn new_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}:{n}", self.redis.worker())
    }

    /// One round trip: hands back the lease held with its unused permits,
    /// records permits spent offline, and asks for `want` more, of which
    /// it keeps `keep` for the caller. Returns what was granted; `None`
    /// when Redis did not answer: the lease is then kept as it was if Redis
    /// surely did not apply the exchange, and given up (its permits count
    /// as used until it ends) if it may still apply it.
    async fn exchange(
        &self,
        provider: &str,
        w: &Window,
        h: &mut Held,
        want: u32,
        keep: u32,
    ) -> Result<u32, Failed> {
        let keys = self.redis.keys().limit(provider);
        let before = *w.spare.lock().expect("lease lock");
        // Nobody else may spend them while they are being handed back.
        w.spare.lock().expect("lease lock").unused = 0;
        let id = self.new_id();
        if h.offline_spent > 0 && h.offline_id.is_none() {
            h.offline_id = Some(format!("{id}:offline"));
        }
        let args = [
            h.limit.to_string(),
            h.window.to_string(),
            (self.lease.as_micros() as i64).to_string(),
            want.to_string(),
            self.redis.clock_shift().to_string(),
            h.id.clone().unwrap_or_default(),
            before.unused.to_string(),
            id.clone(),
            h.offline_spent.to_string(),
            self.workers.load(Ordering::Acquire).to_string(),
            h.offline_id.clone().unwrap_or_default(),
        ];
        let asked_at = self.local_now();
        let (granted, left, _now): (u32, i64, i64) = match self
            .redis
            .try_script(&LEASE, &keys, &args)
            .await
        {
            Ok(answer) => answer,
            Err(Failed::NotApplied) => {
                *w.spare.lock().expect("lease lock") = before;
                return Err(Failed::NotApplied);
            }
            // Handed back, maybe: spending them again could pass the limit.
            Err(Failed::Unknown) => return Err(Failed::Unknown),
            // A foreign value under one of this window's keys: this
            // provider's limit cannot be kept; the others go on.
            Err(Failed::Refused(said)) => {
                *w.spare.lock().expect("lease lock") = before;
                let what = format!("refused:{}", keys[0]);
                if !self.redis.told(&what) {
                    let foreign = self.redis.foreign(&keys, &["string", "zset", "hash"]).await;
                    self.redis.tell(&what, || {
                            format!("the rate limit of {provider} cannot be kept, its calls are rate_limited: Redis says {said} ({foreign})")
                        });
                }
                return Err(Failed::Refused(said));
            }
        };
        self.redis.over(
            &format!("refused:{}", keys[0]),
            &format!("the rate limit of {provider} is kept again"),
        );
        h.id = (granted > 0).then_some(id);
        h.left_seen = Some(left);
        h.offline_allowance = None;
        h.offline_spent = 0;
        h.offline_id = None;
        *w.spare.lock().expect("lease lock") = Spare {
            unused: granted.saturating_sub(keep),
            until: asked_at + self.lease,
        };
        Ok(granted)
    }

    /// Hands back leases whose time is up and that still hold permits,
    /// and records permits spent while Redis was gone (it answers again).
    pub(crate) async fn hand_back_expired(&self) {
        let now = self.local_now();
        for (provider, w) in self.windows() {
            let Ok(mut h) = w.held.try_lock() else {
                continue;
            };
            let spare = *w.spare.lock().expect("lease lock");
            if (h.id.is_some() && now >= spare.until && spare.unused > 0) || h.offline_spent > 0 {
                let _ = self.exchange(&provider, &w, &mut h, 0, 0).await;
            }
        }
    }
}

/// How many permits a round trip asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leases {
    /// Doubling while leases run out early, halving when one comes back unused.
    Grow,
    /// One: nothing is held back from other processes.
    One,
}

impl RedisRateLimiter {
    /// Takes one permit from `provider`'s window.
    async fn acquire(&self, provider: &str, limit: u32, window: Micros, leases: Leases) -> bool {
        let w = self.window(provider);
        if w.take(self.local_now()) {
            return true;
        }
        let mut h = w.held.lock().await;
        // Another task may have taken a new lease meanwhile.
        if w.take(self.local_now()) {
            return true;
        }
        h.limit = limit;
        h.window = window;
        if self.redis.online() {
            if leases == Leases::One {
                h.want = 1;
            } else if h.id.is_some() {
                // Grow the lease while they run out early; shrink when one
                // comes back unused.
                let unused = w.spare.lock().expect("lease lock").unused;
                h.want = if unused == 0 {
                    h.want.saturating_mul(2)
                } else {
                    h.want / 2
                }
                .clamp(1, self.max_lease);
            }
            let want = h.want;
            match self.exchange(provider, &w, &mut h, want, 1).await {
                Ok(granted) => return granted > 0,
                Err(Failed::Refused(_)) => return false,
                Err(_) => {}
            }
            // Redis just went away.
        }
        // Offline: the worker's share of what was left when last seen.
        let workers = self.workers.load(Ordering::Acquire).max(1);
        let left_seen = h.left_seen.unwrap_or(0).max(0);
        let allowance = h
            .offline_allowance
            .get_or_insert_with(|| (left_seen / i64::from(workers)) as u32);
        if *allowance == 0 {
            return false;
        }
        *allowance -= 1;
        h.offline_spent += 1;
        true
    }
}

impl RateLimiter for RedisRateLimiter {
    fn try_acquire<'a>(
        &'a self,
        provider: &'a str,
        limit: u32,
        window: Micros,
        _now: Micros,
    ) -> BoxFuture<'a, bool> {
        Box::pin(self.acquire(provider, limit, window, Leases::Grow))
    }

    fn try_acquire_exact<'a>(
        &'a self,
        name: &'a str,
        limit: u32,
        window: Micros,
        _now: Micros,
    ) -> BoxFuture<'a, bool> {
        Box::pin(self.acquire(name, limit, window, Leases::One))
    }

    /// Hands back what is held and records what was spent while Redis was
    /// gone. A Redis that does not record it is tried again for a moment
    /// ([`Redis::leaving_try`]); then what it never recorded is lost to
    /// the fleet's count, and said so.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut first = true;
            let mut unrecorded = Vec::new();
            while self.redis.leaving_try(first).await {
                first = false;
                unrecorded.clear();
                for (provider, w) in self.windows() {
                    let mut h = w.held.lock().await;
                    let unused = w.spare.lock().expect("lease lock").unused;
                    if !((h.id.is_some() && unused > 0) || h.offline_spent > 0) {
                        continue;
                    }
                    let recorded = self.exchange(&provider, &w, &mut h, 0, 0).await.is_ok();
                    if !recorded && h.offline_spent > 0 {
                        unrecorded.push(format!("{provider}: {}", h.offline_spent));
                    }
                }
                if unrecorded.is_empty() {
                    return;
                }
            }
            tracing::warn!(
                permits = unrecorded.join(", "),
                "leaving without recording in Redis the permits spent while it did not record them: the fleet's windows do not count them"
            );
        })
    }
}

static WINDOW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/window.lua")));

/// The permits in `provider`'s window now (leases included), read without
/// changing anything. `None` when Redis does not answer.
pub(crate) async fn window_used(redis: &Redis, provider: &str, window: Micros) -> Option<i64> {
    let args = [window.to_string(), redis.clock_shift().to_string()];
    redis
        .script(&WINDOW, &redis.keys().limit(provider), &args)
        .await
}
