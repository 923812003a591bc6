//! `shopstream job finance-export`: one merchant's month as a formatted workbook and a
//! Parquet file per sheet, read from the lake's committed files.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use jobs::period::Period;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// One merchant's finance export for a month (IST): `finance-<merchant>-<period>.xlsx`
    /// and `finance-<merchant>-<period>/<sheet>.parquet` in --out.
    FinanceExport {
        /// The merchant, e.g. m-0001.
        #[arg(long)]
        merchant: String,
        /// The month, YYYY-MM; not after the current one.
        #[arg(long)]
        period: String,
        /// Where the files go (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

pub async fn run(config: Config, command: JobCommand) -> Result<()> {
    let JobCommand::FinanceExport {
        merchant,
        period,
        out,
    } = command;
    let period = Period::parse(&period).map_err(anyhow::Error::msg)?;
    let storage = config.lakehouse.storage().context(
        "shopstream job reads the lakehouse: pass --data-dir DIR or set lakehouse.dir / lakehouse.s3",
    )?;
    let lake = lakehouse::read::CommittedFiles::new(storage);
    let reading = ProgressBar::new_spinner();
    reading.set_message(format!("reading {merchant}'s {period} from the lake"));
    reading.enable_steady_tick(std::time::Duration::from_millis(120));
    let export = jobs::finance::export(
        &lake,
        &config.jobs.finance,
        &merchant,
        period,
        runtime::now_ms(),
    )
    .await?;
    reading.finish_and_clear();
    let rows: u64 = export.sheets.iter().map(|s| s.frame.height() as u64).sum();
    let bar = ProgressBar::new(rows).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows written ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = bar.clone();
    let written = tokio::task::spawn_blocking(move || {
        jobs::workbook::write_all(&export, &out, &mut |n| progress.set_position(n))
    })
    .await??;
    bar.finish();
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}
