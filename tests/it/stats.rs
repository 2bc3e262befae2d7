//! `GET /v1/impact-in/stats` over seeded deliveries, every number worked out
//! by hand and compared exactly: rates come rounded to 4 decimals, attempts
//! and latencies to 2.

use crate::common::{ADMIN, MANAGE, OPS_KEY, TestApp, config, token};
use axum::http::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

const STATS: &str = "/v1/impact-in/stats";

/// provider, status, attempt_count, created_at, and `delivered_at -
/// created_at` in ms (`None`: `delivered_at` NULL).
type Row = (&'static str, &'static str, i32, &'static str, Option<i64>);

async fn seed(pool: &PgPool, company: Uuid, rows: &[Row]) {
    for &(provider, status, attempts, created_at, latency_ms) in rows {
        sqlx::query(
            "INSERT INTO impact_deliveries
                 (id, company_id, provider, delivery_id, payload, payload_hash, status,
                  attempt_count, created_at, delivered_at)
             VALUES ($1, $2, $3, $4, '{}', 'seeded', $5, $6, $7::timestamptz,
                     $7::timestamptz + $8 * interval '1 millisecond')",
        )
        .bind(Uuid::new_v4())
        .bind(company)
        .bind(provider)
        .bind(Uuid::new_v4())
        .bind(status)
        .bind(attempts)
        .bind(created_at)
        .bind(latency_ms)
        .execute(pool)
        .await
        .unwrap();
    }
}

/// Ours: four benevity, two goodera, no workday.
const OURS: &[Row] = &[
    ("benevity", "success", 1, "2026-01-10T10:00:00Z", Some(1000)),
    ("benevity", "success", 2, "2026-01-11T00:00:00Z", Some(3000)),
    ("benevity", "failed", 5, "2026-01-12T08:00:00Z", None),
    ("benevity", "pending", 0, "2026-02-01T08:00:00Z", None),
    ("goodera", "success", 1, "2026-01-20T18:00:00Z", Some(2000)),
    ("goodera", "retrying", 2, "2026-02-02T08:00:00Z", None),
];

/// Another company's: never in our numbers.
const THEIRS: &[Row] = &[("goodera", "success", 9, "2026-01-15T12:00:00Z", Some(9000))];

/// One provider's counts and its success rate, as rounded by hand.
fn provider(pending: i64, retrying: i64, success: i64, failed: i64, rate: Option<f64>) -> Value {
    json!({
        "total": pending + retrying + success + failed,
        "pending": pending, "retrying": retrying, "success": success, "failed": failed,
        "successRate": rate,
    })
}

fn none() -> Value {
    provider(0, 0, 0, 0, None)
}

fn empty() -> Value {
    json!({
        "total": 0,
        "byStatus": { "pending": 0, "retrying": 0, "success": 0, "failed": 0 },
        "byProvider": {
            "benevity": none(),
            "goodera": none(),
            "workday": none(),
        },
        "successRate": null,
        "averageAttempts": null,
        "averageLatencyMs": null,
        "p95LatencyMs": null,
    })
}

async fn stats(app: &TestApp, bearer: &str, query: &str) -> Value {
    let response = app.get(&format!("{STATS}?{query}"), Some(bearer)).await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "{query}: {}",
        response.body
    );
    // Split off here: these tests write no webhook, so every delivery has
    // no provider status (the webhooks tests count the others).
    let mut body = response.body;
    let by_provider_status = body
        .as_object_mut()
        .and_then(|stats| stats.remove("byProviderStatus"))
        .expect("byProviderStatus is present");
    assert_eq!(
        by_provider_status,
        json!({"none": body["total"], "received": 0, "retrying": 0, "processed": 0, "rejected": 0}),
        "{query}"
    );
    body
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn stats_count_rate_and_time_the_callers_deliveries(pool: PgPool) {
    let app = TestApp::start(pool.clone(), config(&[])).await;
    let (ours, theirs) = (Uuid::new_v4(), Uuid::new_v4());
    seed(&pool, ours, OURS).await;
    seed(&pool, theirs, THEIRS).await;
    let reader = token(&[ours], &[ADMIN]);

    // Finished: attempts 1, 2, 5, 1; successes took 1000, 3000, 2000 ms,
    // whose 95th percentile is 2000 + 0.9 × (3000 − 2000).
    let all = json!({
        "total": 6,
        "byStatus": { "pending": 1, "retrying": 1, "success": 3, "failed": 1 },
        "byProvider": {
            "benevity": provider(1, 0, 2, 1, Some(0.6667)),
            "goodera": provider(0, 1, 1, 0, Some(1.0)),
            "workday": none(),
        },
        "successRate": 0.75,
        "averageAttempts": 2.25,
        "averageLatencyMs": 2000.0,
        "p95LatencyMs": 2900.0,
    });
    assert_eq!(stats(&app, &reader, "").await, all, "no filter");
    assert_eq!(
        stats(&app, &reader, &format!("companyId={ours}")).await,
        all,
        "companyId"
    );

    // Benevity: 2 of 3 succeeded (0.6667); attempts 1, 2, 5 (8 / 3, 2.67);
    // 1000 and 3000 ms, p95 1000 + 0.95 × 2000.
    let benevity = json!({
        "total": 4,
        "byStatus": { "pending": 1, "retrying": 0, "success": 2, "failed": 1 },
        "byProvider": {
            "benevity": provider(1, 0, 2, 1, Some(0.6667)),
            "goodera": none(),
            "workday": none(),
        },
        "successRate": 0.6667,
        "averageAttempts": 2.67,
        "averageLatencyMs": 2000.0,
        "p95LatencyMs": 2900.0,
    });
    assert_eq!(
        stats(&app, &reader, "provider=benevity").await,
        benevity,
        "provider"
    );

    // 11 January 00:00 is in; a date-only endDate takes all of 20 January.
    // Attempts 2, 5, 1 (2.67); 3000 and 2000 ms, p95 2000 + 0.95 × 1000.
    let mid_january = json!({
        "total": 3,
        "byStatus": { "pending": 0, "retrying": 0, "success": 2, "failed": 1 },
        "byProvider": {
            "benevity": provider(0, 0, 1, 1, Some(0.5)),
            "goodera": provider(0, 0, 1, 0, Some(1.0)),
            "workday": none(),
        },
        "successRate": 0.6667,
        "averageAttempts": 2.67,
        "averageLatencyMs": 2500.0,
        "p95LatencyMs": 2950.0,
    });
    assert_eq!(
        stats(&app, &reader, "startDate=2026-01-11&endDate=2026-01-20").await,
        mid_january,
        "dates"
    );
    let timestamps = "startDate=2026-01-11T00:00:00Z&endDate=2026-01-20T17:59:59Z";
    assert_eq!(stats(&app, &reader, timestamps).await["total"], 2);

    // Nothing finished yet: counts, but no rate, attempts or latency.
    let february = json!({
        "total": 2,
        "byStatus": { "pending": 1, "retrying": 1, "success": 0, "failed": 0 },
        "byProvider": {
            "benevity": provider(1, 0, 0, 0, None),
            "goodera": provider(0, 1, 0, 0, None),
            "workday": none(),
        },
        "successRate": null,
        "averageAttempts": null,
        "averageLatencyMs": null,
        "p95LatencyMs": null,
    });
    assert_eq!(
        stats(&app, &reader, "startDate=2026-02-01").await,
        february,
        "february"
    );

    // An ops key sees every company unless it names one.
    let ops_all = stats(&app, OPS_KEY, "").await;
    assert_eq!(ops_all["total"], 7);
    assert_eq!(ops_all["byProvider"]["goodera"]["success"], 2);
    let their_stats = json!({
        "total": 1,
        "byStatus": { "pending": 0, "retrying": 0, "success": 1, "failed": 0 },
        "byProvider": {
            "benevity": none(),
            "goodera": provider(0, 0, 1, 0, Some(1.0)),
            "workday": none(),
        },
        "successRate": 1.0,
        "averageAttempts": 9.0,
        "averageLatencyMs": 9000.0,
        "p95LatencyMs": 9000.0,
    });
    assert_eq!(
        stats(&app, OPS_KEY, &format!("companyId={theirs}")).await,
        their_stats,
        "ops"
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn latencies_are_rounded_to_two_decimals(pool: PgPool) {
    let app = TestApp::start(pool.clone(), config(&[])).await;
    let company = Uuid::new_v4();
    // 1000, 1000 and 1001 ms: the mean is 1000.333…; attempts 1, 1, 2 give
    // 1.333…; the p95, 1000 + 0.9 × 1, needs no rounding.
    seed(
        &pool,
        company,
        &[
            ("workday", "success", 1, "2026-03-01T00:00:00Z", Some(1000)),
            ("workday", "success", 1, "2026-03-02T00:00:00Z", Some(1000)),
            ("workday", "success", 2, "2026-03-03T00:00:00Z", Some(1001)),
        ],
    )
    .await;
    let body = stats(&app, &token(&[company], &[ADMIN]), "").await;
    assert_eq!(body["successRate"], 1.0);
    assert_eq!(body["averageAttempts"], 1.33);
    assert_eq!(body["averageLatencyMs"], 1000.33);
    assert_eq!(body["p95LatencyMs"], 1000.9);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn no_deliveries_give_zeros_and_nulls(pool: PgPool) {
    let app = TestApp::start(pool.clone(), config(&[])).await;
    let company = Uuid::new_v4();
    let reader = token(&[company], &[ADMIN]);
    assert_eq!(stats(&app, &reader, "").await, empty());

    seed(&pool, company, OURS).await;
    for query in [
        "startDate=2025-01-01&endDate=2025-12-31",
        "provider=workday",
        // An inverted range matches nothing (not a 400: no schema says so).
        "startDate=2026-12-31&endDate=2026-01-01",
    ] {
        assert_eq!(stats(&app, &reader, query).await, empty(), "{query}");
    }
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn bad_parameters_are_400_and_foreign_companies_403(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;
    let company = Uuid::new_v4();
    let reader = token(&[company], &[ADMIN]);

    for (query, fields) in [
        ("startDate=yesterday", vec!["startDate"]),
        ("endDate=2026-13-01", vec!["endDate"]),
        ("companyId=", vec!["companyId"]),
        ("provider=&endDate=", vec!["provider", "endDate"]),
        ("startDate=2026-03-01T25:00:00Z", vec!["startDate"]),
        ("provider=salesforce", vec!["provider"]),
        ("companyId=42", vec!["companyId"]),
        ("startDate=x&endDate=y", vec!["startDate", "endDate"]),
        // Past chrono's range (a panic once) and past Postgres's (a 500).
        ("endDate=%2B262142-12-31", vec!["endDate"]),
        ("startDate=-200000-01-01", vec!["startDate"]),
        ("startDate=10000-01-01T00:00:00Z", vec!["startDate"]),
    ] {
        let response = app.get(&format!("{STATS}?{query}"), Some(&reader)).await;
        assert_eq!(
            response.problem(StatusCode::BAD_REQUEST)["type"],
            "/problems/invalid-query"
        );
        assert_eq!(response.error_fields(), fields, "{query}");
    }

    let foreign = app
        .get(
            &format!("{STATS}?companyId={}", Uuid::new_v4()),
            Some(&reader),
        )
        .await;
    assert_eq!(
        foreign.problem(StatusCode::FORBIDDEN)["type"],
        "/problems/company-not-allowed"
    );
    for roles in [&[][..], &[MANAGE]] {
        let response = app.get(STATS, Some(&token(&[company], roles))).await;
        assert_eq!(
            response.problem(StatusCode::FORBIDDEN)["type"],
            "/problems/missing-role"
        );
    }
    let anonymous = app.get(STATS, None).await;
    assert_eq!(
        anonymous.problem(StatusCode::UNAUTHORIZED)["type"],
        "/problems/missing-credentials"
    );
}
