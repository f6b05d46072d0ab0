//! `failback`: the command-line tool over the failback library.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
