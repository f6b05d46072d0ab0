//! Application metadata documents: JSON round trips, the conflict rules the
//! module docs claim for automerge, canonical bytes and the merge laws.

use std::collections::BTreeMap;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ObjType, ROOT, ScalarValue};
use failback::ReplicaId;
use failback::appmeta::{AppDocument, AppMetaError};
use failback::doc::HubState;
use proptest::prelude::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn replica(name: &str) -> ReplicaId {
    ReplicaId::new(name).expect("test replica names are valid")
}

fn merged(a: &AppDocument, b: &AppDocument) -> AppDocument {
    let mut out = a.clone();
    out.try_merge(b).expect("documents this module wrote merge");
    out.check_invariants().expect("invariants hold");
    out
}

fn edited(doc: &AppDocument, name: &str, value: Value) -> AppDocument {
    let mut out = doc.clone();
    out.set_json(&replica(name), &value).expect("valid edit");
    out.check_invariants().expect("invariants hold");
    out
}

fn base(value: Value) -> AppDocument {
    AppDocument::from_json(&replica("base"), &value).expect("valid base")
}

/// Merges `a` and `b` both ways, checks the results agree, returns one.
fn both_ways(a: &AppDocument, b: &AppDocument) -> AppDocument {
    let ab = merged(a, b);
    let ba = merged(b, a);
    assert_eq!(ab, ba);
    assert_eq!(ab.to_json(), ba.to_json());
    assert_eq!(ab.save(), ba.save());
    assert_eq!(ab.conflicts(), ba.conflicts());
    ab
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---- JSON ------------------------------------------------------------------

#[test]
fn json_round_trips_every_kind() {
    let value = json!({
        "string": "pump", "empty": "", "neg": -7, "zero": 0, "big": u64::MAX,
        "min": i64::MIN, "float": 2.5, "whole_float": 3.0, "yes": true, "no": false,
        "null": null, "empty_object": {}, "empty_array": [],
        "nested": {"list": [1, "two", [3.5], {"four": null}], "keys/with~": {"x": 1}},
    });
    let doc = AppDocument::from_json(&replica("primary"), &value).unwrap();
    doc.check_invariants().expect("invariants hold");
    assert_eq!(doc.to_json(), value);
    // A float stays a float and an integer an integer.
    assert!(doc.to_json()["whole_float"].is_f64());
    assert!(doc.to_json()["zero"].is_i64());
    let loaded = AppDocument::load(&doc.save()).unwrap();
    assert_eq!(loaded.to_json(), value);
}

#[test]
fn keys_come_out_sorted() {
    let doc = base(json!({"zeta": 1, "alpha": {"y": 1, "b": 2}, "mid": 3}));
    assert_eq!(
        doc.to_json().to_string(),
        r#"{"alpha":{"b":2,"y":1},"mid":3,"zeta":1}"#
    );
}

#[test]
fn rejects_what_is_not_a_document() {
    let hub = replica("primary");
    for (value, found) in [
        (json!([1]), "array"),
        (json!("s"), "string"),
        (json!(null), "null"),
        (json!(1), "number"),
    ] {
        let err = AppDocument::from_json(&hub, &value).unwrap_err();
        assert!(
            matches!(err, AppMetaError::RootNotObject { found: f } if f == found),
            "{err}"
        );
    }
    let mut deep = json!({});
    for _ in 0..AppDocument::MAX_DEPTH {
        deep = json!({ "d": deep });
    }
    let err = AppDocument::from_json(&hub, &deep).unwrap_err();
    assert!(
        matches!(err, AppMetaError::TooDeep { limit: 128, .. }),
        "{err}"
    );
    assert!(err.to_string().starts_with("value at \"/d/d/d"), "{err}");

    let mut doc = base(json!({"k": 1}));
    let before = doc.save();
    assert!(doc.set_json(&hub, &json!([])).is_err());
    assert_eq!(doc.save(), before);
}

#[test]
fn set_json_writes_only_when_something_changed() {
    let hub = replica("primary");
    let mut doc = base(json!({"a": 1, "l": [1, 2]}));
    let before = doc.save();
    assert!(!doc.set_json(&hub, &json!({"a": 1, "l": [1, 2]})).unwrap());
    assert_eq!(doc.save(), before);
    assert!(
        doc.set_json(&hub, &json!({"a": 1, "l": [0, 1, 2, 3]}))
            .unwrap()
    );
    assert_eq!(doc.to_json(), json!({"a": 1, "l": [0, 1, 2, 3]}));
    assert!(
        doc.set_json(&hub, &json!({"l": [{"x": 1}, 2, [3]]}))
            .unwrap()
    );
    assert_eq!(doc.to_json(), json!({"l": [{"x": 1}, 2, [3]]}));
    assert!(
        doc.set_json(&hub, &json!({"l": {"now": "object"}}))
            .unwrap()
    );
    assert_eq!(doc.to_json(), json!({"l": {"now": "object"}}));
    doc.check_invariants().expect("invariants hold");
}

// ---- conflict rules (the module docs' claims) --------------------------------

#[test]
fn concurrent_edits_of_different_keys_both_survive() {
    let start = base(json!({
        "routes": {"alerts": "q1", "billing": "q2"},
        "assets": [{"id": "pump-1", "site": "north"}],
    }));
    let a = edited(
        &start,
        "primary",
        json!({
            "routes": {"alerts": "q9", "billing": "q2"},
            "assets": [{"id": "pump-1", "site": "south"}],
        }),
    );
    let b = edited(
        &start,
        "secondary",
        json!({
            "routes": {"alerts": "q1", "billing": "q2", "audit": "q3"},
            "assets": [{"id": "pump-1", "site": "north", "rated_kw": 7.5}],
        }),
    );
    let m = both_ways(&a, &b);
    assert_eq!(
        m.to_json(),
        json!({
            "routes": {"alerts": "q9", "billing": "q2", "audit": "q3"},
            "assets": [{"id": "pump-1", "site": "south", "rated_kw": 7.5}],
        })
    );
    assert!(m.conflicts().is_empty());
}

#[test]
fn concurrent_writes_to_one_key_pick_one_winner_everywhere() {
    let start = base(json!({"mode": "eco"}));
    let p = edited(&start, "primary", json!({"mode": "boost"}));
    let s = edited(&start, "secondary", json!({"mode": "off"}));
    let t = edited(&start, "tertiary", json!({"mode": "auto"}));
    let orders = [
        merged(&merged(&p, &s), &t),
        merged(&merged(&t, &s), &p),
        merged(&p, &merged(&t, &s)),
        merged(&merged(&s, &p), &merged(&t, &p)),
    ];
    for m in &orders {
        assert_eq!(m.save(), orders[0].save());
        assert_eq!(m.conflicts(), orders[0].conflicts());
    }
    // Equal counters: the highest actor, whose bytes start with the replica
    // name, wins: "tertiary" sorts last.
    let m = &orders[0];
    assert_eq!(m.to_json(), json!({"mode": "auto"}));
    let conflicts = m.conflicts();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].path, "/mode");
    assert_eq!(conflicts[0].winner.replica, Some(replica("tertiary")));
    let mut losers: Vec<_> = conflicts[0]
        .losers
        .iter()
        .map(|w| (w.replica.clone(), w.value.clone()))
        .collect();
    losers.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        losers,
        [
            (Some(replica("primary")), json!("boost")),
            (Some(replica("secondary")), json!("off")),
        ]
    );
}

#[test]
fn the_writer_that_saw_more_history_wins_not_the_later_name() {
    let start = base(json!({"k": 0, "busy": 0}));
    // "alpha" makes several edits first, so its write to `k` carries a
    // higher counter than "zulu"'s single one.
    let mut alpha = start.clone();
    for n in 1..=3 {
        alpha = edited(&alpha, "alpha", json!({"k": 0, "busy": n}));
    }
    alpha = edited(&alpha, "alpha", json!({"k": "alpha", "busy": 3}));
    let zulu = edited(&start, "zulu", json!({"k": "zulu", "busy": 0}));
    let m = both_ways(&alpha, &zulu);
    assert_eq!(m.to_json()["k"], "alpha");
    assert_eq!(m.conflicts()[0].losers[0].value, json!("zulu"));
}

#[test]
fn a_later_write_that_saw_the_conflict_resolves_it() {
    let start = base(json!({"k": 0}));
    let m = both_ways(
        &edited(&start, "primary", json!({"k": 1})),
        &edited(&start, "secondary", json!({"k": 2})),
    );
    assert_eq!(m.conflicts().len(), 1);
    let resolved = edited(&m, "primary", json!({"k": 3}));
    assert!(resolved.conflicts().is_empty());
    assert_eq!(resolved.to_json(), json!({"k": 3}));
}

#[test]
fn update_beats_a_concurrent_delete_of_the_same_key_or_element() {
    let start = base(json!({"k": 1, "keep": 1, "l": [1, 2, 3]}));
    let deleter = edited(&start, "zulu", json!({"keep": 1, "l": [1, 3]}));
    let updater = edited(&start, "alpha", json!({"k": 2, "keep": 1, "l": [1, 20, 3]}));
    let m = both_ways(&deleter, &updater);
    assert_eq!(m.to_json(), json!({"k": 2, "keep": 1, "l": [1, 20, 3]}));
    assert!(m.conflicts().is_empty());
}

#[test]
fn deleting_an_object_drops_concurrent_updates_inside_it() {
    let start = base(json!({"asset": {"name": "p", "kw": 1}, "other": 1}));
    let deleter = edited(&start, "alpha", json!({"other": 1}));
    let updater = edited(
        &start,
        "zulu",
        json!({"asset": {"name": "q", "kw": 1}, "other": 1}),
    );
    let m = both_ways(&deleter, &updater);
    assert_eq!(m.to_json(), json!({"other": 1}));
    assert!(m.conflicts().is_empty(), "the nested update is not kept");
}

#[test]
fn concurrent_list_inserts_all_survive_in_contiguous_runs() {
    let start = base(json!({"l": ["x", "y"]}));
    let a = edited(
        &start,
        "primary",
        json!({"l": ["x", "a1", "a2", "a3", "y"]}),
    );
    let b = edited(
        &start,
        "secondary",
        json!({"l": ["x", "b1", "b2", "b3", "y"]}),
    );
    let m = both_ways(&a, &b);
    // Equal counters: the higher actor ("secondary") goes first.
    assert_eq!(
        m.to_json()["l"],
        json!(["x", "b1", "b2", "b3", "a1", "a2", "a3", "y"])
    );
    // At the front too, where each run is written element by element.
    let a = edited(&start, "primary", json!({"l": ["a1", "a2", "x", "y"]}));
    let b = edited(&start, "secondary", json!({"l": ["b1", "b2", "x", "y"]}));
    assert_eq!(
        both_ways(&a, &b).to_json()["l"],
        json!(["b1", "b2", "a1", "a2", "x", "y"])
    );
    // A higher counter goes first whatever the names: "primary" inserts
    // after an extra edit.
    let busy = edited(&start, "primary", json!({"l": ["x", "y"], "n": 1}));
    let a = edited(&busy, "primary", json!({"l": ["x", "a1", "y"], "n": 1}));
    let b = edited(&start, "secondary", json!({"l": ["x", "b1", "y"]}));
    assert_eq!(
        both_ways(&a, &b).to_json()["l"],
        json!(["x", "a1", "b1", "y"])
    );
}

#[test]
fn list_edits_far_apart_both_survive() {
    let assets: Vec<Value> = (0..50).map(|i| json!({"id": i, "kw": 0})).collect();
    let start = base(json!({ "assets": assets }));
    // "primary" inserts at the front and retunes asset 40; "secondary"
    // retunes asset 45. A diff that rewrote the shifted elements would
    // clobber the secondary's edit.
    let mut a = assets.clone();
    a[40]["kw"] = json!(4);
    a.insert(0, json!({"id": "new"}));
    let mut b = assets.clone();
    b[45]["kw"] = json!(5);
    let m = both_ways(
        &edited(&start, "primary", json!({ "assets": a })),
        &edited(&start, "secondary", json!({ "assets": b })),
    );
    let mut want = assets;
    want[40]["kw"] = json!(4);
    want[45]["kw"] = json!(5);
    want.insert(0, json!({"id": "new"}));
    assert_eq!(m.to_json(), json!({ "assets": want }));
    assert!(m.conflicts().is_empty());
}

#[test]
fn lists_too_different_to_diff_are_still_written_right() {
    let old: Vec<Value> = (0..700).map(|i| json!(i)).collect();
    let new: Vec<Value> = (0..700).map(|i| json!(-i - 1)).collect();
    let mut doc = base(json!({ "l": old }));
    doc.set_json(&replica("primary"), &json!({ "l": new }))
        .unwrap();
    assert_eq!(doc.to_json(), json!({ "l": new }));
}

#[test]
fn objects_created_twice_from_scratch_conflict_whole() {
    let a = AppDocument::from_json(&replica("primary"), &json!({"routes": {"x": 1}})).unwrap();
    let b = AppDocument::from_json(&replica("secondary"), &json!({"routes": {"y": 1}})).unwrap();
    let m = both_ways(&a, &b);
    assert_eq!(m.to_json(), json!({"routes": {"y": 1}}));
    let conflicts = m.conflicts();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].losers[0].value, json!({"x": 1}));
}

#[test]
fn scalar_against_object_resolves_whole_and_keeps_the_loser() {
    let start = base(json!({"k": 0}));
    let a = edited(&start, "zulu", json!({"k": {"deep": [1]}}));
    let b = edited(&start, "alpha", json!({"k": "flat"}));
    let m = both_ways(&a, &b);
    assert_eq!(m.to_json(), json!({"k": {"deep": [1]}}));
    assert_eq!(m.conflicts()[0].losers[0].value, json!("flat"));
    // Editing under the winner keeps working.
    let m2 = edited(&m, "alpha", json!({"k": {"deep": [1, 2]}}));
    assert_eq!(m2.to_json(), json!({"k": {"deep": [1, 2]}}));
}

#[test]
fn one_replica_rebuilding_its_document_twice_still_merges() {
    // Two documents from the same hub's two exports: a per-replica actor
    // would reuse sequence number 1 with different content.
    let hub = replica("primary");
    let first = AppDocument::from_json(&hub, &json!({"k": 1})).unwrap();
    let second = AppDocument::from_json(&hub, &json!({"k": 2})).unwrap();
    let mut m = first.clone();
    m.try_merge(&second).unwrap();
    assert_eq!(m.conflicts().len(), 1);
    // The same input twice is the same change.
    let again = AppDocument::from_json(&hub, &json!({"k": 1})).unwrap();
    assert_eq!(again, first);
    assert_eq!(merged(&first, &again).save(), first.save());
}

// ---- bytes -----------------------------------------------------------------

fn scenario() -> AppDocument {
    let start = base(json!({"routes": {"alerts": "q1"}, "assets": [{"id": "pump-1"}]}));
    let a = edited(
        &start,
        "primary",
        json!({"routes": {"alerts": "q2"}, "assets": [{"id": "pump-1"}, {"id": "fan-2"}]}),
    );
    let b = edited(
        &start,
        "secondary",
        json!({"routes": {"alerts": "q3", "audit": "q4"}, "assets": [{"id": "pump-1", "kw": 1.5}]}),
    );
    merged(&a, &b)
}

#[test]
fn bytes_are_the_same_on_every_run() {
    // Fixed inputs give fixed bytes: no random actor, no clock. Pinned so a
    // change of format (or of automerge's encoder) is noticed.
    let doc = scenario();
    assert_eq!(
        doc.to_json(),
        json!({
            "routes": {"alerts": "q2", "audit": "q4"},
            "assets": [{"id": "pump-1", "kw": 1.5}, {"id": "fan-2"}],
        })
    );
    // "primary" wrote `alerts` after two operations adding `fan-2`,
    // "secondary" after one adding `kw`: the higher counter wins.
    assert_eq!(doc.conflicts()[0].losers[0].value, json!("q3"));
    assert_eq!(sha256_hex(&doc.save()), GOLDEN_SCENARIO_SHA256);
}

const GOLDEN_SCENARIO_SHA256: &str =
    "96b879ac6964d4b8ff16048b2b6b884bf4eec0039f2ad7f2f2fb9d5bd8e531ce";

#[test]
fn automerge_save_alone_depends_on_merge_order() {
    // Why `save` rebuilds: automerge's own bytes differ by merge order.
    let start = base(json!({"k": 0}));
    let a = edited(&start, "primary", json!({"k": 1, "a": 1}));
    let b = edited(&start, "secondary", json!({"k": 2, "b": 1}));
    let load = |d: &AppDocument| Automerge::load(&d.save()).unwrap();
    let (mut raw_ab, mut raw_ba) = (load(&a), load(&b));
    raw_ab.merge(&mut load(&b)).unwrap();
    raw_ba.merge(&mut load(&a)).unwrap();
    assert_eq!(raw_ab.get_heads(), raw_ba.get_heads());
    assert_ne!(raw_ab.save_nocompress(), raw_ba.save_nocompress());
    assert_eq!(merged(&a, &b).save(), merged(&b, &a).save());
}

#[test]
fn load_of_save_is_the_same_document() {
    let doc = scenario();
    let bytes = doc.save();
    let loaded = AppDocument::load(&bytes).unwrap();
    assert_eq!(loaded, doc);
    assert_eq!(loaded.to_json(), doc.to_json());
    assert_eq!(loaded.conflicts(), doc.conflicts());
    assert_eq!(loaded.save(), bytes);
    // Compressed automerge bytes load too, and save canonically.
    let compressed = Automerge::load(&bytes).unwrap().save();
    assert_eq!(AppDocument::load(&compressed).unwrap().save(), bytes);
}

#[test]
fn serde_is_canonical_hex() {
    let doc = scenario();
    let text = serde_json::to_string(&doc).unwrap();
    assert!(text.starts_with("\"856f4a83"), "{text}");
    let back: AppDocument = serde_json::from_str(&text).unwrap();
    assert_eq!(back, doc);

    // A hub state holding documents has the same bytes whatever the order
    // the documents' changes were merged in.
    let start = base(json!({"k": 0}));
    let a = edited(&start, "primary", json!({"k": 1}));
    let b = edited(&start, "secondary", json!({"k": 2}));
    let state =
        |d: AppDocument| serde_json::to_vec(&BTreeMap::from([("routing".to_owned(), d)])).unwrap();
    assert_eq!(state(merged(&a, &b)), state(merged(&b, &a)));

    for bad in ["\"abc\"", "\"zz\"", "\"00\"", "12"] {
        assert!(serde_json::from_str::<AppDocument>(bad).is_err(), "{bad}");
    }
}

// ---- loading untrusted bytes ---------------------------------------------------

fn raw_doc(actor: u8, f: impl FnOnce(&mut automerge::transaction::Transaction<'_>)) -> Vec<u8> {
    let mut doc = Automerge::new().with_actor(ActorId::from([actor; 16]));
    let mut tx = doc.transaction();
    f(&mut tx);
    tx.commit_with(CommitOptions::default().with_time(0));
    doc.save()
}

#[test]
fn load_rejects_what_is_not_json() {
    let cases: [(Vec<u8>, &str, &str); 4] = [
        (
            raw_doc(1, |tx| {
                tx.put_object(ROOT, "t", ObjType::Table).unwrap();
            }),
            "/t",
            "table object",
        ),
        (
            raw_doc(1, |tx| {
                let l = tx.put_object(ROOT, "l", ObjType::List).unwrap();
                tx.insert(&l, 0, ScalarValue::Timestamp(0)).unwrap();
            }),
            "/l/0",
            "timestamp",
        ),
        (
            raw_doc(1, |tx| {
                tx.put(ROOT, "f", f64::NAN).unwrap();
            }),
            "/f",
            "non-finite number",
        ),
        (
            raw_doc(1, |tx| {
                tx.put(ROOT, "b", ScalarValue::Bytes(vec![1])).unwrap();
            }),
            "/b",
            "byte string",
        ),
    ];
    for (bytes, at, what) in cases {
        match AppDocument::load(&bytes) {
            Err(AppMetaError::NotJson { path, kind }) => {
                assert_eq!((path.as_str(), kind), (at, what))
            }
            other => panic!("{at}: {other:?}"),
        }
    }
    assert!(matches!(
        AppDocument::load(b"\x85\x6f\x4a\x83garbage"),
        Err(AppMetaError::InvalidBytes { .. })
    ));
}

#[test]
fn text_reads_as_a_string_and_a_counter_as_its_sum() {
    let bytes = raw_doc(1, |tx| {
        let t = tx.put_object(ROOT, "t", ObjType::Text).unwrap();
        tx.splice_text(&t, 0, 0, "hello").unwrap();
        let l = tx.put_object(ROOT, "l", ObjType::List).unwrap();
        tx.insert(&l, 0, ScalarValue::counter(3)).unwrap();
    });
    let start = AppDocument::load(&bytes).unwrap();
    assert_eq!(start.to_json(), json!({"t": "hello", "l": [3]}));

    // Concurrent edits through JSON: the text is spliced, not replaced,
    // and the counter incremented, not set.
    let mut a = start.clone();
    a.set_json(&replica("primary"), &json!({"t": "hello world", "l": [4]}))
        .unwrap();
    let mut b = start.clone();
    b.set_json(&replica("secondary"), &json!({"t": "Hello", "l": [1]}))
        .unwrap();
    let ab = merged(&a, &b);
    assert_eq!(ab.to_json(), json!({"t": "Hello world", "l": [2]}));
    assert_eq!(ab.save(), merged(&b, &a).save());
    assert!(ab.conflicts().is_empty());

    // A value of another kind replaces the text or counter whole.
    let mut c = start.clone();
    c.set_json(&replica("primary"), &json!({"t": 5, "l": [1.5]}))
        .unwrap();
    assert_eq!(c.to_json(), json!({"t": 5, "l": [1.5]}));
}

#[test]
fn load_rejects_changes_without_their_history() {
    let start = base(json!({"k": 0}));
    let next = edited(&start, "primary", json!({"k": 1}));
    let after = edited(&next, "primary", json!({"k": 2}));
    let raw = Automerge::load(&after.save()).unwrap();
    let last = raw.get_changes(&start_heads(&next)).pop().unwrap();
    // A lone change whose parent is missing is not a document.
    let err = AppDocument::load(last.raw_bytes()).unwrap_err();
    assert!(matches!(err, AppMetaError::InvalidBytes { .. }), "{err}");
    // A document followed by a change whose parent it lacks loads in
    // automerge, the change parked; here it is refused.
    let mut bytes = start.save();
    bytes.extend_from_slice(last.raw_bytes());
    let err = AppDocument::load(&bytes).unwrap_err();
    assert!(
        matches!(err, AppMetaError::MissingDependencies { missing: 1 }),
        "{err}"
    );
}

fn start_heads(doc: &AppDocument) -> Vec<automerge::ChangeHash> {
    Automerge::load(&doc.save()).unwrap().get_heads()
}

#[test]
fn merging_two_histories_of_one_actor_is_refused_and_changes_nothing() {
    let a = AppDocument::load(&raw_doc(7, |tx| tx.put(ROOT, "k", 1).unwrap())).unwrap();
    let b = AppDocument::load(&raw_doc(7, |tx| tx.put(ROOT, "k", 2).unwrap())).unwrap();
    let mut m = a.clone();
    let err = m.try_merge(&b).unwrap_err();
    assert!(
        matches!(err, AppMetaError::ActorReused { seq: 1, .. }),
        "{err}"
    );
    assert_eq!(m, a);
    // A hub state holding them says so too, naming the document, and is
    // left as it was.
    let state = |doc: &AppDocument| -> HubState {
        let json = json!({"store": {}, "ctx": {"vv": {}}, "apps": {"routes": doc}});
        serde_json::from_value(json).expect("a state with one document")
    };
    let (sa, sb) = (state(&a), state(&b));
    let mut merged = sa.clone();
    let err = merged.try_merge(&sb).unwrap_err();
    assert_eq!(
        err.to_string(),
        "application document \"routes\" cannot be merged"
    );
    assert_eq!(err.name, "routes");
    assert!(matches!(
        err.source,
        AppMetaError::ActorReused { seq: 1, .. }
    ));
    assert_eq!(merged, sa);
    let mut applied = sa.clone();
    let delta = sb.delta_since(&failback::VersionVector::new());
    assert!(applied.apply_delta(&delta).is_err());
    assert_eq!(applied, sa);
    // Foreign actors carry no replica.
    assert!(a.conflicts().is_empty());
}

// ---- laws ----------------------------------------------------------------------

const KEYS: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Debug)]
enum Op {
    Put(usize, i64),
    PutText(usize, usize),
    Delete(usize),
    PutNested(usize, usize, i64),
    Push(usize, i64),
    Remove(usize, usize),
}

#[derive(Clone, Debug)]
enum Step {
    Edit(usize, Op),
    Sync { from: usize, to: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 0..3i64).prop_map(|(k, v)| Op::Put(k, v)),
        (0..3usize, 0..2usize).prop_map(|(k, v)| Op::PutText(k, v)),
        (0..3usize).prop_map(Op::Delete),
        (0..3usize, 0..2usize, 0..3i64).prop_map(|(k, s, v)| Op::PutNested(k, s, v)),
        (0..3usize, 0..3i64).prop_map(|(k, v)| Op::Push(k, v)),
        (0..3usize, 0..3usize).prop_map(|(k, i)| Op::Remove(k, i)),
    ]
}

fn step(replicas: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..replicas, op()).prop_map(|(r, o)| Step::Edit(r, o)),
        1 => (0..replicas, 0..replicas).prop_map(|(from, to)| Step::Sync { from, to }),
    ]
}

fn apply(value: &mut Value, op: &Op) {
    let Value::Object(map) = value else { return };
    match *op {
        Op::Put(k, v) => {
            map.insert(KEYS[k].into(), v.into());
        }
        Op::PutText(k, v) => {
            map.insert(KEYS[k].into(), ["on", "off"][v].into());
        }
        Op::Delete(k) => {
            map.remove(KEYS[k]);
        }
        Op::PutNested(k, s, v) => {
            let slot = map.entry(KEYS[k]).or_insert_with(|| json!({}));
            if !slot.is_object() {
                *slot = json!({});
            }
            if let Value::Object(inner) = slot {
                inner.insert(["x", "y"][s].into(), v.into());
            }
        }
        Op::Push(k, v) => {
            let slot = map.entry(KEYS[k]).or_insert_with(|| json!([]));
            match slot {
                Value::Array(items) => items.push(v.into()),
                other => *other = json!([v]),
            }
        }
        Op::Remove(k, i) => {
            if let Some(Value::Array(items)) = map.get_mut(KEYS[k]) {
                if i < items.len() {
                    items.remove(i);
                }
            }
        }
    }
}

const NAMES: [&str; 3] = ["primary", "secondary", "tertiary"];

/// Replays `steps` on three replicas sharing one base document.
fn replay(steps: &[Step]) -> Vec<AppDocument> {
    let start = base(json!({"a": 1, "b": [0], "c": {"x": 0}}));
    let mut docs = vec![start.clone(), start.clone(), start];
    for s in steps {
        match s {
            Step::Edit(r, op) => {
                let mut value = docs[*r].to_json();
                apply(&mut value, op);
                docs[*r].set_json(&replica(NAMES[*r]), &value).unwrap();
                assert_eq!(docs[*r].to_json(), value);
            }
            Step::Sync { from, to } => {
                let other = docs[*from].clone();
                docs[*to].try_merge(&other).unwrap();
            }
        }
    }
    for d in &docs {
        d.check_invariants().expect("invariants hold");
    }
    docs
}

fn same(x: &AppDocument, y: &AppDocument) {
    assert_eq!(x, y);
    assert_eq!(x.to_json(), y.to_json());
    assert_eq!(x.save(), y.save());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn merge_is_commutative_associative_idempotent(
        steps in proptest::collection::vec(step(3), 0..24),
    ) {
        let docs = replay(&steps);
        let (a, b, c) = (&docs[0], &docs[1], &docs[2]);
        same(&merged(a, b), &merged(b, a));
        same(&merged(&merged(a, b), c), &merged(a, &merged(b, c)));
        same(&merged(a, a), a);
        same(&merged(&merged(a, b), b), &merged(a, b));
        // All replicas converge whatever the order, conflicts included.
        let all = merged(&merged(a, b), c);
        for order in [[c, b, a], [b, c, a], [c, a, b]] {
            let other = merged(&merged(order[0], order[1]), order[2]);
            same(&other, &all);
            prop_assert_eq!(other.conflicts(), all.conflicts());
        }
        let loaded = AppDocument::load(&all.save()).unwrap();
        same(&loaded, &all);
    }

    #[test]
    fn set_json_reaches_any_list(
        old in proptest::collection::vec(0..4i64, 0..12),
        new in proptest::collection::vec(0..4i64, 0..12),
        nest in any::<bool>(),
    ) {
        let wrap = |items: &[i64]| -> Value {
            let items: Vec<Value> = items
                .iter()
                .map(|&i| if nest && i % 2 == 0 { json!({"v": i}) } else { json!(i) })
                .collect();
            json!({ "l": items })
        };
        let mut doc = base(wrap(&old));
        doc.set_json(&replica("primary"), &wrap(&new)).unwrap();
        prop_assert_eq!(doc.to_json(), wrap(&new));
        doc.check_invariants().expect("invariants hold");
    }

    /// The list diff keeps every element a replica kept: one replica
    /// deletes and inserts elements around the ones it keeps, another
    /// edits inside one of those, and the merge shows that edit on that
    /// element, wherever the first replica's edits moved it. (A diff that
    /// rewrote shifted elements in place would put the edit on another.)
    #[test]
    fn an_edit_inside_an_element_another_replica_kept_survives_its_list_edits(
        n in 1..12usize,
        keep in proptest::collection::vec(any::<bool>(), 12),
        inserts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        pick in any::<prop::sample::Index>(),
    ) {
        let element = |id: usize, kw: i64| json!({"id": id, "kw": kw});
        let old: Vec<Value> = (0..n).map(|i| element(i, 0)).collect();
        let kept: Vec<usize> = (0..n).filter(|&i| keep[i]).collect();
        prop_assume!(!kept.is_empty());
        let mut list: Vec<Value> = kept.iter().map(|&i| element(i, 0)).collect();
        for (j, at) in inserts.iter().enumerate() {
            list.insert(at.index(list.len() + 1), element(100 + j, 0));
        }
        let target = kept[pick.index(kept.len())];
        let mut touched = old.clone();
        touched[target]["kw"] = json!(1);
        let start = base(json!({ "l": old }));
        let a = edited(&start, "primary", json!({ "l": list }));
        let b = edited(&start, "secondary", json!({ "l": touched }));
        let m = both_ways(&a, &b);
        for item in &mut list {
            if item["id"] == json!(target) {
                item["kw"] = json!(1);
            }
        }
        prop_assert_eq!(m.to_json(), json!({ "l": list }));
        prop_assert!(m.conflicts().is_empty());
    }

    #[test]
    fn load_never_panics_on_damaged_bytes(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        tail in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut bytes = scenario().save();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= byte | 1;
        }
        bytes.extend(tail);
        if let Ok(doc) = AppDocument::load(&bytes) {
            doc.check_invariants().expect("invariants hold");
            let _ = doc.to_json();
        }
    }
}

// ---- nesting limit ---------------------------------------------------------------

/// A document nesting `levels` deep, the root object counting as one:
/// `{"x": ...}` around `1`, or arrays below the root when `arrays`.
fn nested(levels: usize, arrays: bool) -> Value {
    let mut value = json!(1);
    for _ in 1..levels {
        value = if arrays {
            json!([value])
        } else {
            json!({ "x": value })
        };
    }
    json!({ "x": value })
}

#[test]
fn nesting_is_accepted_to_the_limit_and_refused_past_it_for_objects_and_arrays() {
    let hub = replica("primary");
    let limit = AppDocument::MAX_DEPTH;
    for arrays in [false, true] {
        // The root and `limit - 1` containers below it: at the limit.
        let deepest = nested(limit, arrays);
        let doc = AppDocument::from_json(&hub, &deepest).unwrap();
        doc.check_invariants().expect("at the limit is allowed");
        let loaded = AppDocument::load(&doc.save()).expect("and loads again");
        assert_eq!(loaded.to_json(), deepest);
        // One more level is refused before anything is written, naming
        // where the limit was crossed.
        let mut edited = doc.clone();
        let err = edited
            .set_json(&hub, &nested(limit + 1, arrays))
            .unwrap_err();
        let at = if arrays { "/x/0/0" } else { "/x/x/x" };
        match &err {
            AppMetaError::TooDeep { path, limit: 128 } => assert!(path.starts_with(at), "{err}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(edited, doc);
    }
}

#[test]
fn a_loaded_document_nesting_past_the_limit_is_refused() {
    // Maps and lists in turn, 130 levels with the root: past the limit,
    // which only a document written by another program can be.
    let bytes = raw_doc(1, |tx| {
        let mut obj = tx.put_object(ROOT, "x", ObjType::Map).unwrap();
        for level in 0..AppDocument::MAX_DEPTH {
            obj = if level % 2 == 0 {
                tx.put_object(&obj, "x", ObjType::List).unwrap()
            } else {
                tx.insert_object(&obj, 0, ObjType::Map).unwrap()
            };
        }
    });
    match AppDocument::load(&bytes) {
        Err(AppMetaError::TooDeep { path, limit: 128 }) => {
            assert!(path.starts_with("/x/x/0/x/0"), "{path}")
        }
        other => panic!("{other:?}"),
    }
}

// ---- equality, Debug and serde's other forms ---------------------------------------

#[test]
fn documents_with_other_changes_are_not_equal() {
    let start = base(json!({"k": 1}));
    let next = edited(&start, "primary", json!({"k": 2}));
    assert_ne!(start, next);
    assert_ne!(AppDocument::new(), start);
    // The same value reached by another history is another document.
    let other = edited(&next, "primary", json!({"k": 1}));
    assert_eq!(other.to_json(), start.to_json());
    assert_ne!(other, start);
}

#[test]
fn debug_shows_the_heads_and_the_value() {
    let doc = base(json!({"k": "v"}));
    let head = Automerge::load(&doc.save()).unwrap().get_heads()[0];
    let text = format!("{doc:?}");
    assert_eq!(
        text,
        format!(r#"AppDocument {{ heads: ["{head}"], value: Object {{"k": String("v")}} }}"#)
    );
}

/// A deserializer of a binary format: hands the visitor the bytes, as
/// bytes or as a sequence of `u8`.
struct Binary<'a> {
    bytes: &'a [u8],
    as_seq: bool,
}

impl<'de> serde::Deserializer<'de> for Binary<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        if self.as_seq {
            v.visit_seq(serde::de::value::SeqDeserializer::new(
                self.bytes.iter().copied(),
            ))
        } else {
            v.visit_bytes(self.bytes)
        }
    }

    fn is_human_readable(&self) -> bool {
        false
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

#[test]
fn serde_reads_upper_case_hex_and_the_bytes_of_binary_formats() {
    use serde::Deserialize;
    let doc = scenario();
    let hex = serde_json::to_string(&doc).unwrap();
    let back: AppDocument = serde_json::from_str(&hex.to_uppercase()).unwrap();
    assert_eq!(back, doc);
    let bytes = doc.save();
    for as_seq in [false, true] {
        let back = AppDocument::deserialize(Binary {
            bytes: &bytes,
            as_seq,
        })
        .unwrap();
        assert_eq!(back.save(), bytes, "as_seq: {as_seq}");
    }
    // What a wrong type is told.
    let err = serde_json::from_str::<AppDocument>("12").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid type: integer `12`, expected an automerge document as hex text or bytes at line 1 column 2"
    );
    let err = serde_json::from_str::<AppDocument>("\"abc\"").unwrap_err();
    assert!(err.to_string().contains("odd number of digits"), "{err}");
    let err = serde_json::from_str::<AppDocument>("\"0g\"").unwrap_err();
    assert!(err.to_string().contains("not a hex digit"), "{err}");
}
