//! The webhook domain's handle: what receiving an event needs, and nothing
//! of the app around it.

use std::{ops::Deref, sync::Arc};

use super::{
    counters::Counters,
    store::{self, EventResult, NewEvent},
};
use crate::{config::WebhookConfig, delivery::DeliveryContext, group_commit::GroupCommit};

/// Cheap to clone.
#[derive(Clone)]
pub struct WebhookContext(Arc<Inner>);

pub struct Inner {
    /// The deliveries events apply to: their database, clock and
    /// idempotency cache.
    pub delivery: DeliveryContext,
    pub config: WebhookConfig,
    pub counters: Counters,
    /// Events arriving together share a transaction.
    pub events: GroupCommit<NewEvent, EventResult>,
}

impl Deref for WebhookContext {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl WebhookContext {
    pub fn new(delivery: DeliveryContext, config: WebhookConfig) -> Self {
        Self(Arc::new(Inner {
            delivery,
            config,
            counters: Counters::default(),
            events: GroupCommit::new("webhook events", store::record_batch),
        }))
    }
}
