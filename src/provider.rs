//! The CSR platforms this service delivers to.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Ordered as declared (alphabetically), so maps keyed by provider list them
/// in a stable order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, sqlx::Type,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Provider {
    Benevity,
    Goodera,
    Workday,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Self::Benevity, Self::Goodera, Self::Workday];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Benevity => "benevity",
            Self::Goodera => "goodera",
            Self::Workday => "workday",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("must be one of benevity, goodera, workday")]
pub struct UnknownProvider;

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == raw)
            .ok_or(UnknownProvider)
    }
}
