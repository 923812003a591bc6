//! A job's metrics in the Prometheus text format: counters and gauges kept in atomics by the
//! job's loop and rendered on `GET /metrics`. No registry crate: the set is small and fixed.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upper bounds (ms) of the window-emission-delay histogram's buckets.
const DELAY_BUCKETS_MS: [u64; 9] = [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000];

/// What a stream job counts.
#[derive(Debug, Default)]
pub struct Metrics {
    pub events_in: AtomicU64,
    pub events_out: AtomicU64,
    pub replayed_skipped: AtomicU64,
    /// Records dropped because their event id was applied before (a re-publish).
    pub duplicates_dropped: AtomicU64,
    /// Event ids remembered for duplicate removal, over the partitions this instance owns.
    pub dedup_remembered: AtomicU64,
    pub late_events: AtomicU64,
    pub dead_letters: AtomicU64,
    pub checkpoints: AtomicU64,
    pub checkpoint_last_micros: AtomicU64,
    pub checkpoint_last_bytes: AtomicU64,
    /// The job watermark (event time, UTC ms) over the partitions this instance owns.
    pub watermark_ms: AtomicI64,
    delay_buckets: [AtomicU64; DELAY_BUCKETS_MS.len()],
    delay_count: AtomicU64,
    delay_sum_ms: AtomicU64,
    lag: Mutex<Vec<(String, i32, i64)>>,
}

impl Metrics {
    /// A window (or pane) was emitted `delay_ms` of processing time after its end.
    pub fn observe_emission_delay(&self, delay_ms: i64) {
        let delay = u64::try_from(delay_ms).unwrap_or(0);
        for (bound, bucket) in DELAY_BUCKETS_MS.iter().zip(&self.delay_buckets) {
            if delay <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.delay_count.fetch_add(1, Ordering::Relaxed);
        self.delay_sum_ms.fetch_add(delay, Ordering::Relaxed);
    }

    /// Replaces the consumer-lag gauges: `(topic, partition, records behind)`.
    pub fn set_lag(&self, lag: Vec<(String, i32, i64)>) {
        *self
            .lag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = lag;
    }

    /// The Prometheus text exposition, every series labelled with `job`.
    pub fn render(&self, job: &str) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(
                out,
                "{name}{{job=\"{job}\"}} {}",
                value.load(Ordering::Relaxed)
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            let _ = writeln!(out, "{name}{{job=\"{job}\"}} {value}");
        };
        counter(
            &mut out,
            "shopstream_events_in_total",
            "Records consumed and applied.",
            &self.events_in,
        );
        counter(
            &mut out,
            "shopstream_events_out_total",
            "Output records produced.",
            &self.events_out,
        );
        counter(
            &mut out,
            "shopstream_replayed_skipped_total",
            "Redelivered records already covered by the restored checkpoint.",
            &self.replayed_skipped,
        );
        counter(
            &mut out,
            "shopstream_duplicates_dropped_total",
            "Records dropped because their event id was already applied (re-published).",
            &self.duplicates_dropped,
        );
        gauge(
            &mut out,
            "shopstream_dedup_remembered_ids",
            "Event ids remembered for duplicate removal over the owned partitions.",
            self.dedup_remembered.load(Ordering::Relaxed).to_string(),
        );
        counter(
            &mut out,
            "shopstream_late_events_total",
            "Events later than the allowed lateness, sent to the DLQ.",
            &self.late_events,
        );
        counter(
            &mut out,
            "shopstream_dead_letters_total",
            "Records sent to the DLQ for any reason.",
            &self.dead_letters,
        );
        counter(
            &mut out,
            "shopstream_checkpoints_total",
            "Checkpoints written.",
            &self.checkpoints,
        );
        gauge(
            &mut out,
            "shopstream_checkpoint_duration_seconds",
            "Time the last checkpoint took to write its files.",
            format!(
                "{:.6}",
                self.checkpoint_last_micros.load(Ordering::Relaxed) as f64 / 1e6
            ),
        );
        gauge(
            &mut out,
            "shopstream_checkpoint_size_bytes",
            "Bytes written by the last checkpoint.",
            self.checkpoint_last_bytes
                .load(Ordering::Relaxed)
                .to_string(),
        );
        gauge(
            &mut out,
            "shopstream_watermark_ms",
            "Job watermark: the slowest active partition's newest event time minus the out-of-orderness bound (UTC ms).",
            self.watermark_ms.load(Ordering::Relaxed).to_string(),
        );
        let name = "shopstream_window_emission_delay_ms";
        let _ = writeln!(
            out,
            "# HELP {name} Processing time from a window's end (event time) to its emission.\n# TYPE {name} histogram"
        );
        for (bound, bucket) in DELAY_BUCKETS_MS.iter().zip(&self.delay_buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{job=\"{job}\",le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.delay_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{job=\"{job}\",le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{job=\"{job}\"}} {}",
            self.delay_sum_ms.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "{name}_count{{job=\"{job}\"}} {count}");
        let name = "shopstream_consumer_lag_records";
        let _ = writeln!(
            out,
            "# HELP {name} Records between the read position and the log end.\n# TYPE {name} gauge"
        );
        for (topic, partition, lag) in self
            .lag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "{name}{{job=\"{job}\",topic=\"{topic}\",partition=\"{partition}\"}} {lag}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_lag_per_partition() {
        let metrics = Metrics::default();
        metrics.events_in.fetch_add(3, Ordering::Relaxed);
        metrics.observe_emission_delay(300);
        metrics.set_lag(vec![("clicks".into(), 1, 42)]);
        let text = metrics.render("trending");
        assert!(text.contains("shopstream_events_in_total{job=\"trending\"} 3"));
        assert!(
            text.contains(
                "shopstream_window_emission_delay_ms_bucket{job=\"trending\",le=\"250\"} 0"
            )
        );
        assert!(
            text.contains(
                "shopstream_window_emission_delay_ms_bucket{job=\"trending\",le=\"500\"} 1"
            )
        );
        assert!(text.contains(
            "shopstream_consumer_lag_records{job=\"trending\",topic=\"clicks\",partition=\"1\"} 42"
        ));
    }
}
