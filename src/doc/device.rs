//! Devices with their modules, and incarnations: what deletes and
//! re-creates are made of.
//!
//! A device id holds a *lineage*: its incarnations keyed by the dot of the
//! write that created each. A delete marks an incarnation dead; a re-create
//! that observed the delete starts a new incarnation that holds nothing of
//! the old one, so it can never inherit the old keys, twin or modules.
//! Modules are lineages inside their device's incarnation, so they die with
//! it.
//!
//! The dead incarnation is a tombstone and keeps its last content: that is
//! what lets a delete win over a concurrent update (the update lands in the
//! dead incarnation and is logged, or wins under
//! [`DeletePolicy::UpdateWins`]). It can be dropped once every replica has
//! seen the delete; until then it is the price of delete-wins.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::conflict::{Conflict, ConflictSink, Rule, Side};
use super::entity::{EntityDoc, EntityStamps};
use super::policy::{DeletePolicy, Policies};
use super::twin::Section;
use super::write::Write;
use super::{DeviceSnapshot, DeviceTimes, Entity};
use crate::clock::{Dot, ReplicaId, Stamp, VersionVector};
use crate::kernel::{CausalContext, DotStore, OrMap};

/// Writes found beside a delete that had not seen them: (path, side).
type Unseen = Vec<(String, Side)>;

/// The incarnations of one device or module, keyed by their creation dot.
pub(crate) type Lineage<D> = OrMap<Dot, D>;

/// One incarnation of a device: its own document and its modules.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeviceDoc {
    #[serde(rename = "d")]
    entity: EntityDoc,
    #[serde(rename = "m", default, skip_serializing_if = "OrMap::is_empty")]
    modules: OrMap<String, Lineage<EntityDoc>>,
}

impl DotStore for DeviceDoc {
    fn is_bottom(&self) -> bool {
        self.entity.is_bottom() && self.modules.is_empty()
    }

    fn join(&mut self, ctx: &CausalContext, other: &Self, other_ctx: &CausalContext) {
        self.entity.join(ctx, &other.entity, other_ctx);
        self.modules.join(ctx, &other.modules, other_ctx);
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(&Dot)) {
        self.entity.for_each_dot(f);
        self.modules.for_each_dot(f);
    }
}

/// A document that lives in a lineage: a device or a module incarnation.
pub(crate) trait Incarnation: DotStore + Clone {
    fn entity(&self) -> &EntityDoc;
    fn entity_mut(&mut self) -> &mut EntityDoc;
    /// The whole incarnation as a conflict record shows it (secrets as
    /// fingerprints), for a losing concurrent creation.
    fn shown(&self, policies: &Policies, quiet: &mut ConflictSink<'_>) -> Value;
}

impl Incarnation for EntityDoc {
    fn entity(&self) -> &EntityDoc {
        self
    }
    fn entity_mut(&mut self) -> &mut EntityDoc {
        self
    }
    fn shown(&self, policies: &Policies, quiet: &mut ConflictSink<'_>) -> Value {
        self.resolve(policies, quiet).redacted_json()
    }
}

impl Incarnation for DeviceDoc {
    fn entity(&self) -> &EntityDoc {
        &self.entity
    }
    fn entity_mut(&mut self) -> &mut EntityDoc {
        &mut self.entity
    }
    fn shown(&self, policies: &Policies, _quiet: &mut ConflictSink<'_>) -> Value {
        let mut scratch = Vec::new();
        let snapshot = self.read("", policies, &mut scratch);
        let mut value = snapshot.device.redacted_json();
        if let Value::Object(map) = &mut value {
            let modules: serde_json::Map<String, Value> = snapshot
                .modules
                .iter()
                .map(|(id, m)| (id.clone(), m.redacted_json()))
                .collect();
            if !modules.is_empty() {
                map.insert("modules".into(), Value::Object(modules));
            }
        }
        value
    }
}

/// The live incarnations under `policy`, the winner first: latest creation
/// stamp, then highest creation dot.
fn live<D: Incarnation>(lineage: &Lineage<D>, policy: DeletePolicy) -> Vec<(&Dot, &D)> {
    let mut alive: Vec<(&Dot, &D)> = lineage
        .iter()
        .filter(|(_, d)| !d.entity().is_dead(policy))
        .collect();
    alive.sort_by(|(da, a), (db, b)| {
        b.entity()
            .created()
            .cmp(&a.entity().created())
            .then_with(|| db.cmp(da))
    });
    alive
}

/// The incarnation a local write goes to: the live one (other live ones,
/// concurrent creations the writer has now seen, are deleted), or a new
/// one when every incarnation is dead or there is none.
fn write_target<'l, D: Incarnation>(
    lineage: &'l mut Lineage<D>,
    w: &mut Write<'_>,
    stamp: &Stamp,
) -> &'l mut D {
    let alive: Vec<Dot> = live(lineage, DeletePolicy::DeleteWins)
        .into_iter()
        .map(|(dot, _)| dot.clone())
        .collect();
    let key = match alive.split_first() {
        Some((winner, others)) => {
            for other in others {
                if let Some(doc) = lineage.get_mut(other) {
                    doc.entity_mut().mark_deleted(w, stamp);
                }
            }
            winner.clone()
        }
        None => {
            let key = next_incarnation(lineage);
            lineage.entry_mut(key.clone()).entity_mut().create(w, stamp);
            key
        }
    };
    lineage.entry_mut(key)
}

/// The key of the incarnation a creation starts, when every incarnation
/// the writer has seen is dead (or it has seen none): the number of those,
/// plus one, not the writer's dot. Replicas that create the same id
/// without seeing each other's creation, having seen the same incarnations
/// before, so start the same incarnation, and their creations merge field
/// by field like any concurrent edit (policy 7). The keys are named after
/// the merge's base replica: a merge's shared start incarnation, written
/// by the base first, gets the same key either way.
fn next_incarnation<D: Incarnation>(lineage: &Lineage<D>) -> Dot {
    let seen = u64::try_from(lineage.len()).unwrap_or(u64::MAX);
    Dot::new(incarnation_replica(), seen.saturating_add(1))
}

/// The replica incarnation keys are named after.
fn incarnation_replica() -> ReplicaId {
    static NAME: std::sync::OnceLock<ReplicaId> = std::sync::OnceLock::new();
    NAME.get_or_init(|| ReplicaId::new("base").expect("valid literal"))
        .clone()
}

fn delete_all<D: Incarnation>(lineage: &mut Lineage<D>, w: &mut Write<'_>, stamp: &Stamp) {
    let alive: Vec<Dot> = live(lineage, DeletePolicy::DeleteWins)
        .into_iter()
        .map(|(dot, _)| dot.clone())
        .collect();
    for key in alive {
        if let Some(doc) = lineage.get_mut(&key) {
            doc.entity_mut().mark_deleted(w, stamp);
        }
    }
}

/// Reads a lineage: the winning live incarnation, if any, with the
/// conflicts between incarnations logged.
fn read_lineage<'l, D: Incarnation>(
    lineage: &'l Lineage<D>,
    policies: &Policies,
    sink: &mut ConflictSink<'_>,
    below: &dyn Fn(&D, &VersionVector, &mut Unseen),
) -> Option<&'l D> {
    for (_, doc) in lineage.iter() {
        let entity = doc.entity();
        let Some((seen, delete)) = entity.delete() else {
            continue;
        };
        let mut unseen = entity.unseen(seen);
        below(doc, seen, &mut unseen);
        if unseen.is_empty() {
            continue;
        }
        if entity.is_dead(policies.delete) {
            for (path, side) in unseen {
                sink.record(&path, Rule::DeleteWins, delete.clone(), vec![side]);
            }
        } else {
            for (path, side) in unseen {
                sink.record(&path, Rule::UpdateWins, side, vec![delete.clone()]);
            }
        }
    }
    let alive = live(lineage, policies.delete);
    let (&(winner_dot, winner), losers) = alive.split_first()?;
    if !losers.is_empty() {
        let creation = |dot: &Dot, doc: &D, value: Value| Side {
            hub: dot.replica().clone(),
            value,
            stamp: doc
                .entity()
                .created()
                .cloned()
                .unwrap_or_else(|| Stamp::new(0, 0, dot.replica().clone())),
        };
        let mut scratch = Vec::new();
        let mut quiet = ConflictSink::new("", None, &mut scratch);
        let shown = |dot: &Dot, doc: &D, quiet: &mut ConflictSink<'_>| {
            let mut value = doc.shown(policies, quiet);
            if let Value::Object(map) = &mut value {
                map.insert("incarnation".into(), json!(dot.to_string()));
            }
            value
        };
        let winner_side = creation(winner_dot, winner, shown(winner_dot, winner, &mut quiet));
        let same_as_winner = |value: &Value| {
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Value::Object(map) = &mut v {
                    map.remove("incarnation");
                }
                v
            };
            strip(value) == strip(&winner_side.value)
        };
        let loser_sides: Vec<Side> = losers
            .iter()
            .map(|(dot, doc)| creation(dot, doc, shown(dot, doc, &mut quiet)))
            .filter(|side| !same_as_winner(&side.value))
            .collect();
        if !loser_sides.is_empty() {
            sink.record("", Rule::ConcurrentCreate, winner_side, loser_sides);
        }
    }
    Some(winner)
}

/// Every module write a device delete had not seen.
fn modules_unseen(doc: &DeviceDoc, seen: &VersionVector, out: &mut Unseen) {
    for (module_id, lineage) in doc.modules.iter() {
        for (_, module) in lineage.iter() {
            for (path, side) in module.unseen(seen) {
                out.push((format!("modules.{module_id}.{path}"), side));
            }
        }
    }
}

impl DeviceDoc {
    fn put(
        &mut self,
        snapshot: &DeviceSnapshot,
        w: &mut Write<'_>,
        stamp: &Stamp,
        times: Option<&DeviceTimes>,
    ) {
        let stamps = EntityStamps {
            fixed: stamp,
            times: times.map(|t| &t.device),
        };
        self.entity.set_exact(&snapshot.device, w, stamps);
        let gone: Vec<String> = self
            .modules
            .keys()
            .filter(|m| !snapshot.modules.contains_key(*m))
            .cloned()
            .collect();
        for module_id in gone {
            delete_all(self.modules.entry_mut(module_id), w, stamp);
        }
        for (module_id, module) in &snapshot.modules {
            let lineage = self.modules.entry_mut(module_id.clone());
            let stamps = EntityStamps {
                fixed: stamp,
                times: times.and_then(|t| t.modules.get(module_id)),
            };
            write_target(lineage, w, stamp).set_exact(module, w, stamps);
        }
        self.modules.prune();
    }

    fn read(&self, id: &str, policies: &Policies, out: &mut Vec<Conflict>) -> DeviceSnapshot {
        let device = self
            .entity
            .resolve(policies, &mut ConflictSink::new(id, None, out));
        let mut modules = BTreeMap::new();
        for (module_id, lineage) in self.modules.iter() {
            let mut sink = ConflictSink::new(id, Some(module_id), out);
            let none = |_: &EntityDoc, _: &VersionVector, _: &mut Unseen| {};
            if let Some(module) = read_lineage(lineage, policies, &mut sink, &none) {
                let entity: Entity = module.resolve(policies, &mut sink);
                modules.insert(module_id.clone(), entity);
            }
        }
        DeviceSnapshot {
            id: id.to_owned(),
            device,
            modules,
        }
    }
}

/// Makes the device `snapshot.id` of `lineage` equal to `snapshot`, with
/// the fewest writes: none when nothing differs.
pub(crate) fn put_device(
    lineage: &mut Lineage<DeviceDoc>,
    snapshot: &DeviceSnapshot,
    w: &mut Write<'_>,
    stamp: &Stamp,
    times: Option<&DeviceTimes>,
) {
    write_target(lineage, w, stamp).put(snapshot, w, stamp, times);
    lineage.prune();
}

/// Deletes every live incarnation of the device.
pub(crate) fn delete_device(lineage: &mut Lineage<DeviceDoc>, w: &mut Write<'_>, stamp: &Stamp) {
    delete_all(lineage, w, stamp);
}

/// The device as the policies read it (`None` when deleted), logging every
/// conflict into `out`.
pub(crate) fn read_device(
    id: &str,
    lineage: &Lineage<DeviceDoc>,
    policies: &Policies,
    out: &mut Vec<Conflict>,
) -> Option<DeviceSnapshot> {
    let mut sink = ConflictSink::new(id, None, out);
    let winner = read_lineage(lineage, policies, &mut sink, &modules_unseen)?;
    Some(winner.read(id, policies, out))
}

/// Applies a twin PATCH to a live device or module; `false` when it is not
/// live (the caller parks or rejects the change).
pub(crate) fn patch_twin(
    lineage: &mut Lineage<DeviceDoc>,
    module_id: Option<&str>,
    section: Section,
    patch: &super::JsonMap,
    w: &mut Write<'_>,
    stamps: EntityStamps<'_>,
) -> bool {
    let Some(key) = live(lineage, DeletePolicy::DeleteWins)
        .first()
        .map(|(d, _)| (*d).clone())
    else {
        return false;
    };
    let Some(device) = lineage.get_mut(&key) else {
        return false;
    };
    let target = match module_id {
        None => &mut device.entity,
        Some(module_id) => {
            let Some(modules) = device.modules.get_mut(&module_id.to_owned()) else {
                return false;
            };
            let Some(mkey) = live(modules, DeletePolicy::DeleteWins)
                .first()
                .map(|(d, _)| (*d).clone())
            else {
                return false;
            };
            match modules.get_mut(&mkey) {
                Some(module) => module,
                None => return false,
            }
        }
    };
    target.patch_section(section, patch, w, stamps);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ReplicaId;

    /// The DotStore contract a lineage prunes by, for a whole incarnation:
    /// bottom exactly when neither the device nor any module holds a write.
    /// A join with a side that saw every write and kept none empties it; a
    /// module alone keeps it.
    #[test]
    fn a_device_incarnation_is_bottom_when_neither_it_nor_a_module_holds_a_write() {
        assert!(DeviceDoc::default().is_bottom());
        let hub = ReplicaId::new("a").unwrap();
        let stamp = Stamp::new(1, 0, hub.clone());
        let mut ctx = CausalContext::new();
        let mut w = Write::new(&hub, &mut ctx);
        let mut module = EntityDoc::default();
        module.create(&mut w, &stamp);
        let mut doc = DeviceDoc::default();
        let dot = Dot::new(hub.clone(), 1);
        doc.modules.entry_mut("m".into()).insert(dot, module);
        assert!(doc.entity.is_bottom(), "only the module is written");
        assert!(!doc.is_bottom(), "a module's write keeps the incarnation");

        let mut emptied = doc.clone();
        emptied.join(&ctx, &DeviceDoc::default(), &ctx);
        assert!(emptied.is_bottom(), "{emptied:?}");
        let mut lineage: Lineage<DeviceDoc> = OrMap::default();
        lineage.insert(Dot::new(hub.clone(), 1), emptied);
        assert!(lineage.is_empty(), "an emptied incarnation is pruned");

        let mut kept = doc.clone();
        kept.join(&ctx, &DeviceDoc::default(), &CausalContext::new());
        assert_eq!(kept, doc);
    }
}
