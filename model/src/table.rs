//! The lakehouse tables: which topic fills each one and what one row is.

use std::fmt;

use crate::Topic;

/// A table of the lakehouse. Most hold one row per event of their topic; `order_lines` and
/// `refunds` are cut from the orders and payments topics so analysts need not unnest or
/// filter. The current catalog is a view over `catalog_history`, not a table of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Every order event (placed, confirmed, ..., address changed).
    Orders,
    /// One row per line of each `order.placed`.
    OrderLines,
    /// Every payment event: captures, failures, refunds and payouts.
    Payments,
    /// One row per `payment.refund_issued`.
    Refunds,
    Shipments,
    Inventory,
    /// Every product upsert and deactivation, in order.
    CatalogHistory,
    Searches,
    Clicks,
    Notifications,
}

impl Table {
    pub const ALL: [Table; 10] = [
        Table::Orders,
        Table::OrderLines,
        Table::Payments,
        Table::Refunds,
        Table::Shipments,
        Table::Inventory,
        Table::CatalogHistory,
        Table::Searches,
        Table::Clicks,
        Table::Notifications,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Orders => "orders",
            Table::OrderLines => "order_lines",
            Table::Payments => "payments",
            Table::Refunds => "refunds",
            Table::Shipments => "shipments",
            Table::Inventory => "inventory",
            Table::CatalogHistory => "catalog_history",
            Table::Searches => "searches",
            Table::Clicks => "clicks",
            Table::Notifications => "notifications",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|table| table.name() == name)
    }

    /// The topic whose records fill the table.
    pub fn source(self) -> Topic {
        match self {
            Table::Orders | Table::OrderLines => Topic::Orders,
            Table::Payments | Table::Refunds => Topic::Payments,
            Table::Shipments => Topic::Shipments,
            Table::Inventory => Topic::Inventory,
            Table::CatalogHistory => Topic::Catalog,
            Table::Searches => Topic::Searches,
            Table::Clicks => Topic::Clicks,
            Table::Notifications => Topic::Notifications,
        }
    }

    /// The tables `topic` fills.
    pub fn fed_by(topic: Topic) -> impl Iterator<Item = Table> {
        Table::ALL
            .into_iter()
            .filter(move |table| table.source() == topic)
    }

    /// The columns that, with `event_id`, make a row unique: a replay that wrote a row twice
    /// would show up as a repeat of these.
    pub fn row_key(self) -> &'static [&'static str] {
        match self {
            Table::OrderLines => &["event_id", "line_number"],
            _ => &["event_id"],
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
