//! Slack's incoming webhooks, where the SLA monitor's `SLACK_WEBHOOK_URL`
//! points: `POST /slack/services/{team}/{bot}/{token}`, answered in plain
//! text as Slack does, `200 ok` or `400 invalid_payload`. Any team, bot and
//! token are accepted: the URL is Slack's credential, and the sandbox has
//! no workspace to check it against. Slack's other failures (`404
//! no_service`, `410 channel_is_archived`, `429` with `Retry-After`, 5xx)
//! are injected with the faults of `"service": "slack"`.

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, Uri, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::Value;

use super::{
    alerts::Receiver,
    api,
    state::{SandboxState, Target},
};

pub(crate) fn routes() -> Router<Arc<SandboxState>> {
    Router::new().route("/slack/services/{team}/{bot}/{token}", post(message))
}

async fn message(State(state): State<Arc<SandboxState>>, uri: Uri, body: Bytes) -> Response {
    if let Some(injected) = api::intercept(&state, Target::Receiver(Receiver::Slack)).await {
        return injected;
    }
    match payload(&body) {
        Some(message) => {
            state.accept_slack(uri.path().to_owned(), message);
            plain(StatusCode::OK, "ok")
        }
        None => {
            tracing::debug!("sandbox Slack refused the message: invalid_payload");
            state.reject_alert(Receiver::Slack);
            plain(StatusCode::BAD_REQUEST, "invalid_payload")
        }
    }
}

/// The message, when it is JSON with a non-blank `text` and `blocks`, if
/// any, a list.
fn payload(body: &[u8]) -> Option<Value> {
    let message: Value = serde_json::from_slice(body).ok()?;
    let has_text = message
        .get("text")
        .and_then(Value::as_str)
        .is_some_and(|text| !text.trim().is_empty());
    let blocks_listed = message.get("blocks").is_none_or(Value::is_array);
    (has_text && blocks_listed).then_some(message)
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    (status, [(CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_needs_text_and_blocks_only_as_a_list() {
        for accepted in [
            r#"{"text": "SLA breached"}"#,
            r#"{"text": "SLA breached", "blocks": [{"type": "section"}]}"#,
            r#"{"text": "SLA breached", "username": "impact-in"}"#,
        ] {
            assert!(payload(accepted.as_bytes()).is_some(), "{accepted}");
        }
        for refused in [
            "",
            "text=SLA",
            "[]",
            r#"{"blocks": []}"#,
            r#"{"text": ""}"#,
            r#"{"text": "  "}"#,
            r#"{"text": 5}"#,
            r#"{"text": "SLA breached", "blocks": {}}"#,
        ] {
            assert!(payload(refused.as_bytes()).is_none(), "{refused}");
        }
    }
}
