//! SQL for the delivery log. Every query takes a [`CompanyScope`], so no
//! caller can read outside the companies it was granted.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{Delivery, DeliveryStatus, intake::Intake};
use crate::{
    auth::CompanyScope,
    cursor::{self, Cursor, Order, Start},
    ids::{CompanyId, DeliveryId, DeliveryKey, RecordId, ScheduleId},
    provider::Provider,
};

const COLUMNS: &str = "id, delivery_id, company_id, provider, status, attempt_count, last_error, \
                       provider_response, from_cache, payload, payload_hash, schedule_id, \
                       created_at, updated_at, delivered_at, next_attempt_at, \
                       provider_status, provider_status_at, \
                       CASE WHEN locked_until > now() THEN locked_at END AS in_flight_since";

#[derive(Debug, Clone)]
pub struct ListFilter {
    pub scope: CompanyScope,
    pub provider: Option<Provider>,
    pub status: Option<DeliveryStatus>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
}

pub struct ListPage {
    pub rows: Vec<Delivery>,
    /// Every row matching the filter, whatever the page; counted only for
    /// pages by number (see [`list`]).
    pub total: Option<i64>,
    /// The last row of this page, when rows follow it.
    pub next: Option<Cursor>,
}

/// One page, newest first, and for a page by number the total matching the
/// filter. A page by cursor is not counted: counting reads every matching
/// index entry, which is what a cursor exists to avoid (at 100,000 matching
/// rows the count costs more than the page).
pub async fn list(
    pool: &PgPool,
    filter: &ListFilter,
    limit: u32,
    start: Start,
) -> Result<ListPage, sqlx::Error> {
    let (after, offset) = start.split();
    // One row beyond the page tells whether another page follows, without
    // trusting a count taken by a separate statement.
    let mut page = newest_first(filter, after, i64::from(limit) + 1, offset);

    let (rows, total) = if after.is_some() {
        (
            page.build_query_as::<Delivery>().fetch_all(pool).await?,
            None,
        )
    } else {
        let mut count = QueryBuilder::new("SELECT count(*) FROM impact_deliveries");
        push_filter(&mut count, filter, None);
        let (rows, total) = tokio::try_join!(
            page.build_query_as::<Delivery>().fetch_all(pool),
            count.build_query_scalar::<i64>().fetch_one(pool),
        )?;
        (rows, Some(total))
    };
    let (rows, next) = cursor::page(rows, limit, |d| Cursor {
        at: d.created_at,
        id: d.id.0,
    });
    Ok(ListPage { rows, total, next })
}

/// The newest `limit` deliveries matching the filter, in list order,
/// without the list's count (the SLA timeline).
pub async fn newest(
    pool: &PgPool,
    filter: &ListFilter,
    limit: u32,
) -> Result<Vec<Delivery>, sqlx::Error> {
    newest_first(filter, None, i64::from(limit), 0)
        .build_query_as()
        .fetch_all(pool)
        .await
}

fn newest_first(
    filter: &ListFilter,
    after: Option<Cursor>,
    limit: i64,
    offset: u64,
) -> QueryBuilder<Postgres> {
    let mut query = QueryBuilder::new(format!("SELECT {COLUMNS} FROM impact_deliveries"));
    push_filter(&mut query, filter, after);
    query
        .push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(limit)
        .push(" OFFSET ")
        .push_bind(i64::try_from(offset).unwrap_or(i64::MAX));
    query
}

/// A delivery by its record id or its `deliveryId`, if the scope covers it.
/// A record id wins: a client could once choose a `deliveryId` equal to
/// another row's record id (creates now refuse that, see
/// [`insert_rows`]), and the answer must not depend on which row the plan
/// reads first.
pub async fn find(
    pool: &PgPool,
    scope: &CompanyScope,
    key: DeliveryKey,
) -> Result<Option<Delivery>, sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM impact_deliveries
         WHERE id = {}
           AND ($2::uuid[] IS NULL OR company_id = ANY($2))",
        resolve_key("$1")
    )))
    .bind(key)
    .bind(scope.as_filter())
    .fetch_optional(pool)
    .await
}

/// SQL for the record id that `key`, an expression holding a key given by
/// a caller (record id or `deliveryId`), names: the row with that record
/// id, else the row with that `deliveryId`.
pub(super) fn resolve_key(key: &str) -> String {
    format!(
        "COALESCE((SELECT id FROM impact_deliveries WHERE id = {key}),
                  (SELECT id FROM impact_deliveries WHERE delivery_id = {key}))"
    )
}

/// Only the predicates a filter sets, so each query can use its index, and
/// with `after` only the rows past that position in list order.
pub(super) fn push_filter(
    query: &mut QueryBuilder<Postgres>,
    filter: &ListFilter,
    after: Option<Cursor>,
) {
    let mut clause = " WHERE ";
    let mut and = |query: &mut QueryBuilder<Postgres>| {
        query.push(clause);
        clause = " AND ";
    };
    match filter.scope.as_filter() {
        None => {}
        // `= ANY` would not let the planner read the (company_id, …,
        // created_at DESC, id DESC) indexes in order: it would fetch all of
        // the company's rows and sort them, on every page.
        Some([company]) => {
            and(query);
            query.push("company_id = ").push_bind(*company);
        }
        Some(companies) => {
            and(query);
            query
                .push("company_id = ANY(")
                .push_bind(companies.to_vec())
                .push(")");
        }
    }
    if let Some(provider) = filter.provider {
        and(query);
        query.push("provider = ").push_bind(provider);
    }
    if let Some(status) = filter.status {
        and(query);
        query.push("status = ").push_bind(status);
    }
    if let Some(from) = filter.created_from {
        and(query);
        query.push("created_at >= ").push_bind(from);
    }
    if let Some(to) = filter.created_to {
        and(query);
        query.push("created_at <= ").push_bind(to);
    }
    if let Some(cursor) = after {
        and(query);
        cursor::push_past(query, "created_at", Order::NewestFirst, cursor);
    }
}

pub struct NewDelivery {
    pub company_id: CompanyId,
    pub provider: Provider,
    pub delivery_id: DeliveryId,
    pub idempotency_key: Option<String>,
    pub payload: serde_json::Value,
    /// The report-ready event it came from (the bus in).
    pub cause_event_id: Option<Uuid>,
}

pub enum Created {
    New(Delivery),
    /// The `deliveryId` or `Idempotency-Key` was already used with this same
    /// request.
    Existing(Delivery),
    /// The `deliveryId` or `Idempotency-Key` was already used with a
    /// different request.
    Conflict,
    /// The `deliveryId` is another delivery's record id.
    IdTaken,
}

/// A delivery row about to be written.
pub struct NewRow {
    pub id: RecordId,
    pub company_id: CompanyId,
    pub provider: Provider,
    pub delivery_id: DeliveryId,
    pub idempotency_key: Option<String>,
    pub payload: serde_json::Value,
    pub payload_hash: String,
    /// The creating request's trace, which the delivery's attempts join.
    pub traceparent: Option<String>,
    /// The schedule whose firing created it; its first attempt is then
    /// `scheduled` and its retries follow the schedules' policy.
    pub schedule_id: Option<ScheduleId>,
    /// The report-ready event it came from: its outcome's events name it
    /// as their cause.
    pub cause_event_id: Option<Uuid>,
}

/// Stores a pending delivery, due now, once per `deliveryId` and per
/// company's `Idempotency-Key`. Racing identical requests meet at the unique
/// indexes: one inserts, the others read its row. "The same request" means
/// the same company, provider and canonical payload hash.
pub async fn insert(
    pool: &PgPool,
    intake: &Intake,
    new: NewDelivery,
) -> Result<Created, sqlx::Error> {
    let hash = super::payload_hash(&new.payload);
    let row = NewRow {
        id: RecordId::generate(),
        company_id: new.company_id,
        provider: new.provider,
        delivery_id: new.delivery_id,
        idempotency_key: new.idempotency_key.clone(),
        payload: new.payload,
        payload_hash: hash.clone(),
        traceparent: crate::telemetry::current_traceparent(),
        schedule_id: None,
        cause_event_id: new.cause_event_id,
    };
    if let Some(delivery) = intake.insert(pool, row).await? {
        return Ok(Created::New(delivery));
    }
    let existing: Vec<Delivery> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM impact_deliveries
         WHERE delivery_id = $1 OR (company_id = $2 AND idempotency_key = $3)"
    )))
    .bind(new.delivery_id)
    .bind(new.company_id)
    .bind(&new.idempotency_key)
    .fetch_all(pool)
    .await?;
    // Both the id and the key must point at one matching delivery; an id
    // owned by another company is refused without revealing it. With
    // neither taken, the row was refused for the one other reason
    // `insert_rows` has.
    Ok(match existing.as_slice() {
        [d] if d.company_id == new.company_id
            && d.provider == new.provider
            && d.payload_hash == hash =>
        {
            Created::Existing(d.clone())
        }
        [] => Created::IdTaken,
        _ => Created::Conflict,
    })
}

/// Inserts rows in one statement, skipping those whose `deliveryId` or
/// `Idempotency-Key` is taken (also by an earlier row of the same call),
/// or whose `deliveryId` is another row's record id (so that a key given
/// to the API names one delivery); the inserted ones by record id.
pub async fn insert_rows(
    db: impl sqlx::PgExecutor<'_>,
    rows: &[NewRow],
) -> Result<HashMap<RecordId, Delivery>, sqlx::Error> {
    let inserted: Vec<Delivery> = sqlx::query_as(AssertSqlSafe(format!(
        "INSERT INTO impact_deliveries
             (id, company_id, provider, delivery_id, idempotency_key, payload, payload_hash,
              traceparent, schedule_id, cause_event_id, next_trigger, next_attempt_at)
         SELECT id, company_id, provider, delivery_id, idempotency_key, payload, payload_hash,
                traceparent, schedule_id, cause_event_id,
                CASE WHEN schedule_id IS NULL THEN 'automatic' ELSE 'scheduled' END, now()
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::jsonb[],
                     $7::text[], $8::text[], $9::uuid[], $10::uuid[])
             AS r(id, company_id, provider, delivery_id, idempotency_key, payload, payload_hash,
                  traceparent, schedule_id, cause_event_id)
         WHERE NOT EXISTS (SELECT 1 FROM impact_deliveries e WHERE e.id = r.delivery_id)
         ON CONFLICT DO NOTHING
         RETURNING {COLUMNS}"
    )))
    .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.company_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.provider.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.delivery_id).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.idempotency_key.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| &r.payload).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.payload_hash.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|r| r.traceparent.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.schedule_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.cause_event_id).collect::<Vec<_>>())
    .fetch_all(db)
    .await?;
    Ok(inserted.into_iter().map(|d| (d.id, d)).collect())
}
