//! Deliveries: impact reports on their way to a provider, and their log.

pub mod context;
pub mod intake;
pub mod queue;
pub mod replay;
pub mod signal;
pub mod stats;
pub mod store;
pub mod worker;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use context::DeliveryContext;

use crate::{
    ids::{CompanyId, DeliveryId, RecordId, ScheduleId},
    provider::Provider,
};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    sqlx::Type,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[strum(
    serialize_all = "lowercase",
    parse_err_ty = UnknownStatus,
    parse_err_fn = unknown_status
)]
pub enum DeliveryStatus {
    Pending,
    Retrying,
    Success,
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] =
        [Self::Pending, Self::Retrying, Self::Success, Self::Failed];

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("must be one of pending, retrying, success, failed")]
pub struct UnknownStatus;

fn unknown_status(_: &str) -> UnknownStatus {
    UnknownStatus
}

/// What the provider later says, by webhook, about a delivery it accepted.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    sqlx::Type,
    strum::Display,
    strum::IntoStaticStr,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum ProviderStatus {
    /// The provider has the report and will process it.
    Received,
    /// It is trying again on its side.
    Retrying,
    /// Processed: the report is in the provider's platform.
    Processed,
    /// Refused after acceptance (validation on its side).
    Rejected,
}

impl ProviderStatus {
    pub const ALL: [ProviderStatus; 4] = [
        Self::Received,
        Self::Retrying,
        Self::Processed,
        Self::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Which of two events with the same time wins: the later stage.
    pub fn stage(self) -> i32 {
        match self {
            Self::Received => 1,
            Self::Retrying => 2,
            Self::Processed | Self::Rejected => 3,
        }
    }
}

/// A row of `impact_deliveries` (the API shows it as
/// `http::views::DeliveryView`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    pub id: RecordId,
    pub delivery_id: DeliveryId,
    pub company_id: CompanyId,
    pub provider: Provider,
    pub status: DeliveryStatus,
    pub attempt_count: i32,
    pub last_error: Option<String>,
    pub provider_response: Option<serde_json::Value>,
    pub from_cache: bool,
    pub payload: serde_json::Value,
    pub payload_hash: String,
    pub schedule_id: Option<ScheduleId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// While a worker or a replay is attempting it, when that began; its
    /// `next_attempt_at` is then the end of the lease (when another worker
    /// may take it over, should this one have died).
    pub in_flight_since: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The provider's own state, from its webhooks.
    pub provider_status: Option<ProviderStatus>,
    pub provider_status_at: Option<DateTime<Utc>>,
}

/// SHA-256 (hex) of the RFC 8785 canonical form of a JSON value: equal for
/// any two encodings of the same document (key order, number spelling).
pub fn payload_hash(payload: &serde_json::Value) -> String {
    let canonical = serde_jcs::to_vec(payload).expect("a JSON value always canonicalises");
    hex::encode(Sha256::digest(canonical))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_status_reads_and_prints_as_on_the_wire() {
        for status in DeliveryStatus::ALL {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
            assert_eq!(
                status.to_string().parse::<DeliveryStatus>().unwrap(),
                status
            );
        }
        assert!("done".parse::<DeliveryStatus>().is_err());
    }

    #[test]
    fn the_payload_hash_ignores_key_order_and_number_spelling() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b": 1.0, "a": [1, 2e0]}"#).unwrap();
        let b = json!({"a": [1, 2], "b": 1});
        assert_eq!(payload_hash(&a), payload_hash(&b));
        assert_ne!(
            payload_hash(&a),
            payload_hash(&json!({"a": [2, 1], "b": 1}))
        );
        assert_eq!(payload_hash(&b).len(), 64);
    }
}
