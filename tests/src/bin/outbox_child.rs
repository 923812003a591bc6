//! The process `outbox_crash.rs` kills: runs the outbox relay and places orders as fast as
//! they commit, against the broker and the store the parent names (SQLite in the directory,
//! or the PostgreSQL URL when one is given), until SIGKILL.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use ingest::domain::GstRates;
use ingest::orders::{OrderRules, PlaceOrder, RequestedLine, place_order};
use ingest::relay::{self, RelayConfig};
use ingest::store::{Store, StoreConfig};
use model::{Currency, CustomerId, MerchantId, Pincode, ProductId};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(bootstrap), Some(prefix)) = (args.next(), args.next(), args.next()) else {
        bail!(
            "usage: outbox_child DATA_DIR BOOTSTRAP TOPIC_PREFIX [POSTGRES_URL] (started by outbox_crash.rs)"
        );
    };
    let config = StoreConfig {
        url: args.next(),
        ..StoreConfig::default()
    };
    let store = Store::open(&config, Path::new(&dir)).await?;
    let bus = bus::Bus::connect(bus::BusConfig {
        bootstrap_servers: Some(bootstrap),
        topic_prefix: prefix,
        ..bus::BusConfig::default()
    })?;
    // Small batches make kills land between a publish and its stamp often.
    let small_batches = RelayConfig {
        batch: 16,
        ..RelayConfig::default()
    };
    let relay_store = store.clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let relay = tokio::spawn(async move {
        relay::run(
            small_batches,
            relay_store,
            &bus,
            relay::RelayMetrics::new(&runtime::metrics::Registry::default()),
            shutdown,
        )
        .await
    });
    let rules = OrderRules {
        reservation_hold_ms: 60_000,
        gst: GstRates::default(),
        fx_rates: Vec::new(),
        pincodes: Arc::new(model::geo::Directory::load()),
        promises: None,
    };
    let delivery = Pincode::parse("110001").context("pincode")?;
    for i in 0.. {
        if relay.is_finished() {
            bail!("relay stopped: {:?}", relay.await);
        }
        let request = PlaceOrder {
            merchant_id: MerchantId::new("m-1"),
            customer_id: CustomerId::new(format!("c-{i}")),
            session_id: None,
            delivery_pincode: delivery,
            currency: Currency::INR,
            lines: vec![RequestedLine {
                product_id: ProductId::new("p-1"),
                quantity: 1,
            }],
        };
        place_order(&store, &rules, &request, None, 1_764_547_200_000 + i).await?;
    }
    Ok(())
}
