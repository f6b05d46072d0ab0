//! 2-4 replicas of a small fleet take generated writes (tags set and
//! removed, nested desired properties, status, key rotation, delete,
//! re-create, modules, twin patches with `null`, application metadata) at
//! generated, possibly equal or backwards, stamps, and exchange full states
//! and deltas through a network that delays, reorders and duplicates them.
//!
//! Laws: once every replica has heard from every other, all replicas hold
//! identical canonical bytes, equal to the merge of the final states in
//! either order; every state keeps its invariants at every step; the
//! serialized state round-trips; every value the merged state reads was
//! written by someone (nothing invented); and no key a replica rotated away
//! comes back.
#![no_main]

use std::collections::BTreeSet;

use arbitrary::Arbitrary;
use failback::doc::{
    Authentication, DeviceSnapshot, Entity, HubDelta, HubState, Policies, Secret, Section, Status,
    StatusValue, TwinPatch,
};
use failback::{ReplicaId, Stamp};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const DEVICES: [&str; 2] = ["d0", "d1"];
const REPLICAS: [&str; 4] = ["r0", "r1", "r2", "r3"];
const MAX_STEPS: usize = 64;
const MAX_IN_FLIGHT: usize = 32;

#[derive(Arbitrary, Debug)]
struct Input {
    /// 2-4 replicas.
    replicas: u8,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// A local write of replica `r` on device `d` at time `ms`.
    Write { r: u8, d: u8, ms: u8, op: Op },
    /// Puts a message from `from` to `to` in flight: `from`'s whole state,
    /// or the delta `to` lacked when it was sent.
    Send { from: u8, to: u8, delta: bool },
    /// Delivers a message in flight; it stays in flight, so it can arrive
    /// again later.
    Deliver { msg: u8 },
    /// Merges `from`'s current state into `to` at once.
    Sync { from: u8, to: u8 },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Tag {
        key: u8,
    },
    RemoveTag {
        key: u8,
    },
    Nested {
        key: u8,
    },
    RemoveNested,
    Status {
        disabled: bool,
    },
    Rotate,
    Delete,
    Create,
    Module {
        add: bool,
    },
    ModuleTag {
        key: u8,
    },
    Patch {
        section: u8,
        module: bool,
        key: u8,
        remove: bool,
    },
    App {
        key: u8,
    },
}

enum Message {
    State(usize, Box<HubState>),
    Delta(usize, Box<HubDelta>),
}

struct Sim {
    states: Vec<HubState>,
    tick: u64,
    written: BTreeSet<String>,
    retired: BTreeSet<String>,
}

fn hub(r: usize) -> ReplicaId {
    ReplicaId::new(REPLICAS[r]).expect("valid literal")
}

fn fresh_device(id: &str, tag: &str, key: &str) -> DeviceSnapshot {
    let mut d = DeviceSnapshot::enabled_sas(id, &format!("{key}p"), &format!("{key}s"));
    d.device.tags.insert("t0".into(), json!(tag));
    d
}

impl Sim {
    fn new(replicas: usize) -> Self {
        let base_hub = ReplicaId::new("base").expect("valid literal");
        let mut base = HubState::new();
        let mut written = BTreeSet::new();
        for id in DEVICES {
            let tag = format!("base-{id}");
            written.insert(tag.clone());
            written.insert(format!("base-{id}-p"));
            written.insert(format!("base-{id}-s"));
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
            retired: BTreeSet::new(),
        }
    }

    fn unique(&mut self, r: usize) -> String {
        self.tick += 1;
        let v = format!("v{}-{}", self.tick, REPLICAS[r]);
        self.written.insert(v.clone());
        v
    }

    fn read(&self, r: usize, id: &str) -> Option<DeviceSnapshot> {
        self.states[r].read_device(id, &Policies::default(), &mut Vec::new())
    }

    fn write(&mut self, r: usize, id: &str, stamp: &Stamp, op: Op) {
        match op {
            Op::Create => {
                if self.read(r, id).is_none() {
                    let tag = self.unique(r);
                    let key = self.unique(r);
                    self.written.insert(format!("{key}p"));
                    self.written.insert(format!("{key}s"));
                    self.states[r].put_device(&fresh_device(id, &tag, &key), stamp, None);
                }
            }
            Op::Delete => {
                self.states[r].delete_device(id, stamp);
            }
            Op::App { key } => {
                let value = self.unique(r);
                let mut routes = self.states[r]
                    .app("routes")
                    .map_or_else(|| json!({}), |doc| doc.to_json());
                routes[format!("k{}", key % 3)] = json!(value);
                self.states[r]
                    .set_app(&hub(r), "routes", &routes)
                    .expect("a JSON object is a valid application document");
            }
            Op::Patch {
                section,
                module,
                key,
                remove,
            } => {
                let section =
                    [Section::Tags, Section::Desired, Section::Reported][usize::from(section % 3)];
                let value = if remove {
                    Value::Null
                } else {
                    json!(self.unique(r))
                };
                let mut patch = serde_json::Map::new();
                patch.insert(format!("p{}", key % 3), value);
                let patch = TwinPatch {
                    id,
                    module_id: module.then_some("m0"),
                    section,
                    patch: &patch,
                };
                self.states[r].patch_twin(&patch, stamp, None);
            }
            edit => {
                let Some(mut device) = self.read(r, id) else {
                    return;
                };
                let value = self.unique(r);
                match edit {
                    Op::Tag { key } => {
                        device
                            .device
                            .tags
                            .insert(format!("t{}", key % 3), json!(value));
                    }
                    Op::RemoveTag { key } => {
                        device.device.tags.remove(&format!("t{}", key % 3));
                    }
                    Op::Nested { key } => {
                        let cfg = device.device.desired.entry("cfg").or_insert(json!({}));
                        if !cfg.is_object() {
                            *cfg = json!({});
                        }
                        cfg[format!("k{}", key % 2)] = json!(value);
                    }
                    Op::RemoveNested => {
                        device.device.desired.remove("cfg");
                    }
                    Op::Status { disabled } => {
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
                    Op::Rotate => {
                        if let Some(old) = &device.device.authentication {
                            for key in old.secrets() {
                                self.retired.insert(key.expose().to_owned());
                            }
                        }
                        self.written.insert(format!("{value}p"));
                        self.written.insert(format!("{value}s"));
                        device.device.authentication = Some(Authentication::sas(
                            Secret::new(&format!("{value}p")),
                            Secret::new(&format!("{value}s")),
                        ));
                    }
                    Op::Module { add } => {
                        if add {
                            let mut module = Entity::default();
                            module.reported.insert("m".into(), json!(value));
                            device.modules.insert("m0".into(), module);
                        } else {
                            device.modules.remove("m0");
                        }
                    }
                    Op::ModuleTag { key } => {
                        let Some(module) = device.modules.get_mut("m0") else {
                            return;
                        };
                        module.tags.insert(format!("t{}", key % 2), json!(value));
                    }
                    _ => unreachable!("handled above"),
                }
                self.states[r].put_device(&device, stamp, None);
            }
        }
    }
}

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

/// Every value an entity reads as that a replica could have written.
fn traced(entity: &Entity, out: &mut BTreeSet<String>) {
    for section in [&entity.tags, &entity.desired, &entity.reported] {
        strings(&Value::Object(section.clone().into()), out);
    }
    if let Some(reason) = entity.status.as_ref().and_then(|s| s.reason.clone()) {
        out.insert(reason);
    }
    for key in entity.authentication.iter().flat_map(|a| a.secrets()) {
        out.insert(key.expose().to_owned());
    }
}

fuzz_target!(|input: Input| {
    let replicas = 2 + usize::from(input.replicas % 3);
    let pick = |n: u8| usize::from(n) % replicas;
    let mut sim = Sim::new(replicas);
    let mut in_flight: Vec<Message> = Vec::new();
    for step in input.steps.iter().take(MAX_STEPS) {
        match *step {
            Step::Write { r, d, ms, op } => {
                let r = pick(r);
                let id = DEVICES[usize::from(d) % DEVICES.len()];
                let stamp = Stamp::new(i64::from(ms), 0, hub(r));
                sim.write(r, id, &stamp, op);
                sim.states[r].check_invariants().unwrap();
            }
            Step::Send { from, to, delta } => {
                let (from, to) = (pick(from), pick(to));
                if in_flight.len() < MAX_IN_FLIGHT {
                    let state = &sim.states[from];
                    in_flight.push(if delta {
                        let seen = sim.states[to].version_vector();
                        Message::Delta(to, Box::new(state.delta_since(seen)))
                    } else {
                        Message::State(to, Box::new(state.clone()))
                    });
                }
            }
            Step::Deliver { msg } => {
                if in_flight.is_empty() {
                    continue;
                }
                let to = match &in_flight[usize::from(msg) % in_flight.len()] {
                    Message::State(to, state) => {
                        sim.states[*to].try_merge(state).unwrap();
                        *to
                    }
                    Message::Delta(to, delta) => {
                        sim.states[*to].apply_delta(delta).unwrap();
                        *to
                    }
                };
                sim.states[to].check_invariants().unwrap();
            }
            Step::Sync { from, to } => {
                let (from, to) = (pick(from), pick(to));
                let other = sim.states[from].clone();
                sim.states[to].try_merge(&other).unwrap();
                sim.states[to].check_invariants().unwrap();
            }
        }
    }

    // Everyone hears from everyone, through the messages still in flight
    // and then the final states.
    for message in &in_flight {
        match message {
            Message::State(to, state) => sim.states[*to].try_merge(state).unwrap(),
            Message::Delta(to, delta) => sim.states[*to].apply_delta(delta).unwrap(),
        }
    }
    let finals = sim.states.clone();
    let mut expected = finals[0].clone();
    for state in &finals[1..] {
        expected.try_merge(state).unwrap();
    }
    expected.check_invariants().unwrap();
    let mut reversed = finals[finals.len() - 1].clone();
    for state in finals.iter().rev().skip(1) {
        reversed.try_merge(state).unwrap();
    }
    let bytes = expected.to_canonical_json().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&reversed.to_canonical_json().unwrap()),
        String::from_utf8_lossy(&bytes),
        "merge order changed the result"
    );
    for (r, state) in sim.states.iter_mut().enumerate() {
        for (from, other) in finals.iter().enumerate() {
            if from != r {
                state.try_merge(other).unwrap();
            }
        }
        state.check_invariants().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&state.to_canonical_json().unwrap()),
            String::from_utf8_lossy(&bytes),
            "replica {r} did not converge"
        );
    }

    let back: HubState = serde_json::from_slice(&bytes).expect("the canonical form reads back");
    assert_eq!(
        back.to_canonical_json().unwrap(),
        bytes,
        "serialization round trip"
    );

    let policies = Policies::default();
    let mut kept = BTreeSet::new();
    for id in DEVICES {
        let mut conflicts = Vec::new();
        let Some(device) = expected.read_device(id, &policies, &mut conflicts) else {
            continue;
        };
        assert_eq!(device.id, id);
        traced(&device.device, &mut kept);
        for module in device.modules.values() {
            traced(module, &mut kept);
        }
        assert_eq!(
            back.read_device(id, &policies, &mut Vec::new()),
            Some(device),
            "a winner changed across the round trip"
        );
    }
    for value in &kept {
        assert!(sim.written.contains(value), "{value:?} was never written");
        assert!(
            !sim.retired.contains(value),
            "rotated-away key {value:?} came back"
        );
    }
    assert_eq!(
        format!("{:?}", expected.conflicts(&policies)),
        format!("{:?}", reversed.conflicts(&policies))
    );
});
