//! Taking payment for an order through a [`PaymentProvider`]. Providers are slow and fail; the
//! [`Payments`] gateway times each call out, retries a provider that is unavailable with
//! exponential backoff, then falls back to the next provider. A decline is the buyer's answer
//! and is final. Every call carries the order id as the provider's idempotency key, so a retry
//! after a lost answer cannot charge twice at the same provider.

use model::api::ErrorCode;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runtime::metrics::Registry;

use crate::breaker::{Breaker, BreakerPolicy, BreakerState};

use futures::future::BoxFuture;
use model::{Money, OrderId, PaymentId};
use rand::{Rng as _, SeedableRng as _};
use serde::Deserialize;

use crate::domain::OrderAction;
use crate::lifecycle::{
    LifecycleError, PaymentOutcome, PaymentRecorded, Scope, record_payment, view_order,
};
use crate::store::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub order_id: OrderId,
    pub amount: Money,
    /// The same key on a retry returns the first answer instead of charging again.
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    Captured {
        payment_id: PaymentId,
    },
    Declined {
        payment_id: PaymentId,
        reason: String,
    },
}

/// The provider could not answer; trying again (or elsewhere) may work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider} unavailable: {reason}")]
pub struct ProviderUnavailable {
    pub provider: String,
    pub reason: String,
}

pub trait PaymentProvider: Send + Sync {
    fn name(&self) -> &str;
    fn charge<'a>(
        &'a self,
        request: &'a ChargeRequest,
    ) -> BoxFuture<'a, Result<Charge, ProviderUnavailable>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Calls per provider before falling back to the next one.
    pub attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// A call that takes longer counts as unavailable.
    pub timeout_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            initial_backoff_ms: 50,
            max_backoff_ms: 1_000,
            timeout_ms: 2_000,
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with full jitter: `attempt` 0 waits up to `initial_backoff_ms`.
    fn backoff(&self, attempt: u32, rng: &mut impl rand::Rng) -> Duration {
        jittered_backoff(self.initial_backoff_ms, self.max_backoff_ms, attempt, rng)
    }
}

/// Exponential backoff with jitter: `attempt` 0 waits between half of and all of
/// `initial_ms`, each later attempt up to twice as long, never over `max_ms`.
pub(crate) fn jittered_backoff(
    initial_ms: u64,
    max_ms: u64,
    attempt: u32,
    rng: &mut impl rand::Rng,
) -> Duration {
    let cap = initial_ms
        .saturating_mul(1u64 << attempt.min(20))
        .min(max_ms);
    Duration::from_millis(rng.random_range(cap / 2..=cap.max(1)))
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error("no payment provider could take the payment: {}", tried.join("; "))]
    AllProvidersUnavailable { tried: Vec<String> },
    #[error("no payment provider is configured")]
    NoProviders,
}

impl PaymentError {
    pub fn code(&self) -> ErrorCode {
        match self {
            PaymentError::Lifecycle(error) => error.code(),
            PaymentError::AllProvidersUnavailable { .. } | PaymentError::NoProviders => {
                ErrorCode::PaymentUnavailable
            }
        }
    }
}

/// Providers in order of preference, with the retry policy applied to each and a circuit
/// breaker per provider: one that keeps failing is skipped until its probe succeeds, so a dead
/// provider stops costing every order its timeouts and retries.
#[derive(Clone)]
pub struct Payments {
    providers: Vec<(Arc<dyn PaymentProvider>, Arc<Breaker>)>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for Payments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.providers.iter().map(|(p, _)| p.name()).collect();
        f.debug_struct("Payments")
            .field("providers", &names)
            .field("retry", &self.retry)
            .finish()
    }
}

impl Payments {
    /// With the default breaker policy, unreported.
    pub fn new(providers: Vec<Arc<dyn PaymentProvider>>, retry: RetryPolicy) -> Self {
        Self::with_breakers(providers, retry, BreakerPolicy::default(), None)
    }

    /// Each provider gets a breaker under `policy`, reported on `registry` when given (as
    /// `payment:<provider>`).
    pub fn with_breakers(
        providers: Vec<Arc<dyn PaymentProvider>>,
        retry: RetryPolicy,
        policy: BreakerPolicy,
        registry: Option<&Registry>,
    ) -> Self {
        let providers = providers
            .into_iter()
            .map(|provider| {
                let breaker = Breaker::new(format!("payment:{}", provider.name()), policy);
                let breaker = match registry {
                    Some(registry) => breaker.reported(registry),
                    None => breaker,
                };
                (provider, Arc::new(breaker))
            })
            .collect();
        Self { providers, retry }
    }

    /// Each provider's breaker state, in order of preference.
    pub fn breaker_states(&self) -> Vec<BreakerState> {
        self.providers.iter().map(|(_, b)| b.state()).collect()
    }

    /// Charges `request`, retrying and falling back; the outcome names the provider that
    /// answered.
    pub async fn charge(&self, request: &ChargeRequest) -> Result<PaymentOutcome, PaymentError> {
        if self.providers.is_empty() {
            return Err(PaymentError::NoProviders);
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(uuid::Uuid::now_v7().as_u64_pair().1);
        let mut tried = Vec::new();
        for (provider, breaker) in &self.providers {
            for attempt in 0..self.retry.attempts.max(1) {
                if attempt > 0 {
                    tokio::time::sleep(self.retry.backoff(attempt - 1, &mut rng)).await;
                }
                if let Err(refused) = breaker.admit() {
                    tried.push(format!(
                        "{}: circuit open after repeated failures (next probe in {} ms)",
                        provider.name(),
                        refused.retry_in.as_millis()
                    ));
                    break;
                }
                let call = provider.charge(request);
                let timeout = Duration::from_millis(self.retry.timeout_ms);
                let answer = match tokio::time::timeout(timeout, call).await {
                    Ok(answer) => answer,
                    Err(_) => Err(ProviderUnavailable {
                        provider: provider.name().to_owned(),
                        reason: format!("no answer within {} ms", self.retry.timeout_ms),
                    }),
                };
                let provider_name = provider.name().to_owned();
                match &answer {
                    Ok(_) => breaker.succeeded(),
                    Err(_) => breaker.failed(),
                }
                match answer {
                    Ok(Charge::Captured { payment_id }) => {
                        return Ok(PaymentOutcome::Captured {
                            payment_id,
                            provider: provider_name,
                            amount: request.amount,
                        });
                    }
                    Ok(Charge::Declined { payment_id, reason }) => {
                        return Ok(PaymentOutcome::Failed {
                            payment_id,
                            provider: provider_name,
                            amount: request.amount,
                            reason,
                        });
                    }
                    Err(unavailable) => {
                        tracing::warn!(%unavailable, attempt, "payment provider call failed");
                        tried.push(unavailable.to_string());
                    }
                }
            }
        }
        Err(PaymentError::AllProvidersUnavailable { tried })
    }
}

/// Takes payment for a placed order and records the outcome. Nothing is recorded when no
/// provider answered: the order keeps waiting until its reservation expires.
pub async fn pay(
    store: &Store,
    payments: &Payments,
    order_id: &OrderId,
    scope: &Scope,
    clock: impl Fn() -> i64,
) -> Result<PaymentRecorded, PaymentError> {
    let order = view_order(store, order_id, scope).await?;
    if order.captured.amount_minor > 0 {
        return Err(LifecycleError::AlreadyPaid(order_id.clone()).into());
    }
    // A cancelled or failed order is refused by the state machine's own error.
    order
        .status
        .apply(OrderAction::Confirm)
        .map_err(LifecycleError::from)?;
    if crate::domain::stock::is_expired(order.reservation_expires_at, clock()) {
        return Err(LifecycleError::ReservationExpired(order_id.clone()).into());
    }
    let request = ChargeRequest {
        order_id: order_id.clone(),
        amount: order.total,
        idempotency_key: format!("order:{order_id}"),
    };
    let outcome = payments.charge(&request).await?;
    Ok(record_payment(store, order_id, scope, &outcome, clock()).await?)
}

/// How a [`SimulatedProvider`] behaves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatedConfig {
    pub name: String,
    /// Each call takes this long before answering.
    pub latency_ms: u64,
    /// The first this many calls answer "unavailable", whatever the rates say.
    pub unavailable_first: u32,
    /// Share of calls (0..1) that answer "unavailable".
    pub unavailable_rate: f64,
    /// Share of charges (0..1) declined, as a card issuer would.
    pub decline_rate: f64,
    pub seed: u64,
}

impl Default for SimulatedConfig {
    fn default() -> Self {
        Self {
            name: "sim".to_owned(),
            latency_ms: 0,
            unavailable_first: 0,
            unavailable_rate: 0.0,
            decline_rate: 0.0,
            seed: 0,
        }
    }
}

/// A payment provider in-process: answers after a latency, can be down, declines a share of
/// charges, and honours idempotency keys as real gateways do.
pub struct SimulatedProvider {
    config: SimulatedConfig,
    calls: AtomicU32,
    rng: Mutex<rand_chacha::ChaCha8Rng>,
    answered: Mutex<HashMap<String, Charge>>,
}

impl std::fmt::Debug for SimulatedProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedProvider")
            .field("config", &self.config)
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl SimulatedProvider {
    pub fn new(config: SimulatedConfig) -> Self {
        let rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
        Self {
            config,
            calls: AtomicU32::new(0),
            rng: Mutex::new(rng),
            answered: Mutex::new(HashMap::new()),
        }
    }

    /// How many charge calls reached this provider.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }

    fn answer(&self, request: &ChargeRequest) -> Result<Charge, ProviderUnavailable> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let (down, declined) = {
            let mut rng = self.rng.lock().unwrap_or_else(|poison| poison.into_inner());
            (
                rng.random_bool(self.config.unavailable_rate.clamp(0.0, 1.0)),
                rng.random_bool(self.config.decline_rate.clamp(0.0, 1.0)),
            )
        };
        if call < self.config.unavailable_first || down {
            return Err(ProviderUnavailable {
                provider: self.config.name.clone(),
                reason: "simulated outage".to_owned(),
            });
        }
        let mut answered = self
            .answered
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let charge = answered
            .entry(request.idempotency_key.clone())
            .or_insert_with(|| {
                let payment_id =
                    PaymentId::new(format!("pay-{}-{}", self.config.name, uuid::Uuid::now_v7()));
                if declined {
                    Charge::Declined {
                        payment_id,
                        reason: "declined_by_issuer".to_owned(),
                    }
                } else {
                    Charge::Captured { payment_id }
                }
            });
        Ok(charge.clone())
    }
}

impl PaymentProvider for SimulatedProvider {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn charge<'a>(
        &'a self,
        request: &'a ChargeRequest,
    ) -> BoxFuture<'a, Result<Charge, ProviderUnavailable>> {
        Box::pin(async move {
            if self.config.latency_ms > 0 {
                tokio::time::sleep(Duration::from_millis(self.config.latency_ms)).await;
            }
            self.answer(request)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ChargeRequest {
        ChargeRequest {
            order_id: OrderId::new("o-1"),
            amount: Money::inr(10_000),
            idempotency_key: "order:o-1".to_owned(),
        }
    }

    fn fast_retry() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            initial_backoff_ms: 1,
            max_backoff_ms: 2,
            timeout_ms: 200,
        }
    }

    fn provider(config: SimulatedConfig) -> Arc<SimulatedProvider> {
        Arc::new(SimulatedProvider::new(config))
    }

    #[tokio::test]
    async fn a_provider_that_recovers_is_retried_until_it_captures() {
        let flaky = provider(SimulatedConfig {
            name: "flaky".into(),
            unavailable_first: 2,
            ..SimulatedConfig::default()
        });
        let payments = Payments::new(vec![flaky.clone()], fast_retry());
        let outcome = payments.charge(&request()).await.unwrap();
        assert!(
            matches!(outcome, PaymentOutcome::Captured { ref provider, .. } if provider == "flaky")
        );
        assert_eq!(flaky.calls(), 3);
    }

    #[tokio::test]
    async fn a_provider_that_stays_down_falls_back_to_the_next() {
        let down = provider(SimulatedConfig {
            name: "down".into(),
            unavailable_rate: 1.0,
            ..SimulatedConfig::default()
        });
        let backup = provider(SimulatedConfig {
            name: "backup".into(),
            ..SimulatedConfig::default()
        });
        let payments = Payments::new(vec![down.clone(), backup.clone()], fast_retry());
        let outcome = payments.charge(&request()).await.unwrap();
        assert!(
            matches!(outcome, PaymentOutcome::Captured { ref provider, .. } if provider == "backup")
        );
        assert_eq!((down.calls(), backup.calls()), (3, 1));
    }

    #[tokio::test]
    async fn a_dead_provider_stops_costing_each_charge_its_retries_once_its_breaker_opens() {
        let charges = |policy: BreakerPolicy| async move {
            let dead = provider(SimulatedConfig {
                name: "dead".into(),
                unavailable_rate: 1.0,
                ..SimulatedConfig::default()
            });
            let backup = provider(SimulatedConfig {
                name: "backup".into(),
                ..SimulatedConfig::default()
            });
            let payments = Payments::with_breakers(
                vec![dead.clone(), backup.clone()],
                fast_retry(),
                policy,
                None,
            );
            for _ in 0..20 {
                let outcome = payments.charge(&request()).await.unwrap();
                assert!(
                    matches!(outcome, PaymentOutcome::Captured { ref provider, .. } if provider == "backup")
                );
            }
            (dead.calls(), payments.breaker_states())
        };
        // Without a breaker that ever opens: three calls (and their timeouts) per charge.
        let never = BreakerPolicy {
            failures_to_open: u32::MAX,
            ..BreakerPolicy::default()
        };
        assert_eq!(charges(never).await.0, 60);
        let (calls, states) = charges(BreakerPolicy {
            failures_to_open: 5,
            cool_down_ms: 60_000,
        })
        .await;
        assert_eq!(
            calls, 5,
            "the dead provider is called until its breaker opens, then skipped"
        );
        assert_eq!(states, [BreakerState::Open, BreakerState::Closed]);
    }

    #[tokio::test]
    async fn a_slow_provider_times_out_and_counts_as_down() {
        let slow = provider(SimulatedConfig {
            name: "slow".into(),
            latency_ms: 5_000,
            ..SimulatedConfig::default()
        });
        let retry = RetryPolicy {
            attempts: 1,
            timeout_ms: 20,
            ..fast_retry()
        };
        let error = Payments::new(vec![slow], retry)
            .charge(&request())
            .await
            .unwrap_err();
        assert_eq!(error.code().as_str(), "payment_unavailable");
        assert!(
            error.to_string().contains("no answer within 20 ms"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_decline_is_final_and_does_not_fall_back() {
        let declining = provider(SimulatedConfig {
            name: "strict".into(),
            decline_rate: 1.0,
            ..SimulatedConfig::default()
        });
        let backup = provider(SimulatedConfig::default());
        let outcome = Payments::new(vec![declining, backup.clone()], fast_retry())
            .charge(&request())
            .await
            .unwrap();
        assert!(
            matches!(outcome, PaymentOutcome::Failed { ref reason, .. } if reason == "declined_by_issuer")
        );
        assert_eq!(backup.calls(), 0);
    }

    #[tokio::test]
    async fn the_same_idempotency_key_never_charges_twice() {
        let sim = provider(SimulatedConfig::default());
        let first = sim.charge(&request()).await.unwrap();
        let again = sim.charge(&request()).await.unwrap();
        assert_eq!(first, again);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            initial_backoff_ms: 100,
            max_backoff_ms: 400,
            ..RetryPolicy::default()
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for attempt in 0..10 {
            let wait = policy.backoff(attempt, &mut rng).as_millis() as u64;
            let cap = (100u64 << attempt).min(400);
            assert!((cap / 2..=cap).contains(&wait), "attempt {attempt}: {wait}");
        }
    }
}
