//! Keyset positions in a list ordered newest first (the delivery log, the
//! webhook events), handed to clients as opaque text.

use std::{fmt, str::FromStr};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, SecondsFormat, Utc};

use uuid::Uuid;

/// A row's place in list order (`<time> DESC, id DESC`); a page that
/// starts here holds the rows strictly after it. It names a position only,
/// not a filter or a company: the query's own filter and scope still apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

/// base64url of `timestamp|id`. Postgres keeps microseconds, so writing
/// them all makes the position exact.
impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.at.to_rfc3339_opts(SecondsFormat::Micros, true);
        f.write_str(&URL_SAFE_NO_PAD.encode(format!("{at}|{}", self.id)))
    }
}

/// Where a page of a list starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// After skipping this many rows: page numbers, slower the deeper.
    Offset(u64),
    /// Strictly after this row: as fast on any page, since the index seeks
    /// straight to it.
    After(Cursor),
}

impl Start {
    /// The position to continue after, and the rows to skip.
    pub fn split(self) -> (Option<Cursor>, u64) {
        match self {
            Self::Offset(offset) => (None, offset),
            Self::After(cursor) => (Some(cursor), 0),
        }
    }
}

/// A page from `rows`, fetched with one row beyond `limit`: that row tells
/// whether another page follows, without trusting a count taken by another
/// statement. The page, and the position to continue after when one does.
pub fn page<T>(
    mut rows: Vec<T>,
    limit: u32,
    position: impl Fn(&T) -> Cursor,
) -> (Vec<T>, Option<Cursor>) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(position)
    } else {
        None
    };
    (rows, next)
}

#[derive(Debug, thiserror::Error)]
#[error("must be a nextCursor value returned by this API")]
pub struct MalformedCursor;

impl FromStr for Cursor {
    type Err = MalformedCursor;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let decoded = URL_SAFE_NO_PAD.decode(raw).map_err(|_| MalformedCursor)?;
        let text = String::from_utf8(decoded).map_err(|_| MalformedCursor)?;
        let (at, id) = text.split_once('|').ok_or(MalformedCursor)?;
        Ok(Self {
            at: DateTime::parse_from_rfc3339(at)
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
            at: "2026-03-31T23:30:00.123456Z".parse().unwrap(),
            id: Uuid::now_v7(),
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
