//! The merge proper: the inputs' devices joined by id, merged in batches,
//! and written in id order.
//!
//! With one job everything runs on the calling thread. With `jobs` > 1,
//! `jobs` workers parse, merge and render batches of devices while the
//! calling thread reads the inputs (splitting lines and finding ids, a
//! fifth of the work), joins them by id and writes the batches back in
//! order. (A thread per input, as before, made six threads on two cores:
//! a merge of a million devices was switched out three times as often and
//! took 6-9% more CPU.) Output is the same bytes whatever `jobs` is:
//! batches are cut the same way and written in the order they were cut.
//! Memory is bounded by the batches in flight, a few thousand devices,
//! whatever the fleet's size.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, RecvError, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

use super::JobError;
use super::outputs::{Outputs, Rendered, render_device};
use super::source::{DeviceInput, RawDevice, Source, SourceError};
use crate::clock::{ReplicaId, Stamp};
use crate::doc::Policies;
use crate::format::Format;
use crate::reconcile::{Base, HubDevice, classify, recreated, resolve_device};

/// Devices merged and rendered together.
const BATCH: usize = 256;

/// What every device's merge needs.
pub(super) struct Context<'a> {
    /// Each input's file name and format, in merge order (base first).
    pub inputs: Vec<(String, Format)>,
    /// The hubs, sorted by name: the order of the inputs after the base.
    pub hubs: Vec<ReplicaId>,
    /// Each hub's stamp, in the same order.
    pub stamps: Vec<Stamp>,
    /// Whether the first input is a common base.
    pub has_base: bool,
    /// The policies.
    pub policies: &'a Policies,
    /// Whether stamps are real times (conflicts then show them).
    pub real_time: bool,
    /// The shard to merge, if not all devices.
    pub shard: Option<super::Shard>,
}

/// Why the merge stopped.
#[derive(Debug)]
pub(super) enum Stop {
    /// Input `n` (base first) stopped.
    Source(usize, SourceError),
    /// Writing failed.
    Output(JobError),
    /// A worker panicked: resumed on the calling thread once every thread
    /// is stopped, rather than leaving the others waiting for its batch.
    Panicked(Panic),
}

/// A panic's payload.
pub(super) struct Panic(Box<dyn std::any::Any + Send>);

impl Panic {
    /// Goes on panicking.
    pub(super) fn resume(self) -> ! {
        std::panic::resume_unwind(self.0)
    }
}

impl std::fmt::Debug for Panic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Panic")
    }
}

/// One device id's lines, one slot per input.
type Group = Vec<Option<RawDevice>>;

/// Joins the inputs by id: each call takes the devices of the smallest id
/// any input is at.
struct Join<P> {
    heads: Vec<Option<RawDevice>>,
    pull: P,
    shard: Option<super::Shard>,
}

impl<P: FnMut(usize) -> Option<Result<RawDevice, SourceError>>> Join<P> {
    fn new(inputs: usize, shard: Option<super::Shard>, mut pull: P) -> Result<Self, Stop> {
        let mut heads = Vec::with_capacity(inputs);
        for n in 0..inputs {
            heads.push(pull(n).transpose().map_err(|e| Stop::Source(n, e))?);
        }
        Ok(Self { heads, pull, shard })
    }

    /// The next group of the shard.
    fn next_group(&mut self) -> Result<Option<Group>, Stop> {
        loop {
            match self.next_any()? {
                Some(group) if !self.in_shard(&group) => {}
                next => return Ok(next),
            }
        }
    }

    fn in_shard(&self, group: &Group) -> bool {
        let id = group.iter().flatten().next().map(RawDevice::id);
        match (self.shard, id) {
            (Some(shard), Some(id)) => shard.contains(id),
            _ => true,
        }
    }

    fn next_any(&mut self) -> Result<Option<Group>, Stop> {
        let Some(id) = self
            .heads
            .iter()
            .flatten()
            .map(RawDevice::id)
            .min()
            .map(str::to_owned)
        else {
            return Ok(None);
        };
        let mut group = Vec::with_capacity(self.heads.len());
        for (n, head) in self.heads.iter_mut().enumerate() {
            if head.as_ref().is_some_and(|d| d.id() == id) {
                group.push(head.take());
                *head = (self.pull)(n).transpose().map_err(|e| Stop::Source(n, e))?;
            } else {
                group.push(None);
            }
        }
        Ok(Some(group))
    }

    fn next_batch(&mut self) -> Result<Vec<Group>, Stop> {
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            match self.next_group()? {
                Some(group) => batch.push(group),
                None => break,
            }
        }
        Ok(batch)
    }
}

/// Input `n`'s file name and format.
fn input_of<'c>(ctx: &'c Context<'_>, n: usize) -> (&'c str, Format) {
    ctx.inputs
        .get(n)
        .map_or(("", Format::Export), |(f, format)| (f.as_str(), *format))
}

/// The input whose parsed device stands for input `n`'s: the first one
/// before it in the same format with the same lines, byte for byte, else
/// `n` itself. Lines alike in two formats do not say the same (a twin's
/// `etag` is its twin's, an identity's the identity's; a twin file knows
/// no keys, an identity file does), so only inputs of one format share.
fn owner(group: &Group, ctx: &Context<'_>, n: usize) -> usize {
    let Some(Some(raw)) = group.get(n) else {
        return n;
    };
    let format = input_of(ctx, n).1;
    group
        .iter()
        .take(n)
        .enumerate()
        .position(|(m, other)| {
            input_of(ctx, m).1 == format && other.as_ref().is_some_and(|o| o.same_lines(raw))
        })
        .unwrap_or(n)
}

/// Parses a device's lines in each input, once for lines that are byte
/// for byte an earlier input's of the same format (`owners`, by
/// [`owner`]): those share the earlier input's device, which the merge
/// then knows to be the same without comparing.
fn parse_group(
    group: &Group,
    owners: &[usize],
    ctx: &Context<'_>,
) -> Result<Vec<Option<DeviceInput>>, Stop> {
    let mut parsed: Vec<Option<DeviceInput>> = Vec::with_capacity(group.len());
    for (n, raw) in group.iter().enumerate() {
        let Some(raw) = raw else {
            parsed.push(None);
            continue;
        };
        if owners.get(n) != Some(&n) {
            parsed.push(None);
            continue;
        }
        let (file, format) = input_of(ctx, n);
        let device = raw
            .parse(file, format)
            .map_err(|e| Stop::Source(n, SourceError::from(e)))?;
        parsed.push(Some(device));
    }
    Ok(parsed)
}

/// Merges and renders a batch of devices into `out`, which is empty.
fn render_batch(batch: Vec<Group>, ctx: &Context<'_>, mut out: Rendered) -> Result<Rendered, Stop> {
    for group in batch {
        let owners: Vec<usize> = (0..group.len()).map(|n| owner(&group, ctx, n)).collect();
        let parsed = parse_group(&group, &owners, ctx)?;
        // Each input's device: its own, or that of the earlier input of its
        // format whose lines it equals.
        let inputs: Vec<Option<&DeviceInput>> = owners
            .iter()
            .map(|&owner| parsed.get(owner)?.as_ref())
            .collect();
        for (n, input) in inputs.iter().enumerate() {
            if input.is_some_and(|d| d.record.times_without_zone()) {
                out.tally_zoneless(n);
            }
        }
        let (base_input, hubs) = match inputs.split_first() {
            Some((base, hubs)) if ctx.has_base => (*base, hubs),
            _ => (None, inputs.as_slice()),
        };
        let base = match (base_input, ctx.has_base) {
            (_, false) => Base::Unknown,
            (Some(d), true) => Base::Present(&d.record.snapshot),
            (None, true) => Base::Absent,
        };
        // A hub whose `generationId` differs from the base's deleted and
        // re-created the device (policy 2).
        let base_generation = base_input.and_then(|d| d.record.meta.generation_id.as_deref());
        let renewed: Vec<bool> = hubs
            .iter()
            .map(|h| {
                let generation = h.and_then(|d| d.record.meta.generation_id.as_deref());
                recreated(base_generation, generation)
            })
            .collect();
        // What an input cannot know (keys, twins) is what the base holds,
        // unless the hub's device is a new incarnation: that inherits
        // nothing of the base's.
        let filled: Vec<Option<DeviceInput>> = hubs
            .iter()
            .zip(&renewed)
            .map(|(h, renewed)| match (h, base) {
                (Some(d), Base::Present(b)) if !renewed => d.filled_from(b),
                _ => None,
            })
            .collect();
        let hubs: Vec<Option<&DeviceInput>> = hubs
            .iter()
            .zip(&filled)
            .map(|(h, f)| f.as_ref().or(*h))
            .collect();
        let views: Vec<HubDevice<'_>> = hubs
            .iter()
            .zip(&renewed)
            .zip(ctx.hubs.iter().zip(&ctx.stamps))
            .map(|((input, renewed), (hub, stamp))| HubDevice {
                hub,
                device: input.map(|d| &d.record.snapshot),
                times: input.and_then(|d| d.record.times.as_ref()),
                stamp,
                recreated: *renewed,
            })
            .collect();
        let resolved = resolve_device(base, &views, ctx.policies);
        let outcome = classify(base, &resolved);
        let base_device = match base {
            Base::Present(b) => Some(b),
            _ => None,
        };
        render_device(
            &mut out,
            &hubs,
            base_device,
            &ctx.hubs,
            &resolved,
            outcome,
            ctx.real_time,
        );
    }
    Ok(out)
}

/// Merges the inputs (base first when there is one, then the hubs sorted by
/// name) into `outputs`. Returns each input's count of skipped lines.
pub(super) fn run(
    sources: Vec<Source>,
    ctx: &Context<'_>,
    jobs: usize,
    outputs: &mut Outputs,
) -> Result<Vec<u64>, Stop> {
    let mut sources = sources;
    let count = sources.len();
    // The calling thread reads the inputs, whatever `jobs` is.
    let mut join = Join::new(count, ctx.shard, |n| {
        sources.get_mut(n).and_then(Source::next)
    })?;
    if jobs <= 1 {
        let mut rendered = Rendered::new(ctx.hubs.len());
        loop {
            let batch = join.next_batch()?;
            if batch.is_empty() {
                break;
            }
            rendered = render_batch(batch, ctx, rendered)?;
            outputs.append(&mut rendered).map_err(Stop::Output)?;
        }
    } else if let Err(stop) = run_parallel(join, ctx, jobs, outputs) {
        match stop {
            Stop::Panicked(panic) => panic.resume(),
            stop => return Err(stop),
        }
    }
    Ok(sources.iter().map(Source::skipped).collect())
}

type Work = Mutex<Receiver<(u64, Vec<Group>)>>;

/// Rendered batches already written, emptied, for the workers to fill
/// again (their buffers keep their room).
type Spare = Mutex<Vec<Rendered>>;

fn run_parallel<P: FnMut(usize) -> Option<Result<RawDevice, SourceError>>>(
    join: Join<P>,
    ctx: &Context<'_>,
    jobs: usize,
    outputs: &mut Outputs,
) -> Result<(), Stop> {
    let (work_tx, work_rx) = sync_channel::<(u64, Vec<Group>)>(jobs);
    let work: Arc<Work> = Arc::new(Mutex::new(work_rx));
    let spare: &Spare = &Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        let (done_tx, done_rx) = channel::<(u64, Result<Rendered, Stop>)>();
        for _ in 0..jobs {
            let work = Arc::clone(&work);
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                while let Some((seq, batch)) = next_work(&work) {
                    let out = spare
                        .lock()
                        .ok()
                        .and_then(|mut spare| spare.pop())
                        .unwrap_or_else(|| Rendered::new(ctx.hubs.len()));
                    let render = AssertUnwindSafe(|| render_batch(batch, ctx, out));
                    let rendered = std::panic::catch_unwind(render)
                        .unwrap_or_else(|panic| Err(Stop::Panicked(Panic(panic))));
                    if done_tx.send((seq, rendered)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let merged = join_and_write(join, work_tx, &done_rx, jobs, spare, outputs);
        // Unblock and end every worker waiting for work.
        drop(done_rx);
        merged
    })
}

fn next_work(work: &Work) -> Option<(u64, Vec<Group>)> {
    work.lock().ok()?.recv().ok()
}

/// The calling thread's part: reads the inputs through `join`, cuts
/// batches, hands them to the workers, and writes what they rendered in
/// order.
fn join_and_write<P: FnMut(usize) -> Option<Result<RawDevice, SourceError>>>(
    mut join: Join<P>,
    work_tx: SyncSender<(u64, Vec<Group>)>,
    done_rx: &Receiver<(u64, Result<Rendered, Stop>)>,
    jobs: usize,
    spare: &Spare,
    outputs: &mut Outputs,
) -> Result<(), Stop> {
    let in_flight_max = 2 * jobs as u64 + 1;
    let mut ready: BTreeMap<u64, Result<Rendered, Stop>> = BTreeMap::new();
    let (mut sent, mut written) = (0u64, 0u64);
    let mut write_ready = |ready: &mut BTreeMap<u64, Result<Rendered, Stop>>, written: &mut u64| {
        while let Some(rendered) = ready.remove(written) {
            let mut rendered = rendered?;
            outputs.append(&mut rendered).map_err(Stop::Output)?;
            if let Ok(mut spare) = spare.lock() {
                spare.push(rendered);
            }
            *written += 1;
        }
        Ok::<(), Stop>(())
    };
    let lost = |_: RecvError| {
        Stop::Output(JobError::Io {
            path: "a merge worker".into(),
            source: std::io::Error::other("a merge worker stopped"),
        })
    };
    loop {
        let batch = join.next_batch()?;
        if batch.is_empty() {
            break;
        }
        while sent - written >= in_flight_max {
            let (seq, rendered) = done_rx.recv().map_err(lost)?;
            ready.insert(seq, rendered);
            write_ready(&mut ready, &mut written)?;
        }
        if work_tx.send((sent, batch)).is_err() {
            return Err(lost(RecvError));
        }
        sent += 1;
        while let Ok((seq, rendered)) = done_rx.try_recv() {
            ready.insert(seq, rendered);
        }
        write_ready(&mut ready, &mut written)?;
    }
    drop(work_tx);
    while written < sent {
        let (seq, rendered) = done_rx.recv().map_err(lost)?;
        ready.insert(seq, rendered);
        write_ready(&mut ready, &mut written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::source::Stream;
    use super::*;

    /// A stream of an export of the devices `ids`, in the order given.
    fn stream(name: &str, ids: &[String]) -> (Source, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "failback-pipeline-{}-{name}.jsonl",
            std::process::id()
        ));
        let text: String = ids
            .iter()
            .map(|id| format!("{{\"id\":\"{id}\",\"status\":\"enabled\"}}\n"))
            .collect();
        std::fs::write(&path, text).unwrap();
        let (stream, _) = Stream::open(&path, None).unwrap();
        (Source::Stream(Box::new(stream)), path)
    }

    fn ids(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|n| format!("d{n:04}")).collect()
    }

    #[test]
    fn a_batch_holds_at_most_batch_devices_in_id_order() {
        let all = ids(0..BATCH + 44);
        let (mut source, path) = stream("batch", &all);
        let mut join = Join::new(1, None, |_| source.next()).unwrap();
        let mut sizes = Vec::new();
        let mut seen = Vec::new();
        loop {
            let batch = join.next_batch().unwrap();
            if batch.is_empty() {
                break;
            }
            sizes.push(batch.len());
            for group in batch {
                seen.extend(group.into_iter().flatten().map(|d| d.id().to_owned()));
            }
        }
        drop(join);
        let _ = std::fs::remove_file(path);
        assert_eq!(sizes, [BATCH, 44]);
        assert_eq!(seen, all);
    }

    #[test]
    fn a_panic_shows_as_panic() {
        let panic = Panic(Box::new("a worker's payload"));
        assert_eq!(format!("{panic:?}"), "Panic");
        let stop = Stop::Panicked(panic);
        assert_eq!(format!("{stop:?}"), "Panicked(Panic)");
    }
}
