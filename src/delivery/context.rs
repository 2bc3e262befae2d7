//! The delivery domain's handle: the handles it works with and nothing of
//! the app around it (no JWT settings, no HTTP settings). Handlers, the
//! workers and replays receive it; a worker needs no authenticator, and
//! the domain does not depend on `app`.

use std::{ops::Deref, sync::Arc};

use sqlx::PgPool;
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::{intake::Intake, signal::QueueSignal};
use crate::{
    cache::Cache,
    clock::SharedClock,
    config::{Config, DeliveryConfig, RetryPolicies},
    connectors::{keyring::Keyring, registry::ConnectorRegistry, tokens::TokenStore, vault::Vault},
    db,
};

/// Cheap to clone.
#[derive(Clone)]
pub struct DeliveryContext(Arc<Inner>);

pub struct Inner {
    pub db: PgPool,
    /// The idempotency cache.
    pub cache: Cache,
    pub connectors: ConnectorRegistry,
    pub clock: SharedClock,
    pub config: DeliveryConfig,
    pub retry: RetryPolicies,
    /// Tells the workers that work is queued.
    pub queue: QueueSignal,
    /// Writes new deliveries, many per commit under load.
    pub intake: Intake,
    /// This database's installation id, read once (see
    /// [`DeliveryContext::installation`]).
    installation: OnceCell<Uuid>,
}

impl Deref for DeliveryContext {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl DeliveryContext {
    /// The context the settings describe, over `db`: the idempotency cache
    /// and the connectors are built here; nothing of the HTTP side is.
    pub fn from_config(config: &Config, db: PgPool, clock: SharedClock) -> anyhow::Result<Self> {
        let keyring = Keyring::new(&config.connectors.keys);
        let connectors = ConnectorRegistry::new(
            config.connectors.providers.clone(),
            config.connectors.outbound.clone(),
            config.connectors.breaker.clone(),
            TokenStore::new(db.clone(), keyring.clone()),
            Vault::new(db.clone(), keyring),
            config.connectors.credentials_refresh,
            clock.clone(),
        )?;
        Ok(Self::new(
            db,
            Cache::new(&config.redis)?,
            connectors,
            clock,
            config.delivery.clone(),
            config.connectors.retry.clone(),
        ))
    }

    pub fn new(
        db: PgPool,
        cache: Cache,
        connectors: ConnectorRegistry,
        clock: SharedClock,
        config: DeliveryConfig,
        retry: RetryPolicies,
    ) -> Self {
        Self(Arc::new(Inner {
            db,
            cache,
            connectors,
            clock,
            config,
            retry,
            queue: QueueSignal::default(),
            intake: Intake::default(),
            installation: OnceCell::new(),
        }))
    }

    /// The id of the installation the database belongs to, read on first
    /// use; `None` while the database cannot tell (it is retried next time).
    pub async fn installation(&self) -> Option<Uuid> {
        match self
            .installation
            .get_or_try_init(|| db::installation_id(&self.db))
            .await
        {
            Ok(id) => Some(*id),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the installation id");
                None
            }
        }
    }
}
