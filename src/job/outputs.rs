//! Writing the results: into a temporary directory, renamed into place only
//! when every file is complete.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use super::inputs::HubInput;
use super::{JobError, MergeReport};
use crate::doc::Conflict;
use crate::format::{DeviceEtags, ImportMode, write_device};
use crate::reconcile::{DeviceOutcome, device_plan, import_lines, write_import_line};

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> JobError + '_ {
    move |source| JobError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn create(dir: &Path, name: &str) -> Result<(PathBuf, BufWriter<File>), JobError> {
    let path = dir.join(name);
    let file = File::create(&path).map_err(io_error(&path))?;
    Ok((path, BufWriter::new(file)))
}

/// One conflict as a line of `conflicts.jsonl`. On the activation-order
/// scale (`real_time` false) a stamp's `ms` is the hub's rank, not a time,
/// and no `time` is written.
pub(crate) fn conflict_json(conflict: &Conflict, real_time: bool) -> serde_json::Value {
    let side = |s: &crate::doc::Side| {
        let mut stamp = json!({"ms": s.stamp.ms(), "logical": s.stamp.logical()});
        if real_time {
            stamp["time"] = json!(s.stamp.to_rfc3339());
        }
        json!({"hub": s.hub.as_str(), "value": s.value, "stamp": stamp})
    };
    let mut line = json!({
        "id": conflict.id,
        "path": conflict.path,
        "rule": conflict.rule.name(),
        "winner": side(&conflict.winner),
        "losers": conflict.losers.iter().map(side).collect::<Vec<_>>(),
    });
    if let Some(module) = &conflict.module_id {
        line["moduleId"] = json!(module);
    }
    line
}

pub(super) fn write_all(
    out: &Path,
    outcomes: &[DeviceOutcome],
    hubs: &[HubInput],
    real_time: bool,
    report: &mut MergeReport,
) -> Result<(), JobError> {
    let tmp = sibling(out, "tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_error(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io_error(&tmp))?;
    let result = write_into(&tmp, outcomes, hubs, real_time, report);
    if let Err(err) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(err);
    }
    let old = sibling(out, "old");
    if out.exists() {
        fs::rename(out, &old).map_err(io_error(out))?;
    }
    fs::rename(&tmp, out).map_err(io_error(out))?;
    if old.exists() {
        fs::remove_dir_all(&old).map_err(io_error(&old))?;
    }
    Ok(())
}

fn sibling(out: &Path, what: &str) -> PathBuf {
    let name = out.file_name().map_or_else(
        || "failback-out".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    out.with_file_name(format!(".{name}.{what}-{}", std::process::id()))
}

fn write_into(
    dir: &Path,
    outcomes: &[DeviceOutcome],
    hubs: &[HubInput],
    real_time: bool,
    report: &mut MergeReport,
) -> Result<(), JobError> {
    let (merged_path, mut merged) = create(dir, "merged.jsonl")?;
    let (conflicts_path, mut conflicts) = create(dir, "conflicts.jsonl")?;
    let mut plans = Vec::new();
    for hub in hubs {
        plans.push(create(dir, &format!("{}.import.jsonl", hub.snapshots.hub))?);
    }
    let mut keyless = 0usize;
    for outcome in outcomes {
        *report.outcomes.entry(outcome.outcome.name()).or_default() += 1;
        let merged_device = outcome.merge.merged.as_ref();
        if let Some(device) = merged_device {
            report.devices_merged += 1;
            write_device(&mut merged, device, DeviceEtags::default())
                .map_err(io_error(&merged_path))?;
        }
        for conflict in &outcome.merge.conflicts {
            *report.conflicts.entry(conflict.rule.name()).or_default() += 1;
            serde_json::to_writer(&mut conflicts, &conflict_json(conflict, real_time))
                .map_err(|e| io_error(&conflicts_path)(e.into()))?;
            conflicts
                .write_all(b"\n")
                .map_err(io_error(&conflicts_path))?;
        }
        for (hub, (path, writer)) in hubs.iter().zip(plans.iter_mut()) {
            let ops = device_plan(hub.snapshots.devices.get(&outcome.id), merged_device);
            let counts = report
                .plans
                .entry(hub.snapshots.hub.to_string())
                .or_default();
            for line in import_lines(&ops, &hub.image) {
                *counts.entry(line.mode.as_str()).or_default() += 1;
                let writes_identity = !matches!(
                    line.mode,
                    ImportMode::UpdateTwinIfMatchETag | ImportMode::DeleteIfMatchETag
                );
                if writes_identity && line.entity.authentication.is_none() {
                    keyless += 1;
                }
                write_import_line(writer, &line).map_err(io_error(path))?;
            }
        }
    }
    if keyless > 0 {
        report.warnings.push(format!(
            "{keyless} import lines write an identity without authentication (the inputs carried no keys): the hub will generate new keys for them"
        ));
    }
    merged.flush().map_err(io_error(&merged_path))?;
    conflicts.flush().map_err(io_error(&conflicts_path))?;
    for (path, mut writer) in plans {
        writer.flush().map_err(io_error(&path))?;
    }
    let report_path = dir.join("report.json");
    let mut bytes =
        serde_json::to_vec_pretty(report).map_err(|e| io_error(&report_path)(e.into()))?;
    bytes.push(b'\n');
    fs::write(&report_path, bytes).map_err(io_error(&report_path))?;
    Ok(())
}
