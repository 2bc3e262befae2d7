//! The impact platform's metrics endpoint (docs/connectors.md, "Impact
//! metrics (pull)") under `/impact-platform`, where the sandbox's
//! `IMPACT_METRICS_URL` points. Every company has metrics for every
//! period, derived from both, so a test knows what a report must carry
//! ([`values`]); a 404 or an outage is injected with the faults of
//! `"service": "impact-metrics"`.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::NaiveDate;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    api::{self, error},
    config::secret_eq,
    credentials,
    state::{SandboxState, Target, TokenProblem},
};

pub(crate) fn routes() -> Router<Arc<SandboxState>> {
    Router::new().route("/impact-platform/v1/impact-metrics", get(metrics))
}

async fn metrics(
    State(state): State<Arc<SandboxState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(injected) = api::intercept(&state, Target::ImpactMetrics).await {
        return injected;
    }
    answer(&headers, query).unwrap_or_else(|refused| refused)
}

fn answer(headers: &HeaderMap, query: Option<String>) -> Result<Response, Response> {
    let key = api::bearer(headers)
        .ok_or_else(|| api::unauthenticated("a bearer token (the internal API key) is required"))?;
    if !secret_eq(credentials::INTERNAL_API_KEY, key) {
        return Err(api::invalid_token(TokenProblem::Unknown));
    }
    let query = query.unwrap_or_default();
    let params: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
    let company = params
        .get("companyId")
        .and_then(|id| id.parse::<Uuid>().ok())
        .ok_or_else(|| bad_request("companyId must be a UUID"))?;
    let date = |name: &str| {
        params
            .get(name)
            .and_then(|day| NaiveDate::parse_from_str(day, "%Y-%m-%d").ok())
            .ok_or_else(|| bad_request(format!("{name} must be a date, YYYY-MM-DD")))
    };
    let (start, end) = (date("start")?, date("end")?);
    if end < start {
        return Err(bad_request("end must not be before start"));
    }
    Ok(Json(values(company, start, end)).into_response())
}

/// The metrics the sandbox answers for `company` and the period from
/// `start` to `end` (inclusive): the same for the same three, different
/// for another company or period. Hundredths (scores, SROI) and tenths
/// (VIS), so the JSON numbers read back exactly.
pub fn values(company: Uuid, start: NaiveDate, end: NaiveDate) -> Value {
    let digest = Sha256::digest(format!("{company}/{start}/{end}").as_bytes());
    let part = |i: usize| u32::from(u16::from_be_bytes([digest[2 * i], digest[2 * i + 1]]));
    let hundredths = |i: usize, of: u32| f64::from(part(i) % of) / 100.0;
    json!({
        "outcomeScores": {
            "belonging": hundredths(0, 101),
            "confidence": hundredths(1, 101),
            "skills": hundredths(2, 101),
        },
        "sroiRatio": hundredths(3, 1000),
        "visScore": f64::from(part(4) % 1001) / 10.0,
    })
}

fn bad_request(description: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request", description)
}
