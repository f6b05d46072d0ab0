//! The CRDT kernel: a join trait and the causal building blocks documents
//! are made of.
//!
//! Everything here is a *delta-state* CRDT over dots: a state is a
//! [`Causal`] pair of a dot store and the [`CausalContext`] of every dot it
//! has seen. An operation is prepared from a state as a small delta (a
//! state of its own) and applied by [`Merge::merge`], so applying
//! operations and merging states are one and the same.

mod context;
mod mvreg;
mod ormap;

pub use context::CausalContext;
pub(crate) use mvreg::{Entry, Tag};
pub use mvreg::{MvReg, Rank};
pub use ormap::OrMap;

use serde::{Deserialize, Serialize};

use crate::clock::Dot;

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

/// A store of values tagged with dots, joined under two causal contexts.
///
/// Implemented by [`MvReg`], [`OrMap`] and the documents built from them.
/// A store is never merged alone: its join needs to know which dots each
/// side has *seen*, to tell a value the other side removed from one it
/// never heard of.
pub trait DotStore: Default {
    /// Whether the store holds no dot (the map key holding it disappears).
    fn is_bottom(&self) -> bool;

    /// Joins `other` into `self`, where `ctx` is the context of `self` and
    /// `other_ctx` that of `other`. An entry survives when both sides hold
    /// it, or when the side without it never saw its dot.
    fn join(&mut self, ctx: &CausalContext, other: &Self, other_ctx: &CausalContext);

    /// Calls `f` with every dot the store holds.
    fn for_each_dot(&self, f: &mut dyn FnMut(&Dot));
}

/// A dot store with the context of every dot its state has seen: the unit
/// that merges.
///
/// # Laws
///
/// [`Merge`]'s, provided the store's join keeps exactly the entries held by
/// both sides or unseen by the side without them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Causal<S> {
    /// The values that survive, tagged with their dots.
    pub store: S,
    /// Every dot seen, including those of values overwritten or removed.
    pub ctx: CausalContext,
}

impl<S: DotStore> Merge for Causal<S> {
    fn merge(&mut self, other: &Self) {
        self.store.join(&self.ctx, &other.store, &other.ctx);
        self.ctx.join(&other.ctx);
    }
}

impl<S: DotStore> Causal<S> {
    /// Panics unless every dot in the store is in the context.
    ///
    /// # Panics
    ///
    /// When a stored dot was never recorded as seen, or the context's own
    /// invariant is broken.
    pub fn check_invariants(&self) {
        self.ctx.check_invariants();
        self.store.for_each_dot(&mut |dot| {
            assert!(
                self.ctx.contains(dot),
                "stored dot {dot} missing from the context"
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ReplicaId;

    #[test]
    #[should_panic(expected = "missing from the context")]
    fn check_invariants_rejects_a_stored_dot_never_seen() {
        let a = ReplicaId::new("a").unwrap();
        let stamp = crate::Stamp::new(0, 0, a.clone());
        let state = Causal {
            store: MvReg::single(Dot::new(a, 1), stamp, 0),
            ctx: CausalContext::new(),
        };
        state.check_invariants();
    }
}
