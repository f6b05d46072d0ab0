//! The CRDT kernel: a join trait and the causal building blocks documents
//! are made of.
//!
//! Everything here is a *delta-state* CRDT over dots: a state is a
//! `Causal` pair of a dot store and the `CausalContext` of every dot it
//! has seen. An operation is prepared from a state as a small delta (a
//! state of its own) and applied by [`Merge::merge`], so applying
//! operations and merging states are one and the same.

// Without `internals`, the kernel's building blocks are crate-private, and
// the operations only the law tests and benches call would warn as unused.
#![cfg_attr(not(feature = "internals"), allow(dead_code))]

mod causal;
mod context;
mod invariant;
mod mvreg;
mod ormap;

pub use invariant::InvariantError;
pub(crate) use mvreg::{Entry, Tag};
internals!(causal::{Causal, DotStore});
internals!(context::CausalContext);
internals!(mvreg::{MvReg, Rank});
internals!(ormap::OrMap);

/// A join semilattice: states that merge.
///
/// # Laws
///
/// For all states `a`, `b`, `c` (compared as canonical serialized bytes):
///
/// - commutative: `a ⊔ b = b ⊔ a`;
/// - associative: `(a ⊔ b) ⊔ c = a ⊔ (b ⊔ c)`;
/// - idempotent: `a ⊔ a = a`.
///
/// So replicas that have seen the same set of states hold the same state,
/// whatever the order and multiplicity of delivery. Merging never fails.
///
/// # Example
///
/// ```
/// use failback::kernel::Merge;
/// use failback::VersionVector;
///
/// let mut a = VersionVector::new();
/// let b = VersionVector::new();
/// a.merge(&b);
/// assert_eq!(a, b);
/// ```
pub trait Merge {
    /// Replaces `self` by the least upper bound of `self` and `other`.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::{Merge, ReplicaId, VersionVector};
    ///
    /// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
    /// let (mut a, mut b) = (VersionVector::new(), VersionVector::new());
    /// a.set(&p, 3);
    /// b.set(&s, 2);
    /// let mut ab = a.clone();
    /// ab.merge(&b);
    /// b.merge(&a);
    /// assert_eq!(ab, b); // commutative
    /// assert_eq!((ab.get(&p), ab.get(&s)), (3, 2));
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    fn merge(&mut self, other: &Self);
}

impl Merge for crate::clock::VersionVector {
    fn merge(&mut self, other: &Self) {
        self.join(other);
    }
}

impl Merge for CausalContext {
    fn merge(&mut self, other: &Self) {
        self.join(other);
    }
}
