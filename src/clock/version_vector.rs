//! Version vectors: how much of each replica's history has been seen.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::{Dot, ReplicaId};

/// Maps each replica to the highest contiguous counter seen from it.
///
/// Version vectors are partially ordered: `a < b` when `b` has seen
/// everything `a` has and more; `partial_cmp` returns `None` for concurrent
/// vectors. Replicas never seen count as 0 and are never stored, so equal
/// histories have equal representations.
///
/// # Example
///
/// ```
/// use failback::{Dot, ReplicaId, VersionVector};
///
/// let p = ReplicaId::new("primary")?;
/// let s = ReplicaId::new("secondary")?;
/// let mut a = VersionVector::new();
/// a.observe(&Dot::new(p.clone(), 1));
/// let mut b = VersionVector::new();
/// b.observe(&Dot::new(s.clone(), 1));
/// assert_eq!(a.partial_cmp(&b), None); // concurrent
///
/// let mut joined = a.clone();
/// joined.join(&b);
/// assert!(a < joined && b < joined);
/// assert!(joined.contains(&Dot::new(s, 1)));
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct VersionVector {
    entries: BTreeMap<ReplicaId, u64>,
}

impl VersionVector {
    /// The empty vector: nothing seen.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::VersionVector;
    ///
    /// let seen = VersionVector::new();
    /// assert!(seen.is_empty());
    /// assert_eq!(seen, VersionVector::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest contiguous counter seen from `replica` (0 for none).
    ///
    /// # Example
    ///
    /// ```
    /// use failback::{ReplicaId, VersionVector};
    ///
    /// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
    /// let mut seen = VersionVector::new();
    /// seen.set(&p, 7);
    /// assert_eq!(seen.get(&p), 7);
    /// assert_eq!(seen.get(&s), 0);
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn get(&self, replica: &ReplicaId) -> u64 {
        self.entries.get(replica).copied().unwrap_or(0)
    }

    /// Whether the write `dot` is covered: its counter is at most the
    /// entry of its replica.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::{Dot, ReplicaId, VersionVector};
    ///
    /// let p = ReplicaId::new("primary")?;
    /// let mut seen = VersionVector::new();
    /// seen.set(&p, 3);
    /// assert!(seen.contains(&Dot::new(p.clone(), 2)));
    /// assert!(!seen.contains(&Dot::new(p, 4)));
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn contains(&self, dot: &Dot) -> bool {
        dot.counter() <= self.get(dot.replica())
    }

    /// Raises the entry of `dot`'s replica to at least `dot`'s counter.
    ///
    /// The caller is responsible for contiguity: a version vector covers
    /// every counter up to its entry. `CausalContext`
    /// tracks non-contiguous dots.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::{Dot, ReplicaId, VersionVector};
    ///
    /// let p = ReplicaId::new("primary")?;
    /// let mut seen = VersionVector::new();
    /// seen.observe(&Dot::new(p.clone(), 2));
    /// seen.observe(&Dot::new(p.clone(), 1)); // never lowers an entry
    /// assert_eq!(seen.get(&p), 2);
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn observe(&mut self, dot: &Dot) {
        self.set(dot.replica(), dot.counter());
    }

    /// Raises `replica`'s entry to at least `counter`.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::{ReplicaId, VersionVector};
    ///
    /// let s = ReplicaId::new("secondary")?;
    /// let mut seen = VersionVector::new();
    /// seen.set(&s, 5);
    /// seen.set(&s, 3);
    /// assert_eq!(seen.get(&s), 5);
    /// seen.set(&ReplicaId::new("primary")?, 0); // zeros are not stored
    /// assert_eq!(seen.len(), 1);
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn set(&mut self, replica: &ReplicaId, counter: u64) {
        if counter == 0 {
            return;
        }
        let entry = self.entries.entry(replica.clone()).or_insert(0);
        *entry = (*entry).max(counter);
    }

    /// The least upper bound: the pointwise maximum.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::{ReplicaId, VersionVector};
    ///
    /// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
    /// let (mut a, mut b) = (VersionVector::new(), VersionVector::new());
    /// a.set(&p, 4);
    /// a.set(&s, 1);
    /// b.set(&s, 3);
    /// a.join(&b);
    /// assert_eq!((a.get(&p), a.get(&s)), (4, 3));
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn join(&mut self, other: &Self) {
        for (replica, &counter) in &other.entries {
            self.set(replica, counter);
        }
    }

    /// The entries in replica order, without zeros.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::{ReplicaId, VersionVector};
    ///
    /// let mut seen = VersionVector::new();
    /// seen.set(&ReplicaId::new("secondary")?, 2);
    /// seen.set(&ReplicaId::new("primary")?, 9);
    /// let entries: Vec<_> = seen.iter().map(|(r, n)| (r.as_str(), n)).collect();
    /// assert_eq!(entries, [("primary", 9), ("secondary", 2)]);
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&ReplicaId, u64)> + '_ {
        self.entries.iter().map(|(r, &n)| (r, n))
    }

    /// Whether nothing has been seen.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::{Dot, ReplicaId, VersionVector};
    ///
    /// let mut seen = VersionVector::new();
    /// assert!(seen.is_empty());
    /// seen.observe(&Dot::new(ReplicaId::new("primary")?, 1));
    /// assert!(!seen.is_empty());
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The number of replicas with a non-zero entry.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::{ReplicaId, VersionVector};
    ///
    /// let mut seen = VersionVector::new();
    /// seen.set(&ReplicaId::new("primary")?, 4);
    /// seen.set(&ReplicaId::new("secondary")?, 1);
    /// assert_eq!(seen.len(), 2);
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

impl PartialOrd for VersionVector {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        let mut less = false;
        let mut greater = false;
        let replicas = self.entries.keys().chain(other.entries.keys());
        for replica in replicas {
            match self.get(replica).cmp(&other.get(replica)) {
                Ordering::Less => less = true,
                Ordering::Greater => greater = true,
                Ordering::Equal => {}
            }
        }
        match (less, greater) {
            (false, false) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Less),
            (false, true) => Some(Ordering::Greater),
            (true, true) => None,
        }
    }
}

impl<'de> Deserialize<'de> for VersionVector {
    /// Reads the entries, dropping zeros so that equal histories keep equal
    /// representations (and merges stay commutative) whatever the input.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = BTreeMap::<ReplicaId, u64>::deserialize(d)?;
        let entries = entries.into_iter().filter(|&(_, n)| n > 0).collect();
        Ok(Self { entries })
    }
}

impl std::fmt::Debug for VersionVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> FromIterator<&'a Dot> for VersionVector {
    fn from_iter<I: IntoIterator<Item = &'a Dot>>(iter: I) -> Self {
        let mut vv = Self::new();
        for dot in iter {
            vv.observe(dot);
        }
        vv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str) -> ReplicaId {
        ReplicaId::new(name).unwrap()
    }

    fn vv(pairs: &[(&str, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for &(name, n) in pairs {
            v.set(&r(name), n);
        }
        v
    }

    #[test]
    fn partial_order_has_all_four_outcomes() {
        let a = vv(&[("a", 1), ("b", 2)]);
        assert_eq!(a.partial_cmp(&a.clone()), Some(Ordering::Equal));
        assert!(vv(&[("a", 1)]) < a);
        assert!(a > vv(&[("b", 2)]));
        assert_eq!(vv(&[("a", 2)]).partial_cmp(&vv(&[("b", 1)])), None);
        assert_eq!(vv(&[("a", 2), ("b", 1)]).partial_cmp(&a), None);
        assert!(vv(&[]) <= vv(&[("a", 0)]));
    }

    #[test]
    fn join_is_pointwise_max_and_contains_follows() {
        let mut a = vv(&[("a", 3), ("b", 1)]);
        a.join(&vv(&[("b", 4), ("c", 2)]));
        assert_eq!(a, vv(&[("a", 3), ("b", 4), ("c", 2)]));
        assert!(a.contains(&Dot::new(r("b"), 4)));
        assert!(!a.contains(&Dot::new(r("b"), 5)));
        assert!(!a.contains(&Dot::new(r("z"), 1)));
        let order: Vec<_> = a.iter().map(|(r, _)| r.as_str().to_owned()).collect();
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[test]
    fn zero_entries_are_not_stored() {
        let mut a = VersionVector::new();
        a.set(&r("a"), 0);
        assert!(a.is_empty());
        assert_eq!(a, VersionVector::new());
    }

    #[test]
    fn deserialized_zero_entries_are_dropped() {
        let read: VersionVector = serde_json::from_str(r#"{"a":0,"b":2}"#).unwrap();
        assert_eq!(read, vv(&[("b", 2)]));
        let zero: VersionVector = serde_json::from_str(r#"{"a":0}"#).unwrap();
        assert!(zero.is_empty());
        let (mut left, mut right) = (zero.clone(), VersionVector::new());
        left.join(&VersionVector::new());
        right.join(&zero);
        assert_eq!(left, right);
    }

    #[test]
    fn counts_formats_and_collects_dots() {
        let a = vv(&[("a", 2), ("b", 1)]);
        assert_eq!((a.len(), a.is_empty()), (2, false));
        assert_eq!(format!("{a:?}"), r#"{"a": 2, "b": 1}"#);
        let dots = [
            Dot::new(r("a"), 2),
            Dot::new(r("b"), 1),
            Dot::new(r("a"), 1),
        ];
        assert_eq!(dots.iter().collect::<VersionVector>(), a);
    }
}
