//! The multi-value register: concurrent writes kept side by side.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::{Causal, CausalContext, DotStore};
use crate::clock::{Dot, ReplicaId, Stamp};

/// One write held by a register: its dot, its stamp and its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry<V> {
    /// The write's identity.
    pub dot: Dot,
    /// When the write happened.
    pub stamp: Stamp,
    /// What was written.
    pub value: V,
}

/// A multi-value register over dots.
///
/// A write replaces every value its writer had seen; writes that did not
/// see each other stay side by side as *siblings*. A register never picks
/// a winner while merging: a [`Rank`] picks one when the register is read,
/// so merge stays a plain join whatever the policy and the losers stay
/// available for the conflict log.
///
/// # Laws
///
/// Inside a [`Causal`] state the join is commutative, associative and
/// idempotent. It assumes dots are unique: a dot names one write, with one
/// stamp and one value, everywhere.
///
/// # Example
///
/// ```
/// use failback::kernel::{Causal, Merge, MvReg, Rank};
/// use failback::{ReplicaId, Stamp};
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let base: Causal<MvReg<&str>> = Causal::default();
///
/// let mut primary = base.clone();
/// primary.merge(&primary.write(&p, Stamp::new(20, 0, p.clone()), "enabled"));
/// let mut secondary = base.clone();
/// secondary.merge(&secondary.write(&s, Stamp::new(10, 0, s.clone()), "disabled"));
///
/// primary.merge(&secondary);
/// assert_eq!(primary.store.len(), 2); // siblings, none lost
/// let read = primary.store.resolve(&Rank::Prefer(|v| *v == "disabled")).unwrap();
/// assert_eq!(read.winner.value, "disabled");
/// assert_eq!(read.losers[0].value, "enabled");
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MvReg<V> {
    entries: Vec<Entry<V>>,
}

impl<V> Default for MvReg<V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

/// How a register's siblings are ranked when it is read.
///
/// Every rank is a total order: after its own criterion it falls back to
/// the highest stamp and then the highest dot, so every replica picks the
/// same winner.
#[derive(Clone, Copy, Debug)]
pub enum Rank<V> {
    /// The write with the highest stamp wins.
    HighestStamp,
    /// Writes whose value satisfies the predicate beat those that do not;
    /// among equals, the highest stamp wins.
    Prefer(fn(&V) -> bool),
}

impl<V> Rank<V> {
    /// Orders two entries: `Greater` means `a` beats `b`.
    pub fn compare(&self, a: &Entry<V>, b: &Entry<V>) -> Ordering {
        let preferred = match self {
            Rank::HighestStamp => Ordering::Equal,
            Rank::Prefer(pred) => pred(&a.value).cmp(&pred(&b.value)),
        };
        preferred
            .then_with(|| a.stamp.cmp(&b.stamp))
            .then_with(|| a.dot.cmp(&b.dot))
    }
}

/// A register read through a [`Rank`]: the winner and every other sibling.
#[derive(Debug)]
pub struct Resolved<'a, V> {
    /// The sibling the rank picked.
    pub winner: &'a Entry<V>,
    /// The other siblings, best first.
    pub losers: Vec<&'a Entry<V>>,
}

impl<V> MvReg<V> {
    /// The siblings, in dot order.
    pub fn entries(&self) -> &[Entry<V>] {
        &self.entries
    }

    /// The number of siblings.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the register holds no value.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The sibling that wins under `rank`, with the others, without
    /// changing the register. `None` when it is empty.
    pub fn resolve(&self, rank: &Rank<V>) -> Option<Resolved<'_, V>> {
        let mut sorted: Vec<&Entry<V>> = self.entries.iter().collect();
        sorted.sort_by(|a, b| rank.compare(b, a));
        let mut iter = sorted.into_iter();
        let winner = iter.next()?;
        Some(Resolved {
            winner,
            losers: iter.collect(),
        })
    }

    /// The winning value under `rank`.
    pub fn value(&self, rank: &Rank<V>) -> Option<&V> {
        self.entries
            .iter()
            .max_by(|a, b| rank.compare(a, b))
            .map(|e| &e.value)
    }

    /// The highest stamp among the siblings.
    pub fn max_stamp(&self) -> Option<&Stamp> {
        self.entries.iter().map(|e| &e.stamp).max()
    }

    /// Replaces every sibling by one write, in place. The caller records
    /// `dot` in the context that goes with this store.
    pub fn set(&mut self, dot: Dot, stamp: Stamp, value: V) {
        // A fresh one-slot vector: a pushed-to vector would reserve four.
        self.entries = vec![Entry { dot, stamp, value }];
    }

    /// A register holding exactly one write.
    pub fn single(dot: Dot, stamp: Stamp, value: V) -> Self {
        Self {
            entries: vec![Entry { dot, stamp, value }],
        }
    }

    /// Panics when the invariant is broken: siblings sorted by dot, no
    /// dot twice.
    ///
    /// # Panics
    ///
    /// As said.
    pub fn check_invariants(&self) {
        for pair in self.entries.windows(2) {
            assert!(pair[0].dot < pair[1].dot, "register entries out of order");
        }
    }
}

impl<V: Clone> DotStore for MvReg<V> {
    fn is_bottom(&self) -> bool {
        self.entries.is_empty()
    }

    fn join(&mut self, ctx: &CausalContext, other: &Self, other_ctx: &CausalContext) {
        // Fast path for the common case of an identical register.
        if self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|(a, b)| a.dot == b.dot)
        {
            return;
        }
        let mut merged = Vec::with_capacity(self.entries.len().max(other.entries.len()));
        let (mut mine, mut theirs) = (
            std::mem::take(&mut self.entries).into_iter().peekable(),
            other.entries.iter().peekable(),
        );
        loop {
            match (mine.peek(), theirs.peek()) {
                (Some(a), Some(b)) => match a.dot.cmp(&b.dot) {
                    Ordering::Equal => {
                        merged.extend(mine.next());
                        theirs.next();
                    }
                    Ordering::Less => {
                        let a = mine.next().expect("peeked");
                        if !other_ctx.contains(&a.dot) {
                            merged.push(a);
                        }
                    }
                    Ordering::Greater => {
                        let b = theirs.next().expect("peeked");
                        if !ctx.contains(&b.dot) {
                            merged.push(b.clone());
                        }
                    }
                },
                (Some(_), None) => {
                    let a = mine.next().expect("peeked");
                    if !other_ctx.contains(&a.dot) {
                        merged.push(a);
                    }
                }
                (None, Some(_)) => {
                    let b = theirs.next().expect("peeked");
                    if !ctx.contains(&b.dot) {
                        merged.push(b.clone());
                    }
                }
                (None, None) => break,
            }
        }
        self.entries = merged;
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(&Dot)) {
        for entry in &self.entries {
            f(&entry.dot);
        }
    }
}

impl<V: Clone> Causal<MvReg<V>> {
    /// The delta of a write by `replica`: `value` replaces every sibling
    /// this state holds. Apply it with [`Merge::merge`](super::Merge::merge).
    pub fn write(&self, replica: &ReplicaId, stamp: Stamp, value: V) -> Self {
        let dot = self.ctx.next_dot(replica);
        let mut ctx: CausalContext = self.store.entries.iter().map(|e| e.dot.clone()).collect();
        ctx.insert(dot.clone());
        Causal {
            store: MvReg::single(dot, stamp, value),
            ctx,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::Merge;

    fn r(name: &str) -> ReplicaId {
        ReplicaId::new(name).unwrap()
    }

    /// Three concurrent writes: "b" at 30, "c" at 20, "a" at 10.
    fn siblings() -> Causal<MvReg<&'static str>> {
        let mut state = Causal::default();
        for (name, ms) in [("b", 30), ("c", 20), ("a", 10)] {
            let delta = Causal::default().write(&r(name), Stamp::new(ms, 0, r(name)), name);
            state.merge(&delta);
        }
        state
    }

    #[test]
    fn reads_rank_the_siblings() {
        let reg = siblings().store;
        assert_eq!((reg.len(), reg.is_empty()), (3, false));
        assert_eq!(reg.max_stamp(), Some(&Stamp::new(30, 0, r("b"))));
        assert_eq!(reg.value(&Rank::HighestStamp), Some(&"b"));
        let read = reg.resolve(&Rank::HighestStamp).unwrap();
        let losers: Vec<_> = read.losers.iter().map(|e| e.value).collect();
        assert_eq!((read.winner.value, losers), ("b", vec!["c", "a"]));
        let prefer_a = Rank::Prefer(|v: &&str| *v == "a");
        assert_eq!(reg.value(&prefer_a), Some(&"a"));
        assert_eq!(reg.resolve(&prefer_a).unwrap().winner.value, "a");
    }

    #[test]
    fn equal_stamps_fall_back_to_the_dot() {
        let stamp = Stamp::new(5, 0, r("a"));
        let low = Entry {
            dot: Dot::new(r("a"), 1),
            stamp: stamp.clone(),
            value: 0,
        };
        let high = Entry {
            dot: Dot::new(r("a"), 2),
            stamp,
            value: 0,
        };
        assert_eq!(Rank::HighestStamp.compare(&high, &low), Ordering::Greater);
        assert_eq!(Rank::HighestStamp.compare(&low, &high), Ordering::Less);
    }

    #[test]
    fn empty_register_reads_nothing() {
        let reg = MvReg::<u8>::default();
        assert!(reg.is_empty() && reg.resolve(&Rank::HighestStamp).is_none());
        assert_eq!(
            (reg.value(&Rank::HighestStamp), reg.max_stamp()),
            (None, None)
        );
    }

    #[test]
    fn set_replaces_every_sibling() {
        let mut reg = siblings().store;
        reg.set(Dot::new(r("a"), 9), Stamp::new(1, 0, r("a")), "new");
        let values: Vec<_> = reg.entries().iter().map(|e| e.value).collect();
        assert_eq!(values, ["new"]);
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn check_invariants_rejects_unsorted_siblings() {
        let json = r#"[{"dot":"b:1","stamp":{"ms":1,"l":0,"r":"b"},"value":1},
                      {"dot":"a:1","stamp":{"ms":1,"l":0,"r":"a"},"value":2}]"#;
        serde_json::from_str::<MvReg<u8>>(json)
            .unwrap()
            .check_invariants();
    }
}
