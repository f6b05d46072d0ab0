//! Ingestion throughput: change-event lines parsed, checked and ingested
//! into a replica on one core, then the state written (every device
//! replayed). Run: `cargo bench --bench ingest` (200,000 events);
//! `-- --events N` for another size.
//!
//! Run without `--bench` (as `cargo test --all-targets` does) or with
//! `--test`, it ingests 2,000 events once, to prove it runs.

use std::time::Instant;

use failback::ReplicaId;
use failback::format::parse_event_line;
use failback::replica::Replica;

const T0: i64 = 1_709_294_400_000;

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// `n` event lines over `n / 10` devices: each device created, then nine
/// twin changes (desired and reported patches with `$metadata`, a tag),
/// interleaved across devices as a hub emits them.
fn events(n: usize) -> Vec<String> {
    let devices = (n / 10).max(1);
    let mut lines = Vec::with_capacity(n);
    for i in 0..n {
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
        lines.push(format!(
            r#"{{"properties":{{"hubName":"contoso-hub","deviceId":"{device}","opType":"{op}","operationTimestamp":"{at}","iothub-message-schema":"twinChangeNotification"}},"systemProperties":{{"correlation-id":"{i:08x}-5f3c-4d1e-9a0b-0c1d2e3f4a5b","iothub-message-source":"twinChangeEvents","iothub-enqueuedtime":"{at}"}},"body":{body}}}"#
        ));
    }
    lines
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench");
    let n = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 2_000 } else { 200_000 });
    let lines = events(n);
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let hub = ReplicaId::new("primary").expect("valid literal");

    let start = Instant::now();
    let mut replica = Replica::new(hub);
    for (i, line) in lines.iter().enumerate() {
        let event = parse_event_line("bench.jsonl", i as u64 + 1, line).expect("valid event");
        replica.ingest(event).expect("no conflicting ids");
    }
    let ingest = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let state = replica.to_bytes();
    let write = start.elapsed().as_secs_f64();

    let start = Instant::now();
    // Delivered again: every event a duplicate.
    for (i, line) in lines.iter().enumerate() {
        let event = parse_event_line("bench.jsonl", i as u64 + 1, line).expect("valid event");
        replica.ingest(event).expect("no conflicting ids");
    }
    let again = start.elapsed().as_secs_f64();

    println!(
        "ingest: {n} events ({:.0} B each) over {} devices, one core",
        bytes as f64 / n as f64,
        (n / 10).max(1)
    );
    println!(
        "  parse + check + ingest      {:>9.0} events/s  ({ingest:.3} s)",
        n as f64 / ingest
    );
    println!(
        "  the same again (duplicates) {:>9.0} events/s  ({again:.3} s)",
        n as f64 / again
    );
    println!(
        "  state written (replay all)  {:>9.0} events/s  ({write:.3} s, {} B)",
        n as f64 / write,
        state.len()
    );
    assert!(replica.gaps().is_empty());
}
