//! The event bodies each provider posts (`docs/connectors.md`, "Webhooks
//! in"), read into one shape once their signature has been verified.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::signature::MAX_EVENT_ID;
use crate::{delivery::ProviderStatus, ids::DeliveryId, provider::Provider};

/// Reasons kept from a failure event, and the length of each: enough to act
/// on, bounded whatever the sender puts in.
const MAX_REASONS: usize = 10;
const MAX_REASON_CHARS: usize = 500;

/// A verified event, read.
#[derive(Debug, Clone)]
pub struct InboundEvent {
    /// The sender's id, covered by the signature: inside the body for
    /// Benevity, the `webhook-id` header for Standard Webhooks senders.
    pub event_id: String,
    pub event_type: String,
    /// `None`: a type this service does not act on (stored as ignored).
    pub status: Option<ProviderStatus>,
    pub occurred_at: DateTime<Utc>,
    /// The delivery it is about: our `deliveryId` (sent as the idempotency
    /// key) and/or the reference the provider answered with.
    pub delivery_id: Option<DeliveryId>,
    pub reference: Option<String>,
    /// The provider's reasons, for a rejection.
    pub reasons: Vec<String>,
    /// The body as verified.
    pub body: Value,
}

/// A verified body that is not an event of the documented shape (400).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MalformedEvent(pub String);

#[derive(Deserialize)]
struct BenevityEvent {
    event_id: String,
    event_type: String,
    occurred_at: DateTime<Utc>,
    #[serde(default)]
    data: BenevityData,
}

#[derive(Deserialize, Default)]
struct BenevityData {
    delivery_id: Option<String>,
    id: Option<String>,
    #[serde(default)]
    reasons: Vec<String>,
}

/// Standard Webhooks' recommended envelope: `type`, `timestamp`, `data`.
#[derive(Deserialize)]
struct StandardEvent<D> {
    #[serde(rename = "type")]
    event_type: String,
    timestamp: DateTime<Utc>,
    #[serde(default)]
    data: D,
}

#[derive(Deserialize, Default)]
struct GooderaData {
    idempotency_key: Option<String>,
    submission_id: Option<String>,
    #[serde(default)]
    errors: Vec<GooderaError>,
}

#[derive(Deserialize)]
struct GooderaError {
    #[serde(default)]
    code: Option<String>,
    message: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WorkdayData {
    external_reference_id: Option<String>,
    id: Option<String>,
    #[serde(default)]
    messages: Vec<String>,
}

/// The provider status an event type stands for.
pub fn status_of(provider: Provider, event_type: &str) -> Option<ProviderStatus> {
    use ProviderStatus::*;
    Some(match (provider, event_type) {
        (Provider::Benevity, "delivery.received") => Received,
        (Provider::Benevity, "delivery.success") => Processed,
        (Provider::Benevity, "delivery.failed") => Rejected,
        (Provider::Benevity, "delivery.retry") => Retrying,
        (Provider::Goodera, "data.received") => Received,
        (Provider::Goodera, "data.processed") => Processed,
        (Provider::Goodera, "data.failed") => Rejected,
        (Provider::Workday, "report.received") => Received,
        (Provider::Workday, "report.processed") => Processed,
        (Provider::Workday, "report.rejected") => Rejected,
        (Provider::Workday, "report.retrying") => Retrying,
        _ => return None,
    })
}

/// Reads a verified body. `webhook_id` is the signed id header of a
/// Standard Webhooks sender.
pub fn parse(
    provider: Provider,
    webhook_id: Option<&str>,
    body: &[u8],
) -> Result<InboundEvent, MalformedEvent> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| MalformedEvent(format!("the body is not JSON: {err}")))?;
    let shape = |err: serde_json::Error| {
        MalformedEvent(format!("the body is not a {provider} event: {err}"))
    };
    let (event_id, event_type, occurred_at, delivery_id, reference, reasons) = match provider {
        Provider::Benevity => {
            let e: BenevityEvent = serde_json::from_value(value.clone()).map_err(shape)?;
            let d = e.data;
            (
                e.event_id,
                e.event_type,
                e.occurred_at,
                d.delivery_id,
                d.id,
                d.reasons,
            )
        }
        Provider::Goodera => {
            let e: StandardEvent<GooderaData> =
                serde_json::from_value(value.clone()).map_err(shape)?;
            let d = e.data;
            let reasons = d
                .errors
                .into_iter()
                .map(|err| match err.code {
                    Some(code) => format!("{code}: {}", err.message),
                    None => err.message,
                })
                .collect();
            let id = webhook_id.unwrap_or_default().to_owned();
            (
                id,
                e.event_type,
                e.timestamp,
                d.idempotency_key,
                d.submission_id,
                reasons,
            )
        }
        Provider::Workday => {
            let e: StandardEvent<WorkdayData> =
                serde_json::from_value(value.clone()).map_err(shape)?;
            let d = e.data;
            let id = webhook_id.unwrap_or_default().to_owned();
            (
                id,
                e.event_type,
                e.timestamp,
                d.external_reference_id,
                d.id,
                d.messages,
            )
        }
    };
    if event_id.trim().is_empty() || event_id.len() > MAX_EVENT_ID {
        return Err(MalformedEvent(format!(
            "the event id must be 1 to {MAX_EVENT_ID} characters"
        )));
    }
    let delivery_id = delivery_id
        .map(|raw| {
            raw.parse::<DeliveryId>()
                .map_err(|_| MalformedEvent("the delivery id of the event is not a UUID".into()))
        })
        .transpose()?;
    let reference = reference.filter(|r| !r.trim().is_empty());
    let status = status_of(provider, &event_type);
    if status.is_some() && delivery_id.is_none() && reference.is_none() {
        return Err(MalformedEvent(
            "the event names no delivery (neither its delivery id nor the provider's reference)"
                .into(),
        ));
    }
    Ok(InboundEvent {
        event_id,
        event_type,
        status,
        occurred_at,
        delivery_id,
        reference,
        reasons: reasons
            .into_iter()
            .take(MAX_REASONS)
            .map(|reason| reason.chars().take(MAX_REASON_CHARS).collect())
            .collect(),
        body: value,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_provider_body_reads_into_one_shape() {
        let delivery = DeliveryId::generate();
        let benevity = json!({
            "event_id": "evt_1", "event_type": "delivery.failed",
            "occurred_at": "2026-12-06T10:00:00Z",
            "data": {"delivery_id": delivery, "id": "bnv_1", "reasons": ["hours must be positive"]}
        });
        let e = parse(Provider::Benevity, None, benevity.to_string().as_bytes()).unwrap();
        assert_eq!(
            (
                e.event_id.as_str(),
                e.status,
                e.delivery_id,
                e.reference.as_deref()
            ),
            (
                "evt_1",
                Some(ProviderStatus::Rejected),
                Some(delivery),
                Some("bnv_1")
            )
        );
        assert_eq!(e.reasons, ["hours must be positive"]);

        let goodera = json!({
            "type": "data.failed", "timestamp": "2026-12-06T10:00:00Z",
            "data": {"submission_id": "gdr_1", "errors": [{"code": "E42", "message": "bad"}]}
        });
        let e = parse(
            Provider::Goodera,
            Some("msg_1"),
            goodera.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(e.event_id, "msg_1");
        assert_eq!(e.reasons, ["E42: bad"]);
        assert_eq!(e.delivery_id, None);

        let workday = json!({
            "type": "report.processed", "timestamp": "2026-12-06T10:00:00+01:00",
            "data": {"externalReferenceId": delivery}
        });
        let e = parse(
            Provider::Workday,
            Some("msg_2"),
            workday.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(e.status, Some(ProviderStatus::Processed));
        assert_eq!(e.occurred_at.to_rfc3339(), "2026-12-06T09:00:00+00:00");
    }

    #[test]
    fn an_unknown_type_is_read_but_acts_on_nothing() {
        let body = json!({"type": "data.archived", "timestamp": "2026-12-06T10:00:00Z"});
        let e = parse(
            Provider::Goodera,
            Some("msg_3"),
            body.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(e.status, None);
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        for (provider, body) in [
            (Provider::Benevity, "not json".to_owned()),
            (
                Provider::Benevity,
                json!({"event_type": "delivery.success"}).to_string(),
            ),
            (
                Provider::Benevity,
                json!({"event_id": "", "event_type": "x", "occurred_at": "2026-12-06T10:00:00Z"})
                    .to_string(),
            ),
            (
                Provider::Goodera,
                json!({"type": "data.processed", "timestamp": "2026-12-06T10:00:00Z", "data": {}})
                    .to_string(),
            ),
            (
                Provider::Workday,
                json!({"type": "report.processed", "timestamp": "2026-12-06T10:00:00Z",
                       "data": {"externalReferenceId": "not-a-uuid"}})
                .to_string(),
            ),
            (
                Provider::Workday,
                json!({"type": "report.processed", "timestamp": "yesterday"}).to_string(),
            ),
        ] {
            assert!(
                parse(provider, Some("msg_4"), body.as_bytes()).is_err(),
                "{body}"
            );
        }
    }
}
