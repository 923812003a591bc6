//! `shopstream-bench promise`: a backtest of delivery promises, and the serviceability
//! operator's learning rate, memory and answer time.
//!
//! Deliveries are drawn from the generator's truth (`traffic::delivery`): warehouses and
//! destinations at real pincodes, couriers of each speed class, handling and transit drawn
//! per lane, Sundays and national holidays skipped. The learner folds the deliveries placed
//! before a split day (as envelopes, through the same `State::apply` the job runs); every
//! later order is then promised at several quantiles and scored against its drawn delivery
//! day, beside a fixed "4 days" baseline (what the generator promised before) and an oracle
//! that knows each lane's true distribution.

use std::time::Instant;

use anyhow::Result;
use model::calendar::IstDate;
use model::payload::StockAdjusted;
use model::{Envelope, Event, MerchantId, ProductId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use streams::serviceability::learn::LearnConfig;
use streams::serviceability::promise::PromiseConfig;
use streams::serviceability::{Serviceability, State};
use traffic::delivery;
use traffic::lanes::{self, CUTOFF_MINUTE, Lanes, events_before};

const DAY: i64 = 24 * 3_600_000;

/// Folds `events` into `state` as the job does; returns the seconds it took.
fn fold(state: &mut State, events: &[Envelope], service: &Serviceability) -> Result<f64> {
    let started = Instant::now();
    for envelope in events {
        state
            .apply(envelope, service.regions(), &service.learn)
            .map_err(anyhow::Error::msg)?;
    }
    Ok(started.elapsed().as_secs_f64())
}

fn learn(world: &Lanes, service: &Serviceability, until: i64) -> Result<(usize, f64)> {
    let mut state = State::default();
    fold(&mut state, &lanes::network(world), service)?;
    let seconds = fold(&mut state, &events_before(world, until), service)?;
    let deliveries = state.learnt.counts.deliveries as usize;
    *service.write() = state;
    Ok((deliveries, seconds))
}

#[derive(Default)]
struct Score {
    promises: u64,
    on_time: u64,
    slack_days: i64,
}

impl Score {
    fn add(&mut self, promised: IstDate, delivered: IstDate) {
        self.promises += 1;
        self.on_time += u64::from(delivered <= promised);
        self.slack_days += i64::from(promised.days_since(delivered));
    }

    fn row(&self, name: &str) {
        let n = self.promises.max(1) as f64;
        println!(
            "| {name:<28} | {:>7} | {:>6.1} % | {:>6.2} |",
            self.promises,
            100.0 * self.on_time as f64 / n,
            self.slack_days as f64 / n
        );
    }
}

/// Prints the backtest table, then the learning rate, state size and answer times.
pub fn run(orders: usize, destinations: usize, seed: u64) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let world = lanes::draw(&mut rng, orders, 20, 6, destinations);
    let split = world.start + 150 * DAY;
    let quantiles = [0.5, 0.8, 0.9, 0.92, 0.94, 0.95, 0.98];
    let mut learnt_scores: Vec<Score> = quantiles.iter().map(|_| Score::default()).collect();
    let mut oracle_scores: Vec<Score> = quantiles.iter().map(|_| Score::default()).collect();
    let mut fixed = Score::default();
    let service = Serviceability::new(LearnConfig::default(), PromiseConfig::default());
    let (deliveries, seconds) = learn(&world, &service, split)?;
    let calendar = delivery::calendar();
    let speed_of = delivery::courier_speed;
    for (i, &q) in quantiles.iter().enumerate() {
        let promise = PromiseConfig {
            quantile: q,
            ..PromiseConfig::default()
        };
        let learn_config = LearnConfig::default();
        let state = service.read();
        let inputs = streams::serviceability::promise::Inputs {
            network: &state.network,
            learnt: &state.learnt,
            regions: service.regions(),
            learn: &learn_config,
            promise: &promise,
        };
        for truth in world.truths.iter().filter(|t| t.placed_at >= split) {
            let (warehouse_id, origin, declared) = &world.warehouses[truth.warehouse];
            let Some(warehouse) = state.network.warehouse(warehouse_id) else {
                continue;
            };
            let courier = &world.couriers[truth.courier];
            let delivered = IstDate::of_instant(truth.delivered_at);
            if let Some(lane) = inputs.lane(
                truth.placed_at,
                warehouse,
                courier,
                truth.destination.pincode,
            ) {
                learnt_scores[i].add(lane.deliver_by, delivered);
            }
            let base =
                delivery::base_transit_days(origin, &truth.destination, speed_of(truth.courier));
            let oracle = delivery::oracle_promise(
                &calendar,
                truth.placed_at,
                CUTOFF_MINUTE,
                *declared,
                base,
                q,
            );
            oracle_scores[i].add(oracle, delivered);
            if i == 0 {
                fixed.add(IstDate::of_instant(truth.placed_at + 4 * DAY), delivered);
            }
        }
    }
    println!(
        "backtest: {orders} orders over 180 days from 2026-01-01, 20 warehouses, 6 couriers, {destinations} destination pincodes; learnt from the {deliveries} delivered before day 150, promised the orders placed after"
    );
    println!("| promise                      | orders  | on time  | mean slack (days) |");
    println!("|------------------------------|---------|----------|--------|");
    fixed.row("fixed 4 days (before)");
    for (i, q) in quantiles.iter().enumerate() {
        learnt_scores[i].row(&format!("learnt, quantile {q}"));
        oracle_scores[i].row(&format!("truth oracle, quantile {q}"));
    }
    println!(
        "learning: {deliveries} deliveries ({} events) in {seconds:.2} s on one thread: {:.0} deliveries/s",
        events_before(&world, split).len(),
        deliveries as f64 / seconds
    );
    answer_times(&service, &world)?;
    Ok(())
}

/// In-process answer times: one item, and 100-item carts.
fn answer_times(service: &Serviceability, world: &Lanes) -> Result<()> {
    {
        let mut state = service.write();
        for p in 0..1_000 {
            let (warehouse_id, _, _) = &world.warehouses[p % world.warehouses.len()];
            let adjusted = Envelope::new(
                uuid::Uuid::now_v7(),
                1,
                MerchantId::new("m-bench"),
                Event::StockAdjusted(StockAdjusted {
                    product_id: ProductId::new(format!("p-{p:04}")),
                    warehouse_id: warehouse_id.clone(),
                    delta: 100,
                    on_hand: 100,
                    reason: "bench".into(),
                }),
            );
            state
                .apply(&adjusted, service.regions(), &service.learn)
                .map_err(anyhow::Error::msg)?;
        }
    }
    let now = world.start + 170 * DAY;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut time = |items: usize, runs: usize| -> Vec<f64> {
        let mut micros = Vec::with_capacity(runs);
        for _ in 0..runs {
            let destination = world.places[rng.random_range(0..world.places.len())].pincode;
            let products: Vec<ProductId> = (0..items)
                .map(|_| ProductId::new(format!("p-{:04}", rng.random_range(0..1_000))))
                .collect();
            let started = Instant::now();
            let answered = service.with_inputs(|inputs| {
                products
                    .iter()
                    .filter(|p| inputs.options(p, 1, destination, now).is_ok())
                    .count()
            });
            micros.push(started.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(answered);
        }
        micros.sort_by(f64::total_cmp);
        micros
    };
    for (items, runs) in [(1, 20_000), (100, 2_000)] {
        let micros = time(items, runs);
        let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
        println!(
            "in-process answer, {items} item(s), {runs} runs: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
    Ok(())
}

/// Learnt-state memory for deliveries spread over `destinations` x `warehouses` x `couriers`:
/// RSS after folding them in minus RSS with the events already generated.
pub fn memory(
    deliveries: usize,
    destinations: usize,
    warehouses: usize,
    couriers: usize,
) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let world = lanes::draw(&mut rng, deliveries, warehouses, couriers, destinations);
    let service = Serviceability::new(LearnConfig::default(), PromiseConfig::default());
    let mut state = State::default();
    fold(&mut state, &lanes::network(&world), &service)?;
    let events = events_before(&world, i64::MAX);
    let before = rss_bytes();
    let seconds = fold(&mut state, &events, &service)?;
    let after = rss_bytes();
    let checkpoint = serde_json::to_vec(&state)?.len();
    println!(
        "memory: {} deliveries over {destinations} destinations x {warehouses} warehouses x {couriers} couriers in {seconds:.1} s ({:.0}/s); lanes pincode/district/state/band {:?}; learnt state grew RSS by {:.0} MB; checkpoint {:.0} MB",
        state.learnt.counts.deliveries,
        state.learnt.counts.deliveries as f64 / seconds,
        state.learnt.lanes(),
        after.saturating_sub(before) as f64 / 1e6,
        checkpoint as f64 / 1e6
    );
    Ok(())
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}
