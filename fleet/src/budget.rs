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
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use chrono::DateTime;
use futures::future::BoxFuture;
use leadflow_waterfall::config::{BudgetConfig, usd_to_micros};
use leadflow_waterfall::{Budget, InMemoryBudget, Micros, Org, Reservation};
use tokio::sync::Notify;

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
///
/// What this worker holds, owes and last heard of the day's money is one
/// [`Ledger`] behind one lock, never held across an await: each change is
/// one of the ledger's named transitions, and each round trip to Redis is
/// planned by one transition and finished by another with its [`Booked`]
/// outcome.
#[derive(Debug)]
pub struct RedisBudget {
    redis: Arc<Redis>,
    /// The run's own cap (and nothing else).
    run: InMemoryBudget,
    caps: Caps,
    workers: Arc<AtomicU32>,
    lease: Duration,
    /// This worker's spend tag in the day's hash ('' none): see
    /// [`crate::RedisConfig::spend_tag`].
    tag: String,
    ledger: Mutex<Ledger>,
    /// Wakes the reservations waiting for the chunk's round trip.
    trip_done: Notify,
}

/// The fleet's caps, µUSD.
#[derive(Debug, Clone, Copy)]
struct Caps {
    per_day: Option<i64>,
    per_org_day: Option<i64>,
}

/// Everything this worker knows and owes about the day's money.
#[derive(Debug, Default)]
struct Ledger {
    chunk: Chunk,
    /// Whether a task is talking to Redis about the chunk (one at a time).
    trip_busy: bool,
    /// What Redis said was left when it last answered.
    heard: Heard,
    /// The allowances of an outage: set by the first reservation Redis does
    /// not answer, cleared when it answers again.
    outage: Option<Outage>,
    /// Settlements Redis has not recorded, oldest first.
    owed: Vec<Owed>,
}

/// Money reserved in Redis for one day, spent from locally.
#[derive(Debug, Default)]
struct Chunk {
    /// Its day ('' before the first).
    date: String,
    /// µUSD reserved in Redis for this worker.
    held: i64,
    /// Of that, reserved by calls in flight, or spent and not yet booked.
    committed: i64,
    /// Spent and not yet booked in Redis.
    unbooked: i64,
    /// Of that, per organization.
    unbooked_by_org: HashMap<String, i64>,
    /// The next chunk's size (0: not yet sized for this day).
    want: i64,
    taken_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Heard {
    day_left: Option<i64>,
    org_left: HashMap<String, i64>,
}

/// What one worker may spend while Redis is gone: its share (÷ live
/// workers) of what was left when Redis last answered.
#[derive(Debug)]
struct Outage {
    day: i64,
    org: HashMap<String, i64>,
}

/// A settlement Redis has not recorded.
#[derive(Debug, Clone)]
struct Owed {
    date: String,
    org: Option<String>,
    /// Reserved there, to release.
    release: i64,
    spent: i64,
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

/// How a round trip to the budget script ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Booked {
    /// Applied; this much was granted.
    Done(i64),
    /// Surely not applied: nothing changed in Redis.
    NotApplied,
    /// Sent and not answered: Redis may still apply it.
    MaybeApplied,
}

impl From<&Result<i64, Failed>> for Booked {
    fn from(result: &Result<i64, Failed>) -> Self {
        match result {
            Ok(granted) => Booked::Done(*granted),
            Err(Failed::NotApplied | Failed::Refused(_)) => Booked::NotApplied,
            Err(Failed::Unknown) => Booked::MaybeApplied,
        }
    }
}

/// One round trip for the chunk: book what it spent, release it from what
/// is reserved, and reserve `want` (at least `least`) more.
#[derive(Debug)]
struct ChunkTrip {
    date: String,
    want: i64,
    least: i64,
    /// Reserved and no call holds it: handed back.
    free: i64,
    /// Spent, booked and released.
    unbooked: i64,
    /// Of `unbooked`, per organization.
    by_org: Vec<(String, i64)>,
}

impl Chunk {
    /// Takes `amount` for a call if this chunk is for `date` and has it.
    fn take(&mut self, amount: i64, date: &str) -> bool {
        let ok = self.date == date && self.held - self.committed >= amount;
        if ok {
            self.committed += amount;
        }
        ok
    }

    /// What a trip books of the chunk's spend (left in place: a trip that
    /// is dropped half-way changes nothing).
    fn trip(&self, date: String, (want, least): (i64, i64), free: i64) -> ChunkTrip {
        ChunkTrip {
            date,
            want,
            least,
            free,
            unbooked: self.unbooked,
            by_org: self
                .unbooked_by_org
                .iter()
                .map(|(o, s)| (o.clone(), *s))
                .collect(),
        }
    }

    /// `trip`'s spend is booked in Redis.
    fn booked(&mut self, trip: &ChunkTrip) {
        self.held -= trip.unbooked;
        self.committed -= trip.unbooked;
        self.unbooked -= trip.unbooked;
        for (org, spent) in &trip.by_org {
            if let Some(left) = self.unbooked_by_org.get_mut(org) {
                *left -= spent;
                if *left == 0 {
                    self.unbooked_by_org.remove(org);
                }
            }
        }
    }
}

impl Ledger {
    /// Redis answered the budget script: what it said is left, and the
    /// outage (if any) is over.
    fn heard(&mut self, left: i64, org: Org<'_>, org_left: i64) {
        self.heard.day_left = (left >= 0).then_some(left);
        if let Some(o) = org
            && org_left >= 0
        {
            self.heard.org_left.insert(o.to_string(), org_left);
        }
        self.outage = None;
    }

    /// The chunk's next trip, for a call of `amount` on `date` that it
    /// could not hold; `share` caps the chunk. `None` when the chunk is for
    /// another day: that day's chunk goes back first ([`Self::hand_back`]),
    /// then [`Self::new_day`].
    fn refill(
        &mut self,
        amount: i64,
        date: &str,
        lease: Duration,
        share: i64,
    ) -> Option<ChunkTrip> {
        let c = &mut self.chunk;
        if c.date != date {
            return None;
        }
        let used_up_fast = c.taken_at.is_some_and(|t| t.elapsed() < lease);
        c.want = if c.want == 0 {
            16 * amount
        } else if used_up_fast {
            c.want.saturating_mul(2)
        } else {
            c.want
        };
        let want = c.want.min(share).max(amount);
        Some(c.trip(date.to_string(), (want, amount), 0))
    }

    /// The refill `trip` ended `booked`: the call of `amount` it was for
    /// is reserved from the new chunk, or the cap is reached, or Redis did
    /// not answer.
    fn refilled(&mut self, trip: &ChunkTrip, booked: Booked, amount: i64) -> Shared {
        let Booked::Done(granted) = booked else {
            // A trip that may still be applied books `unbooked` (released
            // and spent alike): sent again, it moves as much from reserved
            // to spent, which leaves the cap's sum as it is.
            return Shared::Unanswered;
        };
        let c = &mut self.chunk;
        c.booked(trip);
        c.held += granted;
        c.taken_at = Some(Instant::now());
        if c.take(amount, &trip.date) {
            Shared::Reserved
        } else {
            Shared::CapReached
        }
    }

    /// The trip that books what the chunk spent and hands back what no
    /// call holds, which is out of reach of reservations from here. `None`
    /// when there is nothing to book or hand back.
    fn hand_back(&mut self) -> Option<ChunkTrip> {
        let c = &mut self.chunk;
        let free = c.held - c.committed;
        if (free == 0 && c.unbooked == 0) || c.date.is_empty() {
            return None;
        }
        c.held -= free;
        Some(c.trip(c.date.clone(), (0, 0), free))
    }

    /// The hand-back `trip` ended `booked`. Whether nothing is left to book.
    fn handed_back(&mut self, trip: &ChunkTrip, booked: Booked) -> bool {
        let c = &mut self.chunk;
        match booked {
            Booked::Done(_) => c.booked(trip),
            // Surely not handed back: the chunk still holds it.
            Booked::NotApplied => c.held += trip.free,
            // Maybe handed back: spending it could pass the cap. If Redis
            // never applies it, it stays reserved for the day (the safe side).
            Booked::MaybeApplied => {}
        }
        c.unbooked == 0
    }

    /// The chunk starts over on `date` (the old day's handed back).
    fn new_day(&mut self, date: &str) {
        self.chunk.date = date.to_string();
        self.chunk.want = 0;
    }

    /// A call's reservation from the chunk settles into it: booked on the
    /// chunk's next trip.
    fn settle_chunk(&mut self, reserved: i64, spent: i64, org: Org<'_>) {
        let c = &mut self.chunk;
        c.committed -= reserved - spent;
        c.unbooked += spent;
        if let Some(o) = org.filter(|_| spent > 0) {
            *c.unbooked_by_org.entry(o.to_string()).or_default() += spent;
        }
    }

    /// Reserves `amount` from this worker's share while Redis is gone.
    fn reserve_offline(&mut self, amount: i64, org: Org<'_>, workers: i64, caps: Caps) -> bool {
        let heard = &self.heard;
        let outage = self.outage.get_or_insert_with(|| Outage {
            day: heard.day_left.unwrap_or(0).max(0) / workers,
            org: HashMap::new(),
        });
        if caps.per_day.is_some() && outage.day < amount {
            return false;
        }
        if let (Some(_), Some(o)) = (caps.per_org_day, org) {
            let allowance = outage
                .org
                .entry(o.to_string())
                .or_insert_with(|| heard.org_left.get(o).copied().unwrap_or(0).max(0) / workers);
            if *allowance < amount {
                return false;
            }
            *allowance -= amount;
        }
        outage.day -= amount;
        true
    }

    /// A reservation from the outage's allowance settles: what was not
    /// spent goes back to it (if the outage is not over).
    fn settle_offline(&mut self, reserved: i64, spent: i64, org: Org<'_>) {
        let Some(outage) = self.outage.as_mut() else {
            return;
        };
        outage.day += reserved - spent;
        if let Some(a) = org.and_then(|o| outage.org.get_mut(o)) {
            *a += reserved - spent;
        }
    }

    /// A settlement Redis did not record (`booked` says whether it may
    /// still): kept to book when it answers.
    fn owe(&mut self, mut owed: Owed, booked: Booked) {
        if booked == Booked::MaybeApplied {
            // Sent again, it must release no more than it spends: a copy
            // Redis applies late then moves as much from reserved to spent
            // (the cap's sum unchanged), and the rest stays reserved for
            // the day if it never was.
            owed.release = owed.release.min(owed.spent);
        }
        self.owed.push(owed);
    }

    /// Spent and not booked in Redis, µUSD.
    fn unbooked(&self) -> i64 {
        self.chunk.unbooked + self.owed.iter().map(|o| o.spent).sum::<i64>()
    }
}

/// The chunk's round trip is this task's until dropped.
struct TripTurn<'a>(&'a RedisBudget);

impl Drop for TripTurn<'_> {
    fn drop(&mut self) {
        self.0.ledger().trip_busy = false;
        self.0.trip_done.notify_waiters();
    }
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
            ledger: Mutex::new(Ledger::default()),
            trip_done: Notify::new(),
            lease,
            redis,
            run: InMemoryBudget::new(&BudgetConfig {
                per_run_usd: config.per_run_usd,
                ..Default::default()
            }),
            caps: Caps {
                per_day: config.per_day_usd.map(usd_to_micros),
                per_org_day: config.per_org_day_usd.map(usd_to_micros),
            },
            workers,
        }
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("budget ledger lock")
    }

    fn live_workers(&self) -> i64 {
        i64::from(self.workers.load(Ordering::Acquire).max(1))
    }

    /// Whether reservations come from a chunk: no per-organization cap.
    fn chunked(&self) -> bool {
        self.caps.per_org_day.is_none()
    }

    /// The chunk's round trip, when no other task has it.
    fn try_trip_turn(&self) -> Option<TripTurn<'_>> {
        let mut ledger = self.ledger();
        if ledger.trip_busy {
            return None;
        }
        ledger.trip_busy = true;
        Some(TripTurn(self))
    }

    /// Runs the budget script for `date`: one round trip releases
    /// `release` and books `spent` (on `org` too, and on the organizations
    /// in `by_org`, whose spend is inside `spent`), then reserves up to
    /// `want` if at least `least` is left. Returns what was granted.
    async fn book(
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
            self.caps.per_day.unwrap_or(-1).to_string(),
            org.unwrap_or_default().to_string(),
            self.caps.per_org_day.unwrap_or(-1).to_string(),
            least.to_string(),
            self.tag.clone(),
        ];
        for (o, s) in by_org {
            args.push(o.clone());
            args.push(s.to_string());
        }
        let key = [self.redis.keys().budget_day(date)];
        match self.redis.try_script(&BUDGET, &key, &args).await {
            Ok((granted, left, org_left)) => {
                self.ledger().heard(left, org, org_left);
                Ok(granted)
            }
            Err(Failed::Refused(said)) => {
                let what = format!("refused:{}", key[0]);
                self.redis.tell(&what, || {
                    format!(
                        "the day's budget cannot be shared: Redis says {said} (at {})",
                        key[0]
                    )
                });
                Err(Failed::Refused(said))
            }
            Err(failed) => Err(failed),
        }
    }

    /// Sends a chunk trip.
    async fn send(&self, trip: &ChunkTrip) -> Booked {
        let release = trip.free + trip.unbooked;
        let booked = self
            .book(
                &trip.date,
                (trip.want, trip.least),
                release,
                (trip.unbooked, &trip.by_org),
                None,
            )
            .await;
        Booked::from(&booked)
    }

    /// Reserves `amount` from this worker's chunk, taking a new one (and
    /// booking what was spent) when it is short.
    async fn reserve_from_chunk(&self, amount: i64, date: String) -> Shared {
        // A free call (no cost configured) needs no money.
        if amount <= 0 {
            return Shared::Reserved;
        }
        let _turn = loop {
            let done = self.trip_done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            {
                let mut ledger = self.ledger();
                if ledger.chunk.take(amount, &date) {
                    return Shared::Reserved;
                }
                if !ledger.trip_busy {
                    ledger.trip_busy = true;
                    break TripTurn(self);
                }
            }
            done.await;
        };
        let share =
            self.caps.per_day.unwrap_or(i64::MAX) / (2 * self.live_workers()) / amount * amount;
        let planned = self.ledger().refill(amount, &date, self.lease, share);
        let trip = match planned {
            Some(trip) => trip,
            None => {
                // What the old day's chunk spent is booked to that day.
                self.hand_back().await;
                let mut ledger = self.ledger();
                ledger.new_day(&date);
                ledger
                    .refill(amount, &date, self.lease, share)
                    .expect("the chunk is for this day")
            }
        };
        let booked = self.send(&trip).await;
        self.ledger().refilled(&trip, booked, amount)
    }

    /// Books what the chunk spent and hands back what no call holds. The
    /// caller has the trip's turn. Whether nothing is left to book.
    async fn hand_back(&self) -> bool {
        let Some(trip) = self.ledger().hand_back() else {
            return true;
        };
        let booked = self.send(&trip).await;
        self.ledger().handed_back(&trip, booked)
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
                budget.book_owed().await;
                if !budget.chunked() {
                    continue;
                }
                let Some(_turn) = budget.try_trip_turn() else {
                    continue;
                };
                let idle = (budget.ledger().chunk.taken_at).is_some_and(|t| t.elapsed() >= every);
                if idle {
                    budget.hand_back().await;
                }
            }
        });
    }

    /// Books what was settled while Redis was gone, if anything was and
    /// Redis is back. Whether nothing is left to book.
    async fn book_owed(&self) -> bool {
        if !self.redis.online() {
            return self.ledger().owed.is_empty();
        }
        let owed = std::mem::take(&mut self.ledger().owed);
        for (i, o) in owed.iter().enumerate() {
            let result = self
                .book(&o.date, (0, 0), o.release, (o.spent, &[]), o.org.as_deref())
                .await;
            if let Err(failed) = &result {
                tracing::trace!(
                    ?failed,
                    "could not book what was spent while Redis was gone"
                );
                let mut ledger = self.ledger();
                let mut rest = owed[i..].iter().cloned();
                let first = rest.next().expect("the one that failed");
                // Kept before anything settled since: oldest first.
                let later = std::mem::take(&mut ledger.owed);
                ledger.owe(first, Booked::from(&result));
                ledger.owed.extend(rest.chain(later));
                return false;
            }
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
                    let _turn = loop {
                        let done = self.trip_done.notified();
                        tokio::pin!(done);
                        done.as_mut().enable();
                        if let Some(turn) = self.try_trip_turn() {
                            break turn;
                        }
                        done.await;
                    };
                    self.hand_back().await
                } else {
                    true
                };
                if self.book_owed().await && chunk_booked {
                    return;
                }
            }
            let unbooked = self.ledger().unbooked();
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
            self.book_owed().await;
            let date = date_of(now);
            let said = if self.chunked() {
                self.reserve_from_chunk(amount, date).await
            } else {
                match self.book(&date, (amount, amount), 0, (0, &[]), org).await {
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
                Shared::Unanswered => {
                    let workers = self.live_workers();
                    (self
                        .ledger()
                        .reserve_offline(amount, org, workers, self.caps))
                    .then_some(Reservation {
                        amount,
                        shared: false,
                    })
                }
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
            let release = match (reservation.shared, self.chunked()) {
                (true, true) => {
                    // Into the chunk: booked on its next round trip.
                    self.ledger().settle_chunk(reservation.amount, spent, org);
                    return;
                }
                (true, false) => reservation.amount,
                (false, _) => {
                    // Reserved from the outage's allowance.
                    self.ledger().settle_offline(reservation.amount, spent, org);
                    0
                }
            };
            if release == 0 && spent == 0 {
                return;
            }
            let date = date_of(now);
            let result = self.book(&date, (0, 0), release, (spent, &[]), org).await;
            if result.is_err() {
                let owed = Owed {
                    date,
                    org: org.map(str::to_string),
                    release,
                    spent,
                };
                self.ledger().owe(owed, Booked::from(&result));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: &str = "2026-12-05";
    const LEASE: Duration = Duration::from_secs(1);

    /// A ledger whose chunk for `DAY` holds `held`.
    fn holding(held: i64) -> Ledger {
        let mut ledger = Ledger::default();
        ledger.new_day(DAY);
        let trip = ledger
            .refill(held, DAY, LEASE, held)
            .expect("today's chunk");
        assert_eq!((trip.want, trip.least), (held, held));
        assert_eq!(
            ledger.refilled(&trip, Booked::Done(held), 0),
            Shared::Reserved
        );
        ledger
    }

    #[test]
    fn a_chunk_is_spent_locally_and_its_spend_booked_by_the_next_trip() {
        let mut ledger = holding(100);
        assert!(ledger.chunk.take(60, DAY));
        assert!(!ledger.chunk.take(60, DAY), "40 left");
        assert!(!ledger.chunk.take(10, "2026-12-06"), "another day's chunk");
        ledger.settle_chunk(60, 45, Some("acme"));
        assert_eq!(ledger.unbooked(), 45);

        let trip = ledger.refill(60, DAY, LEASE, 1_000).expect("today's chunk");
        assert_eq!((trip.unbooked, trip.free), (45, 0));
        assert_eq!(trip.by_org, vec![("acme".to_string(), 45)]);
        assert_eq!(
            ledger.refilled(&trip, Booked::Done(200), 60),
            Shared::Reserved
        );
        let c = &ledger.chunk;
        assert_eq!((c.held, c.committed, c.unbooked), (255, 60, 0));
        assert!(c.unbooked_by_org.is_empty());
    }

    #[test]
    fn a_trip_that_is_dropped_or_not_answered_leaves_the_spend_to_book() {
        let mut ledger = holding(100);
        assert!(ledger.chunk.take(100, DAY));
        ledger.settle_chunk(100, 100, Some("acme"));
        // Planned, then the task is dropped before Redis answers.
        let dropped = ledger.refill(10, DAY, LEASE, 1_000).expect("today's chunk");
        drop(dropped);
        let trip = ledger.refill(10, DAY, LEASE, 1_000).expect("today's chunk");
        assert_eq!((trip.unbooked, trip.by_org.len()), (100, 1));
        for booked in [Booked::NotApplied, Booked::MaybeApplied] {
            assert_eq!(ledger.refilled(&trip, booked, 10), Shared::Unanswered);
            assert_eq!(ledger.unbooked(), 100);
            assert_eq!(ledger.chunk.unbooked_by_org["acme"], 100);
        }
        // A cap reached: booked, nothing granted, the call not reserved.
        assert_eq!(
            ledger.refilled(&trip, Booked::Done(0), 10),
            Shared::CapReached
        );
        assert_eq!(ledger.unbooked(), 0);
    }

    #[test]
    fn a_hand_back_redis_surely_did_not_apply_keeps_the_chunk_and_a_maybe_applied_one_does_not() {
        let mut ledger = holding(100);
        assert!(ledger.chunk.take(30, DAY));
        let trip = ledger.hand_back().expect("70 free");
        assert_eq!(trip.free, 70);
        assert!(!ledger.chunk.take(1, DAY), "out of reach while handed back");
        assert!(ledger.handed_back(&trip, Booked::NotApplied));
        assert!(
            ledger.chunk.take(70, DAY),
            "surely not handed back: still held"
        );

        let mut ledger = holding(100);
        let trip = ledger.hand_back().expect("100 free");
        assert!(ledger.handed_back(&trip, Booked::MaybeApplied));
        assert!(
            !ledger.chunk.take(1, DAY),
            "maybe handed back: never spent again"
        );
        assert!(ledger.hand_back().is_none(), "nothing left to hand back");
    }

    #[test]
    fn a_settlement_that_may_still_be_applied_is_sent_again_releasing_no_more_than_it_spent() {
        let mut ledger = Ledger::default();
        let owed = |release, spent| Owed {
            date: DAY.into(),
            org: None,
            release,
            spent,
        };
        ledger.owe(owed(0, 40), Booked::MaybeApplied);
        ledger.owe(owed(100, 40), Booked::MaybeApplied);
        ledger.owe(owed(100, 40), Booked::NotApplied);
        let kept: Vec<_> = ledger.owed.iter().map(|o| (o.release, o.spent)).collect();
        // Releasing what an offline call never reserved could undercount
        // the day if only the copy sent again is applied.
        assert_eq!(kept, [(0, 40), (40, 40), (100, 40)]);
        assert_eq!(ledger.unbooked(), 120);
    }

    #[test]
    fn while_redis_is_gone_a_worker_spends_its_share_of_what_was_left() {
        let caps = Caps {
            per_day: Some(1_000),
            per_org_day: Some(400),
        };
        let mut ledger = Ledger::default();
        ledger.heard(1_000, Some("acme"), 400);
        // Four workers: 250 of the day, 100 of acme's.
        assert!(ledger.reserve_offline(100, Some("acme"), 4, caps));
        assert!(!ledger.reserve_offline(1, Some("acme"), 4, caps));
        // An organization Redis never said anything of: nothing.
        assert!(!ledger.reserve_offline(1, Some("other"), 4, caps));
        assert!(ledger.reserve_offline(150, None, 4, caps));
        assert!(!ledger.reserve_offline(1, None, 4, caps));
        ledger.settle_offline(100, 60, Some("acme"));
        assert!(ledger.reserve_offline(40, Some("acme"), 4, caps));
        // Redis answers: the outage's allowances end.
        ledger.heard(500, None, -1);
        assert!(ledger.outage.is_none());
        // A worker that never heard from Redis allows itself nothing.
        assert!(!Ledger::default().reserve_offline(1, None, 1, caps));
    }
}
