//! Replay routes for ops and the cockpit: one failed delivery, a list, or
//! every failed delivery of a company.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use serde::{Deserialize, Serialize};

use super::{
    date::{self, Day},
    error::{ApiError, FieldError},
    extract,
    views::{BulkResultView, DeliveryView},
};
use crate::{
    app::AppState,
    auth::Principal,
    delivery::{
        queue,
        replay::{self, BULK_LIMIT, BulkOutcome, Replayed},
    },
    ids::{CompanyId, DeliveryKey},
    provider::Provider,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/impact-in/deliveries/{id}/replay", post(replay_one))
        .route("/v1/impact-in/deliveries/bulk-replay", post(bulk_replay))
        .route(
            "/v1/impact-in/deliveries/retry-all-failed",
            post(retry_all_failed),
        )
}

/// 200 with the delivery after the attempt; 202 when nothing could be sent
/// yet (`replay.result` `deferred`, with the reason and `nextAttemptAt`) or
/// while it is still being attempted past `REPLAY_TIMEOUT_SECS`
/// (`in_progress`); 409 unless it had failed: the bulk replay of one id.
#[utoipa::path(
    post,
    path = "/v1/impact-in/deliveries/{id}/replay",
    tag = "replay",
    summary = "Replay one failed delivery",
    params(("id" = String, Path, description = "Record id or deliveryId")),
    responses((status = 200, description = "Attempted", body = ReplayedOne), (status = 202, description = "Deferred or still in progress", body = ReplayedOne), (status = 404, description = "No such delivery", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Not failed", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 400, description = "A query parameter or body that does not parse (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Missing role, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn replay_one(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require_write()?;
    let not_found = || ApiError::DeliveryNotFound(id.clone());
    let key: DeliveryKey = id.parse().map_err(|_| not_found())?;
    let replayed = replay::replay(&state.delivery, &principal.scope(None)?, &[key])
        .await?
        .pop()
        .expect("a replay answers once per id");
    let status = match &replayed {
        Replayed::NotFound => return Err(not_found()),
        Replayed::NotFailed(delivery) => return Err(ApiError::DeliveryNotFailed(delivery.status)),
        Replayed::Attempted(_) => StatusCode::OK,
        Replayed::Deferred { .. } | Replayed::InProgress(_) => StatusCode::ACCEPTED,
    };
    let result = replayed.outcome();
    let (delivery, reason) = replayed.into_parts();
    let delivery = delivery.map(DeliveryView::from).ok_or_else(not_found)?;
    let replay = ReplayOutcome { result, reason };
    Ok((status, Json(ReplayedOne { delivery, replay })).into_response())
}

/// The delivery as it stands after a replay, and what the replay did.
#[derive(Serialize, utoipa::ToSchema)]
struct ReplayedOne {
    #[serde(flatten)]
    delivery: DeliveryView,
    replay: ReplayOutcome,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ReplayOutcome {
    /// `replayed`, `deferred` or `in_progress`.
    result: BulkOutcome,
    /// Why a `deferred` replay sent nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BulkReplay {
    #[schema(min_items = 1, max_items = 100)]
    ids: Vec<DeliveryKey>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct BulkReplayed {
    results: Vec<BulkResultView>,
}

#[utoipa::path(
    post,
    path = "/v1/impact-in/deliveries/bulk-replay",
    tag = "replay",
    summary = "Replay up to 100 failed deliveries",
    request_body = BulkReplay,
    responses((status = 200, description = "Per id", body = BulkReplayed), (status = 415, description = "Not JSON", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 422, description = "ids empty, too many or repeated", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 400, description = "A query parameter or body that does not parse (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Missing role, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn bulk_replay(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<extract::Json<BulkReplay>, ApiError>,
) -> Result<Json<BulkReplayed>, ApiError> {
    principal.require_write()?;
    let extract::Json(body) = body?;
    if body.ids.is_empty() || body.ids.len() > BULK_LIMIT {
        return Err(ApiError::Validation(vec![FieldError::new(
            "ids",
            format!("must hold 1 to {BULK_LIMIT} delivery ids"),
        )]));
    }
    let replayed = replay::replay(&state.delivery, &principal.scope(None)?, &body.ids).await?;
    let results = body
        .ids
        .iter()
        .zip(replayed)
        .map(|(&id, replayed)| BulkResultView::new(id, replayed))
        .collect();
    Ok(Json(BulkReplayed { results }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetryAllFailed {
    company_id: CompanyId,
    provider: Option<Provider>,
    /// Only deliveries that failed at or after this instant; the same forms
    /// and range as the list's `startDate`.
    #[schema(value_type = Option<super::date::DateOrTimestamp>)]
    since: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Queued {
    queued: u64,
}

/// Puts the company's failed deliveries back in the durable queue (the
/// workers replay them), and answers how many.
#[utoipa::path(
    post,
    path = "/v1/impact-in/deliveries/retry-all-failed",
    tag = "replay",
    summary = "Queue every failed delivery of a company",
    request_body = RetryAllFailed,
    responses((status = 202, description = "Queued for the workers", body = Queued), (status = 415, description = "Not JSON", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid since", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 400, description = "A query parameter or body that does not parse (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Missing role, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn retry_all_failed(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<extract::Json<RetryAllFailed>, ApiError>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    principal.require_write()?;
    let extract::Json(body) = body?;
    principal.scope(Some(body.company_id))?;
    let since = body
        .since
        .map(|raw| date::parse(raw.trim(), Day::Start))
        .transpose()
        .map_err(|message| ApiError::Validation(vec![FieldError::new("since", message)]))?;
    let queued = queue::requeue_failed(&state.db, body.company_id, body.provider, since).await?;
    if queued > 0 {
        state.delivery.queue.queued();
    }
    tracing::info!(company_id = %body.company_id, queued, "failed deliveries re-queued");
    Ok((StatusCode::ACCEPTED, Json(Queued { queued })))
}
