//! What the fleet holds about one person, removed (`leadflow forget`): the
//! lookup cache's answers and claims about their leads and numbers, and
//! the idempotency records of `leadflow serve` whose stored answers name
//! them. A later lookup of the same person then asks (and pays) again.

use std::collections::HashSet;

use leadflow_waterfall::CacheKey;
use redis::Value;

use crate::Fleet;
use crate::conn::Failed;
use crate::keys::cache_key_of;

/// Whom to purge.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    /// Their leads' and numbers' cache keys.
    pub keys: HashSet<CacheKey>,
    /// Texts that, found in a stored answer as whole tokens (any case),
    /// make it theirs: lead ids (as JSON strings), numbers in E.164,
    /// emails (lowercase).
    pub needles: Vec<String>,
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Cached answers and claims.
    pub cache_keys: u64,
    /// Idempotency records.
    pub idempotency_keys: u64,
}

/// Keys one SCAN step asks for.
const SCAN_COUNT: usize = 1000;

impl Fleet {
    /// Removes `subject`'s entries (one pass over the cache's and the
    /// idempotency records' keys). Fails when Redis does not answer: an
    /// erasure must not be reported done while Redis still holds them.
    pub async fn purge(&self, subject: &Subject) -> Result<Purged, String> {
        let keys = self.redis.keys().clone();
        let mut purged = Purged::default();
        for pattern in [keys.answer_pattern(), keys.asking_pattern()] {
            let found = self
                .scan(&pattern, |key| {
                    cache_key_of(key).is_some_and(|k| subject.keys.contains(&k))
                })
                .await?;
            purged.cache_keys += self.delete(&found).await?;
        }
        if !subject.needles.is_empty() {
            let mut theirs = Vec::new();
            for key in self.scan(&keys.idempotency_pattern(), |_| true).await? {
                let value: Value = self
                    .redis
                    .try_query(redis::cmd("GET").arg(&key))
                    .await
                    .map_err(|e| unanswered(&format!("GET {key}"), e))?;
                let Value::BulkString(bytes) = value else {
                    continue;
                };
                let text = String::from_utf8_lossy(&bytes).to_lowercase();
                if subject.needles.iter().any(|n| contains_token(&text, n)) {
                    theirs.push(key);
                }
            }
            purged.idempotency_keys += self.delete(&theirs).await?;
        }
        Ok(purged)
    }

    /// The keys matching `pattern` that `keep` chooses.
    async fn scan(
        &self,
        pattern: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, String> {
        let mut cursor: u64 = 0;
        let mut found = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .redis
                .try_query(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT),
                )
                .await
                .map_err(|e| unanswered(&format!("SCAN {pattern}"), e))?;
            found.extend(batch.into_iter().filter(|k| keep(k)));
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// Deletes `keys`: how many there were.
    async fn delete(&self, keys: &[String]) -> Result<u64, String> {
        let mut deleted = 0;
        for chunk in keys.chunks(500) {
            // One key per DEL: keys of different hash tags may live on
            // different nodes of a cluster.
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("DEL").arg(key);
            }
            let counts: Vec<u64> = self
                .redis
                .try_pipe(&pipe)
                .await
                .map_err(|e| unanswered("DEL", e))?;
            deleted += counts.iter().sum::<u64>();
        }
        Ok(deleted)
    }
}

/// Why a purge stopped, in words.
fn unanswered(command: &str, e: Failed) -> String {
    match e {
        Failed::NotApplied => format!("Redis is offline or refused {command}"),
        Failed::Unknown => format!("Redis did not answer {command} in time"),
        Failed::Refused(said) => format!("Redis refused {command}: {said}"),
    }
}

/// Whether `needle` occurs in `hay` as a whole token: not inside a longer
/// word, address or number (`ana@x.io` is not in `hana@x.io`, `+4930123`
/// is not in `+49301234`).
pub fn contains_token(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    let part = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '@' | '%');
    hay.match_indices(needle).any(|(at, _)| {
        let before = hay[..at].chars().next_back();
        let after = hay[at + needle.len()..].chars().next();
        // A trailing `.` ends a sentence, not an address.
        let after_ok = match after {
            None => true,
            Some('.') => hay[at + needle.len() + 1..]
                .chars()
                .next()
                .is_none_or(|c| !c.is_alphanumeric()),
            Some(c) => !part(c),
        };
        // A needle that starts (or ends) with a delimiter of its own (a
        // JSON string's quote) needs no boundary on that side.
        let starts_inside = needle.chars().next().is_some_and(part);
        let ends_inside = needle.chars().next_back().is_some_and(part);
        (!starts_inside || before.is_none_or(|c| !part(c))) && (!ends_inside || after_ok)
    })
}

/// `text` with the separators inside numbers dropped (`+49 (30) 123-456`
/// → `+4930123456`): a space, `-`, `.`, `/` or parenthesis that follows a
/// digit and precedes one (past other such separators) goes.
pub fn collapse_phones(text: &str) -> String {
    let separator = |c: char| matches!(c, ' ' | '-' | '.' | '/' | '(' | ')' | '\u{a0}');
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        if separator(c)
            && out.chars().next_back().is_some_and(|p| p.is_ascii_digit())
            && chars[i + 1..]
                .iter()
                .find(|&&n| !separator(n))
                .is_some_and(char::is_ascii_digit)
        {
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_lose_their_separators_and_words_keep_theirs() {
        assert_eq!(collapse_phones("+49 (30) 123-456"), "+4930123456");
        assert_eq!(collapse_phones("tel (030) 12 34 56."), "tel (030123456.");
        assert_eq!(collapse_phones("ana.b@x.io, 2 3"), "ana.b@x.io, 23");
    }

    #[test]
    fn a_token_is_whole() {
        assert!(contains_token("x,ana@x.io,y", "ana@x.io"));
        assert!(contains_token("\"email\":\"ana@x.io\"", "ana@x.io"));
        assert!(contains_token("mail ana@x.io.", "ana@x.io"));
        assert!(!contains_token("x,hana@x.io,y", "ana@x.io"));
        assert!(!contains_token("x,ana@x.io.uk,y", "ana@x.io"));
        assert!(contains_token("tel +4930123456;", "+4930123456"));
        assert!(!contains_token("tel +49301234567", "+4930123456"));
        assert!(!contains_token("tel +4930123456", "4930123456"));
        assert!(contains_token("tel 4930123456", "4930123456"));
        assert!(!contains_token("L-10", "l-1"));
        assert!(contains_token("{\"lead_id\":\"2\",", "\"2\""));
        assert!(!contains_token("{\"lead_id\":\"22\",", "\"2\""));
    }
}
