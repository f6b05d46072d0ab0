//! The merge of a whole fleet: every device id of the base and the hubs,
//! merged independently, in parallel, in id order.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::merge::{Base, DeviceMerge, HubDevice, merge_device};
use crate::clock::{ReplicaId, Stamp};
use crate::doc::{DeviceSnapshot, DeviceTimes, Policies};

/// One hub's devices as its file gave them.
#[derive(Clone, Debug)]
pub struct HubSnapshots {
    /// The hub.
    pub hub: ReplicaId,
    /// Its devices by id.
    pub devices: BTreeMap<String, DeviceSnapshot>,
    /// Per-field times by device id (twin files only).
    pub times: BTreeMap<String, DeviceTimes>,
}

/// How a device came out of the merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// No hub changed it.
    Unchanged,
    /// Changed on one or more hubs, merged without conflict.
    Merged,
    /// Merged, with at least one conflict logged.
    Conflicted,
    /// Created during the divergence (absent from the base).
    Created,
    /// Deleted.
    Deleted,
}

impl Outcome {
    /// The outcome's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Unchanged => "unchanged",
            Outcome::Merged => "merged",
            Outcome::Conflicted => "conflicted",
            Outcome::Created => "created",
            Outcome::Deleted => "deleted",
        }
    }
}

/// The merge of one device id, with its outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceOutcome {
    /// The device id.
    pub id: String,
    /// The merged device and its conflicts.
    pub merge: DeviceMerge,
    /// How it came out.
    pub outcome: Outcome,
}

/// Merges every device of the fleet with up to `jobs` threads.
///
/// `hubs` may come in any order: they are visited by name, so the result
/// never depends on the order of `--hub` flags, nor on `jobs`.
pub fn merge_fleet(
    base: Option<&BTreeMap<String, DeviceSnapshot>>,
    hubs: &[HubSnapshots],
    stamps: &BTreeMap<ReplicaId, Stamp>,
    policies: &Policies,
    jobs: usize,
) -> Vec<DeviceOutcome> {
    let mut sorted: Vec<(&ReplicaId, &HubSnapshots, &Stamp)> = hubs
        .iter()
        .filter_map(|h| Some((&h.hub, h, stamps.get(&h.hub)?)))
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let ids: Vec<&str> = base
        .into_iter()
        .flat_map(|b| b.keys())
        .chain(sorted.iter().flat_map(|(_, h, _)| h.devices.keys()))
        .map(String::as_str)
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .collect();
    let one = |id: &str| -> DeviceOutcome {
        let base_device = match base {
            Some(b) => b.get(id).map_or(Base::Absent, Base::Present),
            None => Base::Unknown,
        };
        let views: Vec<HubDevice<'_>> = sorted
            .iter()
            .map(|(name, h, stamp)| HubDevice {
                hub: name,
                device: h.devices.get(id),
                times: h.times.get(id),
                stamp,
            })
            .collect();
        let merge = merge_device(base_device, &views, policies);
        let reference = match base_device {
            Base::Present(d) => Some(d),
            _ => None,
        };
        let outcome = match (&merge.merged, reference) {
            (None, _) => Outcome::Deleted,
            (Some(_), _) if !merge.conflicts.is_empty() => Outcome::Conflicted,
            (Some(_), None) if base.is_some() => Outcome::Created,
            (Some(m), _) if views.iter().all(|v| v.device == Some(m)) => Outcome::Unchanged,
            (Some(_), _) => Outcome::Merged,
        };
        DeviceOutcome {
            id: id.to_owned(),
            merge,
            outcome,
        }
    };
    let jobs = jobs.max(1);
    if jobs == 1 || ids.len() < 2 * jobs {
        return ids.iter().map(|id| one(id)).collect();
    }
    let chunk = ids.len().div_ceil(jobs);
    std::thread::scope(|scope| {
        let handles: Vec<_> = ids
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|id| one(id)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}
