//! The canonical impact report (`docs/payloads.md`) a schedule sends for a
//! company and a period, computed from the records ingest stored
//! (`docs/scheduled-reports.md` defines every field).
//!
//! Each record counts in the period its event happened in, by the event's
//! own time, never by when the source changed it or when we stored it, so
//! a late sync does not move an old activity into this month's report:
//!
//! - an event its source dates without a time of day (a volunteer activity,
//!   a Goodera donation) counts in the period that holds the start of that
//!   day in the schedule's zone: consecutive periods cover each day once,
//!   even hourly ones (the whole day goes to the hour of its midnight);
//! - an event with an instant (a Benevity donation, an enrolment, a
//!   placement) counts when that instant is in `[start, end)`.
//!
//! Both times are computed in SQL by the functions of migration
//! `20261209000003_ingest_report_index.sql`, whose expression indexes the
//! query below uses.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use sqlx::PgPool;

use super::timing::{self, Period, Zone};
use crate::{
    ids::CompanyId,
    ingest::stream::{Stream, System},
    report::{self, ImpactReport, Money, Programme},
};

/// The report of `company` for `period`, whose dates are read in `zone`;
/// `None` when no ingested record counts in the period (the schedule skips
/// it rather than send an empty report).
///
/// The same records give the same report, field for field and in the same
/// order, so its JSON is byte-identical: the scheduler recognises a repeat
/// by the payload's hash.
pub async fn build(
    db: &PgPool,
    company: CompanyId,
    period: &Period,
    zone: Zone,
) -> Result<Option<ImpactReport>, sqlx::Error> {
    let tz = zone.tz();
    // `None` only at the ends of chrono's calendar, where no record is.
    let (Some(first_day), Some(past_day)) = (
        first_day_from(tz, period.start),
        first_day_from(tz, period.end),
    ) else {
        return Ok(None);
    };
    let (streams, systems): (Vec<&str>, Vec<String>) = Stream::ALL
        .iter()
        .map(|s| (s.as_str(), s.system().to_string()))
        .unzip();
    let rows: Vec<Row> = sqlx::query_as(REPORT_SQL)
        .bind(company)
        .bind(first_day)
        .bind(past_day)
        .bind(period.start)
        .bind(period.end)
        .bind(streams)
        .bind(systems)
        .fetch_all(db)
        .await?;
    assemble(company, period, tz, rows)
}

/// One query, so every figure comes from one snapshot even while ingest
/// writes. `counted` is the period's records, found through the two
/// expression indexes; `facts` reads from each what it contributes; the
/// grouping sets give the totals (`()`), each system (`(system)`) and each
/// currency (`(currency)`) in one pass.
///
/// - Hours are summed as `numeric` (exact, as jsonb stores them), so the
///   total does not depend on the order rows are read in, as a float sum
///   would.
/// - A person is the stable pseudonymous id the stored event carries: the
///   source's person id (an employee code, the same in every system), else
///   an email that redaction made a keyed token or hash (stable per
///   person); a masked or removed email tells nobody apart, and such a
///   record counts no one. A mentee is known only by the Mentorship
///   service's own id, kept apart from person ids by its prefix.
const REPORT_SQL: &str = "
WITH systems (stream, system) AS (
    SELECT * FROM unnest($6::text[], $7::text[])
),
counted AS (
    SELECT stream, event_type, data -> 'data' AS event
    FROM ingest_records
    WHERE company_id = $1
      AND ingest_event_day(stream, data) >= $2 AND ingest_event_day(stream, data) < $3
    UNION ALL
    SELECT stream, event_type, data -> 'data'
    FROM ingest_records
    WHERE company_id = $1
      AND ingest_event_at(stream, data) >= $4 AND ingest_event_at(stream, data) < $5
),
facts AS (
    SELECT
        systems.system,
        event_type = 'ingest.volunteer.logged' AS session,
        CASE WHEN event_type = 'ingest.volunteer.logged'
             THEN (event -> 'hours')::numeric END AS hours,
        CASE WHEN event_type = 'ingest.volunteer.logged' THEN who.person END AS volunteer,
        CASE event_type
            WHEN 'ingest.enrollment.created' THEN who.person
            WHEN 'ingest.placement.created' THEN 'mentee:' || (event ->> 'menteeId')
        END AS participant,
        CASE WHEN event_type = 'ingest.donation.made' THEN event ->> 'currency' END AS currency,
        CASE WHEN event_type = 'ingest.donation.made'
             THEN (event -> 'amountMinor')::bigint END AS amount_minor
    FROM counted
    JOIN systems USING (stream)
    CROSS JOIN LATERAL (SELECT coalesce(
        'id:' || (event #>> '{participant,sourceId}'),
        CASE WHEN event #>> '{participant,email}'
                  ~ '^(tok_v[0-9]+_[0-9a-f]{32}|hmac_sha256:[0-9a-f]{64})$'
             THEN 'email:' || (event #>> '{participant,email}') END
    ) AS person) AS who
)
SELECT
    GROUPING(system, currency)::int4 AS grouping,
    system,
    currency,
    count(*) AS records,
    coalesce(sum(hours), 0)::float8 AS hours,
    count(DISTINCT volunteer) AS volunteers,
    count(DISTINCT participant) AS participants,
    count(*) FILTER (WHERE session) AS sessions,
    coalesce(sum(amount_minor), 0)::int8 AS amount_minor
FROM facts
GROUP BY GROUPING SETS ((), (system), (currency))
";

#[derive(sqlx::FromRow)]
struct Row {
    grouping: i32,
    system: Option<String>,
    currency: Option<String>,
    records: i64,
    hours: f64,
    volunteers: i64,
    participants: i64,
    sessions: i64,
    amount_minor: i64,
}

/// `GROUPING(system, currency)`: which grouping set a row is the total of.
const BY_SYSTEM: i32 = 0b01;
const BY_CURRENCY: i32 = 0b10;
const TOTAL: i32 = 0b11;

fn assemble(
    company: CompanyId,
    period: &Period,
    tz: Tz,
    rows: Vec<Row>,
) -> Result<Option<ImpactReport>, sqlx::Error> {
    let Some(total) = rows.iter().find(|r| r.grouping == TOTAL && r.records > 0) else {
        return Ok(None);
    };
    let mut donations = Vec::new();
    let mut programmes = Vec::new();
    for row in &rows {
        match (row.grouping, &row.system, &row.currency) {
            (BY_CURRENCY, _, Some(currency)) => donations.push(Money {
                amount_minor: row.amount_minor,
                currency: currency.clone(),
            }),
            (BY_SYSTEM, Some(system), _) => {
                let system: System = system.parse().map_err(|err| decode("system", err))?;
                if let Some(name) = programme_name(system) {
                    programmes.push(Programme {
                        name: name.into(),
                        volunteer_hours: row.hours,
                        participant_count: count("participants", row.participants)?,
                        // No internal system records donations.
                        donations: Vec::new(),
                    });
                }
            }
            // The currency set's row of records that are not donations.
            _ => {}
        }
    }
    donations.sort_by(|a, b| a.currency.cmp(&b.currency));
    programmes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Some(ImpactReport {
        company_id: company.0,
        period: local_dates(tz, period),
        volunteer_hours: total.hours,
        volunteer_count: count("volunteers", total.volunteers)?,
        participant_count: count("participants", total.participants)?,
        session_count: count("sessions", total.sessions)?,
        donations,
        outcome_scores: Default::default(),
        sroi_ratio: None,
        vis_score: None,
        programmes,
    }))
}

/// The programme an internal system's records make; the providers'
/// systems (Benevity, Goodera, Workday) count in the totals only.
fn programme_name(system: System) -> Option<&'static str> {
    match system {
        System::Kintell => Some("Kintell"),
        System::Upskilling => Some("Upskilling"),
        System::Buddy => Some("Buddy"),
        System::Mentorship => Some("Mentorship"),
        System::Benevity | System::Goodera | System::Workday => None,
    }
}

/// The first local day that starts at or after `instant`: days from
/// `first_day_from(start)` up to, not including, `first_day_from(end)` are
/// those whose start lies in `[start, end)`.
fn first_day_from(tz: Tz, instant: DateTime<Utc>) -> Option<NaiveDate> {
    let day = instant.with_timezone(&tz).date_naive();
    if timing::day_start(tz, day)? >= instant {
        Some(day)
    } else {
        day.succ_opt()
    }
}

/// The report's dates: the local day of `start`, and the last local day
/// inside the period (`period.end` is inclusive in the payload, as in
/// `2026-01-01` to `2026-03-31` for a quarter).
fn local_dates(tz: Tz, period: &Period) -> report::Period {
    let local = |instant: DateTime<Utc>| instant.with_timezone(&tz).date_naive();
    let last = period.end - TimeDelta::nanoseconds(1);
    report::Period {
        start: local(period.start),
        end: local(last.max(period.start)),
    }
}

/// A count as the report's `u32`; past it is a decoding error rather than
/// a silently wrong figure.
fn count(column: &'static str, n: i64) -> Result<u32, sqlx::Error> {
    u32::try_from(n).map_err(|err| decode(column, err))
}

fn decode(
    column: &'static str,
    err: impl std::error::Error + Send + Sync + 'static,
) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.into(),
        source: Box::new(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        rfc3339.parse().expect("a test instant")
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().expect("a test date")
    }

    fn zone(name: &str) -> Tz {
        name.parse::<Zone>().expect("a test zone").tz()
    }

    #[test]
    fn a_day_belongs_to_the_period_that_holds_its_start() {
        let utc = zone("UTC");
        assert_eq!(
            first_day_from(utc, at("2026-03-01T00:00:00Z")),
            Some(day("2026-03-01"))
        );
        assert_eq!(
            first_day_from(utc, at("2026-03-01T00:00:00.000001Z")),
            Some(day("2026-03-02")),
            "a day that started before the period is the previous period's"
        );
        let new_york = zone("America/New_York");
        // Midnight in New York is 05:00Z in winter, 04:00Z in summer.
        assert_eq!(
            first_day_from(new_york, at("2026-03-01T05:00:00Z")),
            Some(day("2026-03-01"))
        );
        assert_eq!(
            first_day_from(new_york, at("2026-03-01T04:59:59Z")),
            Some(day("2026-03-01"))
        );
        assert_eq!(
            first_day_from(new_york, at("2026-04-01T04:00:00Z")),
            Some(day("2026-04-01"))
        );
        // São Paulo, 2018-11-04: no midnight, the day began at 01:00 (03:00Z).
        let sao_paulo = zone("America/Sao_Paulo");
        assert_eq!(
            first_day_from(sao_paulo, at("2018-11-04T03:00:00Z")),
            Some(day("2018-11-04"))
        );
        assert_eq!(
            first_day_from(sao_paulo, at("2018-11-04T03:00:01Z")),
            Some(day("2018-11-05"))
        );
    }

    #[test]
    fn an_hourly_period_holds_a_day_only_if_the_day_starts_in_it() {
        let utc = zone("UTC");
        let days =
            |start: &str, end: &str| (first_day_from(utc, at(start)), first_day_from(utc, at(end)));
        // [00:00, 01:00): the day of 2026-03-05 and no other.
        assert_eq!(
            days("2026-03-05T00:00:00Z", "2026-03-05T01:00:00Z"),
            (Some(day("2026-03-05")), Some(day("2026-03-06")))
        );
        // [01:00, 02:00): no day (an empty range).
        assert_eq!(
            days("2026-03-05T01:00:00Z", "2026-03-05T02:00:00Z"),
            (Some(day("2026-03-06")), Some(day("2026-03-06")))
        );
    }

    #[test]
    fn the_report_dates_are_the_first_and_last_local_days_of_the_period() {
        let period = Period {
            start: at("2026-03-01T05:00:00Z"),
            end: at("2026-04-01T04:00:00Z"),
        };
        let dates = local_dates(zone("America/New_York"), &period);
        assert_eq!(
            (dates.start, dates.end),
            (day("2026-03-01"), day("2026-03-31"))
        );
        // Read in UTC the same instants span other days.
        let dates = local_dates(zone("UTC"), &period);
        assert_eq!(
            (dates.start, dates.end),
            (day("2026-03-01"), day("2026-04-01"))
        );
        let hour = Period {
            start: at("2026-03-05T23:00:00Z"),
            end: at("2026-03-06T00:00:00Z"),
        };
        let dates = local_dates(zone("UTC"), &hour);
        assert_eq!(
            (dates.start, dates.end),
            (day("2026-03-05"), day("2026-03-05"))
        );
    }
}
