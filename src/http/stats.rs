//! `/v1/impact-in/stats`: delivery statistics for the cockpit's dashboard.

use axum::{Json, Router, extract::State, routing::get};

use super::{deliveries::created_range, error::ApiError, extract::QueryParams};
use crate::{
    app::AppState,
    auth::Principal,
    delivery::{
        stats::{self, Stats},
        store::ListFilter,
    },
    ids::CompanyId,
};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/impact-in/stats", get(show))
}

/// Over the deliveries the list would return for the same `companyId`,
/// `provider`, `startDate` and `endDate`, on every page.
#[utoipa::path(
    get,
    path = "/v1/impact-in/stats",
    operation_id = "show_stats",
    tag = "deliveries",
    summary = "Delivery statistics",
    params(("companyId" = Option<uuid::Uuid>, Query, description = "One of the caller's companies"), ("provider" = Option<crate::provider::Provider>, Query, description = "Only this provider"), ("startDate" = Option<crate::http::date::DateOrTimestamp>, Query, description = "Created at or after"), ("endDate" = Option<crate::http::date::DateOrTimestamp>, Query, description = "Created at or before")),
    responses((status = 200, description = "Counts, rates and latency", body = Stats), (status = 400, description = "A query parameter or body that does not parse (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Missing role, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn show(
    State(state): State<AppState>,
    principal: Principal,
    mut params: QueryParams,
) -> Result<Json<Stats>, ApiError> {
    principal.require_read()?;
    let company = params.get::<CompanyId>("companyId");
    let provider = params.get("provider");
    let (created_from, created_to) = created_range(&mut params);
    params.finish()?;

    let filter = ListFilter {
        scope: principal.scope(company)?,
        provider,
        // Statistics break deliveries down by status rather than filter on it.
        status: None,
        created_from,
        created_to,
    };
    Ok(Json(stats::compute(&state.db, &filter).await?))
}
