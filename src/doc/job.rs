//! Jobs: a job's status only moves forward.
//!
//! A job (`scheduleUpdateTwin`, `scheduleDeviceMethod`, `export`, ...) is
//! known to each hub that ran part of its life. Its status is a forward-only
//! lattice — unknown, then queued < enqueued < scheduled, then running, then
//! a terminal status — so the merge of two hubs' views is the furthest
//! status either reached. Hubs that ended a job differently (completed on
//! one, cancelled on the other) resolve by a fixed order, cancelled over
//! failed over completed: an operator's cancel is never undone by a merge,
//! and a failure is not hidden by a success elsewhere. Every terminal
//! status seen is kept, so the losers are named ([`JobDoc::conflict`]).
//!
//! Times merge as lattices too: `createdTime` and `startTime` the earliest
//! seen, `endTime` the latest. Statistics merge field by field: the counts
//! that only grow (`deviceCount`, `succeededCount`, `failedCount`) by
//! maximum, those that only shrink as devices finish (`runningCount`,
//! `pendingCount`) by minimum. Each piece is a semilattice, so the whole is
//! one: merges commute, associate and are idempotent.
//!
//! Each hub that listed the job is kept with the furthest status it gave
//! ([`JobDoc::hubs`]), which is what tells the jobs a failover lost
//! ([`JobSet::to_reschedule`]). The record's other fields (the device
//! query, the method or twin patch, `failureReason`, fields this crate does
//! not know) are kept too: each field takes the value of the view that got
//! furthest, ties broken by the value's canonical JSON text, a total order,
//! so the whole stays a semilattice.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::{ReplicaId, format_time};
use crate::kernel::Merge;

/// A job's status, in IoT Hub's spelling (`canceled` is read as
/// `cancelled`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobStatus {
    /// Nothing known.
    Unknown,
    /// Accepted, not yet planned.
    Queued,
    /// Handed to the hub's scheduler.
    Enqueued,
    /// Waiting for its start time.
    Scheduled,
    /// Running.
    Running,
    /// Ended well.
    Completed,
    /// Ended in failure.
    Failed,
    /// Cancelled by an operator.
    #[serde(alias = "canceled")]
    Cancelled,
}

impl JobStatus {
    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// The status named `text`, in any case, as IoT Hub and its SDKs spell
    /// it: `canceled` is `cancelled`, and `pending` (the jobs guide's word
    /// for a job waiting to be picked up) is `queued`.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        const NAMES: [(&str, JobStatus); 10] = [
            ("unknown", JobStatus::Unknown),
            ("queued", JobStatus::Queued),
            ("pending", JobStatus::Queued),
            ("enqueued", JobStatus::Enqueued),
            ("scheduled", JobStatus::Scheduled),
            ("running", JobStatus::Running),
            ("completed", JobStatus::Completed),
            ("failed", JobStatus::Failed),
            ("cancelled", JobStatus::Cancelled),
            ("canceled", JobStatus::Cancelled),
        ];
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
            .map(|(_, status)| *status)
    }

    /// Whether the job waits or runs: queued, enqueued, scheduled or
    /// running.
    fn is_live(self) -> bool {
        matches!(
            self,
            Self::Queued | Self::Enqueued | Self::Scheduled | Self::Running
        )
    }

    /// IoT Hub's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Queued => "queued",
            Self::Enqueued => "enqueued",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// `deviceJobStatistics`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatistics {
    /// Devices the job targets.
    pub device_count: u64,
    /// Devices it failed on.
    pub failed_count: u64,
    /// Devices it succeeded on.
    pub succeeded_count: u64,
    /// Devices it is running on.
    pub running_count: u64,
    /// Devices it has yet to run on.
    pub pending_count: u64,
}

impl Merge for JobStatistics {
    fn merge(&mut self, other: &Self) {
        self.device_count = self.device_count.max(other.device_count);
        self.failed_count = self.failed_count.max(other.failed_count);
        self.succeeded_count = self.succeeded_count.max(other.succeeded_count);
        self.running_count = self.running_count.min(other.running_count);
        self.pending_count = self.pending_count.min(other.pending_count);
    }
}

/// One job as the hubs together know it.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::doc::{JobDoc, JobStatus};
/// use failback::kernel::Merge;
///
/// // The primary ran the job to completion; the secondary, restored from
/// // a backup taken while it ran, had an operator cancel it.
/// let mut primary = JobDoc::new("fw-rollout-7", "scheduleUpdateTwin", JobStatus::Running);
/// primary.advance(JobStatus::Completed);
/// let mut secondary = JobDoc::new("fw-rollout-7", "scheduleUpdateTwin", JobStatus::Running);
/// secondary.advance(JobStatus::Cancelled);
///
/// let mut merged = primary.clone();
/// merged.merge(&secondary);
/// assert_eq!(merged.status(), JobStatus::Cancelled);
/// assert_eq!(merged.conflict(), Some((JobStatus::Cancelled, vec![JobStatus::Completed])));
///
/// // A status never moves back.
/// merged.advance(JobStatus::Queued);
/// assert_eq!(merged.status(), JobStatus::Cancelled);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDoc {
    job_id: String,
    #[serde(rename = "type")]
    job_type: String,
    /// The furthest status reached.
    status: JobStatus,
    /// Every terminal status any hub reached.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    ended: BTreeSet<JobStatus>,
    /// Earliest `createdTime`, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_ms: Option<i64>,
    /// Earliest `startTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_ms: Option<i64>,
    /// Latest `endTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    statistics: Option<JobStatistics>,
    /// Each hub that listed the job, with the furthest status it gave.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    hubs: BTreeMap<ReplicaId, JobStatus>,
    /// The record's other fields, each with the status of the view that
    /// gave it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    fields: BTreeMap<String, FieldView>,
}

/// One field of a hub's job record, and the status of that record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct FieldView {
    status: JobStatus,
    value: Value,
}

impl FieldView {
    /// Whether `self` wins over `other`: the further status, then the
    /// greater canonical JSON text (object keys are sorted).
    fn beats(&self, other: &Self) -> bool {
        (self.status, self.value.to_string()) > (other.status, other.value.to_string())
    }
}

/// The fields of a job record that describe one run of it rather than
/// what it does: left out of [`JobDoc::reschedule_json`].
const RUN_FIELDS: [&str; 7] = [
    "createdTime",
    "endTime",
    "deviceJobStatistics",
    "failureReason",
    "statusMessage",
    "progress",
    "endings",
];

#[cfg_attr(not(feature = "internals"), allow(dead_code))]
impl JobDoc {
    /// A job as one hub knows it.
    pub fn new(job_id: impl Into<String>, job_type: impl Into<String>, status: JobStatus) -> Self {
        let mut job = Self {
            job_id: job_id.into(),
            job_type: job_type.into(),
            status: JobStatus::Unknown,
            ended: BTreeSet::new(),
            created_ms: None,
            start_ms: None,
            end_ms: None,
            statistics: None,
            hubs: BTreeMap::new(),
            fields: BTreeMap::new(),
        };
        job.advance(status);
        job
    }

    /// Notes that `hub` listed the job with its current status, and keeps
    /// `fields`, the record's fields the merge does not interpret.
    pub(crate) fn listed_by(&mut self, hub: &ReplicaId, fields: Map<String, Value>) {
        let status = self.status;
        self.hubs
            .entry(hub.clone())
            .and_modify(|s| *s = (*s).max(status))
            .or_insert(status);
        for (name, value) in fields {
            self.keep_field(name, FieldView { status, value });
        }
    }

    fn keep_field(&mut self, name: String, view: FieldView) {
        match self.fields.get_mut(&name) {
            Some(mine) => {
                if view.beats(mine) {
                    *mine = view;
                }
            }
            None => {
                self.fields.insert(name, view);
            }
        }
    }

    /// Each hub that listed the job, by name, with the furthest status it
    /// gave.
    ///
    /// # Example
    ///
    #[cfg_attr(not(feature = "internals"), doc = "```ignore")]
    #[cfg_attr(feature = "internals", doc = "```")]
    /// use failback::ReplicaId;
    /// use failback::doc::JobStatus;
    /// use failback::format::read_jobs;
    ///
    /// let hub = ReplicaId::new("primary")?;
    /// let list = br#"[{"jobId": "reboot-1", "type": "scheduleDeviceMethod", "status": "Running"}]"#;
    /// let jobs = read_jobs(&list[..], "primary.jobs.json", &hub)?;
    /// let job = jobs.get("reboot-1").unwrap();
    /// assert_eq!(job.hubs().collect::<Vec<_>>(), [(&hub, JobStatus::Running)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn hubs(&self) -> impl Iterator<Item = (&ReplicaId, JobStatus)> {
        self.hubs.iter().map(|(hub, status)| (hub, *status))
    }

    /// A field of the record the merge keeps as the hubs gave it
    /// (`queryCondition`, `cloudToDeviceMethod`, `updateTwin`,
    /// `failureReason`, any field this crate does not know): the value of
    /// the view that got furthest.
    ///
    /// # Example
    ///
    #[cfg_attr(not(feature = "internals"), doc = "```ignore")]
    #[cfg_attr(feature = "internals", doc = "```")]
    /// use failback::ReplicaId;
    /// use failback::format::read_jobs;
    ///
    /// let hub = ReplicaId::new("primary")?;
    /// let list = br#"{"jobId": "j1", "status": "queued", "queryCondition": "tags.site = 'lyon'"}"#;
    /// let jobs = read_jobs(&list[..], "jobs.jsonl", &hub)?;
    /// assert_eq!(jobs.get("j1").unwrap().field("queryCondition").unwrap(), "tags.site = 'lyon'");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.get(name).map(|view| &view.value)
    }

    /// The merged job as one line of `jobs.jsonl`: the record in the hub's
    /// own shape (`jobId`, `type`, `status`, the times as RFC 3339 UTC with
    /// milliseconds, `deviceJobStatistics`, every kept field), plus
    /// `endings` (every terminal status any hub gave, when there is one)
    /// and `hubs` (each hub's own status). Object keys are sorted.
    ///
    /// # Example
    ///
    #[cfg_attr(not(feature = "internals"), doc = "```ignore")]
    #[cfg_attr(feature = "internals", doc = "```")]
    /// use failback::ReplicaId;
    /// use failback::format::read_jobs;
    /// use failback::kernel::Merge;
    ///
    /// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
    /// let mut jobs = read_jobs(&br#"{"jobId":"j1","status":"completed"}"#[..], "p.json", &p)?;
    /// jobs.merge(&read_jobs(&br#"{"jobId":"j1","status":"cancelled"}"#[..], "s.json", &s)?);
    /// assert_eq!(
    ///     jobs.get("j1").unwrap().to_json().to_string(),
    ///     r#"{"endings":["completed","cancelled"],"hubs":{"primary":"completed","secondary":"cancelled"},"jobId":"j1","status":"cancelled"}"#
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_json(&self) -> Value {
        let mut line: Map<String, Value> = self
            .fields
            .iter()
            .map(|(name, view)| (name.clone(), view.value.clone()))
            .collect();
        line.insert("jobId".into(), Value::from(self.job_id.as_str()));
        if !self.job_type.is_empty() {
            line.insert("type".into(), Value::from(self.job_type.as_str()));
        }
        line.insert("status".into(), Value::from(self.status.as_str()));
        for (name, ms) in [
            ("createdTime", self.created_ms),
            ("startTime", self.start_ms),
            ("endTime", self.end_ms),
        ] {
            if let Some(text) = ms.and_then(format_time) {
                line.insert(name.into(), Value::from(text));
            }
        }
        if let Some(statistics) = &self.statistics {
            line.insert(
                "deviceJobStatistics".into(),
                serde_json::to_value(statistics).unwrap_or(Value::Null),
            );
        }
        if !self.ended.is_empty() {
            let endings = self.ended.iter().map(|s| Value::from(s.as_str())).collect();
            line.insert("endings".into(), Value::Array(endings));
        }
        if !self.hubs.is_empty() {
            let hubs = self
                .hubs
                .iter()
                .map(|(hub, status)| (hub.to_string(), Value::from(status.as_str())))
                .collect();
            line.insert("hubs".into(), Value::Object(hubs));
        }
        Value::Object(line)
    }

    /// The job as one line of `jobs.todo.jsonl`: what scheduling it again
    /// takes (`jobId`, `type`, `queryCondition`, `cloudToDeviceMethod` or
    /// `updateTwin`, `startTime`, `maxExecutionTimeInSeconds`, any other
    /// field of its definition), with `status` and `hubs` to say where it
    /// was; [`JobDoc::to_json`] without what describes a run (`createdTime`,
    /// `endTime`, `deviceJobStatistics`, `failureReason`, `statusMessage`,
    /// `progress`).
    ///
    /// # Example
    ///
    #[cfg_attr(not(feature = "internals"), doc = "```ignore")]
    #[cfg_attr(feature = "internals", doc = "```")]
    /// use failback::ReplicaId;
    /// use failback::format::read_jobs;
    ///
    /// let hub = ReplicaId::new("primary")?;
    /// let list = br#"{"jobId":"j1","status":"running","createdTime":"2024-03-01T12:00:00Z","queryCondition":"*"}"#;
    /// let jobs = read_jobs(&list[..], "p.json", &hub)?;
    /// assert_eq!(
    ///     jobs.get("j1").unwrap().reschedule_json().to_string(),
    ///     r#"{"hubs":{"primary":"running"},"jobId":"j1","queryCondition":"*","status":"running"}"#
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reschedule_json(&self) -> Value {
        let mut line = self.to_json();
        if let Value::Object(map) = &mut line {
            for name in RUN_FIELDS {
                map.remove(name);
            }
        }
        line
    }

    /// The job id.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The job type (`scheduleUpdateTwin`, ...).
    pub fn job_type(&self) -> &str {
        &self.job_type
    }

    /// The merged status: the furthest reached; of different terminal
    /// statuses, cancelled over failed over completed.
    pub fn status(&self) -> JobStatus {
        self.status
    }

    /// Moves the status forward to `status`; an earlier one changes nothing.
    pub fn advance(&mut self, status: JobStatus) {
        self.status = self.status.max(status);
        if status.is_terminal() {
            self.ended.insert(status);
        }
    }

    /// Records times seen (ms since the epoch): the earliest creation and
    /// start, the latest end.
    pub fn observe_times(&mut self, created: Option<i64>, start: Option<i64>, end: Option<i64>) {
        self.created_ms = min_some(self.created_ms, created);
        self.start_ms = min_some(self.start_ms, start);
        self.end_ms = self.end_ms.max(end);
    }

    /// Records statistics seen.
    pub fn observe_statistics(&mut self, statistics: &JobStatistics) {
        match &mut self.statistics {
            Some(mine) => mine.merge(statistics),
            None => self.statistics = Some(statistics.clone()),
        }
    }

    /// The merged times: created, started, ended.
    pub fn times(&self) -> (Option<i64>, Option<i64>, Option<i64>) {
        (self.created_ms, self.start_ms, self.end_ms)
    }

    /// The merged statistics.
    pub fn statistics(&self) -> Option<&JobStatistics> {
        self.statistics.as_ref()
    }

    /// When hubs ended the job differently: the winning status and the
    /// others, in order.
    pub fn conflict(&self) -> Option<(JobStatus, Vec<JobStatus>)> {
        if self.ended.len() < 2 {
            return None;
        }
        let losers = self
            .ended
            .iter()
            .copied()
            .filter(|s| *s != self.status)
            .collect();
        Some((self.status, losers))
    }
}

fn min_some(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Merge for JobDoc {
    /// Joins another hub's view of the same job. The type is a property of
    /// the job, equal on every hub; should two views disagree (a job id
    /// reused), the greater wins so the join stays a total function.
    fn merge(&mut self, other: &Self) {
        if other.job_type > self.job_type {
            self.job_type.clone_from(&other.job_type);
        }
        self.status = self.status.max(other.status);
        self.ended.extend(other.ended.iter().copied());
        self.observe_times(other.created_ms, other.start_ms, other.end_ms);
        if let Some(statistics) = &other.statistics {
            self.observe_statistics(statistics);
        }
        for (hub, status) in &other.hubs {
            self.hubs
                .entry(hub.clone())
                .and_modify(|s| *s = (*s).max(*status))
                .or_insert(*status);
        }
        for (name, view) in &other.fields {
            self.keep_field(name.clone(), view.clone());
        }
    }
}

/// Every job of the hubs by `jobId`: the union, each job merged.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::doc::{JobDoc, JobSet, JobStatus};
/// use failback::kernel::Merge;
///
/// let mut primary = JobSet::default();
/// primary.insert(JobDoc::new("export-1", "export", JobStatus::Completed));
/// let mut secondary = JobSet::default();
/// secondary.insert(JobDoc::new("import-2", "import", JobStatus::Running));
/// primary.merge(&secondary);
/// assert_eq!(primary.jobs().map(|j| j.job_id()).collect::<Vec<_>>(), ["export-1", "import-2"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSet {
    jobs: BTreeMap<String, JobDoc>,
}

#[cfg_attr(not(feature = "internals"), allow(dead_code))]
impl JobSet {
    /// Adds a hub's view of a job, merged with what is known of it.
    pub fn insert(&mut self, job: JobDoc) {
        match self.jobs.get_mut(&job.job_id) {
            Some(known) => known.merge(&job),
            None => {
                self.jobs.insert(job.job_id.clone(), job);
            }
        }
    }

    /// The job `id`.
    pub fn get(&self, id: &str) -> Option<&JobDoc> {
        self.jobs.get(id)
    }

    /// The jobs by id.
    pub fn jobs(&self) -> impl Iterator<Item = &JobDoc> {
        self.jobs.values()
    }

    /// The jobs a failover lost, which an operator must schedule again
    /// (IoT Hub does not recover parent jobs), by id. `order` is the order
    /// the hubs were active in, most recent last: each hub before the last
    /// failed over to the next, and the last is active now. A job is lost
    /// when
    ///
    /// - a hub that failed listed it queued, enqueued, scheduled or
    ///   running,
    /// - no hub finished it (completed, failed or cancelled), and
    /// - the hub active now does not hold it queued, enqueued, scheduled or
    ///   running (there it is alive: scheduling it again would run it
    ///   twice).
    ///
    /// A job only some hubs listed counts only for those hubs. With fewer
    /// than two hubs in `order`, none failed and nothing is lost.
    ///
    /// # Example
    ///
    #[cfg_attr(not(feature = "internals"), doc = "```ignore")]
    #[cfg_attr(feature = "internals", doc = "```")]
    /// use failback::ReplicaId;
    /// use failback::format::read_jobs;
    /// use failback::kernel::Merge;
    ///
    /// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
    /// // The primary was running two jobs when it failed over to the
    /// // secondary; the secondary's backup knew one of them and finished it.
    /// let primary = br#"[{"jobId": "fw-1", "status": "running"}, {"jobId": "fw-2", "status": "running"}]"#;
    /// let secondary = br#"[{"jobId": "fw-1", "status": "completed"}]"#;
    /// let mut jobs = read_jobs(&primary[..], "primary.json", &p)?;
    /// jobs.merge(&read_jobs(&secondary[..], "secondary.json", &s)?);
    /// let order = [p, s]; // the primary failed over to the secondary
    /// let lost: Vec<&str> = jobs.to_reschedule(&order).map(|j| j.job_id()).collect();
    /// assert_eq!(lost, ["fw-2"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_reschedule<'a>(
        &'a self,
        order: &'a [ReplicaId],
    ) -> impl Iterator<Item = &'a JobDoc> + 'a {
        let (failed, now) = match order.split_last() {
            Some((now, failed)) => (failed, Some(now)),
            None => (&[][..], None),
        };
        self.jobs.values().filter(move |job| {
            let live_on = |hub: &ReplicaId| job.hubs.get(hub).is_some_and(|s| s.is_live());
            job.ended.is_empty() && failed.iter().any(live_on) && !now.is_some_and(live_on)
        })
    }
}

impl Merge for JobSet {
    fn merge(&mut self, other: &Self) {
        for job in other.jobs.values() {
            self.insert(job.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_only_moves_forward() {
        let mut job = JobDoc::new("j", "export", JobStatus::Running);
        for earlier in [JobStatus::Unknown, JobStatus::Queued, JobStatus::Scheduled] {
            job.advance(earlier);
            assert_eq!(job.status(), JobStatus::Running);
        }
        job.advance(JobStatus::Failed);
        job.advance(JobStatus::Completed);
        assert_eq!(job.status(), JobStatus::Failed);
        assert_eq!(
            job.conflict(),
            Some((JobStatus::Failed, vec![JobStatus::Completed]))
        );
    }

    #[test]
    fn canceled_reads_as_cancelled() {
        let s: JobStatus = serde_json::from_str("\"canceled\"").unwrap();
        assert_eq!(s, JobStatus::Cancelled);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"cancelled\"");
    }

    #[test]
    fn statistics_merge_growing_counts_up_and_shrinking_ones_down() {
        let mut a = JobStatistics {
            device_count: 10,
            succeeded_count: 4,
            running_count: 3,
            pending_count: 3,
            ..Default::default()
        };
        let b = JobStatistics {
            device_count: 10,
            succeeded_count: 6,
            failed_count: 1,
            running_count: 1,
            pending_count: 2,
        };
        a.merge(&b);
        assert_eq!(
            (
                a.succeeded_count,
                a.failed_count,
                a.running_count,
                a.pending_count
            ),
            (6, 1, 1, 2)
        );
    }
}
