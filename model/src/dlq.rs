//! The dead-letter contract. A dead letter is the original record's key and bytes, unchanged,
//! on the `dlq` topic, with headers saying where it came from and why no stage could use it.
//! Nothing is dropped silently: a record is either processed or dead-lettered with a reason.

/// Header names on every dead-letter record.
pub mod header {
    /// Machine-readable reason code, e.g. `malformed_json`, `late`.
    pub const REASON: &str = "reason";
    /// Human-readable explanation of the reason.
    pub const MESSAGE: &str = "reason.message";
    /// The stage (consumer group or service) that gave up on the record.
    pub const STAGE: &str = "stage";
    pub const SOURCE_TOPIC: &str = "source.topic";
    pub const SOURCE_PARTITION: &str = "source.partition";
    pub const SOURCE_OFFSET: &str = "source.offset";
}

/// Why a record was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// Stable code: a [`crate::DecodeError::code`] or one of the constants below.
    pub code: &'static str,
    pub message: String,
}

impl Reason {
    /// The event arrived after its window closed and the allowed lateness passed.
    pub const LATE: &'static str = "late";
    /// A consumer kept failing on the record after its retries.
    pub const RETRIES_EXHAUSTED: &'static str = "retries_exhausted";
    /// The broker refused the record for good (too large, say); it was parked here so the
    /// records behind it could go on. The payload is cut to its first 64 KiB.
    pub const UNPUBLISHABLE: &'static str = "unpublishable";

    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<&crate::DecodeError> for Reason {
    fn from(error: &crate::DecodeError) -> Self {
        Reason::new(error.code(), error.to_string())
    }
}
