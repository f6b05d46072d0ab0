//! Failback through the library: exports of both hubs, the merge, the
//! plans applied with the hubs' import semantics — one plan applied twice,
//! the other interrupted half-way and finished by a second merge.

use std::collections::BTreeMap;

use super::invariants::{
    DETERMINISTIC, FILES_ROUNDTRIP, Findings, HUBS_CONVERGE, PLAN_IDEMPOTENT, RESUME_CONVERGES,
};
use super::oracle::Hub;
use super::sim::Cycle;
use crate::clock::{ReplicaId, Stamp};
use crate::doc::{DeviceSnapshot, Entity, Policies};
use crate::format::{
    DeviceEtags, ExportFile, ExportLineRef, ExportReader, ImportMode, ModuleEtags, ReadError,
    collect_export,
};
use crate::reconcile::{
    Action, DeviceOutcome, HeldDevice, HubImage, HubSnapshots, ImportLine, PlanOp, ResolvedOutcome,
    SYSTEM_MODULES, device_plan, import_guard, import_lines, is_edge, is_system_module,
    merge_fleet, resolve_fleet, write_import, write_import_line,
};

/// A hub's export as the failback reads it: the hub written as an export
/// file and read back by the export reader.
///
/// # Errors
///
/// The reader's, should the writer produce a line it cannot take.
pub fn export_roundtrip(hub: &HubImage) -> Result<HubImage, Box<ReadError>> {
    export_read(hub, &mut Vec::new()).map(|file| HubImage::from_export(&file))
}

/// The hub written as an export file into `buf` and read back.
fn export_read(hub: &HubImage, buf: &mut Vec<u8>) -> Result<ExportFile, Box<ReadError>> {
    buf.clear();
    hub.write_export(buf)
        .map_err(|e| ReadError::io("export.jsonl", e))?;
    collect_export(ExportReader::new(buf.as_slice(), "export.jsonl")).map_err(Box::new)
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

/// Each device's etags as its export lines gave them: the device's
/// `eTag` and `twinETag`, and its modules'.
type Etags = BTreeMap<String, (Option<String>, Option<String>, ModuleEtags)>;

/// A hub's export as read back: the devices as merged, and their etags.
pub(crate) type Exported = (HubSnapshots, Etags);

/// The hubs' exports through the file format; a hub whose export does not
/// survive it is reported and merged as held. The devices merged are the
/// ones read back, taken from the file rather than copied.
///
/// `previous` is what the last export of each hub read back. A device whose
/// records are still exactly those it read (entities and etags) would be
/// written as the same lines and read back as the same device: it is taken
/// from there instead of written and read again. Every other device's lines
/// are written and read back, and compared with what the hub holds.
fn exports_checked(
    hubs: &[HubImage; 2],
    findings: &mut Findings,
    c: usize,
    buf: &mut Vec<u8>,
    previous: Option<[Exported; 2]>,
) -> [Exported; 2] {
    let mut previous = previous.map(|p| p.map(Some));
    Hub::BOTH.map(|h| {
        let held = &hubs[h.index()];
        let (mut old, mut old_etags) = match previous.as_mut().and_then(|p| p[h.index()].take()) {
            Some((snapshots, etags)) => (snapshots.devices, etags),
            None => Default::default(),
        };
        let mut devices = BTreeMap::new();
        let mut etags = Etags::new();
        let mut fresh = Vec::new();
        buf.clear();
        let mut written = Ok(());
        for device in held.devices() {
            let same = match (old.get(device.id), old_etags.get(device.id)) {
                (Some(d), Some((etag, twin_etag, modules))) => device.is(
                    d,
                    DeviceEtags {
                        etag: etag.as_deref(),
                        twin_etag: twin_etag.as_deref(),
                        modules: Some(modules),
                    },
                ),
                _ => false,
            };
            let kept = same
                .then(|| old.remove_entry(device.id).zip(old_etags.remove(device.id)))
                .flatten();
            if let Some(((id, d), e)) = kept {
                etags.insert(id.clone(), e);
                devices.insert(id, d);
            } else if written.is_ok() {
                written = device.write_export(buf);
                fresh.push(device.id);
            }
        }
        let read = written
            .map_err(|e| Box::new(ReadError::io("export.jsonl", e)))
            .and_then(|()| {
                collect_export(ExportReader::new(buf.as_slice(), "export.jsonl")).map_err(Box::new)
            });
        let read = match read {
            Ok(file) => {
                let differs = |id: &str| {
                    let read = file.devices.get(id);
                    !held
                        .device(id)
                        .zip(read)
                        .is_some_and(|(d, r)| d.is(&r.snapshot, r.etags()))
                };
                if file.devices.len() == fresh.len() && !fresh.iter().any(|id| differs(id)) {
                    Ok(file)
                } else {
                    let id = fresh.iter().find(|id| differs(id)).copied().unwrap_or("");
                    findings.report(
                        FILES_ROUNDTRIP,
                        c,
                        id,
                        format!("the {} hub's export read back differently", h.name()),
                    );
                    Err(())
                }
            }
            Err(e) => {
                findings.report(
                    FILES_ROUNDTRIP,
                    c,
                    e.device.as_deref().unwrap_or(""),
                    format!("the {} hub's export does not read back: {e}", h.name()),
                );
                Err(())
            }
        };
        let (devices, etags) = match read {
            Ok(file) => {
                for (id, device) in file.devices {
                    let e = (device.etag, device.twin_etag, device.module_etags);
                    etags.insert(id.clone(), e);
                    devices.insert(id, device.snapshot);
                }
                (devices, etags)
            }
            // Merged as held, and read afresh next time.
            Err(()) => (held.snapshots(), Etags::new()),
        };
        let snapshots = HubSnapshots {
            hub: replica(h),
            devices,
            times: BTreeMap::new(),
        };
        (snapshots, etags)
    })
}

/// A plan through the file format: each operation written as its import
/// line and read back as the hub's import job reads it. A plan that does
/// not survive it is reported and applied as made.
fn plan_checked(
    ops: &[PlanOp<'_>],
    hub_image: &HubImage,
    findings: &mut Findings,
    c: usize,
    hub: Hub,
    buf: &mut Vec<u8>,
) -> Vec<ImportLine> {
    let none = Entity::default();
    let guards: Vec<_> = ops.iter().map(|op| import_guard(op, hub_image)).collect();
    buf.clear();
    let mut written = Ok(());
    for (op, (mode, etag, twin_etag)) in ops.iter().zip(&guards) {
        let line = ExportLineRef {
            id: op.id,
            module_id: op.module_id,
            etag: *etag,
            twin_etag: *twin_etag,
            import_mode: Some(*mode),
            entity: op.entity.unwrap_or(&none),
        };
        written = write_import(buf, &line);
        if written.is_err() {
            break;
        }
    }
    let read = written
        .map_err(|e| Box::new(ReadError::io("plan.jsonl", e)))
        .and_then(|()| {
            let mut read = Vec::with_capacity(ops.len());
            for line in ExportReader::new(buf.as_slice(), "plan.jsonl") {
                read.push(ImportLine::from(line.map_err(Box::new)?));
            }
            Ok(read)
        });
    match read {
        Ok(read) => {
            // Twin lines carry only the twin: compare what an import reads.
            let same = read.len() == ops.len()
                && read.iter().zip(ops.iter().zip(&guards)).all(
                    |(r, (op, (mode, etag, twin_etag)))| {
                        let entity = op.entity.unwrap_or(&none);
                        r.mode == *mode
                            && r.id == op.id
                            && r.module_id.as_deref() == op.module_id
                            && r.etag.as_deref() == *etag
                            && r.twin_etag.as_deref() == *twin_etag
                            && r.entity.tags == entity.tags
                            && r.entity.desired == entity.desired
                            && r.entity.reported == entity.reported
                            && (matches!(mode, ImportMode::UpdateTwinIfMatchETag)
                                || r.entity == *entity)
                    },
                );
            if !same {
                findings.report(
                    FILES_ROUNDTRIP,
                    c,
                    "",
                    format!("the {} hub's plan read back differently", hub.name()),
                );
                return import_lines(ops, hub_image);
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
            import_lines(ops, hub_image)
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
}

fn replica(hub: Hub) -> ReplicaId {
    ReplicaId::new(hub.name()).expect("valid literal")
}

/// The operations of the plan that brings `export` to the merged
/// devices, in device order, counted by action when asked.
fn plan_ops<'a, M: PlanSource<'a>>(
    outcomes: &'a [M],
    export: &'a HubSnapshots,
    counts: Option<(&mut PlanCounts, Hub)>,
) -> Vec<PlanOp<'a>> {
    let mut ops = Vec::new();
    let mut counts = counts;
    for o in outcomes {
        let device_ops = device_plan(export.devices.get(o.id()), o.merged());
        if let Some((counts, h)) = counts.as_mut() {
            for op in &device_ops {
                *counts
                    .lines
                    .entry((h.name(), action_name(op.action)))
                    .or_default() += 1;
            }
        }
        ops.extend(device_ops);
    }
    ops
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

/// [`same_carried`] of a device a hub holds, compared where it lies.
fn same_carried_held(a: Option<HeldDevice<'_>>, b: Option<&DeviceSnapshot>) -> bool {
    let none = Entity::default();
    let Some(a) = a else {
        return b.is_none();
    };
    let Some(b) = b else {
        return false;
    };
    let device = a.device.map_or(&none, |r| &r.entity);
    let carried = |m: &str| !is_system_module(m);
    let edge = is_edge(device) && SYSTEM_MODULES.iter().all(|m| a.modules.contains_key(*m));
    a.id == b.id
        && *device == b.device
        && edge == is_edge_with_modules(b)
        && a.modules
            .iter()
            .filter(|(m, _)| carried(m))
            .map(|(m, r)| (m, &r.entity))
            .eq(b.modules.iter().filter(|(m, _)| carried(m)))
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
pub(crate) fn failback(
    inputs: &Inputs<'_>,
    hubs: &mut [HubImage; 2],
    check_determinism: bool,
    findings: &mut Findings,
    counts: &mut PlanCounts,
    buf: &mut Vec<u8>,
    previous: &mut Option<[Exported; 2]>,
) -> Failback {
    let Inputs {
        c,
        cycle,
        base,
        stamps,
    } = *inputs;
    let policies = Policies::default();
    let [(s0, e0), (s1, e1)] = exports_checked(hubs, findings, c, buf, previous.take());
    let mut exported = [s0, s1];
    let outcomes = merge_fleet(Some(base), &exported, stamps, &policies, 1).expect(UNSTAMPED);
    if check_determinism {
        exported.swap(0, 1);
        let again = resolve_fleet(Some(base), &exported, stamps, &policies, 2).expect(UNSTAMPED);
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
        exported.swap(0, 1);
    }
    let ops = Hub::BOTH.map(|h| plan_ops(&outcomes, &exported[h.index()], Some((&mut *counts, h))));
    let [ops0, ops1] = &ops;
    let plans = [
        plan_checked(ops0, &hubs[0], findings, c, Hub::BOTH[0], buf),
        plan_checked(ops1, &hubs[1], findings, c, Hub::BOTH[1], buf),
    ];
    drop(ops);
    let [s0, s1] = exported;
    let read = [(s0, e0), (s1, e1)];

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

    // The operator re-runs the failback on what the hubs hold now.
    let [(s0, e0), (s1, e1)] = exports_checked(hubs, findings, c, buf, Some(read));
    let exported = [s0, s1];
    let rerun = resolve_fleet(Some(base), &exported, stamps, &policies, 1).expect(UNSTAMPED);
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
        import_lines(
            &plan_ops(&rerun, &exported[h.index()], None),
            &hubs[h.index()],
        )
    });
    if let Some(line) = rest[y].first() {
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
        let errors = hubs[h.index()].apply_owned(lines);
        import_errors(findings, c, h, &errors);
    }

    for h in Hub::BOTH {
        let held = &hubs[h.index()];
        for (id, merged) in &second {
            if !same_carried_held(held.device(id), *merged) {
                findings.report(
                    HUBS_CONVERGE,
                    c,
                    id,
                    format!("the {} hub differs from the merged state", h.name()),
                );
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
    let [s0, s1] = exported;
    *previous = Some([(s0, e0), (s1, e1)]);
    Failback { outcomes }
}
