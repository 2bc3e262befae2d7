//! What every provider route shares: injected faults and latency,
//! RFC 6749-style JSON errors, bearer tokens, JSON bodies and the answer to
//! an accepted delivery. The ingest routes share the first three.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use axum::{
    Json,
    body::{Body, Bytes, HttpBody},
    http::{
        HeaderMap, HeaderValue, StatusCode,
        header::{AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE},
    },
    response::{IntoResponse, Response},
};
use hyper::body::Frame;
use serde_json::{Value, json};

use super::{
    DropConnection,
    schema::Invalid,
    state::{Answer, Endpoint, Fault, SandboxState, StoredResponse, Target, TokenProblem},
};
use crate::provider::Provider;

const JSON: &str = "application/json";

/// `{"error", "error_description"}` with `status`. Descriptions never
/// contain a presented credential, so they are safe to log.
pub(crate) fn error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    let description = description.into();
    tracing::debug!(
        status = status.as_u16(),
        error,
        description,
        "sandbox refused"
    );
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// Counts the request, waits the configured latency, then applies the next
/// queued fault if there is one. `None`: the route handles the request.
/// `target` is a provider (its API routes) or an ingest stream.
pub(crate) async fn intercept(state: &SandboxState, target: impl Into<Target>) -> Option<Response> {
    let target = target.into();
    let arrival = state.arrive(target);
    if !arrival.latency.is_zero() {
        tokio::time::sleep(arrival.latency).await;
    }
    arrival.fault.map(|fault| inject(target, fault))
}

/// The next fault queued for a token endpoint, if there is one. Latency
/// and the request counters are for API requests only.
pub(crate) fn intercept_token(state: &SandboxState, provider: Provider) -> Option<Response> {
    state
        .token_fault(provider)
        .map(|fault| inject(Target::Provider(provider, Endpoint::Token), fault))
}

fn inject(target: Target, fault: Fault) -> Response {
    match fault {
        Fault::Drop => {
            tracing::debug!(%target, "injected drop: closing the connection unanswered");
            let mut response = Response::default();
            response.extensions_mut().insert(DropConnection);
            response
        }
        Fault::Answer(answer) => {
            tracing::debug!(%target, status = answer.status.as_u16(), "injected answer");
            injected(answer)
        }
    }
}

fn injected(answer: Answer) -> Response {
    let (body, content_type) = answer.body.unwrap_or_else(|| {
        let error = json!({
            "error": "sandbox_fault",
            "error_description": "injected by POST /_sandbox/faults",
        });
        (
            Bytes::from(error.to_string()),
            HeaderValue::from_static(JSON),
        )
    });
    let mut response = if answer.cut_off {
        let half = body.slice(..body.len() / 2);
        Response::new(Body::new(BreaksOff {
            bytes: Some(half),
            yielded: false,
        }))
    } else {
        Response::new(Body::from(body))
    };
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, content_type);
    if let Some(seconds) = answer.retry_after_secs {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let Some(location) = answer.location {
        headers.insert(LOCATION, location);
    }
    response
}

/// A body that sends its bytes and then fails, which makes hyper close the
/// connection before the answer is complete.
struct BreaksOff {
    bytes: Option<Bytes>,
    /// Set after yielding once past the bytes, so that hyper writes them
    /// out (with the head) before the failure ends the connection.
    yielded: bool,
}

impl HttpBody for BreaksOff {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(bytes) = self.bytes.take() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        if !self.yielded {
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Some(Err(io::Error::other(
            "answer cut off by the sandbox on request",
        ))))
    }
}

/// A header's value, when present and visible ASCII.
pub(crate) fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The token of an `Authorization: Bearer` header (scheme case-insensitive).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = header(headers, AUTHORIZATION.as_str())?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// RFC 6750 §3.1: 401 with `WWW-Authenticate: Bearer error="invalid_token"`.
pub(crate) fn invalid_token(problem: TokenProblem) -> Response {
    let description = match problem {
        TokenProblem::Unknown => "the access token is unknown",
        TokenProblem::Expired => "the access token expired",
    };
    let mut response = error(StatusCode::UNAUTHORIZED, "invalid_token", description);
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer error="invalid_token""#),
    );
    response
}

/// Whether `Content-Type` names `media_type` (parameters such as `charset`
/// allowed).
pub(crate) fn has_media_type(headers: &HeaderMap, media_type: &str) -> bool {
    header(headers, CONTENT_TYPE.as_str())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(media_type))
}

/// The request body as JSON: 415 unless it is declared JSON, 400 unless it
/// parses.
pub(crate) fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, Response> {
    if !has_media_type(headers, JSON) {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|err| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("the body is not valid JSON: {err}"),
        )
    })
}

/// The required idempotency header, or 400.
pub(crate) fn idempotency_key<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, Response> {
    header(headers, name)
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the {name} header is required"),
            )
        })
}

/// 422 naming the first offending field.
pub(crate) fn invalid_payload(invalid: Invalid) -> Response {
    let description = format!("{}: {}", invalid.field, invalid.problem);
    tracing::debug!(
        field = invalid.field,
        problem = invalid.problem,
        "sandbox refused the payload"
    );
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({
            "error": "invalid_payload",
            "error_description": description,
            "field": invalid.field,
        })),
    )
        .into_response()
}

/// A JSON answer to keep for repeats.
pub(crate) fn stored_json(status: StatusCode, body: &Value) -> StoredResponse {
    StoredResponse {
        status,
        content_type: JSON,
        body: Bytes::from(body.to_string()),
    }
}

impl IntoResponse for StoredResponse {
    fn into_response(self) -> Response {
        (
            self.status,
            [(CONTENT_TYPE, HeaderValue::from_static(self.content_type))],
            self.body,
        )
            .into_response()
    }
}

/// Records an accepted delivery (or counts a repeat) and answers it.
pub(crate) fn deliver(
    state: &SandboxState,
    provider: Provider,
    idempotency_key: &str,
    body: Value,
    respond: impl FnOnce() -> (String, StoredResponse),
) -> Response {
    let accepted = state.accept(provider, idempotency_key, body, respond);
    tracing::debug!(
        %provider,
        idempotency_key,
        times_received = accepted.times_received,
        "sandbox accepted a delivery"
    );
    // The provider tells what became of a delivery once, not per repeat.
    if accepted.times_received == 1 {
        state
            .webhooks
            .accepted(provider, idempotency_key, &accepted.reference);
    }
    accepted.response.into_response()
}

/// 401 for a request with no credentials at all (RFC 6750 §3.1: a bare
/// `Bearer` challenge).
pub(crate) fn unauthenticated(description: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, "unauthorized", description);
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The answer to a connection test.
pub(crate) fn pong() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}
