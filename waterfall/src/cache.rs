//! Lookup results kept so a lead is never paid for twice: the
//! [`LookupCache`] trait, its key, and the in-memory implementation.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use xxhash_rust::xxh3::Xxh3;

use crate::clock::Micros;

/// Identifies a lead to the cache: a hash of its normalized email, full name
/// and company website.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(pub u128);

impl CacheKey {
    /// `None` when the lead has none of the three: nothing to look up by.
    pub fn new(email: &str, full_name: &str, company_website: &str) -> Option<Self> {
        let email = email.trim();
        let website = website_host(company_website);
        let mut name_words = full_name.split_whitespace().peekable();
        if email.is_empty() && website.is_empty() && name_words.peek().is_none() {
            return None;
        }
        let mut h = Xxh3::new();
        for c in email.chars().flat_map(char::to_lowercase) {
            h.update(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
        h.update(b"\0");
        for (i, word) in name_words.enumerate() {
            if i > 0 {
                h.update(b" ");
            }
            for c in word.chars().flat_map(char::to_lowercase) {
                h.update(c.encode_utf8(&mut [0; 4]).as_bytes());
            }
        }
        h.update(b"\0");
        for c in website.chars().flat_map(char::to_lowercase) {
            h.update(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
        Some(CacheKey(h.digest128()))
    }
}

impl CacheKey {
    /// Identifies a phone number (E.164) to the cache, for what line-type
    /// providers say about it; never equal to a lead's key (another domain
    /// of the hash).
    pub fn of_number(e164: &str) -> Self {
        let mut h = Xxh3::new();
        h.update(b"number\0");
        h.update(e164.trim().as_bytes());
        CacheKey(h.digest128())
    }
}

/// `https://www.Acme.com/about` → `Acme.com`: the host, without scheme, `www.`,
/// port or path.
pub fn website_host(website: &str) -> &str {
    let w = website.trim();
    let w = w.split_once("://").map_or(w, |(_, rest)| rest);
    let w = w.split(['/', '?', '#']).next().unwrap_or("");
    let w = w.split(':').next().unwrap_or("");
    let w = w
        .strip_prefix("www.")
        .or_else(|| w.strip_prefix("WWW."))
        .unwrap_or(w);
    w.trim_end_matches('.')
}

/// What one provider answered about a lead, remembered so it is not asked
/// (and paid) again within the TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderAnswer {
    /// A valid phone, E.164.
    Found(Arc<str>),
    /// The provider had none (or answered one that is not valid).
    NotFound,
}

/// How a claim on a question went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours: ask the provider.
    Granted,
    /// Another worker is asking it now.
    Held,
    /// Answered already.
    Answered(ProviderAnswer),
}

/// Providers' answers per lead, and who is asking right now.
///
/// Answers are kept per (lead, provider): a lead whose waterfall skipped a
/// provider (tier, circuit, window) later asks only the providers not yet
/// asked. A *claim* marks a (lead, provider) question as in flight, so two
/// lookups of the same lead at the same moment pay once: the second waits
/// for the first one's answer.
pub trait LookupCache: Send + Sync + Debug {
    /// What each of `providers` answered about the lead, where remembered
    /// (in `providers`' order).
    fn answers<'a>(
        &'a self,
        key: CacheKey,
        providers: &'a [Arc<str>],
        now: Micros,
    ) -> BoxFuture<'a, Vec<Option<ProviderAnswer>>>;

    /// Remembers `provider`'s answer for `ttl` from `now`, and ends any
    /// claim on the question.
    fn remember<'a>(
        &'a self,
        key: CacheKey,
        provider: &'a str,
        answer: ProviderAnswer,
        now: Micros,
        ttl: Duration,
    ) -> BoxFuture<'a, ()>;

    /// Claims the question "does `provider` know this lead's phone?" until
    /// `until`, unless it was answered meanwhile or another worker holds it;
    /// atomically, so an answer written just before is never missed.
    fn claim<'a>(
        &'a self,
        key: CacheKey,
        provider: &'a str,
        now: Micros,
        until: Micros,
    ) -> BoxFuture<'a, Claim>;

    /// Gives up a claim whose question got no answer (the call failed).
    fn unclaim<'a>(&'a self, key: CacheKey, provider: &'a str) -> BoxFuture<'a, ()>;
}

/// A bounded in-memory cache: at most `max_entries` answers, the oldest
/// evicted first.
#[derive(Debug)]
pub struct InMemoryLookupCache {
    max_entries: usize,
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<(CacheKey, Arc<str>), (ProviderAnswer, Micros)>,
    order: VecDeque<(CacheKey, Arc<str>)>,
}

impl InMemoryLookupCache {
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries,
            inner: Mutex::new(Entries::default()),
        }
    }

    /// Answers held.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("cache lock").map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The answer held for (`key`, `provider`), if any and not expired;
    /// for write-through caches that consult memory first.
    pub fn answer(&self, key: CacheKey, provider: &str, now: Micros) -> Option<ProviderAnswer> {
        let inner = self.inner.lock().expect("cache lock");
        inner
            .map
            .get(&(key, Arc::from(provider)))
            .filter(|(_, expires)| *expires > now)
            .map(|(answer, _)| answer.clone())
    }

    /// Keeps an answer, evicting the oldest past `max_entries`.
    pub fn insert(&self, key: CacheKey, provider: &str, answer: ProviderAnswer, expires: Micros) {
        if self.max_entries == 0 {
            return;
        }
        let mut inner = self.inner.lock().expect("cache lock");
        let id = (key, Arc::<str>::from(provider));
        if inner.map.insert(id.clone(), (answer, expires)).is_none() {
            inner.order.push_back(id);
            while inner.map.len() > self.max_entries {
                let Some(old) = inner.order.pop_front() else {
                    break;
                };
                inner.map.remove(&old);
            }
        }
    }
}

impl LookupCache for InMemoryLookupCache {
    fn answers<'a>(
        &'a self,
        key: CacheKey,
        providers: &'a [Arc<str>],
        now: Micros,
    ) -> BoxFuture<'a, Vec<Option<ProviderAnswer>>> {
        let answers = providers.iter().map(|p| self.answer(key, p, now)).collect();
        Box::pin(std::future::ready(answers))
    }

    fn remember<'a>(
        &'a self,
        key: CacheKey,
        provider: &'a str,
        answer: ProviderAnswer,
        now: Micros,
        ttl: Duration,
    ) -> BoxFuture<'a, ()> {
        let expires = now.saturating_add(ttl.as_micros().min(i64::MAX as u128) as i64);
        self.insert(key, provider, answer, expires);
        Box::pin(std::future::ready(()))
    }

    /// Granted unless answered: within one process the waterfall itself
    /// makes a second lookup of the same question wait for the first.
    fn claim<'a>(
        &'a self,
        key: CacheKey,
        provider: &'a str,
        now: Micros,
        _: Micros,
    ) -> BoxFuture<'a, Claim> {
        let claim = match self.answer(key, provider, now) {
            Some(answer) => Claim::Answered(answer),
            None => Claim::Granted,
        };
        Box::pin(std::future::ready(claim))
    }

    fn unclaim<'a>(&'a self, _: CacheKey, _: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;

    #[test]
    fn the_key_ignores_case_spacing_and_url_decoration() {
        let a = CacheKey::new("Ana@Acme.com ", "Ana  Silva", "https://www.acme.com/about");
        let b = CacheKey::new("ana@acme.com", " ana silva", "acme.com");
        assert_eq!(a, b);
        assert_ne!(a, CacheKey::new("ana@acme.com", "Ana Silva", "acme.io"));
        assert_eq!(CacheKey::new(" ", "", "https://"), None);
    }

    #[test]
    fn answers_are_per_provider_expire_and_the_oldest_are_evicted() {
        let cache = InMemoryLookupCache::new(2);
        let key = |i: u128| CacheKey(i);
        let providers: Vec<Arc<str>> = vec!["orion".into(), "astra".into()];
        let found = ProviderAnswer::Found("+14155550100".into());
        let us = Duration::from_micros;
        block_on(cache.remember(key(1), "astra", found.clone(), 0, us(100)));
        assert_eq!(
            block_on(cache.answers(key(1), &providers, 99)),
            vec![None, Some(found.clone())]
        );
        assert_eq!(
            block_on(cache.answers(key(1), &providers, 100)),
            vec![None, None],
            "expired"
        );
        block_on(cache.remember(key(2), "orion", ProviderAnswer::NotFound, 0, us(1_000)));
        block_on(cache.remember(key(3), "orion", ProviderAnswer::NotFound, 0, us(1_000)));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.answer(key(1), "astra", 0), None, "evicted first");
        assert!(cache.answer(key(3), "orion", 0).is_some());
    }
}
