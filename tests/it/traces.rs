//! OpenTelemetry traces from the real binary, exported over OTLP/HTTP to a
//! receiver this test runs, which decodes the protobuf the way a collector
//! does: one delivery, from the POST that creates it to the provider call a
//! worker makes later and the provider's webhook, is one trace.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use impact_in::sandbox::{Sandbox, SandboxConfig, credentials};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{AnyValue, KeyValue, any_value},
    trace::v1::span::SpanKind,
};
use prost::Message;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    binary::{free_port, fresh_database_url, impact_in, read_all, succeeded, terminate, until_ok},
    common::{ADMIN, JWT_SECRET, MANAGE, TOKEN_KEY, sandbox_api},
};

/// A span as the receiver decoded it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i32,
    attributes: Vec<KeyValue>,
    links: Vec<(String, String)>,
    start: u64,
    end: u64,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<String> {
        let value = self
            .attributes
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .as_ref()?;
        text(value)
    }
}

fn text(value: &AnyValue) -> Option<String> {
    Some(match value.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        _ => return None,
    })
}

/// `POST /v1/traces` (OTLP/HTTP, protobuf), as a collector serves it.
async fn export(State(spans): State<Arc<Mutex<Vec<Received>>>>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
    let mut spans = spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref().and_then(text))
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            spans.push(Received {
                service: service.clone(),
                trace_id: hex::encode(&span.trace_id),
                span_id: hex::encode(&span.span_id),
                parent_span_id: hex::encode(&span.parent_span_id),
                name: span.name,
                kind: span.kind,
                attributes: span.attributes,
                links: span
                    .links
                    .iter()
                    .map(|l| (hex::encode(&l.trace_id), hex::encode(&l.span_id)))
                    .collect(),
                start: span.start_time_unix_nano,
                end: span.end_time_unix_nano,
            });
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

async fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route("/v1/traces", post(export))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

/// The real binary exporting to `otlp`, delivering to a sandbox that
/// answers by webhook at once, and a company to deliver for.
struct Traced {
    server: tokio::process::Child,
    stderr: tokio::task::JoinHandle<String>,
    sandbox: Sandbox,
    database: String,
    base: String,
    client: reqwest::Client,
    company: Uuid,
    token: String,
}

impl Traced {
    /// `name` names its database.
    async fn start(name: &str, otlp: &str, log_level: &str) -> Self {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let database = fresh_database_url(name);
        succeeded(
            impact_in(&[("DATABASE_URL", &database)])
                .arg("migrate")
                .output()
                .unwrap(),
        );
        let port = free_port();
        let mut vars: Vec<(&str, String)> = credentials::env_vars(&sandbox.url());
        vars.extend([
            ("DATABASE_URL", database.clone()),
            ("JWT_SECRET", JWT_SECRET.into()),
            ("TOKEN_ENCRYPTION_KEY", TOKEN_KEY.into()),
            ("HOST", "127.0.0.1".into()),
            ("PORT_IMPACT_IN", port.to_string()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.into()),
            ("OTEL_SERVICE_NAME", "impact-in-under-test".into()),
            ("LOG_LEVEL", log_level.into()),
        ]);
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut server = tokio::process::Command::from(impact_in(&pairs))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = tokio::spawn(read_all(server.stderr.take().unwrap()));
        until_ok(port, "/health/readiness").await;
        let base = format!("http://127.0.0.1:{port}");
        let status = sandbox_api::control(
            &sandbox,
            "webhooks",
            json!({"url": format!("{base}/webhooks"), "delayMs": 0}),
        )
        .await;
        assert!(status.is_success());
        let company = Uuid::new_v4();
        Self {
            server,
            stderr,
            sandbox,
            database,
            base,
            client: reqwest::Client::new(),
            company,
            token: crate::common::token(&[company], &[ADMIN, MANAGE]),
        }
    }

    /// Creates a delivery to Benevity within the caller's trace; the
    /// created delivery. `sessions` makes the report distinct (the
    /// idempotency cache answers a repeated one).
    async fn create(&self, traceparent: &str, sessions: u32) -> Value {
        let mut report = crate::common::report(self.company);
        report["sessionCount"] = json!(sessions);
        let response = self
            .client
            .post(format!("{}/v1/impact-in/deliveries", self.base))
            .bearer_auth(&self.token)
            .header("traceparent", traceparent)
            .json(&json!({"companyId": self.company, "provider": "benevity", "payload": report}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        response.json().await.unwrap()
    }

    /// Waits until the delivery is where `done` says.
    async fn until(&self, id: &str, done: fn(&Value) -> bool) {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let delivery: Value = self
                    .client
                    .get(format!("{}/v1/impact-in/deliveries/{id}", self.base))
                    .bearer_auth(&self.token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if done(&delivery) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("delivery {id} never got where the test waited for"));
    }

    /// SIGTERM, then the exit (the exporter sends what it buffered as the
    /// process stops): its stderr.
    async fn stop(mut self) -> String {
        terminate(self.server.id().unwrap());
        let exit = tokio::time::timeout(Duration::from_secs(20), self.server.wait())
            .await
            .expect("the process exits")
            .unwrap();
        assert!(exit.success());
        use sqlx::{Postgres, migrate::MigrateDatabase};
        let _ = Postgres::drop_database(&self.database).await;
        self.stderr.await.unwrap()
    }
}

#[tokio::test]
async fn one_delivery_is_one_trace_from_the_post_to_the_provider_call() {
    let (otlp, spans) = receiver().await;
    // Logs at warn, as production often has them: spans are exported anyway.
    let t = Traced::start("traces", &otlp, "warn").await;

    // The caller's trace, which the service must continue.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let created = t
        .create(&format!("00-{trace_id}-{caller_span}-01"), 1)
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let delivery_id = created["deliveryId"].as_str().unwrap().to_owned();
    // Delivered, and the provider's webhook applied.
    t.until(&id, |d| {
        d["status"] == "success" && d["providerStatus"] == "processed"
    })
    .await;

    // Another, which the provider refuses, then an operator's replay.
    let replayed_trace = "0af7651916cd43dd8448eb211c80319c";
    let status = sandbox_api::control(
        &t.sandbox,
        "faults",
        json!({"provider": "benevity", "count": 1, "status": 400}),
    )
    .await;
    assert!(status.is_success());
    let refused = t
        .create(&format!("00-{replayed_trace}-b7ad6b7169203331-01"), 2)
        .await;
    let refused = refused["id"].as_str().unwrap().to_owned();
    t.until(&refused, |d| d["status"] == "failed").await;
    let replay = t
        .client
        .post(format!(
            "{}/v1/impact-in/deliveries/{refused}/replay",
            t.base
        ))
        .bearer_auth(&t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 200, "{:?}", replay.text().await);

    let company = t.company;
    t.stop().await;
    let spans = spans.lock().unwrap().clone();
    assert!(spans.iter().all(|s| s.service == "impact-in-under-test"));
    let in_trace: Vec<&Received> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let named = |name: &str| -> Vec<&Received> {
        in_trace
            .iter()
            .copied()
            .filter(|s| s.name == name)
            .collect()
    };
    let dump = || format!("{in_trace:#?}");

    // The POST continues the caller's trace.
    let [post] = named("POST /v1/impact-in/deliveries")[..] else {
        panic!("one POST span in the trace: {}", dump());
    };
    assert_eq!(post.parent_span_id, caller_span);
    assert_eq!(post.kind, SpanKind::Server as i32);
    assert_eq!(post.attribute("status").as_deref(), Some("202"));

    // The wait in the queue, then the worker's attempt, both children of
    // the POST, though the attempt ran in a worker after the POST answered.
    let [queued] = named("delivery.queued")[..] else {
        panic!("one queued span: {}", dump());
    };
    assert_eq!(queued.parent_span_id, post.span_id);
    let [attempt] = named("delivery.attempt")[..] else {
        panic!("one attempt span: {}", dump());
    };
    assert_eq!(attempt.parent_span_id, post.span_id);
    assert!(queued.end <= attempt.start + 1_000_000, "{}", dump());
    assert_eq!(attempt.attribute("tenant_id"), Some(company.to_string()));
    assert_eq!(attempt.attribute("platform").as_deref(), Some("benevity"));
    assert_eq!(attempt.attribute("delivery_id"), Some(delivery_id));
    assert_eq!(attempt.attribute("attempt").as_deref(), Some("1"));
    assert_eq!(attempt.attribute("outcome").as_deref(), Some("success"));

    // Each HTTP call to the provider (its OAuth token, then the report) is a
    // client span of the attempt.
    let calls = named("provider.call");
    assert!(!calls.is_empty(), "{}", dump());
    for call in &calls {
        assert_eq!(call.parent_span_id, attempt.span_id, "{}", dump());
        assert_eq!(call.kind, SpanKind::Client as i32);
        assert!(call.attribute("http.response.status_code").is_some());
    }
    assert!(
        calls.iter().any(
            |c| c.attribute("http.request.method").as_deref() == Some("POST")
                && c.attribute("url.path")
                    .is_some_and(|p| !p.contains("token"))
        ),
        "{}",
        dump()
    );

    // The provider's webhook is a trace of its own, linked to this one.
    let webhook = spans
        .iter()
        .find(|s| s.name == "POST /webhooks/{provider}")
        .unwrap_or_else(|| panic!("a webhook span: {spans:#?}"));
    assert_ne!(webhook.trace_id, trace_id);
    assert!(
        webhook
            .links
            .contains(&(trace_id.to_owned(), post.span_id.clone())),
        "{webhook:#?}"
    );

    // The replay is a trace of its own, whose attempt links to the trace
    // that created the delivery.
    let replay = spans
        .iter()
        .find(|s| s.name == "POST /v1/impact-in/deliveries/{id}/replay")
        .unwrap_or_else(|| panic!("a replay span: {spans:#?}"));
    let replayed = spans
        .iter()
        .find(|s| s.name == "delivery.attempt" && s.parent_span_id == replay.span_id)
        .unwrap_or_else(|| panic!("an attempt in the replay: {spans:#?}"));
    assert_eq!(replayed.trace_id, replay.trace_id);
    assert_ne!(replay.trace_id, replayed_trace);
    assert_eq!(replayed.attribute("trigger").as_deref(), Some("replay"));
    assert_eq!(replayed.attribute("attempt").as_deref(), Some("2"));
    assert!(
        replayed
            .links
            .iter()
            .any(|(trace, _)| trace == replayed_trace),
        "{replayed:#?}"
    );
    // Its first attempt, by a worker, failed in the creating trace.
    assert!(spans.iter().any(|s| s.name == "delivery.attempt"
        && s.trace_id == replayed_trace
        && s.attribute("outcome").as_deref() == Some("permanent")));
}

/// With the collector down, deliveries go on, the export failure is logged
/// without the endpoint's credentials, and the process still stops in time.
#[tokio::test]
async fn an_unreachable_collector_changes_nothing_but_a_warning() {
    let closed = free_port();
    let t = Traced::start(
        "traces_down",
        &format!("http://user:collector-password@127.0.0.1:{closed}"),
        "info",
    )
    .await;
    let created = t
        .create("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 3)
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    t.until(&id, |d| d["status"] == "success").await;
    let log = t.stop().await;
    assert!(log.contains("exporting spans over OTLP"), "{log}");
    // The SDK's own error, once the export has failed.
    assert!(log.contains("BatchSpanProcessor.ExportError"), "{log}");
    assert!(!log.contains("collector-password"), "{log}");
}
