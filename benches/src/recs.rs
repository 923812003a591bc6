//! `shopstream-bench recs`: the offline harness for recommendations. Leave-last-out over
//! sessions (generated with planted structure, or read from a `session,item,timestamp`
//! file): HR@20 and MRR@20 for each method against popularity and plain co-occurrence,
//! computed in the same run; the learning rate; the vector rebuild; and arroy's recall@10
//! and queries per second against exact search.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use model::payload::{ProductUpserted, ProductViewed, StockAdjusted};
use model::{Envelope, Event, MerchantId, Money, ProductId, SessionId, WarehouseId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recommend::embed;
use recommend::engine::{Asked, Engine, Filters};
use recommend::learn::{GLOBAL, Learner};
use recommend::vectors::Store;

#[derive(Debug, clap::Subcommand)]
pub enum Part {
    /// Leave-last-out HR@20 and MRR@20 per method, the learning rate and the rebuild time.
    Offline {
        /// Generated sessions (ignored with --file).
        #[arg(long, default_value_t = 40_000)]
        sessions: usize,
        /// Generated products, in groups of five that truly go together.
        #[arg(long, default_value_t = 5_000)]
        products: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Sessions from a file of `session,item,timestamp` lines (timestamp in ms).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// arroy over `--vectors` clustered random vectors: build time, disk size, recall@10
    /// and queries per second against exact brute force.
    Ann {
        #[arg(long, default_value_t = 1_000_000)]
        vectors: usize,
        #[arg(long, default_value_t = 32)]
        dimensions: usize,
        #[arg(long, default_value_t = 1_000)]
        queries: usize,
        /// Query effort: multiples of arroy's default nodes inspected, comma-separated.
        #[arg(long, default_value = "1,4,16,64")]
        oversampling: String,
    },
}

pub fn run(config: &shopstream::config::Config, part: Part) -> Result<()> {
    match part {
        Part::Offline {
            sessions,
            products,
            seed,
            file,
        } => {
            let sessions = match file {
                Some(path) => read_sessions(&path)?,
                None => generate(sessions, products, seed),
            };
            offline(&sessions, &config.recommend)
        }
        Part::Ann {
            vectors,
            dimensions,
            queries,
            oversampling,
        } => {
            let factors = oversampling
                .split(',')
                .map(|f| f.trim().parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .context("--oversampling takes whole numbers, e.g. 1,4,16")?;
            ann(vectors, dimensions, queries, &factors)
        }
    }
}

/// A session: its items in time order, with their times.
type Session = Vec<(String, i64)>;

/// Sessions over products in groups of five: most of a session's items come from one
/// group, the rest are noise; groups are in season for half of the period each, so what is
/// popular drifts.
fn generate(sessions: usize, products: usize, seed: u64) -> Vec<Session> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let groups = (products / 5).max(2);
    let mut out = Vec::with_capacity(sessions);
    for s in 0..sessions {
        let at = 1_790_000_000_000 + s as i64 * 60_000;
        let late = s >= sessions / 2;
        // In season: even groups early, odd groups late (80 % of sessions).
        let group = loop {
            let g = rng.random_range(0..groups);
            if (g % 2 == 1) == late || rng.random_bool(0.2) {
                break g;
            }
        };
        let length = rng.random_range(3..=7);
        let mut items = Vec::with_capacity(length);
        for k in 0..length {
            let product = if rng.random_bool(0.8) {
                group * 5 + rng.random_range(0..5)
            } else {
                rng.random_range(0..groups * 5)
            };
            items.push((format!("p-{product}"), at + k as i64 * 20_000));
        }
        out.push(items);
    }
    out
}

fn read_sessions(path: &Path) -> Result<Vec<Session>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut by_session: BTreeMap<String, Session> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (n == 0 && line.starts_with("session")) {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [session, item, timestamp] = fields[..] else {
            bail!(
                "{}:{}: expected session,item,timestamp, found {line:?}",
                path.display(),
                n + 1
            );
        };
        let at: i64 = timestamp.parse().with_context(|| {
            format!(
                "{}:{}: timestamp {timestamp:?} is not a whole number of ms",
                path.display(),
                n + 1
            )
        })?;
        if session.is_empty() || item.is_empty() {
            bail!("{}:{}: empty session or item", path.display(), n + 1);
        }
        by_session
            .entry(session.to_owned())
            .or_default()
            .push((item.to_owned(), at));
    }
    let mut sessions: Vec<Session> = by_session
        .into_values()
        .map(|mut s| {
            s.sort_by_key(|(_, at)| *at);
            s
        })
        .filter(|s| s.len() >= 2)
        .collect();
    sessions.sort_by_key(|s| s[0].1);
    Ok(sessions)
}

fn envelope(at: i64, event: Event) -> Envelope {
    Envelope::new(uuid::Uuid::nil(), at, MerchantId::new("m-1"), event)
}

#[derive(Debug, Default)]
struct Score {
    hits: usize,
    reciprocal: f64,
    cases: usize,
}

impl Score {
    fn add(&mut self, ranked: &[String], target: &str) {
        self.cases += 1;
        if let Some(rank) = ranked.iter().take(20).position(|p| p == target) {
            self.hits += 1;
            self.reciprocal += 1.0 / (rank + 1) as f64;
        }
    }

    fn row(&self, name: &str) {
        let n = self.cases.max(1) as f64;
        println!(
            "| {name:<34} | {:>6.3} | {:>6.3} |",
            self.hits as f64 / n,
            self.reciprocal / n
        );
    }
}

fn offline(sessions: &[Session], settings: &recommend::RecommendConfig) -> Result<()> {
    let split = sessions.len() * 9 / 10;
    let (train, test) = sessions.split_at(split);
    let products: HashSet<&String> = sessions.iter().flatten().map(|(p, _)| p).collect();
    let config = settings.learn.clone();

    // Learn the catalog and the training sessions, timing the fold of the views.
    let mut learner = Learner::default();
    let first = sessions.first().and_then(|s| s.first()).map_or(0, |i| i.1);
    for product in &products {
        let id = ProductId::new(product.as_str());
        learner.apply(
            &envelope(
                first,
                Event::ProductUpserted(ProductUpserted {
                    product_id: id.clone(),
                    category: "all".into(),
                    brand: "b".into(),
                    title: product.to_string(),
                    description: String::new(),
                    attributes: BTreeMap::new(),
                    price: Money::inr(100),
                }),
            ),
            &config,
        );
        learner.apply(
            &envelope(
                first,
                Event::StockAdjusted(StockAdjusted {
                    product_id: id,
                    warehouse_id: WarehouseId::new("w"),
                    delta: 1,
                    on_hand: 1,
                    reason: "count".into(),
                }),
            ),
            &config,
        );
    }
    let views: Vec<Envelope> = train
        .iter()
        .enumerate()
        .flat_map(|(s, items)| {
            items.iter().map(move |(p, at)| {
                envelope(
                    *at,
                    Event::ProductViewed(ProductViewed {
                        session_id: SessionId::new(format!("s-{s}")),
                        customer_id: None,
                        product_id: ProductId::new(p.as_str()),
                    }),
                )
            })
        })
        .collect();
    let started = Instant::now();
    for view in &views {
        learner.apply(view, &config);
    }
    let learn_seconds = started.elapsed().as_secs_f64();

    // Plain co-occurrence: every pair in a training session counts 1, no decay, no cap.
    let mut cooccurrence: HashMap<&str, HashMap<&str, u32>> = HashMap::new();
    for items in train {
        let distinct: HashSet<&str> = items.iter().map(|(p, _)| p.as_str()).collect();
        for a in &distinct {
            for b in &distinct {
                if a != b {
                    *cooccurrence.entry(a).or_default().entry(b).or_default() += 1;
                }
            }
        }
    }

    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    store.set_oversampling(settings.vector_oversampling);
    let started = Instant::now();
    let edges = learner.viewed.edges(learner.now, config.decay());
    let vectors = embed::embed(&edges, 32, 42);
    let embed_seconds = started.elapsed().as_secs_f64();
    let rebuilt = store.rebuild(&vectors, 32, 42)?;
    let popular: Vec<String> = learner
        .trending
        .top(GLOBAL, learner.now, config.decay())
        .into_iter()
        .filter_map(|(n, _)| learner.ids.name(n).map(|p| p.as_str().to_owned()))
        .collect();
    let engine = Engine {
        learner: std::sync::Arc::new(std::sync::RwLock::new(learner)),
        vectors: std::sync::Arc::new(store),
        learn: config.clone(),
        serve: settings.serve.clone(),
        deliverability: None,
    };
    let asked = Asked {
        limit: 20,
        filters: Filters {
            in_stock: false,
            ..Filters::default()
        },
        now_ms: 0,
    };
    let names = |answer: recommend::engine::Answer| -> Vec<String> {
        answer
            .items
            .into_iter()
            .map(|i| i.product_id.as_str().to_owned())
            .collect()
    };
    let (mut by_popularity, mut by_cooccurrence, mut by_covisit, mut by_embedding, mut by_session) = (
        Score::default(),
        Score::default(),
        Score::default(),
        Score::default(),
        Score::default(),
    );
    let started = Instant::now();
    let mut answered = 0usize;
    for session in test {
        let (last, prefix) = session.split_last().context("a session of one item")?;
        let target = last.0.as_str();
        let seen: HashSet<&str> = prefix.iter().map(|(p, _)| p.as_str()).collect();
        if seen.contains(target) {
            continue;
        }
        let unseen = |list: Vec<String>| -> Vec<String> {
            list.into_iter()
                .filter(|p| !seen.contains(p.as_str()))
                .collect()
        };
        by_popularity.add(&unseen(popular.clone()), target);

        let mut counts: HashMap<&str, u32> = HashMap::new();
        for p in &seen {
            for (other, n) in cooccurrence.get(p).into_iter().flatten() {
                *counts.entry(other).or_default() += n;
            }
        }
        let mut ranked: Vec<(&str, u32)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        by_cooccurrence.add(
            &unseen(ranked.into_iter().map(|(p, _)| p.to_owned()).collect()),
            target,
        );

        let anchor = ProductId::new(prefix.last().map_or("", |(p, _)| p.as_str()));
        by_covisit.add(&unseen(names(engine.similar(&anchor, &asked)?)), target);
        let number = engine.learner.read().ok().and_then(|l| l.ids.get(&anchor));
        let near = number
            .map(|n| engine.vectors.nearest_to_item(n, 40))
            .transpose()?
            .flatten()
            .unwrap_or_default();
        let near: Vec<String> = {
            let learner = engine
                .learner
                .read()
                .map_err(|_| anyhow::anyhow!("poisoned"))?;
            near.into_iter()
                .filter_map(|(n, _)| learner.ids.name(n).map(|p| p.as_str().to_owned()))
                .collect()
        };
        by_embedding.add(&unseen(near), target);
        let items: Vec<ProductId> = prefix
            .iter()
            .map(|(p, _)| ProductId::new(p.as_str()))
            .collect();
        by_session.add(&names(engine.session(&items, &asked)?), target);
        answered += 1;
    }
    let answer_seconds = started.elapsed().as_secs_f64();

    println!(
        "{} sessions ({} training, {} scored), {} products",
        sessions.len(),
        train.len(),
        by_session.cases,
        products.len()
    );
    println!("| method                             | HR@20  | MRR@20 |");
    println!("|------------------------------------|--------|--------|");
    by_popularity.row("popularity (baseline)");
    by_cooccurrence.row("plain co-occurrence (baseline)");
    by_covisit.row("co-visitation, last item (similar)");
    by_embedding.row("embedding neighbours, last item");
    by_session.row("session next-item (shopstream)");
    println!(
        "learning: {} views in {:.2} s = {:.0} views/s on one core",
        views.len(),
        learn_seconds,
        views.len() as f64 / learn_seconds
    );
    println!(
        "vectors: {} items x 32 in {:.2} s (PPMI + SVD) + {:.2} s (arroy build), {} KiB",
        rebuilt.items,
        embed_seconds,
        rebuilt.seconds,
        rebuilt.bytes / 1024
    );
    println!(
        "answers: {} test sessions x 3 engine calls in {:.2} s",
        answered, answer_seconds
    );
    Ok(())
}

/// Clustered random unit vectors: `vectors / 1000` centres, each vector a centre plus noise.
fn clustered(vectors: usize, dimensions: usize) -> Vec<(u32, Vec<f32>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let centres: Vec<Vec<f32>> = (0..(vectors / 1_000).max(1))
        .map(|_| {
            (0..dimensions)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect()
        })
        .collect();
    (0..vectors)
        .map(|i| {
            let centre = &centres[rng.random_range(0..centres.len())];
            let mut v: Vec<f32> = centre
                .iter()
                .map(|c| c + rng.random_range(-0.3..0.3))
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            (i as u32, v)
        })
        .collect()
}

fn ann(count: usize, dimensions: usize, queries: usize, factors: &[usize]) -> Result<()> {
    let vectors = clustered(count, dimensions);
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let rebuilt = store.rebuild(&vectors, dimensions, 42)?;
    println!(
        "arroy: {count} vectors x {dimensions} built in {:.1} s, {:.1} MiB on disk",
        rebuilt.seconds,
        rebuilt.bytes as f64 / (1 << 20) as f64
    );
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let picks: Vec<u32> = (0..queries)
        .map(|_| rng.random_range(0..count as u32))
        .collect();
    let started = Instant::now();
    let mut truths = Vec::with_capacity(queries);
    for item in &picks {
        let query = &vectors[*item as usize].1;
        let mut exact: Vec<(u32, f32)> = vectors
            .iter()
            .filter(|(n, _)| n != item)
            .map(|(n, v)| (*n, v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>()))
            .collect();
        exact.select_nth_unstable_by(9, |a, b| b.1.total_cmp(&a.1));
        truths.push(
            exact[..10]
                .iter()
                .map(|(n, _)| *n)
                .collect::<HashSet<u32>>(),
        );
    }
    let exact_seconds = started.elapsed().as_secs_f64();
    println!(
        "exact brute force: {:.1} queries/s (one thread)",
        queries as f64 / exact_seconds
    );
    for &factor in factors {
        store.set_oversampling(factor);
        let started = Instant::now();
        let mut recall = 0.0;
        for (item, truth) in picks.iter().zip(&truths) {
            let found: HashSet<u32> = store
                .nearest_to_item(*item, 10)?
                .unwrap_or_default()
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            recall += truth.intersection(&found).count() as f64 / 10.0;
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "arroy, oversampling {factor}: recall@10 {:.3} over {queries} queries, {:.0} queries/s (one thread)",
            recall / queries as f64,
            queries as f64 / seconds
        );
    }
    Ok(())
}
