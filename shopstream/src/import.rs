//! `shopstream import`: replays a data set through the orders core's write paths into the
//! configured store, then relays the committed events to the configured broker.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use ingest::import::{self, ImportTarget, Report};
use ingest::store::Store;

use crate::config::Config;

#[derive(Debug, clap::Subcommand)]
pub enum Source {
    /// The UCI Online Retail CSV (e.g. `ingest/data/online_retail/*.csv`): invoices become
    /// paid orders at their invoice time, cancellations become refunds.
    OnlineRetail {
        /// The CSV file.
        path: PathBuf,
    },
    /// A courier and its coverage list, as couriers publish it: a CSV with the columns
    /// pincode, prepaid, cod, pickup and oda (out of delivery area), Y/N. Published to the
    /// `logistics` topic of bus.bootstrap_servers (a running demo serves 127.0.0.1:9092).
    /// Every bad line is reported by number; the good ones are published all the same.
    Couriers {
        /// The CSV file.
        path: PathBuf,
        /// The courier's id, e.g. cr-07.
        #[arg(long)]
        courier: String,
        /// Its display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_enum, default_value = "standard")]
        speed: Speed,
    },
}

/// A courier's speed class, on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Speed {
    Express,
    Standard,
    Economy,
}

pub async fn run(config: Config, source: Source) -> Result<()> {
    let path = match source {
        Source::OnlineRetail { path } => path,
        Source::Couriers {
            path,
            courier,
            name,
            speed,
        } => return couriers(config, &path, courier, name, speed).await,
    };
    let Some(data_dir) = config.data_dir.clone() else {
        bail!(
            "import needs somewhere to keep what it imports: pass --data-dir DIR (the orders go to DIR/core, the events to the broker; `shopstream demo --data-dir DIR` then serves them)"
        );
    };
    let file =
        std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or_default();
    let bus = crate::app::connect(&config).await?;
    let store = Store::open(&config.core.store, &data_dir.join("core"))
        .await
        .context("cannot open the orders store")?;
    let progress = ProgressBar::new(0);
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} {pos}/{len} invoices ({per_sec}) [{elapsed_precise}] {wide_bar} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    eprintln!(
        "importing {} ({:.1} MB) into {}",
        path.display(),
        size as f64 / 1e6,
        match &config.core.store.url {
            Some(_) => "PostgreSQL (core.store.url)".to_owned(),
            None => data_dir.join("core/orders.sqlite3").display().to_string(),
        }
    );
    let report = import::import(
        &store,
        &config.core.order_rules(),
        &ImportTarget::default(),
        std::io::BufReader::new(file),
        &mut |done, total| {
            progress.set_length(total);
            progress.set_position(done);
        },
    )
    .await
    .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    progress.finish_and_clear();
    let producer = bus.producer()?;
    let mut relayed = 0;
    loop {
        let published = ingest::relay::publish_batch(&store, &producer, 1_000)
            .await
            .context("publishing the imported events")?;
        if published == 0 {
            break;
        }
        relayed += published;
    }
    bus.save();
    print_report(&path, &report, relayed, bus.bootstrap_servers());
    Ok(())
}

fn print_report(path: &Path, report: &Report, relayed: usize, broker: &str) {
    println!(
        "{} lines, {} invoices with importable lines: {} orders placed and paid ({} lines), {} refunds from cancellations",
        report.lines, report.invoices, report.orders_placed, report.order_lines, report.refunds
    );
    if report.orders_already_imported + report.refunds_already_imported > 0 {
        println!(
            "already imported before: {} orders, {} refunds (left as they were)",
            report.orders_already_imported, report.refunds_already_imported
        );
    }
    println!("{relayed} events published to {broker}");
    let mut by_code: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
    for problem in &report.skipped {
        by_code.entry(problem.code).or_default().push(problem.line);
        if problem.code == import::online_retail::MALFORMED {
            eprintln!("{}:{}: {}", path.display(), problem.line, problem.message);
        }
    }
    for (code, lines) in by_code {
        let shown: Vec<String> = lines.iter().take(8).map(u64::to_string).collect();
        let more = lines.len().saturating_sub(shown.len());
        println!(
            "skipped {} lines ({code}): lines {}{}",
            lines.len(),
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
}

/// Publishes a courier and its coverage list; fails (after publishing the good lines) when a
/// line was bad, so a script notices.
async fn couriers(
    config: Config,
    path: &Path,
    courier: String,
    name: Option<String>,
    speed: Speed,
) -> Result<()> {
    use model::calendar::Weekday;
    use model::payload::{CourierSpeed, CourierUpserted};
    use model::{CourierId, Envelope, Event, MerchantId};

    if config.bus.bootstrap_servers.is_none() {
        bail!(
            "import couriers publishes to a running cluster: set bus.bootstrap_servers (a running \
             `shopstream demo` serves one on 127.0.0.1:9092), e.g. \
             --set bus.bootstrap_servers=127.0.0.1:9092"
        );
    }
    if courier.trim().is_empty() {
        bail!("--courier must name the courier, e.g. --courier cr-07");
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let courier_id = CourierId::new(courier.trim());
    let file = streams::serviceability::coverage::parse(&courier_id, &text)
        .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    let now = crate::pump::now_ms();
    let platform = MerchantId::new("platform");
    let registered = Event::CourierUpserted(CourierUpserted {
        courier_id: courier_id.clone(),
        name: name.unwrap_or_else(|| courier_id.to_string()),
        speed: match speed {
            Speed::Express => CourierSpeed::Express,
            Speed::Standard => CourierSpeed::Standard,
            Speed::Economy => CourierSpeed::Economy,
        },
        working_days: Weekday::MON_TO_SAT.to_vec(),
    });
    let events: Vec<Envelope> = std::iter::once(registered)
        .chain(file.districts.into_iter().map(Event::CoverageUpserted))
        .map(|event| Envelope::new(uuid::Uuid::now_v7(), now, platform.clone(), event))
        .collect();
    let bus = crate::app::connect(&config).await?;
    bus.ensure_topics(&[model::Topic::Logistics]).await?;
    let producer = bus.producer()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let count = events.len();
    crate::pump::pump(
        events.into_iter(),
        &producer,
        false,
        &shutdown,
        &ProgressBar::hidden(),
    )
    .await?;
    println!(
        "courier {courier_id}: {} pincodes in {} sorting districts published to {} ({count} events)",
        file.pincodes,
        count - 1,
        bus.bootstrap_servers()
    );
    for bad in &file.bad_lines {
        eprintln!("{}:{}: {}", path.display(), bad.line, bad.reason);
    }
    if !file.bad_lines.is_empty() {
        bail!(
            "{} of the lines in {} were not imported (listed above); the other {} pincodes were",
            file.bad_lines.len(),
            path.display(),
            file.pincodes
        );
    }
    Ok(())
}
