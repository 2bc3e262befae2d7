//! The event bus (docs/bus.md). In: report-ready events from NATS
//! JetStream become deliveries for the providers the company's delivery
//! rules allow. Out: what we ingest and deliver, written to an outbox in
//! the same transaction, published by a relay. `stream`: connection,
//! streams and consumer set-up. `event`: the message read and checked.
//! `rules`: the delivery rules in SQL. `rejected`: messages that can never
//! succeed. `consumer`: one message to its deliveries, and the loop `serve`
//! runs. `outbox`: the outbox read in order, the envelope. `relay`: its
//! publishing loop. `publish`, `watch`: the command line's ends.

pub mod consumer;
pub mod event;
pub mod outbox;
pub mod publish;
pub mod rejected;
pub mod relay;
pub mod rules;
pub mod stream;
pub mod watch;

use std::{ops::Deref, sync::Arc};

use crate::{config::BusConfig, delivery::DeliveryContext};

/// The bus's handles: the delivery domain it enqueues into (its pool,
/// intake, queue signal and clock) and its settings. Cheap to clone.
#[derive(Clone)]
pub struct BusContext(Arc<Inner>);

pub struct Inner {
    pub delivery: DeliveryContext,
    pub config: BusConfig,
}

impl Deref for BusContext {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl BusContext {
    pub fn new(delivery: DeliveryContext, config: BusConfig) -> Self {
        Self(Arc::new(Inner { delivery, config }))
    }

    pub fn db(&self) -> &sqlx::PgPool {
        &self.delivery.db
    }
}
