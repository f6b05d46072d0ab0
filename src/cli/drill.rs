//! `failback drill`: parses the arguments, draws the progress bar and prints
//! what the library's drill reports.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use failback::drill::{
    DrillConfig, DrillError, ExportFormats, Replication, Report, run, total_devices,
};
use indicatif::{ProgressBar, ProgressStyle};

use super::Failure;
use failback::fsio;

/// Arguments of `failback drill`.
#[derive(clap::Args, Debug)]
pub struct DrillArgs {
    /// The seed of the simulation; the same seed replays the same drill.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run every seed of the range A..B (B excluded), each with split
    /// brain, skew and cycles drawn from the seed unless given; fails on
    /// any violated invariant, printing the seed and how to replay it.
    #[arg(long, value_name = "A..B", conflicts_with = "report")]
    pub seeds: Option<String>,
    /// Devices in the initial fleet [default: 10000, or 20 with --seeds].
    #[arg(long, value_name = "N")]
    pub devices: Option<u64>,
    /// The recovery point objective: the backup lags the primary by up to
    /// this (`5m`, `300s`, `1500ms`).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = super::duration_ms)]
    pub rpo: i64,
    /// The primary keeps taking a share of writes during the outage.
    #[arg(long)]
    pub split_brain: bool,
    /// Skew one hub's clock by this much (2m when given alone; under 5m,
    /// the drift the merge allows); the merge then stamps writes with
    /// as-of times.
    #[arg(long, value_name = "DURATION", num_args = 0..=1, default_missing_value = "2m", value_parser = super::duration_ms)]
    pub skew: Option<i64>,
    /// Failover and failback rounds [default: 2].
    #[arg(long, value_name = "K")]
    pub cycles: Option<u32>,
    /// Also write `report.json` and `report.html` into this directory
    /// (replaced whole; one holding other files is refused).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Worker threads [default: the number of cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// How the secondary is kept in step with the primary: `export` (the
    /// last export backup), `events` (a replica of the primary's change
    /// events, seeded from the backup) or `both` (events, with the loss
    /// the export backup alone would have given reported beside it).
    #[arg(long, value_name = "MODE", default_value = "both", value_parser = parse_replication)]
    pub replication: Replication,
    /// The file each hub's state is read from at failback: `keys` (an
    /// export with keys), `twin` (a twin file: no keys), `identity` (an
    /// identity file: no twin) or `mixed` (each hub's drawn per cycle from
    /// the seed).
    #[arg(long, value_name = "FORMAT", default_value = "mixed", value_parser = parse_export_formats)]
    pub export_formats: ExportFormats,
}

fn parse_export_formats(text: &str) -> Result<ExportFormats, String> {
    text.parse()
        .map_err(|e: failback::drill::UnknownExportFormats| e.to_string())
}

fn parse_replication(text: &str) -> Result<Replication, String> {
    text.parse()
        .map_err(|e: failback::drill::UnknownReplication| e.to_string())
}

fn bar(total: u64, what: &str) -> ProgressBar {
    if !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let template =
        format!("{{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {what} (eta {{eta}})");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// A drill the user asked for that cannot run is bad usage; the library
/// refusing the drill's own hub times is an internal error.
fn input(e: DrillError) -> Failure {
    match e {
        DrillError::Stamps { .. } => Failure::Internal(e.to_string()),
        _ => Failure::Input(e.to_string()),
    }
}

/// Runs the drill.
pub fn run_drill(args: DrillArgs) -> Result<ExitCode, Failure> {
    match &args.seeds {
        Some(range) => seeds(&args, range),
        None => single(&args),
    }
}

fn single(args: &DrillArgs) -> Result<ExitCode, Failure> {
    let mut config = DrillConfig::new(args.seed);
    config.devices = args.devices.unwrap_or(config.devices);
    config.rpo_ms = args.rpo;
    config.split_brain = args.split_brain;
    config.skew_ms = args.skew;
    config.cycles = args.cycles.unwrap_or(config.cycles);
    config.threads = args.threads.unwrap_or(config.threads);
    config.replication = args.replication;
    config.export_formats = args.export_formats;
    println!(
        "failback drill: seed {} ({})",
        config.seed,
        config.command()
    );
    let progress = bar(
        total_devices(&config) * u64::from(config.cycles),
        "device-cycles",
    );
    let outcome = run(&config, &|n| progress.inc(n)).map_err(input)?;
    progress.finish_and_clear();
    print!("{}", outcome.report.table(Some(&outcome.times)));
    if let Some(dir) = &args.report {
        write_report(dir, &outcome.report)?;
        println!("report: {}", dir.join("report.html").display());
    }
    if outcome.report.passed() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "failback drill: seed {} FAILED: {}",
            config.seed,
            outcome.report.failed().join(", ")
        );
        Ok(ExitCode::from(1))
    }
}

/// Writes both files into a temporary directory beside `dir`, then puts it
/// in place of `dir` in one step (see [`failback::fsio`]), so a reader never
/// sees half a report nor the files of two reports. An existing `dir`
/// holding anything but a report is refused, not replaced.
fn write_report(dir: &Path, report: &Report) -> Result<(), Failure> {
    let io = |e: std::io::Error| super::output_failure("drill report", dir, &e);
    let is_report = |name: &str| matches!(name, "report.json" | "report.html");
    let out = fsio::DirWriter::begin(dir, &is_report).map_err(io)?;
    out.write("report.json", report.to_json().as_bytes())
        .map_err(io)?;
    out.write("report.html", report.to_html().as_bytes())
        .map_err(io)?;
    out.commit().map_err(io)
}

fn parse_range(range: &str) -> Result<std::ops::Range<u64>, Failure> {
    let bad = || Failure::Input(format!("--seeds {range}: expected A..B, like 1..1001"));
    let (a, b) = range.split_once("..").ok_or_else(bad)?;
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    if b <= a {
        return Err(bad());
    }
    Ok(a..b)
}

struct SeedFailure {
    seed: u64,
    text: String,
}

fn seeds(args: &DrillArgs, range: &str) -> Result<ExitCode, Failure> {
    let range = parse_range(range)?;
    let devices = args.devices.unwrap_or(20);
    let configs: Vec<DrillConfig> = range
        .clone()
        .map(|seed| {
            let mut c = DrillConfig::varied(seed, devices);
            c.rpo_ms = args.rpo;
            c.split_brain |= args.split_brain;
            c.skew_ms = args.skew.or(c.skew_ms);
            c.cycles = args.cycles.unwrap_or(c.cycles);
            c.replication = args.replication;
            c.export_formats = args.export_formats;
            c
        })
        .collect();
    if let Some(bad) = configs.iter().find_map(|c| c.validate().err()) {
        return Err(input(bad));
    }
    println!(
        "failback drill: seeds {}..{} ({} devices each)",
        range.start, range.end, devices
    );
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .max(1);
    let progress = bar(configs.len() as u64, "seeds");
    let next = AtomicU64::new(0);
    let failures: Mutex<Vec<SeedFailure>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(config) = configs.get(next.fetch_add(1, Ordering::Relaxed) as usize)
                {
                    let failure = match run(config, &|_| {}) {
                        Ok(outcome) if outcome.report.passed() => None,
                        Ok(outcome) => Some(describe(config, &outcome.report)),
                        Err(e) => Some(format!("{e}")),
                    };
                    if let Some(text) = failure {
                        if !progress.is_hidden() {
                            progress.suspend(|| eprintln!("seed {} FAILED: {text}", config.seed));
                        }
                        if let Ok(mut all) = failures.lock() {
                            all.push(SeedFailure {
                                seed: config.seed,
                                text,
                            });
                        }
                    }
                    progress.inc(1);
                }
            });
        }
    });
    progress.finish_and_clear();
    let mut failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    failures.sort_by_key(|f| f.seed);
    for f in &failures {
        println!("seed {} FAILED: {}", f.seed, f.text);
    }
    let failed = failures.len();
    println!("drill: {} passed, {failed} failed", configs.len() - failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn describe(config: &DrillConfig, report: &Report) -> String {
    let first = failback::drill::INVARIANTS
        .iter()
        .find_map(|i| report.findings.examples(*i).first().map(|v| (i.name, v)));
    let example = first.map_or(String::new(), |(name, v)| {
        format!(
            "; first: {name}, cycle {} {}: {}",
            v.cycle, v.device, v.detail
        )
    });
    format!(
        "{}{example}; replay: {}",
        report.failed().join(", "),
        config.command()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::duration_ms;

    #[test]
    fn durations_and_ranges_parse() {
        assert_eq!(duration_ms("5m"), Ok(300_000));
        assert_eq!(duration_ms("300"), Ok(300_000));
        assert_eq!(duration_ms("1500ms"), Ok(1500));
        assert!(duration_ms("5 parsecs").is_err());
        assert!(duration_ms("-5m").is_err());
        assert!(matches!(parse_range("1..1001"), Ok(r) if r == (1..1001)));
        assert!(parse_range("5..5").is_err());
        assert!(parse_range("x").is_err());
    }
}
