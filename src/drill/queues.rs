//! The rest of the hub through each cycle's outage: cloud-to-device
//! messages and jobs, taken on both hubs, written as the application and
//! `az` write them, settled and merged by the library, and checked against
//! what the drill knows happened.
//!
//! - **C2D.** The application sends messages through whichever hub is
//!   active (both, in a split brain); each hub returns feedback for the
//!   messages it saw end. A failover loses the primary's queue, so a
//!   message the primary had not ended is pending. The feedback files come
//!   shuffled, some records twice, some for messages the outbox does not
//!   hold. After failback no message that ended anywhere may be sent again,
//!   and every message no hub ended that has not expired must be sent
//!   again (or reported over its device's queue limit).
//! - **Jobs.** Each hub lists its own jobs (the platform does not carry
//!   them over). Every job the primary held scheduled or running that no
//!   hub finished must be in the jobs to schedule again, and no other.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::invariants::{
    C2D_COMPLETED_NOT_RESENT, C2D_NOTHING_LOST, DETERMINISTIC, Findings, JOBS_RESCHEDULED,
    SIMULATOR_CONSISTENT,
};
use super::rng::Rng;
use super::sim::{Cycle, stream};
use crate::ReplicaId;
use crate::c2d::{AsOf, Inputs};
use crate::clock::format_time;
use crate::doc::{JobSet, QUEUE_LIMIT};
use crate::format::read_jobs;
use crate::kernel::Merge;

/// What the C2D and jobs phase saw, over all cycles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Messages the application sent.
    pub messages: u64,
    /// Feedback records the hubs returned (duplicates included).
    pub feedback: u64,
    /// Messages settled with an outcome.
    pub settled: u64,
    /// Messages to send again (`to-send.jsonl`).
    pub to_send: u64,
    /// Messages to send again once their device's queue drains.
    pub over_limit: u64,
    /// Messages that expired unsent.
    pub expired: u64,
    /// Feedback matching no outbox message, reported.
    pub unmatched: u64,
    /// Jobs the hubs listed.
    pub jobs: u64,
    /// Jobs to schedule again.
    pub rescheduled: u64,
}

impl QueueCounts {
    /// The counts as `report.json` holds them.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "c2d": {
                "messages": self.messages,
                "feedback": self.feedback,
                "settled": self.settled,
                "toSend": self.to_send,
                "overLimit": self.over_limit,
                "expired": self.expired,
                "unmatchedFeedback": self.unmatched,
            },
            "jobs": {"listed": self.jobs, "toReschedule": self.rescheduled},
        })
    }
}

const MINUTE: i64 = 60_000;
const PRIMARY: usize = 0;
const SECONDARY: usize = 1;
const STATUS: [&str; 5] = [
    "Success",
    "Expired",
    "DeliveryCountExceeded",
    "Rejected",
    "Purged",
];

fn rfc3339(ms: i64) -> String {
    format_time(ms).unwrap_or_default()
}

/// One message as the drill knows it.
struct Message {
    id: String,
    device: String,
    /// When the application sent it.
    sent: i64,
    expiry: Option<i64>,
    /// The outcome each hub gave, by [`STATUS`] index.
    outcomes: [Option<usize>; 2],
}

/// Rehearses the C2D and jobs of cycle `c` over `devices` device ids, and
/// checks them.
pub(crate) fn rehearse(
    seed: u64,
    c: usize,
    cycle: &Cycle,
    devices: u64,
    width: usize,
    findings: &mut Findings,
    counts: &mut QueueCounts,
) {
    let mut rng = Rng::derive(seed, &[stream::QUEUES, c as u64]);
    let hubs = ["primary", "secondary"].map(|h| ReplicaId::new(h).expect("valid literal"));
    let messages = draw_messages(&mut rng, cycle, devices, width);
    c2d(&mut rng, c, cycle, &hubs, &messages, findings, counts);
    jobs(&mut rng, c, cycle, &hubs, findings, counts);
}

fn draw_messages(rng: &mut Rng, cycle: &Cycle, devices: u64, width: usize) -> Vec<Message> {
    let n = (devices / 20).clamp(20, 5_000);
    // One device is offline the whole cycle while the application sends it
    // more than its queue holds: nothing ends, some must wait.
    let busy = super::device_id(0, width);
    let mut out = Vec::new();
    for i in 0..n + QUEUE_LIMIT as u64 + 5 {
        let offline = i >= n;
        let device = if offline {
            busy.clone()
        } else {
            super::device_id(rng.below(devices.max(1)), width)
        };
        let sent = rng.range(cycle.start, cycle.failback);
        // The hub that took it: the active one, either in a split brain.
        let hub = if sent < cycle.fail || (cycle.split_brain && rng.chance(300)) {
            PRIMARY
        } else {
            SECONDARY
        };
        let expiry = (rng.chance(300) && !offline).then(|| sent + rng.range(1, 120) * MINUTE);
        let mut outcomes = [None, None];
        // A primary queue is lost at the failure: what it had not ended by
        // then stays pending.
        let ends_before = if hub == PRIMARY && !cycle.split_brain {
            cycle.fail
        } else {
            cycle.failback
        };
        let ended = rng.below(1000) < 600 && sent + MINUTE < ends_before && !offline;
        if ended {
            outcomes[hub] = Some(rng.weighted(&[80, 4, 4, 8, 4]));
            // Sometimes the other hub ends it too, differently (the
            // application re-sent it there, and it was purged).
            if rng.chance(50) {
                outcomes[1 - hub] = Some(4);
            }
        }
        out.push(Message {
            id: format!("c{}-{i:06}", cycle.start / MINUTE),
            device,
            sent,
            expiry,
            outcomes,
        });
    }
    out
}

fn c2d(
    rng: &mut Rng,
    c: usize,
    cycle: &Cycle,
    hubs: &[ReplicaId; 2],
    messages: &[Message],
    findings: &mut Findings,
    counts: &mut QueueCounts,
) {
    let mut outbox = String::new();
    for m in messages {
        let mut record = json!({
            "messageId": m.id,
            "deviceId": m.device,
            "enqueuedTimeUtc": rfc3339(m.sent),
            "ack": "full",
            "body": {"setpoint": m.sent % 30},
        });
        if let Some(expiry) = m.expiry {
            record["expiryTimeUtc"] = json!(rfc3339(expiry));
        }
        outbox.push_str(&record.to_string());
        outbox.push('\n');
    }
    // Each hub's feedback: every outcome it gave, some twice, a few for
    // messages the outbox never held, shuffled; as a batch (an array) or
    // as lines, the status as text or as the SDK's number.
    let mut files: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut unknown = 0;
    for (h, file) in files.iter_mut().enumerate() {
        for m in messages {
            let Some(status) = m.outcomes[h] else {
                continue;
            };
            let code = if rng.chance(500) {
                json!(status)
            } else {
                json!(STATUS[status])
            };
            let record = json!({
                "originalMessageId": m.id,
                "deviceGenerationId": "638000000000000000",
                "deviceId": m.device,
                "enqueuedTimeUtc": rfc3339(m.sent + MINUTE),
                "statusCode": code,
                "description": STATUS[status],
            })
            .to_string();
            if rng.chance(100) {
                file.push(record.clone());
            }
            file.push(record);
        }
        for k in 0..rng.below(3) {
            unknown += 1;
            file.push(
                json!({"originalMessageId": format!("gone-{h}-{k}"), "deviceId": "gone",
                       "statusCode": "Success", "description": "Success"})
                .to_string(),
            );
        }
        shuffle(rng, file);
    }
    let texts: Vec<String> = files
        .iter()
        .map(|lines| {
            if rng.chance(500) {
                format!("[{}]", lines.join(",\n"))
            } else {
                lines.iter().map(|l| format!("{l}\n")).collect()
            }
        })
        .collect();
    counts.messages += messages.len() as u64;
    counts.feedback += files.iter().map(|f| f.len() as u64).sum::<u64>();

    let settle = |order: [usize; 2]| -> Result<(Vec<u8>, crate::c2d::Report), String> {
        let mut inputs = Inputs::new();
        inputs
            .read_outbox(outbox.as_bytes(), "outbox.jsonl")
            .map_err(|e| e.to_string())?;
        for h in order {
            inputs
                .read_feedback(&hubs[h], texts[h].as_bytes(), "feedback.json")
                .map_err(|e| e.to_string())?;
        }
        let settlement = inputs.settle(AsOf::Given(cycle.failback));
        let mut bytes = Vec::new();
        settlement
            .write_to_send(&mut bytes)
            .and_then(|()| settlement.write_settled(&mut bytes))
            .and_then(|()| settlement.write_report(&mut bytes))
            .map_err(|e| e.to_string())?;
        Ok((bytes, settlement.report().clone()))
    };
    let (bytes, report) = match settle([PRIMARY, SECONDARY]) {
        Ok(settled) => settled,
        Err(e) => {
            findings.report(
                SIMULATOR_CONSISTENT,
                c,
                "",
                format!("c2d files refused: {e}"),
            );
            return;
        }
    };
    if settle([SECONDARY, PRIMARY]).map(|(b, _)| b).as_ref() != Ok(&bytes) {
        findings.report(
            DETERMINISTIC,
            c,
            "",
            "the c2d outputs differ with the feedback files swapped".into(),
        );
    }
    counts.settled += report.settled.values().sum::<usize>() as u64;
    counts.to_send += report.to_send as u64;
    counts.over_limit += report
        .over_limit
        .values()
        .map(|v| v.len() as u64)
        .sum::<u64>();
    counts.expired += report.expired.values().map(|v| v.len() as u64).sum::<u64>();
    counts.unmatched += report.unmatched_feedback.len() as u64;
    if report.unmatched_feedback.len() != unknown as usize {
        findings.report(
            SIMULATOR_CONSISTENT,
            c,
            "",
            format!(
                "{unknown} feedback records for unknown messages sent, {} reported",
                report.unmatched_feedback.len()
            ),
        );
    }

    // What the settlement sends again, from its own file.
    let text = String::from_utf8_lossy(&bytes);
    let mut resent: BTreeSet<(String, String)> = BTreeSet::new();
    for line in text.lines().take(report.to_send) {
        let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        resent.insert((
            v["deviceId"].as_str().unwrap_or("").to_owned(),
            v["messageId"].as_str().unwrap_or("").to_owned(),
        ));
    }
    for (device, ids) in &report.over_limit {
        for id in ids {
            resent.insert((device.clone(), id.clone()));
        }
    }
    for m in messages {
        let key = (m.device.clone(), m.id.clone());
        let ended = m.outcomes.iter().any(Option::is_some);
        let expired = m.expiry.is_some_and(|e| e <= cycle.failback);
        if ended && resent.contains(&key) {
            findings.report(
                C2D_COMPLETED_NOT_RESENT,
                c,
                &m.device,
                format!("message {} ended on a hub and is sent again", m.id),
            );
        }
        if !ended && !expired && !resent.contains(&key) {
            findings.report(
                C2D_NOTHING_LOST,
                c,
                &m.device,
                format!(
                    "message {} ended nowhere and is neither sent again nor over the limit",
                    m.id
                ),
            );
        }
    }
}

/// A job as the drill knows it.
struct Job {
    id: String,
    hub: usize,
    status: &'static str,
}

fn jobs(
    rng: &mut Rng,
    c: usize,
    cycle: &Cycle,
    hubs: &[ReplicaId; 2],
    findings: &mut Findings,
    counts: &mut QueueCounts,
) {
    let n = 8 + rng.below(8);
    let mut all = Vec::new();
    for i in 0..n {
        let created = rng.range(cycle.start, cycle.failback);
        let hub = if created < cycle.fail {
            PRIMARY
        } else {
            SECONDARY
        };
        let status = ["completed", "running", "scheduled", "failed", "cancelled"]
            [rng.weighted(&[50, 25, 15, 5, 5])];
        let id = format!("job-{}-{i:03}", c + 1);
        // Some live primary jobs the operator resubmitted on the secondary
        // during the outage, under the same id.
        if hub == PRIMARY && matches!(status, "running" | "scheduled") && rng.chance(200) {
            let again = ["completed", "running"][rng.weighted(&[70, 30])];
            all.push(Job {
                id: id.clone(),
                hub: SECONDARY,
                status: again,
            });
        }
        all.push(Job { id, hub, status });
    }
    let list = |h: usize| -> String {
        let jobs: Vec<Value> = all
            .iter()
            .filter(|j| j.hub == h)
            .map(|j| {
                json!({
                    "jobId": j.id,
                    "type": "scheduleDeviceMethod",
                    "status": j.status,
                    "queryCondition": "tags.site = 'lyon'",
                    "cloudToDeviceMethod": {"methodName": "reboot", "payload": {"delay": 5},
                                            "responseTimeoutInSeconds": 30},
                    "maxExecutionTimeInSeconds": 3600,
                })
            })
            .collect();
        Value::Array(jobs).to_string()
    };
    let mut merged = JobSet::default();
    for (h, hub) in hubs.iter().enumerate() {
        match read_jobs(list(h).as_bytes(), "jobs.json", hub) {
            Ok(set) => merged.merge(&set),
            Err(e) => {
                findings.report(SIMULATOR_CONSISTENT, c, "", format!("jobs refused: {e}"));
                return;
            }
        }
    }
    let order = [hubs[PRIMARY].clone(), hubs[SECONDARY].clone()];
    let got: BTreeSet<&str> = merged.to_reschedule(&order).map(|j| j.job_id()).collect();
    // The oracle: live on the failed primary, finished by no hub, not held
    // by the secondary.
    let mut by_id: BTreeMap<&str, Vec<&Job>> = BTreeMap::new();
    for j in &all {
        by_id.entry(&j.id).or_default().push(j);
    }
    let expected: BTreeSet<&str> = by_id
        .iter()
        .filter(|(_, views)| {
            views
                .iter()
                .any(|j| j.hub == PRIMARY && matches!(j.status, "running" | "scheduled"))
                && views.iter().all(|j| j.hub == PRIMARY)
        })
        .map(|(id, _)| *id)
        .collect();
    counts.jobs += all.len() as u64;
    counts.rescheduled += got.len() as u64;
    for id in expected.difference(&got) {
        findings.report(
            JOBS_RESCHEDULED,
            c,
            "",
            format!(
                "job {id} was live on the failed hub, finished nowhere, and is not rescheduled"
            ),
        );
    }
    for id in got.difference(&expected) {
        findings.report(
            JOBS_RESCHEDULED,
            c,
            "",
            format!("job {id} is rescheduled though a hub finished or holds it"),
        );
    }
}

/// Fisher–Yates with the drill's generator.
fn shuffle<T>(rng: &mut Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}
