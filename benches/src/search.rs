//! `shopstream-bench search`: relevance against two baselines, the index build rate and
//! size, query latency through the front door under `wrk`, and freshness (a catalog event
//! to visible in results) through the broker.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use runtime::supervisor::{self, StageList};
use search::SearchConfig;
use search::index::{Indexer, SearchIndex};
use shopstream::config::Config;

#[derive(Debug, clap::Subcommand)]
pub enum Part {
    /// NDCG@10 and recall@10 of the judged set: shopstream, plain BM25 over titles,
    /// tantivy's query parser over stemmed titles.
    Relevance {
        /// Generated products in the judged catalog (plus planted near misses).
        #[arg(long, default_value_t = 5_000)]
        products: usize,
        /// Base queries per intent (each also misspelt, transliterated, unfinished).
        #[arg(long, default_value_t = 100)]
        queries: usize,
        #[arg(long, default_value_t = 3)]
        seed: u64,
    },
    /// Index `--products` generated products (upsert and opening stock each) into `--dir`
    /// with one indexing thread: documents per second and per CPU second, size, peak RSS.
    Build {
        #[arg(long, default_value_t = 1_000_000)]
        products: usize,
        #[arg(long)]
        dir: PathBuf,
    },
    /// The index in `--dir` (built by `build`) served on the front door, queried by `wrk`
    /// with a mix of one-, two- and three-word queries (a fifth misspelt, half with filters
    /// and facets).
    Queries {
        #[arg(long)]
        dir: PathBuf,
        /// Products the index was built from (the vocabulary of the queries).
        #[arg(long, default_value_t = 1_000_000)]
        products: usize,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Title queries only (the Meilisearch comparison: `q` of one to three title words).
        #[arg(long)]
        titles_only: bool,
    },
    /// A catalog event produced to the broker until the product is in results, one at a
    /// time: p50 and p99.
    Freshness {
        #[arg(long, default_value_t = 200)]
        samples: usize,
    },
}

pub async fn run(config: &Config, part: Part) -> Result<()> {
    match part {
        Part::Relevance {
            products,
            queries,
            seed,
        } => {
            let table = crate::relevance::run(products, queries, config.search.rank.clone(), seed)?;
            crate::relevance::print(&table);
            Ok(())
        }
        Part::Build { products, dir } => build(products, &dir),
        Part::Queries {
            dir,
            products,
            connections,
            seconds,
            titles_only,
        } => queries(config, &dir, products, connections, seconds, titles_only).await,
        Part::Freshness { samples } => freshness(config, samples).await,
    }
}

pub(crate) fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn build(products: usize, dir: &Path) -> Result<()> {
    if dir.join("index").exists() {
        bail!(
            "{} already holds an index; give an empty --dir",
            dir.display()
        );
    }
    let generated = Instant::now();
    let (events, _) = crate::relevance::catalog(products, 7)?;
    println!(
        "generated {products} products ({} events) in {:.1} s",
        events.len(),
        generated.elapsed().as_secs_f64()
    );
    let (index, payload, _) = SearchIndex::open(&dir.join("index"))?;
    let mut indexer = Indexer::new(Arc::clone(&index), payload, 256 << 20)?;
    let (started, cpu) = (Instant::now(), crate::lake::cpu_seconds());
    for (offset, envelope) in events.iter().enumerate() {
        indexer.take("catalog/0", offset as i64);
        indexer
            .apply(envelope)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    indexer.commit()?;
    let (seconds, cpu) = (
        started.elapsed().as_secs_f64(),
        crate::lake::cpu_seconds() - cpu,
    );
    let docs = index.searcher().num_docs();
    println!(
        "indexed {docs} documents from {} events in {seconds:.1} s: {:.0} docs/s wall, {:.0} docs per CPU second ({cpu:.1} CPU s); index {:.0} MB on disk; peak RSS {:.0} MB (the generated events included)",
        events.len(),
        docs as f64 / seconds,
        docs as f64 / cpu,
        index.disk_bytes() as f64 / 1e6,
        peak_rss_mb()
    );
    Ok(())
}

/// Query URLs for the load: words drawn from the generated vocabulary.
fn query_mix(products: usize, titles_only: bool, count: usize) -> Vec<String> {
    use traffic::catalog::CATEGORIES;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut out = Vec::with_capacity(count);
    let _ = products;
    for _ in 0..count {
        let category = CATEGORIES.choose(&mut rng).expect("categories");
        let noun = category.nouns.choose(&mut rng).copied().unwrap_or_default();
        let brand = category
            .brands
            .choose(&mut rng)
            .copied()
            .unwrap_or_default();
        let adjective = category
            .adjectives
            .choose(&mut rng)
            .copied()
            .unwrap_or_default();
        let mut words: Vec<String> = match rng.random_range(0..3) {
            0 => vec![noun.to_owned()],
            1 => vec![brand.to_owned(), noun.to_owned()],
            _ => vec![brand.to_owned(), adjective.to_owned(), noun.to_owned()],
        };
        if !titles_only && rng.random_bool(0.2) {
            // A typo in the longest word.
            if let Some(word) = words.iter_mut().max_by_key(|w| w.len())
                && word.len() >= 5
            {
                let mut chars: Vec<char> = word.chars().collect();
                let i = rng.random_range(1..chars.len() - 1);
                chars.swap(i, i + 1);
                *word = chars.into_iter().collect();
            }
        }
        let q = words.join(" ").to_lowercase().replace(' ', "%20");
        let mut url = format!("/v1/search?q={q}&per_page=10");
        if !titles_only && rng.random_bool(0.5) {
            url.push_str(&format!(
                "&category={}&facets=category,brand,price",
                category.name
            ));
            if rng.random_bool(0.5) {
                url.push_str("&in_stock=true&price_max=5000");
            }
        } else {
            url.push_str("&facets=");
            url.pop();
            url.push_str("&facets=brand");
        }
        out.push(url);
    }
    out
}

async fn start_search(config: &Config, dir: &Path) -> Result<(supervisor::Running, Arc<bus::Bus>)> {
    let bus = shopstream::app::connect(config).await?;
    bus.ensure_topics(&model::Topic::ALL).await?;
    let search = SearchConfig {
        dir: Some(dir.to_owned()),
        ..config.search.clone()
    };
    let mut list = StageList::default();
    let (metrics, stage_bus) = (list.metrics(), Arc::clone(&bus));
    list.add("search", |token| async move {
        search::stage(search, None, stage_bus, &metrics, token)
    })
    .await?;
    Ok((crate::load::serve(config, list).await?, bus))
}

async fn queries(
    config: &Config,
    dir: &Path,
    products: usize,
    connections: usize,
    seconds: u64,
    titles_only: bool,
) -> Result<()> {
    let (running, _bus) = start_search(config, dir).await?;
    let urls = query_mix(products, titles_only, 2_000);
    let script = dir.join("queries.lua");
    let mut lua = std::fs::File::create(&script)?;
    writeln!(lua, "local paths = {{")?;
    for url in &urls {
        writeln!(lua, "  \"{url}\",")?;
    }
    writeln!(
        lua,
        "}}\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(\"GET\", paths[i])\nend"
    )?;
    drop(lua);
    let base = format!("http://{}", running.addr);
    // Warm the page cache and the term dictionaries once.
    let http = reqwest::Client::new();
    for url in urls.iter().take(200) {
        let status = http.get(format!("{base}{url}")).send().await?.status();
        if !status.is_success() {
            bail!("{url} answered {status}");
        }
    }
    println!(
        "{}",
        crate::load::wrk(&script, &base, connections, seconds).await?
    );
    println!("peak RSS of the server process {:.0} MB", peak_rss_mb());
    running.stop().await?;
    Ok(())
}

async fn freshness(config: &Config, samples: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (running, bus) = start_search(config, dir.path()).await?;
    let producer = bus.producer()?;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let mut waits = Vec::with_capacity(samples);
    for i in 0..samples {
        let token = format!("zqprobe{i}x");
        let envelope = model::Envelope::new(
            uuid::Uuid::now_v7(),
            1_780_000_000_000,
            model::MerchantId::new("m-probe"),
            model::Event::ProductUpserted(model::payload::ProductUpserted {
                product_id: model::ProductId::new(format!("probe-{i}")),
                category: "home".into(),
                brand: "Probe".into(),
                title: format!("Probe Lamp {token}"),
                description: String::new(),
                attributes: Default::default(),
                price: model::Money::inr(10_000),
            }),
        );
        let sent = Instant::now();
        producer.send_event(&envelope).await?;
        let url = format!("{base}/v1/search?q={token}&facets=brand");
        loop {
            let answer: serde_json::Value = http.get(&url).send().await?.json().await?;
            let shown = answer["hits"].as_array().is_some_and(|hits| {
                hits.iter()
                    .any(|h| h["product_id"].as_str() == Some(&format!("probe-{i}")))
            });
            if shown {
                break;
            }
            if sent.elapsed() > Duration::from_secs(30) {
                bail!("{token} not visible after 30 s; the last answer: {answer}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        waits.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    waits.sort_by(f64::total_cmp);
    let at = |q: f64| waits[((waits.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "catalog event -> visible in /v1/search over {samples} products (commit every {} ms): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        config.search.commit_interval_ms,
        at(0.5),
        at(0.99),
        at(1.0)
    );
    running.stop().await?;
    Ok(())
}
