//! Schedules in SQL: one row of `scheduled_deliveries` per company,
//! provider and timing, read back parsed (a stored schedule always parses:
//! it was checked on the way in).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, QueryBuilder};

use super::timing::{Schedule, Zone};
use crate::{
    auth::CompanyScope,
    cursor::{self, Cursor, Order, Start},
    ids::{CompanyId, ScheduleId},
    provider::Provider,
};

/// How a schedule's last firing ended: its delivery's final outcome, or
/// skipped (no data, an identical report within 24 h).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type, utoipa::ToSchema, strum::Display,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum LastStatus {
    Success,
    Failed,
    Skipped,
}

/// A row of `scheduled_deliveries`.
#[derive(Debug, Clone)]
pub struct StoredSchedule {
    pub id: ScheduleId,
    pub company_id: CompanyId,
    pub platform: Provider,
    pub schedule: Schedule,
    pub timezone: Zone,
    pub active: bool,
    pub next_run: Option<DateTime<Utc>>,
    pub last_run: Option<DateTime<Utc>>,
    pub last_status: Option<LastStatus>,
    pub last_error: Option<String>,
    pub consecutive_failures: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(super) const COLUMNS: &str = "id, company_id, platform, schedule, timezone, active, next_run, last_run, \
                       last_status, last_error, consecutive_failures, created_at, updated_at";

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for StoredSchedule {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        let text = |column: &str| row.try_get::<String, _>(column);
        let decode = |column: &str, err: String| sqlx::Error::ColumnDecode {
            index: column.into(),
            source: err.into(),
        };
        Ok(Self {
            id: row.try_get("id")?,
            company_id: row.try_get("company_id")?,
            platform: row.try_get("platform")?,
            schedule: text("schedule")?
                .parse()
                .map_err(|err: super::timing::ScheduleError| decode("schedule", err.to_string()))?,
            timezone: text("timezone")?
                .parse()
                .map_err(|err: super::timing::ZoneError| decode("timezone", err.to_string()))?,
            active: row.try_get("active")?,
            next_run: row.try_get("next_run")?,
            last_run: row.try_get("last_run")?,
            last_status: row.try_get("last_status")?,
            last_error: row.try_get("last_error")?,
            consecutive_failures: row.try_get("consecutive_failures")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

pub struct NewSchedule {
    pub company_id: CompanyId,
    pub platform: Provider,
    pub schedule: Schedule,
    pub timezone: Zone,
    pub active: bool,
    pub next_run: Option<DateTime<Utc>>,
}

pub async fn insert(db: &PgPool, new: &NewSchedule) -> Result<StoredSchedule, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO scheduled_deliveries
             (id, company_id, platform, schedule, timezone, active, next_run)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING {COLUMNS}"
    )))
    .bind(ScheduleId(uuid::Uuid::now_v7()))
    .bind(new.company_id)
    .bind(new.platform)
    .bind(new.schedule.as_str())
    .bind(new.timezone.as_str())
    .bind(new.active)
    .bind(new.next_run)
    .fetch_one(db)
    .await
}

pub async fn find(
    db: impl sqlx::PgExecutor<'_>,
    scope: &CompanyScope,
    id: ScheduleId,
) -> Result<Option<StoredSchedule>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM scheduled_deliveries
         WHERE id = $1 AND ($2::uuid[] IS NULL OR company_id = ANY($2))"
    )))
    .bind(id)
    .bind(scope.as_filter())
    .fetch_optional(db)
    .await
}

/// The changes a PATCH asks; `next_run` is computed by the caller from the
/// resulting schedule, zone and activity.
pub struct Changes {
    pub schedule: Schedule,
    pub timezone: Zone,
    pub active: bool,
    pub next_run: Option<DateTime<Utc>>,
}

pub async fn update(
    db: &PgPool,
    id: ScheduleId,
    changes: &Changes,
) -> Result<Option<StoredSchedule>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE scheduled_deliveries
         SET schedule = $2, timezone = $3, active = $4, next_run = $5, updated_at = now()
         WHERE id = $1
         RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(changes.schedule.as_str())
    .bind(changes.timezone.as_str())
    .bind(changes.active)
    .bind(changes.next_run)
    .fetch_optional(db)
    .await
}

/// Deletes the schedule and its firings; its deliveries stay (their
/// `scheduleId` becomes null).
pub async fn delete(
    db: &PgPool,
    scope: &CompanyScope,
    id: ScheduleId,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM scheduled_deliveries
         WHERE id = $1 AND ($2::uuid[] IS NULL OR company_id = ANY($2))",
    )
    .bind(id)
    .bind(scope.as_filter())
    .execute(db)
    .await?
    .rows_affected()
        > 0)
}

pub struct ListFilter {
    pub scope: CompanyScope,
    pub platform: Option<Provider>,
    pub active: Option<bool>,
}

pub struct SchedulePage {
    pub rows: Vec<StoredSchedule>,
    pub next: Option<Cursor>,
}

/// Newest first, keyset-paged.
pub async fn list(
    db: &PgPool,
    filter: &ListFilter,
    limit: u32,
    start: Start,
) -> Result<SchedulePage, sqlx::Error> {
    let (after, offset) = start.split();
    let mut query = QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM scheduled_deliveries WHERE true"
    ));
    filter.scope.push_and(&mut query);
    if let Some(platform) = filter.platform {
        query.push(" AND platform = ").push_bind(platform);
    }
    if let Some(active) = filter.active {
        query.push(" AND active = ").push_bind(active);
    }
    if let Some(after) = after {
        query.push(" AND ");
        cursor::push_past(&mut query, "created_at", Order::NewestFirst, after);
    }
    query
        .push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(limit) + 1)
        .push(" OFFSET ")
        .push_bind(i64::try_from(offset).unwrap_or(i64::MAX));
    let rows = query
        .build_query_as::<StoredSchedule>()
        .fetch_all(db)
        .await?;
    let (rows, next) = cursor::page(rows, limit, |s| Cursor {
        at: s.created_at,
        id: s.id.0,
    });
    Ok(SchedulePage { rows, next })
}

/// One firing of a schedule, as `schedule_firings` keeps it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Firing {
    pub schedule_id: ScheduleId,
    pub due_at: DateTime<Utc>,
    /// Asked with "run now", not due by the schedule.
    pub manual: bool,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub outcome: FiringOutcome,
    /// Why it was skipped.
    pub reason: Option<String>,
    pub delivery_id: Option<crate::ids::DeliveryId>,
    pub fired_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum FiringOutcome {
    /// A delivery was queued.
    Enqueued,
    Skipped,
}

/// `getSchedulerStats` (seed 004), over the caller's companies.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerStats {
    pub total: i64,
    pub active: i64,
    /// Active schedules whose next run has passed (firing now, or no
    /// scheduler running).
    pub due: i64,
    /// Deliveries created by schedules that are pending or retrying.
    pub running: i64,
    /// Schedules whose last delivery failed (consecutive failures > 0).
    pub failing: i64,
    /// The ten latest firings, newest first.
    pub last_runs: Vec<Firing>,
}

pub async fn stats(
    db: &PgPool,
    scope: &CompanyScope,
    now: DateTime<Utc>,
) -> Result<SchedulerStats, sqlx::Error> {
    let (total, active, due, failing): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*),
                count(*) FILTER (WHERE active),
                count(*) FILTER (WHERE active AND next_run <= $2),
                count(*) FILTER (WHERE consecutive_failures > 0)
         FROM scheduled_deliveries
         WHERE ($1::uuid[] IS NULL OR company_id = ANY($1))",
    )
    .bind(scope.as_filter())
    .bind(now)
    .fetch_one(db)
    .await?;
    let running: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM impact_deliveries
         WHERE schedule_id IS NOT NULL AND status IN ('pending', 'retrying')
           AND ($1::uuid[] IS NULL OR company_id = ANY($1))",
    )
    .bind(scope.as_filter())
    .fetch_one(db)
    .await?;
    let last_runs = sqlx::query_as(
        "SELECT f.schedule_id, f.due_at, f.manual, f.period_start, f.period_end, f.outcome,
                f.reason, f.delivery_id, f.fired_at
         FROM schedule_firings f JOIN scheduled_deliveries s ON s.id = f.schedule_id
         WHERE ($1::uuid[] IS NULL OR s.company_id = ANY($1))
         ORDER BY f.fired_at DESC LIMIT 10",
    )
    .bind(scope.as_filter())
    .fetch_all(db)
    .await?;
    Ok(SchedulerStats {
        total,
        active,
        due,
        running,
        failing,
        last_runs,
    })
}
