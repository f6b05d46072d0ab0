//! The kernel's laws, checked on generated histories.
//!
//! Each store type gets the same law tests (see `common::laws`); version
//! vectors and causal contexts get the join laws; the map and register get
//! the properties specific to them (add wins, a write that saw every
//! sibling leaves one). Run with `PROPTEST_CASES=10000` for a deeper check.

use crate::common::laws;
use crate::common::script::{deliveries, replay, replica, script, three_states};
use crate::common::stores::{KEYS, NESTED_KEYS, check_state};
use failback::kernel::{Causal, CausalContext, Merge, MvReg, OrMap, Rank};
use failback::{Dot, Stamp, VersionVector};
use proptest::prelude::*;

/// Instantiates the generic law tests for the store type `$store`.
macro_rules! store_laws {
    ($module:ident, $store:ty) => {
        mod $module {
            use super::*;

            type S = $store;

            proptest! {
                #[test]
                fn merge_is_a_semilattice(states in three_states::<S>()) {
                    laws::semilattice(&states, check_state)?;
                }

                #[test]
                fn deltas_one_by_one_equal_merged_states(script in script::<S>(2..=3)) {
                    laws::deltas_equal_states(&replay::<S>(&script))?;
                }

                #[test]
                fn a_write_survives_exactly_when_no_operation_saw_it(
                    script in script::<S>(2..=3),
                ) {
                    laws::survivors(&replay::<S>(&script))?;
                }

                #[test]
                fn replicas_converge_under_any_delivery((script, orders) in deliveries::<S>()) {
                    laws::converges(&replay::<S>(&script), &orders)?;
                }

                #[test]
                fn serde_round_trip(script in script::<S>(2..=3)) {
                    let replay = replay::<S>(&script);
                    for state in replay.pool().iter().chain([&replay.merged()]) {
                        laws::round_trip(state)?;
                    }
                }
            }
        }
    };
}

store_laws!(mvreg, MvReg<u8>);
store_laws!(ormap, OrMap<u8, MvReg<u8>>);
store_laws!(nested_ormap, OrMap<u8, OrMap<u8, MvReg<u8>>>);

/// A value no generated write uses (they write their step number).
const FRESH: u8 = 200;

fn stamp(replica_index: usize) -> Stamp {
    Stamp::new(1_000, 0, replica(replica_index))
}

proptest! {
    #[test]
    fn concurrent_register_writes_stay_side_by_side(script in script::<MvReg<u8>>(2..=3)) {
        let base = replay::<MvReg<u8>>(&script).merged();
        let (mut left, mut right) = (base.clone(), base.clone());
        left.merge(&base.write(&replica(0), stamp(0), FRESH));
        right.merge(&base.write(&replica(1), stamp(1), FRESH + 1));
        for merged in [laws::join(&left, &right), laws::join(&right, &left)] {
            let values: Vec<u8> = merged.store().entries().iter().map(|e| e.value).collect();
            prop_assert_eq!(values, vec![FRESH, FRESH + 1]);
        }
    }

    #[test]
    fn a_register_write_that_saw_every_sibling_leaves_one(script in script::<MvReg<u8>>(2..=3)) {
        let mut state = replay::<MvReg<u8>>(&script).merged();
        state.merge(&state.write(&replica(0), stamp(0), FRESH));
        check_state(&state);
        prop_assert_eq!(state.store().len(), 1);
        prop_assert_eq!(state.store().value(&Rank::HighestStamp), Some(&FRESH));
    }

    #[test]
    fn a_map_write_that_saw_every_sibling_leaves_one(
        script in script::<OrMap<u8, MvReg<u8>>>(2..=3),
        key in 0..KEYS,
    ) {
        let mut state = replay::<OrMap<u8, MvReg<u8>>>(&script).merged();
        let before = state.store().len();
        let had_key = state.store().get(&key).is_some();
        state.merge(&state.update(key, |reg| reg.write(&replica(0), stamp(0), FRESH)));
        check_state(&state);
        let reg = state.store().get(&key).expect("written key present");
        prop_assert_eq!(reg.len(), 1);
        prop_assert_eq!(reg.value(&Rank::HighestStamp), Some(&FRESH));
        prop_assert_eq!(state.store().len(), before + usize::from(!had_key));
    }

    #[test]
    fn a_concurrent_write_survives_a_remove(
        script in script::<OrMap<u8, MvReg<u8>>>(2..=3),
        key in 0..KEYS,
    ) {
        let base = replay::<OrMap<u8, MvReg<u8>>>(&script).merged();
        let (mut remover, mut writer) = (base.clone(), base.clone());
        remover.merge(&base.remove(&key));
        prop_assert!(remover.store().get(&key).is_none());
        writer.merge(&base.update(key, |reg| reg.write(&replica(1), stamp(1), FRESH)));
        for merged in [laws::join(&remover, &writer), laws::join(&writer, &remover)] {
            check_state(&merged);
            let reg = merged.store().get(&key).expect("the write the remover never saw wins");
            let values: Vec<u8> = reg.entries().iter().map(|e| e.value).collect();
            prop_assert_eq!(values, vec![FRESH]);
            let others = |s: &Causal<OrMap<u8, MvReg<u8>>>| {
                s.store().iter().filter(|(k, _)| **k != key).map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>()
            };
            prop_assert_eq!(others(&merged), others(&base));
        }
    }

    #[test]
    fn a_nested_write_survives_removal_of_its_parent(
        script in script::<OrMap<u8, OrMap<u8, MvReg<u8>>>>(2..=3),
        outer in 0..NESTED_KEYS,
        inner in 0..NESTED_KEYS,
    ) {
        let base = replay::<OrMap<u8, OrMap<u8, MvReg<u8>>>>(&script).merged();
        let (mut remover, mut writer) = (base.clone(), base.clone());
        remover.merge(&base.remove(&outer));
        writer.merge(&base.update(outer, |map| {
            map.update(inner, |reg| reg.write(&replica(1), stamp(1), FRESH))
        }));
        for merged in [laws::join(&remover, &writer), laws::join(&writer, &remover)] {
            check_state(&merged);
            let map = merged.store().get(&outer).expect("the unseen write survives");
            // Everything else the remover saw under `outer` is gone.
            prop_assert_eq!(map.keys().copied().collect::<Vec<_>>(), vec![inner]);
            let reg = map.get(&inner).expect("written key");
            prop_assert_eq!(reg.entries().iter().map(|e| e.value).collect::<Vec<_>>(), vec![FRESH]);
        }
    }
}

fn version_vector() -> impl Strategy<Value = VersionVector> {
    proptest::collection::vec((0..3usize, 0..5u64), 0..4).prop_map(|entries| {
        let mut vv = VersionVector::new();
        for (r, n) in entries {
            vv.set(&replica(r), n);
        }
        vv
    })
}

/// Contexts over 3 replicas and counters 1 to 6, with and without gaps.
fn dots() -> impl Strategy<Value = Vec<Dot>> {
    proptest::collection::vec((0..3usize, 1..7u64), 0..8).prop_map(|dots| {
        dots.into_iter()
            .map(|(r, n)| Dot::new(replica(r), n))
            .collect()
    })
}

/// Every dot the generated contexts can hold, and one past.
fn universe() -> impl Iterator<Item = Dot> {
    (0..3).flat_map(|r| (1..9).map(move |n| Dot::new(replica(r), n)))
}

fn no_zero_entries(vv: &VersionVector) {
    assert!(vv.iter().all(|(_, n)| n > 0), "zero entry stored in {vv:?}");
}

proptest! {
    #[test]
    fn version_vector_join_is_a_semilattice(
        vvs in [version_vector(), version_vector(), version_vector()],
    ) {
        laws::semilattice(&vvs, no_zero_entries)?;
        for vv in &vvs {
            laws::round_trip(vv)?;
        }
    }

    #[test]
    fn version_vector_join_is_the_least_upper_bound(a in version_vector(), b in version_vector()) {
        let ab = laws::join(&a, &b);
        prop_assert!(a <= ab && b <= ab);
        prop_assert_eq!(a <= b, ab == b);
        prop_assert_eq!(a == b, a.partial_cmp(&b) == Some(std::cmp::Ordering::Equal));
        for dot in universe() {
            prop_assert_eq!(ab.contains(&dot), a.contains(&dot) || b.contains(&dot));
        }
    }

    #[test]
    fn causal_context_join_is_a_semilattice(sets in [dots(), dots(), dots()]) {
        let contexts = sets.map(|dots| dots.into_iter().collect::<CausalContext>());
        contexts.iter().for_each(|c| c.check_invariants().unwrap());
        laws::semilattice(&contexts, |c| c.check_invariants().unwrap())?;
        for ctx in &contexts {
            laws::round_trip(ctx)?;
        }
    }

    #[test]
    fn causal_context_join_is_the_union(a in dots(), b in dots()) {
        let (ca, cb): (CausalContext, CausalContext) = (a.iter().cloned().collect(), b.iter().cloned().collect());
        let joined = laws::join(&ca, &cb);
        let union: CausalContext = a.iter().chain(&b).cloned().collect();
        laws::same("join = context of the union", &joined, &union)?;
        for dot in universe() {
            prop_assert_eq!(joined.contains(&dot), a.contains(&dot) || b.contains(&dot));
        }
    }

    #[test]
    fn causal_context_is_canonical_whatever_the_insertion_order(
        (dots, shuffled) in dots().prop_flat_map(|d| (Just(d.clone()), Just(d).prop_shuffle())),
    ) {
        let ctx: CausalContext = dots.iter().cloned().collect();
        laws::same("insertion order", &ctx, &shuffled.into_iter().collect())?;
        for r in 0..3 {
            let id = replica(r);
            let top = dots.iter().filter(|d| *d.replica() == id).map(Dot::counter).max();
            prop_assert_eq!(ctx.next_dot(&id), Dot::new(id, top.unwrap_or(0) + 1));
        }
        prop_assert_eq!(ctx.is_empty(), dots.is_empty());
    }
}
