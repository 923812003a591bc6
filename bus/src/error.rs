use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// What went wrong talking to Kafka, and whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The operator's configuration is wrong; retrying cannot help.
    #[error("invalid bus configuration: {0}")]
    Config(String),
    /// The embedded broker could not start (usually: its port is taken).
    #[error(
        "could not start the embedded Kafka broker on {listen}: {source} (set bus.embedded_listen to a free address, port 0 picks one)"
    )]
    EmbeddedBroker {
        listen: String,
        source: std::io::Error,
    },
    /// The local producer queue is full: the broker is slower than the caller. Back off and
    /// retry.
    #[error("producer queue is full: the broker is not keeping up")]
    QueueFull,
    /// Creating or describing topics failed.
    #[error("topic administration failed for {topic}: {reason}")]
    Admin { topic: String, reason: String },
    /// The broker did not deliver what was asked in time; a retry may help.
    #[error("kafka timed out: {0}")]
    Timeout(String),
    /// A record came from a topic this deployment does not know.
    #[error("record from unknown topic {0:?}")]
    UnknownTopic(String),
    /// The broker or network failed; a retry may help.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

impl BusError {
    /// Whether the same call may succeed later (the consumer loop retries these and
    /// dead-letters the rest).
    pub fn is_retryable(&self) -> bool {
        match self {
            BusError::QueueFull | BusError::Timeout(_) => true,
            BusError::Kafka(error) => match error.rdkafka_error_code() {
                Some(code) => !matches!(
                    code,
                    RDKafkaErrorCode::MessageSizeTooLarge
                        | RDKafkaErrorCode::InvalidMessage
                        | RDKafkaErrorCode::TopicAuthorizationFailed
                        | RDKafkaErrorCode::UnknownTopicOrPartition
                        | RDKafkaErrorCode::InvalidSessionTimeout
                        | RDKafkaErrorCode::GroupAuthorizationFailed
                ),
                None => true,
            },
            BusError::Config(_)
            | BusError::EmbeddedBroker { .. }
            | BusError::Admin { .. }
            | BusError::UnknownTopic(_) => false,
        }
    }
}
