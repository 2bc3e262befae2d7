//! Delivery of one canonical impact report to one provider.
//!
//! One module per provider behind the [`Connector`] trait; the
//! [`registry::ConnectorRegistry`] builds the right one for a company from
//! its credentials and wraps it in the shared resilience (circuit breaker).
//! The wire contracts are in `docs/connectors.md`.

pub mod benevity;
mod breaker;
mod error;
pub mod goodera;
mod http;
pub mod keyring;
mod oauth;
mod rate;
pub mod registry;
pub mod retry;
pub mod settings;
pub mod sources;
pub mod tokens;
pub mod vault;
pub mod workday;

#[cfg(test)]
mod test_support;

use std::time::Duration;

use async_trait::async_trait;

pub use breaker::{BreakerConfig, CircuitState};
pub use error::{ConnectorError, ErrorClass};
pub use http::{Outbound, OutboundConfig, retry_after};

use crate::{provider::Provider, report::ImpactReport};

/// What to deliver: the delivery id travels to the provider as its
/// idempotency key, so a repeat is recognised there.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryRequest<'a> {
    pub delivery_id: &'a str,
    pub report: &'a ImpactReport,
}

/// The provider's acknowledgement of one delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// The provider's own id for what it received, when it gives one.
    pub provider_reference: Option<String>,
    pub status: u16,
    /// The start of the response body, bounded (see `OutboundConfig`).
    pub body_excerpt: String,
    pub latency: Duration,
}

#[async_trait]
pub trait Connector: Send + Sync {
    fn provider(&self) -> Provider;

    /// The version of the provider schema this connector's mapper writes.
    fn schema_version(&self) -> &'static str;

    async fn deliver(&self, request: DeliveryRequest<'_>) -> Result<Receipt, ConnectorError>;

    /// A connection test: credentials accepted and the endpoint reachable,
    /// without delivering anything.
    async fn health(&self) -> Result<(), ConnectorError>;
}
