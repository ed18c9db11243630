//! The lookup policy: for one lead, which providers are candidates (enabled,
//! tier met, circuit closed, in priority order), what is skipped and why,
//! when to stop, and which status the lead ends with.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use leadflow_phone::{PhoneInfo, PhoneParser, parse_region};
use reqwest::{Client, RequestBuilder, StatusCode};
use tokio::sync::Semaphore;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::breaker::{CircuitBreaker, InMemoryCircuitBreaker};
use crate::budget::{Budget, InMemoryBudget};
use crate::build::{Slot, WaterfallBuilder};
use crate::cache::{CachedLookup, InMemoryLookupCache, LookupCache};
use crate::call::{Ask, Called, Calls, Verdict};
use crate::clock::{Clock, Micros};
use crate::config::{CacheConfig, LookupConfig, WaterfallConfig};
use crate::lookup::{LineTypeLookup, Lookup, LookupStatus, Outcome};
use crate::provider::{Answer, LeadQuery, LineType, LineTypeProvider, Provider, Redactor};
use crate::rate_limit::{InMemoryRateLimiter, RateLimiter};
use crate::usage::{LeadRef, UsageLedger};

pub(crate) const MS: Micros = 1_000;
const HOUR: Micros = 3_600 * 1_000_000;

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

/// The providers of a config, ready to ask for leads' phones.
#[derive(Debug)]
pub struct Waterfall {
    pub(crate) finders: Vec<Slot<dyn Provider>>,
    pub(crate) describers: Vec<Slot<dyn LineTypeProvider>>,
    pub(crate) services: Services,
    pub(crate) lookup: LookupConfig,
    pub(crate) cache: CacheConfig,
    pub(crate) has_budget: bool,
    /// Leads calling providers at once, across the process.
    pub(crate) in_flight: Semaphore,
    pub(crate) jitter: AtomicU64,
    pub(crate) ledger: UsageLedger,
    /// Takes every configured credential out of what is recorded.
    pub(crate) redact: Redactor,
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

impl Tally {
    /// The lead's status, by precedence: a phone, then a spent budget, then
    /// an answered miss, then failures, then skips.
    fn status(&self, found: bool) -> LookupStatus {
        if found {
            LookupStatus::Found
        } else if self.budget {
            LookupStatus::BudgetExhausted
        } else if self.miss {
            LookupStatus::NotFound
        } else if self.error {
            LookupStatus::Error
        } else if self.rate_limited {
            LookupStatus::RateLimited
        } else if self.tier {
            LookupStatus::SkippedTier
        } else {
            LookupStatus::NotFound
        }
    }

    /// Whether a miss is one every eligible provider agreed on: a miss
    /// caused by a skip may not hold once the skip is over.
    fn settled_miss(&self) -> bool {
        !(self.budget || self.error || self.rate_limited || self.tier)
    }
}

impl Waterfall {
    /// Assembles a waterfall from `config`; see [`WaterfallBuilder`].
    pub fn builder(config: WaterfallConfig) -> WaterfallBuilder {
        WaterfallBuilder::new(config)
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

    /// Runs the waterfall for one lead, reporting every call and skip to the
    /// usage ledger on `owner`'s behalf. Never fails: a provider's failure
    /// is an outcome in the result.
    pub async fn find(&self, lead: &LeadQuery, owner: &LeadRef) -> Lookup {
        if !self.finders.iter().any(|s| s.config.enabled) {
            return Lookup::ended(LookupStatus::NotRun);
        }
        if !self.lookup.lookup_when_phone_valid && has_valid_phone(lead) {
            return Lookup::ended(LookupStatus::SkippedHasPhone);
        }
        let Some(key) = lead.cache_key() else {
            // No email, name or website: nothing a provider could match on.
            return Lookup::ended(LookupStatus::NotFound);
        };
        let clock = &*self.services.clock;
        if self.cache.enabled
            && let Some(hit) = self.services.cache.get(key, clock.now()).await
        {
            let mut lookup = Lookup::ended(LookupStatus::Cached);
            if let Some((phone, provider)) = hit.found {
                lookup.phone_e164 = Some(phone.to_string());
                lookup.provider = Some(provider);
            }
            return lookup;
        }

        // Only a lead that will call a provider waits for a place.
        let _permit = self.in_flight.acquire().await.expect("never closed");
        let started = clock.now();
        let mut calls = Calls {
            waterfall: self,
            lead: owner,
            deadline: started.saturating_add(self.lookup.deadline_ms as i64 * MS),
            jitter_seed: key.0 as u64,
            attempts: Vec::new(),
        };
        let mut tally = Tally::default();
        let mut found = None;
        for slot in self.finders.iter().filter(|s| s.config.enabled) {
            if lead.user_tier.unwrap_or(0) < slot.config.min_user_tier {
                calls.skip(&slot.name, Outcome::SkippedTier, None).await;
                tally.tier = true;
                continue;
            }
            if !self.services.breaker.allows(&slot.name, clock.now()).await {
                calls.skip(&slot.name, Outcome::CircuitOpen, None).await;
                tally.error = true;
                continue;
            }
            let ask = FindPhone {
                provider: &*slot.contract,
                lead,
            };
            match calls.ask(slot, &ask).await {
                Called::Answered(Some(e164)) => {
                    found = Some((e164, slot.name.clone()));
                    break;
                }
                Called::Answered(None) => tally.miss = true,
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

        let status = tally.status(found.is_some());
        let remember = match &found {
            Some(_) => Some(self.cache.ttl_hours),
            None if status == LookupStatus::NotFound && tally.settled_miss() => {
                Some(self.cache.miss_ttl_hours)
            }
            None => None,
        };
        if self.cache.enabled
            && let Some(ttl_hours) = remember
        {
            let value = CachedLookup {
                found: found
                    .as_ref()
                    .map(|(phone, provider): &(String, Arc<str>)| {
                        (Arc::from(phone.as_str()), provider.clone())
                    }),
            };
            let expires = clock
                .now()
                .saturating_add((ttl_hours as i64).saturating_mul(HOUR));
            self.services.cache.put(key, value, expires).await;
        }
        let attempts = calls.attempts;
        let (phone_e164, provider) = found.unzip();
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
        let no_lead = LeadRef::default();
        let mut calls = Calls {
            waterfall: self,
            lead: &no_lead,
            deadline: clock
                .now()
                .saturating_add(self.lookup.deadline_ms as i64 * MS),
            jitter_seed: xxh3_64_with_seed(e164.as_bytes(), 0),
            attempts: Vec::new(),
        };
        let mut line_type = None;
        for slot in self.describers.iter().filter(|s| s.config.enabled) {
            if !self.services.breaker.allows(&slot.name, clock.now()).await {
                calls.skip(&slot.name, Outcome::CircuitOpen, None).await;
                continue;
            }
            let ask = DescribeNumber {
                provider: &*slot.contract,
                e164,
            };
            match calls.ask(slot, &ask).await {
                Called::Answered(described) => {
                    line_type = described;
                    break;
                }
                Called::BudgetExhausted | Called::DeadlinePassed => break,
                Called::Failed | Called::RateLimited => {}
            }
        }
        LineTypeLookup {
            line_type,
            attempts: calls.attempts,
        }
    }
}

/// "A phone for this lead?": a hit counts only when the number is valid
/// (read in the provider's country, else the lead's).
struct FindPhone<'a> {
    provider: &'a dyn Provider,
    lead: &'a LeadQuery,
}

impl Ask for FindPhone<'_> {
    /// The valid E.164 number found, if any.
    type Reply = Option<String>;

    fn request(&self, http: &Client) -> RequestBuilder {
        self.provider.request(http, self.lead)
    }

    fn read(&self, status: StatusCode, body: &[u8]) -> Result<(Self::Reply, Verdict), String> {
        Ok(match self.provider.read(status, body)? {
            Answer::Miss => (None, Verdict::Miss),
            Answer::Hit { phone, country } => {
                let region = country.as_deref().or(self.lead.country.as_deref());
                match valid_e164(&phone, region) {
                    Some(e164) => (Some(e164), Verdict::Hit),
                    None => (
                        None,
                        Verdict::Invalid(format!("answered an invalid number: {phone}")),
                    ),
                }
            }
        })
    }
}

/// "What line is this number?".
struct DescribeNumber<'a> {
    provider: &'a dyn LineTypeProvider,
    e164: &'a str,
}

impl Ask for DescribeNumber<'_> {
    /// `None` when the provider says the number is not valid.
    type Reply = Option<LineType>;

    fn request(&self, http: &Client) -> RequestBuilder {
        self.provider.request(http, self.e164)
    }

    fn read(&self, status: StatusCode, body: &[u8]) -> Result<(Self::Reply, Verdict), String> {
        let described = self.provider.read(status, body)?;
        let verdict = if described.is_some() {
            Verdict::Hit
        } else {
            Verdict::Miss
        };
        Ok((described, verdict))
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
