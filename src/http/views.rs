//! What the delivery routes answer: the cockpit's camelCase wire shape,
//! built from the rows the domain loads. A row can grow a column (a lease,
//! a counter) without it reaching the API, and a view can mask or leave
//! out what a caller should not see, in one place.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    connectors::ErrorClass,
    delivery::{
        Delivery, DeliveryStatus, ProviderStatus,
        queue::{Attempt, Trigger},
        replay::{BulkOutcome, Replayed},
    },
    ids::{CompanyId, DeliveryId, DeliveryKey, RecordId, ScheduleId},
    provider::Provider,
    webhooks::store::{Outcome, StoredEvent},
};

/// The delivery object (`docs/api.md`, "The delivery object").
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    id: RecordId,
    delivery_id: DeliveryId,
    company_id: CompanyId,
    provider: Provider,
    status: DeliveryStatus,
    attempt_count: i32,
    last_error: Option<String>,
    #[schema(value_type = Option<Object>)]
    provider_response: Option<serde_json::Value>,
    from_cache: bool,
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    payload_hash: String,
    schedule_id: Option<ScheduleId>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    in_flight_since: Option<DateTime<Utc>>,
    next_attempt_at: Option<DateTime<Utc>>,
    /// What the provider said last by webhook, and when it said it.
    provider_status: Option<ProviderStatus>,
    provider_status_at: Option<DateTime<Utc>>,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id,
            delivery_id: d.delivery_id,
            company_id: d.company_id,
            provider: d.provider,
            status: d.status,
            attempt_count: d.attempt_count,
            last_error: d.last_error,
            provider_response: d.provider_response,
            from_cache: d.from_cache,
            payload: d.payload,
            payload_hash: d.payload_hash,
            schedule_id: d.schedule_id,
            created_at: d.created_at,
            updated_at: d.updated_at,
            delivered_at: d.delivered_at,
            in_flight_since: d.in_flight_since,
            next_attempt_at: d.next_attempt_at,
            provider_status: d.provider_status,
            provider_status_at: d.provider_status_at,
        }
    }
}

/// One provider call, as the single-delivery route lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    attempt_number: i32,
    trigger: Trigger,
    started_at: DateTime<Utc>,
    duration_ms: i32,
    http_status: Option<i32>,
    error_class: Option<ErrorClass>,
    error: Option<String>,
    response_excerpt: Option<String>,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        Self {
            attempt_number: a.attempt_number,
            trigger: a.trigger,
            started_at: a.started_at,
            duration_ms: a.duration_ms,
            http_status: a.http_status,
            error_class: a.error_class,
            error: a.error_message,
            response_excerpt: a.response_excerpt,
        }
    }
}

/// One id's line in a bulk replay's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkResultView {
    id: DeliveryKey,
    /// `replayed`, `deferred`, `in_progress`, `not_failed` or `not_found`.
    result: BulkOutcome,
    /// The delivery's status after the replay (absent when not found).
    status: Option<DeliveryStatus>,
    last_error: Option<String>,
    /// Why a `deferred` replay sent nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// When a `deferred` delivery is due again.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<DateTime<Utc>>,
}

impl BulkResultView {
    pub fn new(id: DeliveryKey, replayed: Replayed) -> Self {
        let result = replayed.outcome();
        let (delivery, reason) = replayed.into_parts();
        let next_attempt_at = delivery
            .as_ref()
            .filter(|_| reason.is_some())
            .and_then(|d| d.next_attempt_at);
        let (status, last_error) = delivery.map(|d| (d.status, d.last_error)).unzip();
        Self {
            id,
            result,
            status,
            last_error: last_error.flatten(),
            reason,
            next_attempt_at,
        }
    }
}

/// A stored webhook event (`GET /v1/impact-in/webhook-events`, and a
/// delivery's `events`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEventView {
    id: Uuid,
    provider: Provider,
    event_id: String,
    event_type: String,
    provider_status: Option<ProviderStatus>,
    occurred_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    company_id: Option<CompanyId>,
    /// The record id (`id`) of the delivery it matched.
    delivery_record_id: Option<RecordId>,
    matched: bool,
    outcome: Outcome,
    /// The delivery's status before and after the event: what it changed.
    status_before: Option<DeliveryStatus>,
    status_after: Option<DeliveryStatus>,
    #[schema(value_type = Object)]
    body: serde_json::Value,
}

impl From<StoredEvent> for WebhookEventView {
    fn from(e: StoredEvent) -> Self {
        Self {
            id: e.id,
            provider: e.provider,
            event_id: e.event_id,
            event_type: e.event_type,
            provider_status: e.provider_status,
            occurred_at: e.occurred_at,
            received_at: e.received_at,
            company_id: e.company_id,
            delivery_record_id: e.delivery_record_id,
            matched: e.matched,
            outcome: e.outcome,
            status_before: e.status_before,
            status_after: e.status_after,
            body: e.body,
        }
    }
}
