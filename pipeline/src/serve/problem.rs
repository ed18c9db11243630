//! RFC 9457 problem details: every error `leadflow serve` answers is
//! `application/problem+json` with a `type` per kind, a `title`, the
//! `status`, a `detail` that names what is at fault and, where one is,
//! the `field` or the JSON `line` and `column`.

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// One problem, as answered.
#[derive(Debug)]
pub(crate) struct Problem {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    extra: Map<String, Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: String) -> Self {
        Self {
            status,
            kind,
            title,
            detail,
            extra: Map::new(),
            headers: Vec::new(),
        }
    }

    fn with(mut self, name: &str, value: Value) -> Self {
        self.extra.insert(name.into(), value);
        self
    }

    pub(crate) fn unauthorized(detail: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or unknown API key",
            detail.into(),
        )
    }

    /// A key past its `requests_per_minute`: when to try again, with the
    /// IETF RateLimit header fields (`RateLimit-Policy`, `RateLimit`).
    pub(crate) fn rate_limited(per_minute: u32) -> Self {
        // The window slides by the second: a permit frees up within the
        // minute, about every 60 / limit seconds on steady traffic.
        let retry = 60u32.div_ceil(per_minute).clamp(1, 60);
        let header = |text: String| HeaderValue::from_str(&text).expect("an ASCII header");
        let mut problem = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "This key's request limit is reached",
            format!(
                "this key may make {per_minute} requests a minute ([[api.keys]] requests_per_minute); \
                 try again in {retry} s"
            ),
        );
        problem.headers = vec![
            (header::RETRY_AFTER, header(retry.to_string())),
            (
                HeaderName::from_static("ratelimit-policy"),
                header(format!("\"key\";q={per_minute};w=60")),
            ),
            (
                HeaderName::from_static("ratelimit"),
                header(format!("\"key\";r=0;t={retry}")),
            ),
        ];
        problem
    }

    /// A header that is not what it must be.
    pub(crate) fn bad_header(name: &str, detail: String) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-header",
            "A header is not what this endpoint takes",
            detail,
        )
        .with("header", json!(name))
    }

    /// The first request under this `Idempotency-Key` is still running.
    pub(crate) fn idempotency_key_in_use() -> Self {
        let mut problem = Self::new(
            StatusCode::CONFLICT,
            "idempotency-key-in-use",
            "A request with this Idempotency-Key is still running",
            "the first request with this Idempotency-Key has not been answered yet; retry when it has".into(),
        );
        problem.headers = vec![(header::RETRY_AFTER, HeaderValue::from_static("1"))];
        problem
    }

    /// The `Idempotency-Key` came before with another body.
    pub(crate) fn idempotency_key_reused() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "This Idempotency-Key was used with another body",
            "this Idempotency-Key was used with another body: send a new key for a new request"
                .into(),
        )
        .with("header", json!("Idempotency-Key"))
    }

    /// Where idempotency keys are kept did not answer: better no answer
    /// than paying twice.
    pub(crate) fn idempotency_unavailable(why: &str) -> Self {
        let mut problem = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "idempotency-unavailable",
            "The Idempotency-Key cannot be kept now",
            format!("the Idempotency-Key cannot be kept ({why}); try again"),
        );
        problem.headers = vec![(header::RETRY_AFTER, HeaderValue::from_static("1"))];
        problem
    }

    pub(crate) fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such resource",
            "no such resource: this server serves /v1/lookups, /v1/jobs and /v1/erasures".into(),
        )
    }

    /// A key without `admin = true` asking for what only admins may.
    pub(crate) fn forbidden(detail: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "This key may not do this",
            detail.into(),
        )
    }

    /// An erasure this server has not started and the output has no
    /// receipt of.
    pub(crate) fn no_such_erasure() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such erasure",
            "no erasure has this id (one running when its server stopped has no receipt: \
             request it again)"
                .into(),
        )
    }

    /// A server that cannot carry erasures out as configured (its
    /// operator's to fix, not a failure: not a 5xx).
    pub(crate) fn erasures_unavailable(why: String) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "erasures-unavailable",
            "This server cannot carry erasures out",
            why,
        )
    }

    /// A job that is not there, or is another organization's.
    pub(crate) fn no_such_job() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such job",
            "no job of this key's organization has this id".into(),
        )
    }

    /// A body that is not JSON, or not the request's shape.
    pub(crate) fn bad_json(e: serde_json::Error) -> Self {
        let (line, column) = (e.line(), e.column());
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "The body is not the JSON this endpoint takes",
            format!("{e}"),
        )
        .with("line", json!(line))
        .with("column", json!(column))
    }

    /// A well-formed request whose `field` cannot be served.
    pub(crate) fn invalid(field: &str, detail: String) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
            "The request cannot be served as it is",
            detail,
        )
        .with("field", json!(field))
    }

    /// The body could not be read: too large, or cut off.
    pub(crate) fn from_body(e: BytesRejection) -> Self {
        let detail = e.body_text();
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "The body is larger than this server takes",
                format!("{detail} ([api] max_body_bytes)"),
            );
        }
        Self::new(
            e.status(),
            "unreadable-body",
            "The body could not be read",
            detail,
        )
    }

    /// A job's body of a type no job takes.
    pub(crate) fn unsupported_media_type(detail: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "The body's Content-Type is not one this endpoint takes",
            detail.into(),
        )
        .with("header", json!("Content-Type"))
    }

    /// The body stopped arriving (the client hung up, or sent it wrong).
    pub(crate) fn bad_body(why: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unreadable-body",
            "The body could not be read",
            format!("the body could not be read: {why}"),
        )
    }

    /// A job's JSON array body that is not one array.
    pub(crate) fn bad_job_body(why: String) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "The body is not the JSON this endpoint takes",
            why,
        )
    }

    /// A job of more leads than `[api] max_job_leads`.
    pub(crate) fn too_many_leads(max: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-many-leads",
            "The job has more leads than this server takes",
            format!("a job holds at most {max} leads ([api] max_job_leads): split it"),
        )
    }

    /// The results of a job that has not ended.
    pub(crate) fn job_not_ended(id: &str) -> Self {
        let mut problem = Self::new(
            StatusCode::CONFLICT,
            "job-not-ended",
            "The job has not ended",
            format!(
                "job {id} is still queued or running: its results are ready when GET /v1/jobs/{id} says `done`"
            ),
        );
        problem.headers = vec![(header::RETRY_AFTER, HeaderValue::from_static("2"))];
        problem
    }

    /// Ours, not the caller's: logged with what went wrong, which the
    /// caller is not shown.
    pub(crate) fn internal(e: crate::error::Error) -> Self {
        tracing::error!(error = %e, "a request failed");
        let (status, detail) = match e.fault() {
            crate::error::Fault::Service => (
                StatusCode::SERVICE_UNAVAILABLE,
                "a service this server needs did not answer; try again",
            ),
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the server failed to answer; its log says why",
            ),
        };
        Self::new(
            status,
            "internal",
            "The server could not answer",
            detail.into(),
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("type".into(), json!(format!("/problems/{}", self.kind)));
        body.insert("title".into(), json!(self.title));
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        body.extend(self.extra);
        let mut response = (self.status, axum::Json(Value::Object(body))).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}
