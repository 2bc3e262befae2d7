//! The delivery log routes: create, list with filters and pages, show.

mod common;

use axum::http::{StatusCode, header};
use common::{ADMIN, MANAGE, TestApp, config, token};
use serde_json::{Value, json};
use sqlx::PgPool;
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
    let payload = common::report(company);

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
    // The single-delivery view is the delivery plus its (no) attempts.
    let mut shown = by_id.body.clone();
    assert_eq!(shown["attempts"], json!([]));
    shown.as_object_mut().unwrap().remove("attempts");
    assert_eq!(shown, created.body);
    let delivery_id = created.body["deliveryId"].as_str().unwrap();
    let by_delivery_id = app
        .get(&format!("{LIST}/{delivery_id}"), Some(&writer))
        .await;
    assert_eq!(by_delivery_id.body["id"], id);

    app.get(&format!("{LIST}/not-a-uuid"), Some(&writer))
        .await
        .problem(StatusCode::NOT_FOUND);
    app.get(&format!("{LIST}/{}", Uuid::new_v4()), Some(&writer))
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_repeated_delivery_id_is_answered_once(pool: PgPool) {
    let app = TestApp::start(pool.clone(), config(&[])).await;
    let company = Uuid::new_v4();
    let writer = token(&[company], &[ADMIN, MANAGE]);
    let delivery_id = Uuid::new_v4();
    let body = json!({ "companyId": company, "provider": "benevity", "deliveryId": delivery_id, "payload": common::report(company) });

    let first = app.post(LIST, Some(&writer), body.clone()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(first.body["deliveryId"], json!(delivery_id));
    let again = app.post(LIST, Some(&writer), body.clone()).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["id"], first.body["id"]);

    let mut changed = body.clone();
    changed["payload"]["volunteerHours"] = json!(2);
    app.post(LIST, Some(&writer), changed)
        .await
        .problem(StatusCode::CONFLICT);

    // Racing identical requests create one row.
    let racer_id = Uuid::new_v4();
    let racer = json!({ "companyId": company, "provider": "workday", "deliveryId": racer_id, "payload": common::report(company) });
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
        ("startDate=2026-03-01&endDate=2026-02-01", "endDate"),
        ("provider=salesforce", "provider"),
        ("companyId=42", "companyId"),
    ] {
        let response = app.get(&query(q), Some(&reader)).await;
        response.problem(StatusCode::BAD_REQUEST);
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
        json!({ "data": [], "pagination": { "page": 1, "limit": 20, "total": 0, "totalPages": 0 } })
    );
}
