//! Crash safety and privacy of every command's outputs, on the binary.
//!
//! Each command is run once uninterrupted to record its output bytes, then
//! once for every filesystem step N with `FAILBACK_CRASH_AT=N` (the binary
//! aborts right after step N, running no destructor): the output location
//! must then hold the previous complete output or the new complete one,
//! never a mix, and running the command again must give exactly the bytes
//! of the uninterrupted run and leave no temporary file behind. A timed
//! SIGKILL on a larger merge checks the same without the failpoint. Two
//! tests pin which step is which, for `ingest` and for `merge`: what the
//! files hold after each, and that there is none after the last. The
//! modes test checks that files that can hold keys are 0600 in 0700
//! directories.
#![cfg(unix)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::listing;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

fn scratch(name: &str) -> PathBuf {
    crate::common::scratch("crash", name)
}

fn command(dir: &Path, args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_failback"));
    c.args(args)
        .current_dir(dir)
        .env_remove("FAILBACK_CRASH_AT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Runs to the end, which must not be a crash.
fn run(dir: &Path, args: &[String]) {
    let out = command(dir, args).output().unwrap();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{args:?}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_crashing_at(dir: &Path, args: &[String], step: u64) -> ExitStatus {
    command(dir, args)
        .env("FAILBACK_CRASH_AT", step.to_string())
        .output()
        .unwrap()
        .status
}

/// The files at `names` in `dir` (a directory's files under `name/`),
/// absent ones left out.
fn observe(dir: &Path, names: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for name in names {
        let path = dir.join(name);
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                let entry = entry.unwrap();
                let key = format!("{name}/{}", entry.file_name().to_string_lossy());
                files.insert(key, std::fs::read(entry.path()).unwrap());
            }
        } else if let Ok(bytes) = std::fs::read(&path) {
            files.insert((*name).to_owned(), bytes);
        }
    }
    files
}

fn names(files: &BTreeMap<String, Vec<u8>>) -> Vec<&String> {
    files.keys().collect()
}

fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// One command under test.
struct Case {
    name: &'static str,
    /// Prepares the working directory before the command (the previous
    /// outputs, the command's own inputs).
    setup: Box<dyn Fn(&Path)>,
    args: Vec<String>,
    /// Where the outputs are, relative to the working directory.
    outputs: Vec<&'static str>,
    /// A file whose absence beside the others is allowed mid-run (apply's
    /// error log, which marks a complete apply).
    marker: Option<&'static str>,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// Checks `case` crashing after every step; returns how many steps it has.
fn crash_everywhere(case: &Case) -> u64 {
    let template = scratch(&format!("{}-template", case.name));
    (case.setup)(&template);
    let before = observe(&template, &case.outputs);
    let good_dir = scratch(&format!("{}-good", case.name));
    copy_tree(&template, &good_dir);
    run(&good_dir, &case.args);
    let good = observe(&good_dir, &case.outputs);
    assert!(!good.is_empty(), "{}: no output", case.name);
    assert_ne!(
        good, before,
        "{}: the run must change the outputs",
        case.name
    );
    let clean = listing(&good_dir);
    let mut allowed = vec![before.clone(), good.clone()];
    if let Some(marker) = case.marker {
        for set in [&before, &good] {
            let mut without = set.clone();
            without.remove(marker);
            allowed.push(without);
        }
    }
    let dir = scratch(&format!("{}-crash", case.name));
    let mut step = 1;
    loop {
        copy_tree(&template, &dir);
        let status = run_crashing_at(&dir, &case.args, step);
        if status.signal().is_none() {
            // Fewer steps than `step`: the run went to the end.
            assert_eq!(observe(&dir, &case.outputs), good, "{}", case.name);
            break;
        }
        let seen = observe(&dir, &case.outputs);
        assert!(
            allowed.contains(&seen),
            "{}: killed after step {step}: a mix of outputs: {:?} (previous {:?}, new {:?})",
            case.name,
            names(&seen),
            names(&before),
            names(&good)
        );
        run(&dir, &case.args);
        assert_eq!(
            observe(&dir, &case.outputs),
            good,
            "{}: rerun after a kill at step {step}",
            case.name
        );
        assert_eq!(listing(&dir), clean, "{}: left behind", case.name);
        step += 1;
    }
    for d in [&template, &good_dir, &dir] {
        let _ = std::fs::remove_dir_all(d);
    }
    step - 1
}

fn merge_args(hubs: [&str; 2], out: &str) -> Vec<String> {
    strings(&[
        "merge",
        "--base",
        &fixture("failback/base.jsonl"),
        "--hub",
        &format!("{}={}", hubs[0], fixture("failback/primary.jsonl")),
        "--hub",
        &format!("{}={}", hubs[1], fixture("failback/secondary.jsonl")),
        "--active-order",
        &format!("{},{}", hubs[0], hubs[1]),
        "--out",
        out,
        "--jobs",
        "1",
    ])
}

fn ingest_args(state: &str, events: &str) -> Vec<String> {
    strings(&[
        "ingest",
        "--hub",
        "primary",
        "--state",
        state,
        &fixture(&format!("events/{events}")),
    ])
}

fn drill_args(seed: u64) -> Vec<String> {
    strings(&[
        "drill",
        "--seed",
        &seed.to_string(),
        "--devices",
        "12",
        "--cycles",
        "1",
        "--threads",
        "1",
        "--report",
        "report",
    ])
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "merge-fresh",
            setup: Box::new(|_| {}),
            args: merge_args(["primary", "secondary"], "out"),
            outputs: vec!["out"],
            marker: None,
        },
        Case {
            // The previous output has other plan files: a mix would show.
            name: "merge-replace",
            setup: Box::new(|dir| run(dir, &merge_args(["a", "b"], "out"))),
            args: merge_args(["primary", "secondary"], "out"),
            outputs: vec!["out"],
            marker: None,
        },
        Case {
            name: "apply",
            setup: Box::new(|dir| {
                run(dir, &merge_args(["primary", "secondary"], "plans"));
                // The previous apply failed lines, so its error log is
                // not the new one's (empty): a log beside the hub file of
                // the other apply would show as a mix.
                run(
                    dir,
                    &strings(&[
                        "apply",
                        "--hub",
                        &fixture("failback/secondary.jsonl"),
                        "--plan",
                        "plans/primary.import.jsonl",
                        "--out",
                        "after.jsonl",
                    ]),
                );
            }),
            args: strings(&[
                "apply",
                "--hub",
                &fixture("failback/primary.jsonl"),
                "--plan",
                "plans/primary.import.jsonl",
                "--out",
                "after.jsonl",
            ]),
            outputs: vec!["after.jsonl", "after.jsonl.importErrors.log"],
            marker: Some("after.jsonl.importErrors.log"),
        },
        Case {
            name: "ingest",
            setup: Box::new(|dir| run(dir, &ingest_args("state.json", "missing-create.jsonl"))),
            args: ingest_args("state.json", "primary-events.jsonl"),
            outputs: vec!["state.json"],
            marker: None,
        },
        Case {
            name: "replica-apply",
            setup: Box::new(|dir| {
                run(dir, &ingest_args("state.json", "missing-create.jsonl"));
                run(dir, &ingest_args("delta.json", "primary-events.jsonl"));
            }),
            args: strings(&["replica", "apply", "--state", "state.json", "delta.json"]),
            outputs: vec!["state.json"],
            marker: None,
        },
        Case {
            name: "drill-report",
            setup: Box::new(|dir| run(dir, &drill_args(2))),
            args: drill_args(3),
            outputs: vec!["report"],
            marker: None,
        },
    ]
}

#[test]
fn a_kill_after_any_step_leaves_the_old_or_the_new_outputs_and_a_rerun_the_new() {
    for case in cases() {
        let steps = crash_everywhere(&case);
        eprintln!("{}: {steps} steps", case.name);
        assert!(steps >= 4, "{}: only {steps} steps", case.name);
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn files_that_can_hold_keys_are_0600_in_0700_directories() {
    let dir = scratch("modes");
    run(&dir, &merge_args(["primary", "secondary"], "out"));
    run(
        &dir,
        &strings(&[
            "apply",
            "--hub",
            &fixture("failback/primary.jsonl"),
            "--plan",
            "out/primary.import.jsonl",
            "--out",
            "after.jsonl",
        ]),
    );
    run(&dir, &ingest_args("state.json", "missing-create.jsonl"));
    run(
        &dir,
        &strings(&["replica", "apply", "--state", "copy.json", "state.json"]),
    );
    run(&dir, &drill_args(1));
    for sub in ["out", "report"] {
        assert_eq!(mode(&dir.join(sub)), 0o700, "{sub}");
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    assert_eq!(
        listing(&dir.join("out")),
        [
            "conflicts.jsonl",
            "merged.jsonl",
            "primary.import.jsonl",
            "report.json",
            "secondary.import.jsonl"
        ]
    );
    for file in [
        "after.jsonl",
        "after.jsonl.importErrors.log",
        "state.json",
        "copy.json",
    ] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    let report = std::fs::read_to_string(dir.join("out/report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(
        report["secret_files"],
        serde_json::json!([
            "merged.jsonl",
            "primary.import.jsonl",
            "secondary.import.jsonl"
        ])
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A seeded xorshift, for the kill times.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// The export line of device `i` of a generated fleet, with keys.
fn fleet_line(i: usize, site: &str, fan: usize) -> String {
    let keys = r#""authentication":{"symmetricKey":{"primaryKey":"cHJpbWFyeS1rZXktMDA1QUJDREVGR0hJSktMTU5PUFFSU1Q=","secondaryKey":"c2Vjb25kYXJ5LWtleS0w1QUJDREVGR0hJSktMTU5PUFFSU1Q"},"x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"type":"sas"}"#;
    format!(
        r#"{{"id":"dev-{i:06}","eTag":"ZTE=","status":"enabled",{keys},"twinETag":"AAAAAAAAAAE=","tags":{{"site":"{site}"}},"properties":{{"desired":{{"fan":{fan}}},"reported":{{}}}}}}"#
    )
}

/// Writes a base and two diverged hub exports of `n` devices, sorted by id.
fn fleet(dir: &Path, n: usize) {
    let line = fleet_line;
    let mut files = [String::new(), String::new(), String::new()];
    for i in 0..n {
        files[0] += &line(i, "lyon", 1);
        files[1] += &line(i, if i % 3 == 0 { "paris" } else { "lyon" }, 1);
        files[2] += &line(i, "lyon", if i % 5 == 0 { 2 } else { 1 });
        for f in &mut files {
            f.push('\n');
        }
    }
    for (name, text) in ["base", "primary", "secondary"].iter().zip(files) {
        std::fs::write(dir.join(format!("{name}.jsonl")), text).unwrap();
    }
}

fn fleet_merge(hubs: [&str; 2]) -> Vec<String> {
    strings(&[
        "merge",
        "--base",
        "base.jsonl",
        "--hub",
        &format!("{}=primary.jsonl", hubs[0]),
        "--hub",
        &format!("{}=secondary.jsonl", hubs[1]),
        "--active-order",
        &format!("{},{}", hubs[0], hubs[1]),
        "--out",
        "out",
    ])
}

#[test]
fn a_sigkill_at_a_random_time_during_a_larger_merge_leaves_old_or_new() {
    let seed = 0x5eed_c4a5_u64;
    let mut rng = Rng(seed);
    let template = scratch("timed-template");
    fleet(&template, 20_000);
    run(&template, &fleet_merge(["a", "b"]));
    let before = observe(&template, &["out"]);
    let good_dir = scratch("timed-good");
    copy_tree(&template, &good_dir);
    let start = Instant::now();
    run(&good_dir, &fleet_merge(["primary", "secondary"]));
    let took = start.elapsed().as_millis() as u64;
    eprintln!("uninterrupted merge: {took} ms");
    let good = observe(&good_dir, &["out"]);
    let clean = listing(&good_dir);
    let dir = scratch("timed");
    for round in 0..4 {
        copy_tree(&template, &dir);
        let mut child = command(&dir, &fleet_merge(["primary", "secondary"]))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let wait = rng.below(took + took / 4);
        std::thread::sleep(Duration::from_millis(wait));
        let _ = child.kill();
        let _ = child.wait();
        let seen = observe(&dir, &["out"]);
        assert!(
            seen == before || seen == good,
            "seed {seed:#x}, round {round}: killed after {wait} ms: a mix: {:?}",
            names(&seen)
        );
        run(&dir, &fleet_merge(["primary", "secondary"]));
        assert!(
            observe(&dir, &["out"]) == good,
            "seed {seed:#x}, round {round}"
        );
        assert_eq!(listing(&dir), clean, "seed {seed:#x}, round {round}");
    }
    for d in [&template, &good_dir, &dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// `drill --report` naming a directory that holds other files is refused
/// as bad usage (exit 2, one line naming it), the directory left as it
/// was, as `merge --out` and `c2d --out` are.
#[test]
fn a_drill_report_directory_holding_other_files_is_refused() {
    let dir = scratch("report-taken");
    let report = dir.join("report");
    std::fs::create_dir_all(&report).unwrap();
    std::fs::write(report.join("notes.txt"), "keep me\n").unwrap();
    let out = command(&dir, &drill_args(1)).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("notes.txt"), "{stderr}");
    assert_eq!(listing(&report), ["notes.txt"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The file at `name` in `dir`, if there is one.
fn read_opt(dir: &Path, name: &str) -> Option<Vec<u8>> {
    std::fs::read(dir.join(name)).ok()
}

#[test]
fn a_state_file_is_written_synced_renamed_then_its_directory_synced() {
    let template = scratch("steps-template");
    run(
        &template,
        &ingest_args("state.json", "missing-create.jsonl"),
    );
    let args = ingest_args("state.json", "primary-events.jsonl");
    let old = read_opt(&template, "state.json").unwrap();
    let good_dir = scratch("steps-good");
    copy_tree(&template, &good_dir);
    run(&good_dir, &args);
    let new = read_opt(&good_dir, "state.json").unwrap();
    assert_ne!(old, new);
    let tmp = ".state.json.failback-tmp";
    // After each step: what `state.json` and the temporary file hold.
    let steps: [(&[u8], Option<&[u8]>); 5] = [
        (&old, Some(b"")),  // the temporary file created
        (&old, Some(&new)), // written whole
        (&old, Some(&new)), // synced
        (&new, None),       // renamed into place
        (&new, None),       // the directory synced
    ];
    let dir = scratch("steps-crash");
    for (step, (state, temporary)) in (1..).zip(steps) {
        copy_tree(&template, &dir);
        let status = run_crashing_at(&dir, &args, step);
        assert_eq!(status.signal(), Some(6), "step {step}: {status:?}");
        assert_eq!(
            read_opt(&dir, "state.json").as_deref(),
            Some(state),
            "step {step}"
        );
        assert_eq!(read_opt(&dir, tmp).as_deref(), temporary, "step {step}");
    }
    // There is no sixth step: the run goes to the end.
    copy_tree(&template, &dir);
    assert_eq!(run_crashing_at(&dir, &args, 6).code(), Some(0));
    assert_eq!(read_opt(&dir, "state.json").unwrap(), new);
    for d in [&template, &good_dir, &dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Writes a base and two hub exports of three devices, sorted by id (the
/// merge streams them, in one pass), which give every file of a merge's
/// results lines: device 0's site changed on both hubs (a conflict, and a
/// line in the plan of the hub that lost it), device 1's fan on the
/// primary (a line in the secondary's plan), device 2's on the secondary
/// (a line in the primary's).
fn three_devices(dir: &Path) {
    let files = [
        [("lyon", 1), ("lyon", 1), ("lyon", 1)],
        [("paris", 1), ("lyon", 2), ("lyon", 1)],
        [("rome", 1), ("lyon", 1), ("lyon", 3)],
    ];
    for (name, devices) in ["base", "primary", "secondary"].iter().zip(files) {
        let lines: Vec<String> = devices
            .iter()
            .enumerate()
            .map(|(i, (site, fan))| fleet_line(i, site, *fan))
            .collect();
        std::fs::write(dir.join(format!("{name}.jsonl")), lines.join("\n") + "\n").unwrap();
    }
}

/// The files in `dir` by name; `None` when there is no such directory.
fn files_in(dir: &Path) -> Option<BTreeMap<String, Vec<u8>>> {
    dir.is_dir().then(|| {
        listing(dir)
            .into_iter()
            .map(|name| {
                let bytes = std::fs::read(dir.join(&name)).unwrap();
                (name, bytes)
            })
            .collect()
    })
}

/// A filesystem step of a merge, as `FAILBACK_CRASH_AT` counts them.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// The temporary directory `.out.failback-tmp` created.
    TmpDir,
    /// A file created in it, empty.
    Created(&'static str),
    /// A file's bytes written whole: its buffer flushed.
    Written(&'static str),
    /// A file `fsync`ed: nothing new to see.
    Synced(&'static str),
    /// A directory `fsync`ed (the temporary one, then out's parent):
    /// nothing new to see.
    DirSynced,
    /// The temporary directory renamed to `out` (there was none).
    Renamed,
}

/// A merge into a new `out` makes its files in a temporary directory,
/// appends each device's lines to them (buffered: nothing reaches the
/// files until they are finished), then finishes each file (flushed whole,
/// then synced), writes `report.json` whole, syncs the directory, renames
/// it into place and syncs its parent. Killed after each step, the files
/// hold what the steps before gave them; there is no step after the last.
#[test]
fn a_merge_writes_and_syncs_each_file_then_renames_its_directory_into_place() {
    use Step::*;
    const TMP: &str = ".out.failback-tmp";
    let [plan_p, plan_s] = ["primary.import.jsonl", "secondary.import.jsonl"];
    let [merged, conflicts, report] = ["merged.jsonl", "conflicts.jsonl", "report.json"];
    let steps = [
        TmpDir,
        // The plans (by hub name), then the merged devices and conflicts.
        Created(plan_p),
        Created(plan_s),
        Created(merged),
        Created(conflicts),
        // Every device merged and appended: each file is finished.
        Written(merged),
        Synced(merged),
        Written(conflicts),
        Synced(conflicts),
        Written(plan_p),
        Synced(plan_p),
        Written(plan_s),
        Synced(plan_s),
        // The report, counted from what was written, written whole.
        Created(report),
        Written(report),
        Synced(report),
        // The directory put in place.
        DirSynced,
        Renamed,
        DirSynced,
    ];
    let template = scratch("merge-steps-template");
    three_devices(&template);
    let mut args = fleet_merge(["primary", "secondary"]);
    args.extend(strings(&["--jobs", "1"]));
    let good_dir = scratch("merge-steps-good");
    copy_tree(&template, &good_dir);
    run(&good_dir, &args);
    let good = files_in(&good_dir.join("out")).unwrap();
    assert_eq!(
        names(&good),
        [conflicts, merged, plan_p, report, plan_s],
        "{good:?}"
    );
    // Each file has bytes, so that its being written shows.
    for (name, bytes) in &good {
        assert!(!bytes.is_empty(), "{name} is empty");
    }
    // What the steps so far gave: the directory's files, and where the
    // directory is.
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut at: Option<&str> = None;
    let dir = scratch("merge-steps-crash");
    for (n, step) in (1..).zip(steps) {
        match step {
            TmpDir => at = Some(TMP),
            Created(name) => assert!(files.insert(name.to_owned(), Vec::new()).is_none()),
            Written(name) => {
                files.insert(name.to_owned(), good[name].clone());
            }
            // A file is synced once whole, in the list as on disk.
            Synced(name) => assert_eq!(files.get(name), good.get(name), "{name}"),
            Renamed => at = Some("out"),
            DirSynced => {}
        }
        copy_tree(&template, &dir);
        let status = run_crashing_at(&dir, &args, n);
        assert_eq!(status.signal(), Some(6), "step {n} ({step:?}): {status:?}");
        for d in [TMP, "out"] {
            assert_eq!(
                files_in(&dir.join(d)),
                (at == Some(d)).then(|| files.clone()),
                "{d} after step {n} ({step:?})"
            );
        }
    }
    assert_eq!(files, good);
    // There is no step after the last: the run goes to the end.
    let last = steps.len() as u64;
    copy_tree(&template, &dir);
    assert_eq!(run_crashing_at(&dir, &args, last + 1).code(), Some(0));
    assert_eq!(observe(&dir, &["out"]), observe(&good_dir, &["out"]));
    for d in [&template, &good_dir, &dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}
