//! The event bus out: what we deliver and ingest, written to the outbox in
//! the same transaction and published by the relay to a real NATS
//! JetStream. Each test has its own events stream and subject prefix
//! (`bus::bus_vars`); the outage test runs a NATS server of its own, which
//! it stops and starts again.

use std::{collections::HashSet, process::Stdio, time::Duration};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use futures::StreamExt;
use impact_in::{bus::consumer, config::BusConfig, provider::Provider};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    bus::{Running, bus, bus_vars, event, js, pairs, publish, set_rules, settings},
    common::{TestApp, config},
    ingest::Ingest,
    pipeline::Pipeline,
};

/// One message of the events stream.
#[derive(Debug)]
struct Published {
    /// Without the test's prefix.
    subject: String,
    msg_id: String,
    body: Value,
}

/// Every message of the events stream, in stream order, once it holds at
/// least `n`.
async fn published(config: &BusConfig, n: usize) -> Vec<Published> {
    let js = js(config).await;
    let total = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(mut stream) = js.get_stream(&config.events_stream).await
                && let Ok(info) = stream.info().await
                && info.state.messages >= n as u64
            {
                return info.state.messages as usize;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the events stream never held {n} messages"));
    let consumer: PullConsumer = js
        .get_stream(&config.events_stream)
        .await
        .unwrap()
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let mut batch = consumer
            .batch()
            .max_messages(total - out.len())
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .unwrap();
        while let Some(message) = batch.next().await {
            let message = message.unwrap();
            let msg_id = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned())
                .expect("every event carries Nats-Msg-Id");
            out.push(Published {
                subject: message
                    .subject
                    .as_str()
                    .strip_prefix(config.events_prefix.as_str())
                    .expect("under the prefix")
                    .to_owned(),
                msg_id,
                body: serde_json::from_slice(&message.payload).unwrap(),
            });
        }
    }
    out
}

async fn delete_events_stream(config: &BusConfig) {
    js(config)
        .await
        .delete_stream(&config.events_stream)
        .await
        .unwrap();
}

/// Waits until the outbox holds no unpublished event.
async fn outbox_drained(db: &PgPool) {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let pending: i64 =
                sqlx::query_scalar("SELECT count(*) FROM bus_outbox WHERE sent_at IS NULL")
                    .fetch_one(db)
                    .await
                    .unwrap();
            if pending == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the outbox never drained");
}

/// The "done when": a report-ready event becomes a delivery, which
/// reaches the sandbox, whose webhooks come back; a subscriber sees
/// `impact.delivery.succeeded` caused by the report event and correlated
/// to the delivery, and the provider statuses caused by the stored webhook
/// events.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_ready_report_delivered_is_published_as_succeeded_with_its_cause(pool: PgPool) {
    let vars = bus_vars();
    let p = Pipeline::start(pool, &pairs(&vars)).await;
    p.webhooks_back_at_once().await;
    let config = settings(&p.app).clone();
    set_rules(&p.app, p.company, &["benevity"]).await;
    let consumer = Running::start(&bus(&p.app));
    let relay = Running::relay(&bus(&p.app));

    let report_event = Uuid::new_v4();
    publish(&config, event(report_event, p.company, None)).await;
    let delivery_id = consumer::delivery_id(report_event, Provider::Benevity);
    crate::bus::until_deliveries(&p.app, p.company, |d| d.len() == 1).await;
    let done = p
        .until(&delivery_id.to_string(), |d| {
            d["providerStatus"] == "processed" && d["status"] == "success"
        })
        .await;
    let record_id = done["id"].as_str().unwrap().to_owned();
    outbox_drained(&p.app.state.db).await;

    // One outcome and two provider statuses (received, processed).
    let events = published(&config, 3).await;
    assert_eq!(events.len(), 3, "{events:?}");
    let succeeded: Vec<&Published> = events
        .iter()
        .filter(|e| e.subject == "impact.delivery.succeeded")
        .collect();
    assert_eq!(succeeded.len(), 1, "{events:?}");
    let body = &succeeded[0].body;
    assert_eq!(body["type"], "impact.delivery.succeeded");
    assert_eq!(body["id"], succeeded[0].msg_id.as_str());
    assert_eq!(body["version"], "1");
    assert_eq!(body["companyId"], p.company.to_string());
    assert_eq!(body["correlationId"], record_id.as_str());
    assert_eq!(body["causationId"], report_event.to_string());
    assert_eq!(body["data"]["deliveryId"], delivery_id.to_string());
    assert_eq!(body["data"]["provider"], "benevity");
    assert_eq!(body["data"]["status"], "success");
    assert_eq!(body["data"]["attemptCount"], 1);
    assert!(body["timestamp"].as_str().is_some(), "{body}");

    let statuses: Vec<&Value> = events
        .iter()
        .filter(|e| e.subject == "impact.delivery.provider-status")
        .map(|e| &e.body)
        .collect();
    let mut seen: Vec<&str> = statuses
        .iter()
        .map(|b| b["data"]["providerStatus"].as_str().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, ["processed", "received"]);
    for status in statuses {
        assert_eq!(status["correlationId"], record_id.as_str());
        let cause: Uuid = status["causationId"].as_str().unwrap().parse().unwrap();
        let stored: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM impact_webhook_events WHERE id = $1)")
                .bind(cause)
                .fetch_one(&p.app.state.db)
                .await
                .unwrap();
        assert!(stored, "the cause is the stored webhook event: {status}");
        assert!(status["data"].get("body").is_none(), "no webhook body");
    }

    consumer.stop().await;
    relay.stop().await;
    crate::bus::delete_stream(&config).await;
    delete_events_stream(&config).await;
}

/// Each record an ingest run stores is one `ingest.*` event, redacted as
/// stored, correlated to its run; a re-run that stores nothing publishes
/// nothing.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn ingested_records_are_published_once_each_and_redacted(pool: PgPool) {
    let vars = bus_vars();
    let t = Ingest::start(pool, &pairs(&vars)).await;
    let config = settings(&t.app).clone();
    let relay = Running::relay(&bus(&t.app));

    let run = t.run("benevity-donations", "&limit=40").await;
    let stored = t.stored("benevity-donations").await as usize;
    assert!(stored > 0);
    outbox_drained(&t.app.state.db).await;
    let events = published(&config, stored).await;
    assert_eq!(events.len(), stored);
    let run_id = run["runId"]
        .as_str()
        .or_else(|| run["run"]["id"].as_str())
        .or_else(|| run["id"].as_str())
        .unwrap_or_else(|| panic!("the run's id in {run}"));
    let mut records = HashSet::new();
    for e in &events {
        assert_eq!(e.subject, "ingest.donation.made");
        assert_eq!(e.body["type"], "ingest.donation.made");
        assert_eq!(e.body["correlationId"], run_id, "{}", e.body);
        assert_eq!(e.body["companyId"], t.company.to_string());
        assert_eq!(e.body["data"]["stream"], "benevity-donations");
        records.insert(e.body["data"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(records.len(), stored, "one event per record");
    let text = events
        .iter()
        .map(|e| e.body.to_string())
        .collect::<String>();
    let generated = impact_in::sandbox::ingest::Stream::BenevityDonations;
    for index in 0..stored as u64 {
        for pii in impact_in::sandbox::ingest::pii_of(generated, index) {
            assert!(!text.contains(&pii), "{pii} was published");
        }
    }

    t.run("benevity-donations", "&limit=40").await;
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM bus_outbox")
        .fetch_one(&t.app.state.db)
        .await
        .unwrap();
    assert_eq!(outbox as usize, stored, "a re-run stored nothing new");

    relay.stop().await;
    delete_events_stream(&config).await;
}

/// A NATS server of the test's own, on a free port, with its store in a
/// directory that outlives a stop, so the stream (and its duplicate
/// window) survives a restart as it does in production.
struct OwnNats {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<tokio::process::Child>,
}

impl OwnNats {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("impact-in-nats-{}", Uuid::new_v4()));
        let mut nats = Self {
            port,
            dir,
            child: None,
        };
        nats.up().await;
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn up(&mut self) {
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nats-server");
        let child = tokio::process::Command::new(binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server runs (scripts/services.sh installs it)");
        self.child = Some(child);
        tokio::time::timeout(Duration::from_secs(20), async {
            while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("nats-server listens");
    }

    async fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Freezes (`STOP`) or resumes (`CONT`) the server: frozen, it keeps
    /// its connections open and answers nothing, so every request waits
    /// out its timeout, as with a server hung or cut off by a network.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().and_then(|c| c.id()).expect("running");
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const SUBJECTS: [&str; 3] = [
    "ingest.volunteer.logged",
    "impact.delivery.succeeded",
    "impact.delivery.failed",
];

/// Writes `count` events, `per_tx` to a transaction, as the writers do;
/// each carries its number `n` (from `first`), which rises with the
/// order of writing.
async fn write_events(db: &PgPool, company: Uuid, first: i64, count: i64, per_tx: i64) {
    let mut n = first;
    while n < first + count {
        let mut tx = db.begin().await.unwrap();
        for _ in 0..per_tx.min(first + count - n) {
            sqlx::query("INSERT INTO bus_outbox (subject, company_id, data) VALUES ($1, $2, $3)")
                .bind(SUBJECTS[(n % 3) as usize])
                .bind(company)
                .bind(json!({ "n": n }))
                .execute(&mut *tx)
                .await
                .unwrap();
            n += 1;
        }
        tx.commit().await.unwrap();
    }
}

async fn sent(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM bus_outbox WHERE sent_at IS NOT NULL")
        .fetch_one(db)
        .await
        .unwrap()
}

/// NATS stopped while two relays publish and writers write, then started
/// again: the outbox grows meanwhile (and the gauge says so), then drains;
/// every event is on the stream exactly once per `Nats-Msg-Id`, in the
/// order written per subject.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn nats_stopped_mid_run_loses_nothing_duplicates_nothing_and_keeps_order(pool: PgPool) {
    let mut nats = OwnNats::start().await;
    let mut vars = bus_vars();
    vars.retain(|(k, _)| *k != "NATS_URL");
    vars.push(("NATS_URL", nats.url()));
    vars.push(("NATS_RELAY_BATCH", "50".into()));
    let app = TestApp::start(pool, config(&pairs(&vars))).await;
    let config = settings(&app).clone();
    let db = app.state.db.clone();
    let company = Uuid::new_v4();
    // Two replicas' relays over one outbox.
    let relays = [Running::relay(&bus(&app)), Running::relay(&bus(&app))];

    // Written while the relays publish; NATS goes down part-way.
    let writer = tokio::spawn({
        let db = db.clone();
        async move { write_events(&db, company, 0, 1500, 10).await }
    });
    tokio::time::timeout(Duration::from_secs(30), async {
        while sent(&db).await < 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the relays publish");
    nats.down().await;
    writer.await.unwrap();
    write_events(&db, company, 1500, 500, 25).await;

    // Down: what is not sent stays in the outbox, and the gauge shows it.
    let unsent = 2000 - sent(&db).await;
    assert!(unsent >= 500, "{unsent}");
    let scrape = app.get("/metrics", None).await;
    let text = scrape.body.as_str().unwrap();
    let pending: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("impact_in_bus_outbox_pending "))
        .expect("the outbox gauge")
        .parse()
        .unwrap();
    assert!(pending >= 500.0, "{pending}");

    nats.up().await;
    outbox_drained(&db).await;
    let events = published(&config, 2000).await;
    assert_eq!(events.len(), 2000, "each event once");
    let ids: HashSet<&str> = events.iter().map(|e| e.msg_id.as_str()).collect();
    assert_eq!(ids.len(), 2000, "no Nats-Msg-Id twice");
    for subject in SUBJECTS {
        let order: Vec<i64> = events
            .iter()
            .filter(|e| e.subject == subject)
            .map(|e| e.body["data"]["n"].as_i64().unwrap())
            .collect();
        assert!(order.len() > 600, "{subject}: {}", order.len());
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "{subject} out of order: {order:?}"
        );
    }
    for event in &events {
        assert_eq!(event.body["id"], event.msg_id.as_str());
    }

    for relay in relays {
        relay.stop().await;
    }
    delete_events_stream(&config).await;
    nats.down().await;
}

/// A NATS server of the test's own, a service on it and its relay, which
/// has published ten events.
async fn relay_with_ten_sent(pool: PgPool) -> (OwnNats, TestApp, Running) {
    let nats = OwnNats::start().await;
    let mut vars = bus_vars();
    vars.retain(|(k, _)| *k != "NATS_URL");
    vars.push(("NATS_URL", nats.url()));
    let app = TestApp::start(pool, config(&pairs(&vars))).await;
    let relay = Running::relay(&bus(&app));
    write_events(&app.state.db, Uuid::new_v4(), 0, 10, 10).await;
    outbox_drained(&app.state.db).await;
    (nats, app, relay)
}

/// The relay stops promptly on shutdown, even while it cannot reach NATS;
/// the service meanwhile keeps writing its outbox.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_relay_shuts_down_while_nats_is_down(pool: PgPool) {
    let (mut nats, app, relay) = relay_with_ten_sent(pool).await;
    nats.down().await;
    write_events(&app.state.db, Uuid::new_v4(), 10, 10, 10).await;
    relay.stop().await;
    assert_eq!(sent(&app.state.db).await, 10);

    // And one that never reached NATS at all.
    let never = bus_vars()
        .into_iter()
        .map(|(k, v)| {
            if k == "NATS_URL" {
                (k, "nats://127.0.0.1:1".to_owned())
            } else {
                (k, v)
            }
        })
        .collect::<Vec<_>>();
    let app = TestApp::start(app.state.db.clone(), config(&pairs(&never))).await;
    Running::relay(&bus(&app)).stop().await;
}

/// NATS hung (frozen, answering nothing): a stop that comes during a pass
/// waits for that pass alone (its ack timeout, 5 s), not also for the
/// stream's set-up the relay tries after a failed pass, whose requests
/// would wait out their own timeouts (this took over 10 s).
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_stop_during_a_pass_against_a_hung_nats_waits_for_that_pass_only(pool: PgPool) {
    let (mut nats, app, relay) = relay_with_ten_sent(pool).await;
    let db = app.state.db.clone();

    nats.signal("STOP");
    write_events(&db, Uuid::new_v4(), 10, 10, 10).await;
    // A pass holds the relay's lock, in this database, until it ends.
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let in_pass: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_locks
                                WHERE locktype = 'advisory' AND granted
                                  AND database = (SELECT oid FROM pg_database
                                                  WHERE datname = current_database())
                                  AND (classid::bigint << 32) + objid::bigint = $1)",
            )
            .bind(impact_in::bus::relay::RELAY_LOCK)
            .fetch_one(&db)
            .await
            .unwrap();
            if in_pass {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the relay starts a pass over the new events");
    let asked = std::time::Instant::now();
    relay.stop().await;
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(8), "stopped after {took:?}");
    assert_eq!(
        sent(&db).await,
        10,
        "nothing marked sent that NATS did not ack"
    );

    nats.signal("CONT");
    nats.down().await;
}

/// The events stream is created by the relay (and by `migrate`) over the
/// configured prefix only.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_events_stream_takes_the_prefixed_subjects(pool: PgPool) {
    let vars = bus_vars();
    let app = TestApp::start(pool, config(&pairs(&vars))).await;
    let config = settings(&app).clone();
    let js: jetstream::Context = js(&config).await;
    impact_in::bus::stream::ensure_events_stream(&js, &config)
        .await
        .unwrap();
    let mut stream = js.get_stream(&config.events_stream).await.unwrap();
    let subjects = stream.info().await.unwrap().config.subjects.clone();
    assert_eq!(
        subjects,
        [
            format!("{}ingest.>", config.events_prefix),
            format!("{}impact.delivery.>", config.events_prefix)
        ]
    );
    delete_events_stream(&config).await;
}

/// The first relay pass that publishes anything, over the events stream
/// (created): how many it sent. Rows written in one transaction go in one
/// pass, or in none while an older transaction elsewhere in the cluster
/// still runs; a failed pass fails the test.
async fn first_pass(db: &PgPool, config: &BusConfig) -> usize {
    let js = js(config).await;
    impact_in::bus::stream::ensure_events_stream(&js, config)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let sent = impact_in::bus::relay::pass(db, &js, config)
                .await
                .expect("a pass publishes");
            if sent > 0 {
                return sent;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a pass publishes within 60 s")
}

/// A pass larger than the NATS client's 5,000 outstanding acks is
/// published whole (the relay awaits acks as it goes, never all at the
/// end).
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_pass_larger_than_the_clients_ack_permits_publishes_every_event(pool: PgPool) {
    let mut vars = bus_vars();
    vars.push(("NATS_RELAY_BATCH", "10000".into()));
    let app = TestApp::start(pool, config(&pairs(&vars))).await;
    let config = settings(&app).clone();
    sqlx::query(
        "INSERT INTO bus_outbox (subject, company_id, data)
         SELECT 'ingest.donation.made', gen_random_uuid(), jsonb_build_object('n', n)
         FROM generate_series(1, 6000) AS n",
    )
    .execute(&app.state.db)
    .await
    .unwrap();
    assert_eq!(first_pass(&app.state.db, &config).await, 6000);
    assert_eq!(published(&config, 6000).await.len(), 6000);
    delete_events_stream(&config).await;
}

/// An event larger than NATS takes (its `max_payload`, 1 MiB here) would
/// be refused at every pass and hold every later event back for ever: it
/// goes with its large fields left out, and the next one follows it.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn an_event_too_large_for_nats_goes_without_its_large_fields_and_holds_nothing_back(
    pool: PgPool,
) {
    let vars = bus_vars();
    let app = TestApp::start(pool, config(&pairs(&vars))).await;
    let config = settings(&app).clone();
    let company = Uuid::new_v4();
    let record = json!({"sourceId": "V-1", "notes": "x".repeat(2 * 1024 * 1024)});
    let (big, small): (Uuid, Uuid) = sqlx::query_as(
        "WITH rows AS (
             INSERT INTO bus_outbox (subject, company_id, data)
             VALUES ('ingest.volunteer.logged', $1,
                     jsonb_build_object('id', 'rec-1', 'stream', 'benevity-volunteers',
                                        'sourceId', 'V-1', 'record', $2::jsonb)),
                    ('ingest.volunteer.logged', $1, jsonb_build_object('id', 'rec-2'))
             RETURNING seq, event_id
         )
         SELECT (SELECT event_id FROM rows ORDER BY seq LIMIT 1),
                (SELECT event_id FROM rows ORDER BY seq DESC LIMIT 1)",
    )
    .bind(company)
    .bind(&record)
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!(first_pass(&app.state.db, &config).await, 2);

    let messages = published(&config, 2).await;
    assert_eq!(
        messages
            .iter()
            .map(|m| m.msg_id.as_str())
            .collect::<Vec<_>>(),
        [big.to_string(), small.to_string()]
    );
    assert_eq!(messages[0].body["id"], json!(big));
    assert_eq!(messages[0].body["companyId"], json!(company));
    assert_eq!(
        messages[0].body["data"],
        json!({"id": "rec-1", "stream": "benevity-volunteers", "sourceId": "V-1",
               "truncated": true, "omitted": ["record"]})
    );
    assert_eq!(messages[1].body["data"], json!({"id": "rec-2"}));
    let scrape = app.get("/metrics", None).await;
    let text = scrape.body.as_str().unwrap();
    assert!(
        text.contains("impact_in_bus_truncated_total{subject=\"ingest.volunteer.logged\"} 1"),
        "{text}"
    );
    delete_events_stream(&config).await;
}
