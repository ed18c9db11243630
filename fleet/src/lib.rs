//! What a fleet of leadflow workers shares through Redis: the waterfall's
//! rate limiter, lookup cache, circuit breaker and budget
//! ([`leadflow_waterfall::Services`]), kept exact under concurrency and
//! bounded when Redis goes away.
//!
//! - **Rate limits** ([`limiter`]): a sliding window per provider, checked
//!   and recorded by one Lua script on Redis's own clock. A worker takes
//!   permits in *leases* (up to K per round trip) and hands back what it did
//!   not use; leased permits count against the window the whole time, so
//!   the fleet never passes the limit.
//! - **Lookup cache** ([`cache`]): each provider's answer per lead, read in
//!   pipelined batches, written the moment it is paid for; a question asked
//!   by two workers at once is paid once (a claim with `SET NX PX`).
//! - **Circuit breakers** ([`breaker`]) and **budgets** ([`budget`]) shared
//!   by every worker.
//!
//! When Redis does not answer, each part warns once, goes on in memory, and
//! switches back when Redis answers again ([`conn`]); the rate limiter then
//! allows itself only its share of what was left ([`limiter`] documents the
//! bound). [`keys`] is the key layout, for operators.

pub mod breaker;
pub mod budget;
pub mod cache;
mod config;
mod conn;
pub mod idempotency;
pub mod keys;
pub mod learned;
pub mod limiter;
pub mod purge;
mod status;

use std::sync::Arc;
use std::time::Duration;

use leadflow_waterfall::{Clock, Learned, Services, WaterfallConfig};

pub use config::RedisConfig;
pub use conn::{ConnectError, Redis, redacted};
pub use status::{ProviderStatus, Status};

/// How often a worker pools the adaptive order's evidence with the fleet.
pub const POOL_EVIDENCE_EVERY: Duration = Duration::from_secs(2);

/// This process as one worker of the fleet: its Redis, its id, and the
/// heartbeat that tells the others it is alive.
#[derive(Debug, Clone)]
pub struct Fleet {
    redis: Arc<Redis>,
    config: RedisConfig,
    limiter: Arc<limiter::RedisRateLimiter>,
}

impl Fleet {
    /// Connects to `url` (`redis://`, or `rediss://` for TLS). An unreachable
    /// server is not an error: the fleet starts offline (warning once) and
    /// keeps trying in the background. A malformed URL is, and so is a
    /// Redis that refuses this worker (a wrong password), in its words.
    pub async fn connect(url: &str, config: RedisConfig) -> Result<Self, ConnectError> {
        let fleet = Self::observe(url, config).await?;
        // The first beat before any lookup, so shares are divided right.
        let every = Duration::from_millis(fleet.config.heartbeat_ms);
        if let Some(workers) = fleet.redis.heartbeat(every).await {
            fleet.limiter.saw_fleet(workers);
        }
        fleet.start_heartbeat();
        Ok(fleet)
    }

    /// Connects without joining the fleet (no heartbeat): for reading its
    /// state, as `leadflow status` does.
    pub async fn observe(url: &str, config: RedisConfig) -> Result<Self, ConnectError> {
        let redis = Redis::connect(url, &config).await?;
        let limiter = Arc::new(limiter::RedisRateLimiter::new(redis.clone(), &config));
        Ok(Self {
            redis,
            config,
            limiter,
        })
    }

    /// Leaves the fleet at the end of a run: the others stop counting this
    /// worker at once rather than three heartbeats later.
    pub async fn leave(&self) {
        self.redis.leave().await;
    }

    /// The waterfall's services, shared through Redis.
    pub fn services(&self, waterfall: &WaterfallConfig, clock: Arc<dyn Clock>) -> Services {
        Services {
            clock,
            limiter: self.limiter.clone(),
            cache: self.lookup_cache(waterfall.cache.max_entries),
            breaker: Arc::new(breaker::RedisCircuitBreaker::new(
                self.redis.clone(),
                &waterfall.breaker,
            )),
            budget: {
                let budget = Arc::new(budget::RedisBudget::new(
                    self.redis.clone(),
                    &waterfall.budget,
                    self.limiter.fleet_size(),
                    Duration::from_millis(self.config.lease_ms),
                    self.config.spend_tag.clone(),
                ));
                budget.start_handing_back();
                budget
            },
            learned: {
                let learned = Arc::new(Learned::new(waterfall));
                if waterfall.order.order == leadflow_waterfall::config::Order::Adaptive {
                    learned.share(
                        Arc::new(learned::RedisEvidence::new(self.redis.clone())),
                        POOL_EVIDENCE_EVERY,
                    );
                }
                learned
            },
        }
    }

    /// The fleet's pool of the adaptive order's evidence.
    pub fn evidence_store(&self) -> Arc<dyn leadflow_waterfall::EvidenceStore> {
        Arc::new(learned::RedisEvidence::new(self.redis.clone()))
    }

    /// A lookup cache in this fleet's Redis, keeping up to `max_entries`
    /// answers in memory too.
    pub fn lookup_cache(&self, max_entries: usize) -> Arc<cache::RedisLookupCache> {
        Arc::new(cache::RedisLookupCache::new(
            self.redis.clone(),
            max_entries,
        ))
    }

    /// Settles the day spend of a worker that is gone, tagged `tag` (its
    /// [`RedisConfig::spend_tag`]), to what its calls cost on each UTC day
    /// (`YYYY-MM-DD`, µUSD), as its usage log recorded them, and hands back
    /// what it held reserved. Settling again changes nothing. The µUSD
    /// added to the day spend, or why Redis did not take it.
    pub async fn settle_spend(&self, tag: &str, by_day: &[(String, i64)]) -> Result<i64, String> {
        budget::settle(&self.redis, tag, by_day)
            .await
            .map_err(|failed| format!("{failed:?}"))
    }

    /// The fleet's idempotency keys (`leadflow serve`).
    pub fn idempotency(&self) -> idempotency::IdempotencyKeys {
        idempotency::IdempotencyKeys::new(self.redis.clone())
    }

    /// The Redis this fleet shares.
    pub fn redis(&self) -> &Arc<Redis> {
        &self.redis
    }

    /// What Redis holds for `waterfall`'s providers: permits, breakers,
    /// spend, cache entries, live workers.
    pub async fn status(&self, waterfall: &WaterfallConfig) -> Result<Status, String> {
        status::read(&self.redis, waterfall, &self.config).await
    }

    /// Every `heartbeat_ms`: tells the fleet this worker is alive (and
    /// learns how many are), hands back leases that ran out unused, and,
    /// while Redis is gone, checks whether it is back.
    fn start_heartbeat(&self) {
        let redis = Arc::downgrade(&self.redis);
        let limiter = Arc::downgrade(&self.limiter);
        let every = Duration::from_millis(self.config.heartbeat_ms);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (Some(redis), Some(limiter)) = (redis.upgrade(), limiter.upgrade()) else {
                    return;
                };
                if !redis.online() && !redis.probe().await {
                    continue;
                }
                if let Some(workers) = redis.heartbeat(every).await {
                    limiter.saw_fleet(workers);
                }
                limiter.hand_back_expired().await;
            }
        });
    }
}
