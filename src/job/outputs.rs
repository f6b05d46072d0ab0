//! Writing the results: each device's lines rendered into memory, appended
//! in id order to files in a temporary directory, renamed into place only
//! when every file is complete. A merge that stops leaves nothing: the
//! temporary directory goes with the [`Outputs`] that made it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use super::source::DeviceInput;
use super::{JobError, MergeReport};
use crate::clock::ReplicaId;
use std::borrow::Cow;

use crate::doc::{Conflict, DeviceSnapshot, Entity};
use crate::format::{DeviceEtags, ExportLineRef, ImportMode, write_device};
use crate::reconcile::{
    Action, Outcome, PlanOp, Resolved, device_plan, twin_differs, write_import,
};
use crate::validate::shown_id;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> JobError + '_ {
    move |source| JobError::Io {
        path: path.display().to_string(),
        source,
    }
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

/// What a batch of devices counts for the report.
#[derive(Debug, Default)]
pub(super) struct Tally {
    devices: usize,
    devices_merged: usize,
    outcomes: BTreeMap<&'static str, usize>,
    conflicts: BTreeMap<&'static str, usize>,
    plans: Vec<BTreeMap<&'static str, usize>>,
    /// The import lines that write an identity without keys, as
    /// `hub: device "d" [module "m"] (mode)`.
    keyless: Vec<String>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.devices += other.devices;
        self.devices_merged += other.devices_merged;
        for (k, n) in other.outcomes {
            *self.outcomes.entry(k).or_default() += n;
        }
        for (k, n) in other.conflicts {
            *self.conflicts.entry(k).or_default() += n;
        }
        self.plans
            .resize_with(self.plans.len().max(other.plans.len()), BTreeMap::new);
        for (mine, theirs) in self.plans.iter_mut().zip(other.plans) {
            for (k, n) in theirs {
                *mine.entry(k).or_default() += n;
            }
        }
        self.keyless.extend(other.keyless);
    }
}

/// The lines of a batch of devices, rendered.
#[derive(Debug)]
pub(super) struct Rendered {
    merged: Vec<u8>,
    conflicts: Vec<u8>,
    plans: Vec<Vec<u8>>,
    tally: Tally,
}

impl Rendered {
    /// Nothing yet, for `hubs` hubs.
    pub(super) fn new(hubs: usize) -> Self {
        Self {
            merged: Vec::new(),
            conflicts: Vec::new(),
            plans: vec![Vec::new(); hubs],
            tally: Tally {
                plans: vec![BTreeMap::new(); hubs],
                ..Tally::default()
            },
        }
    }
}

/// Renders one merged device: its lines in `merged.jsonl`, its conflicts,
/// and each hub's import operations, guarded by the etags the hub holds.
/// `hubs` are the hubs' devices, sorted by hub name.
pub(super) fn render_device(
    out: &mut Rendered,
    hubs: &[Option<&DeviceInput>],
    names: &[ReplicaId],
    resolved: &Resolved<'_>,
    outcome: Outcome,
    real_time: bool,
) {
    // Writing into a `Vec` cannot fail; the results are ignored.
    let tally = &mut out.tally;
    tally.devices += 1;
    *tally.outcomes.entry(outcome.name()).or_default() += 1;
    let merged = resolved.merged.as_deref();
    if let Some(device) = merged {
        tally.devices_merged += 1;
        let _ = write_device(&mut out.merged, device, DeviceEtags::default());
    }
    for conflict in &resolved.conflicts {
        *tally.conflicts.entry(conflict.rule.name()).or_default() += 1;
        let _ = serde_json::to_writer(&mut out.conflicts, &conflict_json(conflict, real_time));
        out.conflicts.push(b'\n');
    }
    let settled = resolved
        .settled
        .iter()
        .copied()
        .chain(std::iter::repeat(false));
    for (n, ((hub, settled), name)) in hubs.iter().zip(settled).zip(names).enumerate() {
        if settled {
            continue;
        }
        let (Some(lines), Some(counts)) = (out.plans.get_mut(n), tally.plans.get_mut(n)) else {
            continue;
        };
        let held = hub.map(|d| assume_known(d, merged));
        let ops = device_plan(held.as_deref(), merged);
        for op in &ops {
            let mode = plan_line(lines, op, *hub);
            *counts.entry(mode.as_str()).or_default() += 1;
            let writes_identity = !matches!(
                mode,
                ImportMode::UpdateTwinIfMatchETag | ImportMode::DeleteIfMatchETag
            );
            if writes_identity && op.entity.is_none_or(|e| e.authentication.is_none()) {
                let module = op
                    .module_id
                    .map(|m| format!(" module {}", shown_id(m)))
                    .unwrap_or_default();
                tally.keyless.push(format!(
                    "{name}: device {}{module} ({mode})",
                    shown_id(op.id)
                ));
            }
        }
    }
}

/// The hub's device as a plan compares it with the merged one: what its
/// input could not know (keys, for a twin file; twins, for an identity
/// file) and no base told, taken as the merged device has it. An unknown
/// is never a difference to write: a twin file's hub is not sent every
/// device's identity because its file has no keys.
fn assume_known<'a>(
    hub: &'a DeviceInput,
    merged: Option<&DeviceSnapshot>,
) -> Cow<'a, DeviceSnapshot> {
    let Some(merged) = merged else {
        return Cow::Borrowed(&hub.snapshot);
    };
    let unknown = |held: &Entity, merged: Option<&Entity>| {
        merged.is_some_and(|m| {
            (held.authentication.is_none() && m.authentication.is_some())
                || (!hub.knows_twin && twin_differs(held, m))
        })
    };
    let held = &hub.snapshot;
    let any = unknown(&held.device, Some(&merged.device))
        || held
            .modules
            .iter()
            .any(|(m, e)| unknown(e, merged.modules.get(m)));
    if !any {
        return Cow::Borrowed(held);
    }
    let mut assumed = held.clone();
    let fill = |held: &mut Entity, merged: &Entity| {
        if held.authentication.is_none() {
            held.authentication.clone_from(&merged.authentication);
        }
        if !hub.knows_twin {
            held.tags.clone_from(&merged.tags);
            held.desired.clone_from(&merged.desired);
            held.reported.clone_from(&merged.reported);
        }
    };
    fill(&mut assumed.device, &merged.device);
    for (m, entity) in &mut assumed.modules {
        if let Some(merged) = merged.modules.get(m) {
            fill(entity, merged);
        }
    }
    Cow::Owned(assumed)
}

/// Writes one import line of a hub's plan, guarded by the etag the hub
/// holds: `create` never overwrites, updates and deletes match the etag.
/// A hub whose input has no twin etag (an identity file) gets its twin
/// changes as a whole identity line, guarded by the identity's etag.
fn plan_line(w: &mut Vec<u8>, op: &PlanOp<'_>, hub: Option<&DeviceInput>) -> ImportMode {
    let knows_twin = hub.is_none_or(|d| d.knows_twin);
    let mode = match op.action {
        Action::Create => ImportMode::Create,
        Action::UpdateIdentity => ImportMode::UpdateIfMatchETag,
        Action::UpdateTwin if knows_twin => ImportMode::UpdateTwinIfMatchETag,
        Action::UpdateTwin => ImportMode::UpdateIfMatchETag,
        Action::Delete => ImportMode::DeleteIfMatchETag,
    };
    // The etags of the record the hub holds, absent ones as empty.
    let record = hub.and_then(|d| match op.module_id {
        None => Some((d.etag.as_deref(), d.twin_etag.as_deref())),
        Some(m) => d
            .module_etags
            .get(m)
            .map(|(e, t)| (e.as_deref(), t.as_deref())),
    });
    let (etag, twin_etag) = match (mode, record) {
        (ImportMode::Create, _) | (_, None) => (None, None),
        (ImportMode::UpdateTwinIfMatchETag, Some((_, twin))) => {
            (None, Some(twin.unwrap_or_default()))
        }
        (_, Some((etag, _))) => (Some(etag.unwrap_or_default()), None),
    };
    let none = Entity::default();
    let entity = op.entity.unwrap_or(&none);
    let _ = write_import(
        w,
        &ExportLineRef {
            id: op.id,
            module_id: op.module_id,
            etag,
            twin_etag,
            import_mode: Some(mode),
            entity,
        },
    );
    mode
}

/// An output file being written.
struct Output {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl Output {
    fn create(dir: &Path, name: &str) -> Result<Self, JobError> {
        let path = dir.join(name);
        let file = File::create(&path).map_err(io_error(&path))?;
        Ok(Self {
            writer: BufWriter::with_capacity(1 << 18, file),
            path,
        })
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), JobError> {
        self.writer.write_all(bytes).map_err(io_error(&self.path))
    }

    fn finish(mut self) -> Result<(), JobError> {
        self.writer.flush().map_err(io_error(&self.path))
    }
}

/// The files of the results, open.
struct Files {
    merged: Output,
    conflicts: Output,
    plans: Vec<(ReplicaId, Output)>,
}

/// The results being written into a temporary directory beside `out`.
pub(super) struct Outputs {
    out: PathBuf,
    tmp: PathBuf,
    files: Option<Files>,
    tally: Tally,
    done: bool,
}

impl Outputs {
    /// Starts the results for `hubs` (sorted by name), in a fresh
    /// temporary directory.
    pub(super) fn begin(out: &Path, hubs: &[ReplicaId]) -> Result<Self, JobError> {
        let tmp = sibling(out, "tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_error(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io_error(&tmp))?;
        // From here on, dropping `Outputs` removes the directory.
        let mut outputs = Self {
            out: out.to_owned(),
            tmp,
            files: None,
            tally: Tally::default(),
            done: false,
        };
        let dir = &outputs.tmp;
        let mut plans = Vec::new();
        for hub in hubs {
            plans.push((
                hub.clone(),
                Output::create(dir, &format!("{hub}.import.jsonl"))?,
            ));
        }
        outputs.files = Some(Files {
            merged: Output::create(dir, "merged.jsonl")?,
            conflicts: Output::create(dir, "conflicts.jsonl")?,
            plans,
        });
        Ok(outputs)
    }

    /// The import lines written so far that write an identity without
    /// keys.
    pub(super) fn keyless(&self) -> &[String] {
        &self.tally.keyless
    }

    /// Appends a batch of rendered devices.
    pub(super) fn append(&mut self, rendered: Rendered) -> Result<(), JobError> {
        if let Some(files) = &mut self.files {
            files.merged.append(&rendered.merged)?;
            files.conflicts.append(&rendered.conflicts)?;
            for ((_, output), bytes) in files.plans.iter_mut().zip(&rendered.plans) {
                output.append(bytes)?;
            }
        }
        self.tally.add(rendered.tally);
        Ok(())
    }

    /// Completes the report from what was written, writes `report.json`,
    /// and renames the directory into place.
    pub(super) fn finish(mut self, report: &mut MergeReport) -> Result<(), JobError> {
        let tally = std::mem::take(&mut self.tally);
        let Some(files) = self.files.take() else {
            return Ok(());
        };
        report.devices_merged = tally.devices_merged;
        report.outcomes = tally.outcomes;
        report.conflicts = tally.conflicts;
        if tally.devices > 0 {
            let counts = tally
                .plans
                .into_iter()
                .chain(std::iter::repeat_with(BTreeMap::new));
            for ((hub, _), counts) in files.plans.iter().zip(counts) {
                report.plans.insert(hub.to_string(), counts);
            }
        }
        if !tally.keyless.is_empty() {
            report.warnings.push(format!(
                "{} import lines write an identity without authentication (no input knows their keys; new keys were allowed): the hub will generate new keys for them",
                tally.keyless.len()
            ));
        }
        files.merged.finish()?;
        files.conflicts.finish()?;
        for (_, plan) in files.plans {
            plan.finish()?;
        }
        let report_path = self.tmp.join("report.json");
        let mut bytes =
            serde_json::to_vec_pretty(report).map_err(|e| io_error(&report_path)(e.into()))?;
        bytes.push(b'\n');
        fs::write(&report_path, bytes).map_err(io_error(&report_path))?;
        let old = sibling(&self.out, "old");
        if self.out.exists() {
            fs::rename(&self.out, &old).map_err(io_error(&self.out))?;
        }
        fs::rename(&self.tmp, &self.out).map_err(io_error(&self.out))?;
        self.done = true;
        if old.exists() {
            fs::remove_dir_all(&old).map_err(io_error(&old))?;
        }
        Ok(())
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

fn sibling(out: &Path, what: &str) -> PathBuf {
    let name = out.file_name().map_or_else(
        || "failback-out".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    out.with_file_name(format!(".{name}.{what}-{}", std::process::id()))
}
