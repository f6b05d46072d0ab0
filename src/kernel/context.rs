//! The causal context: the set of every dot a state has seen.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::InvariantError;
use crate::clock::{Dot, ReplicaId, VersionVector};

/// Every write (dot) a state has seen, whether or not its value survives.
///
/// Stored compactly as a [`VersionVector`] for the contiguous prefix of each
/// replica's writes plus a *dot cloud* for the few dots seen out of order.
/// A dot that is in the context but not in the store was overwritten or
/// removed: that is how observed-remove works without a tombstone per
/// removed value.
///
/// Invariant (checked by [`CausalContext::check_invariants`]): no dot of the
/// cloud is covered by the vector, and no cloud dot extends the vector by
/// one (it would have been folded in).
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::kernel::CausalContext;
/// use failback::{Dot, ReplicaId};
///
/// let a = ReplicaId::new("a")?;
/// let mut ctx = CausalContext::new();
/// ctx.insert(Dot::new(a.clone(), 2)); // seen out of order: kept in the cloud
/// assert!(!ctx.contains(&Dot::new(a.clone(), 1)));
/// ctx.insert(Dot::new(a.clone(), 1)); // the gap fills: folded into the vector
/// assert_eq!(ctx.version_vector().get(&a), 2);
/// assert_eq!(ctx.next_dot(&a), Dot::new(a, 3));
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawContext")]
pub struct CausalContext {
    vv: VersionVector,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    cloud: BTreeSet<Dot>,
}

impl CausalContext {
    /// The empty context.
    ///
    /// # Example
    ///
    #[cfg_attr(not(feature = "internals"), doc = "```ignore")]
    #[cfg_attr(feature = "internals", doc = "```")]
    /// use failback::kernel::CausalContext;
    ///
    /// let ctx = CausalContext::new();
    /// assert!(ctx.is_empty());
    /// assert_eq!(ctx, CausalContext::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `dot` has been seen.
    ///
    /// # Example
    ///
    #[cfg_attr(not(feature = "internals"), doc = "```ignore")]
    #[cfg_attr(feature = "internals", doc = "```")]
    /// use failback::kernel::CausalContext;
    /// use failback::{Dot, ReplicaId};
    ///
    /// let p = ReplicaId::new("primary")?;
    /// let ctx: CausalContext = [Dot::new(p.clone(), 1), Dot::new(p.clone(), 3)].into_iter().collect();
    /// assert!(ctx.contains(&Dot::new(p.clone(), 1)));
    /// assert!(!ctx.contains(&Dot::new(p.clone(), 2)), "a gap is not seen");
    /// assert!(ctx.contains(&Dot::new(p, 3)));
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn contains(&self, dot: &Dot) -> bool {
        self.vv.contains(dot) || self.cloud.contains(dot)
    }

    /// Records `dot` as seen.
    ///
    /// # Example
    ///
    #[cfg_attr(not(feature = "internals"), doc = "```ignore")]
    #[cfg_attr(feature = "internals", doc = "```")]
    /// use failback::kernel::CausalContext;
    /// use failback::{Dot, ReplicaId};
    ///
    /// let s = ReplicaId::new("secondary")?;
    /// let mut ctx = CausalContext::new();
    /// ctx.insert(Dot::new(s.clone(), 3));
    /// assert_eq!(ctx.cloud().count(), 1, "beyond a gap: in the cloud");
    /// ctx.insert(Dot::new(s.clone(), 1));
    /// ctx.insert(Dot::new(s.clone(), 2));
    /// assert_eq!((ctx.version_vector().get(&s), ctx.cloud().count()), (3, 0));
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn insert(&mut self, dot: Dot) {
        if self.vv.contains(&dot) {
            return;
        }
        if dot.counter() == self.vv.get(dot.replica()) + 1 {
            self.vv.observe(&dot);
            self.compact_replica(&dot.replica().clone());
        } else {
            self.cloud.insert(dot);
        }
    }

    /// The dot the next write of `replica` should take: one past the
    /// highest counter of `replica` seen so far.
    ///
    /// # Example
    ///
    #[cfg_attr(not(feature = "internals"), doc = "```ignore")]
    #[cfg_attr(feature = "internals", doc = "```")]
    /// use failback::kernel::CausalContext;
    /// use failback::{Dot, ReplicaId};
    ///
    /// let p = ReplicaId::new("primary")?;
    /// let mut ctx = CausalContext::new();
    /// assert_eq!(ctx.next_dot(&p), Dot::new(p.clone(), 1));
    /// ctx.insert(Dot::new(p.clone(), 5)); // seen out of order still counts
    /// assert_eq!(ctx.next_dot(&p), Dot::new(p, 6));
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn next_dot(&self, replica: &ReplicaId) -> Dot {
        let in_cloud = self
            .cloud
            .range(Dot::new(replica.clone(), 0)..=Dot::new(replica.clone(), u64::MAX))
            .next_back()
            .map_or(0, Dot::counter);
        let highest = self.vv.get(replica).max(in_cloud);
        Dot::new(replica.clone(), highest + 1)
    }

    /// The union of both contexts.
    ///
    /// # Example
    ///
    #[cfg_attr(not(feature = "internals"), doc = "```ignore")]
    #[cfg_attr(feature = "internals", doc = "```")]
    /// use failback::kernel::CausalContext;
    /// use failback::{Dot, ReplicaId};
    ///
    /// let p = ReplicaId::new("primary")?;
    /// let mut mine: CausalContext = [Dot::new(p.clone(), 1)].into_iter().collect();
    /// let theirs: CausalContext = [Dot::new(p.clone(), 2), Dot::new(p.clone(), 4)].into_iter().collect();
    /// mine.join(&theirs);
    /// assert_eq!(mine.version_vector().get(&p), 2);
    /// assert_eq!(mine.cloud().collect::<Vec<_>>(), [&Dot::new(p, 4)]);
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn join(&mut self, other: &Self) {
        self.vv.join(&other.vv);
        for dot in &other.cloud {
            if !self.vv.contains(dot) {
                self.cloud.insert(dot.clone());
            }
        }
        self.compact();
    }

    /// The contiguous part: every replica's writes up to the counter given
    /// are seen. Dots seen out of order are not included.
    ///
    /// # Example
    ///
    #[cfg_attr(not(feature = "internals"), doc = "```ignore")]
    #[cfg_attr(feature = "internals", doc = "```")]
    /// use failback::kernel::CausalContext;
    /// use failback::{Dot, ReplicaId};
    ///
    /// let p = ReplicaId::new("primary")?;
    /// let ctx: CausalContext = [1, 2, 4].map(|n| Dot::new(p.clone(), n)).into_iter().collect();
    /// assert_eq!(ctx.version_vector().get(&p), 2);
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn version_vector(&self) -> &VersionVector {
        &self.vv
    }

    /// Dots seen out of order, beyond a gap.
    ///
    /// # Example
    ///
    #[cfg_attr(not(feature = "internals"), doc = "```ignore")]
    #[cfg_attr(feature = "internals", doc = "```")]
    /// use failback::kernel::CausalContext;
    /// use failback::{Dot, ReplicaId};
    ///
    /// let p = ReplicaId::new("primary")?;
    /// let ctx: CausalContext = [1, 3, 4].map(|n| Dot::new(p.clone(), n)).into_iter().collect();
    /// let cloud: Vec<u64> = ctx.cloud().map(Dot::counter).collect();
    /// assert_eq!(cloud, [3, 4]);
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn cloud(&self) -> impl Iterator<Item = &Dot> + '_ {
        self.cloud.iter()
    }

    /// Whether nothing has been seen.
    ///
    /// # Example
    ///
    #[cfg_attr(not(feature = "internals"), doc = "```ignore")]
    #[cfg_attr(feature = "internals", doc = "```")]
    /// use failback::kernel::CausalContext;
    /// use failback::{Dot, ReplicaId};
    ///
    /// let mut ctx = CausalContext::new();
    /// assert!(ctx.is_empty());
    /// ctx.insert(Dot::new(ReplicaId::new("primary")?, 7));
    /// assert!(!ctx.is_empty(), "a dot in the cloud is seen");
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.vv.is_empty() && self.cloud.is_empty()
    }

    /// Checks the invariant documented on the type. Deserializing restores
    /// it (a cloud dot next to the vector is folded in), so only a bug can
    /// break it.
    ///
    /// # Errors
    ///
    /// [`InvariantError::CloudNotBeyondGap`] on a cloud dot covered by, or
    /// adjacent to, the version vector.
    ///
    /// # Example
    ///
    #[cfg_attr(not(feature = "internals"), doc = "```ignore")]
    #[cfg_attr(feature = "internals", doc = "```")]
    /// use failback::kernel::CausalContext;
    ///
    /// // Deserializing folds a cloud dot next to the vector into it.
    /// let ctx: CausalContext = serde_json::from_str(r#"{"vv":{"primary":1},"cloud":["primary:2","primary:5"]}"#)?;
    /// assert!(ctx.check_invariants().is_ok());
    /// assert_eq!(ctx.cloud().count(), 1);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        for dot in &self.cloud {
            let top = self.vv.get(dot.replica());
            if dot.counter() <= top + 1 {
                return Err(InvariantError::CloudNotBeyondGap { dot: dot.clone() });
            }
        }
        Ok(())
    }

    fn compact(&mut self) {
        let replicas: BTreeSet<ReplicaId> =
            self.cloud.iter().map(|d| d.replica().clone()).collect();
        for replica in replicas {
            self.compact_replica(&replica);
        }
    }

    fn compact_replica(&mut self, replica: &ReplicaId) {
        loop {
            let top = self.vv.get(replica);
            let Some(first) = self
                .cloud
                .range(Dot::new(replica.clone(), 0)..=Dot::new(replica.clone(), u64::MAX))
                .next()
                .cloned()
            else {
                return;
            };
            if first.counter() <= top + 1 {
                self.cloud.remove(&first);
                self.vv.set(replica, first.counter());
            } else {
                return;
            }
        }
    }
}

impl std::fmt::Debug for CausalContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.vv)?;
        if !self.cloud.is_empty() {
            write!(f, "+{:?}", self.cloud)?;
        }
        Ok(())
    }
}

/// What a serialized context holds before the invariant is restored.
#[derive(Deserialize)]
struct RawContext {
    vv: VersionVector,
    #[serde(default)]
    cloud: BTreeSet<Dot>,
}

impl From<RawContext> for CausalContext {
    fn from(raw: RawContext) -> Self {
        let mut ctx = Self {
            vv: raw.vv,
            cloud: BTreeSet::new(),
        };
        for dot in raw.cloud {
            ctx.insert(dot);
        }
        ctx
    }
}

impl FromIterator<Dot> for CausalContext {
    fn from_iter<I: IntoIterator<Item = Dot>>(iter: I) -> Self {
        let mut ctx = Self::new();
        for dot in iter {
            ctx.insert(dot);
        }
        ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, n: u64) -> Dot {
        Dot::new(ReplicaId::new(name).unwrap(), n)
    }

    #[test]
    fn gaps_stay_in_the_cloud_until_filled() {
        let mut ctx: CausalContext = [d("a", 3), d("a", 5), d("b", 1)].into_iter().collect();
        ctx.check_invariants().unwrap();
        assert_eq!(ctx.cloud().count(), 2);
        assert!(ctx.contains(&d("a", 5)) && !ctx.contains(&d("a", 4)));
        assert_eq!(ctx.next_dot(&ReplicaId::new("a").unwrap()), d("a", 6));
        ctx.insert(d("a", 1));
        ctx.insert(d("a", 2));
        ctx.check_invariants().unwrap();
        assert_eq!(ctx.version_vector().get(&ReplicaId::new("a").unwrap()), 3);
        ctx.insert(d("a", 4));
        assert_eq!(ctx.cloud().count(), 0);
        assert_eq!(ctx.version_vector().get(&ReplicaId::new("a").unwrap()), 5);
    }

    #[test]
    fn join_folds_the_clouds() {
        let mut left: CausalContext = [d("a", 1), d("a", 3)].into_iter().collect();
        let right: CausalContext = [d("a", 1), d("a", 2)].into_iter().collect();
        left.join(&right);
        left.check_invariants().unwrap();
        assert_eq!(
            left,
            [d("a", 1), d("a", 2), d("a", 3)].into_iter().collect()
        );
        assert_eq!(left.cloud().count(), 0);
    }

    #[test]
    fn serde_skips_an_empty_cloud() {
        let ctx: CausalContext = [d("a", 1)].into_iter().collect();
        assert_eq!(serde_json::to_string(&ctx).unwrap(), r#"{"vv":{"a":1}}"#);
        let gap: CausalContext = [d("a", 2)].into_iter().collect();
        let json = serde_json::to_string(&gap).unwrap();
        assert_eq!(json, r#"{"vv":{},"cloud":["a:2"]}"#);
        assert_eq!(serde_json::from_str::<CausalContext>(&json).unwrap(), gap);
    }

    #[test]
    fn formats_the_vector_then_the_cloud() {
        let ctx: CausalContext = [d("a", 1), d("b", 3)].into_iter().collect();
        assert_eq!(format!("{ctx:?}"), r#"{"a": 1}+{b:3}"#);
        let plain: CausalContext = [d("a", 1)].into_iter().collect();
        assert_eq!(format!("{plain:?}"), r#"{"a": 1}"#);
        assert_eq!(plain.version_vector().get(&ReplicaId::new("a").unwrap()), 1);
        assert!(!plain.is_empty() && CausalContext::new().is_empty());
    }

    #[test]
    fn check_invariants_rejects_a_cloud_dot_next_to_the_vector() {
        let broken = CausalContext {
            vv: [d("a", 1)].iter().collect(),
            cloud: [d("a", 2)].into_iter().collect(),
        };
        assert_eq!(
            broken.check_invariants(),
            Err(InvariantError::CloudNotBeyondGap { dot: d("a", 2) })
        );
    }
}
