//! The event bus in, against the real NATS JetStream at `NATS_URL`
//! (nats://127.0.0.1:4222 by default; scripts/test.sh starts one) and a
//! fresh Postgres database per test. Each test has its own subject, stream
//! and consumer, and deletes its stream at the end, so tests in parallel
//! never share one. The ack wait is 1 s: the crash test waits for the
//! server to redeliver, a real timer.

use std::{collections::BTreeSet, time::Duration};

use async_nats::jetstream::{self, consumer::PullConsumer};
use axum::http::{Method, StatusCode};
use futures::StreamExt;
use impact_in::{
    bus::{
        BusContext,
        consumer::{self, Outcome},
        event::ReportReady,
        publish,
        rejected::Origin,
        stream,
    },
    config::BusConfig,
    ids::CompanyId,
    provider::Provider,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    common::{ADMIN, MANAGE, OPS_KEY, TestApp, config, report, token},
    pipeline::Pipeline,
};

/// The bus variables of one test: its own names, a short ack wait.
pub(crate) fn bus_vars() -> Vec<(&'static str, String)> {
    let tag = Uuid::new_v4().simple().to_string();
    vec![
        (
            "NATS_URL",
            std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
        ),
        ("NATS_REPORT_SUBJECT", format!("test.report.ready.{tag}")),
        ("NATS_REPORT_STREAM", format!("TEST_{tag}")),
        ("NATS_REPORT_CONSUMER", format!("test-{tag}")),
        ("NATS_ACK_WAIT_SECS", "1".into()),
        ("NATS_NAK_DELAY_MS", "100".into()),
        ("NATS_EVENTS_STREAM", format!("TEST_EVENTS_{tag}")),
        ("NATS_EVENTS_SUBJECT_PREFIX", format!("test.{tag}.")),
        ("NATS_RELAY_INTERVAL_MS", "20".into()),
    ]
}

pub(crate) fn pairs<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A consumer loop, as `serve` runs it.
pub(crate) struct Running(CancellationToken, JoinHandle<()>);

impl Running {
    pub(crate) fn start(ctx: &BusContext) -> Self {
        let shutdown = CancellationToken::new();
        Self(
            shutdown.clone(),
            tokio::spawn(consumer::run(ctx.clone(), shutdown)),
        )
    }

    /// The outbox relay loop, as `serve` runs it.
    pub(crate) fn relay(ctx: &BusContext) -> Self {
        let shutdown = CancellationToken::new();
        Self(
            shutdown.clone(),
            tokio::spawn(impact_in::bus::relay::run(ctx.clone(), shutdown)),
        )
    }

    /// Stops it; it must return within a few seconds.
    pub(crate) async fn stop(self) {
        self.0.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.1)
            .await
            .expect("the bus loop returns after shutdown")
            .unwrap();
    }
}

pub(crate) fn bus(app: &TestApp) -> BusContext {
    app.state.bus.clone().expect("NATS_URL is set")
}

pub(crate) fn settings(app: &TestApp) -> &BusConfig {
    app.state.config.bus.as_ref().unwrap()
}

pub(crate) async fn js(config: &BusConfig) -> jetstream::Context {
    stream::connect(config).await.unwrap()
}

pub(crate) async fn delete_stream(config: &BusConfig) {
    js(config)
        .await
        .delete_stream(&config.stream)
        .await
        .unwrap();
}

pub(crate) async fn set_rules(app: &TestApp, company: Uuid, providers: &[&str]) {
    let response = app
        .request(
            Method::PUT,
            "/v1/impact-in/delivery-rules",
            Some(&token(&[company], &[ADMIN, MANAGE])),
            Some(json!({"companyId": company, "providers": providers})),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
}

pub(crate) async fn publish(config: &BusConfig, event: ReportReady) -> Value {
    publish::report_ready(config, event).await.unwrap()
}

/// Publishes raw bytes, without `Nats-Msg-Id`: a repeat JetStream does not
/// drop, or a body `publish-report` would never send.
async fn publish_raw(config: &BusConfig, body: Vec<u8>) {
    let js = js(config).await;
    stream::ensure_stream(&js, config).await.unwrap();
    js.publish(config.report_subject.clone(), body.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

pub(crate) fn event(event_id: Uuid, company: Uuid, providers: Option<&[Provider]>) -> ReportReady {
    ReportReady::new(
        event_id,
        CompanyId(company),
        report(company),
        providers.map(|p| p.iter().copied().collect()),
    )
}

/// The company's deliveries as (provider, deliveryId), sorted.
async fn deliveries(app: &TestApp, company: Uuid) -> Vec<(String, Uuid)> {
    sqlx::query_as(
        "SELECT provider, delivery_id FROM impact_deliveries WHERE company_id = $1 ORDER BY 1, 2",
    )
    .bind(company)
    .fetch_all(&app.state.db)
    .await
    .unwrap()
}

/// Waits until `done` holds of the company's deliveries.
pub(crate) async fn until_deliveries(
    app: &TestApp,
    company: Uuid,
    done: impl Fn(&[(String, Uuid)]) -> bool,
) -> Vec<(String, Uuid)> {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let found = deliveries(app, company).await;
            if done(&found) {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the deliveries the test waited for never appeared")
}

/// Waits until the consumer has every message settled (acked or
/// terminated, nothing pending or awaiting an ack); its info then.
async fn drained(config: &BusConfig) -> jetstream::consumer::Info {
    let js = js(config).await;
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let mut consumer: PullConsumer = js
                .get_stream(&config.stream)
                .await
                .unwrap()
                .get_consumer(&config.consumer)
                .await
                .unwrap();
            let info = consumer.info().await.unwrap().clone();
            if info.num_pending == 0 && info.num_ack_pending == 0 {
                return info;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the consumer never settled every message")
}

fn ids(event_id: Uuid, providers: &[Provider]) -> Vec<(String, Uuid)> {
    providers
        .iter()
        .map(|p| (p.to_string(), consumer::delivery_id(event_id, *p).0))
        .collect()
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_report_ready_event_becomes_deliveries_for_the_rules_providers(pool: PgPool) {
    let vars = bus_vars();
    let p = Pipeline::start(pool, &pairs(&vars)).await;
    let config = settings(&p.app).clone();
    set_rules(&p.app, p.company, &["benevity", "goodera"]).await;
    let running = Running::start(&bus(&p.app));

    let first = Uuid::new_v4();
    publish(&config, event(first, p.company, None)).await;
    let found = until_deliveries(&p.app, p.company, |d| d.len() == 2).await;
    assert_eq!(found, ids(first, &[Provider::Benevity, Provider::Goodera]));
    for (_, id) in &found {
        p.settled(&id.to_string(), "success").await;
    }
    // `providers` narrows the rules; a provider outside them is not added.
    let second = Uuid::new_v4();
    publish(
        &config,
        event(
            second,
            p.company,
            Some(&[Provider::Goodera, Provider::Workday]),
        ),
    )
    .await;
    let found = until_deliveries(&p.app, p.company, |d| d.len() == 3).await;
    let (_, narrowed) = ids(second, &[Provider::Goodera]).remove(0);
    assert!(found.iter().any(|(_, id)| *id == narrowed), "{found:?}");
    p.settled(&narrowed.to_string(), "success").await;
    drained(&config).await;

    running.stop().await;
    delete_stream(&config).await;
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_same_event_twice_makes_one_delivery_per_provider(pool: PgPool) {
    let vars = bus_vars();
    let app = TestApp::start(pool, config(&pairs(&vars))).await;
    let config = settings(&app).clone();
    let company = Uuid::new_v4();
    set_rules(&app, company, &["benevity", "workday"]).await;
    let running = Running::start(&bus(&app));

    let id = Uuid::new_v4();
    let published = publish(&config, event(id, company, None)).await;
    assert_eq!(published["duplicate"], false);
    // The same id again within the window: JetStream drops it.
    let again = publish(&config, event(id, company, None)).await;
    assert_eq!(again["duplicate"], true);
    // Past JetStream's de-duplication (no Nats-Msg-Id), twice more: the
    // consumer sees the event three times.
    for _ in 0..2 {
        publish_raw(
            &config,
            serde_json::to_vec(&event(id, company, None)).unwrap(),
        )
        .await;
    }
    let info = drained(&config).await;
    assert_eq!(info.ack_floor.stream_sequence, 3);
    assert_eq!(
        deliveries(&app, company).await,
        ids(id, &[Provider::Benevity, Provider::Workday])
    );

    running.stop().await;
    delete_stream(&config).await;
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_message_handled_but_never_acked_comes_back_and_makes_no_second_delivery(pool: PgPool) {
    let vars = bus_vars();
    let app = TestApp::start(pool, config(&pairs(&vars))).await;
    let config = settings(&app).clone();
    let ctx = bus(&app);
    let company = Uuid::new_v4();
    set_rules(&app, company, &["goodera", "workday"]).await;
    let id = Uuid::new_v4();
    publish(&config, event(id, company, None)).await;

    // A replica takes the message, commits its deliveries, and dies
    // before the ack.
    let js = js(&config).await;
    let pulled = stream::ensure_consumer(&js, &config).await.unwrap();
    let mut batch = pulled
        .batch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    let message = batch.next().await.unwrap().unwrap();
    let info = message.info().unwrap();
    let outcome = consumer::process(
        &ctx,
        &message.payload,
        &Origin {
            stream: info.stream,
            stream_sequence: info.stream_sequence,
            subject: message.subject.as_str(),
        },
    )
    .await;
    assert!(
        matches!(outcome, Outcome::Delivered(ref ids) if ids.len() == 2),
        "{outcome:?}"
    );
    drop(batch);
    drop(message);
    let expected = ids(id, &[Provider::Goodera, Provider::Workday]);
    assert_eq!(deliveries(&app, company).await, expected);

    // Another replica gets it again once the ack wait (1 s) runs out.
    let running = Running::start(&ctx);
    let info = drained(&config).await;
    assert!(
        info.delivered.consumer_sequence >= 2,
        "the message was redelivered: {info:?}"
    );
    assert_eq!(deliveries(&app, company).await, expected);

    running.stop().await;
    delete_stream(&config).await;
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn poison_messages_are_terminated_and_listed(pool: PgPool) {
    let vars = bus_vars();
    let app = TestApp::start(pool, config(&pairs(&vars))).await;
    let config = settings(&app).clone();
    let company = Uuid::new_v4();
    let without_rules = Uuid::new_v4();
    set_rules(&app, company, &["benevity"]).await;
    let running = Running::start(&bus(&app));

    publish_raw(&config, b"{not json".to_vec()).await;
    let mut invalid = event(Uuid::new_v4(), company, None);
    invalid.report["volunteerHours"] = json!(-3);
    publish(&config, invalid).await;
    publish(&config, event(Uuid::new_v4(), without_rules, None)).await;
    publish(
        &config,
        event(Uuid::new_v4(), company, Some(&[Provider::Workday])),
    )
    .await;

    // Terminated: settled, not redelivered.
    let info = drained(&config).await;
    assert_eq!(info.ack_floor.stream_sequence, 4, "{info:?}");
    assert_eq!(info.num_redelivered, 0);
    assert!(deliveries(&app, company).await.is_empty());

    let all = app.get("/v1/impact-in/bus/rejected", Some(OPS_KEY)).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    let codes: BTreeSet<&str> = all.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reasonCode"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        BTreeSet::from(["not_json", "invalid_report", "no_rules", "no_provider"])
    );
    let invalid = all.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reasonCode"] == "invalid_report")
        .unwrap();
    assert!(
        invalid["reason"]
            .as_str()
            .unwrap()
            .contains("report.volunteerHours"),
        "{invalid}"
    );
    assert_eq!(invalid["stream"], config.stream.as_str());

    // A company's token sees its own, never another's or one of no company.
    let own = app
        .get(
            "/v1/impact-in/bus/rejected",
            Some(&token(&[company], &[ADMIN])),
        )
        .await;
    let own: Vec<&str> = own.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reasonCode"].as_str().unwrap())
        .collect();
    assert_eq!(own.len(), 2, "{own:?}");
    assert!(own.contains(&"invalid_report") && own.contains(&"no_provider"));
    let page = app
        .get("/v1/impact-in/bus/rejected?limit=1", Some(OPS_KEY))
        .await;
    assert_eq!(page.body["data"].as_array().unwrap().len(), 1);
    assert!(page.body["nextCursor"].is_string());
    let other = app
        .get(
            &format!("/v1/impact-in/bus/rejected?companyId={without_rules}"),
            Some(&token(&[company], &[ADMIN])),
        )
        .await;
    other.problem(StatusCode::FORBIDDEN);

    running.stop().await;
    delete_stream(&config).await;
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn two_consumers_on_one_durable_make_one_delivery_per_event_and_provider(pool: PgPool) {
    let vars = bus_vars();
    let app = TestApp::start(pool, config(&pairs(&vars))).await;
    let config = settings(&app).clone();
    let company = Uuid::new_v4();
    set_rules(&app, company, &["benevity", "goodera"]).await;
    let replicas = [Running::start(&bus(&app)), Running::start(&bus(&app))];

    let events: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
    for id in &events {
        publish(&config, event(*id, company, None)).await;
        // And each once more past de-duplication: both replicas may get one.
        publish_raw(
            &config,
            serde_json::to_vec(&event(*id, company, None)).unwrap(),
        )
        .await;
    }
    drained(&config).await;
    let mut expected: Vec<(String, Uuid)> = events
        .iter()
        .flat_map(|id| ids(*id, &[Provider::Benevity, Provider::Goodera]))
        .collect();
    expected.sort();
    assert_eq!(deliveries(&app, company).await, expected);

    for replica in replicas {
        replica.stop().await;
    }
    delete_stream(&config).await;
}

#[tokio::test]
async fn a_message_met_by_a_database_outage_is_nakked_and_comes_back() {
    let vars = bus_vars();
    let app = TestApp::unstarted(crate::common::unreachable_pool(), config(&pairs(&vars)));
    let config = settings(&app).clone();
    let running = Running::start(&bus(&app));
    publish(&config, event(Uuid::new_v4(), Uuid::new_v4(), None)).await;

    // Nak'ed with a 100 ms delay: delivered again and again, never acked
    // nor terminated.
    let js = js(&config).await;
    let info = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(stream) = js.get_stream(&config.stream).await
                && let Ok(mut consumer) = stream
                    .get_consumer::<jetstream::consumer::pull::Config>(&config.consumer)
                    .await
            {
                let info = consumer.info().await.unwrap().clone();
                if info.delivered.consumer_sequence >= 3 {
                    return info;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the message was redelivered after its nak");
    assert_eq!(info.ack_floor.stream_sequence, 0, "{info:?}");

    running.stop().await;
    delete_stream(&config).await;
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_consumer_shuts_down_while_nats_is_down_and_the_service_keeps_serving(pool: PgPool) {
    // Nothing listens on port 1: the consumer keeps retrying.
    let app = TestApp::start(pool, config(&[("NATS_URL", "nats://127.0.0.1:1")])).await;
    let running = Running::start(&bus(&app));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let company = Uuid::new_v4();
    let health = app.get("/health/readiness", None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
    set_rules(&app, company, &["workday"]).await;
    running.stop().await;
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn delivery_rules_are_tenant_scoped(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;
    let (mine, theirs) = (Uuid::new_v4(), Uuid::new_v4());
    let writer = token(&[mine], &[ADMIN, MANAGE]);
    let reader = token(&[mine], &[ADMIN]);
    let put = |bearer: String, company: Uuid, providers: Value| {
        let app = &app;
        async move {
            app.request(
                Method::PUT,
                "/v1/impact-in/delivery-rules",
                Some(&bearer),
                Some(json!({"companyId": company, "providers": providers})),
            )
            .await
        }
    };
    let rules = |bearer: String, company: Uuid| {
        let app = &app;
        async move {
            app.get(
                &format!("/v1/impact-in/delivery-rules?companyId={company}"),
                Some(&bearer),
            )
            .await
        }
    };

    // None set: an empty list.
    let none = rules(reader.clone(), mine).await;
    assert_eq!(none.status, StatusCode::OK, "{}", none.body);
    assert_eq!(none.body["providers"], json!([]));
    assert!(none.body["updatedAt"].is_null());

    // A provider named twice: refused, naming the field.
    let twice = put(
        writer.clone(),
        mine,
        json!(["workday", "benevity", "workday"]),
    )
    .await;
    twice.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(twice.error_fields(), ["providers"]);

    let set = put(writer.clone(), mine, json!(["workday", "benevity"])).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(set.body["providers"], json!(["benevity", "workday"]));
    let read = rules(reader.clone(), mine).await;
    assert_eq!(read.body["providers"], json!(["benevity", "workday"]));

    // Another company's rules: neither read nor written.
    rules(reader.clone(), theirs)
        .await
        .problem(StatusCode::FORBIDDEN);
    put(writer.clone(), theirs, json!(["goodera"]))
        .await
        .problem(StatusCode::FORBIDDEN);
    let theirs_now = rules(OPS_KEY.into(), theirs).await;
    assert_eq!(theirs_now.body["providers"], json!([]));
    // Writing takes MANAGE_INTEGRATIONS.
    put(reader.clone(), mine, json!(["goodera"]))
        .await
        .problem(StatusCode::FORBIDDEN);
    // companyId is required; providers must be known ones.
    app.get("/v1/impact-in/delivery-rules", Some(&reader))
        .await
        .problem(StatusCode::BAD_REQUEST);
    put(writer.clone(), mine, json!(["myspace"]))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        rules(reader, mine).await.body["providers"],
        json!(["benevity", "workday"])
    );
}

/// `impact-in publish-report`, run as a person would, in a directory
/// without `.env`.
fn publish_report(vars: &[(&str, String)], company: Uuid, file: &str, event: Uuid) -> Value {
    let dir = crate::binary::private_dir("publish-report");
    std::fs::write(dir.join("report.json"), file).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_impact-in"))
        .args(["publish-report", "--company", &company.to_string()])
        .args(["--file", "report.json", "--providers", "benevity,goodera"])
        .args(["--event-id", &event.to_string()])
        .env_remove("NATS_URL")
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(&dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(dir).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    json!({
        "code": output.status.code(),
        "stdout": serde_json::from_slice::<Value>(&output.stdout).unwrap_or(Value::Null),
        "stderr": stderr,
    })
}

#[tokio::test]
async fn publish_report_publishes_an_event_once_per_event_id() {
    let vars = bus_vars();
    let config = config(&pairs(&vars)).bus.unwrap();
    let (company, event) = (Uuid::new_v4(), Uuid::new_v4());
    let file = report(company).to_string();

    let first = publish_report(&vars, company, &file, event);
    assert_eq!(first["code"], 0, "{first}");
    assert_eq!(first["stdout"]["eventId"], event.to_string());
    assert_eq!(first["stdout"]["stream"], config.stream.as_str());
    assert_eq!(first["stdout"]["duplicate"], false);
    let again = publish_report(&vars, company, &file, event);
    assert_eq!(again["stdout"]["duplicate"], true, "{again}");

    // What reached the stream is the envelope the consumer reads.
    let js = js(&config).await;
    let mut stream = js.get_stream(&config.stream).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
    let stored = stream.get_raw_message(1).await.unwrap();
    let body: ReportReady = serde_json::from_slice(&stored.payload).unwrap();
    assert_eq!(body.event_id, event);
    assert_eq!(
        body.providers,
        Some(BTreeSet::from([Provider::Benevity, Provider::Goodera]))
    );
    delete_stream(&config).await;

    // Without NATS_URL: a configuration error naming it.
    let unset = publish_report(&[], company, &file, event);
    assert_eq!(unset["code"], 2, "{unset}");
    assert!(
        unset["stderr"].as_str().unwrap().contains("NATS_URL"),
        "{unset}"
    );
}
