//! Jobs and cloud-to-device queues: their merges are semilattices, a job's
//! status only moves forward, and a C2D message comes out once per message
//! id and never again once completed anywhere (RELIABILITY.md item 14).

use crate::common::laws;
use failback::ReplicaId;
use failback::doc::{
    C2dMessage, C2dQueues, JobDoc, JobSet, JobStatistics, JobStatus, Outcome, QUEUE_LIMIT,
};
use failback::format::read_jobs;
use failback::kernel::Merge;
use proptest::prelude::*;
use serde_json::{Value, json};

const STATUSES: [JobStatus; 8] = [
    JobStatus::Unknown,
    JobStatus::Queued,
    JobStatus::Enqueued,
    JobStatus::Scheduled,
    JobStatus::Running,
    JobStatus::Completed,
    JobStatus::Failed,
    JobStatus::Cancelled,
];

const OUTCOMES: [Outcome; 5] = [
    Outcome::Purged,
    Outcome::Expired,
    Outcome::DeliveryCountExceeded,
    Outcome::Rejected,
    Outcome::Success,
];

fn time() -> impl Strategy<Value = Option<i64>> {
    prop::option::of(0i64..50)
}

/// Times (created, start, end) as a hub may give them.
type Times = (Option<i64>, Option<i64>, Option<i64>);

/// One hub's view of job `j0`..`j2`, with the statuses it went through,
/// and the times and statistics it gave.
fn job_view() -> impl Strategy<Value = (JobDoc, Times, Option<JobStatistics>)> {
    (
        0..3usize,
        prop::collection::vec(0..STATUSES.len(), 1..4),
        (time(), time(), time()),
        prop::option::of((0u64..20, 0u64..20, 0u64..20, 0u64..20)),
    )
        .prop_map(|(id, statuses, (c, s, e), stats)| {
            let mut job = JobDoc::new(
                format!("j{id}"),
                "scheduleUpdateTwin",
                STATUSES[statuses[0]],
            );
            for s in &statuses[1..] {
                job.advance(STATUSES[*s]);
            }
            job.observe_times(c, s, e);
            let stats = stats.map(|(done, failed, running, pending)| JobStatistics {
                device_count: 60,
                succeeded_count: done,
                failed_count: failed,
                running_count: running,
                pending_count: pending,
            });
            if let Some(stats) = &stats {
                job.observe_statistics(stats);
            }
            (job, (c, s, e), stats)
        })
}

/// One hub's view of job `j0`..`j2`.
fn job() -> impl Strategy<Value = JobDoc> {
    job_view().prop_map(|(job, _, _)| job)
}

fn job_set() -> impl Strategy<Value = JobSet> {
    prop::collection::vec(job(), 0..5).prop_map(|jobs| {
        let mut set = JobSet::default();
        for j in jobs {
            set.insert(j);
        }
        set
    })
}

/// One hub's queues: messages `m0`..`m5` of devices `d0`, `d1`, some
/// delivered, some with an outcome.
fn queues() -> impl Strategy<Value = C2dQueues> {
    prop::collection::vec(
        (
            0..2usize,
            0..6usize,
            0i64..10,
            prop::option::of(5i64..30),
            0u32..4,
            prop::option::of(0..OUTCOMES.len()),
        ),
        0..8,
    )
    .prop_map(|messages| {
        let mut q = C2dQueues::default();
        for (d, m, enqueued, expiry, deliveries, outcome) in messages {
            let (d, m) = (format!("d{d}"), format!("m{m}"));
            let mut message = C2dMessage::enqueued(enqueued);
            message.expiry_ms = expiry;
            message.delivery_count = deliveries;
            q.record(&d, &m, message);
            if let Some(o) = outcome {
                q.complete(&d, &m, OUTCOMES[o]);
            }
        }
        q
    })
}

/// Every way a view ended the job.
fn endings(job: &JobDoc) -> Vec<JobStatus> {
    match job.conflict() {
        Some((winner, mut losers)) => {
            losers.push(winner);
            losers
        }
        None => [job.status()]
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect(),
    }
}

fn merged<T: Merge + Clone>(states: &[T]) -> T {
    let mut all = states[0].clone();
    for s in &states[1..] {
        all.merge(s);
    }
    all
}

proptest! {
    #[test]
    fn job_merge_is_a_semilattice(a in job_set(), b in job_set(), c in job_set()) {
        laws::semilattice(&[a, b, c], |_| ())?;
    }

    #[test]
    fn a_job_status_is_the_furthest_any_hub_reached(views in prop::collection::vec(job(), 1..5)) {
        let all = merged(&views.iter().map(|j| {
            let mut set = JobSet::default();
            set.insert(j.clone());
            set
        }).collect::<Vec<_>>());
        for job in all.jobs() {
            let seen: Vec<JobStatus> = views
                .iter()
                .filter(|v| v.job_id() == job.job_id())
                .map(JobDoc::status)
                .collect();
            let furthest = seen.iter().copied().max().unwrap();
            prop_assert_eq!(job.status(), furthest);
            // Every other ending is named as a loser.
            let endings: std::collections::BTreeSet<JobStatus> = views
                .iter()
                .filter(|v| v.job_id() == job.job_id())
                .flat_map(endings)
                .collect();
            if endings.len() > 1 {
                let (winner, losers) = job.conflict().unwrap();
                prop_assert_eq!(winner, furthest);
                prop_assert_eq!(losers.len() + 1, endings.len());
            }
        }
    }

    #[test]
    fn a_job_keeps_the_earliest_creation_and_start_the_latest_end_and_each_counts_bound(
        views in prop::collection::vec(job_view(), 1..5),
    ) {
        let mut all = JobSet::default();
        for (job, _, _) in &views {
            all.insert(job.clone());
        }
        for job in all.jobs() {
            let given: Vec<_> = views.iter().filter(|(v, _, _)| v.job_id() == job.job_id()).collect();
            let created = given.iter().filter_map(|(_, (c, _, _), _)| *c).min();
            let start = given.iter().filter_map(|(_, (_, s, _), _)| *s).min();
            let end = given.iter().filter_map(|(_, (_, _, e), _)| *e).max();
            prop_assert_eq!(job.times(), (created, start, end));
            let stats: Vec<&JobStatistics> = given.iter().filter_map(|(_, _, s)| s.as_ref()).collect();
            let expected = (!stats.is_empty()).then(|| JobStatistics {
                device_count: stats.iter().map(|s| s.device_count).max().unwrap_or(0),
                failed_count: stats.iter().map(|s| s.failed_count).max().unwrap_or(0),
                succeeded_count: stats.iter().map(|s| s.succeeded_count).max().unwrap_or(0),
                running_count: stats.iter().map(|s| s.running_count).min().unwrap_or(0),
                pending_count: stats.iter().map(|s| s.pending_count).min().unwrap_or(0),
            });
            prop_assert_eq!(job.statistics(), expected.as_ref());
        }
    }

    #[test]
    fn c2d_merge_is_a_semilattice(a in queues(), b in queues(), c in queues()) {
        laws::semilattice(&[a, b, c], |_| ())?;
    }

    #[test]
    fn c2d_messages_come_out_once_and_never_after_completion(
        hubs in prop::collection::vec(queues(), 1..4),
        order in prop::collection::vec(0..4usize, 0..8),
        now in 0i64..30,
    ) {
        // Delivered in any order with duplicates: the same bytes.
        let mut shuffled = hubs.clone();
        shuffled.extend(order.iter().map(|i| hubs[i % hubs.len()].clone()));
        shuffled.reverse();
        let all = merged(&hubs);
        laws::same("any order, any duplication", &merged(&shuffled), &all)?;
        let due: Vec<(&str, &str, &C2dMessage)> = all.to_deliver(now).collect();
        let mut ids: Vec<(&str, &str)> = due.iter().map(|(d, m, _)| (*d, *m)).collect();
        let before = ids.len();
        ids.sort_unstable();
        ids.dedup();
        prop_assert_eq!(ids.len(), before, "a message comes out twice");
        for (device, id, _) in &due {
            for hub in &hubs {
                let ended = hub.get(device, id).is_some_and(|m| m.outcome().is_some());
                prop_assert!(!ended, "{}/{} ended on a hub but is delivered again", device, id);
            }
        }
        prop_assert!(due.len() <= 2 * QUEUE_LIMIT);
    }
}

// ---------------------------------------------------------------------------
// Jobs, directed: what a merged job gives back.

fn hub(name: &str) -> ReplicaId {
    ReplicaId::new(name).unwrap()
}

/// Job `j` (`scheduleDeviceMethod`) as `hub_name` lists it: `status` (as a
/// hub spells it) and the record's other `fields`.
fn listed(hub_name: &str, status: &str, fields: Value) -> JobDoc {
    let mut record = json!({"jobId": "j", "type": "scheduleDeviceMethod", "status": status});
    for (name, value) in fields.as_object().unwrap() {
        record[name] = value.clone();
    }
    let jobs = read_jobs(record.to_string().as_bytes(), "jobs.json", &hub(hub_name)).unwrap();
    jobs.get("j").unwrap().clone()
}

fn merged_pair(a: &JobDoc, b: &JobDoc) -> JobDoc {
    let mut m = a.clone();
    m.merge(b);
    m
}

#[test]
fn job_times_merge_to_the_earliest_creation_and_start_and_the_latest_end() {
    let mut a = JobDoc::new("j", "export", JobStatus::Running);
    assert_eq!(a.times(), (None, None, None));
    a.observe_times(Some(200), None, Some(900));
    assert_eq!(a.times(), (Some(200), None, Some(900)));
    let mut b = JobDoc::new("j", "export", JobStatus::Completed);
    b.observe_times(Some(300), Some(400), Some(700));
    b.observe_times(Some(250), Some(500), Some(1000));
    assert_eq!(b.times(), (Some(250), Some(400), Some(1000)));
    for m in [merged_pair(&a, &b), merged_pair(&b, &a)] {
        assert_eq!(m.times(), (Some(200), Some(400), Some(1000)));
        // A view without times takes nothing away.
        let m = merged_pair(&m, &JobDoc::new("j", "export", JobStatus::Queued));
        assert_eq!(m.times(), (Some(200), Some(400), Some(1000)));
        let line = m.to_json();
        assert_eq!(line["createdTime"], "1970-01-01T00:00:00.200Z");
        assert_eq!(line["startTime"], "1970-01-01T00:00:00.400Z");
        assert_eq!(line["endTime"], "1970-01-01T00:00:01.000Z");
    }
}

#[test]
fn job_times_read_from_a_hubs_list_merge_across_hubs() {
    let time = |s: u32| format!("1970-01-01T00:00:{s:02}Z");
    let primary = listed(
        "primary",
        "running",
        json!({"createdTime": time(10), "startTime": time(15)}),
    );
    let secondary = listed(
        "secondary",
        "completed",
        json!({"createdTime": time(11), "startTime": time(14), "endTime": time(50)}),
    );
    assert_eq!(primary.times(), (Some(10_000), Some(15_000), None));
    for m in [
        merged_pair(&primary, &secondary),
        merged_pair(&secondary, &primary),
    ] {
        assert_eq!(m.times(), (Some(10_000), Some(14_000), Some(50_000)));
    }
}

#[test]
fn job_statistics_are_kept_as_first_seen_then_merged() {
    let mut job = JobDoc::new("j", "export", JobStatus::Running);
    assert_eq!(job.statistics(), None);
    let first = JobStatistics {
        device_count: 10,
        failed_count: 1,
        succeeded_count: 2,
        running_count: 5,
        pending_count: 2,
    };
    job.observe_statistics(&first);
    assert_eq!(job.statistics(), Some(&first));
    // A view without statistics keeps them.
    let job = merged_pair(&job, &JobDoc::new("j", "export", JobStatus::Running));
    assert_eq!(job.statistics(), Some(&first));
    let last = JobStatistics {
        device_count: 10,
        failed_count: 0,
        succeeded_count: 9,
        running_count: 0,
        pending_count: 1,
    };
    let mut done = JobDoc::new("j", "export", JobStatus::Completed);
    done.observe_statistics(&last);
    let both = JobStatistics {
        device_count: 10,
        failed_count: 1,
        succeeded_count: 9,
        running_count: 0,
        pending_count: 1,
    };
    for m in [merged_pair(&job, &done), merged_pair(&done, &job)] {
        assert_eq!(m.statistics(), Some(&both));
        assert_eq!(
            m.to_json()["deviceJobStatistics"].to_string(),
            r#"{"deviceCount":10,"failedCount":1,"pendingCount":1,"runningCount":0,"succeededCount":9}"#
        );
    }
}

#[test]
fn a_job_line_names_its_type_endings_and_hubs_only_when_there_are_some() {
    let bare = JobDoc::new("j", "", JobStatus::Running);
    assert_eq!(
        bare.to_json().to_string(),
        r#"{"jobId":"j","status":"running"}"#
    );
    assert_eq!(bare.reschedule_json(), bare.to_json());
    let mut done = listed("primary", "completed", json!({"queryCondition": "*"}));
    done.observe_times(Some(1000), Some(2000), Some(3000));
    let job = merged_pair(&done, &listed("secondary", "failed", json!({})));
    assert_eq!(
        job.to_json().to_string(),
        concat!(
            r#"{"createdTime":"1970-01-01T00:00:01.000Z","endTime":"1970-01-01T00:00:03.000Z","#,
            r#""endings":["completed","failed"],"hubs":{"primary":"completed","secondary":"failed"},"#,
            r#""jobId":"j","queryCondition":"*","startTime":"1970-01-01T00:00:02.000Z","#,
            r#""status":"failed","type":"scheduleDeviceMethod"}"#
        )
    );
    // Scheduling it again takes what it does, not how a run went.
    assert_eq!(
        job.reschedule_json().to_string(),
        concat!(
            r#"{"hubs":{"primary":"completed","secondary":"failed"},"jobId":"j","#,
            r#""queryCondition":"*","startTime":"1970-01-01T00:00:02.000Z","#,
            r#""status":"failed","type":"scheduleDeviceMethod"}"#
        )
    );
}

#[test]
fn each_hub_is_kept_with_the_furthest_status_it_gave() {
    let mut job = listed("primary", "queued", json!({}));
    for view in [
        listed("primary", "running", json!({})),
        listed("secondary", "scheduled", json!({})),
        listed("primary", "enqueued", json!({})),
    ] {
        job.merge(&view);
    }
    let hubs: Vec<(String, JobStatus)> = job.hubs().map(|(h, s)| (h.to_string(), s)).collect();
    assert_eq!(
        hubs,
        [
            ("primary".to_owned(), JobStatus::Running),
            ("secondary".to_owned(), JobStatus::Scheduled)
        ]
    );
}

#[test]
fn a_job_field_takes_the_furthest_views_value_then_the_greater_text() {
    let queued = listed(
        "a",
        "queued",
        json!({"failureReason": "z", "queryCondition": "b"}),
    );
    let failed = listed(
        "b",
        "failed",
        json!({"failureReason": "disk full", "queryCondition": "a"}),
    );
    for m in [merged_pair(&queued, &failed), merged_pair(&failed, &queued)] {
        assert_eq!(m.field("failureReason"), Some(&json!("disk full")));
        assert_eq!(m.field("queryCondition"), Some(&json!("a")));
        assert_eq!(m.field("progress"), None);
    }
    // Views of one status: the greater canonical JSON text, so 7 over 40.
    let seven = listed("a", "running", json!({"progress": 7}));
    let forty = listed("b", "running", json!({"progress": 40}));
    for m in [merged_pair(&seven, &forty), merged_pair(&forty, &seven)] {
        assert_eq!(m.field("progress"), Some(&json!(7)));
    }
}

#[test]
fn a_reused_job_id_of_two_types_takes_the_greater_type_either_way() {
    let export = JobDoc::new("fw-7", "export", JobStatus::Running);
    let import = JobDoc::new("fw-7", "import", JobStatus::Running);
    for m in [merged_pair(&export, &import), merged_pair(&import, &export)] {
        assert_eq!((m.job_id(), m.job_type()), ("fw-7", "import"));
    }
}

#[test]
fn a_job_conflict_takes_two_endings_and_names_every_loser() {
    let mut job = JobDoc::new("j", "export", JobStatus::Running);
    assert_eq!(job.conflict(), None);
    job.advance(JobStatus::Completed);
    assert_eq!(job.conflict(), None);
    job.advance(JobStatus::Cancelled);
    assert_eq!(
        job.conflict(),
        Some((JobStatus::Cancelled, vec![JobStatus::Completed]))
    );
    job.advance(JobStatus::Failed);
    assert_eq!(
        job.conflict(),
        Some((
            JobStatus::Cancelled,
            vec![JobStatus::Completed, JobStatus::Failed]
        ))
    );
}

#[test]
fn job_statuses_by_name_kind_and_padding() {
    let names: Vec<String> = STATUSES.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "unknown",
            "queued",
            "enqueued",
            "scheduled",
            "running",
            "completed",
            "failed",
            "cancelled"
        ]
    );
    for status in STATUSES {
        assert_eq!(status.as_str(), status.to_string());
        let read = listed("a", &status.as_str().to_uppercase(), json!({}));
        assert_eq!(read.status(), status);
    }
    let ended: Vec<bool> = STATUSES.iter().map(|s| s.is_terminal()).collect();
    assert_eq!(ended, [false, false, false, false, false, true, true, true]);
    assert_eq!(format!("[{:<9}]", JobStatus::Failed), "[failed   ]");
    assert_eq!(format!("[{:>8}]", JobStatus::Queued), "[  queued]");
}

#[test]
fn a_job_set_merges_the_views_of_one_job_and_keeps_every_other() {
    let mut set = JobSet::default();
    set.insert(JobDoc::new("b", "export", JobStatus::Running));
    set.insert(JobDoc::new("a", "import", JobStatus::Queued));
    set.insert(JobDoc::new("b", "export", JobStatus::Completed));
    let ids = |s: &JobSet| s.jobs().map(|j| j.job_id().to_owned()).collect::<Vec<_>>();
    assert_eq!(ids(&set), ["a", "b"]);
    assert_eq!(set.get("b").map(JobDoc::status), Some(JobStatus::Completed));
    assert!(set.get("c").is_none());
    let mut other = JobSet::default();
    other.insert(JobDoc::new("c", "export", JobStatus::Scheduled));
    other.insert(JobDoc::new("a", "import", JobStatus::Failed));
    set.merge(&other);
    assert_eq!(ids(&set), ["a", "b", "c"]);
    assert_eq!(set.get("a").map(JobDoc::status), Some(JobStatus::Failed));
    assert_eq!(set.get("c").map(JobDoc::status), Some(JobStatus::Scheduled));
}

#[test]
fn a_job_is_lost_only_when_live_on_a_failed_hub_ended_nowhere_and_not_live_now() {
    let order = [hub("a"), hub("b")];
    let lost = |views: &[(&str, &str)]| -> bool {
        let mut set = JobSet::default();
        for (h, status) in views {
            set.insert(listed(h, status, json!({})));
        }
        set.to_reschedule(&order).count() == 1
    };
    for status in ["queued", "enqueued", "scheduled", "running"] {
        assert!(lost(&[("a", status)]), "{status} on the failed hub");
        assert!(!lost(&[("a", status), ("b", status)]), "{status} now too");
        assert!(
            lost(&[("a", status), ("b", "unknown")]),
            "{status}, unknown now"
        );
    }
    assert!(!lost(&[("a", "unknown")]));
    assert!(!lost(&[("b", "running")]));
    assert!(!lost(&[("a", "running"), ("b", "completed")]));
    for ended in ["completed", "failed", "cancelled"] {
        assert!(!lost(&[("a", ended)]), "{ended}");
    }
}
