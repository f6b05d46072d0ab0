//! The multi-value register: concurrent writes kept side by side.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Causal, CausalContext, DotStore, InvariantError};
use crate::clock::{Dot, ReplicaId, Stamp};

/// The identity and time of one write: its dot and its stamp.
///
/// One write usually sets many registers (every field and twin leaf an
/// import changes) with one dot and one stamp: they share one `Tag`, a
/// pointer to the pair, so each register entry pays 8 bytes for it instead
/// of repeating a 56-byte dot and stamp. Compared by content, never by
/// address.
#[derive(Clone, PartialEq, Eq)]
pub struct Tag(Arc<(Dot, Stamp)>);

impl Tag {
    /// The tag of the write `dot`, made at `stamp`.
    pub fn new(dot: Dot, stamp: Stamp) -> Self {
        Self(Arc::new((dot, stamp)))
    }

    /// The write's identity.
    pub fn dot(&self) -> &Dot {
        &self.0.0
    }

    /// When the write happened.
    pub fn stamp(&self) -> &Stamp {
        &self.0.1
    }

    /// A tag equal to `(dot, stamp)`, shared with the one this thread
    /// deserialized last when they are equal: the entries of one write sit
    /// side by side in a state file and come back sharing one tag.
    fn shared(dot: Dot, stamp: Stamp) -> Self {
        thread_local! {
            static LAST: RefCell<Option<Tag>> = const { RefCell::new(None) };
        }
        LAST.with(|last| {
            let mut last = last.borrow_mut();
            match &*last {
                Some(tag) if *tag.dot() == dot && *tag.stamp() == stamp => tag.clone(),
                _ => {
                    let tag = Tag::new(dot, stamp);
                    *last = Some(tag.clone());
                    tag
                }
            }
        })
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/{:?}", self.dot(), self.stamp())
    }
}

/// One write held by a register: its [`Tag`] (dot and stamp) and its value.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry<V> {
    tag: Tag,
    /// What was written.
    pub value: V,
}

impl<V> Entry<V> {
    /// The entry of the write `dot` at `stamp` of `value`.
    pub fn new(dot: Dot, stamp: Stamp, value: V) -> Self {
        Self::tagged(Tag::new(dot, stamp), value)
    }

    /// The entry of `value` written by the write `tag`.
    pub fn tagged(tag: Tag, value: V) -> Self {
        Self { tag, value }
    }

    /// The write's identity.
    pub fn dot(&self) -> &Dot {
        self.tag.dot()
    }

    /// When the write happened.
    pub fn stamp(&self) -> &Stamp {
        self.tag.stamp()
    }

    /// The write's dot and stamp.
    pub fn tag(&self) -> &Tag {
        &self.tag
    }
}

impl<V: fmt::Debug> fmt::Debug for Entry<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("dot", self.dot())
            .field("stamp", self.stamp())
            .field("value", &self.value)
            .finish()
    }
}

impl<V: Serialize> Serialize for Entry<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Entry", 3)?;
        st.serialize_field("dot", self.dot())?;
        st.serialize_field("stamp", self.stamp())?;
        st.serialize_field("value", &self.value)?;
        st.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entry<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw<V> {
            dot: Dot,
            stamp: Stamp,
            value: V,
        }
        let raw = Raw::<V>::deserialize(d)?;
        Ok(Self::tagged(Tag::shared(raw.dot, raw.stamp), raw.value))
    }
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
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
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
/// assert_eq!(primary.store().len(), 2); // siblings, none lost
/// let read = primary.store().resolve(&Rank::Prefer(|v| *v == "disabled")).unwrap();
/// assert_eq!(read.winner.value, "disabled");
/// assert_eq!(read.losers[0].value, "enabled");
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
///
/// Stored without a heap allocation while it holds one write, as almost
/// every register does; siblings go to a vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MvReg<V> {
    slots: Slots<V>,
}

/// A register's entries: none, one inline, or two or more in an exactly
/// sized box, so equal registers have equal representations. The box,
/// half a vector's size, lets the register take no more room than its one
/// entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Slots<V> {
    Empty,
    One(Entry<V>),
    Many(Box<[Entry<V>]>),
}

impl<V> Default for MvReg<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Serialize> Serialize for MvReg<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.entries())
    }
}

/// Reads the siblings and checks them: in dot order, no dot twice.
impl<'de, V: Deserialize<'de>> Deserialize<'de> for MvReg<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let reg = Vec::<Entry<V>>::deserialize(d).map(Self::from_vec)?;
        reg.check_invariants().map_err(serde::de::Error::custom)?;
        Ok(reg)
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
            .then_with(|| a.stamp().cmp(b.stamp()))
            .then_with(|| a.dot().cmp(b.dot()))
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
    /// The empty register.
    pub const fn new() -> Self {
        Self {
            slots: Slots::Empty,
        }
    }

    fn from_vec(mut entries: Vec<Entry<V>>) -> Self {
        let slots = match entries.pop() {
            Some(only) if entries.is_empty() => Slots::One(only),
            Some(last) => {
                entries.push(last);
                Slots::Many(entries.into_boxed_slice())
            }
            None => Slots::Empty,
        };
        Self { slots }
    }

    /// The siblings, in dot order.
    pub fn entries(&self) -> &[Entry<V>] {
        match &self.slots {
            Slots::Empty => &[],
            Slots::One(entry) => std::slice::from_ref(entry),
            Slots::Many(entries) => entries,
        }
    }

    /// The number of siblings.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether the register holds no value.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    /// The sibling that wins under `rank`, with the others, without
    /// changing the register. `None` when it is empty.
    pub fn resolve(&self, rank: &Rank<V>) -> Option<Resolved<'_, V>> {
        let mut sorted: Vec<&Entry<V>> = self.entries().iter().collect();
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
        self.entries()
            .iter()
            .max_by(|a, b| rank.compare(a, b))
            .map(|e| &e.value)
    }

    /// The highest stamp among the siblings.
    pub fn max_stamp(&self) -> Option<&Stamp> {
        self.entries().iter().map(Entry::stamp).max()
    }

    /// Replaces every sibling by one write, in place. The caller records
    /// `dot` in the context that goes with this store.
    pub fn set(&mut self, dot: Dot, stamp: Stamp, value: V) {
        self.set_tagged(Tag::new(dot, stamp), value);
    }

    /// Replaces every sibling by `value` written by `tag`, in place: the
    /// writes of one operation share its tag.
    pub fn set_tagged(&mut self, tag: Tag, value: V) {
        self.slots = Slots::One(Entry::tagged(tag, value));
    }

    /// A register holding exactly one write.
    pub fn single(dot: Dot, stamp: Stamp, value: V) -> Self {
        Self {
            slots: Slots::One(Entry::new(dot, stamp, value)),
        }
    }

    /// Checks the invariant: siblings sorted by dot, no dot twice.
    /// Deserializing checks it too.
    ///
    /// # Errors
    ///
    /// [`InvariantError::DuplicateDot`] or [`InvariantError::Unsorted`],
    /// naming the dot.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        for pair in self.entries().windows(2) {
            let (a, b) = (pair[0].dot(), pair[1].dot());
            match a.cmp(b) {
                Ordering::Less => {}
                Ordering::Equal => return Err(InvariantError::DuplicateDot { dot: b.clone() }),
                Ordering::Greater => return Err(InvariantError::Unsorted { dot: b.clone() }),
            }
        }
        Ok(())
    }
}

impl<V: Clone> DotStore for MvReg<V> {
    fn is_bottom(&self) -> bool {
        self.is_empty()
    }

    fn join(&mut self, ctx: &CausalContext, other: &Self, other_ctx: &CausalContext) {
        let (mine, theirs) = (self.entries(), other.entries());
        // Fast path for the common case of an identical register.
        if mine.len() == theirs.len()
            && mine
                .iter()
                .zip(theirs)
                .all(|(a, b)| Arc::ptr_eq(&a.tag.0, &b.tag.0) || a.dot() == b.dot())
        {
            return;
        }
        // One write on each side, as most registers hold: no vector unless
        // both survive.
        if let (Slots::One(a), [b]) = (&self.slots, theirs) {
            let keep_a = !other_ctx.contains(a.dot());
            let keep_b = !ctx.contains(b.dot());
            match (keep_a, keep_b) {
                (true, false) => {}
                (false, true) => self.slots = Slots::One(b.clone()),
                (false, false) => self.slots = Slots::Empty,
                (true, true) => {
                    let a = a.clone();
                    let pair = if a.dot() < b.dot() {
                        vec![a, b.clone()]
                    } else {
                        vec![b.clone(), a]
                    };
                    self.slots = Slots::Many(pair.into_boxed_slice());
                }
            }
            return;
        }
        let mut merged = Vec::with_capacity(mine.len().max(theirs.len()));
        let mine = match std::mem::take(self).slots {
            Slots::Empty => Vec::new(),
            Slots::One(entry) => vec![entry],
            Slots::Many(entries) => entries.into_vec(),
        };
        let (mut mine, mut theirs) = (mine.into_iter().peekable(), theirs.iter().peekable());
        loop {
            match (mine.peek(), theirs.peek()) {
                (Some(a), Some(b)) => match a.dot().cmp(b.dot()) {
                    Ordering::Equal => {
                        merged.extend(mine.next());
                        theirs.next();
                    }
                    Ordering::Less => {
                        let a = mine.next().expect("peeked");
                        if !other_ctx.contains(a.dot()) {
                            merged.push(a);
                        }
                    }
                    Ordering::Greater => {
                        let b = theirs.next().expect("peeked");
                        if !ctx.contains(b.dot()) {
                            merged.push(b.clone());
                        }
                    }
                },
                (Some(_), None) => {
                    let a = mine.next().expect("peeked");
                    if !other_ctx.contains(a.dot()) {
                        merged.push(a);
                    }
                }
                (None, Some(_)) => {
                    let b = theirs.next().expect("peeked");
                    if !ctx.contains(b.dot()) {
                        merged.push(b.clone());
                    }
                }
                (None, None) => break,
            }
        }
        *self = Self::from_vec(merged);
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(&Dot)) {
        for entry in self.entries() {
            f(entry.dot());
        }
    }
}

impl<V: Clone> Causal<MvReg<V>> {
    /// The delta of a write by `replica`: `value` replaces every sibling
    /// this state holds. Apply it with [`Merge::merge`](super::Merge::merge).
    pub fn write(&self, replica: &ReplicaId, stamp: Stamp, value: V) -> Self {
        let dot = self.ctx.next_dot(replica);
        let mut ctx: CausalContext = self
            .store
            .entries()
            .iter()
            .map(|e| e.dot().clone())
            .collect();
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
        let low = Entry::new(Dot::new(r("a"), 1), stamp.clone(), 0);
        let high = Entry::new(Dot::new(r("a"), 2), stamp, 0);
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
    fn deserializing_rejects_unsorted_or_repeated_siblings() {
        let json = r#"[{"dot":"b:1","stamp":{"ms":1,"l":0,"r":"b"},"value":1},
                      {"dot":"a:1","stamp":{"ms":1,"l":0,"r":"a"},"value":2}]"#;
        let err = serde_json::from_str::<MvReg<u8>>(json).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("register entries out of order at dot a:1"),
            "{err}"
        );
        let twice = json.replace("b:1", "a:1");
        let err = serde_json::from_str::<MvReg<u8>>(&twice).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("dot a:1 is held twice by one register"),
            "{err}"
        );
        let sorted = json.replace("a:1", "c:1");
        let reg = serde_json::from_str::<MvReg<u8>>(&sorted).unwrap();
        assert_eq!(reg.check_invariants(), Ok(()));
    }
}
