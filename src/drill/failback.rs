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
use crate::format::{ExportReader, ImportMode, ReadError, collect_export};
use crate::reconcile::{
    Action, DeviceOutcome, HubImage, HubSnapshots, ImportLine, SYSTEM_MODULES, device_plan,
    import_lines, is_edge, is_system_module, merge_fleet, write_import_line,
};

/// A hub's export as the failback reads it: the hub written as an export
/// file and read back by the export reader.
///
/// # Errors
///
/// The reader's, should the writer produce a line it cannot take.
pub fn export_roundtrip(hub: &HubImage) -> Result<HubImage, Box<ReadError>> {
    let mut bytes = Vec::new();
    hub.write_export(&mut bytes)
        .map_err(|e| ReadError::io("export.jsonl", e))?;
    let file =
        collect_export(ExportReader::new(bytes.as_slice(), "export.jsonl")).map_err(Box::new)?;
    Ok(HubImage::from_export(&file))
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

/// The hubs' exports through the file format; a hub whose export does not
/// survive it is reported and merged as held.
fn exports_checked(hubs: &[HubImage; 2], findings: &mut Findings, c: usize) -> [HubSnapshots; 2] {
    Hub::BOTH.map(|h| {
        let held = &hubs[h.index()];
        let read = match export_roundtrip(held) {
            Ok(read) if read == *held => read,
            Ok(read) => {
                let (a, b) = (held.snapshots(), read.snapshots());
                let id = a
                    .iter()
                    .find(|(id, d)| b.get(*id) != Some(*d))
                    .map_or(String::new(), |(id, _)| id.clone());
                findings.report(
                    FILES_ROUNDTRIP,
                    c,
                    &id,
                    format!("the {} hub's export read back differently", h.name()),
                );
                held.clone()
            }
            Err(e) => {
                findings.report(
                    FILES_ROUNDTRIP,
                    c,
                    e.device.as_deref().unwrap_or(""),
                    format!("the {} hub's export does not read back: {e}", h.name()),
                );
                held.clone()
            }
        };
        HubSnapshots {
            hub: replica(h),
            devices: read.snapshots(),
            times: BTreeMap::new(),
        }
    })
}

/// A plan through the file format; a plan that does not survive it is
/// reported and applied as made.
fn plan_checked(
    lines: Vec<ImportLine>,
    findings: &mut Findings,
    c: usize,
    hub: Hub,
) -> Vec<ImportLine> {
    match plan_roundtrip(&lines) {
        Ok(read) => {
            // Twin lines carry only the twin: compare what an import reads.
            let same = read.len() == lines.len()
                && read.iter().zip(&lines).all(|(r, l)| {
                    r.mode == l.mode
                        && r.id == l.id
                        && r.module_id == l.module_id
                        && r.etag == l.etag
                        && r.twin_etag == l.twin_etag
                        && r.entity.tags == l.entity.tags
                        && r.entity.desired == l.entity.desired
                        && r.entity.reported == l.entity.reported
                        && (matches!(l.mode, ImportMode::UpdateTwinIfMatchETag)
                            || r.entity == l.entity)
                });
            if !same {
                findings.report(
                    FILES_ROUNDTRIP,
                    c,
                    "",
                    format!("the {} hub's plan read back differently", hub.name()),
                );
                return lines;
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
            lines
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
    /// What each hub holds at the end.
    pub after: [BTreeMap<String, DeviceSnapshot>; 2],
}

fn replica(hub: Hub) -> ReplicaId {
    ReplicaId::new(hub.name()).expect("valid literal")
}

fn merged_of(outcomes: &[DeviceOutcome]) -> BTreeMap<&str, Option<&DeviceSnapshot>> {
    outcomes
        .iter()
        .map(|o| (o.id.as_str(), o.merge.merged.as_ref()))
        .collect()
}

fn plan(
    outcomes: &[DeviceOutcome],
    export: &HubSnapshots,
    hub: &HubImage,
    counts: Option<(&mut PlanCounts, Hub)>,
) -> Vec<ImportLine> {
    let mut lines = Vec::new();
    let mut counts = counts;
    for o in outcomes {
        let ops = device_plan(export.devices.get(&o.id), o.merge.merged.as_ref());
        if let Some((counts, h)) = counts.as_mut() {
            for op in &ops {
                *counts
                    .lines
                    .entry((h.name(), action_name(op.action)))
                    .or_default() += 1;
            }
        }
        lines.extend(import_lines(&ops, hub));
    }
    lines
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
    let (Some(a), Some(b)) = (a, b) else {
        return a.is_none() && b.is_none();
    };
    fn carried(d: &DeviceSnapshot) -> impl Iterator<Item = (&String, &Entity)> {
        d.modules.iter().filter(|(m, _)| !is_system_module(m))
    }
    let edge = |d: &DeviceSnapshot| {
        is_edge(&d.device) && SYSTEM_MODULES.iter().all(|m| d.modules.contains_key(*m))
    };
    a.id == b.id && a.device == b.device && edge(a) == edge(b) && carried(a).eq(carried(b))
}

/// Fails back one shard: merges, applies the plans (one applied twice, the
/// other cut short and finished by a second merge), and checks that the
/// hubs converge.
pub(crate) fn failback(
    inputs: &Inputs<'_>,
    hubs: &mut [HubImage; 2],
    check_determinism: bool,
    findings: &mut Findings,
    counts: &mut PlanCounts,
) -> Failback {
    let Inputs {
        c,
        cycle,
        base,
        stamps,
    } = *inputs;
    let policies = Policies::default();
    let mut exported = exports_checked(hubs, findings, c);
    let outcomes = merge_fleet(Some(base), &exported, stamps, &policies, 1).expect(UNSTAMPED);
    if check_determinism {
        exported.swap(0, 1);
        let again = merge_fleet(Some(base), &exported, stamps, &policies, 2).expect(UNSTAMPED);
        exported.swap(0, 1);
        if again != outcomes {
            let first = outcomes
                .iter()
                .zip(&again)
                .find(|(a, b)| a != b)
                .map_or(String::new(), |(a, _)| a.id.clone());
            findings.report(
                DETERMINISTIC,
                c,
                &first,
                "merging with the hubs in the other order on two threads gave another result"
                    .into(),
            );
        }
    }
    let plans = Hub::BOTH.map(|h| {
        plan(
            &outcomes,
            &exported[h.index()],
            &hubs[h.index()],
            Some((&mut *counts, h)),
        )
    });
    let [p0, p1] = plans;
    let plans = [
        plan_checked(p0, findings, c, Hub::BOTH[0]),
        plan_checked(p1, findings, c, Hub::BOTH[1]),
    ];

    let cut_hub = cycle.interrupt;
    let full_hub = cut_hub.other();
    let (x, y) = (cut_hub.index(), full_hub.index());
    let errors = hubs[y].apply(&plans[y]);
    import_errors(findings, c, full_hub, &errors);
    let once = hubs[y].clone();
    hubs[y].apply(&plans[y]);
    if hubs[y] != once {
        let before = once.snapshots();
        let after = hubs[y].snapshots();
        let changed = after
            .iter()
            .find(|(id, d)| before.get(*id) != Some(*d))
            .map_or(String::new(), |(id, _)| id.clone());
        findings.report(
            PLAN_IDEMPOTENT,
            c,
            &changed,
            format!(
                "applying the {} hub's plan a second time changed it",
                full_hub.name()
            ),
        );
    }
    let cut = plans[x].len() * cycle.interrupt_permille as usize / 1000;
    let errors = hubs[x].apply(plans[x].get(..cut).unwrap_or_default());
    import_errors(findings, c, cut_hub, &errors);

    // The operator re-runs the failback on what the hubs hold now.
    let exported = exports_checked(hubs, findings, c);
    let rerun = merge_fleet(Some(base), &exported, stamps, &policies, 1).expect(UNSTAMPED);
    let first = merged_of(&outcomes);
    let second = merged_of(&rerun);
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
    let rest = Hub::BOTH.map(|h| plan(&rerun, &exported[h.index()], &hubs[h.index()], None));
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
    for h in Hub::BOTH {
        let errors = hubs[h.index()].apply(&rest[h.index()]);
        import_errors(findings, c, h, &errors);
    }

    let after = [hubs[0].snapshots(), hubs[1].snapshots()];
    for h in Hub::BOTH {
        let held = &after[h.index()];
        for (id, merged) in &second {
            if !same_carried(held.get(*id), *merged) {
                findings.report(
                    HUBS_CONVERGE,
                    c,
                    id,
                    format!("the {} hub differs from the merged state", h.name()),
                );
            }
        }
        for id in held.keys().filter(|id| !second.contains_key(id.as_str())) {
            findings.report(
                HUBS_CONVERGE,
                c,
                id,
                format!(
                    "the {} hub holds a device the merge does not know",
                    h.name()
                ),
            );
        }
    }
    Failback { outcomes, after }
}
