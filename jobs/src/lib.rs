//! jobs: batch work over the lakehouse's committed files, on polars.
//!
//! - [`frames`] reads one table's rows for a merchant and a time range into a DataFrame,
//!   through [`runtime::lake::LakeFiles`] (the I/O edge: a snapshot's file list and bytes);
//! - [`period`] is a calendar month in IST and its Indian financial year (April to March);
//! - [`finance`] turns those frames into the monthly finance export's sheets (pure): sales
//!   lines with GST, invoices, payments, refunds, deliveries, customers, the GSTR-1-shaped
//!   tax summaries and the reconciliation;
//! - [`workbook`] writes the sheets as one formatted XLSX and as a Parquet file each;
//! - [`http`] is `GET /v1/merchants/{merchant_id}/exports` on the front door.

pub mod finance;
pub mod frames;
pub mod http;
pub mod period;
#[cfg(test)]
mod tests;
pub mod workbook;

use std::sync::Arc;

use futures::FutureExt as _;
use runtime::Stage;
use runtime::http::auth::{Keys, Limiter, RateLimit};
use runtime::lake::LakeFiles;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

pub use finance::FinanceConfig;

/// Settings of the batch jobs and their routes (`[jobs]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    pub finance: FinanceConfig,
    /// Exports built at once through the API; more are refused with 503 `overloaded`.
    pub concurrent_exports: usize,
    /// Per key, on the export route.
    pub rate_limit: RateLimit,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            finance: FinanceConfig::default(),
            concurrent_exports: 2,
            rate_limit: RateLimit {
                per_second: 1.0,
                burst: 10.0,
            },
        }
    }
}

impl JobsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrent_exports == 0 {
            return Err("jobs.concurrent_exports must be at least 1".to_owned());
        }
        self.finance.validate()
    }
}

/// The exports route as a stage: no work of its own beyond answering, reading the lake
/// through `lake` and checking callers through `keys`.
pub fn stage(
    config: JobsConfig,
    lake: Arc<dyn LakeFiles>,
    keys: Arc<dyn Keys>,
    shutdown: CancellationToken,
) -> Stage {
    let routes = http::routes(
        lake,
        config.finance,
        config.concurrent_exports,
        keys,
        Arc::new(Limiter::new(config.rate_limit)),
    );
    let readiness = runtime::Readiness::new();
    readiness.set_ready();
    Stage {
        name: "finance exports",
        routes,
        api: http::api(),
        readiness,
        work: async move {
            shutdown.cancelled().await;
            Ok(())
        }
        .boxed(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Lake(#[from] runtime::lake::LakeReadError),
    #[error("polars: {0}")]
    Polars(#[from] polars::error::PolarsError),
    #[error("xlsx: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// The request itself is wrong (a period in the future, a bad format): the message says
    /// what to send instead.
    #[error("{0}")]
    Invalid(String),
    /// The lake holds no product and no order of this merchant.
    #[error("{0}")]
    UnknownMerchant(String),
    #[error(transparent)]
    Cpu(#[from] runtime::cpu::CpuError),
}

impl JobError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> JobError {
        JobError::Io {
            context: context.into(),
            source,
        }
    }
}
