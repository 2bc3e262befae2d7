//! Logging: JSON lines for production, pretty output for humans.
//!
//! Logs go to stderr: stdout is kept for what a command prints as its
//! result (`token`'s JWT, the sandbox's variables).

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogConfig, LogFormat};

/// `RUST_LOG`, when set, wins over `LOG_LEVEL` so a developer can narrow
/// output per module without editing the service configuration.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // Postgres NOTICEs ("relation already exists, skipping") are not news.
        .add_directive(
            "sqlx::postgres::notice=warn"
                .parse()
                .expect("static directive"),
        );
    let registry = tracing_subscriber::registry().with(filter);
    let layer = fmt::layer().with_writer(std::io::stderr);
    // `try_init`: a second call (tests) keeps the first subscriber.
    let _ = match config.format {
        LogFormat::Json => registry
            .with(layer.json().flatten_event(true).with_current_span(true))
            .try_init(),
        // Colour only for a terminal: in a file or a pipe the escape codes
        // are noise.
        LogFormat::Pretty => registry
            .with(layer.pretty().with_ansi(std::io::stderr().is_terminal()))
            .try_init(),
    };
}
