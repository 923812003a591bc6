//! Deliveries against the promises shown to shoppers: per merchant and IST day of delivery,
//! how many arrived, how many by the promised date, the days from shipment to door (TAT) as
//! a small histogram, and the slack (promised minus actual), by courier and by destination
//! state; the late ones listed. Pure: the fold's state in, the answer out.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use model::geo::Directory;
use model::{Pincode, ShipmentId};
use serde::{Deserialize, Serialize};

use super::live::Shop;
use super::query::{Range, label};

const DAY_MS: i64 = 86_400_000;
/// TAT histogram slots: 0 to 29 days, and 30 or more.
const TAT_SLOTS: usize = 31;
/// Late deliveries listed per merchant and day; the rest are counted.
pub const LATE_LISTED_PER_DAY: usize = 100;

/// Deliveries of one courier or to one state, on one day (or summed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeliveryStats {
    pub delivered: u64,
    pub on_time: u64,
    /// Deliveries by whole days from shipment to delivery; the last slot holds 30 or more.
    pub tat_days: Vec<u64>,
    /// Promised minus delivered, summed over the deliveries (ms; negative when late).
    pub slack_ms: i64,
}

impl DeliveryStats {
    pub fn record(&mut self, shipped_at: i64, promised_at: i64, delivered_at: i64) {
        self.delivered += 1;
        self.on_time += u64::from(delivered_at <= promised_at);
        self.slack_ms += promised_at - delivered_at;
        let days = usize::try_from((delivered_at - shipped_at).max(0) / DAY_MS).unwrap_or(0);
        if self.tat_days.len() < TAT_SLOTS {
            self.tat_days.resize(TAT_SLOTS, 0);
        }
        self.tat_days[days.min(TAT_SLOTS - 1)] += 1;
    }

    pub fn merge(&mut self, other: &DeliveryStats) {
        self.delivered += other.delivered;
        self.on_time += other.on_time;
        self.slack_ms += other.slack_ms;
        if self.tat_days.len() < other.tat_days.len() {
            self.tat_days.resize(other.tat_days.len(), 0);
        }
        for (into, n) in self.tat_days.iter_mut().zip(&other.tat_days) {
            *into += n;
        }
    }

    /// The TAT (whole days) below which share `q` of deliveries fall.
    fn tat_quantile(&self, q: f64) -> Option<u32> {
        if self.delivered == 0 {
            return None;
        }
        let wanted = ((self.delivered as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (days, n) in self.tat_days.iter().enumerate() {
            seen += n;
            if seen >= wanted {
                return u32::try_from(days).ok();
            }
        }
        None
    }
}

/// A shipment the fold remembers until it is delivered (or too old to wait for).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShipmentSeen {
    pub shipment_id: ShipmentId,
    pub courier: String,
    pub state: String,
    pub shipped_at: i64,
    pub promised_at: i64,
}

/// A delivery that came after its promise, or a shipment whose promise has passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Late {
    pub order_id: String,
    pub courier: String,
    pub state: String,
    pub promised_at: String,
    /// `None`: still on its way.
    pub delivered_at: Option<String>,
}

/// The state a pincode is in, from the shipped India Post directory ("unknown" outside it).
pub fn state_of(pincode: Pincode) -> String {
    static DIRECTORY: OnceLock<Directory> = OnceLock::new();
    DIRECTORY
        .get_or_init(Directory::load)
        .get(pincode)
        .map_or_else(|| "unknown".to_owned(), |place| place.state.clone())
}

/// One row of the answer: a courier or a state.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeliveryRow {
    pub name: String,
    pub delivered: u64,
    pub on_time: u64,
    pub on_time_rate: f64,
    /// Days from shipment to delivery, median and 90th percentile.
    pub tat_p50_days: Option<u32>,
    pub tat_p90_days: Option<u32>,
    /// Promised minus delivered, mean, hours (negative: late).
    pub mean_slack_hours: f64,
}

fn row(name: String, stats: &DeliveryStats) -> DeliveryRow {
    DeliveryRow {
        name,
        delivered: stats.delivered,
        on_time: stats.on_time,
        on_time_rate: if stats.delivered == 0 {
            0.0
        } else {
            stats.on_time as f64 / stats.delivered as f64
        },
        tat_p50_days: stats.tat_quantile(0.5),
        tat_p90_days: stats.tat_quantile(0.9),
        mean_slack_hours: if stats.delivered == 0 {
            0.0
        } else {
            stats.slack_ms as f64 / stats.delivered as f64 / 3_600_000.0
        },
    }
}

/// A shop's deliveries over the IST days the range touches.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryReport {
    pub totals: DeliveryRow,
    pub by_courier: Vec<DeliveryRow>,
    pub by_state: Vec<DeliveryRow>,
    /// Late deliveries of those days (at most 100 a day), then shipments still on their way
    /// past their promise.
    pub late: Vec<Late>,
}

/// The report for `shop` over `range`; `open` are the shop's shipments still on their way
/// at `now`.
pub fn report<'a>(
    shop: Option<&Shop>,
    range: &Range,
    open: impl Iterator<Item = (&'a String, &'a ShipmentSeen)>,
    now: i64,
) -> DeliveryReport {
    let mut total = DeliveryStats::default();
    let mut by_courier: BTreeMap<String, DeliveryStats> = BTreeMap::new();
    let mut by_state: BTreeMap<String, DeliveryStats> = BTreeMap::new();
    let mut late = Vec::new();
    for day in super::query::days(shop, range) {
        for (courier, stats) in &day.deliveries_by_courier {
            total.merge(stats);
            by_courier.entry(courier.clone()).or_default().merge(stats);
        }
        for (state, stats) in &day.deliveries_by_state {
            by_state.entry(state.clone()).or_default().merge(stats);
        }
        late.extend(day.late.iter().cloned());
    }
    let mut waiting: Vec<Late> = open
        .filter(|(_, s)| s.promised_at < now)
        .map(|(order_id, s)| Late {
            order_id: order_id.clone(),
            courier: s.courier.clone(),
            state: s.state.clone(),
            promised_at: label(s.promised_at),
            delivered_at: None,
        })
        .collect();
    waiting.sort_by(|a, b| {
        a.promised_at
            .cmp(&b.promised_at)
            .then(a.order_id.cmp(&b.order_id))
    });
    late.extend(waiting.into_iter().take(LATE_LISTED_PER_DAY));
    let rows = |map: BTreeMap<String, DeliveryStats>| {
        let mut rows: Vec<DeliveryRow> = map.into_iter().map(|(n, s)| row(n, &s)).collect();
        rows.sort_by(|a, b| b.delivered.cmp(&a.delivered).then(a.name.cmp(&b.name)));
        rows
    };
    DeliveryReport {
        totals: row("all".to_owned(), &total),
        by_courier: rows(by_courier),
        by_state: rows(by_state),
        late,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_count_on_time_tat_and_slack() {
        let mut stats = DeliveryStats::default();
        stats.record(0, 3 * DAY_MS, 2 * DAY_MS + 5);
        stats.record(0, 3 * DAY_MS, 4 * DAY_MS);
        stats.record(0, 3 * DAY_MS, 3 * DAY_MS);
        assert_eq!((stats.delivered, stats.on_time), (3, 2));
        assert_eq!(stats.tat_days[2..5], [1, 1, 1]);
        assert_eq!(stats.tat_quantile(0.5), Some(3));
        assert_eq!(stats.tat_quantile(0.9), Some(4));
        let row = row("x".into(), &stats);
        assert!((row.on_time_rate - 2.0 / 3.0).abs() < 1e-9);
        assert!(
            (row.mean_slack_hours - (DAY_MS - 5 - DAY_MS) as f64 / 3.0 / 3_600_000.0).abs() < 1e-6
        );
    }

    #[test]
    fn states_come_from_the_pincode_directory() {
        let pincode = Pincode::parse("560034").expect("pincode");
        assert_eq!(state_of(pincode), "Karnataka");
    }
}
