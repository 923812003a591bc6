//! Learning how long deliveries take (the serviceability job's pure operator).
//!
//! - Handling per warehouse: from `order.placed` to `shipment.created`, in the warehouse's
//!   working days counted from the day handling could start (the order's day before the
//!   cut-off, else the next working day).
//! - Transit per lane: from `shipment.created` to `shipment.delivered`, in the courier's
//!   working days at the destination, kept at four levels at once (origin and destination
//!   pincode, district, state; distance band), each per courier, so a sparse lane borrows from
//!   the nearest level that has seen enough deliveries.
//!
//! Each delivery counts once: a shipment delivered twice (a replay, a redelivery) is counted
//! as a duplicate, a delivery without its shipment as an orphan; neither is learnt from.
//! Decay runs on event time ([`DayHistogram`]), so a backfill learns what the stream would have.

use std::collections::{BTreeMap, HashMap};

use model::calendar::{IstDate, ist_minute_of_day};
use model::geo::{Directory, distance_km};
use model::{CourierId, Envelope, Event, Pincode, WarehouseId};
use serde::{Deserialize, Serialize};

use super::bounded::{Bounded, Generations};
use super::histogram::DayHistogram;
use super::network::{Network, Warehouse};

/// How the learner weighs and bounds what it keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnConfig {
    /// A delivery this many days older than the lane's newest weighs half as much.
    pub half_life_days: u32,
    /// Deliveries a level needs before it answers; sparser lanes fall back a level.
    pub min_deliveries: u32,
    /// Pincode-to-pincode lanes kept: the most recently fed, between half of this and this
    /// many; a lane not fed while 225,000 others were first fed or fed again is dropped (the
    /// district level still holds what it taught). A lane fed that rarely would take years to
    /// reach `min_deliveries` within the half-life, so it would never answer anyway. The
    /// default fills the two tables that hold them to just under their 2^18 buckets' 7/8
    /// (hashbrown's load limit): a few more would double their memory.
    pub max_pincode_lanes: usize,
    /// Orders awaiting their shipment and shipments awaiting delivery, each.
    pub max_open: usize,
    /// Delivered shipments remembered to refuse a second delivery of the same one: the most
    /// recent, between half of this and this many (the default: two tables of 2^20 buckets).
    pub max_remembered: usize,
    /// Transit days answered when no level has enough deliveries.
    pub default_transit_days: u32,
}

impl Default for LearnConfig {
    fn default() -> Self {
        Self {
            half_life_days: 30,
            min_deliveries: 20,
            max_pincode_lanes: 450_000,
            max_open: 1_000_000,
            max_remembered: 1_800_000,
            default_transit_days: 7,
        }
    }
}

/// Which level of the hierarchy answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Pincode,
    District,
    State,
    DistanceBand,
    Default,
}

/// Distance bands, in kilometres: the lane's last fallback before the default.
const BANDS_KM: [f64; 6] = [50.0, 200.0, 500.0, 1000.0, 2000.0, f64::INFINITY];

fn band_of(km: f64) -> u8 {
    BANDS_KM.iter().position(|&edge| km < edge).unwrap_or(5) as u8
}

/// Districts and states numbered once from the pincode directory, so lane keys are small.
#[derive(Debug)]
pub struct Regions {
    directory: Directory,
    by_pincode: HashMap<u32, (u16, u16)>,
}

impl Regions {
    pub fn new(directory: Directory) -> Self {
        let mut districts = BTreeMap::new();
        let mut states = BTreeMap::new();
        let places: Vec<_> = directory.iter().collect();
        for place in &places {
            districts.insert((place.state.clone(), place.district.clone()), 0u16);
            states.insert(place.state.clone(), 0u16);
        }
        // India has under a thousand districts and 36 states and union territories.
        for (i, id) in districts.values_mut().enumerate() {
            *id = i as u16;
        }
        for (i, id) in states.values_mut().enumerate() {
            *id = i as u16;
        }
        let by_pincode = places
            .iter()
            .map(|place| {
                let district = districts[&(place.state.clone(), place.district.clone())];
                (place.pincode.number(), (district, states[&place.state]))
            })
            .collect();
        Self {
            directory,
            by_pincode,
        }
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    fn of(&self, pincode: Pincode) -> Option<(u16, u16)> {
        self.by_pincode.get(&pincode.number()).copied()
    }

    fn distance_km(&self, a: Pincode, b: Pincode) -> Option<f64> {
        let a = self.directory.get(a)?;
        let b = self.directory.get(b)?;
        Some(distance_km(a.coordinates(), b.coordinates()))
    }
}

/// A shipment on its way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Open {
    courier: u16,
    origin: Pincode,
    destination: Pincode,
    shipped: IstDate,
    /// The day the buyer was promised.
    promised: IstDate,
}

/// How promises fared for one courier, as deliveries arrived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub deliveries: u64,
    /// Delivered on or before the promised day.
    pub on_time: u64,
    /// Sum of promised minus actual day, in calendar days (negative when late).
    pub slack_days: i64,
}

impl Accuracy {
    pub fn on_time_rate(&self) -> Option<f64> {
        (self.deliveries > 0).then(|| self.on_time as f64 / self.deliveries as f64)
    }

    pub fn mean_slack_days(&self) -> Option<f64> {
        (self.deliveries > 0).then(|| self.slack_days as f64 / self.deliveries as f64)
    }
}

/// What the learner counted, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnCounts {
    pub deliveries: u64,
    pub handlings: u64,
    /// A second delivery of a shipment already learnt from.
    pub duplicates: u64,
    /// A delivery of a shipment never seen created (or forgotten past `max_open`).
    pub orphans: u64,
    /// Open orders or shipments dropped to stay within `max_open`.
    pub evicted: u64,
    /// A shipment whose pincodes the directory does not know.
    pub unknown_places: u64,
}

/// Handling samples kept per warehouse that is not registered yet.
const MAX_WAITING_PER_WAREHOUSE: usize = 10_000;

type PincodeLane = (u32, u32, u16);
type DistrictLane = (u16, u16, u16);
type StateLane = (u16, u16, u16);
type BandLane = (u8, u16);

/// Everything learnt; serialisable so the job checkpoints it with its offsets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Learnt {
    couriers: Vec<CourierId>,
    #[serde(with = "pairs")]
    handling: HashMap<WarehouseId, DayHistogram>,
    pincode: Generations<PincodeLane, DayHistogram>,
    #[serde(with = "pairs")]
    district: HashMap<DistrictLane, DayHistogram>,
    #[serde(with = "pairs")]
    state: HashMap<StateLane, DayHistogram>,
    #[serde(with = "pairs")]
    band: HashMap<BandLane, DayHistogram>,
    placed: Bounded<Fingerprint, i64>,
    /// Shipments whose order was not seen placed yet: warehouse and shipping time.
    shipped: Bounded<Fingerprint, (WarehouseId, i64)>,
    /// Handling samples (placed, shipped) of warehouses not registered yet.
    unregistered: BTreeMap<WarehouseId, Vec<(i64, i64)>>,
    open: Bounded<Fingerprint, Open>,
    /// Delivered shipments, to refuse a second delivery of one.
    delivered: Generations<Fingerprint, ()>,
    /// Promise accuracy per courier.
    pub accuracy: BTreeMap<CourierId, Accuracy>,
    pub counts: LearnCounts,
}

/// A transit estimate and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub days: DayHistogram,
    pub level: Level,
    pub deliveries: u32,
}

impl Learnt {
    pub fn apply(
        &mut self,
        envelope: &Envelope,
        network: &Network,
        regions: &Regions,
        config: &LearnConfig,
    ) {
        let half_life = i64::from(config.half_life_days.max(1)) * 86_400_000;
        let at = envelope.event_time;
        match &envelope.event {
            Event::WarehouseUpserted(registered) => {
                for (placed_at, shipped_at) in self
                    .unregistered
                    .remove(&registered.warehouse_id)
                    .unwrap_or_default()
                {
                    self.learn_handling(
                        &registered.warehouse_id,
                        placed_at,
                        shipped_at,
                        network,
                        regions,
                        half_life,
                    );
                }
            }
            // The two ends of a handling time travel on different topics, so either may come
            // first: whichever arrives waits for the other.
            Event::OrderPlaced(order) => match self
                .shipped
                .take(&Fingerprint::of(order.order_id.as_str()))
            {
                Some((warehouse, shipped_at)) => {
                    self.learn_handling(&warehouse, at, shipped_at, network, regions, half_life);
                }
                None => {
                    self.counts.evicted += self.placed.insert(
                        Fingerprint::of(order.order_id.as_str()),
                        at,
                        config.max_open,
                    );
                }
            },
            Event::ShipmentCreated(shipment) => {
                match self
                    .placed
                    .take(&Fingerprint::of(shipment.order_id.as_str()))
                {
                    Some(placed_at) => self.learn_handling(
                        &shipment.warehouse_id,
                        placed_at,
                        at,
                        network,
                        regions,
                        half_life,
                    ),
                    None => {
                        self.counts.evicted += self.shipped.insert(
                            Fingerprint::of(shipment.order_id.as_str()),
                            (shipment.warehouse_id.clone(), at),
                            config.max_open,
                        );
                    }
                }
                let open = Open {
                    courier: self.courier_index(&shipment.courier_id),
                    origin: shipment.origin_pincode,
                    destination: shipment.destination_pincode,
                    shipped: IstDate::of_instant(at),
                    promised: IstDate::of_instant(shipment.promised_at),
                };
                self.counts.evicted += self.open.insert(
                    Fingerprint::of(shipment.shipment_id.as_str()),
                    open,
                    config.max_open,
                );
            }
            Event::ShipmentDelivered(delivery) => {
                let fingerprint = Fingerprint::of(delivery.shipment_id.as_str());
                if self.delivered.contains(&fingerprint) {
                    self.counts.duplicates += 1;
                    return;
                }
                let Some(open) = self.open.take(&fingerprint) else {
                    self.counts.orphans += 1;
                    return;
                };
                self.delivered
                    .write(fingerprint, config.max_remembered, |()| {});
                let arrived = IstDate::of_instant(at);
                let courier_id = self.couriers[usize::from(open.courier)].clone();
                let accuracy = self.accuracy.entry(courier_id.clone()).or_default();
                accuracy.deliveries += 1;
                accuracy.on_time += u64::from(arrived <= open.promised);
                accuracy.slack_days += i64::from(open.promised.days_since(arrived));
                let (
                    Some((origin_district, origin_state)),
                    Some((dest_district, dest_state)),
                    Some(km),
                ) = (
                    regions.of(open.origin),
                    regions.of(open.destination),
                    regions.distance_km(open.origin, open.destination),
                )
                else {
                    self.counts.unknown_places += 1;
                    return;
                };
                let calendar =
                    network.courier_calendar(&courier_id, open.destination, regions.directory());
                let days = calendar.working_days_between(open.shipped, arrived);
                let c = open.courier;
                let pincode_lane = (open.origin.number(), open.destination.number(), c);
                self.pincode
                    .write(pincode_lane, config.max_pincode_lanes, |histogram| {
                        histogram.add(days, at, half_life);
                    });
                for histogram in [
                    self.district
                        .entry((origin_district, dest_district, c))
                        .or_default(),
                    self.state.entry((origin_state, dest_state, c)).or_default(),
                    self.band.entry((band_of(km), c)).or_default(),
                ] {
                    histogram.add(days, at, half_life);
                }
                self.counts.deliveries += 1;
            }
            _ => {}
        }
    }

    fn learn_handling(
        &mut self,
        warehouse_id: &WarehouseId,
        placed_at: i64,
        shipped_at: i64,
        network: &Network,
        regions: &Regions,
        half_life: i64,
    ) {
        let Some(warehouse) = network.warehouse(warehouse_id) else {
            // Its registration travels on the logistics topic and may be read later: keep
            // the sample until it comes.
            let waiting = self.unregistered.entry(warehouse_id.clone()).or_default();
            if waiting.len() < MAX_WAITING_PER_WAREHOUSE {
                waiting.push((placed_at, shipped_at));
            } else {
                self.counts.evicted += 1;
            }
            return;
        };
        let calendar = network.warehouse_calendar(warehouse, regions.directory());
        let start = handling_starts(placed_at, warehouse, &calendar);
        let days = calendar.working_days_between(start, IstDate::of_instant(shipped_at));
        self.handling
            .entry(warehouse_id.clone())
            .or_default()
            .add(days, shipped_at, half_life);
        self.counts.handlings += 1;
    }

    fn courier_index(&mut self, courier: &CourierId) -> u16 {
        match self.couriers.iter().position(|known| known == courier) {
            Some(i) => i as u16,
            None => {
                self.couriers.push(courier.clone());
                (self.couriers.len() - 1) as u16
            }
        }
    }

    /// Transit from `origin` to `destination` with `courier`, from the most specific level
    /// that has seen `min_deliveries`; `None` when a pincode is unknown to the directory.
    pub fn transit(
        &self,
        origin: Pincode,
        destination: Pincode,
        courier: &CourierId,
        regions: &Regions,
        config: &LearnConfig,
    ) -> Option<Estimate> {
        let (origin_district, origin_state) = regions.of(origin)?;
        let (dest_district, dest_state) = regions.of(destination)?;
        let km = regions.distance_km(origin, destination)?;
        let enough = |h: &&DayHistogram| h.samples() >= config.min_deliveries;
        let found = self
            .couriers
            .iter()
            .position(|c| c == courier)
            .and_then(|c| {
                let c = c as u16;
                let levels = [
                    (
                        Level::Pincode,
                        self.pincode
                            .get(&(origin.number(), destination.number(), c)),
                    ),
                    (
                        Level::District,
                        self.district.get(&(origin_district, dest_district, c)),
                    ),
                    (Level::State, self.state.get(&(origin_state, dest_state, c))),
                    (Level::DistanceBand, self.band.get(&(band_of(km), c))),
                ];
                levels
                    .into_iter()
                    .find_map(|(level, histogram)| Some((level, histogram.filter(enough)?)))
            });
        Some(match found {
            Some((level, histogram)) => Estimate {
                days: histogram.clone(),
                level,
                deliveries: histogram.samples(),
            },
            None => {
                let mut point = DayHistogram::default();
                point.add(config.default_transit_days, 0, 1);
                Estimate {
                    days: point,
                    level: Level::Default,
                    deliveries: 0,
                }
            }
        })
    }

    /// Handling days learnt for `warehouse`, once it has shipped `min_deliveries` orders.
    pub fn handling(&self, warehouse: &WarehouseId, config: &LearnConfig) -> Option<&DayHistogram> {
        self.handling
            .get(warehouse)
            .filter(|h| h.samples() >= config.min_deliveries)
    }

    /// Lanes held at each level (pincode, district, state, band), for `/metrics`.
    pub fn lanes(&self) -> [usize; 4] {
        [
            self.pincode.len(),
            self.district.len(),
            self.state.len(),
            self.band.len(),
        ]
    }
}

/// An order's or shipment's id as 64 bits (FNV-1a over its bytes: stable across builds and
/// Rust versions, as a checkpoint needs). Ids as strings were most of the learnt state's
/// memory (BENCHMARKS.md); two ids sharing a fingerprint (about one chance in 10^7 among two
/// million) would make the second delivery count as a duplicate, or match the wrong shipment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
struct Fingerprint(u64);

impl Fingerprint {
    fn of(id: &str) -> Self {
        Fingerprint(id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        }))
    }
}

/// A fingerprint, or an id as older checkpoints kept open orders and shipments.
impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberOrId;

        impl serde::de::Visitor<'_> for NumberOrId {
            type Value = Fingerprint;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a fingerprint or an id")
            }

            fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<Fingerprint, E> {
                Ok(Fingerprint(number))
            }

            fn visit_str<E: serde::de::Error>(self, id: &str) -> Result<Fingerprint, E> {
                Ok(Fingerprint::of(id))
            }
        }

        deserializer.deserialize_any(NumberOrId)
    }
}

/// The day a warehouse starts handling an order placed at `placed_at`: that day if it works
/// and the order came before the cut-off, else the next working day.
pub fn handling_starts(
    placed_at: i64,
    warehouse: &Warehouse,
    calendar: &model::calendar::WorkCalendar,
) -> IstDate {
    let day = IstDate::of_instant(placed_at);
    if calendar.works_on(day) && ist_minute_of_day(placed_at) < warehouse.cutoff_minute {
        day
    } else {
        calendar.on_or_after(day.plus_days(1))
    }
}

/// Maps with non-string keys, saved as a list of pairs sorted by key so the same state always
/// writes the same bytes.
mod pairs {
    use std::collections::HashMap;
    use std::hash::Hash;

    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K, V, S>(map: &HashMap<K, V>, serializer: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize + Ord,
        V: Serialize,
        S: Serializer,
    {
        let mut pairs: Vec<(&K, &V)> = map.iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        pairs.serialize(serializer)
    }

    pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<HashMap<K, V>, D::Error>
    where
        K: DeserializeOwned + Hash + Eq,
        V: DeserializeOwned,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}
