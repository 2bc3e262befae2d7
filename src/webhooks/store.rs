//! SQL for webhook events: record one and apply it to its delivery in one
//! statement, list them tenant-scoped, and read a delivery's events.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::event::InboundEvent;
use crate::{
    auth::CompanyScope,
    cursor::{Cursor, Start},
    delivery::{DeliveryStatus, ProviderStatus},
    ids::{CompanyId, RecordId},
    provider::Provider,
};

/// What became of an event this service had not seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type, serde::Serialize, strum::Display)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Outcome {
    /// It set the delivery's provider status (and maybe its status).
    Applied,
    /// The delivery already holds a newer provider status.
    Stale,
    /// No delivery of this provider (and route company) has that id.
    Unmatched,
    /// A type this service does not act on.
    Ignored,
}

/// The stored event and what it changed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Recorded {
    pub id: Uuid,
    pub outcome: Outcome,
    pub delivery_record_id: Option<RecordId>,
    pub company_id: Option<CompanyId>,
    pub status_before: Option<DeliveryStatus>,
    pub status_after: Option<DeliveryStatus>,
    pub payload_hash: Option<String>,
}

/// Stores `event` unless its id was already stored for this provider and
/// route (`None`: a repeat, nothing changed), and applies it to the
/// delivery it names, in one statement. The delivery row is locked while
/// the event is decided, so concurrent events for one delivery apply one
/// after the other, each against the state the previous one left.
///
/// A status is applied only if it is newer than the one held (later time,
/// or the same time and a later stage). Applied, `processed` turns a
/// `failed` delivery into `success` (it timed out on our side, but the
/// provider has it) and `rejected` turns a `success` into `failed`, with
/// `rejection` as its `lastError`.
pub async fn record(
    pool: &PgPool,
    provider: Provider,
    route_company: Option<CompanyId>,
    event: &InboundEvent,
    received_at: DateTime<Utc>,
    rejection: &str,
) -> Result<Option<Recorded>, sqlx::Error> {
    sqlx::query_as(
        "WITH target AS (
             SELECT id, company_id, status, payload_hash,
                    (provider_status_at IS NULL OR $8 > provider_status_at
                     OR ($8 = provider_status_at
                         AND $7 > CASE provider_status WHEN 'received' THEN 1
                                                       WHEN 'retrying' THEN 2 ELSE 3 END))
                        AS newer
             FROM impact_deliveries
             WHERE provider = $2
               AND (delivery_id = $9 OR provider_response ->> 'reference' = $10)
               AND ($3::uuid IS NULL OR company_id = $3)
             ORDER BY created_at DESC
             LIMIT 1
             FOR UPDATE
         ), decided AS (
             SELECT id, company_id, status, payload_hash,
                    CASE WHEN $6::text IS NULL THEN 'ignored'
                         WHEN newer THEN 'applied' ELSE 'stale' END AS outcome,
                    CASE WHEN NOT newer OR $6::text IS NULL THEN status
                         WHEN $6 = 'processed' AND status = 'failed' THEN 'success'
                         WHEN $6 = 'rejected' AND status = 'success' THEN 'failed'
                         ELSE status END AS new_status
             FROM target
         ), event AS (
             INSERT INTO impact_webhook_events
                 (id, provider, route_company_id, event_id, event_type, provider_status,
                  occurred_at, received_at, company_id, delivery_record_id, matched, outcome,
                  status_before, status_after, body)
             SELECT $1, $2, $3, $4, $5, $6, $8, $11, COALESCE(d.company_id, $3), d.id,
                    d.id IS NOT NULL,
                    COALESCE(d.outcome, CASE WHEN $6::text IS NULL THEN 'ignored'
                                             ELSE 'unmatched' END),
                    d.status, d.new_status, $12
             FROM (VALUES (1)) AS one (x) LEFT JOIN decided d ON true
             ON CONFLICT DO NOTHING
             RETURNING id, outcome, delivery_record_id, company_id, status_before, status_after
         ), applied AS (
             UPDATE impact_deliveries x
             SET provider_status = $6, provider_status_at = $8, status = d.new_status,
                 last_error = CASE WHEN d.new_status = 'failed' AND d.status = 'success' THEN $13
                                   WHEN d.new_status = 'success' AND d.status = 'failed' THEN NULL
                                   ELSE x.last_error END,
                 delivered_at = CASE WHEN d.new_status = 'success' AND d.status = 'failed'
                                     THEN COALESCE(x.delivered_at, $8) ELSE x.delivered_at END,
                 updated_at = now()
             FROM event e, decided d
             WHERE x.id = e.delivery_record_id AND x.id = d.id AND e.outcome = 'applied'
             RETURNING x.id
         )
         SELECT e.id, e.outcome, e.delivery_record_id, e.company_id, e.status_before,
                e.status_after, d.payload_hash
         FROM event e LEFT JOIN decided d ON true",
    )
    .bind(Uuid::now_v7())
    .bind(provider)
    .bind(route_company)
    .bind(&event.event_id)
    .bind(&event.event_type)
    .bind(event.status)
    .bind(event.status.map_or(0, ProviderStatus::stage))
    .bind(event.occurred_at)
    .bind(event.delivery_id)
    .bind(&event.reference)
    .bind(received_at)
    .bind(&event.body)
    .bind(rejection)
    .fetch_optional(pool)
    .await
}

/// A stored event as the lists show it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredEvent {
    pub id: Uuid,
    pub provider: Provider,
    pub event_id: String,
    pub event_type: String,
    pub provider_status: Option<ProviderStatus>,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub company_id: Option<CompanyId>,
    pub delivery_record_id: Option<RecordId>,
    pub matched: bool,
    pub outcome: Outcome,
    pub status_before: Option<DeliveryStatus>,
    pub status_after: Option<DeliveryStatus>,
    pub body: serde_json::Value,
}

const COLUMNS: &str = "id, provider, event_id, event_type, provider_status, occurred_at, \
                       received_at, company_id, delivery_record_id, matched, outcome, \
                       status_before, status_after, body";

#[derive(Debug, Clone)]
pub struct EventFilter {
    pub scope: CompanyScope,
    pub provider: Option<Provider>,
    pub matched: Option<bool>,
    pub received_from: Option<DateTime<Utc>>,
    pub received_to: Option<DateTime<Utc>>,
}

pub struct EventPage {
    pub rows: Vec<StoredEvent>,
    pub total: Option<i64>,
    pub next: Option<Cursor>,
}

/// One page, newest received first; counted for pages by number only (as
/// the delivery list).
pub async fn list(
    pool: &PgPool,
    filter: &EventFilter,
    limit: u32,
    start: Start,
) -> Result<EventPage, sqlx::Error> {
    let (after, offset) = match start {
        Start::Offset(offset) => (None, offset),
        Start::After(cursor) => (Some(cursor), 0),
    };
    let mut page = QueryBuilder::new(format!("SELECT {COLUMNS} FROM impact_webhook_events"));
    push_filter(&mut page, filter, after);
    page.push(" ORDER BY received_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(limit) + 1)
        .push(" OFFSET ")
        .push_bind(i64::try_from(offset).unwrap_or(i64::MAX));
    let mut rows: Vec<StoredEvent> = page.build_query_as().fetch_all(pool).await?;
    let total = match after {
        Some(_) => None,
        None => {
            let mut count = QueryBuilder::new("SELECT count(*) FROM impact_webhook_events");
            push_filter(&mut count, filter, None);
            Some(count.build_query_scalar().fetch_one(pool).await?)
        }
    };
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = more.then(|| rows.last()).flatten().map(|e| Cursor {
        at: e.received_at,
        id: e.id,
    });
    Ok(EventPage { rows, total, next })
}

fn push_filter(query: &mut QueryBuilder<Postgres>, filter: &EventFilter, after: Option<Cursor>) {
    query.push(" WHERE true");
    if let Some(companies) = filter.scope.as_filter() {
        query
            .push(" AND company_id = ANY(")
            .push_bind(companies.to_vec())
            .push(")");
    }
    if let Some(provider) = filter.provider {
        query.push(" AND provider = ").push_bind(provider);
    }
    if let Some(matched) = filter.matched {
        query.push(" AND matched = ").push_bind(matched);
    }
    if let Some(from) = filter.received_from {
        query.push(" AND received_at >= ").push_bind(from);
    }
    if let Some(to) = filter.received_to {
        query.push(" AND received_at <= ").push_bind(to);
    }
    if let Some(cursor) = after {
        query
            .push(" AND (received_at, id) < (")
            .push_bind(cursor.at)
            .push(", ")
            .push_bind(cursor.id)
            .push(")");
    }
}

/// A delivery's events, in the order they happened.
pub async fn for_delivery(
    pool: &PgPool,
    delivery: RecordId,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM impact_webhook_events
         WHERE delivery_record_id = $1 ORDER BY occurred_at, received_at"
    )))
    .bind(delivery)
    .fetch_all(pool)
    .await
}
