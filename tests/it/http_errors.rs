//! Every error leaves as RFC 9457 problem+json, whoever raised it.

use crate::common::{ADMIN, MANAGE, TestApp, config, token};
use axum::{
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use impact_in::http::{error::Cause, listener::Connections};
use proptest::{
    prelude::*,
    test_runner::{TestCaseError, TestRunner},
};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

const LIST: &str = "/v1/impact-in/deliveries";

fn raw_post(bearer: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(LIST)
        .header(header::AUTHORIZATION, format!("Bearer {bearer}"));
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    builder.body(body.into()).unwrap()
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn body_errors_have_their_status_and_name_the_problem(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;
    let company = Uuid::new_v4();
    let writer = token(&[company], &[ADMIN, MANAGE]);

    let malformed = app
        .send(raw_post(
            &writer,
            Some("application/json"),
            "{\n \"companyId\": ",
        ))
        .await;
    let problem = malformed.problem(StatusCode::BAD_REQUEST);
    assert_eq!(problem["type"], "/problems/malformed-json");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("line 2 column"),
        "{problem}"
    );

    let trailing = app
        .send(raw_post(&writer, Some("application/json"), "{} {}"))
        .await;
    assert_eq!(
        trailing.problem(StatusCode::BAD_REQUEST)["type"],
        "/problems/malformed-json"
    );

    for content_type in [Some("text/plain"), None] {
        let response = app.send(raw_post(&writer, content_type, "{}")).await;
        assert_eq!(
            response.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE)["type"],
            "/problems/unsupported-media-type"
        );
    }

    let oversized = format!("{{\"pad\": \"{}\"}}", "x".repeat(5000));
    let response = app
        .send(raw_post(&writer, Some("application/json"), oversized))
        .await;
    assert_eq!(
        response.problem(StatusCode::PAYLOAD_TOO_LARGE)["type"],
        "/problems/payload-too-large"
    );

    let missing = app
        .post(LIST, Some(&writer), json!({ "provider": "benevity" }))
        .await;
    assert_eq!(
        missing.problem(StatusCode::UNPROCESSABLE_ENTITY)["type"],
        "/problems/validation"
    );
    assert_eq!(missing.error_fields(), vec!["companyId"]);

    let wrong_type = app
        .post(
            LIST,
            Some(&writer),
            json!({ "companyId": "not-a-uuid", "provider": "benevity", "payload": crate::common::report(company) }),
        )
        .await;
    wrong_type.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(wrong_type.error_fields(), vec!["companyId"]);

    let unknown_provider = app
        .post(
            LIST,
            Some(&writer),
            json!({ "companyId": company, "provider": "salesforce", "payload": crate::common::report(company) }),
        )
        .await;
    assert_eq!(unknown_provider.error_fields(), vec!["provider"]);

    let not_object = app
        .post(
            LIST,
            Some(&writer),
            json!({ "companyId": company, "provider": "benevity", "payload": "report" }),
        )
        .await;
    not_object.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(not_object.error_fields(), vec!["payload"]);

    // Type errors inside the report name their path; rule violations are all
    // reported at once.
    let mut mistyped = crate::common::report(company);
    mistyped["volunteerCount"] = json!("many");
    let response = app
        .post(
            LIST,
            Some(&writer),
            json!({ "companyId": company, "provider": "benevity", "payload": mistyped }),
        )
        .await;
    assert_eq!(response.error_fields(), vec!["payload.volunteerCount"]);

    let mut broken = crate::common::report(company);
    broken["period"]["end"] = json!("2025-01-01");
    broken["outcomeScores"]["language"] = json!(1.2);
    broken["companyId"] = json!(Uuid::new_v4());
    let response = app
        .post(
            LIST,
            Some(&writer),
            json!({ "companyId": company, "provider": "benevity", "payload": broken }),
        )
        .await;
    response.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        response.error_fields(),
        vec![
            "payload.period.end",
            "payload.outcomeScores.language",
            "payload.companyId"
        ]
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn routing_errors_are_problems(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;

    let unknown = app.get("/v1/nothing-here", None).await;
    assert_eq!(
        unknown.problem(StatusCode::NOT_FOUND)["type"],
        "/problems/route-not-found"
    );

    let wrong_method = app.request(Method::DELETE, "/health", None, None).await;
    assert_eq!(
        wrong_method.problem(StatusCode::METHOD_NOT_ALLOWED)["type"],
        "/problems/method-not-allowed"
    );
    assert!(wrong_method.headers.contains_key(header::ALLOW));

    let reader = token(&[Uuid::new_v4()], &[ADMIN]);
    let bad_query = app
        .get(&format!("{LIST}?limit=0&page=x&status=lost"), Some(&reader))
        .await;
    assert_eq!(
        bad_query.problem(StatusCode::BAD_REQUEST)["type"],
        "/problems/invalid-query"
    );
    let mut fields = bad_query.error_fields();
    fields.sort();
    assert_eq!(fields, vec!["limit", "page", "status"]);
}

#[tokio::test]
async fn an_unavailable_database_is_a_503_without_internals() {
    let app = TestApp::unstarted(crate::common::unreachable_pool(), config(&[]));
    let reader = token(&[Uuid::new_v4()], &[ADMIN]);
    let response = app.get(LIST, Some(&reader)).await;
    let problem = response.problem(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem["type"], "/problems/unavailable");
    assert_eq!(
        problem["detail"],
        "the database is unavailable; retry later"
    );
    assert!(!problem.to_string().contains("127.0.0.1"));
    assert!(response.headers.contains_key("x-request-id"));
}

/// A database that accepts connections and never answers: the request
/// timeout, not the database, ends the request. The paused clock makes the
/// 2 s timeout pass without waiting for it.
#[tokio::test(start_paused = true)]
async fn a_request_over_the_timeout_is_a_503_problem() {
    let address = crate::common::black_hole().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(60))
        .connect_lazy(&format!("postgres://postgres@{address}/x"))
        .unwrap();
    let app = TestApp::unstarted(pool, config(&[("REQUEST_TIMEOUT_SECS", "2")]));
    let reader = token(&[Uuid::new_v4()], &[ADMIN]);

    let response = app.get(LIST, Some(&reader)).await;
    let problem = response.problem(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem["type"], "/problems/unavailable");
    assert_eq!(problem["detail"], "the request did not complete in time");
    assert!(response.headers.contains_key("x-request-id"));
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn request_ids_are_generated_or_propagated(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;
    let generated = app.get("/health/liveness", None).await;
    let id = generated.headers["x-request-id"].to_str().unwrap();
    assert!(Uuid::parse_str(id).is_ok(), "{id}");

    let request = Request::builder()
        .uri("/health/liveness")
        .header("x-request-id", "trace-me-42")
        .body(Body::empty())
        .unwrap();
    let echoed = app.send(request).await;
    assert_eq!(echoed.headers["x-request-id"], "trace-me-42");
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn cors_allows_only_configured_origins(pool: PgPool) {
    let app = TestApp::start(
        pool,
        config(&[("CORS_ALLOWED_ORIGINS", "https://cockpit.example.com")]),
    )
    .await;
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri(LIST)
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .body(Body::empty())
            .unwrap()
    };
    let allowed = app.send(preflight("https://cockpit.example.com")).await;
    assert_eq!(
        allowed.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://cockpit.example.com"
    );
    let refused = app.send(preflight("https://evil.example.com")).await;
    assert!(
        !refused
            .headers
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    );
}

/// Dates as callers may send them: plain dates and RFC 3339 timestamps with
/// any sign and year (past Postgres's range, 4713 BC to 294276 AD, and
/// chrono's, ±262143), impossible months, days, times and offsets, and
/// arbitrary text.
fn date_text() -> impl Strategy<Value = String> {
    let year = prop_oneof![
        0u32..=10_000,
        10_000u32..=400_000,
        prop::sample::select(vec![
            262_142, 262_143, 294_276, 294_277, 4_713, 4_714, 9_999
        ]),
    ];
    let date = (
        prop::sample::select(vec!["", "+", "-"]),
        year,
        0u32..=13,
        0u32..=32,
    )
        .prop_map(|(sign, year, month, day)| format!("{sign}{year:04}-{month:02}-{day:02}"));
    let offset = prop_oneof![
        Just("Z".to_owned()),
        (prop::sample::select(vec!['+', '-']), 0u32..=24, 0u32..=60)
            .prop_map(|(sign, hours, minutes)| format!("{sign}{hours:02}:{minutes:02}")),
    ];
    let timestamp = (
        date.clone(),
        0u32..=24,
        0u32..=60,
        0u32..=60,
        prop::option::of(0u32..=999_999_999),
        offset,
    )
        .prop_map(|(date, h, m, s, fraction, offset)| {
            let fraction = fraction.map(|f| format!(".{f:09}")).unwrap_or_default();
            format!("{date}T{h:02}:{m:02}:{s:02}{fraction}{offset}")
        });
    // The edges of both ranges, which random years seldom hit.
    let edges = prop::sample::select(vec![
        "+262142-12-31",
        "-262143-01-01",
        "-200000-01-01",
        "-4713-11-24",
        "294276-12-31T23:59:59.999999Z",
        "0000-01-01T00:00:00+23:59",
        "9999-12-31T23:59:59.999999999-23:59",
    ])
    .prop_map(str::to_owned);
    prop_oneof![2 => date, 2 => timestamp, 1 => edges, 1 => any::<String>()]
}

/// Asserts an answer that is neither a server error nor an unnamed client
/// error: a 4xx must be problem+json naming only fields of `named`.
fn answered(
    route: &str,
    response: &crate::common::TestResponse,
    named: &[&str],
) -> Result<(), TestCaseError> {
    prop_assert!(
        !response.status.is_server_error(),
        "{route}: {} {}",
        response.status,
        response.body
    );
    if response.status.is_client_error() {
        prop_assert_eq!(
            response.content_type(),
            "application/problem+json",
            "{}",
            route
        );
        let fields = response.error_fields();
        prop_assert!(
            !fields.is_empty() && fields.iter().all(|f| named.contains(&f.as_str())),
            "{route}: {} {}",
            response.status,
            response.body
        );
    }
    Ok(())
}

/// Every date parameter of every route, with any text: an answer, never a
/// 5xx or a dropped request (a panic fails the property). Requests run on
/// the test's runtime; proptest drives them from a blocking thread.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn no_date_a_caller_sends_is_a_server_error(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;
    let runtime = tokio::runtime::Handle::current();
    let cases = tokio::task::spawn_blocking(move || {
        let company = Uuid::new_v4();
        let writer = token(&[company], &[ADMIN, MANAGE]);
        let config = ProptestConfig {
            cases: 48,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        TestRunner::new(config).run(&date_text(), |raw| {
            runtime.block_on(async {
                let encoded: String = url::form_urlencoded::byte_serialize(raw.as_bytes()).collect();
                for (path, named) in [
                    (format!("{LIST}?startDate={encoded}"), &["startDate"][..]),
                    (format!("{LIST}?endDate={encoded}"), &["endDate"]),
                    (
                        format!("/v1/impact-in/stats?startDate={encoded}&endDate={encoded}"),
                        &["startDate", "endDate"],
                    ),
                    // A period up to now, or from the default start.
                    (
                        format!("/v1/impact-in/sla-daily?startDate={encoded}"),
                        &["startDate"],
                    ),
                    (
                        format!("/v1/impact-in/sla-daily?endDate={encoded}"),
                        &["endDate"],
                    ),
                    // A cursor carries a timestamp too.
                    (
                        format!(
                            "{LIST}?cursor={}",
                            URL_SAFE_NO_PAD.encode(format!("{raw}|{}", Uuid::new_v4()))
                        ),
                        &["cursor"],
                    ),
                ] {
                    answered(&path, &app.get(&path, Some(&writer)).await, named)?;
                }

                let retry = format!("{LIST}/retry-all-failed");
                let response = app
                    .post(&retry, Some(&writer), json!({ "companyId": company, "since": raw }))
                    .await;
                answered(&retry, &response, &["since"])?;

                for (at, other) in [("start", ("end", "9999-12-31")), ("end", ("start", "0001-01-01"))] {
                    let mut report = crate::common::report(company);
                    report["period"][at] = json!(raw);
                    report["period"][other.0] = json!(other.1);
                    let response = app
                        .post(
                            LIST,
                            Some(&writer),
                            json!({ "companyId": company, "provider": "workday", "payload": report }),
                        )
                        .await;
                    answered(
                        LIST,
                        &response,
                        &["payload.period.start", "payload.period.end"],
                    )?;
                }
                Ok(())
            })
        })
    })
    .await
    .unwrap();
    if let Err(failure) = cases {
        panic!("{failure}");
    }
}

/// The service as `impact-in serve` runs it, on an ephemeral port.
async fn served(pool: PgPool) -> std::net::SocketAddr {
    let app = TestApp::start(pool, config(&[])).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(Connections::new(listener), app.router).into_future());
    address
}

/// Sends `request` over a fresh connection and reads the answer until the
/// server closes it. Writing runs on its own, and may fail: the server
/// answers a head past its limits without reading all of it.
async fn exchange(address: std::net::SocketAddr, request: Vec<u8>) -> String {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut answer = Vec::new();
    let mut chunk = [0; 4096];
    while let Ok(n) = reader.read(&mut chunk).await
        && n > 0
    {
        answer.extend_from_slice(&chunk[..n]);
    }
    drop(sending.await);
    String::from_utf8(answer).unwrap()
}

/// hyper refuses a request head past its limits itself, before the router;
/// the answer is still problem+json.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn header_limits_answer_with_a_problem_over_tcp(pool: PgPool) {
    let address = served(pool).await;

    let many: String = (0..101).map(|i| format!("x-field-{i}: 1\r\n")).collect();
    let large = format!("x-large: {}\r\n", "a".repeat(1 << 20));
    for headers in [many, large] {
        let request = format!("GET /health/liveness HTTP/1.1\r\nhost: test\r\n{headers}\r\n");
        let answer = exchange(address, request.into_bytes()).await;
        let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 431 "), "{head}");
        assert!(
            head.contains("\r\ncontent-type: application/problem+json\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{head}"
        );
        let problem: Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["type"], "/problems/request-header-fields-too-large");
        assert_eq!(problem["title"], "Request Header Fields Too Large");
        assert_eq!(problem["status"], 431);
    }

    // A request head hyper cannot parse at all is a 400 problem too.
    let answer = exchange(address, b"NOT HTTP\r\n\r\n".to_vec()).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(
        answer.contains(r#"{"type":"/problems/malformed-request","#),
        "{answer}"
    );
    assert!(
        answer.ends_with(r#""detail":"the request is not valid HTTP/1.1"}"#),
        "{answer}"
    );

    // Everything else passes through untouched, on a connection kept alive.
    let two = b"GET /health/liveness HTTP/1.1\r\nhost: test\r\n\r\n\
                GET /nothing HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n";
    let answer = exchange(address, two.to_vec()).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains(r#"{"status":"alive"}HTTP/1.1 404 Not Found"#),
        "{answer}"
    );
    assert!(
        answer.ends_with(r#""detail":"no route for GET /nothing"}"#),
        "{answer}"
    );
}

/// An answer read off the wire, as the router's answers are in the tests.
fn parse_answer(answer: &str) -> crate::common::TestResponse {
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()["HTTP/1.1 ".len()..][..3].to_owned();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (
                header::HeaderName::try_from(name.trim()).unwrap(),
                header::HeaderValue::try_from(value.trim()).unwrap(),
            )
        })
        .collect();
    crate::common::TestResponse {
        status: StatusCode::from_bytes(status.as_bytes()).unwrap(),
        headers,
        body: serde_json::from_str(body).unwrap(),
    }
}

/// Every problem `type` is answered for its cause, and for it only, over
/// the real router (hyper's own refusals over TCP): callers and the
/// cockpit branch on `type`. The types answered are exactly those of the
/// one table (`Cause`), which docs/api.md lists.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn each_problem_type_is_answered_for_its_cause(pool: PgPool) {
    let app = TestApp::start(pool.clone(), config(&[])).await;
    let address = served(pool.clone()).await;
    let company = Uuid::new_v4();
    let writer = token(&[company], &[ADMIN, MANAGE]);
    let reader = token(&[company], &[ADMIN]);
    let create = |delivery_id: Uuid, volunteer_hours: u32| {
        let mut report = crate::common::report(company);
        report["volunteerHours"] = json!(volunteer_hours);
        json!({ "companyId": company, "provider": "benevity", "deliveryId": delivery_id,
                "payload": report })
    };
    let delivery_id = Uuid::new_v4();
    let created = app.post(LIST, Some(&writer), create(delivery_id, 1)).await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let record_id: Uuid = created.body["id"].as_str().unwrap().parse().unwrap();

    let mut with_key = raw_post(
        &writer,
        Some("application/json"),
        create(Uuid::new_v4(), 1).to_string(),
    );
    with_key
        .headers_mut()
        .insert("idempotency-key", "k".repeat(256).try_into().unwrap());
    let chunked_garbage = format!(
        "POST {LIST} HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {writer}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\
         connection: close\r\n\r\nzz\r\n\r\n"
    );
    let many_fields: String = (0..101).map(|i| format!("x-field-{i}: 1\r\n")).collect();

    // Webhooks: Benevity's secret only, so Goodera's route is not configured.
    const HOOK_SECRET: &str = "benevity-webhook-secret-in-http-errors";
    let hooks = TestApp::start(
        pool.clone(),
        config(&[("BENEVITY_WEBHOOK_SECRET", HOOK_SECRET)]),
    )
    .await;
    let now = chrono::Utc::now().timestamp();
    let signed = |timestamp: i64, body: &[u8]| {
        impact_in::webhooks::signature::sign_benevity(HOOK_SECRET.as_bytes(), timestamp, body)
    };
    let webhook = |headers: &[(&str, &str)]| {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/webhooks/benevity");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(Body::from("{}")).unwrap()
    };
    let answers = [
        (
            "/problems/invalid-query",
            StatusCode::BAD_REQUEST,
            app.get(&format!("{LIST}?limit=0"), Some(&reader)).await,
        ),
        (
            "/problems/malformed-json",
            StatusCode::BAD_REQUEST,
            app.send(raw_post(&writer, Some("application/json"), "{"))
                .await,
        ),
        (
            "/problems/unreadable-body",
            StatusCode::BAD_REQUEST,
            parse_answer(&exchange(address, chunked_garbage.into_bytes()).await),
        ),
        (
            "/problems/invalid-idempotency-key",
            StatusCode::BAD_REQUEST,
            app.send(with_key).await,
        ),
        (
            "/problems/malformed-request",
            StatusCode::BAD_REQUEST,
            parse_answer(&exchange(address, b"NOT HTTP\r\n\r\n".to_vec()).await),
        ),
        (
            "/problems/missing-credentials",
            StatusCode::UNAUTHORIZED,
            app.get(LIST, None).await,
        ),
        (
            "/problems/invalid-token",
            StatusCode::UNAUTHORIZED,
            app.get(LIST, Some("not-a-jwt")).await,
        ),
        (
            "/problems/missing-role",
            StatusCode::FORBIDDEN,
            app.post(LIST, Some(&reader), create(Uuid::new_v4(), 1))
                .await,
        ),
        (
            "/problems/company-not-allowed",
            StatusCode::FORBIDDEN,
            app.get(
                &format!("{LIST}?companyId={}", Uuid::new_v4()),
                Some(&reader),
            )
            .await,
        ),
        (
            "/problems/delivery-not-found",
            StatusCode::NOT_FOUND,
            app.get(&format!("{LIST}/{}", Uuid::new_v4()), Some(&reader))
                .await,
        ),
        (
            "/problems/route-not-found",
            StatusCode::NOT_FOUND,
            app.get("/v1/nothing-here", Some(&reader)).await,
        ),
        (
            "/problems/method-not-allowed",
            StatusCode::METHOD_NOT_ALLOWED,
            app.request(Method::DELETE, LIST, Some(&writer), None).await,
        ),
        (
            "/problems/idempotency-key-reused",
            StatusCode::CONFLICT,
            app.post(LIST, Some(&writer), create(delivery_id, 2)).await,
        ),
        (
            "/problems/delivery-id-taken",
            StatusCode::CONFLICT,
            app.post(LIST, Some(&writer), create(record_id, 1)).await,
        ),
        (
            "/problems/delivery-not-failed",
            StatusCode::CONFLICT,
            app.post(
                &format!("{LIST}/{record_id}/replay"),
                Some(&writer),
                json!({}),
            )
            .await,
        ),
        (
            "/problems/payload-too-large",
            StatusCode::PAYLOAD_TOO_LARGE,
            app.send(raw_post(
                &writer,
                Some("application/json"),
                "x".repeat(5000),
            ))
            .await,
        ),
        (
            "/problems/uri-too-long",
            StatusCode::URI_TOO_LONG,
            parse_answer(
                &exchange(
                    address,
                    format!("GET /{} HTTP/1.1\r\nhost: test\r\n\r\n", "a".repeat(70_000))
                        .into_bytes(),
                )
                .await,
            ),
        ),
        (
            "/problems/unsupported-media-type",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            app.send(raw_post(&writer, Some("text/plain"), "{}")).await,
        ),
        (
            "/problems/validation",
            StatusCode::UNPROCESSABLE_ENTITY,
            app.post(LIST, Some(&writer), json!({ "provider": "benevity" }))
                .await,
        ),
        (
            "/problems/request-header-fields-too-large",
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            parse_answer(
                &exchange(
                    address,
                    format!("GET /health/liveness HTTP/1.1\r\nhost: test\r\n{many_fields}\r\n")
                        .into_bytes(),
                )
                .await,
            ),
        ),
        (
            "/problems/unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            TestApp::unstarted(crate::common::unreachable_pool(), config(&[]))
                .get(LIST, Some(&reader))
                .await,
        ),
        (
            "/problems/webhook-missing-signature",
            StatusCode::UNAUTHORIZED,
            hooks.send(webhook(&[])).await,
        ),
        (
            "/problems/webhook-timestamp-outside-tolerance",
            StatusCode::UNAUTHORIZED,
            hooks
                .send(webhook(&[
                    ("x-benevity-timestamp", "0"),
                    ("x-benevity-signature", &signed(0, b"{}")),
                ]))
                .await,
        ),
        (
            "/problems/webhook-signature-mismatch",
            StatusCode::UNAUTHORIZED,
            hooks
                .send(webhook(&[
                    ("x-benevity-timestamp", &now.to_string()),
                    ("x-benevity-signature", "sha256=00"),
                ]))
                .await,
        ),
        (
            "/problems/malformed-webhook-event",
            StatusCode::BAD_REQUEST,
            hooks
                .send(webhook(&[
                    ("x-benevity-timestamp", &now.to_string()),
                    ("x-benevity-signature", &signed(now, b"{}")),
                ]))
                .await,
        ),
        (
            "/problems/webhook-not-configured",
            StatusCode::SERVICE_UNAVAILABLE,
            app.send(webhook(&[])).await,
        ),
        (
            "/problems/schedule-not-found",
            StatusCode::NOT_FOUND,
            app.get(
                &format!("/v1/impact-in/schedules/{}", Uuid::new_v4()),
                Some(&reader),
            )
            .await,
        ),
        (
            "/problems/ingest-run-not-found",
            StatusCode::NOT_FOUND,
            app.get(
                &format!("/v1/ingest/runs/{}", Uuid::new_v4()),
                Some(&reader),
            )
            .await,
        ),
        (
            "/problems/ingest-not-configured",
            StatusCode::SERVICE_UNAVAILABLE,
            // Keyed redaction without its key: ingest refuses to run.
            TestApp::start(pool.clone(), config(&[("PII_HASH_KEY", "")]))
                .await
                .post(
                    &format!("/v1/ingest/buddy/data?company_id={company}"),
                    Some(&writer),
                    json!(null),
                )
                .await,
        ),
        ("/problems/internal", StatusCode::INTERNAL_SERVER_ERROR, {
            // A bug, as far as the service can tell: its table is gone.
            sqlx::query("ALTER TABLE impact_deliveries RENAME TO impact_deliveries_gone")
                .execute(&pool)
                .await
                .unwrap();
            app.get(LIST, Some(&reader)).await
        }),
    ];

    let mut answered = std::collections::BTreeSet::new();
    for (kind, status, response) in &answers {
        let problem = response.problem(*status);
        assert_eq!(problem["type"], *kind, "{problem}");
        assert!(answered.insert(*kind), "{kind} listed twice");
    }
    let table = Cause::ALL.iter().map(|cause| cause.kind()).collect();
    assert_eq!(answered, table);
}
