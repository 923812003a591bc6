//! Who gets a connection, and for how long.
//!
//! A socket that has not logged in holds only a cheap "logging in" slot
//! (`sql.max_pending_logins`) and loses it after `sql.auth_timeout_ms`; the connection slots
//! (`sql.max_connections` in all, `sql.max_connections_per_user` each) are taken when a login
//! succeeds, so sockets that never authenticate cannot keep a real user out. A session that
//! runs no statement for `sql.idle_timeout_ms` is closed.

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion_postgres::pgwire::api::auth::StartupHandler;
use datafusion_postgres::pgwire::api::{ClientInfo, METADATA_USER, PgWireConnectionState};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use futures::Sink;
use runtime::metrics::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::SqlConfig;
use super::logins::{Throttle, ThrottlePolicy};
use super::metrics::SqlMetrics;

/// The endpoint's slots and its record of failed logins.
#[derive(Debug)]
pub(crate) struct Gate {
    pending: Arc<Semaphore>,
    sessions: Arc<Semaphore>,
    per_user: HashMap<String, Arc<Semaphore>>,
    per_user_limit: usize,
    max_connections: usize,
    throttle: Throttle,
    pub(crate) metrics: SqlMetrics,
}

fn fatal(sqlstate: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        sqlstate.to_owned(),
        message,
    )))
}

impl Gate {
    pub(crate) fn new<'a>(
        config: &SqlConfig,
        users: impl Iterator<Item = &'a String>,
        metrics: SqlMetrics,
    ) -> Gate {
        Gate {
            pending: Arc::new(Semaphore::new(config.max_pending_logins)),
            sessions: Arc::new(Semaphore::new(config.max_connections)),
            per_user: users
                .map(|user| {
                    (
                        user.clone(),
                        Arc::new(Semaphore::new(config.max_connections_per_user)),
                    )
                })
                .collect(),
            per_user_limit: config.max_connections_per_user,
            max_connections: config.max_connections,
            throttle: Throttle::new(ThrottlePolicy {
                failures_allowed: config.login_failures_allowed,
                first_lockout: Duration::from_millis(config.login_lockout_ms),
                longest_lockout: Duration::from_millis(config.login_lockout_max_ms),
            }),
            metrics,
        }
    }

    /// A slot for a socket that is about to log in, if one is free.
    pub(crate) fn admit(&self) -> Option<Arc<Activity>> {
        let permit = Arc::clone(&self.pending).try_acquire_owned().ok()?;
        Some(Arc::new(Activity {
            opened: Instant::now(),
            authenticated: AtomicBool::new(false),
            last_statement_ms: AtomicU64::new(0),
            slots: Mutex::new(vec![permit]),
            logged_in: tokio::sync::Notify::new(),
            session: Mutex::new(None),
        }))
    }

    /// Trades the logging-in slot for a session's (one of all, one of the user's), counting
    /// the session on the user's gauge until the connection ends.
    fn seat(&self, user: &str, activity: &Activity) -> PgWireResult<()> {
        let seated = self.take_slots(user, activity);
        match &seated {
            Ok(()) => {
                self.metrics.logins.inc();
                let sessions = self.metrics.sessions(user);
                sessions.inc();
                *activity.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(sessions);
            }
            Err(_) => {
                self.metrics.connections_refused.inc();
            }
        }
        seated
    }

    fn take_slots(&self, user: &str, activity: &Activity) -> PgWireResult<()> {
        let session = Arc::clone(&self.sessions)
            .try_acquire_owned()
            .map_err(|_| {
                fatal(
                    "53300",
                    format!(
                        "sorry, too many clients already (sql.max_connections = {})",
                        self.max_connections
                    ),
                )
            })?;
        let mut slots = vec![session];
        if let Some(per_user) = self.per_user.get(user) {
            let mine = Arc::clone(per_user).try_acquire_owned().map_err(|_| {
                fatal(
                    "53300",
                    format!(
                        "too many connections for user \"{user}\" (sql.max_connections_per_user = {})",
                        self.per_user_limit
                    ),
                )
            })?;
            slots.push(mine);
        }
        *activity.slots.lock().unwrap_or_else(|e| e.into_inner()) = slots;
        activity.touch();
        activity.authenticated.store(true, Ordering::Release);
        activity.logged_in.notify_one();
        Ok(())
    }
}

/// One connection as the gate sees it.
#[derive(Debug)]
pub(crate) struct Activity {
    opened: Instant,
    authenticated: AtomicBool,
    /// Since `opened`, ms.
    last_statement_ms: AtomicU64,
    slots: Mutex<Vec<OwnedSemaphorePermit>>,
    /// Wakes the watch when the login succeeds: from then on the idle timeout applies.
    logged_in: tokio::sync::Notify,
    /// The user's sessions gauge, once logged in: one less when the connection ends.
    session: Mutex<Option<Gauge>>,
}

impl Drop for Activity {
    fn drop(&mut self) {
        if let Some(sessions) = self
            .session
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            sessions.dec();
        }
    }
}

impl Activity {
    /// A statement starts now.
    pub(crate) fn touch(&self) {
        let now = self.opened.elapsed().as_millis() as u64;
        self.last_statement_ms.store(now, Ordering::Release);
    }

    /// Resolves when the connection has outstayed its welcome, saying why: still not logged
    /// in after `login`, or no statement for `idle`.
    pub(crate) async fn expired(&self, login: Duration, idle: Duration) -> &'static str {
        loop {
            let (reason, deadline) = if self.authenticated.load(Ordering::Acquire) {
                let last = Duration::from_millis(self.last_statement_ms.load(Ordering::Acquire));
                (
                    "idle timeout (sql.idle_timeout_ms)",
                    self.opened + last + idle,
                )
            } else {
                ("login timeout (sql.auth_timeout_ms)", self.opened + login)
            };
            if Instant::now() >= deadline {
                return reason;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = self.logged_in.notified() => {}
            }
        }
    }
}

/// The SCRAM login, behind the throttle and the slots.
#[derive(Debug)]
pub(crate) struct GatedStartup<H> {
    pub(crate) inner: H,
    pub(crate) gate: Arc<Gate>,
    pub(crate) activity: Arc<Activity>,
}

fn user_of<C: ClientInfo>(client: &C) -> String {
    client
        .metadata()
        .get(METADATA_USER)
        .cloned()
        .unwrap_or_default()
}

#[async_trait]
impl<H: StartupHandler> StartupHandler for GatedStartup<H> {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let address: IpAddr = client.socket_addr().ip();
        // Refused before the exchange starts, so a locked-out guesser learns nothing new.
        if let PgWireFrontendMessage::Startup(startup) = &message {
            let user = startup.parameters.get("user").map_or("", String::as_str);
            if let Some(wait) = self.gate.throttle.wait(user, address) {
                self.gate.metrics.connections_refused.inc();
                return Err(fatal(
                    "28000",
                    format!(
                        "too many failed logins for this user or from this address; try again in {} s",
                        wait.as_secs() + 1
                    ),
                ));
            }
        }
        let result = self.inner.on_startup(client, message).await;
        let user = user_of(client);
        match &result {
            Err(PgWireError::InvalidPassword(_)) => {
                self.gate.metrics.login_failures.inc();
                self.gate.throttle.failed(&user, address);
            }
            Ok(()) if matches!(client.state(), PgWireConnectionState::ReadyForQuery) => {
                self.gate.throttle.succeeded(&user, address);
                self.gate.seat(&user, &self.activity)?;
            }
            _ => {}
        }
        result
    }
}
