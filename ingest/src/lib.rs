//! ingest: where events enter shopstream. It owns the transactional orders core and, as later
//! steps land, the `/v1` HTTP API, payments through a `PaymentProvider`,
//! customer notifications, the `POST /v1/events` click/search collector and the importer of the
//! UCI Online Retail data set.
//!
//! Implemented so far:
//! - [`domain`]: the business rules as pure functions (order state machine, cancellation
//!   refunds, hyperlocal radius, stock reservations, GST pricing with recorded exchange rates,
//!   refunds bounded by captures, merchant payouts).
//! - [`store`]: SQLite (default) or PostgreSQL through sqlx, embedded migrations.
//! - [`catalog`] and [`orders`]: merchants, products, stock and order placement, each change
//!   with its events appended to the [`outbox`] in the same transaction.
//! - [`lifecycle`]: payment outcomes, cancellation, refunds, pack/ship/deliver, address
//!   changes and reservation expiry, each one transaction with its outbox events.
//! - [`payments`]: the `PaymentProvider` trait, a simulated provider, and the gateway that
//!   retries with backoff and falls back to the next provider.
//! - [`http`]: the `/v1` API (API keys with roles, a token bucket per key, strict JSON,
//!   stable error codes).
//! - [`relay`]: publishes the outbox to Kafka in commit order and stamps what was acknowledged.

pub mod breaker;
pub mod catalog;
pub mod collector;
pub mod domain;
pub mod http;
pub mod import;
pub mod lifecycle;
pub mod logistics;
pub mod notify;
pub mod orders;
pub mod outbox;
pub mod payments;
pub mod relay;
pub mod service;
pub mod store;
