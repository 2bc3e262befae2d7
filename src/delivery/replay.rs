//! Operator replays of failed deliveries. A replay keeps the delivery id the
//! provider de-duplicates on, counts as an attempt (trigger `replay`), and
//! always reaches the provider: the idempotency cache is bypassed.

use std::sync::Arc;

use tokio::{sync::Semaphore, time::Instant};
use tracing::Instrument;

use super::{
    Delivery, DeliveryContext,
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
/// most [`CONCURRENCY`] at a time. The claim and the attempts run in tasks
/// of their own that neither a client going away nor the request timeout
/// cancels: a request that times out still replays every id. Each renews its lease
/// just before its call, so one that waited its turn past the lease is left
/// to the worker that took it over instead of being sent twice. This waits
/// for them up to `REPLAY_TIMEOUT_SECS`; those still running then are
/// `InProgress` and finish on their own.
pub async fn replay(
    ctx: &DeliveryContext,
    scope: &CompanyScope,
    keys: &[DeliveryKey],
) -> Result<Vec<Replayed>, sqlx::Error> {
    // A request timeout falling while the claim was in flight would
    // otherwise replay some requests and not others, by machine load alone.
    let started =
        tokio::spawn(claim_and_start(ctx.clone(), scope.clone(), keys.to_vec()).in_current_span());
    let attempts = match started.await {
        Ok(attempts) => attempts?,
        // It panicked (or the runtime is shutting down): whatever it
        // claimed goes back to the queue when the lease runs out.
        Err(err) => {
            tracing::error!(error = %err, "a replay's claim did not finish");
            return Err(sqlx::Error::WorkerCrashed);
        }
    };

    let deadline = Instant::now() + ctx.config.replay_timeout;
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

/// An attempt of one claimed delivery, named by its record id and
/// `deliveryId`, running in a task of its own.
type Started = (
    (crate::ids::RecordId, crate::ids::DeliveryId),
    tokio::task::JoinHandle<Recorded>,
);

/// Claims the failed deliveries among `keys` and starts their attempts.
async fn claim_and_start(
    ctx: DeliveryContext,
    scope: CompanyScope,
    keys: Vec<DeliveryKey>,
) -> Result<Vec<Started>, sqlx::Error> {
    let worker_name = format!("replay:{}", std::process::id());
    let claimed =
        queue::claim_failed(&ctx.db, &scope, &keys, &worker_name, ctx.config.lease).await?;
    tracing::info!(
        requested = keys.len(),
        claimed = claimed.len(),
        "failed deliveries claimed for a replay"
    );
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    Ok(claimed
        .into_iter()
        .map(|claimed| {
            let names = (claimed.id, claimed.delivery_id);
            let (ctx, permits, worker_name) = (ctx.clone(), permits.clone(), worker_name.clone());
            // In the replay request's span: each attempt is part of its trace.
            let attempt = tokio::spawn(
                async move {
                    let _permit = permits
                        .acquire_owned()
                        .await
                        .expect("the semaphore is never closed");
                    attempt_if_still_held(&ctx, claimed, &worker_name).await
                }
                .in_current_span(),
            );
            (names, attempt)
        })
        .collect())
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

/// What a replay did with one id, as a word (`docs/api.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BulkOutcome {
    Replayed,
    Deferred,
    InProgress,
    NotFailed,
    NotFound,
}

impl Replayed {
    pub fn outcome(&self) -> BulkOutcome {
        match self {
            Self::NotFound => BulkOutcome::NotFound,
            Self::NotFailed(_) => BulkOutcome::NotFailed,
            Self::Attempted(_) => BulkOutcome::Replayed,
            Self::Deferred { .. } => BulkOutcome::Deferred,
            Self::InProgress(_) => BulkOutcome::InProgress,
        }
    }

    /// The delivery as it stands (none when not found), and for a deferred
    /// replay the reason.
    pub fn into_parts(self) -> (Option<Delivery>, Option<String>) {
        match self {
            Self::NotFound => (None, None),
            Self::NotFailed(d) | Self::Attempted(d) | Self::InProgress(d) => (Some(d), None),
            Self::Deferred { delivery, reason } => (Some(delivery), Some(reason)),
        }
    }
}
