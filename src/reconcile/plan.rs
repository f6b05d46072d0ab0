//! Import plans: the fewest guarded operations that bring one hub to the
//! merged state.

#[cfg(feature = "drill")]
use super::apply::{HubImage, ImportLine};
use crate::doc::{DeviceSnapshot, Entity};
use crate::format::ImportMode;

/// What one import line does: the [`PlanOp::action`] of each operation of
/// a [`device_plan`].
///
/// # Example
///
/// ```
/// use failback::doc::DeviceSnapshot;
/// use failback::reconcile::{device_plan, Action};
///
/// let on_hub = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
/// let mut merged = on_hub.clone();
/// merged.device.tags.insert("site".into(), "lyon".into());
/// let actions: Vec<Action> = device_plan(Some(&on_hub), Some(&merged)).iter().map(|op| op.action).collect();
/// assert_eq!(actions, [Action::UpdateTwin]); // a twin change only
/// assert_eq!(device_plan(Some(&on_hub), None)[0].action, Action::Delete);
/// ```
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

impl Action {
    /// The import mode that carries this action to a hub, guarded by an
    /// etag so that a hub that changed again meanwhile is not clobbered.
    /// `twin_etag_known` says whether the hub's input gave its twin etags:
    /// without them (an identity file) a twin change travels as a whole
    /// identity line, guarded by the identity's etag.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::ImportMode;
    /// use failback::reconcile::Action;
    ///
    /// assert_eq!(Action::UpdateTwin.import_mode(true), ImportMode::UpdateTwinIfMatchETag);
    /// assert_eq!(Action::UpdateTwin.import_mode(false), ImportMode::UpdateIfMatchETag);
    /// assert_eq!(Action::Delete.import_mode(true), ImportMode::DeleteIfMatchETag);
    /// ```
    pub fn import_mode(self, twin_etag_known: bool) -> ImportMode {
        match self {
            Action::Create => ImportMode::Create,
            Action::UpdateIdentity => ImportMode::UpdateIfMatchETag,
            Action::UpdateTwin if twin_etag_known => ImportMode::UpdateTwinIfMatchETag,
            Action::UpdateTwin => ImportMode::UpdateIfMatchETag,
            Action::Delete => ImportMode::DeleteIfMatchETag,
        }
    }
}

/// The `(eTag, twinETag)` an import line in `mode` carries, from the
/// `(etag, twin etag)` of the record the hub `held`: none for a `create`
/// (or a record the hub lacks), the twin etag for a twin update, the
/// identity etag otherwise. An etag the input did not give is written
/// empty, which matches nothing: the hub refuses the line rather than
/// overwrite what nobody read.
pub(crate) fn guard<'a>(
    mode: ImportMode,
    held: Option<(Option<&'a str>, Option<&'a str>)>,
) -> (Option<&'a str>, Option<&'a str>) {
    match (mode, held) {
        (ImportMode::Create, _) | (_, None) => (None, None),
        (ImportMode::UpdateTwinIfMatchETag, Some((_, twin))) => {
            (None, Some(twin.unwrap_or_default()))
        }
        (_, Some((etag, _))) => (Some(etag.unwrap_or_default()), None),
    }
}

/// One operation of a plan, as [`device_plan`] gives it.
///
/// # Example
///
/// ```
/// use failback::doc::{DeviceSnapshot, Entity};
/// use failback::reconcile::{device_plan, Action};
///
/// let mut on_hub = DeviceSnapshot { id: "edge-gw".into(), ..Default::default() };
/// let merged = on_hub.clone();
/// on_hub.modules.insert("camera".into(), Entity::default());
/// let ops = device_plan(Some(&on_hub), Some(&merged));
/// assert_eq!(ops.len(), 1);
/// assert_eq!((ops[0].action, ops[0].id, ops[0].module_id), (Action::Delete, "edge-gw", Some("camera")));
/// assert!(ops[0].entity.is_none(), "a delete writes no state");
/// ```
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
/// module id. The system modules of edge devices (`SYSTEM_MODULES`) get
/// no line: `not_carried` lists what they would have needed.
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
    split_plan(hub, merged).0
}

/// The plan, and the operations it leaves out ([`not_carried`]).
pub(crate) fn split_plan<'a>(
    hub: Option<&'a DeviceSnapshot>,
    merged: Option<&'a DeviceSnapshot>,
) -> (Vec<PlanOp<'a>>, Vec<PlanOp<'a>>) {
    let (ops, system) = every_op(hub, merged);
    if !system {
        return (ops, Vec::new());
    }
    let edge = merged.is_some_and(|d| is_edge(&d.device));
    ops.into_iter().partition(|op| carried(op, edge))
}

/// Whether a plan writes `op`: every operation but those of the system
/// modules, whose only line is their delete once their device is no edge
/// device any more.
fn carried(op: &PlanOp<'_>, edge: bool) -> bool {
    !op.module_id.is_some_and(is_system_module) || (op.action == Action::Delete && !edge)
}

/// Whether an identity is an edge device's (`capabilities.iotEdge`).
pub(crate) fn is_edge(entity: &Entity) -> bool {
    entity
        .capabilities
        .as_ref()
        .and_then(|c| c.get("iotEdge"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

/// The system modules of an edge device. The hub creates them with the
/// device (`capabilities.iotEdge`) and deletes them with it, keeps their
/// keys itself, and their twins belong to the deployment (desired) and the
/// edge runtime (reported); importing their lines has been reported to
/// fail. A plan writes no line for them, but their deletes once their
/// device is no edge device any more.
pub const SYSTEM_MODULES: [&str; 2] = ["$edgeAgent", "$edgeHub"];

/// Whether `module_id` is one of [`SYSTEM_MODULES`].
pub fn is_system_module(module_id: &str) -> bool {
    SYSTEM_MODULES.contains(&module_id)
}

/// The operations a plan leaves out: those of the system modules, which
/// an operator is told about (the deployment and the hub restore them).
///
/// ```
/// use failback::doc::{DeviceSnapshot, Entity};
/// use failback::reconcile::{device_plan, not_carried};
///
/// let mut merged = DeviceSnapshot { id: "gw".into(), ..Default::default() };
/// merged.modules.insert("$edgeAgent".into(), Entity::default());
/// assert_eq!(device_plan(None, Some(&merged)).len(), 1);
/// assert_eq!(not_carried(None, Some(&merged))[0].module_id, Some("$edgeAgent"));
/// ```
#[cfg(feature = "internals")]
pub fn not_carried<'a>(
    hub: Option<&'a DeviceSnapshot>,
    merged: Option<&'a DeviceSnapshot>,
) -> Vec<PlanOp<'a>> {
    split_plan(hub, merged).1
}

/// Every operation, system modules' included, and whether there are any
/// of those.
pub(crate) fn every_op<'a>(
    hub: Option<&'a DeviceSnapshot>,
    merged: Option<&'a DeviceSnapshot>,
) -> (Vec<PlanOp<'a>>, bool) {
    let mut device = Vec::new();
    let Some(id) = merged.or(hub).map(|d| d.id.as_str()) else {
        return (device, false);
    };
    entity_ops(
        id,
        None,
        hub.map(|d| &d.device),
        merged.map(|d| &d.device),
        &mut device,
    );
    if merged.is_none() {
        return (device, false);
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
    let system = out
        .iter()
        .any(|op| op.module_id.is_some_and(is_system_module));
    let (mut ops, others): (Vec<_>, Vec<_>) =
        out.into_iter().partition(|op| op.action == Action::Delete);
    ops.extend(device);
    ops.extend(others);
    (ops, system)
}

/// The import lines of a plan for `hub`, each guarded by the etag the hub
/// holds now, so a hub that changed again meanwhile is not clobbered:
#[cfg(feature = "drill")]
/// `create` (never overwrites), `updateIfMatchETag`,
/// `updateTwinIfMatchETag`, `deleteIfMatchETag`.
pub fn import_lines(ops: &[PlanOp<'_>], hub: &HubImage) -> Vec<ImportLine> {
    ops.iter()
        .map(|op| {
            let (mode, etag, twin_etag) = import_guard(op, hub);
            ImportLine {
                mode,
                id: op.id.to_owned(),
                module_id: op.module_id.map(str::to_owned),
                etag: etag.map(str::to_owned),
                twin_etag: twin_etag.map(str::to_owned),
                entity: op.entity.cloned().unwrap_or_default(),
            }
        })
        .collect()
}

/// The import mode of `op`'s line and the etag and twin etag that guard
/// it, as [`import_lines`] writes them.
#[cfg(feature = "drill")]
pub(crate) fn import_guard<'h>(
    op: &PlanOp<'_>,
    hub: &'h HubImage,
) -> (ImportMode, Option<&'h str>, Option<&'h str>) {
    let held = hub
        .get(op.id, op.module_id)
        .map(|r| (Some(r.etag.as_str()), Some(r.twin_etag.as_str())));
    let mode = op.action.import_mode(true);
    let (etag, twin_etag) = guard(mode, held);
    (mode, etag, twin_etag)
}

/// Writes one line of an import file. A twin update carries only the twin
/// sections (whole, so either reading of `updateTwin` gives the same
/// result); every other line carries the whole identity.
///
/// # Errors
///
/// Any error of `w`.
#[cfg(feature = "drill")]
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
    // A twin update carries the twin sections alone.
    let twin_only = matches!(
        line.import_mode,
        Some(ImportMode::UpdateTwinIfMatchETag | ImportMode::UpdateTwin)
    );
    crate::format::write_line(w, line, twin_only)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::doc::{Authentication, Secret, Status, StatusValue};
    #[cfg(feature = "drill")]
    use crate::reconcile::Record;

    fn enabled() -> Entity {
        Entity {
            status: Some(StatusValue {
                status: Status::Enabled,
                reason: None,
            }),
            ..Entity::default()
        }
    }

    fn edge_device(with_system_modules: bool) -> DeviceSnapshot {
        let mut d = DeviceSnapshot {
            id: "gw".into(),
            device: enabled(),
            ..DeviceSnapshot::default()
        };
        d.device.capabilities = Some(json!({"iotEdge": true}));
        if with_system_modules {
            for m in SYSTEM_MODULES {
                d.modules.insert(m.into(), Entity::default());
            }
        }
        d.modules.insert("filter".into(), Entity::default());
        d
    }

    /// The hub makes an edge device's system modules and the deployment
    /// their twins: a plan creates, updates and deletes none of them while
    /// the device is an edge device, and says what it left out.
    #[test]
    fn system_modules_get_no_line_while_their_device_is_an_edge_device() {
        let merged = edge_device(true);
        let created: Vec<_> = device_plan(None, Some(&merged))
            .iter()
            .map(|op| (op.action, op.module_id))
            .collect();
        assert_eq!(
            created,
            [(Action::Create, None), (Action::Create, Some("filter"))]
        );
        assert_eq!(not_carried(None, Some(&merged)).len(), 2);

        let mut hub = merged.clone();
        if let Some(agent) = hub.modules.get_mut("$edgeAgent") {
            agent.desired.insert("schemaVersion".into(), json!("1.0"));
            agent.authentication = Some(Authentication::sas(Secret::new("a"), Secret::new("b")));
        }
        hub.modules.remove("$edgeHub");
        assert!(device_plan(Some(&hub), Some(&merged)).is_empty());
        let left_out: Vec<_> = not_carried(Some(&hub), Some(&merged))
            .iter()
            .map(|op| (op.action, op.module_id))
            .collect();
        assert_eq!(
            left_out,
            [
                (Action::UpdateIdentity, Some("$edgeAgent")),
                (Action::Create, Some("$edgeHub"))
            ]
        );
        // A device deleted takes them with it: one line.
        assert_eq!(device_plan(Some(&hub), None).len(), 1);
        assert!(not_carried(Some(&hub), None).is_empty());
    }

    /// A device that is no edge device any more loses its system modules:
    /// their deletes are the one line a plan writes for them.
    #[test]
    fn system_modules_are_deleted_once_their_device_is_no_edge_device() {
        let hub = edge_device(true);
        let mut merged = edge_device(false);
        merged.device.capabilities = Some(json!({"iotEdge": false}));
        let ops: Vec<_> = device_plan(Some(&hub), Some(&merged))
            .iter()
            .map(|op| (op.action, op.module_id))
            .collect();
        assert_eq!(
            ops,
            [
                (Action::Delete, Some("$edgeAgent")),
                (Action::Delete, Some("$edgeHub")),
                (Action::UpdateIdentity, None)
            ]
        );
        assert!(not_carried(Some(&hub), Some(&merged)).is_empty());
        // Kept by a non-edge merged device, they are still not created.
        merged.modules = hub.modules.clone();
        let lacking = edge_device(false);
        let ops = device_plan(Some(&lacking), Some(&merged));
        assert!(
            ops.iter()
                .all(|op| !op.module_id.is_some_and(is_system_module)),
            "{ops:?}"
        );
    }

    /// Every identity field, changed alone, is an identity change; every
    /// twin section, changed alone, a twin change.
    #[test]
    fn each_field_alone_decides_the_action() {
        let base = enabled();
        let identity: [fn(&mut Entity); 6] = [
            |e| {
                e.status = Some(StatusValue {
                    status: Status::Disabled,
                    reason: None,
                })
            },
            |e| e.authentication = Some(Authentication::sas(Secret::new("a"), Secret::new("b"))),
            |e| e.capabilities = Some(json!({"iotEdge": true})),
            |e| e.device_scope = Some("scope".into()),
            |e| e.parent_scopes = Some(json!(["p"])),
            |e| {
                e.extra.insert("modelId".into(), json!("dtmi:x;1"));
            },
        ];
        let twin: [fn(&mut Entity); 3] = [
            |e| {
                e.tags.insert("a".into(), json!(1));
            },
            |e| {
                e.desired.insert("a".into(), json!(1));
            },
            |e| {
                e.reported.insert("a".into(), json!(1));
            },
        ];
        let action = |change: fn(&mut Entity)| {
            let mut merged = base.clone();
            change(&mut merged);
            let mut out = Vec::new();
            entity_ops("d", None, Some(&base), Some(&merged), &mut out);
            (
                identity_differs(&base, &merged),
                twin_differs(&base, &merged),
                out.iter().map(|op| op.action).collect::<Vec<_>>(),
            )
        };
        for (i, change) in identity.into_iter().enumerate() {
            assert_eq!(
                action(change),
                (true, false, vec![Action::UpdateIdentity]),
                "identity field {i}"
            );
        }
        for (i, change) in twin.into_iter().enumerate() {
            assert_eq!(
                action(change),
                (false, true, vec![Action::UpdateTwin]),
                "twin section {i}"
            );
        }
        assert_eq!(action(|_| {}), (false, false, vec![]));
    }

    #[test]
    fn module_deletes_come_first_then_the_device_then_other_modules() {
        let mut hub = DeviceSnapshot {
            id: "d".into(),
            device: enabled(),
            ..DeviceSnapshot::default()
        };
        hub.modules.insert("a".into(), Entity::default());
        hub.modules.insert("z".into(), Entity::default());
        let mut merged = hub.clone();
        merged.device.tags.insert("t".into(), json!(1));
        merged.modules.remove("z");
        merged.modules.insert("b".into(), Entity::default());
        let ops: Vec<_> = device_plan(Some(&hub), Some(&merged))
            .iter()
            .map(|op| (op.action, op.module_id))
            .collect();
        assert_eq!(
            ops,
            vec![
                (Action::Delete, Some("z")),
                (Action::UpdateTwin, None),
                (Action::Create, Some("b")),
            ]
        );
        // A deleted device takes its modules with it: one line.
        let ops = device_plan(Some(&hub), None);
        assert_eq!(
            ops.iter()
                .map(|op| (op.action, op.module_id))
                .collect::<Vec<_>>(),
            vec![(Action::Delete, None)]
        );
        assert!(device_plan(None, None).is_empty());
    }

    #[cfg(feature = "drill")]
    #[test]
    fn import_lines_carry_the_etag_their_mode_checks() {
        let mut hub = HubImage::new();
        let record = |etag: &str, twin: &str| Record {
            entity: enabled(),
            etag: etag.into(),
            twin_etag: twin.into(),
        };
        for id in ["u", "t", "x"] {
            hub.insert(id, None, record(&format!("e-{id}"), &format!("t-{id}")));
        }
        let merged = enabled();
        let ops = [
            (Action::Create, "c"),
            (Action::UpdateIdentity, "u"),
            (Action::UpdateTwin, "t"),
            (Action::Delete, "x"),
        ]
        .map(|(action, id)| PlanOp {
            action,
            id,
            module_id: None,
            entity: (action != Action::Delete).then_some(&merged),
        });
        let lines: Vec<_> = import_lines(&ops, &hub)
            .into_iter()
            .map(|l| (l.mode, l.id, l.etag, l.twin_etag, l.entity == merged))
            .collect();
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            lines,
            vec![
                (ImportMode::Create, "c".into(), None, None, true),
                (
                    ImportMode::UpdateIfMatchETag,
                    "u".into(),
                    some("e-u"),
                    None,
                    true
                ),
                (
                    ImportMode::UpdateTwinIfMatchETag,
                    "t".into(),
                    None,
                    some("t-t"),
                    true
                ),
                // A delete carries no state.
                (
                    ImportMode::DeleteIfMatchETag,
                    "x".into(),
                    some("e-x"),
                    None,
                    false
                ),
            ]
        );
    }

    #[cfg(feature = "drill")]
    #[test]
    fn a_twin_update_line_carries_the_twin_alone() {
        let mut entity = enabled();
        entity.authentication = Some(Authentication::sas(Secret::new("p"), Secret::new("s")));
        entity.device_scope = Some("scope".into());
        entity.tags.insert("t".into(), json!(1));
        entity.desired.insert("d".into(), json!(2));
        entity.reported.insert("r".into(), json!(3));
        let write = |mode| {
            let line = ImportLine {
                mode,
                id: "d".into(),
                module_id: None,
                etag: None,
                twin_etag: Some("tw".into()),
                entity: entity.clone(),
            };
            let mut out = Vec::new();
            write_import_line(&mut out, &line).unwrap_or_else(|e| panic!("{e}"));
            String::from_utf8(out).unwrap_or_default()
        };
        let twin = concat!(
            r#""twinETag":"tw","tags":{"t":1},"#,
            r#""properties":{"desired":{"d":2},"reported":{"r":3}}}"#,
            "\n"
        );
        assert_eq!(
            write(ImportMode::UpdateTwinIfMatchETag),
            format!(r#"{{"id":"d","importMode":"updateTwinIfMatchETag",{twin}"#)
        );
        assert_eq!(
            write(ImportMode::UpdateTwin),
            format!(r#"{{"id":"d","importMode":"updateTwin",{twin}"#)
        );
        // Any other line is the whole identity, keys included.
        let whole = write(ImportMode::UpdateIfMatchETag);
        assert!(
            whole.starts_with(
                r#"{"id":"d","importMode":"updateIfMatchETag","status":"enabled","authentication":{"symmetricKey":{"primaryKey":"p","secondaryKey":"s"}"#
            ),
            "{whole}"
        );
        assert!(whole.ends_with(",\"deviceScope\":\"scope\"}\n"), "{whole}");
    }
}
