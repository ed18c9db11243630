//! `leadflow serve`: the enrichment over HTTP, for the applications that
//! cannot use a shell or Kafka (a CRM's "Find phone" button, a partner's
//! integration).
//!
//! `POST /v1/lookups` enriches up to `[api] max_lookup_leads` leads with the
//! same query, waterfall, limits, cache and budget as `run` and `stream`,
//! and answers each in input order. `POST /v1/jobs` takes up to
//! `[api] max_job_leads` as NDJSON, CSV or a JSON array, keeps them under
//! the output and runs them as a `leadflow run` ([`jobs`]). What it serves lands in the same
//! tables: the leads, their provider calls and the items that were not
//! leads are committed to the output every `[api] commit_ms` ([`epoch`]),
//! and every request a provider is sent is journaled first, so a kill
//! loses no paid call (the next start commits them).
//!
//! Every error is an RFC 9457 problem (`application/problem+json`,
//! [`problem`]); keys are kept as SHA-256 hashes ([`keys`]).

mod epoch;
mod erasures;
mod idempotency;
mod jobs;
pub mod keys;
mod lookup;
mod openapi;
mod problem;
mod results;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::Value;

use crate::config::{ApiKeyConfig, ConsoleAccess, LeadflowConfig};
use crate::error::{Error, Result};
use epoch::Epochs;
use jobs::{BodyFormat, Jobs};
use keys::Keys;
use leadflow_fleet::idempotency::Claimed;
use leadflow_waterfall::RateLimiter;
use lookup::Sent;
use problem::Problem;

/// Everything `leadflow serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    /// Output directory or `s3://bucket/prefix`.
    pub out: String,
    /// The enrichment SQL, over the table `leads`.
    pub query: String,
    /// Written to every row it commits.
    pub run_id: String,
    pub providers: LeadflowConfig,
    /// Fills a blank `country`.
    pub default_country: Option<&'static str>,
    /// Compacts the output's small files every quarter of this (see
    /// [`crate::publish::compact`]); `None`: never.
    pub compact_after: Option<std::time::Duration>,
}

/// What a server did, printed when it stops.
#[derive(Debug, Clone, Default)]
pub struct ServeSummary {
    pub requests: u64,
    pub leads_written: u64,
    pub rejects: u64,
    pub usage_rows: u64,
    pub commits: u64,
}

/// The window of `requests_per_minute`, µs.
const MINUTE: i64 = 60_000_000;

struct App {
    keys: Keys,
    idempotency: idempotency::Store,
    /// Per-key request limits: the fleet's limiter when Redis is configured.
    limiter: Arc<dyn RateLimiter>,
    epochs: Arc<Epochs>,
    jobs: Arc<Jobs>,
    erasures: Arc<erasures::Erasures>,
    max_leads: usize,
    requests: std::sync::atomic::AtomicU64,
    /// `GET /openapi.json`.
    openapi: Bytes,
    /// `GET /`.
    console: Bytes,
    open_console: bool,
    /// Set once the server stops: the console's event streams end.
    stopping: tokio::sync::watch::Receiver<bool>,
}

/// Serves until `stop` resolves, then answers the requests in flight,
/// commits what they wrote and returns.
pub async fn serve(
    config: ServeConfig,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<ServeSummary> {
    let api = &config.providers.api;
    let keys = Keys::new(&api.keys);
    if keys.is_empty() {
        return Err(Error::Usage(
            "the config has no [[api.keys]]: `leadflow keys new NAME --org ORG` makes one".into(),
        ));
    }
    // The address first: a port in use fails before anything is started.
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| Error::Usage(format!("--addr {}: {e}", config.addr)))?;
    let epochs = Epochs::start(&config).await?;
    // Streams that never end by themselves (the console's events) end
    // when the server stops, so its graceful shutdown can finish.
    let (stop_streams, stopping) = tokio::sync::watch::channel(false);
    let stop = async move {
        stop.await;
        let _ = stop_streams.send(true);
    };
    let hooks = webhooks::Hooks::new(&api.keys, api.allow_private_webhooks)?;
    let (jobs, queued) = Jobs::start(
        epochs.location().clone(),
        &config,
        epochs.providers(),
        hooks,
    )
    .await?;
    let app = Arc::new(App {
        keys,
        idempotency: match epochs.fleet() {
            Some(fleet) => idempotency::Store::Fleet(fleet.idempotency()),
            None => idempotency::Store::memory(),
        },
        limiter: epochs.limiter(),
        epochs: epochs.clone(),
        jobs: jobs.clone(),
        erasures: erasures::Erasures::new(epochs.location().clone(), config.providers.clone()),
        max_leads: api.max_lookup_leads,
        requests: Default::default(),
        openapi: openapi::document(api).into(),
        console: console_page(api.console).into(),
        open_console: api.console == ConsoleAccess::Open,
        stopping: stopping.clone(),
    });
    crate::telemetry::keep_recent();
    let router = Router::new()
        .route(
            "/v1/lookups",
            post(lookups).layer(axum::extract::DefaultBodyLimit::max(api.max_body_bytes)),
        )
        .route("/v1/jobs", post(post_job))
        .route("/v1/jobs/{id}", get(get_job).delete(delete_job))
        .route("/v1/jobs/{id}/results", get(job_results))
        .route("/v1/erasures", post(post_erasure))
        .route("/v1/erasures/{id}", get(get_erasure))
        .route("/openapi.json", get(openapi_json))
        .route("/", get(console))
        .route("/v1/events", get(events))
        .with_state(app.clone())
        .merge(crate::telemetry::router()?)
        .fallback(|| async { Problem::not_found() });
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Usage(format!("--addr {}: {e}", config.addr)))?;
    tracing::info!(addr = %bound, out = config.out, "leadflow serve listening on http://{bound}");
    let committer = tokio::spawn(epochs.clone().commit_every());
    // Jobs run one at a time; one running at the end is run again by the
    // next server on this output.
    let worker = tokio::spawn(jobs.work(queued));
    // `/healthz`: ready while Redis (if configured) answers and the output
    // takes commits.
    let readiness = {
        let epochs = epochs.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                match epochs.not_ready() {
                    Some(why) => crate::telemetry::not_ready(why),
                    None => crate::telemetry::ready(),
                }
            }
        })
    };
    // Each second of traffic is a commit of small files: they are compacted.
    let (stop_compacting, stopped) = tokio::sync::watch::channel(false);
    let compactor = config.compact_after.map(|after| {
        tokio::spawn(crate::publish::compact::compact_every(
            epochs.location().clone(),
            after,
            stopped,
        ))
    });
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await;
    // Every request has been answered: what they wrote is committed now,
    // and the erasures they started are carried out.
    app.erasures.finish().await;
    readiness.abort();
    worker.abort();
    epochs.stop_committing();
    let _ = committer.await;
    let _ = stop_compacting.send(true);
    if let Some(compactor) = compactor {
        let _ = compactor.await;
    }
    let closed = epochs.close().await;
    served.map_err(|e| Error::Internal(format!("the server stopped: {e}")))?;
    let mut summary = closed?;
    summary.requests = app.requests.load(std::sync::atomic::Ordering::Relaxed);
    Ok(summary)
}

/// `POST /v1/lookups`: `{"leads": [lead, …]}` → `{"results": [result, …]}`,
/// one result per lead in input order; a lead that is not one gets an
/// `error` in its place and the others are still answered.
#[utoipa::path(
    post,
    path = "/v1/lookups",
    tag = "lookups",
    request_body(content = openapi::LookupRequest, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key and body gets the first answer (kept a day) and pays nothing again"),
    ),
    responses(
        (status = 200, description = "One result per lead, in input order", body = openapi::LookupAnswer),
    )
)]
async fn lookups(State(app): State<Arc<App>>, request: axum::extract::Request) -> Response {
    // The headers taken from the request, not copied (as the `HeaderMap`
    // extractor does): a lookup is small, and this is per request.
    let (mut parts, body) = request.into_parts();
    let headers = std::mem::take(&mut parts.headers);
    let body = Bytes::from_request(axum::extract::Request::from_parts(parts, body), &()).await;
    match answer(&app, &headers, body).await {
        Ok(answer) => answer,
        Err(problem) => problem.into_response(),
    }
}

/// Authenticates, limits, and answers a lookup request: once per
/// `Idempotency-Key` (a retry with the same body gets the first answer,
/// and pays nothing again).
async fn answer(
    app: &App,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<Response, Problem> {
    let key = admit(app, headers).await?;
    let body = body.map_err(Problem::from_body)?;
    let fingerprint = || keys::sha256_hex(&body);
    let answered = once(app, headers, &key.name, fingerprint, || async {
        Ok((200, lookup(app, key, body.clone()).await?))
    })
    .await?;
    Ok(json_response(answered))
}

/// The key a request is made with, once it is within the key's
/// `requests_per_minute`.
async fn admit<'a>(
    app: &'a App,
    headers: &HeaderMap,
) -> std::result::Result<&'a Arc<ApiKeyConfig>, Problem> {
    let key = app.keys.authenticate(headers)?;
    app.requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some(per_minute) = key.requests_per_minute {
        let name = format!("api-key:{}", key.name);
        let now = Utc::now().timestamp_micros();
        if !app
            .limiter
            .try_acquire_exact(&name, per_minute, MINUTE, now)
            .await
        {
            return Err(Problem::rate_limited(per_minute));
        }
    }
    Ok(key)
}

/// [`admit`], for a key with `admin = true` only (erasures).
async fn admit_admin<'a>(
    app: &'a App,
    headers: &HeaderMap,
) -> std::result::Result<&'a Arc<ApiKeyConfig>, Problem> {
    let key = admit(app, headers).await?;
    if !key.admin {
        return Err(Problem::forbidden(
            "erasures need a key with `admin = true` in its [[api.keys]] entry",
        ));
    }
    Ok(key)
}

/// An answer: its status, its JSON body, and whether it replays an
/// earlier one.
struct Answered {
    status: u16,
    body: Vec<u8>,
    replayed: bool,
}

/// Runs `work` once per `Idempotency-Key` of `scope` (when the request
/// has one): a retry with the same body (its `fingerprint`, made only
/// when there is a key) gets the first answer.
async fn once<F, Fut>(
    app: &App,
    headers: &HeaderMap,
    scope: &str,
    fingerprint: impl FnOnce() -> String,
    work: F,
) -> std::result::Result<Answered, Problem>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = std::result::Result<(u16, Vec<u8>), Problem>>,
{
    let answered = |(status, body): (u16, Vec<u8>), replayed| Answered {
        status,
        body,
        replayed,
    };
    let Some(idempotency_key) = idempotency_key(headers)? else {
        return work().await.map(|a| answered(a, false));
    };
    let store = &app.idempotency;
    let fingerprint = &fingerprint();
    match store.claim(scope, idempotency_key, fingerprint).await {
        Ok(Claimed::First) => {}
        Ok(Claimed::Running) => return Err(Problem::idempotency_key_in_use()),
        Ok(Claimed::OtherBody) => return Err(Problem::idempotency_key_reused()),
        Ok(Claimed::Done { status, body }) => return Ok(answered((status, body), true)),
        Err(e) => return Err(Problem::idempotency_unavailable(&e)),
    }
    match work().await {
        Ok((status, body)) => {
            if let Err(e) = store
                .finish(scope, idempotency_key, fingerprint, (status, &body))
                .await
            {
                tracing::warn!(
                    error = e,
                    "could not keep an answer for its Idempotency-Key: a retry would run again"
                );
            }
            Ok(answered((status, body), false))
        }
        Err(problem) => {
            store.release(scope, idempotency_key).await;
            Err(problem)
        }
    }
}

/// The request's `Idempotency-Key`, if it has one (a token or a quoted
/// string of 1 to 255 visible characters).
fn idempotency_key(headers: &HeaderMap) -> std::result::Result<Option<&str>, Problem> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(|v| v.trim())
        .map(|v| {
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
        })
        .filter(|v| (1..=255).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()));
    key.map(Some).ok_or_else(|| {
        Problem::bad_header(
            "Idempotency-Key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID, say)".into(),
        )
    })
}

/// An answer as JSON, marked when it replays an earlier one.
fn json_response(answered: Answered) -> Response {
    let status = StatusCode::from_u16(answered.status).unwrap_or(StatusCode::OK);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        answered.body,
    )
        .into_response();
    if answered.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// The answer to `body`: one result per lead, in order, as JSON.
async fn lookup(
    app: &App,
    key: &Arc<ApiKeyConfig>,
    body: Bytes,
) -> std::result::Result<Vec<u8>, Problem> {
    let sent = Sent::parse(key.clone(), body, app.max_leads)?;
    let leads = sent.len();
    let started = Instant::now();
    crate::telemetry::leads_in(leads as u64);
    let answer = app.epochs.enrich(sent).await.map_err(Problem::internal)?;
    tracing::debug!(
        key = key.name,
        leads,
        ms = started.elapsed().as_millis() as u64,
        "lookups answered"
    );
    Ok(answer)
}

/// `GET /openapi.json`: this API as an OpenAPI 3.1 document.
async fn openapi_json(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        app.openapi.clone(),
    )
        .into_response()
}

/// The console's page, self-contained (no script, style or font from
/// elsewhere), told whether it needs a key.
fn console_page(access: ConsoleAccess) -> String {
    let access = match access {
        ConsoleAccess::Open => "open",
        ConsoleAccess::Key => "key",
    };
    include_str!("console.html").replace("{{ACCESS}}", access)
}

/// `GET /`: the live console, for the people watching.
async fn console(State(app): State<Arc<App>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; connect-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
            ),
        ],
        app.console.clone(),
    )
        .into_response()
}

/// `GET /v1/events`: Server-Sent Events, one a second, each what the
/// console shows: the jobs in flight (the key's organization's, or every
/// one's on an open console) and the last minutes' leads and calls.
async fn events(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let organization = if app.open_console {
        None
    } else {
        match app.keys.authenticate(&headers) {
            Ok(key) => Some(key.organization_id.clone()),
            Err(problem) => return problem.into_response(),
        }
    };
    #[derive(serde::Serialize)]
    struct Snapshot {
        organization: Option<String>,
        jobs: Vec<jobs::InFlight>,
        leads_per_second: f64,
        window_secs: i64,
        providers: Vec<ProviderNow>,
    }
    #[derive(serde::Serialize)]
    struct ProviderNow {
        provider: String,
        #[serde(flatten)]
        recent: crate::telemetry::ProviderRecent,
    }
    let snapshot = move |app: &App| {
        let (leads_per_second, providers) = crate::telemetry::recent();
        let snapshot = Snapshot {
            jobs: app.jobs.in_flight(organization.as_deref()),
            organization: organization.clone(),
            leads_per_second,
            window_secs: crate::telemetry::RECENT_SECS,
            providers: providers
                .into_iter()
                .map(|(provider, recent)| ProviderNow { provider, recent })
                .collect(),
        };
        let json = serde_json::to_string(&snapshot).expect("JSON serializes");
        Bytes::from(format!("data: {json}\n\n"))
    };
    let stopping = app.stopping.clone();
    let stream = futures::stream::unfold((app, true), move |(app, first)| {
        let snapshot = snapshot.clone();
        let mut stopping = stopping.clone();
        async move {
            if !first {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = stopping.wait_for(|s| *s) => return None,
                }
            }
            if *stopping.borrow() {
                return None;
            }
            Some((
                Ok::<_, std::convert::Infallible>(snapshot(&app)),
                (app, false),
            ))
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// `POST /v1/jobs[?webhook_url=URL]`: the body (NDJSON, CSV or a JSON
/// array of leads, by `Content-Type`) is kept under the output, then
/// `202 Accepted` with the job and `Location: /v1/jobs/{id}`.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    request_body(
        description = "The leads: a JSON array of lead objects, NDJSON (one lead object a line) or CSV with a header",
        content(("application/json"), (String = "application/x-ndjson"), (String = "text/csv"))
    ),
    params(
        ("webhook_url" = Option<String>, Query, description = "Where the job's end is posted, signed per Standard Webhooks"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key and body gets the same job"),
    ),
    responses(
        (status = 202, description = "Kept under the output and queued", body = jobs::JobView,
         headers(("Location" = String, description = "/v1/jobs/{id}"))),
    )
)]
async fn post_job(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    match create_job(&app, &headers, query.as_deref(), body).await {
        Ok(answered) => job_accepted(answered),
        Err(problem) => problem.into_response(),
    }
}

async fn create_job(
    app: &App,
    headers: &HeaderMap,
    query: Option<&str>,
    body: Body,
) -> std::result::Result<Answered, Problem> {
    let key = admit(app, headers).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = BodyFormat::of(content_type)?;
    let webhook_url = webhook_url(query)?;
    if let Some(url) = &webhook_url {
        app.jobs
            .hooks()
            .check(&key.name, url)
            .await
            .map_err(|e| Problem::invalid("webhook_url", format!("webhook_url: {e}")))?;
    }
    // Checked before the body is read: a bad header costs no upload.
    idempotency_key(headers)?;
    let id = jobs::new_id();
    let (stored, leads, body_sha) = match app.jobs.upload(&id, format, body).await {
        Ok(uploaded) => uploaded,
        Err(problem) => {
            app.jobs.forget_upload(&id).await;
            return Err(problem);
        }
    };
    // The same request: the same body, as the same type, to the same hook.
    let fingerprint = || {
        keys::sha256_hex(
            format!(
                "{body_sha}\n{}\n{}",
                content_type.unwrap_or(""),
                query.unwrap_or("")
            )
            .as_bytes(),
        )
    };
    let scope = format!("{}:jobs", key.name);
    let answered = once(app, headers, &scope, fingerprint, || async {
        let record = app
            .jobs
            .create(&id, key, stored, leads, webhook_url)
            .await
            .map_err(Problem::internal)?;
        let view = app.jobs.view_of(record);
        Ok((202, serde_json::to_vec(&view).expect("JSON serializes")))
    })
    .await;
    if !matches!(&answered, Ok(a) if !a.replayed) {
        // Replayed or refused: this upload is no job.
        app.jobs.forget_upload(&id).await;
    }
    answered
}

/// The `webhook_url` of a job's query string, the only parameter it takes.
fn webhook_url(query: Option<&str>) -> std::result::Result<Option<String>, Problem> {
    let mut webhook = None;
    for value in only_parameter(query, "webhook_url", "POST /v1/jobs (it takes")? {
        let parsed = url::Url::parse(&value).map_err(|e| {
            Problem::invalid("webhook_url", format!("webhook_url is not a URL: {e}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(Problem::invalid(
                "webhook_url",
                "webhook_url must be an http:// or https:// URL with a host".into(),
            ));
        }
        webhook = Some(value);
    }
    Ok(webhook)
}

/// Each value of `name`, the one parameter `query` may hold; any other
/// parameter is refused, naming what takes it (`of`, then `name`).
fn only_parameter(
    query: Option<&str>,
    name: &str,
    of: &str,
) -> std::result::Result<Vec<String>, Problem> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(given, value)| {
            if given == name {
                Ok(value.into_owned())
            } else {
                Err(Problem::invalid(
                    &given,
                    format!("`{given}` is not a parameter of {of} {name})"),
                ))
            }
        })
        .collect()
}

/// A job's `202 Accepted` (or its replay), pointing at where it is watched.
fn job_accepted(answered: Answered) -> Response {
    #[derive(serde::Deserialize)]
    struct Created {
        id: String,
    }
    let location = serde_json::from_slice::<Created>(&answered.body)
        .ok()
        .and_then(|c| HeaderValue::from_str(&format!("/v1/jobs/{}", c.id)).ok());
    let mut response = json_response(answered);
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// `GET /v1/jobs/{id}`: the job's state, counts and progress; while it
/// runs, `Retry-After` says when to look again.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id (`job_…`)")),
    responses(
        (status = 200, description = "The job; `Retry-After` while it is queued or running", body = jobs::JobView),
    )
)]
async fn get_job(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let viewed = async {
        let key = admit(&app, &headers).await?;
        app.jobs
            .view(&id, &key.organization_id)
            .await
            .map_err(Problem::internal)?
            .ok_or_else(Problem::no_such_job)
    };
    match viewed.await {
        Ok(view) => job_response(StatusCode::OK, &view),
        Err(problem) => problem.into_response(),
    }
}

/// `DELETE /v1/jobs/{id}`: cancels the job; what it ran is kept and billed.
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id (`job_…`)")),
    responses(
        (status = 200, description = "The job, ended (canceled now, or ended before)", body = jobs::JobView),
        (status = 202, description = "The running job stops reading; what it read is enriched and committed", body = jobs::JobView),
    )
)]
async fn delete_job(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let canceled = async {
        let key = admit(&app, &headers).await?;
        app.jobs
            .cancel(&id, &key.organization_id)
            .await
            .map_err(Problem::internal)?
            .ok_or_else(Problem::no_such_job)
    };
    match canceled.await {
        // Still running: it stops reading, commits what it read, then ends.
        Ok(view) if !view.ended() => job_response(StatusCode::ACCEPTED, &view),
        Ok(view) => job_response(StatusCode::OK, &view),
        Err(problem) => problem.into_response(),
    }
}

/// `POST /v1/erasures`: forgets people (`leadflow forget`), for keys with
/// `admin = true`; 202 with the erasure, then `GET /v1/erasures/{id}`.
#[utoipa::path(
    post,
    path = "/v1/erasures",
    tag = "erasures",
    request_body(content = erasures::ErasureRequest, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key and body gets the first answer (kept a day) and starts nothing again"),
    ),
    responses(
        (status = 202, description = "Accepted: carried out in the background (one commit; Redis purged first)", body = erasures::ErasureView,
         headers(("Location" = String, description = "`/v1/erasures/{id}`"))),
        (status = 403, description = "The key has no `admin = true`", body = openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The server has no `[privacy] receipt_key_env` key to sign receipts with, or a request with this Idempotency-Key still runs", body = openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
async fn post_erasure(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let accepted = async {
        let key = admit_admin(&app, &headers).await?;
        let body = body.map_err(Problem::from_body)?;
        let fingerprint = || keys::sha256_hex(&body);
        once(&app, &headers, &key.name, fingerprint, || async {
            let view = app.erasures.start(&body)?;
            Ok((202, serde_json::to_vec(&view).expect("JSON serializes")))
        })
        .await
    };
    match accepted.await {
        Ok(answered) => {
            let location = serde_json::from_slice::<Value>(&answered.body)
                .ok()
                .and_then(|v| v["id"].as_str().map(|id| format!("/v1/erasures/{id}")));
            let mut response = json_response(answered);
            if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(problem) => problem.into_response(),
    }
}

/// `GET /v1/erasures/{id}`: an erasure, and its receipt once done.
#[utoipa::path(
    get,
    path = "/v1/erasures/{id}",
    tag = "erasures",
    params(("id" = String, Path, description = "The erasure's id (`er_…`)")),
    responses(
        (status = 200, description = "The erasure: running, done (with its receipt) or failed", body = erasures::ErasureView),
        (status = 403, description = "The key has no `admin = true`", body = openapi::ProblemDetails, content_type = "application/problem+json"),
    )
)]
async fn get_erasure(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let viewed = async {
        admit_admin(&app, &headers).await?;
        app.erasures
            .view(&id)
            .await?
            .ok_or_else(Problem::no_such_erasure)
    };
    match viewed.await {
        Ok(view) => view_response(StatusCode::OK, &view, view.running().then_some("1")),
        Err(problem) => problem.into_response(),
    }
}

fn job_response(status: StatusCode, view: &jobs::JobView) -> Response {
    view_response(status, view, (!view.ended()).then_some("2"))
}

/// `view` as JSON, with `Retry-After: retry_after` (seconds) while what it
/// shows is under way.
fn view_response(
    status: StatusCode,
    view: &impl serde::Serialize,
    retry_after: Option<&'static str>,
) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(view).expect("JSON serializes"),
    )
        .into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
    }
    response
}

/// `GET /v1/jobs/{id}/results?format=ndjson|csv|parquet`: the job's
/// enriched leads, streamed a batch at a time.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/results",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "The job's id (`job_…`)"),
        ("format" = Option<String>, Query, description = "`ndjson` (the default), `csv` or `parquet`"),
    ),
    responses(
        (status = 200, description = "The job's enriched leads",
         content((String = "application/x-ndjson"), (String = "text/csv"), (Vec<u8> = "application/vnd.apache.parquet"))),
    )
)]
async fn job_results(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let streamed = async {
        let key = admit(&app, &headers).await?;
        let format = results::Format::of(query.as_deref())?;
        let files = app
            .jobs
            .results(&id, &key.organization_id)
            .await?
            .ok_or_else(Problem::no_such_job)?;
        let batches = app.jobs.batches(files);
        Ok::<_, Problem>(results::response(
            &id,
            format,
            batches,
            app.epochs.write_schema(),
        ))
    };
    match streamed.await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}
