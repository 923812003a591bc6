//! The cancellation refund policy: how much of what was captured a buyer gets back, by how long
//! after placing the order they cancel. The default is the food/hyperlocal policy (within
//! 10 min 70 %, within 30 min 40 %, later refused); each merchant may set its own tiers.

use model::Money;
use serde::{Deserialize, Serialize};

const MINUTE_MS: i64 = 60_000;

/// Cancelled at most `within_ms` after placing: `percent` of the captured amount comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct RefundTier {
    pub within_ms: i64,
    pub percent: u8,
}

/// Tiers in increasing `within_ms`; after the last one, cancelling is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<RefundTier>", into = "Vec<RefundTier>")]
#[derive(utoipa::ToSchema)]
pub struct CancellationPolicy {
    tiers: Vec<RefundTier>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("a cancellation policy needs at least one tier")]
    NoTiers,
    #[error("tier {index}: percent must be 0..=100, got {percent}")]
    PercentOutOfRange { index: usize, percent: u8 },
    #[error("tier {index}: windows must grow (each `within_ms` positive and above the previous)")]
    WindowsNotIncreasing { index: usize },
    #[error("tier {index}: a later cancellation may not refund more than an earlier one")]
    RefundGrowsWithTime { index: usize },
}

/// Too late to cancel under this policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "cancellation refused: {} s after the order was placed; cancelling closes {} s after placing",
    elapsed_ms / 1000,
    window_ms / 1000
)]
pub struct CancellationRefused {
    pub elapsed_ms: i64,
    pub window_ms: i64,
}

impl Default for CancellationPolicy {
    fn default() -> Self {
        Self {
            tiers: vec![
                RefundTier {
                    within_ms: 10 * MINUTE_MS,
                    percent: 70,
                },
                RefundTier {
                    within_ms: 30 * MINUTE_MS,
                    percent: 40,
                },
            ],
        }
    }
}

impl TryFrom<Vec<RefundTier>> for CancellationPolicy {
    type Error = PolicyError;

    fn try_from(tiers: Vec<RefundTier>) -> Result<Self, PolicyError> {
        CancellationPolicy::new(tiers)
    }
}

impl From<CancellationPolicy> for Vec<RefundTier> {
    fn from(policy: CancellationPolicy) -> Self {
        policy.tiers
    }
}

impl CancellationPolicy {
    pub fn new(tiers: Vec<RefundTier>) -> Result<Self, PolicyError> {
        if tiers.is_empty() {
            return Err(PolicyError::NoTiers);
        }
        let mut previous: Option<RefundTier> = None;
        for (index, tier) in tiers.iter().enumerate() {
            if tier.percent > 100 {
                return Err(PolicyError::PercentOutOfRange {
                    index,
                    percent: tier.percent,
                });
            }
            if tier.within_ms <= previous.map_or(0, |p| p.within_ms) {
                return Err(PolicyError::WindowsNotIncreasing { index });
            }
            if previous.is_some_and(|p| tier.percent > p.percent) {
                return Err(PolicyError::RefundGrowsWithTime { index });
            }
            previous = Some(*tier);
        }
        Ok(Self { tiers })
    }

    pub fn tiers(&self) -> &[RefundTier] {
        &self.tiers
    }

    /// The share refunded when cancelling `elapsed_ms` after placing. A window's end is
    /// inside it: at exactly 10:00 the 10-minute tier still applies.
    pub fn refund_percent(&self, elapsed_ms: i64) -> Result<u8, CancellationRefused> {
        // A cancel stamped before the order (clock skew between hosts) counts as immediate.
        let elapsed_ms = elapsed_ms.max(0);
        self.tiers
            .iter()
            .find(|tier| elapsed_ms <= tier.within_ms)
            .map(|tier| tier.percent)
            .ok_or(CancellationRefused {
                elapsed_ms,
                window_ms: self.tiers.last().map_or(0, |t| t.within_ms),
            })
    }

    /// What goes back to the buyer of an order placed at `placed_at` and cancelled at
    /// `cancelled_at` (UTC ms) that had `captured` taken. Rounded down to the minor unit, so a
    /// refund never exceeds its share.
    pub fn refund(
        &self,
        placed_at: i64,
        cancelled_at: i64,
        captured: Money,
    ) -> Result<Money, CancellationRefused> {
        let percent = self.refund_percent(cancelled_at.saturating_sub(placed_at))?;
        let amount = i128::from(captured.amount_minor) * i128::from(percent) / 100;
        // percent <= 100, so the share fits wherever the captured amount did.
        let amount = i64::try_from(amount).unwrap_or(captured.amount_minor);
        Ok(Money::new(amount, captured.currency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND_MS: i64 = 1000;

    fn at(minutes: i64, seconds: i64) -> i64 {
        minutes * MINUTE_MS + seconds * SECOND_MS
    }

    #[test]
    fn the_refund_window_table() {
        let policy = CancellationPolicy::default();
        let captured = Money::inr(100_000);
        let cases = [
            (at(0, 0), Some(70_000)),
            (at(9, 59), Some(70_000)),
            (at(10, 0), Some(70_000)),
            (at(10, 1), Some(40_000)),
            (at(30, 0), Some(40_000)),
            (at(30, 1), None),
            (at(600, 0), None),
        ];
        for (elapsed, expected) in cases {
            let refund = policy.refund(1_000, 1_000 + elapsed, captured).ok();
            assert_eq!(
                refund.map(|m| m.amount_minor),
                expected,
                "cancelled {} s after placing",
                elapsed / SECOND_MS
            );
        }
    }

    #[test]
    fn a_refused_cancellation_says_how_late_it_was() {
        let error = CancellationPolicy::default()
            .refund(0, at(30, 1), Money::inr(100))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "cancellation refused: 1801 s after the order was placed; cancelling closes 1800 s after placing"
        );
    }

    #[test]
    fn shares_round_down_to_the_paisa() {
        let refund = CancellationPolicy::default()
            .refund(0, 1, Money::inr(999))
            .unwrap();
        assert_eq!(refund, Money::inr(699)); // 70 % of 9.99 is 6.993
    }

    #[test]
    fn a_merchant_policy_overrides_the_default() {
        let generous = CancellationPolicy::new(vec![RefundTier {
            within_ms: 24 * 60 * MINUTE_MS,
            percent: 100,
        }])
        .unwrap();
        assert_eq!(
            generous.refund(0, at(120, 0), Money::inr(500)),
            Ok(Money::inr(500))
        );
    }

    #[test]
    fn cancel_stamped_before_the_order_counts_as_immediate() {
        let policy = CancellationPolicy::default();
        assert_eq!(policy.refund_percent(-5_000), Ok(70));
    }

    #[test]
    fn nonsensical_policies_are_refused_with_the_tier_named() {
        let tier = |within_ms, percent| RefundTier { within_ms, percent };
        assert_eq!(CancellationPolicy::new(vec![]), Err(PolicyError::NoTiers));
        assert_eq!(
            CancellationPolicy::new(vec![tier(1000, 101)]),
            Err(PolicyError::PercentOutOfRange {
                index: 0,
                percent: 101
            })
        );
        assert_eq!(
            CancellationPolicy::new(vec![tier(1000, 50), tier(1000, 40)]),
            Err(PolicyError::WindowsNotIncreasing { index: 1 })
        );
        assert_eq!(
            CancellationPolicy::new(vec![tier(1000, 50), tier(2000, 60)]),
            Err(PolicyError::RefundGrowsWithTime { index: 1 })
        );
    }

    #[test]
    fn policies_read_from_config_are_validated() {
        let parsed: Result<CancellationPolicy, _> =
            serde_json::from_str(r#"[{"within_ms": 600000, "percent": 120}]"#);
        let message = parsed.unwrap_err().to_string();
        assert!(message.contains("percent must be 0..=100"), "{message}");
    }
}
