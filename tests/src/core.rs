//! Fixtures for tests of the orders core: a store on SQLite or PostgreSQL, a merchant with
//! products and stock, order requests, and counting queries.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use ingest::catalog::{self, Merchant, Product};
use ingest::domain::{CancellationPolicy, GstRates};
use ingest::orders::{OrderRules, PlaceOrder, RequestedLine};
use ingest::store::{Store, StoreConfig};
use model::payload::ProductUpserted;
use model::{Currency, CustomerId, MerchantId, Money, Pincode, ProductId, WarehouseId};
use sqlx::Row as _;

pub const NOW: i64 = 1_764_547_200_000;

/// A store and the directory it lives in, which must outlive it.
#[derive(Debug)]
pub struct Db {
    pub store: Store,
    pub dir: tempfile::TempDir,
}

pub async fn sqlite() -> Result<Db> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&StoreConfig::default(), dir.path()).await?;
    Ok(Db { store, dir })
}

pub async fn postgres(test: &str) -> Result<Db> {
    let dir = tempfile::tempdir()?;
    let config = StoreConfig {
        url: Some(crate::postgres::database(test).await?),
        ..StoreConfig::default()
    };
    let store = Store::open(&config, dir.path()).await?;
    Ok(Db { store, dir })
}

pub fn rules() -> OrderRules {
    OrderRules {
        reservation_hold_ms: 15 * 60_000,
        gst: GstRates::default(),
        fx_rates: Vec::new(),
        pincodes: Arc::new(model::geo::Directory::load()),
        promises: None,
    }
}

pub fn pin(code: &str) -> Pincode {
    Pincode::parse(code).expect("a valid pincode")
}

/// A merchant (hyperlocal at Bengaluru GPO when asked) with product `p-1` and `units` in stock.
pub async fn shop(store: &Store, hyperlocal: bool, units: i64) -> Result<()> {
    let merchant = Merchant {
        merchant_id: MerchantId::new("m-1"),
        name: "Corner Store".into(),
        hyperlocal: hyperlocal.then(|| (pin("560001"), 5.0)),
        cancellation_policy: CancellationPolicy::default(),
    };
    catalog::upsert_merchant(store, &merchant, NOW).await?;
    for id in ["p-1", "p-2"] {
        let product = Product {
            merchant_id: MerchantId::new("m-1"),
            listing: ProductUpserted {
                product_id: ProductId::new(id),
                category: "grocery".into(),
                brand: "Annapurna".into(),
                title: "Organic Honey 500 g".into(),
                description: "Raw forest honey.".into(),
                attributes: BTreeMap::from([("weight".into(), "500 g".into())]),
                price: Money::inr(42_000),
            },
        };
        catalog::upsert_product(store, &product, &WarehouseId::new("w-1"), NOW).await?;
    }
    catalog::adjust_stock(
        store,
        &MerchantId::new("m-1"),
        &ProductId::new("p-1"),
        units,
        "receipt",
        NOW,
    )
    .await?;
    catalog::adjust_stock(
        store,
        &MerchantId::new("m-1"),
        &ProductId::new("p-2"),
        1,
        "receipt",
        NOW,
    )
    .await?;
    Ok(())
}

pub fn order(customer: &str, lines: &[(&str, u32)], delivery: &str) -> PlaceOrder {
    PlaceOrder {
        merchant_id: MerchantId::new("m-1"),
        customer_id: CustomerId::new(customer),
        session_id: None,
        delivery_pincode: pin(delivery),
        currency: Currency::INR,
        lines: lines
            .iter()
            .map(|(product, quantity)| RequestedLine {
                product_id: ProductId::new(*product),
                quantity: *quantity,
            })
            .collect(),
    }
}

pub async fn count(store: &Store, sql: &str) -> Result<i64> {
    Ok(sqlx::query(sql).fetch_one(store.pool()).await?.try_get(0)?)
}

pub async fn stock_of(store: &Store, product: &str) -> Result<(i64, i64)> {
    let row = sqlx::query("SELECT on_hand, reserved FROM stock WHERE product_id = $1")
        .bind(product)
        .fetch_one(store.pool())
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// Runs each named `async fn(Db) -> Result<()>` as a test on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($check:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() -> anyhow::Result<()> {
                    super::$check($crate::core::sqlite().await?).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() -> anyhow::Result<()> {
                    super::$check($crate::core::postgres(stringify!($check)).await?).await
                }
            )*
        }
    };
}

/// The orders core running in-process behind a front door on port 0 against `bus`.
#[derive(Debug)]
pub struct RunningCore {
    pub base: String,
    pub admin_key: String,
    pub running: runtime::supervisor::Running,
    pub dir: tempfile::TempDir,
}

pub const ADMIN_KEY: &str = "sk_test_admin_key";

/// Creates the topics, then starts the core with `config` (its data dir and admin key are
/// set here).
pub async fn start_core(
    bus: Arc<bus::Bus>,
    config: ingest::service::CoreConfig,
) -> Result<RunningCore> {
    bus.ensure_topics(&model::Topic::ALL).await?;
    launch_core(bus, config).await
}

/// Starts the core without touching the broker first (a test of an unreachable broker).
pub async fn launch_core(
    bus: Arc<bus::Bus>,
    config: ingest::service::CoreConfig,
) -> Result<RunningCore> {
    launch_core_promising(bus, config, None).await
}

/// Starts the core with the serviceability model its orders take their promises from.
pub async fn launch_core_promising(
    bus: Arc<bus::Bus>,
    mut config: ingest::service::CoreConfig,
    promises: Option<Arc<dyn model::deliver::Deliverability>>,
) -> Result<RunningCore> {
    let dir = tempfile::tempdir()?;
    config.admin_key = Some(ADMIN_KEY.to_owned());
    let token = tokio_util::sync::CancellationToken::new();
    let (stage, _) = ingest::service::stage(
        config,
        dir.path().to_owned(),
        promises,
        bus,
        &runtime::metrics::Registry::default(),
        token.clone(),
    )
    .await?;
    let mut list = runtime::supervisor::StageList::default();
    list.push(stage, token);
    let running = runtime::supervisor::spawn_local(list).await?;
    Ok(RunningCore {
        base: format!("http://{}", running.addr),
        admin_key: ADMIN_KEY.to_owned(),
        running,
        dir,
    })
}

impl RunningCore {
    /// Stops the core (front door first, then its relay drains) and returns how it ended.
    pub async fn stop(self) -> Result<()> {
        self.running.stop().await?;
        Ok(())
    }
}
