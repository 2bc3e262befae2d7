//! The SLA monitor's loop: evaluates every `SLA_MONITOR_INTERVAL_SECS`,
//! and between evaluations sends queued notifications as they fall due.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{MonitorContext, monitor, notify};

/// The shortest nap: a retry due "now" is not a busy loop.
const MIN_WAIT: Duration = Duration::from_millis(200);

/// Runs until `shutdown`; a send under way finishes first.
pub async fn run(ctx: MonitorContext, shutdown: CancellationToken) {
    tracing::info!(
        interval_secs = ctx.config.interval.as_secs(),
        window_hours = ctx.config.window.as_secs() / 3600,
        pagerduty = ctx.config.pagerduty_key.is_some(),
        slack = ctx.config.slack_webhook.is_some(),
        "SLA monitor started"
    );
    let interval =
        chrono::Duration::from_std(ctx.config.interval).unwrap_or(chrono::Duration::minutes(5));
    let mut next_evaluation = ctx.clock.now();
    loop {
        let now = ctx.clock.now();
        if now >= next_evaluation {
            match monitor::evaluate(&ctx, now).await {
                Ok(evaluation) if evaluation.ran => tracing::debug!(
                    companies = evaluation.companies,
                    transitions = evaluation.transitions,
                    "SLA evaluated"
                ),
                Ok(_) => tracing::debug!("another replica is evaluating the SLA"),
                Err(err) => {
                    tracing::warn!(error = %err, "SLA evaluation failed; trying again at the next interval")
                }
            }
            next_evaluation = now + interval;
        }
        let wake = match notify::deliver_due(&ctx, ctx.clock.now()).await {
            Ok(next) => next.map_or(next_evaluation, |next| next.min(next_evaluation)),
            Err(err) => {
                tracing::warn!(error = %err, "cannot send SLA notifications now");
                next_evaluation
            }
        };
        let wait = (wake - ctx.clock.now())
            .to_std()
            .unwrap_or_default()
            .max(MIN_WAIT);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => break,
        }
    }
    tracing::info!("SLA monitor stopped");
}
