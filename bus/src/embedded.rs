//! The embedded Kafka-API broker (noida-db), started in-process when no cluster is configured.
//! Clients reach it over TCP through rdkafka exactly as they would reach a remote cluster, so
//! nothing else in the code knows it is embedded.

use std::net::SocketAddr;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{BusConfig, BusError, Result};

type Save = Arc<Mutex<Box<dyn Fn() + Send + Sync>>>;

pub(crate) struct EmbeddedBroker {
    addr: SocketAddr,
    save: Option<Save>,
    /// Dropping the sender wakes and ends the autosave thread.
    stop_autosave: Option<mpsc::Sender<()>>,
    autosave: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    pub(crate) fn start(config: &BusConfig) -> Result<Self> {
        let listen = config.embedded_listen.as_str();
        let failed = |source| BusError::EmbeddedBroker {
            listen: listen.to_owned(),
            source,
        };
        let Some(dir) = &config.embedded_data_dir else {
            let addr = noida::kafka::spawn(listen).map_err(failed)?;
            tracing::info!(%addr, "embedded Kafka broker started (in memory)");
            return Ok(Self {
                addr,
                save: None,
                stop_autosave: None,
                autosave: None,
            });
        };
        std::fs::create_dir_all(dir).map_err(failed)?;
        // The `_for_test` variant hands us the save closure instead of registering it in
        // noida's process-wide signal handler, which would exit the process on Ctrl-C before
        // our own shutdown (flush sinks, commit offsets) ran.
        let (addr, save) = noida::kafka::spawn_persistent_for_test(listen, dir).map_err(failed)?;
        let save: Save = Arc::new(Mutex::new(Box::new(save)));
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let interval = Duration::from_millis(config.embedded_autosave_ms.max(100));
        let autosave = {
            let save = Arc::clone(&save);
            std::thread::Builder::new()
                .name("broker-autosave".into())
                .spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(interval) {
                        run_save(&save);
                    }
                })
                .map_err(failed)?
        };
        tracing::info!(%addr, dir = %dir.display(), "embedded Kafka broker started (persistent)");
        Ok(Self {
            addr,
            save: Some(save),
            stop_autosave: Some(stop_tx),
            autosave: Some(autosave),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn save(&self) {
        if let Some(save) = &self.save {
            run_save(save);
        }
    }
}

fn run_save(save: &Save) {
    match save.lock() {
        Ok(save) => save(),
        Err(poisoned) => poisoned.into_inner()(),
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
