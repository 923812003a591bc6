//! Shopping sessions: a buyer arrives at one merchant's store, searches and browses by
//! popularity, clicks by position, fills a cart and sometimes checks out.

use std::collections::BTreeMap;

use model::payload::{CartChanged, ProductClicked, ProductViewed, SearchPerformed, Wishlisted};
use model::{CustomerId, Event, Pincode, SessionId};
use rand::Rng;
use rand::seq::IndexedRandom;

use crate::Generator;
use crate::catalog::CATEGORIES;

/// A session ends after this many steps even if the buyer never decides.
const MAX_STEPS: u8 = 40;
const RESULTS_SHOWN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Arrived,
    Searched,
    /// Clicked a result; the product page view follows.
    Clicked(usize),
    Viewing(usize),
}

#[derive(Debug, Clone)]
pub(crate) struct Session {
    id: SessionId,
    merchant: usize,
    customer: usize,
    logged_in: bool,
    stage: Stage,
    pub(crate) cart: Vec<(usize, u32)>,
    query: String,
    results: Vec<usize>,
    steps: u8,
}

enum Next {
    Emit(Event),
    EmitAndEnd(Event),
    End,
}

impl Generator {
    /// Advances one session by one step; `None` when the step was the buyer leaving.
    pub(crate) fn step_a_session(&mut self) -> Option<(usize, Event)> {
        let index = self.pick_session();
        let mut session = self.sessions.swap_remove(index);
        session.steps += 1;
        let next = if session.steps > MAX_STEPS {
            Next::End
        } else {
            self.step(&mut session)
        };
        let merchant = session.merchant;
        match next {
            Next::Emit(event) => {
                self.sessions.push(session);
                Some((merchant, event))
            }
            Next::EmitAndEnd(event) => Some((merchant, event)),
            Next::End => None,
        }
    }

    fn pick_session(&mut self) -> usize {
        let room = self.sessions.len() < self.config.concurrent_sessions;
        if self.sessions.is_empty() || (room && self.rng.random_bool(0.2)) {
            let merchant = self.pick_merchant();
            let customer = self.rng.random_range(0..self.world.customers.len());
            let id = SessionId::new(format!("s-{:09}", self.next_session));
            self.next_session += 1;
            self.sessions.push(Session {
                id,
                merchant,
                customer,
                logged_in: self.rng.random_bool(0.7),
                stage: Stage::Arrived,
                cart: Vec::new(),
                query: String::new(),
                results: Vec::new(),
                steps: 0,
            });
            return self.sessions.len() - 1;
        }
        self.rng.random_range(0..self.sessions.len())
    }

    fn popular_product(&mut self, merchant: usize) -> Option<usize> {
        let popularity = &self.product_popularity[merchant];
        (!popularity.is_empty()).then(|| popularity.sample(&mut self.rng))
    }

    fn step(&mut self, session: &mut Session) -> Next {
        let roll: f64 = self.rng.random();
        match session.stage {
            Stage::Arrived if roll < 0.6 => self.search(session),
            Stage::Arrived => self.view_popular(session),
            Stage::Searched if roll < 0.55 && !session.results.is_empty() => self.click(session),
            Stage::Searched if roll < 0.75 => self.search(session),
            Stage::Searched => Next::End,
            Stage::Clicked(product) => self.view(session, product),
            Stage::Viewing(product) => {
                if roll < 0.22 {
                    self.add_to_cart(session, product)
                } else if roll < 0.26 {
                    Next::Emit(Event::Wishlisted(Wishlisted {
                        session_id: session.id.clone(),
                        customer_id: self.customer_id(session),
                        product_id: self.world.products[product].id.clone(),
                    }))
                } else if roll < 0.62 {
                    self.view_popular(session)
                } else if roll < 0.75 {
                    self.search(session)
                } else if !session.cart.is_empty() && roll < 0.93 {
                    self.checkout_or_abandon(session)
                } else {
                    Next::End
                }
            }
        }
    }

    fn customer_id(&self, session: &Session) -> Option<CustomerId> {
        session
            .logged_in
            .then(|| self.world.customers[session.customer].id.clone())
    }

    fn customer_pincode(&self, session: &Session) -> Pincode {
        self.world.customers[session.customer].pincode
    }

    fn search(&mut self, session: &mut Session) -> Next {
        let Some(base) = self.popular_product(session.merchant) else {
            return Next::End;
        };
        let product = &self.world.products[base];
        let category = &CATEGORIES[product.category];
        let noun = category
            .nouns
            .iter()
            .find(|noun| product.title.ends_with(*noun))
            .copied()
            .unwrap_or(category.name);
        session.query = if self.rng.random_bool(0.5) {
            noun.to_lowercase()
        } else {
            format!("{} {}", product.brand, noun).to_lowercase()
        };
        let mut filters = BTreeMap::new();
        if self.rng.random_bool(0.3)
            && let Some((name, value)) = product.attributes.iter().next()
        {
            filters.insert(name.clone(), value.clone());
        }
        session.results.clear();
        session.results.push(base);
        for _ in 0..RESULTS_SHOWN * 2 {
            if session.results.len() == RESULTS_SHOWN {
                break;
            }
            if let Some(candidate) = self.popular_product(session.merchant)
                && !session.results.contains(&candidate)
            {
                session.results.push(candidate);
            }
        }
        session.stage = Stage::Searched;
        let pincode = self
            .rng
            .random_bool(0.5)
            .then(|| self.customer_pincode(session));
        Next::Emit(Event::SearchPerformed(SearchPerformed {
            session_id: session.id.clone(),
            customer_id: self.customer_id(session),
            query: session.query.clone(),
            filters,
            pincode,
            results: session
                .results
                .iter()
                .map(|&p| self.world.products[p].id.clone())
                .collect(),
        }))
    }

    /// Clicks fall off with position, as they do on every results page: P(k) ~ 1/(k+1).
    fn click(&mut self, session: &mut Session) -> Next {
        let weights: Vec<f64> = (0..session.results.len())
            .map(|k| 1.0 / (k as f64 + 1.0))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut u = self.rng.random::<f64>() * total;
        let mut position = 0;
        for (k, w) in weights.iter().enumerate() {
            position = k;
            if u < *w {
                break;
            }
            u -= w;
        }
        let product = session.results[position];
        session.stage = Stage::Clicked(product);
        Next::Emit(Event::ProductClicked(ProductClicked {
            session_id: session.id.clone(),
            customer_id: self.customer_id(session),
            product_id: self.world.products[product].id.clone(),
            position: position as u32,
            query: session.query.clone(),
        }))
    }

    fn view_popular(&mut self, session: &mut Session) -> Next {
        match self.popular_product(session.merchant) {
            Some(product) => self.view(session, product),
            None => Next::End,
        }
    }

    fn view(&mut self, session: &mut Session, product: usize) -> Next {
        session.stage = Stage::Viewing(product);
        Next::Emit(Event::ProductViewed(ProductViewed {
            session_id: session.id.clone(),
            customer_id: self.customer_id(session),
            product_id: self.world.products[product].id.clone(),
        }))
    }

    fn add_to_cart(&mut self, session: &mut Session, product: usize) -> Next {
        let quantity = *[1, 1, 1, 2, 2, 3].choose(&mut self.rng).unwrap_or(&1);
        match session.cart.iter_mut().find(|(p, _)| *p == product) {
            Some((_, existing)) => *existing += quantity,
            None => session.cart.push((product, quantity)),
        }
        Next::Emit(Event::CartAdded(CartChanged {
            session_id: session.id.clone(),
            customer_id: self.customer_id(session),
            product_id: self.world.products[product].id.clone(),
            quantity,
        }))
    }

    fn checkout_or_abandon(&mut self, session: &mut Session) -> Next {
        if self.rng.random_bool(0.15) {
            let Some((product, quantity)) = session.cart.pop() else {
                return Next::End;
            };
            return Next::Emit(Event::CartRemoved(CartChanged {
                session_id: session.id.clone(),
                customer_id: self.customer_id(session),
                product_id: self.world.products[product].id.clone(),
                quantity,
            }));
        }
        if self.rng.random_bool(0.55) {
            // Checking out needs an account.
            session.logged_in = true;
            let delivery = self.delivery_pincode(session);
            let customer = self.world.customers[session.customer].id.clone();
            let event = self.place_order(
                session.merchant,
                customer,
                Some(session.id.clone()),
                &session.cart,
                delivery,
            );
            return Next::EmitAndEnd(event);
        }
        Next::End
    }

    /// Hyperlocal stores deliver only near the store, so their buyers are nearby.
    fn delivery_pincode(&mut self, session: &Session) -> Pincode {
        let store = self.world.merchants[session.merchant].store.as_ref();
        match store.and_then(|store| store.nearby.choose(&mut self.rng)) {
            Some(pincode) => *pincode,
            None => self.customer_pincode(session),
        }
    }
}
