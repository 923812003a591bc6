//! The delivery network a generator run plays in, as reference events: national holidays,
//! couriers with their speed classes and coverage lists, and each merchant's warehouses (a
//! hyperlocal merchant's store with its radius). Published before the catalog, so a stage that
//! reads the topics from the start knows the network before the first order.

use std::collections::BTreeMap;

use model::calendar::Weekday;
use model::geo::Place;
use model::payload::{
    CourierUpserted, CoverageEntry, CoverageUpserted, HolidaysSet, NATIONAL, WarehouseUpserted,
};
use model::{Event, Pincode};

use crate::delivery::{self, courier_speed};
use crate::world::World;

/// Couriers skip a sorting district when `(district * 7 + courier * 13) % 10 == 0`: about one
/// in ten, a different tenth for each courier, so some lanes have fewer options than others.
pub fn covers(courier: usize, district: u32) -> bool {
    !(district as usize * 7 + courier * 13).is_multiple_of(10)
}

/// Whether the generator treats `place` as out of a courier's delivery area (remote states
/// and islands): still delivered, flagged so in the coverage list.
fn out_of_delivery_area(place: &Place) -> bool {
    matches!(
        place.state.as_str(),
        "Andaman And Nicobar Islands"
            | "Lakshadweep"
            | "Arunachal Pradesh"
            | "Mizoram"
            | "Nagaland"
            | "Manipur"
            | "Ladakh"
    )
}

/// Every reference event of `world`, with the merchant (index) each belongs to: merchant 0
/// stands in for the platform on holidays and couriers.
pub(crate) fn reference_events(world: &World, places: &[Place]) -> Vec<(usize, Event)> {
    let mut events = vec![(
        0,
        Event::HolidaysSet(HolidaysSet {
            region: NATIONAL.to_owned(),
            dates: delivery::national_holidays(),
        }),
    )];
    let mut by_district: BTreeMap<u32, Vec<&Place>> = BTreeMap::new();
    for place in places.iter().filter(|place| place.delivery) {
        by_district
            .entry(place.pincode.number() / 1000)
            .or_default()
            .push(place);
    }
    for (index, courier) in world.couriers.iter().enumerate() {
        events.push((
            0,
            Event::CourierUpserted(CourierUpserted {
                courier_id: courier.clone(),
                name: format!("Courier {}", index + 1),
                speed: courier_speed(index),
                working_days: Weekday::MON_TO_SAT.to_vec(),
            }),
        ));
        for (&district, district_places) in &by_district {
            if !covers(index, district) {
                continue;
            }
            let mut seen = std::collections::BTreeSet::<Pincode>::new();
            let entries: Vec<CoverageEntry> = district_places
                .iter()
                .filter(|place| seen.insert(place.pincode))
                .map(|place| CoverageEntry {
                    pincode: place.pincode,
                    prepaid: true,
                    cash_on_delivery: !out_of_delivery_area(place),
                    pickup: true,
                    out_of_delivery_area: out_of_delivery_area(place),
                })
                .collect();
            if let Ok(coverage) = CoverageUpserted::new(courier.clone(), district, entries) {
                events.push((0, Event::CoverageUpserted(coverage)));
            }
        }
    }
    for warehouse in &world.warehouses {
        events.push((
            warehouse.merchant,
            Event::WarehouseUpserted(WarehouseUpserted {
                warehouse_id: warehouse.id.clone(),
                pincode: warehouse.pincode,
                cutoff_minute: warehouse.cutoff_minute,
                handling_days: warehouse.handling_days,
                working_days: if warehouse.radius_km.is_some() {
                    Weekday::ALL.to_vec()
                } else {
                    Weekday::MON_TO_SAT.to_vec()
                },
                holidays: Vec::new(),
                radius_km: warehouse.radius_km,
                restock_lead_days: warehouse.restock_lead_days,
            }),
        ));
    }
    events
}
