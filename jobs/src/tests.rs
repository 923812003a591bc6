//! The finance export on hand-made frames: invoice numbering across the financial year, GST
//! split by the place of supply, the reconciliation, and the workbook read back by calamine.

use calamine::{Data, Reader, Xlsx, open_workbook};
use model::calendar::IstDate;
use polars::prelude::*;

use crate::finance::{Export, FinanceConfig, Inputs, MerchantIdentity, Subject, build};
use crate::period::Period;
use crate::workbook;

fn at(y: i32, m: u32, d: u32, hour: i64) -> i64 {
    IstDate::from_ymd(y, m, d).unwrap().start_utc_ms() + hour * 3_600_000
}

type LineRow<'a> = (i64, &'a str, u32, &'a str, &'a str, u32, i64, Option<u32>);

fn lines(rows: &[LineRow]) -> DataFrame {
    df!(
        "event_time" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        "order_id" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        "line_number" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        "customer_id" => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        "product_id" => rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        "quantity" => rows.iter().map(|r| r.5).collect::<Vec<_>>(),
        "unit_price_minor" => rows.iter().map(|r| r.6).collect::<Vec<_>>(),
        "unit_price_currency" => rows.iter().map(|_| "INR").collect::<Vec<_>>(),
        "line_total_minor" => rows.iter().map(|r| r.6 * i64::from(r.5)).collect::<Vec<_>>(),
        "gst_bps" => rows.iter().map(|r| r.7).collect::<Vec<_>>(),
    )
    .unwrap()
}

type OrderRow<'a> = (
    i64,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<i64>,
);

fn orders(rows: &[OrderRow]) -> DataFrame {
    df!(
        "event_time" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        "event_type" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        "order_id" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        "payment_id" => rows.iter().map(|_| None::<&str>).collect::<Vec<_>>(),
        "delivery_pincode" => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        "reason" => rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        "total_minor" => rows.iter().map(|r| r.5).collect::<Vec<_>>(),
        "total_currency" => rows.iter().map(|r| r.5.map(|_| "INR")).collect::<Vec<_>>(),
    )
    .unwrap()
}

fn inputs() -> Inputs {
    let catalog = df!(
        "event_time" => [at(2026, 1, 1, 0), at(2026, 1, 1, 0), at(2026, 1, 1, 0)],
        "event_type" => ["catalog.product_upserted"; 3],
        "product_id" => ["p-kurta", "p-phone", "p-book"],
        "title" => ["Indigo Kurta", "Phone", "A Book"],
        "category" => ["apparel", "electronics", "books"],
    )
    .unwrap();
    let lines = lines(&[
        // October: the financial year's first invoice.
        (
            at(2026, 10, 20, 10),
            "o-0",
            0,
            "c-1",
            "p-kurta",
            1,
            105_000,
            Some(500),
        ),
        // November, Karnataka (intra-state for a Karnataka GSTIN).
        (
            at(2026, 11, 3, 10),
            "o-1",
            0,
            "c-1",
            "p-kurta",
            2,
            105_000,
            Some(500),
        ),
        // A line placed before the rate was on the event: books, 0 % by configuration.
        (
            at(2026, 11, 3, 10),
            "o-1",
            1,
            "c-1",
            "p-book",
            1,
            40_000,
            None,
        ),
        // November, Delhi (inter-state), then cancelled and refunded.
        (
            at(2026, 11, 5, 9),
            "o-2",
            0,
            "c-2",
            "p-phone",
            1,
            1_180_000,
            Some(1800),
        ),
        // Placed, never paid: no invoice.
        (
            at(2026, 11, 6, 9),
            "o-3",
            0,
            "c-3",
            "p-phone",
            1,
            1_180_000,
            Some(1800),
        ),
    ]);
    let orders = orders(&[
        (
            at(2026, 10, 20, 10),
            "order.placed",
            "o-0",
            Some("560034"),
            None,
            Some(105_000),
        ),
        (
            at(2026, 10, 20, 11),
            "order.confirmed",
            "o-0",
            None,
            None,
            None,
        ),
        (
            at(2026, 11, 3, 10),
            "order.placed",
            "o-1",
            Some("560034"),
            None,
            Some(250_000),
        ),
        (
            at(2026, 11, 3, 11),
            "order.confirmed",
            "o-1",
            None,
            None,
            None,
        ),
        (
            at(2026, 11, 5, 9),
            "order.placed",
            "o-2",
            Some("560034"),
            None,
            Some(1_180_000),
        ),
        // Moved to Delhi before it shipped: Delhi is the place of supply.
        (
            at(2026, 11, 5, 9),
            "order.address_changed",
            "o-2",
            Some("110001"),
            None,
            None,
        ),
        (
            at(2026, 11, 5, 10),
            "order.confirmed",
            "o-2",
            None,
            None,
            None,
        ),
        (
            at(2026, 11, 7, 10),
            "order.cancelled",
            "o-2",
            None,
            Some("changed my mind"),
            None,
        ),
        (
            at(2026, 11, 6, 9),
            "order.placed",
            "o-3",
            Some("560034"),
            None,
            Some(1_180_000),
        ),
    ]);
    let payments = df!(
        "event_time" => [at(2026, 11, 3, 11), at(2026, 11, 5, 10), at(2026, 11, 7, 10), at(2026, 11, 30, 12)],
        "event_type" => ["payment.captured", "payment.captured", "payment.refund_issued", "payment.payout_settled"],
        "payment_id" => [Some("pay-1"), Some("pay-2"), Some("pay-2"), None],
        "order_id" => [Some("o-1"), Some("o-2"), Some("o-2"), None],
        "refund_id" => [None, None, Some("r-1"), None],
        "payout_id" => [None, None, None, Some("po-1")],
        "provider" => [Some("upi"), Some("card"), None, None],
        "reason" => [None::<&str>, None, None, None],
        "amount_minor" => [Some(250_000i64), Some(1_180_000), Some(1_180_000), None],
        "amount_currency" => [Some("INR"), Some("INR"), Some("INR"), None],
        "gross_minor" => [None, None, None, Some(1_430_000i64)],
        "refunds_minor" => [None, None, None, Some(1_180_000i64)],
        "fees_minor" => [None, None, None, Some(5_000i64)],
        "net_minor" => [None, None, None, Some(245_000i64)],
        "net_currency" => [None, None, None, Some("INR")],
    )
    .unwrap();
    let refunds = df!(
        "event_time" => [at(2026, 11, 7, 10)],
        "refund_id" => ["r-1"],
        "payment_id" => ["pay-2"],
        "order_id" => ["o-2"],
        "amount_minor" => [1_180_000i64],
        "amount_currency" => ["INR"],
    )
    .unwrap();
    let shipments = df!(
        "event_time" => [at(2026, 11, 4, 10), at(2026, 11, 6, 15)],
        "event_type" => ["shipment.created", "shipment.delivered"],
        "shipment_id" => ["s-1", "s-1"],
        "order_id" => ["o-1", "o-1"],
        "courier_id" => [Some("k-1"), None],
        "destination_pincode" => [Some("560034"), None],
        "promised_at" => [Some(at(2026, 11, 7, 0)), None],
    )
    .unwrap();
    Inputs {
        lines,
        orders,
        payments,
        refunds,
        shipments,
        catalog,
    }
}

fn november(identity: bool) -> Export {
    let subject = Subject {
        merchant: "m-1".to_owned(),
        period: Period::parse("2026-11").unwrap(),
        identity: identity.then(|| MerchantIdentity {
            legal_name: "Kalaa Crafts Pvt Ltd".to_owned(),
            gstin: "29ABCDE1234F1Z5".to_owned(),
        }),
        read_at: at(2026, 12, 2, 12),
    };
    build(&inputs(), &FinanceConfig::default(), subject).unwrap()
}

fn column_i64(export: &Export, sheet: &str, column: &str) -> Vec<Option<i64>> {
    let frame = &export.sheet(sheet).unwrap().frame;
    frame
        .column(column)
        .unwrap()
        .cast(&DataType::Int64)
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .collect()
}

fn column_str(export: &Export, sheet: &str, column: &str) -> Vec<Option<String>> {
    let frame = &export.sheet(sheet).unwrap().frame;
    frame
        .column(column)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.map(str::to_owned))
        .collect()
}

#[test]
fn invoices_number_on_from_the_year_and_gst_splits_by_place_of_supply() {
    let export = november(true);
    let numbers = column_str(&export, "Sales lines", "invoice_number");
    assert_eq!(
        numbers,
        ["INV/2627/000002", "INV/2627/000002", "INV/2627/000003"].map(|n| Some(n.to_owned()))
    );
    // o-1 in Karnataka: 2 x 1,050.00 at 5 % is 2,000.00 + 100.00, half central, half state;
    // the book is 0 %. o-2 moved to Delhi: 11,800.00 at 18 % is 10,000.00 + 1,800.00 IGST.
    assert_eq!(
        column_i64(&export, "Sales lines", "taxable_value_minor"),
        [Some(200_000), Some(40_000), Some(1_000_000)]
    );
    assert_eq!(
        column_i64(&export, "Sales lines", "cgst_minor"),
        [Some(5_000), Some(0), Some(0)]
    );
    assert_eq!(
        column_i64(&export, "Sales lines", "sgst_utgst_minor"),
        [Some(5_000), Some(0), Some(0)]
    );
    assert_eq!(
        column_i64(&export, "Sales lines", "igst_minor"),
        [Some(0), Some(0), Some(180_000)]
    );
    assert_eq!(
        column_str(&export, "Sales lines", "place_of_supply"),
        ["29-Karnataka", "29-Karnataka", "07-Delhi"].map(|p| Some(p.to_owned()))
    );
    assert_eq!(
        column_i64(&export, "Invoices", "invoice_total_minor"),
        [Some(250_000), Some(1_180_000)]
    );
    // The B2C summary by place and rate adds up to the lines.
    let b2c_total: i64 = column_i64(&export, "Tax summary (B2C)", "total_value_minor")
        .into_iter()
        .flatten()
        .sum();
    assert_eq!(b2c_total, 1_430_000);
    assert_eq!(
        column_str(&export, "Deliveries", "against_promise"),
        [Some("on time".to_owned())]
    );
    assert_eq!(
        column_str(&export, "Refunds", "reason"),
        [Some("changed my mind".to_owned())]
    );
    // The phone's refund reverses its whole IGST.
    assert_eq!(
        column_i64(&export, "Refunds", "igst_minor"),
        [Some(180_000)]
    );
    assert_eq!(
        column_i64(&export, "Refunds", "taxable_value_minor"),
        [Some(1_000_000)]
    );
    // The 0 % book is nil rated; the rest are small B2C supplies.
    let tables = column_str(&export, "Tax summary (B2C)", "gstr1_table");
    assert_eq!(
        tables,
        ["B2CS", "B2CS", "nil rated"].map(|t| Some(t.to_owned()))
    );

    // Every check ties; the line without a recorded rate is listed, not hidden.
    let checks = column_str(&export, "Reconciliation", "check");
    let differences = column_i64(&export, "Reconciliation", "difference_minor");
    for (check, difference) in checks.iter().zip(&differences) {
        if let Some(difference) = difference {
            assert_eq!(*difference, 0, "{check:?} does not tie");
        }
    }
    assert!(
        checks
            .iter()
            .any(|c| c.as_deref() == Some("GST rate recorded")),
        "{checks:?}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c.as_deref() == Some("payout = gross - refunds - fees"))
    );
}

#[test]
fn an_inter_state_invoice_above_a_lakh_is_b2c_large() {
    let mut inputs = inputs();
    inputs.lines = lines(&[(
        at(2026, 11, 9, 10),
        "o-9",
        0,
        "c-9",
        "p-phone",
        10,
        1_180_000,
        Some(1800),
    )]);
    inputs.orders = orders(&[
        (
            at(2026, 11, 9, 10),
            "order.placed",
            "o-9",
            Some("110001"),
            None,
            Some(11_800_000),
        ),
        (
            at(2026, 11, 9, 11),
            "order.confirmed",
            "o-9",
            None,
            None,
            None,
        ),
    ]);
    let subject = Subject {
        merchant: "m-1".to_owned(),
        period: Period::parse("2026-11").unwrap(),
        identity: Some(MerchantIdentity {
            legal_name: "Kalaa Crafts Pvt Ltd".to_owned(),
            gstin: "29ABCDE1234F1Z5".to_owned(),
        }),
        read_at: at(2026, 12, 2, 12),
    };
    let export = build(&inputs, &FinanceConfig::default(), subject).unwrap();
    assert_eq!(
        column_str(&export, "Tax summary (B2C)", "gstr1_table"),
        [Some("B2CL".to_owned())]
    );
}

#[test]
fn without_a_gstin_every_supply_is_inter_state_and_the_summary_says_so() {
    let export = november(false);
    assert_eq!(
        column_i64(&export, "Sales lines", "cgst_minor"),
        [Some(0), Some(0), Some(0)]
    );
    assert_eq!(
        column_i64(&export, "Sales lines", "igst_minor"),
        [Some(10_000), Some(0), Some(180_000)]
    );
    let values = column_str(&export, "Summary", "value");
    assert!(
        values.iter().flatten().any(|v| v.contains("inter-state")),
        "{values:?}"
    );
}

#[test]
fn a_month_without_sales_is_a_valid_export_with_zero_totals() {
    let subject = Subject {
        merchant: "m-1".to_owned(),
        period: Period::parse("2026-08").unwrap(),
        identity: None,
        read_at: at(2026, 12, 2, 12),
    };
    let export = build(&inputs(), &FinanceConfig::default(), subject).unwrap();
    assert_eq!(export.sheet("sales_lines").unwrap().frame.height(), 0);
    let dir = tempfile::tempdir().unwrap();
    let written = workbook::write_all(&export, dir.path(), &mut |_| {}).unwrap();
    assert_eq!(written.len(), 1 + export.sheets.len());
    let mut book: Xlsx<_> = open_workbook(&written[0]).unwrap();
    let sales = book.worksheet_range("Sales lines").unwrap();
    assert_eq!(sales.height(), 1, "a header and no rows");
    let summary = book.worksheet_range("Summary").unwrap();
    let gross = summary
        .rows()
        .find(|row| row.first() == Some(&Data::String("gross sales".to_owned())))
        .expect("a gross sales row even without sales");
    assert_eq!(gross[2], Data::Float(0.0));
}

#[test]
fn the_workbook_reads_back_with_dates_as_dates_and_amounts_in_rupees() {
    let export = november(true);
    let dir = tempfile::tempdir().unwrap();
    let mut seen = 0;
    let written = workbook::write_all(&export, dir.path(), &mut |rows| seen = rows).unwrap();
    assert!(written[0].ends_with("finance-m-1-2026-11.xlsx"));
    let rows: usize = export.sheets.iter().map(|s| s.frame.height()).sum();
    assert_eq!(seen, rows as u64);
    let mut book: Xlsx<_> = open_workbook(&written[0]).unwrap();
    let names = book.sheet_names();
    let expected: Vec<&str> = export.sheets.iter().map(|s| s.name).collect();
    assert_eq!(names, expected);
    let stems: Vec<String> = export.sheets.iter().map(|s| s.file_stem()).collect();
    assert_eq!(stems, crate::http::SHEET_STEMS, "the route's sheet names");
    let sales = book.worksheet_range("Sales lines").unwrap();
    assert_eq!(
        sales.get((0, 0)),
        Some(&Data::String("Invoice number".to_owned()))
    );
    assert_eq!(
        sales.get((0, 10)),
        Some(&Data::String("Taxable value".to_owned()))
    );
    assert_eq!(
        sales.get((1, 0)),
        Some(&Data::String("INV/2627/000002".to_owned()))
    );
    // 3 November 2026 (IST) as an Excel serial date.
    let Some(Data::DateTime(date)) = sales.get((1, 1)) else {
        panic!("invoice date is not a date: {:?}", sales.get((1, 1)));
    };
    let serial =
        (IstDate::from_ymd(2026, 11, 3).unwrap().start_utc_ms() + 19_800_000) / 86_400_000 + 25_569;
    assert!(
        (date.as_f64() - serial as f64).abs() < 1e-9,
        "{}",
        date.as_f64()
    );
    assert_eq!(sales.get((1, 10)), Some(&Data::Float(2_000.0)));
    let summary = book.worksheet_range("Summary").unwrap();
    let gross = summary
        .rows()
        .find(|row| row.first() == Some(&Data::String("gross sales".to_owned())))
        .expect("a gross sales row");
    assert_eq!(gross[2], Data::Float(14_300.0));
    // The Parquet twin holds the same rows, amounts in minor units.
    let twin = dir.path().join("finance-m-1-2026-11/sales_lines.parquet");
    let read = ParquetReader::new(std::fs::File::open(twin).unwrap())
        .finish()
        .unwrap();
    assert_eq!(read.height(), 3);
    let taxable: i64 = read
        .column("taxable_value_minor")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .flatten()
        .sum();
    assert_eq!(taxable, 1_240_000);
}

#[test]
fn a_sheet_longer_than_excel_allows_continues_on_a_second_sheet() {
    let rows = workbook::EXCEL_DATA_ROWS + 3;
    let frame = df!("id" => (0..rows as i64).collect::<Vec<_>>()).unwrap();
    let mut export = november(true);
    export.sheets = vec![crate::finance::Sheet {
        name: "Sales lines",
        frame,
        kinds: vec![crate::finance::Kind::Count],
    }];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.xlsx");
    workbook::write_xlsx(&export, &path, &mut |_| {}).unwrap();
    let mut book: Xlsx<_> = open_workbook(&path).unwrap();
    assert_eq!(book.sheet_names(), ["Sales lines", "Sales lines (2)"]);
    let second = book.worksheet_range("Sales lines (2)").unwrap();
    assert_eq!(second.height(), 4, "the header and the last three rows");
    assert_eq!(second.get((3, 0)), Some(&Data::Float((rows - 1) as f64)));
}

#[test]
fn periods_parse_strictly_and_know_their_financial_year() {
    let march = Period::parse("2027-03").unwrap();
    assert_eq!(march.financial_year_label(), "2026-27");
    assert_eq!(Period::parse("2026-04").unwrap().financial_year(), 2026);
    assert_eq!(march.next().to_string(), "2027-04");
    for bad in ["2026-13", "2026-1", "26-11", "2026/11", "", "2026-00"] {
        assert!(Period::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn gstins_name_their_state() {
    use crate::finance::gst::{gstin_state, place_of_supply};
    assert_eq!(gstin_state("29ABCDE1234F1Z5").unwrap(), "29-Karnataka");
    assert!(gstin_state("99ABCDE1234F1Z5").is_err());
    assert!(gstin_state("29ABC").is_err());
    assert_eq!(
        place_of_supply("Tamil Nadu").as_deref(),
        Some("33-Tamil Nadu")
    );
}
