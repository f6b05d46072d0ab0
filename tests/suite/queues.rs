//! Jobs and cloud-to-device queues: their merges are semilattices, a job's
//! status only moves forward, and a C2D message comes out once per message
//! id and never again once completed anywhere (RELIABILITY.md item 14).

use crate::common::laws;
use failback::doc::{
    C2dMessage, C2dQueues, JobDoc, JobSet, JobStatistics, JobStatus, Outcome, QUEUE_LIMIT,
};
use failback::kernel::Merge;
use proptest::prelude::*;

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

/// One hub's view of job `j0`..`j2`, with the statuses it went through.
fn job() -> impl Strategy<Value = JobDoc> {
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
            if let Some((done, failed, running, pending)) = stats {
                job.observe_statistics(&JobStatistics {
                    device_count: 60,
                    succeeded_count: done,
                    failed_count: failed,
                    running_count: running,
                    pending_count: pending,
                });
            }
            job
        })
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
