//! The retention job: once a day, on one replica, finished deliveries whose
//! last change is older than `RETENTION_DAYS` are deleted with their
//! attempts and webhook events, and so are webhook events that name no
//! delivery, SLA alert notifications sent (or given up) as long ago,
//! schedule firings, finished ingest runs and rejected report-ready
//! messages as old, and the bus's published outbox events older
//! than `RETENTION_OUTBOX_HOURS`. Pending and retrying deliveries (in
//! flight or not) and unpublished events are never touched, however old.
//!
//! The work goes in batches of `RETENTION_BATCH_SIZE`, each one statement
//! and so one short transaction, that skips rows another transaction holds
//! (a worker, a webhook, a replay) rather than waiting for them, with
//! `RETENTION_BATCH_PAUSE_MS` between batches: the job never holds many
//! locks for long nor keeps the pipeline from the database. Shutdown stops
//! it between batches.
//!
//! Which replica runs a day is decided by inserting that day's row into
//! `maintenance_runs`; see [`run_if_due`]. The operator's view is in
//! `docs/runbook.md` ("Retention").

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::RetentionConfig;

/// The job's name in `maintenance_runs`.
pub const JOB: &str = "retention";

/// The tables the job deletes from, as the metric's `table` label.
pub const TABLES: [&str; 8] = [
    DELIVERIES,
    ATTEMPTS,
    WEBHOOK_EVENTS,
    SLA_NOTIFICATIONS,
    FIRINGS,
    INGEST_RUNS,
    REJECTED,
    OUTBOX,
];
const DELIVERIES: &str = "impact_deliveries";
const ATTEMPTS: &str = "delivery_attempts";
const WEBHOOK_EVENTS: &str = "impact_webhook_events";
const SLA_NOTIFICATIONS: &str = "sla_notifications";
const FIRINGS: &str = "schedule_firings";
const INGEST_RUNS: &str = "ingest_runs";
const REJECTED: &str = "bus_rejected";
const OUTBOX: &str = "bus_outbox";

/// How long a run holds its day without renewing: it renews after every
/// batch (a batch and its pause take well under a second, the pause at most
/// a minute), so only a run whose process died, or lost the database, lets
/// the lease run out, and the next replica to ask then takes the day over.
const LEASE: Duration = Duration::from_secs(300);

/// Webhook events are kept at least this long whatever `RETENTION_DAYS`
/// says: senders retry one event id for up to ~75 hours, and the stored
/// event is what answers a repeat as a repeat (docs/api.md).
const EVENT_MIN_DAYS: i64 = 7;

/// Rows removed, per table. Stored as the day's `removed` in
/// `maintenance_runs`; a field added later (another table) reads as 0 from
/// older rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Removed {
    pub deliveries: u64,
    pub attempts: u64,
    pub webhook_events: u64,
    pub sla_notifications: u64,
    pub schedule_firings: u64,
    pub ingest_runs: u64,
    pub rejected_messages: u64,
    pub outbox_events: u64,
}

impl Removed {
    const ZERO: Removed = Removed {
        deliveries: 0,
        attempts: 0,
        webhook_events: 0,
        sla_notifications: 0,
        schedule_firings: 0,
        ingest_runs: 0,
        rejected_messages: 0,
        outbox_events: 0,
    };

    /// The counts by table name, in [`TABLES`]' order.
    fn per_table(self) -> [(&'static str, u64); TABLES.len()] {
        [
            (DELIVERIES, self.deliveries),
            (ATTEMPTS, self.attempts),
            (WEBHOOK_EVENTS, self.webhook_events),
            (SLA_NOTIFICATIONS, self.sla_notifications),
            (FIRINGS, self.schedule_firings),
            (INGEST_RUNS, self.ingest_runs),
            (REJECTED, self.rejected_messages),
            (OUTBOX, self.outbox_events),
        ]
    }
}

impl std::ops::AddAssign for Removed {
    fn add_assign(&mut self, other: Self) {
        self.deliveries += other.deliveries;
        self.attempts += other.attempts;
        self.webhook_events += other.webhook_events;
        self.sla_notifications += other.sla_notifications;
        self.schedule_firings += other.schedule_firings;
        self.ingest_runs += other.ingest_runs;
        self.rejected_messages += other.rejected_messages;
        self.outbox_events += other.outbox_events;
    }
}

/// What is old enough to go, as of one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Horizons {
    /// Finished deliveries last changed before this.
    deliveries: DateTime<Utc>,
    /// Webhook events received before this: the earlier of the delivery
    /// horizon and [`EVENT_MIN_DAYS`] ago.
    events: DateTime<Utc>,
    /// Outbox events published before this.
    outbox: DateTime<Utc>,
}

impl Horizons {
    fn at(now: DateTime<Utc>, config: &RetentionConfig) -> Self {
        let deliveries = now - chrono::Duration::days(i64::from(config.days));
        let events = deliveries.min(now - chrono::Duration::days(EVENT_MIN_DAYS));
        let outbox = now - chrono::Duration::hours(i64::from(config.outbox_hours));
        Self {
            deliveries,
            events,
            outbox,
        }
    }
}

/// One kind of batch. The sweep runs each to exhaustion, in this order.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Finished deliveries, with their attempts and webhook events.
    Deliveries,
    /// Webhook events that name no delivery.
    UnlinkedEvents,
    /// SLA alert notifications sent or given up before the delivery
    /// horizon (an unsent one is still owed to PagerDuty or Slack).
    SentAlerts,
    /// Schedule firings before the delivery horizon: a schedule's next due
    /// time is kept on the schedule, so an old firing only records history.
    Firings,
    /// Ingest runs finished before the delivery horizon: a run's records
    /// and cursor stay; the run is its history.
    IngestRuns,
    /// Report-ready messages the bus consumer terminated, listed for ops.
    Rejected,
    /// The bus's outbox events, published long enough ago.
    PublishedEvents,
}

impl Step {
    const ALL: [Step; 7] = [
        Step::Deliveries,
        Step::UnlinkedEvents,
        Step::SentAlerts,
        Step::Firings,
        Step::IngestRuns,
        Step::Rejected,
        Step::PublishedEvents,
    ];

    /// Deletes one batch of at most `limit` rows of the step's own table,
    /// in one statement; what it removed, and whether it was full (more may
    /// be left).
    async fn batch(
        self,
        db: &PgPool,
        horizons: Horizons,
        limit: i64,
    ) -> Result<(Removed, bool), sqlx::Error> {
        match self {
            // The attempts and events are deleted here rather than by the
            // foreign keys (attempts cascade, events would be kept with a
            // NULL delivery) so that they are counted, and so a delivery
            // and everything of it go in one transaction. A delivery one of
            // whose events arrived after the event horizon stays, with that
            // event, until the event is old enough: the event answers its
            // sender's repeats. Rows locked elsewhere are being changed (a
            // replay, a webhook): skipped, they are not finished or not
            // old. Oldest first, in the order of the partial index
            // (migration 20261209000002): a plain scan of the table would
            // walk over every batch already deleted (dead until vacuumed)
            // again on each batch.
            Step::Deliveries => {
                let (deliveries, attempts, events): (i64, i64, i64) = sqlx::query_as(
                    "WITH doomed AS (
                         SELECT id FROM impact_deliveries d
                         WHERE status IN ('success', 'failed') AND updated_at < $1
                           AND NOT EXISTS (SELECT 1 FROM impact_webhook_events e
                                           WHERE e.delivery_record_id = d.id
                                             AND e.received_at >= $2)
                         ORDER BY updated_at
                         LIMIT $3
                         FOR UPDATE SKIP LOCKED
                     ), attempts AS (
                         DELETE FROM delivery_attempts
                         WHERE delivery_id IN (SELECT id FROM doomed)
                         RETURNING 1
                     ), events AS (
                         DELETE FROM impact_webhook_events
                         WHERE delivery_record_id IN (SELECT id FROM doomed)
                         RETURNING 1
                     ), deliveries AS (
                         DELETE FROM impact_deliveries
                         WHERE id IN (SELECT id FROM doomed)
                         RETURNING 1
                     )
                     SELECT (SELECT count(*) FROM deliveries), (SELECT count(*) FROM attempts),
                            (SELECT count(*) FROM events)",
                )
                .bind(horizons.deliveries)
                .bind(horizons.events)
                .bind(limit)
                .fetch_one(db)
                .await?;
                let removed = Removed {
                    deliveries: deliveries as u64,
                    attempts: attempts as u64,
                    webhook_events: events as u64,
                    ..Removed::default()
                };
                Ok((removed, deliveries >= limit))
            }
            Step::UnlinkedEvents => UNLINKED_EVENTS.batch(db, horizons.events, limit).await,
            Step::SentAlerts => SENT_ALERTS.batch(db, horizons.deliveries, limit).await,
            Step::Firings => FIRED.batch(db, horizons.deliveries, limit).await,
            Step::IngestRuns => ENDED_RUNS.batch(db, horizons.deliveries, limit).await,
            Step::Rejected => REJECTIONS.batch(db, horizons.deliveries, limit).await,
            Step::PublishedEvents => PUBLISHED.batch(db, horizons.outbox, limit).await,
        }
    }
}

/// A table whose old rows go on their own, oldest first: one batch is one
/// statement deleting at most `limit` rows older than the horizon (`$1`),
/// skipping rows another transaction holds.
struct Oldest {
    table: &'static str,
    /// The primary key's columns.
    key: &'static str,
    /// Which rows are old, given the horizon `$1`.
    old: &'static str,
    order: &'static str,
    /// The count, as the field of [`Removed`] it goes to.
    removed: fn(u64) -> Removed,
}

/// Webhook events that name no delivery.
const UNLINKED_EVENTS: Oldest = Oldest {
    table: WEBHOOK_EVENTS,
    key: "id",
    old: "delivery_record_id IS NULL AND received_at < $1",
    order: "received_at",
    removed: |rows| Removed {
        webhook_events: rows,
        ..Removed::ZERO
    },
};
/// Few rows (one per alert state change): no index of their own.
const SENT_ALERTS: Oldest = Oldest {
    table: SLA_NOTIFICATIONS,
    key: "id",
    old: "coalesce(sent_at, abandoned_at) < $1",
    order: "id",
    removed: |rows| Removed {
        sla_notifications: rows,
        ..Removed::ZERO
    },
};
/// By the index of migration 20261213000001.
const FIRED: Oldest = Oldest {
    table: FIRINGS,
    key: "schedule_id, due_at",
    old: "fired_at < $1",
    order: "fired_at",
    removed: |rows| Removed {
        schedule_firings: rows,
        ..Removed::ZERO
    },
};
/// Finished runs only (a running one has no `finished_at`), by the index
/// of migration 20261213000002.
const ENDED_RUNS: Oldest = Oldest {
    table: INGEST_RUNS,
    key: "id",
    old: "status <> 'running' AND finished_at < $1",
    order: "finished_at",
    removed: |rows| Removed {
        ingest_runs: rows,
        ..Removed::ZERO
    },
};
/// By the index the list of rejected messages reads, newest first.
const REJECTIONS: Oldest = Oldest {
    table: REJECTED,
    key: "id",
    old: "rejected_at < $1",
    order: "rejected_at",
    removed: |rows| Removed {
        rejected_messages: rows,
        ..Removed::ZERO
    },
};
/// Only published rows: an unpublished one is still owed to the bus,
/// however old (docs/bus.md, "NATS down").
const PUBLISHED: Oldest = Oldest {
    table: OUTBOX,
    key: "seq",
    old: "sent_at IS NOT NULL AND sent_at < $1",
    order: "sent_at",
    removed: |rows| Removed {
        outbox_events: rows,
        ..Removed::ZERO
    },
};

impl Oldest {
    /// One batch: what it removed, and whether it was full.
    async fn batch(
        &self,
        db: &PgPool,
        horizon: DateTime<Utc>,
        limit: i64,
    ) -> Result<(Removed, bool), sqlx::Error> {
        let Oldest {
            table,
            key,
            old,
            order,
            removed,
        } = self;
        // Every part is one of the constants above.
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table}
             WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {old}
                             ORDER BY {order} LIMIT $2 FOR UPDATE SKIP LOCKED)"
        )))
        .bind(horizon)
        .bind(limit)
        .execute(db)
        .await?;
        let rows = done.rows_affected();
        Ok((removed(rows), rows >= limit as u64))
    }
}

/// How a sweep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Nothing old enough is left.
    Done,
    /// Shutdown, between two batches.
    Stopped,
    /// Another run took the day over (this one was presumed dead).
    LeaseLost,
}

impl Ended {
    fn as_str(self) -> &'static str {
        match self {
            Ended::Done => "done",
            Ended::Stopped => "stopped by shutdown",
            Ended::LeaseLost => "taken over by another run",
        }
    }
}

/// Runs today's retention (today: `now`'s UTC date) if no other run has it:
/// the removed rows, or `None` when another replica ran, or is running,
/// today's.
///
/// The day's row in `maintenance_runs` decides: the first to insert it
/// runs. A run holds the day by a lease of five minutes, renewed after
/// every batch. An unfinished day whose lease ran out (its process died) or
/// was let go (its process shut down between batches) is taken over by
/// the next call, on any replica, which sweeps again from the start: the
/// sweep deletes only what is still there, so a second pass is safe. A run
/// that ends in an error keeps its lease, to be taken over once it runs
/// out.
pub async fn run_if_due(
    db: &PgPool,
    config: &RetentionConfig,
    now: DateTime<Utc>,
    shutdown: &CancellationToken,
) -> Result<Option<Removed>, sqlx::Error> {
    let Some(run) = Run::claim(db, now.date_naive()).await? else {
        return Ok(None);
    };
    let (removed, ended) = sweep_with(db, config, now, shutdown, Some(&run)).await?;
    match ended {
        Ended::Done => run.finish(db, removed).await?,
        Ended::Stopped => run.release(db, removed).await?,
        Ended::LeaseLost => {}
    }
    Ok(Some(removed))
}

/// Deletes everything old enough as of `now`, batch by batch, until none
/// is left or `shutdown` is cancelled (checked between batches); what it
/// removed. It holds no day: [`run_if_due`] is the daily job, this is its
/// work (which the benchmark also runs on its own).
pub async fn sweep(
    db: &PgPool,
    config: &RetentionConfig,
    now: DateTime<Utc>,
    shutdown: &CancellationToken,
) -> Result<Removed, sqlx::Error> {
    sweep_with(db, config, now, shutdown, None)
        .await
        .map(|(removed, _)| removed)
}

async fn sweep_with(
    db: &PgPool,
    config: &RetentionConfig,
    now: DateTime<Utc>,
    shutdown: &CancellationToken,
    run: Option<&Run>,
) -> Result<(Removed, Ended), sqlx::Error> {
    let horizons = Horizons::at(now, config);
    let started = Instant::now();
    let mut removed = Removed::default();
    let mut batches = 0u64;
    let ended = 'steps: {
        for step in Step::ALL {
            loop {
                if shutdown.is_cancelled() {
                    break 'steps Ended::Stopped;
                }
                let (batch, full) = step.batch(db, horizons, config.batch_size).await?;
                batches += 1;
                removed += batch;
                for (table, rows) in batch.per_table() {
                    crate::metrics::retention_removed(table, rows);
                }
                if let Some(run) = run
                    && !run.renew(db, removed).await?
                {
                    break 'steps Ended::LeaseLost;
                }
                // A batch short of full found all that was left (rows it
                // skipped as locked are being changed, so not old).
                if !full {
                    break;
                }
                tokio::select! {
                    () = shutdown.cancelled() => break 'steps Ended::Stopped,
                    () = tokio::time::sleep(config.batch_pause) => {}
                }
            }
        }
        Ended::Done
    };
    tracing::info!(
        deliveries = removed.deliveries,
        attempts = removed.attempts,
        webhook_events = removed.webhook_events,
        sla_notifications = removed.sla_notifications,
        schedule_firings = removed.schedule_firings,
        ingest_runs = removed.ingest_runs,
        rejected_messages = removed.rejected_messages,
        outbox_events = removed.outbox_events,
        batches,
        horizon = %horizons.deliveries,
        events_horizon = %horizons.events,
        elapsed_ms = started.elapsed().as_millis() as u64,
        ended = ended.as_str(),
        "retention sweep ended"
    );
    Ok((removed, ended))
}

/// One run's hold on a day of `maintenance_runs`.
#[derive(Debug)]
struct Run {
    day: NaiveDate,
    /// This run's own id: the day's `runner` while it holds it.
    runner: Uuid,
    /// What earlier runs of the day removed (a take-over continues their
    /// count).
    before: Removed,
}

impl Run {
    /// Takes `day`: inserts its row, or takes over an unfinished one whose
    /// lease ran out or was let go; `None` when the day is finished or held.
    /// Concurrent callers meet at the primary key, and a take-over
    /// re-checks the row it locked, so exactly one gets it.
    async fn claim(db: &PgPool, day: NaiveDate) -> Result<Option<Self>, sqlx::Error> {
        let runner = Uuid::new_v4();
        let before: Option<sqlx::types::Json<Removed>> = sqlx::query_scalar(
            "INSERT INTO maintenance_runs (job, day, runner, lease_until)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4))
             ON CONFLICT (job, day) DO UPDATE
                 SET runner = EXCLUDED.runner, lease_until = EXCLUDED.lease_until,
                     takeovers = maintenance_runs.takeovers + 1
                 WHERE maintenance_runs.finished_at IS NULL
                   AND (maintenance_runs.lease_until IS NULL
                        OR maintenance_runs.lease_until < now())
             RETURNING removed",
        )
        .bind(JOB)
        .bind(day)
        .bind(runner)
        .bind(LEASE.as_secs_f64())
        .fetch_optional(db)
        .await?;
        Ok(before.map(|before| Run {
            day,
            runner,
            before: before.0,
        }))
    }

    /// The day's count so far, with `removed` of this run.
    fn total(&self, removed: Removed) -> sqlx::types::Json<Removed> {
        let mut total = self.before;
        total += removed;
        sqlx::types::Json(total)
    }

    /// Renews the lease and records the count; false when another run has
    /// taken the day over.
    async fn renew(&self, db: &PgPool, removed: Removed) -> Result<bool, sqlx::Error> {
        let renewed = sqlx::query(
            "UPDATE maintenance_runs
             SET lease_until = now() + make_interval(secs => $4), removed = $5
             WHERE job = $1 AND day = $2 AND runner = $3 AND finished_at IS NULL",
        )
        .bind(JOB)
        .bind(self.day)
        .bind(self.runner)
        .bind(LEASE.as_secs_f64())
        .bind(self.total(removed))
        .execute(db)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// The day is done.
    async fn finish(&self, db: &PgPool, removed: Removed) -> Result<(), sqlx::Error> {
        self.end(db, removed, true).await
    }

    /// Lets the day go unfinished, so another replica takes it over at
    /// once rather than after the lease.
    async fn release(&self, db: &PgPool, removed: Removed) -> Result<(), sqlx::Error> {
        self.end(db, removed, false).await
    }

    /// Records the day's counts and gives the lease up, finished or not.
    async fn end(&self, db: &PgPool, removed: Removed, finished: bool) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE maintenance_runs
             SET finished_at = CASE WHEN $5 THEN now() END, lease_until = NULL, removed = $4
             WHERE job = $1 AND day = $2 AND runner = $3",
        )
        .bind(JOB)
        .bind(self.day)
        .bind(self.runner)
        .bind(self.total(removed))
        .bind(finished)
        .execute(db)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn days(days: u32) -> RetentionConfig {
        RetentionConfig {
            days,
            batch_size: 100,
            batch_pause: std::time::Duration::ZERO,
            outbox_hours: 24,
        }
    }

    #[test]
    fn the_horizon_is_the_retention_before_now() {
        let horizons = Horizons::at(at("2026-12-09T03:00:00Z"), &days(90));
        assert_eq!(horizons.deliveries, at("2026-09-10T03:00:00Z"));
        assert_eq!(horizons.events, horizons.deliveries);
        assert_eq!(horizons.outbox, at("2026-12-08T03:00:00Z"));
    }

    #[test]
    fn webhook_events_are_kept_at_least_seven_days() {
        let now = at("2026-12-09T03:00:00Z");
        let horizons = Horizons::at(now, &days(1));
        assert_eq!(horizons.deliveries, at("2026-12-08T03:00:00Z"));
        assert_eq!(horizons.events, at("2026-12-02T03:00:00Z"));
        assert_eq!(
            Horizons::at(now, &days(7)).events,
            Horizons::at(now, &days(7)).deliveries
        );
    }

    #[test]
    fn removed_reads_a_count_stored_before_a_table_was_added() {
        let removed: Removed = serde_json::from_str(r#"{"deliveries": 3, "attempts": 5}"#).unwrap();
        assert_eq!(
            removed,
            Removed {
                deliveries: 3,
                attempts: 5,
                webhook_events: 0,
                sla_notifications: 0,
                schedule_firings: 0,
                ingest_runs: 0,
                rejected_messages: 0,
                outbox_events: 0
            }
        );
        let mut total = removed;
        total += removed;
        assert_eq!(
            serde_json::to_value(total).unwrap(),
            serde_json::json!({"deliveries": 6, "attempts": 10, "webhook_events": 0, "sla_notifications": 0, "schedule_firings": 0, "ingest_runs": 0, "rejected_messages": 0, "outbox_events": 0})
        );
    }
}
