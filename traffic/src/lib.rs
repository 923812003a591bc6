//! A deterministic generator of realistic e-commerce traffic, for the demo, tests and
//! benchmarks.
//!
//! [`Generator`] is an iterator of [`model::Envelope`]s in event-time order. From one seed it
//! builds a [`world::World`] (merchants, some hyperlocal with a store; categories with attribute
//! schemas; products with believable titles, brands and INR prices; customers and warehouses
//! at real India Post pincodes; couriers with coverage lists), publishes the delivery network,
//! the catalog and opening stock, then plays
//! shopping sessions that search, view, click, add to cart, order, pay or fail, cancel, and get
//! their orders packed, shipped and delivered in times that depend on the lane
//! ([`delivery`] writes the truth down). Popularity is Zipf and drifts; flash sales
//! burst; the rate follows the day (peak at 21:00 IST). Same seed and config, same events,
//! byte for byte.

pub mod catalog;
pub mod delivery;
mod fulfilment;
pub mod lanes;
mod logistics;
mod popularity;
mod session;
pub mod world;

use std::collections::BinaryHeap;

use model::{Envelope, Event, MerchantId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

pub use catalog::{CATEGORIES, Category};
use fulfilment::Scheduled;
use popularity::Popularity;
use session::Session;
use world::World;

/// What to generate. Every field has a default, so `GeneratorConfig::default()` is a
/// believable small shop platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    /// Seed of every random choice; the same seed gives the same events.
    pub seed: u64,
    /// Event time of the first event, UTC ms. The binary sets it to "now" unless told.
    pub start_ms: i64,
    /// Mean events per second of event time over a day; the hour and flash sales modulate it.
    pub rate: f64,
    pub merchants: usize,
    pub products: usize,
    pub customers: usize,
    pub warehouses: usize,
    pub couriers: usize,
    /// Share of merchants that are hyperlocal (deliver only near their store).
    pub hyperlocal_share: f64,
    /// Delivery radius of hyperlocal stores, km.
    pub hyperlocal_radius_km: f64,
    /// Sessions browsing at the same time.
    pub concurrent_sessions: usize,
    /// Zipf exponent of product popularity.
    pub zipf_exponent: f64,
    /// Whether to follow the daily rhythm; off gives a flat rate (useful in benchmarks).
    pub daily_rhythm: bool,
    /// Whether flash sales happen.
    pub flash_sales: bool,
    /// Orders of the days before the start, delivered, that the demo publishes first
    /// ([`Generator::history`]).
    pub history_orders: usize,
    pub history_days: u32,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            start_ms: 1_764_547_200_000, // 2025-12-01T00:00:00Z
            rate: 200.0,
            merchants: 40,
            products: 2_000,
            customers: 20_000,
            warehouses: 12,
            couriers: 5,
            hyperlocal_share: 0.25,
            hyperlocal_radius_km: 5.0,
            concurrent_sessions: 256,
            zipf_exponent: 1.07,
            daily_rhythm: true,
            flash_sales: true,
            history_orders: 20_000,
            history_days: 60,
        }
    }
}

/// A config that cannot generate anything sensible.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("generator.{field} must be {expected}, got {got}")]
    OutOfRange {
        field: &'static str,
        expected: &'static str,
        got: String,
    },
}

impl GeneratorConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let out_of_range = |field, expected, got: String| {
            Err(ConfigError::OutOfRange {
                field,
                expected,
                got,
            })
        };
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return out_of_range(
                "rate",
                "a positive number of events per second",
                self.rate.to_string(),
            );
        }
        if !(0.0..=1.0).contains(&self.hyperlocal_share) {
            return out_of_range(
                "hyperlocal_share",
                "between 0 and 1",
                self.hyperlocal_share.to_string(),
            );
        }
        if !(self.zipf_exponent.is_finite() && self.zipf_exponent > 0.0) {
            return out_of_range("zipf_exponent", "positive", self.zipf_exponent.to_string());
        }
        for (field, value) in [
            ("merchants", self.merchants),
            ("products", self.products),
            ("customers", self.customers),
            ("concurrent_sessions", self.concurrent_sessions),
        ] {
            if value == 0 {
                return out_of_range(field, "at least 1", "0".into());
            }
        }
        if self.products < self.merchants {
            return out_of_range(
                "products",
                "at least generator.merchants",
                self.products.to_string(),
            );
        }
        Ok(())
    }
}

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;

/// A running flash sale: one merchant's products draw crowds for a while.
#[derive(Debug, Clone, Copy)]
struct FlashSale {
    merchant: usize,
    until_ms: i64,
}

/// The traffic generator. See the crate docs.
#[derive(Debug)]
pub struct Generator {
    config: GeneratorConfig,
    rng: ChaCha8Rng,
    world: World,
    merchant_popularity: Popularity,
    product_popularity: Vec<Popularity>,
    /// Event time in fractional milliseconds, so high rates do not round to zero spacing.
    clock_ms: f64,
    /// When the next session step happens; follow-ups due before it go out first, which keeps
    /// the output in event-time order.
    next_tick_ms: f64,
    next_order: u64,
    /// The core's GST rates, so generated order lines carry the rate their category is charged.
    gst: model::tax::GstRates,
    next_session: u64,
    /// Catalog and opening stock still to publish before traffic starts.
    bootstrap: std::vec::IntoIter<(usize, Event)>,
    sessions: Vec<Session>,
    /// Order follow-ups (payment, packing, shipping...) due at a later event time.
    scheduled: BinaryHeap<Scheduled>,
    next_sequence: u64,
    next_drift_ms: i64,
    next_sale_check_ms: i64,
    flash_sale: Option<FlashSale>,
    /// Every party's working days (Monday to Saturday less national holidays).
    calendar: model::calendar::WorkCalendar,
    places: model::geo::Directory,
}

impl Generator {
    pub fn new(config: GeneratorConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let world = World::build(&config, &mut rng);
        let merchant_popularity =
            Popularity::new((0..world.merchants.len()).collect(), 0.9, &mut rng);
        let product_popularity = world
            .merchants
            .iter()
            .map(|m| Popularity::new(m.products.clone(), config.zipf_exponent, &mut rng))
            .collect();
        let bootstrap = fulfilment::opening_catalog(&world).into_iter();
        let start = config.start_ms;
        Ok(Self {
            clock_ms: start as f64,
            next_tick_ms: start as f64,
            next_order: 0,
            gst: model::tax::GstRates::default(),
            next_session: 0,
            next_drift_ms: start + 10 * MINUTE_MS,
            next_sale_check_ms: start + HOUR_MS,
            config,
            rng,
            world,
            merchant_popularity,
            product_popularity,
            bootstrap,
            sessions: Vec::new(),
            scheduled: BinaryHeap::new(),
            next_sequence: 0,
            flash_sale: None,
            calendar: delivery::calendar(),
            places: model::geo::Directory::load(),
        })
    }

    pub fn world(&self) -> &World {
        &self.world
    }

    /// The delivery network this run plays in, as reference events for the `logistics`
    /// topic: national holidays, couriers and their coverage, every warehouse and store.
    /// Publish them before the iterator's events. Their ids come from a stream of their own,
    /// so the iterator's output is the same whether or not they are taken.
    pub fn network(&self) -> Vec<Envelope> {
        let mut ids = ChaCha8Rng::seed_from_u64(self.config.seed ^ 0x4e45_5457);
        let start = self.config.start_ms;
        logistics::reference_events(&self.world, &model::geo::places())
            .into_iter()
            .map(|(merchant, event)| {
                let random: [u8; 10] = ids.random();
                let event_id = uuid::Builder::from_unix_timestamp_millis(start as u64, &random);
                let merchant_id = self.world.merchants[merchant].id.clone();
                Envelope::new(event_id.into_uuid(), start, merchant_id, event)
            })
            .collect()
    }

    /// Event time of the most recent event, UTC ms.
    pub fn clock_ms(&self) -> i64 {
        self.clock_ms as i64
    }

    fn envelope(&mut self, time_ms: i64, merchant: usize, event: Event) -> Envelope {
        let random: [u8; 10] = self.rng.random();
        let event_id = uuid::Builder::from_unix_timestamp_millis(time_ms as u64, &random);
        let merchant_id: MerchantId = self.world.merchants[merchant].id.clone();
        Envelope::new(event_id.into_uuid(), time_ms, merchant_id, event)
    }

    /// Events per ms right now: the mean rate, shaped by the hour of day in India and by any
    /// flash sale in progress.
    fn current_rate_per_ms(&self) -> f64 {
        let mut rate = self.config.rate / 1000.0;
        if self.config.daily_rhythm {
            let ist_hours = (self.clock_ms / HOUR_MS as f64 + 5.5) % 24.0;
            let phase = (ist_hours - 21.0) / 24.0 * std::f64::consts::TAU;
            // Mean of 0.6 + 0.4 cos over a day is 0.6, so dividing keeps the daily mean.
            rate *= (0.6 + 0.4 * phase.cos()) / 0.6;
        }
        if self.flash_sale.is_some() {
            rate *= 3.0;
        }
        rate
    }

    /// Moves the clock to the next session step and draws the step after it (exponential
    /// gaps, as arrivals of independent shoppers are).
    fn advance_clock(&mut self) {
        self.clock_ms = self.next_tick_ms;
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        self.next_tick_ms = self.clock_ms - u.ln() / self.current_rate_per_ms();
        let now = self.clock_ms as i64;
        if now >= self.next_drift_ms {
            self.next_drift_ms += 10 * MINUTE_MS;
            self.merchant_popularity.drift(1, &mut self.rng);
            for popularity in &mut self.product_popularity {
                popularity.drift(2, &mut self.rng);
            }
        }
        if self.flash_sale.is_some_and(|sale| now >= sale.until_ms) {
            self.flash_sale = None;
        }
        if now >= self.next_sale_check_ms {
            self.next_sale_check_ms += HOUR_MS;
            if self.config.flash_sales && self.flash_sale.is_none() && self.rng.random_bool(0.3) {
                let merchant = self.merchant_popularity.sample(&mut self.rng);
                self.flash_sale = Some(FlashSale {
                    merchant,
                    until_ms: now + 10 * MINUTE_MS,
                });
            }
        }
    }

    fn pick_merchant(&mut self) -> usize {
        match self.flash_sale {
            Some(sale) if self.rng.random_bool(0.5) => sale.merchant,
            _ => self.merchant_popularity.sample(&mut self.rng),
        }
    }

    fn schedule(&mut self, due_ms: i64, merchant: usize, event: Event) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.scheduled.push(Scheduled {
            due_ms,
            sequence,
            merchant,
            event,
        });
    }
}

impl Iterator for Generator {
    type Item = Envelope;

    fn next(&mut self) -> Option<Envelope> {
        if let Some((merchant, event)) = self.bootstrap.next() {
            let start = self.config.start_ms;
            return Some(self.envelope(start, merchant, event));
        }
        loop {
            if self
                .scheduled
                .peek()
                .is_some_and(|s| s.due_ms as f64 <= self.next_tick_ms)
            {
                let due = self.scheduled.pop()?;
                self.clock_ms = self.clock_ms.max(due.due_ms as f64);
                return Some(self.envelope(due.due_ms, due.merchant, due.event));
            }
            self.advance_clock();
            if let Some((merchant, event)) = self.step_a_session() {
                let now = self.clock_ms as i64;
                return Some(self.envelope(now, merchant, event));
            }
        }
    }
}

#[cfg(test)]
mod tests;
