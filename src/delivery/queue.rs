//! Postgres as the delivery queue. A claim leases due rows with
//! `FOR UPDATE SKIP LOCKED` and counts the attempt in the same statement;
//! the lease is also the row's next due time, so a worker that dies
//! mid-attempt leaves the row due again once its lease runs out. Each
//! outcome is one statement that updates the row (only if the lease is
//! still ours) and appends the attempt row.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::DeliveryStatus;
use crate::{
    auth::CompanyScope,
    connectors::ErrorClass,
    ids::{CompanyId, DeliveryId, DeliveryKey, RecordId, ScheduleId},
    provider::Provider,
};

/// A delivery leased to one worker for one attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: RecordId,
    pub delivery_id: DeliveryId,
    pub company_id: CompanyId,
    pub provider: Provider,
    pub payload: serde_json::Value,
    pub payload_hash: String,
    /// This attempt's number; also the fencing token of the lease.
    pub attempt_count: i32,
    /// Earlier attempts the provider answered 429.
    pub rate_limited_count: i32,
    pub next_trigger: Trigger,
    /// The creating request's trace (see `telemetry::join`).
    pub traceparent: Option<String>,
    /// The schedule that created it, whose retry policy it follows.
    pub schedule_id: Option<ScheduleId>,
    /// Since when it waited in the queue: its last change before the claim.
    pub queued_since: DateTime<Utc>,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    sqlx::Type,
    strum::IntoStaticStr,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Trigger {
    Automatic,
    Replay,
    Scheduled,
}

const CLAIMED: &str = "id, delivery_id, company_id, provider, payload, payload_hash, \
                       attempt_count, rate_limited_count, next_trigger, traceparent, schedule_id";

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
             SELECT id, updated_at AS queued_since FROM impact_deliveries
             WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now()
             ORDER BY next_attempt_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED
         )
         UPDATE impact_deliveries d
         SET locked_by = $2,
             locked_at = now(),
             locked_until = now() + make_interval(secs => $3),
             next_attempt_at = now() + make_interval(secs => $3),
             attempt_count = d.attempt_count + 1,
             updated_at = now()
         FROM due WHERE d.id = due.id
         RETURNING {}, due.queued_since",
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
/// or `deliveryId`s; a record id wins, as in `store::find`) that `scope`
/// covers, for an operator's replay: status
/// `retrying`, trigger `replay`, the attempt counted, due again when the
/// lease runs out. A delivery that another statement holds at this moment
/// (say, a concurrent replay claiming it) is skipped rather than waited for,
/// so overlapping replays never wait on or deadlock with each other.
pub async fn claim_failed(
    pool: &PgPool,
    scope: &CompanyScope,
    keys: &[DeliveryKey],
    worker: &str,
    lease: Duration,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE impact_deliveries
         SET status = 'retrying',
             locked_by = $3,
             locked_at = now(),
             locked_until = now() + make_interval(secs => $4),
             next_attempt_at = now() + make_interval(secs => $4),
             attempt_count = attempt_count + 1,
             next_trigger = 'replay',
             updated_at = now()
         WHERE id IN (
             SELECT id FROM impact_deliveries
             WHERE id IN (SELECT {} FROM unnest($1::uuid[]) AS key)
               AND ($2::uuid[] IS NULL OR company_id = ANY($2))
               AND status = 'failed'
             FOR UPDATE SKIP LOCKED
         )
         RETURNING {CLAIMED}, now() AS queued_since",
        super::store::resolve_key("key")
    )))
    .bind(keys)
    .bind(scope.as_filter())
    .bind(worker)
    .bind(seconds(lease))
    .fetch_all(pool)
    .await
}

/// Extends `claimed`'s lease by `lease` from now, if the lease is still
/// `worker`'s: no other worker took the delivery over (which would have
/// counted another attempt). A replay renews before each call, so a
/// delivery that waited its turn past the lease is either still its own
/// or already another worker's, never both.
pub async fn renew(
    pool: &PgPool,
    claimed: &Claimed,
    worker: &str,
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    let renewed = sqlx::query(
        "UPDATE impact_deliveries
         SET locked_until = now() + make_interval(secs => $4),
             next_attempt_at = now() + make_interval(secs => $4)
         WHERE id = $1 AND attempt_count = $2 AND locked_by = $3",
    )
    .bind(claimed.id)
    .bind(claimed.attempt_count)
    .bind(worker)
    .bind(seconds(lease))
    .execute(pool)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// Puts every failed delivery of a company (optionally one provider, failed
/// since a time) back in the queue as replays; returns how many.
pub async fn requeue_failed(
    pool: &PgPool,
    company: CompanyId,
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

/// What one claim came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `None`: still queued as it was (no provider call was made; see
    /// `retry_in`).
    pub status: Option<DeliveryStatus>,
    /// For `Retrying` and for a deferral: when the next attempt is due.
    pub retry_in: Option<Duration>,
    pub provider_response: Option<serde_json::Value>,
    pub from_cache: bool,
    pub last_error: Option<String>,
    /// The provider call, if one was made. Without one (a cache hit, an open
    /// circuit) the claim is not an attempt: it is not counted and leaves no
    /// attempt row.
    pub attempt: Option<AttemptRecord>,
}

/// One row of `delivery_attempts`.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub http_status: Option<u16>,
    pub error_class: Option<ErrorClass>,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

/// Records the outcomes of several claims in one statement (one commit for
/// a whole batch of attempts), each only if its lease still holds: a worker
/// whose lease ran out may not overwrite its successor. Answers the record
/// ids whose outcome landed. With `publish_events`, each final outcome
/// writes its event to the bus's outbox in the same statement.
pub async fn complete(
    pool: &PgPool,
    finished: &[(&Claimed, &Outcome)],
    publish_events: bool,
) -> Result<Vec<Landed>, sqlx::Error> {
    let mut columns = OutcomeColumns::default();
    for (claimed, outcome) in finished {
        columns.push(claimed, outcome);
    }
    let OutcomeColumns {
        ids,
        attempts,
        statuses,
        retry_secs,
        responses,
        from_cache,
        last_errors,
        counted,
        triggers,
        started,
        finished,
        durations,
        http_statuses,
        error_classes,
        errors,
        excerpts,
    } = columns;
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH outcome AS (
             SELECT * FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::float8[], $5::jsonb[],
                                  $6::bool[], $7::text[], $8::bool[], $9::text[],
                                  $10::timestamptz[], $11::timestamptz[], $12::int4[],
                                  $13::int4[], $14::text[], $15::text[], $16::text[])
                 AS o(id, attempt, status, retry_secs, response, from_cache, last_error,
                      counted, trigger, started_at, finished_at, duration_ms, http_status,
                      error_class, error_message, response_excerpt)
         ), done AS (
             UPDATE impact_deliveries d
             SET status = CASE WHEN {REJECTED_MEANWHILE} THEN 'failed'
                               WHEN {PROCESSED_MEANWHILE} THEN 'success'
                               ELSE COALESCE(o.status, d.status) END,
                 next_attempt_at = CASE WHEN {PROCESSED_MEANWHILE} THEN NULL
                                        WHEN COALESCE(o.status, 'retrying') = 'retrying'
                                        THEN now() + make_interval(secs => o.retry_secs) END,
                 provider_response = COALESCE(o.response, d.provider_response),
                 from_cache = o.from_cache,
                 last_error = CASE WHEN {REJECTED_MEANWHILE}
                                   THEN 'rejected by ' || d.provider
                                        || ' after acceptance (see the delivery''s events)'
                                   WHEN {PROCESSED_MEANWHILE} THEN NULL
                                   ELSE o.last_error END,
                 delivered_at = CASE WHEN o.status = 'success' OR {PROCESSED_MEANWHILE} THEN now()
                                     ELSE d.delivered_at END,
                 -- the claim counted an attempt; only a provider call is one
                 attempt_count = d.attempt_count - CASE WHEN o.counted THEN 0 ELSE 1 END,
                 rate_limited_count = d.rate_limited_count
                     + CASE WHEN o.error_class = 'rate_limited' THEN 1 ELSE 0 END,
                 next_trigger = CASE WHEN o.counted OR o.from_cache THEN 'automatic'
                                     ELSE d.next_trigger END,
                 locked_by = NULL, locked_at = NULL, locked_until = NULL, updated_at = now()
             FROM outcome o
             WHERE d.id = o.id AND d.attempt_count = o.attempt AND d.locked_by IS NOT NULL
             RETURNING d.id, d.status, d.schedule_id, d.last_error, d.company_id, d.delivery_id,
                       d.provider, d.cause_event_id, d.attempt_count, d.delivered_at,
                       extract(epoch FROM now() - d.created_at)::float8 AS age_secs,
                       o.attempt, o.counted, o.trigger, o.started_at,
                       o.finished_at, o.duration_ms, o.http_status, o.error_class,
                       o.error_message, o.response_excerpt
         ), scheduled AS (
             -- A schedule follows the final outcome of what it created: the
             -- SLA monitor pages on its consecutive failures.
             UPDATE scheduled_deliveries s
             SET last_status = done.status,
                 last_error = CASE WHEN done.status = 'failed' THEN done.last_error END,
                 consecutive_failures = CASE WHEN done.status = 'success' THEN 0
                                             ELSE s.consecutive_failures + 1 END,
                 updated_at = now()
             FROM done
             WHERE s.id = done.schedule_id AND done.status IN ('success', 'failed')
         ), logged AS (
             INSERT INTO delivery_attempts
                 (delivery_id, attempt_number, trigger, started_at, finished_at, duration_ms,
                  http_status, error_class, error_message, response_excerpt)
             SELECT id, attempt, trigger, started_at, finished_at, duration_ms, http_status,
                    error_class, error_message, response_excerpt
             FROM done WHERE counted
         ), published AS (
             -- The final outcome's event, for the bus's relay (docs/bus.md);
             -- no error text: it may quote what the provider echoed.
             INSERT INTO bus_outbox (subject, company_id, correlation_id, causation_id, data)
             SELECT CASE status WHEN 'success' THEN 'impact.delivery.succeeded'
                                ELSE 'impact.delivery.failed' END,
                    company_id, id, cause_event_id,
                    jsonb_build_object('id', id, 'deliveryId', delivery_id,
                                       'companyId', company_id, 'provider', provider,
                                       'status', status, 'attemptCount', attempt_count,
                                       'deliveredAt', delivered_at, 'scheduleId', schedule_id,
                                       'httpStatus', http_status, 'errorClass', error_class)
             FROM done WHERE $17 AND status IN ('success', 'failed')
         )
         SELECT id, status, age_secs FROM done"
    )))
    .bind(ids)
    .bind(attempts)
    .bind(statuses)
    .bind(retry_secs)
    .bind(responses)
    .bind(from_cache)
    .bind(last_errors)
    .bind(counted)
    .bind(triggers)
    .bind(started)
    .bind(finished)
    .bind(durations)
    .bind(http_statuses)
    .bind(error_classes)
    .bind(errors)
    .bind(excerpts)
    .bind(publish_events)
    .fetch_all(pool)
    .await
}

/// Deliveries waiting (pending or retrying, in flight included), and how
/// many seconds the oldest due one has been due (`None`: none is due).
/// Reads the partial due index only, which finished deliveries leave.
pub async fn depth(pool: &PgPool) -> Result<(i64, Option<f64>), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*),
                extract(epoch FROM now() - min(next_attempt_at)
                                   FILTER (WHERE next_attempt_at <= now()))::float8
         FROM impact_deliveries WHERE status IN ('pending', 'retrying')",
    )
    .fetch_one(pool)
    .await
}

/// An outcome that landed: the delivery's status now, and its age.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Landed {
    pub id: RecordId,
    pub status: DeliveryStatus,
    /// Seconds since the delivery was created.
    pub age_secs: f64,
}

/// A webhook applied while the attempt was in flight (after its lease
/// began) said the provider rejected what it had accepted: the attempt's
/// success is recorded as a failure. The target row's own columns are
/// read, so a webhook that committed while this statement waited for the
/// row is seen.
const REJECTED_MEANWHILE: &str = "(o.status = 'success' AND d.provider_status = 'rejected' \
                                  AND d.provider_status_seen_at >= d.locked_at)";
/// The provider said it processed the delivery while our attempt at it
/// failed (a timeout, say): it is delivered.
const PROCESSED_MEANWHILE: &str = "(o.status IN ('failed', 'retrying') \
                                   AND d.provider_status = 'processed' \
                                   AND d.provider_status_seen_at >= d.locked_at)";

/// Outcomes as one array per column, for `unnest`.
#[derive(Default)]
struct OutcomeColumns {
    ids: Vec<RecordId>,
    attempts: Vec<i32>,
    statuses: Vec<Option<&'static str>>,
    retry_secs: Vec<f64>,
    responses: Vec<Option<serde_json::Value>>,
    from_cache: Vec<bool>,
    last_errors: Vec<Option<String>>,
    counted: Vec<bool>,
    triggers: Vec<&'static str>,
    started: Vec<Option<DateTime<Utc>>>,
    finished: Vec<Option<DateTime<Utc>>>,
    durations: Vec<Option<i32>>,
    http_statuses: Vec<Option<i32>>,
    error_classes: Vec<Option<&'static str>>,
    errors: Vec<Option<String>>,
    excerpts: Vec<Option<String>>,
}

impl OutcomeColumns {
    fn push(&mut self, claimed: &Claimed, outcome: &Outcome) {
        self.ids.push(claimed.id);
        self.attempts.push(claimed.attempt_count);
        self.statuses.push(outcome.status.map(Into::into));
        self.retry_secs
            .push(outcome.retry_in.map(seconds).unwrap_or(0.0));
        self.responses.push(outcome.provider_response.clone());
        self.from_cache.push(outcome.from_cache);
        self.last_errors.push(outcome.last_error.clone());
        self.counted.push(outcome.attempt.is_some());
        self.triggers.push(claimed.next_trigger.into());
        let attempt = outcome.attempt.as_ref();
        self.started.push(attempt.map(|a| a.started_at));
        self.finished
            .push(attempt.map(|a| {
                a.started_at + chrono::Duration::from_std(a.duration).unwrap_or_default()
            }));
        self.durations
            .push(attempt.map(|a| i32::try_from(a.duration.as_millis()).unwrap_or(i32::MAX)));
        self.http_statuses
            .push(attempt.and_then(|a| a.http_status).map(i32::from));
        self.error_classes
            .push(attempt.and_then(|a| a.error_class).map(Into::into));
        self.errors.push(attempt.and_then(|a| a.error.clone()));
        self.excerpts
            .push(attempt.and_then(|a| a.response_excerpt.clone()));
    }
}

/// A row of `delivery_attempts` (the API shows it as
/// `http::views::AttemptView`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Attempt {
    pub attempt_number: i32,
    pub trigger: Trigger,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub http_status: Option<i32>,
    pub error_class: Option<ErrorClass>,
    pub error_message: Option<String>,
    /// The start of what the provider answered, whether or not it could be
    /// used.
    pub response_excerpt: Option<String>,
}

pub async fn attempts(pool: &PgPool, id: RecordId) -> Result<Vec<Attempt>, sqlx::Error> {
    sqlx::query_as(
        "SELECT attempt_number, trigger, started_at, duration_ms, http_status, error_class,
                error_message, response_excerpt
         FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt_number",
    )
    .bind(id)
    .fetch_all(pool)
    .await
}
