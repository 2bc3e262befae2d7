//! The retention job (`scheduler::retention`) over a fresh database:
//! deliveries created through the API, attempted through the queue's own
//! claim and outcome statements, webhook events sent signed through the
//! router; then aged by moving their timestamps back, so nothing sleeps.

use std::time::Duration;

use axum::http::{Method, Request, StatusCode};
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use impact_in::{
    config::RetentionConfig,
    connectors::ErrorClass,
    delivery::{
        DeliveryStatus,
        queue::{self, AttemptRecord, Outcome},
    },
    scheduler::retention::{self, Removed},
    webhooks::signature::sign_standard,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{ADMIN, MANAGE, OPS_KEY, TestApp, config, token};

const GOODERA_KEY: [u8; 32] = [33; 32];
const LEASE: Duration = Duration::from_secs(120);

/// 90 days, batches of `batch_size`, no pause.
fn settings(batch_size: i64) -> RetentionConfig {
    RetentionConfig {
        days: 90,
        batch_size,
        batch_pause: Duration::ZERO,
        outbox_hours: 24,
    }
}

struct Fixture {
    app: TestApp,
    pool: PgPool,
    company: Uuid,
    token: String,
}

impl Fixture {
    async fn start(pool: PgPool) -> Self {
        let secret = format!("whsec_{}", STANDARD.encode(GOODERA_KEY));
        let app = TestApp::start(
            pool.clone(),
            config(&[("GOODERA_WEBHOOK_SECRET", secret.as_str())]),
        )
        .await;
        let company = Uuid::new_v4();
        Self {
            app,
            pool,
            company,
            token: token(&[company], &[ADMIN, MANAGE]),
        }
    }

    /// `n` new Goodera deliveries, pending: their record ids and delivery
    /// ids.
    async fn create(&self, n: usize) -> Vec<(Uuid, Uuid)> {
        let mut created = Vec::new();
        for k in 0..n {
            let mut report = crate::common::report(self.company);
            report["volunteerHours"] = json!(100 + k);
            let response = self
                .app
                .post(
                    "/v1/impact-in/deliveries",
                    Some(&self.token),
                    json!({"companyId": self.company, "provider": "goodera", "payload": report}),
                )
                .await;
            assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.body);
            let id = |key: &str| response.body[key].as_str().unwrap().parse().unwrap();
            created.push((id("id"), id("deliveryId")));
        }
        created
    }

    /// Claims every due delivery and records one attempt of each ending in
    /// `status` (`Retrying`: due again after `retry_in`), as a worker does.
    async fn attempt_all(&self, status: DeliveryStatus, retry_in: Duration) {
        let claimed = queue::claim(&self.pool, "retention-test", 1000, LEASE)
            .await
            .unwrap();
        let success = status == DeliveryStatus::Success;
        let outcome = Outcome {
            status: Some(status),
            retry_in: Some(retry_in),
            provider_response: success.then(|| json!({"reference": "ref"})),
            from_cache: false,
            last_error: (!success).then(|| "503 from goodera".into()),
            attempt: Some(AttemptRecord {
                started_at: Utc::now(),
                duration: Duration::from_millis(5),
                http_status: Some(if success { 200 } else { 503 }),
                error_class: (!success).then_some(ErrorClass::Transient),
                error: (!success).then(|| "503 from goodera".into()),
                response_excerpt: None,
            }),
        };
        let finished: Vec<_> = claimed.iter().map(|c| (c, &outcome)).collect();
        let landed = queue::complete(&self.pool, &finished, false).await.unwrap();
        assert_eq!(landed.len(), claimed.len());
    }

    /// A signed Goodera `data.received` event for `delivery_id` (unknown
    /// ids are stored unmatched).
    async fn webhook(&self, delivery_id: Uuid) {
        let id = format!("msg_{}", Uuid::new_v4().simple());
        let body = json!({"type": "data.received", "timestamp": Utc::now(),
                          "data": {"idempotency_key": delivery_id}})
        .to_string();
        let now = Utc::now().timestamp();
        let request = Request::builder()
            .method(Method::POST)
            .uri("/webhooks/goodera")
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", now.to_string())
            .header(
                "webhook-signature",
                sign_standard(&GOODERA_KEY, &id, now, body.as_bytes()),
            )
            .body(axum::body::Body::from(body))
            .unwrap();
        let answer = self.app.send(request).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    }

    /// Moves the deliveries' creation and last change `days` back.
    async fn age(&self, ids: &[Uuid], days: i32) {
        sqlx::query(
            "UPDATE impact_deliveries
             SET created_at = created_at - make_interval(days => $2),
                 updated_at = updated_at - make_interval(days => $2)
             WHERE id = ANY($1)",
        )
        .bind(ids)
        .bind(days)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    /// Moves the events of these deliveries (`None`: the unmatched ones)
    /// `days` back.
    async fn age_events(&self, delivery: Option<Uuid>, days: i32) {
        sqlx::query(
            "UPDATE impact_webhook_events
             SET received_at = received_at - make_interval(days => $2),
                 occurred_at = occurred_at - make_interval(days => $2)
             WHERE delivery_record_id IS NOT DISTINCT FROM $1",
        )
        .bind(delivery)
        .bind(days)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    async fn counts(&self) -> Removed {
        let (deliveries, attempts, events, alerts, firings, runs, rejected, outbox): (
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
        ) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM impact_deliveries),
                        (SELECT count(*) FROM delivery_attempts),
                        (SELECT count(*) FROM impact_webhook_events),
                        (SELECT count(*) FROM sla_notifications),
                        (SELECT count(*) FROM schedule_firings),
                        (SELECT count(*) FROM ingest_runs),
                        (SELECT count(*) FROM bus_rejected),
                        (SELECT count(*) FROM bus_outbox)",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap();
        Removed {
            deliveries: deliveries as u64,
            attempts: attempts as u64,
            webhook_events: events as u64,
            sla_notifications: alerts as u64,
            schedule_firings: firings as u64,
            ingest_runs: runs as u64,
            rejected_messages: rejected as u64,
            outbox_events: outbox as u64,
        }
    }

    /// The delivery as the API shows it (404: `None`).
    async fn shown(&self, id: Uuid) -> Option<Value> {
        let response = self
            .app
            .get(&format!("/v1/impact-in/deliveries/{id}"), Some(OPS_KEY))
            .await;
        match response.status {
            StatusCode::OK => Some(response.body),
            StatusCode::NOT_FOUND => None,
            other => panic!("{other}: {}", response.body),
        }
    }

    /// Today's row of `maintenance_runs`: whether finished, whether leased,
    /// take-overs, removed.
    async fn run_row(&self, now: DateTime<Utc>) -> (bool, bool, i32, Removed) {
        let (finished, leased, takeovers, removed): (bool, bool, i32, sqlx::types::Json<Removed>) =
            sqlx::query_as(
                "SELECT finished_at IS NOT NULL, lease_until IS NOT NULL, takeovers, removed
                 FROM maintenance_runs WHERE job = 'retention' AND day = $1",
            )
            .bind(now.date_naive())
            .fetch_one(&self.pool)
            .await
            .unwrap();
        (finished, leased, takeovers, removed.0)
    }

    /// `n` deliveries failed once, 100 days ago.
    async fn old_failed(&self, n: usize) -> Vec<Uuid> {
        let ids: Vec<Uuid> = self.create(n).await.iter().map(|(id, _)| *id).collect();
        self.attempt_all(DeliveryStatus::Failed, Duration::ZERO)
            .await;
        self.age(&ids, 100).await;
        ids
    }
}

fn minus(a: Removed, b: Removed) -> Removed {
    Removed {
        deliveries: a.deliveries - b.deliveries,
        attempts: a.attempts - b.attempts,
        webhook_events: a.webhook_events - b.webhook_events,
        sla_notifications: a.sla_notifications - b.sla_notifications,
        schedule_firings: a.schedule_firings - b.schedule_firings,
        ingest_runs: a.ingest_runs - b.ingest_runs,
        rejected_messages: a.rejected_messages - b.rejected_messages,
        outbox_events: a.outbox_events - b.outbox_events,
    }
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn old_finished_deliveries_go_with_their_attempts_and_webhook_events(pool: PgPool) {
    let f = Fixture::start(pool).await;
    // Three succeeded on their second attempt, two failed on their first;
    // each of the three got an event, and one event matched nothing.
    let succeeded = f.create(3).await;
    f.attempt_all(DeliveryStatus::Retrying, Duration::ZERO)
        .await;
    f.attempt_all(DeliveryStatus::Success, Duration::ZERO).await;
    let failed = f.create(2).await;
    f.attempt_all(DeliveryStatus::Failed, Duration::ZERO).await;
    for (_, delivery_id) in &succeeded {
        f.webhook(*delivery_id).await;
    }
    f.webhook(Uuid::new_v4()).await;
    let old: Vec<Uuid> = succeeded.iter().chain(&failed).map(|(id, _)| *id).collect();
    f.age(&old, 100).await;
    for id in &old {
        f.age_events(Some(*id), 100).await;
    }
    f.age_events(None, 100).await;
    // Finished 10 days ago, with its event: kept.
    let recent = f.create(1).await[0];
    f.attempt_all(DeliveryStatus::Success, Duration::ZERO).await;
    f.webhook(recent.1).await;
    f.age(&[recent.0], 10).await;

    let before = f.counts().await;
    let removed = retention::sweep(
        &f.pool,
        &settings(1000),
        Utc::now(),
        &CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(
        removed,
        Removed {
            deliveries: 5,
            attempts: 3 * 2 + 2,
            webhook_events: 3 + 1,
            sla_notifications: 0,
            schedule_firings: 0,
            ingest_runs: 0,
            rejected_messages: 0,
            outbox_events: 0,
        }
    );
    assert_eq!(minus(before, f.counts().await), removed);
    for id in &old {
        assert_eq!(f.shown(*id).await, None);
    }
    let kept = f.shown(recent.0).await.expect("the recent one is kept");
    assert_eq!(kept["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(kept["events"].as_array().unwrap().len(), 1);
    let metrics =
        impact_in::metrics::render(&impact_in::metrics::install(), Utc::now()).to_string();
    for table in retention::TABLES {
        let series = format!("impact_in_retention_removed_total{{table=\"{table}\"}}");
        assert!(metrics.contains(&series), "{series} in {metrics}");
    }
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn pending_retrying_and_in_flight_work_is_never_touched_however_old(pool: PgPool) {
    let f = Fixture::start(pool).await;
    let retrying = f.create(1).await[0];
    f.attempt_all(DeliveryStatus::Retrying, Duration::from_secs(86_400))
        .await;
    f.webhook(retrying.1).await;
    let in_flight = f.create(1).await[0];
    let claimed = queue::claim(&f.pool, "busy-worker", 10, LEASE)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let pending = f.create(1).await[0];
    let all = [retrying.0, in_flight.0, pending.0];
    f.age(&all, 1000).await;
    f.age_events(Some(retrying.0), 1000).await;

    let before = f.counts().await;
    let removed = retention::sweep(
        &f.pool,
        &settings(1000),
        Utc::now(),
        &CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(removed, Removed::default());
    assert_eq!(f.counts().await, before);
    let statuses: Vec<Value> = [
        f.shown(retrying.0).await,
        f.shown(in_flight.0).await,
        f.shown(pending.0).await,
    ]
    .into_iter()
    .map(|d| d.expect("kept")["status"].clone())
    .collect();
    assert_eq!(
        statuses,
        [json!("retrying"), json!("pending"), json!("pending")]
    );
}

/// A delivery retried for months is kept until its last change is older
/// than the horizon, whenever it was created; the horizon is the `now`
/// given.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_horizon_runs_from_the_last_change_not_the_creation(pool: PgPool) {
    let f = Fixture::start(pool).await;
    let (id, _) = f.create(1).await[0];
    f.attempt_all(DeliveryStatus::Failed, Duration::ZERO).await;
    sqlx::query(
        "UPDATE impact_deliveries
         SET created_at = now() - interval '400 days', updated_at = now() - interval '89 days'
         WHERE id = $1",
    )
    .bind(id)
    .execute(&f.pool)
    .await
    .unwrap();
    let now = Utc::now();
    let shutdown = CancellationToken::new();

    let removed = retention::sweep(&f.pool, &settings(1000), now, &shutdown)
        .await
        .unwrap();
    assert_eq!(removed, Removed::default());
    assert!(f.shown(id).await.is_some());

    let two_days_later = now + chrono::Duration::days(2);
    let removed = retention::sweep(&f.pool, &settings(1000), two_days_later, &shutdown)
        .await
        .unwrap();
    assert_eq!(removed.deliveries, 1);
    assert!(f.shown(id).await.is_none());
}

/// Webhook events are kept 7 days at least (the sender's retries must meet
/// the stored event), whatever the retention; so is a delivery holding one.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn webhook_events_are_kept_seven_days_even_with_a_shorter_retention(pool: PgPool) {
    let f = Fixture::start(pool).await;
    let (id, delivery_id) = f.create(1).await[0];
    f.attempt_all(DeliveryStatus::Success, Duration::ZERO).await;
    f.webhook(delivery_id).await;
    f.age(&[id], 30).await;
    f.age_events(Some(id), 3).await;
    f.webhook(Uuid::new_v4()).await;
    f.webhook(Uuid::new_v4()).await;
    f.age_events(None, 5).await;
    f.webhook(Uuid::new_v4()).await;
    f.age_events(None, 3).await;
    // Two unmatched events are now 8 days old, one is 3 days old.
    let one_day = RetentionConfig {
        days: 1,
        ..settings(1000)
    };
    let shutdown = CancellationToken::new();

    let removed = retention::sweep(&f.pool, &one_day, Utc::now(), &shutdown)
        .await
        .unwrap();
    assert_eq!(
        removed,
        Removed {
            webhook_events: 2,
            ..Removed::default()
        }
    );
    assert!(f.shown(id).await.is_some());

    f.age_events(Some(id), 5).await;
    let removed = retention::sweep(&f.pool, &one_day, Utc::now(), &shutdown)
        .await
        .unwrap();
    assert_eq!(
        removed,
        Removed {
            deliveries: 1,
            attempts: 1,
            webhook_events: 1,
            sla_notifications: 0,
            schedule_firings: 0,
            ingest_runs: 0,
            rejected_messages: 0,
            outbox_events: 0,
        }
    );
    assert_eq!(
        f.counts().await,
        Removed {
            webhook_events: 1,
            ..Removed::default()
        }
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn batches_smaller_than_the_work_remove_all_of_it(pool: PgPool) {
    let f = Fixture::start(pool).await;
    f.old_failed(7).await;
    for _ in 0..5 {
        f.webhook(Uuid::new_v4()).await;
    }
    f.age_events(None, 100).await;

    let removed = retention::sweep(&f.pool, &settings(2), Utc::now(), &CancellationToken::new())
        .await
        .unwrap();

    assert_eq!(
        removed,
        Removed {
            deliveries: 7,
            attempts: 7,
            webhook_events: 5,
            sla_notifications: 0,
            schedule_firings: 0,
            ingest_runs: 0,
            rejected_messages: 0,
            outbox_events: 0,
        }
    );
    assert_eq!(f.counts().await, Removed::default());
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn two_replicas_asking_on_one_day_run_it_once(pool: PgPool) {
    let f = Fixture::start(pool).await;
    f.old_failed(4).await;
    let (now, shutdown, config) = (Utc::now(), CancellationToken::new(), settings(1));

    let (a, b) = tokio::join!(
        retention::run_if_due(&f.pool, &config, now, &shutdown),
        retention::run_if_due(&f.pool, &config, now, &shutdown),
    );

    let ran: Vec<Removed> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert_eq!(ran[0].deliveries, 4);
    assert_eq!(f.run_row(now).await, (true, false, 0, ran[0]));
    let later = now + chrono::Duration::hours(1);
    assert_eq!(
        retention::run_if_due(&f.pool, &config, later, &shutdown)
            .await
            .unwrap(),
        None
    );
    let tomorrow = now + chrono::Duration::days(1);
    assert_eq!(
        retention::run_if_due(&f.pool, &config, tomorrow, &shutdown)
            .await
            .unwrap(),
        Some(Removed::default())
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn shutdown_between_batches_stops_the_run_and_the_next_one_finishes_the_day(pool: PgPool) {
    let f = Fixture::start(pool).await;
    f.old_failed(6).await;
    let now = Utc::now();
    // Batches of 2 with a long pause, so shutdown lands in the first pause.
    let paused = RetentionConfig {
        batch_pause: Duration::from_secs(60),
        ..settings(2)
    };
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let (pool, shutdown) = (f.pool.clone(), shutdown.clone());
        async move { retention::run_if_due(&pool, &paused, now, &shutdown).await }
    });
    while f.counts().await.deliveries > 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    let stopped = run.await.unwrap().unwrap().expect("it ran");

    assert_eq!(
        stopped,
        Removed {
            deliveries: 2,
            attempts: 2,
            webhook_events: 0,
            sla_notifications: 0,
            schedule_firings: 0,
            ingest_runs: 0,
            rejected_messages: 0,
            outbox_events: 0,
        }
    );
    assert_eq!(f.counts().await.deliveries, 4);
    // Unfinished and let go: the next call, on any replica, takes it over.
    assert_eq!(f.run_row(now).await, (false, false, 0, stopped));
    let rest = retention::run_if_due(&f.pool, &settings(2), now, &CancellationToken::new())
        .await
        .unwrap()
        .expect("taken over");
    assert_eq!(rest.deliveries, 4);
    assert_eq!(f.counts().await, Removed::default());
    let day = Removed {
        deliveries: 6,
        attempts: 6,
        webhook_events: 0,
        sla_notifications: 0,
        schedule_firings: 0,
        ingest_runs: 0,
        rejected_messages: 0,
        outbox_events: 0,
    };
    assert_eq!(f.run_row(now).await, (true, false, 1, day));
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_run_that_died_is_taken_over_once_its_lease_runs_out(pool: PgPool) {
    let f = Fixture::start(pool).await;
    f.old_failed(3).await;
    let (now, shutdown, config) = (Utc::now(), CancellationToken::new(), settings(1000));
    // Another replica took today and holds it (as far as anyone knows, it
    // is still deleting).
    sqlx::query(
        "INSERT INTO maintenance_runs (job, day, runner, lease_until, removed)
         VALUES ('retention', $1, $2, now() + interval '4 minutes',
                 '{\"deliveries\": 1, \"attempts\": 1}')",
    )
    .bind(now.date_naive())
    .bind(Uuid::new_v4())
    .execute(&f.pool)
    .await
    .unwrap();
    assert_eq!(
        retention::run_if_due(&f.pool, &config, now, &shutdown)
            .await
            .unwrap(),
        None
    );
    assert_eq!(f.counts().await.deliveries, 3);

    // Its lease ran out: it died.
    sqlx::query("UPDATE maintenance_runs SET lease_until = now() - interval '1 second'")
        .execute(&f.pool)
        .await
        .unwrap();
    let removed = retention::run_if_due(&f.pool, &config, now, &shutdown)
        .await
        .unwrap()
        .expect("taken over");

    assert_eq!(removed.deliveries, 3);
    let day = Removed {
        deliveries: 4,
        attempts: 4,
        webhook_events: 0,
        sla_notifications: 0,
        schedule_firings: 0,
        ingest_runs: 0,
        rejected_messages: 0,
        outbox_events: 0,
    };
    assert_eq!(f.run_row(now).await, (true, false, 1, day));
}

/// The bus's outbox: an event published more than `RETENTION_OUTBOX_HOURS`
/// ago goes; a recently published one stays, and so does one never
/// published, however old (it is still owed to the bus).
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn published_outbox_events_go_after_their_hours_and_unpublished_ones_never(pool: PgPool) {
    let f = Fixture::start(pool).await;
    let company = Uuid::new_v4();
    let (old_sent, new_sent, old_unsent): (i64, i64, i64) = sqlx::query_as(
        "WITH rows AS (
             INSERT INTO bus_outbox (subject, company_id, data, occurred_at, sent_at)
             VALUES ('ingest.donation.made', $1, '{}', now() - interval '30 hours',
                     now() - interval '25 hours'),
                    ('ingest.donation.made', $1, '{}', now() - interval '30 hours',
                     now() - interval '23 hours'),
                    ('ingest.donation.made', $1, '{}', now() - interval '30 days', NULL)
             RETURNING seq
         )
         SELECT min(seq), min(seq) + 1, max(seq) FROM rows",
    )
    .bind(company)
    .fetch_one(&f.pool)
    .await
    .unwrap();

    let removed = retention::sweep(&f.pool, &settings(1), Utc::now(), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(removed.outbox_events, 1);
    let left: Vec<i64> = sqlx::query_scalar("SELECT seq FROM bus_outbox ORDER BY seq")
        .fetch_all(&f.pool)
        .await
        .unwrap();
    assert_eq!(left, vec![new_sent, old_unsent]);
    assert!(!left.contains(&old_sent));
}

/// SLA alert notifications: one sent or given up before the retention
/// horizon goes; a recent one stays, and so does an unsent one, however old
/// (it is still owed to PagerDuty or Slack).
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn sent_alert_notifications_go_after_the_retention_and_unsent_ones_never(pool: PgPool) {
    let f = Fixture::start(pool).await;
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO sla_notifications
             (channel, company_id, provider, metric, transition, body, created_at,
              next_attempt_at, sent_at, abandoned_at)
         VALUES ('slack', $1, 'benevity', 'successRate', 'breach', '{}',
                 now() - interval '100 days', now() - interval '100 days',
                 now() - interval '100 days', NULL),
                ('pagerduty', $1, 'benevity', 'successRate', 'breach', '{}',
                 now() - interval '100 days', now() - interval '100 days',
                 NULL, now() - interval '95 days'),
                ('slack', $1, 'benevity', 'successRate', 'healthy', '{}',
                 now() - interval '1 day', now() - interval '1 day',
                 now() - interval '1 day', NULL),
                ('pagerduty', $1, 'benevity', 'successRate', 'breach', '{}',
                 now() - interval '100 days', now() - interval '100 days', NULL, NULL)
         RETURNING id",
    )
    .bind(Uuid::new_v4())
    .fetch_all(&f.pool)
    .await
    .unwrap();

    let removed = retention::sweep(&f.pool, &settings(1), Utc::now(), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(removed.sla_notifications, 2);
    let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM sla_notifications ORDER BY id")
        .fetch_all(&f.pool)
        .await
        .unwrap();
    assert_eq!(left, vec![ids[2], ids[3]]);
}

/// Schedule firings: one fired before the retention horizon goes, a recent
/// one stays, and the schedule itself, with its next due time, is left as
/// it was (that is what decides when it fires next, not its history).
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn old_schedule_firings_go_and_their_schedule_keeps_its_rhythm(pool: PgPool) {
    let f = Fixture::start(pool).await;
    let schedule = Uuid::new_v4();
    let next_run: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO scheduled_deliveries (id, company_id, platform, schedule, next_run)
         VALUES ($1, $2, 'benevity', 'daily', date_trunc('day', now()) + interval '1 day')
         RETURNING next_run",
    )
    .bind(schedule)
    .bind(f.company)
    .fetch_one(&f.pool)
    .await
    .unwrap();
    // One a day, fired 12 hours past each of the last 100 days: the ten
    // from 90 days and 12 hours ago on are past the 90-day horizon.
    sqlx::query(
        "INSERT INTO schedule_firings
             (schedule_id, due_at, period_start, period_end, outcome, fired_at)
         SELECT $1, t, t - interval '1 day', t, 'skipped', t
         FROM generate_series(0, 99) AS k,
              LATERAL (SELECT now() - k * interval '1 day' - interval '12 hours' AS t) AS at",
    )
    .bind(schedule)
    .execute(&f.pool)
    .await
    .unwrap();

    let removed = retention::sweep(&f.pool, &settings(3), Utc::now(), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(removed.schedule_firings, 10);
    let (left, oldest): (i64, DateTime<Utc>) =
        sqlx::query_as("SELECT count(*), min(fired_at) FROM schedule_firings")
            .fetch_one(&f.pool)
            .await
            .unwrap();
    assert_eq!(left, 90);
    assert!(oldest > Utc::now() - chrono::Duration::days(90), "{oldest}");
    let kept: DateTime<Utc> =
        sqlx::query_scalar("SELECT next_run FROM scheduled_deliveries WHERE id = $1")
            .bind(schedule)
            .fetch_one(&f.pool)
            .await
            .unwrap();
    assert_eq!(kept, next_run);
}

/// Ingest runs: finished ones older than the retention go, whatever their
/// status; a recent one stays, and so does a running one, however old
/// (its process may be alive, or its run is taken over and resumed).
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn finished_ingest_runs_go_after_the_retention_and_running_ones_never(pool: PgPool) {
    let f = Fixture::start(pool).await;
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO ingest_runs (id, company_id, stream, status, page_size, started_at,
                                  finished_at)
         SELECT gen_random_uuid(), $1, 'benevity-volunteers', status, 100,
                now() - age, now() - age + interval '1 minute'
         FROM (VALUES ('succeeded', interval '100 days'), ('failed', interval '95 days'),
                      ('partial', interval '91 days'), ('succeeded', interval '89 days'))
              AS r(status, age)
         RETURNING id",
    )
    .bind(f.company)
    .fetch_all(&f.pool)
    .await
    .unwrap();
    let running: Uuid = sqlx::query_scalar(
        "INSERT INTO ingest_runs (id, company_id, stream, status, page_size, started_at)
         VALUES (gen_random_uuid(), $1, 'benevity-donations', 'running', 100,
                 now() - interval '120 days')
         RETURNING id",
    )
    .bind(f.company)
    .fetch_one(&f.pool)
    .await
    .unwrap();

    let removed = retention::sweep(&f.pool, &settings(2), Utc::now(), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(removed.ingest_runs, 3);
    let mut left: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM ingest_runs")
        .fetch_all(&f.pool)
        .await
        .unwrap();
    left.sort();
    let mut kept = vec![ids[3], running];
    kept.sort();
    assert_eq!(left, kept);
}

/// Rejected report-ready messages: listed for ops until the retention
/// horizon, then removed.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn rejected_bus_messages_go_after_the_retention(pool: PgPool) {
    let f = Fixture::start(pool).await;
    // Message n was rejected n × 30 days (and an hour) ago.
    sqlx::query(
        "INSERT INTO bus_rejected (id, stream, stream_sequence, subject, reason_code, reason,
                                   rejected_at)
         SELECT gen_random_uuid(), 'IMPACT_REPORTS', n, 'impact.report.ready', 'not_json',
                'not JSON', now() - n * interval '30 days' - interval '1 hour'
         FROM generate_series(1, 4) AS n",
    )
    .execute(&f.pool)
    .await
    .unwrap();

    let removed = retention::sweep(&f.pool, &settings(1), Utc::now(), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(removed.rejected_messages, 2);
    let left: Vec<i64> =
        sqlx::query_scalar("SELECT stream_sequence FROM bus_rejected ORDER BY stream_sequence")
            .fetch_all(&f.pool)
            .await
            .unwrap();
    assert_eq!(left, [1, 2]);
}
