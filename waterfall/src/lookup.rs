//! What the waterfall answers: a lead's [`Lookup`], a number's
//! [`LineTypeLookup`], and the [`Attempt`]s (calls and skips) they are made of.

use std::sync::Arc;

use crate::clock::Micros;
use crate::provider::LineType;

/// How a lead's lookup ended: the `lookup_status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LookupStatus {
    Found,
    NotFound,
    Cached,
    SkippedHasPhone,
    SkippedTier,
    /// The adaptive order expected every provider to cost more per hit
    /// than `value_of_found_phone_usd`: none was called.
    SkippedValue,
    RateLimited,
    BudgetExhausted,
    Error,
    /// No phone-finding provider is configured (or none is enabled).
    NotRun,
}

impl LookupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LookupStatus::Found => "found",
            LookupStatus::NotFound => "not_found",
            LookupStatus::Cached => "cached",
            LookupStatus::SkippedHasPhone => "skipped_has_phone",
            LookupStatus::SkippedTier => "skipped_tier",
            LookupStatus::SkippedValue => "skipped_value",
            LookupStatus::RateLimited => "rate_limited",
            LookupStatus::BudgetExhausted => "budget_exhausted",
            LookupStatus::Error => "error",
            LookupStatus::NotRun => "not_run",
        }
    }
}

/// How one provider call (or skip) went: the `provider_usage.outcome` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Hit,
    Miss,
    Error,
    Timeout,
    RateLimited,
    CircuitOpen,
    SkippedTier,
    /// Not asked: the adaptive order expected it to cost more per hit than
    /// a found phone is worth (`value_of_found_phone_usd`).
    SkippedValue,
    /// Not asked: the budget was spent.
    BudgetExhausted,
    /// A request was sent and its answer never recorded: the process
    /// stopped while it was in flight (recovered from the usage journal).
    Unknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::RateLimited => "rate_limited",
            Outcome::CircuitOpen => "circuit_open",
            Outcome::SkippedTier => "skipped_tier",
            Outcome::SkippedValue => "skipped_value",
            Outcome::BudgetExhausted => "budget_exhausted",
            Outcome::Unknown => "unknown",
        }
    }

    /// The outcome named `s` (as [`Outcome::as_str`] writes it).
    pub fn parse(s: &str) -> Option<Outcome> {
        [
            Outcome::Hit,
            Outcome::Miss,
            Outcome::Error,
            Outcome::Timeout,
            Outcome::RateLimited,
            Outcome::CircuitOpen,
            Outcome::SkippedTier,
            Outcome::SkippedValue,
            Outcome::BudgetExhausted,
            Outcome::Unknown,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// One provider call or skip: a `provider_usage` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub provider: Arc<str>,
    /// 1 for the first call to this provider for this lead, 2 for its first
    /// retry, …; 0 for a skip, which makes no call.
    pub attempt: i32,
    pub outcome: Outcome,
    /// `None` when no HTTP answer came (skips, timeouts, connection errors).
    pub http_status: Option<i32>,
    /// µUSD.
    pub cost_micros: i64,
    pub latency_ms: i64,
    pub started_at: Micros,
    pub error: Option<String>,
    /// The order the lead's providers were asked in.
    pub policy: Option<Policy>,
}

impl Attempt {
    /// A provider passed over without a call.
    pub(crate) fn skip(
        provider: &Arc<str>,
        outcome: Outcome,
        now: Micros,
        policy: Option<Policy>,
    ) -> Self {
        Self {
            provider: provider.clone(),
            attempt: 0,
            outcome,
            http_status: None,
            cost_micros: 0,
            latency_ms: 0,
            started_at: now,
            error: None,
            policy,
        }
    }

    /// Whether this attempt sent a request (as opposed to a skip).
    pub fn called(&self) -> bool {
        self.attempt > 0
    }
}

/// What `find_phone` returns for one lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub phone_e164: Option<String>,
    pub provider: Option<Arc<str>>,
    pub status: LookupStatus,
    /// µUSD spent on this lead.
    pub cost_micros: i64,
    pub latency_ms: i64,
    pub attempts: Vec<Attempt>,
    /// The order the providers were asked in; `None` when the lookup never
    /// came to ordering them (no provider, a valid phone of its own).
    pub policy: Option<Policy>,
}

impl Lookup {
    pub(crate) fn ended(status: LookupStatus) -> Self {
        Self {
            phone_e164: None,
            provider: None,
            status,
            cost_micros: 0,
            latency_ms: 0,
            attempts: Vec::new(),
            policy: None,
        }
    }

    /// The answer for a lead when no provider is configured.
    pub fn not_run() -> Self {
        Self::ended(LookupStatus::NotRun)
    }

    /// The same answer, served to an identical lead without asking again.
    pub fn as_cached(&self) -> Self {
        Self {
            phone_e164: self.phone_e164.clone(),
            provider: self.provider.clone(),
            status: match self.status {
                LookupStatus::Found | LookupStatus::NotFound => LookupStatus::Cached,
                other => other,
            },
            cost_micros: 0,
            latency_ms: 0,
            attempts: Vec::new(),
            policy: self.policy,
        }
    }
}

/// Which order a lead's providers were asked in: the `policy` column of
/// `enriched_leads` and `provider_usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// By the providers' `priority`.
    Priority,
    /// By expected cost to a hit in the lead's segment.
    Adaptive,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Priority => "priority",
            Policy::Adaptive => "adaptive",
        }
    }

    /// The policy named `s` (as [`Policy::as_str`] writes it).
    pub fn parse(s: &str) -> Option<Policy> {
        [Policy::Priority, Policy::Adaptive]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// How a number's line-type lookup ended: the `line_type_status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineTypeStatus {
    /// A provider described the number (paid for here).
    Found,
    /// The providers answered that they do not know the number (now, or
    /// earlier and remembered by the cache).
    UnknownNumber,
    /// A description remembered by the cache: nothing was paid.
    Cached,
    /// Not asked (or not asked again after a failed try): the budget was
    /// spent.
    BudgetExhausted,
    /// No answer: the hourly request limit was reached, or the provider
    /// answered 429 past what a retry could wait for.
    RateLimited,
    /// Not asked: every provider's circuit was open.
    CircuitOpen,
    /// Asked, and no answer came (errors, timeouts, the deadline).
    Error,
    /// No line-type provider is configured (or none is enabled).
    NotRun,
    /// The lead ends without a phone: there was nothing to ask about.
    NoPhone,
}

impl LineTypeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LineTypeStatus::Found => "found",
            LineTypeStatus::UnknownNumber => "unknown_number",
            LineTypeStatus::Cached => "cached",
            LineTypeStatus::BudgetExhausted => "budget_exhausted",
            LineTypeStatus::RateLimited => "rate_limited",
            LineTypeStatus::CircuitOpen => "circuit_open",
            LineTypeStatus::Error => "error",
            LineTypeStatus::NotRun => "not_run",
            LineTypeStatus::NoPhone => "no_phone",
        }
    }

    /// The status of a row that shares another row's answer (the same
    /// number twice in a batch): a description it did not pay for is
    /// `cached`; every other reason is the same.
    pub fn as_cached(self) -> Self {
        match self {
            LineTypeStatus::Found => LineTypeStatus::Cached,
            other => other,
        }
    }
}

/// What `phone_line_type` returns for one number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineTypeLookup {
    /// `None` when no provider described the number; `status` says why.
    pub line_type: Option<LineType>,
    pub status: LineTypeStatus,
    pub attempts: Vec<Attempt>,
}

impl LineTypeLookup {
    pub(crate) fn cached(line_type: LineType) -> Self {
        Self {
            line_type: Some(line_type),
            status: LineTypeStatus::Cached,
            attempts: Vec::new(),
        }
    }

    /// The answer when nothing is asked: no number, or no provider.
    pub fn ended(status: LineTypeStatus) -> Self {
        Self {
            line_type: None,
            status,
            attempts: Vec::new(),
        }
    }
}
