use uuid::Uuid;

use crate::{Event, EventType, MerchantId, Topic};

/// The schema version this build writes and the newest it reads.
pub const SCHEMA_VERSION: u16 = 1;

/// What every event on every topic carries around its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// UUIDv7: unique per event, so consumers drop replays; time-ordered, so ids sort by
    /// creation.
    pub event_id: Uuid,
    pub schema_version: u16,
    /// When it happened, in UTC milliseconds since the Unix epoch: windows use this, never
    /// arrival time.
    pub event_time: i64,
    pub merchant_id: MerchantId,
    pub event: Event,
}

impl Envelope {
    /// An envelope of the current schema version.
    pub fn new(event_id: Uuid, event_time: i64, merchant_id: MerchantId, event: Event) -> Self {
        Self {
            event_id,
            schema_version: SCHEMA_VERSION,
            event_time,
            merchant_id,
            event,
        }
    }

    pub fn event_type(&self) -> EventType {
        self.event.event_type()
    }

    pub fn topic(&self) -> Topic {
        self.event.topic()
    }

    /// The Kafka record key.
    pub fn key(&self) -> &str {
        self.event.partition_key()
    }
}
