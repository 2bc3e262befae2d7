//! Client-side rate limiting per credential, so we stay under a provider's
//! published limit instead of learning it from 429s.
//!
//! The gate never makes a caller wait. A delivery attempt holds a worker
//! slot and a lease; waiting here for a window to reopen (up to minutes)
//! would outlive the lease, let another worker take the delivery over and
//! send it twice, and starve other providers of slots. Instead the gate says
//! how long until a request may go, and the delivery goes back to the
//! durable queue for that long.

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

/// The window of a per-minute quota: deferred requests are spread over it.
const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct RateGate {
    limiter: Limiter,
    /// Set when the provider said its window is spent (remaining 0, or a
    /// 429), until the end it announced.
    paused_until: Mutex<Option<Instant>>,
}

impl RateGate {
    pub fn per_minute(requests: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::direct_with_clock(Quota::per_minute(requests), TokioClock),
            paused_until: Mutex::new(None),
        }
    }

    /// Takes the right to send one request now, or answers after how long
    /// to come back. Never waits.
    ///
    /// The answer is the time until the gate could open plus a random part
    /// of one window: many deliveries turned away together come back spread
    /// over the window, about as fast as it lets them through, instead of
    /// all at the same instant to be turned away again.
    pub fn admit(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let paused = *self.paused_until.lock().expect("rate gate lock");
        if let Some(until) = paused.filter(|until| *until > now) {
            return Err(spread(until - now));
        }
        self.limiter
            .check()
            .map_err(|not_until| spread(not_until.wait_time_from(TokioClock.now())))
    }

    /// The provider reported its window spent; turn requests away for
    /// `wait`. Answers how long the request that learned it should wait,
    /// spread as [`RateGate::admit`] spreads.
    pub fn pause_for(&self, wait: Duration) -> Duration {
        let until = Instant::now() + wait;
        let mut paused = self.paused_until.lock().expect("rate gate lock");
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
        spread(wait)
    }
}

fn spread(wait: Duration) -> Duration {
    wait + WINDOW.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within_a_window_after(delay: Duration, wait: Duration) {
        assert!(
            delay >= wait && delay <= wait + WINDOW,
            "{delay:?} is not within one window after {wait:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_hundred_and_first_request_in_a_minute_is_turned_away_without_waiting() {
        let gate = RateGate::per_minute(NonZeroU32::new(100).unwrap());
        for n in 0..100 {
            assert_eq!(gate.admit(), Ok(()), "request {n} of the burst");
        }
        // 100/min replenishes one request every 600 ms.
        let come_back = gate.admit().unwrap_err();
        within_a_window_after(come_back, Duration::from_millis(600));

        tokio::time::advance(Duration::from_millis(600)).await;
        assert_eq!(gate.admit(), Ok(()));
        assert!(gate.admit().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_provider_pause_turns_requests_away_until_the_reset() {
        let gate = RateGate::per_minute(NonZeroU32::new(100).unwrap());
        let told = gate.pause_for(Duration::from_secs(17));
        within_a_window_after(told, Duration::from_secs(17));
        within_a_window_after(gate.admit().unwrap_err(), Duration::from_secs(17));

        // A shorter pause does not shorten a longer one.
        gate.pause_for(Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(10)).await;
        within_a_window_after(gate.admit().unwrap_err(), Duration::from_secs(7));

        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(gate.admit(), Ok(()));
    }

    #[test]
    fn deferrals_are_spread_over_the_window() {
        let delays: Vec<_> = (0..200).map(|_| spread(Duration::ZERO)).collect();
        let early = delays.iter().filter(|d| **d < WINDOW / 2).count();
        assert!(
            (50..=150).contains(&early),
            "{early} of 200 in the first half"
        );
    }
}
