//! `shopstream-bench analytics --dashboards`: the dashboards over the analytics bench's live
//! window. Signed in as the admin: freshness (an order produced until the Today panel shows
//! it, polled as fast as the bench can; a browser adds up to `refresh_seconds`), the panels
//! (every data call a page makes) and the whole pages under `wrk`, and each page's weight.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use model::payload::{OrderLine, OrderPlaced};
use model::{CustomerId, Envelope, Event, MerchantId, Money, OrderId, Pincode, ProductId};

const PAGES: [&str; 5] = ["today", "sales", "funnel", "products", "search"];

/// Signs in through the form as `key`; the session cookie (`name=value`).
async fn sign_in(http: &reqwest::Client, base: &str, key: &str) -> Result<String> {
    let cookie_of = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
    };
    let form = http.get(format!("{base}/signin")).send().await?;
    let token = cookie_of(&form, "shopstream_signin").context("no sign-in token cookie")?;
    let value = token.trim_start_matches("shopstream_signin=").to_owned();
    let signed = http
        .post(format!("{base}/signin"))
        .header("cookie", &token)
        .form(&[("csrf", value.as_str()), ("lang", "en"), ("key", key)])
        .send()
        .await?;
    cookie_of(&signed, "shopstream_session").context("signing in gave no session")
}

/// The number on the Today panel's orders card.
fn orders_card(html: &str) -> Option<u64> {
    let card = html.split("data-card=\"orders\"").nth(1)?;
    let value = card.split("class=\"value\">").nth(1)?;
    value
        .split('<')
        .next()?
        .replace(',', "")
        .trim()
        .parse()
        .ok()
}

fn probe(i: usize, pincode: Pincode) -> Envelope {
    Envelope::new(
        uuid::Uuid::now_v7(),
        runtime::now_ms(),
        MerchantId::new("m-dash"),
        Event::OrderPlaced(OrderPlaced {
            order_id: OrderId::new(format!("dash-{i}")),
            customer_id: CustomerId::new("c-1"),
            session_id: None,
            lines: vec![OrderLine {
                product_id: ProductId::new("p-dash"),
                quantity: 1,
                unit_price: Money::inr(49_900),
                gst_bps: None,
            }],
            delivery_pincode: pincode,
            total: Money::inr(49_900),
        }),
    )
}

fn lua(dir: &Path, name: &str, paths: &[String], cookie: &str) -> Result<std::path::PathBuf> {
    let script = dir.join(name);
    let mut lua = std::fs::File::create(&script)?;
    writeln!(lua, "local paths = {{")?;
    for path in paths {
        writeln!(lua, "  \"{path}\",")?;
    }
    writeln!(
        lua,
        "}}\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(\"GET\", paths[i], {{[\"Cookie\"] = \"{cookie}\", [\"Accept-Encoding\"] = \"gzip\"}})\nend"
    )?;
    Ok(script)
}

#[allow(clippy::too_many_arguments)]
pub async fn measure(
    base: &str,
    admin_key: &str,
    producer: &bus::Producer,
    shops: &[String],
    samples: usize,
    connections: usize,
    seconds: u64,
    dir: &Path,
) -> Result<()> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let cookie = sign_in(&http, base, admin_key).await?;

    // Freshness: produced -> on the Today panel.
    let pincode = Pincode::parse("560034").context("pincode")?;
    let panel = format!("{base}/dashboard/today/panel?merchant=m-dash");
    let mut waits = Vec::with_capacity(samples);
    for i in 0..samples {
        let sent = Instant::now();
        producer.send_event(&probe(i, pincode)).await?;
        loop {
            let html = http
                .get(&panel)
                .header("cookie", &cookie)
                .send()
                .await?
                .text()
                .await?;
            if orders_card(&html) == Some(i as u64 + 1) {
                break;
            }
            if sent.elapsed() > Duration::from_secs(30) {
                bail!("probe {i} not on the Today panel after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        waits.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    waits.sort_by(f64::total_cmp);
    let at = |q: f64| waits[((waits.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "dashboards freshness, order produced -> on the Today panel, {samples} probes: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (an open page asks every refresh_seconds on top)",
        at(0.5),
        at(0.99),
        at(1.0)
    );

    // Every panel (a page's data call) and every whole page, each shop in turn.
    let mut panels = Vec::new();
    let mut pages = Vec::new();
    for shop in shops {
        for page in PAGES {
            panels.push(format!("/dashboard/{page}/panel?merchant={shop}"));
            pages.push(format!("/dashboard/{page}?merchant={shop}"));
        }
    }
    for (what, paths) in [
        ("panels (data calls)", &panels),
        ("whole pages (server render)", &pages),
    ] {
        let script = lua(dir, "dashboards.lua", paths, &cookie)?;
        println!(
            "dashboards {what}, {} shops x {} pages:",
            shops.len(),
            PAGES.len()
        );
        println!(
            "{}",
            crate::load::wrk(&script, base, connections, seconds).await?
        );
    }

    // Page weight: the HTML as sent, and the embedded files it loads (gzip where taken).
    let assets = dashboards::assets::Assets::get();
    for (page, files) in dashboards::PAGE_ASSETS {
        let path = match *page {
            "signin" => "/signin".to_owned(),
            page => format!("/dashboard/{page}?merchant={}", shops[0]),
        };
        let html = http
            .get(format!("{base}{path}"))
            .header("cookie", &cookie)
            .send()
            .await?
            .bytes()
            .await?
            .len();
        let (plain, sent) = assets.weight(files);
        println!(
            "page weight {page}: HTML {html} B; scripts, styles and fonts {plain} B ({sent} B sent gzip)"
        );
    }
    let (fonts, _) = assets.weight(dashboards::HINDI_FONTS);
    println!("a page in Hindi loads the Devanagari fonts on top: {fonts} B");
    Ok(())
}
