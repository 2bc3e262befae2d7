//! The delivery log routes: create, list with filters, pages and cursors,
//! show, and retry-all-failed's `since`.

use std::time::Duration;

use crate::common::{ADMIN, MANAGE, TestApp, config, token};
use axum::http::{StatusCode, header};
use impact_in::delivery::worker;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const LIST: &str = "/v1/impact-in/deliveries";

async fn seed(
    pool: &PgPool,
    company: Uuid,
    provider: &str,
    status: &str,
    created_at: &str,
) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO impact_deliveries
             (id, company_id, provider, delivery_id, payload, payload_hash, status, created_at)
         VALUES ($1, $2, $3, $4, '{}', 'seeded', $5, $6::timestamptz)",
    )
    .bind(id)
    .bind(company)
    .bind(provider)
    .bind(Uuid::new_v4())
    .bind(status)
    .bind(created_at)
    .execute(pool)
    .await
    .unwrap();
    id
}

fn ids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn create_then_show_in_camel_case(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;
    let company = Uuid::new_v4();
    let writer = token(&[company], &[ADMIN, MANAGE]);
    let payload = crate::common::report(company);

    let created = app
        .post(
            LIST,
            Some(&writer),
            json!({ "companyId": company, "provider": "goodera", "payload": payload }),
        )
        .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap();
    assert_eq!(
        created.headers[header::LOCATION].to_str().unwrap(),
        format!("{LIST}/{id}")
    );
    assert_eq!(created.body["status"], "pending");
    assert_eq!(created.body["attemptCount"], 0);
    assert_eq!(created.body["companyId"], json!(company));
    assert_eq!(created.body["payload"], payload);

    let by_id = app.get(&format!("{LIST}/{id}"), Some(&writer)).await;
    assert_eq!(by_id.status, StatusCode::OK);
    // The single-delivery view is the delivery plus its (no) attempts and
    // (no) webhook events.
    let mut shown = by_id.body.clone();
    for list in ["attempts", "events"] {
        assert_eq!(shown[list], json!([]), "{list}");
        shown.as_object_mut().unwrap().remove(list);
    }
    assert_eq!(shown, created.body);
    let delivery_id = created.body["deliveryId"].as_str().unwrap();
    let by_delivery_id = app
        .get(&format!("{LIST}/{delivery_id}"), Some(&writer))
        .await;
    assert_eq!(by_delivery_id.body["id"], id);

    for unknown in ["not-a-uuid".to_owned(), Uuid::new_v4().to_string()] {
        let response = app.get(&format!("{LIST}/{unknown}"), Some(&writer)).await;
        assert_eq!(
            response.problem(StatusCode::NOT_FOUND)["type"],
            "/problems/delivery-not-found"
        );
    }
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_repeated_delivery_id_is_answered_once(pool: PgPool) {
    let app = TestApp::start(pool.clone(), config(&[])).await;
    let company = Uuid::new_v4();
    let writer = token(&[company], &[ADMIN, MANAGE]);
    let delivery_id = Uuid::new_v4();
    let body = json!({ "companyId": company, "provider": "benevity", "deliveryId": delivery_id, "payload": crate::common::report(company) });

    let first = app.post(LIST, Some(&writer), body.clone()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(first.body["deliveryId"], json!(delivery_id));
    let again = app.post(LIST, Some(&writer), body.clone()).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["id"], first.body["id"]);

    let mut changed = body.clone();
    changed["payload"]["volunteerHours"] = json!(2);
    assert_eq!(
        app.post(LIST, Some(&writer), changed)
            .await
            .problem(StatusCode::CONFLICT)["type"],
        "/problems/idempotency-key-reused"
    );

    // Racing identical requests create one row.
    let racer_id = Uuid::new_v4();
    let racer = json!({ "companyId": company, "provider": "workday", "deliveryId": racer_id, "payload": crate::common::report(company) });
    let responses = futures_join(&app, &writer, racer, 8).await;
    let accepted = responses
        .iter()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    let repeated = responses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!((accepted, repeated), (1, 7), "{responses:?}");
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM impact_deliveries WHERE delivery_id = $1")
            .bind(racer_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(rows, 1);
}

async fn futures_join(app: &TestApp, bearer: &str, body: Value, n: usize) -> Vec<StatusCode> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let router = app.router.clone();
        let (bearer, body) = (bearer.to_owned(), body.clone());
        tasks.spawn(async move {
            use tower::ServiceExt;
            let request = axum::http::Request::post(LIST)
                .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap();
            router.oneshot(request).await.unwrap().status()
        });
    }
    tasks.join_all().await
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn list_filters_and_pages_newest_first(pool: PgPool) {
    let app = TestApp::start(pool.clone(), config(&[])).await;
    let company = Uuid::new_v4();
    let reader = token(&[company], &[ADMIN]);
    let jan = seed(
        &pool,
        company,
        "benevity",
        "success",
        "2026-01-15T10:00:00Z",
    )
    .await;
    let feb = seed(&pool, company, "goodera", "failed", "2026-02-15T10:00:00Z").await;
    let mar = seed(&pool, company, "benevity", "failed", "2026-03-31T23:30:00Z").await;

    let all = app.get(LIST, Some(&reader)).await;
    assert_eq!(
        ids(&all.body),
        vec![mar.to_string(), feb.to_string(), jan.to_string()]
    );
    assert_eq!(
        all.body["pagination"],
        json!({ "page": 1, "limit": 20, "total": 3, "totalPages": 1 })
    );

    let query = |q: &str| format!("{LIST}?{q}");
    let benevity = app.get(&query("provider=benevity"), Some(&reader)).await;
    assert_eq!(ids(&benevity.body), vec![mar.to_string(), jan.to_string()]);
    let failed = app
        .get(&query("status=failed&provider=goodera"), Some(&reader))
        .await;
    assert_eq!(ids(&failed.body), vec![feb.to_string()]);
    // A date-only endDate includes that whole day.
    let q1 = app
        .get(
            &query("startDate=2026-02-01&endDate=2026-03-31"),
            Some(&reader),
        )
        .await;
    assert_eq!(ids(&q1.body), vec![mar.to_string(), feb.to_string()]);
    let exact = app
        .get(
            &query("startDate=2026-01-15T10:00:00Z&endDate=2026-01-15T10:00:00Z"),
            Some(&reader),
        )
        .await;
    assert_eq!(ids(&exact.body), vec![jan.to_string()]);
    // Each bound is a filter of its own: an inverted range matches nothing
    // (it was a 400 that no OpenAPI schema can state).
    let inverted = app
        .get(
            &query("startDate=2026-03-01&endDate=2026-02-01"),
            Some(&reader),
        )
        .await;
    assert_eq!(inverted.status, StatusCode::OK, "{}", inverted.body);
    assert!(ids(&inverted.body).is_empty());
    assert_eq!(inverted.body["pagination"]["total"], 0);

    let page2 = app.get(&query("limit=2&page=2"), Some(&reader)).await;
    assert_eq!(ids(&page2.body), vec![jan.to_string()]);
    assert_eq!(
        page2.body["pagination"],
        json!({ "page": 2, "limit": 2, "total": 3, "totalPages": 2 })
    );
    let beyond = app.get(&query("limit=2&page=3"), Some(&reader)).await;
    assert_eq!(beyond.status, StatusCode::OK);
    assert!(ids(&beyond.body).is_empty());
    assert_eq!(beyond.body["pagination"]["total"], 3);

    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("page=0", "page"),
        ("startDate=yesterday", "startDate"),
        ("endDate=2026-13-01", "endDate"),
        // Past chrono's range (a panic once) and past Postgres's (a 500).
        ("endDate=%2B262142-12-31", "endDate"),
        ("startDate=-200000-01-01", "startDate"),
        ("startDate=0000-12-31T23:59:59Z", "startDate"),
        // Not the `date` of the spec, though chrono's %m would read it.
        ("startDate=2026-1-15", "startDate"),
        ("provider=salesforce", "provider"),
        ("companyId=42", "companyId"),
        // An empty value is not the parameter left out (schemathesis found
        // `companyId=` answered as if absent).
        ("companyId=", "companyId"),
        ("provider=", "provider"),
        ("status=%20", "status"),
        ("startDate=", "startDate"),
        ("limit=", "limit"),
        ("page=", "page"),
        ("cursor=", "cursor"),
    ] {
        let response = app.get(&query(q), Some(&reader)).await;
        assert_eq!(
            response.problem(StatusCode::BAD_REQUEST)["type"],
            "/problems/invalid-query"
        );
        assert_eq!(response.error_fields(), vec![field], "{q}");
    }
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn an_empty_log_is_an_empty_first_page(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;
    let reader = token(&[Uuid::new_v4()], &[ADMIN]);
    let empty = app.get(LIST, Some(&reader)).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(
        empty.body,
        json!({ "data": [], "pagination": { "page": 1, "limit": 20, "total": 0, "totalPages": 0 }, "nextCursor": null })
    );
}

/// The ids of every page from the first (by page number) to the one whose
/// `nextCursor` is null, following cursors, and how many pages that took.
async fn walk(app: &TestApp, bearer: &str, query: &str) -> (Vec<String>, usize) {
    let first = app.get(&format!("{LIST}?{query}"), Some(bearer)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["pagination"]["page"], 1);
    let mut seen = ids(&first.body);
    let mut pages = 1;
    let mut next = first.body["nextCursor"].clone();
    while let Some(cursor) = next.as_str() {
        let page = app
            .get(&format!("{LIST}?{query}&cursor={cursor}"), Some(bearer))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body["pagination"]["page"].is_null(), "{}", page.body);
        seen.extend(ids(&page.body));
        pages += 1;
        assert!(pages <= 100, "the cursors do not end");
        next = page.body["nextCursor"].clone();
    }
    (seen, pages)
}

/// 13 rows for `company` in threes sharing a `created_at`, so that page
/// boundaries fall between rows only `id` orders.
async fn seed_ties(pool: &PgPool, company: Uuid) {
    for i in 0..13 {
        let provider = ["benevity", "goodera", "workday"][i % 3];
        let status = ["success", "failed"][i % 2];
        let day = 1 + i / 3;
        seed(
            pool,
            company,
            provider,
            status,
            &format!("2026-01-{day:02}T09:00:00Z"),
        )
        .await;
    }
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn cursors_walk_every_row_once_in_page_order(pool: PgPool) {
    let app = TestApp::start(pool.clone(), config(&[])).await;
    let company = Uuid::new_v4();
    let reader = token(&[company], &[ADMIN]);
    seed_ties(&pool, company).await;
    // Another company's rows, interleaved in time, stay out.
    seed(
        &pool,
        Uuid::new_v4(),
        "benevity",
        "success",
        "2026-01-02T09:00:00Z",
    )
    .await;

    let everything = ids(&app
        .get(&format!("{LIST}?limit=100"), Some(&reader))
        .await
        .body);
    assert_eq!(everything.len(), 13);
    for (limit, pages) in [(4, 4), (1, 13), (13, 1), (12, 2), (100, 1)] {
        let (walked, taken) = walk(&app, &reader, &format!("limit={limit}")).await;
        assert_eq!(walked, everything, "limit={limit}");
        assert_eq!(taken, pages, "limit={limit}: no empty page after the last");
    }

    // A cursor page has no page number and is not counted.
    let first = app.get(&format!("{LIST}?limit=4"), Some(&reader)).await;
    let cursor = first.body["nextCursor"].as_str().unwrap();
    let second = app
        .get(&format!("{LIST}?limit=4&cursor={cursor}"), Some(&reader))
        .await;
    assert_eq!(
        second.body["pagination"],
        json!({ "page": null, "limit": 4, "total": null, "totalPages": null })
    );
    assert_eq!(ids(&second.body), everything[4..8]);

    // A numbered page's cursor continues where the next number would.
    let page2 = app
        .get(&format!("{LIST}?limit=4&page=2"), Some(&reader))
        .await;
    let page3 = app
        .get(&format!("{LIST}?limit=4&page=3"), Some(&reader))
        .await;
    let after2 = page2.body["nextCursor"].as_str().unwrap();
    let by_cursor = app
        .get(&format!("{LIST}?limit=4&cursor={after2}"), Some(&reader))
        .await;
    assert_eq!(ids(&by_cursor.body), ids(&page3.body));
    for last in ["limit=4&page=4", "limit=4&page=5"] {
        let page = app.get(&format!("{LIST}?{last}"), Some(&reader)).await;
        assert!(page.body["nextCursor"].is_null(), "{last}: {}", page.body);
    }
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn cursors_apply_the_filters_sent_with_them(pool: PgPool) {
    let app = TestApp::start(pool.clone(), config(&[])).await;
    let company = Uuid::new_v4();
    let reader = token(&[company], &[ADMIN]);
    seed_ties(&pool, company).await;

    for filter in [
        "provider=goodera",
        "status=failed",
        "provider=benevity&status=success",
        "startDate=2026-01-02&endDate=2026-01-04",
        &format!("companyId={company}&provider=workday"),
    ] {
        let everything = ids(&app
            .get(&format!("{LIST}?limit=100&{filter}"), Some(&reader))
            .await
            .body);
        assert!(!everything.is_empty(), "{filter}");
        let (walked, _) = walk(&app, &reader, &format!("limit=2&{filter}")).await;
        assert_eq!(walked, everything, "{filter}");
    }

    // The cursor holds a position only: a filter added later applies to the
    // rows after it.
    let first = app.get(&format!("{LIST}?limit=5"), Some(&reader)).await;
    let cursor = first.body["nextCursor"].as_str().unwrap();
    let failed = app
        .get(
            &format!("{LIST}?status=failed&cursor={cursor}"),
            Some(&reader),
        )
        .await;
    let all_failed = ids(&app
        .get(&format!("{LIST}?status=failed"), Some(&reader))
        .await
        .body);
    let first_five = ids(&first.body);
    let expected: Vec<String> = all_failed
        .into_iter()
        .filter(|id| !first_five.contains(id))
        .collect();
    assert_eq!(ids(&failed.body), expected);
    assert_eq!(failed.body["pagination"]["total"], Value::Null);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_malformed_cursor_is_400_and_page_counts_from_a_cursor(pool: PgPool) {
    let app = TestApp::start(pool.clone(), config(&[])).await;
    let company = Uuid::new_v4();
    let reader = token(&[company], &[ADMIN]);
    seed_ties(&pool, company).await;
    let everything = ids(&app
        .get(&format!("{LIST}?limit=100"), Some(&reader))
        .await
        .body);
    let first = app.get(&format!("{LIST}?limit=2"), Some(&reader)).await;
    let valid = first.body["nextCursor"].as_str().unwrap().to_owned();
    // The shape the spec states (`cursor::PATTERN`).
    let (micros, id) = valid.split_once('_').unwrap();
    assert!(micros.bytes().all(|b| b.is_ascii_digit()), "{valid}");
    assert_eq!(id.len(), 32, "{valid}");

    for cursor in [
        "garbage!".to_owned(),
        format!("{micros}_{}", id.to_uppercase()),
        format!("{micros}_{}", Uuid::new_v4()),
        format!("{micros}0_{id}"),
        valid[..valid.len() - 2].to_owned(),
        // The base64url form of earlier releases: refused, a client starts over.
        "MjAyNi0wMS0wMVQwOTowMDowMFp8MDE5M2ExYzItOWIxMC03ZjIxLThkM2MtNGU1ZjZhN2I4Yzlk".to_owned(),
    ] {
        let response = app
            .get(&format!("{LIST}?cursor={cursor}"), Some(&reader))
            .await;
        assert_eq!(
            response.problem(StatusCode::BAD_REQUEST)["type"],
            "/problems/invalid-query"
        );
        assert_eq!(response.error_fields(), vec!["cursor"], "{cursor}");
    }

    // With a cursor, page counts from it (both in the spec, so both taken
    // together: it used to be a 400 the spec could not state).
    for (page, rows) in [(1, 2..4), (2, 4..6), (6, 12..13)] {
        let response = app
            .get(
                &format!("{LIST}?limit=2&page={page}&cursor={valid}"),
                Some(&reader),
            )
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        assert_eq!(ids(&response.body), everything[rows], "page {page}");
        assert_eq!(
            response.body["pagination"],
            json!({ "page": page, "limit": 2, "total": null, "totalPages": null })
        );
    }

    // Any well-formed position is accepted: it reveals nothing by itself.
    let on_3_january = "2026-01-03T09:00:00Z"
        .parse::<chrono::DateTime<chrono::Utc>>()
        .unwrap()
        .timestamp_micros();
    let forged = format!("{on_3_january}_{}", Uuid::nil().simple());
    let response = app
        .get(&format!("{LIST}?cursor={forged}"), Some(&reader))
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(ids(&response.body).len(), 6, "the rows of 1 and 2 January");
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_cursor_never_crosses_into_another_company(pool: PgPool) {
    let app = TestApp::start(pool.clone(), config(&[])).await;
    let (ours, theirs) = (Uuid::new_v4(), Uuid::new_v4());
    let (reader, other) = (token(&[ours], &[ADMIN]), token(&[theirs], &[ADMIN]));
    seed_ties(&pool, ours).await;
    for day in 3..=5 {
        let at = format!("2026-01-{day:02}T12:00:00Z");
        seed(&pool, theirs, "benevity", "success", &at).await;
    }
    let (our_ids, _) = walk(&app, &reader, "limit=100").await;

    // Their cursor (after their 4 January row), in our hands, is only a
    // position among our own rows: all but our 5 January one.
    let their_page = app.get(&format!("{LIST}?limit=2"), Some(&other)).await;
    let their_cursor = their_page.body["nextCursor"].as_str().unwrap();
    let with_their_cursor = app
        .get(
            &format!("{LIST}?limit=100&cursor={their_cursor}"),
            Some(&reader),
        )
        .await;
    assert_eq!(with_their_cursor.status, StatusCode::OK);
    assert_eq!(ids(&with_their_cursor.body), our_ids[1..]);
    assert_eq!(with_their_cursor.body["nextCursor"], Value::Null);

    // Naming their company is refused with or without a cursor.
    let response = app
        .get(
            &format!("{LIST}?companyId={theirs}&cursor={their_cursor}"),
            Some(&reader),
        )
        .await;
    assert_eq!(
        response.problem(StatusCode::FORBIDDEN)["type"],
        "/problems/company-not-allowed"
    );
}

/// Reports no provider can take are refused at the door: text XML 1.0
/// cannot carry (Workday's SOAP envelope would not be well-formed) and
/// period years that do not fit `YYYY`.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn undeliverable_reports_are_422s_naming_the_field(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;
    let company = Uuid::new_v4();
    let writer = token(&[company], &[ADMIN, MANAGE]);

    let mut report = crate::common::report(company);
    report["period"] = json!({ "start": "-0001-01-01", "end": "+100000-01-01" });
    report["outcomeScores"] = json!({ "lang\u{FFFF}": 0.5 });
    report["programmes"][0]["name"] = json!("R&D \u{FFFE}");
    report["programmes"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "bell\u{7}", "volunteerHours": 1.0, "participantCount": 1 }));
    let response = app
        .post(
            LIST,
            Some(&writer),
            json!({ "companyId": company, "provider": "workday", "payload": report }),
        )
        .await;
    assert_eq!(
        response.problem(StatusCode::UNPROCESSABLE_ENTITY)["type"],
        "/problems/validation"
    );
    assert_eq!(
        response.error_fields(),
        vec![
            "payload.period.start",
            "payload.period.end",
            "payload.outcomeScores.lang\\u{ffff}",
            "payload.programmes[0].name",
            "payload.programmes[1].name",
        ]
    );

    // Four-digit years, and text XML allows, stay accepted.
    let mut edge = crate::common::report(company);
    edge["period"] = json!({ "start": "0001-01-01", "end": "9999-12-31" });
    edge["programmes"][0]["name"] = json!("Tab\tand\nbreaks, \u{FFFD} and \u{10FFFF}");
    let response = app
        .post(
            LIST,
            Some(&writer),
            json!({ "companyId": company, "provider": "workday", "payload": edge }),
        )
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.body);
}

/// JSON Schema's `integer` (the spec's type for counts and amounts) admits
/// `5.0`, so the service takes it as 5 (schemathesis found it refused); a
/// fraction, a negative count or an amount past i64 is still a 422 naming
/// the field.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn counts_and_amounts_may_be_integral_floats(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;
    let company = Uuid::new_v4();
    let writer = token(&[company], &[ADMIN, MANAGE]);
    let create = |report: Value| {
        app.post(
            LIST,
            Some(&writer),
            json!({ "companyId": company, "provider": "benevity", "payload": report }),
        )
    };

    let mut report = crate::common::report(company);
    report["volunteerCount"] = json!(84.0);
    report["participantCount"] = json!(3.12e2);
    report["sessionCount"] = json!(0.0);
    report["donations"][0]["amountMinor"] = json!(1_250_000.0);
    report["programmes"][0]["participantCount"] = json!(120.0);
    let response = create(report).await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.body);
    // Stored and shown as the integers they are.
    let payload = &response.body["payload"];
    assert_eq!(payload["volunteerCount"], json!(84));
    assert_eq!(payload["participantCount"], json!(312));
    assert_eq!(payload["sessionCount"], json!(0));
    assert_eq!(payload["donations"][0]["amountMinor"], json!(1_250_000));
    assert_eq!(payload["programmes"][0]["participantCount"], json!(120));

    for (field, value, path) in [
        ("volunteerCount", json!(84.5), "payload.volunteerCount"),
        ("sessionCount", json!(-1.0), "payload.sessionCount"),
        (
            "participantCount",
            json!(4_294_967_296.0),
            "payload.participantCount",
        ),
        ("sessionCount", json!(1e300), "payload.sessionCount"),
    ] {
        let mut report = crate::common::report(company);
        report[field] = value.clone();
        let response = create(report).await;
        response.problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.error_fields(), vec![path], "{field}: {value}");
    }
    let mut report = crate::common::report(company);
    report["donations"][0]["amountMinor"] = json!(1e19);
    let response = create(report).await;
    response.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        response.error_fields(),
        vec!["payload.donations[0].amountMinor"]
    );
}

/// `Idempotency-Key` is what the spec's pattern says: 1 to 255 printable
/// ASCII characters, spaces inside only (a tab inside was taken, though the
/// spec said nothing of it).
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn an_idempotency_key_is_printable_ascii(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;
    let company = Uuid::new_v4();
    let writer = token(&[company], &[ADMIN, MANAGE]);
    let post = |key: &'static str| {
        let body = json!({
            "companyId": company,
            "provider": "benevity",
            "payload": crate::common::report(company),
        });
        let request = axum::http::Request::post(LIST)
            .header(header::AUTHORIZATION, format!("Bearer {writer}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", key)
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        app.send(request)
    };
    let accepted = post("order 42 / retry ~1").await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    for key in ["tab\tinside", "   "] {
        let response = post(key).await;
        assert_eq!(
            response.problem(StatusCode::BAD_REQUEST)["type"],
            "/problems/invalid-idempotency-key",
            "{key:?}"
        );
    }
}

/// `since` takes what the list's `startDate` takes: a plain date (its
/// first instant) as well as a timestamp, inside the same range.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn retry_all_failed_takes_the_dates_the_list_takes(pool: PgPool) {
    let app = TestApp::start(pool.clone(), config(&[])).await;
    let company = Uuid::new_v4();
    let writer = token(&[company], &[ADMIN, MANAGE]);
    let failed = seed(&pool, company, "benevity", "failed", "2026-02-27T00:00:00Z").await;
    sqlx::query("UPDATE impact_deliveries SET updated_at = '2026-03-01T08:00:00Z' WHERE id = $1")
        .bind(failed)
        .execute(&pool)
        .await
        .unwrap();
    let path = format!("{LIST}/retry-all-failed");
    let retry = |since: &str| {
        app.post(
            &path,
            Some(&writer),
            json!({ "companyId": company, "since": since }),
        )
    };

    for (since, queued) in [
        ("2026-03-02", 0),
        ("2026-03-01T08:00:00.000001Z", 0),
        ("2026-03-01", 1),
        // The year range is on the date as written (JSON Schema's
        // `date-time`), though this instant is in year 0 in UTC; queued
        // already.
        ("0001-01-01T00:00:00+01:00", 0),
    ] {
        let response = retry(since).await;
        assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.body);
        assert_eq!(response.body["queued"], queued, "{since}");
    }

    for since in [
        "-200000-01-01T00:00:00Z",
        "+262142-12-31",
        "2026-02-30",
        "2026-3-01",
        "yesterday",
    ] {
        let response = retry(since).await;
        assert_eq!(
            response.problem(StatusCode::UNPROCESSABLE_ENTITY)["type"],
            "/problems/validation"
        );
        assert_eq!(response.error_fields(), vec!["since"], "{since}");
    }
}

/// An attempt that got no answer (here: a provider with no configuration,
/// never contacted) shows `httpStatus: null`, as docs/api.md says; the
/// member is there, not left out.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn an_attempt_without_an_answer_shows_http_status_null(pool: PgPool) {
    let app = TestApp::start(pool, config(&[("DELIVERY_POLL_INTERVAL_MS", "20")])).await;
    let company = Uuid::new_v4();
    let writer = token(&[company], &[ADMIN, MANAGE]);
    let created = app
        .post(
            LIST,
            Some(&writer),
            json!({ "companyId": company, "provider": "benevity", "payload": crate::common::report(company) }),
        )
        .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let shown = format!("{LIST}/{}", created.body["id"].as_str().unwrap());

    let shutdown = CancellationToken::new();
    let workers = tokio::spawn(worker::run(app.state.delivery.clone(), shutdown.clone()));
    // Waits for the workers, not for time: they fail it on the first attempt.
    let delivery = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let delivery = app.get(&shown, Some(&writer)).await.body;
            if delivery["status"] == "failed" {
                return delivery;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the workers fail a delivery to an unconfigured provider");
    shutdown.cancel();
    workers.await.unwrap();

    let attempt = &delivery["attempts"][0];
    assert_eq!(attempt["errorClass"], "permanent", "{delivery}");
    assert_eq!(
        attempt.as_object().unwrap().get("httpStatus"),
        Some(&Value::Null),
        "{delivery}"
    );
}
