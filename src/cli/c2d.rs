//! `failback c2d`: which cloud-to-device messages to send again after a
//! failover, from the application's outbox and the hubs' feedback.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use failback::ReplicaId;
use failback::c2d::{AsOf, Inputs};
use failback::clock::{SystemTime, TimeSource};
use failback::format::ReadError;

use super::{Failure, parse_rfc3339_ms};

/// Arguments of `failback c2d`.
#[derive(clap::Args, Debug)]
pub struct C2dArgs {
    /// The application's record of the messages it sent (JSON lines or one
    /// array); more than one file may be given.
    #[arg(long, value_name = "FILE", required = true)]
    outbox: Vec<PathBuf>,
    /// Feedback a hub returned (batches as JSON arrays, or JSON lines),
    /// once per file.
    #[arg(long, value_name = "NAME=FILE")]
    feedback: Vec<String>,
    /// The time at which messages are judged expired (RFC 3339). Without
    /// it, this machine's clock, and the report says so.
    #[arg(long, value_name = "RFC3339")]
    as_of: Option<String>,
    /// Where to-send.jsonl, settled.jsonl and report.json go, written whole
    /// or not at all.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

fn open(path: &Path) -> Result<(BufReader<File>, String), Failure> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| Failure::Input(ReadError::io(&name, e).to_string()))?;
    Ok((BufReader::new(file), name))
}

/// Runs `failback c2d`.
pub fn run(args: C2dArgs) -> Result<ExitCode, Failure> {
    let mut feedback = Vec::new();
    for spec in &args.feedback {
        let (name, file) = spec
            .split_once('=')
            .ok_or_else(|| Failure::Input(format!("--feedback {spec:?}: expected NAME=FILE")))?;
        let hub = ReplicaId::new(name).map_err(|e| Failure::Input(format!("--feedback: {e}")))?;
        feedback.push((hub, PathBuf::from(file)));
    }
    let as_of = match &args.as_of {
        Some(text) => AsOf::Given(parse_rfc3339_ms(text)?),
        None => AsOf::Clock(SystemTime.now_ms()),
    };
    let mut inputs = Inputs::new();
    for path in &args.outbox {
        let (reader, name) = open(path)?;
        inputs
            .read_outbox(reader, &name)
            .map_err(|e| Failure::Input(e.to_string()))?;
    }
    let mut records = 0;
    for (hub, path) in &feedback {
        let (reader, name) = open(path)?;
        records += inputs
            .read_feedback(hub, reader, &name)
            .map_err(|e| Failure::Input(e.to_string()))?;
    }
    let settlement = inputs.settle(as_of);
    settlement
        .write_dir(&args.out)
        .map_err(|e| super::output_failure("c2d", &args.out, &e))?;

    let report = settlement.report();
    let from = match as_of {
        AsOf::Given(_) => "given by --as-of",
        AsOf::Clock(_) => "this machine's clock: give --as-of for repeatable outputs",
    };
    println!(
        "outbox: {} messages, as of {} ({from})",
        report.messages, report.as_of
    );
    let settled: usize = report.settled.values().sum();
    let detail: Vec<String> = report
        .settled
        .iter()
        .map(|(outcome, n)| format!("{outcome} {n}"))
        .collect();
    if detail.is_empty() {
        println!("  settled      0");
    } else {
        println!("  settled      {settled} ({})", detail.join(", "));
    }
    let count = |lists: &std::collections::BTreeMap<String, Vec<String>>| -> usize {
        lists.values().map(Vec::len).sum()
    };
    println!("  to send      {}", report.to_send);
    println!(
        "  over limit   {} ({} devices)",
        count(&report.over_limit),
        report.over_limit.len()
    );
    println!("  expired      {}", count(&report.expired));
    let hubs: std::collections::BTreeSet<&ReplicaId> = feedback.iter().map(|(h, _)| h).collect();
    println!(
        "feedback: {records} records from {} hubs, {} distinct; {} for no outbox message",
        hubs.len(),
        report.feedback,
        report.unmatched_feedback.len()
    );
    let unconfirmable = count(&report.unconfirmable);
    if unconfirmable > 0 {
        println!(
            "warning: {unconfirmable} messages to send have ack none or negative: no hub reports their completion, so a device may have them already"
        );
    }
    println!(
        "results in {}: to-send.jsonl, settled.jsonl, report.json",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
