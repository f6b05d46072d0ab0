//! A hub's jobs as `az iot hub job list` prints them: one JSON array of job
//! records (or JSON lines, or objects one after another), read one record
//! at a time by the same scanner as every other file ([`super::lines`]).
//!
//! A record is the jobs API's own (`jobId`, `type`, `status`,
//! `createdTime`, `startTime`, `endTime`, `queryCondition`,
//! `cloudToDeviceMethod`, `updateTwin`, `maxExecutionTimeInSeconds`,
//! `deviceJobStatistics`, `failureReason`, `statusMessage`), or an
//! import/export job as the CLI lists it beside them (`progress`,
//! `excludeKeysInExport`, `startTimeUtc`, `endTimeUtc`, ...). The reader
//! interprets `jobId`, `type`, `status` (in any case; `canceled` and
//! `pending` as the hubs and their SDKs spell them), the times and the
//! statistics, and keeps every other field as it is.

use std::io::BufRead;

use serde_json::{Map, Value};

use super::raw::{Ctx, kind_of, parse_time};
use super::{JsonlReader, ParseLine, ReadError, ReadErrorKind, safe_value};
use crate::clock::ReplicaId;
use crate::doc::{JobDoc, JobSet, JobStatistics, JobStatus};
use crate::kernel::Merge;

/// The longest job id read. IoT Hub takes 64 characters; the bound leaves
/// room for what other tools write, and keeps errors and outputs small.
const MAX_JOB_ID: usize = 128;

/// Fields of `jobs.jsonl` that are the merge's, not a hub's: a record
/// carrying one is refused rather than overwritten.
const RESERVED: [&str; 2] = ["hubs", "endings"];

/// One job record of a hub's list, read.
#[derive(Debug)]
pub(crate) struct JobLine {
    job: JobDoc,
    fields: Map<String, Value>,
}

impl JobLine {
    /// The job as `hub` knows it.
    pub(crate) fn into_job(self, hub: &ReplicaId) -> JobDoc {
        let Self { mut job, fields } = self;
        job.listed_by(hub, fields);
        job
    }
}

/// The record's fields, taken one by one; errors name the file, the line
/// and the field.
struct Fields<'a> {
    file: &'a str,
    line: u64,
    map: Map<String, Value>,
}

impl Fields<'_> {
    fn error(&self, field: &str, kind: ReadErrorKind) -> ReadError {
        ReadError::new(self.file, self.line, kind).with_field(field)
    }

    fn wrong(&self, field: &str, expected: &str, value: &Value) -> ReadError {
        let kind = ReadErrorKind::WrongType {
            expected: expected.to_owned(),
            found: kind_of(value).to_owned(),
        };
        self.error(field, kind)
    }

    /// A string field, `None` when absent or `null`.
    fn string(&mut self, field: &str) -> Result<Option<String>, ReadError> {
        match self.map.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(self.wrong(field, "a string", &other)),
        }
    }

    /// A time field in milliseconds, `None` when absent, `null` or "never".
    fn time(&mut self, field: &str) -> Result<Option<i64>, ReadError> {
        match self.string(field)? {
            None => Ok(None),
            Some(text) => parse_time(&text).map_err(|kind| self.error(field, kind)),
        }
    }

    /// `deviceJobStatistics` (or `statistics`): absent counts are 0.
    fn statistics(&mut self, field: &str) -> Result<Option<JobStatistics>, ReadError> {
        let map = match self.map.remove(field) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(map)) => map,
            Some(other) => return Err(self.wrong(field, "an object", &other)),
        };
        let count = |name: &str| -> Result<u64, ReadError> {
            match map.get(name) {
                None | Some(Value::Null) => Ok(0),
                Some(Value::Number(n)) if n.is_u64() => Ok(n.as_u64().unwrap_or_default()),
                Some(other) => {
                    let field = format!("{field}.{name}");
                    Err(self.wrong(&field, "a count (an integer of 0 or more)", other))
                }
            }
        };
        Ok(Some(JobStatistics {
            device_count: count("deviceCount")?,
            failed_count: count("failedCount")?,
            succeeded_count: count("succeededCount")?,
            running_count: count("runningCount")?,
            pending_count: count("pendingCount")?,
        }))
    }
}

impl ParseLine for JobLine {
    fn parse_line(file: &str, line: u64, text: &str) -> Result<Self, ReadError> {
        let map: Map<String, Value> =
            serde_json::from_str(text).map_err(|e| Ctx::default().error(file, line, &e))?;
        let mut fields = Fields { file, line, map };
        for name in RESERVED {
            if fields.map.contains_key(name) {
                let reason = "the field is the merge's (jobs.jsonl), no hub writes it";
                return Err(fields.error(name, ReadErrorKind::InvalidJob { reason }));
            }
        }
        let job_id = match fields.map.remove("jobId") {
            Some(Value::String(id)) => id,
            None | Some(Value::Null) => {
                return Err(fields.error("jobId", ReadErrorKind::MissingField));
            }
            Some(other) => return Err(fields.wrong("jobId", "a string", &other)),
        };
        let reason = if job_id.is_empty() {
            Some("the job id is empty")
        } else if job_id.chars().count() > MAX_JOB_ID {
            Some("the job id is longer than 128 characters")
        } else if job_id.chars().any(char::is_control) {
            Some("the job id holds a control character")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(fields.error("jobId", ReadErrorKind::InvalidJob { reason }));
        }
        let job_type = fields.string("type")?.unwrap_or_default();
        let status = match fields.string("status")? {
            None => JobStatus::Unknown,
            Some(text) => JobStatus::parse(&text).ok_or_else(|| {
                let value = safe_value(&text);
                fields.error("status", ReadErrorKind::UnknownJobStatus { value })
            })?,
        };
        let created = fields.time("createdTime")?;
        // Import and export jobs as older CLIs show them: `...TimeUtc`.
        let start = [fields.time("startTime")?, fields.time("startTimeUtc")?];
        let end = [fields.time("endTime")?, fields.time("endTimeUtc")?];
        let statistics = [
            fields.statistics("deviceJobStatistics")?,
            fields.statistics("statistics")?,
        ];
        let mut job = JobDoc::new(job_id, job_type, status);
        for (start, end) in start.into_iter().zip(end) {
            job.observe_times(created, start, end);
        }
        for statistics in statistics.iter().flatten() {
            job.observe_statistics(statistics);
        }
        Ok(Self {
            job,
            fields: fields.map,
        })
    }
}

/// Reads one hub's jobs, as `az iot hub job list` prints them (one JSON
/// array, pretty-printed or not) or as JSON lines, into a [`JobSet`]: a
/// job listed twice is merged with itself (status only forward, every
/// ending kept). `file` names the input in errors; `hub` is the hub whose
/// list it is. Lines that are no JSON (in JSON lines) are skipped, as in
/// every reader.
///
/// # Errors
///
/// The first bad record, as a [`ReadError`] naming `file`, the line and the
/// field: a record that is no JSON object, a `jobId` missing or empty, a
/// field of the wrong type, a `status` none of IoT Hub's
/// ([`ReadErrorKind::UnknownJobStatus`]), an unparseable time.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::ReplicaId;
/// use failback::doc::JobStatus;
/// use failback::format::read_jobs;
///
/// let listed = r#"[
///   {
///     "jobId": "reboot-floor-3",
///     "type": "scheduleDeviceMethod",
///     "status": "scheduled",
///     "queryCondition": "tags.floor = 3",
///     "cloudToDeviceMethod": {"methodName": "reboot", "payload": null,
///                             "responseTimeoutInSeconds": 30, "connectTimeoutInSeconds": 30},
///     "startTime": "2024-03-01T02:00:00Z"
///   }
/// ]"#;
/// let hub = ReplicaId::new("primary")?;
/// let jobs = read_jobs(listed.as_bytes(), "primary.jobs.json", &hub)?;
/// let job = jobs.get("reboot-floor-3").unwrap();
/// assert_eq!(job.status(), JobStatus::Scheduled);
/// assert_eq!(job.field("cloudToDeviceMethod").unwrap()["methodName"], "reboot");
///
/// let err = read_jobs(&br#"{"jobId": "j", "status": "paused"}"#[..], "bad.json", &hub).unwrap_err();
/// assert_eq!(err.to_string(), r#"bad.json:1: field "status": unknown job status "paused""#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn read_jobs<R: BufRead>(reader: R, file: &str, hub: &ReplicaId) -> Result<JobSet, ReadError> {
    read_jobs_counted(reader, file, hub).map(|(jobs, _)| jobs)
}

/// As [`read_jobs`], with the number of lines skipped.
pub(crate) fn read_jobs_counted<R: BufRead>(
    reader: R,
    file: &str,
    hub: &ReplicaId,
) -> Result<(JobSet, u64), ReadError> {
    let mut lines = JsonlReader::<R, JobLine>::new(reader, file);
    let mut jobs = JobSet::default();
    for record in lines.by_ref() {
        let mut one = JobSet::default();
        one.insert(record?.into_job(hub));
        jobs.merge(&one);
    }
    Ok((jobs, lines.skipped()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> ReplicaId {
        ReplicaId::new("primary").unwrap()
    }

    fn error(text: &str) -> String {
        read_jobs(text.as_bytes(), "jobs.json", &hub())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (r#"{"status":"running"}"#, r#"field "jobId": missing field"#),
            (
                r#"{"jobId":7}"#,
                r#"field "jobId": expected a string, found a number"#,
            ),
            (r#"{"jobId":""}"#, "the job id is empty"),
            (
                r#"{"jobId":"j","type":[]}"#,
                r#"field "type": expected a string"#,
            ),
            (
                r#"{"jobId":"j","status":"Paused"}"#,
                r#"unknown job status "Paused""#,
            ),
            (
                r#"{"jobId":"j","endTime":"yesterday"}"#,
                r#"field "endTime": unparseable"#,
            ),
            (
                r#"{"jobId":"j","deviceJobStatistics":{"deviceCount":-1}}"#,
                r#"field "deviceJobStatistics.deviceCount": expected a count"#,
            ),
            (r#"{"jobId":"j","hubs":{}}"#, r#"field "hubs": invalid job"#),
        ];
        for (text, expected) in cases {
            let shown = error(text);
            assert!(shown.contains(expected), "{text}: {shown}");
            assert!(shown.starts_with("jobs.json:1:"), "{shown}");
        }
        let long = format!(r#"{{"jobId":"{}"}}"#, "j".repeat(129));
        assert!(error(&long).contains("longer than 128"));
    }

    #[test]
    fn status_in_any_case_and_either_spelling() {
        for (text, status) in [
            ("Running", JobStatus::Running),
            ("CANCELED", JobStatus::Cancelled),
            ("cancelled", JobStatus::Cancelled),
            ("pending", JobStatus::Queued),
            ("Enqueued", JobStatus::Enqueued),
        ] {
            let line = format!(r#"{{"jobId":"j","status":"{text}"}}"#);
            let jobs = read_jobs(line.as_bytes(), "f", &hub()).unwrap();
            assert_eq!(jobs.get("j").unwrap().status(), status, "{text}");
        }
    }

    #[test]
    fn import_export_times_and_null_fields_read() {
        let line = r#"{"jobId":"x","type":"export","status":"completed","startTimeUtc":"2020-01-08T22:51:16+00:00","endTimeUtc":"2020-01-08T22:51:23+00:00","failureReason":null,"progress":100}"#;
        let jobs = read_jobs(line.as_bytes(), "f", &hub()).unwrap();
        let job = jobs.get("x").unwrap();
        assert_eq!(
            job.times(),
            (None, Some(1578523876000), Some(1578523883000))
        );
        assert_eq!(job.field("failureReason"), Some(&Value::Null));
        assert_eq!(job.field("progress"), Some(&Value::from(100)));
        assert_eq!(
            job.to_json()["startTime"],
            Value::from("2020-01-08T22:51:16.000Z")
        );
    }
}
