//! Benevity: `POST /v1/impact-reports`, schema `1.0`, authenticated by an
//! API key plus an HMAC-SHA256 signature of the received bytes, or by a
//! bearer token (the signature then optional, with the default secret).

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::{get, post},
};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use super::{
    api::{self, error},
    schema::{Check, Node},
    state::SandboxState,
};
use crate::provider::Provider;

const IDEMPOTENCY_KEY: &str = "X-Idempotency-Key";
const API_KEY: &str = "X-API-Key";
const SIGNATURE: &str = "X-Benevity-Signature";
const TIMESTAMP: &str = "X-Benevity-Timestamp";
/// A timestamped signature older or newer than this is a replay or a bad
/// clock, refused as real webhook-style signatures are.
const TIMESTAMP_TOLERANCE_SECS: i64 = 300;

pub(crate) fn routes() -> Router<Arc<SandboxState>> {
    Router::new()
        .route("/v1/impact-reports", post(submit))
        .route("/v1/ping", get(ping))
}

/// The connection test: credentials checked, nothing delivered or signed.
async fn ping(State(state): State<Arc<SandboxState>>, headers: HeaderMap) -> Response {
    let known = match api::bearer(&headers) {
        Some(token) => state
            .check_token(Provider::Benevity, None, token)
            .map_err(api::invalid_token),
        None => match api::header(&headers, API_KEY) {
            Some(key) if state.config.benevity_signature_secret(key).is_some() => Ok(String::new()),
            _ => Err(unauthorized(
                "invalid_api_key",
                "the X-API-Key is not known",
            )),
        },
    };
    match known {
        Ok(_) => api::pong(),
        Err(refused) => refused,
    }
}

async fn submit(
    State(state): State<Arc<SandboxState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = api::intercept(&state, Provider::Benevity).await {
        return response;
    }
    handle(&state, &headers, &body).unwrap_or_else(|refused| refused)
}

fn handle(state: &SandboxState, headers: &HeaderMap, body: &Bytes) -> Result<Response, Response> {
    authenticate(state, headers, body)?;
    let key = api::idempotency_key(headers, IDEMPOTENCY_KEY)?;
    let payload = api::json_body(headers, body)?;
    validate(&payload, key).map_err(api::invalid_payload)?;
    Ok(api::deliver(
        state,
        Provider::Benevity,
        key,
        payload,
        || {
            let id = format!("bnv_{}", Uuid::new_v4());
            let answer = json!({ "id": id, "status": "accepted", "delivery_id": key });
            (id, api::stored_json(StatusCode::CREATED, &answer))
        },
    ))
}

fn authenticate(state: &SandboxState, headers: &HeaderMap, body: &[u8]) -> Result<(), Response> {
    let secret = if let Some(token) = api::bearer(headers) {
        state
            .check_token(Provider::Benevity, None, token)
            .map_err(api::invalid_token)?;
        if api::header(headers, SIGNATURE).is_none() {
            return Ok(());
        }
        state.config.benevity_default_signature_secret()
    } else {
        let api_key = api::header(headers, API_KEY).ok_or_else(|| {
            unauthorized("invalid_api_key", "X-API-Key or a bearer token is required")
        })?;
        state
            .config
            .benevity_signature_secret(api_key)
            .ok_or_else(|| unauthorized("invalid_api_key", "the X-API-Key is not known"))?
    };
    verify_signature(secret, headers, body)
}

fn verify_signature(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), Response> {
    let presented = api::header(headers, SIGNATURE)
        .ok_or_else(|| unauthorized("invalid_signature", "X-Benevity-Signature is required"))?;
    let timestamp = api::header(headers, TIMESTAMP);
    if let Some(timestamp) = timestamp
        && !is_fresh(timestamp, chrono::Utc::now().timestamp())
    {
        return Err(unauthorized(
            "invalid_signature",
            "X-Benevity-Timestamp must be Unix seconds within 5 minutes of now",
        ));
    }
    if !signature_matches(secret, timestamp, body, presented) {
        return Err(unauthorized(
            "invalid_signature",
            "X-Benevity-Signature does not match the body",
        ));
    }
    Ok(())
}

/// Hex HMAC-SHA256 over the exact received bytes, or over
/// `{timestamp}.{body}`; `verify_slice` compares in constant time.
fn signature_matches(secret: &str, timestamp: Option<&str>, body: &[u8], presented: &str) -> bool {
    let Ok(presented) = hex::decode(presented.trim()) else {
        return false;
    };
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    if let Some(timestamp) = timestamp {
        mac.update(timestamp.as_bytes());
        mac.update(b".");
    }
    mac.update(body);
    mac.verify_slice(&presented).is_ok()
}

fn is_fresh(timestamp: &str, now: i64) -> bool {
    timestamp.bytes().all(|b| b.is_ascii_digit())
        && timestamp
            .parse::<i64>()
            .is_ok_and(|at| (now - at).abs() <= TIMESTAMP_TOLERANCE_SECS)
}

fn unauthorized(code: &str, description: &str) -> Response {
    error(StatusCode::UNAUTHORIZED, code, description)
}

fn validate(body: &Value, idempotency_key: &str) -> Check<()> {
    let report = Node::root(body).object(&[
        "schema_version",
        "delivery_id",
        "company_id",
        "reporting_period",
        "metrics",
        "donations",
        "outcomes",
        "programs",
    ])?;
    report.field("schema_version").constant("1.0")?;
    report
        .field("delivery_id")
        .equals_header(IDEMPOTENCY_KEY, idempotency_key)?;
    report.field("company_id").uuid()?;
    report
        .field("reporting_period")
        .object(&["start_date", "end_date"])?
        .period("start_date", "end_date")?;

    let metrics = report.field("metrics").object(&[
        "volunteer_hours",
        "volunteer_count",
        "participant_count",
        "session_count",
        "sroi_ratio",
        "vis_score",
    ])?;
    metrics.field("volunteer_hours").quantity()?;
    metrics.field("volunteer_count").count()?;
    metrics.field("participant_count").count()?;
    metrics.field("session_count").count()?;
    metrics.field("sroi_ratio").optional_quantity()?;
    metrics.field("vis_score").optional_quantity()?;

    report.field("donations").donations("amount_minor")?;
    for outcome in report.field("outcomes").items()? {
        let outcome = outcome.object(&["dimension", "score"])?;
        outcome.field("dimension").text()?;
        outcome.field("score").score()?;
    }
    for program in report.field("programs").items()? {
        let program =
            program.object(&["name", "volunteer_hours", "participant_count", "donations"])?;
        program.field("name").text()?;
        program.field("volunteer_hours").quantity()?;
        program.field("participant_count").count()?;
        program.field("donations").donations("amount_minor")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, message: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(message);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signatures_cover_the_exact_bytes_and_the_timestamp() {
        let body = br#"{"a": 1}"#;
        let plain = sign("secret", body);
        assert!(signature_matches("secret", None, body, &plain));
        assert!(signature_matches(
            "secret",
            None,
            body,
            &plain.to_uppercase()
        ));
        assert!(!signature_matches("secret", None, br#"{"a":1}"#, &plain));
        assert!(!signature_matches("other", None, body, &plain));
        assert!(!signature_matches("secret", None, body, "not hex"));
        assert!(!signature_matches(
            "secret",
            Some("1700000000"),
            body,
            &plain
        ));

        let stamped = sign("secret", br#"1700000000.{"a": 1}"#);
        assert!(signature_matches(
            "secret",
            Some("1700000000"),
            body,
            &stamped
        ));
        assert!(!signature_matches(
            "secret",
            Some("1700000001"),
            body,
            &stamped
        ));
    }

    #[test]
    fn timestamps_must_be_recent_unix_seconds() {
        let now = 1_700_000_000;
        assert!(is_fresh("1700000000", now));
        assert!(is_fresh("1699999700", now));
        assert!(!is_fresh("1699999699", now));
        assert!(!is_fresh("1700000301", now));
        assert!(
            !is_fresh("1700000000000", now),
            "milliseconds are not seconds"
        );
        assert!(!is_fresh("+1700000000", now));
        assert!(!is_fresh("", now));
    }
}
