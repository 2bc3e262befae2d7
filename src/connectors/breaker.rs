//! A circuit breaker per provider endpoint: after repeated transient
//! failures it fails fast instead of piling calls onto a provider that is
//! down, then lets a single probe through to see whether it is back.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ConnectorError;
use crate::clock::SharedClock;

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Transient failures within `window` that open the circuit.
    pub failure_threshold: usize,
    pub window: Duration,
    /// How long an open circuit fails fast before letting a probe through.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed {
        failures: VecDeque<DateTime<Utc>>,
    },
    Open {
        until: DateTime<Utc>,
    },
    /// Cool-down over; `probing` while the one probe call is in flight.
    HalfOpen {
        probing: bool,
    },
}

#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    clock: SharedClock,
    state: Mutex<State>,
}

/// Permission for one call. Dropping it without [`Permit::record`] (the
/// call was cancelled) frees the probe slot without judging the provider.
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<CircuitBreaker>,
    probe: bool,
    recorded: bool,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig, clock: SharedClock) -> Arc<Self> {
        Arc::new(Self {
            config,
            clock,
            state: Mutex::new(State::Closed {
                failures: VecDeque::new(),
            }),
        })
    }

    pub fn state(&self) -> CircuitState {
        match &*self.lock() {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { until } if *until > self.clock.now() => CircuitState::Open,
            State::Open { .. } | State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    pub fn acquire(self: &Arc<Self>) -> Result<Permit, ConnectorError> {
        let mut state = self.lock();
        let probe = match &*state {
            State::Closed { .. } => false,
            State::Open { until } if *until > self.clock.now() => {
                return Err(open_error(
                    (*until - self.clock.now()).to_std().unwrap_or_default(),
                ));
            }
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                true
            }
            // The probe decides; the rest wait a while rather than queue up.
            State::HalfOpen { probing: true } => {
                return Err(open_error(self.config.cooldown.min(PROBE_WAIT)));
            }
        };
        Ok(Permit {
            breaker: Arc::clone(self),
            probe,
            recorded: false,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("breaker lock")
    }
}

impl Permit {
    /// Records how the call went. Only transient failures speak about the
    /// provider's health; a rejected payload or bad credentials do not.
    pub fn record<T>(mut self, outcome: &Result<T, ConnectorError>) {
        // A call that was never made (our rate limit turned it away) says
        // nothing either: dropping the permit unrecorded frees the probe.
        if matches!(outcome, Err(err) if err.not_sent_for().is_some()) {
            return;
        }
        self.recorded = true;
        let failed = matches!(outcome, Err(ConnectorError::Transient { .. }));
        let breaker = &self.breaker;
        let now = breaker.clock.now();
        let mut state = breaker.lock();
        match (&mut *state, failed) {
            (State::Closed { failures }, true) => {
                let window = chrono::Duration::from_std(breaker.config.window).unwrap_or_default();
                failures.push_back(now);
                while failures.front().is_some_and(|at| *at <= now - window) {
                    failures.pop_front();
                }
                if failures.len() >= breaker.config.failure_threshold {
                    *state = breaker.open_from(now);
                }
            }
            (State::Closed { .. }, false) => {}
            (_, true) if self.probe => *state = breaker.open_from(now),
            (_, false) if self.probe => {
                *state = State::Closed {
                    failures: VecDeque::new(),
                }
            }
            // A call admitted before the circuit opened: its outcome is old news.
            _ => {}
        }
    }
}

impl CircuitBreaker {
    fn open_from(&self, now: DateTime<Utc>) -> State {
        let cooldown = chrono::Duration::from_std(self.config.cooldown).unwrap_or_default();
        tracing::warn!(
            cooldown_secs = self.config.cooldown.as_secs(),
            "circuit opened"
        );
        State::Open {
            until: now + cooldown,
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            *self.breaker.lock() = State::HalfOpen { probing: false };
        }
    }
}

/// How long a call refused during the half-open probe waits at most.
const PROBE_WAIT: Duration = Duration::from_secs(5);

fn open_error(retry_after: Duration) -> ConnectorError {
    ConnectorError::CircuitOpen { retry_after }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn breaker() -> (Arc<CircuitBreaker>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        (
            CircuitBreaker::new(BreakerConfig::default(), clock.clone()),
            clock,
        )
    }

    fn fail(breaker: &Arc<CircuitBreaker>) {
        let outcome: Result<(), _> = Err(ConnectorError::transient("HTTP 503"));
        breaker.acquire().unwrap().record(&outcome);
    }

    #[test]
    fn five_transient_failures_within_ten_seconds_open_the_circuit() {
        let (breaker, _) = breaker();
        for _ in 0..4 {
            fail(&breaker);
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
        fail(&breaker);
        assert_eq!(breaker.state(), CircuitState::Open);
        // Refused calls wait out the rest of the cool-down.
        assert_eq!(
            breaker.acquire().unwrap_err(),
            open_error(Duration::from_secs(30))
        );
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_open_it() {
        let (breaker, clock) = breaker();
        for _ in 0..10 {
            fail(&breaker);
            clock.advance(Duration::from_secs(3));
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn permanent_failures_do_not_count() {
        let (breaker, _) = breaker();
        for _ in 0..10 {
            let outcome: Result<(), _> = Err(ConnectorError::permanent("HTTP 422"));
            breaker.acquire().unwrap().record(&outcome);
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn after_the_cooldown_one_probe_decides() {
        let (breaker, clock) = breaker();
        for _ in 0..5 {
            fail(&breaker);
        }
        clock.advance(Duration::from_secs(30));
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        let probe = breaker.acquire().unwrap();
        assert!(breaker.acquire().is_err(), "only one probe at a time");
        probe.record(&Err::<(), _>(ConnectorError::transient("still down")));
        assert_eq!(breaker.state(), CircuitState::Open);

        clock.advance(Duration::from_secs(30));
        breaker
            .acquire()
            .unwrap()
            .record(&Ok::<(), ConnectorError>(()));
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert!(breaker.acquire().is_ok());
    }

    #[test]
    fn a_cancelled_probe_frees_the_slot() {
        let (breaker, clock) = breaker();
        for _ in 0..5 {
            fail(&breaker);
        }
        clock.advance(Duration::from_secs(31));
        drop(breaker.acquire().unwrap());
        assert!(breaker.acquire().is_ok());
    }
}
