//! Delivery workers: claim due deliveries, make one provider call each, and
//! record the outcome. The retry policy of the provider decides, once per
//! attempt, whether a failure is retried (and when) or final; the queue
//! applies the delay durably, so nothing waits in memory between attempts.

use std::{sync::Arc, time::Duration};

use serde_json::json;
use sqlx::postgres::PgListener;
use tokio::{sync::Notify, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;

use super::{
    DeliveryStatus,
    queue::{self, AttemptRecord, Claimed, Outcome, Trigger},
};
use crate::{
    app::AppState,
    connectors::{ConnectorError, DeliveryRequest, ErrorClass},
    report::ImpactReport,
};

/// The channel the queue's trigger notifies when work is queued.
const CHANNEL: &str = "impact_deliveries_due";

/// Runs `DELIVERY_WORKERS` claim loops until `shutdown`; each finishes the
/// attempts it holds before returning.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen(state.clone(), wake.clone(), shutdown.clone()));
    let mut loops = JoinSet::new();
    for index in 0..state.config.delivery.workers {
        let name = format!("{}:{}:{index}", hostname(), std::process::id());
        loops.spawn(claim_loop(
            state.clone(),
            name,
            wake.clone(),
            shutdown.clone(),
        ));
    }
    loops.join_all().await;
    listener.abort();
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "impact-in".into())
}

/// Wakes the claim loops on NOTIFY; the poll interval covers a lost
/// connection until it is re-established.
async fn listen(state: AppState, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(250);
    while !shutdown.is_cancelled() {
        let mut listener = match PgListener::connect_with(&state.db).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "cannot LISTEN for new deliveries; polling");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        if let Err(err) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %err, "LISTEN failed; polling");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(250);
        loop {
            tokio::select! {
                received = listener.recv() => match received {
                    Ok(_) => wake.notify_waiters(),
                    Err(err) => {
                        tracing::warn!(error = %err, "LISTEN connection lost; reconnecting");
                        break;
                    }
                },
                () = shutdown.cancelled() => return,
            }
        }
    }
}

async fn claim_loop(state: AppState, name: String, wake: Arc<Notify>, shutdown: CancellationToken) {
    let config = &state.config.delivery;
    let mut backoff = config.poll_interval;
    while !shutdown.is_cancelled() {
        // Registered before claiming, so a NOTIFY during the claim is not lost.
        let notified = wake.notified();
        let batch = match queue::claim(&state.db, &name, config.batch_size, config.lease).await {
            Ok(batch) => {
                backoff = config.poll_interval;
                batch
            }
            Err(err) => {
                tracing::warn!(worker = %name, error = %err, "claiming deliveries failed; backing off");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(config.poll_interval) => {}
                () = shutdown.cancelled() => {}
            }
            continue;
        }
        let mut attempts = JoinSet::new();
        for claimed in batch {
            let state = state.clone();
            attempts.spawn(async move { attempt_and_record(&state, claimed).await });
        }
        attempts.join_all().await;
    }
}

/// One attempt, recorded; the final status when the record landed.
pub async fn attempt_and_record(state: &AppState, claimed: Claimed) -> Option<DeliveryStatus> {
    let outcome = attempt(state, &claimed).await;
    match queue::complete(&state.db, &claimed, &outcome).await {
        Ok(true) => Some(outcome.status),
        Ok(false) => {
            tracing::warn!(delivery_id = %claimed.delivery_id, "lease lost before the outcome was recorded; another worker owns the delivery now");
            None
        }
        Err(err) => {
            // The lease runs out and the delivery is attempted again with the
            // same delivery id, which the provider de-duplicates.
            tracing::error!(delivery_id = %claimed.delivery_id, error = %err, "could not record the outcome");
            None
        }
    }
}

async fn attempt(state: &AppState, claimed: &Claimed) -> Outcome {
    let started_at = state.clock.now();
    let timer = Instant::now();
    let cache_key = format!(
        "idempotency:{}:{}:{}",
        claimed.provider, claimed.company_id, claimed.payload_hash
    );
    // An operator's replay always reaches the provider.
    if claimed.next_trigger != Trigger::Replay
        && let Some(cached) = state.cache.get(&cache_key).await
        && let Ok(response) = serde_json::from_str::<serde_json::Value>(&cached)
    {
        return Outcome {
            status: DeliveryStatus::Success,
            retry_in: None,
            provider_response: Some(response),
            from_cache: true,
            last_error: None,
            attempt: record(started_at, timer, None, None, None),
        };
    }
    let result = deliver(state, claimed).await;
    match result {
        Ok(receipt) => {
            let response = json!({
                "statusCode": receipt.status,
                "reference": receipt.provider_reference,
                "body": receipt.body_excerpt,
                "latencyMs": receipt.latency.as_millis() as u64,
            });
            state
                .cache
                .set(
                    &cache_key,
                    &response.to_string(),
                    state.config.delivery.idempotency_ttl,
                )
                .await;
            Outcome {
                status: DeliveryStatus::Success,
                retry_in: None,
                provider_response: Some(response),
                from_cache: false,
                last_error: None,
                attempt: record(
                    started_at,
                    timer,
                    Some(receipt.status),
                    None,
                    Some(receipt.body_excerpt),
                ),
            }
        }
        Err(err) => {
            let policy = state.config.connectors.retry.get(claimed.provider);
            let attempts_made = u32::try_from(claimed.attempt_count).unwrap_or(u32::MAX);
            let retry_in = policy.next_delay(attempts_made, &err);
            tracing::info!(
                delivery_id = %claimed.delivery_id,
                provider = %claimed.provider,
                attempt = claimed.attempt_count,
                error = %err,
                retry_in = ?retry_in,
                "delivery attempt failed"
            );
            Outcome {
                status: if retry_in.is_some() {
                    DeliveryStatus::Retrying
                } else {
                    DeliveryStatus::Failed
                },
                retry_in,
                provider_response: None,
                from_cache: false,
                last_error: Some(err.to_string()),
                attempt: record(
                    started_at,
                    timer,
                    err.status(),
                    Some((err.class(), err.to_string())),
                    None,
                ),
            }
        }
    }
}

async fn deliver(
    state: &AppState,
    claimed: &Claimed,
) -> Result<crate::connectors::Receipt, ConnectorError> {
    let report: ImpactReport = serde_json::from_value(claimed.payload.clone()).map_err(|err| {
        ConnectorError::permanent(format!("stored payload is not an impact report: {err}"))
    })?;
    let connector = state
        .connectors
        .connector(claimed.company_id, claimed.provider)
        .map_err(|err| ConnectorError::permanent(err.to_string()))?;
    connector
        .deliver(DeliveryRequest {
            delivery_id: &claimed.delivery_id.to_string(),
            report: &report,
        })
        .await
}

fn record(
    started_at: chrono::DateTime<chrono::Utc>,
    timer: Instant,
    http_status: Option<u16>,
    error: Option<(ErrorClass, String)>,
    response_excerpt: Option<String>,
) -> AttemptRecord {
    let (error_class, error) = error.unzip();
    AttemptRecord {
        started_at,
        duration: timer.elapsed(),
        http_status,
        error_class,
        error,
        response_excerpt,
    }
}
