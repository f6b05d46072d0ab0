//! The failback merge as operators run it: read the base and the hubs'
//! files, merge, and write `merged.jsonl`, one import plan per hub,
//! `conflicts.jsonl` and `report.json`, all or nothing; with application
//! metadata (`appmeta/`) and jobs (`jobs.jsonl`, `jobs.todo.jsonl`) when
//! given, in the same step.
//!
//! Devices never interact, so the merge goes device by device in id
//! order. When every input is sorted by id (exports are), the inputs are
//! streamed side by side and memory holds a few batches of devices,
//! whatever the fleet's size. When one is not, or anything is wrong with
//! one, the merge starts again on the indexed path: each input is read and
//! checked whole first, keeping only where each device's lines are, then
//! read again device by device in id order. Both paths write the same
//! bytes; errors are always those of the indexed path, which reads the
//! inputs in the order given, so a bad line is reported the same way
//! whatever path found it.

mod extras;
mod inputs;
mod outputs;
mod pipeline;
mod shard;
mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::clock::ReplicaId;
use crate::doc::Policies;
use crate::format::{Format, ReadError};
use crate::reconcile::{BASE, HubClocks, StampError};
use extras::Extras;
use inputs::{InputMeta, Newest, settle};
use outputs::Outputs;
use pipeline::{Context, Stop};
pub use shard::Shard;
use source::{Index, Source, SourceError, Stream, replica_source};

/// What to merge and where to put the results.
///
/// # Example
///
/// ```
/// use failback::job::{run_merge, MergeJob};
/// use failback::{Policies, ReplicaId};
///
/// let dir = std::env::temp_dir().join(format!("failback-doc-{}-job", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let twin = |setpoint: u8, at: &str| format!(
///     concat!(r#"{{"deviceId":"thermostat-7","etag":"AAAAAAAAAAE=","properties":{{"desired":{{"setpoint":{}"#,
///     r#","$metadata":{{"setpoint":{{"$lastUpdated":"{}"}}}}}}}}}}"#), setpoint, at);
/// std::fs::write(dir.join("primary.jsonl"), twin(19, "2026-11-28T10:00:00Z"))?;
/// std::fs::write(dir.join("secondary.jsonl"), twin(22, "2026-11-28T10:05:00Z"))?;
/// let job = MergeJob {
///     base: None, // twin files carry their own times
///     hubs: vec![
///         (ReplicaId::new("primary")?, dir.join("primary.jsonl")),
///         (ReplicaId::new("secondary")?, dir.join("secondary.jsonl")),
///     ],
///     policies: Policies::default(),
///     ..MergeJob::new(dir.join("out"), 1_795_867_200_000) // 2026-11-28T12:00:00Z
/// };
/// run_merge(&job)?;
/// let mut written: Vec<_> = std::fs::read_dir(&job.out)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
/// written.sort();
/// std::fs::remove_dir_all(&dir)?;
/// assert_eq!(written, ["conflicts.jsonl", "merged.jsonl", "primary.import.jsonl", "report.json", "secondary.import.jsonl"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct MergeJob {
    /// The common base (the backup the secondary was seeded from). Needed
    /// for exports; optional for twin files.
    pub base: Option<PathBuf>,
    /// Each hub's file, by hub name. Their order never matters. Empty for
    /// a merge of application metadata or jobs only.
    pub hubs: Vec<(ReplicaId, PathBuf)>,
    /// The base's application-metadata directory: documents by name, as
    /// `NAME.json` or `NAME.automerge` (`crate::appmeta::merge_dirs`).
    pub appmeta_base: Option<PathBuf>,
    /// Each hub's application-metadata directory, by hub name; merged into
    /// `appmeta/NAME.json` and `appmeta/NAME.automerge`.
    pub appmeta: Vec<(ReplicaId, PathBuf)>,
    /// Each hub's jobs as `az iot hub job list` prints them
    /// (`crate::format::read_jobs`), by hub name; merged into
    /// `jobs.jsonl`, with the jobs a failover lost in `jobs.todo.jsonl`
    /// (`crate::doc::JobSet::to_reschedule`, by the activation order).
    pub jobs_files: Vec<(ReplicaId, PathBuf)>,
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
    /// Threads for the merge: 1 runs everything on the calling thread;
    /// more parse, merge and render batches of devices on `jobs` threads
    /// while the calling thread reads the inputs and writes the results.
    /// The output is the same bytes for any value.
    pub jobs: usize,
    /// How the inputs are read.
    pub reading: Reading,
    /// The input format, when not detected per file.
    pub format: Option<Format>,
    /// The policies.
    pub policies: Policies,
    /// Merge only this shard's devices (every input is still read
    /// whole); `None` merges them all.
    pub shard: Option<Shard>,
    /// Whether plans may write an identity whose keys no input knows (the
    /// hub then generates new ones). When false, such a merge fails with
    /// [`JobError::NewKeys`] and writes nothing.
    pub allow_new_keys: bool,
}

impl MergeJob {
    /// A merge into `out` at the merging machine's time `now_ms`, with the
    /// defaults of `failback merge`: no base, no hubs yet (add them), no
    /// application metadata or jobs, no activation order or as-of times,
    /// a drift bound of 5 minutes,
    /// one thread, inputs read as [`Reading::Auto`] in the format each
    /// file tells, the default policies, every shard, and no new keys.
    /// Set the rest with struct update syntax.
    ///
    /// # Example
    ///
    /// ```
    /// use std::path::PathBuf;
    /// use failback::job::{MergeJob, Reading};
    /// use failback::ReplicaId;
    ///
    /// let job = MergeJob {
    ///     base: Some(PathBuf::from("base.jsonl")),
    ///     hubs: vec![
    ///         (ReplicaId::new("primary")?, PathBuf::from("primary.jsonl")),
    ///         (ReplicaId::new("secondary")?, PathBuf::from("secondary.jsonl")),
    ///     ],
    ///     jobs: 2,
    ///     ..MergeJob::new("out", 1_795_867_200_000)
    /// };
    /// assert_eq!(job.max_drift_ms, 300_000);
    /// assert_eq!(job.reading, Reading::Auto);
    /// assert!(!job.allow_new_keys);
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn new(out: impl Into<PathBuf>, now_ms: i64) -> Self {
        Self {
            base: None,
            hubs: Vec::new(),
            appmeta_base: None,
            appmeta: Vec::new(),
            jobs_files: Vec::new(),
            out: out.into(),
            active_order: None,
            as_of: BTreeMap::new(),
            max_drift_ms: crate::clock::DEFAULT_MAX_DRIFT_MS,
            now_ms,
            jobs: 1,
            reading: Reading::Auto,
            format: None,
            policies: Policies::default(),
            shard: None,
            allow_new_keys: false,
        }
    }
}

/// How a merge reads its inputs.
///
/// # Example
///
/// ```
/// use failback::job::{run_merge, MergeJob, Reading};
/// use failback::ReplicaId;
///
/// # let dir = std::env::temp_dir().join(format!("failback-doc-{}-{}", std::process::id(), "reading"));
/// # std::fs::create_dir_all(&dir)?;
/// # let twin = |setpoint: u8, at: &str| format!(
/// #     concat!(r#"{{"deviceId":"thermostat-7","etag":"AAAAAAAAAAE=","properties":{{"desired":{{"setpoint":{}"#,
/// #     r#","$metadata":{{"setpoint":{{"$lastUpdated":"{}"}}}}}}}}}}"#), setpoint, at);
/// # std::fs::write(dir.join("primary.jsonl"), twin(19, "2026-11-28T10:00:00Z"))?;
/// # std::fs::write(dir.join("secondary.jsonl"), twin(22, "2026-11-28T10:05:00Z"))?;
/// let job = MergeJob {
///     hubs: vec![
///         (ReplicaId::new("primary")?, dir.join("primary.jsonl")),
///         (ReplicaId::new("secondary")?, dir.join("secondary.jsonl")),
///     ],
///     reading: Reading::Indexed, // inputs in any order
///     ..MergeJob::new(dir.join("out"), 1_795_867_200_000)
/// };
/// assert_eq!(Reading::default(), Reading::Auto);
/// let report = run_merge(&job)?;
/// # std::fs::remove_dir_all(&dir)?;
/// assert!(!report.streamed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reading {
    /// Streams the inputs when every one is sorted by id, falling back to
    /// [`Reading::Indexed`] at the first id that goes backwards.
    #[default]
    Auto,
    /// Reads and checks each input whole first, keeping only where each
    /// device's lines are, then reads the devices again in id order: for
    /// inputs in any order.
    Indexed,
}

/// Why a merge could not run. Everything but `Io` is the input's fault.
///
/// # Example
///
/// ```
/// use failback::job::{run_merge, JobError, MergeJob};
/// use failback::ReplicaId;
///
/// // Checked before any file is read.
/// let job = MergeJob {
///     hubs: vec![(ReplicaId::new("primary")?, "primary.jsonl".into())],
///     ..MergeJob::new("merged", 1_795_867_200_000)
/// };
/// let error = run_merge(&job).unwrap_err();
/// assert!(matches!(error, JobError::TooFewHubs { given: 1 }));
/// assert_eq!(error.to_string(), "a merge needs at least two hubs, 1 given");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// A file could not be read or holds a bad line.
    #[error(transparent)]
    Read(Box<ReadError>),
    /// Fewer than two hubs were given.
    #[error("a merge needs at least two hubs, {given} given")]
    TooFewHubs {
        /// How many were given.
        given: usize,
    },
    /// A hub is named `base`, the name of the common base's writes.
    #[error("the hub name \"base\" is reserved for the common base")]
    ReservedHubName,
    /// Two hubs have one name.
    #[error("hub {hub} is given twice")]
    DuplicateHub {
        /// The name given twice.
        hub: ReplicaId,
    },
    /// A hub's input is a bulk export, which carries no times, and no
    /// common base was given to tell who changed what
    /// ([policy 5](crate::contract#policies)).
    #[error(
        "{file}: a bulk export carries no times: a common base is required to tell who changed what"
    )]
    ExportWithoutBase {
        /// The export.
        file: String,
    },
    /// An as-of time names a hub that is not one of the inputs.
    #[error("an as-of time names {hub}, which is not one of the hubs")]
    AsOfUnknownHub {
        /// The name.
        hub: ReplicaId,
    },
    /// Application metadata or a jobs file names a hub that is not one of
    /// the hubs whose devices are merged.
    #[error("{what} names {hub}, which is not one of the hubs")]
    UnknownHub {
        /// The name.
        hub: ReplicaId,
        /// What names it: `application metadata` or `a jobs file`.
        what: &'static str,
    },
    /// The order the hubs were active in does not name a hub of a jobs
    /// file (or names it twice), or is not known: it tells which hubs
    /// failed, and so which jobs were lost.
    #[error(
        "cannot tell whether hub {hub} failed over: the order the hubs were active in does not name it once"
    )]
    JobsHubNotOrdered {
        /// The hub.
        hub: ReplicaId,
    },
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
    /// Plans would write identities without `authentication` (the hub
    /// would generate new keys and the devices could not connect), and no
    /// input knows their keys.
    #[error("{}", new_keys_message(.0))]
    NewKeys(Vec<String>),
    /// The output directory exists and is not a previous output of a
    /// merge (a file, or a directory holding other files): it is left as
    /// it was, not replaced.
    #[error("cannot write {path}: {source}")]
    OutTaken {
        /// The output directory.
        path: String,
        /// Why it is not replaced.
        source: std::io::Error,
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
    ///
    /// # Example
    ///
    /// ```
    /// use failback::job::JobError;
    ///
    /// assert!(JobError::ReservedHubName.is_input());
    /// let full = std::io::Error::other("no space left on device");
    /// assert!(!JobError::Io { path: "out/merged.jsonl".into(), source: full }.is_input());
    /// ```
    pub fn is_input(&self) -> bool {
        !matches!(self, JobError::Io { .. })
    }
}

/// How many devices a [`JobError::NewKeys`] names one line each.
const NEW_KEYS_SHOWN: usize = 1000;

fn new_keys_message(records: &[String]) -> String {
    let mut text = format!(
        "refused: {} import lines would write an identity without its keys, which no input knows (the hub would generate new keys and the device could not connect); give each hub's keys (an export with keys or an identity file), or allow new keys",
        records.len()
    );
    for record in records.iter().take(NEW_KEYS_SHOWN) {
        text.push_str("\n  ");
        text.push_str(record);
    }
    if records.len() > NEW_KEYS_SHOWN {
        text.push_str(&format!(
            "\n  ... and {} more",
            records.len() - NEW_KEYS_SHOWN
        ));
    }
    text
}

/// What a merge did, for the report and the human summary: what
/// [`run_merge`] returns and writes as `report.json`.
///
/// # Example
///
/// ```
/// use failback::job::{run_merge, MergeJob};
/// use failback::ReplicaId;
///
/// # let dir = std::env::temp_dir().join(format!("failback-doc-{}-{}", std::process::id(), "report"));
/// # std::fs::create_dir_all(&dir)?;
/// # let twin = |setpoint: u8, at: &str| format!(
/// #     concat!(r#"{{"deviceId":"thermostat-7","etag":"AAAAAAAAAAE=","properties":{{"desired":{{"setpoint":{}"#,
/// #     r#","$metadata":{{"setpoint":{{"$lastUpdated":"{}"}}}}}}}}}}"#), setpoint, at);
/// # std::fs::write(dir.join("primary.jsonl"), twin(19, "2026-11-28T10:00:00Z"))?;
/// # std::fs::write(dir.join("secondary.jsonl"), twin(22, "2026-11-28T10:05:00Z"))?;
/// let job = MergeJob {
///     hubs: vec![
///         (ReplicaId::new("primary")?, dir.join("primary.jsonl")),
///         (ReplicaId::new("secondary")?, dir.join("secondary.jsonl")),
///     ],
///     ..MergeJob::new(dir.join("out"), 1_795_867_200_000)
/// };
/// let report = run_merge(&job)?;
/// # std::fs::remove_dir_all(&dir)?;
/// assert_eq!(report.devices_merged, 1);
/// assert_eq!(report.outcomes["conflicted"], 1);
/// assert_eq!(report.plans["primary"]["updateTwinIfMatchETag"], 1); // the primary takes 22
/// assert!(report.plans["secondary"].is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    /// The output files that hold device keys in clear (`merged.jsonl` and
    /// every `<hub>.import.jsonl`), created mode 0600 in a 0700 directory.
    pub secret_files: Vec<String>,
    /// The shard merged (`K/N`), when not the whole fleet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// Application-metadata documents by outcome: `created`, `merged`,
    /// `unchanged`, `deleted`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub appmeta: BTreeMap<&'static str, usize>,
    /// The application-metadata documents deleted (delete wins), by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub appmeta_deleted: Vec<String>,
    /// Jobs by merged status.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub jobs: BTreeMap<&'static str, usize>,
    /// The jobs to schedule again (`jobs.todo.jsonl`), when jobs were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs_todo: Option<usize>,
    /// Things an operator should know.
    pub warnings: Vec<String>,
    /// Whether the inputs were streamed (all sorted by id) rather than
    /// indexed. Not written to `report.json`.
    #[serde(skip)]
    pub streamed: bool,
}

/// Runs a merge job: reads, merges, writes the results into `job.out`.
///
/// # Errors
///
/// [`JobError`]: bad input or arguments (nothing is written then), or an
/// I/O error while writing (the output directory is then left as it was).
///
/// # Example
///
/// ```
/// use failback::job::{run_merge, MergeJob};
/// use failback::ReplicaId;
///
/// # let dir = std::env::temp_dir().join(format!("failback-doc-{}-{}", std::process::id(), "run"));
/// # std::fs::create_dir_all(&dir)?;
/// # let twin = |setpoint: u8, at: &str| format!(
/// #     concat!(r#"{{"deviceId":"thermostat-7","etag":"AAAAAAAAAAE=","properties":{{"desired":{{"setpoint":{}"#,
/// #     r#","$metadata":{{"setpoint":{{"$lastUpdated":"{}"}}}}}}}}}}"#), setpoint, at);
/// # std::fs::write(dir.join("primary.jsonl"), twin(19, "2026-11-28T10:00:00Z"))?;
/// # std::fs::write(dir.join("secondary.jsonl"), twin(22, "2026-11-28T10:05:00Z"))?;
/// let job = MergeJob {
///     hubs: vec![
///         (ReplicaId::new("primary")?, dir.join("primary.jsonl")),
///         (ReplicaId::new("secondary")?, dir.join("secondary.jsonl")),
///     ],
///     ..MergeJob::new(dir.join("out"), 1_795_867_200_000)
/// };
/// run_merge(&job)?;
/// let merged = std::fs::read_to_string(job.out.join("merged.jsonl"))?;
/// let conflicts = std::fs::read_to_string(job.out.join("conflicts.jsonl"))?;
/// # std::fs::remove_dir_all(&dir)?;
/// assert!(merged.contains(r#""setpoint":22"#)); // the later write
/// assert_eq!(conflicts.lines().count(), 1); // the primary's 19, kept
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run_merge(job: &MergeJob) -> Result<MergeReport, JobError> {
    let names: Vec<ReplicaId> = job.hubs.iter().map(|(n, _)| n.clone()).collect();
    let extras_only = names.is_empty()
        && job.base.is_none()
        && (job.appmeta_base.is_some() || !job.appmeta.is_empty() || !job.jobs_files.is_empty());
    if !extras_only {
        check_names(&names)?;
    }
    let extras = Extras::read(job)?;
    if extras_only {
        return outputs::write_extras_only(&job.out, &extras);
    }
    if job.reading == Reading::Auto {
        if let Some(report) = streamed(job, &names, &extras)? {
            return Ok(report);
        }
    }
    indexed(job, &names, &extras)
}

/// The inputs in merge order: the base, then the hubs sorted by name.
fn in_merge_order(job: &MergeJob) -> Vec<(Option<&ReplicaId>, &Path)> {
    let mut hubs: Vec<(Option<&ReplicaId>, &Path)> = job
        .hubs
        .iter()
        .map(|(name, path)| (Some(name), path.as_path()))
        .collect();
    hubs.sort_by(|a, b| a.0.cmp(&b.0));
    job.base
        .iter()
        .map(|path| (None, path.as_path()))
        .chain(hubs)
        .collect()
}

fn base_name() -> ReplicaId {
    ReplicaId::new(BASE).expect("valid literal")
}

/// The streaming path. `Ok(None)` when the inputs must be indexed instead:
/// one is not sorted, or something is wrong, which the indexed path then
/// reports as it always does.
fn streamed(
    job: &MergeJob,
    names: &[ReplicaId],
    extras: &Extras,
) -> Result<Option<MergeReport>, JobError> {
    let order = in_merge_order(job);
    let mut metas = Vec::new();
    let mut sources = Vec::new();
    for (hub, path) in &order {
        match replica_source(path) {
            Ok(Some((source, newest))) => {
                metas.push(InputMeta {
                    file: path.display().to_string(),
                    hub: hub.cloned().unwrap_or_else(base_name),
                    real_times: true,
                    newest,
                });
                sources.push(source);
                continue;
            }
            Ok(None) => {}
            Err(_) => return Ok(None),
        }
        let Ok((stream, format)) = Stream::open(path, job.format) else {
            return Ok(None);
        };
        let mut newest = Newest::default();
        if format == Format::Twin {
            // The stamps need the newest time of a twin file before its
            // first device is merged: read it once through.
            let Ok((scan, _)) = Stream::open(path, job.format) else {
                return Ok(None);
            };
            let mut scan = Source::Stream(Box::new(scan));
            let (name, format) = scan.file();
            let (name, format) = (name.to_owned(), format);
            while let Some(raw) = scan.next() {
                let Ok(device) = raw
                    .map_err(|_| ())
                    .and_then(|r| r.parse(&name, format).map_err(|_| ()))
                else {
                    return Ok(None);
                };
                if let Some(times) = &device.record.times {
                    newest.offer_device(&device.record.snapshot.id, times);
                }
            }
        }
        metas.push(InputMeta {
            file: path.display().to_string(),
            hub: hub.cloned().unwrap_or_else(base_name),
            real_times: format == Format::Twin,
            newest,
        });
        sources.push(Source::Stream(Box::new(stream)));
    }
    let (base, hubs) = split_base(job, &metas);
    let Ok(clocks) = settle(job, names, base, hubs) else {
        return Ok(None);
    };
    let report = merge(job, &metas, &clocks, sources, true, extras);
    match report {
        Ok(report) => Ok(Some(report)),
        Err(Stop::Output(error)) => Err(error),
        Err(Stop::Source(..)) => Ok(None),
        Err(Stop::Panicked(panic)) => panic.resume(),
    }
}

/// The indexed path: every input read and checked whole (in the order
/// given, base first), then merged device by device in id order.
fn indexed(job: &MergeJob, names: &[ReplicaId], extras: &Extras) -> Result<MergeReport, JobError> {
    let build = |path: &PathBuf| -> Result<Built, Box<ReadError>> {
        match replica_source(path).map_err(Box::new)? {
            Some((source, newest)) => Ok(Built::Replica(Box::new(source), newest)),
            None => Index::build(path, job.format)
                .map(Built::Index)
                .map_err(Box::new),
        }
    };
    let paths: Vec<&PathBuf> = job
        .base
        .iter()
        .chain(job.hubs.iter().map(|(_, p)| p))
        .collect();
    let built: Vec<Result<Built, Box<ReadError>>> = if job.jobs > 1 {
        std::thread::scope(|scope| {
            let handles: Vec<_> = paths
                .iter()
                .map(|path| scope.spawn(move || build(path)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    } else {
        paths.iter().map(|path| build(path)).collect()
    };
    // The first error in the order given, as reading them one by one.
    let mut indexes = Vec::new();
    for index in built {
        indexes.push(index.map_err(JobError::Read)?);
    }
    let mut indexes = indexes.into_iter();
    let base_index = job.base.as_ref().and_then(|_| indexes.next());
    let mut hub_indexes: Vec<(&ReplicaId, &PathBuf, Built)> = job
        .hubs
        .iter()
        .zip(indexes)
        .map(|((name, path), index)| (name, path, index))
        .collect();
    hub_indexes.sort_by(|a, b| a.0.cmp(b.0));
    let meta = |hub: ReplicaId, built: &Built| match built {
        Built::Index(index) => InputMeta {
            file: index.name().to_owned(),
            hub,
            real_times: index.format() == Format::Twin,
            newest: index.newest().clone(),
        },
        Built::Replica(source, newest) => InputMeta {
            file: source.file().0.to_owned(),
            hub,
            real_times: true,
            newest: newest.clone(),
        },
    };
    let mut metas = Vec::new();
    if let Some(index) = &base_index {
        metas.push(meta(base_name(), index));
    }
    for (name, _, index) in &hub_indexes {
        metas.push(meta((*name).clone(), index));
    }
    let (base, hubs) = split_base(job, &metas);
    let clocks = settle(job, names, base, hubs)?;
    let mut sources = Vec::new();
    let inputs = job.base.iter().zip(base_index).chain(
        hub_indexes
            .into_iter()
            .map(|(_, path, index)| (path, index)),
    );
    for (path, built) in inputs {
        sources.push(match built {
            Built::Index(index) => Source::Indexed(index.reader(path)?),
            Built::Replica(source, _) => *source,
        });
    }
    merge(job, &metas, &clocks, sources, false, extras).map_err(|stop| match stop {
        Stop::Output(error) => error,
        Stop::Panicked(panic) => panic.resume(),
        Stop::Source(_, SourceError::Read(error)) => JobError::Read(error),
        Stop::Source(n, SourceError::Unsorted) => JobError::Io {
            path: metas.get(n).map(|m| m.file.clone()).unwrap_or_default(),
            source: std::io::Error::other("the index of the file is not sorted"),
        },
    })
}

/// An input read whole before the merge: a line file's index, or a
/// replica state derived.
enum Built {
    Index(Index),
    Replica(Box<Source>, Newest),
}

fn split_base<'m>(
    job: &MergeJob,
    metas: &'m [InputMeta],
) -> (Option<&'m InputMeta>, &'m [InputMeta]) {
    match (&job.base, metas.split_first()) {
        (Some(_), Some((base, hubs))) => (Some(base), hubs),
        _ => (None, metas),
    }
}

/// Merges `sources` (in merge order, as `metas`) into `job.out`.
fn merge(
    job: &MergeJob,
    metas: &[InputMeta],
    clocks: &HubClocks,
    sources: Vec<Source>,
    streamed: bool,
    extras: &Extras,
) -> Result<MergeReport, Stop> {
    let (_, hubs) = split_base(job, metas);
    let hub_names: Vec<ReplicaId> = hubs.iter().map(|h| h.hub.clone()).collect();
    let ctx = Context {
        inputs: sources
            .iter()
            .map(|s| {
                let (name, format) = s.file();
                (name.to_owned(), format)
            })
            .collect(),
        stamps: hub_names
            .iter()
            .map(|h| clocks.stamp(h))
            .collect::<Result<_, _>>()
            .map_err(|e| Stop::Output(e.into()))?,
        hubs: hub_names,
        has_base: job.base.is_some(),
        policies: &job.policies,
        real_time: clocks.is_real_time(),
        shard: job.shard,
    };
    let mut outputs = Outputs::begin(&job.out, &ctx.hubs).map_err(Stop::Output)?;
    let skipped = pipeline::run(sources, &ctx, job.jobs, &mut outputs)?;
    // Once per file, though a file may be given for several inputs.
    let files: std::collections::BTreeSet<&str> = outputs
        .zoneless()
        .iter()
        .filter_map(|&n| metas.get(n))
        .map(|meta| meta.file.as_str())
        .collect();
    let mut warnings: Vec<String> = files
        .into_iter()
        .map(|file| format!("{file}: times without a zone were read as UTC"))
        .collect();
    let keyless = outputs.keyless();
    if !keyless.is_empty() && !job.allow_new_keys {
        return Err(Stop::Output(JobError::NewKeys(keyless.to_vec())));
    }
    let mut report = MergeReport {
        streamed,
        shard: job.shard.map(|s| s.to_string()),
        ..MergeReport::default()
    };
    for (meta, skipped) in metas.iter().zip(skipped) {
        report.skipped_lines.insert(meta.file.clone(), skipped);
    }
    report.warnings.append(&mut warnings);
    outputs.finish(&mut report, extras).map_err(Stop::Output)?;
    Ok(report)
}

fn check_names(names: &[ReplicaId]) -> Result<(), JobError> {
    if names.len() < 2 {
        return Err(JobError::TooFewHubs { given: names.len() });
    }
    check_distinct(names)
}

/// Each hub named once, none `base`.
fn check_distinct<'a>(names: impl IntoIterator<Item = &'a ReplicaId>) -> Result<(), JobError> {
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        if name.as_str() == BASE {
            return Err(JobError::ReservedHubName);
        }
        if !seen.insert(name) {
            return Err(JobError::DuplicateHub { hub: name.clone() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_keys_refusal_names_the_first_thousand_lines_and_counts_the_rest() {
        let records = |n: usize| -> Vec<String> { (0..n).map(|i| format!("line {i}")).collect() };
        let thousand = new_keys_message(&records(NEW_KEYS_SHOWN));
        assert_eq!(thousand.lines().count(), 1 + NEW_KEYS_SHOWN);
        assert!(thousand.starts_with("refused: 1000 import lines would write"));
        assert!(thousand.ends_with("\n  line 999"));
        let more = new_keys_message(&records(NEW_KEYS_SHOWN + 2));
        assert_eq!(more.lines().count(), 2 + NEW_KEYS_SHOWN);
        assert!(more.starts_with("refused: 1002 import lines would write"));
        assert!(more.ends_with("\n  line 999\n  ... and 2 more"));
    }
}
