//! The API keys a stage accepts when it runs without the orders core's database: the whole
//! compacted `api-keys` topic, followed from its beginning, in memory. A key the core creates
//! works here as soon as its record arrives; a revocation stops it the same way (the relay
//! publishes within its poll interval, so "as soon as" is a few milliseconds on one machine).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use bus::{Bus, BusError, InRecord};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use model::Topic;
use model::keys::KeyRecord;
use tokio_util::sync::CancellationToken;

use crate::http::auth::{Caller, Keys, KeysUnavailable};
use crate::stage::{Readiness, Stage};

/// Every key's latest record, by hash.
#[derive(Debug, Default)]
pub struct KeyTable {
    keys: RwLock<HashMap<String, KeyRecord>>,
    readiness: Readiness,
}

impl KeyTable {
    /// Keeps the table current with the `api-keys` topic until `shutdown`; ready once it has
    /// read everything that was on the topic when it started, so no key the core had issued
    /// by then is refused.
    pub async fn follow(
        self: Arc<Self>,
        bus: Arc<Bus>,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        let reader = bus.reader(&[Topic::ApiKeys]).await?;
        let mut behind: HashMap<i32, i64> = reader
            .log_ends()
            .await?
            .into_iter()
            .filter(|(_, end)| *end > 0)
            .map(|(partition, end)| (partition.partition, end))
            .collect();
        if behind.is_empty() {
            self.readiness.set_ready();
        } else {
            self.readiness
                .set_not_ready("reading the api-keys topic".to_owned());
        }
        loop {
            let record = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                received = reader.recv() => match received {
                    Ok(record) => record,
                    Err(error) if error.is_retryable() => {
                        tracing::warn!(%error, "reading api-keys failed; retrying");
                        continue;
                    }
                    Err(error) => return Err(error),
                },
            };
            self.apply(&record);
            if behind
                .get(&record.partition)
                .is_some_and(|end| record.offset + 1 >= *end)
            {
                behind.remove(&record.partition);
                if behind.is_empty() {
                    self.readiness.set_ready();
                }
            }
        }
    }

    /// Takes one record of the topic: the key's state from now on.
    pub fn apply(&self, record: &InRecord) {
        let Some(payload) = record.payload.as_deref() else {
            return;
        };
        match KeyRecord::decode(payload) {
            Ok(key) => {
                self.keys
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key.key_hash.clone(), key);
            }
            // Only the orders core writes this topic; a record it cannot read is a bug to see,
            // and leaves the key as it was.
            Err(error) => {
                tracing::error!(%error, offset = record.offset, "unreadable api-keys record");
            }
        }
    }

    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// The caller owning `key_hash`, unless unknown or revoked.
    pub fn caller(&self, key_hash: &str) -> Option<Caller> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let key = keys.get(key_hash).filter(|key| !key.revoked)?;
        Some(Caller {
            role: key.role,
            merchant_id: key.merchant_id.clone(),
            key_hash: key.key_hash.clone(),
        })
    }
}

impl Keys for KeyTable {
    fn find<'a>(
        &'a self,
        key_hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<Caller>, KeysUnavailable>> {
        let found = self.caller(key_hash);
        async move { Ok(found) }.boxed()
    }
}

/// The key table as a stage of its own (for a process without the core): it follows the
/// topic and is ready once caught up. The table goes to the stages whose routes take keys.
pub fn stage(bus: Arc<Bus>, shutdown: CancellationToken) -> (Stage, Arc<KeyTable>) {
    let table = Arc::new(KeyTable::default());
    let readiness = table.readiness();
    let work = Arc::clone(&table)
        .follow(bus, shutdown)
        .map(|outcome| outcome.map_err(Into::into))
        .boxed();
    let mut stage = Stage::background("api keys", work);
    stage.readiness = readiness;
    (stage, table)
}
