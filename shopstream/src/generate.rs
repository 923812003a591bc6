//! `shopstream generate`: seeded traffic to Kafka or to a JSON-lines file.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::{app, cancel_on_signal, pump};

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
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

pub async fn run(config: Config, args: GenerateArgs) -> Result<()> {
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
    let generator = traffic::Generator::new(generator_config.clone())?;
    // The delivery network first, as the demo publishes it.
    let events = generator
        .network()
        .into_iter()
        .chain(generator.take_while(move |e| e.event_time < end_ms));
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
        let bus = app::connect(&config).await?;
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
