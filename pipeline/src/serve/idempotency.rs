//! `Idempotency-Key` (the IETF draft): a retry of a request under the same
//! key and with the same body gets the first answer again, and pays no
//! provider again; the key with another body is 422; a retry while the
//! first still runs is 409. Kept a day, per API key: in Redis when the
//! config has one (every server sees them), else in this process.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use leadflow_fleet::idempotency::{Claimed, IdempotencyKeys};

/// How long an answer is replayed.
pub(crate) const KEEP: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a first request holds its key (a server killed mid-request
/// frees it after this).
pub(crate) const RUNNING: Duration = Duration::from_secs(5 * 60);
/// Keys one process keeps without Redis (the oldest go first past it).
const MAX_IN_MEMORY: usize = 100_000;

pub(crate) enum Store {
    Fleet(IdempotencyKeys),
    Memory(Mutex<Memory>),
}

#[derive(Default)]
pub(crate) struct Memory {
    held: HashMap<(String, String), Held>,
    /// Keys by when they were first claimed, oldest first.
    order: VecDeque<(Instant, (String, String))>,
}

struct Held {
    /// When it was claimed: its place in `order`.
    since: Instant,
    fingerprint: String,
    until: Instant,
    answer: Option<(u16, Vec<u8>)>,
}

impl Store {
    pub(crate) fn memory() -> Self {
        Store::Memory(Mutex::new(Memory::default()))
    }

    pub(crate) async fn claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Claimed, String> {
        match self {
            Store::Fleet(keys) => keys.claim(scope, key, fingerprint, RUNNING).await,
            Store::Memory(memory) => {
                let mut memory = memory.lock().expect("idempotency lock");
                Ok(memory.claim(scope, key, fingerprint, Instant::now()))
            }
        }
    }

    pub(crate) async fn finish(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        answer: (u16, &[u8]),
    ) -> Result<(), String> {
        match self {
            Store::Fleet(keys) => keys.finish(scope, key, fingerprint, answer, KEEP).await,
            Store::Memory(memory) => {
                let mut memory = memory.lock().expect("idempotency lock");
                if let Some(held) = memory.held.get_mut(&(scope.to_string(), key.to_string())) {
                    held.answer = Some((answer.0, answer.1.to_vec()));
                    held.until = Instant::now() + KEEP;
                }
                Ok(())
            }
        }
    }

    pub(crate) async fn release(&self, scope: &str, key: &str) {
        match self {
            Store::Fleet(keys) => keys.release(scope, key).await,
            Store::Memory(memory) => {
                let mut memory = memory.lock().expect("idempotency lock");
                memory.held.remove(&(scope.to_string(), key.to_string()));
            }
        }
    }
}

impl Memory {
    fn claim(&mut self, scope: &str, key: &str, fingerprint: &str, now: Instant) -> Claimed {
        let id = (scope.to_string(), key.to_string());
        if let Some(held) = self.held.get(&id).filter(|h| h.until > now) {
            return if held.fingerprint != fingerprint {
                Claimed::OtherBody
            } else {
                match &held.answer {
                    Some((status, body)) => Claimed::Done {
                        status: *status,
                        body: body.clone(),
                    },
                    None => Claimed::Running,
                }
            };
        }
        // Forget what has expired, and the oldest past the cap.
        while let Some((since, old)) = self.order.front() {
            let live = self.held.get(old).filter(|h| h.since == *since);
            let expired = live.is_none_or(|h| h.until <= now);
            if !expired && self.order.len() < MAX_IN_MEMORY {
                break;
            }
            let (since, old) = self.order.pop_front().expect("a front");
            if self.held.get(&old).is_some_and(|h| h.since == since) {
                self.held.remove(&old);
            }
        }
        self.held.insert(
            id.clone(),
            Held {
                since: now,
                fingerprint: fingerprint.to_string(),
                until: now + RUNNING,
                answer: None,
            },
        );
        self.order.push_back((now, id));
        Claimed::First
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_runs_once_replays_its_answer_and_refuses_another_body() {
        let store = Store::memory();
        assert_eq!(store.claim("crm", "k1", "fp").await, Ok(Claimed::First));
        assert_eq!(store.claim("crm", "k1", "fp").await, Ok(Claimed::Running));
        assert_eq!(
            store.claim("crm", "k1", "other").await,
            Ok(Claimed::OtherBody)
        );
        // Another API key's is its own.
        assert_eq!(store.claim("erp", "k1", "fp").await, Ok(Claimed::First));
        store.finish("crm", "k1", "fp", (200, b"{}")).await.unwrap();
        assert_eq!(
            store.claim("crm", "k1", "fp").await,
            Ok(Claimed::Done {
                status: 200,
                body: b"{}".to_vec()
            })
        );
        // A first request that failed frees its key.
        store.release("erp", "k1").await;
        assert_eq!(store.claim("erp", "k1", "fp2").await, Ok(Claimed::First));
    }

    #[test]
    fn a_running_key_is_freed_after_a_while() {
        let mut memory = Memory::default();
        let now = Instant::now();
        assert_eq!(memory.claim("crm", "k", "fp", now), Claimed::First);
        let later = now + RUNNING + Duration::from_secs(1);
        assert_eq!(memory.claim("crm", "k", "fp", later), Claimed::First);
        assert_eq!(memory.held.len(), 1);
    }
}
