//! `shopstream-bench`: measurements that BENCHMARKS.md quotes. Run them in release.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use bus::{Bus, NoHook};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use model::{Topic, codec};

use shopstream::config::Config;

#[derive(Debug, clap::Subcommand)]
pub enum Target {
    /// Events per second the generator makes (and encodes to JSON), single thread.
    Generator {
        #[arg(long, default_value_t = 5_000_000)]
        events: usize,
    },
    /// Produce and consume rates through rdkafka against the broker (embedded unless
    /// bus.bootstrap_servers is set).
    Bus {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
    },
    /// Orders placed over HTTP against the orders core (SQLite, or core.store.url).
    Orders {
        #[arg(long, default_value_t = 20_000)]
        orders: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Orders per second, open loop (one due every 1/rate s whatever the answers);
        /// without it, `--concurrency` clients place orders back to back.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Nexmark q5 (hot items: HOP 10 s / 2 s, bids per auction, top auctions per window) on
    /// the streaming runtime's panes, one thread, no broker.
    Nexmark {
        #[arg(long, default_value_t = 50_000_000)]
        events: usize,
        /// Bids per second of event time.
        #[arg(long, default_value_t = 1_000_000)]
        rate: u64,
    },
    /// The trending job through the broker: its rate on a backlog, then end-to-end freshness
    /// (event produced -> visible in /v1/trending) at half that rate.
    Trending {
        #[arg(long, default_value_t = 300_000)]
        backlog: usize,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Rows per second into the lakehouse: the Arrow + zstd Parquet encode on one thread, then
    /// the sink from a broker backlog to committed files.
    LakeSink {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
    },
    /// Ten report queries over an order book of `--lines` order lines in `--dir` (written
    /// there first if empty), DataFusion and DuckDB side by side, after compaction.
    LakeQueries {
        #[arg(long, default_value_t = 10_000_000)]
        lines: usize,
        #[arg(long)]
        dir: std::path::PathBuf,
        /// A Python with the `duckdb` package (default: the venv the lake tests make).
        #[arg(long)]
        python: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// A new reader of a table whose manifest log has `--versions` entries: the whole log
    /// replayed against the newest checkpoint and the entries after it.
    LakeManifest {
        #[arg(long, default_value_t = 10_000)]
        versions: u64,
        #[arg(long, default_value_t = lakehouse::manifest::checkpoint::EVERY)]
        every: u64,
    },
    /// Requests through the front door with concurrent clients, alone and then while
    /// `--slow` connections hold half a request each (slow-loris).
    FrontDoor {
        #[arg(long, default_value_t = 10_000)]
        slow: usize,
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Delivery promises backtested against the generator's truth (learnt at several
    /// quantiles, a fixed 4 days, a truth oracle), the learner's rate, and in-process answer
    /// times; with `--memory`, the learnt state's size over 20,000 destinations x 200
    /// warehouses x 10 couriers instead.
    Promise {
        #[arg(long, default_value_t = 300_000)]
        orders: usize,
        #[arg(long, default_value_t = 2_000)]
        destinations: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long)]
        memory: bool,
        /// Instead: deliveries produced one at a time until `/v1/promise` counts them, through
        /// the broker and the stage (this many).
        #[arg(long)]
        freshness: Option<usize>,
    },
    /// Search: the relevance harness (NDCG@10 and recall@10 against plain BM25 over titles
    /// and tantivy's defaults), the index build rate and size over `--products`, and
    /// queries through the front door under `wrk`.
    Search {
        #[command(subcommand)]
        part: crate::search::Part,
    },
    /// Recommendations: leave-last-out HR@20 and MRR@20 per method against popularity and
    /// plain co-occurrence, the learning rate and vector rebuild, and arroy against exact
    /// search.
    Recs {
        #[command(subcommand)]
        part: crate::recs::Part,
    },
    /// The finance export of a month of `--lines` sales lines: sheets built, then written as
    /// XLSX and as Parquet; time of each and peak RSS.
    FinanceExport {
        #[arg(long, default_value_t = 1_000_000)]
        lines: usize,
    },
    /// Live merchant analytics through the broker: catch-up over `--history` events of a
    /// full live window, freshness of a probe order under `--rate` events/s, and the
    /// answers under `wrk`.
    Analytics {
        #[arg(long, default_value_t = 1_000_000)]
        history: usize,
        #[arg(long, default_value_t = 2_000)]
        rate: usize,
        #[arg(long, default_value_t = 200)]
        samples: usize,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Also the dashboards over the same window: freshness on the Today panel, the
        /// panels and pages under `wrk`, page weight.
        #[arg(long)]
        dashboards: bool,
    },
    /// Click events posted to the collector and acknowledged by the broker.
    Collector {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        #[arg(long, default_value_t = 500)]
        batch: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
}

pub async fn run(config: Config, target: Target) -> Result<()> {
    match target {
        Target::Generator { events } => generator(&config, events),
        Target::Nexmark { events, rate } => crate::stream::nexmark(events, rate),
        Target::Search { part } => crate::search::run(&config, part).await,
        Target::FinanceExport { lines } => {
            tokio::task::spawn_blocking(move || crate::finance::run(lines)).await?
        }
        Target::Analytics {
            history,
            rate,
            samples,
            connections,
            seconds,
            dashboards,
        } => {
            crate::analytics::run(
                &config,
                history,
                rate,
                samples,
                connections,
                seconds,
                dashboards,
            )
            .await
        }
        Target::Recs { part } => crate::recs::run(&config, part),
        Target::Promise {
            freshness: Some(samples),
            ..
        } => crate::promise_freshness::run(&config, samples).await,
        Target::Promise {
            orders,
            destinations,
            seed,
            memory: false,
            ..
        } => crate::promise::run(orders, destinations, seed),
        Target::Promise {
            orders,
            memory: true,
            ..
        } => crate::promise::memory(orders, 20_000, 200, 10),
        Target::Trending { backlog, seconds } => {
            crate::stream::trending(config, backlog, seconds).await
        }
        Target::Bus { events } => bus(config, events).await,
        Target::LakeSink { events } => crate::lake::sink(config, events).await,
        Target::LakeManifest { versions, every } => {
            crate::lake::manifest(config, versions, every).await
        }
        Target::LakeQueries {
            lines,
            dir,
            python,
            runs,
        } => crate::lake::queries(config, lines, dir, python, runs).await,
        Target::Orders {
            orders,
            concurrency,
            rate,
        } => crate::orders::orders(&config, orders, concurrency, rate).await,
        Target::Collector {
            events,
            batch,
            concurrency,
        } => crate::orders::collector(&config, events, batch, concurrency).await,
        Target::FrontDoor {
            slow,
            requests,
            concurrency,
        } => crate::front::front_door(&config, slow, requests, concurrency).await,
    }
}

pub(crate) fn print_rate(what: &str, count: usize, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{what}: {count} in {seconds:.2} s = {:.0} /s",
        count as f64 / seconds
    );
}

fn generator(config: &Config, events: usize) -> Result<()> {
    let make = || {
        traffic::Generator::new(traffic::GeneratorConfig {
            rate: 10_000.0,
            ..config.generator.clone()
        })
    };
    // Build the world outside the timed part: it is start-up cost, not throughput.
    let generator = make()?;
    let started = Instant::now();
    let mut checksum = 0i64;
    for envelope in generator.take(events) {
        checksum = checksum.wrapping_add(envelope.event_time);
    }
    print_rate("generator events", events, started);
    let generator = make()?;
    let started = Instant::now();
    let mut bytes = 0usize;
    let mut buffer = Vec::with_capacity(512);
    for envelope in generator.take(events) {
        buffer.clear();
        codec::encode_into(&envelope, &mut buffer);
        bytes += buffer.len();
    }
    print_rate("generator events encoded to JSON", events, started);
    println!(
        "  mean record size {} bytes (checksum {checksum})",
        bytes / events.max(1)
    );
    Ok(())
}

async fn bus(mut config: Config, events: usize) -> Result<()> {
    if config.bus.bootstrap_servers.is_none() {
        config.bus.embedded_listen = "127.0.0.1:0".into();
        config.bus.embedded_data_dir = None;
    }
    config.bus.topic_prefix = format!("bench-{}.", shopstream::pump::now_ms());
    config.bus.partitions = 3;
    let bus = Arc::new(Bus::connect(config.bus.clone())?);
    bus.ensure_topics(&[Topic::Clicks]).await?;
    let records: Vec<(Vec<u8>, Vec<u8>)> = traffic::Generator::new(config.generator.clone())?
        .filter(|e| e.topic() == Topic::Clicks)
        .take(events)
        .map(|e| (e.key().as_bytes().to_vec(), codec::encode(&e)))
        .collect();
    let bytes: usize = records.iter().map(|(k, v)| k.len() + v.len()).sum();
    println!(
        "broker {} ({}), {} records, {:.1} MB",
        bus.bootstrap_servers(),
        if bus.is_embedded() {
            "embedded"
        } else {
            "external"
        },
        records.len(),
        bytes as f64 / 1e6
    );

    let producer = bus.producer()?;
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    for (key, payload) in &records {
        loop {
            let record = bus::OutRecord {
                topic: Topic::Clicks,
                key,
                payload,
                headers: &[],
            };
            match producer.enqueue(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err(bus::BusError::QueueFull) => {
                    if let Some(result) = pending.next().await {
                        result?;
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
    while let Some(result) = pending.next().await {
        result?;
    }
    print_rate(
        "produced and acknowledged (idempotent, acks=all, lz4)",
        records.len(),
        started,
    );

    let consumer = bus.consumer("bench", &[Topic::Clicks], Arc::new(NoHook), &[])?;
    let started = Instant::now();
    let mut consumed = 0;
    while consumed < records.len() {
        let record = tokio::time::timeout(std::time::Duration::from_secs(30), consumer.recv())
            .await
            .context("consumer stalled for 30 s")??;
        consumer.store(&record)?;
        consumed += 1;
    }
    consumer.commit().await?;
    print_rate(
        "consumed (consumer group, explicit commit)",
        consumed,
        started,
    );
    consumer.close().await?;
    Ok(())
}
