//! The dates callers send (`startDate` and `endDate` on the list and the
//! statistics, `since` on retry-all-failed): one parser and one range.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc};

/// The instant a plain date stands for.
#[derive(Debug, Clone, Copy)]
pub enum Day {
    /// Its first instant: a lower bound includes the whole day.
    Start,
    /// Its last instant: an upper bound includes the whole day.
    End,
}

/// Four-digit years only. Far wider dates reach past chrono (which panics
/// on arithmetic there) or Postgres (which refuses them); no delivery log
/// needs them.
const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// An RFC 3339 timestamp, or a plain date (UTC) meaning the instant `day`
/// names, from 0001-01-01T00:00:00Z to the end of 9999-12-31 (UTC).
pub fn parse(raw: &str, day: Day) -> Result<DateTime<Utc>, &'static str> {
    let instant = match DateTime::parse_from_rfc3339(raw) {
        Ok(timestamp) => timestamp.with_timezone(&Utc),
        Err(_) => {
            let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(
                |_| "must be an ISO 8601 date (2026-01-31) or timestamp (2026-01-31T12:00:00Z)",
            )?;
            let time = match day {
                Day::Start => NaiveTime::MIN,
                Day::End => NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999)
                    .expect("23:59:59.999999 is a time of day"),
            };
            date.and_time(time).and_utc()
        }
    };
    if YEARS.contains(&instant.year()) {
        Ok(instant)
    } else {
        Err("must be from 0001-01-01 to 9999-12-31 (UTC)")
    }
}

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
            parse("2026-01-31T12:00:00+02:00", Day::End)
                .unwrap()
                .to_rfc3339(),
            "2026-01-31T10:00:00+00:00"
        );
    }

    #[test]
    fn years_without_four_digits_are_refused_not_computed_with() {
        let out_of_range = Err("must be from 0001-01-01 to 9999-12-31 (UTC)");
        for raw in [
            "+262142-12-31",
            "-200000-01-01",
            "0000-12-31",
            "-0001-01-01",
            "+10000-01-01",
            // Inside four digits, but past them in UTC.
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:30:00-01:00",
        ] {
            assert_eq!(parse(raw, Day::Start), out_of_range, "{raw}");
            assert_eq!(parse(raw, Day::End), out_of_range, "{raw}");
        }
        assert!(parse("0001-01-01", Day::Start).is_ok());
        assert!(parse("9999-12-31T23:59:59.999999999Z", Day::Start).is_ok());
    }
}
