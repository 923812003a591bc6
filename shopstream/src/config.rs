//! The binary's configuration, layered: built-in defaults, then a TOML file (`--config` or
//! `SHOPSTREAM_CONFIG`), then `SHOPSTREAM__<SECTION>__<KEY>` environment variables, then
//! command-line flags. Every layer is merged into one TOML tree and deserialised once, so an
//! unknown or mistyped key from any layer is refused at start-up with its full path.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use toml::{Table, Value};

/// Everything the binary can be told.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where state that must survive a restart lives (the embedded broker's log). Unset:
    /// memory only.
    pub data_dir: Option<PathBuf>,
    /// The front door every HTTP API is served from.
    pub http: runtime::http::FrontConfig,
    pub bus: bus::BusConfig,
    pub generator: traffic::GeneratorConfig,
    pub trending: streams::trending::TrendingConfig,
    /// Where products can go and by when, learnt from deliveries.
    pub serviceability: streams::serviceability::ServiceabilityConfig,
    /// Product search: the index, ranking weights, the vocabulary.
    pub search: search::SearchConfig,
    /// Recommendations: what is learnt from clicks and orders, and how answers are blended.
    pub recommend: recommend::RecommendConfig,
    /// Live merchant analytics: the window kept, list lengths, the routes' rate limit.
    pub analytics: streams::analytics::AnalyticsConfig,
    /// Batch jobs over the lake: the finance export's HSN codes, INR rates, merchants'
    /// GSTINs, and its route's limits.
    pub jobs: jobs::JobsConfig,
    /// The merchants' pages in the browser: sessions, sign-in limits, refresh.
    pub dashboards: dashboards::DashboardsConfig,
    /// The orders core: `/v1` API, collector, outbox relay, reservation sweeper.
    pub core: ingest::service::CoreConfig,
    /// The Parquet lakehouse and its sink.
    pub lakehouse: lakehouse::LakeConfig,
    /// The SQL endpoint (Postgres wire protocol) over the lakehouse.
    pub sql: lakehouse::pg::SqlConfig,
}

/// Settings from the environment start with this, e.g. `SHOPSTREAM__BUS__PARTITIONS=6`. The
/// double underscore keeps them apart from the variables that are not settings
/// (`SHOPSTREAM_CONFIG`, `SHOPSTREAM_LOG`, the tests' `SHOPSTREAM_TEST_*`, `SHOPSTREAM_SOAK`),
/// which a single underscore would have read as unknown settings.
const ENV_PREFIX: &str = "SHOPSTREAM__";

/// The flags every shopstream binary takes to find its configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, global = true, env = "SHOPSTREAM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Override one setting, e.g. `--set bus.partitions=6` (repeatable; wins over file and env).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
    /// Keep state here across restarts (same as `--set data_dir=DIR`).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// Every layer, with `--data-dir` applied as the last setting.
    pub fn load(&self) -> Result<Config> {
        let mut settings = self.settings.clone();
        if let Some(dir) = &self.data_dir {
            settings.push((
                "data_dir".into(),
                format!("{:?}", dir.display().to_string()),
            ));
        }
        Config::load(self.config.as_deref(), &settings)
    }
}

fn parse_setting(text: &str) -> std::result::Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

impl Config {
    /// Loads the layers. `overrides` are `dotted.path=value` pairs from flags, applied last.
    pub fn load(file: Option<&Path>, overrides: &[(String, String)]) -> Result<Config> {
        Self::load_layers(file, std::env::vars(), overrides)
    }

    /// [`Config::load`] with the environment given, so tests need not change the process's.
    fn load_layers(
        file: Option<&Path>,
        vars: impl Iterator<Item = (String, String)>,
        overrides: &[(String, String)],
    ) -> Result<Config> {
        let mut tree = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                text.parse::<Table>()
                    .map_err(|error| anyhow::anyhow!("config file {}: {error}", path.display()))?
            }
            None => Table::new(),
        };
        let mut env: Vec<(String, String)> = vars
            .filter_map(|(name, value)| {
                let rest = name.strip_prefix(ENV_PREFIX)?;
                Some((rest.to_ascii_lowercase().replace("__", "."), value))
            })
            .collect();
        env.sort();
        for (path, value) in env.iter().chain(overrides) {
            set_path(&mut tree, path, value)
                .with_context(|| format!("cannot apply setting {path}={value}"))?;
        }
        let mut config: Config =
            serde_path_to_error::deserialize(Value::Table(tree)).map_err(|error| {
                anyhow::anyhow!(
                    "invalid configuration at `{}`: {}",
                    error.path(),
                    error.inner()
                )
            })?;
        if let Some(dir) = &config.data_dir
            && config.bus.embedded_data_dir.is_none()
        {
            config.bus.embedded_data_dir = Some(dir.join("broker"));
        }
        if let Some(dir) = &config.data_dir
            && config.trending.checkpoint_dir.is_none()
        {
            config.trending.checkpoint_dir = Some(dir.join("checkpoints/trending"));
        }
        if let Some(dir) = &config.data_dir
            && config.serviceability.checkpoint_dir.is_none()
        {
            config.serviceability.checkpoint_dir = Some(dir.join("checkpoints/serviceability"));
        }
        if let Some(dir) = &config.data_dir
            && config.analytics.checkpoint_dir.is_none()
        {
            config.analytics.checkpoint_dir = Some(dir.join("checkpoints/analytics"));
        }
        if let Some(dir) = &config.data_dir
            && config.dashboards.dir.is_none()
        {
            config.dashboards.dir = Some(dir.join("dashboards"));
        }
        if let Some(dir) = &config.data_dir
            && config.search.dir.is_none()
        {
            config.search.dir = Some(dir.join("search"));
        }
        if let Some(dir) = &config.data_dir
            && config.recommend.dir.is_none()
        {
            config.recommend.dir = Some(dir.join("recommend"));
        }
        if let Some(dir) = &config.data_dir
            && config.lakehouse.dir.is_none()
            && config.lakehouse.s3.is_none()
        {
            config.lakehouse.dir = Some(dir.join("lake"));
        }
        config
            .http
            .validate()
            .map_err(|message| anyhow::anyhow!("invalid configuration: {message}"))?;
        config.generator.validate()?;
        config.trending.validate()?;
        config.serviceability.validate()?;
        config.search.validate()?;
        config.recommend.validate()?;
        config.analytics.validate()?;
        config.jobs.validate().map_err(anyhow::Error::msg)?;
        config
            .dashboards
            .validate()
            .map_err(|message| anyhow::anyhow!("invalid configuration: {message}"))?;
        // One GST table: the export taxes lines without a recorded rate as the core would.
        config.jobs.finance.gst = config.core.gst.clone();
        // One table of rupee rates: the export's INR column and the pages' rupees beside.
        config.dashboards.inr_per_unit = config.jobs.finance.inr_per_unit.clone();
        config.lakehouse.validate()?;
        Ok(config)
    }
}

/// The SQL endpoint's settings with its users. Without configured users there is one,
/// `analyst`, who sees everything; its password is kept in `<data_dir>/sql-password` (made on
/// first use, readable by the owner only) or, without a data dir, made up for this run. The
/// password comes back only when it was made just now, to be shown once: a secret printed on
/// every start ends up in every log that keeps the console.
pub fn sql_users(config: &Config) -> Result<(lakehouse::pg::SqlConfig, Option<String>)> {
    let mut sql = config.sql.clone();
    if !sql.users.is_empty() {
        return Ok((sql, None));
    }
    let made_up = || uuid::Uuid::new_v4().simple().to_string()[..20].to_owned();
    let (password, new) = match &config.data_dir {
        Some(dir) => {
            let file = sql_password_file(dir);
            match std::fs::read_to_string(&file) {
                Ok(text) if !text.trim().is_empty() => (text.trim().to_owned(), false),
                _ => {
                    use std::io::Write;
                    use std::os::unix::fs::OpenOptionsExt;
                    crate::create_private_dir(dir)?;
                    let password = made_up();
                    let mut out = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&file)
                        .with_context(|| format!("cannot write {}", file.display()))?;
                    writeln!(out, "{password}")?;
                    (password, true)
                }
            }
        }
        None => (made_up(), true),
    };
    sql.users.push(lakehouse::pg::SqlUser {
        name: "analyst".into(),
        password: password.clone(),
        merchant_id: None,
    });
    Ok((sql, new.then_some(password)))
}

/// Where the `analyst` password is kept under a data dir.
pub fn sql_password_file(data_dir: &Path) -> PathBuf {
    data_dir.join("sql-password")
}

/// Sets `a.b.c` in `tree` to `value`, read as a TOML value when it is one (numbers, booleans,
/// quoted strings) and as a plain string otherwise.
fn set_path(tree: &mut Table, path: &str, value: &str) -> Result<()> {
    let keys: Vec<&str> = path.split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        bail!("setting path {path:?} has an empty part");
    }
    let parsed = format!("v = {value}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(value.to_owned()));
    let (last, parents) = keys.split_last().unwrap_or((&"", &[]));
    let mut table = tree;
    for key in parents {
        let entry = table
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        table = match entry {
            Value::Table(inner) => inner,
            _ => bail!("{key} is a value, not a section"),
        };
    }
    table.insert((*last).to_owned(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str, overrides: &[(&str, &str)]) -> Result<Config> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("shopstream.toml");
        std::fs::write(&path, text)?;
        let overrides: Vec<(String, String)> = overrides
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::load(Some(&path), &overrides)
    }

    #[test]
    fn layers_apply_in_order_flags_last() {
        let config = load_text(
            "[bus]\npartitions = 6\n[http]\nlisten = \"127.0.0.1:9000\"\n",
            &[("http.listen", "127.0.0.1:0"), ("generator.rate", "50")],
        )
        .unwrap();
        assert_eq!(config.bus.partitions, 6);
        assert_eq!(config.http.listen, "127.0.0.1:0");
        assert_eq!(config.generator.rate, 50.0);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let error = load_text("[bus]\nbootstrap_srvers = \"x:9092\"\n", &[]).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("bus.bootstrap_srvers"), "{message}");
        let error = load_text("", &[("trending.weights.like", "2")]).unwrap_err();
        assert!(
            format!("{error:#}").contains("trending.weights.like"),
            "{error:#}"
        );
    }

    #[test]
    fn mistyped_values_and_bad_ranges_are_refused() {
        let error = load_text("[bus]\npartitions = \"many\"\n", &[]).unwrap_err();
        assert!(format!("{error:#}").contains("bus.partitions"), "{error:#}");
        let error = load_text("", &[("trending.pane_ms", "7")]).unwrap_err();
        assert!(
            format!("{error:#}").contains("trending.windows"),
            "{error:#}"
        );
    }

    #[test]
    fn only_prefixed_variables_are_settings() {
        let vars = [
            ("SHOPSTREAM_TEST_POSTGRES_URL", "postgres://localhost/x"),
            ("SHOPSTREAM_SOAK", "1"),
            ("SHOPSTREAM_LOG", "debug"),
            ("SHOPSTREAM__BUS__PARTITIONS", "6"),
            ("SHOPSTREAM__HTTP__LISTEN", "127.0.0.1:9999"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let config = Config::load_layers(None, vars.into_iter(), &[]).unwrap();
        assert_eq!(config.bus.partitions, 6);
        assert_eq!(config.http.listen, "127.0.0.1:9999");
        let typo = [("SHOPSTREAM__BUS__PARTITONS".to_owned(), "6".to_owned())];
        let error = Config::load_layers(None, typo.into_iter(), &[]).unwrap_err();
        assert!(format!("{error:#}").contains("bus.partitons"), "{error:#}");
    }

    #[test]
    fn data_dir_places_the_broker_log_and_checkpoints_inside_it() {
        let config = load_text("data_dir = \"/tmp/shop\"\n", &[]).unwrap();
        assert_eq!(
            config.bus.embedded_data_dir,
            Some(PathBuf::from("/tmp/shop/broker"))
        );
        assert_eq!(
            config.trending.checkpoint_dir,
            Some(PathBuf::from("/tmp/shop/checkpoints/trending"))
        );
        assert_eq!(config.lakehouse.dir, Some(PathBuf::from("/tmp/shop/lake")));
    }

    #[test]
    fn the_sql_password_is_shown_only_when_it_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("data_dir = {:?}\n", dir.path().join("data"));
        let config = load_text(&text, &[]).unwrap();
        let (_, first) = sql_users(&config).unwrap();
        assert!(first.is_some(), "a new password is shown once");
        let (sql, second) = sql_users(&config).unwrap();
        assert_eq!(second, None, "a stored password is not shown again");
        assert_eq!(Some(&sql.users[0].password), first.as_ref());
    }
}
