//! The periods the SLA routes cover: UTC weeks from Monday 00:00, and the
//! bounds a caller may ask for.

use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc, Weekday};

use super::Period;

/// The longest period the status route computes: a year, leap day included.
pub const MAX_DAYS: i64 = 366;

impl Period {
    /// The UTC week (Monday 00:00 to the next Monday 00:00) holding `at`; an
    /// instant exactly at Monday 00:00 begins its week.
    pub fn week_of(at: DateTime<Utc>) -> Self {
        let monday = at.date_naive().week(Weekday::Mon).first_day();
        Self::week_from(monday.and_time(NaiveTime::MIN).and_utc())
    }

    /// The last full week before the one holding `at`.
    pub fn week_before(at: DateTime<Utc>) -> Self {
        Self::week_from(Self::week_of(at).start - Duration::days(7))
    }

    /// The week starting at `start`, if that is a Monday 00:00 UTC.
    pub fn week_starting(start: DateTime<Utc>) -> Result<Self, &'static str> {
        if start.weekday() == Weekday::Mon && start.time() == NaiveTime::MIN {
            Ok(Self::week_from(start))
        } else {
            Err("must be a Monday (weeks run from Monday 00:00 UTC)")
        }
    }

    fn week_from(start: DateTime<Utc>) -> Self {
        Self {
            start,
            end: start + Duration::days(7),
        }
    }

    /// `[start, end)` when it is not empty and at most [`MAX_DAYS`] long.
    pub fn checked(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, &'static str> {
        if start >= end {
            Err("the period must end after it starts")
        } else if end - start > Duration::days(MAX_DAYS) {
            Err("the period must be at most 366 days long")
        } else {
            Ok(Self { start, end })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(raw: &str) -> DateTime<Utc> {
        raw.parse().unwrap()
    }

    #[test]
    fn a_week_runs_from_monday_midnight_and_that_instant_begins_it() {
        // 2026-12-07 is a Monday.
        let week = Period::week_of(at("2026-12-09T15:00:00Z"));
        assert_eq!(week.start, at("2026-12-07T00:00:00Z"));
        assert_eq!(week.end, at("2026-12-14T00:00:00Z"));
        assert_eq!(Period::week_of(at("2026-12-14T00:00:00Z")).start, week.end);
        assert_eq!(
            Period::week_of(at("2026-12-13T23:59:59.999999Z")).start,
            week.start
        );
        let before = Period::week_before(at("2026-12-07T00:00:00Z"));
        assert_eq!(before.start, at("2026-11-30T00:00:00Z"));
        assert_eq!(before.end, at("2026-12-07T00:00:00Z"));
    }

    #[test]
    fn only_a_monday_midnight_starts_a_week() {
        assert!(Period::week_starting(at("2026-12-07T00:00:00Z")).is_ok());
        assert!(Period::week_starting(at("2026-12-08T00:00:00Z")).is_err());
        assert!(Period::week_starting(at("2026-12-07T00:00:01Z")).is_err());
    }

    #[test]
    fn a_period_is_not_empty_and_at_most_366_days() {
        let start = at("2026-01-01T00:00:00Z");
        assert!(Period::checked(start, start).is_err());
        assert!(Period::checked(start, start + Duration::days(366)).is_ok());
        assert!(
            Period::checked(start, start + Duration::days(366) + Duration::seconds(1)).is_err()
        );
    }
}
