//! Spend caps: a call reserves its most expensive outcome before it goes
//! out and settles the real cost after, so concurrent calls cannot together
//! overshoot a cap.

use std::fmt::Debug;
use std::sync::Mutex;

use futures::future::BoxFuture;

use crate::clock::Micros;
use crate::config::{BudgetConfig, usd_to_micros};

const DAY: Micros = 86_400 * 1_000_000;

pub trait Budget: Send + Sync + Debug {
    /// Reserves `amount` µUSD; `false` when that would pass a cap.
    fn reserve(&self, amount: i64, now: Micros) -> BoxFuture<'_, bool>;
    /// Releases a reservation of `reserved` and spends `spent` instead.
    fn settle(&self, reserved: i64, spent: i64, now: Micros) -> BoxFuture<'_, ()>;
}

/// Caps per run and per UTC day, held in memory.
#[derive(Debug)]
pub struct InMemoryBudget {
    per_run: Option<i64>,
    per_day: Option<i64>,
    state: Mutex<Spend>,
}

#[derive(Debug, Default)]
struct Spend {
    run: i64,
    day: i64,
    /// Day number (since the epoch) `day` is for.
    today: i64,
    reserved: i64,
}

impl InMemoryBudget {
    pub fn new(config: &BudgetConfig) -> Self {
        Self {
            per_run: config.per_run_usd.map(usd_to_micros),
            per_day: config.per_day_usd.map(usd_to_micros),
            state: Mutex::new(Spend::default()),
        }
    }

    /// µUSD spent in this run so far.
    pub fn spent(&self) -> i64 {
        self.state.lock().expect("budget lock").run
    }
}

impl Budget for InMemoryBudget {
    fn reserve(&self, amount: i64, now: Micros) -> BoxFuture<'_, bool> {
        let mut s = self.state.lock().expect("budget lock");
        let today = now.div_euclid(DAY);
        if s.today != today {
            s.today = today;
            s.day = 0;
        }
        let fits =
            |spent: i64, cap: Option<i64>| cap.is_none_or(|cap| spent + s.reserved + amount <= cap);
        let ok = fits(s.run, self.per_run) && fits(s.day, self.per_day);
        if ok {
            s.reserved += amount;
        }
        Box::pin(std::future::ready(ok))
    }

    fn settle(&self, reserved: i64, spent: i64, now: Micros) -> BoxFuture<'_, ()> {
        let mut s = self.state.lock().expect("budget lock");
        s.reserved -= reserved;
        s.run += spent;
        if s.today == now.div_euclid(DAY) {
            s.day += spent;
        }
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;

    #[test]
    fn reservations_count_until_settled() {
        let b = InMemoryBudget::new(&BudgetConfig {
            per_run_usd: Some(0.10),
            per_day_usd: None,
        });
        assert!(block_on(b.reserve(60_000, 0)));
        assert!(
            !block_on(b.reserve(60_000, 0)),
            "the first reservation is outstanding"
        );
        block_on(b.settle(60_000, 10_000, 0));
        assert!(block_on(b.reserve(60_000, 0)));
        block_on(b.settle(60_000, 60_000, 0));
        assert_eq!(b.spent(), 70_000);
        assert!(block_on(b.reserve(30_000, 0)));
        assert!(!block_on(b.reserve(1, 0)));
    }

    #[test]
    fn the_day_cap_resets_at_midnight_utc() {
        let b = InMemoryBudget::new(&BudgetConfig {
            per_run_usd: None,
            per_day_usd: Some(1.0),
        });
        assert!(block_on(b.reserve(1_000_000, DAY - 1)));
        block_on(b.settle(1_000_000, 1_000_000, DAY - 1));
        assert!(!block_on(b.reserve(1, DAY - 1)));
        assert!(block_on(b.reserve(1, DAY)));
    }
}
