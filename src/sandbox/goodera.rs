//! Goodera: `POST /v2/impact-data`, schema `2.1`, bearer token or
//! `x-api-key`, limited to 100 requests per minute per client (its ingest
//! routes, in `ingest/routes.rs`, draw on the same budget).

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header::RETRY_AFTER},
    response::Response,
    routing::{get, post},
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    api::{self, error},
    ratelimit::Decision,
    schema::{Check, Node},
    state::SandboxState,
};
use crate::provider::Provider;

const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
const API_KEY: &str = "x-api-key";

pub(crate) fn routes() -> Router<Arc<SandboxState>> {
    Router::new()
        .route("/v2/impact-data", post(submit))
        .route("/v2/ping", get(ping))
}

/// The connection test: credentials checked, nothing delivered.
async fn ping(State(state): State<Arc<SandboxState>>, headers: HeaderMap) -> Response {
    match authenticate(&state, &headers) {
        Ok(_) => api::pong(),
        Err(refused) => refused,
    }
}

async fn submit(
    State(state): State<Arc<SandboxState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = api::intercept(&state, Provider::Goodera).await {
        return response;
    }
    match authenticate(&state, &headers) {
        Ok(client) => rate_limited(&state, &client, || {
            handle(&state, &headers, &body).unwrap_or_else(|refused| refused)
        }),
        Err(refused) => refused,
    }
}

/// `handle`'s answer if `client` is within the limit, `429` otherwise; with
/// the rate-limit headers either way.
pub(crate) fn rate_limited(
    state: &SandboxState,
    client: &str,
    handle: impl FnOnce() -> Response,
) -> Response {
    let decision = state.goodera_rate_limit(client);
    let mut response = if decision.allowed {
        handle()
    } else {
        let mut refused = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            format!("more than {} requests in a minute", decision.limit),
        );
        refused.headers_mut().insert(
            RETRY_AFTER,
            HeaderValue::from(ceil_secs(decision.resets_in).max(1)),
        );
        refused
    };
    add_rate_limit_headers(&mut response, decision);
    response
}

/// The rate-limit client: the token's client id, or the API key.
fn authenticate(state: &SandboxState, headers: &HeaderMap) -> Result<String, Response> {
    match api::bearer(headers) {
        Some(token) => state
            .check_token(Provider::Goodera, None, token)
            .map(|client_id| format!("client:{client_id}"))
            .map_err(api::invalid_token),
        None => api_key_client(state, headers, "a bearer token or x-api-key is required"),
    }
}

/// The rate-limit client of a request authenticated by `x-api-key`;
/// `missing` explains a request without one.
pub(crate) fn api_key_client(
    state: &SandboxState,
    headers: &HeaderMap,
    missing: &str,
) -> Result<String, Response> {
    match api::header(headers, API_KEY) {
        Some(key) if state.config.goodera_api_key_known(key) => Ok(format!("api-key:{key}")),
        Some(_) => Err(error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "the x-api-key is not known",
        )),
        None => Err(api::unauthenticated(missing)),
    }
}

fn handle(state: &SandboxState, headers: &HeaderMap, body: &Bytes) -> Result<Response, Response> {
    let key = api::idempotency_key(headers, IDEMPOTENCY_KEY)?;
    let payload = api::json_body(headers, body)?;
    validate(&payload, key).map_err(api::invalid_payload)?;
    Ok(api::deliver(state, Provider::Goodera, key, payload, || {
        let id = format!("gdr_{}", Uuid::new_v4());
        let answer = json!({ "data": { "submission_id": id, "status": "received" } });
        (id, api::stored_json(StatusCode::CREATED, &answer))
    }))
}

/// `X-RateLimit-Reset` is wall-clock epoch seconds; the window itself runs on
/// the tokio clock.
fn add_rate_limit_headers(response: &mut Response, decision: Decision) {
    let resets_at = SystemTime::now() + decision.resets_in;
    let reset_epoch = ceil_secs(resets_at.duration_since(UNIX_EPOCH).unwrap_or_default());
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(decision.remaining),
    );
    headers.insert("x-ratelimit-reset", HeaderValue::from(reset_epoch));
}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

fn validate(body: &Value, idempotency_key: &str) -> Check<()> {
    let report = Node::root(body).object(&[
        "version",
        "idempotency_key",
        "organization_id",
        "period",
        "volunteering",
        "donations",
        "impact_dimensions",
        "sroi_ratio",
        "vis_score",
        "programs",
    ])?;
    report.field("version").constant("2.1")?;
    report
        .field("idempotency_key")
        .equals_header(IDEMPOTENCY_KEY, idempotency_key)?;
    report.field("organization_id").uuid()?;
    report
        .field("period")
        .object(&["from", "to"])?
        .period("from", "to")?;

    let volunteering = report.field("volunteering").object(&[
        "hours",
        "volunteers",
        "participants",
        "sessions",
    ])?;
    volunteering.field("hours").quantity()?;
    volunteering.field("volunteers").count()?;
    volunteering.field("participants").count()?;
    volunteering.field("sessions").count()?;

    report.field("donations").donations("amount_minor")?;
    for dimension in report.field("impact_dimensions").items()? {
        let dimension = dimension.object(&["dimension_name", "score", "scale"])?;
        dimension.field("dimension_name").text()?;
        dimension.field("score").score()?;
        dimension.field("scale").constant("normalized_0_1")?;
    }
    report.field("sroi_ratio").optional_quantity()?;
    report.field("vis_score").optional_quantity()?;
    for program in report.field("programs").items()? {
        let program = program.object(&["program_name", "hours", "participants", "donations"])?;
        program.field("program_name").text()?;
        program.field("hours").quantity()?;
        program.field("participants").count()?;
        program.field("donations").donations("amount_minor")?;
    }
    Ok(())
}
