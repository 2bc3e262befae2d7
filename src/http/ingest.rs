//! `/v1/ingest/*`: start runs (one stream, or all nine), follow them, and
//! read what was stored. Runs belong to `ingest::run`; this parses,
//! authorizes and shapes the answers of seed 002.

use std::collections::BTreeMap;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{
    date::{self, Day},
    error::ApiError,
    extract::QueryParams,
    paging::{Page, PageRequest, parse_in_range},
};
use crate::{
    app::AppState,
    auth::Principal,
    cursor::Cursor,
    ids::CompanyId,
    ingest::{
        IngestContext, health,
        run::{self, Started},
        store::{self, RecordFilter, Run, RunStatus, StoredRecord},
        stream::{EventType, Stream, System},
    },
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/ingest/all", post(ingest_all))
        .route("/v1/ingest/runs", get(list_runs))
        .route("/v1/ingest/runs/{id}", get(show_run))
        .route("/v1/ingest/records", get(list_records))
        .route("/v1/ingest/{system}/{kind}", post(ingest_one))
        .route("/integrations/health", get(integrations_health))
        .route("/integrations/health/{connector}", get(integration_health))
}

/// `GET /integrations/health`: each source system probed (at most every
/// 30 s) and its runs of the last 24 hours. No credentials needed: it holds
/// counts only.
#[utoipa::path(
    get,
    path = "/integrations/health",
    operation_id = "integrations_health",
    tag = "ingest",
    summary = "Every source system's health",
    responses(
        (status = 200, description = "Per source: probe, runs, status", body = health::Report),
        (status = 503, description = "Database unavailable, or ingest not configured", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
async fn integrations_health(
    State(state): State<AppState>,
) -> Result<Json<health::Report>, ApiError> {
    Ok(Json(health::report(ingest(&state)?).await?))
}

/// `GET /integrations/health/{connector}`: one source system.
#[utoipa::path(
    get,
    path = "/integrations/health/{connector}",
    operation_id = "integration_health",
    tag = "ingest",
    summary = "One source system's health",
    params(("connector" = String, Path, description = "benevity, goodera, workday, kintell, upskilling, buddy or mentorship")),
    responses(
        (status = 200, description = "Its probe, runs and status", body = health::SourceHealth),
        (status = 404, description = "No such source system", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable, or ingest not configured", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
async fn integration_health(
    State(state): State<AppState>,
    Path(connector): Path<String>,
) -> Result<Json<health::SourceHealth>, ApiError> {
    let not_found = || ApiError::RouteNotFound {
        method: axum::http::Method::GET,
        path: format!("/integrations/health/{connector}"),
    };
    let system: System = connector.parse().map_err(|_| not_found())?;
    let report = health::report(ingest(&state)?).await?;
    report
        .connectors
        .into_iter()
        .find(|c| c.name == system)
        .map(Json)
        .ok_or_else(not_found)
}

/// Records asked of the source per request, by default and at most.
const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 1000;

fn ingest(state: &AppState) -> Result<&IngestContext, ApiError> {
    state.ingest.as_ref().ok_or(ApiError::IngestNotConfigured)
}

/// What a run request asks: `company_id` (required), `since`, `limit` (the
/// page size asked of the source), `max_records` (a bound on the run).
struct RunParams {
    company: CompanyId,
    since: Option<DateTime<Utc>>,
    page_size: u32,
    max_records: Option<u32>,
}

fn run_params(principal: &Principal, mut params: QueryParams) -> Result<RunParams, ApiError> {
    principal.require_write()?;
    // seed 002 spells it company_id; the rest of the API companyId.
    let company = params
        .get::<CompanyId>("company_id")
        .or_else(|| params.get::<CompanyId>("companyId"));
    let since = params.get_with("since", |raw| date::parse(raw, Day::Start));
    let page_size = params
        .get_with("limit", |raw| {
            parse_in_range(raw, 1, u64::from(MAX_PAGE_SIZE))
        })
        .map_or(DEFAULT_PAGE_SIZE, |n| n as u32);
    let max_records = params
        .get_with("max_records", |raw| parse_in_range(raw, 1, 10_000_000))
        .map(|n| n as u32);
    params.finish()?;
    let company = company.ok_or_else(|| {
        ApiError::InvalidQuery(vec![super::error::FieldError::new(
            "company_id",
            "is required",
        )])
    })?;
    principal.scope(Some(company))?;
    Ok(RunParams {
        company,
        since,
        page_size,
        max_records,
    })
}

/// `POST /v1/ingest/{system}/{kind}`: runs one stream for a company. 200
/// with the summary when the run ends within `INGEST_SYNC_WAIT_SECS`, else
/// 202 with the run and a `Location` to poll. A run already going for that
/// company and stream is answered instead of starting another.
#[utoipa::path(
    post,
    path = "/v1/ingest/{system}/{kind}",
    operation_id = "ingest_stream",
    tag = "ingest",
    summary = "Pull one stream for a company",
    params(
        ("system" = String, Path, description = "benevity, goodera, workday, kintell, upskilling, buddy or mentorship"),
        ("kind" = String, Path, description = "volunteers, donations, directory, enrollments, data or placements (as the stream has it)"),
        ("company_id" = uuid::Uuid, Query, description = "The company (companyId is accepted too)"),
        ("since" = Option<crate::http::date::DateOrTimestamp>, Query, description = "Records updated at or after this, instead of the saved cursor"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Records asked of the source per request (100); the run pages through everything new"),
        ("max_records" = Option<u32>, Query, minimum = 1, maximum = 10000000, description = "Stop the run after this many records (it ends succeeded with hasMore)"),
    ),
    responses(
        (status = 200, description = "The run ended", body = RunAnswer),
        (status = 202, description = "Still running: poll Location", body = RunAnswer),
        (status = 400, description = "A query parameter that does not parse (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing MANAGE_INTEGRATIONS, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such stream", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable, or ingest not configured", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn ingest_one(
    State(state): State<AppState>,
    Path((system, kind)): Path<(String, String)>,
    principal: Principal,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let stream = Stream::from_route(&system, &kind).ok_or_else(|| ApiError::RouteNotFound {
        method: axum::http::Method::POST,
        path: format!("/v1/ingest/{system}/{kind}"),
    })?;
    let params = run_params(&principal, params)?;
    let ctx = ingest(&state)?;
    let run = start_and_wait(ctx, stream, &params).await?;
    let status = if run.status == RunStatus::Running {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let location = format!("/v1/ingest/runs/{}", run.id);
    Ok((
        status,
        [(header::LOCATION, location)],
        Json(RunAnswer::from(run)),
    )
        .into_response())
}

async fn start_and_wait(
    ctx: &IngestContext,
    stream: Stream,
    params: &RunParams,
) -> Result<Run, ApiError> {
    let started = run::start(
        ctx,
        params.company,
        stream,
        params.since,
        params.page_size,
        params.max_records,
    )
    .await?;
    if let Started::Running(run) = &started {
        tracing::info!(run = %run.id, %stream, "a run of this stream is already going; answering it");
    }
    Ok(run::wait_for(ctx, started.run(), ctx.config.sync_wait).await?)
}

/// `POST /v1/ingest/all`: every stream, run concurrently (at most
/// `INGEST_CONCURRENCY` at once in this process).
#[utoipa::path(
    post,
    path = "/v1/ingest/all",
    operation_id = "ingest_all",
    tag = "ingest",
    summary = "Pull all nine streams for a company",
    params(
        ("company_id" = uuid::Uuid, Query, description = "The company (companyId is accepted too)"),
        ("since" = Option<crate::http::date::DateOrTimestamp>, Query, description = "Records updated at or after this, instead of each saved cursor"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Records asked of a source per request (100)"),
        ("max_records" = Option<u32>, Query, minimum = 1, maximum = 10000000, description = "Stop each run after this many records"),
    ),
    responses(
        (status = 200, description = "Each stream's run, ended or still going", body = AllAnswer),
        (status = 400, description = "A query parameter that does not parse (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing MANAGE_INTEGRATIONS, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable, or ingest not configured", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn ingest_all(
    State(state): State<AppState>,
    principal: Principal,
    params: QueryParams,
) -> Result<Json<AllAnswer>, ApiError> {
    let params = run_params(&principal, params)?;
    let ctx = ingest(&state)?;
    let outcomes = futures::future::join_all(Stream::ALL.map(|stream| {
        let params = &params;
        async move { (stream, start_and_wait(ctx, stream, params).await) }
    }))
    .await;
    let mut results = Vec::with_capacity(outcomes.len());
    for (stream, outcome) in outcomes {
        results.push(match outcome {
            Ok(run) => {
                let settled = match run.status {
                    RunStatus::Running | RunStatus::Succeeded => Settled::Fulfilled,
                    RunStatus::Partial | RunStatus::Failed => Settled::Rejected,
                };
                StreamResult {
                    connector: stream,
                    status: settled,
                    data: Some(RunAnswer::from(run)),
                    reason: None,
                }
            }
            // One stream's database error does not hide the others.
            Err(err) => StreamResult {
                connector: stream,
                status: Settled::Rejected,
                data: None,
                reason: Some(err.to_string()),
            },
        });
    }
    let failed = results
        .iter()
        .filter(|r| r.status == Settled::Rejected)
        .count();
    Ok(Json(AllAnswer {
        success: failed == 0,
        summary: AllSummary {
            total: results.len(),
            successful: results.len() - failed,
            failed,
        },
        results,
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum Settled {
    Fulfilled,
    Rejected,
}

#[derive(Serialize, utoipa::ToSchema)]
struct StreamResult {
    connector: Stream,
    status: Settled,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<RunAnswer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct AllSummary {
    total: usize,
    successful: usize,
    failed: usize,
}

#[derive(Serialize, utoipa::ToSchema)]
struct AllAnswer {
    success: bool,
    summary: AllSummary,
    results: Vec<StreamResult>,
}

/// A run in seed 002's shape, with its id and state.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunAnswer {
    /// The run reached the end of what was new.
    success: bool,
    run_id: Uuid,
    connector: Stream,
    company_id: CompanyId,
    status: RunStatus,
    /// Records stored, under the name seed 002 gives them.
    summary: BTreeMap<&'static str, i64>,
    metadata: RunMetadata,
    /// Records refused (position and field, never a value) and what
    /// stopped the run.
    #[schema(value_type = Vec<Object>)]
    errors: serde_json::Value,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct RunMetadata {
    total_records: i64,
    records_processed: i64,
    records_failed: i64,
    /// The newest source time stored by this run.
    last_sync_timestamp: Option<DateTime<Utc>>,
    /// More is waiting at the source (the run was bounded, or stopped).
    has_more: bool,
    pages: i32,
    since: Option<DateTime<Utc>>,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<Run> for RunAnswer {
    fn from(run: Run) -> Self {
        let noun = match run.stream.event_type() {
            EventType::VolunteerLogged => "volunteers",
            EventType::DonationMade => "donations",
            EventType::DirectorySynced => "directoryEntries",
            EventType::EnrollmentCreated => "enrollments",
            EventType::PlacementCreated => "placements",
        };
        RunAnswer {
            success: run.status == RunStatus::Succeeded,
            run_id: run.id,
            connector: run.stream,
            company_id: run.company_id,
            status: run.status,
            summary: BTreeMap::from([(noun, run.records_processed)]),
            metadata: RunMetadata {
                total_records: run.records_total,
                records_processed: run.records_processed,
                records_failed: run.records_failed,
                last_sync_timestamp: run.last_source_time,
                has_more: run.has_more,
                pages: run.pages,
                since: run.since,
                started_at: run.started_at,
                finished_at: run.finished_at,
            },
            errors: run.errors,
        }
    }
}

/// `GET /v1/ingest/runs/{id}`.
#[utoipa::path(
    get,
    path = "/v1/ingest/runs/{id}",
    operation_id = "show_ingest_run",
    tag = "ingest",
    summary = "One ingest run",
    params(("id" = String, Path, description = "The run id")),
    responses(
        (status = 200, description = "The run", body = RunAnswer),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing role", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run among the caller's companies", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable, or ingest not configured", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn show_run(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<RunAnswer>, ApiError> {
    principal.require_read()?;
    let ctx = ingest(&state)?;
    let not_found = || ApiError::IngestRunNotFound(id.clone());
    let run_id: Uuid = id.parse().map_err(|_| not_found())?;
    let run = store::find_run(ctx.db(), &principal.scope(None)?, run_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(run.into()))
}

/// `GET /v1/ingest/runs`: newest first.
#[utoipa::path(
    get,
    path = "/v1/ingest/runs",
    operation_id = "list_ingest_runs",
    tag = "ingest",
    summary = "Ingest runs, newest first",
    params(
        ("companyId" = Option<uuid::Uuid>, Query, description = "One of the caller's companies"),
        ("stream" = Option<Stream>, Query, description = "Only this stream"),
        ("page" = Option<u64>, Query, minimum = 1, maximum = 100000, description = "Page number, 1 to 100000"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100 (20)"),
        ("cursor" = Option<String>, Query, pattern = "^-?[0-9]{1,16}_[0-9a-f]{32}$", description = "nextCursor of a previous page"),
    ),
    responses(
        (status = 200, description = "A page of runs", body = crate::http::paging::Page<RunAnswer>),
        (status = 400, description = "A query parameter that does not parse (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing role, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable, or ingest not configured", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn list_runs(
    State(state): State<AppState>,
    principal: Principal,
    mut params: QueryParams,
) -> Result<Json<Page<RunAnswer>>, ApiError> {
    principal.require_read()?;
    let company = params.get::<CompanyId>("companyId");
    let stream = params.get::<Stream>("stream");
    let request = PageRequest::read(&mut params);
    params.finish()?;
    let ctx = ingest(&state)?;
    let page = store::list_runs(
        ctx.db(),
        &principal.scope(company)?,
        stream,
        request.limit,
        request.start,
    )
    .await?;
    Ok(Json(request.answer(
        page.rows.into_iter().map(RunAnswer::from).collect(),
        None,
        page.next,
    )))
}

/// A stored record: its event (personal data redacted) and where it came
/// from.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct RecordView {
    id: Uuid,
    company_id: CompanyId,
    stream: Stream,
    #[serde(rename = "type")]
    event_type: EventType,
    source_id: String,
    source_updated_at: DateTime<Utc>,
    stored_at: DateTime<Utc>,
    /// The seed's BaseEvent: id, version, type, timestamp, correlationId
    /// (the run), causationId, metadata, data.
    #[schema(value_type = Object)]
    event: serde_json::Value,
}

impl From<StoredRecord> for RecordView {
    fn from(r: StoredRecord) -> Self {
        Self {
            id: r.id,
            company_id: r.company_id,
            stream: r.stream,
            event_type: r.event_type,
            source_id: r.source_id,
            source_updated_at: r.source_updated_at,
            stored_at: r.stored_at,
            event: r.data,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct RecordPage {
    data: Vec<RecordView>,
    /// Continues after this page; null on the last one. Kept, it also
    /// picks up what is stored later.
    next_cursor: Option<String>,
}

/// `GET /v1/ingest/records`: in the order stored (oldest first), by cursor.
#[utoipa::path(
    get,
    path = "/v1/ingest/records",
    operation_id = "list_ingest_records",
    tag = "ingest",
    summary = "Stored records, oldest first",
    params(
        ("companyId" = Option<uuid::Uuid>, Query, description = "One of the caller's companies"),
        ("type" = Option<EventType>, Query, description = "Only this event type"),
        ("since" = Option<crate::http::date::DateOrTimestamp>, Query, description = "Stored or changed at or after"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, 1 to 1000 (100)"),
        ("cursor" = Option<String>, Query, pattern = "^-?[0-9]{1,16}_[0-9a-f]{32}$", description = "nextCursor of a previous page"),
    ),
    responses(
        (status = 200, description = "A page of records", body = RecordPage),
        (status = 400, description = "A query parameter that does not parse (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing role, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable, or ingest not configured", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn list_records(
    State(state): State<AppState>,
    principal: Principal,
    mut params: QueryParams,
) -> Result<Json<RecordPage>, ApiError> {
    principal.require_read()?;
    let company = params.get::<CompanyId>("companyId");
    let event_type = params.get::<EventType>("type");
    let since = params.get_with("since", |raw| date::parse(raw, Day::Start));
    let limit = params
        .get_with("limit", |raw| {
            parse_in_range(raw, 1, u64::from(MAX_PAGE_SIZE))
        })
        .map_or(DEFAULT_PAGE_SIZE, |n| n as u32);
    let after = params.get::<Cursor>("cursor");
    params.finish()?;
    let ctx = ingest(&state)?;
    let filter = RecordFilter {
        scope: principal.scope(company)?,
        event_type,
        since,
    };
    let page = store::list_records(ctx.db(), &filter, limit, after).await?;
    Ok(Json(RecordPage {
        data: page.rows.into_iter().map(RecordView::from).collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}
