//! The embedded Kafka-API broker (noida-db's engine), started in-process when no cluster is
//! configured. Clients reach it over TCP through rdkafka exactly as they would reach a remote
//! cluster, so nothing else in the code knows it is embedded.
//!
//! What it promises: it acknowledges from memory and writes a snapshot of its whole state
//! every `embedded_autosave_ms` and on a clean shutdown. A snapshot is written to a temporary
//! file, fsynced, renamed over the old one and the directory fsynced, so the snapshot on disk
//! is always a whole one. A hard kill (SIGKILL, power cut) loses what was acknowledged after
//! the last snapshot: up to `embedded_autosave_ms` of records. A save that fails is logged as
//! an error every time and counted ([`BrokerStats`]), never ignored. A run that ended without
//! its final save leaves no `clean-shutdown` marker; the next start says so and keeps where
//! each log ended as loaded ([`EmbeddedBroker::unclean_start`]), so the binary can check that
//! no stage's durable position is past the log before any stage or producer runs. For production, point `bus.bootstrap_servers` at
//! a replicated Kafka-API cluster.
//!
//! The broker is started through noida's public engine API (snapshot in, snapshot out,
//! connection handler) rather than its `spawn_persistent`, whose save neither fsyncs nor
//! reports errors.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use noida::kafka::engine::{Engine, Snapshot};

use crate::{BusConfig, BusError, LogEnds, Result};

const SNAPSHOT: &str = "kafka.json";
const CLEAN: &str = "clean-shutdown";

/// How the broker's saves are going, for `/metrics`.
#[derive(Debug, Default)]
pub struct BrokerStats {
    pub saves: AtomicU64,
    pub save_failures: AtomicU64,
    /// Of the last successful save.
    pub snapshot_bytes: AtomicU64,
    pub save_micros: AtomicU64,
}

struct Persistence {
    engine: Engine,
    dir: PathBuf,
    stats: Arc<BrokerStats>,
    /// One save at a time: the autosave thread and a shutdown may meet.
    saving: Mutex<()>,
}

impl Persistence {
    fn save(&self) -> std::io::Result<()> {
        let _one = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let path = self.dir.join(SNAPSHOT);
        let temporary = self.dir.join(format!("{SNAPSHOT}.tmp"));
        // Streamed to the file: the engine's copy of its state is held anyway, but the JSON
        // text (about twice its size) never is. A 1 GB snapshot held as one buffer made
        // every save a 1 GB spike in resident memory (the soak in BENCHMARKS.md).
        let mut file =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&temporary)?);
        serde_json::to_writer(&mut file, &self.engine.snapshot()).map_err(std::io::Error::other)?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        drop(file);
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        self.stats.saves.fetch_add(1, Ordering::Relaxed);
        self.stats.snapshot_bytes.store(bytes, Ordering::Relaxed);
        self.stats
            .save_micros
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Saves, and says so loudly when it cannot.
    fn save_or_report(&self) -> bool {
        match self.save() {
            Ok(()) => true,
            Err(error) => {
                self.stats.save_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    %error,
                    dir = %self.dir.display(),
                    "the embedded broker could not save its snapshot: what it acknowledged since the last save would not survive a restart"
                );
                false
            }
        }
    }
}

pub(crate) struct EmbeddedBroker {
    addr: SocketAddr,
    persistence: Option<Arc<Persistence>>,
    stats: Arc<BrokerStats>,
    /// Where the logs ended when this run loaded them, if the last run did not end with its
    /// final save (a first start counts: nothing says it was clean).
    unclean_start: Option<LogEnds>,
    /// Whether a clean shutdown may say so. After an unclean start, only once the stages'
    /// positions were checked against the log ([`EmbeddedBroker::confirm_start`]): a run that
    /// stops on that check must leave the next start just as suspicious.
    may_mark_clean: std::sync::atomic::AtomicBool,
    /// Dropping the sender wakes and ends the autosave thread.
    stop_autosave: Option<mpsc::Sender<()>>,
    autosave: Option<JoinHandle<()>>,
}

fn load(dir: &Path, host: String, port: i32) -> std::io::Result<(Engine, LogEnds)> {
    let path = dir.join(SNAPSHOT);
    if !path.exists() {
        return Ok((Engine::new(host, port), LogEnds::new()));
    }
    let bytes = std::fs::read(&path)?;
    let snapshot: Snapshot = serde_json::from_slice(&bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not a broker snapshot: {e}", path.display()),
        )
    })?;
    let ends = snapshot
        .topics
        .iter()
        .flat_map(|(name, topic)| {
            topic
                .partitions
                .iter()
                .map(move |(id, partition)| ((name.clone(), *id), partition.high_watermark))
        })
        .collect();
    Ok((Engine::new_persistent(snapshot, host, port), ends))
}

impl EmbeddedBroker {
    pub(crate) fn start(config: &BusConfig) -> Result<Self> {
        let listen = config.embedded_listen.as_str();
        let failed = |source| BusError::EmbeddedBroker {
            listen: listen.to_owned(),
            source,
        };
        let listener = TcpListener::bind(listen).map_err(failed)?;
        let addr = listener.local_addr().map_err(failed)?;
        let (host, port) = (addr.ip().to_string(), i32::from(addr.port()));
        let stats = Arc::new(BrokerStats::default());
        let Some(dir) = &config.embedded_data_dir else {
            let engine = Engine::new(host, port);
            engine.spawn_log_cleaner();
            crate::longpoll::serve(listener, engine).map_err(failed)?;
            tracing::info!(%addr, "embedded Kafka broker started (in memory)");
            return Ok(Self {
                addr,
                persistence: None,
                stats,
                unclean_start: None,
                may_mark_clean: false.into(),
                stop_autosave: None,
                autosave: None,
            });
        };
        std::fs::create_dir_all(dir).map_err(failed)?;
        let had_snapshot = dir.join(SNAPSHOT).exists();
        // The marker says the last run ended with its final save; from now on it would lie.
        let clean = dir.join(CLEAN);
        let was_clean = clean.exists();
        match std::fs::remove_file(&clean) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(failed(error)),
        }
        let (engine, ends) = load(dir, host, port).map_err(failed)?;
        engine.spawn_log_cleaner();
        let persistence = Arc::new(Persistence {
            engine: engine.clone(),
            dir: dir.clone(),
            stats: Arc::clone(&stats),
            saving: Mutex::new(()),
        });
        crate::longpoll::serve(listener, engine).map_err(failed)?;
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let interval = Duration::from_millis(config.embedded_autosave_ms.max(100));
        let autosave = {
            let persistence = Arc::clone(&persistence);
            std::thread::Builder::new()
                .name("broker-autosave".into())
                .spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(interval) {
                        persistence.save_or_report();
                    }
                })
                .map_err(failed)?
        };
        if had_snapshot && !was_clean {
            tracing::warn!(
                dir = %dir.display(),
                "the embedded broker's last run ended without its final save (killed?): records it acknowledged in up to {} ms before that are gone, and their offsets will be handed out again",
                config.embedded_autosave_ms
            );
        }
        tracing::info!(%addr, dir = %dir.display(), "embedded Kafka broker started (persistent)");
        Ok(Self {
            addr,
            persistence: Some(persistence),
            stats,
            unclean_start: (!was_clean).then_some(ends),
            may_mark_clean: was_clean.into(),
            stop_autosave: Some(stop_tx),
            autosave: Some(autosave),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn stats(&self) -> Arc<BrokerStats> {
        Arc::clone(&self.stats)
    }

    pub(crate) fn unclean_start(&self) -> Option<&LogEnds> {
        self.unclean_start.as_ref()
    }

    pub(crate) fn confirm_start(&self) {
        self.may_mark_clean.store(true, Ordering::Release);
    }

    /// The final save of a clean shutdown: saves, then marks the shutdown clean. `false`
    /// (after logging why) when it could not save.
    pub(crate) fn save(&self) -> bool {
        let Some(persistence) = &self.persistence else {
            return true;
        };
        if !persistence.save_or_report() {
            return false;
        }
        if !self.may_mark_clean.load(Ordering::Acquire) {
            return true;
        }
        if let Err(error) = std::fs::write(persistence.dir.join(CLEAN), b"")
            .and_then(|()| std::fs::File::open(&persistence.dir).and_then(|dir| dir.sync_all()))
        {
            tracing::error!(%error, "could not mark the broker's clean shutdown");
        }
        true
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        drop(self.stop_autosave.take());
        if let Some(handle) = self.autosave.take() {
            let _ = handle.join();
        }
        self.save();
    }
}
