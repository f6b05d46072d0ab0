//! Deriving a device from its events: incarnations by time, twin changes
//! by version, parked events. A pure function of the replica's set.

use std::collections::BTreeMap;

use super::fold::{Base, Twin, stamp_of};
use super::{EventDot, Folded, Folds, Gap, Replica, Seed};
use crate::doc::{DeviceTimes, Entity, EntityTimes, MetaTree, merge_patch, stamped, without_nulls};
use crate::format::{DeviceRecord, Event, EventTwin, Op, RecordMeta};

/// Whether the event starts or ends an incarnation of a device or module.
pub(super) fn is_lifecycle(op: &Op) -> bool {
    matches!(
        op,
        Op::CreateDevice | Op::DeleteDevice | Op::CreateModule | Op::DeleteModule
    )
}

/// Of events at the same time: creates first, deletes last, the device's
/// around its modules'.
pub(super) fn rank(op: &Op) -> u8 {
    match op {
        Op::CreateDevice => 0,
        Op::CreateModule => 1,
        Op::ReplaceTwin => 2,
        Op::UpdateTwin => 3,
        Op::DeleteModule => 4,
        Op::DeleteDevice => 5,
        Op::Connection(_) => 6,
    }
}

/// Where an event stands in time: a total order over a device's events.
pub(super) type Pos<'a> = (i64, u8, &'a str);

pub(super) fn pos<'a>(dot: &'a str, event: &Event) -> Pos<'a> {
    (event.time.unwrap_or(i64::MIN), rank(&event.op), dot)
}

/// One incarnation: from its create (or the seed, from the beginning) to
/// its delete (or open).
struct Interval<'a> {
    start: Option<Pos<'a>>,
    end: Option<Pos<'a>>,
    /// The create; `None` for the seed's incarnation.
    create: Option<&'a Event>,
}

impl Interval<'_> {
    fn holds(&self, p: &Pos<'_>) -> bool {
        self.start.as_ref().is_none_or(|s| s < p) && self.end.as_ref().is_none_or(|e| p < e)
    }
}

/// The incarnations made by `lifecycle` (creates and deletes of one
/// entity), after the seed's when `seeded`.
fn intervals<'a>(mut lifecycle: Vec<(Pos<'a>, &'a Event)>, seeded: bool) -> Vec<Interval<'a>> {
    lifecycle.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    let mut current = seeded.then_some(Interval {
        start: None,
        end: None,
        create: None,
    });
    for (p, event) in lifecycle {
        if let Some(mut live) = current.take() {
            live.end = Some(p);
            out.push(live);
        }
        if matches!(event.op, Op::CreateDevice | Op::CreateModule) {
            current = Some(Interval {
                start: Some(p),
                end: None,
                create: Some(event),
            });
        }
    }
    out.extend(current);
    out
}

/// The device's incarnations, from its creates and deletes among `events`
/// (a seeded device is alive from the start).
fn device_intervals<'a>(events: &[(&'a EventDot, &'a Event)], seeded: bool) -> Vec<Interval<'a>> {
    let life = events
        .iter()
        .filter(|(_, e)| matches!(e.op, Op::CreateDevice | Op::DeleteDevice))
        .map(|&(d, e)| (pos(d, e), e))
        .collect();
    intervals(life, seeded)
}

/// The incarnations of `module` within the device incarnation `device`:
/// from the module's creates and deletes among `lifecycle` that fall in
/// it, after the seed's when `device` is the seed's incarnation and the
/// seed has the module.
fn module_intervals<'a>(
    lifecycle: impl IntoIterator<Item = (&'a str, &'a Event)>,
    module: &str,
    device: &Interval<'_>,
    seed: Option<&Seed>,
) -> Vec<Interval<'a>> {
    let life = lifecycle
        .into_iter()
        .filter(|(_, e)| {
            e.module_id.as_deref() == Some(module)
                && matches!(e.op, Op::CreateModule | Op::DeleteModule)
        })
        .map(|(d, e)| (pos(d, e), e))
        .filter(|(p, _)| device.holds(p))
        .collect();
    let seeded = device.create.is_none()
        && seed.is_some_and(|s| s.record.snapshot.modules.contains_key(module));
    intervals(life, seeded)
}

fn find(intervals: &[Interval<'_>], p: &Pos<'_>) -> Option<usize> {
    intervals.iter().position(|i| i.holds(p))
}

/// Where an event of `module` (the device's own when `None`) at `p`
/// belongs, given its device's `lifecycle` events and `seed`: the create
/// dot of its incarnation (`None` for the seed's) and that incarnation's
/// base version. `None` when it is parked (or falls outside every device
/// incarnation).
pub(super) fn place(
    lifecycle: &[(&EventDot, &Event)],
    seed: Option<&Seed>,
    module: Option<&str>,
    p: &Pos<'_>,
) -> Option<(Option<String>, u64)> {
    let devices = device_intervals(lifecycle, seed.is_some());
    let interval = devices.get(find(&devices, p)?)?;
    let Some(module) = module else {
        return Some(match interval.create {
            Some(create) => (interval.start.map(|s| s.2.to_owned()), create.version()),
            None => (None, seed.map_or(0, |s| s.version_of(None))),
        });
    };
    let entries = lifecycle.iter().map(|&(d, e)| (d.as_str(), e));
    let lives = module_intervals(entries, module, interval, seed);
    let live = lives.get(find(&lives, p)?)?;
    Some(match live.create {
        Some(create) => (live.start.map(|s| s.2.to_owned()), create.version()),
        None => (None, seed.map_or(0, |s| s.version_of(Some(module)))),
    })
}

/// Whether `event`, of dot `dot`, not yet held by `replica`, is parked
/// once it is inserted.
pub(super) fn is_parked_new(replica: &Replica, dot: &EventDot, event: &Event) -> bool {
    let mut lifecycle = replica.lifecycle_events(&event.device_id);
    if is_lifecycle(&event.op) {
        lifecycle.push((dot, event));
    }
    is_parked_among(replica, &lifecycle, dot, event)
}

/// Whether `event`, of dot `dot`, is parked among its device's
/// `lifecycle` events (its own included, when it is one).
fn is_parked_among(
    replica: &Replica,
    lifecycle: &[(&EventDot, &Event)],
    dot: &str,
    event: &Event,
) -> bool {
    if matches!(
        event.op,
        Op::CreateDevice | Op::DeleteDevice | Op::DeleteModule | Op::Connection(_)
    ) {
        return false;
    }
    let seed = replica.seeds.get(&event.device_id);
    let devices = device_intervals(lifecycle, seed.is_some());
    let p = pos(dot, event);
    let Some(at) = find(&devices, &p) else {
        return true;
    };
    let Some(module) = event.module_id.as_deref() else {
        return false;
    };
    if event.op == Op::CreateModule {
        return false;
    }
    let Some(interval) = devices.get(at) else {
        return true;
    };
    let entries = lifecycle.iter().map(|&(d, e)| (d.as_str(), e));
    find(&module_intervals(entries, module, interval, seed), &p).is_none()
}

/// A device derived, and its parked events.
pub(super) struct Replayed {
    pub(super) device: Option<DeviceRecord>,
    pub(super) parked: Vec<Gap>,
}

/// An entity as replayed.
#[derive(Default)]
struct State {
    entity: Entity,
    times: EntityTimes,
    etag: Option<String>,
    version: u64,
}

impl State {
    /// Its twin etag and version (none when no event or seed gave one).
    fn meta(&self) -> RecordMeta {
        RecordMeta {
            twin_etag: self.etag.clone(),
            version: (self.version > 0).then_some(self.version),
            ..RecordMeta::default()
        }
    }
}

fn gap(dot: &str, event: &Event, waits_for: &'static str) -> Gap {
    Gap {
        device: event.device_id.clone(),
        module: event.module_id.clone(),
        op: event.op.as_str().to_owned(),
        version: event.version(),
        dot: dot.to_owned(),
        waits_for,
    }
}

/// Replays device `id` of `replica`.
pub(super) fn replay(replica: &Replica, id: &str) -> Replayed {
    replay_as(replica, id, true, None)
}

/// What the state file writes of device `id` beside its events: its
/// parked events and, for a device that exists, its version and its
/// live modules' versions (`meta.version` and each module's, the rest
/// left empty). As
/// [`replay`], without building the twins when no change is folded: a
/// twin's version is the highest of its base's and its changes'.
pub(super) fn versions(replica: &Replica, id: &str) -> Replayed {
    replay_as(replica, id, false, None)
}

/// [`versions`], of the device's `events` as the replica holds them
/// (`Replica::device_events`).
pub(super) fn versions_of<'a>(
    replica: &'a Replica,
    id: &str,
    events: Vec<(&'a EventDot, &'a Event)>,
) -> Replayed {
    replay_as(replica, id, false, Some(events))
}

fn replay_as<'a>(
    replica: &'a Replica,
    id: &str,
    full: bool,
    held: Option<Vec<(&'a EventDot, &'a Event)>>,
) -> Replayed {
    let folds = replica.folded.get(id);
    // The twins, read again from the events' text, where they are
    // replayed: versions alone need none.
    let with_twins = if full || folds.is_some() {
        replica.device_events_with_twins(id)
    } else {
        Vec::new()
    };
    let events = if !with_twins.is_empty() {
        with_twins.iter().map(|(d, e)| (*d, e)).collect()
    } else if let Some(held) = held {
        held
    } else {
        replica.device_events(id)
    };
    let seed = replica.seeds.get(id);
    let devices = device_intervals(&events, seed.is_some());
    let mut parked = Vec::new();
    // Each incarnation's events, by index.
    let mut assigned: Vec<Vec<(&str, &Event)>> = devices.iter().map(|_| Vec::new()).collect();
    for (dot, event) in &events {
        if matches!(event.op, Op::CreateDevice | Op::DeleteDevice) {
            continue;
        }
        match find(&devices, &pos(dot, event)).and_then(|i| assigned.get_mut(i)) {
            Some(list) => list.push((dot, event)),
            None if event.op == Op::DeleteModule => {}
            None => parked.push(gap(dot, event, "createDeviceIdentity")),
        }
    }
    let mut device = None;
    let last = devices.len().saturating_sub(1);
    for (i, (interval, list)) in devices.iter().zip(&assigned).enumerate() {
        let live = i == last && interval.end.is_none();
        let seed = seed.filter(|_| interval.create.is_none());
        let replayed = incarnation(interval, list, seed, live, folds, full, &mut parked);
        if live {
            device = replayed;
        }
    }
    if let Some(device) = &mut device {
        device.snapshot.id = id.to_owned();
    }
    parked.sort();
    Replayed { device, parked }
}

/// Replays one incarnation of a device: its modules' incarnations, its
/// parked module events, and (when `live`) its state at the end.
fn incarnation(
    interval: &Interval<'_>,
    events: &[(&str, &Event)],
    seed: Option<&Seed>,
    live: bool,
    folds: Option<&Folds>,
    full: bool,
    parked: &mut Vec<Gap>,
) -> Option<DeviceRecord> {
    // Versions alone, where no fold needs its tree joined.
    let light = !full && folds.is_none();
    let folded = |module: Option<&str>, start: Option<&Pos<'_>>| {
        let key = (module.map(str::to_owned), start.map(|s| s.2.to_owned()));
        folds.and_then(|f| f.get(&key))
    };
    // Modules: their lifecycle within this incarnation, then their twin
    // changes within their own incarnations.
    let mut module_ids: BTreeMap<&str, ()> = BTreeMap::new();
    for (_, event) in events {
        if let Some(m) = event.module_id.as_deref() {
            module_ids.insert(m, ());
        }
    }
    if let Some(seed) = seed {
        for m in seed.record.snapshot.modules.keys() {
            module_ids.insert(m, ());
        }
    }
    let mut modules = BTreeMap::new();
    for module in module_ids.keys() {
        // Every event here falls in `interval`, and `seed` is given only
        // for the seed's incarnation.
        let lives = module_intervals(events.iter().copied(), module, interval, seed);
        let mut mine: Vec<(&str, &Event)> = Vec::new();
        for (dot, event) in events {
            if event.module_id.as_deref() != Some(*module) || is_lifecycle(&event.op) {
                continue;
            }
            let p = pos(dot, event);
            // Only the last incarnation can be open: the one whose
            // changes make the module's state.
            match find(&lives, &p) {
                Some(at) if lives.get(at).is_some_and(|l| l.end.is_none()) => {
                    mine.push((dot, event));
                }
                Some(_) => {}
                None => parked.push(gap(dot, event, "createModuleIdentity")),
            }
        }
        if !live {
            continue;
        }
        let Some(open) = lives.last().filter(|l| l.end.is_none()) else {
            continue;
        };
        let state = if light {
            let base = match open.create {
                Some(create) => create.version(),
                None => seed.map_or(0, |s| s.version_of(Some(module))),
            };
            version_only(base, &mine)
        } else {
            let base = match open.create {
                Some(create) => created(create),
                None => seed.map_or_else(State::default, |s| seeded_module(s, module)),
            };
            let fold = folded(Some(*module), open.start.as_ref());
            apply(base, fold, mine)
        };
        modules.insert((*module).to_owned(), state);
    }
    if !live {
        return None;
    }
    let own: Vec<(&str, &Event)> = events
        .iter()
        .filter(|(_, e)| e.module_id.is_none() && !is_lifecycle(&e.op))
        .copied()
        .collect();
    let state = if light {
        let base = match interval.create {
            Some(create) => create.version(),
            None => seed.map_or(0, |s| s.version_of(None)),
        };
        version_only(base, &own)
    } else {
        let base = match interval.create {
            Some(create) => created(create),
            None => seed.map_or_else(State::default, seeded_device),
        };
        apply(base, folded(None, interval.start.as_ref()), own)
    };
    let mut times = DeviceTimes::default();
    let mut out = DeviceRecord {
        meta: state.meta(),
        ..DeviceRecord::default()
    };
    out.snapshot.device = state.entity;
    times.device = state.times;
    for (module, state) in modules {
        out.modules.insert(module.clone(), state.meta());
        times.modules.insert(module.clone(), state.times);
        out.snapshot.modules.insert(module, state.entity);
    }
    out.times = Some(times);
    Some(out)
}

/// The version [`apply_all`] gives an entity over a base of version
/// `base`: each change sets the highest version seen (a create, where
/// it resets, is the base), and those it skips are at or below the base.
fn version_only(base: u64, events: &[(&str, &Event)]) -> State {
    let version = events.iter().map(|(_, e)| e.version()).fold(base, u64::max);
    State {
        version,
        ..State::default()
    }
}

fn seeded_device(seed: &Seed) -> State {
    let record = &seed.record;
    State {
        entity: record.snapshot.device.clone(),
        times: record
            .times
            .as_ref()
            .map(|t| t.device.clone())
            .unwrap_or_default(),
        etag: record.meta.twin_etag.clone(),
        version: seed.version_of(None),
    }
}

fn seeded_module(seed: &Seed, module: &str) -> State {
    let record = &seed.record;
    State {
        entity: record
            .snapshot
            .modules
            .get(module)
            .cloned()
            .unwrap_or_default(),
        times: record
            .times
            .as_ref()
            .and_then(|t| t.modules.get(module).cloned())
            .unwrap_or_default(),
        etag: record.modules.get(module).and_then(|m| m.twin_etag.clone()),
        version: seed.version_of(Some(module)),
    }
}

fn created(create: &Event) -> State {
    let mut state = State::default();
    if let Some(twin) = &create.twin {
        whole(&mut state, twin, create.time.unwrap_or(0), true);
    }
    state
}

/// Applies an entity's twin changes over its base: in version order
/// when none is folded, else joined into its folded tree.
fn apply(base: State, folded: Option<&Folded>, events: Vec<(&str, &Event)>) -> State {
    let Some(folded) = folded else {
        return apply_all(base, events);
    };
    let mut tree = Twin::of_base(&Base {
        entity: &base.entity,
        times: &base.times,
        etag: base.etag.as_ref(),
        version: base.version,
    });
    tree.join(&folded.twin);
    for (dot, event) in events {
        if below(base.version, event.version()) {
            continue;
        }
        if let Some(twin) = &event.twin {
            let change = Twin::of_change(
                &event.op,
                twin,
                event.time.unwrap_or(0),
                &stamp_of(dot, event),
            );
            tree.join(&change);
        }
    }
    let (entity, times, etag) = tree.render(&base.entity);
    State {
        entity,
        times,
        etag,
        version: tree.identity.version,
    }
}

/// Whether a change of `version` is already in a base of version `base`
/// (never a change without a version, 0).
pub(super) fn below(base: u64, version: u64) -> bool {
    version > 0 && version <= base
}

/// Applies an entity's twin changes in version order (then time, kind,
/// dot) over its base, skipping those the base already holds.
fn apply_all(mut state: State, mut events: Vec<(&str, &Event)>) -> State {
    events.sort_by(|a, b| (a.1.version(), pos(a.0, a.1)).cmp(&(b.1.version(), pos(b.0, b.1))));
    let base = state.version;
    for (_, event) in events {
        if below(base, event.version()) {
            continue;
        }
        let Some(twin) = &event.twin else {
            continue;
        };
        let time = event.time.unwrap_or(0);
        match event.op {
            Op::ReplaceTwin => whole(&mut state, twin, time, false),
            _ => patch_entity(&mut state, twin, time),
        }
    }
    state
}

/// Identity fields the body gives, set.
fn identity(state: &mut State, twin: &EventTwin, time: i64) {
    let entity = &twin.entity;
    if let Some(status) = &entity.status {
        state.entity.status = Some(status.clone());
        state.times.status = twin.times.status.or(Some(time));
    }
    if entity.capabilities.is_some() {
        state.entity.capabilities.clone_from(&entity.capabilities);
    }
    if entity.device_scope.is_some() {
        state.entity.device_scope.clone_from(&entity.device_scope);
    }
    if entity.parent_scopes.is_some() {
        state.entity.parent_scopes.clone_from(&entity.parent_scopes);
    }
    for (key, value) in &entity.extra {
        state.entity.extra.insert(key.clone(), value.clone());
    }
    if twin.etag.is_some() {
        state.etag.clone_from(&twin.etag);
    }
    if let Some(version) = twin.version {
        state.version = state.version.max(version);
    }
}

/// A create (`reset`) or a replace: the sections the body gives replace
/// the entity's.
fn whole(state: &mut State, twin: &EventTwin, time: i64, reset: bool) {
    if reset {
        *state = State::default();
    }
    identity(state, twin, time);
    if reset || twin.has_tags {
        state.entity.tags = without_nulls(&twin.entity.tags).into();
    }
    if reset || twin.has_desired {
        state.entity.desired = without_nulls(&twin.entity.desired).into();
        state.times.desired = stamped(&twin.times.desired, time);
    }
    if reset || twin.has_reported {
        state.entity.reported = without_nulls(&twin.entity.reported).into();
        state.times.reported = stamped(&twin.times.reported, time);
    }
}

/// An update: each section the body gives is patched leaf by leaf.
fn patch_entity(state: &mut State, twin: &EventTwin, time: i64) {
    identity(state, twin, time);
    if twin.has_tags {
        let mut no_times = MetaTree::default();
        merge_patch(
            &mut state.entity.tags,
            &mut no_times,
            &twin.entity.tags,
            &MetaTree::default(),
            time,
        );
    }
    if twin.has_desired {
        let meta = &twin.times.desired;
        let at = meta.last_updated.unwrap_or(time);
        merge_patch(
            &mut state.entity.desired,
            &mut state.times.desired,
            &twin.entity.desired,
            meta,
            at,
        );
    }
    if twin.has_reported {
        let meta = &twin.times.reported;
        let at = meta.last_updated.unwrap_or(time);
        merge_patch(
            &mut state.entity.reported,
            &mut state.times.reported,
            &twin.entity.reported,
            meta,
            at,
        );
    }
}
