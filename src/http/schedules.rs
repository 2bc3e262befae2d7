//! `/v1/impact-in/schedules`: per-company export schedules (seed 004).
//! Timing rules live in `scheduler::timing`, firing in `scheduler::fire`;
//! this parses, authorizes and shapes the answers.

use axum::{
    Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    error::{ApiError, FieldError},
    extract::{Json, QueryParams},
    paging::{Page, PageRequest, parse_in_range},
};
use crate::{
    app::AppState,
    auth::Principal,
    ids::{CompanyId, ScheduleId},
    provider::Provider,
    scheduler::{
        fire::{self, FireError},
        schedule::{self, Changes, Firing, LastStatus, ListFilter, NewSchedule, StoredSchedule},
        timing::{self, Preset, Schedule, Zone},
    },
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/impact-in/schedules", post(create).get(list))
        .route("/v1/impact-in/schedules/preview", get(preview))
        .route("/v1/impact-in/schedules/stats", get(stats))
        .route(
            "/v1/impact-in/schedules/{id}",
            get(show).patch(update).delete(remove),
        )
        .route("/v1/impact-in/schedules/{id}/run", post(run_now))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSchedule {
    company_id: Uuid,
    platform: Provider,
    /// `hourly`, `every-6-hours`, `daily`, `weekly`, `monthly`, or a
    /// 5-field cron expression (`0 9 * * 1-5`).
    #[schema(example = "0 9 * * 1-5")]
    schedule: String,
    /// IANA time zone of the schedule's local times (UTC).
    #[schema(example = "America/New_York")]
    timezone: Option<String>,
    /// false: stored paused (true).
    active: Option<bool>,
}

/// Any of the three; what is left out stays.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateSchedule {
    schedule: Option<String>,
    timezone: Option<String>,
    active: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleView {
    id: ScheduleId,
    company_id: CompanyId,
    platform: Provider,
    schedule: String,
    /// The preset `schedule` names, if it is one.
    preset: Option<Preset>,
    timezone: String,
    active: bool,
    /// The next due time (null while paused).
    next_run: Option<DateTime<Utc>>,
    /// The same instant in the schedule's zone, with its offset.
    next_run_local: Option<String>,
    /// The due time of the last firing.
    last_run: Option<DateTime<Utc>>,
    last_status: Option<LastStatus>,
    last_error: Option<String>,
    consecutive_failures: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<StoredSchedule> for ScheduleView {
    fn from(s: StoredSchedule) -> Self {
        Self {
            id: s.id,
            company_id: s.company_id,
            platform: s.platform,
            schedule: s.schedule.as_str().to_owned(),
            preset: s.schedule.preset(),
            timezone: s.timezone.as_str().to_owned(),
            active: s.active,
            next_run_local: s.next_run.map(|at| timing::local(at, s.timezone)),
            next_run: s.next_run,
            last_run: s.last_run,
            last_status: s.last_status,
            last_error: s.last_error,
            consecutive_failures: s.consecutive_failures,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// `schedule` and `timezone` read together, each error naming its field.
fn timing_of(schedule: &str, timezone: Option<&str>) -> Result<(Schedule, Zone), ApiError> {
    let parsed_schedule = schedule.parse::<Schedule>();
    let parsed_zone = timezone.map_or(Ok(Zone::UTC), str::parse::<Zone>);
    match (parsed_schedule, parsed_zone) {
        (Ok(schedule), Ok(zone)) => Ok((schedule, zone)),
        (schedule, zone) => Err(ApiError::Validation(
            [
                schedule
                    .err()
                    .map(|err| FieldError::new("schedule", err.to_string())),
                zone.err()
                    .map(|err| FieldError::new("timezone", err.to_string())),
            ]
            .into_iter()
            .flatten()
            .collect(),
        )),
    }
}

/// The next due time from now, for an active schedule.
fn next_run(
    state: &AppState,
    schedule: &Schedule,
    zone: Zone,
    active: bool,
) -> Option<DateTime<Utc>> {
    active
        .then(|| timing::next_after(schedule, zone, state.delivery.clock.now()))
        .flatten()
}

impl From<FireError> for ApiError {
    fn from(err: FireError) -> Self {
        match err {
            FireError::Database(err) => Self::Database(err),
            err @ FireError::NoPeriod(_) => Self::Internal(err.into()),
            FireError::Metrics(err) => Self::ImpactMetricsUnavailable(err),
        }
    }
}

/// `POST /v1/impact-in/schedules`: a company's schedule for one provider.
#[utoipa::path(
    post,
    path = "/v1/impact-in/schedules",
    operation_id = "create_schedule",
    tag = "schedules",
    summary = "Create a schedule",
    request_body = CreateSchedule,
    responses(
        (status = 201, description = "Created, with its next run", body = ScheduleView),
        (status = 400, description = "Malformed JSON", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing MANAGE_INTEGRATIONS, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "An invalid schedule or time zone (each named in `errors`, saying why)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateSchedule>,
) -> Result<Response, ApiError> {
    principal.require_write()?;
    let company = CompanyId(body.company_id);
    principal.scope(Some(company))?;
    let (schedule, timezone) = timing_of(&body.schedule, body.timezone.as_deref())?;
    let active = body.active.unwrap_or(true);
    let created = schedule::insert(
        &state.db,
        &NewSchedule {
            company_id: company,
            platform: body.platform,
            next_run: next_run(&state, &schedule, timezone, active),
            schedule,
            timezone,
            active,
        },
    )
    .await?;
    state.scheduler.wake.notify_one();
    tracing::info!(schedule = %created.id.0, company = %company, platform = %created.platform, by = %principal.log_label(), "schedule created");
    Ok((StatusCode::CREATED, axum::Json(ScheduleView::from(created))).into_response())
}

/// `GET /v1/impact-in/schedules`: the caller's schedules, newest first.
#[utoipa::path(
    get,
    path = "/v1/impact-in/schedules",
    operation_id = "list_schedules",
    tag = "schedules",
    summary = "List schedules",
    params(
        ("companyId" = Option<uuid::Uuid>, Query, description = "One of the caller's companies (all of them by default)"),
        ("platform" = Option<Provider>, Query, description = "Only this provider's"),
        ("active" = Option<bool>, Query, description = "Only active (true) or paused (false) ones"),
        ("page" = Option<u64>, Query, minimum = 1, maximum = 100000),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, pattern = "^-?[0-9]{1,16}_[0-9a-f]{32}$", description = "nextCursor of a previous page"),
    ),
    responses(
        (status = 200, description = "A page of schedules (`total` null)", body = inline(Page<ScheduleView>)),
        (status = 400, description = "A query parameter that does not parse (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing ADMIN_CONSOLE, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn list(
    State(state): State<AppState>,
    principal: Principal,
    mut params: QueryParams,
) -> Result<axum::Json<Page<ScheduleView>>, ApiError> {
    principal.require_read()?;
    let company = params.get::<CompanyId>("companyId");
    let platform = params.get::<Provider>("platform");
    let active = params.get_with("active", |raw| match raw {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("must be true or false"),
    });
    let page = PageRequest::read(&mut params);
    params.finish()?;
    let filter = ListFilter {
        scope: principal.scope(company)?,
        platform,
        active,
    };
    let found = schedule::list(&state.db, &filter, page.limit, page.start).await?;
    Ok(axum::Json(page.answer(
        found.rows.into_iter().map(ScheduleView::from).collect(),
        None,
        found.next,
    )))
}

async fn find(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<StoredSchedule, ApiError> {
    let not_found = || ApiError::ScheduleNotFound(id.to_owned());
    let parsed: Uuid = id.parse().map_err(|_| not_found())?;
    schedule::find(&state.db, &principal.scope(None)?, ScheduleId(parsed))
        .await?
        .ok_or_else(not_found)
}

/// `GET /v1/impact-in/schedules/{id}`.
#[utoipa::path(
    get,
    path = "/v1/impact-in/schedules/{id}",
    operation_id = "show_schedule",
    tag = "schedules",
    summary = "One schedule",
    params(("id" = uuid::Uuid, Path)),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing ADMIN_CONSOLE", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No schedule of the caller's companies has this id", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn show(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<ScheduleView>, ApiError> {
    principal.require_read()?;
    Ok(axum::Json(find(&state, &principal, &id).await?.into()))
}

/// `PATCH /v1/impact-in/schedules/{id}`: changes the timing or pauses and
/// resumes; the next run is computed again from now.
#[utoipa::path(
    patch,
    path = "/v1/impact-in/schedules/{id}",
    operation_id = "update_schedule",
    tag = "schedules",
    summary = "Change a schedule",
    params(("id" = uuid::Uuid, Path)),
    request_body = UpdateSchedule,
    responses(
        (status = 200, description = "The changed schedule", body = ScheduleView),
        (status = 400, description = "Malformed JSON", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing MANAGE_INTEGRATIONS", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No schedule of the caller's companies has this id", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "An invalid schedule or time zone (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<UpdateSchedule>,
) -> Result<axum::Json<ScheduleView>, ApiError> {
    principal.require_write()?;
    let current = find(&state, &principal, &id).await?;
    let (schedule, timezone) = timing_of(
        body.schedule
            .as_deref()
            .unwrap_or(current.schedule.as_str()),
        Some(
            body.timezone
                .as_deref()
                .unwrap_or(current.timezone.as_str()),
        ),
    )?;
    let active = body.active.unwrap_or(current.active);
    let changes = Changes {
        next_run: next_run(&state, &schedule, timezone, active),
        schedule,
        timezone,
        active,
    };
    let updated = schedule::update(&state.db, current.id, &changes)
        .await?
        .ok_or_else(|| ApiError::ScheduleNotFound(id.clone()))?;
    state.scheduler.wake.notify_one();
    tracing::info!(schedule = %updated.id.0, by = %principal.log_label(), "schedule changed");
    Ok(axum::Json(updated.into()))
}

/// `DELETE /v1/impact-in/schedules/{id}`: the schedule and its firings; its
/// deliveries stay, without a `scheduleId`.
#[utoipa::path(
    delete,
    path = "/v1/impact-in/schedules/{id}",
    operation_id = "delete_schedule",
    tag = "schedules",
    summary = "Delete a schedule",
    params(("id" = uuid::Uuid, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing MANAGE_INTEGRATIONS", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No schedule of the caller's companies has this id", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require_write()?;
    let found = find(&state, &principal, &id).await?;
    if !schedule::delete(&state.db, &principal.scope(None)?, found.id).await? {
        return Err(ApiError::ScheduleNotFound(id));
    }
    tracing::info!(schedule = %found.id.0, by = %principal.log_label(), "schedule deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/impact-in/schedules/{id}/run`: fires once now, for the period
/// the schedule would cover now; its rhythm does not move.
#[utoipa::path(
    post,
    path = "/v1/impact-in/schedules/{id}/run",
    operation_id = "run_schedule",
    tag = "schedules",
    summary = "Run a schedule now, once",
    params(("id" = uuid::Uuid, Path)),
    responses(
        (status = 200, description = "The firing: a delivery queued (its deliveryId), or skipped and why", body = Firing),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing MANAGE_INTEGRATIONS", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No schedule of the caller's companies has this id", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable, or the impact platform's metrics are (nothing was sent)", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn run_now(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<Firing>, ApiError> {
    principal.require_write()?;
    let found = find(&state, &principal, &id).await?;
    let now = state.delivery.clock.now();
    let firing = fire::run_now(&state.scheduler, &found, now).await?;
    tracing::info!(schedule = %found.id.0, by = %principal.log_label(), "schedule run by hand");
    Ok(axum::Json(firing))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewAnswer {
    schedule: String,
    timezone: String,
    runs: Vec<timing::UpcomingRun>,
}

/// `GET /v1/impact-in/schedules/preview`: the next runs of a schedule that
/// need not exist, in UTC and local time.
#[utoipa::path(
    get,
    path = "/v1/impact-in/schedules/preview",
    operation_id = "preview_schedule",
    tag = "schedules",
    summary = "Preview the next runs of a schedule",
    params(
        ("schedule" = String, Query, min_length = 1, description = "A preset or a 5-field cron expression"),
        ("timezone" = Option<String>, Query, min_length = 1, description = "IANA zone (UTC)"),
        ("count" = Option<u32>, Query, minimum = 1, maximum = 50, description = "How many runs (5)"),
    ),
    responses(
        (status = 200, description = "The next runs from now", body = PreviewAnswer),
        (status = 400, description = "A query parameter that does not parse", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing ADMIN_CONSOLE", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "An invalid schedule or time zone (each named in `errors`, saying why)", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn preview(
    State(state): State<AppState>,
    principal: Principal,
    mut params: QueryParams,
) -> Result<axum::Json<PreviewAnswer>, ApiError> {
    principal.require_read()?;
    let raw_schedule = params.get::<String>("schedule");
    let raw_zone = params.get::<String>("timezone");
    let count = params
        .get_with("count", |raw| {
            parse_in_range(raw, 1, timing::MAX_PREVIEW as u64)
        })
        .map_or(5, |n| n as usize);
    params.finish()?;
    let raw_schedule = raw_schedule
        .ok_or_else(|| ApiError::InvalidQuery(vec![FieldError::new("schedule", "is required")]))?;
    let (schedule, zone) = timing_of(&raw_schedule, raw_zone.as_deref())?;
    let runs = timing::preview(&schedule, zone, state.delivery.clock.now(), count)
        .map_err(|err| ApiError::InvalidQuery(vec![FieldError::new("count", err.to_string())]))?;
    Ok(axum::Json(PreviewAnswer {
        schedule: schedule.as_str().to_owned(),
        timezone: zone.as_str().to_owned(),
        runs,
    }))
}

/// `GET /v1/impact-in/schedules/stats`: seed 004's `getSchedulerStats`.
#[utoipa::path(
    get,
    path = "/v1/impact-in/schedules/stats",
    operation_id = "schedule_stats",
    tag = "schedules",
    summary = "Schedules at a glance",
    params(("companyId" = Option<uuid::Uuid>, Query, description = "One of the caller's companies (all of them by default)")),
    responses(
        (status = 200, description = "Counts and the latest firings", body = schedule::SchedulerStats),
        (status = 400, description = "A query parameter that does not parse", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing ADMIN_CONSOLE, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn stats(
    State(state): State<AppState>,
    principal: Principal,
    mut params: QueryParams,
) -> Result<axum::Json<schedule::SchedulerStats>, ApiError> {
    principal.require_read()?;
    let company = params.get::<CompanyId>("companyId");
    params.finish()?;
    let scope = principal.scope(company)?;
    Ok(axum::Json(
        schedule::stats(&state.db, &scope, state.delivery.clock.now()).await?,
    ))
}
