//! Metrics: one function per fact, called where the fact happens, under the
//! names the logs use. Nothing is recorded until [`serve`] installs the
//! Prometheus recorder (`--metrics-addr`); until then each call is a no-op.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use leadflow_waterfall::{Attempt, Outcome};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// Why the process cannot do its work yet, if it cannot: `/healthz`
/// answers 503 with it. A run is ready from the start; a stream once its
/// consumer group has given it an assignment.
static NOT_READY: Mutex<Option<String>> = Mutex::new(None);

/// `/healthz` says not ready, and why, until [`ready`].
pub fn not_ready(reason: impl Into<String>) {
    *NOT_READY.lock().expect("readiness") = Some(reason.into());
}

/// `/healthz` says ok.
pub fn ready() {
    *NOT_READY.lock().expect("readiness") = None;
}

/// Latency buckets, in seconds: provider calls, batches, produce-to-visible.
const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// What the last minutes did, second by second, for `leadflow serve`'s
/// console: kept only once [`keep_recent`] is called (a run keeps none).
static RECENT: Mutex<Recent> = Mutex::new(Recent {
    seconds: std::collections::VecDeque::new(),
});

/// Whether [`RECENT`] is kept: read before its lock, so the calls and
/// batches of a run that keeps none take no lock.
static KEEP_RECENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Seconds [`RECENT`] keeps.
pub const RECENT_SECS: i64 = 300;

struct Recent {
    /// (unix second, what it did), oldest first.
    seconds: std::collections::VecDeque<(i64, Second)>,
}

#[derive(Default)]
struct Second {
    leads: u64,
    providers: std::collections::BTreeMap<String, ProviderRecent>,
}

/// One provider's calls over the last minutes.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProviderRecent {
    /// Requests sent.
    pub calls: u64,
    pub hits: u64,
    /// Errors and timeouts.
    pub errors: u64,
    /// Skipped for its hourly limit.
    pub rate_limited: u64,
    pub spend_micros: i64,
}

impl Recent {
    /// The bucket of the second now, the ones older than the window gone.
    fn now(&mut self) -> &mut Second {
        let now = chrono::Utc::now().timestamp();
        while self
            .seconds
            .front()
            .is_some_and(|(at, _)| *at <= now - RECENT_SECS)
        {
            self.seconds.pop_front();
        }
        if self.seconds.back().is_none_or(|(at, _)| *at != now) {
            self.seconds.push_back((now, Second::default()));
        }
        &mut self.seconds.back_mut().expect("just pushed").1
    }
}

/// [`RECENT`], locked, when it is kept.
fn recent_kept() -> Option<std::sync::MutexGuard<'static, Recent>> {
    KEEP_RECENT
        .load(std::sync::atomic::Ordering::Relaxed)
        .then(|| RECENT.lock().expect("recent"))
}

/// Starts keeping what the last minutes did ([`recent`]).
pub fn keep_recent() {
    KEEP_RECENT.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Over the last [`RECENT_SECS`]: leads written a second (over the last
/// 10 s), and each provider's calls.
pub fn recent() -> (f64, std::collections::BTreeMap<String, ProviderRecent>) {
    let mut recent = RECENT.lock().expect("recent");
    let now = chrono::Utc::now().timestamp();
    let _ = recent.now();
    let mut providers = std::collections::BTreeMap::<String, ProviderRecent>::new();
    let mut leads = 0;
    for (at, second) in &recent.seconds {
        if *at > now - 10 {
            leads += second.leads;
        }
        for (name, p) in &second.providers {
            let sum = providers.entry(name.clone()).or_default();
            sum.calls += p.calls;
            sum.hits += p.hits;
            sum.errors += p.errors;
            sum.rate_limited += p.rate_limited;
            sum.spend_micros += p.spend_micros;
        }
    }
    (leads as f64 / 10.0, providers)
}

/// Messages (or file records) read.
pub fn leads_in(n: u64) {
    counter!("leadflow_leads_in_total").increment(n);
}

/// One execution of the enrichment for `requests` lookups waiting together
/// (`leadflow serve`): requests over executions is how well they group.
pub fn lookup_group(requests: usize) {
    counter!("leadflow_lookup_executions_total").increment(1);
    counter!("leadflow_lookup_requests_grouped_total").increment(requests as u64);
}

/// Enriched leads written.
pub fn leads_out(n: u64) {
    counter!("leadflow_leads_out_total").increment(n);
    if let Some(mut recent) = recent_kept() {
        recent.now().leads += n;
    }
}

/// Records that could not be leads, written to `rejects`.
pub fn rejects(n: u64) {
    counter!("leadflow_rejects_total").increment(n);
}

/// A message sent to the dead-letter topic.
pub fn dead_letter() {
    counter!("leadflow_dead_letters_total").increment(1);
}

/// Messages skipped because the output already holds them (a replay).
pub fn replayed(n: u64) {
    counter!("leadflow_replayed_total").increment(n);
}

/// One provider call or skip, as `provider_usage` records it.
pub fn attempt(a: &Attempt) {
    let provider = a.provider.to_string();
    counter!("leadflow_lookups_total", "provider" => provider.clone(), "outcome" => a.outcome.as_str())
        .increment(1);
    if a.cost_micros > 0 {
        counter!("leadflow_spend_micro_usd_total", "provider" => provider.clone())
            .increment(a.cost_micros as u64);
    }
    if a.outcome == Outcome::RateLimited {
        counter!("leadflow_rate_limited_total", "provider" => provider.clone()).increment(1);
    }
    if let Some(mut recent) = recent_kept() {
        let p = recent.now().providers.entry(provider.clone()).or_default();
        p.calls += u64::from(a.attempt > 0);
        p.hits += u64::from(a.outcome == Outcome::Hit);
        p.errors += u64::from(matches!(a.outcome, Outcome::Error | Outcome::Timeout));
        p.rate_limited += u64::from(a.outcome == Outcome::RateLimited);
        p.spend_micros += a.cost_micros;
    }
    if a.attempt > 0 {
        histogram!("leadflow_lookup_seconds", "provider" => provider)
            .record(a.latency_ms as f64 / 1000.0);
    }
}

/// Leads by final `lookup_status` (`cached` is a cache hit).
pub fn lookup_statuses(statuses: &std::collections::BTreeMap<String, u64>) {
    for (status, n) in statuses {
        counter!("leadflow_lookup_status_total", "status" => status.clone()).increment(*n);
    }
}

/// Leads by final `line_type_status` (with `[line_type]` on).
pub fn line_type_statuses(statuses: &std::collections::BTreeMap<String, u64>) {
    for (status, n) in statuses {
        counter!("leadflow_line_type_status_total", "status" => status.clone()).increment(*n);
    }
}

/// One batch enriched and written.
pub fn batch(took: Duration) {
    histogram!("leadflow_batch_seconds").record(took.as_secs_f64());
}

/// From a message's production to its lead being visible in the output.
pub fn visible_after(latency: Duration) {
    histogram!("leadflow_visible_seconds").record(latency.as_secs_f64());
}

/// Messages a partition's consumer is behind its end.
pub fn consumer_lag(topic: &str, partition: i32, lag: i64) {
    gauge!("leadflow_consumer_lag", "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(lag as f64);
}

/// Installs the Prometheus recorder and serves `/metrics` and `/healthz`
/// on `addr` until the process ends.
pub async fn serve(addr: SocketAddr) -> Result<JoinHandle<()>> {
    let app = router()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Usage(format!("--metrics-addr {addr}: {e}")))?;
    // With port 0 the bound address is the only way to find the server.
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Usage(format!("--metrics-addr {addr}: {e}")))?;
    tracing::info!(addr = %bound, "metrics listening on {bound}");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics server stopped");
        }
    }))
}

/// Installs the Prometheus recorder (once per process) and routes
/// `/metrics` and `/healthz`.
pub fn router() -> Result<Router> {
    let handle = PrometheusBuilder::new()
        .set_buckets(SECONDS_BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| Error::Internal(format!("installing the metrics recorder: {e}")))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(healthz))
        .with_state(handle))
}

async fn healthz() -> (StatusCode, String) {
    match NOT_READY.lock().expect("readiness").clone() {
        None => (StatusCode::OK, "ok\n".into()),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

async fn render(axum::extract::State(handle): axum::extract::State<PrometheusHandle>) -> String {
    handle.render()
}
