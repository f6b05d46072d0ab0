//! The writes a simulated hub takes: provisioning, deletes, re-creates, key
//! rotations, disables and re-enables, desired pushes, tags, reported
//! writes from devices, modules added and removed.

use std::collections::BTreeMap;

use serde_json::Value;

use super::fleet::{Gen, SYSTEM_MODULES};
use super::oracle::{Fact, Field, Kind, Op, Val, device_facts, entity_facts};
use super::paths;
use crate::doc::{DeviceSnapshot, Entity, JsonMap, Section, Status};
use crate::reconcile::HeldDevice;

/// What one hub knows of a device's incarnations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct HubDev {
    /// The live device incarnation (0: the one the cycle started with).
    pub inc: Option<u64>,
    /// The live module incarnations by module id.
    pub modules: BTreeMap<String, u64>,
    /// Whether the hub ever held the device (so it can re-create it).
    pub known: bool,
}

impl HubDev {
    /// What a hub holding `device` at the start of a cycle knows.
    pub(crate) fn at_start(device: Option<&DeviceSnapshot>, known: bool) -> Self {
        Self::holding(device.map(|d| d.modules.keys()), known)
    }

    /// What a hub knows that holds a device with `modules` (`None`: no
    /// device).
    fn holding<'m>(modules: Option<impl Iterator<Item = &'m String>>, known: bool) -> Self {
        let present = modules.is_some();
        Self {
            inc: present.then_some(0),
            modules: modules
                .map(|ids| ids.map(|m| (m.clone(), 0)).collect())
                .unwrap_or_default(),
            known: known || present,
        }
    }
}

impl HubDev {
    /// What a hub holding `device` (as [`HubImage::device`](crate::reconcile::HubImage::device) borrows it) at
    /// the start of a cycle knows: as [`HubDev::at_start`] of its snapshot.
    pub(crate) fn held(device: Option<HeldDevice<'_>>, known: bool) -> Self {
        Self::holding(device.map(|d| d.modules.keys()), known)
    }
}

/// One drawn write: the device after it and what the oracle records.
pub(crate) struct Change {
    pub after: Option<DeviceSnapshot>,
    pub kind: Kind,
    pub op: Op,
    pub facts: Vec<Fact>,
}

fn section_mut(e: &mut Entity, section: Section) -> &mut JsonMap {
    match section {
        Section::Tags => &mut e.tags,
        Section::Desired => &mut e.desired,
        Section::Reported => &mut e.reported,
    }
}

fn entity_mut<'a>(d: &'a mut DeviceSnapshot, module: Option<&str>) -> Option<&'a mut Entity> {
    match module {
        None => Some(&mut d.device),
        Some(m) => d.modules.get_mut(m),
    }
}

fn create(g: &mut Gen<'_>, id: &str, hub: &mut HubDev, kind: Kind) -> Change {
    let device = g.device(id);
    let inc = g.unique();
    hub.inc = Some(inc);
    hub.modules = device
        .modules
        .keys()
        .map(|m| (m.clone(), g.unique()))
        .collect();
    hub.known = true;
    Change {
        facts: device_facts(&device),
        after: Some(device),
        kind,
        op: Op::Create { inc },
    }
}

/// Draws the next write of a hub to a device, given what the hub holds.
/// `None` when the hub has nothing sensible to do to it (a device it never
/// held).
pub(crate) fn draw(
    g: &mut Gen<'_>,
    id: &str,
    hub: &mut HubDev,
    state: Option<&DeviceSnapshot>,
    birth: bool,
) -> Option<Change> {
    if birth {
        return match state {
            Some(_) => None,
            None => Some(create(g, id, hub, Kind::Provision)),
        };
    }
    let Some(device) = state else {
        return (hub.known && g.rng.chance(450)).then(|| create(g, id, hub, Kind::Recreate));
    };
    let edge = !device.modules.is_empty();
    let weights = [20, 24, 7, 8, 12, 4, if edge { 9 } else { 0 }, 4];
    let mut after = device.clone();
    let mut facts = Vec::new();
    let (kind, op) = match g.rng.weighted(&weights) {
        0 => twin_write(g, &mut after, Section::Desired, &mut facts),
        1 => twin_write(g, &mut after, Section::Reported, &mut facts),
        2 => twin_write(g, &mut after, Section::Tags, &mut facts),
        3 => {
            let module = pick_module(g, &after, 300);
            let entity = entity_mut(&mut after, module.as_deref())?;
            let old = entity.authentication.clone().unwrap_or_default();
            let new = g.rotate(&old);
            entity.authentication = Some(new.clone());
            facts.push(Fact {
                module,
                field: Field::Auth,
                value: Val::Auth(new),
            });
            (Kind::Rotate, Op::Update)
        }
        4 => {
            let enabled = after
                .device
                .status
                .as_ref()
                .is_none_or(|s| s.status == Status::Enabled);
            let (kind, status) = if !enabled && g.rng.chance(700) {
                (Kind::Enable, Status::Enabled)
            } else {
                (Kind::Disable, Status::Disabled)
            };
            let value = g.status(status);
            after.device.status = Some(value.clone());
            facts.push(Fact {
                module: None,
                field: Field::Status,
                value: Val::Status(value),
            });
            (kind, Op::Update)
        }
        5 => {
            let inc = hub.inc.unwrap_or(0);
            hub.inc = None;
            hub.modules.clear();
            return Some(Change {
                after: None,
                kind: Kind::Delete,
                op: Op::Delete { inc },
                facts,
            });
        }
        6 => module_write(g, hub, &mut after, &mut facts),
        _ => shape_write(g, &mut after, &mut facts),
    };
    keep_last(&mut facts);
    Some(Change {
        after: Some(after),
        kind,
        op,
        facts,
    })
}

/// Drops the facts a later fact of the same write replaced: a write that
/// sets a leaf and then removes it only removed it.
fn keep_last(facts: &mut Vec<Fact>) {
    let mut kept: Vec<Fact> = Vec::with_capacity(facts.len());
    for fact in facts.drain(..).rev() {
        let replaced = kept
            .iter()
            .any(|k| k.module == fact.module && k.field.overlaps(&fact.field));
        if !replaced {
            kept.push(fact);
        }
    }
    kept.reverse();
    *facts = kept;
}

fn pick_module(g: &mut Gen<'_>, d: &DeviceSnapshot, per_mille: u32) -> Option<String> {
    if d.modules.is_empty() || !g.rng.chance(per_mille) {
        return None;
    }
    let ids: Vec<&String> = d.modules.keys().collect();
    g.rng.pick(&ids).map(|m| (*m).clone())
}

/// Sets one or two leaves of a section (of the device or, on edge devices,
/// sometimes of a module), or removes one.
fn twin_write(
    g: &mut Gen<'_>,
    d: &mut DeviceSnapshot,
    section: Section,
    facts: &mut Vec<Fact>,
) -> (Kind, Op) {
    let kind = match section {
        Section::Tags => Kind::Tags,
        Section::Desired => Kind::Desired,
        Section::Reported => Kind::Reported,
    };
    let module = match section {
        Section::Tags => None,
        _ => pick_module(g, d, 300),
    };
    let Some(entity) = entity_mut(d, module.as_deref()) else {
        return (kind, Op::Update);
    };
    let map = section_mut(entity, section);
    let n = 1 + g.rng.below(2);
    for _ in 0..n {
        if g.rng.chance(150) {
            if let Some(path) = removable(g, map) {
                let removed = paths::get(map, &path).cloned().unwrap_or_default();
                paths::remove(map, &path);
                facts.push(Fact {
                    module: module.clone(),
                    field: Field::Twin(section, path),
                    value: Val::Removed(removed),
                });
                continue;
            }
        }
        let path = g.leaf_to_write(map);
        let value = g.value(paths::get(map, &path));
        paths::set(map, &path, value.clone());
        facts.push(Fact {
            module: module.clone(),
            field: Field::Twin(section, path),
            value: Val::Json(value),
        });
    }
    (kind, Op::Update)
}

/// A leaf whose removal leaves no empty object behind.
fn removable(g: &mut Gen<'_>, map: &JsonMap) -> Option<Vec<String>> {
    let candidates: Vec<Vec<&str>> = paths::leaf_refs(map)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| match p.split_last() {
            Some((_, [])) => map.len() > 1,
            Some((_, parents)) => paths::get(map, parents)
                .and_then(Value::as_object)
                .is_some_and(|o| o.len() > 1),
            None => false,
        })
        .collect();
    g.rng.pick(&candidates).map(|p| paths::owned(p))
}

/// Replaces an object of `desired` by a scalar, or a scalar by an object:
/// the shape conflicts of policy 4.
fn shape_write(g: &mut Gen<'_>, d: &mut DeviceSnapshot, facts: &mut Vec<Fact>) -> (Kind, Op) {
    let map = &mut d.device.desired;
    let objects = paths::objects(map);
    if g.rng.chance(500) {
        if let Some((path, _)) = g.rng.pick(&objects).cloned() {
            let value = g.value(None);
            paths::set(map, &path, value.clone());
            facts.push(Fact {
                module: None,
                field: Field::Twin(Section::Desired, path),
                value: Val::Json(value),
            });
            return (Kind::Desired, Op::Update);
        }
    }
    let scalars: Vec<Vec<&str>> = paths::leaf_refs(map)
        .into_iter()
        .filter(|(_, v)| !v.is_object())
        .map(|(p, _)| p)
        .collect();
    let Some(path) = g.rng.pick(&scalars).map(|p| paths::owned(p)) else {
        return twin_write(g, d, Section::Desired, facts);
    };
    let key = g.key();
    let value = g.value(None);
    let mut object = JsonMap::new();
    object.insert(key.clone(), value.clone());
    paths::set(map, &path, Value::Object(object));
    let mut leaf = path;
    leaf.push(key);
    facts.push(Fact {
        module: None,
        field: Field::Twin(Section::Desired, leaf),
        value: Val::Json(value),
    });
    (Kind::Desired, Op::Update)
}

/// Adds a module, removes a custom one, or writes a module's twin.
fn module_write(
    g: &mut Gen<'_>,
    hub: &mut HubDev,
    d: &mut DeviceSnapshot,
    facts: &mut Vec<Fact>,
) -> (Kind, Op) {
    let custom: Vec<String> = d
        .modules
        .keys()
        .filter(|m| !SYSTEM_MODULES.contains(&m.as_str()))
        .cloned()
        .collect();
    let roll = g.rng.below(10);
    if roll < 4 && d.modules.len() < 5 {
        let name = g.module_name();
        let module = g.module(&name);
        entity_facts(Some(&name), &module, facts);
        d.modules.insert(name.clone(), module);
        let inc = g.unique();
        hub.modules.insert(name.clone(), inc);
        return (Kind::ModuleAdd, Op::ModuleCreate { module: name, inc });
    }
    if roll < 7 {
        if let Some(name) = g.rng.pick(&custom).cloned() {
            d.modules.remove(&name);
            let inc = hub.modules.remove(&name).unwrap_or(0);
            return (Kind::ModuleRemove, Op::ModuleDelete { module: name, inc });
        }
    }
    let section = if g.rng.chance(600) {
        Section::Reported
    } else {
        Section::Desired
    };
    let Some(name) = pick_module(g, d, 1000) else {
        return twin_write(g, d, section, facts);
    };
    let Some(entity) = d.modules.get_mut(&name) else {
        return twin_write(g, d, section, facts);
    };
    let map = section_mut(entity, section);
    let path = g.leaf_to_write(map);
    let value = g.value(paths::get(map, &path));
    paths::set(map, &path, value.clone());
    facts.push(Fact {
        module: Some(name),
        field: Field::Twin(section, path),
        value: Val::Json(value),
    });
    let kind = match section {
        Section::Reported => Kind::Reported,
        _ => Kind::Desired,
    };
    (kind, Op::Update)
}
