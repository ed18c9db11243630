//! `GET /openapi.json`: the API as an OpenAPI 3.1 document, derived by
//! utoipa from the handlers' annotations and the types they answer with,
//! then completed with what only the running server knows: the lead's
//! JSON Schema (generated from the lead's fields, as `leadflow schema
//! lead-json`), the configured limits, and the problem answers every
//! endpoint may give.

use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::erasures::{ErasureRequest, ErasureState, ErasureView};
use super::jobs::{Counts, JobState, JobView};
use crate::config::ApiConfig;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "leadflow serve",
        description = "Phone enrichment over HTTP: the waterfall of providers, their limits, cache and \
                       budget of `leadflow run`, into the same output tables. Every error is an RFC 9457 \
                       problem (`application/problem+json`)."
    ),
    paths(
        super::lookups,
        super::post_job,
        super::get_job,
        super::delete_job,
        super::job_results,
        super::post_erasure,
        super::get_erasure
    ),
    components(schemas(
        LookupRequest,
        LookupAnswer,
        LookupResult,
        JobView,
        Counts,
        JobState,
        ErasureRequest,
        ErasureView,
        ErasureState,
        ProblemDetails
    )),
    modifiers(&Bearer),
    security(("bearer" = []))
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`leadflow keys new`); `X-Api-Key: KEY` works too",
                    ))
                    .build(),
            ),
        );
    }
}

/// `POST /v1/lookups`' body.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema: the handler reads the body as JSON values
pub(super) struct LookupRequest {
    /// The leads, each a lead object (`#/components/schemas/Lead`).
    leads: Vec<Value>,
}

/// `POST /v1/lookups`' answer: one result per lead, in order.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct LookupAnswer {
    results: Vec<LookupResult>,
}

/// One lead's result: its `index` in the request, then the query's
/// columns (those it returns), or the `error` that made it no lead.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct LookupResult {
    index: u64,
    lead_id: Option<String>,
    phone_e164: Option<String>,
    phone_valid: Option<bool>,
    phone_error: Option<String>,
    found_phone_e164: Option<String>,
    /// `found`, `not_found`, `cached`, `skipped_has_phone`, `skipped_tier`,
    /// `skipped_value`, `rate_limited`, `budget_exhausted`, `error` or `not_run`.
    lookup_status: Option<String>,
    /// The provider that found the phone.
    provider: Option<String>,
    cost_usd: Option<f64>,
    line_type: Option<String>,
    carrier_name: Option<String>,
    line_type_status: Option<String>,
    /// The order the providers were asked in: `priority` or `adaptive`.
    policy: Option<String>,
    /// Why the item is not a lead (then it has no other field).
    error: Option<String>,
}

/// An RFC 9457 problem.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct ProblemDetails {
    /// `/problems/{kind}`.
    r#type: String,
    title: String,
    status: u16,
    detail: String,
    /// The request field at fault.
    field: Option<String>,
    /// The header at fault.
    header: Option<String>,
    /// Where malformed JSON went wrong (from 1).
    line: Option<u64>,
    column: Option<u64>,
}

/// The problems any endpoint may answer with.
const PROBLEMS: &[(&str, &str)] = &[
    (
        "400",
        "Malformed JSON (with its `line` and `column`) or a bad header",
    ),
    ("401", "No API key, or an unknown one"),
    ("404", "No such job (or another organization's)"),
    (
        "409",
        "A request with this Idempotency-Key still runs, or the job has not ended",
    ),
    (
        "413",
        "A body over `[api] max_body_bytes`, or a job over `[api] max_job_leads`",
    ),
    ("415", "A job body of a Content-Type no job takes"),
    (
        "422",
        "A request that cannot be served as it is (with the `field`)",
    ),
    (
        "429",
        "Past the key's `requests_per_minute` (`Retry-After`, `RateLimit`)",
    ),
    ("500", "The server failed; its log says why"),
    (
        "503",
        "A service the server needs did not answer (Redis); try again",
    ),
];

/// The document for a server of `api`.
pub(super) fn document(api: &ApiConfig) -> Vec<u8> {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    doc["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    let mut lead = leadflow_schemas::lead_json_schema();
    if let Some(lead) = lead.as_object_mut() {
        lead.remove("$schema");
    }
    doc["components"]["schemas"]["Lead"] = lead;
    let leads = &mut doc["components"]["schemas"]["LookupRequest"]["properties"]["leads"];
    leads["items"] = json!({ "$ref": "#/components/schemas/Lead" });
    leads["minItems"] = json!(1);
    leads["maxItems"] = json!(api.max_lookup_leads);
    let problem = json!({
        "application/problem+json": { "schema": { "$ref": "#/components/schemas/ProblemDetails" } }
    });
    // What the handlers check of their parameters, beyond their type.
    let parameters = [
        (
            "Idempotency-Key",
            json!({ "type": "string", "pattern": "^[!-~]{1,255}$" }),
        ),
        (
            "format",
            json!({ "type": "string", "enum": ["ndjson", "csv", "parquet"] }),
        ),
        (
            "webhook_url",
            json!({ "type": "string", "format": "uri", "pattern": "^https?://" }),
        ),
    ];
    if let Some(paths) = doc["paths"].as_object_mut() {
        for operation in paths.values_mut().filter_map(Value::as_object_mut) {
            for operation in operation.values_mut() {
                for parameter in operation["parameters"].as_array_mut().into_iter().flatten() {
                    if let Some((_, schema)) = parameters
                        .iter()
                        .find(|(name, _)| parameter["name"] == *name)
                    {
                        parameter["schema"] = schema.clone();
                    }
                }
                let Some(responses) = operation["responses"].as_object_mut() else {
                    continue;
                };
                for (status, description) in PROBLEMS {
                    responses.entry(*status).or_insert_with(
                        || json!({ "description": description, "content": problem.clone() }),
                    );
                }
            }
        }
    }
    let jobs_body = &mut doc["paths"]["/v1/jobs"]["post"]["requestBody"]["content"];
    jobs_body["application/json"]["schema"] = json!({
        "type": "array",
        "items": { "$ref": "#/components/schemas/Lead" },
        "minItems": 1,
        "maxItems": api.max_job_leads,
    });
    serde_json::to_vec_pretty(&doc).expect("JSON serializes")
}
