//! The event bus's routes: a company's delivery rules (which providers its
//! ready reports go to automatically) and the report-ready messages the
//! bus rejected. The bus itself is `crate::bus`.

use std::collections::BTreeSet;

use axum::{Router, extract::State, routing::get};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    error::{ApiError, FieldError},
    extract::{Json, QueryParams},
    paging::{Page, PageRequest},
};
use crate::{
    app::AppState,
    auth::Principal,
    bus::{
        rejected::{self, Rejected},
        rules::{self, Rules},
    },
    ids::CompanyId,
    provider::Provider,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/impact-in/delivery-rules",
            get(show_rules).put(put_rules),
        )
        .route("/v1/impact-in/bus/rejected", get(list_rejected))
}

/// A company's delivery rules.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutRules {
    company_id: CompanyId,
    /// The providers that get the company's ready reports automatically;
    /// empty: none. Each at most once: a list naming one twice is refused
    /// rather than read as something the caller did not write.
    #[schema(value_type = BTreeSet<Provider>)]
    providers: Vec<Provider>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RulesView {
    company_id: CompanyId,
    /// In name order; empty when none are set.
    providers: Vec<Provider>,
    /// When they were last set; null: never.
    updated_at: Option<DateTime<Utc>>,
}

impl From<Rules> for RulesView {
    fn from(rules: Rules) -> Self {
        Self {
            company_id: rules.company_id,
            providers: rules.providers.into_iter().collect(),
            updated_at: rules.updated_at,
        }
    }
}

/// `GET /v1/impact-in/delivery-rules?companyId=…`.
#[utoipa::path(
    get,
    path = "/v1/impact-in/delivery-rules",
    operation_id = "show_delivery_rules",
    tag = "bus",
    summary = "A company's delivery rules",
    params(("companyId" = uuid::Uuid, Query, description = "One of the caller's companies (required, even of an ops key)")),
    responses(
        (status = 200, description = "The rules (an empty list when none are set)", body = RulesView),
        (status = 400, description = "companyId missing or not a UUID", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing ADMIN_CONSOLE, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn show_rules(
    State(state): State<AppState>,
    principal: Principal,
    mut params: QueryParams,
) -> Result<axum::Json<RulesView>, ApiError> {
    principal.require_read()?;
    let company = params.get::<CompanyId>("companyId");
    params.finish()?;
    let company = company
        .ok_or_else(|| ApiError::InvalidQuery(vec![FieldError::new("companyId", "is required")]))?;
    principal.scope(Some(company))?;
    Ok(axum::Json(rules::get(&state.db, company).await?.into()))
}

/// `PUT /v1/impact-in/delivery-rules`: replaces a company's rules.
#[utoipa::path(
    put,
    path = "/v1/impact-in/delivery-rules",
    operation_id = "put_delivery_rules",
    tag = "bus",
    summary = "Set a company's delivery rules",
    request_body = PutRules,
    responses(
        (status = 200, description = "The rules now in force", body = RulesView),
        (status = 400, description = "Malformed JSON", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A body not of this shape: a field missing or mistyped, an unknown provider, a provider named twice (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing ADMIN_CONSOLE or MANAGE_INTEGRATIONS, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn put_rules(
    State(state): State<AppState>,
    principal: Principal,
    // A Result so that a caller without the role hears 403 first.
    body: Result<Json<PutRules>, ApiError>,
) -> Result<axum::Json<RulesView>, ApiError> {
    principal.require_write()?;
    let Json(body) = body?;
    principal.scope(Some(body.company_id))?;
    let providers: BTreeSet<Provider> = body.providers.iter().copied().collect();
    if providers.len() != body.providers.len() {
        return Err(ApiError::Validation(vec![FieldError::new(
            "providers",
            "names a provider more than once",
        )]));
    }
    let rules = rules::put(&state.db, body.company_id, &providers).await?;
    tracing::info!(company = %body.company_id, providers = ?providers, by = %principal.log_label(), "delivery rules set");
    Ok(axum::Json(rules.into()))
}

/// A report-ready message the bus terminated, without its body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RejectedView {
    id: Uuid,
    /// The stream and sequence where the message can still be read (while
    /// the stream's limits keep it).
    stream: String,
    stream_sequence: i64,
    subject: String,
    /// Null when the message did not carry one that could be read.
    event_id: Option<Uuid>,
    company_id: Option<CompanyId>,
    /// `not_json`, `invalid_event`, `invalid_report`, `no_rules`,
    /// `no_provider` or `event_id_reused`.
    #[schema(example = "invalid_report")]
    reason_code: String,
    reason: String,
    rejected_at: DateTime<Utc>,
}

impl From<Rejected> for RejectedView {
    fn from(r: Rejected) -> Self {
        Self {
            id: r.id,
            stream: r.stream,
            stream_sequence: r.stream_sequence,
            subject: r.subject,
            event_id: r.event_id,
            company_id: r.company_id,
            reason_code: r.reason_code,
            reason: r.reason,
            rejected_at: r.rejected_at,
        }
    }
}

/// `GET /v1/impact-in/bus/rejected`: rejected messages, newest first.
#[utoipa::path(
    get,
    path = "/v1/impact-in/bus/rejected",
    operation_id = "list_bus_rejected",
    tag = "bus",
    summary = "Report-ready messages the bus rejected",
    params(
        ("companyId" = Option<uuid::Uuid>, Query, description = "One of the caller's companies (all of them by default; messages of no known company only with an ops key)"),
        ("page" = Option<u64>, Query, minimum = 1, maximum = 100000),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, pattern = "^-?[0-9]{1,16}_[0-9a-f]{32}$", description = "nextCursor of a previous page"),
    ),
    responses(
        (status = 200, description = "A page of rejected messages (`total` null)", body = inline(Page<RejectedView>)),
        (status = 400, description = "A query parameter that does not parse (each named in `errors`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing ADMIN_CONSOLE, or a company outside the token's", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = crate::http::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("opsKey" = [])),
)]
async fn list_rejected(
    State(state): State<AppState>,
    principal: Principal,
    mut params: QueryParams,
) -> Result<axum::Json<Page<RejectedView>>, ApiError> {
    principal.require_read()?;
    let company = params.get::<CompanyId>("companyId");
    let page = PageRequest::read(&mut params);
    params.finish()?;
    let scope = principal.scope(company)?;
    let found = rejected::list(&state.db, &scope, page.limit, page.start).await?;
    Ok(axum::Json(page.answer(
        found.rows.into_iter().map(RejectedView::from).collect(),
        None,
        found.next,
    )))
}
