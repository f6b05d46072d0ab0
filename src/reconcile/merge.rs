//! The per-device three-way merge of hub snapshots.
//!
//! Devices never interact, so a failback merge is a sequence of small,
//! independent merges, one per device id: memory bounded by one device,
//! parallel across devices, and the same result whatever order devices
//! are visited in. Each device is replayed as CRDT writes: the base (the
//! backup both hubs started from) first, then each hub's differences from
//! the base as that hub's writes, stamped by
//! [policy 5](crate::contract#policies). A device the base
//! lacks starts as one empty incarnation that each hub's creation edits, so
//! creations on several hubs are one device (policy 7). The merged CRDT is
//! read through the policies.

use std::borrow::Cow;
use std::collections::BTreeSet;

use crate::clock::{ReplicaId, Stamp};
use crate::doc::{Conflict, DeviceSnapshot, DeviceTimes, HubState, Policies};

/// One hub's view of one device: what [`merge_device`] merges.
///
/// # Example
///
/// ```
/// use failback::doc::{DeviceSnapshot, Policies};
/// use failback::reconcile::{merge_device, Base, HubDevice};
/// use failback::{ReplicaId, Stamp};
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let base = DeviceSnapshot { id: "valve-2".into(), ..Default::default() };
/// let (sp, ss) = (Stamp::new(1, 0, p.clone()), Stamp::new(2, 0, s.clone()));
/// let hubs = [
///     HubDevice { hub: &p, device: Some(&base), times: None, stamp: &sp, recreated: false },
///     // The secondary lacks the base's device: it deleted it.
///     HubDevice { hub: &s, device: None, times: None, stamp: &ss, recreated: false },
/// ];
/// assert_eq!(merge_device(Base::Present(&base), &hubs, &Policies::default()).merged, None);
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct HubDevice<'a> {
    /// The hub.
    pub hub: &'a ReplicaId,
    /// The device as the hub holds it; `None` when the hub lacks it.
    pub device: Option<&'a DeviceSnapshot>,
    /// Per-field times, for twin files.
    pub times: Option<&'a DeviceTimes>,
    /// The stamp of the hub's writes that carry no time of their own.
    pub stamp: &'a Stamp,
    /// Whether the hub deleted the base's device and created it again (its
    /// `generationId` differs from the base's, see `recreated()`): its
    /// device is then a new incarnation that inherits nothing of the base's
    /// (policy 2), not an update of it. Only meaningful when the base holds
    /// the device and the hub does too.
    pub recreated: bool,
}

/// Whether a hub's `generationId` for a device says the hub deleted and
/// re-created the device the base holds: both are known and differ.
/// Inputs without generation ids (exports) never say so.
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::reconcile::recreated;
///
/// assert!(recreated(Some("636"), Some("637")));
/// assert!(!recreated(Some("636"), Some("636")));
/// assert!(!recreated(None, Some("637")));
/// assert!(!recreated(Some("636"), None));
/// ```
pub fn recreated(base: Option<&str>, hub: Option<&str>) -> bool {
    matches!((base, hub), (Some(b), Some(h)) if b != h)
}

/// What the base says of a device.
///
/// # Example
///
/// ```
/// use failback::doc::{DeviceSnapshot, Policies};
/// use failback::reconcile::{merge_device, Base, HubDevice};
/// use failback::{ReplicaId, Stamp};
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let mut on_p = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
/// let mut on_s = on_p.clone();
/// on_p.device.tags.insert("site".into(), "lyon".into());
/// on_s.device.tags.insert("floor".into(), 3.into());
/// let (sp, ss) = (Stamp::new(1, 0, p.clone()), Stamp::new(2, 0, s.clone()));
/// let hubs = [
///     HubDevice { hub: &p, device: Some(&on_p), times: None, stamp: &sp, recreated: false },
///     HubDevice { hub: &s, device: Some(&on_s), times: None, stamp: &ss, recreated: false },
/// ];
/// // Absent from the base: both hubs created it, and it is one device.
/// let merged = merge_device(Base::Absent, &hubs, &Policies::default()).merged.expect("created");
/// assert_eq!(merged.device.tags["site"], "lyon");
/// assert_eq!(merged.device.tags["floor"], 3);
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub enum Base<'a> {
    /// A common base was given and holds the device.
    Present(&'a DeviceSnapshot),
    /// A common base was given and lacks the device: every hub holding it
    /// created it.
    Absent,
    /// No base was given (twin files): every hub's device is taken as the
    /// same incarnation, and a hub lacking it says nothing about it.
    Unknown,
}

/// The merge of one device.
///
/// # Example
///
/// ```
/// use failback::doc::{DeviceSnapshot, Policies};
/// use failback::reconcile::{merge_device, Base, DeviceMerge, HubDevice};
/// use failback::{ReplicaId, Stamp};
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let base = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
/// let (mut on_p, mut on_s) = (base.clone(), base.clone());
/// on_p.device.tags.insert("site".into(), "lyon".into());
/// on_s.device.tags.insert("site".into(), "paris".into());
/// let (sp, ss) = (Stamp::new(1, 0, p.clone()), Stamp::new(2, 0, s.clone()));
/// let hubs = [
///     HubDevice { hub: &p, device: Some(&on_p), times: None, stamp: &sp, recreated: false },
///     HubDevice { hub: &s, device: Some(&on_s), times: None, stamp: &ss, recreated: false },
/// ];
/// let DeviceMerge { merged, conflicts } = merge_device(Base::Present(&base), &hubs, &Policies::default());
/// assert_eq!(merged, Some(on_s)); // the later stamp wins
/// assert_eq!(conflicts[0].path, "tags.site");
/// assert_eq!(conflicts[0].losers[0].value, "lyon"); // and the loser, kept
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceMerge {
    /// The merged device; `None` when it ends deleted.
    pub merged: Option<DeviceSnapshot>,
    /// Its conflicts.
    pub conflicts: Vec<Conflict>,
}

/// The replica name the base's writes are made under.
pub(crate) fn base_replica() -> ReplicaId {
    ReplicaId::new(BASE).expect("valid literal")
}

/// The reserved replica name of the common base.
pub const BASE: &str = "base";

/// Merges one device across hubs.
///
/// Creations of one device id on several hubs (the base lacks it) are one
/// device, merged field by field like any concurrent edit (policy 7). A hub
/// marked [`HubDevice::recreated`] deleted the base's device and created a
/// new incarnation that inherits nothing of it (policy 2).
///
/// Fast path: when the hubs that changed the device relative to the base
/// all hold the same device (most often: one hub changed it, or none did),
/// that device is the result and no CRDT is built; the CRDT would give the
/// same, without conflicts.
///
/// # Example
///
/// ```
/// use failback::doc::{DeviceSnapshot, Policies};
/// use failback::reconcile::{merge_device, Base, HubDevice};
/// use failback::{ReplicaId, Stamp};
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let base = DeviceSnapshot { id: "d1".into(), ..Default::default() };
/// let mut changed = base.clone();
/// changed.device.tags.insert("site".into(), "lab".into());
/// let (sp, ss) = (Stamp::new(1, 0, p.clone()), Stamp::new(2, 0, s.clone()));
/// let hubs = [
///     HubDevice { hub: &p, device: Some(&base), times: None, stamp: &sp, recreated: false },
///     HubDevice { hub: &s, device: Some(&changed), times: None, stamp: &ss, recreated: false },
/// ];
/// let result = merge_device(Base::Present(&base), &hubs, &Policies::default());
/// assert_eq!(result.merged, Some(changed));
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
pub fn merge_device(base: Base<'_>, hubs: &[HubDevice<'_>], policies: &Policies) -> DeviceMerge {
    let resolved = resolve_device(base, hubs, policies);
    DeviceMerge {
        merged: resolved.merged.map(Cow::into_owned),
        conflicts: resolved.conflicts,
    }
}

/// The merge of one device, borrowed from the inputs where it can be.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved<'a> {
    /// The merged device, `None` when it ends deleted: borrowed when one
    /// of the inputs is the result (the fast path), owned when the CRDT
    /// made it.
    pub merged: Option<Cow<'a, DeviceSnapshot>>,
    /// Its conflicts.
    pub conflicts: Vec<Conflict>,
    /// For each hub, in the order given, whether the hub already holds
    /// exactly the merged device (or, when it ends deleted, lacks it): its
    /// plan for this device is then empty.
    pub settled: Vec<bool>,
}

/// [`merge_device`] without copying: the merged device is borrowed from
/// the inputs on the fast path, and each hub is marked settled when it
/// already holds the result, so callers compare nothing twice.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::doc::{DeviceSnapshot, Policies};
/// use failback::reconcile::{resolve_device, Base, HubDevice};
/// use failback::{ReplicaId, Stamp};
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let base = DeviceSnapshot { id: "d1".into(), ..Default::default() };
/// let mut changed = base.clone();
/// changed.device.tags.insert("site".into(), "lab".into());
/// let (sp, ss) = (Stamp::new(1, 0, p.clone()), Stamp::new(2, 0, s.clone()));
/// let hubs = [
///     HubDevice { hub: &p, device: Some(&base), times: None, stamp: &sp, recreated: false },
///     HubDevice { hub: &s, device: Some(&changed), times: None, stamp: &ss, recreated: false },
/// ];
/// let resolved = resolve_device(Base::Present(&base), &hubs, &Policies::default());
/// assert!(matches!(resolved.merged, Some(std::borrow::Cow::Borrowed(d)) if *d == changed));
/// assert_eq!(resolved.settled, [false, true]);
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
pub fn resolve_device<'a>(
    base: Base<'a>,
    hubs: &[HubDevice<'a>],
    policies: &Policies,
) -> Resolved<'a> {
    if let Some(fast) = fast_path(base, hubs) {
        return fast;
    }
    let id = hubs
        .iter()
        .find_map(|h| h.device.map(|d| d.id.as_str()))
        .or(match base {
            Base::Present(d) => Some(d.id.as_str()),
            _ => None,
        })
        .unwrap_or_default();
    crdt(id, base, hubs, policies)
}

/// The merge through the CRDT.
///
/// Every hub starts from one incarnation: the base's device or, when the
/// base lacks it or there is no base, an empty one written by the base.
/// A hub holding the device writes its differences into that incarnation,
/// so that creations on several hubs are concurrent edits of one device,
/// merged field by field (policy 7), and a hub lacking a device the base
/// lacks says nothing about it. A hub lacking the base's device deleted it.
/// A hub that re-created the device (see [`HubDevice::recreated`]) deleted
/// the base's incarnation and writes into a new one, shared by every hub
/// that re-created it, which inherits nothing of the old.
///
/// Modules follow the same rule: a module the starting incarnation lacks
/// is started empty in it for every hub, and a hub whose device lacks it
/// never had it, so the modules created on several hubs are each one
/// module and the result holds their union.
fn crdt<'a>(id: &str, base: Base<'a>, hubs: &[HubDevice<'a>], policies: &Policies) -> Resolved<'a> {
    let base_hub = base_replica();
    let base_stamp = Stamp::new(i64::MIN, 0, base_hub.clone());
    let present = match base {
        Base::Present(device) => Some(device),
        Base::Absent | Base::Unknown => None,
    };
    let renews = |h: &HubDevice<'_>| present.is_some() && h.device.is_some() && h.recreated;
    let mut incarnation = present.cloned().unwrap_or_else(|| DeviceSnapshot {
        id: id.to_owned(),
        ..Default::default()
    });
    let started = new_modules(&incarnation, hubs.iter().filter(|h| !renews(h)));
    add_empty(&mut incarnation, &started);
    let mut start = HubState::new();
    start.put_device(&incarnation, &base_stamp, None);
    // The incarnation the re-creating hubs share, written by the base after
    // each one's delete, the same in each (same dot, same stamp).
    let mut renewed = DeviceSnapshot {
        id: id.to_owned(),
        ..Default::default()
    };
    let renewed_modules = new_modules(&renewed, hubs.iter().filter(|h| renews(h)));
    add_empty(&mut renewed, &renewed_modules);
    let renewed_stamp = hubs
        .iter()
        .filter(|h| renews(h))
        .map(|h| h.stamp)
        .max()
        .cloned()
        .unwrap_or_else(|| base_stamp.clone());
    let mut merged = start.clone();
    for hub in hubs {
        let mut state = start.clone();
        match (hub.device, present) {
            (Some(device), _) if renews(hub) => {
                state.delete_device_as(hub.hub, id, hub.stamp);
                state.put_device_as(&base_hub, &renewed, &renewed_stamp, None);
                let device = with_empty(device, &renewed_modules);
                state.put_device_as(hub.hub, &device, hub.stamp, hub.times);
            }
            (Some(device), _) => {
                let device = with_empty(device, &started);
                state.put_device_as(hub.hub, &device, hub.stamp, hub.times);
            }
            (None, Some(_)) => {
                state.delete_device_as(hub.hub, id, hub.stamp);
            }
            // Neither the base nor the hub has it: the hub never had it.
            (None, None) => continue,
        }
        merged.merge_devices(&state);
    }
    let mut conflicts = Vec::new();
    let device = merged.read_device(id, policies, &mut conflicts);
    let settled = hubs.iter().map(|h| h.device == device.as_ref()).collect();
    Resolved {
        merged: device.map(Cow::Owned),
        conflicts,
        settled,
    }
}

/// The ids of the modules `hubs` hold and `incarnation` lacks.
fn new_modules<'h>(
    incarnation: &DeviceSnapshot,
    hubs: impl Iterator<Item = &'h HubDevice<'h>>,
) -> BTreeSet<String> {
    hubs.filter_map(|h| h.device)
        .flat_map(|d| d.modules.keys())
        .filter(|m| !incarnation.modules.contains_key(*m))
        .cloned()
        .collect()
}

/// Adds each of `modules` that `device` lacks, empty.
fn add_empty(device: &mut DeviceSnapshot, modules: &BTreeSet<String>) {
    for m in modules {
        device.modules.entry(m.clone()).or_default();
    }
}

/// `device` with each of `modules` it lacks, empty: a module started empty
/// for every hub, which this hub never had, takes no write from it.
fn with_empty<'d>(
    device: &'d DeviceSnapshot,
    modules: &BTreeSet<String>,
) -> Cow<'d, DeviceSnapshot> {
    if modules.iter().all(|m| device.modules.contains_key(m)) {
        return Cow::Borrowed(device);
    }
    let mut device = device.clone();
    add_empty(&mut device, modules);
    Cow::Owned(device)
}

/// The result without a CRDT when at most one hub departs from the base.
fn fast_path<'a>(base: Base<'a>, hubs: &[HubDevice<'a>]) -> Option<Resolved<'a>> {
    let reference = match base {
        Base::Present(d) => Some(d),
        Base::Absent => None,
        Base::Unknown => return None,
    };
    // Times rank each field apart; a re-creation is a delete and a new
    // incarnation even where its content equals the base's.
    if hubs.iter().any(|h| h.times.is_some() || h.recreated) {
        return None;
    }
    let departs: Vec<bool> = hubs.iter().map(|h| !same(h.device, reference)).collect();
    let mut departing = hubs
        .iter()
        .zip(&departs)
        .filter(|(_, d)| **d)
        .map(|(h, _)| h);
    let (merged, settled) = match departing.next() {
        // Every hub holds the base: each holds the result, compared once.
        None => (reference, vec![true; hubs.len()]),
        // Every hub that changed the device made the same change: those
        // hold the result, the others the base, which it is not.
        Some(first) if departing.all(|h| same(h.device, first.device)) => (first.device, departs),
        // Copies of one creation, some cut short by an interrupted plan.
        Some(_) if reference.is_none() => {
            let merged = Some(one_creation(hubs)?);
            (
                merged,
                hubs.iter().map(|h| same(h.device, merged)).collect(),
            )
        }
        Some(_) => return None,
    };
    Some(Resolved {
        merged: merged.map(Cow::Borrowed),
        conflicts: Vec::new(),
        settled,
    })
}

/// The creation every hub holding a device absent from the base holds a
/// copy of, when there is one: the same device line, and a subset of the
/// same modules.
///
/// A plan copies a device created during the divergence to the hubs that
/// lack it with one import line for the device and one per module. An
/// import job stopped between them leaves a hub with the device and only
/// some of its modules. The CRDT reads such copies as one creation (policy
/// 7: the hubs' creations are edits of one incarnation, equal fields take
/// no sides, modules are the union), so this is only a shortcut to the
/// same answer, without conflicts; `the_fast_path_for_creations_answers_as_
/// the_crdt_does` checks it.
fn one_creation<'a>(hubs: &[HubDevice<'a>]) -> Option<&'a DeviceSnapshot> {
    let held: Vec<&DeviceSnapshot> = hubs.iter().filter_map(|h| h.device).collect();
    let fullest = *held.iter().max_by_key(|d| d.modules.len())?;
    let copies = held.iter().all(|d| {
        d.device == fullest.device
            && d.modules
                .iter()
                .all(|(m, e)| fullest.modules.get(m) == Some(e))
    });
    copies.then_some(fullest)
}

/// Whether two inputs hold the same device: the same one in memory (a
/// reader that found two inputs' lines equal parses them once), or equal.
fn same(a: Option<&DeviceSnapshot>, b: Option<&DeviceSnapshot>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => std::ptr::eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::doc::{Entity, Rule, Status, StatusValue};

    fn device(modules: &[&str]) -> DeviceSnapshot {
        let mut d = DeviceSnapshot {
            id: "d".into(),
            ..DeviceSnapshot::default()
        };
        d.device.status = Some(StatusValue {
            status: Status::Enabled,
            reason: None,
        });
        for m in modules {
            d.modules.insert((*m).into(), Entity::default());
        }
        d
    }

    struct Hubs {
        names: [ReplicaId; 2],
        stamps: [Stamp; 2],
    }

    impl Hubs {
        fn new() -> Self {
            let p = ReplicaId::new("primary").expect("valid");
            let s = ReplicaId::new("secondary").expect("valid");
            Self {
                stamps: [Stamp::new(1, 0, p.clone()), Stamp::new(2, 0, s.clone())],
                names: [p, s],
            }
        }

        fn resolve<'a>(
            &'a self,
            base: Base<'a>,
            devices: [Option<&'a DeviceSnapshot>; 2],
        ) -> Resolved<'a> {
            let views = [0, 1].map(|i| HubDevice {
                hub: &self.names[i],
                device: devices[i],
                times: None,
                stamp: &self.stamps[i],
                recreated: false,
            });
            resolve_device(base, &views, &Policies::default())
        }
    }

    fn modules(resolved: &Resolved<'_>) -> Vec<String> {
        resolved
            .merged
            .as_ref()
            .map(|d| d.modules.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_module_deleted_on_one_hub_and_one_added_on_the_other_both_count() {
        let hubs = Hubs::new();
        let base = device(&["a", "b"]);
        let (one, two) = (device(&["a"]), device(&["a", "b", "c"]));
        let resolved = hubs.resolve(Base::Present(&base), [Some(&one), Some(&two)]);
        assert_eq!(modules(&resolved), ["a", "c"]);
        assert_eq!(resolved.settled, [false, false]);
        assert!(resolved.conflicts.is_empty());
    }

    #[test]
    fn a_creation_copied_without_some_modules_is_one_creation() {
        let hubs = Hubs::new();
        let (full, cut) = (device(&["a", "b"]), device(&["a"]));
        for devices in [[Some(&full), Some(&cut)], [Some(&cut), Some(&full)]] {
            let resolved = hubs.resolve(Base::Absent, devices);
            assert_eq!(modules(&resolved), ["a", "b"]);
            assert_eq!(
                resolved.settled,
                devices.map(|d| d.is_some_and(|d| *d == full))
            );
            assert!(resolved.conflicts.is_empty());
        }
    }

    /// A hub for each `(name, time, device, recreated)`, resolved; with
    /// `crdt`, every hub gives (empty) times, which keeps the merge off the
    /// fast path.
    fn resolve_all(
        base: Base<'_>,
        hubs: &[(&str, i64, Option<&DeviceSnapshot>, bool)],
        crdt: bool,
    ) -> Resolved<'static> {
        let names: Vec<ReplicaId> = hubs
            .iter()
            .map(|h| ReplicaId::new(h.0).expect("valid"))
            .collect();
        let stamps: Vec<Stamp> = hubs
            .iter()
            .zip(&names)
            .map(|(h, n)| Stamp::new(h.1, 0, n.clone()))
            .collect();
        let no_times = DeviceTimes::default();
        let views: Vec<HubDevice<'_>> = hubs
            .iter()
            .enumerate()
            .map(|(i, h)| HubDevice {
                hub: &names[i],
                device: h.2,
                times: crdt.then_some(&no_times),
                stamp: &stamps[i],
                recreated: h.3,
            })
            .collect();
        let resolved = resolve_device(base, &views, &Policies::default());
        Resolved {
            merged: resolved.merged.map(|d| Cow::Owned(d.into_owned())),
            conflicts: resolved.conflicts,
            settled: resolved.settled,
        }
    }

    fn tags(d: &DeviceSnapshot) -> serde_json::Value {
        serde_json::Value::Object(d.device.tags.clone().into_map())
    }

    fn sas(key: &str, modules: &[&str]) -> DeviceSnapshot {
        let mut d = DeviceSnapshot::enabled_sas("d", &format!("{key}1"), &format!("{key}2"));
        for m in modules {
            d.modules.insert((*m).into(), Entity::default());
        }
        d
    }

    /// Policy 7: one device id created on two hubs is one device, merged
    /// field by field: disabled wins, the keys are one whole value by
    /// stamp with the other logged, tags from both, modules the union.
    #[test]
    fn creations_on_two_hubs_are_one_device_merged_field_by_field() {
        let mut quarantined = sas("p", &["a"]);
        quarantined.device.status = Some(StatusValue {
            status: Status::Disabled,
            reason: Some("quarantine".into()),
        });
        quarantined.device.tags.insert("by-p".into(), json!(1));
        let mut enabled = sas("s", &["b"]);
        enabled.device.tags.insert("by-s".into(), json!(2));
        for order in [false, true] {
            let mut hubs = [
                ("primary", 1, Some(&quarantined), false),
                ("secondary", 2, Some(&enabled), false),
            ];
            if order {
                hubs.reverse();
            }
            let resolved = resolve_all(Base::Absent, &hubs, false);
            let merged = resolved.merged.expect("merged");
            let status = merged.device.status.as_ref().map(|s| s.status);
            assert_eq!(status, Some(Status::Disabled));
            assert_eq!(tags(&merged), json!({"by-p": 1, "by-s": 2}));
            assert_eq!(merged.device.authentication, enabled.device.authentication);
            assert_eq!(merged.modules.keys().collect::<Vec<_>>(), ["a", "b"]);
            let rules: Vec<Rule> = resolved.conflicts.iter().map(|c| c.rule).collect();
            assert_eq!(rules, [Rule::DisabledWins, Rule::WholeValue]);
            let keys = &resolved.conflicts[1];
            assert_eq!(keys.path, "authentication");
            assert_eq!(keys.losers.len(), 1);
            assert_eq!(keys.losers[0].hub.as_str(), "primary");
            assert_eq!(resolved.settled, [false, false]);
        }
    }

    #[test]
    fn creations_on_three_hubs_are_one_device() {
        let devices: Vec<DeviceSnapshot> = ["a", "b", "c"]
            .iter()
            .map(|k| {
                let mut d = sas(k, &[k, "shared"]);
                d.device.tags.insert((*k).into(), json!(k));
                d.modules
                    .entry("shared".into())
                    .or_default()
                    .desired
                    .insert((*k).into(), json!(true));
                d
            })
            .collect();
        let hubs = [
            ("h1", 1, Some(&devices[0]), false),
            ("h2", 3, Some(&devices[1]), false),
            ("h3", 2, Some(&devices[2]), false),
        ];
        let resolved = resolve_all(Base::Absent, &hubs, false);
        let merged = resolved.merged.expect("merged");
        assert_eq!(tags(&merged), json!({"a": "a", "b": "b", "c": "c"}));
        assert_eq!(
            merged.device.authentication,
            devices[1].device.authentication
        );
        let modules: Vec<&String> = merged.modules.keys().collect();
        assert_eq!(modules, ["a", "b", "c", "shared"]);
        let shared = serde_json::Value::Object(merged.modules["shared"].desired.clone().into_map());
        assert_eq!(shared, json!({"a": true, "b": true, "c": true}));
        let keys: Vec<&Conflict> = resolved
            .conflicts
            .iter()
            .filter(|c| c.path == "authentication")
            .collect();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].winner.hub.as_str(), "h2");
        assert_eq!(keys[0].losers.len(), 2);
        assert!(
            resolved
                .conflicts
                .iter()
                .all(|c| c.rule != Rule::ConcurrentCreate)
        );
    }

    /// A hub lacking a device the base lacks too never had it: the device
    /// created on the other hub is kept.
    #[test]
    fn a_hub_lacking_a_device_the_base_lacks_never_had_it() {
        let one = sas("p", &["a"]);
        let hubs = [
            ("primary", 1, Some(&one), false),
            ("secondary", 2, None, false),
        ];
        for crdt in [false, true] {
            let resolved = resolve_all(Base::Absent, &hubs, crdt);
            assert_eq!(resolved.merged.as_deref(), Some(&one));
            assert_eq!(resolved.settled, [true, false]);
            assert!(resolved.conflicts.is_empty());
        }
    }

    /// The fast paths for devices absent from the base (equal copies; one
    /// creation copied without some modules) give what the CRDT gives.
    #[test]
    fn the_fast_path_for_creations_answers_as_the_crdt_does() {
        let (full, cut, bare) = (sas("k", &["a", "b"]), sas("k", &["a"]), sas("k", &[]));
        let cases = [
            ([Some(&full), Some(&full)], &full),
            ([Some(&full), Some(&cut)], &full),
            ([Some(&bare), Some(&full)], &full),
            ([None, Some(&cut)], &cut),
        ];
        for (i, ([p, s], expected)) in cases.into_iter().enumerate() {
            let hubs = [("primary", 1, p, false), ("secondary", 2, s, false)];
            let fast = resolve_all(Base::Absent, &hubs, false);
            let crdt = resolve_all(Base::Absent, &hubs, true);
            assert_eq!(fast, crdt, "case {i}");
            assert_eq!(fast.merged.as_deref(), Some(expected), "case {i}");
            assert!(fast.conflicts.is_empty(), "case {i}");
        }
    }

    /// A hub whose `generationId` differs from the base's deleted and
    /// re-created the device: the re-created device starts empty, and a
    /// concurrent update of the old one elsewhere is a logged loser.
    #[test]
    fn a_recreated_device_starts_empty_and_wins_over_an_update_of_the_old() {
        let mut base = sas("old", &["m"]);
        base.device.tags.insert("old".into(), json!(true));
        let mut updated = base.clone();
        updated.device.tags.insert("new".into(), json!(1));
        let renewed = sas("new", &[]);
        for crdt in [false, true] {
            let hubs = [
                ("primary", 1, Some(&renewed), true),
                ("secondary", 2, Some(&updated), false),
            ];
            let resolved = resolve_all(Base::Present(&base), &hubs, crdt);
            assert_eq!(resolved.merged.as_deref(), Some(&renewed));
            assert_eq!(resolved.settled, [true, false]);
            let lost: Vec<(&str, Rule)> = resolved
                .conflicts
                .iter()
                .map(|c| (c.path.as_str(), c.rule))
                .collect();
            assert_eq!(lost, [("tags.new", Rule::DeleteWins)]);
            assert_eq!(resolved.conflicts[0].losers[0].hub.as_str(), "secondary");
            // Re-created with the base's very content: still a new
            // incarnation, and the update of the old one still loses.
            let hubs = [
                ("primary", 1, Some(&base), true),
                ("secondary", 2, Some(&updated), false),
            ];
            let resolved = resolve_all(Base::Present(&base), &hubs, crdt);
            assert_eq!(resolved.merged.as_deref(), Some(&base));
            assert_eq!(resolved.conflicts.len(), 1);
            // The same device without a changed generation is an update:
            // both edits are kept.
            let hubs = [
                ("primary", 1, Some(&renewed), false),
                ("secondary", 2, Some(&updated), false),
            ];
            let resolved = resolve_all(Base::Present(&base), &hubs, crdt);
            let merged = resolved.merged.expect("merged");
            assert_eq!(tags(&merged), json!({"new": 1}));
            assert_eq!(merged.device.authentication, renewed.device.authentication);
        }
    }

    /// Re-created on two hubs: one new incarnation, merged field by field;
    /// a hub that deleted the old one concurrently deletes nothing new.
    #[test]
    fn a_device_recreated_on_two_hubs_is_one_new_device() {
        let base = sas("old", &["m"]);
        let (mut p, mut s) = (sas("p", &["a"]), sas("s", &["b"]));
        p.device.tags.insert("p".into(), json!(1));
        s.device.tags.insert("s".into(), json!(2));
        let hubs = [
            ("primary", 1, Some(&p), true),
            ("secondary", 2, Some(&s), true),
            ("tertiary", 3, None, false),
        ];
        let resolved = resolve_all(Base::Present(&base), &hubs, false);
        let merged = resolved.merged.expect("merged");
        assert_eq!(tags(&merged), json!({"p": 1, "s": 2}));
        assert_eq!(merged.modules.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(merged.device.authentication, s.device.authentication);
        let rules: Vec<Rule> = resolved.conflicts.iter().map(|c| c.rule).collect();
        assert_eq!(rules, [Rule::WholeValue]);
    }

    #[test]
    fn equal_copies_are_settled_whoever_holds_them() {
        let hubs = Hubs::new();
        let base = device(&["a"]);
        let (copy, mut changed) = (base.clone(), base.clone());
        changed.device.tags.insert("t".into(), json!(1));
        let resolved = hubs.resolve(Base::Present(&base), [Some(&copy), Some(&changed)]);
        assert_eq!(resolved.settled, [false, true]);
        assert_eq!(resolved.merged.as_deref(), Some(&changed));
        let resolved = hubs.resolve(Base::Present(&base), [Some(&copy), Some(&copy)]);
        assert_eq!(resolved.settled, [true, true]);
        // Deleted on one hub, kept on the other: deleted, and the hub that
        // lacks it is settled.
        let resolved = hubs.resolve(Base::Present(&base), [None, Some(&copy)]);
        assert_eq!(resolved.merged, None);
        assert_eq!(resolved.settled, [true, false]);
    }

    #[test]
    fn without_a_base_the_hubs_hold_one_incarnation_merged_leaf_by_leaf() {
        let hubs = Hubs::new();
        let (mut one, mut two) = (device(&[]), device(&[]));
        one.device.tags.insert("a".into(), json!(1));
        two.device.tags.insert("b".into(), json!(2));
        let resolved = hubs.resolve(Base::Unknown, [Some(&one), Some(&two)]);
        let tags = resolved.merged.map(|d| d.device.tags.clone());
        assert_eq!(
            tags.and_then(|t| serde_json::to_value(t).ok()),
            Some(json!({"a": 1, "b": 2}))
        );
        assert!(resolved.conflicts.is_empty());
        // A hub that lacks it says nothing about it.
        let resolved = hubs.resolve(Base::Unknown, [None, Some(&two)]);
        assert_eq!(resolved.merged.as_deref(), Some(&two));
    }

    #[test]
    fn merge_device_owns_what_resolve_device_borrows() {
        let hubs = Hubs::new();
        let base = device(&[]);
        let mut changed = base.clone();
        changed.device.desired.insert("x".into(), json!(true));
        let views = [0, 1].map(|i| HubDevice {
            hub: &hubs.names[i],
            device: Some(if i == 0 { &base } else { &changed }),
            times: None,
            stamp: &hubs.stamps[i],
            recreated: false,
        });
        let merged = merge_device(Base::Present(&base), &views, &Policies::default());
        assert_eq!(merged.merged, Some(changed));
        assert!(merged.conflicts.is_empty());
        assert_eq!(base_replica().to_string(), BASE);
    }
    /// The fast path gives what the CRDT gives: forced down the CRDT path
    /// (a hub with times never takes the fast path), each case resolves
    /// the same.
    #[test]
    fn the_fast_path_answers_as_the_crdt_does() {
        let hubs = Hubs::new();
        let base = device(&["a", "b"]);
        let mut changed = base.clone();
        changed.device.tags.insert("t".into(), json!(1));
        let same_change = changed.clone();
        let no_times = DeviceTimes::default();
        let cases: [(Base<'_>, [Option<&DeviceSnapshot>; 2]); 4] = [
            (Base::Present(&base), [Some(&base), Some(&base)]),
            (Base::Present(&base), [Some(&base), Some(&changed)]),
            (Base::Present(&base), [Some(&changed), Some(&same_change)]),
            (Base::Present(&base), [None, None]),
        ];
        for (i, (base, devices)) in cases.into_iter().enumerate() {
            let fast = hubs.resolve(base, devices);
            let views = [0, 1].map(|h| HubDevice {
                hub: &hubs.names[h],
                device: devices[h],
                times: Some(&no_times),
                stamp: &hubs.stamps[h],
                recreated: false,
            });
            let crdt = resolve_device(base, &views, &Policies::default());
            assert_eq!(fast, crdt, "case {i}");
        }
    }
    #[test]
    fn equal_copies_of_one_creation_are_all_settled() {
        let hubs = Hubs::new();
        let (one, two) = (device(&["a"]), device(&["a"]));
        let resolved = hubs.resolve(Base::Absent, [Some(&one), Some(&two)]);
        assert_eq!(resolved.merged.as_deref(), Some(&one));
        assert_eq!(resolved.settled, [true, true]);
        assert!(resolved.conflicts.is_empty());
    }
}
