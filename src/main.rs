//! `failback`: the command-line tool over the failback library.

mod cli;

use std::process::ExitCode;

/// mimalloc: the drill and the merge allocate and free small maps and
/// strings by the million, where it is markedly faster than glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cli::main()
}
