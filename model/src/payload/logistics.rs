//! Payloads of the logistics reference data: warehouses, couriers, courier coverage and
//! holidays. Each is the current state of its key on the compacted `logistics` topic, so any
//! stage started at any time rebuilds the whole network from it.

use serde::{Deserialize, Serialize};

use crate::calendar::{IstDate, Weekday};
use crate::{CourierId, Pincode, WarehouseId};

/// A warehouse (or a hyperlocal store) of the envelope's merchant was registered or changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseUpserted {
    pub warehouse_id: WarehouseId,
    pub pincode: Pincode,
    /// Orders placed before this minute of the day (IST, 0-1439) start handling that day if it
    /// is a working day; later ones on the next working day.
    pub cutoff_minute: u32,
    /// Working days from the start of handling to handing the parcel to the courier.
    pub handling_days: u32,
    /// Days of the week the warehouse dispatches.
    pub working_days: Vec<Weekday>,
    /// Dates it does not dispatch, besides national and state holidays.
    pub holidays: Vec<IstDate>,
    /// A hyperlocal store delivers with its own riders, the same day, only within this many
    /// kilometres; `None` ships through couriers anywhere they cover.
    pub radius_km: Option<f64>,
    /// Working days a restock takes to arrive: stock that would run out sooner needs an alert.
    pub restock_lead_days: u32,
}

/// How fast a courier moves parcels between the same two places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CourierSpeed {
    Express,
    Standard,
    Economy,
}

/// A courier was registered or changed (admin only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourierUpserted {
    pub courier_id: CourierId,
    pub name: String,
    pub speed: CourierSpeed,
    /// Days of the week the courier picks up and delivers.
    pub working_days: Vec<Weekday>,
}

/// What a courier offers at one pincode, in the shape couriers publish their lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverageEntry {
    pub pincode: Pincode,
    pub prepaid: bool,
    pub cash_on_delivery: bool,
    pub pickup: bool,
    /// Out of delivery area: delivered, but slower and at a surcharge.
    pub out_of_delivery_area: bool,
}

/// The pincodes one courier covers within one sorting district (the first three digits of
/// the pincode): the unit a coverage import replaces. A district has at most a few hundred
/// pincodes, so one event stays far below the message size limit, and the compaction key
/// (`courier/district`) lets a new list replace the old one district by district.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CoverageWire", into = "CoverageWire")]
pub struct CoverageUpserted {
    courier_id: CourierId,
    district: u32,
    pincodes: Vec<CoverageEntry>,
    key: String,
}

/// Most pincodes one sorting district can hold (100-999 within it).
pub const COVERAGE_ENTRIES: usize = 1_000;

impl CoverageUpserted {
    /// The coverage of `courier_id` in the sorting district `district` (100-999); every
    /// entry's pincode must start with it and appear once. An empty list withdraws the courier
    /// from the district.
    pub fn new(
        courier_id: CourierId,
        district: u32,
        pincodes: Vec<CoverageEntry>,
    ) -> Result<Self, String> {
        if !(100..=999).contains(&district) {
            return Err(format!("district {district} is not three digits 100-999"));
        }
        if pincodes.len() > COVERAGE_ENTRIES {
            return Err(format!(
                "{} pincodes in one district; at most {COVERAGE_ENTRIES}",
                pincodes.len()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for entry in &pincodes {
            if entry.pincode.number() / 1000 != district {
                return Err(format!(
                    "pincode {} is not in district {district}",
                    entry.pincode
                ));
            }
            if !seen.insert(entry.pincode) {
                return Err(format!("pincode {} appears twice", entry.pincode));
            }
        }
        let key = format!("{courier_id}/{district}");
        Ok(Self {
            courier_id,
            district,
            pincodes,
            key,
        })
    }

    pub fn courier_id(&self) -> &CourierId {
        &self.courier_id
    }

    pub fn district(&self) -> u32 {
        self.district
    }

    pub fn pincodes(&self) -> &[CoverageEntry] {
        &self.pincodes
    }

    /// The compaction key, `courier/district`.
    pub fn key(&self) -> &String {
        &self.key
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CoverageWire {
    courier_id: CourierId,
    district: u32,
    pincodes: Vec<CoverageEntry>,
}

impl TryFrom<CoverageWire> for CoverageUpserted {
    type Error = String;

    fn try_from(wire: CoverageWire) -> Result<Self, String> {
        Self::new(wire.courier_id, wire.district, wire.pincodes)
    }
}

impl From<CoverageUpserted> for CoverageWire {
    fn from(coverage: CoverageUpserted) -> Self {
        Self {
            courier_id: coverage.courier_id,
            district: coverage.district,
            pincodes: coverage.pincodes,
        }
    }
}

/// The holidays of a region: `IN` for the whole country, or a state as the pincode directory
/// names it (`Karnataka`). Warehouses do not dispatch and couriers do not deliver on them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolidaysSet {
    pub region: String,
    pub dates: Vec<IstDate>,
}

/// The region of the national holidays.
pub const NATIONAL: &str = "IN";
