//! Keyset positions in the delivery log, handed to clients as opaque text.

use std::{fmt, str::FromStr};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::ids::RecordId;

use super::Delivery;

/// A row's place in list order (`created_at DESC, id DESC`); a page that
/// starts here holds the rows strictly after it. It names a position only,
/// not a filter or a company: the query's own filter and scope still apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: RecordId,
}

impl From<&Delivery> for Cursor {
    fn from(delivery: &Delivery) -> Self {
        Self {
            created_at: delivery.created_at,
            id: delivery.id,
        }
    }
}

/// base64url of `timestamp|id`. Postgres keeps microseconds, so writing
/// them all makes the position exact.
impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let created_at = self.created_at.to_rfc3339_opts(SecondsFormat::Micros, true);
        f.write_str(&URL_SAFE_NO_PAD.encode(format!("{created_at}|{}", self.id)))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("must be a nextCursor value returned by this API")]
pub struct MalformedCursor;

impl FromStr for Cursor {
    type Err = MalformedCursor;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let decoded = URL_SAFE_NO_PAD.decode(raw).map_err(|_| MalformedCursor)?;
        let text = String::from_utf8(decoded).map_err(|_| MalformedCursor)?;
        let (created_at, id) = text.split_once('|').ok_or(MalformedCursor)?;
        Ok(Self {
            created_at: DateTime::parse_from_rfc3339(created_at)
                .map_err(|_| MalformedCursor)?
                .with_timezone(&Utc),
            id: id.parse().map_err(|_| MalformedCursor)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_its_text_form_to_the_microsecond() {
        let cursor = Cursor {
            created_at: "2026-03-31T23:30:00.123456Z".parse().unwrap(),
            id: RecordId::generate(),
        };
        let text = cursor.to_string();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{text} must need no escaping in a query string"
        );
        assert_eq!(text.parse::<Cursor>().unwrap(), cursor);
    }

    #[test]
    fn anything_else_is_refused() {
        let encode = |text: &str| URL_SAFE_NO_PAD.encode(text);
        for raw in [
            "not base64!".to_owned(),
            encode("2026-03-31T23:30:00Z"),
            encode("yesterday|0193a1c2-9b10-7f21-8d3c-4e5f6a7b8c9d"),
            encode("2026-03-31T23:30:00Z|42"),
            URL_SAFE_NO_PAD.encode([0xff, 0xfe, b'|']),
        ] {
            assert!(raw.parse::<Cursor>().is_err(), "{raw}");
        }
    }
}
