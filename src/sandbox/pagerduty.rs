//! PagerDuty's Events API v2, where the SLA monitor's
//! `PAGERDUTY_EVENTS_URL` points: `POST /pagerduty/v2/enqueue`, validated
//! and answered as PagerDuty does (`202` with the dedup key, `400 invalid
//! event` listing every problem). Any routing key is accepted: the sandbox
//! has no services to route to. Incidents open on a trigger and close on a
//! resolve, per dedup key (`alerts.rs`). Outages and throttling are
//! injected with the faults of `"service": "pagerduty"`.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    alerts::{EventAction, Receiver},
    api,
    state::{SandboxState, Target},
};

/// PagerDuty's limits, in characters.
const MAX_DEDUP_KEY: usize = 255;
const MAX_SUMMARY: usize = 1024;
const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];

pub(crate) fn routes() -> Router<Arc<SandboxState>> {
    Router::new().route("/pagerduty/v2/enqueue", post(enqueue))
}

async fn enqueue(State(state): State<Arc<SandboxState>>, body: Bytes) -> Response {
    if let Some(injected) = api::intercept(&state, Target::Receiver(Receiver::PagerDuty)).await {
        return injected;
    }
    match event(&body) {
        Ok(event) => {
            // PagerDuty makes the key of a trigger that has none: 32 hex digits.
            let dedup_key = event
                .dedup_key
                .unwrap_or_else(|| Uuid::new_v4().simple().to_string());
            state.accept_pagerduty(event.action, dedup_key.clone(), event.body);
            (
                StatusCode::ACCEPTED,
                Json(json!({
                    "status": "success",
                    "message": "Event processed",
                    "dedup_key": dedup_key,
                })),
            )
                .into_response()
        }
        Err(errors) => {
            tracing::debug!(?errors, "sandbox PagerDuty refused the event");
            state.reject_alert(Receiver::PagerDuty);
            (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": errors,
                })),
            )
                .into_response()
        }
    }
}

struct Event {
    action: EventAction,
    dedup_key: Option<String>,
    body: Value,
}

/// The event, or every problem PagerDuty would name in it.
fn event(body: &[u8]) -> Result<Event, Vec<String>> {
    let body: Value = serde_json::from_slice(body).map_err(|_| vec!["Malformed JSON".into()])?;
    let mut errors = Vec::new();
    if non_blank(body.get("routing_key")).is_none() {
        errors.push("'routing_key' is missing or blank".into());
    }
    let action = match body.get("event_action").and_then(Value::as_str) {
        Some("trigger") => Some(EventAction::Trigger),
        Some("acknowledge") => Some(EventAction::Acknowledge),
        Some("resolve") => Some(EventAction::Resolve),
        _ => {
            errors.push(
                "'event_action' is invalid (must be one of trigger, acknowledge, resolve)".into(),
            );
            None
        }
    };
    let dedup_key = match body.get("dedup_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(key)) => Some(key.as_str()).filter(|key| !key.trim().is_empty()),
        Some(_) => {
            errors.push("'dedup_key' must be a string".into());
            None
        }
    };
    if dedup_key.is_some_and(|key| key.chars().count() > MAX_DEDUP_KEY) {
        errors.push(format!(
            "Length of 'dedup_key' is incorrect (should be at most {MAX_DEDUP_KEY} characters)"
        ));
    }
    match action {
        Some(EventAction::Trigger) => errors.extend(trigger_problems(body.get("payload"))),
        Some(EventAction::Acknowledge | EventAction::Resolve) if dedup_key.is_none() => {
            errors.push("'dedup_key' is required to acknowledge or resolve".into());
        }
        _ => {}
    }
    let dedup_key = dedup_key.map(str::to_owned);
    match action {
        Some(action) if errors.is_empty() => Ok(Event {
            action,
            dedup_key,
            body,
        }),
        _ => Err(errors),
    }
}

/// What is wrong with a trigger's `payload` (acknowledge and resolve
/// ignore it).
fn trigger_problems(payload: Option<&Value>) -> Vec<String> {
    let field = |name: &str| payload.and_then(|payload| payload.get(name));
    let mut errors = Vec::new();
    match non_blank(field("summary")) {
        None => errors.push("'payload.summary' is missing or blank".into()),
        Some(summary) if summary.chars().count() > MAX_SUMMARY => errors.push(format!(
            "Length of 'payload.summary' is incorrect (should be at most {MAX_SUMMARY} characters)"
        )),
        Some(_) => {}
    }
    if non_blank(field("source")).is_none() {
        errors.push("'payload.source' is missing or blank".into());
    }
    if !field("severity")
        .and_then(Value::as_str)
        .is_some_and(|severity| SEVERITIES.contains(&severity))
    {
        errors.push(
            "'payload.severity' is invalid (must be one of critical, error, warning, info)".into(),
        );
    }
    errors
}

fn non_blank(value: Option<&Value>) -> Option<&str> {
    value
        .and_then(Value::as_str)
        .filter(|text| !text.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(summary: &str) -> Value {
        json!({
            "routing_key": "sandbox",
            "event_action": "trigger",
            "payload": { "summary": summary, "source": "impact-in", "severity": "critical" },
        })
    }

    fn errors_of(body: &Value) -> Vec<String> {
        match event(body.to_string().as_bytes()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors,
        }
    }

    #[test]
    fn limits_count_characters_not_bytes() {
        assert!(errors_of(&trigger(&"é".repeat(1024))).is_empty());
        assert_eq!(
            errors_of(&trigger(&"a".repeat(1025))),
            ["Length of 'payload.summary' is incorrect (should be at most 1024 characters)"]
        );
        let mut keyed = trigger("SLA breached");
        keyed["dedup_key"] = json!("é".repeat(255));
        assert!(errors_of(&keyed).is_empty());
        keyed["dedup_key"] = json!("k".repeat(256));
        assert_eq!(
            errors_of(&keyed),
            ["Length of 'dedup_key' is incorrect (should be at most 255 characters)"]
        );
    }

    #[test]
    fn every_problem_is_listed() {
        let errors = errors_of(&json!({
            "routing_key": " ",
            "event_action": "trigger",
            "payload": { "summary": "", "severity": "fatal" },
        }));
        assert_eq!(
            errors,
            [
                "'routing_key' is missing or blank",
                "'payload.summary' is missing or blank",
                "'payload.source' is missing or blank",
                "'payload.severity' is invalid (must be one of critical, error, warning, info)",
            ]
        );
        assert_eq!(
            errors_of(&json!({ "routing_key": "k", "event_action": "open" })),
            ["'event_action' is invalid (must be one of trigger, acknowledge, resolve)"]
        );
        assert_eq!(
            event(b"{not json").err().unwrap(),
            ["Malformed JSON"],
            "the body must parse"
        );
    }

    #[test]
    fn acknowledge_and_resolve_need_a_dedup_key_but_no_payload() {
        for action in ["acknowledge", "resolve"] {
            let mut body = json!({ "routing_key": "k", "event_action": action });
            assert_eq!(
                errors_of(&body),
                ["'dedup_key' is required to acknowledge or resolve"]
            );
            body["dedup_key"] = json!(" ");
            assert_eq!(
                errors_of(&body),
                ["'dedup_key' is required to acknowledge or resolve"],
                "a blank key is none"
            );
            body["dedup_key"] = json!("sla/benevity");
            assert!(errors_of(&body).is_empty(), "{action}");
        }
    }
}
