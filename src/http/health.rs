//! Kubernetes probes and the service health summary. No authentication.

use std::time::Instant;

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use chrono::Utc;
use serde::Serialize;
use serde_json::json;

use crate::{app::AppState, cache::RedisStatus, db};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(summary))
        .route("/health/liveness", get(liveness))
        .route("/health/live", get(liveness))
        .route("/health/readiness", get(readiness))
        .route("/health/ready", get(readiness))
        .route("/health/startup", get(startup))
}

/// The process runs; deliberately no I/O, so a slow dependency never gets
/// the pod restarted.
#[utoipa::path(
    get,
    path = "/health/liveness",
    tag = "health",
    summary = "The process runs (alias /health/live)",
    responses((status = 200, description = "alive", body = Object)),
    security(()),
)]
async fn liveness() -> impl IntoResponse {
    Json(json!({ "status": "alive" }))
}

#[utoipa::path(
    get,
    path = "/health/startup",
    tag = "health",
    summary = "Start-up finished (database migrated)",
    responses((status = 200, description = "started", body = Object), (status = 503, description = "starting", body = Object)),
    security(()),
)]
async fn startup(State(state): State<AppState>) -> impl IntoResponse {
    if state.lifecycle.is_started() {
        (StatusCode::OK, Json(json!({ "status": "started" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "starting" })),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum DatabaseStatus {
    Connected,
    Disconnected,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Check<S> {
    status: S,
    latency_ms: u64,
}

struct DatabaseCheck {
    check: Check<DatabaseStatus>,
    migrated: bool,
}

/// Postgres answers and carries every migration, within the probe timeout.
async fn check_database(state: &AppState) -> DatabaseCheck {
    let began = Instant::now();
    let outcome = tokio::time::timeout(
        state.config.health_check_timeout,
        db::migrations_applied(&state.db),
    )
    .await;
    let (status, migrated) = match outcome {
        Ok(Ok(migrated)) => (DatabaseStatus::Connected, migrated),
        Ok(Err(_)) | Err(_) => (DatabaseStatus::Disconnected, false),
    };
    DatabaseCheck {
        check: Check {
            status,
            latency_ms: elapsed_ms(began),
        },
        migrated,
    }
}

async fn check_redis(state: &AppState) -> Check<RedisStatus> {
    let began = Instant::now();
    let status = tokio::time::timeout(
        state.config.health_check_timeout,
        state.delivery.cache.status(),
    )
    .await
    .unwrap_or(RedisStatus::Disconnected);
    Check {
        status,
        latency_ms: elapsed_ms(began),
    }
}

fn elapsed_ms(began: Instant) -> u64 {
    u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Ready when start-up has finished, Postgres answers with migrations applied
/// and the process is not draining. Redis does not count: it is a cache, not the source of truth.
#[utoipa::path(
    get,
    path = "/health/readiness",
    tag = "health",
    summary = "Ready for traffic (alias /health/ready)",
    responses((status = 200, description = "ready", body = Object), (status = 503, description = "not ready, and why", body = Object)),
    security(()),
)]
async fn readiness(State(state): State<AppState>) -> impl IntoResponse {
    if state.lifecycle.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "reason": "shutting down" })),
        );
    }
    let (database, redis) = tokio::join!(check_database(&state), check_redis(&state));
    let reason = match (database.check.status, database.migrated) {
        (DatabaseStatus::Disconnected, _) => Some("database unreachable"),
        (DatabaseStatus::Connected, false) => Some("migrations pending"),
        // e.g. a database migrated by a newer release that this one refuses.
        _ if !state.lifecycle.is_started() => Some("start-up not finished"),
        (DatabaseStatus::Connected, true) => None,
    };
    let body = json!({
        "status": if reason.is_none() { "ready" } else { "not_ready" },
        "reason": reason,
        "degraded": redis.status == RedisStatus::Disconnected,
        "checks": { "database": database.check, "redis": redis },
    });
    let code = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

/// `healthy` with every dependency up, `degraded` when only Redis is down,
/// `unhealthy` (503) when Postgres is unreachable.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    summary = "Dependencies and uptime",
    responses((status = 200, description = "healthy or degraded", body = Object), (status = 503, description = "unhealthy", body = Object)),
    security(()),
)]
async fn summary(State(state): State<AppState>) -> impl IntoResponse {
    let (database, redis) = tokio::join!(check_database(&state), check_redis(&state));
    let (status, code) = match (database.check.status, redis.status) {
        (DatabaseStatus::Disconnected, _) => ("unhealthy", StatusCode::SERVICE_UNAVAILABLE),
        (_, RedisStatus::Disconnected) => ("degraded", StatusCode::OK),
        _ => ("healthy", StatusCode::OK),
    };
    let body = json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": state.lifecycle.uptime().as_secs(),
        "timestamp": Utc::now(),
        "connections": { "database": database.check.status, "redis": redis.status },
        "checks": { "database": database.check, "redis": redis },
    });
    (code, Json(body))
}
