//! What a provider is: the [`Provider`] trait (find a phone for a lead) and
//! [`LineTypeProvider`] (describe a number we have), each turning a lead or
//! number into a request and an answer into a verdict. Sending, timeouts,
//! retries and accounting live in the waterfall, the same for every provider.

use std::fmt;

use reqwest::{Client, RequestBuilder, StatusCode};

use crate::cache::{CacheKey, website_host};

/// What the waterfall knows about a lead when it asks for a phone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LeadQuery {
    pub email: String,
    pub full_name: String,
    pub company_website: String,
    /// ISO 3166-1 alpha-2; the default region for the numbers providers return.
    pub country: Option<String>,
    pub user_tier: Option<i32>,
    /// The phone the lead came with.
    pub own_phone: OwnPhone,
}

/// The phone a lead came with, as far as the waterfall needs it: a lead with
/// a valid phone of its own is not looked up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum OwnPhone {
    #[default]
    None,
    /// As written; the waterfall parses it (national numbers in the lead's country).
    Raw(String),
    /// Already parsed (by `phone_info`, so the lead's phone is parsed once).
    Parsed { valid: bool },
}

impl LeadQuery {
    /// The company's domain: the website's host, else the email's domain.
    pub fn company_domain(&self) -> &str {
        let host = website_host(&self.company_website);
        if !host.is_empty() {
            return host;
        }
        self.email
            .trim()
            .rsplit_once('@')
            .map_or("", |(_, domain)| domain)
    }

    pub fn first_name(&self) -> &str {
        self.full_name.split_whitespace().next().unwrap_or("")
    }

    pub fn last_name(&self) -> &str {
        let name = self.full_name.trim();
        name.split_once(char::is_whitespace)
            .map_or("", |(_, rest)| rest.trim())
    }

    pub fn country(&self) -> &str {
        self.country.as_deref().unwrap_or("")
    }

    /// The cache key; `None` when the lead has no email, name or website.
    pub fn cache_key(&self) -> Option<CacheKey> {
        CacheKey::new(&self.email, &self.full_name, &self.company_website)
    }
}

/// A provider's answer to "a phone for this lead?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A number, as the provider wrote it, and its country when given.
    Hit {
        phone: String,
        country: Option<String>,
    },
    Miss,
}

/// A phone-finding provider's contract.
pub trait Provider: Send + Sync + fmt::Debug {
    /// The request asking for `lead`'s phone.
    fn request(&self, http: &Client, lead: &LeadQuery) -> RequestBuilder;
    /// Reads an answer that is neither `429` nor `5xx`; `Err` (with the
    /// reason) for a refusal that retrying will not change.
    fn read(&self, status: StatusCode, body: &[u8]) -> Result<Answer, String>;
}

/// Line type and carrier of a number (Twilio Lookup v2's shape).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineType {
    pub line_type: Option<String>,
    pub carrier_name: Option<String>,
    pub mcc: Option<String>,
    pub mnc: Option<String>,
}

/// Separates a [`LineType`]'s fields in its cached form (a control
/// character: never in a carrier's name).
const CACHE_SEP: char = '\u{1f}';

impl LineType {
    /// The description as the lookup cache keeps it (in a
    /// `ProviderAnswer::Found`): four fields, absent ones empty.
    pub fn to_cache(&self) -> String {
        [&self.line_type, &self.carrier_name, &self.mcc, &self.mnc]
            .map(|f| f.as_deref().unwrap_or(""))
            .join(&CACHE_SEP.to_string())
    }

    /// Reads [`Self::to_cache`]'s form back.
    pub fn from_cache(text: &str) -> Self {
        let mut fields = text
            .split(CACHE_SEP)
            .map(|f| (!f.is_empty()).then(|| f.to_string()));
        let mut next = || fields.next().flatten();
        LineType {
            line_type: next(),
            carrier_name: next(),
            mcc: next(),
            mnc: next(),
        }
    }
}

/// A provider that describes numbers.
pub trait LineTypeProvider: Send + Sync + fmt::Debug {
    fn request(&self, http: &Client, e164: &str) -> RequestBuilder;
    /// `Ok(None)` when the provider says the number is not valid.
    fn read(&self, status: StatusCode, body: &[u8]) -> Result<Option<LineType>, String>;
}

/// An API key or secret: read from the environment, never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// An unexpected answer in a few words, for the `error` column: its status
/// and, when the body gives one, a reason (a JSON `message`, `error`,
/// `detail` or `reason`, else the body's first line), never the whole body.
/// Not cut here: the [`Redactor`] cuts it to [`ERROR_CHARS`] after taking
/// the credentials out, so no key straddling the cut is kept in part.
pub(crate) fn unexpected(status: StatusCode, body: &[u8]) -> String {
    let reason = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| {
            ["message", "error", "error_description", "detail", "reason"]
                .iter()
                .find_map(|key| json.get(key)?.as_str().map(str::to_string))
        })
        .or_else(|| {
            let line = body.split(|&b| b == b'\n').next().unwrap_or_default();
            Some(String::from_utf8_lossy(line).into_owned())
        })
        .map(|reason| {
            let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
            reason.trim().to_string()
        })
        .unwrap_or_default();
    if reason.is_empty() {
        format!("unexpected HTTP {}", status.as_u16())
    } else {
        format!("unexpected HTTP {}: {reason}", status.as_u16())
    }
}

/// The longest `error` a usage row keeps, in characters (a status and a
/// reason of about 120 characters).
pub(crate) const ERROR_CHARS: usize = 140;

/// The shortest credential accepted: a shorter one would be found all over
/// ordinary text, and redacting it would blank words instead of a secret.
pub(crate) const MIN_SECRET_CHARS: usize = 8;

/// Replaces every configured credential in text bound for the usage ledger
/// or a log, so a provider that echoes its request leaks nothing, then cuts
/// the text to [`ERROR_CHARS`].
#[derive(Debug, Default)]
pub(crate) struct Redactor {
    /// Longest first, so a secret containing another is replaced whole.
    secrets: Vec<String>,
}

impl Redactor {
    pub(crate) const MASK: &'static str = "[redacted]";

    pub(crate) fn new(mut secrets: Vec<String>) -> Self {
        secrets.retain(|s| !s.is_empty());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// Redacts, then cuts: the whole text is searched, in every spelling a
    /// provider may echo a key in (raw, URL-encoded in either hex case or
    /// with `+` for a space, JSON-escaped, or a mix of these).
    pub(crate) fn apply(&self, text: &mut String) {
        for secret in &self.secrets {
            if let Some(redacted) = redact_spellings(text, secret.as_bytes()) {
                *text = redacted;
            }
        }
        cut_chars(text, ERROR_CHARS);
    }
}

/// `text` with every spelling of `secret` replaced by the mask, or `None`
/// when it holds none.
fn redact_spellings(text: &str, secret: &[u8]) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match spelled_at(bytes, i, secret) {
            Some(end) if text.is_char_boundary(i) && text.is_char_boundary(end) => {
                let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                out.push_str(&text[copied..i]);
                out.push_str(Redactor::MASK);
                copied = end;
                i = end;
            }
            _ => i += 1,
        }
    }
    let mut out = out?;
    out.push_str(&text[copied..]);
    Some(out)
}

/// Where a spelling of `secret` starting at `text[i]` ends, if one does:
/// each of the secret's bytes may be itself, `%XX` (either case), `+` for a
/// space, or a JSON escape (`\/`, `\"`, `\\`, `\n`…, `\uXXXX` for a whole
/// character).
fn spelled_at(text: &[u8], mut i: usize, secret: &[u8]) -> Option<usize> {
    let mut j = 0;
    while j < secret.len() {
        let want = secret[j];
        let c = *text.get(i)?;
        if c == want {
            i += 1;
            j += 1;
        } else if c == b'%' {
            let byte = hex_value(text.get(i + 1..i + 3)?)?;
            if byte != u32::from(want) {
                return None;
            }
            i += 3;
            j += 1;
        } else if c == b'+' && want == b' ' {
            i += 1;
            j += 1;
        } else if c == b'\\' {
            let next = *text.get(i + 1)?;
            let unescaped = match next {
                b'/' | b'"' | b'\\' => Some(next),
                b'b' => Some(0x08),
                b'f' => Some(0x0c),
                b'n' => Some(b'\n'),
                b'r' => Some(b'\r'),
                b't' => Some(b'\t'),
                _ => None,
            };
            if let Some(byte) = unescaped {
                if byte != want {
                    return None;
                }
                i += 2;
                j += 1;
            } else if next == b'u' {
                let (ch, len) = json_unicode(&text[i..])?;
                let mut buf = [0; 4];
                let utf8 = ch.encode_utf8(&mut buf).as_bytes();
                if !secret[j..].starts_with(utf8) {
                    return None;
                }
                i += len;
                j += utf8.len();
            } else {
                return None;
            }
        } else {
            return None;
        }
    }
    Some(i)
}

/// The character a JSON `\uXXXX` (or a surrogate pair of them) at the start
/// of `text` stands for, and how many bytes it takes.
fn json_unicode(text: &[u8]) -> Option<(char, usize)> {
    let unit = |at: usize| {
        (text.get(at..at + 2)? == b"\\u")
            .then(|| hex_value(text.get(at + 2..at + 6)?))
            .flatten()
    };
    let high = unit(0)?;
    if (0xD800..0xDC00).contains(&high) {
        let low = unit(6)?;
        if !(0xDC00..0xE000).contains(&low) {
            return None;
        }
        let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
        Some((char::from_u32(code)?, 12))
    } else {
        Some((char::from_u32(high)?, 6))
    }
}

/// The number written in hex digits (either case), or `None`.
fn hex_value(digits: &[u8]) -> Option<u32> {
    digits
        .iter()
        .try_fold(0, |n, &d| Some(n * 16 + char::from(d).to_digit(16)?))
}

/// Keeps at most `max` characters of `text`, marking a cut with `…`.
fn cut_chars(text: &mut String, max: usize) {
    if let Some((at, _)) = text.char_indices().nth(max) {
        text.truncate(at);
        text.push('…');
    }
}

/// Parses a JSON body, or says why not.
pub(crate) fn json_body(status: StatusCode, body: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(body)
        .map_err(|e| format!("HTTP {} answer is not JSON ({e})", status.as_u16()))
}

/// A non-empty string (or number) at `value`, as text.
pub(crate) fn text_of(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
