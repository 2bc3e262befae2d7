//! The HTTP surface: one router, its middleware stack, and one file per route
//! group. Handlers parse, authorize and call into the domain modules.

mod bus;
mod console;
mod credentials;
mod date;
mod deliveries;
pub mod error;
pub mod extract;
mod health;
mod ingest;
pub mod listener;
mod metrics;
pub mod openapi;
mod paging;
mod replay;
mod schedules;
mod session;
mod sla;
mod stats;
pub mod views;
mod webhooks;

use std::time::Duration;

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    http::{HeaderName, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::{
    cors::{AllowHeaders, AllowMethods, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    sensitive_headers::SetSensitiveHeadersLayer,
    timeout::TimeoutLayer,
    trace::TraceLayer,
};
use tracing::{Level, Span};

use self::error::{ApiError, Cause, Problem};
use crate::app::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let http = &state.config.http;
    let middleware = ServiceBuilder::new()
        .layer(SetSensitiveHeadersLayer::new([
            header::AUTHORIZATION,
            header::PROXY_AUTHORIZATION,
            header::COOKIE,
            header::SET_COOKIE,
        ]))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(record_response)
                // record_response already logs failures, with the span.
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(axum::middleware::from_fn(count_request))
        .layer(axum::middleware::map_response(problem_for_bare_errors))
        .layer(cors(&http.cors_allowed_origins))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            http.request_timeout,
        ))
        .layer(DefaultBodyLimit::max(http.body_limit_bytes));

    let mut routes = Router::new()
        .route("/", get(discovery))
        .merge(health::routes())
        .merge(metrics::routes());
    // A worker process (RUN_MODE=worker) answers its probes only.
    if state.config.run_mode.serves_api() {
        routes = routes
            .merge(deliveries::routes())
            .merge(replay::routes())
            .merge(stats::routes())
            .merge(sla::routes())
            .merge(webhooks::routes(state.config.webhooks.body_limit_bytes))
            .merge(ingest::routes())
            .merge(credentials::routes())
            .merge(schedules::routes())
            .merge(bus::routes())
            .merge(session::routes())
            .merge(openapi::routes())
            // The delivery console: a page, not API (not in the spec).
            .merge(console::routes());
    }
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware)
        .with_state(state)
}

fn cors(origins: &[axum::http::HeaderValue]) -> CorsLayer {
    // With no origin configured the layer allows none, so browsers on other
    // origins are refused while server-to-server calls are unaffected.
    CorsLayer::new()
        .allow_origin(origins.to_vec())
        .allow_methods(AllowMethods::list([
            axum::http::Method::GET,
            axum::http::Method::POST,
        ]))
        .allow_headers(AllowHeaders::list([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
        ]))
        .expose_headers([REQUEST_ID, header::LOCATION])
        .max_age(Duration::from_secs(600))
}

/// Routes that Kubernetes calls every few seconds: their answers are logged
/// at debug, or they would drown everything else at info.
const PROBE_ROUTES: [&str; 6] = [
    "/metrics",
    "/health/liveness",
    "/health/live",
    "/health/readiness",
    "/health/ready",
    "/health/startup",
];

fn request_span(request: &Request) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // A span's level must be a constant, hence one call per level.
    macro_rules! span_at {
        ($level:expr) => {
            tracing::span!(
                $level,
                "request",
                method = %request.method(),
                route,
                request_id,
                subject = tracing::field::Empty,
                company = tracing::field::Empty,
                status = tracing::field::Empty,
                latency_ms = tracing::field::Empty,
                // Read by the span exporter only (docs/tracing.md).
                otel.name = tracing::field::Empty,
                otel.kind = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            )
        };
    }
    let span = if PROBE_ROUTES.contains(&route) {
        span_at!(Level::DEBUG)
    } else {
        span_at!(Level::INFO)
    };
    // Only with an exporter: in the logs these fields would be noise.
    if crate::telemetry::exporting() && !span.is_disabled() {
        span.record("otel.kind", "server");
        span.record(
            "otel.name",
            tracing::field::display(format_args!("{} {route}", request.method())),
        );
        crate::telemetry::continue_trace(&span, request.headers());
    }
    span
}

/// HTTP RED metrics, by route template (never the raw path).
async fn count_request(request: Request, next: axum::middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    crate::metrics::http_request(
        method.as_str(),
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

fn record_response(response: &Response, latency: Duration, span: &Span) {
    span.record("status", response.status().as_u16());
    span.record("latency_ms", latency.as_millis() as u64);
    if response.status().is_server_error() {
        if crate::telemetry::exporting() {
            span.record("otel.status_code", "ERROR");
        }
        tracing::error!("request failed");
    } else if span
        .metadata()
        .is_some_and(|span| *span.level() == Level::INFO)
    {
        tracing::info!("request finished");
    } else {
        // A probe's span: debug, and disabled (no metadata) below it.
        tracing::debug!("request finished");
    }
}

/// Errors produced outside our handlers (the timeout layer, axum's own
/// rejections) arrive without a body; give them the same problem shape.
async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    if (status.is_client_error() || status.is_server_error())
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        let reason = status.canonical_reason().unwrap_or("error");
        let problem = match status {
            // The timeout layer's answer.
            StatusCode::SERVICE_UNAVAILABLE => {
                Problem::new(Cause::Unavailable, "the request did not complete in time")
            }
            _ if status.is_server_error() => Problem::new(Cause::Internal, reason),
            _ => Problem::blank(status, reason),
        };
        let mut replaced = problem.into_response();
        // Keep headers such as Allow and WWW-Authenticate.
        for (name, value) in response.headers() {
            replaced.headers_mut().entry(name).or_insert(value.clone());
        }
        return replaced;
    }
    response
}

async fn not_found(request: Request) -> ApiError {
    ApiError::RouteNotFound {
        method: request.method().clone(),
        path: request.uri().path().to_owned(),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// `GET /`: what this service is and where its route groups live.
#[utoipa::path(
    get,
    path = "/",
    tag = "operations",
    summary = "Service discovery: name, version, route groups",
    responses((status = 200, description = "What this service is", body = Object)),
    security(()),
)]
async fn discovery() -> impl IntoResponse {
    Json(json!({
        "name": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "description": env!("CARGO_PKG_DESCRIPTION"),
        "routes": {
            "health": ["/health", "/health/liveness", "/health/readiness", "/health/startup"],
            "metrics": "/metrics",
            "openapi": "/openapi.json",
            "docs": "/docs/",
            "console": "/console",
            "impactIn": "/v1/impact-in",
            "webhooks": ["/webhooks/benevity", "/webhooks/goodera", "/webhooks/workday", "/webhooks/health"],
        },
    }))
}
