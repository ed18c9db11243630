//! Circuit breakers: a provider that keeps failing is skipped for a while,
//! then one probe call decides whether it is back.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::sync::Mutex;

use futures::future::BoxFuture;

use crate::clock::Micros;
use crate::config::BreakerConfig;

pub trait CircuitBreaker: Send + Sync + Debug {
    /// Whether a call to `provider` may go out now. A half-open circuit lets
    /// exactly one probe through.
    fn allows<'a>(&'a self, provider: &'a str, now: Micros) -> BoxFuture<'a, bool>;
    /// Records how a call went: a success closes the circuit; failures open it.
    fn record<'a>(&'a self, provider: &'a str, success: bool, now: Micros) -> BoxFuture<'a, ()>;
}

#[derive(Debug)]
pub struct InMemoryCircuitBreaker {
    failures: usize,
    window: Micros,
    cooldown: Micros,
    circuits: Mutex<HashMap<String, Circuit>>,
}

#[derive(Debug, Default)]
struct Circuit {
    /// When recent failures happened, at most `failures` of them.
    failed_at: VecDeque<Micros>,
    open_until: Option<Micros>,
    /// While a probe is out: until when it may take (a probe whose call
    /// never went out, say refused by the rate limit, frees the circuit
    /// for another probe then).
    probing: Option<Micros>,
}

impl InMemoryCircuitBreaker {
    pub fn new(config: &BreakerConfig) -> Self {
        Self {
            failures: config.failures.max(1) as usize,
            window: config.window_secs as i64 * 1_000_000,
            cooldown: config.cooldown_secs as i64 * 1_000_000,
            circuits: Mutex::new(HashMap::new()),
        }
    }
}

impl CircuitBreaker for InMemoryCircuitBreaker {
    fn allows<'a>(&'a self, provider: &'a str, now: Micros) -> BoxFuture<'a, bool> {
        let mut circuits = self.circuits.lock().expect("breaker lock");
        let allowed = match circuits.get_mut(provider) {
            None => true,
            Some(c) => match c.open_until {
                None => true,
                Some(until) if now < until => false,
                // Cooldown over: half-open, one probe at a time.
                Some(_) if c.probing.is_some_and(|until| now < until) => false,
                Some(_) => {
                    c.probing = Some(now + self.window);
                    true
                }
            },
        };
        Box::pin(std::future::ready(allowed))
    }

    fn record<'a>(&'a self, provider: &'a str, success: bool, now: Micros) -> BoxFuture<'a, ()> {
        let mut circuits = self.circuits.lock().expect("breaker lock");
        if success {
            if let Some(c) = circuits.get_mut(provider) {
                *c = Circuit::default();
            }
        } else {
            let c = circuits.entry(provider.to_string()).or_default();
            if c.probing.is_some() {
                c.probing = None;
                c.open_until = Some(now + self.cooldown);
            } else {
                while c.failed_at.front().is_some_and(|t| *t <= now - self.window) {
                    c.failed_at.pop_front();
                }
                c.failed_at.push_back(now);
                if c.failed_at.len() >= self.failures {
                    c.failed_at.clear();
                    c.open_until = Some(now + self.cooldown);
                    tracing::warn!(
                        provider,
                        cooldown_secs = self.cooldown / 1_000_000,
                        "circuit opened: provider keeps failing"
                    );
                }
            }
        }
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;

    const S: Micros = 1_000_000;

    #[test]
    fn opens_after_n_failures_in_the_window_then_probes_once() {
        let b = InMemoryCircuitBreaker::new(&BreakerConfig {
            failures: 3,
            window_secs: 60,
            cooldown_secs: 30,
        });
        let fail = |t| block_on(b.record("p", false, t));
        fail(0);
        fail(10 * S);
        fail(61 * S); // the first has left the window
        assert!(block_on(b.allows("p", 62 * S)));
        fail(62 * S);
        assert!(!block_on(b.allows("p", 63 * S)), "open");
        assert!(!block_on(b.allows("p", 91 * S)), "still cooling down");
        assert!(block_on(b.allows("p", 92 * S)), "the probe");
        assert!(!block_on(b.allows("p", 92 * S)), "only one probe");
        fail(93 * S);
        assert!(!block_on(b.allows("p", 100 * S)), "a failed probe reopens");
        assert!(block_on(b.allows("p", 123 * S)));
        assert!(!block_on(b.allows("p", 182 * S)), "the probe is out");
        assert!(
            block_on(b.allows("p", 183 * S)),
            "a probe never recorded frees the circuit a window later"
        );
        block_on(b.record("p", true, 184 * S));
        assert!(block_on(b.allows("p", 184 * S)), "a good probe closes");
        assert!(block_on(b.allows("q", 0)), "circuits are per provider");
    }
}
