//! What an input cannot know, and how the merge and the plans treat it.
//!
//! A twin file carries no keys, an identity file no twin, an export made
//! without keys no keys. An unknown is not a change: before the merge, a
//! hub is taken to hold what the base holds there ([`fill_unknowns`]);
//! when its plan is made, what neither its input nor the base told is
//! taken to be what the merge gives ([`hub_plan`]), so a twin-file hub is
//! not sent every identity because its file has no keys, and a hub whose
//! input carries no keys is never sent an identity line without them for
//! an entity whose keys any input knows (the keys rule: such a line would
//! make the hub generate new keys). `failback merge` and the drill plan
//! through these same functions.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::plan::{PlanOp, guard, split_plan, twin_differs};
use crate::doc::{DeviceSnapshot, Entity};
use crate::format::{ImportMode, RecordMeta};

/// `held` with what its input could not know taken from `known`, entity by
/// entity (the device and each module `known` holds too): keys where `held`
/// has none, and the twin where `twin_unknown` says so for the entity
/// (`None` for the device, the module id for a module). `None` when
/// nothing differs that way, so the caller keeps borrowing `held`.
pub(crate) fn fill_unknowns(
    held: &DeviceSnapshot,
    known: &DeviceSnapshot,
    twin_unknown: impl Fn(Option<&str>) -> bool,
) -> Option<DeviceSnapshot> {
    let unknown = |held: &Entity, known: Option<&Entity>, module: Option<&str>| {
        known.is_some_and(|k| {
            (held.authentication.is_none() && k.authentication.is_some())
                || (twin_unknown(module) && twin_differs(held, k))
        })
    };
    let any = unknown(&held.device, Some(&known.device), None)
        || held
            .modules
            .iter()
            .any(|(m, e)| unknown(e, known.modules.get(m), Some(m)));
    if !any {
        return None;
    }
    let mut filled = held.clone();
    fill_in_place(&mut filled, known, twin_unknown);
    Some(filled)
}

/// [`fill_unknowns`] done in place, on a device the caller owns (one read
/// from a file, say): no copy of what is known already.
pub(crate) fn fill_in_place(
    held: &mut DeviceSnapshot,
    known: &DeviceSnapshot,
    twin_unknown: impl Fn(Option<&str>) -> bool,
) {
    let fill = |held: &mut Entity, known: &Entity, module: Option<&str>| {
        if held.authentication.is_none() {
            held.authentication.clone_from(&known.authentication);
        }
        if twin_unknown(module) {
            held.tags.clone_from(&known.tags);
            held.desired.clone_from(&known.desired);
            held.reported.clone_from(&known.reported);
        }
    };
    fill(&mut held.device, &known.device, None);
    for (m, entity) in &mut held.modules {
        if let Some(known) = known.modules.get(m) {
            fill(entity, known, Some(m));
        }
    }
}

/// The hub's device as a plan compares it with the merged one: what its
/// input could not know (keys, for a twin file; twins, for an identity
/// file) and the base did not tell (the base's, where it held the entity,
/// was taken before the merge), taken as the merged device has it. An
/// unknown is never a difference to write: a twin file's hub is not sent
/// every device's identity because its file has no keys.
fn assume_known<'a>(
    hub: &'a DeviceSnapshot,
    knows_twin: bool,
    base: Option<&DeviceSnapshot>,
    merged: Option<&DeviceSnapshot>,
) -> Cow<'a, DeviceSnapshot> {
    let Some(merged) = merged else {
        return Cow::Borrowed(hub);
    };
    // The twin is unknown where the input has none and the base did not
    // hold the entity.
    let twin_unknown = |module: Option<&str>| {
        !knows_twin
            && base.is_none_or(|b| match module {
                None => false,
                Some(m) => !b.modules.contains_key(m),
            })
    };
    match fill_unknowns(hub, merged, twin_unknown) {
        Some(assumed) => Cow::Owned(assumed),
        None => Cow::Borrowed(hub),
    }
}

/// One hub's device as its input gave it (after [`fill_unknowns`] from the
/// base), with the etags that guard the lines of its plan.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HubInput<'a> {
    /// The device and its modules.
    pub snapshot: &'a DeviceSnapshot,
    /// The identity's etag (a twin's `deviceEtag`).
    pub etag: Option<&'a str>,
    /// The twin's etag; none in an identity file.
    pub twin_etag: Option<&'a str>,
    /// Each module's etags.
    pub modules: &'a BTreeMap<String, RecordMeta>,
    /// Whether the input carries twins: an identity file does not.
    pub knows_twin: bool,
}

/// Makes one hub's plan for one device: each operation that brings `hub`
/// (`None`: the hub lacks it) to `merged`, given to `line` with its import
/// mode and the `(eTag, twinETag)` that guard it. A hub whose input has no
/// twin etags (an identity file) gets its twin changes as whole identity
/// lines, guarded by the identity's etag. `base` is the base's device, when
/// there is a base and it holds the id. Returns how many operations on edge
/// system modules the plan leaves out.
pub(crate) fn hub_plan<'e>(
    hub: Option<HubInput<'e>>,
    base: Option<&DeviceSnapshot>,
    merged: Option<&DeviceSnapshot>,
    mut line: impl FnMut(&PlanOp<'_>, ImportMode, Option<&'e str>, Option<&'e str>),
) -> usize {
    let held = hub.map(|d| assume_known(d.snapshot, d.knows_twin, base, merged));
    let (ops, left_out) = split_plan(held.as_deref(), merged);
    for op in &ops {
        let mode = op.action.import_mode(hub.is_none_or(|d| d.knows_twin));
        // The etags of the record the hub holds.
        let etags = hub.and_then(|d| match op.module_id {
            None => Some((d.etag, d.twin_etag)),
            Some(m) => d
                .modules
                .get(m)
                .map(|m| (m.etag.as_deref(), m.twin_etag.as_deref())),
        });
        let (etag, twin_etag) = guard(mode, etags);
        line(op, mode, etag, twin_etag);
    }
    left_out.len()
}

/// Whether an import line writes an identity without keys (no
/// `authentication`, or SAS without both keys): the hub would generate new
/// keys for it, and the device could no longer connect. A plan holding one
/// is refused unless new keys are allowed. `entity` is what the line
/// carries (`None` for a delete).
pub(crate) fn writes_keyless(mode: ImportMode, entity: Option<&Entity>) -> bool {
    let writes_identity = !matches!(
        mode,
        ImportMode::UpdateTwin
            | ImportMode::UpdateTwinIfMatchETag
            | ImportMode::Delete
            | ImportMode::DeleteIfMatchETag
    );
    writes_identity && entity.is_none_or(Entity::lacks_keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::{Authentication, Secret};
    use serde_json::json;

    fn device(key: Option<&str>, fan: i64) -> DeviceSnapshot {
        let mut d = DeviceSnapshot {
            id: "d".into(),
            ..DeviceSnapshot::default()
        };
        d.device.authentication = key.map(|k| {
            Authentication::sas(Secret::new(&format!("{k}1")), Secret::new(&format!("{k}2")))
        });
        d.device.desired.insert("fan".into(), json!(fan));
        d
    }

    fn plan(
        hub: &DeviceSnapshot,
        knows_twin: bool,
        base: Option<&DeviceSnapshot>,
        merged: &DeviceSnapshot,
    ) -> Vec<(ImportMode, bool)> {
        let modules = BTreeMap::new();
        let input = HubInput {
            snapshot: hub,
            etag: Some("e"),
            twin_etag: knows_twin.then_some("t"),
            modules: &modules,
            knows_twin,
        };
        let mut lines = Vec::new();
        hub_plan(Some(input), base, Some(merged), |op, mode, _, _| {
            lines.push((mode, writes_keyless(mode, op.entity)));
        });
        lines
    }

    #[test]
    fn a_twin_file_hub_is_sent_the_known_keys_never_none() {
        let base = device(Some("k"), 1);
        // A twin file: no keys; filled from the base before the merge.
        let mut twin = device(None, 1);
        fill_in_place(&mut twin, &base, |_| false);
        assert_eq!(twin, base);
        // Nothing else changed: no line, whatever keys the hub holds.
        assert!(plan(&twin, true, Some(&base), &base).is_empty());
        // Another hub rotated: the identity line carries the new keys.
        let rotated = device(Some("r"), 1);
        assert_eq!(
            plan(&twin, true, Some(&base), &rotated),
            [(ImportMode::UpdateIfMatchETag, false)]
        );
        // A device the base lacks: its keys are taken as the merge's.
        let created = device(None, 1);
        assert!(plan(&created, true, None, &rotated).is_empty());
        // Only where no input knows them does a line lack them.
        let keyless = device(None, 2);
        assert_eq!(
            plan(&created, true, None, &keyless),
            [(ImportMode::UpdateTwinIfMatchETag, false)]
        );
        assert_eq!(
            plan(&device(Some("k"), 2), true, None, &keyless),
            [(ImportMode::UpdateIfMatchETag, true)]
        );
    }

    #[test]
    fn an_identity_file_hub_gets_twin_changes_as_whole_identity_lines() {
        let base = device(Some("k"), 1);
        let mut identity = device(Some("k"), 0);
        identity.device.desired.clear();
        assert!(fill_unknowns(&identity, &base, |_| true).is_some_and(|f| f == base));
        fill_in_place(&mut identity, &base, |_| true);
        assert!(plan(&identity, false, Some(&base), &base).is_empty());
        assert_eq!(
            plan(&identity, false, Some(&base), &device(Some("k"), 5)),
            [(ImportMode::UpdateIfMatchETag, false)]
        );
        assert!(!writes_keyless(ImportMode::DeleteIfMatchETag, None));
        assert!(writes_keyless(ImportMode::Create, None));
    }

    /// SAS without both keys is as keyless as no `authentication`: the hub
    /// would generate keys for either.
    #[test]
    fn a_line_writing_sas_without_its_keys_writes_keyless() {
        let mut entity = device(Some("k"), 1).device;
        assert!(!writes_keyless(
            ImportMode::UpdateIfMatchETag,
            Some(&entity)
        ));
        if let Some(keys) = entity
            .authentication
            .as_mut()
            .and_then(|a| a.symmetric_key.as_mut())
        {
            keys.secondary_key = Some(Secret::new(""));
        }
        assert!(writes_keyless(ImportMode::UpdateIfMatchETag, Some(&entity)));
        assert!(writes_keyless(ImportMode::CreateOrUpdate, Some(&entity)));
        assert!(!writes_keyless(
            ImportMode::UpdateTwinIfMatchETag,
            Some(&entity)
        ));
    }
}
