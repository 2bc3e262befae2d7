//! The SLA routes of the cockpit's widget (docs/sla.md): the status over a
//! period, the weekly report with its recommendations, the delivery
//! timeline, and the figures per day of the console's charts. The figures
//! and the words are `crate::sla`'s.

use axum::{Json, Router, extract::State, routing::get};
use chrono::{DateTime, Duration, Utc};

use super::{
    date::{self, Day},
    error::{ApiError, FieldError},
    extract::QueryParams,
    paging::parse_in_range,
};
use crate::{
    app::AppState,
    auth::Principal,
    ids::CompanyId,
    sla::{
        Period,
        daily::{self, SlaDaily},
        period::MAX_DAYS,
        report::{self, SlaReport, SlaStatusAnswer},
        timeline::{self, Timeline},
    },
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/impact-in/sla-status", get(status))
        .route("/v1/impact-in/sla-report", get(weekly_report))
        .route("/v1/impact-in/delivery-timeline", get(delivery_timeline))
        .route("/v1/impact-in/sla-daily", get(daily_figures))
}

/// Over the deliveries created in `[startDate, endDate)`; by default the
/// current UTC week, Monday 00:00 to the next Monday 00:00.
#[utoipa::path(
    get,
    path = "/v1/impact-in/sla-status",
    operation_id = "show_sla_status",
    tag = "sla",
    summary = "SLA figures and status over a period, per platform and overall",
    params(("companyId" = Option<uuid::Uuid>, Query, description = "One of the caller's companies; ops keys may leave it out for all companies"), ("startDate" = Option<crate::http::date::DateOrTimestamp>, Query, description = "Created at or after (a date: its start); default: this week's Monday 00:00 UTC"), ("endDate" = Option<crate::http::date::DateOrTimestamp>, Query, description = "Created before (a date: through its end); default: next Monday 00:00 UTC; at most 366 days after startDate")),
    responses((status = 200, description = "Figures, status and breaches", body = SlaStatusAnswer), (status = 422, description = "An empty or inverted period, or one longer than 366 days (the field named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 400, description = "A query parameter or body that does not parse (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Missing role, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn status(
    State(state): State<AppState>,
    principal: Principal,
    mut params: QueryParams,
) -> Result<Json<SlaStatusAnswer>, ApiError> {
    principal.require_read()?;
    let company = params.get::<CompanyId>("companyId");
    let (start, end) = period_bounds(&mut params);
    params.finish()?;
    let week = Period::week_of(state.delivery.clock.now());
    let period = requested_period(week, start, end, MAX_DAYS)?;
    let scope = principal.scope(company)?;
    let answer = report::status(&state.db, &scope, period, &state.config.sla.thresholds).await?;
    Ok(Json(answer))
}

/// `startDate` and `endDate`, the bounds of a period `[start, end)`: a
/// plain date starts at its first instant and ends after its last.
fn period_bounds(params: &mut QueryParams) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let start = params.get_with("startDate", |raw| date::parse(raw, Day::Start));
    let end = params.get_with("endDate", |raw| date::parse(raw, Day::After));
    (start, end)
}

/// Each bound defaults to `default`'s; the period must not be empty nor
/// longer than `max_days`. The error names the bound the caller sent (the
/// end, when both).
fn requested_period(
    default: Period,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    max_days: i64,
) -> Result<Period, ApiError> {
    let field = if end.is_some() || start.is_none() {
        "endDate"
    } else {
        "startDate"
    };
    let invalid = |message: String| ApiError::Validation(vec![FieldError::new(field, message)]);
    let period = Period::checked(start.unwrap_or(default.start), end.unwrap_or(default.end))
        .map_err(|message| invalid(message.to_owned()))?;
    if period.end - period.start > Duration::days(max_days) {
        return Err(invalid(format!(
            "the period must be at most {max_days} days long"
        )));
    }
    Ok(period)
}

/// Per UTC day and platform, over the deliveries created in `[startDate,
/// endDate)`; by default the last 14 UTC days up to now.
#[utoipa::path(
    get,
    path = "/v1/impact-in/sla-daily",
    operation_id = "show_sla_daily",
    tag = "sla",
    summary = "Deliveries per UTC day and platform: counts by outcome, average and p95 latency",
    params(("companyId" = Option<uuid::Uuid>, Query, description = "One of the caller's companies; ops keys may leave it out for all companies"), ("startDate" = Option<crate::http::date::DateOrTimestamp>, Query, description = "Created at or after (a date: its start); default: 00:00 UTC 13 days before today"), ("endDate" = Option<crate::http::date::DateOrTimestamp>, Query, description = "Created before (a date: through its end); default: now; at most 92 days after startDate")),
    responses((status = 200, description = "The period and its days, by date then platform; only days with deliveries", body = SlaDaily), (status = 422, description = "An empty or inverted period, or one longer than 92 days (the field named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 400, description = "A query parameter that does not parse (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Missing role, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn daily_figures(
    State(state): State<AppState>,
    principal: Principal,
    mut params: QueryParams,
) -> Result<Json<SlaDaily>, ApiError> {
    principal.require_read()?;
    let company = params.get::<CompanyId>("companyId");
    let (start, end) = period_bounds(&mut params);
    params.finish()?;
    let default = daily::last_days(state.delivery.clock.now());
    let period = requested_period(default, start, end, daily::MAX_DAYS)?;
    let scope = principal.scope(company)?;
    Ok(Json(daily::compute(&state.db, &scope, period).await?))
}

/// A full UTC week: by default the last one before the current week.
#[utoipa::path(
    get,
    path = "/v1/impact-in/sla-report",
    operation_id = "show_sla_report",
    tag = "sla",
    summary = "The SLA report of a week, with recommendations derived from its failures",
    params(("companyId" = Option<uuid::Uuid>, Query, description = "One of the caller's companies; ops keys may leave it out for all companies"), ("weekStart" = Option<chrono::NaiveDate>, Query, description = "The Monday the week starts (00:00 UTC); default: the last full week")),
    responses((status = 200, description = "The week's figures, status, breaches and recommendations", body = SlaReport), (status = 422, description = "weekStart is not a Monday", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 400, description = "A query parameter or body that does not parse (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Missing role, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn weekly_report(
    State(state): State<AppState>,
    principal: Principal,
    mut params: QueryParams,
) -> Result<Json<SlaReport>, ApiError> {
    principal.require_read()?;
    let company = params.get::<CompanyId>("companyId");
    let week_start = params.get_with("weekStart", |raw| date::parse(raw, Day::Start));
    params.finish()?;
    let period = match week_start {
        Some(start) => Period::week_starting(start)
            .map_err(|message| ApiError::Validation(vec![FieldError::new("weekStart", message)]))?,
        None => Period::week_before(state.delivery.clock.now()),
    };
    let scope = principal.scope(company)?;
    let report = report::weekly(&state.db, &scope, period, &state.config.sla.thresholds).await?;
    Ok(Json(report))
}

const TIMELINE_LIMIT: u64 = 30;
const TIMELINE_MAX: u64 = 100;

/// The newest deliveries, for the cockpit's timeline.
#[utoipa::path(
    get,
    path = "/v1/impact-in/delivery-timeline",
    operation_id = "show_delivery_timeline",
    tag = "sla",
    summary = "The newest deliveries with outcome, attempts, latency and error summary",
    params(("companyId" = Option<uuid::Uuid>, Query, description = "One of the caller's companies"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "How many, 1 to 100 (30)")),
    responses((status = 200, description = "Newest first", body = Timeline), (status = 400, description = "A query parameter or body that does not parse (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Missing role, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn delivery_timeline(
    State(state): State<AppState>,
    principal: Principal,
    mut params: QueryParams,
) -> Result<Json<Timeline>, ApiError> {
    principal.require_read()?;
    let company = params.get::<CompanyId>("companyId");
    let limit = params
        .get_with("limit", |raw| parse_in_range(raw, 1, TIMELINE_MAX))
        .unwrap_or(TIMELINE_LIMIT);
    params.finish()?;
    let scope = principal.scope(company)?;
    let limit = u32::try_from(limit).expect("at most TIMELINE_MAX");
    Ok(Json(timeline::newest(&state.db, scope, limit).await?))
}
