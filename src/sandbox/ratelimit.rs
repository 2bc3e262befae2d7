//! Goodera's limit of 100 requests per minute per client, as a fixed window
//! that opens with a client's first request. Time is `tokio::time::Instant`
//! so tests can drive it with a paused clock.

use std::{collections::HashMap, time::Duration};

use tokio::time::Instant;

pub(crate) struct FixedWindow {
    limit: u32,
    period: Duration,
    windows: HashMap<String, Window>,
}

struct Window {
    opened: Instant,
    used: u32,
}

/// The outcome of one request against the limit, with what the rate-limit
/// headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Time until the window closes and the budget is full again.
    pub resets_in: Duration,
}

impl FixedWindow {
    pub(crate) fn new(limit: u32, period: Duration) -> Self {
        Self {
            limit,
            period,
            windows: HashMap::new(),
        }
    }

    /// Counts one request by `client` at `now`. A refused request does not
    /// use budget, so a client that keeps retrying is not locked out longer.
    pub(crate) fn hit(&mut self, client: &str, now: Instant) -> Decision {
        let window = self.windows.entry(client.to_owned()).or_insert(Window {
            opened: now,
            used: 0,
        });
        if now.duration_since(window.opened) >= self.period {
            *window = Window {
                opened: now,
                used: 0,
            };
        }
        let allowed = window.used < self.limit;
        if allowed {
            window.used += 1;
        }
        Decision {
            allowed,
            limit: self.limit,
            remaining: self.limit - window.used,
            resets_in: (window.opened + self.period).saturating_duration_since(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_101st_request_in_a_minute_is_refused_until_the_window_closes() {
        let mut limiter = FixedWindow::new(100, Duration::from_secs(60));
        let opened = Instant::now();
        for n in 1..=100 {
            let decision = limiter.hit("client-a", Instant::now());
            assert!(decision.allowed, "request {n} is within the limit");
            assert_eq!(decision.remaining, 100 - n);
            tokio::time::advance(Duration::from_millis(100)).await;
        }

        let refused = limiter.hit("client-a", Instant::now());
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(
            refused.resets_in,
            Duration::from_secs(60) - opened.elapsed(),
            "the window closes 60 s after the first request"
        );

        // Another client has a budget of its own.
        assert!(limiter.hit("client-b", Instant::now()).allowed);

        tokio::time::advance(refused.resets_in - Duration::from_millis(1)).await;
        assert!(!limiter.hit("client-a", Instant::now()).allowed);
        tokio::time::advance(Duration::from_millis(1)).await;
        let next_window = limiter.hit("client-a", Instant::now());
        assert!(next_window.allowed);
        assert_eq!(next_window.remaining, 99);
        assert_eq!(next_window.resets_in, Duration::from_secs(60));
    }
}
