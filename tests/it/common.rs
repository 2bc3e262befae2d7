//! Shared test harness: the real router over a real (fresh) Postgres database
//! and real Redis, driven in-process with `tower::ServiceExt::oneshot`.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Method, Request, StatusCode, header},
};
use http_body_util::BodyExt;
use impact_in::{
    app::AppState,
    auth::JwtSigner,
    clock::{SharedClock, SystemClock},
    config::Config,
};
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";
/// 32 bytes, base64: the key provider tokens are encrypted under in tests.
pub const TOKEN_KEY: &str = "dGVzdC10b2tlbi1rZXktdGVzdC10b2tlbi1rZXktMDE=";
pub const OPS_KEY: &str = "ops-key-for-tests-0123456789";
/// 32 bytes, base64: the key of the keyed redaction modes in tests.
pub const PII_KEY: &str = "cGlpLWtleS1mb3ItdGVzdHMtcGlpLWtleS1mb3ItdGU=";
pub const ADMIN: &str = "ADMIN_CONSOLE";
pub const MANAGE: &str = "MANAGE_INTEGRATIONS";

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Settings for tests: real Redis under a key prefix of its own, so parallel
/// tests never see each other's keys. `overrides` replace or add variables;
/// an empty value removes one.
pub fn config(overrides: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::from([
        // The pool is handed in by the test; this URL is only parsed.
        (
            "DATABASE_URL".into(),
            "postgres://unused@127.0.0.1/unused".into(),
        ),
        ("REDIS_URL".into(), redis_url()),
        (
            "REDIS_KEY_PREFIX".into(),
            format!("impact-in-test:{}:", Uuid::new_v4()),
        ),
        ("JWT_SECRET".into(), JWT_SECRET.into()),
        ("TOKEN_ENCRYPTION_KEY".into(), TOKEN_KEY.into()),
        ("OPS_API_KEYS".into(), OPS_KEY.into()),
        ("PII_HASH_KEY".into(), PII_KEY.into()),
        ("REQUEST_BODY_LIMIT_BYTES".into(), "4096".into()),
        ("HEALTH_CHECK_TIMEOUT_MS".into(), "1000".into()),
    ]);
    for (key, value) in overrides {
        if value.is_empty() {
            vars.remove(*key);
        } else {
            vars.insert((*key).into(), (*value).into());
        }
    }
    Config::from_map(&vars).expect("test configuration is valid")
}

pub struct TestApp {
    pub state: AppState,
    pub router: Router,
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestResponse {
    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts an RFC 9457 problem with this status and returns its body.
    pub fn problem(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.content_type(), "application/problem+json");
        assert_eq!(self.body["status"], status.as_u16());
        assert!(self.body["type"].is_string());
        assert!(self.body["title"].is_string());
        assert!(self.body["detail"].is_string());
        &self.body
    }

    /// The fields named in a problem's `errors` member.
    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl TestApp {
    /// The app over `pool`, started (as after a successful start-up).
    pub async fn start(pool: PgPool, config: Config) -> Self {
        Self::start_with_clock(pool, config, Arc::new(SystemClock)).await
    }

    /// As [`TestApp::start`], on a clock the test moves by hand.
    pub async fn start_with_clock(pool: PgPool, config: Config, clock: SharedClock) -> Self {
        let app =
            Self::with_state(AppState::with_clock(config, pool, clock).expect("state builds"));
        app.state.start_up(Default::default()).await;
        app
    }

    pub fn unstarted(pool: PgPool, config: Config) -> Self {
        Self::with_state(AppState::new(config, pool).expect("state builds"))
    }

    fn with_state(state: AppState) -> Self {
        let router = impact_in::http::router(state.clone());
        Self { state, router }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = bearer {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(json) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send(builder.body(body).unwrap()).await
    }

    /// Also serves the router on a real port of 127.0.0.1, in the
    /// background, for callers over HTTP (the sandbox's webhooks); its base
    /// URL.
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(axum::serve(listener, self.router.clone()).into_future());
        format!("http://{address}")
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> TestResponse {
        self.request(Method::GET, path, bearer, None).await
    }

    pub async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> TestResponse {
        self.request(Method::POST, path, bearer, Some(body)).await
    }

    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        TestResponse {
            status,
            headers,
            body,
        }
    }
}

/// A token signed with the test secret.
pub fn token(companies: &[Uuid], roles: &[&str]) -> String {
    token_with(&config(&[]), companies, roles, 3600)
}

pub fn token_with(config: &Config, companies: &[Uuid], roles: &[&str], ttl: u64) -> String {
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    JwtSigner::from_config(&config.auth)
        .unwrap()
        .sign("tester", companies, &roles, now(), ttl)
}

pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A pool to a port where nothing listens: Postgres "down".
pub fn unreachable_pool() -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(500))
        .connect_lazy("postgres://postgres@127.0.0.1:1/impact_in")
        .unwrap()
}

/// Signed with the test secret, expired two minutes ago (beyond the leeway).
pub fn expired_token(company: Uuid) -> String {
    JwtSigner::from_config(&config(&[]).auth).unwrap().sign(
        "tester",
        &[company],
        &[ADMIN.into()],
        now() - 180,
        60,
    )
}

/// A valid canonical impact report for `company`: the example of
/// docs/payloads.md.
pub fn report(company: Uuid) -> serde_json::Value {
    let mut report: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/impact_report.json")).unwrap();
    report["companyId"] = serde_json::json!(company);
    report
}

/// The address of a server that accepts TCP connections and never answers:
/// a database that hangs.
pub async fn black_hole() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    address
}

/// The provider sandbox's control API, as every test drives it.
pub mod sandbox_api {
    use impact_in::sandbox::Sandbox;
    use reqwest::StatusCode;
    use serde_json::Value;

    /// `POST /_sandbox/{route}` with `body`; the answer's status.
    pub async fn control(sandbox: &Sandbox, route: &str, body: Value) -> StatusCode {
        reqwest::Client::new()
            .post(format!("{}/_sandbox/{route}", sandbox.url()))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// `GET /_sandbox/{route}` (with its query), as JSON.
    pub async fn read(sandbox: &Sandbox, route: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}/_sandbox/{route}", sandbox.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// What the sandbox received (`?provider=…` narrows it).
    pub async fn received(sandbox: &Sandbox, query: &str) -> Vec<Value> {
        read(sandbox, &format!("received{query}"))
            .await
            .as_array()
            .unwrap()
            .clone()
    }

    /// API requests `provider` has seen, accepted or not.
    pub async fn requests(sandbox: &Sandbox, provider: &str) -> u64 {
        read(sandbox, "stats").await["requests"][provider]
            .as_u64()
            .unwrap_or(0)
    }
}
