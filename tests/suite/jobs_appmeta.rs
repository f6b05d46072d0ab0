//! Application metadata and jobs in `failback merge` (issue 15): the
//! library calls (`appmeta::merge_dirs`, `format::read_jobs`,
//! `JobSet::to_reschedule`), the binary end to end on the fixtures in
//! `tests/fixtures/appmeta/` and `tests/fixtures/jobs/`, file-level laws
//! (any order and duplication of records, any order of hubs and flags: the
//! same bytes) and hostile input (each refused with file, line and field,
//! and nothing written).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::laws;
use failback::ReplicaId;
use failback::appmeta::{AppDocument, merge_dirs};
use failback::doc::{JobSet, JobStatus};
use failback::format::read_jobs;
use failback::kernel::Merge;
use proptest::prelude::*;
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(path: &str) -> String {
    format!("{FIXTURES}/{path}")
}

fn hub(name: &str) -> ReplicaId {
    ReplicaId::new(name).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    crate::common::scratch("jobs_appmeta", name)
}

fn failback(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_failback"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Every file under `dir`, by relative path, with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                out.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn stderr(run: &Output) -> String {
    String::from_utf8_lossy(&run.stderr).into_owned()
}

// ---------------------------------------------------------------------------
// The binary end to end.

/// The README's example: devices, application metadata and jobs of both
/// hubs, flags in the order given.
fn full_merge(out: &Path, reorder: bool) -> Output {
    let mut flags = vec![
        vec!["--base".to_owned(), fixture("failback/base.jsonl")],
        vec![
            "--hub".into(),
            format!("primary={}", fixture("failback/primary.jsonl")),
        ],
        vec![
            "--hub".into(),
            format!("secondary={}", fixture("failback/secondary.jsonl")),
        ],
        vec!["--appmeta-base".into(), fixture("appmeta/base")],
        vec![
            "--appmeta".into(),
            format!("primary={}", fixture("appmeta/primary")),
        ],
        vec![
            "--appmeta".into(),
            format!("secondary={}", fixture("appmeta/secondary")),
        ],
        vec![
            "--jobs-file".into(),
            format!("primary={}", fixture("jobs/primary.json")),
        ],
        vec![
            "--jobs-file".into(),
            format!("secondary={}", fixture("jobs/secondary.json")),
        ],
    ];
    if reorder {
        flags.reverse();
        flags.push(vec!["--jobs".into(), "1".into()]);
    }
    let mut all = args(&["merge", "--out", &out.display().to_string()]);
    all.extend(flags.into_iter().flatten());
    failback(&all)
}

#[test]
fn every_output_in_one_directory_and_the_same_bytes_for_any_order_of_flags() {
    let dir = scratch("full");
    let (a, b) = (dir.join("a"), dir.join("b"));
    let run = full_merge(&a, false);
    assert!(run.status.success(), "{}", stderr(&run));
    let summary = String::from_utf8_lossy(&run.stdout);
    assert!(
        summary.contains("jobs to schedule again: 1 (jobs.todo.jsonl)"),
        "{summary}"
    );
    assert!(
        summary.contains("deleted (delete wins): legacy-bridge"),
        "{summary}"
    );
    let run = full_merge(&b, true);
    assert!(run.status.success(), "{}", stderr(&run));
    let (first, second) = (tree(&a), tree(&b));
    assert_eq!(first, second);
    let names: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "appmeta/assets.automerge",
            "appmeta/assets.json",
            "appmeta/routes.automerge",
            "appmeta/routes.json",
            "appmeta/sites.automerge",
            "appmeta/sites.json",
            "conflicts.jsonl",
            "jobs.jsonl",
            "jobs.todo.jsonl",
            "merged.jsonl",
            "primary.import.jsonl",
            "report.json",
            "secondary.import.jsonl",
        ]
    );

    // Both hubs' list insertions survive; a concurrent set keeps a loser.
    let routes: Value = serde_json::from_slice(&first["appmeta/routes.json"]).unwrap();
    assert_eq!(
        routes,
        json!({"alerts": "queue-8", "billing": "queue-9", "telemetry": ["hot", "cold", "audit", "archive"]})
    );
    let doc = AppDocument::load(&first["appmeta/routes.automerge"]).unwrap();
    assert_eq!(doc.to_json(), routes);

    // Conflicts: the devices' first, then documents by name, then jobs.
    let text = String::from_utf8(first["conflicts.jsonl"].clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines
        .iter()
        .map(|l| {
            if l.get("id").is_some() {
                "device"
            } else if l.get("document").is_some() {
                "document"
            } else {
                "job"
            }
        })
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort_by_key(|k| ["device", "document", "job"].iter().position(|x| x == k));
    assert_eq!(kinds, sorted);
    let extras: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l.get("id").is_none())
        .map(|l| (l["rule"].as_str().unwrap(), l["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        extras,
        [
            ("appmeta-delete-wins", ""),
            ("appmeta-concurrent-set", "/alerts"),
            ("job-ending", "status"),
        ]
    );

    // Jobs: one line per id, sorted; the lost one in the todo.
    let jobs = String::from_utf8(first["jobs.jsonl"].clone()).unwrap();
    let ids: Vec<String> = jobs
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["jobId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut sorted_ids = ids.clone();
    sorted_ids.sort();
    assert_eq!(ids, sorted_ids);
    assert_eq!(ids.len(), 4);
    let todo = String::from_utf8(first["jobs.todo.jsonl"].clone()).unwrap();
    let todo: Vec<Value> = todo
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(todo.len(), 1);
    assert_eq!(todo[0]["jobId"], "reboot-floor-3");
    assert_eq!(todo[0]["cloudToDeviceMethod"]["methodName"], "reboot");
    assert_eq!(
        todo[0]["queryCondition"],
        "tags.building = '43' AND tags.floor = 3"
    );
    assert!(todo[0].get("createdTime").is_none());

    let report: Value = serde_json::from_slice(&first["report.json"]).unwrap();
    assert_eq!(report["jobs_todo"], 1);
    assert_eq!(
        report["appmeta"],
        json!({"created": 1, "deleted": 1, "merged": 2})
    );
    assert_eq!(report["appmeta_deleted"], json!(["legacy-bridge"]));
    assert_eq!(report["conflicts"]["job-ending"], 1);
    assert_eq!(report["conflicts"]["appmeta-delete-wins"], 1);
    assert_eq!(report["conflicts"]["appmeta-concurrent-set"], 1);
    assert_eq!(
        report["jobs"],
        json!({"cancelled": 1, "failed": 1, "queued": 1, "scheduled": 1})
    );
    let jobs_files = fixture("jobs/primary.json");
    assert_eq!(report["skipped_lines"][jobs_files.as_str()], 0);
    // No jobs line was skipped: no warning about them.
    let warnings = report["warnings"].as_array().unwrap();
    assert!(
        !warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("no JSON")),
        "{warnings:?}"
    );
    // Each side of an extra's conflict names its hub and value.
    let sides: Vec<(&str, &Value, &Value)> = lines
        .iter()
        .filter(|l| l.get("id").is_none())
        .map(|l| (l["rule"].as_str().unwrap(), &l["winner"], &l["losers"]))
        .collect();
    assert_eq!(
        sides,
        [
            (
                "appmeta-delete-wins",
                &json!({"hub": "secondary", "value": null}),
                &json!([{"hub": "primary", "value": {"enabled": false, "endpoint": "legacy-1"}}])
            ),
            (
                "appmeta-concurrent-set",
                &json!({"hub": "secondary", "value": "queue-8"}),
                &json!([{"hub": "primary", "value": "queue-7"}])
            ),
            (
                "job-ending",
                &json!({"hub": "secondary", "value": "failed"}),
                &json!([{"hub": "primary", "value": "completed"}])
            ),
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_merge_of_only_application_metadata_and_jobs_needs_no_hub() {
    let dir = scratch("extras-only");
    let out = dir.join("out");
    let run = failback(&args(&[
        "merge",
        "--jobs-file",
        &format!("primary={}", fixture("jobs/primary.json")),
        "--jobs-file",
        &format!("secondary={}", fixture("jobs/secondary.json")),
        "--appmeta",
        &format!("primary={}", fixture("appmeta/primary")),
        "--out",
        &out.display().to_string(),
    ]));
    assert!(run.status.success(), "{}", stderr(&run));
    let files: Vec<String> = tree(&out).into_keys().collect();
    assert_eq!(
        files,
        [
            "appmeta/assets.automerge",
            "appmeta/assets.json",
            "appmeta/legacy-bridge.automerge",
            "appmeta/legacy-bridge.json",
            "appmeta/routes.automerge",
            "appmeta/routes.json",
            "appmeta/sites.automerge",
            "appmeta/sites.json",
            "conflicts.jsonl",
            "jobs.jsonl",
            "jobs.todo.jsonl",
            "report.json",
        ]
    );
    // Without a base, one hub's documents are created as they are.
    let sites: Value = serde_json::from_slice(&tree(&out)["appmeta/sites.json"]).unwrap();
    assert_eq!(sites, json!({"lyon": {"timezone": "Europe/Paris"}}));
    // A jobs file printed as a table: its lines skipped, counted and
    // warned about, naming the file.
    let table = dir.join("table.txt");
    std::fs::write(
        &table,
        "JobId    Status\n-------  --------\nj        running\n",
    )
    .unwrap();
    let tabled = dir.join("tabled");
    let run = failback(&args(&[
        "merge",
        "--jobs-file",
        &format!("primary={}", table.display()),
        "--jobs-file",
        &format!("secondary={}", fixture("jobs/secondary.json")),
        "--out",
        &tabled.display().to_string(),
    ]));
    assert!(run.status.success(), "{}", stderr(&run));
    let report: Value = serde_json::from_slice(&tree(&tabled)["report.json"]).unwrap();
    let table = table.display().to_string();
    assert_eq!(
        report["skipped_lines"],
        json!({table.as_str(): 3, fixture("jobs/secondary.json"): 0})
    );
    assert_eq!(
        report["warnings"],
        json!([format!(
            "{table}: lines that are no JSON were skipped; give `az iot hub job list` output as JSON (its default output, not -o table or tsv)"
        )])
    );
    // Application metadata alone, no jobs: its documents, no jobs files.
    let appmeta_only = dir.join("appmeta-only");
    let run = failback(&args(&[
        "merge",
        "--appmeta",
        &format!("primary={}", fixture("appmeta/primary")),
        "--appmeta",
        &format!("secondary={}", fixture("appmeta/secondary")),
        "--out",
        &appmeta_only.display().to_string(),
    ]));
    assert!(run.status.success(), "{}", stderr(&run));
    let files: Vec<String> = tree(&appmeta_only).into_keys().collect();
    assert!(
        files.contains(&"appmeta/sites.json".to_owned()),
        "{files:?}"
    );
    assert!(!files.iter().any(|f| f.starts_with("jobs")), "{files:?}");
    // A device base without hubs is a device merge missing its hubs, not
    // one of the extras alone: refused, nothing written.
    let with_base = dir.join("with-base");
    let run = failback(&args(&[
        "merge",
        "--base",
        &fixture("failback/base.jsonl"),
        "--jobs-file",
        &format!("primary={}", fixture("jobs/primary.json")),
        "--jobs-file",
        &format!("secondary={}", fixture("jobs/secondary.json")),
        "--out",
        &with_base.display().to_string(),
    ]));
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("a merge needs at least two hubs, 0 given"),
        "{}",
        stderr(&run)
    );
    assert!(!with_base.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs a merge of jobs and application metadata into `out`, with one
/// input replaced by `bad`.
fn extras_merge(out: &Path, jobs: &str, appmeta: &str) -> Output {
    failback(&args(&[
        "merge",
        "--jobs-file",
        &format!("primary={jobs}"),
        "--jobs-file",
        &format!("secondary={}", fixture("jobs/secondary.json")),
        "--appmeta",
        &format!("primary={appmeta}"),
        "--appmeta",
        &format!("secondary={}", fixture("appmeta/secondary")),
        "--out",
        &out.display().to_string(),
    ]))
}

#[test]
fn a_bad_file_exits_2_naming_it_and_leaves_the_previous_results() {
    let dir = scratch("bad");
    let out = dir.join("out");
    let good_jobs = fixture("jobs/primary.json");
    let good_appmeta = fixture("appmeta/primary");
    let run = extras_merge(&out, &good_jobs, &good_appmeta);
    assert!(run.status.success(), "{}", stderr(&run));
    let before = tree(&out);

    let jobs = dir.join("jobs.json");
    let docs = dir.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    // What is bad, the jobs file, the document's name and bytes, and what
    // the one line of the error says.
    type Case<'a> = (&'a str, &'a [u8], &'a str, &'a [u8], &'a str);
    let cases: [Case<'_>; 6] = [
        ("jobs", b"[\n  {\"jobId\": \"a\", \"status\": \"running\"},\n  {\"jobId\": \"b\", \"status\": \"paused\"}\n]\n", "", b"", ":3: field \"status\": unknown job status \"paused\""),
        ("jobs", b"[\n  {\"jobId\": \"a\", \"status\": \"running\"},\n  {\"jobId\": \"b\",\n", "", b"", ":3: invalid JSON at column 14: EOF while parsing"),
        ("jobs", b"{\"jobId\": \"a\", \"type\": \"\xff\"}\n", "", b"", ":1: invalid UTF-8"),
        ("appmeta", b"", "routes.json", b"{\n  \"alerts\": \"queue-1\",\n", "routes.json:3: invalid JSON"),
        ("appmeta", b"", "routes.json", b"[1, 2]", "routes.json: an application document must be a json object, not an array"),
        ("appmeta", b"", "bad name.json", b"{}", "bad name.json: not an application document"),
    ];
    for (what, job_bytes, doc_name, doc_bytes, expected) in cases {
        let (jobs_arg, appmeta_arg) = if what == "jobs" {
            std::fs::write(&jobs, job_bytes).unwrap();
            (jobs.display().to_string(), good_appmeta.clone())
        } else {
            let _ = std::fs::remove_dir_all(&docs);
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(doc_name), doc_bytes).unwrap();
            (good_jobs.clone(), docs.display().to_string())
        };
        let run = extras_merge(&out, &jobs_arg, &appmeta_arg);
        let message = stderr(&run);
        assert_eq!(run.status.code(), Some(2), "{expected}: {message}");
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(message.contains(expected), "{expected}: {message}");
        assert_eq!(tree(&out), before, "{expected}: the results changed");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("failback"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn which_hubs_failed_must_be_known_and_hubs_must_be_the_merges() {
    let dir = scratch("order");
    let out = dir.join("out");
    let jobs = fixture("jobs/primary.json");
    let run = failback(&args(&[
        "merge",
        "--jobs-file",
        &format!("westeurope={jobs}"),
        "--out",
        &out.display().to_string(),
    ]));
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("give --active-order"),
        "{}",
        stderr(&run)
    );
    assert!(!out.exists());
    // Told the order: every job the failed hub held live, none finished.
    let run = failback(&args(&[
        "merge",
        "--jobs-file",
        &format!("westeurope={jobs}"),
        "--active-order",
        "westeurope,northeurope",
        "--out",
        &out.display().to_string(),
    ]));
    assert!(run.status.success(), "{}", stderr(&run));
    let todo = std::fs::read_to_string(out.join("jobs.todo.jsonl")).unwrap();
    assert_eq!(todo.lines().count(), 2);
    // Named twice is not named once.
    let run = failback(&args(&[
        "merge",
        "--jobs-file",
        &format!("westeurope={jobs}"),
        "--active-order",
        "northeurope,westeurope,westeurope",
        "--out",
        &dir.join("twice").display().to_string(),
    ]));
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(
        stderr(&run).contains(
            "hub westeurope failed over: the order the hubs were active in does not name it once"
        ),
        "{}",
        stderr(&run)
    );
    assert!(!dir.join("twice").exists());
    // Told by as-of times, when every jobs hub has one: the same order,
    // and the other way round nothing is lost (westeurope is active).
    for (westeurope, lost) in [("2024-03-01T00:00:00Z", 2), ("2024-03-03T00:00:00Z", 0)] {
        let run = failback(&args(&[
            "merge",
            "--jobs-file",
            &format!("westeurope={jobs}"),
            "--as-of",
            &format!("westeurope={westeurope}"),
            "--as-of",
            "northeurope=2024-03-02T00:00:00Z",
            "--out",
            &out.display().to_string(),
        ]));
        assert!(run.status.success(), "{}", stderr(&run));
        let todo = std::fs::read_to_string(out.join("jobs.todo.jsonl")).unwrap();
        assert_eq!(todo.lines().count(), lost, "westeurope as of {westeurope}");
    }
    // An as-of time for some jobs hubs only tells nothing: the order of
    // `primary` and `secondary` is taken.
    let run = failback(&args(&[
        "merge",
        "--jobs-file",
        &format!("primary={jobs}"),
        "--jobs-file",
        &format!("secondary={}", fixture("jobs/secondary.json")),
        "--as-of",
        "secondary=2024-03-03T00:00:00Z",
        "--out",
        &out.display().to_string(),
    ]));
    assert!(run.status.success(), "{}", stderr(&run));
    // A typo in a hub name is an error, not a third hub.
    let run = failback(&args(&[
        "merge",
        "--base",
        &fixture("failback/base.jsonl"),
        "--hub",
        &format!("primary={}", fixture("failback/primary.jsonl")),
        "--hub",
        &format!("secondary={}", fixture("failback/secondary.jsonl")),
        "--appmeta",
        &format!("primay={}", fixture("appmeta/primary")),
        "--out",
        &dir.join("typo").display().to_string(),
    ]));
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("application metadata names primay"),
        "{}",
        stderr(&run)
    );
    assert!(!dir.join("typo").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------
// Application metadata, through the library.

/// Writes `docs` (file name, bytes) into a fresh directory `dir/name`.
fn docs_dir(dir: &Path, name: &str, docs: &[(&str, &[u8])]) -> PathBuf {
    let path = dir.join(name);
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    for (file, bytes) in docs {
        std::fs::write(path.join(file), bytes).unwrap();
    }
    path
}

#[test]
fn a_document_deleted_on_a_hub_stays_deleted_and_the_change_it_overrides_is_kept() {
    let dir = scratch("delete");
    let base = docs_dir(
        &dir,
        "base",
        &[("a.json", br#"{"k": 1}"#), ("b.json", br#"{"k": 1}"#)],
    );
    let p = docs_dir(
        &dir,
        "p",
        &[("a.json", br#"{"k": 2}"#), ("b.json", br#"{"k": 1}"#)],
    );
    let s = docs_dir(&dir, "s", &[]);
    let merged = merge_dirs(Some(&base), &[(hub("p"), p), (hub("s"), s)]).unwrap();
    assert_eq!(merged.documents().count(), 0);
    assert_eq!(merged.deleted().collect::<Vec<_>>(), ["a", "b"]);
    // Only the changed document has a loser.
    let conflicts: Vec<_> = merged.conflicts().collect();
    assert_eq!(conflicts.len(), 1);
    let (name, rule, conflict) = conflicts[0];
    assert_eq!((name, rule), ("a", "appmeta-delete-wins"));
    assert_eq!(conflict.winner.replica, Some(hub("s")));
    assert_eq!(conflict.winner.value, Value::Null);
    assert_eq!(conflict.losers[0].value, json!({"k": 2}));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_hubs_json_and_the_automerge_document_it_makes_are_the_same_input() {
    let dir = scratch("forms");
    let base_value = json!({"routes": {"alerts": "q1"}, "list": [1, 2]});
    let base_doc = AppDocument::from_json(&hub("base"), &base_value).unwrap();
    let p_value = json!({"routes": {"alerts": "q2"}, "list": [1, 2, 3]});
    let mut p_doc = base_doc.clone();
    p_doc.set_json(&hub("p"), &p_value).unwrap();
    let s_value = json!({"routes": {"alerts": "q1", "billing": "q9"}, "list": [0, 1, 2]});
    let text = |v: &Value| v.to_string().into_bytes();

    // The base as automerge: a hub's .automerge descends from it.
    let base = docs_dir(&dir, "base", &[("doc.automerge", &base_doc.save())]);
    let s = docs_dir(&dir, "s", &[("doc.json", &text(&s_value))]);
    let p_am = docs_dir(&dir, "p-am", &[("doc.automerge", &p_doc.save())]);
    let p_json = docs_dir(&dir, "p-json", &[("doc.json", &text(&p_value))]);
    let from_am = merge_dirs(Some(&base), &[(hub("p"), p_am), (hub("s"), s.clone())]).unwrap();
    let from_json = merge_dirs(Some(&base), &[(hub("s"), s.clone()), (hub("p"), p_json)]).unwrap();
    let (_, am) = from_am.documents().next().unwrap();
    let (_, js) = from_json.documents().next().unwrap();
    assert_eq!(am.save(), js.save());
    assert_eq!(
        am.to_json(),
        json!({"routes": {"alerts": "q2", "billing": "q9"}, "list": [0, 1, 2, 3]})
    );
    assert_eq!(from_am.conflicts().count(), 0);

    // The base as JSON gives the same merge of JSON hubs.
    let base_json = docs_dir(&dir, "base-json", &[("doc.json", &text(&base_value))]);
    let p_json = docs_dir(&dir, "p-json", &[("doc.json", &text(&p_value))]);
    let again = merge_dirs(Some(&base_json), &[(hub("p"), p_json), (hub("s"), s)]).unwrap();
    assert_eq!(again.documents().next().unwrap().1.save(), js.save());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_document_created_alike_on_two_hubs_has_no_conflict_and_one_created_apart_keeps_both() {
    let dir = scratch("created");
    let same = br#"{"site": "lyon", "tz": "Europe/Paris"}"#;
    let p = docs_dir(&dir, "p", &[("a.json", same), ("b.json", br#"{"k": "p"}"#)]);
    let s = docs_dir(&dir, "s", &[("a.json", same), ("b.json", br#"{"k": "s"}"#)]);
    let merged = merge_dirs(
        Some(&docs_dir(&dir, "base", &[])),
        &[(hub("p"), p), (hub("s"), s)],
    )
    .unwrap();
    let docs: BTreeMap<&str, Value> = merged.documents().map(|(n, d)| (n, d.to_json())).collect();
    assert_eq!(docs["a"], json!({"site": "lyon", "tz": "Europe/Paris"}));
    let conflicts: Vec<_> = merged
        .conflicts()
        .map(|(n, r, c)| (n, r, c.path.clone()))
        .collect();
    assert_eq!(
        conflicts,
        [("b", "appmeta-concurrent-set", "/k".to_owned())]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A base document holding a text object and a counter, as an
/// application using automerge directly writes it.
fn text_and_counter_base() -> Vec<u8> {
    use automerge::transaction::Transactable;
    let mut doc = automerge::Automerge::new().with_actor(automerge::ActorId::from([7u8; 16]));
    let mut tx = doc.transaction();
    let text = tx
        .put_object(automerge::ROOT, "notes", automerge::ObjType::Text)
        .unwrap();
    tx.splice_text(&text, 0, 0, "pump at gate").unwrap();
    tx.put(
        automerge::ROOT,
        "restarts",
        automerge::ScalarValue::counter(10),
    )
    .unwrap();
    tx.commit_with(automerge::transaction::CommitOptions::default().with_time(0));
    doc.save()
}

#[test]
fn text_and_counters_merge_as_automerge_merges_them_when_hubs_give_json() {
    let dir = scratch("text");
    let base = docs_dir(
        &dir,
        "base",
        &[("notes.automerge", &text_and_counter_base())],
    );
    // Each hub edits the text and bumps the counter, as JSON.
    let p = docs_dir(
        &dir,
        "p",
        &[(
            "notes.json",
            br#"{"notes": "pump at gate 4", "restarts": 11}"#,
        )],
    );
    let s = docs_dir(
        &dir,
        "s",
        &[(
            "notes.json",
            br#"{"notes": "old pump at gate", "restarts": 15}"#,
        )],
    );
    let ps = merge_dirs(Some(&base), &[(hub("p"), p.clone()), (hub("s"), s.clone())]).unwrap();
    let sp = merge_dirs(Some(&base), &[(hub("s"), s), (hub("p"), p)]).unwrap();
    let (name, doc) = ps.documents().next().unwrap();
    assert_eq!(name, "notes");
    // Both text edits kept, character by character; both increments added.
    assert_eq!(
        doc.to_json(),
        json!({"notes": "old pump at gate 4", "restarts": 16})
    );
    assert_eq!(ps.conflicts().count(), 0);
    assert_eq!(doc.save(), sp.documents().next().unwrap().1.save());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn whatever_is_no_document_is_refused_by_name() {
    let dir = scratch("refused");
    type Files<'a> = &'a [(&'a str, &'a [u8])];
    let cases: [(Files<'_>, &str); 5] = [
        (
            &[("a.json", b"{}"), ("a.automerge", b"")],
            "holds both NAME.json and NAME.automerge",
        ),
        (&[(".hidden.json", b"{}")], "not starting with '.'"),
        (
            &[("notes.txt", b"")],
            "expected NAME.json or NAME.automerge",
        ),
        (
            &[("a.automerge", b"not automerge")],
            "not a valid automerge document",
        ),
        (&[("a.json", b"{\"k\": \"\xff\"}")], "invalid UTF-8"),
    ];
    for (files, expected) in cases {
        let p = docs_dir(&dir, "p", files);
        let err = merge_dirs(None, &[(hub("p"), p)]).unwrap_err();
        assert!(err.to_string().contains(expected), "{expected}: {err}");
    }
    let p = docs_dir(&dir, "p", &[]);
    std::fs::create_dir(p.join("sub.json")).unwrap();
    let err = merge_dirs(None, &[(hub("p"), p)]).unwrap_err();
    assert!(err.to_string().contains("not a file"), "{err}");
    let err = merge_dirs(None, &[(hub("p"), dir.join("missing"))]).unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_json_document_is_refused_at_its_line_with_serdes_words_and_no_position_twice() {
    let dir = scratch("json-message");
    let p = docs_dir(&dir, "p", &[("a.json", b"{\n  \"k\": 1,\n")]);
    let err = merge_dirs(None, &[(hub("p"), p.clone())]).unwrap_err();
    let file = p.join("a.json").display().to_string();
    assert_eq!(
        err.to_string(),
        format!("{file}:3: invalid JSON at column 0: EOF while parsing a value")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_document_file_is_read_up_to_16_mib_and_refused_past_it() {
    let dir = scratch("size");
    // `{}` and spaces: 16 MiB exactly, then one byte more.
    let mut text = b"{}".to_vec();
    text.resize(16 << 20, b' ');
    let p = docs_dir(&dir, "p", &[("big.json", &text)]);
    let merged = merge_dirs(None, &[(hub("p"), p)]).unwrap();
    assert_eq!(merged.documents().next().unwrap().1.to_json(), json!({}));
    text.push(b' ');
    let p = docs_dir(&dir, "p", &[("big.json", &text)]);
    let err = merge_dirs(None, &[(hub("p"), p)]).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("big.json: not an application document: larger than 16 MiB"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------
// Jobs, through the library.

fn jobs_of(hub_name: &str, text: &str) -> JobSet {
    read_jobs(text.as_bytes(), "jobs.json", &hub(hub_name)).unwrap()
}

fn lost(jobs: &JobSet, order: &[&str]) -> Vec<String> {
    let order: Vec<ReplicaId> = order.iter().map(|n| hub(n)).collect();
    jobs.to_reschedule(&order)
        .map(|j| j.job_id().to_owned())
        .collect()
}

#[test]
fn a_job_is_lost_when_a_failed_hub_held_it_live_no_hub_ended_it_and_the_active_hub_lacks_it() {
    let mut jobs = jobs_of(
        "a",
        r#"[{"jobId": "ended-elsewhere", "status": "running"},
            {"jobId": "alive-now", "status": "scheduled"},
            {"jobId": "lost", "status": "queued"},
            {"jobId": "never-started", "status": "unknown"},
            {"jobId": "done", "status": "completed"}]"#,
    );
    jobs.merge(&jobs_of(
        "b",
        r#"[{"jobId": "ended-elsewhere", "status": "failed"},
            {"jobId": "lost-on-b", "status": "Running"}]"#,
    ));
    jobs.merge(&jobs_of(
        "c",
        r#"[{"jobId": "alive-now", "status": "running"},
            {"jobId": "only-on-c", "status": "queued"}]"#,
    ));
    // a failed over to b, b to c: both a and b failed.
    assert_eq!(lost(&jobs, &["a", "b", "c"]), ["lost", "lost-on-b"]);
    // c failed over to a: a holds its own jobs live.
    assert_eq!(lost(&jobs, &["c", "a"]), ["only-on-c"]);
    assert!(lost(&jobs, &["a"]).is_empty());
    assert!(lost(&jobs, &[]).is_empty());
}

#[test]
fn a_bom_json_lines_and_a_table_print_read_as_a_hub_gives_them() {
    let bom = "\u{feff}[{\"jobId\": \"j\", \"status\": \"Completed\"}]";
    assert_eq!(
        jobs_of("a", bom).get("j").unwrap().status(),
        JobStatus::Completed
    );
    let lines =
        "{\"jobId\":\"j\",\"status\":\"queued\"}\n{\"jobId\":\"k\",\"status\":\"canceled\"}\n";
    let read = jobs_of("a", lines);
    assert_eq!(read.get("k").unwrap().status(), JobStatus::Cancelled);
    // `-o table` output is no JSON: skipped and counted (the merge warns).
    let table = "JobId    Status\n-------  --------\nj        running\n";
    assert_eq!(jobs_of("a", table).jobs().count(), 0);
}

// ---------------------------------------------------------------------------
// File-level laws.

/// A generated job record of `j0`..`j3`.
fn record() -> impl Strategy<Value = Value> {
    const STATUSES: [&str; 9] = [
        "unknown",
        "queued",
        "enqueued",
        "scheduled",
        "Running",
        "completed",
        "failed",
        "canceled",
        "pending",
    ];
    (
        0..4usize,
        0..STATUSES.len(),
        prop::option::of(0i64..4),
        prop::option::of(0i64..4),
        prop::option::of(0u64..3),
        prop::option::of(prop_oneof![Just(json!("*")), Just(json!("tags.floor = 3"))]),
        prop::option::of(0u64..50),
    )
        .prop_map(|(id, status, start, end, stats, query, extra)| {
            let mut record = json!({"jobId": format!("j{id}"), "status": STATUSES[status]});
            let time = |h: i64| format!("2024-03-01T1{h}:00:00.5Z");
            if let Some(h) = start {
                record["startTime"] = json!(time(h));
            }
            if let Some(h) = end {
                record["endTime"] = json!(time(h));
            }
            if let Some(n) = stats {
                record["deviceJobStatistics"] =
                    json!({"deviceCount": 9, "succeededCount": n, "pendingCount": 3 - n});
            }
            if let Some(q) = query {
                record["queryCondition"] = q;
            }
            if let Some(n) = extra {
                record["progress"] = json!(n);
            }
            record
        })
}

/// A hub's list as `az` prints it (one pretty array) or as JSON lines.
fn render(records: &[Value], array: bool) -> String {
    if array {
        serde_json::to_string_pretty(&Value::Array(records.to_vec())).unwrap()
    } else {
        records.iter().map(|r| format!("{r}\n")).collect()
    }
}

/// The bytes of `jobs.jsonl` and `jobs.todo.jsonl` for these hubs.
fn outputs(hubs: &[(&str, String)], order: &[ReplicaId]) -> (String, String) {
    let mut set = JobSet::default();
    for (name, text) in hubs {
        set.merge(&jobs_of(name, text));
    }
    let lines = set.jobs().map(|j| format!("{}\n", j.to_json())).collect();
    let todo = set
        .to_reschedule(order)
        .map(|j| format!("{}\n", j.reschedule_json()))
        .collect();
    (lines, todo)
}

const HUBS: [&str; 3] = ["a", "b", "c"];

fn hub_lists() -> impl Strategy<Value = Vec<Vec<Value>>> {
    prop::collection::vec(prop::collection::vec(record(), 0..6), 3)
}

proptest! {
    #[test]
    fn any_order_duplication_and_layout_of_records_and_hubs_gives_the_same_bytes(
        lists in hub_lists(),
        seed in any::<u64>(),
        arrays in prop::collection::vec(any::<bool>(), 3),
    ) {
        let order: Vec<ReplicaId> = HUBS.iter().map(|h| hub(h)).collect();
        let canonical: Vec<(&str, String)> =
            HUBS.iter().zip(&lists).map(|(h, l)| (*h, render(l, true))).collect();
        let expected = outputs(&canonical, &order);
        // Each hub's records shuffled and some duplicated, in either layout;
        // the hubs merged in another order.
        let mut rng = seed;
        let mut next = |n: usize| {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((rng >> 33) as usize) % n.max(1)
        };
        let mut shuffled: Vec<(&str, String)> = Vec::new();
        for ((h, list), array) in HUBS.iter().zip(&lists).zip(&arrays) {
            let mut records = list.clone();
            for i in (1..records.len()).rev() {
                records.swap(i, next(i + 1));
            }
            if !list.is_empty() {
                let copy = list[next(list.len())].clone();
                records.insert(next(records.len() + 1), copy);
            }
            shuffled.push((*h, render(&records, *array)));
        }
        let rotate = next(3);
        shuffled.rotate_left(rotate);
        prop_assert_eq!(outputs(&shuffled, &order), expected);
    }

    #[test]
    fn hub_lists_merge_as_a_semilattice(lists in hub_lists()) {
        let sets: Vec<JobSet> = HUBS
            .iter()
            .zip(&lists)
            .map(|(h, l)| jobs_of(h, &render(l, false)))
            .collect();
        laws::semilattice(&[sets[0].clone(), sets[1].clone(), sets[2].clone()], |_| ())?;
        laws::round_trip(&sets[0])?;
    }

    #[test]
    fn application_documents_merge_to_the_same_bytes_for_any_order_of_hubs(
        values in prop::collection::vec(
            prop::collection::btree_map("[ab]", prop_oneof![Just(json!(1)), Just(json!([1, 2])), Just(json!({"x": true}))], 0..3),
            3,
        ),
        present in prop::collection::vec(any::<bool>(), 3),
        rotate in 0..3usize,
    ) {
        let dir = scratch("law");
        let base = docs_dir(&dir, "base", &[("d.json", br#"{"a": 1}"#)]);
        let mut hubs = Vec::new();
        for ((name, value), here) in HUBS.iter().zip(&values).zip(&present) {
            let text = serde_json::to_vec(value).unwrap();
            let files: Vec<(&str, &[u8])> = if *here { vec![("d.json", &text)] } else { Vec::new() };
            hubs.push((hub(name), docs_dir(&dir, name, &files)));
        }
        let bytes = |hubs: &[(ReplicaId, PathBuf)]| {
            let merged = merge_dirs(Some(&base), hubs).unwrap();
            let docs: Vec<(String, Vec<u8>)> =
                merged.documents().map(|(n, d)| (n.to_owned(), d.save())).collect();
            let conflicts: Vec<String> = merged
                .conflicts()
                .map(|(n, r, c)| format!("{n} {r} {c:?}"))
                .collect();
            (docs, conflicts)
        };
        let first = bytes(&hubs);
        hubs.rotate_left(rotate);
        hubs.reverse();
        prop_assert_eq!(bytes(&hubs), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The law of the `parse_jobs` fuzz target, on its seeds: an error on one
/// line, or `jobs.jsonl` lines (without `hubs` and `endings`) that read
/// back to the same lines.
#[test]
fn the_parse_jobs_law_holds_on_its_seeds() {
    let write = |jobs: &JobSet| -> String {
        jobs.jobs()
            .map(|job| {
                let mut line = job.to_json();
                let map = line.as_object_mut().unwrap();
                map.remove("hubs");
                map.remove("endings");
                format!("{line}\n")
            })
            .collect()
    };
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse_jobs");
    let mut read = 0;
    for entry in std::fs::read_dir(seeds).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let jobs = match read_jobs(bytes.as_slice(), "seed", &hub("primary")) {
            Ok(jobs) => jobs,
            Err(e) => {
                assert!(!e.to_string().contains('\n'), "{}: {e}", path.display());
                continue;
            }
        };
        read += 1;
        let mut twice = jobs.clone();
        twice.merge(&jobs);
        assert_eq!(twice, jobs, "{}", path.display());
        let written = write(&jobs);
        let again = read_jobs(written.as_bytes(), "rewritten", &hub("primary"))
            .unwrap_or_else(|e| panic!("{}: {e}\n{written}", path.display()));
        assert_eq!(write(&again), written, "{}", path.display());
    }
    assert!(read >= 8, "{read} seeds read");
}
