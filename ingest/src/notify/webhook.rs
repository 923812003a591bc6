//! Delivers notifications as JSON `POST`s to an HTTP endpoint the merchant runs (which mails,
//! pushes or texts them on).

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{DeliveryError, Notification, Notifier, Style};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// An `http://` URL; each notification is `POST`ed to it as JSON.
    pub url: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    5_000
}

#[derive(Debug, Clone)]
pub struct WebhookNotifier {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl WebhookNotifier {
    /// Checks the URL now, so a typo fails at start instead of at the first order.
    pub fn new(config: &WebhookConfig) -> Result<Self, String> {
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
        Ok(Self { client, url })
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
        })
    }
}
