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

/// A top-level data field larger than this (serialized) is left out of an
/// event too large for the bus.
const KEPT_FIELD_BYTES: usize = 1024;

/// An event's message body, and whether its data had to be cut to fit.
#[derive(Debug)]
pub struct Message {
    pub body: Vec<u8>,
    pub truncated: bool,
}

impl Pending {
    pub fn envelope(&self) -> Envelope<'_> {
        self.envelope_with(&self.data)
    }

    fn envelope_with<'a>(&'a self, data: &'a serde_json::Value) -> Envelope<'a> {
        Envelope {
            id: self.event_id,
            event_type: &self.subject,
            version: VERSION,
            timestamp: self.occurred_at,
            company_id: self.company_id,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            data,
        }
    }

    /// The envelope as JSON, at most `max_bytes` long. NATS refuses a
    /// message over the server's `max_payload` (1 MiB by default), and an
    /// event that can never be published would hold every later one back
    /// for ever; so an event whose data does not fit (an ingested record
    /// with a huge free-text field) goes with the data's small top-level
    /// fields only (ids, times), `truncated: true` and the names of the
    /// fields left out in `omitted`. The full record stays readable through
    /// the API (docs/bus.md).
    pub fn message(&self, max_bytes: usize) -> Message {
        let body = to_json(&self.envelope());
        if body.len() <= max_bytes {
            return Message {
                body,
                truncated: false,
            };
        }
        let bare = serde_json::json!({"truncated": true});
        // Many small fields could still be too many: then none of them.
        let body = trimmed(&self.data)
            .map(|data| to_json(&self.envelope_with(&data)))
            .filter(|body| body.len() <= max_bytes)
            .unwrap_or_else(|| to_json(&self.envelope_with(&bare)));
        Message {
            body,
            truncated: true,
        }
    }
}

/// An object's small top-level fields, with `truncated` and the names of
/// the others in `omitted`; `None` for data that is not an object.
fn trimmed(data: &serde_json::Value) -> Option<serde_json::Value> {
    let fields = data.as_object()?;
    let mut kept = serde_json::Map::new();
    let mut omitted = Vec::new();
    for (name, value) in fields {
        if to_json(value).len() <= KEPT_FIELD_BYTES {
            kept.insert(name.clone(), value.clone());
        } else {
            omitted.push(name.clone());
        }
    }
    kept.insert("truncated".into(), true.into());
    kept.insert("omitted".into(), omitted.into());
    Some(kept.into())
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON values and envelopes always serialize")
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn pending(data: Value) -> Pending {
        Pending {
            seq: 1,
            event_id: Uuid::nil(),
            subject: "ingest.donation.made".into(),
            company_id: CompanyId(Uuid::nil()),
            correlation_id: None,
            causation_id: None,
            occurred_at: DateTime::UNIX_EPOCH,
            data,
        }
    }

    fn data_of(message: &Message) -> Value {
        serde_json::from_slice::<Value>(&message.body).unwrap()["data"].clone()
    }

    #[test]
    fn an_event_that_fits_goes_whole() {
        let event = pending(json!({"id": "r1", "record": {"notes": "x".repeat(2000)}}));
        let message = event.message(10_000);
        assert!(!message.truncated);
        assert_eq!(data_of(&message), event.data);
    }

    #[test]
    fn an_event_too_large_keeps_its_small_fields_and_names_the_others() {
        let event = pending(json!({"id": "r1", "record": {"notes": "x".repeat(2000)}}));
        let message = event.message(1_000);
        assert!(message.truncated);
        assert!(message.body.len() <= 1_000);
        assert_eq!(
            data_of(&message),
            json!({"id": "r1", "truncated": true, "omitted": ["record"]})
        );
    }

    #[test]
    fn too_many_small_fields_or_data_not_an_object_leave_only_the_mark() {
        let many: serde_json::Map<String, Value> =
            (0..200).map(|n| (format!("f{n}"), json!(n))).collect();
        for data in [Value::Object(many), json!(["x".repeat(5000)])] {
            let message = pending(data).message(1_000);
            assert!(message.truncated);
            assert_eq!(data_of(&message), json!({"truncated": true}));
        }
    }
}
