//! Logging and tracing. Logs are JSON lines for production and pretty output
//! for humans, on stderr (stdout is kept for what a command prints as its
//! result: `token`'s JWT, the sandbox's variables). Spans are exported over
//! OTLP when an endpoint is configured (docs/tracing.md); without one no
//! exporter is built and the trace helpers below do nothing.

use std::{
    collections::HashMap,
    io::IsTerminal,
    sync::atomic::{AtomicBool, Ordering},
    time::SystemTime,
};

use axum::http::HeaderMap;
use opentelemetry::{
    Context, KeyValue, global,
    trace::{Span as _, TraceContextExt, Tracer as _, TracerProvider as _},
};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use secrecy::ExposeSecret;
use tracing::{Level, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer, filter::Targets, fmt, prelude::*};

use crate::config::{ConfigError, LogConfig, LogFormat, TracesConfig};

/// The instrumentation scope of every span this service makes.
const SCOPE: &str = "impact-in";

/// Whether spans are exported: the helpers skip their work when not, and
/// the exporter's own span fields (`otel.*`) are left out of the logs.
static EXPORTING: AtomicBool = AtomicBool::new(false);

pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Keeps the span exporter; [`Telemetry::shutdown`] sends what is buffered.
#[must_use = "dropping it loses the spans still buffered"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Installs the process's subscriber: logs, and when `traces` is set, the
/// OTLP span exporter. `RUST_LOG`, when set, wins over `LOG_LEVEL` so a
/// developer can narrow output per module without editing the service
/// configuration; the same filter decides which spans are exported.
pub fn init(config: &LogConfig, traces: Option<&TracesConfig>) -> Result<Telemetry, ConfigError> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // Postgres NOTICEs ("relation already exists, skipping") are not news.
        .add_directive(
            "sqlx::postgres::notice=warn"
                .parse()
                .expect("static directive"),
        );
    let provider = traces.map(tracer_provider).transpose()?;
    // Spans have a filter of their own: the service's spans at info and
    // above, whatever LOG_LEVEL says (production often logs at warn, and
    // would otherwise export nothing).
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(SCOPE))
            // Which file and thread logged is noise in a trace view.
            .with_location(false)
            .with_threads(false)
            .with_filter(Targets::new().with_target("impact_in", Level::INFO))
    });
    let layer = fmt::layer().with_writer(std::io::stderr);
    let logs = match config.format {
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
        // Colour only for a terminal: in a file or a pipe the escape codes
        // are noise.
        LogFormat::Pretty => layer
            .pretty()
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
    };
    // `try_init`: a second call (tests) keeps the first subscriber.
    let installed = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .try_init()
        .is_ok();
    if let Some(provider) = &provider
        && installed
    {
        global::set_text_map_propagator(TraceContextPropagator::new());
        global::set_tracer_provider(provider.clone());
        EXPORTING.store(true, Ordering::Relaxed);
    }
    Ok(Telemetry { provider })
}

/// Logs alone, for the commands other than `serve`.
pub fn init_logs(config: &LogConfig) {
    // Without an exporter nothing can fail or needs flushing.
    let _ = init(config, None);
}

fn tracer_provider(config: &TracesConfig) -> Result<SdkTracerProvider, ConfigError> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(config.endpoint.expose_secret())
        .build()
        .map_err(|err| ConfigError {
            var: "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            problem: format!("cannot build the span exporter: {err}"),
        })?;
    // The batch processor exports from a thread of its own, off the request
    // path; OTEL_BSP_* and OTEL_TRACES_SAMPLER* are read by the SDK.
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .build(),
        )
        .build())
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some() && exporting()
    }

    /// Sends the spans still buffered and stops the exporter. It blocks on
    /// the exporter's thread, so it runs off the async workers.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // Bounded: an unreachable collector must not hold the exit up.
        let flushed = tokio::task::spawn_blocking(move || {
            provider.shutdown_with_timeout(std::time::Duration::from_secs(5))
        })
        .await;
        if let Ok(Err(err)) = flushed {
            tracing::warn!(error = %err, "the last spans could not be exported");
        }
    }
}

/// Continues the caller's trace when the request carries a W3C
/// `traceparent`; otherwise `span` starts a trace of its own.
pub fn continue_trace(span: &Span, headers: &HeaderMap) {
    if !exporting() || !headers.contains_key("traceparent") {
        return;
    }
    let parent =
        global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)));
    // Fails only when the span is disabled, and then there is nothing to join.
    let _ = span.set_parent(parent);
}

/// Adds `span`'s trace to an outgoing request, so a provider that traces
/// joins it.
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    if !exporting() || span.is_disabled() {
        return;
    }
    let context = span.context();
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// The W3C `traceparent` of the current span, kept with work that goes on
/// later (a delivery's attempts) so that it joins this trace; `None` when
/// nothing is traced.
pub fn current_traceparent() -> Option<String> {
    if !exporting() {
        return None;
    }
    let context = Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut carrier);
    });
    carrier.remove("traceparent")
}

/// The remote context a stored `traceparent` stands for, when it is valid.
fn stored_context(traceparent: &str) -> Option<Context> {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = global::get_text_map_propagator(|propagator| propagator.extract(&carrier));
    context.span().span_context().is_valid().then_some(context)
}

/// Makes `span` a child of the trace a stored `traceparent` names.
pub fn join(span: &Span, traceparent: Option<&str>) {
    if !exporting() {
        return;
    }
    if let Some(parent) = traceparent.and_then(stored_context) {
        let _ = span.set_parent(parent);
    }
}

/// Links `span` to the trace a stored `traceparent` names: the work is its
/// own trace but concerns that one (a replay, a provider's webhook).
pub fn link(span: &Span, traceparent: Option<&str>) {
    if !exporting() {
        return;
    }
    if let Some(linked) = traceparent.and_then(stored_context) {
        span.add_link(linked.span().span_context().clone());
    }
}

/// Records, in the trace a stored `traceparent` names, a span for time
/// spent waiting rather than working (a delivery in the queue), which no
/// code ran through and so no `tracing` span could measure.
pub fn record_wait(
    name: &'static str,
    traceparent: Option<&str>,
    from: SystemTime,
    to: SystemTime,
) {
    if !exporting() {
        return;
    }
    let Some(parent) = traceparent.and_then(stored_context) else {
        return;
    };
    let tracer = global::tracer(SCOPE);
    let mut span = tracer
        .span_builder(name)
        .with_start_time(from)
        .start_with_context(&tracer, &parent);
    span.end_with_timestamp(to.max(from));
}
