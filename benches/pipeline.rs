//! The delivery pipeline benchmark of `docs/performance.md`: the release
//! binary as its own process (so its peak RSS is its own), over a fresh
//! database per run, real Redis, and the provider sandbox in this process,
//! which timestamps every delivery it receives.
//!
//! ```text
//! cargo bench --bench pipeline -- [throughput|latency|listing|sla|ratelimit|webhooks|ingest|retention|sla-monitor|bus|schedule|all] [--runs 3]
//! cargo bench --bench pipeline -- throughput --otlp   # with spans exported over OTLP
//! cargo bench --bench pipeline -- throughput --without-sla-rollup # the SLA rollup's triggers disabled, to see what they cost
//! cargo bench --bench pipeline -- ingest --records 111112 # nine streams, ~1,000,000 records
//! cargo bench --bench pipeline -- ingest --records 111112 --goodera-per-minute 100000 # without Goodera's limit
//! cargo bench --bench pipeline -- retention --batch-size 200 --pause-ms 50 # the latency open loop while 1,000,000 rows are cleaned
//! cargo bench --bench pipeline -- sla-monitor --companies 1000 # one SLA evaluation over 1,000,000 finished deliveries
//! cargo bench --bench pipeline -- bus --events 20000 --outbox 100000 # report-ready events in, the outbox relayed out (NATS_URL)
//! cargo bench --bench pipeline -- schedule --schedules 1000 # how late 1,000 schedules due at one instant fire (waits for the next minute)
//! ```
//!
//! Each scenario runs once as a warm-up (discarded), then `--runs` times,
//! and prints min / median / max of every figure.

use std::{
    collections::HashMap,
    net::TcpListener,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Datelike, Utc};
use impact_in::{
    auth::JwtSigner,
    clock::SystemClock,
    config::{BusConfig, Config, RetentionConfig, SlaConfig},
    sandbox::{Sandbox, SandboxConfig, credentials},
    scheduler::retention,
    sla::{MonitorContext, Thresholds, monitor},
};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const JWT_SECRET: &str = "bench-secret-bench-secret-bench-secret-01";
const TOKEN_KEY: &str = "YmVuY2gtdG9rZW4ta2V5LWJlbmNoLXRva2VuLWtleS0=";
const ROLES: [&str; 2] = ["ADMIN_CONSOLE", "MANAGE_INTEGRATIONS"];

struct Options {
    scenario: String,
    runs: usize,
    deliveries: usize,
    clients: usize,
    rate: u64,
    seconds: u64,
    rows: u64,
    /// Listing and SLA requests timed per query and run.
    requests: usize,
    /// Goodera deliveries queued at once in the rate-limit scenario.
    goodera: usize,
    /// Benevity deliveries sent meanwhile, at five a second.
    benevity: usize,
    /// Webhook events sent closed loop (verified, then refused); in the bus
    /// scenario, report-ready events published at once.
    events: usize,
    /// Webhook events a second in the open-loop part.
    event_rate: u64,
    /// Export spans (OTLP/HTTP) to a receiver in this process during the
    /// throughput scenario.
    otlp: bool,
    /// Disable the `sla_hourly` rollup's triggers in the throughput
    /// scenario's database: the same build with and without them.
    without_sla_rollup: bool,
    /// Records per ingest stream (nine streams).
    records: u64,
    /// Goodera's requests a minute in the ingest scenario (sandbox and
    /// service); `None`: its published 100.
    goodera_per_minute: Option<u64>,
    /// The retention scenario's `RETENTION_BATCH_SIZE`.
    batch_size: i64,
    /// The retention scenario's `RETENTION_BATCH_PAUSE_MS`.
    pause_ms: u64,
    /// The SLA monitor scenario's companies.
    companies: usize,
    /// Pending outbox events the bus scenario's relay finds at start.
    outbox: u64,
    /// Print where the bus scenario's events are, every second.
    trace: bool,
    /// Schedules due at one instant in the schedule scenario.
    schedules: usize,
    /// The schedule scenario waits for the next minute (its schedules fire
    /// every minute); the smoke run fires the minute just begun instead.
    next_minute: bool,
}

impl Options {
    fn parse() -> Self {
        let mut options = Options {
            scenario: "all".into(),
            runs: 3,
            deliveries: 20_000,
            clients: 64,
            rate: 500,
            seconds: 20,
            rows: 1_000_000,
            companies: 1_000,
            requests: 1000,
            goodera: 400,
            benevity: 50,
            events: 20_000,
            event_rate: 1000,
            otlp: false,
            without_sla_rollup: false,
            records: 111_112,
            goodera_per_minute: None,
            // The service's defaults.
            batch_size: 200,
            pause_ms: 50,
            outbox: 100_000,
            trace: false,
            schedules: 1_000,
            next_minute: true,
        };
        // `cargo bench` passes `--bench`; `cargo test --all-targets` runs
        // this binary without it, as a small smoke run that keeps the
        // benchmark working.
        if !std::env::args().any(|a| a == "--bench") {
            options.runs = 1;
            options.deliveries = 200;
            options.clients = 8;
            options.rate = 100;
            options.seconds = 2;
            options.rows = 10_000;
            options.requests = 50;
            options.goodera = 40;
            options.benevity = 10;
            options.events = 200;
            options.event_rate = 100;
            options.records = 300;
            options.companies = 20;
            options.outbox = 1_000;
            options.schedules = 20;
            options.next_minute = false;
        }
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| -> u64 {
                args.next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{name} takes a number"))
            };
            match arg.as_str() {
                "--runs" => options.runs = value("--runs") as usize,
                "--deliveries" => options.deliveries = value("--deliveries") as usize,
                "--clients" => options.clients = value("--clients") as usize,
                "--rate" => options.rate = value("--rate"),
                "--seconds" => options.seconds = value("--seconds"),
                "--rows" => options.rows = value("--rows"),
                "--requests" => options.requests = value("--requests") as usize,
                "--goodera" => options.goodera = value("--goodera") as usize,
                "--benevity" => options.benevity = value("--benevity") as usize,
                "--events" => options.events = value("--events") as usize,
                "--event-rate" => options.event_rate = value("--event-rate"),
                "--otlp" => options.otlp = true,
                "--without-sla-rollup" => options.without_sla_rollup = true,
                "--records" => options.records = value("--records"),
                "--goodera-per-minute" => {
                    options.goodera_per_minute = Some(value("--goodera-per-minute"))
                }
                "--batch-size" => options.batch_size = value("--batch-size") as i64,
                "--pause-ms" => options.pause_ms = value("--pause-ms"),
                "--companies" => options.companies = value("--companies") as usize,
                "--outbox" => options.outbox = value("--outbox"),
                "--trace" => options.trace = true,
                "--schedules" => options.schedules = value("--schedules") as usize,
                // `cargo bench` passes this to every bench target.
                "--bench" => {}
                "throughput" | "latency" | "listing" | "sla" | "ratelimit" | "webhooks"
                | "ingest" | "retention" | "sla-monitor" | "bus" | "schedule" | "all" => {
                    options.scenario = arg
                }
                other => panic!("unknown argument {other}"),
            }
        }
        options
    }
}

#[tokio::main]
async fn main() {
    let options = Options::parse();
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    println!(
        "machine: {} cores, {}; rustc release build",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m.lines().next().map(str::to_owned))
            .unwrap_or_default()
    );
    let all = options.scenario == "all";
    if all || options.scenario == "throughput" {
        let figures = repeat(&options, || throughput(&admin_url, &options)).await;
        report(
            &format!(
                "throughput: {} deliveries, {} closed-loop clients{}",
                options.deliveries,
                options.clients,
                if options.otlp {
                    ", spans exported over OTLP/HTTP"
                } else {
                    ""
                }
            ),
            &figures,
        );
    }
    if all || options.scenario == "latency" {
        let figures = repeat(&options, || latency(&admin_url, &options)).await;
        report(
            &format!(
                "latency: open loop, {} deliveries/s for {} s",
                options.rate, options.seconds
            ),
            &figures,
        );
    }
    if all || options.scenario == "ratelimit" {
        let figures = repeat(&options, || rate_limit(&admin_url, &options)).await;
        report(
            &format!(
                "ratelimit: {} Goodera deliveries at once (limit 100/min), {} Benevity at 5/s meanwhile",
                options.goodera, options.benevity
            ),
            &figures,
        );
    }
    if all || options.scenario == "webhooks" {
        let figures = repeat(&options, || webhooks(&admin_url, &options)).await;
        report(
            &format!(
                "webhooks: {} signed Goodera events, {} closed-loop senders; {} bad signatures; open loop {} events/s for {} s",
                options.events,
                options.clients,
                options.events,
                options.event_rate,
                options.seconds
            ),
            &figures,
        );
    }
    if all || options.scenario == "bus" {
        let figures = repeat(&options, || bus(&admin_url, &options)).await;
        report(
            &format!(
                "bus: {} report-ready events published at once (target ≥ 2,000 events/s into deliveries); \
                 {} pending outbox events relayed at start (target ≥ 10,000 events/s); \
                 peak RSS budget 96 MiB",
                options.events, options.outbox
            ),
            &figures,
        );
    }
    if all || options.scenario == "ingest" {
        let figures = repeat(&options, || ingest(&admin_url, &options)).await;
        report(
            &format!(
                "ingest: nine streams × {} records from the sandbox (Goodera at {} requests/min), then a re-sync with nothing new",
                options.records,
                options.goodera_per_minute.unwrap_or(100)
            ),
            &figures,
        );
    }
    if all || options.scenario == "retention" {
        let figures = repeat(&options, || retention(&admin_url, &options)).await;
        report(
            &format!(
                "retention: open loop {} deliveries/s for {} s, without and then while {} expired deliveries (each with an attempt) are cleaned in batches of {}, {} ms apart",
                options.rate, options.seconds, options.rows, options.batch_size, options.pause_ms
            ),
            &figures,
        );
    }
    if all || options.scenario == "sla-monitor" {
        let figures = repeat(&options, || sla_monitor(&admin_url, &options)).await;
        report(
            &format!(
                "sla-monitor: one evaluation of {} companies × 3 platforms over {} deliveries finished in the last 3 days (1 company in 10 failing 1 in 7)",
                options.companies, options.rows
            ),
            &figures,
        );
    }
    if all || options.scenario == "schedule" {
        let figures = repeat(&options, || schedule(&admin_url, &options)).await;
        report(
            &format!(
                "schedule: {} schedules due at the same instant, firing late by (target: under a second when idle)",
                options.schedules
            ),
            &figures,
        );
    }
    if all || options.scenario == "listing" {
        let figures = listing(&admin_url, &options).await;
        report(
            &format!(
                "listing: {} rows, {} requests per query",
                options.rows, options.requests
            ),
            &figures,
        );
    }
    if all || options.scenario == "sla" {
        let figures = sla(&admin_url, &options).await;
        report(
            &format!(
                "sla: {} rows, {} requests per query",
                options.rows, options.requests
            ),
            &figures,
        );
    }
}

/// Named figures of one measured run, in print order.
type Figures = Vec<(&'static str, f64)>;

async fn repeat<F, Fut>(options: &Options, mut run: F) -> Vec<Figures>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Figures>,
{
    let warm_up = run().await;
    println!("  warm-up (discarded): {}", line(&warm_up));
    let mut measured = Vec::new();
    for index in 1..=options.runs {
        let figures = run().await;
        println!("  run {index}: {}", line(&figures));
        measured.push(figures);
    }
    measured
}

fn line(figures: &Figures) -> String {
    figures
        .iter()
        .map(|(name, value)| format!("{name} {value:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn report(title: &str, runs: &[Figures]) {
    println!("\n{title}: min / median / max over {} runs", runs.len());
    let Some(first) = runs.first() else { return };
    for (index, (name, _)) in first.iter().enumerate() {
        let mut values: Vec<f64> = runs.iter().map(|run| run[index].1).collect();
        values.sort_by(f64::total_cmp);
        println!(
            "  {name:<32} {:>10.1} {:>10.1} {:>10.1}",
            values[0],
            values[values.len() / 2],
            values[values.len() - 1]
        );
    }
    println!();
}

/// The `p`-th percentile (0–100) of sorted values, nearest rank.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The service binary over a fresh database, pointed at a fresh sandbox.
struct Service {
    child: Child,
    url: String,
    database: String,
    admin_url: String,
    sandbox: Sandbox,
    signer: JwtSigner,
    http: reqwest::Client,
    /// The bus settings it runs with (`NATS_URL` set), for the bus scenario.
    bus: Option<BusConfig>,
    /// When its process was spawned, and when it answered ready.
    spawned: Instant,
    ready: Instant,
}

/// A service's database (created), sandbox and settings, before its
/// process starts: [`Prepared::migrate`] lets a scenario seed what the
/// service must find at start.
struct Prepared {
    database: String,
    admin_url: String,
    sandbox: Sandbox,
    vars: HashMap<String, String>,
    config: Config,
    port: u16,
}

impl Service {
    async fn start(admin_url: &str) -> Self {
        Self::start_with(admin_url, &[]).await
    }

    /// As [`Service::start`], with these variables set as well.
    async fn start_with(admin_url: &str, extra: &[(&str, &str)]) -> Self {
        Self::prepare(admin_url, extra).await.spawn().await
    }

    /// As [`Service::start_with`], up to (not including) starting the
    /// process.
    async fn prepare(admin_url: &str, extra: &[(&str, &str)]) -> Prepared {
        let database = format!("impact_in_bench_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(admin_url)
            .await
            .expect("admin connection");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut admin)
            .await
            .expect("create the bench database");
        let database_url = on_database(admin_url, &database);

        // The sandbox allows what the service is told Goodera allows.
        let mut sandbox_config = SandboxConfig::default();
        if let Some((_, per_minute)) = extra
            .iter()
            .find(|(name, _)| *name == "GOODERA_RATE_LIMIT_PER_MINUTE")
        {
            sandbox_config =
                sandbox_config.with_goodera_per_minute(per_minute.parse().expect("a number"));
        }
        let sandbox = Sandbox::start(sandbox_config)
            .await
            .expect("sandbox starts");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut vars: HashMap<String, String> = credentials::env_vars(&sandbox.url())
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        vars.extend(
            [
                ("HOST", "127.0.0.1".to_owned()),
                ("PORT_IMPACT_IN", port.to_string()),
                ("DATABASE_URL", database_url.to_string()),
                (
                    "REDIS_URL",
                    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
                ),
                ("REDIS_KEY_PREFIX", format!("{database}:")),
                ("JWT_SECRET", JWT_SECRET.into()),
                ("TOKEN_ENCRYPTION_KEY", TOKEN_KEY.into()),
                ("LOG_LEVEL", "warn".into()),
                ("SANDBOX_MODE", "true".into()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        // Settings under test (DELIVERY_*, DATABASE_MAX_CONNECTIONS, and for
        // the bus NATS_MAX_IN_FLIGHT and NATS_RELAY_*) pass through.
        for (key, value) in std::env::vars() {
            if key.starts_with("DELIVERY_")
                || key.starts_with("DATABASE_MAX")
                || key == "NATS_MAX_IN_FLIGHT"
                || key.starts_with("NATS_RELAY_")
            {
                vars.insert(key, value);
            }
        }
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let config = Config::from_map(&vars).expect("bench configuration is valid");
        Prepared {
            database,
            admin_url: admin_url.to_owned(),
            sandbox,
            vars,
            config,
            port,
        }
    }

    async fn wait_ready(&self) {
        for _ in 0..600 {
            if let Ok(response) = self
                .http
                .get(format!("{}/health/ready", self.url))
                .send()
                .await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the service did not become ready in 30 s");
    }

    fn token(&self, company: Uuid) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        self.signer
            .sign("bench", &[company], &ROLES.map(String::from), now, 3600)
    }

    /// Peak resident set of the service so far, in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }

    async fn post_delivery(&self, token: &str, body: &Value) -> Duration {
        let started = Instant::now();
        let response = self
            .http
            .post(format!("{}/v1/impact-in/deliveries", self.url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("POST answers");
        let status = response.status();
        let elapsed = started.elapsed();
        assert_eq!(status, 202, "{}", response.text().await.unwrap_or_default());
        elapsed
    }

    /// `GET /_sandbox/{route}` (with its query), as JSON.
    async fn sandbox(&self, route: &str) -> Value {
        self.http
            .get(format!("{}/_sandbox/{route}", self.sandbox.url()))
            .send()
            .await
            .unwrap_or_else(|err| panic!("sandbox {route}: {err}"))
            .json()
            .await
            .unwrap_or_else(|err| panic!("sandbox {route} JSON: {err}"))
    }

    /// Waits until the sandbox holds `count` distinct deliveries; their
    /// first arrival times by delivery id, and how many arrived more than
    /// once (a repeat after a lost answer; the provider de-duplicates it).
    async fn arrivals(&self, count: usize) -> (HashMap<Uuid, DateTime<Utc>>, usize) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let stats = self.sandbox("stats").await;
            if stats["deliveries"]["benevity"].as_u64().unwrap_or(0) as usize >= count {
                break;
            }
            assert!(Instant::now() < deadline, "deliveries stalled: {stats}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let received = self.sandbox("received").await;
        let received = received.as_array().expect("a list");
        let repeated = received.iter().filter(|r| r["timesReceived"] != 1).count();
        let arrivals = received
            .iter()
            .map(|r| {
                (
                    r["idempotencyKey"].as_str().unwrap().parse().unwrap(),
                    r["firstReceivedAt"].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect();
        (arrivals, repeated)
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SIGTERM: the service drains and exits.
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        let mut admin = PgConnection::connect(&self.admin_url).await.expect("admin");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.database
        )))
        .execute(&mut admin)
        .await
        .expect("drop the bench database");
        forget_cache_keys(&format!("{}:*", self.database)).await;
    }

    /// A connection to this run's database, for seeding and checking.
    async fn connect(&self) -> PgConnection {
        let url = on_database(&self.admin_url, &self.database);
        PgConnection::connect(url.as_str()).await.expect("bench db")
    }

    async fn count_success(&self) -> i64 {
        let mut db = self.connect().await;
        sqlx::query_scalar("SELECT count(*) FROM impact_deliveries WHERE status = 'success'")
            .fetch_one(&mut db)
            .await
            .expect("count")
    }
}

impl Prepared {
    /// Migrates the database as the service would at start, and connects
    /// to it, for seeding.
    async fn migrate(&self) -> PgConnection {
        let url = on_database(&self.admin_url, &self.database);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url.as_str())
            .await
            .expect("bench db");
        impact_in::db::migrate(&pool).await.expect("migrations");
        pool.close().await;
        PgConnection::connect(url.as_str()).await.expect("bench db")
    }

    /// Starts the service's process and waits until it is ready.
    async fn spawn(self) -> Service {
        let spawned = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_impact-in"))
            .env_clear()
            .envs(&self.vars)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the service starts");
        let service = Service {
            child,
            url: format!("http://127.0.0.1:{}", self.port),
            database: self.database,
            admin_url: self.admin_url,
            sandbox: self.sandbox,
            signer: JwtSigner::from_config(&self.config.auth).expect("signer"),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()
                .expect("client"),
            bus: self.config.bus,
            spawned,
            ready: spawned,
        };
        service.wait_ready().await;
        Service {
            ready: Instant::now(),
            ..service
        }
    }
}

/// `DATABASE_URL` pointed at another database on the same server.
fn on_database(admin_url: &str, database: &str) -> url::Url {
    let mut url = url::Url::parse(admin_url).expect("DATABASE_URL is a URL");
    url.set_path(database);
    url
}

/// Removes the idempotency-cache entries a run left in Redis.
async fn forget_cache_keys(pattern: &str) {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let Ok(mut redis) = redis::Client::open(url)
        .expect("REDIS_URL is a Redis URL")
        .get_multiplexed_async_connection()
        .await
    else {
        return;
    };
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut redis)
            .await
            .expect("SCAN");
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut redis)
                .await
                .expect("UNLINK");
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// A ~1 KiB delivery request, distinct for every `n`, with its own id.
fn delivery(company: Uuid, n: usize) -> (Uuid, Value) {
    delivery_to(company, "benevity", n)
}

/// As [`delivery`], to `provider`.
fn delivery_to(company: Uuid, provider: &str, n: usize) -> (Uuid, Value) {
    let programmes: Vec<Value> = (0..4)
        .map(|k| {
            json!({
                "name": format!("Programme {n}-{k}: language cafés & mentoring"),
                "volunteerHours": (n % 1000) as f64 + k as f64 * 0.5,
                "participantCount": 10 + k,
                "donations": [{"amountMinor": 1000 * (k + 1), "currency": "EUR"}],
            })
        })
        .collect();
    let id = Uuid::new_v4();
    let body = json!({
        "companyId": company,
        "provider": provider,
        "deliveryId": id,
        "payload": {
            "companyId": company,
            "period": {"start": "2026-01-01", "end": "2026-03-31"},
            "volunteerHours": 1250.5 + n as f64,
            "volunteerCount": 84,
            "participantCount": 312,
            "sessionCount": 96,
            "donations": [{"amountMinor": 1_250_000 + n, "currency": "EUR"}],
            "outcomeScores": {"integration": 0.72, "language": 0.65},
            "sroiRatio": 3.4,
            "visScore": 78.5,
            "programmes": programmes,
        },
    });
    (id, body)
}

/// Accept → provider latencies of `sent` deliveries, in ms, sorted.
fn provider_latencies(
    sent: &[(Uuid, DateTime<Utc>)],
    arrivals: &HashMap<Uuid, DateTime<Utc>>,
) -> Vec<f64> {
    let mut latencies: Vec<f64> = sent
        .iter()
        .map(|(id, at)| {
            let arrived = arrivals.get(id).expect("every delivery arrived");
            (*arrived - *at).num_microseconds().unwrap_or(0) as f64 / 1000.0
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    latencies
}

/// An OTLP/HTTP receiver that decodes each export, as a collector would,
/// and counts the spans.
struct OtlpSink {
    url: String,
    spans: Arc<AtomicUsize>,
}

impl OtlpSink {
    async fn start() -> Self {
        use opentelemetry_proto::tonic::collector::trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
        };
        use prost::Message;
        let spans = Arc::new(AtomicUsize::new(0));
        let counted = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| async move {
                let request = ExportTraceServiceRequest::decode(body).expect("an OTLP export");
                let n: usize = request
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .map(|s| s.spans.len())
                    .sum();
                counted.fetch_add(n, Ordering::Relaxed);
                ExportTraceServiceResponse::default().encode_to_vec()
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, spans }
    }
}

async fn throughput(admin_url: &str, options: &Options) -> Figures {
    let sink = match options.otlp {
        true => Some(OtlpSink::start().await),
        false => None,
    };
    let exporter: Vec<(&str, &str)> = sink
        .iter()
        .map(|sink| ("OTEL_EXPORTER_OTLP_ENDPOINT", sink.url.as_str()))
        .collect();
    let service = Arc::new(Service::start_with(admin_url, &exporter).await);
    if options.without_sla_rollup {
        // Nothing is written yet, so the rollup stays empty, not wrong.
        sqlx::query(
            "ALTER TABLE impact_deliveries DISABLE TRIGGER sla_hourly_inserted,
                 DISABLE TRIGGER sla_hourly_updated, DISABLE TRIGGER sla_hourly_deleted",
        )
        .execute(&mut service.connect().await)
        .await
        .expect("disable the rollup's triggers");
    }
    let company = Uuid::new_v4();
    let token = Arc::new(service.token(company));
    let next = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(Mutex::new(Vec::with_capacity(options.deliveries)));
    let first_sent = Utc::now();
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..options.clients {
        let (service, token, next, sent) =
            (service.clone(), token.clone(), next.clone(), sent.clone());
        let total = options.deliveries;
        clients.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let (id, body) = delivery(company, n);
                let at = Utc::now();
                let accept = service.post_delivery(&token, &body).await;
                sent.lock().unwrap().push((id, at, millis(accept)));
            }
        });
    }
    clients.join_all().await;
    let accepted_in = started.elapsed();
    let (arrivals, repeated) = service.arrivals(options.deliveries).await;
    let last_arrival = arrivals.values().max().copied().expect("arrivals");
    let end_to_end = (last_arrival - first_sent).num_microseconds().unwrap() as f64 / 1e6;
    let (sent, mut accepts): (Vec<_>, Vec<_>) = std::mem::take(&mut *sent.lock().unwrap())
        .into_iter()
        .map(|(id, at, accept)| ((id, at), accept))
        .unzip();
    accepts.sort_by(f64::total_cmp);
    let latencies = provider_latencies(&sent, &arrivals);
    let delivered = service.count_success().await;
    assert_eq!(
        delivered as usize, options.deliveries,
        "all recorded success"
    );
    let rss = service.peak_rss_mib();
    // Stopping flushes the exporter.
    Arc::into_inner(service).expect("clients done").stop().await;
    let mut figures = vec![
        (
            "accepted/s",
            options.deliveries as f64 / accepted_in.as_secs_f64(),
        ),
        (
            "delivered/s end to end",
            options.deliveries as f64 / end_to_end,
        ),
        ("accept p50 ms", percentile(&accepts, 50.0)),
        ("accept p99 ms", percentile(&accepts, 99.0)),
        ("accept→provider p99 ms", percentile(&latencies, 99.0)),
        ("peak RSS MiB", rss),
        ("sent twice", repeated as f64),
    ];
    if let Some(sink) = sink {
        let spans = sink.spans.load(Ordering::Relaxed) as f64;
        figures.push((
            "spans exported per delivery",
            spans / options.deliveries as f64,
        ));
    }
    figures
}

async fn latency(admin_url: &str, options: &Options) -> Figures {
    let service = Arc::new(Service::start(admin_url).await);
    let company = Uuid::new_v4();
    let token = Arc::new(service.token(company));
    let (accepts, latencies, repeated) = open_loop(&service, company, &token, options, 0).await;
    let rss = service.peak_rss_mib();
    Arc::into_inner(service)
        .expect("requests done")
        .stop()
        .await;
    vec![
        ("accept p50 ms", percentile(&accepts, 50.0)),
        ("accept p99 ms", percentile(&accepts, 99.0)),
        ("accept→provider p50 ms", percentile(&latencies, 50.0)),
        ("accept→provider p99 ms", percentile(&latencies, 99.0)),
        ("peak RSS MiB", rss),
        ("sent twice", repeated as f64),
    ]
}

/// The latency scenario's open loop against a running service: one POST
/// every 1/`rate` s for `seconds`, each in its own task, whatever the
/// previous ones are doing; then waits until all reached the sandbox.
/// `before`: deliveries sent earlier to this service (their reports are
/// not repeated, so the idempotency cache never answers). Accept times and
/// accept→provider times in ms, sorted, and deliveries sent twice.
async fn open_loop(
    service: &Arc<Service>,
    company: Uuid,
    token: &Arc<String>,
    options: &Options,
    before: usize,
) -> (Vec<f64>, Vec<f64>, usize) {
    let total = (options.rate * options.seconds) as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / options.rate as f64));
    // Open loop: a late tick is sent at once, not skipped.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = tokio::task::JoinSet::new();
    for n in before..before + total {
        ticker.tick().await;
        let (service, token) = (service.clone(), token.clone());
        requests.spawn(async move {
            let (id, body) = delivery(company, n);
            let at = Utc::now();
            let accept = service.post_delivery(&token, &body).await;
            (id, at, millis(accept))
        });
    }
    let mut sent = Vec::with_capacity(total);
    let mut accepts = Vec::with_capacity(total);
    for (id, at, accept) in requests.join_all().await {
        sent.push((id, at));
        accepts.push(accept);
    }
    accepts.sort_by(f64::total_cmp);
    let (arrivals, repeated) = service.arrivals(before + total).await;
    (accepts, provider_latencies(&sent, &arrivals), repeated)
}

/// Seeds `rows` finished deliveries, each with one attempt, all past the
/// retention horizon; runs the open loop without cleanup, then again while
/// the retention sweep deletes them (stopped when the open loop has
/// finished; the rest is then deleted without pauses, the service idle).
async fn retention(admin_url: &str, options: &Options) -> Figures {
    let service = Arc::new(Service::start(admin_url).await);
    let mut db = service.connect().await;
    let (_, sample) = delivery(Uuid::new_v4(), 0);
    let seeding = Instant::now();
    // As the listing's rows, but all 100 days past their last change (one
    // millisecond apart), each with the attempt that finished it.
    sqlx::query(
        "INSERT INTO impact_deliveries
             (id, company_id, provider, delivery_id, payload, payload_hash, status,
              attempt_count, created_at, updated_at, delivered_at)
         SELECT gen_random_uuid(), ($1::uuid[])[1 + i % 10],
                (ARRAY['benevity', 'goodera', 'workday'])[1 + i % 3],
                gen_random_uuid(), $2, md5(i::text),
                CASE WHEN i % 7 = 0 THEN 'failed' ELSE 'success' END, 1,
                t, t, CASE WHEN i % 7 = 0 THEN NULL ELSE t END
         FROM generate_series(1, $3::bigint) AS i,
              LATERAL (SELECT now() - interval '100 days' - make_interval(secs => i / 1000.0)) AS a(t)",
    )
    .bind((0..10).map(|_| Uuid::new_v4()).collect::<Vec<_>>())
    .bind(&sample["payload"])
    .bind(options.rows as i64)
    .execute(&mut db)
    .await
    .expect("seed deliveries");
    sqlx::query(
        "INSERT INTO delivery_attempts
             (delivery_id, attempt_number, trigger, started_at, finished_at, duration_ms,
              http_status, error_class, error_message)
         SELECT id, 1, 'automatic', updated_at, updated_at, 120,
                CASE status WHEN 'success' THEN 200 ELSE 422 END,
                CASE status WHEN 'failed' THEN 'permanent' END,
                CASE status WHEN 'failed' THEN 'rejected: hours must be positive' END
         FROM impact_deliveries",
    )
    .execute(&mut db)
    .await
    .expect("seed attempts");
    sqlx::query("VACUUM ANALYZE impact_deliveries, delivery_attempts")
        .execute(&mut db)
        .await
        .expect("vacuum");
    // The seed's gigabytes of WAL are flushed now, not by a checkpoint
    // during the first open loop (which then measured the checkpoint).
    sqlx::query("CHECKPOINT")
        .execute(&mut db)
        .await
        .expect("checkpoint");
    println!(
        "  seeded {} deliveries and their attempts in {:.1} s",
        options.rows,
        seeding.elapsed().as_secs_f64()
    );

    let company = Uuid::new_v4();
    let token = Arc::new(service.token(company));
    let (quiet, quiet_latencies, _) = open_loop(&service, company, &token, options, 0).await;

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(on_database(admin_url, &service.database).as_str())
        .await
        .expect("a pool for the sweep");
    let config = RetentionConfig {
        days: 90,
        batch_size: options.batch_size,
        batch_pause: Duration::from_millis(options.pause_ms),
        outbox_hours: 24,
    };
    let now = Utc::now();
    let stop = CancellationToken::new();
    let sweeping = tokio::spawn({
        let (pool, config, stop) = (pool.clone(), config.clone(), stop.clone());
        async move { retention::sweep(&pool, &config, now, &stop).await }
    });
    let started = Instant::now();
    let sent_before = quiet.len();
    // Its count of repeats covers both open loops.
    let (busy, busy_latencies, repeated) =
        open_loop(&service, company, &token, options, sent_before).await;
    stop.cancel();
    let during = sweeping.await.expect("sweep task").expect("sweep");
    let window = started.elapsed();
    let unpaced = RetentionConfig {
        batch_pause: Duration::ZERO,
        ..config
    };
    let rest_started = Instant::now();
    let rest = retention::sweep(&pool, &unpaced, now, &CancellationToken::new())
        .await
        .expect("the rest of the sweep");
    let rest_time = rest_started.elapsed();
    assert_eq!(
        during.deliveries + rest.deliveries,
        options.rows,
        "every expired delivery removed, no other"
    );
    assert_eq!(during.attempts + rest.attempts, options.rows);
    pool.close().await;
    Arc::into_inner(service)
        .expect("requests done")
        .stop()
        .await;
    let (quiet_p99, busy_p99) = (percentile(&quiet, 99.0), percentile(&busy, 99.0));
    vec![
        ("accept p50 ms, no cleanup", percentile(&quiet, 50.0)),
        ("accept p99 ms, no cleanup", quiet_p99),
        ("accept p50 ms, cleaning", percentile(&busy, 50.0)),
        ("accept p99 ms, cleaning", busy_p99),
        ("accept p99 cleaning / none", busy_p99 / quiet_p99),
        (
            "accept→provider p99 ms, none",
            percentile(&quiet_latencies, 99.0),
        ),
        (
            "accept→provider p99 ms, cleaning",
            percentile(&busy_latencies, 99.0),
        ),
        (
            "swept deliveries/s, cleaning",
            during.deliveries as f64 / window.as_secs_f64(),
        ),
        (
            "swept deliveries/s, unpaced idle",
            rest.deliveries as f64 / rest_time.as_secs_f64(),
        ),
        ("sent twice", repeated as f64),
    ]
}

/// The SLA monitor's evaluation (`sla::monitor::evaluate`, in this
/// process, on the service's database): `rows` deliveries of `companies`
/// companies to the three platforms, finished over the last three days; one
/// company in ten fails one delivery in seven. Times the first evaluation
/// (every alert opens) and the next (nothing changes).
async fn sla_monitor(admin_url: &str, options: &Options) -> Figures {
    let service = Service::start(admin_url).await;
    let mut db = service.connect().await;
    let (_, sample) = delivery(Uuid::new_v4(), 0);
    let companies: Vec<Uuid> = (0..options.companies).map(|_| Uuid::new_v4()).collect();
    sqlx::query(
        "INSERT INTO impact_deliveries
             (id, company_id, provider, delivery_id, payload, payload_hash, status,
              attempt_count, created_at, updated_at, delivered_at)
         SELECT gen_random_uuid(), $1[c], (ARRAY['benevity', 'goodera', 'workday'])[1 + i % 3],
                gen_random_uuid(), $2, md5(i::text), s, 1 + (i % 4 = 0)::int,
                t - interval '40 seconds', t, CASE WHEN s = 'success' THEN t END
         FROM generate_series(1, $3::bigint) AS i,
              LATERAL (SELECT 1 + (i / 3) % array_length($1::uuid[], 1) AS c) AS company,
              LATERAL (SELECT CASE WHEN c % 10 = 0 AND i % 7 = 0 THEN 'failed'
                                   ELSE 'success' END AS s,
                              now() - make_interval(secs => i * 259000.0 / $3) AS t) AS row",
    )
    .bind(&companies)
    .bind(&sample["payload"])
    .bind(options.rows as i64)
    .execute(&mut db)
    .await
    .expect("seed deliveries");
    sqlx::query("VACUUM ANALYZE impact_deliveries")
        .execute(&mut db)
        .await
        .expect("vacuum");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(on_database(admin_url, &service.database).as_str())
        .await
        .expect("a pool for the monitor");
    let config = SlaConfig {
        thresholds: Thresholds::default(),
        monitoring: true,
        interval: Duration::from_secs(300),
        window: Duration::from_secs(24 * 3600),
        slack_webhook: None,
        pagerduty_key: None,
        pagerduty_url: "http://127.0.0.1:9/v2/enqueue".parse().expect("a URL"),
        public_base_url: None,
    };
    let ctx = MonitorContext::new(pool, config, Arc::new(SystemClock), Duration::from_secs(5))
        .expect("a client");
    let mut figures = Vec::new();
    for name in ["first evaluation s", "steady evaluation s"] {
        let started = Instant::now();
        let evaluation = monitor::evaluate(&ctx, Utc::now())
            .await
            .expect("evaluates");
        figures.push((name, started.elapsed().as_secs_f64()));
        assert!(evaluation.ran);
        assert_eq!(evaluation.companies, options.companies);
        if name.starts_with("first") {
            figures.push(("alerts opened", evaluation.transitions as f64));
        }
    }
    service.stop().await;
    figures
}

/// `--schedules` schedules of as many companies, firing every minute, all
/// due at the same instant (as the hourly schedules of many tenants share
/// the top of the hour), seeded before the service starts: how late the
/// firings are after their due time (the issue's "late by less than a
/// second when the process is idle"). Nothing is ingested, so
/// each firing finds an empty period and is skipped: the scheduler's own
/// pace, not the queue's. The due time is the next minute at least 10 s
/// away, so a run waits up to 70 s; the smoke run (without `--bench`)
/// takes the minute just begun, due at once, to exercise the code only.
async fn schedule(admin_url: &str, options: &Options) -> Figures {
    let prepared = Service::prepare(admin_url, &[]).await;
    let mut db = prepared.migrate().await;
    let due: DateTime<Utc> = sqlx::query_scalar(
        "WITH due AS (
             SELECT CASE WHEN $2 THEN date_trunc('minute', now() + interval '10 seconds')
                                      + interval '1 minute'
                         ELSE date_trunc('minute', now()) END AS at
         ), seeded AS (
             INSERT INTO scheduled_deliveries (id, company_id, platform, schedule, next_run)
             SELECT gen_random_uuid(), gen_random_uuid(), 'benevity', '* * * * *', due.at
             FROM generate_series(1, $1::bigint), due
             RETURNING next_run
         )
         SELECT min(next_run) FROM seeded",
    )
    .bind(options.schedules as i64)
    .bind(options.next_minute)
    .fetch_one(&mut db)
    .await
    .expect("seed the schedules");
    drop(db);

    let service = prepared.spawn().await;
    let mut db = service.connect().await;
    let deadline = due + chrono::Duration::seconds(120);
    // Polled every 10 ms: when the last firing's commit is visible.
    let all_committed = loop {
        let fired: i64 = sqlx::query_scalar("SELECT count(*) FROM schedule_firings")
            .fetch_one(&mut db)
            .await
            .expect("firings");
        let now = Utc::now();
        if fired >= options.schedules as i64 {
            break now;
        }
        assert!(now < deadline, "{fired} of {} fired", options.schedules);
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut late: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM fired_at - due_at)::float8 * 1000 FROM schedule_firings",
    )
    .fetch_all(&mut db)
    .await
    .expect("lateness");
    service.stop().await;
    late.sort_by(f64::total_cmp);
    // `fired_at` is when its firing's transaction began (a batch of 20
    // schedules), so the last commit is read from the polling above.
    vec![
        ("firings", late.len() as f64),
        ("first fired, late ms", late[0]),
        ("fired p50, late ms", percentile(&late, 50.0)),
        ("fired p99, late ms", percentile(&late, 99.0)),
        (
            "all committed, late ms",
            (all_committed - due).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0,
        ),
    ]
}

/// The listing's log: `rows` finished deliveries over ten companies, one
/// second apart back from now, then `VACUUM ANALYZE`; the companies.
async fn seed_log(db: &mut PgConnection, rows: u64) -> Vec<Uuid> {
    let companies: Vec<Uuid> = (0..10).map(|_| Uuid::new_v4()).collect();
    let (_, sample) = delivery(companies[0], 0);
    let seeding = Instant::now();
    // One second apart, newest first; 1 in 7 failed (7 and 10 share no
    // factor, so every company has its share), the rest succeeded.
    sqlx::query(
        "INSERT INTO impact_deliveries
             (id, company_id, provider, delivery_id, payload, payload_hash, status,
              attempt_count, created_at, updated_at, delivered_at)
         SELECT gen_random_uuid(), ($1::uuid[])[1 + i % 10],
                (ARRAY['benevity', 'goodera', 'workday'])[1 + i % 3],
                gen_random_uuid(), $2, md5(i::text),
                CASE WHEN i % 7 = 0 THEN 'failed' ELSE 'success' END, 1,
                now() - make_interval(secs => i), now() - make_interval(secs => i),
                CASE WHEN i % 7 = 0 THEN NULL ELSE now() - make_interval(secs => i) END
         FROM generate_series(1, $3::bigint) AS i",
    )
    .bind(&companies)
    .bind(&sample["payload"])
    .bind(rows as i64)
    .execute(&mut *db)
    .await
    .expect("seed");
    sqlx::query("VACUUM ANALYZE impact_deliveries")
        .execute(&mut *db)
        .await
        .expect("vacuum");
    println!(
        "  seeded {rows} rows in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    companies
}

/// A query timed: the names of its p50 and p99 figures, and its URL.
type Timed = (&'static str, &'static str, String);

/// Each query `--requests` times in turn, sequentially, once as a warm-up
/// (printed, discarded) and then `--runs` times; `check` looks at every
/// answer.
async fn time_queries(
    service: &Service,
    token: &str,
    options: &Options,
    queries: &[Timed],
    check: impl Fn(&str, &Value),
) -> Vec<Figures> {
    let mut runs = Vec::new();
    for run in 0..=options.runs {
        let mut figures = Figures::new();
        for (p50, p99, url) in queries {
            let mut samples = Vec::with_capacity(options.requests);
            for _ in 0..options.requests {
                let started = Instant::now();
                let response = service
                    .http
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("GET answers");
                assert_eq!(response.status(), 200, "{url}");
                let body: Value = response.json().await.expect("a JSON answer");
                samples.push(millis(started.elapsed()));
                check(url, &body);
            }
            samples.sort_by(f64::total_cmp);
            figures.push((*p50, percentile(&samples, 50.0)));
            figures.push((*p99, percentile(&samples, 99.0)));
        }
        if run == 0 {
            println!("  warm-up (discarded): {}", line(&figures));
        } else {
            println!("  run {run}: {}", line(&figures));
            runs.push(figures);
        }
    }
    let rss = service.peak_rss_mib();
    println!("  peak RSS MiB {rss:.1}");
    runs
}

/// Seeds the log, then times the cockpit's filtered first page and a deep
/// page by cursor.
async fn listing(admin_url: &str, options: &Options) -> Vec<Figures> {
    let service = Service::start(admin_url).await;
    let mut db = service.connect().await;
    let companies = seed_log(&mut db, options.rows).await;

    let company = companies[3];
    let token = service.token(company);
    let base = format!("{}/v1/impact-in/deliveries", service.url);
    // A cursor half-way down the company's rows (about 50,000 deep).
    let deep: (DateTime<Utc>, Uuid) = sqlx::query_as(
        "SELECT created_at, id FROM impact_deliveries WHERE company_id = $1
         ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1",
    )
    .bind(company)
    .bind(options.rows as i64 / 20)
    .fetch_one(&mut db)
    .await
    .expect("a deep row");
    let cursor = impact_in::cursor::Cursor {
        at: deep.0,
        id: deep.1,
    };
    let queries = [
        // The cockpit's first page, counted: one company's successes (6 in
        // 7 of its rows) and its failures (1 in 7).
        (
            "first page, successes p50 ms",
            "first page, successes p99 ms",
            format!("{base}?companyId={company}&status=success&limit=20"),
        ),
        (
            "first page, failures p50 ms",
            "first page, failures p99 ms",
            format!("{base}?companyId={company}&status=failed&limit=20"),
        ),
        (
            "deep cursor page p50 ms",
            "deep cursor page p99 ms",
            format!("{base}?companyId={company}&limit=20&cursor={cursor}"),
        ),
    ];
    let runs = time_queries(&service, &token, options, &queries, |url, page| {
        assert_eq!(page["data"].as_array().map(Vec::len), Some(20), "{url}");
    })
    .await;
    service.stop().await;
    runs
}

/// The SLA routes over the listing's log, whose failed deliveries get a
/// failed attempt each (of the four classes in turn): one company's status
/// over the last week and the last 90 days (all its rows), the report of
/// the week starting the Monday on or before 7 days ago, and the timeline.
async fn sla(admin_url: &str, options: &Options) -> Vec<Figures> {
    let service = Service::start(admin_url).await;
    let mut db = service.connect().await;
    let companies = seed_log(&mut db, options.rows).await;
    sqlx::query(
        "INSERT INTO delivery_attempts
             (delivery_id, attempt_number, trigger, started_at, finished_at, duration_ms,
              http_status, error_class)
         SELECT id, 1, 'automatic', updated_at, updated_at, 120,
                (ARRAY[401, 429, 503, 422])[1 + n % 4],
                (ARRAY['auth', 'rate_limited', 'transient', 'permanent'])[1 + n % 4]
         FROM (SELECT id, updated_at, row_number() OVER () AS n
               FROM impact_deliveries WHERE status = 'failed') AS failed",
    )
    .execute(&mut db)
    .await
    .expect("seed attempts");
    sqlx::query("VACUUM ANALYZE delivery_attempts")
        .execute(&mut db)
        .await
        .expect("vacuum");

    let company = companies[3];
    let token = service.token(company);
    let now = Utc::now();
    let timestamp = |at: DateTime<Utc>| at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let week_ago = (now - chrono::Duration::days(7)).date_naive();
    let monday = week_ago - chrono::Days::new(u64::from(week_ago.weekday().num_days_from_monday()));
    let base = format!("{}/v1/impact-in", service.url);
    let queries = [
        (
            "status, 7 days p50 ms",
            "status, 7 days p99 ms",
            format!(
                "{base}/sla-status?companyId={company}&startDate={}&endDate={}",
                timestamp(now - chrono::Duration::days(7)),
                timestamp(now)
            ),
        ),
        (
            "status, 90 days p50 ms",
            "status, 90 days p99 ms",
            format!(
                "{base}/sla-status?companyId={company}&startDate={}&endDate={}",
                timestamp(now - chrono::Duration::days(90)),
                timestamp(now)
            ),
        ),
        (
            "report, a week p50 ms",
            "report, a week p99 ms",
            format!("{base}/sla-report?companyId={company}&weekStart={monday}"),
        ),
        (
            "timeline, 30 p50 ms",
            "timeline, 30 p99 ms",
            format!("{base}/delivery-timeline?companyId={company}"),
        ),
    ];
    let covered = std::sync::Mutex::new(Vec::new());
    let runs = time_queries(&service, &token, options, &queries, |url, body| {
        let mut covered = covered.lock().expect("not poisoned");
        if let Some(total) = body["overall"]["totalDeliveries"].as_i64()
            && !covered.iter().any(|(seen, _)| seen == url)
        {
            covered.push((url.to_owned(), total));
        }
    })
    .await;
    for (url, total) in covered.into_inner().expect("not poisoned") {
        println!("  {total} deliveries: {url}");
    }
    service.stop().await;
    runs
}

/// The outside review's burst: Goodera deliveries queued at once, several
/// times its limit of 100 a minute, while Benevity deliveries arrive at 5/s.
/// Reports Benevity's latency (Goodera's limit must not hold it up), how
/// long Goodera's backlog takes, and what Goodera saw: requests, 429s, keys
/// sent twice, deliveries failed.
async fn rate_limit(admin_url: &str, options: &Options) -> Figures {
    let service = Arc::new(Service::start(admin_url).await);
    let company = Uuid::new_v4();
    let token = Arc::new(service.token(company));
    let started = Instant::now();
    let mut goodera = tokio::task::JoinSet::new();
    for chunk in (0..options.goodera).collect::<Vec<_>>().chunks(16) {
        let (service, token, chunk) = (service.clone(), token.clone(), chunk.to_vec());
        goodera.spawn(async move {
            for n in chunk {
                service
                    .post_delivery(&token, &delivery_to(company, "goodera", n).1)
                    .await;
            }
        });
    }
    goodera.join_all().await;
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    let mut sent = Vec::with_capacity(options.benevity);
    for n in 0..options.benevity {
        ticker.tick().await;
        let (id, body) = delivery(company, n);
        let at = Utc::now();
        service.post_delivery(&token, &body).await;
        sent.push((id, at));
    }
    let (arrivals, _) = service.arrivals(options.benevity).await;
    let latencies = provider_latencies(&sent, &arrivals);

    let mut db = service.connect().await;
    let deadline = Instant::now() + Duration::from_secs(900);
    let failed = loop {
        let (succeeded, failed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'success'),
                    count(*) FILTER (WHERE status = 'failed')
             FROM impact_deliveries WHERE provider = 'goodera'",
        )
        .fetch_one(&mut db)
        .await
        .expect("goodera tally");
        if (succeeded + failed) as usize >= options.goodera {
            break failed;
        }
        assert!(
            Instant::now() < deadline,
            "goodera stalled: {succeeded} done"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let backlog_secs = started.elapsed().as_secs_f64();
    let answered_429: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM delivery_attempts a JOIN impact_deliveries d ON d.id = a.delivery_id
         WHERE d.provider = 'goodera' AND a.http_status = 429",
    )
    .fetch_one(&mut db)
    .await
    .expect("429 count");
    let stats = service.sandbox("stats").await;
    let received = service.sandbox("received?provider=goodera").await;
    let sent_twice = received
        .as_array()
        .expect("a list")
        .iter()
        .filter(|r| r["timesReceived"] != 1)
        .count();
    Arc::into_inner(service)
        .expect("requests done")
        .stop()
        .await;
    vec![
        (
            "benevity accept→provider p50 ms",
            percentile(&latencies, 50.0),
        ),
        (
            "benevity accept→provider p99 ms",
            percentile(&latencies, 99.0),
        ),
        ("goodera backlog delivered in s", backlog_secs),
        (
            "goodera requests",
            stats["requests"]["goodera"].as_f64().unwrap_or(f64::NAN),
        ),
        ("goodera 429 answers", answered_429 as f64),
        ("goodera sent twice", sent_twice as f64),
        ("goodera failed", failed as f64),
    ]
}

/// A Goodera `data.received` or `data.processed` event for `delivery`,
/// signed now (Standard Webhooks) with the sandbox's webhook secret, or
/// with another key when `forged`.
fn signed_event(delivery: Uuid, n: usize, forged: bool) -> (Vec<(&'static str, String)>, String) {
    use base64::{Engine, engine::general_purpose::STANDARD};
    use impact_in::webhooks::signature::sign_standard;
    let event_type = if n.is_multiple_of(2) {
        "data.received"
    } else {
        "data.processed"
    };
    let body = json!({
        "type": event_type,
        "timestamp": Utc::now().to_rfc3339(),
        "data": {"idempotency_key": delivery},
    })
    .to_string();
    let mut key = STANDARD
        .decode(credentials::GOODERA_WEBHOOK_SECRET.trim_start_matches("whsec_"))
        .expect("the sandbox secret is base64");
    if forged {
        key.reverse();
    }
    let id = format!("msg_{}", Uuid::new_v4().simple());
    let timestamp = Utc::now().timestamp();
    let signature = sign_standard(&key, &id, timestamp, body.as_bytes());
    (
        vec![
            ("webhook-id", id),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ],
        body,
    )
}

/// Posts one webhook; its status and how long the answer took.
async fn post_webhook(
    service: &Service,
    headers: &[(&'static str, String)],
    body: String,
) -> (u16, f64) {
    let mut request = service
        .http
        .post(format!("{}/webhooks/goodera", service.url))
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let started = Instant::now();
    let status = request
        .send()
        .await
        .expect("webhook answers")
        .status()
        .as_u16();
    (status, millis(started.elapsed()))
}

/// `events` requests from `clients` closed-loop senders; per second, and
/// each answer's status and time.
async fn closed_loop(
    service: &Arc<Service>,
    requests: Vec<(Vec<(&'static str, String)>, String)>,
    clients: usize,
) -> (f64, Vec<(u16, f64)>) {
    let total = requests.len();
    let queue = Arc::new(Mutex::new(requests));
    let answers = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (service, queue, answers) = (service.clone(), queue.clone(), answers.clone());
        senders.spawn(async move {
            loop {
                let Some((headers, body)) = queue.lock().unwrap().pop() else {
                    break;
                };
                let answer = post_webhook(&service, &headers, body).await;
                answers.lock().unwrap().push(answer);
            }
        });
    }
    senders.join_all().await;
    let rate = total as f64 / started.elapsed().as_secs_f64();
    (rate, std::mem::take(&mut *answers.lock().unwrap()))
}

/// Transactions the bench database has committed or rolled back so far,
/// read from another database so that reading adds none.
async fn transactions(service: &Service, admin: &mut PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT (xact_commit + xact_rollback)::int8 FROM pg_stat_database WHERE datname = $1",
    )
    .bind(&service.database)
    .fetch_one(admin)
    .await
    .expect("transaction count")
}

/// Verified webhooks for existing deliveries, closed loop and open loop,
/// and forged ones, which must cost no database work.
async fn webhooks(admin_url: &str, options: &Options) -> Figures {
    // No workers: nothing else touches the database while forgeries are
    // counted (the deliveries are seeded as already delivered).
    let service = Arc::new(Service::start_with(admin_url, &[("DELIVERY_WORKERS", "0")]).await);
    // Deliveries the provider already accepted, one per event pair.
    let mut db = service.connect().await;
    let deliveries: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO impact_deliveries
             (id, company_id, provider, delivery_id, payload, payload_hash, status,
              attempt_count, delivered_at)
         SELECT gen_random_uuid(), $1, 'goodera', gen_random_uuid(), '{}', 'seeded',
                'success', 1, now()
         FROM generate_series(1, $2)
         RETURNING delivery_id",
    )
    .bind(Uuid::new_v4())
    .bind(options.events.div_ceil(2) as i64)
    .fetch_all(&mut db)
    .await
    .expect("seed deliveries");
    let events = |forged| -> Vec<_> {
        (0..options.events)
            .map(|n| signed_event(deliveries[n / 2], n, forged))
            .collect()
    };

    let (verified_rate, answers) = closed_loop(&service, events(false), options.clients).await;
    assert!(
        answers.iter().all(|(status, _)| *status == 202),
        "every event accepted"
    );
    let mut verified_ms: Vec<f64> = answers.iter().map(|(_, ms)| *ms).collect();
    verified_ms.sort_by(f64::total_cmp);

    // Backends publish their statistics at most once a second: let those
    // of the verified events land first.
    let settle = Duration::from_millis(1500);
    tokio::time::sleep(settle).await;
    let mut admin = PgConnection::connect(&service.admin_url)
        .await
        .expect("admin");
    let before = transactions(&service, &mut admin).await;
    let (refused_rate, answers) = closed_loop(&service, events(true), options.clients).await;
    assert!(
        answers.iter().all(|(status, _)| *status == 401),
        "every forgery refused"
    );
    tokio::time::sleep(settle).await;
    let refused_transactions = transactions(&service, &mut admin).await - before;

    let total = (options.event_rate * options.seconds) as usize;
    let mut ticker =
        tokio::time::interval(Duration::from_secs_f64(1.0 / options.event_rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..total {
        ticker.tick().await;
        let service = service.clone();
        let (headers, body) = signed_event(deliveries[n % deliveries.len()], n, false);
        requests.spawn(async move { post_webhook(&service, &headers, body).await });
    }
    let answers = requests.join_all().await;
    assert!(
        answers.iter().all(|(status, _)| *status == 202),
        "every event accepted"
    );
    let mut open_ms: Vec<f64> = answers.iter().map(|(_, ms)| *ms).collect();
    open_ms.sort_by(f64::total_cmp);

    let rss = service.peak_rss_mib();
    Arc::into_inner(service).expect("senders done").stop().await;
    vec![
        ("verified events/s", verified_rate),
        ("verified p50 ms", percentile(&verified_ms, 50.0)),
        ("verified p99 ms", percentile(&verified_ms, 99.0)),
        ("refused events/s", refused_rate),
        (
            "db transactions while refusing",
            refused_transactions as f64,
        ),
        ("open loop p50 ms", percentile(&open_ms, 50.0)),
        ("open loop p99 ms", percentile(&open_ms, 99.0)),
        ("peak RSS MiB", rss),
    ]
}

/// A 32-byte key, base64, for the redaction's keyed mode.
const PII_KEY: &str = "YmVuY2gtcGlpLWtleS1iZW5jaC1waWkta2V5LWJlbmM=";

/// A full sync of every stream, then an immediate re-sync: records/s end to
/// end (fetch, read, redact, upsert), the service's peak RSS, and how long
/// the re-sync with nothing new takes.
async fn ingest(admin_url: &str, options: &Options) -> Figures {
    let goodera_per_minute = options.goodera_per_minute.map(|n| n.to_string());
    let mut vars = vec![("PII_HASH_KEY", PII_KEY), ("INGEST_SYNC_WAIT_SECS", "0")];
    if let Some(per_minute) = &goodera_per_minute {
        vars.push(("GOODERA_RATE_LIMIT_PER_MINUTE", per_minute));
    }
    let service = Service::start_with(admin_url, &vars).await;
    let volume = service
        .http
        .post(format!("{}/_sandbox/ingest", service.sandbox.url()))
        .json(&json!({"records": options.records}))
        .send()
        .await
        .expect("sandbox volume");
    assert!(volume.status().is_success());
    let company = Uuid::new_v4();
    let token = service.token(company);
    let sync = || async {
        let started = Instant::now();
        let answer: Value = service
            .http
            .post(format!(
                "{}/v1/ingest/all?company_id={company}&limit=1000",
                service.url
            ))
            .bearer_auth(&token)
            .send()
            .await
            .expect("ingest answers")
            .json()
            .await
            .expect("JSON");
        let runs: Vec<String> = answer["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| r["data"]["runId"].as_str().expect("a run").to_owned())
            .collect();
        let mut processed = 0;
        for run in runs {
            loop {
                let now: Value = service
                    .http
                    .get(format!("{}/v1/ingest/runs/{run}", service.url))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("run answers")
                    .json()
                    .await
                    .expect("JSON");
                if now["status"] != "running" {
                    assert_eq!(now["status"], "succeeded", "{now}");
                    processed += now["metadata"]["recordsProcessed"].as_u64().unwrap_or(0);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        (started.elapsed(), processed)
    };
    let (full, processed) = sync().await;
    assert_eq!(processed, options.records * 9, "every record stored");
    let rss = service.peak_rss_mib();
    let (again, _) = sync().await;
    service.stop().await;
    vec![
        (
            "records/s end to end",
            processed as f64 / full.as_secs_f64(),
        ),
        ("full sync s", full.as_secs_f64()),
        ("peak RSS MiB", rss),
        ("re-sync s", again.as_secs_f64()),
    ]
}

/// The bus settings of one run, every name unique to `tag` (so runs share
/// no stream, consumer or subject on the server): the variables the service
/// gets.
fn bus_vars(tag: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "NATS_URL",
            std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
        ),
        ("NATS_REPORT_SUBJECT", format!("bench.report.ready.{tag}")),
        ("NATS_REPORT_STREAM", format!("BENCH_{tag}")),
        ("NATS_REPORT_CONSUMER", format!("bench-{tag}")),
        ("NATS_EVENTS_STREAM", format!("BENCH_EVENTS_{tag}")),
        ("NATS_EVENTS_SUBJECT_PREFIX", format!("bench.{tag}.")),
    ]
}

/// Deletes the run's report and events streams (and so the consumer).
async fn delete_bus_streams(bus: &BusConfig) {
    let js = impact_in::bus::stream::connect(bus)
        .await
        .expect("NATS reachable");
    for name in [&bus.stream, &bus.events_stream] {
        if let Err(err) = js.delete_stream(name).await {
            println!("  cannot delete stream {name}: {err}");
        }
    }
}

/// The event bus (docs/bus.md), both ways: report-ready events published
/// at once becoming deliveries, then a backlog of outbox events relayed at
/// start.
async fn bus(admin_url: &str, options: &Options) -> Figures {
    let mut figures = bus_in(admin_url, options).await;
    figures.extend(bus_out(admin_url, options).await);
    figures
}

/// `--events` report-ready events for one company whose delivery rules
/// name Benevity, published on one connection as fast as JetStream acks
/// them; until every one is a delivery, and until every delivery is
/// `success`. Times by the database's clock (`created_at`, `delivered_at`)
/// against the wall clock at publishing, on the same machine.
async fn bus_in(admin_url: &str, options: &Options) -> Figures {
    use async_nats::{HeaderMap, jetstream::context::PublishAckFuture};
    use impact_in::{
        bus::{event::ReportReady, stream},
        ids::CompanyId,
    };

    let vars = bus_vars(&Uuid::new_v4().simple().to_string());
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let service = Service::start_with(admin_url, &extra).await;
    let bus = service.bus.clone().expect("NATS_URL is set");
    let company = Uuid::new_v4();
    let rules = service
        .http
        .put(format!("{}/v1/impact-in/delivery-rules", service.url))
        .bearer_auth(service.token(company))
        .json(&json!({"companyId": company, "providers": ["benevity"]}))
        .send()
        .await
        .expect("PUT delivery-rules answers");
    assert!(rules.status().is_success(), "delivery rules: {rules:?}");

    // Built before the clock starts; each carries a distinct ~1 KiB report
    // (the throughput scenario's), so each makes its own delivery.
    let events: Vec<(Uuid, Vec<u8>)> = (0..options.events)
        .map(|n| {
            let id = Uuid::new_v4();
            let report = delivery(company, n).1["payload"].take();
            let event = ReportReady::new(id, CompanyId(company), report, None);
            (id, serde_json::to_vec(&event).expect("an event serializes"))
        })
        .collect();
    let js = stream::connect(&bus).await.expect("NATS reachable");
    stream::ensure_stream(&js, &bus)
        .await
        .expect("the report stream");
    // Pipelined on one connection: another task awaits the acks in order
    // while publishing goes on (the context lets 5,000 go unacknowledged,
    // then makes the next publish wait for a slot).
    let (acks, mut unacked) = tokio::sync::mpsc::unbounded_channel::<PublishAckFuture>();
    let acker = tokio::spawn(async move {
        let mut duplicates = 0usize;
        while let Some(ack) = unacked.recv().await {
            if ack.await.expect("JetStream stores the event").duplicate {
                duplicates += 1;
            }
        }
        (Instant::now(), duplicates)
    });
    let started = Instant::now();
    let mut published: HashMap<Uuid, DateTime<Utc>> = HashMap::with_capacity(options.events);
    let mut first = None;
    for (id, body) in events {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.to_string().as_str());
        let ack = js
            .publish_with_headers(bus.report_subject.clone(), headers, body.into())
            .await
            .expect("published");
        let at = Utc::now();
        first.get_or_insert(at);
        published.insert(id, at);
        acks.send(ack).expect("the acker runs");
    }
    drop(acks);
    let (acked, duplicates) = acker.await.expect("the acker");
    assert_eq!(duplicates, 0, "every event id is new");
    let first = first.expect("at least one event");
    println!(
        "  {} events published and acked in {:.2} s",
        options.events,
        (acked - started).as_secs_f64()
    );

    // `DELIVERY_WORKERS=0` in the environment (passed through): the
    // events become deliveries that nothing sends, which isolates the
    // consumer and the intake; only (a) is measured.
    let workers = std::env::var("DELIVERY_WORKERS").map_or(true, |w| w != "0");
    let trace = options.trace.then(|| {
        let (url, bus, n) = (
            on_database(&service.admin_url, &service.database),
            bus.clone(),
            options.events as i64,
        );
        tokio::spawn(async move { trace_bus_in(url, js, bus, n, workers, started).await })
    });
    let mut db = service.connect().await;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let (created, delivered): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE status = 'success')
             FROM impact_deliveries WHERE cause_event_id IS NOT NULL",
        )
        .fetch_one(&mut db)
        .await
        .expect("tally");
        if (if workers { delivered } else { created }) as usize >= options.events {
            break;
        }
        if Instant::now() > deadline {
            let rejected: i64 = sqlx::query_scalar("SELECT count(*) FROM bus_rejected")
                .fetch_one(&mut db)
                .await
                .expect("rejections");
            panic!(
                "the bus stalled: {created} deliveries, {delivered} delivered, {rejected} events rejected"
            );
        }
        // The figures come from the rows' timestamps, not from when this
        // sees them: a slow poll costs no accuracy, and each count scans
        // the table (~30 MB at 20,000 deliveries), which would load
        // Postgres during the measurement.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let rows: Vec<(Uuid, DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT cause_event_id, created_at, delivered_at
         FROM impact_deliveries WHERE cause_event_id IS NOT NULL",
    )
    .fetch_all(&mut db)
    .await
    .expect("the deliveries");
    assert_eq!(rows.len(), options.events, "one delivery per event");
    let since = |id: &Uuid, at: DateTime<Utc>| {
        let sent = published.get(id).expect("a delivery of a published event");
        (at - *sent).num_microseconds().unwrap_or(0) as f64 / 1000.0
    };
    let mut created: Vec<f64> = rows.iter().map(|(id, at, _)| since(id, *at)).collect();
    let mut delivered: Vec<f64> = rows
        .iter()
        .filter_map(|(id, _, at)| Some(since(id, (*at)?)))
        .collect();
    created.sort_by(f64::total_cmp);
    delivered.sort_by(f64::total_cmp);
    let span = |last: DateTime<Utc>| (last - first).num_microseconds().unwrap_or(0) as f64 / 1e6;
    let last_created = rows.iter().map(|(_, at, _)| *at).max().expect("rows");
    let last_delivered = rows.iter().filter_map(|(_, _, at)| *at).max();
    let repeated = match workers {
        true => service.arrivals(options.events).await.1 as f64,
        false => f64::NAN,
    };
    let rss = service.peak_rss_mib();
    if let Some(trace) = trace {
        trace.await.expect("the trace");
    }
    service.stop().await;
    delete_bus_streams(&bus).await;
    let n = options.events as f64;
    vec![
        (
            "published (acked) events/s",
            n / (acked - started).as_secs_f64(),
        ),
        ("events/s into deliveries", n / span(last_created)),
        (
            "publish→delivery created p50 ms",
            percentile(&created, 50.0),
        ),
        (
            "publish→delivery created p99 ms",
            percentile(&created, 99.0),
        ),
        (
            "events/s delivered (success)",
            last_delivered.map_or(f64::NAN, |last| n / span(last)),
        ),
        ("publish→delivered p50 ms", percentile(&delivered, 50.0)),
        ("publish→delivered p99 ms", percentile(&delivered, 99.0)),
        ("sent twice", repeated),
        ("peak RSS MiB, events in", rss),
    ]
}

/// With `--trace`: every second until every delivery is `success` (with
/// no workers: until every event is a delivery), how many events wait in
/// the stream, how many the service holds (delivered to it, not acked),
/// and how many deliveries exist and have succeeded.
async fn trace_bus_in(
    url: url::Url,
    js: async_nats::jetstream::Context,
    bus: BusConfig,
    events: i64,
    workers: bool,
    started: Instant,
) {
    let mut db = PgConnection::connect(url.as_str()).await.expect("bench db");
    let stream = js.get_stream(&bus.stream).await.expect("the report stream");
    loop {
        let consumer = stream
            .consumer_info(&bus.consumer)
            .await
            .expect("the consumer");
        let (created, delivered): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE status = 'success') FROM impact_deliveries",
        )
        .fetch_one(&mut db)
        .await
        .expect("tally");
        println!(
            "  {:>5.1} s: {:>6} events waiting in the stream, {:>4} with the service, {:>6} deliveries, {:>6} delivered",
            started.elapsed().as_secs_f64(),
            consumer.num_pending,
            consumer.num_ack_pending,
            created,
            delivered
        );
        if (if workers { delivered } else { created }) >= events {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `--outbox` unpublished events (half ingest, half delivery outcomes, as
/// the service writes them) in a fresh database before the service
/// starts; from spawning its process until the relay has marked every one
/// sent; then what the events stream holds.
async fn bus_out(admin_url: &str, options: &Options) -> Figures {
    let vars = bus_vars(&Uuid::new_v4().simple().to_string());
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let prepared = Service::prepare(admin_url, &extra).await;
    let mut db = prepared.migrate().await;
    // As `ingest::store` and `delivery::queue` write them (the same `data`
    // fields), all pending: no service runs yet.
    sqlx::query(
        "INSERT INTO bus_outbox (subject, company_id, correlation_id, causation_id, data)
         SELECT CASE WHEN i % 2 = 0 THEN 'ingest.volunteer.logged'
                     ELSE 'impact.delivery.succeeded' END,
                $1, gen_random_uuid(), CASE WHEN i % 2 = 1 THEN gen_random_uuid() END,
                CASE WHEN i % 2 = 0 THEN
                    jsonb_build_object('id', gen_random_uuid(), 'stream', 'benevity_volunteering',
                        'sourceId', 'vol-' || i, 'sourceUpdatedAt', now(),
                        'record', jsonb_build_object(
                            'volunteer', md5(i::text), 'hours', 1 + i % 8,
                            'programme', 'Language café ' || i % 40,
                            'date', current_date - (i % 90)::int))
                ELSE
                    jsonb_build_object('id', gen_random_uuid(), 'deliveryId', gen_random_uuid(),
                        'companyId', $1, 'provider', 'benevity', 'status', 'success',
                        'attemptCount', 1, 'deliveredAt', now(), 'scheduleId', NULL,
                        'httpStatus', 200, 'errorClass', NULL)
                END
         FROM generate_series(1, $2::bigint) AS i",
    )
    .bind(Uuid::new_v4())
    .bind(options.outbox as i64)
    .execute(&mut db)
    .await
    .expect("seed the outbox");
    // A backlog that built up over an outage would have been analysed.
    sqlx::query("ANALYZE bus_outbox")
        .execute(&mut db)
        .await
        .expect("analyze");
    drop(db);

    let service = prepared.spawn().await;
    let bus = service.bus.clone().expect("NATS_URL is set");
    let mut db = service.connect().await;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let pending: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM bus_outbox WHERE sent_at IS NULL)")
                .fetch_one(&mut db)
                .await
                .expect("pending");
        if !pending {
            break;
        }
        assert!(Instant::now() < deadline, "the relay stalled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = service.spawned.elapsed();
    let (pending, span, last_pass): (i64, f64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE sent_at IS NULL),
                extract(epoch FROM max(sent_at) - min(sent_at))::float8,
                count(*) FILTER (WHERE sent_at = (SELECT max(sent_at) FROM bus_outbox))
         FROM bus_outbox",
    )
    .fetch_one(&mut db)
    .await
    .expect("the outbox");
    assert_eq!(pending, 0);
    let js = impact_in::bus::stream::connect(&bus)
        .await
        .expect("NATS reachable");
    let on_stream = js
        .get_stream(&bus.events_stream)
        .await
        .expect("the events stream")
        .get_info()
        .await
        .expect("its state")
        .state
        .messages;
    let rss = service.peak_rss_mib();
    let startup = service.ready - service.spawned;
    service.stop().await;
    delete_bus_streams(&bus).await;
    assert_eq!(
        on_stream, options.outbox,
        "the events stream holds each outbox event once"
    );
    let n = options.outbox as f64;
    vec![
        (
            "relayed events/s from process start",
            n / drained.as_secs_f64(),
        ),
        // `sent_at` is each pass's start: from the first pass's to the
        // last's, every event but the last pass's was published.
        (
            "relayed events/s, first to last pass",
            (n - last_pass as f64) / span,
        ),
        ("service ready after ms", millis(startup)),
        ("events on the stream", on_stream as f64),
        ("peak RSS MiB, relay", rss),
    ]
}
