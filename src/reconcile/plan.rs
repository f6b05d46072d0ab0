//! Import plans: the fewest guarded operations that bring one hub to the
//! merged state.

use super::apply::{HubImage, ImportLine};
use crate::doc::{DeviceSnapshot, Entity};
use crate::format::ImportMode;

/// What one import line does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Create a device or module the hub lacks (`create`: fails, rather than
    /// overwrite, if it appeared meanwhile).
    Create,
    /// Replace the identity and twin (`updateIfMatchETag`, guarded by the
    /// identity etag).
    UpdateIdentity,
    /// Replace the twin sections only (`updateTwinIfMatchETag`, guarded by
    /// the twin etag).
    UpdateTwin,
    /// Delete (`deleteIfMatchETag`, guarded by the identity etag). Deleting
    /// a device deletes its modules: they get no line of their own.
    Delete,
}

/// One operation of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanOp<'a> {
    /// What it does.
    pub action: Action,
    /// The device id.
    pub id: &'a str,
    /// The module id, for a module line.
    pub module_id: Option<&'a str>,
    /// The state to write (the merged one); `None` for deletes.
    pub entity: Option<&'a Entity>,
}

/// Whether two entities differ in their identity fields.
pub fn identity_differs(a: &Entity, b: &Entity) -> bool {
    a.status != b.status
        || a.authentication != b.authentication
        || a.capabilities != b.capabilities
        || a.device_scope != b.device_scope
        || a.parent_scopes != b.parent_scopes
        || a.extra != b.extra
}

/// Whether two entities differ in their twins.
pub fn twin_differs(a: &Entity, b: &Entity) -> bool {
    a.tags != b.tags || a.desired != b.desired || a.reported != b.reported
}

fn entity_ops<'a>(
    id: &'a str,
    module_id: Option<&'a str>,
    hub: Option<&'a Entity>,
    merged: Option<&'a Entity>,
    out: &mut Vec<PlanOp<'a>>,
) {
    let action = match (hub, merged) {
        (None, None) => return,
        (None, Some(_)) => Action::Create,
        (Some(_), None) => Action::Delete,
        (Some(h), Some(m)) if identity_differs(h, m) => Action::UpdateIdentity,
        (Some(h), Some(m)) if twin_differs(h, m) => Action::UpdateTwin,
        (Some(_), Some(_)) => return,
    };
    out.push(PlanOp {
        action,
        id,
        module_id,
        entity: merged,
    });
}

/// The operations that turn `hub`'s device into `merged`'s: the deletes
/// of modules first, then the device line, then the other module lines by
/// module id.
///
/// An import job can stop after any line. In this order a hub cut short
/// never holds the merged device line beside modules of the incarnation
/// it replaces, which a merge re-run could not tell from a copy of the
/// merged device missing some modules.
///
/// # Example
///
/// ```
/// use failback::doc::DeviceSnapshot;
/// use failback::reconcile::{device_plan, Action};
///
/// let merged = DeviceSnapshot { id: "d1".into(), ..Default::default() };
/// let ops = device_plan(None, Some(&merged));
/// assert_eq!(ops[0].action, Action::Create);
/// assert!(device_plan(Some(&merged), Some(&merged)).is_empty());
/// ```
pub fn device_plan<'a>(
    hub: Option<&'a DeviceSnapshot>,
    merged: Option<&'a DeviceSnapshot>,
) -> Vec<PlanOp<'a>> {
    let mut device = Vec::new();
    let Some(id) = merged.or(hub).map(|d| d.id.as_str()) else {
        return device;
    };
    entity_ops(
        id,
        None,
        hub.map(|d| &d.device),
        merged.map(|d| &d.device),
        &mut device,
    );
    if merged.is_none() {
        return device;
    }
    let mut out = Vec::new();
    let hub_modules = hub.map(|d| &d.modules);
    let merged_modules = merged.map(|d| &d.modules);
    let ids: std::collections::BTreeSet<&'a String> = hub_modules
        .into_iter()
        .chain(merged_modules)
        .flat_map(|m| m.keys())
        .collect();
    for module_id in ids {
        entity_ops(
            id,
            Some(module_id),
            hub_modules.and_then(|m| m.get(module_id)),
            merged_modules.and_then(|m| m.get(module_id)),
            &mut out,
        );
    }
    let (mut ops, others): (Vec<_>, Vec<_>) =
        out.into_iter().partition(|op| op.action == Action::Delete);
    ops.extend(device);
    ops.extend(others);
    ops
}

/// The import lines of a plan for `hub`, each guarded by the etag the hub
/// holds now, so a hub that changed again meanwhile is not clobbered:
/// `create` (never overwrites), `updateIfMatchETag`,
/// `updateTwinIfMatchETag`, `deleteIfMatchETag`.
pub fn import_lines(ops: &[PlanOp<'_>], hub: &HubImage) -> Vec<ImportLine> {
    ops.iter()
        .map(|op| {
            let record = hub.get(op.id, op.module_id);
            let mode = match op.action {
                Action::Create => ImportMode::Create,
                Action::UpdateIdentity => ImportMode::UpdateIfMatchETag,
                Action::UpdateTwin => ImportMode::UpdateTwinIfMatchETag,
                Action::Delete => ImportMode::DeleteIfMatchETag,
            };
            let (etag, twin_etag) = match (op.action, record) {
                (Action::Create, _) | (_, None) => (None, None),
                (Action::UpdateTwin, Some(r)) => (None, Some(r.twin_etag.clone())),
                (_, Some(r)) => (Some(r.etag.clone()), None),
            };
            ImportLine {
                mode,
                id: op.id.to_owned(),
                module_id: op.module_id.map(str::to_owned),
                etag,
                twin_etag,
                entity: op.entity.cloned().unwrap_or_default(),
            }
        })
        .collect()
}

/// Writes one line of an import file. A twin update carries only the twin
/// sections (whole, so either reading of `updateTwin` gives the same
/// result); every other line carries the whole identity.
///
/// # Errors
///
/// Any error of `w`.
pub fn write_import_line<W: std::io::Write>(w: &mut W, line: &ImportLine) -> std::io::Result<()> {
    write_import(
        w,
        &crate::format::ExportLineRef {
            id: &line.id,
            module_id: line.module_id.as_deref(),
            etag: line.etag.as_deref(),
            twin_etag: line.twin_etag.as_deref(),
            import_mode: Some(line.mode),
            entity: &line.entity,
        },
    )
}

/// Writes a borrowed import line: a twin update carries the twin alone.
pub(crate) fn write_import<W: std::io::Write>(
    w: &mut W,
    line: &crate::format::ExportLineRef<'_>,
) -> std::io::Result<()> {
    let twin_only;
    let entity = match line.import_mode {
        Some(ImportMode::UpdateTwinIfMatchETag | ImportMode::UpdateTwin) => {
            twin_only = Entity {
                tags: line.entity.tags.clone(),
                desired: line.entity.desired.clone(),
                reported: line.entity.reported.clone(),
                ..Entity::default()
            };
            &twin_only
        }
        _ => line.entity,
    };
    crate::format::write_export_line(w, &crate::format::ExportLineRef { entity, ..*line })
}
