//! The `failback` binary end to end on the hand-written fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::listing;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/failback");

fn failback(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_failback"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

fn scratch(name: &str) -> PathBuf {
    crate::common::scratch("cli", name)
}

/// `merge` of the base fixture, `primary` as the primary hub and the
/// secondary fixture.
fn merge_primary(primary: &str, out: &Path) -> Output {
    merge(
        &fixture("base.jsonl"),
        &[
            ("primary", primary),
            ("secondary", &fixture("secondary.jsonl")),
        ],
        out,
    )
}

fn merge(base: &str, hubs: &[(&str, &str)], out: &Path) -> Output {
    let mut args = vec!["merge".to_owned(), "--base".into(), base.into()];
    for (name, file) in hubs {
        args.push("--hub".into());
        args.push(format!("{name}={file}"));
    }
    args.push("--out".into());
    args.push(out.display().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    failback(&refs)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn keys_in(file: &str) -> Vec<String> {
    let text = read(Path::new(file));
    let mut keys = Vec::new();
    for field in [
        "primaryKey",
        "secondaryKey",
        "primaryThumbprint",
        "secondaryThumbprint",
    ] {
        let needle = format!("\"{field}\":\"");
        for (i, _) in text.match_indices(&needle) {
            let rest = &text[i + needle.len()..];
            keys.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    keys
}

#[test]
fn plans_bring_every_hub_to_the_merged_state_and_a_second_merge_is_empty() {
    let dir = scratch("roundtrip");
    let out = dir.join("out");
    let hubs = [
        ("primary", fixture("primary.jsonl")),
        ("secondary", fixture("secondary.jsonl")),
    ];
    let hub_refs: Vec<(&str, &str)> = hubs.iter().map(|(n, f)| (*n, f.as_str())).collect();
    let run = merge(&fixture("base.jsonl"), &hub_refs, &out);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let merged = out.join("merged.jsonl");
    let mut applied = Vec::new();
    for (name, file) in &hubs {
        let after = dir.join(format!("{name}.after.jsonl"));
        let plan = out.join(format!("{name}.import.jsonl"));
        let run = failback(&[
            "apply",
            "--hub",
            file,
            "--plan",
            plan.to_str().unwrap(),
            "--out",
            after.to_str().unwrap(),
        ]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let errors = read(Path::new(&format!("{}.importErrors.log", after.display())));
        assert!(errors.is_empty(), "{errors}");
        let diff = failback(&["diff", after.to_str().unwrap(), merged.to_str().unwrap()]);
        assert!(
            diff.status.success(),
            "{}",
            String::from_utf8_lossy(&diff.stdout)
        );
        applied.push((*name, after.display().to_string()));
    }
    let again = dir.join("again");
    let refs: Vec<(&str, &str)> = applied.iter().map(|(n, f)| (*n, f.as_str())).collect();
    let run = merge(merged.to_str().unwrap(), &refs, &again);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for name in ["primary", "secondary"] {
        assert_eq!(
            read(&again.join(format!("{name}.import.jsonl"))),
            "",
            "{name}'s second plan"
        );
    }
    assert_eq!(read(&again.join("conflicts.jsonl")), "");
}

#[test]
fn the_fixture_merge_follows_every_policy() {
    let dir = scratch("policies");
    let out = dir.join("out");
    let run = merge_primary(&fixture("primary.jsonl"), &out);
    assert!(run.status.success());
    let merged = read(&out.join("merged.jsonl"));
    let line = |id: &str| -> serde_json::Value {
        let prefix = format!("{{\"id\":\"{id}\",");
        let text = merged
            .lines()
            .find(|l| l.starts_with(&prefix) && !l.contains("\"moduleId\""))
            .unwrap_or_else(|| panic!("{id} missing"));
        serde_json::from_str(text).unwrap()
    };
    assert_eq!(line("disable-me")["status"], "disabled");
    assert_eq!(line("disable-me")["tags"]["floor"], 3);
    assert_eq!(line("status-fight")["status"], "disabled");
    assert_eq!(line("status-fight")["statusReason"], "suspected theft");
    assert!(!merged.contains("\"delete-me\""));
    assert!(merged.contains("\"new-on-secondary\""));
    assert_eq!(line("made-on-both")["tags"]["by"], "secondary");
    assert_eq!(
        line("twin-leaves")["properties"]["desired"],
        serde_json::json!({"a": 10, "b": {"d": 3}})
    );
    assert_eq!(
        line("twin-leaves")["properties"]["reported"],
        serde_json::json!({"x": 1, "y": 2})
    );
    assert_eq!(
        line("leaf-null-auth")["properties"]["reported"]["empty"],
        serde_json::json!({})
    );
    assert_eq!(
        line("edge-gw")["futureField"],
        serde_json::json!({"kept": true})
    );
    assert!(merged.contains("\"moduleId\":\"$edgeAgent\""));
    let rotate = line("rotate-me")["authentication"]["symmetricKey"].clone();
    let secondary_keys = keys_in(&fixture("secondary.jsonl"));
    assert!(secondary_keys.contains(&rotate["primaryKey"].as_str().unwrap().to_owned()));
    assert!(secondary_keys.contains(&rotate["secondaryKey"].as_str().unwrap().to_owned()));
    let conflicts: Vec<serde_json::Value> = read(&out.join("conflicts.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rules: Vec<&str> = conflicts
        .iter()
        .map(|c| c["rule"].as_str().unwrap())
        .collect();
    for rule in ["disabled-wins", "delete-wins", "whole-value", "shape"] {
        assert!(rules.contains(&rule), "{rule} not in {rules:?}");
    }
    // Policy 7: created on both hubs, it is one device merged field by
    // field; nothing is dropped as a whole creation.
    assert!(!rules.contains(&"concurrent-create"), "{rules:?}");
    let made_on_both: Vec<(&str, &str, &str)> = conflicts
        .iter()
        .filter(|c| c["id"] == "made-on-both")
        .map(|c| {
            let field = c["path"].as_str().unwrap();
            (
                field,
                c["rule"].as_str().unwrap(),
                c["losers"][0]["hub"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        made_on_both,
        [
            ("authentication", "whole-value", "primary"),
            ("tags.by", "latest-wins", "primary")
        ]
    );
    let report: serde_json::Value = serde_json::from_str(&read(&out.join("report.json"))).unwrap();
    assert_eq!(report["outcomes"]["deleted"], 1);
    // The report's counts are what the files hold: devices merged, each
    // rule's conflicts, each hub's import lines by mode.
    let ids: std::collections::BTreeSet<String> = merged
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
        .collect();
    assert_eq!(report["devices_merged"], ids.len());
    // How many times each name occurs, as the report counts them.
    let counts = |names: Vec<String>| {
        let mut counts = serde_json::Map::new();
        for name in names {
            let n = counts.get(&name).and_then(|v| v.as_u64()).unwrap_or(0);
            counts.insert(name, (n + 1).into());
        }
        serde_json::Value::Object(counts)
    };
    let rule_names = rules.iter().map(|r| (*r).to_owned()).collect();
    assert_eq!(report["conflicts"], counts(rule_names));
    for hub in ["primary", "secondary"] {
        let modes = read(&out.join(format!("{hub}.import.jsonl")))
            .lines()
            .map(|l| {
                let line: serde_json::Value = serde_json::from_str(l).unwrap();
                line["importMode"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(report["plans"][hub], counts(modes), "{hub}");
    }
    // The secondary's change to `edge-gw`'s `$edgeAgent` is left out of its
    // plan (the deployment owns it), and the report says how many.
    let warnings: Vec<&str> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let left_out = "1 changes to edge system modules ($edgeAgent, $edgeHub) are not in the \
                    secondary plan";
    assert!(warnings[0].starts_with(left_out), "{warnings:?}");
    assert_eq!(
        report["skipped_lines"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        2
    );
}

#[test]
fn output_is_the_same_bytes_whatever_the_flag_order_and_run() {
    let dir = scratch("determinism");
    let (p, s) = (fixture("primary.jsonl"), fixture("secondary.jsonl"));
    let runs = [
        merge(
            &fixture("base.jsonl"),
            &[("primary", &p), ("secondary", &s)],
            &dir.join("a"),
        ),
        merge(
            &fixture("base.jsonl"),
            &[("secondary", &s), ("primary", &p)],
            &dir.join("b"),
        ),
        merge(
            &fixture("base.jsonl"),
            &[("primary", &p), ("secondary", &s)],
            &dir.join("c"),
        ),
    ];
    assert!(runs.iter().all(|r| r.status.success()));
    assert_eq!(runs[0].stdout.len(), runs[1].stdout.len());
    // Threads change nothing either; 0 runs on the calling thread, as 1.
    for jobs in ["0", "1", "2"] {
        let out = dir.join(format!("jobs-{jobs}"));
        let run = failback(&[
            "merge",
            "--base",
            &fixture("base.jsonl"),
            "--hub",
            &format!("primary={p}"),
            "--hub",
            &format!("secondary={s}"),
            "--jobs",
            jobs,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "--jobs {jobs}");
        for file in ["merged.jsonl", "primary.import.jsonl", "report.json"] {
            assert_eq!(
                read(&out.join(file)),
                read(&dir.join("a").join(file)),
                "{file} with --jobs {jobs}"
            );
        }
    }
    for file in [
        "merged.jsonl",
        "primary.import.jsonl",
        "secondary.import.jsonl",
        "conflicts.jsonl",
        "report.json",
    ] {
        let a = read(&dir.join("a").join(file));
        assert_eq!(
            a,
            read(&dir.join("b").join(file)),
            "{file} depends on flag order"
        );
        assert_eq!(
            a,
            read(&dir.join("c").join(file)),
            "{file} differs between runs"
        );
    }
}

#[test]
fn out_replaces_a_previous_merge_output_but_not_a_directory_holding_other_files() {
    let dir = scratch("out-guard");
    let hubs = [
        ("primary", fixture("primary.jsonl")),
        ("secondary", fixture("secondary.jsonl")),
    ];
    let hubs: Vec<(&str, &str)> = hubs.iter().map(|(n, f)| (*n, f.as_str())).collect();
    let fresh = dir.join("fresh");
    assert!(
        merge(&fixture("base.jsonl"), &hubs, &fresh)
            .status
            .success()
    );

    // A directory holding a file no merge writes, beside a name a merge
    // does write: refused whole, nothing in it touched or added.
    let other = dir.join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "keep me\n").unwrap();
    std::fs::write(other.join("merged.jsonl"), "old\n").unwrap();
    let run = merge(&fixture("base.jsonl"), &hubs, &other);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(other.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("notes.txt"), "{stderr}");
    assert!(stderr.contains("give --out a new directory"), "{stderr}");
    assert_eq!(listing(&other), ["merged.jsonl", "notes.txt"]);
    assert_eq!(read(&other.join("notes.txt")), "keep me\n");
    assert_eq!(read(&other.join("merged.jsonl")), "old\n");
    assert_eq!(
        listing(&dir),
        ["fresh", "other"],
        "temporary directory left"
    );

    // A previous merge's output, every name a merge can write (a hub's
    // plan no longer merged, application metadata, jobs): replaced whole.
    let previous = dir.join("previous");
    std::fs::create_dir(&previous).unwrap();
    for name in [
        "merged.jsonl",
        "conflicts.jsonl",
        "report.json",
        "jobs.jsonl",
        "jobs.todo.jsonl",
        "primary.import.jsonl",
        "west.import.jsonl",
    ] {
        std::fs::write(previous.join(name), "stale\n").unwrap();
    }
    std::fs::create_dir(previous.join("appmeta")).unwrap();
    std::fs::write(previous.join("appmeta").join("x.json"), "{}\n").unwrap();
    let run = merge(&fixture("base.jsonl"), &hubs, &previous);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(listing(&previous), listing(&fresh));
    for name in listing(&fresh) {
        assert_eq!(
            read(&previous.join(&name)),
            read(&fresh.join(&name)),
            "{name}"
        );
    }
}

#[test]
fn a_write_the_file_system_refuses_is_an_internal_error_exit_1() {
    let dir = scratch("out-unwritable");
    let file = dir.join("a-file");
    std::fs::write(&file, "x\n").unwrap();
    let out = file.join("out");
    let run = merge_primary(&fixture("primary.jsonl"), &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!(
            "failback: internal error: cannot write {}: ",
            out.display()
        )),
        "{stderr}"
    );
    assert_eq!(read(&file), "x\n");
    assert_eq!(listing(&dir), ["a-file"]);
}

#[test]
fn keys_appear_only_in_the_merged_file_and_the_plans() {
    let dir = scratch("secrets");
    let out = dir.join("out");
    let run = merge_primary(&fixture("primary.jsonl"), &out);
    assert!(run.status.success());
    let mut keys = Vec::new();
    for file in ["base.jsonl", "primary.jsonl", "secondary.jsonl"] {
        keys.extend(keys_in(&fixture(file)));
    }
    assert!(keys.len() > 10);
    let shown = [
        read(&out.join("conflicts.jsonl")),
        read(&out.join("report.json")),
        String::from_utf8_lossy(&run.stdout).into_owned(),
        String::from_utf8_lossy(&run.stderr).into_owned(),
    ];
    for key in &keys {
        for text in &shown {
            assert!(!text.contains(key.as_str()), "a key leaked");
        }
    }
    assert!(shown[0].contains("sha256:"));
}

#[test]
fn bad_input_exits_2_naming_file_and_line_and_leaves_no_output() {
    let dir = scratch("bad");
    let good = std::fs::read_to_string(fixture("primary.jsonl")).unwrap();
    let cases = [
        (
            "truncated",
            format!("{good}{{\"id\":\"x\",\"status\":\"ena\n"),
        ),
        (
            "bad-id",
            format!("{good}{{\"id\":\"bad/id\",\"status\":\"enabled\"}}\n"),
        ),
        (
            "key-dollar",
            format!("{good}{{\"id\":\"k\",\"status\":\"enabled\",\"tags\":{{\"a$b\":1}}}}\n"),
        ),
        (
            "key-dot",
            format!("{good}{{\"id\":\"k\",\"status\":\"enabled\",\"tags\":{{\"a.b\":1}}}}\n"),
        ),
        (
            "depth-11",
            format!(
                "{good}{{\"id\":\"deep\",\"status\":\"enabled\",\"tags\":{}}}\n",
                (0..11).fold("1".to_owned(), |inner, i| format!("{{\"k{i}\":{inner}}}"))
            ),
        ),
    ];
    let lines = good.lines().count() + 1;
    for (name, text) in cases {
        let file = dir.join(format!("{name}.jsonl"));
        std::fs::write(&file, text).unwrap();
        let out = dir.join(format!("out-{name}"));
        let run = merge_primary(file.to_str().unwrap(), &out);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{name}.jsonl:{lines}")),
            "{name}: {stderr}"
        );
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{name}: one line: {stderr}"
        );
        assert!(!out.exists(), "{name}: output left behind");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{name}: temporary directory left behind"
        );
    }
}

#[test]
fn a_device_given_twice_or_a_module_without_its_device_is_named_by_its_lines() {
    let dir = scratch("grouping");
    let cases = [
        (
            "dup",
            "{\"id\":\"b\",\"status\":\"enabled\"}\n{\"id\":\"a\",\"status\":\"enabled\"}\n{\"id\":\"b\",\"status\":\"disabled\"}\n",
            ":3: device \"b\": duplicate device line, first on line 1",
        ),
        (
            "orphan",
            "{\"id\":\"a\",\"status\":\"enabled\"}\n{\"id\":\"b\",\"moduleId\":\"m\"}\n",
            ":2: device \"b\" module \"m\": module line without a line for its device",
        ),
    ];
    for (name, text, error) in cases {
        let file = dir.join(format!("{name}.jsonl"));
        std::fs::write(&file, text).unwrap();
        let out = dir.join(format!("out-{name}"));
        let run = merge_primary(file.to_str().unwrap(), &out);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(
            stderr.trim(),
            format!("failback: {}{error}", file.display()),
            "{name}"
        );
        assert!(!out.exists(), "{name}: output left behind");
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = scratch("usage");
    let p = fixture("primary.jsonl");
    let no_base = failback(&[
        "merge",
        "--hub",
        &format!("primary={p}"),
        "--hub",
        &format!("secondary={p}"),
        "--out",
        dir.join("o").to_str().unwrap(),
    ]);
    assert_eq!(no_base.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_base.stderr).contains("--base is required"));
    let unnamed_order = merge(
        &fixture("base.jsonl"),
        &[("west", &p), ("east", &p)],
        &dir.join("o"),
    );
    assert_eq!(unnamed_order.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unnamed_order.stderr).contains("--active-order"));
    let one_hub = merge(&fixture("base.jsonl"), &[("primary", &p)], &dir.join("o"));
    assert_eq!(one_hub.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&one_hub.stderr)
            .starts_with("failback: a merge needs at least two hubs, 1 given"),
        "{}",
        String::from_utf8_lossy(&one_hub.stderr)
    );
    // Three hubs are fine; a name given twice, or the base's, is not.
    let s = fixture("secondary.jsonl");
    let three = failback(&[
        "merge",
        "--base",
        &fixture("base.jsonl"),
        "--hub",
        &format!("primary={p}"),
        "--hub",
        &format!("secondary={s}"),
        "--hub",
        &format!("tertiary={s}"),
        "--active-order",
        "primary,tertiary,secondary",
        "--out",
        dir.join("three").to_str().unwrap(),
    ]);
    assert!(
        three.status.success(),
        "{}",
        String::from_utf8_lossy(&three.stderr)
    );
    for (hubs, error) in [
        (
            [("primary", p.as_str()), ("primary", s.as_str())],
            "failback: hub primary is given twice\n",
        ),
        (
            [("primary", p.as_str()), ("base", s.as_str())],
            "failback: the hub name \"base\" is reserved for the common base\n",
        ),
    ] {
        let run = merge(&fixture("base.jsonl"), &hubs, &dir.join("o"));
        assert_eq!(run.status.code(), Some(2));
        assert_eq!(String::from_utf8_lossy(&run.stderr), error);
    }
    assert!(!dir.join("o").exists());
}

/// Twin files carry no time for tags: a hub's tags take the newest time
/// its file carries (policy 5), so the hub with the later times wins.
#[test]
fn untimed_twin_fields_take_their_hubs_newest_time() {
    let dir = scratch("twin-newest");
    let twin = |site: &str, hour: u32| {
        format!(
            "{{\"deviceId\":\"d1\",\"status\":\"enabled\",\"tags\":{{\"site\":\"{site}\"}},\"properties\":{{\"desired\":{{\"a\":1,\"$metadata\":{{\"a\":{{\"$lastUpdated\":\"2024-03-01T{hour}:00:00Z\"}}}}}}}}}}\n"
        )
    };
    for (primary_hour, secondary_hour, winner) in [(11, 10, "lyon"), (10, 11, "paris")] {
        let primary = dir.join("primary.jsonl");
        let secondary = dir.join("secondary.jsonl");
        std::fs::write(&primary, twin("lyon", primary_hour)).unwrap();
        std::fs::write(&secondary, twin("paris", secondary_hour)).unwrap();
        let out = dir.join(format!("out-{winner}"));
        let run = failback(&[
            "merge",
            "--hub",
            &format!("primary={}", primary.display()),
            "--hub",
            &format!("secondary={}", secondary.display()),
            "--allow-new-keys",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let merged = read(&out.join("merged.jsonl"));
        assert!(
            merged.contains(&format!("\"site\":\"{winner}\"")),
            "{winner}: {merged}"
        );
    }
}

#[test]
fn twin_files_merge_leaf_by_leaf_by_their_own_times_without_a_base() {
    let dir = scratch("twins");
    let out = dir.join("out");
    let twins = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/twins");
    let merge = |extra: Option<&str>| {
        let mut args = vec![
            "merge".to_owned(),
            "--hub".to_owned(),
            format!("primary={twins}/primary.jsonl"),
            "--hub".to_owned(),
            format!("secondary={twins}/secondary.jsonl"),
            "--out".to_owned(),
            out.to_str().unwrap().to_owned(),
        ];
        args.extend(extra.map(str::to_owned));
        failback(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // valve-2's status must change on the secondary, and twin files carry
    // no keys: an identity line without keys would give it new ones.
    let run = merge(None);
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains(r#"secondary: device "valve-2" (updateIfMatchETag)"#),
        "{stderr}"
    );
    assert!(!out.exists());
    let run = merge(Some("--allow-new-keys"));
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // The identity write is guarded by the twin's `deviceEtag`.
    let plan = read(&out.join("secondary.import.jsonl"));
    assert!(plan.contains(r#""id":"valve-2","eTag":"MjI=""#), "{plan}");
    let merged = read(&out.join("merged.jsonl"));
    let thermo: serde_json::Value = serde_json::from_str(merged.lines().next().unwrap()).unwrap();
    assert_eq!(
        thermo["properties"]["desired"],
        serde_json::json!({"mode": "eco", "targetTemp": 23})
    );
    assert_eq!(
        thermo["properties"]["reported"],
        serde_json::json!({"temp": 20.5})
    );
    let valve: serde_json::Value = serde_json::from_str(merged.lines().nth(1).unwrap()).unwrap();
    assert_eq!(
        valve["status"], "disabled",
        "no base: the enable cannot be shown to have seen the disable"
    );
    assert_eq!(valve["properties"]["desired"]["open"], true);
    let conflicts = read(&out.join("conflicts.jsonl"));
    assert!(
        conflicts.contains("\"time\":\"2024-03-01T10:05:00.000Z\""),
        "{conflicts}"
    );

    // A twin time two hours ahead of this machine's clock is refused.
    let future = dir.join("future.jsonl");
    let far = chrono_free_future_line();
    std::fs::write(&future, far).unwrap();
    let run = failback(&[
        "merge",
        "--hub",
        &format!("primary={twins}/primary.jsonl"),
        "--hub",
        &format!("secondary={}", future.display()),
        "--out",
        dir.join("o2").to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("ahead of the local clock"));
    assert!(!dir.join("o2").exists());
}

/// A twin line whose desired property was updated in the year 2999.
fn chrono_free_future_line() -> String {
    concat!(
        r#"{"deviceId":"thermo-7","etag":"AAAAAAAAAAU=","status":"enabled","version":2,"tags":{},"#,
        r#""properties":{"desired":{"x":1,"$metadata":{"$lastUpdated":"2999-01-01T00:00:00Z","#,
        r#""x":{"$lastUpdated":"2999-01-01T00:00:00Z"}},"$version":2},"reported":{}}}"#,
        "\n"
    )
    .to_owned()
}

#[test]
fn a_shard_merges_its_devices_and_a_bad_shard_exits_2() {
    let dir = scratch("shard");
    let (base, primary, secondary) = (
        fixture("base.jsonl"),
        format!("primary={}", fixture("primary.jsonl")),
        format!("secondary={}", fixture("secondary.jsonl")),
    );
    let out = dir.join("out");
    let args = |shard: &str, out: &Path| {
        let out = out.display().to_string();
        failback(&[
            "merge", "--base", &base, "--hub", &primary, "--hub", &secondary, "--out", &out,
            "--shard", shard,
        ])
    };
    let run = args("1/2", &out);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains("(shard 1/2)"));
    assert!(read(&out.join("report.json")).contains("\"shard\": \"1/2\""));
    for bad in ["0/2", "3/2", "half"] {
        let bad_out = dir.join(format!("bad-{}", bad.replace('/', "-")));
        let run = args(bad, &bad_out);
        assert_eq!(run.status.code(), Some(2), "--shard {bad}");
        assert!(!bad_out.exists());
    }
}

/// One registry identity as `az iot hub device-identity show` prints it.
fn identity(id: &str, generation: &str, status: &str, keys: (&str, &str)) -> String {
    format!(
        r#"{{"deviceId":"{id}","generationId":"{generation}","etag":"{generation}{status}","status":"{status}","authentication":{{"type":"sas","symmetricKey":{{"primaryKey":"{}","secondaryKey":"{}"}}}}}}"#,
        keys.0, keys.1
    )
}

/// A hub's re-created device (its `generationId` differs from the base's)
/// inherits nothing of the old incarnation. Twin files carry no keys: a
/// device of the base's incarnation takes the base's keys, but the new
/// incarnation's keys are unknown (the old ones would not let it
/// connect), so the plan that would write it without them is refused.
#[test]
fn a_recreated_device_never_takes_the_old_incarnations_keys() {
    let dir = scratch("recreated-keys");
    let old = ("b2xkLXByaW1hcnkta2V5LTE=", "b2xkLXNlY29uZC1rZXktMQ==");
    let write = |name: &str, line: String| {
        let path = dir.join(name);
        std::fs::write(&path, format!("{line}\n")).unwrap();
        path.display().to_string()
    };
    let twin = |generation: &str, site: &str| {
        format!(
            r#"{{"deviceId":"d1","etag":"ZXRhZw==","generationId":"{generation}","status":"enabled","authenticationType":"sas","tags":{{"site":"{site}"}},"properties":{{"desired":{{}},"reported":{{}}}}}}"#
        )
    };
    let base = write("base.jsonl", identity("d1", "100", "enabled", old));
    let secondary = write("secondary.jsonl", twin("100", "paris"));
    let same = write("primary-same.jsonl", twin("100", "lyon"));
    let out = dir.join("out-same");
    let run = merge(
        &base,
        &[("primary", &same), ("secondary", &secondary)],
        &out,
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let merged: serde_json::Value =
        serde_json::from_str(read(&out.join("merged.jsonl")).trim()).unwrap();
    assert_eq!(
        merged["authentication"]["symmetricKey"]["primaryKey"],
        old.0
    );
    // Re-created on the primary.
    let renewed = write("primary-renewed.jsonl", twin("101", "lyon"));
    let out = dir.join("out-renewed");
    let run = merge(
        &base,
        &[("primary", &renewed), ("secondary", &secondary)],
        &out,
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("without its keys"), "{stderr}");
    assert!(stderr.contains(r#"secondary: device "d1""#), "{stderr}");
    assert!(!out.exists());
}

/// Identity files give `generationId`: a hub whose `generationId` differs
/// from the base's re-created the device, and the other hub's concurrent
/// update of the old one loses (policy 2). A device the base lacks,
/// created on both hubs, is one device: disabled wins (policy 7).
#[test]
fn identity_files_tell_a_recreated_device_by_its_generation_id() {
    let dir = scratch("generations");
    let old = ("b2xkLXByaW1hcnkta2V5LTE=", "b2xkLXNlY29uZC1rZXktMQ==");
    let new = ("bmV3LXByaW1hcnkta2V5LTI=", "bmV3LXNlY29uZC1rZXktMg==");
    let p3 = ("cDMtcHJpbWFyeS1rZXktMzM=", "cDMtc2Vjb25kLWtleS0zMzM=");
    let s3 = ("czMtcHJpbWFyeS1rZXktMzM=", "czMtc2Vjb25kLWtleS0zMzM=");
    let write = |name: &str, lines: &[String]| {
        let path = dir.join(name);
        std::fs::write(&path, format!("[{}]\n", lines.join(",\n"))).unwrap();
        path.display().to_string()
    };
    let base = write(
        "base.json",
        &[
            identity("d1", "100", "enabled", old),
            identity("d2", "200", "enabled", old),
        ],
    );
    let primary = write(
        "primary.json",
        &[
            identity("d1", "101", "enabled", new),
            identity("d2", "200", "enabled", old),
            identity("d3", "300", "disabled", p3),
        ],
    );
    let secondary = write(
        "secondary.json",
        &[
            identity("d1", "100", "disabled", old),
            identity("d2", "200", "disabled", old),
            identity("d3", "301", "enabled", s3),
        ],
    );
    let out = dir.join("out");
    let run = merge(
        &base,
        &[("primary", &primary), ("secondary", &secondary)],
        &out,
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let merged: Vec<serde_json::Value> = read(&out.join("merged.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let device = |id: &str| merged.iter().find(|d| d["id"] == id).unwrap().clone();
    // Re-created on the primary: its device, not the old one disabled.
    assert_eq!(device("d1")["status"], "enabled");
    assert_eq!(
        device("d1")["authentication"]["symmetricKey"]["primaryKey"],
        new.0
    );
    // Same generation: an update, and disabled wins.
    assert_eq!(device("d2")["status"], "disabled");
    // Created on both: one device, disabled wins, keys whole from the later.
    assert_eq!(device("d3")["status"], "disabled");
    assert_eq!(
        device("d3")["authentication"]["symmetricKey"]["secondaryKey"],
        s3.1
    );
    let conflicts: Vec<serde_json::Value> = read(&out.join("conflicts.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |id: &str| -> Vec<(String, String, String)> {
        conflicts
            .iter()
            .filter(|c| c["id"] == id)
            .map(|c| {
                let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
                (s(&c["path"]), s(&c["rule"]), s(&c["losers"][0]["hub"]))
            })
            .collect()
    };
    let triple = |p: &str, r: &str, h: &str| (p.to_owned(), r.to_owned(), h.to_owned());
    assert_eq!(of("d1"), [triple("status", "delete-wins", "secondary")]);
    assert_eq!(
        of("d3"),
        [
            triple("status", "disabled-wins", "secondary"),
            triple("authentication", "whole-value", "primary")
        ]
    );
}

/// Empty exports (a hub wiped, or a drill of no devices) merge to empty
/// files, and the report still names each hub's plan, with no lines: every
/// `<hub>.import.jsonl` written has its entry.
#[test]
fn a_merge_of_no_devices_reports_each_hubs_empty_plan() {
    let dir = scratch("no-devices");
    for name in ["base.jsonl", "p.jsonl", "s.jsonl"] {
        std::fs::write(dir.join(name), "").unwrap();
    }
    let path = |name: &str| dir.join(name).display().to_string();
    let out = dir.join("out");
    let run = merge(
        &path("base.jsonl"),
        &[
            ("primary", &path("p.jsonl")),
            ("secondary", &path("s.jsonl")),
        ],
        &out,
    );
    assert!(run.status.success(), "{run:?}");
    for file in ["merged.jsonl", "conflicts.jsonl", "primary.import.jsonl"] {
        assert_eq!(read(&out.join(file)), "", "{file}");
    }
    let report: serde_json::Value = serde_json::from_str(&read(&out.join("report.json"))).unwrap();
    assert_eq!(report["devices_merged"], 0);
    assert_eq!(
        report["plans"],
        serde_json::json!({"primary": {}, "secondary": {}})
    );
}

/// An export made without keys shows a SAS device as `"type":"sas"` with
/// `null` keys. Read as written, the merge took that for the primary
/// changing its keys to nothing and planned both hubs to import the device
/// so, and IoT Hub would have made new keys for it on both: the device
/// locked out, exit 0. Such keys are keys not shown: the primary is given
/// the keys the others know, the secondary (holding them) is left alone;
/// where no input knows them, the merge is refused.
#[test]
fn sas_keys_an_export_left_out_are_filled_never_written_as_null() {
    let dir = scratch("sas-null-keys");
    let (k1, k2) = (
        "cHJpbWFyeS1rZXktMDEyMzQ1Njc4OWFi",
        "c2Vjb25kYXJ5LWtleS0wMTIzNDU2Nzg5",
    );
    let line = |etag: &str, status: &str, keys: Option<(&str, &str)>, fan: u8| {
        let keys = keys.map_or(
            r#""primaryKey":null,"secondaryKey":null"#.to_owned(),
            |(p, s)| format!(r#""primaryKey":"{p}","secondaryKey":"{s}""#),
        );
        format!(
            r#"{{"id":"d1","eTag":"{etag}","status":"{status}","authentication":{{"symmetricKey":{{{keys}}},"x509Thumbprint":{{"primaryThumbprint":null,"secondaryThumbprint":null}},"type":"sas"}},"twinETag":"t{etag}","tags":{{}},"properties":{{"desired":{{"fan":{fan}}},"reported":{{}}}}}}"#
        ) + "\n"
    };
    let path = |name: &str| dir.join(name).display().to_string();
    std::fs::write(
        dir.join("base.jsonl"),
        line("e1", "enabled", Some((k1, k2)), 1),
    )
    .unwrap();
    std::fs::write(dir.join("p.jsonl"), line("e2", "enabled", None, 1)).unwrap();
    std::fs::write(
        dir.join("s.jsonl"),
        line("e3", "disabled", Some((k1, k2)), 2),
    )
    .unwrap();
    let out = dir.join("out");
    let run = merge(
        &path("base.jsonl"),
        &[
            ("primary", &path("p.jsonl")),
            ("secondary", &path("s.jsonl")),
        ],
        &out,
    );
    assert!(run.status.success(), "{run:?}");
    let plan = read(&out.join("primary.import.jsonl"));
    let plan: serde_json::Value = serde_json::from_str(plan.trim()).unwrap();
    assert_eq!(plan["status"], "disabled");
    assert_eq!(plan["authentication"]["symmetricKey"]["primaryKey"], k1);
    assert_eq!(plan["authentication"]["symmetricKey"]["secondaryKey"], k2);
    assert_eq!(read(&out.join("secondary.import.jsonl")), "");
    assert!(read(&out.join("merged.jsonl")).contains(k1));

    // No input knows the keys: refused, nothing written.
    std::fs::write(dir.join("base.jsonl"), line("e1", "enabled", None, 1)).unwrap();
    std::fs::write(dir.join("s.jsonl"), line("e3", "disabled", None, 2)).unwrap();
    let refused = dir.join("refused");
    let run = merge(
        &path("base.jsonl"),
        &[
            ("primary", &path("p.jsonl")),
            ("secondary", &path("s.jsonl")),
        ],
        &refused,
    );
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("without its keys"), "{stderr}");
    assert!(!refused.exists());
}
