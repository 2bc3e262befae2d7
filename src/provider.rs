//! The CSR platforms this service delivers to.

use serde::{Deserialize, Serialize};

/// Ordered as declared (alphabetically), so maps keyed by provider list them
/// in a stable order. Its text form (wire, database, logs) is lowercase.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
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
    parse_err_ty = UnknownProvider,
    parse_err_fn = unknown_provider
)]
pub enum Provider {
    Benevity,
    Goodera,
    Workday,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Self::Benevity, Self::Goodera, Self::Workday];

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("must be one of benevity, goodera, workday")]
pub struct UnknownProvider;

fn unknown_provider(_: &str) -> UnknownProvider {
    UnknownProvider
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_is_the_wire_form_both_ways() {
        for provider in Provider::ALL {
            let wire = serde_json::to_value(provider).unwrap();
            assert_eq!(wire, provider.as_str());
            assert_eq!(provider.to_string(), provider.as_str());
            assert_eq!(provider.as_str().parse::<Provider>().unwrap(), provider);
        }
        assert_eq!(
            "Benevity".parse::<Provider>().unwrap_err().to_string(),
            "must be one of benevity, goodera, workday"
        );
    }
}
