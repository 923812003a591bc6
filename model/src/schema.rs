//! The Arrow schema of each topic, for the lakehouse tables and SQL.
//!
//! A topic's table has the envelope columns, then the union of the payload fields of every
//! event type on that topic (nullable, since not every type has every field). Money becomes
//! `<field>_minor` (Int64) and `<field>_currency` (Utf8); pincodes and ids are Utf8, exactly as
//! on the wire.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use crate::{Table, Topic};

/// The columns every table starts with.
pub fn envelope_fields() -> Vec<Field> {
    vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("schema_version", DataType::UInt16, false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("merchant_id", DataType::Utf8, false),
    ]
}

/// The table schema of `topic`. Dead letters are not envelopes (they may not even be JSON), so
/// their table holds the source coordinates, the reason and the original bytes instead.
pub fn for_topic(topic: Topic) -> SchemaRef {
    let mut fields = match topic {
        Topic::Dlq => vec![timestamp("dead_lettered_at")],
        Topic::Trending | Topic::ApiKeys | Topic::Logistics => Vec::new(),
        _ => envelope_fields(),
    };
    fields.extend(payload_fields(topic));
    Arc::new(Schema::new(fields))
}

/// The schema of a lakehouse table's Parquet files. The Hive partition column `event_date`
/// is not in the files; it is in the path (and the SQL layer adds it to the table).
pub fn for_table(table: Table) -> SchemaRef {
    match table {
        Table::OrderLines => {
            let mut fields = envelope_fields();
            fields.extend([
                Field::new("line_number", DataType::UInt32, false),
                utf8("order_id"),
                utf8("customer_id"),
                utf8("session_id"),
                utf8("product_id"),
                uint32("quantity"),
                int64("unit_price_minor"),
                utf8("unit_price_currency"),
                int64("line_total_minor"),
                utf8("delivery_pincode"),
                uint32("gst_bps"),
            ]);
            Arc::new(Schema::new(fields))
        }
        Table::Refunds => {
            let mut fields = envelope_fields();
            fields.extend([utf8("refund_id"), utf8("payment_id"), utf8("order_id")]);
            fields.extend(money("amount"));
            Arc::new(Schema::new(fields))
        }
        other => for_topic(other.source()),
    }
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn int64(name: &str) -> Field {
    Field::new(name, DataType::Int64, true)
}

fn uint32(name: &str) -> Field {
    Field::new(name, DataType::UInt32, true)
}

fn timestamp(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        true,
    )
}

fn money(name: &str) -> [Field; 2] {
    [
        int64(&format!("{name}_minor")),
        utf8(&format!("{name}_currency")),
    ]
}

fn string_map(name: &str) -> Field {
    let entries = Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, true),
        ])),
        false,
    );
    Field::new(name, DataType::Map(Arc::new(entries), false), true)
}

fn string_list(name: &str) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        true,
    )
}

fn order_lines() -> Field {
    let line = Field::new(
        "item",
        DataType::Struct(Fields::from(vec![
            Field::new("product_id", DataType::Utf8, false),
            Field::new("quantity", DataType::UInt32, false),
            Field::new("unit_price_minor", DataType::Int64, false),
            Field::new("unit_price_currency", DataType::Utf8, false),
        ])),
        true,
    );
    Field::new("lines", DataType::List(Arc::new(line)), true)
}

fn payload_fields(topic: Topic) -> Vec<Field> {
    let mut fields = match topic {
        Topic::Catalog => vec![
            utf8("product_id"),
            utf8("category"),
            utf8("brand"),
            utf8("title"),
            utf8("description"),
            string_map("attributes"),
            utf8("reason"),
        ],
        Topic::Inventory => vec![
            utf8("product_id"),
            utf8("warehouse_id"),
            utf8("order_id"),
            int64("delta"),
            int64("on_hand"),
            uint32("quantity"),
            timestamp("expires_at"),
            utf8("reason"),
            int64("available"),
            int64("units_sold"),
            uint32("velocity_days"),
            uint32("restock_lead_days"),
        ],
        Topic::Orders => vec![
            utf8("order_id"),
            utf8("customer_id"),
            utf8("session_id"),
            order_lines(),
            utf8("delivery_pincode"),
            utf8("payment_id"),
            utf8("warehouse_id"),
            utf8("shipment_id"),
            utf8("courier_id"),
            utf8("reason"),
            utf8("previous_pincode"),
        ],
        Topic::Payments => vec![
            utf8("payment_id"),
            utf8("order_id"),
            utf8("refund_id"),
            utf8("payout_id"),
            utf8("provider"),
            utf8("reason"),
            timestamp("period_start"),
            timestamp("period_end"),
        ],
        Topic::Shipments => vec![
            utf8("shipment_id"),
            utf8("order_id"),
            utf8("warehouse_id"),
            utf8("courier_id"),
            utf8("origin_pincode"),
            utf8("destination_pincode"),
            timestamp("promised_at"),
        ],
        Topic::Searches => vec![
            utf8("session_id"),
            utf8("customer_id"),
            utf8("query"),
            string_map("filters"),
            utf8("pincode"),
            string_list("results"),
        ],
        Topic::Clicks => vec![
            utf8("session_id"),
            utf8("customer_id"),
            utf8("product_id"),
            uint32("position"),
            utf8("query"),
            uint32("quantity"),
        ],
        Topic::Notifications => vec![
            utf8("order_id"),
            utf8("customer_id"),
            utf8("channel"),
            utf8("template"),
            utf8("text"),
            utf8("source_event_id"),
        ],
        Topic::Trending => vec![
            utf8("source_topic"),
            int64("source_partition"),
            timestamp("pane_start"),
            int64("pane_ms"),
            Field::new("is_final", DataType::Boolean, true),
            utf8("scope"),
            utf8("scope_key"),
            utf8("product_id"),
            int64("views"),
            int64("carts"),
            int64("orders"),
        ],
        Topic::Dlq => vec![
            utf8("reason"),
            utf8("reason_message"),
            utf8("stage"),
            utf8("source_topic"),
            int64("source_partition"),
            int64("source_offset"),
            Field::new("original", DataType::Binary, true),
        ],
        // The delivery network has no table: it is reference state, not history.
        Topic::Logistics => Vec::new(),
        Topic::ApiKeys => vec![
            Field::new("key_hash", DataType::Utf8, false),
            Field::new("role", DataType::Utf8, false),
            utf8("merchant_id"),
            Field::new("revoked", DataType::Boolean, false),
        ],
    };
    fields.extend(match topic {
        Topic::Catalog => money("price").to_vec(),
        Topic::Orders => [money("total"), money("refund")].concat(),
        Topic::Payments => [
            money("amount"),
            money("gross"),
            money("refunds"),
            money("fees"),
            money("net"),
        ]
        .concat(),
        _ => Vec::new(),
    });
    fields
}
