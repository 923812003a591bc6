//! Promise arithmetic: from an order time to a delivery date, in IST.
//!
//! Handling starts on the order's day if the warehouse works that day and the order came
//! before its cut-off, else on the next working day; the parcel leaves after the handling
//! days (learnt per warehouse, or as declared until enough orders have shipped), counted in
//! the warehouse's working days; it arrives after the transit days (learnt per lane at the
//! configured quantile), counted in the courier's working days at the destination. Sundays,
//! the warehouse's own holidays and national and state holidays are skipped on each side.
//! Hyperlocal stores deliver with their own riders on the day handling starts, within their
//! radius only.

use model::calendar::IstDate;
use model::deliver::Undeliverable;
use model::geo::distance_km;
use model::{CourierId, Pincode, ProductId, WarehouseId};
use serde::{Deserialize, Serialize};

use super::histogram::{DayHistogram, sum_at_most};
use super::learn::{Estimate, LearnConfig, Learnt, Level, Regions, handling_starts};
use super::network::{Network, Warehouse};

/// How promises are made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromiseConfig {
    /// The quantile of handling and of transit a promise is made at (see BENCHMARKS.md for
    /// the on-time rate and slack of each choice on generated deliveries).
    pub quantile: f64,
    /// Alternatives returned beside the chosen option, per item.
    pub alternatives: usize,
}

impl Default for PromiseConfig {
    fn default() -> Self {
        Self {
            // The smallest quantile whose promises kept 95 % on time in the backtest
            // (`shopstream-bench promise`, BENCHMARKS.md): 0.9 kept 94.5 %.
            quantile: 0.92,
            alternatives: 3,
        }
    }
}

/// A promise on one lane: warehouse, courier, destination.
#[derive(Debug, Clone, PartialEq)]
pub struct LanePromise {
    pub handling_starts: IstDate,
    pub ships_on: IstDate,
    pub deliver_by: IstDate,
    /// The chance, under what was learnt, that handling plus transit fit in the promise.
    pub probability: f64,
    /// Working days of handling plus transit at the median and at the 90th percentile.
    pub p50_days: u32,
    pub p90_days: u32,
    pub transit_level: Level,
    pub transit_deliveries: u32,
    /// Whether handling came from shipped orders (else the warehouse's declared days).
    pub handling_learnt: bool,
}

/// What one answer needs to read.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub network: &'a Network,
    pub learnt: &'a Learnt,
    pub regions: &'a Regions,
    pub learn: &'a LearnConfig,
    pub promise: &'a PromiseConfig,
}

impl Inputs<'_> {
    /// The promise for an order at `order_time` shipped from `warehouse` by `courier` to
    /// `destination`; `None` when a pincode is unknown to the directory.
    pub fn lane(
        &self,
        order_time: i64,
        warehouse: &Warehouse,
        courier: &CourierId,
        destination: Pincode,
    ) -> Option<LanePromise> {
        let directory = self.regions.directory();
        let transit: Estimate = self.learnt.transit(
            warehouse.pincode,
            destination,
            courier,
            self.regions,
            self.learn,
        )?;
        let learnt_handling = self.learnt.handling(&warehouse.id, self.learn);
        let handling = learnt_handling.cloned().unwrap_or_else(|| {
            let mut declared = DayHistogram::default();
            declared.add(warehouse.handling_days, 0, 1);
            declared
        });
        let warehouse_days = self.network.warehouse_calendar(warehouse, directory);
        let courier_days = self
            .network
            .courier_calendar(courier, destination, directory);
        let q = self.promise.quantile;
        let start = handling_starts(order_time, warehouse, &warehouse_days);
        let (handling_q, transit_q) = (handling.quantile(q), transit.days.quantile(q));
        let ships_on = warehouse_days.after_working_days(start, handling_q);
        let deliver_by = courier_days.after_working_days(ships_on, transit_q);
        let (handling_shares, transit_shares) = (handling.shares(), transit.days.shares());
        Some(LanePromise {
            handling_starts: start,
            ships_on,
            deliver_by,
            probability: sum_at_most(&handling_shares, &transit_shares, handling_q + transit_q),
            p50_days: handling.quantile(0.5) + transit.days.quantile(0.5),
            p90_days: handling.quantile(0.9) + transit.days.quantile(0.9),
            transit_level: transit.level,
            transit_deliveries: transit.deliveries,
            handling_learnt: learnt_handling.is_some(),
        })
    }

    /// Every way to get `quantity` of `product` to `destination` for an order at
    /// `order_time`, best first, or why there is none.
    pub fn options(
        &self,
        product: &ProductId,
        quantity: u32,
        destination: Pincode,
        order_time: i64,
    ) -> Result<Vec<DeliveryOption>, Undeliverable> {
        let directory = self.regions.directory();
        let Some(place) = directory.get(destination) else {
            return Err(Undeliverable::UnknownPincode);
        };
        let stocked: Vec<_> = self
            .network
            .stock_of(product)
            .into_iter()
            .filter(|stock| stock.available >= i64::from(quantity))
            .collect();
        if stocked.is_empty() {
            return Err(Undeliverable::NoStock);
        }
        let mut options = Vec::new();
        let mut outside_radius = false;
        for stock in stocked {
            let warehouse = stock.warehouse;
            if let Some(radius) = warehouse.radius_km {
                let Some(store) = directory.get(warehouse.pincode) else {
                    continue;
                };
                if distance_km(store.coordinates(), place.coordinates()) > radius {
                    outside_radius = true;
                    continue;
                }
                let calendar = self.network.warehouse_calendar(warehouse, directory);
                let day = handling_starts(order_time, warehouse, &calendar);
                options.push(DeliveryOption {
                    warehouse_id: warehouse.id.clone(),
                    courier_id: None,
                    deliver_by: day,
                    probability: 1.0,
                });
                continue;
            }
            for courier in self.network.couriers() {
                let picks_up = self
                    .network
                    .coverage(&courier.id, warehouse.pincode)
                    .is_some_and(|entry| entry.pickup);
                let delivers = self
                    .network
                    .coverage(&courier.id, destination)
                    .is_some_and(|entry| entry.prepaid || entry.cash_on_delivery);
                if !(picks_up && delivers) {
                    continue;
                }
                if let Some(lane) = self.lane(order_time, warehouse, &courier.id, destination) {
                    options.push(DeliveryOption {
                        warehouse_id: warehouse.id.clone(),
                        courier_id: Some(courier.id.clone()),
                        deliver_by: lane.deliver_by,
                        probability: lane.probability,
                    });
                }
            }
        }
        if options.is_empty() {
            return Err(if outside_radius {
                Undeliverable::OutsideRadius
            } else {
                Undeliverable::NotServiceable
            });
        }
        options.sort_by(|a, b| {
            a.deliver_by
                .cmp(&b.deliver_by)
                .then(b.probability.total_cmp(&a.probability))
                .then_with(|| a.warehouse_id.cmp(&b.warehouse_id))
                .then_with(|| a.courier_id.cmp(&b.courier_id))
        });
        options.truncate(1 + self.promise.alternatives);
        Ok(options)
    }
}

/// One way to deliver: from a warehouse, by a courier (none for a store's own riders), by a day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryOption {
    pub warehouse_id: WarehouseId,
    pub courier_id: Option<CourierId>,
    pub deliver_by: IstDate,
    pub probability: f64,
}
