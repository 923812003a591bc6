//! The fixed cast a generator run plays with: merchants, their products, customers,
//! warehouses and couriers, all drawn from the seed.

use std::collections::BTreeMap;

use model::{CourierId, CustomerId, MerchantId, Pincode, ProductId, WarehouseId};
use rand::Rng;
use rand::seq::IndexedRandom;

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

        let warehouses: Vec<Warehouse> = (0..config.warehouses.max(1))
            .map(|i| Warehouse {
                id: WarehouseId::new(format!("w-{i:03}")),
                pincode: pick_place(rng).pincode,
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
