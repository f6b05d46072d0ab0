//! `failback merge`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use failback::ReplicaId;
use failback::clock::{SystemTime, TimeSource};
use failback::doc::Policies;
use failback::format::Format;
use failback::job::{JobError, MergeJob, Reading, Shard, run_merge};
use failback::reconcile::StampError;

use super::{Failure, parse_rfc3339_ms};

/// Arguments of `failback merge`.
#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// The common base: the backup the secondary was seeded from. Required
    /// for bulk exports, optional for twin files.
    #[arg(long, value_name = "BASE.jsonl")]
    base: Option<PathBuf>,
    /// A hub and its file (export or twin JSONL, or a replica state from
    /// `failback ingest`), twice or more. Optional when only application
    /// metadata or jobs are merged.
    #[arg(long = "hub", value_name = "NAME=FILE", required_unless_present_any = ["appmeta", "jobs_files"])]
    hubs: Vec<String>,
    /// The base's application-metadata directory (documents as NAME.json or
    /// NAME.automerge): what each hub's documents are compared with.
    #[arg(long, value_name = "DIR", requires = "appmeta")]
    appmeta_base: Option<PathBuf>,
    /// A hub and its application-metadata directory, once per hub; merged
    /// into appmeta/NAME.json and appmeta/NAME.automerge.
    #[arg(long, value_name = "NAME=DIR")]
    appmeta: Vec<String>,
    /// A hub and its jobs as `az iot hub job list` prints them, once per
    /// hub; merged into jobs.jsonl, the jobs a failover lost in
    /// jobs.todo.jsonl.
    #[arg(long = "jobs-file", value_name = "NAME=FILE")]
    jobs_files: Vec<String>,
    /// Where the results go, written whole or not at all.
    #[arg(long, value_name = "DIR", default_value = "failback-out")]
    out: PathBuf,
    /// The order the hubs were active in, most recent last (default:
    /// primary,secondary when those are the hubs).
    #[arg(long, value_name = "HUB,HUB", value_delimiter = ',')]
    active_order: Option<Vec<String>>,
    /// The end of the period in which a hub took the writes of its file.
    #[arg(long = "as-of", value_name = "NAME=RFC3339")]
    as_of: Vec<String>,
    /// How far ahead of this machine's clock a time may be (e.g. 5m, 90s).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = super::duration_ms)]
    max_drift: i64,
    /// Threads for the merge (default: all cores). Output is the same for any value.
    #[arg(long)]
    jobs: Option<usize>,
    /// Force the input format instead of detecting it per file.
    #[arg(long, value_name = "export|twin|identity")]
    format: Option<String>,
    /// Let plans write identities whose keys no input knows: the hub then
    /// generates new keys, and devices using the old ones (or X.509) can no
    /// longer connect. Without it such a merge fails and names the devices.
    #[arg(long)]
    allow_new_keys: bool,
    /// Merge only shard K of N (1 <= K <= N): the devices whose id hashes
    /// there (64-bit FNV-1a modulo N). The N shards' files concatenate into
    /// the whole merge's.
    #[arg(long, value_name = "K/N")]
    shard: Option<Shard>,
}

fn hub_name(text: &str) -> Result<ReplicaId, Failure> {
    ReplicaId::new(text).map_err(|e| Failure::Input(e.to_string()))
}

/// `NAME=PATH` arguments of `flag`, as hubs and paths.
fn named_paths(
    flag: &str,
    what: &str,
    specs: &[String],
) -> Result<Vec<(ReplicaId, PathBuf)>, Failure> {
    let mut out = Vec::new();
    for spec in specs {
        let (name, path) = spec
            .split_once('=')
            .ok_or_else(|| Failure::Input(format!("{flag} {spec:?}: expected NAME={what}")))?;
        out.push((hub_name(name)?, PathBuf::from(path)));
    }
    Ok(out)
}

/// Runs `failback merge`.
pub fn run(args: MergeArgs) -> Result<ExitCode, Failure> {
    let hubs = named_paths("--hub", "FILE", &args.hubs)?;
    let appmeta = named_paths("--appmeta", "DIR", &args.appmeta)?;
    let jobs_files = named_paths("--jobs-file", "FILE", &args.jobs_files)?;
    let mut as_of = BTreeMap::new();
    for spec in &args.as_of {
        let (name, time) = spec
            .split_once('=')
            .ok_or_else(|| Failure::Input(format!("--as-of {spec:?}: expected NAME=RFC3339")))?;
        as_of.insert(hub_name(name)?, parse_rfc3339_ms(time)?);
    }
    let active_order = args
        .active_order
        .map(|names| {
            names
                .iter()
                .map(|n| hub_name(n))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let format = args
        .format
        .as_deref()
        .map(|f| {
            f.parse::<Format>()
                .map_err(|e| Failure::Input(e.to_string()))
        })
        .transpose()?;
    let devices = !hubs.is_empty();
    let job = MergeJob {
        base: args.base,
        hubs,
        appmeta_base: args.appmeta_base,
        appmeta,
        jobs_files,
        out: args.out.clone(),
        active_order,
        as_of,
        max_drift_ms: args.max_drift,
        now_ms: SystemTime.now_ms(),
        jobs: args.jobs.unwrap_or_else(super::cores),
        reading: Reading::Auto,
        format,
        policies: Policies::default(),
        allow_new_keys: args.allow_new_keys,
        shard: args.shard,
    };
    let report = run_merge(&job).map_err(|e| {
        if e.is_input() {
            Failure::Input(with_hint(&e))
        } else {
            Failure::Internal(e.to_string())
        }
    })?;
    let mut written = Vec::new();
    if devices {
        match &report.shard {
            Some(shard) => println!("merged {} devices (shard {shard})", report.devices_merged),
            None => println!("merged {} devices", report.devices_merged),
        }
        written.extend(["merged.jsonl", "<hub>.import.jsonl"]);
    }
    for (outcome, n) in &report.outcomes {
        println!("  {outcome:<12} {n}");
    }
    for (hub, modes) in &report.plans {
        let total: usize = modes.values().sum();
        let detail: Vec<String> = modes.iter().map(|(m, n)| format!("{m} {n}")).collect();
        println!(
            "{hub}: {total} import operations{}",
            if detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", detail.join(", "))
            }
        );
    }
    if !job.appmeta.is_empty() {
        let total: usize = report.appmeta.values().sum();
        println!("application metadata: {total} documents");
        for (outcome, n) in &report.appmeta {
            println!("  {outcome:<12} {n}");
        }
        for name in &report.appmeta_deleted {
            println!("deleted (delete wins): {name}");
        }
        written.push("appmeta/");
    }
    if let Some(todo) = report.jobs_todo {
        let total: usize = report.jobs.values().sum();
        println!("jobs: {total}");
        for (status, n) in &report.jobs {
            println!("  {status:<12} {n}");
        }
        println!("jobs to schedule again: {todo} (jobs.todo.jsonl)");
        written.extend(["jobs.jsonl", "jobs.todo.jsonl"]);
    }
    let total: usize = report.conflicts.values().sum();
    println!("conflicts: {total}");
    for (rule, n) in &report.conflicts {
        println!("  {rule:<18} {n}");
    }
    let skipped: u64 = report.skipped_lines.values().sum();
    if skipped > 0 {
        println!("skipped {skipped} warning lines");
    }
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
    written.extend(["conflicts.jsonl", "report.json"]);
    println!("results in {}: {}", args.out.display(), written.join(", "));
    Ok(ExitCode::SUCCESS)
}

/// The library's error, with what to type to fix it: the library names
/// what is missing, the command line names its flags.
fn with_hint(error: &JobError) -> String {
    let hint = match error {
        JobError::TooFewHubs { .. } => {
            "give at least two --hub NAME=FILE, or only --appmeta and --jobs-file".to_owned()
        }
        JobError::UnknownHub { .. } => {
            "each --appmeta and --jobs-file NAME must be a hub given with --hub".to_owned()
        }
        JobError::JobsHubNotOrdered { .. } => {
            "give --active-order naming each hub once, the one active now last (each hub before it failed over to the next)".to_owned()
        }
        JobError::OutTaken { .. } => {
            "give --out a new directory or a previous merge's output".to_owned()
        }
        JobError::ExportWithoutBase { .. } => "--base is required".to_owned(),
        JobError::AsOfUnknownHub { .. } => "--as-of must name a --hub".to_owned(),
        JobError::Stamp(StampError::MissingAsOf { hub }) => format!("add --as-of {hub}=RFC3339"),
        JobError::Stamp(StampError::PartialAsOf { .. }) => {
            "give --as-of for every hub or for none".to_owned()
        }
        JobError::Stamp(StampError::NeedOrder) => {
            "give --active-order (the order the hubs were active in, most recent last) or --as-of for each hub".to_owned()
        }
        JobError::Stamp(StampError::BadOrder { .. }) => {
            "--active-order must name each hub exactly once".to_owned()
        }
        JobError::Stamp(StampError::Unstamped { hub }) => {
            format!("give --as-of {hub}=RFC3339 or name it in --active-order")
        }
        _ => return error.to_string(),
    };
    format!("{error}: {hint}")
}
