//! Report-ready messages that can never become deliveries, kept with their
//! reason for ops (`GET /v1/impact-in/bus/rejected`). Their bodies are not
//! copied: they may hold personal data; the stream sequence finds them.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, QueryBuilder};
use uuid::Uuid;

use super::event::Rejection;
use crate::{
    auth::CompanyScope,
    cursor::{self, Cursor, Order, Start},
    ids::CompanyId,
};

/// Where a message was in JetStream.
pub struct Origin<'a> {
    pub stream: &'a str,
    pub stream_sequence: u64,
    pub subject: &'a str,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Rejected {
    pub id: Uuid,
    pub stream: String,
    pub stream_sequence: i64,
    pub subject: String,
    pub event_id: Option<Uuid>,
    pub company_id: Option<CompanyId>,
    pub reason_code: String,
    pub reason: String,
    pub rejected_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, stream, stream_sequence, subject, event_id, company_id, reason_code, \
                       reason, rejected_at";

/// Stores the rejection, once per stream message.
pub async fn record(
    db: &PgPool,
    origin: &Origin<'_>,
    rejection: &Rejection,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO bus_rejected
             (id, stream, stream_sequence, subject, event_id, company_id, reason_code, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (stream, stream_sequence) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(origin.stream)
    .bind(i64::try_from(origin.stream_sequence).unwrap_or(i64::MAX))
    .bind(origin.subject)
    .bind(rejection.event_id)
    .bind(rejection.company_id)
    .bind(rejection.code.as_str())
    .bind(&rejection.reason)
    .execute(db)
    .await?;
    Ok(())
}

pub struct RejectedPage {
    pub rows: Vec<Rejected>,
    pub next: Option<Cursor>,
}

/// One page, newest first. A message whose company is unknown (not JSON,
/// no `companyId`) is in no company's scope: only ops keys see it.
pub async fn list(
    db: &PgPool,
    scope: &CompanyScope,
    limit: u32,
    start: Start,
) -> Result<RejectedPage, sqlx::Error> {
    let (after, offset) = start.split();
    let mut query = QueryBuilder::new(format!("SELECT {COLUMNS} FROM bus_rejected WHERE true"));
    scope.push_and(&mut query);
    if let Some(after) = after {
        query.push(" AND ");
        cursor::push_past(&mut query, "rejected_at", Order::NewestFirst, after);
    }
    query
        .push(" ORDER BY rejected_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(limit) + 1)
        .push(" OFFSET ")
        .push_bind(i64::try_from(offset).unwrap_or(i64::MAX));
    let rows = query.build_query_as::<Rejected>().fetch_all(db).await?;
    let (rows, next) = cursor::page(rows, limit, |r| Cursor {
        at: r.rejected_at,
        id: r.id,
    });
    Ok(RejectedPage { rows, next })
}
