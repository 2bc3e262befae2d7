//! Client-side rate limiting per credential, so we stay under a provider's
//! published limit instead of learning it from 429s.

use std::{num::NonZeroU32, sync::Mutex, time::Duration};

use governor::{
    Quota, RateLimiter,
    clock::Clock,
    middleware::NoOpMiddleware,
    state::{InMemoryState, NotKeyed},
};
use tokio::time::Instant;

/// governor's clock on tokio's time, so paused-clock tests drive it.
#[derive(Debug, Clone, Copy, Default)]
struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> Self::Instant {
        Instant::now().into_std()
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<std::time::Instant>>;

#[derive(Debug)]
pub struct RateGate {
    limiter: Limiter,
    /// Set when the provider said its window is spent (remaining 0), until
    /// its announced reset.
    paused_until: Mutex<Option<Instant>>,
}

impl RateGate {
    pub fn per_minute(requests: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::direct_with_clock(Quota::per_minute(requests), TokioClock),
            paused_until: Mutex::new(None),
        }
    }

    /// Waits until a request may go out.
    pub async fn acquire(&self) {
        let paused = *self.paused_until.lock().expect("rate gate lock");
        if let Some(until) = paused {
            tokio::time::sleep_until(until).await;
        }
        while let Err(not_until) = self.limiter.check() {
            tokio::time::sleep(not_until.wait_time_from(TokioClock.now())).await;
        }
    }

    /// The provider reported its window spent; hold requests for `wait`.
    pub fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = self.paused_until.lock().expect("rate gate lock");
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_hundred_and_first_request_in_a_minute_waits() {
        let gate = RateGate::per_minute(NonZeroU32::new(100).unwrap());
        let start = Instant::now();
        for _ in 0..100 {
            gate.acquire().await;
        }
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the burst of 100 is immediate"
        );
        gate.acquire().await;
        // 100/min replenishes one request every 600 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(600));
    }

    #[tokio::test(start_paused = true)]
    async fn a_provider_pause_holds_requests_until_the_reset() {
        let gate = RateGate::per_minute(NonZeroU32::new(100).unwrap());
        gate.pause_for(Duration::from_secs(17));
        let start = Instant::now();
        gate.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(17));
    }
}
