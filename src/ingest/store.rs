//! SQL of ingest: a page of records stored with its checkpoint in one
//! transaction, the runs, and the tenant-scoped reads. Every read takes a
//! [`CompanyScope`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, QueryBuilder};
use uuid::Uuid;

use super::stream::{EventType, Stream};
use crate::{
    auth::CompanyScope,
    cursor::{self, Cursor, Order, Start},
    ids::CompanyId,
};

/// A record ready to store: its event already redacted.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub source_id: String,
    pub source_updated_at: DateTime<Utc>,
    pub event: serde_json::Value,
}

/// What storing a page did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub inserted: u64,
    pub updated: u64,
    /// Seen again with the same or an older source time: nothing changed.
    pub unchanged: u64,
}

/// How a run ended, or that it has not.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    sqlx::Type,
    strum::Display,
    strum::IntoStaticStr,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum RunStatus {
    Running,
    /// Reached the end of what was new (or the run's record bound).
    Succeeded,
    /// Stopped by an error after storing some pages; the next run resumes
    /// from the last stored page.
    Partial,
    /// Stopped by an error before storing anything.
    Failed,
}

/// A row of `ingest_runs`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Run {
    pub id: Uuid,
    pub company_id: CompanyId,
    pub stream: Stream,
    pub status: RunStatus,
    pub since: Option<DateTime<Utc>>,
    pub record_limit: Option<i32>,
    pub page_size: i32,
    pub records_total: i64,
    pub records_processed: i64,
    pub records_failed: i64,
    pub pages: i32,
    pub last_source_time: Option<DateTime<Utc>>,
    pub errors: serde_json::Value,
    pub has_more: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const RUN_COLUMNS: &str = "id, company_id, stream, status, since, record_limit, page_size, \
                           records_total, records_processed, records_failed, pages, \
                           last_source_time, errors, has_more, started_at, finished_at";

/// A new run, unless one is running for that company and stream: then
/// `Err` with the running one.
pub async fn create_run(
    pool: &PgPool,
    run: &NewRun,
    owner: &str,
    lease: std::time::Duration,
) -> Result<Result<Run, Run>, sqlx::Error> {
    let created: Option<Run> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO ingest_runs (id, company_id, stream, status, since, record_limit, page_size,
                                  locked_by, locked_until)
         VALUES ($1, $2, $3, 'running', $4, $5, $6, $7, now() + make_interval(secs => $8))
         ON CONFLICT (company_id, stream) WHERE status = 'running' DO NOTHING
         RETURNING {RUN_COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(run.company)
    .bind(run.stream)
    .bind(run.since)
    .bind(
        run.record_limit
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
    )
    .bind(i32::try_from(run.page_size).unwrap_or(1000))
    .bind(owner)
    .bind(lease.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    if let Some(run) = created {
        return Ok(Ok(run));
    }
    let running: Option<Run> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM ingest_runs
         WHERE company_id = $1 AND stream = $2 AND status = 'running'"
    )))
    .bind(run.company)
    .bind(run.stream)
    .fetch_optional(pool)
    .await?;
    match running {
        Some(running) => Ok(Err(running)),
        // It finished between the two statements: start another.
        None => Box::pin(create_run(pool, run, owner, lease)).await,
    }
}

pub struct NewRun {
    pub company: CompanyId,
    pub stream: Stream,
    pub since: Option<DateTime<Utc>>,
    pub record_limit: Option<u32>,
    pub page_size: u32,
}

/// Runs left `running` by a process that died (their lease ran out), now
/// leased to `owner`.
pub async fn claim_abandoned(
    pool: &PgPool,
    owner: &str,
    lease: std::time::Duration,
) -> Result<Vec<Run>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE ingest_runs SET locked_by = $1, locked_until = now() + make_interval(secs => $2)
         WHERE id IN (SELECT id FROM ingest_runs
                      WHERE status = 'running' AND locked_until < now()
                      ORDER BY locked_until LIMIT 16 FOR UPDATE SKIP LOCKED)
         RETURNING {RUN_COLUMNS}"
    )))
    .bind(owner)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// The newest source time stored for a company and stream.
pub async fn high_water(
    pool: &PgPool,
    company: CompanyId,
    stream: Stream,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT high_water FROM ingest_cursors WHERE company_id = $1 AND stream = $2",
    )
    .bind(company)
    .bind(stream)
    .fetch_optional(pool)
    .await
}

/// A page's effect on its run.
pub struct Progress<'a> {
    pub fetched: u64,
    pub failed: u64,
    pub errors: &'a [serde_json::Value],
}

/// Stores a page of records and, in the same transaction, moves the
/// company's cursor and the run's progress: the commit is the checkpoint.
/// Only if `owner` still holds the run's lease (`Ok(None)` otherwise: it
/// was taken over and nothing is written). With `publish_events`, each
/// record written is also an event in the bus's outbox.
pub async fn store_page(
    pool: &PgPool,
    run: &Run,
    owner: &str,
    lease: std::time::Duration,
    records: Vec<NewRecord>,
    progress: Progress<'_>,
    publish_events: bool,
) -> Result<Option<Stored>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let held: Option<Uuid> = sqlx::query_scalar(
        "UPDATE ingest_runs
         SET locked_until = now() + make_interval(secs => $3)
         WHERE id = $1 AND locked_by = $2 AND status = 'running'
         RETURNING id",
    )
    .bind(run.id)
    .bind(owner)
    .bind(lease.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    if held.is_none() {
        return Ok(None);
    }
    // A source may list a record twice in one page; one row may be written
    // once per statement, so the newest copy wins here.
    let mut newest: HashMap<String, NewRecord> = HashMap::with_capacity(records.len());
    for record in records {
        match newest.get(&record.source_id) {
            Some(kept) if kept.source_updated_at >= record.source_updated_at => {}
            _ => {
                newest.insert(record.source_id.clone(), record);
            }
        }
    }
    let records: Vec<NewRecord> = newest.into_values().collect();
    let high_water = records.iter().map(|r| r.source_updated_at).max();
    // Each record written (new or newer) is an event for the bus's relay,
    // in the same statement: the redacted record, as stored.
    let written: Vec<bool> = sqlx::query_scalar(
        "WITH written AS (
             INSERT INTO ingest_records
                 (id, company_id, stream, source_id, event_type, source_updated_at, data, run_id)
             SELECT r.id, $2, $3, r.source_id, $4, r.source_updated_at, r.data, $5
             FROM unnest($1::uuid[], $6::text[], $7::timestamptz[], $8::jsonb[])
                 AS r(id, source_id, source_updated_at, data)
             ON CONFLICT (company_id, stream, source_id) DO UPDATE
             SET source_updated_at = excluded.source_updated_at, data = excluded.data,
                 run_id = excluded.run_id, stored_at = now()
             WHERE ingest_records.source_updated_at < excluded.source_updated_at
             RETURNING id, source_id, source_updated_at, data, (xmax = '0'::xid) AS inserted
         ), published AS (
             INSERT INTO bus_outbox (subject, company_id, correlation_id, data)
             SELECT $4::text, $2, $5,
                    jsonb_build_object('id', id, 'stream', $3::text, 'sourceId', source_id,
                                       'sourceUpdatedAt', source_updated_at, 'record', data)
             FROM written WHERE $9
         )
         SELECT inserted FROM written",
    )
    .bind(records.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
    .bind(run.company_id)
    .bind(run.stream)
    .bind(run.stream.event_type())
    .bind(run.id)
    .bind(
        records
            .iter()
            .map(|r| r.source_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        records
            .iter()
            .map(|r| r.source_updated_at)
            .collect::<Vec<_>>(),
    )
    .bind(records.iter().map(|r| &r.event).collect::<Vec<_>>())
    .bind(publish_events)
    .fetch_all(&mut *tx)
    .await?;
    if let Some(high_water) = high_water {
        sqlx::query(
            "INSERT INTO ingest_cursors (company_id, stream, high_water) VALUES ($1, $2, $3)
             ON CONFLICT (company_id, stream) DO UPDATE
             SET high_water = GREATEST(ingest_cursors.high_water, excluded.high_water),
                 updated_at = now()",
        )
        .bind(run.company_id)
        .bind(run.stream)
        .bind(high_water)
        .execute(&mut *tx)
        .await?;
    }
    let inserted = written.iter().filter(|inserted| **inserted).count() as u64;
    let stored = Stored {
        inserted,
        updated: written.len() as u64 - inserted,
        unchanged: records.len() as u64 - written.len() as u64,
    };
    sqlx::query(
        "UPDATE ingest_runs
         SET records_total = records_total + $2,
             records_processed = records_processed + $3,
             records_failed = records_failed + $4,
             pages = pages + 1,
             last_source_time = GREATEST(last_source_time, $5),
             errors = CASE WHEN jsonb_array_length(errors) >= $7 THEN errors
                           ELSE errors || $6 END
         WHERE id = $1",
    )
    .bind(run.id)
    .bind(progress.fetched as i64)
    .bind(records.len() as i64)
    .bind(progress.failed as i64)
    .bind(high_water)
    .bind(serde_json::Value::Array(progress.errors.to_vec()))
    .bind(MAX_ERRORS)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(stored))
}

/// Errors kept per run: enough to see what went wrong, bounded when a whole
/// source is malformed.
const MAX_ERRORS: i32 = 50;

/// Ends a run, if `owner` still holds it.
pub async fn finish_run(
    pool: &PgPool,
    run: Uuid,
    owner: &str,
    status: RunStatus,
    has_more: bool,
    error: Option<serde_json::Value>,
) -> Result<Option<Run>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE ingest_runs
         SET status = $3, has_more = $4, finished_at = now(), locked_by = NULL,
             locked_until = NULL,
             errors = CASE WHEN $5::jsonb IS NULL THEN errors ELSE errors || $5 END
         WHERE id = $1 AND locked_by = $2 AND status = 'running'
         RETURNING {RUN_COLUMNS}"
    )))
    .bind(run)
    .bind(owner)
    .bind(status)
    .bind(has_more)
    .bind(error.map(|e| serde_json::Value::Array(vec![e])))
    .fetch_optional(pool)
    .await
}

pub async fn find_run(
    pool: &PgPool,
    scope: &CompanyScope,
    id: Uuid,
) -> Result<Option<Run>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM ingest_runs
         WHERE id = $1 AND ($2::uuid[] IS NULL OR company_id = ANY($2))"
    )))
    .bind(id)
    .bind(scope.as_filter())
    .fetch_optional(pool)
    .await
}

pub struct RunPage {
    pub rows: Vec<Run>,
    pub next: Option<Cursor>,
}

/// Runs, newest first.
pub async fn list_runs(
    pool: &PgPool,
    scope: &CompanyScope,
    stream: Option<Stream>,
    limit: u32,
    start: Start,
) -> Result<RunPage, sqlx::Error> {
    let (after, offset) = start.split();
    let mut query = QueryBuilder::new(format!("SELECT {RUN_COLUMNS} FROM ingest_runs WHERE true"));
    scope.push_and(&mut query);
    if let Some(stream) = stream {
        query.push(" AND stream = ").push_bind(stream);
    }
    if let Some(after) = after {
        query.push(" AND ");
        cursor::push_past(&mut query, "started_at", Order::NewestFirst, after);
    }
    query
        .push(" ORDER BY started_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(limit) + 1)
        .push(" OFFSET ")
        .push_bind(i64::try_from(offset).unwrap_or(i64::MAX));
    let rows = query.build_query_as::<Run>().fetch_all(pool).await?;
    let (rows, next) = cursor::page(rows, limit, |r| Cursor {
        at: r.started_at,
        id: r.id,
    });
    Ok(RunPage { rows, next })
}

/// A stored record, as the read API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredRecord {
    pub id: Uuid,
    pub company_id: CompanyId,
    pub stream: Stream,
    pub event_type: EventType,
    pub source_id: String,
    pub source_updated_at: DateTime<Utc>,
    pub data: serde_json::Value,
    pub stored_at: DateTime<Utc>,
}

pub struct RecordFilter {
    pub scope: CompanyScope,
    pub event_type: Option<EventType>,
    /// Stored (or changed) at or after.
    pub since: Option<DateTime<Utc>>,
}

pub struct RecordPage {
    pub rows: Vec<StoredRecord>,
    pub next: Option<Cursor>,
}

/// Records in the order they were stored (oldest first), so a reader that
/// keeps its `nextCursor` sees each change once more after it happens.
pub async fn list_records(
    pool: &PgPool,
    filter: &RecordFilter,
    limit: u32,
    after: Option<Cursor>,
) -> Result<RecordPage, sqlx::Error> {
    let mut query = QueryBuilder::new(
        "SELECT id, company_id, stream, event_type, source_id, source_updated_at, data, stored_at
         FROM ingest_records WHERE true",
    );
    filter.scope.push_and(&mut query);
    if let Some(event_type) = filter.event_type {
        query.push(" AND event_type = ").push_bind(event_type);
    }
    if let Some(since) = filter.since {
        query.push(" AND stored_at >= ").push_bind(since);
    }
    if let Some(after) = after {
        query.push(" AND ");
        cursor::push_past(&mut query, "stored_at", Order::OldestFirst, after);
    }
    query
        .push(" ORDER BY stored_at, id LIMIT ")
        .push_bind(i64::from(limit) + 1);
    let rows = query
        .build_query_as::<StoredRecord>()
        .fetch_all(pool)
        .await?;
    let (rows, next) = cursor::page(rows, limit, |r| Cursor {
        at: r.stored_at,
        id: r.id,
    });
    Ok(RecordPage { rows, next })
}

/// One stream's runs, all companies: those that ended within the window,
/// how many of them succeeded, and when one last succeeded (of the runs
/// kept: retention removes those finished `RETENTION_DAYS` ago).
#[derive(Debug, Clone, Copy)]
pub struct StreamRuns {
    pub stream: Stream,
    pub ended: i64,
    pub succeeded: i64,
    pub last_success: Option<DateTime<Utc>>,
}

/// Every stream's runs, for `/integrations/health` and the ingest gauges
/// of `/metrics` (read from the database, so every replica reports the
/// runs of all). Read at every scrape, so by index only (migration
/// 20261213000002): the window's runs, and per stream its newest success.
pub async fn stream_runs(db: &PgPool, window_hours: i32) -> Result<Vec<StreamRuns>, sqlx::Error> {
    let rows: Vec<(Stream, i64, i64, Option<DateTime<Utc>>)> = sqlx::query_as(
        "WITH recent AS (
             SELECT stream, count(*) AS ended,
                    count(*) FILTER (WHERE status = 'succeeded') AS succeeded
             FROM ingest_runs
             WHERE finished_at > now() - make_interval(hours => $1) AND status <> 'running'
             GROUP BY stream
         )
         SELECT s.stream, coalesce(r.ended, 0), coalesce(r.succeeded, 0),
                (SELECT i.finished_at FROM ingest_runs i
                 WHERE i.stream = s.stream AND i.status = 'succeeded'
                 ORDER BY i.finished_at DESC NULLS LAST
                 LIMIT 1)
         FROM unnest($2::text[]) AS s(stream) LEFT JOIN recent r USING (stream)",
    )
    .bind(window_hours)
    .bind(Stream::ALL.map(Stream::as_str))
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(stream, ended, succeeded, last_success)| StreamRuns {
            stream,
            ended,
            succeeded,
            last_success,
        })
        .collect())
}
