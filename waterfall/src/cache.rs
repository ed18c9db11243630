//! Lookup results kept so a lead is never paid for twice: the
//! [`LookupCache`] trait, its key, and the in-memory implementation.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

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

/// A remembered waterfall result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedLookup {
    /// The phone found (E.164) and who found it; `None` for a remembered miss.
    pub found: Option<(Arc<str>, Arc<str>)>,
}

pub trait LookupCache: Send + Sync + Debug {
    fn get(&self, key: CacheKey, now: Micros) -> BoxFuture<'_, Option<CachedLookup>>;
    fn put(&self, key: CacheKey, value: CachedLookup, expires_at: Micros) -> BoxFuture<'_, ()>;
}

/// A bounded in-memory cache: at most `max_entries`, the oldest evicted first.
#[derive(Debug)]
pub struct InMemoryLookupCache {
    max_entries: usize,
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<CacheKey, (CachedLookup, Micros)>,
    order: VecDeque<CacheKey>,
}

impl InMemoryLookupCache {
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries,
            inner: Mutex::new(Entries::default()),
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("cache lock").map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl LookupCache for InMemoryLookupCache {
    fn get(&self, key: CacheKey, now: Micros) -> BoxFuture<'_, Option<CachedLookup>> {
        let inner = self.inner.lock().expect("cache lock");
        let hit = inner
            .map
            .get(&key)
            .filter(|(_, expires)| *expires > now)
            .map(|(v, _)| v.clone());
        Box::pin(std::future::ready(hit))
    }

    fn put(&self, key: CacheKey, value: CachedLookup, expires_at: Micros) -> BoxFuture<'_, ()> {
        if self.max_entries > 0 {
            let mut inner = self.inner.lock().expect("cache lock");
            if inner.map.insert(key, (value, expires_at)).is_none() {
                inner.order.push_back(key);
                while inner.map.len() > self.max_entries {
                    let Some(old) = inner.order.pop_front() else {
                        break;
                    };
                    inner.map.remove(&old);
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

    #[test]
    fn the_key_ignores_case_spacing_and_url_decoration() {
        let a = CacheKey::new("Ana@Acme.com ", "Ana  Silva", "https://www.acme.com/about");
        let b = CacheKey::new("ana@acme.com", " ana silva", "acme.com");
        assert_eq!(a, b);
        assert_ne!(a, CacheKey::new("ana@acme.com", "Ana Silva", "acme.io"));
        assert_eq!(CacheKey::new(" ", "", "https://"), None);
    }

    #[test]
    fn entries_expire_and_the_oldest_are_evicted() {
        let cache = InMemoryLookupCache::new(2);
        let key = |i: u128| CacheKey(i);
        let miss = CachedLookup { found: None };
        block_on(cache.put(key(1), miss.clone(), 100));
        assert_eq!(block_on(cache.get(key(1), 99)), Some(miss.clone()));
        assert_eq!(block_on(cache.get(key(1), 100)), None, "expired");
        block_on(cache.put(key(2), miss.clone(), 1_000));
        block_on(cache.put(key(3), miss.clone(), 1_000));
        assert_eq!(cache.len(), 2);
        assert_eq!(block_on(cache.get(key(1), 0)), None, "evicted first");
        assert!(block_on(cache.get(key(3), 0)).is_some());
    }
}
