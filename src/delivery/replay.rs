//! Operator replays of failed deliveries. A replay keeps the delivery id the
//! provider de-duplicates on, counts as an attempt (trigger `replay`), and
//! always reaches the provider: the idempotency cache is bypassed.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use serde::Serialize;
use tokio::{sync::Semaphore, time::Instant};

use super::{
    Delivery, DeliveryContext, DeliveryStatus,
    queue::{self, Claimed},
    store,
    worker::{self, Recorded},
};
use crate::{auth::CompanyScope, ids::DeliveryKey};

/// What a replay did with one id.
#[derive(Debug)]
pub enum Replayed {
    NotFound,
    /// Only failed deliveries are replayed.
    NotFailed(Delivery),
    /// The attempt finished; the delivery as it now stands.
    Attempted(Delivery),
    /// Nothing was sent (open circuit, spent rate limit), or the outcome
    /// could not be recorded; why, and the delivery, queued again with its
    /// due time.
    Deferred {
        delivery: Delivery,
        reason: String,
    },
    /// Still attempting after `REPLAY_TIMEOUT_SECS`; it finishes on its own.
    InProgress(Delivery),
}

/// The most ids one replay takes.
pub const BULK_LIMIT: usize = 100;
/// How many attempts of one replay run at once, so that a bulk replay does
/// not send a provider a hundred calls in the same instant.
const CONCURRENCY: usize = 10;

/// Replays the failed deliveries among `keys` (record ids or `deliveryId`s)
/// that `scope` covers, and answers for each id, in the order given; an id
/// given twice is replayed once.
///
/// Every one of them is claimed first, in one statement, under the normal
/// lease, so none can be lost: if the process dies, each is back in the
/// queue (as a replay) once the lease runs out. Then they are attempted, at
/// most [`CONCURRENCY`] at a time, in tasks of their own that neither a
/// client going away nor the request timeout cancels; each renews its lease
/// just before its call, so one that waited its turn past the lease is left
/// to the worker that took it over instead of being sent twice. This waits
/// for them up to `REPLAY_TIMEOUT_SECS`; those still running then are
/// `InProgress` and finish on their own.
pub async fn replay(
    ctx: &DeliveryContext,
    scope: &CompanyScope,
    keys: &[DeliveryKey],
) -> Result<Vec<Replayed>, sqlx::Error> {
    let config = &ctx.config;
    let worker_name = format!("replay:{}", std::process::id());
    let claimed = queue::claim_failed(&ctx.db, scope, keys, &worker_name, config.lease).await?;
    tracing::info!(
        requested = keys.len(),
        claimed = claimed.len(),
        "failed deliveries claimed for a replay"
    );
    // Nothing is awaited until every claimed delivery has its task: were
    // this future dropped in between, the rest would wait out their lease.
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let attempts: Vec<_> = claimed
        .into_iter()
        .map(|claimed| {
            let names = (claimed.id, claimed.delivery_id);
            let (ctx, permits, worker_name) = (ctx.clone(), permits.clone(), worker_name.clone());
            let attempt = tokio::spawn(async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                attempt_if_still_held(&ctx, claimed, &worker_name).await
            });
            (names, attempt)
        })
        .collect();

    let deadline = Instant::now() + config.replay_timeout;
    let mut finished = Vec::with_capacity(attempts.len());
    for (names, attempt) in attempts {
        // An attempt done by the deadline counts as finished even when it is
        // looked at later; dropping the handle of one still running leaves
        // it running. One that panicked is left to its lease.
        let recorded = match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(recorded)) => Some(recorded),
            Ok(Err(_)) => Some(Recorded::NotRecorded),
            Err(_) => None,
        };
        finished.push((names, recorded));
    }

    let mut results = Vec::with_capacity(keys.len());
    for key in keys {
        let attempt = finished
            .iter()
            .find(|((record, delivery), _)| key.names(*record, *delivery))
            .map(|(_, recorded)| recorded.clone());
        let Some(delivery) = store::find(&ctx.db, scope, *key).await? else {
            results.push(Replayed::NotFound);
            continue;
        };
        results.push(match attempt {
            None => Replayed::NotFailed(delivery),
            Some(None) => Replayed::InProgress(delivery),
            Some(Some(Recorded::Attempted(_))) => Replayed::Attempted(delivery),
            Some(Some(Recorded::Deferred(reason))) => Replayed::Deferred { delivery, reason },
            Some(Some(Recorded::NotRecorded)) => Replayed::Deferred {
                delivery,
                reason: NOT_RECORDED.into(),
            },
        });
    }
    Ok(results)
}

const NOT_RECORDED: &str = "not recorded: another worker holds the delivery, or the database did \
                            not answer; it is attempted again when its lease runs out";

/// Renews the replay's lease, then attempts; a delivery whose lease another
/// worker took over meanwhile is that worker's to send.
async fn attempt_if_still_held(ctx: &DeliveryContext, claimed: Claimed, worker: &str) -> Recorded {
    match queue::renew(&ctx.db, &claimed, worker, ctx.config.lease).await {
        Ok(true) => worker::attempt_and_record(ctx, claimed).await,
        Ok(false) => Recorded::NotRecorded,
        Err(err) => {
            tracing::warn!(error = %err, delivery_id = %claimed.delivery_id, "cannot renew a replay's lease; the workers replay it when it runs out");
            Recorded::NotRecorded
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkResult {
    pub id: DeliveryKey,
    /// `replayed`, `deferred`, `in_progress`, `not_failed` or `not_found`.
    pub result: &'static str,
    /// The delivery's status after the replay (absent when not found).
    pub status: Option<DeliveryStatus>,
    pub last_error: Option<String>,
    /// Why a `deferred` replay sent nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When a `deferred` delivery is due again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl BulkResult {
    pub fn new(id: DeliveryKey, replayed: Replayed) -> Self {
        let (result, delivery, reason) = match replayed {
            Replayed::NotFound => ("not_found", None, None),
            Replayed::NotFailed(d) => ("not_failed", Some(d), None),
            Replayed::Attempted(d) => ("replayed", Some(d), None),
            Replayed::Deferred { delivery, reason } => ("deferred", Some(delivery), Some(reason)),
            Replayed::InProgress(d) => ("in_progress", Some(d), None),
        };
        let next_attempt_at = delivery
            .as_ref()
            .filter(|_| reason.is_some())
            .and_then(|d| d.next_attempt_at);
        let (status, last_error) = delivery.map(|d| (d.status, d.last_error)).unzip();
        Self {
            id,
            result,
            status,
            last_error: last_error.flatten(),
            reason,
            next_attempt_at,
        }
    }
}
