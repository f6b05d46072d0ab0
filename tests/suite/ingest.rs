//! Change events into hub replicas: order and multiplicity never matter,
//! ingesting equals merging partitions, replay derives what the hub holds
//! (against a model of the hub), gaps are parked and filled, seeds and
//! creates hold the changes at or below their version, bad events are
//! refused by name; and the `ingest`, `replica` and `merge` commands end
//! to end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use failback::ReplicaId;
use failback::doc::{Authentication, Secret};
use failback::format::{Event, TwinReader, collect_twins, parse_event_line};
use failback::replica::{Ingested, Replica, ReplicaError, Seed, read_state};
use proptest::prelude::*;
use serde_json::json;

use crate::common::{T0, time};

/// One step of a generated hub history.
#[derive(Clone, Debug)]
struct Step {
    kind: u8,
    device: u8,
    module: u8,
    key: u8,
    value: Option<u8>,
    jump: u8,
    with_id: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0u8..8,
        0u8..3,
        0u8..2,
        0u8..3,
        prop::option::weighted(0.8, 0u8..5),
        1u8..4,
        prop::bool::weighted(0.8),
    )
        .prop_map(|(kind, device, module, key, value, jump, with_id)| Step {
            kind,
            device,
            module,
            key,
            value,
            jump,
            with_id,
        })
}

/// The event lines of a history, in the hub's order: times increase, each
/// twin's version goes up by 1 to 3 (coalesced notifications), restarting
/// at a create.
fn history(steps: &[Step]) -> Vec<String> {
    let mut versions = std::collections::BTreeMap::new();
    let mut lines = Vec::new();
    for (n, s) in steps.iter().enumerate() {
        let device = format!("d{}", s.device);
        let module = format!("m{}", s.module);
        let at = time(T0 + 1000 * n as i64);
        let (op, module) = match s.kind {
            0 => ("createDeviceIdentity", None),
            1 => ("deleteDeviceIdentity", None),
            2 | 3 => ("updateTwin", None),
            4 => ("replaceTwin", None),
            5 => ("createModuleIdentity", Some(module)),
            6 => ("deleteModuleIdentity", Some(module)),
            _ => ("updateTwin", Some(module)),
        };
        let entity = (device.clone(), module.clone());
        let version = versions.entry(entity).or_insert(0u64);
        if op.starts_with("create") {
            *version = 1;
        } else {
            *version += u64::from(s.jump);
        }
        let key = format!("k{}", s.key);
        let value = s.value.map_or(serde_json::Value::Null, |v| json!(v));
        let body = match op {
            "updateTwin" if s.kind == 3 => {
                json!({"version": *version, "tags": {key.clone(): value}})
            }
            "updateTwin" => json!({
                "version": *version,
                "properties": {"desired": {
                    key.clone(): value,
                    "$metadata": {key.clone(): {"$lastUpdated": at}}
                }}
            }),
            "replaceTwin" => json!({
                "version": *version,
                "tags": {"whole": n},
                "properties": {"desired": {key.clone(): n}}
            }),
            "createDeviceIdentity" => {
                json!({"version": *version, "status": "enabled", "tags": {"born": n}})
            }
            _ => json!({"version": *version}),
        };
        let mut props = json!({
            "hubName": "hub1",
            "deviceId": device,
            "opType": op,
            "operationTimestamp": at,
        });
        if let Some(module) = &module {
            props["moduleId"] = json!(module);
        }
        let system = if s.with_id {
            json!({"correlation-id": format!("c{n}")})
        } else {
            json!({})
        };
        lines.push(
            json!({"properties": props, "systemProperties": system, "body": body}).to_string(),
        );
    }
    lines
}

fn parse(lines: &[String]) -> Vec<Event> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            parse_event_line("gen.jsonl", i as u64 + 1, l).expect("generated lines parse")
        })
        .collect()
}

fn hub() -> ReplicaId {
    ReplicaId::new("primary").expect("valid")
}

fn ingest_all<'a>(events: impl IntoIterator<Item = &'a Event>) -> Replica {
    let mut replica = Replica::new(hub());
    for event in events {
        replica.ingest(event.clone()).expect("no conflicting ids");
    }
    replica
}

/// The retransmitted-run pattern: 1,2,1,2,3,1,2,3,4, ... over `events`.
fn retransmitted(events: &[Event]) -> Vec<Event> {
    let mut out = Vec::new();
    for end in 1..=events.len() {
        if end % 2 == 0 || end == events.len() {
            out.extend(events.iter().take(end).cloned());
        }
    }
    out
}

proptest! {
    #[test]
    fn any_order_and_any_duplication_gives_the_same_bytes(
        steps in prop::collection::vec(step(), 1..24),
        shuffle_seed in any::<u64>(),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let events = parse(&history(&steps));
        let in_order = ingest_all(&events);
        let bytes = in_order.to_bytes();

        let mut delivery: Vec<Event> = events.clone();
        for d in &dups {
            delivery.push(d.get(&events).clone());
        }
        // A seeded shuffle (Fisher-Yates over a small LCG).
        let mut state = shuffle_seed | 1;
        for i in (1..delivery.len()).rev() {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let j = (state >> 33) as usize % (i + 1);
            delivery.swap(i, j);
        }
        let shuffled = ingest_all(&delivery);
        prop_assert_eq!(&shuffled.to_bytes(), &bytes);
        let rerun = ingest_all(&retransmitted(&events));
        prop_assert_eq!(&rerun.to_bytes(), &bytes);

        // The state file reads back to the same replica and bytes.
        let back = read_state(bytes.as_slice(), "state.json").expect("own state reads back");
        prop_assert_eq!(&back.to_bytes(), &bytes);
        prop_assert!(back == in_order);
    }

    #[test]
    fn ingesting_one_by_one_equals_merging_any_partition(
        steps in prop::collection::vec(step(), 1..24),
        parts in prop::collection::vec(0usize..3, 24),
        reverse in any::<bool>(),
    ) {
        let events = parse(&history(&steps));
        let whole = ingest_all(&events);
        let mut replicas = vec![Replica::new(hub()), Replica::new(hub()), Replica::new(hub())];
        for (event, part) in events.iter().zip(&parts) {
            replicas[*part].ingest(event.clone()).expect("no conflicting ids");
        }
        if reverse {
            replicas.reverse();
        }
        let mut merged = Replica::new(hub());
        for replica in &replicas {
            merged.merge(replica).expect("same hub, no conflicts");
        }
        prop_assert_eq!(merged.to_bytes(), whole.to_bytes());
        // Merging again changes nothing.
        let again = merged.clone();
        merged.merge(&again).expect("idempotent");
        prop_assert_eq!(merged.to_bytes(), whole.to_bytes());
    }

    #[test]
    fn a_delta_brings_a_peer_holding_a_subset_to_the_same_bytes(
        steps in prop::collection::vec(step(), 1..24),
        held in prop::collection::vec(any::<bool>(), 24),
    ) {
        let events = parse(&history(&steps));
        let full = ingest_all(&events);
        let mut peer = ingest_all(events.iter().zip(&held).filter(|(_, h)| **h).map(|(e, _)| e));
        // The context holds the peer's events, no more.
        prop_assert_eq!(peer.context().events(), peer.event_count());
        let delta = full.delta_since(&peer.context());
        prop_assert_eq!(delta.event_count(), full.event_count() - peer.event_count());
        peer.apply_delta(&delta).expect("same hub");
        prop_assert_eq!(peer.to_bytes(), full.to_bytes());
        prop_assert_eq!(peer.context().events(), full.event_count());
        // Nothing left to send, and a second apply changes nothing.
        prop_assert_eq!(full.delta_since(&peer.context()).event_count(), 0);
        peer.apply_delta(&delta).expect("same hub");
        prop_assert_eq!(peer.to_bytes(), full.to_bytes());
    }
}

/// What the hub holds of one twin in [`hub_model`]: its tags, desired
/// properties and version.
#[derive(Clone, Debug, Default, PartialEq)]
struct ModelTwin {
    tags: serde_json::Map<String, serde_json::Value>,
    desired: serde_json::Map<String, serde_json::Value>,
    version: u64,
}

/// A device as the hub holds it: its twin and its modules'.
#[derive(Clone, Debug, Default, PartialEq)]
struct ModelDevice {
    twin: ModelTwin,
    modules: std::collections::BTreeMap<String, ModelTwin>,
}

/// A parked event as [`Replica::gaps`] names it: device, module, op,
/// version and what it waits for.
type ModelGap = (String, Option<String>, String, u64, &'static str);

/// Sets or (a `null`) removes each key of `patch` in `section`: the
/// generated patches are one level deep.
fn patch_section(
    section: &mut serde_json::Map<String, serde_json::Value>,
    patch: &serde_json::Value,
) {
    for (key, value) in patch.as_object().into_iter().flatten() {
        if key == "$metadata" {
            continue;
        }
        if value.is_null() {
            section.remove(key);
        } else {
            section.insert(key.clone(), value.clone());
        }
    }
}

/// The hub's devices after the event `lines` in its order, and the
/// events that never took effect (a change of a device or module not
/// alive at its time), worked out without the replica: a create starts
/// afresh, a delete ends the device and its modules (or the module), a
/// `replaceTwin` replaces the sections it gives, an `updateTwin` patches.
fn hub_model(
    lines: &[String],
) -> (
    std::collections::BTreeMap<String, ModelDevice>,
    Vec<ModelGap>,
) {
    let mut devices = std::collections::BTreeMap::new();
    let mut gaps = Vec::new();
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("generated JSON");
        let props = &v["properties"];
        let body = &v["body"];
        let device = props["deviceId"].as_str().unwrap_or_default().to_owned();
        let module = props["moduleId"].as_str().map(str::to_owned);
        let op = props["opType"].as_str().unwrap_or_default();
        let version = body["version"].as_u64().unwrap_or(0);
        let gap = |waits_for| {
            (
                device.clone(),
                module.clone(),
                op.to_owned(),
                version,
                waits_for,
            )
        };
        match (op, &module) {
            ("createDeviceIdentity", _) => {
                let mut twin = ModelTwin {
                    version,
                    ..ModelTwin::default()
                };
                patch_section(&mut twin.tags, &body["tags"]);
                devices.insert(
                    device,
                    ModelDevice {
                        twin,
                        modules: std::collections::BTreeMap::new(),
                    },
                );
            }
            ("deleteDeviceIdentity", _) => {
                devices.remove(&device);
            }
            (_, None) => {
                let Some(d) = devices.get_mut(&device) else {
                    gaps.push(gap("createDeviceIdentity"));
                    continue;
                };
                if op == "replaceTwin" {
                    d.twin.tags.clear();
                    d.twin.desired.clear();
                }
                patch_section(&mut d.twin.tags, &body["tags"]);
                patch_section(&mut d.twin.desired, &body["properties"]["desired"]);
                d.twin.version = version;
            }
            (_, Some(m)) => {
                let Some(d) = devices.get_mut(&device) else {
                    if op != "deleteModuleIdentity" {
                        gaps.push(gap("createDeviceIdentity"));
                    }
                    continue;
                };
                match op {
                    "createModuleIdentity" => {
                        let twin = ModelTwin {
                            version,
                            ..ModelTwin::default()
                        };
                        d.modules.insert(m.clone(), twin);
                    }
                    "deleteModuleIdentity" => {
                        d.modules.remove(m);
                    }
                    _ => match d.modules.get_mut(m) {
                        Some(twin) => {
                            patch_section(&mut twin.desired, &body["properties"]["desired"]);
                            twin.version = version;
                        }
                        None => gaps.push(gap("createModuleIdentity")),
                    },
                }
            }
        }
    }
    gaps.sort();
    (devices, gaps)
}

/// Checks `replica`'s devices, gaps and state file's version vectors
/// against the hub's (see [`hub_model`]).
fn matches_the_hub(
    replica: &Replica,
    devices: &std::collections::BTreeMap<String, ModelDevice>,
    gaps: &[ModelGap],
) -> Result<(), TestCaseError> {
    let state: serde_json::Value =
        serde_json::from_slice(&replica.to_bytes()).expect("the state file is JSON");
    for line in state["devices"].as_array().into_iter().flatten() {
        let id = line["id"].as_str().unwrap_or_default();
        let model = devices.get(id);
        let device = replica.device(id);
        prop_assert_eq!(device.is_some(), model.is_some(), "device {} exists", id);
        let (Some(device), Some(model)) = (device, model) else {
            prop_assert!(line.get("version").is_none() && line.get("modules").is_none());
            continue;
        };
        let snapshot = &device.snapshot;
        prop_assert_eq!(&snapshot.device.tags, &model.twin.tags, "{} tags", id);
        prop_assert_eq!(
            &snapshot.device.desired,
            &model.twin.desired,
            "{} desired",
            id
        );
        prop_assert_eq!(
            device.meta.version,
            Some(model.twin.version),
            "{} version",
            id
        );
        prop_assert_eq!(&line["version"], &json!(model.twin.version));
        let mut versions = serde_json::Map::new();
        prop_assert_eq!(
            snapshot.modules.keys().collect::<Vec<_>>(),
            model.modules.keys().collect::<Vec<_>>()
        );
        for (m, twin) in &model.modules {
            let entity = snapshot.modules.get(m).expect("compared above");
            prop_assert_eq!(&entity.desired, &twin.desired, "{}/{} desired", id, m);
            prop_assert!(entity.tags.is_empty());
            let meta = device.modules.get(m).and_then(|meta| meta.version);
            prop_assert_eq!(meta, Some(twin.version), "{}/{} version", id, m);
            versions.insert(m.clone(), json!(twin.version));
        }
        prop_assert_eq!(&line["modules"], &serde_json::Value::Object(versions));
    }
    let mut found: Vec<ModelGap> = replica
        .gaps()
        .into_iter()
        .map(|g| (g.device, g.module, g.op, g.version, g.waits_for))
        .collect();
    found.sort();
    prop_assert_eq!(found, gaps.to_vec());
    Ok(())
}

proptest! {
    /// Replay derives what the hub holds: a history in the hub's order,
    /// ingested in any order (the laws above), gives the devices, modules,
    /// versions and gaps the hub's own sequence of changes gives, and the
    /// state file's version vectors are those devices' versions;
    /// compacted, the same.
    #[test]
    fn replay_gives_what_the_hub_holds(
        steps in prop::collection::vec(step(), 1..32),
    ) {
        let lines = history(&steps);
        let (devices, gaps) = hub_model(&lines);
        let replica = ingest_all(&parse(&lines));
        matches_the_hub(&replica, &devices, &gaps)?;
        let mut compacted = replica.clone();
        compacted.compact();
        matches_the_hub(&compacted, &devices, &gaps)?;
    }
}

fn event(op: &str, device: &str, second: i64, id: &str, body: serde_json::Value) -> Event {
    let line = json!({
        "properties": {"deviceId": device, "opType": op, "operationTimestamp": time(T0 + 1000 * second)},
        "systemProperties": {"correlation-id": id},
        "body": body,
    })
    .to_string();
    parse_event_line("e.jsonl", 1, &line).expect("valid event")
}

#[test]
fn an_older_patch_arriving_late_does_not_overwrite_a_newer_one() {
    let create = event("createDeviceIdentity", "d", 0, "a", json!({"version": 1}));
    let newer = event(
        "updateTwin",
        "d",
        2,
        "c",
        json!({"version": 5, "properties": {"desired": {"fan": 5}}}),
    );
    let older = event(
        "updateTwin",
        "d",
        1,
        "b",
        json!({"version": 2, "properties": {"desired": {"fan": 2, "mode": "eco"}}}),
    );
    let replica = ingest_all([&create, &newer, &older]);
    let device = replica.device("d").expect("exists");
    assert_eq!(device.snapshot.device.desired["fan"], 5);
    assert_eq!(device.snapshot.device.desired["mode"], "eco");
    assert_eq!(device.meta.version, Some(5));
}

#[test]
fn a_dropped_create_parks_its_device_until_it_arrives_late() {
    let create = event(
        "createDeviceIdentity",
        "d",
        0,
        "a",
        json!({"version": 1, "tags": {"t": 1}}),
    );
    let update = event(
        "updateTwin",
        "d",
        1,
        "b",
        json!({"version": 2, "properties": {"desired": {"fan": 2}}}),
    );
    let line = json!({
        "properties": {"deviceId": "d", "moduleId": "m", "opType": "createModuleIdentity", "operationTimestamp": time(T0 + 2000)},
        "systemProperties": {"correlation-id": "c"},
        "body": {"version": 1},
    });
    let module_create = parse_event_line("e.jsonl", 1, &line.to_string()).expect("valid event");
    let other = event("createDeviceIdentity", "e", 0, "e1", json!({"version": 1}));

    let mut replica = Replica::new(hub());
    assert_eq!(replica.ingest(other.clone()).ok(), Some(Ingested::Applied));
    assert_eq!(replica.ingest(update.clone()).ok(), Some(Ingested::Parked));
    assert_eq!(
        replica.ingest(module_create.clone()).ok(),
        Some(Ingested::Parked)
    );
    let gaps = replica.gaps();
    assert_eq!(gaps.len(), 2);
    assert!(
        gaps.iter()
            .all(|g| g.device == "d" && g.waits_for == "createDeviceIdentity")
    );
    assert!(
        replica.device("d").is_none(),
        "nothing of a parked device is applied"
    );
    assert!(replica.device("e").is_some());

    assert_eq!(replica.ingest(create.clone()).ok(), Some(Ingested::Applied));
    assert!(replica.gaps().is_empty());
    let device = replica.device("d").expect("exists once created");
    assert_eq!(device.snapshot.device.desired["fan"], 2);
    assert!(device.snapshot.modules.contains_key("m"));
    let in_order = ingest_all([&other, &create, &update, &module_create]);
    assert_eq!(replica.to_bytes(), in_order.to_bytes());
}

#[test]
fn a_delete_ends_the_device_and_a_re_create_inherits_nothing() {
    let events = [
        event(
            "createDeviceIdentity",
            "d",
            0,
            "a",
            json!({"version": 1, "tags": {"old": 1}}),
        ),
        event(
            "updateTwin",
            "d",
            1,
            "b",
            json!({"version": 2, "properties": {"desired": {"fan": 2}}}),
        ),
        event("deleteDeviceIdentity", "d", 2, "c", json!({"version": 2})),
        event(
            "createDeviceIdentity",
            "d",
            3,
            "d",
            json!({"version": 1, "tags": {"new": 1}}),
        ),
    ];
    let replica = ingest_all(events.iter().rev());
    let device = replica.device("d").expect("re-created");
    assert_eq!(
        device.snapshot.device.tags,
        json!({"new": 1}).as_object().cloned().unwrap_or_default()
    );
    assert!(device.snapshot.device.desired.is_empty());
    let deleted = ingest_all(events.iter().take(3));
    assert!(deleted.device("d").is_none());
    assert!(deleted.gaps().is_empty());
}

#[test]
fn a_null_in_a_patch_removes_the_property() {
    let replica = ingest_all(&[
        event(
            "createDeviceIdentity",
            "d",
            0,
            "a",
            json!({"version": 1, "properties": {"desired": {"a": 1, "b": {"c": 1, "d": 2}}}}),
        ),
        event(
            "updateTwin",
            "d",
            1,
            "b",
            json!({"version": 2, "properties": {"desired": {"a": null, "b": {"c": null}}}}),
        ),
    ]);
    let device = replica.device("d").expect("exists");
    assert_eq!(
        serde_json::Value::Object(device.snapshot.device.desired.into()),
        json!({"b": {"d": 2}})
    );
}

/// An event of module `module` of `device` (see [`event`]).
fn module_event(
    op: &str,
    device: &str,
    module: &str,
    second: i64,
    id: &str,
    body: serde_json::Value,
) -> Event {
    let line = json!({
        "properties": {"deviceId": device, "moduleId": module, "opType": op, "operationTimestamp": time(T0 + 1000 * second)},
        "systemProperties": {"correlation-id": id},
        "body": body,
    })
    .to_string();
    parse_event_line("e.jsonl", 1, &line).expect("valid event")
}

fn object(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// `replica`'s device `d`, the same once compacted.
fn compacted_alike(replica: &Replica, id: &str) -> failback::format::DeviceRecord {
    let device = replica.device(id).expect("exists");
    let mut compacted = replica.clone();
    compacted.compact();
    assert_eq!(compacted.device(id).as_ref(), Some(&device), "compacted");
    device
}

#[test]
fn a_replace_twin_replaces_the_sections_it_gives_and_keeps_the_others() {
    let create = event(
        "createDeviceIdentity",
        "d",
        0,
        "a",
        json!({"version": 1, "tags": {"site": "lyon", "floor": 1},
            "properties": {"desired": {"fan": 1, "mode": "eco"}, "reported": {"temp": 20}}}),
    );
    let tags_and_desired = event(
        "replaceTwin",
        "d",
        1,
        "b",
        json!({"version": 2, "tags": {"site": "paris"}, "properties": {"desired": {"light": true}}}),
    );
    let reported = event(
        "replaceTwin",
        "d",
        2,
        "c",
        json!({"version": 3, "properties": {"reported": {"hum": 40}}}),
    );
    let replica = ingest_all([&create, &tags_and_desired]);
    let d = compacted_alike(&replica, "d");
    assert_eq!(d.snapshot.device.tags, object(json!({"site": "paris"})));
    assert_eq!(d.snapshot.device.desired, object(json!({"light": true})));
    assert_eq!(d.snapshot.device.reported, object(json!({"temp": 20})));
    let replica = ingest_all([&create, &tags_and_desired, &reported]);
    let d = compacted_alike(&replica, "d");
    assert_eq!(d.snapshot.device.tags, object(json!({"site": "paris"})));
    assert_eq!(d.snapshot.device.desired, object(json!({"light": true})));
    assert_eq!(d.snapshot.device.reported, object(json!({"hum": 40})));
    assert_eq!(d.meta.version, Some(3));
}

#[test]
fn changes_at_or_below_their_creates_version_are_in_it_and_changes_without_one_apply() {
    let create = event(
        "createDeviceIdentity",
        "d",
        0,
        "a",
        json!({"version": 3, "properties": {"desired": {"fan": 3}}}),
    );
    let same = event(
        "updateTwin",
        "d",
        1,
        "b",
        json!({"version": 3, "properties": {"desired": {"fan": 30}}}),
    );
    let older = event(
        "updateTwin",
        "d",
        2,
        "c",
        json!({"version": 2, "properties": {"desired": {"fan": 2, "mode": "eco"}}}),
    );
    let unversioned = event(
        "updateTwin",
        "d",
        3,
        "e",
        json!({"properties": {"desired": {"light": 1}}}),
    );
    let replica = ingest_all([&create, &same, &older, &unversioned]);
    let d = compacted_alike(&replica, "d");
    assert_eq!(
        d.snapshot.device.desired,
        object(json!({"fan": 3, "light": 1}))
    );
    assert_eq!(d.meta.version, Some(3));
    // Over a create without a version, and with none at all.
    let bare = event("createDeviceIdentity", "e", 0, "f", json!({}));
    let change = event(
        "updateTwin",
        "e",
        1,
        "g",
        json!({"properties": {"desired": {"light": 1}}}),
    );
    let replica = ingest_all([&bare, &change]);
    let e = compacted_alike(&replica, "e");
    assert_eq!(e.snapshot.device.desired, object(json!({"light": 1})));
    assert_eq!(e.meta.version, None);
}

/// Compaction folds only changes with a version (a fold names its
/// changes by version): one without stays an event, and a later one
/// without a version is a new change, not taken for a folded one.
#[test]
fn changes_without_a_version_stay_events_through_compaction() {
    let create = event("createDeviceIdentity", "d", 0, "a", json!({"version": 1}));
    let first = event(
        "updateTwin",
        "d",
        1,
        "b",
        json!({"properties": {"desired": {"light": 1}}}),
    );
    let mut replica = ingest_all([&create, &first]);
    assert_eq!(replica.compact(), 0);
    assert_eq!(replica.event_count(), 2);
    let second = event(
        "updateTwin",
        "d",
        2,
        "c",
        json!({"properties": {"desired": {"light": 2}}}),
    );
    assert_eq!(replica.ingest(second), Ok(Ingested::Applied));
    let d = replica.device("d").expect("exists");
    assert_eq!(d.snapshot.device.desired, object(json!({"light": 2})));
}

/// A replica ignores connection-state events, and so does its state
/// file's reader: one there (a state file never holds one) is dropped
/// whatever dot is written beside it, not checked as a change's dot.
#[test]
fn a_connection_event_in_a_state_file_is_ignored() {
    let create = event("createDeviceIdentity", "d", 0, "a", json!({"version": 1}));
    let replica = ingest_all([&create]);
    let text = String::from_utf8(replica.to_bytes()).expect("utf-8");
    let connected = json!({
        "dot": "id:not-its-own",
        "event": {
            "properties": {"deviceId": "d", "opType": "deviceConnected", "operationTimestamp": time(T0 + 1000)},
            "systemProperties": {"correlation-id": "x"},
            "body": {},
        },
    });
    let from = r#""events":["#;
    assert!(text.contains(from), "{from} not in {text}");
    let edited = text.replacen(from, &format!("{from}{connected},"), 1);
    let back = read_state(edited.as_bytes(), "s.json").expect("the event is ignored");
    assert_eq!(back.to_bytes(), replica.to_bytes());
}

#[test]
fn a_re_created_device_takes_the_changes_of_its_new_incarnation() {
    let events = [
        event("createDeviceIdentity", "d", 0, "a", json!({"version": 1})),
        event(
            "updateTwin",
            "d",
            1,
            "b",
            json!({"version": 2, "properties": {"desired": {"old": 1}}}),
        ),
        event("deleteDeviceIdentity", "d", 2, "c", json!({})),
        event("createDeviceIdentity", "d", 3, "d", json!({"version": 1})),
        event(
            "updateTwin",
            "d",
            4,
            "e",
            json!({"version": 2, "properties": {"desired": {"new": 1}}}),
        ),
    ];
    let replica = ingest_all(events.iter().rev());
    let d = compacted_alike(&replica, "d");
    assert_eq!(d.snapshot.device.desired, object(json!({"new": 1})));
    assert_eq!(d.meta.version, Some(2));
    assert!(replica.gaps().is_empty());
}

#[test]
fn a_re_created_module_takes_only_its_new_incarnations_changes() {
    let events = [
        event("createDeviceIdentity", "d", 0, "a", json!({"version": 1})),
        module_event(
            "createModuleIdentity",
            "d",
            "m",
            1,
            "b",
            json!({"version": 1}),
        ),
        module_event(
            "updateTwin",
            "d",
            "m",
            2,
            "c",
            json!({"version": 2, "properties": {"desired": {"old": 1}}}),
        ),
        module_event("deleteModuleIdentity", "d", "m", 3, "e", json!({})),
        module_event(
            "createModuleIdentity",
            "d",
            "m",
            4,
            "f",
            json!({"version": 1}),
        ),
        module_event(
            "updateTwin",
            "d",
            "m",
            5,
            "g",
            json!({"version": 2, "properties": {"desired": {"new": 1}}}),
        ),
    ];
    let replica = ingest_all(events.iter().rev());
    let d = compacted_alike(&replica, "d");
    let m = d.snapshot.modules.get("m").expect("re-created");
    assert_eq!(m.desired, object(json!({"new": 1})));
    assert_eq!(d.modules.get("m").and_then(|m| m.version), Some(2));
    assert!(replica.gaps().is_empty());
}

/// An export gives no times: compacted, its device's twin has none
/// either where no change wrote, and keeps the export's keys.
#[test]
fn an_export_seed_without_times_compacts_to_the_same_device() {
    let mut record = failback::format::DeviceRecord::default();
    record.snapshot.id = "x".to_owned();
    record.snapshot.device.desired = object(json!({"a": {"b": 1}, "c": 1})).into();
    // Its keys, which no event carries, are the seed's.
    let keys = Authentication::sas(
        Secret::new("cHJpbWFyeQAAAAAAAAAAAA=="),
        Secret::new("c2Vjb25kYXJ5AAAAAAAAAA=="),
    );
    record.snapshot.device.authentication = Some(keys.clone());
    let mut replica = Replica::new(hub());
    assert_eq!(replica.seed(Seed::from_export(&record)), Ok(true));
    let change = event(
        "updateTwin",
        "x",
        1,
        "u",
        json!({"version": 2, "properties": {"desired": {"d": 1}}}),
    );
    assert_eq!(replica.ingest(change), Ok(Ingested::Applied));
    let d = compacted_alike(&replica, "x");
    assert_eq!(
        d.snapshot.device.desired,
        object(json!({"a": {"b": 1}, "c": 1, "d": 1}))
    );
    assert_eq!(d.snapshot.device.authentication, Some(keys));
}

#[test]
fn a_module_delete_with_no_device_to_end_waits_for_nothing() {
    let mut replica = Replica::new(hub());
    let orphan = module_event("deleteModuleIdentity", "d", "m", 1, "a", json!({}));
    assert_eq!(replica.ingest(orphan), Ok(Ingested::Applied));
    assert!(replica.gaps().is_empty(), "{:?}", replica.gaps());
    let text = String::from_utf8(replica.to_bytes()).expect("utf-8");
    assert!(text.contains(r#""parked":[]}"#), "{text}");
    // After its device's delete, the same.
    let create = event("createDeviceIdentity", "e", 0, "b", json!({"version": 1}));
    let delete = event("deleteDeviceIdentity", "e", 1, "c", json!({}));
    let late = module_event("deleteModuleIdentity", "e", "m", 2, "d", json!({}));
    let replica = ingest_all([&create, &delete, &late]);
    assert!(replica.gaps().is_empty(), "{:?}", replica.gaps());
}

/// A replica seeded from a twin file: device `d` at version 5 (twin
/// etag `AAAAAAAAAAE=`) and its module `m` at version 4.
fn seeded() -> Replica {
    let lines = concat!(
        r#"{"deviceId":"d","etag":"AAAAAAAAAAE=","version":5,"tags":{"site":"lyon"},"properties":{"desired":{"fan":5},"reported":{}}}"#,
        "\n",
        r#"{"deviceId":"d","moduleId":"m","etag":"AAAAAAAAAAI=","version":4,"properties":{"desired":{"x":4},"reported":{}}}"#,
        "\n",
    );
    let file = collect_twins(TwinReader::new(lines.as_bytes(), "twins.jsonl")).expect("twins");
    let mut replica = Replica::new(hub());
    for device in file.devices.values() {
        assert_eq!(replica.seed(Seed::from_twin(device)), Ok(true));
    }
    replica
}

/// What [`Replica::merge`] returns is what it added: each event, seed
/// and fold new to it, and a fold joined into its incarnation's; merging
/// what it holds adds nothing. [`Replica::folded_count`] counts the twin
/// versions folded.
#[test]
fn a_merge_counts_the_events_seeds_and_folds_it_adds() {
    let create = event("createDeviceIdentity", "d", 0, "a", json!({"version": 1}));
    let unversioned = event(
        "updateTwin",
        "d",
        1,
        "b",
        json!({"properties": {"desired": {"light": 1}}}),
    );
    let change = |v: i64| {
        event(
            "updateTwin",
            "d",
            v,
            &format!("u{v}"),
            json!({"version": v, "properties": {"desired": {"fan": v}}}),
        )
    };
    let mut replica = ingest_all([&create, &unversioned, &change(2), &change(3), &change(5)]);
    assert_eq!(replica.compact(), 3);
    assert_eq!(replica.folded_count(), 3);
    let mut peer = Replica::new(hub());
    // The create, the change without a version, the fold.
    assert_eq!(peer.merge(&replica), Ok(3));
    assert_eq!(peer.to_bytes(), replica.to_bytes());
    assert_eq!(peer.merge(&replica), Ok(0));
    // A fold of the same incarnation holding version 4 is joined in.
    let mut other = ingest_all([&create, &change(4)]);
    other.compact();
    assert_eq!(peer.merge(&other), Ok(1));
    assert_eq!(peer.folded_count(), 4);
    // A seed.
    let mut fresh = Replica::new(hub());
    assert_eq!(fresh.merge(&seeded()), Ok(1));
    assert_eq!(fresh.to_bytes(), seeded().to_bytes());
}

/// A device's creates and deletes are kept in time order whatever order
/// they arrive in: a change between a create and the next delete
/// belongs to the create's incarnation, so it applies; one between a
/// delete and the next create waits.
#[test]
fn a_change_between_a_create_and_its_delete_applies() {
    let life = [
        event("createDeviceIdentity", "d", 0, "a", json!({"version": 1})),
        event("deleteDeviceIdentity", "d", 2, "c", json!({})),
        event("createDeviceIdentity", "d", 4, "e", json!({"version": 1})),
    ];
    let change = |second: i64, id: &str| {
        event(
            "updateTwin",
            "d",
            second,
            id,
            json!({"version": 2, "properties": {"desired": {"fan": second}}}),
        )
    };
    for arrival in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let mut replica = Replica::new(hub());
        for i in arrival {
            replica.ingest(life[i].clone()).expect("new");
        }
        assert_eq!(replica.ingest(change(1, "b")), Ok(Ingested::Applied));
        assert_eq!(replica.ingest(change(3, "d")), Ok(Ingested::Parked));
        assert_eq!(replica.ingest(change(5, "f")), Ok(Ingested::Applied));
    }
}

/// A seeded replica's state file, as [`Replica::write`] writes it, is
/// its bytes, and reads back: a seed of a device and its module is two
/// lines, kept apart.
#[test]
fn a_seeded_replica_writes_its_state_file_and_reads_it_back() {
    let replica = seeded();
    let mut out = Vec::new();
    replica.write(&mut out).expect("to a Vec");
    assert_eq!(out, replica.to_bytes());
    let text = String::from_utf8(out).expect("utf-8");
    assert!(text.contains(r#""lines":[{"#), "{text}");
    let back = read_state(text.as_bytes(), "s.json").expect("reads back");
    assert!(back == replica);
    assert_eq!(back.device("d"), replica.device("d"));
}

/// A delta carries a seed the peer holds from another snapshot (seeds
/// are told apart by digest), so applying it is refused as merging would
/// be; a peer seeded alike is sent nothing.
#[test]
fn a_delta_carries_a_seed_the_peer_holds_from_another_snapshot() {
    let mine = seeded();
    let other = r#"{"deviceId":"d","etag":"AAAAAAAAAAM=","version":6,"properties":{"desired":{"fan":6},"reported":{}}}"#;
    let file = collect_twins(TwinReader::new(other.as_bytes(), "other.jsonl")).expect("twins");
    let mut peer = Replica::new(hub());
    for device in file.devices.values() {
        assert_eq!(peer.seed(Seed::from_twin(device)), Ok(true));
        // Seeded again alike, nothing changes; from another snapshot, refused.
        assert_eq!(peer.seed(Seed::from_twin(device)), Ok(false));
        assert_eq!(
            mine.clone().seed(Seed::from_twin(device)),
            Err(ReplicaError::SeedConflict {
                device: "d".to_owned()
            })
        );
    }
    let delta = mine.delta_since(&peer.context());
    assert_eq!(
        peer.apply_delta(&delta),
        Err(ReplicaError::SeedConflict {
            device: "d".to_owned()
        })
    );
    let alike = seeded();
    let delta = mine.delta_since(&alike.context());
    assert_eq!(delta, Replica::new(hub()));
}

#[test]
fn a_seeded_device_is_its_seed_until_changes_newer_than_the_seed_come() {
    let mut replica = seeded();
    let d = replica.device("d").expect("seeded");
    assert_eq!(d.snapshot.device.tags, object(json!({"site": "lyon"})));
    assert_eq!(d.snapshot.device.desired, object(json!({"fan": 5})));
    assert_eq!(d.meta.version, Some(5));
    assert_eq!(d.meta.twin_etag.as_deref(), Some("AAAAAAAAAAE="));
    let m = d.modules.get("m").expect("the seed's module");
    assert_eq!(m.version, Some(4));
    assert_eq!(m.twin_etag.as_deref(), Some("AAAAAAAAAAI="));
    let entity = d.snapshot.modules.get("m").expect("the seed's module");
    assert_eq!(entity.desired, object(json!({"x": 4})));

    // Changes at or below the seed's versions are in it already.
    let changes = [
        event(
            "updateTwin",
            "d",
            1,
            "a",
            json!({"version": 4, "properties": {"desired": {"fan": 4, "old": 1}}}),
        ),
        event(
            "updateTwin",
            "d",
            2,
            "b",
            json!({"version": 6, "properties": {"desired": {"mode": "eco"}}}),
        ),
        module_event(
            "updateTwin",
            "d",
            "m",
            3,
            "c",
            json!({"version": 4, "properties": {"desired": {"x": 40}}}),
        ),
        module_event(
            "updateTwin",
            "d",
            "m",
            4,
            "e",
            json!({"version": 5, "properties": {"desired": {"y": 5}}}),
        ),
    ];
    for change in changes {
        assert_eq!(replica.ingest(change), Ok(Ingested::Applied));
    }
    let d = compacted_alike(&replica, "d");
    assert_eq!(d.snapshot.device.tags, object(json!({"site": "lyon"})));
    assert_eq!(
        d.snapshot.device.desired,
        object(json!({"fan": 5, "mode": "eco"}))
    );
    assert_eq!(d.meta.version, Some(6));
    assert_eq!(d.meta.twin_etag.as_deref(), Some("AAAAAAAAAAE="));
    let entity = d.snapshot.modules.get("m").expect("the seed's module");
    assert_eq!(entity.desired, object(json!({"x": 4, "y": 5})));
    assert_eq!(d.modules.get("m").and_then(|m| m.version), Some(5));
    let text = String::from_utf8(replica.to_bytes()).expect("utf-8");
    assert!(
        text.contains(r#""parked":[],"version":6,"modules":{"m":5}}"#),
        "{text}"
    );
}

#[test]
fn a_seeded_module_is_not_in_its_devices_next_incarnation() {
    let mut replica = seeded();
    let delete = event("deleteDeviceIdentity", "d", 1, "a", json!({}));
    let create = event("createDeviceIdentity", "d", 2, "b", json!({"version": 1}));
    assert_eq!(replica.ingest(delete), Ok(Ingested::Applied));
    assert_eq!(replica.ingest(create), Ok(Ingested::Applied));
    let change = module_event(
        "updateTwin",
        "d",
        "m",
        3,
        "c",
        json!({"version": 5, "properties": {"desired": {"y": 5}}}),
    );
    assert_eq!(replica.ingest(change), Ok(Ingested::Parked));
    for _ in 0..2 {
        let gaps = replica.gaps();
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert_eq!(gaps[0].module.as_deref(), Some("m"));
        assert_eq!(gaps[0].waits_for, "createModuleIdentity");
        let d = replica.device("d").expect("re-created");
        assert!(d.snapshot.modules.is_empty());
        // Compaction folds no parked change.
        replica.compact();
    }
}

#[test]
fn the_same_id_with_another_payload_is_refused_and_changes_nothing() {
    let first = event(
        "updateTwin",
        "d",
        1,
        "x",
        json!({"version": 2, "tags": {"a": 1}}),
    );
    let other = event(
        "updateTwin",
        "d",
        1,
        "x",
        json!({"version": 2, "tags": {"a": 2}}),
    );
    let mut replica = ingest_all([&first]);
    let before = replica.to_bytes();
    assert!(matches!(
        replica.ingest(other.clone()),
        Err(ReplicaError::Conflict { .. })
    ));
    assert_eq!(replica.to_bytes(), before);
    let mut theirs = ingest_all([&other]);
    assert!(theirs.merge(&replica).is_err());
    assert_eq!(theirs.to_bytes(), ingest_all([&other]).to_bytes());
}

// The command line, end to end.

fn failback(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_failback"))
        .args(args)
        .output()
        .expect("runs")
}

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/events/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn scratch(name: &str) -> PathBuf {
    crate::common::scratch("ingest", name)
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn ingest(state: &Path, files: &[&str]) -> Output {
    let state = state.display().to_string();
    let mut args = vec!["ingest", "--hub", "primary", "--state", state.as_str()];
    args.extend(files);
    failback(&args)
}

#[test]
fn cli_a_retransmitted_delivery_gives_the_same_state_and_counts_duplicates() {
    let dir = scratch("retransmitted");
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    let out = ingest(&a, &[&fixture("stream.jsonl")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("applied      10\n"), "{shown}");
    assert!(shown.contains("parked       1\n"), "{shown}");
    assert!(shown.contains("gaps         0 (0 devices)\n"), "{shown}");
    assert!(shown.contains("connection events ignored 1\n"), "{shown}");
    let out = ingest(&b, &[&fixture("retransmitted.jsonl")]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("duplicates   8\n"));
    assert_eq!(std::fs::read(&a).ok(), std::fs::read(&b).ok());
    // Ingesting the same again changes nothing.
    let before = std::fs::read(&a).ok();
    let out = ingest(&a, &[&fixture("retransmitted.jsonl")]);
    assert!(text(&out.stdout).contains("applied      0\n"));
    assert_eq!(std::fs::read(&a).ok(), before);
}

#[test]
fn cli_a_gap_is_reported_and_filled_by_the_late_create() {
    let dir = scratch("gap");
    let (full, gap) = (dir.join("full.json"), dir.join("gap.json"));
    assert!(ingest(&full, &[&fixture("stream.jsonl")]).status.success());
    let out = ingest(&gap, &[&fixture("missing-create.jsonl")]);
    assert!(out.status.success());
    let shown = text(&out.stdout);
    assert!(shown.contains("gaps         1 (1 devices)\n"), "{shown}");
    assert!(shown.contains("gap: device \"pump-2\": replaceTwin version 4 (id:c-012) waits for createDeviceIdentity"), "{shown}");
    let state = std::fs::read_to_string(&gap).unwrap_or_default();
    assert!(
        state.contains("\"parked\":[\"id:c-012\"]"),
        "the state file lists what is parked"
    );
    let out = ingest(&gap, &[&fixture("late-create.jsonl")]);
    assert!(text(&out.stdout).contains("gaps         0 (0 devices)\n"));
    assert_eq!(std::fs::read(&gap).ok(), std::fs::read(&full).ok());
}

#[test]
fn cli_refused_lines_are_named_exit_2_and_leave_the_state_as_it_was() {
    let dir = scratch("refused");
    let state = dir.join("s.json");
    assert!(ingest(&state, &[&fixture("stream.jsonl")]).status.success());
    let before = std::fs::read(&state).ok();
    let out = ingest(
        &state,
        &[
            &fixture("conflicting-id.jsonl"),
            &fixture("unknown-optype.jsonl"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains("rejected     2\n"));
    let errors = text(&out.stderr);
    assert!(errors.contains("conflicting-id.jsonl:1: device \"thermo-1\" field \"systemProperties.correlation-id\": event id \"c-002\" arrived before with another payload"), "{errors}");
    assert!(errors.contains("unknown-optype.jsonl:2: device \"thermo-1\" field \"properties.opType\": unknown opType \"renameDevice\""), "{errors}");
    assert_eq!(std::fs::read(&state).ok(), before);
    // A fresh state is not even created.
    let fresh = dir.join("fresh.json");
    assert_eq!(
        ingest(&fresh, &[&fixture("unknown-optype.jsonl")])
            .status
            .code(),
        Some(2)
    );
    assert!(!fresh.exists());
}

#[test]
fn cli_replicating_by_delta_gives_the_peer_the_same_bytes() {
    let dir = scratch("delta");
    let (a, b, delta) = (
        dir.join("a.json"),
        dir.join("b.json"),
        dir.join("delta.json"),
    );
    assert!(ingest(&a, &[&fixture("stream.jsonl")]).status.success());
    assert!(
        ingest(&b, &[&fixture("missing-create.jsonl")])
            .status
            .success()
    );
    let (a_s, b_s, d_s) = (
        a.display().to_string(),
        b.display().to_string(),
        delta.display().to_string(),
    );
    let out = failback(&[
        "replica", "delta", "--state", &a_s, "--since", &b_s, "--out", &d_s,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("delta: 1 events"));
    for _ in 0..2 {
        let out = failback(&["replica", "apply", "--state", &b_s, &d_s]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(std::fs::read(&a).ok(), std::fs::read(&b).ok());
    }
}

/// `failback merge` of `base.jsonl` with the primary's replica `state`
/// and the secondary's export, into `out`.
fn merge_primary_state(state: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "merge".to_owned(),
        "--base".to_owned(),
        fixture("base.jsonl"),
        "--hub".to_owned(),
        format!("primary={}", state.display()),
        "--hub".to_owned(),
        format!("secondary={}", fixture("secondary.jsonl")),
        "--as-of".to_owned(),
        "secondary=2024-03-01T12:00:30Z".to_owned(),
        "--max-drift".to_owned(),
        "1000000h".to_owned(),
        "--out".to_owned(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    failback(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `failback ingest --compact 1` of the primary's events over the
/// devices of `base.jsonl`, into `state`.
fn ingest_primary_compacted(state: &Path) -> Output {
    failback(&[
        "ingest",
        "--hub",
        "primary",
        "--compact",
        "1",
        "--state",
        &state.display().to_string(),
        "--from",
        &fixture("base.jsonl"),
        &fixture("primary-events.jsonl"),
    ])
}

/// The text of gzip `bytes`.
fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut text)
        .expect("gzip");
    text
}

/// A state file named `.gz` is written gzip-compressed: the plain file's
/// bytes through gzip, private, the same bytes each time; every command
/// reads it whatever its name (`ingest`, `replica delta` and `apply`,
/// `merge`), and a file cut short is refused by name, exit 2, the state
/// left as it was.
#[test]
fn cli_a_state_file_named_gz_is_written_compressed_and_read_either_way() {
    let dir = scratch("gzip");
    let (plain, gz) = (dir.join("primary.json"), dir.join("primary.json.gz"));
    for state in [&plain, &gz] {
        let out = ingest_primary_compacted(state);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let (plain_bytes, gz_bytes) = (
        std::fs::read(&plain).unwrap_or_default(),
        std::fs::read(&gz).unwrap_or_default(),
    );
    assert!(gz_bytes.starts_with(&[0x1f, 0x8b]), "gzip");
    assert_eq!(gunzip(&gz_bytes), plain_bytes);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&gz).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600), "seeds hold keys");
    }
    // Ingested again (all duplicates): read compressed, the same bytes.
    let out = ingest(&gz, &[&fixture("primary-events.jsonl")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&gz).ok(), Some(gz_bytes.clone()));

    // Merged, the compressed state gives the plain one's outputs.
    let merged = |state: &Path, name: &str| {
        let out_dir = dir.join(name);
        let out = merge_primary_state(state, &out_dir, &["--allow-new-keys"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        std::fs::read(out_dir.join("merged.jsonl")).unwrap_or_default()
    };
    let from_plain = merged(&plain, "out-plain");
    assert!(!from_plain.is_empty());
    assert_eq!(merged(&gz, "out-gz"), from_plain);

    // A delta from the compressed state, written compressed, applied to a
    // plain replica: the plain bytes.
    let (delta, peer) = (dir.join("delta.json.gz"), dir.join("peer.json"));
    let empty = dir.join("empty.json");
    std::fs::write(
        &empty,
        "{\"format\":\"failback-replica\",\"version\":1,\"hub\":\"primary\",\"devices\":[\n]}\n",
    )
    .expect("scratch");
    let path = |p: &Path| p.display().to_string();
    let out = failback(&[
        "replica",
        "delta",
        "--state",
        &path(&gz),
        "--since",
        &path(&empty),
        "--out",
        &path(&delta),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = failback(&["replica", "apply", "--state", &path(&peer), &path(&delta)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&peer).ok(), Some(plain_bytes));

    // Cut short: refused by name, exit 2, the state file as it was.
    let cut = dir.join("cut.json.gz");
    std::fs::write(&cut, gz_bytes.get(..gz_bytes.len() / 2).unwrap_or_default()).expect("scratch");
    let out = ingest(&cut, &[&fixture("primary-events.jsonl")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let shown = text(&out.stderr);
    assert!(
        shown.contains("cut.json.gz") && shown.contains("gzip"),
        "{shown}"
    );
    assert_eq!(shown.trim_end().lines().count(), 1, "{shown}");
    assert_eq!(
        std::fs::read(&cut).ok().map(|b| b.len()),
        Some(gz_bytes.len() / 2)
    );
    let out = merge_primary_state(&cut, &dir.join("out-cut"), &["--allow-new-keys"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let shown = text(&out.stderr);
    assert!(
        shown.contains("cut.json.gz") && shown.contains("gzip"),
        "{shown}"
    );
}

#[test]
fn cli_a_replica_state_merges_with_exports() {
    let dir = scratch("merge");
    let state = dir.join("primary.json");
    let s = state.display().to_string();
    let out = failback(&[
        "ingest",
        "--hub",
        "primary",
        "--state",
        &s,
        "--from",
        &fixture("base.jsonl"),
        &fixture("primary-events.jsonl"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("seeded       1 devices\n"));
    let out_dir = dir.join("out");
    let merge = |extra: &[&str]| merge_primary_state(&state, &out_dir, extra);
    // pump-2 was created by events, which carry no keys: creating it on
    // the secondary would give it new keys. Refused, naming it, until the
    // operator allows it.
    let out = merge(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(r#"secondary: device "pump-2" (create)"#),
        "{}",
        text(&out.stderr)
    );
    assert!(!out_dir.exists());
    let out = merge(&["--allow-new-keys"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let merged = std::fs::read_to_string(out_dir.join("merged.jsonl")).unwrap_or_default();
    let keys = r#""authentication":{"symmetricKey":{"primaryKey":"cHJpbWFyeS1rZXktMQAAAA==","secondaryKey":"c2Vjb25kYXJ5LWtleS0xAA=="},"x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"type":"sas"}"#;
    let expected = [
        r#"{"id":"pump-2","status":"disabled","statusReason":"maintenance","tags":{"line":"A"},"properties":{"desired":{},"reported":{}}}"#.to_owned(),
        format!(r#"{{"id":"sec-1","status":"enabled",{keys},"tags":{{}},"properties":{{"desired":{{"x":1}},"reported":{{}}}}}}"#),
        // The seed's keys kept; tags and desired merged leaf by leaf: the
        // primary's events (12:01) over the secondary's as-of (12:00:30).
        format!(r#"{{"id":"thermo-1","status":"enabled",{keys},"tags":{{"floor":2,"site":"lyon"}},"properties":{{"desired":{{"boost":true,"fan":3}},"reported":{{}}}}}}"#),
    ];
    assert_eq!(
        merged.lines().collect::<Vec<_>>(),
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    // The report names the state file as given, not a derived file.
    let report = std::fs::read_to_string(out_dir.join("report.json")).unwrap_or_default();
    assert!(report.contains("primary.json"), "{report}");

    // Compacted (by `replica compact`, or while ingesting), the state
    // merges to the same bytes.
    let out = failback(&["replica", "compact", "--state", &s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("twin versions folded"),
        "{}",
        text(&out.stdout)
    );
    let compacted = std::fs::read_to_string(&state).unwrap_or_default();
    assert!(compacted.starts_with(r#"{"format":"failback-replica","version":3,"#));
    let streamed = dir.join("streamed.json");
    let out = ingest_primary_compacted(&streamed);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&streamed).ok(), Some(compacted));
    std::fs::remove_dir_all(&out_dir).expect("the first merge's outputs");
    let out = merge(&["--allow-new-keys"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = std::fs::read_to_string(out_dir.join("merged.jsonl")).unwrap_or_default();
    assert_eq!(again, merged);
}

/// The committed seed files of fuzz target `target`, sorted.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the corpus is committed")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    seeds.sort();
    seeds
}

/// The law of the `parse_state` fuzz target, on its committed seeds
/// (state files of versions 1 and 3, seeded, with parked events, plain and
/// gzip): each reads to a replica whose state file reads back to it and
/// is a fixed point, and gzip changes nothing.
#[test]
fn the_parse_state_law_holds_on_its_seed_corpus() {
    use failback::replica::{write_state, write_state_gzip};
    let seeds = corpus("parse_state");
    assert!(seeds.len() >= 6);
    let written = |replica: &Replica| {
        let mut out = Vec::new();
        write_state(&mut out, replica).expect("to a Vec");
        out
    };
    let mut folded = 0;
    for seed in seeds {
        let data = std::fs::read(&seed).expect("readable");
        let replica = read_state(data.as_slice(), "seed.json")
            .unwrap_or_else(|e| panic!("{}: {e}", seed.display()));
        folded += replica.folded_count();
        let bytes = written(&replica);
        let again = read_state(bytes.as_slice(), "again.json").expect("its own state file");
        assert_eq!(again, replica, "{}", seed.display());
        assert_eq!(written(&again), bytes, "{}", seed.display());
        let mut gz = Vec::new();
        write_state_gzip(&mut gz, &replica).expect("to a Vec");
        let from_gz = read_state(gz.as_slice(), "again.json.gz").expect("its own gzip");
        assert_eq!(written(&from_gz), bytes, "{}", seed.display());
    }
    assert!(folded > 0, "the corpus holds compacted replicas");
}

/// The law of the `parse_events` fuzz target, on its committed seeds (the
/// fixtures, whole and line by line): every line an error on one line or
/// an event that round-trips canonically, and the replica's state file a
/// fixed point.
#[test]
fn the_parse_events_law_holds_on_its_seed_corpus() {
    use failback::format::{EventReader, write_event_line};
    let seeds = corpus("parse_events");
    assert!(seeds.len() >= 10);
    for seed in seeds {
        let data = std::fs::read(&seed).expect("readable");
        let mut replica = Replica::new(ReplicaId::new("fuzz").expect("valid"));
        for event in EventReader::new(data.as_slice(), "fuzz.jsonl") {
            let Ok(event) = event else {
                continue;
            };
            let mut written = Vec::new();
            write_event_line(&mut written, &event).expect("to a Vec");
            let text = String::from_utf8(written.clone()).expect("UTF-8");
            let again = parse_event_line("re.jsonl", event.line, text.trim_end())
                .unwrap_or_else(|e| panic!("{}: {e}", seed.display()));
            assert_eq!(again, event);
            let mut rewritten = Vec::new();
            write_event_line(&mut rewritten, &again).expect("to a Vec");
            assert_eq!(rewritten, written);
            let _ = replica.ingest(event);
        }
        let bytes = replica.to_bytes();
        let back = read_state(bytes.as_slice(), "state.json")
            .unwrap_or_else(|e| panic!("{}: {e}", seed.display()));
        assert!(back == replica);
        assert_eq!(back.to_bytes(), bytes);
    }
}

/// A state file from `stream.jsonl` whose first event's stored dot is
/// replaced by another: the file of a replica that never was.
fn forged_state(dir: &Path) -> (PathBuf, String) {
    let state = dir.join("forged.json");
    assert!(ingest(&state, &[&fixture("stream.jsonl")]).status.success());
    let text = std::fs::read_to_string(&state).expect("state written");
    let at = text.find(r#""dot":""#).expect("an event") + r#""dot":""#.len();
    let end = at + text[at..].find('"').expect("closing quote");
    let own = text[at..end].to_owned();
    let forged = format!("{}id:forged{}", &text[..at], &text[end..]);
    std::fs::write(&state, forged).expect("write");
    (state, own)
}

#[test]
fn a_state_file_whose_dot_is_not_its_events_is_refused_naming_both() {
    let dir = scratch("forged-dot");
    let (state, own) = forged_state(&dir);
    let bytes = std::fs::read(&state).unwrap();
    let err = read_state(bytes.as_slice(), "forged.json").unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "field \"dot\": not a replica state file: dot \"id:forged\" is not its event's dot \"{own}\""
        )),
        "{message}"
    );
    assert!(message.starts_with("forged.json:2: device \""), "{message}");
    // The command line refuses it too, exit 2, for ingest and for merge.
    let out = ingest(&state, &[&fixture("late-create.jsonl")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("\"id:forged\""),
        "{}",
        text(&out.stderr)
    );
    let other = dir.join("other.json");
    assert!(ingest(&other, &[&fixture("stream.jsonl")]).status.success());
    let (forged, other) = (state.display().to_string(), other.display().to_string());
    let out = failback(&[
        "merge",
        "--hub",
        &format!("primary={forged}"),
        "--hub",
        &format!("secondary={other}"),
        "--out",
        &dir.join("out").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("\"id:forged\""),
        "{}",
        text(&out.stderr)
    );
}

/// A JSON value shaped like a twin body, and often not quite one: the
/// fields a body may give, each of the type the reader takes or another,
/// sections holding `$metadata` times good and bad, keys that break a
/// limit, ids of this device, of another, or `null`.
fn twin_body() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let time = prop_oneof![
        Just(json!("2024-03-01T12:00:00Z")),
        Just(json!("2024-03-01T12:00:00.1234567")),
        Just(json!("0001-01-01T00:00:00Z")),
        Just(json!("soon")),
        Just(json!(7)),
        Just(Value::Null),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(json!(9_007_199_254_740_993_u64)),
        Just(json!(1.5)),
        "[a-z]{0,6}".prop_map(Value::from),
        Just(Value::from("x".repeat(4097))),
        Just(json!([1, "a", {"b": null}])),
    ];
    let key = prop_oneof![
        4 => "[a-c]{1,2}",
        1 => Just("a.b".to_owned()),
        1 => Just("a b".to_owned()),
        1 => Just("$x".to_owned()),
        1 => Just("k".repeat(1025)),
    ];
    let property = leaf.prop_recursive(3, 24, 4, move |inner| {
        prop::collection::btree_map(key.clone(), inner, 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    });
    let meta = prop::collection::btree_map("[a-c]{1,2}", time.clone(), 0..3).prop_map(|m| {
        let mut node: serde_json::Map<String, Value> = m
            .into_iter()
            .map(|(k, t)| (k, json!({ "$lastUpdated": t })))
            .collect();
        node.insert("$lastUpdated".to_owned(), json!("2024-03-01T12:00:00Z"));
        Value::Object(node)
    });
    let section = (
        prop::collection::btree_map("[a-c]{1,2}", property.clone(), 0..4),
        prop::option::of(meta),
        prop::option::of(any::<u8>()),
        prop::option::of(Just(json!("AAAA"))),
        any::<u8>(),
    )
        .prop_map(|(props, meta, version, etag, shape)| match shape % 8 {
            0 => Value::Null,
            1 => json!("not a section"),
            _ => {
                let mut map: serde_json::Map<String, Value> = props.into_iter().collect();
                if let Some(meta) = meta {
                    map.insert("$metadata".to_owned(), meta);
                }
                if let Some(version) = version {
                    map.insert("$version".to_owned(), json!(version));
                }
                if let Some(etag) = etag {
                    map.insert("$etag".to_owned(), etag);
                }
                Value::Object(map)
            }
        });
    let id = prop_oneof![
        Just(json!("d1")),
        Just(json!("d2")),
        Just(json!("m1")),
        Just(Value::Null),
        Just(json!(1)),
    ];
    let text = prop_oneof![
        Just(json!("enabled")),
        Just(json!("Disabled")),
        Just(json!("paused")),
        Just(json!("")),
        Just(json!("because")),
        Just(Value::from("r".repeat(129))),
        Just(Value::Null),
        Just(json!(3)),
    ];
    let version = prop_oneof![
        any::<u32>().prop_map(Value::from),
        Just(json!(-1)),
        Just(json!(2.5)),
        Just(json!("3")),
        Just(Value::Null),
    ];
    (
        prop::option::of(id.clone()),
        prop::option::of(id),
        prop::option::of(version),
        prop::option::of(text.clone()),
        prop::option::of(text.clone()),
        prop::option::of(text),
        prop::option::of(section.clone()),
        prop::option::of((section.clone(), section, any::<u8>())),
        prop::option::of(property),
    )
        .prop_map(
            |(device, module, version, status, reason, other, tags, properties, extra)| {
                let mut body = serde_json::Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        body.insert(k.to_owned(), v);
                    }
                };
                put("deviceId", device);
                put("moduleId", module);
                put("version", version);
                put("status", status);
                put("statusReason", reason);
                put("etag", other.clone());
                put("deviceScope", other.clone());
                put("statusUpdateTime", other);
                put("tags", tags);
                put(
                    "properties",
                    properties.map(|(desired, reported, shape)| match shape % 6 {
                        0 => Value::Null,
                        1 => json!([]),
                        _ => json!({ "desired": desired, "reported": reported }),
                    }),
                );
                put("capabilities", extra);
                Value::Object(body)
            },
        )
}

proptest! {
    /// An event read as a replica holds it (`parse_held_event_line`, its
    /// twin checked but not built) is the event read in full, its twin
    /// left out: the same error for every body the full reading refuses,
    /// else the same canonical text and version; and a replica fed either
    /// is the same replica.
    #[test]
    fn a_held_event_is_the_event_read_in_full(
        body in twin_body(),
        module in any::<bool>(),
        op in 0..3usize,
    ) {
        let op = ["updateTwin", "replaceTwin", "createDeviceIdentity"][op];
        let (op, module_field) = match (module, op) {
            (true, "createDeviceIdentity") => ("createModuleIdentity", r#","moduleId":"m1""#),
            (true, op) => (op, r#","moduleId":"m1""#),
            (false, op) => (op, ""),
        };
        let line = format!(
            r#"{{"properties":{{"deviceId":"d1"{module_field},"opType":"{op}","operationTimestamp":"{}"}},"systemProperties":{{"correlation-id":"c1"}},"body":{body}}}"#,
            time(T0)
        );
        let full = parse_event_line("e.jsonl", 1, &line);
        let held = failback::format::parse_held_event_line("e.jsonl", 1, &line);
        match (&full, &held) {
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (Ok(full), Ok(held)) => {
                prop_assert!(held.twin.is_none());
                prop_assert_eq!(held.version(), full.version());
                prop_assert_eq!(held.body_json(), full.body_json());
                let (mut a, mut b) = (Vec::new(), Vec::new());
                failback::format::write_event_line(&mut a, full).expect("to a Vec");
                failback::format::write_event_line(&mut b, held).expect("to a Vec");
                prop_assert_eq!(a, b);
                let hub = ReplicaId::new("primary").expect("valid literal");
                let (mut one, mut two) = (Replica::new(hub.clone()), Replica::new(hub));
                let _ = one.ingest(full.clone());
                let _ = two.ingest(held.clone());
                prop_assert!(one == two, "{line}");
                prop_assert_eq!(one.to_bytes(), two.to_bytes());
            }
            _ => prop_assert!(false, "{line}: {full:?} against {held:?}"),
        }
    }
}
