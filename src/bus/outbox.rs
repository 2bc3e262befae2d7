//! The outbox of the bus out (docs/bus.md): events the ingest store, the
//! delivery queue and the webhook store write in their own transactions,
//! read here in publishing order, put in seed 002's BaseEvent envelope,
//! and marked sent once JetStream has them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ids::CompanyId;

/// An outbox row not yet published.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Pending {
    pub seq: i64,
    pub event_id: Uuid,
    /// The event type, which is also its subject (before the prefix).
    pub subject: String,
    pub company_id: CompanyId,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub data: serde_json::Value,
}

/// What a subscriber receives: the BaseEvent fields of seed 002 (`id`,
/// `version`, `timestamp`, `correlationId`, `causationId`) with the event's
/// `type`, its company and its `data`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<'a> {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    pub version: &'static str,
    pub timestamp: DateTime<Utc>,
    pub company_id: CompanyId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    pub data: &'a serde_json::Value,
}

/// The envelope's schema version.
pub const VERSION: &str = "1";

impl Pending {
    pub fn envelope(&self) -> Envelope<'_> {
        Envelope {
            id: self.event_id,
            event_type: &self.subject,
            version: VERSION,
            timestamp: self.occurred_at,
            company_id: self.company_id,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            data: &self.data,
        }
    }
}

/// The next unpublished events, oldest first, at most `limit`.
///
/// Only rows whose transaction is older than every transaction still
/// running (`tx` below the snapshot's `xmin`) are taken, in (`tx`, `seq`)
/// order: a transaction that began earlier but commits later would
/// otherwise see its events published after a later one's, and the
/// order per subject would depend on commit timing. A long-running writer
/// holds the relay back until it ends (docs/runbook.md).
pub async fn next(conn: &mut PgConnection, limit: i64) -> Result<Vec<Pending>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, event_id, subject, company_id, correlation_id, causation_id, occurred_at, data
         FROM bus_outbox
         WHERE sent_at IS NULL AND tx < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY tx, seq
         LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Marks these events published.
pub async fn mark_sent(conn: &mut PgConnection, seqs: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE bus_outbox SET sent_at = now() WHERE seq = ANY($1)")
        .bind(seqs)
        .execute(conn)
        .await?;
    Ok(())
}

/// Unpublished events, and the age in seconds of the oldest (`None`: none),
/// for the gauges.
pub async fn backlog(db: &sqlx::PgPool) -> Result<(i64, Option<f64>), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), extract(epoch FROM now() - min(occurred_at))::float8
         FROM bus_outbox WHERE sent_at IS NULL",
    )
    .fetch_one(db)
    .await
}
