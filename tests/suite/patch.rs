//! Twin PATCH has one meaning wherever the crate applies one: JSON Merge
//! Patch (RFC 7396), as IoT Hub applies `updateTwin`. A `null` removes
//! the key, an object merges into an object (an empty one changes
//! nothing there) and replaces anything else (its `null`s dropped), any
//! other value replaces. The CRDT hub state (`HubState::patch_twin`),
//! the replica's replay of `updateTwin` events and the replica's
//! compacted fold of them are each checked against the reference below.

use failback::ReplicaId;
use failback::clock::Stamp;
use failback::doc::{DeviceSnapshot, HubState, Policies, Section, TwinPatch};
use failback::format::parse_event_line;
use failback::replica::Replica;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::common::{T0, time};

/// RFC 7396's MergePatch, on a twin section.
fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                let entry = target.entry(key.clone()).or_insert_with(|| json!({}));
                if !entry.is_object() {
                    *entry = json!({});
                }
                if let Value::Object(map) = entry {
                    merge_patch(map, inner);
                }
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

/// A value of a patch (`nulls`) or of a section, at most `depth` deep,
/// over three keys: small scalars, strings, arrays and empty objects
/// included.
fn value(depth: u32, nulls: bool) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        (0i64..3).prop_map(Value::from),
        Just(json!("s")),
        Just(json!([1])),
        Just(json!({})),
    ];
    let leaf = if nulls {
        prop_oneof![1 => Just(Value::Null), 3 => leaf].boxed()
    } else {
        leaf.boxed()
    };
    if depth == 0 {
        return leaf;
    }
    prop_oneof![
        2 => leaf,
        1 => object(depth - 1, nulls).prop_map(Value::Object),
    ]
    .boxed()
}

fn object(depth: u32, nulls: bool) -> BoxedStrategy<Map<String, Value>> {
    prop::collection::btree_map(
        prop_oneof![Just("a"), Just("b"), Just("c")],
        value(depth, nulls),
        0..3,
    )
    .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    .boxed()
}

fn hub() -> ReplicaId {
    ReplicaId::new("primary").expect("valid name")
}

const SECTIONS: [(Section, &str); 3] = [
    (Section::Tags, "tags"),
    (Section::Desired, "desired"),
    (Section::Reported, "reported"),
];

fn section_of(snapshot: &DeviceSnapshot, which: usize) -> &Map<String, Value> {
    match which {
        0 => &snapshot.device.tags,
        1 => &snapshot.device.desired,
        _ => &snapshot.device.reported,
    }
}

/// The section after the patches, applied to the CRDT hub state.
fn by_hub_state(
    which: usize,
    base: &Map<String, Value>,
    patches: &[Map<String, Value>],
) -> Map<String, Value> {
    let hub = hub();
    let mut snapshot = DeviceSnapshot::enabled_sas("d", "p", "s");
    match which {
        0 => snapshot.device.tags = base.clone().into(),
        1 => snapshot.device.desired = base.clone().into(),
        _ => snapshot.device.reported = base.clone().into(),
    }
    let mut state = HubState::new();
    state.put_device(&snapshot, &Stamp::new(T0, 0, hub.clone()), None);
    for (i, patch) in patches.iter().enumerate() {
        let twin = TwinPatch {
            id: "d",
            module_id: None,
            section: SECTIONS[which].0,
            patch,
        };
        let stamp = Stamp::new(T0 + 1000 * (i as i64 + 1), 0, hub.clone());
        assert!(state.patch_twin(&twin, &stamp, None), "the device is live");
    }
    let read = state
        .read_device("d", &Policies::default(), &mut Vec::new())
        .expect("the device is live");
    section_of(&read, which).clone()
}

/// The section after the patches, as `updateTwin` events a replica
/// replays, compacted after every event when `compact`.
fn by_replica(
    which: usize,
    base: &Map<String, Value>,
    patches: &[Map<String, Value>],
    compact: bool,
) -> Map<String, Value> {
    let name = SECTIONS[which].1;
    let mut body = json!({"version": 1, "status": "enabled"});
    if which == 0 {
        body["tags"] = Value::Object(base.clone());
    } else {
        body["properties"] = json!({ name: base });
    }
    let mut lines = vec![json!({
        "properties": {"deviceId": "d", "opType": "createDeviceIdentity", "operationTimestamp": time(T0)},
        "systemProperties": {"correlation-id": "create"},
        "body": body,
    })];
    for (i, patch) in patches.iter().enumerate() {
        let mut body = json!({"version": i + 2});
        if which == 0 {
            body["tags"] = Value::Object(patch.clone());
        } else {
            body["properties"] = json!({ name: patch });
        }
        lines.push(json!({
            "properties": {"deviceId": "d", "opType": "updateTwin", "operationTimestamp": time(T0 + 1000 * (i as i64 + 1))},
            "systemProperties": {"correlation-id": format!("patch-{i}")},
            "body": body,
        }));
    }
    let mut replica = Replica::new(hub());
    for (n, line) in lines.iter().enumerate() {
        let event = parse_event_line("patch.jsonl", n as u64 + 1, &line.to_string())
            .expect("a valid event");
        replica.ingest(event).expect("no conflicting ids");
        if compact {
            replica.compact();
        }
    }
    let device = replica.device("d").expect("the device is live");
    section_of(&device.snapshot, which).clone()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every implementation of a twin PATCH gives what RFC 7396 gives.
    #[test]
    fn every_patch_means_merge_patch(
        which in 0usize..3,
        base in object(2, false),
        patches in prop::collection::vec(object(2, true), 1..4),
    ) {
        let mut expected = base.clone();
        for patch in &patches {
            merge_patch(&mut expected, patch);
        }
        prop_assert_eq!(&by_hub_state(which, &base, &patches), &expected, "HubState::patch_twin");
        prop_assert_eq!(&by_replica(which, &base, &patches, false), &expected, "replay");
        prop_assert_eq!(&by_replica(which, &base, &patches, true), &expected, "the compacted fold");
    }
}

/// `patch` onto `base` gives `expected` in every section, by the hub
/// state, replay and the compacted fold alike.
fn every_way_gives(base: &Value, patch: &Value, expected: &Value) {
    let base = base.as_object().cloned().unwrap_or_default();
    let patches = [patch.as_object().cloned().unwrap_or_default()];
    for which in 0..3 {
        let ways = [
            ("hub state", by_hub_state(which, &base, &patches)),
            ("replay", by_replica(which, &base, &patches, false)),
            ("fold", by_replica(which, &base, &patches, true)),
        ];
        for (way, got) in ways {
            assert_eq!(&Value::Object(got), expected, "{way}, section {which}");
        }
    }
}

/// The case the three once disagreed on: an empty object patched onto
/// an object leaves it as it was; onto a scalar or nothing it is `{}`.
#[test]
fn an_empty_object_merges_into_an_object() {
    every_way_gives(
        &json!({"a": {"x": 1}, "b": 2}),
        &json!({"a": {}, "b": {}, "c": {}}),
        &json!({"a": {"x": 1}, "b": {}, "c": {}}),
    );
}

/// A patch object with only `null`s, onto nothing, leaves an empty
/// object: the object is written, its removals find nothing.
#[test]
fn nulls_under_a_new_object_leave_it_empty() {
    every_way_gives(&json!({}), &json!({"a": {"x": null}}), &json!({"a": {}}));
}
