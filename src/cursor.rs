//! Keyset positions in a list ordered by a time and an id (the delivery
//! log, the webhook events, ingest runs and records), handed to clients as
//! opaque text.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

/// A row's place in list order (`<time> DESC, id DESC`); a page that
/// starts here holds the rows strictly after it. It names a position only,
/// not a filter or a company: the query's own filter and scope still apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

/// `<microseconds since 1970 (UTC)>_<id as 32 hex digits>`, e.g.
/// `1774999800123456_0193a1c29b107f218d3c4e5f6a7b8c9d`. Postgres keeps
/// microseconds, so the position is exact. Clients treat it as opaque; its
/// shape is [`PATTERN`], and every text of that shape is a position (any
/// position is harmless: the query's filter and scope still apply), so
/// the OpenAPI spec can say exactly what is accepted.
impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.at.timestamp_micros(), self.id.simple())
    }
}

/// The shape of a cursor, for the OpenAPI spec: at most 16 digits (up to
/// the year 2286, and as far before 1970) keep every one a valid instant.
pub const PATTERN: &str = "^-?[0-9]{1,16}_[0-9a-f]{32}$";

/// Where a page of a list starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// After skipping this many rows: page numbers, slower the deeper.
    Offset(u64),
    /// Strictly after this row, then skipping this many rows (none for the
    /// `nextCursor` of a page): as fast on any page, since the index seeks
    /// straight to the row.
    After(Cursor, u64),
}

impl Start {
    /// The position to continue after, and the rows to skip.
    pub fn split(self) -> (Option<Cursor>, u64) {
        match self {
            Self::Offset(offset) => (None, offset),
            Self::After(cursor, offset) => (Some(cursor), offset),
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

    /// Exactly [`PATTERN`]: no sign but `-`, no uppercase or hyphens in the id.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let (micros, id) = raw.split_once('_').ok_or(MalformedCursor)?;
        let digits = micros.strip_prefix('-').unwrap_or(micros);
        let digits_ok =
            (1..=16).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
        let id_ok = id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !digits_ok || !id_ok {
            return Err(MalformedCursor);
        }
        let micros: i64 = micros.parse().map_err(|_| MalformedCursor)?;
        Ok(Self {
            at: DateTime::from_timestamp_micros(micros).ok_or(MalformedCursor)?,
            id: Uuid::try_parse(id).map_err(|_| MalformedCursor)?,
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
        let id = "0193a1c29b107f218d3c4e5f6a7b8c9d";
        for raw in [
            "not a cursor!".to_owned(),
            String::new(),
            format!("_{id}"),
            format!("12345678901234567_{id}"),
            format!("+1_{id}"),
            format!("1.5_{id}"),
            format!("1_{}", id.to_uppercase()),
            format!("1_{}", &id[1..]),
            "1_0193a1c2-9b10-7f21-8d3c-4e5f6a7b8c9d".to_owned(),
            format!("1_{id}_"),
            // The base64url form of earlier releases.
            "MjAyNi0wMy0zMVQyMzozMDowMC4xMjM0NTZafDAxOTNhMWMyLTliMTAtN2YyMS04ZDNjLTRlNWY2YTdiOGM5ZA".to_owned(),
        ] {
            assert!(raw.parse::<Cursor>().is_err(), "{raw}");
        }
    }

    /// What the spec's pattern admits parses, to the edges of its digits.
    #[test]
    fn every_text_of_the_pattern_is_a_position() {
        let id = "0193a1c29b107f218d3c4e5f6a7b8c9d";
        for micros in [
            "0",
            "-0",
            "9999999999999999",
            "-9999999999999999",
            "0000000000000001",
        ] {
            let raw = format!("{micros}_{id}");
            let cursor: Cursor = raw.parse().expect(&raw);
            assert_eq!(cursor.at.timestamp_micros(), micros.parse::<i64>().unwrap());
        }
    }
}

/// Which way a list runs through `(<time>, id)`.
#[derive(Debug, Clone, Copy)]
pub enum Order {
    NewestFirst,
    OldestFirst,
}

/// `(<column>, id) < (at, id)` (newest first) or `>` (oldest first): the
/// rows past `cursor`, as the `(<column>, id)` index reads them.
pub fn push_past(query: &mut QueryBuilder<Postgres>, column: &str, order: Order, cursor: Cursor) {
    let op = match order {
        Order::NewestFirst => "<",
        Order::OldestFirst => ">",
    };
    query
        .push(format!("({column}, id) {op} ("))
        .push_bind(cursor.at)
        .push(", ")
        .push_bind(cursor.id)
        .push(")");
}
