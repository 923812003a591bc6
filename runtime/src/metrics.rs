//! One metrics registry per process, rendered on the front door's `/metrics` by
//! `prometheus-client` (OpenMetrics text). A series name is registered once, as a family; every
//! stage that reports it takes its own series from that family under its `job` label, so two
//! stages sharing the runtime never print one name twice.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus_client::encoding::{EncodeLabelSet, text};
pub use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Metric;

/// The content type of [`Registry::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (ms) of the window-emission-delay histogram's buckets.
const DELAY_BUCKETS_MS: [f64; 9] = [
    100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 30_000.0, 60_000.0,
];

/// The label every stage's series carries.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    pub job: String,
}

/// A consumer's series per input partition.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub job: String,
    pub topic: String,
    pub partition: i32,
}

/// A gauge holding a fraction (seconds, ratios).
pub type FloatGauge = Gauge<f64, AtomicU64>;

type Families = HashMap<&'static str, Box<dyn Any + Send>>;

/// The process's metric families. Cloning shares them.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<(prometheus_client::registry::Registry, Families)>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("families", &self.lock().1.len())
            .finish()
    }
}

impl Registry {
    /// The family registered under `name`, registering the one `make` builds the first time.
    ///
    /// # Panics
    /// When `name` was registered before as another kind of metric: two stages disagree on
    /// what a series is, which is a bug in one of them.
    pub fn family<F>(&self, name: &'static str, help: &'static str, make: impl FnOnce() -> F) -> F
    where
        F: Metric + Clone,
    {
        let mut guard = self.lock();
        let (registry, families) = &mut *guard;
        if let Some(known) = families.get(name) {
            return match known.downcast_ref::<F>() {
                Some(family) => family.clone(),
                None => panic!("metric {name} is registered twice as different kinds"),
            };
        }
        let family = make();
        registry.register(name, help, family.clone());
        families.insert(name, Box::new(family.clone()));
        family
    }

    /// `job`'s counter in the family `name` (rendered `<name>_total`).
    pub fn counter(&self, name: &'static str, help: &'static str, job: &str) -> Counter {
        self.family(name, help, Family::<JobLabel, Counter>::default)
            .get_or_create_owned(&job_label(job))
    }

    /// `job`'s gauge in the family `name`.
    pub fn gauge(&self, name: &'static str, help: &'static str, job: &str) -> Gauge {
        self.family(name, help, Family::<JobLabel, Gauge>::default)
            .get_or_create_owned(&job_label(job))
    }

    /// `job`'s fractional gauge in the family `name`.
    pub fn float_gauge(&self, name: &'static str, help: &'static str, job: &str) -> FloatGauge {
        self.family(name, help, Family::<JobLabel, FloatGauge>::default)
            .get_or_create_owned(&job_label(job))
    }

    /// Every family in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = text::encode(&mut out, &self.lock().0);
        out
    }

    fn lock(&self) -> MutexGuard<'_, (prometheus_client::registry::Registry, Families)> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn job_label(job: &str) -> JobLabel {
    JobLabel {
        job: job.to_owned(),
    }
}

fn delay_histogram() -> Histogram {
    Histogram::new(DELAY_BUCKETS_MS)
}

/// What a stream job reports, under its `job` label.
#[derive(Debug)]
pub struct Metrics {
    pub events_in: Counter,
    pub events_out: Counter,
    pub replayed_skipped: Counter,
    /// Records dropped because their event id was applied before (a re-publish).
    pub duplicates_dropped: Counter,
    /// Event ids remembered for duplicate removal, over the partitions this instance owns.
    pub dedup_remembered: Gauge,
    pub late_events: Counter,
    pub dead_letters: Counter,
    pub checkpoints: Counter,
    /// When the last checkpoint was written (UTC ms): its age is how much a crash replays.
    pub last_checkpoint_ms: Gauge,
    pub checkpoint_seconds: FloatGauge,
    pub checkpoint_bytes: Gauge,
    /// The job watermark (event time, UTC ms) over the partitions this instance owns.
    pub watermark_ms: Gauge,
    emission_delay_ms: Histogram,
    lag: Lag,
}

impl Metrics {
    /// `job`'s series, registered in `registry`.
    pub fn new(registry: &Registry, job: &str) -> Metrics {
        let counter = |name, help| registry.counter(name, help, job);
        let gauge = |name, help| registry.gauge(name, help, job);
        Metrics {
            events_in: counter("shopstream_events_in", "Records consumed and applied."),
            events_out: counter("shopstream_events_out", "Output records produced."),
            replayed_skipped: counter(
                "shopstream_replayed_skipped",
                "Redelivered records already covered by the restored checkpoint.",
            ),
            duplicates_dropped: counter(
                "shopstream_duplicates_dropped",
                "Records dropped because their event id was already applied (re-published).",
            ),
            dedup_remembered: gauge(
                "shopstream_dedup_remembered_ids",
                "Event ids remembered for duplicate removal over the owned partitions.",
            ),
            late_events: counter(
                "shopstream_late_events",
                "Events later than the allowed lateness, sent to the DLQ.",
            ),
            dead_letters: counter(
                "shopstream_dead_letters",
                "Records sent to the DLQ for any reason.",
            ),
            checkpoints: counter("shopstream_checkpoints", "Checkpoints written."),
            last_checkpoint_ms: gauge(
                "shopstream_checkpoint_last_ms",
                "When the last checkpoint was written (UTC ms).",
            ),
            checkpoint_seconds: registry.float_gauge(
                "shopstream_checkpoint_duration_seconds",
                "Time the last checkpoint took to write its files.",
                job,
            ),
            checkpoint_bytes: gauge(
                "shopstream_checkpoint_size_bytes",
                "Bytes written by the last checkpoint.",
            ),
            watermark_ms: gauge(
                "shopstream_watermark_ms",
                "Job watermark: the slowest active partition's newest event time minus the out-of-orderness bound (UTC ms).",
            ),
            emission_delay_ms: registry
                .family(
                    "shopstream_window_emission_delay_ms",
                    "Processing time from a window's end (event time) to its emission.",
                    || {
                        Family::<JobLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                            delay_histogram,
                        )
                    },
                )
                .get_or_create_owned(&job_label(job)),
            lag: Lag::new(registry, job),
        }
    }

    /// A window (or pane) was emitted `delay_ms` of processing time after its end.
    pub fn observe_emission_delay(&self, delay_ms: i64) {
        self.emission_delay_ms.observe(delay_ms.max(0) as f64);
    }

    /// Replaces this job's consumer-lag gauges: `(topic, partition, records behind)`.
    /// Counts a checkpoint written now.
    pub fn checkpointed(&self) {
        self.checkpoints.inc();
        self.last_checkpoint_ms.set(crate::now_ms());
    }

    pub fn set_lag(&self, lag: Vec<(String, i32, i64)>) {
        self.lag.set(lag);
    }
}

/// A consumer's lag per owned partition, under its `job` label: the partitions it no longer
/// owns disappear at the next report.
#[derive(Debug, Default)]
pub struct Lag {
    job: String,
    family: Family<PartitionLabels, Gauge>,
    reported: Mutex<Vec<PartitionLabels>>,
}

impl Lag {
    pub fn new(registry: &Registry, job: &str) -> Lag {
        Lag {
            job: job.to_owned(),
            family: registry.family(
                "shopstream_consumer_lag_records",
                "Records between the read position and the log end.",
                Family::<PartitionLabels, Gauge>::default,
            ),
            reported: Mutex::new(Vec::new()),
        }
    }

    /// Replaces the gauges: `(topic, partition, records behind)`.
    pub fn set(&self, lag: Vec<(String, i32, i64)>) {
        let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        for gone in reported.drain(..) {
            self.family.remove(&gone);
        }
        for (topic, partition, behind) in lag {
            let labels = PartitionLabels {
                job: self.job.clone(),
                topic,
                partition,
            };
            self.family.get_or_create(&labels).set(behind);
            reported.push(labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_job_under_one_family_with_lag_per_partition() {
        let registry = Registry::default();
        let trending = Metrics::new(&registry, "trending");
        let search = Metrics::new(&registry, "search");
        trending.events_in.inc_by(3);
        search.events_in.inc();
        trending.observe_emission_delay(300);
        trending.set_lag(vec![("clicks".into(), 1, 42), ("clicks".into(), 2, 7)]);
        trending.set_lag(vec![("clicks".into(), 1, 40)]);
        let text = registry.render();
        assert_eq!(
            text.matches("# TYPE shopstream_events_in counter").count(),
            1,
            "{text}"
        );
        assert!(text.contains("shopstream_events_in_total{job=\"trending\"} 3"));
        assert!(text.contains("shopstream_events_in_total{job=\"search\"} 1"));
        assert!(text.contains(
            "shopstream_window_emission_delay_ms_bucket{le=\"250.0\",job=\"trending\"} 0"
        ));
        assert!(text.contains(
            "shopstream_window_emission_delay_ms_bucket{le=\"500.0\",job=\"trending\"} 1"
        ));
        assert!(text.contains(
            "shopstream_consumer_lag_records{job=\"trending\",topic=\"clicks\",partition=\"1\"} 40"
        ));
        assert!(!text.contains("partition=\"2\""), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn one_name_cannot_be_two_kinds() {
        let registry = Registry::default();
        registry.counter("shopstream_things", "Things.", "a");
        registry.gauge("shopstream_things", "Things.", "a");
    }
}
