//! Plans bring every hub to the merged state, and a second merge after
//! they were applied has nothing left to do.

use std::collections::BTreeMap;

use failback::ReplicaId;
use failback::doc::{DeviceSnapshot, Entity, Policies, Status, StatusValue};
use failback::reconcile::{
    HubImage, HubSnapshots, HubTiming, Record, default_order, device_plan, hub_clocks,
    import_lines, merge_fleet,
};
use proptest::prelude::*;
use serde_json::json;

fn device(id: &str, n: u32) -> DeviceSnapshot {
    let mut d = DeviceSnapshot::enabled_sas(id, &format!("p{n}"), &format!("s{n}"));
    d.device.tags.insert("n".into(), json!(n));
    d
}

fn image(devices: &BTreeMap<String, DeviceSnapshot>, salt: &str) -> HubImage {
    let mut hub = HubImage::new();
    for d in devices.values() {
        let record = |e: &Entity, m: &str| Record {
            entity: e.clone(),
            etag: format!("{salt}-{}-{m}", d.id),
            twin_etag: format!("t{salt}-{}-{m}", d.id),
        };
        hub.insert(&d.id, None, record(&d.device, ""));
        for (m, e) in &d.modules {
            hub.insert(&d.id, Some(m), record(e, m));
        }
    }
    hub
}

#[derive(Clone, Debug)]
enum Edit {
    Delete,
    Disable,
    Tag(u32),
    Rotate(u32),
    Module(bool),
    Create,
}

fn edit() -> impl Strategy<Value = (usize, Edit)> {
    (
        0..6usize,
        prop_oneof![
            Just(Edit::Delete),
            Just(Edit::Disable),
            (0..100u32).prop_map(Edit::Tag),
            (0..100u32).prop_map(Edit::Rotate),
            any::<bool>().prop_map(Edit::Module),
            Just(Edit::Create),
        ],
    )
}

fn edited(
    base: &BTreeMap<String, DeviceSnapshot>,
    edits: &[(usize, Edit)],
    salt: u32,
) -> BTreeMap<String, DeviceSnapshot> {
    let mut out = base.clone();
    for (i, e) in edits {
        let id = format!("d{i}");
        match e {
            Edit::Delete => {
                out.remove(&id);
            }
            Edit::Create => {
                out.entry(id.clone())
                    .or_insert_with(|| device(&id, 1000 + salt));
            }
            other => {
                let Some(d) = out.get_mut(&id) else { continue };
                match other {
                    Edit::Disable => {
                        d.device.status = Some(StatusValue {
                            status: Status::Disabled,
                            reason: Some("r".into()),
                        })
                    }
                    Edit::Tag(n) => {
                        d.device.tags.insert(format!("t{salt}"), json!(n));
                    }
                    Edit::Rotate(n) => {
                        d.device.authentication = device(&id, n + salt * 1000).device.authentication
                    }
                    Edit::Module(add) => {
                        if *add {
                            // Exports carry every identity's keys; a line without them would
                            // get fresh keys from the hub.
                            let module = Entity {
                                authentication: device("m", salt).device.authentication,
                                ..Entity::default()
                            };
                            d.modules.insert("m".into(), module);
                        } else {
                            d.modules.remove("m");
                        }
                    }
                    _ => unreachable!(),
                }
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn plans_reach_the_merged_state_and_a_second_merge_is_empty(
        p_edits in prop::collection::vec(edit(), 0..8),
        s_edits in prop::collection::vec(edit(), 0..8),
        jobs in 1..4usize,
    ) {
        let base: BTreeMap<String, DeviceSnapshot> = (0..4).map(|i| (format!("d{i}"), device(&format!("d{i}"), i))).collect();
        let names = [ReplicaId::new("primary").unwrap(), ReplicaId::new("secondary").unwrap()];
        let hubs = [
            HubSnapshots { hub: names[0].clone(), devices: edited(&base, &p_edits, 1), times: BTreeMap::new() },
            HubSnapshots { hub: names[1].clone(), devices: edited(&base, &s_edits, 2), times: BTreeMap::new() },
        ];
        let timing: Vec<HubTiming> = names.iter().map(|h| HubTiming { hub: h.clone(), real_times: false, as_of: None, newest: None }).collect();
        let order = default_order(&names).unwrap();
        let stamps = hub_clocks(&timing, Some(&order), 0, 1).unwrap().stamps();
        let outcomes = merge_fleet(Some(&base), &hubs, &stamps, &Policies::default(), jobs).unwrap();
        prop_assert_eq!(&outcomes, &merge_fleet(Some(&base), &[hubs[1].clone(), hubs[0].clone()], &stamps, &Policies::default(), 1).unwrap());
        let merged: BTreeMap<String, DeviceSnapshot> = outcomes.iter().filter_map(|o| o.merge.merged.clone().map(|m| (o.id.clone(), m))).collect();

        let mut applied = Vec::new();
        for (k, hub) in hubs.iter().enumerate() {
            let mut img = image(&hub.devices, &k.to_string());
            let mut lines = Vec::new();
            for o in &outcomes {
                lines.extend(import_lines(&device_plan(hub.devices.get(&o.id), o.merge.merged.as_ref()), &img));
            }
            let errors = img.apply(&lines);
            prop_assert!(errors.is_empty(), "{errors:?}");
            prop_assert_eq!(&img.snapshots(), &merged);
            // A plan applied twice: every guarded line now fails, nothing changes.
            let again = img.clone();
            img.apply(&lines);
            prop_assert_eq!(img.snapshots(), again.snapshots());
            applied.push(HubSnapshots { hub: hub.hub.clone(), devices: img.snapshots(), times: BTreeMap::new() });
        }
        let second = merge_fleet(Some(&merged), &applied, &stamps, &Policies::default(), jobs).unwrap();
        for o in &second {
            prop_assert!(o.merge.conflicts.is_empty());
            for hub in &applied {
                prop_assert!(device_plan(hub.devices.get(&o.id), o.merge.merged.as_ref()).is_empty());
            }
        }
    }
}

fn edge(id: &str, n: u32, modules: &[&str]) -> DeviceSnapshot {
    let mut d = device(id, n);
    for (k, m) in modules.iter().enumerate() {
        let module = Entity {
            authentication: device(m, n * 10 + k as u32).device.authentication,
            ..Entity::default()
        };
        d.modules.insert((*m).into(), module);
    }
    d
}

/// Merges, cuts `cut`'s plan after every possible line, re-runs the merge
/// on what the hubs hold then, and checks it gives the first merge's
/// device.
fn resume_after_every_cut(primary: Option<DeviceSnapshot>, secondary: Option<DeviceSnapshot>) {
    let names = [
        ReplicaId::new("primary").unwrap(),
        ReplicaId::new("secondary").unwrap(),
    ];
    let base: BTreeMap<String, DeviceSnapshot> = BTreeMap::new();
    let snapshots = |k: usize, d: &Option<DeviceSnapshot>| HubSnapshots {
        hub: names[k].clone(),
        devices: d.iter().map(|d| (d.id.clone(), d.clone())).collect(),
        times: BTreeMap::new(),
    };
    let timing: Vec<HubTiming> = names
        .iter()
        .map(|h| HubTiming {
            hub: h.clone(),
            real_times: false,
            as_of: None,
            newest: None,
        })
        .collect();
    let stamps = hub_clocks(&timing, Some(&default_order(&names).unwrap()), 0, 1)
        .unwrap()
        .stamps();
    let hubs = [snapshots(0, &primary), snapshots(1, &secondary)];
    let first = merge_fleet(Some(&base), &hubs, &stamps, &Policies::default(), 1).unwrap();
    let merged = first[0].merge.merged.clone();
    for (k, hub) in hubs.iter().enumerate() {
        let ops = device_plan(hub.devices.values().next(), merged.as_ref());
        for cut in 0..=ops.len() {
            let mut img = image(&hub.devices, &k.to_string());
            let lines = import_lines(&ops[..cut], &img);
            assert!(img.apply(&lines).is_empty());
            let mut resumed = [hubs[0].clone(), hubs[1].clone()];
            resumed[k].devices = img.snapshots();
            let again =
                merge_fleet(Some(&base), &resumed, &stamps, &Policies::default(), 1).unwrap();
            assert_eq!(
                again[0].merge.merged,
                merged,
                "{}'s plan cut after {cut} of {} lines",
                names[k],
                ops.len()
            );
        }
    }
}

/// Found by `failback drill --seed 3 --devices 2000 --split-brain --skew`: a
/// device created during the divergence on one hub is copied to the other
/// by a plan whose import job stops after the device line, before its
/// module lines. The merge re-run must not take the partial copy for a
/// second, concurrent creation that wins by stamp and drops the modules.
#[test]
fn a_creation_copied_half_way_by_an_interrupted_plan_is_not_a_second_creation() {
    let created = edge("d9", 9, &["$edgeAgent", "$edgeHub", "filter"]);
    resume_after_every_cut(Some(created.clone()), None);
    resume_after_every_cut(None, Some(created));
}

/// Found by `failback drill --seed 265 --devices 20 --cycles 2
/// --split-brain --skew 96s`: the losing hub of a concurrent creation is
/// brought to the winner by a plan cut after the device line, leaving the
/// loser's modules beside the winner's device. The merge re-run must not
/// keep them.
#[test]
fn an_interrupted_plan_never_mixes_two_creations() {
    let loser = edge("d9", 1, &["$edgeAgent", "$edgeHub", "tempSensor"]);
    let winner = edge("d9", 2, &["$edgeAgent", "filter"]);
    let plain = device("d9", 3);
    for (p, s) in [
        (&loser, &winner),
        (&winner, &loser),
        (&loser, &plain),
        (&plain, &loser),
    ] {
        resume_after_every_cut(Some(p.clone()), Some(s.clone()));
    }
}

/// Policy 7 with plans cut short: two creations of one id, one
/// quarantined, with different tags and modules, merge to one device
/// (disabled, tags and modules of both); each hub's plan cut after any
/// line and the merge re-run gives that device again.
#[test]
fn creations_on_both_hubs_merge_to_one_device_and_resume_after_any_cut() {
    let mut quarantined = edge("d9", 1, &["$edgeAgent", "tempSensor"]);
    quarantined.device.status = Some(StatusValue {
        status: Status::Disabled,
        reason: Some("quarantine".into()),
    });
    quarantined.device.tags.insert("cell".into(), json!(4));
    let mut enabled = edge("d9", 2, &["$edgeAgent", "filter"]);
    enabled.device.tags.insert("owner".into(), json!("ops"));
    for (p, s) in [(&quarantined, &enabled), (&enabled, &quarantined)] {
        resume_after_every_cut(Some(p.clone()), Some(s.clone()));
    }
    let names = [
        ReplicaId::new("primary").unwrap(),
        ReplicaId::new("secondary").unwrap(),
    ];
    let hubs: Vec<HubSnapshots> = [&quarantined, &enabled]
        .iter()
        .zip(&names)
        .map(|(d, h)| HubSnapshots {
            hub: h.clone(),
            devices: BTreeMap::from([(d.id.clone(), (*d).clone())]),
            times: BTreeMap::new(),
        })
        .collect();
    let timing: Vec<HubTiming> = names
        .iter()
        .map(|h| HubTiming {
            hub: h.clone(),
            real_times: false,
            as_of: None,
            newest: None,
        })
        .collect();
    let stamps = hub_clocks(&timing, Some(&default_order(&names).unwrap()), 0, 1)
        .unwrap()
        .stamps();
    let merged = merge_fleet(
        Some(&BTreeMap::new()),
        &hubs,
        &stamps,
        &Policies::default(),
        1,
    )
    .unwrap()[0]
        .merge
        .merged
        .clone()
        .unwrap();
    assert_eq!(merged.device.status, quarantined.device.status);
    assert_eq!(merged.device.tags["cell"], json!(4));
    assert_eq!(merged.device.tags["owner"], json!("ops"));
    assert_eq!(merged.device.authentication, enabled.device.authentication);
    let modules: Vec<&String> = merged.modules.keys().collect();
    assert_eq!(modules, ["$edgeAgent", "filter", "tempSensor"]);
}
