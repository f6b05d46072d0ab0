//! `failback ingest` and `failback replica delta|apply`: a hub replica
//! kept from change events, and replicated between two sites.
//!
//! A bad line or an event id seen before with another payload is never
//! silently accepted: ingest reads every file to the end, counts and
//! names every refused line (`file:line`), and then exits 2 without
//! touching the state file, so the operator fixes or removes those lines
//! and runs the same command again (which is safe: ingestion is
//! idempotent). The state file is only ever replaced whole (written to a
//! temporary file beside it, mode 0600 since seeds hold keys, synced,
//! renamed, and its directory synced: see [`failback::fsio`]), and
//! gzip-compressed when its name ends in `.gz` (every state file is read
//! plain or compressed, whatever its name).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use failback::ReplicaId;
use failback::format::{Envelope, EventReader, InputFile, ReadError, read_input};
use failback::replica::{Ingested, Replica, Seed, read_state, write_state, write_state_gzip};

use super::Failure;
use failback::fsio;

/// Arguments of `failback ingest`.
#[derive(clap::Args, Debug)]
pub struct IngestArgs {
    /// The hub the events are from: the replica's name.
    #[arg(long, value_name = "NAME")]
    hub: String,
    /// The replica state file: read when it exists, then replaced whole;
    /// written gzip-compressed when its name ends in `.gz` (read either
    /// way, whatever its name).
    #[arg(long, value_name = "STATE.json")]
    state: PathBuf,
    /// An export or twin file giving the devices' state before the
    /// stream began (devices there need no create event).
    #[arg(long = "from", value_name = "EXPORT_OR_TWIN_FILE")]
    from: Vec<PathBuf>,
    /// Read every events file in this envelope rather than the one each
    /// file tells (Avro by its magic, JSON by its first record's keys):
    /// canonical, storage-json, avro, monitor-events, event-grid or
    /// cloud-events.
    #[arg(long, value_name = "NAME")]
    envelope: Option<Envelope>,
    /// Compact the replica while ingesting: fold the twin changes of every
    /// incarnation whose create is known into a tree, every N events
    /// (default 100000) and at the end, so memory and the state file grow
    /// with devices, not events (the state is then written as version 3).
    /// A compacted state file is still about 6x an export of the same
    /// devices as plain JSON and about a quarter of one as `STATE.json.gz`:
    /// keep a long-lived replica as `.gz`.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "100000")]
    compact: Option<u64>,
    /// Change-event files: JSON records in any envelope, or Avro files of
    /// storage routing or Event Hubs Capture.
    #[arg(value_name = "EVENTS.jsonl", required = true)]
    events: Vec<PathBuf>,
}

/// `failback replica`.
#[derive(clap::Args, Debug)]
pub struct ReplicaArgs {
    #[command(subcommand)]
    command: ReplicaCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ReplicaCommand {
    /// Write what STATE holds and SINCE lacks, as a state file of its own.
    Delta {
        /// The replica to send from.
        #[arg(long, value_name = "STATE.json")]
        state: PathBuf,
        /// The peer's replica (what it already holds).
        #[arg(long, value_name = "PEER.json")]
        since: PathBuf,
        /// Where the delta goes (gzip-compressed when the name ends in
        /// `.gz`).
        #[arg(long, value_name = "DELTA.json")]
        out: PathBuf,
    },
    /// Fold STATE's twin changes into their incarnations' trees (see
    /// `failback ingest --compact`), replacing it whole.
    Compact {
        /// The replica to compact (written back gzip-compressed when the
        /// name ends in `.gz`).
        #[arg(long, value_name = "STATE.json")]
        state: PathBuf,
    },
    /// Join deltas (or whole replicas of the same hub) into STATE.
    Apply {
        /// The replica to update (created when absent; gzip-compressed
        /// when the name ends in `.gz`).
        #[arg(long, value_name = "STATE.json")]
        state: PathBuf,
        /// Deltas from `failback replica delta`.
        #[arg(value_name = "DELTA.json", required = true)]
        deltas: Vec<PathBuf>,
    },
}

/// The most refused lines printed one by one.
const SHOWN_ERRORS: usize = 20;

fn load(path: &Path) -> Result<Replica, Failure> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| Failure::Input(ReadError::io(&name, e).to_string()))?;
    read_state(BufReader::new(file), &name).map_err(|e| Failure::Input(e.to_string()))
}

/// Writes `replica` to `path` whole, mode 0600 (seeds hold keys): to a
/// temporary file beside it, synced, renamed, and the directory synced;
/// gzip-compressed when the name ends in `.gz`.
fn save(path: &Path, replica: &Replica) -> Result<(), Failure> {
    let gzip = path.extension().is_some_and(|e| e == "gz");
    fsio::write_file(path, |mut w| {
        if gzip {
            write_state_gzip(&mut w, replica)
        } else {
            write_state(&mut w, replica)
        }
    })
    .map_err(|e| Failure::Internal(format!("{}: {e}", path.display())))
}

/// Runs `failback ingest`.
pub fn ingest(args: IngestArgs) -> Result<ExitCode, Failure> {
    let hub = ReplicaId::new(&args.hub).map_err(|e| Failure::Input(e.to_string()))?;
    let mut replica = if args.state.exists() {
        let replica = load(&args.state)?;
        if replica.hub() != &hub {
            return Err(Failure::Input(format!(
                "{}: a replica of hub {}, not {hub}",
                args.state.display(),
                replica.hub()
            )));
        }
        replica
    } else {
        Replica::new(hub)
    };
    let mut refused: Vec<String> = Vec::new();
    let mut seeded = 0usize;
    for path in &args.from {
        let name = path.display().to_string();
        let seeds: Vec<Seed> = match read_input(path, None) {
            Ok(InputFile::Export(file) | InputFile::Identity(file)) => {
                file.devices.values().map(Seed::from_export).collect()
            }
            Ok(InputFile::Twin(file)) => file.devices.values().map(Seed::from_twin).collect(),
            Err(e) => return Err(Failure::Input(e.to_string())),
        };
        for seed in seeds {
            match replica.seed(seed) {
                Ok(true) => seeded += 1,
                Ok(false) => {}
                Err(e) => refused.push(format!("{name}: {e}")),
            }
        }
    }
    let (mut applied, mut parked, mut duplicates, mut ignored, mut skipped) = (0, 0, 0, 0, 0);
    let (mut telemetry, mut digital_twin) = (0, 0);
    let mut since_compaction = 0u64;
    for path in &args.events {
        let name = path.display().to_string();
        let file =
            File::open(path).map_err(|e| Failure::Input(ReadError::io(&name, e).to_string()))?;
        let mut reader = EventReader::new(BufReader::new(file), name.clone()).held();
        if let Some(envelope) = args.envelope {
            reader = reader.with_envelope(envelope);
        }
        for event in reader.by_ref() {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    refused.push(e.to_string());
                    continue;
                }
            };
            let line = event.line;
            match replica.ingest(event) {
                Ok(Ingested::Applied) => applied += 1,
                Ok(Ingested::Parked) => parked += 1,
                Ok(Ingested::Duplicate) => duplicates += 1,
                Ok(Ingested::Ignored) => ignored += 1,
                Err(e) => refused.push(e.at_line(&name, line).to_string()),
            }
            if let Some(every) = args.compact {
                since_compaction += 1;
                if since_compaction >= every.max(1) {
                    replica.compact();
                    since_compaction = 0;
                }
            }
        }
        skipped += reader.skipped();
        telemetry += reader.skipped_events().telemetry;
        digital_twin += reader.skipped_events().digital_twin;
    }
    if args.compact.is_some() {
        replica.compact();
    }
    let gaps = replica.gaps();
    let gap_devices: std::collections::BTreeSet<&str> =
        gaps.iter().map(|g| g.device.as_str()).collect();
    println!("applied      {applied}");
    println!("duplicates   {duplicates}");
    println!("parked       {parked}");
    println!(
        "gaps         {} ({} devices)",
        gaps.len(),
        gap_devices.len()
    );
    println!("rejected     {}", refused.len());
    println!("connection events ignored {ignored}");
    if seeded > 0 {
        println!("seeded       {seeded} devices");
    }
    if skipped > 0 {
        println!("skipped {skipped} non-JSON lines");
    }
    if telemetry > 0 {
        println!("skipped {telemetry} telemetry messages");
    }
    if digital_twin > 0 {
        println!("skipped {digital_twin} digital-twin change events");
    }
    for gap in gaps.iter().take(SHOWN_ERRORS) {
        let module = gap
            .module
            .as_deref()
            .map(|m| format!(" module {m:?}"))
            .unwrap_or_default();
        println!(
            "gap: device {:?}{module}: {} version {} ({}) waits for {}",
            gap.device, gap.op, gap.version, gap.dot, gap.waits_for
        );
    }
    if gaps.len() > SHOWN_ERRORS {
        println!("gap: ... and {} more", gaps.len() - SHOWN_ERRORS);
    }
    if !refused.is_empty() {
        for error in refused.iter().take(SHOWN_ERRORS) {
            eprintln!("failback: rejected: {error}");
        }
        return Err(Failure::Input(format!(
            "{} lines rejected; {} left as it was",
            refused.len(),
            args.state.display()
        )));
    }
    save(&args.state, &replica)?;
    println!("state in {}: {}", args.state.display(), held(&replica));
    Ok(ExitCode::SUCCESS)
}

/// What a replica holds, for the last line of a command.
fn held(replica: &Replica) -> String {
    match replica.folded_count() {
        0 => format!("{} events", replica.event_count()),
        folded => format!(
            "{} events, {folded} twin versions folded",
            replica.event_count()
        ),
    }
}

/// Runs `failback replica`.
pub fn replica(args: ReplicaArgs) -> Result<ExitCode, Failure> {
    match args.command {
        ReplicaCommand::Delta { state, since, out } => {
            let mine = load(&state)?;
            let theirs = load(&since)?;
            if theirs.hub() != mine.hub() {
                return Err(Failure::Input(format!(
                    "{}: a replica of hub {}, not {}",
                    since.display(),
                    theirs.hub(),
                    mine.hub()
                )));
            }
            let delta = mine.delta_since(&theirs.context());
            save(&out, &delta)?;
            println!(
                "delta: {} events, {} devices, in {}",
                delta.event_count(),
                delta.device_ids().count(),
                out.display()
            );
        }
        ReplicaCommand::Compact { state } => {
            let mut replica = load(&state)?;
            let folded = replica.compact();
            save(&state, &replica)?;
            println!(
                "folded {folded} events; state in {}: {}",
                state.display(),
                held(&replica)
            );
        }
        ReplicaCommand::Apply { state, deltas } => {
            let mut deltas_read = Vec::new();
            for path in &deltas {
                deltas_read.push(load(path)?);
            }
            let mut replica = if state.exists() {
                load(&state)?
            } else {
                match deltas_read.first() {
                    Some(first) => Replica::new(first.hub().clone()),
                    None => return Ok(ExitCode::SUCCESS),
                }
            };
            let mut added = 0;
            for (path, delta) in deltas.iter().zip(&deltas_read) {
                added += replica
                    .apply_delta(delta)
                    .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
            }
            save(&state, &replica)?;
            println!(
                "applied {added} new events and seeds; state in {}: {}",
                state.display(),
                held(&replica)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
