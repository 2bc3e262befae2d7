//! The Postgres pool and its migrations.

use sqlx::{
    PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::{ConfigError, DatabaseConfig};

/// Migrations are compiled into the binary, so `impact-in migrate` and the
/// start-up migration need no files beside it.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// A pool that connects on first use: the server binds and answers probes even
/// while Postgres is still down.
pub fn connect_lazy(config: &DatabaseConfig) -> Result<PgPool, ConfigError> {
    let options: PgConnectOptions = config.url().parse().map_err(|err| ConfigError {
        var: "DATABASE_URL".into(),
        problem: format!("not a valid Postgres URL ({})", redact_url_error(err)),
    })?;
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .connect_lazy_with(options.application_name("impact-in")))
}

/// sqlx parse errors may echo the URL, password included; keep only the kind.
fn redact_url_error(err: sqlx::Error) -> &'static str {
    match err {
        sqlx::Error::Configuration(_) => "bad configuration",
        _ => "parse error",
    }
}

/// Creates the database named in `DATABASE_URL` when it does not exist yet,
/// so a first `impact-in migrate` works on an empty server.
pub async fn create_database_if_missing(config: &DatabaseConfig) -> Result<(), sqlx::Error> {
    use sqlx::{Postgres, migrate::MigrateDatabase};
    if !Postgres::database_exists(config.url()).await? {
        Postgres::create_database(config.url()).await?;
        tracing::info!("created the database");
    }
    Ok(())
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Whether the database answers and carries every migration this binary
/// knows. One round trip: it serves both as ping and as migration check.
pub async fn migrations_applied(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let latest_known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
            .or_else(|err| match &err {
                // The bookkeeping table does not exist before the first migration.
                sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => Ok(None),
                _ => Err(err),
            })?;
    Ok(applied.unwrap_or(0) >= latest_known)
}

/// The id of this installation, made by the migration that created its
/// table: another database (a new environment, a fresh install) has
/// another one.
pub async fn installation_id(pool: &PgPool) -> Result<uuid::Uuid, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM impact_installation")
        .fetch_one(pool)
        .await
}
