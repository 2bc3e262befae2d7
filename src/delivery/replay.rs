//! Operator replays of failed deliveries. A replay keeps the delivery id the
//! provider de-duplicates on, counts as an attempt (trigger `replay`), and
//! always reaches the provider: the idempotency cache is bypassed.

use serde::Serialize;
use uuid::Uuid;

use super::{Delivery, DeliveryStatus, queue, store, worker};
use crate::{app::AppState, auth::CompanyScope};

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

/// Replays one delivery now and waits for the attempt, up to the replay
/// timeout. The attempt runs in its own task so an impatient client cannot
/// cancel it; if the process dies, the lease brings it back to the queue.
pub async fn replay(
    state: &AppState,
    scope: &CompanyScope,
    id: Uuid,
) -> Result<Replayed, sqlx::Error> {
    let Some(delivery) = store::find(&state.db, scope, id).await? else {
        return Ok(Replayed::NotFound);
    };
    let worker_name = format!("replay:{}", std::process::id());
    let lease = state.config.delivery.lease;
    let Some(claimed) = queue::claim_failed(&state.db, delivery.id, &worker_name, lease).await?
    else {
        return Ok(Replayed::NotFailed(delivery));
    };
    let attempt = tokio::spawn({
        let state = state.clone();
        async move { worker::attempt_and_record(&state, claimed).await }
    });
    let finished = tokio::time::timeout(state.config.delivery.replay_timeout, attempt)
        .await
        .is_ok();
    let now = store::find(&state.db, scope, delivery.id)
        .await?
        .unwrap_or(delivery);
    Ok(if finished {
        Replayed::Attempted(now)
    } else {
        Replayed::InProgress(now)
    })
}

/// The most ids one bulk replay takes, and how many it attempts at once.
pub const BULK_LIMIT: usize = 100;
const BULK_CONCURRENCY: usize = 10;

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

/// Replays each id, at most ten at a time, and answers per id in the order
/// given. Duplicates are replayed once.
pub async fn replay_many(
    state: &AppState,
    scope: &CompanyScope,
    ids: &[Uuid],
) -> Result<Vec<BulkResult>, sqlx::Error> {
    let mut unique = ids.to_vec();
    unique.sort();
    unique.dedup();
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(BULK_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for id in unique {
        let (state, scope, semaphore) = (state.clone(), scope.clone(), semaphore.clone());
        tasks.spawn(async move {
            let _permit = semaphore
                .acquire_owned()
                .await
                .expect("semaphore never closes");
            (id, replay(&state, &scope, id).await)
        });
    }
    let mut outcomes = std::collections::HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (id, outcome) = joined.map_err(|err| sqlx::Error::Protocol(err.to_string()))?;
        outcomes.insert(id, outcome?);
    }
    Ok(ids
        .iter()
        .map(|id| {
            let (result, delivery) = match &outcomes[id] {
                Replayed::NotFound => ("not_found", None),
                Replayed::NotFailed(d) => ("not_failed", Some(d)),
                Replayed::Attempted(d) => ("replayed", Some(d)),
                Replayed::InProgress(d) => ("in_progress", Some(d)),
            };
            BulkResult {
                id: *id,
                result,
                status: delivery.map(|d| d.status),
                last_error: delivery.and_then(|d| d.last_error.clone()),
            }
        })
        .collect())
}
