//! Import jobs against a hub image.
//!
//! Part one: an arbitrary small hub and arbitrary import lines, in every
//! mode, with etags that match or not. `HubImage::apply` never panics, and
//! each line does what IoT Hub does: a failed line changes nothing, a
//! `create` never overwrites, an `IfMatchETag` line that succeeded matched,
//! an identity write stores the line's entity (with fresh SAS keys when it
//! has none) under a new etag, a twin write changes only the twin, a
//! delete removes the device with its modules, no module outlives its
//! device, and the whole job equals its lines applied one by one.
//!
//! Part two: a base and two hubs edited from it (exports, so every identity
//! carries its keys) are merged by `merge_fleet`; each hub's plan
//! (`device_plan` + `import_lines`) applies without error and brings the hub
//! to the merged state, whatever the hubs' order and the number of threads;
//! a second merge of the applied hubs has no conflict and nothing to do.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use failback::doc::{
    Authentication, DeviceSnapshot, Entity, Policies, Secret, Status, StatusValue,
};
use failback::format::ImportMode;
use failback::reconcile::{
    HubImage, HubSnapshots, ImportLine, Record, device_plan, import_lines, merge_fleet,
};
use failback::{ReplicaId, Stamp};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

const MAX_LINES: usize = 32;
const MAX_EDITS: usize = 16;

#[derive(Arbitrary, Debug)]
struct Input {
    hub: Vec<RecordIn>,
    lines: Vec<LineIn>,
    fleet: FleetIn,
}

#[derive(Arbitrary, Debug, Clone)]
struct EntityIn {
    status: Option<(bool, Option<u8>)>,
    key: Option<u8>,
    tags: Vec<(u8, u8)>,
    desired: Option<u8>,
    scope: Option<u8>,
}

impl EntityIn {
    fn build(&self) -> Entity {
        let mut e = Entity {
            status: self.status.map(|(disabled, reason)| StatusValue {
                status: if disabled {
                    Status::Disabled
                } else {
                    Status::Enabled
                },
                reason: reason.map(|r| format!("r{}", r % 3)),
            }),
            authentication: self.key.map(|k| keys(u32::from(k % 4))),
            device_scope: self.scope.map(|s| format!("scope-{}", s % 2)),
            ..Entity::default()
        };
        for (k, v) in self.tags.iter().take(4) {
            e.tags.insert(format!("t{}", k % 3), json!(v % 4));
        }
        if let Some(d) = self.desired {
            e.desired.insert("cfg".into(), json!({ "k": d % 3 }));
        }
        e
    }
}

#[derive(Arbitrary, Debug)]
struct RecordIn {
    d: u8,
    module: Option<u8>,
    entity: EntityIn,
    etag: u8,
    twin_etag: u8,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum EtagIn {
    None,
    /// One of a few literal etags, which the hub's initial records use too.
    Literal(u8),
    /// The etag the record holds when the line is applied.
    Current,
}

#[derive(Arbitrary, Debug)]
struct LineIn {
    mode: u8,
    d: u8,
    module: Option<u8>,
    etag: EtagIn,
    twin_etag: EtagIn,
    entity: EntityIn,
}

fn keys(n: u32) -> Authentication {
    Authentication::sas(Secret::new(&format!("p{n}")), Secret::new(&format!("s{n}")))
}

fn device_id(d: u8) -> String {
    format!("d{}", d % 4)
}

fn module_id(m: u8) -> String {
    format!("m{}", m % 2)
}

fn no_orphans(hub: &HubImage) {
    for (id, module, _) in hub.records() {
        if module.is_some() {
            assert!(hub.get(id, None).is_some(), "module of {id} outlived it");
        }
    }
}

fn resolve(line: &LineIn, hub: &HubImage) -> ImportLine {
    let id = device_id(line.d);
    let module = line.module.map(module_id);
    let record = hub.get(&id, module.as_deref());
    let etag = |e: EtagIn, current: fn(&Record) -> &String| match e {
        EtagIn::None => None,
        EtagIn::Literal(n) => Some(format!("e{}", n % 3)),
        EtagIn::Current => record.map(|r| current(r).clone()),
    };
    ImportLine {
        mode: ImportMode::ALL[usize::from(line.mode) % ImportMode::ALL.len()],
        etag: etag(line.etag, |r| &r.etag),
        twin_etag: etag(line.twin_etag, |r| &r.twin_etag),
        id,
        module_id: module,
        entity: line.entity.build(),
    }
}

/// Checks one line against IoT Hub's semantics.
fn check_line(before: &HubImage, after: &HubImage, line: &ImportLine, failed: bool) {
    use ImportMode as M;
    let key = (line.id.as_str(), line.module_id.as_deref());
    let old = before.get(key.0, key.1);
    let new = after.get(key.0, key.1);
    no_orphans(after);
    if failed {
        assert_eq!(before, after, "a failed line changed the hub: {line:?}");
        return;
    }
    if matches!(line.mode, M::Create) {
        assert!(old.is_none(), "create overwrote {key:?}");
    }
    let guard = match line.mode {
        M::UpdateIfMatchETag | M::DeleteIfMatchETag => Some(line.etag.as_ref()),
        M::CreateOrUpdateIfMatchETag if old.is_some() => Some(line.etag.as_ref()),
        _ => None,
    };
    if let Some(etag) = guard {
        assert_eq!(
            etag,
            old.map(|r| &r.etag),
            "etag guard let {line:?} through"
        );
    }
    if line.mode == M::UpdateTwinIfMatchETag {
        assert_eq!(line.twin_etag.as_ref(), old.map(|r| &r.twin_etag));
    }
    match line.mode {
        M::Create
        | M::CreateOrUpdate
        | M::CreateOrUpdateIfMatchETag
        | M::Update
        | M::UpdateIfMatchETag => {
            let new = new.expect("an identity write stores the record");
            let mut expected = line.entity.clone();
            if expected.authentication.is_none() {
                assert!(new.entity.authentication.is_some(), "no keys generated");
                expected.authentication = new.entity.authentication.clone();
            }
            assert_eq!(new.entity, expected);
            if let Some(old) = old {
                assert_ne!(new.etag, old.etag, "an identity write kept its etag");
            }
        }
        M::Delete | M::DeleteIfMatchETag => {
            assert!(new.is_none());
            if line.module_id.is_none() {
                assert!(after.records().all(|(id, _, _)| id != line.id));
            }
        }
        M::UpdateTwin | M::UpdateTwinIfMatchETag => {
            let (old, new) = (old.expect("present"), new.expect("kept"));
            assert_eq!(
                (&new.entity.tags, &new.entity.desired, &new.entity.reported),
                (
                    &line.entity.tags,
                    &line.entity.desired,
                    &line.entity.reported
                )
            );
            let identity = |e: &Entity| {
                (
                    e.status.clone(),
                    e.authentication.clone(),
                    e.device_scope.clone(),
                    e.capabilities.clone(),
                )
            };
            assert_eq!(identity(&new.entity), identity(&old.entity));
            assert_eq!(new.etag, old.etag);
            assert_ne!(new.twin_etag, old.twin_etag);
        }
    }
    // Every other record is untouched (a device delete takes its modules).
    for (id, module, record) in before.records() {
        let touched = id == line.id
            && (module == line.module_id.as_deref()
                || (line.module_id.is_none()
                    && matches!(line.mode, M::Delete | M::DeleteIfMatchETag)));
        if !touched {
            assert_eq!(
                after.get(id, module),
                Some(record),
                "{id}/{module:?} changed"
            );
        }
    }
}

fn part_one(records: &[RecordIn], lines: &[LineIn]) {
    let mut hub = HubImage::new();
    for r in records.iter().filter(|r| r.module.is_none()).take(8) {
        let record = Record {
            entity: r.entity.build(),
            etag: format!("e{}", r.etag % 3),
            twin_etag: format!("e{}", r.twin_etag % 3),
        };
        hub.insert(&device_id(r.d), None, record);
    }
    for r in records.iter().take(16) {
        let (Some(m), true) = (r.module, hub.get(&device_id(r.d), None).is_some()) else {
            continue;
        };
        let record = Record {
            entity: r.entity.build(),
            etag: format!("e{}", r.etag % 3),
            twin_etag: format!("e{}", r.twin_etag % 3),
        };
        hub.insert(&device_id(r.d), Some(&module_id(m)), record);
    }
    let start = hub.clone();
    let mut resolved = Vec::new();
    let mut errors = Vec::new();
    for line in lines.iter().take(MAX_LINES) {
        let line = resolve(line, &hub);
        let before = hub.clone();
        let failed = hub.apply(std::slice::from_ref(&line));
        assert!(failed.len() <= 1);
        for error in &failed {
            assert_eq!(error.device_id, line.id);
            assert_eq!(error.module_id, line.module_id);
        }
        check_line(&before, &hub, &line, !failed.is_empty());
        errors.extend(failed);
        resolved.push(line);
    }
    let mut batch = start;
    assert_eq!(
        batch.apply(&resolved),
        errors,
        "a job differs from its lines one by one"
    );
    assert_eq!(batch, hub);
}

#[derive(Arbitrary, Debug)]
struct FleetIn {
    base: Vec<DeviceIn>,
    known_base: bool,
    a: Vec<(u8, Edit)>,
    b: Vec<(u8, Edit)>,
    stamps: (u8, u8),
    swap: bool,
    jobs: u8,
}

#[derive(Arbitrary, Debug)]
struct DeviceIn {
    entity: EntityIn,
    module: Option<EntityIn>,
}

#[derive(Arbitrary, Debug, Clone)]
enum Edit {
    Delete,
    Status(bool, u8),
    Tag(u8, u8),
    RemoveTag(u8),
    Rotate(u8),
    Desired(u8),
    Module(bool),
    ModuleTag(u8),
    Scope(Option<u8>),
    Create(EntityIn),
}

/// An export entity: it always carries keys.
fn export_entity(e: &EntityIn, salt: u32) -> Entity {
    let mut entity = e.build();
    if entity.authentication.is_none() {
        entity.authentication = Some(keys(100 + salt));
    }
    entity
}

fn edited(
    base: &BTreeMap<String, DeviceSnapshot>,
    edits: &[(u8, Edit)],
    salt: u32,
) -> BTreeMap<String, DeviceSnapshot> {
    let mut out = base.clone();
    for (d, edit) in edits.iter().take(MAX_EDITS) {
        let id = format!("d{}", d % 6);
        if let Edit::Create(e) = edit {
            out.entry(id.clone()).or_insert_with(|| DeviceSnapshot {
                id: id.clone(),
                device: export_entity(e, salt),
                modules: BTreeMap::new(),
            });
            continue;
        }
        if let Edit::Delete = edit {
            out.remove(&id);
            continue;
        }
        let Some(device) = out.get_mut(&id) else {
            continue;
        };
        let e = &mut device.device;
        match edit {
            Edit::Status(disabled, reason) => {
                e.status = Some(StatusValue {
                    status: if *disabled {
                        Status::Disabled
                    } else {
                        Status::Enabled
                    },
                    reason: Some(format!("r{}", reason % 3)),
                });
            }
            Edit::Tag(k, v) => {
                e.tags.insert(format!("t{}", k % 3), json!(v % 4));
            }
            Edit::RemoveTag(k) => {
                e.tags.remove(&format!("t{}", k % 3));
            }
            Edit::Rotate(n) => e.authentication = Some(keys(u32::from(*n % 4) + 10 * salt)),
            Edit::Desired(v) => {
                e.desired.insert("cfg".into(), json!({ "k": v % 3 }));
            }
            Edit::Scope(s) => e.device_scope = s.map(|s| format!("scope-{}", s % 2)),
            Edit::Module(true) => {
                let module = Entity {
                    authentication: Some(keys(200 + salt)),
                    ..Entity::default()
                };
                device.modules.entry("m".into()).or_insert(module);
            }
            Edit::Module(false) => {
                device.modules.remove("m");
            }
            Edit::ModuleTag(v) => {
                if let Some(m) = device.modules.get_mut("m") {
                    m.tags.insert("t".into(), json!(v % 3));
                }
            }
            Edit::Delete | Edit::Create(_) => unreachable!("handled above"),
        }
    }
    out
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

fn part_two(fleet: &FleetIn) {
    let mut base = BTreeMap::new();
    for (i, d) in fleet.base.iter().take(4).enumerate() {
        let id = format!("d{i}");
        let salt = u32::try_from(i).unwrap_or(0);
        let mut modules = BTreeMap::new();
        if let Some(m) = &d.module {
            modules.insert("m".to_owned(), export_entity(m, 50 + salt));
        }
        let snapshot = DeviceSnapshot {
            id: id.clone(),
            device: export_entity(&d.entity, salt),
            modules,
        };
        base.insert(id, snapshot);
    }
    let names = [
        ReplicaId::new("primary").expect("valid literal"),
        ReplicaId::new("secondary").expect("valid literal"),
    ];
    let hubs = [
        HubSnapshots {
            hub: names[0].clone(),
            devices: edited(&base, &fleet.a, 1),
            times: BTreeMap::new(),
        },
        HubSnapshots {
            hub: names[1].clone(),
            devices: edited(&base, &fleet.b, 2),
            times: BTreeMap::new(),
        },
    ];
    let stamps: BTreeMap<ReplicaId, Stamp> = [
        (
            names[0].clone(),
            Stamp::new(i64::from(fleet.stamps.0), 0, names[0].clone()),
        ),
        (
            names[1].clone(),
            Stamp::new(i64::from(fleet.stamps.1), 0, names[1].clone()),
        ),
    ]
    .into_iter()
    .collect();
    let policies = Policies::default();
    let base_ref = fleet.known_base.then_some(&base);
    let jobs = 1 + usize::from(fleet.jobs % 3);
    let ordered = if fleet.swap {
        vec![hubs[1].clone(), hubs[0].clone()]
    } else {
        hubs.to_vec()
    };
    let outcomes = merge_fleet(base_ref, &ordered, &stamps, &policies, jobs).unwrap();
    assert_eq!(
        outcomes,
        merge_fleet(base_ref, &hubs, &stamps, &policies, 1).unwrap(),
        "the merge depends on the hubs' order or the threads"
    );
    let merged: BTreeMap<String, DeviceSnapshot> = outcomes
        .iter()
        .filter_map(|o| o.merge.merged.clone().map(|m| (o.id.clone(), m)))
        .collect();

    let mut applied = Vec::new();
    for (k, hub) in hubs.iter().enumerate() {
        let mut img = image(&hub.devices, &k.to_string());
        let mut lines = Vec::new();
        for o in &outcomes {
            let ops = device_plan(hub.devices.get(&o.id), o.merge.merged.as_ref());
            lines.extend(import_lines(&ops, &img));
        }
        let errors = img.apply(&lines);
        assert!(errors.is_empty(), "plan for {}: {errors:?}", hub.hub);
        assert_eq!(
            img.snapshots(),
            merged,
            "plan for {} missed the merged state",
            hub.hub
        );
        // Applied twice, a plan changes nothing more.
        let again = img.clone();
        img.apply(&lines);
        assert_eq!(img.snapshots(), again.snapshots(), "a plan applied twice");
        applied.push(HubSnapshots {
            hub: hub.hub.clone(),
            devices: img.snapshots(),
            times: BTreeMap::new(),
        });
    }
    let second = merge_fleet(Some(&merged), &applied, &stamps, &policies, 1).unwrap();
    for o in &second {
        assert!(
            o.merge.conflicts.is_empty(),
            "second merge: {:?}",
            o.merge.conflicts
        );
        assert_eq!(o.merge.merged.as_ref(), merged.get(&o.id));
        for hub in &applied {
            assert!(device_plan(hub.devices.get(&o.id), o.merge.merged.as_ref()).is_empty());
        }
    }
}

fuzz_target!(|input: Input| {
    part_one(&input.hub, &input.lines);
    part_two(&input.fleet);
});
