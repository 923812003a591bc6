//! The click/search collector's rules, without I/O: which posted lines are events the
//! collector may accept. Browsers and apps report behaviour (searches, views, clicks, carts,
//! wishlists); anything else, malformed lines and events stamped far from now are rejected
//! with a code and go to the DLQ.

use model::api::ErrorCode;
use model::{Envelope, MerchantId, Topic, codec};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Largest request body; larger ones are refused with 413 before any line is read.
    pub max_body_bytes: usize,
    /// Most lines in one batch.
    pub max_lines: usize,
    /// How long to wait for the broker's acknowledgement before answering 503.
    pub ack_timeout_ms: u64,
    /// Events stamped further ahead of the server clock are refused (clock skew allowance).
    pub max_future_ms: i64,
    /// Events older than this are refused: they would land in long-closed windows.
    pub max_past_ms: i64,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_lines: 10_000,
            ack_timeout_ms: 5_000,
            max_future_ms: 5 * 60_000,
            max_past_ms: 7 * 24 * 3_600_000,
        }
    }
}

/// Why a line was refused: a stable code and a message for the developer who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
}

/// The topics the collector writes; everything else is the transactional core's to emit.
pub const COLLECTED: [Topic; 2] = [Topic::Searches, Topic::Clicks];

/// Checks one line at server time `now` (UTC ms), posted by a key bound to `only` (a
/// merchant's storefront or collector key), if any.
pub fn validate(
    line: &[u8],
    now: i64,
    config: &CollectorConfig,
    only: Option<&MerchantId>,
) -> Result<Envelope, Rejection> {
    let envelope = codec::decode(line).map_err(|error| Rejection {
        code: error.error_code(),
        message: error.to_string(),
    })?;
    if let Some(merchant) = only
        && envelope.merchant_id != *merchant
    {
        return Err(Rejection {
            code: ErrorCode::Forbidden,
            message: format!(
                "this key posts events for merchant {merchant} only, not {}",
                envelope.merchant_id
            ),
        });
    }
    if !COLLECTED.contains(&envelope.topic()) {
        return Err(Rejection {
            code: ErrorCode::NotCollectable,
            message: format!(
                "{} events come from the orders core, not the collector; post searches and clicks",
                envelope.event_type()
            ),
        });
    }
    let ahead = envelope.event_time - now;
    if ahead > config.max_future_ms {
        return Err(Rejection {
            code: ErrorCode::EventTimeInFuture,
            message: format!(
                "event_time is {} s ahead of the server clock; at most {} s is allowed",
                ahead / 1000,
                config.max_future_ms / 1000
            ),
        });
    }
    if -ahead > config.max_past_ms {
        return Err(Rejection {
            code: ErrorCode::EventTimeTooOld,
            message: format!(
                "event_time is {} s in the past; at most {} s is accepted",
                -ahead / 1000,
                config.max_past_ms / 1000
            ),
        });
    }
    Ok(envelope)
}

/// Splits an NDJSON body into (1-based line number, bytes), skipping blank lines.
pub fn lines(body: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    body.split(|&b| b == b'\n')
        .enumerate()
        .map(|(index, line)| (index + 1, line.strip_suffix(b"\r").unwrap_or(line)))
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
}

#[cfg(test)]
mod tests {
    use model::payload::{OrderFailed, ProductViewed};
    use model::{Event, MerchantId};

    use super::*;

    const NOW: i64 = 1_764_547_200_000;

    fn line(event: Event, time: i64) -> Vec<u8> {
        let event_id = uuid::Uuid::now_v7();
        codec::encode(&Envelope::new(
            event_id,
            time,
            MerchantId::new("m-1"),
            event,
        ))
    }

    fn view() -> Event {
        Event::ProductViewed(ProductViewed {
            session_id: "s-1".into(),
            customer_id: None,
            product_id: "p-1".into(),
        })
    }

    #[test]
    fn a_click_near_now_is_accepted() {
        let config = CollectorConfig::default();
        assert!(validate(&line(view(), NOW - 1_000), NOW, &config, None).is_ok());
    }

    #[test]
    fn far_future_and_far_past_are_rejected_with_codes() {
        let config = CollectorConfig::default();
        let future = validate(&line(view(), NOW + 3_600_000), NOW, &config, None).unwrap_err();
        assert_eq!(future.code.as_str(), "event_time_in_future");
        let past = validate(&line(view(), NOW - 30 * 86_400_000), NOW, &config, None).unwrap_err();
        assert_eq!(past.code.as_str(), "event_time_too_old");
    }

    #[test]
    fn a_bound_key_posts_for_its_own_merchant_only() {
        let config = CollectorConfig::default();
        let own = MerchantId::new("m-1");
        assert!(validate(&line(view(), NOW), NOW, &config, Some(&own)).is_ok());
        let other = MerchantId::new("m-other");
        let rejection = validate(&line(view(), NOW), NOW, &config, Some(&other)).unwrap_err();
        assert_eq!(rejection.code.as_str(), "forbidden");
    }

    #[test]
    fn order_events_are_not_collectable() {
        let failed = Event::OrderFailed(OrderFailed {
            order_id: "o-1".into(),
            reason: "x".into(),
        });
        let rejection =
            validate(&line(failed, NOW), NOW, &CollectorConfig::default(), None).unwrap_err();
        assert_eq!(rejection.code.as_str(), "not_collectable");
    }

    #[test]
    fn malformed_lines_carry_the_decoder_code() {
        let rejection =
            validate(b"not json at all", NOW, &CollectorConfig::default(), None).unwrap_err();
        assert_eq!(rejection.code.as_str(), "malformed_json");
    }

    #[test]
    fn lines_are_numbered_from_one_and_blank_ones_skipped() {
        let body = b"a\r\n\n  \nb\n";
        let numbered: Vec<(usize, &[u8])> = lines(body).collect();
        assert_eq!(numbered, vec![(1, &b"a"[..]), (4, &b"b"[..])]);
    }
}
