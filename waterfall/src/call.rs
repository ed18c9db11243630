//! Calling one provider: reserve budget and a permit, send, read the answer,
//! retry what a retry can fix, and record every call the moment it ends.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, RequestBuilder, StatusCode};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::build::Slot;
use crate::clock::Micros;
use crate::lookup::{Attempt, Outcome, Policy};
use crate::usage::{LeadRef, Sending};
use crate::waterfall::{MS, Waterfall};

/// One contract's side of a call: the request, and what an answer means.
pub(crate) trait Ask {
    type Reply;
    fn request(&self, http: &Client) -> RequestBuilder;
    /// Reads an answer that is neither `429` nor `5xx`: the reply and how
    /// the call is billed and recorded, or `Err(reason)` for a refusal that
    /// retrying will not change.
    fn read(&self, status: StatusCode, body: &[u8]) -> Result<(Self::Reply, Verdict), String>;
}

/// How an answered call is billed and recorded.
pub(crate) enum Verdict {
    Hit,
    Miss,
    /// A number came back that is not valid: billed as a hit (the provider
    /// charged for it), recorded as a miss with the reason.
    Invalid(String),
}

/// How asking one provider ended.
pub(crate) enum Called<R> {
    Answered(R),
    Failed,
    RateLimited,
    BudgetExhausted,
    DeadlinePassed,
}

/// What the calls made for one lead (or one number) share: the waterfall,
/// whose lookup it is, the deadline, and the attempts so far.
pub(crate) struct Calls<'a> {
    pub waterfall: &'a Waterfall,
    pub lead: &'a LeadRef,
    /// The order the lead's providers are asked in, written on each attempt.
    pub policy: Option<Policy>,
    pub deadline: Micros,
    /// Spreads the backoff of different leads apart.
    pub jitter_seed: u64,
    pub attempts: Vec<Attempt>,
    /// An answered call not yet recorded: its caller first remembers the
    /// answer in the cache, then records it ([`Calls::record_answer`]). A
    /// process killed between the two leaves the answer remembered and the
    /// request an `unknown` row; never a paid row whose answer the cache
    /// forgot, which the restart would pay for again.
    pub answered: Option<(Attempt, Option<u64>)>,
}

impl Calls<'_> {
    /// Keeps an attempt and hands it to the usage ledger at once
    /// (`ticket`: its request's in the journal; `None` for a skip).
    pub(crate) async fn record(&mut self, mut attempt: Attempt, ticket: Option<u64>) {
        if let Some(error) = &mut attempt.error {
            self.waterfall.redact.apply(error);
        }
        self.waterfall
            .ledger
            .record(self.lead, &attempt, ticket)
            .await;
        self.attempts.push(attempt);
    }

    /// Records the answered call [`Calls::ask`] left for its caller, once
    /// the answer is in the cache.
    pub(crate) async fn record_answer(&mut self) {
        if let Some((attempt, ticket)) = self.answered.take() {
            self.record(attempt, ticket).await;
        }
    }

    /// A provider passed over without a call.
    pub(crate) async fn skip(&mut self, name: &Arc<str>, outcome: Outcome, note: Option<&str>) {
        let now = self.waterfall.services.clock.now();
        let mut attempt = Attempt::skip(name, outcome, now, self.policy);
        attempt.error = note.map(str::to_string);
        self.record(attempt, None).await;
    }

    /// Calls the provider in `slot`, retrying what a retry can fix.
    pub(crate) async fn ask<P: ?Sized, A: Ask>(
        &mut self,
        slot: &Slot<P>,
        ask: &A,
    ) -> Called<A::Reply> {
        let w = self.waterfall;
        let s = &w.services;
        let tries = slot.config.retries.saturating_add(1);
        let max_cost = slot.cost_per_call + slot.cost_per_hit;
        let org = self.lead.organization_id.as_deref();
        let window = w.lookup.rate_window_secs as i64 * 1_000_000;
        let mut failed = Called::Failed;
        for attempt in 1..=tries as i32 {
            let now = s.clock.now();
            if now >= self.deadline {
                return Called::DeadlinePassed;
            }
            // Reserved even without a cap: a shared budget books the day's
            // spend for `leadflow status`.
            let Some(reservation) = s.budget.reserve(max_cost, org, now).await else {
                // Recorded like a full limit or an open circuit: a lead
                // left unasked says why in `provider_usage` too.
                self.skip(
                    &slot.name,
                    Outcome::BudgetExhausted,
                    Some("provider budget spent ([budget])"),
                )
                .await;
                return Called::BudgetExhausted;
            };
            if !s
                .limiter
                .try_acquire(&slot.name, slot.config.max_requests_per_hour, window, now)
                .await
            {
                s.budget.settle(reservation, 0, org, now).await;
                self.skip(
                    &slot.name,
                    Outcome::RateLimited,
                    Some("hourly request limit reached"),
                )
                .await;
                return Called::RateLimited;
            }

            let timeout = (slot.config.timeout_ms as i64 * MS).min(self.deadline - now);
            // On record before it leaves: a request is paid for whether or
            // not this process lives to see the answer.
            let ticket = w.ledger.sending(Sending {
                lead: self.lead,
                provider: &slot.name,
                attempt,
                started_at: now,
                policy: self.policy,
            });
            let sent = send(
                ask.request(&slot.http),
                Duration::from_micros(timeout as u64),
            )
            .await;
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
                policy: self.policy,
            };
            // How long to wait before the next try, if one may help.
            let retry_in: Option<Micros>;
            match sent {
                Ok((status, headers, body)) => {
                    record.http_status = Some(i32::from(status.as_u16()));
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        let wait = retry_after(&headers).unwrap_or(self.backoff(attempt));
                        record.outcome = Outcome::RateLimited;
                        record.error = Some(format!("429, Retry-After {}ms", wait / MS));
                        failed = Called::RateLimited;
                        retry_in =
                            (wait <= w.lookup.max_retry_after_ms as i64 * MS).then_some(wait);
                    } else if status.is_redirection() {
                        // Not followed (see `client_builder`): permanent.
                        record.error = Some(format!(
                            "HTTP {}: redirects are not followed (a provider API answers where it is asked)",
                            status.as_u16()
                        ));
                        s.breaker.record(&slot.name, false, ended).await;
                        failed = Called::Failed;
                        retry_in = None;
                    } else if status.is_server_error() {
                        record.error = Some(crate::provider::unexpected(status, &body));
                        s.breaker.record(&slot.name, false, ended).await;
                        failed = Called::Failed;
                        retry_in = Some(self.backoff(attempt));
                    } else {
                        match ask.read(status, &body) {
                            Ok((reply, verdict)) => {
                                let billed_hit = !matches!(verdict, Verdict::Miss);
                                (record.outcome, record.error) = match verdict {
                                    Verdict::Hit => (Outcome::Hit, None),
                                    Verdict::Miss => (Outcome::Miss, None),
                                    Verdict::Invalid(why) => (Outcome::Miss, Some(why)),
                                };
                                record.cost_micros = slot.cost_per_call
                                    + if billed_hit { slot.cost_per_hit } else { 0 };
                                s.budget
                                    .settle(reservation, record.cost_micros, org, ended)
                                    .await;
                                s.breaker.record(&slot.name, true, ended).await;
                                self.answered = Some((record, ticket));
                                return Called::Answered(reply);
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
                    retry_in = Some(self.backoff(attempt));
                }
            }
            s.budget.settle(reservation, 0, org, ended).await;
            self.record(record, ticket).await;
            match retry_in {
                Some(wait) if attempt < tries as i32 && s.clock.now() + wait < self.deadline => {
                    s.clock.sleep(Duration::from_micros(wait as u64)).await;
                }
                _ => break,
            }
        }
        failed
    }

    /// Full-jitter exponential backoff before retry `attempt`.
    fn backoff(&self, attempt: i32) -> Micros {
        let lookup = &self.waterfall.lookup;
        let cap = (lookup
            .retry_base_ms
            .saturating_mul(1 << (attempt - 1).clamp(0, 20)))
        .min(lookup.retry_max_ms)
        .max(1) as i64
            * MS;
        let n = self.waterfall.jitter.fetch_add(1, Ordering::Relaxed);
        let r = xxh3_64_with_seed(&n.to_le_bytes(), self.jitter_seed);
        (r % cap as u64) as i64 + 1
    }
}

/// Sends a request and reads the whole answer within `timeout`.
async fn send(
    request: RequestBuilder,
    timeout: Duration,
) -> Result<(StatusCode, HeaderMap, bytes::Bytes), reqwest::Error> {
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
