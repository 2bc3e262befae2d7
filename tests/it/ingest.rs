//! Ingest end to end: the real router over a fresh database, pulling from
//! the provider sandbox's seven sources over real HTTP. Retry pauses are
//! configured to 1 ms so a retried page does not make a test wait.

use axum::http::StatusCode;
use impact_in::sandbox::{Sandbox, SandboxConfig, credentials, ingest as generated};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{ADMIN, MANAGE, TestApp, sandbox_api};

pub(crate) struct Ingest {
    pub(crate) app: TestApp,
    sandbox: Sandbox,
    pub(crate) company: Uuid,
    token: String,
}

const STREAMS: [&str; 9] = [
    "benevity-volunteers",
    "benevity-donations",
    "goodera-volunteers",
    "goodera-donations",
    "workday-directory",
    "kintell-enrollments",
    "upskilling-enrollments",
    "buddy-data",
    "mentorship-placements",
];

fn route(stream: &str) -> String {
    let (system, kind) = stream.split_once('-').unwrap();
    format!("/v1/ingest/{system}/{kind}")
}

impl Ingest {
    pub(crate) async fn start(pool: PgPool, overrides: &[(&str, &str)]) -> Self {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let mut vars: Vec<(String, String)> = credentials::env_vars(&sandbox.url())
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        vars.push(("INGEST_RETRY_INITIAL_DELAY_MS".into(), "1".into()));
        for (k, v) in overrides {
            vars.push(((*k).into(), (*v).into()));
        }
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let app = TestApp::start(pool, crate::common::config(&pairs)).await;
        let company = Uuid::new_v4();
        Self {
            app,
            sandbox,
            company,
            token: crate::common::token(&[company], &[ADMIN, MANAGE]),
        }
    }

    async fn control(&self, route: &str, body: Value) {
        let status = sandbox_api::control(&self.sandbox, route, body).await;
        assert!(status.is_success(), "{route}: {status}");
    }

    /// Runs one stream; the answer (200: the run ended).
    pub(crate) async fn run(&self, stream: &str, query: &str) -> Value {
        let response = self
            .app
            .post(
                &format!("{}?company_id={}{query}", route(stream), self.company),
                Some(&self.token),
                Value::Null,
            )
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        response.body
    }

    /// Runs all nine streams; the answer, which must be a 200 where every
    /// stream succeeded.
    async fn run_all(&self, query: &str) -> Value {
        let answer = self
            .app
            .post(
                &format!("/v1/ingest/all?company_id={}{query}", self.company),
                Some(&self.token),
                Value::Null,
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.body["success"], true, "{}", answer.body);
        answer.body
    }

    pub(crate) async fn stored(&self, stream: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM ingest_records WHERE company_id = $1 AND stream = $2",
        )
        .bind(self.company)
        .bind(stream)
        .fetch_one(&self.app.state.db)
        .await
        .unwrap()
    }
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn all_nine_streams_page_to_the_end_and_a_rerun_stores_nothing_twice(pool: PgPool) {
    let t = Ingest::start(pool, &[]).await;
    let answer = t.run_all("&limit=40").await;
    assert_eq!(answer["summary"]["successful"], 9);
    let volume = generated::DEFAULT_RECORDS as i64;
    for result in answer["results"].as_array().unwrap() {
        let stream = result["connector"].as_str().unwrap();
        assert_eq!(result["status"], "fulfilled", "{result}");
        assert_eq!(result["data"]["status"], "succeeded", "{result}");
        assert_eq!(
            result["data"]["metadata"]["recordsProcessed"], volume,
            "{result}"
        );
        assert_eq!(result["data"]["metadata"]["recordsFailed"], 0, "{result}");
        // 250 records, 40 a page: 7 pages (the last one partly filled).
        assert!(result["data"]["metadata"]["pages"].as_i64().unwrap() >= 7);
        assert_eq!(t.stored(stream).await, volume, "{stream}");
    }

    // Again: only records at the saved cursor's time come back, and they
    // change nothing.
    for stream in STREAMS {
        let again = t.run(stream, "").await;
        assert_eq!(again["status"], "succeeded");
        let fetched = again["metadata"]["totalRecords"].as_i64().unwrap();
        assert!(fetched <= 2, "{stream} fetched {fetched} again");
        assert_eq!(t.stored(stream).await, volume);
    }
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn an_incremental_run_takes_only_what_changed_and_since_overrides_the_cursor(pool: PgPool) {
    let t = Ingest::start(pool, &[]).await;
    let stream = "kintell-enrollments";
    t.run(stream, "").await;
    let before: Value = sqlx::query_scalar(
        "SELECT data FROM ingest_records WHERE company_id = $1 AND stream = $2 ORDER BY source_id LIMIT 1",
    )
    .bind(t.company)
    .bind(stream)
    .fetch_one(&t.app.state.db)
    .await
    .unwrap();
    t.control("ingest/changes", json!({"stream": stream, "count": 5}))
        .await;
    let changed = t.run(stream, "").await;
    let fetched = changed["metadata"]["totalRecords"].as_i64().unwrap();
    assert!((5..=7).contains(&fetched), "{changed}");
    assert_eq!(t.stored(stream).await, generated::DEFAULT_RECORDS as i64);
    let after: Value = sqlx::query_scalar(
        "SELECT data FROM ingest_records WHERE company_id = $1 AND stream = $2 ORDER BY source_id LIMIT 1",
    )
    .bind(t.company)
    .bind(stream)
    .fetch_one(&t.app.state.db)
    .await
    .unwrap();
    assert_ne!(
        before["id"], after["id"],
        "the changed record is a new event"
    );

    // `since` far back: everything again, still stored once.
    let full = t.run(stream, "&since=2020-01-01").await;
    assert_eq!(
        full["metadata"]["totalRecords"],
        generated::DEFAULT_RECORDS as i64
    );
    assert_eq!(t.stored(stream).await, generated::DEFAULT_RECORDS as i64);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_run_stopped_by_a_fault_is_partial_and_the_next_resumes_without_duplicates(pool: PgPool) {
    let t = Ingest::start(pool, &[("INGEST_RETRY_ATTEMPTS", "2")]).await;
    let stream = "goodera-volunteers";
    // Two pages pass, then the third fails on both tries.
    t.control(
        "faults",
        json!({"stream": stream, "afterRequests": 2, "count": 2, "status": 503}),
    )
    .await;
    let partial = t.run(stream, "&limit=50").await;
    assert_eq!(partial["status"], "partial", "{partial}");
    assert_eq!(partial["success"], false);
    assert_eq!(partial["metadata"]["pages"], 2);
    assert_eq!(t.stored(stream).await, 100);
    let error = partial["errors"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(error["kind"], "source", "{error}");
    assert_eq!(error["errorClass"], "transient", "{error}");

    let resumed = t.run(stream, "&limit=50").await;
    assert_eq!(resumed["status"], "succeeded", "{resumed}");
    // It started at the last stored page's time, not at the beginning.
    assert!(resumed["metadata"]["totalRecords"].as_i64().unwrap() <= 152);
    assert_eq!(t.stored(stream).await, generated::DEFAULT_RECORDS as i64);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_malformed_record_is_counted_named_and_the_rest_of_its_page_stored(pool: PgPool) {
    let t = Ingest::start(pool, &[]).await;
    let stream = "benevity-donations";
    t.control(
        "ingest/malformed",
        json!({"stream": stream, "indices": [3, 120]}),
    )
    .await;
    let run = t.run(stream, "").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["metadata"]["recordsFailed"], 2, "{run}");
    assert_eq!(
        run["metadata"]["recordsProcessed"],
        generated::DEFAULT_RECORDS as i64 - 2
    );
    let errors = run["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{run}");
    for error in errors {
        assert_eq!(error["kind"], "record");
        assert!(error["field"].is_string(), "{error}");
    }
    let text = run.to_string();
    for index in [3, 120] {
        for pii in generated::pii_of(generated::Stream::BenevityDonations, index) {
            assert!(!text.contains(&pii), "the answer quotes {pii}");
        }
    }
}

/// Every known personal value the sandbox put in its records, searched for
/// in a dump of every table after ingesting all nine streams: none is
/// there.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn no_personal_data_from_any_stream_reaches_the_database(pool: PgPool) {
    let t = Ingest::start(pool, &[]).await;
    t.run_all("").await;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(&t.app.state.db)
            .await
            .unwrap();
    let mut dump = String::new();
    for table in &tables {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT row_to_json(t)::text FROM {table} t"
        )))
        .fetch_all(&t.app.state.db)
        .await
        .unwrap();
        dump.extend(rows);
    }
    assert!(
        dump.contains("ingest.volunteer.logged"),
        "records were stored"
    );
    let known: Vec<(String, u64)> = <generated::Stream as strum::VariantArray>::VARIANTS
        .iter()
        .flat_map(|&stream| {
            (0..generated::DEFAULT_RECORDS).flat_map(move |index| {
                generated::pii_of(stream, index)
                    .into_iter()
                    .map(move |pii| (pii, index))
            })
        })
        .collect();
    assert!(
        known.len() > 2000,
        "only {} values to look for",
        known.len()
    );
    // One pass over the dump for all of them.
    let finder = aho_corasick::AhoCorasick::new(known.iter().map(|(pii, _)| pii)).unwrap();
    if let Some(found) = finder.find_iter(&dump).next() {
        let (pii, index) = &known[found.pattern().as_usize()];
        panic!("{pii} (of record {index}) is stored");
    }
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn runs_and_records_are_tenant_scoped(pool: PgPool) {
    let t = Ingest::start(pool, &[]).await;
    let run = t.run("mentorship-placements", "").await;
    let run_id = run["runId"].as_str().unwrap();

    let other = crate::common::token(&[Uuid::new_v4()], &[ADMIN, MANAGE]);
    let refused = t
        .app
        .post(
            &format!("/v1/ingest/buddy/data?company_id={}", t.company),
            Some(&other),
            Value::Null,
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let read_only = crate::common::token(&[t.company], &[ADMIN]);
    let refused = t
        .app
        .post(
            &format!("/v1/ingest/buddy/data?company_id={}", t.company),
            Some(&read_only),
            Value::Null,
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let hidden = t
        .app
        .get(&format!("/v1/ingest/runs/{run_id}"), Some(&other))
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    let none = t.app.get("/v1/ingest/records", Some(&other)).await;
    assert_eq!(none.body["data"], json!([]));
    let runs = t.app.get("/v1/ingest/runs", Some(&other)).await;
    assert_eq!(runs.body["data"], json!([]));

    let mine = t
        .app
        .get(
            "/v1/ingest/records?type=ingest.placement.created&limit=7",
            Some(&t.token),
        )
        .await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
    assert_eq!(mine.body["data"].as_array().unwrap().len(), 7);
    let first = &mine.body["data"][0];
    assert_eq!(first["type"], "ingest.placement.created");
    assert_eq!(first["event"]["correlationId"], run_id);
    assert_eq!(first["event"]["type"], "ingest.placement.created");
    let next = mine.body["nextCursor"].as_str().unwrap();
    let second = t
        .app
        .get(
            &format!("/v1/ingest/records?limit=7&cursor={next}"),
            Some(&t.token),
        )
        .await;
    assert_ne!(second.body["data"][0]["id"], first["id"]);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_second_request_while_a_run_goes_answers_that_run(pool: PgPool) {
    // The sandbox answers slowly, so the first run is still going.
    let t = Ingest::start(pool, &[("INGEST_SYNC_WAIT_SECS", "0")]).await;
    t.control("latency", json!({"stream": "workday-directory", "ms": 200}))
        .await;
    let path = format!("/v1/ingest/workday/directory?company_id={}", t.company);
    let (first, second) = tokio::join!(
        t.app.post(&path, Some(&t.token), Value::Null),
        t.app.post(&path, Some(&t.token), Value::Null),
    );
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.body);
    assert_eq!(first.body["runId"], second.body["runId"]);
    assert_eq!(first.body["status"], "running");
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn bad_requests_name_the_parameter(pool: PgPool) {
    let t = Ingest::start(pool, &[]).await;
    for (query, field) in [
        (String::new(), "company_id"),
        (format!("?company_id={}&limit=0", t.company), "limit"),
        (
            format!("?company_id={}&since=yesterday", t.company),
            "since",
        ),
        ("?company_id=nope".to_owned(), "company_id"),
    ] {
        let answer = t
            .app
            .post(
                &format!("/v1/ingest/goodera/donations{query}"),
                Some(&t.token),
                Value::Null,
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(answer.error_fields(), [field], "{query}");
    }
    let unknown = t
        .app
        .post(
            &format!("/v1/ingest/goodera/directory?company_id={}", t.company),
            Some(&t.token),
            Value::Null,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

/// The real binary, killed (SIGKILL) in the middle of a run: a second
/// process takes the run over once its lease runs out and finishes it from
/// the last stored page; every record is stored once, and neither process's
/// logs, at debug, hold any of the records' personal data.
#[tokio::test]
async fn a_run_killed_mid_way_is_resumed_by_another_process_without_loss_or_duplicates() {
    use std::{process::Stdio, time::Duration};

    use crate::binary::{
        free_port, fresh_database_url, impact_in, read_all, signal, succeeded, terminate, until_ok,
    };

    const VOLUME: u64 = 2000;
    let sandbox = Sandbox::start(SandboxConfig::default().with_records(VOLUME))
        .await
        .unwrap();
    // Slow pages, so the kill lands mid-run.
    let status = sandbox_api::control(
        &sandbox,
        "latency",
        json!({"stream": "benevity-volunteers", "ms": 60}),
    )
    .await;
    assert!(status.is_success());
    let database = fresh_database_url("ingest_killed");
    succeeded(
        impact_in(&[("DATABASE_URL", &database)])
            .arg("migrate")
            .output()
            .unwrap(),
    );
    let start = |port: u16| {
        let mut vars: Vec<(&str, String)> = credentials::env_vars(&sandbox.url());
        vars.extend([
            ("DATABASE_URL", database.clone()),
            ("JWT_SECRET", crate::common::JWT_SECRET.into()),
            ("TOKEN_ENCRYPTION_KEY", crate::common::TOKEN_KEY.into()),
            ("PII_HASH_KEY", crate::common::PII_KEY.into()),
            ("HOST", "127.0.0.1".into()),
            ("PORT_IMPACT_IN", port.to_string()),
            ("LOG_LEVEL", "debug".into()),
            ("INGEST_SYNC_WAIT_SECS", "0".into()),
            ("INGEST_LEASE_SECS", "2".into()),
            ("INGEST_RESUME_INTERVAL_SECS", "1".into()),
        ]);
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut child = tokio::process::Command::from(impact_in(&pairs))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let logs = tokio::spawn(read_all(child.stderr.take().unwrap()));
        (child, logs)
    };
    let company = Uuid::new_v4();
    let token = crate::common::token(&[company], &[ADMIN, MANAGE]);
    let client = reqwest::Client::new();

    let first_port = free_port();
    let (first, first_logs) = start(first_port);
    until_ok(first_port, "/health/readiness").await;
    let started: Value = client
        .post(format!(
            "http://127.0.0.1:{first_port}/v1/ingest/benevity/volunteers?company_id={company}&limit=100"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run = started["runId"].as_str().unwrap().to_owned();
    let run_at = |port: u16| {
        let (client, token, run) = (client.clone(), token.clone(), run.clone());
        async move {
            client
                .get(format!("http://127.0.0.1:{port}/v1/ingest/runs/{run}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    // Killed once a few pages are stored, long before the last of 20.
    tokio::time::timeout(Duration::from_secs(30), async {
        while run_at(first_port).await["metadata"]["pages"]
            .as_i64()
            .unwrap()
            < 3
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the run stores pages");
    signal(first.id().unwrap(), "KILL");
    let mut first = first;
    first.wait().await.unwrap();

    let second_port = free_port();
    let (second, second_logs) = start(second_port);
    until_ok(second_port, "/health/readiness").await;
    let finished = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let now = run_at(second_port).await;
            if now["status"] != "running" {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the other process finishes the run");
    assert_eq!(finished["status"], "succeeded", "{finished}");
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ingest_records WHERE company_id = $1")
            .bind(company)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored, VOLUME as i64);
    pool.close().await;

    terminate(second.id().unwrap());
    let mut second = second;
    second.wait().await.unwrap();
    let logs = first_logs.await.unwrap() + &second_logs.await.unwrap();
    assert!(logs.contains("resuming an ingest run"), "{logs}");
    let known: Vec<String> = (0..VOLUME)
        .flat_map(|index| generated::pii_of(generated::Stream::BenevityVolunteers, index))
        .collect();
    let finder = aho_corasick::AhoCorasick::new(&known).unwrap();
    if let Some(found) = finder.find_iter(&logs).next() {
        panic!("the logs hold {}", known[found.pattern().as_usize()]);
    }
    use sqlx::{Postgres, migrate::MigrateDatabase};
    let _ = Postgres::drop_database(&database).await;
}

/// A token the source stops accepting (expired early, revoked) is replaced
/// once and the page asked again; the run does not notice.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn an_expired_token_is_replaced_and_the_run_goes_on(pool: PgPool) {
    let t = Ingest::start(pool, &[]).await;
    let stream = "workday-directory";
    t.run(stream, "").await;
    t.control("tokens/expire", json!({})).await;
    let again = t.run(stream, "&since=2020-01-01").await;
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(
        again["metadata"]["totalRecords"],
        generated::DEFAULT_RECORDS as i64
    );
    let issued = sandbox_api::read(&t.sandbox, "stats").await["tokensIssued"]["workday"].clone();
    assert_eq!(issued, 2, "one token, then one replacement");
}

/// Goodera's 429 is a rate limit, not a failure of the source: with tries
/// left the page is asked again after the pause the source asked for (here
/// none are left, so the run stops and says why), and the next run
/// resumes.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn goodera_429_is_reported_as_a_rate_limit_and_the_next_run_resumes(pool: PgPool) {
    let t = Ingest::start(pool, &[("INGEST_RETRY_ATTEMPTS", "1")]).await;
    let stream = "goodera-donations";
    t.control(
        "faults",
        json!({"stream": stream, "afterRequests": 1, "count": 1, "status": 429, "retryAfterSecs": 30}),
    )
    .await;
    let limited = t.run(stream, "").await;
    assert_eq!(limited["status"], "partial", "{limited}");
    let error = limited["errors"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(error["errorClass"], "rate_limited", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("rate limited, retry after"),
        "{error}"
    );
    // The gate holds Goodera calls for the pause the source asked; a new
    // run is throttled without a request until then.
    let held = t.run(stream, "").await;
    assert_eq!(held["status"], "failed", "{held}");
    assert_eq!(held["errors"][0]["errorClass"], "rate_limited");
    assert_eq!(t.stored(stream).await, 100);
}

/// Each source probed, with its runs' figures and no tenant data; a source
/// that does not answer is unhealthy and says why.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn integrations_health_probes_every_source_and_counts_runs(pool: PgPool) {
    let t = Ingest::start(pool, &[]).await;
    t.run("mentorship-placements", "").await;
    t.control(
        "faults",
        json!({"stream": "kintell-enrollments", "count": 1, "status": 500}),
    )
    .await;
    let health = t.app.get("/integrations/health", None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
    let body = &health.body;
    assert_eq!(body["summary"]["totalConnectors"], 7, "{body}");
    assert_eq!(body["summary"]["unhealthy"], 1, "{body}");
    assert_eq!(body["status"], "unhealthy");
    let connector = |name: &str| {
        body["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    let kintell = connector("kintell");
    assert_eq!(kintell["status"], "unhealthy");
    assert!(kintell["reason"].as_str().unwrap().starts_with("transient"));
    let mentorship = connector("mentorship");
    assert_eq!(mentorship["status"], "healthy", "{mentorship}");
    assert_eq!(mentorship["type"], "internal");
    assert_eq!(mentorship["metrics"]["totalIngests"], 1);
    assert_eq!(mentorship["metrics"]["successRate"], 1.0);
    assert!(mentorship["metrics"]["avgLag"].is_number());
    assert_eq!(connector("workday")["type"], "external");
    assert!(!body.to_string().contains(&t.company.to_string()));

    let one = t.app.get("/integrations/health/goodera", None).await;
    assert_eq!(one.body["name"], "goodera", "{}", one.body);
    let unknown = t.app.get("/integrations/health/salesforce", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

/// The runs' figures behind `/integrations/health` and the ingest gauges,
/// per stream: runs ended in the window and how many succeeded, and the
/// newest success even when it is older than the window; every stream is
/// answered, one that never ran with nothing.
#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn stream_runs_count_the_window_and_find_the_last_success(pool: PgPool) {
    use impact_in::ingest::{store, stream::Stream};

    let company = Uuid::new_v4();
    let last_success: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "WITH runs AS (
             INSERT INTO ingest_runs (id, company_id, stream, status, page_size, started_at,
                                      finished_at)
             SELECT gen_random_uuid(), $1, 'benevity-volunteers', status, 100,
                    now() - age - interval '1 minute', now() - age
             FROM (VALUES ('succeeded', interval '30 hours'), ('succeeded', interval '50 hours'),
                          ('failed', interval '2 hours'), ('partial', interval '1 hour'))
                  AS r(status, age)
             RETURNING status, finished_at
         )
         SELECT max(finished_at) FROM runs WHERE status = 'succeeded'",
    )
    .bind(company)
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO ingest_runs (id, company_id, stream, status, page_size, started_at,
                                  finished_at)
         VALUES (gen_random_uuid(), $1, 'workday-directory', 'succeeded', 100,
                 now() - interval '2 hours', now() - interval '1 hour'),
                (gen_random_uuid(), $1, 'workday-directory', 'running', 100, now(), NULL)",
    )
    .bind(company)
    .execute(&pool)
    .await
    .unwrap();

    let runs = store::stream_runs(&pool, 24).await.unwrap();
    assert_eq!(runs.len(), Stream::ALL.len());
    let of = |name: &str| runs.iter().find(|r| r.stream.as_str() == name).unwrap();
    let volunteers = of("benevity-volunteers");
    assert_eq!((volunteers.ended, volunteers.succeeded), (2, 0));
    let found = volunteers.last_success.unwrap();
    assert!(
        (found - last_success).num_milliseconds().abs() < 1,
        "{found}"
    );
    let directory = of("workday-directory");
    assert_eq!((directory.ended, directory.succeeded), (1, 1));
    let never = of("buddy-data");
    assert_eq!(
        (never.ended, never.succeeded, never.last_success),
        (0, 0, None)
    );
}
