//! The unit that merges: a dot store and the context of every dot it has
//! seen.

use serde::{Deserialize, Deserializer, Serialize};

#[cfg(test)]
use super::MvReg;
use super::{CausalContext, InvariantError, Merge};
use crate::clock::Dot;

/// A store of values tagged with dots, joined under two causal contexts.
///
/// Implemented by [`MvReg`](super::MvReg), [`OrMap`](super::OrMap) and the
/// documents built from them.
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
///
/// # Invariants
///
/// Every dot in the store is in the context (checked by
/// [`Causal::check_invariants`], and when deserializing).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Causal<S> {
    /// The values that survive, tagged with their dots.
    pub(crate) store: S,
    /// Every dot seen, including those of values overwritten or removed.
    pub(crate) ctx: CausalContext,
}

impl<S: DotStore> Merge for Causal<S> {
    fn merge(&mut self, other: &Self) {
        self.store.join(&self.ctx, &other.store, &other.ctx);
        self.ctx.join(&other.ctx);
    }
}

impl<S> Causal<S> {
    /// The values that survive, tagged with their dots.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Every dot seen, including those of values overwritten or removed.
    pub fn ctx(&self) -> &CausalContext {
        &self.ctx
    }
}

impl<S: DotStore> Causal<S> {
    /// Checks that every dot in the store is in the context, and the
    /// context's own invariant.
    ///
    /// # Errors
    ///
    /// [`InvariantError::UnseenDot`] naming the first stored dot never
    /// recorded as seen, or the context's error.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        self.ctx.check_invariants()?;
        let mut unseen = None;
        self.store.for_each_dot(&mut |dot| {
            if unseen.is_none() && !self.ctx.contains(dot) {
                unseen = Some(dot.clone());
            }
        });
        match unseen {
            Some(dot) => Err(InvariantError::UnseenDot { dot }),
            None => Ok(()),
        }
    }
}

/// Reads a state and checks its invariants: a stored dot missing from the
/// context is an error, not a value that would join wrongly.
impl<'de, S: DotStore + Deserialize<'de>> Deserialize<'de> for Causal<S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw<S> {
            store: S,
            ctx: CausalContext,
        }
        let raw = Raw::<S>::deserialize(d)?;
        let state = Self {
            store: raw.store,
            ctx: raw.ctx,
        };
        state.check_invariants().map_err(serde::de::Error::custom)?;
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ReplicaId;

    #[test]
    fn check_invariants_rejects_a_stored_dot_never_seen() {
        let a = ReplicaId::new("a").unwrap();
        let stamp = crate::Stamp::new(0, 0, a.clone());
        let state = Causal {
            store: MvReg::single(Dot::new(a.clone(), 1), stamp, 0),
            ctx: CausalContext::new(),
        };
        let unseen = InvariantError::UnseenDot {
            dot: Dot::new(a, 1),
        };
        assert_eq!(state.check_invariants(), Err(unseen.clone()));
        // Read from a file, the same state is refused, naming the dot.
        let json = serde_json::to_string(&state).unwrap();
        let err = serde_json::from_str::<Causal<MvReg<u8>>>(&json).unwrap_err();
        assert!(err.to_string().starts_with(&unseen.to_string()), "{err}");
        // Once the context has seen it, it reads back.
        let seen = Causal {
            ctx: [Dot::new(ReplicaId::new("a").unwrap(), 1)]
                .into_iter()
                .collect(),
            ..state
        };
        let json = serde_json::to_string(&seen).unwrap();
        assert_eq!(
            serde_json::from_str::<Causal<MvReg<u8>>>(&json).unwrap(),
            seen
        );
    }
}
