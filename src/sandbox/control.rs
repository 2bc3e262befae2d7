//! The control API under `/_sandbox/`: how tests drive faults, latency and
//! token expiry, and read what the providers received. No auth: the sandbox
//! is a development tool.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, de::DeserializeOwned};

use super::{
    api::error,
    state::{Fault, SandboxState},
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
        .route("/_sandbox/stats", get(stats))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FaultsRequest {
    provider: Provider,
    count: u32,
    status: u16,
    retry_after_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DropsRequest {
    provider: Provider,
    count: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LatencyRequest {
    provider: Provider,
    ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceivedQuery {
    provider: Option<Provider>,
}

async fn faults(State(state): State<Arc<SandboxState>>, body: Bytes) -> Response {
    let request: FaultsRequest = match parse(&body) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    // Only error statuses: a "fault" answering 2xx would fake an acceptance
    // that is never recorded.
    let status = match StatusCode::from_u16(request.status) {
        Ok(status) if status.is_client_error() || status.is_server_error() => status,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "status must be between 400 and 599",
            );
        }
    };
    let fault = Fault::Status {
        status,
        retry_after_secs: request.retry_after_secs,
    };
    state.queue_faults(request.provider, request.count, fault);
    StatusCode::NO_CONTENT.into_response()
}

async fn drops(State(state): State<Arc<SandboxState>>, body: Bytes) -> Response {
    match parse::<DropsRequest>(&body) {
        Ok(request) => {
            state.queue_faults(request.provider, request.count, Fault::Drop);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(refused) => refused,
    }
}

async fn latency(State(state): State<Arc<SandboxState>>, body: Bytes) -> Response {
    match parse::<LatencyRequest>(&body) {
        Ok(request) => {
            state.set_latency(request.provider, Duration::from_millis(request.ms));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(refused) => refused,
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

async fn stats(State(state): State<Arc<SandboxState>>) -> Response {
    Json(state.stats()).into_response()
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
