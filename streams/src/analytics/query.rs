//! Answers over the live state, as pure functions: a time range and grain in IST, and each
//! metric's series, totals and lists.

use std::collections::BTreeMap;

use model::calendar::{IST_OFFSET_MS, IstDate, Weekday};
use serde::{Deserialize, Serialize};

use super::live::{Amounts, Day, MINUTE_MS, Minute, ProductDay, QueryDay, Shop};

const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Buckets one answer may hold: a day of minutes with an hour to spare.
pub const MAX_BUCKETS: i64 = 1_500;

/// How wide each point of a series is; days, weeks and months are IST calendar ones (weeks
/// start on Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Grain {
    Minute,
    Hour,
    Day,
    Week,
    Month,
}

impl Grain {
    pub fn parse(text: &str) -> Option<Grain> {
        Some(match text {
            "minute" => Grain::Minute,
            "hour" => Grain::Hour,
            "day" => Grain::Day,
            "week" => Grain::Week,
            "month" => Grain::Month,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Grain::Minute => "minute",
            Grain::Hour => "hour",
            Grain::Day => "day",
            Grain::Week => "week",
            Grain::Month => "month",
        }
    }

    /// The start of the bucket `at` falls in.
    pub fn floor(self, at: i64) -> i64 {
        let local = at + IST_OFFSET_MS;
        match self {
            Grain::Minute => at.div_euclid(MINUTE_MS) * MINUTE_MS,
            Grain::Hour => local.div_euclid(HOUR_MS) * HOUR_MS - IST_OFFSET_MS,
            Grain::Day => IstDate::of_instant(at).start_utc_ms(),
            Grain::Week => {
                let day = IstDate::of_instant(at);
                let back = Weekday::ALL
                    .iter()
                    .position(|w| *w == day.weekday())
                    .unwrap_or(0);
                day.plus_days(-(back as i32)).start_utc_ms()
            }
            Grain::Month => {
                let (year, month, _) = IstDate::of_instant(at).ymd();
                IstDate::from_ymd(year, month, 1).map_or(at, IstDate::start_utc_ms)
            }
        }
    }

    /// The start of the bucket after the one starting at `start`.
    fn next(self, start: i64) -> i64 {
        match self {
            Grain::Minute => start + MINUTE_MS,
            Grain::Hour => start + HOUR_MS,
            Grain::Day => start + DAY_MS,
            Grain::Week => start + 7 * DAY_MS,
            Grain::Month => {
                let (year, month, _) = IstDate::of_instant(start).ymd();
                let (year, month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                IstDate::from_ymd(year, month, 1).map_or(start + 31 * DAY_MS, IstDate::start_utc_ms)
            }
        }
    }

    /// The shortest a bucket of this grain can be.
    fn shortest(self) -> i64 {
        match self {
            Grain::Minute => MINUTE_MS,
            Grain::Hour => HOUR_MS,
            Grain::Day => DAY_MS,
            Grain::Week => 7 * DAY_MS,
            Grain::Month => 28 * DAY_MS,
        }
    }

    /// The finest grain that fits `span_ms` in [`MAX_BUCKETS`], to suggest.
    fn coarser_for(span_ms: i64) -> Grain {
        [Grain::Hour, Grain::Day, Grain::Week]
            .into_iter()
            .find(|grain| span_ms / grain.shortest() < MAX_BUCKETS)
            .unwrap_or(Grain::Month)
    }
}

/// `[from, to)` at `grain`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: i64,
    pub to: i64,
    pub grain: Grain,
}

impl Range {
    /// Checks the range against the clock and the grain; the message names what is wrong.
    pub fn new(from: i64, to: i64, grain: Grain, now: i64) -> Result<Range, RangeError> {
        if from > now {
            return Err(RangeError::Invalid(format!(
                "from ({}) is in the future",
                label(from)
            )));
        }
        if from >= to {
            return Err(RangeError::Invalid(format!(
                "from ({}) must be before to ({})",
                label(from),
                label(to)
            )));
        }
        let width = grain.shortest();
        let buckets = (to - grain.floor(from) + width - 1) / width;
        if buckets > MAX_BUCKETS {
            return Err(RangeError::GrainTooFine(format!(
                "grain={} gives {buckets} points over this range, more than {MAX_BUCKETS}: use grain={} or a shorter range",
                grain.name(),
                Grain::coarser_for(to - from).name()
            )));
        }
        Ok(Range { from, to, grain })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    GrainTooFine(String),
}

/// An instant as an answer shows it: ISO 8601 in IST.
pub fn label(at: i64) -> String {
    let day = IstDate::of_instant(at);
    let minute = (at + IST_OFFSET_MS).rem_euclid(DAY_MS) / MINUTE_MS;
    format!("{day}T{:02}:{:02}+05:30", minute / 60, minute % 60)
}

/// The times analytics take: from 2000 to 2100 (UTC ms). Beyond them is a typing mistake,
/// and the range arithmetic stays far from overflow.
const EARLIEST: i64 = 946_684_800_000;
const LATEST: i64 = 4_102_444_800_000;

/// Parses a time: milliseconds since the epoch, `YYYY-MM-DD` (midnight IST),
/// `YYYY-MM-DDTHH:MM[:SS]` (IST) or the same ending in `Z` (UTC), between 2000 and 2100.
pub fn parse_time(text: &str) -> Option<i64> {
    parse_any_time(text).filter(|at| (EARLIEST..=LATEST).contains(at))
}

fn parse_any_time(text: &str) -> Option<i64> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let start = IstDate::parse(date).ok()?.start_utc_ms();
    let Some(time) = time else {
        return Some(start);
    };
    let (time, offset) = match time.strip_suffix('Z') {
        Some(utc) => (utc, IST_OFFSET_MS),
        None => (time, 0),
    };
    let parts: Vec<&str> = time.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    let number = |p: &str| p.parse::<i64>().ok();
    let (hours, minutes) = (number(parts[0])?, number(parts[1])?);
    let seconds = parts.get(2).map_or(Some(0), |p| number(p))?;
    if hours > 23 || minutes > 59 || seconds > 59 {
        return None;
    }
    Some(start + offset + ((hours * 60 + minutes) * 60 + seconds) * 1_000)
}

/// The minutes of `shop` the range touches, summed per bucket of the grain (every bucket
/// present, zero when nothing happened), and in total.
fn buckets(shop: Option<&Shop>, range: &Range) -> (Vec<(i64, Minute)>, Minute) {
    let mut series = Vec::new();
    let mut start = range.grain.floor(range.from);
    while start < range.to {
        series.push((start, Minute::default()));
        start = range.grain.next(start);
    }
    let mut total = Minute::default();
    if let Some(shop) = shop {
        let mut index = 0;
        // Every minute the range touches, as the series' first point (which starts at the
        // grain's floor of `from`) does: a minute is the finest the numbers are kept at.
        let first_minute = Grain::Minute.floor(range.from);
        for (minute, counts) in shop.minutes.range(first_minute..range.to) {
            while index + 1 < series.len() && series[index + 1].0 <= *minute {
                index += 1;
            }
            if let Some((_, bucket)) = series.get_mut(index) {
                bucket.merge(counts);
            }
            total.merge(counts);
        }
    }
    (series, total)
}

fn minus(a: &Amounts, b: &Amounts) -> Amounts {
    let mut out = a.clone();
    for (currency, minor) in b {
        *out.entry(currency.clone()).or_default() -= minor;
    }
    out
}

fn per(amounts: &Amounts, count: u64) -> Amounts {
    amounts
        .iter()
        .map(|(currency, minor)| {
            let count = i64::try_from(count.max(1)).unwrap_or(i64::MAX);
            (currency.clone(), (minor + count / 2) / count)
        })
        .collect()
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Sales at one point of the series (or in total). Money is in minor units by currency code.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Sales {
    pub start: String,
    pub orders: u64,
    pub units: u64,
    pub gmv: Amounts,
    pub refunds: u64,
    pub refunded: Amounts,
    /// GMV less refunds.
    pub net: Amounts,
    /// GMV per order.
    pub aov: Amounts,
    pub cancellations: u64,
}

fn sales_of(start: i64, m: &Minute) -> Sales {
    Sales {
        start: label(start),
        orders: m.orders,
        units: m.units,
        gmv: m.gmv.clone(),
        refunds: m.refunds,
        refunded: m.refunded.clone(),
        net: minus(&m.gmv, &m.refunded),
        aov: per(&m.gmv, m.orders),
        cancellations: m.cancellations,
    }
}

/// Views to orders at one point of the series.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Funnel {
    pub start: String,
    pub views: u64,
    pub cart_adds: u64,
    pub orders: u64,
    /// Orders per view.
    pub conversion: f64,
    /// Cart adds per view.
    pub cart_rate: f64,
}

fn funnel_of(start: i64, m: &Minute) -> Funnel {
    Funnel {
        start: label(start),
        views: m.views,
        cart_adds: m.cart_adds,
        orders: m.orders,
        conversion: ratio(m.orders, m.views),
        cart_rate: ratio(m.cart_adds, m.views),
    }
}

/// Searches in the shop at one point of the series.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Searches {
    pub start: String,
    pub searches: u64,
    pub zero_result_searches: u64,
    /// Clicks on the shop's products from a search result list.
    pub clicks: u64,
    pub click_through: f64,
}

fn searches_of(start: i64, m: &Minute) -> Searches {
    Searches {
        start: label(start),
        searches: m.searches,
        zero_result_searches: m.zero_result_searches,
        clicks: m.search_clicks,
        click_through: ratio(m.search_clicks, m.searches),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series<T> {
    pub series: Vec<T>,
    pub totals: T,
}

fn series<T>(shop: Option<&Shop>, range: &Range, point: impl Fn(i64, &Minute) -> T) -> Series<T> {
    let (buckets, total) = buckets(shop, range);
    Series {
        series: buckets.iter().map(|(start, m)| point(*start, m)).collect(),
        totals: point(range.from, &total),
    }
}

pub fn sales(shop: Option<&Shop>, range: &Range) -> Series<Sales> {
    series(shop, range, sales_of)
}

pub fn funnel(shop: Option<&Shop>, range: &Range) -> Series<Funnel> {
    series(shop, range, funnel_of)
}

/// The IST days a range touches, as the per-day lists count them.
pub(super) fn days<'a>(shop: Option<&'a Shop>, range: &Range) -> impl Iterator<Item = &'a Day> {
    let (first, last) = (
        IstDate::of_instant(range.from),
        IstDate::of_instant(range.to - 1),
    );
    shop.into_iter()
        .flat_map(move |shop| shop.days.range(first..=last).map(|(_, day)| day))
}

/// A product's day(s).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TopProduct {
    pub product_id: String,
    pub title: Option<String>,
    pub units: u64,
    pub orders: u64,
    pub revenue: Amounts,
    pub views: u64,
    pub cart_adds: u64,
    /// Orders per view.
    pub conversion: f64,
}

/// The products that sold most units over the whole IST days the range touches.
pub fn top_products(
    shop: Option<&Shop>,
    range: &Range,
    titles: impl Fn(&str) -> Option<String>,
    limit: usize,
) -> Vec<TopProduct> {
    let mut sum: BTreeMap<&str, ProductDay> = BTreeMap::new();
    for day in days(shop, range) {
        for (product, counts) in &day.products {
            let into = sum.entry(product.as_str()).or_default();
            into.units += counts.units;
            into.orders += counts.orders;
            into.views += counts.views;
            into.cart_adds += counts.cart_adds;
            for (currency, minor) in &counts.revenue {
                *into.revenue.entry(currency.clone()).or_default() += minor;
            }
        }
    }
    let mut ranked: Vec<(&str, ProductDay)> = sum.into_iter().collect();
    ranked.sort_by(|a, b| {
        (b.1.units, b.1.views)
            .cmp(&(a.1.units, a.1.views))
            .then(a.0.cmp(b.0))
    });
    ranked
        .into_iter()
        .take(limit)
        .map(|(product, counts)| TopProduct {
            product_id: product.to_owned(),
            title: titles(product),
            units: counts.units,
            orders: counts.orders,
            conversion: ratio(counts.orders, counts.views),
            revenue: counts.revenue,
            views: counts.views,
            cart_adds: counts.cart_adds,
        })
        .collect()
}

/// One query's day(s).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TopQuery {
    pub query: String,
    pub searches: u64,
    pub zero_results: u64,
    pub clicks: u64,
    pub click_through: f64,
}

/// The shop's searches: the series, the most searched queries, and those that found nothing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchReport {
    #[serde(flatten)]
    pub series: Series<Searches>,
    pub top_queries: Vec<TopQuery>,
    pub zero_result_queries: Vec<TopQuery>,
    /// Searches of queries past the per-day cap, summed.
    pub other_queries: u64,
}

pub fn search(shop: Option<&Shop>, range: &Range, limit: usize) -> SearchReport {
    let mut sum: BTreeMap<&str, QueryDay> = BTreeMap::new();
    let mut other = QueryDay::default();
    for day in days(shop, range) {
        for (query, counts) in &day.queries {
            sum.entry(query.as_str()).or_default().merge(counts);
        }
        other.merge(&day.other_queries);
    }
    let as_query = |(query, counts): (&str, &QueryDay)| TopQuery {
        query: query.to_owned(),
        searches: counts.searches,
        zero_results: counts.zero_results,
        clicks: counts.clicks,
        click_through: ratio(counts.clicks, counts.searches),
    };
    let mut top: Vec<(&str, &QueryDay)> = sum.iter().map(|(q, c)| (*q, c)).collect();
    top.sort_by(|a, b| b.1.searches.cmp(&a.1.searches).then(a.0.cmp(b.0)));
    let mut zero: Vec<(&str, &QueryDay)> = top
        .iter()
        .filter(|(_, c)| c.zero_results > 0)
        .copied()
        .collect();
    zero.sort_by(|a, b| b.1.zero_results.cmp(&a.1.zero_results).then(a.0.cmp(b.0)));
    SearchReport {
        series: series(shop, range, searches_of),
        top_queries: top.into_iter().take(limit).map(as_query).collect(),
        zero_result_queries: zero.into_iter().take(limit).map(as_query).collect(),
        other_queries: other.searches,
    }
}

/// Cancellations and refunds: the series, and by reason and refund tier over the days.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CancellationReport {
    #[serde(flatten)]
    pub series: Series<Sales>,
    pub by_reason: BTreeMap<String, u64>,
    /// Cancellations by the percentage of the order's total refunded.
    pub refund_tiers: BTreeMap<String, u64>,
}

pub fn cancellations(shop: Option<&Shop>, range: &Range) -> CancellationReport {
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let mut tiers: BTreeMap<u32, u64> = BTreeMap::new();
    for day in days(shop, range) {
        for (reason, count) in &day.cancellations_by_reason {
            *by_reason.entry(reason.clone()).or_default() += count;
        }
        for (tier, count) in &day.refund_tiers {
            *tiers.entry(*tier).or_default() += count;
        }
    }
    CancellationReport {
        series: series(shop, range, sales_of),
        by_reason,
        refund_tiers: tiers
            .into_iter()
            .map(|(tier, count)| (format!("{tier}%"), count))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_ist_unless_marked_utc() {
        let midnight = IstDate::from_ymd(2026, 12, 4).unwrap().start_utc_ms();
        assert_eq!(parse_time("2026-12-04"), Some(midnight));
        assert_eq!(
            parse_time("2026-12-04T10:30"),
            Some(midnight + 630 * MINUTE_MS)
        );
        assert_eq!(
            parse_time("2026-12-04T05:00:00Z"),
            Some(midnight + 630 * MINUTE_MS)
        );
        assert_eq!(parse_time("1796236200000"), Some(1_796_236_200_000));
        for bad in [
            "",
            "2026-13-01",
            "2026-12-04T24:00",
            "2026-12-04T10",
            "yesterday",
            "-5",
            "0",
            "99999999999999999999",
            "2101-01-01",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        assert_eq!(label(midnight + 630 * MINUTE_MS), "2026-12-04T10:30+05:30");
    }

    #[test]
    fn ist_hours_days_weeks_and_months_have_their_own_boundaries() {
        let at = parse_time("2026-12-04T10:47").unwrap();
        assert_eq!(label(Grain::Hour.floor(at)), "2026-12-04T10:00+05:30");
        assert_eq!(label(Grain::Day.floor(at)), "2026-12-04T00:00+05:30");
        // 2026-12-04 is a Friday.
        assert_eq!(label(Grain::Week.floor(at)), "2026-11-30T00:00+05:30");
        assert_eq!(label(Grain::Month.floor(at)), "2026-12-01T00:00+05:30");
        assert_eq!(
            label(Grain::Month.next(Grain::Month.floor(at))),
            "2027-01-01T00:00+05:30"
        );
    }

    #[test]
    fn a_range_names_what_is_wrong_with_it() {
        let now = parse_time("2026-12-04T12:00").unwrap();
        let day = 24 * HOUR_MS;
        assert!(Range::new(now - day, now, Grain::Minute, now).is_ok());
        match Range::new(now - 2 * day, now, Grain::Minute, now) {
            Err(RangeError::GrainTooFine(message)) => {
                assert!(message.contains("grain=hour"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        match Range::new(now, now - 1, Grain::Hour, now) {
            Err(RangeError::Invalid(message)) => assert!(message.contains("before"), "{message}"),
            other => panic!("{other:?}"),
        }
        match Range::new(now + day, now + 2 * day, Grain::Hour, now) {
            Err(RangeError::Invalid(message)) => assert!(message.contains("future"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
}
