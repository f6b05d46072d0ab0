//! The per-device three-way merge of hub snapshots.
//!
//! Devices never interact, so a failback merge is a sequence of small,
//! independent merges, one per device id: memory bounded by one device,
//! parallel across devices, and the same result whatever order devices
//! are visited in. Each device is replayed as CRDT writes: the base (the
//! backup both hubs started from) first, then each hub's differences from
//! the base as that hub's writes, stamped by policy 5. The merged CRDT is
//! read through the policies.

use std::borrow::Cow;

use crate::clock::{ReplicaId, Stamp};
use crate::doc::{Conflict, DeviceSnapshot, DeviceTimes, HubState, Policies};
use crate::kernel::Merge;

/// One hub's view of one device.
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
}

/// What the base says of a device.
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
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceMerge {
    /// The merged device; `None` when it ends deleted.
    pub merged: Option<DeviceSnapshot>,
    /// Its conflicts.
    pub conflicts: Vec<Conflict>,
}

/// The replica name the base's writes are made under.
pub fn base_replica() -> ReplicaId {
    ReplicaId::new(BASE).expect("valid literal")
}

/// The reserved replica name of the common base.
pub const BASE: &str = "base";

/// Merges one device across hubs.
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
///     HubDevice { hub: &p, device: Some(&base), times: None, stamp: &sp },
///     HubDevice { hub: &s, device: Some(&changed), times: None, stamp: &ss },
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
/// ```
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
///     HubDevice { hub: &p, device: Some(&base), times: None, stamp: &sp },
///     HubDevice { hub: &s, device: Some(&changed), times: None, stamp: &ss },
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
    let base_hub = base_replica();
    let base_stamp = Stamp::new(i64::MIN, 0, base_hub.clone());
    let mut start = HubState::new();
    match base {
        Base::Present(device) => {
            start.put_device(&base_hub, device, &base_stamp, None);
        }
        Base::Unknown => {
            let empty = DeviceSnapshot {
                id: id.to_owned(),
                ..Default::default()
            };
            start.put_device(&base_hub, &empty, &base_stamp, None);
        }
        Base::Absent => {}
    }
    let mut merged = start.clone();
    for hub in hubs {
        let mut state = start.clone();
        match (hub.device, base) {
            (Some(device), _) => {
                state.put_device(hub.hub, device, hub.stamp, hub.times);
            }
            (None, Base::Present(_)) => {
                state.delete_device(hub.hub, id, hub.stamp);
            }
            (None, _) => continue,
        }
        merged.merge(&state);
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

/// The result without a CRDT when at most one hub departs from the base.
fn fast_path<'a>(base: Base<'a>, hubs: &[HubDevice<'a>]) -> Option<Resolved<'a>> {
    let reference = match base {
        Base::Present(d) => Some(d),
        Base::Absent => None,
        Base::Unknown => return None,
    };
    if hubs.iter().any(|h| h.times.is_some()) {
        return None;
    }
    let mut departing = hubs.iter().filter(|h| !same(h.device, reference));
    let merged = match departing.next() {
        // Every hub holds the base.
        None => reference,
        // Every hub that changed the device made the same change.
        Some(first) if departing.all(|h| same(h.device, first.device)) => first.device,
        // Copies of one creation, some cut short by an interrupted plan.
        Some(_) if reference.is_none() => Some(one_creation(hubs)?),
        Some(_) => return None,
    };
    let settled = hubs.iter().map(|h| same(h.device, merged)).collect();
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
/// some of its modules. That partial copy is not a second creation: were
/// it taken for one, the merge re-run after the interruption would let it
/// win as a whole by stamp and drop the modules nobody deleted. Two
/// independent creations never share a device line (their keys differ),
/// so they still resolve as concurrent creations.
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
    use crate::doc::{Entity, Status, StatusValue};

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

    #[test]
    fn two_creations_that_differ_are_concurrent() {
        let hubs = Hubs::new();
        let one = device(&["a"]);
        let mut two = device(&["a"]);
        two.modules
            .entry("a".into())
            .or_default()
            .tags
            .insert("x".into(), json!(1));
        let resolved = hubs.resolve(Base::Absent, [Some(&one), Some(&two)]);
        assert!(!resolved.conflicts.is_empty());
        let mut other_line = device(&[]);
        other_line.device.tags.insert("y".into(), json!(2));
        let resolved = hubs.resolve(Base::Absent, [Some(&other_line), Some(&one)]);
        assert!(!resolved.conflicts.is_empty());
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
