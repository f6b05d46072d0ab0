//! `failback merge` at fleet scale, beside the yardsticks it must be
//! measured against: serde_json typed parsing of the same files, and one
//! automerge document per device.
//!
//! ```sh
//! cargo bench --bench fleet                              # 10k and 100k devices, 3 runs each
//! cargo bench --bench fleet -- --sizes 10k,100k,1m       # add a million (several minutes)
//! cargo bench --bench fleet -- --test                    # CI: 1,000 devices, once
//! ```
//!
//! Run without `--bench` (as `cargo test --all-targets` does) and without
//! `--sizes`, it measures the tiny fleet of `--test`.
//!
//! `FAILBACK_BENCH_SIZES` may stand for `--sizes`. What holds a whole
//! fleet in memory (the in-memory serde baseline: 3.3 GB at 100k devices;
//! the merge phase alone, which merges fleets read whole; automerge) runs
//! up to `--in-memory-max` and `--automerge-max` devices (100k each by
//! default), lest a million devices exhaust the machine. Each measurement runs
//! in a child process of this binary (`--child TASK`), so its peak RSS is
//! its own; runs of different tasks are interleaved, so a machine shared
//! with other work slows them alike. The table gives medians and ratios
//! of medians from the same run. Generated files are kept in `--dir`
//! (default: the system temporary directory) and reused.

#[path = "../common/mod.rs"]
mod common;

mod automerge_model;
mod baseline;
mod generate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use failback::ReplicaId;
use failback::doc::{DeviceSnapshot, Policies};
use failback::format::{InputFile, read_input};
use failback::job::{MergeJob, Reading, run_merge};
use failback::reconcile::{HubSnapshots, HubTiming, default_order, hub_clocks, resolve_fleet};

#[global_allocator]
static ALLOC: common::Counting = common::Counting;

/// The seed of every generated fleet.
const SEED: u64 = 8;
/// Bumped whenever the generator changes, so old files are not reused.
const GENERATION: u32 = 1;

struct Options {
    sizes: Vec<usize>,
    runs: usize,
    dir: PathBuf,
    automerge_max: usize,
    in_memory_max: usize,
}

fn parse_size(text: &str) -> usize {
    let lower = text.trim().to_ascii_lowercase();
    let (digits, scale) = match lower.strip_suffix('m') {
        Some(d) => (d, 1_000_000),
        None => match lower.strip_suffix('k') {
            Some(d) => (d, 1_000),
            None => (lower.as_str(), 1),
        },
    };
    digits
        .parse::<usize>()
        .expect("a size such as 10k, 100k, 1m")
        * scale
}

fn options(args: &[String]) -> Options {
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    // `cargo test --all-targets` runs this binary with no arguments, and
    // `cargo bench -- --test` with `--test`: both get the tiny fleet.
    // `cargo bench` passes `--bench`.
    let test = args.iter().any(|a| a == "--test")
        || !args.iter().any(|a| a == "--bench" || a == "--sizes");
    let sizes = value("--sizes")
        .or_else(|| std::env::var("FAILBACK_BENCH_SIZES").ok())
        .map(|s| s.split(',').map(parse_size).collect())
        .unwrap_or_else(|| {
            if test {
                vec![1_000]
            } else {
                vec![10_000, 100_000]
            }
        });
    Options {
        sizes,
        runs: value("--runs").map_or(if test { 1 } else { 3 }, |r| r.parse().expect("--runs N")),
        dir: value("--dir").map_or_else(
            || std::env::temp_dir().join("failback-fleet"),
            PathBuf::from,
        ),
        automerge_max: value("--automerge-max").map_or(100_000, |s| parse_size(&s)),
        in_memory_max: value("--in-memory-max").map_or(100_000, |s| parse_size(&s)),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1..]);
        return;
    }
    common::stop_counting();
    let opts = options(&args);
    let mut table = Vec::new();
    for &n in &opts.sizes {
        let dir = opts.dir.join(format!("{n}-g{GENERATION}"));
        ensure_fleet(&dir, n);
        let mut tasks: Vec<Vec<String>> = Vec::new();
        if n <= opts.in_memory_max {
            tasks.push(vec!["serde-memory".into()]);
        }
        tasks.extend([
            vec!["serde-stream".into()],
            vec!["e2e".into(), "2".into()],
            vec!["e2e".into(), "1".into()],
            vec!["indexed".into(), "2".into()],
        ]);
        if n <= opts.in_memory_max {
            tasks.push(vec!["merge-phase".into(), "1".into()]);
            tasks.push(vec!["merge-phase".into(), "2".into()]);
        }
        if n <= opts.automerge_max {
            tasks.push(vec!["automerge".into()]);
        }
        let mut results: BTreeMap<String, Vec<BTreeMap<String, f64>>> = BTreeMap::new();
        for run in 0..opts.runs {
            for task in &tasks {
                let name = task.join(" ");
                eprintln!("{n} devices, run {}/{}: {name}", run + 1, opts.runs);
                results.entry(name).or_default().push(spawn(&dir, n, task));
            }
        }
        let bytes: u64 = ["base", "primary", "secondary"]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.join(format!("{f}.jsonl"))).ok())
            .map(|m| m.len())
            .sum();
        table.push((n, bytes, results));
    }
    print_table(&table, opts.runs);
}

fn ensure_fleet(dir: &Path, n: usize) {
    let done = dir.join("complete");
    if done.exists() {
        return;
    }
    eprintln!("generating a fleet of {n} devices in {}", dir.display());
    let start = Instant::now();
    let written = generate::write(dir, n, SEED).expect("the fleet is written");
    std::fs::write(&done, format!("{}\n", written.base_devices)).expect("marker written");
    eprintln!(
        "  {:.0} MB in {:.1} s",
        written.bytes.iter().sum::<u64>() as f64 / 1e6,
        start.elapsed().as_secs_f64()
    );
}

fn spawn(dir: &Path, n: usize, task: &[String]) -> BTreeMap<String, f64> {
    let exe = std::env::current_exe().expect("the bench binary");
    let out = Command::new(exe)
        .arg("--child")
        .args(task)
        .arg(dir)
        .arg(n.to_string())
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "{task:?} failed: {}{}",
                stdout,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect()
}

/// CPU seconds (user and system) this process used so far, from
/// `/proc/self/stat` (0 where it is absent).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 here;
    // the clock ticks 100 times a second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// `VmHWM` and `VmRSS` of this process, in bytes (0 where /proc is absent).
fn rss() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb * 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn files(dir: &Path) -> [PathBuf; 3] {
    ["base", "primary", "secondary"].map(|f| dir.join(format!("{f}.jsonl")))
}

fn merge_job(dir: &Path, out: &Path, jobs: usize, reading: Reading) -> MergeJob {
    let [base, primary, secondary] = files(dir);
    MergeJob {
        base: Some(base),
        hubs: vec![
            (ReplicaId::new("primary").expect("valid"), primary),
            (ReplicaId::new("secondary").expect("valid"), secondary),
        ],
        jobs,
        reading,
        ..MergeJob::new(out, 1_800_000_000_000)
    }
}

fn snapshots(path: &Path) -> BTreeMap<String, DeviceSnapshot> {
    match read_input(path, None).expect("a valid export") {
        InputFile::Export(export) => export
            .devices
            .into_iter()
            .map(|(id, d)| (id, d.snapshot))
            .collect(),
        InputFile::Twin(_) | InputFile::Identity(_) => panic!("the bench writes exports"),
    }
}

/// One measurement, in this (child) process; prints `RESULT key=value...`.
fn child(args: &[String]) {
    let task = args[0].as_str();
    let (dir, n) = (
        PathBuf::from(&args[args.len() - 2]),
        args[args.len() - 1].parse::<usize>().expect("devices"),
    );
    if task != "automerge" {
        common::stop_counting();
    }
    let [base, primary, secondary] = files(&dir);
    let inputs = [base.as_path(), primary.as_path(), secondary.as_path()];
    let (_, rss_start) = rss();
    let scratch = dir.join(format!("out-{}", std::process::id()));
    let cpu_start = cpu_secs();
    let start = Instant::now();
    let mut extra = String::new();
    match task {
        "serde-memory" => {
            baseline::in_memory(&inputs, &scratch).expect("baseline runs");
        }
        "serde-stream" => {
            baseline::streaming(&inputs, &scratch).expect("baseline runs");
        }
        "e2e" | "indexed" => {
            let jobs = args[1].parse().expect("jobs");
            let reading = if task == "e2e" {
                Reading::Auto
            } else {
                Reading::Indexed
            };
            let job = merge_job(&dir, &scratch, jobs, reading);
            let report = run_merge(&job).expect("the merge runs");
            assert_eq!(report.streamed, reading == Reading::Auto, "the path taken");
            extra = format!("merged={}", report.devices_merged);
        }
        "merge-phase" => {
            let jobs = args[1].parse().expect("jobs");
            let base = snapshots(&base);
            let hubs: Vec<HubSnapshots> = [("primary", &primary), ("secondary", &secondary)]
                .into_iter()
                .map(|(name, path)| HubSnapshots {
                    hub: ReplicaId::new(name).expect("valid"),
                    devices: snapshots(path),
                    times: BTreeMap::new(),
                })
                .collect();
            let names: Vec<ReplicaId> = hubs.iter().map(|h| h.hub.clone()).collect();
            let timings: Vec<HubTiming> = names
                .iter()
                .map(|hub| HubTiming {
                    hub: hub.clone(),
                    real_times: false,
                    as_of: None,
                    newest: None,
                })
                .collect();
            let order = default_order(&names);
            let stamps = hub_clocks(&timings, order.as_deref(), 0, 300_000)
                .expect("stamps")
                .stamps();
            let policies = Policies::default();
            let start = Instant::now();
            let cpu_start = cpu_secs();
            let outcomes =
                resolve_fleet(Some(&base), &hubs, &stamps, &policies, jobs).expect("merge");
            let secs = start.elapsed().as_secs_f64();
            let cpu = cpu_secs() - cpu_start;
            println!(
                "RESULT secs={secs} cpu={cpu} cores={} merged={}",
                cpu / secs,
                outcomes.len()
            );
            return;
        }
        "automerge" => {
            common::reset_peak();
            let figures = automerge_model::run(&inputs, common::live_bytes).expect("model runs");
            let (peak, _) = rss();
            println!(
                "RESULT build={} merge={} heap_per_device={} rss_per_device={} merged={}",
                figures.build.as_secs_f64(),
                figures.merge.as_secs_f64(),
                figures.heap_per_device,
                (peak - rss_start) / figures.devices.max(1) as f64,
                figures.devices,
            );
            return;
        }
        other => panic!("unknown task {other}"),
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu_start;
    let (peak, _) = rss();
    let _ = std::fs::remove_dir_all(&scratch);
    let _ = std::fs::remove_file(&scratch);
    println!(
        "RESULT secs={secs} cpu={cpu} cores={} rss_peak={peak} rss_per_device={} {extra}",
        cpu / secs,
        (peak - rss_start) / n as f64
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => values[len / 2],
        len => (values[len / 2 - 1] + values[len / 2]) / 2.0,
    }
}

type Results = BTreeMap<String, Vec<BTreeMap<String, f64>>>;

fn med(results: &Results, task: &str, key: &str) -> Option<f64> {
    let mut values: Vec<f64> = results
        .get(task)?
        .iter()
        .filter_map(|r| r.get(key).copied())
        .collect();
    (!values.is_empty()).then(|| median(&mut values))
}

/// One cell of the table, from the results of one fleet size.
enum Cell {
    /// The size of the three files.
    Bytes,
    /// A median, in seconds.
    Secs(&'static str, &'static str),
    /// A median, in MB.
    Mb(&'static str, &'static str),
    /// A median, as is.
    Count(&'static str, &'static str),
    /// The ratio of two medians.
    Ratio((&'static str, &'static str), (&'static str, &'static str)),
    /// Two medians.
    Pair((&'static str, &'static str), (&'static str, &'static str)),
}

const ROWS: &[(&str, Cell)] = &[
    ("export files, base + 2 hubs (MB)", Cell::Bytes),
    (
        "serde typed: read 3 files whole, write 1 (s)",
        Cell::Secs("serde-memory", "secs"),
    ),
    (
        "serde typed: read 3 files streaming, write 1 (s)",
        Cell::Secs("serde-stream", "secs"),
    ),
    (
        "failback merge end to end, streaming, --jobs 2 (s)",
        Cell::Secs("e2e 2", "secs"),
    ),
    (
        "  ÷ serde streaming (goal ≤ 3×)",
        Cell::Ratio(("e2e 2", "secs"), ("serde-stream", "secs")),
    ),
    (
        "failback merge end to end, streaming, --jobs 1 (s)",
        Cell::Secs("e2e 1", "secs"),
    ),
    (
        "  ÷ serde streaming",
        Cell::Ratio(("e2e 1", "secs"), ("serde-stream", "secs")),
    ),
    (
        "  speed-up of --jobs 2",
        Cell::Ratio(("e2e 1", "secs"), ("e2e 2", "secs")),
    ),
    (
        "  cores it got, --jobs 1 and 2 (CPU time ÷ wall time)",
        Cell::Pair(("e2e 1", "cores"), ("e2e 2", "cores")),
    ),
    (
        "failback merge end to end, indexed (unsorted inputs), --jobs 2 (s)",
        Cell::Secs("indexed 2", "secs"),
    ),
    (
        "  ÷ serde in memory",
        Cell::Ratio(("indexed 2", "secs"), ("serde-memory", "secs")),
    ),
    (
        "merge phase alone (resolve_fleet), --jobs 1 (s)",
        Cell::Secs("merge-phase 1", "secs"),
    ),
    (
        "merge phase alone (resolve_fleet), --jobs 2 (s)",
        Cell::Secs("merge-phase 2", "secs"),
    ),
    (
        "  speed-up of --jobs 2 (goal ≥ 1.7×)",
        Cell::Ratio(("merge-phase 1", "secs"), ("merge-phase 2", "secs")),
    ),
    (
        "  cores it got, --jobs 1 and 2 (CPU time ÷ wall time)",
        Cell::Pair(("merge-phase 1", "cores"), ("merge-phase 2", "cores")),
    ),
    (
        "  CPU time of --jobs 2 ÷ --jobs 1 (parallel overhead)",
        Cell::Ratio(("merge-phase 2", "cpu"), ("merge-phase 1", "cpu")),
    ),
    (
        "peak RSS, serde typed in memory (MB)",
        Cell::Mb("serde-memory", "rss_peak"),
    ),
    (
        "peak RSS, failback streaming, --jobs 2 (MB; goal < 256)",
        Cell::Mb("e2e 2", "rss_peak"),
    ),
    (
        "peak RSS, failback streaming, --jobs 1 (MB)",
        Cell::Mb("e2e 1", "rss_peak"),
    ),
    (
        "peak RSS, failback indexed, --jobs 2 (MB; goal ≤ 3000 at 1M)",
        Cell::Mb("indexed 2", "rss_peak"),
    ),
    (
        "failback indexed: peak RSS per device (B)",
        Cell::Count("indexed 2", "rss_per_device"),
    ),
    (
        "failback streaming: peak RSS per device (B)",
        Cell::Count("e2e 2", "rss_per_device"),
    ),
    (
        "automerge per device: build and fork (s)",
        Cell::Secs("automerge", "build"),
    ),
    (
        "automerge per device: merge (s)",
        Cell::Secs("automerge", "merge"),
    ),
    (
        "  ÷ failback merge phase, --jobs 1 (goal ≥ 5×)",
        Cell::Ratio(("automerge", "merge"), ("merge-phase 1", "secs")),
    ),
    (
        "automerge per device: live heap per device (B)",
        Cell::Count("automerge", "heap_per_device"),
    ),
    (
        "automerge per device: peak RSS per device (B)",
        Cell::Count("automerge", "rss_per_device"),
    ),
    (
        "  ÷ failback indexed, per device (goal ≥ 10×)",
        Cell::Ratio(
            ("automerge", "rss_per_device"),
            ("indexed 2", "rss_per_device"),
        ),
    ),
    (
        "  ÷ failback streaming, per device",
        Cell::Ratio(("automerge", "rss_per_device"), ("e2e 2", "rss_per_device")),
    ),
];

fn cell(cell: &Cell, bytes: u64, r: &Results) -> String {
    let none = || "–".to_owned();
    match cell {
        Cell::Bytes => format!("{:.0}", bytes as f64 / 1e6),
        Cell::Secs(task, key) => med(r, task, key).map_or_else(none, |v| format!("{v:.2}")),
        Cell::Mb(task, key) => med(r, task, key).map_or_else(none, |v| format!("{:.0}", v / 1e6)),
        Cell::Count(task, key) => med(r, task, key).map_or_else(none, |v| format!("{v:.0}")),
        Cell::Ratio((ta, ka), (tb, kb)) => match (med(r, ta, ka), med(r, tb, kb)) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => none(),
        },
        Cell::Pair((ta, ka), (tb, kb)) => match (med(r, ta, ka), med(r, tb, kb)) {
            (Some(a), Some(b)) => format!("{a:.2}, {b:.2}"),
            _ => none(),
        },
    }
}

fn print_table(table: &[(usize, u64, Results)], runs: usize) {
    let header: Vec<String> = table
        .iter()
        .map(|(n, _, _)| match n {
            n if n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
            n if n % 1_000 == 0 => format!("{}k", n / 1_000),
            n => n.to_string(),
        })
        .collect();
    println!();
    println!(
        "Medians of {runs} run(s); ratios are of medians from this run. Every measurement \
         allocates with {} (FAILBACK_BENCH_ALLOCATOR=system at build time for the system's).",
        common::allocator()
    );
    println!();
    println!("| devices | {} |", header.join(" | "));
    println!("|---|{}", "---:|".repeat(header.len()));
    for (name, row) in ROWS {
        let cells: Vec<String> = table.iter().map(|(_, b, r)| cell(row, *b, r)).collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
}
