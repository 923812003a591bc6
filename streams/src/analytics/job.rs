//! The Kafka edge of live analytics: a consumer-group member over the catalog, orders,
//! payments, clicks and searches topics that folds every record into the live state and
//! checkpoints it with the offsets it covers.
//!
//! As with serviceability, the state is one piece (a merchant's orders and clicks arrive on
//! every partition), checkpointed as one file with each partition's next offset; records
//! below it are skipped, so a redelivery after a crash is not counted twice. Each instance
//! keeps its own group and checkpoint and reads every partition.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bus::{Bus, InRecord, NoHook, OutRecord, Producer, TopicPartition};
use futures::FutureExt as _;
use model::dlq::Reason;
use model::{Envelope, Topic, codec};
use runtime::checkpoint::Checkpoints;
use runtime::driver::{self, Applied, Offsets, Position, Settings};
use runtime::http::auth::RateLimit;
use runtime::metrics::{Gauge, Metrics, Registry};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::live::{Live, LiveConfig};
use super::stock::StockConfig;
use crate::StreamError;

/// Merchant analytics settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    pub group_id: String,
    /// Where the live state and offsets are checkpointed; the binary puts it under
    /// `data_dir`.
    pub checkpoint_dir: Option<PathBuf>,
    pub checkpoint_interval_ms: u64,
    /// Ready (`/readyz`) once every partition is at most this many records behind.
    pub ready_max_lag: i64,
    /// Longest list in an answer (top products, top queries).
    pub max_limit: usize,
    /// Requests per key on the analytics routes.
    pub rate_limit: RateLimit,
    pub live: LiveConfig,
    pub stock: StockConfig,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            group_id: "analytics".into(),
            checkpoint_dir: None,
            checkpoint_interval_ms: 2_000,
            ready_max_lag: 10_000,
            max_limit: 100,
            rate_limit: RateLimit::default(),
            live: LiveConfig::default(),
            stock: StockConfig::default(),
        }
    }
}

impl AnalyticsConfig {
    pub fn validate(&self) -> Result<(), StreamError> {
        let fail = |message: &str| Err(StreamError::Config(message.to_owned()));
        if self.live.window_hours == 0 {
            return fail("analytics.live.window_hours must be at least 1");
        }
        if self.live.queries_per_day == 0 {
            return fail("analytics.live.queries_per_day must be at least 1");
        }
        if self.max_limit == 0 {
            return fail("analytics.max_limit must be at least 1");
        }
        if self.live.shipment_days == 0 || self.live.max_shipments == 0 {
            return fail("analytics.live.shipment_days and max_shipments must be at least 1");
        }
        if !(1..=366).contains(&self.stock.velocity_days) {
            return fail("analytics.stock.velocity_days must be 1 to 366");
        }
        if self.stock.alerts_kept == 0 || self.stock.max_products == 0 {
            return fail("analytics.stock.alerts_kept and max_products must be at least 1");
        }
        Ok(())
    }
}

/// The topics the job reads.
pub const TOPICS: [Topic; 8] = [
    Topic::Catalog,
    Topic::Inventory,
    Topic::Logistics,
    Topic::Orders,
    Topic::Payments,
    Topic::Clicks,
    Topic::Searches,
    Topic::Shipments,
];

const CHECKPOINT: &str = "analytics";

#[derive(Debug)]
struct Gauges {
    minutes: Gauge,
    days: Gauge,
    too_old: Gauge,
    unattributed: Gauge,
    shipments: Gauge,
    shipments_unwatched: Gauge,
    stock_watched: Gauge,
    stock_unwatched: Gauge,
    alerts_unpublished: Gauge,
}

pub(super) struct Job {
    pub(super) live: Arc<RwLock<Live>>,
    checkpoints: Checkpoints,
    pub(super) config: AnalyticsConfig,
    metrics: Arc<Metrics>,
    gauges: Gauges,
    pub(super) readiness: runtime::Readiness,
    /// Publishes the low-stock alerts.
    producer: Producer,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("group", &self.config.group_id)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// The job, its state restored from the last checkpoint.
    pub(super) fn open(
        config: AnalyticsConfig,
        registry: &Registry,
        metrics: Arc<Metrics>,
        producer: Producer,
    ) -> Result<Self, StreamError> {
        config.validate()?;
        let Some(dir) = config.checkpoint_dir.clone() else {
            return Err(StreamError::Config(
                "analytics.checkpoint_dir must be set: without it a restart would count every order again (the binary puts it under data_dir)".into(),
            ));
        };
        let checkpoints = Checkpoints::open(dir)?;
        let live = checkpoints.load::<Live>(CHECKPOINT)?.unwrap_or_default();
        let job = "analytics";
        let gauges = Gauges {
            minutes: registry.gauge(
                "shopstream_analytics_minutes",
                "Per-merchant minute buckets held live",
                job,
            ),
            days: registry.gauge(
                "shopstream_analytics_days",
                "Per-merchant days of product and query counts held live",
                job,
            ),
            too_old: registry.gauge(
                "shopstream_analytics_events_too_old",
                "Events older than the live window when they arrived (history, not live)",
                job,
            ),
            unattributed: registry.gauge(
                "shopstream_analytics_events_unattributed",
                "Clicks on products no catalog event named, on a marketplace storefront",
                job,
            ),
            shipments: registry.gauge(
                "shopstream_analytics_shipments",
                "Shipments remembered waiting for their delivery",
                job,
            ),
            shipments_unwatched: registry.gauge(
                "shopstream_analytics_shipments_unwatched",
                "Shipments not remembered because analytics.live.max_shipments were held",
                job,
            ),
            stock_watched: registry.gauge(
                "shopstream_analytics_stock_products",
                "Products whose days of cover the low-stock watch keeps",
                job,
            ),
            stock_unwatched: registry.gauge(
                "shopstream_analytics_stock_unwatched",
                "Inventory events of products not watched because analytics.stock.max_products were",
                job,
            ),
            alerts_unpublished: registry.gauge(
                "shopstream_analytics_alerts_unpublished",
                "Low-stock alerts raised and not yet acknowledged by the broker",
                job,
            ),
        };
        Ok(Self {
            live: Arc::new(RwLock::new(live)),
            checkpoints,
            config,
            metrics,
            gauges,
            readiness: runtime::Readiness::new(),
            producer,
        })
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Live> {
        self.live.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Live> {
        self.live.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A catalog or logistics record read ahead of the consumer; applying it again in its
    /// turn changes nothing (an upsert sets the product's shop and title, or the warehouse's
    /// lead time).
    fn apply_ahead(&self, record: &InRecord) {
        if let Ok(envelope) = codec::decode(record.payload.as_deref().unwrap_or_default()) {
            fold(&mut self.write(), &envelope, &self.config);
        }
    }

    /// Publishes the alerts raised since the last checkpoint and forgets those acknowledged.
    /// Each carries its own id, so one published again after a crash is dropped by readers
    /// as a repeat. A failure leaves them for the next checkpoint, which keeps them.
    fn publish_alerts(&self) {
        let alerts = self.read().stock.unpublished().to_vec();
        if alerts.is_empty() {
            return;
        }
        let mut acknowledged = Vec::with_capacity(alerts.len());
        for alert in &alerts {
            let envelope = alert.envelope();
            let payload = codec::encode(&envelope);
            let record = OutRecord {
                topic: Topic::Inventory,
                key: envelope.key().as_bytes(),
                payload: &payload,
                headers: &[],
            };
            match self.producer.enqueue(record) {
                Ok(delivery) => acknowledged.push(delivery),
                Err(error) => {
                    tracing::warn!(%error, "a low-stock alert could not be queued; trying again at the next checkpoint");
                    break;
                }
            }
        }
        if let Err(error) = self.producer.flush(Duration::from_secs(30)) {
            tracing::warn!(%error, "low-stock alerts not acknowledged; trying again at the next checkpoint");
        }
        // In order: the first one not acknowledged and all after it stay for the next round.
        let mut published = 0;
        for delivery in acknowledged {
            if !matches!(delivery.now_or_never(), Some(Ok(_))) {
                break;
            }
            published += 1;
        }
        self.write().stock.published(published);
        self.metrics.events_out.inc_by(published as u64);
    }
}

impl driver::WholeState for Job {
    type Error = StreamError;

    fn apply(&self, record: &InRecord) -> Applied {
        let position = driver::position_key(&record.topic_name, record.partition);
        let mut live = self.write();
        if !live.take(&position, record.offset) {
            self.metrics.replayed_skipped.inc();
            return Applied::Done;
        }
        match codec::decode(record.payload.as_deref().unwrap_or_default()) {
            Ok(envelope) => {
                fold(&mut live, &envelope, &self.config);
                self.metrics.events_in.inc();
                Applied::Done
            }
            Err(error) => Applied::DeadLetter(Reason::from(&error)),
        }
    }

    fn save(&self) -> Result<Vec<Position>, StreamError> {
        let started = Instant::now();
        self.publish_alerts();
        // A copy, so the consumer waits for the copy, not for the encoding and the fsync.
        let live = self.read().clone();
        let bytes = self.checkpoints.save(CHECKPOINT, &live)?;
        let (minutes, days) = live.sizes();
        let set = |gauge: &Gauge, n: u64| gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
        set(&self.gauges.minutes, minutes as u64);
        set(&self.gauges.days, days as u64);
        set(&self.gauges.too_old, live.too_old);
        set(&self.gauges.unattributed, live.unattributed);
        set(&self.gauges.shipments, live.shipments_held() as u64);
        set(&self.gauges.shipments_unwatched, live.shipments_unwatched);
        set(&self.gauges.stock_watched, live.stock.watched() as u64);
        set(&self.gauges.stock_unwatched, live.stock.unwatched);
        set(
            &self.gauges.alerts_unpublished,
            live.stock.unpublished().len() as u64,
        );
        self.metrics.checkpointed();
        self.metrics
            .checkpoint_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.metrics
            .checkpoint_seconds
            .set(started.elapsed().as_secs_f64());
        Ok(driver::positions_of(&live.positions))
    }

    fn set_lag(&self, ends: &[(TopicPartition, i64)]) {
        let live = self.read();
        driver::report_lag(
            ends,
            |key| live.positions.get(key).copied(),
            self.config.ready_max_lag,
            "analytics.ready_max_lag",
            &self.readiness,
            &self.metrics,
        );
    }
}

/// Folds one envelope into the state: inventory and logistics into the low-stock watch,
/// everything else into the live buckets. What the job does with every record it reads.
pub fn fold(live: &mut Live, envelope: &Envelope, config: &AnalyticsConfig) {
    match envelope.topic() {
        Topic::Inventory | Topic::Logistics => live.stock.apply(envelope, &config.stock),
        _ => live.apply(envelope, &config.live),
    }
}

/// Reads the catalog ahead, then runs the job on the driver until `shutdown`,
/// checkpointing every `checkpoint_interval_ms` and once more on the way out.
pub(super) async fn consume(
    job: Arc<Job>,
    bus: &Bus,
    shutdown: &CancellationToken,
) -> Result<(), StreamError> {
    // The catalog names the products' shops; the logistics topic the warehouses' lead times,
    // which a backlog of inventory events must not be judged without.
    for topic in [Topic::Catalog, Topic::Logistics] {
        driver::read_ahead(bus, topic, shutdown, |record| job.apply_ahead(record)).await?;
    }
    let settings = Settings {
        group: job.config.group_id.clone(),
        topics: TOPICS.to_vec(),
        hook: Arc::new(NoHook),
        stage: "analytics".to_owned(),
        flush_every: Duration::from_millis(job.config.checkpoint_interval_ms.max(50)),
        tick_every: None,
        dead_letters: Some(job.metrics.dead_letters.clone()),
    };
    driver::run(
        bus,
        settings,
        Offsets::FromFlush,
        &mut driver::OnCpu(job),
        shutdown,
    )
    .await
}
