//! Hourly call limits per provider: the [`RateLimiter`] trait and its
//! in-memory implementation (a Redis one shares limits across workers).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;

use futures::future::BoxFuture;

use crate::clock::Micros;

/// Grants calls to a provider within a sliding one-hour window.
pub trait RateLimiter: Send + Sync + Debug {
    /// Takes one call from `provider`'s window when fewer than
    /// `max_per_hour` were taken in the hour before `now`; `false` otherwise.
    fn try_acquire<'a>(
        &'a self,
        provider: &'a str,
        max_per_hour: u32,
        now: Micros,
    ) -> BoxFuture<'a, bool>;
}

const SLOTS: usize = 3600;
const SECOND: Micros = 1_000_000;

/// A sliding hour at one-second resolution: 3,600 counters per provider, so
/// memory stays fixed however many calls are made.
#[derive(Debug, Default)]
pub struct InMemoryRateLimiter {
    windows: Mutex<HashMap<String, Window>>,
}

#[derive(Debug)]
struct Window {
    counts: Box<[u32; SLOTS]>,
    /// The second the newest slot stands for.
    head: i64,
    total: u64,
}

impl Window {
    fn new(now_sec: i64) -> Self {
        Self {
            counts: Box::new([0; SLOTS]),
            head: now_sec,
            total: 0,
        }
    }

    /// Moves the window to `now_sec`, forgetting seconds older than an hour.
    fn advance(&mut self, now_sec: i64) {
        if now_sec <= self.head {
            return;
        }
        let steps = (now_sec - self.head).min(SLOTS as i64);
        for s in 1..=steps {
            let slot = (self.head + s).rem_euclid(SLOTS as i64) as usize;
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
        max_per_hour: u32,
        now: Micros,
    ) -> BoxFuture<'a, bool> {
        let now_sec = now.div_euclid(SECOND);
        let mut windows = self.windows.lock().expect("rate limiter lock");
        let window = match windows.get_mut(provider) {
            Some(w) => w,
            None => windows
                .entry(provider.to_string())
                .or_insert_with(|| Window::new(now_sec)),
        };
        window.advance(now_sec);
        let granted = window.total < u64::from(max_per_hour);
        if granted {
            window.counts[now_sec.rem_euclid(SLOTS as i64) as usize] += 1;
            window.total += 1;
        }
        Box::pin(std::future::ready(granted))
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;

    #[test]
    fn the_window_slides_with_the_clock() {
        let limiter = InMemoryRateLimiter::default();
        let t0: Micros = 1_000 * SECOND;
        let take = |at: Micros| block_on(limiter.try_acquire("orion", 3, at));
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
            block_on(limiter.try_acquire("astra", 3, t0)),
            "providers have their own windows"
        );
    }

    #[test]
    fn a_long_idle_gap_empties_the_window() {
        let limiter = InMemoryRateLimiter::default();
        for _ in 0..5 {
            assert!(block_on(limiter.try_acquire("p", 5, 0)));
        }
        assert!(!block_on(limiter.try_acquire("p", 5, 0)));
        assert!(block_on(limiter.try_acquire("p", 5, 10 * 3600 * SECOND)));
    }
}
