//! The wire contract of shopstream: what travels on the topics and what every stage may assume.
//!
//! - [`Envelope`] wraps every event: a UUIDv7 `event_id`, the [`EventType`], a schema version,
//!   the event time in UTC milliseconds, the merchant and the typed [`Event`] payload.
//! - [`Topic`] names the topics and says which id keys each one's partitions.
//! - [`codec`] is the strict JSON encoding: unknown types, missing or mistyped fields become a
//!   [`DecodeError`], never a panic.
//! - [`Table`] names the lakehouse tables and the topic that fills each; [`schema`] gives the
//!   Arrow schema of each topic and table.
//! - [`geo`] knows where every India Post pincode is (shipped data, GODL-India) and measures
//!   distances; the generator, the orders core and the stream jobs share it.
//! - [`trending`] is the trending job's output contract: partial counts per pane and input
//!   partition, and per-partition watermarks.
//! - [`keys`] is the API-key record every stage authenticates callers from (roles, the
//!   merchant a key is bound to), published by the orders core on the `api-keys` topic.
//! - [`calendar`] counts days in IST (cut-offs, working days, holidays, delivery dates);
//!   [`deliver`] is the trait other stages ask "can this product reach this pincode, and by
//!   when?" through, without knowing the serviceability stage.
//! - [`limits`] bounds what enters the pipeline (text lengths, one encoded event's size).
//! - [`dlq`] fixes the dead-letter record's headers and reason codes; [`api`] the stable HTTP
//!   error codes every HTTP shell returns.
//!
//! This crate does no I/O (the pincode table is compiled in) and depends on no other shopstream crate.

pub mod api;
pub mod calendar;
pub mod codec;
pub mod deliver;
pub mod dlq;
mod envelope;
mod event;
pub mod geo;
mod ids;
pub mod keys;
pub mod limits;
mod money;
pub mod payload;
pub mod schema;
mod table;
pub mod tax;
mod topic;
pub mod trending;

pub use codec::DecodeError;
pub use envelope::{Envelope, SCHEMA_VERSION};
pub use event::{Event, EventType};
pub use ids::{
    CourierId, CustomerId, MerchantId, OrderId, PaymentId, PayoutId, Pincode, ProductId, RefundId,
    SessionId, ShipmentId, WarehouseId,
};
pub use money::{Currency, Money};
pub use table::Table;
pub use topic::{Topic, TopicKind};

/// The merchant id of events that belong to no one shop: a search across the whole
/// marketplace. No API key is issued for it, so no merchant's scope ever includes them.
pub const MARKETPLACE: &str = "marketplace";
