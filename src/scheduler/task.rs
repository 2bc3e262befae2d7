//! The in-process scheduler: fires what is due, then sleeps until the next
//! due time, the check interval, a schedule change here, or shutdown,
//! whichever comes first. Any number of replicas may run it (`fire`).
//! Beside it, on its own task so a long cleanup never delays a firing, the
//! daily retention job (`retention`, one replica a day).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{SchedulerContext, fire, retention};

/// Runs until `shutdown`; a firing under way finishes first (it is one
/// transaction, so a kill mid-way leaves the due time to fire again).
pub async fn run(ctx: SchedulerContext, shutdown: CancellationToken) {
    tracing::info!(
        check_interval_secs = ctx.config.check_interval.as_secs(),
        "scheduler started"
    );
    let cleanup = tokio::spawn(retain(ctx.clone(), shutdown.clone()));
    loop {
        let now = ctx.delivery.clock.now();
        if let Err(err) = fire::tick(&ctx, now).await {
            tracing::warn!(error = %err, "scheduler tick failed; trying again later");
        }
        let wait = match next_due(&ctx).await {
            Ok(next) => until(
                next,
                now,
                ctx.delivery.clock.now(),
                ctx.config.check_interval,
            ),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the next due time");
                ctx.config.check_interval
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = ctx.wake.notified() => {}
            () = shutdown.cancelled() => break,
        }
    }
    let _ = cleanup.await;
    tracing::info!("scheduler stopped");
}

/// Asks every check interval whether today's retention is due here: the
/// first replica to ask on a UTC day runs it (a cheap no-op for the rest),
/// stopping between batches on shutdown.
async fn retain(ctx: SchedulerContext, shutdown: CancellationToken) {
    loop {
        let now = ctx.delivery.clock.now();
        if let Err(err) = retention::run_if_due(ctx.db(), &ctx.retention, now, &shutdown).await {
            tracing::warn!(error = %err, "retention run failed; another replica or a later check takes it over");
        }
        tokio::select! {
            () = tokio::time::sleep(ctx.config.check_interval) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// The earliest next run of an active schedule, any company.
async fn next_due(ctx: &SchedulerContext) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar("SELECT min(next_run) FROM scheduled_deliveries WHERE active")
        .fetch_one(ctx.db())
        .await
}

/// How long to sleep: until `next` (a firing late by the time a tick takes,
/// not by up to an interval), never more than `interval` (schedules other
/// replicas changed), never less than nothing. A `next` that was already
/// due when the tick began (`ticked`) is one the tick left due (its
/// metrics failed) or another replica is firing: it waits the interval
/// rather than making the loop spin against the impact platform.
fn until(
    next: Option<DateTime<Utc>>,
    ticked: DateTime<Utc>,
    now: DateTime<Utc>,
    interval: Duration,
) -> Duration {
    next.map_or(interval, |next| {
        if next <= ticked {
            return interval;
        }
        (next - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(interval)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_sleeps_until_the_next_due_time_within_the_interval() {
        let now: DateTime<Utc> = "2026-12-06T10:00:00Z".parse().unwrap();
        let minute = Duration::from_secs(60);
        let at = |s: &str| Some(s.parse::<DateTime<Utc>>().unwrap());
        let ticked: DateTime<Utc> = "2026-12-06T09:59:59Z".parse().unwrap();
        assert_eq!(
            until(at("2026-12-06T10:00:20Z"), ticked, now, minute),
            Duration::from_secs(20)
        );
        assert_eq!(
            until(at("2026-12-06T11:00:00Z"), ticked, now, minute),
            minute
        );
        // Came due while the tick ran: at once.
        assert_eq!(
            until(at("2026-12-06T09:59:59.5Z"), ticked, now, minute),
            Duration::ZERO
        );
        // Due before the tick and still due (left for later, or another
        // replica's): the interval, not a spin.
        assert_eq!(
            until(at("2026-12-06T09:00:00Z"), ticked, now, minute),
            minute
        );
        assert_eq!(until(None, ticked, now, minute), minute);
    }
}
