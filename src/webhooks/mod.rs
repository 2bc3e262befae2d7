//! Provider webhooks in: signed status updates about deliveries the
//! providers accepted. The one door of the service open without a bearer
//! token, so: verified over the raw bytes before anything is parsed,
//! refusals counted and logged with provider and reason only, and every
//! verified event stored once per sender id.

pub mod context;
pub mod counters;
pub mod event;
pub mod secrets;
pub mod signature;
pub mod store;

use axum::http::HeaderMap;

pub use context::WebhookContext;

use self::{
    event::{InboundEvent, MalformedEvent},
    signature::{Refusal, Scheme},
    store::{NewEvent, Outcome, Recorded},
};
use crate::{
    delivery::{DeliveryStatus, worker},
    ids::CompanyId,
    metrics,
    provider::Provider,
};

/// Why an event was not taken.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("no webhook secret is configured for {0}")]
    NotConfigured(Provider),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Malformed(#[from] MalformedEvent),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What came of a verified event.
#[derive(Debug, Clone)]
pub enum Received {
    /// First time this id was seen: stored, and applied when it could be.
    New(Recorded),
    /// An id already stored: nothing changed.
    Duplicate,
}

/// Verifies, reads, stores and applies one webhook request. `company` is
/// the company of a per-company route.
pub async fn receive(
    ctx: &WebhookContext,
    provider: Provider,
    company: Option<CompanyId>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Received, WebhookError> {
    ctx.counters.received(provider);
    metrics::webhook_received(provider);
    let keys = ctx
        .config
        .secrets
        .keys(provider, company)
        .ok_or(WebhookError::NotConfigured(provider))?;
    let now = ctx.delivery.clock.now();
    let verified = signature::verify(
        Scheme::of(provider),
        keys,
        headers,
        body,
        now,
        ctx.config.tolerance,
    )
    .inspect_err(|refusal| {
        ctx.counters.refused(provider, *refusal);
        metrics::webhook_refused(provider, refusal.reason());
        // Provider and reason only: never the body, signature or secret.
        if let Some(refused) = ctx.counters.log_refusal(provider, now) {
            tracing::warn!(
                %provider,
                reason = refusal.reason(),
                refused_since_last_line = refused,
                "webhook refused"
            );
        }
    })?;
    ctx.counters.verified(provider, now);
    let event = event::parse(provider, verified.webhook_id.as_deref(), body)?;
    let rejection = rejection_text(provider, &event);
    let new = NewEvent {
        provider,
        route_company: company,
        event,
        received_at: now,
        rejection,
        publish: ctx.delivery.config.publish_events,
    };
    let Some(recorded) = ctx.events.submit(&ctx.delivery.db, new).await?? else {
        return Ok(Received::Duplicate);
    };
    // This request is a trace of its own; it links to the delivery's.
    crate::telemetry::link(&tracing::Span::current(), recorded.traceparent.as_deref());
    if recorded.outcome == Outcome::Applied
        && recorded.status_before == Some(DeliveryStatus::Success)
        && recorded.status_after == Some(DeliveryStatus::Failed)
    {
        forget_cached_answer(ctx, provider, &recorded).await;
    }
    tracing::debug!(
        %provider,
        outcome = %recorded.outcome,
        delivery = ?recorded.delivery_record_id,
        "webhook event stored"
    );
    Ok(Received::New(recorded))
}

/// A report the provider rejected must reach it again when sent again: the
/// idempotency cache would otherwise answer a new identical delivery with
/// the acceptance it stored.
async fn forget_cached_answer(ctx: &WebhookContext, provider: Provider, recorded: &Recorded) {
    if let (Some(company), Some(hash)) = (recorded.company_id, &recorded.payload_hash)
        && let Some(key) = worker::cache_key(&ctx.delivery, provider, company, hash).await
    {
        ctx.delivery.cache.remove(&key).await;
    }
}

/// The `lastError` of a delivery the provider rejected after accepting it.
fn rejection_text(provider: Provider, event: &InboundEvent) -> String {
    if event.reasons.is_empty() {
        format!(
            "rejected by {provider} after acceptance ({})",
            event.event_type
        )
    } else {
        format!(
            "rejected by {provider} after acceptance: {}",
            event.reasons.join("; ")
        )
    }
}
