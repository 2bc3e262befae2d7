//! The real binary: configuration errors, `token`, `migrate`, and graceful
//! shutdown on SIGTERM.

mod common;

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
fn impact_in(vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .envs(vars.iter().copied());
    command
}

/// Asserts the command exited 0 and returns its standard output.
fn succeeded(output: std::process::Output) -> String {
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
    let name = format!("impact_in_migrate_{}", std::process::id());
    let url = match database_url().rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("DATABASE_URL has no database name"),
    };
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

fn free_port() -> u16 {
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
    let db_address = common::black_hole().await;
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
    let pid = server.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );

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
