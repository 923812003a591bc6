//! Notifications: a consumer of order and refund events that tells the customer about each
//! change exactly once per channel, and of low-stock alerts that tells the merchant.
//!
//! Only orders and merchants in this core's store are notified: an event from elsewhere
//! (another core, the demo's generator writing to the topic directly) belongs to another
//! notifier.
//! Each event is rendered per channel ([`template`]) and handed to that channel's [`Notifier`].
//! A delivery that fails for a transient reason is retried with backoff; after the configured
//! tries, or at once when the receiver refuses it, the source record goes to the DLQ with the
//! reason. A delivery that succeeded is recorded in `notifications_sent` by `(event_id,
//! channel)` in the same transaction as its `notification.sent` outbox event, so a redelivered
//! order event notifies nobody twice and the notifications topic gets one event per
//! notification.
//!
//! The one gap no consumer can close alone: a crash after the receiver accepted a message and
//! before it was recorded sends it again on restart. The webhook carries an `Idempotency-Key`
//! made of the event id and channel so the receiver can drop that repeat.

pub mod template;
mod webhook;
mod worker;

use futures::future::BoxFuture;
use model::{CustomerId, MerchantId, OrderId};
use serde::Serialize;

pub use template::{OrderFacts, Rendered, ShopFacts, Style};
pub use webhook::{WebhookConfig, WebhookNotifier};
pub use worker::{NotifyConfig, NotifyError, run};

/// One message for one reader on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// A webhook receiver tells customers' messages from merchants' by its `to` field.
    #[serde(flatten)]
    pub to: Recipient,
    pub merchant_id: MerchantId,
    /// Named after the event, e.g. `order.shipped`.
    pub template: String,
    pub text: String,
    /// The `event_id` of the event this tells about.
    pub source_event_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Recipient {
    /// The customer of an order, about a change to it.
    Customer {
        order_id: OrderId,
        customer_id: CustomerId,
    },
    /// The merchant itself (`merchant_id`), about its own shop.
    Merchant,
}

impl Notification {
    /// The key a receiver can use to drop a repeat of this message.
    pub fn idempotency_key(&self, channel: &str) -> String {
        format!("{}:{channel}", self.source_event_id)
    }
}

/// Why a delivery did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth trying again: the receiver was unreachable, slow or overloaded.
    #[error("{0}")]
    Transient(String),
    /// Trying again will not help: the receiver refused this message.
    #[error("{0}")]
    Refused(String),
    /// The receiver's circuit breaker is open: no call was made; it may be tried after this.
    #[error("circuit open: the receiver failed repeatedly; next probe in {} ms", retry_in.as_millis())]
    CircuitOpen { retry_in: std::time::Duration },
}

/// A way to reach customers.
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Recorded with every notification sent: `log`, `webhook`, ...
    fn channel(&self) -> &str;
    fn style(&self) -> Style;
    fn deliver<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), DeliveryError>>;
}

/// Writes each notification to the service log: the channel for development. At `info` the
/// log says which order was told what template; the customer and the text (personal data)
/// are logged only at `debug` of target `shopstream::notification`, for those who ask.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn channel(&self) -> &str {
        "log"
    }

    fn style(&self) -> Style {
        Style::Short
    }

    fn deliver<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        match &notification.to {
            Recipient::Customer {
                order_id,
                customer_id,
            } => {
                tracing::info!(
                    target: "shopstream::notification",
                    %order_id,
                    template = notification.template,
                    "notification sent"
                );
                tracing::debug!(
                    target: "shopstream::notification",
                    %order_id,
                    %customer_id,
                    "{}",
                    notification.text
                );
            }
            // A merchant's message is about its own shop: nothing personal to keep back.
            Recipient::Merchant => tracing::info!(
                target: "shopstream::notification",
                merchant_id = %notification.merchant_id,
                template = notification.template,
                "{}",
                notification.text
            ),
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_log_channel_keeps_customers_and_message_text_out_of_the_log_at_info() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let notification = Notification {
            to: Recipient::Customer {
                order_id: OrderId::new("o-123"),
                customer_id: CustomerId::new("c-secret-customer"),
            },
            merchant_id: MerchantId::new("m-1"),
            template: "order.shipped".into(),
            text: "Hi Asha, your parcel to 12 MG Road is on its way".into(),
            source_event_id: "e-1".into(),
        };
        tracing::subscriber::with_default(subscriber, || {
            futures::FutureExt::now_or_never(LogNotifier.deliver(&notification))
        })
        .expect("the log channel answers at once")
        .unwrap();
        let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("o-123"), "the order is logged: {logged}");
        for private in ["c-secret-customer", "Asha", "MG Road"] {
            assert!(
                !logged.contains(private),
                "{private} reached the log: {logged}"
            );
        }
    }

    #[test]
    fn a_webhook_receiver_reads_who_a_message_is_for() {
        let merchant = Notification {
            to: Recipient::Merchant,
            merchant_id: MerchantId::new("m-1"),
            template: "inventory.stock_low".into(),
            text: "Running low".into(),
            source_event_id: "e-2".into(),
        };
        let json = serde_json::to_value(&merchant).unwrap();
        assert_eq!(json["to"], "merchant");
        assert_eq!(json["merchant_id"], "m-1");
        assert!(json.get("order_id").is_none(), "{json}");
        let customer = Notification {
            to: Recipient::Customer {
                order_id: OrderId::new("o-1"),
                customer_id: CustomerId::new("c-1"),
            },
            ..merchant
        };
        let json = serde_json::to_value(&customer).unwrap();
        assert_eq!(json["to"], "customer");
        assert_eq!(json["order_id"], "o-1");
        assert_eq!(json["customer_id"], "c-1");
    }
}
