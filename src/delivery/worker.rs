//! Delivery workers: claim due deliveries, make one provider call each, and
//! record the outcome. The retry policy of the provider decides, once per
//! attempt, whether a failure is retried (and when) or final; the queue
//! applies the delay durably, so nothing waits in memory between attempts.

use std::{sync::Arc, time::Duration};

use serde_json::json;
use sqlx::postgres::PgListener;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
    task::JoinSet,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use super::{
    DeliveryContext, DeliveryStatus,
    queue::{self, AttemptRecord, Claimed, Landed, Outcome, Trigger},
    signal,
};
use crate::{
    connectors::{ConnectorError, DeliveryRequest, ErrorClass, retry::AttemptsMade},
    ids::CompanyId,
    metrics,
    provider::Provider,
    report::ImpactReport,
    telemetry,
};

/// Runs `DELIVERY_WORKERS` workers until `shutdown`; each finishes the
/// attempts it holds and records them before returning.
pub async fn run(ctx: DeliveryContext, shutdown: CancellationToken) {
    let listener = tokio::spawn(listen(ctx.clone(), shutdown.clone()));
    let announcer = tokio::spawn({
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        async move { ctx.queue.announce(&ctx.db, shutdown).await }
    });
    let mut workers = JoinSet::new();
    for index in 0..ctx.config.workers {
        let name = format!("{}:{}:{index}", hostname(), std::process::id());
        workers.spawn(work(ctx.clone(), name, shutdown.clone()));
    }
    workers.join_all().await;
    listener.abort();
    announcer.abort();
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "impact-in".into())
}

/// Wakes the workers on NOTIFY; the poll interval covers a lost connection
/// until it is re-established.
async fn listen(ctx: DeliveryContext, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(250);
    while !shutdown.is_cancelled() {
        let mut listener = match PgListener::connect_with(&ctx.db).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "cannot LISTEN for new deliveries; polling");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        if let Err(err) = listener.listen(signal::CHANNEL).await {
            tracing::warn!(error = %err, "LISTEN failed; polling");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(250);
        loop {
            tokio::select! {
                received = listener.recv() => match received {
                    Ok(_) => ctx.queue.notified(),
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

/// An attempt made, waiting for its outcome to be recorded. The permit is
/// its worker's slot, freed once the outcome is written.
struct Finished {
    claimed: Claimed,
    outcome: Outcome,
    _slot: OwnedSemaphorePermit,
}

/// How long a worker with a backlog waits for more free slots before it
/// claims for those it has.
const GATHER_SLOTS_FOR: Duration = Duration::from_millis(50);

/// The most outcomes one statement records.
const OUTCOMES_PER_STATEMENT: usize = 256;

/// One worker: a claim loop keeping up to `DELIVERY_BATCH_SIZE` attempts in
/// flight, topping up as slots free (a slow provider call holds only its own
/// slot), and a writer recording finished attempts, all that are ready in one
/// statement, so the commits per delivery fall as the load rises.
async fn work(ctx: DeliveryContext, name: String, shutdown: CancellationToken) {
    let config = &ctx.config;
    let slots = usize::try_from(config.batch_size).unwrap_or(1).max(1);
    let in_flight = Arc::new(Semaphore::new(slots));
    let (finished, outcomes) = mpsc::channel::<Finished>(slots);
    let writer = tokio::spawn(write_outcomes(ctx.clone(), outcomes));
    let mut backoff = config.poll_interval;
    // Whether the last claim found more due work than it could take.
    let mut backlog = false;
    while !shutdown.is_cancelled() {
        let first = tokio::select! {
            slot = in_flight.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let mut free = vec![first];
        if backlog {
            // With work waiting, up to half the slots are gathered first so
            // that one claim (one commit) serves many deliveries. Briefly: a
            // slot held by a slow provider call must not stall the rest.
            let gather = async {
                while free.len() < slots.div_ceil(2) {
                    free.push(
                        in_flight
                            .clone()
                            .acquire_owned()
                            .await
                            .expect("the semaphore is never closed"),
                    );
                }
            };
            let _ = tokio::time::timeout(GATHER_SLOTS_FOR, gather).await;
        }
        while free.len() < slots
            && let Ok(slot) = in_flight.clone().try_acquire_owned()
        {
            free.push(slot);
        }
        // Registered before claiming, so a NOTIFY during the claim is not lost.
        let notified = ctx.queue.wait();
        let limit = i64::try_from(free.len()).unwrap_or(i64::MAX);
        let batch = match queue::claim(&ctx.db, &name, limit, config.lease).await {
            Ok(batch) => {
                backoff = config.poll_interval;
                backlog = batch.len() == free.len();
                batch
            }
            Err(err) => {
                drop(free);
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
            drop(free);
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(config.poll_interval) => {}
                () = shutdown.cancelled() => {}
            }
            continue;
        }
        for (claimed, slot) in batch.into_iter().zip(free) {
            let (ctx, finished) = (ctx.clone(), finished.clone());
            tokio::spawn(async move {
                let outcome = attempt(&ctx, &claimed).await;
                let done = Finished {
                    claimed,
                    outcome,
                    _slot: slot,
                };
                // The writer outlives every sender; should it be gone, the
                // lease puts the delivery back in the queue.
                let _ = finished.send(done).await;
            });
        }
    }
    // Every slot back means every attempt made and recorded.
    let _all = in_flight.acquire_many(slots as u32).await;
    drop(finished);
    let _ = writer.await;
}

async fn write_outcomes(ctx: DeliveryContext, mut outcomes: mpsc::Receiver<Finished>) {
    let mut ready = Vec::with_capacity(OUTCOMES_PER_STATEMENT);
    while outcomes.recv_many(&mut ready, OUTCOMES_PER_STATEMENT).await > 0 {
        let batch: Vec<_> = ready.iter().map(|f| (&f.claimed, &f.outcome)).collect();
        record(&ctx, &batch).await;
        // Frees the slots.
        ready.clear();
    }
}

/// Tries to record outcomes a few times before giving up on them: an
/// unrecorded attempt is made again once its lease runs out, with the same
/// delivery id, which the provider de-duplicates.
const RECORD_TRIES: u32 = 4;

/// Records outcomes; those that landed, with the status each delivery has
/// now.
async fn record(ctx: &DeliveryContext, finished: &[(&Claimed, &Outcome)]) -> Vec<Landed> {
    let mut pause = Duration::from_millis(200);
    for tries in 1..=RECORD_TRIES {
        match queue::complete(&ctx.db, finished, ctx.config.publish_events).await {
            Ok(landed) => {
                for (claimed, outcome) in finished {
                    let landed = landed.iter().find(|l| l.id == claimed.id);
                    if let Some(landed) = landed {
                        count(claimed, outcome, landed);
                    }
                    match landed.map(|l| l.status) {
                        None => {
                            tracing::warn!(delivery_id = %claimed.delivery_id, "lease lost before the outcome was recorded; another worker owns the delivery now");
                        }
                        // The provider rejected it by webhook while the
                        // attempt was in flight: forget the acceptance the
                        // attempt cached.
                        Some(DeliveryStatus::Failed)
                            if outcome.status == Some(DeliveryStatus::Success) =>
                        {
                            let key = cache_key(
                                ctx,
                                claimed.provider,
                                claimed.company_id,
                                &claimed.payload_hash,
                            );
                            if let Some(key) = key.await {
                                ctx.cache.remove(&key).await;
                            }
                        }
                        Some(_) => {}
                    }
                }
                return landed;
            }
            Err(err) if tries < RECORD_TRIES => {
                tracing::warn!(error = %err, outcomes = finished.len(), "recording outcomes failed; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(err) => {
                tracing::error!(error = %err, outcomes = finished.len(), "could not record outcomes; their leases will put them back in the queue");
            }
        }
    }
    Vec::new()
}

/// The metrics of an outcome that landed: a final one, or a retry.
fn count(claimed: &Claimed, outcome: &Outcome, landed: &Landed) {
    match landed.status {
        DeliveryStatus::Success | DeliveryStatus::Failed => metrics::delivery_finished(
            claimed.provider,
            landed.status == DeliveryStatus::Success,
            Duration::from_secs_f64(landed.age_secs.max(0.0)),
        ),
        DeliveryStatus::Retrying if outcome.attempt.is_some() => metrics::retry(claimed.provider),
        DeliveryStatus::Pending | DeliveryStatus::Retrying => {}
    }
}

/// What came of one attempt recorded on its own (an operator's replay).
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// The provider was called (or the cache answered) and the outcome
    /// landed; the delivery's status now.
    Attempted(DeliveryStatus),
    /// Nothing was sent (open circuit, spent rate limit), and the delivery
    /// is queued again; why.
    Deferred(String),
    /// The outcome could not be recorded (the lease was lost, or the
    /// database did not answer): the lease puts the delivery back in the
    /// queue.
    NotRecorded,
}

/// One attempt, recorded on its own (an operator's replay).
pub async fn attempt_and_record(ctx: &DeliveryContext, claimed: Claimed) -> Recorded {
    let outcome = attempt(ctx, &claimed).await;
    let Some(landed) = record(ctx, &[(&claimed, &outcome)]).await.pop() else {
        return Recorded::NotRecorded;
    };
    match (outcome.status, outcome.last_error) {
        // What was recorded: a webhook may have settled it otherwise.
        (Some(_), _) => Recorded::Attempted(landed.status),
        (None, reason) => Recorded::Deferred(reason.unwrap_or_default()),
    }
}

/// The idempotency cache's key for a report: the same report to the same
/// provider for the same company, in this installation only (a fresh
/// database sharing the Redis of another must not take its answers).
/// `None` when the installation id cannot be read: the cache is skipped.
pub async fn cache_key(
    ctx: &DeliveryContext,
    provider: Provider,
    company: CompanyId,
    payload_hash: &str,
) -> Option<String> {
    let installation = ctx.installation().await?;
    Some(format!(
        "idempotency:{installation}:{provider}:{company}:{payload_hash}"
    ))
}

/// One attempt, in a span of its own (docs/tracing.md).
async fn attempt(ctx: &DeliveryContext, claimed: &Claimed) -> Outcome {
    let span = attempt_span(claimed);
    let outcome = try_once(ctx, claimed).instrument(span.clone()).await;
    span.record("outcome", outcome_class(&outcome));
    outcome
}

/// A worker's attempt joins the trace of the request that created the
/// delivery, after a span for the wait in the queue. A replay's attempt,
/// made inside the replay request, is a child of that request and links to
/// the creating trace.
fn attempt_span(claimed: &Claimed) -> Span {
    let span = tracing::info_span!(
        "delivery.attempt",
        tenant_id = %claimed.company_id,
        platform = %claimed.provider,
        delivery_id = %claimed.delivery_id,
        attempt = claimed.attempt_count,
        trigger = <&str>::from(claimed.next_trigger),
        outcome = tracing::field::Empty,
    );
    let created_by = claimed.traceparent.as_deref();
    if Span::current().is_none() {
        telemetry::record_wait(
            "delivery.queued",
            created_by,
            claimed.queued_since.into(),
            std::time::SystemTime::now(),
        );
        telemetry::join(&span, created_by);
    } else {
        telemetry::link(&span, created_by);
    }
    span
}

/// What came of an attempt, as one word: `success`, `cached`, `deferred`
/// (nothing sent) or the failure's error class.
fn outcome_class(outcome: &Outcome) -> &'static str {
    match (&outcome.status, &outcome.attempt) {
        (None, _) => "deferred",
        (Some(_), None) => "cached",
        (Some(_), Some(attempt)) => attempt.error_class.map_or("success", <&str>::from),
    }
}

async fn try_once(ctx: &DeliveryContext, claimed: &Claimed) -> Outcome {
    let started_at = ctx.clock.now();
    let timer = Instant::now();
    let cache_key = cache_key(
        ctx,
        claimed.provider,
        claimed.company_id,
        &claimed.payload_hash,
    )
    .await;
    // An operator's replay always reaches the provider.
    if claimed.next_trigger != Trigger::Replay
        && let Some(key) = &cache_key
        && let Some(cached) = ctx.cache.get(key).await
        && let Ok(response) = serde_json::from_str::<serde_json::Value>(&cached)
    {
        metrics::cache_hit(claimed.provider);
        return Outcome {
            status: Some(DeliveryStatus::Success),
            retry_in: None,
            provider_response: Some(response),
            from_cache: true,
            last_error: None,
            attempt: None,
        };
    }
    let delivered = deliver(ctx, claimed).await;
    match &delivered {
        Ok(_) => metrics::provider_call(claimed.provider, "success", timer.elapsed()),
        // Nothing was sent: not a call.
        Err(err) if err.not_sent_for().is_some() => {}
        Err(err) => metrics::provider_call(claimed.provider, err.class().into(), timer.elapsed()),
    }
    let err = match delivered {
        Ok(receipt) => {
            let response = json!({
                "statusCode": receipt.status,
                "reference": receipt.provider_reference,
                "body": receipt.body_excerpt,
                "latencyMs": receipt.latency.as_millis() as u64,
            });
            if let Some(key) = &cache_key {
                ctx.cache
                    .set(key, &response.to_string(), ctx.config.idempotency_ttl)
                    .await;
            }
            return Outcome {
                status: Some(DeliveryStatus::Success),
                retry_in: None,
                provider_response: Some(response),
                from_cache: false,
                last_error: None,
                attempt: Some(attempt_record(
                    started_at,
                    timer,
                    Some(receipt.status),
                    None,
                    Some(receipt.body_excerpt),
                )),
            };
        }
        Err(err) => err,
    };
    // Nothing was sent, so nothing is counted: the delivery waits out the
    // outage or the rate limit in the queue instead of spending its attempts
    // (or a worker slot) on it.
    if let Some(retry_after) = err.not_sent_for() {
        return Outcome {
            status: None,
            retry_in: Some(retry_after + jitter(retry_after)),
            provider_response: None,
            from_cache: false,
            last_error: Some(err.to_string()),
            attempt: None,
        };
    }
    let policy = ctx
        .retry
        .for_delivery(claimed.provider, claimed.schedule_id.is_some());
    let made = AttemptsMade {
        total: u32::try_from(claimed.attempt_count).unwrap_or(u32::MAX),
        rate_limited: u32::try_from(claimed.rate_limited_count).unwrap_or(u32::MAX)
            + u32::from(err.class() == ErrorClass::RateLimited),
    };
    let retry_in = policy.next_delay(made, &err);
    tracing::info!(
        delivery_id = %claimed.delivery_id,
        provider = %claimed.provider,
        attempt = claimed.attempt_count,
        error = %err,
        retry_in_secs = retry_in.map(|delay| delay.as_secs_f64()),
        "delivery attempt failed"
    );
    Outcome {
        status: Some(if retry_in.is_some() {
            DeliveryStatus::Retrying
        } else {
            DeliveryStatus::Failed
        }),
        retry_in,
        provider_response: None,
        from_cache: false,
        last_error: Some(err.to_string()),
        attempt: Some(attempt_record(
            started_at,
            timer,
            err.status(),
            Some((err.class(), err.to_string())),
            err.excerpt().map(str::to_owned),
        )),
    }
}

async fn deliver(
    ctx: &DeliveryContext,
    claimed: &Claimed,
) -> Result<crate::connectors::Receipt, ConnectorError> {
    let report: ImpactReport = serde_json::from_value(claimed.payload.clone()).map_err(|err| {
        ConnectorError::Unsendable {
            message: format!("the stored payload is not an impact report: {err}"),
        }
    })?;
    let connector = ctx
        .connectors
        .connector(claimed.company_id.0, claimed.provider)
        .await
        .map_err(ConnectorError::from)?;
    connector
        .deliver(DeliveryRequest {
            delivery_id: &claimed.delivery_id.to_string(),
            report: &report,
        })
        .await
}

/// Up to a tenth more, so deliveries deferred together do not all return
/// in the same instant.
fn jitter(delay: Duration) -> Duration {
    delay.mul_f64(rand::random::<f64>() * 0.1)
}

fn attempt_record(
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
