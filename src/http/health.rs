//! Kubernetes probes and the service health summary. No authentication.

use std::time::Instant;

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use chrono::Utc;
use serde::Serialize;

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
    responses((status = 200, description = "alive", body = Probe)),
    security(()),
)]
async fn liveness() -> impl IntoResponse {
    Json(Probe {
        status: ProbeStatus::Alive,
    })
}

/// What the liveness and startup probes answer.
#[derive(Serialize, utoipa::ToSchema)]
struct Probe {
    status: ProbeStatus,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum ProbeStatus {
    Alive,
    Started,
    Starting,
}

#[utoipa::path(
    get,
    path = "/health/startup",
    tag = "health",
    summary = "Start-up finished (database migrated)",
    responses((status = 200, description = "started", body = Probe), (status = 503, description = "starting", body = Probe)),
    security(()),
)]
async fn startup(State(state): State<AppState>) -> impl IntoResponse {
    if state.lifecycle.is_started() {
        (
            StatusCode::OK,
            Json(Probe {
                status: ProbeStatus::Started,
            }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Probe {
                status: ProbeStatus::Starting,
            }),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum DatabaseStatus {
    Connected,
    Disconnected,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Check<S> {
    status: S,
    latency_ms: u64,
}

/// Each dependency, checked now.
#[derive(Serialize, utoipa::ToSchema)]
struct Checks {
    database: Check<DatabaseStatus>,
    redis: Check<RedisStatus>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum ReadyStatus {
    Ready,
    NotReady,
}

/// What the readiness probe answers. While draining only `status` and
/// `reason`: the dependencies are not checked.
#[derive(Serialize, utoipa::ToSchema)]
struct Readiness {
    status: ReadyStatus,
    /// Why not ready (null when ready).
    reason: Option<&'static str>,
    /// Redis is down: the service works, with its in-process cache alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    degraded: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checks: Option<Checks>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Connections {
    database: DatabaseStatus,
    redis: RedisStatus,
}

/// What `GET /health` answers.
#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    status: HealthStatus,
    version: &'static str,
    /// Seconds since the process started.
    uptime: u64,
    timestamp: chrono::DateTime<Utc>,
    connections: Connections,
    checks: Checks,
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
    responses((status = 200, description = "ready", body = Readiness), (status = 503, description = "not ready, and why", body = Readiness)),
    security(()),
)]
async fn readiness(State(state): State<AppState>) -> impl IntoResponse {
    if state.lifecycle.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                status: ReadyStatus::NotReady,
                reason: Some("shutting down"),
                degraded: None,
                checks: None,
            }),
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
    let body = Readiness {
        status: match reason {
            None => ReadyStatus::Ready,
            Some(_) => ReadyStatus::NotReady,
        },
        reason,
        degraded: Some(redis.status == RedisStatus::Disconnected),
        checks: Some(Checks {
            database: database.check,
            redis,
        }),
    };
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
    responses((status = 200, description = "healthy or degraded", body = Health), (status = 503, description = "unhealthy", body = Health)),
    security(()),
)]
async fn summary(State(state): State<AppState>) -> impl IntoResponse {
    let (database, redis) = tokio::join!(check_database(&state), check_redis(&state));
    let (status, code) = match (database.check.status, redis.status) {
        (DatabaseStatus::Disconnected, _) => {
            (HealthStatus::Unhealthy, StatusCode::SERVICE_UNAVAILABLE)
        }
        (_, RedisStatus::Disconnected) => (HealthStatus::Degraded, StatusCode::OK),
        _ => (HealthStatus::Healthy, StatusCode::OK),
    };
    let body = Health {
        status,
        version: env!("CARGO_PKG_VERSION"),
        uptime: state.lifecycle.uptime().as_secs(),
        timestamp: Utc::now(),
        connections: Connections {
            database: database.check.status,
            redis: redis.status,
        },
        checks: Checks {
            database: database.check,
            redis,
        },
    };
    (code, Json(body))
}
