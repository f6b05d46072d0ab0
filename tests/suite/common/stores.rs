//! The stores under test: how to generate their operations and what their
//! states must satisfy.

use std::collections::BTreeSet;
use std::fmt::Debug;

use failback::kernel::{Causal, DotStore, MvReg, OrMap};
use failback::{ReplicaId, Stamp};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Keys of a flat map: few, so that writes and removes collide.
pub const KEYS: u8 = 3;
/// Keys at each level of a nested map.
pub const NESTED_KEYS: u8 = 2;

/// The invariants of a store beyond those of its causal context.
pub trait Invariants {
    /// Panics when an invariant is broken.
    fn check(&self);
}

impl<V> Invariants for MvReg<V> {
    fn check(&self) {
        self.check_invariants().unwrap();
    }
}

impl<K: Ord + Clone + Debug, S: DotStore + Clone + Invariants> Invariants for OrMap<K, S> {
    fn check(&self) {
        for (key, value) in self.iter() {
            // Counted, not asked of `is_bottom`, which is under test too.
            let mut dots = 0;
            value.for_each_dot(&mut |_| dots += 1);
            assert!(dots > 0, "key {key:?} holds no dot but is present");
            assert!(!value.is_bottom(), "key {key:?} holds dots but says bottom");
            value.check();
        }
    }
}

/// Panics unless `state` keeps every invariant: the context's, the
/// store's, every stored dot seen, and no dot stored twice.
pub fn check_state<S: DotStore + Invariants>(state: &Causal<S>) {
    state.check_invariants().unwrap();
    state.store().check();
    let mut dots = BTreeSet::new();
    state.store().for_each_dot(&mut |dot| {
        assert!(dots.insert(dot.clone()), "dot {dot} stored twice");
    });
}

/// A dot store under test, with the operations that build its states.
pub trait Store:
    DotStore + Invariants + Clone + PartialEq + Debug + Serialize + DeserializeOwned
{
    /// One operation, as generated.
    type Op: Clone + Debug;

    /// Generates operations over a small key space.
    fn op() -> BoxedStrategy<Self::Op>;

    /// The delta of `op` performed by `replica` on `state`. A write
    /// writes `value`, which the caller makes unique per write.
    fn delta(
        state: &Causal<Self>,
        replica: &ReplicaId,
        stamp: Stamp,
        value: u8,
        op: &Self::Op,
    ) -> Causal<Self>;
}

/// A write to a register.
#[derive(Clone, Debug)]
pub struct Write;

impl Store for MvReg<u8> {
    type Op = Write;

    fn op() -> BoxedStrategy<Write> {
        Just(Write).boxed()
    }

    fn delta(
        state: &Causal<Self>,
        r: &ReplicaId,
        stamp: Stamp,
        value: u8,
        _: &Write,
    ) -> Causal<Self> {
        state.write(r, stamp, value)
    }
}

/// An operation on a map of registers.
#[derive(Clone, Debug)]
pub enum MapOp {
    /// Writes the register under the key.
    Write(u8),
    /// Removes the key.
    Remove(u8),
}

impl Store for OrMap<u8, MvReg<u8>> {
    type Op = MapOp;

    fn op() -> BoxedStrategy<MapOp> {
        prop_oneof![
            3 => (0..KEYS).prop_map(MapOp::Write),
            1 => (0..KEYS).prop_map(MapOp::Remove),
        ]
        .boxed()
    }

    fn delta(
        state: &Causal<Self>,
        r: &ReplicaId,
        stamp: Stamp,
        value: u8,
        op: &MapOp,
    ) -> Causal<Self> {
        match *op {
            MapOp::Write(key) => state.update(key, |reg| reg.write(r, stamp, value)),
            MapOp::Remove(key) => state.remove(&key),
        }
    }
}

/// An operation on a map of maps of registers.
#[derive(Clone, Debug)]
pub enum NestedOp {
    /// Writes the register under `outer`, `inner`.
    Write(u8, u8),
    /// Removes `inner` from the map under `outer`.
    RemoveInner(u8, u8),
    /// Removes `outer` and everything under it.
    RemoveOuter(u8),
}

impl Store for OrMap<u8, OrMap<u8, MvReg<u8>>> {
    type Op = NestedOp;

    fn op() -> BoxedStrategy<NestedOp> {
        prop_oneof![
            4 => (0..NESTED_KEYS, 0..NESTED_KEYS).prop_map(|(o, i)| NestedOp::Write(o, i)),
            1 => (0..NESTED_KEYS, 0..NESTED_KEYS).prop_map(|(o, i)| NestedOp::RemoveInner(o, i)),
            1 => (0..NESTED_KEYS).prop_map(NestedOp::RemoveOuter),
        ]
        .boxed()
    }

    fn delta(
        state: &Causal<Self>,
        r: &ReplicaId,
        stamp: Stamp,
        value: u8,
        op: &NestedOp,
    ) -> Causal<Self> {
        match *op {
            NestedOp::Write(outer, inner) => state.update(outer, |map| {
                map.update(inner, |reg| reg.write(r, stamp, value))
            }),
            NestedOp::RemoveInner(outer, inner) => state.update(outer, |map| map.remove(&inner)),
            NestedOp::RemoveOuter(outer) => state.remove(&outer),
        }
    }
}
