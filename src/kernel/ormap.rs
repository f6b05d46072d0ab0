//! The observed-remove map: keys holding nested causal stores.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
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
/// let x = right.store().get(&"x".to_string()).unwrap();
/// assert_eq!(x.value(&Rank::HighestStamp), Some(&2));
/// # let _ = b;
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
///
/// Stored as a vector sorted by key: a document's maps are small, and a
/// vector costs a fraction of a B-tree's nodes for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrMap<K, S> {
    entries: Vec<(K, S)>,
}

impl<K, S> Default for OrMap<K, S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, S> OrMap<K, S> {
    /// The empty map.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, S> OrMap<K, S> {
    fn find(&self, key: &K) -> Result<usize, usize> {
        self.find_by(key)
    }

    fn find_by<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// The value under `key`.
    pub fn get(&self, key: &K) -> Option<&S> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &S)> + '_ {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + '_ {
        self.entries.iter().map(|(k, _)| k)
    }

    /// The number of keys present.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is present.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Mutable access to every value; the caller keeps the context in step
    /// and calls [`OrMap::prune`] if a value may have become empty.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut S> + '_ {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// Mutable access to the value under `key`, when present.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut S> {
        let i = self.find(key).ok()?;
        Some(&mut self.entries[i].1)
    }
}

impl<K: Ord + Clone, S: DotStore> OrMap<K, S> {
    /// Mutable access to the value under `key`, created empty when absent.
    /// Used by documents that apply their own local writes in place; the
    /// caller keeps the context in step and prunes empty values.
    pub fn entry_mut(&mut self, key: K) -> &mut S {
        let i = match self.find(&key) {
            Ok(i) => i,
            Err(i) => {
                self.entries.insert(i, (key, S::default()));
                i
            }
        };
        &mut self.entries[i].1
    }

    /// As [`OrMap::entry_mut`], looking the key up by a borrowed form and
    /// making the owned key with `make` only when it is absent.
    pub fn entry_mut_by<Q: Ord + ?Sized>(&mut self, key: &Q, make: impl FnOnce(&Q) -> K) -> &mut S
    where
        K: std::borrow::Borrow<Q>,
    {
        let i = match self.find_by(key) {
            Ok(i) => i,
            Err(i) => {
                self.entries.insert(i, (make(key), S::default()));
                i
            }
        };
        &mut self.entries[i].1
    }

    /// Drops keys whose value holds no dot, and the spare capacity that
    /// inserting left: documents hold millions of these small maps.
    pub fn prune(&mut self) {
        self.entries.retain(|(_, v)| !v.is_bottom());
        self.entries.shrink_to_fit();
    }

    /// Inserts a value directly (used by deltas and documents); an empty
    /// value removes the key.
    pub fn insert(&mut self, key: K, value: S) {
        match (self.find(&key), value.is_bottom()) {
            (Ok(i), true) => {
                self.entries.remove(i);
            }
            (Ok(i), false) => self.entries[i].1 = value,
            (Err(_), true) => {}
            (Err(i), false) => self.entries.insert(i, (key, value)),
        }
    }
}

impl<K: Ord + Clone, S: DotStore + Clone> DotStore for OrMap<K, S> {
    fn is_bottom(&self) -> bool {
        self.entries.is_empty()
    }

    fn join(&mut self, ctx: &CausalContext, other: &Self, other_ctx: &CausalContext) {
        let empty = S::default();
        let mine = std::mem::take(&mut self.entries);
        let mut merged = Vec::with_capacity(mine.len().max(other.entries.len()));
        let mut mine = mine.into_iter().peekable();
        let mut theirs = other.entries.iter().peekable();
        loop {
            let order = match (mine.peek(), theirs.peek()) {
                (Some((a, _)), Some((b, _))) => a.cmp(b),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => break,
            };
            let (key, value) = match order {
                std::cmp::Ordering::Equal => {
                    let ((key, mut value), (_, other_value)) =
                        (mine.next().expect("peeked"), theirs.next().expect("peeked"));
                    value.join(ctx, other_value, other_ctx);
                    (key, value)
                }
                // Only here: keep what the other side never saw.
                std::cmp::Ordering::Less => {
                    let (key, mut value) = mine.next().expect("peeked");
                    value.join(ctx, &empty, other_ctx);
                    (key, value)
                }
                // Only there: take what this side never saw.
                std::cmp::Ordering::Greater => {
                    let (key, other_value) = theirs.next().expect("peeked");
                    let mut value = S::default();
                    value.join(ctx, other_value, other_ctx);
                    (key.clone(), value)
                }
            };
            if !value.is_bottom() {
                merged.push((key, value));
            }
        }
        self.entries = merged;
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(&Dot)) {
        for (_, value) in &self.entries {
            value.for_each_dot(f);
        }
    }
}

impl<K: Serialize, S: Serialize> Serialize for OrMap<K, S> {
    fn serialize<Ser: Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        s.collect_map(self.entries.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, K: Deserialize<'de> + Ord, S: Deserialize<'de>> Deserialize<'de> for OrMap<K, S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<K, S>::deserialize(d)?;
        Ok(Self {
            entries: map.into_iter().collect(),
        })
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
