//! The failback policies, scenario by scenario (the properties are in
//! `doc_laws.rs`).

use failback::doc::{
    Conflict, DeletePolicy, DeviceSnapshot, Entity, HubState, Policies, Rule, Status, StatusValue,
};
use failback::{ReplicaId, Stamp};
use serde_json::{Value, json};

fn hub(name: &str) -> ReplicaId {
    ReplicaId::new(name).unwrap()
}

fn at(ms: i64, name: &str) -> Stamp {
    Stamp::new(ms, 0, hub(name))
}

fn device(id: &str, key: &str) -> DeviceSnapshot {
    let mut d =
        DeviceSnapshot::enabled_sas(id, &format!("{key}-primary"), &format!("{key}-secondary"));
    d.device.tags = json!({"site": "berlin"})
        .as_object()
        .unwrap()
        .clone()
        .into();
    d.device.desired = json!({"fw": "1.0", "cfg": {"rate": 5, "mode": "eco"}})
        .as_object()
        .unwrap()
        .clone()
        .into();
    d
}

fn base_with(devices: &[DeviceSnapshot]) -> HubState {
    let mut base = HubState::new();
    for d in devices {
        base.put_device(d, &at(0, "base"), None);
    }
    base
}

fn read(state: &HubState, id: &str) -> (Option<DeviceSnapshot>, Vec<Conflict>) {
    let mut conflicts = Vec::new();
    let snapshot = state.read_device(id, &Policies::default(), &mut conflicts);
    (snapshot, conflicts)
}

/// `base` as each hub saw it after concurrent writes to `d`: the primary
/// disabled it at 5 ("stolen"), the secondary enabled it at 9 ("back").
fn disabled_then_enabled(base: &HubState, d: &DeviceSnapshot) -> (HubState, HubState) {
    let mut p = base.clone();
    p.put_device(
        &with_status(d, Status::Disabled, "stolen"),
        &at(5, "primary"),
        None,
    );
    let mut s = base.clone();
    s.put_device(
        &with_status(d, Status::Enabled, "back"),
        &at(9, "secondary"),
        None,
    );
    (p, s)
}

fn merged(a: &HubState, b: &HubState) -> HubState {
    let mut m = a.clone();
    m.try_merge(b).unwrap();
    let mut other = b.clone();
    other.try_merge(a).unwrap();
    assert_eq!(
        m.to_canonical_json().unwrap(),
        other.to_canonical_json().unwrap(),
        "merge must commute"
    );
    m.check_invariants().unwrap();
    m
}

fn with_status(d: &DeviceSnapshot, status: Status, reason: &str) -> DeviceSnapshot {
    let mut d = d.clone();
    d.device.status = Some(StatusValue {
        status,
        reason: Some(reason.into()),
    });
    d
}

#[test]
fn disabled_wins_over_a_later_concurrent_enable() {
    let d = with_status(&device("d1", "k"), Status::Disabled, "maintenance");
    let base = base_with(std::slice::from_ref(&d));
    let (p, s) = disabled_then_enabled(&base, &d);
    let m = merged(&p, &s);
    let (snap, conflicts) = read(&m, "d1");
    let status = snap.unwrap().device.status.unwrap();
    assert_eq!(status.status, Status::Disabled);
    assert_eq!(
        status.reason.as_deref(),
        Some("stolen"),
        "the reason follows the status"
    );
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].rule, Rule::DisabledWins);
    assert_eq!(conflicts[0].losers[0].hub, hub("secondary"));
}

#[test]
fn an_enable_that_saw_the_disable_wins() {
    let d = device("d1", "k");
    let base = base_with(std::slice::from_ref(&d));
    let mut s = base.clone();
    s.put_device(
        &with_status(&d, Status::Disabled, "x"),
        &at(5, "secondary"),
        None,
    );
    let mut p = base.clone();
    p.try_merge(&s).unwrap();
    p.put_device(
        &with_status(&d, Status::Enabled, "ok"),
        &at(1, "primary"),
        None,
    );
    let m = merged(&p, &s);
    let (snap, conflicts) = read(&m, "d1");
    assert_eq!(snap.unwrap().device.status.unwrap().status, Status::Enabled);
    assert!(conflicts.is_empty());
}

#[test]
fn delete_wins_over_a_concurrent_update_which_is_logged() {
    let d = device("d1", "k");
    let base = base_with(std::slice::from_ref(&d));
    let mut p = base.clone();
    let mut updated = d.clone();
    updated.device.desired.insert("fw".into(), json!("2.0"));
    p.put_device(&updated, &at(9, "primary"), None);
    let mut s = base.clone();
    assert!(s.delete_device("d1", &at(5, "secondary")));
    let m = merged(&p, &s);
    let (snap, conflicts) = read(&m, "d1");
    assert!(snap.is_none());
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].rule, Rule::DeleteWins);
    assert_eq!(conflicts[0].path, "properties.desired.fw");
    assert_eq!(conflicts[0].losers[0].value, json!("2.0"));
    assert_eq!(conflicts[0].winner.hub, hub("secondary"));

    // The team that prefers updates gets the device back, with the update.
    let team = Policies {
        delete: DeletePolicy::UpdateWins,
        ..Policies::default()
    };
    let mut conflicts = Vec::new();
    let snap = m.read_device("d1", &team, &mut conflicts).unwrap();
    assert_eq!(snap.device.desired["fw"], json!("2.0"));
    assert_eq!(conflicts[0].rule, Rule::UpdateWins);
}

#[test]
fn a_recreated_device_inherits_nothing() {
    let mut d = device("d1", "old");
    d.modules.insert("mod".into(), Entity::default());
    let base = base_with(std::slice::from_ref(&d));
    let mut s = base.clone();
    s.delete_device("d1", &at(5, "secondary"));
    let fresh = DeviceSnapshot {
        id: "d1".into(),
        device: Entity {
            authentication: device("d1", "new").device.authentication,
            ..Default::default()
        },
        ..Default::default()
    };
    s.put_device(&fresh, &at(6, "secondary"), None);
    // Meanwhile the primary, which never saw the delete, edits the old one.
    let mut p = base.clone();
    let mut edited = d.clone();
    edited.device.tags.insert("owner".into(), json!("ops"));
    p.put_device(&edited, &at(7, "primary"), None);

    let m = merged(&p, &s);
    let (snap, conflicts) = read(&m, "d1");
    let snap = snap.unwrap();
    assert_eq!(snap, fresh, "no old key, tag, twin or module comes back");
    assert!(
        conflicts
            .iter()
            .any(|c| c.rule == Rule::DeleteWins && c.path == "tags.owner")
    );
}

#[test]
fn authentication_is_one_value_and_secrets_stay_hidden() {
    let d = device("d1", "k0");
    let base = base_with(std::slice::from_ref(&d));
    let mut p = base.clone();
    let mut rotated_p = d.clone();
    rotated_p.device.authentication = device("d1", "kp").device.authentication;
    p.put_device(&rotated_p, &at(3, "primary"), None);
    let mut s = base.clone();
    let mut rotated_s = d.clone();
    rotated_s.device.authentication = device("d1", "ks").device.authentication;
    s.put_device(&rotated_s, &at(4, "secondary"), None);
    let m = merged(&p, &s);
    let (snap, conflicts) = read(&m, "d1");
    assert_eq!(
        snap.unwrap().device.authentication,
        rotated_s.device.authentication
    );
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].rule, Rule::WholeValue);
    let shown = serde_json::to_string(&conflicts).unwrap() + &format!("{conflicts:?}");
    for key in ["k0-", "kp-", "ks-"] {
        assert!(!shown.contains(key), "{key} leaked: {shown}");
    }
    assert!(shown.contains("sha256:"));
}

#[test]
fn null_removes_and_survives_concurrent_sibling_edits() {
    let d = device("d1", "k");
    let base = base_with(std::slice::from_ref(&d));
    let mut p = base.clone();
    let mut removed = d.clone();
    removed
        .device
        .desired
        .get_mut("cfg")
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove("mode");
    p.put_device(&removed, &at(3, "primary"), None);
    let mut s = base.clone();
    let mut edited = d.clone();
    edited.device.desired["cfg"]["rate"] = json!(10);
    s.put_device(&edited, &at(2, "secondary"), None);
    let m = merged(&p, &s);
    let (snap, conflicts) = read(&m, "d1");
    assert_eq!(snap.unwrap().device.desired["cfg"], json!({"rate": 10}));
    assert!(conflicts.is_empty());
}

#[test]
fn a_scalar_against_an_object_resolves_by_stamp_and_logs_the_loser() {
    let d = device("d1", "k");
    let base = base_with(std::slice::from_ref(&d));
    let mut p = base.clone();
    let mut scalar = d.clone();
    scalar.device.desired.insert("cfg".into(), json!("off"));
    p.put_device(&scalar, &at(3, "primary"), None);
    let mut s = base.clone();
    let mut deeper = d.clone();
    deeper.device.desired["cfg"]["extra"] = json!({"x": 1});
    s.put_device(&deeper, &at(2, "secondary"), None);
    let m = merged(&p, &s);
    let (snap, conflicts) = read(&m, "d1");
    assert_eq!(snap.unwrap().device.desired["cfg"], json!("off"));
    let shape: Vec<_> = conflicts.iter().filter(|c| c.rule == Rule::Shape).collect();
    assert_eq!(shape.len(), 1, "{conflicts:?}");
    assert_eq!(shape[0].losers[0].value, json!({"extra": {"x": 1}}));
}

/// Policy 4: removing an object is a write at its path too, ranked by
/// stamp against a scalar the other hub put there concurrently, whichever
/// is later winning and the loser logged. A child the other hub added
/// concurrently is a leaf the removal never saw: it stays.
#[test]
fn removing_an_object_ranks_by_stamp_against_a_concurrent_scalar() {
    // `desired.cfg` of `d1` and the conflicts, once the primary wrote its
    // device at its stamp and the secondary its own, both over `base`.
    let cfg_after = |base: &DeviceSnapshot,
                     (primary, primary_at): (&DeviceSnapshot, i64),
                     (secondary, secondary_at): (&DeviceSnapshot, i64)| {
        let base = base_with(std::slice::from_ref(base));
        let mut p = base.clone();
        p.put_device(primary, &at(primary_at, "primary"), None);
        let mut s = base;
        s.put_device(secondary, &at(secondary_at, "secondary"), None);
        let (snap, conflicts) = read(&merged(&p, &s), "d1");
        (snap.unwrap().device.desired.get("cfg").cloned(), conflicts)
    };
    let d = device("d1", "k");
    let mut removed = d.clone();
    removed.device.desired.remove("cfg");
    let mut scalar = d.clone();
    scalar.device.desired.insert("cfg".into(), json!("off"));
    for (remove_at, scalar_at, expect) in [(3, 2, None), (2, 3, Some(json!("off")))] {
        let (cfg, conflicts) = cfg_after(&d, (&removed, remove_at), (&scalar, scalar_at));
        assert_eq!(cfg, expect, "removal at {remove_at}, scalar at {scalar_at}");
        let at_cfg: Vec<_> = conflicts
            .iter()
            .filter(|c| c.path.ends_with("desired.cfg"))
            .collect();
        assert_eq!(at_cfg.len(), 1, "{conflicts:?}");
        let loser = if expect.is_none() {
            json!("off")
        } else {
            Value::Null
        };
        assert_eq!(at_cfg[0].losers[0].value, loser);
    }
    // A deeper scalar, where the removing hub saw an object inside the one
    // it removed, is ranked the same way.
    let mut nested = d.clone();
    nested.device.desired["cfg"]["mode"] = json!({"night": true});
    let mut eco = nested.clone();
    eco.device.desired["cfg"]["mode"] = json!("eco");
    assert_eq!(cfg_after(&nested, (&removed, 3), (&eco, 2)).0, None);
    // Both hubs removing it agree: nothing to log.
    let (cfg, conflicts) = cfg_after(&d, (&removed, 3), (&removed, 2));
    assert_eq!(cfg, None);
    assert!(conflicts.is_empty(), "{conflicts:?}");
    // A child added concurrently stays, whatever the stamps.
    let mut added = d.clone();
    added.device.desired["cfg"]["extra"] = json!(1);
    let (cfg, _) = cfg_after(&d, (&removed, 3), (&added, 2));
    assert_eq!(cfg, Some(json!({"extra": 1})));
}

/// Policy 7 in a live state: two replicas that create one id without
/// seeing each other's creation made one device, merged field by field:
/// disabled wins, keys whole by stamp (the other's logged as fingerprints),
/// tags from both. Nothing is dropped as a whole creation.
#[test]
fn concurrent_creations_are_one_device_merged_field_by_field() {
    let empty = HubState::new();
    let mut p = empty.clone();
    let quarantined = with_status(&device("d1", "kp"), Status::Disabled, "quarantine");
    p.put_device(&quarantined, &at(1, "primary"), None);
    let mut s = empty.clone();
    let mut other = device("d1", "ks");
    other.device.tags.insert("only-s".into(), json!(true));
    s.put_device(&other, &at(2, "secondary"), None);
    let m = merged(&p, &s);
    let (snap, conflicts) = read(&m, "d1");
    let snap = snap.unwrap();
    assert_eq!(snap.device.status.map(|s| s.status), Some(Status::Disabled));
    assert_eq!(snap.device.tags["only-s"], json!(true));
    assert_eq!(snap.device.tags["site"], json!("berlin"));
    assert_eq!(snap.device.authentication, other.device.authentication);
    assert!(conflicts.iter().all(|c| c.rule != Rule::ConcurrentCreate));
    assert!(
        conflicts.iter().any(|c| c.path == "authentication"),
        "{conflicts:?}"
    );
    assert!(!serde_json::to_string(&conflicts).unwrap().contains("kp-"));

    // A third replica's creation joins the same device; a delete that saw
    // every creation removes it, and a creation after that starts empty.
    let mut t = empty.clone();
    let mut third = device("d1", "kt");
    third.device.tags.insert("only-t".into(), json!(1));
    t.put_device(&third, &at(3, "tertiary"), None);
    let mut all = merged(&m, &t);
    let (snap, _) = read(&all, "d1");
    let snap = snap.unwrap();
    assert_eq!(snap.device.tags["only-t"], json!(1));
    assert_eq!(snap.device.status.map(|s| s.status), Some(Status::Disabled));
    all.delete_device("d1", &at(4, "primary"));
    assert_eq!(read(&all, "d1").0, None);
    let fresh = DeviceSnapshot::enabled_sas("d1", "new-primary", "new-secondary");
    all.put_device(&fresh, &at(5, "primary"), None);
    assert_eq!(read(&all, "d1").0, Some(fresh));
}

/// Creations that saw different incarnations are different incarnations:
/// one replica re-created the device after a delete the other never saw.
/// The delete wins over the other's concurrent update of the old one
/// (policy 2), so the re-created device stands alone.
#[test]
fn a_recreation_is_not_merged_with_the_incarnation_it_replaced() {
    let d = device("d1", "old");
    let base = base_with(std::slice::from_ref(&d));
    let mut p = base.clone();
    p.delete_device("d1", &at(1, "primary"));
    let fresh = DeviceSnapshot::enabled_sas("d1", "new-primary", "new-secondary");
    p.put_device(&fresh, &at(2, "primary"), None);
    let mut s = base.clone();
    let mut touched = d.clone();
    touched.device.tags.insert("late".into(), json!(true));
    s.put_device(&touched, &at(3, "secondary"), None);
    let (snap, conflicts) = read(&merged(&p, &s), "d1");
    assert_eq!(snap, Some(fresh));
    assert!(
        conflicts.iter().any(|c| c.rule == Rule::DeleteWins),
        "{conflicts:?}"
    );
}

#[test]
fn unchanged_devices_take_no_write() {
    let d = device("d1", "k");
    let mut state = base_with(std::slice::from_ref(&d));
    let before = state.to_canonical_json().unwrap();
    assert!(!state.put_device(&d, &at(5, "primary"), None));
    assert_eq!(state.to_canonical_json().unwrap(), before);
}

#[test]
fn deltas_carry_what_the_other_lacks_and_apply_idempotently() {
    let base = base_with(&[device("d1", "a"), device("d2", "b"), device("d3", "c")]);
    let mut p = base.clone();
    p.put_device(
        &with_status(&device("d2", "b"), Status::Disabled, "r"),
        &at(5, "primary"),
        None,
    );
    p.delete_device("d3", &at(6, "primary"));
    let mut s = base.clone();
    let delta = p.delta_since(s.version_vector());
    assert_eq!(delta.len(), 2);
    s.apply_delta(&delta).unwrap();
    assert_eq!(
        s.to_canonical_json().unwrap(),
        p.to_canonical_json().unwrap()
    );
    s.apply_delta(&delta).unwrap();
    assert_eq!(
        s.to_canonical_json().unwrap(),
        p.to_canonical_json().unwrap()
    );
    assert!(p.delta_since(s.version_vector()).is_empty());
}

/// Policy 7 through the merge: a device the base lacks, created on two
/// hubs, is one device merged field by field. The quarantined creation
/// stays disabled even though the enabled one is later, the tags of both
/// are kept, the keys are one side's whole and the other's are logged.
#[test]
fn creations_on_two_hubs_are_one_device_and_disabled_wins() {
    use failback::reconcile::{Base, HubDevice, merge_device};
    let mut quarantined = with_status(&device("d1", "kp"), Status::Disabled, "quarantine");
    quarantined.device.tags = json!({"site": "berlin", "cell": 4})
        .as_object()
        .unwrap()
        .clone()
        .into();
    let mut enabled = device("d1", "ks");
    enabled.device.tags = json!({"site": "paris", "owner": "ops"})
        .as_object()
        .unwrap()
        .clone()
        .into();
    let (p, s) = (hub("primary"), hub("secondary"));
    let (sp, ss) = (at(1, "primary"), at(2, "secondary"));
    let hubs = [
        HubDevice {
            hub: &p,
            device: Some(&quarantined),
            times: None,
            stamp: &sp,
            recreated: false,
        },
        HubDevice {
            hub: &s,
            device: Some(&enabled),
            times: None,
            stamp: &ss,
            recreated: false,
        },
    ];
    let result = merge_device(Base::Absent, &hubs, &Policies::default());
    let merged = result.merged.unwrap();
    let status = merged.device.status.clone().unwrap();
    assert_eq!(status.status, Status::Disabled);
    assert_eq!(status.reason.as_deref(), Some("quarantine"));
    assert_eq!(
        serde_json::Value::Object(merged.device.tags.clone().into()),
        json!({"site": "paris", "cell": 4, "owner": "ops"})
    );
    assert_eq!(merged.device.authentication, enabled.device.authentication);
    let by_path: Vec<(&str, Rule)> = result
        .conflicts
        .iter()
        .map(|c| (c.path.as_str(), c.rule))
        .collect();
    assert_eq!(
        by_path,
        [
            ("status", Rule::DisabledWins),
            ("authentication", Rule::WholeValue),
            ("tags.site", Rule::LatestWins)
        ]
    );
    let keys = &result.conflicts[1];
    assert_eq!(keys.losers[0].hub, p);
    // Secrets only as fingerprints.
    assert!(
        !serde_json::to_string(&result.conflicts)
            .unwrap()
            .contains("kp-")
    );
}

/// Created on two hubs, then deleted on one, in the library's own ops:
/// the creations are edits of one incarnation (the merge starts every hub
/// from the same empty one), so a delete that saw both creations deletes
/// the device with nothing to log, and a delete that saw only its own hub's
/// creation wins over the other's as over any concurrent update (policy 2),
/// which is logged. (Through export files a hub's delete of a device it
/// created is only its absence, which is "never had it": the other hub's
/// creation is kept; see the unit tests of `reconcile::merge`.)
#[test]
fn created_on_two_hubs_then_deleted_on_one() {
    let empty = DeviceSnapshot {
        id: "d1".into(),
        ..DeviceSnapshot::default()
    };
    let start = base_with(&[empty]);
    let mut p = start.clone();
    p.put_device(&device("d1", "kp"), &at(1, "primary"), None);
    let mut s = start.clone();
    let mut other = device("d1", "ks");
    other.device.tags.insert("only-s".into(), json!(true));
    s.put_device(&other, &at(2, "secondary"), None);
    let (both, _) = read(&merged(&p, &s), "d1");
    assert!(both.is_some());

    // Deleted by a hub that had seen both creations: gone, nothing lost.
    let mut saw_both = merged(&p, &s);
    saw_both.delete_device("d1", &at(3, "primary"));
    let (snap, conflicts) = read(&merged(&saw_both, &s), "d1");
    assert_eq!(snap, None);
    assert!(conflicts.is_empty(), "{conflicts:?}");

    // Deleted by a hub that had seen only its own creation: the other's
    // concurrent creation loses to the delete and is logged, keys as
    // fingerprints only.
    let mut own_only = p.clone();
    own_only.delete_device("d1", &at(3, "primary"));
    let (snap, conflicts) = read(&merged(&own_only, &s), "d1");
    assert_eq!(snap, None);
    assert!(conflicts.iter().all(|c| c.rule == Rule::DeleteWins));
    let paths: Vec<&str> = conflicts.iter().map(|c| c.path.as_str()).collect();
    assert!(paths.contains(&"authentication"), "{paths:?}");
    assert!(paths.contains(&"tags.only-s"), "{paths:?}");
    assert!(
        conflicts
            .iter()
            .all(|c| c.losers[0].hub == hub("secondary"))
    );
    assert!(!serde_json::to_string(&conflicts).unwrap().contains("ks-"));
}

/// Policy 2 with generation ids, in the library's own ops: the hub that
/// re-created the device deleted the old incarnation and created a new one
/// that starts empty; the other hub's concurrent update of the old one is
/// a logged loser. The merge does this for a hub marked `recreated`.
#[test]
fn a_recreated_device_starts_empty_and_the_concurrent_update_is_logged() {
    use failback::reconcile::{Base, HubDevice, merge_device, recreated};
    let mut old = device("d1", "old");
    old.modules.insert("m".into(), Entity::default());
    let mut renewed = DeviceSnapshot::enabled_sas("d1", "new-primary", "new-secondary");
    renewed.device.tags.insert("fresh".into(), json!(true));
    let mut updated = old.clone();
    updated.device.desired.insert("fw".into(), json!("2.0"));
    let (p, s) = (hub("primary"), hub("secondary"));
    let (sp, ss) = (at(1, "primary"), at(2, "secondary"));
    let hubs = [
        HubDevice {
            hub: &p,
            device: Some(&renewed),
            times: None,
            stamp: &sp,
            recreated: recreated(Some("636"), Some("637")),
        },
        HubDevice {
            hub: &s,
            device: Some(&updated),
            times: None,
            stamp: &ss,
            recreated: recreated(Some("636"), Some("636")),
        },
    ];
    let result = merge_device(Base::Present(&old), &hubs, &Policies::default());
    // Nothing of the old incarnation: no old tags, desired or module.
    assert_eq!(result.merged.as_ref(), Some(&renewed));
    assert_eq!(result.conflicts.len(), 1, "{:?}", result.conflicts);
    let lost = &result.conflicts[0];
    assert_eq!(
        (lost.path.as_str(), lost.rule),
        ("properties.desired.fw", Rule::DeleteWins)
    );
    assert_eq!(lost.winner.hub, p);
    assert_eq!(lost.losers[0].hub, s);
    assert_eq!(lost.losers[0].value, json!("2.0"));
}

fn read_with(
    state: &HubState,
    id: &str,
    policies: &Policies,
) -> (Option<DeviceSnapshot>, Vec<Conflict>) {
    let mut conflicts = Vec::new();
    let snapshot = state.read_device(id, policies, &mut conflicts);
    (snapshot, conflicts)
}

fn update_wins() -> Policies {
    Policies {
        delete: DeletePolicy::UpdateWins,
        ..Policies::default()
    }
}

/// Policy 2 against a creation: the primary created and deleted a device
/// while the secondary, never seeing either, created it too, later by
/// stamp. The delete wins all the same (the secondary's creation is logged);
/// only under `UpdateWins` does the secondary's device come back.
#[test]
fn a_delete_wins_over_a_later_concurrent_creation() {
    let empty = HubState::new();
    let mut p = empty.clone();
    p.put_device(&device("d1", "kp"), &at(1, "primary"), None);
    assert!(p.delete_device("d1", &at(2, "primary")));
    let mut s = empty.clone();
    let mut other = device("d1", "ks");
    other.device.tags.insert("only-s".into(), json!(true));
    s.put_device(&other, &at(3, "secondary"), None);
    let m = merged(&p, &s);
    let (snap, conflicts) = read(&m, "d1");
    assert_eq!(snap, None);
    assert!(!conflicts.is_empty());
    assert!(
        conflicts.iter().all(|c| c.rule == Rule::DeleteWins),
        "{conflicts:?}"
    );
    let (snap, _) = read_with(&m, "d1", &update_wins());
    assert_eq!(snap, Some(other));
}

/// Under `UpdateWins`, an incarnation a delete did not see survives beside
/// the one created after the delete: the later creation wins and the other
/// is logged, each side stamped with its creation (the deleted one's is
/// the secondary's creation, not the primary's delete).
#[test]
fn concurrent_incarnations_are_ranked_and_logged_by_their_creation() {
    let empty = HubState::new();
    let mut p = empty.clone();
    p.put_device(&device("d1", "kp"), &at(1, "primary"), None);
    let mut s = empty.clone();
    let mut lost = device("d1", "ks");
    lost.modules.insert("m1".into(), device("d1", "km").device);
    s.put_device(&lost, &at(2, "secondary"), None);
    assert!(p.delete_device("d1", &at(5, "primary")));
    let fresh = DeviceSnapshot::enabled_sas("d1", "new-primary", "new-secondary");
    p.put_device(&fresh, &at(6, "primary"), None);
    let m = merged(&p, &s);
    assert_eq!(read(&m, "d1").0, Some(fresh.clone()));
    let (snap, conflicts) = read_with(&m, "d1", &update_wins());
    assert_eq!(snap, Some(fresh));
    let creations: Vec<&Conflict> = conflicts
        .iter()
        .filter(|c| c.rule == Rule::ConcurrentCreate)
        .collect();
    assert_eq!(creations.len(), 1, "{conflicts:?}");
    assert_eq!(creations[0].winner.stamp, at(6, "primary"));
    assert_eq!(creations[0].losers.len(), 1);
    assert_eq!(creations[0].losers[0].stamp, at(2, "secondary"));
    // Each side shows its whole incarnation, modules too, keys only as
    // fingerprints.
    let loser = &creations[0].losers[0].value;
    assert_eq!(loser["tags"], json!({"site": "berlin"}));
    assert_eq!(loser["modules"]["m1"]["tags"], json!({"site": "berlin"}));
    assert!(!loser.to_string().contains("ks-primary"), "{loser}");
    let winner = &creations[0].winner.value;
    assert_eq!(winner["status"], "enabled");
    assert!(winner.get("modules").is_none(), "{winner}");
}

/// Every identity field is kept as written, and one left out of a later
/// write reads absent (not `null`, not the old value).
#[test]
fn identity_fields_round_trip_and_a_removed_one_reads_absent() {
    let mut d = device("d1", "k");
    d.device.capabilities = Some(json!({"iotEdge": true}));
    d.device.device_scope = Some("ms-azure-iot-edge://gw-1".into());
    d.device.parent_scopes = Some(json!(["ms-azure-iot-edge://gw-0"]));
    d.device.extra.insert("managedBy".into(), json!("ops"));
    let mut state = HubState::new();
    state.put_device(&d, &at(1, "primary"), None);
    assert_eq!(read(&state, "d1").0, Some(d.clone()));
    let mut bare = d.clone();
    bare.device.capabilities = None;
    bare.device.device_scope = None;
    bare.device.parent_scopes = None;
    bare.device.extra.clear();
    assert!(state.put_device(&bare, &at(2, "primary"), None));
    assert_eq!(read(&state, "d1").0, Some(bare.clone()));
    // Put back as it reads, nothing is written.
    assert!(!state.put_device(&bare, &at(3, "primary"), None));
    // And the fields come back when written again.
    assert!(state.put_device(&d, &at(4, "primary"), None));
    assert_eq!(read(&state, "d1").0, Some(d));
}

/// A removal concurrent with a delete lost nothing: it is not logged,
/// and under `UpdateWins` it does not keep the device alive.
#[test]
fn a_removal_beside_a_delete_is_no_update() {
    let mut d = device("d1", "k");
    d.device.capabilities = Some(json!({"iotEdge": true}));
    let base = base_with(std::slice::from_ref(&d));
    let mut p = base.clone();
    assert!(p.delete_device("d1", &at(5, "primary")));
    let mut s = base.clone();
    let mut removed = d.clone();
    removed.device.capabilities = None;
    assert!(s.put_device(&removed, &at(6, "secondary"), None));
    let m = merged(&p, &s);
    let (snap, conflicts) = read(&m, "d1");
    assert_eq!(snap, None);
    assert!(conflicts.is_empty(), "{conflicts:?}");
    let (snap, conflicts) = read_with(&m, "d1", &update_wins());
    assert_eq!(snap, None);
    assert!(conflicts.is_empty(), "{conflicts:?}");
}

/// `DisabledWins` is logged only where a disable beat an enable: two
/// concurrent enables, or two concurrent disables, with different reasons
/// are a plain latest-wins conflict.
#[test]
fn statuses_of_one_kind_conflict_by_stamp() {
    for status in [Status::Enabled, Status::Disabled] {
        let d = device("d1", "k");
        let base = base_with(std::slice::from_ref(&d));
        let mut p = base.clone();
        p.put_device(&with_status(&d, status, "by-p"), &at(5, "primary"), None);
        let mut s = base.clone();
        s.put_device(&with_status(&d, status, "by-s"), &at(6, "secondary"), None);
        let (snap, conflicts) = read(&merged(&p, &s), "d1");
        let read_status = snap.unwrap().device.status.unwrap();
        assert_eq!(read_status.status, status);
        assert_eq!(read_status.reason.as_deref(), Some("by-s"));
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert_eq!(
            (conflicts[0].path.as_str(), conflicts[0].rule),
            ("status", Rule::LatestWins)
        );
    }
}

/// A device read from a merge and put back unchanged takes no write, even
/// where a concurrent enable lost to a disable: the write compares with
/// what reads (the disable), not with the latest sibling, so it neither
/// re-stamps the disable nor settles the conflict it did not decide.
#[test]
fn a_merged_device_put_back_as_it_reads_takes_no_write() {
    let d = device("d1", "k");
    let base = base_with(std::slice::from_ref(&d));
    let (p, s) = disabled_then_enabled(&base, &d);
    let mut m = merged(&p, &s);
    let (snap, conflicts) = read(&m, "d1");
    let snap = snap.unwrap();
    assert_eq!(
        snap.device.status.as_ref().unwrap().status,
        Status::Disabled
    );
    assert_eq!(conflicts.len(), 1);
    let before = m.to_canonical_json().unwrap();
    assert!(!m.put_device(&snap, &at(10, "primary"), None));
    assert_eq!(m.to_canonical_json().unwrap(), before);
}

/// A twin file's times stamp what it gives: `statusUpdateTime` the status,
/// each `$lastUpdated` the desired and reported leaves under it. Written
/// at stamp 10 with times of 50, the primary's values beat the secondary's
/// concurrent ones at 20.
#[test]
fn a_twin_files_times_stamp_the_status_and_each_leaf() {
    use failback::doc::{DeviceTimes, EntityTimes, MetaTree};
    let at_50 = |path: &[&str]| {
        let mut root = MetaTree::default();
        let mut node = &mut root;
        for key in path {
            node = node.children.entry((*key).to_owned()).or_default();
        }
        node.last_updated = Some(50);
        root
    };
    let mut d = with_status(&device("d1", "k"), Status::Enabled, "base");
    d.device.reported.insert("temp".into(), json!(0));
    let base = base_with(std::slice::from_ref(&d));
    let written = |reason: &str, value: &str| {
        let mut w = with_status(&d, Status::Enabled, reason);
        w.device.desired["cfg"]["mode"] = json!(value);
        w.device.reported.insert("temp".into(), json!(value));
        w
    };
    let times = DeviceTimes {
        device: EntityTimes {
            status: Some(50),
            desired: at_50(&["cfg", "mode"]),
            reported: at_50(&["temp"]),
        },
        ..DeviceTimes::default()
    };
    let mut p = base.clone();
    p.put_device(&written("by-p", "p"), &at(10, "primary"), Some(&times));
    let mut s = base.clone();
    s.put_device(&written("by-s", "s"), &at(20, "secondary"), None);
    let (snap, conflicts) = read(&merged(&p, &s), "d1");
    assert_eq!(snap, Some(written("by-p", "p")), "{conflicts:?}");
    let paths: Vec<&str> = conflicts.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "status",
            "properties.desired.cfg.mode",
            "properties.reported.temp"
        ]
    );
    for c in &conflicts {
        assert_eq!(c.winner.stamp, Stamp::new(50, 0, hub("primary")));
    }
}

/// An empty object is a value that children written beside it extend:
/// `cfg` set to `{}` on one hub and given a new key on the other reads as
/// an object of that key, whatever the stamps, with no shape conflict.
#[test]
fn an_empty_object_and_concurrent_children_read_as_one_object() {
    let d = device("d1", "k");
    let base = base_with(std::slice::from_ref(&d));
    let mut p = base.clone();
    let mut emptied = d.clone();
    emptied.device.desired.insert("cfg".into(), json!({}));
    p.put_device(&emptied, &at(9, "primary"), None);
    let mut s = base.clone();
    let mut extended = d.clone();
    extended.device.desired["cfg"]["extra"] = json!(1);
    s.put_device(&extended, &at(2, "secondary"), None);
    let (snap, conflicts) = read(&merged(&p, &s), "d1");
    assert_eq!(snap.unwrap().device.desired["cfg"], json!({"extra": 1}));
    assert!(conflicts.is_empty(), "{conflicts:?}");
}

/// What a state tells about itself: every device id it knows (deleted
/// ones too), its conflicts as reading each device logs them, its context,
/// deltas, and its application documents, each write saying whether it
/// changed anything.
#[test]
fn a_state_lists_its_devices_conflicts_and_documents() {
    let d = device("d1", "k");
    let base = base_with(&[d.clone(), device("d2", "k2")]);
    let (mut p, s) = disabled_then_enabled(&base, &d);
    p.delete_device("d2", &at(6, "primary"));
    let mut m = merged(&p, &s);
    assert_eq!(m.device_ids().collect::<Vec<_>>(), ["d1", "d2"]);
    let (_, logged) = read(&m, "d1");
    assert_eq!(logged.len(), 1);
    assert_eq!(m.conflicts(&Policies::default()), logged);
    assert_eq!(m.context().version_vector(), m.version_vector());
    assert!(!m.version_vector().is_empty());
    assert!(m.delta_since(m.version_vector()).is_empty());
    assert!(!m.delta_since(base.version_vector()).is_empty());

    let routes = json!({"a": 1});
    assert!(m.app("routes").is_none());
    assert!(m.set_app(&hub("primary"), "routes", &routes).unwrap());
    assert!(!m.set_app(&hub("primary"), "routes", &routes).unwrap());
    assert!(
        m.set_app(&hub("primary"), "routes", &json!({"a": 2}))
            .unwrap()
    );
    assert_eq!(m.app("routes").unwrap().to_json(), json!({"a": 2}));
    assert_eq!(m.app_names().collect::<Vec<_>>(), ["routes"]);
}

/// A device only the other state holds is taken whole by the merge, into
/// an empty state as into one with other devices.
#[test]
fn a_merge_takes_the_devices_only_the_other_holds() {
    let d = device("d1", "k");
    let mut p = HubState::new();
    p.put_device(&d, &at(1, "primary"), None);
    let mut empty = HubState::new();
    empty.try_merge(&p).unwrap();
    assert_eq!(read(&empty, "d1").0, Some(d.clone()));
    let mut s = HubState::new();
    s.put_device(&device("d2", "k2"), &at(2, "secondary"), None);
    let m = merged(&s, &p);
    assert_eq!(m.device_ids().collect::<Vec<_>>(), ["d1", "d2"]);
    assert_eq!(read(&m, "d1").0, Some(d));
}

/// A module that one hub created, removed and created again, while the
/// other hub created it without seeing any of that, has two live
/// incarnations: the later creation is the module, and the other is
/// logged whole, as a module shows (its keys only as fingerprints).
#[test]
fn a_losing_concurrent_module_incarnation_is_logged_whole() {
    let base = base_with(&[device("d1", "k")]);
    let with_module = |key: &str, site: &str| {
        let mut d = device("d1", "k");
        let mut module = device("d1", key).device;
        module.tags.insert("site".into(), json!(site));
        d.modules.insert("m1".into(), module);
        d
    };
    let mut p = base.clone();
    p.put_device(&with_module("kp-first", "lyon"), &at(1, "primary"), None);
    p.put_device(&device("d1", "k"), &at(2, "primary"), None);
    let fresh = with_module("kp", "paris");
    p.put_device(&fresh, &at(6, "primary"), None);
    let mut s = base.clone();
    s.put_device(&with_module("ks", "oslo"), &at(4, "secondary"), None);
    let m = merged(&p, &s);
    let (snap, conflicts) = read_with(&m, "d1", &update_wins());
    assert_eq!(snap.unwrap().modules["m1"], fresh.modules["m1"]);
    let creations: Vec<&Conflict> = conflicts
        .iter()
        .filter(|c| c.rule == Rule::ConcurrentCreate)
        .collect();
    assert_eq!(creations.len(), 1, "{conflicts:?}");
    assert_eq!(creations[0].module_id.as_deref(), Some("m1"));
    assert_eq!(creations[0].winner.stamp, at(6, "primary"));
    assert_eq!(creations[0].losers.len(), 1);
    assert_eq!(creations[0].losers[0].stamp, at(4, "secondary"));
    let loser = &creations[0].losers[0].value;
    assert_eq!(loser["tags"], json!({"site": "oslo"}), "{loser}");
    assert_eq!(loser["authentication"]["type"], "sas", "{loser}");
    assert!(loser["incarnation"].is_string(), "{loser}");
    assert!(!loser.to_string().contains("ks-"), "{loser}");
    assert_eq!(creations[0].winner.value["tags"], json!({"site": "paris"}));
}
