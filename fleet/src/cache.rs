//! The lookup cache shared by the fleet: each provider's answer per lead
//! (`P:answer:{LEAD}:NAME`, with the cache TTL), and who is asking now
//! (`P:asking:{LEAD}:NAME`, `SET NX PX`), so two workers asking about the
//! same lead at the same moment pay once.
//!
//! Reads from every lookup in flight are gathered into one pipelined round
//! trip (one `MGET` per lead). Answers this worker paid for are also kept
//! in memory (bounded by `cache.max_entries`), so they are read without a
//! round trip and still known while Redis is gone.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures::future::BoxFuture;
use leadflow_waterfall::{
    CacheKey, Claim, InMemoryLookupCache, LookupCache, Micros, ProviderAnswer,
};
use tokio::sync::{mpsc, oneshot};

use crate::conn::Redis;
use redis::Script;

/// Reads the answer and, when there is none, claims the question: one
/// atomic step, so an answer written a moment ago is never paid for again.
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/claim.lua")));

/// Most reads sent in one round trip.
const BATCH: usize = 1_024;

/// A [`LookupCache`] in Redis, written through to memory.
#[derive(Debug)]
pub struct RedisLookupCache {
    redis: Arc<Redis>,
    local: InMemoryLookupCache,
    reads: mpsc::UnboundedSender<Read>,
}

/// One lead's keys to read, and where the values go (`None`: Redis did not answer).
#[derive(Debug)]
struct Read {
    keys: Vec<String>,
    reply: oneshot::Sender<Option<Vec<Option<String>>>>,
}

impl RedisLookupCache {
    pub(crate) fn new(redis: Arc<Redis>, max_entries: usize) -> Self {
        let (reads, rx) = mpsc::unbounded_channel();
        tokio::spawn(read_in_batches(redis.clone(), rx));
        Self {
            redis,
            local: InMemoryLookupCache::new(max_entries),
            reads,
        }
    }

    /// Reads many leads' answers in one round trip: for each lead, what each
    /// of `providers` answered. Leads whose read failed get `None`s.
    pub async fn answers_of_many(
        &self,
        leads: &[CacheKey],
        providers: &[Arc<str>],
    ) -> Vec<Vec<Option<ProviderAnswer>>> {
        let keys = self.redis.keys();
        let lead_keys = leads.iter().map(|&lead| {
            providers
                .iter()
                .map(|p| keys.answer(lead, p))
                .collect::<Vec<_>>()
        });
        match mget_each(&self.redis, lead_keys).await {
            Some(values) => values
                .into_iter()
                .map(|v| v.iter().map(|s| s.as_deref().and_then(decode)).collect())
                .collect(),
            None => vec![vec![None; providers.len()]; leads.len()],
        }
    }
}

/// One `MGET` per key list, all in one round trip; `None` when Redis did
/// not answer.
async fn mget_each<K: redis::ToRedisArgs>(
    redis: &Redis,
    key_lists: impl Iterator<Item = K>,
) -> Option<Vec<Vec<Option<String>>>> {
    let mut pipe = redis::pipe();
    for keys in key_lists {
        pipe.cmd("MGET").arg(keys);
    }
    redis.pipe(&pipe).await
}

/// Gathers the reads waiting at once into one pipeline.
async fn read_in_batches(redis: Arc<Redis>, mut rx: mpsc::UnboundedReceiver<Read>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let values = mget_each(&redis, batch.iter().map(|read| &read.keys)).await;
        match values {
            Some(values) => {
                for (read, v) in batch.drain(..).zip(values) {
                    let _ = read.reply.send(Some(v));
                }
            }
            None => {
                for read in batch.drain(..) {
                    let _ = read.reply.send(None);
                }
            }
        }
    }
}

fn encode(answer: &ProviderAnswer) -> String {
    match answer {
        ProviderAnswer::Found(e164) => format!("f {e164}"),
        ProviderAnswer::NotFound => "n".into(),
    }
}

fn decode(value: &str) -> Option<ProviderAnswer> {
    match value.split_once(' ') {
        Some(("f", e164)) => Some(ProviderAnswer::Found(e164.into())),
        _ if value == "n" => Some(ProviderAnswer::NotFound),
        _ => None,
    }
}

impl LookupCache for RedisLookupCache {
    fn answers<'a>(
        &'a self,
        key: CacheKey,
        providers: &'a [Arc<str>],
        now: Micros,
    ) -> BoxFuture<'a, Vec<Option<ProviderAnswer>>> {
        Box::pin(async move {
            let mut answers: Vec<_> = providers
                .iter()
                .map(|p| self.local.answer(key, p, now))
                .collect();
            if answers.iter().all(Option::is_some) || !self.redis.online() {
                return answers;
            }
            let keys = self.redis.keys();
            let (reply, rx) = oneshot::channel();
            let read = Read {
                keys: providers.iter().map(|p| keys.answer(key, p)).collect(),
                reply,
            };
            if self.reads.send(read).is_err() {
                return answers;
            }
            if let Ok(Some(values)) = rx.await {
                for (answer, value) in answers.iter_mut().zip(values) {
                    if answer.is_none() {
                        *answer = value.as_deref().and_then(decode);
                    }
                }
            }
            answers
        })
    }

    fn remember<'a>(
        &'a self,
        key: CacheKey,
        provider: &'a str,
        answer: ProviderAnswer,
        now: Micros,
        ttl: Duration,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let keys = self.redis.keys();
            let ttl_ms = ttl.as_millis().min(i64::MAX as u128) as i64;
            let mut pipe = redis::pipe();
            if ttl_ms > 0 {
                pipe.cmd("SET")
                    .arg(keys.answer(key, provider))
                    .arg(encode(&answer))
                    .arg("PX")
                    .arg(ttl_ms)
                    .ignore();
            }
            pipe.cmd("DEL").arg(keys.asking(key, provider)).ignore();
            let _: Option<()> = self.redis.pipe(&pipe).await;
            self.local.remember(key, provider, answer, now, ttl).await;
        })
    }

    fn claim<'a>(
        &'a self,
        key: CacheKey,
        provider: &'a str,
        now: Micros,
        until: Micros,
    ) -> BoxFuture<'a, Claim> {
        Box::pin(async move {
            if let Some(answer) = self.local.answer(key, provider, now) {
                return Claim::Answered(answer);
            }
            let keys = self.redis.keys();
            let question = [keys.answer(key, provider), keys.asking(key, provider)];
            let args = [
                self.redis.worker().to_string(),
                ((until - now) / 1_000).max(1).to_string(),
            ];
            match self
                .redis
                .script::<(i64, String)>(&CLAIM, &question, &args)
                .await
            {
                Some((1, _)) => Claim::Granted,
                Some((2, value)) => decode(&value).map_or(Claim::Granted, Claim::Answered),
                Some(_) => Claim::Held,
                // Offline: nobody to wait for, so this worker asks.
                None => Claim::Granted,
            }
        })
    }

    fn unclaim<'a>(&'a self, key: CacheKey, provider: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut del = redis::cmd("DEL");
            del.arg(self.redis.keys().asking(key, provider));
            let _: Option<i64> = self.redis.query(&del).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_back_as_written() {
        for a in [
            ProviderAnswer::Found("+14155550100".into()),
            ProviderAnswer::NotFound,
        ] {
            assert_eq!(decode(&encode(&a)), Some(a));
        }
        assert_eq!(decode("x"), None);
    }
}
