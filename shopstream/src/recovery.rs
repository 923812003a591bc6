//! Before any stage or producer starts: make sure the stages' durable positions belong to the
//! log they are about to read. After the embedded broker ran without its final save, no
//! position may be past the log the broker came back with (such a stage would skip the new
//! records that reuse the lost offsets, silently); and the cluster must be the one the data
//! dir's positions were taken on. Otherwise the run stops and says what happened and how to
//! go on.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bus::{Bus, LogEnds};
use model::Table;

use crate::config::Config;

/// A stage whose position is past where the log now ends.
#[derive(Debug)]
struct Ahead {
    stage: &'static str,
    state: PathBuf,
    topic: String,
    partition: i32,
    position: i64,
    end: i64,
}

/// Fails, naming every stage that is ahead of the log, when the broker lost records those
/// stages already hold.
pub async fn check_positions(config: &Config, bus: &Bus, ends: &LogEnds) -> Result<()> {
    let end_of = |topic: &str, partition: i32| {
        ends.get(&(topic.to_owned(), partition))
            .copied()
            .unwrap_or(0)
    };
    let mut ahead = Vec::new();
    if let Some(dir) = &config.trending.checkpoint_dir {
        let positions = streams::trending::checkpointed_positions(dir)
            .with_context(|| format!("reading the trending checkpoints in {}", dir.display()))?;
        for (topic, partition, position) in positions {
            let topic = bus.topic_name(topic);
            let end = end_of(&topic, partition);
            if position > end {
                ahead.push(Ahead {
                    stage: "trending job",
                    state: dir.clone(),
                    topic,
                    partition,
                    position,
                    end,
                });
            }
        }
    }
    if let Some(dir) = &config.serviceability.checkpoint_dir {
        let positions =
            streams::serviceability::checkpointed_positions(dir).with_context(|| {
                format!("reading the serviceability checkpoint in {}", dir.display())
            })?;
        for (topic, partition, position) in positions {
            let end = end_of(&topic, partition);
            if position > end {
                ahead.push(Ahead {
                    stage: "serviceability job",
                    state: dir.clone(),
                    topic,
                    partition,
                    position,
                    end,
                });
            }
        }
    }
    if let (Some(dir), Ok(storage)) = (&config.lakehouse.dir, config.lakehouse.storage()) {
        for table in Table::ALL {
            let snapshot = lakehouse::manifest::Manifest::new(storage.clone(), table)
                .snapshot()
                .await
                .with_context(|| format!("reading the {table} manifest"))?;
            for ((topic, partition), position) in snapshot.positions {
                let end = end_of(&topic, partition);
                if position > end {
                    ahead.push(Ahead {
                        stage: "lakehouse sink",
                        state: dir.clone(),
                        topic,
                        partition,
                        position,
                        end,
                    });
                }
            }
        }
    }
    if ahead.is_empty() {
        return Ok(());
    }
    // Tables fed by one topic share its positions: one line per stage and partition.
    ahead.sort_by(|a, b| {
        (a.stage, &a.topic, a.partition, b.position).cmp(&(
            b.stage,
            &b.topic,
            b.partition,
            a.position,
        ))
    });
    ahead.dedup_by(|later, first| {
        (later.stage, &later.topic, later.partition) == (first.stage, &first.topic, first.partition)
    });
    let lost: i64 = ahead.iter().map(|a| a.position - a.end).sum();
    let lines: Vec<String> = ahead
        .iter()
        .map(|a| {
            format!(
                "  {} ({}): {} partition {} holds everything before offset {}, but the log now ends at {}",
                a.stage,
                a.state.display(),
                a.topic,
                a.partition,
                a.position,
                a.end
            )
        })
        .collect();
    let mut states: Vec<String> = ahead
        .iter()
        .map(|a| a.state.display().to_string())
        .collect();
    states.sort();
    states.dedup();
    bail!(
        "the embedded broker's last run ended without its final save (it was killed, or the \
         machine stopped), and it lost records it had acknowledged: at least {lost} that stages \
         already hold.\n{}\nThe broker would give those offsets to new records, which these stages \
         would skip as already seen, so nothing was started and nothing has been skipped. To go \
         on, start from an empty data dir, or move aside {} so the stage rebuilds from what the \
         broker still holds (the records only it had are then gone from it too). The embedded \
         broker loses up to bus.embedded_autosave_ms of acknowledged records on a hard kill; a \
         replicated Kafka-API cluster (bus.bootstrap_servers) does not.",
        lines.join("\n"),
        states.join(" and ")
    )
}

/// Copies the embedded broker's save figures into `/metrics` every second until `shutdown`.
pub fn export_broker_stats(
    stats: Arc<bus::BrokerStats>,
    registry: &runtime::metrics::Registry,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let saves = registry.gauge(
        "shopstream_broker_snapshot_saves",
        "Snapshots the embedded broker saved since start",
        "broker",
    );
    let failures = registry.gauge(
        "shopstream_broker_snapshot_save_failures",
        "Snapshot saves of the embedded broker that failed since start (each is logged as an error)",
        "broker",
    );
    let bytes = registry.gauge(
        "shopstream_broker_snapshot_bytes",
        "Size of the embedded broker's last saved snapshot",
        "broker",
    );
    let seconds = registry.float_gauge(
        "shopstream_broker_snapshot_save_seconds",
        "How long the embedded broker's last save took (serialise, write, fsync, rename)",
        "broker",
    );
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            saves.set(stats.saves.load(Relaxed) as i64);
            failures.set(stats.save_failures.load(Relaxed) as i64);
            bytes.set(stats.snapshot_bytes.load(Relaxed) as i64);
            seconds.set(stats.save_micros.load(Relaxed) as f64 / 1e6);
        }
    });
}

/// The file in the data dir naming the Kafka cluster whose offsets the stages there hold.
pub const CLUSTER_FILE: &str = "kafka-cluster-id";

/// Fails when the data dir's stages hold offsets of another Kafka cluster than the one `bus`
/// reaches (a cluster re-created empty, or the embedded broker swapped for an external one):
/// on this log those offsets would skip or repeat records. The first start with a data dir
/// records the cluster's id.
pub async fn check_cluster(config: &Config, bus: &Bus) -> Result<()> {
    let Some(dir) = &config.data_dir else {
        return Ok(());
    };
    let Some(id) = bus.cluster_id().await? else {
        tracing::warn!(
            "the Kafka cluster reports no cluster id: a switch to another cluster under this data dir cannot be noticed"
        );
        return Ok(());
    };
    let file = dir.join(CLUSTER_FILE);
    let recorded = match std::fs::read_to_string(&file) {
        Ok(recorded) => recorded.trim().to_owned(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&file, format!("{id}\n"))
                .with_context(|| format!("recording the cluster id in {}", file.display()))?;
            return Ok(());
        }
        Err(error) => {
            return Err(error).with_context(|| format!("reading {}", file.display()));
        }
    };
    if recorded == id {
        return Ok(());
    }
    let states: Vec<String> = [
        config.trending.checkpoint_dir.as_ref(),
        config.serviceability.checkpoint_dir.as_ref(),
        config.lakehouse.dir.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|path| path.display().to_string())
    .collect();
    bail!(
        "the data dir {} holds stage positions in Kafka cluster {recorded} (recorded in {}), but \
         {} is cluster {id}. Those positions are offsets of the other cluster's log: here they \
         would skip or repeat records, so nothing was started. To go on, point \
         bus.bootstrap_servers back at cluster {recorded}; or start from an empty data dir; or \
         move aside {} and delete {} so the stages rebuild from this cluster.",
        dir.display(),
        file.display(),
        bus.bootstrap_servers(),
        states.join(" and "),
        file.display()
    )
}
