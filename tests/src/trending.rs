//! What trending must say, recomputed in batch by DataFusion from the raw events, and a
//! follower of the `trending` topic to compare against it.
//!
//! The recomputation shares no code with the job: events become `(time, scope, product,
//! views, carts, orders)` rows here, and SQL sums them per pane and per hopping window.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::{Context, Result};
use datafusion::arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use model::trending::{Counts, Scope, TrendingRecord};
use model::{Envelope, Event};

/// `(scope, product)` as the job names them: `global`, `merchant:<id>`, `city:<district>`.
pub type Slot = (String, String);

pub fn scope_name(scope: &Scope) -> String {
    match scope {
        Scope::Global => "global".into(),
        Scope::Merchant(merchant) => format!("merchant:{merchant}"),
        Scope::City(city) => format!("city:{city}"),
    }
}

/// One row per (event, scope, product) the definition of trending counts.
fn rows(events: &[Envelope]) -> (Vec<i64>, Vec<String>, Vec<String>, [Vec<i64>; 3]) {
    let places = model::geo::Directory::load();
    let (mut times, mut scopes, mut products) = (Vec::new(), Vec::new(), Vec::new());
    let mut kinds: [Vec<i64>; 3] = Default::default();
    for envelope in events {
        let (items, kind, city): (BTreeSet<String>, usize, Option<String>) = match &envelope.event {
            Event::ProductViewed(v) => ([v.product_id.to_string()].into(), 0, None),
            Event::CartAdded(c) => ([c.product_id.to_string()].into(), 1, None),
            Event::OrderPlaced(o) => (
                o.lines.iter().map(|l| l.product_id.to_string()).collect(),
                2,
                places.get(o.delivery_pincode).map(|p| p.district.clone()),
            ),
            _ => continue,
        };
        let mut names = vec![
            "global".to_owned(),
            format!("merchant:{}", envelope.merchant_id),
        ];
        names.extend(city.map(|c| format!("city:{c}")));
        for item in &items {
            for name in &names {
                times.push(envelope.event_time);
                scopes.push(name.clone());
                products.push(item.clone());
                for (k, column) in kinds.iter_mut().enumerate() {
                    column.push(i64::from(k == kind));
                }
            }
        }
    }
    (times, scopes, products, kinds)
}

async fn context(events: &[Envelope]) -> Result<SessionContext> {
    let (times, scopes, products, [views, carts, orders]) = rows(events);
    let schema = Arc::new(Schema::new(vec![
        Field::new("t", DataType::Int64, false),
        Field::new("scope", DataType::Utf8, false),
        Field::new("product", DataType::Utf8, false),
        Field::new("views", DataType::Int64, false),
        Field::new("carts", DataType::Int64, false),
        Field::new("orders", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from(times)),
            Arc::new(StringArray::from(scopes)),
            Arc::new(StringArray::from(products)),
            Arc::new(Int64Array::from(views)),
            Arc::new(Int64Array::from(carts)),
            Arc::new(Int64Array::from(orders)),
        ],
    )?;
    let ctx = SessionContext::new();
    ctx.register_table(
        "hits",
        Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
    )?;
    Ok(ctx)
}

async fn collect(ctx: &SessionContext, sql: &str) -> Result<BTreeMap<(i64, Slot), Counts>> {
    let mut out = BTreeMap::new();
    for batch in ctx.sql(sql).await?.collect().await? {
        let column = |i: usize| batch.column(i);
        let ints = |i: usize| {
            column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .cloned()
                .context("an integer column")
        };
        let texts = |i: usize| {
            column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .context("a text column")
        };
        let (at, scope, product) = (ints(0)?, texts(1)?, texts(2)?);
        let (views, carts, orders) = (ints(3)?, ints(4)?, ints(5)?);
        for row in 0..batch.num_rows() {
            let counts = Counts {
                views: views.value(row) as u64,
                carts: carts.value(row) as u64,
                orders: orders.value(row) as u64,
            };
            let slot = (scope.value(row).to_owned(), product.value(row).to_owned());
            out.insert((at.value(row), slot), counts);
        }
        debug_assert!(at.null_count() == 0);
    }
    Ok(out)
}

/// Counts per pane start and slot, summed by DataFusion.
pub async fn batch_panes(
    events: &[Envelope],
    pane_ms: i64,
) -> Result<BTreeMap<(i64, Slot), Counts>> {
    let ctx = context(events).await?;
    let sql = format!(
        "SELECT CAST(floor(CAST(t AS DOUBLE) / {pane_ms}) AS BIGINT) * {pane_ms} AS pane, scope, product, \
         SUM(views), SUM(carts), SUM(orders) FROM hits GROUP BY 1, scope, product"
    );
    collect(&ctx, &sql).await
}

/// Counts per window end and slot for hopping windows of `size_ms` ending at each of `ends`.
pub async fn batch_windows(
    events: &[Envelope],
    size_ms: i64,
    ends: &[i64],
) -> Result<BTreeMap<(i64, Slot), Counts>> {
    let ctx = context(events).await?;
    let ends_schema = Arc::new(Schema::new(vec![Field::new(
        "window_end",
        DataType::Int64,
        false,
    )]));
    let batch = RecordBatch::try_new(
        Arc::clone(&ends_schema),
        vec![Arc::new(Int64Array::from(ends.to_vec()))],
    )?;
    ctx.register_table(
        "ends",
        Arc::new(MemTable::try_new(ends_schema, vec![vec![batch]])?),
    )?;
    let sql = format!(
        "SELECT e.window_end, h.scope, h.product, SUM(h.views), SUM(h.carts), SUM(h.orders) \
         FROM hits h JOIN ends e ON h.t >= e.window_end - {size_ms} AND h.t < e.window_end \
         GROUP BY e.window_end, h.scope, h.product"
    );
    collect(&ctx, &sql).await
}

/// The newest version of every record on the `trending` topic, summed over shards per pane:
/// the job's output as a reader sees it once compaction has run.
#[derive(Debug, Default, Clone)]
pub struct Published {
    latest: HashMap<String, TrendingRecord>,
}

impl Published {
    pub fn apply(&mut self, record: TrendingRecord) {
        self.latest.insert(record.key(), record);
    }

    pub fn panes(&self) -> BTreeMap<(i64, Slot), Counts> {
        let mut out: BTreeMap<(i64, Slot), Counts> = BTreeMap::new();
        for record in self.latest.values() {
            if let TrendingRecord::Pane(pane) = record {
                for entry in &pane.products {
                    let slot = (scope_name(&pane.scope), entry.product_id().to_string());
                    out.entry((pane.pane_start, slot))
                        .or_default()
                        .add(&entry.counts());
                }
            }
        }
        out
    }
}

/// Where two count tables first differ, for a readable failure.
pub fn first_difference(
    got: &BTreeMap<(i64, Slot), Counts>,
    want: &BTreeMap<(i64, Slot), Counts>,
) -> Option<String> {
    let keys: BTreeSet<&(i64, Slot)> = got.keys().chain(want.keys()).collect();
    keys.into_iter().find_map(|key| {
        let (g, w) = (got.get(key), want.get(key));
        (g != w).then(|| {
            format!(
                "{key:?}: streamed {g:?}, batch {w:?} ({} vs {} rows)",
                got.len(),
                want.len()
            )
        })
    })
}

/// Job settings the trending tests share: 1 s panes, a 10 s window sliding by 2 s and a 5 s
/// tumbling one, quick emission and checkpoints so kills land between them often.
pub fn job_config(checkpoint_dir: std::path::PathBuf) -> streams::trending::TrendingConfig {
    streams::trending::TrendingConfig {
        checkpoint_dir: Some(checkpoint_dir),
        pane_ms: 1_000,
        windows: vec![
            streams::trending::WindowConfig {
                size_ms: 10_000,
                slide_ms: 2_000,
            },
            streams::trending::WindowConfig {
                size_ms: 5_000,
                slide_ms: 5_000,
            },
        ],
        max_out_of_orderness_ms: 500,
        allowed_lateness_ms: 3_000,
        idle_timeout_ms: 1_000,
        emit_interval_ms: 50,
        checkpoint_interval_ms: 300,
        ..streams::trending::TrendingConfig::default()
    }
}

/// Waits until the newest pane records on the `trending` topic, with every partition idle,
/// equal DataFusion's per-pane sums of `events` (1 s panes, as in [`job_config`]).
pub async fn wait_matches_batch(bus: &bus::Bus, events: &[Envelope]) -> Result<()> {
    let want = batch_panes(events, 1_000).await?;
    let shards = 2 * bus.config().partitions as usize;
    let (reader, mut published) = follow(bus).await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut last = "nothing published".to_owned();
    while std::time::Instant::now() < deadline {
        drain(
            &reader,
            &mut published,
            std::time::Duration::from_millis(200),
        )
        .await?;
        if !all_idle(&published, shards) {
            last = "the job has not published idle watermarks for every partition".into();
            continue;
        }
        match first_difference(&published.panes(), &want) {
            None => return Ok(()),
            Some(difference) => last = difference,
        }
    }
    anyhow::bail!("streamed panes never matched the batch recomputation; last: {last}")
}

/// Starts the trending stage in-process behind a front door on a free port, as the binary
/// would.
pub async fn start(
    config: streams::trending::TrendingConfig,
    bus: Arc<bus::Bus>,
) -> Result<runtime::supervisor::Running> {
    let mut list = runtime::supervisor::StageList::default();
    let metrics = list.metrics();
    list.add("trending", |token| async move {
        streams::trending::stage(config, bus, &metrics, token)
    })
    .await?;
    Ok(runtime::supervisor::spawn_local(list).await?)
}

/// Generated traffic for the trending tests: `count` events of every kind, in event-time
/// order, starting at a fixed time.
pub fn generated(seed: u64, count: usize) -> Result<Vec<Envelope>> {
    Ok(traffic::Generator::new(traffic::GeneratorConfig {
        seed,
        rate: 400.0,
        products: 120,
        merchants: 6,
        customers: 800,
        ..traffic::GeneratorConfig::default()
    })?
    .take(count)
    .collect())
}

/// Follows the whole `trending` topic from the beginning, keeping the newest record per key.
pub async fn follow(bus: &bus::Bus) -> Result<(bus::Reader, Published)> {
    Ok((
        bus.reader(&[model::Topic::Trending]).await?,
        Published::default(),
    ))
}

/// Reads what `reader` has until nothing arrives for `quiet`.
pub async fn drain(
    reader: &bus::Reader,
    published: &mut Published,
    quiet: std::time::Duration,
) -> Result<()> {
    while let Ok(record) = tokio::time::timeout(quiet, reader.recv()).await {
        let record = record?;
        published.apply(TrendingRecord::decode(
            record.payload.as_deref().unwrap_or_default(),
        )?);
    }
    Ok(())
}

/// Whether every shard has published an idle watermark at or past its last event, i.e. the
/// job has consumed and published everything.
pub fn all_idle(published: &Published, shards: usize) -> bool {
    let marks: Vec<&model::trending::ShardWatermark> = published
        .latest
        .values()
        .filter_map(|r| match r {
            TrendingRecord::Watermark(m) => Some(m),
            TrendingRecord::Pane(_) => None,
        })
        .collect();
    marks.len() >= shards && marks.iter().all(|m| m.idle)
}
