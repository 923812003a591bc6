//! What recommendations learn from the streams, as a pure fold over envelopes: the catalog
//! (merchant, category, active, stock), live sessions, customers' recent items and
//! purchases, the viewed-together and bought-together graphs, and item popularity.
//!
//! Memory is bounded: neighbour lists keep `neighbours` entries (twice that between prunes),
//! sessions and customers beyond their caps are evicted least recently seen first, a
//! session keeps its last `session_items`, a customer its last `customer_items` and
//! `customer_bought`; products are one entry each, and only products the catalog announced
//! are learnt about (a click on an id the catalog never had is counted, not remembered), so
//! the catalog bounds them.

use std::collections::{BTreeMap, HashMap, VecDeque};

use model::{Envelope, Event, ProductId};
use serde::{Deserialize, Serialize};

use crate::graph::{Decay, Graph, Trending};

/// How strongly each kind of pair counts, and the bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnConfig {
    /// Two views in one session.
    pub view_view: f32,
    /// A click on a search result with another item of the session.
    pub search_click: f32,
    /// A view with a cart add (either order).
    pub view_cart: f32,
    /// Two cart adds, a cart add with an order line, or two lines of one order.
    pub cart_order: f32,
    /// Weights halve every this many hours of event time.
    pub half_life_hours: f64,
    /// A gap longer than this starts a new visit: items on either side are not paired.
    pub session_gap_minutes: i64,
    /// Items further apart than this within a visit are not paired.
    pub pair_window_minutes: i64,
    pub neighbours: usize,
    pub trending_keep: usize,
    pub session_items: usize,
    pub customer_items: usize,
    pub customer_bought: usize,
    pub max_sessions: usize,
    pub max_customers: usize,
    /// How many of a search's top results stand for the shopper's intent in their session
    /// and history (`search.performed`), until they click something.
    pub search_results: usize,
}

impl Default for LearnConfig {
    fn default() -> Self {
        Self {
            view_view: 1.0,
            search_click: 1.5,
            view_cart: 3.0,
            cart_order: 6.0,
            half_life_hours: 24.0 * 7.0,
            session_gap_minutes: 30,
            pair_window_minutes: 24 * 60,
            neighbours: 40,
            trending_keep: 100,
            session_items: 30,
            customer_items: 50,
            customer_bought: 200,
            max_sessions: 200_000,
            max_customers: 500_000,
            search_results: 3,
        }
    }
}

impl LearnConfig {
    pub fn decay(&self) -> Decay {
        Decay {
            half_life_ms: self.half_life_hours * 3_600_000.0,
        }
    }
}

/// What a shopper did with an item, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// Among the top results of a search they ran: intent, not a choice. It seeds session
    /// and for-you answers but never pairs items or counts as popularity (a result list is
    /// similar by its text, not by what shoppers did).
    Search,
    View,
    Click,
    Cart,
    Order,
}

impl Kind {
    /// How much it says about the shopper's interest, for popularity and for-you.
    pub fn interest(self) -> f32 {
        match self {
            Kind::Search => 0.3,
            Kind::View => 1.0,
            Kind::Click => 1.5,
            Kind::Cart => 3.0,
            Kind::Order => 6.0,
        }
    }

    fn buying(self) -> bool {
        matches!(self, Kind::Cart | Kind::Order)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Touch {
    pub item: u32,
    pub kind: Kind,
    pub at: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Session {
    pub customer: Option<String>,
    pub last: i64,
    pub items: VecDeque<Touch>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Customer {
    pub last: i64,
    pub recent: VecDeque<Touch>,
    pub bought: VecDeque<u32>,
}

/// A product as recommendations filter it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Item {
    pub merchant: String,
    pub category: String,
    pub active: bool,
    /// Units on hand per warehouse, from `inventory.stock_adjusted`.
    pub on_hand: BTreeMap<String, i64>,
}

impl Item {
    pub fn in_stock(&self) -> bool {
        self.on_hand.values().any(|units| *units > 0)
    }
}

/// Product ids as dense numbers (the arroy item ids); never reused.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ids {
    names: Vec<ProductId>,
    #[serde(skip)]
    numbers: HashMap<ProductId, u32>,
}

impl Ids {
    pub fn get(&self, id: &ProductId) -> Option<u32> {
        self.numbers.get(id).copied()
    }

    pub fn name(&self, number: u32) -> Option<&ProductId> {
        self.names.get(number as usize)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn intern(&mut self, id: &ProductId) -> Option<u32> {
        if let Some(n) = self.numbers.get(id) {
            return Some(*n);
        }
        let n = u32::try_from(self.names.len()).ok()?;
        self.names.push(id.clone());
        self.numbers.insert(id.clone(), n);
        Some(n)
    }

    /// Rebuilds the lookup after a checkpoint was loaded.
    pub fn reindex(&mut self) {
        self.numbers = self
            .names
            .iter()
            .enumerate()
            .filter_map(|(n, id)| Some((id.clone(), u32::try_from(n).ok()?)))
            .collect();
    }
}

/// Everything learnt, with the positions it covers (topic/partition -> next offset).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Learner {
    pub ids: Ids,
    pub items: HashMap<u32, Item>,
    pub viewed: Graph,
    pub bought: Graph,
    pub trending: Trending,
    pub sessions: HashMap<String, Session>,
    pub customers: HashMap<String, Customer>,
    /// The latest event time seen: "now" for decay, so answers do not depend on the clock.
    pub now: i64,
    pub positions: BTreeMap<String, i64>,
    /// Interactions folded in (views, clicks, cart adds, order lines).
    pub interactions: u64,
    /// Interactions with products the catalog has not announced, not learnt.
    pub unknown_products: u64,
    /// Searches folded in (`search.performed`). Absent from checkpoints made before searches
    /// were read.
    #[serde(default)]
    pub searches: u64,
}

pub const GLOBAL: &str = "global";

pub fn category_scope(category: &str) -> String {
    format!("category:{category}")
}

pub fn merchant_scope(merchant: &str) -> String {
    format!("merchant:{merchant}")
}

impl Learner {
    /// Whether `offset` on `position` is new; records it if so. Redeliveries after a
    /// restart are below the checkpointed positions and are not counted twice.
    pub fn take(&mut self, position: &str, offset: i64) -> bool {
        let next = self.positions.entry(position.to_owned()).or_insert(0);
        if offset < *next {
            return false;
        }
        *next = offset + 1;
        true
    }

    pub fn decay(&self, config: &LearnConfig) -> Decay {
        config.decay()
    }

    pub fn apply(&mut self, envelope: &Envelope, config: &LearnConfig) {
        let at = envelope.event_time;
        self.now = self.now.max(at);
        let merchant = envelope.merchant_id.as_str();
        match &envelope.event {
            Event::ProductUpserted(p) => {
                if let Some(n) = self.ids.intern(&p.product_id) {
                    let item = self.items.entry(n).or_default();
                    item.merchant = merchant.to_owned();
                    item.category = p.category.clone();
                    item.active = true;
                }
            }
            Event::ProductDeactivated(p) => {
                if let Some(n) = self.ids.get(&p.product_id) {
                    self.items.entry(n).or_default().active = false;
                }
            }
            Event::StockAdjusted(s) => {
                if let Some(n) = self.ids.intern(&s.product_id) {
                    self.items
                        .entry(n)
                        .or_default()
                        .on_hand
                        .insert(s.warehouse_id.as_str().to_owned(), s.on_hand);
                }
            }
            Event::ProductViewed(v) => self.touch(
                v.session_id.as_str(),
                v.customer_id.as_ref().map(|c| c.as_str()),
                &v.product_id,
                Kind::View,
                at,
                config,
            ),
            Event::ProductClicked(c) => self.touch(
                c.session_id.as_str(),
                c.customer_id.as_ref().map(|c| c.as_str()),
                &c.product_id,
                Kind::Click,
                at,
                config,
            ),
            Event::Wishlisted(w) => self.touch(
                w.session_id.as_str(),
                w.customer_id.as_ref().map(|c| c.as_str()),
                &w.product_id,
                Kind::Click,
                at,
                config,
            ),
            Event::CartAdded(c) => self.touch(
                c.session_id.as_str(),
                c.customer_id.as_ref().map(|c| c.as_str()),
                &c.product_id,
                Kind::Cart,
                at,
                config,
            ),
            Event::SearchPerformed(search) => {
                self.searches += 1;
                // The top result last, so that it is the most recent: it weighs most.
                for product in search.results.iter().take(config.search_results).rev() {
                    self.touch(
                        search.session_id.as_str(),
                        search.customer_id.as_ref().map(|c| c.as_str()),
                        product,
                        Kind::Search,
                        at,
                        config,
                    );
                }
            }
            Event::OrderPlaced(order) => {
                let (keep, decay) = (config.neighbours, config.decay());
                let lines: Vec<u32> = order
                    .lines
                    .iter()
                    .filter_map(|line| self.number(&line.product_id))
                    .collect();
                for (i, a) in lines.iter().enumerate() {
                    for b in &lines[i + 1..] {
                        self.bought
                            .add_pair(*a, *b, config.cart_order, at, keep, decay);
                    }
                }
                let session = order.session_id.as_ref().map_or_else(
                    || format!("order:{}", order.order_id.as_str()),
                    |s| s.as_str().to_owned(),
                );
                for line in &order.lines {
                    self.touch(
                        &session,
                        Some(order.customer_id.as_str()),
                        &line.product_id,
                        Kind::Order,
                        at,
                        config,
                    );
                }
                if let Some(customer) = self.customers.get_mut(order.customer_id.as_str()) {
                    for n in lines {
                        if !customer.bought.contains(&n) {
                            customer.bought.push_back(n);
                        }
                        while customer.bought.len() > config.customer_bought {
                            customer.bought.pop_front();
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// The product's number if the catalog announced it.
    fn number(&mut self, product: &ProductId) -> Option<u32> {
        let n = self
            .ids
            .get(product)
            .filter(|n| self.items.get(n).is_some_and(|i| !i.merchant.is_empty()));
        if n.is_none() {
            self.unknown_products += 1;
        }
        n
    }

    /// One interaction: pairs it with the visit's earlier items, counts its popularity, and
    /// remembers it for the session and the customer.
    fn touch(
        &mut self,
        session_id: &str,
        customer: Option<&str>,
        product: &ProductId,
        kind: Kind,
        at: i64,
        config: &LearnConfig,
    ) {
        let Some(item) = self.number(product) else {
            return;
        };
        let searched = kind == Kind::Search;
        if !searched {
            self.interactions += 1;
        }
        let (keep, decay) = (config.neighbours, config.decay());
        let gap = config.session_gap_minutes * 60_000;
        let window = config.pair_window_minutes * 60_000;
        let session = self.sessions.entry(session_id.to_owned()).or_default();
        if !session.items.is_empty() && at - session.last > gap {
            session.items.clear();
        }
        if customer.is_some() {
            session.customer = customer.map(str::to_owned);
        }
        // Seeing the same item again in a visit does not pair it again: repeated views of
        // one page are not stronger evidence about its neighbours.
        let seen = session
            .items
            .iter()
            .any(|t| t.item == item && t.kind >= kind);
        if !seen && !searched {
            // Each earlier item pairs once, as its strongest touch within the window.
            let mut earlier: Vec<Touch> = Vec::with_capacity(session.items.len());
            for touch in &session.items {
                if touch.item == item
                    || touch.kind == Kind::Search
                    || (at - touch.at).abs() > window
                {
                    continue;
                }
                match earlier.iter_mut().find(|e| e.item == touch.item) {
                    Some(e) if touch.kind > e.kind => *e = *touch,
                    Some(_) => {}
                    None => earlier.push(*touch),
                }
            }
            for earlier in earlier {
                let weight = pair_weight(earlier.kind, kind, config);
                let when = at.max(earlier.at);
                self.viewed
                    .add_pair(earlier.item, item, weight, when, keep, decay);
                // Order lines pair with each other once, from the order itself.
                let same_order = earlier.kind == Kind::Order && kind == Kind::Order;
                if earlier.kind.buying() && kind.buying() && !same_order {
                    self.bought
                        .add_pair(earlier.item, item, weight, when, keep, decay);
                }
            }
        }
        session.items.push_back(Touch { item, kind, at });
        while session.items.len() > config.session_items {
            session.items.pop_front();
        }
        session.last = session.last.max(at);
        let customer_id = customer.map(str::to_owned).or(session.customer.clone());

        if !searched {
            let mut scopes = vec![GLOBAL.to_owned()];
            if let Some(known) = self.items.get(&item) {
                scopes.push(category_scope(&known.category));
                scopes.push(merchant_scope(&known.merchant));
            }
            self.trending.add(
                item,
                &scopes,
                kind.interest(),
                at,
                config.trending_keep,
                decay,
            );
        }

        if let Some(customer_id) = customer_id {
            let customer = self.customers.entry(customer_id).or_default();
            customer.recent.push_back(Touch { item, kind, at });
            while customer.recent.len() > config.customer_items {
                customer.recent.pop_front();
            }
            customer.last = customer.last.max(at);
        }
        evict(&mut self.sessions, config.max_sessions, |s| s.last);
        evict(&mut self.customers, config.max_customers, |c| c.last);
    }

    /// The number of stored pairs and remembered shoppers, for the gauges.
    pub fn sizes(&self) -> Sizes {
        Sizes {
            items: self.ids.len(),
            viewed_edges: self.viewed.edge_count(),
            bought_edges: self.bought.edge_count(),
            sessions: self.sessions.len(),
            customers: self.customers.len(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub items: usize,
    pub viewed_edges: usize,
    pub bought_edges: usize,
    pub sessions: usize,
    pub customers: usize,
}

fn pair_weight(a: Kind, b: Kind, config: &LearnConfig) -> f32 {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    match (low, high) {
        (_, Kind::Order) | (Kind::Cart, Kind::Cart) => config.cart_order,
        (_, Kind::Cart) => config.view_cart,
        (_, Kind::Click) => config.search_click,
        _ => config.view_view,
    }
}

/// Past `cap`, drops the least recently seen tenth, so eviction's sort is paid rarely.
fn evict<T>(map: &mut HashMap<String, T>, cap: usize, last: impl Fn(&T) -> i64) {
    if map.len() <= cap {
        return;
    }
    let mut ages: Vec<(i64, String)> = map.iter().map(|(k, v)| (last(v), k.clone())).collect();
    ages.sort();
    let drop = map.len() - cap + cap / 10;
    for (_, key) in ages.into_iter().take(drop) {
        map.remove(&key);
    }
}
