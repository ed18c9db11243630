//! Idempotency keys shared by the fleet (`leadflow serve`'s
//! `Idempotency-Key`): the first request under a key runs; a retry with the
//! same body gets the first answer again and pays nothing; another body
//! under the key, or a retry while the first still runs, is told so.
//!
//! `P:idem:{SCOPE}:KEY` (a string) holds `r FINGERPRINT` while the first
//! request runs (for a bounded time, so a server killed mid-request does not
//! lock the key for a day), then `d FINGERPRINT STATUS\nBODY` for a day.

use std::sync::Arc;
use std::time::Duration;

use redis::cmd;

use crate::conn::{Failed, Redis};

/// What a request under an idempotency key is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// It is the first: run it, then [`IdempotencyKeys::finish`] (or
    /// [`IdempotencyKeys::release`] when it failed).
    First,
    /// The first is still running.
    Running,
    /// The first ran with this body: its answer.
    Done { status: u16, body: Vec<u8> },
    /// The key was used with another body.
    OtherBody,
}

/// The fleet's idempotency keys.
#[derive(Debug, Clone)]
pub struct IdempotencyKeys {
    redis: Arc<Redis>,
}

impl IdempotencyKeys {
    pub(crate) fn new(redis: Arc<Redis>) -> Self {
        Self { redis }
    }

    fn key(&self, scope: &str, key: &str) -> String {
        self.redis.keys().idempotency(scope, key)
    }

    /// Claims `key` in `scope` for a request whose body has `fingerprint`,
    /// for at most `running` (then a retry may run it again).
    pub async fn claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        running: Duration,
    ) -> Result<Claimed, String> {
        let at = self.key(scope, key);
        // A key released between the SET and the GET is claimed again.
        for _ in 0..3 {
            let set: Option<String> = self
                .redis
                .try_query(
                    cmd("SET")
                        .arg(&at)
                        .arg(format!("r {fingerprint}"))
                        .arg("NX")
                        .arg("PX")
                        .arg(running.as_millis() as u64),
                )
                .await
                .map_err(said)?;
            if set.is_some() {
                return Ok(Claimed::First);
            }
            let held: Option<Vec<u8>> = self
                .redis
                .try_query(cmd("GET").arg(&at))
                .await
                .map_err(said)?;
            if let Some(held) = held {
                return Ok(read(&held, fingerprint));
            }
        }
        Ok(Claimed::Running)
    }

    /// Keeps the first request's answer for `keep`.
    pub async fn finish(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        (status, body): (u16, &[u8]),
        keep: Duration,
    ) -> Result<(), String> {
        let mut value = format!("d {fingerprint} {status}\n").into_bytes();
        value.extend_from_slice(body);
        self.redis
            .try_query::<()>(
                cmd("SET")
                    .arg(self.key(scope, key))
                    .arg(value)
                    .arg("PX")
                    .arg(keep.as_millis() as u64),
            )
            .await
            .map_err(said)
    }

    /// Frees `key` after its first request failed: a retry runs again.
    pub async fn release(&self, scope: &str, key: &str) {
        let _: Option<i64> = self.redis.query(cmd("DEL").arg(self.key(scope, key))).await;
    }
}

/// Why the idempotency key could not be kept, in Redis's words.
fn said(failed: Failed) -> String {
    match failed {
        Failed::NotApplied => "Redis is not answering".into(),
        Failed::Unknown => "Redis did not answer in time".into(),
        Failed::Refused(said) => format!("Redis says {said}"),
    }
}

/// What a held value says to a request with `fingerprint`.
fn read(held: &[u8], fingerprint: &str) -> Claimed {
    let (head, body) = match held.iter().position(|&b| b == b'\n') {
        Some(i) => (&held[..i], &held[i + 1..]),
        None => (held, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut words = head.split(' ');
    let (state, theirs) = (words.next(), words.next());
    if theirs != Some(fingerprint) {
        return Claimed::OtherBody;
    }
    match (state, words.next().and_then(|s| s.parse().ok())) {
        (Some("d"), Some(status)) => Claimed::Done {
            status,
            body: body.to_vec(),
        },
        _ => Claimed::Running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_value_says_running_done_or_another_body() {
        assert_eq!(read(b"r abc", "abc"), Claimed::Running);
        assert_eq!(read(b"r abc", "abd"), Claimed::OtherBody);
        assert_eq!(
            read(b"d abc 200\n{\"a\":\n1}", "abc"),
            Claimed::Done {
                status: 200,
                body: b"{\"a\":\n1}".to_vec()
            }
        );
        assert_eq!(read(b"d abd 200\n{}", "abc"), Claimed::OtherBody);
    }
}
