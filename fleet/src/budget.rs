//! Budgets shared by the fleet: the per-day and per-organization-per-day
//! caps in integer µUSD, in one Redis hash per UTC day
//! (`P:{budget}:day:YYYY-MM-DD`), changed only by one Lua script, so workers
//! together stop at the cap to the µUSD. The per-run cap stays with the run
//! (one process).
//!
//! With only a day cap, a worker reserves the day's money in *chunks*, as
//! the rate limiter leases permits: one round trip reserves a chunk in
//! Redis, calls reserve from it and settle into it locally, and what was
//! spent is booked (and the rest of the chunk handed back) on the next
//! round trip, every `lease_ms`, and at the end of the run. A chunk counts
//! as reserved in Redis the whole time, so the fleet cannot pass the cap;
//! it starts at 16 of the call being paid for, doubles while chunks run out
//! within a lease time, and is never more than this worker's share of what
//! is left (÷ 2 × live workers). With a per-organization cap each call
//! reserves and settles in Redis itself (one chunk per organization would
//! hold money back from every other).
//!
//! The day is the waterfall clock's UTC date: workers whose clocks differ
//! by seconds may book a call at midnight to either day. A worker that dies
//! between reserving and settling leaves its reservation (at most its
//! concurrency × the dearest call) counted for that day: never an
//! overspend. While Redis is gone a worker spends at most its share (÷ live
//! workers) of what was left when it last heard, and books it when Redis is back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use chrono::DateTime;
use futures::future::BoxFuture;
use leadflow_waterfall::config::{BudgetConfig, usd_to_micros};
use leadflow_waterfall::{Budget, InMemoryBudget, Micros, Org, Reservation};

use crate::conn::{Failed, Redis};
use redis::Script;

static BUDGET: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/budget.lua")));
static SETTLE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/settle.lua")));

/// Settles the spend of a worker that is gone (tagged `tag`): for each UTC
/// day (`YYYY-MM-DD`), its spend in the day's hash becomes `cost` µUSD and
/// what it held reserved goes back. Idempotent. Returns the µUSD added.
pub(crate) async fn settle(
    redis: &Redis,
    tag: &str,
    by_day: &[(String, i64)],
) -> Result<i64, Failed> {
    let mut added = 0;
    for (date, cost) in by_day {
        let key = [redis.keys().budget_day(date)];
        let args = [tag.to_string(), cost.to_string()];
        added += redis.try_script::<i64>(&SETTLE, &key, &args).await?;
    }
    Ok(added)
}

/// A [`Budget`] whose day caps are shared through Redis.
#[derive(Debug)]
pub struct RedisBudget {
    redis: Arc<Redis>,
    /// The run's own cap (and nothing else).
    run: InMemoryBudget,
    per_day: Option<i64>,
    per_org_day: Option<i64>,
    workers: Arc<AtomicU32>,
    offline: Mutex<Offline>,
    /// The day's money this worker holds reserved in Redis (day cap only):
    /// taken from and settled into without awaiting anything.
    chunk: Mutex<Chunk>,
    /// Held by the one task talking to Redis about the chunk.
    trip: tokio::sync::Mutex<()>,
    lease: Duration,
    /// This worker's spend tag in the day's hash ('' none): see
    /// [`crate::RedisConfig::spend_tag`].
    tag: String,
}

/// Money reserved in Redis for one day, spent from locally.
#[derive(Debug, Default)]
struct Chunk {
    date: String,
    /// µUSD reserved in Redis for this worker.
    held: i64,
    /// Of that, reserved by calls in flight, or spent and not yet booked.
    committed: i64,
    /// Spent and not yet booked in Redis.
    unbooked: i64,
    /// Of that, per organization.
    unbooked_by_org: HashMap<String, i64>,
    /// The next chunk's size.
    want: i64,
    taken_at: Option<Instant>,
}

/// What the fleet's budget in Redis said to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shared {
    /// Reserved there (or from this worker's chunk there).
    Reserved,
    /// The day's cap (or the organization's) is reached.
    CapReached,
    /// Redis did not answer: the worker decides with what it last heard.
    Unanswered,
}

/// What the worker knows and owes while Redis is gone.
#[derive(Debug, Default)]
struct Offline {
    /// Left today / per organization when Redis last answered.
    day_left: Option<i64>,
    org_left: HashMap<String, i64>,
    /// This outage's allowances, taken from those ÷ workers.
    day_allowance: Option<i64>,
    org_allowance: HashMap<String, i64>,
    /// Settlements Redis has not seen: (date, org, reserved there, spent).
    unbooked: Vec<(String, Option<String>, i64, i64)>,
}

impl RedisBudget {
    pub(crate) fn new(
        redis: Arc<Redis>,
        config: &BudgetConfig,
        workers: Arc<AtomicU32>,
        lease: Duration,
        tag: Option<String>,
    ) -> Self {
        Self {
            tag: tag.unwrap_or_default(),
            chunk: Mutex::new(Chunk::default()),
            trip: tokio::sync::Mutex::new(()),
            lease,
            redis,
            run: InMemoryBudget::new(&BudgetConfig {
                per_run_usd: config.per_run_usd,
                ..Default::default()
            }),
            per_day: config.per_day_usd.map(usd_to_micros),
            per_org_day: config.per_org_day_usd.map(usd_to_micros),
            workers,
            offline: Mutex::new(Offline::default()),
        }
    }

    /// Runs the budget script for `date`.
    /// One round trip: releases `release` and books `spent` (on `org` too),
    /// then reserves up to `want` if at least `least` is left. Returns what
    /// was granted, or why Redis did not answer.
    async fn book(
        &self,
        date: &str,
        (want, least): (i64, i64),
        release: i64,
        spent: i64,
        org: Org<'_>,
    ) -> Result<i64, Failed> {
        self.book_with(date, (want, least), release, (spent, &[]), org)
            .await
    }

    /// As [`Self::book`], with spend already inside `spent` also booked to
    /// the organizations in `by_org`.
    async fn book_with(
        &self,
        date: &str,
        (want, least): (i64, i64),
        release: i64,
        (spent, by_org): (i64, &[(String, i64)]),
        org: Org<'_>,
    ) -> Result<i64, Failed> {
        let mut args = vec![
            want.to_string(),
            release.to_string(),
            spent.to_string(),
            self.per_day.unwrap_or(-1).to_string(),
            org.unwrap_or_default().to_string(),
            self.per_org_day.unwrap_or(-1).to_string(),
            least.to_string(),
            self.tag.clone(),
        ];
        for (o, s) in by_org {
            args.push(o.clone());
            args.push(s.to_string());
        }
        let key = [self.redis.keys().budget_day(date)];
        let (granted, left, org_left): (i64, i64, i64) =
            match self.redis.try_script(&BUDGET, &key, &args).await {
                Ok(answer) => answer,
                Err(Failed::Refused(said)) => {
                    let what = format!("refused:{}", key[0]);
                    self.redis.tell(&what, || {
                        format!(
                            "the day's budget cannot be shared: Redis says {said} (at {})",
                            key[0]
                        )
                    });
                    return Err(Failed::Refused(said));
                }
                Err(failed) => return Err(failed),
            };
        let mut off = self.offline.lock().expect("budget lock");
        off.day_left = (left >= 0).then_some(left);
        if let Some(o) = org
            && org_left >= 0
        {
            off.org_left.insert(o.to_string(), org_left);
        }
        off.day_allowance = None;
        off.org_allowance.clear();
        Ok(granted)
    }

    /// Whether reservations come from a chunk: no per-organization cap.
    fn chunked(&self) -> bool {
        self.per_org_day.is_none()
    }

    /// Takes `amount` from the chunk if it is for `date` and has it.
    fn take(&self, amount: i64, date: &str) -> bool {
        let mut c = self.chunk.lock().expect("chunk lock");
        let ok = c.date == date && c.held - c.committed >= amount;
        if ok {
            c.committed += amount;
        }
        ok
    }

    /// Reserves `amount` from this worker's chunk, taking a new one (and
    /// booking what was spent) when it is short.
    async fn reserve_from_chunk(&self, amount: i64, date: String) -> Shared {
        // A free call (no cost configured) needs no money.
        if amount <= 0 || self.take(amount, &date) {
            return Shared::Reserved;
        }
        let _trip = self.trip.lock().await;
        if self.take(amount, &date) {
            return Shared::Reserved;
        }
        let old_day = self.chunk.lock().expect("chunk lock").date != date;
        if old_day {
            // What the old day's chunk spent is booked to that day.
            self.hand_back().await;
            let mut c = self.chunk.lock().expect("chunk lock");
            c.date = date;
            c.want = 0;
        }
        let (unbooked, by_org, want) = {
            let mut c = self.chunk.lock().expect("chunk lock");
            let workers = i64::from(self.workers.load(Ordering::Acquire).max(1));
            let used_up_fast = c.taken_at.is_some_and(|t| t.elapsed() < self.lease);
            c.want = if c.want == 0 {
                16 * amount
            } else if used_up_fast {
                c.want.saturating_mul(2)
            } else {
                c.want
            };
            let share = self.per_day.unwrap_or(i64::MAX) / (2 * workers) / amount * amount;
            let by_org: Vec<_> = c.unbooked_by_org.drain().collect();
            (c.unbooked, by_org, c.want.min(share).max(amount))
        };
        let date = self.chunk.lock().expect("chunk lock").date.clone();
        let booked = self
            .book_with(&date, (want, amount), unbooked, (unbooked, &by_org), None)
            .await;
        // A trip that may still be applied booked `unbooked` (released
        // and spent alike): sent again, it moves as much from reserved to
        // spent, which leaves the cap's sum as it is.
        let Ok(granted) = booked else {
            self.rebook(by_org);
            return Shared::Unanswered;
        };
        let mut c = self.chunk.lock().expect("chunk lock");
        c.held += granted - unbooked;
        c.committed -= unbooked;
        c.unbooked -= unbooked;
        c.taken_at = Some(Instant::now());
        if c.held - c.committed >= amount {
            c.committed += amount;
            Shared::Reserved
        } else {
            Shared::CapReached
        }
    }

    /// Books what the chunk spent and hands back what no call holds. The
    /// caller holds `trip`. Whether nothing is left to book.
    async fn hand_back(&self) -> bool {
        let (date, free, unbooked, by_org) = {
            let mut c = self.chunk.lock().expect("chunk lock");
            let free = c.held - c.committed;
            // Out of reach of reservations while it is being handed back.
            c.held -= free;
            let by_org: Vec<_> = c.unbooked_by_org.drain().collect();
            (c.date.clone(), free, c.unbooked, by_org)
        };
        if (free == 0 && unbooked == 0) || date.is_empty() {
            return true;
        }
        let booked = self
            .book_with(&date, (0, 0), free + unbooked, (unbooked, &by_org), None)
            .await;
        if booked.is_err() {
            self.rebook(by_org);
        }
        let mut c = self.chunk.lock().expect("chunk lock");
        match booked {
            Ok(_) => {
                c.held -= unbooked;
                c.committed -= unbooked;
                c.unbooked -= unbooked;
            }
            // Surely not handed back: the chunk still holds it.
            Err(Failed::NotApplied | Failed::Refused(_)) => c.held += free,
            // Maybe handed back: spending it could pass the cap. If Redis
            // never applies it, it stays reserved for the day (the safe side).
            Err(Failed::Unknown) => {}
        }
        c.unbooked == 0
    }

    /// Puts organizations' spend that could not be booked back in the chunk.
    fn rebook(&self, by_org: Vec<(String, i64)>) {
        let mut c = self.chunk.lock().expect("chunk lock");
        for (o, spent) in by_org {
            *c.unbooked_by_org.entry(o).or_default() += spent;
        }
    }

    /// Every lease time: books what was spent while Redis was gone, and
    /// hands back a chunk left idle for a lease time.
    pub(crate) fn start_handing_back(self: &Arc<Self>) {
        let budget: Weak<Self> = Arc::downgrade(self);
        let every = self.lease;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(budget) = budget.upgrade() else {
                    return;
                };
                if !budget.redis.online() {
                    continue;
                }
                // Redis answers (again): what was spent without it is booked.
                budget.book_unbooked().await;
                if !budget.chunked() {
                    continue;
                }
                let Ok(_trip) = budget.trip.try_lock() else {
                    continue;
                };
                let idle = budget
                    .chunk
                    .lock()
                    .expect("chunk lock")
                    .taken_at
                    .is_some_and(|t| t.elapsed() >= every);
                if idle {
                    budget.hand_back().await;
                }
            }
        });
    }

    /// Books what was settled while Redis was gone, if anything was and
    /// Redis is back. Whether nothing is left to book.
    async fn book_unbooked(&self) -> bool {
        if !self.redis.online() {
            return self
                .offline
                .lock()
                .expect("budget lock")
                .unbooked
                .is_empty();
        }
        let unbooked = std::mem::take(&mut self.offline.lock().expect("budget lock").unbooked);
        for (i, (date, org, release, spent)) in unbooked.iter().enumerate() {
            if let Err(failed) = self
                .book(date, (0, 0), *release, *spent, org.as_deref())
                .await
            {
                let mut off = self.offline.lock().expect("budget lock");
                let mut rest = unbooked[i..].to_vec();
                if failed == Failed::Unknown {
                    // It may still be applied: sent again, it must release
                    // no more than it spends (see `settle`).
                    rest[0].2 = rest[0].3;
                }
                off.unbooked.extend(rest);
                return false;
            }
        }
        true
    }

    /// Reserves from this worker's share while Redis is gone.
    fn reserve_offline(&self, amount: i64, org: Org<'_>) -> bool {
        let workers = i64::from(self.workers.load(Ordering::Acquire).max(1));
        let mut off = self.offline.lock().expect("budget lock");
        let off = &mut *off;
        if self.per_day.is_some() {
            let seen = off.day_left.unwrap_or(0).max(0);
            let allowance = off.day_allowance.get_or_insert(seen / workers);
            if *allowance < amount {
                return false;
            }
        }
        if let (Some(_), Some(o)) = (self.per_org_day, org) {
            let seen = off.org_left.get(o).copied().unwrap_or(0).max(0);
            let allowance = off
                .org_allowance
                .entry(o.to_string())
                .or_insert(seen / workers);
            if *allowance < amount {
                return false;
            }
            *allowance -= amount;
        }
        if let Some(a) = off.day_allowance.as_mut() {
            *a -= amount;
        }
        true
    }
}

/// `now`'s UTC date, `YYYY-MM-DD`: the day a budget hash is for.
pub(crate) fn date_of(now: Micros) -> String {
    DateTime::from_timestamp_micros(now)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".into())
}

impl Budget for RedisBudget {
    /// Books what was spent (the chunk's and what was spent while Redis
    /// was gone) and hands back the rest. A Redis that does not record it
    /// is tried again for a moment ([`Redis::leaving_try`]); then what it
    /// never recorded is missing from the day's spend, and said so.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut first = true;
            while self.redis.leaving_try(first).await {
                first = false;
                let chunk_booked = if self.chunked() {
                    let _trip = self.trip.lock().await;
                    self.hand_back().await
                } else {
                    true
                };
                if self.book_unbooked().await && chunk_booked {
                    return;
                }
            }
            let unbooked = self.chunk.lock().expect("chunk lock").unbooked
                + (self.offline.lock().expect("budget lock").unbooked)
                    .iter()
                    .map(|u| u.3)
                    .sum::<i64>();
            tracing::warn!(
                unbooked_usd = unbooked as f64 / 1_000_000.0,
                "leaving without booking in Redis what was spent while it did not record it: the day's spend there misses it"
            );
        })
    }

    fn reserve<'a>(
        &'a self,
        amount: i64,
        org: Org<'a>,
        now: Micros,
    ) -> BoxFuture<'a, Option<Reservation>> {
        Box::pin(async move {
            if !self.run.reserve_run(amount) {
                return None;
            }
            self.book_unbooked().await;
            let date = date_of(now);
            let said = if self.chunked() {
                self.reserve_from_chunk(amount, date).await
            } else {
                match self.book(&date, (amount, amount), 0, 0, org).await {
                    Ok(granted) if granted > 0 => Shared::Reserved,
                    Ok(_) => Shared::CapReached,
                    Err(_) => Shared::Unanswered,
                }
            };
            let reserved = match said {
                Shared::Reserved => Some(Reservation {
                    amount,
                    shared: true,
                }),
                Shared::CapReached => None,
                Shared::Unanswered => self.reserve_offline(amount, org).then_some(Reservation {
                    amount,
                    shared: false,
                }),
            };
            if reserved.is_none() {
                self.run.settle_run(amount, 0);
            }
            reserved
        })
    }

    fn settle<'a>(
        &'a self,
        reservation: Reservation,
        spent: i64,
        org: Org<'a>,
        now: Micros,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.run.settle_run(reservation.amount, spent);
            let release = if reservation.shared {
                reservation.amount
            } else {
                0
            };
            if !reservation.shared {
                // Reserved from the offline allowance: give back what was not spent.
                let mut off = self.offline.lock().expect("budget lock");
                let unspent = reservation.amount - spent;
                if let Some(a) = off.day_allowance.as_mut() {
                    *a += unspent;
                }
                if let Some(a) = org.and_then(|o| off.org_allowance.get_mut(o)) {
                    *a += unspent;
                }
            }
            if reservation.shared && self.chunked() {
                // Into the chunk: booked on its next round trip.
                let mut c = self.chunk.lock().expect("chunk lock");
                c.committed -= reservation.amount - spent;
                c.unbooked += spent;
                if let Some(o) = org.filter(|_| spent > 0) {
                    *c.unbooked_by_org.entry(o.to_string()).or_default() += spent;
                }
                return;
            }
            if release == 0 && spent == 0 {
                return;
            }
            let date = date_of(now);
            if let Err(failed) = self.book(&date, (0, 0), release, spent, org).await {
                // A booking that may still be applied must not release the
                // unspent part twice: sent again, it releases what it spends
                // (moved from reserved to spent, the cap's sum unchanged),
                // and the rest stays reserved for the day if it never was.
                let release = match failed {
                    Failed::Unknown => release.min(spent),
                    _ => release,
                };
                let mut off = self.offline.lock().expect("budget lock");
                off.unbooked
                    .push((date, org.map(str::to_string), release, spent));
            }
        })
    }
}
