//! When to try a failed delivery again. The policy only decides delays; the
//! delivery queue applies them durably between attempts, so one policy
//! governs every retry and each provider call is one counted attempt.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rand::Rng;

use super::{ConnectorError, ErrorClass};

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Provider calls in all, the first included.
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub factor: f32,
    pub max_delay: Duration,
    /// Each computed delay is moved by up to this fraction either way, so
    /// deliveries that failed together do not all come back together.
    pub jitter: f64,
    /// 429 answers one delivery may get before it is given up. They do not
    /// spend `max_attempts`: a provider asking us to slow down has not
    /// failed the report, but one that never stops asking has.
    pub max_rate_limited: u32,
}

/// The provider calls a delivery has made, the one that just failed
/// included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptsMade {
    pub total: u32,
    /// Of which the provider answered 429.
    pub rate_limited: u32,
}

impl Default for RetryPolicy {
    /// The seed service's defaults: 3 attempts, 1 s, ×2, 30 s cap, ±10 %.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_delay: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(30),
            jitter: 0.1,
            max_rate_limited: 10,
        }
    }
}

impl RetryPolicy {
    /// The delay before the next attempt after the calls `made`, the last
    /// of which failed with `error`; `None` means give up. A provider's
    /// `Retry-After` (already bounded by the client) replaces the computed
    /// delay.
    pub fn next_delay(&self, made: AttemptsMade, error: &ConnectorError) -> Option<Duration> {
        let answered = made.total.saturating_sub(made.rate_limited);
        let exhausted = match error.class() {
            ErrorClass::RateLimited => made.rate_limited >= self.max_rate_limited,
            _ => answered >= self.max_attempts,
        };
        if !error.is_retryable() || exhausted {
            return None;
        }
        if let Some(asked) = error.retry_after() {
            return Some(asked);
        }
        Some(self.jittered(self.backoff(answered.max(1))))
    }

    /// The un-jittered exponential delay after the `attempts_made`-th call.
    /// backon's own jitter only adds (0, delay); we want it symmetric.
    fn backoff(&self, attempts_made: u32) -> Duration {
        ExponentialBuilder::default()
            .with_min_delay(self.initial_delay)
            .with_factor(self.factor)
            .with_max_delay(self.max_delay)
            .without_max_times()
            .build()
            .nth(attempts_made.saturating_sub(1) as usize)
            .unwrap_or(self.max_delay)
    }

    fn jittered(&self, delay: Duration) -> Duration {
        if self.jitter <= 0.0 {
            return delay;
        }
        let spread = rand::rng().random_range(-self.jitter..=self.jitter);
        delay.mul_f64(1.0 + spread)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient() -> ConnectorError {
        ConnectorError::transient("HTTP 503")
    }

    /// `total` calls, none answered 429.
    fn made(total: u32) -> AttemptsMade {
        AttemptsMade {
            total,
            rate_limited: 0,
        }
    }

    fn rate_limited() -> ConnectorError {
        ConnectorError::RateLimited {
            status: Some(429),
            retry_after: Some(Duration::from_secs(42)),
            excerpt: None,
        }
    }

    #[test]
    fn delays_double_from_one_second_within_ten_percent_and_stop_after_three_calls() {
        let policy = RetryPolicy::default();
        for _ in 0..200 {
            let first = policy.next_delay(made(1), &transient()).unwrap();
            let second = policy.next_delay(made(2), &transient()).unwrap();
            assert!((900..=1100).contains(&first.as_millis()), "{first:?}");
            assert!((1800..=2200).contains(&second.as_millis()), "{second:?}");
        }
        assert_eq!(policy.next_delay(made(3), &transient()), None);
    }

    #[test]
    fn delays_are_capped() {
        let policy = RetryPolicy {
            max_attempts: 20,
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert_eq!(
            policy.next_delay(made(5), &transient()),
            Some(Duration::from_secs(16))
        );
        assert_eq!(
            policy.next_delay(made(6), &transient()),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            policy.next_delay(made(19), &transient()),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn retry_after_replaces_the_computed_delay() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.next_delay(made(1), &transient_asking(42)),
            Some(Duration::from_secs(42))
        );
    }

    fn transient_asking(seconds: u64) -> ConnectorError {
        ConnectorError::Transient {
            message: "HTTP 503".into(),
            status: Some(503),
            retry_after: Some(Duration::from_secs(seconds)),
            excerpt: None,
        }
    }

    #[test]
    fn rate_limited_answers_spend_a_budget_of_their_own() {
        let policy = RetryPolicy::default();
        // Two failures and then three 429s: the 429s leave the third
        // attempt of the policy's three still to make.
        let after_429s = AttemptsMade {
            total: 5,
            rate_limited: 3,
        };
        assert_eq!(
            policy.next_delay(after_429s, &rate_limited()),
            Some(Duration::from_secs(42))
        );
        let third_failure = AttemptsMade {
            total: 6,
            rate_limited: 3,
        };
        assert_eq!(policy.next_delay(third_failure, &transient()), None);

        // A provider that never stops answering 429 is given up on.
        let nine = AttemptsMade {
            total: 9,
            rate_limited: 9,
        };
        assert!(policy.next_delay(nine, &rate_limited()).is_some());
        let ten = AttemptsMade {
            total: 10,
            rate_limited: 10,
        };
        assert_eq!(policy.next_delay(ten, &rate_limited()), None);
    }

    #[test]
    fn permanent_and_auth_errors_are_never_retried() {
        let policy = RetryPolicy::default();
        let auth = ConnectorError::Auth {
            message: "HTTP 401".into(),
            status: Some(401),
            excerpt: None,
        };
        assert_eq!(
            policy.next_delay(made(1), &ConnectorError::permanent("HTTP 400")),
            None
        );
        assert_eq!(policy.next_delay(made(1), &auth), None);
    }
}
