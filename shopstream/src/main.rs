//! `shopstream`: one binary, one subcommand per role: the command line and its dispatch. The
//! roles are in the `shopstream` library (`app`, `generate`, `import`, `sql`); the benchmarks
//! are a binary of their own (`benches/`, `shopstream-bench`).

use anyhow::Result;
use clap::{Parser, Subcommand};
use shopstream::config::ConfigArgs;
use shopstream::generate::GenerateArgs;
use shopstream::{app, finance, generate, import, sql};

#[derive(Debug, Parser)]
#[command(
    name = "shopstream",
    version,
    about = "E-commerce event pipeline: Kafka, stream jobs, APIs"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
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
    /// Batch jobs over the lakehouse (needs --data-dir or lakehouse.dir / lakehouse.s3).
    Job {
        #[command(subcommand)]
        command: finance::JobCommand,
    },
    /// Look after the lakehouse tables: list committed files, compact, vacuum.
    Lake {
        #[command(subcommand)]
        command: sql::LakeCommand,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StreamJob {
    Trending,
    /// The lakehouse sink: topics into Parquet tables.
    Lakehouse,
    /// Product search: an index replica of its own and /v1/search, /v1/suggest (pincode
    /// filters need the serviceability stage, which `serve` runs).
    Search,
    /// Recommendations: a replica of their own of what is learnt from clicks and orders,
    /// and /v1/recommendations/* (pincode filters need the serviceability stage).
    Recommend,
    /// Live merchant analytics: /v1/merchants/{id}/analytics/*, keys from the api-keys topic.
    Analytics,
}

fn main() -> Result<()> {
    shopstream::init_logging();
    let cli = Cli::parse();
    let config = cli.config.load()?;
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
            Command::Stream {
                job: StreamJob::Search,
            } => app::run(config, app::Role::Search).await,
            Command::Stream {
                job: StreamJob::Recommend,
            } => app::run(config, app::Role::Recommend).await,
            Command::Stream {
                job: StreamJob::Analytics,
            } => app::run(config, app::Role::Analytics).await,
            Command::Sql(args) => sql::run(config, args).await,
            Command::SqlServer => sql::serve(config).await,
            Command::Lake { command } => sql::lake(config, command).await,
            Command::Import { source } => import::run(config, source).await,
            Command::Job { command } => finance::run(config, command).await,
        }
    })
}
