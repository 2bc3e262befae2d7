//! Ingest (docs/ingest.md): records pulled from the source systems
//! (`connectors::sources`), read into typed events (`record`), stripped of
//! personal data (`redact`), and stored once per source record with the
//! checkpoint of their page (`store`), by durable runs (`run`).

pub mod health;
pub mod record;
pub mod redact;
pub mod run;
pub mod store;
pub mod stream;

use std::{ops::Deref, sync::Arc, time::Duration};

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::delivery::DeliveryContext;

/// Ingest settings (`INGEST_*`, docs/configuration.md).
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// How long a request waits for its run before answering 202.
    pub sync_wait: Duration,
    /// How long a run stays leased to its process without progress.
    pub lease: Duration,
    /// How often abandoned runs are looked for.
    pub resume_interval: Duration,
    pub retry_attempts: u32,
    pub retry_initial_delay: Duration,
    pub retry_max_delay: Duration,
    /// Runs executing at once in this process (`/v1/ingest/all` starts
    /// nine); the others wait for a slot, `running` with no page yet.
    pub concurrency: usize,
}

/// What runs and the ingest routes use: the database and the connector
/// registry of the delivery side (so Goodera's per-key budget and the OAuth
/// tokens are shared), the redactor, and the settings.
#[derive(Clone)]
pub struct IngestContext(Arc<Inner>);

pub struct Inner {
    pub delivery: DeliveryContext,
    pub redactor: redact::Redactor,
    pub config: IngestConfig,
    /// Announces each run that ends, to the requests waiting for it.
    pub finished: broadcast::Sender<Uuid>,
    /// This process, as the holder of run leases.
    pub owner: String,
    /// [`IngestConfig::concurrency`] slots.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// The last source health report (`health`).
    pub health: health::HealthCache,
}

impl Deref for IngestContext {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Inner {
    pub fn db(&self) -> &sqlx::PgPool {
        &self.delivery.db
    }
}

impl IngestContext {
    pub fn new(
        delivery: DeliveryContext,
        redactor: redact::Redactor,
        config: IngestConfig,
    ) -> Self {
        let owner = format!(
            "{}:{}:{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "impact-in".into()),
            std::process::id(),
            Uuid::new_v4().simple()
        );
        Self(Arc::new(Inner {
            slots: Arc::new(tokio::sync::Semaphore::new(config.concurrency.max(1))),
            delivery,
            redactor,
            config,
            finished: broadcast::channel(256).0,
            owner,
            health: health::HealthCache::default(),
        }))
    }
}
