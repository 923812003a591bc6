//! GST as the core charges it and the finance exports report it: list prices are
//! GST-inclusive, so each line's tax is carved out of its price at its category's rate. One
//! definition, so an export recomputes exactly what the core priced.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// GST rate per category in basis points (1800 = 18 %), with a fallback for categories not
/// listed. The defaults follow the September 2025 rate rationalisation (5 % and 18 % slabs,
/// books exempt); a deployment sets its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GstRates {
    pub by_category: BTreeMap<String, u32>,
    pub other_bps: u32,
}

impl Default for GstRates {
    fn default() -> Self {
        let by_category = [
            ("apparel", 500),
            ("electronics", 1800),
            ("grocery", 500),
            ("home", 1800),
            ("beauty", 1800),
            ("footwear", 500),
            ("books", 0),
            ("toys", 500),
        ]
        .into_iter()
        .map(|(category, bps)| (category.to_owned(), bps))
        .collect();
        Self {
            by_category,
            other_bps: 1800,
        }
    }
}

impl GstRates {
    pub fn bps(&self, category: &str) -> u32 {
        self.by_category
            .get(category)
            .copied()
            .unwrap_or(self.other_bps)
    }
}

/// The value before tax of a GST-inclusive amount, rounded half up to the minor unit.
pub fn taxable_part(gross: i64, gst_bps: u32) -> i64 {
    let denominator = 10_000 + i128::from(gst_bps);
    let numerator = i128::from(gross) * 10_000;
    let taxable = (2 * numerator + denominator) / (2 * denominator);
    // taxable <= gross, which fit in i64.
    i64::try_from(taxable).unwrap_or(gross)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_taxable_part_rounds_half_up_and_zero_rate_keeps_the_amount() {
        // 118.00 at 18 % is 100.00 + 18.00; 105.00 at 5 % is 100.00 + 5.00.
        assert_eq!(taxable_part(11_800, 1800), 10_000);
        assert_eq!(taxable_part(10_500, 500), 10_000);
        assert_eq!(taxable_part(999, 0), 999);
        // 1.00 at 18 %: 0.847... rounds to 0.85.
        assert_eq!(taxable_part(100, 1800), 85);
    }
}
