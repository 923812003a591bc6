//! The sink: a consumer-group member that turns the topics into the lakehouse tables, each
//! record exactly once.
//!
//! It keeps the streaming runtime's discipline (see `runtime::checkpoint`): state
//! first, Kafka offsets after and only as a hint, replays below the durable position skipped.
//! Here the durable state is each table's manifest, so there is no separate checkpoint file:
//! - records are buffered per input partition, table and `event_date`;
//! - every `commit_interval_ms` (or once `max_buffered_rows` are buffered, or on shutdown) each
//!   table's rows are written as one file per day and one manifest entry records the files and,
//!   per partition, the offsets `[from, to)` they cover (see [`crate::manifest`]);
//! - only then are offsets stored and committed to Kafka, at the lowest position of the
//!   partition's tables (a crash between two tables' commits leaves one table ahead; it skips
//!   what it already has);
//! - the first record of a partition after an assignment re-reads the manifests, so a member
//!   taking over starts from what the previous owner committed, wherever Kafka's offset is;
//! - on revocation the partition's uncommitted rows are dropped: no offset past the manifest
//!   was ever stored, so the next owner reads them again;
//! - a re-published event (same `event_id`, same partition, within `dedup_horizon` offsets;
//!   see `runtime::dedup`) becomes no row. The set of recent ids is not committed: a member
//!   taking a partition over reads the `dedup_horizon` records before the lowest of the
//!   partition's table positions again, which rebuilds exactly the set an uninterrupted run
//!   would hold there.
//!
//! A member that lost its partitions without noticing (a long pause) would commit records the
//! new owner also commits; the manifest refuses that entry ([`LakeError::Fenced`]) and the sink
//! stops rather than write a duplicate.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bus::{Bus, InRecord, RebalanceHook, TopicPartition};
use model::dlq::Reason;
use model::{Table, Topic, codec};
use runtime::Readiness;
use runtime::dedup::Dedup;
use runtime::driver::{self, Applied, Offsets, Position, Settings};
use runtime::metrics::{Counter, Lag, Registry};
use tokio_util::sync::CancellationToken;

use crate::manifest::OffsetRange;
use crate::rows::{Rows, event_day};
use crate::writer::{Pending, Writer};
use crate::{LakeConfig, LakeError};

/// The topics the sink reads: every topic a table is made from.
pub fn source_topics() -> Vec<Topic> {
    let mut topics: Vec<Topic> = Table::ALL.iter().map(|table| table.source()).collect();
    topics.dedup();
    topics
}

/// Running totals, on `/metrics` under `job="lakehouse"` when registered; tests and benchmarks
/// read them too.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub records: Counter,
    pub rows_committed: Counter,
    pub files_committed: Counter,
    pub commits: Counter,
    pub replays_skipped: Counter,
    pub duplicates_dropped: Counter,
    pub dead_letters: Counter,
    /// Records between each owned partition's read position and its log end.
    pub lag: Lag,
}

impl SinkStats {
    /// The sink's series, registered in `registry`.
    pub fn registered(registry: &Registry) -> SinkStats {
        let counter = |name, help| registry.counter(name, help, "lakehouse");
        SinkStats {
            records: counter("shopstream_lake_records", "Records consumed."),
            rows_committed: counter(
                "shopstream_lake_rows_committed",
                "Rows committed to the tables.",
            ),
            files_committed: counter("shopstream_lake_files_committed", "Data files committed."),
            commits: counter(
                "shopstream_lake_commits",
                "Commits (one manifest entry per table).",
            ),
            replays_skipped: counter(
                "shopstream_lake_replays_skipped",
                "Redelivered records the tables already hold.",
            ),
            duplicates_dropped: counter(
                "shopstream_lake_duplicates_dropped",
                "Re-published records (an event id already written) dropped.",
            ),
            dead_letters: counter("shopstream_lake_dead_letters", "Records sent to the DLQ."),
            lag: Lag::new(registry, "lakehouse"),
        }
    }
}

/// Where one table stands for one input partition.
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    /// The table's position in the manifest: records below it are in the table already.
    committed: Option<i64>,
    /// First offset buffered since the last commit.
    from: Option<i64>,
    /// One past the last offset buffered.
    upto: i64,
}

#[derive(Debug)]
struct PartitionState {
    cursors: BTreeMap<Table, Cursor>,
    /// Buffered rows per table and event day.
    rows: BTreeMap<(Table, i32), Rows>,
    buffered: usize,
    /// Event ids first seen within the horizon.
    dedup: Dedup,
}

/// What the loop and the rebalance hook share.
#[derive(Debug, Default)]
struct Owned {
    partitions: Mutex<HashMap<TopicPartition, PartitionState>>,
}

impl Owned {
    fn lock(&self) -> MutexGuard<'_, HashMap<TopicPartition, PartitionState>> {
        self.partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl RebalanceHook for Owned {
    fn revoking(&self, partitions: &[TopicPartition]) {
        let mut owned = self.lock();
        for partition in partitions {
            if let Some(state) = owned.remove(partition) {
                tracing::info!(
                    topic = partition.topic,
                    partition = partition.partition,
                    dropped_rows = state.buffered,
                    "partition revoked; its uncommitted rows are left to the next owner"
                );
            }
        }
    }
}

struct Sink<'a> {
    config: LakeConfig,
    writer: Writer,
    owned: Arc<Owned>,
    stats: Arc<SinkStats>,
    /// Where a taken-over partition's recent records are read again.
    bus: &'a Bus,
    readiness: Readiness,
}

/// Runs the sink until `shutdown`, then commits what it holds and leaves the group.
pub async fn run(
    config: LakeConfig,
    bus: &Bus,
    stats: Arc<SinkStats>,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), LakeError> {
    config.validate()?;
    let storage = config.storage()?;
    let writer = Writer::open(storage.clone(), config.encoding(), config.orphan_grace_ms)
        .await?
        .checkpoint_every(config.checkpoint_every);
    for table in Table::ALL {
        let deleted = crate::maintain::vacuum(&storage, table, config.orphan_grace_ms).await?;
        if deleted > 0 {
            tracing::info!(%table, count = deleted, "deleted files no commit names");
        }
        // A build whose schema cannot follow the table's refuses to start, before it reads
        // a record.
        crate::evolution::check(
            table,
            writer.snapshot(table).and_then(|s| s.schema.as_deref()),
            &crate::evolution::columns(&model::schema::for_table(table)),
        )?;
    }
    let owned = Arc::new(Owned::default());
    let settings = Settings {
        group: config.group_id.clone(),
        topics: source_topics(),
        hook: Arc::clone(&owned) as Arc<dyn RebalanceHook>,
        stage: config.group_id.clone(),
        flush_every: Duration::from_millis(config.commit_interval_ms),
        tick_every: None,
        dead_letters: Some(stats.dead_letters.clone()),
    };
    readiness.set_not_ready("no partition assigned yet");
    let mut sink = Sink {
        writer,
        owned,
        stats,
        config,
        bus,
        readiness,
    };
    driver::run(bus, settings, Offsets::FromFlush, &mut sink, &shutdown).await
}

/// The manifest is the truth: a flush commits the buffered rows with the offsets they cover,
/// then reports each partition's lowest table position, where Kafka may resume it.
impl driver::Job for Sink<'_> {
    type Error = LakeError;

    async fn apply(&mut self, record: &InRecord) -> Result<Applied, LakeError> {
        Ok(match Sink::apply(self, record).await? {
            Some(reason) => Applied::DeadLetter(reason),
            None => Applied::Done,
        })
    }

    async fn flush(&mut self) -> Result<Vec<Position>, LakeError> {
        self.commit().await
    }

    fn wants_flush(&self) -> bool {
        self.buffered() >= self.config.max_buffered_rows
    }

    async fn log_ends(&mut self, ends: &[(TopicPartition, i64)]) {
        let lag: Vec<(String, i32, i64)> = ends
            .iter()
            .map(|(partition, end)| {
                let behind = (end - self.read_position(partition)).max(0);
                (partition.topic.clone(), partition.partition, behind)
            })
            .collect();
        let behind = lag
            .iter()
            .filter(|(_, _, behind)| *behind > self.config.ready_max_lag)
            .max_by_key(|(_, _, behind)| *behind);
        match behind {
            _ if lag.is_empty() => self.readiness.set_not_ready("no partition assigned yet"),
            Some((topic, partition, behind)) => self.readiness.set_not_ready(format!(
                "{topic}[{partition}] is {behind} records behind (lakehouse.ready_max_lag = {})",
                self.config.ready_max_lag
            )),
            None => self.readiness.set_ready(),
        }
        self.stats.lag.set(lag);
    }
}

impl Sink<'_> {
    /// The next offset this member reads of `partition`: past the last record read when it
    /// has taken the partition over, else where its tables stand (where reading resumes).
    fn read_position(&self, partition: &TopicPartition) -> i64 {
        let read = self.owned.lock().get(partition).map(|state| {
            state
                .cursors
                .values()
                .map(|cursor| cursor.upto)
                .max()
                .unwrap_or(0)
        });
        if let Some(read) = read {
            return read;
        }
        let Some(topic) = self.bus.config().topic_of(&partition.topic) else {
            return 0;
        };
        // The positions as last read: a gauge needs no fresh manifest listing every second.
        let key = (partition.topic.clone(), partition.partition);
        Table::fed_by(topic)
            .map(|table| {
                self.writer
                    .snapshot(table)
                    .and_then(|snapshot| snapshot.positions.get(&key).copied())
                    .unwrap_or(0)
            })
            .min()
            .unwrap_or(0)
    }

    fn buffered(&self) -> usize {
        self.owned.lock().values().map(|state| state.buffered).sum()
    }

    /// Buffers one record's rows; returns why it cannot be used, for the DLQ.
    async fn apply(&mut self, record: &InRecord) -> Result<Option<Reason>, LakeError> {
        self.stats.records.inc();
        let partition = TopicPartition {
            topic: record.topic_name.clone(),
            partition: record.partition,
        };
        let known = self.owned.lock().contains_key(&partition);
        if !known {
            self.take_over(&partition, record.topic).await?;
        }
        let decoded = match &record.payload {
            Some(payload) => codec::decode(payload).map_err(|error| Reason::from(&error)),
            None => Err(Reason::new("malformed_json", "a record with no value")),
        };
        let mut owned = self.owned.lock();
        let Some(state) = owned.get_mut(&partition) else {
            return Ok(None);
        };
        let wanted: Vec<Table> = Table::fed_by(record.topic)
            .filter(|table| {
                let cursor = state.cursors.get(table).copied().unwrap_or_default();
                cursor.committed.is_none_or(|next| record.offset >= next)
            })
            .collect();
        if wanted.is_empty() {
            self.stats.replays_skipped.inc();
            return Ok(None);
        }
        // Past the lowest table position: the same set of ids an uninterrupted run had here.
        let duplicate = decoded
            .as_ref()
            .is_ok_and(|envelope| !state.dedup.first_seen(envelope.event_id, record.offset));
        if duplicate {
            self.stats.duplicates_dropped.inc();
        }
        for table in wanted {
            let cursor = state.cursors.entry(table).or_default();
            if cursor.from.is_none()
                && let Some(next) = cursor.committed
                && record.offset > next
            {
                tracing::warn!(
                    topic = partition.topic,
                    partition = partition.partition,
                    %table,
                    missing = ?(next..record.offset),
                    "records between the table's position and the first one read are not on the topic any more (its retention deleted them before the lakehouse read them); they are not in the table"
                );
            }
            cursor.from.get_or_insert(record.offset);
            cursor.upto = record.offset + 1;
            if let Ok(envelope) = &decoded
                && !duplicate
            {
                let day = event_day(envelope.event_time);
                let rows = match state.rows.entry((table, day)) {
                    std::collections::btree_map::Entry::Occupied(rows) => rows.into_mut(),
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(Rows::new(table)?)
                    }
                };
                let before = rows.len();
                rows.push(envelope);
                state.buffered += rows.len() - before;
            }
        }
        Ok(decoded.err())
    }

    /// The first record of a partition since it was assigned: read where its tables stand,
    /// and the records before the lowest of those positions that the duplicate check
    /// remembers.
    async fn take_over(
        &mut self,
        partition: &TopicPartition,
        topic: Topic,
    ) -> Result<(), LakeError> {
        let mut state = PartitionState {
            cursors: BTreeMap::new(),
            rows: BTreeMap::new(),
            buffered: 0,
            dedup: Dedup::new(self.config.dedup_horizon),
        };
        for table in Table::fed_by(topic) {
            let committed = self
                .writer
                .position(table, &partition.topic, partition.partition)
                .await?;
            state.cursors.insert(
                table,
                Cursor {
                    committed,
                    from: None,
                    upto: committed.unwrap_or(0),
                },
            );
        }
        let lowest = state
            .cursors
            .values()
            .map(|c| c.committed.unwrap_or(0))
            .min()
            .unwrap_or(0);
        let window = state.dedup.window_start(lowest);
        let recent = read_again(self.bus, topic, partition.partition, window, lowest).await?;
        for record in &recent {
            if let Some(Ok(envelope)) = record.payload.as_deref().map(codec::decode) {
                state.dedup.first_seen(envelope.event_id, record.offset);
            }
        }
        tracing::info!(
            topic = partition.topic,
            partition = partition.partition,
            positions = ?state.cursors.iter().map(|(t, c)| (t.name(), c.committed)).collect::<Vec<_>>(),
            remembered_ids = state.dedup.len(),
            "partition taken over"
        );
        self.owned.lock().insert(partition.clone(), state);
        Ok(())
    }

    /// Writes every table's buffered rows and commits them with their offsets; returns where
    /// Kafka may resume each partition.
    async fn commit(&mut self) -> Result<Vec<Position>, LakeError> {
        let (pending, ranges) = self.take_buffers();
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let committed = self.writer.commit(pending, ranges.clone()).await?;
        self.stats.files_committed.inc_by(committed.files);
        self.stats.rows_committed.inc_by(committed.rows);
        self.stats.commits.inc();
        Ok(self.advance(&ranges))
    }

    /// Takes every buffered row out, with the offset range each table's commit will cover.
    fn take_buffers(&self) -> (Vec<Pending>, BTreeMap<Table, Vec<OffsetRange>>) {
        let mut owned = self.owned.lock();
        let mut pending: BTreeMap<(Table, i32), Vec<Rows>> = BTreeMap::new();
        let mut ranges: BTreeMap<Table, Vec<OffsetRange>> = BTreeMap::new();
        for (partition, state) in owned.iter_mut() {
            for ((table, day), rows) in std::mem::take(&mut state.rows) {
                pending.entry((table, day)).or_default().push(rows);
            }
            state.buffered = 0;
            for (table, cursor) in &state.cursors {
                if let Some(from) = cursor.from {
                    ranges.entry(*table).or_default().push(OffsetRange {
                        topic: partition.topic.clone(),
                        partition: partition.partition,
                        from,
                        to: cursor.upto,
                    });
                }
            }
        }
        let pending = pending
            .into_iter()
            .map(|((table, day), rows)| Pending { table, day, rows })
            .collect();
        (pending, ranges)
    }

    /// After a commit: the tables are at the ends of their ranges; Kafka may resume each
    /// partition at the lowest position among its tables.
    fn advance(&self, ranges: &BTreeMap<Table, Vec<OffsetRange>>) -> Vec<Position> {
        let mut owned = self.owned.lock();
        for (table, table_ranges) in ranges {
            for range in table_ranges {
                let key = TopicPartition {
                    topic: range.topic.clone(),
                    partition: range.partition,
                };
                if let Some(cursor) = owned
                    .get_mut(&key)
                    .and_then(|state| state.cursors.get_mut(table))
                {
                    cursor.committed = Some(range.to);
                    cursor.from = None;
                }
            }
        }
        owned
            .iter()
            .filter_map(|(partition, state)| {
                let lowest = state
                    .cursors
                    .values()
                    .map(|c| c.committed)
                    .min()
                    .flatten()?;
                Some(Position {
                    topic_name: partition.topic.clone(),
                    partition: partition.partition,
                    next_offset: lowest,
                })
            })
            .collect()
    }
}

/// The records of `[from, to)` again, retrying what a retry can help (a slow or restarting
/// broker) a few times before the sink gives up.
async fn read_again(
    bus: &Bus,
    topic: Topic,
    partition: i32,
    from: i64,
    to: i64,
) -> Result<Vec<InRecord>, LakeError> {
    let mut attempt = 0u32;
    loop {
        match bus.read_range(topic, partition, from, to).await {
            Ok(records) => return Ok(records),
            Err(error) if error.is_retryable() && attempt < 5 => {
                attempt += 1;
                tracing::warn!(%error, attempt, "re-reading the dedup window failed; retrying");
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}
