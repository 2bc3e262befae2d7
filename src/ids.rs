//! Typed ids: a company, a delivery's record id, the delivery id a client
//! chooses (the provider's idempotency key) and an export schedule are all
//! UUIDs, and none may stand in for another. Each is transparent on the
//! wire (a UUID string) and in the database (a `uuid` column).

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
            sqlx::Type, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(raw: &str) -> Result<Self, Self::Err> {
                raw.parse().map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

typed_id!(
    /// A company (tenant): every row and every query is scoped by it.
    CompanyId
);
typed_id!(
    /// A delivery's record id (`id`), assigned by the service (UUID v7).
    RecordId
);
typed_id!(
    /// The `deliveryId` a client chooses (or the service generates): the
    /// idempotency key sent to the provider, the same across retries.
    DeliveryId
);
typed_id!(
    /// An export schedule (scheduler issue).
    ScheduleId
);
typed_id!(
    /// What a caller names a delivery by on the API: its record id or its
    /// `deliveryId`, not yet resolved (the record id wins, see
    /// `delivery::store::find`).
    DeliveryKey
);

impl RecordId {
    /// A new record id: UUID v7, so ids sort by creation.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

impl DeliveryKey {
    /// Whether this key is the record id or the delivery id given.
    pub fn names(self, record: RecordId, delivery: DeliveryId) -> bool {
        self.0 == record.0 || self.0 == delivery.0
    }
}

impl DeliveryId {
    /// A delivery id for a request that gave none.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}
