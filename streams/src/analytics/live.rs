//! The live side of merchant analytics, as a pure fold over envelopes: per merchant, one
//! bucket of counters per minute of event time (orders, units, GMV, refunds, cancellations,
//! views, cart adds, searches and their clicks), and per IST day the products sold and the
//! queries searched, over a window of `window_hours` behind the latest event.
//!
//! Memory is bounded by the window: buckets, days and remembered orders older than it are
//! dropped as event time moves on, and an event older than the window is counted, not kept
//! (its day is history, which the lakehouse rollups answer). Queries per day are capped, the
//! rest summed as "other". Shipments wait for their delivery up to `shipment_days` (a parcel
//! takes longer than the window), at most `max_shipments` of them; a delivery counts on its
//! own day, by courier and state. The late deliveries listed per day are the first 100 to
//! arrive, so past 100 in a day which ones are listed depends on arrival order (the counts do
//! not). Every sum is order-independent, so a replay in another order (a
//! restart, another partition interleaving) ends in the same state.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use model::calendar::IstDate;
use model::{Envelope, Event, MARKETPLACE, Money};
use serde::{Deserialize, Serialize};

use super::delivery::{DeliveryStats, LATE_LISTED_PER_DAY, Late, ShipmentSeen, state_of};
use super::stock::StockWatch;

pub const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Bounds of the live state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveConfig {
    /// How far behind the latest event the live buckets reach.
    pub window_hours: u32,
    /// Distinct search queries kept per merchant and day; further ones are summed as other.
    pub queries_per_day: usize,
    /// Products the catalog has not named yet whose touches are held for their shop.
    pub pending_products: usize,
    /// How long a shipment is remembered waiting for its delivery, in days.
    pub shipment_days: u32,
    /// Shipments remembered at once over every shop; past it new ones are counted, not
    /// watched (their deliveries are then not counted either).
    pub max_shipments: usize,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            window_hours: 48,
            queries_per_day: 2_000,
            pending_products: 100_000,
            shipment_days: 30,
            max_shipments: 1_000_000,
        }
    }
}

/// Sums of money by currency code, in minor units.
pub type Amounts = BTreeMap<String, i64>;

fn add(amounts: &mut Amounts, money: Money) {
    *amounts
        .entry(money.currency.as_str().to_owned())
        .or_default() += money.amount_minor;
}

/// One merchant's activity in one minute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Minute {
    pub orders: u64,
    pub units: u64,
    pub gmv: Amounts,
    pub refunds: u64,
    pub refunded: Amounts,
    pub cancellations: u64,
    pub views: u64,
    pub cart_adds: u64,
    pub searches: u64,
    pub zero_result_searches: u64,
    pub search_clicks: u64,
}

impl Minute {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Minute) {
        self.orders += other.orders;
        self.units += other.units;
        self.refunds += other.refunds;
        self.cancellations += other.cancellations;
        self.views += other.views;
        self.cart_adds += other.cart_adds;
        self.searches += other.searches;
        self.zero_result_searches += other.zero_result_searches;
        self.search_clicks += other.search_clicks;
        for (currency, minor) in &other.gmv {
            *self.gmv.entry(currency.clone()).or_default() += minor;
        }
        for (currency, minor) in &other.refunded {
            *self.refunded.entry(currency.clone()).or_default() += minor;
        }
    }
}

/// One product of a merchant on one day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProductDay {
    pub units: u64,
    pub revenue: Amounts,
    pub orders: u64,
    pub views: u64,
    pub cart_adds: u64,
}

/// One search query in a merchant's shop on one day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryDay {
    pub searches: u64,
    pub zero_results: u64,
    pub clicks: u64,
}

impl QueryDay {
    pub fn merge(&mut self, other: &QueryDay) {
        self.searches += other.searches;
        self.zero_results += other.zero_results;
        self.clicks += other.clicks;
    }
}

/// What a merchant's shop did on one IST day, beyond the minute counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Day {
    pub products: HashMap<String, ProductDay>,
    pub queries: HashMap<String, QueryDay>,
    /// Queries past `queries_per_day`, summed.
    pub other_queries: QueryDay,
    pub cancellations_by_reason: BTreeMap<String, u64>,
    /// Cancellations by the share of the order's total refunded (percent, rounded).
    pub refund_tiers: BTreeMap<u32, u64>,
    /// Deliveries that day, by courier and by destination state.
    #[serde(default)]
    pub deliveries_by_courier: BTreeMap<String, DeliveryStats>,
    #[serde(default)]
    pub deliveries_by_state: BTreeMap<String, DeliveryStats>,
    /// That day's late deliveries, the first [`LATE_LISTED_PER_DAY`].
    #[serde(default)]
    pub late: Vec<Late>,
}

impl Day {
    fn merge(&mut self, other: Day, config: &LiveConfig) {
        for (product, counts) in other.products {
            let into = self.products.entry(product).or_default();
            into.units += counts.units;
            into.orders += counts.orders;
            into.views += counts.views;
            into.cart_adds += counts.cart_adds;
            for (currency, minor) in counts.revenue {
                *into.revenue.entry(currency).or_default() += minor;
            }
        }
        for (query, counts) in other.queries {
            query_day(self, &query, config).merge(&counts);
        }
        self.other_queries.merge(&other.other_queries);
        for (reason, count) in other.cancellations_by_reason {
            *self.cancellations_by_reason.entry(reason).or_default() += count;
        }
        for (tier, count) in other.refund_tiers {
            *self.refund_tiers.entry(tier).or_default() += count;
        }
        for (courier, stats) in &other.deliveries_by_courier {
            self.deliveries_by_courier
                .entry(courier.clone())
                .or_default()
                .merge(stats);
        }
        for (state, stats) in &other.deliveries_by_state {
            self.deliveries_by_state
                .entry(state.clone())
                .or_default()
                .merge(stats);
        }
        let room = LATE_LISTED_PER_DAY.saturating_sub(self.late.len());
        self.late.extend(other.late.into_iter().take(room));
    }
}

/// One merchant's live activity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Shop {
    /// By the minute's start (UTC ms).
    pub minutes: BTreeMap<i64, Minute>,
    pub days: BTreeMap<IstDate, Day>,
}

impl Shop {
    fn merge(&mut self, other: Shop, config: &LiveConfig) {
        for (minute, counts) in other.minutes {
            self.minutes.entry(minute).or_default().merge(&counts);
        }
        for (day, counts) in other.days {
            self.days.entry(day).or_default().merge(counts, config);
        }
    }
}

/// What the live fold remembers of an order to attribute what happens to it later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderSeen {
    placed_at: i64,
    /// The order's total, minor units: what a refund tier is a share of. (Not the captured
    /// amount: payments travel on another topic, so a capture may arrive after the order's
    /// cancellation, while the order's own events share its partition and keep their order.)
    total: i64,
}

/// Everything the live side holds, with the positions it covers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Live {
    pub shops: HashMap<String, Shop>,
    /// Product id -> (merchant, title), from the catalog: clicks on a marketplace storefront
    /// name the product, not its shop.
    pub products: HashMap<String, (String, String)>,
    orders: HashMap<String, OrderSeen>,
    /// Shipments on their way, by merchant and order id (one shipment per order).
    #[serde(default)]
    pub shipments: HashMap<String, HashMap<String, ShipmentSeen>>,
    /// Shipments held, over every shop (`max_shipments` bounds it).
    #[serde(default)]
    shipments_held: usize,
    /// Shipments not watched because `max_shipments` were held.
    #[serde(default)]
    pub shipments_unwatched: u64,
    /// Every merchant an event has named.
    merchants: BTreeSet<String>,
    /// Touches of products the catalog has not named yet, by product: a consumer with a
    /// backlog may read a click before its product's upsert on another topic. Handed to the
    /// product's shop when the upsert arrives.
    pending: HashMap<String, Shop>,
    /// The latest event time seen: the window ends here.
    pub now: i64,
    /// Events older than the window when they arrived: history, not live.
    pub too_old: u64,
    /// Touches of unknown products past `pending_products`, on a marketplace storefront.
    pub unattributed: u64,
    pub positions: BTreeMap<String, i64>,
    /// Low-stock alerts: inventory and logistics events go here, not into the buckets.
    #[serde(default)]
    pub stock: StockWatch,
}

impl Live {
    /// Whether `offset` on `position` is new; records it if so, so a redelivery after a
    /// restart is not counted twice.
    pub fn take(&mut self, position: &str, offset: i64) -> bool {
        let next = self.positions.entry(position.to_owned()).or_insert(0);
        if offset < *next {
            return false;
        }
        *next = offset + 1;
        true
    }

    /// The first instant the live buckets cover.
    pub fn window_start(&self, config: &LiveConfig) -> i64 {
        minute_of(self.now - i64::from(config.window_hours) * HOUR_MS)
    }

    /// Whether any event has named `merchant`.
    pub fn knows(&self, merchant: &str) -> bool {
        self.merchants.contains(merchant)
    }

    pub fn apply(&mut self, envelope: &Envelope, config: &LiveConfig) {
        let at = envelope.event_time;
        let merchant = envelope.merchant_id.as_str();
        if merchant != MARKETPLACE && !self.merchants.contains(merchant) {
            self.merchants.insert(merchant.to_owned());
        }
        // The catalog is reference data: any age counts.
        match &envelope.event {
            Event::ProductUpserted(p) => {
                let id = p.product_id.as_str();
                self.products
                    .insert(id.to_owned(), (merchant.to_owned(), p.title.clone()));
                if let Some(pending) = self.pending.remove(id) {
                    self.shops
                        .entry(merchant.to_owned())
                        .or_default()
                        .merge(pending, config);
                }
                return;
            }
            Event::ProductDeactivated(_) => return,
            // A parcel takes days: its shipment is remembered past the live window.
            Event::ShipmentCreated(shipment) => {
                if at < self.now - i64::from(config.shipment_days) * DAY_MS {
                    return;
                }
                if self.shipments_held >= config.max_shipments {
                    self.shipments_unwatched += 1;
                    return;
                }
                let seen = ShipmentSeen {
                    shipment_id: shipment.shipment_id.clone(),
                    courier: shipment.courier_id.as_str().to_owned(),
                    state: state_of(shipment.destination_pincode),
                    shipped_at: at,
                    promised_at: shipment.promised_at,
                };
                let replaced = self
                    .shipments
                    .entry(merchant.to_owned())
                    .or_default()
                    .insert(shipment.order_id.as_str().to_owned(), seen);
                self.shipments_held += usize::from(replaced.is_none());
                return;
            }
            _ => {}
        }
        if at < self.window_start(config) {
            self.too_old += 1;
            return;
        }
        if at > self.now {
            let before = self.window_start(config);
            self.now = at;
            if self.window_start(config) / HOUR_MS != before / HOUR_MS {
                self.prune(config);
            }
        }
        let minute = minute_of(at);
        let day = IstDate::of_instant(at);
        match &envelope.event {
            Event::OrderPlaced(order) => {
                let units: u64 = order.lines.iter().map(|l| u64::from(l.quantity)).sum();
                let shop = self.shops.entry(merchant.to_owned()).or_default();
                let bucket = shop.minutes.entry(minute).or_default();
                bucket.orders += 1;
                bucket.units += units;
                add(&mut bucket.gmv, order.total);
                let today = shop.days.entry(day).or_default();
                for line in &order.lines {
                    let product = today
                        .products
                        .entry(line.product_id.as_str().to_owned())
                        .or_default();
                    product.units += u64::from(line.quantity);
                    product.orders += 1;
                    add(
                        &mut product.revenue,
                        Money::new(
                            line.unit_price.amount_minor * i64::from(line.quantity),
                            line.unit_price.currency,
                        ),
                    );
                }
                self.orders.insert(
                    order.order_id.as_str().to_owned(),
                    OrderSeen {
                        placed_at: at,
                        total: order.total.amount_minor,
                    },
                );
            }
            Event::RefundIssued(refund) => {
                let bucket = self.bucket(merchant, minute);
                bucket.refunds += 1;
                add(&mut bucket.refunded, refund.amount);
            }
            Event::OrderCancelled(cancelled) => {
                let total = self
                    .orders
                    .get(cancelled.order_id.as_str())
                    .map_or(0, |o| o.total);
                let shop = self.shops.entry(merchant.to_owned()).or_default();
                shop.minutes.entry(minute).or_default().cancellations += 1;
                let today = shop.days.entry(day).or_default();
                *today
                    .cancellations_by_reason
                    .entry(cancelled.reason.clone())
                    .or_default() += 1;
                // Unpaid orders cancel with nothing to refund: tier 0.
                let tier = if total > 0 {
                    u32::try_from((cancelled.refund.amount_minor * 100 + total / 2) / total)
                        .unwrap_or(0)
                } else {
                    0
                };
                *today.refund_tiers.entry(tier).or_default() += 1;
            }
            Event::ProductViewed(view) => {
                self.interaction(
                    merchant,
                    view.product_id.as_str(),
                    minute,
                    day,
                    |b, p| {
                        b.views += 1;
                        p.views += 1;
                    },
                    config,
                );
            }
            Event::CartAdded(cart) => {
                self.interaction(
                    merchant,
                    cart.product_id.as_str(),
                    minute,
                    day,
                    |b, p| {
                        b.cart_adds += 1;
                        p.cart_adds += 1;
                    },
                    config,
                );
            }
            Event::ProductClicked(click) => {
                let query = normalise(&click.query);
                let shop = self.interaction(
                    merchant,
                    click.product_id.as_str(),
                    minute,
                    day,
                    // The product page the click opens reports its own view.
                    |b, _| b.search_clicks += 1,
                    config,
                );
                if let Some(shop) = shop
                    && !query.is_empty()
                {
                    let today = shop.days.entry(day).or_default();
                    query_day(today, &query, config).clicks += 1;
                }
            }
            Event::ShipmentDelivered(delivered) => {
                let order_id = delivered.order_id.as_str();
                let Some(shipment) = self
                    .shipments
                    .get_mut(merchant)
                    .and_then(|open| open.remove(order_id))
                else {
                    return;
                };
                self.shipments_held -= 1;
                let today = self
                    .shops
                    .entry(merchant.to_owned())
                    .or_default()
                    .days
                    .entry(day)
                    .or_default();
                for stats in [
                    today
                        .deliveries_by_courier
                        .entry(shipment.courier.clone())
                        .or_default(),
                    today
                        .deliveries_by_state
                        .entry(shipment.state.clone())
                        .or_default(),
                ] {
                    stats.record(shipment.shipped_at, shipment.promised_at, at);
                }
                if at > shipment.promised_at && today.late.len() < LATE_LISTED_PER_DAY {
                    today.late.push(Late {
                        order_id: order_id.to_owned(),
                        courier: shipment.courier,
                        state: shipment.state,
                        promised_at: super::query::label(shipment.promised_at),
                        delivered_at: Some(super::query::label(at)),
                    });
                }
            }
            Event::SearchPerformed(search) if merchant != MARKETPLACE => {
                let zero = search.results.is_empty();
                let shop = self.shops.entry(merchant.to_owned()).or_default();
                let bucket = shop.minutes.entry(minute).or_default();
                bucket.searches += 1;
                bucket.zero_result_searches += u64::from(zero);
                let today = shop.days.entry(day).or_default();
                let query = query_day(today, &normalise(&search.query), config);
                query.searches += 1;
                query.zero_results += u64::from(zero);
            }
            _ => {}
        }
    }

    fn bucket(&mut self, merchant: &str, minute: i64) -> &mut Minute {
        self.shops
            .entry(merchant.to_owned())
            .or_default()
            .minutes
            .entry(minute)
            .or_default()
    }

    /// Counts a shopper's touch of a product for the product's shop (the envelope's, when
    /// a shop's own storefront sent it; held for the product until the catalog names its
    /// shop otherwise). Returns where it was counted.
    fn interaction(
        &mut self,
        merchant: &str,
        product: &str,
        minute: i64,
        day: IstDate,
        count: impl FnOnce(&mut Minute, &mut ProductDay),
        config: &LiveConfig,
    ) -> Option<&mut Shop> {
        let shop = match self.products.get(product) {
            Some((owner, _)) => self.shops.entry(owner.clone()).or_default(),
            None if merchant != MARKETPLACE => self.shops.entry(merchant.to_owned()).or_default(),
            None if self.pending.contains_key(product)
                || self.pending.len() < config.pending_products =>
            {
                self.pending.entry(product.to_owned()).or_default()
            }
            None => {
                self.unattributed += 1;
                return None;
            }
        };
        let bucket = shop.minutes.entry(minute).or_default();
        let today = shop.days.entry(day).or_default();
        count(
            bucket,
            today.products.entry(product.to_owned()).or_default(),
        );
        Some(shop)
    }

    /// Drops what fell out of the window.
    fn prune(&mut self, config: &LiveConfig) {
        let start = self.window_start(config);
        let first_day = IstDate::of_instant(start);
        for shop in self.shops.values_mut() {
            shop.minutes = shop.minutes.split_off(&start);
            shop.days = shop.days.split_off(&first_day);
        }
        for shop in self.pending.values_mut() {
            shop.minutes = shop.minutes.split_off(&start);
            shop.days = shop.days.split_off(&first_day);
        }
        self.shops
            .retain(|_, shop| !shop.minutes.is_empty() || !shop.days.is_empty());
        self.pending.retain(|_, shop| !shop.minutes.is_empty());
        self.orders.retain(|_, order| order.placed_at >= start);
        let oldest_shipment = self.now - i64::from(config.shipment_days) * DAY_MS;
        for open in self.shipments.values_mut() {
            open.retain(|_, shipment| shipment.shipped_at >= oldest_shipment);
        }
        self.shipments.retain(|_, open| !open.is_empty());
        self.shipments_held = self.shipments.values().map(HashMap::len).sum();
    }

    /// Shipments remembered waiting for their delivery.
    pub fn shipments_held(&self) -> usize {
        self.shipments_held
    }

    /// Buckets and days held, for the gauges.
    pub fn sizes(&self) -> (usize, usize) {
        self.shops.values().fold((0, 0), |(m, d), shop| {
            (m + shop.minutes.len(), d + shop.days.len())
        })
    }
}

/// The start of the minute `at` falls in.
pub fn minute_of(at: i64) -> i64 {
    at.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// Queries are counted as shoppers would read them: case and spacing do not matter.
fn normalise(query: &str) -> String {
    query
        .split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

fn query_day<'a>(day: &'a mut Day, query: &str, config: &LiveConfig) -> &'a mut QueryDay {
    if day.queries.contains_key(query) || day.queries.len() < config.queries_per_day {
        day.queries.entry(query.to_owned()).or_default()
    } else {
        &mut day.other_queries
    }
}
