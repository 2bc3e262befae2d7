//! The authentication and tenant-isolation matrix over the real router.

use crate::common::{ADMIN, MANAGE, OPS_KEY, TestApp, config, token, token_with};
use axum::http::{StatusCode, header};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

const LIST: &str = "/v1/impact-in/deliveries";

async fn seed_delivery(pool: &PgPool, company: Uuid) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO impact_deliveries (id, company_id, provider, delivery_id, payload, payload_hash)
         VALUES ($1, $2, 'benevity', $3, '{}', 'seeded')",
    )
    .bind(id)
    .bind(company)
    .bind(Uuid::new_v4())
    .execute(pool)
    .await
    .unwrap();
    id
}

/// A bearer credential refused: 401 with a challenge.
fn assert_unauthorized(response: &crate::common::TestResponse) {
    assert_eq!(
        response.problem(StatusCode::UNAUTHORIZED)["type"],
        "/problems/invalid-token"
    );
    let challenge = response.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn missing_or_unusable_credentials_are_401(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;
    let company = Uuid::new_v4();

    let missing = app.get(LIST, None).await;
    assert_eq!(
        missing.problem(StatusCode::UNAUTHORIZED)["type"],
        "/problems/missing-credentials"
    );
    assert!(missing.headers.contains_key(header::WWW_AUTHENTICATE));
    assert_unauthorized(&app.get(LIST, Some("not-a-jwt")).await);

    let valid = token(&[company], &[ADMIN]);
    let (head, rest) = valid.split_once('.').unwrap();
    let (claims, _) = rest.split_once('.').unwrap();
    let bad_signature = format!("{head}.{claims}.c2lnbmF0dXJl");
    assert_unauthorized(&app.get(LIST, Some(&bad_signature)).await);

    let other_secret = config(&[("JWT_SECRET", "another-secret-another-secret-0123456")]);
    let foreign = token_with(&other_secret, &[company], &[ADMIN], 3600);
    assert_unauthorized(&app.get(LIST, Some(&foreign)).await);

    let expired = crate::common::expired_token(company);
    let response = app.get(LIST, Some(&expired)).await;
    assert_unauthorized(&response);
    assert_eq!(response.body["detail"], "unauthorized: token expired");

    let wrong_ops_key = format!("{OPS_KEY}x");
    assert_unauthorized(&app.get(LIST, Some(&wrong_ops_key)).await);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn issuer_and_audience_are_checked_when_configured(pool: PgPool) {
    let strict = config(&[("JWT_ISSUER", "cockpit"), ("JWT_AUDIENCE", "impact-in")]);
    let app = TestApp::start(pool, strict.clone()).await;
    let company = Uuid::new_v4();

    let right = token_with(&strict, &[company], &[ADMIN], 3600);
    assert_eq!(app.get(LIST, Some(&right)).await.status, StatusCode::OK);

    let wrong_issuer = config(&[
        ("JWT_ISSUER", "someone-else"),
        ("JWT_AUDIENCE", "impact-in"),
    ]);
    let response = app
        .get(
            LIST,
            Some(&token_with(&wrong_issuer, &[company], &[ADMIN], 3600)),
        )
        .await;
    assert_unauthorized(&response);
    assert_eq!(response.body["detail"], "unauthorized: wrong issuer");

    let wrong_audience = config(&[("JWT_ISSUER", "cockpit"), ("JWT_AUDIENCE", "reporting")]);
    let response = app
        .get(
            LIST,
            Some(&token_with(&wrong_audience, &[company], &[ADMIN], 3600)),
        )
        .await;
    assert_unauthorized(&response);
    assert_eq!(response.body["detail"], "unauthorized: wrong audience");

    // Configured claims are required, not only checked when present.
    let bare = token(&[company], &[ADMIN]);
    assert_unauthorized(&app.get(LIST, Some(&bare)).await);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn roles_gate_reads_and_writes(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;
    let company = Uuid::new_v4();
    let body = json!({ "companyId": company, "provider": "goodera", "payload": crate::common::report(company) });

    let no_roles = token(&[company], &[]);
    assert_eq!(
        app.get(LIST, Some(&no_roles))
            .await
            .problem(StatusCode::FORBIDDEN)["type"],
        "/problems/missing-role"
    );

    let reader = token(&[company], &[ADMIN]);
    assert_eq!(app.get(LIST, Some(&reader)).await.status, StatusCode::OK);
    let denied = app.post(LIST, Some(&reader), body.clone()).await;
    assert_eq!(
        denied.problem(StatusCode::FORBIDDEN)["type"],
        "/problems/missing-role"
    );
    assert!(
        denied.body["detail"]
            .as_str()
            .unwrap()
            .contains("MANAGE_INTEGRATIONS")
    );

    let manager_only = token(&[company], &[MANAGE]);
    assert_eq!(
        app.post(LIST, Some(&manager_only), body.clone())
            .await
            .problem(StatusCode::FORBIDDEN)["type"],
        "/problems/missing-role"
    );

    let writer = token(&[company], &[ADMIN, MANAGE]);
    assert_eq!(
        app.post(LIST, Some(&writer), body).await.status,
        StatusCode::ACCEPTED
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_caller_only_sees_its_own_companies(pool: PgPool) {
    let app = TestApp::start(pool.clone(), config(&[])).await;
    let (mine, theirs) = (Uuid::new_v4(), Uuid::new_v4());
    let my_delivery = seed_delivery(&pool, mine).await;
    let their_delivery = seed_delivery(&pool, theirs).await;
    let me = token(&[mine], &[ADMIN, MANAGE]);

    let listed = app.get(LIST, Some(&me)).await;
    assert_eq!(listed.status, StatusCode::OK);
    let ids: Vec<&Value> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["id"])
        .collect();
    assert_eq!(ids, vec![&json!(my_delivery)]);

    let own = app.get(&format!("{LIST}/{my_delivery}"), Some(&me)).await;
    assert_eq!(own.status, StatusCode::OK);
    // Another company's delivery does not exist, as far as this caller knows.
    assert_eq!(
        app.get(&format!("{LIST}/{their_delivery}"), Some(&me))
            .await
            .problem(StatusCode::NOT_FOUND)["type"],
        "/problems/delivery-not-found"
    );

    assert_eq!(
        app.get(&format!("{LIST}?companyId={theirs}"), Some(&me))
            .await
            .problem(StatusCode::FORBIDDEN)["type"],
        "/problems/company-not-allowed"
    );
    let create = json!({ "companyId": theirs, "provider": "benevity", "payload": crate::common::report(theirs) });
    assert_eq!(
        app.post(LIST, Some(&me), create)
            .await
            .problem(StatusCode::FORBIDDEN)["type"],
        "/problems/company-not-allowed"
    );

    // A token for several companies sees each of them.
    let both = token(&[mine, theirs], &[ADMIN]);
    let listed = app.get(LIST, Some(&both)).await;
    assert_eq!(listed.body["pagination"]["total"], 2);
}

/// A seeded delivery that has failed after `attempts` attempts; its
/// `deliveryId`.
async fn seed_failed(pool: &PgPool, id: Uuid, attempts: i32) -> Uuid {
    sqlx::query_scalar(
        "UPDATE impact_deliveries
         SET status = 'failed', attempt_count = $2, next_attempt_at = NULL
         WHERE id = $1 RETURNING delivery_id",
    )
    .bind(id)
    .bind(attempts)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The replay routes are as blind to other companies as the reads: their
/// failed deliveries are not found, cannot be replayed, and their company
/// cannot be re-queued.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_caller_cannot_replay_another_companys_deliveries(pool: PgPool) {
    let app = TestApp::start(pool.clone(), config(&[])).await;
    let (mine, theirs) = (Uuid::new_v4(), Uuid::new_v4());
    let my_delivery = seed_delivery(&pool, mine).await;
    seed_failed(&pool, my_delivery, 1).await;
    let their_delivery = seed_delivery(&pool, theirs).await;
    let their_delivery_id = seed_failed(&pool, their_delivery, 3).await;
    let me = token(&[mine], &[ADMIN, MANAGE]);

    for id in [their_delivery, their_delivery_id] {
        let single = app
            .post(&format!("{LIST}/{id}/replay"), Some(&me), json!({}))
            .await;
        let problem = single.problem(StatusCode::NOT_FOUND);
        assert_eq!(problem["type"], "/problems/delivery-not-found");
        assert_eq!(problem["detail"], format!("no delivery {id}"));
    }

    // In the same request our own failed delivery is replayed (its seeded
    // payload is no report, so it fails again); theirs is not found by
    // either id.
    let bulk = app
        .post(
            &format!("{LIST}/bulk-replay"),
            Some(&me),
            json!({"ids": [my_delivery, their_delivery, their_delivery_id]}),
        )
        .await;
    assert_eq!(bulk.status, StatusCode::OK, "{}", bulk.body);
    let results = bulk.body["results"].as_array().unwrap();
    assert_eq!(
        (
            &results[0]["id"],
            &results[0]["result"],
            &results[0]["status"]
        ),
        (&json!(my_delivery), &json!("replayed"), &json!("failed"))
    );
    for (result, id) in results[1..].iter().zip([their_delivery, their_delivery_id]) {
        assert_eq!(
            result,
            &json!({"id": id, "result": "not_found", "status": null, "lastError": null})
        );
    }

    let everything = app
        .post(
            &format!("{LIST}/retry-all-failed"),
            Some(&me),
            json!({"companyId": theirs}),
        )
        .await;
    let problem = everything.problem(StatusCode::FORBIDDEN);
    assert_eq!(problem["type"], "/problems/company-not-allowed");
    assert_eq!(
        problem["detail"],
        "forbidden: companyId is outside the companies of this token"
    );

    let (status, attempts, locked_by, logged): (String, i32, Option<String>, i64) = sqlx::query_as(
        "SELECT status, attempt_count, locked_by,
                    (SELECT count(*) FROM delivery_attempts WHERE delivery_id = d.id)
             FROM impact_deliveries d WHERE id = $1",
    )
    .bind(their_delivery)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), attempts, locked_by, logged),
        ("failed", 3, None, 0)
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn ops_keys_reach_every_company(pool: PgPool) {
    let app = TestApp::start(pool.clone(), config(&[])).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    seed_delivery(&pool, a).await;
    let in_b = seed_delivery(&pool, b).await;

    let listed = app.get(LIST, Some(OPS_KEY)).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["pagination"]["total"], 2);
    assert_eq!(
        app.get(&format!("{LIST}/{in_b}"), Some(OPS_KEY))
            .await
            .status,
        StatusCode::OK
    );
    let create =
        json!({ "companyId": a, "provider": "workday", "payload": crate::common::report(a) });
    assert_eq!(
        app.post(LIST, Some(OPS_KEY), create).await.status,
        StatusCode::ACCEPTED
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn health_and_discovery_need_no_credentials(pool: PgPool) {
    let app = TestApp::start(pool, config(&[])).await;
    for path in [
        "/",
        "/health",
        "/health/liveness",
        "/health/readiness",
        "/health/startup",
    ] {
        assert_eq!(app.get(path, None).await.status, StatusCode::OK, "{path}");
    }
}

/// ES256 with `JWT_PUBLIC_KEY_FILE`: the key pair in tests/fixtures exists
/// only for this test.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn tokens_verify_against_a_public_key_file(pool: PgPool) {
    let public_key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/es256-test-public.pem"
    );
    let app = TestApp::start(
        pool,
        config(&[("JWT_SECRET", ""), ("JWT_PUBLIC_KEY_FILE", public_key)]),
    )
    .await;
    let company = Uuid::new_v4();
    let claims = impact_in::auth::Claims {
        sub: "issuer-signed".into(),
        company_id: Some(company.into()),
        company_ids: None,
        roles: vec![ADMIN.into()],
        exp: crate::common::now() + 300,
        iat: None,
        iss: None,
        aud: None,
    };
    let private_key = include_bytes!("../fixtures/es256-test-private.pem");
    let sign = |algorithm| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(algorithm),
            &claims,
            &jsonwebtoken::EncodingKey::from_ec_pem(private_key).unwrap(),
        )
        .unwrap()
    };
    let es256 = sign(jsonwebtoken::Algorithm::ES256);
    assert_eq!(app.get(LIST, Some(&es256)).await.status, StatusCode::OK);

    // An HS256 token, even one made with the public key as secret, is refused.
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&std::fs::read(public_key).unwrap()),
    )
    .unwrap();
    assert_unauthorized(&app.get(LIST, Some(&confused)).await);
}

/// The `detail` docs/api.md gives for a token short of a claim. `sub` and
/// `exp` are part of the claims the service reads, so a token without one
/// is malformed; `iss` (and `aud`) are required only when configured, and
/// their absence is named as such.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_token_short_of_a_claim_is_refused_with_the_documented_text(pool: PgPool) {
    let app = TestApp::start(pool, config(&[("JWT_ISSUER", "cockpit")])).await;
    let key = jsonwebtoken::EncodingKey::from_secret(crate::common::JWT_SECRET.as_bytes());
    let sign = |claims: &Value| {
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &key).unwrap()
    };
    let complete = json!({
        "sub": "tester", "exp": crate::common::now() + 300, "iss": "cockpit",
        "companyId": Uuid::new_v4(), "roles": [ADMIN],
    });
    assert_eq!(
        app.get(LIST, Some(&sign(&complete))).await.status,
        StatusCode::OK
    );

    for (claim, detail) in [
        ("sub", "unauthorized: malformed token"),
        ("exp", "unauthorized: malformed token"),
        ("iss", "unauthorized: a required claim is missing"),
    ] {
        let mut short = complete.clone();
        short.as_object_mut().unwrap().remove(claim);
        let response = app.get(LIST, Some(&sign(&short))).await;
        assert_unauthorized(&response);
        assert_eq!(response.body["detail"], detail, "without {claim}");
    }
}
