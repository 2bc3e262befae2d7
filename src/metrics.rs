//! Prometheus metrics (`GET /metrics`), through the `metrics` facade and
//! one `metrics-exporter-prometheus` recorder per process. The names are
//! the seeds' (their dashboards and alert rules work unchanged) and those
//! `deploy/prometheus/alerts.yml` and `deploy/grafana/impact-in.json` use;
//! `docs/runbook.md` ("Metrics") lists them. Labels are bounded: provider,
//! status, reason, outcome class, route template, endpoint, table; never a
//! company, a delivery or an error text.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use chrono::{DateTime, Utc};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::ingest::{store::StreamRuns, stream::Stream};
use crate::provider::Provider;

pub const DELIVERIES: &str = "impact_in_deliveries_total";
pub const DELIVERIES_SUCCESS: &str = "impact_in_deliveries_success_total";
pub const DELIVERIES_FAILED: &str = "impact_in_deliveries_failed_total";
pub const DELIVERY_DURATION: &str = "impact_in_delivery_duration_seconds";
pub const RETRIES: &str = "impact_in_retries_total";
pub const WEBHOOKS_RECEIVED: &str = "impact_in_webhooks_received_total";
pub const WEBHOOK_VERIFICATION_FAILED: &str = "impact_in_webhook_verification_failed_total";
pub const PROVIDER_CALL_DURATION: &str = "impact_in_provider_call_duration_seconds";
pub const QUEUE_DEPTH: &str = "impact_in_queue_depth";
pub const QUEUE_OLDEST_DUE_AGE: &str = "impact_in_queue_oldest_due_age_seconds";
pub const CIRCUIT_STATE: &str = "impact_in_circuit_state";
pub const OAUTH_TOKEN_EXPIRY: &str = "impact_in_oauth_token_expiry_seconds";
pub const CACHE_HITS: &str = "impact_in_idempotency_cache_hits_total";
pub const HTTP_REQUESTS: &str = "impact_in_http_requests_total";
pub const HTTP_DURATION: &str = "impact_in_http_request_duration_seconds";
pub const BUILD_INFO: &str = "impact_in_build_info";
pub const RECORDS_PROCESSED: &str = "impact_in_records_processed_total";
pub const INGESTION_LAG: &str = "impact_in_ingestion_lag_seconds";
pub const CONNECTOR_SUCCESS_RATE: &str = "impact_in_connector_success_rate";
pub const INGEST_ERRORS: &str = "impact_in_errors_total";
pub const SCHEDULE_FIRINGS: &str = "impact_in_schedule_firings_total";
pub const BUS_MESSAGES: &str = "impact_in_bus_messages_total";
pub const BUS_PUBLISHED: &str = "impact_in_bus_published_total";
pub const BUS_TRUNCATED: &str = "impact_in_bus_truncated_total";
pub const BUS_OUTBOX_PENDING: &str = "impact_in_bus_outbox_pending";
pub const BUS_OUTBOX_OLDEST_AGE: &str = "impact_in_bus_outbox_oldest_age_seconds";
pub const RETENTION_REMOVED: &str = "impact_in_retention_removed_total";
pub const SLA_STATUS: &str = "impact_in_sla_status";
pub const SLA_SUCCESS_RATE: &str = "impact_in_sla_success_rate";
pub const SLA_BREACHING_COMPANIES: &str = "impact_in_sla_breaching_companies";
pub const SLA_NOTIFICATIONS_PENDING: &str = "impact_in_sla_notifications_pending";

/// Seconds: 5 ms to 60 s for calls and requests.
const CALL_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];
/// Seconds: created → final outcome spans retries, so up to an hour.
const DELIVERY_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// When each OAuth credential's current token expires, by provider and
/// credential fingerprint (never the token or the client secret).
static TOKEN_EXPIRY: OnceLock<Mutex<TokenExpiries>> = OnceLock::new();

/// By provider and credential fingerprint.
type TokenExpiries = HashMap<(Provider, String), DateTime<Utc>>;

/// Installs the process's recorder on first call (tests build many apps in
/// one process: they share it); the handle that renders it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(DELIVERY_DURATION.into()), &DELIVERY_BUCKETS)
                .and_then(|b| b.set_buckets(&CALL_BUCKETS))
                .expect("the buckets are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            zero_counters();
            handle
        })
        .clone()
}

/// Every counter of a known label set starts at 0, so that a rate (and an
/// alert on a ratio) exists before the first event of its kind.
fn zero_counters() {
    zero_ingest_counters();
    for table in crate::scheduler::retention::TABLES {
        counter!(RETENTION_REMOVED, "table" => table).increment(0);
    }
    for provider in Provider::ALL {
        let p = provider.as_str();
        for status in ["success", "failed"] {
            counter!(DELIVERIES, "provider" => p, "status" => status).increment(0);
        }
        for name in [
            DELIVERIES_SUCCESS,
            DELIVERIES_FAILED,
            RETRIES,
            WEBHOOKS_RECEIVED,
            CACHE_HITS,
        ] {
            counter!(name, "provider" => p).increment(0);
        }
        for reason in crate::webhooks::signature::Refusal::REASONS {
            counter!(WEBHOOK_VERIFICATION_FAILED, "provider" => p, "reason" => reason).increment(0);
        }
    }
}

/// Ingest counters start at 0 too (called from `zero_counters`).
fn zero_ingest_counters() {
    for stream in Stream::ALL {
        counter!(RECORDS_PROCESSED, "connector" => stream.as_str()).increment(0);
    }
}

/// The text a scrape gets.
pub fn render(handle: &PrometheusHandle, now: DateTime<Utc>) -> String {
    if let Some(expiries) = TOKEN_EXPIRY.get() {
        for ((provider, credential), expires_at) in
            expiries.lock().unwrap_or_else(|e| e.into_inner()).iter()
        {
            let left = (*expires_at - now).num_milliseconds() as f64 / 1000.0;
            gauge!(OAUTH_TOKEN_EXPIRY, "provider" => provider.as_str(), "credential" => credential.clone())
                .set(left);
        }
    }
    handle.run_upkeep();
    handle.render()
}

/// A delivery reached `success` or `failed`, `age` after it was created.
pub fn delivery_finished(provider: Provider, success: bool, age: Duration) {
    let p = provider.as_str();
    let status = if success { "success" } else { "failed" };
    counter!(DELIVERIES, "provider" => p, "status" => status).increment(1);
    if success {
        counter!(DELIVERIES_SUCCESS, "provider" => p).increment(1);
    } else {
        counter!(DELIVERIES_FAILED, "provider" => p).increment(1);
    }
    histogram!(DELIVERY_DURATION, "provider" => p).record(age.as_secs_f64());
}

/// An attempt failed and the delivery will be attempted again.
pub fn retry(provider: Provider) {
    counter!(RETRIES, "provider" => provider.as_str()).increment(1);
}

/// One provider call and how it ended: `success` or an error class.
pub fn provider_call(provider: Provider, outcome: &'static str, took: Duration) {
    histogram!(PROVIDER_CALL_DURATION, "provider" => provider.as_str(), "outcome" => outcome)
        .record(took.as_secs_f64());
}

pub fn cache_hit(provider: Provider) {
    counter!(CACHE_HITS, "provider" => provider.as_str()).increment(1);
}

pub fn webhook_received(provider: Provider) {
    counter!(WEBHOOKS_RECEIVED, "provider" => provider.as_str()).increment(1);
}

pub fn webhook_refused(provider: Provider, reason: &'static str) {
    counter!(WEBHOOK_VERIFICATION_FAILED, "provider" => provider.as_str(), "reason" => reason)
        .increment(1);
}

/// One HTTP request, by its route template (never the raw path).
pub fn http_request(method: &str, route: &str, status: u16, took: Duration) {
    let (method, route) = (method.to_owned(), route.to_owned());
    counter!(HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    histogram!(HTTP_DURATION, "method" => method, "route" => route).record(took.as_secs_f64());
}

/// The token of a credential now expires at `expires_at`.
pub fn token_expiry(provider: Provider, credential: &str, expires_at: DateTime<Utc>) {
    let credential: String = credential.chars().take(12).collect();
    TOKEN_EXPIRY
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((provider, credential), expires_at);
}

/// The retention job deleted `rows` rows of `table`.
pub fn retention_removed(table: &'static str, rows: u64) {
    counter!(RETENTION_REMOVED, "table" => table).increment(rows);
}

/// The delivery queue, read at scrape time: deliveries waiting (pending or
/// retrying) and how long the oldest due one has been due.
pub fn queue(depth: i64, oldest_due_age: Option<f64>) {
    gauge!(QUEUE_DEPTH).set(depth as f64);
    gauge!(QUEUE_OLDEST_DUE_AGE).set(oldest_due_age.unwrap_or(0.0));
}

/// A circuit's state: 0 closed, 1 half open, 2 open.
pub fn circuit(provider: Provider, endpoint: &str, state: u8) {
    gauge!(CIRCUIT_STATE, "provider" => provider.as_str(), "endpoint" => endpoint.to_owned())
        .set(f64::from(state));
}

/// A page of `stream` stored: records stored (new, changed or seen again)
/// and records refused as invalid.
pub fn ingest_page(stream: Stream, processed: u64, invalid: u64) {
    counter!(RECORDS_PROCESSED, "connector" => stream.as_str()).increment(processed);
    if invalid > 0 {
        counter!(INGEST_ERRORS, "connector" => stream.as_str(), "error_type" => "validation")
            .increment(invalid);
    }
}

/// A schedule fired: a delivery queued, or skipped.
pub fn schedule_fired(provider: Provider, outcome: crate::scheduler::schedule::FiringOutcome) {
    use crate::scheduler::schedule::FiringOutcome;
    let outcome = match outcome {
        FiringOutcome::Enqueued => "enqueued",
        FiringOutcome::Skipped => "skipped",
    };
    counter!(SCHEDULE_FIRINGS, "provider" => provider.as_str(), "outcome" => outcome).increment(1);
}

/// A report-ready message handled (`outcome`: `delivered`, `retried`, or
/// the code it was rejected with).
pub fn bus_message(outcome: &'static str) {
    counter!(BUS_MESSAGES, "outcome" => outcome).increment(1);
}

/// Outbox events of `subject` (without the prefix) JetStream acked.
pub fn bus_published(subject: &str, count: u64) {
    counter!(BUS_PUBLISHED, "subject" => subject.to_owned()).increment(count);
}

/// An event too large for NATS was published with its large fields left out.
pub fn bus_truncated(subject: &str) {
    counter!(BUS_TRUNCATED, "subject" => subject.to_owned()).increment(1);
}

/// The bus's outbox, read at scrape time: events not yet published, and
/// how long the oldest has waited (0 when none).
pub fn bus_outbox(pending: i64, oldest_age: Option<f64>) {
    gauge!(BUS_OUTBOX_PENDING).set(pending as f64);
    gauge!(BUS_OUTBOX_OLDEST_AGE).set(oldest_age.unwrap_or(0.0));
}

/// A source call of `stream` failed (`error_type`: the error class).
pub fn ingest_error(stream: Stream, error_type: &'static str) {
    counter!(INGEST_ERRORS, "connector" => stream.as_str(), "error_type" => error_type)
        .increment(1);
}

/// Each stream's runs (all companies, from the database): seconds since
/// one last succeeded, and the share of those ended in the window that
/// succeeded (left unset while none ended).
/// The SLA monitor's last evaluation, per platform across companies
/// (no company label: one series per platform), and its unsent alerts.
pub fn sla(statuses: &[crate::sla::monitor::PlatformStatus], pending: &[(&'static str, i64)]) {
    for status in statuses {
        let platform = status.provider.as_str();
        gauge!(SLA_STATUS, "platform" => platform).set(status.status.level() as f64);
        gauge!(SLA_BREACHING_COMPANIES, "platform" => platform)
            .set(f64::from(status.breaching_companies));
        if let Some(rate) = status.success_rate {
            gauge!(SLA_SUCCESS_RATE, "platform" => platform).set(rate);
        }
    }
    for (channel, count) in pending {
        gauge!(SLA_NOTIFICATIONS_PENDING, "channel" => *channel).set(*count as f64);
    }
}

pub fn ingest_runs(runs: &[StreamRuns], now: DateTime<Utc>) {
    for runs in runs {
        let connector = runs.stream.as_str();
        if let Some(at) = runs.last_success {
            let lag = (now - at).num_milliseconds() as f64 / 1000.0;
            gauge!(INGESTION_LAG, "connector" => connector).set(lag);
        }
        if runs.ended > 0 {
            gauge!(CONNECTOR_SUCCESS_RATE, "connector" => connector)
                .set(runs.succeeded as f64 / runs.ended as f64);
        }
    }
}
