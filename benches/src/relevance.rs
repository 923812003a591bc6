//! The relevance harness of `shopstream-bench search`: a judged query set built from the
//! generator's catalog with planted relevance, scored with NDCG@10 and recall@10 for three
//! rankers side by side: shopstream's search, plain BM25 over titles (every word optional,
//! no stemming), and tantivy's defaults (its query parser over titles with English stemming).
//!
//! Every generated title is `{brand} {adjective} {noun}` and attributes are drawn per
//! category, so what truly matches a query is known. Queries name a brand and a noun, an
//! adjective and a noun, or a noun and a colour; a product with all of them is grade 2, one
//! with the noun only grade 1, anything else 0. Planted near misses share the noun's words
//! but are something else (`Craftwala Saree Cover`): grade 0. Each query is also asked
//! misspelt (one edit in a word of 5+ letters, two in one of 9+), transliterated (the
//! spellings of search/data/vocabulary.toml), unfinished (the last word cut to 4 letters),
//! and grocery queries with their weight written as shoppers do (`1kg`, `1000 g`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use anyhow::Result;
use model::Envelope;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use search::engine::{Engine, Request};
use search::index::{Indexer, SearchIndex};
use search::prior::{Prior, PriorConfig};
use search::query::RankConfig;
use search::text::Vocabulary;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{IndexRecordOption, Schema, TEXT, TextFieldIndexing, TextOptions};
use tantivy::{Index, IndexWriter, Term, doc};
use traffic::catalog::CATEGORIES;
use traffic::world::World;

/// One product's truth.
pub(crate) struct Truth {
    id: String,
    brand: String,
    adjective: String,
    noun: String,
    attributes: BTreeMap<String, String>,
    title: String,
}

/// A judged query.
struct Judged {
    kind: &'static str,
    text: String,
    /// Grade by product id; absent is 0.
    grades: BTreeMap<String, u8>,
}

/// The generator's catalog as events, and each product's truth, with planted near misses.
pub(crate) fn catalog(products: usize, seed: u64) -> Result<(Vec<Envelope>, Vec<Truth>)> {
    let config = traffic::GeneratorConfig {
        products,
        seed,
        ..traffic::GeneratorConfig::default()
    };
    let generator = traffic::Generator::new(config)?;
    let world: World = generator.world().clone();
    let mut events: Vec<Envelope> = generator.take(products * 2).collect();
    let mut truths: Vec<Truth> = world
        .products
        .iter()
        .map(|p| {
            let category = &CATEGORIES[p.category];
            let noun = category
                .nouns
                .iter()
                .find(|n| p.title.ends_with(*n))
                .copied()
                .unwrap_or_default();
            let adjective = p
                .title
                .strip_prefix(p.brand)
                .and_then(|rest| rest.strip_suffix(noun))
                .unwrap_or_default()
                .trim();
            Truth {
                id: p.id.to_string(),
                brand: p.brand.to_owned(),
                adjective: adjective.to_owned(),
                noun: noun.to_owned(),
                attributes: p.attributes.clone(),
                title: p.title.clone(),
            }
        })
        .collect();
    // Near misses: for every noun, things that share its words and are not it.
    let mut n = 0;
    for category in CATEGORIES {
        for noun in category.nouns {
            for (brand, what) in [("Craftwala", "Cover"), ("Ghar Sansar", "Storage Stand")] {
                n += 1;
                let id = format!("nm-{n:04}");
                let title = format!("{brand} {noun} {what}");
                events.push(Envelope::new(
                    uuid::Uuid::now_v7(),
                    1_780_000_000_000,
                    model::MerchantId::new("m-nearmiss"),
                    model::Event::ProductUpserted(model::payload::ProductUpserted {
                        product_id: model::ProductId::new(id.clone()),
                        category: "home".into(),
                        brand: brand.into(),
                        title: title.clone(),
                        description: format!("{title}. Keeps your {noun} neat."),
                        attributes: [("material".to_owned(), "cotton".to_owned())].into(),
                        price: model::Money::inr(29_900),
                    }),
                ));
                truths.push(Truth {
                    id,
                    brand: brand.into(),
                    adjective: String::new(),
                    noun: String::new(),
                    attributes: BTreeMap::new(),
                    title,
                });
            }
        }
    }
    Ok((events, truths))
}

/// The spellings shoppers type for a noun (from the shipped vocabulary).
fn transliterated(noun: &str) -> Option<String> {
    let swaps = [
        ("Saree", "sari"),
        ("Kurta", "kurtha"),
        ("Dupatta", "duppata"),
        ("Lehenga", "lehnga"),
        ("Atta", "aata"),
        ("Ghee", "ghi"),
        ("Toor Dal", "tuvar daal"),
        ("Jaggery", "gur"),
        ("Kadai", "kadhai"),
        ("Kolhapuri Chappal", "kolhapuri chapal"),
        ("Juttis", "jooti"),
        ("Kajal", "kohl"),
        ("Ubtan", "uptan"),
        ("Smartphone", "mobile"),
        ("Earbuds", "earphones"),
        ("Basmati Rice", "basmati chawal"),
    ];
    swaps
        .iter()
        .find(|(from, _)| *from == noun)
        .map(|(_, to)| (*to).to_owned())
}

/// `text` with typos in its longest word: one edit from 5 letters, two from 9.
fn misspelt(text: &str, rng: &mut ChaCha8Rng) -> Option<String> {
    let words: Vec<&str> = text.split(' ').collect();
    let (at, longest) = words.iter().enumerate().max_by_key(|(_, w)| w.len())?;
    if longest.len() < 5 {
        return None;
    }
    let mut chars: Vec<char> = longest.chars().collect();
    let edits = if chars.len() >= 9 { 2 } else { 1 };
    for _ in 0..edits {
        let i = rng.random_range(1..chars.len() - 1);
        match rng.random_range(0..3) {
            0 => chars.swap(i, i + 1),
            1 => {
                chars.remove(i);
            }
            _ => chars[i] = (b'a' + rng.random_range(0..26u8)) as char,
        }
    }
    let mut words: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
    words[at] = chars.into_iter().collect();
    Some(words.join(" "))
}

/// The judged set: `per_kind` base queries of each intent, and their variants.
fn judged(truths: &[Truth], per_kind: usize, seed: u64) -> Vec<Judged> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let real: Vec<&Truth> = truths.iter().filter(|t| !t.noun.is_empty()).collect();
    let grade = |all: &dyn Fn(&Truth) -> bool, noun: &str| -> BTreeMap<String, u8> {
        truths
            .iter()
            .filter(|t| t.noun == noun)
            .map(|t| (t.id.clone(), if all(t) { 2 } else { 1 }))
            .collect()
    };
    let mut out = Vec::new();
    for _ in 0..per_kind {
        let Some(p) = real.choose(&mut rng) else {
            break;
        };
        let intents: Vec<(&'static str, String, BTreeMap<String, u8>)> = vec![
            (
                "brand + noun",
                format!("{} {}", p.brand, p.noun).to_lowercase(),
                grade(&|t| t.brand == p.brand, &p.noun),
            ),
            (
                "adjective + noun",
                format!("{} {}", p.adjective, p.noun).to_lowercase(),
                grade(&|t| t.adjective == p.adjective, &p.noun),
            ),
        ];
        let mut intents = intents;
        if let Some(colour) = p.attributes.get("colour") {
            intents.push((
                "noun + colour",
                format!("{} {colour}", p.noun).to_lowercase(),
                grade(&|t| t.attributes.get("colour") == Some(colour), &p.noun),
            ));
        }
        if let Some(weight) = p.attributes.get("weight") {
            let written = weight
                .replace(' ', "")
                .replace("1kg", "1000 g")
                .replace("5kg", "5000g");
            intents.push((
                "noun + weight as typed",
                format!("{} {written}", p.noun).to_lowercase(),
                grade(&|t| t.attributes.get("weight") == Some(weight), &p.noun),
            ));
        }
        for (kind, text, grades) in intents {
            if let Some(typo) = misspelt(&text, &mut rng) {
                out.push(Judged {
                    kind: "misspelt",
                    text: typo,
                    grades: grades.clone(),
                });
            }
            if let Some(variant) = transliterated(&p.noun) {
                out.push(Judged {
                    kind: "transliterated",
                    text: text.replace(&p.noun.to_lowercase(), &variant),
                    grades: grades.clone(),
                });
            }
            let cut: String = {
                let mut words: Vec<&str> = text.split(' ').collect();
                let last = words.pop().unwrap_or_default();
                let prefix: String = last.chars().take(4).collect();
                words.push(&prefix);
                words.join(" ")
            };
            if cut != text {
                out.push(Judged {
                    kind: "unfinished",
                    text: cut,
                    grades: grades.clone(),
                });
            }
            out.push(Judged { kind, text, grades });
        }
    }
    out
}

/// NDCG@10 (gain 2^grade - 1) and recall@10 of the grade-2 products.
fn score(ranked: &[String], grades: &BTreeMap<String, u8>) -> (f64, f64) {
    let gain = |g: u8| f64::from((1u32 << g) - 1);
    let dcg: f64 = ranked
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, id)| gain(grades.get(id).copied().unwrap_or(0)) / ((i as f64) + 2.0).log2())
        .sum();
    let mut ideal: Vec<u8> = grades.values().copied().collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, g)| gain(*g) / ((i as f64) + 2.0).log2())
        .sum();
    let relevant = grades.values().filter(|g| **g == 2).count();
    let found = ranked
        .iter()
        .take(10)
        .filter(|id| grades.get(*id) == Some(&2))
        .count();
    let ndcg = if idcg > 0.0 { dcg / idcg } else { 0.0 };
    let recall = if relevant > 0 {
        found as f64 / relevant.min(10) as f64
    } else {
        0.0
    };
    (ndcg, recall)
}

/// The two baselines' index: titles under the default tokenizer and under `en_stem`.
struct Baselines {
    index: Index,
    plain: tantivy::schema::Field,
    stemmed: tantivy::schema::Field,
    id: tantivy::schema::Field,
}

impl Baselines {
    fn build(truths: &[Truth]) -> Result<Baselines> {
        let mut schema = Schema::builder();
        let id = schema.add_text_field("id", tantivy::schema::STRING | tantivy::schema::STORED);
        let plain = schema.add_text_field("title", TEXT);
        let stemmed = schema.add_text_field(
            "title_en",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("en_stem")
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            ),
        );
        let index = Index::create_in_ram(schema.build());
        let mut writer: IndexWriter = index.writer(50_000_000)?;
        for t in truths {
            writer.add_document(
                doc!(id => t.id.clone(), plain => t.title.clone(), stemmed => t.title.clone()),
            )?;
        }
        writer.commit()?;
        Ok(Baselines {
            index,
            plain,
            stemmed,
            id,
        })
    }

    fn top(&self, query: &dyn Query) -> Result<Vec<String>> {
        use tantivy::schema::Value as _;
        let searcher = self.index.reader()?.searcher();
        let mut out = Vec::new();
        for (_, address) in searcher.search(query, &TopDocs::with_limit(10).order_by_score())? {
            let doc: tantivy::TantivyDocument = searcher.doc(address)?;
            if let Some(id) = doc.get_first(self.id).and_then(|v| v.as_str()) {
                out.push(id.to_owned());
            }
        }
        Ok(out)
    }

    /// Plain BM25: every word of the query a should-clause over titles.
    fn bm25(&self, text: &str) -> Result<Vec<String>> {
        let mut analyzer = self.index.tokenizer_for_field(self.plain)?;
        let mut stream = analyzer.token_stream(text);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        while stream.advance() {
            clauses.push((
                Occur::Should,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.plain, &stream.token().text),
                    IndexRecordOption::WithFreqs,
                )),
            ));
        }
        self.top(&BooleanQuery::new(clauses))
    }

    /// tantivy's defaults: its query parser over stemmed titles.
    fn tantivy_default(&self, text: &str) -> Result<Vec<String>> {
        let parser = QueryParser::for_index(&self.index, vec![self.stemmed]);
        let (query, _) = parser.parse_query_lenient(text);
        self.top(&*query)
    }
}

/// Mean NDCG@10 and recall@10 per query kind (and `all`) for each ranker.
pub type Table = BTreeMap<String, BTreeMap<&'static str, (f64, f64, usize)>>;

pub fn run(products: usize, per_kind: usize, rank: RankConfig, seed: u64) -> Result<Table> {
    let (events, truths) = catalog(products, seed)?;
    let dir = tempfile::tempdir()?;
    let (index, payload, _) = SearchIndex::open(dir.path())?;
    let mut indexer = Indexer::new(Arc::clone(&index), payload, 100 << 20)?;
    for (offset, envelope) in events.iter().enumerate() {
        indexer.take("catalog/0", offset as i64);
        indexer
            .apply(envelope)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    indexer.commit()?;
    let engine = Engine {
        index,
        prior: Arc::new(RwLock::new(Prior::default())),
        vocabulary: Vocabulary::load(None)?,
        rank,
        prior_config: PriorConfig::default(),
        deliverability: None,
        pincode_window: 500,
    };
    let baselines = Baselines::build(&truths)?;
    let mut table: Table = BTreeMap::new();
    for query in judged(&truths, per_kind, seed ^ 0x5eed) {
        let ours: Vec<String> = match engine.search(&Request {
            q: query.text.clone(),
            page: 1,
            per_page: 10,
            ..Request::default()
        }) {
            Ok(answer) => answer
                .hits
                .into_iter()
                .map(|h| h.product_id.to_string())
                .collect(),
            Err(_) => Vec::new(),
        };
        for (ranker, ranked) in [
            ("shopstream", ours),
            ("BM25 titles", baselines.bm25(&query.text)?),
            ("tantivy default", baselines.tantivy_default(&query.text)?),
        ] {
            let (ndcg, recall) = score(&ranked, &query.grades);
            for kind in [query.kind, "all"] {
                let cell = table
                    .entry(kind.to_owned())
                    .or_default()
                    .entry(ranker)
                    .or_insert((0.0, 0.0, 0));
                cell.0 += ndcg;
                cell.1 += recall;
                cell.2 += 1;
            }
        }
    }
    for row in table.values_mut() {
        for cell in row.values_mut() {
            cell.0 /= cell.2 as f64;
            cell.1 /= cell.2 as f64;
        }
    }
    Ok(table)
}

pub fn print(table: &Table) {
    println!(
        "{:<24} {:>7} {:>22} {:>22} {:>22}",
        "queries",
        "count",
        "shopstream NDCG/R@10",
        "BM25 titles NDCG/R@10",
        "tantivy dflt NDCG/R@10"
    );
    for (kind, row) in table {
        let cell = |r: &str| {
            row.get(r)
                .map(|(n, rc, _)| format!("{n:.3} / {rc:.3}"))
                .unwrap_or_default()
        };
        let count = row.values().next().map_or(0, |c| c.2);
        println!(
            "{kind:<24} {count:>7} {:>22} {:>22} {:>22}",
            cell("shopstream"),
            cell("BM25 titles"),
            cell("tantivy default")
        );
    }
}
