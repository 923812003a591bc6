//! The fixed cast a generator run plays with: merchants, their products, customers,
//! warehouses and couriers, all drawn from the seed.

use std::collections::BTreeMap;

use model::{CourierId, CustomerId, MerchantId, Pincode, ProductId, WarehouseId};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::GeneratorConfig;
use crate::catalog::CATEGORIES;
use model::geo::{self, Place};

/// Metro PIN prefixes (Delhi, Mumbai, Bengaluru, Chennai, Kolkata, Hyderabad, Pune, Ahmedabad)
/// where most online orders come from.
const METRO_PREFIXES: &[u32] = &[110, 400, 560, 600, 700, 500, 411, 380];

#[derive(Debug, Clone)]
pub struct Store {
    pub pincode: Pincode,
    /// Delivering pincodes within the hyperlocal radius of the store.
    pub nearby: Vec<Pincode>,
}

#[derive(Debug, Clone)]
pub struct Merchant {
    pub id: MerchantId,
    /// Hyperlocal merchants deliver only near their store.
    pub store: Option<Store>,
    /// Indices into `World::products`.
    pub products: Vec<usize>,
    pub warehouse: usize,
}

#[derive(Debug, Clone)]
pub struct Product {
    pub id: ProductId,
    pub merchant: usize,
    pub category: usize,
    pub brand: &'static str,
    pub title: String,
    pub description: String,
    pub attributes: BTreeMap<String, String>,
    pub price_minor: i64,
    pub initial_stock: i64,
}

#[derive(Debug, Clone)]
pub struct Customer {
    pub id: CustomerId,
    pub pincode: Pincode,
}

#[derive(Debug, Clone)]
pub struct Warehouse {
    pub id: WarehouseId,
    pub pincode: Pincode,
    /// The merchant (index) that registers it: the first that ships from it.
    pub merchant: usize,
    /// Orders before this minute of the day (IST) start handling that day.
    pub cutoff_minute: u32,
    /// Declared handling, in working days; the truth adds a delay (`crate::delivery`).
    pub handling_days: u32,
    /// A hyperlocal store's delivery radius.
    pub radius_km: Option<f64>,
    pub restock_lead_days: u32,
}

#[derive(Debug, Clone)]
pub struct World {
    pub merchants: Vec<Merchant>,
    pub products: Vec<Product>,
    pub customers: Vec<Customer>,
    pub warehouses: Vec<Warehouse>,
    pub couriers: Vec<CourierId>,
}

impl World {
    pub fn build(config: &GeneratorConfig, rng: &mut impl Rng) -> World {
        let places: Vec<Place> = geo::places().into_iter().filter(|p| p.delivery).collect();
        let metro: Vec<&Place> = places
            .iter()
            .filter(|p| METRO_PREFIXES.contains(&(p.pincode.number() / 1000)))
            .collect();
        let pick_place = |rng: &mut dyn rand::RngCore| -> &Place {
            if rng.random_bool(0.6) && !metro.is_empty() {
                metro[rng.random_range(0..metro.len())]
            } else {
                &places[rng.random_range(0..places.len())]
            }
        };

        // Warehouse terms come from a stream of their own, so adding them changed nothing
        // else a seed generates.
        let mut terms = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed ^ 0x5741_5245);
        let mut warehouses: Vec<Warehouse> = (0..config.warehouses.max(1))
            .map(|i| Warehouse {
                id: WarehouseId::new(format!("w-{i:03}")),
                pincode: pick_place(rng).pincode,
                merchant: 0,
                cutoff_minute: [12, 14, 16, 18][terms.random_range(0..4)] * 60,
                handling_days: terms.random_range(0..3),
                radius_km: None,
                restock_lead_days: terms.random_range(3..11),
            })
            .collect();
        let couriers = (0..config.couriers.max(1))
            .map(|i| CourierId::new(format!("cr-{i:02}")))
            .collect();

        let mut merchants: Vec<Merchant> = (0..config.merchants.max(1))
            .map(|i| {
                let store = rng.random_bool(config.hyperlocal_share).then(|| {
                    let home = pick_place(rng);
                    let nearby = places
                        .iter()
                        .filter(|p| {
                            geo::distance_km(
                                (home.latitude, home.longitude),
                                (p.latitude, p.longitude),
                            ) <= config.hyperlocal_radius_km
                        })
                        .map(|p| p.pincode)
                        .collect();
                    Store {
                        pincode: home.pincode,
                        nearby,
                    }
                });
                Merchant {
                    id: MerchantId::new(format!("m-{i:04}")),
                    store,
                    products: Vec::new(),
                    warehouse: rng.random_range(0..warehouses.len()),
                }
            })
            .collect();

        // Each warehouse is registered by the first merchant shipping from it; each hyperlocal
        // merchant ships from its own store, a warehouse with a radius.
        let shared = warehouses.len();
        for (i, merchant) in merchants.iter_mut().enumerate() {
            if let Some(store) = &merchant.store {
                merchant.warehouse = warehouses.len();
                warehouses.push(Warehouse {
                    id: WarehouseId::new(format!("st-{i:04}")),
                    pincode: store.pincode,
                    merchant: i,
                    cutoff_minute: 21 * 60,
                    handling_days: 0,
                    radius_km: Some(config.hyperlocal_radius_km),
                    restock_lead_days: terms.random_range(1..4),
                });
            }
        }
        for (i, merchant) in merchants.iter().enumerate().rev() {
            if merchant.warehouse < shared {
                warehouses[merchant.warehouse].merchant = i;
            }
        }

        let products: Vec<Product> = (0..config.products.max(1))
            .map(|i| {
                let merchant = i % merchants.len();
                let category = rng.random_range(0..CATEGORIES.len());
                let spec = &CATEGORIES[category];
                let pick = |rng: &mut dyn rand::RngCore, from: &[&'static str]| {
                    from.choose(rng).copied().unwrap_or_default()
                };
                let brand = pick(rng, spec.brands);
                let adjective = pick(rng, spec.adjectives);
                let noun = pick(rng, spec.nouns);
                let attributes: BTreeMap<String, String> = spec
                    .attributes
                    .iter()
                    .map(|(name, values)| ((*name).to_owned(), pick(rng, values).to_owned()))
                    .collect();
                let rupees = rng.random_range(spec.price_rupees.0..=spec.price_rupees.1);
                // Shop prices end in 9: ₹1,299 rather than ₹1,307.
                let price_rupees = (rupees / 10) * 10 + 9;
                let title = format!("{brand} {adjective} {noun}");
                let description = format!(
                    "{title}. {}.",
                    attributes
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                merchants[merchant].products.push(i);
                Product {
                    id: ProductId::new(format!("p-{i:06}")),
                    merchant,
                    category,
                    brand,
                    title,
                    description,
                    attributes,
                    price_minor: price_rupees * 100,
                    initial_stock: rng.random_range(20..500),
                }
            })
            .collect();

        let customers = (0..config.customers.max(1))
            .map(|i| Customer {
                id: CustomerId::new(format!("c-{i:07}")),
                pincode: pick_place(rng).pincode,
            })
            .collect();

        World {
            merchants,
            products,
            customers,
            warehouses,
            couriers,
        }
    }
}
