//! The finance export end to end: orders placed, paid, cancelled and refunded through the
//! core, carried by the broker into the lake by the sink, exported over HTTP as a workbook
//! (read back with calamine) and as Parquet (read back with the parquet crate). Its totals
//! equal what the core answered when it priced each order; another shop's key, a storefront
//! key and no key are refused; bad periods and formats are named.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use calamine::{Data, Reader, Xlsx, open_workbook};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use ingest::service::CoreConfig;
use jobs::JobsConfig;
use jobs::finance::MerchantIdentity;
use jobs::period::Period;
use reqwest::Method as M;
use runtime::supervisor::{self, StageList};
use serde_json::{Value, json};
use testkit::api::Client;
use testkit::core::start_core;

async fn start_exports(
    bus: Arc<bus::Bus>,
    lake: &lakehouse::LakeConfig,
) -> Result<supervisor::Running> {
    let mut config = JobsConfig::default();
    config.finance.merchants.insert(
        "m-1".to_owned(),
        MerchantIdentity {
            legal_name: "Kalaa Crafts".to_owned(),
            gstin: "29ABCDE1234F1Z5".to_owned(),
        },
    );
    config.rate_limit.burst = 100.0;
    let files = Arc::new(lakehouse::read::CommittedFiles::new(lake.storage()?));
    let mut list = StageList::default();
    let token = tokio_util::sync::CancellationToken::new();
    let (keys_stage, keys) = runtime::keys::stage(bus, token.clone());
    list.push(keys_stage, token);
    list.add("finance exports", |token| async move {
        Ok::<_, std::convert::Infallible>(jobs::stage(config, files, keys, token))
    })
    .await?;
    Ok(supervisor::spawn_local(list).await?)
}

/// Places an order of `quantity` x `product` for `merchant` to `pincode`; returns its id and
/// the core's totals.
async fn order(
    client: &Client,
    storefront: &str,
    merchant: &str,
    product: &str,
    quantity: u32,
    pincode: &str,
    key: &str,
) -> Result<(String, Value)> {
    let placed = client
        .ok(
            M::POST,
            "/v1/orders",
            storefront,
            Some(json!({
                "merchant_id": merchant, "customer_id": format!("c-{key}"), "session_id": null,
                "delivery_pincode": pincode, "currency": "INR",
                "lines": [{"product_id": product, "quantity": quantity}]
            })),
            &[("Idempotency-Key", key)],
        )
        .await?;
    let id = placed["order_id"].as_str().context("order_id")?.to_owned();
    client
        .ok(
            M::POST,
            &format!("/v1/orders/{id}/pay"),
            storefront,
            None,
            &[],
        )
        .await?;
    Ok((id, placed["totals"].clone()))
}

fn minor(value: &Value) -> i64 {
    value["amount_minor"].as_i64().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_exports_as_a_workbook_whose_totals_are_what_the_core_charged() -> Result<()> {
    let bus = testkit::bus("finance-export")?;
    let core = start_core(Arc::clone(&bus), CoreConfig::default()).await?;
    let lake_dir = tempfile::tempdir()?;
    let lake = testkit::lake::sink_config(lake_dir.path());
    let sink = testkit::lake::start_sink(&lake, &bus);
    let exports = start_exports(Arc::clone(&bus), &lake).await?;
    let client = Client::new(&core);
    let admin = core.admin_key.clone();
    let m1 = testkit::api::merchant(&client, &admin, "m-1").await?;
    let m2 = testkit::api::merchant(&client, &admin, "m-2").await?;
    let storefront = testkit::api::storefront(&client, &admin).await?;
    testkit::api::listed(&client, &m1, "p-kurta", None, 100).await?;
    testkit::api::listed(&client, &m2, "p-other", None, 100).await?;
    client
        .ok(
            M::PUT,
            "/v1/products/p-phone",
            &m1,
            Some(json!({
                "category": "electronics", "brand": "Acme", "title": "Phone",
                "price": {"amount_minor": 1_180_000, "currency": "INR"}
            })),
            &[],
        )
        .await?;
    client
        .ok(
            M::POST,
            "/v1/products/p-phone/stock",
            &m1,
            Some(json!({"delta": 10, "reason": "receipt"})),
            &[],
        )
        .await?;

    // Karnataka (the merchant's GSTIN state), Delhi, and one cancelled after payment.
    let (_, kurtas) = order(&client, &storefront, "m-1", "p-kurta", 2, "560034", "f-1").await?;
    let (_, phone) = order(&client, &storefront, "m-1", "p-phone", 1, "110001", "f-2").await?;
    let (cancelled, third) =
        order(&client, &storefront, "m-1", "p-kurta", 1, "560034", "f-3").await?;
    order(&client, &storefront, "m-2", "p-other", 1, "560034", "f-4").await?;
    client
        .ok(
            M::POST,
            &format!("/v1/orders/{cancelled}/cancel"),
            &storefront,
            Some(json!({"reason": "ordered twice"})),
            &[],
        )
        .await?;
    let charged: Vec<&Value> = vec![&kurtas, &phone, &third];
    let gross: i64 = charged.iter().map(|t| minor(&t["total"])).sum();
    let gst: i64 = charged.iter().map(|t| minor(&t["gst"])).sum();
    let taxable: i64 = charged.iter().map(|t| minor(&t["taxable"])).sum();

    testkit::wait_until(Duration::from_secs(60), "the lake holds the refund", || {
        let lake = lake.clone();
        async move {
            let refunds = testkit::lake::query_int(&lake, "SELECT count(*) FROM refunds").await?;
            let confirmed = testkit::lake::query_int(
                &lake,
                "SELECT count(*) FROM orders WHERE event_type = 'order.confirmed'",
            )
            .await?;
            Ok((refunds == 1 && confirmed == 4).then_some(()))
        }
    })
    .await?;

    let period = Period::of_instant(runtime::now_ms());
    let http = reqwest::Client::new();
    let base = format!("http://{}", exports.addr);
    let get = |key: Option<&str>, query: String| {
        let mut request = http.get(format!("{base}{query}"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            anyhow::Ok((status, content_type, response.bytes().await?))
        }
    };

    let path = format!("/v1/merchants/m-1/exports?period={period}");
    let (status, content_type, body) = get(Some(&m1), path.clone()).await?;
    ensure!(status == 200, "{status} {}", String::from_utf8_lossy(&body));
    ensure!(content_type.contains("spreadsheetml"), "{content_type}");
    let dir = tempfile::tempdir()?;
    let xlsx = dir.path().join("export.xlsx");
    std::fs::File::create(&xlsx)?.write_all(&body)?;
    let mut book: Xlsx<_> = open_workbook(&xlsx)?;
    let sales = book.worksheet_range("Sales lines")?;
    let header: Vec<String> = sales
        .rows()
        .next()
        .context("header")?
        .iter()
        .map(|c| c.to_string())
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{name} in {header:?}"))
    };
    let rows: Vec<&[Data]> = sales.rows().skip(1).collect();
    ensure!(rows.len() == 3, "three lines of m-1, none of m-2: {rows:?}");
    let money = |row: &[Data], name: &str| -> Result<i64> {
        match &row[column(name)?] {
            Data::Float(f) => Ok((f * 100.0).round() as i64),
            other => anyhow::bail!("{name} is {other:?}"),
        }
    };
    let fy = period.financial_year();
    let mut sums: BTreeMap<&str, i64> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        ensure!(
            row[column("Invoice number")?].to_string()
                == format!("INV/{:02}{:02}/{:06}", fy % 100, (fy + 1) % 100, i + 1),
            "{row:?}"
        );
        for name in ["Line total", "Taxable value", "CGST", "SGST/UTGST", "IGST"] {
            *sums.entry(name).or_default() += money(row, name)?;
        }
    }
    ensure!(sums["Line total"] == gross, "{sums:?} vs gross {gross}");
    ensure!(
        sums["Taxable value"] == taxable,
        "{sums:?} vs taxable {taxable}"
    );
    ensure!(
        sums["CGST"] + sums["SGST/UTGST"] + sums["IGST"] == gst,
        "{sums:?} vs GST {gst}"
    );
    // Delhi's phone is inter-state; the kurtas stay in Karnataka.
    ensure!(sums["IGST"] == minor(&phone["gst"]), "{sums:?}");
    ensure!(
        rows[1][column("Place of supply")?] == Data::String("07-Delhi".to_owned()),
        "{:?}",
        rows[1]
    );
    let refunds = book.worksheet_range("Refunds")?;
    ensure!(refunds.height() == 2, "one refund: {refunds:?}");
    let reconciliation = book.worksheet_range("Reconciliation")?;
    for row in reconciliation.rows().skip(1) {
        if let Data::Float(difference) = &row[4] {
            ensure!(*difference == 0.0, "does not tie: {row:?}");
        }
    }

    // openpyxl and pandas read the same workbook: the same sums, formats people expect.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/finance_readers.py");
    let read = tokio::task::spawn_blocking({
        let xlsx = xlsx.clone();
        move || -> Result<Value> {
            let python = testkit::tools::spreadsheet_python()?;
            let out = testkit::tools::run_output(
                std::process::Command::new(python).arg(script).arg(&xlsx),
            )?;
            Ok(serde_json::from_str(&out)?)
        }
    })
    .await??;
    ensure!(read["paise"]["Line total"] == gross, "{read}");
    ensure!(read["paise"]["Taxable value"] == taxable, "{read}");
    ensure!(read["paise"]["IGST"] == minor(&phone["gst"]), "{read}");
    ensure!(
        read["header_bold"] == true
            && read["frozen"] == "A2"
            && read["dates_are_dates"] == true
            && read["autofilter"]
                .as_str()
                .is_some_and(|r| r.starts_with("A1:")),
        "{read}"
    );
    ensure!(
        read["amount_format"]
            .as_str()
            .is_some_and(|f| f.contains('₹')),
        "{read}"
    );
    ensure!(read["pandas_rows"]["Sales lines"] == 3, "{read}");
    ensure!(
        read["sheets"].as_array().is_some_and(|s| s.len() == 10),
        "{read}"
    );

    // One sheet as Parquet: the invoices, amounts in minor units.
    let (status, content_type, body) =
        get(Some(&m1), format!("{path}&format=parquet&sheet=invoices")).await?;
    ensure!(
        status == 200 && content_type == "application/vnd.apache.parquet",
        "{status} {content_type}"
    );
    let reader = ParquetRecordBatchReaderBuilder::try_new(body)?.build()?;
    let mut invoices = 0;
    for batch in reader {
        invoices += batch?.num_rows();
    }
    ensure!(invoices == 3, "{invoices} invoices");

    // A month without sales is a workbook with zero totals, not an error.
    let earlier = "/v1/merchants/m-1/exports?period=2020-01".to_owned();
    let (status, _, body) = get(Some(&m1), earlier).await?;
    ensure!(status == 200, "{status} {}", String::from_utf8_lossy(&body));

    // Another shop's key, a storefront key and no key; an admin may; an unknown shop is 404.
    for (key, want, code) in [
        (Some(m2.as_str()), 403, "forbidden"),
        (Some(storefront.as_str()), 403, "forbidden"),
        (None, 401, "unauthorized"),
    ] {
        for query in [path.clone(), format!("{path}&format=parquet")] {
            let (status, _, body) = get(key, query.clone()).await?;
            let body: Value = serde_json::from_slice(&body)?;
            ensure!(
                status == want && body["error"]["code"] == code,
                "{query}: {status} {body}"
            );
            ensure!(!body.to_string().contains("p-kurta"), "{body}");
        }
    }
    let (status, _, _) = get(Some(&admin), path.clone()).await?;
    ensure!(status == 200, "admin: {status}");
    let (status, _, body) = get(
        Some(&admin),
        format!("/v1/merchants/m-404/exports?period={period}"),
    )
    .await?;
    ensure!(status == 404, "{status} {}", String::from_utf8_lossy(&body));

    // Bad input is named.
    let next = period.next();
    for (query, needle) in [
        ("/v1/merchants/m-1/exports".to_owned(), "period is required"),
        (
            "/v1/merchants/m-1/exports?period=2026-13".to_owned(),
            "YYYY-MM",
        ),
        (
            format!("/v1/merchants/m-1/exports?period={next}"),
            "has not begun",
        ),
        (format!("{path}&format=csv"), "xlsx or parquet"),
        (format!("{path}&sheet=invoices"), "format=parquet"),
        (format!("{path}&format=parquet&sheet=nope"), "is not one of"),
        (format!("{path}&colour=red"), "unknown parameter"),
    ] {
        let (status, _, body) = get(Some(&m1), query.clone()).await?;
        let body: Value = serde_json::from_slice(&body)?;
        ensure!(
            status == 400
                && body["error"]["code"] == "invalid_parameter"
                && body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(needle)),
            "{query}: {status} {body}"
        );
    }

    exports.stop().await?;
    sink.stop().await?;
    core.running.stop().await?;
    Ok(())
}
