//! Budgets shared by the fleet: the per-day and per-organization-per-day
//! caps in integer µUSD, in one Redis hash per UTC day
//! (`P:{budget}:day:YYYY-MM-DD`), reserved before a call and settled after
//! by one Lua script, so workers together stop at the cap to the µUSD. The
//! per-run cap stays with the run (one process).
//!
//! The day is the waterfall clock's UTC date: workers whose clocks differ
//! by seconds may book a call at midnight to either day. A worker that dies
//! between reserving and settling leaves its reservation (at most its
//! concurrency × the dearest call) counted for that day: never an
//! overspend. While Redis is gone a worker spends at most its share (÷ live
//! workers) of what was left when it last heard, and books it when Redis is back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use chrono::DateTime;
use futures::future::BoxFuture;
use leadflow_waterfall::config::{BudgetConfig, usd_to_micros};
use leadflow_waterfall::{Budget, InMemoryBudget, Micros, Org, Reservation};

use crate::conn::{Lua, Redis};

static BUDGET: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("lua/budget.lua")));

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
    pub(crate) fn new(redis: Arc<Redis>, config: &BudgetConfig, workers: Arc<AtomicU32>) -> Self {
        Self {
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

    fn shared(&self) -> bool {
        self.per_day.is_some() || self.per_org_day.is_some()
    }

    /// Runs the budget script for `date`.
    async fn book(
        &self,
        date: &str,
        amount: i64,
        release: i64,
        spent: i64,
        org: Org<'_>,
    ) -> Option<(bool, i64, i64)> {
        let args = [
            amount.to_string(),
            release.to_string(),
            spent.to_string(),
            self.per_day.unwrap_or(-1).to_string(),
            org.unwrap_or_default().to_string(),
            self.per_org_day.unwrap_or(-1).to_string(),
        ];
        let key = [self.redis.keys().budget_day(date)];
        let (ok, left, org_left): (i64, i64, i64) = self.redis.script(&BUDGET, &key, &args).await?;
        let mut off = self.offline.lock().expect("budget lock");
        off.day_left = (left >= 0).then_some(left);
        if let Some(o) = org
            && org_left >= 0
        {
            off.org_left.insert(o.to_string(), org_left);
        }
        off.day_allowance = None;
        off.org_allowance.clear();
        Some((ok == 1, left, org_left))
    }

    /// Books what was settled while Redis was gone.
    async fn book_unbooked(&self) {
        let unbooked = std::mem::take(&mut self.offline.lock().expect("budget lock").unbooked);
        for (i, (date, org, release, spent)) in unbooked.iter().enumerate() {
            if self
                .book(date, 0, *release, *spent, org.as_deref())
                .await
                .is_none()
            {
                let mut off = self.offline.lock().expect("budget lock");
                off.unbooked.extend(unbooked[i..].iter().cloned());
                return;
            }
        }
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

/// `now`'s UTC date, `YYYY-MM-DD`.
fn date_of(now: Micros) -> String {
    DateTime::from_timestamp_micros(now)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".into())
}

impl Budget for RedisBudget {
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
            if !self.shared() {
                return Some(Reservation {
                    amount,
                    shared: false,
                });
            }
            if self.redis.online()
                && !self
                    .offline
                    .lock()
                    .expect("budget lock")
                    .unbooked
                    .is_empty()
            {
                self.book_unbooked().await;
            }
            let reserved = match self.book(&date_of(now), amount, 0, 0, org).await {
                Some((ok, _, _)) => ok.then_some(Reservation {
                    amount,
                    shared: true,
                }),
                None => self.reserve_offline(amount, org).then_some(Reservation {
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
            if !self.shared() {
                return;
            }
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
            if release == 0 && spent == 0 {
                return;
            }
            let date = date_of(now);
            if self.book(&date, 0, release, spent, org).await.is_none() {
                let mut off = self.offline.lock().expect("budget lock");
                off.unbooked
                    .push((date, org.map(str::to_string), release, spent));
            }
        })
    }
}
