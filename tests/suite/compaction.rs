//! Compaction laws: a compacted replica derives the same devices as the
//! uncompacted one; ingest in any order, with any duplication, and
//! compaction at any point (on either side of a delta or merge) gives the
//! same bytes once compacted; a redelivered folded change is a duplicate;
//! a late older patch loses as version-ordered replay decides; state files
//! with folds read back, and a corrupted fold is refused by name.

use failback::ReplicaId;
use failback::format::{Event, parse_event_line};
use failback::replica::{Ingested, Replica, ReplicaError, read_state};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::common::{T0, time};

fn hub() -> ReplicaId {
    ReplicaId::new("primary").expect("valid name")
}

/// One generated change: which section, what it does, where.
#[derive(Clone, Debug)]
struct Change {
    section: u8,
    kind: u8,
    path: Vec<u8>,
    value: u8,
    replace: bool,
    skew: u8,
}

fn change() -> impl Strategy<Value = Change> {
    (
        0u8..3,
        0u8..4,
        prop::collection::vec(0u8..3, 1..3),
        0u8..4,
        prop::bool::weighted(0.08),
        0u8..3,
    )
        .prop_map(|(section, kind, path, value, replace, skew)| Change {
            section,
            kind,
            path,
            value,
            replace,
            skew,
        })
}

const KEYS: [&str; 3] = ["a", "b", "c"];
const SECTIONS: [&str; 3] = ["tags", "desired", "reported"];

/// Sets `path` in `model` to `value` as a patch would: `null` removes,
/// an object merges into an object (and replaces anything else).
fn apply(model: &mut Map<String, Value>, path: &[&str], value: &Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = model;
    for key in parents {
        let entry = node.entry(*key).or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        let Value::Object(inner) = entry else { return };
        node = inner;
    }
    match value {
        Value::Null => {
            node.remove(*last);
        }
        Value::Object(children) => {
            let entry = node.entry(*last).or_insert_with(|| json!({}));
            if !entry.is_object() {
                *entry = json!({});
            }
            if let Value::Object(inner) = entry {
                for (k, v) in children {
                    apply(inner, &[k.as_str()], v);
                }
            }
        }
        other => {
            node.insert((*last).to_owned(), other.clone());
        }
    }
}

fn present(model: &Map<String, Value>, path: &[&str]) -> bool {
    let mut node = model;
    for (i, key) in path.iter().enumerate() {
        match node.get(*key) {
            Some(Value::Object(inner)) => node = inner,
            Some(_) => return i + 1 == path.len(),
            None => return false,
        }
    }
    true
}

/// `{"$lastUpdated": at}` for every node of a patch body.
fn metadata(body: &Value, at: &str) -> Value {
    let mut meta = Map::new();
    meta.insert("$lastUpdated".into(), json!(at));
    if let Value::Object(map) = body {
        for (k, v) in map {
            if !v.is_null() {
                meta.insert(k.clone(), metadata(v, at));
            }
        }
    }
    Value::Object(meta)
}

/// A device's history in the hub's order: a create at version 1, then one
/// change a version. `null`s only remove what is there (replay and the
/// fold agree on times then; see `src/replica/fold.rs`), and every node a
/// patch writes has its `$lastUpdated`, as a hub writes them.
fn history(device: &str, changes: &[Change]) -> Vec<String> {
    history_with(device, changes, false)
}

/// As [`history`]; with `paired`, changes go two by two under one version
/// (distinct ids, times rising), which replay orders by time then dot.
fn history_with(device: &str, changes: &[Change], paired: bool) -> Vec<String> {
    let mut models = [Map::new(), Map::new(), Map::new()];
    let mut lines = vec![
        json!({
            "properties": {"deviceId": device, "opType": "createDeviceIdentity", "operationTimestamp": time(T0)},
            "systemProperties": {"correlation-id": format!("{device}-create")},
            "body": {"version": 1, "status": "enabled", "tags": {"site": "lyon"}},
        })
        .to_string(),
    ];
    models[0].insert("site".into(), json!("lyon"));
    for (i, c) in changes.iter().enumerate() {
        let version = if paired {
            i as u64 / 2 + 2
        } else {
            i as u64 + 2
        };
        let skew = if paired { 0 } else { c.skew };
        // Times mostly rise with versions; a skew makes some older than
        // the version before (never older than the create: that change
        // would wait for a create forever).
        let ms = (T0 + 1000 * (i as i64 + 1) - 1500 * i64::from(skew == 2)).max(T0 + 1);
        let at = time(ms);
        let section = usize::from(c.section);
        let path: Vec<&str> = c.path.iter().map(|k| KEYS[usize::from(*k)]).collect();
        let value = match c.kind {
            0 if present(&models[section], &path) => Value::Null,
            0 | 1 => json!(c.value),
            2 => json!({"x": c.value}),
            _ => json!(format!("s{}", c.value)),
        };
        let (op, body_section) = if c.replace {
            let mut whole = Map::new();
            apply(&mut whole, &path, &value);
            models[section] = whole.clone();
            ("replaceTwin", Value::Object(whole))
        } else {
            apply(&mut models[section], &path, &value);
            let mut patch = Map::new();
            let mut nested = value.clone();
            for key in path.iter().rev() {
                let mut m = Map::new();
                m.insert((*key).to_owned(), nested);
                nested = Value::Object(m);
            }
            if let Value::Object(m) = nested {
                patch = m;
            }
            ("updateTwin", Value::Object(patch))
        };
        let body = if section == 0 {
            json!({"version": version, "tags": body_section})
        } else {
            let mut props = body_section.clone();
            if let Value::Object(m) = &mut props {
                m.insert("$metadata".into(), metadata(&body_section, &at));
            }
            let mut properties = Map::new();
            properties.insert(SECTIONS[section].to_owned(), props);
            json!({"version": version, "etag": format!("e{version}"), "properties": properties})
        };
        lines.push(
            json!({
                "properties": {"deviceId": device, "opType": op, "operationTimestamp": at},
                "systemProperties": {"correlation-id": format!("{device}-{i}")},
                "body": body,
            })
            .to_string(),
        );
    }
    lines
}

fn parse(lines: &[String]) -> Vec<Event> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| parse_event_line("e.jsonl", i as u64 + 1, l).expect("valid event"))
        .collect()
}

fn ingest_all<'a>(events: impl IntoIterator<Item = &'a Event>) -> Replica {
    let mut replica = Replica::new(hub());
    for e in events {
        replica.ingest(e.clone()).expect("no conflicting ids");
    }
    replica
}

fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut out = items.to_vec();
    let mut state = seed | 1;
    for i in (1..out.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = (state >> 33) as usize % (i + 1);
        out.swap(i, j);
    }
    out
}

fn devices(replica: &Replica) -> Vec<Option<failback::format::DeviceRecord>> {
    let ids: Vec<String> = replica.device_ids().map(str::to_owned).collect();
    ids.iter().map(|id| replica.device(id)).collect()
}

/// The devices without their times: their twins, etags and versions.
fn values(
    replica: &Replica,
) -> Vec<Option<(failback::doc::DeviceSnapshot, failback::format::RecordMeta)>> {
    devices(replica)
        .into_iter()
        .map(|d| d.map(|d| (d.snapshot, d.meta)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn compacting_at_any_point_in_any_order_gives_the_same_devices_and_bytes(
        a in prop::collection::vec(change(), 0..16),
        b in prop::collection::vec(change(), 0..10),
        seed in any::<u64>(),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        compact_at in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let mut lines = history("d1", &a);
        lines.extend(history("d2", &b));
        let events = parse(&lines);
        let reference = ingest_all(&events);

        let mut delivery = events.clone();
        for d in &dups {
            delivery.push(d.get(&events).clone());
        }
        let delivery = shuffled(&delivery, seed);
        let cuts: Vec<usize> = compact_at.iter().map(|i| i.index(delivery.len())).collect();
        let mut replica = Replica::new(hub());
        // The same deliveries, never compacted.
        let mut plain = Replica::new(hub());
        for (i, e) in delivery.iter().enumerate() {
            if cuts.contains(&i) {
                replica.compact();
                // Mid-stream, times may differ where a removal has arrived
                // before the change that set what it removes (see
                // `src/replica/fold.rs`); the values never do.
                prop_assert_eq!(values(&replica), values(&plain));
            }
            let got = replica.ingest(e.clone()).expect("no conflicting ids");
            let expected = plain.ingest(e.clone()).expect("no conflicting ids");
            // Folding never turns a new change into a duplicate, nor back.
            prop_assert_eq!(got, expected);
        }
        prop_assert_eq!(devices(&replica), devices(&reference), "{}", lines.join("\n"));
        replica.compact();
        prop_assert_eq!(devices(&replica), devices(&reference));
        prop_assert_eq!(replica.gaps(), reference.gaps());

        let mut compacted = reference.clone();
        compacted.compact();
        let bytes = compacted.to_bytes();
        prop_assert_eq!(&replica.to_bytes(), &bytes);
        // Compacting again changes nothing.
        compacted.compact();
        prop_assert_eq!(&compacted.to_bytes(), &bytes);

        // Every event delivered again is a duplicate, and changes nothing.
        for e in &events {
            prop_assert_eq!(replica.ingest(e.clone()), Ok(Ingested::Duplicate));
        }
        prop_assert_eq!(&replica.to_bytes(), &bytes);

        // The state file reads back to the same replica.
        let back = read_state(bytes.as_slice(), "state.json").expect("own state reads back");
        prop_assert_eq!(&back.to_bytes(), &bytes);
        prop_assert!(back == compacted);
    }

    #[test]
    fn compaction_on_either_side_of_a_delta_or_merge_gives_the_same_bytes(
        a in prop::collection::vec(change(), 0..14),
        held in prop::collection::vec(any::<bool>(), 16),
        compact_full in any::<bool>(),
        compact_peer in any::<bool>(),
    ) {
        let events = parse(&history("d1", &a));
        let reference = {
            let mut r = ingest_all(&events);
            r.compact();
            r
        };
        let mut full = ingest_all(&events);
        let mut peer = ingest_all(events.iter().zip(held.iter().chain(std::iter::repeat(&true))).filter(|(_, h)| **h).map(|(e, _)| e));
        if compact_full {
            full.compact();
        }
        if compact_peer {
            peer.compact();
        }
        let delta = full.delta_since(&peer.context());
        peer.apply_delta(&delta).expect("same hub");
        peer.compact();
        prop_assert_eq!(peer.to_bytes(), reference.to_bytes());
        prop_assert_eq!(devices(&peer), devices(&reference));

        // A merge the other way round, and a merge with itself.
        let mut other = ingest_all(events.iter().rev());
        if compact_peer {
            other.compact();
        }
        other.merge(&full).expect("same hub");
        other.merge(&other.clone()).expect("idempotent");
        other.compact();
        prop_assert_eq!(other.to_bytes(), reference.to_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn changes_sharing_a_version_fold_in_replay_order(
        a in prop::collection::vec(change(), 0..16),
        seed in any::<u64>(),
    ) {
        let events = parse(&history_with("d1", &a, true));
        let reference = ingest_all(&events);
        let mut replica = ingest_all(&shuffled(&events, seed));
        replica.compact();
        prop_assert_eq!(devices(&replica), devices(&reference));
        let mut compacted = reference.clone();
        compacted.compact();
        prop_assert_eq!(replica.to_bytes(), compacted.to_bytes());
    }
}

fn event(op: &str, device: &str, second: i64, id: &str, body: Value) -> Event {
    let line = json!({
        "properties": {"deviceId": device, "opType": op, "operationTimestamp": time(T0 + 1000 * second)},
        "systemProperties": {"correlation-id": id},
        "body": body,
    })
    .to_string();
    parse_event_line("e.jsonl", 1, &line).expect("valid event")
}

#[test]
fn a_late_older_patch_still_loses_after_compaction() {
    let mut replica = Replica::new(hub());
    let create = event("createDeviceIdentity", "d", 0, "a", json!({"version": 1}));
    replica.ingest(create).expect("new");
    let newer = json!({"version": 5, "properties": {"desired": {"fan": 5, "mode": {"eco": true}}}});
    replica
        .ingest(event("updateTwin", "d", 2, "c", newer))
        .expect("new");
    assert_eq!(replica.compact(), 1);
    // Older: loses on `fan`, and under `mode` (replaced by an object at 5)
    // its scalar loses too; `light` it alone writes, so it shows.
    let older =
        json!({"version": 3, "properties": {"desired": {"fan": 3, "mode": "off", "light": 1}}});
    assert_eq!(
        replica.ingest(event("updateTwin", "d", 1, "b", older)),
        Ok(Ingested::Applied)
    );
    replica.compact();
    let d = replica.device("d").expect("exists");
    assert_eq!(
        Value::Object(d.snapshot.device.desired.clone().into()),
        json!({"fan": 5, "mode": {"eco": true}, "light": 1})
    );
    assert_eq!(d.meta.version, Some(5));
    // A removal at 6, then a late set at 4 under it: the removal wins.
    let removal = json!({"version": 6, "properties": {"desired": {"mode": null}}});
    replica
        .ingest(event("updateTwin", "d", 3, "e", removal))
        .expect("new");
    replica.compact();
    let late = json!({"version": 4, "properties": {"desired": {"mode": {"eco": false, "x": 1}}}});
    replica
        .ingest(event("updateTwin", "d", 2, "d4", late))
        .expect("new");
    replica.compact();
    let d = replica.device("d").expect("exists");
    assert_eq!(
        Value::Object(d.snapshot.device.desired.clone().into()),
        json!({"fan": 5, "light": 1})
    );
    // Its version is remembered: delivered again, it is a duplicate.
    let again = json!({"version": 4, "properties": {"desired": {"mode": {"eco": false, "x": 1}}}});
    assert_eq!(
        replica.ingest(event("updateTwin", "d", 2, "d4", again)),
        Ok(Ingested::Duplicate)
    );
}

/// A replica of `hub()` that holds device `d`, created at version 1 (dot
/// "a").
fn created() -> Replica {
    let mut replica = Replica::new(hub());
    let create = event("createDeviceIdentity", "d", 0, "a", json!({"version": 1}));
    replica.ingest(create).expect("new");
    replica
}

#[test]
fn a_create_or_delete_inside_compacted_history_is_refused_and_changes_nothing() {
    let mut replica = created();
    for v in 2..5 {
        let body = json!({"version": v, "properties": {"desired": {"fan": v}}});
        replica
            .ingest(event("updateTwin", "d", v, &format!("u{v}"), body))
            .expect("new");
    }
    replica.compact();
    let bytes = replica.to_bytes();
    // A delete at second 3 would end the incarnation between folded
    // changes (seconds 2 and 4).
    let delete = event("deleteDeviceIdentity", "d", 3, "del", json!({}));
    let err = replica.ingest(delete).expect_err("inside the horizon");
    assert!(matches!(err, ReplicaError::Compacted { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "device \"d\": event id:del falls inside history this replica has compacted"
    );
    assert_eq!(replica.to_bytes(), bytes);
    // Merged from a replica that holds it, it is refused alike.
    let mut other = created();
    let delete = event("deleteDeviceIdentity", "d", 3, "del", json!({}));
    other.ingest(delete).expect("new");
    let err = replica.merge(&other).expect_err("inside the horizon");
    assert!(matches!(err, ReplicaError::Compacted { .. }), "{err}");
    assert_eq!(replica.to_bytes(), bytes);
    // After the last folded change, a delete is fine.
    let delete = event("deleteDeviceIdentity", "d", 9, "del2", json!({}));
    assert_eq!(replica.ingest(delete), Ok(Ingested::Applied));
    assert!(replica.device("d").is_none());
}

#[test]
fn a_replica_never_compacted_writes_version_1_and_a_compacted_one_version_3() {
    let mut replica = created();
    replica
        .ingest(event(
            "updateTwin",
            "d",
            1,
            "b",
            json!({"version": 2, "properties": {"desired": {"fan": 2}}}),
        ))
        .expect("new");
    let text = String::from_utf8(replica.to_bytes()).expect("utf-8");
    assert!(text.starts_with(r#"{"format":"failback-replica","version":1,"#));
    replica.compact();
    let text = String::from_utf8(replica.to_bytes()).expect("utf-8");
    assert!(
        text.starts_with(r#"{"format":"failback-replica","version":3,"#),
        "{text}"
    );
    assert!(text.contains(r#""folded":[{"base":"id:a""#), "{text}");
    let back = read_state(text.as_bytes(), "s.json").expect("reads back");
    assert!(back == replica);
}

#[test]
fn a_corrupted_fold_is_refused_by_name() {
    let mut replica = created();
    for v in 2..4 {
        let body = json!({"version": v, "properties": {"desired": {"fan": {"speed": v}}}});
        replica
            .ingest(event("updateTwin", "d", v, &format!("u{v}"), body))
            .expect("new");
    }
    replica.compact();
    let text = String::from_utf8(replica.to_bytes()).expect("utf-8");
    let cases = [
        (
            r#""versions":[[2,3]]"#,
            r#""versions":[[3,2]]"#,
            "versions are not sorted",
        ),
        (
            r#""versions":[[2,3]]"#,
            r#""versions":[]"#,
            "versions is empty",
        ),
        (
            r#""base":"id:a""#,
            r#""base":"id:zz""#,
            "its base is not a create",
        ),
        // The device has no seed for a fold to start from.
        (
            r#""base":"id:a""#,
            r#""base":null"#,
            "its base is a seed the device does not have",
        ),
        (
            r#""stamps":[[3,"#,
            r#""stamps":[[9,"#,
            "stamps holds version 9",
        ),
        (r#""at":0"#, r#""at":7"#, "not the index of a stamp"),
        // Version 3 writes positions without their dots, and only a
        // twin change's rank.
        (
            r#""first":[1709294402000,3]"#,
            r#""first":[1709294402000,3,"id:u2"]"#,
            "first is not [time, rank]",
        ),
        (
            r#""last":[1709294403000,3]"#,
            r#""last":[1709294403000,0]"#,
            "last is not [time, rank]",
        ),
        // A meta left out is its stamp's time; one written must be a time,
        // "unset" or null.
        (
            r#""leaf":3}"#,
            r#""leaf":3,"meta":"soon"}"#,
            "meta is not a time",
        ),
        (
            r#""identity":{"#,
            r#""identity":{"status":5,"#,
            "identity.status",
        ),
    ];
    for (from, to, expected) in cases {
        assert!(text.contains(from), "{from} not in {text}");
        let bad = text.replacen(from, to, 1);
        let err = read_state(bad.as_bytes(), "s.json").expect_err(expected);
        let message = err.to_string();
        assert!(message.contains(expected), "{message}");
        assert!(message.contains("field \"folded\""), "{message}");
    }
}

/// A fold read from a state file may leave an object's `$metadata`
/// entry out (`"meta":null`) while its children have times: the device
/// shows those times, under an entry without a time of its own.
#[test]
fn an_object_without_a_time_still_shows_its_childrens_times() {
    let mut replica = created();
    let body = json!({"version": 2, "properties": {"desired": {"fan": {"speed": 2}}}});
    replica
        .ingest(event("updateTwin", "d", 2, "u2", body))
        .expect("new");
    replica.compact();
    let text = String::from_utf8(replica.to_bytes()).expect("utf-8");
    let from = r#""fan":{"at":"#;
    assert!(text.contains(from), "{from} not in {text}");
    let edited = text.replacen(from, r#""fan":{"meta":null,"at":"#, 1);
    let back = read_state(edited.as_bytes(), "s.json").expect("a valid fold");
    let device = back.device("d").expect("exists");
    let times = device.times.expect("times");
    let fan = times
        .device
        .desired
        .children
        .get("fan")
        .expect("fan's entry");
    assert_eq!(fan.last_updated, None);
    let speed = fan.children.get("speed").expect("speed's entry");
    assert_eq!(speed.last_updated, Some(T0 + 2000));
}

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/events/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `compacted-v2.json` was written by the crate before version 3 (`failback
/// ingest --compact 1` of `stream.jsonl` then `retransmitted.jsonl`): it
/// still reads, derives the devices a replica compacted now derives, and is
/// written again as version 3, the bytes of that replica.
#[test]
fn a_version_2_state_file_still_reads_and_is_written_as_version_3() {
    let v2 = std::fs::read_to_string(fixture("compacted-v2.json")).expect("fixture");
    assert!(v2.starts_with(r#"{"format":"failback-replica","version":2,"#));
    let back = read_state(v2.as_bytes(), "compacted-v2.json").expect("version 2 reads");
    let mut replica = Replica::new(hub());
    for name in ["stream.jsonl", "retransmitted.jsonl"] {
        let text = std::fs::read_to_string(fixture(name)).expect("fixture");
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let event = parse_event_line(name, i as u64 + 1, line).expect("valid event");
            replica.ingest(event).expect("no conflicting ids");
        }
    }
    replica.compact();
    assert_eq!(devices(&back), devices(&replica));
    let bytes = back.to_bytes();
    assert_eq!(
        String::from_utf8(bytes.clone()).expect("utf-8"),
        String::from_utf8(replica.to_bytes()).expect("utf-8")
    );
    assert!(bytes.starts_with(br#"{"format":"failback-replica","version":3,"#));
    assert!(bytes.len() < v2.len(), "{} >= {}", bytes.len(), v2.len());
    // A version 2 fold with a version 3 position is refused by name.
    let bad = v2.replacen(r#","id:c-009"]"#, "]", 1);
    let err = read_state(bad.as_bytes(), "bad.json").expect_err("a v3 position in v2");
    let message = err.to_string();
    assert!(
        message.contains("first is not [time, rank, dot]"),
        "{message}"
    );
    assert!(message.contains("field \"folded\""), "{message}");
}

/// A compacted device's state file line holds its create, its fold's
/// stamps and values, and no more: its `meta` where a change's stamp
/// gives it, and positions without dots.
#[test]
fn a_compacted_fold_writes_each_time_once() {
    let mut replica = created();
    // Version 4 is left for a late patch.
    for v in [2, 3, 5] {
        let at = time(T0 + 1000 * v);
        let body = json!({"version": v, "properties": {"desired": {"fan": v, "$metadata": {"$lastUpdated": at, "fan": {"$lastUpdated": at}}}}});
        replica
            .ingest(event("updateTwin", "d", v, &format!("u{v}"), body))
            .expect("new");
    }
    let plain = replica.clone();
    replica.compact();
    assert_eq!(devices(&replica), devices(&plain));
    let text = String::from_utf8(replica.to_bytes()).expect("utf-8");
    assert!(text.contains(r#""fan":{"kill":0,"leaf":5}"#), "{text}");
    assert!(text.contains(r#""first":[1709294402000,3],"#), "{text}");
    assert!(!text.contains(r#""id:u2""#), "{text}");
    let back = read_state(text.as_bytes(), "s.json").expect("reads back");
    assert!(back == replica);
    assert_eq!(devices(&back), devices(&plain));
    // Redelivered, the create and a folded change are duplicates, and a
    // late older patch still loses to the folded version 5.
    let create = event("createDeviceIdentity", "d", 0, "a", json!({"version": 1}));
    assert_eq!(replica.ingest(create), Ok(Ingested::Duplicate));
    let at = time(T0 + 3000);
    let body = json!({"version": 3, "properties": {"desired": {"fan": 3, "$metadata": {"$lastUpdated": at, "fan": {"$lastUpdated": at}}}}});
    assert_eq!(
        replica.ingest(event("updateTwin", "d", 3, "u3", body)),
        Ok(Ingested::Duplicate)
    );
    let older = json!({"version": 4, "properties": {"desired": {"fan": 40}}});
    assert_eq!(
        replica.ingest(event("updateTwin", "d", 4, "late", older)),
        Ok(Ingested::Applied)
    );
    replica.compact();
    let d = replica.device("d").expect("exists");
    assert_eq!(d.snapshot.device.desired["fan"], 5);
    assert_eq!(replica.to_bytes(), {
        let mut r = plain.clone();
        r.ingest(event(
            "updateTwin",
            "d",
            4,
            "late",
            json!({"version": 4, "properties": {"desired": {"fan": 40}}}),
        ))
        .expect("new");
        r.compact();
        r.to_bytes()
    });
}

/// A state file holds one fold an incarnation: one written twice is
/// refused by name, not read as the last of the two.
#[test]
fn two_folds_of_one_incarnation_are_refused() {
    let mut replica = created();
    let body = json!({"version": 2, "properties": {"desired": {"fan": 2}}});
    replica
        .ingest(event("updateTwin", "d", 2, "u2", body))
        .expect("new");
    replica.compact();
    let text = String::from_utf8(replica.to_bytes()).expect("utf-8");
    let open = r#""folded":["#;
    let start = text.find(open).expect("a fold") + open.len();
    let len = text[start..].find(r#"],"parked""#).expect("the fold's end");
    let fold = &text[start..start + len];
    let bad = text.replacen(fold, &format!("{fold},{fold}"), 1);
    let err = read_state(bad.as_bytes(), "s.json").expect_err("two folds of one incarnation");
    let message = err.to_string();
    assert!(
        message.contains("two folds of one incarnation"),
        "{message}"
    );
    assert!(message.contains("field \"folded\""), "{message}");
}

/// A fold whose sections hold a whole write, `null`s, a removal and an
/// object written over a scalar (of `d`: desired `fan` 1 replaced whole
/// at version 2, `fan` an object at 3, `null`s at 4 and 5, the last with
/// an older time).
fn folded_with_every_shape() -> String {
    let mut replica = created();
    let steps = [
        (
            "replaceTwin",
            2,
            json!({"version": 2, "properties": {"desired": {"fan": 1, "old": 1}}}),
        ),
        (
            "updateTwin",
            3,
            json!({"version": 3, "properties": {"desired": {"fan": {"speed": 3}, "old": null}}}),
        ),
        (
            "updateTwin",
            4,
            json!({"version": 4, "properties": {"desired": {"gone": null}}}),
        ),
        (
            "updateTwin",
            1,
            json!({"version": 5, "properties": {"desired": {"late": null}}}),
        ),
    ];
    for (op, second, body) in steps {
        replica
            .ingest(event(op, "d", second, &format!("u{second}"), body))
            .expect("new");
    }
    replica.compact();
    String::from_utf8(replica.to_bytes()).expect("utf-8")
}

/// Every write a fold holds lies within its parent's, and a section's
/// `null`s follow its whole write by stamp with falling times: a state
/// file that breaks either is refused by name, and one that keeps them
/// reads back to the same bytes.
#[test]
fn a_fold_out_of_order_is_refused_by_name() {
    let text = folded_with_every_shape();
    // Stamps 0 to 3 are versions 2 to 5; the whole write is stamp 0.
    let nulls = r#""nulls":[[2,1709294404000],[3,1709294401000]]"#;
    let fan = r#""fan":{"at":1,"children":{"speed":{"kill":1,"leaf":3}},"kill":0}"#;
    for shape in [nulls, fan, r#""gone":{"kill":2}"#, r#""whole":[0,"#] {
        assert!(text.contains(shape), "{shape} not in {text}");
    }
    let back = read_state(text.as_bytes(), "s.json").expect("a valid fold");
    assert_eq!(String::from_utf8(back.to_bytes()).expect("utf-8"), text);
    // A meta of "unset" (an entry without a time) is one a fold may hold.
    let unset = text.replacen(r#""leaf":3}"#, r#""leaf":3,"meta":"unset"}"#, 1);
    let back = read_state(unset.as_bytes(), "s.json").expect("a valid fold");
    assert_eq!(String::from_utf8(back.to_bytes()).expect("utf-8"), unset);
    let not_in_order = "desired.nulls are not after the whole write";
    let outside = "a write outside its parent's";
    let cases = [
        // Stamps in order, times rising.
        (
            nulls,
            r#""nulls":[[2,1709294401000],[3,1709294404000]]"#,
            not_in_order,
        ),
        // Times falling, stamps out of order.
        (
            nulls,
            r#""nulls":[[3,1709294404000],[2,1709294401000]]"#,
            not_in_order,
        ),
        // One stamp twice; one time twice.
        (
            nulls,
            r#""nulls":[[2,1709294404000],[2,1709294401000]]"#,
            not_in_order,
        ),
        (
            nulls,
            r#""nulls":[[2,1709294404000],[3,1709294404000]]"#,
            not_in_order,
        ),
        // A null of the whole write's own stamp.
        (
            nulls,
            r#""nulls":[[0,1709294404000],[3,1709294401000]]"#,
            not_in_order,
        ),
        // A removal has no meta.
        (
            r#""gone":{"kill":2}"#,
            r#""gone":{"kill":2,"meta":5}"#,
            "desired.gone is neither",
        ),
        // An object written at its kill's stamp.
        (
            fan,
            &fan.replacen(r#""kill":0}"#, r#""kill":1}"#, 1),
            "its object write is not after its kill",
        ),
        // A child newer than its parent's object write.
        (
            fan,
            &fan.replacen(r#""kill":1,"#, r#""kill":2,"#, 1),
            outside,
        ),
        // A child older than the whole write above it (now stamp 1).
        (r#""whole":[0,"#, r#""whole":[1,"#, outside),
    ];
    // An object, without kill or children, written before the whole
    // write above it (now stamp 1).
    let older_object =
        text.replacen(fan, r#""fan":{"at":0}"#, 1)
            .replacen(r#""whole":[0,"#, r#""whole":[1,"#, 1);
    let bad_texts = cases
        .iter()
        .map(|(from, to, expected)| (text.replacen(from, to, 1), *expected))
        .chain([(older_object, outside)]);
    for (bad, expected) in bad_texts {
        let err = read_state(bad.as_bytes(), "s.json").expect_err(expected);
        let message = err.to_string();
        assert!(message.contains(expected), "{bad}: {message}");
        assert!(message.contains("field \"folded\""), "{message}");
    }
}

/// A `$metadata` time other than its change's time is written beside
/// the value (a node's `meta`, left out only where it is the time of the
/// node's stamp) and read back; an identity holding only its version is
/// written as that alone.
#[test]
fn a_fold_keeps_a_time_other_than_its_changes_through_its_state_file() {
    let mut replica = created();
    let at = time(T0 + 1500);
    let body = json!({
        "version": 2,
        "properties": {"desired": {"fan": 2, "$metadata": {"$lastUpdated": at, "fan": {"$lastUpdated": at}}}},
    });
    replica
        .ingest(event("replaceTwin", "d", 2, "u2", body))
        .expect("new");
    replica.compact();
    let text = String::from_utf8(replica.to_bytes()).expect("utf-8");
    assert!(
        text.contains(r#""fan":{"kill":0,"leaf":2,"meta":1709294401500}"#),
        "{text}"
    );
    assert!(text.contains(r#""identity":{"version":2}"#), "{text}");
    let back = read_state(text.as_bytes(), "s.json").expect("reads back");
    assert!(back == replica);
    assert_eq!(devices(&back), devices(&replica));
}

/// A fold's base must be a create of the device that holds it: the
/// create of another device is refused.
#[test]
fn a_fold_based_on_another_devices_create_is_refused() {
    let mut replica = created();
    let body = json!({"version": 2, "properties": {"desired": {"fan": 2}}});
    replica
        .ingest(event("updateTwin", "d", 2, "u2", body))
        .expect("new");
    let other = event("createDeviceIdentity", "e", 0, "e1", json!({"version": 1}));
    replica.ingest(other).expect("new");
    replica.compact();
    let text = String::from_utf8(replica.to_bytes()).expect("utf-8");
    let from = r#""base":"id:a""#;
    assert!(text.contains(from), "{from} not in {text}");
    let bad = text.replacen(from, r#""base":"id:e1""#, 1);
    let err = read_state(bad.as_bytes(), "s.json").expect_err("another device's create");
    let message = err.to_string();
    assert!(
        message.contains("its base is not a create of the device it holds"),
        "{message}"
    );
}
