//! The Delivery page's view: an analytics `delivery` answer in, cards, the on-time chart and
//! the tables out.

use serde_json::{Value, json};

use super::{Card, Chart, Table, chart, count, head, label_ms, share, totals};
use crate::i18n::{self, Lang};

/// The Delivery page: deliveries against promises, by courier and by destination state, and
/// the late ones.
pub fn delivery(lang: Lang, report: &Value) -> (Vec<Card>, Chart, Table, Table) {
    let total = totals(report);
    let days = |row: &Value, key: &str| {
        row.get(key)
            .and_then(Value::as_u64)
            .map_or_else(|| "–".to_owned(), |d| format!("{d} {}", lang.t("days")))
    };
    let hours = |row: &Value| format!("{:+.1} h", share(row, "mean_slack_hours"));
    let plain = |id, key, value| Card::plain(lang, id, key, value);
    let cards = vec![
        plain(
            "delivered",
            "delivered",
            i18n::count(count(total, "delivered")),
        ),
        plain(
            "on_time",
            "on_time_rate",
            i18n::percent(share(total, "on_time_rate")),
        ),
        plain("tat", "tat_p50", days(total, "tat_p50_days")),
        plain("slack", "mean_slack", hours(total)),
    ];
    let rows_of = |key: &str| {
        report
            .get(key)
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
    };
    let table = |key: &str, caption: &str, first: &str| Table {
        caption: caption.to_owned(),
        head: head(
            lang,
            &[
                first,
                "delivered",
                "on_time_rate",
                "tat_p50",
                "tat_p90",
                "mean_slack",
            ],
        ),
        rows: rows_of(key)
            .iter()
            .map(|row| {
                vec![
                    row.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    i18n::count(count(row, "delivered")),
                    i18n::percent(share(row, "on_time_rate")),
                    days(row, "tat_p50_days"),
                    days(row, "tat_p90_days"),
                    hours(row),
                ]
            })
            .collect(),
    };
    let couriers = rows_of("by_courier");
    let data = json!({
        "kind": "bars",
        "label": lang.t("on_time_rate"),
        "labels": couriers.iter().map(|r| r.get("name").and_then(Value::as_str).unwrap_or("")).collect::<Vec<_>>(),
        "values": couriers.iter().map(|r| (share(r, "on_time_rate") * 1000.0).round() / 10.0).collect::<Vec<_>>(),
    });
    let by_state = table("by_state", lang.t("by_state"), "state");
    let late = Table {
        caption: lang.t("late_shipments").to_owned(),
        head: head(
            lang,
            &["order", "courier", "state", "promised", "delivered"],
        ),
        rows: rows_of("late")
            .iter()
            .map(|row| {
                let text = |key: &str| row.get(key).and_then(Value::as_str).unwrap_or("");
                let when = |key: &str| {
                    label_ms(text(key)).map_or_else(
                        || lang.t("on_the_way").to_owned(),
                        |at| i18n::date_time(lang, at),
                    )
                };
                vec![
                    text("order_id").to_owned(),
                    text("courier").to_owned(),
                    text("state").to_owned(),
                    when("promised_at"),
                    when("delivered_at"),
                ]
            })
            .collect(),
    };
    (
        cards,
        chart(
            "delivery-chart",
            lang.t("on_time_by_courier"),
            &data,
            table("by_courier", lang.t("by_courier"), "courier"),
        ),
        by_state,
        late,
    )
}
