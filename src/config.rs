//! Typed configuration, read once at start from the environment (and `.env`).
//!
//! Every variable is documented in `.env.example` and `docs/configuration.md`.
//! Parsing takes a lookup function rather than touching `std::env` directly so
//! that tests can feed it a map.

use std::{collections::HashMap, net::IpAddr, path::PathBuf, str::FromStr, time::Duration};

use axum::http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use crate::{
    connectors::{
        BreakerConfig, OutboundConfig,
        keyring::{EncryptionKey, KeySet},
        retry::RetryPolicy,
        settings::{ProviderSettings, SettingsError},
    },
    ingest::{IngestConfig, redact::RedactionConfig},
    provider::Provider,
    webhooks::secrets::WebhookSecrets,
};

/// A variable that is missing or malformed. Its `Display` is the one line the
/// process prints before it exits, so it always names the variable.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {var}: {problem}")]
pub struct ConfigError {
    pub var: String,
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(var: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            var: var.into(),
            problem: problem.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// What one process runs (`RUN_MODE`): one image, deployed as API pods
/// and worker pods that scale apart, or as one deployment doing both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// The API and the delivery workers.
    All,
    /// The API without workers (as `DELIVERY_WORKERS=0`).
    Api,
    /// The workers, with only the probes (and `/`) on the HTTP port.
    Worker,
}

impl RunMode {
    pub fn serves_api(self) -> bool {
        self != Self::Worker
    }

    pub fn runs_workers(self) -> bool {
        self != Self::Api
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub run_mode: RunMode,
    pub host: IpAddr,
    pub port: u16,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub http: HttpConfig,
    pub connectors: ConnectorsConfig,
    pub delivery: DeliveryConfig,
    pub webhooks: WebhookConfig,
    pub retention: RetentionConfig,
    /// `METRICS_BEARER_TOKEN`: when set, `/metrics` requires it.
    pub metrics_token: Option<SecretString>,
    /// Where spans go; `None` (no OTLP endpoint set): no exporter, no cost.
    pub traces: Option<TracesConfig>,
    pub ingest: IngestConfig,
    pub scheduler: SchedulerConfig,
    pub sla: SlaConfig,
    /// The event bus (`bus`); `None` (no `NATS_URL`): no bus, the service
    /// runs without it.
    pub bus: Option<BusConfig>,
    /// How personal data is redacted before ingest stores it; `None` when a
    /// keyed mode has no `PII_HASH_KEY`: ingest then refuses to run
    /// (503 naming the variable) while deliveries go on.
    pub redaction: Option<RedactionConfig>,
    pub shutdown_timeout: Duration,
    pub health_check_timeout: Duration,
}

/// The key of the keyed redaction modes (`ingest::redact`).
const PII_KEY_VAR: &str = "PII_HASH_KEY";

/// OpenTelemetry trace export over OTLP/HTTP (protobuf), from the standard
/// `OTEL_*` variables (docs/tracing.md).
#[derive(Debug, Clone)]
pub struct TracesConfig {
    /// Where spans are posted: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it
    /// is, or `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`. Its user info
    /// and query may hold credentials: only [`TracesConfig::describe`] is
    /// logged.
    pub endpoint: SecretString,
    /// `OTEL_SERVICE_NAME`, `impact-in` by default.
    pub service_name: String,
}

impl TracesConfig {
    /// The endpoint without user info, path or query, for the logs.
    pub fn describe(&self) -> String {
        url::Url::parse(self.endpoint.expose_secret())
            .map(|url| url.origin().ascii_serialization())
            .unwrap_or_default()
    }

    fn from_env_with(env: &Env) -> Result<Option<Self>, ConfigError> {
        if env.bool_or("OTEL_SDK_DISABLED", false)? {
            return Ok(None);
        }
        const SIGNAL: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
        const GENERIC: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
        let (var, endpoint) = match (env.optional(SIGNAL), env.optional(GENERIC)) {
            (Some(url), _) => (SIGNAL, url),
            (None, Some(base)) => (GENERIC, format!("{}/v1/traces", base.trim_end_matches('/'))),
            (None, None) => return Ok(None),
        };
        // The value is not echoed: it may carry credentials.
        match url::Url::parse(&endpoint) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            _ => {
                return Err(ConfigError::new(
                    var,
                    "must be an http(s) URL, such as http://otel-collector:4318",
                ));
            }
        }
        for var in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            match env.optional(var).as_deref() {
                None | Some("http/protobuf") => {}
                Some(other) => {
                    return Err(ConfigError::new(
                        var,
                        format!("'{other}' is not supported: this build exports http/protobuf"),
                    ));
                }
            }
        }
        Ok(Some(Self {
            endpoint: endpoint.into(),
            service_name: env
                .optional("OTEL_SERVICE_NAME")
                .unwrap_or_else(|| "impact-in".into()),
        }))
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: SecretString,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `None` disables Redis; the in-process cache is used alone.
    pub url: Option<SecretString>,
    pub key_prefix: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub jwt_key: JwtKeySource,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub ops_api_keys: Vec<SecretString>,
}

#[derive(Debug, Clone)]
pub enum JwtKeySource {
    /// HS256 keyed by the UTF-8 bytes of `JWT_SECRET`.
    Secret(SecretString),
    /// RS256 or ES256 verified with the PEM public key in this file.
    PublicKeyFile(PathBuf),
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub cors_allowed_origins: Vec<HeaderValue>,
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ConnectorsConfig {
    pub providers: ProviderSettings,
    pub outbound: OutboundConfig,
    pub breaker: BreakerConfig,
    pub retry: RetryPolicies,
    /// `TOKEN_ENCRYPTION_KEY` and `TOKEN_ENCRYPTION_KEY_PREVIOUS`: what
    /// seals OAuth tokens and vaulted credentials.
    pub keys: KeySet,
    /// How long a company's built connectors are used before its vaulted
    /// credentials are read again (changes made on another replica).
    pub credentials_refresh: Duration,
    /// Set by `scripts/run.sh` when the providers point at the local sandbox,
    /// so the logs say so loudly.
    pub sandbox_mode: bool,
}

/// The delivery queue and its workers.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Claim loops per process; 0 runs the API without delivering.
    pub workers: usize,
    pub batch_size: i64,
    /// How long a claim holds before another worker may take the delivery
    /// over; always longer than one provider call can take.
    pub lease: Duration,
    /// How often idle workers look for due work when no NOTIFY arrives.
    pub poll_interval: Duration,
    /// How long a replay request waits for its attempt before answering 202.
    pub replay_timeout: Duration,
    /// How long a successful response is reused for an identical payload.
    pub idempotency_ttl: Duration,
    /// Whether what is delivered and ingested is written to the bus's
    /// outbox: when `NATS_URL` is set (no relay would ever drain it
    /// otherwise).
    pub publish_events: bool,
}

/// The daily retention job (`scheduler::retention`).
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Finished deliveries are removed once their last change is this many
    /// days old (webhook events no delivery holds: at least 7 days).
    pub days: u32,
    /// Deliveries (or events) one batch deletes, each batch its own short
    /// transaction.
    pub batch_size: i64,
    /// The pause after each full batch, so the job never holds the
    /// database's attention for long; 0 for none.
    pub batch_pause: Duration,
    /// `RETENTION_OUTBOX_HOURS` (24): how long the bus's outbox keeps an
    /// event after it was published (unpublished ones are never removed).
    pub outbox_hours: u32,
}

/// Provider webhooks in (`/webhooks/*`).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub secrets: WebhookSecrets,
    /// How far a signed timestamp may be from now, either way.
    pub tolerance: Duration,
    pub body_limit_bytes: usize,
}

/// The retry policy of each provider (`{PROVIDER}_RETRY_*`).
#[derive(Debug, Clone)]
pub struct RetryPolicies {
    providers: [RetryPolicy; 3],
    /// Deliveries a schedule created (seed 004: 5, 10, 20 minutes apart),
    /// whichever the provider.
    scheduled: RetryPolicy,
}

impl RetryPolicies {
    pub fn get(&self, provider: Provider) -> &RetryPolicy {
        &self.providers[provider as usize]
    }

    /// The policy of one delivery: a schedule's own when it came from one.
    pub fn for_delivery(&self, provider: Provider, scheduled: bool) -> &RetryPolicy {
        if scheduled {
            &self.scheduled
        } else {
            self.get(provider)
        }
    }
}

/// `SCHEDULER_MAX_RETRIES` (3) retries after the first call,
/// `SCHEDULER_RETRY_DELAY_MS` (5 minutes) apart at first, times
/// `SCHEDULER_BACKOFF_MULTIPLIER` (2) each time: 5, 10, 20 minutes. No
/// jitter, so the seed's figures hold; firings of different schedules are
/// already spread by their own times.
fn scheduled_retry_policy(env: &Env) -> Result<RetryPolicy, ConfigError> {
    let retries: u32 = env.parse_or("SCHEDULER_MAX_RETRIES", 3, "a whole number")?;
    let factor: f32 = env.parse_or("SCHEDULER_BACKOFF_MULTIPLIER", 2.0, "a number")?;
    if !(1.0..=10.0).contains(&factor) {
        return Err(ConfigError::new(
            "SCHEDULER_BACKOFF_MULTIPLIER",
            "must be from 1 to 10",
        ));
    }
    Ok(RetryPolicy {
        max_attempts: retries.saturating_add(1),
        initial_delay: env.millis("SCHEDULER_RETRY_DELAY_MS", 5 * 60 * 1000)?,
        factor,
        max_delay: Duration::from_secs(24 * 60 * 60),
        jitter: 0.0,
        ..RetryPolicy::default()
    })
}

/// The in-process scheduler (`scheduler::task`).
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// `ENABLE_SCHEDULER` (true): whether `serve` runs it.
    pub enabled: bool,
    /// `SCHEDULER_CHECK_INTERVAL` minutes (1): the longest it sleeps; it also
    /// wakes at the next due time and when a schedule changes here.
    pub check_interval: Duration,
    /// `IMPACT_METRICS_URL` with `INTERNAL_API_KEY`: where scheduled
    /// reports get their outcome scores, SROI and VIS; `None` leaves them
    /// out.
    pub metrics: Option<MetricsConfig>,
}

/// NATS JetStream, where report-ready events come in (docs/bus.md).
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// `NATS_URL`; may carry credentials, so it is never logged.
    pub url: SecretString,
    /// `NATS_REPORT_SUBJECT` (`impact.report.ready`).
    pub report_subject: String,
    /// `NATS_REPORT_STREAM` (`IMPACT_REPORTS`): the stream holding it.
    pub stream: String,
    /// `NATS_REPORT_CONSUMER` (`impact-in-reports`): the durable pull
    /// consumer every replica shares.
    pub consumer: String,
    /// `NATS_MAX_IN_FLIGHT` (256, at most 1024): messages handled at once
    /// per process, and the consumer's unacknowledged messages in all.
    pub max_in_flight: usize,
    /// `NATS_ACK_WAIT_SECS` (30): how long a message stays with a consumer
    /// that neither acks nor naks it (it died) before it is redelivered.
    pub ack_wait: Duration,
    /// `NATS_NAK_DELAY_MS` (5000): when a message that failed for a
    /// passing reason (Postgres down) comes back.
    pub nak_delay: Duration,
    /// `NATS_DUPLICATE_WINDOW_SECS` (120): the stream drops a second
    /// publish with the same `Nats-Msg-Id` within it.
    pub duplicate_window: Duration,
    /// `NATS_STREAM_MAX_AGE_HOURS` (168): how long the stream keeps a
    /// message, handled or not.
    pub max_age: Duration,
    /// `NATS_EVENTS_STREAM` (`IMPACT_EVENTS`): the stream the relay
    /// publishes what we ingest and deliver to.
    pub events_stream: String,
    /// `NATS_EVENTS_SUBJECT_PREFIX` (none): put before every subject we
    /// publish (`staging.` gives `staging.ingest.donation.made`), so that
    /// environments can share one NATS.
    pub events_prefix: String,
    /// `NATS_RELAY_BATCH` (1000, at most 10000): outbox events one relay
    /// pass publishes before it marks them sent.
    pub relay_batch: i64,
    /// `NATS_RELAY_INTERVAL_MS` (200): how often an idle relay looks for
    /// new outbox events.
    pub relay_interval: Duration,
}

/// The largest `NATS_MAX_IN_FLIGHT`: each message in flight may hold a
/// database connection's worth of work.
const MAX_BUS_IN_FLIGHT: usize = 1024;
/// The largest `NATS_RELAY_BATCH`: a pass holds its events in memory.
const MAX_RELAY_BATCH: i64 = 10_000;

impl BusConfig {
    /// The bus settings alone, for `impact-in migrate` and
    /// `impact-in publish-report`.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        from_process_env(Self::from_env_with)
    }

    fn from_env_with(env: &Env) -> Result<Option<Self>, ConfigError> {
        let Some(url) = env.optional("NATS_URL") else {
            return Ok(None);
        };
        let name = |var: &str, default: &str, token: bool| {
            let value = env.optional(var).unwrap_or_else(|| default.into());
            // A stream or consumer name is one subject token.
            let bad = |c: char| c.is_whitespace() || (token && matches!(c, '.' | '*' | '>'));
            if value.contains(bad) {
                Err(ConfigError::new(
                    var,
                    if token {
                        "must not contain spaces, '.', '*' or '>'"
                    } else {
                        "must not contain spaces"
                    },
                ))
            } else {
                Ok(value)
            }
        };
        // 64 held a burst of events to ~2,000/s on the benchmark's two
        // cores (each message waits ~31 ms for its commit); 256 gave
        // ~2,900/s for 16 MiB more (docs/performance.md, "Event bus").
        let max_in_flight = env.positive("NATS_MAX_IN_FLIGHT", 256)?;
        if max_in_flight > MAX_BUS_IN_FLIGHT {
            return Err(ConfigError::new(
                "NATS_MAX_IN_FLIGHT",
                format!("must be at most {MAX_BUS_IN_FLIGHT}"),
            ));
        }
        let relay_batch = env.positive("NATS_RELAY_BATCH", 1000)?;
        if relay_batch > MAX_RELAY_BATCH {
            return Err(ConfigError::new(
                "NATS_RELAY_BATCH",
                format!("must be at most {MAX_RELAY_BATCH}"),
            ));
        }
        let events_prefix = name("NATS_EVENTS_SUBJECT_PREFIX", "", false)?;
        if !(events_prefix.is_empty() || events_prefix.ends_with('.'))
            || events_prefix.contains(['*', '>'])
        {
            return Err(ConfigError::new(
                "NATS_EVENTS_SUBJECT_PREFIX",
                "must end with '.' and hold no '*' or '>'",
            ));
        }
        Ok(Some(Self {
            url: url.trim().to_owned().into(),
            report_subject: name("NATS_REPORT_SUBJECT", "impact.report.ready", false)?,
            stream: name("NATS_REPORT_STREAM", "IMPACT_REPORTS", true)?,
            consumer: name("NATS_REPORT_CONSUMER", "impact-in-reports", true)?,
            max_in_flight,
            ack_wait: env.seconds("NATS_ACK_WAIT_SECS", 30)?,
            nak_delay: env.millis("NATS_NAK_DELAY_MS", 5000)?,
            duplicate_window: env.seconds("NATS_DUPLICATE_WINDOW_SECS", 120)?,
            max_age: Duration::from_secs(
                60 * 60 * env.positive::<u64>("NATS_STREAM_MAX_AGE_HOURS", 168)?,
            ),
            events_stream: name("NATS_EVENTS_STREAM", "IMPACT_EVENTS", true)?,
            events_prefix,
            relay_batch,
            relay_interval: env.millis("NATS_RELAY_INTERVAL_MS", 200)?,
        }))
    }

    pub fn url(&self) -> &str {
        self.url.expose_secret()
    }
}

/// The SLA objectives and the monitor that alerts on them (docs/sla.md).
#[derive(Debug, Clone)]
pub struct SlaConfig {
    /// `SLA_*` thresholds and `SLA_MIN_SAMPLES`.
    pub thresholds: crate::sla::Thresholds,
    /// `ENABLE_SLA_MONITORING` (true): whether `serve` runs the monitor.
    pub monitoring: bool,
    /// `SLA_MONITOR_INTERVAL_SECS` (300): how often it evaluates.
    pub interval: Duration,
    /// `SLA_WINDOW_HOURS` (24): the window its threshold statuses cover.
    pub window: Duration,
    /// `SLACK_WEBHOOK_URL`: an incoming webhook; `None`: no Slack alerts.
    pub slack_webhook: Option<SecretString>,
    /// `PAGERDUTY_INTEGRATION_KEY`: the Events API v2 routing key; `None`:
    /// no pages.
    pub pagerduty_key: Option<SecretString>,
    /// `PAGERDUTY_EVENTS_URL`: the Events API endpoint (EU accounts, tests).
    pub pagerduty_url: url::Url,
    /// `PUBLIC_BASE_URL`: where people reach this service, for the links
    /// in alerts; `None`: the links are paths.
    pub public_base_url: Option<url::Url>,
}

impl SlaConfig {
    fn from_env_with(env: &Env) -> Result<Self, ConfigError> {
        let rate = |var: &str, default: f64| -> Result<f64, ConfigError> {
            let value: f64 = env.parse_or(var, default, "a number between 0 and 1")?;
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::new(var, "must be between 0 and 1"));
            }
            Ok(value)
        };
        let defaults = crate::sla::Thresholds::default();
        let bounds = |healthy_var: &str,
                      warning_var: &str,
                      default: crate::sla::objective::Bounds,
                      scale: f64,
                      rates: bool|
         -> Result<crate::sla::objective::Bounds, ConfigError> {
            let (healthy, warning) = if rates {
                (
                    rate(healthy_var, default.healthy)?,
                    rate(warning_var, default.warning)?,
                )
            } else {
                (
                    env.positive::<u64>(healthy_var, (default.healthy / scale) as u64)? as f64
                        * scale,
                    env.positive::<u64>(warning_var, (default.warning / scale) as u64)? as f64
                        * scale,
                )
            };
            // Rates improve upwards, latency downwards: the warning bound
            // must lie beyond the healthy one either way.
            let ordered = if rates {
                warning <= healthy
            } else {
                warning >= healthy
            };
            if !ordered {
                return Err(ConfigError::new(
                    warning_var,
                    format!("must not be stricter than {healthy_var}"),
                ));
            }
            Ok(crate::sla::objective::Bounds { healthy, warning })
        };
        let thresholds = crate::sla::Thresholds {
            success_rate: bounds(
                "SLA_SUCCESS_RATE_HEALTHY",
                "SLA_SUCCESS_RATE_WARNING",
                defaults.success_rate,
                1.0,
                true,
            )?,
            p95_latency_ms: bounds(
                "SLA_P95_LATENCY_HEALTHY_SECS",
                "SLA_P95_LATENCY_WARNING_SECS",
                defaults.p95_latency_ms,
                1000.0,
                false,
            )?,
            retry_success_rate: bounds(
                "SLA_RETRY_SUCCESS_HEALTHY",
                "SLA_RETRY_SUCCESS_WARNING",
                defaults.retry_success_rate,
                1.0,
                true,
            )?,
            consecutive_failures: env
                .positive("SLA_CONSECUTIVE_FAILURES", defaults.consecutive_failures)?,
            min_samples: env.positive("SLA_MIN_SAMPLES", defaults.min_samples)?,
        };
        if thresholds.success_rate.healthy >= 1.0 {
            return Err(ConfigError::new(
                "SLA_SUCCESS_RATE_HEALTHY",
                "must be below 1: the error budget is 1 minus the objective",
            ));
        }
        let checked = |var: &str, raw: &str| {
            http_url(raw).ok_or_else(|| ConfigError::new(var, "must be an http:// or https:// URL"))
        };
        let url = |var: &str| -> Result<Option<url::Url>, ConfigError> {
            env.optional(var).map(|raw| checked(var, &raw)).transpose()
        };
        let slack_webhook = env.secret("SLACK_WEBHOOK_URL")?;
        if let Some(raw) = &slack_webhook {
            // Checked without echoing it: the URL is the credential.
            checked("SLACK_WEBHOOK_URL", raw)?;
        }
        Ok(Self {
            thresholds,
            monitoring: env.bool_or("ENABLE_SLA_MONITORING", true)?,
            interval: env.seconds("SLA_MONITOR_INTERVAL_SECS", 300)?,
            window: Duration::from_secs(3600 * env.positive::<u64>("SLA_WINDOW_HOURS", 24)?),
            slack_webhook: slack_webhook.map(|raw| raw.trim().to_owned().into()),
            pagerduty_key: env
                .secret("PAGERDUTY_INTEGRATION_KEY")?
                .map(|raw| raw.trim().to_owned().into()),
            pagerduty_url: url("PAGERDUTY_EVENTS_URL")?.unwrap_or_else(|| {
                url::Url::parse("https://events.pagerduty.com/v2/enqueue").expect("a URL")
            }),
            public_base_url: url("PUBLIC_BASE_URL")?,
        })
    }
}

/// Where people reach the service, without a trailing slash:
/// `PUBLIC_BASE_URL`, else `http://127.0.0.1:PORT_IMPACT_IN` (3007), each
/// checked as the service checks it. For `impact-in token --console`,
/// which needs no other configuration.
pub fn public_base(lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let env = Env(lookup);
    if let Some(raw) = env.optional("PUBLIC_BASE_URL") {
        let url = http_url(&raw).ok_or_else(|| {
            ConfigError::new("PUBLIC_BASE_URL", "must be an http:// or https:// URL")
        })?;
        return Ok(url.as_str().trim_end_matches('/').to_owned());
    }
    Ok(format!("http://127.0.0.1:{}", env.parse_port()?))
}

/// An absolute http(s) URL with a host.
fn http_url(raw: &str) -> Option<url::Url> {
    url::Url::parse(raw.trim())
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
}

/// The impact platform's metrics endpoint (`scheduler::metrics`).
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// The platform's base URL, without a trailing slash.
    pub base_url: url::Url,
    pub api_key: SecretString,
}

impl MetricsConfig {
    /// Checked at start, unlike the ingest sources' URLs (reported when a
    /// run uses them): a firing that cannot fetch its metrics does not fire
    /// at all, so a typo would hold back every schedule.
    fn from_env_with(env: &Env) -> Result<Option<Self>, ConfigError> {
        const VAR: &str = "IMPACT_METRICS_URL";
        let Some(raw) = env.optional(VAR) else {
            return Ok(None);
        };
        let base_url = http_url(raw.trim_end_matches('/'))
            .ok_or_else(|| ConfigError::new(VAR, "must be an http:// or https:// URL"))?;
        let api_key = env.secret("INTERNAL_API_KEY")?.ok_or_else(|| {
            ConfigError::new(
                "INTERNAL_API_KEY",
                "missing: IMPACT_METRICS_URL is set and the impact platform needs the key",
            )
        })?;
        Ok(Some(Self {
            base_url,
            api_key: api_key.trim().to_owned().into(),
        }))
    }
}

/// The shortest HS256 secret accepted: RFC 7518 §3.2 asks for a key at least
/// as long as the hash output (256 bits).
const MIN_JWT_SECRET_BYTES: usize = 32;
const MIN_OPS_KEY_CHARS: usize = 24;

impl Config {
    /// Reads the process environment, after loading `.env` when present.
    pub fn from_env() -> Result<Self, ConfigError> {
        from_process_env(|env| Self::from_lookup(env.0, std::env::vars()))
    }

    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_lookup(&|key| vars.get(key).cloned(), vars.clone())
    }

    fn from_lookup(
        lookup: &dyn Fn(&str) -> Option<String>,
        all: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        let mut config = Self {
            run_mode: match env.optional("RUN_MODE").as_deref() {
                None | Some("all") => RunMode::All,
                Some("api") => RunMode::Api,
                Some("worker") => RunMode::Worker,
                Some(other) => {
                    return Err(ConfigError::new(
                        "RUN_MODE",
                        format!("'{other}' is not one of all, api, worker"),
                    ));
                }
            },
            host: env.parse_or("HOST", IpAddr::from([0, 0, 0, 0]), "an IP address")?,
            port: env.parse_port()?,
            database: DatabaseConfig::from_env_with(&env)?,
            redis: RedisConfig {
                url: env.optional("REDIS_URL").map(SecretString::from),
                key_prefix: env
                    .optional("REDIS_KEY_PREFIX")
                    .unwrap_or_else(|| "impact-in:".into()),
                timeout: env.millis("REDIS_TIMEOUT_MS", 250)?,
            },
            log: LogConfig::from_env_with(&env)?,
            auth: AuthConfig::from_env_with(&env)?,
            http: HttpConfig {
                cors_allowed_origins: env.origins("CORS_ALLOWED_ORIGINS")?,
                body_limit_bytes: env.positive("REQUEST_BODY_LIMIT_BYTES", 1024 * 1024)?,
                request_timeout: env.seconds("REQUEST_TIMEOUT_SECS", 30)?,
            },
            connectors: ConnectorsConfig::from_env_with(&env, all)?,
            delivery: DeliveryConfig::from_env_with(&env)?,
            webhooks: WebhookConfig {
                // Filled in below, from the provider variables.
                secrets: WebhookSecrets::default(),
                tolerance: env.seconds("WEBHOOK_TOLERANCE_SECS", 300)?,
                body_limit_bytes: env.positive("WEBHOOK_BODY_LIMIT_BYTES", 256 * 1024)?,
            },
            retention: RetentionConfig::from_env_with(&env)?,
            metrics_token: env.secret("METRICS_BEARER_TOKEN")?.map(SecretString::from),
            traces: TracesConfig::from_env_with(&env)?,
            ingest: IngestConfig {
                // 0: answer 202 at once.
                sync_wait: Duration::from_secs(env.parse_or(
                    "INGEST_SYNC_WAIT_SECS",
                    25,
                    "a whole number of seconds",
                )?),
                lease: env.seconds("INGEST_LEASE_SECS", 120)?,
                resume_interval: env.seconds("INGEST_RESUME_INTERVAL_SECS", 15)?,
                retry_attempts: env.positive("INGEST_RETRY_ATTEMPTS", 5)?,
                retry_initial_delay: env.millis("INGEST_RETRY_INITIAL_DELAY_MS", 500)?,
                retry_max_delay: env.seconds("INGEST_RETRY_MAX_DELAY_SECS", 60)?,
                concurrency: env.positive("INGEST_CONCURRENCY", 3)?,
            },
            scheduler: SchedulerConfig {
                enabled: env.bool_or("ENABLE_SCHEDULER", true)?,
                check_interval: Duration::from_secs(
                    60 * env.positive::<u64>("SCHEDULER_CHECK_INTERVAL", 1)?,
                ),
                metrics: MetricsConfig::from_env_with(&env)?,
            },
            sla: SlaConfig::from_env_with(&env)?,
            bus: BusConfig::from_env_with(&env)?,
            redaction: match RedactionConfig::from_lookup(lookup) {
                Ok(redaction) => Some(redaction),
                Err(err) if err.var == PII_KEY_VAR && env.optional(PII_KEY_VAR).is_none() => None,
                Err(err) => return Err(err),
            },
            shutdown_timeout: env.seconds("SHUTDOWN_TIMEOUT_SECS", 30)?,
            health_check_timeout: env.millis("HEALTH_CHECK_TIMEOUT_MS", 2000)?,
        };
        config.webhooks.secrets = webhook_secrets(&config.connectors.providers)?;
        if config.run_mode == RunMode::Worker && config.delivery.workers == 0 {
            return Err(ConfigError::new(
                "RUN_MODE",
                "'worker' with DELIVERY_WORKERS=0 would run nothing",
            ));
        }
        // One provider call can take two token fetches and two API calls.
        let call = config.connectors.outbound.request_timeout * 4;
        if config.delivery.lease < call + LEASE_MARGIN {
            return Err(ConfigError::new(
                "DELIVERY_LEASE_SECS",
                format!(
                    "must be at least {}s: 4 × OUTBOUND_TIMEOUT_SECS + {}s, so no delivery is taken over while in flight",
                    (call + LEASE_MARGIN).as_secs(),
                    LEASE_MARGIN.as_secs()
                ),
            ));
        }
        Ok(config)
    }
}

impl AuthConfig {
    /// The JWT settings alone, for `impact-in token`, which needs no database.
    pub fn from_env() -> Result<Self, ConfigError> {
        from_process_env(Self::from_env_with)
    }

    fn from_env_with(env: &Env) -> Result<Self, ConfigError> {
        let secret = env.secret("JWT_SECRET")?;
        let key_file = env.optional("JWT_PUBLIC_KEY_FILE");
        let jwt_key = match (secret, key_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "JWT_SECRET",
                    "set either JWT_SECRET or JWT_PUBLIC_KEY_FILE, not both",
                ));
            }
            (Some(secret), None) if secret.len() < MIN_JWT_SECRET_BYTES => {
                return Err(ConfigError::new(
                    "JWT_SECRET",
                    format!("must be at least {MIN_JWT_SECRET_BYTES} bytes"),
                ));
            }
            (Some(secret), None) => JwtKeySource::Secret(secret.into()),
            (None, Some(path)) => JwtKeySource::PublicKeyFile(path.into()),
            (None, None) => {
                return Err(ConfigError::new(
                    "JWT_SECRET",
                    "missing: set JWT_SECRET (HS256) or JWT_PUBLIC_KEY_FILE (RS256/ES256)",
                ));
            }
        };
        let ops_api_keys = env
            .list("OPS_API_KEYS")
            .into_iter()
            .map(|key| {
                if is_placeholder(&key) {
                    Err(placeholder_error("OPS_API_KEYS"))
                } else if key.chars().count() < MIN_OPS_KEY_CHARS {
                    Err(ConfigError::new(
                        "OPS_API_KEYS",
                        format!("every key must be at least {MIN_OPS_KEY_CHARS} characters"),
                    ))
                } else {
                    Ok(SecretString::from(key))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            jwt_key,
            issuer: env.optional("JWT_ISSUER"),
            audience: env.optional("JWT_AUDIENCE"),
            ops_api_keys,
        })
    }
}

/// Every placeholder in `.env.example` starts with this, so a copied
/// `.env.example` cannot start a service keyed by publicly known secrets.
const PLACEHOLDER_PREFIX: &str = "replace-me";

fn is_placeholder(value: &str) -> bool {
    value
        .trim()
        .to_ascii_lowercase()
        .starts_with(PLACEHOLDER_PREFIX)
}

fn placeholder_error(var: &str) -> ConfigError {
    ConfigError::new(
        var,
        "still the placeholder of .env.example: generate a value (scripts/run.sh writes one into .env)",
    )
}

/// sqlx reads any URL as Postgres options, whatever its scheme, so a
/// `mysql://` or `http://` URL would only fail later, as "database not
/// ready" for ever.
const POSTGRES_SCHEMES: &[&str] = &["postgres", "postgresql"];

/// A lease must outlast the call it covers, token fetch and repeat after a
/// 401 included, or a second worker takes over a delivery still in flight
/// and it is sent twice at once.
const LEASE_MARGIN: Duration = Duration::from_secs(10);

impl DeliveryConfig {
    fn from_env_with(env: &Env) -> Result<Self, ConfigError> {
        let workers = match env.optional("DELIVERY_WORKERS") {
            None => 2,
            Some(raw) => raw.trim().parse().map_err(|_| {
                ConfigError::new(
                    "DELIVERY_WORKERS",
                    format!("'{raw}' is not a whole number ≥ 0"),
                )
            })?,
        };
        Ok(Self {
            workers,
            batch_size: env.positive("DELIVERY_BATCH_SIZE", 64)?,
            lease: env.seconds("DELIVERY_LEASE_SECS", 120)?,
            poll_interval: env.millis("DELIVERY_POLL_INTERVAL_MS", 1000)?,
            replay_timeout: env.seconds("REPLAY_TIMEOUT_SECS", 10)?,
            idempotency_ttl: env.seconds("IDEMPOTENCY_TTL_SECONDS", 24 * 60 * 60)?,
            publish_events: env.optional("NATS_URL").is_some(),
        })
    }
}

/// The longest `RETENTION_BATCH_PAUSE_MS`: a run renews its lease on the
/// day after every batch, and a pause near the lease (five minutes) would
/// let another replica take a live run over.
const MAX_RETENTION_PAUSE_MS: u64 = 60_000;

impl RetentionConfig {
    fn from_env_with(env: &Env) -> Result<Self, ConfigError> {
        let pause_ms: u64 = env.parse_or(
            "RETENTION_BATCH_PAUSE_MS",
            50,
            "a whole number of milliseconds",
        )?;
        if pause_ms > MAX_RETENTION_PAUSE_MS {
            return Err(ConfigError::new(
                "RETENTION_BATCH_PAUSE_MS",
                format!("must be at most {MAX_RETENTION_PAUSE_MS}"),
            ));
        }
        Ok(Self {
            days: env.positive("RETENTION_DAYS", 90)?,
            batch_size: env.positive("RETENTION_BATCH_SIZE", 200)?,
            batch_pause: Duration::from_millis(pause_ms),
            outbox_hours: env.positive("RETENTION_OUTBOX_HOURS", 24)?,
        })
    }
}

impl ConnectorsConfig {
    fn from_env_with(
        env: &Env,
        all: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let providers = ProviderSettings::from_vars(all);
        // A malformed global provider setting stops start-up; a provider
        // that is simply not configured is reported when used.
        for provider in Provider::ALL {
            if let Err(SettingsError::Invalid { var, problem }) = providers.resolve(provider, None)
            {
                return Err(ConfigError::new(var, problem));
            }
        }
        let key = |var: &str, raw: &str| {
            EncryptionKey::from_base64(raw).map_err(|err| ConfigError::new(var, err.to_string()))
        };
        let current = env
            .secret("TOKEN_ENCRYPTION_KEY")?
            .ok_or_else(|| {
                ConfigError::new(
                    "TOKEN_ENCRYPTION_KEY",
                    "missing: 32 random bytes, base64 (openssl rand -base64 32)",
                )
            })
            .and_then(|raw| key("TOKEN_ENCRYPTION_KEY", &raw))?;
        // Earlier keys, still read while what they sealed is sealed again.
        let previous = env
            .list("TOKEN_ENCRYPTION_KEY_PREVIOUS")
            .iter()
            .map(|raw| key("TOKEN_ENCRYPTION_KEY_PREVIOUS", raw))
            .collect::<Result<_, _>>()?;
        let [benevity, goodera, workday] = Provider::ALL.map(|p| retry_policy(env, p));
        Ok(Self {
            providers,
            outbound: OutboundConfig {
                connect_timeout: env.millis("OUTBOUND_CONNECT_TIMEOUT_MS", 5000)?,
                request_timeout: env.seconds("OUTBOUND_TIMEOUT_SECS", 15)?,
                max_response_bytes: env.positive("OUTBOUND_MAX_RESPONSE_BYTES", 64 * 1024)?,
                max_retry_after: env.seconds("RETRY_AFTER_MAX_SECS", 300)?,
            },
            breaker: BreakerConfig {
                failure_threshold: env.positive("CIRCUIT_FAILURE_THRESHOLD", 5)?,
                window: env.seconds("CIRCUIT_WINDOW_SECS", 10)?,
                cooldown: env.seconds("CIRCUIT_COOLDOWN_SECS", 30)?,
            },
            retry: RetryPolicies {
                providers: [benevity?, goodera?, workday?],
                scheduled: scheduled_retry_policy(env)?,
            },
            keys: KeySet { current, previous },
            credentials_refresh: env.seconds("CREDENTIALS_REFRESH_SECS", 30)?,
            sandbox_mode: env.bool_or("SANDBOX_MODE", false)?,
        })
    }
}

/// Every `*_WEBHOOK_SECRET`, checked: a malformed or placeholder secret
/// stops start-up, naming its variable.
fn webhook_secrets(providers: &ProviderSettings) -> Result<WebhookSecrets, ConfigError> {
    for provider in Provider::ALL {
        for (var, _, value) in providers.named(provider, "WEBHOOK_SECRET") {
            if value.expose_secret().split(',').any(is_placeholder) {
                return Err(placeholder_error(var));
            }
        }
    }
    WebhookSecrets::from_settings(providers).map_err(|err| ConfigError::new(err.var, err.problem))
}

/// `{PROVIDER}_RETRY_*`, defaulting to `DELIVERY_MAX_ATTEMPTS` and the
/// seed's 1 s / 30 s.
fn retry_policy(env: &Env, provider: Provider) -> Result<RetryPolicy, ConfigError> {
    let name = |suffix: &str| format!("{}_{suffix}", provider.as_str().to_ascii_uppercase());
    let defaults = RetryPolicy::default();
    let max_attempts = env.positive("DELIVERY_MAX_ATTEMPTS", defaults.max_attempts)?;
    Ok(RetryPolicy {
        max_attempts: env.positive(&name("RETRY_MAX_ATTEMPTS"), max_attempts)?,
        initial_delay: env.millis(&name("RETRY_INITIAL_DELAY_MS"), 1000)?,
        max_delay: env.seconds(&name("RETRY_MAX_DELAY_SECS"), 30)?,
        ..defaults
    })
}

impl LogConfig {
    /// Logging settings alone, so that commands other than `serve` log alike.
    pub fn from_env() -> Result<Self, ConfigError> {
        from_process_env(Self::from_env_with)
    }

    fn from_env_with(env: &Env) -> Result<Self, ConfigError> {
        let format = match env.optional("LOG_FORMAT").as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("'{other}' is not one of json, pretty"),
                ));
            }
        };
        let level = env.optional("LOG_LEVEL").unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            return Err(ConfigError::new(
                "LOG_LEVEL",
                format!("'{level}' is not a level (error, warn, info, debug, trace) or filter"),
            ));
        }
        Ok(Self { level, format })
    }
}

impl DatabaseConfig {
    /// The database settings alone, for `impact-in migrate`.
    pub fn from_env() -> Result<Self, ConfigError> {
        from_process_env(Self::from_env_with)
    }

    fn from_env_with(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            url: env.postgres_url("DATABASE_URL")?,
            max_connections: env.positive("DATABASE_MAX_CONNECTIONS", 10)?,
            acquire_timeout: env.seconds("DATABASE_ACQUIRE_TIMEOUT_SECS", 5)?,
            migrate_on_start: env.bool_or("MIGRATE_ON_START", true)?,
        })
    }

    pub fn url(&self) -> &str {
        self.url.expose_secret()
    }
}

/// Runs `parse` over the process environment, after loading `.env`. A missing
/// `.env` is the normal case in production; a malformed one is reported by the
/// variables it fails to provide.
fn from_process_env<T>(
    parse: impl FnOnce(&Env) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let _ = dotenvy::dotenv();
    parse(&Env(&|key| std::env::var(key).ok()))
}

/// Environment lookup with parsers that name the variable on failure.
pub(crate) struct Env<'a>(pub(crate) &'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// A set but blank variable counts as unset, as in most shells' `.env` use.
    pub(crate) fn optional(&self, var: &str) -> Option<String> {
        (self.0)(var).filter(|value| !value.trim().is_empty())
    }

    /// A secret, refused while it still holds the placeholder of `.env.example`.
    pub(crate) fn secret(&self, var: &str) -> Result<Option<String>, ConfigError> {
        match self.optional(var) {
            Some(value) if is_placeholder(&value) => Err(placeholder_error(var)),
            value => Ok(value),
        }
    }

    /// A Postgres URL. Only the scheme is echoed in errors: the rest may
    /// hold a password. The rest is checked when the pool is built.
    fn postgres_url(&self, var: &str) -> Result<SecretString, ConfigError> {
        let raw = self
            .optional(var)
            .ok_or_else(|| ConfigError::new(var, "missing (required)"))?;
        let url = url::Url::parse(raw.trim())
            .map_err(|_| ConfigError::new(var, "not a URL (postgres://user@host:port/db)"))?;
        if !POSTGRES_SCHEMES.contains(&url.scheme()) {
            return Err(ConfigError::new(
                var,
                format!(
                    "'{}://' is not a Postgres URL (postgres:// or postgresql://)",
                    url.scheme()
                ),
            ));
        }
        Ok(SecretString::from(raw))
    }

    fn parse_or<T: FromStr>(
        &self,
        var: &str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match self.optional(var) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|_| ConfigError::new(var, format!("'{raw}' is not {expected}"))),
        }
    }

    fn parse_port(&self) -> Result<u16, ConfigError> {
        let port: u16 = self.parse_or("PORT_IMPACT_IN", 3007, "a port number (1-65535)")?;
        if port == 0 {
            return Err(ConfigError::new(
                "PORT_IMPACT_IN",
                "'0' is not a port number (1-65535)",
            ));
        }
        Ok(port)
    }

    pub(crate) fn positive<T>(&self, var: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Default,
    {
        let value = self.parse_or(var, default, "a positive whole number")?;
        if value <= T::default() {
            return Err(ConfigError::new(var, "must be greater than zero"));
        }
        Ok(value)
    }

    fn seconds(&self, var: &str, default: u64) -> Result<Duration, ConfigError> {
        self.positive(var, default).map(Duration::from_secs)
    }

    fn millis(&self, var: &str, default: u64) -> Result<Duration, ConfigError> {
        self.positive(var, default).map(Duration::from_millis)
    }

    fn bool_or(&self, var: &str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(var).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes") => Ok(true),
            Some(v) if matches!(v.as_str(), "false" | "0" | "no") => Ok(false),
            Some(v) => Err(ConfigError::new(var, format!("'{v}' is not true or false"))),
        }
    }

    pub(crate) fn list(&self, var: &str) -> Vec<String> {
        self.optional(var)
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn origins(&self, var: &str) -> Result<Vec<HeaderValue>, ConfigError> {
        self.list(var)
            .into_iter()
            .map(|origin| {
                let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
                    && !origin.ends_with('/');
                if !valid {
                    return Err(ConfigError::new(
                        var,
                        format!("'{origin}' is not an origin like https://cockpit.example.com"),
                    ));
                }
                HeaderValue::from_str(&origin)
                    .map_err(|_| ConfigError::new(var, format!("'{origin}' is not a valid origin")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HashMap<String, String> {
        HashMap::from([
            (
                "DATABASE_URL".into(),
                "postgres://localhost/impact_in".into(),
            ),
            (
                "JWT_SECRET".into(),
                "0123456789abcdef0123456789abcdef".into(),
            ),
            (
                "TOKEN_ENCRYPTION_KEY".into(),
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
            ),
        ])
    }

    fn error_for(var: &str, value: &str) -> ConfigError {
        let mut vars = base();
        vars.insert(var.into(), value.into());
        Config::from_map(&vars).expect_err("config should be rejected")
    }

    fn traces_with(vars: &[(&str, &str)]) -> Result<Option<TracesConfig>, ConfigError> {
        let mut all = base();
        all.extend(vars.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        Config::from_map(&all).map(|config| config.traces)
    }

    #[test]
    fn traces_are_off_without_an_endpoint_or_when_the_sdk_is_disabled() {
        assert!(traces_with(&[]).unwrap().is_none());
        let disabled = traces_with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert!(disabled.unwrap().is_none());
    }

    #[test]
    fn the_traces_endpoint_follows_the_otel_variables() {
        let generic = traces_with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")])
            .unwrap()
            .unwrap();
        assert_eq!(
            generic.endpoint.expose_secret(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(generic.service_name, "impact-in");
        let signal = traces_with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://u:p@traces.example/in?k=s",
            ),
            ("OTEL_SERVICE_NAME", "impact-in-eu"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            signal.endpoint.expose_secret(),
            "https://u:p@traces.example/in?k=s"
        );
        assert_eq!(signal.service_name, "impact-in-eu");
        // What the logs show holds no credentials.
        assert_eq!(signal.describe(), "https://traces.example");
    }

    #[test]
    fn a_bad_traces_endpoint_or_protocol_is_refused_naming_the_variable() {
        let err = traces_with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]).unwrap_err();
        assert_eq!(err.var, "OTEL_EXPORTER_OTLP_ENDPOINT");
        let err = traces_with(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://u:secret@x/")])
            .unwrap_err();
        assert_eq!(err.var, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        assert!(!err.to_string().contains("secret"), "{err}");
        let err = traces_with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "OTEL_EXPORTER_OTLP_PROTOCOL");
    }

    #[test]
    fn defaults_apply_when_only_required_variables_are_set() {
        let config = Config::from_map(&base()).unwrap();
        assert_eq!(config.port, 3007);
        assert_eq!(config.http.body_limit_bytes, 1024 * 1024);
        assert_eq!(config.database.max_connections, 10);
        assert!(config.database.migrate_on_start);
        assert!(config.redis.url.is_none());
        assert_eq!(config.log.format, LogFormat::Json);
        assert!(config.auth.ops_api_keys.is_empty());
        assert_eq!(config.retention.days, 90);
        assert_eq!(config.retention.batch_size, 200);
        assert_eq!(config.retention.batch_pause, Duration::from_millis(50));
    }

    #[test]
    fn the_retention_pause_may_be_zero() {
        let mut vars = base();
        vars.insert("RETENTION_BATCH_PAUSE_MS".into(), "0".into());
        let config = Config::from_map(&vars).unwrap();
        assert_eq!(config.retention.batch_pause, Duration::ZERO);
    }

    #[test]
    fn missing_database_url_names_the_variable() {
        let mut vars = base();
        vars.remove("DATABASE_URL");
        let err = Config::from_map(&vars).unwrap_err();
        assert_eq!(err.var, "DATABASE_URL");
    }

    #[test]
    fn malformed_values_name_their_variable() {
        for (var, value) in [
            ("PORT_IMPACT_IN", "abc"),
            ("PORT_IMPACT_IN", "0"),
            ("PORT_IMPACT_IN", "70000"),
            ("LOG_FORMAT", "xml"),
            ("LOG_LEVEL", "loud=[["),
            ("REQUEST_BODY_LIMIT_BYTES", "-1"),
            ("REQUEST_TIMEOUT_SECS", "0"),
            ("MIGRATE_ON_START", "maybe"),
            ("CORS_ALLOWED_ORIGINS", "cockpit.example.com"),
            ("OPS_API_KEYS", "short"),
            ("JWT_SECRET", "too-short"),
            ("TOKEN_ENCRYPTION_KEY", "c2hvcnQ="),
            ("TOKEN_ENCRYPTION_KEY", "not base64!"),
            ("TOKEN_ENCRYPTION_KEY_PREVIOUS", "c2hvcnQ="),
            ("CIRCUIT_FAILURE_THRESHOLD", "0"),
            ("GOODERA_RETRY_MAX_ATTEMPTS", "zero"),
            ("BENEVITY_API_URL", "ftp://benevity.example"),
            ("BENEVITY_AUTH", "password"),
            ("DELIVERY_LEASE_SECS", "60"),
            ("DELIVERY_WORKERS", "-1"),
            ("RETENTION_DAYS", "0"),
            ("RETENTION_DAYS", "90d"),
            ("RETENTION_BATCH_SIZE", "0"),
            ("RETENTION_BATCH_PAUSE_MS", "-1"),
            ("RETENTION_BATCH_PAUSE_MS", "60001"),
            ("DATABASE_URL", "mysql://u:p@127.0.0.1/impact_in"),
            ("DATABASE_URL", "http://127.0.0.1:5432/impact_in"),
            ("DATABASE_URL", "127.0.0.1:5432/impact_in"),
            ("IMPACT_METRICS_URL", "ftp://metrics.example"),
            ("IMPACT_METRICS_URL", "metrics.example/v1"),
        ] {
            assert_eq!(error_for(var, value).var, var, "{var}={value}");
        }
    }

    #[test]
    fn impact_metrics_are_optional_and_need_the_internal_key() {
        let config = Config::from_map(&base()).unwrap();
        assert!(config.scheduler.metrics.is_none());
        let mut vars = base();
        vars.insert(
            "IMPACT_METRICS_URL".into(),
            "https://metrics.example/".into(),
        );
        assert_eq!(
            Config::from_map(&vars).unwrap_err().var,
            "INTERNAL_API_KEY",
            "the platform's key is required with its URL"
        );
        vars.insert("INTERNAL_API_KEY".into(), "internal-key".into());
        let metrics = Config::from_map(&vars).unwrap().scheduler.metrics.unwrap();
        assert_eq!(metrics.base_url.as_str(), "https://metrics.example/");
    }

    /// Every secret that `.env.example` fills with a placeholder is refused
    /// with that placeholder, naming its variable.
    #[test]
    fn placeholders_of_env_example_are_refused() {
        let placeholders: Vec<(&str, &str)> = include_str!("../.env.example")
            .lines()
            .filter_map(|line| line.split_once('='))
            .filter(|(_, value)| value.starts_with(PLACEHOLDER_PREFIX))
            .collect();
        assert!(
            placeholders.iter().any(|(var, _)| *var == "JWT_SECRET"),
            "{placeholders:?}"
        );
        for (var, value) in placeholders {
            let err = error_for(var, value);
            assert_eq!(err.var, var, "{err}");
            assert!(err.problem.contains("placeholder"), "{err}");
        }
        let err = error_for(
            "OPS_API_KEYS",
            "ops-key-0123456789abcdef-0,replace-me-ops-key-0123456789",
        );
        assert_eq!(err.var, "OPS_API_KEYS", "{err}");
    }

    #[test]
    fn database_url_errors_name_the_scheme_but_never_the_url() {
        let err = error_for("DATABASE_URL", "mysql://u:hunter2@127.0.0.1/impact_in");
        assert!(err.problem.contains("'mysql://'"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let config = Config::from_map(&base()).unwrap();
        assert_eq!(config.database.url(), "postgres://localhost/impact_in");
    }

    #[test]
    fn a_missing_token_encryption_key_stops_start_up() {
        let mut vars = base();
        vars.remove("TOKEN_ENCRYPTION_KEY");
        let err = Config::from_map(&vars).unwrap_err();
        assert_eq!(err.var, "TOKEN_ENCRYPTION_KEY");
        assert!(err.problem.contains("base64"), "{err}");
    }

    #[test]
    fn the_run_mode_is_all_api_or_worker_and_worker_needs_workers() {
        let config_with = |pairs: &[(&str, &str)]| {
            let mut vars = base();
            for (key, value) in pairs {
                vars.insert((*key).into(), (*value).into());
            }
            Config::from_map(&vars)
        };
        assert_eq!(config_with(&[]).unwrap().run_mode, RunMode::All);
        let api = config_with(&[("RUN_MODE", "api")]).unwrap().run_mode;
        assert!(api.serves_api() && !api.runs_workers());
        let worker = config_with(&[("RUN_MODE", "worker")]).unwrap().run_mode;
        assert!(!worker.serves_api() && worker.runs_workers());
        for bad in [
            vec![("RUN_MODE", "both")],
            vec![("RUN_MODE", "worker"), ("DELIVERY_WORKERS", "0")],
        ] {
            let err = config_with(&bad).unwrap_err();
            assert_eq!(err.var, "RUN_MODE", "{err}");
        }
    }

    #[test]
    fn retry_policies_are_set_per_provider() {
        let mut vars = base();
        vars.insert("GOODERA_RETRY_MAX_ATTEMPTS".into(), "7".into());
        let config = Config::from_map(&vars).unwrap();
        let retry = &config.connectors.retry;
        assert_eq!(retry.get(Provider::Goodera).max_attempts, 7);
        assert_eq!(retry.get(Provider::Benevity).max_attempts, 3);
        assert_eq!(
            retry.get(Provider::Workday).initial_delay,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn both_jwt_sources_are_rejected() {
        let err = error_for("JWT_PUBLIC_KEY_FILE", "/etc/key.pem");
        assert!(err.problem.contains("not both"));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let mut vars = base();
        vars.insert("DATABASE_URL".into(), "postgres://u:hunter2-db@h/d".into());
        vars.insert("OPS_API_KEYS".into(), "ops-key-hunter2-0123456789".into());
        let debug = format!("{:?}", Config::from_map(&vars).unwrap());
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
    }

    #[test]
    fn the_bus_is_off_without_nats_url_and_bounded_with_it() {
        assert!(Config::from_map(&base()).unwrap().bus.is_none());
        let mut vars = base();
        vars.insert("NATS_URL".into(), "nats://127.0.0.1:4222".into());
        let bus = Config::from_map(&vars).unwrap().bus.unwrap();
        assert_eq!(bus.report_subject, "impact.report.ready");
        assert_eq!(bus.max_in_flight, 256);
        vars.insert("NATS_MAX_IN_FLIGHT".into(), "5000".into());
        let err = Config::from_map(&vars).unwrap_err();
        assert_eq!(err.var, "NATS_MAX_IN_FLIGHT");
        vars.remove("NATS_MAX_IN_FLIGHT");
        vars.insert("NATS_REPORT_STREAM".into(), "impact.reports".into());
        let err = Config::from_map(&vars).unwrap_err();
        assert_eq!(err.var, "NATS_REPORT_STREAM");
        vars.remove("NATS_REPORT_STREAM");
        assert!(Config::from_map(&vars).unwrap().delivery.publish_events);
        for prefix in ["staging", "a.>.", "a b."] {
            vars.insert("NATS_EVENTS_SUBJECT_PREFIX".into(), prefix.into());
            let err = Config::from_map(&vars).unwrap_err();
            assert_eq!(err.var, "NATS_EVENTS_SUBJECT_PREFIX", "{prefix}");
        }
        vars.insert("NATS_EVENTS_SUBJECT_PREFIX".into(), "staging.".into());
        vars.insert("NATS_RELAY_BATCH".into(), "20000".into());
        assert_eq!(Config::from_map(&vars).unwrap_err().var, "NATS_RELAY_BATCH");
    }
}
