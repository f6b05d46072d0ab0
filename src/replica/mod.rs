//! A hub replica built from change events: idempotent, order-insensitive
//! ingestion, gaps, and continuous replication between two sites.
//!
//! # The model
//!
//! A [`Replica`] is a *set*: the hub's change events it has seen, each
//! once, keyed by its **dot** (its `correlation-id`, or, when it has none,
//! a hash of its canonical text, which holds its hub, device, twin
//! `version` and content), plus optional **seeds**: a device's starting
//! snapshot from an export or twin file (`failback ingest --from`), for
//! devices that existed before the stream began.
//!
//! Everything else is *derived* from the set, never from the order events
//! arrived in: each device's snapshot and per-leaf times come from
//! replaying its events in a fixed order (see `replay`), and the events
//! that cannot be placed yet (a twin update for a device whose create has
//! not arrived) are **parked**: they wait in the set, count as gaps, and
//! take effect as soon as their predecessor arrives.
//!
//! So ingesting is set union, and the laws come for free:
//!
//! - ingesting an event twice, or a retransmitted run (1,2,1,2,3,1,2,3,4),
//!   changes nothing; any permutation gives the same state, byte for byte;
//! - ingesting events one by one equals merging replicas built from any
//!   partition of them ([`Replica::merge`] is commutative, associative and
//!   idempotent);
//! - [`Replica::delta_since`] a peer's [`ReplicaContext`] (the dots it
//!   has) yields exactly the events and seeds it lacks, and applying a delta
//!   twice changes nothing.
//!
//! The one thing a set cannot take is an event id seen before with another
//! payload: that is [`ReplicaError::Conflict`], and the replica is left as
//! it was.
//!
//! # Replay order
//!
//! A device's lifecycle (create, delete) is ordered by
//! `operationTimestamp`, which splits its events into **incarnations**: a
//! create starts one (inheriting nothing), a delete ends it with its
//! modules (delete wins over every change before it). Every other event
//! belongs to the incarnation live at its time. Within an incarnation, a
//! twin's changes apply in twin `version` order (then time, then dot), so
//! an older patch arriving after a newer one never overwrites it, and a
//! coalesced notification (a version jump) simply applies. A create or
//! `replaceTwin` resets the sections its body gives; an `updateTwin`
//! patches leaf by leaf, `null` removing. Changes with a version at or
//! below that of the create or seed they follow are already in it and are
//! skipped.
//!
//! # Compaction
//!
//! [`Replica::compact`] bounds a replica by its devices, not its events:
//! it folds each twin change (`updateTwin`, `replaceTwin`, with a
//! version) whose incarnation is known (its create, or the seed) into
//! that incarnation's last-writer-wins tree (see `fold`), stamped by the
//! order replay uses, and keeps the versions folded as a few ranges. The
//! tree is a join, so compacting at any point (and on either side of a
//! delta or merge) gives the same state, and the devices derived are the
//! uncompacted replica's. A redelivered folded change is a
//! [`Ingested::Duplicate`]; a late older one loses where replay would make
//! it lose. Lifecycle events, parked events and changes without a version
//! stay events.
//!
//! Limits: once folded, a twin version names one change (an event
//! redelivered with another payload is a duplicate, no longer a
//! [`ReplicaError::Conflict`]); a create, delete or seed that would move
//! folded changes to another incarnation is [`ReplicaError::Compacted`];
//! and the times the tree gives differ from replay's in the shapes the
//! `fold` module lists (never the values).
//!
//! # Example
//!
//! ```
//! use failback::format::parse_event_line;
//! use failback::replica::Replica;
//! use failback::ReplicaId;
//!
//! let create = r#"{"properties":{"deviceId":"d1","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1,"status":"enabled"}}"#;
//! let update = r#"{"properties":{"deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:05Z"},"systemProperties":{"correlation-id":"c2"},"body":{"version":2,"properties":{"desired":{"fan":3}}}}"#;
//!
//! // The update arrives first: it is parked until the create comes.
//! let mut replica = Replica::new(ReplicaId::new("primary")?);
//! replica.ingest(parse_event_line("events.jsonl", 1, update)?)?;
//! assert_eq!(replica.gaps().len(), 1);
//! replica.ingest(parse_event_line("events.jsonl", 2, create)?)?;
//! replica.ingest(parse_event_line("events.jsonl", 3, update)?)?; // a duplicate
//! assert!(replica.gaps().is_empty());
//! let d1 = replica.device("d1").expect("d1 exists");
//! assert_eq!(d1.snapshot.device.desired["fan"], 3);
//!
//! // Replication: the peer gets exactly what it lacks.
//! let mut peer = Replica::new(ReplicaId::new("primary")?);
//! let delta = replica.delta_since(&peer.context());
//! peer.apply_delta(&delta)?;
//! assert_eq!(peer.to_bytes(), replica.to_bytes());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// A `ReadError` carries file, line, device, module and field by contract,
// as in `format`.
#![allow(clippy::result_large_err)]

mod file;
mod fold;
mod replay;
mod versions;
mod wire;

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::clock::ReplicaId;
use crate::format::{
    DeviceRecord, Event, Format, Op, ReadError, ReadErrorKind, RecordMeta, event_bytes,
};

use fold::{Twin, stamp_of};
use versions::Versions;

pub(crate) use file::is_state_file;
internals!(file::{STATE_GZIP_LEVEL, read_state, write_state, write_state_gzip});

/// The id of one event in a replica: `id:` and its `correlation-id`, or
/// `sha256:` and the first 32 hex digits of the SHA-256 of its canonical
/// text when it has none.
pub(crate) type EventDot = String;

/// Which entity incarnation a fold is of: the module (`None` for the
/// device's own twin) and the dot of the create that started it (`None`
/// for the seed's).
pub(crate) type FoldKey = (Option<String>, Option<EventDot>);

/// The twin changes of one entity incarnation that [`Replica::compact`]
/// folded: their versions, the first and last of their positions in time
/// (the incarnation must keep holding them), and their tree.
///
/// A position is kept without its dot: it is only ever compared with
/// creates' and deletes' positions (`misplaced`), whose ranks no twin
/// change shares, so time and rank decide every such comparison.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Folded {
    versions: Versions,
    first: (i64, u8),
    last: (i64, u8),
    twin: Twin,
}

impl Folded {
    /// Joins `other` (of the same incarnation) into this fold.
    fn join(&mut self, other: &Folded) {
        self.versions.union(&other.versions);
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        self.twin.join(&other.twin);
    }

    fn first(&self) -> replay::Pos<'_> {
        (self.first.0, self.first.1, "")
    }

    fn last(&self) -> replay::Pos<'_> {
        (self.last.0, self.last.1, "")
    }
}

/// One device's folds, by incarnation: a sorted `Vec`, since a device
/// nearly always has one. (A `BTreeMap` allocated a whole leaf node, room
/// for eleven folds of some hundred bytes each, for the one: 6.6 KB a
/// device, most of a compacted replica's memory.)
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Folds {
    folds: Vec<(FoldKey, Folded)>,
}

type FoldEntry<'a> = (&'a FoldKey, &'a Folded);

impl Folds {
    fn find(&self, key: &FoldKey) -> Result<usize, usize> {
        self.folds.binary_search_by(|(k, _)| k.cmp(key))
    }

    fn get(&self, key: &FoldKey) -> Option<&Folded> {
        let i = self.find(key).ok()?;
        self.folds.get(i).map(|(_, f)| f)
    }

    fn get_mut(&mut self, key: &FoldKey) -> Option<&mut Folded> {
        let i = self.find(key).ok()?;
        self.folds.get_mut(i).map(|(_, f)| f)
    }

    fn contains_key(&self, key: &FoldKey) -> bool {
        self.find(key).is_ok()
    }

    /// Inserts `fold` under `key`, replacing any fold there.
    fn insert(&mut self, key: FoldKey, fold: Folded) {
        match self.find(&key) {
            Ok(i) => {
                if let Some(slot) = self.folds.get_mut(i) {
                    slot.1 = fold;
                }
            }
            Err(i) => {
                // One fold is some hundred bytes: room for exactly one
                // more, not the four a `Vec` grows to.
                self.folds.reserve_exact(1);
                self.folds.insert(i, (key, fold));
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = FoldEntry<'_>> {
        self.into_iter()
    }

    fn values(&self) -> impl Iterator<Item = &Folded> {
        self.folds.iter().map(|(_, f)| f)
    }
}

impl<'a> IntoIterator for &'a Folds {
    type Item = FoldEntry<'a>;
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (FoldKey, Folded)>,
        fn(&'a (FoldKey, Folded)) -> FoldEntry<'a>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.folds.iter().map(|(k, f)| (k, f))
    }
}

/// One event held by a replica: the event as read, with its body's
/// canonical text and, of its twin, only its version (the twin itself
/// dropped, `Event::held_version` set). The text is what
/// the event is compared and written by; the twin's version is all that
/// ingesting, parking and the state file's version vector need. Replay
/// and compaction read the twin again from the text
/// ([`Stored::with_twin`]), so an event's twin is never held beside its
/// text: a parsed twin takes some kilobytes of maps (a node per map and
/// per `$metadata` level), its text a few hundred bytes.
///
/// Boxed: the event map's nodes then hold a pointer per event, not the
/// event (some hundred bytes, moved at every node split, and nodes half
/// full when events arrive in dot order).
#[derive(Clone, Debug)]
struct Stored {
    event: Box<Event>,
}

impl Stored {
    /// Holds `event`, its twin dropped but for its version.
    fn new(mut event: Event) -> Self {
        if let Some(twin) = event.twin.take() {
            event.held_version = Some(twin.version);
        }
        Self {
            event: Box::new(event),
        }
    }

    /// The event with its whole twin, read again from its body.
    fn with_twin(&self) -> Event {
        let mut event = Event::clone(&self.event);
        if event.held_version.is_some() {
            if let Some(twin) = crate::format::twin_of_body(&event) {
                event.twin = Some(Box::new(twin));
                event.held_version = None;
            }
        }
        event
    }
}

/// Events are equal by what their canonical text holds: the line they
/// were read from is not part of them, and their twin is read from their
/// body.
impl PartialEq for Stored {
    fn eq(&self, other: &Self) -> bool {
        same_event(&self.event, &other.event)
    }
}

/// Whether `a` and `b` are one event: equal canonical text (see
/// [`event_bytes`]), compared field by field.
fn same_event(a: &Event, b: &Event) -> bool {
    a.device_id == b.device_id
        && a.op == b.op
        && a.time == b.time
        && a.correlation_id == b.correlation_id
        && a.module_id == b.module_id
        && a.hub == b.hub
        && a.body_json() == b.body_json()
}

/// A device's starting snapshot, from an export or twin file.
///
/// # Example
///
/// ```
/// use failback::format::{DeviceRecord, Format};
/// use failback::replica::{Replica, Seed};
/// use failback::ReplicaId;
///
/// let twin = DeviceRecord::from_twin_json(r#"{"deviceId":"thermostat-7","version":4,"properties":{"desired":{"fan":3}}}"#)?;
/// let seed = Seed::from_twin(&twin);
/// assert_eq!(seed.format, Format::Twin);
/// assert_eq!(seed.record.snapshot.id, "thermostat-7");
///
/// let mut replica = Replica::new(ReplicaId::new("primary")?);
/// assert!(replica.seed(seed)?);
/// assert_eq!(replica.device("thermostat-7").ok_or("seeded")?.snapshot.device.desired["fan"], 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Seed {
    /// The format of the file it came from.
    pub format: Format,
    /// The device and its modules as the file gives them, with what a
    /// replay starts from: the twin etags, the versions and per-leaf times
    /// (twin files only). Identity etags, `generationId` and line are not
    /// kept: two seeds of the same device from the same file are equal.
    pub record: DeviceRecord,
    /// The canonical lines the seed is written as (keys in clear, as an
    /// export holds them): what two seeds are compared by.
    lines: String,
}

impl Seed {
    /// A seed from a device of an export file (or of a file of
    /// identities, as an export without twins).
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::DeviceSnapshot;
    /// use failback::format::{DeviceRecord, Format};
    /// use failback::replica::Seed;
    ///
    /// let snapshot = DeviceSnapshot::enabled_sas("thermostat-7", "cHJpbWFyeQAAAAAAAAAAAA==", "c2Vjb25kYXJ5AAAAAAAAAA==");
    /// let exported = DeviceRecord { snapshot, ..DeviceRecord::default() };
    /// let seed = Seed::from_export(&exported);
    /// assert_eq!(seed.format, Format::Export);
    /// assert_eq!(seed.record.snapshot, exported.snapshot); // keys included
    /// assert!(seed.record.times.is_none(), "an export gives no times");
    /// ```
    pub fn from_export(device: &DeviceRecord) -> Self {
        let mut lines = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = crate::format::write_device(&mut lines, &device.snapshot, device.etags());
        Self {
            format: Format::Export,
            record: seed_record(device, false),
            lines: String::from_utf8_lossy(&lines).into_owned(),
        }
    }

    /// A seed from a device of a twin file.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::{DeviceRecord, Format};
    /// use failback::replica::Seed;
    ///
    /// let twin = DeviceRecord::from_twin_json(r#"{"deviceId":"thermostat-7","version":4,"tags":{"site":"lyon"}}"#)?;
    /// let seed = Seed::from_twin(&twin);
    /// assert_eq!(seed.format, Format::Twin);
    /// assert_eq!(seed.record.meta.version, Some(4)); // where replay starts from
    /// assert!(seed.record.times.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_twin(device: &DeviceRecord) -> Self {
        let mut lines = Vec::new();
        let _ = crate::format::write_twin_device(&mut lines, device);
        Self {
            format: Format::Twin,
            record: seed_record(device, true),
            lines: String::from_utf8_lossy(&lines).into_owned(),
        }
    }

    /// The twin version the seed gives the device (`module` `None`) or a
    /// module: 0 when it gives none.
    fn version_of(&self, module: Option<&str>) -> u64 {
        let meta = match module {
            None => Some(&self.record.meta),
            Some(m) => self.record.modules.get(m),
        };
        meta.and_then(|m| m.version).unwrap_or(0)
    }
}

/// What a seed keeps of `device`: its snapshot, twin etags and, from a
/// twin file (`twin`), versions and times.
fn seed_record(device: &DeviceRecord, twin: bool) -> DeviceRecord {
    let meta = |m: &RecordMeta| RecordMeta {
        twin_etag: m.twin_etag.clone(),
        version: m.version.filter(|_| twin),
        ..RecordMeta::default()
    };
    DeviceRecord {
        snapshot: device.snapshot.clone(),
        meta: meta(&device.meta),
        modules: device
            .modules
            .iter()
            .map(|(m, module)| (m.clone(), meta(module)))
            .collect(),
        times: twin.then(|| device.times.clone().unwrap_or_default()),
    }
}

/// An event that waits for a predecessor the replica has not seen.
///
/// # Example
///
/// ```
/// use failback::format::parse_event_line;
/// use failback::replica::Replica;
/// use failback::ReplicaId;
///
/// let update = r#"{"properties":{"deviceId":"thermostat-7","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:05Z"},"systemProperties":{"correlation-id":"c2"},"body":{"version":2,"properties":{"desired":{"fan":3}}}}"#;
/// let mut replica = Replica::new(ReplicaId::new("primary")?);
/// replica.ingest(parse_event_line("events.jsonl", 1, update)?)?;
/// let gap = &replica.gaps()[0];
/// assert_eq!((gap.device.as_str(), gap.module.as_deref()), ("thermostat-7", None));
/// assert_eq!((gap.op.as_str(), gap.version, gap.dot.as_str()), ("updateTwin", 2, "id:c2"));
/// assert_eq!(gap.waits_for, "createDeviceIdentity");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Gap {
    /// The device.
    pub device: String,
    /// The module, for a module's event.
    pub module: Option<String>,
    /// The event's `opType`.
    pub op: String,
    /// The twin version it carries (0 when none).
    pub version: u64,
    /// Its dot.
    pub dot: EventDot,
    /// What it waits for: `createDeviceIdentity` or `createModuleIdentity`.
    pub waits_for: &'static str,
}

/// What ingesting one event did.
///
/// # Example
///
/// ```
/// use failback::format::parse_event_line;
/// use failback::replica::{Ingested, Replica};
/// use failback::ReplicaId;
///
/// let create = r#"{"properties":{"deviceId":"thermostat-7","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1,"status":"enabled"}}"#;
/// let update = r#"{"properties":{"deviceId":"thermostat-7","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:05Z"},"systemProperties":{"correlation-id":"c2"},"body":{"version":2,"properties":{"desired":{"fan":3}}}}"#;
/// let connected = r#"{"properties":{"deviceId":"thermostat-7","opType":"deviceConnected"},"body":{"sequenceNumber":"000000000000000001D"}}"#;
/// let mut replica = Replica::new(ReplicaId::new("primary")?);
/// let mut ingest = |line: u64, text: &str| -> Result<Ingested, Box<dyn std::error::Error>> {
///     Ok(replica.ingest(parse_event_line("events.jsonl", line, text)?)?)
/// };
/// assert_eq!(ingest(1, update)?, Ingested::Parked); // its create has not arrived
/// assert_eq!(ingest(2, create)?, Ingested::Applied);
/// assert_eq!(ingest(3, create)?, Ingested::Duplicate);
/// assert_eq!(ingest(4, connected)?, Ingested::Ignored);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingested {
    /// New, and applied.
    Applied,
    /// New, and parked: its predecessor has not arrived.
    Parked,
    /// Seen before, byte for byte: nothing changed.
    Duplicate,
    /// A connection-state event: read and ignored.
    Ignored,
}

/// Why a replica refused an event, a delta or a seed. The replica is left
/// as it was.
///
/// # Example
///
/// ```
/// use failback::format::parse_event_line;
/// use failback::replica::{Replica, ReplicaError};
/// use failback::ReplicaId;
///
/// let create = r#"{"properties":{"deviceId":"thermostat-7","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1,"status":"enabled"}}"#;
/// let mut replica = Replica::new(ReplicaId::new("primary")?);
/// replica.ingest(parse_event_line("events.jsonl", 1, create)?)?;
/// // The same correlation-id, another payload.
/// let changed = create.replace(r#""status":"enabled""#, r#""status":"disabled""#);
/// let err = replica.ingest(parse_event_line("events.jsonl", 2, &changed)?).unwrap_err();
/// assert_eq!(err, ReplicaError::Conflict { device: "thermostat-7".into(), dot: "id:c1".into() });
///
/// let other = Replica::new(ReplicaId::new("secondary")?);
/// assert!(matches!(replica.merge(&other), Err(ReplicaError::OtherHub { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// An event id was seen before with another payload.
    #[error("device {device:?}: event {dot} arrived before with another payload")]
    Conflict {
        /// The device of the event refused.
        device: String,
        /// Its dot.
        dot: EventDot,
    },
    /// A device was seeded before from another snapshot.
    #[error("device {device:?} was seeded before from another snapshot")]
    SeedConflict {
        /// The device.
        device: String,
    },
    /// An event, seed or replica that would move compacted twin changes
    /// to another incarnation of their device (a create or delete older
    /// than changes folded after it): compaction forgot the order such an
    /// event would need.
    #[error("device {device:?}: {what} falls inside history this replica has compacted")]
    Compacted {
        /// The device.
        device: String,
        /// The event's dot, or what else was refused.
        what: String,
    },
    /// A delta or replica of another hub.
    #[error("replica of hub {found} cannot join replica of hub {expected}")]
    OtherHub {
        /// This replica's hub.
        expected: ReplicaId,
        /// The other's hub.
        found: ReplicaId,
    },
}

impl ReplicaError {
    /// The error as a [`ReadError`] naming `file` and the event's `line`.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::replica::ReplicaError;
    ///
    /// let err = ReplicaError::SeedConflict { device: "thermostat-7".into() };
    /// let read = err.at_line("devices.txt", 12);
    /// assert_eq!((read.file.as_str(), read.line), ("devices.txt", 12));
    /// assert!(read.to_string().starts_with("devices.txt:12: "));
    /// ```
    pub fn at_line(&self, file: &str, line: u64) -> ReadError {
        match self {
            ReplicaError::Conflict { device, dot } => {
                let id = dot.strip_prefix("id:").unwrap_or(dot);
                ReadError::new(
                    file,
                    line,
                    ReadErrorKind::ConflictingEvent {
                        id: crate::format::safe_value(id),
                    },
                )
                .with_device(Some(device), None)
                .with_field("systemProperties.correlation-id")
            }
            other => ReadError::new(file, line, ReadErrorKind::Replica(other.clone())),
        }
    }
}

/// The dots a replica holds, per device, and its seeds' digests: what a
/// peer needs to send it exactly what it lacks.
///
/// # Example
///
/// ```
/// use failback::format::parse_event_line;
/// use failback::replica::Replica;
/// use failback::ReplicaId;
///
/// let create = r#"{"properties":{"deviceId":"thermostat-7","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1,"status":"enabled"}}"#;
/// let mut site_a = Replica::new(ReplicaId::new("primary")?);
/// site_a.ingest(parse_event_line("events.jsonl", 1, create)?)?;
/// let site_b = Replica::new(ReplicaId::new("primary")?);
///
/// let b_has = site_b.context(); // sent from site B to site A
/// assert_eq!(site_a.delta_since(&b_has).event_count(), 1);
/// assert_eq!(site_a.delta_since(&site_a.context()).event_count(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaContext {
    dots: BTreeSet<EventDot>,
    seeds: BTreeMap<String, [u8; 16]>,
    folds: BTreeMap<(String, FoldKey), Versions>,
}

impl ReplicaContext {
    /// How many events the context holds.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::parse_event_line;
    /// use failback::replica::Replica;
    /// use failback::ReplicaId;
    ///
    /// let create = r#"{"properties":{"deviceId":"thermostat-7","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1,"status":"enabled"}}"#;
    /// let mut replica = Replica::new(ReplicaId::new("primary")?);
    /// assert_eq!(replica.context().events(), 0);
    /// replica.ingest(parse_event_line("events.jsonl", 1, create)?)?;
    /// assert_eq!(replica.context().events(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn events(&self) -> usize {
        self.dots.len()
    }
}

/// One hub's replica: the set of its change events and seeds, from which
/// each device's state is derived. See the [module docs](self).
///
/// # Example
///
/// ```
/// use failback::doc::Status;
/// use failback::format::parse_event_line;
/// use failback::replica::Replica;
/// use failback::ReplicaId;
///
/// let create = r#"{"properties":{"deviceId":"thermostat-7","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1,"status":"enabled"}}"#;
/// let mut replica = Replica::new(ReplicaId::new("primary")?);
/// replica.ingest(parse_event_line("events.jsonl", 1, create)?)?;
/// let device = replica.device("thermostat-7").ok_or("created")?;
/// assert_eq!(device.snapshot.device.status.map(|s| s.status), Some(Status::Enabled));
/// assert_eq!(device.meta.version, Some(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Replica {
    hub: ReplicaId,
    events: BTreeMap<EventDot, Stored>,
    /// Each device's dots; lifecycle dots (device and module creates and
    /// deletes) also in `lifecycle`.
    devices: BTreeMap<String, DeviceDots>,
    seeds: BTreeMap<String, Seed>,
    /// Each device's folded twin changes, by incarnation.
    folded: BTreeMap<String, Folds>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct DeviceDots {
    all: BTreeSet<EventDot>,
    /// Sorted, each once: a device has few, and a `BTreeSet` allocated a
    /// leaf node of eleven for its one create.
    lifecycle: Vec<EventDot>,
    /// The device's own creates and deletes by their place in time
    /// (`replay::pos`), sorted: where a twin change of the device falls,
    /// without looking its lifecycle events up.
    device_life: Vec<(i64, u8, EventDot)>,
}

impl DeviceDots {
    /// Whether a twin change of the device itself at `p` is parked: as
    /// replay places it, in the incarnation of the device's last create
    /// or delete before it when that is a create, or, with none before
    /// it, in the seed's.
    fn parks(&self, p: &replay::Pos<'_>, seeded: bool) -> bool {
        let before = self
            .device_life
            .partition_point(|(t, r, d)| (*t, *r, d.as_str()) < *p);
        match before.checked_sub(1).and_then(|i| self.device_life.get(i)) {
            Some((_, rank, _)) => *rank != replay::rank(&Op::CreateDevice),
            None => !seeded,
        }
    }
}

/// The dot [`Replica::ingest`] gives `event`; `None` for the connection
/// events it ignores.
pub(crate) fn event_dot(event: &Event) -> Option<EventDot> {
    match event.op {
        Op::Connection(_) => None,
        _ => Some(dot_of(event)),
    }
}

/// The dot of an event: its correlation-id, else a hash of its canonical
/// text.
fn dot_of(event: &Event) -> EventDot {
    match &event.correlation_id {
        Some(id) => format!("id:{id}"),
        None => {
            use std::fmt::Write;
            let digest = Sha256::digest(event_bytes(event));
            let mut dot = String::from("sha256:");
            for byte in digest.iter().take(16) {
                let _ = write!(dot, "{byte:02x}");
            }
            dot
        }
    }
}

/// Whether compaction folds `event`: a twin change with a version.
fn foldable(event: &Event) -> bool {
    matches!(event.op, Op::UpdateTwin | Op::ReplaceTwin) && event.version() != 0
}

/// Whether `lifecycle` and `seed` would place some fold of `folds`
/// elsewhere than the incarnation it was folded in.
fn misplaced<'a>(
    lifecycle: &[(&EventDot, &Event)],
    seed: Option<&Seed>,
    folds: impl IntoIterator<Item = &'a Folds>,
) -> bool {
    folds.into_iter().flatten().any(|((module, base), fold)| {
        [fold.first(), fold.last()].iter().any(|p| {
            replay::place(lifecycle, seed, module.as_deref(), p).map(|(b, _)| b)
                != Some(base.clone())
        })
    })
}

fn seed_digest(seed: &Seed) -> [u8; 16] {
    let digest = Sha256::digest(seed.lines.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

impl Replica {
    /// An empty replica of `hub`.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::replica::Replica;
    /// use failback::ReplicaId;
    ///
    /// let replica = Replica::new(ReplicaId::new("primary")?);
    /// assert_eq!(replica.event_count(), 0);
    /// assert_eq!(replica.device_ids().count(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(hub: ReplicaId) -> Self {
        Self {
            hub,
            events: BTreeMap::new(),
            devices: BTreeMap::new(),
            seeds: BTreeMap::new(),
            folded: BTreeMap::new(),
        }
    }

    /// The hub this is a replica of.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::replica::Replica;
    /// use failback::ReplicaId;
    ///
    /// let replica = Replica::new(ReplicaId::new("secondary")?);
    /// assert_eq!(replica.hub().as_str(), "secondary");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn hub(&self) -> &ReplicaId {
        &self.hub
    }

    /// How many events it holds.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::parse_event_line;
    /// use failback::replica::Replica;
    /// use failback::ReplicaId;
    ///
    /// let create = r#"{"properties":{"deviceId":"thermostat-7","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1,"status":"enabled"}}"#;
    /// let mut replica = Replica::new(ReplicaId::new("primary")?);
    /// replica.ingest(parse_event_line("events.jsonl", 1, create)?)?;
    /// replica.ingest(parse_event_line("events.jsonl", 2, create)?)?; // redelivered
    /// assert_eq!(replica.event_count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn event_count(&self) -> usize {
        self.events.len()
    }

    /// The ids of the devices it knows of (seeded or with events), sorted.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::DeviceSnapshot;
    /// use failback::format::{parse_event_line, DeviceRecord};
    /// use failback::replica::{Replica, Seed};
    /// use failback::ReplicaId;
    ///
    /// let create = r#"{"properties":{"deviceId":"thermostat-7","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1,"status":"enabled"}}"#;
    /// let mut replica = Replica::new(ReplicaId::new("primary")?);
    /// replica.ingest(parse_event_line("events.jsonl", 1, create)?)?;
    /// let valve = DeviceRecord { snapshot: DeviceSnapshot { id: "valve-3".into(), ..Default::default() }, ..Default::default() };
    /// replica.seed(Seed::from_export(&valve))?;
    /// assert_eq!(replica.device_ids().collect::<Vec<_>>(), ["thermostat-7", "valve-3"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn device_ids(&self) -> impl Iterator<Item = &str> {
        let mut ids: BTreeSet<&str> = self.devices.keys().map(String::as_str).collect();
        ids.extend(self.seeds.keys().map(String::as_str));
        ids.into_iter()
    }

    /// Adds one event.
    ///
    /// # Errors
    ///
    /// [`ReplicaError::Conflict`] when its id was seen with another
    /// payload; the replica is then unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::parse_event_line;
    /// use failback::replica::{Ingested, Replica};
    /// use failback::ReplicaId;
    ///
    /// let create = r#"{"properties":{"deviceId":"thermostat-7","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1,"status":"enabled"}}"#;
    /// let mut replica = Replica::new(ReplicaId::new("primary")?);
    /// let event = parse_event_line("events.jsonl", 1, create)?;
    /// assert_eq!(replica.ingest(event.clone())?, Ingested::Applied);
    /// assert_eq!(replica.ingest(event)?, Ingested::Duplicate);
    /// assert!(replica.device("thermostat-7").is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ingest(&mut self, event: Event) -> Result<Ingested, ReplicaError> {
        if let Op::Connection(_) = event.op {
            return Ok(Ingested::Ignored);
        }
        let dot = dot_of(&event);
        if let Some(old) = self.events.get(&dot) {
            return if same_event(&old.event, &event) {
                Ok(Ingested::Duplicate)
            } else {
                Err(ReplicaError::Conflict {
                    device: event.device_id,
                    dot,
                })
            };
        }
        if let Some(folds) = self.folded.get(&event.device_id) {
            if self.covered(&dot, &event) {
                return Ok(Ingested::Duplicate);
            }
            if replay::is_lifecycle(&event.op) {
                let mut lifecycle = self.lifecycle_events(&event.device_id);
                lifecycle.push((&dot, &event));
                if misplaced(&lifecycle, self.seeds.get(&event.device_id), [folds]) {
                    return Err(ReplicaError::Compacted {
                        device: event.device_id,
                        what: format!("event {dot}"),
                    });
                }
            }
        }
        // A device's own twin change is placed by its device's creates
        // and deletes alone, found beside its dots.
        let own_change = event.module_id.is_none() && !replay::is_lifecycle(&event.op);
        let parked = if own_change {
            let seeded = self.seeds.contains_key(&event.device_id);
            self.insert_with(dot, Stored::new(event), |dots, dot, event| {
                dots.parks(&replay::pos(dot, event), seeded)
            })
        } else {
            let parked = replay::is_parked_new(self, &dot, &event);
            self.insert(dot, Stored::new(event));
            parked
        };
        if parked {
            Ok(Ingested::Parked)
        } else {
            Ok(Ingested::Applied)
        }
    }

    fn insert(&mut self, dot: EventDot, stored: Stored) {
        self.insert_with(dot, stored, |_, _, _| ());
    }

    /// Inserts the event `stored` of dot `dot`, and returns what `f`
    /// tells of it from its device's dots as they were before.
    fn insert_with<R>(
        &mut self,
        dot: EventDot,
        stored: Stored,
        f: impl FnOnce(&DeviceDots, &str, &Event) -> R,
    ) -> R {
        // The device's id is copied once, for its first event.
        let event = &stored.event;
        let dots = match self.devices.get_mut(&event.device_id) {
            Some(dots) => dots,
            None => self.devices.entry(event.device_id.clone()).or_default(),
        };
        let told = f(dots, &dot, event);
        if replay::is_lifecycle(&event.op) {
            if let Err(at) = dots.lifecycle.binary_search(&dot) {
                dots.lifecycle.reserve_exact(1);
                dots.lifecycle.insert(at, dot.clone());
            }
            if matches!(event.op, Op::CreateDevice | Op::DeleteDevice) {
                let (time, rank, _) = replay::pos(&dot, event);
                let at = dots
                    .device_life
                    .partition_point(|(t, r, d)| (*t, *r, d.as_str()) < (time, rank, dot.as_str()));
                dots.device_life.insert(at, (time, rank, dot.clone()));
            }
        }
        dots.all.insert(dot.clone());
        self.events.insert(dot, stored);
        told
    }

    /// Seeds a device's starting snapshot: the state it had before the
    /// first event of the stream. A seeded device's changes are not
    /// parked. Seeding again with the same snapshot changes nothing.
    /// Returns whether the seed was new.
    ///
    /// # Errors
    ///
    /// [`ReplicaError::SeedConflict`] when the device was seeded from
    /// another snapshot.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::DeviceRecord;
    /// use failback::replica::{Replica, ReplicaError, Seed};
    /// use failback::ReplicaId;
    ///
    /// let twin = |fan: u8| DeviceRecord::from_twin_json(&format!(r#"{{"deviceId":"thermostat-7","version":4,"properties":{{"desired":{{"fan":{fan}}}}}}}"#));
    /// let mut replica = Replica::new(ReplicaId::new("primary")?);
    /// assert!(replica.seed(Seed::from_twin(&twin(3)?))?);
    /// assert!(!replica.seed(Seed::from_twin(&twin(3)?))?); // the same snapshot again
    /// let err = replica.seed(Seed::from_twin(&twin(5)?)).unwrap_err();
    /// assert_eq!(err, ReplicaError::SeedConflict { device: "thermostat-7".into() });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seed(&mut self, seed: Seed) -> Result<bool, ReplicaError> {
        let id = seed.record.snapshot.id.clone();
        match self.seeds.get(&id) {
            Some(old) if old.lines == seed.lines => Ok(false),
            Some(_) => Err(ReplicaError::SeedConflict { device: id }),
            None => {
                if let Some(folds) = self.folded.get(&id) {
                    if misplaced(&self.lifecycle_events(&id), Some(&seed), [folds]) {
                        return Err(ReplicaError::Compacted {
                            device: id,
                            what: "a seed".to_owned(),
                        });
                    }
                }
                self.seeds.insert(id, seed);
                Ok(true)
            }
        }
    }

    /// Joins `other` (a replica of the same hub) into this one: the union
    /// of their events and seeds. Commutative, associative, idempotent.
    /// Returns how many events, seeds and folds it added or grew (0 when
    /// `other` held nothing new).
    ///
    /// # Errors
    ///
    /// Another hub, or an event id (or seed) the two hold with different
    /// payloads; nothing is changed then.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::parse_event_line;
    /// use failback::replica::Replica;
    /// use failback::ReplicaId;
    ///
    /// let create = r#"{"properties":{"deviceId":"thermostat-7","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1,"status":"enabled"}}"#;
    /// let update = r#"{"properties":{"deviceId":"thermostat-7","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:05Z"},"systemProperties":{"correlation-id":"c2"},"body":{"version":2,"properties":{"desired":{"fan":3}}}}"#;
    /// let hub = ReplicaId::new("primary")?;
    /// let (mut a, mut b) = (Replica::new(hub.clone()), Replica::new(hub));
    /// a.ingest(parse_event_line("events-1.jsonl", 1, create)?)?;
    /// b.ingest(parse_event_line("events-2.jsonl", 1, update)?)?;
    /// assert_eq!(a.merge(&b)?, 1); // one event added
    /// assert_eq!(a.merge(&b)?, 0); // idempotent
    /// assert_eq!(a.device("thermostat-7").ok_or("created")?.snapshot.device.desired["fan"], 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn merge(&mut self, other: &Replica) -> Result<usize, ReplicaError> {
        if other.hub != self.hub {
            return Err(ReplicaError::OtherHub {
                expected: self.hub.clone(),
                found: other.hub.clone(),
            });
        }
        for (dot, stored) in &other.events {
            if let Some(mine) = self.events.get(dot) {
                if mine != stored {
                    return Err(ReplicaError::Conflict {
                        device: stored.event.device_id.clone(),
                        dot: dot.clone(),
                    });
                }
            }
        }
        for (id, seed) in &other.seeds {
            if self
                .seeds
                .get(id)
                .is_some_and(|mine| mine.lines != seed.lines)
            {
                return Err(ReplicaError::SeedConflict { device: id.clone() });
            }
        }
        self.check_horizon(other)?;
        let mut added = 0;
        let (lifecycle, changes): (Vec<_>, Vec<_>) = other
            .events
            .iter()
            .filter(|(dot, _)| !self.events.contains_key(*dot))
            .partition(|(_, stored)| replay::is_lifecycle(&stored.event.op));
        for (dot, stored) in lifecycle {
            self.insert(dot.clone(), stored.clone());
            added += 1;
        }
        for (id, seed) in &other.seeds {
            if !self.seeds.contains_key(id) {
                self.seeds.insert(id.clone(), seed.clone());
                added += 1;
            }
        }
        for (id, folds) in &other.folded {
            let mine = self.folded.entry(id.clone()).or_default();
            for (key, fold) in folds {
                match mine.get_mut(key) {
                    Some(m) if m == fold => {}
                    Some(m) => {
                        m.join(fold);
                        added += 1;
                    }
                    None => {
                        mine.insert(key.clone(), fold.clone());
                        added += 1;
                    }
                }
            }
        }
        for (dot, stored) in changes {
            if !self.covered(dot, &stored.event) {
                self.insert(dot.clone(), stored.clone());
                added += 1;
            }
        }
        Ok(added)
    }

    /// What this replica holds, for a peer's [`Replica::delta_since`].
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::parse_event_line;
    /// use failback::replica::Replica;
    /// use failback::ReplicaId;
    ///
    /// let create = r#"{"properties":{"deviceId":"thermostat-7","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1,"status":"enabled"}}"#;
    /// let mut replica = Replica::new(ReplicaId::new("primary")?);
    /// replica.ingest(parse_event_line("events.jsonl", 1, create)?)?;
    /// let held = replica.context();
    /// assert_eq!(held.events(), 1);
    /// assert_eq!(replica.delta_since(&held).event_count(), 0); // nothing it lacks
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn context(&self) -> ReplicaContext {
        ReplicaContext {
            dots: self.events.keys().cloned().collect(),
            seeds: self
                .seeds
                .iter()
                .map(|(id, seed)| (id.clone(), seed_digest(seed)))
                .collect(),
            folds: self
                .folded
                .iter()
                .flat_map(|(id, folds)| {
                    folds
                        .iter()
                        .map(|(key, f)| ((id.clone(), key.clone()), f.versions.clone()))
                })
                .collect(),
        }
    }

    /// The events and seeds this replica holds that `since` lacks, as a
    /// replica of the same hub: [`Replica::apply_delta`] it on the peer.
    ///
    /// This replicates one hub's event log between the sites that keep it
    /// (`failback replica delta`); sites that write a
    /// [`HubState`](crate::HubState) themselves replicate it with
    /// [`HubState::delta_since`](crate::HubState::delta_since).
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::parse_event_line;
    /// use failback::replica::Replica;
    /// use failback::ReplicaId;
    ///
    /// let create = r#"{"properties":{"deviceId":"thermostat-7","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1,"status":"enabled"}}"#;
    /// let update = r#"{"properties":{"deviceId":"thermostat-7","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:05Z"},"systemProperties":{"correlation-id":"c2"},"body":{"version":2,"properties":{"desired":{"fan":3}}}}"#;
    /// let mut site_a = Replica::new(ReplicaId::new("primary")?);
    /// site_a.ingest(parse_event_line("events.jsonl", 1, create)?)?;
    /// let mut site_b = site_a.clone();
    /// site_a.ingest(parse_event_line("events.jsonl", 2, update)?)?;
    ///
    /// let delta = site_a.delta_since(&site_b.context());
    /// assert_eq!((delta.hub().as_str(), delta.event_count()), ("primary", 1)); // the update alone
    /// site_b.apply_delta(&delta)?;
    /// assert_eq!(site_b, site_a);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delta_since(&self, since: &ReplicaContext) -> Replica {
        let mut delta = Replica::new(self.hub.clone());
        for (dot, stored) in &self.events {
            if !since.dots.contains(dot) {
                delta.insert(dot.clone(), stored.clone());
            }
        }
        for (id, seed) in &self.seeds {
            if since.seeds.get(id) != Some(&seed_digest(seed)) {
                delta.seeds.insert(id.clone(), seed.clone());
            }
        }
        for (id, folds) in &self.folded {
            for (key, fold) in folds {
                // Keyed by value: a BTreeMap cannot be asked by borrowed
                // pairs.
                let theirs = since.folds.get(&(id.clone(), key.clone()));
                if theirs != Some(&fold.versions) {
                    delta
                        .folded
                        .entry(id.clone())
                        .or_default()
                        .insert(key.clone(), fold.clone());
                }
            }
        }
        delta
    }

    /// Applies a delta from [`Replica::delta_since`]: [`Replica::merge`].
    /// Applying it twice changes nothing.
    ///
    /// # Errors
    ///
    /// As [`Replica::merge`].
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::parse_event_line;
    /// use failback::replica::Replica;
    /// use failback::ReplicaId;
    ///
    /// let create = r#"{"properties":{"deviceId":"thermostat-7","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1,"status":"enabled"}}"#;
    /// let mut site_a = Replica::new(ReplicaId::new("primary")?);
    /// site_a.ingest(parse_event_line("events.jsonl", 1, create)?)?;
    /// let mut site_b = Replica::new(ReplicaId::new("primary")?);
    /// let delta = site_a.delta_since(&site_b.context());
    /// assert_eq!(site_b.apply_delta(&delta)?, 1);
    /// assert_eq!(site_b.apply_delta(&delta)?, 0); // a retransmission changes nothing
    /// assert_eq!(site_b.to_bytes(), site_a.to_bytes());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply_delta(&mut self, delta: &Replica) -> Result<usize, ReplicaError> {
        self.merge(delta)
    }

    /// Folds every twin change whose incarnation is known into its
    /// incarnation's tree (see the [module docs](self#compaction)), and
    /// returns how many events it folded. The devices derived do not
    /// change; the state written does, once, and compacting again changes
    /// nothing.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::parse_event_line;
    /// use failback::replica::{Ingested, Replica};
    /// use failback::ReplicaId;
    ///
    /// let lines = [
    ///     r#"{"properties":{"deviceId":"d1","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1}}"#,
    ///     r#"{"properties":{"deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:05Z"},"systemProperties":{"correlation-id":"c2"},"body":{"version":2,"properties":{"desired":{"fan":3}}}}"#,
    ///     r#"{"properties":{"deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:09Z"},"systemProperties":{"correlation-id":"c3"},"body":{"version":3,"properties":{"desired":{"fan":4}}}}"#,
    /// ];
    /// let mut replica = Replica::new(ReplicaId::new("primary")?);
    /// for (i, line) in lines.iter().enumerate() {
    ///     replica.ingest(parse_event_line("events.jsonl", i as u64 + 1, line)?)?;
    /// }
    /// let before = replica.device("d1");
    /// assert_eq!(replica.compact(), 2); // the two updates; the create stays
    /// assert_eq!(replica.event_count(), 1);
    /// assert_eq!(replica.device("d1"), before);
    ///
    /// // A redelivered update is still a duplicate, and a late older one
    /// // still loses to version 3.
    /// let again = parse_event_line("events.jsonl", 4, lines[1])?;
    /// assert_eq!(replica.ingest(again)?, Ingested::Duplicate);
    /// assert_eq!(replica.device("d1").expect("d1").snapshot.device.desired["fan"], 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compact(&mut self) -> usize {
        let ids: Vec<String> = self.devices.keys().cloned().collect();
        ids.iter().map(|id| self.compact_device(id)).sum()
    }

    fn compact_device(&mut self, id: &str) -> usize {
        let mut plan = Vec::new();
        {
            let lifecycle = self.lifecycle_events(id);
            let seed = self.seeds.get(id);
            for (dot, event) in self.device_events(id) {
                if !foldable(event) {
                    continue;
                }
                let p = replay::pos(dot, event);
                let module = event.module_id.as_deref();
                if let Some((base, base_version)) = replay::place(&lifecycle, seed, module, &p) {
                    plan.push((dot.clone(), (event.module_id.clone(), base), base_version));
                }
            }
        }
        let count = plan.len();
        for (dot, key, base_version) in plan {
            let Some(stored) = self.events.remove(&dot) else {
                continue;
            };
            if let Some(dots) = self.devices.get_mut(id) {
                dots.all.remove(&dot);
            }
            let version = stored.event.version();
            if replay::below(base_version, version) {
                continue;
            }
            let event = stored.with_twin();
            let Some(twin) = &event.twin else {
                continue;
            };
            let at = stamp_of(&dot, &event);
            let change = Twin::of_change(&event.op, twin, event.time.unwrap_or(0), &at);
            let (time, rank, _) = replay::pos(&dot, &event);
            let mut versions = Versions::default();
            versions.insert(version);
            let one = Folded {
                versions,
                first: (time, rank),
                last: (time, rank),
                twin: change,
            };
            let folds = self.folded.entry(id.to_owned()).or_default();
            match folds.get_mut(&key) {
                Some(fold) => fold.join(&one),
                None => {
                    folds.insert(key, one);
                }
            }
        }
        if count > 0 {
            if let Some(folds) = self.folded.get_mut(id) {
                // Held until the next compaction: without the room joins
                // grew their vectors by.
                for (_, fold) in &mut folds.folds {
                    fold.versions.shrink_to_fit();
                    fold.twin.shrink_to_fit();
                }
            }
        }
        count
    }

    /// Adds a fold read from a state file, after checking it against the
    /// device's events and seed.
    fn add_fold(&mut self, id: &str, key: FoldKey, fold: Folded) -> Result<(), &'static str> {
        match &key.1 {
            Some(dot) => {
                let is_base = self.events.get(dot).is_some_and(|s| {
                    let e = &s.event;
                    e.device_id == id
                        && e.module_id == key.0
                        && e.op
                            == if key.0.is_some() {
                                Op::CreateModule
                            } else {
                                Op::CreateDevice
                            }
                });
                if !is_base {
                    return Err("its base is not a create of the device it holds");
                }
            }
            None if !self.seeds.contains_key(id) => {
                return Err("its base is a seed the device does not have");
            }
            None => {}
        }
        let folds = self.folded.entry(id.to_owned()).or_default();
        if folds.contains_key(&key) {
            return Err("two folds of one incarnation");
        }
        folds.insert(key, fold);
        if misplaced(
            &self.lifecycle_events(id),
            self.seeds.get(id),
            self.folded.get(id),
        ) {
            return Err("its first or last change falls outside its incarnation");
        }
        Ok(())
    }

    /// How many twin versions its folds hold.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::parse_event_line;
    /// use failback::replica::Replica;
    /// use failback::ReplicaId;
    ///
    /// let create = r#"{"properties":{"deviceId":"thermostat-7","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1,"status":"enabled"}}"#;
    /// let update = r#"{"properties":{"deviceId":"thermostat-7","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:05Z"},"systemProperties":{"correlation-id":"c2"},"body":{"version":2,"properties":{"desired":{"fan":3}}}}"#;
    /// let mut replica = Replica::new(ReplicaId::new("primary")?);
    /// replica.ingest(parse_event_line("events.jsonl", 1, create)?)?;
    /// replica.ingest(parse_event_line("events.jsonl", 2, update)?)?;
    /// assert_eq!(replica.folded_count(), 0);
    /// replica.compact();
    /// assert_eq!(replica.folded_count(), 1); // twin version 2
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn folded_count(&self) -> u64 {
        self.folded
            .values()
            .flat_map(Folds::values)
            .flat_map(|f| f.versions.ranges())
            .map(|(lo, hi)| hi - lo + 1)
            .sum()
    }

    /// Whether the twin change `event` (not held as an event) is already
    /// in a fold: its version folded, or in the base of the incarnation
    /// folded.
    fn covered(&self, dot: &str, event: &Event) -> bool {
        if !foldable(event) {
            return false;
        }
        let version = event.version();
        let Some(folds) = self.folded.get(&event.device_id) else {
            return false;
        };
        let lifecycle = self.lifecycle_events(&event.device_id);
        let p = replay::pos(dot, event);
        let seed = self.seeds.get(&event.device_id);
        let Some((base, base_version)) =
            replay::place(&lifecycle, seed, event.module_id.as_deref(), &p)
        else {
            return false;
        };
        let key = (event.module_id.clone(), base);
        folds
            .get(&key)
            .is_some_and(|f| f.versions.contains(version) || replay::below(base_version, version))
    }

    /// Refuses `other` when its lifecycle events or seeds, joined with
    /// this replica's, would move either's folded changes to another
    /// incarnation.
    fn check_horizon(&self, other: &Replica) -> Result<(), ReplicaError> {
        let touched: BTreeSet<&String> = other.folded.keys().chain(self.folded.keys()).collect();
        for id in touched {
            let mine = self.folded.get(id);
            let theirs = other.folded.get(id);
            let mut lifecycle = self.lifecycle_events(id);
            for (dot, event) in other.lifecycle_events(id) {
                if !self.events.contains_key(dot) {
                    lifecycle.push((dot, event));
                }
            }
            let seed = self.seeds.get(id).or_else(|| other.seeds.get(id));
            if misplaced(&lifecycle, seed, mine.into_iter().chain(theirs)) {
                return Err(ReplicaError::Compacted {
                    device: id.clone(),
                    what: format!("a replica of hub {}", other.hub),
                });
            }
        }
        Ok(())
    }

    /// The device as derived from its events and seed, `None` when it
    /// does not exist (never created, or deleted last): the state after
    /// its live incarnation's events, as the one record every reader
    /// gives. Its times are always there (`statusUpdateTime` and every
    /// twin node's time: the event's `$metadata`, else its
    /// `operationTimestamp`); the twin etag and version, the device's and
    /// each module's, are those of the last event or seed that gave one
    /// (no version when none did). The identity etag, `generationId` and
    /// line are not known from events and left empty.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::parse_event_line;
    /// use failback::replica::Replica;
    /// use failback::ReplicaId;
    ///
    /// let create = r#"{"properties":{"deviceId":"thermostat-7","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1,"status":"enabled"}}"#;
    /// let update = r#"{"properties":{"deviceId":"thermostat-7","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:05Z"},"systemProperties":{"correlation-id":"c2"},"body":{"version":2,"properties":{"desired":{"fan":3}}}}"#;
    /// let mut replica = Replica::new(ReplicaId::new("primary")?);
    /// replica.ingest(parse_event_line("events.jsonl", 1, create)?)?;
    /// replica.ingest(parse_event_line("events.jsonl", 2, update)?)?;
    /// let device = replica.device("thermostat-7").ok_or("created")?;
    /// assert_eq!(device.snapshot.device.desired["fan"], 3);
    /// assert_eq!(device.meta.version, Some(2));
    /// assert!(device.times.is_some());
    /// assert!(replica.device("valve-3").is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn device(&self, id: &str) -> Option<DeviceRecord> {
        replay::replay(self, id).device
    }

    /// Every event still parked, by device then dot.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::parse_event_line;
    /// use failback::replica::Replica;
    /// use failback::ReplicaId;
    ///
    /// let create = r#"{"properties":{"deviceId":"thermostat-7","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1,"status":"enabled"}}"#;
    /// let update = r#"{"properties":{"deviceId":"thermostat-7","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:05Z"},"systemProperties":{"correlation-id":"c2"},"body":{"version":2,"properties":{"desired":{"fan":3}}}}"#;
    /// let mut replica = Replica::new(ReplicaId::new("primary")?);
    /// replica.ingest(parse_event_line("events.jsonl", 1, update)?)?;
    /// assert_eq!(replica.gaps().len(), 1);
    /// replica.ingest(parse_event_line("events.jsonl", 2, create)?)?;
    /// assert!(replica.gaps().is_empty()); // the create placed it
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gaps(&self) -> Vec<Gap> {
        let mut gaps = Vec::new();
        for id in self.devices.keys() {
            gaps.extend(replay::versions(self, id).parked);
        }
        gaps
    }

    /// The canonical serialized state (see [`Replica::write`]).
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::parse_event_line;
    /// use failback::replica::Replica;
    /// use failback::ReplicaId;
    ///
    /// let create = r#"{"properties":{"deviceId":"thermostat-7","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1,"status":"enabled"}}"#;
    /// let update = r#"{"properties":{"deviceId":"thermostat-7","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:05Z"},"systemProperties":{"correlation-id":"c2"},"body":{"version":2,"properties":{"desired":{"fan":3}}}}"#;
    /// let hub = ReplicaId::new("primary")?;
    /// let (mut a, mut b) = (Replica::new(hub.clone()), Replica::new(hub));
    /// for (replica, order) in [(&mut a, [create, update]), (&mut b, [update, create])] {
    ///     for (i, text) in order.into_iter().enumerate() {
    ///         replica.ingest(parse_event_line("events.jsonl", i as u64 + 1, text)?)?;
    ///     }
    /// }
    /// assert_eq!(a.to_bytes(), b.to_bytes()); // whatever the order of arrival
    /// assert!(a.to_bytes().starts_with(br#"{"format":"failback-replica","version":1,"hub":"primary""#));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = write_state(&mut out, self);
        out
    }

    fn device_events(&self, id: &str) -> Vec<(&EventDot, &Event)> {
        self.devices
            .get(id)
            .map(|dots| {
                dots.all
                    .iter()
                    .filter_map(|d| self.events.get_key_value(d))
                    .map(|(d, s)| (d, &*s.event))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The device's events with their whole twins (see [`Stored`]).
    fn device_events_with_twins(&self, id: &str) -> Vec<(&EventDot, Event)> {
        self.devices
            .get(id)
            .map(|dots| {
                dots.all
                    .iter()
                    .filter_map(|d| self.events.get_key_value(d))
                    .map(|(d, s)| (d, s.with_twin()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn lifecycle_events(&self, id: &str) -> Vec<(&EventDot, &Event)> {
        self.devices
            .get(id)
            .map(|dots| {
                dots.lifecycle
                    .iter()
                    .filter_map(|d| self.events.get_key_value(d))
                    .map(|(d, s)| (d, &*s.event))
                    .collect()
            })
            .unwrap_or_default()
    }
}
