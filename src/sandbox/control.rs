//! The control API under `/_sandbox/`: how tests drive faults, latency,
//! token expiry and the ingest streams' data, and read what the providers
//! and the alert receivers received. No auth: the sandbox is a development
//! tool.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, de::DeserializeOwned};

use super::{
    alerts::Receiver,
    api::error,
    ingest::{DatasetError, Stream},
    state::{Answer, Endpoint, Fault, SandboxState, Target},
    webhooks::Twist,
};
use crate::provider::Provider;

pub(crate) fn routes() -> Router<Arc<SandboxState>> {
    Router::new()
        .route("/_sandbox/faults", post(faults))
        .route("/_sandbox/drops", post(drops))
        .route("/_sandbox/latency", post(latency))
        .route("/_sandbox/tokens/expire", post(expire_tokens))
        .route("/_sandbox/reset", post(reset))
        .route("/_sandbox/received", get(received))
        .route("/_sandbox/alerts", get(alerts))
        .route("/_sandbox/stats", get(stats))
        .route(
            "/_sandbox/webhooks",
            get(webhooks_sent).post(configure_webhooks),
        )
        .route("/_sandbox/webhooks/next", post(twist_webhooks))
        .route("/_sandbox/ingest", post(ingest_records))
        .route("/_sandbox/ingest/changes", post(ingest_changes))
        .route("/_sandbox/ingest/malformed", post(ingest_malformed))
}

/// Faults, drops and latency name a provider (and for faults and drops an
/// endpoint, `api` by default) or an ingest stream; see [`target`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FaultsRequest {
    provider: Option<Provider>,
    endpoint: Option<Endpoint>,
    stream: Option<Stream>,
    service: Option<Service>,
    /// Requests let through before the first fault.
    #[serde(default)]
    after_requests: u32,
    count: u32,
    status: u16,
    retry_after_secs: Option<u64>,
    location: Option<String>,
    body: Option<String>,
    content_type: Option<String>,
    #[serde(default)]
    cut_off: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DropsRequest {
    provider: Option<Provider>,
    endpoint: Option<Endpoint>,
    stream: Option<Stream>,
    service: Option<Service>,
    #[serde(default)]
    after_requests: u32,
    count: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LatencyRequest {
    provider: Option<Provider>,
    stream: Option<Stream>,
    service: Option<Service>,
    ms: u64,
}

/// The volume of one stream, or of all when `stream` is absent.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RecordsRequest {
    records: u64,
    stream: Option<Stream>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChangesRequest {
    stream: Stream,
    count: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MalformedRequest {
    stream: Stream,
    indices: Vec<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WebhooksRequest {
    /// The service's webhook base; `null` stops sending. Absent: unchanged.
    #[serde(default, deserialize_with = "present")]
    url: Option<Option<String>>,
    delay_ms: Option<u64>,
}

/// A member that is present, even as `null`, is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TwistRequest {
    twist: Twist,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceivedQuery {
    provider: Option<Provider>,
}

async fn configure_webhooks(State(state): State<Arc<SandboxState>>, body: Bytes) -> Response {
    let request: WebhooksRequest = match parse(&body) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    if let Some(Some(url)) = &request.url
        && url::Url::parse(url).is_err()
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "url must be an absolute URL",
        );
    }
    state
        .webhooks
        .configure(request.url, request.delay_ms.map(Duration::from_millis));
    StatusCode::NO_CONTENT.into_response()
}

async fn twist_webhooks(State(state): State<Arc<SandboxState>>, body: Bytes) -> Response {
    match parse::<TwistRequest>(&body) {
        Ok(request) => {
            state.webhooks.twist_next(request.twist, request.count);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(refused) => refused,
    }
}

/// Every webhook posted so far, oldest first, with the service's answer.
async fn webhooks_sent(State(state): State<Arc<SandboxState>>) -> Response {
    Json(state.webhooks.sent()).into_response()
}

async fn faults(State(state): State<Arc<SandboxState>>, body: Bytes) -> Response {
    let request: FaultsRequest = match parse(&body) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let target = match target(
        request.provider,
        request.endpoint,
        request.stream,
        request.service,
    ) {
        Ok(target) => target,
        Err(problem) => return invalid_request(problem),
    };
    let (after_requests, count) = (request.after_requests, request.count);
    match answer(request) {
        Ok(answer) => {
            state.queue_faults(target, after_requests, count, Fault::Answer(answer));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(problem) => invalid_request(problem),
    }
}

/// A service the sandbox also plays, besides providers and ingest
/// streams: the impact platform's metrics and the alert receivers.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Service {
    ImpactMetrics,
    Slack,
    #[serde(rename = "pagerduty")]
    PagerDuty,
}

impl From<Service> for Target {
    fn from(service: Service) -> Self {
        match service {
            Service::ImpactMetrics => Self::ImpactMetrics,
            Service::Slack => Self::Receiver(Receiver::Slack),
            Service::PagerDuty => Self::Receiver(Receiver::PagerDuty),
        }
    }
}

/// A provider's endpoint (`api` unless named), an ingest stream's route
/// (a stream has one, hence no endpoint) or a service's; exactly one.
fn target(
    provider: Option<Provider>,
    endpoint: Option<Endpoint>,
    stream: Option<Stream>,
    service: Option<Service>,
) -> Result<Target, &'static str> {
    match (provider, stream, service) {
        (Some(provider), None, None) => {
            Ok(Target::Provider(provider, endpoint.unwrap_or_default()))
        }
        (None, Some(stream), None) if endpoint.is_none() => Ok(Target::Stream(stream)),
        (None, None, Some(service)) if endpoint.is_none() => Ok(service.into()),
        (None, Some(_), None) | (None, None, Some(_)) => {
            Err("endpoint goes with a provider; a stream or a service has one route")
        }
        (None, None, None) => Err("provider, stream or service is required"),
        _ => Err("name one of provider, stream and service"),
    }
}

/// The answer a fault request describes, or what is wrong with it.
fn answer(request: FaultsRequest) -> Result<Answer, &'static str> {
    let status = StatusCode::from_u16(request.status)
        .ok()
        .filter(|status| (200..600).contains(&status.as_u16()))
        .ok_or("status must be between 200 and 599")?;
    let location = match (status.is_redirection(), request.location) {
        (true, Some(location)) => {
            Some(HeaderValue::from_str(&location).map_err(|_| "location must be visible ASCII")?)
        }
        (true, None) => return Err("a 3xx status needs a location"),
        (false, Some(_)) => return Err("location is only for a 3xx status"),
        (false, None) => None,
    };
    // The default body is the sandbox's error: under a 2xx it would pass
    // for an acceptance nobody asked for.
    if status.is_success() && request.body.is_none() {
        return Err("a 2xx status needs a body (the answer to give)");
    }
    let body = match (request.body, request.content_type) {
        (Some(body), content_type) => {
            let content_type = content_type
                .as_deref()
                .unwrap_or("text/plain; charset=utf-8");
            Some((
                Bytes::from(body),
                HeaderValue::from_str(content_type)
                    .map_err(|_| "contentType must be visible ASCII")?,
            ))
        }
        (None, Some(_)) => return Err("contentType goes with a body"),
        (None, None) => None,
    };
    Ok(Answer {
        status,
        retry_after_secs: request.retry_after_secs,
        location,
        body,
        cut_off: request.cut_off,
    })
}

async fn drops(State(state): State<Arc<SandboxState>>, body: Bytes) -> Response {
    let request: DropsRequest = match parse(&body) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    match target(
        request.provider,
        request.endpoint,
        request.stream,
        request.service,
    ) {
        Ok(target) => {
            state.queue_faults(target, request.after_requests, request.count, Fault::Drop);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(problem) => invalid_request(problem),
    }
}

async fn latency(State(state): State<Arc<SandboxState>>, body: Bytes) -> Response {
    let request: LatencyRequest = match parse(&body) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    match target(request.provider, None, request.stream, request.service) {
        Ok(target) => {
            state.set_latency(target, Duration::from_millis(request.ms));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(problem) => invalid_request(problem),
    }
}

async fn ingest_records(State(state): State<Arc<SandboxState>>, body: Bytes) -> Response {
    match parse::<RecordsRequest>(&body) {
        Ok(request) => done(state.set_ingest_records(request.stream, request.records)),
        Err(refused) => refused,
    }
}

async fn ingest_changes(State(state): State<Arc<SandboxState>>, body: Bytes) -> Response {
    match parse::<ChangesRequest>(&body) {
        Ok(request) => done(state.change_records(request.stream, request.count)),
        Err(refused) => refused,
    }
}

async fn ingest_malformed(State(state): State<Arc<SandboxState>>, body: Bytes) -> Response {
    match parse::<MalformedRequest>(&body) {
        Ok(request) => done(state.mark_malformed(request.stream, &request.indices)),
        Err(refused) => refused,
    }
}

/// `204`, or `400` saying why the stream's data could not be changed.
fn done(result: Result<(), DatasetError>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(problem) => invalid_request(problem.to_string()),
    }
}

async fn expire_tokens(State(state): State<Arc<SandboxState>>) -> StatusCode {
    state.expire_tokens();
    StatusCode::NO_CONTENT
}

async fn reset(State(state): State<Arc<SandboxState>>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}

async fn received(
    State(state): State<Arc<SandboxState>>,
    query: Result<Query<ReceivedQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match query {
        Ok(Query(query)) => Json(state.received(query.provider)).into_response(),
        Err(rejection) => error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            rejection.body_text(),
        ),
    }
}

/// What the alert receivers accepted, PagerDuty's open incidents and the
/// refusals.
async fn alerts(State(state): State<Arc<SandboxState>>) -> Response {
    Json(state.alerts()).into_response()
}

async fn stats(State(state): State<Arc<SandboxState>>) -> Response {
    Json(state.stats()).into_response()
}

fn invalid_request(problem: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request", problem)
}

/// JSON bodies with our error shape rather than axum's plain-text rejection.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|err| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("invalid control request: {err}"),
        )
    })
}
