//! The delivery console's server side over the real router: the page and
//! its assets with their headers, who the caller is (`session`), and the
//! figures per day of its charts (`sla-daily`, over deliveries seeded by
//! SQL on a pinned clock, each figure worked out by hand in the comments).

use std::sync::Arc;

use axum::{
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use chrono::{DateTime, Duration, Utc};
use impact_in::clock::ManualClock;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{
    ADMIN, MANAGE, OPS_KEY, TestApp, TestResponse, config, token, unreachable_pool,
};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const SESSION: &str = "/v1/impact-in/session";
const DAILY: &str = "/v1/impact-in/sla-daily";

/// The console needs no database: a pool to nowhere will do.
fn app() -> TestApp {
    TestApp::unstarted(unreachable_pool(), config(&[]))
}

fn asset_file(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/src/console/assets/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn header(response: &TestResponse, name: header::HeaderName) -> &str {
    response
        .headers
        .get(&name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
}

/// The headers of every console answer.
fn assert_locked_down(response: &TestResponse) {
    assert_eq!(header(response, header::CONTENT_SECURITY_POLICY), CSP);
    assert_eq!(header(response, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(header(response, header::REFERRER_POLICY), "no-referrer");
    assert_eq!(header(response, header::X_FRAME_OPTIONS), "DENY");
}

async fn get_with(app: &TestApp, path: &str, if_none_match: Option<&str>) -> TestResponse {
    let mut request = Request::builder().method(Method::GET).uri(path);
    if let Some(tag) = if_none_match {
        request = request.header(header::IF_NONE_MATCH, tag);
    }
    app.send(request.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn the_page_carries_the_asset_version_and_is_revalidated() {
    let app = app();
    let page = app.get("/console", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.content_type(), "text/html; charset=utf-8");
    assert_eq!(header(&page, header::CACHE_CONTROL), "no-cache");
    assert_locked_down(&page);

    // SHA-256 over app.js then app.css, its first 12 hex digits.
    let version = &hex::encode(Sha256::digest(format!(
        "{}{}",
        asset_file("app.js"),
        asset_file("app.css")
    )))[..12];
    assert_eq!(impact_in::console::asset_version(), version);
    let html = page.body.as_str().expect("HTML, not JSON");
    assert!(!html.contains("__ASSET_VERSION__"), "{html}");
    assert_eq!(
        html,
        asset_file("index.html").replace("__ASSET_VERSION__", version)
    );
    if asset_file("index.html").contains("__ASSET_VERSION__") {
        assert!(html.contains(&format!("?v={version}")), "{html}");
    }

    // Revalidation: the same page is a 304 without a body.
    let etag = header(&page, header::ETAG).to_owned();
    let again = get_with(&app, "/console", Some(&etag)).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(again.body, Value::Null);
    assert_eq!(header(&again, header::ETAG), etag);
    assert_locked_down(&again);
}

#[tokio::test]
async fn assets_are_immutable_with_an_etag_and_a_304() {
    let app = app();
    for (name, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
    ] {
        let path = format!(
            "/console/assets/{name}?v={}",
            impact_in::console::asset_version()
        );
        let asset = app.get(&path, None).await;
        assert_eq!(asset.status, StatusCode::OK, "{name}");
        assert_eq!(asset.content_type(), content_type);
        assert_eq!(
            header(&asset, header::CACHE_CONTROL),
            "public, max-age=31536000, immutable"
        );
        assert_locked_down(&asset);
        let file = asset_file(name);
        match &asset.body {
            Value::String(text) => assert_eq!(*text, file),
            // A file that happens to be JSON is read as such.
            json => assert_eq!(*json, serde_json::from_str::<Value>(&file).unwrap()),
        }

        let etag = header(&asset, header::ETAG).to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        for tag in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"other\", {etag}"),
            "*".into(),
        ] {
            let cached = get_with(&app, &path, Some(&tag)).await;
            assert_eq!(cached.status, StatusCode::NOT_MODIFIED, "{tag}");
            assert_eq!(cached.body, Value::Null);
            assert_eq!(header(&cached, header::ETAG), etag);
            assert_eq!(
                header(&cached, header::CACHE_CONTROL),
                "public, max-age=31536000, immutable"
            );
            assert_locked_down(&cached);
        }
        let changed = get_with(&app, &path, Some("\"something-else\"")).await;
        assert_eq!(changed.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn console_slash_redirects_to_the_page_keeping_the_query() {
    let app = app();
    let bare = app.get("/console/", None).await;
    assert_eq!(bare.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header(&bare, header::LOCATION), "/console");
    assert_locked_down(&bare);
    let query = app
        .get("/console/?provider=goodera&status=failed", None)
        .await;
    assert_eq!(query.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        header(&query, header::LOCATION),
        "/console?provider=goodera&status=failed"
    );
}

#[tokio::test]
async fn an_unknown_asset_is_the_usual_404_problem() {
    let app = app();
    for path in [
        "/console/assets/index.html",
        "/console/assets/app.js.map",
        "/console/assets/..%2Fmod.rs",
        "/console/assets/APP.JS",
    ] {
        let missing = app.get(path, None).await;
        let problem = missing.problem(StatusCode::NOT_FOUND);
        assert_eq!(problem["type"], "/problems/route-not-found", "{path}");
        assert_locked_down(&missing);
    }
    for path in [
        "/console/assets/",
        "/console/assets/a/b.js",
        "/console/other",
    ] {
        let missing = app.get(path, None).await;
        assert_eq!(
            missing.problem(StatusCode::NOT_FOUND)["type"],
            "/problems/route-not-found",
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_worker_process_serves_no_console() {
    let app = TestApp::unstarted(unreachable_pool(), config(&[("RUN_MODE", "worker")]));
    let page = app.get("/console", None).await;
    page.problem(StatusCode::NOT_FOUND);
}

/// The request counter labels console requests by route template only.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn console_requests_are_counted_by_route_template(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;
    app.get("/console/assets/app.css", None).await;
    app.get("/console/assets/nope.css", None).await;
    let metrics = app.get("/metrics", None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains(
            "impact_in_http_requests_total{method=\"GET\",route=\"/console/assets/{name}\",status=\"200\"}"
        ),
        "{text}"
    );
    assert!(!text.contains("nope.css"), "{text}");
}

// --- session --------------------------------------------------------------

#[tokio::test]
async fn session_says_who_the_caller_is() {
    let app = app();
    let (company, other) = {
        let mut two = [Uuid::new_v4(), Uuid::new_v4()];
        two.sort_unstable();
        (two[0], two[1])
    };

    let writer = app
        .get(SESSION, Some(&token(&[company, other], &[ADMIN, MANAGE])))
        .await;
    assert_eq!(writer.status, StatusCode::OK, "{}", writer.body);
    assert_eq!(
        writer.body,
        json!({
            "subject": "tester", "kind": "token", "companies": [company, other],
            "roles": ["ADMIN_CONSOLE", "MANAGE_INTEGRATIONS"], "canReplay": true,
        })
    );

    let reader = app.get(SESSION, Some(&token(&[company], &[ADMIN]))).await;
    assert_eq!(reader.status, StatusCode::OK, "{}", reader.body);
    assert_eq!(
        reader.body,
        json!({
            "subject": "tester", "kind": "token", "companies": [company],
            "roles": ["ADMIN_CONSOLE"], "canReplay": false,
        })
    );

    let ops = app.get(SESSION, Some(OPS_KEY)).await;
    assert_eq!(ops.status, StatusCode::OK, "{}", ops.body);
    assert_eq!(ops.body["kind"], "ops_key");
    assert_eq!(ops.body["companies"], Value::Null);
    assert_eq!(
        ops.body["roles"],
        json!(["ADMIN_CONSOLE", "MANAGE_INTEGRATIONS"])
    );
    assert_eq!(ops.body["canReplay"], true);
    let subject = ops.body["subject"].as_str().unwrap();
    assert!(subject.starts_with("ops-key:"), "{subject}");
    assert!(!subject.contains(OPS_KEY), "the key itself never shows");
}

#[tokio::test]
async fn session_needs_a_valid_reader() {
    let app = app();
    let company = Uuid::new_v4();
    let anonymous = app.get(SESSION, None).await;
    assert_eq!(
        anonymous.problem(StatusCode::UNAUTHORIZED)["type"],
        "/problems/missing-credentials"
    );
    let forged = app.get(SESSION, Some("not-a-token")).await;
    assert_eq!(
        forged.problem(StatusCode::UNAUTHORIZED)["type"],
        "/problems/invalid-token"
    );
    let manager_only = app.get(SESSION, Some(&token(&[company], &[MANAGE]))).await;
    assert_eq!(
        manager_only.problem(StatusCode::FORBIDDEN)["type"],
        "/problems/missing-role"
    );
}

// --- sla-daily ------------------------------------------------------------

fn at(raw: &str) -> DateTime<Utc> {
    raw.parse().unwrap()
}

/// Wednesday 2026-12-09 12:30 UTC: the default period runs from
/// 2026-11-26 00:00 (13 days before today) to now, its last half hour
/// read from the raw rows.
async fn daily_app(pool: PgPool) -> TestApp {
    let clock = Arc::new(ManualClock::new(at("2026-12-09T12:30:00Z")));
    TestApp::start_with_clock(pool, config(&[]), clock).await
}

/// A delivery created at `created`, finished as `status` (`latency_ms`
/// after its creation when a success).
async fn insert(
    pool: &PgPool,
    company: Uuid,
    provider: &str,
    status: &str,
    latency_ms: Option<i64>,
    created: &str,
) {
    sqlx::query(
        "INSERT INTO impact_deliveries
             (id, company_id, provider, delivery_id, payload, payload_hash, status,
              attempt_count, created_at, delivered_at)
         VALUES ($1, $2, $3, $4, '{}', 'seeded', $5, 1, $6,
                 $6 + $7 * interval '1 millisecond')",
    )
    .bind(Uuid::new_v4())
    .bind(company)
    .bind(provider)
    .bind(Uuid::new_v4())
    .bind(status)
    .bind(at(created))
    .bind(latency_ms)
    .execute(pool)
    .await
    .unwrap();
}

async fn success(pool: &PgPool, company: Uuid, provider: &str, latency_ms: i64, created: &str) {
    insert(
        pool,
        company,
        provider,
        "success",
        Some(latency_ms),
        created,
    )
    .await;
}

/// The fixture:
/// - just before the default period (excluded): a benevity success;
/// - 2026-11-26 00:00 (its first instant): a benevity success of 1 s;
/// - 2026-12-01: benevity successes of 1, 2, 3 and 4 s (10:00 to 10:03),
///   a failed and a pending one: 6 in all, avg 2.5 s, p95 at position
///   0.95 × 3 = 2.85, so 3 s + 0.85 × 1 s = 3,850 ms; goodera: a failure
///   and a success of 500 ms;
/// - 2026-12-08 23:30: a workday success of 60 s;
/// - 2026-12-09 12:10 (the partial hour before now): goodera, 250 ms;
///   12:40, after now (excluded);
/// - another company: a workday success on 2026-12-01.
async fn seed(pool: &PgPool, company: Uuid, other: Uuid) {
    success(
        pool,
        company,
        "benevity",
        1000,
        "2026-11-25T23:59:59.999999Z",
    )
    .await;
    success(pool, company, "benevity", 1000, "2026-11-26T00:00:00Z").await;
    for (i, latency) in [1000, 2000, 3000, 4000].into_iter().enumerate() {
        let created = format!("2026-12-01T10:0{i}:00Z");
        success(pool, company, "benevity", latency, &created).await;
    }
    insert(
        pool,
        company,
        "benevity",
        "failed",
        None,
        "2026-12-01T11:00:00Z",
    )
    .await;
    insert(
        pool,
        company,
        "benevity",
        "pending",
        None,
        "2026-12-01T23:59:59Z",
    )
    .await;
    insert(
        pool,
        company,
        "goodera",
        "failed",
        None,
        "2026-12-01T08:00:00Z",
    )
    .await;
    success(pool, company, "goodera", 500, "2026-12-01T09:00:00Z").await;
    success(pool, company, "workday", 60_000, "2026-12-08T23:30:00Z").await;
    success(pool, company, "goodera", 250, "2026-12-09T12:10:00Z").await;
    success(pool, company, "goodera", 250, "2026-12-09T12:40:00Z").await;
    success(pool, other, "workday", 100, "2026-12-01T12:00:00Z").await;
}

fn day(date: &str, platform: &str, counts: [i64; 3], avg: Option<f64>, p95: Option<f64>) -> Value {
    json!({
        "date": date, "platform": platform,
        "total": counts[0], "successful": counts[1], "failed": counts[2],
        "avgLatencyMs": avg, "p95LatencyMs": p95,
    })
}

async fn daily(app: &TestApp, bearer: &str, query: &str) -> Value {
    let response = app.get(&format!("{DAILY}?{query}"), Some(bearer)).await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "{query}: {}",
        response.body
    );
    response.body
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn sla_daily_counts_each_utc_day_per_platform(pool: PgPool) {
    let app = daily_app(pool.clone()).await;
    let (company, other) = (Uuid::new_v4(), Uuid::new_v4());
    seed(&pool, company, other).await;
    let reader = token(&[company], &[ADMIN]);

    // The default period: the last 14 UTC days up to now.
    let answer = daily(&app, &reader, "").await;
    let days = json!([
        day(
            "2026-11-26",
            "benevity",
            [1, 1, 0],
            Some(1000.0),
            Some(1000.0)
        ),
        day(
            "2026-12-01",
            "benevity",
            [6, 4, 1],
            Some(2500.0),
            Some(3850.0)
        ),
        day("2026-12-01", "goodera", [2, 1, 1], Some(500.0), Some(500.0)),
        day(
            "2026-12-08",
            "workday",
            [1, 1, 0],
            Some(60000.0),
            Some(60000.0)
        ),
        day("2026-12-09", "goodera", [1, 1, 0], Some(250.0), Some(250.0)),
    ]);
    assert_eq!(
        answer,
        json!({
            "period": {"start": "2026-11-26T00:00:00Z", "end": "2026-12-09T12:30:00Z"},
            "days": days,
        })
    );
    // companyId names the same company.
    let named = daily(&app, &reader, &format!("companyId={company}")).await;
    assert_eq!(named, answer);

    // A plain endDate includes its day; days without deliveries are left out.
    let first = daily(&app, &reader, "startDate=2026-12-01&endDate=2026-12-01").await;
    assert_eq!(
        first,
        json!({
            "period": {"start": "2026-12-01T00:00:00Z", "end": "2026-12-02T00:00:00Z"},
            "days": [days[1], days[2]],
        })
    );

    // Inside one hour, from the raw rows alone: the 2, 3 and 4 s
    // successes, avg 3 s, p95 at 0.95 × 2 = 1.9: 3 s + 0.9 × 1 s.
    let minutes = daily(
        &app,
        &reader,
        "startDate=2026-12-01T10:01:00Z&endDate=2026-12-01T10:03:30Z",
    )
    .await;
    assert_eq!(
        minutes["days"],
        json!([day(
            "2026-12-01",
            "benevity",
            [3, 3, 0],
            Some(3000.0),
            Some(3900.0)
        )])
    );

    // An ops key without companyId: every company's, ordered by platform.
    let all = daily(&app, OPS_KEY, "startDate=2026-12-01&endDate=2026-12-01").await;
    assert_eq!(
        all["days"],
        json!([
            days[1],
            days[2],
            day("2026-12-01", "workday", [1, 1, 0], Some(100.0), Some(100.0)),
        ])
    );

    // Nothing at all: an empty list.
    let empty = daily(&app, &reader, "startDate=2026-06-01&endDate=2026-06-30").await;
    assert_eq!(empty["days"], json!([]));
}

/// Above 2,000 successes in the answer the p95 comes from the rollup's
/// histogram: within a bucket's width (4.57 %) of the exact value; the
/// average stays exact.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn sla_daily_estimates_the_p95_of_many_successes(pool: PgPool) {
    let app = daily_app(pool.clone()).await;
    let company = Uuid::new_v4();
    // 2,100 benevity successes on 2026-12-02, the i-th taking 1000 + i ms
    // (i from 1): exact p95 at position 0.95 × 2,099 = 1,994.05 of the
    // sorted 1,001 … 3,100, so 2,995 + 0.05 = 2,995.05 ms; avg 2,050.5 ms.
    sqlx::query(
        "INSERT INTO impact_deliveries
             (id, company_id, provider, delivery_id, payload, payload_hash, status,
              attempt_count, created_at, delivered_at)
         SELECT gen_random_uuid(), $1, 'benevity', gen_random_uuid(), '{}', 'seeded',
                'success', 1, created, created + (1000 + i) * interval '1 millisecond'
         FROM generate_series(1, 2100) AS i,
              LATERAL (SELECT $2 + i * interval '1 second' AS created) AS c",
    )
    .bind(company)
    .bind(at("2026-12-02T00:00:00Z"))
    .execute(&pool)
    .await
    .unwrap();
    success(&pool, company, "goodera", 777, "2026-12-03T10:00:00Z").await;

    let answer = daily(&app, &token(&[company], &[ADMIN]), "").await;
    let days = answer["days"].as_array().unwrap();
    assert_eq!(days.len(), 2, "{answer}");
    let many = &days[0];
    assert_eq!(many["date"], "2026-12-02");
    assert_eq!(many["total"], 2100);
    assert_eq!(many["avgLatencyMs"], 2050.5);
    let p95 = many["p95LatencyMs"].as_f64().unwrap();
    assert!(
        (p95 - 2995.05).abs() <= 2995.05 * 0.0457,
        "p95 {p95} is not within a bucket of 2,995.05"
    );
    // One success alone: also from its bucket, within its width.
    let one = days[1]["p95LatencyMs"].as_f64().unwrap();
    assert!((one - 777.0).abs() <= 777.0 * 0.0457, "{one}");
    assert_eq!(days[1]["avgLatencyMs"], 777.0);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn sla_daily_is_scoped_and_checks_its_period(pool: PgPool) {
    let app = daily_app(pool.clone()).await;
    let (company, other) = (Uuid::new_v4(), Uuid::new_v4());
    seed(&pool, company, other).await;
    let reader = token(&[company], &[ADMIN]);

    // Another company's figures: 403, not an empty answer.
    let foreign = app
        .get(&format!("{DAILY}?companyId={other}"), Some(&reader))
        .await;
    assert_eq!(
        foreign.problem(StatusCode::FORBIDDEN)["type"],
        "/problems/company-not-allowed"
    );
    let anonymous = app.get(DAILY, None).await;
    anonymous.problem(StatusCode::UNAUTHORIZED);
    let manager_only = app.get(DAILY, Some(&token(&[company], &[MANAGE]))).await;
    assert_eq!(
        manager_only.problem(StatusCode::FORBIDDEN)["type"],
        "/problems/missing-role"
    );

    // Parameters that do not parse: 400 naming each.
    let garbled = app
        .get(
            &format!("{DAILY}?startDate=yesterday&companyId=nope"),
            Some(&reader),
        )
        .await;
    assert_eq!(
        garbled.problem(StatusCode::BAD_REQUEST)["type"],
        "/problems/invalid-query"
    );
    let mut fields = garbled.error_fields();
    fields.sort();
    assert_eq!(fields, ["companyId", "startDate"]);

    // Periods that do not make sense: 422 naming the bound sent.
    for (query, field) in [
        // 92 days and a second.
        (
            "startDate=2026-09-01T00:00:00Z&endDate=2026-12-02T00:00:01Z",
            "endDate",
        ),
        ("startDate=2026-01-01&endDate=2026-12-31", "endDate"),
        // A start far back, the end defaulting to now.
        ("startDate=2026-08-01", "startDate"),
        // Inverted, or empty.
        ("startDate=2026-12-05&endDate=2026-12-01", "endDate"),
        (
            "startDate=2026-12-01T00:00:00Z&endDate=2026-12-01T00:00:00Z",
            "endDate",
        ),
        // Past now, the end defaulting to now.
        ("startDate=2026-12-10", "startDate"),
        // Before the default start.
        ("endDate=2026-11-01", "endDate"),
    ] {
        let refused = app.get(&format!("{DAILY}?{query}"), Some(&reader)).await;
        assert_eq!(
            refused.problem(StatusCode::UNPROCESSABLE_ENTITY)["type"],
            "/problems/validation",
            "{query}"
        );
        assert_eq!(refused.error_fields(), [field], "{query}");
    }
    let too_long = app
        .get(
            &format!("{DAILY}?startDate=2026-01-01&endDate=2026-12-31"),
            Some(&reader),
        )
        .await;
    assert_eq!(
        too_long.body["errors"][0]["message"],
        "the period must be at most 92 days long"
    );

    // Exactly 92 days is accepted.
    let quarter = daily(
        &app,
        &reader,
        "startDate=2026-09-01T00:00:00Z&endDate=2026-12-02T00:00:00Z",
    )
    .await;
    assert_eq!(
        quarter["period"],
        json!({"start": "2026-09-01T00:00:00Z", "end": "2026-12-02T00:00:00Z"})
    );
    let end = at("2026-12-02T00:00:00Z");
    assert_eq!(end - at("2026-09-01T00:00:00Z"), Duration::days(92));
    // With the benevity success just before the default period.
    assert_eq!(quarter["days"].as_array().unwrap().len(), 4);
    assert_eq!(quarter["days"][0]["date"], "2026-11-25");
}
