//! Counts since start, per provider, for `GET /webhooks/health`: requests
//! received, verified, refused (by reason), and when the last verified one
//! came. Lock-free: every webhook request bumps them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use chrono::{DateTime, Utc};

use super::signature::Refusal;
use crate::provider::Provider;

#[derive(Debug, Default)]
pub struct Counters([ProviderCounters; 3]);

#[derive(Debug, Default)]
struct ProviderCounters {
    received: AtomicU64,
    verified: AtomicU64,
    refused: [AtomicU64; 3],
    /// Unix milliseconds; 0 for none yet.
    last_verified_ms: AtomicI64,
    /// When a refusal was last logged (Unix ms), and refusals since.
    last_logged_ms: AtomicI64,
    unlogged: AtomicU64,
}

/// Refusals are logged at most this often per provider: a flood of forged
/// requests must not flood the logs too (the counters count every one).
const LOG_EVERY_MS: i64 = 1000;

/// A reading of one provider's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub received: u64,
    pub verified: u64,
    /// By reason, in the order of [`Refusal::REASONS`].
    pub refused: [u64; 3],
    pub last_verified_at: Option<DateTime<Utc>>,
}

impl Counters {
    fn of(&self, provider: Provider) -> &ProviderCounters {
        &self.0[provider as usize]
    }

    pub fn received(&self, provider: Provider) {
        self.of(provider).received.fetch_add(1, Relaxed);
    }

    pub fn verified(&self, provider: Provider, at: DateTime<Utc>) {
        let counters = self.of(provider);
        counters.verified.fetch_add(1, Relaxed);
        counters
            .last_verified_ms
            .fetch_max(at.timestamp_millis(), Relaxed);
    }

    pub fn refused(&self, provider: Provider, refusal: Refusal) {
        let index = Refusal::REASONS
            .iter()
            .position(|reason| *reason == refusal.reason())
            .expect("every refusal has a reason listed");
        self.of(provider).refused[index].fetch_add(1, Relaxed);
    }

    /// Whether a refusal at `now` should be logged; if so, how many were
    /// refused since the last line (this one included).
    pub fn log_refusal(&self, provider: Provider, now: DateTime<Utc>) -> Option<u64> {
        let counters = self.of(provider);
        counters.unlogged.fetch_add(1, Relaxed);
        let now = now.timestamp_millis();
        let last = counters.last_logged_ms.load(Relaxed);
        if now - last < LOG_EVERY_MS
            || counters
                .last_logged_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            return None;
        }
        Some(counters.unlogged.swap(0, Relaxed).max(1))
    }

    pub fn read(&self, provider: Provider) -> Reading {
        let counters = self.of(provider);
        let last = counters.last_verified_ms.load(Relaxed);
        Reading {
            received: counters.received.load(Relaxed),
            verified: counters.verified.load(Relaxed),
            refused: counters.refused.each_ref().map(|c| c.load(Relaxed)),
            last_verified_at: (last > 0)
                .then(|| DateTime::from_timestamp_millis(last))
                .flatten(),
        }
    }
}
