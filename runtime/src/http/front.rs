//! The front door: one listener for every stage's routes, plus `/healthz`, `/readyz`,
//! `/metrics`, `/v1/openapi.json` and `/docs`, behind one set of protections.
//!
//! Protections, outermost first:
//! - at accept: a cap on open connections in total and per client address (a connection over
//!   either is closed at once), and a deadline for each request's headers, so slow clients
//!   (slow-loris) hold a bounded number of sockets for a bounded time;
//! - per request: a token bucket per client address for every call, taken before anything
//!   else (so before any API key is looked up), a cap on requests in flight (over it: 503
//!   `overloaded` with Retry-After, no queue), a request deadline (503 `timeout`) and a default
//!   body limit (routes may set their own; an oversized body gets the JSON 413). Calls with a
//!   key are also limited per key by the stage that checks it; a key that fails the check is
//!   charged to a much smaller per-address bucket of failures, and an address that has spent
//!   it is refused before any lookup until a token is back.
//!
//! `/healthz` and `/readyz` sit outside these limits, so probes answer under load. Every limit
//! is keyed on the peer address: behind a proxy, give each client its own path to the door or
//! raise the per-address figures, since all the proxy's clients share one address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::Request;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use model::api::ErrorCode;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use utoipa::openapi::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use super::auth::{BrowserSessions, SessionCaller, is_read};
use super::{ApiError, document};
use crate::metrics::Registry;
use crate::stage::Readiness;

/// The front door's settings: the `http` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrontConfig {
    /// Address every HTTP API listens on; keep it on 127.0.0.1 unless a proxy fronts it.
    pub listen: String,
    /// A client must send a request's headers within this many milliseconds, or the
    /// connection is closed.
    pub header_read_timeout_ms: u64,
    /// A request must be answered within this many milliseconds, or it gets 503 `timeout`.
    pub request_timeout_ms: u64,
    /// Requests handled at once over all connections; more get 503 `overloaded` at once.
    pub max_in_flight: usize,
    /// Connections open at once; further ones are closed at accept.
    pub max_connections: usize,
    /// Connections open at once from one client address; keep it well below
    /// `max_in_flight`, so one address cannot hold every request slot.
    pub max_connections_per_address: usize,
    /// Largest request body in bytes, unless a route sets its own.
    pub max_body_bytes: usize,
    /// Requests per second one client address may make, with or without an API key.
    pub per_address_per_second: u32,
    /// How many requests an address may make at once after being idle.
    pub per_address_burst: u32,
    /// Failed API-key checks per second one address may cause; past them it is refused
    /// before any lookup.
    pub failed_keys_per_second: u32,
    /// How many failed key checks an address may cause at once.
    pub failed_keys_burst: u32,
}

impl Default for FrontConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            header_read_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
            max_in_flight: 1_024,
            max_connections: 16_384,
            max_connections_per_address: 256,
            max_body_bytes: 1 << 20,
            per_address_per_second: 2_000,
            per_address_burst: 4_000,
            failed_keys_per_second: 10,
            failed_keys_burst: 20,
        }
    }
}

impl FrontConfig {
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            (
                "header_read_timeout_ms",
                self.header_read_timeout_ms as usize,
            ),
            ("request_timeout_ms", self.request_timeout_ms as usize),
            ("max_in_flight", self.max_in_flight),
            ("max_connections", self.max_connections),
            (
                "max_connections_per_address",
                self.max_connections_per_address,
            ),
            ("max_body_bytes", self.max_body_bytes),
            (
                "per_address_per_second",
                self.per_address_per_second as usize,
            ),
            ("per_address_burst", self.per_address_burst as usize),
            (
                "failed_keys_per_second",
                self.failed_keys_per_second as usize,
            ),
            ("failed_keys_burst", self.failed_keys_burst as usize),
        ];
        match positive.iter().find(|(_, value)| *value == 0) {
            Some((name, _)) => Err(format!("http.{name} must be positive")),
            None => Ok(()),
        }
    }
}

/// What the front door mounts for one stage.
#[derive(Clone)]
pub struct Mounted {
    pub name: &'static str,
    pub readiness: Readiness,
}

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounted")
            .field("name", &self.name)
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}

/// The token buckets per client address: one for every call, one for failed API-key checks.
/// Handlers that check keys find it in the request's extensions: they ask
/// [`AddressLimiter::refuse_if_blocked`] before looking a key up and charge a failed check with
/// [`AddressLimiter::charge_failure`], so once an address has spent its failures it is
/// refused before any lookup.
#[derive(Clone)]
pub struct AddressLimiter {
    calls: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    failures: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    /// Addresses whose failure bucket ran dry, until when.
    blocked: Arc<Mutex<HashMap<IpAddr, Instant>>>,
}

impl std::fmt::Debug for AddressLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddressLimiter")
    }
}

fn keyed(per_second: u32, burst: u32) -> Arc<DefaultKeyedRateLimiter<IpAddr>> {
    let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::keyed(
        Quota::per_second(per_second).allow_burst(burst),
    ))
}

impl AddressLimiter {
    pub fn new(config: &FrontConfig) -> Self {
        Self {
            calls: keyed(config.per_address_per_second, config.per_address_burst),
            failures: keyed(config.failed_keys_per_second, config.failed_keys_burst),
            blocked: Arc::default(),
        }
    }

    /// Takes a call's token for `address`; when none is left, 429 `rate_limited`.
    pub fn take(&self, address: IpAddr) -> Result<(), ApiError> {
        self.calls
            .check_key(&address)
            .map_err(|not_until| refusal(not_until.wait_time_from(DefaultClock::default().now())))
    }

    /// 429 while `address` is blocked for failed key checks.
    pub fn refuse_if_blocked(&self, address: IpAddr) -> Result<(), ApiError> {
        let blocked = self.lock_blocked();
        match blocked.get(&address) {
            Some(until) => match until.checked_duration_since(Instant::now()) {
                Some(wait) => Err(refusal(wait)),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Charges a failed key check to `address`; when its failures are spent, blocks it until
    /// one is back and answers 429 instead of the caller's 401.
    pub fn charge_failure(&self, address: IpAddr) -> Result<(), ApiError> {
        self.failures.check_key(&address).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            self.lock_blocked().insert(address, Instant::now() + wait);
            refusal(wait)
        })
    }

    fn lock_blocked(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.blocked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops the state of addresses that have been quiet, so memory follows the active ones.
    fn forget_idle(&self) {
        for buckets in [&self.calls, &self.failures] {
            buckets.retain_recent();
            buckets.shrink_to_fit();
        }
        let now = Instant::now();
        self.lock_blocked().retain(|_, until| *until > now);
    }
}

fn refusal(wait: Duration) -> ApiError {
    let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    ApiError::new(
        ErrorCode::RateLimited,
        format!("too many requests from this address; retry in {seconds} s"),
    )
    .retry_after(seconds)
}

/// The client's address, put into every request's extensions by [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub SocketAddr);

#[derive(Clone)]
struct Limits {
    in_flight: Arc<Semaphore>,
    request_timeout: Duration,
    addresses: AddressLimiter,
}

/// Builds the front door's router from every stage's routes and OpenAPI part.
pub fn router(
    config: &FrontConfig,
    stages: Vec<(Mounted, Router, OpenApi)>,
    metrics: Registry,
    addresses: AddressLimiter,
    sessions: Option<Arc<dyn BrowserSessions>>,
) -> Router {
    let mut document = document::base();
    let mut routes = Router::new();
    let mut mounted = Vec::new();
    for (stage, stage_routes, api) in stages {
        document.merge(api);
        routes = routes.merge(stage_routes);
        mounted.push(stage);
    }
    document::declare_shared_responses(&mut document);
    let mounted = Arc::new(mounted);
    let limits = Limits {
        in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
        request_timeout: Duration::from_millis(config.request_timeout_ms),
        addresses,
    };
    let guarded = routes
        .route("/metrics", get(render_metrics).with_state(metrics))
        .merge(SwaggerUi::new("/docs").url("/v1/openapi.json", document))
        .fallback(|| async {
            ApiError::new(
                ErrorCode::NotFound,
                "no such endpoint; see GET /v1/openapi.json or /docs",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "this endpoint does not take that method; see GET /v1/openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(sessions, resolve_session))
        .layer(middleware::from_fn_with_state(limits, guard));
    // Probes are answered outside every limit: a loaded process is still alive.
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz).with_state(mounted))
        .merge(guarded)
}

async fn readyz(State(stages): State<Arc<Vec<Mounted>>>) -> Response {
    let waiting: Vec<String> = stages
        .iter()
        .filter_map(|stage| {
            stage
                .readiness
                .get()
                .err()
                .map(|why| format!("{}: {why}", stage.name))
        })
        .collect();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("not ready: {}", waiting.join("; ")),
        )
        .retry_after(1)
        .into_response()
    }
}

async fn render_metrics(State(metrics): State<Registry>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        metrics.render(),
    )
        .into_response()
}

/// Admission for every request: the per-address bucket, the in-flight cap, the request
/// deadline; and the one error shape for an oversized body.
async fn guard(
    State(limits): State<Limits>,
    mut request: axum::extract::Request,
    next: Next,
) -> Response {
    if let Some(address) = request
        .extensions()
        .get::<ClientAddress>()
        .map(|a| a.0.ip())
        && let Err(refused) = limits.addresses.take(address)
    {
        return refused.into_response();
    }
    let Ok(_permit) = limits.in_flight.clone().try_acquire_owned() else {
        return ApiError::new(
            ErrorCode::Overloaded,
            "the server is at its limit of requests in flight; retry shortly",
        )
        .retry_after(1)
        .into_response();
    };
    request.extensions_mut().insert(limits.addresses.clone());
    let response = match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            return ApiError::new(
                ErrorCode::Timeout,
                format!(
                    "the request took longer than {} ms; retry later",
                    limits.request_timeout.as_millis()
                ),
            )
            .retry_after(1)
            .into_response();
        }
    };
    let mut response = error_shape(response).await;
    // The rest of a refused body is still on the wire; a client that reused this
    // connection would have its next request read as that body's tail.
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// A read without a key whose cookies name a live browser session gets that session's caller
/// in its extensions (see [`crate::http::auth`]); anything else passes untouched.
async fn resolve_session(
    State(sessions): State<Option<Arc<dyn BrowserSessions>>>,
    mut request: axum::extract::Request,
    next: Next,
) -> Response {
    if let Some(sessions) = sessions
        && is_read(request.method())
        && !request.headers().contains_key(header::AUTHORIZATION)
        && let Some(cookies) = request
            .headers()
            .get(header::COOKIE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
        && let Some(caller) = sessions.caller(&cookies).await
    {
        request.extensions_mut().insert(SessionCaller(caller));
        // An answer for a signed-in browser is that person's: no cache keeps or shares it.
        let mut response = next.run(request).await;
        let headers = response.headers_mut();
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("private, no-store"),
        );
        headers.append(header::VARY, header::HeaderValue::from_static("cookie"));
        return response;
    }
    next.run(request).await
}

/// axum's own refusals (a body over the limit, a path or query string its extractors cannot
/// read) answer in plain text; every error here has the one JSON shape, its text kept as the
/// message. HTML pages pass as they are.
async fn error_shape(response: Response) -> Response {
    let status = response.status();
    // JSON errors are already in shape; HTML ones are pages written for a person (the
    // dashboards' sign-in and refusal pages).
    let is_shaped = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
        });
    if !status.is_client_error() || is_shaped {
        return response;
    }
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::new(
                ErrorCode::PayloadTooLarge,
                "the request body is over this route's limit",
            )
            .into_response();
        }
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        _ => ErrorCode::InvalidParameter,
    };
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        format!("the request was refused ({status})")
    } else {
        text
    };
    ApiError::new(code, message).into_response()
}

/// Open connections per client address, and in total.
#[derive(Debug, Default)]
struct Connections {
    per_address: HashMap<IpAddr, usize>,
    total: usize,
}

/// Holds one connection's place until the connection ends.
struct Place {
    connections: Arc<Mutex<Connections>>,
    address: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        connections.total -= 1;
        if let Some(count) = connections.per_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                connections.per_address.remove(&self.address);
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, then stops accepting and lets requests in
/// progress finish (for at most the request timeout).
pub async fn serve(
    config: &FrontConfig,
    listener: TcpListener,
    router: Router,
    addresses: AddressLimiter,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let connections = Arc::new(Mutex::new(Connections::default()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(config.header_read_timeout_ms))
        .keep_alive(true);
    let mut forget = tokio::time::interval(Duration::from_secs(60));
    let mut connections_running: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            _ = forget.tick() => {
                addresses.forget_idle();
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors or a connection reset before accept: the listener
                // itself is fine, so keep serving.
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let place = {
            let mut open = connections
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let from_address = open.per_address.get(&peer.ip()).copied().unwrap_or(0);
            if open.total >= config.max_connections
                || from_address >= config.max_connections_per_address
            {
                None
            } else {
                open.total += 1;
                *open.per_address.entry(peer.ip()).or_default() += 1;
                Some(Place {
                    connections: Arc::clone(&connections),
                    address: peer.ip(),
                })
            }
        };
        let Some(place) = place else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ClientAddress(peer));
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        // Reap finished connections, so the set holds only live ones.
        while connections_running.try_join_next().is_some() {}
        connections_running.spawn(async move {
            let _place = place;
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let drain = Duration::from_millis(config.request_timeout_ms);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the request timeout; closing them");
    }
    // Nothing the front door took in may run on after it has stopped: the stages stop next.
    connections_running.shutdown().await;
    Ok(())
}
