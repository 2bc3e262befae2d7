//! The credential vault end to end: the real router over a fresh database,
//! credentials used against the provider sandbox over real HTTP, replicas
//! sharing one database, and the encryption key rotated.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use chrono::Utc;
use impact_in::{
    app::AppState,
    clock::ManualClock,
    connectors::{ConnectorError, DeliveryRequest, keyring::Keyring, vault::Vault},
    provider::Provider,
    report::ImpactReport,
    sandbox::{Sandbox, SandboxConfig, credentials},
};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{ADMIN, MANAGE, OPS_KEY, TestApp};

/// The test suite's key, and a second one to rotate to.
const NEW_KEY: &str = "bmV3LXRva2VuLWtleS1uZXctdG9rZW4ta2V5LTAwMDE=";

struct Vaulted {
    sandbox: Sandbox,
    pool: PgPool,
    clock: Arc<ManualClock>,
    company: Uuid,
}

impl Vaulted {
    async fn start(pool: PgPool) -> Self {
        Self {
            sandbox: Sandbox::start(SandboxConfig::default()).await.unwrap(),
            pool,
            clock: Arc::new(ManualClock::new(Utc::now())),
            company: Uuid::new_v4(),
        }
    }

    /// A replica: the sandbox's variables without Benevity's delivery
    /// credentials (the vault supplies them), plus `overrides`.
    async fn replica(&self, overrides: &[(&str, &str)]) -> TestApp {
        let mut vars: Vec<(String, String)> = credentials::env_vars(&self.sandbox.url())
            .into_iter()
            .filter(|(name, _)| !matches!(*name, "BENEVITY_API_KEY" | "BENEVITY_SIGNATURE_SECRET"))
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        vars.push(("INGEST_RETRY_INITIAL_DELAY_MS".into(), "1".into()));
        for (key, value) in overrides {
            vars.retain(|(k, _)| k != key);
            vars.push(((*key).to_owned(), (*value).to_owned()));
        }
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        TestApp::start_with_clock(
            self.pool.clone(),
            crate::common::config(&pairs),
            self.clock.clone(),
        )
        .await
    }

    fn path(&self, provider: &str) -> String {
        format!(
            "/v1/integrations/credentials/{provider}?company_id={}",
            self.company
        )
    }

    fn token(&self, roles: &[&str]) -> String {
        crate::common::token(&[self.company], roles)
    }

    async fn put(
        &self,
        app: &TestApp,
        provider: &str,
        credentials: Value,
    ) -> crate::common::TestResponse {
        app.request(
            Method::PUT,
            &self.path(provider),
            Some(&self.token(&[ADMIN, MANAGE])),
            Some(json!({ "credentials": credentials })),
        )
        .await
    }

    async fn remove(&self, app: &TestApp, provider: &str) {
        let removed = app
            .request(
                Method::DELETE,
                &self.path(provider),
                Some(&self.token(&[ADMIN, MANAGE])),
                None,
            )
            .await;
        assert_eq!(removed.status, StatusCode::NO_CONTENT);
    }

    async fn show(&self, app: &TestApp, provider: &str) -> Value {
        let response = app
            .get(&self.path(provider), Some(&self.token(&[ADMIN])))
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        response.body
    }
}

fn benevity_keys() -> Value {
    json!({
        "API_KEY": credentials::BENEVITY_API_KEY,
        "SIGNATURE_SECRET": credentials::BENEVITY_SIGNATURE_SECRET,
    })
}

fn names(view: &Value) -> Vec<&str> {
    view["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

async fn deliver(state: &AppState, company: Uuid) -> Result<u16, ConnectorError> {
    let report: ImpactReport = serde_json::from_value(crate::common::report(company)).unwrap();
    let connector = state
        .delivery
        .connectors
        .connector(company, Provider::Benevity)
        .await
        .map_err(ConnectorError::from)?;
    connector
        .deliver(DeliveryRequest {
            delivery_id: &Uuid::new_v4().to_string(),
            report: &report,
        })
        .await
        .map(|receipt| receipt.status)
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_company_is_onboarded_through_the_vault_without_a_restart(pool: PgPool) {
    let v = Vaulted::start(pool).await;
    let app = v.replica(&[]).await;

    let before = v.show(&app, "benevity").await;
    assert_eq!(before["credentials"], json!([]));
    assert_eq!(before["delivery"]["ready"], false);
    assert!(
        before["delivery"]["problem"]
            .as_str()
            .unwrap()
            .contains("BENEVITY_API_KEY"),
        "{before}"
    );
    let refused = deliver(&app.state, v.company).await.unwrap_err();
    assert!(
        matches!(refused, ConnectorError::Unsendable { .. }),
        "{refused}"
    );

    let stored = v.put(&app, "benevity", benevity_keys()).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
    assert_eq!(names(&stored.body), ["API_KEY", "SIGNATURE_SECRET"]);
    assert_eq!(stored.body["delivery"], json!({ "ready": true }));
    // Ingest from Benevity needs its OAuth client, which the variables give.
    assert_eq!(stored.body["ingest"], json!({ "ready": true }));
    for body in [
        stored.body.to_string(),
        v.show(&app, "benevity").await.to_string(),
    ] {
        assert!(!body.contains(credentials::BENEVITY_API_KEY), "{body}");
        assert!(
            !body.contains(credentials::BENEVITY_SIGNATURE_SECRET),
            "{body}"
        );
    }
    // At rest, sealed: no value appears in the table.
    let sealed: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT name, sealed_value FROM integration_credentials")
            .fetch_all(&v.pool)
            .await
            .unwrap();
    assert_eq!(sealed.len(), 2);
    for (name, bytes) in &sealed {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains("sandbox-benevity"), "{name} stored in clear");
    }

    // The very next delivery uses them: signed and accepted (201) by the
    // sandbox.
    assert_eq!(deliver(&app.state, v.company).await.unwrap(), 201);
    // Another company has no vault and no variables of its own.
    assert!(deliver(&app.state, Uuid::new_v4()).await.is_err());

    v.remove(&app, "benevity").await;
    assert_eq!(v.show(&app, "benevity").await["credentials"], json!([]));
    assert!(
        matches!(
            deliver(&app.state, v.company).await,
            Err(ConnectorError::Unsendable { .. })
        ),
        "removed credentials are no longer used"
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn bad_names_values_and_callers_are_refused_without_echoing_a_value(pool: PgPool) {
    let v = Vaulted::start(pool).await;
    // Room for a value over the vault's limit.
    let app = v.replica(&[("REQUEST_BODY_LIMIT_BYTES", "16384")]).await;
    let secret = "hunter2-do-not-echo";

    for (credentials, field) in [
        (
            json!({ "API_URL": "http://169.254.169.254" }),
            "credentials.API_URL",
        ),
        (json!({ "API_KEY": "   " }), "credentials.API_KEY"),
        (
            json!({ "API_KEY": format!("{secret}\n") }),
            "credentials.API_KEY",
        ),
        (
            json!({ "API_KEY": "x".repeat(4097) }),
            "credentials.API_KEY",
        ),
        (
            json!({ "API_KEY": secret, "AUTH": "password" }),
            "credentials.AUTH",
        ),
        (json!({ "API_KEY": 42 }), "credentials.API_KEY"),
    ] {
        let response = v.put(&app, "benevity", credentials.clone()).await;
        response.problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.error_fields(), [field], "{credentials}");
        assert!(
            !response.body.to_string().contains(secret),
            "{}",
            response.body
        );
    }
    // A Workday tenant id goes into URL paths: only letters, digits, _ and -.
    let response = v
        .put(&app, "workday", json!({ "TENANT_ID": "../admin" }))
        .await;
    response.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(response.error_fields(), ["credentials.TENANT_ID"]);

    let response = v
        .put(&app, "salesforce", json!({ "API_KEY": secret }))
        .await;
    response.problem(StatusCode::NOT_FOUND);
    let wrong_shape = app
        .request(
            Method::PUT,
            &v.path("goodera"),
            Some(&v.token(&[ADMIN, MANAGE])),
            Some(json!({ "API_KEY": secret })),
        )
        .await;
    wrong_shape.problem(StatusCode::UNPROCESSABLE_ENTITY);

    // Reading needs ADMIN_CONSOLE, changing MANAGE_INTEGRATIONS, and both
    // only for the token's own companies.
    let read_only = app
        .request(
            Method::PUT,
            &v.path("goodera"),
            Some(&v.token(&[ADMIN])),
            Some(json!({ "credentials": { "API_KEY": secret } })),
        )
        .await;
    read_only.problem(StatusCode::FORBIDDEN);
    let stranger = crate::common::token(&[Uuid::new_v4()], &[ADMIN, MANAGE]);
    for method in [Method::GET, Method::DELETE] {
        app.request(method, &v.path("goodera"), Some(&stranger), None)
            .await
            .problem(StatusCode::FORBIDDEN);
    }
    app.get("/v1/integrations/credentials/goodera", Some(OPS_KEY))
        .await
        .problem(StatusCode::BAD_REQUEST);
    app.get(&v.path("goodera"), None)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    let ops = app.get(&v.path("goodera"), Some(OPS_KEY)).await;
    assert_eq!(ops.status, StatusCode::OK, "{}", ops.body);

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM integration_credentials")
        .fetch_one(&v.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing refused was stored");
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn another_replica_picks_up_a_change_within_the_refresh_interval(pool: PgPool) {
    let v = Vaulted::start(pool).await;
    // Both replicas deliver with a global key the sandbox refuses until the
    // company's own is vaulted.
    let overrides = [
        ("BENEVITY_API_KEY", "not-the-sandbox-key"),
        (
            "BENEVITY_SIGNATURE_SECRET",
            credentials::BENEVITY_SIGNATURE_SECRET,
        ),
        ("CREDENTIALS_REFRESH_SECS", "30"),
    ];
    let a = v.replica(&overrides).await;
    let b = v.replica(&overrides).await;
    assert!(matches!(
        deliver(&b.state, v.company).await,
        Err(ConnectorError::Auth { .. })
    ));

    let stored = v
        .put(
            &a,
            "benevity",
            json!({ "API_KEY": credentials::BENEVITY_API_KEY }),
        )
        .await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
    assert_eq!(
        deliver(&a.state, v.company).await.unwrap(),
        201,
        "at once where it was stored"
    );
    assert!(
        matches!(
            deliver(&b.state, v.company).await,
            Err(ConnectorError::Auth { .. })
        ),
        "the other replica keeps what it built for up to 30 s"
    );
    v.clock.advance(std::time::Duration::from_secs(31));
    assert_eq!(deliver(&b.state, v.company).await.unwrap(), 201);

    v.remove(&a, "benevity").await;
    v.clock.advance(std::time::Duration::from_secs(31));
    assert!(matches!(
        deliver(&b.state, v.company).await,
        Err(ConnectorError::Auth { .. })
    ));
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_encryption_key_rotates_without_a_moment_of_unreadable_credentials(pool: PgPool) {
    let v = Vaulted::start(pool).await;
    let old = v.replica(&[]).await;
    assert_eq!(
        v.put(&old, "benevity", benevity_keys()).await.status,
        StatusCode::OK
    );

    // Step 1: the new key seals, the old one still opens.
    let rotating = v
        .replica(&[
            ("TOKEN_ENCRYPTION_KEY", NEW_KEY),
            ("TOKEN_ENCRYPTION_KEY_PREVIOUS", crate::common::TOKEN_KEY),
        ])
        .await;
    assert_eq!(deliver(&rotating.state, v.company).await.unwrap(), 201);
    assert_eq!(
        v.show(&rotating, "benevity").await["delivery"]["ready"],
        true
    );

    // Step 2: `impact-in rekey` seals everything again under the new key.
    let keys = &rotating.state.config.connectors.keys;
    let vault = Vault::new(v.pool.clone(), Keyring::new(keys));
    let done = vault.rekey().await.unwrap();
    assert_eq!(
        (done.sealed_again, done.current, done.unreadable),
        (2, 0, 0)
    );
    assert_eq!(
        vault.rekey().await.unwrap().current,
        2,
        "a second run has nothing to do"
    );

    // Step 3: the old key is dropped; everything still opens.
    let rotated = v.replica(&[("TOKEN_ENCRYPTION_KEY", NEW_KEY)]).await;
    assert_eq!(deliver(&rotated.state, v.company).await.unwrap(), 201);

    // A process left with only the old key cannot open them, and says so
    // without any value.
    let stale = v.replica(&[]).await;
    let view = v.show(&stale, "benevity").await;
    assert_eq!(names(&view), ["API_KEY", "SIGNATURE_SECRET"]);
    let problem = view["delivery"]["problem"].as_str().unwrap();
    assert!(
        problem.contains("TOKEN_ENCRYPTION_KEY_PREVIOUS"),
        "{problem}"
    );
    let err = deliver(&stale.state, v.company).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Unsendable { .. }), "{err}");
    assert!(!err.to_string().contains("sandbox-benevity"), "{err}");
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn ingest_reads_a_company_source_credentials_from_the_vault(pool: PgPool) {
    let v = Vaulted::start(pool).await;
    let app = v
        .replica(&[("BENEVITY_CLIENT_ID", ""), ("BENEVITY_CLIENT_SECRET", "")])
        .await;
    let path = format!("/v1/ingest/benevity/volunteers?company_id={}", v.company);
    let token = v.token(&[ADMIN, MANAGE]);
    let failed = app.post(&path, Some(&token), json!({})).await;
    assert_eq!(failed.body["success"], false, "{}", failed.body);

    let stored = v
        .put(
            &app,
            "benevity",
            json!({
                "CLIENT_ID": credentials::BENEVITY_CLIENT_ID,
                "CLIENT_SECRET": credentials::BENEVITY_CLIENT_SECRET,
            }),
        )
        .await;
    assert_eq!(
        stored.body["ingest"],
        json!({ "ready": true }),
        "{}",
        stored.body
    );
    assert_eq!(
        stored.body["delivery"]["ready"], false,
        "no API key: deliveries are not"
    );

    let succeeded = app.post(&path, Some(&token), json!({})).await;
    assert_eq!(succeeded.status, StatusCode::OK, "{}", succeeded.body);
    assert_eq!(succeeded.body["success"], true, "{}", succeeded.body);
    assert!(
        succeeded.body["metadata"]["recordsProcessed"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn impact_in_rekey_seals_again_and_fails_while_a_value_is_unreadable(pool: PgPool) {
    use crate::binary::{impact_in, succeeded};

    let company = Uuid::new_v4();
    let keys = crate::common::config(&[]).connectors.keys;
    let values = [("API_KEY".to_owned(), "k".into())].into_iter().collect();
    Vault::new(pool.clone(), Keyring::new(&keys))
        .replace(company, Provider::Goodera, &values)
        .await
        .unwrap();

    let server = std::env::var("DATABASE_URL").unwrap();
    let server = server.rsplit_once('/').unwrap().0;
    let database = pool.connect_options().get_database().unwrap().to_owned();
    let url = format!("{server}/{database}");
    let rekey = |current: &str, previous: &str| {
        impact_in(&[
            ("DATABASE_URL", url.as_str()),
            ("JWT_SECRET", crate::common::JWT_SECRET),
            ("TOKEN_ENCRYPTION_KEY", current),
            ("TOKEN_ENCRYPTION_KEY_PREVIOUS", previous),
        ])
        .arg("rekey")
        .output()
        .unwrap()
    };
    let rotated = succeeded(rekey(NEW_KEY, crate::common::TOKEN_KEY));
    assert_eq!(
        rotated.trim(),
        "sealed again: 1, already under the current key: 0, unreadable: 0"
    );
    let again = succeeded(rekey(NEW_KEY, ""));
    assert!(
        again.contains("already under the current key: 1"),
        "{again}"
    );

    let lost = rekey(crate::common::TOKEN_KEY, "");
    assert_eq!(lost.status.code(), Some(1));
    let stderr = String::from_utf8(lost.stderr).unwrap();
    assert!(
        stderr.contains("1 vaulted values open under none"),
        "{stderr}"
    );
}
