//! Maps with a bound on how many keys they keep, for the learner's state.
//!
//! - [`Bounded`]: when full, the key (re)inserted longest ago leaves. For what is inserted
//!   once and taken (open orders and shipments).
//! - [`Generations`]: keeps between half and all of its bound, the keys written most recently,
//!   in two tables. For what is written again and again (lanes) or never taken (delivered
//!   shipments), at a million keys, where its compactness matters (BENCHMARKS.md).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// A map with a bound: when full, the key (re)inserted longest ago leaves. Saved as its pairs
/// in arrival order, so a restored map evicts in the same order as the one saved.
#[derive(Debug, Clone)]
pub(super) struct Bounded<K: Hash + Eq, V> {
    /// Each value with the arrival number of its latest insert.
    values: HashMap<K, (V, u64)>,
    /// Inserts in arrival order; an entry whose number is no longer its key's is stale.
    arrival: VecDeque<(K, u64)>,
    next: u64,
}

impl<K: Hash + Eq, V> Default for Bounded<K, V> {
    fn default() -> Self {
        Self {
            values: HashMap::new(),
            arrival: VecDeque::new(),
            next: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    /// Inserts (a key already present moves to the back); returns how many keys were evicted
    /// to make room.
    pub(super) fn insert(&mut self, key: K, value: V, bound: usize) -> u64 {
        let number = self.next;
        self.next += 1;
        self.values.insert(key.clone(), (value, number));
        self.arrival.push_back((key, number));
        let mut evicted = 0;
        while self.values.len() > bound.max(1) {
            let Some((oldest, number)) = self.arrival.pop_front() else {
                break;
            };
            if self.values.get(&oldest).is_some_and(|(_, n)| *n == number) {
                self.values.remove(&oldest);
                evicted += 1;
            }
        }
        // Stale entries (keys taken or inserted again) are swept once they are the majority.
        if self.arrival.len() > 2 * self.values.len() + 64 {
            let values = &self.values;
            self.arrival
                .retain(|(key, number)| values.get(key).is_some_and(|(_, n)| n == number));
        }
        evicted
    }

    pub(super) fn take(&mut self, key: &K) -> Option<V> {
        self.values.remove(key).map(|(value, _)| value)
    }

    /// The live pairs, oldest first.
    fn in_order(&self) -> impl Iterator<Item = (&K, &V)> {
        self.arrival.iter().filter_map(|(key, number)| {
            let (value, n) = self.values.get(key)?;
            (n == number).then_some((key, value))
        })
    }
}

/// Equal when the same pairs are live in the same order (stale entries aside).
impl<K: Hash + Eq + Clone, V: PartialEq> PartialEq for Bounded<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.values.len() == other.values.len() && self.in_order().eq(other.in_order())
    }
}

impl<K: Hash + Eq + Clone + Serialize, V: Serialize> Serialize for Bounded<K, V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.in_order().collect::<Vec<_>>().serialize(serializer)
    }
}

impl<'de, K, V> Deserialize<'de> for Bounded<K, V>
where
    K: Hash + Eq + Clone + Deserialize<'de>,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut bounded = Self::default();
        for (key, value) in Vec::<(K, V)>::deserialize(deserializer)? {
            bounded.insert(key, value, usize::MAX);
        }
        Ok(bounded)
    }
}

/// A map of at most `bound` keys in two generations. Writes go to the newer table; a key
/// written again moves to it from the older; once the newer holds `bound / 2` keys, the older
/// (the keys not written since) is dropped and the newer takes its place.
///
/// Nothing is ever removed from the newer table, so it never fills with hashbrown's deletion
/// markers: a table that churns at its 7/8 load rehashes into twice the buckets instead of in
/// place, and a `Bounded` of a million lanes held 100 bytes a key. Here a key costs its entry
/// (plus one control byte), in tables of `bound / 2`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Generations<K: Hash + Eq, V> {
    newer: HashMap<K, V>,
    older: HashMap<K, V>,
}

impl<K: Hash + Eq, V> Default for Generations<K, V> {
    fn default() -> Self {
        Self {
            newer: HashMap::new(),
            older: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq, V> Generations<K, V> {
    /// Updates `key`'s value (a default one if it has none) with `write`; returns how many keys
    /// were dropped to stay within `bound`.
    pub(super) fn write(&mut self, key: K, bound: usize, write: impl FnOnce(&mut V)) -> u64
    where
        V: Default,
    {
        if let Some(value) = self.newer.get_mut(&key) {
            write(value);
            return 0;
        }
        let mut value = self.older.remove(&key).unwrap_or_default();
        write(&mut value);
        let dropped = self.make_room(bound);
        self.newer.insert(key, value);
        dropped
    }

    /// Starts a new generation if the newer table is full; returns the keys dropped.
    fn make_room(&mut self, bound: usize) -> u64 {
        if self.newer.len() < (bound / 2).max(1) {
            return 0;
        }
        let dropped = self.older.len() as u64;
        // The next generation will fill to the same size: its table is made at that size at
        // once instead of growing to it through every power of two.
        let next = HashMap::with_capacity(self.newer.len());
        self.older = std::mem::replace(&mut self.newer, next);
        dropped
    }

    pub(super) fn get(&self, key: &K) -> Option<&V> {
        self.newer.get(key).or_else(|| self.older.get(key))
    }

    pub(super) fn contains(&self, key: &K) -> bool {
        self.newer.contains_key(key) || self.older.contains_key(key)
    }

    pub(super) fn len(&self) -> usize {
        self.newer.len() + self.older.len()
    }
}

/// Saved as its two generations' pairs in key order, so the same state saves the same bytes.
impl<K: Hash + Ord + Serialize, V: Serialize> Serialize for Generations<K, V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Saved<'a, K, V> {
            older: Vec<(&'a K, &'a V)>,
            newer: Vec<(&'a K, &'a V)>,
        }
        fn sorted<K: Ord, V>(table: &HashMap<K, V>) -> Vec<(&K, &V)> {
            let mut pairs: Vec<_> = table.iter().collect();
            pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
            pairs
        }
        Saved {
            older: sorted(&self.older),
            newer: sorted(&self.newer),
        }
        .serialize(serializer)
    }
}

/// Reads what [`Serialize`] wrote, or the pairs of a [`Bounded`] (oldest first), which the
/// same state was checkpointed as before: those all land in the newer table, and the first
/// write after that starts a new generation.
impl<'de, K, V> Deserialize<'de> for Generations<K, V>
where
    K: Hash + Eq + Deserialize<'de>,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Either<K, V>(std::marker::PhantomData<(K, V)>);

        impl<'de, K, V> Visitor<'de> for Either<K, V>
        where
            K: Hash + Eq + Deserialize<'de>,
            V: Deserialize<'de>,
        {
            type Value = Generations<K, V>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("{older, newer} or a list of pairs")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut pairs: A) -> Result<Self::Value, A::Error> {
                let mut generations = Generations::default();
                while let Some((key, value)) = pairs.next_element::<(K, V)>()? {
                    generations.newer.insert(key, value);
                }
                Ok(generations)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<Self::Value, A::Error> {
                let mut generations = Generations::default();
                while let Some(name) = fields.next_key::<String>()? {
                    let pairs: Vec<(K, V)> = fields.next_value()?;
                    let table = match name.as_str() {
                        "older" => &mut generations.older,
                        "newer" => &mut generations.newer,
                        other => {
                            return Err(serde::de::Error::unknown_field(
                                other,
                                &["older", "newer"],
                            ));
                        }
                    };
                    table.extend(pairs);
                }
                Ok(generations)
            }
        }

        deserializer.deserialize_any(Either(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_keep_what_was_written_lately_and_drop_the_rest() {
        let mut lanes: Generations<u32, u32> = Generations::default();
        let mut dropped = 0;
        for key in 0..6 {
            dropped += lanes.write(key, 8, |n| *n += 1);
        }
        // Key 0 is written again while it is in the older generation: it moves to the newer,
        // so it outlives 1, 2 and 3, written before it and not since.
        dropped += lanes.write(0, 8, |n| *n += 1);
        for key in 6..11 {
            dropped += lanes.write(key, 8, |n| *n += 1);
        }
        assert!(lanes.len() <= 8, "{}", lanes.len());
        assert_eq!(lanes.get(&0), Some(&2));
        assert!(!lanes.contains(&1), "1 was not written for a generation");
        assert!(lanes.contains(&10));
        assert_eq!(dropped + lanes.len() as u64, 11);
    }

    #[test]
    fn generations_load_what_they_saved_and_a_bounded_map_saved_before_them() {
        let mut lanes: Generations<u32, u32> = Generations::default();
        for key in 0..6 {
            lanes.write(key, 8, |n| *n = key * 10);
        }
        let saved = serde_json::to_string(&lanes).unwrap();
        let loaded: Generations<u32, u32> = serde_json::from_str(&saved).unwrap();
        assert_eq!(loaded, lanes);
        assert_eq!(serde_json::to_string(&loaded).unwrap(), saved);

        let mut bounded = Bounded::default();
        for key in 0..6u32 {
            bounded.insert(key, key * 10, 8);
        }
        let old = serde_json::to_string(&bounded).unwrap();
        let loaded: Generations<u32, u32> = serde_json::from_str(&old).unwrap();
        assert_eq!(loaded.len(), 6);
        assert_eq!(loaded.get(&5), Some(&50));
    }
}
