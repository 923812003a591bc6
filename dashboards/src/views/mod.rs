//! Analytics answers (the JSON `GET /v1/merchants/{id}/analytics/{metric}` gives) turned into
//! what a page shows: number cards, tables, and the numbers each chart draws. Pure: values in,
//! values out.

use std::collections::BTreeMap;

use model::calendar::IstDate;
use serde_json::{Value, json};

use crate::i18n::{self, Lang};

mod delivery;
mod products;

pub use delivery::delivery;
pub use products::{products, shop_products};

/// A number card: its label, value, and how it compares.
#[derive(Debug, Clone)]
pub struct Card {
    /// Names the card for tests and screen readers (`gmv`, `orders`).
    pub id: &'static str,
    pub label: &'static str,
    pub value: String,
    pub compare: String,
    /// `up`, `down` or empty: colours the comparison.
    pub trend: &'static str,
}

impl Card {
    /// A card without a comparison: `id` names it, `key` is its label's catalogue key.
    fn plain(lang: Lang, id: &'static str, key: &str, value: String) -> Card {
        Card {
            id,
            label: lang.t(key),
            value,
            compare: String::new(),
            trend: "",
        }
    }
}

/// A table of formatted cells.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub caption: String,
    pub head: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// A chart: the numbers it draws (JSON, safe inside a `<script>` element) and the table
/// holding the same numbers for readers who cannot see it.
#[derive(Debug, Clone)]
pub struct Chart {
    pub id: String,
    pub title: String,
    pub data: String,
    pub table: Table,
}

fn chart(id: &str, title: &str, data: &Value, table: Table) -> Chart {
    Chart {
        id: id.to_owned(),
        title: title.to_owned(),
        // `<` never appears raw inside the script element, so no text can close it.
        data: data.to_string().replace('<', "\\u003c"),
        table,
    }
}

/// A table's column heads: each key in `lang`.
pub(crate) fn head(lang: Lang, keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| lang.t(k).to_owned()).collect()
}

fn count(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn share(value: &Value, key: &str) -> f64 {
    value.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// Minor units of `currency` in an amounts object (`{"INR": 12345}`).
fn minor(amounts: Option<&Value>, currency: &str) -> i64 {
    amounts
        .and_then(|a| a.get(currency))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn totals(report: &Value) -> &Value {
    report.get("totals").unwrap_or(&Value::Null)
}

fn points(report: &Value) -> &[Value] {
    report
        .get("series")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The currency a shop mostly sells in over a sales answer (INR when it sold nothing).
pub fn main_currency(sales: &Value) -> String {
    totals(sales)
        .get("gmv")
        .and_then(Value::as_object)
        .and_then(|gmv| {
            gmv.iter()
                .max_by_key(|(_, v)| v.as_i64().unwrap_or(0))
                .map(|(c, _)| c.clone())
        })
        .unwrap_or_else(|| "INR".to_owned())
}

/// INR per unit of other currencies (`jobs.finance.inr_per_unit`), for rupees beside them.
pub type InrRates = BTreeMap<String, f64>;

/// An amount, with its value in rupees beside it when it is in another currency whose rate
/// is known: `USD 15.00 (≈ ₹1,252.50)`.
fn money_with_inr(minor: i64, currency: &str, inr: &InrRates) -> String {
    let shown = i18n::money(minor, currency);
    match inr.get(currency) {
        Some(rate) if currency != "INR" => {
            let paise = (minor as f64 * rate).round() as i64;
            format!("{shown} (≈ {})", i18n::money(paise, "INR"))
        }
        _ => shown,
    }
}

/// Every currency's amount, the main one first: `₹1,200.00 + USD 15.00 (≈ ₹1,252.50)`.
fn all_money(amounts: Option<&Value>, main: &str, inr: &InrRates) -> String {
    let mut parts = vec![money_with_inr(minor(amounts, main), main, inr)];
    if let Some(map) = amounts.and_then(Value::as_object) {
        for (currency, value) in map {
            if currency != main && value.as_i64().unwrap_or(0) != 0 {
                parts.push(money_with_inr(value.as_i64().unwrap_or(0), currency, inr));
            }
        }
    }
    parts.join(" + ")
}

/// A point's start (`2026-12-04T14:00+05:30`) as UTC milliseconds.
pub fn label_ms(label: &str) -> Option<i64> {
    let day = IstDate::parse(label.get(..10)?).ok()?;
    let hours: i64 = label.get(11..13)?.parse().ok()?;
    let minutes: i64 = label.get(14..16)?.parse().ok()?;
    Some(day.start_utc_ms() + (hours * 60 + minutes) * 60_000)
}

fn compare(lang: Lang, now: f64, before: f64) -> (String, &'static str) {
    let base = lang.t("vs_yesterday");
    if before == 0.0 {
        return (format!("– {base}"), "");
    }
    let change = (now - before) / before;
    let trend = if change > 0.0 {
        "up"
    } else if change < 0.0 {
        "down"
    } else {
        ""
    };
    (format!("{:+.1}% {base}", change * 100.0), trend)
}

/// What the Today page shows.
#[derive(Debug, Clone)]
pub struct Today {
    pub cards: Vec<Card>,
    pub by_hour: Chart,
    pub live_from: String,
}

/// Today so far against yesterday up to the same time: `sales`/`funnel` are today's answers
/// (hourly), `*_before` yesterday's up to the same minute, `yesterday` all of yesterday,
/// hourly (the chart's second line).
pub fn today(
    lang: Lang,
    inr: &InrRates,
    sales: &Value,
    sales_before: &Value,
    yesterday: &Value,
    funnel: &Value,
    funnel_before: &Value,
) -> Today {
    let currency = main_currency(sales);
    let (now, before) = (totals(sales), totals(sales_before));
    let gmv = minor(now.get("gmv"), &currency);
    let gmv_before = minor(before.get("gmv"), &currency);
    let (orders, orders_before) = (count(now, "orders"), count(before, "orders"));
    let aov = minor(now.get("aov"), &currency);
    let aov_before = minor(before.get("aov"), &currency);
    let conversion = share(totals(funnel), "conversion");
    let conversion_before = share(totals(funnel_before), "conversion");
    let card = |id, label, value, (versus, trend): (String, &'static str)| Card {
        id,
        label,
        value,
        compare: versus,
        trend,
    };
    let cards = vec![
        card(
            "gmv",
            lang.t("gmv"),
            all_money(now.get("gmv"), &currency, inr),
            compare(lang, gmv as f64, gmv_before as f64),
        ),
        card(
            "orders",
            lang.t("orders"),
            i18n::count(orders),
            compare(lang, orders as f64, orders_before as f64),
        ),
        card(
            "aov",
            lang.t("aov"),
            money_with_inr(aov, &currency, inr),
            compare(lang, aov as f64, aov_before as f64),
        ),
        card(
            "conversion",
            lang.t("conversion"),
            i18n::percent(conversion),
            compare(lang, conversion, conversion_before),
        ),
    ];

    // Both lines on today's hours: yesterday's points moved forward a day.
    let day_ms = 86_400_000;
    let hours: Vec<i64> = (0..24)
        .map(|hour| IstDate::of_instant(now_or_start(sales)).start_utc_ms() + hour * 3_600_000)
        .collect();
    let per_hour = |report: &Value, shift: i64| -> Vec<Option<f64>> {
        let mut values = vec![None; 24];
        for point in points(report) {
            let Some(at) = point
                .get("start")
                .and_then(Value::as_str)
                .and_then(label_ms)
            else {
                continue;
            };
            let hour = (at + shift - hours[0]).div_euclid(3_600_000);
            if let Some(slot) = usize::try_from(hour).ok().and_then(|h| values.get_mut(h)) {
                *slot = Some(minor(point.get("gmv"), &currency) as f64 / 100.0);
            }
        }
        values
    };
    let today_values = per_hour(sales, 0);
    let yesterday_values = per_hour(yesterday, day_ms);
    let table = Table {
        caption: format!("{} ({currency})", lang.t("sales_by_hour")),
        head: vec![
            lang.t("hour").to_owned(),
            lang.t("today").to_owned(),
            lang.t("yesterday").to_owned(),
        ],
        rows: (0..24)
            .map(|h| {
                let cell = |v: Option<f64>| {
                    v.map_or_else(String::new, |v| {
                        i18n::money((v * 100.0).round() as i64, &currency)
                    })
                };
                vec![
                    format!("{h:02}:00"),
                    cell(today_values[h]),
                    cell(yesterday_values[h]),
                ]
            })
            .collect(),
    };
    let data = json!({
        "kind": "lines",
        "x": hours.iter().map(|ms| ms / 1_000).collect::<Vec<_>>(),
        "series": [
            {"label": lang.t("today"), "values": today_values},
            {"label": lang.t("yesterday"), "values": yesterday_values},
        ],
    });
    Today {
        cards,
        by_hour: chart("sales-by-hour", lang.t("sales_by_hour"), &data, table),
        live_from: live_from(lang, sales),
    }
}

/// The start of the range an answer covers (its `from`), or 0.
fn now_or_start(report: &Value) -> i64 {
    report
        .get("from")
        .and_then(Value::as_str)
        .and_then(label_ms)
        .unwrap_or(0)
}

fn live_from(lang: Lang, report: &Value) -> String {
    report
        .get("live_from")
        .and_then(Value::as_str)
        .and_then(label_ms)
        .map(|at| i18n::date_time(lang, at))
        .unwrap_or_default()
}

fn is_hourly(report: &Value) -> bool {
    matches!(
        report.get("grain").and_then(Value::as_str),
        Some("hour" | "minute")
    )
}

fn point_label(lang: Lang, report: &Value, point: &Value) -> String {
    let label = point.get("start").and_then(Value::as_str).unwrap_or("");
    if is_hourly(report) {
        // Hours over several days need the day too.
        let day = label_ms(label).map(|at| i18n::date_time(lang, at));
        return day.unwrap_or_else(|| label.to_owned());
    }
    i18n::point_label(lang, label, false)
}

fn x_seconds(report: &Value) -> Vec<i64> {
    points(report)
        .iter()
        .map(|p| {
            p.get("start")
                .and_then(Value::as_str)
                .and_then(label_ms)
                .unwrap_or(0)
                / 1_000
        })
        .collect()
}

/// The Sales page: GMV and net over the range, every point in a table, and cancellations and
/// refunds by reason.
pub fn sales(
    lang: Lang,
    inr: &InrRates,
    sales: &Value,
    refunds: &Value,
) -> (Vec<Card>, Chart, Table) {
    let currency = main_currency(sales);
    let total = totals(sales);
    let plain = |id, key, value| Card::plain(lang, id, key, value);
    let cards = vec![
        plain("gmv", "gmv", all_money(total.get("gmv"), &currency, inr)),
        plain("orders", "orders", i18n::count(count(total, "orders"))),
        plain(
            "refunded",
            "refunded",
            all_money(total.get("refunded"), &currency, inr),
        ),
        plain("net", "net", all_money(total.get("net"), &currency, inr)),
    ];
    let money_of = |point: &Value, key: &str| minor(point.get(key), &currency) as f64 / 100.0;
    let data = json!({
        "kind": "lines",
        "x": x_seconds(sales),
        "series": [
            {"label": lang.t("gmv"), "values": points(sales).iter().map(|p| money_of(p, "gmv")).collect::<Vec<_>>()},
            {"label": lang.t("net"), "values": points(sales).iter().map(|p| money_of(p, "net")).collect::<Vec<_>>()},
        ],
    });
    let table = Table {
        caption: format!("{} ({currency})", lang.t("sales")),
        head: head(
            lang,
            &["start", "orders", "units", "gmv", "refunds", "net", "aov"],
        ),
        rows: points(sales)
            .iter()
            .map(|p| {
                vec![
                    point_label(lang, sales, p),
                    i18n::count(count(p, "orders")),
                    i18n::count(count(p, "units")),
                    i18n::money(minor(p.get("gmv"), &currency), &currency),
                    i18n::count(count(p, "refunds")),
                    i18n::money(minor(p.get("net"), &currency), &currency),
                    i18n::money(minor(p.get("aov"), &currency), &currency),
                ]
            })
            .collect(),
    };
    let reasons = Table {
        caption: lang.t("by_reason").to_owned(),
        head: vec![lang.t("reason").to_owned(), lang.t("count").to_owned()],
        rows: refunds
            .get("by_reason")
            .and_then(Value::as_object)
            .map(|reasons| {
                reasons
                    .iter()
                    .map(|(reason, n)| vec![reason.clone(), i18n::count(n.as_u64().unwrap_or(0))])
                    .collect()
            })
            .unwrap_or_default(),
    };
    (
        cards,
        chart("sales-chart", lang.t("sales"), &data, table),
        reasons,
    )
}

/// The Funnel page: views to cart adds to orders over the range, and per point.
pub fn funnel(lang: Lang, funnel: &Value) -> (Vec<Card>, Chart, Table) {
    let total = totals(funnel);
    let plain = |id, key, value| Card::plain(lang, id, key, value);
    let cards = vec![
        plain("views", "views", i18n::count(count(total, "views"))),
        plain(
            "cart_adds",
            "cart_adds",
            i18n::count(count(total, "cart_adds")),
        ),
        plain("orders", "orders", i18n::count(count(total, "orders"))),
        plain(
            "conversion",
            "conversion",
            i18n::percent(share(total, "conversion")),
        ),
    ];
    let stages = ["views", "cart_adds", "orders"];
    let data = json!({
        "kind": "funnel",
        "stages": stages.iter().map(|k| json!({"name": lang.t(k), "value": count(total, k)})).collect::<Vec<_>>(),
    });
    let table = Table {
        caption: lang.t("funnel").to_owned(),
        head: stages.iter().map(|k| lang.t(k).to_owned()).collect(),
        rows: vec![
            stages
                .iter()
                .map(|k| i18n::count(count(total, k)))
                .collect(),
        ],
    };
    let per_point = Table {
        caption: lang.t("funnel").to_owned(),
        head: head(
            lang,
            &["start", "views", "cart_adds", "orders", "conversion"],
        ),
        rows: points(funnel)
            .iter()
            .map(|p| {
                vec![
                    point_label(lang, funnel, p),
                    i18n::count(count(p, "views")),
                    i18n::count(count(p, "cart_adds")),
                    i18n::count(count(p, "orders")),
                    i18n::percent(share(p, "conversion")),
                ]
            })
            .collect(),
    };
    (
        cards,
        chart("funnel-chart", lang.t("funnel"), &data, table),
        per_point,
    )
}

/// The Search page: searches and zero-result searches over the range, and the query lists.
pub fn search(lang: Lang, report: &Value) -> (Vec<Card>, Chart, Table, Table) {
    let total = totals(report);
    let plain = |id, key, value| Card::plain(lang, id, key, value);
    let cards = vec![
        plain(
            "searches",
            "searches",
            i18n::count(count(total, "searches")),
        ),
        plain(
            "zero_results",
            "zero_results",
            i18n::count(count(total, "zero_result_searches")),
        ),
        plain("clicks", "clicks", i18n::count(count(total, "clicks"))),
        plain(
            "click_through",
            "click_through",
            i18n::percent(share(total, "click_through")),
        ),
    ];
    let column = |key: &str| {
        points(report)
            .iter()
            .map(|p| count(p, key))
            .collect::<Vec<_>>()
    };
    let data = json!({
        "kind": "lines",
        "x": x_seconds(report),
        "series": [
            {"label": lang.t("searches"), "values": column("searches")},
            {"label": lang.t("zero_results"), "values": column("zero_result_searches")},
        ],
    });
    let per_point = Table {
        caption: lang.t("searches").to_owned(),
        head: head(lang, &["start", "searches", "zero_results", "clicks"]),
        rows: points(report)
            .iter()
            .map(|p| {
                vec![
                    point_label(lang, report, p),
                    i18n::count(count(p, "searches")),
                    i18n::count(count(p, "zero_result_searches")),
                    i18n::count(count(p, "clicks")),
                ]
            })
            .collect(),
    };
    let queries = |key: &str, caption: &str| Table {
        caption: caption.to_owned(),
        head: head(
            lang,
            &["query", "searches", "zero_results", "click_through"],
        ),
        rows: report
            .get(key)
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|q| {
                        vec![
                            q.get("query")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_owned(),
                            i18n::count(count(q, "searches")),
                            i18n::count(count(q, "zero_results")),
                            i18n::percent(share(q, "click_through")),
                        ]
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    (
        cards,
        chart("search-chart", lang.t("searches"), &data, per_point),
        queries("top_queries", lang.t("top_queries")),
        queries("zero_result_queries", lang.t("zero_result_queries")),
    )
}

/// IST midnight of the day `utc_ms` falls on.
pub fn day_start(utc_ms: i64) -> i64 {
    IstDate::of_instant(utc_ms).start_utc_ms()
}

/// The IST month `months_back` months before the one `utc_ms` falls in, as `YYYY-MM`.
pub fn month_before(utc_ms: i64, months_back: u32) -> String {
    let (year, month, _) = IstDate::of_instant(utc_ms).ymd();
    let index = i64::from(year) * 12 + i64::from(month) - 1 - i64::from(months_back);
    format!(
        "{:04}-{:02}",
        index.div_euclid(12),
        index.rem_euclid(12) + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sales_answer(points: &[(&str, u64, i64)]) -> Value {
        let total_orders: u64 = points.iter().map(|p| p.1).sum();
        let total_gmv: i64 = points.iter().map(|p| p.2).sum();
        json!({
            "from": "2026-12-04T00:00+05:30", "grain": "hour",
            "live_from": "2026-12-02T14:00+05:30",
            "series": points.iter().map(|(start, orders, gmv)| json!({
                "start": start, "orders": orders, "gmv": {"INR": gmv}, "net": {"INR": gmv},
                "aov": {"INR": if *orders == 0 { 0 } else { gmv / *orders as i64 }},
            })).collect::<Vec<_>>(),
            "totals": {"orders": total_orders, "gmv": {"INR": total_gmv},
                "aov": {"INR": if total_orders == 0 { 0 } else { total_gmv / total_orders as i64 }}},
        })
    }

    #[test]
    fn today_compares_with_yesterday_and_draws_both_days_on_todays_hours() {
        let today_sales = sales_answer(&[("2026-12-04T10:00+05:30", 3, 300_000)]);
        let before = sales_answer(&[("2026-12-03T09:00+05:30", 2, 150_000)]);
        let funnel = json!({"totals": {"conversion": 0.25}});
        let funnel_before = json!({"totals": {"conversion": 0.2}});
        let view = today(
            Lang::En,
            &InrRates::new(),
            &today_sales,
            &before,
            &before,
            &funnel,
            &funnel_before,
        );
        let card = |id| view.cards.iter().find(|c| c.id == id).expect("card");
        assert_eq!(card("gmv").value, "₹3,000.00");
        assert_eq!(card("gmv").compare, "+100.0% same time yesterday");
        assert_eq!(card("gmv").trend, "up");
        assert_eq!(card("orders").value, "3");
        assert_eq!(card("aov").value, "₹1,000.00");
        assert_eq!(card("conversion").value, "25.0%");
        let data: Value = serde_json::from_str(&view.by_hour.data).expect("json");
        assert_eq!(data["series"][0]["values"][10], json!(3000.0));
        assert_eq!(data["series"][1]["values"][9], json!(1500.0));
        assert_eq!(data["series"][0]["values"][9], Value::Null);
        assert_eq!(view.by_hour.table.rows[10][1], "₹3,000.00");
        assert_eq!(view.live_from, "2 Dec 2026, 14:00");
    }

    #[test]
    fn a_title_with_markup_stays_text_in_the_chart_data_and_the_table() {
        let products =
            json!({"products": [{"product_id": "p-1", "title": "</script><b>x</b>", "units": 1}]});
        let chart = products_chart(&products);
        assert!(!chart.data.contains("</"), "{}", chart.data);
        let panel = crate::render::Panel {
            lang: Lang::En,
            cards: vec![],
            charts: vec![chart],
            tables: vec![],
            footnote: String::new(),
        };
        let html = askama::Template::render(&panel).expect("render");
        assert!(!html.contains("<b>x</b>"), "{html}");
        assert!(
            html.contains("&#60;/script&#62;&#60;b&#62;x&#60;/b&#62;"),
            "{html}"
        );
        assert_eq!(
            html.matches("</script>").count(),
            1,
            "only the data element's own end"
        );
    }

    fn products_chart(value: &Value) -> Chart {
        products(Lang::En, &InrRates::new(), value)
    }

    #[test]
    fn other_currencies_show_rupees_beside_them_when_the_rate_is_known() {
        let inr = InrRates::from([("USD".to_owned(), 83.5)]);
        let amounts = json!({"INR": 120_000, "USD": 1_500, "GBP": 100});
        assert_eq!(
            all_money(Some(&amounts), "INR", &inr),
            "₹1,200.00 + GBP 1.00 + USD 15.00 (≈ ₹1,252.50)"
        );
    }

    #[test]
    fn months_count_back_across_years() {
        let at = label_ms("2026-01-15T10:00+05:30").expect("label");
        assert_eq!(month_before(at, 0), "2026-01");
        assert_eq!(month_before(at, 1), "2025-12");
        assert_eq!(month_before(at, 13), "2024-12");
    }
}
