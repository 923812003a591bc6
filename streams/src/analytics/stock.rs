//! Low-stock alerts, as a pure fold over inventory and logistics envelopes: per product, what
//! is available (on hand minus reserved) and how fast it sells (units sold per day over the
//! trailing `velocity_days`), so its days of cover; an alert when the cover falls below its
//! warehouse's restock lead time, once per crossing: raised when it falls, re-armed when a
//! restock (or slower sales) lifts it back to the lead time or above.
//!
//! A product's inventory events share its partition, so they arrive in the order they were
//! written whatever the consumer's interleaving of partitions: replaying them from a
//! checkpoint raises the same alerts with the same ids. Memory is bounded: at most
//! `max_products` watched (further ones counted, not watched) and `alerts_kept` alerts listed
//! per merchant.

use std::collections::{BTreeMap, HashMap, VecDeque};

use model::calendar::IstDate;
use model::payload::{SOLD_REASON, StockLow};
use model::{Envelope, Event, MerchantId, ProductId, WarehouseId};
use serde::{Deserialize, Serialize};

/// Bounds and rules of the low-stock watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StockConfig {
    /// Days of sales the velocity is the average of (including the current day).
    pub velocity_days: u32,
    /// The restock lead time of a warehouse no logistics event has described.
    pub default_lead_days: u32,
    /// Products watched at once; past it new ones are counted, not watched.
    pub max_products: usize,
    /// Alerts listed per merchant, newest kept.
    pub alerts_kept: usize,
}

impl Default for StockConfig {
    fn default() -> Self {
        Self {
            velocity_days: 7,
            default_lead_days: 7,
            max_products: 1_000_000,
            alerts_kept: 200,
        }
    }
}

/// What the watch knows of one product.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Watched {
    merchant: String,
    warehouse: String,
    /// From the latest adjustment; `None` until one has been read, and nothing is judged
    /// before (a watch started mid-stream would otherwise take reservations for the stock).
    on_hand: Option<i64>,
    reserved: i64,
    /// Units sold per IST day, the trailing `velocity_days` only.
    sold: BTreeMap<IstDate, u64>,
    /// Whether the cover is below the lead time now (an alert was raised when it fell).
    low: bool,
    /// Alerts raised so far: the next alert's number, which its id is made of.
    crossings: u32,
}

/// One alert, as listed and published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Made of the product and the crossing's number: a replay raises the same id.
    pub alert_id: uuid::Uuid,
    pub merchant_id: String,
    /// Event time of the inventory event that crossed, UTC ms.
    pub at: i64,
    pub low: StockLow,
}

impl Alert {
    /// The event it is published as.
    pub fn envelope(&self) -> Envelope {
        Envelope::new(
            self.alert_id,
            self.at,
            MerchantId::new(self.merchant_id.clone()),
            Event::StockLow(self.low.clone()),
        )
    }
}

/// The low-stock watch over every shop.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StockWatch {
    products: HashMap<String, Watched>,
    /// Restock lead days by warehouse, from the logistics topic.
    lead_days: HashMap<String, u32>,
    /// Listed alerts per merchant, oldest first.
    alerts: HashMap<String, VecDeque<Alert>>,
    /// Raised and not yet acknowledged by the broker, oldest first.
    unpublished: Vec<Alert>,
    /// Products not watched because `max_products` were.
    pub unwatched: u64,
}

impl StockWatch {
    /// Folds one envelope in; other topics' events change nothing.
    pub fn apply(&mut self, envelope: &Envelope, config: &StockConfig) {
        let merchant = envelope.merchant_id.as_str();
        let (product, warehouse) = match &envelope.event {
            Event::WarehouseUpserted(w) => {
                self.lead_days
                    .insert(w.warehouse_id.as_str().to_owned(), w.restock_lead_days);
                return;
            }
            Event::StockAdjusted(p) => (&p.product_id, &p.warehouse_id),
            Event::StockReserved(p) => (&p.product_id, &p.warehouse_id),
            Event::StockReleased(p) => (&p.product_id, &p.warehouse_id),
            _ => return,
        };
        let known = self.products.contains_key(product.as_str());
        if !known && self.products.len() >= config.max_products {
            self.unwatched += 1;
            return;
        }
        let lead = self.lead_of(warehouse.as_str(), config);
        let watched = self
            .products
            .entry(product.as_str().to_owned())
            .or_default();
        // Set when first seen or moved; no allocation on every event.
        if watched.merchant != merchant {
            watched.merchant = merchant.to_owned();
        }
        if watched.warehouse != warehouse.as_str() {
            watched.warehouse = warehouse.as_str().to_owned();
        }
        let day = IstDate::of_instant(envelope.event_time);
        match &envelope.event {
            Event::StockAdjusted(p) => {
                watched.on_hand = Some(p.on_hand);
                if p.delta < 0 && p.reason.starts_with(SOLD_REASON) {
                    // A paid order's reserved units leave stock.
                    let units = p.delta.unsigned_abs();
                    watched.reserved = (watched.reserved - p.delta.abs()).max(0);
                    *watched.sold.entry(day).or_default() += units;
                    let first = first_day(day, config);
                    while let Some((&oldest, _)) = watched.sold.first_key_value()
                        && oldest < first
                    {
                        watched.sold.pop_first();
                    }
                }
            }
            Event::StockReserved(p) => watched.reserved += i64::from(p.quantity),
            Event::StockReleased(p) => {
                watched.reserved = (watched.reserved - i64::from(p.quantity)).max(0);
            }
            _ => {}
        }
        let Some(level) = level(watched, day, config) else {
            return;
        };
        if !level.below(lead, config) {
            watched.low = false;
            return;
        }
        if watched.low {
            return;
        }
        watched.low = true;
        let alert = Alert {
            alert_id: alert_id(product.as_str(), watched.crossings, envelope.event_time),
            merchant_id: merchant.to_owned(),
            at: envelope.event_time,
            low: level.as_event(product.clone(), warehouse.clone(), lead, config),
        };
        watched.crossings += 1;
        let listed = self.alerts.entry(merchant.to_owned()).or_default();
        listed.push_back(alert.clone());
        while listed.len() > config.alerts_kept {
            listed.pop_front();
        }
        self.unpublished.push(alert);
    }

    fn lead_of(&self, warehouse: &str, config: &StockConfig) -> u32 {
        self.lead_days
            .get(warehouse)
            .copied()
            .unwrap_or(config.default_lead_days)
    }

    /// Alerts raised and not yet published, oldest first.
    pub fn unpublished(&self) -> &[Alert] {
        &self.unpublished
    }

    /// Forgets the first `count` unpublished alerts: the broker acknowledged them.
    pub fn published(&mut self, count: usize) {
        self.unpublished.drain(..count.min(self.unpublished.len()));
    }

    /// A merchant's alerts, newest first.
    pub fn alerts_of(&self, merchant: &str) -> Vec<Alert> {
        self.alerts
            .get(merchant)
            .map(|listed| listed.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// A merchant's products whose cover is below their lead time now, least cover first, as
    /// of `now` (UTC ms: days without sales lower the velocity), in the shape of their alert.
    pub fn running_low(&self, merchant: &str, now: i64, config: &StockConfig) -> Vec<StockLow> {
        let day = IstDate::of_instant(now);
        let mut low: Vec<StockLow> = self
            .products
            .iter()
            .filter(|(_, watched)| watched.merchant == merchant && watched.low)
            .filter_map(|(product, watched)| {
                let lead = self.lead_of(&watched.warehouse, config);
                let level = level(watched, day, config)?;
                let (product, warehouse) = (
                    ProductId::new(product.clone()),
                    WarehouseId::new(watched.warehouse.clone()),
                );
                Some(level.as_event(product, warehouse, lead, config))
            })
            .collect();
        low.sort_by(|a, b| {
            let cover = |low: &StockLow| low.days_of_cover().unwrap_or(f64::INFINITY);
            cover(a)
                .total_cmp(&cover(b))
                .then_with(|| a.product_id.cmp(&b.product_id))
        });
        low
    }

    /// Products watched.
    pub fn watched(&self) -> usize {
        self.products.len()
    }
}

/// What a product has and sells, on one day.
#[derive(Debug, Clone, Copy)]
struct Level {
    /// On hand minus reserved.
    available: i64,
    /// In the velocity window ending that day.
    units_sold: i64,
}

impl Level {
    /// Whether the cover is under `lead` days: available / (sold / days) < lead, in integers.
    fn below(self, lead: u32, config: &StockConfig) -> bool {
        self.units_sold > 0
            && i128::from(self.available.max(0)) * i128::from(config.velocity_days)
                < i128::from(lead) * i128::from(self.units_sold)
    }

    fn as_event(
        self,
        product_id: ProductId,
        warehouse_id: WarehouseId,
        lead: u32,
        config: &StockConfig,
    ) -> StockLow {
        StockLow {
            product_id,
            warehouse_id,
            available: self.available,
            units_sold: self.units_sold,
            velocity_days: config.velocity_days,
            restock_lead_days: lead,
        }
    }
}

/// The product's level on `day`, over its sales in the window; `None` before its stock is
/// known.
fn level(watched: &Watched, day: IstDate, config: &StockConfig) -> Option<Level> {
    let on_hand = watched.on_hand?;
    let sold: u64 = watched
        .sold
        .range(first_day(day, config)..=day)
        .map(|(_, units)| units)
        .sum();
    Some(Level {
        available: on_hand - watched.reserved,
        units_sold: i64::try_from(sold).unwrap_or(i64::MAX),
    })
}

/// The first day of the velocity window that ends on `day`.
fn first_day(day: IstDate, config: &StockConfig) -> IstDate {
    day.plus_days(1 - i32::try_from(config.velocity_days.max(1)).unwrap_or(i32::MAX))
}

/// A stable id for a product's `crossing`-th alert, raised at `at` (UTC ms): a UUIDv7, as every
/// event id must be (consumers dead-letter any other version), with the alert's time as its
/// timestamp and FNV-1a over product and crossing as its other bits, so it is the same on every
/// replay and every instance.
fn alert_id(product: &str, crossing: u32, at: i64) -> uuid::Uuid {
    let fnv = |offset: u64| {
        product
            .bytes()
            .chain([0])
            .chain(crossing.to_le_bytes())
            .fold(offset, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            })
    };
    let mut bits = [0u8; 10];
    bits[..8].copy_from_slice(&fnv(0xcbf2_9ce4_8422_2325).to_le_bytes());
    bits[8..].copy_from_slice(&fnv(0x6c62_272e_07bb_0142).to_le_bytes()[..2]);
    uuid::Builder::from_unix_timestamp_millis(u64::try_from(at).unwrap_or(0), &bits).into_uuid()
}

#[cfg(test)]
mod tests {
    use model::calendar::Weekday;
    use model::payload::ReleaseReason;
    use model::payload::{StockAdjusted, StockReleased, StockReserved, WarehouseUpserted};
    use model::{OrderId, Pincode, ProductId, WarehouseId};

    use super::*;

    const DAY: i64 = 86_400_000;
    /// 2026-11-02 12:30 IST.
    const T0: i64 = 1_793_602_800_000;

    fn envelope(at: i64, merchant: &str, event: Event) -> Envelope {
        Envelope::new(uuid::Uuid::now_v7(), at, MerchantId::new(merchant), event)
    }

    fn warehouse(lead: u32) -> Event {
        Event::WarehouseUpserted(WarehouseUpserted {
            warehouse_id: WarehouseId::new("w-1"),
            pincode: Pincode::from_number(110_001).unwrap_or_else(|| unreachable!()),
            cutoff_minute: 14 * 60,
            handling_days: 1,
            working_days: Weekday::MON_TO_SAT.to_vec(),
            holidays: vec![],
            radius_km: None,
            restock_lead_days: lead,
        })
    }

    fn adjusted(product: &str, delta: i64, on_hand: i64, reason: &str) -> Event {
        Event::StockAdjusted(StockAdjusted {
            product_id: ProductId::new(product),
            warehouse_id: WarehouseId::new("w-1"),
            delta,
            on_hand,
            reason: reason.to_owned(),
        })
    }

    fn reserved(product: &str, order: &str, quantity: u32) -> Event {
        Event::StockReserved(StockReserved {
            product_id: ProductId::new(product),
            warehouse_id: WarehouseId::new("w-1"),
            order_id: OrderId::new(order),
            quantity,
            expires_at: 0,
        })
    }

    /// `days` days of `per_day` units of `product` sold a day (reserved, then paid), from
    /// `on_hand`, starting at `start`; the events and the stock left.
    fn selling(
        product: &str,
        start: i64,
        days: i64,
        per_day: u32,
        on_hand: i64,
    ) -> (Vec<Event>, Vec<i64>, i64) {
        let (mut events, mut times, mut on_hand) = (Vec::new(), Vec::new(), on_hand);
        for day in 0..days {
            let order = format!("o-{product}-{start}-{day}");
            on_hand -= i64::from(per_day);
            events.push(reserved(product, &order, per_day));
            events.push(adjusted(
                product,
                -i64::from(per_day),
                on_hand,
                &format!("{SOLD_REASON}{order}"),
            ));
            times.extend([start + day * DAY, start + day * DAY + 60_000]);
        }
        (events, times, on_hand)
    }

    /// The scenario: lead time 5 days; 100 units; 10 sold a day for 10 days (the cover falls
    /// below 5 days on day 6 and stays there); a restock of 200; 6 more days, 30 a day.
    fn scenario() -> Vec<Envelope> {
        let mut out = vec![
            envelope(T0 - DAY, "m-1", warehouse(5)),
            envelope(T0 - DAY, "m-1", adjusted("p-1", 100, 100, "receipt")),
        ];
        let (events, times, left) = selling("p-1", T0, 10, 10, 100);
        out.extend(
            events
                .into_iter()
                .zip(times)
                .map(|(e, t)| envelope(t, "m-1", e)),
        );
        out.push(envelope(
            T0 + 10 * DAY,
            "m-1",
            adjusted("p-1", 200, left + 200, "receipt"),
        ));
        let (events, times, _) = selling("p-1", T0 + 11 * DAY, 6, 30, left + 200);
        out.extend(
            events
                .into_iter()
                .zip(times)
                .map(|(e, t)| envelope(t, "m-1", e)),
        );
        out
    }

    fn fold(envelopes: &[Envelope], config: &StockConfig) -> StockWatch {
        let mut watch = StockWatch::default();
        for envelope in envelopes {
            watch.apply(envelope, config);
        }
        watch
    }

    #[test]
    fn an_alert_is_raised_once_per_crossing_and_again_after_a_restock() {
        let config = StockConfig::default();
        let watch = fold(&scenario(), &config);
        let alerts = watch.alerts_of("m-1");
        assert_eq!(alerts.len(), 2, "{alerts:#?}");
        let (second, first) = (&alerts[0], &alerts[1]);
        // Day 5: 40 left after the sale, 60 sold in the window of 7 days: 4.67 days of cover.
        assert_eq!(first.at, T0 + 5 * DAY + 60_000);
        assert_eq!(first.low.available, 40);
        assert_eq!((first.low.units_sold, first.low.velocity_days), (60, 7));
        assert!((first.low.daily_velocity() - 60.0 / 7.0).abs() < 1e-9);
        assert!((first.low.days_of_cover().unwrap_or_default() - 40.0 / (60.0 / 7.0)).abs() < 1e-9);
        assert_eq!(first.low.restock_lead_days, 5);
        assert!(
            second.at > T0 + 11 * DAY,
            "the second comes after the restock"
        );
        assert_ne!(first.alert_id, second.alert_id);
        assert_eq!(watch.unpublished().len(), 2);
        assert!(watch.alerts_of("m-2").is_empty(), "another shop sees none");
    }

    #[test]
    fn a_replay_from_a_checkpoint_raises_the_same_alerts_with_the_same_ids() {
        let config = StockConfig::default();
        let envelopes = scenario();
        let straight = fold(&envelopes, &config);
        for cut in [5, 14, 23, 30] {
            let mut resumed: StockWatch = serde_json::from_str(
                &serde_json::to_string(&fold(&envelopes[..cut], &config)).unwrap_or_default(),
            )
            .unwrap_or_default();
            for envelope in &envelopes[cut..] {
                resumed.apply(envelope, &config);
            }
            assert_eq!(resumed, straight, "resumed after {cut} events");
        }
    }

    #[test]
    fn published_alerts_are_forgotten_in_order_and_stay_listed() {
        let config = StockConfig::default();
        let mut watch = fold(&scenario(), &config);
        let first = watch.unpublished()[0].alert_id;
        watch.published(1);
        assert_eq!(watch.unpublished().len(), 1);
        assert_ne!(watch.unpublished()[0].alert_id, first);
        assert_eq!(watch.alerts_of("m-1").len(), 2);
    }

    #[test]
    fn nothing_is_judged_before_the_stock_on_hand_is_known() {
        let config = StockConfig::default();
        let mut watch = StockWatch::default();
        let (events, times, _) = selling("p-2", T0, 10, 10, 0);
        for (event, at) in events.into_iter().zip(times) {
            // Only the sales' own adjustments say what is on hand: from the first one, 0 left
            // minus what is reserved is judged, so take the reservations alone.
            if matches!(event, Event::StockReserved(_)) {
                watch.apply(&envelope(at, "m-1", event), &config);
            }
        }
        assert!(watch.alerts_of("m-1").is_empty());
        assert!(watch.running_low("m-1", T0, &config).is_empty());
    }

    #[test]
    fn a_release_gives_reserved_units_back() {
        let config = StockConfig::default();
        let mut watch = fold(&scenario()[..8], &config);
        let before = watch.products["p-1"].reserved;
        watch.apply(&envelope(T0, "m-1", reserved("p-1", "o-x", 7)), &config);
        watch.apply(
            &envelope(
                T0,
                "m-1",
                Event::StockReleased(StockReleased {
                    product_id: ProductId::new("p-1"),
                    warehouse_id: WarehouseId::new("w-1"),
                    order_id: OrderId::new("o-x"),
                    quantity: 7,
                    reason: ReleaseReason::Expired,
                }),
            ),
            &config,
        );
        assert_eq!(watch.products["p-1"].reserved, before);
    }

    #[test]
    fn products_past_the_bound_are_counted_not_watched() {
        let config = StockConfig {
            max_products: 2,
            ..StockConfig::default()
        };
        let mut watch = StockWatch::default();
        for product in ["p-1", "p-2", "p-3", "p-3"] {
            watch.apply(
                &envelope(T0, "m-1", adjusted(product, 5, 5, "receipt")),
                &config,
            );
        }
        assert_eq!(watch.watched(), 2);
        assert_eq!(watch.unwatched, 2);
    }

    #[test]
    fn an_alert_is_an_event_every_consumer_can_read() {
        let alert = Alert {
            alert_id: alert_id("p-1", 0, T0),
            merchant_id: "m-1".to_owned(),
            at: T0,
            low: StockLow {
                product_id: ProductId::new("p-1"),
                warehouse_id: WarehouseId::new("w-1"),
                available: 1,
                units_sold: 7,
                velocity_days: 7,
                restock_lead_days: 7,
            },
        };
        let decoded = model::codec::decode(&model::codec::encode(&alert.envelope()))
            .expect("the strict decoder every consumer uses reads it");
        assert_eq!(decoded.event_id, alert.alert_id);
        assert_eq!(
            alert_id("p-1", 0, T0),
            alert.alert_id,
            "the same on a replay"
        );
        assert_ne!(alert_id("p-1", 1, T0), alert.alert_id);
        assert_ne!(alert_id("p-2", 0, T0), alert.alert_id);
    }
}
