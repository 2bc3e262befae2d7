//! Waiting for a dependency at start-up: the one retry schedule the service
//! uses while Postgres (start-up) or NATS (the bus) is not there yet.

use std::{future::Future, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use tokio_util::sync::CancellationToken;

/// Runs `attempt` until it succeeds, with backoff (0.5 s doubling to 30 s,
/// with jitter, for ever), logging each failure at warn as
/// `{what} not ready; retrying`; `None` when `shutdown` comes first.
pub async fn until_ready<T, F, Fut>(
    what: &'static str,
    shutdown: &CancellationToken,
    attempt: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let retried = attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(30))
                .with_jitter()
                .without_max_times(),
        )
        .notify(|err, delay| {
            tracing::warn!(error = %err, retry_in = ?delay, "{what} not ready; retrying");
        });
    tokio::select! {
        // Never an error: it retries for ever.
        ready = retried => ready.ok(),
        () = shutdown.cancelled() => None,
    }
}
