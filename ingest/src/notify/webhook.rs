//! Delivers notifications as JSON `POST`s to an HTTP endpoint the merchant runs (which mails,
//! pushes or texts them on).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use runtime::metrics::Registry;
use serde::Deserialize;

use super::{DeliveryError, Notification, Notifier, Style};
use crate::breaker::{Breaker, BreakerPolicy};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// An `http://` URL; each notification is `POST`ed to it as JSON.
    pub url: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Failures in a row (unreachable, timeouts, 5xx, 408, 429) that open the endpoint's
    /// breaker, and how long it then waits before one probe.
    #[serde(default)]
    pub breaker: BreakerPolicy,
}

fn default_timeout_ms() -> u64 {
    5_000
}

#[derive(Debug, Clone)]
pub struct WebhookNotifier {
    client: reqwest::Client,
    url: reqwest::Url,
    breaker: Arc<Breaker>,
}

impl WebhookNotifier {
    /// Checks the URL now, so a typo fails at start instead of at the first order.
    /// The endpoint's breaker reports on `metrics` when given (as `webhook:<host:port>`).
    pub fn new(config: &WebhookConfig, metrics: Option<&Registry>) -> Result<Self, String> {
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| format!("notify.webhook.url {:?}: {e}", config.url))?;
        if url.scheme() != "http" {
            // The build carries no TLS stack; a TLS-terminating proxy on the same host covers
            // https receivers.
            return Err(format!(
                "notify.webhook.url {:?}: only http:// is supported (put a TLS-terminating proxy in front of an https receiver)",
                config.url
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms.max(1)))
            .build()
            .map_err(|e| format!("webhook client: {e}"))?;
        let name = format!(
            "webhook:{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or(80)
        );
        let breaker = Breaker::new(name, config.breaker);
        let breaker = Arc::new(match metrics {
            Some(metrics) => breaker.reported(metrics),
            None => breaker,
        });
        Ok(Self {
            client,
            url,
            breaker,
        })
    }
}

impl Notifier for WebhookNotifier {
    fn channel(&self) -> &str {
        "webhook"
    }

    fn style(&self) -> Style {
        Style::Long
    }

    fn deliver<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            if let Err(refused) = self.breaker.admit() {
                return Err(DeliveryError::CircuitOpen {
                    retry_in: refused.retry_in,
                });
            }
            let outcome = self.post(notification).await;
            match &outcome {
                Err(DeliveryError::Transient(_)) => self.breaker.failed(),
                // The receiver answered: it is up, whatever it thought of the message.
                _ => self.breaker.succeeded(),
            }
            outcome
        })
    }
}

impl WebhookNotifier {
    async fn post(&self, notification: &Notification) -> Result<(), DeliveryError> {
        {
            let response = self
                .client
                .post(self.url.clone())
                .header(
                    "Idempotency-Key",
                    notification.idempotency_key(self.channel()),
                )
                .json(notification)
                .send()
                .await
                .map_err(|e| DeliveryError::Transient(format!("{}: {e}", self.url)))?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let message = format!("{} answered {status}", self.url);
            // Timeouts, throttling and server errors pass; any other refusal is about this
            // message and would be refused again.
            if status.is_server_error()
                || status == reqwest::StatusCode::REQUEST_TIMEOUT
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            {
                Err(DeliveryError::Transient(message))
            } else {
                Err(DeliveryError::Refused(message))
            }
        }
    }
}
