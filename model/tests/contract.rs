//! The wire contract pinned down: one golden JSON file per event type, round trips, strict
//! decoding of bad input, and Arrow schemas that cover every payload field.

#![allow(clippy::unwrap_used)] // Tests fail loudly on the first surprise; that is the point.

use std::collections::BTreeMap;
use std::path::PathBuf;

use model::calendar::{IstDate, Weekday};
use model::payload::*;
use model::{
    Currency, Envelope, Event, EventType, MerchantId, Money, Pincode, Topic, codec, schema,
};
use serde_json::{Value, json};

const T0: i64 = 1_764_547_200_000; // 2025-12-01T00:00:00Z

fn id<T: From<String>>(text: &str) -> T {
    T::from(text.to_owned())
}

fn pin(text: &str) -> Pincode {
    Pincode::parse(text).unwrap()
}

/// One hand-written example of every event type.
fn samples() -> Vec<Envelope> {
    let attrs = BTreeMap::from([("colour".to_owned(), "indigo".to_owned())]);
    let price = Money::inr(129_900);
    let line = OrderLine {
        product_id: id("p-17"),
        quantity: 2,
        unit_price: price,
        gst_bps: Some(500),
    };
    let cart = CartChanged {
        session_id: id("s-9"),
        customer_id: Some(id("c-4")),
        product_id: id("p-17"),
        quantity: 1,
    };
    let events = vec![
        Event::ProductUpserted(ProductUpserted {
            product_id: id("p-17"),
            category: "apparel".into(),
            brand: "Kalaa".into(),
            title: "Kalaa Indigo Cotton Kurta".into(),
            description: "Hand block printed, regular fit.".into(),
            attributes: attrs.clone(),
            price,
        }),
        Event::ProductDeactivated(ProductDeactivated {
            product_id: id("p-17"),
            reason: "discontinued".into(),
        }),
        Event::StockAdjusted(StockAdjusted {
            product_id: id("p-17"),
            warehouse_id: id("w-2"),
            delta: 40,
            on_hand: 52,
            reason: "receipt".into(),
        }),
        Event::StockReserved(StockReserved {
            product_id: id("p-17"),
            warehouse_id: id("w-2"),
            order_id: id("o-1"),
            quantity: 2,
            expires_at: T0 + 900_000,
        }),
        Event::StockReleased(StockReleased {
            product_id: id("p-17"),
            warehouse_id: id("w-2"),
            order_id: id("o-1"),
            quantity: 2,
            reason: ReleaseReason::PaymentFailed,
        }),
        Event::OrderPlaced(OrderPlaced {
            order_id: id("o-1"),
            customer_id: id("c-4"),
            session_id: Some(id("s-9")),
            lines: vec![line],
            delivery_pincode: pin("560034"),
            total: Money::inr(259_800),
        }),
        Event::OrderConfirmed(OrderConfirmed {
            order_id: id("o-1"),
            payment_id: id("pay-1"),
        }),
        Event::OrderPacked(OrderPacked {
            order_id: id("o-1"),
            warehouse_id: id("w-2"),
        }),
        Event::OrderShipped(OrderShipped {
            order_id: id("o-1"),
            shipment_id: id("sh-1"),
            courier_id: id("cr-3"),
        }),
        Event::OrderDelivered(OrderDelivered {
            order_id: id("o-1"),
            shipment_id: id("sh-1"),
        }),
        Event::OrderCancelled(OrderCancelled {
            order_id: id("o-1"),
            reason: "changed mind".into(),
            refund: Money::inr(181_860),
        }),
        Event::OrderFailed(OrderFailed {
            order_id: id("o-1"),
            reason: "payment_failed".into(),
        }),
        Event::PaymentCaptured(PaymentCaptured {
            payment_id: id("pay-1"),
            order_id: id("o-1"),
            amount: Money::inr(259_800),
            provider: "upi-sim".into(),
        }),
        Event::PaymentFailed(PaymentFailed {
            payment_id: id("pay-1"),
            order_id: id("o-1"),
            amount: Money::inr(259_800),
            provider: "upi-sim".into(),
            reason: "insufficient_funds".into(),
        }),
        Event::RefundIssued(RefundIssued {
            refund_id: id("rf-1"),
            payment_id: id("pay-1"),
            order_id: id("o-1"),
            amount: Money::inr(181_860),
        }),
        Event::PayoutSettled(PayoutSettled {
            payout_id: id("po-1"),
            period_start: T0,
            period_end: T0 + 86_400_000,
            gross: Money::inr(1_000_000),
            refunds: Money::inr(100_000),
            fees: Money::inr(20_000),
            net: Money::inr(880_000),
        }),
        Event::ShipmentCreated(ShipmentCreated {
            shipment_id: id("sh-1"),
            order_id: id("o-1"),
            warehouse_id: id("w-2"),
            courier_id: id("cr-3"),
            origin_pincode: pin("110001"),
            destination_pincode: pin("560034"),
            promised_at: T0 + 3 * 86_400_000,
        }),
        Event::ShipmentDelivered(ShipmentDelivered {
            shipment_id: id("sh-1"),
            order_id: id("o-1"),
        }),
        Event::SearchPerformed(SearchPerformed {
            session_id: id("s-9"),
            customer_id: None,
            query: "indigo kurta".into(),
            filters: BTreeMap::from([("size".to_owned(), "M".to_owned())]),
            pincode: Some(pin("560034")),
            results: vec![id("p-17"), id("p-3")],
        }),
        Event::ProductViewed(ProductViewed {
            session_id: id("s-9"),
            customer_id: Some(id("c-4")),
            product_id: id("p-17"),
        }),
        Event::ProductClicked(ProductClicked {
            session_id: id("s-9"),
            customer_id: Some(id("c-4")),
            product_id: id("p-17"),
            position: 0,
            query: "indigo kurta".into(),
        }),
        Event::CartAdded(cart.clone()),
        Event::CartRemoved(cart),
        Event::Wishlisted(Wishlisted {
            session_id: id("s-9"),
            customer_id: Some(id("c-4")),
            product_id: id("p-17"),
        }),
        Event::OrderAddressChanged(OrderAddressChanged {
            order_id: id("o-1"),
            previous_pincode: pin("560034"),
            delivery_pincode: pin("560095"),
        }),
        Event::NotificationSent(NotificationSent {
            order_id: id("o-1"),
            customer_id: id("c-4"),
            channel: "log".into(),
            template: "order.shipped".into(),
            text: "Your order o-1 is on its way with courier cr-3.".into(),
            source_event_id: "019ad735-aef8-7707-8707-070707070707".into(),
        }),
        Event::WarehouseUpserted(WarehouseUpserted {
            warehouse_id: id("w-2"),
            pincode: pin("110001"),
            cutoff_minute: 14 * 60,
            handling_days: 1,
            working_days: Weekday::MON_TO_SAT.to_vec(),
            holidays: vec![IstDate::parse("2026-12-25").unwrap()],
            radius_km: None,
            restock_lead_days: 5,
        }),
        Event::CourierUpserted(CourierUpserted {
            courier_id: id("cr-3"),
            name: "Dakshin Express".into(),
            speed: CourierSpeed::Standard,
            working_days: Weekday::MON_TO_SAT.to_vec(),
        }),
        Event::CoverageUpserted(
            CoverageUpserted::new(
                id("cr-3"),
                560,
                vec![CoverageEntry {
                    pincode: pin("560034"),
                    prepaid: true,
                    cash_on_delivery: true,
                    pickup: true,
                    out_of_delivery_area: false,
                }],
            )
            .unwrap(),
        ),
        Event::HolidaysSet(HolidaysSet {
            region: "IN".into(),
            dates: vec![IstDate::parse("2026-01-26").unwrap()],
        }),
        Event::StockLow(StockLow {
            product_id: id("p-17"),
            warehouse_id: id("w-2"),
            available: 6,
            units_sold: 21,
            velocity_days: 7,
            restock_lead_days: 5,
        }),
        Event::MerchantNotified(MerchantNotified {
            channel: "webhook".into(),
            template: "inventory.stock_low".into(),
            text: "Running low: p-17 has 6 left, about 2.0 days at 3.0 sold a day.".into(),
            source_event_id: "019ad735-aef8-7707-8707-070707070708".into(),
        }),
    ];
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            let time = T0 + i as i64 * 1_000;
            let event_id = uuid::Builder::from_unix_timestamp_millis(time as u64, &[7; 10]);
            Envelope::new(event_id.into_uuid(), time, MerchantId::new("m-1"), event)
        })
        .collect()
}

fn golden_path(event_type: EventType) -> PathBuf {
    // The runner's value, not the compile-time one: a target directory shared between clones
    // at different paths (as `.ci/run` allows) reuses this binary, and must read this clone's
    // files.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .join("tests/golden")
        .join(format!("{}.json", event_type.as_str()))
}

#[test]
fn samples_cover_every_event_type() {
    let covered: Vec<EventType> = samples().iter().map(Envelope::event_type).collect();
    assert_eq!(covered, EventType::ALL);
}

#[test]
fn encoding_matches_the_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for sample in samples() {
        let path = golden_path(sample.event_type());
        let encoded: Value = serde_json::from_slice(&codec::encode(&sample)).unwrap();
        if update {
            let pretty = serde_json::to_string_pretty(&encoded).unwrap() + "\n";
            std::fs::write(&path, pretty).unwrap();
        }
        let golden: Value = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display())),
        )
        .unwrap();
        assert_eq!(
            encoded,
            golden,
            "{} drifted from its golden file",
            sample.event_type()
        );
    }
}

#[test]
fn golden_files_decode_to_the_samples() {
    for sample in samples() {
        let bytes = std::fs::read(golden_path(sample.event_type())).unwrap();
        assert_eq!(codec::decode(&bytes).unwrap(), sample);
        assert_eq!(codec::decode(&codec::encode(&sample)).unwrap(), sample);
    }
}

fn order_placed_json() -> Value {
    let sample = samples()
        .into_iter()
        .find(|s| s.event_type() == EventType::OrderPlaced)
        .unwrap();
    serde_json::from_slice(&codec::encode(&sample)).unwrap()
}

fn decode_value(value: &Value) -> Result<Envelope, model::DecodeError> {
    codec::decode(value.to_string().as_bytes())
}

#[test]
fn bad_input_is_a_typed_error_never_a_panic() {
    use model::DecodeError as E;
    assert!(matches!(
        codec::decode(b"{\"event_id\": "),
        Err(E::Malformed(_))
    ));
    assert!(matches!(codec::decode(b"not json"), Err(E::Malformed(_))));
    assert!(matches!(codec::decode(b""), Err(E::Malformed(_))));

    let mut unknown_type = order_placed_json();
    unknown_type["event_type"] = json!("order.teleported");
    assert_eq!(
        decode_value(&unknown_type),
        Err(E::UnknownEventType("order.teleported".into()))
    );

    let mut missing = order_placed_json();
    missing["payload"]
        .as_object_mut()
        .unwrap()
        .remove("delivery_pincode");
    match decode_value(&missing) {
        Err(E::MissingField { context, field }) => {
            assert_eq!(
                (context.as_str(), field.as_str()),
                ("order.placed", "delivery_pincode")
            );
        }
        other => panic!("expected MissingField, got {other:?}"),
    }

    let mut envelope_missing = order_placed_json();
    envelope_missing
        .as_object_mut()
        .unwrap()
        .remove("merchant_id");
    assert!(matches!(
        decode_value(&envelope_missing),
        Err(E::MissingField { field, .. }) if field == "merchant_id"
    ));

    let mut wrong_type = order_placed_json();
    wrong_type["payload"]["lines"][0]["quantity"] = json!("two");
    assert!(matches!(
        decode_value(&wrong_type),
        Err(E::InvalidField { .. })
    ));

    let mut bad_pincode = order_placed_json();
    bad_pincode["payload"]["delivery_pincode"] = json!("012345");
    assert!(
        matches!(decode_value(&bad_pincode), Err(E::InvalidField { detail, .. }) if detail.contains("pincode"))
    );

    let mut bad_currency = order_placed_json();
    bad_currency["payload"]["total"]["currency"] = json!("rupees");
    assert!(matches!(
        decode_value(&bad_currency),
        Err(E::InvalidField { .. })
    ));

    let mut extra_field = order_placed_json();
    extra_field["payload"]["coupon"] = json!("DIWALI");
    assert!(
        matches!(decode_value(&extra_field), Err(E::InvalidField { detail, .. }) if detail.contains("coupon"))
    );

    let mut future_version = order_placed_json();
    future_version["schema_version"] = json!(2);
    assert!(matches!(
        decode_value(&future_version),
        Err(E::UnsupportedVersion { found: 2, .. })
    ));

    let mut v4_id = order_placed_json();
    v4_id["event_id"] = json!("5f0c6a1e-8f5e-4c1a-9d3b-2b7f3c9a1e00");
    assert!(matches!(decode_value(&v4_id), Err(E::InvalidField { .. })));

    let mut negative_time = order_placed_json();
    negative_time["event_time"] = json!(-5);
    assert!(matches!(
        decode_value(&negative_time),
        Err(E::InvalidField { .. })
    ));
}

#[test]
fn every_event_type_has_its_topic_and_key() {
    for sample in samples() {
        assert_eq!(sample.topic(), sample.event_type().topic());
        assert!(!sample.key().is_empty());
    }
    let placed = samples()
        .into_iter()
        .find(|s| s.event_type() == EventType::OrderPlaced)
        .unwrap();
    assert_eq!((placed.topic(), placed.key()), (Topic::Orders, "o-1"));
    let view = samples()
        .into_iter()
        .find(|s| s.event_type() == EventType::ProductViewed)
        .unwrap();
    assert_eq!((view.topic(), view.key()), (Topic::Clicks, "s-9"));
}

/// Flattens a payload's keys the way the Arrow schema names columns: money objects become
/// `<name>_minor` and `<name>_currency`; lists of order lines stay one `lines` column.
fn column_names(payload: &Value) -> Vec<String> {
    let mut names = Vec::new();
    for (key, value) in payload.as_object().unwrap() {
        match value {
            Value::Object(map) if map.contains_key("amount_minor") => {
                names.push(format!("{key}_minor"));
                names.push(format!("{key}_currency"));
            }
            _ => names.push(key.clone()),
        }
    }
    names
}

#[test]
fn each_topic_schema_has_a_column_for_every_payload_field() {
    // Only topics that fill a lakehouse table need columns (the delivery network is reference
    // state, kept on its compacted topic).
    let tabled = |topic: Topic| model::Table::ALL.iter().any(|t| t.source() == topic);
    for sample in samples().into_iter().filter(|s| tabled(s.topic())) {
        let schema = schema::for_topic(sample.topic());
        let wire: Value = serde_json::from_slice(&codec::encode(&sample)).unwrap();
        for envelope_field in [
            "event_id",
            "event_type",
            "schema_version",
            "event_time",
            "merchant_id",
        ] {
            assert!(schema.field_with_name(envelope_field).is_ok());
        }
        for column in column_names(&wire["payload"]) {
            assert!(
                schema.field_with_name(&column).is_ok(),
                "{} has no column {column} for {}",
                sample.topic(),
                sample.event_type()
            );
        }
    }
    assert!(
        schema::for_topic(Topic::Dlq)
            .field_with_name("original")
            .is_ok()
    );
}

#[test]
fn currency_other_than_inr_round_trips() {
    let mut sample = samples().remove(0);
    if let Event::ProductUpserted(product) = &mut sample.event {
        product.price = Money::new(1_999, Currency::GBP);
    }
    assert_eq!(codec::decode(&codec::encode(&sample)).unwrap(), sample);
}
