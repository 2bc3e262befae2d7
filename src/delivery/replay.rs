//! Operator replays of failed deliveries. A replay keeps the delivery id the
//! provider de-duplicates on, counts as an attempt (trigger `replay`), and
//! always reaches the provider: the idempotency cache is bypassed.

use std::{sync::Arc, time::Duration};

use serde::Serialize;
use tokio::{sync::Semaphore, time::Instant};
use uuid::Uuid;

use super::{Delivery, DeliveryStatus, queue, store, worker};
use crate::{app::AppState, auth::CompanyScope};

/// What a replay did with one id.
#[derive(Debug)]
pub enum Replayed {
    NotFound,
    /// Only failed deliveries are replayed.
    NotFailed(Delivery),
    /// The attempt finished; the delivery as it now stands.
    Attempted(Delivery),
    /// Still attempting after `REPLAY_TIMEOUT_SECS`; it finishes on its own.
    InProgress(Delivery),
}

/// The most ids one replay takes.
pub const BULK_LIMIT: usize = 100;
/// How many attempts of one replay run at once, so that a bulk replay does
/// not send a provider a hundred calls in the same instant.
const CONCURRENCY: usize = 10;

/// Replays the failed deliveries among `ids` (record ids or `deliveryId`s)
/// that `scope` covers, and answers for each id, in the order given; an id
/// given twice is replayed once.
///
/// Every one of them is claimed first, in one statement, so none can be
/// lost: from then on each is leased to this replay, and if the process
/// dies the lease runs out and the workers attempt it as a replay. Then they
/// are attempted, at most [`CONCURRENCY`] at a time, in tasks of their own
/// that neither a client going away nor the request timeout cancels. This
/// waits for them up to `REPLAY_TIMEOUT_SECS`; those still running then are
/// `InProgress` and finish on their own.
pub async fn replay(
    state: &AppState,
    scope: &CompanyScope,
    ids: &[Uuid],
) -> Result<Vec<Replayed>, sqlx::Error> {
    let config = &state.config.delivery;
    let worker_name = format!("replay:{}", std::process::id());
    let lease = lease_for(config.lease, ids.len());
    let claimed = queue::claim_failed(&state.db, scope, ids, &worker_name, lease).await?;
    tracing::info!(
        requested = ids.len(),
        claimed = claimed.len(),
        "failed deliveries claimed for a replay"
    );
    // Nothing is awaited until every claimed delivery has its task: were
    // this future dropped in between, the rest would wait out their lease.
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let attempts: Vec<_> = claimed
        .into_iter()
        .map(|claimed| {
            let keys = [claimed.id, claimed.delivery_id];
            let (state, permits) = (state.clone(), permits.clone());
            let attempt = tokio::spawn(async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                worker::attempt_and_record(&state, claimed).await
            });
            (keys, attempt)
        })
        .collect();

    let deadline = Instant::now() + config.replay_timeout;
    let mut finished = Vec::with_capacity(attempts.len());
    for (keys, attempt) in attempts {
        // An attempt done by the deadline counts as finished even when it is
        // looked at later; dropping the handle of one still running leaves
        // it running. One that panicked is left to its lease.
        let done = matches!(tokio::time::timeout_at(deadline, attempt).await, Ok(Ok(_)));
        finished.push((keys, done));
    }

    let mut results = Vec::with_capacity(ids.len());
    for id in ids {
        let attempt = finished
            .iter()
            .find(|(keys, _)| keys.contains(id))
            .map(|&(_, done)| done);
        results.push(match (store::find(&state.db, scope, *id).await?, attempt) {
            (None, _) => Replayed::NotFound,
            (Some(delivery), None) => Replayed::NotFailed(delivery),
            (Some(delivery), Some(true)) => Replayed::Attempted(delivery),
            (Some(delivery), Some(false)) => Replayed::InProgress(delivery),
        });
    }
    Ok(results)
}

/// The lease for a replay of `ids` deliveries. Attempts beyond the first
/// [`CONCURRENCY`] wait for a free slot, and no worker may take a delivery
/// over while it waits or is attempted. One attempt fits in one
/// `DELIVERY_LEASE_SECS` (the configuration checks it), so a lease per
/// round of [`CONCURRENCY`] covers the last one.
fn lease_for(lease: Duration, ids: usize) -> Duration {
    let rounds = ids.div_ceil(CONCURRENCY).max(1);
    lease * u32::try_from(rounds).unwrap_or(u32::MAX)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkResult {
    pub id: Uuid,
    /// `replayed`, `in_progress`, `not_failed` or `not_found`.
    pub result: &'static str,
    /// The delivery's status after the replay (absent when not found).
    pub status: Option<DeliveryStatus>,
    pub last_error: Option<String>,
}

impl BulkResult {
    pub fn new(id: Uuid, replayed: Replayed) -> Self {
        let (result, delivery) = match replayed {
            Replayed::NotFound => ("not_found", None),
            Replayed::NotFailed(d) => ("not_failed", Some(d)),
            Replayed::Attempted(d) => ("replayed", Some(d)),
            Replayed::InProgress(d) => ("in_progress", Some(d)),
        };
        let (status, last_error) = delivery.map(|d| (d.status, d.last_error)).unzip();
        Self {
            id,
            result,
            status,
            last_error: last_error.flatten(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_covers_every_round_of_attempts() {
        let lease = Duration::from_secs(120);
        assert_eq!(lease_for(lease, 1), lease);
        assert_eq!(lease_for(lease, CONCURRENCY), lease);
        assert_eq!(lease_for(lease, CONCURRENCY + 1), lease * 2);
        assert_eq!(lease_for(lease, BULK_LIMIT), lease * 10);
    }
}
