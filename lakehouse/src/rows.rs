//! Events to Arrow rows, table by table (pure).
//!
//! A [`Rows`] buffer holds one table's rows in Arrow builders laid out by the model's schema.
//! Each event type writes the columns it has by name; the rest of the row is null. Names are
//! resolved to builder slots through one hash lookup, which keeps the per-event cost at a few
//! hundred nanoseconds without a hand-written builder struct per table.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, Int64Builder, ListBuilder, MapBuilder, MapFieldNames, StringBuilder,
    StructBuilder, TimestampMillisecondBuilder, UInt16Builder, UInt32Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use model::payload::OrderLine;
use model::{Envelope, Event, Money, Pincode, ProductId, Table};

use crate::LakeError;

/// One builder per column.
enum Column {
    Utf8(StringBuilder),
    Int64(Int64Builder),
    UInt32(UInt32Builder),
    UInt16(UInt16Builder),
    Timestamp(TimestampMillisecondBuilder),
    Map(MapBuilder<StringBuilder, StringBuilder>),
    StringList(ListBuilder<StringBuilder>),
    Lines(ListBuilder<StructBuilder>),
}

impl Column {
    fn for_field(field: &Field) -> Result<Column, LakeError> {
        let unsupported = || {
            LakeError::Schema(format!(
                "column {} has type {}, which the row encoder does not write",
                field.name(),
                field.data_type()
            ))
        };
        Ok(match field.data_type() {
            DataType::Utf8 => Column::Utf8(StringBuilder::new()),
            DataType::Int64 => Column::Int64(Int64Builder::new()),
            DataType::UInt32 => Column::UInt32(UInt32Builder::new()),
            DataType::UInt16 => Column::UInt16(UInt16Builder::new()),
            DataType::Timestamp(TimeUnit::Millisecond, zone) => Column::Timestamp(
                TimestampMillisecondBuilder::new().with_timezone_opt(zone.clone()),
            ),
            DataType::Map(entries, _) => {
                let DataType::Struct(kv) = entries.data_type() else {
                    return Err(unsupported());
                };
                let names = MapFieldNames {
                    entry: entries.name().clone(),
                    key: kv[0].name().clone(),
                    value: kv[1].name().clone(),
                };
                Column::Map(
                    MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new())
                        .with_values_field(Arc::clone(&kv[1])),
                )
            }
            DataType::List(item) if item.data_type() == &DataType::Utf8 => Column::StringList(
                ListBuilder::new(StringBuilder::new()).with_field(Arc::clone(item)),
            ),
            DataType::List(item) => {
                let DataType::Struct(fields) = item.data_type() else {
                    return Err(unsupported());
                };
                if fields.len() != 4 {
                    return Err(unsupported());
                }
                let builders: Vec<Box<dyn ArrayBuilder>> = vec![
                    Box::new(StringBuilder::new()),
                    Box::new(UInt32Builder::new()),
                    Box::new(Int64Builder::new()),
                    Box::new(StringBuilder::new()),
                ];
                Column::Lines(
                    ListBuilder::new(StructBuilder::new(fields.clone(), builders))
                        .with_field(Arc::clone(item)),
                )
            }
            _ => return Err(unsupported()),
        })
    }

    fn append_null(&mut self) {
        match self {
            Column::Utf8(b) => b.append_null(),
            Column::Int64(b) => b.append_null(),
            Column::UInt32(b) => b.append_null(),
            Column::UInt16(b) => b.append_null(),
            Column::Timestamp(b) => b.append_null(),
            Column::Map(b) => {
                // A null map still needs its (empty) entries closed.
                let _ = b.append(false);
            }
            Column::StringList(b) => b.append_null(),
            Column::Lines(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Utf8(b) => Arc::new(b.finish()),
            Column::Int64(b) => Arc::new(b.finish()),
            Column::UInt32(b) => Arc::new(b.finish()),
            Column::UInt16(b) => Arc::new(b.finish()),
            Column::Timestamp(b) => Arc::new(b.finish()),
            Column::Map(b) => Arc::new(b.finish()),
            Column::StringList(b) => Arc::new(b.finish()),
            Column::Lines(b) => Arc::new(b.finish()),
        }
    }
}

/// A value written into one column of the current row.
enum Value<'a> {
    Str(&'a str),
    /// Written as its six digits.
    Pin(Pincode),
    Int64(i64),
    UInt32(u32),
    UInt16(u16),
    Timestamp(i64),
    Map(&'a BTreeMap<String, String>),
    Ids(&'a [ProductId]),
    Lines(&'a [OrderLine]),
}

/// FNV-1a for the column-name lookups: names are short and trusted, and SipHash's cost showed
/// up per field.
#[derive(Debug, Clone, Copy, Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = hash;
    }
}

type Slots = HashMap<&'static str, usize, std::hash::BuildHasherDefault<Fnv>>;

/// One table's rows, not yet written.
pub struct Rows {
    table: Table,
    schema: SchemaRef,
    columns: Vec<Column>,
    slots: Slots,
    /// Which columns the current row has written.
    written: Vec<bool>,
    rows: usize,
    min_event_time: i64,
    max_event_time: i64,
    /// The first encoder mistake (a column the schema lacks, a value of the wrong type): a
    /// bug, reported by [`Rows::finish`] rather than writing a wrong file.
    mistake: Option<String>,
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows")
            .field("table", &self.table)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl Rows {
    pub fn new(table: Table) -> Result<Rows, LakeError> {
        let schema = model::schema::for_table(table);
        let columns = schema
            .fields()
            .iter()
            .map(|field| Column::for_field(field))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rows {
            table,
            written: vec![false; columns.len()],
            slots: Slots::default(),
            columns,
            schema,
            rows: 0,
            min_event_time: i64::MAX,
            max_event_time: i64::MIN,
            mistake: None,
        })
    }

    pub fn table(&self) -> Table {
        self.table
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Earliest and latest event time among the rows, UTC ms.
    pub fn event_time_range(&self) -> Option<(i64, i64)> {
        (self.rows > 0).then_some((self.min_event_time, self.max_event_time))
    }

    /// Appends the rows `envelope` makes in this table: none when it is not this table's kind
    /// of event, several for an order's lines.
    pub fn push(&mut self, envelope: &Envelope) {
        match (self.table, &envelope.event) {
            (Table::OrderLines, Event::OrderPlaced(order)) => {
                for (number, line) in order.lines.iter().enumerate() {
                    self.envelope(envelope);
                    self.set(
                        "line_number",
                        Value::UInt32(u32::try_from(number).unwrap_or(u32::MAX)),
                    );
                    self.set("order_id", Value::Str(order.order_id.as_str()));
                    self.set("customer_id", Value::Str(order.customer_id.as_str()));
                    if let Some(session) = &order.session_id {
                        self.set("session_id", Value::Str(session.as_str()));
                    }
                    self.set("product_id", Value::Str(line.product_id.as_str()));
                    self.set("quantity", Value::UInt32(line.quantity));
                    self.money("unit_price_minor", "unit_price_currency", &line.unit_price);
                    self.set(
                        "line_total_minor",
                        Value::Int64(line.unit_price.amount_minor * i64::from(line.quantity)),
                    );
                    self.set("delivery_pincode", Value::Pin(order.delivery_pincode));
                    if let Some(bps) = line.gst_bps {
                        self.set("gst_bps", Value::UInt32(bps));
                    }
                    self.end_row();
                }
            }
            (Table::OrderLines, _) => {}
            (Table::Refunds, Event::RefundIssued(refund)) => {
                self.envelope(envelope);
                self.set("refund_id", Value::Str(refund.refund_id.as_str()));
                self.set("payment_id", Value::Str(refund.payment_id.as_str()));
                self.set("order_id", Value::Str(refund.order_id.as_str()));
                self.money("amount_minor", "amount_currency", &refund.amount);
                self.end_row();
            }
            (Table::Refunds, _) => {}
            (table, event) if event.topic() == table.source() => {
                self.envelope(envelope);
                self.payload(event);
                self.end_row();
            }
            _ => {}
        }
    }

    fn envelope(&mut self, envelope: &Envelope) {
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = envelope.event_id.hyphenated().encode_lower(&mut id);
        self.set("event_id", Value::Str(id));
        self.set("event_type", Value::Str(envelope.event_type().as_str()));
        self.set("schema_version", Value::UInt16(envelope.schema_version));
        self.set("event_time", Value::Timestamp(envelope.event_time));
        self.set("merchant_id", Value::Str(envelope.merchant_id.as_str()));
        self.min_event_time = self.min_event_time.min(envelope.event_time);
        self.max_event_time = self.max_event_time.max(envelope.event_time);
    }

    /// The payload's fields, under the column names `model::schema` gives them.
    fn payload(&mut self, event: &Event) {
        use Value::{Str, Timestamp};
        match event {
            Event::ProductUpserted(p) => {
                self.set("product_id", Str(p.product_id.as_str()));
                self.set("category", Str(&p.category));
                self.set("brand", Str(&p.brand));
                self.set("title", Str(&p.title));
                self.set("description", Str(&p.description));
                self.set("attributes", Value::Map(&p.attributes));
                self.money("price_minor", "price_currency", &p.price);
            }
            Event::ProductDeactivated(p) => {
                self.set("product_id", Str(p.product_id.as_str()));
                self.set("reason", Str(&p.reason));
            }
            Event::StockAdjusted(p) => {
                self.set("product_id", Str(p.product_id.as_str()));
                self.set("warehouse_id", Str(p.warehouse_id.as_str()));
                self.set("delta", Value::Int64(p.delta));
                self.set("on_hand", Value::Int64(p.on_hand));
                self.set("reason", Str(&p.reason));
            }
            Event::StockReserved(p) => {
                self.set("product_id", Str(p.product_id.as_str()));
                self.set("warehouse_id", Str(p.warehouse_id.as_str()));
                self.set("order_id", Str(p.order_id.as_str()));
                self.set("quantity", Value::UInt32(p.quantity));
                self.set("expires_at", Timestamp(p.expires_at));
            }
            Event::StockReleased(p) => {
                self.set("product_id", Str(p.product_id.as_str()));
                self.set("warehouse_id", Str(p.warehouse_id.as_str()));
                self.set("order_id", Str(p.order_id.as_str()));
                self.set("quantity", Value::UInt32(p.quantity));
                self.set("reason", Str(release_reason(p.reason)));
            }
            Event::StockLow(p) => {
                self.set("product_id", Str(p.product_id.as_str()));
                self.set("warehouse_id", Str(p.warehouse_id.as_str()));
                self.set("available", Value::Int64(p.available));
                self.set("units_sold", Value::Int64(p.units_sold));
                self.set("velocity_days", Value::UInt32(p.velocity_days));
                self.set("restock_lead_days", Value::UInt32(p.restock_lead_days));
            }
            Event::OrderPlaced(p) => {
                self.set("order_id", Str(p.order_id.as_str()));
                self.set("customer_id", Str(p.customer_id.as_str()));
                if let Some(session) = &p.session_id {
                    self.set("session_id", Str(session.as_str()));
                }
                self.set("lines", Value::Lines(&p.lines));
                self.set("delivery_pincode", Value::Pin(p.delivery_pincode));
                self.money("total_minor", "total_currency", &p.total);
            }
            Event::OrderConfirmed(p) => {
                self.set("order_id", Str(p.order_id.as_str()));
                self.set("payment_id", Str(p.payment_id.as_str()));
            }
            Event::OrderPacked(p) => {
                self.set("order_id", Str(p.order_id.as_str()));
                self.set("warehouse_id", Str(p.warehouse_id.as_str()));
            }
            Event::OrderShipped(p) => {
                self.set("order_id", Str(p.order_id.as_str()));
                self.set("shipment_id", Str(p.shipment_id.as_str()));
                self.set("courier_id", Str(p.courier_id.as_str()));
            }
            Event::OrderDelivered(p) => {
                self.set("order_id", Str(p.order_id.as_str()));
                self.set("shipment_id", Str(p.shipment_id.as_str()));
            }
            Event::OrderCancelled(p) => {
                self.set("order_id", Str(p.order_id.as_str()));
                self.set("reason", Str(&p.reason));
                self.money("refund_minor", "refund_currency", &p.refund);
            }
            Event::OrderFailed(p) => {
                self.set("order_id", Str(p.order_id.as_str()));
                self.set("reason", Str(&p.reason));
            }
            Event::OrderAddressChanged(p) => {
                self.set("order_id", Str(p.order_id.as_str()));
                self.set("previous_pincode", Value::Pin(p.previous_pincode));
                self.set("delivery_pincode", Value::Pin(p.delivery_pincode));
            }
            Event::PaymentCaptured(p) => {
                self.set("payment_id", Str(p.payment_id.as_str()));
                self.set("order_id", Str(p.order_id.as_str()));
                self.set("provider", Str(&p.provider));
                self.money("amount_minor", "amount_currency", &p.amount);
            }
            Event::PaymentFailed(p) => {
                self.set("payment_id", Str(p.payment_id.as_str()));
                self.set("order_id", Str(p.order_id.as_str()));
                self.set("provider", Str(&p.provider));
                self.set("reason", Str(&p.reason));
                self.money("amount_minor", "amount_currency", &p.amount);
            }
            Event::RefundIssued(p) => {
                self.set("refund_id", Str(p.refund_id.as_str()));
                self.set("payment_id", Str(p.payment_id.as_str()));
                self.set("order_id", Str(p.order_id.as_str()));
                self.money("amount_minor", "amount_currency", &p.amount);
            }
            Event::PayoutSettled(p) => {
                self.set("payout_id", Str(p.payout_id.as_str()));
                self.set("period_start", Timestamp(p.period_start));
                self.set("period_end", Timestamp(p.period_end));
                self.money("gross_minor", "gross_currency", &p.gross);
                self.money("refunds_minor", "refunds_currency", &p.refunds);
                self.money("fees_minor", "fees_currency", &p.fees);
                self.money("net_minor", "net_currency", &p.net);
            }
            Event::ShipmentCreated(p) => {
                self.set("shipment_id", Str(p.shipment_id.as_str()));
                self.set("order_id", Str(p.order_id.as_str()));
                self.set("warehouse_id", Str(p.warehouse_id.as_str()));
                self.set("courier_id", Str(p.courier_id.as_str()));
                self.set("origin_pincode", Value::Pin(p.origin_pincode));
                self.set("destination_pincode", Value::Pin(p.destination_pincode));
                self.set("promised_at", Timestamp(p.promised_at));
            }
            Event::ShipmentDelivered(p) => {
                self.set("shipment_id", Str(p.shipment_id.as_str()));
                self.set("order_id", Str(p.order_id.as_str()));
            }
            Event::SearchPerformed(p) => {
                self.set("session_id", Str(p.session_id.as_str()));
                if let Some(customer) = &p.customer_id {
                    self.set("customer_id", Str(customer.as_str()));
                }
                self.set("query", Str(&p.query));
                self.set("filters", Value::Map(&p.filters));
                if let Some(pincode) = &p.pincode {
                    self.set("pincode", Value::Pin(*pincode));
                }
                self.set("results", Value::Ids(&p.results));
            }
            Event::ProductViewed(p) => {
                self.session(p.session_id.as_str(), p.customer_id.as_ref());
                self.set("product_id", Str(p.product_id.as_str()));
            }
            Event::ProductClicked(p) => {
                self.session(p.session_id.as_str(), p.customer_id.as_ref());
                self.set("product_id", Str(p.product_id.as_str()));
                self.set("position", Value::UInt32(p.position));
                self.set("query", Str(&p.query));
            }
            Event::CartAdded(p) | Event::CartRemoved(p) => {
                self.session(p.session_id.as_str(), p.customer_id.as_ref());
                self.set("product_id", Str(p.product_id.as_str()));
                self.set("quantity", Value::UInt32(p.quantity));
            }
            Event::Wishlisted(p) => {
                self.session(p.session_id.as_str(), p.customer_id.as_ref());
                self.set("product_id", Str(p.product_id.as_str()));
            }
            Event::NotificationSent(p) => {
                self.set("order_id", Str(p.order_id.as_str()));
                self.set("customer_id", Str(p.customer_id.as_str()));
                self.set("channel", Str(&p.channel));
                self.set("template", Str(&p.template));
                self.set("text", Str(&p.text));
                self.set("source_event_id", Str(&p.source_event_id));
            }
            Event::MerchantNotified(p) => {
                self.set("channel", Str(&p.channel));
                self.set("template", Str(&p.template));
                self.set("text", Str(&p.text));
                self.set("source_event_id", Str(&p.source_event_id));
            }
            // The delivery network lives on the compacted `logistics` topic, which fills no
            // table: the sink never reads it.
            Event::WarehouseUpserted(_)
            | Event::CourierUpserted(_)
            | Event::CoverageUpserted(_)
            | Event::HolidaysSet(_) => {}
        }
    }

    fn session(&mut self, session: &str, customer: Option<&model::CustomerId>) {
        self.set("session_id", Value::Str(session));
        if let Some(customer) = customer {
            self.set("customer_id", Value::Str(customer.as_str()));
        }
    }

    fn money(&mut self, minor: &'static str, currency: &'static str, money: &Money) {
        self.set(minor, Value::Int64(money.amount_minor));
        self.set(currency, Value::Str(money.currency.as_str()));
    }

    fn slot(&mut self, name: &'static str) -> Option<usize> {
        if let Some(&slot) = self.slots.get(name) {
            return Some(slot);
        }
        let slot = self.schema.index_of(name).ok()?;
        self.slots.insert(name, slot);
        Some(slot)
    }

    fn set(&mut self, name: &'static str, value: Value<'_>) {
        let Some(slot) = self.slot(name) else {
            self.note_mistake(format!("{} has no column {name}", self.table));
            return;
        };
        match (&mut self.columns[slot], value) {
            (Column::Utf8(b), Value::Str(v)) => b.append_value(v),
            (Column::Utf8(b), Value::Pin(pincode)) => {
                let mut digits = [b'0'; 6];
                let mut number = pincode.number();
                for digit in digits.iter_mut().rev() {
                    *digit = b'0' + (number % 10) as u8;
                    number /= 10;
                }
                b.append_value(std::str::from_utf8(&digits).unwrap_or_default());
            }
            (Column::Int64(b), Value::Int64(v)) => b.append_value(v),
            (Column::UInt32(b), Value::UInt32(v)) => b.append_value(v),
            (Column::UInt16(b), Value::UInt16(v)) => b.append_value(v),
            (Column::Timestamp(b), Value::Timestamp(v)) => b.append_value(v),
            (Column::Map(b), Value::Map(map)) => {
                for (key, value) in map {
                    b.keys().append_value(key);
                    b.values().append_value(value);
                }
                if let Err(error) = b.append(true) {
                    self.note_mistake(format!("{}.{name}: {error}", self.table));
                }
            }
            (Column::StringList(b), Value::Ids(ids)) => {
                for id in ids {
                    b.values().append_value(id.as_str());
                }
                b.append(true);
            }
            (Column::Lines(b), Value::Lines(lines)) => {
                let items = b.values();
                for line in lines {
                    append_line(items, line);
                }
                b.append(true);
            }
            _ => {
                self.note_mistake(format!("{}.{name}: value of the wrong type", self.table));
                return;
            }
        }
        self.written[slot] = true;
    }

    fn end_row(&mut self) {
        for (column, written) in self.columns.iter_mut().zip(self.written.iter_mut()) {
            if !*written {
                column.append_null();
            }
            *written = false;
        }
        self.rows += 1;
    }

    fn note_mistake(&mut self, mistake: String) {
        self.mistake.get_or_insert(mistake);
    }

    /// The rows as one batch of the table's schema; the buffer is empty again afterwards.
    pub fn finish(&mut self) -> Result<RecordBatch, LakeError> {
        if let Some(mistake) = self.mistake.take() {
            return Err(LakeError::Schema(format!("row encoder: {mistake}")));
        }
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Column::finish).collect();
        self.rows = 0;
        self.min_event_time = i64::MAX;
        self.max_event_time = i64::MIN;
        RecordBatch::try_new(Arc::clone(&self.schema), arrays)
            .map_err(|error| LakeError::Schema(format!("{}: {error}", self.table)))
    }
}

fn append_line(items: &mut StructBuilder, line: &OrderLine) {
    let fields = items.field_builders_mut();
    if let Some(b) = fields[0].as_any_mut().downcast_mut::<StringBuilder>() {
        b.append_value(line.product_id.as_str());
    }
    if let Some(b) = fields[1].as_any_mut().downcast_mut::<UInt32Builder>() {
        b.append_value(line.quantity);
    }
    if let Some(b) = fields[2].as_any_mut().downcast_mut::<Int64Builder>() {
        b.append_value(line.unit_price.amount_minor);
    }
    if let Some(b) = fields[3].as_any_mut().downcast_mut::<StringBuilder>() {
        b.append_value(line.unit_price.currency.as_str());
    }
    items.append(true);
}

fn release_reason(reason: model::payload::ReleaseReason) -> &'static str {
    use model::payload::ReleaseReason;
    match reason {
        ReleaseReason::PaymentFailed => "payment_failed",
        ReleaseReason::Expired => "expired",
        ReleaseReason::Cancelled => "cancelled",
    }
}

/// The Hive partition column every table has, from the path and not the files.
pub fn event_date_field() -> FieldRef {
    Arc::new(Field::new("event_date", DataType::Date32, false))
}

/// Days since 1970-01-01 of a UTC ms instant: the `event_date` partition it belongs to.
pub fn event_day(event_time_ms: i64) -> i32 {
    i32::try_from(event_time_ms.div_euclid(86_400_000)).unwrap_or(i32::MAX)
}

/// `YYYY-MM-DD` of a day number (proleptic Gregorian, as Hive and Arrow's Date32 count).
pub fn format_day(day: i32) -> String {
    // Howard Hinnant's civil_from_days.
    let z = i64::from(day) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day number of `YYYY-MM-DD`, or `None` when it is not such a date.
pub fn parse_day(text: &str) -> Option<i32> {
    let mut parts = text.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let day = i32::try_from(era * 146_097 + doe - 719_468).ok()?;
    (format_day(day) == text).then_some(day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn generated(count: usize) -> Vec<Envelope> {
        traffic::Generator::new(traffic::GeneratorConfig {
            seed: 7,
            // Slow enough that cancellations (up to 40 minutes after an order) and their
            // refunds fall inside a few thousand events.
            rate: 20.0,
            products: 60,
            merchants: 4,
            customers: 300,
            ..traffic::GeneratorConfig::default()
        })
        .unwrap()
        .take(count)
        .collect()
    }

    #[test]
    fn every_event_becomes_rows_of_its_tables_by_the_model_schema() {
        let mut events = generated(100_000);
        // Notifications come from the notifier, not from buyers, so the generator makes none.
        events.push(Envelope::new(
            uuid::Uuid::now_v7(),
            events[0].event_time,
            events[0].merchant_id.clone(),
            Event::NotificationSent(model::payload::NotificationSent {
                order_id: model::OrderId::new("o-1"),
                customer_id: model::CustomerId::new("c-1"),
                channel: "log".into(),
                template: "order.shipped".into(),
                text: "Your order is on its way".into(),
                source_event_id: uuid::Uuid::now_v7().to_string(),
            }),
        ));
        for table in Table::ALL {
            let mut rows = Rows::new(table).unwrap();
            for event in &events {
                rows.push(event);
            }
            let expected: usize = events
                .iter()
                .map(|event| match (table, &event.event) {
                    (Table::OrderLines, Event::OrderPlaced(order)) => order.lines.len(),
                    (Table::OrderLines, _) => 0,
                    (Table::Refunds, event) => usize::from(matches!(event, Event::RefundIssued(_))),
                    (table, event) => usize::from(event.topic() == table.source()),
                })
                .sum();
            assert!(expected > 0, "the generator made no rows for {table}");
            let batch = rows.finish().unwrap();
            assert_eq!(batch.num_rows(), expected, "{table}");
            assert_eq!(batch.schema(), model::schema::for_table(table), "{table}");
            assert!(rows.is_empty());
        }
    }

    #[test]
    fn an_order_line_carries_its_order_and_price() {
        let events = generated(5_000);
        let placed = events
            .iter()
            .find_map(|event| match &event.event {
                Event::OrderPlaced(order) => Some((event, order)),
                _ => None,
            })
            .unwrap();
        let mut rows = Rows::new(Table::OrderLines).unwrap();
        rows.push(placed.0);
        let batch = rows.finish().unwrap();
        let line = &placed.1.lines[0];
        let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
        assert_eq!(
            column("order_id").as_string::<i32>().value(0),
            placed.1.order_id.as_str()
        );
        assert_eq!(
            column("delivery_pincode").as_string::<i32>().value(0),
            placed.1.delivery_pincode.to_string()
        );
        let total = column("line_total_minor");
        let total = total.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        assert_eq!(
            total.value(0),
            line.unit_price.amount_minor * i64::from(line.quantity)
        );
    }

    #[test]
    fn parquet_files_read_back_as_written() {
        let mut rows = Rows::new(Table::Searches).unwrap();
        for event in generated(3_000) {
            rows.push(&event);
        }
        let batch = rows.finish().unwrap();
        let encoding = crate::parquet::Encoding {
            row_group_rows: 100,
            zstd_level: 1,
        };
        let bytes = encoding.encode(std::slice::from_ref(&batch)).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).unwrap();
        let metadata = reader.metadata().clone();
        assert!(metadata.num_row_groups() > 1);
        let column = metadata.row_group(0).column(0);
        assert!(column.statistics().is_some(), "statistics are written");
        assert!(matches!(
            column.compression(),
            datafusion::parquet::basic::Compression::ZSTD(_)
        ));
        let read: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
        let read = datafusion::arrow::compute::concat_batches(&batch.schema(), &read).unwrap();
        assert_eq!(read, batch);
    }

    #[test]
    fn days_are_hive_dates() {
        assert_eq!(format_day(0), "1970-01-01");
        assert_eq!(
            format_day(event_day(1_795_305_600_000 + 86_399_999)),
            "2026-11-22"
        );
        assert_eq!(event_day(-1), -1);
        for day in [-1, 0, 59, 60, 20_000, 20_779, 2_932_896] {
            assert_eq!(parse_day(&format_day(day)), Some(day));
        }
        assert_eq!(parse_day("2026-02-30"), None);
        assert_eq!(parse_day("22-11-2026"), None);
    }
}
