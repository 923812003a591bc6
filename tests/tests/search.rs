//! Search through the broker and the front door: the catalog indexed from the topics,
//! changes visible after their events, typo tolerance, facets and filters, deliverability
//! through the real serviceability stage, every bad parameter named in a 4xx,
//! `search.performed` published with what was shown, shoppers' clicks moving a result up,
//! and a restart that resumes the index instead of rebuilding it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use model::payload::{ProductClicked, ProductDeactivated, ProductUpserted, StockAdjusted};
use model::{Envelope, Event, MerchantId, Money, ProductId, SessionId, Topic, WarehouseId};
use rand::SeedableRng;
use runtime::supervisor::{self, StageList};
use serde_json::Value;
use streams::serviceability::ServiceabilityConfig;
use traffic::lanes;

const DAY: i64 = 24 * 3_600_000;

fn event(merchant: &str, event: Event) -> Envelope {
    Envelope::new(
        uuid::Uuid::now_v7(),
        1_780_000_000_000,
        MerchantId::new(merchant),
        event,
    )
}

fn product(id: &str, merchant: &str, title: &str, brand: &str, rupees: i64) -> Envelope {
    event(
        merchant,
        Event::ProductUpserted(ProductUpserted {
            product_id: ProductId::new(id),
            category: "apparel".into(),
            brand: brand.into(),
            title: title.into(),
            description: format!("{title}, hand finished."),
            attributes: [("size".to_owned(), "M".to_owned())].into(),
            price: Money::inr(rupees * 100),
        }),
    )
}

fn stock(id: &str, on_hand: i64) -> Envelope {
    event(
        "m-1",
        Event::StockAdjusted(StockAdjusted {
            product_id: ProductId::new(id),
            warehouse_id: WarehouseId::new("w-shop"),
            delta: on_hand,
            on_hand,
            reason: "count".into(),
        }),
    )
}

fn catalog() -> Vec<Envelope> {
    vec![
        product("p-0", "m-1", "Kalaa Indigo Kurta", "Kalaa", 999),
        product("p-1", "m-1", "Urban Loom Cotton Kurta", "Urban Loom", 799),
        product("p-2", "m-2", "Biba Street Linen Kurta", "Biba Street", 1499),
        product("p-3", "m-2", "Kalaa Block Print Saree", "Kalaa", 2499),
        stock("p-0", 5),
        stock("p-1", 5),
        stock("p-2", 5),
        stock("p-3", 5),
    ]
}

async fn start(
    bus: Arc<bus::Bus>,
    dir: &std::path::Path,
    with_serviceability: bool,
) -> Result<supervisor::Running> {
    let mut list = StageList::default();
    let mut deliverability: Option<Arc<dyn model::deliver::Deliverability>> = None;
    if with_serviceability {
        let config = ServiceabilityConfig {
            checkpoint_dir: Some(dir.join("serviceability")),
            checkpoint_interval_ms: 200,
            ..ServiceabilityConfig::default()
        };
        let service = streams::serviceability::service(&config);
        deliverability = Some(service.clone());
        let (bus, metrics) = (Arc::clone(&bus), list.metrics());
        list.add("serviceability", |token| async move {
            streams::serviceability::stage(config, service, bus, &metrics, token)
        })
        .await?;
    }
    let config = search::SearchConfig {
        dir: Some(dir.join("search")),
        ..search::SearchConfig::default()
    };
    let metrics = list.metrics();
    list.add("search", |token| async move {
        search::stage(config, deliverability, bus, &metrics, token)
    })
    .await?;
    Ok(supervisor::spawn_local(list).await?)
}

async fn get(http: &reqwest::Client, url: &str) -> Result<(u16, Value)> {
    let response = http.get(url).send().await?;
    Ok((response.status().as_u16(), response.json().await?))
}

fn ids(answer: &Value) -> Vec<String> {
    answer["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .filter_map(|h| h["product_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `url` answers 200 with hits for which `done` holds.
async fn until(
    http: &reqwest::Client,
    url: String,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Result<Value> {
    testkit::wait_until(Duration::from_secs(60), what, || {
        let (http, url) = (http.clone(), url.clone());
        let answer = async move { get(&http, &url).await };
        let done = &done;
        async move {
            let (status, body) = answer.await?;
            Ok((status == 200 && done(&body)).then_some(body))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_is_searchable_at_the_front_door_and_changes_show_up() -> Result<()> {
    let bus = testkit::bus("search-e2e")?;
    bus.ensure_topics(&Topic::ALL).await?;
    let producer = bus.producer()?;
    // Deliveries for serviceability to learn lanes from; p-0 and p-1 are stocked at its
    // two warehouses, p-2 and p-3 only at a warehouse it does not know.
    let world = lanes::draw(
        &mut rand_chacha::ChaCha8Rng::seed_from_u64(5),
        6_000,
        2,
        2,
        3,
    );
    let mut events = lanes::network(&world);
    events.extend(lanes::stock(&world));
    events.extend(lanes::events_before(&world, world.start + 150 * DAY));
    events.extend(catalog());
    testkit::produce_all(&producer, &events).await?;
    let dir = tempfile::tempdir()?;
    let running = start(Arc::clone(&bus), dir.path(), true).await?;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();

    let answer = until(
        &http,
        format!("{base}/v1/search?q=kurta"),
        "the catalog indexed",
        |a| a["total"] == 3,
    )
    .await?;
    ensure!(
        answer["facets"]["brand"].as_array().map(Vec::len) == Some(3),
        "{answer}"
    );
    // Typos by word length, prefixes, filters, the marketplace against one shop.
    let (_, typo) = get(&http, &format!("{base}/v1/search?q=kalaa%20kutra%20")).await?;
    ensure!(
        ids(&typo).first().map(String::as_str) == Some("p-0"),
        "{typo}"
    );
    let (_, shop) = get(&http, &format!("{base}/v1/search?q=kurta&merchant_id=m-2")).await?;
    ensure!(ids(&shop) == ["p-2"], "{shop}");
    let (_, filtered) = get(
        &http,
        &format!("{base}/v1/search?q=kur&brand=Kalaa&brand=urban%20loom&price_max=900&attr.size=m"),
    )
    .await?;
    ensure!(ids(&filtered) == ["p-1"], "{filtered}");

    // Deliverable to a pincode: only what serviceability can promise, with its date.
    let destination = world.places[0].pincode;
    let near = until(
        &http,
        format!("{base}/v1/search?q=kurta&pincode={destination}"),
        "deliverable results",
        |a| a["total"] == 2,
    )
    .await?;
    let mut near_ids = ids(&near);
    near_ids.sort();
    ensure!(near_ids == ["p-0", "p-1"], "{near}");
    ensure!(
        near["hits"][0]["deliverable_by"]
            .as_str()
            .is_some_and(|d| d.len() == 10),
        "{near}"
    );

    // Changes through the broker: a new product, a reprice, a sell-out, a deactivation.
    testkit::produce_all(
        &producer,
        &[
            product("p-4", "m-1", "Paduka Kolhapuri Chappal", "Paduka", 1299),
            product("p-1", "m-1", "Urban Loom Cotton Kurta", "Urban Loom", 1999),
            stock("p-2", 0),
            event(
                "m-1",
                Event::ProductDeactivated(ProductDeactivated {
                    product_id: ProductId::new("p-3"),
                    reason: "discontinued".into(),
                }),
            ),
        ],
    )
    .await?;
    until(
        &http,
        format!("{base}/v1/search?q=chappal"),
        "the new product",
        |a| ids(a) == ["p-4"],
    )
    .await?;
    until(
        &http,
        format!("{base}/v1/search?q=kurta&price_min=1500"),
        "the reprice",
        |a| ids(a) == ["p-1"],
    )
    .await?;
    until(
        &http,
        format!("{base}/v1/search?q=kurta&in_stock=true"),
        "the sell-out",
        |a| !ids(a).contains(&"p-2".to_owned()) && a["total"] == 2,
    )
    .await?;
    until(
        &http,
        format!("{base}/v1/search?q=saree%20"),
        "the deactivation",
        |a| a["total"] == 0,
    )
    .await?;

    // Every answered search is published with what it showed, in order.
    let (_, shown) = get(&http, &format!("{base}/v1/search?q=kurta&session_id=s-e2e")).await?;
    let consumer = bus.consumer(
        "search-e2e-check",
        &[Topic::Searches],
        Arc::new(bus::NoHook),
        &[],
    )?;
    let published = testkit::wait_until(Duration::from_secs(30), "search.performed", || {
        let consumer = &consumer;
        async move {
            let record = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await??;
            let envelope = model::codec::decode(record.payload.as_deref().unwrap_or_default())?;
            Ok(match envelope.event {
                Event::SearchPerformed(s) if s.session_id.as_str() == "s-e2e" => Some(s),
                _ => None,
            })
        }
    })
    .await?;
    let published: Vec<String> = published.results.iter().map(ToString::to_string).collect();
    ensure!(published == ids(&shown), "{published:?} against {shown}");

    // Completions.
    let (status, suggested) = get(&http, &format!("{base}/v1/suggest?q=kal")).await?;
    ensure!(
        status == 200 && suggested["suggestions"][0]["text"] == "kalaa",
        "{suggested}"
    );

    // Bad input: a 4xx whose code and message name the parameter; never a 5xx.
    let long = "a".repeat(201);
    for (query, status, code, mention) in [
        ("q=", 400, "invalid_query", "q"),
        ("q=%20%20", 400, "invalid_query", "q"),
        (&*format!("q={long}"), 400, "invalid_query", "200"),
        ("q=kurta&page=9", 400, "page_out_of_range", "page 9"),
        ("q=kurta&per_page=101", 400, "invalid_parameter", "per_page"),
        ("q=kurta&sort=cheapest", 400, "unknown_sort", "cheapest"),
        ("q=kurta&facets=colour", 400, "unknown_facet", "colour"),
        (
            "q=kurta&attr.sleeve=long",
            400,
            "unknown_attribute",
            "sleeve",
        ),
        ("q=kurta&pincode=12345", 400, "invalid_parameter", "pincode"),
        (
            "q=kurta&price_min=-1",
            400,
            "invalid_parameter",
            "price_min",
        ),
        ("q=kurta&in_stock=yes", 400, "invalid_parameter", "in_stock"),
        ("q=kurta&colour=red", 400, "invalid_parameter", "colour"),
    ] {
        let (got, body) = get(&http, &format!("{base}/v1/search?{query}")).await?;
        ensure!(
            got == status && body["error"]["code"] == code,
            "{query}: {got} {body}"
        );
        ensure!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(mention)),
            "{query}: {body} does not mention {mention}"
        );
    }
    // Query syntax is only text.
    let (status, _) = get(
        &http,
        &format!("{base}/v1/search?q=title%3A*%20OR%20%22(%5B"),
    )
    .await?;
    ensure!(status == 200, "query syntax answered {status}");
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_move_a_result_up_and_a_restart_resumes_the_index() -> Result<()> {
    let bus = testkit::bus("search-clicks")?;
    bus.ensure_topics(&Topic::ALL).await?;
    let producer = bus.producer()?;
    testkit::produce_all(&producer, &catalog()).await?;
    let dir = tempfile::tempdir()?;
    let running = start(Arc::clone(&bus), dir.path(), false).await?;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let before = until(&http, format!("{base}/v1/search?q=kurta"), "indexed", |a| {
        a["total"] == 3
    })
    .await?;
    let third = ids(&before)[2].clone();

    // Shoppers search (the API publishes what it showed) and click the third result.
    let searches = 8;
    for n in 0..searches {
        let session = format!("s-{n}");
        let (_, shown) = get(
            &http,
            &format!("{base}/v1/search?q=kurta&session_id={session}"),
        )
        .await?;
        let clicked = ids(&shown).get(2).cloned().context("three results")?;
        testkit::produce_all(
            &producer,
            &[event(
                "m-1",
                Event::ProductClicked(ProductClicked {
                    session_id: SessionId::new(session),
                    customer_id: None,
                    product_id: ProductId::new(clicked),
                    position: 2,
                    query: "kurta".into(),
                }),
            )],
        )
        .await?;
    }
    let after = until(
        &http,
        format!("{base}/v1/search?q=kurta"),
        "the clicked result moved up",
        |a| {
            ids(a)
                .iter()
                .position(|id| *id == third)
                .is_some_and(|at| at < 2)
        },
    )
    .await?;
    running.stop().await?;
    // A restart opens the committed index: the results are there before anything is read
    // again, and nothing is reindexed.
    let running = start(Arc::clone(&bus), dir.path(), false).await?;
    let base = format!("http://{}", running.addr);
    let (status, resumed) = get(&http, &format!("{base}/v1/search?q=kurta")).await?;
    ensure!(status == 200 && resumed["total"] == 3, "{resumed}");
    // The result clicked first keeps the place the clicks earned it: with the prior lost it
    // would fall back to its text score (which the in-stock boost alone puts at 1.1 × the
    // match). Which other products were clicked depends on how fast the clicks were applied
    // while the shoppers searched, so only this one is certain to have been.
    let score = |answer: &Value, id: &str| {
        answer["hits"]
            .as_array()
            .and_then(|hits| hits.iter().find(|h| h["product_id"] == id))
            .and_then(|h| h["score"].as_f64())
            .unwrap_or_default()
    };
    let at = ids(&resumed).iter().position(|id| *id == third);
    ensure!(
        at.is_some_and(|at| at < 2) && score(&resumed, &third) > 1.15 * score(&before, &third),
        "{third}: the prior was not restored: {resumed} against {before} (and {after})"
    );
    // Once every partition reports no lag, the restarted consumer has read all there was:
    // a reindex would have applied the catalog again by then.
    let metrics = testkit::wait_until(Duration::from_secs(30), "no lag after the restart", || {
        let (http, url) = (http.clone(), format!("{base}/metrics"));
        async move {
            let metrics = http.get(url).send().await?.text().await?;
            let reported = metrics.contains("shopstream_consumer_lag_records{job=\"search\"");
            let lag = testkit::demo::metric_sum(&metrics, "shopstream_consumer_lag_records");
            Ok((reported && lag == 0.0).then_some(metrics))
        }
    })
    .await?;
    let indexed_again = testkit::demo::metric_sum(&metrics, "shopstream_events_in_total");
    ensure!(
        indexed_again < 4.0,
        "{indexed_again} events applied again after the restart"
    );
    running.stop().await?;
    Ok(())
}
