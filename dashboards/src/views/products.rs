//! The Products page's views: the best sellers (an analytics `products` answer), what trends in
//! the shop now (the trending stage's merchant audience) and what runs low (the alerts answer).

use runtime::http::ApiError;
use runtime::reports::{ShopReports, ShopSources};
use serde_json::{Value, json};

use super::{Chart, InrRates, Table, all_money, chart, count, head, share};
use crate::i18n::{self, Lang};

/// The Products page's tables under its chart: trending in the shop (when this process runs
/// trending), then what runs low.
pub fn shop_products(
    lang: Lang,
    reports: &dyn ShopReports,
    sources: &ShopSources,
    shop: &str,
) -> Result<Vec<Table>, ApiError> {
    let mut tables = Vec::new();
    if let Some(trending) = &sources.trending {
        tables.push(trending_now(lang, &trending.trending(shop, TRENDING_ROWS)?));
    }
    tables.push(running_low(lang, &reports.alerts(shop)?));
    Ok(tables)
}

const TRENDING_ROWS: usize = 10;

/// The shop's top products in the trending stage's default window, with the score of the
/// window before for comparison.
fn trending_now(lang: Lang, answer: &Value) -> Table {
    let list = answer
        .get("products")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let minutes = answer.get("window_ms").and_then(Value::as_i64).unwrap_or(0) / 60_000;
    Table {
        caption: format!("{} {minutes} {}", lang.t("trending_now"), lang.t("minutes")),
        head: head(
            lang,
            &[
                "product",
                "score",
                "views",
                "cart_adds",
                "orders",
                "previous_window",
            ],
        ),
        rows: list
            .iter()
            .map(|p| {
                vec![
                    title_or_id(p),
                    i18n::count(count(p, "score")),
                    i18n::count(count(p, "views")),
                    i18n::count(count(p, "carts")),
                    i18n::count(count(p, "orders")),
                    i18n::count(count(p, "previous_score")),
                ]
            })
            .collect(),
    }
}

fn title_or_id(p: &Value) -> String {
    p.get("title")
        .and_then(Value::as_str)
        .or_else(|| p.get("product_id").and_then(Value::as_str))
        .unwrap_or("")
        .to_owned()
}

/// The Products page: the best sellers, as bars and as a table.
pub fn products(lang: Lang, inr: &InrRates, products: &Value) -> Chart {
    let list = products
        .get("products")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let name = title_or_id;
    let currency = list
        .iter()
        .find_map(|p| {
            p.get("revenue")
                .and_then(Value::as_object)?
                .keys()
                .next()
                .cloned()
        })
        .unwrap_or_else(|| "INR".to_owned());
    let data = json!({
        "kind": "bars",
        "label": lang.t("units"),
        "labels": list.iter().map(name).collect::<Vec<_>>(),
        "values": list.iter().map(|p| count(p, "units")).collect::<Vec<_>>(),
    });
    let table = Table {
        caption: lang.t("top_sellers").to_owned(),
        head: head(
            lang,
            &[
                "product",
                "units",
                "orders",
                "revenue",
                "views",
                "conversion",
            ],
        ),
        rows: list
            .iter()
            .map(|p| {
                vec![
                    name(p),
                    i18n::count(count(p, "units")),
                    i18n::count(count(p, "orders")),
                    all_money(p.get("revenue"), &currency, inr),
                    i18n::count(count(p, "views")),
                    i18n::percent(share(p, "conversion")),
                ]
            })
            .collect(),
    };
    chart("products-chart", lang.t("top_sellers"), &data, table)
}

/// The low-stock table: what runs low now (the alerts answer's `running_low`),
/// least cover first, with the numbers the cover is worked out from.
fn running_low(lang: Lang, alerts: &Value) -> Table {
    let list = alerts
        .get("running_low")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let text = |p: &Value, key: &str| p.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
    let days = |p: &Value, key: &str| match p.get(key).and_then(Value::as_f64) {
        Some(days) if days.is_finite() => format!("{days:.1}"),
        _ => "–".to_owned(),
    };
    Table {
        caption: format!(
            "{} ({})",
            lang.t("running_low"),
            i18n::count(list.len() as u64)
        ),
        head: head(
            lang,
            &[
                "product",
                "warehouse",
                "available",
                "sold_per_day",
                "days_of_cover",
                "restock_lead_days",
            ],
        ),
        rows: list
            .iter()
            .map(|p| {
                let title = text(p, "title");
                vec![
                    if title.is_empty() {
                        text(p, "product_id")
                    } else {
                        title
                    },
                    text(p, "warehouse_id"),
                    p.get("available")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                        .to_string(),
                    days(p, "daily_velocity"),
                    days(p, "days_of_cover"),
                    i18n::count(count(p, "restock_lead_days")),
                ]
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_low_lists_cover_with_its_numbers_and_falls_back_to_the_id() {
        let alerts = json!({"merchant_id": "m-1", "alerts": [], "running_low": [
            {"product_id": "p-1", "title": "Kurta", "warehouse_id": "w-1", "available": 0,
             "daily_velocity": 0.2857, "days_of_cover": 0.0, "restock_lead_days": 7},
            {"product_id": "p-2", "title": null, "warehouse_id": "w-1", "available": 3,
             "daily_velocity": 1.0, "days_of_cover": null, "restock_lead_days": 12},
        ]});
        let table = running_low(Lang::En, &alerts);
        assert_eq!(table.caption, "Running low (2)");
        assert_eq!(table.rows[0], ["Kurta", "w-1", "0", "0.3", "0.0", "7"]);
        assert_eq!(table.rows[1], ["p-2", "w-1", "3", "1.0", "–", "12"]);
        assert_eq!(running_low(Lang::Hi, &json!({})).caption, "स्टॉक कम (0)");
    }

    #[test]
    fn trending_now_shows_the_window_and_each_products_counts() {
        let answer = json!({"window_ms": 300_000, "slide_ms": 10_000, "window_end_ms": 1,
            "products": [{"product_id": "p-1", "title": "Kurta", "score": 12, "views": 3,
                          "carts": 1, "orders": 1, "previous_score": 2}],
            "rising": []});
        let table = trending_now(Lang::En, &answer);
        assert_eq!(table.caption, "Trending now in your shop, last 5 min");
        assert_eq!(table.rows, [["Kurta", "12", "3", "1", "1", "2"]]);
        assert!(trending_now(Lang::En, &Value::Null).rows.is_empty());
    }
}
