//! Circuit breakers: a dependency that keeps failing stops being called for a while, so each
//! order (or notification) does not pay its full timeout and retries to learn it is still
//! down.
//!
//! Closed: calls go through; `failures_to_open` failures in a row open it. Open: calls are
//! refused at once for `cool_down_ms`. Then half-open: one call (the probe) goes through; its
//! success closes the breaker, its failure opens it for another cool-down. A probe that never
//! reports (its caller gave up) is replaced after another cool-down.

use std::sync::Mutex;
use std::time::Duration;

use runtime::metrics::{Counter, Gauge, Registry};
use serde::Deserialize;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerPolicy {
    /// Failures in a row that open the breaker.
    pub failures_to_open: u32,
    /// How long an open breaker refuses calls before it lets one probe through, ms.
    pub cool_down_ms: u64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failures_to_open: 5,
            cool_down_ms: 10_000,
        }
    }
}

/// What the breaker is doing, as `/metrics` shows it (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_until: Instant },
}

/// The breaker refused the call: the dependency is considered down for this long still.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_in: Duration,
}

/// One dependency's breaker.
#[derive(Debug)]
pub struct Breaker {
    name: String,
    policy: BreakerPolicy,
    state: Mutex<State>,
    state_gauge: Option<Gauge>,
    opened: Option<Counter>,
}

impl Breaker {
    pub fn new(name: impl Into<String>, policy: BreakerPolicy) -> Breaker {
        Breaker {
            name: name.into(),
            policy,
            state: Mutex::new(State::Closed { failures: 0 }),
            state_gauge: None,
            opened: None,
        }
    }

    /// Reports the state (`shopstream_circuit_state`, 0 closed, 1 open, 2 half-open) and how
    /// often it opened, labelled with the breaker's name.
    pub fn reported(mut self, registry: &Registry) -> Breaker {
        self.state_gauge = Some(registry.gauge(
            "shopstream_circuit_state",
            "Circuit breaker per dependency: 0 closed, 1 open (calls refused), 2 half-open (one probe)",
            &self.name,
        ));
        self.opened = Some(registry.counter(
            "shopstream_circuit_opened",
            "Times a dependency's circuit breaker opened",
            &self.name,
        ));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn cool_down(&self) -> Duration {
        Duration::from_millis(self.policy.cool_down_ms)
    }

    fn set(&self, state: &mut State, next: State) {
        let (gauge, opening) = match next {
            State::Closed { .. } => (BreakerState::Closed, false),
            State::Open { .. } => (BreakerState::Open, !matches!(state, State::Open { .. })),
            State::HalfOpen { .. } => (BreakerState::HalfOpen, false),
        };
        if opening {
            tracing::warn!(
                dependency = self.name,
                cool_down_ms = self.policy.cool_down_ms,
                "circuit opened: calls are refused until a probe succeeds"
            );
            if let Some(opened) = &self.opened {
                opened.inc();
            }
        }
        if let Some(state_gauge) = &self.state_gauge {
            state_gauge.set(gauge as i64);
        }
        *state = next;
    }

    /// Whether a call may go out now; a half-open breaker lets one probe through.
    pub fn admit(&self) -> Result<(), Refused> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } | State::HalfOpen { probe_until: until } if now < until => {
                Err(Refused {
                    retry_in: until - now,
                })
            }
            State::Open { .. } | State::HalfOpen { .. } => {
                let probe_until = now + self.cool_down();
                self.set(&mut state, State::HalfOpen { probe_until });
                Ok(())
            }
        }
    }

    pub fn succeeded(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(*state, State::Closed { failures: 0 }) {
            if !matches!(*state, State::Closed { .. }) {
                tracing::info!(
                    dependency = self.name,
                    "circuit closed: the probe succeeded"
                );
            }
            self.set(&mut state, State::Closed { failures: 0 });
        }
    }

    pub fn failed(&self) {
        let until = Instant::now() + self.cool_down();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let next = match *state {
            State::Closed { failures } if failures + 1 < self.policy.failures_to_open.max(1) => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            _ => State::Open { until },
        };
        self.set(&mut state, next);
    }

    pub fn state(&self) -> BreakerState {
        match *self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_after_failures_in_a_row_probes_after_the_cool_down_and_closes_on_success() {
        let breaker = Breaker::new(
            "payment:sim",
            BreakerPolicy {
                failures_to_open: 3,
                cool_down_ms: 100,
            },
        );
        for _ in 0..2 {
            breaker.admit().unwrap();
            breaker.failed();
        }
        breaker.admit().unwrap();
        breaker.succeeded();
        for _ in 0..3 {
            breaker.admit().unwrap();
            breaker.failed();
        }
        assert_eq!(breaker.state(), BreakerState::Open, "three in a row");
        let refused = breaker.admit().unwrap_err();
        assert!(
            refused.retry_in <= Duration::from_millis(100) && refused.retry_in > Duration::ZERO
        );
        tokio::time::sleep(Duration::from_millis(110)).await;
        breaker.admit().expect("the probe goes through");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.admit().is_err(), "one probe at a time");
        breaker.failed();
        assert_eq!(
            breaker.state(),
            BreakerState::Open,
            "a failed probe reopens"
        );
        assert!(breaker.admit().is_err());
        tokio::time::sleep(Duration::from_millis(110)).await;
        breaker.admit().unwrap();
        breaker.succeeded();
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.admit().unwrap();
    }
}
