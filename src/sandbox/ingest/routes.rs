//! The nine pull routes of `docs/connectors.md`. Each takes the injected
//! faults and latency of its stream, authenticates like its platform, reads
//! its paging parameters into a [`Window`] and answers the page in its
//! platform's envelope: Benevity's and the internal services' cursors,
//! Goodera's page numbers, SCIM's `startIndex`.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
    routing::{MethodRouter, get},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, FixedOffset};
use serde_json::{Value, json};

use super::{Page, Position, Stream, Window, dataset::Entry, generate};
use crate::{
    provider::Provider,
    sandbox::{
        api::{self, error},
        config::secret_eq,
        credentials, goodera,
        state::{SandboxState, TokenProblem},
        workday,
    },
};

const DEFAULT_PAGE_SIZE: u64 = 100;
/// Larger pages are cut to this, as the contract allows.
const MAX_PAGE_SIZE: u64 = 1000;
const SCIM_LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const SCIM_ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const SCIM_JSON: &str = "application/scim+json";

type Route = MethodRouter<Arc<SandboxState>>;

pub(crate) fn routes() -> Router<Arc<SandboxState>> {
    Router::new()
        .route(
            "/v2/tenants/{tenant}/volunteer-records",
            benevity(Stream::BenevityVolunteers),
        )
        .route(
            "/v2/tenants/{tenant}/donation-records",
            benevity(Stream::BenevityDonations),
        )
        .route(
            "/v1/projects/{project}/volunteers",
            goodera(Stream::GooderaVolunteers),
        )
        .route(
            "/v1/projects/{project}/donations",
            goodera(Stream::GooderaDonations),
        )
        .route("/ccx/scim/v2/{tenant}/Users", get(workday_directory))
        .route(
            "/kintell/v1/enrollments",
            internal(Stream::KintellEnrollments),
        )
        .route(
            "/upskilling/v1/enrollments",
            internal(Stream::UpskillingEnrollments),
        )
        .route("/buddy/v1/check-ins", internal(Stream::BuddyData))
        .route(
            "/mentorship/v1/placements",
            internal(Stream::MentorshipPlacements),
        )
}

/// What every pull shares: the stream's fault or latency first, then
/// `serve`.
async fn pull(
    state: &SandboxState,
    stream: Stream,
    serve: impl FnOnce() -> Result<Response, Response>,
) -> Response {
    match api::intercept(state, stream).await {
        Some(injected) => injected,
        None => serve().unwrap_or_else(|refused| refused),
    }
}

/// A tenant's records, for a bearer token from Benevity's token endpoint.
fn benevity(stream: Stream) -> Route {
    get(
        move |State(state): State<Arc<SandboxState>>,
              Path(tenant): Path<String>,
              headers: HeaderMap,
              RawQuery(query): RawQuery| async move {
            pull(&state, stream, || {
                if tenant != credentials::BENEVITY_TENANT_ID {
                    return Err(not_found("unknown Benevity tenant"));
                }
                let token = api::bearer(&headers)
                    .ok_or_else(|| api::unauthenticated("a bearer token is required"))?;
                state
                    .check_token(Provider::Benevity, None, token)
                    .map_err(api::invalid_token)?;
                cursor_page(&state, stream, &Params::parse(query), "updatedSince")
            })
            .await
        },
    )
}

/// A project's records, for an API key, within the requests per minute
/// the key also spends on deliveries.
fn goodera(stream: Stream) -> Route {
    get(
        move |State(state): State<Arc<SandboxState>>,
              Path(project): Path<String>,
              headers: HeaderMap,
              RawQuery(query): RawQuery| async move {
            pull(&state, stream, || {
                if project != credentials::GOODERA_PROJECT_ID {
                    return Err(not_found("unknown Goodera project"));
                }
                let client = goodera::api_key_client(&state, &headers, "an X-API-Key is required")?;
                Ok(goodera::rate_limited(&state, &client, || {
                    numbered_page(&state, stream, &Params::parse(query))
                        .unwrap_or_else(|refused| refused)
                }))
            })
            .await
        },
    )
}

/// The SCIM directory of a tenant, for a bearer token that tenant issued.
async fn workday_directory(
    State(state): State<Arc<SandboxState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    pull(&state, Stream::WorkdayDirectory, || {
        workday::authenticate_rest(&state, &tenant, &headers)?;
        scim_page(&state, &Params::parse(query))
    })
    .await
}

/// An internal service's records, for `INTERNAL_API_KEY` as bearer.
fn internal(stream: Stream) -> Route {
    get(
        move |State(state): State<Arc<SandboxState>>,
              headers: HeaderMap,
              RawQuery(query): RawQuery| async move {
            pull(&state, stream, || {
                let key = api::bearer(&headers).ok_or_else(|| {
                    api::unauthenticated("a bearer token (the internal API key) is required")
                })?;
                if !secret_eq(credentials::INTERNAL_API_KEY, key) {
                    return Err(api::invalid_token(TokenProblem::Unknown));
                }
                cursor_page(&state, stream, &Params::parse(query), "since")
            })
            .await
        },
    )
}

/// Benevity's and the internal services' paging: a time filter called
/// `since_name`, `limit`, and the cursor of the page before.
fn cursor_page(
    state: &SandboxState,
    stream: Stream,
    params: &Params,
    since_name: &str,
) -> Result<Response, Response> {
    let after = match params.get("cursor") {
        Some(cursor) => Some(
            read_cursor(cursor)
                .ok_or_else(|| bad_request("cursor is not one this source issued"))?,
        ),
        None => None,
    };
    let window = Window {
        since: params.since(since_name)?,
        after,
        skip: 0,
        take: params.page_size("limit")?,
    };
    let page = state.ingest_page(stream, &window);
    let next_cursor = page.entries.last().filter(|_| page.more).map(cursor);
    Ok(
        Json(json!({ "data": records(state, stream, &page), "nextCursor": next_cursor }))
            .into_response(),
    )
}

/// Goodera's paging: `page` (from 1) of `pageSize` records under a fixed
/// `since`.
fn numbered_page(
    state: &SandboxState,
    stream: Stream,
    params: &Params,
) -> Result<Response, Response> {
    let page_size = params.page_size("pageSize")?;
    let number = match params.integer("page").map_err(bad_request)? {
        None => 1,
        Some(number) if number >= 1 => number as u64,
        Some(_) => return Err(bad_request("page must be at least 1")),
    };
    let window = Window {
        since: params.since("since")?,
        after: None,
        skip: (number - 1).saturating_mul(page_size),
        take: page_size,
    };
    let page = state.ingest_page(stream, &window);
    Ok(Json(json!({
        "items": records(state, stream, &page),
        "page": number,
        "pageSize": page_size,
        "hasMore": page.more,
    }))
    .into_response())
}

/// SCIM's paging (RFC 7644 §3.4.2): `filter` on `meta.lastModified`,
/// `startIndex` from 1 and `count`, sorted by `meta.lastModified` only.
fn scim_page(state: &SandboxState, params: &Params) -> Result<Response, Response> {
    let since = match params.get("filter") {
        Some(filter) => {
            scim_filter(filter).map_err(|detail| scim_error("invalidFilter", detail))?
        }
        None => i64::MIN,
    };
    if params
        .get("sortBy")
        .is_some_and(|by| !by.eq_ignore_ascii_case("meta.lastModified"))
    {
        return Err(scim_error(
            "invalidValue",
            "sortBy: only meta.lastModified is supported".into(),
        ));
    }
    if params
        .get("sortOrder")
        .is_some_and(|order| order != "ascending")
    {
        return Err(scim_error(
            "invalidValue",
            "sortOrder: only ascending is supported".into(),
        ));
    }
    let integer = |name| {
        params
            .integer(name)
            .map_err(|detail| scim_error("invalidValue", detail))
    };
    // §3.4.2.4: a startIndex below 1 means 1, a negative count 0.
    let start_index = integer("startIndex")?.unwrap_or(1).max(1);
    let count = integer("count")?
        .map_or(DEFAULT_PAGE_SIZE, |count| count.max(0) as u64)
        .min(MAX_PAGE_SIZE);
    let page = state.ingest_page(
        Stream::WorkdayDirectory,
        &Window {
            since,
            after: None,
            skip: start_index as u64 - 1,
            take: count,
        },
    );
    let list = json!({
        "schemas": [SCIM_LIST],
        "totalResults": page.total,
        "startIndex": start_index,
        "itemsPerPage": page.entries.len(),
        "Resources": records(state, Stream::WorkdayDirectory, &page),
    });
    Ok(scim_json(StatusCode::OK, &list))
}

/// `meta.lastModified ge "<RFC 3339>"` or `gt`: the one filter the
/// directory stream needs; answers the first millisecond it admits.
fn scim_filter(filter: &str) -> Result<i64, String> {
    let unsupported = || {
        format!(
            "unsupported filter {filter:?}: only meta.lastModified ge|gt \"<RFC 3339 timestamp>\""
        )
    };
    let (attribute, rest) = filter
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(unsupported)?;
    let (operator, value) = rest
        .trim_start()
        .split_once(char::is_whitespace)
        .ok_or_else(unsupported)?;
    let inclusive = match operator.to_ascii_lowercase().as_str() {
        "ge" => true,
        "gt" => false,
        _ => return Err(unsupported()),
    };
    if !attribute.eq_ignore_ascii_case("meta.lastModified") {
        return Err(unsupported());
    }
    value
        .trim()
        .strip_prefix('"')
        .and_then(|value| value.strip_suffix('"'))
        .and_then(instant)
        .map(|at| first_millisecond(at, inclusive))
        .ok_or_else(unsupported)
}

fn instant(text: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(text).ok()
}

/// The first whole millisecond (since the epoch) at or after `at`
/// (inclusive), or after it: records carry whole milliseconds.
fn first_millisecond(at: DateTime<FixedOffset>, inclusive: bool) -> i64 {
    let floor = at.timestamp_millis();
    let whole = at.timestamp_subsec_nanos().is_multiple_of(1_000_000);
    if inclusive && whole { floor } else { floor + 1 }
}

/// Opaque to clients: `base64url("<updatedAt ms>.<index>")` of the last
/// record of the page. The next page starts after that position, wherever
/// records moved since.
fn cursor(entry: &Entry) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{}", entry.updated_at, entry.index))
}

fn read_cursor(cursor: &str) -> Option<Position> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (updated_at, index) = text.split_once('.')?;
    Some(Position {
        updated_at: updated_at.parse().ok()?,
        index: index.parse().ok()?,
    })
}

fn records(state: &SandboxState, stream: Stream, page: &Page) -> Vec<Value> {
    page.entries
        .iter()
        .map(|entry| generate::render(stream, entry, state.config.events_until_ms))
        .collect()
}

/// A request's query parameters; of a repeated one, the last counts.
struct Params(HashMap<String, String>);

impl Params {
    fn parse(query: Option<String>) -> Self {
        let query = query.unwrap_or_default();
        Self(
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `Err` says which parameter is not an integer.
    fn integer(&self, name: &str) -> Result<Option<i64>, String> {
        self.get(name)
            .map(|value| {
                value
                    .parse()
                    .map_err(|_| format!("{name} must be an integer"))
            })
            .transpose()
    }

    /// The first millisecond of an inclusive time filter; everything
    /// without one.
    fn since(&self, name: &str) -> Result<i64, Response> {
        match self.get(name) {
            None => Ok(i64::MIN),
            Some(value) => instant(value)
                .map(|at| first_millisecond(at, true))
                .ok_or_else(|| {
                    bad_request(format!(
                        "{name} must be an RFC 3339 timestamp such as 2026-01-15T09:30:00.000Z"
                    ))
                }),
        }
    }

    fn page_size(&self, name: &str) -> Result<u64, Response> {
        match self.integer(name).map_err(bad_request)? {
            None => Ok(DEFAULT_PAGE_SIZE),
            Some(size) if size >= 1 => Ok((size as u64).min(MAX_PAGE_SIZE)),
            Some(_) => Err(bad_request(format!("{name} must be at least 1"))),
        }
    }
}

fn bad_request(description: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn not_found(description: &str) -> Response {
    error(StatusCode::NOT_FOUND, "not_found", description)
}

/// RFC 7644 §3.12: `400` with a SCIM error body.
fn scim_error(scim_type: &str, detail: String) -> Response {
    tracing::debug!(scim_type, detail, "sandbox refused a SCIM request");
    let body = json!({
        "schemas": [SCIM_ERROR],
        "status": "400",
        "scimType": scim_type,
        "detail": detail,
    });
    scim_json(StatusCode::BAD_REQUEST, &body)
}

fn scim_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON))],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scim_filters_admit_ge_and_gt_on_last_modified_only() {
        let at = "2026-01-01T00:00:00.050Z";
        let millis = 1_767_225_600_050;
        assert_eq!(
            scim_filter(&format!(r#"meta.lastModified ge "{at}""#)),
            Ok(millis)
        );
        assert_eq!(
            scim_filter(&format!(r#"  META.LASTMODIFIED  GT  "{at}" "#)),
            Ok(millis + 1)
        );
        // A finer instant than records carry: ge starts at the next
        // millisecond, as gt does.
        let finer = r#"meta.lastModified ge "2026-01-01T01:00:00.0505+01:00""#;
        assert_eq!(scim_filter(finer), Ok(millis + 1));
        for refused in [
            "",
            "meta.lastModified",
            r#"meta.lastModified eq "2026-01-01T00:00:00Z""#,
            r#"meta.created ge "2026-01-01T00:00:00Z""#,
            "meta.lastModified ge 2026-01-01T00:00:00Z",
            r#"meta.lastModified ge "yesterday""#,
            r#"meta.lastModified ge "2026-01-01T00:00:00Z" and active eq true"#,
        ] {
            assert!(scim_filter(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn cursors_read_back_only_as_issued() {
        let entry = Entry {
            index: 42,
            revision: 0,
            updated_at: 1_767_225_600_041,
            malformed: false,
        };
        assert_eq!(
            read_cursor(&cursor(&entry)),
            Some(Position {
                updated_at: entry.updated_at,
                index: 42
            })
        );
        for refused in [
            "",
            "not base64!",
            &URL_SAFE_NO_PAD.encode("12"),
            &URL_SAFE_NO_PAD.encode("a.b"),
        ] {
            assert_eq!(read_cursor(refused), None, "{refused:?}");
        }
    }
}
