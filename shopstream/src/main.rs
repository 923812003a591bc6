//! `shopstream`: one binary, one subcommand per role. Each role is a library `run` elsewhere;
//! this crate only composes configuration, starts them and waits for Ctrl-C.

mod app;
mod bench;
mod bench_core;
mod bench_front;
mod bench_lake;
mod bench_orderbook;
mod bench_stream;
mod config;
mod generate;
mod import;
mod pump;
mod sql;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
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
    /// Everything in one process: embedded broker, every stage, the generator; every HTTP
    /// API on http.listen and SQL on sql.listen.
    Demo,
    /// Every stage without the generator, against the configured Kafka cluster
    /// (bus.bootstrap_servers), store and lake: what a deployment runs. Needs --data-dir.
    Serve,
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
pub(crate) struct GenerateArgs {
    #[arg(long)]
    pub seed: Option<u64>,
    /// Mean events per second of event time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// How much event time to generate, e.g. 60s, 10m, 2h.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// `kafka` (the configured cluster) or a file path for JSON lines.
    #[arg(long, default_value = "kafka")]
    pub to: String,
    /// Hold each event until the wall clock reaches its event time (event time starts now).
    #[arg(long)]
    pub realtime: bool,
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
            Command::Demo => app::run(config, app::Role::Demo).await,
            Command::Serve => app::run(config, app::Role::Serve).await,
            Command::Core => app::run(config, app::Role::Core).await,
            Command::Generate(args) => generate::run(config, args).await,
            Command::Stream {
                job: StreamJob::Trending,
            } => app::run(config, app::Role::Trending).await,
            Command::Stream {
                job: StreamJob::Lakehouse,
            } => app::run(config, app::Role::Lakehouse).await,
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
