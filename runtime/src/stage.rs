//! The one shape of a stage: its routes (mounted by the binary on the front door), its part
//! of the OpenAPI document, its metrics, its readiness, and its background work, started
//! with (config, bus, shutdown token) by the stage's own crate. A stage binds no port and
//! never cancels the token it was given: the supervisor decides when it stops.

use std::sync::{Arc, Mutex};

use axum::Router;
use futures::future::BoxFuture;

/// Why a stage's work ended with an error, in the stage's own words.
pub type StageError = Box<dyn std::error::Error + Send + Sync>;

/// A started stage, ready to be mounted and supervised.
pub struct Stage {
    /// Names the stage in logs, `/readyz` and errors (`trending`, `core`, ...).
    pub name: &'static str,
    /// Its HTTP routes, state applied; empty for a stage without an API.
    pub routes: Router,
    /// The OpenAPI description of `routes`.
    pub api: utoipa::openapi::OpenApi,
    pub readiness: Readiness,
    /// Runs until the stage's shutdown token is cancelled (then flushes, checkpoints and
    /// commits) or until it fails. Ending on its own before shutdown is a failure too.
    pub work: BoxFuture<'static, Result<(), StageError>>,
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage")
            .field("name", &self.name)
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}

impl Stage {
    /// A stage with work only: no routes, ready from the start.
    pub fn background(
        name: &'static str,
        work: BoxFuture<'static, Result<(), StageError>>,
    ) -> Stage {
        let readiness = Readiness::new();
        readiness.set_ready();
        Stage {
            name,
            routes: Router::new(),
            api: utoipa::openapi::OpenApi::default(),
            readiness,
            work,
        }
    }
}

/// Whether a stage can serve: set by the stage, read by `/readyz`. A new one is not ready and
/// says why not.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<Mutex<Result<(), String>>>);

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(Err("starting".to_owned()))))
    }

    pub fn set_ready(&self) {
        *self.lock() = Ok(());
    }

    /// Not ready, and why (shown on `/readyz`).
    pub fn set_not_ready(&self, why: impl Into<String>) {
        *self.lock() = Err(why.into());
    }

    pub fn get(&self) -> Result<(), String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Result<(), String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
