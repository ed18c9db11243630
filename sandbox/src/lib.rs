//! The provider sandbox: a local HTTP server that speaks the four provider
//! contracts of DESIGN.md (Orion Connect, Astra Dialer, Nimbus Lookup and
//! Twilio Lookup v2) with deterministic answers, so examples, tests and
//! benchmarks exercise the real adapters over real HTTP without paying anyone.
//!
//! Every provider is served under its own path prefix, `/{provider}/…`, so
//! two providers of the same kind stay apart in the answers and in
//! [`Sandbox::stats`]. Whether a lookup hits depends only on a hash of the
//! provider's name and the lead, at the configured hit rate; errors and 429s
//! are drawn from the provider's request count, so their rates hold under any
//! concurrency.

mod answers;
mod config;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use answers::{LeadKey, Verdict};
pub use config::{SandboxConfig, SandboxProvider};

/// What the sandbox served one provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProviderStats {
    /// Every request that reached the provider's routes.
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    /// Hits answered with a number that is not valid.
    pub invalid: u64,
    /// `5xx` answers.
    pub errors: u64,
    /// `429` answers.
    pub rate_limited: u64,
    /// Requests without the contract's credentials (`401`).
    pub unauthorized: u64,
    /// Requests the sandbox could not read (`400`).
    pub bad_requests: u64,
}

/// A running sandbox; stops when dropped.
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _shutdown: oneshot::Sender<()>,
}

#[derive(Debug)]
struct Shared {
    config: SandboxConfig,
    stats: Mutex<BTreeMap<String, ProviderStats>>,
}

impl Sandbox {
    /// Starts the sandbox on `addr` (port 0 picks a free one) in the current
    /// tokio runtime.
    pub async fn start(config: SandboxConfig, addr: SocketAddr) -> std::io::Result<Sandbox> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            stats: Mutex::new(BTreeMap::new()),
        });
        let router = Router::new()
            .route("/stats", get(stats))
            .route("/{provider}/v1/phone/find", post(orion))
            .route("/{provider}/lookup", get(astra))
            .route("/{provider}/api/v2/enrich", post(nimbus))
            .route("/{provider}/v2/PhoneNumbers/{number}", get(twilio))
            .with_state(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, router, rx));
        Ok(Sandbox {
            addr,
            shared,
            _shutdown: tx,
        })
    }

    /// Starts the sandbox on a free localhost port.
    pub async fn start_local(config: SandboxConfig) -> std::io::Result<Sandbox> {
        Self::start(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL a provider named `provider` uses to reach its contract.
    pub fn base_url(&self, provider: &str) -> String {
        format!("http://{}/{provider}", self.addr)
    }

    /// Starts a sandbox for a leadflow config file's text, as tests of the
    /// crates that read such files need one: its `[sandbox]` table sets the
    /// answers, and every provider with `base_url = "sandbox"` is pointed at
    /// the sandbox. Returns the sandbox and the text without `[sandbox]`.
    pub async fn start_for_config(text: &str) -> std::io::Result<(Sandbox, String)> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let mut table: toml::Table = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let config: SandboxConfig = match table.remove("sandbox") {
            Some(t) => t
                .try_into()
                .map_err(|e: toml::de::Error| invalid(e.to_string()))?,
            None => SandboxConfig::default(),
        };
        let sandbox = Self::start_local(config).await?;
        let providers = table.get_mut("providers").and_then(|p| p.as_array_mut());
        for p in providers.into_iter().flatten() {
            if p.get("base_url").and_then(|u| u.as_str()) == Some("sandbox") {
                let name = p.get("name").and_then(|n| n.as_str()).unwrap_or_default();
                p["base_url"] = sandbox.base_url(name).into();
            }
        }
        Ok((sandbox, table.to_string()))
    }

    /// Requests served so far, by provider name.
    pub fn stats(&self) -> BTreeMap<String, ProviderStats> {
        self.shared.stats.lock().expect("stats lock").clone()
    }
}

/// Accepts connections until `shutdown` fires (or its sender is dropped).
/// Each connection speaks HTTP/1.1, or HTTP/2 when it opens with the h2
/// preface (h2c). HTTP/2 streams are not capped: the client's own concurrency
/// limit bounds them, where hyper's default of 200 would queue lookups behind
/// each other and add latency that no provider has.
async fn serve(listener: TcpListener, router: Router, mut shutdown: oneshot::Receiver<()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(None);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: wait for some to free up.
                    tracing::warn!(error = %e, "provider sandbox could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let _ = tcp.set_nodelay(true);
        let builder = builder.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            if let Err(e) = builder.serve_connection(TokioIo::new(tcp), service).await {
                tracing::debug!(error = %e, "provider sandbox connection ended");
            }
        });
    }
}

impl Shared {
    fn count(&self, provider: &str, f: impl FnOnce(&mut ProviderStats)) {
        let mut stats = self.stats.lock().expect("stats lock");
        match stats.get_mut(provider) {
            Some(s) => f(s),
            None => f(stats.entry(provider.to_string()).or_default()),
        }
    }

    /// Counts the request, waits the provider's latency, and decides whether
    /// it fails before the lookup (`5xx`, `429`, missing credentials).
    async fn admit(&self, provider: &str, authorized: bool) -> Result<(), Response> {
        let settings = self.config.provider(provider);
        let mut n = 0;
        self.count(provider, |s| {
            s.requests += 1;
            n = s.requests;
        });
        if settings.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(settings.latency_ms)).await;
        }
        if !authorized {
            self.count(provider, |s| s.unauthorized += 1);
            return Err((StatusCode::UNAUTHORIZED, "missing credentials").into_response());
        }
        if answers::chance(provider, "error", n) < settings.error_rate {
            self.count(provider, |s| s.errors += 1);
            return Err(
                (StatusCode::SERVICE_UNAVAILABLE, "sandbox: injected error").into_response()
            );
        }
        if answers::chance(provider, "429", n) < settings.rate_limit_rate {
            self.count(provider, |s| s.rate_limited += 1);
            return Err((
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, settings.retry_after_secs.to_string())],
                "sandbox: injected rate limit",
            )
                .into_response());
        }
        Ok(())
    }

    fn verdict(&self, provider: &str, lead: &LeadKey) -> Verdict {
        let (country, kind) = lead.segment();
        let hit_rate = self.config.hit_rate(provider, &country, kind);
        let verdict = answers::verdict(&self.config.provider(provider), hit_rate, provider, lead);
        self.count(provider, |s| match verdict {
            Verdict::Hit { valid: true, .. } => s.hits += 1,
            Verdict::Hit { valid: false, .. } => s.invalid += 1,
            Verdict::Miss => s.misses += 1,
        });
        verdict
    }

    fn bad_request(&self, provider: &str, why: String) -> Response {
        self.count(provider, |s| s.bad_requests += 1);
        (StatusCode::BAD_REQUEST, why).into_response()
    }
}

fn has_header(headers: &HeaderMap, name: &str, prefix: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > prefix.len() && v.starts_with(prefix))
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn body_field<'a>(body: &'a serde_json::Value, name: &str) -> &'a str {
    body.get(name).and_then(|v| v.as_str()).unwrap_or("")
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let stats = shared.stats.lock().expect("stats lock").clone();
    json(StatusCode::OK, serde_json::json!(stats))
}

/// Orion Connect: `POST /v1/phone/find {email, full_name, company_domain}`,
/// bearer token; `200 {"phone","confidence"}` or `404`.
async fn orion(
    State(shared): State<Arc<Shared>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorized = has_header(&headers, "authorization", "Bearer ");
    if let Err(refused) = shared.admit(&provider, authorized).await {
        return refused;
    }
    let body: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return shared.bad_request(&provider, format!("body is not JSON: {e}")),
    };
    let lead = LeadKey::new(
        body_field(&body, "email"),
        body_field(&body, "full_name"),
        body_field(&body, "company_domain"),
        None,
    );
    match shared.verdict(&provider, &lead) {
        Verdict::Hit { e164, .. } => json(
            StatusCode::OK,
            serde_json::json!({ "phone": e164, "confidence": 0.92 }),
        ),
        Verdict::Miss => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "no phone found" }),
        ),
    }
}

/// Astra Dialer: `GET /lookup?email=&name=&domain=`, `X-Api-Key`; national
/// numbers with their country.
async fn astra(
    State(shared): State<Arc<Shared>>,
    Path(provider): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = shared
        .admit(&provider, has_header(&headers, "x-api-key", ""))
        .await
    {
        return refused;
    }
    let field = |k: &str| query.get(k).map(String::as_str).unwrap_or("");
    let lead = LeadKey::new(field("email"), field("name"), field("domain"), None);
    match shared.verdict(&provider, &lead) {
        Verdict::Hit {
            national, region, ..
        } => json(
            StatusCode::OK,
            serde_json::json!({
                "status": "found",
                "phones": [{ "number": national, "type": "mobile", "country": region }]
            }),
        ),
        Verdict::Miss => json(StatusCode::OK, serde_json::json!({ "status": "not_found" })),
    }
}

/// Nimbus Lookup: `POST /api/v2/enrich {"contact":{…}}`, `X-Nimbus-Key`.
async fn nimbus(
    State(shared): State<Arc<Shared>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = shared
        .admit(&provider, has_header(&headers, "x-nimbus-key", ""))
        .await
    {
        return refused;
    }
    let body: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return shared.bad_request(&provider, format!("body is not JSON: {e}")),
    };
    let Some(contact) = body.get("contact") else {
        return shared.bad_request(&provider, "missing `contact`".into());
    };
    let country = body_field(contact, "country");
    let lead = LeadKey::new(
        body_field(contact, "email"),
        body_field(contact, "full_name"),
        body_field(contact, "company_domain"),
        (!country.is_empty()).then_some(country),
    );
    match shared.verdict(&provider, &lead) {
        Verdict::Hit { e164, .. } => json(
            StatusCode::OK,
            serde_json::json!({
                "data": { "mobile_phone": e164, "direct_dial": null },
                "credits_used": 1
            }),
        ),
        Verdict::Miss => json(
            StatusCode::OK,
            serde_json::json!({ "data": {}, "credits_used": 0 }),
        ),
    }
}

/// Twilio Lookup v2: `GET /v2/PhoneNumbers/{e164}?Fields=line_type_intelligence`,
/// basic auth; line type and carrier of a number.
async fn twilio(
    State(shared): State<Arc<Shared>>,
    Path((provider, number)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = shared
        .admit(&provider, has_header(&headers, "authorization", "Basic "))
        .await
    {
        return refused;
    }
    match answers::line_type(&number) {
        Some(line) => {
            shared.count(&provider, |s| s.hits += 1);
            json(
                StatusCode::OK,
                serde_json::json!({
                    "valid": true,
                    "phone_number": line.e164,
                    "country_code": line.region,
                    "line_type_intelligence": {
                        "type": line.line_type,
                        "carrier_name": line.carrier_name,
                        "mobile_country_code": line.mcc,
                        "mobile_network_code": line.mnc,
                        "error_code": null
                    }
                }),
            )
        }
        None => {
            shared.count(&provider, |s| s.misses += 1);
            json(
                StatusCode::OK,
                serde_json::json!({
                    "valid": false,
                    "phone_number": number,
                    "validation_errors": ["INVALID_BUT_POSSIBLE"],
                    "line_type_intelligence": null
                }),
            )
        }
    }
}
