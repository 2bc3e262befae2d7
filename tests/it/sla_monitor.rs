//! The SLA monitor against the sandbox's PagerDuty and Slack receivers over
//! real HTTP, on a fresh database, with a clock moved by hand: pages once
//! per incident, resolves itself, never re-pages after a restart or from a
//! second replica, and delivers every alert once a receiver is back.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use impact_in::{
    clock::ManualClock,
    sandbox::{Sandbox, SandboxConfig},
    sla::{MonitorContext, monitor, notify},
};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{self, sandbox_api};

const ROUTING_KEY: &str = "sandboxroutingkey0123456789abcde";

struct Monitor {
    pool: PgPool,
    clock: Arc<ManualClock>,
    sandbox: Sandbox,
    ctx: MonitorContext,
}

impl Monitor {
    async fn start(pool: PgPool) -> Self {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let clock = Arc::new(ManualClock::new("2026-03-02T12:00:00Z".parse().unwrap()));
        let ctx = context(&pool, &sandbox, clock.clone());
        Self {
            pool,
            clock,
            sandbox,
            ctx,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        use impact_in::clock::Clock;
        self.clock.now()
    }

    /// A second process on the same database: a restart, or a replica.
    fn another(&self) -> MonitorContext {
        context(&self.pool, &self.sandbox, self.clock.clone())
    }

    async fn evaluate(&self) -> monitor::Evaluation {
        monitor::evaluate(&self.ctx, self.now()).await.unwrap()
    }

    /// Sends what is due now, then moves the clock to each next due time
    /// (Slack's spacing, a retry) while that is within `seconds` of now.
    async fn deliver(&self, seconds: i64) -> Option<DateTime<Utc>> {
        let until = self.now() + chrono::Duration::seconds(seconds);
        loop {
            let next = notify::deliver_due(&self.ctx, self.now()).await.unwrap();
            match next {
                Some(at) if at <= until => {
                    let ahead = (at - self.now()).to_std().unwrap_or_default();
                    self.clock.advance(ahead);
                }
                _ => return next,
            }
        }
    }

    async fn alerts(&self) -> Value {
        sandbox_api::read(&self.sandbox, "alerts").await
    }

    /// PagerDuty events received: (action, dedup_key).
    async fn pages(&self) -> Vec<(String, String)> {
        self.alerts().await["pagerduty"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| {
                (
                    event["body"]["event_action"].as_str().unwrap().to_owned(),
                    event["body"]["dedup_key"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    async fn slack_texts(&self) -> Vec<String> {
        self.alerts().await["slack"]
            .as_array()
            .unwrap()
            .iter()
            .map(|message| message["body"]["text"].as_str().unwrap().to_owned())
            .collect()
    }

    /// `count` finished deliveries of `company` to `provider`, created from
    /// `created` and finished from `finished`, a millisecond apart.
    async fn seed(
        &self,
        company: Uuid,
        provider: &str,
        status: &str,
        count: i64,
        created: DateTime<Utc>,
        finished: DateTime<Utc>,
    ) {
        sqlx::query(
            "INSERT INTO impact_deliveries
                 (id, company_id, provider, delivery_id, payload, payload_hash, status,
                  attempt_count, created_at, updated_at, delivered_at)
             SELECT gen_random_uuid(), $1, $2, gen_random_uuid(), '{}'::jsonb, md5(random()::text),
                    $3, 1, $4 + make_interval(secs => i / 1000.0),
                    $5 + make_interval(secs => i / 1000.0),
                    CASE WHEN $3 = 'success' THEN $5 + make_interval(secs => i / 1000.0) END
             FROM generate_series(1, $6) AS i",
        )
        .bind(company)
        .bind(provider)
        .bind(status)
        .bind(created)
        .bind(finished)
        .bind(count)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    /// The figures of `company` recover: its failed deliveries turn out
    /// to have succeeded on time, as of now. (A replay would succeed late,
    /// and rightly breach the latency objective.)
    async fn recover(&self, company: Uuid) {
        sqlx::query(
            "UPDATE impact_deliveries SET status = 'success',
                 delivered_at = created_at + interval '30 seconds', updated_at = $2
             WHERE company_id = $1 AND status = 'failed'",
        )
        .bind(company)
        .bind(self.now())
        .execute(&self.pool)
        .await
        .unwrap();
    }

    async fn fault(&self, service: &str, status: u16, count: u32, retry_after: Option<u64>) {
        let mut body = json!({"service": service, "status": status, "count": count});
        if let Some(secs) = retry_after {
            body["retryAfterSecs"] = json!(secs);
        }
        assert!(
            sandbox_api::control(&self.sandbox, "faults", body)
                .await
                .is_success()
        );
    }

    async fn unsent(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM sla_notifications WHERE sent_at IS NULL AND abandoned_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }
}

fn context(pool: &PgPool, sandbox: &Sandbox, clock: Arc<ManualClock>) -> MonitorContext {
    let slack = format!("{}/slack/services/TSANDBOX/BSANDBOX/sandbox", sandbox.url());
    let pagerduty = format!("{}/pagerduty/v2/enqueue", sandbox.url());
    let config = common::config(&[
        ("ENABLE_SLA_MONITORING", "false"),
        ("SLACK_WEBHOOK_URL", &slack),
        ("PAGERDUTY_EVENTS_URL", &pagerduty),
        ("PAGERDUTY_INTEGRATION_KEY", ROUTING_KEY),
        ("PUBLIC_BASE_URL", "https://impact-in.example.com"),
    ]);
    MonitorContext::new(pool.clone(), config.sla, clock, Duration::from_secs(30)).unwrap()
}

fn key(company: Uuid, provider: &str, metric: &str) -> String {
    format!("impact-in/sla/{company}/{provider}/{metric}")
}

/// Two hours ago, 20 successes (2 minutes each) then 20 failures
/// finished: success rate
/// 50 % and a run of 20 (breaches: page), an error budget burning over
/// 6 h and 3 days but not in the last 30 minutes (ticket: Slack only).
async fn failing_goodera(m: &Monitor, company: Uuid) {
    let finished = m.now() - chrono::Duration::hours(2);
    let earlier = finished - chrono::Duration::minutes(2);
    m.seed(company, "goodera", "success", 20, earlier, finished)
        .await;
    m.seed(
        company,
        "goodera",
        "failed",
        20,
        earlier + chrono::Duration::minutes(1),
        finished,
    )
    .await;
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_breach_pages_once_stays_quiet_and_resolves_once_even_across_a_restart(pool: PgPool) {
    let m = Monitor::start(pool).await;
    let (company, healthy) = (Uuid::new_v4(), Uuid::new_v4());
    failing_goodera(&m, company).await;
    let at = m.now() - chrono::Duration::minutes(50);
    m.seed(
        healthy,
        "benevity",
        "success",
        50,
        at - chrono::Duration::minutes(1),
        at,
    )
    .await;

    let first = m.evaluate().await;
    assert!(first.ran);
    assert_eq!((first.companies, first.transitions), (2, 3));
    m.deliver(5).await;
    let success = key(company, "goodera", "successRate");
    let run = key(company, "goodera", "consecutiveFailures");
    let mut pages = m.pages().await;
    pages.sort();
    assert_eq!(
        pages,
        [
            ("trigger".to_owned(), run.clone()),
            ("trigger".to_owned(), success.clone()),
        ]
    );
    let event = &m.alerts().await["pagerduty"][0]["body"];
    assert_eq!(event["routing_key"], ROUTING_KEY);
    assert_eq!(event["payload"]["severity"], "critical");
    assert_eq!(event["payload"]["source"], "impact-in");
    let texts = m.slack_texts().await;
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("SLA breach") && t.contains("success rate 50.00 %")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("SLA warning")
            && t.contains("error budget burn rate")
            && t.contains("over the last 3 days")),
        "{texts:?}"
    );
    assert!(texts.iter().all(|t| t.contains(&format!(
        "https://impact-in.example.com/v1/impact-in/delivery-timeline?companyId={company}"
    ))));

    // Still breached five minutes later: nothing new.
    m.clock.advance(Duration::from_secs(300));
    assert_eq!(m.evaluate().await.transitions, 0);
    // A restart (a new process over the same database): nothing new.
    let restarted = m.another();
    let again = monitor::evaluate(&restarted, m.now()).await.unwrap();
    assert_eq!(again.transitions, 0);
    assert_eq!(
        notify::deliver_due(&restarted, m.now()).await.unwrap(),
        None
    );
    assert_eq!(m.pages().await.len(), 2);
    assert_eq!(m.slack_texts().await.len(), 3);

    // Replayed with success: each page resolved with its own key, once.
    m.clock.advance(Duration::from_secs(300));
    m.recover(company).await;
    assert_eq!(m.evaluate().await.transitions, 3);
    m.deliver(5).await;
    m.clock.advance(Duration::from_secs(300));
    assert_eq!(m.evaluate().await.transitions, 0);
    m.deliver(5).await;
    let resolves: Vec<String> = m
        .pages()
        .await
        .into_iter()
        .filter(|(action, _)| action == "resolve")
        .map(|(_, key)| key)
        .collect();
    assert_eq!(resolves.len(), 2);
    assert!(resolves.contains(&success) && resolves.contains(&run));
    let alerts = m.alerts().await;
    assert_eq!(alerts["openIncidents"], json!([]));
    assert_eq!(alerts["duplicateTriggers"], 0);
    let texts = m.slack_texts().await;
    assert_eq!(
        texts.iter().filter(|t| t.contains("SLA recovered")).count(),
        3,
        "{texts:?}"
    );
    // No payload, nothing personal: the alerts carry figures and ids only.
    assert!(!alerts.to_string().contains("payload\":{\"report"));
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_receiver_down_then_up_gets_each_alert_once_in_order(pool: PgPool) {
    let m = Monitor::start(pool).await;
    let company = Uuid::new_v4();
    failing_goodera(&m, company).await;
    m.fault("pagerduty", 503, 2, None).await;
    m.fault("slack", 500, 1, None).await;
    m.evaluate().await;

    // Both down: nothing recorded as sent; retried after 5 s, then 10 s.
    let next = m.deliver(0).await.unwrap();
    assert_eq!(m.pages().await.len(), 0);
    assert_eq!(next, m.now() + chrono::Duration::seconds(5));
    m.clock.advance(Duration::from_secs(5));
    m.deliver(0).await;
    assert_eq!(m.pages().await.len(), 0, "PagerDuty failed twice");
    m.clock.advance(Duration::from_secs(10));
    m.deliver(10).await;
    assert_eq!(m.pages().await.len(), 2);
    assert_eq!(m.slack_texts().await.len(), 3);
    assert_eq!(m.unsent().await, 0);

    // 429 with Retry-After: not before it says.
    m.recover(company).await;
    m.fault("pagerduty", 429, 1, Some(60)).await;
    m.evaluate().await;
    m.deliver(0).await;
    m.clock.advance(Duration::from_secs(30));
    m.deliver(0).await;
    assert_eq!(m.pages().await.len(), 2, "held back by Retry-After");
    m.clock.advance(Duration::from_secs(31));
    m.deliver(10).await;
    let pages = m.pages().await;
    assert_eq!(pages.len(), 4, "{pages:?}");
    assert_eq!(pages[2].0, "resolve");
    assert_eq!(m.alerts().await["openIncidents"], json!([]));
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_gone_slack_webhook_and_an_invalid_page_are_not_retried(pool: PgPool) {
    let m = Monitor::start(pool).await;
    failing_goodera(&m, Uuid::new_v4()).await;
    m.fault("slack", 410, 1, None).await;
    m.fault("pagerduty", 400, 1, None).await;
    m.evaluate().await;
    m.deliver(5).await;
    m.clock.advance(Duration::from_secs(600));
    m.deliver(5).await;
    let alerts = m.alerts().await;
    // The first page was refused and dropped; the second went out.
    assert_eq!(m.pages().await.len(), 1);
    assert_eq!(alerts["slack"], json!([]));
    let tries = sandbox_api::read(&m.sandbox, "stats").await["alertRequests"]["slack"].clone();
    assert_eq!(tries, 1, "one try, then no more");
    assert_eq!(m.unsent().await, 0);
    let abandoned: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sla_notifications WHERE abandoned_at IS NOT NULL")
            .fetch_one(&m.pool)
            .await
            .unwrap();
    assert_eq!(abandoned, 4, "three Slack messages and one page");
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn one_failure_on_a_quiet_day_does_not_page_and_a_sudden_outage_does(pool: PgPool) {
    let m = Monitor::start(pool).await;
    let (quiet, busy) = (Uuid::new_v4(), Uuid::new_v4());
    m.seed(
        quiet,
        "workday",
        "failed",
        1,
        m.now() - chrono::Duration::minutes(10),
        m.now() - chrono::Duration::minutes(2),
    )
    .await;
    m.evaluate().await;
    m.deliver(5).await;
    assert_eq!(m.pages().await, []);
    let texts = m.slack_texts().await;
    assert_eq!(texts.len(), 1, "too few samples: a warning, not a breach");
    assert!(texts[0].contains("SLA warning"), "{texts:?}");
    assert!(
        texts[0].contains("1 deliveries, too few to breach"),
        "{texts:?}"
    );

    // A busy hour, then everything fails for the last five minutes.
    let hour_ago = m.now() - chrono::Duration::minutes(55);
    m.seed(busy, "benevity", "success", 60, hour_ago, hour_ago)
        .await;
    let minutes_ago = m.now() - chrono::Duration::minutes(4);
    m.seed(busy, "benevity", "failed", 40, minutes_ago, minutes_ago)
        .await;
    m.evaluate().await;
    m.deliver(10).await;
    let pages = m.pages().await;
    assert!(
        pages.contains(&(
            "trigger".into(),
            key(busy, "benevity", "errorBudgetBurnRate")
        )),
        "{pages:?}"
    );
    assert!(
        pages
            .iter()
            .all(|(_, key)| !key.contains(&quiet.to_string()))
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn two_monitors_on_one_database_page_once(pool: PgPool) {
    let m = Monitor::start(pool).await;
    failing_goodera(&m, Uuid::new_v4()).await;
    let other = m.another();
    let now = m.now();
    let (a, b) = tokio::join!(
        monitor::evaluate(&m.ctx, now),
        monitor::evaluate(&other, now)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.transitions + b.transitions, 3, "{a:?} {b:?}");
    let (x, y) = tokio::join!(
        notify::deliver_due(&m.ctx, now),
        notify::deliver_due(&other, now)
    );
    x.unwrap();
    y.unwrap();
    m.deliver(5).await;
    assert_eq!(m.pages().await.len(), 2);
    assert_eq!(m.slack_texts().await.len(), 3);
    assert_eq!(m.alerts().await["duplicateTriggers"], 0);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_gauges_show_each_platform_without_a_company_label(pool: PgPool) {
    let m = Monitor::start(pool.clone()).await;
    failing_goodera(&m, Uuid::new_v4()).await;
    m.evaluate().await;
    let app = common::TestApp::start(pool, common::config(&[])).await;
    let scraped = app
        .get("/metrics", None)
        .await
        .body
        .as_str()
        .unwrap()
        .to_owned();
    for line in [
        "impact_in_sla_status{platform=\"goodera\"} 2",
        "impact_in_sla_status{platform=\"benevity\"} 0",
        "impact_in_sla_success_rate{platform=\"goodera\"} 0.5",
        "impact_in_sla_breaching_companies{platform=\"goodera\"} 1",
        // Set by every scrape from its own database (tests run in
        // parallel in one process): present, whatever the value.
        "impact_in_sla_notifications_pending{channel=\"slack\"}",
    ] {
        assert!(scraped.contains(line), "missing {line}");
    }
    assert!(
        !scraped
            .lines()
            .any(|l| l.starts_with("impact_in_sla") && l.contains("company"))
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_monitor_task_pages_and_stops_on_shutdown(pool: PgPool) {
    let m = Monitor::start(pool).await;
    failing_goodera(&m, Uuid::new_v4()).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(impact_in::sla::task::run(m.ctx.clone(), shutdown.clone()));
    // It evaluates at once on start; wait for the pages it sends.
    tokio::time::timeout(Duration::from_secs(20), async {
        while m.pages().await.len() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the task pages");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops on shutdown")
        .unwrap();
}
