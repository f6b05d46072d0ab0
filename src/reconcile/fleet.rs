//! The merge of a whole fleet: every device id of the base and the hubs,
//! merged independently, in parallel, in id order.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use super::merge::{Base, DeviceMerge, HubDevice, Resolved, resolve_device};
use super::stamps::{StampError, stamp_of};
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

/// How a device came out of its merge.
pub(crate) fn classify(base: Base<'_>, resolved: &Resolved<'_>) -> Outcome {
    match (&resolved.merged, base) {
        (None, _) => Outcome::Deleted,
        (Some(_), _) if !resolved.conflicts.is_empty() => Outcome::Conflicted,
        (Some(_), Base::Absent) => Outcome::Created,
        (Some(_), _) if resolved.settled.iter().all(|s| *s) => Outcome::Unchanged,
        (Some(_), _) => Outcome::Merged,
    }
}

/// The merge of one device id, borrowed from the inputs where it can be.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedOutcome<'a> {
    /// The device id.
    pub id: &'a str,
    /// The merged device, its conflicts, and which hubs hold it already.
    pub resolved: Resolved<'a>,
    /// How it came out.
    pub outcome: Outcome,
}

/// Merges every device of the fleet with up to `jobs` threads.
///
/// `hubs` may come in any order: they are visited by name, so the result
/// never depends on the order in which they are given, nor on `jobs`.
///
/// # Errors
///
/// [`StampError::Unstamped`] naming the first hub (by name) that `stamps`
/// has no stamp for: merging without its writes would lose them.
pub fn merge_fleet(
    base: Option<&BTreeMap<String, DeviceSnapshot>>,
    hubs: &[HubSnapshots],
    stamps: &BTreeMap<ReplicaId, Stamp>,
    policies: &Policies,
    jobs: usize,
) -> Result<Vec<DeviceOutcome>, StampError> {
    fleet_map(base, hubs, stamps, policies, jobs, |r| DeviceOutcome {
        id: r.id.to_owned(),
        merge: DeviceMerge {
            merged: r.resolved.merged.map(Cow::into_owned),
            conflicts: r.resolved.conflicts,
        },
        outcome: r.outcome,
    })
}

/// [`merge_fleet`] without copying: each merged device is borrowed from
/// the inputs when one of them is the result, as the failback job merges.
///
/// # Errors
///
/// As [`merge_fleet`].
///
/// # Example
///
/// ```
/// use std::collections::BTreeMap;
/// use failback::doc::{DeviceSnapshot, Policies};
/// use failback::reconcile::{resolve_fleet, HubSnapshots, Outcome};
/// use failback::{ReplicaId, Stamp};
///
/// let device = DeviceSnapshot { id: "d1".into(), ..Default::default() };
/// let fleet = BTreeMap::from([("d1".to_owned(), device)]);
/// let hubs: Vec<HubSnapshots> = ["primary", "secondary"]
///     .map(|h| HubSnapshots { hub: ReplicaId::new(h).unwrap(), devices: fleet.clone(), times: BTreeMap::new() })
///     .into();
/// let stamps: BTreeMap<_, _> = hubs.iter().enumerate()
///     .map(|(n, h)| (h.hub.clone(), Stamp::new(n as i64 + 1, 0, h.hub.clone())))
///     .collect();
/// let merged = resolve_fleet(Some(&fleet), &hubs, &stamps, &Policies::default(), 2)?;
/// assert_eq!(merged[0].outcome, Outcome::Unchanged);
/// # Ok::<(), failback::reconcile::StampError>(())
/// ```
#[cfg(feature = "internals")]
pub fn resolve_fleet<'a>(
    base: Option<&'a BTreeMap<String, DeviceSnapshot>>,
    hubs: &'a [HubSnapshots],
    stamps: &'a BTreeMap<ReplicaId, Stamp>,
    policies: &Policies,
    jobs: usize,
) -> Result<Vec<ResolvedOutcome<'a>>, StampError> {
    fleet_map(base, hubs, stamps, policies, jobs, |r| r)
}

/// Merges every device id of the fleet, in id order, with up to `jobs`
/// threads, and maps each result with `f` on the thread that merged it.
fn fleet_map<'a, T: Send>(
    base: Option<&'a BTreeMap<String, DeviceSnapshot>>,
    hubs: &'a [HubSnapshots],
    stamps: &'a BTreeMap<ReplicaId, Stamp>,
    policies: &Policies,
    jobs: usize,
    f: impl Fn(ResolvedOutcome<'a>) -> T + Sync,
) -> Result<Vec<T>, StampError> {
    let mut sorted: Vec<(&ReplicaId, &HubSnapshots)> = hubs.iter().map(|h| (&h.hub, h)).collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let sorted = sorted
        .into_iter()
        .map(|(name, h)| Ok((name, h, stamp_of(stamps, name)?)))
        .collect::<Result<Vec<_>, StampError>>()?;
    let ids = union_of_keys(
        base.into_iter()
            .chain(sorted.iter().map(|(_, h, _)| &h.devices))
            .collect(),
    );
    let one = |id: &'a str| -> T {
        let base_device = match base {
            Some(b) => b.get(id).map_or(Base::Absent, Base::Present),
            None => Base::Unknown,
        };
        let views: Vec<HubDevice<'a>> = sorted
            .iter()
            .map(|(name, h, stamp)| HubDevice {
                hub: name,
                device: h.devices.get(id),
                times: h.times.get(id),
                stamp,
                // Snapshots carry no generation ids.
                recreated: false,
            })
            .collect();
        let resolved = resolve_device(base_device, &views, policies);
        let outcome = classify(base_device, &resolved);
        f(ResolvedOutcome {
            id,
            resolved,
            outcome,
        })
    };
    let jobs = jobs.max(1);
    if jobs == 1 || ids.len() < 2 * jobs {
        return Ok(ids.iter().map(|id| one(id)).collect());
    }
    // Blocks handed out one at a time, so that a thread that drew devices
    // the CRDT must merge does not hold the others back; results are put
    // back in block order.
    let blocks: Vec<&[&str]> = ids.chunks(BLOCK).collect();
    let next = AtomicUsize::new(0);
    let (one, blocks, next) = (&one, &blocks, &next);
    let mut done: Vec<(usize, Vec<T>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..jobs.min(blocks.len()))
            .map(|_| {
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let Some(block) = blocks.get(n) else {
                            break mine;
                        };
                        mine.push((n, block.iter().map(|id| one(id)).collect()));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    done.sort_unstable_by_key(|(n, _)| *n);
    Ok(done.into_iter().flat_map(|(_, block)| block).collect())
}

/// Devices a thread takes at a time.
const BLOCK: usize = 512;

/// The keys of sorted maps, merged: each once, in order.
fn union_of_keys<V>(maps: Vec<&BTreeMap<String, V>>) -> Vec<&str> {
    let mut heads: Vec<_> = maps.into_iter().map(|m| m.keys().peekable()).collect();
    let mut out = Vec::new();
    while let Some(least) = heads.iter_mut().filter_map(|k| k.peek().copied()).min() {
        for keys in &mut heads {
            if keys.peek() == Some(&least) {
                keys.next();
            }
        }
        out.push(least.as_str());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hub_without_a_stamp_is_an_error_naming_it() {
        let device = DeviceSnapshot {
            id: "d1".into(),
            ..Default::default()
        };
        let fleet = BTreeMap::from([("d1".to_owned(), device)]);
        let hubs = ["primary", "secondary"].map(|h| HubSnapshots {
            hub: ReplicaId::new(h).unwrap(),
            devices: fleet.clone(),
            times: BTreeMap::new(),
        });
        let primary = hubs[0].hub.clone();
        // Only the primary is stamped: the secondary's writes would vanish.
        let stamps = BTreeMap::from([(primary.clone(), Stamp::new(1, 0, primary))]);
        for jobs in [1, 2] {
            let err = merge_fleet(None, &hubs, &stamps, &Policies::default(), jobs).unwrap_err();
            assert_eq!(
                err,
                StampError::Unstamped {
                    hub: hubs[1].hub.clone()
                }
            );
            assert_eq!(err.to_string(), "hub secondary has no stamp");
        }
    }

    fn device(id: &str, tags: serde_json::Value) -> DeviceSnapshot {
        let mut d = DeviceSnapshot {
            id: id.into(),
            ..Default::default()
        };
        if let serde_json::Value::Object(map) = tags {
            d.device.tags = map.into_iter().collect();
        }
        d
    }

    fn fleet(devices: &[DeviceSnapshot]) -> BTreeMap<String, DeviceSnapshot> {
        devices.iter().map(|d| (d.id.clone(), d.clone())).collect()
    }

    fn hub(name: &str, devices: &[DeviceSnapshot]) -> HubSnapshots {
        HubSnapshots {
            hub: ReplicaId::new(name).unwrap(),
            devices: fleet(devices),
            times: BTreeMap::new(),
        }
    }

    fn stamps(hubs: &[HubSnapshots]) -> BTreeMap<ReplicaId, Stamp> {
        hubs.iter()
            .enumerate()
            .map(|(n, h)| (h.hub.clone(), Stamp::new(n as i64 + 1, 0, h.hub.clone())))
            .collect()
    }

    #[test]
    fn each_device_gets_the_outcome_its_merge_had() {
        use serde_json::json;
        let base = fleet(&[
            device("same", json!({"a": 1})),
            device("one-side", json!({"a": 1})),
            device("both-sides", json!({"a": 1})),
            device("gone", json!({"a": 1})),
        ]);
        let p = hub(
            "primary",
            &[
                device("same", json!({"a": 1})),
                device("one-side", json!({"a": 2})),
                device("both-sides", json!({"a": 2})),
                device("gone", json!({"a": 1})),
                device("new", json!({"b": 1})),
            ],
        );
        let s = hub(
            "secondary",
            &[
                device("same", json!({"a": 1})),
                device("one-side", json!({"a": 1})),
                device("both-sides", json!({"a": 3})),
            ],
        );
        let hubs = [p, s];
        let stamps = stamps(&hubs);
        for jobs in [1, 2] {
            let merged =
                merge_fleet(Some(&base), &hubs, &stamps, &Policies::default(), jobs).unwrap();
            let outcomes: Vec<(&str, Outcome)> =
                merged.iter().map(|o| (o.id.as_str(), o.outcome)).collect();
            assert_eq!(
                outcomes,
                [
                    ("both-sides", Outcome::Conflicted),
                    ("gone", Outcome::Deleted),
                    ("new", Outcome::Created),
                    ("one-side", Outcome::Merged),
                    ("same", Outcome::Unchanged),
                ]
            );
            let both = &merged[0].merge;
            assert_eq!(both.merged.as_ref().unwrap().device.tags["a"], json!(3));
            assert_eq!(both.conflicts.len(), 1);
            assert!(merged[1].merge.merged.is_none());
            let names: Vec<&str> = merged.iter().map(|o| o.outcome.name()).collect();
            assert_eq!(
                names,
                ["conflicted", "deleted", "created", "merged", "unchanged"]
            );
        }
    }

    #[test]
    fn every_device_id_of_any_input_is_merged_once_in_order_whatever_the_threads() {
        // More than two blocks, so the threads share them out.
        let n = 2 * BLOCK + 37;
        let all: Vec<DeviceSnapshot> = (0..n)
            .map(|i| device(&format!("d{i:05}"), serde_json::json!({"i": i})))
            .collect();
        let (evens, odds): (Vec<_>, Vec<_>) = all
            .iter()
            .cloned()
            .partition(|d| d.id.ends_with(['0', '2', '4', '6', '8']));
        let hubs = [hub("secondary", &odds), hub("primary", &evens)];
        let stamps = stamps(&hubs);
        let one = resolve_fleet(None, &hubs, &stamps, &Policies::default(), 1).unwrap();
        let ids: Vec<&str> = one.iter().map(|o| o.id).collect();
        let expected: Vec<&str> = all.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, expected);
        for jobs in [2, 3] {
            let many = resolve_fleet(None, &hubs, &stamps, &Policies::default(), jobs).unwrap();
            assert_eq!(many, one);
        }
        let owned = merge_fleet(None, &hubs, &stamps, &Policies::default(), 2).unwrap();
        assert_eq!(owned.len(), n);
        for (o, r) in owned.iter().zip(&one) {
            assert_eq!(o.id, r.id);
            assert_eq!(o.outcome, r.outcome);
            assert_eq!(o.merge.merged.as_ref(), r.resolved.merged.as_deref());
        }
    }

    #[test]
    fn union_of_keys_takes_each_key_once_in_order() {
        let a = BTreeMap::from([("a", 1), ("c", 1), ("e", 1)].map(|(k, v)| (k.to_owned(), v)));
        let b = BTreeMap::from([("b", 1), ("c", 1)].map(|(k, v)| (k.to_owned(), v)));
        let empty = BTreeMap::new();
        assert_eq!(union_of_keys(vec![&a, &empty, &b]), ["a", "b", "c", "e"]);
        assert!(union_of_keys::<i32>(vec![]).is_empty());
    }
}
