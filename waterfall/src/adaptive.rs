//! The adaptive order: for each lead, its providers sorted by expected cost
//! to a hit, `cost_per_call / P(hit | segment) + cost_per_hit`, with P
//! learned per provider and segment ([`Learned`]): from earlier outputs at
//! start, from every answered call as the run goes, and across the fleet
//! through an [`EvidenceStore`] (Redis) when there is one.
//!
//! Why that order: the expected spend of asking `1..n` in turn until a hit
//! is `Σ (c_i + p_i·h_i) · Π_{j<i} (1 − p_j)`. Swapping neighbours `i, j`
//! lowers it exactly when `p_j·(c_i + p_i·h_i) > p_i·(c_j + p_j·h_j)`, that
//! is when `c_j/p_j + h_j < c_i/p_i + h_i`: sorting by that index is optimal
//! (the ratio rule of sequential testing, with the pay-on-hit price added;
//! a test checks it against every order of small instances). Which
//! providers are asked, and whether a phone is found, does not depend on
//! the order when hits are independent: only what is paid before it.
//!
//! The estimate is a Beta posterior per (provider, segment) whose prior is
//! the provider's rate in the segment's country, whose own prior is the
//! provider's rate overall: a segment with little evidence borrows from the
//! broader ones, weighted as [`PRIOR_WEIGHT`] calls. A share of leads
//! (`explore_share`) sample the posterior instead of using its mean
//! (Thompson sampling), so a provider whose rate changed gets asked early
//! often enough to show it.

use std::collections::HashMap;
use std::fmt::{Debug, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use leadflow_phone::EmailKind;
use xxhash_rust::xxh3::{Xxh3DefaultBuilder, xxh3_64_with_seed};

use crate::config::{Order, OrderConfig, SegmentField, WaterfallConfig};
use crate::lookup::Policy;
use crate::provider::LeadQuery;

/// How many calls of evidence a broader level's rate counts as in the prior
/// of a narrower one: a segment with this many calls is half its own rate,
/// half its country's.
pub const PRIOR_WEIGHT: f64 = 10.0;

/// The most calls a level's evidence weighs as: months of history cannot
/// make a posterior so sure that exploration never tries a provider again.
pub const MAX_EVIDENCE: f64 = 1_000.0;

/// Calls answered and hits among them, for one provider at one level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evidence {
    pub calls: u64,
    pub hits: u64,
}

impl Evidence {
    fn add(&mut self, other: Evidence) {
        self.calls = self.calls.saturating_add(other.calls);
        self.hits = self.hits.saturating_add(other.hits).min(self.calls);
    }

    fn misses(&self) -> u64 {
        self.calls - self.hits.min(self.calls)
    }
}

/// One provider's evidence at one level, as it travels to and from the
/// fleet's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub provider: String,
    /// The level: `*` (overall), `country:XX`, or the segment's values
    /// joined by `/` in `segment_by` order.
    pub level: String,
    pub evidence: Evidence,
}

/// Where a fleet's evidence is pooled (leadflow-fleet keeps it in Redis).
pub trait EvidenceStore: Send + Sync + Debug {
    /// Adds `deltas` to the pool and returns the whole pool.
    fn exchange(&self, deltas: Vec<Tally>) -> BoxFuture<'_, Result<Vec<Tally>, ExchangeFailed>>;
    /// Claims the adding of `[waterfall] history` to the pool: `true` for
    /// the one worker that should (the pool has no history yet).
    fn claim_seeding(&self) -> BoxFuture<'_, Result<bool, String>>;
    /// The history this worker claimed to add is in the pool.
    fn seeded(&self) -> BoxFuture<'_, ()>;
}

/// Why an exchange did not go through.
#[derive(Debug, Clone)]
pub struct ExchangeFailed {
    pub reason: String,
    /// Whether the deltas may be sent again: not when the store refused
    /// them (some may have been added; sending again would add them twice).
    pub may_retry: bool,
}

/// Where `[waterfall] history` goes ([`Learned::seeding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeding {
    /// Into this process's estimates only (no fleet, or it did not answer).
    Local,
    /// Into the fleet's pool: this worker adds it for everyone.
    Pool,
    /// Nowhere: the fleet's pool holds it already.
    Pooled,
}

/// The levels a lead's estimate is read at, broadest first: their names
/// one after another in one string (one allocation per lead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    names: String,
    /// Where each level's name ends in `names`.
    ends: [usize; 3],
    levels: usize,
}

impl Segment {
    /// The level names, broadest first (`*`, then `country:XX` when the
    /// segment has more than the country, then the segment itself).
    pub fn levels(&self) -> impl Iterator<Item = &str> {
        (0..self.levels).map(|i| self.level(i))
    }

    fn level(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.names[start..self.ends[i]]
    }

    /// The lead's own segment (the narrowest level).
    pub fn name(&self) -> &str {
        self.level(self.levels - 1)
    }

    fn end_level(&mut self) {
        self.ends[self.levels] = self.names.len();
        self.levels += 1;
    }
}

type Counts = HashMap<String, Box<[Evidence]>, Xxh3DefaultBuilder>;

/// What the waterfall has learned of each provider's hit rate by segment.
#[derive(Debug)]
pub struct Learned {
    /// Phone finders in config order; evidence is kept by this index.
    providers: Vec<Arc<str>>,
    segment_by: Vec<SegmentField>,
    /// Everything known: `history` + the fleet's pool + `unshared`.
    view: RwLock<Counts>,
    history: Mutex<Counts>,
    /// Learned here and not yet added to the fleet's pool.
    unshared: Mutex<Counts>,
    store: Mutex<Option<Arc<dyn EvidenceStore>>>,
    /// One exchange at a time: an older pool never replaces a newer one.
    exchanging: tokio::sync::Mutex<()>,
    /// A failed exchange was logged; the next success clears it.
    warned: AtomicBool,
}

impl Learned {
    /// Nothing learned yet, for `config`'s phone finders.
    pub fn new(config: &WaterfallConfig) -> Self {
        Self {
            providers: config
                .providers
                .iter()
                .filter(|p| p.kind.finds_phones())
                .map(|p| Arc::from(p.name.as_str()))
                .collect(),
            segment_by: config.order.segment_by.clone(),
            view: RwLock::default(),
            history: Mutex::default(),
            unshared: Mutex::default(),
            store: Mutex::default(),
            exchanging: tokio::sync::Mutex::new(()),
            warned: AtomicBool::new(false),
        }
    }

    /// The index `provider`'s evidence is kept under.
    pub fn index_of(&self, provider: &str) -> Option<usize> {
        self.providers.iter().position(|p| &**p == provider)
    }

    /// The segment `lead` falls in.
    pub fn segment(&self, lead: &LeadQuery) -> Segment {
        // Two letters, or `-`: junk in the column cannot grow the segments
        // without bound (nor put a separator into a level's name).
        let mut letters = [b'-'; 2];
        let country = match lead.country.as_deref().map(str::trim) {
            Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {
                letters.copy_from_slice(c.as_bytes());
                letters.make_ascii_uppercase();
                std::str::from_utf8(&letters).expect("ASCII letters")
            }
            _ => "-",
        };
        let mut segment = Segment {
            names: String::with_capacity(32),
            ends: [0; 3],
            levels: 0,
        };
        segment.names.push('*');
        segment.end_level();
        if self.segment_by.len() > 1 && self.segment_by.contains(&SegmentField::Country) {
            segment.names.push_str("country:");
            segment.names.push_str(country);
            segment.end_level();
        }
        if !self.segment_by.is_empty() {
            for (i, field) in self.segment_by.iter().enumerate() {
                if i > 0 {
                    segment.names.push('/');
                }
                match field {
                    SegmentField::Country => segment.names.push_str(country),
                    SegmentField::EmailKind => {
                        segment.names.push_str(EmailKind::of(&lead.email).as_str())
                    }
                    // Tiers are small numbers; any other is one segment,
                    // so junk cannot grow the map either.
                    SegmentField::UserTier => match lead.user_tier {
                        Some(tier) if (-99..=99).contains(&tier) => {
                            let _ = write!(segment.names, "{tier}");
                        }
                        Some(_) => segment.names.push('x'),
                        None => segment.names.push('-'),
                    },
                }
            }
            segment.end_level();
        }
        segment
    }

    /// Counts one answered call of provider `index` ([`Learned::index_of`])
    /// for a lead of `segment`.
    pub fn record(&self, index: usize, segment: &Segment, hit: bool) {
        let one = Evidence {
            calls: 1,
            hits: u64::from(hit),
        };
        self.learn(Keep::Pool, index, segment, one);
    }

    /// Adds `e` to `index`'s evidence at every level of `segment`: to what
    /// the order reads, and to `into` (history, or what the fleet's pool is
    /// yet to get). Both under their locks at once, taken in the order
    /// [`Learned::exchange`] takes them, so an exchange sees both or neither.
    fn learn(&self, into: Keep, index: usize, segment: &Segment, e: Evidence) {
        let n = self.providers.len();
        let pooled = into == Keep::Pool && self.store.lock().expect("learned").is_some();
        let mut own = match into {
            Keep::History => self.history.lock().expect("learned"),
            Keep::Pool => self.unshared.lock().expect("learned"),
        };
        let mut view = self.view.write().expect("learned");
        for level in segment.levels() {
            if into == Keep::History || pooled {
                add(&mut own, level, n, index, e);
            }
            add(&mut view, level, n, index, e);
        }
    }

    /// Adds evidence from earlier outputs: `calls` answered calls of
    /// `provider` for leads like `lead`, `hits` of them hits, to this
    /// process's estimates. Unknown providers (renamed or removed since)
    /// are passed over.
    pub fn add_history(&self, provider: &str, lead: &LeadQuery, evidence: Evidence) {
        self.add_evidence(Seeding::Local, provider, lead, evidence);
    }

    /// [`Learned::add_history`], where [`Learned::seeding`] said: into the
    /// fleet's pool too (`Pool`), or not at all (`Pooled`).
    pub fn add_evidence(&self, to: Seeding, provider: &str, lead: &LeadQuery, evidence: Evidence) {
        let Some(index) = self.index_of(provider) else {
            return;
        };
        let into = match to {
            Seeding::Local => Keep::History,
            Seeding::Pool => Keep::Pool,
            Seeding::Pooled => return,
        };
        self.learn(into, index, &self.segment(lead), evidence);
    }

    /// Where `[waterfall] history` should go: with a fleet, only the first
    /// worker adds it, to the pool (then calls [`Learned::seeded`]).
    pub async fn seeding(&self) -> Seeding {
        let Some(store) = self.store.lock().expect("learned").clone() else {
            return Seeding::Local;
        };
        match store.claim_seeding().await {
            Ok(true) => Seeding::Pool,
            Ok(false) => Seeding::Pooled,
            Err(e) => {
                tracing::warn!(error = %e, "could not reach the fleet's pool of the adaptive order's evidence: history is learned by this worker alone");
                Seeding::Local
            }
        }
    }

    /// Sends the history [`Learned::seeding`] gave this worker to the pool,
    /// and says it is there.
    pub async fn seeded(&self) {
        self.exchange().await;
        let store = self.store.lock().expect("learned").clone();
        if let Some(store) = store {
            store.seeded().await;
        }
    }

    /// The evidence of provider `index` at each of `segment`'s levels.
    pub fn evidence(&self, provider: &str, segment: &Segment) -> Vec<(String, Evidence)> {
        let view = self.view.read().expect("learned");
        let index = self.index_of(provider);
        segment
            .levels()
            .map(|level| {
                let e = index
                    .and_then(|i| view.get(level).map(|row| row[i]))
                    .unwrap_or_default();
                (level.to_string(), e)
            })
            .collect()
    }

    /// The Beta posterior of each of `indices`' hit rate in `segment`,
    /// written into `out` as `(alpha, beta)`.
    pub(crate) fn posteriors(
        &self,
        indices: &[usize],
        segment: &Segment,
        out: &mut Vec<(f64, f64)>,
    ) {
        let view = self.view.read().expect("learned");
        let mut rows: [Option<&[Evidence]>; 3] = [None; 3];
        for (row, level) in rows.iter_mut().zip(segment.levels()) {
            *row = view.get(level).map(|row| &**row);
        }
        out.clear();
        for &i in indices {
            let mut p = 0.5;
            let mut posterior = (1.0, 1.0);
            for (depth, row) in rows[..segment.levels].iter().enumerate() {
                let e = row.map(|row| row[i]).unwrap_or_default();
                let weight = if depth == 0 { 2.0 } else { PRIOR_WEIGHT };
                // More than MAX_EVIDENCE calls count as that many, at their
                // rate: the mean is theirs, and a draw can still stray far
                // enough for a provider that changed to be tried.
                let scale = (MAX_EVIDENCE / e.calls.max(1) as f64).min(1.0);
                posterior = (
                    weight * p + e.hits as f64 * scale,
                    weight * (1.0 - p) + e.misses() as f64 * scale,
                );
                p = posterior.0 / (posterior.0 + posterior.1);
            }
            out.push(posterior);
        }
    }

    /// Pools what is learned here with the fleet through `store` every
    /// `every`, from now until the last holder of `self` lets go.
    pub fn share(self: &Arc<Self>, store: Arc<dyn EvidenceStore>, every: Duration) {
        self.pool_with(store);
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(learned) = weak.upgrade() else {
                    return;
                };
                learned.exchange().await;
            }
        });
    }

    /// Pools with the fleet through `store`, when [`Learned::exchange`] is
    /// called (no timer: for reading the pool once).
    pub fn pool_with(&self, store: Arc<dyn EvidenceStore>) {
        *self.store.lock().expect("learned") = Some(store);
    }

    /// Adds what was learned here since the last exchange to the fleet's
    /// pool and takes the pool's totals in; nothing without a store.
    /// Returns the pool's (provider, level) count. On a failure the
    /// evidence stays here for the next try, unless the store refused it.
    pub async fn exchange(&self) -> usize {
        let Some(store) = self.store.lock().expect("learned").clone() else {
            return 0;
        };
        let _one = self.exchanging.lock().await;
        let sent = std::mem::take(&mut *self.unshared.lock().expect("learned"));
        let deltas = self.tallies(&sent);
        match store.exchange(deltas).await {
            Ok(pool) => {
                let size = pool.len();
                if self.warned.swap(false, Ordering::Relaxed) {
                    tracing::info!("the adaptive order's evidence is pooled with the fleet again");
                }
                let n = self.providers.len();
                let mut pooled = Counts::default();
                for t in pool {
                    if let Some(i) = self.index_of(&t.provider) {
                        add(&mut pooled, &t.level, n, i, t.evidence);
                    }
                }
                let history = self.history.lock().expect("learned");
                let unshared = self.unshared.lock().expect("learned");
                // History, the fleet's pool (ours included), and what was
                // learned here during the exchange.
                let mut view = self.view.write().expect("learned");
                *view = history.clone();
                merge(&mut view, &pooled, n);
                merge(&mut view, &unshared, n);
                size
            }
            Err(e) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e.reason, kept = e.may_retry, "could not pool the adaptive order's evidence with the fleet");
                }
                if e.may_retry {
                    let mut unshared = self.unshared.lock().expect("learned");
                    merge(&mut unshared, &sent, self.providers.len());
                }
                0
            }
        }
    }

    fn tallies(&self, counts: &Counts) -> Vec<Tally> {
        counts
            .iter()
            .flat_map(|(level, row)| {
                row.iter()
                    .enumerate()
                    .filter(|(_, e)| e.calls > 0)
                    .map(|(i, e)| Tally {
                        provider: self.providers[i].to_string(),
                        level: level.clone(),
                        evidence: *e,
                    })
            })
            .collect()
    }
}

/// Where evidence learned here is kept besides what the order reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// This process's history: never pooled.
    History,
    /// To be added to the fleet's pool (when there is one).
    Pool,
}

/// Adds every level's evidence in `from` to `into`.
fn merge(into: &mut Counts, from: &Counts, n: usize) {
    for (level, row) in from {
        for (i, e) in row.iter().enumerate() {
            add(into, level, n, i, *e);
        }
    }
}

fn add(map: &mut Counts, level: &str, n: usize, index: usize, e: Evidence) {
    match map.get_mut(level) {
        Some(row) => row[index].add(e),
        None => {
            let mut row = vec![Evidence::default(); n].into_boxed_slice();
            row[index].add(e);
            map.insert(level.to_string(), row);
        }
    }
}

/// A lead's place in the A/B split and in exploration: stable for the same
/// lead on every run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Draw {
    pub policy: Policy,
    /// The seed of the lead's samples when it explores.
    pub explore: Option<u64>,
}

const AB_SEED: u64 = 0xab5;
const EXPLORE_SEED: u64 = 0xe4_9107e;

impl Draw {
    /// `identity`: the lead's id, else what identifies it to providers.
    pub(crate) fn of(order: &OrderConfig, identity: &[u8]) -> Self {
        if order.order == Order::Priority || unit(identity, AB_SEED) < order.ab_share {
            return Self {
                policy: Policy::Priority,
                explore: None,
            };
        }
        let explore = xxh3_64_with_seed(identity, EXPLORE_SEED);
        Self {
            policy: Policy::Adaptive,
            explore: (unit(identity, EXPLORE_SEED ^ 1) < order.explore_share).then_some(explore),
        }
    }
}

/// A number in `[0, 1)` from a hash of `bytes`.
fn unit(bytes: &[u8], seed: u64) -> f64 {
    (xxh3_64_with_seed(bytes, seed) >> 11) as f64 / (1u64 << 53) as f64
}

/// The expected cost (µUSD) of asking a provider until its hit:
/// `cost_per_call / p + cost_per_hit`, infinite when it never hits.
pub fn expected_cost_per_hit(cost_per_call: f64, cost_per_hit: f64, p: f64) -> f64 {
    if p <= 0.0 {
        return f64::INFINITY;
    }
    cost_per_call / p + cost_per_hit
}

/// The positions `0..n` sorted by `index` of each (its
/// [`expected_cost_per_hit`]), ties kept in the given (priority) order.
pub fn order_by_index(n: usize, index: impl Fn(usize) -> f64, out: &mut Vec<usize>) {
    out.clear();
    out.extend(0..n);
    out.sort_by(|&a, &b| index(a).total_cmp(&index(b)));
}

/// A small, fast generator for the samples of an exploring lead
/// (SplitMix64): deterministic in its seed.
pub(crate) struct Dice(u64);

impl Dice {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `(0, 1)`.
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Gamma(shape, 1), by Marsaglia and Tsang.
    fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let u = self.uniform();
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    /// A draw from Beta(alpha, beta).
    pub(crate) fn beta(&mut self, alpha: f64, beta: f64) -> f64 {
        let x = self.gamma(alpha);
        let y = self.gamma(beta);
        if x + y > 0.0 { x / (x + y) } else { 0.5 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expected spend of asking in `order` until a hit.
    fn expected_spend(order: &[usize], c: &[f64], h: &[f64], p: &[f64]) -> f64 {
        let mut reach = 1.0;
        let mut spend = 0.0;
        for &i in order {
            spend += reach * (c[i] + p[i] * h[i]);
            reach *= 1.0 - p[i];
        }
        spend
    }

    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        let mut all = Vec::new();
        for rest in permutations(n - 1) {
            for at in 0..=rest.len() {
                let mut p = rest.clone();
                p.insert(at, n - 1);
                all.push(p);
            }
        }
        all
    }

    #[test]
    fn the_index_order_is_the_cheapest_of_every_order_per_call_on_hit_and_mixed() {
        let mut dice = Dice::new(7);
        for case in 0..600 {
            let n = 2 + case % 5;
            let pricing = case % 3;
            let p: Vec<f64> = (0..n).map(|_| 0.02 + 0.96 * dice.uniform()).collect();
            let (mut c, mut h) = (vec![0.0; n], vec![0.0; n]);
            for i in 0..n {
                let (call, hit) = (dice.uniform() * 0.5, dice.uniform() * 2.0);
                match (pricing, i % 2) {
                    (0, _) => c[i] = call,
                    (1, _) => h[i] = hit,
                    (_, 0) => c[i] = call,
                    _ => (c[i], h[i]) = (call, hit),
                }
            }
            let index: Vec<f64> = (0..n)
                .map(|i| expected_cost_per_hit(c[i], h[i], p[i]))
                .collect();
            let mut ours = Vec::new();
            order_by_index(n, |i| index[i], &mut ours);
            let best = permutations(n)
                .iter()
                .map(|o| expected_spend(o, &c, &h, &p))
                .fold(f64::INFINITY, f64::min);
            let got = expected_spend(&ours, &c, &h, &p);
            assert!(
                got <= best + 1e-12,
                "case {case}: p={p:?} c={c:?} h={h:?}: ours {got}, best {best}"
            );
        }
    }

    #[test]
    fn beta_draws_have_the_posteriors_mean() {
        let mut dice = Dice::new(3);
        for (a, b) in [(1.0, 1.0), (0.3, 2.0), (30.0, 70.0), (2.0, 0.2)] {
            let n = 40_000;
            let mean = (0..n).map(|_| dice.beta(a, b)).sum::<f64>() / n as f64;
            let want = a / (a + b);
            assert!(
                (mean - want).abs() < 0.01,
                "Beta({a},{b}): {mean} vs {want}"
            );
        }
    }

    fn learned(segment_by: Vec<SegmentField>) -> Learned {
        let mut config = WaterfallConfig::from_toml(
            r#"
            [[providers]]
            name = "a"
            kind = "orion"
            priority = 1
            max_requests_per_hour = 10
            base_url = "https://a.example"
            [[providers]]
            name = "b"
            kind = "astra"
            priority = 2
            max_requests_per_hour = 10
            base_url = "https://b.example"
            "#,
        )
        .unwrap();
        config.order.segment_by = segment_by;
        Learned::new(&config)
    }

    fn lead(email: &str, country: &str, tier: Option<i32>) -> LeadQuery {
        LeadQuery {
            email: email.into(),
            country: Some(country.into()),
            user_tier: tier,
            ..Default::default()
        }
    }

    fn mean(learned: &Learned, index: usize, lead: &LeadQuery) -> f64 {
        let mut out = Vec::new();
        learned.posteriors(&[index], &learned.segment(lead), &mut out);
        out[0].0 / (out[0].0 + out[0].1)
    }

    #[test]
    fn segments_name_their_levels_broadest_first() {
        let l = learned(vec![
            SegmentField::Country,
            SegmentField::EmailKind,
            SegmentField::UserTier,
        ]);
        let s = l.segment(&lead("jo@gmail.com", "de", Some(2)));
        assert_eq!(
            s.levels().collect::<Vec<_>>(),
            ["*", "country:DE", "DE/free/2"]
        );
        let s = l.segment(&LeadQuery::default());
        assert_eq!(s.name(), "-/none/-");
        let only_country = learned(vec![SegmentField::Country]);
        let s = only_country.segment(&lead("jo@acme.com", "US", None));
        assert_eq!(s.levels().collect::<Vec<_>>(), ["*", "US"]);
        let none = learned(vec![]);
        assert_eq!(none.segment(&lead("", "US", None)).name(), "*");
    }

    #[test]
    fn a_segment_without_history_falls_back_to_its_country_then_to_the_provider() {
        let l = learned(vec![SegmentField::Country, SegmentField::EmailKind]);
        // Provider a: 80% in DE corporate, 20% in US corporate; nothing on
        // German free-mail, and nothing at all in FR.
        let de = lead("x@acme.de", "DE", None);
        let us = lead("x@acme.com", "US", None);
        l.add_history(
            "a",
            &de,
            Evidence {
                calls: 1000,
                hits: 800,
            },
        );
        l.add_history(
            "a",
            &us,
            Evidence {
                calls: 1000,
                hits: 200,
            },
        );
        assert!((mean(&l, 0, &de) - 0.8).abs() < 0.01);
        // German free-mail: no evidence of its own, so its country's rate.
        let de_free = lead("x@gmail.com", "DE", None);
        assert!(
            (mean(&l, 0, &de_free) - 0.8).abs() < 0.01,
            "{}",
            mean(&l, 0, &de_free)
        );
        // France: nothing in the country either, so the provider's 50%.
        let fr = lead("x@acme.fr", "FR", None);
        assert!((mean(&l, 0, &fr) - 0.5).abs() < 0.01);
        // A little evidence of its own moves a segment only part of the way.
        l.record(0, &l.segment(&de_free), false);
        l.record(0, &l.segment(&de_free), false);
        let m = mean(&l, 0, &de_free);
        assert!(m < 0.8 && m > 0.6, "{m}");
        // Provider b, never called: the uniform prior.
        assert!((mean(&l, 1, &de) - 0.5).abs() < 1e-9);
        // An unknown provider in history is passed over.
        l.add_history("gone", &de, Evidence { calls: 5, hits: 5 });
    }

    #[test]
    fn the_ab_split_is_stable_and_at_its_share() {
        let order = OrderConfig {
            order: Order::Adaptive,
            ab_share: 0.2,
            explore_share: 0.05,
            ..Default::default()
        };
        let ids: Vec<String> = (0..20_000).map(|i| format!("lead-{i}")).collect();
        let draw = |id: &String| Draw::of(&order, id.as_bytes());
        let priority = ids
            .iter()
            .filter(|id| draw(id).policy == Policy::Priority)
            .count();
        assert!(
            (3_700..4_300).contains(&priority),
            "{priority} of 20000 on priority"
        );
        let explored = ids.iter().filter(|id| draw(id).explore.is_some()).count();
        assert!(
            (600..1_000).contains(&explored),
            "{explored} of 20000 exploring"
        );
        for id in &ids[..100] {
            assert_eq!(draw(id).policy, draw(id).policy);
        }
        // With a larger share, the leads on priority are a superset: a
        // lead never moves from priority to adaptive as the share grows.
        let half = OrderConfig {
            ab_share: 0.5,
            ..order.clone()
        };
        for id in &ids {
            if draw(id).policy == Policy::Priority {
                assert_eq!(Draw::of(&half, id.as_bytes()).policy, Policy::Priority);
            }
        }
        let fixed = OrderConfig::default();
        assert!(
            ids.iter()
                .all(|id| Draw::of(&fixed, id.as_bytes()).policy == Policy::Priority)
        );
    }
}
