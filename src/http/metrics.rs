//! `GET /metrics`: Prometheus text format. Open by default, like the
//! probes; with `METRICS_BEARER_TOKEN` set, only with that token.

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
    routing::get,
};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::{
    app::AppState,
    connectors::CircuitState,
    delivery::queue,
    ingest::{health, store},
    metrics,
};

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics (text format)",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"), (status = 401, description = "METRICS_BEARER_TOKEN is set and not presented", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(()),
)]
async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(expected) = &state.config.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::MissingCredentials)?
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(
            presented
                .as_bytes()
                .ct_eq(expected.expose_secret().as_bytes()),
        ) {
            return Err(ApiError::InvalidToken("not the metrics token".into()));
        }
    }
    // Read at scrape time, bounded: a database that does not answer leaves
    // the queue, ingest and SLA gauges at their last value rather than failing
    // the scrape.
    if let Ok(Ok((depth, oldest))) =
        tokio::time::timeout(state.config.health_check_timeout, queue::depth(&state.db)).await
    {
        metrics::queue(depth, oldest);
    }
    if let Ok(Ok((pending, oldest))) = tokio::time::timeout(
        state.config.health_check_timeout,
        crate::bus::outbox::backlog(&state.db),
    )
    .await
    {
        metrics::bus_outbox(pending, oldest);
    }
    if let Ok(Ok(runs)) = tokio::time::timeout(
        state.config.health_check_timeout,
        store::stream_runs(&state.db, health::WINDOW_HOURS),
    )
    .await
    {
        metrics::ingest_runs(&runs, state.delivery.clock.now());
    }
    if let Ok(Ok((statuses, pending))) =
        tokio::time::timeout(state.config.health_check_timeout, async {
            let statuses = crate::sla::monitor::platform_statuses(&state.db).await?;
            let pending = crate::sla::monitor::pending_notifications(&state.db).await?;
            Ok::<_, sqlx::Error>((statuses, pending))
        })
        .await
    {
        metrics::sla(&statuses, &pending);
    }
    for circuit in state.delivery.connectors.circuits() {
        let value = match circuit.state {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        };
        metrics::circuit(circuit.provider, &circuit.endpoint, value);
    }
    let body = metrics::render(&state.metrics, state.delivery.clock.now());
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
