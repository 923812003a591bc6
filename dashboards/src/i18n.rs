//! The pages' words in English and Hindi (one catalogue, looked up by key), and numbers, money
//! and dates as Indian readers write them: lakh/crore grouping (₹1,23,456.00) and IST dates.

use model::calendar::{IST_OFFSET_MS, IstDate};

/// The language a merchant reads its pages in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Hi,
}

impl Lang {
    pub fn parse(code: &str) -> Option<Lang> {
        match code {
            "en" => Some(Lang::En),
            "hi" => Some(Lang::Hi),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Hi => "hi",
        }
    }

    /// The word for `key`; a key missing from the catalogue shows as "?" (unit tests keep
    /// every key the templates and the page list use in it).
    pub fn t(self, key: &str) -> &'static str {
        match CATALOGUE.iter().find(|(k, _, _)| *k == key) {
            Some((_, en, hi)) => match self {
                Lang::En => en,
                Lang::Hi => hi,
            },
            None => "?",
        }
    }
}

/// `(key, English, Hindi)`.
pub const CATALOGUE: &[(&str, &str, &str)] = &[
    ("skip", "Skip to the numbers", "सीधे आँकड़ों पर जाएँ"),
    ("pages", "Pages", "पृष्ठ"),
    ("sign_in", "Sign in", "साइन इन करें"),
    ("sign_out", "Sign out", "साइन आउट करें"),
    ("with_key", "With an API key", "API कुंजी से"),
    ("with_password", "With a password", "पासवर्ड से"),
    ("api_key", "API key", "API कुंजी"),
    ("merchant_id", "Merchant id", "व्यापारी आईडी"),
    ("password", "Password", "पासवर्ड"),
    ("language", "Language", "भाषा"),
    ("change", "Change", "बदलें"),
    ("today", "Today", "आज"),
    ("sales", "Sales", "बिक्री"),
    ("funnel", "Funnel", "फ़नल"),
    ("products", "Products", "उत्पाद"),
    ("search", "Search", "खोज"),
    ("exports", "Exports", "निर्यात"),
    ("delivery", "Delivery", "डिलीवरी"),
    ("delivered", "Delivered", "डिलीवर हुए"),
    ("on_time_rate", "On time", "समय पर"),
    (
        "tat_p50",
        "Days to deliver (median)",
        "डिलीवरी के दिन (माध्यिका)",
    ),
    ("tat_p90", "Days to deliver (90%)", "डिलीवरी के दिन (90%)"),
    ("mean_slack", "Mean slack", "औसत अंतर"),
    ("days", "days", "दिन"),
    ("courier", "Courier", "कूरियर"),
    ("state", "State", "राज्य"),
    ("by_courier", "By courier", "कूरियर के अनुसार"),
    ("by_state", "By destination state", "गंतव्य राज्य के अनुसार"),
    (
        "on_time_by_courier",
        "On time by courier (%)",
        "कूरियर के अनुसार समय पर (%)",
    ),
    ("late_shipments", "Late shipments", "देर से पहुँची खेप"),
    ("order", "Order", "ऑर्डर"),
    ("promised", "Promised", "वादा"),
    ("on_the_way", "on the way", "रास्ते में"),
    ("ops", "Operations", "संचालन"),
    ("shop", "Shop", "दुकान"),
    ("show", "Show", "दिखाएँ"),
    ("gmv", "GMV", "कुल बिक्री मूल्य"),
    ("orders", "Orders", "ऑर्डर"),
    ("units", "Units", "इकाइयाँ"),
    ("aov", "Average order value", "औसत ऑर्डर मूल्य"),
    ("conversion", "Conversion", "रूपांतरण"),
    ("views", "Views", "व्यू"),
    ("cart_adds", "Cart adds", "कार्ट में जोड़े"),
    ("refunds", "Refunds", "रिफंड"),
    ("refunded", "Refunded", "रिफंड राशि"),
    ("net", "Net", "शुद्ध"),
    ("cancellations", "Cancellations", "रद्दीकरण"),
    ("vs_yesterday", "same time yesterday", "कल इसी समय"),
    ("sales_by_hour", "Sales by hour", "घंटेवार बिक्री"),
    ("yesterday", "Yesterday", "कल"),
    ("from", "From", "से"),
    ("to", "To", "तक"),
    ("grain", "Grain", "अवधि"),
    ("hour", "Hour", "घंटा"),
    ("day", "Day", "दिन"),
    ("week", "Week", "सप्ताह"),
    ("month", "Month", "महीना"),
    ("period", "Period", "अवधि"),
    (
        "by_reason",
        "Cancellations and refunds by reason",
        "कारण के अनुसार रद्दीकरण और रिफंड",
    ),
    ("reason", "Reason", "कारण"),
    ("count", "Count", "संख्या"),
    ("top_sellers", "Top sellers", "सबसे ज़्यादा बिकने वाले"),
    ("product", "Product", "उत्पाद"),
    ("running_low", "Running low", "स्टॉक कम"),
    ("sql_endpoint", "SQL endpoint", "SQL एंडपॉइंट"),
    (
        "trending_now",
        "Trending now in your shop, last",
        "आपकी दुकान में अभी ट्रेंडिंग, पिछले",
    ),
    ("minutes", "min", "मिनट"),
    ("score", "Score", "स्कोर"),
    ("previous_window", "Window before", "पिछली अवधि"),
    ("warehouse", "Warehouse", "गोदाम"),
    ("available", "Available", "उपलब्ध"),
    ("sold_per_day", "Sold a day", "प्रतिदिन बिक्री"),
    ("days_of_cover", "Days of cover", "कितने दिन चलेगा"),
    (
        "restock_lead_days",
        "Restock lead (days)",
        "दोबारा स्टॉक में (दिन)",
    ),
    ("revenue", "Revenue", "आय"),
    ("searches", "Searches", "खोजें"),
    ("zero_results", "Zero results", "कोई परिणाम नहीं"),
    ("clicks", "Clicks", "क्लिक"),
    ("click_through", "Click-through", "क्लिक-थ्रू दर"),
    ("top_queries", "Top queries", "शीर्ष खोजें"),
    (
        "zero_result_queries",
        "Queries with no results",
        "बिना परिणाम वाली खोजें",
    ),
    ("query", "Query", "खोज शब्द"),
    ("workbook", "Workbook (XLSX)", "वर्कबुक (XLSX)"),
    (
        "parquet_sales",
        "Sales lines (Parquet)",
        "बिक्री पंक्तियाँ (Parquet)",
    ),
    ("parquet_summary", "Summary (Parquet)", "सारांश (Parquet)"),
    (
        "exports_note",
        "Each month's finance workbook, built from the lakehouse when you download it; the current month is provisional.",
        "हर महीने की वित्त वर्कबुक, डाउनलोड करते समय लेकहाउस से बनाई जाती है; चालू महीना अस्थायी है।",
    ),
    ("live_from", "Live numbers start at", "लाइव आँकड़े यहाँ से शुरू"),
    ("updated", "Updated", "अद्यतन"),
    (
        "no_data",
        "Nothing yet in this range.",
        "इस अवधि में अभी कुछ नहीं।",
    ),
    ("start", "Start", "आरंभ"),
    ("consumer_lag", "Consumer lag", "उपभोक्ता विलंब"),
    ("stage", "Stage", "चरण"),
    ("topic", "Topic", "टॉपिक"),
    ("partition", "Partition", "विभाजन"),
    ("records", "Records", "रिकॉर्ड"),
    ("events_per_second", "Events per second", "प्रति सेकंड इवेंट"),
    ("events_in", "In", "आए"),
    ("events_out", "Out", "गए"),
    ("dead_letters", "Dead letters", "डेड लेटर"),
    (
        "dead_letters_by_reason",
        "Dead letters by stage and reason",
        "चरण और कारण के अनुसार डेड लेटर",
    ),
    ("latest_dead_letters", "Latest dead letters", "हाल के डेड लेटर"),
    ("when", "When", "कब"),
    ("message", "Message", "संदेश"),
    ("source", "Source", "स्रोत"),
    ("bytes", "Bytes", "बाइट"),
    ("checkpoints", "Checkpoints", "चेकपॉइंट"),
    ("watermark_age", "Watermark age", "वॉटरमार्क की आयु"),
    ("checkpoint_age", "Checkpoint age", "चेकपॉइंट की आयु"),
    ("broker", "Broker", "ब्रोकर"),
    (
        "pipeline",
        "Outbox, lakehouse, search and recommendations",
        "आउटबॉक्स, लेकहाउस, खोज और सुझाव",
    ),
    ("metric", "Metric", "मीट्रिक"),
    ("value", "Value", "मान"),
    ("error", "Something went wrong", "कुछ गलत हो गया"),
    ("back", "Back to your shop", "अपनी दुकान पर वापस"),
    (
        "chart_table",
        "The numbers behind the chart",
        "चार्ट के पीछे के आँकड़े",
    ),
];

/// `n` grouped as Indian readers group it: the last three digits, then pairs (1,23,45,678).
pub fn group_indian(n: u64) -> String {
    let digits = n.to_string();
    if digits.len() <= 3 {
        return digits;
    }
    let (head, last3) = digits.split_at(digits.len() - 3);
    let mut pairs = Vec::new();
    let mut rest = head;
    while rest.len() > 2 {
        let (left, pair) = rest.split_at(rest.len() - 2);
        pairs.push(pair);
        rest = left;
    }
    let mut out = rest.to_owned();
    for pair in pairs.iter().rev() {
        out.push(',');
        out.push_str(pair);
    }
    out.push(',');
    out.push_str(last3);
    out
}

/// A count, Indian grouping.
pub fn count(n: u64) -> String {
    group_indian(n)
}

/// Minor units of `currency` as money: `₹1,23,456.00` for rupees, the code before other
/// currencies (`USD 1,23,456.00`), a minus sign in front when negative.
pub fn money(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.unsigned_abs();
    let amount = format!("{}.{:02}", group_indian(minor / 100), minor % 100);
    match currency {
        "INR" => format!("{sign}₹{amount}"),
        other => format!("{sign}{other} {amount}"),
    }
}

/// A share as a percentage with one decimal.
pub fn percent(share: f64) -> String {
    if share.is_finite() {
        format!("{:.1}%", share * 100.0)
    } else {
        "–".to_owned()
    }
}

const MONTHS_EN: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const MONTHS_HI: [&str; 12] = [
    "जनवरी",
    "फ़रवरी",
    "मार्च",
    "अप्रैल",
    "मई",
    "जून",
    "जुलाई",
    "अगस्त",
    "सितंबर",
    "अक्टूबर",
    "नवंबर",
    "दिसंबर",
];

/// A month's name in `lang`.
pub fn month_name(lang: Lang, month: u32) -> &'static str {
    let index = (month.clamp(1, 12) - 1) as usize;
    match lang {
        Lang::En => MONTHS_EN[index],
        Lang::Hi => MONTHS_HI[index],
    }
}

/// An instant as a date and time in IST, day first: `4 Dec 2026, 14:05`.
pub fn date_time(lang: Lang, utc_ms: i64) -> String {
    let (year, month, day) = IstDate::of_instant(utc_ms).ymd();
    let minute = (utc_ms + IST_OFFSET_MS).rem_euclid(86_400_000) / 60_000;
    format!(
        "{day} {} {year}, {:02}:{:02}",
        month_name(lang, month),
        minute / 60,
        minute % 60
    )
}

/// An answer's point label (`2026-12-04T14:00+05:30`, IST) shortened for a table row: the
/// hour for hourly points of one day, else the day first date.
pub fn point_label(lang: Lang, label: &str, hourly: bool) -> String {
    let date = label.get(..10).and_then(|d| IstDate::parse(d).ok());
    let time = label.get(11..16).unwrap_or_default();
    match date {
        Some(_) if hourly => time.to_owned(),
        Some(date) => {
            let (year, month, day) = date.ymd();
            format!("{day} {} {year}", month_name(lang, month))
        }
        None => label.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indian_grouping_puts_commas_after_the_thousands_in_pairs() {
        assert_eq!(group_indian(0), "0");
        assert_eq!(group_indian(999), "999");
        assert_eq!(group_indian(1_000), "1,000");
        assert_eq!(group_indian(123_456), "1,23,456");
        assert_eq!(group_indian(12_345_678), "1,23,45,678");
        assert_eq!(group_indian(1_000_000_000), "1,00,00,00,000");
    }

    #[test]
    fn money_reads_as_rupees_and_paise() {
        assert_eq!(money(12_345_600, "INR"), "₹1,23,456.00");
        assert_eq!(money(-5, "INR"), "-₹0.05");
        assert_eq!(money(150_075, "USD"), "USD 1,500.75");
    }

    #[test]
    fn dates_are_ist_and_day_first() {
        // 2026-12-04 08:35 UTC is 14:05 IST.
        let at = 1_796_373_300_000;
        assert_eq!(date_time(Lang::En, at), "4 Dec 2026, 14:05");
        assert_eq!(date_time(Lang::Hi, at), "4 दिसंबर 2026, 14:05");
        assert_eq!(
            point_label(Lang::En, "2026-12-04T14:00+05:30", true),
            "14:00"
        );
        assert_eq!(
            point_label(Lang::Hi, "2026-12-04T00:00+05:30", false),
            "4 दिसंबर 2026"
        );
    }

    #[test]
    fn every_key_the_templates_use_is_in_the_catalogue_in_both_languages() {
        let templates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut used = Vec::new();
        for entry in std::fs::read_dir(&templates).expect("templates folder") {
            let text = std::fs::read_to_string(entry.expect("entry").path()).expect("template");
            for piece in text.split(".t(\"").skip(1) {
                if let Some(key) = piece.split('"').next() {
                    used.push(key.to_owned());
                }
            }
        }
        assert!(used.len() > 20, "found only {used:?}");
        for key in used {
            let entry = CATALOGUE.iter().find(|(k, _, _)| *k == key);
            let Some((_, en, hi)) = entry else {
                panic!("{key:?} is used by a template and missing from the catalogue");
            };
            assert!(!en.is_empty() && !hi.is_empty(), "{key:?} lacks a language");
        }
    }
}
