//! The sandbox's alert receivers over real HTTP: Slack's incoming webhook
//! and PagerDuty's Events API v2, their validation, PagerDuty's incidents,
//! injected faults, `GET /_sandbox/alerts` and reset.

use impact_in::sandbox::{Sandbox, SandboxConfig, credentials};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

use crate::common::sandbox_api;

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig::default())
        .await
        .expect("the sandbox starts")
}

async fn post_slack(sandbox: &Sandbox, body: &str) -> Response {
    Client::new()
        .post(format!(
            "{}{}",
            sandbox.url(),
            credentials::SLACK_WEBHOOK_PATH
        ))
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn post_pagerduty(sandbox: &Sandbox, event: &Value) -> Response {
    Client::new()
        .post(format!("{}/pagerduty/v2/enqueue", sandbox.url()))
        .json(event)
        .send()
        .await
        .unwrap()
}

/// The status and the JSON answer of an event.
async fn enqueue(sandbox: &Sandbox, event: &Value) -> (StatusCode, Value) {
    let response = post_pagerduty(sandbox, event).await;
    (response.status(), response.json().await.unwrap())
}

fn trigger(dedup_key: Option<&str>) -> Value {
    let mut event = json!({
        "routing_key": credentials::PAGERDUTY_INTEGRATION_KEY,
        "event_action": "trigger",
        "payload": {
            "summary": "Benevity deliveries: p95 latency above the SLA",
            "source": "impact-in",
            "severity": "critical",
        },
    });
    if let Some(key) = dedup_key {
        event["dedup_key"] = json!(key);
    }
    event
}

fn follow_up(action: &str, dedup_key: &str) -> Value {
    json!({
        "routing_key": credentials::PAGERDUTY_INTEGRATION_KEY,
        "event_action": action,
        "dedup_key": dedup_key,
    })
}

async fn alerts(sandbox: &Sandbox) -> Value {
    sandbox_api::read(sandbox, "alerts").await
}

#[tokio::test]
async fn slack_accepts_a_message_with_text_and_records_it() {
    let sandbox = sandbox().await;
    let message = json!({
        "text": "SLA breached: Benevity deliveries",
        "blocks": [{ "type": "section", "text": { "type": "mrkdwn", "text": "*SLA breached*" } }],
    });
    let response = post_slack(&sandbox, &message.to_string()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(response.text().await.unwrap(), "ok");

    for refused in ["{not json", r#"{"blocks": []}"#, r#"{"text": ""}"#] {
        let response = post_slack(&sandbox, refused).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{refused}");
        assert_eq!(response.text().await.unwrap(), "invalid_payload");
    }

    let alerts = alerts(&sandbox).await;
    let slack = alerts["slack"].as_array().unwrap();
    assert_eq!(slack.len(), 1, "refused messages are not recorded");
    assert_eq!(slack[0]["path"], credentials::SLACK_WEBHOOK_PATH);
    assert_eq!(slack[0]["body"], message);
    let received_at = slack[0]["receivedAt"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(received_at).is_ok(),
        "{received_at}"
    );
    assert_eq!(alerts["rejected"], json!({ "slack": 3, "pagerduty": 0 }));
    assert_eq!(
        sandbox_api::read(&sandbox, "stats").await["alertRequests"],
        json!({ "slack": 4, "pagerduty": 0 })
    );
}

#[tokio::test]
async fn slack_fails_as_injected_then_accepts() {
    let sandbox = sandbox().await;
    for fault in [
        json!({ "service": "slack", "count": 1, "status": 410, "body": "channel_is_archived" }),
        json!({ "service": "slack", "count": 1, "status": 429, "retryAfterSecs": 30, "body": "rate_limited" }),
    ] {
        assert_eq!(
            sandbox_api::control(&sandbox, "faults", fault).await,
            StatusCode::NO_CONTENT
        );
    }
    let message = r#"{"text": "SLA breached"}"#;

    let archived = post_slack(&sandbox, message).await;
    assert_eq!(archived.status(), StatusCode::GONE);
    assert_eq!(archived.text().await.unwrap(), "channel_is_archived");
    let throttled = post_slack(&sandbox, message).await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers()["retry-after"], "30");
    let accepted = post_slack(&sandbox, message).await;
    assert_eq!(accepted.status(), StatusCode::OK);
    assert_eq!(accepted.text().await.unwrap(), "ok");

    let alerts = alerts(&sandbox).await;
    assert_eq!(alerts["slack"].as_array().unwrap().len(), 1);
    assert_eq!(
        alerts["rejected"],
        json!({ "slack": 0, "pagerduty": 0 }),
        "faults are not refusals"
    );
    assert_eq!(
        sandbox_api::read(&sandbox, "stats").await["alertRequests"],
        json!({ "slack": 3, "pagerduty": 0 })
    );
}

#[tokio::test]
async fn pagerduty_fails_as_injected_and_leaves_incidents_alone() {
    let sandbox = sandbox().await;
    let fault = json!({ "service": "pagerduty", "count": 2, "status": 500 });
    assert_eq!(
        sandbox_api::control(&sandbox, "faults", fault).await,
        StatusCode::NO_CONTENT
    );
    for attempt in 1..=2 {
        let response = post_pagerduty(&sandbox, &trigger(Some("sla/benevity"))).await;
        assert_eq!(
            response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "attempt {attempt}"
        );
    }
    let alerts_after_faults = alerts(&sandbox).await;
    assert_eq!(alerts_after_faults["pagerduty"], json!([]));
    assert_eq!(alerts_after_faults["openIncidents"], json!([]));

    let (status, _) = enqueue(&sandbox, &trigger(Some("sla/benevity"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        alerts(&sandbox).await["openIncidents"],
        json!(["sla/benevity"])
    );
    assert_eq!(
        sandbox_api::read(&sandbox, "stats").await["alertRequests"],
        json!({ "slack": 0, "pagerduty": 3 })
    );

    // A receiver has one route: no endpoint.
    let with_endpoint =
        json!({ "service": "pagerduty", "endpoint": "api", "count": 1, "status": 500 });
    assert_eq!(
        sandbox_api::control(&sandbox, "faults", with_endpoint).await,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn pagerduty_triggers_open_incidents_counts_duplicates_and_resolves_close_them() {
    let sandbox = sandbox().await;

    let (status, answer) = enqueue(&sandbox, &trigger(Some("sla/benevity"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        answer,
        json!({ "status": "success", "message": "Event processed", "dedup_key": "sla/benevity" })
    );
    let (status, answer) = enqueue(&sandbox, &trigger(Some("sla/benevity"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer["dedup_key"], "sla/benevity");

    // PagerDuty makes the key of a trigger without one.
    let (status, answer) = enqueue(&sandbox, &trigger(None)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let generated = answer["dedup_key"].as_str().unwrap().to_owned();
    assert!(
        generated.len() == 32 && generated.bytes().all(|b| b.is_ascii_hexdigit()),
        "{generated}"
    );

    let state = alerts(&sandbox).await;
    assert_eq!(state["openIncidents"], json!(["sla/benevity", generated]));
    assert_eq!(state["duplicateTriggers"], 1);

    let (status, _) = enqueue(&sandbox, &follow_up("acknowledge", "sla/benevity")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        alerts(&sandbox).await["openIncidents"],
        json!(["sla/benevity", generated]),
        "acknowledged is still open"
    );
    let (status, answer) = enqueue(&sandbox, &follow_up("resolve", "sla/benevity")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer["dedup_key"], "sla/benevity");

    let state = alerts(&sandbox).await;
    assert_eq!(state["openIncidents"], json!([generated]));
    assert_eq!(state["duplicateTriggers"], 1);
    let events = state["pagerduty"].as_array().unwrap();
    let keys: Vec<&str> = events
        .iter()
        .map(|event| event["dedupKey"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "sla/benevity",
            "sla/benevity",
            &generated,
            "sla/benevity",
            "sla/benevity"
        ]
    );
    assert_eq!(events[2]["body"], trigger(None), "the body as received");
    assert!(events[4]["receivedAt"].is_string());
    assert_eq!(state["rejected"], json!({ "slack": 0, "pagerduty": 0 }));
}

#[tokio::test]
async fn pagerduty_refuses_invalid_events_with_400_naming_the_problems() {
    let sandbox = sandbox().await;
    let mut long_summary = trigger(Some("sla/long"));
    long_summary["payload"]["summary"] = json!("a".repeat(1025));
    let mut bad_severity = trigger(Some("sla/severity"));
    bad_severity["payload"]["severity"] = json!("fatal");
    let mut no_routing_key = trigger(Some("sla/no-key"));
    no_routing_key["routing_key"] = json!("");
    let resolve_without_key = json!({
        "routing_key": credentials::PAGERDUTY_INTEGRATION_KEY,
        "event_action": "resolve",
    });
    let cases = [
        (
            long_summary,
            "Length of 'payload.summary' is incorrect (should be at most 1024 characters)",
        ),
        (
            bad_severity,
            "'payload.severity' is invalid (must be one of critical, error, warning, info)",
        ),
        (
            resolve_without_key,
            "'dedup_key' is required to acknowledge or resolve",
        ),
        (no_routing_key, "'routing_key' is missing or blank"),
    ];
    for (event, problem) in &cases {
        let (status, answer) = enqueue(&sandbox, event).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{event}");
        assert_eq!(
            answer,
            json!({
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": [problem],
            })
        );
    }

    // At the limit is fine.
    let mut longest = trigger(Some("sla/longest"));
    longest["payload"]["summary"] = json!("a".repeat(1024));
    assert_eq!(enqueue(&sandbox, &longest).await.0, StatusCode::ACCEPTED);

    let state = alerts(&sandbox).await;
    assert_eq!(state["openIncidents"], json!(["sla/longest"]));
    assert_eq!(state["pagerduty"].as_array().unwrap().len(), 1);
    assert_eq!(state["rejected"], json!({ "slack": 0, "pagerduty": 4 }));
}

#[tokio::test]
async fn reset_forgets_alerts_incidents_counters_and_faults() {
    let sandbox = sandbox().await;
    assert_eq!(
        post_slack(&sandbox, r#"{"text": "SLA breached"}"#)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        post_slack(&sandbox, r#"{"blocks": []}"#).await.status(),
        StatusCode::BAD_REQUEST
    );
    for _ in 0..2 {
        let (status, _) = enqueue(&sandbox, &trigger(Some("sla/benevity"))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    for service in ["slack", "pagerduty"] {
        let fault = json!({ "service": service, "count": 1, "status": 503 });
        assert_eq!(
            sandbox_api::control(&sandbox, "faults", fault).await,
            StatusCode::NO_CONTENT
        );
    }

    assert_eq!(
        sandbox_api::control(&sandbox, "reset", json!({})).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        alerts(&sandbox).await,
        json!({
            "slack": [],
            "pagerduty": [],
            "openIncidents": [],
            "duplicateTriggers": 0,
            "rejected": { "slack": 0, "pagerduty": 0 },
        })
    );
    assert_eq!(
        sandbox_api::read(&sandbox, "stats").await["alertRequests"],
        json!({ "slack": 0, "pagerduty": 0 })
    );

    // The queued faults went too.
    assert_eq!(
        post_slack(&sandbox, r#"{"text": "SLA breached"}"#)
            .await
            .status(),
        StatusCode::OK
    );
    let (status, _) = enqueue(&sandbox, &trigger(Some("sla/benevity"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        alerts(&sandbox).await["duplicateTriggers"],
        0,
        "the incident was forgotten: a new one"
    );
}
