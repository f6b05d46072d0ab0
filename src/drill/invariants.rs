//! The invariants a drill checks, each a named check that returns
//! violations, and the per-device checks against the oracle.

use std::collections::BTreeMap;

use serde_json::Value;

use super::formats::ExportFormat;
use super::oracle::{
    Fact, Field, Hub, Op, SECTIONS, Val, Write, entity_of, identity_facts, section_of, value_is,
};
use super::sim::DeviceCycle;
use crate::doc::{Conflict, DeviceSnapshot, Entity, Section, Status};
use crate::reconcile::is_system_module;

/// A named invariant of the drill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invariant {
    /// The name printed in tables and reports.
    pub name: &'static str,
    /// What it asserts.
    pub summary: &'static str,
}

macro_rules! invariants {
    ($($konst:ident = $name:literal: $summary:literal;)*) => {
        $(
            #[doc = $summary]
            pub(crate) const $konst: Invariant = Invariant { name: $name, summary: $summary };
        )*
        /// Every invariant, in the order reports list them.
        pub const ALL: &[Invariant] = &[$($konst),*];
    };
}

invariants! {
    HUBS_CONVERGE = "hubs-converge":
        "both hubs equal the merged state once the plans are applied";
    NOTHING_LOST = "nothing-lost":
        "every write is in the merged state or a named conflict loser, unless the primary lost it with its region and no replica held it (counted apart as RPO loss), or no hub's file could show it (keys in a twin file, twins in an identity file; counted apart): with events, nothing is lost beyond what was in flight at failover";
    NO_INVENTED_VALUES = "no-invented-values":
        "every value in the merged state was written by someone";
    DELETED_STAY_DELETED = "deleted-stay-deleted":
        "no deleted device or module comes back unless a later write that saw the delete re-created it";
    DISABLED_STAY_DISABLED = "disabled-stay-disabled":
        "no disabled device comes back enabled unless a write that saw the disable re-enabled it";
    KEYS_WHOLE = "keys-whole":
        "keys are never mixed: every merged authentication is one whole value some write wrote";
    KEYS_CURRENT = "keys-current":
        "keys are never rolled back: no merged key was replaced by a write that had seen it (and that the merge could see: a twin file shows no keys)";
    KEYS_KEPT = "keys-kept":
        "no plan line applied writes an identity without its keys (the hub would make new ones): a hub whose file had none (twins) is sent the keys another input knows, and a merge that would write keys no input knows is refused, naming only such devices, and run again with those hubs exported with keys";
    PLAN_IDEMPOTENT = "plan-idempotent":
        "a plan applied twice changes nothing";
    RESUME_CONVERGES = "resume-converges":
        "a plan interrupted half-way, then the merge re-run, reaches the same merged state";
    DETERMINISTIC = "deterministic":
        "the merge is the same for either hub order and any thread count (one shard in eight merged twice)";
    FILES_ROUNDTRIP = "files-roundtrip":
        "every export and every plan survives IoT Hub's file format: written, read back, unchanged";
    C2D_COMPLETED_NOT_RESENT = "c2d-completed-not-resent":
        "no cloud-to-device message that ended on any hub is sent again after failback";
    C2D_NOTHING_LOST = "c2d-nothing-lost":
        "every cloud-to-device message no hub ended and not expired is sent again, or reported over its device's queue limit";
    JOBS_RESCHEDULED = "jobs-rescheduled":
        "exactly the jobs the failed hub held scheduled or running, that no hub finished or holds, are to be scheduled again";
    CONCIERGE_ROUTES = "concierge-routes":
        "every write went where its device's concierge replica pointed, no hub took a write after a higher epoch moved its device away (but in a split brain), and every replica names the primary after failback";
    REPLICA_UP_TO_LAG = "replica-up-to-lag":
        "with events, the replica equals the primary up to the lag: every primary write older than the replication lag at failover reached it, and its derived device holds every value that arrived and no later arrival replaced";
    REPLICATION_LOSS = "replication-loss":
        "with events, every value lost was written within the lag before failover or by a write no event carries (keys), and no more is lost than with the export backup";
    NO_PANIC = "no-panic":
        "the merge, the plans and the drill ran to the end without panicking";
    SIMULATOR_CONSISTENT = "simulator-consistent":
        "the simulated hubs took every write as written (the drill's own check)";
}

/// One violation of an invariant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// The cycle, from 1.
    pub cycle: usize,
    /// The device, or empty for a fleet-wide violation.
    pub device: String,
    /// What was wrong; secrets appear as fingerprints only.
    pub detail: String,
}

/// The examples kept per invariant.
pub const EXAMPLES: usize = 10;

/// Violations found, per invariant: a count and the first examples.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    counts: BTreeMap<&'static str, u64>,
    examples: BTreeMap<&'static str, Vec<Violation>>,
}

impl Findings {
    /// Records a violation of `invariant`.
    pub fn report(&mut self, invariant: Invariant, cycle: usize, device: &str, detail: String) {
        *self.counts.entry(invariant.name).or_default() += 1;
        let examples = self.examples.entry(invariant.name).or_default();
        if examples.len() < EXAMPLES {
            examples.push(Violation {
                cycle: cycle + 1,
                device: device.to_owned(),
                detail,
            });
        }
    }

    /// Adds the findings of a later part of the run.
    pub fn add(&mut self, other: &Findings) {
        for (name, n) in &other.counts {
            *self.counts.entry(name).or_default() += n;
        }
        for (name, theirs) in &other.examples {
            let mine = self.examples.entry(name).or_default();
            let room = EXAMPLES.saturating_sub(mine.len());
            mine.extend(theirs.iter().take(room).cloned());
        }
    }

    /// The number of violations of `invariant`.
    pub fn count(&self, invariant: Invariant) -> u64 {
        self.counts.get(invariant.name).copied().unwrap_or(0)
    }

    /// The first violations of `invariant`.
    pub fn examples(&self, invariant: Invariant) -> &[Violation] {
        self.examples.get(invariant.name).map_or(&[], Vec::as_slice)
    }

    /// Whether every invariant holds.
    pub fn all_hold(&self) -> bool {
        self.counts.values().all(|n| *n == 0)
    }
}

/// How the writes of the merge inputs were accounted for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Values found in the merged state.
    pub merged: u64,
    /// Values found as named conflict losers.
    pub conflict_losers: u64,
    /// Values a later write replaced having seen them.
    pub superseded: u64,
    /// Values equal to the backup's, so no export showed a change.
    pub unchanged: u64,
    /// Values the primary lost with its region (RPO loss).
    pub rpo_lost: u64,
    /// Values none of the merge's inputs could show: keys written on a hub
    /// read from a twin file, twin values written on a hub read from an
    /// identity file, that no other value accounts for.
    pub unshown: u64,
}

impl Accounting {
    /// Adds another part's accounting.
    pub fn add(&mut self, o: &Accounting) {
        self.merged += o.merged;
        self.conflict_losers += o.conflict_losers;
        self.superseded += o.superseded;
        self.unchanged += o.unchanged;
        self.rpo_lost += o.rpo_lost;
        self.unshown += o.unshown;
    }
}

/// Everything the checks of one device in one cycle look at.
pub(crate) struct DeviceCheck<'a> {
    pub cycle: usize,
    pub id: &'a str,
    /// The device as the cycle started.
    pub start: Option<&'a DeviceSnapshot>,
    /// The backup's device: the base of the merge.
    pub base: Option<&'a DeviceSnapshot>,
    /// The merged device.
    pub merged: Option<&'a DeviceSnapshot>,
    /// Its conflicts.
    pub conflicts: &'a [Conflict],
    /// What the oracle saw.
    pub log: &'a DeviceCycle,
    /// The file each hub's state was read from, primary first.
    pub formats: [ExportFormat; 2],
}

fn where_(f: &Fact) -> String {
    match &f.module {
        Some(m) => format!("module {m} {}", f.field.path()),
        None => f.field.path(),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        let cut: String = s.chars().take(117).collect();
        format!("{cut}...")
    } else {
        s
    }
}

fn describe(w: &Write) -> String {
    format!("{} {} at {}", w.hub.name(), w.kind.name(), w.time)
}

/// Runs every per-device check.
pub(crate) fn check_device(d: &DeviceCheck<'_>, findings: &mut Findings, acc: &mut Accounting) {
    nothing_lost(d, findings, acc);
    no_invented_values(d, findings);
    keys(d, findings);
    deleted_stay_deleted(d, findings);
    disabled_stay_disabled(d, findings);
}

fn superseded(writes: &[Write], wi: usize, f: &Fact) -> bool {
    let Some(w) = writes.get(wi) else {
        return false;
    };
    writes.iter().enumerate().any(|(xi, x)| {
        xi != wi
            && !x.lost
            && x.saw(w)
            && match &x.op {
                Op::Delete { .. } => true,
                Op::ModuleDelete { module, .. } => f.module.as_deref() == Some(module),
                _ => x
                    .facts
                    .iter()
                    .any(|g| g.module == f.module && g.field.overlaps(&f.field)),
            }
    })
}

/// Whether `device` shows `f`: holds its value, or, for a removal, holds
/// none of the leaves it removed. (A removal and a concurrent write of new
/// leaves under the same path are writes to different leaves: the new
/// leaves may stay.)
fn holds(device: Option<&DeviceSnapshot>, f: &Fact) -> bool {
    let entity = device.and_then(|d| entity_of(d, f.module.as_deref()));
    match (&f.value, entity) {
        (Val::Removed(removed), Some(e)) => {
            let Field::Twin(section, path) = &f.field else {
                return value_is(e, &f.field, &Val::Null);
            };
            let map = section_of(e, *section);
            match removed.as_object().filter(|o| !o.is_empty()) {
                Some(o) => super::paths::leaf_refs(o).into_iter().all(|(sub, v)| {
                    let full: Vec<&str> = path.iter().map(String::as_str).chain(sub).collect();
                    super::paths::get(map, &full) != Some(v)
                }),
                None => super::paths::get(map, path) != Some(removed),
            }
        }
        (_, Some(e)) => value_is(e, &f.field, &f.value),
        (value, None) => matches!(value, Val::Null | Val::Removed(_)),
    }
}

/// The event replica's device at failover against the primary's writes
/// since the backup: `emitted` gives each write that made events and
/// whether they arrived. Returns what it broke.
pub(crate) fn check_replica(
    replica: Option<&DeviceSnapshot>,
    writes: &[Write],
    emitted: &[(usize, bool)],
    lag: i64,
    fail: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    // What the replica cannot place: writes after a creation or deletion
    // that did not arrive wait for it (parked).
    let mut device_gap = false;
    let mut module_gaps: Vec<&str> = Vec::new();
    let arrived: Vec<&Write> = emitted
        .iter()
        .filter(|(_, a)| *a)
        .filter_map(|(i, _)| writes.get(*i))
        .collect();
    let replaced = |k: usize, f: &Fact| {
        arrived.iter().skip(k + 1).any(|x| match &x.op {
            Op::Create { .. } | Op::Delete { .. } => true,
            Op::ModuleCreate { module, .. } | Op::ModuleDelete { module, .. } => {
                f.module.as_deref() == Some(module.as_str())
            }
            Op::Update => x
                .facts
                .iter()
                .any(|g| g.module == f.module && g.field.overlaps(&f.field)),
        })
    };
    let mut k = 0;
    for (i, came) in emitted {
        let Some(w) = writes.get(*i) else { continue };
        if !came {
            if w.time + lag <= fail {
                out.push(format!(
                    "{}, older than the lag of {lag} ms, did not reach the replica",
                    describe(w)
                ));
            }
            match &w.op {
                Op::Create { .. } | Op::Delete { .. } => device_gap = true,
                Op::ModuleCreate { module, .. } | Op::ModuleDelete { module, .. } => {
                    module_gaps.push(module)
                }
                Op::Update => {}
            }
            continue;
        }
        if !device_gap {
            for f in &w.facts {
                let parked = f
                    .module
                    .as_deref()
                    .is_some_and(|m| module_gaps.contains(&m));
                if f.field == Field::Auth || parked || replaced(k, f) {
                    continue;
                }
                if !holds(replica, f) {
                    out.push(format!(
                        "{} set {} = {}, which arrived, but the replica's device does not hold it",
                        describe(w),
                        where_(f),
                        short(&f.value.shown())
                    ));
                }
            }
        }
        k += 1;
    }
    let last = arrived
        .iter()
        .rev()
        .find(|w| matches!(w.op, Op::Create { .. } | Op::Delete { .. }));
    match (last.map(|w| &w.op), replica, device_gap) {
        (Some(Op::Delete { .. }), Some(_), false) => {
            out.push("the device's deletion arrived, yet the replica holds it".into())
        }
        (Some(Op::Create { .. }), None, false) => {
            out.push("the device's creation arrived, yet the replica lacks it".into())
        }
        _ => {}
    }
    out
}

fn segments(path: &str) -> Vec<String> {
    if path.is_empty() {
        Vec::new()
    } else {
        path.split('.').map(str::to_owned).collect()
    }
}

/// The value at `rest` inside a conflict side's value: a field's value, or
/// a whole device or module as `Entity::redacted_json` shows it.
fn navigate(value: &Value, rest: &[String]) -> Option<Value> {
    let mut v = value;
    for (i, seg) in rest.iter().enumerate() {
        let at_entity = i == 0 || (i == 2 && rest.first().is_some_and(|s| s == "modules"));
        if seg == "status" && i + 1 == rest.len() && at_entity {
            if let Some(status) = v.get("status").filter(|s| s.is_string()) {
                let mut shown = serde_json::Map::new();
                shown.insert("status".into(), status.clone());
                if let Some(reason) = v.get("statusReason") {
                    shown.insert("reason".into(), reason.clone());
                }
                return Some(Value::Object(shown));
            }
        }
        v = v.get(seg)?;
    }
    Some(v.clone())
}

/// Whether a conflict record names `f`, written by `hub`, as a loser.
fn named_loser(conflicts: &[Conflict], hub: Hub, f: &Fact) -> bool {
    let own = segments(&f.field.path());
    let mut in_device = Vec::new();
    if let Some(m) = &f.module {
        in_device.push("modules".to_owned());
        in_device.push(m.clone());
    }
    in_device.extend(own.iter().cloned());
    let expected = f.value.shown();
    conflicts.iter().any(|c| {
        let at = segments(&c.path);
        let full = if c.module_id == f.module {
            &own
        } else if c.module_id.is_none() {
            &in_device
        } else {
            return false;
        };
        let related = super::paths::is_prefix(&at, full) || super::paths::is_prefix(full, &at);
        c.losers
            .iter()
            .filter(|l| l.hub.as_str() == hub.name())
            .any(|l| {
                if matches!(f.value, Val::Null | Val::Removed(_)) {
                    return related;
                }
                super::paths::is_prefix(&at, full)
                    && navigate(&l.value, &full[at.len()..]).as_ref() == Some(&expected)
            })
    })
}

/// Whether some input of the merge could show `f`, written by `w`: the
/// writing hub's file (unless the primary lost the write with its region),
/// or, for a primary write the event replica carried there, the
/// secondary's (events carry no keys).
fn shown(d: &DeviceCheck<'_>, w: &Write, f: &Fact) -> bool {
    let by = |h: Hub| d.formats[h.index()].shows(&f.field);
    (!w.ghost && by(w.hub)) || (w.replicated && f.field != Field::Auth && by(Hub::Secondary))
}

fn nothing_lost(d: &DeviceCheck<'_>, findings: &mut Findings, acc: &mut Accounting) {
    let writes = &d.log.writes;
    for (wi, w) in writes.iter().enumerate() {
        if w.lost {
            acc.rpo_lost += w.facts.len().max(1) as u64;
            continue;
        }
        for f in &w.facts {
            if f.module.as_deref().is_some_and(is_system_module) {
                continue;
            }
            if superseded(writes, wi, f) {
                acc.superseded += 1;
            } else if holds(d.merged, f) {
                acc.merged += 1;
            } else if named_loser(d.conflicts, w.hub, f)
                // A replicated write reached the merge through the
                // secondary, which the replica seeded with it.
                || (w.replicated && named_loser(d.conflicts, Hub::Secondary, f))
            {
                acc.conflict_losers += 1;
            } else if holds(d.base, f) {
                acc.unchanged += 1;
            } else if !shown(d, w, f) {
                acc.unshown += 1;
            } else {
                findings.report(
                    NOTHING_LOST,
                    d.cycle,
                    d.id,
                    format!(
                        "{} wrote {} = {}: not in the merged state and no conflict names it as a loser",
                        describe(w),
                        where_(f),
                        short(&f.value.shown())
                    ),
                );
            }
        }
    }
}

/// The device and the modules a plan carries: the system modules' contents
/// are each hub's own (the hub makes their keys when it creates an edge
/// device, the deployment and the runtime write their twins), so neither
/// their values nor their keys are checked against the writes.
fn entities(d: &DeviceSnapshot) -> impl Iterator<Item = (Option<&str>, &Entity)> + '_ {
    std::iter::once((None, &d.device)).chain(
        d.modules
            .iter()
            .filter(|(m, _)| !is_system_module(m))
            .map(|(m, e)| (Some(m.as_str()), e)),
    )
}

fn written(d: &DeviceCheck<'_>, f: &Fact) -> bool {
    if d.start.is_some_and(|s| holds(Some(s), f)) {
        return true;
    }
    d.log
        .writes
        .iter()
        .filter(|w| !w.lost)
        .flat_map(|w| &w.facts)
        .any(|g| g.module == f.module && g.field == f.field && g.value == f.value)
}

/// [`written`] of the fact that twin leaf `path` of `section` of `module`
/// holds `value`, asked without making the fact.
fn leaf_written(
    d: &DeviceCheck<'_>,
    module: Option<&str>,
    section: Section,
    path: &[&str],
    value: &Value,
) -> bool {
    let in_start = d
        .start
        .and_then(|s| entity_of(s, module))
        .and_then(|e| super::paths::get(section_of(e, section), path));
    if in_start == Some(value) {
        return true;
    }
    let same_path = |p: &[String]| p.len() == path.len() && p.iter().zip(path).all(|(a, b)| a == b);
    d.log
        .writes
        .iter()
        .filter(|w| !w.lost)
        .flat_map(|w| &w.facts)
        .any(|g| {
            g.module.as_deref() == module
                && matches!(&g.field, Field::Twin(s, p) if *s == section && same_path(p))
                && matches!(&g.value, Val::Json(v) if v == value)
        })
}

fn no_invented_values(d: &DeviceCheck<'_>, findings: &mut Findings) {
    let Some(merged) = d.merged else {
        return;
    };
    let mut report = |f: &Fact| {
        findings.report(
            NO_INVENTED_VALUES,
            d.cycle,
            d.id,
            format!(
                "the merged state holds {} = {}, which no write wrote",
                where_(f),
                short(&f.value.shown())
            ),
        );
    };
    for (module, e) in entities(merged) {
        let mut identity = Vec::new();
        identity_facts(module, e, &mut identity);
        for f in identity {
            if f.field == Field::Auth || written(d, &f) {
                continue;
            }
            report(&f);
        }
        // The twin leaves, most of the values, are compared where they
        // lie: a fact is made only of a leaf to report.
        for section in SECTIONS {
            for (path, value) in super::paths::leaf_refs(section_of(e, section)) {
                if leaf_written(d, module, section, &path, value) {
                    continue;
                }
                report(&Fact {
                    module: module.map(str::to_owned),
                    field: Field::Twin(section, super::paths::owned(&path)),
                    value: Val::Json(value.clone()),
                });
            }
        }
    }
}

/// The write that put the merged authentication of an entity there:
/// `Ok(None)` for the cycle's start state, `Err` when none did.
fn auth_origin<'w>(d: &DeviceCheck<'w>, f: &Fact) -> Result<Option<&'w Write>, ()> {
    if d.start.is_some_and(|s| holds(Some(s), f)) {
        return Ok(None);
    }
    d.log
        .writes
        .iter()
        .filter(|w| !w.lost)
        .find(|w| {
            w.facts
                .iter()
                .any(|g| g.module == f.module && g.field == Field::Auth && g.value == f.value)
        })
        .map(Some)
        .ok_or(())
}

fn keys(d: &DeviceCheck<'_>, findings: &mut Findings) {
    let Some(merged) = d.merged else {
        return;
    };
    for (module, e) in entities(merged) {
        let Some(auth) = &e.authentication else {
            continue;
        };
        let fact = Fact {
            module: module.map(str::to_owned),
            field: Field::Auth,
            value: Val::Auth(auth.clone()),
        };
        let origin = match auth_origin(d, &fact) {
            Ok(origin) => origin,
            Err(()) => {
                findings.report(
                    KEYS_WHOLE,
                    d.cycle,
                    d.id,
                    format!(
                        "{} is {}, which no write wrote as one value",
                        where_(&fact),
                        short(&auth.redacted())
                    ),
                );
                continue;
            }
        };
        // A write that reached the merge only through a twin file (its
        // hub's, or for a primary write lost with the region and carried
        // by the event replica, the secondary's) replaced nothing the merge
        // could see: the file shows neither its keys nor, of a device
        // deleted and created again, that it is another one.
        let keys = |h: Hub| d.formats[h.index()].carries_keys();
        let seen = |x: &Write| (!x.ghost && keys(x.hub)) || (x.replicated && keys(Hub::Secondary));
        let replaced = d.log.writes.iter().find(|x| {
            !x.lost
                && seen(x)
                && origin.is_none_or(|o| x.saw(o))
                && match &x.op {
                    Op::Delete { .. } => true,
                    Op::ModuleDelete { module: m, .. } => module == Some(m.as_str()),
                    _ => x.facts.iter().any(|g| {
                        g.module.as_deref() == module
                            && g.field == Field::Auth
                            && g.value != fact.value
                    }),
                }
        });
        if let Some(x) = replaced {
            findings.report(
                KEYS_CURRENT,
                d.cycle,
                d.id,
                format!(
                    "{} is {}, which {} replaced having seen it",
                    where_(&fact),
                    short(&auth.redacted()),
                    describe(x)
                ),
            );
        }
    }
}

fn deleted_stay_deleted(d: &DeviceCheck<'_>, findings: &mut Findings) {
    let Some(merged) = d.merged else {
        return;
    };
    let writes = &d.log.writes;
    let finals = &d.log.finals;
    for del in writes.iter().filter(|w| !w.lost) {
        match &del.op {
            Op::Delete { inc } => {
                let recreated = writes
                    .iter()
                    .any(|x| !x.lost && matches!(x.op, Op::Create { .. }) && x.saw(del));
                let only_this = finals.iter().all(|h| h.inc.is_none_or(|i| i == *inc));
                if !recreated && only_this {
                    findings.report(
                        DELETED_STAY_DELETED,
                        d.cycle,
                        d.id,
                        format!(
                            "{} deleted the device and no later write that saw the delete re-created it, yet the merged state holds it",
                            describe(del)
                        ),
                    );
                }
            }
            Op::ModuleDelete { module, inc } if merged.modules.contains_key(module) => {
                let recreated = writes.iter().any(|x| {
                    !x.lost
                        && x.saw(del)
                        && match &x.op {
                            Op::ModuleCreate { module: m, .. } => m == module,
                            Op::Create { .. } => {
                                x.facts.iter().any(|f| f.module.as_ref() == Some(module))
                            }
                            _ => false,
                        }
                });
                let only_this = finals
                    .iter()
                    .all(|h| h.modules.get(module).is_none_or(|i| i == inc));
                if !recreated && only_this {
                    findings.report(
                        DELETED_STAY_DELETED,
                        d.cycle,
                        d.id,
                        format!(
                            "{} removed module {module} and no later write that saw it re-added it, yet the merged state holds it",
                            describe(del)
                        ),
                    );
                }
            }
            _ => {}
        }
    }
}

fn disabled_stay_disabled(d: &DeviceCheck<'_>, findings: &mut Findings) {
    let Some(merged) = d.merged else {
        return;
    };
    if merged.device.status.as_ref().map(|s| s.status) != Some(Status::Enabled) {
        return;
    }
    let writes = &d.log.writes;
    let enabled_by =
        |seen: &dyn Fn(&Write) -> bool| writes.iter().any(|x| !x.lost && x.enables() && seen(x));
    let start_disabled = d
        .start
        .and_then(|s| s.device.status.as_ref())
        .is_some_and(|s| s.status == Status::Disabled);
    if start_disabled && !enabled_by(&|_| true) {
        findings.report(
            DISABLED_STAY_DISABLED,
            d.cycle,
            d.id,
            "the device was disabled when the cycle began and no write re-enabled it, yet it is enabled in the merged state".into(),
        );
    }
    let auth = Fact {
        module: None,
        field: Field::Auth,
        value: merged
            .device
            .authentication
            .clone()
            .map_or(Val::Null, Val::Auth),
    };
    let origin = auth_origin(d, &auth).ok().flatten();
    for w in writes.iter().filter(|w| !w.lost && w.disables()) {
        // Creations of one id on several hubs are one device (policy 7): a
        // disable of one holds over the others. Only a disabled incarnation
        // its hub then deleted is gone: an export shows that delete as
        // absence, which is "never had it", and the merged device is
        // another incarnation, created concurrently, that was never
        // disabled.
        let deleted = writes
            .iter()
            .any(|x| !x.lost && x.op == Op::Delete { inc: w.inc });
        let other_incarnation = deleted && origin.is_some_and(|o| o.inc != w.inc && !w.saw(o));
        if other_incarnation || enabled_by(&|x| x.saw(w)) {
            continue;
        }
        findings.report(
            DISABLED_STAY_DISABLED,
            d.cycle,
            d.id,
            format!(
                "{} disabled the device and no write that saw it re-enabled it, yet it is enabled in the merged state",
                describe(w)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::{Authentication, Rule, Secret, Side, StatusValue};
    use crate::drill::oracle::{Kind, device_facts};
    use crate::drill::writes::HubDev;
    use crate::{ReplicaId, Stamp};
    use serde_json::json;

    fn device(key: &str, status: Status) -> DeviceSnapshot {
        let mut d = DeviceSnapshot {
            id: "dev-1".into(),
            ..Default::default()
        };
        d.device.status = Some(StatusValue {
            status,
            reason: None,
        });
        d.device.authentication = Some(Authentication::sas(
            Secret::new(&format!("{key}1")),
            Secret::new(&format!("{key}2")),
        ));
        d.device.desired = json!({"fw": {"version": "1.0"}, "logLevel": "info"})
            .as_object()
            .cloned()
            .unwrap_or_default()
            .into();
        d
    }

    fn write(hub: Hub, seq: u32, kind: Kind, op: Op, facts: Vec<Fact>) -> Write {
        Write {
            hub,
            time: i64::from(seq),
            seq,
            in_backup: false,
            ghost: false,
            replicated: false,
            lost: false,
            kind,
            op,
            inc: 0,
            facts,
        }
    }

    /// A key rotation on `hub` to `rotated`'s keys, its `seq`-th write.
    fn rotation(hub: Hub, seq: u32, rotated: &DeviceSnapshot) -> Write {
        let keys = device_facts(rotated)
            .into_iter()
            .filter(|f| f.field == Field::Auth)
            .collect();
        write(hub, seq, Kind::Rotate, Op::Update, keys)
    }

    fn desired(path: &str, value: Value) -> Fact {
        Fact {
            module: None,
            field: Field::Twin(
                crate::doc::Section::Desired,
                path.split('.').map(str::to_owned).collect(),
            ),
            value: Val::Json(value),
        }
    }

    fn run(
        start: &DeviceSnapshot,
        merged: Option<&DeviceSnapshot>,
        conflicts: &[Conflict],
        writes: Vec<Write>,
        finals: [HubDev; 2],
    ) -> Findings {
        run_read_from(
            start,
            merged,
            conflicts,
            writes,
            finals,
            [ExportFormat::Keys; 2],
        )
        .0
    }

    /// [`run`] with each hub read from a file of `formats`.
    fn run_read_from(
        start: &DeviceSnapshot,
        merged: Option<&DeviceSnapshot>,
        conflicts: &[Conflict],
        writes: Vec<Write>,
        finals: [HubDev; 2],
        formats: [ExportFormat; 2],
    ) -> (Findings, Accounting) {
        let log = DeviceCycle {
            writes,
            finals,
            replica: Vec::new(),
        };
        let check = DeviceCheck {
            cycle: 0,
            id: "dev-1",
            start: Some(start),
            base: Some(start),
            merged,
            conflicts,
            log: &log,
            formats,
        };
        let mut findings = Findings::default();
        let mut accounting = Accounting::default();
        check_device(&check, &mut findings, &mut accounting);
        (findings, accounting)
    }

    /// A twin write of a hub read from an identity file reached no input:
    /// counted apart. Read from a twin file, it must be in the merge.
    #[test]
    fn a_value_no_file_could_show_is_counted_apart_and_only_that() {
        let start = device("k", Status::Enabled);
        let w = write(
            Hub::Secondary,
            1,
            Kind::Desired,
            Op::Update,
            vec![desired("fw.version", json!("2.0"))],
        );
        let keys = ExportFormat::Keys;
        let (findings, accounting) = run_read_from(
            &start,
            Some(&start),
            &[],
            vec![w.clone()],
            alive(),
            [keys, ExportFormat::Identity],
        );
        assert!(findings.all_hold(), "{findings:?}");
        assert_eq!(accounting.unshown, 1);
        let (findings, accounting) = run_read_from(
            &start,
            Some(&start),
            &[],
            vec![w],
            alive(),
            [ExportFormat::Identity, ExportFormat::Twin],
        );
        assert_eq!(findings.count(NOTHING_LOST), 1);
        assert_eq!(accounting.unshown, 0);
    }

    /// A rotation on a hub read from a twin file is one the merge could
    /// not see: the base's keys it keeps are no roll-back. Read with keys,
    /// they are.
    #[test]
    fn keys_a_twin_file_hid_are_not_rolled_back() {
        let start = device("k", Status::Enabled);
        let rotate = rotation(Hub::Primary, 1, &device("r", Status::Enabled));
        let twin = [ExportFormat::Twin, ExportFormat::Keys];
        let (findings, accounting) = run_read_from(
            &start,
            Some(&start),
            &[],
            vec![rotate.clone()],
            alive(),
            twin,
        );
        assert!(findings.all_hold(), "{findings:?}");
        assert_eq!(accounting.unshown, 1);
        let findings = run(&start, Some(&start), &[], vec![rotate], alive());
        assert_eq!(findings.count(KEYS_CURRENT), 1);
    }

    fn alive() -> [HubDev; 2] {
        let live = HubDev::at_start(Some(&device("k", Status::Enabled)), true);
        [live.clone(), live]
    }

    #[test]
    fn a_correct_merge_passes_every_check() {
        let start = device("k", Status::Enabled);
        let mut merged = start.clone();
        merged.device.desired["fw"]["version"] = json!("2.0");
        let w = write(
            Hub::Secondary,
            1,
            Kind::Desired,
            Op::Update,
            vec![desired("fw.version", json!("2.0"))],
        );
        let findings = run(&start, Some(&merged), &[], vec![w], alive());
        assert!(findings.all_hold(), "{findings:?}");
    }

    #[test]
    fn a_dropped_write_fails_nothing_lost_unless_a_conflict_names_it() {
        let start = device("k", Status::Enabled);
        let w = write(
            Hub::Primary,
            1,
            Kind::Desired,
            Op::Update,
            vec![desired("fw.version", json!("2.0"))],
        );
        let findings = run(&start, Some(&start), &[], vec![w.clone()], alive());
        assert_eq!(findings.count(NOTHING_LOST), 1);
        let replica = |h: &str| ReplicaId::new(h).unwrap();
        let conflict = Conflict {
            id: "dev-1".into(),
            module_id: None,
            path: "properties.desired.fw".into(),
            rule: Rule::Shape,
            winner: Side {
                hub: replica("secondary"),
                value: json!("off"),
                stamp: Stamp::new(2, 0, replica("secondary")),
            },
            losers: vec![Side {
                hub: replica("primary"),
                value: json!({"version": "2.0"}),
                stamp: Stamp::new(1, 0, replica("primary")),
            }],
        };
        let findings = run(&start, Some(&start), &[conflict], vec![w], alive());
        assert!(findings.all_hold(), "{findings:?}");
    }

    /// Policy 7: a device created on both hubs is one device, so a
    /// creation made disabled holds over the other hub's enabled one. Only
    /// when its hub then deleted it (absence, in an export: never had it)
    /// is the merged device the other creation, never disabled.
    #[test]
    fn a_concurrent_enabled_creation_does_not_undo_a_disabled_one() {
        let start = device("k", Status::Enabled);
        let (on_p, on_s) = (device("p", Status::Disabled), device("s", Status::Enabled));
        let create = |hub, dev: &DeviceSnapshot, inc| Write {
            inc,
            ..write(
                hub,
                1,
                Kind::Provision,
                Op::Create { inc },
                device_facts(dev),
            )
        };
        let (p, s) = (
            create(Hub::Primary, &on_p, 7),
            create(Hub::Secondary, &on_s, 8),
        );
        let findings = run(
            &start,
            Some(&on_s),
            &[],
            vec![p.clone(), s.clone()],
            alive(),
        );
        assert_eq!(findings.count(DISABLED_STAY_DISABLED), 1, "{findings:?}");
        let delete = Write {
            inc: 7,
            ..write(
                Hub::Primary,
                2,
                Kind::Delete,
                Op::Delete { inc: 7 },
                Vec::new(),
            )
        };
        let findings = run(&start, Some(&on_s), &[], vec![p, delete, s], alive());
        assert_eq!(findings.count(DISABLED_STAY_DISABLED), 0, "{findings:?}");
    }

    #[test]
    fn an_enabled_merge_after_an_unseen_disable_fails() {
        let start = device("k", Status::Enabled);
        let disable = write(
            Hub::Secondary,
            1,
            Kind::Disable,
            Op::Update,
            vec![Fact {
                module: None,
                field: Field::Status,
                value: Val::Status(StatusValue {
                    status: Status::Disabled,
                    reason: Some("stolen".into()),
                }),
            }],
        );
        let mut enable = write(Hub::Primary, 1, Kind::Enable, Op::Update, Vec::new());
        enable.facts.push(Fact {
            module: None,
            field: Field::Status,
            value: Val::Status(StatusValue {
                status: Status::Enabled,
                reason: Some("ok".into()),
            }),
        });
        let mut merged = start.clone();
        merged.device.status = Some(StatusValue {
            status: Status::Enabled,
            reason: Some("ok".into()),
        });
        let conflicts = [];
        let findings = run(
            &start,
            Some(&merged),
            &conflicts,
            vec![disable.clone(), enable],
            alive(),
        );
        assert_eq!(findings.count(DISABLED_STAY_DISABLED), 1);
        // The same enable made on the secondary after the disable is fine.
        let mut seen = write(Hub::Secondary, 2, Kind::Enable, Op::Update, Vec::new());
        seen.facts = merged
            .device
            .status
            .clone()
            .map(|s| Fact {
                module: None,
                field: Field::Status,
                value: Val::Status(s),
            })
            .into_iter()
            .collect();
        let findings = run(
            &start,
            Some(&merged),
            &conflicts,
            vec![disable, seen],
            alive(),
        );
        assert_eq!(findings.count(DISABLED_STAY_DISABLED), 0, "{findings:?}");
    }

    #[test]
    fn a_deleted_device_that_comes_back_fails() {
        let start = device("k", Status::Enabled);
        let delete = write(
            Hub::Secondary,
            1,
            Kind::Delete,
            Op::Delete { inc: 0 },
            vec![],
        );
        let mut finals = alive();
        finals[1] = HubDev {
            inc: None,
            modules: BTreeMap::new(),
            known: true,
        };
        let findings = run(
            &start,
            Some(&start),
            &[],
            vec![delete.clone()],
            finals.clone(),
        );
        assert_eq!(findings.count(DELETED_STAY_DELETED), 1);
        let findings = run(&start, None, &[], vec![delete], finals);
        assert!(findings.all_hold(), "{findings:?}");
    }

    #[test]
    fn mixed_or_rolled_back_keys_fail() {
        let start = device("k", Status::Enabled);
        let rotate = rotation(Hub::Secondary, 1, &device("r", Status::Enabled));
        // Rolled back: the start keys, which the rotation had seen.
        let findings = run(&start, Some(&start), &[], vec![rotate.clone()], alive());
        assert_eq!(findings.count(KEYS_CURRENT), 1, "{findings:?}");
        // Mixed: the primary key of one value with the secondary of another.
        let mut mixed = start.clone();
        mixed.device.authentication =
            Some(Authentication::sas(Secret::new("k1"), Secret::new("r2")));
        let findings = run(&start, Some(&mixed), &[], vec![rotate], alive());
        assert_eq!(findings.count(KEYS_WHOLE), 1, "{findings:?}");
    }

    #[test]
    fn an_invented_value_fails() {
        let start = device("k", Status::Enabled);
        let mut merged = start.clone();
        merged.device.desired.insert("ghost".into(), json!(42));
        let findings = run(&start, Some(&merged), &[], vec![], alive());
        assert_eq!(findings.count(NO_INVENTED_VALUES), 1);
    }
}
