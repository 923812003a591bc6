//! Runs a stage list behind the front door until shutdown or the first failure.
//!
//! Start: every stage's routes are mounted on one listener (`http.listen`), then every
//! stage's work is spawned, in list order. A stage whose work fails, or ends before shutdown,
//! is logged with its name and brings the whole process down with a non-zero exit.
//!
//! Shutdown, in this order:
//! 1. the front door stops accepting and lets requests in progress finish (intake stops);
//! 2. stages are stopped one at a time in reverse list order, each by cancelling its own token
//!    and awaiting its work: the generator first (demo), then the SQL endpoint and the stream
//!    jobs (which publish, checkpoint and commit), the orders core last (its relay drains the
//!    outbox to the broker);
//! 3. the caller saves the embedded broker's log, when there is one.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::http::auth::BrowserSessions;
use crate::http::front::{self, AddressLimiter, FrontConfig, Mounted};
use crate::metrics::Registry;
use crate::stage::{Stage, StageError};

/// Why a process of stages stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The front door's address is taken or not ours; the operator must change it.
    #[error(
        "cannot listen on {listen}: {source} (set http.listen, e.g. --set http.listen=127.0.0.1:0)"
    )]
    Bind {
        listen: String,
        source: std::io::Error,
    },
    /// A stage could not start.
    #[error("stage {stage} could not start: {error}")]
    Start { stage: String, error: StageError },
    /// A stage failed, panicked or stopped on its own.
    #[error("stage {stage} {what}")]
    Stage { stage: &'static str, what: String },
    /// The HTTP listener failed.
    #[error("the front door {0}")]
    FrontDoor(String),
}

type Result<T, E = SupervisorError> = std::result::Result<T, E>;

/// The stages of one process, in start order, each with the token that stops it.
#[derive(Debug, Default)]
pub struct StageList {
    stages: Vec<(Stage, CancellationToken)>,
    metrics: Registry,
    sessions: Option<Arc<dyn BrowserSessions>>,
}

impl StageList {
    /// A handle on the registry every stage of this list reports its series to (the front
    /// door's `/metrics`).
    pub fn metrics(&self) -> Registry {
        self.metrics.clone()
    }

    /// Starts the next stage with a token of its own, which only the supervisor cancels.
    pub async fn add<F, E>(
        &mut self,
        name: &str,
        start: impl FnOnce(CancellationToken) -> F,
    ) -> Result<()>
    where
        F: Future<Output = Result<Stage, E>>,
        E: Into<StageError>,
    {
        let token = CancellationToken::new();
        let stage = start(token.clone())
            .await
            .map_err(|error| SupervisorError::Start {
                stage: name.to_owned(),
                error: error.into(),
            })?;
        self.stages.push((stage, token));
        Ok(())
    }

    pub fn push(&mut self, stage: Stage, token: CancellationToken) {
        self.stages.push((stage, token));
    }

    /// Lets browsers signed in through `sessions` read every stage's GET routes as their
    /// caller (the dashboards' sessions).
    pub fn accept_sessions(&mut self, sessions: Arc<dyn BrowserSessions>) {
        self.sessions = Some(sessions);
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.stages.iter().map(|(stage, _)| stage.name).collect()
    }
}

/// Binds the front door's listener, naming the setting to change when the port is taken.
pub async fn bind(config: &FrontConfig) -> Result<TcpListener> {
    TcpListener::bind(&config.listen)
        .await
        .map_err(|source| SupervisorError::Bind {
            listen: config.listen.clone(),
            source,
        })
}

/// A stage list running in the background (tests, benches): where its front door listens,
/// the token that stops it, and its outcome.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<()>>,
}

impl Running {
    /// Stops every stage in order and returns the outcome.
    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.task
            .await
            .map_err(|panic| SupervisorError::FrontDoor(format!("supervisor panicked: {panic}")))?
    }
}

/// Runs `list` in the background behind a front door on a free port of 127.0.0.1, with the
/// default limits: how tests and benches start stages in-process.
pub async fn spawn_local(list: StageList) -> Result<Running> {
    let config = FrontConfig {
        listen: "127.0.0.1:0".to_owned(),
        ..FrontConfig::default()
    };
    let listener = bind(&config).await?;
    spawn(config, listener, list)
}

/// Runs `list` behind a front door on `listener` in the background.
pub fn spawn(config: FrontConfig, listener: TcpListener, list: StageList) -> Result<Running> {
    let addr = listener
        .local_addr()
        .map_err(|source| SupervisorError::Bind {
            listen: config.listen.clone(),
            source,
        })?;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { run(&config, listener, list, shutdown).await }
    });
    Ok(Running {
        addr,
        shutdown,
        task,
    })
}

/// Serves every stage's routes on `listener` and runs their work until `shutdown` is
/// cancelled or a stage fails; then stops everything in the documented order.
pub async fn run(
    config: &FrontConfig,
    listener: TcpListener,
    list: StageList,
    shutdown: CancellationToken,
) -> Result<()> {
    let addresses = AddressLimiter::new(config);
    let mut mounts = Vec::new();
    let mut names = Vec::new();
    let mut tokens = Vec::new();
    let mut works = Vec::new();
    for (stage, token) in list.stages {
        mounts.push((
            Mounted {
                name: stage.name,
                readiness: stage.readiness,
            },
            stage.routes,
            stage.api,
        ));
        names.push(stage.name);
        tokens.push(token);
        works.push(stage.work);
    }
    let router = front::router(
        config,
        mounts,
        list.metrics,
        addresses.clone(),
        list.sessions,
    );
    let front_stop = CancellationToken::new();
    let mut front_door = tokio::spawn({
        let (config, stop) = (config.clone(), front_stop.clone());
        async move { front::serve(&config, listener, router, addresses, stop).await }
    });
    // Each stage's work reports its outcome, by index, when it ends.
    let (ended_tx, mut ended) = mpsc::unbounded_channel();
    for (index, work) in works.into_iter().enumerate() {
        let (tx, name) = (ended_tx.clone(), names[index]);
        let task = tokio::spawn(work);
        tokio::spawn(async move {
            let outcome = match task.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(SupervisorError::Stage {
                    stage: name,
                    what: format!("failed: {error}"),
                }),
                Err(panic) => Err(SupervisorError::Stage {
                    stage: name,
                    what: format!("panicked: {panic}"),
                }),
            };
            let _ = tx.send((index, outcome));
        });
    }
    drop(ended_tx);

    let mut outcomes: Vec<Option<Result<()>>> = names.iter().map(|_| None).collect();
    let mut failure: Option<SupervisorError> = None;
    let mut front_done = false;
    tokio::select! {
        () = shutdown.cancelled() => {}
        served = &mut front_door => {
            front_done = true;
            failure = Some(SupervisorError::FrontDoor(match served {
                Ok(Ok(())) => "stopped on its own".to_owned(),
                Ok(Err(error)) => format!("failed: {error}"),
                Err(panic) => format!("panicked: {panic}"),
            }));
        }
        Some((index, outcome)) = ended.recv() => {
            let error = outcome.err().unwrap_or_else(|| SupervisorError::Stage {
                stage: names[index],
                what: "stopped on its own before shutdown".to_owned(),
            });
            tracing::error!(stage = names[index], "{error}; stopping every stage");
            failure = Some(error);
            outcomes[index] = Some(Ok(()));
        }
    }

    front_stop.cancel();
    if !front_done {
        match front_door.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                failure.get_or_insert(SupervisorError::FrontDoor(format!("failed: {error}")));
            }
            Err(panic) => {
                failure.get_or_insert(SupervisorError::FrontDoor(format!("panicked: {panic}")));
            }
        }
    }
    for index in (0..names.len()).rev() {
        tracing::info!(stage = names[index], "stopping");
        tokens[index].cancel();
        while outcomes[index].is_none() {
            let Some((ended_index, outcome)) = ended.recv().await else {
                break;
            };
            outcomes[ended_index] = Some(outcome);
        }
    }
    for outcome in outcomes.into_iter().flatten() {
        if let Err(error) = outcome {
            tracing::error!("{error}");
            failure.get_or_insert(error);
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::FutureExt as _;

    use super::*;

    /// A stage that records when it is told to stop, then ends.
    fn recording(name: &'static str, log: &Arc<Mutex<Vec<&'static str>>>) -> StageList {
        let mut list = StageList::default();
        let token = CancellationToken::new();
        let (log, stop) = (Arc::clone(log), token.clone());
        list.push(
            Stage::background(
                name,
                async move {
                    stop.cancelled().await;
                    log.lock().unwrap().push(name);
                    Ok(())
                }
                .boxed(),
            ),
            token,
        );
        list
    }

    #[tokio::test]
    async fn stages_stop_in_reverse_order_of_the_list() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut list = StageList::default();
        for name in ["core", "trending", "generator"] {
            let mut one = recording(name, &log);
            list.stages.append(&mut one.stages);
        }
        let running = spawn_local(list).await.unwrap();
        running.stop().await.unwrap();
        assert_eq!(*log.lock().unwrap(), ["generator", "trending", "core"]);
    }

    #[tokio::test]
    async fn a_failing_stage_stops_the_others_and_is_named() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut list = recording("core", &log);
        list.push(
            Stage::background(
                "trending",
                async { Err::<(), StageError>("checkpoint dir vanished".into()) }.boxed(),
            ),
            CancellationToken::new(),
        );
        let running = spawn_local(list).await.unwrap();
        let error = running.task.await.unwrap().unwrap_err().to_string();
        assert!(
            error.contains("trending") && error.contains("checkpoint dir vanished"),
            "{error}"
        );
        assert_eq!(*log.lock().unwrap(), ["core"], "the others were stopped");
    }

    #[tokio::test]
    async fn a_stage_that_ends_on_its_own_is_a_failure() {
        let mut list = StageList::default();
        list.push(
            Stage::background("generator", async { Ok(()) }.boxed()),
            CancellationToken::new(),
        );
        let running = spawn_local(list).await.unwrap();
        let error = running.task.await.unwrap().unwrap_err().to_string();
        assert!(error.contains("generator stopped on its own"), "{error}");
    }
}
