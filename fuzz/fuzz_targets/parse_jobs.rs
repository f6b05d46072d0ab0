//! Arbitrary bytes into the jobs reader (`az iot hub job list` output):
//! either a typed error on one line, or jobs whose `jobs.jsonl` lines,
//! without the merge's own fields (`hubs`, `endings`), the reader takes
//! back to the same lines: the writer is canonical and its times, counts
//! and kept fields survive a round trip. Merging the jobs with themselves
//! changes nothing.
#![no_main]

use failback::ReplicaId;
use failback::doc::JobSet;
use failback::format::read_jobs;
use failback::kernel::Merge;
use libfuzzer_sys::fuzz_target;

/// The jobs as JSON lines, without the merge's own fields.
fn write(jobs: &JobSet) -> Vec<u8> {
    let mut out = Vec::new();
    for job in jobs.jobs() {
        let mut line = job.to_json();
        let map = line.as_object_mut().expect("a job is an object");
        map.remove("hubs");
        map.remove("endings");
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let hub = ReplicaId::new("primary").expect("a valid name");
    let jobs = match read_jobs(data, "fuzz.json", &hub) {
        Ok(jobs) => jobs,
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.contains('\n'), "{shown:?}");
            return;
        }
    };
    let mut twice = jobs.clone();
    twice.merge(&jobs);
    assert_eq!(twice, jobs, "merging jobs with themselves changed them");
    let written = write(&jobs);
    let again = match read_jobs(written.as_slice(), "rewritten.jsonl", &hub) {
        Ok(again) => again,
        Err(e) => panic!(
            "the writer wrote what the reader rejects: {e}\n{}",
            String::from_utf8_lossy(&written)
        ),
    };
    assert_eq!(
        jobs.jobs().map(|j| j.job_id()).collect::<Vec<_>>(),
        again.jobs().map(|j| j.job_id()).collect::<Vec<_>>()
    );
    assert_eq!(write(&again), written, "the jobs writer is not canonical");
});
