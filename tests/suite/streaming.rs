//! The streaming path writes the same bytes as the indexed path, for any
//! number of jobs, and falls back to the index when an input is not sorted.

#[path = "../../benches/fleet/generate.rs"]
mod generate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use failback::ReplicaId;
use failback::job::{JobError, MergeJob, MergeReport, Reading, run_merge};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn scratch(name: &str) -> PathBuf {
    crate::common::scratch("streaming", name)
}

fn job(base: Option<&Path>, hubs: &[(&str, &Path)], out: &Path) -> MergeJob {
    MergeJob {
        base: base.map(Path::to_owned),
        hubs: hubs
            .iter()
            .map(|(n, p)| (ReplicaId::new(n).unwrap(), p.to_path_buf()))
            .collect(),
        // Twin files carry no keys: these tests are about times and streaming.
        allow_new_keys: true,
        ..MergeJob::new(out, 1_800_000_000_000)
    }
}

/// Every output file, by name.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn run(
    job: &MergeJob,
    jobs: usize,
    reading: Reading,
    out: &Path,
) -> (MergeReport, BTreeMap<String, Vec<u8>>) {
    let job = MergeJob {
        jobs,
        reading,
        out: out.to_owned(),
        ..job.clone()
    };
    let report = run_merge(&job).unwrap_or_else(|e| panic!("{e}"));
    (report, files(out))
}

/// Runs `job` streamed and indexed with 1 to 3 jobs; asserts the same
/// bytes every time, and returns them with whether the first run streamed.
fn same_every_way(job: &MergeJob, dir: &Path) -> (bool, BTreeMap<String, Vec<u8>>) {
    let (first, expected) = run(job, 1, Reading::Auto, &dir.join("auto-1"));
    for (jobs, reading) in [
        (2, Reading::Auto),
        (3, Reading::Auto),
        (1, Reading::Indexed),
        (2, Reading::Indexed),
    ] {
        let out = dir.join(format!("{reading:?}-{jobs}"));
        let (report, got) = run(job, jobs, reading, &out);
        assert_eq!(report.streamed, first.streamed && reading == Reading::Auto);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>()
        );
        for (name, bytes) in &expected {
            assert!(
                got[name] == *bytes,
                "{name} differs with {reading:?}, --jobs {jobs}"
            );
        }
    }
    (first.streamed, expected)
}

/// The lines of `from` sorted by device id (warning lines first), as a
/// hub exports them.
fn sorted_copy(from: &Path, to: &Path) {
    let text = std::fs::read_to_string(from).unwrap();
    let (json, warnings): (Vec<&str>, Vec<&str>) =
        text.lines().partition(|l| l.trim_start().starts_with('{'));
    let mut json: Vec<(String, &str)> = json
        .into_iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let id = v.get("id").or_else(|| v.get("deviceId")).unwrap();
            (id.as_str().unwrap().to_owned(), l)
        })
        .collect();
    json.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<&str> = warnings;
    out.extend(json.iter().map(|(_, l)| *l));
    std::fs::write(to, out.join("\n") + "\n").unwrap();
}

/// The fixtures' outputs without `report.json`, which names the files.
fn without_report(mut files: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    files.remove("report.json");
    files
}

#[test]
fn the_fixtures_give_the_same_bytes_streamed_from_sorted_copies() {
    let dir = scratch("fixtures");
    let names = ["base", "primary", "secondary"];
    let original: Vec<PathBuf> = names
        .iter()
        .map(|n| Path::new(FIXTURES).join(format!("failback/{n}.jsonl")))
        .collect();
    let sorted: Vec<PathBuf> = names
        .iter()
        .map(|n| dir.join(format!("{n}.jsonl")))
        .collect();
    for (from, to) in original.iter().zip(&sorted) {
        sorted_copy(from, to);
    }
    let unsorted_job = job(
        Some(&original[0]),
        &[("primary", &original[1]), ("secondary", &original[2])],
        &dir.join("o"),
    );
    let (streamed, unsorted) = same_every_way(&unsorted_job, &dir.join("unsorted"));
    assert!(!streamed, "the fixtures are not sorted by id");
    let sorted_job = job(
        Some(&sorted[0]),
        &[("primary", &sorted[1]), ("secondary", &sorted[2])],
        &dir.join("o"),
    );
    let (streamed, from_sorted) = same_every_way(&sorted_job, &dir.join("sorted"));
    assert!(streamed, "sorted copies stream");
    assert_eq!(without_report(from_sorted), without_report(unsorted));
}

#[test]
fn twin_files_stream_too() {
    let dir = scratch("twins");
    let twins = Path::new(FIXTURES).join("twins");
    let (p, s) = (twins.join("primary.jsonl"), twins.join("secondary.jsonl"));
    let mut twin_job = job(None, &[("primary", &p), ("secondary", &s)], &dir.join("o"));
    twin_job.now_ms = 1_900_000_000_000;
    let (streamed, files) = same_every_way(&twin_job, &dir);
    assert!(streamed);
    assert!(!files["merged.jsonl"].is_empty());
}

/// A generated fleet of `n` devices: modules (some before their device's
/// line), keys, nested twins, edits on both sides, deletes and creates.
fn fleet(dir: &Path, n: usize) -> [PathBuf; 3] {
    let written = generate::write(dir, n, 8).unwrap();
    assert_eq!(written.base_devices, n);
    assert!(written.bytes.iter().all(|b| *b > 1_000 * n as u64 / 2));
    ["base", "primary", "secondary"].map(|f| dir.join(format!("{f}.jsonl")))
}

fn fleet_job(files: &[PathBuf; 3], out: &Path) -> MergeJob {
    job(
        Some(&files[0]),
        &[("primary", &files[1]), ("secondary", &files[2])],
        out,
    )
}

#[test]
fn a_generated_fleet_gives_the_same_bytes_every_way_and_in_any_line_order() {
    let dir = scratch("fleet");
    let files = fleet(&dir.join("in"), 1_500);
    let (streamed, expected) = same_every_way(&fleet_job(&files, &dir.join("o")), &dir);
    assert!(streamed, "the generated fleet is sorted");
    let merged = String::from_utf8(expected["merged.jsonl"].clone()).unwrap();
    assert!(merged.contains("\"moduleId\":\"$edgeAgent\""));
    assert!(!expected["conflicts.jsonl"].is_empty());
    // The same fleet with every file's lines in reverse: nothing is sorted,
    // modules are far from their devices' lines; the bytes stay.
    let reversed: Vec<PathBuf> = files
        .iter()
        .enumerate()
        .map(|(n, f)| {
            let text = std::fs::read_to_string(f).unwrap();
            let mut lines: Vec<&str> = text.lines().collect();
            lines.reverse();
            let to = dir.join(format!("reversed-{n}.jsonl"));
            std::fs::write(&to, lines.join("\n") + "\n").unwrap();
            to
        })
        .collect();
    let reversed = [
        reversed[0].clone(),
        reversed[1].clone(),
        reversed[2].clone(),
    ];
    let out = dir.join("reversed-out");
    let (report, got) = run(&fleet_job(&reversed, &out), 2, Reading::Auto, &out);
    assert!(!report.streamed, "reversed files fall back to the index");
    assert_eq!(without_report(got), without_report(expected));
}

#[test]
fn an_input_sorted_but_for_its_last_device_falls_back_and_loses_nothing() {
    let dir = scratch("tail");
    let files = fleet(&dir.join("in"), 400);
    let (_, expected) = run(
        &fleet_job(&files, &dir.join("o")),
        1,
        Reading::Indexed,
        &dir.join("o"),
    );
    // Move the first device of the secondary (and its modules) to the end.
    let text = std::fs::read_to_string(&files[2]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let first = lines.iter().position(|l| l.starts_with('{')).unwrap();
    let id_of = |l: &str| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].clone();
    let end = first
        + lines[first..]
            .iter()
            .take_while(|l| id_of(l) == id_of(lines[first]))
            .count();
    let mut moved: Vec<&str> = lines[..first].to_vec();
    moved.extend(&lines[end..]);
    moved.extend(&lines[first..end]);
    let tail = dir.join("secondary-tail.jsonl");
    std::fs::write(&tail, moved.join("\n") + "\n").unwrap();
    let inputs = [files[0].clone(), files[1].clone(), tail];
    for jobs in [1, 2] {
        let out = dir.join(format!("tail-{jobs}"));
        let (report, got) = run(&fleet_job(&inputs, &out), jobs, Reading::Auto, &out);
        assert!(!report.streamed);
        assert_eq!(without_report(got), without_report(expected.clone()));
    }
}

fn error_of(job: &MergeJob, jobs: usize, reading: Reading) -> String {
    let job = MergeJob {
        jobs,
        reading,
        ..job.clone()
    };
    match run_merge(&job) {
        Err(e @ JobError::Read(_)) => e.to_string(),
        Err(e) => panic!("not a read error: {e}"),
        Ok(_) => panic!("a bad input merged"),
    }
}

#[test]
fn a_bad_line_late_in_a_sorted_file_leaves_nothing_and_reads_as_on_the_index() {
    let dir = scratch("late");
    let files = fleet(&dir.join("in"), 600);
    let text = std::fs::read_to_string(&files[1]).unwrap();
    let lines = text.lines().count();
    // The last line goes bad; then a duplicate of a device's line.
    let bad = dir.join("primary-bad.jsonl");
    std::fs::write(
        &bad,
        format!("{text}{{\"id\":\"zz-last\",\"status\":\"enabled\",\"tags\":{{\"a.b\":1}}}}\n"),
    )
    .unwrap();
    let mut duplicated: Vec<&str> = text.lines().collect();
    let at = duplicated.len() - 3;
    let line = duplicated[at];
    duplicated.insert(at, line);
    let dup = dir.join("primary-dup.jsonl");
    std::fs::write(&dup, duplicated.join("\n") + "\n").unwrap();
    let out = dir.join("out");
    // An earlier merge's results stay untouched by a failed one.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("merged.jsonl"), "earlier").unwrap();
    for (file, needle) in [
        (&bad, format!(":{}:", lines + 1)),
        (&dup, "first".to_owned()),
    ] {
        let inputs = [files[0].clone(), file.clone(), files[2].clone()];
        let job = fleet_job(&inputs, &out);
        let expected = error_of(&job, 1, Reading::Indexed);
        assert!(expected.contains(&needle), "{expected}");
        for jobs in [1, 2] {
            assert_eq!(error_of(&job, jobs, Reading::Auto), expected);
        }
        assert_eq!(std::fs::read(out.join("merged.jsonl")).unwrap(), b"earlier");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "a temporary directory was left");
    }
}

/// The lines of a file, sorted: what concatenating shards must give back.
fn line_set(bytes: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

#[test]
fn shards_concatenate_into_the_whole_merge() {
    let dir = scratch("shards");
    let files = fleet(&dir.join("in"), 600);
    let whole_job = fleet_job(&files, &dir.join("whole"));
    let (whole, expected) = run(&whole_job, 2, Reading::Auto, &dir.join("whole"));
    assert_eq!(whole.shard, None);
    let n = 3;
    let mut concatenated: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut devices = 0;
    for k in 1..=n {
        let sharded = MergeJob {
            shard: Some(failback::job::Shard::new(k, n).unwrap()),
            ..whole_job.clone()
        };
        // Streamed and indexed shards agree, as whole merges do.
        let out = dir.join(format!("shard-{k}"));
        let (report, got) = run(&sharded, 2, Reading::Auto, &out);
        let (_, indexed) = run(&sharded, 1, Reading::Indexed, &dir.join(format!("ix-{k}")));
        assert_eq!(got, indexed, "shard {k}/{n}");
        assert_eq!(report.shard.as_deref(), Some(format!("{k}/{n}").as_str()));
        assert!(report.devices_merged > 0 && report.devices_merged < whole.devices_merged);
        devices += report.devices_merged;
        for (name, bytes) in got {
            if name != "report.json" {
                concatenated.entry(name).or_default().extend(bytes);
            }
        }
    }
    assert_eq!(devices, whole.devices_merged);
    for (name, bytes) in &expected {
        if name != "report.json" {
            assert_eq!(line_set(&concatenated[name]), line_set(bytes), "{name}");
        }
    }
}

/// Inputs are read each in its own format, found per file: lines alike
/// byte for byte in two inputs are parsed once only when the two share a
/// format. Here the base is a twin file and hub `a` an identity file, and
/// device `d2`'s line is the same text in both; but a twin's `etag` is its
/// twin's, an identity's the identity's. Read as the base's twin, hub `a`
/// would seem to hold no identity etag, and its plan would guard the
/// change with an empty one.
#[test]
fn lines_alike_in_inputs_of_two_formats_are_read_in_each_ones_format() {
    let dir = scratch("formats-alike");
    let d2 = r#"{"deviceId":"d2","etag":"AAAAAAAAAAE=","status":"enabled"}"#;
    let twin_d1 = r#"{"deviceId":"d1","etag":"AAAAAAAAAAE=","status":"enabled","properties":{"desired":{"fan":1},"reported":{}}}"#;
    let identity_d1 = r#"{"deviceId":"d1","etag":"\"Mg==\"","status":"enabled","authentication":{"type":"sas","symmetricKey":{"primaryKey":null,"secondaryKey":null}}}"#;
    let merge = |name: &str, a_d2: &str| {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let write = |file: &str, lines: [&str; 2]| {
            let path = sub.join(file);
            std::fs::write(&path, lines.join("\n") + "\n").unwrap();
            path
        };
        let base = write("base.jsonl", [twin_d1, d2]);
        let a = write("a.jsonl", [identity_d1, a_d2]);
        // Hub b disabled d2: hub a's plan carries that over.
        let b = write(
            "b.jsonl",
            [
                twin_d1,
                r#"{"deviceId":"d2","etag":"AAAAAAAAAAI=","status":"disabled"}"#,
            ],
        );
        let mut merge = job(Some(&base), &[("a", &a), ("b", &b)], &sub.join("o"));
        // The identity file has no times of its own.
        merge
            .as_of
            .insert(ReplicaId::new("a").unwrap(), 1_700_000_000_000);
        let (_, files) = same_every_way(&merge, &sub);
        without_report(files)
    };
    let alike = merge("alike", d2);
    let plan = String::from_utf8(alike["a.import.jsonl"].clone()).unwrap();
    assert_eq!(
        plan,
        "{\"id\":\"d2\",\"eTag\":\"AAAAAAAAAAE=\",\"importMode\":\"updateIfMatchETag\",\
         \"status\":\"disabled\",\"tags\":{},\"properties\":{\"desired\":{},\"reported\":{}}}\n"
    );
    // The same line in other bytes (a space after a comma) means the
    // same, and is never shared: the results are the same.
    let spaced = merge("spaced", &d2.replacen(',', ", ", 1));
    assert_eq!(alike, spaced);
}
