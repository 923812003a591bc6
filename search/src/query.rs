//! Query understanding: a shopper's words become a tantivy query. Quantities are normalised,
//! stop words dropped, each word expanded to the indexed terms within its typo budget (and
//! the last one to the terms it begins, as it may still be typed), to its synonyms, and
//! matched in every text field with that field's weight; every word must match somewhere.
//! Phrase and proximity in the title add to the score. Filters never score.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use model::MerchantId;
use serde::{Deserialize, Serialize};
use tantivy::query::{
    BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, PhraseQuery, Query,
    RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{Searcher, Term};

use crate::SearchError;
use crate::schema::{Fields, TextField, attr_term};
use crate::text::{self, Vocabulary};

/// How text matches are weighed. The defaults were chosen on the relevance harness
/// (`shopstream-bench search`; BENCHMARKS.md).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RankConfig {
    pub title: f32,
    pub brand: f32,
    pub category: f32,
    pub attributes: f32,
    pub description: f32,
    /// Score factor of a term one typo away; two typos get its square.
    pub typo: f32,
    /// Score factor of a term the last word only begins.
    pub prefix: f32,
    /// Score factor of a synonym's match.
    pub synonym: f32,
    /// Added when the title holds the words as typed, in order.
    pub phrase: f32,
    /// Added when the title holds them within `proximity_slop` positions.
    pub proximity: f32,
    pub proximity_slop: u32,
    /// Multiplier of an in-stock product's score, minus one.
    pub in_stock: f32,
    /// Most terms one word expands to per field (the most frequent are kept).
    pub max_expansions: usize,
}

impl Default for RankConfig {
    fn default() -> Self {
        Self {
            title: 3.0,
            brand: 2.0,
            category: 1.5,
            attributes: 1.0,
            description: 0.3,
            typo: 0.5,
            prefix: 0.6,
            synonym: 0.9,
            phrase: 2.0,
            proximity: 1.0,
            proximity_slop: 3,
            in_stock: 0.1,
            max_expansions: 30,
        }
    }
}

impl RankConfig {
    fn weight(&self, field: TextField) -> f32 {
        match field {
            TextField::Title => self.title,
            TextField::Brand => self.brand,
            TextField::Category => self.category,
            TextField::Attributes => self.attributes,
            TextField::Description => self.description,
        }
    }
}

/// Filters: AND across kinds, OR within one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    pub merchant: Option<MerchantId>,
    pub categories: Vec<String>,
    pub brands: Vec<String>,
    /// By attribute name, the values any of which will do.
    pub attributes: BTreeMap<String, Vec<String>>,
    /// Minor units, inclusive.
    pub price_min: Option<i64>,
    pub price_max: Option<i64>,
    pub in_stock: Option<bool>,
}

impl Filters {
    fn clauses(&self, fields: &Fields) -> Vec<(Occur, Box<dyn Query>)> {
        let exact = |field: Field, value: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, value),
                IndexRecordOption::Basic,
            ))
        };
        let any = |queries: Vec<Box<dyn Query>>| -> Box<dyn Query> {
            Box::new(BooleanQuery::new(
                queries.into_iter().map(|q| (Occur::Should, q)).collect(),
            ))
        };
        let mut out: Vec<Box<dyn Query>> = Vec::new();
        if let Some(merchant) = &self.merchant {
            out.push(exact(fields.merchant, merchant.as_str()));
        }
        if !self.categories.is_empty() {
            out.push(any(self
                .categories
                .iter()
                .map(|c| exact(fields.category_key, &c.to_lowercase()))
                .collect()));
        }
        if !self.brands.is_empty() {
            out.push(any(self
                .brands
                .iter()
                .map(|b| exact(fields.brand_key, &b.to_lowercase()))
                .collect()));
        }
        for (name, values) in &self.attributes {
            out.push(any(values
                .iter()
                .map(|v| exact(fields.attr, &attr_term(name, v)))
                .collect()));
        }
        if self.price_min.is_some() || self.price_max.is_some() {
            let bound = |v: Option<i64>| match v {
                Some(v) => Bound::Included(Term::from_field_i64(fields.price, v)),
                None => Bound::Unbounded,
            };
            out.push(Box::new(RangeQuery::new(
                bound(self.price_min),
                bound(self.price_max),
            )));
        }
        if let Some(in_stock) = self.in_stock {
            out.push(Box::new(TermQuery::new(
                Term::from_field_u64(fields.in_stock, u64::from(in_stock)),
                IndexRecordOption::Basic,
            )));
        }
        out.into_iter()
            .map(|q| {
                (
                    Occur::Must,
                    Box::new(ConstScoreQuery::new(q, 0.0)) as Box<dyn Query>,
                )
            })
            .collect()
    }
}

/// One word of the query and the indexed terms it matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    /// As typed, lower case.
    pub text: String,
    /// Its analysed (stemmed) form.
    pub stem: String,
    /// Per field, the terms it matches with their score factor.
    pub expansions: HashMap<Field, Vec<(String, f32)>>,
}

impl Word {
    /// Whether some field holds the word itself, not only a near spelling or a synonym.
    pub fn matches_exactly(&self) -> bool {
        self.expansions
            .values()
            .flatten()
            .any(|(_, factor)| *factor >= 1.0)
    }

    pub fn matches_anything(&self) -> bool {
        self.expansions.values().any(|terms| !terms.is_empty())
    }
}

/// A query understood: its words and the tantivy query over words and filters.
#[derive(Debug)]
pub struct Plan {
    pub words: Vec<Word>,
    pub query: Box<dyn Query>,
}

impl Plan {
    /// Title terms any word matched: what highlights mark.
    pub fn title_terms(&self, fields: &Fields) -> HashSet<String> {
        self.words
            .iter()
            .filter_map(|w| w.expansions.get(&fields.title))
            .flatten()
            .map(|(term, _)| term.clone())
            .collect()
    }

    pub fn text(&self) -> String {
        self.words
            .iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The query's words: quantities normalised, split, lower case, stop words dropped unless
/// nothing else is left.
pub fn words(q: &str, vocabulary: &Vocabulary, merchant: Option<&MerchantId>) -> Vec<String> {
    let all: Vec<String> = text::normalise_units(q)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let kept: Vec<String> = all
        .iter()
        .filter(|w| !vocabulary.is_stop_word(w, merchant))
        .cloned()
        .collect();
    if kept.is_empty() { all } else { kept }
}

/// What `plan` needs from the index and configuration.
#[derive(Debug)]
pub struct Planner<'a> {
    pub searcher: &'a Searcher,
    pub fields: &'a Fields,
    pub rank: &'a RankConfig,
    pub vocabulary: &'a Vocabulary,
}

impl Planner<'_> {
    /// The plan of `words` under `filters`. `open_ended`: the last word may still be being
    /// typed, so the terms it begins match too.
    pub fn plan(
        &self,
        words: &[String],
        filters: &Filters,
        open_ended: bool,
    ) -> Result<Plan, SearchError> {
        let mut analyzer = text::analyzer();
        let mut planned = Vec::with_capacity(words.len());
        for (i, word) in words.iter().enumerate() {
            let stem = text::terms(&mut analyzer, word)
                .into_iter()
                .next()
                .unwrap_or_else(|| word.clone());
            let last = open_ended && i + 1 == words.len();
            let mut expansions: HashMap<Field, Vec<(String, f32)>> = HashMap::new();
            let mut variants = vec![(word.clone(), stem.clone(), 1.0)];
            for synonym in self.vocabulary.synonyms(word, filters.merchant.as_ref()) {
                let synonym_stem = text::terms(&mut analyzer, &synonym)
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| synonym.clone());
                variants.push((synonym, synonym_stem, self.rank.synonym));
            }
            for field in TextField::ALL {
                let tantivy_field = self.fields.text(field);
                let mut terms: HashMap<String, f32> = HashMap::new();
                for (raw, stem, factor) in &variants {
                    let budget = text::typo_budget(raw.chars().count());
                    for (term, _) in expand(
                        self.searcher,
                        tantivy_field,
                        stem,
                        budget,
                        false,
                        self.rank.max_expansions,
                    )? {
                        let typos = text::edit_distance(stem, &term) as i32;
                        let score = factor * self.rank.typo.powi(typos);
                        let entry = terms.entry(term).or_insert(0.0);
                        *entry = entry.max(score);
                    }
                    if last {
                        for (term, _) in expand(
                            self.searcher,
                            tantivy_field,
                            raw,
                            budget,
                            true,
                            self.rank.max_expansions,
                        )? {
                            let entry = terms.entry(term).or_insert(0.0);
                            *entry = entry.max(factor * self.rank.prefix);
                        }
                    }
                }
                let mut terms: Vec<(String, f32)> = terms.into_iter().collect();
                terms.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                expansions.insert(tantivy_field, terms);
            }
            planned.push(Word {
                text: word.clone(),
                stem,
                expansions,
            });
        }
        let query = self.query(&planned, filters);
        Ok(Plan {
            words: planned,
            query,
        })
    }

    fn query(&self, words: &[Word], filters: &Filters) -> Box<dyn Query> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for word in words {
            let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for field in TextField::ALL {
                let tantivy_field = self.fields.text(field);
                for (term, factor) in word.expansions.get(&tantivy_field).into_iter().flatten() {
                    let query = TermQuery::new(
                        Term::from_field_text(tantivy_field, term),
                        IndexRecordOption::WithFreqs,
                    );
                    alternatives.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(
                            Box::new(query),
                            self.rank.weight(field) * factor,
                        )),
                    ));
                }
            }
            // A word with no term anywhere matches nothing, and so does the query: an empty
            // disjunction says so.
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(alternatives))));
        }
        let title_terms: Vec<(usize, Term)> = words
            .iter()
            .enumerate()
            .filter_map(|(i, w)| {
                let best = w.expansions.get(&self.fields.title)?.first()?;
                Some((i, Term::from_field_text(self.fields.title, &best.0)))
            })
            .collect();
        if words.len() >= 2 && title_terms.len() == words.len() {
            clauses.push((
                Occur::Should,
                Box::new(BoostQuery::new(
                    Box::new(PhraseQuery::new_with_offset(title_terms.clone())),
                    self.rank.phrase,
                )),
            ));
            clauses.push((
                Occur::Should,
                Box::new(BoostQuery::new(
                    Box::new(PhraseQuery::new_with_offset_and_slop(
                        title_terms,
                        self.rank.proximity_slop,
                    )),
                    self.rank.proximity,
                )),
            ));
        }
        clauses.extend(filters.clauses(self.fields));
        Box::new(BooleanQuery::new(clauses))
    }

    /// The closest title word to `word` (two edits at most), preferring fewer edits, then
    /// the more common: how a word that matches nothing is corrected.
    pub fn correction(&self, word: &str) -> Result<Option<String>, SearchError> {
        if word.chars().count() < 3 {
            return Ok(None);
        }
        let candidates = expand(self.searcher, self.fields.title_words, word, 2, false, 200)?;
        Ok(candidates
            .into_iter()
            .filter(|(term, _)| term != word)
            .min_by_key(|(term, doc_freq)| (text::edit_distance(word, term), u32::MAX - doc_freq))
            .map(|(term, _)| term))
    }
}

/// The indexed terms of `field` within `distance` edits of `word` (or of a prefix of them,
/// when `prefix`), with their document frequency, the `cap` most frequent.
pub fn expand(
    searcher: &Searcher,
    field: Field,
    word: &str,
    distance: u8,
    prefix: bool,
    cap: usize,
) -> Result<Vec<(String, u32)>, SearchError> {
    let term = Term::from_field_text(field, word);
    let fuzzy = if prefix {
        FuzzyTermQuery::new_prefix(term, distance, true)
    } else {
        FuzzyTermQuery::new(term, distance, true)
    };
    let automaton = fuzzy.automaton()?;
    let mut found: HashMap<String, u32> = HashMap::new();
    for segment in searcher.segment_readers() {
        let inverted = segment.inverted_index(field)?;
        let mut stream = inverted.terms().search(&automaton).into_stream()?;
        // A short prefix can begin thousands of terms; the first few thousand are plenty to
        // pick the most frequent from.
        let mut scanned = 0;
        while stream.advance() && scanned < 5_000 {
            scanned += 1;
            let Ok(term) = std::str::from_utf8(stream.key()) else {
                continue;
            };
            *found.entry(term.to_owned()).or_default() += stream.value().doc_freq;
        }
    }
    // Fewest edits first, then the most frequent: with many terms in reach, the cap must never
    // drop the word as typed (or its completions) in favour of typos of it.
    let edits = |term: &str| {
        if prefix {
            usize::from(!term.starts_with(word))
        } else {
            text::edit_distance(word, term)
        }
    };
    let mut found: Vec<(String, u32)> = found.into_iter().collect();
    found.sort_by(|a, b| {
        edits(&a.0)
            .cmp(&edits(&b.0))
            .then(b.1.cmp(&a.1))
            .then_with(|| a.0.cmp(&b.0))
    });
    found.truncate(cap);
    Ok(found)
}
