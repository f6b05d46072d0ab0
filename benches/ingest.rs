//! Ingestion throughput against the parse floor, and a replica's memory
//! and state-file size against its devices' export.
//!
//! `cargo bench --bench ingest` (200,000 events over 20,000 devices, medians
//! of 3): typed serde parsing of the event lines (envelope typed, body as a
//! JSON value), `failback` ingestion of the same lines with the state file
//! written (every device replayed), both on one core, and their ratio;
//! then the same lines delivered again (all duplicates). `-- --events N`
//! for another size.
//!
//! `cargo bench --bench ingest -- --devices 100000 --events 10000000`: the
//! bounded-replica mode, one process of its own so its peak RSS (VmHWM of
//! /proc/self/status) is the replica's: events are generated one by one
//! (never held), ingested, the state file written to a counting sink, and
//! the peak RSS, state-file size and the export size of the same devices
//! printed, then both again gzip-compressed (the state file as `failback`
//! writes a `STATE.json.gz`, the export through the same gzip level, for
//! a like-for-like ratio). `--compact N` compacts the replica every N events and at the
//! end (`failback ingest --compact`), so memory follows the devices.
//! `--write PATH` also writes the state file to `PATH`, to look at.
//!
//! Run without `--bench` (as `cargo test --all-targets` does) or with
//! `--test`, it ingests 2,000 events once, to prove it runs.

use std::io::Write;
use std::time::Instant;

use failback::ReplicaId;
use failback::format::{DeviceEtags, parse_held_event_line, write_device};
use failback::replica::{Replica, STATE_GZIP_LEVEL, write_state, write_state_gzip};

const T0: i64 = 1_709_294_400_000;

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Event `i` of a stream over `devices` devices: each device created, then
/// twin changes (desired and reported patches with `$metadata`, a tag),
/// interleaved across devices as a hub emits them.
fn event(i: usize, devices: usize) -> String {
    let (round, d) = (i / devices, i % devices);
    let at = time(T0 + i as i64);
    let device = format!("device-{d:06}");
    let (op, body) = match round {
        0 => (
            "createDeviceIdentity",
            format!(
                r#"{{"deviceId":"{device}","etag":"AAAAAAAAAAE=","version":1,"status":"enabled","tags":{{"site":"lyon","floor":{}}},"properties":{{"desired":{{"$version":1}},"reported":{{"$version":1}}}}}}"#,
                d % 7
            ),
        ),
        r if r % 3 == 0 => (
            "updateTwin",
            format!(r#"{{"version":{},"tags":{{"round":{r}}}}}"#, r + 1),
        ),
        r if r % 3 == 1 => (
            "updateTwin",
            format!(
                r#"{{"version":{},"properties":{{"desired":{{"fan":{r},"mode":"eco","$metadata":{{"$lastUpdated":"{at}","fan":{{"$lastUpdated":"{at}"}},"mode":{{"$lastUpdated":"{at}"}}}},"$version":{r}}}}}}}"#,
                r + 1
            ),
        ),
        r => (
            "updateTwin",
            format!(
                r#"{{"version":{},"properties":{{"reported":{{"temp":{}.5,"fw":{{"version":"1.{r}"}},"$metadata":{{"temp":{{"$lastUpdated":"{at}"}},"fw":{{"$lastUpdated":"{at}","version":{{"$lastUpdated":"{at}"}}}}}},"$version":{r}}}}}}}"#,
                r + 1,
                20 + r
            ),
        ),
    };
    format!(
        r#"{{"properties":{{"hubName":"contoso-hub","deviceId":"{device}","opType":"{op}","operationTimestamp":"{at}","iothub-message-schema":"twinChangeNotification"}},"systemProperties":{{"correlation-id":"{i:08x}-5f3c-4d1e-9a0b-0c1d2e3f4a5b","iothub-message-source":"twinChangeEvents","iothub-enqueuedtime":"{at}"}},"body":{body}}}"#
    )
}

/// The parse floor: an event line typed as serde reads it, the body a JSON
/// value.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct TypedEvent {
    properties: TypedProperties,
    #[serde(rename = "systemProperties")]
    system_properties: TypedSystem,
    body: serde_json::Value,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct TypedProperties {
    #[serde(rename = "hubName")]
    hub_name: Option<String>,
    #[serde(rename = "deviceId")]
    device_id: String,
    #[serde(rename = "moduleId")]
    module_id: Option<String>,
    #[serde(rename = "opType")]
    op_type: String,
    #[serde(rename = "operationTimestamp")]
    operation_timestamp: String,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct TypedSystem {
    #[serde(rename = "correlation-id")]
    correlation_id: Option<String>,
}

fn arg(args: &[String], name: &str) -> Option<usize> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs.get(runs.len() / 2).copied().unwrap_or(0.0)
}

/// Counts the bytes written to it.
#[derive(Default)]
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Nanoseconds this thread has spent on a CPU, from
/// `/proc/thread-self/schedstat` (`None` where it is absent): unlike wall
/// time, not stretched by other processes taking the core, so the ratio
/// of two phases holds on a shared machine.
fn on_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Wall and on-CPU seconds of `f` (on-CPU is wall where unknown).
fn timed(f: impl FnOnce()) -> (f64, f64) {
    let (start, cpu) = (Instant::now(), on_cpu_ns());
    f();
    let wall = start.elapsed().as_secs_f64();
    let cpu = match (cpu, on_cpu_ns()) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
        _ => wall,
    };
    (wall, cpu)
}

/// `VmHWM` of /proc/self/status, in bytes (0 where there is none).
fn peak_rss() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The bounded-replica mode: `n` events over `devices` devices, streamed.
fn bounded(devices: usize, n: usize, compact: Option<usize>, out: Option<&str>) {
    let hub = ReplicaId::new("primary").expect("valid literal");
    let start = Instant::now();
    let mut replica = Replica::new(hub);
    for i in 0..n {
        let line = event(i, devices);
        let event = parse_held_event_line("bench.jsonl", i as u64 + 1, &line).expect("valid event");
        replica.ingest(event).expect("no conflicting ids");
        if compact.is_some_and(|every| (i + 1) % every.max(1) == 0) {
            replica.compact();
        }
    }
    if compact.is_some() {
        replica.compact();
    }
    let mut state = Counter::default();
    write_state(&mut state, &replica).expect("to a counter");
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(path) = out {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("--write PATH"));
        write_state(&mut file, &replica).expect("state file written");
    }
    let gz_start = Instant::now();
    let mut state_gz = Counter::default();
    write_state_gzip(&mut state_gz, &replica).expect("to a counter");
    let gz_elapsed = gz_start.elapsed().as_secs_f64();
    let mut export = Counter::default();
    let mut export_gz = flate2::write::GzEncoder::new(
        Counter::default(),
        flate2::Compression::new(STATE_GZIP_LEVEL),
    );
    for id in replica.device_ids() {
        if let Some(device) = replica.device(id) {
            write_device(&mut export, &device.snapshot, DeviceEtags::default())
                .expect("to a counter");
            write_device(&mut export_gz, &device.snapshot, DeviceEtags::default())
                .expect("to a counter");
        }
    }
    let export_gz = export_gz.finish().expect("to a counter");
    let rss = peak_rss();
    match compact {
        Some(every) => println!(
            "bounded replica: {n} events over {devices} devices, one core, compacted every {every} events"
        ),
        None => println!("bounded replica: {n} events over {devices} devices, one core"),
    }
    println!(
        "  held                      {:>9} events, {} twin versions folded",
        replica.event_count(),
        replica.folded_count()
    );
    println!(
        "  ingested + state written  {:>9.0} events/s  ({elapsed:.1} s)",
        n as f64 / elapsed
    );
    println!("  peak RSS                  {:>9.1} MB", rss as f64 / 1e6);
    println!(
        "  state file                {:>9.1} MB  ({:.2}x the export of the same devices, {:.1} MB)",
        state.0 as f64 / 1e6,
        state.0 as f64 / export.0.max(1) as f64,
        export.0 as f64 / 1e6
    );
    println!(
        "  state file gzip           {:>9.1} MB  ({:.2}x the export, {:.2}x the export gzipped, {:.1} MB; {gz_elapsed:.1} s)",
        state_gz.0 as f64 / 1e6,
        state_gz.0 as f64 / export.0.max(1) as f64,
        state_gz.0 as f64 / export_gz.0.max(1) as f64,
        export_gz.0 as f64 / 1e6
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench");
    if let Some(devices) = arg(&args, "--devices") {
        let n = arg(&args, "--events").unwrap_or(devices * 100);
        let out = args
            .iter()
            .position(|a| a == "--write")
            .and_then(|i| args.get(i + 1));
        bounded(
            devices.max(1),
            n,
            arg(&args, "--compact"),
            out.map(String::as_str),
        );
        return;
    }
    let n = arg(&args, "--events").unwrap_or(if quick { 2_000 } else { 200_000 });
    let reps = if quick { 1 } else { 3 };
    let devices = (n / 10).max(1);
    let lines: Vec<String> = (0..n).map(|i| event(i, devices)).collect();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let hub = ReplicaId::new("primary").expect("valid literal");

    let mut serde_runs = Vec::new();
    let mut ingest_runs = Vec::new();
    let mut again_runs = Vec::new();
    let mut state_len = 0;
    for _ in 0..reps {
        serde_runs.push(timed(|| {
            for line in &lines {
                let typed: TypedEvent = serde_json::from_str(line).expect("valid event");
                std::hint::black_box(&typed);
            }
        }));

        let mut replica = Replica::new(hub.clone());
        ingest_runs.push(timed(|| {
            for (i, line) in lines.iter().enumerate() {
                let event =
                    parse_held_event_line("bench.jsonl", i as u64 + 1, line).expect("valid event");
                replica.ingest(event).expect("no conflicting ids");
            }
            // Written as `failback ingest` writes it, streamed through a
            // buffer (here into a counter: the bytes, not the disk).
            let mut state = std::io::BufWriter::new(Counter::default());
            write_state(&mut state, &replica).expect("to a counter");
            state_len = state.into_inner().map_or(0, |c| c.0);
        }));

        // Delivered again: every event a duplicate.
        again_runs.push(timed(|| {
            for (i, line) in lines.iter().enumerate() {
                let event =
                    parse_held_event_line("bench.jsonl", i as u64 + 1, line).expect("valid event");
                replica.ingest(event).expect("no conflicting ids");
            }
        }));
        assert!(replica.gaps().is_empty());
    }
    let on_cpu = |runs: &[(f64, f64)]| median(runs.iter().map(|r| r.1).collect());
    let (serde_cpu, ingest_cpu) = (on_cpu(&serde_runs), on_cpu(&ingest_runs));
    let wall = |runs: Vec<(f64, f64)>| runs.into_iter().map(|r| r.0).collect();
    let (serde_runs, ingest_runs, again_runs) =
        (wall(serde_runs), wall(ingest_runs), wall(again_runs));
    let (serde, ingest, again) = (median(serde_runs), median(ingest_runs), median(again_runs));
    println!(
        "ingest: {n} events ({:.0} B each) over {devices} devices, one core, medians of {reps}",
        bytes as f64 / n as f64,
    );
    println!(
        "  serde typed parse (body a JSON value)   {:>9.0} events/s  ({serde:.3} s)",
        n as f64 / serde
    );
    println!(
        "  failback ingest + state written         {:>9.0} events/s  ({ingest:.3} s, state {state_len} B)",
        n as f64 / ingest
    );
    println!(
        "  ratio (ingest time / serde time)        {:>9.2}x",
        ingest / serde
    );
    println!(
        "  ratio of on-CPU times (not stretched by other processes) {:>5.2}x  ({ingest_cpu:.3} s / {serde_cpu:.3} s)",
        ingest_cpu / serde_cpu
    );
    println!(
        "  the same again (duplicates)             {:>9.0} events/s  ({again:.3} s)",
        n as f64 / again
    );
}
