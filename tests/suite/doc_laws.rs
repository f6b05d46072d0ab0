//! Properties of the hub state: the CRDT laws and each failback policy,
//! over generated histories of writes from several replicas on a small
//! fleet, so that writes collide.

use std::collections::BTreeSet;

use failback::doc::{
    Authentication, Conflict, DeviceSnapshot, Entity, HubState, Policies, Secret, Status,
    StatusValue,
};
use failback::kernel::Merge;
use failback::{ReplicaId, Stamp};
use proptest::prelude::*;
use serde_json::{Value, json};

const DEVICES: [&str; 2] = ["d0", "d1"];
const REPLICAS: [&str; 3] = ["r0", "r1", "r2"];

#[derive(Clone, Debug)]
enum Op {
    Tag { r: usize, d: usize, key: usize },
    RemoveTag { r: usize, d: usize, key: usize },
    Nested { r: usize, d: usize, key: usize },
    RemoveNested { r: usize, d: usize },
    Status { r: usize, d: usize, disabled: bool },
    Rotate { r: usize, d: usize },
    Delete { r: usize, d: usize },
    Create { r: usize, d: usize },
    Module { r: usize, d: usize, add: bool },
    App { r: usize, key: usize },
    Sync { from: usize, to: usize },
}

fn op(replicas: usize, syncs: bool) -> impl Strategy<Value = Op> {
    let r = 0..replicas;
    let d = 0..DEVICES.len();
    let mut choices = vec![
        (r.clone(), d.clone(), 0..3usize)
            .prop_map(|(r, d, key)| Op::Tag { r, d, key })
            .boxed(),
        (r.clone(), d.clone(), 0..3usize)
            .prop_map(|(r, d, key)| Op::RemoveTag { r, d, key })
            .boxed(),
        (r.clone(), d.clone(), 0..2usize)
            .prop_map(|(r, d, key)| Op::Nested { r, d, key })
            .boxed(),
        (r.clone(), d.clone())
            .prop_map(|(r, d)| Op::RemoveNested { r, d })
            .boxed(),
        (r.clone(), d.clone(), any::<bool>())
            .prop_map(|(r, d, disabled)| Op::Status { r, d, disabled })
            .boxed(),
        (r.clone(), d.clone())
            .prop_map(|(r, d)| Op::Rotate { r, d })
            .boxed(),
        (r.clone(), d.clone())
            .prop_map(|(r, d)| Op::Delete { r, d })
            .boxed(),
        (r.clone(), d.clone())
            .prop_map(|(r, d)| Op::Create { r, d })
            .boxed(),
        (r.clone(), d.clone(), any::<bool>())
            .prop_map(|(r, d, add)| Op::Module { r, d, add })
            .boxed(),
        (r.clone(), 0..2usize)
            .prop_map(|(r, key)| Op::App { r, key })
            .boxed(),
    ];
    if syncs {
        choices.push(
            (r.clone(), r)
                .prop_map(|(from, to)| Op::Sync { from, to })
                .boxed(),
        );
    }
    proptest::strategy::Union::new(choices)
}

/// A run of replicas replaying generated writes; every written value is
/// unique so it can be traced.
struct Sim {
    states: Vec<HubState>,
    tick: i64,
    written: BTreeSet<String>,
    /// Per replica: keys it saw rotated away (so never to come back).
    retired: Vec<BTreeSet<String>>,
}

fn hub(i: usize) -> ReplicaId {
    ReplicaId::new(REPLICAS[i]).unwrap()
}

fn fresh_device(id: &str, tag: &str, key: &str) -> DeviceSnapshot {
    let mut d = DeviceSnapshot::enabled_sas(id, &format!("{key}p"), &format!("{key}s"));
    d.device.tags.insert("t0".into(), json!(tag));
    // Marks the incarnation: never changed after creation.
    d.device
        .extra
        .insert("gen".into(), json!(format!("gen-{tag}")));
    d
}

impl Sim {
    fn new(replicas: usize) -> Self {
        let base_hub = ReplicaId::new("base").unwrap();
        let mut base = HubState::new();
        let mut written = BTreeSet::new();
        for id in DEVICES {
            let tag = format!("base-{id}");
            written.insert(tag.clone());
            base.put_device(
                &fresh_device(id, &tag, &format!("base-{id}-")),
                &Stamp::new(0, 0, base_hub.clone()),
                None,
            );
        }
        Self {
            states: vec![base; replicas],
            tick: 0,
            written,
            retired: vec![BTreeSet::new(); replicas],
        }
    }

    fn unique(&mut self, r: usize) -> String {
        self.tick += 1;
        let v = format!("v{}-{}", self.tick, REPLICAS[r]);
        self.written.insert(v.clone());
        v
    }

    fn read(&self, r: usize, d: usize) -> Option<DeviceSnapshot> {
        self.states[r].read_device(DEVICES[d], &Policies::default(), &mut Vec::new())
    }

    fn put(&mut self, r: usize, device: &DeviceSnapshot) {
        let stamp = Stamp::new(self.tick, 0, hub(r));
        self.states[r].put_device(device, &stamp, None);
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Sync { from, to } => {
                let other = self.states[from].clone();
                self.states[to].try_merge(&other).unwrap();
                let seen = self.retired[from].clone();
                self.retired[to].extend(seen);
            }
            Op::App { r, key } => {
                let value = self.unique(r);
                let mut routes = self.states[r]
                    .app("routes")
                    .map_or_else(|| json!({}), |doc| doc.to_json());
                routes[format!("k{key}")] = json!(value);
                self.states[r].set_app(&hub(r), "routes", &routes).unwrap();
            }
            Op::Create { r, d } => {
                if self.read(r, d).is_none() {
                    let tag = self.unique(r);
                    let key = self.unique(r);
                    self.put(r, &fresh_device(DEVICES[d], &tag, &key));
                }
            }
            Op::Delete { r, d } => {
                self.tick += 1;
                let stamp = Stamp::new(self.tick, 0, hub(r));
                self.states[r].delete_device(DEVICES[d], &stamp);
            }
            ref edit => {
                let (r, d) = match *edit {
                    Op::Tag { r, d, .. }
                    | Op::RemoveTag { r, d, .. }
                    | Op::Nested { r, d, .. }
                    | Op::RemoveNested { r, d }
                    | Op::Status { r, d, .. }
                    | Op::Rotate { r, d }
                    | Op::Module { r, d, .. } => (r, d),
                    Op::Sync { .. } | Op::Create { .. } | Op::Delete { .. } | Op::App { .. } => {
                        unreachable!()
                    }
                };
                let Some(mut device) = self.read(r, d) else {
                    return;
                };
                let value = self.unique(r);
                match *edit {
                    Op::Tag { key, .. } => {
                        device.device.tags.insert(format!("t{key}"), json!(value));
                    }
                    Op::RemoveTag { key, .. } => {
                        device.device.tags.remove(&format!("t{key}"));
                    }
                    Op::Nested { key, .. } => {
                        let cfg = device.device.desired.entry("cfg").or_insert(json!({}));
                        if !cfg.is_object() {
                            *cfg = json!({});
                        }
                        cfg[format!("k{key}")] = json!(value);
                    }
                    Op::RemoveNested { .. } => {
                        device.device.desired.remove("cfg");
                    }
                    Op::Status { disabled, .. } => {
                        let status = if disabled {
                            Status::Disabled
                        } else {
                            Status::Enabled
                        };
                        device.device.status = Some(StatusValue {
                            status,
                            reason: Some(value),
                        });
                    }
                    Op::Rotate { .. } => {
                        if let Some(old) = &device.device.authentication {
                            for key in old.secrets() {
                                self.retired[r].insert(key.expose().to_owned());
                            }
                        }
                        device.device.authentication = Some(Authentication::sas(
                            Secret::new(&format!("{value}p")),
                            Secret::new(&format!("{value}s")),
                        ));
                    }
                    Op::Module { add, .. } => {
                        if add {
                            let mut module = Entity::default();
                            module.reported.insert("m".into(), json!(value));
                            device.modules.insert("m0".into(), module);
                        } else {
                            device.modules.remove("m0");
                        }
                    }
                    _ => unreachable!(),
                }
                self.put(r, &device);
            }
        }
    }
}

fn run(replicas: usize, ops: &[Op]) -> Sim {
    let mut sim = Sim::new(replicas);
    for op in ops {
        sim.apply(op);
    }
    for state in &sim.states {
        state.check_invariants().unwrap();
    }
    sim
}

/// A state whose documents all grew from one base: its merge cannot fail,
/// so the generic law tests can take it as a [`Merge`].
#[derive(Clone, serde::Serialize)]
#[serde(transparent)]
struct Lawful(HubState);

impl Merge for Lawful {
    fn merge(&mut self, other: &Self) {
        self.0
            .try_merge(&other.0)
            .expect("documents this module wrote merge");
    }
}

fn bytes(state: &HubState) -> Vec<u8> {
    state.to_canonical_json().unwrap()
}

fn join(a: &HubState, b: &HubState) -> HubState {
    let mut m = a.clone();
    m.try_merge(b).unwrap();
    m
}

fn merge_all(states: &[HubState]) -> HubState {
    let mut m = states[0].clone();
    for s in &states[1..] {
        m.try_merge(s).unwrap();
    }
    m.check_invariants().unwrap();
    m
}

/// Every string inside a JSON value.
fn strings(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => {
            out.insert(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// The traced values a device reads as: tags, desired, module reported,
/// the status reason and the keys.
fn traced(device: &DeviceSnapshot) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    strings(&Value::Object(device.device.tags.clone().into()), &mut out);
    strings(
        &Value::Object(device.device.desired.clone().into()),
        &mut out,
    );
    for module in device.modules.values() {
        strings(&Value::Object(module.reported.clone().into()), &mut out);
    }
    if let Some(reason) = device.device.status.as_ref().and_then(|s| s.reason.clone()) {
        out.insert(reason);
    }
    out
}

fn read_all(state: &HubState) -> (Vec<Option<DeviceSnapshot>>, Vec<Conflict>) {
    let mut conflicts = Vec::new();
    let devices = DEVICES
        .iter()
        .map(|id| state.read_device(id, &Policies::default(), &mut conflicts))
        .collect();
    (devices, conflicts)
}

proptest! {
    #[test]
    fn merge_is_commutative_associative_idempotent(
        ops in prop::collection::vec(op(3, true), 0..40),
    ) {
        let sim = run(3, &ops);
        let states = [0, 1, 2].map(|r| Lawful(sim.states[r].clone()));
        crate::common::laws::semilattice(&states, |s| s.0.check_invariants().unwrap())?;
    }

    #[test]
    fn replicas_converge_under_any_delivery_order_and_duplication(
        ops in prop::collection::vec(op(3, true), 0..30),
        order in prop::collection::vec((0..3usize, 0..3usize), 0..30),
    ) {
        let sim = run(3, &ops);
        let expected = merge_all(&sim.states);
        // Deliver states pairwise in a generated order (duplicates
        // included), then make sure everyone has heard from everyone.
        let mut states = sim.states.clone();
        for &(from, to) in &order {
            let other = states[from].clone();
            states[to].try_merge(&other).unwrap();
        }
        for to in 0..3 {
            for from in 0..3 {
                let other = states[from].clone();
                states[to].try_merge(&other).unwrap();
            }
        }
        for state in &states {
            prop_assert_eq!(bytes(state), bytes(&expected));
        }
        prop_assert_eq!(
            format!("{:?}", expected.conflicts(&Policies::default())),
            format!("{:?}", merge_all(&[states[2].clone(), states[0].clone()]).conflicts(&Policies::default()))
        );
    }

    #[test]
    fn applying_writes_one_by_one_equals_merging_their_deltas(
        ops in prop::collection::vec(op(2, true), 0..30),
    ) {
        // Replica 0's history shipped as deltas after every step equals
        // shipping its final state.
        let mut sim = Sim::new(2);
        let mut follower = sim.states[1].clone();
        for op in &ops {
            sim.apply(op);
            let delta = sim.states[0].delta_since(follower.version_vector());
            follower.apply_delta(&delta).unwrap();
            follower.apply_delta(&delta).unwrap();
        }
        let direct = join(&sim.states[1], &sim.states[0]);
        prop_assert_eq!(bytes(&join(&follower, &sim.states[1])), bytes(&direct));
        // When delta sync has nothing left to send, the states are equal.
        let mut a = sim.states[0].clone();
        let mut b = sim.states[1].clone();
        a.apply_delta(&b.delta_since(a.version_vector())).unwrap();
        b.apply_delta(&a.delta_since(b.version_vector())).unwrap();
        prop_assert!(a.delta_since(b.version_vector()).is_empty());
        prop_assert_eq!(bytes(&a), bytes(&b));
    }

    #[test]
    fn serialization_round_trips_and_keeps_winners(
        ops in prop::collection::vec(op(3, true), 0..30),
    ) {
        let sim = run(3, &ops);
        let merged = merge_all(&sim.states);
        crate::common::laws::round_trip(&merged)?;
        let back: HubState = serde_json::from_slice(&bytes(&merged)).unwrap();
        prop_assert_eq!(read_all(&back), read_all(&merged));
    }

    /// Failover-shaped histories: replicas diverge from the base without
    /// hearing from each other, so every value a replica ends with must
    /// survive the merge as the value or as a named loser.
    #[test]
    fn nothing_lost_nothing_invented(
        ops in prop::collection::vec(op(3, false), 0..40),
    ) {
        let sim = run(3, &ops);
        let merged = merge_all(&sim.states);
        let (devices, conflicts) = read_all(&merged);
        let mut kept = BTreeSet::new();
        for device in devices.iter().flatten() {
            kept.extend(traced(device));
        }
        let mut logged = BTreeSet::new();
        for conflict in &conflicts {
            for side in std::iter::once(&conflict.winner).chain(&conflict.losers) {
                strings(&side.value, &mut logged);
            }
        }
        for (r, _) in sim.states.iter().enumerate() {
            for d in 0..DEVICES.len() {
                let Some(device) = sim.read(r, d) else { continue };
                // Its own writes: the base's values were seen by everyone and
                // may be overwritten by anyone.
                let own = format!("-{}", REPLICAS[r]);
                for value in traced(&device).into_iter().filter(|v| v.ends_with(&own)) {
                    prop_assert!(
                        kept.contains(&value) || logged.contains(&value),
                        "{value} of {} lost", REPLICAS[r]
                    );
                }
            }
        }
        for value in &kept {
            prop_assert!(sim.written.contains(value), "{value} invented");
        }
    }

    /// Policy 1: after a failover-shaped divergence, a device any replica
    /// left disabled is disabled, unless deleted or re-created.
    #[test]
    fn disabled_wins(
        ops in prop::collection::vec(op(3, false), 0..30),
    ) {
        let sim = run(3, &ops);
        let merged = merge_all(&sim.states);
        for (d, id) in DEVICES.iter().enumerate() {
            let Some(device) = merged.read_device(id, &Policies::default(), &mut Vec::new()) else { continue };
            let same_incarnation = |r: usize| sim.read(r, d).filter(|mine| mine.device.extra.get("gen") == device.device.extra.get("gen"));
            let disabled_somewhere = (0..3).filter_map(same_incarnation).any(|mine| {
                mine.device.status.map(|s| s.status) == Some(Status::Disabled)
            });
            let status = device.device.status.map(|s| s.status);
            if disabled_somewhere {
                prop_assert_eq!(status, Some(Status::Disabled));
            }
        }
    }

    /// Policy 1, second half: an enable that saw the disable wins.
    #[test]
    fn an_enable_that_saw_the_disable_is_kept(later_ops in prop::collection::vec(op(2, false), 0..10)) {
        let mut sim = Sim::new(2);
        sim.apply(&Op::Status { r: 0, d: 0, disabled: true });
        sim.apply(&Op::Sync { from: 0, to: 1 });
        sim.apply(&Op::Status { r: 1, d: 0, disabled: false });
        let concurrent_disable = later_ops.iter().any(|o| matches!(o, Op::Status { disabled: true, d: 0, .. } | Op::Delete { d: 0, .. } | Op::Rotate { d: 0, .. }));
        for op in &later_ops {
            if let Op::Status { r: 1, .. } | Op::Delete { .. } = op { continue }
            sim.apply(op);
        }
        let merged = merge_all(&sim.states);
        let device = merged.read_device("d0", &Policies::default(), &mut Vec::new());
        if !concurrent_disable {
            prop_assert_eq!(device.unwrap().device.status.unwrap().status, Status::Enabled);
        }
    }

    /// Policy 2: a delete that follows a create stays deleted under every
    /// delivery order, and a re-create starts empty.
    #[test]
    fn deletes_win_and_recreations_inherit_nothing(
        before in prop::collection::vec(op(3, false), 0..15),
        concurrent in prop::collection::vec(op(3, false), 0..15),
        order in Just([0usize, 1, 2]).prop_shuffle(),
        recreate in any::<bool>(),
    ) {
        let mut sim = Sim::new(3);
        for op in &before { sim.apply(op) }
        for to in 0..3 { for from in 0..3 { sim.apply(&Op::Sync { from, to }) } }
        sim.apply(&Op::Delete { r: 0, d: 0 });
        if recreate {
            sim.apply(&Op::Create { r: 0, d: 0 });
        }
        let mine = sim.read(0, 0);
        for op in concurrent.iter().filter(|o| !matches!(o, Op::Create { r: 1 | 2, d: 0 } | Op::Status { r: 0, .. } | Op::Tag { r: 0, .. } | Op::Module { r: 0, .. } | Op::Rotate { r: 0, .. } | Op::Nested { r: 0, .. } | Op::Delete { r: 0, .. } | Op::RemoveTag { r: 0, .. } | Op::RemoveNested { r: 0, .. } | Op::Create { r: 0, .. })) {
            sim.apply(op);
        }
        let mut merged = sim.states[order[0]].clone();
        merged.try_merge(&sim.states[order[1]]).unwrap();
        merged.try_merge(&sim.states[order[2]]).unwrap();
        let device = merged.read_device("d0", &Policies::default(), &mut Vec::new());
        prop_assert_eq!(device, mine);
    }

    /// Policy 3: a key some replica rotated away never returns, in either
    /// slot, whatever was merged.
    #[test]
    fn rotated_away_keys_never_return(
        ops in prop::collection::vec(op(3, true), 0..40),
    ) {
        let sim = run(3, &ops);
        let retired: BTreeSet<String> = sim.retired.iter().flatten().cloned().collect();
        let merged = merge_all(&sim.states);
        for id in DEVICES {
            let Some(device) = merged.read_device(id, &Policies::default(), &mut Vec::new()) else { continue };
            for key in device.device.authentication.iter().flat_map(|a| a.secrets()) {
                prop_assert!(!retired.contains(key.expose()), "a rotated-away key came back");
            }
        }
    }

    /// Policy 4: a removal survives concurrent edits of sibling keys.
    #[test]
    fn null_removes_beside_concurrent_sibling_edits(key in 1..3usize, rounds in 1..4usize) {
        let mut sim = Sim::new(2);
        sim.apply(&Op::RemoveTag { r: 0, d: 1, key: 0 });
        for _ in 0..rounds {
            sim.apply(&Op::Tag { r: 1, d: 1, key });
        }
        let merged = merge_all(&sim.states);
        let device = merged.read_device("d1", &Policies::default(), &mut Vec::new()).unwrap();
        prop_assert!(!device.device.tags.contains_key("t0"));
        let theirs = sim.read(1, 1).unwrap();
        prop_assert_eq!(device.device.tags.get(&format!("t{key}")), theirs.device.tags.get(&format!("t{key}")));
    }
}

/// One hub's creation of device `c`: generated status, tags, keys and
/// modules, each value unique to the hub so nothing-lost is checkable.
fn creation() -> impl Strategy<Value = (bool, Vec<usize>, Vec<usize>)> {
    (
        any::<bool>(),
        prop::collection::vec(0..4usize, 0..3),
        prop::collection::vec(0..3usize, 0..3),
    )
}

fn created(
    hub: usize,
    (disabled, tags, modules): &(bool, Vec<usize>, Vec<usize>),
) -> DeviceSnapshot {
    let mut d = DeviceSnapshot::enabled_sas("c", &format!("p{hub}"), &format!("s{hub}"));
    if *disabled {
        d.device.status = Some(StatusValue {
            status: Status::Disabled,
            reason: Some(format!("by {hub}")),
        });
    }
    for t in tags {
        d.device.tags.insert(format!("t{t}"), json!(hub));
    }
    for m in modules {
        let module = d.modules.entry(format!("m{m}")).or_default();
        module.desired.insert(format!("by{hub}"), json!(hub));
    }
    d
}

proptest! {
    /// Policy 7 as a law: creations of one id on up to three hubs merge to
    /// one device whatever the order the hubs are given in; it is disabled
    /// when any creation is, holds every tag key and module any hub
    /// created, its keys are one hub's whole, and every value of a
    /// creation is in it or a logged loser; no whole creation is dropped.
    #[test]
    fn creations_on_several_hubs_are_one_device(
        made in prop::collection::vec(prop::option::of(creation()), 1..4),
    ) {
        use failback::reconcile::{Base, HubDevice, merge_device};
        let names: Vec<ReplicaId> = (0..made.len()).map(|h| ReplicaId::new(&format!("h{h}")).unwrap()).collect();
        let stamps: Vec<Stamp> = names.iter().enumerate().map(|(h, n)| Stamp::new(h as i64 + 1, 0, n.clone())).collect();
        let devices: Vec<Option<DeviceSnapshot>> = made.iter().enumerate().map(|(h, m)| m.as_ref().map(|m| created(h, m))).collect();
        let views: Vec<HubDevice<'_>> = (0..made.len()).map(|h| HubDevice {
            hub: &names[h],
            device: devices[h].as_ref(),
            times: None,
            stamp: &stamps[h],
            recreated: false,
        }).collect();
        let result = merge_device(Base::Absent, &views, &Policies::default());
        let mut reversed = views.clone();
        reversed.reverse();
        prop_assert_eq!(&result, &merge_device(Base::Absent, &reversed, &Policies::default()));
        let held: Vec<&DeviceSnapshot> = devices.iter().flatten().collect();
        let Some(merged) = &result.merged else {
            prop_assert!(held.is_empty());
            return Ok(());
        };
        prop_assert!(result.conflicts.iter().all(|c| c.rule != failback::doc::Rule::ConcurrentCreate));
        let disabled = held.iter().any(|d| d.device.status.as_ref().is_some_and(|s| s.status == Status::Disabled));
        prop_assert_eq!(merged.device.status.as_ref().map(|s| s.status == Status::Disabled), Some(disabled));
        prop_assert!(held.iter().any(|d| d.device.authentication == merged.device.authentication));
        for d in &held {
            for key in d.device.tags.keys() {
                prop_assert!(merged.device.tags.contains_key(key));
            }
            for (m, module) in &d.modules {
                let Some(got) = merged.modules.get(m) else {
                    return Err(TestCaseError::fail(format!("module {m} dropped")));
                };
                for (k, v) in &module.desired {
                    prop_assert_eq!(got.desired.get(k), Some(v));
                }
            }
            if d.device.authentication != merged.device.authentication {
                prop_assert!(result.conflicts.iter().any(|c| c.path == "authentication"));
            }
            for (k, v) in &d.device.tags {
                let kept = merged.device.tags.get(k) == Some(v);
                let logged = result.conflicts.iter().any(|c| c.path == format!("tags.{k}") && c.losers.iter().any(|l| l.value == *v));
                prop_assert!(kept || logged, "tag {} = {} lost", k, v);
            }
        }
    }
}
