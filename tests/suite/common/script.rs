//! Generated histories: a few replicas perform operations on their own
//! state and now and then merge another replica's whole state, so that the
//! history holds both causal and concurrent writes.

use std::ops::RangeInclusive;

use failback::kernel::{Causal, Merge};
use failback::{ReplicaId, Stamp};
use proptest::prelude::*;
use proptest::sample::Index;

use super::Store;
use super::stores::check_state;

/// The most steps in one history: few enough to keep the values written
/// (the step numbers) unique within a `u8`.
pub const MAX_STEPS: usize = 24;

/// One step of a history.
#[derive(Clone, Debug)]
pub enum Step<Op> {
    /// Replica `replica` performs `op` on its own state.
    Local {
        /// Who performs the operation.
        replica: usize,
        /// What it does.
        op: Op,
    },
    /// Replica `to` merges the whole state of replica `from`.
    Sync {
        /// The replica whose state is sent.
        from: usize,
        /// The replica that merges it.
        to: usize,
    },
}

/// A history of `replicas` replicas.
#[derive(Clone, Debug)]
pub struct Script<Op> {
    /// How many replicas take part.
    pub replicas: usize,
    /// What happens, in order.
    pub steps: Vec<Step<Op>>,
}

/// What replaying a [`Script`] leaves behind.
#[derive(Clone, Debug)]
pub struct Replay<S> {
    /// The final state of each replica.
    pub states: Vec<Causal<S>>,
    /// Every delta, in the order made, with the index of its author.
    pub deltas: Vec<(usize, Causal<S>)>,
}

impl<S: Store> Replay<S> {
    /// The join of every replica's final state.
    pub fn merged(&self) -> Causal<S> {
        let mut all = Causal::default();
        for state in &self.states {
            all.merge(state);
            check_state(&all);
        }
        all
    }

    /// Every final state and every delta: the states the laws draw from.
    pub fn pool(&self) -> Vec<Causal<S>> {
        let deltas = self.deltas.iter().map(|(_, d)| d.clone());
        self.states.iter().cloned().chain(deltas).collect()
    }
}

/// The name of replica number `index`.
pub fn replica(index: usize) -> ReplicaId {
    ReplicaId::new(&format!("hub-{index}")).expect("valid replica name")
}

/// Generates histories of 1 to [`MAX_STEPS`] steps among a number of
/// replicas drawn from `replicas`; one step in four is a state exchange.
pub fn script<S: Store>(replicas: RangeInclusive<usize>) -> impl Strategy<Value = Script<S::Op>> {
    replicas.prop_flat_map(|n| {
        let step = prop_oneof![
            3 => (0..n, S::op()).prop_map(|(replica, op)| Step::Local { replica, op }),
            1 => (0..n, 0..n).prop_map(|(from, to)| Step::Sync { from, to }),
        ];
        proptest::collection::vec(step, 1..=MAX_STEPS)
            .prop_map(move |steps| Script { replicas: n, steps })
    })
}

/// Replays `script`: every operation becomes a delta made from its
/// replica's state and merged into it. Step `i` writes value `i` with a
/// stamp at millisecond `i`. Checks the invariants of every state made.
pub fn replay<S: Store>(script: &Script<S::Op>) -> Replay<S> {
    let ids: Vec<ReplicaId> = (0..script.replicas).map(replica).collect();
    let mut states = vec![Causal::<S>::default(); script.replicas];
    let mut deltas = Vec::new();
    for (i, step) in script.steps.iter().enumerate() {
        match step {
            Step::Local { replica, op } => {
                let id = &ids[*replica];
                let stamp = Stamp::new(i as i64, 0, id.clone());
                let value = u8::try_from(i).expect("fewer than 256 steps");
                let delta = S::delta(&states[*replica], id, stamp, value, op);
                check_state(&delta);
                states[*replica].merge(&delta);
                deltas.push((*replica, delta));
            }
            Step::Sync { from, to } => {
                let sent = states[*from].clone();
                states[*to].merge(&sent);
            }
        }
        states.iter().for_each(check_state);
    }
    Replay { states, deltas }
}

/// Three states picked (with repeats) among the final states and deltas of
/// a history of 2 or 3 replicas.
pub fn three_states<S: Store>() -> impl Strategy<Value = [Causal<S>; 3]> {
    (script::<S>(2..=3), any::<[Index; 3]>()).prop_map(|(script, picks)| {
        let pool = replay::<S>(&script).pool();
        picks.map(|pick| pool[pick.index(pool.len())].clone())
    })
}

/// A history of 3 to 5 replicas, with for each replica the order in which
/// it receives the deltas: all of them, shuffled, some more than once.
pub fn deliveries<S: Store>() -> impl Strategy<Value = (Script<S::Op>, Vec<Vec<usize>>)> {
    script::<S>(3..=5).prop_flat_map(|script| {
        let made = script
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Local { .. }))
            .count();
        let order = proptest::collection::vec(any::<Index>(), 0..=made)
            .prop_map(move |extra| {
                let repeats = extra.into_iter().map(|i| i.index(made));
                (0..made).chain(repeats).collect::<Vec<_>>()
            })
            .prop_shuffle();
        let orders = proptest::collection::vec(order, script.replicas);
        (Just(script), orders)
    })
}
