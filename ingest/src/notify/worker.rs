//! The notifications consumer: reads order, payment and inventory events, delivers each
//! notified one on every channel (to the order's customer, or to the merchant about its stock),
//! records what was delivered, and dead-letters what cannot be.

use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, InRecord, NoHook};
use model::dlq::Reason;
use model::payload::{MerchantNotified, NotificationSent};
use model::{CustomerId, Envelope, Event, MerchantId, Money, OrderId, ProductId, Topic};
use rand::SeedableRng as _;
use runtime::driver::{self, Applied, Offsets, Position, Settings};
use runtime::metrics::Registry;
use serde::Deserialize;
use sqlx::Row as _;
use tokio_util::sync::CancellationToken;

use super::template::{self, OrderFacts, Rendered, ShopFacts, Style};
use super::{DeliveryError, Notification, Notifier, Recipient, WebhookConfig};
use crate::payments::jittered_backoff;
use crate::store::{Store, StoreError, now_ms};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    pub enabled: bool,
    /// The consumer group, under the bus's topic prefix.
    pub group: String,
    /// Tell customers through the service log.
    pub log: bool,
    /// Tell customers through an HTTP endpoint.
    pub webhook: Option<WebhookConfig>,
    /// Deliveries per channel before the event goes to the DLQ.
    pub max_tries: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// How often consumed offsets are committed.
    pub commit_interval_ms: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            group: "notifier".to_owned(),
            log: true,
            webhook: None,
            max_tries: 5,
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
            commit_interval_ms: 1_000,
        }
    }
}

impl NotifyConfig {
    /// The configured channels; an error names the setting that is wrong.
    /// The configured channels; the webhook's circuit breaker reports on `metrics`.
    pub fn notifiers(&self, metrics: &Registry) -> Result<Vec<Arc<dyn Notifier>>, NotifyError> {
        let mut notifiers: Vec<Arc<dyn Notifier>> = Vec::new();
        if self.log {
            notifiers.push(Arc::new(super::LogNotifier));
        }
        if let Some(webhook) = &self.webhook {
            let webhook =
                super::WebhookNotifier::new(webhook, Some(metrics)).map_err(NotifyError::Config)?;
            notifiers.push(Arc::new(webhook));
        }
        Ok(notifiers)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notify config: {0}")]
    Config(String),
    #[error("notifier bus: {0}")]
    Bus(#[from] bus::BusError),
}

/// The stage name on the notifier's dead letters.
const STAGE: &str = "notifier";
/// The receiver refused the notification.
const REFUSED: &str = "notification_refused";

/// Consumes until `shutdown`, then commits what it finished and leaves the group. A record
/// interrupted by shutdown mid-retry is not committed, so the next start delivers it.
pub async fn run(
    config: NotifyConfig,
    store: Store,
    bus: Arc<Bus>,
    notifiers: Vec<Arc<dyn Notifier>>,
    shutdown: CancellationToken,
) -> Result<(), NotifyError> {
    let settings = Settings {
        group: config.group.clone(),
        topics: vec![Topic::Orders, Topic::Payments, Topic::Inventory],
        hook: Arc::new(NoHook),
        stage: STAGE.to_owned(),
        flush_every: Duration::from_millis(config.commit_interval_ms.max(10)),
        tick_every: None,
        dead_letters: None,
    };
    let mut worker = Worker {
        config,
        store,
        producer: bus.producer()?,
        notifiers,
        shutdown: shutdown.clone(),
        rng: std::sync::Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(
            uuid::Uuid::now_v7().as_u64_pair().1,
        )),
    };
    // Deliveries are recorded in the store as they happen, so each record's offset is stored
    // once it is handled, and a replay (after a refused commit or a crash) tells nobody twice.
    driver::run(&bus, settings, Offsets::EachRecord, &mut worker, &shutdown).await
}

impl driver::Job for Worker {
    type Error = NotifyError;

    async fn apply(&mut self, record: &InRecord) -> Result<Applied, NotifyError> {
        let envelope = match model::codec::decode(record.payload.as_deref().unwrap_or_default()) {
            Ok(envelope) => envelope,
            Err(error) => return Ok(Applied::DeadLetter(Reason::from(&error))),
        };
        Ok(match self.handle(record, &envelope).await? {
            Outcome::Done => Applied::Done,
            Outcome::Interrupted => Applied::Interrupted,
        })
    }

    async fn flush(&mut self) -> Result<Vec<Position>, NotifyError> {
        Ok(Vec::new())
    }
}

enum Outcome {
    /// Every channel delivered or dead-lettered it: the offset may be committed.
    Done,
    /// Shutdown came first: leave it for the next start.
    Interrupted,
}

struct Worker {
    config: NotifyConfig,
    store: Store,
    producer: bus::Producer,
    notifiers: Vec<Arc<dyn Notifier>>,
    shutdown: CancellationToken,
    rng: std::sync::Mutex<rand_chacha::ChaCha8Rng>,
}

impl Worker {
    async fn handle(&self, record: &InRecord, envelope: &Envelope) -> Result<Outcome, NotifyError> {
        let Some(reader) = self.reader(envelope).await else {
            return Ok(Outcome::Interrupted);
        };
        let Some(reader) = reader else {
            return Ok(Outcome::Done);
        };
        for notifier in &self.notifiers {
            let channel = notifier.channel();
            let source = envelope.event_id.to_string();
            let Some(sent) = self
                .until_stored(|| was_sent(&self.store, &source, channel))
                .await
            else {
                return Ok(Outcome::Interrupted);
            };
            if sent {
                continue;
            }
            let Some(rendered) = reader.render(&envelope.event, notifier.style()) else {
                continue;
            };
            let notification = Notification {
                to: reader.recipient(),
                merchant_id: envelope.merchant_id.clone(),
                template: rendered.template.to_owned(),
                text: rendered.text,
                source_event_id: source,
            };
            match self.deliver(notifier.as_ref(), &notification).await {
                Delivery::Delivered => {
                    let recorded = self
                        .until_stored(|| record_sent(&self.store, envelope, &notification, channel))
                        .await;
                    if recorded.is_none() {
                        return Ok(Outcome::Interrupted);
                    }
                }
                Delivery::Failed(reason) => {
                    let stage = format!("{STAGE}.{channel}");
                    self.dead_letter(record, &stage, &reason).await?;
                }
                Delivery::Interrupted => return Ok(Outcome::Interrupted),
            }
        }
        Ok(Outcome::Done)
    }

    /// Who is told about `envelope`'s event, with what the store knows of them: `Some(None)`
    /// when nobody here is (not a told event, or an order or merchant this core does not hold:
    /// another core's, or synthetic traffic produced straight to the topic, as the demo's
    /// generator does); `None` when shutdown came first.
    async fn reader(&self, envelope: &Envelope) -> Option<Option<Reader>> {
        let event = &envelope.event;
        if template::is_notified(event) {
            let order_id = OrderId::new(envelope.key());
            let facts = self
                .until_stored(|| order_facts(&self.store, &order_id))
                .await?;
            if facts.is_none() {
                tracing::debug!(%order_id, "not notifying about an order this core does not hold");
            }
            Some(facts.map(|facts| Reader::Customer { order_id, facts }))
        } else if let Event::StockLow(low) = event {
            let merchant = &envelope.merchant_id;
            let facts = self
                .until_stored(|| shop_facts(&self.store, merchant, &low.product_id))
                .await?;
            Some(facts.map(Reader::Merchant))
        } else {
            Some(None)
        }
    }

    async fn deliver(&self, notifier: &dyn Notifier, notification: &Notification) -> Delivery {
        let tries = self.config.max_tries.max(1);
        let mut attempt = 1;
        loop {
            let error = match notifier.deliver(notification).await {
                Ok(()) => return Delivery::Delivered,
                Err(DeliveryError::Refused(message)) => {
                    return Delivery::Failed(Reason::new(REFUSED, message));
                }
                Err(DeliveryError::Transient(message)) => message,
                // The receiver is known to be down: wait for its breaker's probe without
                // spending a try, rather than dead-letter every notification of an outage.
                Err(DeliveryError::CircuitOpen { retry_in }) => {
                    if !self.wait(retry_in).await {
                        return Delivery::Interrupted;
                    }
                    continue;
                }
            };
            if attempt == tries {
                return Delivery::Failed(Reason::new(
                    Reason::RETRIES_EXHAUSTED,
                    format!("{} tries on {}: {error}", tries, notifier.channel()),
                ));
            }
            tracing::warn!(
                channel = notifier.channel(),
                attempt,
                %error,
                "notification not delivered; retrying"
            );
            if !self.pause(attempt - 1).await {
                return Delivery::Interrupted;
            }
            attempt += 1;
        }
    }

    /// Runs a store call until it succeeds: the store being briefly unavailable is no reason
    /// to dead-letter an event. `None` when shutdown came first.
    async fn until_stored<T, F, Fut>(&self, mut call: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 0;
        loop {
            match call().await {
                Ok(value) => return Some(value),
                Err(error) => {
                    tracing::warn!(%error, "notifier store call failed; retrying");
                }
            }
            if !self.pause(attempt).await {
                return None;
            }
            attempt += 1;
        }
    }

    /// Sleeps `wait`; false when shutdown interrupted it.
    async fn wait(&self, wait: Duration) -> bool {
        tokio::select! {
            () = self.shutdown.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }

    /// Sleeps the backoff for `attempt`; false when shutdown interrupted it.
    async fn pause(&self, attempt: u32) -> bool {
        let wait = {
            let mut rng = self
                .rng
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            jittered_backoff(
                self.config.initial_backoff_ms,
                self.config.max_backoff_ms,
                attempt,
                &mut *rng,
            )
        };
        tokio::select! {
            () = self.shutdown.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }

    async fn dead_letter(
        &self,
        record: &InRecord,
        stage: &str,
        reason: &Reason,
    ) -> Result<(), NotifyError> {
        tracing::warn!(
            stage,
            code = reason.code,
            message = reason.message,
            topic = record.topic_name,
            offset = record.offset,
            "dead-lettering an event the notifier could not deliver"
        );
        self.producer.dead_letter(record, stage, reason).await?;
        Ok(())
    }
}

enum Reader {
    Customer {
        order_id: OrderId,
        facts: OrderFacts,
    },
    Merchant(ShopFacts),
}

impl Reader {
    fn render(&self, event: &Event, style: Style) -> Option<Rendered> {
        match self {
            Reader::Customer { facts, .. } => template::render(event, facts, style),
            Reader::Merchant(facts) => template::render_for_merchant(event, facts, style),
        }
    }

    fn recipient(&self) -> Recipient {
        match self {
            Reader::Customer { order_id, facts } => Recipient::Customer {
                order_id: order_id.clone(),
                customer_id: facts.customer_id.clone(),
            },
            Reader::Merchant(_) => Recipient::Merchant,
        }
    }
}

enum Delivery {
    Delivered,
    Failed(Reason),
    Interrupted,
}

async fn order_facts(store: &Store, order_id: &OrderId) -> Result<Option<OrderFacts>, StoreError> {
    let row =
        sqlx::query("SELECT customer_id, currency, total_minor FROM orders WHERE order_id = $1")
            .bind(order_id.as_str().to_owned())
            .fetch_optional(store.pool())
            .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let currency: String = row.try_get(1)?;
    let currency = model::Currency::parse(&currency)
        .ok_or_else(|| StoreError::Corrupt(format!("order {order_id} currency {currency:?}")))?;
    Ok(Some(OrderFacts {
        customer_id: CustomerId::new(row.try_get::<String, _>(0)?),
        total: Money::new(row.try_get(2)?, currency),
    }))
}

async fn shop_facts(
    store: &Store,
    merchant_id: &MerchantId,
    product_id: &ProductId,
) -> Result<Option<ShopFacts>, StoreError> {
    let row = sqlx::query(
        "SELECT m.name, p.title FROM merchants m
         LEFT JOIN products p ON p.product_id = $2 AND p.merchant_id = m.merchant_id
         WHERE m.merchant_id = $1",
    )
    .bind(merchant_id.as_str().to_owned())
    .bind(product_id.as_str().to_owned())
    .fetch_optional(store.pool())
    .await?;
    row.map(|row| {
        Ok(ShopFacts {
            merchant_name: row.try_get(0)?,
            product_title: row.try_get(1)?,
        })
    })
    .transpose()
}

async fn was_sent(store: &Store, source_event_id: &str, channel: &str) -> Result<bool, StoreError> {
    let row =
        sqlx::query("SELECT 1 FROM notifications_sent WHERE source_event_id = $1 AND channel = $2")
            .bind(source_event_id.to_owned())
            .bind(channel.to_owned())
            .fetch_optional(store.pool())
            .await?;
    Ok(row.is_some())
}

/// Records the delivery and its `notification.sent` event in one transaction; a second
/// recording of the same delivery (a concurrent replay) changes nothing.
async fn record_sent(
    store: &Store,
    source: &Envelope,
    notification: &Notification,
    channel: &str,
) -> Result<(), StoreError> {
    let now = now_ms();
    let event = sent_event(notification, channel);
    let row = crate::outbox::encode(&source.merchant_id, now, event)?;
    let (source_event_id, channel) = (notification.source_event_id.clone(), channel.to_owned());
    // One of these per order: it shares a group commit with the placements around it.
    store
        .write_grouped(move |tx| {
            Box::pin(async move {
                let inserted = sqlx::query(
                    "INSERT INTO notifications_sent (source_event_id, channel, sent_at)
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(source_event_id)
                .bind(channel)
                .bind(now)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                if inserted == 1 {
                    crate::outbox::insert(tx, std::slice::from_ref(&row)).await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .await
}

/// The event that records `notification` as delivered on `channel`.
fn sent_event(notification: &Notification, channel: &str) -> Event {
    let (channel, template, text, source_event_id) = (
        channel.to_owned(),
        notification.template.clone(),
        notification.text.clone(),
        notification.source_event_id.clone(),
    );
    match &notification.to {
        Recipient::Customer {
            order_id,
            customer_id,
        } => Event::NotificationSent(NotificationSent {
            order_id: order_id.clone(),
            customer_id: customer_id.clone(),
            channel,
            template,
            text,
            source_event_id,
        }),
        Recipient::Merchant => Event::MerchantNotified(MerchantNotified {
            channel,
            template,
            text,
            source_event_id,
        }),
    }
}
