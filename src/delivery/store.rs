//! SQL for the delivery log. Every query takes a [`CompanyScope`], so no
//! caller can read outside the companies it was granted.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{Delivery, DeliveryStatus};
use crate::{auth::CompanyScope, provider::Provider};

const COLUMNS: &str = "id, delivery_id, company_id, provider, status, attempt_count, last_error, \
                       provider_response, payload, created_at, updated_at, delivered_at";

#[derive(Debug, Clone)]
pub struct ListFilter {
    pub scope: CompanyScope,
    pub provider: Option<Provider>,
    pub status: Option<DeliveryStatus>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
}

/// One page, newest first, and the total matching the filter.
pub async fn list(
    pool: &PgPool,
    filter: &ListFilter,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Delivery>, i64), sqlx::Error> {
    let mut page = QueryBuilder::new(format!("SELECT {COLUMNS} FROM impact_deliveries"));
    push_filter(&mut page, filter);
    page.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(limit))
        .push(" OFFSET ")
        .push_bind(i64::try_from(offset).unwrap_or(i64::MAX));

    let mut count = QueryBuilder::new("SELECT count(*) FROM impact_deliveries");
    push_filter(&mut count, filter);

    let (rows, total) = tokio::try_join!(
        page.build_query_as::<Delivery>().fetch_all(pool),
        count.build_query_scalar::<i64>().fetch_one(pool),
    )?;
    Ok((rows, total))
}

/// A delivery by its record id or its `deliveryId`, if the scope covers it.
pub async fn find(
    pool: &PgPool,
    scope: &CompanyScope,
    id: Uuid,
) -> Result<Option<Delivery>, sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM impact_deliveries
         WHERE (id = $1 OR delivery_id = $1)
           AND ($2::uuid[] IS NULL OR company_id = ANY($2))"
    )))
    .bind(id)
    .bind(scope.as_filter())
    .fetch_optional(pool)
    .await
}

/// Only the predicates a filter sets, so each query can use its index.
fn push_filter(query: &mut QueryBuilder<Postgres>, filter: &ListFilter) {
    let mut clause = " WHERE ";
    let mut and = |query: &mut QueryBuilder<Postgres>| {
        query.push(clause);
        clause = " AND ";
    };
    if let Some(companies) = filter.scope.as_filter() {
        and(query);
        query
            .push("company_id = ANY(")
            .push_bind(companies.to_vec())
            .push(")");
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
}

pub struct NewDelivery {
    pub company_id: Uuid,
    pub provider: Provider,
    pub delivery_id: Uuid,
    pub payload: serde_json::Value,
}

pub enum Created {
    New(Delivery),
    /// The `deliveryId` was already used with this same request.
    Existing(Delivery),
    /// The `deliveryId` was already used with a different request.
    Conflict,
}

/// Stores a pending delivery once per `deliveryId`. Racing identical requests
/// meet at the unique index: one inserts, the others read its row.
pub async fn insert(pool: &PgPool, new: NewDelivery) -> Result<Created, sqlx::Error> {
    let inserted: Option<Delivery> = sqlx::query_as(AssertSqlSafe(format!(
        "INSERT INTO impact_deliveries (id, company_id, provider, delivery_id, payload)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (delivery_id) DO NOTHING
         RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(new.company_id)
    .bind(new.provider)
    .bind(new.delivery_id)
    .bind(&new.payload)
    .fetch_optional(pool)
    .await?;
    if let Some(delivery) = inserted {
        return Ok(Created::New(delivery));
    }
    let existing = find(pool, &CompanyScope::All, new.delivery_id).await?;
    Ok(match existing {
        Some(d)
            if d.company_id == new.company_id
                && d.provider == new.provider
                && d.payload == new.payload =>
        {
            Created::Existing(d)
        }
        // Another request owns this id (possibly another company's): do not
        // reveal it, only refuse.
        _ => Created::Conflict,
    })
}
