//! The merge of a whole fleet: every device id of the base and the hubs,
//! merged independently, in parallel, in id order.

use std::borrow::Cow;
use std::collections::{BTreeMap, btree_map};
use std::iter::Peekable;
use std::sync::Mutex;

use serde::Serialize;

use super::merge::{Base, DeviceMerge, HubDevice, Resolved, resolve_device};
use super::stamps::{StampError, stamp_of};
use crate::clock::{ReplicaId, Stamp};
use crate::doc::{DeviceSnapshot, DeviceTimes, Policies};

/// One hub's devices as its file gave them.
///
/// # Example
///
/// ```
/// use std::collections::BTreeMap;
/// use failback::format::DeviceRecord;
/// use failback::reconcile::{merge_fleet, HubSnapshots};
/// use failback::{Policies, ReplicaId, Stamp};
///
/// // Each hub's twin of thermostat-7, with the times of its fields.
/// let hub = |name: &str, setpoint: u8, at: &str| -> Result<HubSnapshots, Box<dyn std::error::Error>> {
///     let twin = DeviceRecord::from_twin_json(&format!(
///         r#"{{"deviceId":"thermostat-7","properties":{{"desired":{{"setpoint":{setpoint},
///             "$metadata":{{"setpoint":{{"$lastUpdated":"{at}"}}}}}}}}}}"#))?;
///     let id = twin.snapshot.id.clone();
///     Ok(HubSnapshots {
///         hub: ReplicaId::new(name)?,
///         times: twin.times.into_iter().map(|t| (id.clone(), t)).collect(),
///         devices: BTreeMap::from([(id, twin.snapshot)]),
///     })
/// };
/// let hubs = [hub("primary", 19, "2026-11-28T10:00:00Z")?, hub("secondary", 22, "2026-11-28T10:05:00Z")?];
/// let stamps = hubs.iter().map(|h| (h.hub.clone(), Stamp::new(0, 0, h.hub.clone()))).collect();
/// let fleet = merge_fleet(None, &hubs, &stamps, &Policies::default(), 1)?;
/// let merged = fleet[0].merge.merged.as_ref().expect("not deleted");
/// assert_eq!(merged.device.desired["setpoint"], 22); // the later write
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct HubSnapshots {
    /// The hub.
    pub hub: ReplicaId,
    /// Its devices by id.
    pub devices: BTreeMap<String, DeviceSnapshot>,
    /// Per-field times by device id (twin files only).
    pub times: BTreeMap<String, DeviceTimes>,
}

/// How a device came out of the merge, as [`DeviceOutcome::outcome`]
/// gives it and `report.json` counts it.
///
/// # Example
///
/// ```
/// use std::collections::BTreeMap;
/// use failback::doc::DeviceSnapshot;
/// use failback::reconcile::{merge_fleet, HubClocks, HubSnapshots, Outcome};
/// use failback::{Policies, ReplicaId};
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let valve = DeviceSnapshot { id: "valve-2".into(), ..Default::default() };
/// let devices = BTreeMap::from([("valve-2".to_owned(), valve)]);
/// // The base lacks valve-2: the secondary created it while it was active.
/// let hubs = [
///     HubSnapshots { hub: p.clone(), devices: BTreeMap::new(), times: BTreeMap::new() },
///     HubSnapshots { hub: s.clone(), devices, times: BTreeMap::new() },
/// ];
/// let stamps = HubClocks::Order(vec![p, s]).stamps();
/// let fleet = merge_fleet(Some(&BTreeMap::new()), &hubs, &stamps, &Policies::default(), 1)?;
/// assert_eq!(fleet[0].outcome, Outcome::Created);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    ///
    /// # Example
    ///
    /// ```
    /// use failback::reconcile::Outcome;
    ///
    /// assert_eq!(Outcome::Conflicted.name(), "conflicted");
    /// assert_eq!(serde_json::to_string(&Outcome::Deleted)?, r#""deleted""#);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
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

/// The merge of one device id, with its outcome: one element of what
/// [`merge_fleet`] returns.
///
/// # Example
///
/// ```
/// use std::collections::BTreeMap;
/// use failback::doc::DeviceSnapshot;
/// use failback::reconcile::{merge_fleet, HubClocks, HubSnapshots, Outcome};
/// use failback::{Policies, ReplicaId};
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let valve = DeviceSnapshot { id: "valve-2".into(), ..Default::default() };
/// let base = BTreeMap::from([("valve-2".to_owned(), valve)]);
/// // The secondary deleted valve-2; the primary left it as it was.
/// let hubs = [
///     HubSnapshots { hub: p.clone(), devices: base.clone(), times: BTreeMap::new() },
///     HubSnapshots { hub: s.clone(), devices: BTreeMap::new(), times: BTreeMap::new() },
/// ];
/// let stamps = HubClocks::Order(vec![p, s]).stamps();
/// let fleet = merge_fleet(Some(&base), &hubs, &stamps, &Policies::default(), 1)?;
/// assert_eq!((fleet[0].id.as_str(), fleet[0].outcome), ("valve-2", Outcome::Deleted));
/// assert!(fleet[0].merge.merged.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
///
/// # Example
///
/// ```
/// use std::collections::BTreeMap;
/// use failback::doc::DeviceSnapshot;
/// use failback::reconcile::{merge_fleet, HubClocks, HubSnapshots, Outcome, StampError};
/// use failback::{Policies, ReplicaId};
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let valve = DeviceSnapshot { id: "valve-2".into(), ..Default::default() };
/// let base = BTreeMap::from([("valve-2".to_owned(), valve.clone())]);
/// let mut tagged = valve;
/// tagged.device.tags.insert("site".into(), "lyon".into());
/// let hubs = [
///     HubSnapshots { hub: p.clone(), devices: base.clone(), times: BTreeMap::new() },
///     HubSnapshots { hub: s.clone(), devices: BTreeMap::from([("valve-2".to_owned(), tagged.clone())]), times: BTreeMap::new() },
/// ];
/// let stamps = HubClocks::Order(vec![p.clone(), s]).stamps();
/// let fleet = merge_fleet(Some(&base), &hubs, &stamps, &Policies::default(), 2)?;
/// assert_eq!((fleet[0].outcome, fleet[0].merge.merged.as_ref()), (Outcome::Merged, Some(&tagged)));
///
/// let only_primary = HubClocks::Order(vec![p]).stamps();
/// let error = merge_fleet(Some(&base), &hubs, &only_primary, &Policies::default(), 2).unwrap_err();
/// assert!(matches!(error, StampError::Unstamped { hub } if hub.as_str() == "secondary"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    // The maps walked side by side: the base's first when there is one.
    let maps: Vec<&'a BTreeMap<String, DeviceSnapshot>> = base
        .into_iter()
        .chain(sorted.iter().map(|(_, h, _)| &h.devices))
        .collect();
    let skip = usize::from(base.is_some());
    let one = |id: &'a str, held: &[Option<&'a DeviceSnapshot>]| -> T {
        let base_device = match base {
            Some(_) => held[0].map_or(Base::Absent, Base::Present),
            None => Base::Unknown,
        };
        let views: Vec<HubDevice<'a>> = sorted
            .iter()
            .zip(&held[skip..])
            .map(|((name, h, stamp), device)| HubDevice {
                hub: name,
                device: *device,
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
    // The walk yields at least as many ids as the largest map holds, and
    // at most as many as they all hold together.
    let least = maps.iter().map(|m| m.len()).max().unwrap_or(0);
    let most = maps.iter().map(|m| m.len()).sum::<usize>();
    let width = maps.len();
    let mut walk = Walk::new(maps);
    let jobs = jobs.max(1);
    if jobs == 1 || most <= BLOCK {
        let mut out = Vec::with_capacity(least);
        let mut held = Vec::new();
        while let Some(id) = walk.next(&mut held) {
            out.push(one(id, &held));
            held.clear();
        }
        return Ok(out);
    }
    // Blocks handed out one at a time, so that a thread that drew devices
    // the CRDT must merge does not hold the others back; the thread that
    // takes a block walks the maps for it (so that walk, with a cache miss
    // or two per id, is shared out too), and the calling thread merges as
    // well. Results are put back in block order.
    let walk = Mutex::new((walk, 0usize));
    let (one, walk) = (&one, &walk);
    let run = move || {
        let mut done: Vec<(usize, Vec<T>)> = Vec::new();
        let (mut ids, mut held) = (Vec::with_capacity(BLOCK), Vec::new());
        loop {
            ids.clear();
            held.clear();
            // A poisoned lock means another worker panicked: its panic is
            // resumed when it is joined.
            let Ok(mut shared) = walk.lock() else {
                break done;
            };
            let (maps, blocks) = &mut *shared;
            while ids.len() < BLOCK {
                let Some(id) = maps.next(&mut held) else {
                    break;
                };
                ids.push(id);
            }
            let n = *blocks;
            *blocks += 1;
            drop(shared);
            if ids.is_empty() {
                break done;
            }
            // `held` holds `width` entries an id; there is at least one
            // map, or the fleet would have been merged on this thread.
            let block = ids
                .iter()
                .zip(held.chunks(width))
                .map(|(id, held)| one(id, held))
                .collect();
            done.push((n, block));
        }
    };
    let mut done = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..jobs.min(most.div_ceil(BLOCK)))
            .map(|_| scope.spawn(run))
            .collect();
        let mut done = run();
        for helper in helpers {
            done.extend(
                helper
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        done
    });
    done.sort_unstable_by_key(|(n, _)| *n);
    let mut out = Vec::with_capacity(done.iter().map(|(_, block)| block.len()).sum());
    for (_, block) in done {
        out.extend(block);
    }
    Ok(out)
}

/// Devices a thread takes at a time.
const BLOCK: usize = 512;

/// The keys of sorted maps, merged: each once, in order, with the entry
/// each map holds under it (no map is searched: each is read in order).
struct Walk<'a> {
    heads: Vec<Peekable<btree_map::Iter<'a, String, DeviceSnapshot>>>,
}

impl<'a> Walk<'a> {
    fn new(maps: Vec<&'a BTreeMap<String, DeviceSnapshot>>) -> Self {
        Self {
            heads: maps.into_iter().map(|m| m.iter().peekable()).collect(),
        }
    }

    /// The next key, its entries (one per map, in the maps' order)
    /// appended to `held`.
    fn next(&mut self, held: &mut Vec<Option<&'a DeviceSnapshot>>) -> Option<&'a str> {
        let least: &'a String = self
            .heads
            .iter_mut()
            .filter_map(|head| head.peek().map(|(id, _)| *id))
            .min()?;
        for head in &mut self.heads {
            held.push(head.next_if(|(id, _)| *id == least).map(|(_, d)| d));
        }
        Some(least)
    }
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
        // With a base holding every third device, both hubs holding those
        // (the secondary changed some and lacks every ninth), each device
        // meets its own base and hubs whatever the threads: the outcomes
        // mix, and each is that of a merge of the device alone.
        let in_base = |i: usize| i % 3 == 0;
        let base = fleet(&all.iter().step_by(3).cloned().collect::<Vec<_>>());
        let primary: Vec<DeviceSnapshot> = (0..n)
            .filter(|i| i % 2 == 0 || in_base(*i))
            .map(|i| all[i].clone())
            .collect();
        let secondary: Vec<DeviceSnapshot> = (0..n)
            .filter(|i| (i % 2 == 1 || in_base(*i)) && i % 9 != 0)
            .map(|i| match in_base(i) && i % 2 == 1 {
                true => device(&all[i].id, serde_json::json!({"changed": i})),
                false => all[i].clone(),
            })
            .collect();
        let based_hubs = [hub("secondary", &secondary), hub("primary", &primary)];
        let based =
            resolve_fleet(Some(&base), &based_hubs, &stamps, &Policies::default(), 1).unwrap();
        assert_eq!(based.len(), n);
        let outcomes: std::collections::BTreeSet<Outcome> =
            based.iter().map(|o| o.outcome).collect();
        assert!(outcomes.len() >= 3, "{outcomes:?}");
        for jobs in [2, 3] {
            let many = resolve_fleet(
                Some(&base),
                &based_hubs,
                &stamps,
                &Policies::default(),
                jobs,
            );
            assert_eq!(many.unwrap(), based);
        }
        for (i, merged) in based.iter().enumerate().step_by(7) {
            let alone = |m: &BTreeMap<String, DeviceSnapshot>| -> BTreeMap<String, DeviceSnapshot> {
                m.get(merged.id)
                    .map(|d| (d.id.clone(), d.clone()))
                    .into_iter()
                    .collect()
            };
            let hubs_alone: Vec<HubSnapshots> = based_hubs
                .iter()
                .map(|h| HubSnapshots {
                    devices: alone(&h.devices),
                    ..h.clone()
                })
                .collect();
            let base_alone = alone(&base);
            let single = resolve_fleet(
                Some(&base_alone),
                &hubs_alone,
                &stamps,
                &Policies::default(),
                1,
            );
            assert_eq!(single.unwrap()[..], based[i..=i], "{}", merged.id);
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
    fn the_walk_takes_each_id_once_in_order_with_each_maps_device() {
        let fleet = |ids: &[&str]| -> BTreeMap<String, DeviceSnapshot> {
            ids.iter()
                .map(|id| {
                    let device = DeviceSnapshot {
                        id: (*id).to_owned(),
                        ..Default::default()
                    };
                    ((*id).to_owned(), device)
                })
                .collect()
        };
        let (a, b, empty) = (fleet(&["a", "c", "e"]), fleet(&["b", "c"]), fleet(&[]));
        let mut walk = Walk::new(vec![&a, &empty, &b]);
        let mut seen = Vec::new();
        let mut held = Vec::new();
        while let Some(id) = walk.next(&mut held) {
            let held: Vec<_> = held.drain(..).map(|d| d.map(|d| d.id.as_str())).collect();
            seen.push((id, held));
        }
        assert_eq!(
            seen,
            [
                ("a", vec![Some("a"), None, None]),
                ("b", vec![None, None, Some("b")]),
                ("c", vec![Some("c"), None, Some("c")]),
                ("e", vec![Some("e"), None, None]),
            ]
        );
        assert_eq!(Walk::new(vec![]).next(&mut held), None);
        assert!(held.is_empty());
    }
}
