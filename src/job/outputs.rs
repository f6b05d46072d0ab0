//! Writing the results: each device's lines rendered into memory, appended
//! in id order to files in a temporary directory, synced and put in place
//! of the output directory in one step only when every file is complete
//! (see [`crate::fsio`]). A merge that stops or is killed leaves the output
//! directory as it was: the temporary directory goes with the [`Outputs`]
//! that made it, or is removed by the next merge into the same place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::extras::Extras;
use super::source::DeviceInput;
use super::{JobError, MergeReport};
use crate::clock::ReplicaId;
use crate::doc::{Conflict, DeviceSnapshot, Entity};
use crate::format::{DeviceEtags, ExportLineRef, write_device};
use crate::fsio::{DirWriter, OutFile};
use crate::reconcile::{Outcome, Resolved, hub_plan, write_import, writes_keyless};
use crate::validate::shown_id;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> JobError + '_ {
    move |source| JobError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// [`DirWriter::begin`]'s error: a refusal to replace `out` is the
/// operator's (exit status 2), any other the machine's.
fn begin_error(out: &Path) -> impl FnOnce(std::io::Error) -> JobError + '_ {
    move |source| {
        let path = out.display().to_string();
        if crate::fsio::is_not_replaced(&source) {
            JobError::OutTaken { path, source }
        } else {
            JobError::Io { path, source }
        }
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
    devices_merged: usize,
    outcomes: BTreeMap<&'static str, usize>,
    conflicts: BTreeMap<&'static str, usize>,
    plans: Vec<BTreeMap<&'static str, usize>>,
    /// The import lines that write an identity without keys, as
    /// `hub: device "d" [module "m"] (mode)`.
    keyless: Vec<String>,
    /// Per hub, the operations on edge system modules a plan left out.
    not_carried: Vec<usize>,
    /// The inputs (base first) with a time read without a zone.
    pub(super) zoneless: std::collections::BTreeSet<usize>,
}

impl Tally {
    fn for_hubs(hubs: usize) -> Self {
        Self {
            plans: vec![BTreeMap::new(); hubs],
            not_carried: vec![0; hubs],
            ..Tally::default()
        }
    }

    fn add(&mut self, other: Tally) {
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
        self.not_carried
            .resize(self.not_carried.len().max(other.not_carried.len()), 0);
        for (mine, theirs) in self.not_carried.iter_mut().zip(other.not_carried) {
            *mine += theirs;
        }
        self.keyless.extend(other.keyless);
        self.zoneless.extend(other.zoneless);
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
    /// Notes that input `n` (base first) had a time without a zone.
    pub(super) fn tally_zoneless(&mut self, n: usize) {
        self.tally.zoneless.insert(n);
    }

    /// Nothing yet, for `hubs` hubs.
    pub(super) fn new(hubs: usize) -> Self {
        Self {
            merged: Vec::new(),
            conflicts: Vec::new(),
            plans: vec![Vec::new(); hubs],
            tally: Tally::for_hubs(hubs),
        }
    }

    /// Empties it for the next batch, keeping the buffers' room: a batch's
    /// lines are a few hundred kilobytes, which a fresh buffer reaches by
    /// doubling, with a copy and new pages each time.
    fn clear(&mut self) {
        self.merged.clear();
        self.conflicts.clear();
        for plan in &mut self.plans {
            plan.clear();
        }
    }
}

/// Renders one merged device: its lines in `merged.jsonl`, its conflicts,
/// and each hub's import operations, guarded by the etags the hub holds.
/// `hubs` are the hubs' devices, sorted by hub name.
pub(super) fn render_device(
    out: &mut Rendered,
    hubs: &[Option<&DeviceInput>],
    base: Option<&DeviceSnapshot>,
    names: &[ReplicaId],
    resolved: &Resolved<'_>,
    outcome: Outcome,
    real_time: bool,
) {
    // Writing into a `Vec` cannot fail; the results are ignored.
    let tally = &mut out.tally;
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
        let input = hub.map(|d| d.plan_input());
        let left_out = hub_plan(input, base, merged, |op, mode, etag, twin_etag| {
            let none = Entity::default();
            let _ = write_import(
                lines,
                &ExportLineRef {
                    id: op.id,
                    module_id: op.module_id,
                    etag,
                    twin_etag,
                    import_mode: Some(mode),
                    entity: op.entity.unwrap_or(&none),
                },
            );
            *counts.entry(mode.as_str()).or_default() += 1;
            if writes_keyless(mode, op.entity) {
                let module = op
                    .module_id
                    .map(|m| format!(" module {}", shown_id(m)))
                    .unwrap_or_default();
                tally.keyless.push(format!(
                    "{name}: device {}{module} ({mode})",
                    shown_id(op.id)
                ));
            }
        });
        if let Some(count) = tally.not_carried.get_mut(n) {
            *count += left_out;
        }
    }
}

/// An output file being written.
struct Output(OutFile);

impl Output {
    fn create(dir: &DirWriter, name: &str) -> Result<Self, JobError> {
        dir.create(name)
            .map(Self)
            .map_err(|e| io_error(&dir.path_of(name))(e))
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), JobError> {
        let Self(file) = self;
        file.append(bytes).map_err(io_error(file.path()))
    }

    fn finish(self) -> Result<(), JobError> {
        let path = self.0.path().to_owned();
        self.0.finish().map_err(io_error(&path))
    }
}

/// The files of the results, open.
struct Files {
    merged: Output,
    conflicts: Output,
    plans: Vec<(ReplicaId, Output)>,
}

/// The results being written into a temporary directory beside `out`;
/// dropped before [`Outputs::finish`], the directory goes with them.
pub(super) struct Outputs {
    out: PathBuf,
    dir: Option<DirWriter>,
    files: Option<Files>,
    tally: Tally,
}

/// Whether `name` is one a merge writes into its output directory: only
/// a directory holding nothing else is replaced.
fn is_output(name: &str) -> bool {
    matches!(
        name,
        "merged.jsonl"
            | "conflicts.jsonl"
            | "report.json"
            | "appmeta"
            | "jobs.jsonl"
            | "jobs.todo.jsonl"
    ) || name.ends_with(".import.jsonl")
}

/// Writes `report.json` into `dir` and puts `dir` in place of `out`.
fn commit(dir: DirWriter, out: &Path, report: &MergeReport) -> Result<(), JobError> {
    let report_path = dir.path_of("report.json");
    let mut bytes =
        serde_json::to_vec_pretty(report).map_err(|e| io_error(&report_path)(e.into()))?;
    bytes.push(b'\n');
    dir.write("report.json", &bytes)
        .map_err(io_error(&report_path))?;
    dir.commit().map_err(io_error(out))
}

/// A merge of application metadata or jobs only: their files,
/// `conflicts.jsonl` and `report.json`, all or nothing.
pub(super) fn write_extras_only(out: &Path, extras: &Extras) -> Result<MergeReport, JobError> {
    let mut dir = DirWriter::begin(out, &is_output).map_err(begin_error(out))?;
    let mut report = MergeReport::default();
    let conflicts = extras.write(&mut dir, &mut report)?;
    dir.write("conflicts.jsonl", &conflicts)
        .map_err(io_error(&dir.path_of("conflicts.jsonl")))?;
    commit(dir, out, &report)?;
    Ok(report)
}

/// The files of the results that hold keys in clear (the others hold at
/// most their `sha256:` fingerprints), for `report.json`.
pub(super) fn secret_files(hubs: &[ReplicaId]) -> Vec<String> {
    let mut names = vec!["merged.jsonl".to_owned()];
    names.extend(hubs.iter().map(|hub| format!("{hub}.import.jsonl")));
    names
}

impl Outputs {
    /// Starts the results for `hubs` (sorted by name), in a fresh
    /// temporary directory.
    pub(super) fn begin(out: &Path, hubs: &[ReplicaId]) -> Result<Self, JobError> {
        let dir = DirWriter::begin(out, &is_output).map_err(begin_error(out))?;
        // From here on, dropping `dir` removes the temporary directory.
        let mut plans = Vec::new();
        for hub in hubs {
            plans.push((
                hub.clone(),
                Output::create(&dir, &format!("{hub}.import.jsonl"))?,
            ));
        }
        let files = Files {
            merged: Output::create(&dir, "merged.jsonl")?,
            conflicts: Output::create(&dir, "conflicts.jsonl")?,
            plans,
        };
        Ok(Self {
            out: out.to_owned(),
            dir: Some(dir),
            files: Some(files),
            tally: Tally::default(),
        })
    }

    /// The inputs (base first) that had a time without a zone.
    pub(super) fn zoneless(&self) -> &std::collections::BTreeSet<usize> {
        &self.tally.zoneless
    }

    /// The import lines written so far that write an identity without
    /// keys.
    pub(super) fn keyless(&self) -> &[String] {
        &self.tally.keyless
    }

    /// Appends a batch of rendered devices (its lines and counts), and
    /// empties `rendered` for the next batch.
    pub(super) fn append(&mut self, rendered: &mut Rendered) -> Result<(), JobError> {
        if let Some(files) = &mut self.files {
            files.merged.append(&rendered.merged)?;
            files.conflicts.append(&rendered.conflicts)?;
            for ((_, output), bytes) in files.plans.iter_mut().zip(&rendered.plans) {
                output.append(bytes)?;
            }
        }
        let hubs = rendered.plans.len();
        self.tally.add(std::mem::replace(
            &mut rendered.tally,
            Tally::for_hubs(hubs),
        ));
        rendered.clear();
        Ok(())
    }

    /// Completes the report from what was written, writes `report.json`,
    /// and renames the directory into place.
    pub(super) fn finish(
        mut self,
        report: &mut MergeReport,
        extras: &Extras,
    ) -> Result<(), JobError> {
        let tally = std::mem::take(&mut self.tally);
        let Some(files) = self.files.take() else {
            return Ok(());
        };
        let hubs: Vec<ReplicaId> = files.plans.iter().map(|(hub, _)| hub.clone()).collect();
        report.secret_files = secret_files(&hubs);
        report.devices_merged = tally.devices_merged;
        report.outcomes = tally.outcomes;
        report.conflicts = tally.conflicts;
        // Every plan file written is counted, an empty one too (a merge of
        // no devices): its hub maps to no lines.
        let counts = tally
            .plans
            .into_iter()
            .chain(std::iter::repeat_with(BTreeMap::new));
        for ((hub, _), counts) in files.plans.iter().zip(counts) {
            report.plans.insert(hub.to_string(), counts);
        }
        for ((hub, _), n) in files.plans.iter().zip(&tally.not_carried) {
            if *n > 0 {
                report.warnings.push(format!(
                    "{n} changes to edge system modules ($edgeAgent, $edgeHub) are not in the {hub} plan: the hub creates them with their device and keeps their keys, and the deployment sets their desired properties; redeploy if they must change"
                ));
            }
        }
        if !tally.keyless.is_empty() {
            report.warnings.push(format!(
                "{} import lines write an identity without authentication (no input knows their keys; new keys were allowed): the hub will generate new keys for them",
                tally.keyless.len()
            ));
        }
        let Some(mut dir) = self.dir.take() else {
            return Ok(());
        };
        let mut conflicts = files.conflicts;
        conflicts.append(&extras.write(&mut dir, report)?)?;
        files.merged.finish()?;
        conflicts.finish()?;
        for (_, plan) in files.plans {
            plan.finish()?;
        }
        commit(dir, &self.out, report)
    }
}
