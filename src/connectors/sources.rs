//! Ingest sources: one page of records at a time from the seven source
//! systems, to the contract of docs/connectors.md ("Ingest sources"). They
//! share the connectors' outbound client, OAuth token sources and Goodera's
//! rate gate, and classify failures into the same [`ConnectorError`]s.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;

use super::{
    ConnectorError,
    goodera::call_within_budget,
    http::{Outbound, Reply},
    oauth::ApiAuth,
    rate::RateGate,
};
use crate::{clock::SharedClock, ingest::stream::Stream};

/// Where a page starts: records updated at or after `since` (all when
/// `None`), from `position`, the source's opaque position after the
/// previous page of the same run (`None`: the first page).
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub since: Option<DateTime<Utc>>,
    pub position: Option<String>,
    pub limit: u32,
}

/// A page of raw records, in ascending source-time order, and where the
/// next page starts; `None` at the end.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<serde_json::Value>,
    pub next: Option<String>,
}

/// One source system's records.
#[async_trait]
pub trait Source: Send + Sync {
    async fn page(&self, stream: Stream, request: &PageRequest) -> Result<Page, ConnectorError>;
}

/// RFC 3339 with milliseconds, as the sources expect.
fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A reply that should be JSON of type `T`; anything else is a permanent
/// error naming what did not read (never the body: it holds personal data).
fn read<T: for<'de> Deserialize<'de>>(reply: &Reply) -> Result<T, ConnectorError> {
    serde_json::from_slice(&reply.body).map_err(|err| ConnectorError::Permanent {
        message: format!(
            "the source's answer is not the documented page (line {}, column {})",
            err.line(),
            err.column()
        ),
        status: Some(reply.status.as_u16()),
        details: Vec::new(),
        excerpt: None,
    })
}

/// The `{data, nextCursor}` page of Benevity and the internal services.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CursorPage {
    data: Vec<serde_json::Value>,
    next_cursor: Option<String>,
}

/// Benevity's `updatedSince` + `cursor` paging under OAuth2, and the
/// internal services' `since` + `cursor` paging under the internal key.
#[derive(Debug)]
pub struct CursorSource {
    /// Up to the collection's parent: `…/v2/tenants/{tenant}` or the
    /// service's base URL.
    base: String,
    since_param: &'static str,
    auth: ApiAuth,
    outbound: Outbound,
}

impl CursorSource {
    pub fn benevity(api_url: &url::Url, tenant: &str, auth: ApiAuth, outbound: Outbound) -> Self {
        Self {
            base: format!(
                "{}/v2/tenants/{tenant}",
                api_url.as_str().trim_end_matches('/')
            ),
            since_param: "updatedSince",
            auth,
            outbound,
        }
    }

    pub fn internal(base_url: &url::Url, auth: ApiAuth, outbound: Outbound) -> Self {
        Self {
            base: base_url.as_str().trim_end_matches('/').to_owned(),
            since_param: "since",
            auth,
            outbound,
        }
    }

    fn collection(stream: Stream) -> Result<&'static str, ConnectorError> {
        Ok(match stream {
            Stream::BenevityVolunteers => "/volunteer-records",
            Stream::BenevityDonations => "/donation-records",
            Stream::KintellEnrollments | Stream::UpskillingEnrollments => "/v1/enrollments",
            Stream::BuddyData => "/v1/check-ins",
            Stream::MentorshipPlacements => "/v1/placements",
            // `ConnectorRegistry::source` builds this source for the
            // streams above only.
            Stream::GooderaVolunteers | Stream::GooderaDonations | Stream::WorkdayDirectory => {
                return Err(ConnectorError::Unsendable {
                    message: format!("{stream} is not a cursor stream"),
                });
            }
        })
    }
}

#[async_trait]
impl Source for CursorSource {
    async fn page(&self, stream: Stream, request: &PageRequest) -> Result<Page, ConnectorError> {
        let mut query: Vec<(&str, String)> = vec![("limit", request.limit.to_string())];
        if let Some(since) = request.since {
            query.push((self.since_param, timestamp(since)));
        }
        if let Some(cursor) = &request.position {
            query.push(("cursor", cursor.clone()));
        }
        let url = format!("{}{}", self.base, Self::collection(stream)?);
        let reply = self
            .auth
            .send(
                &self.outbound,
                self.outbound.client().get(url).query(&query),
            )
            .await?;
        let page: CursorPage = read(&reply)?;
        Ok(Page {
            // A cursor with no records behind it is the end as well.
            next: page.next_cursor.filter(|_| !page.data.is_empty()),
            records: page.data,
        })
    }
}

/// Goodera's `page`/`pageSize` under a fixed `since`, within the API key's
/// per-minute budget (shared with deliveries on that key).
#[derive(Debug)]
pub struct GooderaSource {
    base: String,
    auth: ApiAuth,
    outbound: Outbound,
    gate: Arc<RateGate>,
    clock: SharedClock,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GooderaPage {
    items: Vec<serde_json::Value>,
    page: u32,
    has_more: bool,
}

impl GooderaSource {
    pub fn new(
        api_url: &url::Url,
        project: &str,
        auth: ApiAuth,
        outbound: Outbound,
        gate: Arc<RateGate>,
        clock: SharedClock,
    ) -> Self {
        Self {
            base: format!(
                "{}/v1/projects/{project}",
                api_url.as_str().trim_end_matches('/')
            ),
            auth,
            outbound,
            gate,
            clock,
        }
    }
}

#[async_trait]
impl Source for GooderaSource {
    async fn page(&self, stream: Stream, request: &PageRequest) -> Result<Page, ConnectorError> {
        let collection = match stream {
            Stream::GooderaDonations => "donations",
            _ => "volunteers",
        };
        let page: u32 = match &request.position {
            None => 1,
            Some(position) => position.parse().map_err(|_| ConnectorError::Unsendable {
                message: "a Goodera position is a page number".into(),
            })?,
        };
        let mut query: Vec<(&str, String)> = vec![
            ("page", page.to_string()),
            ("pageSize", request.limit.to_string()),
        ];
        if let Some(since) = request.since {
            query.push(("since", timestamp(since)));
        }
        let url = format!("{}/{collection}", self.base);
        let reply = call_within_budget(
            &self.gate,
            &self.clock,
            &self.auth,
            &self.outbound,
            self.outbound.client().get(url).query(&query),
        )
        .await?;
        let answer: GooderaPage = read(&reply)?;
        Ok(Page {
            next: (answer.has_more && !answer.items.is_empty())
                .then(|| (answer.page + 1).to_string()),
            records: answer.items,
        })
    }
}

/// Workday's directory over SCIM 2.0 (RFC 7644): a filter on
/// `meta.lastModified`, sorted ascending, paged by `startIndex`. SCIM has no
/// snapshot, so an empty page ends the run, not `totalResults`.
#[derive(Debug)]
pub struct ScimSource {
    users: String,
    auth: ApiAuth,
    outbound: Outbound,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse {
    #[serde(rename = "Resources", default)]
    resources: Vec<serde_json::Value>,
    start_index: Option<u64>,
}

impl ScimSource {
    pub fn new(api_url: &url::Url, tenant: &str, auth: ApiAuth, outbound: Outbound) -> Self {
        Self {
            users: format!(
                "{}/ccx/scim/v2/{tenant}/Users",
                api_url.as_str().trim_end_matches('/')
            ),
            auth,
            outbound,
        }
    }
}

#[async_trait]
impl Source for ScimSource {
    async fn page(&self, _stream: Stream, request: &PageRequest) -> Result<Page, ConnectorError> {
        let start: u64 = match &request.position {
            None => 1,
            Some(position) => position.parse().map_err(|_| ConnectorError::Unsendable {
                message: "a SCIM position is a startIndex".into(),
            })?,
        };
        let mut query: Vec<(&str, String)> = vec![
            ("sortBy", "meta.lastModified".into()),
            ("sortOrder", "ascending".into()),
            ("startIndex", start.to_string()),
            ("count", request.limit.to_string()),
        ];
        if let Some(since) = request.since {
            // `ge`: a user sharing the cursor's time comes again rather than
            // being missed; the upsert absorbs it.
            query.push((
                "filter",
                format!("meta.lastModified ge \"{}\"", timestamp(since)),
            ));
        }
        let reply = self
            .auth
            .send(
                &self.outbound,
                self.outbound.client().get(&self.users).query(&query),
            )
            .await?;
        let list: ListResponse = read(&reply)?;
        let start = list.start_index.unwrap_or(start);
        let next =
            (!list.resources.is_empty()).then(|| (start + list.resources.len() as u64).to_string());
        Ok(Page {
            records: list.resources,
            next,
        })
    }
}
