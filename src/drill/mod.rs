//! The drill: a whole failover and failback of a simulated fleet, with the
//! faults a failover meets (lost RPO writes, split brain, duplicated and
//! reordered events, skewed clocks), merged by the real library, the plans applied
//! with IoT Hub's import semantics, and every invariant checked against an
//! oracle that saw every write.
//!
//! A run is a pure function of its [`DrillConfig`]: the seed draws the
//! cycles' timelines and every device's content and writes, so the same
//! seed gives the same [`Report`], byte for byte, whatever the thread
//! count. Wall-clock times are measured only for the human table
//! ([`PhaseTimes`]).
//!
//! # Example
//!
//! ```
//! use failback::drill::{DrillConfig, run};
//!
//! let config = DrillConfig { devices: 20, ..DrillConfig::new(7) };
//! let outcome = run(&config, &|_| {}).unwrap();
//! assert!(outcome.report.passed(), "{}", outcome.report.table(None));
//! let again = run(&config, &|_| {}).unwrap();
//! assert_eq!(outcome.report.to_json(), again.report.to_json());
//! ```

mod concierge;
mod failback;
mod fleet;
mod formats;
mod invariants;
mod oracle;
mod paths;
mod queues;
mod replication;
mod report;
mod rng;
mod sim;
mod writes;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use concierge::ConciergeCycle;
pub use failback::{PlanCounts, export_roundtrip, plan_roundtrip};
pub use fleet::device_id;
pub use formats::{CycleFormats, ExportFormat, ExportFormats, FormatCounts, UnknownExportFormats};
pub use invariants::{ALL as INVARIANTS, Accounting, EXAMPLES, Findings, Invariant, Violation};
pub use oracle::Hub;
pub use queues::QueueCounts;
pub use replication::{Loss, Replication, ReplicationCounts, UnknownReplication};
pub use report::{DeviceCounts, Report};
pub use rng::Rng;
pub use sim::{BUCKETS, Cycle, EPOCH_MS, WriteCounts};

use crate::clock::{ReplicaId, Stamp};
use crate::reconcile::{HubImage, HubTiming, StampError, default_order, hub_clocks};
use invariants::{
    CONCIERGE_ROUTES, DeviceCheck, NO_PANIC, REPLICATION_LOSS, SIMULATOR_CONSISTENT, check_device,
};
use sim::{CycleIo, DeviceSim, plan_cycles, simulate, stream};
use writes::HubDev;

/// The clock drift the merge allows (policy 6), in ms.
pub const MAX_DRIFT_MS: i64 = 5 * 60_000;

/// Devices per shard: the unit a thread simulates, merges and checks at
/// once, which bounds memory whatever the fleet size.
pub const SHARD: u64 = 512;

/// One shard in this many is merged a second time, hubs swapped and on two
/// threads, for the `deterministic` invariant (always the first shard).
pub const DETERMINISM_SAMPLE: usize = 8;

/// What to rehearse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrillConfig {
    /// The seed every random draw comes from.
    pub seed: u64,
    /// Devices in the initial fleet (about 2% more are provisioned in each
    /// cycle).
    pub devices: u64,
    /// The recovery point objective: the backup lags the primary by up to
    /// this, in ms.
    pub rpo_ms: i64,
    /// Whether the primary keeps taking a share of writes during the
    /// outage.
    pub split_brain: bool,
    /// The clock skew of one hub, in ms; with it the merge stamps writes
    /// with as-of times instead of the activation order.
    pub skew_ms: Option<i64>,
    /// Failover and failback rounds.
    pub cycles: u32,
    /// Threads (the report does not depend on it).
    pub threads: usize,
    /// How the secondary is kept in step with the primary.
    pub replication: Replication,
    /// The files the hubs' states are read from at failback.
    pub export_formats: ExportFormats,
}

impl DrillConfig {
    /// The default drill for `seed`: 10,000 devices, a 5-minute RPO, two
    /// cycles, no split brain, no skew, replication from events compared
    /// with the export backup, each hub's file format drawn per cycle.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            devices: 10_000,
            rpo_ms: 5 * 60_000,
            split_brain: false,
            skew_ms: None,
            cycles: 2,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            replication: Replication::default(),
            export_formats: ExportFormats::default(),
        }
    }

    /// A drill whose faults are drawn from the seed too: split brain half
    /// the time, a skew of up to four minutes half the time, one to three
    /// cycles. What `--seeds` runs.
    pub fn varied(seed: u64, devices: u64) -> Self {
        let mut rng = Rng::derive(seed, &[stream::SCENARIO]);
        let split_brain = rng.chance(500);
        let skew = rng.range(10, 241) * 1000;
        let skewed = rng.chance(500);
        let cycles = 1 + rng.below(3) as u32;
        Self {
            devices,
            split_brain,
            skew_ms: skewed.then_some(skew),
            cycles,
            threads: 1,
            ..Self::new(seed)
        }
    }

    /// Checks that the drill can be rehearsed, without running it.
    ///
    /// # Errors
    ///
    /// [`DrillError`] saying what to change.
    pub fn validate(&self) -> Result<(), DrillError> {
        if self.devices == 0 || self.cycles == 0 {
            return Err(DrillError::Empty);
        }
        if self.rpo_ms < 0 {
            return Err(DrillError::NegativeRpo);
        }
        if let Some(skew_ms) = self.skew_ms.filter(|ms| ms.abs() >= MAX_DRIFT_MS) {
            return Err(DrillError::SkewBeyondDrift { skew_ms });
        }
        Ok(())
    }

    /// The command that replays this drill.
    pub fn command(&self) -> String {
        let mut out = format!(
            "failback drill --seed {} --devices {} --cycles {} --rpo {}s",
            self.seed,
            self.devices,
            self.cycles,
            self.rpo_ms / 1000
        );
        if self.split_brain {
            out.push_str(" --split-brain");
        }
        if let Some(ms) = self.skew_ms {
            out.push_str(&format!(" --skew {}s", ms / 1000));
        }
        if self.replication != Replication::default() {
            out.push_str(&format!(" --replication {}", self.replication));
        }
        if self.export_formats != ExportFormats::default() {
            out.push_str(&format!(" --export-formats {}", self.export_formats));
        }
        out
    }
}

/// Why a drill cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DrillError {
    /// No devices or no cycles asked for.
    #[error("a drill needs at least one device and one cycle")]
    Empty,
    /// A negative RPO.
    #[error("the RPO must not be negative")]
    NegativeRpo,
    /// A skew the merge would reject (policy 6).
    #[error(
        "a clock skew of {skew_ms} ms is beyond the allowed drift of {MAX_DRIFT_MS} ms: the merge rejects such stamps; use a smaller --skew"
    )]
    SkewBeyondDrift {
        /// The skew asked for.
        skew_ms: i64,
    },
    /// The library refused the hubs' stamps.
    #[error("the merge refused the hubs' times in cycle {cycle}: {message}")]
    Stamps {
        /// The cycle, from 1.
        cycle: usize,
        /// The library's error.
        message: String,
    },
}

/// Time spent in each phase, summed over threads. Wall-clock, so never in
/// `report.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PhaseTimes {
    /// Drawing the initial fleet and writing it to both hubs.
    pub generate: Duration,
    /// Replaying the writes of every cycle.
    pub simulate: Duration,
    /// Exports, merges, plans and their application.
    pub failback: Duration,
    /// The invariant checks against the oracle.
    pub check: Duration,
    /// The whole run, wall-clock.
    pub total: Duration,
}

impl PhaseTimes {
    fn add(&mut self, o: &PhaseTimes) {
        self.generate += o.generate;
        self.simulate += o.simulate;
        self.failback += o.failback;
        self.check += o.check;
    }
}

/// A finished drill.
#[derive(Clone, Debug)]
pub struct DrillOutcome {
    /// Everything that is a function of the seed.
    pub report: Report,
    /// Where the time went.
    pub times: PhaseTimes,
}

#[derive(Default)]
struct ShardResult {
    findings: Findings,
    accounting: Accounting,
    writes: WriteCounts,
    plans: PlanCounts,
    conflicts: BTreeMap<&'static str, u64>,
    outcomes: BTreeMap<&'static str, u64>,
    devices: DeviceCounts,
    replication: ReplicationCounts,
    formats: FormatCounts,
    times: PhaseTimes,
}

fn stamps_of(cycles: &[Cycle]) -> Result<Vec<BTreeMap<ReplicaId, Stamp>>, DrillError> {
    let names = Hub::BOTH.map(|h| ReplicaId::new(h.name()).expect("valid literal"));
    let mut out = Vec::new();
    for (c, cycle) in cycles.iter().enumerate() {
        let timing: Vec<HubTiming> = Hub::BOTH
            .iter()
            .map(|h| {
                // A hub's writes end when it stops being active: the
                // primary at the failure (or failback, in split brain), the
                // secondary at failback; each read on the hub's own clock.
                let end = match h {
                    Hub::Primary if !cycle.split_brain => cycle.fail,
                    _ => cycle.failback,
                };
                let skew = match cycle.skew {
                    Some((skewed, ms)) if skewed == *h => ms,
                    _ => 0,
                };
                HubTiming {
                    hub: names[h.index()].clone(),
                    real_times: false,
                    as_of: cycle.skew.map(|_| end + skew),
                    newest: None,
                }
            })
            .collect();
        let order = default_order(&names);
        let failed = |e: StampError| DrillError::Stamps {
            cycle: c + 1,
            message: e.to_string(),
        };
        let clocks =
            hub_clocks(&timing, order.as_deref(), cycle.failback, MAX_DRIFT_MS).map_err(failed)?;
        // The merges of this cycle rely on it: every hub has a stamp.
        let stamps = names
            .iter()
            .map(|name| Ok((name.clone(), clocks.stamp(name).map_err(failed)?)))
            .collect::<Result<_, DrillError>>()?;
        out.push(stamps);
    }
    Ok(out)
}

/// Runs a drill. `progress` is called with the number of devices each
/// finished shard-cycle covered (the total is [`total_devices`] times
/// the cycles).
///
/// # Errors
///
/// [`DrillError`] when the configuration cannot be rehearsed; a broken
/// invariant is not an error but a finding of the report.
pub fn run(
    config: &DrillConfig,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<DrillOutcome, DrillError> {
    let started = Instant::now();
    config.validate()?;
    let mut cycles = plan_cycles(
        config.seed,
        config.cycles,
        config.rpo_ms,
        config.split_brain,
        config.skew_ms,
    );
    if config.replication.uses_events() {
        for (c, cycle) in cycles.iter_mut().enumerate() {
            cycle.replication_lag = Some(replication::cycle_lag(config.seed, c));
        }
    }
    for (c, cycle) in cycles.iter_mut().enumerate() {
        cycle.formats = config.export_formats.draw(config.seed, c);
    }
    let stamps = stamps_of(&cycles)?;
    let concierge = concierge::plan(&cycles);
    let total = total_devices(config);
    let width = total.saturating_sub(1).to_string().len().max(6);
    let shards = usize::try_from(total.div_ceil(SHARD)).unwrap_or(usize::MAX);
    let threads = config.threads.clamp(1, shards.max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<ShardResult>>> = Mutex::new((0..shards).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let s = next.fetch_add(1, Ordering::Relaxed);
                    if s >= shards {
                        break;
                    }
                    let from = s as u64 * SHARD;
                    let to = (from + SHARD).min(total);
                    let shard = Shard {
                        config,
                        cycles: &cycles,
                        concierge: &concierge,
                        stamps: &stamps,
                        width,
                        // A second merge with the hubs swapped on two
                        // threads costs as much as the first: a sample of
                        // shards is enough to catch an order dependence.
                        check_determinism: s % DETERMINISM_SAMPLE == 0,
                    };
                    // A panic in the library on some seed is a finding to
                    // report with that seed, not the end of a seed range.
                    let run = std::panic::AssertUnwindSafe(|| shard.run(from..to, progress));
                    let result = std::panic::catch_unwind(run).unwrap_or_else(|panic| {
                        let message = panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        let mut failed = ShardResult::default();
                        failed.findings.report(
                            NO_PANIC,
                            0,
                            &device_id(from, width),
                            format!("the shard from this device panicked: {message}"),
                        );
                        failed
                    });
                    if let Ok(mut all) = results.lock() {
                        if let Some(slot) = all.get_mut(s) {
                            *slot = Some(result);
                        }
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut sum = ShardResult::default();
    for r in results.iter().flatten() {
        sum.findings.add(&r.findings);
        sum.accounting.add(&r.accounting);
        sum.writes.add(&r.writes);
        sum.plans.add(&r.plans);
        for (k, v) in &r.conflicts {
            *sum.conflicts.entry(k).or_default() += v;
        }
        for (k, v) in &r.outcomes {
            *sum.outcomes.entry(k).or_default() += v;
        }
        sum.devices.add(&r.devices);
        sum.replication.add(&r.replication);
        sum.formats.add(&r.formats);
        sum.times.add(&r.times);
    }
    let r = &sum.replication;
    if config.replication.uses_events() && r.lost_events.values > r.lost_export.values {
        let detail = format!(
            "the event replica lost {} values, the export backup {}",
            r.lost_events.values, r.lost_export.values
        );
        sum.findings.report(REPLICATION_LOSS, 0, "", detail);
    }
    if results.iter().any(Option::is_none) {
        sum.findings.report(
            SIMULATOR_CONSISTENT,
            0,
            "",
            "a shard of the fleet did not finish".into(),
        );
    }
    // The cloud-to-device messages and jobs of every cycle, fleet-wide.
    let t = Instant::now();
    let mut queue_counts = QueueCounts::default();
    for (c, cycle) in cycles.iter().enumerate() {
        queues::rehearse(
            config.seed,
            c,
            cycle,
            total,
            width,
            &mut sum.findings,
            &mut queue_counts,
        );
    }
    sum.times.failback += t.elapsed();
    // Failback leaves every concierge replica naming the primary at the
    // final epoch, whatever split brain there was.
    for (c, registers) in concierge.iter().enumerate() {
        let after = &registers.after;
        if after.active().as_str() != Hub::Primary.name() || after.split_brain().is_some() {
            let detail = format!(
                "after failback the concierge names {} at epoch {}",
                after.active(),
                after.epoch()
            );
            sum.findings.report(CONCIERGE_ROUTES, c, "", detail);
        }
    }
    sum.devices.initial = config.devices;
    sum.times.total = started.elapsed();
    Ok(DrillOutcome {
        report: Report {
            config: config.clone(),
            cycles,
            devices: sum.devices,
            writes: sum.writes,
            conflicts: sum.conflicts,
            outcomes: sum.outcomes,
            plans: sum.plans,
            queues: queue_counts,
            concierge: concierge.iter().map(|r| r.summary()).collect(),
            replication: sum.replication,
            formats: sum.formats,
            accounting: sum.accounting,
            findings: sum.findings,
        },
        times: sum.times,
    })
}

/// Device ids a drill uses: the initial fleet and those provisioned later.
pub fn total_devices(config: &DrillConfig) -> u64 {
    config.devices + sim::new_per_cycle(config.devices) * u64::from(config.cycles)
}

struct Shard<'a> {
    config: &'a DrillConfig,
    cycles: &'a [Cycle],
    concierge: &'a [concierge::CycleConcierge],
    stamps: &'a [BTreeMap<ReplicaId, Stamp>],
    width: usize,
    check_determinism: bool,
}

impl Shard<'_> {
    fn run(&self, range: std::ops::Range<u64>, progress: &(dyn Fn(u64) + Sync)) -> ShardResult {
        let mut out = ShardResult::default();
        let seed = self.config.seed;
        let initial = self.config.devices;
        let t = Instant::now();
        let mut hubs = [HubImage::new(), HubImage::new()];
        let mut buf = Vec::new();
        // What the last exports read back, which the next ones start from.
        let mut exported = None;
        let mut devices = Vec::new();
        for index in range.clone() {
            match DeviceSim::new(seed, index, self.width, initial, &mut hubs) {
                Ok(dev) => devices.push(dev),
                Err(e) => {
                    out.findings
                        .report(SIMULATOR_CONSISTENT, 0, &device_id(index, self.width), e)
                }
            }
        }
        out.times.generate += t.elapsed();
        for (c, cycle) in self.cycles.iter().enumerate() {
            let t = Instant::now();
            let mut base = BTreeMap::new();
            let mut logs = Vec::with_capacity(devices.len());
            let Some(registers) = self.concierge.get(c) else {
                break;
            };
            let mut io = CycleIo {
                concierge: registers,
                hubs: &mut hubs,
                base: &mut base,
                counts: &mut out.writes,
                replication: Some(&mut out.replication),
            };
            for dev in &mut devices {
                match simulate(dev, seed, initial, self.cycles, c, &mut io) {
                    Ok(log) => {
                        // No hub takes a write after a higher epoch moved
                        // its device away, but in a split brain.
                        let moved = log.writes.iter().find(|w| {
                            !cycle.split_brain && w.hub != registers.latest(cycle, w.time)
                        });
                        if let Some(w) = moved {
                            let detail = format!(
                                "the {} took a write at {} ms after the concierge moved the device to the {}",
                                w.hub.name(),
                                w.time - cycle.start,
                                registers.latest(cycle, w.time).name()
                            );
                            out.findings.report(CONCIERGE_ROUTES, c, &dev.id, detail);
                        }
                        for (invariant, detail) in &log.replica {
                            out.findings.report(*invariant, c, &dev.id, detail.clone());
                        }
                        logs.push(Some(log));
                    }
                    Err(e) => {
                        out.findings.report(SIMULATOR_CONSISTENT, c, &dev.id, e);
                        logs.push(None);
                    }
                }
            }
            out.times.simulate += t.elapsed();

            let t = Instant::now();
            let Some(stamps) = self.stamps.get(c) else {
                break;
            };
            let inputs = failback::Inputs {
                c,
                cycle,
                base: &base,
                stamps,
            };
            let result = failback::failback(
                &inputs,
                &mut hubs,
                self.check_determinism,
                &mut out.findings,
                &mut out.plans,
                &mut buf,
                &mut exported,
            );
            out.times.failback += t.elapsed();

            let t = Instant::now();
            out.formats.count(c, &result.refusal);
            let formats = result.formats;
            let kept: std::collections::BTreeSet<String> =
                result.kept_unshown.into_iter().collect();
            let mut outcomes = result.outcomes;
            for o in &outcomes {
                *out.outcomes.entry(o.outcome.name()).or_default() += 1;
                for conflict in &o.merge.conflicts {
                    *out.conflicts.entry(conflict.rule.name()).or_default() += 1;
                }
            }
            let at: Vec<Option<usize>> = {
                let by_id: BTreeMap<&str, usize> = outcomes
                    .iter()
                    .enumerate()
                    .map(|(i, o)| (o.id.as_str(), i))
                    .collect();
                devices
                    .iter()
                    .map(|dev| by_id.get(dev.id.as_str()).copied())
                    .collect()
            };
            for ((dev, log), at) in devices.iter_mut().zip(&logs).zip(at) {
                let outcome = at.and_then(|i| outcomes.get_mut(i));
                if let Some(log) = log {
                    let outcome = outcome.as_deref();
                    let check = DeviceCheck {
                        cycle: c,
                        id: &dev.id,
                        start: dev.start.as_ref(),
                        base: base.get(&dev.id),
                        merged: outcome.and_then(|o| o.merge.merged.as_ref()),
                        conflicts: outcome.map_or(&[], |o| o.merge.conflicts.as_slice()),
                        log,
                        formats,
                    };
                    check_device(&check, &mut out.findings, &mut out.accounting);
                }
                // The device starts the next cycle as merged: taken, as
                // nothing reads the merge after this. Where the primary
                // kept values its file could not show, as the primary
                // holds it: what the next cycle's writes and backup start
                // from.
                dev.start = if kept.contains(&dev.id) {
                    let primary = &hubs[Hub::Primary.index()];
                    let modules = primary.device(&dev.id).map(|d| d.modules);
                    sim::read_device(primary, &dev.id, modules.into_iter().flat_map(|m| m.keys()))
                } else {
                    outcome.and_then(|o| o.merge.merged.take())
                };
                for h in Hub::BOTH {
                    let held = hubs[h.index()].device(&dev.id);
                    dev.hubs[h.index()] = HubDev::held(held, dev.hubs[h.index()].known);
                }
                if c + 1 == self.cycles.len() {
                    if let Some(m) = &dev.start {
                        out.devices.final_devices += 1;
                        out.devices.final_modules += m.modules.len() as u64;
                    }
                }
            }
            out.devices.provisioned += logs
                .iter()
                .flatten()
                .flat_map(|l| &l.writes)
                .filter(|w| w.kind == oracle::Kind::Provision && !w.lost)
                .count() as u64;
            out.times.check += t.elapsed();
            progress(range.end - range.start);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varied_configs_replay_from_their_command() {
        let config = DrillConfig::varied(12, 20);
        let cmd = config.command();
        assert!(cmd.starts_with("failback drill --seed 12 --devices 20"));
        assert_eq!(config, DrillConfig::varied(12, 20));
        let kinds: std::collections::BTreeSet<(bool, bool)> = (0..40)
            .map(|s| {
                let c = DrillConfig::varied(s, 20);
                (c.split_brain, c.skew_ms.is_some())
            })
            .collect();
        assert_eq!(kinds.len(), 4, "every mix of faults is drawn");
    }

    #[test]
    fn bad_configs_are_refused() {
        let base = DrillConfig {
            devices: 5,
            ..DrillConfig::new(1)
        };
        let skewed = DrillConfig {
            skew_ms: Some(MAX_DRIFT_MS),
            ..base.clone()
        };
        assert!(matches!(
            run(&skewed, &|_| {}),
            Err(DrillError::SkewBeyondDrift { .. })
        ));
        let empty = DrillConfig { cycles: 0, ..base };
        assert_eq!(run(&empty, &|_| {}).err(), Some(DrillError::Empty));
    }
}
