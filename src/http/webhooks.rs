//! `/webhooks/*`: signed status updates from the providers (no bearer
//! token: the signature is the credential), their health, and
//! `/v1/impact-in/webhook-events`, where the stored events are listed.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Serialize;
use serde_json::json;

use super::{
    deliveries::created_range,
    error::ApiError,
    extract::QueryParams,
    paging::{Page, PageRequest},
    views::WebhookEventView,
};
use crate::{
    app::AppState,
    auth::Principal,
    ids::CompanyId,
    provider::Provider,
    webhooks::{
        self, Received,
        store::{self, EventFilter, Outcome},
    },
};

pub fn routes(body_limit: usize) -> Router<AppState> {
    Router::new()
        .route("/webhooks/health", get(health))
        .route("/webhooks/{provider}", post(receive_global))
        .route(
            "/webhooks/{provider}/{company_id}",
            post(receive_for_company),
        )
        // Events are small; the general request limit is for reports.
        .layer(DefaultBodyLimit::max(body_limit))
        .route("/v1/impact-in/webhook-events", get(list))
}

#[utoipa::path(
    post,
    path = "/webhooks/{provider}",
    tag = "webhooks",
    summary = "A provider's signed status event",
    params(("provider" = crate::provider::Provider, Path, description = "benevity, goodera or workday")),
    request_body = Object,
    responses((status = 202, description = "A new event, stored (and applied when it names a delivery)"), (status = 200, description = "A repeat or an ignored type"), (status = 400, description = "Verified but not an event", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Signature missing, outside tolerance, or mismatched", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 413, description = "Body too large", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "No secret configured, or the database is unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(()),
)]
async fn receive_global(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    receive(&state, &provider, None, &headers, body).await
}

#[utoipa::path(
    post,
    path = "/webhooks/{provider}/{company_id}",
    tag = "webhooks",
    summary = "A signed status event from a company's own provider account",
    params(("provider" = crate::provider::Provider, Path, description = "benevity, goodera or workday"), ("company_id" = uuid::Uuid, Path, description = "The company")),
    request_body = Object,
    responses((status = 202, description = "A new event, stored"), (status = 200, description = "A repeat or an ignored type"), (status = 400, description = "Verified but not an event", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Signature refused", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 413, description = "Body too large", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Not configured or database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(()),
)]
async fn receive_for_company(
    State(state): State<AppState>,
    Path((provider, company)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    receive(&state, &provider, Some(&company), &headers, body).await
}

/// 202 for a new event, 200 for a repeat or a type we do not act on; see
/// `docs/api.md` for every refusal.
async fn receive(
    state: &AppState,
    provider: &str,
    company: Option<&str>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // An unknown provider or a malformed company id names no route.
    let not_found = || ApiError::RouteNotFound {
        method: axum::http::Method::POST,
        path: match company {
            Some(company) => format!("/webhooks/{provider}/{company}"),
            None => format!("/webhooks/{provider}"),
        },
    };
    let provider: Provider = provider.parse().map_err(|_| not_found())?;
    let company = company
        .map(|raw| raw.parse::<CompanyId>().map_err(|_| not_found()))
        .transpose()?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: state.config.webhooks.body_limit_bytes,
            }
        } else {
            ApiError::UnreadableBody
        }
    })?;
    let received = webhooks::receive(&state.webhooks, provider, company, headers, &body).await?;
    Ok(match received {
        Received::Duplicate => (
            StatusCode::OK,
            Json(json!({"status": "duplicate", "detail": "this event id was already received"})),
        )
            .into_response(),
        Received::New(recorded) if recorded.outcome == Outcome::Ignored => (
            StatusCode::OK,
            Json(json!({"status": "ignored", "detail": "stored; this event type changes nothing"})),
        )
            .into_response(),
        Received::New(recorded) => (
            StatusCode::ACCEPTED,
            Json(json!({
                "status": "accepted",
                "outcome": recorded.outcome,
                "matched": recorded.delivery_record_id.is_some(),
            })),
        )
            .into_response(),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProviderHealth {
    /// A global secret is set (`{PROVIDER}_WEBHOOK_SECRET`).
    configured: bool,
    /// Companies with a secret of their own.
    company_secrets: usize,
    received: u64,
    verified: u64,
    refused: Refused,
    last_verified_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Refused {
    total: u64,
    missing_signature: u64,
    timestamp_outside_tolerance: u64,
    signature_mismatch: u64,
}

/// `GET /webhooks/health`: counts since start, per provider; no secret and
/// no tenant data.
#[utoipa::path(
    get,
    path = "/webhooks/health",
    tag = "webhooks",
    summary = "Webhook counts per provider since start",
    responses((status = 200, description = "Per provider: configured, received, verified, refused by reason", body = Object)),
    security(()),
)]
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let webhooks = &state.webhooks;
    let secrets = &webhooks.config.secrets;
    let providers: serde_json::Map<String, serde_json::Value> = Provider::ALL
        .into_iter()
        .map(|provider| {
            let reading = webhooks.counters.read(provider);
            let [
                missing_signature,
                timestamp_outside_tolerance,
                signature_mismatch,
            ] = reading.refused;
            let health = ProviderHealth {
                configured: secrets.has_global(provider),
                company_secrets: secrets.company_count(provider),
                received: reading.received,
                verified: reading.verified,
                refused: Refused {
                    total: reading.refused.iter().sum(),
                    missing_signature,
                    timestamp_outside_tolerance,
                    signature_mismatch,
                },
                last_verified_at: reading.last_verified_at,
            };
            (
                provider.to_string(),
                serde_json::to_value(health).expect("plain data serialises"),
            )
        })
        .collect();
    Json(json!({
        "status": "ok",
        "toleranceSecs": webhooks.config.tolerance.as_secs(),
        "providers": providers,
    }))
}

/// `GET /v1/impact-in/webhook-events`: stored events, newest first.
#[utoipa::path(
    get,
    path = "/v1/impact-in/webhook-events",
    operation_id = "list_webhook_events",
    tag = "webhooks",
    summary = "Stored webhook events, newest first",
    params(("companyId" = Option<uuid::Uuid>, Query, description = "One of the caller's companies"), ("provider" = Option<crate::provider::Provider>, Query, description = "Only this provider"), ("matched" = Option<bool>, Query, description = "true or false"), ("startDate" = Option<crate::http::date::DateOrTimestamp>, Query, description = "Received at or after"), ("endDate" = Option<crate::http::date::DateOrTimestamp>, Query, description = "Received at or before"), ("page" = Option<u64>, Query, minimum = 1, maximum = 100000, description = "Page number, 1 to 100000"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100 (20)"), ("cursor" = Option<String>, Query, pattern = "^-?[0-9]{1,16}_[0-9a-f]{32}$", description = "nextCursor of a previous page: the page starts after it (page then counts from it)")),
    responses((status = 200, description = "A page of events", body = crate::http::paging::Page<WebhookEventView>), (status = 400, description = "A query parameter or body that does not parse (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Missing role, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn list(
    State(state): State<AppState>,
    principal: Principal,
    mut params: QueryParams,
) -> Result<Json<Page<WebhookEventView>>, ApiError> {
    principal.require_read()?;
    let company = params.get::<CompanyId>("companyId");
    let provider = params.get("provider");
    let matched = params.get_with("matched", |raw| match raw {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("must be true or false"),
    });
    let (received_from, received_to) = created_range(&mut params);
    let request = PageRequest::read(&mut params);
    params.finish()?;
    let filter = EventFilter {
        scope: principal.scope(company)?,
        provider,
        matched,
        received_from,
        received_to,
    };
    let page = store::list(&state.db, &filter, request.limit, request.start).await?;
    Ok(Json(request.answer(
        page.rows.into_iter().map(WebhookEventView::from).collect(),
        page.total,
        page.next,
    )))
}
