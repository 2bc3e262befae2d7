//! The dates callers send (`startDate` and `endDate` on the list and the
//! statistics, `since` on retry-all-failed): one parser and one range.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc};
use utoipa::openapi::{
    RefOr, Type,
    schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat},
};

/// The instant a plain date stands for.
#[derive(Debug, Clone, Copy)]
pub enum Day {
    /// Its first instant: a lower bound includes the whole day.
    Start,
    /// Its last instant: an upper bound includes the whole day.
    End,
    /// The first instant of the next day: an exclusive upper bound (the SLA
    /// periods, `[start, end)`) includes the whole day.
    After,
}

/// Four-digit years only, as written. Far wider dates reach past chrono
/// (which panics on arithmetic there) or Postgres (which refuses them); no
/// delivery log needs them. A timestamp's offset may move its instant up to
/// a day past them in UTC, which both still handle.
const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// An RFC 3339 timestamp (`date-time` in JSON Schema), or a plain date
/// (`date`: `YYYY-MM-DD`, meaning the instant `day` names in UTC), with a
/// year from 0001 to 9999 as written.
pub fn parse(raw: &str, day: Day) -> Result<DateTime<Utc>, &'static str> {
    const FORMS: &str = "must be an ISO 8601 date (2026-01-31) or timestamp (2026-01-31T12:00:00Z)";
    let (written, instant) = match DateTime::parse_from_rfc3339(raw) {
        Ok(timestamp) => (timestamp.year(), timestamp.with_timezone(&Utc)),
        Err(_) => {
            // chrono's %Y and %m also take signs, more digits or one digit;
            // a `date` is exactly YYYY-MM-DD.
            let shape = raw.len() == 10
                && raw.bytes().enumerate().all(|(i, b)| match i {
                    4 | 7 => b == b'-',
                    _ => b.is_ascii_digit(),
                });
            if !shape {
                return Err(FORMS);
            }
            let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| FORMS)?;
            let instant = match day {
                Day::Start => date.and_time(NaiveTime::MIN),
                Day::End => date.and_time(
                    NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999)
                        .expect("23:59:59.999999 is a time of day"),
                ),
                // chrono's dates reach far past year 9999.
                Day::After => (date + chrono::Days::new(1)).and_time(NaiveTime::MIN),
            };
            (date.year(), instant.and_utc())
        }
    };
    if YEARS.contains(&written) {
        Ok(instant)
    } else {
        Err("must be from 0001-01-01 to 9999-12-31")
    }
}

/// What [`parse`] accepts, for the OpenAPI spec: a `date` or a `date-time`.
pub struct DateOrTimestamp;

impl utoipa::PartialSchema for DateOrTimestamp {
    fn schema() -> RefOr<Schema> {
        let string = |format| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(format)))
        };
        AnyOfBuilder::new()
            .item(string(KnownFormat::Date))
            .item(string(KnownFormat::DateTime))
            .description(Some(
                "An RFC 3339 date (2026-01-31: its first instant as a lower bound, its last \
                 as an upper bound, UTC) or timestamp (2026-01-31T12:00:00Z), years 0001 to 9999",
            ))
            .into()
    }
}

impl utoipa::ToSchema for DateOrTimestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_date_is_the_first_or_last_instant_of_its_day() {
        assert_eq!(
            parse("2026-01-31", Day::Start).unwrap().to_rfc3339(),
            "2026-01-31T00:00:00+00:00"
        );
        assert_eq!(
            parse("9999-12-31", Day::End).unwrap().to_rfc3339(),
            "9999-12-31T23:59:59.999999+00:00"
        );
        assert_eq!(
            parse("2026-01-31", Day::After).unwrap().to_rfc3339(),
            "2026-02-01T00:00:00+00:00"
        );
        assert_eq!(
            parse("2026-01-31T12:00:00+02:00", Day::End)
                .unwrap()
                .to_rfc3339(),
            "2026-01-31T10:00:00+00:00"
        );
    }

    #[test]
    fn years_without_four_digits_are_refused_not_computed_with() {
        let out_of_range = Err("must be from 0001-01-01 to 9999-12-31");
        for raw in ["0000-12-31", "0000-01-01T00:00:00+23:59"] {
            assert_eq!(parse(raw, Day::Start), out_of_range, "{raw}");
            assert_eq!(parse(raw, Day::End), out_of_range, "{raw}");
        }
        // Not the shape of a date at all: a sign, more or fewer digits.
        for raw in [
            "+262142-12-31",
            "-200000-01-01",
            "-0001-01-01",
            "+10000-01-01",
            "2026-1-31",
            "2026-01-1",
            "+2026-01-31",
            " 2026-01-31",
        ] {
            assert!(
                parse(raw, Day::Start)
                    .unwrap_err()
                    .starts_with("must be an ISO 8601 date"),
                "{raw}"
            );
        }
        assert!(parse("0001-01-01", Day::Start).is_ok());
        assert!(parse("9999-12-31T23:59:59.999999999Z", Day::Start).is_ok());
    }

    /// The range is on the date as written (what JSON Schema's `date-time`
    /// describes): an offset may carry the instant a day past it in UTC.
    #[test]
    fn the_year_range_is_on_the_date_as_written() {
        assert_eq!(
            parse("0001-01-01T00:00:00+01:00", Day::Start)
                .unwrap()
                .to_rfc3339(),
            "0000-12-31T23:00:00+00:00"
        );
        assert_eq!(
            parse("9999-12-31T23:30:00-01:00", Day::End)
                .unwrap()
                .to_rfc3339(),
            "+10000-01-01T00:30:00+00:00"
        );
    }
}
