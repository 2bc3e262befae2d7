//! Export schedules end to end: the routes over a fresh database, and the
//! scheduler fired on a manual clock, alone and as two racing replicas.

use std::{collections::HashSet, sync::Arc, time::Duration};

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Utc};
use impact_in::{
    clock::{Clock, ManualClock},
    scheduler::{
        fire,
        timing::{self, Schedule, Zone},
    },
};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{ADMIN, MANAGE, TestApp};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

struct Scheduled {
    app: TestApp,
    clock: Arc<ManualClock>,
    company: Uuid,
    token: String,
}

impl Scheduled {
    async fn start(pool: PgPool, now: &str) -> Self {
        let clock = Arc::new(ManualClock::new(at(now)));
        let app = TestApp::start_with_clock(pool, crate::common::config(&[]), clock.clone()).await;
        let company = Uuid::new_v4();
        Self {
            app,
            clock,
            company,
            token: crate::common::token(&[company], &[ADMIN, MANAGE]),
        }
    }

    async fn create(&self, schedule: &str, timezone: &str) -> Value {
        let created = self
            .app
            .post(
                "/v1/impact-in/schedules",
                Some(&self.token),
                json!({
                    "companyId": self.company,
                    "platform": "benevity",
                    "schedule": schedule,
                    "timezone": timezone,
                }),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        created.body
    }

    /// Moves the clock to `to` and fires what is due then.
    async fn tick_at(&self, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let now = self.clock.now();
        self.clock.advance((to - now).to_std().unwrap());
        fire::tick(&self.app.state.scheduler, to)
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.due_at)
            .collect()
    }
}

async fn firings(pool: &PgPool) -> Vec<(Uuid, DateTime<Utc>)> {
    sqlx::query_as("SELECT schedule_id, due_at FROM schedule_firings ORDER BY due_at")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_schedule_is_created_read_changed_listed_and_deleted(pool: PgPool) {
    let s = Scheduled::start(pool, "2025-03-08T12:00:00Z").await;
    let created = s.create("30 2 * * *", "America/New_York").await;
    // 02:30 on 9 March does not exist in New York: it fires at 03:00 EDT.
    assert_eq!(created["nextRun"], "2025-03-09T07:00:00Z", "{created}");
    assert_eq!(created["nextRunLocal"], "2025-03-09T03:00:00-04:00");
    assert_eq!(created["active"], true);
    assert_eq!(created["preset"], Value::Null);
    let id = created["id"].as_str().unwrap();
    let path = format!("/v1/impact-in/schedules/{id}");

    let shown = s.app.get(&path, Some(&s.token)).await;
    assert_eq!(shown.body, created);

    let paused = s
        .app
        .request(
            Method::PATCH,
            &path,
            Some(&s.token),
            Some(json!({"active": false})),
        )
        .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.body);
    assert_eq!(paused.body["nextRun"], Value::Null);
    let resumed = s
        .app
        .request(
            Method::PATCH,
            &path,
            Some(&s.token),
            Some(json!({"active": true, "schedule": "daily", "timezone": "Europe/Berlin"})),
        )
        .await;
    assert_eq!(resumed.body["preset"], "daily");
    assert_eq!(resumed.body["nextRun"], "2025-03-08T23:00:00Z");

    let listed = s
        .app
        .get(
            &format!(
                "/v1/impact-in/schedules?companyId={}&platform=benevity&active=true",
                s.company
            ),
            Some(&s.token),
        )
        .await;
    assert_eq!(
        listed.body["data"].as_array().unwrap().len(),
        1,
        "{}",
        listed.body
    );

    let deleted = s
        .app
        .request(Method::DELETE, &path, Some(&s.token), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    s.app
        .get(&path, Some(&s.token))
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn invalid_schedules_and_zones_are_422_naming_the_field(pool: PgPool) {
    let s = Scheduled::start(pool, "2025-01-01T00:00:00Z").await;
    for (schedule, timezone, field, says) in [
        ("0 9 * *", "UTC", "schedule", "5 fields"),
        ("61 * * * *", "UTC", "schedule", "61"),
        ("0 0 30 2 *", "UTC", "schedule", "never"),
        ("*/0 * * * *", "UTC", "schedule", "step"),
        ("yearly", "UTC", "schedule", "yearly"),
        (
            "daily",
            "Mars/Olympus_Mons",
            "timezone",
            "Mars/Olympus_Mons",
        ),
    ] {
        let refused = s
            .app
            .post(
                "/v1/impact-in/schedules",
                Some(&s.token),
                json!({"companyId": s.company, "platform": "goodera", "schedule": schedule, "timezone": timezone}),
            )
            .await;
        refused.problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(refused.error_fields(), [field], "{schedule} {timezone}");
        let message = refused.body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(says), "{schedule}: {message}");
    }
    let preview = s
        .app
        .get(
            "/v1/impact-in/schedules/preview?schedule=0%2025%20*%20*%20*&timezone=Nowhere",
            Some(&s.token),
        )
        .await;
    preview.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(preview.error_fields(), ["schedule", "timezone"]);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn preview_follows_the_dst_rules_in_utc_and_local_time(pool: PgPool) {
    let s = Scheduled::start(pool, "2025-11-01T12:00:00Z").await;
    let preview = s
        .app
        .get(
            "/v1/impact-in/schedules/preview?schedule=30%201%20*%20*%20*&timezone=America/New_York&count=3",
            Some(&s.token),
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    // 01:30 on 2 November happens twice: it fires at the first only.
    assert_eq!(
        preview.body["runs"],
        json!([
            {"utc": "2025-11-02T05:30:00Z", "local": "2025-11-02T01:30:00-04:00"},
            {"utc": "2025-11-03T06:30:00Z", "local": "2025-11-03T01:30:00-05:00"},
            {"utc": "2025-11-04T06:30:00Z", "local": "2025-11-04T01:30:00-05:00"},
        ])
    );
    let hourly = s
        .app
        .get(
            "/v1/impact-in/schedules/preview?schedule=hourly&timezone=America/New_York&count=50",
            Some(&s.token),
        )
        .await;
    let utc: Vec<&str> = hourly.body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["utc"].as_str().unwrap())
        .collect();
    // Both copies of the repeated hour fire for an hourly schedule.
    assert!(utc.contains(&"2025-11-02T05:00:00Z") && utc.contains(&"2025-11-02T06:00:00Z"));
    s.app
        .get(
            "/v1/impact-in/schedules/preview?schedule=hourly&count=51",
            Some(&s.token),
        )
        .await
        .problem(StatusCode::BAD_REQUEST);
}

/// Hourly, every 6 hours, weekly, monthly on the 31st and a weekday cron,
/// ticked every hour for 70 days: every due time fires once, the ones the
/// timing rules say, and nothing else.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn each_due_time_fires_once_on_the_manual_clock(pool: PgPool) {
    let start = at("2025-01-01T00:07:00Z");
    let s = Scheduled::start(pool.clone(), "2025-01-01T00:07:00Z").await;
    let kinds = [
        ("hourly", "UTC"),
        ("every-6-hours", "UTC"),
        ("weekly", "UTC"),
        ("0 9 31 * *", "UTC"),
        ("0 9 * * 1-5", "Europe/Berlin"),
    ];
    let mut ids = Vec::new();
    for (schedule, zone) in kinds {
        ids.push(
            s.create(schedule, zone).await["id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap(),
        );
    }
    let end = start + chrono::Duration::days(70);
    let mut now = start;
    while now < end {
        now += chrono::Duration::hours(1);
        s.tick_at(now).await;
    }
    let fired = firings(&pool).await;
    let of = |id: Uuid| -> Vec<DateTime<Utc>> {
        fired
            .iter()
            .filter(|(s, _)| *s == id)
            .map(|(_, at)| *at)
            .collect()
    };
    assert_eq!(of(ids[0]).len(), 70 * 24, "hourly");
    assert_eq!(of(ids[1]).len(), 70 * 4, "every 6 hours");
    assert_eq!(of(ids[2]).len(), 10, "weekly: Sundays 5 January … 9 March");
    assert_eq!(
        of(ids[3]),
        [at("2025-01-31T09:00:00Z"), at("2025-03-31T09:00:00Z")]
            .to_vec()
            .into_iter()
            .filter(|t| *t < end)
            .collect::<Vec<_>>(),
        "the 31st only in months that have one"
    );
    let weekdays = of(ids[4]);
    assert_eq!(weekdays.len(), 50, "ten weeks of weekdays");
    assert!(weekdays.iter().all(|t| {
        use chrono::Datelike;
        t.weekday().num_days_from_monday() < 5
    }));
    // 09:00 Berlin is 08:00 UTC in winter.
    assert_eq!(weekdays[0], at("2025-01-01T08:00:00Z"));
    assert_eq!(
        fired.len(),
        fired.iter().collect::<HashSet<_>>().len(),
        "no due time twice"
    );
}

/// A schedule whose due times passed while no scheduler ran fires once on
/// recovery, for the latest, and then keeps its rhythm.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn missed_due_times_coalesce_into_one_firing(pool: PgPool) {
    let s = Scheduled::start(pool.clone(), "2025-06-01T12:00:00Z").await;
    s.create("daily", "UTC").await;
    // Down from before midnight on 2 June until the 5th at 10:00.
    let fired = s.tick_at(at("2025-06-05T10:00:00Z")).await;
    assert_eq!(fired, [at("2025-06-05T00:00:00Z")]);
    assert!(s.tick_at(at("2025-06-05T23:59:00Z")).await.is_empty());
    assert_eq!(
        s.tick_at(at("2025-06-06T00:00:00Z")).await,
        [at("2025-06-06T00:00:00Z")]
    );
    assert_eq!(firings(&pool).await.len(), 2);
}

/// Two replicas' schedulers on one database, ticking at the same moments
/// every 20 minutes over ten simulated days across New York's and São
/// Paulo's clock changes, with ten schedules: every due time the timing
/// rules give fires exactly once, by one replica or the other.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn two_racing_schedulers_fire_every_due_time_exactly_once(pool: PgPool) {
    let start = at("2025-10-28T00:00:00Z");
    let end = at("2025-11-07T00:00:00Z");
    let clock = Arc::new(ManualClock::new(start));
    let a =
        TestApp::start_with_clock(pool.clone(), crate::common::config(&[]), clock.clone()).await;
    let b =
        TestApp::start_with_clock(pool.clone(), crate::common::config(&[]), clock.clone()).await;
    let company = Uuid::new_v4();
    let token = crate::common::token(&[company], &[ADMIN, MANAGE]);
    let kinds = [
        "hourly",
        "every-6-hours",
        "daily",
        "30 1 * * *",
        "*/30 * * * *",
    ];
    let zones = ["America/New_York", "Europe/Berlin"];
    let mut expected = HashSet::new();
    for schedule in kinds {
        for zone in zones {
            let created = a
                .post(
                    "/v1/impact-in/schedules",
                    Some(&token),
                    json!({"companyId": company, "platform": "workday", "schedule": schedule, "timezone": zone}),
                )
                .await;
            assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
            let id: Uuid = created.body["id"].as_str().unwrap().parse().unwrap();
            let (parsed, zone) = (
                schedule.parse::<Schedule>().unwrap(),
                zone.parse::<Zone>().unwrap(),
            );
            let mut due = timing::next_after(&parsed, zone, start);
            while let Some(when) = due.filter(|when| *when <= end) {
                expected.insert((id, when));
                due = timing::next_after(&parsed, zone, when);
            }
        }
    }
    let mut now = start;
    let mut made = 0;
    while now < end {
        now += chrono::Duration::minutes(20);
        clock.advance(Duration::from_secs(20 * 60));
        let (x, y) = tokio::join!(
            fire::tick(&a.state.scheduler, now),
            fire::tick(&b.state.scheduler, now)
        );
        made += x.unwrap().len() + y.unwrap().len();
    }
    let fired = firings(&pool).await;
    assert_eq!(made, fired.len(), "each firing made by one replica");
    let fired: HashSet<(Uuid, DateTime<Utc>)> = fired.into_iter().collect();
    assert_eq!(fired.len(), made, "no due time twice");
    assert_eq!(fired, expected);
    // The fall-back's repeated hour: both copies for every-hour schedules.
    assert!(
        expected
            .iter()
            .any(|(_, when)| *when == at("2025-11-02T05:30:00Z"))
    );
    assert!(
        expected
            .iter()
            .any(|(_, when)| *when == at("2025-11-02T06:30:00Z"))
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_firing_has_a_deterministic_delivery_id(pool: PgPool) {
    let s = Scheduled::start(pool, "2025-01-01T00:00:00Z").await;
    let id: Uuid = s.create("hourly", "UTC").await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let due = at("2025-01-01T01:00:00Z");
    let schedule = impact_in::ids::ScheduleId(id);
    assert_eq!(
        fire::delivery_id(schedule, due),
        fire::delivery_id(schedule, due)
    );
    assert_ne!(
        fire::delivery_id(schedule, due),
        fire::delivery_id(schedule, due + chrono::Duration::hours(1))
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn every_schedule_route_is_tenant_scoped(pool: PgPool) {
    let s = Scheduled::start(pool, "2025-01-01T00:00:00Z").await;
    let id = s.create("daily", "UTC").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stranger = crate::common::token(&[Uuid::new_v4()], &[ADMIN, MANAGE]);
    let path = format!("/v1/impact-in/schedules/{id}");
    for (method, path, body) in [
        (Method::GET, path.clone(), None),
        (Method::PATCH, path.clone(), Some(json!({"active": false}))),
        (Method::DELETE, path.clone(), None),
        (Method::POST, format!("{path}/run"), None),
    ] {
        s.app
            .request(method, &path, Some(&stranger), body)
            .await
            .problem(StatusCode::NOT_FOUND);
    }
    let listed = s.app.get("/v1/impact-in/schedules", Some(&stranger)).await;
    assert_eq!(listed.body["data"], json!([]));
    let stats = s
        .app
        .get("/v1/impact-in/schedules/stats", Some(&stranger))
        .await;
    assert_eq!(stats.body["total"], 0, "{}", stats.body);
    s.app
        .post(
            "/v1/impact-in/schedules",
            Some(&stranger),
            json!({"companyId": s.company, "platform": "benevity", "schedule": "daily"}),
        )
        .await
        .problem(StatusCode::FORBIDDEN);
    let reader = crate::common::token(&[s.company], &[ADMIN]);
    s.app
        .request(
            Method::PATCH,
            &path,
            Some(&reader),
            Some(json!({"active": false})),
        )
        .await
        .problem(StatusCode::FORBIDDEN);
    let mine = s
        .app
        .get("/v1/impact-in/schedules/stats", Some(&reader))
        .await;
    assert_eq!(mine.body["total"], 1, "{}", mine.body);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_period_without_ingested_data_is_skipped_not_sent(pool: PgPool) {
    let s = Scheduled::start(pool.clone(), "2025-01-01T00:00:00Z").await;
    let id = s.create("daily", "UTC").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let fired = s
        .app
        .post(
            &format!("/v1/impact-in/schedules/{id}/run"),
            Some(&s.token),
            json!({}),
        )
        .await;
    assert_eq!(fired.status, StatusCode::OK, "{}", fired.body);
    assert_eq!(fired.body["outcome"], "skipped");
    assert!(
        fired.body["reason"]
            .as_str()
            .unwrap()
            .contains("no ingested data")
    );
    let shown = s
        .app
        .get(&format!("/v1/impact-in/schedules/{id}"), Some(&s.token))
        .await;
    assert_eq!(shown.body["lastStatus"], "skipped");
    let deliveries: i64 = sqlx::query_scalar("SELECT count(*) FROM impact_deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(deliveries, 0);
}

/// The task sleeps until the next due time, not the check interval (one
/// minute): started with no schedule, it is woken by the one created, waits
/// the second until it is due and fires it, long before the interval.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_task_wakes_for_a_new_schedule_and_fires_at_its_due_time(pool: PgPool) {
    let s = Scheduled::start(pool.clone(), "2025-01-01T11:59:59Z").await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(impact_in::scheduler::task::run(
        s.app.state.scheduler.clone(),
        shutdown.clone(),
    ));
    let created = s.create("* * * * *", "UTC").await;
    assert_eq!(created["nextRun"], "2025-01-01T12:00:00Z");
    // The schedule clock reaches the due time; the task, woken by the
    // create, is asleep until then (one second of real time).
    s.clock.advance(Duration::from_secs(1));
    let fired = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let fired = firings(&pool).await;
            if !fired.is_empty() {
                return fired;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("fired before the one-minute check interval");
    assert_eq!(fired[0].1, at("2025-01-01T12:00:00Z"));
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the task stops on shutdown")
        .unwrap();
}
