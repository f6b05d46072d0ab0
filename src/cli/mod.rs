//! The command line: argument parsing and the subcommands.
//!
//! Exit status: 0 on success (conflicts included), 1 on an internal error
//! or a failed check (`diff` finding differences, `drill` finding a broken
//! invariant), 2 on bad input or usage, with a one-line error.

mod drill;

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
    /// Rehearse a failover and failback of a simulated fleet and check every invariant.
    Drill(drill::DrillArgs),
}

/// A failure, with the exit status it maps to.
#[derive(Debug)]
pub enum Failure {
    /// Bad input or usage: exit 2.
    Input(String),
    /// An internal error or a failed check: exit 1.
    Internal(String),
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
        Command::Drill(args) => drill::run_drill(args),
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
