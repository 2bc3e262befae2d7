//! The SLA routes over deliveries seeded by SQL, on a pinned clock
//! (Wednesday 2026-12-09 12:00 UTC: the current week runs from Monday
//! 2026-12-07 to Monday 2026-12-14, the last full one from 2026-11-30).
//! Every figure is worked out by hand in the comments; rates come rounded
//! to 4 decimals, latencies to 2, breach values exact.

use std::sync::Arc;

use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use impact_in::clock::ManualClock;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{ADMIN, MANAGE, OPS_KEY, TestApp, config, token};

const STATUS: &str = "/v1/impact-in/sla-status";
const REPORT: &str = "/v1/impact-in/sla-report";
const TIMELINE: &str = "/v1/impact-in/delivery-timeline";

fn at(raw: &str) -> DateTime<Utc> {
    raw.parse().unwrap()
}

async fn app(pool: PgPool) -> TestApp {
    let clock = Arc::new(ManualClock::new(at("2026-12-09T12:00:00Z")));
    TestApp::start_with_clock(pool, config(&[]), clock).await
}

/// One delivery of the log.
#[derive(Clone, Copy)]
struct Row {
    provider: &'static str,
    status: &'static str,
    attempts: i32,
    /// `deliveredAt - createdAt` of a success.
    latency_ms: Option<i64>,
}

fn success(provider: &'static str, latency_ms: i64) -> Row {
    Row {
        provider,
        status: "success",
        attempts: 1,
        latency_ms: Some(latency_ms),
    }
}

fn ended(provider: &'static str, status: &'static str, attempts: i32) -> Row {
    Row {
        provider,
        status,
        attempts,
        latency_ms: None,
    }
}

async fn insert(pool: &PgPool, company: Uuid, row: Row, created_at: DateTime<Utc>) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO impact_deliveries
             (id, company_id, provider, delivery_id, payload, payload_hash, status,
              attempt_count, created_at, delivered_at)
         VALUES ($1, $2, $3, $4, '{}', 'seeded', $5, $6, $7,
                 $7 + $8 * interval '1 millisecond')",
    )
    .bind(id)
    .bind(company)
    .bind(row.provider)
    .bind(Uuid::new_v4())
    .bind(row.status)
    .bind(row.attempts)
    .bind(created_at)
    .bind(row.latency_ms)
    .execute(pool)
    .await
    .unwrap();
    id
}

/// `rows` one minute apart from `from`, in order; their ids.
async fn seed(pool: &PgPool, company: Uuid, from: DateTime<Utc>, rows: &[Row]) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        ids.push(insert(pool, company, *row, from + Duration::minutes(i as i64)).await);
    }
    ids
}

/// Failed attempts of a delivery, numbered from 1: (class, HTTP status).
async fn fail_attempts(pool: &PgPool, delivery: Uuid, failures: &[(&str, Option<i32>)]) {
    for (n, (class, status)) in failures.iter().enumerate() {
        sqlx::query(
            "INSERT INTO delivery_attempts
                 (delivery_id, attempt_number, trigger, started_at, finished_at, duration_ms,
                  http_status, error_class, error_message)
             VALUES ($1, $2, 'automatic', now(), now(), 100, $3, $4,
                     'rejected: volunteer Jane Doe <jane@example.com> has no hours')",
        )
        .bind(delivery)
        .bind(n as i32 + 1)
        .bind(status)
        .bind(class)
        .execute(pool)
        .await
        .unwrap();
    }
}

async fn get(app: &TestApp, bearer: &str, path: &str) -> Value {
    let response = app.get(path, Some(bearer)).await;
    assert_eq!(response.status, StatusCode::OK, "{path}: {}", response.body);
    response.body
}

fn reader(company: Uuid) -> String {
    token(&[company], &[ADMIN])
}

fn breach(metric: &str, status: &str, value: f64, threshold: f64, samples: i64) -> Value {
    json!({
        "metric": metric, "status": status, "value": value, "threshold": threshold,
        "samples": samples, "capped": false,
    })
}

fn capped(metric: &str, value: f64, threshold: f64, samples: i64) -> Value {
    json!({
        "metric": metric, "status": "warning", "value": value, "threshold": threshold,
        "samples": samples, "capped": true,
    })
}

/// The status fixture, all in the current week (from Monday 00:00, which
/// belongs to it), each platform at a boundary:
/// - benevity: 49 of 50 finished succeeded (98 %, healthy); 44 took 1 min
///   and 5 took 4 min, so p95 (position 0.95 × 48 = 45.6, between two
///   4 min values) is exactly 4 min (healthy); one pending.
/// - goodera: 19 of 20 (95 %, warning); every success took 5 min (p95
///   exactly 5 min: warning); the newest finished one failed (a run of
///   1), a pending one after it; of the 2 retried, 1 succeeded (50 %,
///   past the breach bound but over 2 deliveries: a capped warning).
/// - workday: 17 of 20 (85 %, breach); 15 took 1 s, then 10 s and 20 s:
///   p95 at position 0.95 × 16 = 15.2 is 10 s + 0.2 × 10 s = 12 s; the
///   three newest finished failed, with a pending one among them, which
///   neither breaks nor extends the run: 3, a breach.
async fn seed_status_fixture(pool: &PgPool, company: Uuid) {
    let monday = at("2026-12-07T00:00:00Z");
    let mut benevity = vec![ended("benevity", "failed", 1)];
    benevity.extend(std::iter::repeat_n(success("benevity", 60_000), 44));
    benevity.extend(std::iter::repeat_n(success("benevity", 240_000), 5));
    benevity.push(ended("benevity", "pending", 0));
    seed(pool, company, monday, &benevity).await;

    let mut goodera = vec![Row {
        attempts: 2,
        ..success("goodera", 300_000)
    }];
    goodera.extend(std::iter::repeat_n(success("goodera", 300_000), 18));
    goodera.push(ended("goodera", "failed", 3));
    goodera.push(ended("goodera", "retrying", 1));
    seed(pool, company, at("2026-12-08T00:00:00Z"), &goodera).await;

    let mut workday: Vec<Row> = std::iter::repeat_n(success("workday", 1000), 15).collect();
    workday.push(success("workday", 10_000));
    workday.push(success("workday", 20_000));
    workday.extend([
        ended("workday", "failed", 1),
        ended("workday", "failed", 1),
        ended("workday", "pending", 0),
        ended("workday", "failed", 1),
    ]);
    seed(pool, company, at("2026-12-09T00:00:00Z"), &workday).await;

    // Outside the week: the instant before it, and the next Monday 00:00.
    insert(
        pool,
        company,
        ended("benevity", "failed", 1),
        at("2026-12-06T23:59:59.999999Z"),
    )
    .await;
    insert(
        pool,
        company,
        ended("benevity", "failed", 1),
        at("2026-12-14T00:00:00Z"),
    )
    .await;
}

fn expected_platforms() -> Value {
    json!([
        {
            "platform": "benevity",
            "totalDeliveries": 51, "successfulDeliveries": 49, "failedDeliveries": 1,
            "inFlight": 1, "successRate": 0.98, "retriedDeliveries": 0,
            "retrySuccessRate": null,
            // (44 × 60,000 + 5 × 240,000) / 49 = 78,367.347
            "avgDeliveryLatencyMs": 78367.35, "p95DeliveryLatencyMs": 240000.0,
            "consecutiveFailures": 0, "slaStatus": "healthy", "breaches": [],
            "lowSamples": [],
        },
        {
            "platform": "goodera",
            "totalDeliveries": 21, "successfulDeliveries": 19, "failedDeliveries": 1,
            "inFlight": 1, "successRate": 0.95, "retriedDeliveries": 2,
            "retrySuccessRate": 0.5,
            "avgDeliveryLatencyMs": 300000.0, "p95DeliveryLatencyMs": 300000.0,
            "consecutiveFailures": 1, "slaStatus": "warning",
            "breaches": [
                breach("successRate", "warning", 0.95, 0.98, 20),
                breach("p95DeliveryLatencyMs", "warning", 300_000.0, 240_000.0, 19),
                capped("retrySuccessRate", 0.5, 0.85, 2),
            ],
            "lowSamples": ["p95DeliveryLatencyMs", "retrySuccessRate"],
        },
        {
            "platform": "workday",
            "totalDeliveries": 21, "successfulDeliveries": 17, "failedDeliveries": 3,
            "inFlight": 1, "successRate": 0.85, "retriedDeliveries": 0,
            "retrySuccessRate": null,
            // (15 × 1,000 + 10,000 + 20,000) / 17 = 2,647.059
            "avgDeliveryLatencyMs": 2647.06, "p95DeliveryLatencyMs": 12000.0,
            "consecutiveFailures": 3, "slaStatus": "breach",
            "breaches": [
                breach("successRate", "breach", 0.85, 0.95, 20),
                breach("consecutiveFailures", "breach", 3.0, 3.0, 3),
            ],
            "lowSamples": ["p95DeliveryLatencyMs"],
        },
    ])
}

/// 85 of 90 finished (94.44 %, breach); p95 over the 85 successes sorted
/// (15 × 1 s, 10 s, 20 s, 44 × 1 min, 5 × 4 min, 19 × 5 min) at position
/// 0.95 × 84 = 79.8 falls between two 5 min values; the mean is
/// 9,585,000 / 85; the longest run is workday's 3.
fn expected_overall() -> Value {
    json!({
        "totalDeliveries": 93, "successfulDeliveries": 85, "failedDeliveries": 5,
        "inFlight": 3, "successRate": 0.9444, "retriedDeliveries": 2,
        "retrySuccessRate": 0.5,
        "avgDeliveryLatencyMs": 112764.71, "p95DeliveryLatencyMs": 300000.0,
        "consecutiveFailures": 3, "slaStatus": "breach",
        "breaches": [
            breach("successRate", "breach", 85.0 / 90.0, 0.95, 90),
            breach("p95DeliveryLatencyMs", "warning", 300_000.0, 240_000.0, 85),
            capped("retrySuccessRate", 0.5, 0.85, 2),
            breach("consecutiveFailures", "breach", 3.0, 3.0, 3),
        ],
        "lowSamples": ["retrySuccessRate"],
    })
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_status_of_the_current_week_is_computed_by_hand(pool: PgPool) {
    let app = app(pool.clone()).await;
    let company = Uuid::new_v4();
    seed_status_fixture(&pool, company).await;
    // Another company's failures are never ours.
    let other = Uuid::new_v4();
    seed(
        &pool,
        other,
        at("2026-12-08T00:00:00Z"),
        &[ended("benevity", "failed", 1); 3],
    )
    .await;

    let body = get(&app, &reader(company), STATUS).await;
    assert_eq!(
        body["period"],
        json!({"start": "2026-12-07T00:00:00Z", "end": "2026-12-14T00:00:00Z"})
    );
    assert_eq!(body["byPlatform"], expected_platforms());
    assert_eq!(body["overall"], expected_overall());
    assert_eq!(body["slaStatus"], "breach");
    // Every breach, overall's first (platform null), then each platform's.
    let breaches = body["breaches"].as_array().unwrap();
    let named: Vec<(Value, Value)> = breaches
        .iter()
        .map(|b| (b["platform"].clone(), b["metric"].clone()))
        .collect();
    assert_eq!(
        named,
        [
            (Value::Null, json!("successRate")),
            (Value::Null, json!("p95DeliveryLatencyMs")),
            (Value::Null, json!("retrySuccessRate")),
            (Value::Null, json!("consecutiveFailures")),
            (json!("goodera"), json!("successRate")),
            (json!("goodera"), json!("p95DeliveryLatencyMs")),
            (json!("goodera"), json!("retrySuccessRate")),
            (json!("workday"), json!("successRate")),
            (json!("workday"), json!("consecutiveFailures")),
        ]
    );
    assert_eq!(breaches[8]["value"], 3.0);

    // The same period spelled out: dates (a date endDate runs through its
    // day) or timestamps (an exclusive end).
    for query in [
        "startDate=2026-12-07&endDate=2026-12-13",
        "startDate=2026-12-07T00:00:00Z&endDate=2026-12-14T00:00:00Z",
        "endDate=2026-12-14T01:00:00%2B01:00",
    ] {
        let same = get(&app, &reader(company), &format!("{STATUS}?{query}")).await;
        assert_eq!(same["overall"], expected_overall(), "{query}");
    }
    // One instant wider either way takes in the deliveries just outside.
    let wider = get(
        &app,
        &reader(company),
        &format!("{STATUS}?startDate=2026-12-06T23:59:59.999999Z&endDate=2026-12-14"),
    )
    .await;
    assert_eq!(wider["overall"]["totalDeliveries"], 95);
    assert_eq!(
        wider["period"],
        json!({"start": "2026-12-06T23:59:59.999999Z", "end": "2026-12-15T00:00:00Z"})
    );

    // An ops key without companyId: every company.
    let all = get(&app, OPS_KEY, STATUS).await;
    assert_eq!(all["overall"]["totalDeliveries"], 96);
    assert_eq!(all["overall"]["failedDeliveries"], 8);
}

/// 19 finished deliveries cannot breach on their success rate alone; 20 can.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn too_few_samples_cap_a_breach_at_a_warning(pool: PgPool) {
    let app = app(pool.clone()).await;
    let company = Uuid::new_v4();
    // 2 failures first (no run), then 17 successes: 17 / 19 = 89.47 %.
    let mut rows = vec![ended("workday", "failed", 1); 2];
    rows.extend(std::iter::repeat_n(success("workday", 1000), 17));
    seed(&pool, company, at("2026-12-07T08:00:00Z"), &rows).await;
    let body = get(&app, &reader(company), STATUS).await;
    let workday = &body["byPlatform"][2];
    assert_eq!(workday["successRate"], 0.8947);
    assert_eq!(workday["slaStatus"], "warning");
    assert_eq!(
        workday["breaches"],
        json!([capped("successRate", 17.0 / 19.0, 0.95, 19)])
    );
    assert_eq!(
        workday["lowSamples"],
        json!(["successRate", "p95DeliveryLatencyMs"])
    );
    let report = get(
        &app,
        &reader(company),
        &format!("{REPORT}?weekStart=2026-12-07"),
    )
    .await;
    let said = report["recommendations"].as_array().unwrap();
    assert!(
        said.iter().any(|r| {
            let r = r.as_str().unwrap();
            r.starts_with("workday: only 19 finished deliveries, fewer than the 20")
        }),
        "{said:?}"
    );

    // A twentieth, failed, before the successes: 17 / 20 = 85 %, a breach.
    insert(
        &pool,
        company,
        ended("workday", "failed", 1),
        at("2026-12-07T07:00:00Z"),
    )
    .await;
    let body = get(&app, &reader(company), STATUS).await;
    let workday = &body["byPlatform"][2];
    assert_eq!(workday["slaStatus"], "breach");
    assert_eq!(
        workday["breaches"],
        json!([breach("successRate", "breach", 0.85, 0.95, 20)])
    );
    assert_eq!(workday["lowSamples"], json!(["p95DeliveryLatencyMs"]));
    assert_eq!(body["slaStatus"], "breach");
}

/// Runs of failed firings are kept per schedule: one at 3 breaches its
/// platform, one at 2 does not, another company's is not ours.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_schedules_run_of_failures_breaches_its_platform(pool: PgPool) {
    let app = app(pool.clone()).await;
    let company = Uuid::new_v4();
    let failing = Uuid::new_v4();
    for (id, owner, platform, run) in [
        (failing, company, "goodera", 3),
        (Uuid::new_v4(), company, "goodera", 2),
        (Uuid::new_v4(), Uuid::new_v4(), "goodera", 5),
    ] {
        sqlx::query(
            "INSERT INTO scheduled_deliveries
                 (id, company_id, platform, schedule, consecutive_failures)
             VALUES ($1, $2, $3, 'daily', $4)",
        )
        .bind(id)
        .bind(owner)
        .bind(platform)
        .bind(run)
        .execute(&pool)
        .await
        .unwrap();
    }
    let body = get(&app, &reader(company), STATUS).await;
    let expected = json!([{
        "metric": "consecutiveFailures", "status": "breach", "value": 3.0, "threshold": 3.0,
        "samples": 3, "capped": false, "scheduleId": failing,
    }]);
    assert_eq!(body["byPlatform"][1]["breaches"], expected);
    assert_eq!(body["overall"]["breaches"], expected);
    assert_eq!(body["byPlatform"][0]["breaches"], json!([]));
    assert_eq!(body["slaStatus"], "breach");
    let report = get(&app, &reader(company), REPORT).await;
    assert_eq!(
        report["recommendations"],
        json!([format!(
            "goodera: schedule {failing} failed 3 times in a row (a breach at 3): check its \
             last error (GET /v1/impact-in/schedules/{failing}), then run it again"
        )])
    );
}

/// The report's week: by default the last full one; a delivery at Monday
/// 00:00 belongs to the week it starts.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_report_covers_a_full_week_from_monday(pool: PgPool) {
    let app = app(pool.clone()).await;
    let company = Uuid::new_v4();
    for created in [
        "2026-11-30T00:00:00Z",
        "2026-12-06T23:59:59.999999Z",
        "2026-12-07T00:00:00Z",
    ] {
        insert(&pool, company, success("benevity", 2000), at(created)).await;
    }
    let report = get(&app, &reader(company), REPORT).await;
    assert_eq!(
        report["recommendations"],
        json!([
            "All platforms healthy: 2 of 2 finished deliveries succeeded (100 %), p95 delivery \
             latency 2 s, none retried."
        ])
    );
    assert_eq!(
        report["period"],
        json!({"start": "2026-11-30T00:00:00Z", "end": "2026-12-07T00:00:00Z"})
    );
    assert_eq!(report["overall"]["totalDeliveries"], 2);
    assert_eq!(report["slaStatus"], "healthy");
    let this_week = get(
        &app,
        &reader(company),
        &format!("{REPORT}?weekStart=2026-12-07"),
    )
    .await;
    assert_eq!(this_week["overall"]["totalDeliveries"], 1);
    let empty = get(
        &app,
        &reader(company),
        &format!("{REPORT}?weekStart=2026-11-23"),
    )
    .await;
    assert_eq!(
        empty["recommendations"],
        json!(["No deliveries were created in the period: nothing to judge."])
    );
    assert_eq!(
        this_week["period"],
        json!({"start": "2026-12-07T00:00:00Z", "end": "2026-12-14T00:00:00Z"})
    );
}

/// Four companies, four failure mixes: the advice names the platform, the
/// cause with its counts, and what to do; never what the errors said.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn recommendations_follow_what_the_failures_say(pool: PgPool) {
    let app = app(pool.clone()).await;
    let week = at("2026-11-30T08:00:00Z");
    let report = |company: Uuid| {
        let app = &app;
        async move {
            let body = get(app, &reader(company), REPORT).await;
            let said: Vec<String> = serde_json::from_value(body["recommendations"].clone())
                .expect("recommendations are strings");
            for sentence in &said {
                assert!(!sentence.contains("Jane"), "{sentence}");
                assert!(!sentence.contains("example.com"), "{sentence}");
            }
            said
        }
    };

    // Auth: 4 failed Goodera deliveries (the oldest, no run) of 20, each
    // refused with 401 twice; one success needed a retry after a 503.
    let auth = Uuid::new_v4();
    let mut rows = vec![ended("goodera", "failed", 2); 4];
    rows.push(Row {
        attempts: 2,
        ..success("goodera", 1000)
    });
    rows.extend(std::iter::repeat_n(success("goodera", 1000), 15));
    let ids = seed(&pool, auth, week, &rows).await;
    for id in &ids[..4] {
        fail_attempts(&pool, *id, &[("auth", Some(401)), ("auth", Some(401))]).await;
    }
    fail_attempts(&pool, ids[4], &[("transient", Some(503))]).await;
    let said = report(auth).await;
    assert_eq!(
        said,
        [
            "goodera: success rate 80 % over 20 finished deliveries, below 95 % (a breach)",
            "goodera: 20 % of 5 retried deliveries ended in success, below 85 % (past the \
             breach bound, but over fewer than 20 deliveries, so a warning): retries are not \
             recovering the failures",
            "goodera: 8 of 9 failed attempts (88.89 %) were refused as unauthorized \
             (HTTP 401 ×8): check the company's goodera credentials \
             (PUT /v1/integrations/credentials/goodera) (the rest: 1 transient)",
        ]
    );

    // 429s: 3 of 30 Benevity deliveries failed (90 %, a breach), 12
    // attempts answered 429, 3 timed out.
    let throttled = Uuid::new_v4();
    let mut rows = vec![ended("benevity", "failed", 5); 3];
    rows.extend(std::iter::repeat_n(success("benevity", 1000), 27));
    let ids = seed(&pool, throttled, week, &rows).await;
    for id in &ids[..3] {
        fail_attempts(
            &pool,
            *id,
            &[
                ("rate_limited", Some(429)),
                ("rate_limited", Some(429)),
                ("rate_limited", Some(429)),
                ("rate_limited", Some(429)),
                ("transient", None),
            ],
        )
        .await;
    }
    let said = report(throttled).await;
    assert_eq!(said.len(), 3, "{said:?}");
    assert!(
        said[2].starts_with(
            "benevity: 12 of 15 failed attempts (80 %) were rate limited (HTTP 429 ×12): \
             spread the company's benevity schedules"
        ),
        "{said:?}"
    );

    // Transient: a healthy Workday week (1 of 50 failed: 98 %; 9 of 10
    // retried recovered: 90 %) whose failures timed out or got a 503.
    let unavailable = Uuid::new_v4();
    let mut rows = vec![ended("workday", "failed", 4)];
    rows.extend(std::iter::repeat_n(
        Row {
            attempts: 2,
            ..success("workday", 1000)
        },
        9,
    ));
    rows.extend(std::iter::repeat_n(success("workday", 1000), 40));
    let ids = seed(&pool, unavailable, week, &rows).await;
    fail_attempts(
        &pool,
        ids[0],
        &[
            ("transient", None),
            ("transient", Some(503)),
            ("transient", None),
            ("transient", None),
        ],
    )
    .await;
    for id in &ids[1..10] {
        fail_attempts(&pool, *id, &[("transient", None)]).await;
    }
    let said = report(unavailable).await;
    assert_eq!(
        said,
        [
            "All platforms healthy: 49 of 50 finished deliveries succeeded (98 %), p95 \
             delivery latency 1 s, 10 retried, 90 % of them recovered.",
            "workday: 13 of 13 failed attempts (100 %) were timeouts or server errors \
             (no answer ×12, HTTP 503 ×1): workday was unavailable; retries cover short \
             outages, so check workday's status, then replay what failed \
             (POST /v1/impact-in/deliveries/retry-all-failed)",
        ]
    );

    // All healthy: one sentence with the figures.
    let healthy = Uuid::new_v4();
    seed(
        &pool,
        healthy,
        week,
        &[success("benevity", 90_000), success("goodera", 150_000)],
    )
    .await;
    assert_eq!(
        report(healthy).await,
        [
            "All platforms healthy: 2 of 2 finished deliveries succeeded (100 %), p95 \
             delivery latency 2.45 min, none retried."
        ]
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn periods_are_validated_naming_the_field(pool: PgPool) {
    let app = app(pool).await;
    let company = Uuid::new_v4();
    let bearer = reader(company);
    for (query, field) in [
        // Empty or inverted.
        (
            "startDate=2026-12-10T00:00:00Z&endDate=2026-12-10T00:00:00Z",
            "endDate",
        ),
        ("startDate=2026-12-11&endDate=2026-12-10", "endDate"),
        // Past the default end (next Monday) with no endDate.
        ("startDate=2026-12-14", "startDate"),
        // Before the default start with no startDate.
        ("endDate=2026-12-06T12:00:00Z", "endDate"),
        // 367 days.
        ("startDate=2026-01-01&endDate=2027-01-02", "endDate"),
    ] {
        let response = app.get(&format!("{STATUS}?{query}"), Some(&bearer)).await;
        assert_eq!(
            response.problem(StatusCode::UNPROCESSABLE_ENTITY)["type"],
            "/problems/validation",
            "{query}"
        );
        assert_eq!(response.error_fields(), [field], "{query}");
    }
    // 366 days, a leap year's: accepted.
    get(
        &app,
        &bearer,
        &format!("{STATUS}?startDate=2027-12-31&endDate=2028-12-30"),
    )
    .await;
    // The day's own period, through its end.
    let day = get(
        &app,
        &bearer,
        &format!("{STATUS}?startDate=2026-12-10&endDate=2026-12-10"),
    )
    .await;
    assert_eq!(
        day["period"],
        json!({"start": "2026-12-10T00:00:00Z", "end": "2026-12-11T00:00:00Z"})
    );

    let response = app
        .get(&format!("{REPORT}?weekStart=2026-12-08"), Some(&bearer))
        .await;
    response.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(response.error_fields(), ["weekStart"]);
    for (path, query, fields) in [
        (
            STATUS,
            "startDate=monday&companyId=",
            vec!["companyId", "startDate"],
        ),
        (REPORT, "weekStart=2026-13-01", vec!["weekStart"]),
    ] {
        let response = app.get(&format!("{path}?{query}"), Some(&bearer)).await;
        assert_eq!(
            response.problem(StatusCode::BAD_REQUEST)["type"],
            "/problems/invalid-query"
        );
        assert_eq!(response.error_fields(), fields, "{query}");
    }
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_routes_are_tenant_scoped(pool: PgPool) {
    let app = app(pool.clone()).await;
    let (ours, theirs) = (Uuid::new_v4(), Uuid::new_v4());
    insert(
        &pool,
        ours,
        success("benevity", 1000),
        at("2026-12-08T00:00:00Z"),
    )
    .await;
    insert(
        &pool,
        theirs,
        success("goodera", 1000),
        at("2026-12-08T01:00:00Z"),
    )
    .await;
    for path in [STATUS, REPORT, TIMELINE] {
        let foreign = app
            .get(&format!("{path}?companyId={theirs}"), Some(&reader(ours)))
            .await;
        assert_eq!(
            foreign.problem(StatusCode::FORBIDDEN)["type"],
            "/problems/company-not-allowed",
            "{path}"
        );
        let writer_only = app.get(path, Some(&token(&[ours], &[MANAGE]))).await;
        assert_eq!(
            writer_only.problem(StatusCode::FORBIDDEN)["type"],
            "/problems/missing-role",
            "{path}"
        );
        app.get(path, None).await.problem(StatusCode::UNAUTHORIZED);
    }
    // Without companyId a user sees its own companies; an ops key all.
    let mine = get(&app, &reader(ours), STATUS).await;
    assert_eq!(mine["overall"]["totalDeliveries"], 1);
    let all = get(&app, OPS_KEY, STATUS).await;
    assert_eq!(all["overall"]["totalDeliveries"], 2);
    let one = get(&app, OPS_KEY, &format!("{STATUS}?companyId={theirs}")).await;
    assert_eq!(one["byPlatform"][1]["totalDeliveries"], 1);
    let timeline = get(&app, OPS_KEY, TIMELINE).await;
    assert_eq!(timeline["data"].as_array().unwrap().len(), 2);
    let timeline = get(&app, &reader(ours), TIMELINE).await;
    assert_eq!(timeline["data"][0]["companyId"], json!(ours));
    assert_eq!(timeline["data"].as_array().unwrap().len(), 1);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_timeline_lists_the_newest_deliveries(pool: PgPool) {
    let app = app(pool.clone()).await;
    let company = Uuid::new_v4();
    let bearer = reader(company);
    let start = at("2026-12-01T00:00:00Z");
    let ids = seed(&pool, company, start, &vec![success("benevity", 1500); 33]).await;
    // The newest: failed after three attempts with a long, multi-line error,
    // created by a schedule.
    let schedule = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO scheduled_deliveries (id, company_id, platform, schedule)
         VALUES ($1, $2, 'goodera', 'daily')",
    )
    .bind(schedule)
    .bind(company)
    .execute(&pool)
    .await
    .unwrap();
    let failed = insert(
        &pool,
        company,
        ended("goodera", "failed", 3),
        at("2026-12-02T00:00:00Z"),
    )
    .await;
    let long = format!("{}\nsecond line", "x".repeat(250));
    sqlx::query("UPDATE impact_deliveries SET last_error = $2, schedule_id = $3 WHERE id = $1")
        .bind(failed)
        .bind(&long)
        .bind(schedule)
        .execute(&pool)
        .await
        .unwrap();

    let body = get(&app, &bearer, TIMELINE).await;
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 30, "30 by default");
    let newest = &data[0];
    assert_eq!(newest["id"], json!(failed));
    assert_eq!(newest["platform"], "goodera");
    assert_eq!(newest["status"], "failed");
    assert_eq!(newest["attempts"], 3);
    assert_eq!(newest["latencyMs"], Value::Null);
    assert_eq!(newest["scheduleId"], json!(schedule));
    assert_eq!(newest["deliveredAt"], Value::Null);
    assert_eq!(newest["providerStatus"], Value::Null);
    assert_eq!(newest["createdAt"], "2026-12-02T00:00:00Z");
    let summary = newest["errorSummary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 200);
    assert!(summary.starts_with("xxx") && summary.ends_with('…'));
    // Then the successes, newest first, one minute apart.
    let next = &data[1];
    assert_eq!(next["id"], json!(ids[32]));
    assert_eq!(next["latencyMs"], 1500);
    assert_eq!(next["errorSummary"], Value::Null);
    assert_eq!(next["createdAt"], "2026-12-01T00:32:00Z");
    assert_eq!(next["deliveredAt"], "2026-12-01T00:32:01.500Z");
    assert!(next["deliveryId"].is_string());
    assert_eq!(data[29]["id"], json!(ids[4]));

    let five = get(&app, &bearer, &format!("{TIMELINE}?limit=5")).await;
    assert_eq!(five["data"].as_array().unwrap().len(), 5);
    let hundred = get(&app, &bearer, &format!("{TIMELINE}?limit=100")).await;
    assert_eq!(hundred["data"].as_array().unwrap().len(), 34);
    for limit in ["0", "101", "x", ""] {
        let response = app
            .get(&format!("{TIMELINE}?limit={limit}"), Some(&bearer))
            .await;
        assert_eq!(
            response.problem(StatusCode::BAD_REQUEST)["type"],
            "/problems/invalid-query"
        );
        assert_eq!(response.error_fields(), ["limit"], "{limit}");
    }
}
