//! Call limits per provider over a sliding window (an hour unless
//! `lookup.rate_window_secs` says otherwise): the [`RateLimiter`] trait and
//! its in-memory implementation (leadflow-fleet's Redis one shares limits
//! across workers).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;

use futures::future::BoxFuture;

use crate::clock::Micros;

/// Grants calls to a provider within a sliding window.
pub trait RateLimiter: Send + Sync + Debug {
    /// Takes one call from `provider`'s window when fewer than `limit` were
    /// taken in the `window` before `now`; `false` otherwise.
    fn try_acquire<'a>(
        &'a self,
        provider: &'a str,
        limit: u32,
        window: Micros,
        now: Micros,
    ) -> BoxFuture<'a, bool>;

    /// As [`Self::try_acquire`], without holding permits back from other
    /// processes (a shared limiter asks for one permit per round trip, where
    /// it would lease many): the fleet together admits exactly `limit` in
    /// the window. For limits whose refusals someone sees, such as an API
    /// key's requests.
    fn try_acquire_exact<'a>(
        &'a self,
        name: &'a str,
        limit: u32,
        window: Micros,
        now: Micros,
    ) -> BoxFuture<'a, bool> {
        self.try_acquire(name, limit, window, now)
    }

    /// Hands back whatever is held and not used (a shared limiter's leases),
    /// at the end of a run.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

const SECOND: Micros = 1_000_000;

/// A sliding window at one-second resolution: one counter per second of the
/// window per provider, so memory stays fixed however many calls are made.
#[derive(Debug, Default)]
pub struct InMemoryRateLimiter {
    windows: Mutex<HashMap<String, Window>>,
}

#[derive(Debug)]
struct Window {
    counts: Box<[u32]>,
    /// The second the newest slot stands for.
    head: i64,
    total: u64,
}

impl Window {
    fn new(seconds: usize, now_sec: i64) -> Self {
        Self {
            counts: vec![0; seconds].into_boxed_slice(),
            head: now_sec,
            total: 0,
        }
    }

    fn slot(&self, sec: i64) -> usize {
        sec.rem_euclid(self.counts.len() as i64) as usize
    }

    /// Moves the window to `now_sec`, forgetting seconds that left it.
    fn advance(&mut self, now_sec: i64) {
        if now_sec <= self.head {
            return;
        }
        let steps = (now_sec - self.head).min(self.counts.len() as i64);
        for s in 1..=steps {
            let slot = self.slot(self.head + s);
            self.total -= u64::from(self.counts[slot]);
            self.counts[slot] = 0;
        }
        self.head = now_sec;
    }
}

impl RateLimiter for InMemoryRateLimiter {
    fn try_acquire<'a>(
        &'a self,
        provider: &'a str,
        limit: u32,
        window: Micros,
        now: Micros,
    ) -> BoxFuture<'a, bool> {
        let now_sec = now.div_euclid(SECOND);
        let seconds = (window / SECOND).max(1) as usize;
        let mut windows = self.windows.lock().expect("rate limiter lock");
        let window = match windows.get_mut(provider) {
            Some(w) if w.counts.len() == seconds => w,
            _ => windows
                .entry(provider.to_string())
                .insert_entry(Window::new(seconds, now_sec))
                .into_mut(),
        };
        window.advance(now_sec);
        let granted = window.total < u64::from(limit);
        if granted {
            let slot = window.slot(now_sec);
            window.counts[slot] += 1;
            window.total += 1;
        }
        Box::pin(std::future::ready(granted))
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;

    const HOUR: Micros = 3_600 * SECOND;

    #[test]
    fn the_window_slides_with_the_clock() {
        let limiter = InMemoryRateLimiter::default();
        let t0: Micros = 1_000 * SECOND;
        let take = |at: Micros| block_on(limiter.try_acquire("orion", 3, HOUR, at));
        assert!(take(t0));
        assert!(take(t0 + 10 * SECOND));
        assert!(take(t0 + 20 * SECOND));
        assert!(!take(t0 + 30 * SECOND), "4th call within the hour");
        assert!(
            !take(t0 + 3599 * SECOND),
            "t0's call is still inside the hour"
        );
        assert!(take(t0 + 3600 * SECOND), "t0's call has left the window");
        assert!(!take(t0 + 3605 * SECOND));
        assert!(take(t0 + 3610 * SECOND), "t0+10's call has left the window");
        assert!(
            block_on(limiter.try_acquire("astra", 3, HOUR, t0)),
            "providers have their own windows"
        );
    }

    #[test]
    fn a_long_idle_gap_empties_the_window() {
        let limiter = InMemoryRateLimiter::default();
        for _ in 0..5 {
            assert!(block_on(limiter.try_acquire("p", 5, HOUR, 0)));
        }
        assert!(!block_on(limiter.try_acquire("p", 5, HOUR, 0)));
        assert!(block_on(limiter.try_acquire(
            "p",
            5,
            HOUR,
            10 * 3600 * SECOND
        )));
    }
}
