//! The dashboards' routes (sign-in, sign-out and passwords are `account`'s), and the pages:
//! the shop's pages (each a page and its panel, which the Today page refreshes through htmx),
//! the operations page, the embedded assets.
//!
//! A merchant's pages show its own shop only: the shop comes from the session, and a URL
//! naming another one is refused without a word of that shop. Admins choose any shop with
//! `?merchant=`.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRef, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use runtime::http::auth::{Authenticator, Keys, Limiter, Role};
use runtime::http::{ApiError, query_pairs};
use runtime::metrics::Registry;
use runtime::now_ms;
use runtime::reports::ShopSources;
use serde_json::Value;
use utoipa::OpenApi;

use crate::dead_letters::DeadLetters;
use crate::i18n::{self, Lang};
use crate::ops::{self, Rates};
use crate::passwords::Passwords;
use crate::render::{self, Chrome, ExportMonth, NavItem, Page, Panel, RangeForm};
use crate::session::{Lookup, Session, Sessions};
use crate::{DashboardsConfig, account, views};

/// The embedded files each page loads, for the page-weight figures.
pub const PAGE_ASSETS: &[(&str, &[&str])] = &[
    (
        "today",
        &[
            "fonts.css",
            "uplot.css",
            "dash.css",
            "htmx.js",
            "uplot.js",
            "dash.js",
            "latin-400.woff2",
            "latin-700.woff2",
        ],
    ),
    (
        "funnel",
        &[
            "fonts.css",
            "uplot.css",
            "dash.css",
            "htmx.js",
            "uplot.js",
            "echarts.js",
            "dash.js",
            "latin-400.woff2",
            "latin-700.woff2",
        ],
    ),
    (
        "signin",
        &[
            "fonts.css",
            "dash.css",
            "latin-400.woff2",
            "latin-700.woff2",
        ],
    ),
];

/// What a page in Hindi loads on top.
pub const HINDI_FONTS: &[&str] = &["devanagari-400.woff2", "devanagari-700.woff2"];

/// The shop pages, in menu order; `ops` is the admins'. Each name is also its catalogue key.
const SHOP_PAGES: [&str; 7] = [
    "today", "sales", "funnel", "products", "search", "delivery", "exports",
];

pub(crate) struct Inner {
    pub(crate) config: DashboardsConfig,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) passwords: Passwords,
    pub(crate) keys: Arc<dyn Keys>,
    pub(crate) sources: ShopSources,
    pub(crate) metrics: Registry,
    pub(crate) sign_ins: Limiter,
    pub(crate) api_limiter: Arc<Limiter>,
    pub(crate) rates: Rates,
    pub(crate) dead_letters: Arc<DeadLetters>,
    /// Password checks running at once (one per core).
    pub(crate) password_checks: tokio::sync::Semaphore,
    /// Page and panel requests per signed-in caller, like the analytics route's per key.
    pub(crate) page_limiter: Limiter,
    pub(crate) counters: account::Counters,
}

#[derive(Clone)]
pub(crate) struct Dash(pub(crate) Arc<Inner>);

impl Dash {
    pub(crate) fn new(
        config: DashboardsConfig,
        sessions: Arc<Sessions>,
        passwords: Passwords,
        keys: Arc<dyn Keys>,
        sources: ShopSources,
        metrics: Registry,
        dead_letters: Arc<DeadLetters>,
    ) -> Dash {
        let sign_ins = Limiter::new(config.sign_in_rate);
        let counters = account::Counters::registered(&metrics);
        let page_limiter = Limiter::new(config.page_rate);
        Dash(Arc::new(Inner {
            config,
            sessions,
            passwords,
            keys,
            sources,
            sign_ins,
            api_limiter: Arc::new(Limiter::new(Default::default())),
            rates: Rates::default(),
            dead_letters,
            password_checks: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, usize::from),
            ),
            page_limiter,
            counters,
            metrics,
        }))
    }
}

impl FromRef<Dash> for Authenticator {
    fn from_ref(dash: &Dash) -> Authenticator {
        Authenticator {
            keys: Arc::clone(&dash.0.keys),
            limiter: Arc::clone(&dash.0.api_limiter),
        }
    }
}

pub(crate) fn routes(dash: Dash) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/signin", get(account::sign_in_form).post(account::sign_in))
        .route("/signout", post(account::sign_out))
        .route("/dashboard", get(home))
        .route("/dashboard/language", post(account::language))
        .route("/dashboard/{page}", get(full_page))
        .route("/dashboard/{page}/panel", get(panel_only))
        .route("/assets/{file}", get(crate::assets::serve))
        .route(
            "/v1/merchants/{merchant_id}/dashboard-password",
            put(account::set_password),
        )
        .with_state(dash)
}

#[derive(OpenApi)]
#[openapi(
    paths(account::set_password),
    components(schemas(account::NewPassword)),
    tags((name = "dashboards", description = "merchants' pages in the browser"))
)]
struct ApiDoc;

pub(crate) fn api() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub(crate) fn cookies(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::COOKIE).and_then(|v| v.to_str().ok())
}

fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// The signed-in session, or the response that sends the browser to sign in (saying why).
pub(crate) async fn signed_in(
    dash: &Dash,
    headers: &HeaderMap,
) -> Result<(String, Session), Response> {
    let (status, message) = match dash.0.sessions.lookup(cookies(headers), now_ms()).await {
        Lookup::SignedIn(id, session) => return Ok((id, session)),
        Lookup::Absent if !is_htmx(headers) => return Err(render::see_other("/signin")),
        Lookup::Absent => (StatusCode::UNAUTHORIZED, "Sign in to see your shop."),
        Lookup::Forged => (
            StatusCode::UNAUTHORIZED,
            "Your sign-in cookie was not issued by this server, so it was ignored. Sign in again.",
        ),
        Lookup::Expired => (
            StatusCode::UNAUTHORIZED,
            "Your session has ended (it expired, you signed out, its key was revoked or its password changed). Sign in again.",
        ),
        Lookup::Unavailable => {
            let mut response = render::error_page(
                Lang::En,
                StatusCode::SERVICE_UNAVAILABLE,
                "Keys cannot be checked right now; try again in a moment (you are still signed in).",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Err(response);
        }
    };
    if is_htmx(headers) {
        let mut response = status.into_response();
        response.headers_mut().insert(
            "hx-redirect",
            HeaderValue::from_static("/signin?why=expired"),
        );
        return Err(response);
    }
    Err(render::sign_in_page(Lang::En, status, message, true))
}

/// Takes a page token for the signed-in caller: a page's panel runs several analytics
/// answers, so pages are limited per caller as the analytics route is per key.
/// `None` when the caller may go on; else the refusal to send.
fn take_page_token(dash: &Dash, session: &Session, htmx: bool) -> Option<Response> {
    let wait = dash
        .0
        .page_limiter
        .take(&session.caller.key_hash, Instant::now())
        .err()?;
    let message = format!("Too many pages at once; this one is back in {wait} s.");
    let mut response = if htmx {
        render::html(
            StatusCode::TOO_MANY_REQUESTS,
            format!("<p class=\"notice\" role=\"status\">{message}</p>"),
        )
    } else {
        render::error_page(session.lang, StatusCode::TOO_MANY_REQUESTS, message)
    };
    if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    Some(response)
}

/// The session a page or panel request is made in, its page token taken.
async fn page_session(dash: &Dash, headers: &HeaderMap, htmx: bool) -> Result<Session, Response> {
    let (_, session) = signed_in(dash, headers).await?;
    match take_page_token(dash, &session, htmx) {
        Some(refusal) => Err(refusal),
        None => Ok(session),
    }
}

async fn home(State(dash): State<Dash>, headers: HeaderMap) -> Response {
    match signed_in(&dash, &headers).await {
        Ok((_, session)) if session.caller.role == Role::Admin => {
            render::see_other("/dashboard/ops")
        }
        Ok(_) => render::see_other("/dashboard/today"),
        Err(response) => response,
    }
}

/// What a page request asks for, checked against who is asking.
#[derive(Clone)]
struct Asked {
    page: &'static str,
    /// The shop shown, if any (admins may not have chosen one).
    shop: Option<String>,
    params: Vec<(String, String)>,
}

/// Why a page request is refused: its status and what to tell the person.
type Refusal = (StatusCode, String);

fn asked(session: &Session, page: &str, raw: Option<&str>) -> Result<Asked, Refusal> {
    let page = SHOP_PAGES
        .iter()
        .chain(["ops"].iter())
        .find(|p| **p == page)
        .copied()
        .ok_or_else(|| refusal(StatusCode::NOT_FOUND, "There is no such page."))?;
    let pairs = query_pairs(raw).map_err(|e| refusal(StatusCode::BAD_REQUEST, e.message))?;
    let allowed: &[&str] = match page {
        "sales" => &["merchant", "from", "to", "grain"],
        "funnel" | "products" | "search" | "delivery" => &["merchant", "from", "to"],
        _ => &["merchant"],
    };
    if let Some((name, _)) = pairs
        .iter()
        .find(|(name, _)| !allowed.contains(&name.as_str()))
    {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            format!(
                "This page does not take {name:?}; it takes {}.",
                allowed.join(", ")
            ),
        ));
    }
    let named = pairs
        .iter()
        .find(|(name, _)| name == "merchant")
        .map(|(_, v)| v.clone());
    let shop = match session.caller.role {
        Role::Admin => named.filter(|m| !m.is_empty()),
        _ => {
            let own = session
                .caller
                .merchant_id
                .as_ref()
                .map(|m| m.as_str().to_owned());
            if named.is_some() && named != own {
                return Err(refusal(
                    StatusCode::FORBIDDEN,
                    "A merchant's dashboard shows only its own shop.",
                ));
            }
            own
        }
    };
    if page == "ops" && session.caller.role != Role::Admin {
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "The operations page is for admins.",
        ));
    }
    Ok(Asked {
        page,
        shop,
        params: pairs,
    })
}

fn refusal(status: StatusCode, message: impl Into<String>) -> Refusal {
    (status, message.into())
}

fn chrome(dash: &Dash, session: &Session, asked: &Asked) -> Chrome {
    let lang = session.lang;
    let admin = session.caller.role == Role::Admin;
    let merchant_field = if admin {
        asked.shop.clone().unwrap_or_default()
    } else {
        String::new()
    };
    let suffix = if merchant_field.is_empty() {
        String::new()
    } else {
        format!(
            "?{}",
            serde_urlencoded::to_string([("merchant", &merchant_field)]).unwrap_or_default()
        )
    };
    let mut pages: Vec<&'static str> = SHOP_PAGES.to_vec();
    if admin {
        pages.push("ops");
    }
    let nav = pages
        .into_iter()
        .map(|page| NavItem {
            href: format!(
                "/dashboard/{page}{}",
                if page == "ops" { "" } else { suffix.as_str() }
            ),
            label: lang.t(page),
            current: page == asked.page,
        })
        .collect();
    let who = match (&session.caller.role, &session.caller.merchant_id) {
        (Role::Admin, _) => "admin".to_owned(),
        (_, Some(merchant)) => merchant.to_string(),
        _ => String::new(),
    };
    Chrome {
        lang,
        page: asked.page,
        nav,
        who,
        shop: asked.shop.clone().unwrap_or_default(),
        merchant_field,
        csrf: session.csrf.clone(),
        path: format!("/dashboard/{}", asked.page),
        back: format!(
            "/dashboard/{}{}",
            asked.page,
            if asked.page == "ops" {
                ""
            } else {
                suffix.as_str()
            }
        ),
        needs_echarts: matches!(asked.page, "funnel" | "products" | "delivery"),
        refresh_seconds: dash.0.config.refresh_seconds,
    }
}

/// A panel: its HTML, the notice to show above it, and the status to answer with.
struct Built {
    html: String,
    notice: Option<String>,
    status: StatusCode,
    range: Option<RangeForm>,
}

async fn full_page(
    State(dash): State<Dash>,
    Path(page): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let session = match page_session(&dash, &headers, false).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let asked = match asked(&session, &page, raw.as_deref()) {
        Ok(asked) => asked,
        Err((status, message)) => return render::error_page(session.lang, status, message),
    };
    let chrome = chrome(&dash, &session, &asked);
    let needs_shop = asked.page != "ops";
    let built = if needs_shop && asked.shop.is_none() {
        Built {
            html: String::new(),
            notice: None,
            status: StatusCode::OK,
            range: None,
        }
    } else {
        build_off_runtime(&dash, session.lang, &asked).await
    };
    let refresh = (asked.page == "today" && asked.shop.is_some()).then(|| {
        format!(
            "/dashboard/today/panel{}",
            match chrome.merchant_field.as_str() {
                "" => String::new(),
                shop => format!(
                    "?{}",
                    serde_urlencoded::to_string([("merchant", shop)]).unwrap_or_default()
                ),
            }
        )
    });
    let template = Page {
        choose_shop: needs_shop && asked.shop.is_none(),
        chrome,
        range: built.range,
        notice: built.notice,
        refresh,
        panel: built.html,
    };
    render::page(built.status, &template)
}

async fn panel_only(
    State(dash): State<Dash>,
    Path(page): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let session = match page_session(&dash, &headers, true).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let asked = match asked(&session, &page, raw.as_deref()) {
        Ok(asked) if asked.shop.is_some() || asked.page == "ops" => asked,
        Ok(_) => {
            return render::error_page(
                session.lang,
                StatusCode::BAD_REQUEST,
                "Choose a shop with ?merchant=.",
            );
        }
        Err((status, message)) => return render::error_page(session.lang, status, message),
    };
    let built = build_off_runtime(&dash, session.lang, &asked).await;
    let notice = built
        .notice
        .map(|n| format!("<p class=\"notice\" role=\"status\">{}</p>", escape(&n)))
        .unwrap_or_default();
    render::html(built.status, format!("{notice}{}", built.html))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const DAY_MS: i64 = 86_400_000;

/// The range the page's `from`/`to` (IST dates, `to` included) ask for, as the analytics
/// query string and the form's values; by default yesterday and today.
fn range_of(
    asked: &Asked,
    with_grain: bool,
    lang: Lang,
    now: i64,
    live_from: Option<i64>,
) -> Result<(String, RangeForm), String> {
    let value = |name: &str| {
        asked
            .params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let today = views::day_start(now);
    let date = |name: &str, default: i64| -> Result<i64, String> {
        match value(name) {
            None => Ok(default),
            Some(text) => model::calendar::IstDate::parse(text)
                .map(|d| d.start_utc_ms())
                .map_err(|_| format!("{name} {text:?} is not a date (YYYY-MM-DD)")),
        }
    };
    let asked_from = value("from").is_some();
    let mut from = date("from", today - DAY_MS)?;
    let to_day = date("to", today)?;
    if to_day < from {
        return Err("The range ends before it starts.".into());
    }
    // The default range (yesterday and today) starts where the live window does when that
    // is later; a range the visitor chose is left as asked, so a refusal names it.
    if !asked_from && let Some(live_from) = live_from {
        from = from.max(live_from);
    }
    let end = (to_day + DAY_MS).min(now - now.rem_euclid(60_000) + 60_000);
    let grain = value("grain").unwrap_or("hour");
    let grains = ["hour", "day", "week", "month"];
    if with_grain && !grains.contains(&grain) {
        return Err(format!(
            "grain {grain:?} is not one of hour, day, week, month"
        ));
    }
    let mut query = format!("from={from}&to={end}&limit=20");
    if with_grain {
        query.push_str(&format!("&grain={grain}"));
    } else {
        query.push_str("&grain=hour");
    }
    let form = RangeForm {
        from: model::calendar::IstDate::of_instant(from).to_string(),
        to: model::calendar::IstDate::of_instant(to_day).to_string(),
        grains: if with_grain {
            grains
                .iter()
                .map(|g| (*g, lang.t(g), *g == grain))
                .collect()
        } else {
            Vec::new()
        },
    };
    Ok((query, form))
}

/// [`build`] on a blocking thread: a panel takes the analytics state's lock and encodes
/// several answers, which is not work for the I/O runtime's workers.
async fn build_off_runtime(dash: &Dash, lang: Lang, asked: &Asked) -> Built {
    let (dash, asked) = (dash.clone(), asked.clone());
    tokio::task::spawn_blocking(move || build(&dash, lang, &asked))
        .await
        .unwrap_or_else(|error| Built {
            html: String::new(),
            notice: Some(format!("the page could not be built: {error}")),
            status: StatusCode::INTERNAL_SERVER_ERROR,
            range: None,
        })
}

fn build(dash: &Dash, lang: Lang, asked: &Asked) -> Built {
    let shop = asked.shop.clone().unwrap_or_default();
    let mut built = Built {
        html: String::new(),
        notice: None,
        status: StatusCode::OK,
        range: None,
    };
    let now = now_ms();
    let render_panel = |panel: Panel| askama::Template::render(&panel).unwrap_or_default();
    match asked.page {
        "ops" => {
            let view = dash
                .0
                .rates
                .view(lang, &dash.0.metrics.render(), now, Instant::now());
            let (counts, latest) = dash.0.dead_letters.snapshot();
            let mut tables = view.tables;
            tables.extend(ops::dead_letters(lang, &counts, &latest));
            built.html = render_panel(Panel {
                lang,
                cards: vec![],
                charts: vec![],
                tables,
                footnote: String::new(),
            });
        }
        "exports" => {
            let path = percent_segment(&shop);
            let months = (0..12)
                .map(|back| {
                    let period = views::month_before(now, back);
                    let link =
                        |rest: &str| format!("/v1/merchants/{path}/exports?period={period}{rest}");
                    ExportMonth {
                        label: period.clone(),
                        xlsx: link("&format=xlsx"),
                        sales_lines: link("&format=parquet&sheet=sales_lines"),
                        summary: link("&format=parquet&sheet=summary"),
                    }
                })
                .collect();
            built.html =
                askama::Template::render(&render::Exports { lang, months }).unwrap_or_default();
        }
        page => {
            let Some(reports) = &dash.0.sources.reports else {
                built.notice = Some("Live analytics do not run in this process (start `shopstream demo` or `serve`, or the analytics role beside the dashboards).".into());
                built.status = StatusCode::SERVICE_UNAVAILABLE;
                return built;
            };
            let report = |metric: &str, query: &str| reports.report(&shop, metric, Some(query));
            let inr = &dash.0.config.inr_per_unit;
            let live_from = reports.live_from();
            let outcome = if page == "today" {
                today(lang, inr, now, live_from, report)
            } else {
                match range_of(asked, page == "sales", lang, now, live_from) {
                    Err(message) => Err(ApiError::invalid(message)),
                    Ok((query, form)) => {
                        built.range = Some(form);
                        ranged(lang, inr, page, &query, report, || {
                            views::shop_products(lang, reports.as_ref(), &dash.0.sources, &shop)
                        })
                    }
                }
            };
            match outcome {
                Ok(panel) => built.html = render_panel(panel),
                Err(error) => {
                    built.status = error.status();
                    built.notice = Some(error.message);
                }
            }
        }
    }
    built
}

fn today(
    lang: Lang,
    inr: &views::InrRates,
    now: i64,
    live_from: Option<i64>,
    report: impl Fn(&str, &str) -> Result<Value, ApiError>,
) -> Result<Panel, ApiError> {
    let start = views::day_start(now);
    let end = now - now.rem_euclid(60_000) + 60_000;
    // Yesterday reaches back further than a short live window (or, just before midnight,
    // further than the 48 hours behind an event stamped a little ahead): what the window
    // lacks counts as nothing, rather than failing the whole panel.
    let hourly = |metric: &str, from: i64, to: i64| -> Result<Value, ApiError> {
        let from = from.max(live_from.unwrap_or(from));
        if from >= to {
            return Ok(Value::Null);
        }
        report(metric, &format!("from={from}&to={to}&grain=hour"))
    };
    let view = views::today(
        lang,
        inr,
        &hourly("sales", start, end)?,
        &hourly("sales", start - DAY_MS, end - DAY_MS)?,
        &hourly("sales", start - DAY_MS, start)?,
        &hourly("funnel", start, end)?,
        &hourly("funnel", start - DAY_MS, end - DAY_MS)?,
    );
    Ok(Panel {
        lang,
        cards: view.cards,
        charts: vec![view.by_hour],
        tables: vec![],
        footnote: format!(
            "{} {} · {} {}",
            lang.t("updated"),
            i18n::date_time(lang, now),
            lang.t("live_from"),
            view.live_from
        ),
    })
}

fn ranged(
    lang: Lang,
    inr: &views::InrRates,
    page: &str,
    query: &str,
    report: impl Fn(&str, &str) -> Result<Value, ApiError>,
    product_tables: impl Fn() -> Result<Vec<views::Table>, ApiError>,
) -> Result<Panel, ApiError> {
    let mut panel = Panel {
        lang,
        cards: vec![],
        charts: vec![],
        tables: vec![],
        footnote: String::new(),
    };
    match page {
        "sales" => {
            let (cards, chart, reasons) = views::sales(
                lang,
                inr,
                &report("sales", query)?,
                &report("refunds", query)?,
            );
            panel.cards = cards;
            panel.charts.push(chart);
            panel.tables.push(reasons);
        }
        "funnel" => {
            let (cards, chart, per_point) = views::funnel(lang, &report("funnel", query)?);
            panel.cards = cards;
            panel.charts.push(chart);
            panel.tables.push(per_point);
        }
        "products" => {
            panel
                .charts
                .push(views::products(lang, inr, &report("products", query)?));
            panel.tables.extend(product_tables()?);
        }
        "delivery" => {
            let (cards, chart, by_state, late) = views::delivery(lang, &report("delivery", query)?);
            panel.cards = cards;
            panel.charts.push(chart);
            panel.tables.extend([by_state, late]);
        }
        _ => {
            let (cards, chart, top, zero) = views::search(lang, &report("search", query)?);
            panel.cards = cards;
            panel.charts.push(chart);
            panel.tables.extend([top, zero]);
        }
    }
    Ok(panel)
}

/// A merchant id as one path segment.
fn percent_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_has_a_title_in_both_languages() {
        for page in SHOP_PAGES.iter().chain(["ops"].iter()) {
            for lang in [Lang::En, Lang::Hi] {
                assert_ne!(lang.t(page), "?", "{page} has no {lang:?} title");
            }
        }
    }
}
