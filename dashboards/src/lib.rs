//! dashboards: a merchant's shop in the browser (today against yesterday, sales, funnel, top
//! products, searches, monthly exports) and the operators' view of the pipeline, served on the
//! front door as server-rendered pages.
//!
//! - [`session`]: signed-in browsers (signed cookie, expiry, CSRF token, language); the front
//!   door asks it who a cookie is, so a signed-in page may also read the shop's own GET APIs
//!   (an export download) with the same isolation checks as a key.
//! - [`passwords`]: dashboard passwords an admin sets, as Argon2id hashes.
//! - `account` (sign-in, sign-out, language, passwords), `pages` (the pages), `views` (answers turned into what a page shows, pure),
//!   `ops` (the operators' view, from the process's metrics and `dead_letters`, which follows
//!   the `dlq` topic), [`i18n`] (English and Hindi,
//!   Indian number and date formats), [`assets`] (every script and style, embedded).
//!
//! Numbers come from the analytics stage through [`runtime::reports::ShopReports`], which the
//! binary injects: the pages never reach into another stage.

mod account;
pub mod assets;
mod dead_letters;
pub mod i18n;
mod ops;
mod pages;
pub mod passwords;
mod render;
pub mod session;
mod views;

use std::path::PathBuf;
use std::sync::Arc;

use futures::FutureExt as _;
use runtime::Stage;
use runtime::http::auth::{Keys, RateLimit};
use runtime::metrics::Registry;
use runtime::reports::ShopSources;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

pub use pages::{HINDI_FONTS, PAGE_ASSETS};

/// The `dashboards` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardsConfig {
    /// Where the session signing key and the password file live; without one, sessions and
    /// passwords last as long as the process. The binary sets it under `data_dir`.
    pub dir: Option<PathBuf>,
    /// How long a sign-in lasts, in minutes.
    pub session_minutes: u64,
    /// Sessions held at once; past it the oldest ends.
    pub max_sessions: usize,
    /// How often the Today page refreshes its numbers, in seconds.
    pub refresh_seconds: u32,
    /// Sign-in attempts per account and per client address (both fields, or the unnamed
    /// one is the API default, far too generous here: `validate` refuses that).
    pub sign_in_rate: RateLimit,
    /// Pages and panels per signed-in caller (a Today panel is five analytics answers).
    pub page_rate: RateLimit,
    /// Mark the session cookie `Secure` (sent over HTTPS only): set it when a TLS proxy
    /// fronts the door; plain HTTP on loopback cannot use such a cookie.
    pub secure_cookies: bool,
    /// INR per unit of other currencies, shown beside amounts in them; the binary copies
    /// `jobs.finance.inr_per_unit` here, so there is one table.
    #[serde(skip)]
    pub inr_per_unit: std::collections::BTreeMap<String, f64>,
}

impl Default for DashboardsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            session_minutes: 12 * 60,
            max_sessions: 10_000,
            refresh_seconds: 1,
            sign_in_rate: RateLimit {
                per_second: 0.2,
                burst: 10.0,
            },
            page_rate: RateLimit {
                per_second: 20.0,
                burst: 60.0,
            },
            secure_cookies: false,
            inr_per_unit: std::collections::BTreeMap::new(),
        }
    }
}

impl DashboardsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.session_minutes == 0 || self.max_sessions == 0 || self.refresh_seconds == 0 {
            return Err(
                "dashboards.session_minutes, max_sessions and refresh_seconds must be positive"
                    .into(),
            );
        }
        let RateLimit { per_second, burst } = self.sign_in_rate;
        if !(per_second > 0.0 && per_second <= 10.0 && (1.0..=100.0).contains(&burst)) {
            return Err(format!(
                "dashboards.sign_in_rate = {{ per_second = {per_second}, burst = {burst} }}: give both, per_second in (0, 10] and burst in [1, 100]; sign-ins are where passwords get guessed"
            ));
        }
        if !(self.page_rate.per_second > 0.0 && self.page_rate.burst >= 1.0) {
            return Err("dashboards.page_rate needs per_second > 0 and burst >= 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

/// The key sessions are signed with, kept in `dir/session.key`: sessions live in memory, but
/// after a restart an old cookie still verifies, so it is told "expired", not "forged".
fn signing_key(dir: Option<&PathBuf>) -> Result<[u8; 32], DashboardError> {
    let mut key = [0u8; 32];
    let Some(dir) = dir else {
        getrandom::fill(&mut key).map_err(|e| DashboardError::Config(e.to_string()))?;
        return Ok(key);
    };
    let io = |what: String| move |source| DashboardError::Io { what, source };
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let path = dir.join("session.key");
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == 32 => {
            key.copy_from_slice(&bytes);
            Ok(key)
        }
        Ok(_) => Err(DashboardError::Config(format!(
            "{} is not a 32-byte key; remove it to make a new one (every browser signs in again)",
            path.display()
        ))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            getrandom::fill(&mut key).map_err(|e| DashboardError::Config(e.to_string()))?;
            write_private(&path, &key, false).map_err(io(format!("writing {}", path.display())))?;
            Ok(key)
        }
        Err(error) => Err(io(format!("reading {}", path.display()))(error)),
    }
}

/// Writes `bytes` to a new file at `path` readable by its owner only; `replace` allows an
/// existing file there (a leftover temporary). Synced before it returns.
#[cfg(unix)]
fn write_private(path: &std::path::Path, bytes: &[u8], replace: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(replace)
        .truncate(replace)
        .create_new(!replace)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, bytes: &[u8], _replace: bool) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Starts the dashboards as a stage: pages and assets on the front door, sign-ins checked
/// against `keys` (and the passwords admins set), numbers from `reports` (absent when this
/// process runs no analytics), the operators' view from `metrics` and the `dlq` topic, which
/// the stage's work follows. The sessions come back
/// too, for the front door ([`runtime::supervisor::StageList::accept_sessions`]).
pub fn stage(
    config: DashboardsConfig,
    bus: Arc<bus::Bus>,
    keys: Arc<dyn Keys>,
    sources: ShopSources,
    metrics: Registry,
    shutdown: CancellationToken,
) -> Result<(Stage, Arc<session::Sessions>), DashboardError> {
    config.validate().map_err(DashboardError::Config)?;
    let passwords =
        passwords::Passwords::open(config.dir.as_ref().map(|dir| dir.join("passwords.json")))?;
    let policy = session::Policy {
        ttl_ms: i64::try_from(config.session_minutes.saturating_mul(60_000)).unwrap_or(i64::MAX),
        max_sessions: config.max_sessions,
        secure: config.secure_cookies,
    };
    let sessions = Arc::new(session::Sessions::new(
        signing_key(config.dir.as_ref())?,
        policy,
        Arc::clone(&keys),
        passwords.clone(),
    ));
    // Hash and compress the embedded files now, not inside the first request.
    assets::Assets::get();
    let dead_letters = Arc::new(dead_letters::DeadLetters::default());
    let routes = pages::routes(pages::Dash::new(
        config,
        Arc::clone(&sessions),
        passwords,
        keys,
        sources,
        metrics,
        Arc::clone(&dead_letters),
    ));
    let mut stage = Stage::background(
        "dashboards",
        async move {
            dead_letters.follow(bus, shutdown).await;
            Ok(())
        }
        .boxed(),
    );
    stage.routes = routes;
    stage.api = pages::api();
    Ok((stage, sessions))
}
