//! Postgres as the delivery queue. A claim leases due rows with
//! `FOR UPDATE SKIP LOCKED` and counts the attempt in the same statement;
//! the lease is also the row's next due time, so a worker that dies
//! mid-attempt leaves the row due again once its lease runs out. Each
//! outcome is one statement that updates the row (only if the lease is
//! still ours) and appends the attempt row.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::DeliveryStatus;
use crate::{auth::CompanyScope, connectors::ErrorClass, provider::Provider};

/// A delivery leased to one worker for one attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: Uuid,
    pub delivery_id: Uuid,
    pub company_id: Uuid,
    pub provider: Provider,
    pub payload: serde_json::Value,
    pub payload_hash: String,
    /// This attempt's number; also the fencing token of the lease.
    pub attempt_count: i32,
    pub next_trigger: Trigger,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Trigger {
    Automatic,
    Replay,
    Scheduled,
}

const CLAIMED: &str =
    "id, delivery_id, company_id, provider, payload, payload_hash, attempt_count, next_trigger";

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// Leases up to `limit` due deliveries.
pub async fn claim(
    pool: &PgPool,
    worker: &str,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH due AS (
             SELECT id FROM impact_deliveries
             WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now()
             ORDER BY next_attempt_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED
         )
         UPDATE impact_deliveries d
         SET locked_by = $2,
             locked_until = now() + make_interval(secs => $3),
             next_attempt_at = now() + make_interval(secs => $3),
             attempt_count = d.attempt_count + 1,
             updated_at = now()
         FROM due WHERE d.id = due.id
         RETURNING {}",
        CLAIMED
            .split(", ")
            .map(|c| format!("d.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
    .bind(limit)
    .bind(worker)
    .bind(seconds(lease))
    .fetch_all(pool)
    .await
}

/// Leases, in one statement, every failed delivery among `ids` (record ids
/// or `deliveryId`s) that `scope` covers, for an operator's replay: status
/// `retrying`, trigger `replay`, the attempt counted, due again when the
/// lease runs out. A delivery that another statement holds at this moment
/// (say, a concurrent replay claiming it) is skipped rather than waited for,
/// so overlapping replays never wait on or deadlock with each other.
pub async fn claim_failed(
    pool: &PgPool,
    scope: &CompanyScope,
    ids: &[Uuid],
    worker: &str,
    lease: Duration,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE impact_deliveries
         SET status = 'retrying',
             locked_by = $3,
             locked_until = now() + make_interval(secs => $4),
             next_attempt_at = now() + make_interval(secs => $4),
             attempt_count = attempt_count + 1,
             next_trigger = 'replay',
             updated_at = now()
         WHERE id IN (
             SELECT id FROM impact_deliveries
             WHERE (id = ANY($1) OR delivery_id = ANY($1))
               AND ($2::uuid[] IS NULL OR company_id = ANY($2))
               AND status = 'failed'
             FOR UPDATE SKIP LOCKED
         )
         RETURNING {CLAIMED}"
    )))
    .bind(ids)
    .bind(scope.as_filter())
    .bind(worker)
    .bind(seconds(lease))
    .fetch_all(pool)
    .await
}

/// Puts every failed delivery of a company (optionally one provider, failed
/// since a time) back in the queue as replays; returns how many.
pub async fn requeue_failed(
    pool: &PgPool,
    company: Uuid,
    provider: Option<Provider>,
    since: Option<DateTime<Utc>>,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE impact_deliveries
         SET status = 'retrying', next_attempt_at = now(), next_trigger = 'replay',
             updated_at = now()
         WHERE company_id = $1 AND status = 'failed'
           AND ($2::text IS NULL OR provider = $2)
           AND ($3::timestamptz IS NULL OR updated_at >= $3)",
    )
    .bind(company)
    .bind(provider)
    .bind(since)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: DeliveryStatus,
    /// For `Retrying`: when the next attempt is due.
    pub retry_in: Option<Duration>,
    pub provider_response: Option<serde_json::Value>,
    pub from_cache: bool,
    pub last_error: Option<String>,
    pub attempt: AttemptRecord,
}

/// One row of `delivery_attempts`; `None` when no provider call happened
/// (a cache hit is not an attempt).
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub http_status: Option<u16>,
    pub error_class: Option<ErrorClass>,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

/// Records an attempt's outcome if our lease still holds (a worker whose
/// lease ran out may not overwrite its successor); false otherwise.
pub async fn complete(
    pool: &PgPool,
    claimed: &Claimed,
    outcome: &Outcome,
) -> Result<bool, sqlx::Error> {
    let attempt = &outcome.attempt;
    let finished_at =
        attempt.started_at + chrono::Duration::from_std(attempt.duration).unwrap_or_default();
    let row: Option<(Uuid,)> = sqlx::query_as(
        "WITH done AS (
             UPDATE impact_deliveries
             SET status = $3,
                 next_attempt_at = CASE WHEN $3 = 'retrying'
                                        THEN now() + make_interval(secs => $4) END,
                 provider_response = COALESCE($5, provider_response),
                 from_cache = $6,
                 last_error = $7,
                 delivered_at = CASE WHEN $3 = 'success' THEN now() ELSE delivered_at END,
                 -- a cache hit made no provider call: it is not an attempt
                 attempt_count = attempt_count - CASE WHEN $6 THEN 1 ELSE 0 END,
                 next_trigger = 'automatic',
                 locked_by = NULL, locked_until = NULL, updated_at = now()
             WHERE id = $1 AND attempt_count = $2 AND locked_by IS NOT NULL
             RETURNING id
         ), logged AS (
             INSERT INTO delivery_attempts
                 (delivery_id, attempt_number, trigger, started_at, finished_at, duration_ms,
                  http_status, error_class, error_message, response_excerpt)
             SELECT id, $2, $8, $9, $10, $11, $12, $13, $14, $15 FROM done WHERE NOT $6
         )
         SELECT id FROM done",
    )
    .bind(claimed.id)
    .bind(claimed.attempt_count)
    .bind(outcome.status)
    .bind(outcome.retry_in.map(seconds).unwrap_or(0.0))
    .bind(&outcome.provider_response)
    .bind(outcome.from_cache)
    .bind(&outcome.last_error)
    .bind(claimed.next_trigger)
    .bind(attempt.started_at)
    .bind(finished_at)
    .bind(i32::try_from(attempt.duration.as_millis()).unwrap_or(i32::MAX))
    .bind(attempt.http_status.map(i32::from))
    .bind(attempt.error_class.map(ErrorClass::as_str))
    .bind(&attempt.error)
    .bind(&attempt.response_excerpt)
    .fetch_optional(pool)
    .await?;
    Ok(row.is_some())
}

/// One attempt as the single-delivery route shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub attempt_number: i32,
    pub trigger: Trigger,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub http_status: Option<i32>,
    pub error_class: Option<String>,
    #[serde(rename = "error")]
    pub error_message: Option<String>,
}

pub async fn attempts(pool: &PgPool, id: Uuid) -> Result<Vec<Attempt>, sqlx::Error> {
    sqlx::query_as(
        "SELECT attempt_number, trigger, started_at, duration_ms, http_status, error_class,
                error_message
         FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt_number",
    )
    .bind(id)
    .fetch_all(pool)
    .await
}
