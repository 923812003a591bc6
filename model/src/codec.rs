//! Strict JSON encoding of [`Envelope`]s.
//!
//! On the wire an event is one JSON object:
//! `{"event_id", "event_type", "schema_version", "event_time", "merchant_id", "payload"}`.
//! Decoding reads the envelope first, then the payload with the type `event_type` names; any
//! unknown field, unknown type, missing or mistyped field is a [`DecodeError`] that says which
//! and where, so a collector can answer the sender and a consumer can dead-letter the record.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::{Envelope, Event, EventType, MerchantId, SCHEMA_VERSION};

/// Why bytes are not a valid event. Always the sender's fault: a retry cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed JSON: {0}")]
    Malformed(String),
    #[error("unknown event_type {0:?}")]
    UnknownEventType(String),
    #[error(
        "unsupported schema_version {found} for {event_type} (this build reads 1..={newest})",
        newest = SCHEMA_VERSION
    )]
    UnsupportedVersion { event_type: EventType, found: u16 },
    #[error("{context}: missing field `{field}`")]
    MissingField { context: String, field: String },
    #[error("{context}: {detail}")]
    InvalidField { context: String, detail: String },
}

impl DecodeError {
    /// A stable machine-readable code, used in DLQ reasons and HTTP errors.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Malformed(_) => "malformed_json",
            DecodeError::UnknownEventType(_) => "unknown_event_type",
            DecodeError::UnsupportedVersion { .. } => "unsupported_schema_version",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::InvalidField { .. } => "invalid_field",
        }
    }

    /// The same code as an HTTP answer's, for shells that refuse a posted event.
    pub fn error_code(&self) -> crate::api::ErrorCode {
        use crate::api::ErrorCode;
        match self {
            DecodeError::Malformed(_) => ErrorCode::MalformedJson,
            DecodeError::UnknownEventType(_) => ErrorCode::UnknownEventType,
            DecodeError::UnsupportedVersion { .. } => ErrorCode::UnsupportedSchemaVersion,
            DecodeError::MissingField { .. } => ErrorCode::MissingField,
            DecodeError::InvalidField { .. } => ErrorCode::InvalidField,
        }
    }

    pub(crate) fn from_serde(context: &str, error: serde_json::Error) -> Self {
        use serde_json::error::Category;
        let detail = error.to_string();
        match error.classify() {
            Category::Syntax | Category::Eof | Category::Io => DecodeError::Malformed(detail),
            Category::Data => match missing_field_name(&detail) {
                Some(field) => DecodeError::MissingField {
                    context: context.to_owned(),
                    field: field.to_owned(),
                },
                None => DecodeError::InvalidField {
                    context: context.to_owned(),
                    detail,
                },
            },
        }
    }
}

/// serde reports a missing field only in its message ("missing field `x` at line..."); we lift
/// the name out so callers get it as data.
fn missing_field_name(detail: &str) -> Option<&str> {
    let rest = detail.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(field, _)| field)
}

#[derive(Serialize)]
struct WireOut<'a> {
    event_id: &'a Uuid,
    event_type: &'static str,
    schema_version: u16,
    event_time: i64,
    merchant_id: &'a MerchantId,
    payload: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireIn<'a> {
    event_id: Uuid,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    schema_version: u16,
    event_time: i64,
    merchant_id: MerchantId,
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// Encodes one event as a JSON object.
pub fn encode(envelope: &Envelope) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    encode_into(envelope, &mut out);
    out
}

/// Appends one event's JSON to `out` (no trailing newline).
pub fn encode_into(envelope: &Envelope, out: &mut Vec<u8>) {
    // Every payload is plain data with string keys, so serialising it cannot fail; a failure
    // here would be a bug in this crate, and we would rather see it than write a bad record.
    let payload = envelope.event.payload_to_json().unwrap_or_else(|error| {
        panic!(
            "payload of {} failed to serialise: {error}",
            envelope.event_type()
        )
    });
    let wire = WireOut {
        event_id: &envelope.event_id,
        event_type: envelope.event_type().as_str(),
        schema_version: envelope.schema_version,
        event_time: envelope.event_time,
        merchant_id: &envelope.merchant_id,
        payload: &payload,
    };
    serde_json::to_writer(out, &wire).unwrap_or_else(|error| panic!("envelope: {error}"));
}

/// Decodes and validates one event.
pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    let wire: WireIn<'_> =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::from_serde("envelope", e))?;
    let event_type = EventType::parse(&wire.event_type)
        .ok_or_else(|| DecodeError::UnknownEventType(wire.event_type.clone().into_owned()))?;
    if wire.schema_version == 0 || wire.schema_version > SCHEMA_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            event_type,
            found: wire.schema_version,
        });
    }
    if wire.event_id.get_version_num() != 7 {
        return Err(DecodeError::InvalidField {
            context: "envelope".into(),
            detail: format!("event_id {} is not a UUIDv7", wire.event_id),
        });
    }
    if wire.event_time < 0 {
        return Err(DecodeError::InvalidField {
            context: "envelope".into(),
            detail: format!("event_time {} is before 1970", wire.event_time),
        });
    }
    let event = Event::payload_from_json(event_type, wire.payload)
        .map_err(|e| DecodeError::from_serde(event_type.as_str(), e))?;
    Ok(Envelope {
        event_id: wire.event_id,
        schema_version: wire.schema_version,
        event_time: wire.event_time,
        merchant_id: wire.merchant_id,
        event,
    })
}
