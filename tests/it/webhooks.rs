//! `/webhooks/*` with signed requests built here, against the real router
//! over a fresh database: every refusal, de-duplication, ordering, the
//! effect on deliveries, tenant scoping, and what reaches the logs.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use impact_in::{
    clock::ManualClock,
    webhooks::signature::{sign_benevity, sign_standard},
};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{ADMIN, OPS_KEY, TestApp, TestResponse, config, token, unreachable_pool};

const BENEVITY_SECRET: &str = "benevity-webhook-secret-for-tests";
const BENEVITY_OLD_SECRET: &str = "benevity-webhook-secret-rotated-out";
const GOODERA_KEY: [u8; 32] = [11; 32];
const WORKDAY_KEY: [u8; 32] = [22; 32];

fn whsec(key: &[u8]) -> String {
    format!("whsec_{}", STANDARD.encode(key))
}

fn secrets() -> Vec<(String, String)> {
    vec![
        (
            "BENEVITY_WEBHOOK_SECRET".into(),
            format!("{BENEVITY_SECRET},{BENEVITY_OLD_SECRET}"),
        ),
        ("GOODERA_WEBHOOK_SECRET".into(), whsec(&GOODERA_KEY)),
        ("WORKDAY_WEBHOOK_SECRET".into(), whsec(&WORKDAY_KEY)),
    ]
}

fn webhook_config(extra: &[(&str, &str)]) -> impact_in::config::Config {
    let secrets = secrets();
    let mut vars: Vec<(&str, &str)> = secrets
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    vars.extend_from_slice(extra);
    config(&vars)
}

/// The app with webhook secrets, on a clock the test moves.
async fn app(pool: PgPool, extra: &[(&str, &str)]) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(
        "2026-12-06T12:00:00Z".parse::<DateTime<Utc>>().unwrap(),
    ));
    let app = TestApp::start_with_clock(pool, webhook_config(extra), clock.clone()).await;
    (app, clock)
}

/// A delivery row in `status`, as the pipeline leaves it after the
/// provider answered with `reference`; its record id and delivery id.
async fn seed(pool: &PgPool, company: Uuid, provider: &str, status: &str) -> (Uuid, Uuid) {
    let (id, delivery_id) = (Uuid::now_v7(), Uuid::new_v4());
    sqlx::query(
        "INSERT INTO impact_deliveries
             (id, company_id, provider, delivery_id, payload, payload_hash, status,
              attempt_count, provider_response, delivered_at, last_error)
         VALUES ($1, $2, $3, $4, '{}', 'seeded', $5, 1,
                 jsonb_build_object('reference', 'ref-' || $4::text),
                 CASE WHEN $5 = 'success' THEN now() END,
                 CASE WHEN $5 = 'failed' THEN 'timed out after 15 s' END)",
    )
    .bind(id)
    .bind(company)
    .bind(provider)
    .bind(delivery_id)
    .bind(status)
    .execute(pool)
    .await
    .unwrap();
    (id, delivery_id)
}

fn benevity_event(event_id: &str, event_type: &str, delivery: Uuid, at: &str) -> Value {
    json!({
        "event_id": event_id, "event_type": event_type, "occurred_at": at,
        "data": {"delivery_id": delivery, "reasons": ["hours must be positive"]},
    })
}

fn goodera_event(event_type: &str, data: Value, at: &str) -> Value {
    json!({"type": event_type, "timestamp": at, "data": data})
}

/// A Benevity webhook signed with `secret` at `timestamp`.
fn benevity(path: &str, body: &[u8], secret: &str, timestamp: i64) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-benevity-timestamp", timestamp.to_string())
        .header(
            "x-benevity-signature",
            sign_benevity(secret.as_bytes(), timestamp, body),
        )
        .body(Body::from(body.to_vec()))
        .unwrap()
}

/// A Standard Webhooks request (Goodera, Workday) signed with `key`.
fn standard(path: &str, id: &str, body: &[u8], key: &[u8], timestamp: i64) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", sign_standard(key, id, timestamp, body))
        .body(Body::from(body.to_vec()))
        .unwrap()
}

/// Posts Benevity's event `body`, signed with `secret` at the clock's now.
async fn send_benevity(
    app: &TestApp,
    path: &str,
    body: &Value,
    secret: &str,
    clock: &ManualClock,
) -> TestResponse {
    app.send(benevity(
        path,
        body.to_string().as_bytes(),
        secret,
        now(clock),
    ))
    .await
}

fn now(clock: &ManualClock) -> i64 {
    use impact_in::clock::Clock;
    clock.now().timestamp()
}

async fn delivery(app: &TestApp, id: Uuid) -> Value {
    let response = app
        .get(&format!("/v1/impact-in/deliveries/{id}"), Some(OPS_KEY))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response.body
}

fn assert_refused(response: &TestResponse, kind: &str) {
    let problem = response.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(problem["type"], kind, "{problem}");
}

async fn event_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM impact_webhook_events")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_signed_event_sets_the_provider_status_once_and_a_repeat_changes_nothing(pool: PgPool) {
    let (app, clock) = app(pool.clone(), &[]).await;
    let company = Uuid::new_v4();
    let (id, delivery_id) = seed(&pool, company, "benevity", "success").await;
    let body = benevity_event(
        "evt_1",
        "delivery.received",
        delivery_id,
        "2026-12-06T11:59:00Z",
    )
    .to_string();

    let first = app
        .send(benevity(
            "/webhooks/benevity",
            body.as_bytes(),
            BENEVITY_SECRET,
            now(&clock),
        ))
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(
        first.body,
        json!({"status": "accepted", "outcome": "applied", "matched": true})
    );
    let after = delivery(&app, id).await;
    assert_eq!(after["providerStatus"], "received");
    assert_eq!(after["providerStatusAt"], "2026-12-06T11:59:00Z");

    // The sender retries the same event later (same signed id, new
    // signature): 200, nothing new stored.
    clock.advance(Duration::from_secs(3600));
    let again = app
        .send(benevity(
            "/webhooks/benevity",
            body.as_bytes(),
            BENEVITY_SECRET,
            now(&clock),
        ))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(event_count(&pool).await, 1);
    assert_eq!(
        delivery(&app, id).await["events"].as_array().unwrap().len(),
        1
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn both_secrets_of_a_rotation_verify(pool: PgPool) {
    let (app, clock) = app(pool.clone(), &[]).await;
    let (_, delivery_id) = seed(&pool, Uuid::new_v4(), "benevity", "success").await;
    for (n, secret) in [BENEVITY_SECRET, BENEVITY_OLD_SECRET]
        .into_iter()
        .enumerate()
    {
        let body = benevity_event(
            &format!("evt_{n}"),
            "delivery.received",
            delivery_id,
            "2026-12-06T11:00:00Z",
        );
        let response = send_benevity(&app, "/webhooks/benevity", &body, secret, &clock).await;
        assert_eq!(response.status, StatusCode::ACCEPTED, "{secret}");
    }
    let body = benevity_event(
        "evt_x",
        "delivery.received",
        delivery_id,
        "2026-12-06T11:00:00Z",
    );
    let response = send_benevity(
        &app,
        "/webhooks/benevity",
        &body,
        "a-secret-nobody-configured",
        &clock,
    )
    .await;
    assert_refused(&response, "/problems/webhook-signature-mismatch");
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_timestamp_tolerance_holds_at_its_edges(pool: PgPool) {
    let (app, clock) = app(pool.clone(), &[("WEBHOOK_TOLERANCE_SECS", "300")]).await;
    let (_, delivery_id) = seed(&pool, Uuid::new_v4(), "goodera", "success").await;
    let body = goodera_event(
        "data.received",
        json!({"idempotency_key": delivery_id}),
        "2026-12-06T12:00:00Z",
    )
    .to_string();
    let sent = now(&clock);
    let mut accepted = 0;
    for (offset, ok) in [(300i64, true), (-300, true), (301, false), (-301, false)] {
        let id = format!("msg_{offset}");
        let request = standard(
            "/webhooks/goodera",
            &id,
            body.as_bytes(),
            &GOODERA_KEY,
            sent - offset,
        );
        let response = app.send(request).await;
        if ok {
            assert!(response.status.is_success(), "{offset}: {}", response.body);
            accepted += 1;
        } else {
            assert_refused(&response, "/problems/webhook-timestamp-outside-tolerance");
        }
    }
    assert_eq!(event_count(&pool).await, accepted);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn every_refusal_says_why_is_counted_and_stores_nothing(pool: PgPool) {
    let (app, clock) = app(pool.clone(), &[]).await;
    let (_, delivery_id) = seed(&pool, Uuid::new_v4(), "workday", "success").await;
    let body = json!({"type": "report.processed", "timestamp": "2026-12-06T12:00:00Z",
                      "data": {"externalReferenceId": delivery_id}})
    .to_string();
    let ts = now(&clock);

    // No signature at all, as the seed's runbook curl sends.
    let bare = Request::builder()
        .method(Method::POST)
        .uri("/webhooks/workday")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.clone()))
        .unwrap();
    let response = app.send(bare).await;
    assert_refused(&response, "/problems/webhook-missing-signature");
    assert!(
        response.body["detail"]
            .as_str()
            .unwrap()
            .contains("webhook-id")
    );

    // An empty signature entry (`v1,` must not verify), and a captured
    // request replayed with a fresh id: the id is signed, so the signature
    // no longer matches (an unsigned id would let it pass de-duplication
    // as a new event).
    for (header, value) in [("webhook-signature", "v1,"), ("webhook-id", "msg_2")] {
        let mut tampered = standard(
            "/webhooks/workday",
            "msg_1",
            body.as_bytes(),
            &WORKDAY_KEY,
            ts,
        );
        tampered
            .headers_mut()
            .insert(header, value.parse().unwrap());
        assert_refused(
            &app.send(tampered).await,
            "/problems/webhook-signature-mismatch",
        );
    }

    // Goodera's key on Workday's route.
    let crossed = standard(
        "/webhooks/workday",
        "msg_3",
        body.as_bytes(),
        &GOODERA_KEY,
        ts,
    );
    assert_refused(
        &app.send(crossed).await,
        "/problems/webhook-signature-mismatch",
    );

    assert_eq!(event_count(&pool).await, 0);
    let health = app.get("/webhooks/health", None).await;
    assert_eq!(health.status, StatusCode::OK);
    let workday = &health.body["providers"]["workday"];
    assert_eq!(
        (
            workday["received"].clone(),
            workday["verified"].clone(),
            workday["refused"].clone()
        ),
        (
            json!(4),
            json!(0),
            json!({"total": 4, "missingSignature": 1, "timestampOutsideTolerance": 0, "signatureMismatch": 3})
        )
    );
    assert_eq!(workday["configured"], true);
    assert_eq!(workday["lastVerifiedAt"], Value::Null);
    // Never a secret, in any form.
    let text = health.body.to_string();
    assert!(
        !text.contains("whsec_") && !text.contains(BENEVITY_SECRET),
        "{text}"
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_provider_without_a_secret_answers_503_and_never_takes_unsigned_events(pool: PgPool) {
    let (app, clock) = app(pool.clone(), &[("GOODERA_WEBHOOK_SECRET", "")]).await;
    let body = br#"{"type":"data.processed"}"#;
    let response = app
        .send(standard(
            "/webhooks/goodera",
            "msg_1",
            body,
            &GOODERA_KEY,
            now(&clock),
        ))
        .await;
    let problem = response.problem(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem["type"], "/problems/webhook-not-configured");
    let health = app.get("/webhooks/health", None).await;
    assert_eq!(health.body["providers"]["goodera"]["configured"], false);
    assert_eq!(event_count(&pool).await, 0);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn an_oversized_body_is_413_and_a_malformed_verified_one_is_400(pool: PgPool) {
    let (app, clock) = app(pool.clone(), &[("WEBHOOK_BODY_LIMIT_BYTES", "1024")]).await;
    let big = vec![b' '; 2048];
    let response = app
        .send(benevity(
            "/webhooks/benevity",
            &big,
            BENEVITY_SECRET,
            now(&clock),
        ))
        .await;
    let problem = response.problem(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem["type"], "/problems/payload-too-large");

    for body in [
        b"{not json".to_vec(),
        json!({"event_type": "delivery.success"})
            .to_string()
            .into_bytes(),
        json!({"event_id": "evt_1", "event_type": "delivery.success",
               "occurred_at": "2026-12-06T12:00:00Z", "data": {}})
        .to_string()
        .into_bytes(),
    ] {
        let response = app
            .send(benevity(
                "/webhooks/benevity",
                &body,
                BENEVITY_SECRET,
                now(&clock),
            ))
            .await;
        let problem = response.problem(StatusCode::BAD_REQUEST);
        assert_eq!(problem["type"], "/problems/malformed-webhook-event");
    }
    assert_eq!(event_count(&pool).await, 0);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn an_older_event_never_overwrites_a_newer_one(pool: PgPool) {
    let (app, clock) = app(pool.clone(), &[]).await;
    let (id, delivery_id) = seed(&pool, Uuid::new_v4(), "goodera", "success").await;
    let at = |t| goodera_event(t, json!({"idempotency_key": delivery_id}), "");
    let send = |id: &'static str, event_type: &'static str, time: &'static str| {
        let mut body = at(event_type);
        body["timestamp"] = json!(time);
        standard(
            "/webhooks/goodera",
            id,
            body.to_string().as_bytes(),
            &GOODERA_KEY,
            now(&clock),
        )
    };
    let processed = app
        .send(send("msg_b", "data.processed", "2026-12-06T11:05:00Z"))
        .await;
    assert_eq!(processed.body["outcome"], "applied");
    let late = app
        .send(send("msg_a", "data.received", "2026-12-06T11:00:00Z"))
        .await;
    assert_eq!(late.status, StatusCode::ACCEPTED);
    assert_eq!(late.body["outcome"], "stale");
    // At the same instant, the later stage wins.
    let same = app
        .send(send("msg_c", "data.received", "2026-12-06T11:05:00Z"))
        .await;
    assert_eq!(same.body["outcome"], "stale");

    let after = delivery(&app, id).await;
    assert_eq!(after["providerStatus"], "processed");
    assert_eq!(after["providerStatusAt"], "2026-12-06T11:05:00Z");
    let outcomes: Vec<&Value> = after["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["outcome"])
        .collect();
    assert_eq!(
        outcomes,
        [&json!("stale"), &json!("applied"), &json!("stale")]
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn processed_after_our_failure_succeeds_and_rejected_after_our_success_fails(pool: PgPool) {
    let (app, clock) = app(pool.clone(), &[]).await;
    let company = Uuid::new_v4();
    let (timed_out, timed_out_key) = seed(&pool, company, "workday", "failed").await;
    let (accepted, accepted_key) = seed(&pool, company, "benevity", "success").await;

    // Named by the provider's reference rather than our delivery id.
    let body = json!({"type": "report.processed", "timestamp": "2026-12-06T11:30:00Z",
                      "data": {"id": format!("ref-{timed_out_key}")}});
    let response = app
        .send(standard(
            "/webhooks/workday",
            "msg_1",
            body.to_string().as_bytes(),
            &WORKDAY_KEY,
            now(&clock),
        ))
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.body);
    let now_success = delivery(&app, timed_out).await;
    assert_eq!(now_success["status"], "success");
    assert_eq!(now_success["lastError"], Value::Null);
    assert_eq!(now_success["deliveredAt"], "2026-12-06T11:30:00Z");

    let body = benevity_event(
        "evt_r",
        "delivery.failed",
        accepted_key,
        "2026-12-06T11:31:00Z",
    );
    send_benevity(&app, "/webhooks/benevity", &body, BENEVITY_SECRET, &clock).await;
    let now_failed = delivery(&app, accepted).await;
    assert_eq!(now_failed["status"], "failed");
    assert_eq!(
        now_failed["lastError"],
        "rejected by benevity after acceptance: hours must be positive"
    );
    let event = &now_failed["events"][0];
    assert_eq!(
        (event["statusBefore"].clone(), event["statusAfter"].clone()),
        (json!("success"), json!("failed"))
    );

    // It is in the failed list, so it can be replayed, and stats count both.
    let reader = token(&[company], &[ADMIN]);
    let failed = app
        .get(
            &format!("/v1/impact-in/deliveries?companyId={company}&status=failed"),
            Some(&reader),
        )
        .await;
    assert_eq!(failed.body["data"][0]["id"], json!(accepted));
    let stats = app
        .get(
            &format!("/v1/impact-in/stats?companyId={company}"),
            Some(&reader),
        )
        .await;
    assert_eq!(stats.body["byStatus"]["success"], 1);
    assert_eq!(stats.body["byStatus"]["failed"], 1);
    assert_eq!(
        stats.body["byProviderStatus"],
        json!({"none": 0, "received": 0, "retrying": 0, "processed": 1, "rejected": 1})
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn unknown_and_foreign_deliveries_are_stored_unmatched_for_ops(pool: PgPool) {
    let ours = Uuid::new_v4();
    let theirs = Uuid::new_v4();
    let ours_var = format!(
        "BENEVITY_{}_WEBHOOK_SECRET",
        ours.to_string().to_uppercase().replace('-', "_")
    );
    let company_secret = "benevity-webhook-secret-of-one-company";
    let (app, clock) = app(pool.clone(), &[(ours_var.as_str(), company_secret)]).await;
    let (their_delivery, their_key) = seed(&pool, theirs, "benevity", "success").await;

    // Unknown delivery on the global route: 202, unmatched, no company.
    let body = benevity_event(
        "evt_unknown",
        "delivery.success",
        Uuid::new_v4(),
        "2026-12-06T11:00:00Z",
    );
    let response = send_benevity(&app, "/webhooks/benevity", &body, BENEVITY_SECRET, &clock).await;
    assert_eq!(response.status, StatusCode::ACCEPTED);
    assert_eq!(response.body["matched"], false);

    // Another company's delivery on our company's route, signed with our
    // company's secret: it cannot touch it.
    let body = benevity_event(
        "evt_foreign",
        "delivery.failed",
        their_key,
        "2026-12-06T11:00:00Z",
    );
    let path = format!("/webhooks/benevity/{ours}");
    let global_secret_refused = send_benevity(&app, &path, &body, BENEVITY_SECRET, &clock).await;
    assert_refused(
        &global_secret_refused,
        "/problems/webhook-signature-mismatch",
    );
    let response = send_benevity(&app, &path, &body, company_secret, &clock).await;
    assert_eq!(response.status, StatusCode::ACCEPTED);
    assert_eq!(response.body["outcome"], "unmatched");
    assert_eq!(delivery(&app, their_delivery).await["status"], "success");

    // Ops see both unmatched events; our company sees the one on its route;
    // the other company sees none.
    let list = |bearer: String, query: &'static str| {
        let app = &app;
        async move {
            let response = app
                .get(
                    &format!("/v1/impact-in/webhook-events{query}"),
                    Some(&bearer),
                )
                .await;
            assert_eq!(response.status, StatusCode::OK, "{}", response.body);
            response.body
        }
    };
    let all = list(OPS_KEY.into(), "?matched=false").await;
    assert_eq!(all["pagination"]["total"], 2);
    let event_ids: Vec<&Value> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["eventId"])
        .collect();
    assert_eq!(event_ids, [&json!("evt_foreign"), &json!("evt_unknown")]);
    let mine = list(token(&[ours], &[ADMIN]), "").await;
    assert_eq!(mine["pagination"]["total"], 1);
    assert_eq!(mine["data"][0]["companyId"], json!(ours));
    let theirs_list = list(token(&[theirs], &[ADMIN]), "").await;
    assert_eq!(theirs_list["pagination"]["total"], 0);

    // Filters are checked like the delivery list's.
    let bad = app
        .get(
            "/v1/impact-in/webhook-events?matched=maybe&provider=paypal&companyId=&cursor=",
            Some(OPS_KEY),
        )
        .await;
    bad.problem(StatusCode::BAD_REQUEST);
    let mut fields = bad.error_fields();
    fields.sort();
    // An empty value is refused, not taken for the parameter left out.
    assert_eq!(fields, ["companyId", "cursor", "matched", "provider"]);
    let unauthorized = app.get("/v1/impact-in/webhook-events", None).await;
    unauthorized.problem(StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn an_unknown_event_type_is_stored_as_ignored(pool: PgPool) {
    let (app, clock) = app(pool.clone(), &[]).await;
    let body = goodera_event("data.archived", json!({}), "2026-12-06T11:00:00Z").to_string();
    let response = app
        .send(standard(
            "/webhooks/goodera",
            "msg_1",
            body.as_bytes(),
            &GOODERA_KEY,
            now(&clock),
        ))
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body["status"], "ignored");
    let stored: String = sqlx::query_scalar("SELECT outcome FROM impact_webhook_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, "ignored");
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn postgres_down_answers_503_with_retry_after(_pool: PgPool) {
    let app = TestApp::unstarted(unreachable_pool(), webhook_config(&[]));
    let body = benevity_event(
        "evt_1",
        "delivery.success",
        Uuid::new_v4(),
        "2026-12-06T11:00:00Z",
    );
    let signed_now = Utc::now().timestamp();
    let response = app
        .send(benevity(
            "/webhooks/benevity",
            body.to_string().as_bytes(),
            BENEVITY_SECRET,
            signed_now,
        ))
        .await;
    let problem = response.problem(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem["type"], "/problems/unavailable");
    assert_eq!(response.headers[header::RETRY_AFTER], "5");
}
