//! "Work is queued": wakes this replica's workers at once and the other
//! replicas' through Postgres `NOTIFY`, sent at most once per
//! [`NOTIFY_EVERY`] from its own small transaction.
//!
//! Why not a trigger on the table: a transaction that notifies takes a
//! database-wide lock from its commit until the commit is flushed, so every
//! accepted delivery would commit one after another (the benchmark showed
//! half the connections waiting on it). Work written by anything other than
//! this service is picked up by the poll interval instead.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The channel the workers LISTEN on.
pub const CHANNEL: &str = "impact_deliveries_due";
/// At most one NOTIFY per replica in this interval.
const NOTIFY_EVERY: Duration = Duration::from_millis(50);

#[derive(Default)]
pub struct QueueSignal {
    local: Notify,
    remote: Notify,
    pending: AtomicBool,
}

impl QueueSignal {
    /// Deliveries are due now.
    pub fn queued(&self) {
        self.local.notify_waiters();
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.remote.notify_one();
        }
    }

    /// A NOTIFY from another replica (or this one) arrived.
    pub fn notified(&self) {
        self.local.notify_waiters();
    }

    /// Resolves at the next signal. Registered when called, so a signal
    /// given between this call and the first poll is not missed.
    pub fn wait(&self) -> tokio::sync::futures::Notified<'_> {
        self.local.notified()
    }

    /// Passes signals on to the other replicas until `shutdown`.
    pub async fn announce(&self, db: &PgPool, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = self.remote.notified() => {}
                () = shutdown.cancelled() => return,
            }
            self.pending.store(false, Ordering::Release);
            if let Err(err) = sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANNEL)
                .execute(db)
                .await
            {
                // The other replicas poll; nothing is lost.
                tracing::debug!(error = %err, "NOTIFY failed");
            }
            tokio::time::sleep(NOTIFY_EVERY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_wakes_a_waiter_registered_before_it() {
        let signal = QueueSignal::default();
        let waiting = signal.wait();
        signal.queued();
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("woken");
    }

    #[tokio::test(start_paused = true)]
    async fn signals_in_a_burst_ask_for_one_notify() {
        let signal = QueueSignal::default();
        for _ in 0..100 {
            signal.queued();
        }
        // One stored permit: the announcer sends once, then finds nothing.
        tokio::time::timeout(Duration::from_secs(1), signal.remote.notified())
            .await
            .expect("one notify asked for");
        assert!(signal.pending.load(Ordering::Acquire));
        let again = tokio::time::timeout(Duration::from_millis(10), signal.remote.notified()).await;
        assert!(again.is_err(), "a burst asks only once");
    }
}
