//! `failback`: the command-line tool over the failback library.

mod cli;
#[path = "fsio.rs"]
mod fsio;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
