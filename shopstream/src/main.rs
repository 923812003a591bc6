//! `shopstream`: one binary, one subcommand per role. Each role is a library `run` elsewhere;
//! this crate only composes configuration, starts them and waits for Ctrl-C.

mod bench;
mod bench_core;
mod bench_lake;
mod bench_orderbook;
mod bench_stream;
mod config;
mod import;
mod pump;
mod sql;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bus::Bus;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use model::Topic;
use tokio_util::sync::CancellationToken;

use config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "shopstream",
    version,
    about = "E-commerce event pipeline: Kafka, stream jobs, APIs"
)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "SHOPSTREAM_CONFIG")]
    config: Option<PathBuf>,
    /// Override one setting, e.g. `--set bus.partitions=6` (repeatable; wins over file and env).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    /// Keep state here across restarts (same as `--set data_dir=DIR`).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything in one process: embedded broker, topics, orders core, generator, trending
    /// job, lakehouse sink, HTTP APIs and the SQL endpoint.
    Demo,
    /// The orders core alone: `/v1` orders API, event collector, outbox relay, sweeper.
    Core,
    /// Generate seeded traffic to Kafka or to a JSON-lines file.
    Generate(GenerateArgs),
    /// Run one stream job against the configured cluster.
    Stream {
        #[arg(value_enum)]
        job: StreamJob,
    },
    /// Replay a data set through the orders core (needs --data-dir).
    Import {
        #[command(subcommand)]
        source: import::Source,
    },
    /// Query the lakehouse: one statement, or an interactive prompt (needs --data-dir).
    Sql(sql::SqlArgs),
    /// The SQL endpoint alone: the lakehouse over the Postgres wire protocol.
    SqlServer,
    /// Look after the lakehouse tables: list committed files, compact, vacuum.
    Lake {
        #[command(subcommand)]
        command: sql::LakeCommand,
    },
    /// Measure a component on this machine and print the figure.
    Bench {
        #[command(subcommand)]
        target: bench::Target,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StreamJob {
    Trending,
    /// The lakehouse sink: topics into Parquet tables.
    Lakehouse,
}

#[derive(Debug, clap::Args)]
struct GenerateArgs {
    #[arg(long)]
    seed: Option<u64>,
    /// Mean events per second of event time.
    #[arg(long)]
    rate: Option<f64>,
    /// How much event time to generate, e.g. 60s, 10m, 2h.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// `kafka` (the configured cluster) or a file path for JSON lines.
    #[arg(long, default_value = "kafka")]
    to: String,
    /// Hold each event until the wall clock reaches its event time (event time starts now).
    #[arg(long)]
    realtime: bool,
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected e.g. 30s, 10m, 2h"))?;
    let seconds = match unit {
        "s" | "" => number,
        "m" => number * 60,
        "h" => number * 3600,
        _ => return Err(format!("{text:?}: unit must be s, m or h")),
    };
    Ok(Duration::from_secs(seconds))
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOPSTREAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,shopstream=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let mut settings = cli.settings.clone();
    if let Some(dir) = &cli.data_dir {
        settings.push((
            "data_dir".into(),
            format!("{:?}", dir.display().to_string()),
        ));
    }
    let config = Config::load(cli.config.as_deref(), &settings)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Demo => demo(config).await,
            Command::Core => core(config).await,
            Command::Generate(args) => generate(config, args).await,
            Command::Stream {
                job: StreamJob::Trending,
            } => stream_trending(config).await,
            Command::Stream {
                job: StreamJob::Lakehouse,
            } => stream_lakehouse(config).await,
            Command::Sql(args) => sql::run(config, args).await,
            Command::SqlServer => sql::serve(config).await,
            Command::Lake { command } => sql::lake(config, command).await,
            Command::Import { source } => import::run(config, source).await,
            Command::Bench { target } => bench::run(config, target).await,
        }
    })
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
pub(crate) fn cancel_on_signal(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("shutting down: stopping intake, flushing, committing offsets");
        shutdown.cancel();
    });
}

async fn connect(config: &Config) -> Result<Arc<Bus>> {
    let bus = Bus::connect(config.bus.clone())?;
    bus.ensure_topics(&Topic::ALL)
        .await
        .context("cannot create topics")?;
    Ok(Arc::new(bus))
}

async fn demo(config: Config) -> Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let bus = connect(&config).await?;
    let listener = tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (set http.listen or --set http.listen=127.0.0.1:0)",
                config.http.listen
            )
        })?;
    let http = listener.local_addr()?;
    let core = start_core(&config, Arc::clone(&bus), shutdown.clone()).await?;
    let (sql_config, sql_password) = config::sql_users(&config)?;
    let sql_listener = tokio::net::TcpListener::bind(&sql_config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (set sql.listen, e.g. --set sql.listen=127.0.0.1:0)",
                sql_config.listen
            )
        })?;
    let sql_address = sql_listener.local_addr()?;
    // Without a data dir the lake, like the broker's log, lasts as long as this run.
    let (lake_config, _lake_scratch) = match (&config.lakehouse.dir, &config.lakehouse.s3) {
        (None, None) => {
            let scratch = tempfile::Builder::new()
                .prefix("shopstream-lake-")
                .tempdir()?;
            let mut lake = config.lakehouse.clone();
            lake.dir = Some(scratch.path().to_owned());
            (lake, Some(scratch))
        }
        _ => (config.lakehouse.clone(), None),
    };
    let lake_storage = lake_config.storage()?;
    let broker = bus.bootstrap_servers().to_owned();
    let mut out = String::new();
    out.push_str("shopstream demo is running\n");
    out.push_str(&format!(
        "  kafka broker    {broker}{}\n",
        if bus.is_embedded() { " (embedded)" } else { "" }
    ));
    out.push_str(&format!(
        "  topics          {}\n",
        Topic::ALL.map(|t| bus.topic_name(t)).join(", ")
    ));
    out.push_str(&format!("  trending API    http://{http}\n"));
    out.push_str(&format!(
        "  orders API      http://{}  (admin key: {})\n",
        core.addr, core.admin_key
    ));
    out.push_str(&format!("  orders store    {}\n", core.store));
    out.push_str(&format!(
        "  lakehouse       {} (Parquet; committed every {} ms)\n",
        match lake_storage.location() {
            lakehouse::storage::Location::Directory(dir) => dir.display().to_string(),
            lakehouse::storage::Location::S3 { bucket, prefix } =>
                format!("s3://{bucket}/{prefix}"),
        },
        lake_config.commit_interval_ms
    ));
    out.push_str(&match &sql_password {
        Some(password) => format!(
            "  SQL             psql 'postgresql://analyst:{password}@{sql_address}/shopstream'\n"
        ),
        None => format!("  SQL             {sql_address} (Postgres wire; users from sql.users)\n"),
    });
    out.push_str(&format!(
        "  try             curl 'http://{http}/v1/trending?window=5m&limit=5'\n"
    ));
    out.push_str(&format!("                  kcat -b {broker} -L\n"));
    out.push_str(&format!(
        "  generator       seed {} at {} events/s (mean)\n",
        config.generator.seed, config.generator.rate
    ));
    out.push_str("  stop            Ctrl-C\n");
    eprint!("{out}");

    // Without a data dir the embedded broker keeps its log in memory, so the trending
    // checkpoints live exactly as long: in a directory removed at exit.
    let (trending_config, _trending_scratch) = match &config.trending.checkpoint_dir {
        Some(_) => (config.trending.clone(), None),
        None => {
            let scratch = tempfile::Builder::new()
                .prefix("shopstream-checkpoints-")
                .tempdir()?;
            let mut trending = config.trending.clone();
            trending.checkpoint_dir = Some(scratch.path().to_owned());
            (trending, Some(scratch))
        }
    };
    let trending = tokio::spawn(streams::trending::run(
        trending_config,
        Arc::clone(&bus),
        listener,
        shutdown.clone(),
    ));
    let maintenance = supervised(
        "lakehouse maintenance",
        &shutdown,
        lakehouse::maintain::run(lake_config.clone(), shutdown.clone()),
    );
    let sink = {
        let (bus, stop) = (Arc::clone(&bus), shutdown.clone());
        supervised("lakehouse sink", &shutdown, async move {
            lakehouse::sink::run(lake_config, &bus, Arc::default(), stop).await
        })
    };
    let sql_server = supervised(
        "SQL endpoint",
        &shutdown,
        lakehouse::pg::serve(sql_config, lake_storage, sql_listener, shutdown.clone()),
    );
    let generator_config = traffic::GeneratorConfig {
        start_ms: pump::now_ms(),
        ..config.generator.clone()
    };
    let producer = bus.producer()?;
    let generated = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let events = traffic::Generator::new(generator_config)?;
            pump::pump(events, &producer, true, &shutdown, &ProgressBar::hidden()).await
        })
    };

    let generated = generated.await?;
    // If the generator stopped on its own (an error), bring the rest down too.
    shutdown.cancel();
    let trended = trending.await?;
    let cored = core.task.await?;
    let sunk = sink.await?;
    let maintained = maintenance.await?;
    let served = sql_server.await?;
    bus.save();
    let sent = generated.context("generator failed")?;
    trended.context("trending job failed")?;
    cored.context("orders core failed")?;
    sunk.context("lakehouse sink failed")?;
    maintained.context("lakehouse maintenance failed")?;
    served.context("SQL endpoint failed")?;
    eprintln!("stopped cleanly: {sent} events acknowledged by the broker, offsets committed");
    Ok(())
}

/// Spawns one stage of the demo; if it fails, everything stops (with its error reported at
/// the end) rather than the rest running on without it.
fn supervised<T, E>(
    name: &'static str,
    shutdown: &CancellationToken,
    stage: impl Future<Output = Result<T, E>> + Send + 'static,
) -> tokio::task::JoinHandle<Result<T, E>>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let outcome = stage.await;
        if let Err(error) = &outcome {
            tracing::error!(%error, "{name} failed; stopping the demo");
            shutdown.cancel();
        }
        outcome
    })
}

struct CoreHandle {
    addr: std::net::SocketAddr,
    admin_key: String,
    store: String,
    task: tokio::task::JoinHandle<Result<(), ingest::service::ServiceError>>,
    /// Holds the temporary data directory of a run without `data_dir` until the end.
    _scratch: Option<tempfile::TempDir>,
}

/// Starts the orders core on `core.listen`; without a data dir its database lives in a
/// temporary directory for this run only.
async fn start_core(
    config: &Config,
    bus: Arc<Bus>,
    shutdown: CancellationToken,
) -> Result<CoreHandle> {
    let listener = tokio::net::TcpListener::bind(&config.core.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (set core.listen, e.g. --set core.listen=127.0.0.1:0)",
                config.core.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let (data_dir, scratch) = match &config.data_dir {
        Some(dir) => (dir.join("core"), None),
        None => {
            let scratch = tempfile::Builder::new()
                .prefix("shopstream-core-")
                .tempdir()?;
            (scratch.path().to_owned(), Some(scratch))
        }
    };
    let store = match &config.core.store.url {
        Some(_) => "PostgreSQL (core.store.url)".to_owned(),
        None => data_dir.join("orders.sqlite3").display().to_string(),
    };
    let (ready, started) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(ingest::service::run(
        config.core.clone(),
        data_dir,
        bus,
        listener,
        shutdown,
        Some(ready),
    ));
    let Ok(started) = started.await else {
        task.await?.context("orders core failed to start")?;
        bail!("orders core stopped before it was ready");
    };
    let admin_key = match started.admin_key_file {
        Some(file) => format!("in {}", file.display()),
        None => "core.admin_key from the configuration".to_owned(),
    };
    Ok(CoreHandle {
        addr,
        admin_key,
        store,
        task,
        _scratch: scratch,
    })
}

async fn core(config: Config) -> Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let bus = connect(&config).await?;
    let core = start_core(&config, Arc::clone(&bus), shutdown).await?;
    eprintln!(
        "orders core on http://{} (admin key {}), store {}, events to {}",
        core.addr,
        core.admin_key,
        core.store,
        bus.bootstrap_servers()
    );
    core.task.await?.context("orders core failed")?;
    bus.save();
    eprintln!("stopped cleanly: outbox drained to the broker");
    Ok(())
}

async fn generate(config: Config, args: GenerateArgs) -> Result<()> {
    let mut generator_config = config.generator.clone();
    if let Some(seed) = args.seed {
        generator_config.seed = seed;
    }
    if let Some(rate) = args.rate {
        generator_config.rate = rate;
    }
    if args.realtime {
        generator_config.start_ms = pump::now_ms();
    }
    let end_ms = generator_config.start_ms + args.duration.as_millis() as i64;
    let events = traffic::Generator::new(generator_config.clone())?
        .take_while(move |e| e.event_time < end_ms);
    let expected = (generator_config.rate * args.duration.as_secs_f64()) as u64;
    let progress = ProgressBar::new(expected);
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} {pos} events ({per_sec}) [{elapsed_precise}] {wide_bar} ~{len}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let written = if args.to == "kafka" {
        if config.bus.bootstrap_servers.is_none() {
            bail!(
                "generate --to kafka needs a running cluster: set bus.bootstrap_servers \
                 (a running `shopstream demo` serves one on 127.0.0.1:9092), e.g. \
                 --set bus.bootstrap_servers=127.0.0.1:9092, or use --to events.jsonl"
            );
        }
        let bus = connect(&config).await?;
        let producer = bus.producer()?;
        pump::pump(events, &producer, args.realtime, &shutdown, &progress).await?
    } else {
        write_jsonl(events, &args.to, &progress, &shutdown)?
    };
    progress.finish_and_clear();
    eprintln!(
        "generated {written} events (seed {}) to {}",
        generator_config.seed, args.to
    );
    Ok(())
}

fn write_jsonl(
    events: impl Iterator<Item = model::Envelope>,
    path: &str,
    progress: &ProgressBar,
    shutdown: &CancellationToken,
) -> Result<u64> {
    use std::io::Write;
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {path}"))?;
    let mut out = std::io::BufWriter::new(file);
    let mut line = Vec::with_capacity(512);
    let mut written = 0;
    for envelope in events {
        if shutdown.is_cancelled() {
            break;
        }
        line.clear();
        model::codec::encode_into(&envelope, &mut line);
        line.push(b'\n');
        out.write_all(&line)
            .with_context(|| format!("cannot write {path}"))?;
        written += 1;
        progress.inc(1);
    }
    out.flush()
        .with_context(|| format!("cannot write {path}"))?;
    Ok(written)
}

async fn stream_trending(config: Config) -> Result<()> {
    if config.bus.bootstrap_servers.is_none() {
        bail!(
            "stream trending needs bus.bootstrap_servers (a running `shopstream demo` serves 127.0.0.1:9092)"
        );
    }
    if config.trending.checkpoint_dir.is_none() {
        bail!(
            "stream trending needs --data-dir DIR (or trending.checkpoint_dir) to keep its checkpoints; instances of one group must share it"
        );
    }
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let bus = connect(&config).await?;
    let listener = tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    eprintln!(
        "trending on http://{}/v1/trending, consuming from {}",
        listener.local_addr()?,
        bus.bootstrap_servers()
    );
    streams::trending::run(config.trending.clone(), bus, listener, shutdown).await?;
    Ok(())
}

async fn stream_lakehouse(config: Config) -> Result<()> {
    if config.bus.bootstrap_servers.is_none() {
        bail!(
            "stream lakehouse needs bus.bootstrap_servers (a running `shopstream demo` serves 127.0.0.1:9092)"
        );
    }
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let bus = connect(&config).await?;
    let storage = config.lakehouse.storage().context(
        "stream lakehouse needs --data-dir DIR (or lakehouse.dir / lakehouse.s3); members of one group must share it",
    )?;
    eprintln!(
        "lakehouse sink into {:?}, consuming from {}",
        storage.location(),
        bus.bootstrap_servers()
    );
    let maintenance = tokio::spawn(lakehouse::maintain::run(
        config.lakehouse.clone(),
        shutdown.clone(),
    ));
    let sunk = lakehouse::sink::run(
        config.lakehouse.clone(),
        &bus,
        Arc::default(),
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    maintenance.await??;
    sunk?;
    Ok(())
}
