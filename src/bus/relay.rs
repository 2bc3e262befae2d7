//! The relay: publishes the outbox's events to JetStream, in order, one
//! replica at a time, and marks each sent only once JetStream acked it.

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use async_nats::{
    HeaderMap,
    jetstream::{self, context::PublishAckFuture},
};
use tokio_util::sync::CancellationToken;

use super::{
    BusContext,
    outbox::{self, Pending},
    stream,
};
use crate::config::BusConfig;

/// The advisory lock a relay pass holds: one replica publishes at a time,
/// so the order of the outbox is the order on the stream. (Public so
/// operators and tests can see a pass under way in `pg_locks`.)
pub const RELAY_LOCK: i64 = 0x1e1a_7b05;
/// Publishes whose ack is not yet awaited, at most.
const IN_FLIGHT: usize = 1024;
/// Room left in NATS's `max_payload` for the headers (`Nats-Msg-Id` takes
/// under 100 bytes).
const HEADER_ROOM: usize = 1024;
/// The longest pause after failed passes (NATS or Postgres down).
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("publish: {0}")]
    Publish(String),
}

/// Runs passes until `shutdown`: at once again after a full batch, after
/// `NATS_RELAY_INTERVAL_MS` when the outbox was drained (or another replica
/// holds it), with a doubling pause after a failure. A pass under way when
/// shutdown comes is finished (its acks are awaited and recorded).
pub async fn run(ctx: BusContext, shutdown: CancellationToken) {
    let config = &ctx.config;
    tracing::info!(stream = %config.events_stream, "bus relay starting");
    let Some(js) = stream::connect_events_with_retry(config, &shutdown).await else {
        tracing::info!("bus relay stopped");
        return;
    };
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let pause = match pass(ctx.db(), &js, config).await {
            Ok(sent) => {
                failures = 0;
                if sent as i64 >= config.relay_batch {
                    continue;
                }
                config.relay_interval
            }
            Err(err) => {
                failures += 1;
                let pause = Duration::from_millis(250)
                    .saturating_mul(1 << failures.min(8))
                    .min(MAX_BACKOFF);
                tracing::warn!(error = %err, retry_in = ?pause, "bus relay pass failed; the outbox keeps the events");
                // A stream deleted under us: set it up again. With NATS
                // gone its requests wait out their timeouts (5 s each), so
                // shutdown does not wait for them: it is idempotent, and
                // tried again after the next failed pass.
                if let RelayError::Publish(_) = err {
                    tokio::select! {
                        result = stream::ensure_events_stream(&js, config) => {
                            if let Err(err) = result {
                                tracing::debug!(error = %err, "events stream not set up again yet");
                            }
                        }
                        () = shutdown.cancelled() => {}
                    }
                }
                pause
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => {}
        }
    }
    tracing::info!("bus relay stopped");
}

/// One pass: under the relay lock, the next batch of outbox events is
/// published with `Nats-Msg-Id` = event id, pipelined in order, and those
/// JetStream acked, up to the first that it did not, are marked sent in the
/// same transaction. How many were sent (0 also when another replica holds
/// the lock).
///
/// A publish that fails stops the pass there: that event and every later
/// one are published again by the next pass, and any of them JetStream did
/// store meanwhile is dropped as a duplicate of its `Nats-Msg-Id` (within
/// `NATS_DUPLICATE_WINDOW_SECS`).
pub async fn pass(
    db: &sqlx::PgPool,
    js: &jetstream::Context,
    config: &BusConfig,
) -> Result<usize, RelayError> {
    let mut tx = db.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(RELAY_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        tx.rollback().await?;
        return Ok(0);
    }
    let batch = outbox::next(&mut tx, config.relay_batch).await?;
    if batch.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    // Acks awaited in publishing order, at most IN_FLIGHT outstanding: the
    // client holds a permit per unawaited ack (5,000 in all) and would
    // otherwise wait for ever on a larger batch.
    let max_bytes = js.client().max_payload().saturating_sub(HEADER_ROOM);
    let mut in_flight: VecDeque<(&Pending, PublishAckFuture)> = VecDeque::new();
    let mut acked: Vec<&Pending> = Vec::with_capacity(batch.len());
    let mut failure = None;
    let mut events = batch.iter();
    loop {
        let next = if in_flight.len() < IN_FLIGHT {
            events.next()
        } else {
            None
        };
        if let Some(event) = next {
            match publish(js, config, event, max_bytes).await {
                Ok(ack) => in_flight.push_back((event, ack)),
                Err(err) => {
                    failure = Some(err.to_string());
                    break;
                }
            }
            continue;
        }
        let Some((event, ack)) = in_flight.pop_front() else {
            break;
        };
        if let Err(err) = ack.await {
            failure = Some(err.to_string());
            break;
        }
        acked.push(event);
    }
    let mut published: HashMap<&str, u64> = HashMap::new();
    for event in &acked {
        *published.entry(event.subject.as_str()).or_default() += 1;
    }
    let sent: Vec<i64> = acked.iter().map(|event| event.seq).collect();
    if !sent.is_empty() {
        outbox::mark_sent(&mut tx, &sent).await?;
    }
    tx.commit().await?;
    for (subject, count) in published {
        crate::metrics::bus_published(subject, count);
    }
    match failure {
        Some(err) => Err(RelayError::Publish(err)),
        None => Ok(sent.len()),
    }
}

/// Publishes one event on its subject under the prefix, with `Nats-Msg-Id`
/// = its id, in at most `max_bytes` (`Pending::message`); the future of
/// JetStream's ack.
async fn publish(
    js: &jetstream::Context,
    config: &BusConfig,
    event: &Pending,
    max_bytes: usize,
) -> Result<PublishAckFuture, jetstream::context::PublishError> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", event.event_id.to_string().as_str());
    let message = event.message(max_bytes);
    if message.truncated {
        tracing::warn!(
            event_id = %event.event_id,
            subject = %event.subject,
            max_bytes,
            "event data too large for NATS; published with its large fields omitted"
        );
        crate::metrics::bus_truncated(&event.subject);
    }
    let subject = format!("{}{}", config.events_prefix, event.subject);
    js.publish_with_headers(subject, headers, message.body.into())
        .await
}
