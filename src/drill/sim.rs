//! The simulated failover: a timeline per cycle, and each device's writes
//! replayed against the two hubs in time order.
//!
//! A cycle: the primary takes writes; a backup is taken (the base, and
//! what the secondary is seeded from); the primary fails, and is restored
//! to a point at or after the backup, losing what it took after that
//! point; the secondary takes writes during the outage (and, in split
//! brain, so does the primary); then failback.
//!
//! Devices never interact, so each device's part of the timeline is drawn
//! from its own random stream and replayed on its own: the same seed gives
//! the same fleet whatever the shard size or thread count.

use std::collections::BTreeMap;

use super::fleet::{Gen, device_id};
use super::formats::ExportFormat;
use super::invariants::{Invariant, REPLICA_UP_TO_LAG, REPLICATION_LOSS, check_replica};
use super::oracle::{Hub, Write};
use super::replication::{Feed, ReplicationCounts, Seeded};
use super::rng::Rng;
use super::writes::{HubDev, draw};
use crate::doc::DeviceSnapshot;
use crate::format::ImportMode;
use crate::reconcile::{HubImage, every_op, import_lines, is_system_module};

/// Random streams of a drill, by purpose.
pub(crate) mod stream {
    pub(crate) const CYCLES: u64 = 1;
    pub(crate) const FLEET: u64 = 2;
    pub(crate) const WRITES: u64 = 3;
    pub(crate) const BIRTH: u64 = 4;
    pub(crate) const SCENARIO: u64 = 5;
    pub(crate) const QUEUES: u64 = 6;
    pub(crate) const EVENTS: u64 = 7;
    pub(crate) const FORMATS: u64 = 8;
}

/// 2025-01-01T00:00:00Z: where simulated time starts.
pub const EPOCH_MS: i64 = 1_735_689_600_000;
const MINUTE: i64 = 60_000;

/// The buckets of each cycle's timeline in reports.
pub const BUCKETS: usize = 48;

/// One failover and failback round, on the true clock (ms since the epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cycle {
    /// The primary is active from here.
    pub start: i64,
    /// The last backup before the failure: the base of the merge, and what
    /// the secondary is seeded from.
    pub backup: i64,
    /// The point the primary is restored to: what it took after this is
    /// lost (equal to `fail` when it loses nothing).
    pub restore: i64,
    /// The primary's region fails; devices move to the secondary.
    pub fail: i64,
    /// Failback: exports, merge, plans.
    pub failback: i64,
    /// Whether the primary keeps taking a share of writes during the
    /// outage.
    pub split_brain: bool,
    /// The hub whose clock is off, and by how much (ms).
    pub skew: Option<(Hub, i64)>,
    /// The hub whose plan is interrupted, then finished by a second merge.
    pub interrupt: Hub,
    /// Where its plan is cut, in thousandths of its length.
    pub interrupt_permille: u32,
    /// With continuous replication from events: how long an event takes
    /// at most to reach the secondary's replica (ms).
    pub replication_lag: Option<i64>,
    /// The file each hub's state is read from at failback, primary first.
    pub formats: [ExportFormat; 2],
}

/// Draws the timeline of every cycle.
pub(crate) fn plan_cycles(
    seed: u64,
    cycles: u32,
    rpo_ms: i64,
    split_brain: bool,
    skew_ms: Option<i64>,
) -> Vec<Cycle> {
    let mut rng = Rng::derive(seed, &[stream::CYCLES]);
    let mut t = EPOCH_MS;
    let mut out = Vec::new();
    for _ in 0..cycles {
        let normal = (rng.range(20, 41) * MINUTE).max(rpo_ms + 5 * MINUTE);
        let start = t;
        let fail = start + normal;
        let backup = fail - rng.range(0, rpo_ms + 1);
        let intact = rng.chance(500);
        let restore_at = rng.range(backup, fail + 1);
        let restore = if intact { fail } else { restore_at };
        let failback = fail + rng.range(15, 46) * MINUTE;
        let skewed = if rng.chance(500) {
            Hub::Primary
        } else {
            Hub::Secondary
        };
        let ahead = rng.chance(500);
        let interrupt = if rng.chance(500) {
            Hub::Primary
        } else {
            Hub::Secondary
        };
        let interrupt_permille = rng.range(1, 1000) as u32;
        out.push(Cycle {
            start,
            backup,
            restore,
            fail,
            failback,
            split_brain,
            skew: skew_ms.map(|ms| (skewed, if ahead { ms } else { -ms })),
            interrupt,
            interrupt_permille,
            replication_lag: None,
            formats: [ExportFormat::Keys; 2],
        });
        t = failback + 60 * MINUTE;
    }
    out
}

/// How many devices are provisioned during each cycle's outage, besides the
/// initial fleet.
pub(crate) fn new_per_cycle(devices: u64) -> u64 {
    (devices / 50).max(1)
}

/// When and where device `index` is first provisioned: the cycle and the
/// (hub, time) of each creation. Two creations are a concurrent create in
/// split brain.
fn birth(
    seed: u64,
    index: u64,
    initial: u64,
    cycles: &[Cycle],
) -> Option<(usize, Vec<(Hub, i64)>)> {
    let c = usize::try_from((index.checked_sub(initial)?) / new_per_cycle(initial)).ok()?;
    let cycle = cycles.get(c)?;
    let mut rng = Rng::derive(seed, &[stream::BIRTH, index]);
    let outage = |rng: &mut Rng| rng.range(cycle.fail + 1, cycle.failback);
    let roll = rng.below(100);
    let mut at = Vec::new();
    if roll < 20 {
        at.push((Hub::Primary, rng.range(cycle.start + 1, cycle.fail + 1)));
    } else if cycle.split_brain && roll < 45 {
        at.push((Hub::Primary, outage(&mut rng)));
        if roll < 35 {
            at.push((Hub::Secondary, outage(&mut rng)));
        }
    } else {
        at.push((Hub::Secondary, outage(&mut rng)));
    }
    Some((c, at))
}

/// One device's simulation state, kept across cycles.
pub(crate) struct DeviceSim {
    pub index: u64,
    pub id: String,
    /// The device's counter of unique values.
    pub next: u64,
    /// What each hub holds of it.
    pub hubs: [HubDev; 2],
    /// The device as the cycle started (the previous failback's result).
    pub start: Option<DeviceSnapshot>,
}

impl DeviceSim {
    /// Device `index`, written to both hubs when it is in the initial
    /// fleet.
    pub(crate) fn new(
        seed: u64,
        index: u64,
        width: usize,
        initial: u64,
        hubs: &mut [HubImage; 2],
    ) -> Result<Self, String> {
        let id = device_id(index, width);
        let mut next = 0;
        let start = if index < initial {
            let mut rng = Rng::derive(seed, &[stream::FLEET, index]);
            let mut g = Gen {
                rng: &mut rng,
                next: &mut next,
            };
            let device = g.device(&id);
            for hub in hubs.iter_mut() {
                write_device(hub, &id, None, Some(&device))?;
            }
            Some(device)
        } else {
            None
        };
        let at_start = HubDev::at_start(start.as_ref(), false);
        Ok(Self {
            index,
            id,
            next,
            hubs: [at_start.clone(), at_start],
            start,
        })
    }
}

/// Write rates: binomial counts of 8 trials of the given thousandths.
struct Rates {
    primary: u32,
    secondary: u32,
    split: u32,
}

impl Rates {
    fn of(cycle: &Cycle) -> Self {
        if cycle.split_brain {
            Self {
                primary: 150,
                secondary: 140,
                split: 70,
            }
        } else {
            Self {
                primary: 150,
                secondary: 200,
                split: 0,
            }
        }
    }
}

/// Counts of writes for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteCounts {
    /// Primary writes held by the backup.
    pub primary_backed_up: u64,
    /// Primary writes after the backup that the primary kept: the RPO
    /// window the merge must bring back.
    pub primary_rpo_kept: u64,
    /// Primary writes lost with its region: data the platform lost.
    pub primary_lost: u64,
    /// Primary writes during the outage (split brain).
    pub primary_split: u64,
    /// Secondary writes during the outage.
    pub secondary: u64,
    /// Writes by kind.
    pub kinds: BTreeMap<&'static str, u64>,
    /// Per cycle, per bucket: primary kept, primary lost, secondary.
    pub timeline: Vec<Vec<[u64; 3]>>,
}

impl WriteCounts {
    fn count(&mut self, c: usize, cycle: &Cycle, w: &Write, failed: bool) {
        match (w.hub, w.lost, w.in_backup, failed) {
            (Hub::Secondary, ..) => self.secondary += 1,
            (Hub::Primary, true, ..) => self.primary_lost += 1,
            (Hub::Primary, false, true, _) => self.primary_backed_up += 1,
            (Hub::Primary, false, false, false) => self.primary_rpo_kept += 1,
            (Hub::Primary, false, false, true) => self.primary_split += 1,
        }
        *self.kinds.entry(w.kind.name()).or_default() += 1;
        if self.timeline.len() <= c {
            self.timeline.resize(c + 1, vec![[0; 3]; BUCKETS]);
        }
        let span = (cycle.failback - cycle.start).max(1);
        let bucket = ((w.time - cycle.start).clamp(0, span - 1) * BUCKETS as i64 / span) as usize;
        let lane = match (w.hub, w.lost) {
            (Hub::Primary, false) => 0,
            (Hub::Primary, true) => 1,
            (Hub::Secondary, _) => 2,
        };
        if let Some(slot) = self.timeline.get_mut(c).and_then(|t| t.get_mut(bucket)) {
            slot[lane] += 1;
        }
    }

    /// Adds another part's counts.
    pub fn add(&mut self, other: &WriteCounts) {
        self.primary_backed_up += other.primary_backed_up;
        self.primary_rpo_kept += other.primary_rpo_kept;
        self.primary_lost += other.primary_lost;
        self.primary_split += other.primary_split;
        self.secondary += other.secondary;
        for (k, v) in &other.kinds {
            *self.kinds.entry(k).or_default() += v;
        }
        if self.timeline.len() < other.timeline.len() {
            self.timeline
                .resize(other.timeline.len(), vec![[0; 3]; BUCKETS]);
        }
        for (mine, theirs) in self.timeline.iter_mut().zip(&other.timeline) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                for lane in 0..3 {
                    a[lane] += b[lane];
                }
            }
        }
    }
}

/// Reads a device and the given modules from a hub.
pub(crate) fn read_device<'a>(
    hub: &HubImage,
    id: &str,
    modules: impl Iterator<Item = &'a String>,
) -> Option<DeviceSnapshot> {
    let record = hub.get(id, None)?;
    let mut device = DeviceSnapshot {
        id: id.to_owned(),
        device: record.entity.clone(),
        ..DeviceSnapshot::default()
    };
    for m in modules {
        if let Some(r) = hub.get(id, Some(m)) {
            device.modules.insert(m.clone(), r.entity.clone());
        }
    }
    Some(device)
}

/// Makes the hub hold `after` for device `id` (absent for `None`), through
/// the hub's own import semantics, and checks that it does.
///
/// # Errors
///
/// A description of the inconsistency when the hub refuses a line or ends
/// up holding something else.
pub(crate) fn write_device(
    hub: &mut HubImage,
    id: &str,
    before: Option<&DeviceSnapshot>,
    after: Option<&DeviceSnapshot>,
) -> Result<(), String> {
    // A hub's own writes reach its system modules too (the deployment,
    // the edge runtime): every operation, and the system modules the hub
    // created with an edge device are then written over, not created.
    let (ops, _) = every_op(before, after);
    let mut lines = import_lines(&ops, hub);
    for line in &mut lines {
        if line.mode == ImportMode::Create
            && line.module_id.as_deref().is_some_and(is_system_module)
        {
            line.mode = ImportMode::CreateOrUpdate;
        }
    }
    let errors = hub.apply_owned(lines);
    if let Some(e) = errors.first() {
        return Err(format!(
            "the simulated hub refused a write to {id}: {} {}",
            e.error_code, e.error_status
        ));
    }
    // What `read_device` would read of the device and the modules before
    // and after name must be `after`, compared where the hub holds it.
    let mut modules = before
        .into_iter()
        .chain(after)
        .flat_map(|d| d.modules.keys());
    let held = match (hub.get(id, None), after) {
        (None, None) => true,
        (Some(record), Some(after)) => {
            after.id == id
                && record.entity == after.device
                && modules.all(|m| hub.get(id, Some(m)).map(|r| &r.entity) == after.modules.get(m))
        }
        _ => false,
    };
    if !held {
        return Err(format!(
            "the simulated hub holds something else than written for {id}"
        ));
    }
    Ok(())
}

/// One device's cycle, as the checks need it.
pub(crate) struct DeviceCycle {
    /// Every write, in the order they happened.
    pub writes: Vec<Write>,
    /// What each hub held of the device at failback.
    pub finals: [HubDev; 2],
    /// What the event replication broke of its invariants, if anything.
    pub replica: Vec<(Invariant, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    time: i64,
    hub: Hub,
    birth: bool,
}

/// Everything a cycle's simulation writes to.
pub(crate) struct CycleIo<'a> {
    /// The concierge's registers this cycle: they route every write.
    pub concierge: &'a super::concierge::CycleConcierge,
    pub hubs: &'a mut [HubImage; 2],
    pub base: &'a mut BTreeMap<String, DeviceSnapshot>,
    pub counts: &'a mut WriteCounts,
    /// Continuous replication from events, when the drill uses it.
    pub replication: Option<&'a mut ReplicationCounts>,
}

/// Replays device `dev`'s writes of cycle `c` against the hubs, takes its
/// part of the backup, and returns what the oracle saw.
///
/// # Errors
///
/// An inconsistency of the simulated hubs (a write they refused).
pub(crate) fn simulate(
    dev: &mut DeviceSim,
    seed: u64,
    initial: u64,
    cycles: &[Cycle],
    c: usize,
    io: &mut CycleIo<'_>,
) -> Result<DeviceCycle, String> {
    let Some(cycle) = cycles.get(c) else {
        return Err(format!("no cycle {c}"));
    };
    let mut rng = Rng::derive(seed, &[stream::WRITES, c as u64, dev.index]);
    let rates = Rates::of(cycle);
    let mut events = Vec::new();
    // Each write goes where the concierge replica its device consults (the
    // region's) names at that moment.
    let concierge = io.concierge;
    let mut times = |rng: &mut Rng, region: Hub, per_mille: u32, from: i64, to: i64| {
        for _ in 0..rng.count(8, per_mille) {
            let time = rng.range(from + 1, to + 1);
            events.push(Event {
                time,
                hub: concierge.route(cycle, region, time),
                birth: false,
            });
        }
    };
    times(
        &mut rng,
        Hub::Primary,
        rates.primary,
        cycle.start,
        cycle.fail,
    );
    times(
        &mut rng,
        Hub::Secondary,
        rates.secondary,
        cycle.fail,
        cycle.failback - 1,
    );
    times(
        &mut rng,
        Hub::Primary,
        rates.split,
        cycle.fail,
        cycle.failback - 1,
    );
    if let Some((born, at)) = birth(seed, dev.index, initial, cycles) {
        if born == c {
            events.extend(at.into_iter().map(|(region, time)| Event {
                time,
                hub: concierge.route(cycle, region, time),
                birth: true,
            }));
        }
    }
    events.sort();

    let id = dev.id.clone();
    let CycleIo {
        hubs,
        base,
        counts,
        replication,
        ..
    } = io;
    let mut feed = match (replication.is_some(), cycle.replication_lag) {
        (true, Some(lag)) => Some(Feed::new(seed, c, dev.index, lag, cycle.fail)),
        _ => None,
    };
    // The writes that made events: their index and whether the events
    // arrived by the failover.
    let mut emitted: Vec<(usize, bool)> = Vec::new();
    let mut replica_findings = Vec::new();
    let mut current: [State; 2] = [
        State::Own(read_device(&hubs[0], &id, dev.hubs[0].modules.keys())),
        State::Own(read_device(&hubs[1], &id, dev.hubs[1].modules.keys())),
    ];
    // The primary's state after its restore point: writes there are lost.
    let mut ghost: Option<(State, HubDev)> = None;
    let (mut backed_up, mut forked, mut failed) = (false, false, false);
    let mut seq = [0u32; 2];
    let mut writes = Vec::new();
    let mut g = Gen {
        rng: &mut rng,
        next: &mut dev.next,
    };
    for event in events {
        if !backed_up && event.time > cycle.backup {
            backup(&id, &mut current, &mut dev.hubs, hubs, base)?;
            backed_up = true;
        }
        if !forked && cycle.restore < cycle.fail && event.time > cycle.restore {
            ghost = Some((current[0].fork(), dev.hubs[0].clone()));
            forked = true;
        }
        if !failed && event.time > cycle.fail {
            ghost = None;
            failed = true;
            if let Some(feed) = feed.as_mut() {
                let mut failover = Failover {
                    id: &id,
                    current: &mut current,
                    devs: &mut dev.hubs,
                    hubs,
                    base,
                };
                replica_findings = failover.seed(feed, &mut writes, &emitted, cycle)?;
            }
        }
        let h = event.hub.index();
        let lost = event.hub == Hub::Primary && ghost.is_some();
        let (state, hub_dev) = match (&mut ghost, lost) {
            (Some((state, hub_dev)), true) => (state, hub_dev),
            _ => (&mut current[h], &mut dev.hubs[h]),
        };
        let held = state.get(base, &id);
        let Some(change) = draw(&mut g, &id, hub_dev, held, event.birth) else {
            continue;
        };
        if !lost {
            write_device(&mut hubs[h], &id, held, change.after.as_ref())?;
        }
        // The primary's writes between the backup and the failover make
        // the events the replica is built from.
        let arrived = match feed.as_mut() {
            Some(feed) if event.hub == Hub::Primary && backed_up && !failed => feed.write(
                &id,
                (held, change.after.as_ref()),
                &change.op,
                event.time,
                lost,
            ),
            _ => None,
        };
        if let Some(arrived) = arrived {
            emitted.push((writes.len(), arrived));
        }
        *state = State::Own(change.after);
        seq[h] += 1;
        let write = Write {
            hub: event.hub,
            time: event.time,
            seq: seq[h],
            in_backup: event.hub == Hub::Primary && !backed_up,
            ghost: lost,
            replicated: arrived == Some(true),
            lost,
            kind: change.kind,
            inc: hub_dev.inc.unwrap_or(match &change.op {
                super::oracle::Op::Delete { inc } => *inc,
                _ => 0,
            }),
            op: change.op,
            facts: change.facts,
        };
        writes.push(write);
    }
    if !backed_up {
        backup(&id, &mut current, &mut dev.hubs, hubs, base)?;
    }
    if let (false, Some(feed)) = (failed, feed.as_mut()) {
        let mut failover = Failover {
            id: &id,
            current: &mut current,
            devs: &mut dev.hubs,
            hubs,
            base,
        };
        replica_findings = failover.seed(feed, &mut writes, &emitted, cycle)?;
    }
    // What no hub holds: a write on the primary's lost branch that did
    // not reach the secondary through the replica.
    for w in &mut writes {
        w.lost = w.ghost && !w.replicated;
    }
    if let Some(r) = replication {
        let mut part = feed.map(|f| f.counts).unwrap_or_default();
        for (i, w) in writes.iter().enumerate() {
            if !w.ghost {
                continue;
            }
            part.lost_export.count(w.facts.len());
            if feed_used(cycle) && w.lost {
                part.lost_events.count(w.facts.len());
                let lag = cycle.replication_lag.unwrap_or(0);
                match emitted.iter().find(|(at, _)| *at == i) {
                    None => part.lost_no_event.count(w.facts.len()),
                    Some((_, false)) => {
                        part.lost_in_flight.count(w.facts.len());
                        if w.time + lag <= cycle.fail {
                            let detail = format!(
                                "the primary's {} write at {} was lost, yet older than the lag",
                                w.kind.name(),
                                w.time - cycle.start
                            );
                            replica_findings.push((REPLICATION_LOSS, detail));
                        }
                    }
                    Some((_, true)) => part.lost_keyless.count(w.facts.len()),
                }
            }
        }
        r.add(&part);
    }
    for w in &writes {
        counts.count(c, cycle, w, w.time > cycle.fail);
    }
    Ok(DeviceCycle {
        writes,
        finals: dev.hubs.clone(),
        replica: replica_findings,
    })
}

fn feed_used(cycle: &Cycle) -> bool {
    cycle.replication_lag.is_some()
}

/// What seeding the secondary at failover changes.
struct Failover<'a> {
    id: &'a str,
    current: &'a mut [State; 2],
    devs: &'a mut [HubDev; 2],
    hubs: &'a mut [HubImage; 2],
    base: &'a mut BTreeMap<String, DeviceSnapshot>,
}

impl Failover<'_> {
    /// Seeds the secondary from the event replica, when an event of the
    /// device arrived and the replica knows its keys; the merge base
    /// becomes what the seed and the restored primary share. Returns what
    /// the replica broke of its invariant.
    fn seed(
        &mut self,
        feed: &mut Feed,
        writes: &mut [Write],
        emitted: &[(usize, bool)],
        cycle: &Cycle,
    ) -> Result<Vec<(Invariant, String)>, String> {
        if !feed.any_arrived() {
            return Ok(Vec::new());
        }
        let id = self.id;
        let backup = self.base.get(id).cloned();
        let derived = feed.failover(id, backup.as_ref())?;
        let findings = check_replica(
            derived.replica.as_ref(),
            writes,
            emitted,
            cycle.replication_lag.unwrap_or(0),
            cycle.fail,
        )
        .into_iter()
        .map(|detail| (REPLICA_UP_TO_LAG, detail))
        .collect();
        let Some(Seeded { seed, base }) = derived.seeded else {
            // Seeded from the backup: the replica's writes are not in it.
            for w in writes.iter_mut() {
                w.replicated = false;
            }
            return Ok(findings);
        };
        if let State::Base = self.current[0] {
            self.current[0] = State::Own(backup.clone());
        }
        write_device(
            &mut self.hubs[1],
            id,
            self.current[1].get(self.base, id),
            seed.as_ref(),
        )?;
        self.current[1] = State::Own(seed);
        let dev = &mut self.devs[1];
        for w in writes.iter().filter(|w| w.replicated) {
            match &w.op {
                super::oracle::Op::Delete { .. } => {
                    dev.inc = None;
                    dev.modules.clear();
                }
                super::oracle::Op::ModuleDelete { module, .. } => {
                    dev.modules.remove(module);
                }
                _ => {}
            }
        }
        match base {
            Some(b) => self.base.insert(id.to_owned(), b),
            None => self.base.remove(id),
        };
        Ok(findings)
    }
}

/// What a hub holds of the device during a cycle's simulation.
// Two live on the stack per device simulated: boxing the device would add
// the allocation the base is there to save.
#[allow(clippy::large_enum_variant)]
enum State {
    /// This device (`None`: the hub lacks it).
    Own(Option<DeviceSnapshot>),
    /// The base's device (or the lack of it), as the backup left it and
    /// no write since changed: read from the base rather than copied.
    Base,
}

impl State {
    fn get<'a>(
        &'a self,
        base: &'a BTreeMap<String, DeviceSnapshot>,
        id: &str,
    ) -> Option<&'a DeviceSnapshot> {
        match self {
            State::Own(device) => device.as_ref(),
            State::Base => base.get(id),
        }
    }

    /// A copy that goes its own way from here.
    fn fork(&self) -> State {
        match self {
            State::Own(device) => State::Own(device.clone()),
            State::Base => State::Base,
        }
    }
}

/// The backup: the base takes the primary's device, and the secondary is
/// seeded with it by an import. Both hubs then hold the base's device.
fn backup(
    id: &str,
    current: &mut [State; 2],
    devs: &mut [HubDev; 2],
    hubs: &mut [HubImage; 2],
    base: &mut BTreeMap<String, DeviceSnapshot>,
) -> Result<(), String> {
    let [primary, secondary] = current;
    let primary = match std::mem::replace(primary, State::Base) {
        State::Own(device) => device,
        // Only the backup makes the base: it is not there yet.
        State::Base => base.get(id).cloned(),
    };
    write_device(&mut hubs[1], id, secondary.get(base, id), primary.as_ref())?;
    if let Some(device) = primary {
        base.insert(id.to_owned(), device);
    }
    *secondary = State::Base;
    devs[1] = devs[0].clone();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_follow_the_failover_story() {
        for seed in 0..50 {
            let cycles = plan_cycles(seed, 3, 300_000, seed % 2 == 0, Some(90_000));
            let mut previous_end = i64::MIN;
            for c in &cycles {
                assert!(previous_end < c.start);
                assert!(c.start < c.backup && c.backup <= c.restore && c.restore <= c.fail);
                assert!(c.fail - c.backup <= 300_000);
                assert!(c.fail < c.failback);
                assert_eq!(c.skew.map(|(_, ms)| ms.abs()), Some(90_000));
                previous_end = c.failback;
            }
        }
    }

    #[test]
    fn births_land_in_their_cycle() {
        let cycles = plan_cycles(3, 2, 300_000, true, None);
        let per = new_per_cycle(100);
        assert_eq!(birth(3, 99, 100, &cycles), None);
        let (c, at) = birth(3, 100 + per, 100, &cycles).unwrap();
        assert_eq!(c, 1);
        for (_, t) in at {
            assert!(cycles[1].start < t && t < cycles[1].failback);
        }
        assert_eq!(birth(3, 100 + 2 * per, 100, &cycles), None);
    }
}
