//! Collecting every match of a query with what ranking needs (score, key, price, age,
//! stock), and counting facets over any set of matches from the fast fields.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocId, Score, Searcher, SegmentOrdinal, SegmentReader};

use crate::SearchError;

/// One matching document.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    pub segment: SegmentOrdinal,
    pub doc: DocId,
    pub text_score: f32,
    pub key: u64,
    pub price: i64,
    pub created: i64,
    pub in_stock: bool,
}

impl Match {
    pub fn address(&self) -> tantivy::DocAddress {
        tantivy::DocAddress::new(self.segment, self.doc)
    }
}

/// Collects every match.
#[derive(Debug, Clone, Copy, Default)]
pub struct Matches;

pub struct SegmentMatches {
    segment: SegmentOrdinal,
    key: Column<u64>,
    price: Column<i64>,
    created: Column<i64>,
    in_stock: Column<u64>,
    found: Vec<Match>,
}

impl std::fmt::Debug for SegmentMatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentMatches")
            .field("segment", &self.segment)
            .field("found", &self.found.len())
            .finish_non_exhaustive()
    }
}

impl Collector for Matches {
    type Fruit = Vec<Match>;
    type Child = SegmentMatches;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentMatches> {
        let fast = reader.fast_fields();
        Ok(SegmentMatches {
            segment,
            key: fast.u64("key")?,
            price: fast.i64("price")?,
            created: fast.i64("created")?,
            in_stock: fast.u64("in_stock")?,
            found: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, fruits: Vec<Vec<Match>>) -> tantivy::Result<Vec<Match>> {
        Ok(fruits.into_iter().flatten().collect())
    }
}

impl SegmentCollector for SegmentMatches {
    type Fruit = Vec<Match>;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.found.push(Match {
            segment: self.segment,
            doc,
            text_score: score,
            key: self.key.first(doc).unwrap_or_default(),
            price: self.price.first(doc).unwrap_or_default(),
            created: self.created.first(doc).unwrap_or_default(),
            in_stock: self.in_stock.first(doc) == Some(1),
        });
    }

    fn harvest(self) -> Vec<Match> {
        self.found
    }
}

/// Which facets to count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FacetSet {
    pub category: bool,
    pub brand: bool,
    pub price: bool,
    /// Every attribute's values.
    pub all_attributes: bool,
    /// These attributes' values.
    pub attributes: Vec<String>,
}

/// One value of a facet and how many matches have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(serde::Deserialize))]
pub struct FacetCount {
    pub value: String,
    pub count: u64,
    /// Price bands only: the band, minor units, `max` exclusive and absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
}

/// Price bands in rupees: what a shopper picks between.
const PRICE_BANDS_RUPEES: [i64; 8] = [0, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000];

/// Most values shown per facet, the most common first.
const VALUES_PER_FACET: usize = 20;

/// Facet counts over `matches`.
pub fn facets(
    searcher: &Searcher,
    matches: &[&Match],
    wanted: &FacetSet,
) -> Result<BTreeMap<String, Vec<FacetCount>>, SearchError> {
    let mut out = BTreeMap::new();
    let mut by_segment: BTreeMap<SegmentOrdinal, Vec<DocId>> = BTreeMap::new();
    for m in matches {
        by_segment.entry(m.segment).or_default().push(m.doc);
    }
    let count_column = |name: &str, facet: &str| -> Result<HashMap<String, u64>, SearchError> {
        let mut counts: HashMap<String, u64> = HashMap::new();
        for (segment, docs) in &by_segment {
            let reader = searcher.segment_reader(*segment);
            let Some(column) = reader.fast_fields().str(name)? else {
                continue;
            };
            for (value, count) in count_ords(&column, docs)? {
                if facet.is_empty() || value.starts_with(facet) {
                    *counts.entry(value).or_default() += count;
                }
            }
        }
        Ok(counts)
    };
    if wanted.category {
        out.insert("category".to_owned(), top(count_column("category", "")?));
    }
    if wanted.brand {
        out.insert("brand".to_owned(), top(count_column("brand", "")?));
    }
    if wanted.all_attributes || !wanted.attributes.is_empty() {
        let mut by_name: BTreeMap<String, HashMap<String, u64>> = BTreeMap::new();
        for (term, count) in count_column("attr", "")? {
            let Some((name, value)) = term.split_once('=') else {
                continue;
            };
            if wanted.all_attributes || wanted.attributes.iter().any(|a| a == name) {
                *by_name
                    .entry(name.to_owned())
                    .or_default()
                    .entry(value.to_owned())
                    .or_default() += count;
            }
        }
        for name in &wanted.attributes {
            by_name.entry(name.clone()).or_default();
        }
        for (name, counts) in by_name {
            out.insert(format!("attr.{name}"), top(counts));
        }
    }
    if wanted.price {
        let mut counts = [0u64; PRICE_BANDS_RUPEES.len()];
        for m in matches {
            let rupees = m.price / 100;
            let band = PRICE_BANDS_RUPEES
                .iter()
                .rposition(|start| rupees >= *start)
                .unwrap_or(0);
            counts[band] += 1;
        }
        let bands = PRICE_BANDS_RUPEES
            .iter()
            .enumerate()
            .filter(|(i, _)| counts[*i] > 0)
            .map(|(i, start)| {
                let end = PRICE_BANDS_RUPEES.get(i + 1);
                FacetCount {
                    value: match end {
                        Some(end) => format!("{start}-{end}"),
                        None => format!("{start}+"),
                    },
                    count: counts[i],
                    min: Some(start * 100),
                    max: end.map(|e| e * 100),
                }
            })
            .collect();
        out.insert("price".to_owned(), bands);
    }
    Ok(out)
}

/// How many of `docs` have each value of `column`.
fn count_ords(column: &StrColumn, docs: &[DocId]) -> Result<Vec<(String, u64)>, SearchError> {
    let mut by_ord: HashMap<u64, u64> = HashMap::new();
    for doc in docs {
        for ord in column.term_ords(*doc) {
            *by_ord.entry(ord).or_default() += 1;
        }
    }
    let mut out = Vec::with_capacity(by_ord.len());
    let mut value = String::new();
    for (ord, count) in by_ord {
        value.clear();
        if column
            .ord_to_str(ord, &mut value)
            .map_err(|e| SearchError::Corrupt(format!("facet dictionary: {e}")))?
        {
            out.push((value.clone(), count));
        }
    }
    Ok(out)
}

fn top(counts: HashMap<String, u64>) -> Vec<FacetCount> {
    let mut values: Vec<FacetCount> = counts
        .into_iter()
        .map(|(value, count)| FacetCount {
            value,
            count,
            min: None,
            max: None,
        })
        .collect();
    values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    values.truncate(VALUES_PER_FACET);
    values
}
