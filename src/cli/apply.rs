//! `failback apply` and `failback diff`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use failback::doc::{DeviceSnapshot, Entity};
use failback::format::{DeviceFile, ExportReader, Format, InputFile, read_input};
use failback::reconcile::{HubImage, ImportLine, identity_differs, is_system_module, twin_differs};

use super::Failure;
use failback::fsio;

/// Arguments of `failback apply`.
#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// The hub's file: an export, twins or identities (detected).
    #[arg(long, value_name = "FILE")]
    hub: PathBuf,
    /// The import plan (an import file).
    #[arg(long, value_name = "PLAN")]
    plan: PathBuf,
    /// Where to write the hub after the import (default: standard output).
    /// Failed lines go to FILE.importErrors.log (default: standard error).
    /// Both are written whole (crash-safe), mode 0600: the hub holds keys.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Arguments of `failback diff`.
#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// A hub's file: an export, twins or identities (detected). The
    /// system modules of edge devices (`$edgeAgent`, `$edgeHub`) are
    /// compared by presence only: their keys and twins are the hub's and
    /// the deployment's, and no plan writes them.
    a: PathBuf,
    /// Another, of any of these formats.
    b: PathBuf,
}

fn input(e: impl std::fmt::Display) -> Failure {
    Failure::Input(e.to_string())
}

fn read_image(path: &Path) -> Result<HubImage, Failure> {
    Ok(HubImage::from_input(
        &read_input(path, None).map_err(input)?,
    ))
}

/// A file's devices, and which parts its format carries.
fn read_devices(path: &Path) -> Result<(BTreeMap<String, DeviceSnapshot>, Format), Failure> {
    let exported = |file: DeviceFile| {
        file.devices
            .into_iter()
            .map(|(id, d)| (id, d.snapshot))
            .collect()
    };
    Ok(match read_input(path, None).map_err(input)? {
        InputFile::Export(file) => (exported(file), Format::Export),
        InputFile::Identity(file) => (exported(file), Format::Identity),
        InputFile::Twin(file) => (
            file.devices
                .into_iter()
                .map(|(id, d)| (id, d.snapshot))
                .collect(),
            Format::Twin,
        ),
    })
}

/// `a` and `b` with what one of them cannot tell left out of both: keys
/// where one has none (a twin file, an export without keys), twins where
/// one format has none (identities).
fn comparable(a: &mut DeviceSnapshot, b: &mut DeviceSnapshot, twins: bool) {
    let level = |a: &mut Entity, b: &mut Entity| {
        if a.authentication.is_none() || b.authentication.is_none() {
            a.authentication = None;
            b.authentication = None;
        }
        if !twins {
            for e in [&mut *a, &mut *b] {
                e.tags.clear();
                e.desired.clear();
                e.reported.clear();
            }
        }
    };
    level(&mut a.device, &mut b.device);
    for (m, x) in &mut a.modules {
        if let Some(y) = b.modules.get_mut(m) {
            if is_system_module(m) {
                // The hub's and the deployment's, never a plan's: that
                // they exist is compared, not what they hold.
                *x = Entity::default();
                *y = Entity::default();
            }
            level(x, y);
        }
    }
}

/// Runs `failback apply`.
pub fn apply(args: ApplyArgs) -> Result<ExitCode, Failure> {
    let mut image = read_image(&args.hub)?;
    let plan_name = args.plan.display().to_string();
    let file = File::open(&args.plan).map_err(|e| Failure::Input(format!("{plan_name}: {e}")))?;
    let mut lines = Vec::new();
    for line in ExportReader::new(BufReader::new(file), plan_name) {
        lines.push(ImportLine::from(line.map_err(input)?));
    }
    let errors = image.apply(&lines);
    let write_hub = |w: &mut dyn Write| -> std::io::Result<()> {
        let mut w = BufWriter::new(w);
        image.write_export(&mut w)?;
        w.flush()
    };
    let internal = |e: std::io::Error| Failure::Internal(e.to_string());
    let mut log = Vec::new();
    for error in &errors {
        serde_json::to_writer(&mut log, error).map_err(|e| Failure::Internal(e.to_string()))?;
        log.push(b'\n');
    }
    match &args.out {
        Some(path) => {
            let mut log_path = path.clone().into_os_string();
            log_path.push(".importErrors.log");
            let log_path = PathBuf::from(log_path);
            commit_pair(path, write_hub, &log_path, &log).map_err(internal)?;
        }
        None => {
            write_hub(&mut std::io::stdout().lock()).map_err(internal)?;
            std::io::stderr().write_all(&log).map_err(internal)?;
        }
    }
    eprintln!(
        "applied {} lines, {} failed",
        lines.len() - errors.len(),
        errors.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes the hub to `path` and the error log to `log_path`, each whole
/// and synced, mode 0600 (the hub holds keys). The log is the mark of a
/// complete apply: the old one is removed before the hub is renamed into
/// place and the new one renamed in last, so a log, when present, is
/// always the one of the hub file beside it.
fn commit_pair(
    path: &Path,
    write_hub: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    log_path: &Path,
    log: &[u8],
) -> std::io::Result<()> {
    let hub = fsio::stage_file(path, write_hub)?;
    let log = fsio::stage_file(log_path, |w| w.write_all(log))?;
    fsio::remove_file(log_path)?;
    hub.commit()?;
    log.commit()
}

fn describe(a: &DeviceSnapshot, b: &DeviceSnapshot) -> String {
    let mut parts = Vec::new();
    if identity_differs(&a.device, &b.device) {
        parts.push("identity".to_owned());
    }
    if twin_differs(&a.device, &b.device) {
        parts.push("twin".to_owned());
    }
    let modules: BTreeSet<&String> = a.modules.keys().chain(b.modules.keys()).collect();
    for m in modules {
        if a.modules.get(m) != b.modules.get(m) {
            parts.push(format!("module {m}"));
        }
    }
    parts.join(", ")
}

/// Runs `failback diff`: exit 0 when equal, 1 with a summary otherwise.
pub fn diff(args: DiffArgs) -> Result<ExitCode, Failure> {
    let (a, format_a) = read_devices(&args.a)?;
    let (b, format_b) = read_devices(&args.b)?;
    let twins = format_a.carries_twins() && format_b.carries_twins();
    let ids: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut differences = Vec::new();
    for id in ids {
        match (a.get(id), b.get(id)) {
            (Some(_), None) => differences.push(format!("{id}: only in {}", args.a.display())),
            (None, Some(_)) => differences.push(format!("{id}: only in {}", args.b.display())),
            (Some(x), Some(y)) => {
                let (mut x, mut y) = (x.clone(), y.clone());
                comparable(&mut x, &mut y, twins);
                if x != y {
                    differences.push(format!("{id}: differs in {}", describe(&x, &y)));
                }
            }
            _ => {}
        }
    }
    if differences.is_empty() {
        println!("equal: {} devices", a.len());
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} devices differ", differences.len());
    for line in differences.iter().take(50) {
        println!("  {line}");
    }
    if differences.len() > 50 {
        println!("  ... and {} more", differences.len() - 50);
    }
    Ok(ExitCode::from(1))
}
