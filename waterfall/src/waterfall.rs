//! The waterfall: for one lead, ask the providers in priority order until
//! one returns a valid phone, under rate limits, circuit breakers, a budget,
//! a per-lead deadline and retries, recording every call and skip.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use leadflow_phone::{PhoneInfo, PhoneParser, parse_region};
use leadflow_sandbox::Sandbox;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, RequestBuilder, StatusCode};
use tokio::sync::Semaphore;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::breaker::{CircuitBreaker, InMemoryCircuitBreaker};
use crate::budget::{Budget, InMemoryBudget};
use crate::cache::{CachedLookup, InMemoryLookupCache, LookupCache};
use crate::clock::{Clock, Micros, SystemClock};
use crate::config::{
    CacheConfig, LookupConfig, ProviderConfig, ProviderKind, SANDBOX_URL, WaterfallConfig,
    usd_to_micros,
};
use crate::error::{Error, Result};
use crate::provider::{Answer, LeadQuery, LineType, LineTypeProvider, Provider, Secret};
use crate::providers::{Astra, DeclaredProvider, Nimbus, Orion, Twilio};
use crate::rate_limit::{InMemoryRateLimiter, RateLimiter};

const MS: Micros = 1_000;
const HOUR: Micros = 3_600 * 1_000_000;

/// How a lead's lookup ended: the `lookup_status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LookupStatus {
    Found,
    NotFound,
    Cached,
    SkippedHasPhone,
    SkippedTier,
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
        }
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
}

impl Attempt {
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
}

impl Lookup {
    fn ended(status: LookupStatus) -> Self {
        Self {
            phone_e164: None,
            provider: None,
            status,
            cost_micros: 0,
            latency_ms: 0,
            attempts: Vec::new(),
        }
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
        }
    }
}

/// What `phone_line_type` returns for one number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineTypeLookup {
    /// `None` when no provider described the number.
    pub line_type: Option<LineType>,
    pub attempts: Vec<Attempt>,
}

/// The shared state the waterfall consults: time, limits, cache, breakers, budget.
#[derive(Debug, Clone)]
pub struct Services {
    pub clock: Arc<dyn Clock>,
    pub limiter: Arc<dyn RateLimiter>,
    pub cache: Arc<dyn LookupCache>,
    pub breaker: Arc<dyn CircuitBreaker>,
    pub budget: Arc<dyn Budget>,
}

impl Services {
    /// In-memory limits, cache, breakers and budget, for one process.
    pub fn in_memory(config: &WaterfallConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            limiter: Arc::new(InMemoryRateLimiter::default()),
            cache: Arc::new(InMemoryLookupCache::new(config.cache.max_entries)),
            breaker: Arc::new(InMemoryCircuitBreaker::new(&config.breaker)),
            budget: Arc::new(InMemoryBudget::new(&config.budget)),
        }
    }
}

#[derive(Debug)]
enum Contract {
    Find(Box<dyn Provider>),
    Describe(Box<dyn LineTypeProvider>),
}

/// A configured provider, ready to call.
#[derive(Debug)]
struct Slot {
    name: Arc<str>,
    config: ProviderConfig,
    cost_per_call: i64,
    cost_per_hit: i64,
    contract: Contract,
    /// The client that reaches the provider: the pooled one (HTTP/1.1, or
    /// `h2` where an HTTPS provider offers it), or, for the in-process
    /// sandbox, one speaking HTTP/2 without TLS (prior knowledge), so all its
    /// calls share one multiplexed connection.
    http: Client,
}

/// The providers of a config, ready to ask for leads' phones.
#[derive(Debug)]
pub struct Waterfall {
    finders: Vec<Slot>,
    describers: Vec<Slot>,
    services: Services,
    lookup: LookupConfig,
    cache: CacheConfig,
    has_budget: bool,
    in_flight: Semaphore,
    jitter: AtomicU64,
    sandbox: Option<Sandbox>,
}

/// How asking one provider ended.
enum Called<R> {
    /// An answer, and the index of its attempt.
    Answered(R, usize),
    Failed,
    RateLimited,
    BudgetExhausted,
    DeadlinePassed,
}

/// What the lead's attempts so far add up to.
#[derive(Debug, Default)]
struct Tally {
    miss: bool,
    error: bool,
    rate_limited: bool,
    tier: bool,
    budget: bool,
}

impl Waterfall {
    /// Builds the waterfall with the system clock and in-memory services,
    /// reading API keys from the process environment.
    pub async fn start_in_memory(config: WaterfallConfig) -> Result<Self> {
        let services = Services::in_memory(&config, Arc::new(SystemClock));
        Self::start(config, services, |var| std::env::var(var).ok()).await
    }

    /// Builds the waterfall. API keys come from `env`; providers with
    /// `base_url = "sandbox"` get an in-process sandbox (and a placeholder
    /// key when theirs is not set).
    pub async fn start(
        config: WaterfallConfig,
        services: Services,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        config.check()?;
        let sandbox = if config.uses_sandbox() {
            let sandbox = Sandbox::start_local(config.sandbox.clone())
                .await
                .map_err(|e| Error::Start {
                    what: "the provider sandbox",
                    source: Box::new(e),
                })?;
            tracing::info!(url = %sandbox.url(), "provider sandbox started in-process");
            Some(sandbox)
        } else {
            None
        };
        let concurrency = config.lookup.concurrency;
        let client = |builder: reqwest::ClientBuilder| {
            builder
                .tcp_nodelay(true)
                .user_agent(concat!("leadflow/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::Start {
                    what: "the HTTP client",
                    source: Box::new(e),
                })
        };
        let http = client(Client::builder().pool_max_idle_per_host(concurrency))?;
        let h2c = match &sandbox {
            Some(_) => Some(client(Client::builder().http2_prior_knowledge())?),
            None => None,
        };
        let in_sandbox = sandbox.as_ref().zip(h2c.as_ref());
        let mut finders = Vec::new();
        let mut describers = Vec::new();
        for p in &config.providers {
            let slot = slot(p, &http, in_sandbox, &env)?;
            match slot.contract {
                Contract::Find(_) => finders.push(slot),
                Contract::Describe(_) => describers.push(slot),
            }
        }
        // Stable: equal priorities keep the config's order.
        finders.sort_by_key(|s| s.config.priority);
        describers.sort_by_key(|s| s.config.priority);
        Ok(Self {
            finders,
            describers,
            has_budget: config.budget.per_run_usd.is_some() || config.budget.per_day_usd.is_some(),
            services,
            lookup: config.lookup,
            cache: config.cache,
            in_flight: Semaphore::new(concurrency),
            jitter: AtomicU64::new(0),
            sandbox,
        })
    }

    /// The in-process sandbox, when the config asked for one.
    pub fn sandbox(&self) -> Option<&Sandbox> {
        self.sandbox.as_ref()
    }

    /// Leads looked up at once across the process.
    pub fn concurrency(&self) -> usize {
        self.lookup.concurrency
    }

    /// Names of the phone-finding providers, in waterfall order.
    pub fn finders(&self) -> impl Iterator<Item = &str> {
        self.finders.iter().map(|s| &*s.name)
    }

    /// Whether any provider can describe numbers (`phone_line_type`).
    pub fn has_line_type_providers(&self) -> bool {
        self.describers.iter().any(|s| s.config.enabled)
    }

    /// Runs the waterfall for one lead. Never fails: a provider's failure is
    /// an outcome in the result.
    pub async fn find(&self, lead: &LeadQuery) -> Lookup {
        if !self.finders.iter().any(|s| s.config.enabled) {
            return Lookup::ended(LookupStatus::NotRun);
        }
        let _permit = self.in_flight.acquire().await.expect("never closed");
        let clock = &*self.services.clock;
        let started = clock.now();
        if !self.lookup.lookup_when_phone_valid && has_valid_phone(lead) {
            return Lookup::ended(LookupStatus::SkippedHasPhone);
        }
        let Some(key) = lead.cache_key() else {
            // No email, name or website: nothing a provider could match on.
            return Lookup::ended(LookupStatus::NotFound);
        };
        if self.cache.enabled
            && let Some(hit) = self.services.cache.get(key, started).await
        {
            let mut lookup = Lookup::ended(LookupStatus::Cached);
            if let Some((phone, provider)) = hit.found {
                lookup.phone_e164 = Some(phone.to_string());
                lookup.provider = Some(provider);
            }
            return lookup;
        }

        let deadline = started + self.lookup.deadline_ms as i64 * MS;
        let jitter_seed = key.0 as u64;
        let mut attempts = Vec::new();
        let mut tally = Tally::default();
        let mut found = None;
        for slot in self.finders.iter().filter(|s| s.config.enabled) {
            let Contract::Find(provider) = &slot.contract else {
                continue;
            };
            let now = clock.now();
            if lead.user_tier.unwrap_or(0) < slot.config.min_user_tier {
                attempts.push(skip(slot, Outcome::SkippedTier, now));
                tally.tier = true;
                continue;
            }
            if !self.services.breaker.allows(&slot.name, now).await {
                attempts.push(skip(slot, Outcome::CircuitOpen, now));
                tally.error = true;
                continue;
            }
            let called = self
                .call(
                    slot,
                    deadline,
                    jitter_seed,
                    &mut attempts,
                    |http| provider.request(http, lead),
                    |status, body| provider.read(status, body),
                    |answer| matches!(answer, Answer::Hit { .. }),
                )
                .await;
            match called {
                Called::Answered(Answer::Hit { phone, country }, at) => {
                    let region = country.as_deref().or(lead.country.as_deref());
                    match valid_e164(&phone, region) {
                        Some(e164) => {
                            found = Some((e164, slot.name.clone()));
                            break;
                        }
                        None => {
                            let a = &mut attempts[at];
                            a.outcome = Outcome::Miss;
                            a.error = Some(format!("answered an invalid number: {phone}"));
                            tally.miss = true;
                        }
                    }
                }
                Called::Answered(Answer::Miss, _) => tally.miss = true,
                Called::Failed => tally.error = true,
                Called::RateLimited => tally.rate_limited = true,
                Called::BudgetExhausted => {
                    tally.budget = true;
                    break;
                }
                Called::DeadlinePassed => {
                    tally.error = true;
                    break;
                }
            }
        }

        let status = if found.is_some() {
            LookupStatus::Found
        } else if tally.budget {
            LookupStatus::BudgetExhausted
        } else if tally.miss {
            LookupStatus::NotFound
        } else if tally.error {
            LookupStatus::Error
        } else if tally.rate_limited {
            LookupStatus::RateLimited
        } else if tally.tier {
            LookupStatus::SkippedTier
        } else {
            LookupStatus::NotFound
        };
        // Remember a phone, or a miss every eligible provider agreed on:
        // a miss caused by a skip may not hold once the skip is over.
        let settled = found.is_some()
            || (status == LookupStatus::NotFound
                && !(tally.error || tally.rate_limited || tally.tier));
        if self.cache.enabled && settled {
            let ttl = if found.is_some() {
                self.cache.ttl_hours
            } else {
                self.cache.miss_ttl_hours
            };
            let value = CachedLookup {
                found: found
                    .as_ref()
                    .map(|(phone, provider): &(String, Arc<str>)| {
                        (Arc::from(phone.as_str()), provider.clone())
                    }),
            };
            self.services
                .cache
                .put(key, value, clock.now() + ttl as i64 * HOUR)
                .await;
        }
        let (phone_e164, provider) = match found {
            Some((phone, provider)) => (Some(phone), Some(provider)),
            None => (None, None),
        };
        Lookup {
            phone_e164,
            provider,
            status,
            cost_micros: attempts.iter().map(|a| a.cost_micros).sum(),
            latency_ms: (clock.now() - started) / MS,
            attempts,
        }
    }

    /// Asks the line-type providers (Twilio) about `e164`, in priority order,
    /// until one answers.
    pub async fn line_type(&self, e164: &str) -> LineTypeLookup {
        let _permit = self.in_flight.acquire().await.expect("never closed");
        let clock = &*self.services.clock;
        let deadline = clock.now() + self.lookup.deadline_ms as i64 * MS;
        let mut attempts = Vec::new();
        for slot in self.describers.iter().filter(|s| s.config.enabled) {
            let Contract::Describe(provider) = &slot.contract else {
                continue;
            };
            if !self.services.breaker.allows(&slot.name, clock.now()).await {
                attempts.push(skip(slot, Outcome::CircuitOpen, clock.now()));
                continue;
            }
            let called = self
                .call(
                    slot,
                    deadline,
                    xxh3_64_with_seed(e164.as_bytes(), 0),
                    &mut attempts,
                    |http| provider.request(http, e164),
                    |status, body| provider.read(status, body),
                    Option::is_some,
                )
                .await;
            match called {
                Called::Answered(line_type, _) => {
                    return LineTypeLookup {
                        line_type,
                        attempts,
                    };
                }
                Called::BudgetExhausted | Called::DeadlinePassed => break,
                Called::Failed | Called::RateLimited => {}
            }
        }
        LineTypeLookup {
            line_type: None,
            attempts,
        }
    }

    /// Calls one provider, retrying what a retry can fix, and records each
    /// call in `attempts`.
    #[allow(clippy::too_many_arguments)]
    async fn call<R>(
        &self,
        slot: &Slot,
        deadline: Micros,
        jitter_seed: u64,
        attempts: &mut Vec<Attempt>,
        build: impl Fn(&Client) -> RequestBuilder,
        read: impl Fn(StatusCode, &[u8]) -> std::result::Result<R, String>,
        is_hit: impl Fn(&R) -> bool,
    ) -> Called<R> {
        let s = &self.services;
        let tries = slot.config.retries + 1;
        let max_cost = slot.cost_per_call + slot.cost_per_hit;
        let mut failed = Called::Failed;
        for attempt in 1..=tries as i32 {
            let now = s.clock.now();
            if now >= deadline {
                return Called::DeadlinePassed;
            }
            if self.has_budget && !s.budget.reserve(max_cost, now).await {
                return Called::BudgetExhausted;
            }
            if !s
                .limiter
                .try_acquire(&slot.name, slot.config.max_requests_per_hour, now)
                .await
            {
                if self.has_budget {
                    s.budget.settle(max_cost, 0, now).await;
                }
                let mut a = skip(slot, Outcome::RateLimited, now);
                a.error = Some("hourly request limit reached".into());
                attempts.push(a);
                return Called::RateLimited;
            }

            let timeout = (slot.config.timeout_ms as i64 * MS).min(deadline - now);
            let sent = send(build(&slot.http), Duration::from_micros(timeout as u64)).await;
            let ended = s.clock.now();
            let mut record = Attempt {
                provider: slot.name.clone(),
                attempt,
                outcome: Outcome::Error,
                http_status: None,
                cost_micros: 0,
                latency_ms: (ended - now) / MS,
                started_at: now,
                error: None,
            };
            // How long to wait before the next try, if one may help.
            let retry_in: Option<Micros>;
            match sent {
                Ok((status, headers, body)) => {
                    record.http_status = Some(i32::from(status.as_u16()));
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        let wait =
                            retry_after(&headers).unwrap_or(self.backoff(jitter_seed, attempt));
                        record.outcome = Outcome::RateLimited;
                        record.error = Some(format!("429, Retry-After {}ms", wait / MS));
                        failed = Called::RateLimited;
                        retry_in =
                            (wait <= self.lookup.max_retry_after_ms as i64 * MS).then_some(wait);
                    } else if status.is_server_error() {
                        record.error = Some(crate::provider::unexpected(status, &body));
                        s.breaker.record(&slot.name, false, ended).await;
                        failed = Called::Failed;
                        retry_in = Some(self.backoff(jitter_seed, attempt));
                    } else {
                        match read(status, &body) {
                            Ok(reply) => {
                                let hit = is_hit(&reply);
                                record.outcome = if hit { Outcome::Hit } else { Outcome::Miss };
                                record.cost_micros =
                                    slot.cost_per_call + if hit { slot.cost_per_hit } else { 0 };
                                if self.has_budget {
                                    s.budget.settle(max_cost, record.cost_micros, ended).await;
                                }
                                s.breaker.record(&slot.name, true, ended).await;
                                attempts.push(record);
                                return Called::Answered(reply, attempts.len() - 1);
                            }
                            Err(reason) => {
                                // Refused (bad key, bad request): permanent.
                                record.error = Some(reason);
                                s.breaker.record(&slot.name, false, ended).await;
                                failed = Called::Failed;
                                retry_in = None;
                            }
                        }
                    }
                }
                Err(e) => {
                    record.outcome = if e.is_timeout() {
                        Outcome::Timeout
                    } else {
                        Outcome::Error
                    };
                    record.error = Some(describe(e));
                    s.breaker.record(&slot.name, false, ended).await;
                    failed = Called::Failed;
                    retry_in = Some(self.backoff(jitter_seed, attempt));
                }
            }
            if self.has_budget {
                s.budget.settle(max_cost, 0, ended).await;
            }
            attempts.push(record);
            match retry_in {
                Some(wait) if attempt < tries as i32 && s.clock.now() + wait < deadline => {
                    s.clock.sleep(Duration::from_micros(wait as u64)).await;
                }
                _ => break,
            }
        }
        failed
    }

    /// Full-jitter exponential backoff before retry `attempt`.
    fn backoff(&self, seed: u64, attempt: i32) -> Micros {
        let cap = (self
            .lookup
            .retry_base_ms
            .saturating_mul(1 << (attempt - 1).clamp(0, 20)))
        .min(self.lookup.retry_max_ms)
        .max(1) as i64
            * MS;
        let n = self.jitter.fetch_add(1, Ordering::Relaxed);
        let r = xxh3_64_with_seed(&n.to_le_bytes(), seed);
        (r % cap as u64) as i64 + 1
    }
}

/// Sends a request and reads the whole answer within `timeout`.
async fn send(
    request: RequestBuilder,
    timeout: Duration,
) -> std::result::Result<(StatusCode, HeaderMap, bytes::Bytes), reqwest::Error> {
    let response = request.timeout(timeout).send().await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await?;
    Ok((status, headers, body))
}

/// A transport error in a few words, without the URL (which may carry lead data).
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else if e.is_body() || e.is_decode() {
        "answer cut off".into()
    } else {
        let e = e.without_url();
        let mut s = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(inner) = source {
            s.push_str(": ");
            s.push_str(&inner.to_string());
            source = inner.source();
        }
        s
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare for APIs; it falls
/// back to the backoff).
fn retry_after(headers: &HeaderMap) -> Option<Micros> {
    let secs: f64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (secs >= 0.0).then_some((secs * 1_000_000.0) as i64)
}

fn skip(slot: &Slot, outcome: Outcome, now: Micros) -> Attempt {
    Attempt {
        provider: slot.name.clone(),
        attempt: 0,
        outcome,
        http_status: None,
        cost_micros: 0,
        latency_ms: 0,
        started_at: now,
        error: None,
    }
}

fn has_valid_phone(lead: &LeadQuery) -> bool {
    let Some(raw) = lead.phone_raw.as_deref() else {
        return false;
    };
    valid_e164(raw, lead.country.as_deref()).is_some()
}

/// The E.164 form of `raw` when it is a valid number (national numbers read
/// in `region`).
fn valid_e164(raw: &str, region: Option<&str>) -> Option<String> {
    let mut info = PhoneInfo::default();
    PhoneParser::default().parse_into(raw, region.and_then(parse_region), &mut info);
    info.valid.then_some(info.e164)
}

/// `sandbox` is the in-process sandbox and the client that reaches it, when
/// one runs.
fn slot(
    p: &ProviderConfig,
    http: &Client,
    sandbox: Option<(&Sandbox, &Client)>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Slot> {
    let in_sandbox = p.base_url == SANDBOX_URL;
    let (base_url, http) = match sandbox {
        Some((s, h2c)) if in_sandbox => (s.base_url(&p.name), h2c.clone()),
        _ => (p.base_url.clone(), http.clone()),
    };
    let secret = |var: &Option<String>, what: &str| -> Result<Secret> {
        match var {
            Some(var) => match env(var) {
                Some(value) if !value.is_empty() => Ok(Secret::new(value)),
                _ if in_sandbox => Ok(Secret::new("sandbox")),
                _ => Err(Error::MissingSecret {
                    provider: p.name.clone(),
                    var: var.clone(),
                }),
            },
            None if in_sandbox => Ok(Secret::new("sandbox")),
            None => Err(Error::Config(format!(
                "provider `{}`: {what} is required for a provider outside the sandbox",
                p.name
            ))),
        }
    };
    let contract = match p.kind {
        ProviderKind::Orion => Contract::Find(Box::new(Orion::new(
            &base_url,
            secret(&p.api_key_env, "api_key_env")?,
        ))),
        ProviderKind::Astra => Contract::Find(Box::new(Astra::new(
            &base_url,
            secret(&p.api_key_env, "api_key_env")?,
        ))),
        ProviderKind::Nimbus => Contract::Find(Box::new(Nimbus::new(
            &base_url,
            secret(&p.api_key_env, "api_key_env")?,
        ))),
        ProviderKind::Twilio => Contract::Describe(Box::new(Twilio::new(
            &base_url,
            secret(&p.api_key_env, "api_key_env")?,
            secret(&p.api_secret_env, "api_secret_env")?,
        ))),
        ProviderKind::Http => {
            let contract = p.http.clone().ok_or_else(|| {
                Error::Config(format!("provider `{}`: missing [providers.http]", p.name))
            })?;
            // A declared provider may need no key at all.
            let key = if p.api_key_env.is_some() || in_sandbox {
                secret(&p.api_key_env, "api_key_env")?
            } else {
                Secret::default()
            };
            Contract::Find(Box::new(
                DeclaredProvider::new(&base_url, key, contract)
                    .map_err(|e| Error::Config(format!("provider `{}`: {e}", p.name)))?,
            ))
        }
    };
    Ok(Slot {
        name: Arc::from(p.name.as_str()),
        cost_per_call: usd_to_micros(p.cost_per_call_usd),
        cost_per_hit: usd_to_micros(p.cost_per_hit_usd),
        config: p.clone(),
        contract,
        http,
    })
}
