//! The delivery pipeline end to end: the real router and workers over a
//! fresh Postgres database and real Redis, delivering to the provider
//! sandbox over real HTTP. Retry delays are configured to 1 ms so the
//! queue's backoff does not make the tests wait; waiting here is only for
//! asynchronous work to finish, never for time to pass.

use std::{sync::Arc, time::Duration};

use axum::http::{Method, StatusCode};
use impact_in::{
    clock::{ManualClock, SharedClock, SystemClock},
    delivery::{DeliveryContext, queue, worker},
    sandbox::{Sandbox, SandboxConfig, credentials},
};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{ADMIN, MANAGE, TestApp, sandbox_api};

pub(crate) struct Pipeline {
    pub(crate) app: TestApp,
    sandbox: Sandbox,
    pub(crate) company: Uuid,
    pub(crate) token: String,
    workers: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Pipeline {
    pub(crate) async fn start(pool: PgPool, overrides: &[(&str, &str)]) -> Self {
        Self::start_with_clock(pool, overrides, Arc::new(SystemClock)).await
    }

    async fn start_with_clock(
        pool: PgPool,
        overrides: &[(&str, &str)],
        clock: SharedClock,
    ) -> Self {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let mut vars: Vec<(String, String)> = credentials::env_vars(&sandbox.url())
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        for (k, v) in [
            ("BENEVITY_RETRY_INITIAL_DELAY_MS", "1"),
            ("GOODERA_RETRY_INITIAL_DELAY_MS", "1"),
            ("WORKDAY_RETRY_INITIAL_DELAY_MS", "1"),
            ("DELIVERY_POLL_INTERVAL_MS", "20"),
        ] {
            vars.push((k.into(), v.into()));
        }
        for (k, v) in overrides {
            vars.push(((*k).into(), (*v).into()));
        }
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let app = TestApp::start_with_clock(pool, crate::common::config(&pairs), clock).await;
        let company = Uuid::new_v4();
        let mut pipeline = Self {
            app,
            sandbox,
            company,
            token: crate::common::token(&[company], &[ADMIN, MANAGE]),
            workers: None,
        };
        pipeline.start_workers();
        pipeline
    }

    fn start_workers(&mut self) {
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(worker::run(
            self.app.state.delivery.clone(),
            shutdown.clone(),
        ));
        self.workers = Some((shutdown, handle));
    }

    async fn stop_workers(&mut self) {
        if let Some((shutdown, handle)) = self.workers.take() {
            shutdown.cancel();
            handle.await.unwrap();
        }
    }

    /// Serves the router on a real port and has the sandbox post its
    /// webhooks there, without delay.
    pub(crate) async fn webhooks_back_at_once(&self) {
        let base = self.app.serve().await;
        self.control(
            "webhooks",
            json!({"url": format!("{base}/webhooks"), "delayMs": 0}),
        )
        .await;
    }

    async fn control(&self, path: &str, body: Value) {
        let status = sandbox_api::control(&self.sandbox, path, body).await;
        assert!(status.is_success(), "{path}: {status}");
    }

    /// API requests the sandbox's Benevity has seen, accepted or not.
    async fn sandbox_requests(&self) -> u64 {
        sandbox_api::requests(&self.sandbox, "benevity").await
    }

    async fn received(&self) -> Vec<Value> {
        sandbox_api::received(&self.sandbox, "").await
    }

    async fn create(&self, provider: &str, report: Value) -> Value {
        let response = self
            .app
            .post(
                "/v1/impact-in/deliveries",
                Some(&self.token),
                json!({"companyId": self.company, "provider": provider, "payload": report}),
            )
            .await;
        assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.body);
        response.body
    }

    async fn get(&self, id: &str) -> Value {
        let response = self
            .app
            .get(&format!("/v1/impact-in/deliveries/{id}"), Some(&self.token))
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        response.body
    }

    /// Waits until the delivery reaches `status` (the workers run in the
    /// background), then returns it.
    pub(crate) async fn settled(&self, id: &str, status: &str) -> Value {
        self.until(id, |delivery| delivery["status"] == status)
            .await
    }

    /// Waits until the delivery satisfies `done`, then returns it.
    pub(crate) async fn until(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let delivery = self.get(id).await;
                if done(&delivery) {
                    return delivery;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("delivery {id} never got where the test waited for"))
    }

    /// `n` distinct deliveries to `provider` that it refused with a 400,
    /// once each are `failed`; their ids.
    async fn failed(&self, provider: &str, n: u32) -> Vec<String> {
        self.control(
            "faults",
            json!({"provider": provider, "count": n, "status": 400}),
        )
        .await;
        let mut ids = Vec::new();
        for k in 0..n {
            ids.push(id_of(&self.create(provider, self.distinct_report(k)).await));
        }
        for id in &ids {
            self.settled(id, "failed").await;
        }
        ids
    }

    fn report(&self) -> Value {
        crate::common::report(self.company)
    }

    /// A report distinct from every other one (the idempotency cache
    /// would otherwise answer an identical payload).
    fn distinct_report(&self, n: u32) -> Value {
        let mut report = self.report();
        report["sessionCount"] = json!(n);
        report
    }
}

fn id_of(delivery: &Value) -> String {
    delivery["id"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_created_delivery_reaches_the_provider_once(pool: PgPool) {
    let p = Pipeline::start(pool, &[]).await;
    for provider in ["benevity", "goodera", "workday"] {
        let created = p.create(provider, p.distinct_report(1)).await;
        assert_eq!(created["status"], "pending");
        let done = p.settled(&id_of(&created), "success").await;
        assert_eq!(done["attemptCount"], 1);
        assert_eq!(done["fromCache"], false);
        assert!(done["deliveredAt"].is_string());
        assert!(done["providerResponse"]["reference"].is_string(), "{done}");
        let attempts = done["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0]["trigger"], "automatic");
        assert_eq!(attempts[0]["attemptNumber"], 1);
        assert!(attempts[0]["httpStatus"].as_u64().unwrap() < 300);
    }
    let received = p.received().await;
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|r| r["timesReceived"] == 1));
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn transient_failures_are_retried_until_success(pool: PgPool) {
    let p = Pipeline::start(pool, &[]).await;
    p.control(
        "faults",
        json!({"provider": "benevity", "count": 2, "status": 503}),
    )
    .await;
    let created = p.create("benevity", p.report()).await;
    let done = p.settled(&id_of(&created), "success").await;
    assert_eq!(done["attemptCount"], 3);
    let classes: Vec<&Value> = done["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["errorClass"])
        .collect();
    assert_eq!(
        classes,
        [&json!("transient"), &json!("transient"), &Value::Null]
    );
    assert_eq!(p.received().await[0]["timesReceived"], 1);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn permanent_failures_and_exhausted_attempts_end_failed(pool: PgPool) {
    let p = Pipeline::start(pool, &[]).await;
    p.control(
        "faults",
        json!({"provider": "goodera", "count": 1, "status": 422}),
    )
    .await;
    let rejected = p.create("goodera", p.distinct_report(1)).await;
    let failed = p.settled(&id_of(&rejected), "failed").await;
    assert_eq!(
        failed["attemptCount"], 1,
        "permanent errors are not retried"
    );
    assert!(
        failed["lastError"].as_str().unwrap().contains("422"),
        "{failed}"
    );

    p.control(
        "faults",
        json!({"provider": "goodera", "count": 3, "status": 503}),
    )
    .await;
    let flaky = p.create("goodera", p.distinct_report(2)).await;
    let exhausted = p.settled(&id_of(&flaky), "failed").await;
    assert_eq!(exhausted["attemptCount"], 3);
    assert_eq!(exhausted["nextAttemptAt"], Value::Null);
    assert!(p.received().await.is_empty());
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_replay_reaches_the_provider_with_the_same_delivery_id(pool: PgPool) {
    let p = Pipeline::start(pool, &[]).await;
    p.control(
        "faults",
        json!({"provider": "benevity", "count": 1, "status": 400}),
    )
    .await;
    let created = p.create("benevity", p.report()).await;
    let id = id_of(&created);
    p.settled(&id, "failed").await;

    let replayed = p
        .app
        .post(
            &format!("/v1/impact-in/deliveries/{id}/replay"),
            Some(&p.token),
            json!({}),
        )
        .await;
    assert_eq!(replayed.status, StatusCode::OK, "{}", replayed.body);
    assert_eq!(replayed.body["status"], "success");
    assert_eq!(replayed.body["attemptCount"], 2);
    let detail = p.get(&id).await;
    assert_eq!(detail["attempts"][1]["trigger"], "replay");
    let received = p.received().await;
    assert_eq!(received[0]["idempotencyKey"], created["deliveryId"]);

    // Only failed deliveries are replayed.
    let again = p
        .app
        .post(
            &format!("/v1/impact-in/deliveries/{id}/replay"),
            Some(&p.token),
            json!({}),
        )
        .await;
    again.problem(StatusCode::CONFLICT);
    assert_eq!(again.body["type"], "/problems/delivery-not-failed");
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn identical_payloads_come_from_the_cache_but_replays_never_do(pool: PgPool) {
    let p = Pipeline::start(pool, &[]).await;
    // A fails (failures are not cached); B, identical, is delivered and
    // cached; C, identical, is answered from the cache without a call.
    p.control(
        "faults",
        json!({"provider": "workday", "count": 1, "status": 400}),
    )
    .await;
    let a = p.create("workday", p.report()).await;
    p.settled(&id_of(&a), "failed").await;
    let b = p.create("workday", p.report()).await;
    assert_eq!(p.settled(&id_of(&b), "success").await["fromCache"], false);
    let c = p.create("workday", p.report()).await;
    let cached = p.settled(&id_of(&c), "success").await;
    assert_eq!(cached["fromCache"], true);
    assert_eq!(
        cached["attemptCount"], 0,
        "a cache hit is not a provider call"
    );
    assert_eq!(p.received().await.len(), 1);

    // Replaying A reaches the provider despite the cached identical payload.
    let replayed = p
        .app
        .post(
            &format!("/v1/impact-in/deliveries/{}/replay", id_of(&a)),
            Some(&p.token),
            json!({}),
        )
        .await;
    assert_eq!(replayed.body["fromCache"], false, "{}", replayed.body);
    let received = p.received().await;
    assert!(
        received
            .iter()
            .any(|r| r["idempotencyKey"] == a["deliveryId"]),
        "{received:?}"
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn bulk_replay_answers_per_id(pool: PgPool) {
    let p = Pipeline::start(pool, &[]).await;
    p.control(
        "faults",
        json!({"provider": "benevity", "count": 1, "status": 400}),
    )
    .await;
    let failed = p.create("benevity", p.distinct_report(1)).await;
    p.settled(&id_of(&failed), "failed").await;
    let delivered = p.create("benevity", p.distinct_report(2)).await;
    p.settled(&id_of(&delivered), "success").await;
    let unknown = Uuid::new_v4().to_string();

    let response = p
        .app
        .post(
            "/v1/impact-in/deliveries/bulk-replay",
            Some(&p.token),
            json!({"ids": [id_of(&failed), id_of(&delivered), unknown]}),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let results: Vec<(&str, &str)> = response.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["result"].as_str().unwrap(),
                r["status"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            ("replayed", "success"),
            ("not_failed", "success"),
            ("not_found", "-")
        ]
    );

    for ids in [
        json!([]),
        json!((0..101).map(|_| Uuid::new_v4()).collect::<Vec<_>>()),
    ] {
        let refused = p
            .app
            .post(
                "/v1/impact-in/deliveries/bulk-replay",
                Some(&p.token),
                json!({"ids": ids}),
            )
            .await;
        refused.problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(refused.error_fields(), ["ids"]);
    }
}

/// More ids than are attempted at once, to a provider slower than
/// `REPLAY_TIMEOUT_SECS`: the answer says `in_progress` for every one
/// (those waiting for a slot too), and every one is delivered afterwards,
/// once, as a replay.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_bulk_replay_outlasting_its_timeout_answers_in_progress_and_finishes(pool: PgPool) {
    let p = Pipeline::start(pool.clone(), &[("REPLAY_TIMEOUT_SECS", "1")]).await;
    let ids = p.failed("benevity", 12).await;
    p.control("latency", json!({"provider": "benevity", "ms": 1500}))
        .await;

    let response = p
        .app
        .post(
            "/v1/impact-in/deliveries/bulk-replay",
            Some(&p.token),
            json!({"ids": ids}),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let results = response.body["results"].as_array().unwrap();
    assert_eq!(results.len(), ids.len());
    for (result, id) in results.iter().zip(&ids) {
        assert_eq!(result["id"], id.as_str());
        assert_eq!(result["result"], "in_progress", "{result}");
        assert_eq!(result["status"], "retrying", "{result}");
    }
    // Were the process killed now, every id would be back in the queue once
    // the normal lease (120 s) ran out, those still waiting for a slot too.
    let lease_ends: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM next_attempt_at - now())::float8 FROM impact_deliveries
         WHERE id = ANY($1::uuid[]) AND status = 'retrying'",
    )
    .bind(
        ids.iter()
            .map(|id| id.parse::<Uuid>().unwrap())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!lease_ends.is_empty());
    assert!(
        lease_ends.iter().all(|secs| *secs <= 120.0),
        "{lease_ends:?}"
    );
    for id in &ids {
        let delivery = p.get(id).await;
        if delivery["status"] == "retrying" {
            assert!(delivery["inFlightSince"].is_string(), "{delivery}");
        }
    }
    assert_replayed_once(&p, &ids).await;
}

/// The bug this design fixes: a bulk replay whose request is dropped (here
/// by `REQUEST_TIMEOUT_SECS`, before the replay timeout) still replays every
/// id, including those that had not started yet.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_bulk_replay_dropped_by_the_request_timeout_loses_no_id(pool: PgPool) {
    let p = Pipeline::start(pool, &[("REQUEST_TIMEOUT_SECS", "1")]).await;
    let ids = p.failed("benevity", 12).await;
    p.control("latency", json!({"provider": "benevity", "ms": 1500}))
        .await;

    let response = p
        .app
        .post(
            "/v1/impact-in/deliveries/bulk-replay",
            Some(&p.token),
            json!({"ids": ids}),
        )
        .await;
    response.problem(StatusCode::SERVICE_UNAVAILABLE);
    assert_replayed_once(&p, &ids).await;
}

/// Each delivery ends `success` after exactly its first attempt and one
/// replay, and the provider received each once.
async fn assert_replayed_once(p: &Pipeline, ids: &[String]) {
    for id in ids {
        let done = p.settled(id, "success").await;
        assert_eq!(done["attemptCount"], 2, "{done}");
        assert_eq!(done["attempts"][1]["trigger"], "replay", "{done}");
    }
    let received = p.received().await;
    assert_eq!(received.len(), ids.len());
    assert!(received.iter().all(|r| r["timesReceived"] == 1));
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn retry_all_failed_is_durable_across_a_worker_restart(pool: PgPool) {
    let mut p = Pipeline::start(pool, &[]).await;
    let ids = p.failed("goodera", 3).await;
    // The workers are gone when the re-queue happens: nothing may be lost.
    p.stop_workers().await;
    let queued = p
        .app
        .post(
            "/v1/impact-in/deliveries/retry-all-failed",
            Some(&p.token),
            json!({"companyId": p.company}),
        )
        .await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{}", queued.body);
    assert_eq!(queued.body["queued"], 3);
    p.start_workers();
    for id in &ids {
        let done = p.settled(id, "success").await;
        assert_eq!(done["attempts"][1]["trigger"], "replay");
    }
    assert_eq!(p.received().await.len(), 3);

    // Another company's deliveries are not the caller's to re-queue.
    let foreign = p
        .app
        .post(
            "/v1/impact-in/deliveries/retry-all-failed",
            Some(&p.token),
            json!({"companyId": Uuid::new_v4()}),
        )
        .await;
    foreign.problem(StatusCode::FORBIDDEN);
}

/// A worker that dies holding a lease: once the lease has run out another
/// worker delivers, the provider sees the delivery once, and the dead
/// worker's late outcome is refused.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_worker_dying_mid_attempt_loses_nothing(pool: PgPool) {
    let mut p = Pipeline::start(pool.clone(), &[]).await;
    p.stop_workers().await;
    let created = p.create("benevity", p.report()).await;
    let lease = Duration::from_secs(120);
    let held = queue::claim(&pool, "doomed-worker", 10, lease)
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    // In flight: still pending, the attempt counted, none logged yet, and
    // the lease's start shown so that it does not look stuck.
    let in_flight = p.get(&id_of(&created)).await;
    assert_eq!(in_flight["status"], "pending");
    assert_eq!(in_flight["attemptCount"], 1);
    assert_eq!(in_flight["attempts"], json!([]));
    assert!(in_flight["inFlightSince"].is_string(), "{in_flight}");

    // The lease running out, without waiting two minutes: its expiry is the
    // row's next due time.
    sqlx::query("UPDATE impact_deliveries SET next_attempt_at = now() WHERE id = $1")
        .bind(held[0].id)
        .execute(&pool)
        .await
        .unwrap();
    p.start_workers();
    let done = p.settled(&id_of(&created), "success").await;
    assert_eq!(
        done["attemptCount"], 2,
        "the dead worker's claim counted as an attempt"
    );

    assert_eq!(done["inFlightSince"], Value::Null);
    let late = worker::attempt_and_record(&p.app.state.delivery, held[0].clone()).await;
    assert_eq!(
        late,
        worker::Recorded::NotRecorded,
        "a stale lease cannot overwrite the outcome"
    );
    assert_eq!(p.received().await[0]["timesReceived"], 1);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn two_worker_pools_never_attempt_a_delivery_twice(pool: PgPool) {
    let mut p = Pipeline::start(pool.clone(), &[("DELIVERY_BATCH_SIZE", "4")]).await;
    p.stop_workers().await;
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(id_of(&p.create("benevity", p.distinct_report(n)).await));
    }
    // Two "replicas" over the same database.
    // A worker needs the delivery context only, no authenticator.
    let other =
        DeliveryContext::from_config(&p.app.state.config, pool.clone(), Arc::new(SystemClock))
            .unwrap();
    let other_shutdown = CancellationToken::new();
    let other_workers = tokio::spawn(worker::run(other, other_shutdown.clone()));
    p.start_workers();
    for id in &ids {
        p.settled(id, "success").await;
    }
    other_shutdown.cancel();
    other_workers.await.unwrap();

    let (attempts, deliveries): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM delivery_attempts), (SELECT count(*) FROM impact_deliveries WHERE attempt_count = 1)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((attempts, deliveries), (40, 40));
    let received = p.received().await;
    assert_eq!(received.len(), 40);
    assert!(received.iter().all(|r| r["timesReceived"] == 1));
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn deliveries_flow_while_redis_is_down(pool: PgPool) {
    let black_hole = crate::common::black_hole().await;
    let redis = format!("redis://{black_hole}");
    let p = Pipeline::start(pool, &[("REDIS_URL", &redis), ("REDIS_TIMEOUT_MS", "50")]).await;
    let created = p.create("goodera", p.report()).await;
    p.settled(&id_of(&created), "success").await;
    // The in-process fallback still answers the identical payload.
    let again = p.create("goodera", p.report()).await;
    let cached = p.settled(&id_of(&again), "success").await;
    assert_eq!(cached["fromCache"], true);
    assert_eq!(p.received().await.len(), 1);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_idempotency_key_answers_repeats_and_refuses_reuse(pool: PgPool) {
    let p = Pipeline::start(pool, &[]).await;
    let body =
        |report: Value| json!({"companyId": p.company, "provider": "benevity", "payload": report});
    let send = |body: Value| {
        let request = axum::http::Request::builder()
            .method(Method::POST)
            .uri("/v1/impact-in/deliveries")
            .header("authorization", format!("Bearer {}", p.token))
            .header("content-type", "application/json")
            .header("idempotency-key", "order-42")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        p.app.send(request)
    };
    let first = send(body(p.report())).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    let repeat = send(body(p.report())).await;
    assert_eq!(repeat.status, StatusCode::OK);
    assert_eq!(repeat.body["id"], first.body["id"]);
    let reuse = send(body(p.distinct_report(9))).await;
    reuse.problem(StatusCode::CONFLICT);
    assert_eq!(reuse.body["type"], "/problems/idempotency-key-reused");
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn an_open_circuit_defers_deliveries_without_spending_attempts(pool: PgPool) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let p = Pipeline::start_with_clock(
        pool.clone(),
        &[("BENEVITY_RETRY_MAX_ATTEMPTS", "1")],
        clock.clone(),
    )
    .await;
    // Five transient failures open Benevity's circuit.
    p.control(
        "faults",
        json!({"provider": "benevity", "count": 5, "status": 503}),
    )
    .await;
    for n in 0..5 {
        let created = p.create("benevity", p.distinct_report(n)).await;
        p.settled(&id_of(&created), "failed").await;
    }
    let requests_before = p.sandbox_requests().await;

    // The next delivery is not sent and not counted: it waits out the
    // cool-down, still pending.
    let created = p.create("benevity", p.distinct_report(99)).await;
    let id = id_of(&created);
    let deferred = p.until(&id, |d| !d["lastError"].is_null()).await;
    assert_eq!(deferred["status"], "pending", "{deferred}");
    assert_eq!(deferred["attemptCount"], 0);
    assert!(
        deferred["lastError"]
            .as_str()
            .unwrap()
            .contains("circuit is open")
    );
    assert_eq!(deferred["attempts"], json!([]));
    let due: chrono::DateTime<chrono::Utc> =
        deferred["nextAttemptAt"].as_str().unwrap().parse().unwrap();
    assert!(
        due > chrono::Utc::now() + chrono::Duration::seconds(25),
        "{due}"
    );
    assert_eq!(p.sandbox_requests().await, requests_before);

    // Once the cool-down is over (on the breaker's clock and in the queue),
    // the probe delivers it as its first attempt.
    clock.advance(Duration::from_secs(31));
    sqlx::query("UPDATE impact_deliveries SET next_attempt_at = now() WHERE id = $1::uuid")
        .bind(&id)
        .execute(&pool)
        .await
        .unwrap();
    let done = p.settled(&id, "success").await;
    assert_eq!(done["attemptCount"], 1);
    assert_eq!(done["lastError"], Value::Null);
    assert_eq!(done["attempts"].as_array().unwrap().len(), 1);
}

impl Pipeline {
    /// Makes a queued delivery due now, as if the time it waits for had
    /// passed; one held by a worker is left alone.
    async fn due_now(&self, id: &str) {
        sqlx::query(
            "UPDATE impact_deliveries SET next_attempt_at = now()
             WHERE id = $1::uuid AND status IN ('pending', 'retrying') AND locked_by IS NULL",
        )
        .bind(id)
        .execute(&self.app.state.db)
        .await
        .unwrap();
    }

    /// `provider`'s deliveries by status, and how many of them wait in the
    /// queue with `waiting_for` in their last error.
    async fn tally(&self, provider: &str, waiting_for: &str) -> (i64, i64, i64) {
        sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'success'),
                    count(*) FILTER (WHERE status = 'pending' AND locked_by IS NULL
                                     AND last_error LIKE '%' || $2 || '%'),
                    count(*) FILTER (WHERE status = 'failed')
             FROM impact_deliveries WHERE provider = $1",
        )
        .bind(provider)
        .bind(waiting_for)
        .fetch_one(&self.app.state.db)
        .await
        .unwrap()
    }
}

/// The review's burst, scaled down: Goodera's limit (10 a minute here) is
/// spent by the first ten of forty deliveries. The other thirty go back to
/// the queue, unsent and uncounted, due when the window lets them through,
/// instead of waiting in memory while holding worker slots past their
/// lease: so nothing is sent twice, no attempt is spent, and Benevity's
/// deliveries, queued behind them for a single worker with four slots, all
/// go through meanwhile.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_spent_rate_limit_defers_deliveries_in_the_queue_and_starves_no_other_provider(
    pool: PgPool,
) {
    let mut p = Pipeline::start(
        pool.clone(),
        &[
            ("GOODERA_RATE_LIMIT_PER_MINUTE", "10"),
            ("DELIVERY_WORKERS", "1"),
            ("DELIVERY_BATCH_SIZE", "4"),
        ],
    )
    .await;
    p.stop_workers().await;
    for n in 0..40 {
        p.create("goodera", p.distinct_report(n)).await;
    }
    let mut benevity = Vec::new();
    for n in 0..10 {
        benevity.push(id_of(&p.create("benevity", p.distinct_report(n)).await));
    }
    p.start_workers();
    for id in &benevity {
        p.settled(id, "success").await;
    }
    let settled = tokio::time::timeout(Duration::from_secs(20), async {
        while p.tally("goodera", "rate limit is spent").await != (10, 30, 0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let tally = p.tally("goodera", "rate limit is spent").await;
    assert!(
        settled.is_ok(),
        "goodera (success, deferred, failed): {tally:?}"
    );

    let stats = sandbox_api::read(&p.sandbox, "stats").await;
    assert_eq!(stats["requests"]["goodera"], 10, "{stats}");
    assert_eq!(stats["deliveries"]["goodera"], 10, "{stats}");
    let (uncounted, unlogged, due_within): (i64, i64, bool) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE attempt_count = 0),
                count(*) FILTER (WHERE NOT EXISTS (
                    SELECT 1 FROM delivery_attempts a WHERE a.delivery_id = d.id)),
                bool_and(next_attempt_at > now()
                         AND next_attempt_at <= now() + interval '73 seconds')
         FROM impact_deliveries d WHERE provider = 'goodera' AND status = 'pending'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((uncounted, unlogged), (30, 30));
    // One interval of the limit (6 s) and a random part of one window
    // (60 s), plus up to a tenth: spread, not all at once.
    assert!(due_within);
}

/// A 429 is an attempt (it is logged with its status) but not a failure:
/// three of them leave the retry policy's three attempts untouched, and the
/// fourth call delivers.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn rate_limited_answers_do_not_spend_the_retry_budget(pool: PgPool) {
    let p = Pipeline::start(pool, &[]).await;
    p.control(
        "faults",
        json!({"provider": "goodera", "count": 3, "status": 429, "retryAfterSecs": 0}),
    )
    .await;
    let id = id_of(&p.create("goodera", p.report()).await);
    let done = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let delivery = p.get(&id).await;
            if delivery["status"] != "pending" && delivery["status"] != "retrying" {
                return delivery;
            }
            p.due_now(&id).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the delivery settles");
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["attemptCount"], 4, "{done}");
    let attempts = done["attempts"].as_array().unwrap();
    for limited in &attempts[..3] {
        assert_eq!(limited["httpStatus"], 429, "{limited}");
        assert_eq!(limited["errorClass"], "rate_limited", "{limited}");
    }
    assert_eq!(attempts[3]["errorClass"], Value::Null);
    assert_eq!(p.received().await[0]["timesReceived"], 1);
}

/// A replay that cannot send (the circuit is open) says so: `deferred`, why,
/// and when the delivery is due, on the single and the bulk route; nothing
/// reaches the provider and no attempt is spent.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_replay_that_sends_nothing_answers_deferred(pool: PgPool) {
    let p = Pipeline::start(pool, &[("BENEVITY_RETRY_MAX_ATTEMPTS", "1")]).await;
    // Five transient failures open Benevity's circuit.
    p.control(
        "faults",
        json!({"provider": "benevity", "count": 5, "status": 503}),
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let id = id_of(&p.create("benevity", p.distinct_report(n)).await);
        p.settled(&id, "failed").await;
        ids.push(id);
    }
    let requests_before = p.sandbox_requests().await;

    let one = p
        .app
        .post(
            &format!("/v1/impact-in/deliveries/{}/replay", ids[0]),
            Some(&p.token),
            json!({}),
        )
        .await;
    assert_eq!(one.status, StatusCode::ACCEPTED, "{}", one.body);
    assert_eq!(one.body["replay"]["result"], "deferred", "{}", one.body);
    assert!(
        one.body["replay"]["reason"]
            .as_str()
            .unwrap()
            .contains("circuit is open"),
        "{}",
        one.body
    );
    assert_eq!(one.body["status"], "retrying");
    assert_eq!(one.body["attemptCount"], 1, "the replay spent no attempt");
    let due: chrono::DateTime<chrono::Utc> =
        one.body["nextAttemptAt"].as_str().unwrap().parse().unwrap();
    assert!(due > chrono::Utc::now() + chrono::Duration::seconds(25));

    let bulk = p
        .app
        .post(
            "/v1/impact-in/deliveries/bulk-replay",
            Some(&p.token),
            json!({"ids": [ids[1]]}),
        )
        .await;
    assert_eq!(bulk.status, StatusCode::OK, "{}", bulk.body);
    let result = &bulk.body["results"][0];
    assert_eq!(result["result"], "deferred", "{result}");
    assert!(
        result["reason"]
            .as_str()
            .unwrap()
            .contains("circuit is open")
    );
    assert!(result["nextAttemptAt"].is_string(), "{result}");
    assert_eq!(p.sandbox_requests().await, requests_before);
}

/// A replay's lease renewed after another worker took the delivery over
/// (the replay waited its turn past the lease) is refused: the replay
/// leaves the delivery to that worker rather than send it a second time.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_replay_never_renews_a_lease_another_worker_took_over(pool: PgPool) {
    let mut p = Pipeline::start(pool.clone(), &[]).await;
    let ids = p.failed("benevity", 1).await;
    p.stop_workers().await;
    let lease = Duration::from_secs(120);
    let uuid: Uuid = ids[0].parse().unwrap();
    let replay = queue::claim_failed(
        &pool,
        &impact_in::auth::CompanyScope::All,
        &[uuid.into()],
        "replay:1",
        lease,
    )
    .await
    .unwrap();
    assert!(
        queue::renew(&pool, &replay[0], "replay:1", lease)
            .await
            .unwrap()
    );

    // The replay's lease runs out while it waits its turn; a worker takes
    // the delivery over.
    sqlx::query("UPDATE impact_deliveries SET next_attempt_at = now() WHERE id = $1")
        .bind(uuid)
        .execute(&pool)
        .await
        .unwrap();
    let worker = queue::claim(&pool, "worker", 10, lease).await.unwrap();
    assert_eq!(worker.len(), 1);
    assert!(
        !queue::renew(&pool, &replay[0], "replay:1", lease)
            .await
            .unwrap()
    );
}

/// The idempotency cache answers for deliveries of the same installation
/// only. A fresh database (here: the same database given another
/// installation id, which is what a fresh one differs by, and its
/// deliveries removed) sharing the Redis of an earlier one sends an
/// identical report instead of recording it as delivered from the cache.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_idempotency_cache_never_answers_for_another_database(pool: PgPool) {
    let prefix = format!("impact-in-test:{}:", Uuid::new_v4());
    let shared_redis = [("REDIS_KEY_PREFIX", prefix.as_str())];
    let mut earlier = Pipeline::start(pool.clone(), &shared_redis).await;
    let company = earlier.company;
    let first = id_of(&earlier.create("benevity", earlier.report()).await);
    earlier.settled(&first, "success").await;
    earlier.stop_workers().await;

    let old: Uuid = sqlx::query_scalar("SELECT id FROM impact_installation")
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE impact_installation SET id = gen_random_uuid()")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("TRUNCATE impact_deliveries CASCADE")
        .execute(&pool)
        .await
        .unwrap();

    let mut fresh = Pipeline::start(pool.clone(), &shared_redis).await;
    fresh.company = company;
    fresh.token = crate::common::token(&[company], &[ADMIN, MANAGE]);
    let again = id_of(&fresh.create("benevity", fresh.report()).await);
    let sent = fresh.settled(&again, "success").await;
    assert_eq!(sent["fromCache"], false, "{sent}");
    assert_eq!(fresh.received().await.len(), 1);

    // Within one installation, the cache does answer.
    let third = id_of(&fresh.create("benevity", fresh.report()).await);
    assert_eq!(fresh.settled(&third, "success").await["fromCache"], true);
    assert_ne!(fresh.app.state.delivery.installation().await, Some(old));
}

/// API requests the sandbox's `provider` has seen, accepted or not.
async fn api_requests(p: &Pipeline, provider: &str) -> u64 {
    sandbox_api::requests(&p.sandbox, provider).await
}

/// A redirect is a permanent failure, recorded with its status; the report
/// is not marked delivered and nothing connects to the other origin.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_redirect_fails_the_delivery_without_following_it(pool: PgPool) {
    let p = Pipeline::start(pool, &[]).await;
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let location = format!("http://{}/collect", elsewhere.local_addr().unwrap());
    p.control(
        "faults",
        json!({"provider": "benevity", "count": 1, "status": 307, "location": location}),
    )
    .await;
    let created = p.create("benevity", p.report()).await;
    let failed = p.settled(&id_of(&created), "failed").await;
    assert_eq!(failed["attemptCount"], 1);
    assert_eq!(failed["deliveredAt"], Value::Null);
    assert_eq!(
        failed["lastError"],
        format!(
            "rejected: HTTP 307 redirect to {location} not followed: \
             provider calls never follow redirects"
        )
    );
    let attempt = &failed["attempts"][0];
    assert_eq!(attempt["httpStatus"], 307, "{failed}");
    assert_eq!(attempt["errorClass"], "permanent");
    assert!(
        tokio::time::timeout(Duration::ZERO, elsewhere.accept())
            .await
            .is_err(),
        "something connected to the redirect target"
    );
    assert!(p.received().await.is_empty());
}

/// Workday answering HTTP 200 without a SOAP fault has the report, however
/// the rest of its reply reads: it is sent once and recorded `success`,
/// with no reference and the start of the raw reply. A DTD in the reply is
/// never expanded (billion laughs, external entity): the reply is just
/// unreadable.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_2xx_soap_reply_without_a_fault_is_accepted_even_when_unreadable(pool: PgPool) {
    let p = Pipeline::start(pool, &[("WORKDAY_PROTOCOL", "soap")]).await;
    let envelope = |doctype: &str, response: &str| {
        format!(
            r#"<?xml version="1.0"?>{doctype}<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wd="urn:com.workday/bsvc"><soapenv:Body>{response}</soapenv:Body></soapenv:Envelope>"#
        )
    };
    let laughs = envelope(
        r#"<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>"#,
        "<wd:Submit_Impact_Report_Response><wd:Impact_Report_Reference>&lol3;</wd:Impact_Report_Reference></wd:Submit_Impact_Report_Response>",
    );
    let external = envelope(
        r#"<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>"#,
        "<wd:Submit_Impact_Report_Response><wd:Impact_Report_Reference>&xxe;</wd:Impact_Report_Reference></wd:Submit_Impact_Report_Response>",
    );
    let cases = [
        (
            "text/html",
            "<html><body><h1>Proxy</h1>Your request was forwarded.</body></html>".to_owned(),
        ),
        ("text/plain", String::new()),
        ("application/json", r#"{"status":"accepted"}"#.to_owned()),
        (
            "text/xml",
            envelope("", "<wd:Submit_Impact_Report_Response/>"),
        ),
        (
            "text/html",
            format!("<html>{}</html>", "x".repeat(200 * 1024)),
        ),
        ("text/xml", laughs),
        ("text/xml", external),
    ];
    for (n, (content_type, body)) in (0..).zip(&cases) {
        let before = api_requests(&p, "workday").await;
        p.control(
            "faults",
            json!({"provider": "workday", "count": 1, "status": 200,
                   "body": body, "contentType": content_type}),
        )
        .await;
        let created = p.create("workday", p.distinct_report(n)).await;
        let done = p.settled(&id_of(&created), "success").await;
        assert_eq!(done["attemptCount"], 1, "case {n}: {done}");
        assert_eq!(api_requests(&p, "workday").await - before, 1, "case {n}");
        let excerpt: String = body.chars().take(1024).collect();
        assert_eq!(done["providerResponse"]["body"], excerpt, "case {n}");
        assert_eq!(done["providerResponse"]["reference"], Value::Null);
        assert_eq!(done["attempts"][0]["httpStatus"], 200);
    }
    assert!(p.received().await.is_empty(), "Workday itself saw nothing");
}

/// An answer that arrived but could not be used keeps its status and what
/// came back in the attempt: a 200 whose body broke off, and a token
/// endpoint's 200 login page.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn an_unreadable_answer_is_recorded_with_its_status_and_excerpt(pool: PgPool) {
    let p = Pipeline::start(pool, &[]).await;
    let accepted = r#"{"id":"bnv_cut_off","status":"accepted"}"#;
    p.control(
        "faults",
        json!({"provider": "benevity", "count": 1, "status": 200, "body": accepted,
               "contentType": "application/json", "cutOff": true}),
    )
    .await;
    let login = "<html><body>Sign in to continue</body></html>";
    p.control(
        "faults",
        json!({"provider": "workday", "endpoint": "token", "count": 1, "status": 200,
               "body": login, "contentType": "text/html"}),
    )
    .await;
    for (provider, excerpt) in [
        ("benevity", &accepted[..accepted.len() / 2]),
        ("workday", login),
    ] {
        let created = p.create(provider, p.report()).await;
        let done = p.settled(&id_of(&created), "success").await;
        let first = &done["attempts"][0];
        assert_eq!(first["httpStatus"], 200, "{provider}: {done}");
        assert_eq!(first["errorClass"], "transient", "{provider}");
        assert!(
            first["error"].as_str().unwrap().contains("HTTP 200"),
            "{provider}: {first}"
        );
        assert_eq!(first["responseExcerpt"], excerpt, "{provider}");
        assert_eq!(done["attemptCount"], 2, "{provider}");
    }
}

/// A key given to the API (record id or `deliveryId`) names one delivery.
/// A create whose `deliveryId` is another delivery's record id is refused;
/// and should such rows exist (written before that check), the record id
/// wins on every route, and a replay claims that one delivery only.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_key_names_one_delivery_even_when_a_delivery_id_equals_a_record_id(pool: PgPool) {
    let mut p = Pipeline::start(pool.clone(), &[]).await;
    let ids = p.failed("benevity", 1).await;
    let record_id: Uuid = ids[0].parse().unwrap();

    let taken = p
        .app
        .post(
            "/v1/impact-in/deliveries",
            Some(&p.token),
            json!({"companyId": p.company, "provider": "benevity", "deliveryId": record_id,
                   "payload": p.distinct_report(7)}),
        )
        .await;
    taken.problem(StatusCode::CONFLICT);
    assert_eq!(taken.body["type"], "/problems/delivery-id-taken");

    p.stop_workers().await;
    let twin = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO impact_deliveries
             (id, company_id, provider, delivery_id, payload, payload_hash, status)
         SELECT $1, company_id, provider, $2, payload, payload_hash, 'failed'
         FROM impact_deliveries WHERE id = $2",
    )
    .bind(twin)
    .bind(record_id)
    .execute(&pool)
    .await
    .unwrap();

    for _ in 0..3 {
        assert_eq!(p.get(&ids[0]).await["id"], ids[0]);
    }
    let claimed = queue::claim_failed(
        &pool,
        &impact_in::auth::CompanyScope::All,
        &[record_id.into()],
        "replay:1",
        Duration::from_secs(120),
    )
    .await
    .unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![record_id.into()]
    );
    assert_eq!(p.get(&twin.to_string()).await["status"], "failed");
}

/// The loop closed through the sandbox: after accepting a delivery each
/// provider posts signed `received` and `processed` webhooks to the
/// service over real HTTP, and the delivery shows `providerStatus:
/// processed`. The sandbox's twists then make the next final event a
/// rejection, a duplicate, an expired timestamp, a bad signature.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_sandboxs_webhooks_close_the_loop_on_each_delivery(pool: PgPool) {
    let p = Pipeline::start(pool, &[]).await;
    p.webhooks_back_at_once().await;
    for (k, provider) in ["benevity", "goodera", "workday"].into_iter().enumerate() {
        let created = p.create(provider, p.distinct_report(k as u32)).await;
        let done = p
            .until(&id_of(&created), |d| d["providerStatus"] == "processed")
            .await;
        assert_eq!(done["status"], "success", "{provider}: {done}");
        let events = done["events"].as_array().unwrap();
        let statuses: Vec<&Value> = events.iter().map(|e| &e["providerStatus"]).collect();
        assert_eq!(
            statuses,
            [&json!("received"), &json!("processed")],
            "{provider}"
        );
        assert!(
            events
                .iter()
                .all(|e| e["outcome"] == "applied" && e["matched"] == true)
        );
    }

    // A rejection after acceptance: the success becomes a failure that
    // says why, and can be replayed.
    p.control("webhooks/next", json!({"twist": "reject"})).await;
    let created = p.create("goodera", p.distinct_report(10)).await;
    let rejected = p
        .until(&id_of(&created), |d| d["providerStatus"] == "rejected")
        .await;
    assert_eq!(rejected["status"], "failed");
    assert!(
        rejected["lastError"]
            .as_str()
            .unwrap()
            .contains("VALIDATION: sandbox rejection"),
        "{rejected}"
    );
    let events = rejected["events"].as_array().unwrap();
    assert_eq!(events.last().unwrap()["statusBefore"], "success");
    assert_eq!(events.last().unwrap()["statusAfter"], "failed");

    // A duplicate is answered 200 and stored once; an expired or badly
    // signed event is refused with 401 and changes nothing.
    for (k, twist) in ["duplicate", "expired_timestamp", "bad_signature"]
        .into_iter()
        .enumerate()
    {
        p.control("webhooks/next", json!({"twist": twist})).await;
        let created = p.create("benevity", p.distinct_report(20 + k as u32)).await;
        let id = id_of(&created);
        p.until(&id, |d| !d["providerStatus"].is_null()).await;
        let answers = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let sent = sandbox_api::read(&p.sandbox, "webhooks").await;
                let answers: Vec<Value> = sent
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| s["twist"] == twist)
                    .map(|s| s["answer"].clone())
                    .collect();
                let expected = if twist == "duplicate" { 2 } else { 1 };
                if answers.len() == expected {
                    return answers;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the sandbox posted the twisted event");
        let delivery = p.get(&id).await;
        match twist {
            "duplicate" => {
                assert_eq!(answers, [json!(202), json!(200)]);
                assert_eq!(delivery["providerStatus"], "processed");
                assert_eq!(delivery["events"].as_array().unwrap().len(), 2);
            }
            _ => {
                assert_eq!(answers, [json!(401)], "{twist}");
                assert_eq!(delivery["providerStatus"], "received", "{twist}");
            }
        }
    }
    let health = p.app.get("/webhooks/health", None).await;
    let benevity = &health.body["providers"]["benevity"];
    assert_eq!(
        benevity["refused"]["timestampOutsideTolerance"], 1,
        "{}",
        health.body
    );
    assert_eq!(benevity["refused"]["signatureMismatch"], 1);
    assert!(benevity["lastVerifiedAt"].is_string());
}

/// A webhook can overtake the outcome of the attempt it is about: the
/// provider accepts, rejects by webhook at once, and only then does our
/// worker record its success; or our call times out while the provider
/// processed it. The outcome is reconciled with what the provider said
/// during the attempt, whichever commits first.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_webhook_that_overtakes_the_attempts_outcome_settles_it(pool: PgPool) {
    use base64::{Engine, engine::general_purpose::STANDARD};
    use impact_in::webhooks::signature::sign_standard;
    let mut p = Pipeline::start(pool.clone(), &[]).await;
    p.stop_workers().await;
    let key = STANDARD
        .decode(credentials::GOODERA_WEBHOOK_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let webhook = |delivery_id: &Value, event_type: &str, id: &str| {
        let body = json!({"type": event_type, "timestamp": chrono::Utc::now(),
                          "data": {"idempotency_key": delivery_id,
                                   "errors": [{"message": "rejected on arrival"}]}})
        .to_string();
        let now = chrono::Utc::now().timestamp();
        axum::http::Request::builder()
            .method(Method::POST)
            .uri("/webhooks/goodera")
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", now.to_string())
            .header(
                "webhook-signature",
                sign_standard(&key, id, now, body.as_bytes()),
            )
            .body(axum::body::Body::from(body))
            .unwrap()
    };
    let lease = Duration::from_secs(120);

    // Rejected while in flight, then our attempt succeeds.
    let created = p.create("goodera", p.distinct_report(1)).await;
    let held = queue::claim(&pool, "racing-worker", 10, lease)
        .await
        .unwrap();
    let answer = p
        .app
        .send(webhook(&created["deliveryId"], "data.failed", "msg_race_1"))
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let recorded = worker::attempt_and_record(&p.app.state.delivery, held[0].clone()).await;
    assert_eq!(
        recorded,
        worker::Recorded::Attempted(impact_in::delivery::DeliveryStatus::Failed)
    );
    let settled = p.get(&id_of(&created)).await;
    assert_eq!(settled["status"], "failed", "{settled}");
    assert_eq!(settled["providerStatus"], "rejected");
    assert!(
        settled["lastError"]
            .as_str()
            .unwrap()
            .starts_with("rejected by goodera after acceptance"),
        "{settled}"
    );
    // Its report is not answered from the idempotency cache either: the
    // same payload again reaches the provider.
    let again = p.create("goodera", p.distinct_report(1)).await;
    p.start_workers();
    let resent = p.settled(&id_of(&again), "success").await;
    assert_eq!(resent["fromCache"], false, "{resent}");
    p.stop_workers().await;

    // Processed while our call failed: delivered.
    p.control(
        "faults",
        json!({"provider": "goodera", "count": 1, "status": 503}),
    )
    .await;
    let created = p.create("goodera", p.distinct_report(2)).await;
    let held = queue::claim(&pool, "racing-worker", 10, lease)
        .await
        .unwrap();
    p.app
        .send(webhook(
            &created["deliveryId"],
            "data.processed",
            "msg_race_2",
        ))
        .await;
    let recorded = worker::attempt_and_record(&p.app.state.delivery, held[0].clone()).await;
    assert_eq!(
        recorded,
        worker::Recorded::Attempted(impact_in::delivery::DeliveryStatus::Success)
    );
    let settled = p.get(&id_of(&created)).await;
    assert_eq!(settled["status"], "success", "{settled}");
    assert_eq!(settled["nextAttemptAt"], Value::Null);
    assert!(settled["deliveredAt"].is_string());
    assert_eq!(settled["attempts"][0]["httpStatus"], 503);
}

/// After deliveries (one retried, one answered from the idempotency cache,
/// one over OAuth), webhooks (verified and refused) and an ingest run,
/// `/metrics` exports
/// every metric the alert rules and the dashboard use, under the seeds'
/// names, with bounded labels.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn metrics_export_every_name_the_alerts_and_the_dashboard_use(pool: PgPool) {
    let p = Pipeline::start(pool, &[]).await;
    p.webhooks_back_at_once().await;
    p.control(
        "faults",
        json!({"provider": "benevity", "count": 1, "status": 503}),
    )
    .await;
    let first = p.create("benevity", p.distinct_report(1)).await;
    p.until(&id_of(&first), |d| d["providerStatus"] == "processed")
        .await;
    // The same report again: answered from the idempotency cache.
    let cached = p.create("benevity", p.distinct_report(1)).await;
    assert_eq!(
        p.settled(&id_of(&cached), "success").await["fromCache"],
        true
    );
    // Goodera over OAuth: a token and its expiry.
    let goodera = p.create("goodera", p.distinct_report(2)).await;
    p.settled(&id_of(&goodera), "success").await;
    let refused = p
        .app
        .post("/webhooks/goodera", None, json!({"type": "data.processed"}))
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    // An ingest run: the ingest gauges are read from the runs stored.
    let ingested = p
        .app
        .post(
            &format!(
                "/v1/ingest/kintell/enrollments?company_id={}&max_records=5",
                p.company
            ),
            Some(&p.token),
            json!({}),
        )
        .await;
    assert_eq!(ingested.body["success"], true, "{}", ingested.body);

    let scraped = p.app.get("/metrics", None).await;
    assert_eq!(scraped.status, StatusCode::OK);
    assert!(
        scraped
            .content_type()
            .starts_with("text/plain; version=0.0.4"),
        "{}",
        scraped.content_type()
    );
    let text = scraped.body.as_str().expect("text").to_owned();
    let exported = |name: &str| {
        text.lines()
            .any(|line| !line.starts_with('#') && line.starts_with(name))
    };
    let used = format!(
        "{}{}",
        include_str!("../../deploy/prometheus/alerts.yml"),
        include_str!("../../deploy/grafana/impact-in.json")
    );
    let mut names: Vec<&str> = used
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("impact_in_"))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 14, "{names:?}");
    for name in names {
        assert!(exported(name), "{name} is not exported:\n{text}");
    }
    for line in [
        "impact_in_deliveries_total{provider=\"benevity\",status=\"success\"}",
        "impact_in_deliveries_success_total{provider=\"goodera\"}",
        "impact_in_retries_total{provider=\"benevity\"}",
        "impact_in_webhooks_received_total{provider=\"benevity\"}",
        "impact_in_webhook_verification_failed_total{provider=\"goodera\",reason=\"missing_signature\"}",
        "impact_in_delivery_duration_seconds_bucket{provider=\"benevity\",le=\"0.05\"}",
        "impact_in_http_requests_total{method=\"POST\",route=\"/v1/impact-in/deliveries\",status=\"202\"}",
        "impact_in_build_info{version=",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    // Bounded labels: no company or delivery id, no raw path.
    assert!(!text.contains(&p.company.to_string()));
    assert!(!text.contains(first["deliveryId"].as_str().unwrap()));
    assert!(!text.contains(&format!("/v1/impact-in/deliveries/{}", id_of(&first))));
}

/// A schedule's firing sends the report of its period, computed from what
/// ingest stored, through the queue (trigger `scheduled`); the same report
/// again within 24 h is skipped; a failing provider gets the schedules'
/// retries, 5, 10 and 20 minutes apart, and the schedule counts the
/// failure. The sandbox's generated records fall in the 90 days before
/// 2026-01-01, so the clock is set to that New Year's Day.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_scheduled_firing_delivers_the_ingested_month_and_follows_its_outcome(pool: PgPool) {
    let (p, clock) = ingested_on_new_years_day(pool.clone(), &[]).await;

    let schedule = |platform: &str| {
        p.app.post(
            "/v1/impact-in/schedules",
            Some(&p.token),
            json!({"companyId": p.company, "platform": platform, "schedule": "monthly"}),
        )
    };
    let benevity = schedule("benevity").await.body;
    let p = &p;
    let show = |schedule: &Value| {
        let path = format!(
            "/v1/impact-in/schedules/{}",
            schedule["id"].as_str().unwrap()
        );
        async move { p.app.get(&path, Some(&p.token)).await.body }
    };
    let run = |id: &Value| {
        let path = format!("/v1/impact-in/schedules/{}/run", id.as_str().unwrap());
        async move { p.app.post(&path, Some(&p.token), json!({})).await }
    };
    let fired = run(&benevity["id"]).await.body;
    assert_eq!(fired["outcome"], "enqueued", "{fired}");
    assert_eq!(fired["periodStart"], "2025-12-01T00:00:00Z");
    let delivery = p
        .settled(fired["deliveryId"].as_str().unwrap(), "success")
        .await;
    assert_eq!(delivery["scheduleId"], benevity["id"]);
    assert_eq!(delivery["attempts"][0]["trigger"], "scheduled");
    let sent = &delivery["payload"];
    assert_eq!(
        sent["period"],
        json!({"start": "2025-12-01", "end": "2025-12-31"})
    );
    assert!(sent["volunteerHours"].as_f64().unwrap() > 0.0, "{sent}");
    assert!(sent["participantCount"].as_u64().unwrap() > 0, "{sent}");
    let shown = show(&benevity).await;
    assert_eq!(shown["lastStatus"], "success", "{shown}");
    assert_eq!(shown["consecutiveFailures"], 0);

    // The same month again a minute later: identical report, not sent twice.
    clock.advance(Duration::from_secs(60));
    let again = run(&benevity["id"]).await.body;
    assert_eq!(again["outcome"], "skipped", "{again}");
    assert!(
        again["reason"]
            .as_str()
            .unwrap()
            .contains("within 24 hours")
    );

    // Goodera fails every call: 4 calls, 5, 10 and 20 minutes apart.
    p.control(
        "faults",
        json!({"provider": "goodera", "count": 10, "status": 503}),
    )
    .await;
    let goodera = schedule("goodera").await.body;
    let fired = run(&goodera["id"]).await.body;
    let id = fired["deliveryId"].as_str().unwrap().to_owned();
    for (attempt, minutes) in [(1_usize, 5), (2, 10), (3, 20)] {
        let waiting = p
            // Its outcome recorded, not the next attempt's claim in flight.
            .until(&id, |d| {
                d["attempts"].as_array().map(Vec::len) == Some(attempt)
                    && d["status"] == "retrying"
                    && d["inFlightSince"].is_null()
            })
            .await;
        let (delay,): (f64,) = sqlx::query_as(
            "SELECT extract(epoch FROM next_attempt_at - updated_at)::float8
             FROM impact_deliveries WHERE delivery_id = $1::uuid",
        )
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(
            (delay - f64::from(minutes * 60)).abs() < 1.0,
            "attempt {attempt}: due again in {delay} s, {waiting}"
        );
        // The wait is the queue's: make it due now instead of waiting.
        sqlx::query(
            "UPDATE impact_deliveries SET next_attempt_at = now() WHERE delivery_id = $1::uuid",
        )
        .bind(&id)
        .execute(&pool)
        .await
        .unwrap();
        p.app.state.delivery.queue.queued();
    }
    let failed = p.settled(&id, "failed").await;
    assert_eq!(failed["attemptCount"], 4, "{failed}");
    let shown = show(&goodera).await;
    assert_eq!(shown["lastStatus"], "failed", "{shown}");
    assert_eq!(shown["consecutiveFailures"], 1);
    assert!(
        shown["lastError"].as_str().unwrap().contains("503"),
        "{shown}"
    );
}

/// A pipeline whose clock stands at 2026-01-01 12:00 UTC (the sandbox's
/// generated records fall in the 90 days before), with all nine streams of
/// its company ingested.
async fn ingested_on_new_years_day(
    pool: PgPool,
    overrides: &[(&str, &str)],
) -> (Pipeline, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new("2026-01-01T12:00:00Z".parse().unwrap()));
    let p = Pipeline::start_with_clock(pool, overrides, clock.clone()).await;
    let ingested = p
        .app
        .post(
            &format!("/v1/ingest/all?company_id={}", p.company),
            Some(&p.token),
            json!({}),
        )
        .await;
    assert_eq!(ingested.body["success"], true, "{}", ingested.body);
    (p, clock)
}

/// A pipeline on 2026-01-01 whose company's sources are ingested and has a
/// monthly Benevity schedule: running it now reports December 2025.
async fn scheduled_month(pool: PgPool, overrides: &[(&str, &str)]) -> (Pipeline, String) {
    let (p, _) = ingested_on_new_years_day(pool, overrides).await;
    let schedule = p
        .app
        .post(
            "/v1/impact-in/schedules",
            Some(&p.token),
            json!({"companyId": p.company, "platform": "benevity", "schedule": "monthly"}),
        )
        .await
        .body;
    let run = format!(
        "/v1/impact-in/schedules/{}/run",
        schedule["id"].as_str().unwrap()
    );
    (p, run)
}

impl Pipeline {
    /// The payload of the delivery a run-now enqueued, once delivered.
    async fn run_and_deliver(&self, run: &str) -> Value {
        let fired = self.app.post(run, Some(&self.token), json!({})).await.body;
        assert_eq!(fired["outcome"], "enqueued", "{fired}");
        let delivery = self
            .settled(fired["deliveryId"].as_str().unwrap(), "success")
            .await;
        delivery["payload"].clone()
    }
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_scheduled_report_carries_the_impact_platforms_metrics_for_its_company_and_period(
    pool: PgPool,
) {
    let (p, run) = scheduled_month(pool.clone(), &[]).await;
    // An outage first: nothing fires, nothing is written, run-now says so.
    p.control(
        "faults",
        json!({"service": "impact-metrics", "count": 1, "status": 503}),
    )
    .await;
    let refused = p.app.post(&run, Some(&p.token), json!({})).await;
    let problem = refused.problem(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem["type"], "/problems/unavailable", "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("HTTP 503"), "{detail}");
    assert!(!detail.contains(credentials::INTERNAL_API_KEY), "{detail}");
    let (deliveries, firings): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM impact_deliveries), (SELECT count(*) FROM schedule_firings)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((deliveries, firings), (0, 0));

    // Once the platform answers, the same run goes out with its metrics.
    let sent = p.run_and_deliver(&run).await;
    let december = |day: &str| day.parse().unwrap();
    let expected = impact_in::sandbox::metrics::values(
        p.company,
        december("2025-12-01"),
        december("2025-12-31"),
    );
    assert_eq!(sent["outcomeScores"], expected["outcomeScores"], "{sent}");
    assert_eq!(sent["sroiRatio"], expected["sroiRatio"]);
    assert_eq!(sent["visScore"], expected["visScore"]);
    assert!(sent["outcomeScores"]["confidence"].is_f64(), "{sent}");
    // Another company's metrics for the month differ.
    assert_ne!(
        impact_in::sandbox::metrics::values(
            Uuid::new_v4(),
            december("2025-12-01"),
            december("2025-12-31")
        ),
        expected
    );
    assert_eq!(
        sandbox_api::read(&p.sandbox, "stats").await["metricsRequests"],
        2
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_scheduled_report_leaves_the_metrics_out_when_the_platform_has_none(pool: PgPool) {
    let (p, run) = scheduled_month(pool, &[]).await;
    p.control(
        "faults",
        json!({"service": "impact-metrics", "count": 1, "status": 404}),
    )
    .await;
    let sent = p.run_and_deliver(&run).await;
    assert_eq!(sent["outcomeScores"], json!({}), "{sent}");
    assert_eq!(
        (&sent["sroiRatio"], &sent["visScore"]),
        (&Value::Null, &Value::Null)
    );
    assert!(sent["volunteerHours"].as_f64().unwrap() > 0.0, "{sent}");
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_scheduled_report_leaves_the_metrics_out_without_impact_metrics_url(pool: PgPool) {
    let (p, run) = scheduled_month(pool, &[("IMPACT_METRICS_URL", "")]).await;
    let sent = p.run_and_deliver(&run).await;
    assert_eq!(sent["outcomeScores"], json!({}), "{sent}");
    assert_eq!(
        (&sent["sroiRatio"], &sent["visScore"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(
        sandbox_api::read(&p.sandbox, "stats").await["metricsRequests"],
        0
    );
}
