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

#[derive(Deserialize)]
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
    let key = raw
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or(ApiError::InvalidIdempotencyKey {
            max: MAX_IDEMPOTENCY_KEY,
        })?;
    Ok(Some(key.to_owned()))
}

/// A delivery with every attempt made so far, and what the provider said
/// about it since.
#[derive(Serialize)]
struct DeliveryDetail {
    #[serde(flatten)]
    delivery: DeliveryView,
    attempts: Vec<AttemptView>,
    events: Vec<WebhookEventView>,
}

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

/// `startDate` and `endDate`, which bound `created_at` inclusively; an
/// inverted range is recorded as an error on `endDate`.
pub(super) fn created_range(
    params: &mut QueryParams,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let from = params.get_with("startDate", |raw| date::parse(raw, Day::Start));
    let to = params.get_with("endDate", |raw| date::parse(raw, Day::End));
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        params.reject("endDate", "must not be before startDate");
    }
    (from, to)
}
