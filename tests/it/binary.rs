//! The real binary: configuration errors, `token`, `migrate`, graceful
//! shutdown on SIGTERM, what goes to stdout and stderr, and `scripts/run.sh`.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const BIN: &str = env!("CARGO_BIN_EXE_impact-in");
const JWT_SECRET: &str = "binary-test-secret-binary-test-secret-01";
const TOKEN_KEY: &str = "YmluYXJ5LXRlc3QtdG9rZW4ta2V5LWJpbmFyeS10ZXM=";

/// The binary with a clean environment, run from an empty directory so that
/// no developer `.env` leaks in.
pub(crate) fn impact_in(vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .envs(vars.iter().copied());
    command
}

/// Asserts the command exited 0 and returns its standard output.
pub(crate) fn succeeded(output: std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn database_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the test suite")
}

/// A database of its own on the test server, for the binary to create.
pub(crate) fn fresh_database_url(name: &str) -> String {
    let name = format!("impact_in_{name}_{}", std::process::id());
    match database_url().rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("DATABASE_URL has no database name"),
    }
}

/// Asserts the command exited with `code` and wrote one line on stderr, and
/// returns that line.
fn one_line_error(output: std::process::Output, code: i32) -> String {
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

#[test]
fn a_missing_database_url_stops_start_up_naming_it() {
    let output = impact_in(&[("JWT_SECRET", JWT_SECRET)])
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL: missing"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn a_bad_port_stops_start_up_naming_it() {
    let output = impact_in(&[
        ("DATABASE_URL", "postgres://x@127.0.0.1/x"),
        ("JWT_SECRET", JWT_SECRET),
        ("PORT_IMPACT_IN", "abc"),
    ])
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("PORT_IMPACT_IN: 'abc' is not a port number"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_token_encryption_key_stops_start_up_naming_it() {
    let output = impact_in(&[
        ("DATABASE_URL", "postgres://x@127.0.0.1/x"),
        ("JWT_SECRET", JWT_SECRET),
        ("TOKEN_ENCRYPTION_KEY", "c2hvcnQ="),
    ])
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("TOKEN_ENCRYPTION_KEY: must decode to 32 bytes, got 5"),
        "{stderr}"
    );
}

#[test]
fn token_prints_a_jwt_the_service_accepts() {
    let company = "6f1c2a8e-0d5b-4a39-9b0e-2f7d0c1e5a44";
    let output = impact_in(&[("JWT_SECRET", JWT_SECRET)])
        .args([
            "token",
            "--company",
            company,
            "--roles",
            "ADMIN_CONSOLE",
            "--ttl",
            "5m",
        ])
        .output()
        .unwrap();
    let token = succeeded(output);
    let config = impact_in::config::AuthConfig {
        jwt_key: impact_in::config::JwtKeySource::Secret(JWT_SECRET.into()),
        issuer: None,
        audience: None,
        ops_api_keys: vec![],
    };
    let principal = impact_in::auth::JwtVerifier::from_config(&config)
        .unwrap()
        .verify(token.trim())
        .unwrap();
    assert!(principal.can_access(company.parse().unwrap()));
    assert!(principal.require_read().is_ok());
    assert!(principal.require_write().is_err());
}

#[tokio::test]
async fn migrate_creates_the_database_and_is_idempotent() {
    use sqlx::{Postgres, migrate::MigrateDatabase};
    let url = fresh_database_url("migrate");
    for _ in 0..2 {
        succeeded(
            impact_in(&[("DATABASE_URL", &url)])
                .arg("migrate")
                .output()
                .unwrap(),
        );
    }
    assert!(Postgres::database_exists(&url).await.unwrap());
    Postgres::drop_database(&url).await.unwrap();
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

/// A slow in-flight request finishes after SIGTERM, new connections are
/// refused meanwhile, and the process exits 0. The request is slow because
/// the database accepts connections and never answers, so `/health` waits
/// out its 3 s check timeout.
#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_refuses_new_ones() {
    let db_address = crate::common::black_hole().await;
    let port = free_port();
    let mut server = tokio::process::Command::from(impact_in(&[
        ("DATABASE_URL", &format!("postgres://x@{db_address}/x")),
        ("JWT_SECRET", JWT_SECRET),
        ("TOKEN_ENCRYPTION_KEY", TOKEN_KEY),
        ("HOST", "127.0.0.1"),
        ("PORT_IMPACT_IN", &port.to_string()),
        ("HEALTH_CHECK_TIMEOUT_MS", "3000"),
        ("DATABASE_ACQUIRE_TIMEOUT_SECS", "30"),
        ("SHUTDOWN_TIMEOUT_SECS", "20"),
    ]))
    .kill_on_drop(true)
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();

    // Wait (bounded) until the server accepts connections.
    let mut up = false;
    for _ in 0..100 {
        if get(port, "/health/liveness")
            .await
            .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "server did not come up");

    let in_flight = tokio::spawn(get(port, "/health"));
    // Give the request time to reach the handler; it then runs for ~3 s.
    tokio::time::sleep(Duration::from_millis(500)).await;
    terminate(server.id().unwrap());

    // Bounded wait for the listener to close; the slow request is still running.
    let mut refused = false;
    for _ in 0..40 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "new connections were still accepted after SIGTERM");
    assert!(
        !in_flight.is_finished(),
        "the slow request ended before the check"
    );

    let response = in_flight
        .await
        .unwrap()
        .expect("in-flight request completed");
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("\"unhealthy\""), "{response}");

    let status = tokio::time::timeout(Duration::from_secs(20), server.wait())
        .await
        .expect("server exits within the shutdown timeout")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// sqlx would read any URL as Postgres options and the service would retry
/// "database not ready" for ever; the scheme is checked with the rest of
/// the configuration instead, by every command that reads it.
#[test]
fn a_database_url_that_is_not_postgres_stops_serve_and_migrate_naming_it() {
    for url in [
        "mysql://impact:hunter2@127.0.0.1:3306/impact_in",
        "http://impact:hunter2@127.0.0.1:5432/impact_in",
    ] {
        for command in ["serve", "migrate"] {
            let output = impact_in(&[
                ("DATABASE_URL", url),
                ("JWT_SECRET", JWT_SECRET),
                ("TOKEN_ENCRYPTION_KEY", TOKEN_KEY),
            ])
            .arg(command)
            .output()
            .unwrap();
            let stderr = one_line_error(output, 2);
            assert!(
                stderr.contains("configuration error: DATABASE_URL: '"),
                "{command}: {stderr}"
            );
            assert!(!stderr.contains("hunter2"), "{command}: {stderr}");
        }
    }
}

#[test]
fn a_redis_url_that_is_not_redis_stops_start_up_naming_it() {
    let output = impact_in(&[
        ("DATABASE_URL", "postgres://x@127.0.0.1/x"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("JWT_SECRET", JWT_SECRET),
        ("TOKEN_ENCRYPTION_KEY", TOKEN_KEY),
    ])
    .output()
    .unwrap();
    let stderr = one_line_error(output, 2);
    assert!(
        stderr.contains("configuration error: REDIS_URL:"),
        "{stderr}"
    );
}

/// sqlx errors repeat their source in their own message; the cause is
/// printed once, under the variable to look at.
#[test]
fn a_migrate_failure_is_one_line_naming_database_url() {
    let closed = free_port();
    let output = impact_in(&[(
        "DATABASE_URL",
        &format!("postgres://impact:hunter2@127.0.0.1:{closed}/impact_in"),
    )])
    .arg("migrate")
    .output()
    .unwrap();
    let stderr = one_line_error(output, 1);
    assert!(stderr.starts_with("impact-in: DATABASE_URL: "), "{stderr}");
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// A `.env` copied from `.env.example` (without running scripts/run.sh)
/// must not start a service keyed by the published placeholder secret.
#[test]
fn the_placeholders_of_env_example_are_refused() {
    let dir = private_dir("env-example");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example"),
        dir.join(".env"),
    )
    .unwrap();
    for command in [
        &["serve"][..],
        &["token", "--company", "00000000-0000-4000-8000-000000000001"],
    ] {
        let output = impact_in(&[])
            .current_dir(&dir)
            .args(command)
            .output()
            .unwrap();
        let stderr = one_line_error(output, 2);
        assert!(
            stderr.contains("JWT_SECRET: still the placeholder of .env.example"),
            "{command:?}: {stderr}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// An empty directory of this test's own under the system temp dir.
pub(crate) fn private_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("impact-in-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) async fn read_all(mut pipe: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut text = String::new();
    pipe.read_to_string(&mut text).await.unwrap();
    text
}

pub(crate) fn terminate(pid: u32) {
    signal(pid, "TERM");
}

pub(crate) fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// Polls `path` until it answers 200; panics after 30 s.
pub(crate) async fn until_ok(port: u16, path: &str) {
    for _ in 0..600 {
        if get(port, path)
            .await
            .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} on port {port} did not answer 200 within 30 s");
}

/// Pretty logs written to a pipe: no colour codes, no line per liveness
/// probe at info, and optional fields logged as their value or left out
/// (a failed attempt with a retry left, then one without).
#[tokio::test]
async fn pretty_logs_to_a_pipe_are_plain_skip_probes_and_print_no_options() {
    use sqlx::{Postgres, migrate::MigrateDatabase};
    let url = fresh_database_url("pretty_logs");
    succeeded(
        impact_in(&[("DATABASE_URL", &url)])
            .arg("migrate")
            .output()
            .unwrap(),
    );
    let port = free_port();
    let ops_key = "ops-key-binary-test-0123456789";
    let mut server = tokio::process::Command::from(impact_in(&[
        ("DATABASE_URL", &url),
        ("JWT_SECRET", JWT_SECRET),
        ("TOKEN_ENCRYPTION_KEY", TOKEN_KEY),
        ("OPS_API_KEYS", ops_key),
        ("HOST", "127.0.0.1"),
        ("PORT_IMPACT_IN", &port.to_string()),
        ("LOG_FORMAT", "pretty"),
        // Refused at once: a transient failure, retried once, then final.
        (
            "BENEVITY_API_URL",
            &format!("http://127.0.0.1:{}", free_port()),
        ),
        ("BENEVITY_API_KEY", "binary-test-benevity-key"),
        ("BENEVITY_SIGNATURE_SECRET", "binary-test-benevity-secret"),
        ("BENEVITY_RETRY_MAX_ATTEMPTS", "2"),
        ("BENEVITY_RETRY_INITIAL_DELAY_MS", "100"),
    ]))
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    let stdout = tokio::spawn(read_all(server.stdout.take().unwrap()));
    let stderr = tokio::spawn(read_all(server.stderr.take().unwrap()));
    until_ok(port, "/health/readiness").await;
    for _ in 0..3 {
        until_ok(port, "/health/liveness").await;
    }

    let company = "6f1c2a8e-0d5b-4a39-9b0e-2f7d0c1e5a44";
    let delivery_id = "0193a1c2-9b0f-7c2e-a1b2-c3d4e5f60718";
    let mut report: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/impact_report.json")).unwrap();
    report["companyId"] = company.into();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/v1/impact-in/deliveries");
    let created = client
        .post(&base)
        .bearer_auth(ops_key)
        .json(&serde_json::json!({
            "companyId": company,
            "provider": "benevity",
            "deliveryId": delivery_id,
            "payload": report,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202, "{}", created.text().await.unwrap());
    let mut failed = false;
    for _ in 0..300 {
        let delivery: serde_json::Value = client
            .get(format!("{base}/{delivery_id}"))
            .bearer_auth(ops_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if delivery["status"] == "failed" {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failed, "the delivery did not fail within 15 s");

    terminate(server.id().unwrap());
    let status = tokio::time::timeout(Duration::from_secs(20), server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert_eq!(stdout.await.unwrap(), "", "logs go to stderr");
    let log = stderr.await.unwrap();
    assert!(!log.contains('\x1b'), "colour codes in a pipe:\n{log}");
    assert!(
        log.contains("route: \"/v1/impact-in/deliveries\""),
        "requests are still logged at info:\n{log}"
    );
    assert!(!log.contains("/health/liveness"), "a probe at info:\n{log}");
    assert!(
        !log.contains("/health/readiness"),
        "a probe at info:\n{log}"
    );
    assert_eq!(
        log.matches("delivery attempt failed").count(),
        2,
        "both attempts are logged:\n{log}"
    );
    assert_eq!(log.matches("retry_in_secs: ").count(), 1, "{log}");
    assert!(!log.contains("Some("), "{log}");
    assert!(!log.contains("None"), "{log}");
    Postgres::drop_database(&url).await.unwrap();
}

/// How a `scripts/run.sh` run is ended.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// This signal to the script alone.
    Signal(&'static str),
    /// SIGTERM to the server alone: it exits by itself, as far as the
    /// script can tell.
    ServerExits,
}

/// Starts `scripts/run.sh` (with the binary already built, a database of
/// its own and free ports), waits until it serves, ends it with `stop`, and
/// checks that the server and the sandbox are gone and both ports free.
async fn run_sh_stops_everything(stop: Stop) {
    use sqlx::{Postgres, migrate::MigrateDatabase};
    let label = format!("{stop:?}")
        .to_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "");
    // A copy of the scripts, so that the `.env` run.sh writes lands in a
    // directory of the test's own, not in the checkout.
    let dir = private_dir(&format!("run-sh-{label}"));
    std::fs::create_dir(dir.join("scripts")).unwrap();
    for script in ["run.sh", "services.sh"] {
        std::fs::copy(
            format!("{}/scripts/{script}", env!("CARGO_MANIFEST_DIR")),
            dir.join("scripts").join(script),
        )
        .unwrap();
    }
    let url = fresh_database_url(&format!("run_sh_{label}"));
    let (port, sandbox_port) = (free_port(), free_port());
    let log = std::fs::File::create(dir.join("run.log")).unwrap();
    let mut script = tokio::process::Command::new("bash");
    script
        .arg(dir.join("scripts/run.sh"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &url)
        .env("REDIS_URL", crate::common::redis_url())
        .env("IMPACT_IN_BIN", BIN)
        .env("PORT_IMPACT_IN", port.to_string())
        .env("SANDBOX_PORT", sandbox_port.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true);
    // A shell that starts with a signal ignored can never trap it (POSIX),
    // and a test runner started under nohup or in the background hands
    // SIGHUP and SIGINT down ignored: give run.sh the defaults an operator's
    // terminal gives it.
    // SAFETY: only async-signal-safe calls, between fork and exec.
    unsafe {
        script.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut script = script.spawn().unwrap();
    let script_pid = script.id().unwrap();
    let run_log = || std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();

    // Started once the banner is out: both children are up by then.
    for _ in 0..600 {
        if run_log().contains("Impact-In listens on") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let children = children(script_pid);
    let find = |arg: &str| {
        children
            .iter()
            .find(|(_, args)| args[0] == BIN && args.iter().any(|a| a == arg))
            .map(|(pid, _)| *pid)
    };
    let pids = find("serve").zip(find("sandbox"));
    let (server, sandbox) = pids.unwrap_or_else(|| panic!("no server and sandbox:\n{}", run_log()));

    match stop {
        Stop::Signal(name) => signal(script_pid, name),
        Stop::ServerExits => terminate(server),
    }
    let status = tokio::time::timeout(Duration::from_secs(30), script.wait())
        .await
        .unwrap_or_else(|_| panic!("run.sh did not exit:\n{}", run_log()))
        .unwrap();
    for (what, pid) in [("server", server), ("sandbox", sandbox)] {
        assert!(
            !running(pid),
            "the {what} outlived run.sh ({stop:?}):\n{}",
            run_log()
        );
    }
    for port in [port, sandbox_port] {
        // Bound as the server binds (SO_REUSEADDR), as the next run.sh would.
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|err| panic!("port {port} still taken ({stop:?}): {err}"));
    }
    let expected = match stop {
        Stop::Signal("TERM") => Some(143),
        Stop::Signal("INT") => Some(130),
        Stop::Signal("HUP") => Some(129),
        Stop::Signal(_) => None,
        Stop::ServerExits => Some(0),
    };
    assert_eq!(status.code(), expected, "{}", run_log());
    let env = std::fs::read_to_string(dir.join(".env")).unwrap();
    assert!(env.contains(&format!("\nDATABASE_URL={url}\n")), "{env}");
    Postgres::drop_database(&url).await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// The processes whose parent is `parent`, with their arguments.
fn children(parent: u32) -> Vec<(u32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the command name in parentheses: state, then parent pid.
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let args = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
            (ppid == parent).then(|| (pid, args.split('\0').map(String::from).collect()))
        })
        .collect()
}

/// Whether `pid` exists and is not a zombie (exited, not yet reaped).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

#[tokio::test]
async fn run_sh_stops_the_server_and_sandbox_on_sigterm() {
    run_sh_stops_everything(Stop::Signal("TERM")).await;
}

#[tokio::test]
async fn run_sh_stops_the_server_and_sandbox_on_sigint() {
    run_sh_stops_everything(Stop::Signal("INT")).await;
}

#[tokio::test]
async fn run_sh_stops_the_server_and_sandbox_on_sighup() {
    run_sh_stops_everything(Stop::Signal("HUP")).await;
}

#[tokio::test]
async fn run_sh_stops_the_sandbox_when_the_server_exits() {
    run_sh_stops_everything(Stop::ServerExits).await;
}

/// The logs of the real process, at debug, after a verified and two
/// refused webhooks: they say a webhook was refused and why, and hold no
/// secret, no signature and nothing of the bodies.
#[tokio::test]
async fn webhook_logs_hold_no_secret_signature_or_body() {
    use impact_in::webhooks::signature::{sign_benevity, sign_standard};
    let url = fresh_database_url("webhook_logs");
    succeeded(
        impact_in(&[("DATABASE_URL", &url)])
            .arg("migrate")
            .output()
            .unwrap(),
    );
    let benevity_secret = "binary-test-benevity-webhook-secret";
    let goodera_secret = "whsec_YmluYXJ5LXRlc3QtZ29vZGVyYS13ZWJob29rLWtleQ==";
    let port = free_port();
    let mut server = tokio::process::Command::from(impact_in(&[
        ("DATABASE_URL", &url),
        ("JWT_SECRET", JWT_SECRET),
        ("TOKEN_ENCRYPTION_KEY", TOKEN_KEY),
        ("HOST", "127.0.0.1"),
        ("PORT_IMPACT_IN", &port.to_string()),
        ("LOG_LEVEL", "debug"),
        ("BENEVITY_WEBHOOK_SECRET", benevity_secret),
        ("GOODERA_WEBHOOK_SECRET", goodera_secret),
    ]))
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    let stderr = tokio::spawn(read_all(server.stderr.take().unwrap()));
    until_ok(port, "/health/readiness").await;

    let body = serde_json::json!({
        "event_id": "evt_binary_logged", "event_type": "delivery.failed",
        "occurred_at": "2026-12-06T11:00:00Z",
        "data": {"delivery_id": "0193a1c2-9b0f-7c2e-a1b2-c3d4e5f60718",
                 "reasons": ["a reason only the body holds"]},
    })
    .to_string();
    let now = chrono::Utc::now().timestamp();
    let good = sign_benevity(benevity_secret.as_bytes(), now, body.as_bytes());
    let bad = sign_benevity(b"not-the-benevity-webhook-secret", now, body.as_bytes());
    let forged = sign_standard(&[7; 32], "msg_binary_logged", now, body.as_bytes());
    let benevity = |signature: &str| {
        vec![
            ("x-benevity-timestamp", now.to_string()),
            ("x-benevity-signature", signature.to_owned()),
        ]
    };
    let requests = [
        ("/webhooks/benevity", benevity(&good)),
        ("/webhooks/benevity", benevity(&bad)),
        (
            "/webhooks/goodera",
            vec![
                ("webhook-id", "msg_binary_logged".to_owned()),
                ("webhook-timestamp", now.to_string()),
                ("webhook-signature", forged.clone()),
            ],
        ),
    ];
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for (path, headers) in requests {
        let mut request = client
            .post(format!("http://127.0.0.1:{port}{path}"))
            .header("content-type", "application/json")
            .body(body.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        answers.push(request.send().await.unwrap().status().as_u16());
    }
    assert_eq!(answers, [202, 401, 401]);

    terminate(server.id().unwrap());
    let status = tokio::time::timeout(Duration::from_secs(20), server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let log = stderr.await.unwrap();
    assert!(
        log.contains("webhook refused") && log.contains("signature_mismatch"),
        "{log}"
    );
    for secret in [
        benevity_secret,
        goodera_secret,
        &goodera_secret[6..],
        &good[7..],
        &bad[7..],
        &forged[3..],
        "a reason only the body holds",
        "evt_binary_logged",
    ] {
        assert!(!log.contains(secret), "the logs hold {secret}:\n{log}");
    }
    use sqlx::{Postgres, migrate::MigrateDatabase};
    let _ = Postgres::drop_database(&url).await;
}
