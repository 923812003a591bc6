//! `shopstream-bench finance-export`: a month of `--lines` sales lines (two per order, 10,000
//! products, 100,000 customers across every state's pincodes) built into the finance
//! export's sheets, then written as XLSX and as Parquet: the time of each step and the peak
//! RSS. The frames are made here, as the lake would hand them over, so the figures are the
//! export's own.

use std::time::Instant;

use anyhow::Result;
use jobs::finance::{FinanceConfig, Inputs, MerchantIdentity, Subject, build};
use jobs::period::Period;
use jobs::workbook;
use polars::prelude::*;

const CATEGORIES: [&str; 8] = [
    "apparel",
    "electronics",
    "grocery",
    "home",
    "beauty",
    "footwear",
    "books",
    "toys",
];

fn inputs(lines: usize, period: Period) -> Result<Inputs> {
    let places: Vec<String> = model::geo::places()
        .iter()
        .step_by(97)
        .map(|p| p.pincode.to_string())
        .collect();
    let orders = lines.div_ceil(2);
    let span = period.end_ms() - period.start_ms() - 120_000;
    let placed_at = |order: usize| period.start_ms() + (order as i64 * span) / orders as i64;
    let order_id = |order: usize| format!("o-{order:08}");
    let product = |line: usize| (line * 7919) % 10_000;
    let price = |p: usize| 10_000 + (p as i64 * 137) % 500_000;

    let mut l = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut l2 = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for line in 0..lines {
        let order = line / 2;
        let p = product(line);
        let quantity = 1 + (line % 3) as u32;
        l.0.push(placed_at(order));
        l.1.push(order_id(order));
        l.2.push((line % 2) as u32);
        l.3.push(format!("c-{:06}", order % 100_000));
        l.4.push(format!("p-{p:05}"));
        l2.0.push(quantity);
        l2.1.push(price(p));
        l2.2.push("INR");
        l2.3.push(price(p) * i64::from(quantity));
        l2.4.push(Some(if p % 2 == 0 { 500u32 } else { 1800 }));
    }
    let lines_frame = df!(
        "event_time" => l.0, "order_id" => l.1, "line_number" => l.2, "customer_id" => l.3,
        "product_id" => l.4, "quantity" => l2.0, "unit_price_minor" => l2.1,
        "unit_price_currency" => l2.2, "line_total_minor" => l2.3.clone(), "gst_bps" => l2.4,
    )?;
    let mut totals = vec![0i64; orders];
    for (line, total) in l2.3.iter().enumerate() {
        totals[line / 2] += total;
    }
    let mut o = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut p = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for order in 0..orders {
        let at = placed_at(order);
        for (kind, time, pincode, total) in [
            (
                "order.placed",
                at,
                Some(places[order % places.len()].clone()),
                Some(totals[order]),
            ),
            ("order.confirmed", at + 60_000, None, None),
        ] {
            o.0.push(time);
            o.1.push(kind);
            o.2.push(order_id(order));
            o.3.push(pincode);
            o.4.push(total);
        }
        p.0.push(at + 60_000);
        p.1.push("payment.captured");
        p.2.push(format!("pay-{order:08}"));
        p.3.push(order_id(order));
        p.4.push(Some("upi"));
        p.5.push(Some(totals[order]));
    }
    let orders_frame = df!(
        "event_time" => o.0, "event_type" => o.1, "order_id" => o.2,
        "payment_id" => vec![None::<&str>; o.4.len()], "delivery_pincode" => o.3,
        "reason" => vec![None::<&str>; o.4.len()], "total_minor" => o.4.clone(),
        "total_currency" => o.4.iter().map(|t| t.map(|_| "INR")).collect::<Vec<_>>(),
    )?;
    let n = p.0.len();
    let payments = df!(
        "event_time" => p.0, "event_type" => p.1, "payment_id" => p.2, "order_id" => p.3,
        "refund_id" => vec![None::<&str>; n], "payout_id" => vec![None::<&str>; n],
        "provider" => p.4, "reason" => vec![None::<&str>; n], "amount_minor" => p.5,
        "amount_currency" => vec![Some("INR"); n], "gross_minor" => vec![None::<i64>; n],
        "refunds_minor" => vec![None::<i64>; n], "fees_minor" => vec![None::<i64>; n],
        "net_minor" => vec![None::<i64>; n], "net_currency" => vec![None::<&str>; n],
    )?;
    let refunds = df!(
        "event_time" => Vec::<i64>::new(), "refund_id" => Vec::<&str>::new(),
        "payment_id" => Vec::<&str>::new(), "order_id" => Vec::<&str>::new(),
        "amount_minor" => Vec::<i64>::new(), "amount_currency" => Vec::<&str>::new(),
    )?;
    let shipments = df!(
        "event_time" => Vec::<i64>::new(), "event_type" => Vec::<&str>::new(),
        "shipment_id" => Vec::<&str>::new(), "order_id" => Vec::<&str>::new(),
        "courier_id" => Vec::<&str>::new(), "destination_pincode" => Vec::<&str>::new(),
        "promised_at" => Vec::<i64>::new(),
    )?;
    let catalog = df!(
        "event_time" => vec![period.start_ms() - 86_400_000; 10_000],
        "event_type" => vec!["catalog.product_upserted"; 10_000],
        "product_id" => (0..10_000).map(|p| format!("p-{p:05}")).collect::<Vec<_>>(),
        "title" => (0..10_000).map(|p| format!("Product {p}")).collect::<Vec<_>>(),
        "category" => (0..10_000).map(|p| CATEGORIES[p % 8]).collect::<Vec<_>>(),
    )?;
    Ok(Inputs {
        lines: lines_frame,
        orders: orders_frame,
        payments,
        refunds,
        shipments,
        catalog,
    })
}

pub fn run(lines: usize) -> Result<()> {
    let period = Period::parse("2026-11").map_err(anyhow::Error::msg)?;
    let made = Instant::now();
    let inputs = inputs(lines, period)?;
    println!(
        "frames: {} lines, {} order events, made in {:.2} s",
        inputs.lines.height(),
        inputs.orders.height(),
        made.elapsed().as_secs_f64()
    );
    let subject = Subject {
        merchant: "m-bench".to_owned(),
        period,
        identity: Some(MerchantIdentity {
            legal_name: "Bench Retail".to_owned(),
            gstin: "29ABCDE1234F1Z5".to_owned(),
        }),
        read_at: period.end_ms(),
    };
    let started = Instant::now();
    let export = build(&inputs, &FinanceConfig::default(), subject)?;
    let built = started.elapsed().as_secs_f64();
    drop(inputs);
    let rows: usize = export.sheets.iter().map(|s| s.frame.height()).sum();
    println!(
        "sheets built in {built:.2} s ({rows} rows over {} sheets)",
        export.sheets.len()
    );

    let dir = tempfile::tempdir()?;
    let xlsx = dir.path().join("export.xlsx");
    let started = Instant::now();
    workbook::write_xlsx(&export, &xlsx, &mut |_| {})?;
    let xlsx_s = started.elapsed().as_secs_f64();
    let sales = export
        .sheet("sales_lines")
        .ok_or_else(|| anyhow::anyhow!("no sales lines sheet"))?;
    let parquet = dir.path().join("sales_lines.parquet");
    let started = Instant::now();
    workbook::write_parquet(sales, &parquet)?;
    let parquet_s = started.elapsed().as_secs_f64();
    let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |m| m.len()) as f64 / 1e6;
    println!(
        "xlsx: {xlsx_s:.2} s ({:.1} MB, every sheet); parquet (sales lines): {parquet_s:.2} s ({:.1} MB); peak RSS {:.0} MB",
        size(&xlsx),
        size(&parquet),
        crate::search::peak_rss_mb()
    );
    println!(
        "figures: build_s={built:.2} xlsx_s={xlsx_s:.2} parquet_s={parquet_s:.2} total_s={:.2}",
        built + xlsx_s + parquet_s
    );
    Ok(())
}
