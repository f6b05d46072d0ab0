//! Reading the base and the hubs.

use std::collections::BTreeMap;
use std::path::Path;

use super::JobError;
use crate::clock::{ReplicaId, Stamp, check_drift};
use crate::doc::{DeviceTimes, MetaTree};
use crate::format::{Format, InputFile, read_input};
use crate::reconcile::{HubImage, HubSnapshots, HubTiming, Record};

/// One input file, read: its devices as snapshots, its records with etags
/// (what plans are guarded by) and its times.
#[derive(Clone, Debug)]
pub struct HubInput {
    /// The file, as named on the command line.
    pub file: String,
    /// The devices, named by hub.
    pub snapshots: HubSnapshots,
    /// The records with their etags.
    pub image: HubImage,
    /// Whether the file carries real per-field times (a twin file).
    pub real_times: bool,
    /// Lines skipped as hub warnings.
    pub skipped: u64,
}

pub(super) fn read_hub(path: &Path, format: Option<Format>) -> Result<HubInput, JobError> {
    let file = path.display().to_string();
    let placeholder = ReplicaId::new(crate::reconcile::BASE).expect("valid literal");
    let mut image = HubImage::new();
    let mut devices = BTreeMap::new();
    let mut times = BTreeMap::new();
    let (real_times, skipped) = match read_input(path, format)? {
        InputFile::Export(export) => {
            image = HubImage::from_export(&export);
            for (id, device) in export.devices {
                devices.insert(id, device.snapshot);
            }
            (false, export.skipped)
        }
        InputFile::Twin(twins) => {
            for (id, device) in twins.devices {
                let twin_etag = device.twin.etag.clone().unwrap_or_default();
                image.insert(
                    &id,
                    None,
                    record(&device.snapshot.device, String::new(), twin_etag),
                );
                let mut device_times = DeviceTimes {
                    device: device.twin.times.clone(),
                    modules: BTreeMap::new(),
                };
                for (module_id, entity) in &device.snapshot.modules {
                    let info = device.modules.get(module_id);
                    let twin_etag = info.and_then(|i| i.etag.clone()).unwrap_or_default();
                    image.insert(
                        &id,
                        Some(module_id),
                        record(entity, String::new(), twin_etag),
                    );
                    if let Some(info) = info {
                        device_times
                            .modules
                            .insert(module_id.clone(), info.times.clone());
                    }
                }
                times.insert(id.clone(), device_times);
                devices.insert(id, device.snapshot);
            }
            (true, twins.skipped)
        }
    };
    Ok(HubInput {
        file,
        snapshots: HubSnapshots {
            hub: placeholder,
            devices,
            times,
        },
        image,
        real_times,
        skipped,
    })
}

fn record(entity: &crate::doc::Entity, etag: String, twin_etag: String) -> Record {
    Record {
        entity: entity.clone(),
        etag,
        twin_etag,
    }
}

/// The newest `$lastUpdated` of a tree, with its path.
fn newest(tree: &MetaTree, path: &mut Vec<String>, best: &mut Option<(i64, String)>) {
    if let Some(ms) = tree.last_updated {
        if best.as_ref().is_none_or(|(b, _)| ms > *b) {
            *best = Some((ms, path.join(".")));
        }
    }
    for (key, child) in &tree.children {
        path.push(key.clone());
        newest(child, path, best);
        path.pop();
    }
}

impl HubInput {
    pub(super) fn named(mut self, hub: ReplicaId) -> Self {
        self.snapshots.hub = hub;
        self
    }

    /// The newest time the file carries: (ms, device, path).
    fn newest_time(&self) -> Option<(i64, String, String)> {
        let mut overall: Option<(i64, String, String)> = None;
        for (id, times) in &self.snapshots.times {
            let entities = std::iter::once((String::new(), &times.device)).chain(
                times
                    .modules
                    .iter()
                    .map(|(m, t)| (format!("modules.{m}."), t)),
            );
            for (prefix, entity) in entities {
                let mut best = entity.status.map(|ms| (ms, "status".to_owned()));
                for (section, tree) in [
                    ("properties.desired", &entity.desired),
                    ("properties.reported", &entity.reported),
                ] {
                    let mut path = vec![section.to_owned()];
                    newest(tree, &mut path, &mut best);
                }
                if let Some((ms, path)) = best {
                    if overall.as_ref().is_none_or(|(b, _, _)| ms > *b) {
                        overall = Some((ms, id.clone(), format!("{prefix}{path}")));
                    }
                }
            }
        }
        overall
    }

    /// Rejects a file whose newest time is beyond the drift bound.
    pub(super) fn check_drift(&self, now_ms: i64, max_drift_ms: i64) -> Result<(), JobError> {
        let Some((ms, device, path)) = self.newest_time() else {
            return Ok(());
        };
        let stamp = Stamp::new(ms, 0, self.snapshots.hub.clone());
        check_drift(&stamp, now_ms, max_drift_ms).map_err(|source| JobError::Drift {
            file: self.file.clone(),
            device,
            path,
            source: Box::new(source),
        })
    }

    pub(super) fn timing(&self, as_of: Option<i64>) -> HubTiming {
        HubTiming {
            hub: self.snapshots.hub.clone(),
            real_times: self.real_times,
            as_of,
            newest: self.newest_time().map(|(ms, _, _)| ms),
        }
    }
}
