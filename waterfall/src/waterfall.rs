//! The lookup policy: for one lead, which providers are candidates (enabled,
//! tier met, circuit closed, in priority order), what is skipped and why,
//! when to stop, and which status the lead ends with.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leadflow_phone::{PhoneInfo, PhoneParser, parse_region};
use reqwest::{Client, RequestBuilder, StatusCode};
use tokio::sync::{Semaphore, watch};

use crate::adaptive::{
    Dice, Draw, Evidence, Learned, Segment, expected_cost_per_hit, order_by_index,
};
use crate::breaker::{CircuitBreaker, InMemoryCircuitBreaker};
use crate::budget::{Budget, InMemoryBudget};
use crate::build::{Slot, WaterfallBuilder};
use crate::cache::{CacheKey, Claim, InMemoryLookupCache, LookupCache, ProviderAnswer};
use crate::call::{Ask, Called, Calls, Verdict};
use crate::clock::{Clock, Micros};
use crate::config::{
    CacheConfig, LookupConfig, Order, OrderConfig, WaterfallConfig, dollars, usd_of_micros,
};
use crate::lookup::{LineTypeLookup, LineTypeStatus, Lookup, LookupStatus, Outcome, Policy};
use crate::provider::{
    Answer, LeadQuery, LineType, LineTypeProvider, OwnPhone, Provider, Redactor,
};
use crate::rate_limit::{InMemoryRateLimiter, RateLimiter};
use crate::usage::{LeadRef, UsageLedger};

pub(crate) const MS: Micros = 1_000;

/// The shared state the waterfall consults: time, limits, cache, breakers, budget.
#[derive(Debug, Clone)]
pub struct Services {
    pub clock: Arc<dyn Clock>,
    pub limiter: Arc<dyn RateLimiter>,
    pub cache: Arc<dyn LookupCache>,
    pub breaker: Arc<dyn CircuitBreaker>,
    pub budget: Arc<dyn Budget>,
    /// The providers' hit rates by segment, for the adaptive order.
    pub learned: Arc<Learned>,
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
            learned: Arc::new(Learned::new(config)),
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
    /// Leads calling providers at once, across the process.
    pub(crate) in_flight: Semaphore,
    pub(crate) jitter: AtomicU64,
    pub(crate) ledger: UsageLedger,
    /// Takes every configured credential out of what is recorded.
    pub(crate) redact: Redactor,
    /// Names of the enabled phone finders, in waterfall order.
    pub(crate) finder_names: Vec<Arc<str>>,
    /// Where each of them is in `finders`.
    pub(crate) enabled: Vec<usize>,
    /// How each lead's providers are ordered.
    pub(crate) order: OrderConfig,
    /// Where each enabled finder's evidence is kept in `services.learned`.
    pub(crate) learn_index: Vec<usize>,
    /// Questions (lead, provider) being asked in this process right now;
    /// a second lookup of one waits for the first's answer.
    pub(crate) asking: Mutex<HashMap<Question, watch::Receiver<()>>>,
}

/// "Does this provider know this lead's phone?"
type Question = (CacheKey, Arc<str>);

/// The right to ask one provider about one lead in this process: ends
/// (waking whoever waits for the answer) when dropped.
struct Asking<'a> {
    waterfall: &'a Waterfall,
    question: Question,
    _done: watch::Sender<()>,
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        let mut asking = self.waterfall.asking.lock().expect("asking lock");
        asking.remove(&self.question);
    }
}

/// What the lead's attempts so far add up to.
#[derive(Debug, Default)]
struct Tally {
    miss: bool,
    error: bool,
    rate_limited: bool,
    tier: bool,
    value: bool,
    budget: bool,
}

impl Tally {
    /// The lead's status, by precedence: a phone, then a spent budget, then
    /// an answered miss, then failures, then skips.
    fn status(&self, found: bool) -> LookupStatus {
        first_of(
            [
                (found, LookupStatus::Found),
                (self.budget, LookupStatus::BudgetExhausted),
                (self.miss, LookupStatus::NotFound),
                (self.error, LookupStatus::Error),
                (self.rate_limited, LookupStatus::RateLimited),
                (self.value, LookupStatus::SkippedValue),
                (self.tier, LookupStatus::SkippedTier),
            ],
            LookupStatus::NotFound,
        )
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

    /// Whether a lookup can call anyone: with no phone-finding provider
    /// enabled, every lead's lookup is `not_run`.
    pub fn calls_providers(&self) -> bool {
        self.finders.iter().any(|s| s.config.enabled)
    }

    /// Names of the phone-finding providers, in waterfall order.
    pub fn finders(&self) -> impl Iterator<Item = &str> {
        self.finders.iter().map(|s| &*s.name)
    }

    /// Whether any provider can describe numbers (`phone_line_type`).
    pub fn has_line_type_providers(&self) -> bool {
        self.describers.iter().any(|s| s.config.enabled)
    }

    /// Ends the waterfall's use of shared state: a shared rate limiter hands
    /// back the permits it holds and has not used, a shared budget books
    /// what it spent and hands back the rest, and what the adaptive order
    /// learned joins the fleet's pool.
    pub async fn close(&self) {
        self.services.limiter.close().await;
        self.services.budget.close().await;
        self.services.learned.exchange().await;
    }

    /// Runs the waterfall for one lead, reporting every call and skip to the
    /// usage ledger on `owner`'s behalf. Never fails: a provider's failure
    /// is an outcome in the result.
    pub async fn find(&self, lead: &LeadQuery, owner: &LeadRef) -> Lookup {
        if !self.calls_providers() {
            return Lookup::not_run();
        }
        if !self.lookup.lookup_when_phone_valid && has_valid_phone(lead) {
            return Lookup::ended(LookupStatus::SkippedHasPhone);
        }
        let Some(key) = lead.cache_key() else {
            // No email, name or website: nothing a provider could match on.
            return Lookup::ended(LookupStatus::NotFound);
        };
        let clock = &*self.services.clock;
        let draw = self.draw(owner, || key);
        // What each provider already answered about this lead: a phone one
        // of them found ends the lookup; one that had none is not asked again.
        let remembered = if self.cache.enabled {
            self.services
                .cache
                .answers(key, &self.finder_names, clock.now())
                .await
        } else {
            vec![None; self.finder_names.len()]
        };
        for (name, answer) in self.finder_names.iter().zip(&remembered) {
            if let Some(ProviderAnswer::Found(phone)) = answer {
                let mut lookup = Lookup::ended(LookupStatus::Cached);
                lookup.phone_e164 = Some(phone.to_string());
                lookup.provider = Some(name.clone());
                lookup.policy = Some(draw.policy);
                return lookup;
            }
        }

        // Only a lead that will call a provider waits for a place.
        let _permit = self.in_flight.acquire().await.expect("never closed");
        let started = clock.now();
        let plan = self.plan(lead, draw);
        let mut calls = Calls {
            waterfall: self,
            lead: owner,
            policy: Some(plan.policy),
            deadline: started.saturating_add(self.lookup.deadline_ms as i64 * MS),
            jitter_seed: key.0 as u64,
            attempts: Vec::new(),
            answered: None,
        };
        let mut tally = Tally::default();
        let mut found = None;
        // Whether an answer came from the cache, and whether one was paid for.
        let (mut remembered_any, mut asked_any) = (false, false);
        for &at in &plan.order {
            let (slot, answer) = (self.enabled_finder(at), &remembered[at]);
            if answer.is_some() {
                tally.miss = true;
                remembered_any = true;
                continue;
            }
            if lead.user_tier.unwrap_or(0) < slot.config.min_user_tier {
                calls.skip(&slot.name, Outcome::SkippedTier, None).await;
                tally.tier = true;
                continue;
            }
            if let Some(why) = plan.over_value(self, at) {
                calls
                    .skip(&slot.name, Outcome::SkippedValue, Some(&why))
                    .await;
                tally.value = true;
                continue;
            }
            let asking = if self.cache.enabled {
                match self.ask_or_wait(key, slot, calls.deadline).await {
                    Ok(asking) => Some(asking),
                    Err(ProviderAnswer::Found(phone)) => {
                        remembered_any = true;
                        found = Some((phone.to_string(), slot.name.clone()));
                        break;
                    }
                    Err(ProviderAnswer::NotFound) => {
                        remembered_any = true;
                        tally.miss = true;
                        continue;
                    }
                }
            } else {
                None
            };
            // After the claim: a half-open circuit's one probe is taken only
            // by a lookup that will call.
            if !self.services.breaker.allows(&slot.name, clock.now()).await {
                if asking.is_some() {
                    self.services.cache.unclaim(key, &slot.name).await;
                }
                drop(asking);
                calls.skip(&slot.name, Outcome::CircuitOpen, None).await;
                tally.error = true;
                continue;
            }
            asked_any = true;
            let ask = FindPhone {
                provider: &*slot.contract,
                lead,
            };
            let called = calls.ask(slot, &ask).await;
            // An answer is remembered the moment it is paid for, before the
            // lead leaves: a rerun after a crash does not pay for it again.
            let answer = match &called {
                Called::Answered(reply) => {
                    Some(reply.as_deref().map_or(ProviderAnswer::NotFound, |e164| {
                        ProviderAnswer::Found(e164.into())
                    }))
                }
                _ => None,
            };
            self.settle(key, &slot.name, asking, answer).await;
            calls.record_answer().await;
            if let (Some(segment), Called::Answered(reply)) = (&plan.segment, &called) {
                self.services
                    .learned
                    .record(self.learn_index[at], segment, reply.is_some());
            }
            match called {
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

        let mut status = tally.status(found.is_some());
        if remembered_any
            && !asked_any
            && matches!(status, LookupStatus::Found | LookupStatus::NotFound)
        {
            status = LookupStatus::Cached;
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
            policy: Some(plan.policy),
        }
    }

    /// The enabled finder at position `at` of the waterfall order.
    fn enabled_finder(&self, at: usize) -> &Slot<dyn Provider> {
        &self.finders[self.enabled[at]]
    }

    /// The lead's side of the A/B split and whether it explores: by its
    /// `lead_id`, else by what identifies it to providers.
    fn draw(&self, owner: &LeadRef, key: impl FnOnce() -> CacheKey) -> Draw {
        match owner.lead_id.as_deref() {
            Some(id) => Draw::of(&self.order, id.as_bytes()),
            None => Draw::of(&self.order, &key().0.to_le_bytes()),
        }
    }

    /// The order `lead`'s enabled providers are asked in, under `draw`'s policy.
    fn plan(&self, lead: &LeadQuery, draw: Draw) -> Plan {
        let n = self.learn_index.len();
        // Learned from every answered call under the adaptive config, the
        // A/B's priority half included.
        let segment =
            (self.order.order == Order::Adaptive).then(|| self.services.learned.segment(lead));
        let (Policy::Adaptive, Some(segment_of)) = (draw.policy, &segment) else {
            return Plan {
                policy: draw.policy,
                order: (0..n).collect(),
                estimates: Vec::new(),
                segment,
                explored: false,
            };
        };
        let mut posteriors = Vec::with_capacity(n);
        self.services
            .learned
            .posteriors(&self.learn_index, segment_of, &mut posteriors);
        let mut dice = draw.explore.map(Dice::new);
        let estimates: Vec<Estimate> = (0..n)
            .zip(&posteriors)
            .map(|(at, &(alpha, beta))| {
                let slot = self.enabled_finder(at);
                let p_hit = match &mut dice {
                    Some(dice) => dice.beta(alpha, beta),
                    None => alpha / (alpha + beta),
                };
                let (call, hit) = (slot.cost_per_call as f64, slot.cost_per_hit as f64);
                let p_mean = alpha / (alpha + beta);
                Estimate {
                    p_hit,
                    cost_per_hit_micros: expected_cost_per_hit(call, hit, p_hit),
                    p_mean,
                    mean_cost_per_hit_micros: expected_cost_per_hit(call, hit, p_mean),
                }
            })
            .collect();
        let mut order = Vec::with_capacity(n);
        order_by_index(n, |i| estimates[i].cost_per_hit_micros, &mut order);
        Plan {
            policy: draw.policy,
            order,
            estimates,
            segment,
            explored: dice.is_some(),
        }
    }

    /// How the waterfall would ask for `lead`'s phone now, and why: the
    /// order, each provider's estimate and evidence, and what it would pass
    /// over before any call (tier, value). Limits, breakers and the budget
    /// are consulted only when a call is about to be made.
    pub fn explain(&self, lead: &LeadQuery, owner: &LeadRef) -> Explanation {
        let draw = self.draw(owner, || lead.cache_key().unwrap_or(CacheKey(0)));
        let plan = self.plan(lead, draw);
        let learned = &self.services.learned;
        let mut steps: Vec<ExplainedProvider> = plan
            .order
            .iter()
            .map(|&at| {
                let slot = self.enabled_finder(at);
                let skip = if lead.user_tier.unwrap_or(0) < slot.config.min_user_tier {
                    Some(format!(
                        "skipped_tier: the lead's user_tier {} is below min_user_tier {}",
                        lead.user_tier.unwrap_or(0),
                        slot.config.min_user_tier
                    ))
                } else {
                    plan.over_value(self, at)
                        .map(|why| format!("skipped_value: {why}"))
                };
                ExplainedProvider {
                    estimate: plan.estimates.get(at).copied(),
                    evidence: plan
                        .segment
                        .as_ref()
                        .map(|s| learned.evidence(&slot.name, s))
                        .unwrap_or_default(),
                    skip,
                    ..ExplainedProvider::of(slot)
                }
            })
            .collect();
        steps.extend(
            self.finders
                .iter()
                .filter(|s| !s.config.enabled)
                .map(|slot| ExplainedProvider {
                    skip: Some("disabled: enabled = false".into()),
                    ..ExplainedProvider::of(slot)
                }),
        );
        Explanation {
            policy: plan.policy,
            segment: plan.segment.map(|s| s.name().to_string()),
            explored: plan.explored,
            providers: steps,
        }
    }

    /// The order alone, as [`Waterfall::find`] computes it for `lead`:
    /// the providers' names in asking order. What a benchmark times.
    pub fn order_of(&self, lead: &LeadQuery, owner: &LeadRef) -> (Policy, Vec<&str>) {
        let draw = self.draw(owner, || lead.cache_key().unwrap_or(CacheKey(0)));
        let plan = self.plan(lead, draw);
        let names = plan.order.iter().map(|&at| &*self.finder_names[at]);
        (plan.policy, names.collect())
    }

    /// Takes the right to ask `slot`'s provider about the lead, or, when
    /// someone is asking it already (here, or another worker through a
    /// shared cache), waits for that answer: `Err(answer)`. A wait that
    /// ends without an answer (the other call failed, or its claim ran out)
    /// takes the right itself.
    async fn ask_or_wait<P: ?Sized>(
        &self,
        key: CacheKey,
        slot: &Slot<P>,
        deadline: Micros,
    ) -> Result<Asking<'_>, ProviderAnswer> {
        let clock = &*self.services.clock;
        let question = (key, slot.name.clone());
        let asking = loop {
            let mut waiting = {
                let mut asking = self.asking.lock().expect("asking lock");
                match asking.get(&question) {
                    Some(rx) => rx.clone(),
                    None => {
                        let (tx, rx) = watch::channel(());
                        asking.insert(question.clone(), rx);
                        break Asking {
                            waterfall: self,
                            question,
                            _done: tx,
                        };
                    }
                }
            };
            // Returns when the asker is done (its sender dropped); its
            // answer, if it got one, is then read by the claim below.
            let _ = waiting.changed().await;
        };
        // The claim also reads the answer, so one written between our
        // first read and now (by the lookup we waited for, or another
        // worker) is used, not paid for again.
        let hold = (slot.config.timeout_ms as i64 * MS)
            .saturating_mul(i64::from(slot.config.retries) + 1)
            .saturating_add(self.lookup.retry_max_ms as i64 * MS);
        let mut poll = 10 * MS;
        loop {
            let now = clock.now();
            let until = now.saturating_add(hold).min(deadline.max(now + MS));
            match self.services.cache.claim(key, &slot.name, now, until).await {
                Claim::Granted => return Ok(asking),
                Claim::Answered(answer) => return Err(answer),
                // Another worker is asking: wait for its answer, or for
                // its claim to lapse, within this lead's deadline.
                Claim::Held if now >= deadline => return Ok(asking),
                Claim::Held => {
                    clock.sleep(Duration::from_micros(poll as u64)).await;
                    tokio::task::yield_now().await;
                    poll = (poll * 2).min(200 * MS);
                }
            }
        }
    }

    /// Ends a question this lookup claimed (`asking`; nothing to do without
    /// a claim): remembers the provider's answer for the TTL that fits it,
    /// or, when the call got none (`None`: failed, rate limited, out of
    /// budget or time), gives the claim up for the next asker. Whoever waits
    /// on the question wakes after that, when `asking` drops.
    async fn settle(
        &self,
        key: CacheKey,
        provider: &str,
        asking: Option<Asking<'_>>,
        answer: Option<ProviderAnswer>,
    ) {
        if asking.is_none() {
            return;
        }
        match answer {
            Some(answer) => {
                let ttl_hours = match answer {
                    ProviderAnswer::Found(_) => self.cache.ttl_hours,
                    ProviderAnswer::NotFound => self.cache.miss_ttl_hours,
                };
                let ttl = Duration::from_secs(ttl_hours.saturating_mul(3_600));
                let now = self.services.clock.now();
                self.services
                    .cache
                    .remember(key, provider, answer, now, ttl)
                    .await;
            }
            None => self.services.cache.unclaim(key, provider).await,
        }
        drop(asking);
    }

    /// Asks the line-type providers (Twilio) about `e164`, in priority order,
    /// until one answers, on `owner`'s behalf (its usage rows carry the
    /// lead). Answers are cached per number like lookups per lead, so a
    /// number is paid for once within the TTL, across the fleet.
    pub async fn line_type(&self, e164: &str, owner: &LeadRef) -> LineTypeLookup {
        let clock = &*self.services.clock;
        let key = CacheKey::of_number(e164);
        let names: Vec<Arc<str>> = self
            .describers
            .iter()
            .filter(|s| s.config.enabled)
            .map(|s| s.name.clone())
            .collect();
        let remembered = if self.cache.enabled {
            self.services.cache.answers(key, &names, clock.now()).await
        } else {
            vec![None; names.len()]
        };
        for answer in remembered.iter().flatten() {
            if let ProviderAnswer::Found(described) = answer {
                return LineTypeLookup::cached(LineType::from_cache(described));
            }
        }

        let _permit = self.in_flight.acquire().await.expect("never closed");
        let mut calls = Calls {
            waterfall: self,
            lead: owner,
            policy: None,
            deadline: clock
                .now()
                .saturating_add(self.lookup.deadline_ms as i64 * MS),
            jitter_seed: key.0 as u64,
            attempts: Vec::new(),
            answered: None,
        };
        let mut tally = LineTypeTally::default();
        let mut line_type = None;
        let describers = self.describers.iter().filter(|s| s.config.enabled);
        for (slot, answer) in describers.zip(remembered) {
            if answer.is_some() {
                // It did not know the number.
                tally.unknown = true;
                continue;
            }
            let asking = if self.cache.enabled {
                match self.ask_or_wait(key, slot, calls.deadline).await {
                    Ok(asking) => Some(asking),
                    Err(ProviderAnswer::Found(described)) => {
                        return LineTypeLookup::cached(LineType::from_cache(&described));
                    }
                    Err(ProviderAnswer::NotFound) => {
                        tally.unknown = true;
                        continue;
                    }
                }
            } else {
                None
            };
            if !self.services.breaker.allows(&slot.name, clock.now()).await {
                if asking.is_some() {
                    self.services.cache.unclaim(key, &slot.name).await;
                }
                calls.skip(&slot.name, Outcome::CircuitOpen, None).await;
                tally.circuit = true;
                continue;
            }
            let ask = DescribeNumber {
                provider: &*slot.contract,
                e164,
            };
            let called = calls.ask(slot, &ask).await;
            let answer = match &called {
                Called::Answered(described) => {
                    Some(described.as_ref().map_or(ProviderAnswer::NotFound, |d| {
                        ProviderAnswer::Found(d.to_cache().into())
                    }))
                }
                _ => None,
            };
            self.settle(key, &slot.name, asking, answer).await;
            calls.record_answer().await;
            match called {
                Called::Answered(described) => {
                    tally.unknown |= described.is_none();
                    line_type = described;
                    break;
                }
                Called::BudgetExhausted => {
                    tally.budget = true;
                    break;
                }
                Called::DeadlinePassed => {
                    tally.error = true;
                    break;
                }
                Called::Failed => tally.error = true,
                Called::RateLimited => tally.rate_limited = true,
            }
        }
        LineTypeLookup {
            status: tally.status(line_type.is_some()),
            line_type,
            attempts: calls.attempts,
        }
    }
}

/// How one lead's enabled providers will be asked.
#[derive(Debug)]
struct Plan {
    policy: Policy,
    /// Positions among the enabled finders, in asking order.
    order: Vec<usize>,
    /// Per enabled finder, what the adaptive order read; empty under the
    /// priority order.
    estimates: Vec<Estimate>,
    /// The lead's segment, when the adaptive order learns from its calls.
    segment: Option<Segment>,
    /// Whether the estimates were sampled (the lead explores).
    explored: bool,
}

impl Plan {
    /// Why the enabled finder at `at` is not worth calling for this lead:
    /// its expected cost per hit is above `value_of_found_phone_usd`.
    fn over_value(&self, waterfall: &Waterfall, at: usize) -> Option<String> {
        let value = waterfall.order.value_of_found_phone_usd?;
        let e = self.estimates.get(at)?;
        (e.mean_cost_per_hit_micros > value * 1e6).then(|| {
            format!(
                "expected cost per hit {} (P(hit) {:.3}) is above value_of_found_phone_usd {}",
                usd_of_micros(e.mean_cost_per_hit_micros),
                e.p_mean,
                dollars((value * 1e6).round() as i64)
            )
        })
    }
}

/// The adaptive order's reading of one provider for one lead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// P(hit | the lead's segment): the posterior mean, or a draw from the
    /// posterior when the lead explores.
    pub p_hit: f64,
    /// `cost_per_call / p_hit + cost_per_hit`, µUSD: what the order sorts by.
    pub cost_per_hit_micros: f64,
    /// The posterior mean of P(hit | segment).
    pub p_mean: f64,
    /// The expected cost per hit at the mean, µUSD: what
    /// `value_of_found_phone_usd` is held against (a draw of an exploring
    /// lead never skips a provider a mean would call).
    pub mean_cost_per_hit_micros: f64,
}

/// [`Waterfall::explain`]'s answer.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub policy: Policy,
    /// The lead's segment, under the adaptive config.
    pub segment: Option<String>,
    /// Whether the estimates are draws (the lead is one of `explore_share`).
    pub explored: bool,
    /// The enabled providers in asking order, then the disabled ones.
    pub providers: Vec<ExplainedProvider>,
}

/// One provider in an [`Explanation`].
#[derive(Debug, Clone)]
pub struct ExplainedProvider {
    pub provider: Arc<str>,
    pub priority: i32,
    pub cost_per_call_usd: f64,
    pub cost_per_hit_usd: f64,
    pub estimate: Option<Estimate>,
    /// Calls and hits at each level of the segment, broadest first.
    pub evidence: Vec<(String, Evidence)>,
    /// Why it would not be called, when it would not.
    pub skip: Option<String>,
}

impl ExplainedProvider {
    /// The provider as configured: no estimate, no evidence, no skip.
    fn of<P: ?Sized>(slot: &Slot<P>) -> Self {
        Self {
            provider: slot.name.clone(),
            priority: slot.config.priority,
            cost_per_call_usd: slot.config.cost_per_call_usd,
            cost_per_hit_usd: slot.config.cost_per_hit_usd,
            estimate: None,
            evidence: Vec::new(),
            skip: None,
        }
    }
}

/// What a number's line-type attempts so far add up to.
#[derive(Debug, Default)]
struct LineTypeTally {
    unknown: bool,
    budget: bool,
    error: bool,
    rate_limited: bool,
    circuit: bool,
}

impl LineTypeTally {
    /// The number's status, by precedence: a description, then a spent
    /// budget, then a provider's "unknown number", then failures, then
    /// what kept the providers from being asked.
    fn status(&self, described: bool) -> LineTypeStatus {
        first_of(
            [
                (described, LineTypeStatus::Found),
                (self.budget, LineTypeStatus::BudgetExhausted),
                (self.unknown, LineTypeStatus::UnknownNumber),
                (self.error, LineTypeStatus::Error),
                (self.rate_limited, LineTypeStatus::RateLimited),
                (self.circuit, LineTypeStatus::CircuitOpen),
            ],
            LineTypeStatus::NotRun,
        )
    }
}

/// The status of the first condition that holds, in order of precedence;
/// `otherwise` when none does.
fn first_of<S, const N: usize>(precedence: [(bool, S); N], otherwise: S) -> S {
    precedence
        .into_iter()
        .find_map(|(holds, status)| holds.then_some(status))
        .unwrap_or(otherwise)
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
    match &lead.own_phone {
        OwnPhone::None => false,
        OwnPhone::Raw(raw) => valid_e164(raw, lead.country.as_deref()).is_some(),
        OwnPhone::Parsed { valid } => *valid,
    }
}

/// The E.164 form of `raw` when it is a valid number (national numbers read
/// in `region`).
fn valid_e164(raw: &str, region: Option<&str>) -> Option<String> {
    let mut info = PhoneInfo::default();
    PhoneParser::without_national().parse_into(raw, region.and_then(parse_region), &mut info);
    info.valid.then_some(info.e164)
}
