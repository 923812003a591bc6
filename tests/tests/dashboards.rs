//! The dashboards as merchants meet them: `shopstream demo` (the real binary's stage list) with
//! two shops, A and B, driven in Debian's Chromium by Playwright (`tests/python/
//! dashboards_browser.py`): sign in, the Today numbers equal SQL over the lakehouse, every
//! chart drawn, a new order on the open page by itself, Hindi, a phone, sign-out, a forged
//! cookie, a wrong password, the admin's operations view, screenshots of every page. Then
//! tenant isolation: every route that names a shop's resource, called as A (with A's key, and
//! with A's signed-in cookie) with B's ids, answers 403 or 404 without a word of B's data.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use reqwest::Method as M;
use serde_json::{Value, json};
use testkit::api::Client;
use testkit::demo::Demo;

const PASSWORD_B: &str = "bee keeps 12 hives";
const B_TITLE: &str = "Secret Bee Saree";
const B_COURIER: &str = "cr-bee-secret";

/// Where the browser test leaves its screenshots (the README names it).
fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("dashboard-screenshots")
}

fn order(merchant: &str, product: &str, customer: &str, quantity: u32) -> Value {
    json!({
        "merchant_id": merchant, "customer_id": customer, "session_id": null,
        "delivery_pincode": "560042", "currency": "INR",
        "lines": [{"product_id": product, "quantity": quantity}]
    })
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn psql(port: u16, password: &str, sql: &str) -> Result<String> {
    testkit::tools::run_output(
        Command::new(testkit::tools::psql()?)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "analyst"])
            .args([
                "-d",
                "shopstream",
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(["-c", sql])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10"),
    )
    .map(|out| out.trim().to_owned())
}

struct Shops {
    client: Client,
    admin: String,
    key_a: String,
    key_b: String,
    storefront: String,
    order_b: String,
    gmv_b_minor: i64,
}

async fn two_shops(demo: &Demo) -> Result<Shops> {
    let client = Client {
        http: reqwest::Client::new(),
        base: format!("http://{}", demo.http),
    };
    let admin = demo.admin_key()?;
    let key_a = testkit::api::merchant(&client, &admin, "m-a").await?;
    let key_b = testkit::api::merchant(&client, &admin, "m-b").await?;
    testkit::api::listed(&client, &key_a, "p-a", None, 1_000).await?;
    let listing = json!({
        "category": "apparel", "brand": "Bee", "title": B_TITLE,
        "price": {"amount_minor": 77_731, "currency": "INR"}
    });
    client
        .ok(M::PUT, "/v1/products/p-b", &key_b, Some(listing), &[])
        .await?;
    client
        .ok(
            M::POST,
            "/v1/products/p-b/stock",
            &key_b,
            Some(json!({"delta": 100, "reason": "receipt"})),
            &[],
        )
        .await?;
    let warehouse = json!({
        "pincode": "560001", "cutoff": "23:59", "handling_days": 1,
        "working_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    });
    client
        .ok(M::PUT, "/v1/warehouses/w-b", &key_b, Some(warehouse), &[])
        .await?;
    let storefront = testkit::api::storefront(&client, &admin).await?;
    let place =
        |merchant: &'static str, product: &'static str, customer: &'static str, quantity| {
            let (client, storefront) = (&client, &storefront);
            async move {
                let idempotency = uuid::Uuid::now_v7().to_string();
                client
                    .ok(
                        M::POST,
                        "/v1/orders",
                        storefront,
                        Some(order(merchant, product, customer, quantity)),
                        &[("idempotency-key", &idempotency)],
                    )
                    .await
            }
        };
    let first_a = place("m-a", "p-a", "c-a", 1).await?;
    place("m-a", "p-a", "c-a", 2).await?;
    // A sells out of its other product: its Products page shows it running low.
    testkit::api::listed(&client, &key_a, "p-a-low", None, 2).await?;
    let sold_out = place("m-a", "p-a-low", "c-a", 2).await?;
    let sold_out = sold_out["order_id"].as_str().context("order id")?;
    testkit::api::paid_and_packed(&client, sold_out, &storefront, &key_a).await?;
    let placed = place("m-b", "p-b", "c-b", 3).await?;
    let order_b = placed["order_id"].as_str().context("order id")?.to_owned();
    let gmv_b_minor = placed["totals"]["total"]["amount_minor"]
        .as_i64()
        .context("B's total")?;
    // A's first order goes to the door a day inside its promise; so does B's, by a courier
    // only B's pages may name.
    let order_a = first_a["order_id"].as_str().context("order id")?;
    for (order_id, key, courier) in [
        (order_a, &key_a, "cr-dash"),
        (order_b.as_str(), &key_b, B_COURIER),
    ] {
        testkit::api::paid_and_packed(&client, order_id, &storefront, key).await?;
        let ship = json!({"courier_id": courier, "origin_pincode": "560001", "promised_at": runtime::now_ms() + 86_400_000});
        for (step, body) in [("ship", Some(ship)), ("deliver", None)] {
            client
                .ok(
                    M::POST,
                    &format!("/v1/orders/{order_id}/{step}"),
                    key,
                    body,
                    &[],
                )
                .await?;
        }
    }
    // The dashboards learn keys from the api-keys topic: the admin's may take a moment.
    testkit::wait_until(
        Duration::from_secs(30),
        "the admin key at the dashboards",
        || {
            let (client, admin) = (&client, &admin);
            async move {
                let (status, answer, _) = client
                    .call(
                        M::PUT,
                        "/v1/merchants/m-b/dashboard-password",
                        Some(admin),
                        Some(json!({"password": PASSWORD_B})),
                        &[],
                    )
                    .await?;
                match status.as_u16() {
                    204 => Ok(Some(())),
                    401 => Ok(None),
                    _ => bail!("setting B's password answered {status}: {answer}"),
                }
            }
        },
    )
    .await?;
    Ok(Shops {
        client,
        admin,
        key_a,
        key_b,
        storefront,
        order_b,
        gmv_b_minor,
    })
}

/// What only B's pages and answers may show.
fn b_markers(shops: &Shops) -> Vec<String> {
    vec![
        B_TITLE.to_owned(),
        B_COURIER.to_owned(),
        shops.gmv_b_minor.to_string(),
        dashboards::i18n::money(shops.gmv_b_minor, "INR"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_sees_its_shop_in_a_browser_and_never_another() -> Result<()> {
    let (python, _chromium) = tokio::task::spawn_blocking(testkit::tools::browser).await??;
    let root = tempfile::tempdir()?;
    let data = root.path().join("data");
    let sql_port = free_port()?;
    let settings = [
        format!("sql.listen=127.0.0.1:{sql_port}"),
        "lakehouse.commit_interval_ms=500".to_owned(),
        "generator.rate=20".to_owned(),
    ];
    let demo = Demo::start(
        env!("CARGO_BIN_EXE_demo_child"),
        &data,
        &settings,
        "dashboards",
    )
    .await?;
    let shops = two_shops(&demo).await?;

    // The Today numbers as SQL over the lakehouse has them, once all three of A's orders are in.
    let sql_password = std::fs::read_to_string(data.join("sql-password"))?
        .trim()
        .to_owned();
    let today_start = model::calendar::IstDate::of_instant(runtime::now_ms()).start_utc_ms();
    let query = format!(
        "SELECT count(*), sum(total_minor) FROM orders WHERE merchant_id = 'm-a' \
         AND event_type = 'order.placed' AND event_time >= to_timestamp_millis({today_start})"
    );
    let (orders_a, gmv_a) =
        testkit::wait_until(Duration::from_secs(60), "A's orders in SQL", || {
            let (port, password, sql) = (sql_port, sql_password.clone(), query.clone());
            async move {
                let row =
                    tokio::task::spawn_blocking(move || psql(port, &password, &sql)).await??;
                Ok(match row.split_once('|') {
                    Some(("3", sum)) => Some((3u64, sum.parse::<i64>()?)),
                    _ => None,
                })
            }
        })
        .await?;

    let period = {
        let (year, month, _) = model::calendar::IstDate::of_instant(runtime::now_ms()).ymd();
        format!("{year:04}-{month:02}")
    };
    let shots = screenshots();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/dashboards_browser.py");
    let output = {
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .env("BASE", format!("http://{}", demo.http))
            .env("KEY_A", &shops.key_a)
            .env("ADMIN_KEY", &shops.admin)
            .env("MERCHANT_A", "m-a")
            .env("MERCHANT_B", "m-b")
            .env("PASSWORD_B", PASSWORD_B)
            .env("B_MARKERS", serde_json::to_string(&b_markers(&shops))?)
            .env("STOREFRONT_KEY", &shops.storefront)
            .env("NEW_ORDER", order("m-a", "p-a", "c-a2", 1).to_string())
            .env("PERIOD", &period)
            .env("SCREENSHOTS", &shots);
        tokio::task::spawn_blocking(move || command.output()).await??
    };
    if !output.status.success() {
        bail!(
            "the browser test failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stderr),
            testkit::demo::tail(&demo.log)
        );
    }
    let readings: Value = serde_json::from_slice(&output.stdout)
        .with_context(|| String::from_utf8_lossy(&output.stdout).into_owned())?;
    eprintln!("browser readings: {readings}");
    ensure!(
        readings["today_gmv"] == dashboards::i18n::money(gmv_a, "INR").as_str(),
        "Today shows GMV {} where SQL sums {gmv_a} paise",
        readings["today_gmv"]
    );
    ensure!(
        readings["today_orders"] == orders_a.to_string().as_str(),
        "Today shows {} orders where SQL counts {orders_a}",
        readings["today_orders"]
    );
    ensure!(readings["orders_after"] == "4", "{readings}");
    ensure!(
        readings["running_low"]
            .as_str()
            .is_some_and(|row| row.contains("Kurta p-a-low") && row.contains("0.0")),
        "the Products page lists the sold-out product with no cover: {readings}"
    );
    ensure!(
        readings["trending"]
            .as_str()
            .is_some_and(|table| table.contains("Kurta p-a") && !table.contains(B_TITLE)),
        "A's own products trend on its Products page: {readings}"
    );
    ensure!(
        readings["delivered"] == "1" && readings["on_time"] == "100.0%",
        "the Delivery page shows A's one delivery, on time: {readings}"
    );
    ensure!(
        readings["b_orders"] == "1",
        "B signed in with its password sees its one order"
    );
    for name in [
        "01-sign-in",
        "02-today",
        "03-sales",
        "03-funnel",
        "03-products",
        "03-search",
        "03-delivery",
        "04-exports",
        "05-today-hindi",
        "06-today-phone",
        "07-other-shop-refused",
        "08-forged-cookie",
        "09-operations",
    ] {
        let file = shots.join(format!("{name}.png"));
        ensure!(
            std::fs::metadata(&file).is_ok_and(|m| m.len() > 1_000),
            "no screenshot {}",
            file.display()
        );
    }

    // The sign-ins the browser made, and the wrong key and password it tried, on /metrics.
    let exposition = reqwest::get(format!("http://{}/metrics", demo.http))
        .await?
        .text()
        .await?;
    let sign_ins = testkit::demo::metric_sum(&exposition, "shopstream_dashboards_sign_ins_total");
    let refused =
        testkit::demo::metric_sum(&exposition, "shopstream_dashboards_sign_in_refusals_total");
    ensure!(
        sign_ins >= 3.0 && refused >= 2.0,
        "sign-ins {sign_ins}, refusals {refused} on /metrics"
    );

    every_route_refuses_b_to_a(&demo, &shops).await?;
    demo.stop(Duration::from_secs(60)).await?;
    Ok(())
}

/// The value of cookie `name` a response sets, as `name=value`.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

/// Opens the sign-in page: its token cookie (`name=value`) and the token the form carries.
async fn sign_in_form(browser: &reqwest::Client, base: &str) -> Result<(String, String)> {
    let page = browser.get(format!("{base}/signin")).send().await?;
    let cookie = set_cookie(&page, "shopstream_signin").context("sign-in token cookie")?;
    let token = cookie.trim_start_matches("shopstream_signin=").to_owned();
    Ok((cookie, token))
}

/// Every documented route whose path names a shop's resource, and every shop page, as A with
/// B's ids: 403 or 404, and no B value in the body.
async fn every_route_refuses_b_to_a(demo: &Demo, shops: &Shops) -> Result<()> {
    let client = &shops.client;
    let key_b_id =
        runtime::http::auth::key_id(&runtime::http::auth::hash_key(&shops.key_b)).to_owned();
    let substitute = |path: &str| {
        path.replace("{merchant_id}", "m-b")
            .replace("{order_id}", &shops.order_b)
            .replace("{product_id}", "p-b")
            .replace("{customer_id}", "c-b")
            .replace("{warehouse_id}", "w-b")
            .replace("{key_id}", &key_b_id)
            .replace("{metric}", "sales")
    };
    let bodies: [(&str, Value); 8] = [
        (
            "/v1/orders/{order_id}/refunds",
            json!({"amount": {"amount_minor": 100, "currency": "INR"}, "reason": "damaged"}),
        ),
        (
            "/v1/orders/{order_id}/address",
            json!({"delivery_pincode": "110001"}),
        ),
        (
            "/v1/orders/{order_id}/ship",
            json!({"courier_id": "bluedart"}),
        ),
        (
            "/v1/orders/{order_id}/cancel",
            json!({"reason": "customer_request"}),
        ),
        (
            "/v1/products/{product_id}/stock",
            json!({"delta": -100, "reason": "shrinkage"}),
        ),
        (
            "/v1/products/{product_id}",
            json!({"category": "apparel", "brand": "A", "title": "Stolen", "price": {"amount_minor": 1, "currency": "INR"}}),
        ),
        (
            "/v1/warehouses/{warehouse_id}",
            json!({"pincode": "560001", "cutoff": "23:59", "handling_days": 1, "working_days": ["mon"]}),
        ),
        (
            "/v1/merchants/{merchant_id}/dashboard-password",
            json!({"password": "a takeover attempt"}),
        ),
    ];
    let document = client
        .ok(M::GET, "/v1/openapi.json", &shops.admin, None, &[])
        .await?;
    let mut walked = BTreeSet::new();
    let mut refusals = Vec::new();
    let markers = b_markers(shops);
    for (path, item) in document["paths"].as_object().context("paths")? {
        if ![
            "{merchant_id}",
            "{order_id}",
            "{product_id}",
            "{customer_id}",
            "{warehouse_id}",
            "{key_id}",
        ]
        .iter()
        .any(|p| path.contains(p))
        {
            continue;
        }
        for method in item.as_object().context("methods")?.keys() {
            let method = M::from_bytes(method.to_uppercase().as_bytes())?;
            let body = bodies
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, b)| b.clone());
            let query = if path.contains("exports") {
                "?period=2026-01"
            } else {
                ""
            };
            let url = format!("{}{query}", substitute(path));
            let (status, answer, _) = client
                .call(method.clone(), &url, Some(&shops.key_a), body, &[])
                .await?;
            let text = answer.to_string();
            // A customer's history is the one list scoped to the caller's shop rather than
            // refused: a customer may buy from both shops. It must hold none of B's orders.
            let scoped_list = path == "/v1/customers/{customer_id}/orders"
                && status == 200
                && answer["orders"] == json!([]);
            // PUT creates when the id is free, so another shop's id can only be "taken":
            // that says the id exists, and nothing of what is behind it.
            let taken = method == M::PUT
                && status == 409
                && testkit::api::code(&answer).ends_with("_id_taken");
            ensure!(
                matches!(status.as_u16(), 403 | 404) || scoped_list || taken,
                "{method} {url} as merchant A answered {status}: {text}"
            );
            for marker in &markers {
                ensure!(
                    !text.contains(marker.as_str()),
                    "{method} {url} showed B's {marker:?}: {text}"
                );
            }
            walked.insert(format!("{method} {path}"));
            refusals.push(format!("{method} {url} -> {status}"));
        }
    }
    ensure!(
        walked.len() >= 15,
        "only {} routes name a shop's resource: {walked:?}",
        walked.len()
    );

    // B's product is untouched by all of that: still its title and its stock.
    let stock = client
        .ok(M::GET, "/v1/products/p-b/stock", &shops.key_b, None, &[])
        .await?;
    ensure!(
        stock["available"] == 97,
        "B's stock after A's attempts: {stock}"
    );

    // The same GET routes and every shop page with A's signed-in cookie.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let base = format!("http://{}", demo.http);
    let (token_cookie, token) = sign_in_form(&browser, &base).await?;
    let signed = browser
        .post(format!("{base}/signin"))
        .header("cookie", &token_cookie)
        .form(&[
            ("csrf", token.as_str()),
            ("lang", "en"),
            ("key", shops.key_a.as_str()),
        ])
        .send()
        .await?;
    ensure!(
        signed.status() == 303,
        "A's sign-in answered {}",
        signed.status()
    );
    let session = set_cookie(&signed, "shopstream_session").context("session cookie")?;
    let mut cookie_paths: Vec<String> = walked
        .iter()
        .filter_map(|route| route.strip_prefix("GET "))
        .map(|path| {
            let query = if path.contains("exports") {
                "?period=2026-01"
            } else {
                ""
            };
            format!("{}{query}", substitute(path))
        })
        .collect();
    for page in [
        "today", "sales", "funnel", "products", "search", "delivery", "exports",
    ] {
        cookie_paths.push(format!("/dashboard/{page}?merchant=m-b"));
        cookie_paths.push(format!("/dashboard/{page}/panel?merchant=m-b"));
    }
    cookie_paths.push("/dashboard/ops".to_owned());
    for path in &cookie_paths {
        let answer = browser
            .get(format!("{base}{path}"))
            .header("cookie", &session)
            .send()
            .await?;
        let status = answer.status();
        let text = answer.text().await?;
        ensure!(
            matches!(status.as_u16(), 403 | 404)
                || (path.starts_with("/v1/customers/")
                    && status == 200
                    && text.contains("\"orders\":[]")),
            "GET {path} with A's cookie answered {status}: {text}"
        );
        for marker in &markers {
            ensure!(
                !text.contains(marker.as_str()),
                "GET {path} with A's cookie showed B's {marker:?}"
            );
        }
    }
    // A cookie is for reading: a write with it alone is refused as having no key.
    let write = browser
        .post(format!("{base}/v1/orders/{}/cancel", shops.order_b))
        .header("cookie", &session)
        .json(&json!({"reason": "customer_request"}))
        .send()
        .await?;
    ensure!(
        write.status() == 401,
        "a write with only a cookie answered {}",
        write.status()
    );

    // Guessing passwords: refused with 429 and Retry-After once the address or account has
    // spent its attempts (`dashboards.sign_in_rate`), on the page, not as a stack trace.
    let mut refused = None;
    for attempt in 0..40 {
        let (token_cookie, token) = sign_in_form(&browser, &base).await?;
        let guess = format!("guess number {attempt}");
        let answer = browser
            .post(format!("{base}/signin"))
            .header("cookie", &token_cookie)
            .form(&[
                ("csrf", token.as_str()),
                ("lang", "en"),
                ("merchant_id", "m-b"),
                ("password", guess.as_str()),
            ])
            .send()
            .await?;
        if answer.status() == 429 {
            let retry = answer.headers().get("retry-after").cloned();
            refused = Some((retry, answer.text().await?));
            break;
        }
        ensure!(
            answer.status() == 401,
            "guess {attempt} answered {}",
            answer.status()
        );
    }
    let (retry, page) = refused.context("40 wrong passwords in a row were never refused")?;
    ensure!(
        retry.is_some() && page.contains("Too many sign-in attempts"),
        "{page}"
    );
    eprintln!("refused to merchant A:\n{}", refusals.join("\n"));
    Ok(())
}
