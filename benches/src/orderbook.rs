//! A synthetic order book for `bench lake-queries`: enough orders for N order lines over 30
//! days, with their payments, cancellations and refunds, shipments with delivery times, and
//! the searches of the sessions they came from (plus as many sessions that searched and did
//! not buy), written through the lakehouse's own row encoder and manifest as the sink would
//! write them, in files of up to 20 K rows.
//!
//! Why not the traffic generator: its orders are about 2 % of its events, so 10 M order lines
//! would mean some 430 M events, most of them clicks the queries never read. The shapes follow
//! the generator's: Zipf-popular merchants and products, India Post pincodes, 95 % of payments
//! captured, 6 % of paid orders cancelled with a refund, deliveries 1-7 days after shipping.

use std::collections::BTreeMap;

use anyhow::Result;
use lakehouse::Storage;
use lakehouse::parquet::Encoding;
use lakehouse::rows::{Rows, event_day};
use lakehouse::writer::{Pending, Writer};
use model::payload::*;
use model::{
    CourierId, CustomerId, Envelope, Event, MerchantId, Money, OrderId, PaymentId, Pincode,
    ProductId, RefundId, SessionId, ShipmentId, Table, WarehouseId,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DAYS: i64 = 30;
/// 2025-12-01T00:00:00Z.
const START_MS: i64 = 1_764_547_200_000;
const HOUR_MS: i64 = 3_600_000;
const MERCHANTS: usize = 40;
const PRODUCTS_PER_MERCHANT: usize = 50;
const CUSTOMERS: u64 = 200_000;
/// Rows per file before compaction: about what the sink commits every 10 s at a few thousand
/// events per second.
const FILE_ROWS: usize = 20_000;

/// Picks index `i` with weight `1 / (i + 1)^s`.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|i| {
                total += 1.0 / ((i + 1) as f64).powf(s);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c < x)
            .min(self.cumulative.len() - 1)
    }
}

struct Book {
    rng: ChaCha8Rng,
    writer: Writer,
    open: BTreeMap<(Table, i32), Rows>,
}

impl Book {
    fn envelope(&mut self, time: i64, merchant: &MerchantId, event: Event) -> Envelope {
        let random: [u8; 10] = self.rng.random();
        let id = uuid::Builder::from_unix_timestamp_millis(time as u64, &random).into_uuid();
        Envelope::new(id, time, merchant.clone(), event)
    }

    async fn emit(&mut self, time: i64, merchant: &MerchantId, event: Event) -> Result<()> {
        let envelope = self.envelope(time, merchant, event);
        let day = event_day(time);
        for table in Table::fed_by(envelope.topic()) {
            let rows = match self.open.entry((table, day)) {
                std::collections::btree_map::Entry::Occupied(rows) => rows.into_mut(),
                std::collections::btree_map::Entry::Vacant(slot) => slot.insert(Rows::new(table)?),
            };
            rows.push(&envelope);
            if rows.len() >= FILE_ROWS {
                let full = std::mem::replace(rows, Rows::new(table)?);
                self.commit(table, day, full).await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        let open = std::mem::take(&mut self.open);
        for ((table, day), rows) in open {
            self.commit(table, day, rows).await?;
        }
        Ok(())
    }

    /// One file of `rows`, committed as the sink commits (through the lakehouse's writer).
    async fn commit(&mut self, table: Table, day: i32, rows: Rows) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let pending = Pending {
            table,
            day,
            rows: vec![rows],
        };
        self.writer.commit(vec![pending], BTreeMap::new()).await?;
        Ok(())
    }
}

/// Writes the book; returns the order lines written.
pub async fn write(storage: &Storage, lines: usize, seed: u64) -> Result<usize> {
    let mut book = Book {
        rng: ChaCha8Rng::seed_from_u64(seed),
        // No vacuum runs while the book is written, so no commit is ever too slow.
        writer: Writer::open(storage.clone(), Encoding::default(), i64::MAX).await?,
        open: BTreeMap::new(),
    };
    let merchants: Vec<MerchantId> = (1..=MERCHANTS)
        .map(|m| MerchantId::new(format!("m-{m:04}")))
        .collect();
    let prices: Vec<i64> = (0..MERCHANTS * PRODUCTS_PER_MERCHANT)
        .map(|_| (10f64.powf(book.rng.random_range(2.0..5.0)) as i64).max(99))
        .collect();
    let pincodes: Vec<Pincode> = model::geo::places()
        .into_iter()
        .filter(|place| place.delivery)
        .map(|place| place.pincode)
        .collect();
    let merchant_pick = Zipf::new(MERCHANTS, 0.9);
    let product_pick = Zipf::new(PRODUCTS_PER_MERCHANT, 1.07);
    let providers = ["upi", "card", "netbanking"];
    let queries = [
        "phone",
        "saree",
        "rice",
        "headphones",
        "kurta",
        "atta",
        "shoes",
        "tea",
    ];

    // A little over 2.5 lines per order on average, so the last day reaches `lines`.
    let orders_per_day = (lines as f64 / 2.4 / DAYS as f64).ceil() as i64;
    let mut written = 0;
    let mut order = 0u64;
    let mut session = 0u64;
    'days: for day in 0..DAYS {
        for i in 0..orders_per_day {
            if written >= lines {
                break 'days;
            }
            order += 1;
            let placed_at = START_MS + day * 24 * HOUR_MS + i * 24 * HOUR_MS / orders_per_day;
            let merchant_index = merchant_pick.sample(&mut book.rng);
            let merchant = merchants[merchant_index].clone();
            let customer = CustomerId::new(format!("c-{:06}", book.rng.random_range(0..CUSTOMERS)));
            let pincode = pincodes[book.rng.random_range(0..pincodes.len())];
            let product = |rng: &mut ChaCha8Rng| {
                merchant_index * PRODUCTS_PER_MERCHANT + product_pick.sample(rng)
            };

            // The sessions: this order's (70 % come through the storefront) and one that only
            // searched.
            let mut session_id = None;
            for buys in [true, false] {
                session += 1;
                let id = SessionId::new(format!("s-{session:09}"));
                if buys && !book.rng.random_bool(0.7) {
                    continue;
                }
                for search in 0..book.rng.random_range(1..=2) {
                    let results = (0..8)
                        .map(|_| ProductId::new(format!("p-{:05}", product(&mut book.rng))))
                        .collect();
                    let query = queries[book.rng.random_range(0..queries.len())].to_owned();
                    let event = Event::SearchPerformed(SearchPerformed {
                        session_id: id.clone(),
                        customer_id: Some(customer.clone()),
                        query,
                        filters: BTreeMap::new(),
                        pincode: Some(pincode),
                        results,
                    });
                    book.emit(placed_at - 60_000 * (3 - search), &merchant, event)
                        .await?;
                }
                if buys {
                    session_id = Some(id);
                }
            }

            let order_id = OrderId::new(format!("o-{order:010}"));
            let line_count = book.rng.random_range(1..=4);
            let order_lines: Vec<OrderLine> = (0..line_count)
                .map(|_| {
                    let p = product(&mut book.rng);
                    OrderLine {
                        product_id: ProductId::new(format!("p-{p:05}")),
                        quantity: book.rng.random_range(1..=3),
                        unit_price: Money::inr(prices[p]),
                        gst_bps: None,
                    }
                })
                .collect();
            written += order_lines.len();
            let total: i64 = order_lines
                .iter()
                .map(|l| l.unit_price.amount_minor * i64::from(l.quantity))
                .sum();
            book.emit(
                placed_at,
                &merchant,
                Event::OrderPlaced(OrderPlaced {
                    order_id: order_id.clone(),
                    customer_id: customer.clone(),
                    session_id,
                    lines: order_lines,
                    delivery_pincode: pincode,
                    total: Money::inr(total),
                }),
            )
            .await?;

            let payment_id = PaymentId::new(format!("pay-{order:010}"));
            let provider = providers[book.rng.random_range(0..providers.len())].to_owned();
            let paid_at = placed_at + 30_000;
            if book.rng.random_bool(0.05) {
                let reason = "declined".to_owned();
                book.emit(
                    paid_at,
                    &merchant,
                    Event::PaymentFailed(PaymentFailed {
                        payment_id,
                        order_id: order_id.clone(),
                        amount: Money::inr(total),
                        provider,
                        reason: reason.clone(),
                    }),
                )
                .await?;
                book.emit(
                    paid_at,
                    &merchant,
                    Event::OrderFailed(OrderFailed { order_id, reason }),
                )
                .await?;
                continue;
            }
            book.emit(
                paid_at,
                &merchant,
                Event::PaymentCaptured(PaymentCaptured {
                    payment_id: payment_id.clone(),
                    order_id: order_id.clone(),
                    amount: Money::inr(total),
                    provider,
                }),
            )
            .await?;
            book.emit(
                paid_at,
                &merchant,
                Event::OrderConfirmed(OrderConfirmed {
                    order_id: order_id.clone(),
                    payment_id: payment_id.clone(),
                }),
            )
            .await?;
            if book.rng.random_bool(0.06) {
                let at = paid_at + book.rng.random_range(1..40) * 60_000;
                let refund = Money::inr(total * 8 / 10);
                book.emit(
                    at,
                    &merchant,
                    Event::OrderCancelled(OrderCancelled {
                        order_id: order_id.clone(),
                        reason: "customer_request".into(),
                        refund,
                    }),
                )
                .await?;
                book.emit(
                    at,
                    &merchant,
                    Event::RefundIssued(RefundIssued {
                        refund_id: RefundId::new(format!("rf-{order:010}")),
                        payment_id,
                        order_id,
                        amount: refund,
                    }),
                )
                .await?;
                continue;
            }
            let warehouse = WarehouseId::new(format!("w-{:02}", merchant_index % 12));
            let courier_index = book.rng.random_range(0..5);
            let courier = CourierId::new(format!("cr-{courier_index}"));
            let shipment = ShipmentId::new(format!("sh-{order:010}"));
            let shipped_at = paid_at + 6 * HOUR_MS;
            book.emit(
                paid_at + 2 * HOUR_MS,
                &merchant,
                Event::OrderPacked(OrderPacked {
                    order_id: order_id.clone(),
                    warehouse_id: warehouse.clone(),
                }),
            )
            .await?;
            book.emit(
                shipped_at,
                &merchant,
                Event::ShipmentCreated(ShipmentCreated {
                    shipment_id: shipment.clone(),
                    order_id: order_id.clone(),
                    warehouse_id: warehouse,
                    courier_id: courier.clone(),
                    origin_pincode: pincodes[merchant_index * 97 % pincodes.len()],
                    destination_pincode: pincode,
                    promised_at: shipped_at + 96 * HOUR_MS,
                }),
            )
            .await?;
            book.emit(
                shipped_at,
                &merchant,
                Event::OrderShipped(OrderShipped {
                    order_id: order_id.clone(),
                    shipment_id: shipment.clone(),
                    courier_id: courier,
                }),
            )
            .await?;
            // Slower couriers have longer tails: 1 to 7 days.
            let hours = 24 + book.rng.random_range(0..(48 + 24 * courier_index as i64));
            let delivered_at = shipped_at + hours * HOUR_MS;
            book.emit(
                delivered_at,
                &merchant,
                Event::ShipmentDelivered(ShipmentDelivered {
                    shipment_id: shipment.clone(),
                    order_id: order_id.clone(),
                }),
            )
            .await?;
            book.emit(
                delivered_at,
                &merchant,
                Event::OrderDelivered(OrderDelivered {
                    order_id,
                    shipment_id: shipment,
                }),
            )
            .await?;
        }
    }
    book.flush().await?;
    Ok(written)
}
