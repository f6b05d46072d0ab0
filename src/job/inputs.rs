//! What the merge must know of each input before its first device: its
//! format (whether it carries real times) and the newest time it holds,
//! from which the hubs' stamps (policy 5) are settled.

use super::{JobError, MergeJob};
use crate::clock::{ReplicaId, Stamp, check_drift};
use crate::doc::{DeviceTimes, EntityTimes, MetaTree};
use crate::reconcile::{HubClocks, HubTiming, default_order, hub_clocks};

/// One input, as the stamps need it.
#[derive(Clone, Debug)]
pub(super) struct InputMeta {
    /// The file, as named on the command line.
    pub file: String,
    /// The hub (`base` for the common base).
    pub hub: ReplicaId,
    /// Whether the file carries real per-field times (a twin file).
    pub real_times: bool,
    /// The newest time the file carries.
    pub newest: Newest,
}

/// The newest `$lastUpdated` or `statusUpdateTime` of a file, with where it
/// is. Entities may be offered in any order: of equal times, the one of
/// the smallest device id wins, a device before its modules, modules by
/// id, and within an entity the first in field order; so the result is
/// that of visiting the file sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Newest {
    best: Option<NewestAt>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct NewestAt {
    ms: i64,
    id: String,
    module: Option<String>,
    path: String,
}

/// The newest time of a tree, with its path: the first of equal times in
/// pre-order, children by key.
fn newest_in(tree: &MetaTree, path: &mut Vec<String>, best: &mut Option<(i64, String)>) {
    if let Some(ms) = tree.last_updated {
        if best.as_ref().is_none_or(|(b, _)| ms > *b) {
            *best = Some((ms, path.join(".")));
        }
    }
    for (key, child) in &tree.children {
        path.push(key.clone());
        newest_in(child, path, best);
        path.pop();
    }
}

impl Newest {
    /// Offers the times of one device and its modules.
    pub(super) fn offer_device(&mut self, id: &str, times: &DeviceTimes) {
        self.offer_entity(id, None, &times.device);
        for (module, entity) in &times.modules {
            self.offer_entity(id, Some(module), entity);
        }
    }

    /// Offers the times of one entity: a device's own, or a module's.
    pub(super) fn offer_entity(&mut self, id: &str, module: Option<&str>, entity: &EntityTimes) {
        let mut best = entity.status.map(|ms| (ms, "status".to_owned()));
        for (section, tree) in [
            ("properties.desired", &entity.desired),
            ("properties.reported", &entity.reported),
        ] {
            let mut path = vec![section.to_owned()];
            newest_in(tree, &mut path, &mut best);
        }
        let Some((ms, path)) = best else {
            return;
        };
        let wins = self.best.as_ref().is_none_or(|b| {
            ms > b.ms || (ms == b.ms && (id, module) < (b.id.as_str(), b.module.as_deref()))
        });
        if wins {
            self.best = Some(NewestAt {
                ms,
                id: id.to_owned(),
                module: module.map(str::to_owned),
                path,
            });
        }
    }

    /// The time, ms since the epoch.
    pub(super) fn ms(&self) -> Option<i64> {
        self.best.as_ref().map(|b| b.ms)
    }

    /// The time with its device and its field path (`modules.M.` before
    /// a module's).
    fn located(&self) -> Option<(i64, String, String)> {
        let b = self.best.as_ref()?;
        let path = match &b.module {
            Some(m) => format!("modules.{m}.{}", b.path),
            None => b.path.clone(),
        };
        Some((b.ms, b.id.clone(), path))
    }
}

impl InputMeta {
    /// Rejects a file whose newest time is beyond the drift bound.
    fn check_drift(&self, now_ms: i64, max_drift_ms: i64) -> Result<(), JobError> {
        let Some((ms, device, path)) = self.newest.located() else {
            return Ok(());
        };
        let stamp = Stamp::new(ms, 0, self.hub.clone());
        check_drift(&stamp, now_ms, max_drift_ms).map_err(|source| JobError::Drift {
            file: self.file.clone(),
            device,
            path,
            source: Box::new(source),
        })
    }
}

/// The clock of each hub's untimed writes, once every input is known.
/// `hubs` are sorted by name; `names` are the hubs as given.
///
/// # Errors
///
/// Exports without a base, a time beyond the drift bound, an as-of time
/// naming no hub, and whatever [`hub_clocks`] refuses; in that order.
pub(super) fn settle(
    job: &MergeJob,
    names: &[ReplicaId],
    base: Option<&InputMeta>,
    hubs: &[InputMeta],
) -> Result<HubClocks, JobError> {
    if base.is_none() {
        if let Some(export) = hubs.iter().find(|h| !h.real_times) {
            return Err(JobError::ExportWithoutBase {
                file: export.file.clone(),
            });
        }
    }
    for input in base.into_iter().chain(hubs) {
        input.check_drift(job.now_ms, job.max_drift_ms)?;
    }
    let timings: Vec<HubTiming> = hubs
        .iter()
        .map(|h| HubTiming {
            hub: h.hub.clone(),
            real_times: h.real_times,
            as_of: job.as_of.get(&h.hub).copied(),
            newest: h.newest.ms(),
        })
        .collect();
    for hub in job.as_of.keys() {
        if !names.contains(hub) {
            return Err(JobError::AsOfUnknownHub { hub: hub.clone() });
        }
    }
    let order = job.active_order.clone().or_else(|| default_order(names));
    Ok(hub_clocks(
        &timings,
        order.as_deref(),
        job.now_ms,
        job.max_drift_ms,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn times(status: Option<i64>, desired: &[(&str, i64)]) -> EntityTimes {
        let mut tree = MetaTree::default();
        for (key, ms) in desired {
            tree.children.insert(
                (*key).to_owned(),
                MetaTree {
                    last_updated: Some(*ms),
                    children: BTreeMap::new(),
                },
            );
        }
        EntityTimes {
            status,
            desired: tree,
            reported: MetaTree::default(),
        }
    }

    #[test]
    fn the_newest_time_does_not_depend_on_the_order_entities_come_in() {
        let entities = [
            ("d2", None, times(Some(5), &[])),
            ("d1", Some("m"), times(None, &[("a", 5)])),
            ("d1", None, times(Some(3), &[("b", 5), ("c", 5)])),
            ("d3", None, times(Some(4), &[])),
        ];
        let mut seen = Vec::new();
        for rotation in 0..entities.len() {
            let mut newest = Newest::default();
            for (id, module, t) in entities.iter().cycle().skip(rotation).take(entities.len()) {
                newest.offer_entity(id, *module, t);
            }
            seen.push(newest.located());
        }
        assert!(seen.iter().all(|s| *s == seen[0]));
        assert_eq!(
            seen[0],
            Some((5, "d1".to_owned(), "properties.desired.b".to_owned()))
        );
    }
}
