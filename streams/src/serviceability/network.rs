//! The delivery network as the reference topics describe it: warehouses with their calendars,
//! couriers and where they cover, holidays by region, and stock per warehouse from the
//! inventory events. A pure fold over envelopes; the job feeds it, the answers read it.

use std::collections::{BTreeMap, HashMap};

use model::calendar::{IstDate, WorkCalendar};
use model::geo::{Directory, Place};
use model::payload::{CourierSpeed, CoverageEntry, NATIONAL};
use model::{CourierId, Envelope, Event, MerchantId, OrderId, Pincode, ProductId, WarehouseId};
use serde::{Deserialize, Serialize};

/// A warehouse as registered, with its working calendar resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warehouse {
    pub id: WarehouseId,
    pub merchant_id: MerchantId,
    pub pincode: Pincode,
    pub cutoff_minute: u32,
    pub handling_days: u32,
    pub working_days: Vec<model::calendar::Weekday>,
    pub holidays: Vec<IstDate>,
    pub radius_km: Option<f64>,
    pub restock_lead_days: u32,
}

impl Warehouse {
    /// A warehouse as most declare themselves, for lane promises asked without one: Monday
    /// to Saturday, cut-off 14:00 IST, one handling day.
    pub fn generic(pincode: Pincode) -> Self {
        Self {
            id: WarehouseId::new("generic"),
            merchant_id: MerchantId::new("generic"),
            pincode,
            cutoff_minute: 14 * 60,
            handling_days: 1,
            working_days: model::calendar::Weekday::MON_TO_SAT.to_vec(),
            holidays: Vec::new(),
            radius_km: None,
            restock_lead_days: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Courier {
    pub id: CourierId,
    pub name: String,
    pub speed: CourierSpeed,
    pub working_days: Vec<model::calendar::Weekday>,
}

/// Units of one product at one warehouse, and what open orders hold of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Stock {
    on_hand: i64,
    held: BTreeMap<OrderId, i64>,
}

impl Stock {
    fn available(&self) -> i64 {
        (self.on_hand - self.held.values().sum::<i64>()).max(0)
    }
}

/// Everything the network knows; serialisable so the job checkpoints it with its offsets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Network {
    warehouses: BTreeMap<WarehouseId, Warehouse>,
    couriers: BTreeMap<CourierId, Courier>,
    /// Courier coverage by courier, sorting district, then pincode.
    coverage: BTreeMap<CourierId, BTreeMap<u32, Vec<CoverageEntry>>>,
    holidays: BTreeMap<String, Vec<IstDate>>,
    /// Stock by product, then warehouse.
    stock: HashMap<ProductId, BTreeMap<WarehouseId, Stock>>,
    /// Which products an open order holds, so its confirmation or release can find them.
    holds: HashMap<OrderId, Vec<(ProductId, WarehouseId)>>,
    /// Each product's merchant, from the catalog.
    owners: HashMap<ProductId, MerchantId>,
}

/// One place a product can ship from, with how many units are there.
#[derive(Debug, Clone, PartialEq)]
pub struct StockAt<'a> {
    pub warehouse: &'a Warehouse,
    pub available: i64,
}

/// Longest handling a warehouse may declare, in working days.
const MAX_HANDLING_DAYS: u32 = 30;
/// Widest hyperlocal radius: beyond it a store is a warehouse that should use couriers.
const MAX_RADIUS_KM: f64 = 100.0;
/// Most holidays one warehouse or region lists.
const MAX_HOLIDAYS: usize = 400;

fn check(event: &Event) -> Result<(), String> {
    match event {
        Event::WarehouseUpserted(w) => {
            if w.cutoff_minute >= 24 * 60 {
                return Err(format!(
                    "cutoff_minute {} is past midnight; 0-1439 (minutes after 00:00 IST)",
                    w.cutoff_minute
                ));
            }
            if w.working_days.is_empty() {
                return Err("working_days names no day".into());
            }
            if w.handling_days > MAX_HANDLING_DAYS {
                return Err(format!(
                    "handling_days {} is over {MAX_HANDLING_DAYS}",
                    w.handling_days
                ));
            }
            if w.holidays.len() > MAX_HOLIDAYS {
                return Err(format!("over {MAX_HOLIDAYS} holidays"));
            }
            if let Some(radius) = w.radius_km
                && !(radius > 0.0 && radius <= MAX_RADIUS_KM)
            {
                return Err(format!(
                    "radius_km {radius} must be above 0 and at most {MAX_RADIUS_KM}"
                ));
            }
        }
        Event::CourierUpserted(c) => {
            if c.working_days.is_empty() {
                return Err("working_days names no day".into());
            }
            model::limits::check_chars("name", &c.name, model::limits::NAME_CHARS)?;
        }
        Event::HolidaysSet(h) => {
            if h.region.trim().is_empty() {
                return Err("region is empty; IN or a state".into());
            }
            if h.dates.len() > MAX_HOLIDAYS {
                return Err(format!("over {MAX_HOLIDAYS} holidays"));
            }
        }
        _ => {}
    }
    Ok(())
}

impl Network {
    /// Folds one envelope in; events this state does not use are ignored. A reference event
    /// that decodes but cannot be used (a cut-off past midnight, no working day) is refused
    /// with the reason and changes nothing.
    pub fn apply(&mut self, envelope: &Envelope) -> Result<(), String> {
        check(&envelope.event)?;
        let merchant = &envelope.merchant_id;
        match &envelope.event {
            Event::WarehouseUpserted(w) => {
                self.warehouses.insert(
                    w.warehouse_id.clone(),
                    Warehouse {
                        id: w.warehouse_id.clone(),
                        merchant_id: merchant.clone(),
                        pincode: w.pincode,
                        cutoff_minute: w.cutoff_minute,
                        handling_days: w.handling_days,
                        working_days: w.working_days.clone(),
                        holidays: w.holidays.clone(),
                        radius_km: w.radius_km,
                        restock_lead_days: w.restock_lead_days,
                    },
                );
            }
            Event::CourierUpserted(c) => {
                self.couriers.insert(
                    c.courier_id.clone(),
                    Courier {
                        id: c.courier_id.clone(),
                        name: c.name.clone(),
                        speed: c.speed,
                        working_days: c.working_days.clone(),
                    },
                );
            }
            Event::CoverageUpserted(c) => {
                let districts = self.coverage.entry(c.courier_id().clone()).or_default();
                if c.pincodes().is_empty() {
                    districts.remove(&c.district());
                } else {
                    let mut entries = c.pincodes().to_vec();
                    entries.sort_by_key(|entry| entry.pincode);
                    districts.insert(c.district(), entries);
                }
            }
            Event::HolidaysSet(h) => {
                self.holidays.insert(h.region.clone(), h.dates.clone());
            }
            Event::ProductUpserted(p) => {
                self.owners.insert(p.product_id.clone(), merchant.clone());
            }
            Event::StockAdjusted(s) => {
                self.stock_mut(&s.product_id, &s.warehouse_id).on_hand = s.on_hand;
            }
            Event::StockReserved(r) => {
                let quantity = i64::from(r.quantity);
                *self
                    .stock_mut(&r.product_id, &r.warehouse_id)
                    .held
                    .entry(r.order_id.clone())
                    .or_default() += quantity;
                self.holds
                    .entry(r.order_id.clone())
                    .or_default()
                    .push((r.product_id.clone(), r.warehouse_id.clone()));
            }
            Event::StockReleased(r) => {
                self.stock_mut(&r.product_id, &r.warehouse_id)
                    .held
                    .remove(&r.order_id);
            }
            // Paid: the sale takes the units out of on-hand (a stock adjustment on the
            // inventory topic), so the hold is done. Or the order ended without a sale.
            Event::OrderConfirmed(o) => self.forget_holds(&o.order_id),
            Event::OrderCancelled(o) => self.forget_holds(&o.order_id),
            Event::OrderFailed(o) => self.forget_holds(&o.order_id),
            _ => {}
        }
        Ok(())
    }

    fn stock_mut(&mut self, product: &ProductId, warehouse: &WarehouseId) -> &mut Stock {
        self.stock
            .entry(product.clone())
            .or_default()
            .entry(warehouse.clone())
            .or_default()
    }

    /// An order that ended or shipped holds nothing any more (its sale, if any, was already
    /// taken out of on-hand).
    fn forget_holds(&mut self, order: &OrderId) {
        for (product, warehouse) in self.holds.remove(order).unwrap_or_default() {
            if let Some(stock) = self
                .stock
                .get_mut(&product)
                .and_then(|by_warehouse| by_warehouse.get_mut(&warehouse))
            {
                stock.held.remove(order);
            }
        }
    }

    pub fn warehouse(&self, id: &WarehouseId) -> Option<&Warehouse> {
        self.warehouses.get(id)
    }

    pub fn courier(&self, id: &CourierId) -> Option<&Courier> {
        self.couriers.get(id)
    }

    pub fn couriers(&self) -> impl Iterator<Item = &Courier> {
        self.couriers.values()
    }

    pub fn owner(&self, product: &ProductId) -> Option<&MerchantId> {
        self.owners.get(product)
    }

    /// Registered warehouses that hold `product`, with the units free to sell.
    pub fn stock_of(&self, product: &ProductId) -> Vec<StockAt<'_>> {
        let Some(by_warehouse) = self.stock.get(product) else {
            return Vec::new();
        };
        by_warehouse
            .iter()
            .filter_map(|(id, stock)| {
                Some(StockAt {
                    warehouse: self.warehouses.get(id)?,
                    available: stock.available(),
                })
            })
            .collect()
    }

    /// What `courier` offers at `pincode`, if it covers it.
    pub fn coverage(&self, courier: &CourierId, pincode: Pincode) -> Option<&CoverageEntry> {
        let entries = self
            .coverage
            .get(courier)?
            .get(&(pincode.number() / 1000))?;
        entries
            .binary_search_by_key(&pincode, |entry| entry.pincode)
            .ok()
            .map(|i| &entries[i])
    }

    /// Holidays that apply at `place`: the nation's and its state's.
    fn regional_holidays(&self, place: Option<&Place>) -> impl Iterator<Item = IstDate> + '_ {
        let national = self.holidays.get(NATIONAL).into_iter().flatten();
        let state = place
            .and_then(|place| self.holidays.get(&place.state))
            .into_iter()
            .flatten();
        national.chain(state).copied()
    }

    /// The days `warehouse` dispatches: its weekdays, less its own and its region's holidays.
    pub fn warehouse_calendar(&self, warehouse: &Warehouse, places: &Directory) -> WorkCalendar {
        let base = WorkCalendar::new(&warehouse.working_days, warehouse.holidays.iter().copied())
            .unwrap_or_else(WorkCalendar::monday_to_saturday);
        base.with_holidays(self.regional_holidays(places.get(warehouse.pincode)))
    }

    /// The days `courier` delivers at `destination`: its weekdays, less the destination's
    /// holidays. An unregistered courier works Monday to Saturday.
    pub fn courier_calendar(
        &self,
        courier: &CourierId,
        destination: Pincode,
        places: &Directory,
    ) -> WorkCalendar {
        let base = self
            .couriers
            .get(courier)
            .and_then(|c| WorkCalendar::new(&c.working_days, []))
            .unwrap_or_else(WorkCalendar::monday_to_saturday);
        base.with_holidays(self.regional_holidays(places.get(destination)))
    }
}
