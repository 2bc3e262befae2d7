//! Probes against real Postgres and Redis, and with each one unreachable.

use crate::common::{TestApp, config, unreachable_pool};
use axum::http::StatusCode;
use sqlx::PgPool;

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn everything_up_is_ready_and_healthy(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;

    assert_eq!(
        app.get("/health/liveness", None).await.status,
        StatusCode::OK
    );
    assert_eq!(app.get("/health/live", None).await.status, StatusCode::OK);
    assert_eq!(
        app.get("/health/startup", None).await.status,
        StatusCode::OK
    );
    for path in ["/health/readiness", "/health/ready"] {
        let ready = app.get(path, None).await;
        assert_eq!(ready.status, StatusCode::OK, "{path}: {}", ready.body);
        assert_eq!(ready.body["status"], "ready");
        assert_eq!(ready.body["degraded"], false);
    }

    let health = app.get("/health", None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "healthy");
    assert_eq!(health.body["connections"]["database"], "connected");
    assert_eq!(health.body["connections"]["redis"], "connected");
    assert!(health.body["checks"]["database"]["latencyMs"].is_u64());
    assert!(health.body["checks"]["redis"]["latencyMs"].is_u64());
    assert_eq!(health.body["version"], env!("CARGO_PKG_VERSION"));
    assert!(health.body["uptime"].is_u64());
    assert!(health.body["timestamp"].is_string());
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn startup_probe_fails_until_start_up_has_finished(pool: PgPool) {
    let app = TestApp::unstarted(pool, config(&[]));
    assert_eq!(
        app.get("/health/startup", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    app.state.start_up(Default::default()).await;
    assert_eq!(
        app.get("/health/startup", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn postgres_unreachable_is_not_ready_but_alive() {
    let app = TestApp::unstarted(unreachable_pool(), config(&[]));

    assert_eq!(
        app.get("/health/liveness", None).await.status,
        StatusCode::OK
    );
    let ready = app.get("/health/readiness", None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["reason"], "database unreachable");
    assert_eq!(
        app.get("/health/startup", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let health = app.get("/health", None).await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.body["status"], "unhealthy");
    assert_eq!(health.body["connections"]["database"], "disconnected");
}

#[sqlx::test(migrations = false)]
async fn pending_migrations_are_not_ready(pool: PgPool) {
    let app = TestApp::unstarted(pool.clone(), config(&[("MIGRATE_ON_START", "false")]));
    let ready = app.get("/health/readiness", None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["reason"], "migrations pending");

    impact_in::db::migrate(&pool).await.unwrap();
    let ready = app.get("/health/readiness", None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["reason"], "start-up not finished");

    app.state.start_up(Default::default()).await;
    let ready = app.get("/health/readiness", None).await;
    assert_eq!(ready.status, StatusCode::OK);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn redis_unreachable_is_ready_but_degraded(pool: PgPool) {
    let app = TestApp::start(pool, config(&[("REDIS_URL", "redis://127.0.0.1:1")])).await;

    let ready = app.get("/health/readiness", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body["degraded"], true);
    let health = app.get("/health", None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "degraded");
    assert_eq!(health.body["connections"]["redis"], "disconnected");
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn redis_unset_is_reported_disabled_and_healthy(pool: PgPool) {
    let app = TestApp::start(pool, config(&[("REDIS_URL", "")])).await;
    let health = app.get("/health", None).await;
    assert_eq!(health.body["status"], "healthy");
    assert_eq!(health.body["connections"]["redis"], "disabled");
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn readiness_fails_once_draining_starts(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;
    app.state.lifecycle.mark_draining();
    let ready = app.get("/health/readiness", None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["reason"], "shutting down");
}

#[tokio::test]
async fn discovery_names_the_service_and_its_route_groups() {
    let app = TestApp::unstarted(unreachable_pool(), config(&[]));
    let root = app.get("/", None).await;
    assert_eq!(root.status, StatusCode::OK);
    assert_eq!(root.body["name"], "impact-in");
    assert_eq!(root.body["routes"]["impactIn"], "/v1/impact-in");
}

/// `RUN_MODE=worker`: one image deployed as worker pods answers its probes
/// and nothing of the API.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_worker_process_answers_probes_and_no_api_route(pool: PgPool) {
    let app = TestApp::start(pool, config(&[("RUN_MODE", "worker")])).await;
    assert_eq!(
        app.get("/health/liveness", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/health/readiness", None).await.status,
        StatusCode::OK
    );
    let token = crate::common::token(&[uuid::Uuid::new_v4()], &[crate::common::ADMIN]);
    let api = app.get("/v1/impact-in/deliveries", Some(&token)).await;
    api.problem(StatusCode::NOT_FOUND);
}

/// `/metrics` is open by default (as Prometheus scrapes it); with
/// `METRICS_BEARER_TOKEN` it takes that token only.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn metrics_need_the_metrics_token_when_one_is_set(pool: PgPool) {
    let open = TestApp::start(pool.clone(), config(&[])).await;
    assert_eq!(open.get("/metrics", None).await.status, StatusCode::OK);

    let token = "metrics-token-for-tests-0123456789";
    let guarded = TestApp::start(pool, config(&[("METRICS_BEARER_TOKEN", token)])).await;
    guarded
        .get("/metrics", None)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    guarded
        .get("/metrics", Some("not-the-token"))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    let scraped = guarded.get("/metrics", Some(token)).await;
    assert_eq!(scraped.status, StatusCode::OK);
    assert!(
        scraped
            .body
            .as_str()
            .unwrap()
            .contains("impact_in_build_info")
    );
}

/// The served contract is the committed one, and its browsable UI works
/// offline: the page and its assets come from the binary.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_openapi_contract_and_its_ui_are_served(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;
    let served = app.get("/openapi.json", None).await;
    assert_eq!(served.status, StatusCode::OK);
    let committed: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
    assert_eq!(
        served.body, committed,
        "docs/openapi.json is outdated: run `cargo run -- openapi > docs/openapi.json`"
    );
    assert_eq!(served.body["openapi"], "3.1.0");
    let page = app.get("/docs/", None).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.body.as_str().unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    for asset in [
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
    ] {
        let answer = app.get(asset, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{asset}");
    }
}

/// Each request-body example in the contract is a request the service
/// accepts, so "Try it out" in `/docs` starts from one that works.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_contract_examples_are_accepted(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;
    let spec = app.get("/openapi.json", None).await.body;
    let example = |path: &str| -> serde_json::Value {
        spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["example"].clone()
    };
    let create = example("/v1/impact-in/deliveries");
    let company: uuid::Uuid = serde_json::from_value(create["companyId"].clone()).unwrap();
    assert_eq!(
        spec["components"]["schemas"]["ImpactReport"]["examples"][0],
        create["payload"]
    );
    let token = crate::common::token(&[company], &[crate::common::ADMIN, crate::common::MANAGE]);
    for (path, accepted) in [
        ("/v1/impact-in/deliveries", StatusCode::ACCEPTED),
        ("/v1/impact-in/deliveries/bulk-replay", StatusCode::OK),
        (
            "/v1/impact-in/deliveries/retry-all-failed",
            StatusCode::ACCEPTED,
        ),
    ] {
        let answer = app.post(path, Some(&token), example(path)).await;
        assert_eq!(answer.status, accepted, "{path}: {}", answer.body);
    }
}
