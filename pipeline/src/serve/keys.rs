//! API keys: `Authorization: Bearer KEY` or `X-Api-Key: KEY`, checked
//! against the SHA-256 hashes in `[[api.keys]]`; the keys themselves are
//! never stored (not even in the memo that spares a repeat key its hash).
//! `leadflow keys new` makes one.

use std::cell::RefCell;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use axum::http::HeaderMap;
use datafusion::common::HashMap;
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};

use super::problem::Problem;
use crate::config::ApiKeyConfig;

/// The config's keys by hash (the digest's bytes: a request's key is
/// hashed and looked up, not written out in hex first).
pub(crate) struct Keys {
    by_hash: HashMap<[u8; 32], Arc<ApiKeyConfig>>,
}

impl Keys {
    /// The config's keys (whose `sha256` the config has checked is 64 hex
    /// digits; one that is not could match no key, and is left out).
    pub(crate) fn new(keys: &[ApiKeyConfig]) -> Self {
        Self {
            by_hash: keys
                .iter()
                .filter_map(|k| Some((unhex(&k.sha256)?, Arc::new(k.clone()))))
                .collect(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The key the request carries, or 401.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<&Arc<ApiKeyConfig>, Problem> {
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            });
        let given = bearer.or_else(|| {
            headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        });
        let Some(given) = given.filter(|k| !k.is_empty()) else {
            return Err(Problem::unauthorized(
                "no API key: send `Authorization: Bearer KEY` or `X-Api-Key: KEY`",
            ));
        };
        RECENT.with_borrow_mut(|recent| {
            let tag = recent.tag(given.as_bytes());
            // A remembered digest is the key's own: a config without it
            // refuses the key without hashing it again.
            let remembered = recent.digest_of(tag);
            let digest = remembered.unwrap_or_else(|| sha256(given.as_bytes()));
            let key = self.by_hash.get(&digest).ok_or_else(|| {
                Problem::unauthorized("this API key is not one of the config's [[api.keys]]")
            })?;
            if remembered.is_none() {
                recent.remember(tag, digest);
            }
            Ok(key)
        })
    }
}

thread_local! {
    static RECENT: RefCell<RecentKeys> = RefCell::new(RecentKeys::new());
}

/// The SHA-256 of the last keys a thread had to hash and found among a
/// config's hashes, each under a tag: a client sends the same key with
/// every request, and hashing it was a twentieth of a cached lookup's
/// instructions. A tag is 128 bits of SipHash under keys drawn at random
/// for the thread (std's `RandomState`), so the memo holds no key, nor
/// anything that tells one without those random keys; a key sent hits only
/// with its own tag (another key's equal tag is a 2^-128 chance). A digest
/// is a function of the key alone, so the memo holds for any [`Keys`]
/// (each looks the digest up in its own hashes, and a key its config does
/// not hold is refused); keys that match no hash are never kept, so wrong
/// keys cannot evict a client's. The oldest of four goes first.
struct RecentKeys {
    taggers: [RandomState; 2],
    tags: Vec<(u128, [u8; 32])>,
    next: usize,
}

impl RecentKeys {
    const SLOTS: usize = 4;

    fn new() -> Self {
        Self {
            taggers: [RandomState::new(), RandomState::new()],
            tags: Vec::with_capacity(Self::SLOTS),
            next: 0,
        }
    }

    fn tag(&self, key: &[u8]) -> u128 {
        let [high, low] = &self.taggers;
        u128::from(high.hash_one(key)) << 64 | u128::from(low.hash_one(key))
    }

    fn digest_of(&self, tag: u128) -> Option<[u8; 32]> {
        self.tags.iter().find(|(t, _)| *t == tag).map(|(_, d)| *d)
    }

    fn remember(&mut self, tag: u128, digest: [u8; 32]) {
        if self.tags.len() < Self::SLOTS {
            self.tags.push((tag, digest));
        } else {
            self.tags[self.next] = (tag, digest);
            self.next = (self.next + 1) % Self::SLOTS;
        }
    }
}

/// The SHA-256 of `bytes`.
fn sha256(bytes: &[u8]) -> [u8; 32] {
    digest(&SHA256, bytes)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// The hex SHA-256 of `bytes`: of a key, what `[[api.keys]] sha256` holds.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex(&sha256(bytes.as_ref()))
}

/// `bytes` in lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        hex.push(char::from(DIGITS[usize::from(b >> 4)]));
        hex.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    hex
}

/// The 32 bytes 64 hex digits (either case) spell, if they do.
fn unhex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(bytes)
}

/// `N` bytes from the system's random source, in hex.
pub(super) fn random_hex<const N: usize>() -> Result<String, String> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system's random number generator failed".to_string())?;
    Ok(hex(&bytes))
}

/// A fresh random key (`lf_` and 192 random bits in hex) and the
/// `[[api.keys]]` block that admits it.
pub fn new_key(name: &str, organization_id: &str) -> Result<(String, String), String> {
    let key = format!("lf_{}", random_hex::<24>()?);
    let block = format!(
        "[[api.keys]]\nname = {}\nsha256 = \"{}\"\norganization_id = {}\n",
        toml_string(name),
        sha256_hex(&key),
        toml_string(organization_id),
    );
    Ok((key, block))
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_two_lowercase_digits_a_byte() {
        let bytes: Vec<u8> = (0..=255).collect();
        let want: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&bytes), want);
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut upper = hex(&bytes[..32]).to_ascii_uppercase();
        assert_eq!(unhex(&upper).unwrap().as_slice(), &bytes[..32]);
        upper.pop();
        assert_eq!(unhex(&upper), None);
        assert_eq!(unhex(&format!("{upper}g")), None);
        assert_eq!(unhex(&format!("{upper}0f")), None);
    }

    #[test]
    fn recent_keys_answer_only_for_the_exact_bytes_kept() {
        let mut recent = RecentKeys::new();
        for k in ["k1", "k2", "k3", "k4"] {
            recent.remember(recent.tag(k.as_bytes()), sha256(k.as_bytes()));
        }
        let digest_of = |recent: &RecentKeys, k: &str| recent.digest_of(recent.tag(k.as_bytes()));
        assert_eq!(digest_of(&recent, "k1"), Some(sha256(b"k1")));
        assert_eq!(digest_of(&recent, "k4"), Some(sha256(b"k4")));
        for other in ["k", "k11", "k5", "K1", ""] {
            assert_eq!(digest_of(&recent, other), None, "{other:?}");
        }
        // A fifth takes the oldest's place.
        recent.remember(recent.tag(b"k5"), sha256(b"k5"));
        assert_eq!(digest_of(&recent, "k1"), None);
        assert_eq!(digest_of(&recent, "k5"), Some(sha256(b"k5")));
        assert_eq!(digest_of(&recent, "k2"), Some(sha256(b"k2")));
        assert_eq!(recent.tags.len(), RecentKeys::SLOTS);
        // Another thread's tags are under other random keys.
        let there = std::thread::spawn(|| RecentKeys::new().tag(b"k1"))
            .join()
            .unwrap();
        assert_ne!(there, recent.tag(b"k1"));
    }

    #[test]
    fn a_new_keys_block_admits_it_and_only_it() {
        let (key, block) = new_key("crm", "acme \"inc\"").unwrap();
        let config = crate::config::LeadflowConfig::from_toml(&format!("[api]\n{block}")).unwrap();
        assert_eq!(config.api.keys[0].organization_id, "acme \"inc\"");
        let keys = Keys::new(&config.api.keys);
        let mut headers = HeaderMap::new();
        headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
        assert_eq!(keys.authenticate(&headers).unwrap().name, "crm");
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", key.parse().unwrap());
        assert!(keys.authenticate(&headers).is_ok());
        headers.insert("x-api-key", format!("{key}x").parse().unwrap());
        assert!(keys.authenticate(&headers).is_err());
        assert!(keys.authenticate(&HeaderMap::new()).is_err());
        assert_ne!(new_key("crm", "acme").unwrap().0, key);
        // Remembered by this thread now, the key still admits only where
        // a config holds its hash.
        let other = crate::config::LeadflowConfig::from_toml(&format!(
            "[api]\n{}",
            new_key("crm", "acme").unwrap().1
        ))
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", key.parse().unwrap());
        assert!(keys.authenticate(&headers).is_ok());
        assert!(Keys::new(&other.api.keys).authenticate(&headers).is_err());
        // Wrong keys are not remembered: they cannot push a client's out.
        let remembered = || RECENT.with_borrow(|r| r.tags.clone());
        let before = remembered();
        for wrong in 0..2 * RecentKeys::SLOTS {
            headers.insert("x-api-key", format!("{key}{wrong}").parse().unwrap());
            assert!(keys.authenticate(&headers).is_err());
        }
        assert_eq!(remembered(), before);
    }
}
