//! Command line: `serve` (the default), `migrate`, `rekey`, `token`,
//! `publish-report`, `watch-events`, `openapi`, `sandbox`.

use std::{net::Ipv4Addr, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::{
    auth::{JwtSigner, Role},
    config::{AuthConfig, BusConfig, Config, ConfigError, DatabaseConfig, LogConfig},
    connectors::{keyring::Keyring, vault::Vault},
    db,
    sandbox::{self, SandboxConfig},
    telemetry,
};

#[derive(Parser)]
#[command(name = "impact-in", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server on PORT_IMPACT_IN (the default command).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Seal every vaulted credential again under TOKEN_ENCRYPTION_KEY, after
    /// a key rotation (docs/runbook.md); fails while any opens under none
    /// of the configured keys.
    Rekey,
    /// Print a signed development JWT (needs JWT_SECRET).
    Token {
        /// Company the token grants; repeat for several.
        #[arg(long = "company", required = true)]
        companies: Vec<Uuid>,
        /// Comma-separated roles.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "ADMIN_CONSOLE,MANAGE_INTEGRATIONS"
        )]
        roles: Vec<String>,
        /// Lifetime, e.g. 15m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// The `sub` claim.
        #[arg(long, default_value = "dev")]
        subject: String,
        /// Print a sign-in link to the delivery console instead,
        /// `<base>/console#token=<jwt>`: the base is PUBLIC_BASE_URL, else
        /// http://127.0.0.1:PORT_IMPACT_IN. The token is in the fragment,
        /// which a browser never sends, so it reaches no server and no log.
        #[arg(long)]
        console: bool,
    },
    /// Publish one report-ready event to NATS_REPORT_SUBJECT (needs
    /// NATS_URL), as the platform would: the company's delivery rules then
    /// decide which providers it goes to (docs/bus.md).
    PublishReport {
        #[arg(long)]
        company: Uuid,
        /// The canonical impact report (docs/payloads.md), as JSON.
        #[arg(long)]
        file: std::path::PathBuf,
        /// Comma-separated: only these of the rules' providers.
        #[arg(long, value_delimiter = ',')]
        providers: Option<Vec<crate::provider::Provider>>,
        /// The event id (a new one by default); publishing the same id
        /// again makes no second delivery.
        #[arg(long)]
        event_id: Option<Uuid>,
    },
    /// Print the events we publish (NATS_EVENTS_STREAM, needs NATS_URL) as
    /// JSON lines, as a subscriber sees them (docs/bus.md).
    WatchEvents {
        /// Only this subject, e.g. impact.delivery.succeeded (under
        /// NATS_EVENTS_SUBJECT_PREFIX); every subject by default.
        #[arg(long)]
        subject: Option<String>,
        /// Start from the last event of each subject instead of new ones.
        #[arg(long)]
        last: bool,
        /// Stop after this many events.
        #[arg(long, default_value_t = usize::MAX, hide_default_value = true)]
        count: usize,
        /// Stop when none came for this long, e.g. 10s.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// Print the OpenAPI contract (docs/openapi.json is its output).
    Openapi,
    /// Serve the provider SANDBOX on 127.0.0.1: simulated Benevity, Goodera
    /// and Workday, and the ingest sources, for development, not the real
    /// providers.
    Sandbox {
        #[arg(long, default_value_t = 3999)]
        port: u16,
        /// Post the providers' status webhooks to this base, e.g.
        /// http://127.0.0.1:3007/webhooks (signed with the sandbox's
        /// webhook secrets, which the printed variables carry).
        #[arg(long)]
        webhook_url: Option<url::Url>,
        /// Generated records per ingest stream (at most 100000000).
        #[arg(
            long,
            default_value_t = sandbox::ingest::DEFAULT_RECORDS,
            value_parser = clap::value_parser!(u64).range(..=sandbox::ingest::MAX_RECORDS)
        )]
        records: u64,
        /// Date the generated events in the 90 days before this day
        /// (YYYY-MM-DD, e.g. today, so schedules find recent data) instead
        /// of before 2026-01-01.
        #[arg(long)]
        events_until: Option<chrono::NaiveDate>,
    },
}

/// Exit codes: 0 success, 1 runtime failure, 2 configuration error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let result = runtime.block_on(run(cli.command.unwrap_or(Command::Serve)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => match err.downcast_ref::<ConfigError>() {
            Some(config_error) => {
                eprintln!("impact-in: {config_error}");
                ExitCode::from(2)
            }
            None => {
                eprintln!("impact-in: {}", one_line(&err));
                ExitCode::FAILURE
            }
        },
    }
}

/// The error and its causes on one line, like `{:#}`, but each text once:
/// sqlx errors, for one, repeat their source in their own message.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let config = Config::from_env()?;
            let telemetry = telemetry::init(&config.log, config.traces.as_ref())?;
            if let Some(traces) = config.traces.as_ref().filter(|_| telemetry.exporting()) {
                tracing::info!(endpoint = %traces.describe(), service = %traces.service_name, "exporting spans over OTLP");
            }
            let served = crate::app::serve(config).await;
            telemetry.shutdown().await;
            served
        }
        Command::Migrate => {
            telemetry::init_logs(&LogConfig::from_env()?);
            let database = DatabaseConfig::from_env()?;
            // Built first: it is what refuses a URL it cannot read (exit 2).
            let pool = db::connect_lazy(&database)?;
            db::create_database_if_missing(&database)
                .await
                .context("DATABASE_URL: cannot reach or create the database")?;
            db::migrate(&pool)
                .await
                .context("DATABASE_URL: cannot apply the migrations")?;
            tracing::info!("migrations applied");
            pool.close().await;
            if let Some(bus) = BusConfig::from_env()? {
                let js = crate::bus::stream::connect(&bus)
                    .await
                    .context("NATS_URL: cannot connect")?;
                crate::bus::stream::ensure_stream(&js, &bus)
                    .await
                    .context("NATS_URL: cannot create the report stream")?;
                crate::bus::stream::ensure_events_stream(&js, &bus)
                    .await
                    .context("NATS_URL: cannot create the events stream")?;
                tracing::info!(reports = %bus.stream, events = %bus.events_stream, "streams in place");
            }
            Ok(())
        }
        Command::Rekey => {
            let config = Config::from_env()?;
            telemetry::init_logs(&config.log);
            let pool = db::connect_lazy(&config.database)?;
            let vault = Vault::new(pool.clone(), Keyring::new(&config.connectors.keys));
            let done = vault
                .rekey()
                .await
                .context("DATABASE_URL: cannot read the credential vault")?;
            pool.close().await;
            println!(
                "sealed again: {}, already under the current key: {}, unreadable: {}",
                done.sealed_again, done.current, done.unreadable
            );
            anyhow::ensure!(
                done.unreadable == 0,
                "{} vaulted values open under none of the configured keys: keep \
                 TOKEN_ENCRYPTION_KEY_PREVIOUS until they are stored again",
                done.unreadable
            );
            Ok(())
        }
        Command::Token {
            companies,
            roles,
            ttl,
            subject,
            console,
        } => {
            for role in roles.iter().filter(|r| Role::parse(r).is_none()) {
                eprintln!("impact-in: warning: '{role}' is not a role this service checks");
            }
            // Read after AuthConfig, which loads `.env`.
            let signer = JwtSigner::from_config(&AuthConfig::from_env()?)?;
            let base = console
                .then(|| crate::config::public_base(&|var| std::env::var(var).ok()))
                .transpose()?;
            let token = signer.sign(
                &subject,
                &companies,
                &roles,
                jsonwebtoken::get_current_timestamp(),
                ttl.as_secs(),
            );
            match base {
                Some(base) => println!("{}", console_link(&base, &token)),
                None => println!("{token}"),
            }
            Ok(())
        }
        Command::PublishReport {
            company,
            file,
            providers,
            event_id,
        } => {
            let bus = BusConfig::from_env()?.ok_or_else(|| {
                ConfigError::new("NATS_URL", "missing: the bus is not configured")
            })?;
            let report =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let report: serde_json::Value = serde_json::from_slice(&report)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let published = crate::bus::publish::report_ready(
                &bus,
                crate::bus::event::ReportReady::new(
                    event_id.unwrap_or_else(Uuid::new_v4),
                    company.into(),
                    report,
                    providers.map(|p| p.into_iter().collect()),
                ),
            )
            .await?;
            println!("{published}");
            Ok(())
        }
        Command::WatchEvents {
            subject,
            last,
            count,
            wait,
        } => {
            let bus = BusConfig::from_env()?.ok_or_else(|| {
                ConfigError::new("NATS_URL", "missing: the bus is not configured")
            })?;
            crate::bus::watch::events(&bus, subject.as_deref(), last, count, wait).await?;
            Ok(())
        }
        Command::Openapi => {
            println!("{}", crate::http::openapi::spec_json());
            Ok(())
        }
        Command::Sandbox {
            port,
            webhook_url,
            records,
            events_until,
        } => {
            telemetry::init_logs(&LogConfig::from_env()?);
            let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
                .await
                .map_err(|err| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {err}"))?;
            let url = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
            tracing::warn!(
                %url,
                "this is the provider SANDBOX, not the real providers: fixed development \
                 credentials, simulated Benevity, Goodera and Workday and generated ingest data, \
                 nothing leaves this machine; the variables on stdout point impact-in at it"
            );
            // Stdout carries only the variables (logs go to stderr), so it
            // can be saved as a `.env` or read by a script.
            for (name, value) in sandbox::credentials::env_vars(&url) {
                println!("{name}={value}");
            }
            let mut config = SandboxConfig::default().with_records(records);
            if let Some(until) = events_until {
                config = config.with_events_until(until);
            }
            if let Some(url) = webhook_url {
                tracing::info!(%url, "the sandbox posts status webhooks");
                config = config.with_webhook_url(url.as_str());
            }
            sandbox::serve(listener, config, shutdown_signal()).await?;
            Ok(())
        }
    }
}

/// The console's sign-in link: the page moves the token from the fragment
/// to the tab's `sessionStorage` and clears it from the address bar.
fn console_link(base: &str, token: &str) -> String {
    format!("{base}/console#token={token}")
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::error!("cannot listen for SIGINT/SIGTERM; stop the sandbox by killing it");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn base(vars: &[(&str, &str)]) -> Result<String, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        crate::config::public_base(&|var| vars.get(var).cloned())
    }

    #[test]
    fn the_console_link_carries_the_token_in_the_fragment() {
        let link = console_link("http://127.0.0.1:3007", "aaa.bbb.ccc");
        assert_eq!(link, "http://127.0.0.1:3007/console#token=aaa.bbb.ccc");
        let url = url::Url::parse(&link).unwrap();
        assert_eq!(url.path(), "/console");
        assert_eq!(url.query(), None);
        assert_eq!(url.fragment(), Some("token=aaa.bbb.ccc"));
    }

    #[test]
    fn the_link_base_is_public_base_url_else_the_local_port() {
        assert_eq!(base(&[]).unwrap(), "http://127.0.0.1:3007");
        assert_eq!(
            base(&[("PORT_IMPACT_IN", "4100")]).unwrap(),
            "http://127.0.0.1:4100"
        );
        // Blank counts as unset, as for every variable.
        assert_eq!(
            base(&[("PUBLIC_BASE_URL", " "), ("PORT_IMPACT_IN", "4100")]).unwrap(),
            "http://127.0.0.1:4100"
        );
        for (raw, expected) in [
            ("https://impact.example.com", "https://impact.example.com"),
            ("https://impact.example.com/", "https://impact.example.com"),
            (
                "https://example.com/impact-in/",
                "https://example.com/impact-in",
            ),
            ("http://127.0.0.1:3107", "http://127.0.0.1:3107"),
        ] {
            let found = base(&[("PUBLIC_BASE_URL", raw), ("PORT_IMPACT_IN", "4100")]).unwrap();
            assert_eq!(found, expected, "{raw}");
            assert_eq!(
                console_link(&found, "t"),
                format!("{expected}/console#token=t")
            );
        }
    }

    #[test]
    fn a_bad_base_or_port_names_its_variable() {
        for (var, raw) in [
            ("PUBLIC_BASE_URL", "impact.example.com"),
            ("PUBLIC_BASE_URL", "ftp://impact.example.com"),
            ("PORT_IMPACT_IN", "0"),
            ("PORT_IMPACT_IN", "70000"),
            ("PORT_IMPACT_IN", "abc"),
        ] {
            let err = base(&[(var, raw)]).unwrap_err();
            assert_eq!(err.var, var, "{raw}");
        }
    }

    #[test]
    fn token_takes_console() {
        let cli = Cli::try_parse_from([
            "impact-in",
            "token",
            "--company",
            "00000000-0000-4000-8000-000000000001",
            "--console",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Token { console: true, .. })
        ));
    }
}
