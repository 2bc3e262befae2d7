//! The report a schedule sends (`scheduler::report::build`,
//! docs/scheduled-reports.md), computed over records stored the way ingest
//! stores them (`ingest::store`, typed events in the ingest envelope), with
//! hand-written events whose totals are known.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use impact_in::{
    ids::CompanyId,
    ingest::{
        record::{
            DirectorySynced, DonationMade, EnrollmentCreated, EnrollmentStatus, EventData, Person,
            PlacementCreated, VolunteerLogged,
        },
        store::{self, NewRecord, NewRun, Progress, RunStatus},
        stream::Stream,
    },
    report::{ImpactReport, Money, Period as ReportPeriod, Programme},
    scheduler::{
        report::build,
        timing::{self, Period, Schedule, Zone},
    },
};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

fn at(rfc3339: &str) -> DateTime<Utc> {
    rfc3339.parse().expect("a test instant")
}

fn day(text: &str) -> NaiveDate {
    text.parse().expect("a test date")
}

fn person(id: &str) -> Person {
    Person {
        source_id: Some(id.into()),
        // As redaction leaves it in HASH mode: not an id the report uses.
        email: Some(format!("hmac_sha256:{}", "0".repeat(64))),
        ..Person::default()
    }
}

fn volunteer(who: Person, hours: f64, date: &str) -> EventData {
    EventData::Volunteer(VolunteerLogged {
        participant: who,
        hours,
        activity_date: day(date),
        activity: Some("Beach clean-up".into()),
        programme: None,
        sdg_goals: Vec::new(),
    })
}

fn donation(donor: &str, amount_minor: i64, currency: &str, donated_at: &str) -> EventData {
    EventData::Donation(DonationMade {
        donor: person(donor),
        amount_minor,
        currency: currency.into(),
        donated_at: at(donated_at),
        recipient: "Red Cross".into(),
        matched: Some(true),
    })
}

/// A Goodera donation as `ingest::record` stores it: its day at midnight UTC.
fn goodera_donation(donor: &str, amount_minor: i64, currency: &str, date: &str) -> EventData {
    donation(donor, amount_minor, currency, &format!("{date}T00:00:00Z"))
}

fn enrolment(who: &str, enrolled_at: &str) -> EventData {
    EventData::Enrollment(EnrollmentCreated {
        participant: person(who),
        programme: "Language connect".into(),
        status: EnrollmentStatus::Enrolled,
        enrolled_at: at(enrolled_at),
        completed_at: None,
    })
}

fn placement(mentor: &str, mentee: &str, placed_at: &str) -> EventData {
    EventData::Placement(PlacementCreated {
        mentor: person(mentor),
        mentee_id: mentee.into(),
        organisation: "Acme Corp".into(),
        role: "Junior developer".into(),
        placed_at: at(placed_at),
        status: "active".into(),
    })
}

fn directory(who: &str) -> EventData {
    EventData::Directory(DirectorySynced {
        employee: person(who),
        employee_number: Some(who.into()),
        active: true,
        title: None,
        department: None,
        cost_center: None,
        organisation: None,
        manager_id: None,
    })
}

/// Stores `records` of `stream` for `company` through a run, as ingest
/// does: one page, in the envelope `ingest::run` wraps each event in.
async fn store(pool: &PgPool, company: CompanyId, stream: Stream, records: &[(&str, EventData)]) {
    let lease = Duration::from_secs(60);
    let run = store::create_run(
        pool,
        &NewRun {
            company,
            stream,
            since: None,
            record_limit: None,
            page_size: 100,
        },
        "test",
        lease,
    )
    .await
    .unwrap()
    .expect("no run is running");
    let updated_at = at("2026-05-01T00:00:00Z");
    let page = records
        .iter()
        .map(|(source_id, data)| NewRecord {
            source_id: (*source_id).into(),
            source_updated_at: updated_at,
            event: json!({
                "id": Uuid::now_v7(),
                "version": "1.0",
                "type": stream.event_type(),
                "timestamp": updated_at,
                "correlationId": run.id,
                "causationId": null,
                "metadata": {
                    "companyId": company,
                    "source": stream.system(),
                    "stream": stream,
                    "sourceId": source_id,
                },
                "data": data,
            }),
        })
        .collect();
    let progress = Progress {
        fetched: records.len() as u64,
        failed: 0,
        errors: &[],
    };
    store::store_page(pool, &run, "test", lease, page, progress, false)
        .await
        .unwrap()
        .expect("the run is ours");
    store::finish_run(pool, run.id, "test", RunStatus::Succeeded, false, None)
        .await
        .unwrap();
}

const TOKEN: &str = "tok_v1_0123456789abcdef0123456789abcdef";

/// Company A's records around March 2026 (UTC); `reversed` stores every
/// stream's records in the opposite order.
async fn seed_march(pool: &PgPool, company: CompanyId, reversed: bool) {
    let tokenized = Person {
        email: Some(TOKEN.into()),
        ..Person::default()
    };
    let masked = Person {
        email: Some("j***@***.org".into()),
        ..Person::default()
    };
    let streams = [
        (
            Stream::BenevityVolunteers,
            vec![
                ("bv-1", volunteer(person("E1"), 2.5, "2026-03-01")),
                ("bv-2", volunteer(person("E2"), 1.25, "2026-03-31")),
                ("bv-3", volunteer(person("E1"), 4.0, "2026-04-01")),
                ("bv-4", volunteer(person("E1"), 3.0, "2026-02-28")),
            ],
        ),
        (
            Stream::GooderaVolunteers,
            vec![
                ("gv-1", volunteer(person("E2"), 0.1, "2026-03-15")),
                ("gv-2", volunteer(tokenized, 2.0, "2026-03-10")),
                ("gv-3", volunteer(masked, 1.0, "2026-03-11")),
            ],
        ),
        (
            Stream::BuddyData,
            vec![
                ("bd-1", volunteer(person("E3"), 0.2, "2026-03-20")),
                ("bd-2", volunteer(person("E1"), 0.5, "2026-03-21")),
            ],
        ),
        (
            Stream::BenevityDonations,
            vec![
                ("bn-1", donation("E1", 1000, "EUR", "2026-03-01T00:00:00Z")),
                (
                    "bn-2",
                    donation("E2", 2550, "GBP", "2026-03-31T23:59:59.999Z"),
                ),
                ("bn-3", donation("E1", 7000, "EUR", "2026-04-01T00:00:00Z")),
                ("bn-4", donation("E3", 500, "EUR", "2026-03-15T12:00:00Z")),
            ],
        ),
        (
            Stream::GooderaDonations,
            vec![
                ("gd-1", goodera_donation("E2", 1234, "USD", "2026-03-31")),
                ("gd-2", goodera_donation("E2", 999, "GBP", "2026-04-01")),
            ],
        ),
        (
            Stream::KintellEnrollments,
            vec![
                ("ke-1", enrolment("E10", "2026-03-05T10:00:00Z")),
                ("ke-2", enrolment("E11", "2026-03-01T00:00:00Z")),
                ("ke-3", enrolment("E12", "2026-04-01T00:00:00Z")),
            ],
        ),
        (
            Stream::UpskillingEnrollments,
            vec![
                ("ue-1", enrolment("E10", "2026-03-07T10:00:00Z")),
                ("ue-2", enrolment("E13", "2026-02-28T23:59:59Z")),
            ],
        ),
        (
            Stream::MentorshipPlacements,
            vec![
                ("mp-1", placement("E1", "MT1", "2026-03-10T09:00:00Z")),
                ("mp-2", placement("E2", "MT1", "2026-03-11T09:00:00Z")),
            ],
        ),
        (Stream::WorkdayDirectory, vec![("wd-1", directory("E1"))]),
    ];
    for (stream, mut records) in streams {
        if reversed {
            records.reverse();
        }
        store(pool, company, stream, &records).await;
    }
}

fn march_utc() -> Period {
    Period {
        start: at("2026-03-01T00:00:00Z"),
        end: at("2026-04-01T00:00:00Z"),
    }
}

fn company() -> CompanyId {
    CompanyId(Uuid::now_v7())
}

fn programme(name: &str, volunteer_hours: f64, participant_count: u32) -> Programme {
    Programme {
        name: name.into(),
        volunteer_hours,
        participant_count,
        donations: Vec::new(),
    }
}

fn money(amount_minor: i64, currency: &str) -> Money {
    Money {
        amount_minor,
        currency: currency.into(),
    }
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_period_reports_exactly_its_records_and_no_other_companys(pool: PgPool) {
    let (a, b) = (company(), company());
    seed_march(&pool, a, false).await;
    // Another company, in the same period: none of it may show.
    store(
        &pool,
        b,
        Stream::BenevityVolunteers,
        &[("bv-1", volunteer(person("E1"), 20.0, "2026-03-02"))],
    )
    .await;
    store(
        &pool,
        b,
        Stream::BenevityDonations,
        &[(
            "bn-1",
            donation("E9", 99_999, "EUR", "2026-03-02T00:00:00Z"),
        )],
    )
    .await;

    let report = build(&pool, a, &march_utc(), Zone::UTC)
        .await
        .unwrap()
        .expect("March has records");

    let expected = ImpactReport {
        company_id: a.0,
        period: ReportPeriod {
            start: day("2026-03-01"),
            end: day("2026-03-31"),
        },
        // bv-1 (the period's first day), bv-2 (its last), gv-1..3, bd-1..2;
        // not bv-3 (the day of `end`) nor bv-4 (the day before `start`).
        // Summed exactly: a float sum of 0.1 and 0.2 would not be 0.3.
        volunteer_hours: 7.55,
        // E1, E2, E3 and the tokenized email; the masked one is nobody.
        volunteer_count: 4,
        // E10 (Kintell and Upskilling), E11 (enrolled exactly at `start`),
        // mentee MT1 (placed twice); not E12 (at `end`) nor E13 (before).
        participant_count: 3,
        // Every volunteer activity counted: 2 Benevity, 3 Goodera, 2 Buddy.
        session_count: 7,
        // bn-1 at `start` counts, bn-3 at `end` does not; gd-1 dated the
        // last day counts, gd-2 (the next day) does not.
        donations: vec![money(1500, "EUR"), money(2550, "GBP"), money(1234, "USD")],
        outcome_scores: Default::default(),
        sroi_ratio: None,
        vis_score: None,
        programmes: vec![
            programme("Buddy", 0.7, 0),
            programme("Kintell", 0.0, 2),
            programme("Mentorship", 0.0, 1),
            programme("Upskilling", 0.0, 1),
        ],
    };
    assert_eq!(report, expected);
    assert!(report.violations().is_empty(), "{:?}", report.violations());

    let other = build(&pool, b, &march_utc(), Zone::UTC)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.volunteer_hours, 20.0);
    assert_eq!(other.donations, vec![money(99_999, "EUR")]);
    assert!(
        other.programmes.is_empty(),
        "providers' records make no programme"
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_period_without_records_that_count_is_skipped(pool: PgPool) {
    let (a, directory_only) = (company(), company());
    seed_march(&pool, a, false).await;
    let january = Period {
        start: at("2026-01-01T00:00:00Z"),
        end: at("2026-02-01T00:00:00Z"),
    };
    assert_eq!(build(&pool, a, &january, Zone::UTC).await.unwrap(), None);
    // An hour with no day starting in it and no timed event in it.
    let hour = Period {
        start: at("2026-03-05T11:00:00Z"),
        end: at("2026-03-05T12:00:00Z"),
    };
    assert_eq!(build(&pool, a, &hour, Zone::UTC).await.unwrap(), None);
    // The hour of 1 March's midnight holds that day's activity, and the
    // donation and enrolment at 00:00.
    let first_hour = Period {
        start: at("2026-03-01T00:00:00Z"),
        end: at("2026-03-01T01:00:00Z"),
    };
    let report = build(&pool, a, &first_hour, Zone::UTC)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            report.volunteer_hours,
            report.session_count,
            report.participant_count
        ),
        (2.5, 1, 1)
    );
    assert_eq!(report.donations, vec![money(1000, "EUR")]);

    // Directory records count for nothing.
    store(
        &pool,
        directory_only,
        Stream::WorkdayDirectory,
        &[("wd-1", directory("E1")), ("wd-2", directory("E2"))],
    )
    .await;
    assert_eq!(
        build(&pool, directory_only, &march_utc(), Zone::UTC)
            .await
            .unwrap(),
        None
    );
    // Nor does a company without records.
    assert_eq!(
        build(&pool, company(), &march_utc(), Zone::UTC)
            .await
            .unwrap(),
        None
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_same_records_give_byte_identical_json(pool: PgPool) {
    let (a, reversed) = (company(), company());
    seed_march(&pool, a, false).await;
    seed_march(&pool, reversed, true).await;
    let json = |report: ImpactReport| serde_json::to_vec(&report).unwrap();

    let first = build(&pool, a, &march_utc(), Zone::UTC)
        .await
        .unwrap()
        .unwrap();
    let second = build(&pool, a, &march_utc(), Zone::UTC)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(json(first.clone()), json(second));

    // Stored in another order, the same records still read alike.
    let mut other = build(&pool, reversed, &march_utc(), Zone::UTC)
        .await
        .unwrap()
        .unwrap();
    other.company_id = a.0;
    assert_eq!(json(first), json(other));
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_zone_sets_the_dates_and_which_records_fall_in_the_period(pool: PgPool) {
    let a = company();
    store(
        &pool,
        a,
        Stream::BenevityDonations,
        &[
            // 28 February, 22:00 in New York: February's.
            ("bn-1", donation("E1", 100, "EUR", "2026-03-01T03:00:00Z")),
            // 31 March, 23:00 in New York: March's, though April in UTC.
            ("bn-2", donation("E1", 200, "EUR", "2026-04-01T03:00:00Z")),
            // 1 April, 00:00 in New York (EDT): the period's end, April's.
            ("bn-3", donation("E1", 400, "EUR", "2026-04-01T04:00:00Z")),
        ],
    )
    .await;
    store(
        &pool,
        a,
        Stream::GooderaDonations,
        // Dated 1 March: March's in every zone, though stored as midnight
        // UTC, which is 28 February in New York.
        &[("gd-1", goodera_donation("E1", 800, "EUR", "2026-03-01"))],
    )
    .await;
    store(
        &pool,
        a,
        Stream::BenevityVolunteers,
        &[
            ("bv-1", volunteer(person("E1"), 1.0, "2026-03-01")),
            ("bv-2", volunteer(person("E1"), 2.0, "2026-03-31")),
            ("bv-3", volunteer(person("E1"), 4.0, "2026-04-01")),
        ],
    )
    .await;
    let zone: Zone = "America/New_York".parse().unwrap();
    let monthly: Schedule = "monthly".parse().unwrap();
    let period = timing::period(&monthly, zone, at("2026-04-01T04:00:00Z")).unwrap();
    assert_eq!(
        period,
        Period {
            start: at("2026-03-01T05:00:00Z"),
            end: at("2026-04-01T04:00:00Z"),
        }
    );

    let report = build(&pool, a, &period, zone).await.unwrap().unwrap();
    assert_eq!(
        report.period,
        ReportPeriod {
            start: day("2026-03-01"),
            end: day("2026-03-31"),
        }
    );
    assert_eq!(report.donations, vec![money(1000, "EUR")]);
    assert_eq!(report.volunteer_hours, 3.0);

    // The same instants read in UTC are another period, with other records.
    let utc = build(&pool, a, &march_utc(), Zone::UTC)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(utc.donations, vec![money(900, "EUR")]);
    assert_eq!(utc.volunteer_hours, 3.0);
}
