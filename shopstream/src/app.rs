//! The stage list of each role, built from the one config, and the roles that run it:
//! `demo` (embedded broker + every stage + generator), `serve` (every stage, external
//! broker), `core` and `stream <job>` (one stage each, for scale-out).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bus::Bus;
use futures::{FutureExt as _, TryFutureExt as _};
use indicatif::ProgressBar;
use model::Topic;
use runtime::Stage;
use runtime::supervisor::{self, StageList};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::{cancel_on_signal, pump};

/// The merchant keys routes check callers against: the api-keys topic followed by one
/// stage, started the first time a route needs it, as in a process of its own (the core
/// publishes every key and revocation there).
fn merchant_keys(
    keys: &mut Option<Arc<dyn runtime::http::auth::Keys>>,
    list: &mut StageList,
    bus: &Arc<Bus>,
) -> Arc<dyn runtime::http::auth::Keys> {
    if let Some(keys) = keys {
        return Arc::clone(keys);
    }
    let token = CancellationToken::new();
    let (stage, table) = runtime::keys::stage(Arc::clone(bus), token.clone());
    list.push(stage, token);
    let table: Arc<dyn runtime::http::auth::Keys> = table;
    keys.insert(table).clone()
}

/// Temporary directories of a run without `data_dir`, removed when the run ends.
#[derive(Debug, Default)]
struct Scratch(Vec<tempfile::TempDir>);

impl Scratch {
    /// `configured`, or a fresh temporary directory named after `what` that lives as long as
    /// this run (like the embedded broker's in-memory log).
    fn dir_or_temp(&mut self, configured: Option<PathBuf>, what: &str) -> Result<PathBuf> {
        if let Some(dir) = configured {
            return Ok(dir);
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("shopstream-{what}-"))
            .tempdir()?;
        let path = dir.path().to_owned();
        self.0.push(dir);
        Ok(path)
    }
}

/// Which stages a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Embedded broker, every stage and the generator.
    Demo,
    /// Every stage against the configured cluster.
    Serve,
    /// The orders core alone.
    Core,
    /// The trending job alone.
    Trending,
    /// The lakehouse sink and its maintenance alone.
    Lakehouse,
    /// Search alone: its own replica of the index, its own API.
    Search,
    /// Recommendations alone: their own replica of what is learnt, their own API.
    Recommend,
    /// Live merchant analytics alone.
    Analytics,
}

impl Role {
    fn has(self, stage: Role) -> bool {
        matches!(self, Role::Demo | Role::Serve) || self == stage
    }
}

/// Runs `role` until Ctrl-C/SIGTERM or the first stage failure.
pub async fn run(config: Config, role: Role) -> Result<()> {
    // The orders core alone may run on its own embedded broker, as the demo does; the other
    // roles exist to join a shared cluster.
    if !matches!(role, Role::Demo | Role::Core) && config.bus.bootstrap_servers.is_none() {
        bail!(
            "this command runs against a Kafka cluster: set bus.bootstrap_servers (a running \
             `shopstream demo` serves one on 127.0.0.1:9092), or run `shopstream demo`"
        );
    }
    if role == Role::Serve && config.data_dir.is_none() {
        bail!(
            "shopstream serve keeps checkpoints, the core's admin key and the lake under \
             --data-dir DIR (or data_dir in the config); give it one"
        );
    }
    if let Some(dir) = &config.data_dir {
        crate::create_private_dir(dir)?;
    }
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let bus = connect(&config).await?;
    let listener = supervisor::bind(&config.http).await?;
    let http = listener.local_addr()?;
    let mut scratch = Scratch::default();
    let mut list = StageList::default();
    let mut banner = Banner::default();
    let mut keys = None;
    let mut shop_sources = runtime::reports::ShopSources::default();
    if let Some(stats) = bus.broker_stats() {
        crate::recovery::export_broker_stats(stats, &list.metrics(), shutdown.clone());
    }

    // The serviceability model, made first: the core records the promises it makes, and
    // search and recommendations filter by it. Its stage starts below.
    let serviceability_service = matches!(role, Role::Demo | Role::Serve)
        .then(|| streams::serviceability::service(&config.serviceability));
    let deliverability: Option<Arc<dyn model::deliver::Deliverability>> = serviceability_service
        .clone()
        .map(|service| service as Arc<dyn model::deliver::Deliverability>);
    if role.has(Role::Core) {
        let data_dir = match &config.data_dir {
            Some(dir) => dir.join("core"),
            None => scratch.dir_or_temp(None, "core")?,
        };
        let store = match &config.core.store.url {
            Some(_) => "PostgreSQL (core.store.url)".to_owned(),
            None => data_dir.join("orders.sqlite3").display().to_string(),
        };
        let token = CancellationToken::new();
        let (stage, started) = ingest::service::stage(
            config.core.clone(),
            data_dir,
            deliverability.clone(),
            Arc::clone(&bus),
            &list.metrics(),
            token.clone(),
        )
        .await
        .context("orders core failed to start")?;
        list.push(stage, token);
        banner.line(
            "orders API",
            format!(
                "http://{http}/v1  (admin key {})",
                match started.admin_key_file {
                    Some(file) => format!("in {}", file.display()),
                    None => "core.admin_key from the configuration".to_owned(),
                }
            ),
        );
        banner.line("orders store", store);
    }
    if role.has(Role::Trending) {
        let mut trending = config.trending.clone();
        if trending.checkpoint_dir.is_none() && role != Role::Demo {
            bail!(
                "the trending job needs --data-dir DIR (or trending.checkpoint_dir) to keep its checkpoints; instances of one group must share it"
            );
        }
        trending.checkpoint_dir =
            Some(scratch.dir_or_temp(trending.checkpoint_dir.take(), "checkpoints")?);
        let token = CancellationToken::new();
        let (stage, trends) = streams::trending::stage_with_trends(
            trending,
            Arc::clone(&bus),
            &list.metrics(),
            token.clone(),
        )
        .context("trending failed to start")?;
        list.push(stage, token);
        shop_sources.trending = Some(Arc::new(trends));
        banner.line(
            "trending API",
            format!("http://{http}/v1/trending?window=5m&limit=5"),
        );
    }
    if let Some(service) = serviceability_service {
        let mut serviceability = config.serviceability.clone();
        serviceability.checkpoint_dir =
            Some(scratch.dir_or_temp(serviceability.checkpoint_dir.take(), "serviceability")?);
        let bus = Arc::clone(&bus);
        let metrics = list.metrics();
        list.add("serviceability", |token| async move {
            streams::serviceability::stage(serviceability, service, bus, &metrics, token)
        })
        .await?;
        banner.line(
            "serviceability API",
            format!("http://{http}/v1/serviceability?pincode=560034&product_id=p-000001"),
        );
    }
    if role.has(Role::Search) {
        let mut search = config.search.clone();
        if search.dir.is_none() && role != Role::Demo {
            bail!(
                "search needs --data-dir DIR (or search.dir) to keep its index; each instance keeps its own"
            );
        }
        search.dir = Some(scratch.dir_or_temp(search.dir.take(), "search")?);
        let bus = Arc::clone(&bus);
        let metrics = list.metrics();
        let deliverability = deliverability.clone();
        list.add("search", |token| async move {
            search::stage(search, deliverability, bus, &metrics, token)
        })
        .await?;
        banner.line(
            "search API",
            format!("http://{http}/v1/search?q=kurta&pincode=560034"),
        );
    }
    if role.has(Role::Recommend) {
        let mut recommend = config.recommend.clone();
        if recommend.dir.is_none() && role != Role::Demo {
            bail!(
                "recommendations need --data-dir DIR (or recommend.dir) to keep what they learn; each instance keeps its own"
            );
        }
        recommend.dir = Some(scratch.dir_or_temp(recommend.dir.take(), "recommend")?);
        let bus = Arc::clone(&bus);
        let metrics = list.metrics();
        let deliverability = deliverability.clone();
        list.add("recommend", |token| async move {
            recommend::stage(recommend, deliverability, bus, &metrics, token)
        })
        .await?;
        banner.line(
            "recommendations API",
            format!("http://{http}/v1/recommendations/similar?product_id=p-000001"),
        );
    }
    if role.has(Role::Analytics) {
        let mut analytics = config.analytics.clone();
        if analytics.checkpoint_dir.is_none() && role != Role::Demo {
            bail!(
                "analytics need --data-dir DIR (or analytics.checkpoint_dir) to keep their live numbers; each instance keeps its own"
            );
        }
        analytics.checkpoint_dir =
            Some(scratch.dir_or_temp(analytics.checkpoint_dir.take(), "analytics")?);
        let keys = merchant_keys(&mut keys, &mut list, &bus);
        let token = CancellationToken::new();
        let (stage, answers) = streams::analytics::stage_with_reports(
            analytics,
            keys,
            Arc::clone(&bus),
            &list.metrics(),
            token.clone(),
        )
        .context("analytics failed to start")?;
        list.push(stage, token);
        shop_sources.reports = Some(Arc::new(answers));
        banner.line(
            "analytics API",
            format!("http://{http}/v1/merchants/m-0001/analytics/sales?grain=hour  (merchant or admin key)"),
        );
    }
    if role.has(Role::Lakehouse) {
        let mut lake = config.lakehouse.clone();
        if lake.dir.is_none() && lake.s3.is_none() {
            if role != Role::Demo {
                bail!(
                    "the lakehouse needs --data-dir DIR (or lakehouse.dir / lakehouse.s3); members of one group must share it"
                );
            }
            lake.dir = Some(scratch.dir_or_temp(None, "lake")?);
        }
        let storage = lake.storage()?;
        let storage_for_jobs = storage.clone();
        banner.line(
            "lakehouse",
            format!(
                "{} (Parquet; committed every {} ms)",
                match storage.location() {
                    lakehouse::storage::Location::Directory(dir) => dir.display().to_string(),
                    lakehouse::storage::Location::S3 { bucket, prefix } =>
                        format!("s3://{bucket}/{prefix}"),
                },
                lake.commit_interval_ms
            ),
        );
        let sink = {
            let (lake, bus) = (lake.clone(), Arc::clone(&bus));
            let stats = Arc::new(lakehouse::sink::SinkStats::registered(&list.metrics()));
            move |token: CancellationToken| async move {
                let readiness = runtime::Readiness::new();
                let mut stage = Stage::background("lakehouse sink", {
                    let readiness = readiness.clone();
                    async move { lakehouse::sink::run(lake, &bus, stats, readiness, token).await }
                        .map_err(Into::into)
                        .boxed()
                });
                stage.readiness = readiness;
                Ok::<_, std::convert::Infallible>(stage)
            }
        };
        list.add("lakehouse sink", sink).await?;
        let maintenance = {
            let lake = lake.clone();
            move |token: CancellationToken| async move {
                Ok::<_, std::convert::Infallible>(Stage::background(
                    "lakehouse maintenance",
                    lakehouse::maintain::run(lake, token)
                        .map_err(Into::into)
                        .boxed(),
                ))
            }
        };
        list.add("lakehouse maintenance", maintenance).await?;
        if matches!(role, Role::Demo | Role::Serve) {
            let (sql_config, sql_password) = crate::config::sql_users(&config)?;
            let sql_listener = tokio::net::TcpListener::bind(&sql_config.listen)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on {} (set sql.listen, e.g. --set sql.listen=127.0.0.1:0)",
                        sql_config.listen
                    )
                })?;
            let sql_address = sql_listener.local_addr()?;
            banner.line(
                "SQL",
                sql_banner(
                    sql_address,
                    sql_password.as_deref(),
                    config
                        .data_dir
                        .as_deref()
                        .filter(|_| config.sql.users.is_empty())
                        .map(crate::config::sql_password_file),
                ),
            );
            let registry = list.metrics();
            let serve = move |token: CancellationToken| async move {
                Ok::<_, std::convert::Infallible>(Stage::background(
                    "SQL endpoint",
                    lakehouse::pg::serve_reported(
                        sql_config,
                        storage,
                        sql_listener,
                        registry,
                        token,
                    )
                    .map_err(Into::into)
                    .boxed(),
                ))
            };
            list.add("SQL endpoint", serve).await?;

            let lake_files = Arc::new(lakehouse::read::CommittedFiles::new(storage_for_jobs));
            let keys = merchant_keys(&mut keys, &mut list, &bus);
            let jobs_config = config.jobs.clone();
            list.add("finance exports", |token| async move {
                Ok::<_, std::convert::Infallible>(jobs::stage(jobs_config, lake_files, keys, token))
            })
            .await?;
            banner.line(
                "finance exports",
                format!("http://{http}/v1/merchants/m-0001/exports?period=YYYY-MM  (merchant or admin key; xlsx or parquet)"),
            );
        }
    }
    if matches!(role, Role::Demo | Role::Serve) {
        let keys = merchant_keys(&mut keys, &mut list, &bus);
        let token = CancellationToken::new();
        let (stage, sessions) = dashboards::stage(
            config.dashboards.clone(),
            Arc::clone(&bus),
            keys,
            shop_sources.clone(),
            list.metrics(),
            token.clone(),
        )
        .context("the dashboards failed to start")?;
        list.push(stage, token);
        list.accept_sessions(sessions);
        banner.line(
            "dashboards",
            format!("http://{http}/  (sign in with a merchant or admin key)"),
        );
    }
    if role == Role::Demo {
        let generator_config = traffic::GeneratorConfig {
            start_ms: pump::now_ms(),
            ..config.generator.clone()
        };
        let producer = bus.producer()?;
        let (history_orders, history_days) = (
            config.generator.history_orders,
            config.generator.history_days,
        );
        let generate = move |token: CancellationToken| async move {
            let generator = traffic::Generator::new(generator_config)?;
            // The delivery network first, then the deliveries of the days before the start
            // (a parcel takes days, a demo minutes), then live traffic.
            let prelude = generator
                .network()
                .into_iter()
                .chain(generator.history(history_orders, history_days));
            let events = prelude.chain(generator);
            Ok::<_, traffic::ConfigError>(Stage::background(
                "generator",
                async move {
                    pump::pump(events, &producer, true, &token, &ProgressBar::hidden()).await?;
                    // The generator is endless: it only ends because it was told to stop.
                    Ok(())
                }
                .map_err(|e: anyhow::Error| e.into())
                .boxed(),
            ))
        };
        list.add("generator", generate).await?;
        banner.line(
            "generator",
            format!(
                "seed {} at {} events/s (mean)",
                config.generator.seed, config.generator.rate
            ),
        );
    }

    let broker = bus.bootstrap_servers().to_owned();
    let title = match role {
        Role::Demo => "shopstream demo is running",
        Role::Serve => "shopstream serve is running",
        Role::Core => "orders core is running",
        Role::Trending => "trending is running",
        Role::Lakehouse => "lakehouse sink is running",
        Role::Search => "search is running",
        Role::Recommend => "recommendations are running",
        Role::Analytics => "analytics are running",
    };
    eprint!(
        "{title}\n{}",
        banner
            .with(
                "kafka broker",
                match (bus.is_embedded(), &config.bus.embedded_data_dir) {
                    (false, _) => broker,
                    (true, None) => format!("{broker} (embedded, in memory: lost when it stops)"),
                    (true, Some(_)) => format!(
                        "{broker} (embedded; a hard kill loses up to {} ms of acknowledged records: use a Kafka cluster in production)",
                        config.bus.embedded_autosave_ms
                    ),
                },
            )
            .with("stages", list.names().join(", "))
            .with(
                "every API",
                format!("http://{http}  (/v1/openapi.json, /docs, /metrics, /readyz)"),
            )
            .with("stop", "Ctrl-C".to_owned())
            .render()
    );
    let outcome = supervisor::run(&config.http, listener, list, shutdown).await;
    bus.save();
    drop(scratch);
    outcome?;
    eprintln!("stopped cleanly: intake stopped, jobs checkpointed and committed, outbox drained");
    Ok(())
}

/// How to reach the SQL endpoint: the password only when it was made for this start.
fn sql_banner(
    address: SocketAddr,
    new_password: Option<&str>,
    password_file: Option<PathBuf>,
) -> String {
    match (new_password, password_file) {
        (Some(password), Some(file)) => format!(
            "psql 'postgresql://analyst:{password}@{address}/shopstream'  (password shown once; kept in {})",
            file.display()
        ),
        (Some(password), None) => {
            format!("psql 'postgresql://analyst:{password}@{address}/shopstream'")
        }
        (None, Some(file)) => format!(
            "psql 'postgresql://analyst@{address}/shopstream'  (password in {})",
            file.display()
        ),
        (None, None) => format!("{address} (Postgres wire; users from sql.users)"),
    }
}

/// The lines printed at start-up: what runs where.
#[derive(Debug, Default)]
struct Banner(Vec<(&'static str, String)>);

impl Banner {
    fn line(&mut self, what: &'static str, value: String) {
        self.0.push((what, value));
    }

    fn with(mut self, what: &'static str, value: String) -> Self {
        self.0.push((what, value));
        self
    }

    fn render(&self) -> String {
        self.0
            .iter()
            .map(|(what, value)| format!("  {what:<15} {value}\n"))
            .collect()
    }
}

/// Connects to the configured cluster (or starts the embedded broker) and brings every topic
/// to the settings its kind asks for.
///
/// First the cluster is checked to be the one the data dir's positions belong to, and after an
/// embedded broker's unclean stop, the stages' positions against the log it came back with
/// ([`crate::recovery`]): nothing runs on another log or on one that went backwards.
pub async fn connect(config: &Config) -> Result<Arc<Bus>> {
    let bus = Bus::connect(config.bus.clone())?;
    crate::recovery::check_cluster(config, &bus).await?;
    if let Some(ends) = bus.broker_unclean_start() {
        crate::recovery::check_positions(config, &bus, ends).await?;
    }
    bus.confirm_start();
    bus.ensure_topics(&Topic::ALL)
        .await
        .context("cannot create or align the topics")?;
    Ok(Arc::new(bus))
}
