//! The UCI Online Retail week replayed through the orders core: with bad lines injected, every
//! bad line is reported by its line number, every good line ends up in an order, a second run
//! changes nothing, and the relay publishes what the import committed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use bus::NoHook;
use ingest::import::{self, ImportTarget, online_retail::MALFORMED};
use ingest::store::{Store, StoreConfig};
use model::Topic;
use testkit::core::{count, rules};

/// What the file says should be imported, worked out without the importer's parser.
#[derive(Debug, Default)]
struct Expected {
    units: i64,
    /// Pence: per invoice and product, the units times the last price the invoice gives it.
    value: i64,
    invoices: BTreeSet<String>,
}

fn expected(path: &std::path::Path) -> Result<Expected> {
    let mut reader = csv::Reader::from_path(path)?;
    let mut per_product: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    let mut expected = Expected::default();
    for record in reader.records() {
        let record = record?;
        let (invoice, product) = (&record[0], &record[1]);
        let quantity: i64 = record[3].parse()?;
        let pounds: f64 = record[5].parse()?;
        let pence = (((pounds * 1000.0).round() as i64) + 5) / 10;
        if invoice.starts_with('C') || quantity <= 0 || pence <= 0 {
            continue;
        }
        expected.units += quantity;
        expected.invoices.insert(invoice.to_owned());
        let entry = per_product
            .entry((invoice.to_owned(), product.to_owned()))
            .or_default();
        *entry = (entry.0 + quantity, pence);
    }
    expected.value = per_product
        .values()
        .map(|(units, pence)| units * pence)
        .sum();
    Ok(expected)
}

/// The real file with broken lines spliced in; returns the copy and the broken lines'
/// numbers.
fn with_bad_lines(
    source: &std::path::Path,
    dir: &std::path::Path,
) -> Result<(std::path::PathBuf, Vec<u64>)> {
    let text = std::fs::read(source)?;
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let bad: [(usize, &[u8]); 4] = [
        (10, b"536999,ONLY,THREE FIELDS"),
        (
            500,
            b"536999,22139,RETROSPOT TEA SET,many,12/1/10 11:52,4.95,17850,United Kingdom",
        ),
        (
            4_000,
            b"536999,22139,CAF\xC9 SIGN,1,12/1/10 11:52,4.95,17850,United Kingdom",
        ),
        (
            9_000,
            b"536999,22139,SIGN,1,12/31/10 25:00,4.95,17850,United Kingdom",
        ),
    ];
    let path = dir.join("online_retail_with_bad_lines.csv");
    let mut out = std::fs::File::create(&path)?;
    let mut numbers = Vec::new();
    let mut written = 0u64;
    for (index, line) in lines.iter().enumerate() {
        for (at, bad_line) in &bad {
            if *at == index {
                out.write_all(bad_line)?;
                out.write_all(b"\n")?;
                written += 1;
                numbers.push(written);
            }
        }
        out.write_all(line)?;
        out.write_all(b"\n")?;
        written += 1;
    }
    Ok((path, numbers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_online_retail_week_replays_into_orders_and_refunds() -> Result<()> {
    let source = testkit::online_retail_csv();
    let dir = tempfile::tempdir()?;
    let (path, bad_lines) = with_bad_lines(&source, dir.path())?;
    let expected = expected(&source).with_context(|| source.display().to_string())?;
    let store = Store::open(&StoreConfig::default(), dir.path()).await?;
    let rules = rules();
    let target = ImportTarget::default();

    let mut ticks = Vec::new();
    let report = import::import(
        &store,
        &rules,
        &target,
        std::fs::File::open(&path)?,
        &mut |done, total| ticks.push((done, total)),
    )
    .await?;

    let malformed: Vec<u64> = report
        .skipped
        .iter()
        .filter(|p| p.code == MALFORMED)
        .map(|p| p.line)
        .collect();
    ensure!(
        malformed == bad_lines,
        "malformed lines reported: {malformed:?}, spliced in at {bad_lines:?}"
    );
    ensure!(
        report.lines == 14_594 + bad_lines.len() as u64,
        "{report:?}"
    );
    ensure!(
        ticks.last() == Some(&(report.invoices, report.invoices))
            && ticks.len() as u64 == report.invoices,
        "progress counts every invoice once"
    );

    // Every good sale line is in an order, at the file's price.
    ensure!(
        report.orders_placed == expected.invoices.len() as u64,
        "{} orders for {} invoices",
        report.orders_placed,
        expected.invoices.len()
    );
    ensure!(
        count(&store, "SELECT COUNT(*) FROM orders").await? == expected.invoices.len() as i64,
        "orders in the store"
    );
    let units = count(
        &store,
        "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM order_lines",
    )
    .await?;
    ensure!(
        units == expected.units,
        "{units} units ordered, the file sold {}",
        expected.units
    );
    let captured = count(&store, "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM payments WHERE status = 'captured'").await?;
    ensure!(
        captured == expected.value,
        "captured {captured} pence, the file sold {} pence",
        expected.value
    );
    ensure!(
        count(
            &store,
            "SELECT COUNT(*) FROM orders WHERE status <> 'confirmed' AND status <> 'refunded'"
        )
        .await?
            == 0,
        "every imported order is paid"
    );

    // Cancellations became refunds, each bounded by its order's capture.
    ensure!(report.refunds > 0, "{report:?}");
    ensure!(
        count(&store, "SELECT COUNT(*) FROM refunds").await? == report.refunds as i64,
        "refund rows"
    );
    let over_refunded = count(
        &store,
        "SELECT COUNT(*) FROM orders o WHERE
           (SELECT COALESCE(SUM(amount_minor), 0) FROM refunds r WHERE r.order_id = o.order_id) >
           (SELECT COALESCE(SUM(amount_minor), 0) FROM payments p WHERE p.order_id = o.order_id AND p.status = 'captured')",
    )
    .await?;
    ensure!(
        over_refunded == 0,
        "{over_refunded} orders refunded beyond their capture"
    );
    for problem in &report.skipped {
        ensure!(
            problem.line >= 2,
            "every skipped line has its number: {problem}"
        );
    }

    // A second run over the same file changes nothing.
    let again = import::import(
        &store,
        &rules,
        &target,
        std::fs::File::open(&path)?,
        &mut |_, _| {},
    )
    .await?;
    ensure!(
        again.orders_placed == 0
            && again.refunds == 0
            && again.orders_already_imported == report.orders_placed
            && again.refunds_already_imported == report.refunds,
        "second run: {again:?}"
    );
    ensure!(
        count(&store, "SELECT COUNT(*) FROM orders").await? == expected.invoices.len() as i64,
        "orders after the second run"
    );

    // The relay publishes what the import committed.
    let bus = testkit::bus("import-retail")?;
    bus.ensure_topics(&Topic::ALL).await?;
    let producer = bus.producer()?;
    while ingest::relay::publish_batch(&store, &producer, 1_000).await? > 0 {}
    let consumer = bus.consumer("check-import", &[Topic::Orders], Arc::new(NoHook), &[])?;
    let mut placed = 0;
    while placed < report.orders_placed {
        let record = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .with_context(|| {
                format!(
                    "{placed} of {} order.placed events arrived",
                    report.orders_placed
                )
            })??;
        let envelope = model::codec::decode(record.payload.as_deref().unwrap_or_default())?;
        if envelope.event_type() == model::EventType::OrderPlaced {
            ensure!(
                envelope.event_time < 1_291_766_400_000,
                "placed at the invoice's own time, in December 2010"
            );
            placed += 1;
        }
    }
    Ok(())
}
