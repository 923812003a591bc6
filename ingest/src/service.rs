//! The orders core as one stage: the store, the `/v1` routes with the collector (mounted on
//! the front door by the binary), and its work: the outbox relay, the reservation sweeper and
//! the customer notifier, started by [`stage`] and stopped by the shutdown token. The binary
//! and the tests start it the same way.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bus::Bus;
use futures::{FutureExt as _, TryFutureExt as _};
use runtime::metrics::Registry;
use runtime::{Readiness, Stage};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::breaker::BreakerPolicy;
use crate::collector::CollectorConfig;
use crate::domain::{FxRate, GstRates};
use crate::http::auth::{self, Limiter, Origin, RateLimit, Role};
use crate::http::{Collector, CoreState};
use crate::lifecycle::{self, AddressRules};
use crate::notify::{self, NotifyConfig};
use crate::orders::OrderRules;
use crate::payments::{PaymentProvider, Payments, RetryPolicy, SimulatedConfig, SimulatedProvider};
use crate::relay::{self, RelayConfig};
use crate::store::{Store, StoreConfig, StoreError, now_ms};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoreConfig {
    pub store: StoreConfig,
    pub relay: RelayConfig,
    /// The admin API key. Unset: one is generated on first start and kept in
    /// `<data_dir>/admin.key` (readable by its owner only).
    pub admin_key: Option<String>,
    /// How long a placed order holds its stock waiting for payment.
    pub reservation_hold_ms: i64,
    /// How often expired reservations are swept.
    pub sweep_interval_ms: u64,
    pub gst: GstRates,
    pub fx_rates: Vec<FxRate>,
    pub address: AddressRules,
    pub rate_limit: RateLimit,
    pub payments: PaymentsConfig,
    pub collector: CollectorConfig,
    pub notify: NotifyConfig,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            store: StoreConfig::default(),
            relay: RelayConfig::default(),
            admin_key: None,
            reservation_hold_ms: 15 * 60_000,
            sweep_interval_ms: 1_000,
            gst: GstRates::default(),
            fx_rates: Vec::new(),
            address: AddressRules::default(),
            rate_limit: RateLimit::default(),
            payments: PaymentsConfig::default(),
            collector: CollectorConfig::default(),
            notify: NotifyConfig::default(),
        }
    }
}

impl CoreConfig {
    /// The pricing and reservation rules orders are placed under.
    pub fn order_rules(&self) -> OrderRules {
        OrderRules {
            reservation_hold_ms: self.reservation_hold_ms,
            gst: self.gst.clone(),
            fx_rates: self.fx_rates.clone(),
            pincodes: Arc::new(model::geo::Directory::load()),
            promises: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    pub retry: RetryPolicy,
    /// A breaker per provider: open after this many failures in a row, probe after the
    /// cool-down.
    pub breaker: BreakerPolicy,
    /// Simulated providers, in order of preference.
    pub simulated: Vec<SimulatedConfig>,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            breaker: BreakerPolicy::default(),
            simulated: vec![
                SimulatedConfig {
                    name: "upi-sim".to_owned(),
                    latency_ms: 20,
                    unavailable_rate: 0.05,
                    decline_rate: 0.03,
                    ..SimulatedConfig::default()
                },
                SimulatedConfig {
                    name: "card-sim".to_owned(),
                    latency_ms: 40,
                    ..SimulatedConfig::default()
                },
            ],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("outbox relay: {0}")]
    Relay(#[from] relay::RelayError),
    #[error("event bus: {0}")]
    Bus(#[from] bus::BusError),
    #[error("admin key file {path}: {source}")]
    AdminKey {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Notify(#[from] notify::NotifyError),
    #[error("{0} task panicked")]
    Panicked(&'static str),
    /// A part of the core stopped on its own before shutdown.
    #[error("the {0} stopped before shutdown")]
    Stopped(&'static str),
    /// The admin key from the configuration or the key file is unusable.
    #[error("{0}")]
    InvalidAdminKey(String),
}

/// The orders core as a stage: opens the store (creating the admin key on first start) and
/// returns its routes and its work: the outbox relay, the reservation sweeper and the
/// notifier. The work runs until `shutdown`; the relay stops last, so it drains every event
/// the other tasks committed. The front door stops taking requests before the supervisor
/// cancels `shutdown`, so nothing is written after the relay's last round. Orders record the
/// delivery promise `promises` makes them, when there is one.
pub async fn stage(
    config: CoreConfig,
    data_dir: PathBuf,
    promises: Option<Arc<dyn model::deliver::Deliverability>>,
    bus: Arc<Bus>,
    metrics: &Registry,
    shutdown: CancellationToken,
) -> Result<(Stage, Started), ServiceError> {
    let store = Store::open(&config.store, &data_dir).await?;
    let admin_key_file = admin_key(&store, &config, &data_dir).await?;
    // Stages in other processes authenticate from the api-keys topic; keys made before it
    // existed go out once.
    let published = auth::publish_unpublished(&store, now_ms()).await?;
    tracing::debug!(keys = published, "API keys queued for the api-keys topic");
    let providers: Vec<Arc<dyn PaymentProvider>> = config
        .payments
        .simulated
        .iter()
        .map(|c| Arc::new(SimulatedProvider::new(c.clone())) as Arc<dyn PaymentProvider>)
        .collect();
    let state = CoreState {
        store: store.clone(),
        rules: Arc::new(OrderRules {
            promises,
            ..config.order_rules()
        }),
        payments: Payments::with_breakers(
            providers,
            config.payments.retry,
            config.payments.breaker,
            Some(metrics),
        ),
        address: config.address,
        limiter: Arc::new(Limiter::new(config.rate_limit)),
        keys: Arc::new(auth::StoreKeys(store.clone())),
        clock: Arc::new(now_ms),
        collector: Some(Collector {
            producer: Arc::new(bus.producer()?),
            config: config.collector.clone(),
        }),
    };
    let notifiers = config.notify.notifiers(metrics)?;
    let relay_metrics = relay::RelayMetrics::new(metrics);
    let work = async move {
        // The sweeper and the notifier stop on a token of our own: `shutdown` is the
        // supervisor's, and a failing notifier must stop them without cancelling it.
        let stop = shutdown.child_token();
        let sweeper = tokio::spawn(sweep(store.clone(), config.sweep_interval_ms, stop.clone()));
        let mut notifier = (config.notify.enabled && !notifiers.is_empty()).then(|| {
            tokio::spawn(notify::run(
                config.notify.clone(),
                store.clone(),
                Arc::clone(&bus),
                notifiers,
                stop.clone(),
            ))
        });
        let relay_stop = CancellationToken::new();
        let mut relay = tokio::spawn({
            let (config, stop) = (config.relay.clone(), relay_stop.clone());
            async move { relay::run(config, store, &bus, relay_metrics, stop).await }
        });
        // The relay and the notifier end on their own only when they cannot go on; then
        // the core has failed, and says which part.
        let notifier_ended = async {
            match notifier.as_mut() {
                Some(task) => task.await,
                None => std::future::pending().await,
            }
        };
        let (relay_ended, notified) = tokio::select! {
            () = shutdown.cancelled() => (None, None),
            ended = &mut relay => (Some(ended), None),
            ended = notifier_ended => (None, Some(ended)),
        };
        stop.cancel();
        let _ = sweeper.await;
        let notified = match (notified, notifier) {
            (Some(ended), _) => ended
                .map_err(|_| ServiceError::Panicked("notifier"))?
                .map_err(ServiceError::from)
                .and(Err(ServiceError::Stopped("notifier"))),
            (None, Some(task)) => task
                .await
                .map_err(|_| ServiceError::Panicked("notifier"))?
                .map_err(ServiceError::from),
            (None, None) => Ok(()),
        };
        // Whatever ended the core, the relay drains what the others committed, last.
        relay_stop.cancel();
        let relayed = match relay_ended {
            Some(ended) => ended,
            None => relay.await,
        }
        .map_err(|_| ServiceError::Panicked("outbox relay"))?;
        relayed?;
        notified?;
        Ok::<(), ServiceError>(())
    };
    let readiness = Readiness::new();
    // The store is open: the core can take orders.
    readiness.set_ready();
    let stage = Stage {
        name: "core",
        routes: crate::http::router(state),
        api: crate::http::openapi::api(),
        readiness,
        work: work.map_err(|e| e.into()).boxed(),
    };
    Ok((stage, Started { admin_key_file }))
}

/// What a started core tells its caller.
#[derive(Debug, Clone)]
pub struct Started {
    pub admin_key_file: Option<PathBuf>,
}

async fn sweep(store: Store, interval_ms: u64, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_millis(interval_ms.max(10)));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match lifecycle::expire_reservations(&store, now_ms(), 500).await {
            Ok(expired) if !expired.is_empty() => {
                tracing::info!(count = expired.len(), "expired unpaid reservations");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "reservation sweep failed; next round retries"),
        }
    }
}

/// Installs the configured admin key, or the one in `<data_dir>/admin.key` (created on first
/// start); the admin key it replaces, configured or generated, stops working. Returns the
/// file when there is one.
async fn admin_key(
    store: &Store,
    config: &CoreConfig,
    data_dir: &std::path::Path,
) -> Result<Option<PathBuf>, ServiceError> {
    let now = now_ms();
    let usable = |key: &str| key.len() >= 8 && !key.chars().any(char::is_whitespace);
    if let Some(key) = &config.admin_key {
        if !usable(key) {
            return Err(ServiceError::InvalidAdminKey(
                "core.admin_key must be at least 8 characters without spaces (or unset it to have one generated)".into(),
            ));
        }
        auth::install_admin_key(store, key, Origin::Config, now).await?;
        return Ok(None);
    }
    let path = data_dir.join("admin.key");
    let io = |source| ServiceError::AdminKey {
        path: path.display().to_string(),
        source,
    };
    let key = match std::fs::read_to_string(&path) {
        Ok(key) => key.trim().to_owned(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = auth::create_key(store, Role::Admin, None, Origin::File, now).await?;
            write_private(&path, &key).map_err(io)?;
            key
        }
        Err(error) => return Err(io(error)),
    };
    if !usable(&key) {
        return Err(ServiceError::InvalidAdminKey(format!(
            "{} does not hold a usable key (empty after a crash?); delete it and a new key is generated",
            path.display()
        )));
    }
    auth::install_admin_key(store, &key, Origin::File, now).await?;
    Ok(Some(path))
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}
