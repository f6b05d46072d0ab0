//! The observed-remove map: keys holding nested causal stores.

use std::collections::BTreeMap;
use std::collections::btree_map;

use serde::{Deserialize, Serialize};

use super::{Causal, CausalContext, DotStore};
use crate::clock::Dot;

/// A map from keys to nested dot stores (registers, maps, or documents
/// built from them).
///
/// A key is present while its value holds at least one dot. Removing a key
/// removes the dots its remover had seen; a concurrent write to the same
/// key carries a dot the remover never saw and survives (observed-remove,
/// "add wins"). The removed dots live on only in the causal context, which
/// compresses to a version vector: removal costs no tombstone per key.
///
/// # Laws
///
/// Inside a [`Causal`] state the join is commutative, associative and
/// idempotent, provided the nested store's join is.
///
/// # Example
///
/// ```
/// use failback::kernel::{Causal, Merge, MvReg, OrMap, Rank};
/// use failback::{ReplicaId, Stamp};
///
/// let a = ReplicaId::new("a")?;
/// let b = ReplicaId::new("b")?;
/// let mut left: Causal<OrMap<String, MvReg<i64>>> = Causal::default();
/// let delta = left.update("x".to_string(), |reg| reg.write(&a, Stamp::new(1, 0, a.clone()), 1));
/// left.merge(&delta);
///
/// let mut right = left.clone();
/// right.merge(&right.remove(&"x".to_string()));
/// let concurrent = left.update("x".to_string(), |reg| reg.write(&a, Stamp::new(2, 0, a.clone()), 2));
/// left.merge(&concurrent);
///
/// right.merge(&left); // the write the remover never saw survives
/// let x = right.store.get(&"x".to_string()).unwrap();
/// assert_eq!(x.value(&Rank::HighestStamp), Some(&2));
/// # let _ = b;
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
#[serde(bound(
    serialize = "K: Serialize + Ord, S: Serialize",
    deserialize = "K: Deserialize<'de> + Ord, S: Deserialize<'de>"
))]
pub struct OrMap<K, S> {
    entries: BTreeMap<K, S>,
}

impl<K, S> Default for OrMap<K, S> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
        }
    }
}

impl<K: Ord, S> OrMap<K, S> {
    /// The value under `key`.
    pub fn get(&self, key: &K) -> Option<&S> {
        self.entries.get(key)
    }

    /// The entries in key order.
    pub fn iter(&self) -> btree_map::Iter<'_, K, S> {
        self.entries.iter()
    }

    /// The keys in order.
    pub fn keys(&self) -> btree_map::Keys<'_, K, S> {
        self.entries.keys()
    }

    /// The number of keys present.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is present.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<K: Ord + Clone, S: DotStore> OrMap<K, S> {
    /// Mutable access to the value under `key`, created empty when absent.
    /// Used by documents that apply their own local writes in place; the
    /// caller keeps the context in step and must not leave an empty value.
    pub fn entry_mut(&mut self, key: K) -> &mut S {
        self.entries.entry(key).or_default()
    }

    /// Drops keys whose value holds no dot.
    pub fn prune(&mut self) {
        self.entries.retain(|_, v| !v.is_bottom());
    }

    /// Inserts a value directly (used by deltas and documents).
    pub fn insert(&mut self, key: K, value: S) {
        if value.is_bottom() {
            self.entries.remove(&key);
        } else {
            self.entries.insert(key, value);
        }
    }
}

impl<K: Ord + Clone, S: DotStore + Clone> DotStore for OrMap<K, S> {
    fn is_bottom(&self) -> bool {
        self.entries.is_empty()
    }

    fn join(&mut self, ctx: &CausalContext, other: &Self, other_ctx: &CausalContext) {
        let empty = S::default();
        // Keys only here: keep what the other side never saw.
        for (key, mine) in self.entries.iter_mut() {
            if !other.entries.contains_key(key) {
                mine.join(ctx, &empty, other_ctx);
            }
        }
        for (key, theirs) in &other.entries {
            match self.entries.get_mut(key) {
                Some(mine) => mine.join(ctx, theirs, other_ctx),
                None => {
                    let mut fresh = S::default();
                    fresh.join(ctx, theirs, other_ctx);
                    if !fresh.is_bottom() {
                        self.entries.insert(key.clone(), fresh);
                    }
                }
            }
        }
        self.prune();
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(&Dot)) {
        for value in self.entries.values() {
            value.for_each_dot(f);
        }
    }
}

impl<K: Ord + Clone, S: DotStore + Clone> Causal<OrMap<K, S>> {
    /// The delta of an update of `key`: `f` gets the key's current value (or
    /// an empty one) in this state's context and returns the nested delta.
    pub fn update(&self, key: K, f: impl FnOnce(&Causal<S>) -> Causal<S>) -> Self {
        let current = Causal {
            store: self.store.get(&key).cloned().unwrap_or_default(),
            ctx: self.ctx.clone(),
        };
        let nested = f(&current);
        let mut store = OrMap::default();
        store.insert(key, nested.store);
        Causal {
            store,
            ctx: nested.ctx,
        }
    }

    /// The delta of removing `key`: every dot under it that this state has
    /// seen is removed; writes this state has not seen are untouched.
    pub fn remove(&self, key: &K) -> Self {
        let mut ctx = CausalContext::new();
        if let Some(value) = self.store.get(key) {
            value.for_each_dot(&mut |dot| ctx.insert(dot.clone()));
        }
        Causal {
            store: OrMap::default(),
            ctx,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{Merge, MvReg};
    use crate::{ReplicaId, Stamp};

    #[test]
    fn entry_mut_creates_and_prune_drops_empty_values() {
        let a = ReplicaId::new("a").unwrap();
        let mut map: OrMap<u8, MvReg<u8>> = OrMap::default();
        assert!(map.is_empty());
        map.entry_mut(1)
            .set(Dot::new(a.clone(), 1), Stamp::new(0, 0, a), 7);
        map.entry_mut(2);
        assert_eq!(map.len(), 2);
        map.prune();
        assert_eq!(map.keys().copied().collect::<Vec<_>>(), [1]);
        let lens: Vec<_> = map.iter().map(|(k, v)| (*k, v.len())).collect();
        assert_eq!(lens, [(1, 1)]);
        assert!(!map.is_empty());
        map.insert(1, MvReg::default());
        assert!(map.is_empty());
    }

    #[test]
    fn a_remove_that_saw_nothing_removes_nothing() {
        let a = ReplicaId::new("a").unwrap();
        let mut state: Causal<OrMap<u8, MvReg<u8>>> = Causal::default();
        let nothing = state.remove(&1);
        assert!(nothing.ctx.is_empty());
        state.merge(&state.update(1, |reg| reg.write(&a, Stamp::new(0, 0, a.clone()), 3)));
        let seen = state.remove(&1);
        assert_eq!(seen.ctx.version_vector().get(&a), 1);
        state.merge(&nothing);
        assert_eq!(state.store.get(&1).map(MvReg::len), Some(1));
        state.merge(&seen);
        assert!(state.store.is_empty());
    }
}
