//! Failback through the library: each hub's state read from a file of its
//! cycle's format (an export with keys, a twin file, an identity file), the
//! merge, the plans applied with the hubs' import semantics — one plan
//! applied twice, the other interrupted half-way and finished by a second
//! merge.

use std::collections::BTreeMap;

use super::formats::ExportFormat;
use super::invariants::{
    DETERMINISTIC, FILES_ROUNDTRIP, Findings, HUBS_CONVERGE, KEYS_KEPT, PLAN_IDEMPOTENT,
    RESUME_CONVERGES,
};
use super::oracle::{Hub, entity_of};
use super::sim::Cycle;
use crate::clock::{ReplicaId, Stamp};
use crate::doc::{DeviceSnapshot, Entity, Policies};
use crate::format::{
    DeviceEtags, DeviceFile, DeviceRecord, ExportLineRef, ExportReader, IdentityReader, ImportMode,
    ReadError, RecordMeta, TwinReader, collect_export, collect_identities, collect_twins,
};
use crate::reconcile::{
    Action, DeviceMerge, DeviceOutcome, HeldDevice, HubImage, HubInput, HubSnapshots, ImportLine,
    PlanOp, ResolvedOutcome, SYSTEM_MODULES, fill_in_place, hub_plan, is_edge, is_system_module,
    resolve_fleet, twin_differs, write_import, write_import_line, writes_keyless,
};

/// A hub's export as the failback reads it: the hub written as an export
/// file and read back by the export reader.
///
/// # Errors
///
/// The reader's, should the writer produce a line it cannot take.
pub fn export_roundtrip(hub: &HubImage) -> Result<HubImage, Box<ReadError>> {
    export_read(hub, &mut Vec::new()).map(|file| HubImage::from_file(&file))
}

/// The hub written as an export file into `buf` and read back.
fn export_read(hub: &HubImage, buf: &mut Vec<u8>) -> Result<DeviceFile, Box<ReadError>> {
    buf.clear();
    hub.write_export(buf)
        .map_err(|e| ReadError::io("export.jsonl", e))?;
    read_back(ExportFormat::Keys, buf)
}

/// A plan as the hub's import job reads it: written as an import file and
/// read back by the same reader.
///
/// # Errors
///
/// The reader's, should the writer produce a line it cannot take.
pub fn plan_roundtrip(lines: &[ImportLine]) -> Result<Vec<ImportLine>, Box<ReadError>> {
    let mut bytes = Vec::new();
    for line in lines {
        write_import_line(&mut bytes, line).map_err(|e| ReadError::io("plan.jsonl", e))?;
    }
    let mut read = Vec::with_capacity(lines.len());
    for line in ExportReader::new(bytes.as_slice(), "plan.jsonl") {
        read.push(ImportLine::from(line.map_err(Box::new)?));
    }
    Ok(read)
}

/// Each device's etags as its file gave them (the identity's, the twin's:
/// none in an identity file), and its modules'.
type Etags = BTreeMap<String, (RecordMeta, BTreeMap<String, RecordMeta>)>;

/// The etags to write or compare a device with.
fn device_etags((meta, modules): &(RecordMeta, BTreeMap<String, RecordMeta>)) -> DeviceEtags<'_> {
    DeviceEtags {
        etag: meta.etag.as_deref(),
        twin_etag: meta.twin_etag.as_deref(),
        modules: Some(modules),
    }
}

/// What one hub's file gave besides its devices.
struct ExportMeta {
    etags: Etags,
    format: ExportFormat,
    /// Whether what the file cannot show was filled in from the base (the
    /// cycle's, as the merge takes it).
    filled: bool,
}

/// Both hubs' files as read back: their devices as merged, and what
/// guards their plans.
pub(crate) struct Exports {
    /// Each hub's devices, primary first.
    hubs: [HubSnapshots; 2],
    meta: [ExportMeta; 2],
}

impl Exports {
    /// Forgets what was filled in from the base, so the next cycle fills
    /// from its own: each device is then what its file showed.
    fn forget_filled(&mut self) {
        for (hub, meta) in self.hubs.iter_mut().zip(&mut self.meta) {
            if meta.format != ExportFormat::Keys && meta.filled {
                hub.devices
                    .values_mut()
                    .for_each(|d| meta.format.forget_unshown(d));
            }
            meta.filled = false;
        }
    }
}

/// Reads `bytes` back as a file of `format`.
fn read_back(format: ExportFormat, bytes: &[u8]) -> Result<DeviceFile, Box<ReadError>> {
    let read = match format {
        ExportFormat::Keys => collect_export(ExportReader::new(bytes, "export.jsonl")),
        ExportFormat::Identity => collect_identities(IdentityReader::new(bytes, "identities.json")),
        ExportFormat::Twin => collect_twins(TwinReader::new(bytes, "twins.json")),
    };
    read.map_err(Box::new)
}

/// What a file of `format` cannot show of `device` (keys, twins), taken
/// from the base's device, as `failback merge` takes it: an unknown is not
/// a change.
fn fill_unshown(format: ExportFormat, device: &mut DeviceSnapshot, base: Option<&DeviceSnapshot>) {
    if let Some(known) = base.filter(|_| format != ExportFormat::Keys) {
        fill_in_place(device, known, |_| !format.carries_twin());
    }
}

/// The hubs' files, each in its `formats`, written and read back; a hub
/// whose file does not survive it is reported and merged as held. The
/// devices merged are the ones read back, taken from the file rather than
/// copied, with what the file cannot show (keys of a twin file, the twin
/// of an identity file) filled in from `base` as `failback merge` fills it.
///
/// `previous` is what the last files of each hub read back. A device whose
/// records still show exactly what it read (entities and etags, as far as
/// the format shows them) would be written as the same lines and read back
/// as the same device: it is taken from there instead of written and read
/// again. Every other device's lines are written and read back, and
/// compared with what the hub holds.
fn exports_checked(
    hubs: &[HubImage; 2],
    formats: [ExportFormat; 2],
    base: &BTreeMap<String, DeviceSnapshot>,
    findings: &mut Findings,
    c: usize,
    buf: &mut Vec<u8>,
    previous: Option<Exports>,
) -> Exports {
    let mut previous = previous.map(|p| {
        let [h0, h1] = p.hubs;
        let [m0, m1] = p.meta;
        [Some((h0, m0)), Some((h1, m1))]
    });
    let read = Hub::BOTH.map(|h| {
        let held = &hubs[h.index()];
        let format = formats[h.index()];
        let cached = previous
            .as_mut()
            .and_then(|p| p[h.index()].take())
            .filter(|(_, meta)| meta.format == format);
        let filled = cached.as_ref().is_some_and(|(_, meta)| meta.filled);
        let (mut old, mut old_etags) = match cached {
            Some((snapshots, meta)) => (snapshots.devices, meta.etags),
            None => Default::default(),
        };
        let mut devices = BTreeMap::new();
        let mut etags = Etags::new();
        let mut fresh = Vec::new();
        buf.clear();
        format.begin(buf);
        let mut first = true;
        let mut written = Ok(());
        for device in held.devices() {
            let same = match (old.get(device.id), old_etags.get(device.id)) {
                (Some(d), Some(etags)) => format.shows_as(&device, d, device_etags(etags)),
                _ => false,
            };
            let kept = same
                .then(|| old.remove_entry(device.id).zip(old_etags.remove(device.id)))
                .flatten();
            if let Some(((id, mut d), e)) = kept {
                if !filled {
                    fill_unshown(format, &mut d, base.get(&id));
                }
                etags.insert(id.clone(), e);
                devices.insert(id, d);
            } else if written.is_ok() {
                written = format.write(buf, &device, &mut first);
                fresh.push(device.id);
            }
        }
        format.end(buf);
        let read = written
            .map_err(|e| Box::new(ReadError::io("export", e)))
            .and_then(|()| read_back(format, buf));
        let read = match read {
            Ok(mut file) => {
                for id in &fresh {
                    if let (Some(d), Some(r)) = (held.device(id), file.devices.get_mut(*id)) {
                        share_held(&d, &mut r.snapshot);
                    }
                }
                let differs = |id: &str| {
                    let read = file.devices.get(id);
                    !held.device(id).zip(read).is_some_and(|(d, r)| {
                        format.shows_as(&d, &r.snapshot, r.etags())
                            && format.holds_only_shown(&r.snapshot)
                    })
                };
                if file.devices.len() == fresh.len() && !fresh.iter().any(|id| differs(id)) {
                    Ok(file)
                } else {
                    let id = fresh.iter().find(|id| differs(id)).copied().unwrap_or("");
                    findings.report(
                        FILES_ROUNDTRIP,
                        c,
                        id,
                        format!("the {} hub's {format} file read back differently", h.name()),
                    );
                    Err(())
                }
            }
            Err(e) => {
                findings.report(
                    FILES_ROUNDTRIP,
                    c,
                    e.device.as_deref().unwrap_or(""),
                    format!(
                        "the {} hub's {format} file does not read back: {e}",
                        h.name()
                    ),
                );
                Err(())
            }
        };
        let (devices, etags) = match read {
            Ok(file) => {
                for (id, record) in file.devices {
                    let DeviceRecord {
                        mut snapshot,
                        meta,
                        modules,
                        ..
                    } = record;
                    fill_unshown(format, &mut snapshot, base.get(&id));
                    etags.insert(id.clone(), (meta, modules));
                    devices.insert(id, snapshot);
                }
                (devices, etags)
            }
            // Merged as held (everything known), and read afresh next time.
            Err(()) => (held.snapshots(), Etags::new()),
        };
        let snapshots = HubSnapshots {
            hub: replica(h),
            devices,
            times: BTreeMap::new(),
        };
        let meta = ExportMeta {
            etags,
            format,
            filled: true,
        };
        (snapshots, meta)
    });
    let [(h0, m0), (h1, m1)] = read;
    Exports {
        hubs: [h0, h1],
        meta: [m0, m1],
    }
}

/// Makes the twin sections of `read` the very maps `held` holds, where
/// they are equal: what the merge and the checks then compare with the hub
/// (or with what was merged from it) is found equal without a walk.
fn share_held(held: &HeldDevice<'_>, read: &mut DeviceSnapshot) {
    if let Some(r) = held.device {
        share_sections(&r.entity, &mut read.device);
    }
    for (m, entity) in &mut read.modules {
        if let Some(r) = held.modules.get(m) {
            share_sections(&r.entity, entity);
        }
    }
}

/// Makes each twin section of `to` the one of `from` where the two are
/// equal.
fn share_sections(from: &Entity, to: &mut Entity) {
    for (from, to) in [
        (&from.tags, &mut to.tags),
        (&from.desired, &mut to.desired),
        (&from.reported, &mut to.reported),
    ] {
        if from == to {
            to.clone_from(from);
        }
    }
}

/// One line of a hub's plan, as made: the device (by its place in the
/// merge's outcomes), the module, what it does, and its guards.
#[derive(Clone, Debug)]
struct Planned {
    at: usize,
    module_id: Option<String>,
    action: Action,
    mode: ImportMode,
    etag: Option<String>,
    twin_etag: Option<String>,
}

/// Makes hub `h`'s plan for every outcome, as `failback merge` makes it
/// ([`hub_plan`]): from what the hub's file showed (filled from the base),
/// what it could not show taken as merged, guarded by the file's etags.
/// `line` is given each line with the index of its outcome.
///
/// `settled` says, for an outcome's index, whether the merge found the hub
/// holding exactly the merged device ([`Resolved::settled`]): its plan for
/// that device is empty, so it is not made.
///
/// [`Resolved::settled`]: crate::reconcile::Resolved::settled
fn plan_hub<'a, M: PlanSource<'a>>(
    outcomes: &'a [M],
    settled: impl Fn(usize) -> bool,
    exports: &Exports,
    h: Hub,
    base: &BTreeMap<String, DeviceSnapshot>,
    mut line: impl FnMut(usize, &PlanOp<'_>, ImportMode, Option<&str>, Option<&str>),
) {
    let devices = &exports.hubs[h.index()].devices;
    let meta = &exports.meta[h.index()];
    let none = BTreeMap::new();
    for (at, o) in outcomes.iter().enumerate() {
        if settled(at) {
            continue;
        }
        let id = o.id();
        let input = devices.get(id).map(|snapshot| {
            let etags = meta.etags.get(id);
            HubInput {
                snapshot,
                etag: etags.and_then(|e| e.0.etag.as_deref()),
                twin_etag: etags.and_then(|e| e.0.twin_etag.as_deref()),
                modules: etags.map_or(&none, |e| &e.1),
                knows_twin: meta.format.carries_twin(),
            }
        });
        hub_plan(
            input,
            base.get(id),
            o.merged(),
            |op, mode, etag, twin_etag| {
                line(at, op, mode, etag, twin_etag);
            },
        );
    }
}

/// The entity a planned line writes: the merged device's or module's;
/// none for a delete.
fn planned_entity<'o>(outcomes: &'o [DeviceOutcome], p: &Planned) -> Option<&'o Entity> {
    if p.action == Action::Delete {
        return None;
    }
    let merged = outcomes.get(p.at)?.merge.merged.as_ref()?;
    match &p.module_id {
        None => Some(&merged.device),
        Some(m) => merged.modules.get(m),
    }
}

/// The import line of a planned line, made in memory.
fn planned_line(outcomes: &[DeviceOutcome], p: &Planned) -> ImportLine {
    ImportLine {
        mode: p.mode,
        id: outcomes.get(p.at).map(|o| o.id.clone()).unwrap_or_default(),
        module_id: p.module_id.clone(),
        etag: p.etag.clone(),
        twin_etag: p.twin_etag.clone(),
        entity: planned_entity(outcomes, p).cloned().unwrap_or_default(),
    }
}

/// A plan through the file format: each line written as its import line
/// and read back as the hub's import job reads it. A plan that does not
/// survive it is reported and applied as made.
fn plan_checked(
    planned: &[Planned],
    outcomes: &[DeviceOutcome],
    findings: &mut Findings,
    c: usize,
    hub: Hub,
    buf: &mut Vec<u8>,
) -> Vec<ImportLine> {
    let none = Entity::default();
    let id = |p: &Planned| outcomes.get(p.at).map_or("", |o| o.id.as_str());
    buf.clear();
    let mut written = Ok(());
    for p in planned {
        let line = ExportLineRef {
            id: id(p),
            module_id: p.module_id.as_deref(),
            etag: p.etag.as_deref(),
            twin_etag: p.twin_etag.as_deref(),
            import_mode: Some(p.mode),
            entity: planned_entity(outcomes, p).unwrap_or(&none),
        };
        written = write_import(buf, &line);
        if written.is_err() {
            break;
        }
    }
    let read = written
        .map_err(|e| Box::new(ReadError::io("plan.jsonl", e)))
        .and_then(|()| {
            let mut read = Vec::with_capacity(planned.len());
            for line in ExportReader::new(buf.as_slice(), "plan.jsonl") {
                read.push(ImportLine::from(line.map_err(Box::new)?));
            }
            Ok(read)
        });
    let made = || planned.iter().map(|p| planned_line(outcomes, p)).collect();
    match read {
        Ok(mut read) => {
            // Twin lines carry only the twin: compare what an import reads.
            let same = read.len() == planned.len()
                && read.iter_mut().zip(planned).all(|(r, p)| {
                    let entity = planned_entity(outcomes, p).unwrap_or(&none);
                    share_sections(entity, &mut r.entity);
                    r.mode == p.mode
                        && r.id == id(p)
                        && r.module_id == p.module_id
                        && r.etag == p.etag
                        && r.twin_etag == p.twin_etag
                        && r.entity.tags == entity.tags
                        && r.entity.desired == entity.desired
                        && r.entity.reported == entity.reported
                        && (matches!(p.mode, ImportMode::UpdateTwinIfMatchETag)
                            || r.entity == *entity)
                });
            if !same {
                findings.report(
                    FILES_ROUNDTRIP,
                    c,
                    "",
                    format!("the {} hub's plan read back differently", hub.name()),
                );
                return made();
            }
            read
        }
        Err(e) => {
            findings.report(
                FILES_ROUNDTRIP,
                c,
                e.device.as_deref().unwrap_or(""),
                format!("the {} hub's plan does not read back: {e}", hub.name()),
            );
            made()
        }
    }
}

/// Reports each line of `lines` that writes an identity without keys:
/// the hub would generate new ones (the keys rule). No line applied may.
fn keys_kept(lines: &[ImportLine], findings: &mut Findings, c: usize, hub: Hub) {
    for line in lines {
        if writes_keyless(line.mode, Some(&line.entity)) {
            let module = line
                .module_id
                .as_deref()
                .map_or(String::new(), |m| format!(" module {m}"));
            findings.report(
                KEYS_KEPT,
                c,
                &line.id,
                format!(
                    "the {} hub is sent a {} line{module} without keys: it would generate new ones",
                    hub.name(),
                    line.mode
                ),
            );
        }
    }
}

/// The import lines of each plan, by hub and action.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanCounts {
    /// Lines by (hub, action name).
    pub lines: BTreeMap<(&'static str, &'static str), u64>,
    /// Lines the second merge added to finish the interrupted plans.
    pub resumed: u64,
}

impl PlanCounts {
    /// Adds another part's counts.
    pub fn add(&mut self, other: &PlanCounts) {
        for (k, v) in &other.lines {
            *self.lines.entry(*k).or_default() += v;
        }
        self.resumed += other.resumed;
    }
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Create => "create",
        Action::UpdateIdentity => "update-identity",
        Action::UpdateTwin => "update-twin",
        Action::Delete => "delete",
    }
}

/// What a failback of one shard produced.
pub(crate) struct Failback {
    /// The merge, device by device.
    pub outcomes: Vec<DeviceOutcome>,
    /// The format each hub's state was read from, in the merge that went
    /// through: the cycle's, or an export with keys after a refusal.
    pub formats: [ExportFormat; 2],
    /// What a refused merge would have written.
    pub refusal: Refusal,
    /// The devices the primary holds with values its file could not show
    /// and the merge had no reason to write (see [`Converged::Unshown`]):
    /// the next cycle starts from what the primary holds.
    pub kept_unshown: Vec<String>,
}

/// A merge refused because its plans would write identities whose keys no
/// input knows, as `failback merge` refuses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The import lines that would have written an identity without keys.
    pub lines: u64,
    /// Per hub, primary first, whether it was exported again with keys.
    pub reexported: [bool; 2],
}

fn replica(hub: Hub) -> ReplicaId {
    ReplicaId::new(hub.name()).expect("valid literal")
}

/// Where hub `h` is in a merge's [`Resolved::settled`], which follows the
/// hubs by name.
///
/// [`Resolved::settled`]: crate::reconcile::Resolved::settled
fn by_name(h: Hub) -> usize {
    Hub::BOTH
        .iter()
        .filter(|k| replica(**k) < replica(h))
        .count()
}

/// The merge of a fleet as [`merge_fleet`] gives it, with, per device, whether
/// each hub (by [`Hub::index`]) holds the merged device already.
fn merge_owned(
    base: &BTreeMap<String, DeviceSnapshot>,
    hubs: &[HubSnapshots; 2],
    stamps: &BTreeMap<ReplicaId, Stamp>,
    policies: &Policies,
) -> (Vec<DeviceOutcome>, Vec<[bool; 2]>) {
    let order = Hub::BOTH.map(by_name);
    resolve_fleet(Some(base), hubs, stamps, policies, 1)
        .expect(UNSTAMPED)
        .into_iter()
        .map(|r| {
            let settled = order.map(|i| r.resolved.settled.get(i).copied().unwrap_or(false));
            let outcome = DeviceOutcome {
                id: r.id.to_owned(),
                merge: DeviceMerge {
                    merged: r.resolved.merged.map(std::borrow::Cow::into_owned),
                    conflicts: r.resolved.conflicts,
                },
                outcome: r.outcome,
            };
            (outcome, settled)
        })
        .unzip()
}

/// A merge result a plan is made from: owned or borrowed.
trait PlanSource<'a> {
    fn id(&'a self) -> &'a str;
    fn merged(&'a self) -> Option<&'a DeviceSnapshot>;
}

impl<'a> PlanSource<'a> for DeviceOutcome {
    fn id(&'a self) -> &'a str {
        &self.id
    }
    fn merged(&'a self) -> Option<&'a DeviceSnapshot> {
        self.merge.merged.as_ref()
    }
}

impl<'a> PlanSource<'a> for ResolvedOutcome<'_> {
    fn id(&'a self) -> &'a str {
        self.id
    }
    fn merged(&'a self) -> Option<&'a DeviceSnapshot> {
        self.resolved.merged.as_deref()
    }
}

fn import_errors(
    findings: &mut Findings,
    cycle: usize,
    hub: Hub,
    errors: &[crate::reconcile::ImportError],
) {
    for e in errors {
        findings.report(
            HUBS_CONVERGE,
            cycle,
            &e.device_id,
            format!(
                "the {} hub refused a plan line: {} {}",
                hub.name(),
                e.error_code,
                e.error_status
            ),
        );
    }
}

/// What a shard's failback merges: the cycle, its base and the hubs'
/// stamps.
pub(crate) struct Inputs<'a> {
    /// The cycle's index.
    pub c: usize,
    /// Its timeline.
    pub cycle: &'a Cycle,
    /// The backup both hubs diverged from.
    pub base: &'a BTreeMap<String, DeviceSnapshot>,
    /// The stamps of each hub's writes ([policy 5](crate::contract#policies)).
    pub stamps: &'a BTreeMap<ReplicaId, Stamp>,
}

/// Why the drill's merges cannot lack a stamp: `stamps_of` refuses a cycle
/// unless both hubs, the only ones exported, have one.
const UNSTAMPED: &str = "stamps_of gives both hubs a stamp";

/// Whether two devices agree on everything a plan carries: all but the
/// system modules, which each hub keeps its own of (the hub makes them and
/// their keys with an edge device, the deployment and the edge runtime
/// write their twins). That an edge device has them is still compared.
fn same_carried(a: Option<&DeviceSnapshot>, b: Option<&DeviceSnapshot>) -> bool {
    same_carried_as(a.map(|d| (d.id.as_str(), &d.device, &d.modules)), b)
}

/// How a device a hub holds compares with the merged one, as far as a plan
/// carries it ([`same_carried`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Converged {
    /// Equal.
    Same,
    /// Equal but where the hub's file shows nothing and the merge had no
    /// reason to write: keys of a twin-file hub, the twin of an
    /// identity-file hub, where the merged value is the base's (which the
    /// merge took the hub to hold) or the base lacked the entity (the merge
    /// took the hub to hold the merged value).
    Unshown,
    /// Different.
    Differs,
}

/// One entity of a hub against the merged one; `base` is the base's.
fn entity_converged(
    format: ExportFormat,
    held: &Entity,
    merged: &Entity,
    base: Option<&Entity>,
) -> Converged {
    if held == merged {
        return Converged::Same;
    }
    if format == ExportFormat::Keys
        || !format.same_shown(held, merged)
        || held.extra != merged.extra
    {
        return Converged::Differs;
    }
    let keys = format.carries_keys()
        || held.authentication == merged.authentication
        || base.is_none_or(|k| k.authentication == merged.authentication);
    let twin = format.carries_twin()
        || !twin_differs(held, merged)
        || base.is_none_or(|k| !twin_differs(k, merged));
    if keys && twin {
        Converged::Unshown
    } else {
        Converged::Differs
    }
}

/// [`same_carried`] of a device a hub holds, compared where it lies, as
/// far as the hub's file of `format` shows it.
fn converged(
    a: Option<HeldDevice<'_>>,
    b: Option<&DeviceSnapshot>,
    base: Option<&DeviceSnapshot>,
    format: ExportFormat,
) -> Converged {
    let none = Entity::default();
    let (a, b) = match (a, b) {
        (None, None) => return Converged::Same,
        (Some(a), Some(b)) => (a, b),
        _ => return Converged::Differs,
    };
    let device = a.device.map_or(&none, |r| &r.entity);
    let carried = |m: &&String| !is_system_module(m);
    let edge = is_edge(device) && SYSTEM_MODULES.iter().all(|m| a.modules.contains_key(*m));
    if a.id != b.id || edge != is_edge_with_modules(b) {
        return Converged::Differs;
    }
    let mut worst = entity_converged(format, device, &b.device, base.map(|k| &k.device));
    let mut ours = a.modules.iter().filter(|(m, _)| carried(m));
    let mut theirs = b.modules.iter().filter(|(m, _)| carried(m));
    while worst != Converged::Differs {
        match (ours.next(), theirs.next()) {
            (None, None) => break,
            (Some((m, r)), Some((n, e))) if m == n => {
                let k = base.and_then(|k| k.modules.get(m));
                worst = worst.max(entity_converged(format, &r.entity, e, k));
            }
            _ => return Converged::Differs,
        }
    }
    worst
}

fn is_edge_with_modules(d: &DeviceSnapshot) -> bool {
    is_edge(&d.device) && SYSTEM_MODULES.iter().all(|m| d.modules.contains_key(*m))
}

fn same_carried_as(
    a: Option<(&str, &Entity, &BTreeMap<String, Entity>)>,
    b: Option<&DeviceSnapshot>,
) -> bool {
    let (Some((id, device, modules)), Some(b)) = (a, b) else {
        return a.is_none() && b.is_none();
    };
    let carried = |m: &str| !is_system_module(m);
    let edge = is_edge(device) && SYSTEM_MODULES.iter().all(|m| modules.contains_key(*m));
    id == b.id
        && *device == b.device
        && edge == is_edge_with_modules(b)
        && modules
            .iter()
            .filter(|(m, _)| carried(m))
            .eq(b.modules.iter().filter(|(m, _)| carried(m)))
}

/// The merged devices of a merge by id.
fn merged_by_id<'a, M: PlanSource<'a>>(
    outcomes: &'a [M],
) -> BTreeMap<&'a str, Option<&'a DeviceSnapshot>> {
    outcomes.iter().map(|o| (o.id(), o.merged())).collect()
}

/// The id of the first line of `lines` that `errors` (the log of applying
/// them) does not name: a line the hub took.
fn first_taken<'l>(lines: &'l [ImportLine], errors: &[crate::reconcile::ImportError]) -> &'l str {
    let mut errors = errors.iter().peekable();
    for line in lines {
        match errors.peek() {
            Some(e) if e.device_id == line.id && e.module_id == line.module_id => {
                errors.next();
            }
            _ => return &line.id,
        }
    }
    ""
}

/// Fails back one shard: merges, applies the plans (one applied twice, the
/// other cut short and finished by a second merge), and checks that the
/// hubs converge. `buf` is the shard's scratch space for the files.
///
/// Each hub's state is read from a file of the cycle's format for it. A
/// merge whose plans would write an identity whose keys no input knows
/// (the hub would generate new ones) is refused, as `failback merge`
/// refuses it; the operator then exports each hub whose file carried no
/// keys again, with keys, and merges again.
pub(crate) fn failback(
    inputs: &Inputs<'_>,
    hubs: &mut [HubImage; 2],
    check_determinism: bool,
    findings: &mut Findings,
    counts: &mut PlanCounts,
    buf: &mut Vec<u8>,
    previous: &mut Option<Exports>,
) -> Failback {
    let Inputs {
        c,
        cycle,
        base,
        stamps,
    } = *inputs;
    let policies = Policies::default();
    let mut formats = cycle.formats;
    let mut refusal = Refusal::default();
    let mut cache = previous.take();
    let (mut exports, outcomes, planned) = loop {
        let exports = exports_checked(hubs, formats, base, findings, c, buf, cache.take());
        let (outcomes, settled) = merge_owned(base, &exports.hubs, stamps, &policies);
        let mut keyless = Vec::new();
        let planned = Hub::BOTH.map(|h| {
            let mut lines = Vec::new();
            plan_hub(
                &outcomes,
                |at| settled.get(at).is_some_and(|s| s[h.index()]),
                &exports,
                h,
                base,
                |at, op, mode, etag, twin_etag| {
                    if writes_keyless(mode, op.entity) {
                        keyless.push((h, at, op.module_id.map(str::to_owned)));
                    }
                    lines.push(Planned {
                        at,
                        module_id: op.module_id.map(str::to_owned),
                        action: op.action,
                        mode,
                        etag: etag.map(str::to_owned),
                        twin_etag: twin_etag.map(str::to_owned),
                    });
                },
            );
            lines
        });
        if keyless.is_empty() {
            break (exports, outcomes, planned);
        }
        // Refused: the keys of these entities are in no input, or the
        // merge lost them.
        refusal.lines += keyless.len() as u64;
        for (h, at, module) in &keyless {
            let id = outcomes.get(*at).map_or("", |o| o.id.as_str());
            let known = |d: Option<&DeviceSnapshot>| {
                d.and_then(|d| entity_of(d, module.as_deref()))
                    .is_some_and(|e| e.authentication.is_some())
            };
            let knew = std::iter::once(("the base", known(base.get(id)))).chain(
                Hub::BOTH.map(|k| (k.name(), known(exports.hubs[k.index()].devices.get(id)))),
            );
            if let Some((who, _)) = knew.into_iter().find(|(_, k)| *k) {
                let what = module
                    .as_deref()
                    .map_or("the device".to_owned(), |m| format!("module {m}"));
                findings.report(
                    KEYS_KEPT,
                    c,
                    id,
                    format!(
                        "the {} hub's plan writes {what} without keys, which {who} carried: the merge was refused",
                        h.name()
                    ),
                );
            }
        }
        let mut again = false;
        for h in Hub::BOTH {
            let format = &mut formats[h.index()];
            if !format.carries_keys() {
                *format = ExportFormat::Keys;
                refusal.reexported[h.index()] = true;
                again = true;
            }
        }
        if !again {
            // Every file carried keys: nothing an operator could add.
            findings.report(
                KEYS_KEPT,
                c,
                "",
                format!(
                    "{} plan lines write identities without keys, though every hub's file carried keys",
                    keyless.len()
                ),
            );
            break (exports, outcomes, planned);
        }
        cache = Some(exports);
    };
    if check_determinism {
        exports.hubs.swap(0, 1);
        let again =
            resolve_fleet(Some(base), &exports.hubs, stamps, &policies, 2).expect(UNSTAMPED);
        let same = |a: &ResolvedOutcome<'_>, o: &DeviceOutcome| {
            a.id == o.id
                && a.outcome == o.outcome
                && a.resolved.merged.as_deref() == o.merge.merged.as_ref()
                && a.resolved.conflicts == o.merge.conflicts
        };
        if again.len() != outcomes.len() || !again.iter().zip(&outcomes).all(|(a, o)| same(a, o)) {
            let first = outcomes
                .iter()
                .zip(&again)
                .find(|(o, a)| !same(a, o))
                .map_or(String::new(), |(o, _)| o.id.clone());
            findings.report(
                DETERMINISTIC,
                c,
                &first,
                "merging with the hubs in the other order on two threads gave another result"
                    .into(),
            );
        }
        drop(again);
        exports.hubs.swap(0, 1);
    }
    for h in Hub::BOTH {
        for p in &planned[h.index()] {
            *counts
                .lines
                .entry((h.name(), action_name(p.action)))
                .or_default() += 1;
        }
    }
    let [planned0, planned1] = &planned;
    let plans = [
        plan_checked(planned0, &outcomes, findings, c, Hub::BOTH[0], buf),
        plan_checked(planned1, &outcomes, findings, c, Hub::BOTH[1], buf),
    ];
    drop(planned);
    for (h, plan) in Hub::BOTH.into_iter().zip(&plans) {
        keys_kept(plan, findings, c, h);
    }

    let cut_hub = cycle.interrupt;
    let full_hub = cut_hub.other();
    let (x, y) = (cut_hub.index(), full_hub.index());
    let [p0, p1] = plans;
    let (mut cut_plan, full_plan) = if x == 0 { (p0, p1) } else { (p1, p0) };
    let errors = hubs[y].apply(&full_plan);
    import_errors(findings, c, full_hub, &errors);
    // Applied again, the plan must change nothing: every line of it must
    // fail (a line the hub takes writes a new etag at least).
    let again = hubs[y].apply(&full_plan);
    if again.len() != full_plan.len() {
        let changed = first_taken(&full_plan, &again);
        findings.report(
            PLAN_IDEMPOTENT,
            c,
            changed,
            format!(
                "applying the {} hub's plan a second time changed it",
                full_hub.name()
            ),
        );
    }
    drop(full_plan);
    let cut = cut_plan.len() * cycle.interrupt_permille as usize / 1000;
    cut_plan.truncate(cut);
    let errors = hubs[x].apply_owned(cut_plan);
    import_errors(findings, c, cut_hub, &errors);

    // The operator re-runs the failback on what the hubs hold now, from
    // files of the formats the merge went through with.
    let exports = exports_checked(hubs, formats, base, findings, c, buf, Some(exports));
    let rerun = resolve_fleet(Some(base), &exports.hubs, stamps, &policies, 1).expect(UNSTAMPED);
    let first = merged_by_id(&outcomes);
    let second = merged_by_id(&rerun);
    for (id, merged) in &second {
        if !first.get(id).is_some_and(|f| same_carried(*f, *merged)) {
            findings.report(
                RESUME_CONVERGES,
                c,
                id,
                "the merge re-run after an interrupted plan gave another device".into(),
            );
        }
    }
    for id in first.keys().filter(|id| !second.contains_key(*id)) {
        findings.report(
            RESUME_CONVERGES,
            c,
            id,
            "the merge re-run after an interrupted plan lost the device".into(),
        );
    }
    let rest = Hub::BOTH.map(|h| {
        let mut lines = Vec::new();
        let order = by_name(h);
        plan_hub(
            &rerun,
            |at| {
                rerun
                    .get(at)
                    .and_then(|o| o.resolved.settled.get(order))
                    .is_some_and(|s| *s)
            },
            &exports,
            h,
            base,
            |at, op, mode, etag, twin_etag| {
                lines.push(ImportLine {
                    mode,
                    id: rerun.get(at).map_or_else(String::new, |o| o.id.to_owned()),
                    module_id: op.module_id.map(str::to_owned),
                    etag: etag.map(str::to_owned),
                    twin_etag: twin_etag.map(str::to_owned),
                    entity: op.entity.cloned().unwrap_or_default(),
                });
            },
        );
        lines
    });
    // A hub whose file cannot show a value is sent it again whenever the
    // merged value is not the base's (the merge takes the hub to hold the
    // base's): lines that write what the hub holds already. Any other
    // line means the hub differs.
    let rewrites = |line: &ImportLine| {
        formats[y] != ExportFormat::Keys
            && hubs[y]
                .get(&line.id, line.module_id.as_deref())
                .is_some_and(|r| match line.mode {
                    ImportMode::UpdateTwinIfMatchETag => !twin_differs(&r.entity, &line.entity),
                    ImportMode::UpdateIfMatchETag => r.entity == line.entity,
                    _ => false,
                })
    };
    if let Some(line) = rest[y].iter().find(|line| !rewrites(line)) {
        findings.report(
            HUBS_CONVERGE,
            c,
            &line.id,
            format!(
                "the {} hub differs from the merged state after its whole plan was applied",
                full_hub.name()
            ),
        );
    }
    counts.resumed += rest[x].len() as u64;
    for (h, lines) in Hub::BOTH.into_iter().zip(rest) {
        keys_kept(&lines, findings, c, h);
        let errors = hubs[h.index()].apply_owned(lines);
        import_errors(findings, c, h, &errors);
    }

    // Where a hub's file could not show a value and the merge had no
    // reason to write it, the hub keeps its own: the primary's is what the
    // next cycle starts from.
    let mut kept_unshown = Vec::new();
    for h in Hub::BOTH {
        let held = &hubs[h.index()];
        let format = formats[h.index()];
        for (id, merged) in &second {
            match converged(held.device(id), *merged, base.get(*id), format) {
                Converged::Same => {}
                Converged::Unshown => {
                    if h == Hub::Primary {
                        kept_unshown.push((*id).to_owned());
                    }
                }
                Converged::Differs => findings.report(
                    HUBS_CONVERGE,
                    c,
                    id,
                    format!("the {} hub differs from the merged state", h.name()),
                ),
            }
        }
        for device in held.devices().filter(|d| !second.contains_key(d.id)) {
            findings.report(
                HUBS_CONVERGE,
                c,
                device.id,
                format!(
                    "the {} hub holds a device the merge does not know",
                    h.name()
                ),
            );
        }
    }
    drop(second);
    drop(rerun);
    let mut exports = exports;
    exports.forget_filled();
    *previous = Some(exports);
    Failback {
        outcomes,
        formats,
        refusal,
        kept_unshown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::{Authentication, Secret};
    use crate::reconcile::Record;

    fn keys(k: &str) -> Option<Authentication> {
        Some(Authentication::sas(
            Secret::new(&format!("{k}1")),
            Secret::new(&format!("{k}2")),
        ))
    }

    #[test]
    fn a_line_that_writes_an_identity_without_keys_breaks_keys_kept() {
        let line = |mode, with_keys: bool| {
            let mut line = ImportLine {
                mode,
                id: "d".into(),
                ..ImportLine::default()
            };
            if with_keys {
                line.entity.authentication = keys("k");
            }
            line
        };
        let mut findings = Findings::default();
        let fine = [
            line(ImportMode::Create, true),
            line(ImportMode::UpdateIfMatchETag, true),
            line(ImportMode::UpdateTwinIfMatchETag, false),
            line(ImportMode::DeleteIfMatchETag, false),
        ];
        keys_kept(&fine, &mut findings, 0, Hub::Primary);
        assert!(findings.all_hold(), "{findings:?}");
        let keyless = [
            line(ImportMode::Create, false),
            line(ImportMode::UpdateIfMatchETag, false),
        ];
        keys_kept(&keyless, &mut findings, 0, Hub::Secondary);
        assert_eq!(findings.count(KEYS_KEPT), 2);
    }

    /// A twin-file hub may keep keys of its own only where the merge had
    /// no reason to write them: the merged keys are the base's (which the
    /// merge took the hub to hold), or the base lacks the device.
    #[test]
    fn a_hub_keeps_what_its_file_cannot_show_only_where_the_merge_wrote_nothing() {
        let device = |k: &str, fan: i64| {
            let mut d = DeviceSnapshot {
                id: "d".into(),
                ..DeviceSnapshot::default()
            };
            d.device.authentication = keys(k);
            d.device.desired.insert("fan".into(), fan.into());
            d
        };
        let mut hub = HubImage::new();
        let held = device("rotated", 1);
        hub.insert(
            "d",
            None,
            Record {
                entity: held.device.clone(),
                ..Record::default()
            },
        );
        let base = device("k", 1);
        let check = |merged: &DeviceSnapshot, base: Option<&DeviceSnapshot>, format| {
            converged(hub.device("d"), Some(merged), base, format)
        };
        use ExportFormat::{Identity, Keys, Twin};
        assert_eq!(check(&held, Some(&base), Keys), Converged::Same);
        assert_eq!(check(&base, Some(&base), Twin), Converged::Unshown);
        assert_eq!(check(&base, None, Twin), Converged::Unshown);
        assert_eq!(check(&base, Some(&base), Keys), Converged::Differs);
        assert_eq!(check(&base, Some(&base), Identity), Converged::Differs);
        // Another hub rotated too: the plan had to write its keys.
        assert_eq!(
            check(&device("other", 1), Some(&base), Twin),
            Converged::Differs
        );
        // A twin change shows in a twin file.
        assert_eq!(
            check(&device("k", 2), Some(&base), Twin),
            Converged::Differs
        );
        // An identity file shows keys, not the twin.
        let twin_only = device("rotated", 7);
        assert_eq!(
            check(&twin_only, Some(&device("rotated", 7)), Identity),
            Converged::Unshown
        );
        assert_eq!(check(&twin_only, Some(&base), Identity), Converged::Differs);
    }
}
