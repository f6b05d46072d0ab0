//! The failback merge as operators run it: read the base and the hubs'
//! files, merge, and write `merged.jsonl`, one import plan per hub,
//! `conflicts.jsonl` and `report.json`, all or nothing.

mod inputs;
mod outputs;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

pub use inputs::HubInput;

use crate::clock::ReplicaId;
use crate::doc::Policies;
use crate::format::{Format, ReadError};
use crate::reconcile::{StampError, default_order, hub_stamps, merge_fleet};

/// What to merge and where to put the results.
#[derive(Clone, Debug)]
pub struct MergeJob {
    /// The common base (the backup the secondary was seeded from). Needed
    /// for exports; optional for twin files.
    pub base: Option<PathBuf>,
    /// Each hub's file, by hub name. Their order never matters.
    pub hubs: Vec<(ReplicaId, PathBuf)>,
    /// The output directory, written whole or not at all.
    pub out: PathBuf,
    /// The order the hubs were active in, most recent last.
    pub active_order: Option<Vec<ReplicaId>>,
    /// Each hub's as-of time, ms since the epoch.
    pub as_of: BTreeMap<ReplicaId, i64>,
    /// The bound on how far ahead of `now_ms` a time may be.
    pub max_drift_ms: i64,
    /// The merging machine's time (the merge itself never reads a clock).
    pub now_ms: i64,
    /// Threads for the merge.
    pub jobs: usize,
    /// The input format, when not detected per file.
    pub format: Option<Format>,
    /// The policies.
    pub policies: Policies,
}

/// Why a merge could not run. Everything but `Io` is the input's fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// A file could not be read or holds a bad line.
    #[error(transparent)]
    Read(Box<ReadError>),
    /// The command was given inconsistent arguments.
    #[error("{0}")]
    Usage(String),
    /// The hubs' times cannot be put on one scale, or one is too far ahead.
    #[error(transparent)]
    Stamp(#[from] StampError),
    /// A time in a file is too far in the future.
    #[error("{file}: device {device:?} field {path:?}: {source}")]
    Drift {
        /// The file.
        file: String,
        /// The device.
        device: String,
        /// The field.
        path: String,
        /// The bound crossed.
        source: Box<crate::clock::DriftError>,
    },
    /// Writing the results failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl From<ReadError> for JobError {
    fn from(error: ReadError) -> Self {
        JobError::Read(Box::new(error))
    }
}

impl JobError {
    /// Whether the input (not the machine) is at fault: exit status 2.
    pub fn is_input(&self) -> bool {
        !matches!(self, JobError::Io { .. })
    }
}

/// What a merge did, for the report and the human summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MergeReport {
    /// Devices in the merged state.
    pub devices_merged: usize,
    /// Device ids seen, by outcome.
    pub outcomes: BTreeMap<&'static str, usize>,
    /// Conflicts by rule.
    pub conflicts: BTreeMap<&'static str, usize>,
    /// Import operations per hub, by import mode.
    pub plans: BTreeMap<String, BTreeMap<&'static str, usize>>,
    /// Lines skipped (hub warnings), per input file.
    pub skipped_lines: BTreeMap<String, u64>,
    /// Things an operator should know.
    pub warnings: Vec<String>,
}

/// Runs a merge job: reads, merges, writes the results into `job.out`.
///
/// # Errors
///
/// [`JobError`]: bad input or arguments (nothing is written then), or an
/// I/O error while writing (the output directory is then left as it was).
pub fn run_merge(job: &MergeJob) -> Result<MergeReport, JobError> {
    let names: Vec<ReplicaId> = job.hubs.iter().map(|(n, _)| n.clone()).collect();
    check_names(&names)?;
    let base = job
        .base
        .as_ref()
        .map(|path| inputs::read_hub(path, job.format))
        .transpose()?;
    let mut hubs = Vec::new();
    for (name, path) in &job.hubs {
        hubs.push(inputs::read_hub(path, job.format)?.named(name.clone()));
    }
    hubs.sort_by(|a, b| a.snapshots.hub.cmp(&b.snapshots.hub));
    if base.is_none() {
        if let Some(export) = hubs.iter().find(|h| !h.real_times) {
            return Err(JobError::Usage(format!(
                "{}: a bulk export carries no times: --base is required to tell who changed what",
                export.file
            )));
        }
    }
    for hub in base.iter().chain(&hubs) {
        hub.check_drift(job.now_ms, job.max_drift_ms)?;
    }
    let timings: Vec<_> = hubs
        .iter()
        .map(|h| h.timing(job.as_of.get(&h.snapshots.hub).copied()))
        .collect();
    for hub in job.as_of.keys() {
        if !names.contains(hub) {
            return Err(JobError::Usage(format!(
                "--as-of names {hub}, which is not a --hub"
            )));
        }
    }
    let order = job.active_order.clone().or_else(|| default_order(&names));
    let stamps = hub_stamps(&timings, order.as_deref(), job.now_ms, job.max_drift_ms)?;
    let snapshots: Vec<_> = hubs.iter().map(|h| h.snapshots.clone()).collect();
    let outcomes = merge_fleet(
        base.as_ref().map(|b| &b.snapshots.devices),
        &snapshots,
        &stamps,
        &job.policies,
        job.jobs,
    );
    let mut report = MergeReport::default();
    for input in base.iter().chain(&hubs) {
        report
            .skipped_lines
            .insert(input.file.clone(), input.skipped);
    }
    let real_time = stamps.values().any(|s| s.ms() > ORDER_SCALE_LIMIT);
    outputs::write_all(&job.out, &outcomes, &hubs, real_time, &mut report)?;
    Ok(report)
}

/// Stamps on the activation-order scale are small ranks; anything above
/// this is a real time.
const ORDER_SCALE_LIMIT: i64 = 1_000_000;

fn check_names(names: &[ReplicaId]) -> Result<(), JobError> {
    if names.len() < 2 {
        return Err(JobError::Usage("give at least two --hub NAME=FILE".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        if name.as_str() == crate::reconcile::BASE {
            return Err(JobError::Usage(
                "the hub name \"base\" is reserved for the common base".into(),
            ));
        }
        if !seen.insert(name) {
            return Err(JobError::Usage(format!("hub {name} is given twice")));
        }
    }
    Ok(())
}
