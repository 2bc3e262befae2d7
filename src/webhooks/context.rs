//! The webhook domain's handle: what receiving an event needs, and nothing
//! of the app around it.

use std::{ops::Deref, sync::Arc};

use super::counters::Counters;
use crate::{config::WebhookConfig, delivery::DeliveryContext};

/// Cheap to clone.
#[derive(Clone)]
pub struct WebhookContext(Arc<Inner>);

pub struct Inner {
    /// The deliveries events apply to: their database, clock and
    /// idempotency cache.
    pub delivery: DeliveryContext,
    pub config: WebhookConfig,
    pub counters: Counters,
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
        }))
    }
}
