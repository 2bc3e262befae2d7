//! The connectors against the provider sandbox over real HTTP, with tokens
//! persisted in a real (fresh) Postgres database. Time-based behaviour
//! (token expiry, circuit cool-down) moves a manual clock; nothing sleeps.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use impact_in::{
    app::AppState,
    clock::ManualClock,
    connectors::{
        CircuitState, ConnectorError, DeliveryRequest, ErrorClass, Receipt, retry::AttemptsMade,
    },
    provider::Provider,
    report::ImpactReport,
    sandbox::{Sandbox, SandboxConfig, credentials as sandbox},
};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::sandbox_api;

/// A sandbox, and the service state pointed at it with `vars`.
struct Harness {
    sandbox: Sandbox,
    clock: Arc<ManualClock>,
    pool: PgPool,
}

fn provider_vars(url: &str) -> Vec<(String, String)> {
    [
        ("BENEVITY_API_URL", url),
        ("BENEVITY_API_KEY", sandbox::BENEVITY_API_KEY),
        (
            "BENEVITY_SIGNATURE_SECRET",
            sandbox::BENEVITY_SIGNATURE_SECRET,
        ),
        ("BENEVITY_CLIENT_ID", sandbox::BENEVITY_CLIENT_ID),
        ("BENEVITY_CLIENT_SECRET", sandbox::BENEVITY_CLIENT_SECRET),
        ("GOODERA_API_URL", url),
        ("GOODERA_CLIENT_ID", sandbox::GOODERA_CLIENT_ID),
        ("GOODERA_CLIENT_SECRET", sandbox::GOODERA_CLIENT_SECRET),
        ("GOODERA_API_KEY", sandbox::GOODERA_API_KEY),
        ("WORKDAY_API_URL", url),
        ("WORKDAY_TENANT_ID", sandbox::WORKDAY_TENANT_ID),
        ("WORKDAY_CLIENT_ID", sandbox::WORKDAY_CLIENT_ID),
        ("WORKDAY_CLIENT_SECRET", sandbox::WORKDAY_CLIENT_SECRET),
        ("WORKDAY_USERNAME", sandbox::WORKDAY_USERNAME),
        ("WORKDAY_PASSWORD", sandbox::WORKDAY_PASSWORD),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

impl Harness {
    async fn start(pool: PgPool) -> Self {
        Self::with_sandbox(pool, SandboxConfig::default()).await
    }

    async fn with_sandbox(pool: PgPool, config: SandboxConfig) -> Self {
        Self {
            sandbox: Sandbox::start(config).await.unwrap(),
            clock: Arc::new(ManualClock::new(Utc::now())),
            pool,
        }
    }

    /// Service state over the shared pool and clock; `overrides` as in
    /// `crate::common::config` (an empty value removes a variable).
    fn state(&self, overrides: &[(&str, &str)]) -> AppState {
        let mut vars = provider_vars(&self.sandbox.url());
        for (key, value) in overrides {
            vars.retain(|(k, _)| k != key);
            vars.push(((*key).to_owned(), (*value).to_owned()));
        }
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        AppState::with_clock(
            crate::common::config(&pairs),
            self.pool.clone(),
            self.clock.clone(),
        )
        .unwrap()
    }

    async fn control(&self, path: &str, body: Value) {
        let status = sandbox_api::control(&self.sandbox, path, body).await;
        assert!(status.is_success(), "{path}: {status}");
    }

    async fn received(&self, provider: Provider) -> Vec<Value> {
        sandbox_api::received(&self.sandbox, &format!("?provider={provider}")).await
    }

    async fn stats(&self) -> Value {
        sandbox_api::read(&self.sandbox, "stats").await
    }

    async fn tokens_issued(&self, provider: Provider) -> u64 {
        self.stats().await["tokensIssued"][provider.as_str()]
            .as_u64()
            .unwrap_or(0)
    }

    async fn requests(&self, provider: Provider) -> u64 {
        self.stats().await["requests"][provider.as_str()]
            .as_u64()
            .unwrap_or(0)
    }
}

fn report(company: Uuid) -> ImpactReport {
    serde_json::from_value(crate::common::report(company)).unwrap()
}

async fn deliver(
    state: &AppState,
    company: Uuid,
    provider: Provider,
    delivery_id: &str,
) -> Result<Receipt, ConnectorError> {
    let report = report(company);
    state
        .delivery
        .connectors
        .connector(company, provider)
        .await
        .expect("provider is configured")
        .deliver(DeliveryRequest {
            delivery_id,
            report: &report,
        })
        .await
}

fn new_id() -> String {
    Uuid::new_v4().to_string()
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn every_provider_and_auth_mode_delivers_the_canonical_report(pool: PgPool) {
    let h = Harness::start(pool).await;
    let company = Uuid::new_v4();
    type Case<'a> = (Provider, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 6] = [
        (Provider::Benevity, &[], "bnv_"),
        (
            Provider::Benevity,
            &[("BENEVITY_SIGNATURE_TIMESTAMPED", "true")],
            "bnv_",
        ),
        (Provider::Benevity, &[("BENEVITY_AUTH", "oauth2")], "bnv_"),
        (Provider::Goodera, &[], "gdr_"),
        (Provider::Goodera, &[("GOODERA_AUTH", "api_key")], "gdr_"),
        (Provider::Workday, &[], "wd_"),
    ];
    for (provider, overrides, prefix) in cases {
        let state = h.state(overrides);
        let id = new_id();
        let receipt = deliver(&state, company, provider, &id)
            .await
            .unwrap_or_else(|err| {
                panic!("{provider} {overrides:?}: {err}");
            });
        assert!((200..300).contains(&receipt.status), "{receipt:?}");
        let reference = receipt.provider_reference.clone().unwrap();
        assert!(reference.starts_with(prefix), "{reference}");
        let received = h.received(provider).await;
        let entry = received
            .iter()
            .find(|r| r["idempotencyKey"] == id.as_str())
            .unwrap_or_else(|| panic!("{provider} {overrides:?} received {received:?}"));
        assert_eq!(entry["reference"], reference.as_str());
        assert_eq!(entry["timesReceived"], 1);
    }
    let soap = h.state(&[("WORKDAY_PROTOCOL", "soap")]);
    let id = new_id();
    let receipt = deliver(&soap, company, Provider::Workday, &id)
        .await
        .unwrap();
    assert!(receipt.provider_reference.unwrap().starts_with("wd_"));
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_workday_protocol_switch_changes_the_wire_format(pool: PgPool) {
    let h = Harness::start(pool).await;
    let company = Uuid::new_v4();
    let (rest_id, soap_id) = (new_id(), new_id());
    deliver(
        &h.state(&[("WORKDAY_PROTOCOL", "rest")]),
        company,
        Provider::Workday,
        &rest_id,
    )
    .await
    .unwrap();
    deliver(
        &h.state(&[("WORKDAY_PROTOCOL", "soap")]),
        company,
        Provider::Workday,
        &soap_id,
    )
    .await
    .unwrap();
    let received = h.received(Provider::Workday).await;
    let body_of = |id: &str| {
        received
            .iter()
            .find(|r| r["idempotencyKey"] == id)
            .map(|r| r["body"].clone())
            .unwrap()
    };
    assert_eq!(body_of(&rest_id)["schemaVersion"], "3.0");
    let xml = body_of(&soap_id);
    let xml = xml.as_str().expect("SOAP bodies are kept as text");
    assert!(xml.contains("<wsse:UsernameToken"), "{xml}");
    // The programme name of the example is escaped on the wire.
    assert!(xml.contains("R&amp;D &lt;Europe&gt; ]]&gt;"), "{xml}");
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_wrong_signature_secret_or_api_key_is_an_auth_error(pool: PgPool) {
    let h = Harness::start(pool).await;
    let company = Uuid::new_v4();
    for overrides in [
        [("BENEVITY_SIGNATURE_SECRET", "not-the-sandbox-secret")],
        [("BENEVITY_API_KEY", "not-the-sandbox-key")],
    ] {
        let err = deliver(&h.state(&overrides), company, Provider::Benevity, &new_id())
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Auth, "{err}");
        assert_eq!(err.status(), Some(401));
    }
    assert!(h.received(Provider::Benevity).await.is_empty());
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn tenant_credentials_override_the_global_ones(pool: PgPool) {
    let config = SandboxConfig::default().with_benevity_api_key("acme-key", "acme-signing-secret");
    let h = Harness::with_sandbox(pool, config).await;
    let acme = Uuid::new_v4();
    let tenant = impact_in::connectors::settings::tenant_key(acme);
    let key_var = format!("BENEVITY_{tenant}_API_KEY");
    let secret_var = format!("BENEVITY_{tenant}_SIGNATURE_SECRET");
    // The global secret is wrong: only a company with its own credentials gets through.
    let state = h.state(&[
        ("BENEVITY_SIGNATURE_SECRET", "wrong-global-secret"),
        (&key_var, "acme-key"),
        (&secret_var, "acme-signing-secret"),
    ]);
    deliver(&state, acme, Provider::Benevity, &new_id())
        .await
        .unwrap();
    let other = deliver(&state, Uuid::new_v4(), Provider::Benevity, &new_id()).await;
    assert_eq!(other.unwrap_err().class(), ErrorClass::Auth);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_provider_without_credentials_is_reported_as_not_configured(pool: PgPool) {
    let h = Harness::start(pool).await;
    let state = h.state(&[("GOODERA_API_URL", "")]);
    let err = state
        .delivery
        .connectors
        .connector(Uuid::new_v4(), Provider::Goodera)
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "goodera is not configured: GOODERA_API_URL is not set"
    );
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn one_token_serves_many_concurrent_deliveries(pool: PgPool) {
    let h = Harness::start(pool).await;
    let state = h.state(&[]);
    let company = Uuid::new_v4();
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let state = state.clone();
        racers.spawn(async move { deliver(&state, company, Provider::Goodera, &new_id()).await });
    }
    while let Some(outcome) = racers.join_next().await {
        outcome.unwrap().unwrap();
    }
    assert_eq!(h.tokens_issued(Provider::Goodera).await, 1);
    assert_eq!(h.received(Provider::Goodera).await.len(), 20);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn tokens_are_refreshed_shortly_before_they_expire(pool: PgPool) {
    let h = Harness::start(pool).await;
    let state = h.state(&[]);
    let company = Uuid::new_v4();
    deliver(&state, company, Provider::Goodera, &new_id())
        .await
        .unwrap();
    // The sandbox issues 3600 s tokens; a minute before expiry is still fine…
    h.clock.advance(Duration::from_secs(3600 - 61));
    deliver(&state, company, Provider::Goodera, &new_id())
        .await
        .unwrap();
    assert_eq!(h.tokens_issued(Provider::Goodera).await, 1);
    // …and within the last minute it is replaced before use.
    h.clock.advance(Duration::from_secs(2));
    deliver(&state, company, Provider::Goodera, &new_id())
        .await
        .unwrap();
    assert_eq!(h.tokens_issued(Provider::Goodera).await, 2);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_401_refreshes_the_token_once_and_repeats_once(pool: PgPool) {
    let h = Harness::start(pool).await;
    let state = h.state(&[]);
    let company = Uuid::new_v4();
    deliver(&state, company, Provider::Workday, &new_id())
        .await
        .unwrap();
    h.control("tokens/expire", json!({})).await;
    let id = new_id();
    deliver(&state, company, Provider::Workday, &id)
        .await
        .unwrap();
    assert_eq!(h.tokens_issued(Provider::Workday).await, 2);
    assert_eq!(h.received(Provider::Workday).await.len(), 2);

    // A 401 that a fresh token does not cure is an auth error, after one repeat.
    h.control(
        "faults",
        json!({"provider": "workday", "count": 2, "status": 401}),
    )
    .await;
    let before = h.requests(Provider::Workday).await;
    let err = deliver(&state, company, Provider::Workday, &new_id())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth, "{err}");
    assert_eq!(h.requests(Provider::Workday).await - before, 2);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn stored_tokens_survive_a_restart_and_are_unreadable_under_another_key(pool: PgPool) {
    let h = Harness::start(pool.clone()).await;
    let company = Uuid::new_v4();
    deliver(&h.state(&[]), company, Provider::Goodera, &new_id())
        .await
        .unwrap();

    let (sealed,): (Vec<u8>,) = sqlx::query_as(
        "SELECT encrypted_token FROM impact_provider_tokens WHERE company_id = $1 AND provider = 'goodera'",
    )
    .bind(company)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        !String::from_utf8_lossy(&sealed).contains("sandbox"),
        "the token is not stored in clear"
    );

    // A "restart": a new registry over the same database reuses the token.
    deliver(&h.state(&[]), company, Provider::Goodera, &new_id())
        .await
        .unwrap();
    assert_eq!(h.tokens_issued(Provider::Goodera).await, 1);

    // Under another key the stored token does not decrypt: a new one is fetched.
    let other_key = "b3RoZXItdG9rZW4ta2V5LW90aGVyLXRva2VuLWtleSE=";
    deliver(
        &h.state(&[("TOKEN_ENCRYPTION_KEY", other_key)]),
        company,
        Provider::Goodera,
        &new_id(),
    )
    .await
    .unwrap();
    assert_eq!(h.tokens_issued(Provider::Goodera).await, 2);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn workday_rest_uses_the_refresh_token_grant_when_configured(pool: PgPool) {
    let h = Harness::start(pool).await;
    let company = Uuid::new_v4();
    let state = h.state(&[("WORKDAY_REFRESH_TOKEN", sandbox::WORKDAY_REFRESH_TOKEN)]);
    deliver(&state, company, Provider::Workday, &new_id())
        .await
        .unwrap();
    let wrong = h.state(&[("WORKDAY_REFRESH_TOKEN", "revoked-refresh-token")]);
    let err = deliver(&wrong, Uuid::new_v4(), Provider::Workday, &new_id())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth, "{err}");
    assert!(err.to_string().contains("invalid_grant"), "{err}");
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_429_carries_retry_after_into_the_retry_decision(pool: PgPool) {
    let h = Harness::start(pool).await;
    let state = h.state(&[]);
    let company = Uuid::new_v4();
    h.control(
        "faults",
        json!({"provider": "goodera", "count": 1, "status": 429, "retryAfterSecs": 7}),
    )
    .await;
    let err = deliver(&state, company, Provider::Goodera, &new_id())
        .await
        .unwrap_err();
    // Retry-After, and a random part of one window so that deliveries
    // refused together do not all come back together.
    let ConnectorError::RateLimited {
        status: Some(429),
        retry_after: Some(retry_after),
        ref excerpt,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        excerpt.as_deref(),
        Some(
            r#"{"error":"sandbox_fault","error_description":"injected by POST /_sandbox/faults"}"#
        )
    );
    assert!(
        retry_after >= Duration::from_secs(7) && retry_after <= Duration::from_secs(67),
        "{retry_after:?}"
    );
    let policy = state.config.connectors.retry.get(Provider::Goodera);
    let made = AttemptsMade {
        total: 1,
        rate_limited: 1,
    };
    assert_eq!(policy.next_delay(made, &err), Some(retry_after));
}

/// The retry loop the delivery queue runs, one provider call per attempt:
/// two 503s then success takes three calls, with backoff delays in between.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn two_503s_then_success_takes_three_attempts(pool: PgPool) {
    let h = Harness::start(pool).await;
    let state = h.state(&[]);
    let company = Uuid::new_v4();
    h.control(
        "faults",
        json!({"provider": "benevity", "count": 2, "status": 503}),
    )
    .await;
    let policy = state.config.connectors.retry.get(Provider::Benevity);
    let id = new_id();
    let mut delays = Vec::new();
    let mut attempts = 0;
    let receipt = loop {
        attempts += 1;
        match deliver(&state, company, Provider::Benevity, &id).await {
            Ok(receipt) => break receipt,
            Err(err) => {
                assert_eq!(err.class(), ErrorClass::Transient, "{err}");
                let made = AttemptsMade {
                    total: attempts,
                    rate_limited: 0,
                };
                delays.push(policy.next_delay(made, &err).expect("retryable"));
            }
        }
    };
    assert_eq!(attempts, 3);
    assert!(receipt.provider_reference.is_some());
    assert!((900..=1100).contains(&delays[0].as_millis()), "{delays:?}");
    assert!((1800..=2200).contains(&delays[1].as_millis()), "{delays:?}");
    assert_eq!(h.received(Provider::Benevity).await[0]["timesReceived"], 1);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn client_errors_are_permanent_and_never_retried(pool: PgPool) {
    let h = Harness::start(pool).await;
    let state = h.state(&[]);
    let policy = state.config.connectors.retry.get(Provider::Goodera);
    for status in [400, 403, 404, 422] {
        h.control(
            "faults",
            json!({"provider": "goodera", "count": 1, "status": status}),
        )
        .await;
        let err = deliver(&state, Uuid::new_v4(), Provider::Goodera, &new_id())
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent, "HTTP {status}: {err}");
        let made = AttemptsMade {
            total: 1,
            rate_limited: 0,
        };
        assert_eq!(policy.next_delay(made, &err), None);
    }
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_dropped_connection_is_transient(pool: PgPool) {
    let h = Harness::start(pool).await;
    let state = h.state(&[]);
    h.control("drops", json!({"provider": "benevity", "count": 1}))
        .await;
    let err = deliver(&state, Uuid::new_v4(), Provider::Benevity, &new_id())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn soap_faults_are_classified_by_their_code(pool: PgPool) {
    let h = Harness::start(pool).await;
    let company = Uuid::new_v4();
    let wrong_password = h.state(&[("WORKDAY_PROTOCOL", "soap"), ("WORKDAY_PASSWORD", "nope")]);
    let err = deliver(&wrong_password, company, Provider::Workday, &new_id())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth, "{err}");
    assert!(
        err.to_string().contains("Client.authenticationError"),
        "{err}"
    );

    // A report that bypassed our validation: the provider's validation fault
    // comes back permanent, with its messages kept.
    let soap = h.state(&[("WORKDAY_PROTOCOL", "soap")]);
    let mut invalid = report(company);
    invalid.outcome_scores.insert("wellbeing".into(), 1.5);
    let err = soap
        .delivery
        .connectors
        .connector(company, Provider::Workday)
        .await
        .unwrap()
        .deliver(DeliveryRequest {
            delivery_id: &new_id(),
            report: &invalid,
        })
        .await
        .unwrap_err();
    let ConnectorError::Permanent {
        message, details, ..
    } = &err
    else {
        panic!("expected a permanent error, got {err:?}");
    };
    assert!(message.contains("Client.validationError"), "{message}");
    assert!(!details.is_empty(), "{err:?}");
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_repeated_delivery_id_takes_effect_once(pool: PgPool) {
    let h = Harness::start(pool).await;
    let company = Uuid::new_v4();
    for provider in Provider::ALL {
        let state = h.state(&[]);
        let id = new_id();
        let first = deliver(&state, company, provider, &id).await.unwrap();
        let second = deliver(&state, company, provider, &id).await.unwrap();
        assert_eq!(
            first.provider_reference, second.provider_reference,
            "{provider}"
        );
        let received = h.received(provider).await;
        let entries: Vec<_> = received
            .iter()
            .filter(|r| r["idempotencyKey"] == id.as_str())
            .collect();
        assert_eq!(entries.len(), 1, "{provider}");
        assert_eq!(entries[0]["timesReceived"], 2, "{provider}");
    }
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_circuit_opens_after_five_failures_and_a_probe_closes_it(pool: PgPool) {
    let h = Harness::start(pool).await;
    let state = h.state(&[]);
    let company = Uuid::new_v4();
    h.control(
        "faults",
        json!({"provider": "benevity", "count": 5, "status": 503}),
    )
    .await;
    for _ in 0..5 {
        let err = deliver(&state, company, Provider::Benevity, &new_id())
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(503));
    }
    let circuit = |state: &AppState| {
        state
            .delivery
            .connectors
            .circuits()
            .into_iter()
            .find(|c| c.provider == Provider::Benevity)
            .unwrap()
            .state
    };
    assert_eq!(circuit(&state), CircuitState::Open);

    // Open: fails fast without reaching the provider.
    let before = h.requests(Provider::Benevity).await;
    let err = deliver(&state, company, Provider::Benevity, &new_id())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ConnectorError::CircuitOpen {
            retry_after: Duration::from_secs(30)
        }
    );
    assert_eq!(h.requests(Provider::Benevity).await, before);

    // After the cool-down one probe goes through and, succeeding, closes it.
    h.clock.advance(Duration::from_secs(30));
    assert_eq!(circuit(&state), CircuitState::HalfOpen);
    deliver(&state, company, Provider::Benevity, &new_id())
        .await
        .unwrap();
    assert_eq!(circuit(&state), CircuitState::Closed);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_connection_test_checks_credentials_without_delivering(pool: PgPool) {
    let h = Harness::start(pool).await;
    let company = Uuid::new_v4();
    for overrides in [
        &[][..],
        &[("BENEVITY_AUTH", "oauth2")][..],
        &[("GOODERA_AUTH", "api_key")][..],
        &[("WORKDAY_PROTOCOL", "soap")][..],
    ] {
        let state = h.state(overrides);
        for provider in Provider::ALL {
            let connector = state
                .delivery
                .connectors
                .connector(company, provider)
                .await
                .unwrap();
            connector
                .health()
                .await
                .unwrap_or_else(|err| panic!("{provider} {overrides:?}: {err}"));
        }
    }
    let wrong = h.state(&[
        ("GOODERA_CLIENT_SECRET", "wrong"),
        ("WORKDAY_PROTOCOL", "soap"),
        ("WORKDAY_PASSWORD", "wrong"),
    ]);
    // Another company: the first one's stored Goodera token is still valid.
    let stranger = Uuid::new_v4();
    for provider in [Provider::Goodera, Provider::Workday] {
        let err = wrong
            .delivery
            .connectors
            .connector(stranger, provider)
            .await
            .unwrap()
            .health()
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Auth, "{provider}: {err}");
    }
    for provider in Provider::ALL {
        assert!(h.received(provider).await.is_empty(), "{provider}");
    }
}

/// Another origin a provider could redirect to: it records every request
/// (method, target, headers, body) and answers 200 with JSON that would pass
/// for an accepted delivery and for an access token.
struct OtherOrigin {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl OtherOrigin {
    async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = Arc::clone(&seen);
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let recorder = Arc::clone(&recorder);
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .unwrap_or_default();
                recorder.lock().unwrap().push(format!(
                    "{} {} {:?} {}",
                    parts.method,
                    parts.uri,
                    parts.headers,
                    String::from_utf8_lossy(&body)
                ));
                axum::Json(json!({
                    "id": "other_1",
                    "access_token": "other-origin-token",
                    "token_type": "Bearer",
                    "expires_in": 3600,
                }))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// A provider answering a redirect would have us re-send the report with
/// its credentials (API key and signature, SOAP password, bearer token) to
/// whatever origin `Location` names; a 302 would turn the POST into an
/// empty GET. Nothing follows: the redirect is a permanent failure naming
/// the status and the target.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn provider_redirects_are_refused_and_nothing_reaches_the_other_origin(pool: PgPool) {
    let h = Harness::start(pool).await;
    let other = OtherOrigin::start().await;
    let company = Uuid::new_v4();
    let (defaults, soap) = (h.state(&[]), h.state(&[("WORKDAY_PROTOCOL", "soap")]));
    let target = format!("{}/collect", other.url);
    for status in [302, 307, 308] {
        for (state, provider) in [
            (&defaults, Provider::Benevity),
            (&soap, Provider::Workday),
            (&defaults, Provider::Workday),
            (&defaults, Provider::Goodera),
        ] {
            h.control(
                "faults",
                json!({"provider": provider, "count": 1, "status": status,
                       "location": format!("{target}?copy=all")}),
            )
            .await;
            let err = deliver(state, company, provider, &new_id())
                .await
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "rejected: HTTP {status} redirect to {target} not followed: \
                     provider calls never follow redirects"
                ),
                "{provider}"
            );
            assert_eq!(err.class(), ErrorClass::Permanent, "{provider}");
            assert_eq!(err.status(), Some(status), "{provider}");
        }
    }
    assert_eq!(other.requests(), Vec::<String>::new());
    for provider in Provider::ALL {
        assert!(h.received(provider).await.is_empty(), "{provider}");
    }
}

/// The token request carries the client secret (Basic) and, for Workday,
/// the refresh token (form body): a token endpoint's redirect is refused too.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn token_endpoint_redirects_are_refused_and_nothing_reaches_the_other_origin(pool: PgPool) {
    let h = Harness::start(pool).await;
    let other = OtherOrigin::start().await;
    let company = Uuid::new_v4();
    let state = h.state(&[
        ("BENEVITY_AUTH", "oauth2"),
        ("WORKDAY_REFRESH_TOKEN", sandbox::WORKDAY_REFRESH_TOKEN),
    ]);
    let target = format!("{}/oauth/token", other.url);
    for status in [302, 307, 308] {
        for provider in Provider::ALL {
            h.control(
                "faults",
                json!({"provider": provider, "endpoint": "token", "count": 1,
                       "status": status, "location": target}),
            )
            .await;
            let err = deliver(&state, company, provider, &new_id())
                .await
                .unwrap_err();
            assert_eq!(err.class(), ErrorClass::Permanent, "{provider}: {err}");
            assert_eq!(err.status(), Some(status), "{provider}");
            assert!(
                err.to_string()
                    .contains(&format!("HTTP {status} redirect to {target} not followed")),
                "{provider}: {err}"
            );
            assert_eq!(h.tokens_issued(provider).await, 0, "{provider}");
            assert_eq!(h.requests(provider).await, 0, "{provider}: no API call");
        }
    }
    assert_eq!(other.requests(), Vec::<String>::new());
}
