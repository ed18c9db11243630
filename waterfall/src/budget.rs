//! Spend caps: a call reserves its most expensive outcome before it goes
//! out and settles the real cost after, so concurrent calls cannot together
//! overshoot a cap.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;

use futures::future::BoxFuture;

use crate::clock::Micros;
use crate::config::{BudgetConfig, usd_to_micros};

pub(crate) const DAY: Micros = 86_400 * 1_000_000;

/// Who a call is paid for: the lead's organization, for the per-organization cap.
pub type Org<'a> = Option<&'a str>;

/// µUSD set aside for one call until it is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub amount: i64,
    /// Where the budget keeps it (its own business: a shared budget that
    /// lost its server reserves locally).
    pub shared: bool,
}

pub trait Budget: Send + Sync + Debug {
    /// Reserves `amount` µUSD for a call on `org`'s behalf; `None` when that
    /// would pass a cap.
    fn reserve<'a>(
        &'a self,
        amount: i64,
        org: Org<'a>,
        now: Micros,
    ) -> BoxFuture<'a, Option<Reservation>>;
    /// Releases a reservation and spends `spent` instead.
    fn settle<'a>(
        &'a self,
        reservation: Reservation,
        spent: i64,
        org: Org<'a>,
        now: Micros,
    ) -> BoxFuture<'a, ()>;

    /// Books what is still held locally and hands back the rest, at the
    /// end of a run (a shared budget's chunk).
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// Caps per run, per UTC day and per organization per UTC day, in integer
/// µUSD, held in memory.
#[derive(Debug)]
pub struct InMemoryBudget {
    per_run: Option<i64>,
    per_day: Option<i64>,
    per_org_day: Option<i64>,
    state: Mutex<Spend>,
}

#[derive(Debug, Default)]
struct Spend {
    run: Tally,
    /// Day number (since the epoch) `day` and `orgs` are for.
    today: i64,
    day: Tally,
    orgs: HashMap<String, Tally>,
}

/// Spent and reserved, µUSD.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    spent: i64,
    reserved: i64,
}

impl Tally {
    fn fits(self, amount: i64, cap: Option<i64>) -> bool {
        cap.is_none_or(|cap| self.spent + self.reserved + amount <= cap)
    }
}

impl InMemoryBudget {
    pub fn new(config: &BudgetConfig) -> Self {
        Self {
            per_run: config.per_run_usd.map(usd_to_micros),
            per_day: config.per_day_usd.map(usd_to_micros),
            per_org_day: config.per_org_day_usd.map(usd_to_micros),
            state: Mutex::new(Spend::default()),
        }
    }

    /// µUSD spent in this run so far.
    pub fn spent(&self) -> i64 {
        self.state.lock().expect("budget lock").run.spent
    }

    /// Reserves against the run cap only (for a budget that keeps the day
    /// caps elsewhere).
    pub fn reserve_run(&self, amount: i64) -> bool {
        let mut s = self.state.lock().expect("budget lock");
        let ok = s.run.fits(amount, self.per_run);
        if ok {
            s.run.reserved += amount;
        }
        ok
    }

    /// Settles against the run cap only.
    pub fn settle_run(&self, reserved: i64, spent: i64) {
        let mut s = self.state.lock().expect("budget lock");
        s.run.reserved -= reserved;
        s.run.spent += spent;
    }
}

impl Budget for InMemoryBudget {
    fn reserve<'a>(
        &'a self,
        amount: i64,
        org: Org<'a>,
        now: Micros,
    ) -> BoxFuture<'a, Option<Reservation>> {
        let mut s = self.state.lock().expect("budget lock");
        let today = now.div_euclid(DAY);
        if s.today != today {
            s.today = today;
            s.day = Tally::default();
            s.orgs.clear();
        }
        let org_tally = org.map(|o| s.orgs.get(o).copied().unwrap_or_default());
        let ok = s.run.fits(amount, self.per_run)
            && s.day.fits(amount, self.per_day)
            && org_tally.is_none_or(|t| t.fits(amount, self.per_org_day));
        if ok {
            s.run.reserved += amount;
            s.day.reserved += amount;
            if let Some(o) = org {
                s.orgs.entry(o.to_string()).or_default().reserved += amount;
            }
        }
        let reservation = ok.then_some(Reservation {
            amount,
            shared: false,
        });
        Box::pin(std::future::ready(reservation))
    }

    fn settle<'a>(
        &'a self,
        reservation: Reservation,
        spent: i64,
        org: Org<'a>,
        now: Micros,
    ) -> BoxFuture<'a, ()> {
        let reserved = reservation.amount;
        let mut s = self.state.lock().expect("budget lock");
        s.run.reserved -= reserved;
        s.run.spent += spent;
        // A reservation made before midnight was forgotten with its day.
        if s.today == now.div_euclid(DAY) {
            s.day.reserved -= reserved;
            s.day.spent += spent;
            if let Some(t) = org.and_then(|o| s.orgs.get_mut(o)) {
                t.reserved -= reserved;
                t.spent += spent;
            }
        }
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;

    fn reserve(b: &InMemoryBudget, amount: i64, org: Org<'_>, now: Micros) -> bool {
        block_on(b.reserve(amount, org, now)).is_some()
    }

    fn spend(b: &InMemoryBudget, reserved: i64, spent: i64, org: Org<'_>, now: Micros) {
        let r = Reservation {
            amount: reserved,
            shared: false,
        };
        block_on(b.settle(r, spent, org, now));
    }

    #[test]
    fn reservations_count_until_settled() {
        let b = InMemoryBudget::new(&BudgetConfig {
            per_run_usd: Some(0.10),
            ..Default::default()
        });
        assert!(reserve(&b, 60_000, None, 0));
        assert!(
            !reserve(&b, 60_000, None, 0),
            "the first reservation is outstanding"
        );
        spend(&b, 60_000, 10_000, None, 0);
        assert!(reserve(&b, 60_000, None, 0));
        spend(&b, 60_000, 60_000, None, 0);
        assert_eq!(b.spent(), 70_000);
        assert!(reserve(&b, 30_000, None, 0));
        assert!(!reserve(&b, 1, None, 0));
    }

    #[test]
    fn the_day_cap_resets_at_midnight_utc() {
        let b = InMemoryBudget::new(&BudgetConfig {
            per_day_usd: Some(1.0),
            ..Default::default()
        });
        assert!(reserve(&b, 1_000_000, None, DAY - 1));
        spend(&b, 1_000_000, 1_000_000, None, DAY - 1);
        assert!(!reserve(&b, 1, None, DAY - 1));
        assert!(reserve(&b, 1, None, DAY));
    }

    #[test]
    fn each_organization_has_its_own_day_cap() {
        let b = InMemoryBudget::new(&BudgetConfig {
            per_org_day_usd: Some(0.5),
            ..Default::default()
        });
        assert!(reserve(&b, 400_000, Some("acme"), 0));
        spend(&b, 400_000, 400_000, Some("acme"), 0);
        assert!(!reserve(&b, 200_000, Some("acme"), 0));
        assert!(reserve(&b, 200_000, Some("globex"), 0));
        assert!(reserve(&b, 100_000, Some("acme"), 0), "to the µUSD");
        assert!(reserve(&b, 200_000, None, 0), "no organization, no org cap");
    }
}
