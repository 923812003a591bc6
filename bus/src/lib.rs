//! The bus: the only crate that touches rdkafka. Stages produce and consume [`model::Topic`]s
//! through it and never see a Kafka type.
//!
//! - [`Bus`] connects to the configured cluster, or starts the embedded Kafka-API broker when
//!   none is configured, and creates the topics.
//! - [`Producer`] is idempotent and compressed; callers await the broker's acknowledgement
//!   where they need durability, and can dead-letter a record with a reason.
//! - [`Consumer`] is a consumer-group member with explicit offset commits and a
//!   [`RebalanceHook`] that hears about assignment and revocation before they take effect.
//! - [`Reader`] reads every partition of a topic from the beginning, outside any group, for
//!   serving state rebuilt from a compacted topic and for tables every instance needs whole.
//!
//! Offset protocol: a consumer *stores* a record's offset once that record's effect is applied
//! (for stateful jobs: once it is durable), and *commits* stored offsets periodically, on
//! revocation (before the partitions leave) and on shutdown. Auto-commit is off, so a crash
//! replays from the last commit and nothing acknowledged is skipped.

mod admin;
mod config;
mod consumer;
#[cfg(feature = "embedded-broker")]
mod embedded;
#[cfg(feature = "embedded-broker")]
mod longpoll;
#[cfg(feature = "embedded-broker")]
pub use embedded::BrokerStats;

/// Where each partition's log ends, per (topic name, partition).
pub type LogEnds = BTreeMap<(String, i32), i64>;
mod error;
mod producer;
mod reader;

use std::collections::BTreeMap;

use model::Topic;
use rdkafka::ClientConfig;

pub use admin::Altered;
pub use config::{BusConfig, TopicSettings};
pub use consumer::{Consumer, InRecord, NoHook, RebalanceHook, TopicPartition};
pub use error::BusError;
pub use producer::{Delivered, OutRecord, Producer};
pub use reader::Reader;

pub type Result<T, E = BusError> = std::result::Result<T, E>;

/// A connection to one Kafka-API cluster: the configured one, or the embedded broker.
pub struct Bus {
    config: BusConfig,
    bootstrap_servers: String,
    #[cfg(feature = "embedded-broker")]
    embedded: Option<embedded::EmbeddedBroker>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("embedded", &self.is_embedded())
            .finish()
    }
}

impl Bus {
    /// Connects to `config.bootstrap_servers`, or starts the embedded broker when it is unset.
    pub fn connect(config: BusConfig) -> Result<Bus> {
        config.validate()?;
        match config.bootstrap_servers.clone() {
            Some(bootstrap_servers) => Ok(Bus {
                config,
                bootstrap_servers,
                #[cfg(feature = "embedded-broker")]
                embedded: None,
            }),
            None => Self::start_embedded(config),
        }
    }

    #[cfg(feature = "embedded-broker")]
    fn start_embedded(config: BusConfig) -> Result<Bus> {
        let broker = embedded::EmbeddedBroker::start(&config)?;
        Ok(Bus {
            bootstrap_servers: broker.addr().to_string(),
            config,
            embedded: Some(broker),
        })
    }

    #[cfg(not(feature = "embedded-broker"))]
    fn start_embedded(_config: BusConfig) -> Result<Bus> {
        Err(BusError::Config(
            "bus.bootstrap_servers is not set and this build has no embedded broker \
             (feature `embedded-broker`)"
                .into(),
        ))
    }

    /// `host:port[,host:port]` that any Kafka client can use to reach this bus.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    pub fn is_embedded(&self) -> bool {
        #[cfg(feature = "embedded-broker")]
        return self.embedded.is_some();
        #[cfg(not(feature = "embedded-broker"))]
        false
    }

    pub fn config(&self) -> &BusConfig {
        &self.config
    }

    /// The topic's name on this cluster, with the deployment's prefix.
    pub fn topic_name(&self, topic: Topic) -> String {
        self.config.topic_name(topic)
    }

    /// The clean shutdown's final save of the embedded broker's log to its data directory
    /// (if it has one), marking the shutdown clean; the broker also saves itself every
    /// `embedded_autosave_ms`. `false` when the save failed (logged as an error).
    pub fn save(&self) -> bool {
        #[cfg(feature = "embedded-broker")]
        if let Some(broker) = &self.embedded {
            return broker.save();
        }
        true
    }

    /// Says the positions of every stage were checked against [`Bus::broker_unclean_start`]'s
    /// log ends (or there are none): from now on a clean shutdown may mark itself clean.
    pub fn confirm_start(&self) {
        #[cfg(feature = "embedded-broker")]
        if let Some(broker) = &self.embedded {
            broker.confirm_start();
        }
    }

    /// How the embedded broker's saves are going; `None` on an external cluster.
    #[cfg(feature = "embedded-broker")]
    pub fn broker_stats(&self) -> Option<std::sync::Arc<BrokerStats>> {
        self.embedded.as_ref().map(embedded::EmbeddedBroker::stats)
    }

    /// When the embedded broker's last run did not end with its final save (killed, or this
    /// is its first start): where each partition's log ended as loaded, before any client
    /// wrote. Records acknowledged after the last snapshot are gone and their offsets will be
    /// handed out again, so a stage whose durable position is past one of these ends would
    /// skip new records. `None` on a clean restart and on an external cluster.
    ///
    /// Until [`Bus::confirm_start`] the broker's clean shutdown does not mark itself clean, so
    /// a run that stops because of this is just as suspicious to the next start.
    pub fn broker_unclean_start(&self) -> Option<&LogEnds> {
        #[cfg(feature = "embedded-broker")]
        if let Some(broker) = &self.embedded {
            return broker.unclean_start();
        }
        None
    }

    /// librdkafka settings shared by every client: bootstrap servers, then the configured
    /// pass-through properties (security.protocol, sasl.*, ssl.*...), which win.
    fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in defaults {
            client.set(*key, *value);
        }
        let properties: &BTreeMap<String, String> = &self.config.properties;
        for (key, value) in properties {
            client.set(key, value);
        }
        client
    }
}
