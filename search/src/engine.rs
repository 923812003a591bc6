//! Answering a search: plan the query, collect every match, rank (text score times the
//! bounded popularity prior, or a sort), keep what can be delivered to the shopper's
//! pincode, count facets on what is left, correct a query that found nothing, and read the
//! page's documents.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use model::calendar::IstDate;
use model::deliver::Deliverability;
use model::{MerchantId, Money, Pincode, ProductId};
use serde::{Deserialize, Serialize};
use tantivy::Searcher;

use crate::SearchError;
use crate::collect::{FacetCount, FacetSet, Match, Matches, facets};
use crate::index::SearchIndex;
use crate::prior::{Prior, PriorConfig, query_key};
use crate::query::{Filters, Plan, Planner, RankConfig, words};
use crate::schema::attr_term;
use crate::text::{self, Vocabulary};

/// How results are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    #[default]
    Relevance,
    PriceAsc,
    PriceDesc,
    Popularity,
    Newest,
}

impl Sort {
    pub fn parse(text: &str) -> Option<Sort> {
        Some(match text {
            "relevance" => Sort::Relevance,
            "price_asc" => Sort::PriceAsc,
            "price_desc" => Sort::PriceDesc,
            "popularity" => Sort::Popularity,
            "newest" => Sort::Newest,
            _ => return None,
        })
    }
}

/// One search, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub q: String,
    pub filters: Filters,
    pub pincode: Option<Pincode>,
    pub sort: Sort,
    /// 1-based.
    pub page: usize,
    pub per_page: usize,
    pub facets: FacetSet,
    /// When the shopper would order (UTC ms): what `deliverable_by` is promised for.
    pub now_ms: i64,
}

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Hit {
    pub product_id: ProductId,
    pub merchant_id: MerchantId,
    pub title: String,
    pub brand: String,
    pub category: String,
    pub price: Money,
    pub in_stock: bool,
    pub score: f32,
    /// The title with the words that matched in `<mark>`, HTML-escaped.
    pub highlights: BTreeMap<String, String>,
    /// With `pincode`: the day (IST) it can be delivered by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliverable_by: Option<IstDate>,
}

/// A search's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Answer {
    pub total: u64,
    /// False when `pincode` was given and more matched than were checked for delivery
    /// (`search.pincode_window`): `total` then counts the deliverable among those checked.
    pub total_exact: bool,
    pub hits: Vec<Hit>,
    pub facets: BTreeMap<String, Vec<FacetCount>>,
    /// When the query as typed found nothing: the query whose results these are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrected_query: Option<String>,
}

/// Why a search has no answer.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("q has no words to search for")]
    NoWords,
    #[error("attr.{0}: no product has an attribute called {0:?}")]
    UnknownAttribute(String),
    #[error("page {page} is beyond the last page of results ({last})")]
    PageOutOfRange { page: usize, last: usize },
    #[error("pincode filtering needs the serviceability stage, which is not running here")]
    NoDeliverability,
    #[error(transparent)]
    Index(#[from] SearchError),
}

/// A completion of what a shopper has typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Suggestion {
    pub text: String,
    /// `query` (shoppers ran it), `brand`, `category` or `title`.
    pub kind: &'static str,
}

/// Everything a query reads.
#[derive(Debug)]
pub struct Engine {
    pub index: Arc<SearchIndex>,
    pub prior: Arc<RwLock<Prior>>,
    pub vocabulary: Vocabulary,
    pub rank: RankConfig,
    pub prior_config: PriorConfig,
    pub deliverability: Option<Arc<dyn Deliverability>>,
    /// With `pincode`, how many of the best matches are checked for delivery.
    pub pincode_window: usize,
}

impl Engine {
    fn planner<'a>(&'a self, searcher: &'a Searcher) -> Planner<'a> {
        Planner {
            searcher,
            fields: &self.index.fields,
            rank: &self.rank,
            vocabulary: &self.vocabulary,
        }
    }

    pub fn search(&self, request: &Request) -> Result<Answer, Refused> {
        let searcher = self.index.searcher();
        let merchant = request.filters.merchant.as_ref();
        let typed = words(&request.q, &self.vocabulary, merchant);
        if typed.is_empty() {
            return Err(Refused::NoWords);
        }
        for name in request.filters.attributes.keys() {
            if !self.attribute_exists(&searcher, name)? {
                return Err(Refused::UnknownAttribute(name.clone()));
            }
        }
        for name in &request.facets.attributes {
            if !self.attribute_exists(&searcher, name)? {
                return Err(Refused::UnknownAttribute(name.clone()));
            }
        }
        if request.pincode.is_some() && self.deliverability.is_none() {
            return Err(Refused::NoDeliverability);
        }
        let planner = self.planner(&searcher);
        let open_ended = !request.q.ends_with(char::is_whitespace);
        let mut plan = planner.plan(&typed, &request.filters, open_ended)?;
        let mut matches = searcher
            .search(&plan.query, &Matches)
            .map_err(SearchError::from)?;
        let mut corrected_query = None;
        if matches.is_empty()
            && let Some((better, found)) = self.correct(&planner, &plan, request)?
        {
            corrected_query = Some(better.text());
            plan = better;
            matches = found;
        }
        let query = query_key(&plan.text());
        self.rank(&mut matches, request, query);
        let (kept, dates, exact) = self.deliverable(&matches, request)?;
        let total = kept.len();
        let last = total.div_ceil(request.per_page).max(1);
        if request.page > last {
            return Err(Refused::PageOutOfRange {
                page: request.page,
                last,
            });
        }
        let facets = facets(&searcher, &kept, &request.facets)?;
        let start = (request.page - 1) * request.per_page;
        let title_terms = plan.title_terms(&self.index.fields);
        let mut analyzer = text::analyzer();
        let mut hits = Vec::new();
        for (m, date) in kept
            .iter()
            .zip(dates.iter())
            .skip(start)
            .take(request.per_page)
        {
            let record = self.index.record(&searcher, m.address())?;
            let mut highlights = BTreeMap::new();
            highlights.insert(
                "title".to_owned(),
                highlight(&mut analyzer, &record.title, &title_terms),
            );
            hits.push(Hit {
                in_stock: record.in_stock(),
                product_id: record.product_id,
                merchant_id: record.merchant_id,
                title: record.title,
                brand: record.brand,
                category: record.category,
                price: record.price,
                score: m.text_score,
                highlights,
                deliverable_by: *date,
            });
        }
        Ok(Answer {
            total: total as u64,
            total_exact: exact,
            hits,
            facets,
            corrected_query,
        })
    }

    /// Orders `matches` by `request.sort`; `text_score` becomes the ranking score.
    fn rank(&self, matches: &mut [Match], request: &Request, query: u64) {
        let prior = self
            .prior
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let boost = |m: &Match| {
            let stock = if m.in_stock {
                1.0 + self.rank.in_stock
            } else {
                1.0
            };
            prior.boost(query, m.key, request.now_ms, &self.prior_config) * stock
        };
        match request.sort {
            Sort::Relevance => {
                for m in matches.iter_mut() {
                    m.text_score *= boost(m);
                }
                matches.sort_by(|a, b| {
                    b.text_score
                        .total_cmp(&a.text_score)
                        .then_with(|| a.key.cmp(&b.key))
                });
            }
            Sort::Popularity => {
                let mut keyed: Vec<(f32, Match)> = matches.iter().map(|m| (boost(m), *m)).collect();
                keyed.sort_by(|a, b| {
                    b.0.total_cmp(&a.0)
                        .then_with(|| b.1.text_score.total_cmp(&a.1.text_score))
                        .then_with(|| a.1.key.cmp(&b.1.key))
                });
                for (slot, (_, m)) in matches.iter_mut().zip(keyed) {
                    *slot = m;
                }
            }
            Sort::PriceAsc => matches.sort_by(|a, b| a.price.cmp(&b.price).then(a.key.cmp(&b.key))),
            Sort::PriceDesc => {
                matches.sort_by(|a, b| b.price.cmp(&a.price).then(a.key.cmp(&b.key)));
            }
            Sort::Newest => {
                matches.sort_by(|a, b| b.created.cmp(&a.created).then(a.key.cmp(&b.key)));
            }
        }
    }

    /// The ranked matches that can be delivered (all of them without a pincode), each with
    /// its date, and whether every match was checked.
    #[allow(clippy::type_complexity)]
    fn deliverable<'m>(
        &self,
        matches: &'m [Match],
        request: &Request,
    ) -> Result<(Vec<&'m Match>, Vec<Option<IstDate>>, bool), Refused> {
        let (Some(pincode), Some(deliverability)) = (request.pincode, &self.deliverability) else {
            return Ok((matches.iter().collect(), vec![None; matches.len()], true));
        };
        let searcher = self.index.searcher();
        let window = self.pincode_window.max(request.page * request.per_page);
        let mut kept = Vec::new();
        let mut dates = Vec::new();
        for m in matches.iter().take(window) {
            let record = self.index.record(&searcher, m.address())?;
            if let Ok(date) =
                deliverability.deliver_by(&record.product_id, 1, pincode, request.now_ms)
            {
                kept.push(m);
                dates.push(Some(date));
            }
        }
        Ok((kept, dates, matches.len() <= window))
    }

    /// A query that finds something, when `plan` found nothing: words that match no term
    /// are replaced by their closest title word (or dropped), then words are dropped from
    /// the end until something matches.
    fn correct(
        &self,
        planner: &Planner<'_>,
        plan: &Plan,
        request: &Request,
    ) -> Result<Option<(Plan, Vec<Match>)>, Refused> {
        let mut words: Vec<String> = Vec::new();
        for word in &plan.words {
            if word.matches_anything() {
                words.push(word.text.clone());
            } else if let Some(better) = planner.correction(&word.text)? {
                words.push(better);
            }
        }
        while !words.is_empty() {
            if words
                != plan
                    .words
                    .iter()
                    .map(|w| w.text.clone())
                    .collect::<Vec<_>>()
            {
                let candidate = planner.plan(&words, &request.filters, false)?;
                let found = planner
                    .searcher
                    .search(&candidate.query, &Matches)
                    .map_err(SearchError::from)?;
                if !found.is_empty() {
                    return Ok(Some((candidate, found)));
                }
            }
            words.pop();
        }
        Ok(None)
    }

    /// Whether every word of `query` is an indexed term as it stands.
    fn spelt_as_indexed(
        &self,
        query: &str,
        merchant: Option<&MerchantId>,
    ) -> Result<bool, SearchError> {
        let searcher = self.index.searcher();
        let typed = words(query, &self.vocabulary, merchant);
        let plan = self
            .planner(&searcher)
            .plan(&typed, &Filters::default(), false)?;
        Ok(plan.words.iter().all(|w| w.matches_exactly()))
    }

    fn attribute_exists(&self, searcher: &Searcher, name: &str) -> Result<bool, SearchError> {
        let prefix = attr_term(name, "");
        for segment in searcher.segment_readers() {
            let inverted = segment.inverted_index(self.index.fields.attr)?;
            let mut stream = inverted
                .terms()
                .range()
                .ge(prefix.as_bytes())
                .into_stream()?;
            if stream.advance() && stream.key().starts_with(prefix.as_bytes()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Completions of `q`: queries shoppers ran that begin with it (most run first), then
    /// brands, categories and titles of the best matches.
    pub fn suggest(
        &self,
        q: &str,
        merchant: Option<&MerchantId>,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<Suggestion>, Refused> {
        let typed = crate::prior::normal_query(q);
        if typed.is_empty() {
            return Err(Refused::NoWords);
        }
        let mut out: Vec<Suggestion> = Vec::new();
        let push = |text: String, kind: &'static str, out: &mut Vec<Suggestion>| {
            if out.len() < limit && !out.iter().any(|s| s.text == text) {
                out.push(Suggestion { text, kind });
            }
        };
        {
            let prior = self
                .prior
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let scope = merchant.map(ToString::to_string).unwrap_or_default();
            if let Some(counts) = prior.queries.get(&scope) {
                let mut ran: Vec<(&String, &u64)> = counts
                    .range(typed.clone()..)
                    .take_while(|(query, _)| query.starts_with(&typed))
                    .collect();
                ran.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
                for (query, _) in ran.into_iter().take(limit) {
                    if out.len() >= limit.div_ceil(2) {
                        break;
                    }
                    // A misspelt query found results too; offer only what is spelt as the
                    // catalog spells it.
                    if self.spelt_as_indexed(query, merchant)? {
                        push(query.clone(), "query", &mut out);
                    }
                }
            }
        }
        let request = Request {
            q: q.to_owned(),
            filters: Filters {
                merchant: merchant.cloned(),
                ..Filters::default()
            },
            page: 1,
            per_page: 20,
            now_ms,
            ..Request::default()
        };
        let answer = match self.search(&request) {
            Ok(answer) => answer,
            Err(Refused::PageOutOfRange { .. }) => return Ok(out),
            Err(other) => return Err(other),
        };
        let last_word = typed.rsplit(' ').next().unwrap_or_default();
        let begins = |text: &str| {
            text.to_lowercase()
                .split(|c: char| !c.is_alphanumeric())
                .any(|w| w.starts_with(last_word))
        };
        for hit in &answer.hits {
            if begins(&hit.brand) {
                push(hit.brand.to_lowercase(), "brand", &mut out);
            }
        }
        for hit in &answer.hits {
            if begins(&hit.category) {
                push(hit.category.to_lowercase(), "category", &mut out);
            }
        }
        for hit in &answer.hits {
            push(hit.title.to_lowercase(), "title", &mut out);
        }
        Ok(out)
    }
}

/// `title` HTML-escaped, with each word whose analysed term is in `terms` in `<mark>`.
fn highlight(
    analyzer: &mut tantivy::tokenizer::TextAnalyzer,
    title: &str,
    terms: &std::collections::HashSet<String>,
) -> String {
    let mut marks = Vec::new();
    let mut stream = analyzer.token_stream(title);
    while stream.advance() {
        let token = stream.token();
        if terms.contains(&token.text) {
            marks.push((token.offset_from, token.offset_to));
        }
    }
    let mut out = String::with_capacity(title.len() + marks.len() * 13);
    let mut at = 0;
    for (from, to) in marks {
        out.push_str(&escape(&title[at..from]));
        out.push_str("<mark>");
        out.push_str(&escape(&title[from..to]));
        out.push_str("</mark>");
        at = to;
    }
    out.push_str(&escape(&title[at..]));
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
