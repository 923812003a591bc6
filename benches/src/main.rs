//! `shopstream-bench`: measures a component on this machine and prints the figure that
//! BENCHMARKS.md quotes. Run it in release: `cargo run --release -p benches -- <target>`. It
//! takes the same configuration flags as `shopstream`.

mod analytics;
mod dashboards;
mod finance;
mod front;
mod lake;
mod load;
mod nexmark;
mod orderbook;
mod orders;
mod promise;
mod promise_freshness;
mod recs;
mod relevance;
mod search;
mod stream;
mod targets;

use anyhow::Result;
use clap::Parser;
use shopstream::config::ConfigArgs;

#[derive(Debug, Parser)]
#[command(
    name = "shopstream-bench",
    version,
    about = "Measure a shopstream component on this machine and print the figure"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    target: targets::Target,
}

fn main() -> Result<()> {
    shopstream::init_logging();
    let cli = Cli::parse();
    let config = cli.config.load()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(targets::run(config, cli.target))
}
