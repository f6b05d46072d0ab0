//! What a merge writes beside the devices: application metadata
//! (`appmeta/NAME.json`, `appmeta/NAME.automerge`) and jobs (`jobs.jsonl`,
//! `jobs.todo.jsonl`), with their conflicts in `conflicts.jsonl` after the
//! devices'. They are read and merged before the first device, so a bad
//! file stops the merge before anything is written, and written into the
//! same temporary directory as the devices' files, put in place in the
//! same step.

use std::collections::BTreeMap;
use std::io::BufReader;

use serde_json::{Value, json};

use super::{JobError, MergeJob, MergeReport, check_distinct};
use crate::appmeta::{AppMetaMerge, AppWrite, merge_dirs};
use crate::clock::ReplicaId;
use crate::doc::JobSet;
use crate::format::{ReadError, read_jobs_counted};
use crate::fsio::DirWriter;
use crate::kernel::Merge;
use crate::reconcile::default_order;

/// The rule of a job that hubs ended differently, in `conflicts.jsonl`.
const RULE_JOB_ENDING: &str = "job-ending";

/// Application metadata and jobs, merged.
#[derive(Debug, Default)]
pub(super) struct Extras {
    appmeta: Option<AppMetaMerge>,
    jobs: Option<Jobs>,
    /// Lines skipped, per jobs file.
    skipped: BTreeMap<String, u64>,
}

/// The hubs' jobs merged, and the order the hubs were active in.
#[derive(Debug)]
struct Jobs {
    set: JobSet,
    order: Vec<ReplicaId>,
}

fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> JobError + '_ {
    move |source| JobError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Checks the hub names of application metadata or jobs files (`what`):
/// none is `base` or given twice, and each is one of the device hubs when
/// there are any.
fn check_names<'a>(
    job: &MergeJob,
    names: impl Iterator<Item = &'a ReplicaId>,
    what: &'static str,
) -> Result<(), JobError> {
    let names: Vec<&ReplicaId> = names.collect();
    check_distinct(names.iter().copied())?;
    for name in names {
        if !job.hubs.is_empty() && !job.hubs.iter().any(|(hub, _)| hub == name) {
            return Err(JobError::UnknownHub {
                hub: name.clone(),
                what,
            });
        }
    }
    Ok(())
}

/// The order the hubs were active in, most recent last, as the job gives
/// it: `active_order`; else the hubs' as-of times, when every jobs hub has
/// one; else `primary,secondary` when those are the hubs. Every hub of a
/// jobs file must be in it: which of them failed is what it tells.
fn activation_order(job: &MergeJob) -> Result<Vec<ReplicaId>, JobError> {
    let jobs_hubs = || job.jobs_files.iter().map(|(hub, _)| hub);
    let order = if let Some(order) = &job.active_order {
        order.clone()
    } else if !job.as_of.is_empty() && jobs_hubs().all(|hub| job.as_of.contains_key(hub)) {
        let mut timed: Vec<(i64, &ReplicaId)> =
            job.as_of.iter().map(|(hub, ms)| (*ms, hub)).collect();
        timed.sort();
        timed.into_iter().map(|(_, hub)| hub.clone()).collect()
    } else {
        let names: Vec<ReplicaId> = if job.hubs.is_empty() {
            let mut names: Vec<ReplicaId> = jobs_hubs()
                .chain(job.appmeta.iter().map(|(hub, _)| hub))
                .cloned()
                .collect();
            names.sort();
            names.dedup();
            names
        } else {
            job.hubs.iter().map(|(hub, _)| hub.clone()).collect()
        };
        default_order(&names).unwrap_or_default()
    };
    for hub in jobs_hubs() {
        let named = order.iter().filter(|h| *h == hub).count();
        if named != 1 {
            return Err(JobError::JobsHubNotOrdered { hub: hub.clone() });
        }
    }
    Ok(order)
}

impl Extras {
    /// Reads and merges the job's application metadata and jobs.
    ///
    /// # Errors
    ///
    /// Bad hub names, a hub of a jobs file the activation order does not
    /// name, and the first bad file: application metadata first, then the
    /// jobs files in the order given.
    pub(super) fn read(job: &MergeJob) -> Result<Self, JobError> {
        check_names(
            job,
            job.appmeta.iter().map(|(hub, _)| hub),
            "application metadata",
        )?;
        check_names(
            job,
            job.jobs_files.iter().map(|(hub, _)| hub),
            "a jobs file",
        )?;
        let mut extras = Self::default();
        if job.appmeta_base.is_some() || !job.appmeta.is_empty() {
            let merged = merge_dirs(job.appmeta_base.as_deref(), &job.appmeta)
                .map_err(|e| JobError::Read(Box::new(e)))?;
            extras.appmeta = Some(merged);
        }
        if !job.jobs_files.is_empty() {
            let order = activation_order(job)?;
            let mut set = JobSet::default();
            for (hub, path) in &job.jobs_files {
                let file = path.display().to_string();
                let bad = |e| JobError::Read(Box::new(e));
                let opened =
                    std::fs::File::open(path).map_err(|e| bad(ReadError::io(file.clone(), e)))?;
                let (jobs, skipped) =
                    read_jobs_counted(BufReader::new(opened), &file, hub).map_err(bad)?;
                set.merge(&jobs);
                extras.skipped.insert(file, skipped);
            }
            extras.jobs = Some(Jobs { set, order });
        }
        Ok(extras)
    }

    /// The lines of `conflicts.jsonl` after the devices': application
    /// documents by name (each in document order), then jobs by id.
    fn conflict_lines(&self, report: &mut MergeReport) -> Vec<u8> {
        let mut out = Vec::new();
        let mut push = |line: Value, rule: &'static str| {
            *report.conflicts.entry(rule).or_default() += 1;
            out.extend_from_slice(line.to_string().as_bytes());
            out.push(b'\n');
        };
        let side = |write: &AppWrite| json!({"hub": write.replica.as_ref().map(ReplicaId::as_str), "value": write.value});
        for (name, rule, conflict) in self.appmeta.iter().flat_map(AppMetaMerge::conflicts) {
            let line = json!({
                "document": name,
                "path": conflict.path,
                "rule": rule,
                "winner": side(&conflict.winner),
                "losers": conflict.losers.iter().map(side).collect::<Vec<_>>(),
            });
            push(line, rule);
        }
        for job in self.jobs.iter().flat_map(|jobs| jobs.set.jobs()) {
            let Some((winner, losers)) = job.conflict() else {
                continue;
            };
            let side = |status: crate::doc::JobStatus| {
                let hub = job
                    .hubs()
                    .find(|(_, s)| *s == status)
                    .map(|(h, _)| h.as_str());
                json!({"hub": hub, "value": status.as_str()})
            };
            let line = json!({
                "jobId": job.job_id(),
                "path": "status",
                "rule": RULE_JOB_ENDING,
                "winner": side(winner),
                "losers": losers.into_iter().map(side).collect::<Vec<_>>(),
            });
            push(line, RULE_JOB_ENDING);
        }
        out
    }

    /// Writes the application documents and the jobs files into `dir`,
    /// and their counts into `report`. Returns the lines to append to
    /// `conflicts.jsonl`.
    pub(super) fn write(
        &self,
        dir: &mut DirWriter,
        report: &mut MergeReport,
    ) -> Result<Vec<u8>, JobError> {
        for (file, skipped) in &self.skipped {
            report.skipped_lines.insert(file.clone(), *skipped);
        }
        if let Some(appmeta) = &self.appmeta {
            dir.create_dir("appmeta")
                .map_err(io_error(&dir.path_of("appmeta")))?;
            for (name, doc) in appmeta.documents() {
                let mut text = serde_json::to_vec_pretty(&doc.to_json())
                    .map_err(|e| io_error(&dir.path_of("appmeta"))(e.into()))?;
                text.push(b'\n');
                for (file, bytes) in [
                    (format!("appmeta/{name}.json"), text),
                    (format!("appmeta/{name}.automerge"), doc.save()),
                ] {
                    dir.write(&file, &bytes)
                        .map_err(io_error(&dir.path_of(&file)))?;
                }
            }
            report.appmeta = appmeta.outcomes();
            report.appmeta_deleted = appmeta.deleted().map(str::to_owned).collect();
        }
        if let Some(jobs) = &self.jobs {
            let mut lines = Vec::new();
            let mut todo = Vec::new();
            let mut counts = BTreeMap::new();
            for job in jobs.set.jobs() {
                *counts.entry(job.status().as_str()).or_default() += 1;
                lines.extend_from_slice(job.to_json().to_string().as_bytes());
                lines.push(b'\n');
            }
            let mut todo_count = 0;
            for job in jobs.set.to_reschedule(&jobs.order) {
                todo_count += 1;
                todo.extend_from_slice(job.reschedule_json().to_string().as_bytes());
                todo.push(b'\n');
            }
            for (file, bytes) in [("jobs.jsonl", lines), ("jobs.todo.jsonl", todo)] {
                dir.write(file, &bytes)
                    .map_err(io_error(&dir.path_of(file)))?;
            }
            report.jobs = counts;
            report.jobs_todo = Some(todo_count);
            let skipped_files: Vec<&String> = self
                .skipped
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(file, _)| file)
                .collect();
            for file in skipped_files {
                report.warnings.push(format!(
                    "{file}: lines that are no JSON were skipped; give `az iot hub job list` output as JSON (its default output, not -o table or tsv)"
                ));
            }
        }
        Ok(self.conflict_lines(report))
    }
}
