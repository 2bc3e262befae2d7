//! `/v1/impact-in/deliveries`: the delivery log the cockpit reads.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    date::{self, Day},
    error::{ApiError, FieldError},
    extract::{self, QueryParams},
    paging::{Page, PageRequest},
    views::{AttemptView, DeliveryView, WebhookEventView},
};
use crate::{
    app::AppState,
    auth::Principal,
    delivery::{
        queue,
        store::{self, Created, ListFilter, NewDelivery},
    },
    ids::{CompanyId, DeliveryId, DeliveryKey},
    provider::Provider,
    report::ImpactReport,
    webhooks,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/impact-in/deliveries", get(list).post(create))
        .route("/v1/impact-in/deliveries/{id}", get(show))
}

#[utoipa::path(
    get,
    path = "/v1/impact-in/deliveries",
    operation_id = "list_deliveries",
    tag = "deliveries",
    summary = "List deliveries, newest first",
    params(("companyId" = Option<uuid::Uuid>, Query, description = "One of the caller's companies"), ("provider" = Option<crate::provider::Provider>, Query, description = "Only this provider"), ("startDate" = Option<crate::http::date::DateOrTimestamp>, Query, description = "Created at or after (RFC 3339, or a date: its start)"), ("endDate" = Option<crate::http::date::DateOrTimestamp>, Query, description = "Created at or before (RFC 3339, or a date: its end)"), ("page" = Option<u64>, Query, minimum = 1, maximum = 100000, description = "Page number, 1 to 100000"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100 (20)"), ("cursor" = Option<String>, Query, pattern = "^-?[0-9]{1,16}_[0-9a-f]{32}$", description = "nextCursor of a previous page: the page starts after it (page then counts from it)"), ("status" = Option<crate::delivery::DeliveryStatus>, Query, description = "Only this status")),
    responses((status = 200, description = "A page of deliveries", body = crate::http::paging::Page<DeliveryView>), (status = 400, description = "A query parameter or body that does not parse (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Missing role, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn list(
    State(state): State<AppState>,
    principal: Principal,
    mut params: QueryParams,
) -> Result<Json<Page<DeliveryView>>, ApiError> {
    principal.require_read()?;
    let company = params.get::<CompanyId>("companyId");
    let provider = params.get("provider");
    let status = params.get("status");
    let (created_from, created_to) = created_range(&mut params);
    let request = PageRequest::read(&mut params);
    params.finish()?;

    let filter = ListFilter {
        scope: principal.scope(company)?,
        provider,
        status,
        created_from,
        created_to,
    };
    let list = store::list(&state.db, &filter, request.limit, request.start).await?;
    Ok(Json(request.answer(
        list.rows.into_iter().map(DeliveryView::from).collect(),
        list.total,
        list.next,
    )))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct CreateDelivery {
    company_id: CompanyId,
    provider: Provider,
    payload: ImpactReport,
    delivery_id: Option<DeliveryId>,
}

/// The longest `Idempotency-Key` accepted (the IETF draft leaves it open;
/// UUIDs and ULIDs fit comfortably).
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Stores an impact report for delivery. 202 for a new delivery, 200 with the
/// original for a repeat of the same `deliveryId` or `Idempotency-Key` and
/// body, 409 for a reuse of either with another body.
#[utoipa::path(
    post,
    path = "/v1/impact-in/deliveries",
    tag = "deliveries",
    summary = "Store an impact report for delivery",
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~](?:[ -~]{0,253}[!-~])?$", description = "Makes a repeat of this request answer the original: 1 to 255 printable ASCII characters, no space at either end")),
    request_body = CreateDelivery,
    responses((status = 202, description = "Stored; to be delivered", body = DeliveryView), (status = 200, description = "A repeat: the original delivery", body = DeliveryView), (status = 409, description = "deliveryId or Idempotency-Key reused with another body", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 413, description = "Body too large", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 415, description = "Not JSON", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid report (each field named)", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 400, description = "A query parameter or body that does not parse (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Missing role, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    // Taken as a Result so that a caller without the right role hears 403,
    // not a complaint about a body it may not send at all.
    body: Result<extract::Json<CreateDelivery>, ApiError>,
) -> Result<Response, ApiError> {
    principal.require_write()?;
    let extract::Json(body) = body?;
    principal.scope(Some(body.company_id))?;
    let idempotency_key = idempotency_key(&headers)?;
    let mut errors: Vec<FieldError> = body
        .payload
        .violations()
        .into_iter()
        .map(|v| FieldError::new(format!("payload.{}", v.field), v.message))
        .collect();
    if body.payload.company_id != body.company_id.0 {
        errors.push(FieldError::new("payload.companyId", "must equal companyId"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let new = NewDelivery {
        company_id: body.company_id,
        provider: body.provider,
        delivery_id: body.delivery_id.unwrap_or_else(DeliveryId::generate),
        idempotency_key,
        payload: serde_json::to_value(&body.payload).map_err(anyhow::Error::from)?,
        cause_event_id: None,
    };
    let (status, delivery) =
        match store::insert(&state.delivery.db, &state.delivery.intake, new).await? {
            Created::New(delivery) => {
                state.delivery.queue.queued();
                (StatusCode::ACCEPTED, delivery)
            }
            Created::Existing(delivery) => (StatusCode::OK, delivery),
            Created::Conflict => return Err(ApiError::IdempotencyKeyReused),
            Created::IdTaken => return Err(ApiError::DeliveryIdTaken),
        };
    let location = format!("/v1/impact-in/deliveries/{}", delivery.id);
    Ok((
        status,
        [(header::LOCATION, location)],
        Json(DeliveryView::from(delivery)),
    )
        .into_response())
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    // Printable ASCII (spaces inside only, as the spec's pattern says): no
    // tab, no byte past ASCII.
    let key = raw
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| {
            (1..=MAX_IDEMPOTENCY_KEY).contains(&key.len())
                && key.bytes().all(|b| (b' '..=b'~').contains(&b))
        })
        .ok_or(ApiError::InvalidIdempotencyKey {
            max: MAX_IDEMPOTENCY_KEY,
        })?;
    Ok(Some(key.to_owned()))
}

/// A delivery with every attempt made so far, and what the provider said
/// about it since.
#[derive(Serialize, utoipa::ToSchema)]
struct DeliveryDetail {
    #[serde(flatten)]
    delivery: DeliveryView,
    attempts: Vec<AttemptView>,
    events: Vec<WebhookEventView>,
}

#[utoipa::path(
    get,
    path = "/v1/impact-in/deliveries/{id}",
    operation_id = "show_delivery",
    tag = "deliveries",
    summary = "One delivery with its attempts and webhook events",
    params(("id" = String, Path, description = "Record id or deliveryId")),
    responses((status = 200, description = "The delivery", body = DeliveryDetail), (status = 404, description = "No such delivery of the caller's companies", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 400, description = "A query parameter or body that does not parse (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Missing role, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn show(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    principal.require_read()?;
    let not_found = || ApiError::DeliveryNotFound(id.clone());
    // A malformed id cannot name a delivery; 404 like any unknown one.
    let key: DeliveryKey = id.parse().map_err(|_| not_found())?;
    let delivery = store::find(&state.db, &principal.scope(None)?, key)
        .await?
        .ok_or_else(not_found)?;
    let (attempts, events) = tokio::try_join!(
        queue::attempts(&state.db, delivery.id),
        webhooks::store::for_delivery(&state.db, delivery.id),
    )?;
    Ok(Json(DeliveryDetail {
        delivery: delivery.into(),
        attempts: attempts.into_iter().map(AttemptView::from).collect(),
        events: events.into_iter().map(WebhookEventView::from).collect(),
    }))
}

/// `startDate` and `endDate`, which bound `created_at` inclusively. Each
/// is a filter of its own: an inverted range matches nothing, as a range
/// no row falls in does (the spec cannot say that one parameter must
/// follow another, so the service does not require it).
pub(super) fn created_range(
    params: &mut QueryParams,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let from = params.get_with("startDate", |raw| date::parse(raw, Day::Start));
    let to = params.get_with("endDate", |raw| date::parse(raw, Day::End));
    (from, to)
}
