//! Firing: one due time of one schedule becomes at most one delivery.
//!
//! Exactly once across replicas, by three locks in depth: the schedule row
//! is held `FOR UPDATE SKIP LOCKED` while it fires (another replica skips
//! it), its firing row is unique on (schedule, due time), and the delivery
//! id is derived from both, so even a firing repeated after a crash between
//! commit and anything else finds its delivery already there.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{
    SchedulerContext,
    metrics::MetricsError,
    report,
    schedule::{Firing, FiringOutcome, StoredSchedule},
    timing::{self, Period},
};
use crate::{
    delivery::{
        payload_hash,
        store::{self, NewRow},
    },
    ids::{DeliveryId, RecordId},
};

/// Schedules fired per transaction: bounds how long their rows stay locked.
const BATCH: i64 = 20;

/// Where deterministic delivery ids of firings live (UUID v5).
const FIRING_NAMESPACE: Uuid = Uuid::from_u128(0x3f7e_91a4_2c5d_4b8e_a061_5d2f_7c9b_e413);

#[derive(Debug, thiserror::Error)]
pub enum FireError {
    #[error("scheduler: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored schedule whose period cannot be computed (the far ends of
    /// the calendar); it is deactivated rather than retried forever.
    #[error("no period for a firing due at {0}")]
    NoPeriod(DateTime<Utc>),
    /// The report's metrics could not be had: the firing does not happen
    /// (nothing is written) and its due time is tried again.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// The delivery id of the firing of `schedule` due at `due`: the same for
/// every replica and every repeat.
pub fn delivery_id(schedule: crate::ids::ScheduleId, due: DateTime<Utc>) -> DeliveryId {
    let name = format!(
        "{}/{}",
        schedule.0,
        due.to_rfc3339_opts(SecondsFormat::Micros, true)
    );
    DeliveryId(Uuid::new_v5(&FIRING_NAMESPACE, name.as_bytes()))
}

/// Fires every schedule due at `now` (each once, for its latest missed due
/// time) and moves it to its next due time; the firings made. A schedule
/// whose report's metrics fail is logged and left due, for a later tick.
pub async fn tick(ctx: &SchedulerContext, now: DateTime<Utc>) -> Result<Vec<Firing>, FireError> {
    let mut fired = Vec::new();
    // Schedules left due this tick (their metrics failed), not selected
    // again by its next batch.
    let mut deferred: Vec<Uuid> = Vec::new();
    loop {
        let mut tx = ctx.db().begin().await?;
        let due: Vec<StoredSchedule> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM scheduled_deliveries
             WHERE active AND next_run <= $1 AND id <> ALL($3)
             ORDER BY next_run LIMIT $2
             FOR UPDATE SKIP LOCKED",
            super::schedule::COLUMNS
        )))
        .bind(now)
        .bind(BATCH)
        .bind(&deferred)
        .fetch_all(&mut *tx)
        .await?;
        for schedule in &due {
            let last_handled = schedule
                .next_run
                .map(|at| at - chrono::Duration::microseconds(1));
            let coalesced = timing::due_now(
                &schedule.schedule,
                schedule.timezone,
                last_handled.unwrap_or(now),
                now,
            );
            if let Some(at) = coalesced.fire {
                match fire(ctx, &mut tx, schedule, at, false).await {
                    Ok(firing) => fired.push(firing),
                    // This schedule keeps its due time and is tried again
                    // on a later tick; the others in the batch still fire.
                    Err(FireError::Metrics(err)) => {
                        tracing::warn!(
                            schedule = %schedule.id.0,
                            company = %schedule.company_id,
                            due = %at,
                            error = %err,
                            "schedule not fired: its report's metrics are unavailable; trying again later"
                        );
                        deferred.push(schedule.id.0);
                        continue;
                    }
                    Err(err) => return Err(err),
                }
            }
            sqlx::query(
                "UPDATE scheduled_deliveries
                 SET next_run = $2, active = active AND $2 IS NOT NULL, updated_at = now()
                 WHERE id = $1",
            )
            .bind(schedule.id)
            .bind(coalesced.next)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if fired.iter().any(|f| f.outcome == FiringOutcome::Enqueued) {
            ctx.delivery.queue.queued();
        }
        if (due.len() as i64) < BATCH {
            return Ok(fired);
        }
    }
}

/// "Run now": fires `schedule` once, for the period it would cover if it
/// were due now, without moving its rhythm.
pub async fn run_now(
    ctx: &SchedulerContext,
    schedule: &StoredSchedule,
    now: DateTime<Utc>,
) -> Result<Firing, FireError> {
    let mut tx = ctx.db().begin().await?;
    // Waits for a replica firing it right now, so the two do not interleave.
    sqlx::query("SELECT 1 FROM scheduled_deliveries WHERE id = $1 FOR UPDATE")
        .bind(schedule.id)
        .execute(&mut *tx)
        .await?;
    let firing = fire(ctx, &mut tx, schedule, now, true).await?;
    tx.commit().await?;
    if firing.outcome == FiringOutcome::Enqueued {
        ctx.delivery.queue.queued();
    }
    Ok(firing)
}

/// One firing, inside the transaction that holds the schedule's row.
async fn fire(
    ctx: &SchedulerContext,
    tx: &mut Transaction<'_, Postgres>,
    schedule: &StoredSchedule,
    due: DateTime<Utc>,
    manual: bool,
) -> Result<Firing, FireError> {
    if let Some(done) = sqlx::query_as::<_, Firing>(
        "SELECT schedule_id, due_at, manual, period_start, period_end, outcome, reason,
                delivery_id, fired_at
         FROM schedule_firings WHERE schedule_id = $1 AND due_at = $2",
    )
    .bind(schedule.id)
    .bind(due)
    .fetch_optional(&mut **tx)
    .await?
    {
        return Ok(done);
    }
    let period = timing::period(&schedule.schedule, schedule.timezone, due)
        .ok_or(FireError::NoPeriod(due))?;
    let decision = decide(ctx, tx, schedule, &period, due).await?;
    let (outcome, reason, delivery_id) = match decision {
        Decision::Skip(reason) => (FiringOutcome::Skipped, Some(reason), None),
        Decision::Send { id, payload } => {
            let hash = payload_hash(&payload);
            store::insert_rows(
                &mut **tx,
                &[NewRow {
                    id: RecordId::generate(),
                    company_id: schedule.company_id,
                    provider: schedule.platform,
                    delivery_id: id,
                    idempotency_key: None,
                    payload,
                    payload_hash: hash,
                    traceparent: crate::telemetry::current_traceparent(),
                    schedule_id: Some(schedule.id),
                    cause_event_id: None,
                }],
            )
            .await?;
            (FiringOutcome::Enqueued, None, Some(id))
        }
    };
    let firing: Firing = sqlx::query_as(
        "INSERT INTO schedule_firings
             (schedule_id, due_at, manual, period_start, period_end, outcome, reason, delivery_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING schedule_id, due_at, manual, period_start, period_end, outcome, reason,
                   delivery_id, fired_at",
    )
    .bind(schedule.id)
    .bind(due)
    .bind(manual)
    .bind(period.start)
    .bind(period.end)
    .bind(outcome)
    .bind(&reason)
    .bind(delivery_id)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE scheduled_deliveries
         SET last_run = $2,
             last_status = CASE WHEN $3 THEN 'skipped' ELSE last_status END,
             last_error = CASE WHEN $3 THEN NULL ELSE last_error END,
             updated_at = now()
         WHERE id = $1",
    )
    .bind(schedule.id)
    .bind(due)
    .bind(outcome == FiringOutcome::Skipped)
    .execute(&mut **tx)
    .await?;
    crate::metrics::schedule_fired(schedule.platform, outcome);
    tracing::info!(
        schedule = %schedule.id.0,
        company = %schedule.company_id,
        platform = %schedule.platform,
        due = %due,
        manual,
        outcome = ?outcome,
        reason = reason.as_deref().unwrap_or(""),
        "schedule fired"
    );
    Ok(firing)
}

enum Decision {
    Skip(String),
    Send { id: DeliveryId, payload: Value },
}

/// What the firing sends: the report of its period, with the impact
/// platform's metrics when configured, unless there is no data, or the same
/// report went to the same provider within 24 hours (seed 004's
/// idempotency). Nothing is written before the metrics are in, so their
/// failure leaves the transaction as it found it.
async fn decide(
    ctx: &SchedulerContext,
    tx: &mut Transaction<'_, Postgres>,
    schedule: &StoredSchedule,
    period: &Period,
    due: DateTime<Utc>,
) -> Result<Decision, FireError> {
    let Some(mut report) =
        report::build(ctx.db(), schedule.company_id, period, schedule.timezone).await?
    else {
        return Ok(Decision::Skip(
            "no ingested data for the period: nothing to report".into(),
        ));
    };
    if let Some(metrics) = &ctx.metrics {
        metrics.fill(&mut report).await?;
    }
    let payload = serde_json::to_value(&report).expect("a report always serialises");
    let id = delivery_id(schedule.id, due);
    let sent_before: Option<DeliveryId> = sqlx::query_scalar(
        "SELECT delivery_id FROM impact_deliveries
         WHERE company_id = $1 AND provider = $2 AND payload_hash = $3
           AND created_at > now() - interval '24 hours' AND delivery_id <> $4
         LIMIT 1",
    )
    .bind(schedule.company_id)
    .bind(schedule.platform)
    .bind(payload_hash(&payload))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match sent_before {
        Some(earlier) => Decision::Skip(format!(
            "an identical report went to {} within 24 hours (delivery {earlier})",
            schedule.platform
        )),
        None => Decision::Send { id, payload },
    })
}
