//! The running service: shared state, start-up, and graceful shutdown.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::Authenticator,
    clock::{SharedClock, SystemClock},
    config::Config,
    db,
    delivery::DeliveryContext,
    http::listener::Connections,
    ingest::{IngestContext, redact::Redactor},
    provider::Provider,
    scheduler::SchedulerContext,
    webhooks::WebhookContext,
};

/// What every handler and background task shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub db: PgPool,
    pub auth: Authenticator,
    pub lifecycle: Lifecycle,
    /// The delivery domain: what its handlers and workers use.
    pub delivery: DeliveryContext,
    /// Provider webhooks in.
    pub webhooks: WebhookContext,
    /// Ingest; `None` when personal data could not be redacted (no key).
    pub ingest: Option<IngestContext>,
    /// Export schedules.
    pub scheduler: SchedulerContext,
    /// The SLA monitor's handles.
    pub sla: crate::sla::MonitorContext,
    /// The event bus in; `None` without `NATS_URL`.
    pub bus: Option<crate::bus::BusContext>,
    /// Renders the process's metrics.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Start-up and draining flags the probes read.
pub struct Lifecycle {
    started_at: Instant,
    started: AtomicBool,
    draining: AtomicBool,
}

impl Lifecycle {
    fn new() -> Self {
        Self {
            started_at: Instant::now(),
            started: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }

    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn mark_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

impl AppState {
    /// State over an existing pool (tests pass one per fresh database).
    pub fn new(config: Config, db: PgPool) -> anyhow::Result<Self> {
        Self::with_clock(config, db, Arc::new(SystemClock))
    }

    /// As [`AppState::new`], with the clock tests move by hand.
    pub fn with_clock(config: Config, db: PgPool, clock: SharedClock) -> anyhow::Result<Self> {
        let auth = Authenticator::from_config(&config.auth)?;
        let delivery = DeliveryContext::from_config(&config, db.clone(), clock)?;
        let webhooks = WebhookContext::new(delivery.clone(), config.webhooks.clone());
        let ingest = config.redaction.clone().map(|redaction| {
            IngestContext::new(
                delivery.clone(),
                Redactor::new(redaction),
                config.ingest.clone(),
            )
        });
        let scheduler = SchedulerContext::new(
            delivery.clone(),
            config.scheduler.clone(),
            config.retention.clone(),
        );
        let sla = crate::sla::MonitorContext::new(
            db.clone(),
            config.sla.clone(),
            delivery.clock.clone(),
            config.connectors.outbound.request_timeout,
        )?;
        let bus = config
            .bus
            .clone()
            .map(|bus| crate::bus::BusContext::new(delivery.clone(), bus));
        Ok(Self(Arc::new(Inner {
            scheduler,
            bus,
            sla,
            config,
            db,
            auth,
            lifecycle: Lifecycle::new(),
            delivery,
            webhooks,
            ingest,
            metrics: crate::metrics::install(),
        })))
    }

    /// Brings the database to the state this binary needs, retrying with
    /// backoff while Postgres is unreachable (the pod stays not-ready rather
    /// than crash-looping), then marks start-up finished.
    pub async fn start_up(&self, shutdown: CancellationToken) {
        let attempt = || async {
            if self.config.database.migrate_on_start {
                db::migrate(&self.db).await?;
            } else if !db::migrations_applied(&self.db).await? {
                anyhow::bail!("migrations are pending and MIGRATE_ON_START=false");
            }
            anyhow::Ok(())
        };
        if crate::backoff::until_ready("database", &shutdown, attempt)
            .await
            .is_some()
        {
            self.lifecycle.mark_started();
            tracing::info!("start-up finished: database reachable and migrated");
        }
    }
}

/// Serves until SIGTERM/SIGINT, then drains within the shutdown timeout.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    // Before the port is bound: a probe or a test may signal as soon as it
    // answers.
    let signals = ShutdownSignals::listen();
    let db = db::connect_lazy(&config.database)?;
    let addr = (config.host, config.port);
    let state = AppState::new(config, db)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {}:{}: {err}", addr.0, addr.1))?;
    let shutdown_timeout = state.config.shutdown_timeout;
    tracing::info!(address = %listener.local_addr()?, "impact-in listening");
    log_providers(&state.config);

    let shutdown = CancellationToken::new();
    // Delivery workers start once the schema is in place, and stop claiming
    // on shutdown, finishing the attempts they hold.
    let background = tokio::spawn({
        let state = state.clone();
        let shutdown = shutdown.clone();
        async move {
            state.start_up(shutdown.clone()).await;
            if !state.lifecycle.is_started() {
                return;
            }
            // Runs left by a process that died are resumed by any process
            // that serves the API (they started there).
            let resumer = state
                .ingest
                .clone()
                .filter(|_| state.config.run_mode.serves_api())
                .map(|ingest| {
                    tokio::spawn(crate::ingest::run::resume_abandoned(
                        ingest,
                        shutdown.clone(),
                    ))
                });
            // Where the workers run, the scheduler does (any number of
            // replicas may: each due time fires once).
            let scheduler = (state.config.run_mode.runs_workers()
                && state.config.scheduler.enabled)
                .then(|| {
                    tokio::spawn(crate::scheduler::task::run(
                        state.scheduler.clone(),
                        shutdown.clone(),
                    ))
                });
            // So does the SLA monitor (one replica evaluates at a time).
            let monitor = (state.config.run_mode.runs_workers() && state.config.sla.monitoring)
                .then(|| tokio::spawn(crate::sla::task::run(state.sla.clone(), shutdown.clone())));
            // Where the workers run, the bus consumer does (replicas share
            // its durable consumer; each message makes its deliveries once).
            let bus = state
                .bus
                .clone()
                .filter(|_| state.config.run_mode.runs_workers())
                .map(|bus| {
                    // The relay beside it (one replica publishes at a time).
                    let relay = tokio::spawn(crate::bus::relay::run(bus.clone(), shutdown.clone()));
                    let consumer = tokio::spawn(crate::bus::consumer::run(bus, shutdown.clone()));
                    (consumer, relay)
                });
            if state.config.run_mode.runs_workers() {
                crate::delivery::worker::run(state.delivery.clone(), shutdown).await;
            }
            if let Some((consumer, relay)) = bus {
                let _ = consumer.await;
                let _ = relay.await;
            }
            if let Some(monitor) = monitor {
                let _ = monitor.await;
            }
            if let Some(scheduler) = scheduler {
                let _ = scheduler.await;
            }
            if let Some(resumer) = resumer {
                let _ = resumer.await;
            }
        }
    });

    let router = crate::http::router(state.clone());
    let server = tokio::spawn(
        axum::serve(Connections::new(listener), router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );

    signals.received().await;
    tracing::info!(timeout = ?shutdown_timeout, "shutdown requested; draining");
    state.lifecycle.mark_draining();
    shutdown.cancel();

    let drained = tokio::time::timeout(shutdown_timeout, async {
        let _ = background.await;
        server.await
    })
    .await;
    match drained {
        Ok(Ok(Ok(()))) => tracing::info!("drained"),
        Ok(Ok(Err(err))) => tracing::error!(error = %err, "server error while draining"),
        Ok(Err(err)) => tracing::error!(error = %err, "server task failed"),
        Err(_) => tracing::warn!("shutdown timeout reached; dropping in-flight work"),
    }
    // Bounded: a connection stuck in a query must not hold the exit.
    if tokio::time::timeout(Duration::from_secs(5), state.db.close())
        .await
        .is_err()
    {
        tracing::warn!("database pool did not close in time");
    }
    Ok(())
}

/// Says at start which providers can be used and how, without secrets.
fn log_providers(config: &Config) {
    let connectors = &config.connectors;
    if connectors.sandbox_mode {
        tracing::warn!(
            "SANDBOX MODE: providers point at the local provider sandbox, not at Benevity, Goodera or Workday"
        );
    }
    for provider in Provider::ALL {
        match connectors.providers.resolve(provider, None) {
            Ok(resolved) => {
                tracing::info!(%provider, endpoint = %resolved.describe(), "provider configured")
            }
            Err(reason) => {
                tracing::info!(%provider, %reason, "provider has no global configuration; only companies with their own credentials can use it")
            }
        }
    }
}

/// SIGTERM and SIGINT, listened for from the moment it is made: one that
/// arrives while the server is still starting up then drains it like any
/// other, instead of killing it on the spot (the default action).
struct ShutdownSignals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| {
                signal(kind)
                    .inspect_err(|err| tracing::error!(error = %err, "cannot listen for {name}"))
                    .ok()
            };
            Self {
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn received(mut self) {
        #[cfg(unix)]
        {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(self.terminate.take()) => {}
                () = wait(self.interrupt.take()) => {}
            }
        }
        #[cfg(not(unix))]
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
}
