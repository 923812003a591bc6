//! The serving state: the network and what was learnt, behind one lock, answered from by the
//! routes, by [`Deliverability`] for other stages, and checkpointed by the job with the
//! offsets it covers.

use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use model::calendar::IstDate;
use model::deliver::{Deliverability, Undeliverable};
use model::geo::Directory;
use model::{Envelope, Pincode, ProductId};
use serde::{Deserialize, Serialize};

use super::learn::{LearnConfig, Learnt, Regions};
use super::network::Network;
use super::promise::{Inputs, PromiseConfig};

/// What the job folds records into.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub network: Network,
    pub learnt: Learnt,
    /// The next offset to apply per `topic/partition` (topic names as on the cluster).
    pub positions: BTreeMap<String, i64>,
}

impl State {
    /// Folds one envelope into the network and the learner. `Err` says why a reference event
    /// is unusable (the job dead-letters it); the state is then unchanged.
    pub fn apply(
        &mut self,
        envelope: &Envelope,
        regions: &Regions,
        config: &LearnConfig,
    ) -> Result<(), String> {
        self.network.apply(envelope)?;
        self.learnt.apply(envelope, &self.network, regions, config);
        Ok(())
    }
}

/// The stage's state and its settings, shared by the job, the routes and other stages.
#[derive(Debug)]
pub struct Serviceability {
    regions: Regions,
    pub learn: LearnConfig,
    pub promise: PromiseConfig,
    state: RwLock<State>,
}

impl Serviceability {
    pub fn new(learn: LearnConfig, promise: PromiseConfig) -> Self {
        Self {
            regions: Regions::new(Directory::load()),
            learn,
            promise,
            state: RwLock::new(State::default()),
        }
    }

    pub fn regions(&self) -> &Regions {
        &self.regions
    }

    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `answer` with everything a promise needs.
    pub fn with_inputs<T>(&self, answer: impl FnOnce(&Inputs<'_>) -> T) -> T {
        let state = self.read();
        answer(&Inputs {
            network: &state.network,
            learnt: &state.learnt,
            regions: &self.regions,
            learn: &self.learn,
            promise: &self.promise,
        })
    }
}

impl Deliverability for Serviceability {
    fn deliver_by(
        &self,
        product: &ProductId,
        quantity: u32,
        pincode: Pincode,
        order_time: i64,
    ) -> Result<IstDate, Undeliverable> {
        self.with_inputs(|inputs| {
            let options = inputs.options(product, quantity, pincode, order_time)?;
            // `options` is never empty when it is Ok; the first is the earliest.
            options
                .first()
                .map(|option| option.deliver_by)
                .ok_or(Undeliverable::NotServiceable)
        })
    }
}
