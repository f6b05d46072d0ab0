//! The command line: argument parsing and the subcommands.
//!
//! Exit status: 0 on success (conflicts included), 1 on an internal error
//! or a failed check (`diff` finding differences, `drill` finding a broken
//! invariant), 2 on bad input or usage, with a one-line error.

mod apply;
mod c2d;
mod drill;
mod ingest;
mod merge;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Merge the diverged state of IoT hubs after a regional failover.
#[derive(Parser, Debug)]
#[command(name = "failback", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Merge hubs' exports or twin files into one state and an import plan per hub.
    Merge(merge::MergeArgs),
    /// Dry-run an import plan on a hub's export file, with IoT Hub's import-mode semantics.
    Apply(apply::ApplyArgs),
    /// Compare two export files as states (ignoring etags and line order).
    Diff(apply::DiffArgs),
    /// Keep a hub replica from change events (creates or updates the state file).
    Ingest(ingest::IngestArgs),
    /// Replicate a replica state between sites: `delta` what a peer lacks, `apply` it.
    Replica(ingest::ReplicaArgs),
    /// Rehearse a failover and failback of a simulated fleet and check every invariant.
    Drill(drill::DrillArgs),
    /// Settle cloud-to-device messages from the outbox and the hubs' feedback: what to send again.
    C2d(c2d::C2dArgs),
}

/// A failure, with the exit status it maps to.
#[derive(Debug)]
pub enum Failure {
    /// Bad input or usage: exit 2.
    Input(String),
    /// An internal error or a failed check: exit 1.
    Internal(String),
}

/// A failure writing the output directory `out` of `command`: a refusal to
/// replace a directory that holds other files (or a file) is bad usage,
/// exit 2, with what to give instead; anything else is the file system's,
/// exit 1.
fn output_failure(command: &str, out: &std::path::Path, error: &std::io::Error) -> Failure {
    let shown = format!("cannot write {}: {error}", out.display());
    if failback::fsio::is_not_replaced(error) {
        Failure::Input(format!(
            "{shown}; give a new directory or a previous {command} output"
        ))
    } else {
        Failure::Internal(shown)
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return match err.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    let result = match cli.command {
        Command::Merge(args) => merge::run(args),
        Command::Apply(args) => apply::apply(args),
        Command::Diff(args) => apply::diff(args),
        Command::Drill(args) => drill::run_drill(args),
        Command::Ingest(args) => ingest::ingest(args),
        Command::Replica(args) => ingest::replica(args),
        Command::C2d(args) => c2d::run(args),
    };
    match result {
        Ok(code) => code,
        Err(Failure::Input(message)) => {
            eprintln!("failback: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Internal(message)) => {
            eprintln!("failback: internal error: {message}");
            ExitCode::from(1)
        }
    }
}

/// The number of cores, the default for `--jobs`.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Parses `5m`, `300s`, `1500ms`, `1h` or plain seconds into ms.
pub fn duration_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: i64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 5m, 300s or 1500ms"))?;
    let scale = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("unknown unit `{unit}`: use ms, s, m or h")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// Parses an RFC 3339 time into ms since the epoch.
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, Failure> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| Failure::Input(format!("invalid time {text:?}: {e}")))
}
