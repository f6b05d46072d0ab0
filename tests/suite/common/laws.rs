//! The laws, each a function generic over the type under test. States are
//! compared as canonical serialized bytes (`serde_json::to_vec`), so two
//! states are equal only if every replica would store and send the same.

use std::collections::BTreeSet;
use std::fmt::Debug;

use failback::Dot;
use failback::kernel::{Causal, Merge};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Store;
use super::script::Replay;
use super::stores::check_state;

/// The canonical bytes of a state.
pub fn bytes<T: Serialize>(state: &T) -> Vec<u8> {
    serde_json::to_vec(state).expect("states serialize")
}

/// `a ⊔ b`, leaving both untouched.
pub fn join<T: Merge + Clone>(a: &T, b: &T) -> T {
    let mut joined = a.clone();
    joined.merge(b);
    joined
}

/// Fails, naming `law`, unless `left` and `right` have the same bytes.
pub fn same<T: Serialize>(law: &str, left: &T, right: &T) -> Result<(), TestCaseError> {
    let (l, r) = (bytes(left), bytes(right));
    prop_assert!(
        l == r,
        "{law}\n left: {}\nright: {}",
        String::from_utf8_lossy(&l),
        String::from_utf8_lossy(&r)
    );
    Ok(())
}

/// Merge is commutative, associative and idempotent on `a`, `b`, `c`, and
/// `check` (which panics on a broken invariant) passes on every join.
pub fn semilattice<T: Merge + Clone + Serialize>(
    [a, b, c]: &[T; 3],
    check: impl Fn(&T),
) -> Result<(), TestCaseError> {
    let ab = join(a, b);
    check(&ab);
    same("commutative: a ⊔ b = b ⊔ a", &ab, &join(b, a))?;
    let left = join(&ab, c);
    let right = join(a, &join(b, c));
    check(&left);
    check(&right);
    same("associative: (a ⊔ b) ⊔ c = a ⊔ (b ⊔ c)", &left, &right)?;
    same("idempotent: a ⊔ a = a", &join(a, a), a)?;
    same("absorbing: (a ⊔ b) ⊔ b = a ⊔ b", &join(&ab, b), &ab)
}

/// Serializing then deserializing gives back an equal state with the same
/// bytes.
pub fn round_trip<T>(state: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let back: T = serde_json::from_slice(&bytes(state)).expect("own output deserializes");
    prop_assert_eq!(&back, state);
    same("round trip keeps the bytes", &back, state)
}

/// Applying every delta one by one, in the order made, to a fresh replica
/// gives the join of the final states of all replicas.
pub fn deltas_equal_states<S: Store>(replay: &Replay<S>) -> Result<(), TestCaseError> {
    let mut fresh = Causal::<S>::default();
    for (_, delta) in &replay.deltas {
        fresh.merge(delta);
        check_state(&fresh);
    }
    same(
        "deltas one by one = merged states",
        &fresh,
        &replay.merged(),
    )
}

/// Each replica starts from its own deltas alone and then receives every
/// other replica's deltas in its own order (`orders[r]`, indices into the
/// deltas, with repeats); every replica ends with the join of all states.
pub fn converges<S: Store>(replay: &Replay<S>, orders: &[Vec<usize>]) -> Result<(), TestCaseError> {
    let merged = replay.merged();
    for (receiver, order) in orders.iter().enumerate() {
        let mut state = Causal::<S>::default();
        let own = replay
            .deltas
            .iter()
            .filter(|(author, _)| *author == receiver);
        for (_, delta) in own {
            state.merge(delta);
        }
        for &i in order {
            let (author, delta) = &replay.deltas[i];
            if *author != receiver {
                state.merge(delta);
                check_state(&state);
            }
        }
        same(&format!("replica {receiver} converges"), &state, &merged)?;
    }
    Ok(())
}

/// Nothing lost, nothing resurrected: after merging everything, a write
/// survives exactly when no operation saw it (an operation sees a dot when
/// its delta's context holds the dot but its store does not).
pub fn survivors<S: Store>(replay: &Replay<S>) -> Result<(), TestCaseError> {
    let dots = |store: &S| {
        let mut set = BTreeSet::new();
        store.for_each_dot(&mut |dot: &Dot| {
            set.insert(dot.clone());
        });
        set
    };
    let written: BTreeSet<Dot> = replay
        .deltas
        .iter()
        .flat_map(|(_, d)| dots(d.store()))
        .collect();
    let superseded: BTreeSet<Dot> = replay
        .deltas
        .iter()
        .flat_map(|(_, d)| {
            let kept = dots(d.store());
            written
                .iter()
                .filter(move |dot| d.ctx().contains(dot) && !kept.contains(*dot))
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    let expected: BTreeSet<Dot> = written.difference(&superseded).cloned().collect();
    prop_assert_eq!(dots(replay.merged().store()), expected);
    Ok(())
}
