//! `failback drill`.

use std::process::ExitCode;

use super::Failure;

/// Arguments of `failback drill`.
#[derive(clap::Args, Debug)]
pub struct DrillArgs {
    /// The seed of the simulation.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Runs the drill.
pub fn run(args: DrillArgs) -> Result<ExitCode, Failure> {
    println!("seed {}", args.seed);
    Err(Failure::Internal("the drill is not written yet".into()))
}
