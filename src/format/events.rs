//! Change-event JSON lines, as IoT Hub routes its non-telemetry events:
//! `{"properties": {...}, "systemProperties": {...}, "body": {...}}`, one
//! event a line.
//!
//! Device and module lifecycle events (`createDeviceIdentity`,
//! `deleteDeviceIdentity`, `createModuleIdentity`, `deleteModuleIdentity`)
//! and twin changes (`updateTwin`, a patch with its `$metadata`;
//! `replaceTwin`, the whole twin) are read with their body, a twin read
//! and checked as a twin line is. Connection-state events are read as
//! [`Op::Connection`] without their body. Any other `opType` is an error
//! naming the line.
//!
//! [`write_event_line`] writes an event canonically: keys sorted, the body
//! as parsed JSON with its keys sorted, `operationTimestamp` in
//! milliseconds, application and system properties this crate does not use
//! dropped. Two deliveries of one event are equal bytes, which is what
//! replicas compare to find duplicates.

use std::fmt;
use std::io::{self, BufRead};

use serde_json::Value;

use super::envelope::{self, Envelope, Field, Message, Paths, Slot};
use super::lines::Lines;
use super::raw;
use super::twin::{Covers, held_body_version, twin_body_of_owned};
use super::{ReadError, ReadErrorKind};
use crate::doc::{Entity, EntityTimes};

/// What an event does: its `opType`, as [`Event::op`] gives it.
///
/// # Example
///
/// ```
/// use failback::format::{parse_event_line, Op};
///
/// let text = r#"{"properties":{"deviceId":"thermostat-7","opType":"deviceConnected","operationTimestamp":"2026-11-28T10:00:00Z"},"body":{}}"#;
/// let event = parse_event_line("events.jsonl", 1, text)?;
/// assert_eq!(event.op, Op::Connection("deviceConnected".into()));
/// assert!(event.twin.is_none(), "connection events are read without their body");
/// # Ok::<(), failback::format::ReadError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `createDeviceIdentity`: the device's twin as created.
    CreateDevice,
    /// `createModuleIdentity`: the module's twin as created.
    CreateModule,
    /// `replaceTwin`: the whole twin.
    ReplaceTwin,
    /// `updateTwin`: a patch of the twin.
    UpdateTwin,
    /// `deleteModuleIdentity`.
    DeleteModule,
    /// `deleteDeviceIdentity`: the device and its modules.
    DeleteDevice,
    /// A connection-state event (`deviceConnected`, ...), with its
    /// `opType`: read, never applied.
    Connection(String),
}

impl Op {
    /// The `opType` of the event.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::Op;
    ///
    /// assert_eq!(Op::UpdateTwin.as_str(), "updateTwin");
    /// assert_eq!(Op::DeleteDevice.to_string(), "deleteDeviceIdentity");
    /// assert_eq!(Op::Connection("deviceDisconnected".into()).as_str(), "deviceDisconnected");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            Op::CreateDevice => "createDeviceIdentity",
            Op::CreateModule => "createModuleIdentity",
            Op::ReplaceTwin => "replaceTwin",
            Op::UpdateTwin => "updateTwin",
            Op::DeleteModule => "deleteModuleIdentity",
            Op::DeleteDevice => "deleteDeviceIdentity",
            Op::Connection(op) => op,
        }
    }

    fn parse(op: &str, connection: bool) -> Option<Self> {
        Some(match op {
            "createDeviceIdentity" => Op::CreateDevice,
            "createModuleIdentity" => Op::CreateModule,
            "replaceTwin" => Op::ReplaceTwin,
            "updateTwin" => Op::UpdateTwin,
            "deleteModuleIdentity" => Op::DeleteModule,
            "deleteDeviceIdentity" => Op::DeleteDevice,
            "deviceConnected" | "deviceDisconnected" => Op::Connection(op.to_owned()),
            _ if connection => Op::Connection(op.to_owned()),
            _ => return None,
        })
    }

    /// Whether the event is about a module (its `moduleId` is required).
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::Op;
    ///
    /// assert!(Op::CreateModule.is_module_op() && Op::DeleteModule.is_module_op());
    /// assert!(!Op::UpdateTwin.is_module_op());
    /// ```
    pub fn is_module_op(&self) -> bool {
        matches!(self, Op::CreateModule | Op::DeleteModule)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The twin an event carries: the whole twin of a create or replace, the
/// changed parts of an update.
///
/// # Example
///
/// ```
/// use failback::format::parse_event_line;
///
/// let text = r#"{"properties":{"deviceId":"thermostat-7","opType":"updateTwin","operationTimestamp":"2026-11-28T10:00:00Z"},"body":{"version":9,"etag":"AAAAAAAAAAk=","properties":{"desired":{"setpoint":21}}}}"#;
/// let twin = parse_event_line("events.jsonl", 1, text)?.twin.expect("a twin change");
/// assert_eq!((twin.version, twin.etag.as_deref()), (Some(9), Some("AAAAAAAAAAk=")));
/// assert_eq!(twin.entity.desired["setpoint"], 21);
/// assert!(twin.has_desired && !twin.has_reported && !twin.has_tags);
/// # Ok::<(), failback::format::ReadError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventTwin {
    /// `version`: the twin's version after the change.
    pub version: Option<u64>,
    /// `etag`: the twin's etag after the change.
    pub etag: Option<String>,
    /// The identity fields and twin sections the body gives. A `null`
    /// in an update's section removes the property.
    pub entity: Entity,
    /// `statusUpdateTime` and the `$lastUpdated` of every node given.
    pub times: EntityTimes,
    /// Whether the body gives `tags`.
    pub has_tags: bool,
    /// Whether the body gives `properties.desired`.
    pub has_desired: bool,
    /// Whether the body gives `properties.reported`.
    pub has_reported: bool,
}

/// One change event, as an [`EventReader`] or [`parse_event_line`] reads
/// it.
///
/// # Example
///
/// ```
/// use failback::format::{parse_event_line, Op};
///
/// let text = r#"{"properties":{"hubName":"primary","deviceId":"edge-gw","moduleId":"camera","opType":"deleteModuleIdentity","operationTimestamp":"2026-11-28T10:00:00Z"},"systemProperties":{"correlation-id":"c-81"},"body":{}}"#;
/// let event = parse_event_line("events.jsonl", 4, text)?;
/// assert_eq!((event.op, event.line), (Op::DeleteModule, 4));
/// assert_eq!((event.hub.as_deref(), event.device_id.as_str()), (Some("primary"), "edge-gw"));
/// assert_eq!(event.module_id.as_deref(), Some("camera"));
/// assert_eq!(event.correlation_id.as_deref(), Some("c-81"));
/// assert_eq!(event.time, Some(1_795_860_000_000));
/// # Ok::<(), failback::format::ReadError>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct Event {
    /// The line number in the file, from 1. Not part of the event.
    pub line: u64,
    /// `hubName`.
    pub hub: Option<String>,
    /// `deviceId`.
    pub device_id: String,
    /// `moduleId`, for a module's event.
    pub module_id: Option<String>,
    /// `opType`.
    pub op: Op,
    /// `correlation-id`: unique per event, when given.
    pub correlation_id: Option<String>,
    /// `operationTimestamp`, ms since the epoch (required but for
    /// connection events).
    pub time: Option<i64>,
    /// The body's twin: none for connection events, nor for an event
    /// read as a replica holds it ([`EventReader::held`]; its version is
    /// still [`Event::version`]). Boxed: an event without one, as a
    /// replica holds it, is then some 180 bytes, not 600.
    pub twin: Option<Box<EventTwin>>,
    /// The body as canonical JSON (keys sorted), without any
    /// `authentication`.
    body: Option<String>,
    /// The version of the twin a replica dropped (it holds an event by
    /// its body's text and reads the twin again from it): `Some` when
    /// the event had a twin, so [`Event::version`] still answers without
    /// the 448 bytes of an empty [`EventTwin`].
    pub(crate) held_version: Option<Option<u64>>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body is shown as parsed (secrets as fingerprints), never as
        // text.
        f.debug_struct("Event")
            .field("line", &self.line)
            .field("hub", &self.hub)
            .field("device_id", &self.device_id)
            .field("module_id", &self.module_id)
            .field("op", &self.op)
            .field("correlation_id", &self.correlation_id)
            .field("time", &self.time)
            .field("twin", &self.twin)
            .finish()
    }
}

impl Event {
    /// The body as canonical JSON, keys sorted.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::parse_event_line;
    ///
    /// let text = r#"{"properties":{"deviceId":"thermostat-7","opType":"updateTwin","operationTimestamp":"2026-11-28T10:00:00Z"},"body":{"tags":{"site":"lyon"},"version":5}}"#;
    /// let event = parse_event_line("events.jsonl", 1, text)?;
    /// assert_eq!(event.body_json(), Some(r#"{"tags":{"site":"lyon"},"version":5}"#));
    /// # Ok::<(), failback::format::ReadError>(())
    /// ```
    pub fn body_json(&self) -> Option<&str> {
        self.body.as_deref()
    }

    /// The twin version the event carries, 0 when none.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::parse_event_line;
    ///
    /// let update = r#"{"properties":{"deviceId":"thermostat-7","opType":"updateTwin","operationTimestamp":"2026-11-28T10:00:00Z"},"body":{"version":12,"tags":{}}}"#;
    /// assert_eq!(parse_event_line("events.jsonl", 1, update)?.version(), 12);
    /// let delete = r#"{"properties":{"deviceId":"thermostat-7","opType":"deleteDeviceIdentity","operationTimestamp":"2026-11-28T10:00:00Z"},"body":{}}"#;
    /// assert_eq!(parse_event_line("events.jsonl", 2, delete)?.version(), 0);
    /// # Ok::<(), failback::format::ReadError>(())
    /// ```
    pub fn version(&self) -> u64 {
        match &self.twin {
            Some(twin) => twin.version,
            None => self.held_version.flatten(),
        }
        .unwrap_or(0)
    }
}

/// What a reader skips and counts instead of reading it as a change event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Skipped {
    /// A device-to-cloud message: `iothub-message-source` `Telemetry`, an
    /// Event Grid `DeviceTelemetry`, or a message with neither `opType`
    /// nor `iothub-message-schema` (routes send telemetry beside change
    /// events).
    Telemetry,
    /// A digital-twin change (`digitalTwinChangeEvents`, schema
    /// `digitalTwinChangeNotification`, content type
    /// `application/json-patch+json`, or an `updateTwin` whose body is a
    /// JSON Patch array): the twin change event of the same write carries
    /// the twin.
    DigitalTwinChange,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Skipped::Telemetry => "telemetry",
            Skipped::DigitalTwinChange => "a digital-twin change",
        })
    }
}

/// How many records of each kind a reader skipped, as
/// [`EventReader::skipped_events`] counts them.
///
/// # Example
///
/// ```
/// use failback::format::{EventReader, SkipCounts};
///
/// let input = concat!(
///     r#"{"properties":{"deviceId":"thermostat-7"},"systemProperties":{"iothub-message-source":"Telemetry"},"body":{"t":21.5}}"#, "\n",
///     r#"{"properties":{"deviceId":"thermostat-7"},"systemProperties":{"iothub-message-source":"Telemetry"},"body":{"t":21.7}}"#, "\n",
/// );
/// let mut reader = EventReader::new(input.as_bytes(), "route.jsonl");
/// assert!(reader.next().is_none());
/// assert_eq!(reader.skipped_events(), SkipCounts { telemetry: 2, digital_twin: 0 });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkipCounts {
    /// Telemetry messages.
    pub telemetry: u64,
    /// Digital-twin change events.
    pub digital_twin: u64,
}

impl SkipCounts {
    fn add(&mut self, skipped: Skipped) {
        match skipped {
            Skipped::Telemetry => self.telemetry += 1,
            Skipped::DigitalTwinChange => self.digital_twin += 1,
        }
    }
}

/// One record read: a change event, or a record skipped.
// Events are the common case: boxing them would allocate once more per
// event to save stack space on the rare skipped record.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    /// A change event (connection-state events included).
    Event(Event),
    /// A record this crate does not use.
    Skipped(Skipped),
}

/// The magic of an Avro object container file.
const AVRO_MAGIC: &[u8] = b"Obj\x01";

/// A streaming reader of change events, in any [`Envelope`].
///
/// The envelope is told per file: an Avro file by its magic `Obj\x01`,
/// a JSON file by the keys of its first record
/// ([`EventReader::with_envelope`] forces one). Every later record must
/// be in the same envelope: one whose keys tell another is an
/// [`EnvelopeMismatch`](ReadErrorKind::EnvelopeMismatch). JSON records are read as
/// `ExportReader` reads lines: bounded, lines that
/// do not start with `{` skipped and counted ([`EventReader::skipped`]),
/// every record checked, an error does not end it. Avro records are
/// streamed a block at a time; their "line" is the record's number, from
/// 1, and a corrupt block ends the file. Telemetry and digital-twin
/// changes are skipped and counted ([`EventReader::skipped_events`]).
///
/// # Example
///
/// ```
/// use failback::format::{Envelope, EventReader, Op};
///
/// let input = concat!(
///     r#"{"properties":{"hubName":"hub1","deviceId":"d1","opType":"updateTwin","#,
///     r#""operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"#,
///     r#""body":{"version":3,"properties":{"desired":{"fan":2,"$metadata":{"fan":{"$lastUpdated":"2024-03-01T12:00:00Z"}}}}}}"#,
///     "\n",
///     r#"{"properties":{"deviceId":"d1"},"systemProperties":{"iothub-message-source":"Telemetry"},"body":{"t":21.5}}"#,
/// );
/// let mut reader = EventReader::new(input.as_bytes(), "events.jsonl");
/// let event = reader.next().unwrap()?;
/// assert_eq!(event.op, Op::UpdateTwin);
/// assert_eq!(event.version(), 3);
/// assert_eq!(event.twin.unwrap().entity.desired["fan"], 2);
/// assert!(reader.next().is_none());
/// assert_eq!(reader.skipped_events().telemetry, 1);
/// assert_eq!(reader.envelope(), Some(Envelope::Canonical));
/// # Ok::<(), failback::format::ReadError>(())
/// ```
pub struct EventReader<R> {
    source: Source<R>,
    file: String,
    envelope: Option<Envelope>,
    skips: SkipCounts,
    twins: Twins,
}

/// Whether a reader builds each event's twin, or checks it and keeps its
/// version only, as a replica holds the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Twins {
    Built,
    Held,
}

enum Source<R> {
    /// Nothing read yet: the envelope is not told.
    Start(R),
    Json(Lines<R>),
    Avro {
        records: Box<apache_avro::Reader<'static, R>>,
        count: u64,
    },
    Done,
}

impl<R> fmt::Debug for EventReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventReader")
            .field("file", &self.file)
            .field("envelope", &self.envelope)
            .field("skips", &self.skips)
            .finish_non_exhaustive()
    }
}

impl<R: BufRead> EventReader<R> {
    /// Reads `reader`, naming it `file` in errors. The reader is an
    /// iterator of `Result<Event, ReadError>`.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::EventReader;
    ///
    /// let input = r#"{"properties":{"deviceId":"thermostat-7","opType":"createDeviceIdentity","operationTimestamp":"2026-11-28T10:00:00Z"},"body":{"deviceId":"thermostat-7","version":1}}"#;
    /// let events = EventReader::new(input.as_bytes(), "events.jsonl").collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(events.len(), 1);
    /// assert_eq!(events[0].device_id, "thermostat-7");
    /// # Ok::<(), failback::format::ReadError>(())
    /// ```
    pub fn new(reader: R, file: impl Into<String>) -> Self {
        Self {
            source: Source::Start(reader),
            file: file.into(),
            envelope: None,
            skips: SkipCounts::default(),
            twins: Twins::Built,
        }
    }

    /// Reads each event as a [`Replica`](crate::replica::Replica) holds
    /// it: the body's twin is checked as it would be read (every error
    /// the same) but not built, [`Event::twin`] is `None` and
    /// [`Event::version`] still answers. A replica reads an event's twin
    /// again from its body when it replays it, so this is what to feed
    /// [`Replica::ingest`](crate::replica::Replica::ingest): the same
    /// replica, without building and dropping a twin per event.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::EventReader;
    ///
    /// let text = r#"{"properties":{"deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:00Z"},"body":{"version":4,"tags":{"a":1}}}"#;
    /// let event = EventReader::new(text.as_bytes(), "e.jsonl").held().next().unwrap()?;
    /// assert!(event.twin.is_none());
    /// assert_eq!(event.version(), 4);
    /// # Ok::<(), failback::format::ReadError>(())
    /// ```
    #[must_use]
    pub fn held(mut self) -> Self {
        self.twins = Twins::Held;
        self
    }

    /// Reads every record in `envelope`, rather than the one the file
    /// tells.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::{Envelope, EventReader, ReadErrorKind};
    ///
    /// let canonical = r#"{"properties":{"deviceId":"thermostat-7","opType":"deleteDeviceIdentity","operationTimestamp":"2026-11-28T10:00:00Z"},"body":{}}"#;
    /// let mut reader = EventReader::new(canonical.as_bytes(), "grid.json").with_envelope(Envelope::EventGrid);
    /// assert_eq!(reader.envelope(), Some(Envelope::EventGrid));
    /// let error = reader.next().expect("one record").unwrap_err();
    /// assert!(matches!(error.kind, ReadErrorKind::EnvelopeMismatch { found: Envelope::Canonical, .. }));
    /// ```
    #[must_use]
    pub fn with_envelope(mut self, envelope: Envelope) -> Self {
        self.envelope = Some(envelope);
        self
    }

    /// The file's envelope: forced, or told once a record was read.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::{Envelope, EventReader};
    ///
    /// let input = r#"{"properties":{"deviceId":"thermostat-7","opType":"deleteDeviceIdentity","operationTimestamp":"2026-11-28T10:00:00Z"},"body":{}}"#;
    /// let mut reader = EventReader::new(input.as_bytes(), "events.jsonl");
    /// assert_eq!(reader.envelope(), None);
    /// reader.next();
    /// assert_eq!(reader.envelope(), Some(Envelope::Canonical));
    /// ```
    pub fn envelope(&self) -> Option<Envelope> {
        self.envelope
    }

    /// How many lines were skipped so far because they do not start with
    /// `{`.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::EventReader;
    ///
    /// let input = "Warning: partial blob\n[truncated]\n";
    /// let mut reader = EventReader::new(input.as_bytes(), "events.jsonl");
    /// assert!(reader.next().is_none());
    /// assert_eq!(reader.skipped(), 2);
    /// ```
    pub fn skipped(&self) -> u64 {
        match &self.source {
            Source::Json(lines) => lines.skipped(),
            _ => 0,
        }
    }

    /// How many telemetry and digital-twin records were skipped so far.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::EventReader;
    ///
    /// let input = r#"{"properties":{"deviceId":"thermostat-7","opType":"updateTwin","operationTimestamp":"2026-11-28T10:00:00Z"},"body":[{"op":"replace","path":"/setpoint","value":21}]}"#;
    /// let mut reader = EventReader::new(input.as_bytes(), "events.jsonl");
    /// assert!(reader.next().is_none());
    /// assert_eq!(reader.skipped_events().digital_twin, 1);
    /// ```
    pub fn skipped_events(&self) -> SkipCounts {
        self.skips
    }

    /// Tells the envelope from the first bytes and opens the file's
    /// records; an error about the whole file ends it.
    fn start(&mut self, mut reader: R) -> Result<(), ReadError> {
        let whole = |kind| ReadError::new(self.file.clone(), 0, kind);
        let head = loop {
            match reader.fill_buf() {
                Ok(head) => break head,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(whole(ReadErrorKind::Io(e))),
            }
        };
        let n = head.len().min(AVRO_MAGIC.len());
        let avro = n > 0 && head.get(..n) == AVRO_MAGIC.get(..n);
        match (avro, self.envelope) {
            (true, None | Some(Envelope::Avro)) => {
                if let Err(reason) = check_avro_header(head) {
                    return Err(whole(ReadErrorKind::InvalidAvro {
                        reason: reason.to_owned(),
                    }));
                }
                let records = apache_avro::Reader::new(reader).map_err(|_| {
                    whole(ReadErrorKind::InvalidAvro {
                        reason: "not an object container file (bad header or schema)".to_owned(),
                    })
                })?;
                self.envelope = Some(Envelope::Avro);
                self.source = Source::Avro {
                    records: Box::new(records),
                    count: 0,
                };
            }
            (true, Some(expected)) => {
                return Err(whole(ReadErrorKind::EnvelopeMismatch {
                    expected,
                    found: Envelope::Avro,
                }));
            }
            (false, Some(Envelope::Avro)) => {
                return Err(whole(ReadErrorKind::InvalidAvro {
                    reason: "no Avro magic at the start of the file".to_owned(),
                }));
            }
            (false, _) => self.source = Source::Json(Lines::new(reader, self.file.clone())),
        }
        Ok(())
    }
}

/// Checks the schema an Avro object container file's header (in `head`,
/// the first bytes buffered) names, before `apache-avro` parses it:
/// apache-avro 0.21 panics on a named type whose name is no Avro name
/// (`Name::parse` unwraps), and no input may panic the reader. Every
/// `name`, `namespace` and alias in the schema must be a (dotted) Avro
/// name. A header longer than the buffer is refused: IoT Hub's and
/// Capture's are well under a kilobyte.
fn check_avro_header(head: &[u8]) -> Result<(), &'static str> {
    const CUT: &str = "the file's header is cut short or too long";
    fn long(buf: &[u8], pos: &mut usize) -> Result<i64, &'static str> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *buf.get(*pos).ok_or(CUT)?;
            *pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                // Zigzag: 0, -1, 1, -2, ...
                let half = i64::try_from(value >> 1).map_err(|_| CUT)?;
                return Ok(if value & 1 == 0 { half } else { -half - 1 });
            }
        }
        Err(CUT)
    }
    fn bytes<'b>(buf: &'b [u8], pos: &mut usize) -> Result<&'b [u8], &'static str> {
        let len = usize::try_from(long(buf, pos)?).map_err(|_| CUT)?;
        let end = pos.checked_add(len).ok_or(CUT)?;
        let out = buf.get(*pos..end).ok_or(CUT)?;
        *pos = end;
        Ok(out)
    }
    fn avro_name(name: &str, empty: bool) -> bool {
        if name.is_empty() {
            return empty;
        }
        name.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    }
    fn names(schema: &serde_json::Value) -> bool {
        match schema {
            serde_json::Value::Object(map) => map.iter().all(|(key, value)| {
                let ok = match (key.as_str(), value) {
                    ("name", serde_json::Value::String(name)) => avro_name(name, false),
                    ("namespace", serde_json::Value::String(ns)) => avro_name(ns, true),
                    ("aliases", serde_json::Value::Array(aliases)) => aliases
                        .iter()
                        .all(|a| a.as_str().is_some_and(|a| avro_name(a, false))),
                    _ => true,
                };
                ok && names(value)
            }),
            serde_json::Value::Array(items) => items.iter().all(names),
            _ => true,
        }
    }
    let mut pos = AVRO_MAGIC.len();
    loop {
        let count = long(head, &mut pos)?;
        if count == 0 {
            return Ok(());
        }
        if count < 0 {
            long(head, &mut pos)?;
        }
        for _ in 0..count.unsigned_abs() {
            let key = bytes(head, &mut pos)?;
            let value = bytes(head, &mut pos)?;
            if key == b"avro.schema" {
                let schema: serde_json::Value =
                    serde_json::from_slice(value).map_err(|_| "the schema is not JSON")?;
                if !names(&schema) {
                    return Err("the schema holds a name that is no Avro name");
                }
            }
        }
    }
}

impl<R: BufRead> Iterator for EventReader<R> {
    type Item = Result<Event, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Source::Start(_) = self.source {
                let Source::Start(reader) = std::mem::replace(&mut self.source, Source::Done)
                else {
                    return None;
                };
                if let Err(error) = self.start(reader) {
                    return Some(Err(error));
                }
            }
            let parsed = match &mut self.source {
                Source::Start(_) | Source::Done => return None,
                Source::Json(lines) => match lines.next_json()? {
                    Ok((line, text)) => {
                        read_json_record(&self.file, line, text, self.envelope, self.twins)
                    }
                    Err(error) => Err(error),
                },
                Source::Avro { records, count } => {
                    let value = records.next()?;
                    *count += 1;
                    match value {
                        Ok(value) => envelope::read_avro(&self.file, *count, value)
                            .and_then(|msg| from_message(&self.file, *count, "", msg, self.twins))
                            .map(|parsed| (Envelope::Avro, parsed)),
                        Err(_) => Err(ReadError::new(
                            self.file.clone(),
                            *count,
                            ReadErrorKind::InvalidAvro {
                                reason: "corrupt data block".to_owned(),
                            },
                        )),
                    }
                }
            };
            match parsed {
                Ok((envelope, parsed)) => {
                    self.envelope.get_or_insert(envelope);
                    match parsed {
                        Parsed::Event(event) => return Some(Ok(event)),
                        Parsed::Skipped(skipped) => self.skips.add(skipped),
                    }
                }
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

/// Reads one JSON record in the envelope its keys tell, which must be
/// `envelope` when one is known (forced, or told by an earlier record).
fn read_json_record(
    file: &str,
    line: u64,
    text: &str,
    envelope: Option<Envelope>,
    twins: Twins,
) -> Result<(Envelope, Parsed), ReadError> {
    // Most records are canonical and well formed: read in one pass. Any
    // error there, or anything else, is read the checked way, which gives
    // the same event for what the one pass accepts, and the error.
    if matches!(envelope, None | Some(Envelope::Canonical)) {
        if let Some((msg, body)) = envelope::read_canonical(text) {
            if let Ok(parsed) = from_message_with(file, line, text, msg, Some(body), twins) {
                return Ok((Envelope::Canonical, parsed));
            }
        }
    }
    read_json_record_checked(file, line, text, envelope, twins)
}

/// [`read_json_record`] without the one-pass reading: each top-level
/// value found first, then read.
fn read_json_record_checked(
    file: &str,
    line: u64,
    text: &str,
    envelope: Option<Envelope>,
    twins: Twins,
) -> Result<(Envelope, Parsed), ReadError> {
    let msg = envelope::read_json(file, line, text, envelope)?;
    Ok((msg.envelope, from_message(file, line, text, msg, twins)?))
}

/// [`parse_event_record`] the checked way only, never in one pass: what
/// the fuzz target compares the one-pass reading with, result for result.
///
/// # Errors
///
/// As [`parse_event_record`].
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::format::{parse_event_record, parse_event_record_checked};
///
/// let text = r#"{"properties":{"deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:00Z"},"body":{"version":2,"tags":{"a":1}}}"#;
/// assert_eq!(
///     parse_event_record("e", 1, text, None)?,
///     parse_event_record_checked("e", 1, text, None)?,
/// );
/// # Ok::<(), failback::format::ReadError>(())
/// ```
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn parse_event_record_checked(
    file: &str,
    line: u64,
    text: &str,
    envelope: Option<Envelope>,
) -> Result<Parsed, ReadError> {
    read_json_record_checked(file, line, text, envelope, Twins::Built).map(|(_, parsed)| parsed)
}

/// Parses one record of a JSON [`Envelope`] (`text` must be one JSON
/// object) and checks it: in the envelope its keys tell, which must be
/// `envelope` when given (a record with no key of any envelope, `{}`, is
/// read in `envelope`, else as canonical).
///
/// Every envelope gives the same [`Event`] for the same change
/// notification, so [`write_event_line`] writes it as the same bytes:
/// the properties are looked for under each client's spelling
/// (`correlation-id`, `correlationId`, `correlation_id`) and in both maps
/// (some clients put every key among the application properties).
/// Event Grid and CloudEvents events carry no correlation-id (their `id`
/// is Event Grid's, not the hub's): they are the events of their content.
///
/// # Errors
///
/// As [`parse_event_line`], the fields named as the envelope names them
/// (`Properties.opType`, `event.payload.version`, `data.deviceId`).
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::format::{parse_event_line, parse_event_record, Parsed, Skipped};
///
/// let storage = concat!(
///     r#"{"EnqueuedTimeUtc":"2024-03-01T12:00:01Z","Properties":{"deviceId":"d1","opType":"updateTwin","#,
///     r#""operationTimestamp":"2024-03-01T12:00:00Z"},"SystemProperties":{"correlationId":"c1"},"#,
///     r#""Body":"eyJ2ZXJzaW9uIjoyfQ=="}"#,
/// );
/// let canonical = r#"{"properties":{"deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":2}}"#;
/// let Parsed::Event(event) = parse_event_record("blob.json", 1, storage, None)? else {
///     panic!("a change event");
/// };
/// assert_eq!(event, parse_event_line("events.jsonl", 1, canonical)?);
///
/// let patch = r#"{"properties":{"deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:00Z"},"body":[{"op":"add","path":"/fan","value":2}]}"#;
/// assert_eq!(parse_event_record("e", 2, patch, None)?, Parsed::Skipped(Skipped::DigitalTwinChange));
/// # Ok::<(), failback::format::ReadError>(())
/// ```
#[cfg_attr(
    not(feature = "internals"),
    allow(
        dead_code,
        reason = "the library reads events held; this is for the tools"
    )
)]
pub fn parse_event_record(
    file: &str,
    line: u64,
    text: &str,
    envelope: Option<Envelope>,
) -> Result<Parsed, ReadError> {
    read_json_record(file, line, text, envelope, Twins::Built).map(|(_, parsed)| parsed)
}

/// Parses one canonical event line (`text` must be one JSON object) and
/// checks it.
///
/// # Errors
///
/// A [`ReadError`] on `file` and `line`: invalid JSON, wrong types, a
/// missing `deviceId`, `opType` or `operationTimestamp`, an unknown
/// `opType`, a module operation without `moduleId`, a body naming another
/// device, a twin that breaks a limit (its fields named `body.<path>`),
/// or a record readers skip ([`ReadErrorKind::NotChangeEvent`]: see
/// `parse_event_record`).
///
/// # Example
///
/// ```
/// use failback::format::{parse_event_line, ReadErrorKind};
///
/// let text = r#"{"properties":{"deviceId":"d1","opType":"renameDevice","operationTimestamp":"2024-03-01T12:00:00Z"},"body":{}}"#;
/// let err = parse_event_line("events.jsonl", 7, text).unwrap_err();
/// assert!(matches!(err.kind, ReadErrorKind::UnknownOpType { .. }));
/// assert_eq!(err.to_string(), r#"events.jsonl:7: device "d1" field "properties.opType": unknown opType "renameDevice""#);
/// ```
pub fn parse_event_line(file: &str, line: u64, text: &str) -> Result<Event, ReadError> {
    parse_line(file, line, text, Twins::Built)
}

/// [`parse_event_line`], the event read as a replica holds it (see
/// [`EventReader::held`]): its twin checked, every error the same, but
/// not built.
///
/// # Errors
///
/// As [`parse_event_line`].
///
/// # Example
///
/// ```
/// use failback::format::{parse_event_line, parse_held_event_line};
///
/// let text = r#"{"properties":{"deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:00Z"},"body":{"version":4,"tags":{"a":1}}}"#;
/// let held = parse_held_event_line("e.jsonl", 1, text)?;
/// let full = parse_event_line("e.jsonl", 1, text)?;
/// assert_eq!((held.twin.is_none(), held.version()), (true, full.version()));
/// assert_eq!(held.body_json(), full.body_json());
///
/// let bad = r#"{"properties":{"deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:00Z"},"body":{"tags":{"a.b":1}}}"#;
/// let (held, full) = (parse_held_event_line("e.jsonl", 2, bad), parse_event_line("e.jsonl", 2, bad));
/// assert_eq!(held.unwrap_err().to_string(), full.unwrap_err().to_string());
/// # Ok::<(), failback::format::ReadError>(())
/// ```
pub fn parse_held_event_line(file: &str, line: u64, text: &str) -> Result<Event, ReadError> {
    parse_line(file, line, text, Twins::Held)
}

fn parse_line(file: &str, line: u64, text: &str, twins: Twins) -> Result<Event, ReadError> {
    let (_, parsed) = read_json_record(file, line, text, Some(Envelope::Canonical), twins)?;
    match parsed {
        Parsed::Event(event) => Ok(event),
        Parsed::Skipped(skipped) => Err(ReadError::new(
            file,
            line,
            ReadErrorKind::NotChangeEvent(skipped),
        )),
    }
}

/// The sources of change notifications, and connection events.
const CHANGE_SOURCES: [&str; 3] = [
    "deviceLifecycleEvents",
    "twinChangeEvents",
    "deviceConnectionStateEvents",
];

/// What one record is, read from any envelope. `text` is the record the
/// message was read from (for the column of a body error), `""` when its
/// body is not a slice of it.
fn from_message(
    file: &str,
    line: u64,
    text: &str,
    msg: Message<'_>,
    twins: Twins,
) -> Result<Parsed, ReadError> {
    from_message_with(file, line, text, msg, None, twins)
}

/// [`from_message`], the body already parsed (`parsed`) where the reader
/// parsed it in one pass with the envelope. Such a body has no text to
/// read again: where the twin reader refuses its value, this fails, and
/// the caller reads the record the checked way for the error.
fn from_message_with(
    file: &str,
    line: u64,
    text: &str,
    msg: Message<'_>,
    parsed: Option<Value>,
    twins: Twins,
) -> Result<Parsed, ReadError> {
    let paths = msg.envelope.paths();
    let prop_error =
        |(field, kind): (String, ReadErrorKind)| ReadError::new(file, line, kind).with_field(field);
    let get = |slot: Slot| -> Result<Option<&str>, ReadError> {
        msg.get(slot)
            .map(|prop| prop.text().map_err(prop_error))
            .transpose()
    };
    // The device: the properties', else the envelope's, else the
    // connection's.
    let (device, module) = match (msg.get(Slot::Device), &msg.origin, &msg.grid) {
        (Some(device), _, _) => (Some(device), msg.get(Slot::Module)),
        (None, Some((origin, module)), _) => (Some(origin), module.as_ref()),
        (None, None, Some(_)) => (None, None),
        (None, None, None) => (
            msg.get(Slot::ConnectionDevice),
            msg.get(Slot::ConnectionDevice)
                .and(msg.get(Slot::ConnectionModule)),
        ),
    };
    let mut device = device
        .map(|p| p.text().map(str::to_owned).map_err(prop_error))
        .transpose()?;
    let mut module = module
        .map(|p| p.text().map(str::to_owned).map_err(prop_error))
        .transpose()?
        .filter(|m| !m.is_empty() || msg.origin.is_none());
    let hub = get(Slot::Hub)?.map(str::to_owned);
    let time_text = get(Slot::Time)?;
    let time_of_app = Field::new(paths.app, "operationTimestamp");

    let (op, correlation_id, time_field) = if let Some(grid) = &msg.grid {
        // Event Grid and CloudEvents: the subject names the device when
        // `data` does not.
        let subject = grid
            .subject
            .as_ref()
            .map(|p| p.text().map_err(prop_error))
            .transpose()?;
        if device.is_none() {
            let mut parts = subject.and_then(|s| s.strip_prefix("devices/")).map(|s| {
                let (d, m) = s.split_once('/').unwrap_or((s, ""));
                (d.to_owned(), (!m.is_empty()).then(|| m.to_owned()))
            });
            if let Some((d, m)) = parts.take() {
                device = Some(d);
                module = module.or(m);
            }
        }
        let Some(kind_prop) = &grid.event_type else {
            let field = if msg.envelope == Envelope::EventGrid {
                "eventType"
            } else {
                "type"
            };
            return Err(ReadError::new(file, line, ReadErrorKind::MissingField)
                .with_device(device.as_deref(), module.as_deref())
                .with_field(field));
        };
        let kind = kind_prop.text().map_err(prop_error)?;
        let name = kind.strip_prefix("Microsoft.Devices.").unwrap_or(kind);
        let op = match (name, module.is_some()) {
            ("DeviceCreated", false) => Op::CreateDevice,
            ("DeviceCreated", true) => Op::CreateModule,
            ("DeviceDeleted", false) => Op::DeleteDevice,
            ("DeviceDeleted", true) => Op::DeleteModule,
            ("DeviceConnected", _) => Op::Connection("deviceConnected".to_owned()),
            ("DeviceDisconnected", _) => Op::Connection("deviceDisconnected".to_owned()),
            ("DeviceTelemetry", _) => return Ok(Parsed::Skipped(Skipped::Telemetry)),
            _ => {
                return Err(ReadError::new(
                    file,
                    line,
                    ReadErrorKind::UnknownOpType {
                        value: super::error::safe_value(kind),
                    },
                )
                .with_device(device.as_deref(), module.as_deref())
                .with_field(kind_prop.field.path()));
            }
        };
        // `data.operationTimestamp`, else the event's time.
        let (time, field) = match (time_text, &grid.time) {
            (Some(time), _) => (Some(time), time_of_app),
            (None, Some(prop)) => (Some(prop.text().map_err(prop_error)?), prop.field),
            (None, None) => (None, time_of_app),
        };
        (op, None, (time, field))
    } else {
        let source = get(Slot::Source)?;
        let schema = get(Slot::Schema)?;
        let content_type = get(Slot::ContentType)?;
        if source.is_some_and(|s| s.eq_ignore_ascii_case("Telemetry")) {
            return Ok(Parsed::Skipped(Skipped::Telemetry));
        }
        if source == Some("digitalTwinChangeEvents")
            || schema == Some("digitalTwinChangeNotification")
            || content_type.is_some_and(|c| c.starts_with("application/json-patch+json"))
        {
            return Ok(Parsed::Skipped(Skipped::DigitalTwinChange));
        }
        let fail = |field: String, kind| {
            ReadError::new(file, line, kind)
                .with_device(device.as_deref(), module.as_deref())
                .with_field(field)
        };
        let connection = source == Some("deviceConnectionStateEvents")
            || schema == Some("deviceConnectionStateNotification");
        let op_field = msg
            .get(Slot::Op)
            .map_or_else(|| format!("{}.opType", paths.app), |p| p.field.path());
        let Some(op_text) = get(Slot::Op)? else {
            // A change notification always says what it is: a message
            // that says nothing is telemetry routed beside them.
            if schema.is_none() && !source.is_some_and(|s| CHANGE_SOURCES.contains(&s)) {
                return Ok(Parsed::Skipped(Skipped::Telemetry));
            }
            return Err(fail(op_field, ReadErrorKind::MissingField));
        };
        let Some(mut op) = Op::parse(op_text, connection) else {
            let value = super::error::safe_value(op_text);
            return Err(fail(op_field, ReadErrorKind::UnknownOpType { value }));
        };
        let is_array = parsed
            .as_ref()
            .map_or_else(|| msg.body.is_array(), Value::is_array);
        if op == Op::UpdateTwin && is_array {
            return Ok(Parsed::Skipped(Skipped::DigitalTwinChange));
        }
        // A module's lifecycle notification names its schema.
        if schema == Some("moduleLifecycleNotification") {
            op = match op {
                Op::CreateDevice => Op::CreateModule,
                Op::DeleteDevice => Op::DeleteModule,
                op => op,
            };
        }
        let correlation_id = get(Slot::Correlation)?.map(str::to_owned);
        let time_field = msg.get(Slot::Time).map_or(time_of_app, |p| p.field);
        (op, correlation_id, (time_text, time_field))
    };
    let fail = |field: &str, kind| {
        ReadError::new(file, line, kind)
            .with_device(device.as_deref(), module.as_deref())
            .with_field(field)
    };
    let (time_text, time_field) = time_field;
    let time = match time_text {
        Some(text) => raw::parse_time(text).map_err(|kind| fail(&time_field.path(), kind))?,
        None => None,
    };
    if device.is_none() {
        return Err(fail(
            &format!("{}.deviceId", paths.app),
            ReadErrorKind::MissingField,
        ));
    }
    let connection = matches!(op, Op::Connection(_));
    if !connection {
        if time.is_none() {
            return Err(fail(&time_field.path(), ReadErrorKind::MissingField));
        }
        let module_field = || format!("{}.moduleId", paths.app);
        match (&module, op.is_module_op()) {
            (None, true) => return Err(fail(&module_field(), ReadErrorKind::MissingField)),
            (Some(_), false) if matches!(op, Op::CreateDevice | Op::DeleteDevice) => {
                return Err(fail(
                    &module_field(),
                    ReadErrorKind::Mismatch {
                        other: format!("{}.opType", paths.app),
                    },
                ));
            }
            _ => {}
        }
    }
    let mut event = Event {
        line,
        hub,
        device_id: device.unwrap_or_default(),
        module_id: module,
        op,
        correlation_id,
        time,
        twin: None,
        body: None,
        held_version: None,
    };
    if connection {
        return Ok(Parsed::Event(event));
    }
    let fail = |field: &str, kind| {
        ReadError::new(file, line, kind)
            .with_device(Some(&event.device_id), event.module_id.as_deref())
            .with_field(field)
    };
    let body = msg.body.text();
    let relabel = |e: ReadError| relabel(e, paths);
    // The body is parsed once, as a JSON value: its canonical text (what
    // the writer writes and duplicates are compared by) and its twin are
    // both read from it. The value reader checks what the twin reader
    // would skip unchecked (a lone surrogate in an unknown section's key,
    // say), which must fail here, not vanish.
    let parsed_once = parsed.is_some();
    let mut value: Value = match parsed {
        Some(value) => Ok(value),
        None => raw::parse_unique_keys(body),
    }
    .map_err(|e| {
        let e = match e {
            Ok(path) => {
                return fail(
                    &format!("{}.{path}", paths.body),
                    ReadErrorKind::DuplicateField,
                );
            }
            Err(e) => e,
        };
        // A body that is a slice of the record: its column there.
        let offset = if text.as_bytes().as_ptr_range().contains(&body.as_ptr()) {
            body.as_ptr() as usize - text.as_ptr() as usize
        } else {
            0
        };
        let full = e.to_string();
        let message = full.rfind(" at line ").map_or(&*full, |at| &full[..at]);
        fail(
            paths.body,
            ReadErrorKind::InvalidJson {
                column: offset + e.column(),
                message: message.to_owned(),
            },
        )
    })?;
    if let Value::Object(map) = &mut value {
        map.remove("authentication");
    }
    // `to_string` through `Display` goes by `fmt`, a call per piece:
    // serialized to bytes it is the same text, faster.
    // Sized for the text it came from (the canonical text is about as
    // long), rather than grown from serde's 128 bytes.
    let mut canonical = Vec::with_capacity(body.len());
    // Writing a value to a Vec cannot fail, and writes UTF-8.
    let _ = serde_json::to_writer(&mut canonical, &value);
    event.body = Some(String::from_utf8(canonical).unwrap_or_default());
    if twins == Twins::Held {
        // Checked, not built, where the check follows the reader; else
        // read in full below, for its error or its version.
        if let Some(version) =
            held_body_version(&value, &event.device_id, event.module_id.as_deref())
        {
            event.held_version = Some(version);
            return Ok(Parsed::Event(event));
        }
    }
    // The twin takes the value's parts by move (`authentication` is no
    // part of a twin).
    let (twin, covers) = twin_body_of_owned(
        file,
        line,
        value,
        (!parsed_once).then_some(body),
        &event.device_id,
        event.module_id.as_deref(),
    )
    .map_err(relabel)?;
    let Covers {
        tags,
        desired,
        reported,
    } = covers;
    if twins == Twins::Held {
        event.held_version = Some(twin.version);
        return Ok(Parsed::Event(event));
    }
    event.twin = Some(Box::new(EventTwin {
        version: twin.version,
        etag: twin.etag,
        entity: twin.entity,
        times: twin.times,
        has_tags: tags,
        has_desired: desired,
        has_reported: reported,
    }));
    Ok(Parsed::Event(event))
}

/// The twin of `event` read again from its body's canonical text, for
/// an event held without it (see the replica's `Stored`): the same twin
/// the event was read with, as a canonical line reads back as the same
/// event. `None` for an event without a body.
pub(crate) fn twin_of_body(event: &Event) -> Option<EventTwin> {
    let body = event.body.as_deref()?;
    let value = raw::parse_unique_keys(body).ok()?;
    let (twin, covers) = twin_body_of_owned(
        "",
        event.line,
        value,
        Some(body),
        &event.device_id,
        event.module_id.as_deref(),
    )
    .ok()?;
    Some(EventTwin {
        version: twin.version,
        etag: twin.etag,
        entity: twin.entity,
        times: twin.times,
        has_tags: covers.tags,
        has_desired: covers.desired,
        has_reported: covers.reported,
    })
}

/// Names a body error's fields as the envelope names them: `body.x` as
/// `Body.x` or `data.twin.x`, `properties.deviceId` as `data.deviceId`.
fn relabel(mut error: ReadError, paths: Paths) -> ReadError {
    if paths.body != "body" {
        if let Some(field) = &error.field {
            if let Some(rest) = field.strip_prefix("body") {
                error.field = Some(format!("{}{rest}", paths.body));
            }
        }
    }
    if paths.app != "properties" {
        if let ReadErrorKind::Mismatch { other } = &mut error.kind {
            if let Some(rest) = other.strip_prefix("properties.") {
                *other = format!("{}.{rest}", paths.app);
            }
        }
    }
    error
}

/// Writes one event line canonically, ending in `\n`: keys sorted, the
/// body as parsed, `operationTimestamp` with milliseconds in UTC, only the
/// properties this crate reads (`hubName`, `deviceId`, `moduleId`,
/// `opType`, `operationTimestamp`; `correlation-id`, and
/// `iothub-message-source` for connection events).
///
/// # Errors
///
/// Any error of `w`.
///
/// # Example
///
/// ```
/// use failback::format::{parse_event_line, write_event_line};
///
/// let text = r#"{"body":{"version":2,"tags":{"b":1,"a":null}},"properties":{"opType":"updateTwin","deviceId":"d1","operationTimestamp":"2024-03-01T12:00:00Z","iothub-message-schema":"twinChangeNotification"}}"#;
/// let event = parse_event_line("e", 1, text)?;
/// let mut out = Vec::new();
/// write_event_line(&mut out, &event)?;
/// let written = String::from_utf8(out).unwrap();
/// assert_eq!(written, concat!(
///     r#"{"body":{"tags":{"a":null,"b":1},"version":2},"#,
///     r#""properties":{"deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:00.000Z"},"#,
///     r#""systemProperties":{}}"#, "\n"));
/// assert_eq!(parse_event_line("e", 1, written.trim())?, event);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "internals")]
pub fn write_event_line<W: io::Write>(w: &mut W, event: &Event) -> io::Result<()> {
    w.write_all(&event_bytes(event))?;
    w.write_all(b"\n")
}

/// The canonical text of an event, without a line end: keys in sorted
/// order, written directly (no map is built).
pub(crate) fn event_bytes(event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + event.body.as_ref().map_or(0, String::len));
    write_event_bytes(&mut out, event);
    out
}

/// [`event_bytes`], appended to `out` (a buffer the caller reuses).
pub(crate) fn write_event_bytes(out: &mut Vec<u8>, event: &Event) {
    fn string(out: &mut Vec<u8>, key: &str, value: &str) {
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        // Writing a string to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
    }
    out.extend_from_slice(b"{");
    if let Some(body) = &event.body {
        out.extend_from_slice(b"\"body\":");
        out.extend_from_slice(body.as_bytes());
        out.extend_from_slice(b",");
    }
    out.extend_from_slice(b"\"properties\":{");
    string(out, "deviceId", &event.device_id);
    if let Some(hub) = &event.hub {
        out.push(b',');
        string(out, "hubName", hub);
    }
    if let Some(module) = &event.module_id {
        out.push(b',');
        string(out, "moduleId", module);
    }
    out.push(b',');
    string(out, "opType", event.op.as_str());
    if let Some(time) = event.time.and_then(raw::format_time) {
        out.push(b',');
        string(out, "operationTimestamp", &time);
    }
    out.extend_from_slice(b"},\"systemProperties\":{");
    let mut first = true;
    if let Some(id) = &event.correlation_id {
        string(out, "correlation-id", id);
        first = false;
    }
    if let Op::Connection(_) = event.op {
        if !first {
            out.push(b',');
        }
        string(out, "iothub-message-source", "deviceConnectionStateEvents");
    }
    out.extend_from_slice(b"}}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass reading gives what the checked reading gives, event
    /// for event and error for error, on the shapes it must hand over.
    #[test]
    fn the_one_pass_reading_agrees_with_the_checked_one() {
        let props = r#"{"deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:00Z"}"#;
        let sys = r#"{"correlation-id":"c1"}"#;
        let cases = [
            format!(r#"{{"properties":{props},"systemProperties":{sys},"body":{{"version":2,"tags":{{"a":1}}}}}}"#),
            format!(r#"{{"properties":{props},"systemProperties":{sys},"body":null}}"#),
            format!(r#"{{"properties":{props},"systemProperties":{sys}}}"#),
            format!(r#"{{"properties":{props},"body":[{{"op":"add"}}]}}"#),
            format!(r#"{{"properties":{props},"body":{{"version":2,"version":3}}}}"#),
            format!(r#"{{"properties":{props},"properties":{props},"body":{{}}}}"#),
            format!(r#"{{"properties":{props},"body":{{"version":2}}}}"#),
            format!(r#"{{"properties":null,"systemProperties":{props},"body":{{"version":2}}}}"#),
            format!(r#"{{"properties":{props},"extra":[1,{{"x":2}}],"body":{{"version":2}}}}"#),
            format!(r#"{{"properties":{props},"Properties":{props},"body":{{"version":2}}}}"#),
            format!(r#"{{"properties":{props},"body":{{"version":2,"authentication":{{"type":"sas"}}}}}}"#),
            format!(r#"{{"properties":{props},"body":{{"version":"2"}}}}"#),
            format!(r#"{{"properties":{props},"body":{{"version":2,"deviceId":7}}}}"#),
            format!(r#"{{"properties":{props},"body":{{"version":2}}}} x"#),
            format!(r#"{{"properties":{props},"body":{{"tags":{{"a":1}},"version":2}}}}"#),
            format!(r#"{{"properties":{props},"body":{{"version":2,"properties":{{"desired":{{"a":1,"$metadata":{{"a":{{"$lastUpdated":"never"}}}}}}}}}}}}"#),
            format!(r#"{{"properties":{props},"body":{{"version":2,"deviceId":"d2"}}}}"#),
            r#"{"properties":{"deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:00"},"body":{"version":2}}"#.to_owned(),
            r#"{"properties":{"deviceId":"d1","opType":"nothing","operationTimestamp":"2024-03-01T12:00:00Z"},"body":{}}"#.to_owned(),
            r#"{"properties":{"deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:00Z","twin":{}},"body":{}}"#.to_owned(),
            r#"{"properties":{"deviceId":1,"opType":"updateTwin"},"body":{}}"#.to_owned(),
            r#"{"systemProperties":{"iothub-message-source":"Telemetry"},"body":{"t":1}}"#.to_owned(),
            r#"{}"#.to_owned(),
            r#"[]"#.to_owned(),
        ];
        for text in &cases {
            for envelope in [None, Some(Envelope::Canonical)] {
                let once = parse_event_record("e", 1, text, envelope);
                let checked =
                    read_json_record_checked("e", 1, text, envelope, Twins::Built).map(|(_, p)| p);
                match (&once, &checked) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
                    (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
                    _ => panic!("{text}: {once:?} against {checked:?}"),
                }
            }
        }
        // The first case is read in one pass.
        assert!(envelope::read_canonical(&cases[0]).is_some());
    }

    fn line(props: &str, body: &str) -> String {
        format!(
            r#"{{"properties":{{{props}}},"systemProperties":{{"correlation-id":"c"}},"body":{body}}}"#
        )
    }

    #[test]
    fn a_module_operation_needs_its_module() {
        let text = line(
            r#""deviceId":"d1","opType":"createModuleIdentity","operationTimestamp":"2024-03-01T12:00:00Z""#,
            "{}",
        );
        let err = parse_event_line("e", 3, &text).map(|_| ()).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"e:3: device "d1" field "properties.moduleId": missing field"#
        );
    }

    #[test]
    fn a_body_field_given_twice_is_refused_by_its_path() {
        for (body, field) in [
            (r#"{"version":1,"version":2}"#, "body.version"),
            (
                r#"{"properties":{"desired":{"fan":1,"fan":2}}}"#,
                "body.properties.desired.fan",
            ),
        ] {
            let text = line(
                r#""deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:00Z""#,
                body,
            );
            let err = parse_event_line("e", 1, &text).map(|_| ()).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(r#"e:1: device "d1" field "{field}": duplicate field"#)
            );
        }
    }

    #[test]
    fn a_body_naming_another_device_is_an_error() {
        let text = line(
            r#""deviceId":"d1","opType":"replaceTwin","operationTimestamp":"2024-03-01T12:00:00Z""#,
            r#"{"deviceId":"d2"}"#,
        );
        let err = parse_event_line("e", 1, &text).map(|_| ()).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"e:1: device "d1" field "body.deviceId": differs from properties.deviceId"#
        );
    }

    #[test]
    fn a_bad_body_field_is_named_under_body() {
        let text = line(
            r#""deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:00Z""#,
            r#"{"properties":{"desired":{"a.b":1}}}"#,
        );
        let err = parse_event_line("e", 1, &text).map(|_| ()).unwrap_err();
        assert!(
            err.to_string()
                .contains("field \"body.properties.desired.a.b\": key contains"),
            "{err}"
        );
    }

    #[test]
    fn connection_events_are_read_without_their_body() {
        let text = r#"{"properties":{"deviceId":"d1","opType":"deviceConnected"},"body":{"sequenceNumber":"000000000000000001D"}}"#;
        let event = parse_event_line("e", 1, text).map_err(|e| e.to_string());
        assert_eq!(
            event.map(|e| (e.op, e.twin.is_none())),
            Ok((Op::Connection("deviceConnected".into()), true))
        );
    }

    #[test]
    fn keys_in_a_body_are_dropped() {
        let text = line(
            r#""deviceId":"d1","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z""#,
            r#"{"version":1,"authentication":{"symmetricKey":{"primaryKey":"c2VjcmV0LWtleS0xAAAAAA=="}}}"#,
        );
        let event = parse_event_line("e", 1, &text).map_err(|e| e.to_string());
        let event = event.unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        write_event_line(&mut out, &event).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&out).contains("c2VjcmV0"));
        assert!(!format!("{event:?}").contains("c2VjcmV0"));
    }

    /// An Avro varint: zigzag, seven bits a byte, low bits first.
    fn avro_long(n: i64) -> Vec<u8> {
        let mut v = ((n << 1) ^ (n >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    /// An Avro header: the magic, `entries` as one block of the metadata
    /// map (its count negative, followed by its size in bytes, when
    /// `negative`), the map's end and a sync marker.
    fn avro_header(negative: bool, entries: &[(&str, &str)]) -> Vec<u8> {
        let mut block = Vec::new();
        for (key, value) in entries {
            block.extend(avro_long(key.len() as i64));
            block.extend_from_slice(key.as_bytes());
            block.extend(avro_long(value.len() as i64));
            block.extend_from_slice(value.as_bytes());
        }
        let mut out = AVRO_MAGIC.to_vec();
        let count = entries.len() as i64;
        if negative {
            out.extend(avro_long(-count));
            out.extend(avro_long(block.len() as i64));
        } else {
            out.extend(avro_long(count));
        }
        out.extend(block);
        out.extend(avro_long(0));
        out.extend([7; 16]);
        out
    }

    /// A record schema as IoT Hub's routing writes it, with `name`,
    /// `namespace` and an alias in a field's record put in.
    fn avro_schema(name: &str, namespace: &str, alias: &str) -> String {
        format!(
            r#"{{"type":"record","name":"EventData","namespace":"Microsoft.Azure.Devices","fields":[{{"name":"Body","type":["null","bytes"]}},{{"name":"Inner","type":{{"type":"record","name":"{name}","namespace":"{namespace}","aliases":["{alias}"],"fields":[]}}}}]}}"#
        )
    }

    /// The header's schema is read through every block of the metadata
    /// map, negative counts (with their size) included, and every name,
    /// namespace and alias in it, nested or not, is checked.
    #[test]
    fn an_avro_header_is_refused_for_any_name_that_is_no_avro_name() {
        const NO_NAME: &str = "the schema holds a name that is no Avro name";
        let good = [
            avro_schema("Inner", "a.b_2", "_old"),
            avro_schema("_x9", "", "Z"),
        ];
        let bad = [
            avro_schema("1a", "a", "b"),
            avro_schema("a-b", "a", "b"),
            avro_schema("", "a", "b"),
            avro_schema("a", "a..b", "b"),
            avro_schema("a", "-x", "b"),
            avro_schema("a", "a", "a b"),
            avro_schema("a", "a", "9"),
        ];
        for negative in [false, true] {
            for schema in &good {
                let head = avro_header(negative, &[("avro.codec", "x"), ("avro.schema", schema)]);
                assert_eq!(check_avro_header(&head), Ok(()), "{schema}");
            }
            for schema in &bad {
                let head = avro_header(negative, &[("avro.codec", "x"), ("avro.schema", schema)]);
                assert_eq!(check_avro_header(&head), Err(NO_NAME), "{schema}");
            }
            let head = avro_header(negative, &[("avro.codec", "x"), ("avro.schema", "{")]);
            assert_eq!(check_avro_header(&head), Err("the schema is not JSON"));
        }
        // Two blocks, the bad name in the second.
        let mut head = avro_header(false, &[("avro.codec", "x")]);
        head.truncate(head.len() - 17);
        let second = avro_header(false, &[("avro.schema", &bad[0])]);
        head.extend_from_slice(&second[AVRO_MAGIC.len()..]);
        assert_eq!(check_avro_header(&head), Err(NO_NAME));
        // A header cut short, and a varint longer than 64 bits.
        const CUT: &str = "the file's header is cut short or too long";
        let whole = avro_header(false, &[("avro.schema", &good[0])]);
        assert_eq!(check_avro_header(&whole[..whole.len() - 20]), Err(CUT));
        let mut long = AVRO_MAGIC.to_vec();
        long.extend([0xff; 10]);
        long.push(0);
        assert_eq!(check_avro_header(&long), Err(CUT));
    }

    /// A reader whose first `fill_buf` fails with `kind`, then reads
    /// `data`.
    struct FailsOnce {
        kind: Option<io::ErrorKind>,
        data: &'static [u8],
    }

    impl io::Read for FailsOnce {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = io::BufRead::fill_buf(self)?.len().min(buf.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.consume(n);
            Ok(n)
        }
    }

    impl BufRead for FailsOnce {
        fn fill_buf(&mut self) -> io::Result<&[u8]> {
            match self.kind.take() {
                Some(kind) => Err(io::Error::new(kind, "flaky")),
                None => Ok(self.data),
            }
        }

        fn consume(&mut self, n: usize) {
            self.data = &self.data[n..];
        }
    }

    const UPDATE: &[u8] = br#"{"properties":{"deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:00Z"},"body":{"version":2}}"#;

    /// An interrupted first read is retried; any other error is the
    /// file's one error.
    #[test]
    fn the_first_read_is_retried_only_when_interrupted() {
        let read = |kind| {
            EventReader::new(
                FailsOnce {
                    kind: Some(kind),
                    data: UPDATE,
                },
                "e.jsonl",
            )
            .map(|e| e.map(|e| e.version()).map_err(|e| e.to_string()))
            .collect::<Vec<_>>()
        };
        assert_eq!(read(io::ErrorKind::Interrupted), [Ok(2)]);
        assert_eq!(
            read(io::ErrorKind::BrokenPipe),
            [Err("e.jsonl: cannot read: flaky".to_owned())]
        );
    }

    /// An empty file has no records and no error: it is not a cut Avro
    /// header. Its envelope stays untold.
    #[test]
    fn an_empty_file_is_no_records() {
        let mut reader = EventReader::new(&b""[..], "e.jsonl");
        assert!(reader.next().is_none());
        assert_eq!(reader.envelope(), None);
    }

    /// Lines that are no records, telemetry and digital-twin changes are
    /// each counted, and the reader shows what it reads.
    #[test]
    fn a_reader_counts_what_it_skips() {
        let patch = r#"{"properties":{"deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:00Z"},"body":[{"op":"add","path":"/a","value":1}]}"#;
        let twin = r#"{"properties":{"deviceId":"d1"},"systemProperties":{"iothub-message-schema":"digitalTwinChangeNotification"},"body":{}}"#;
        let telemetry = r#"{"properties":{"deviceId":"d1"},"body":{"t":1}}"#;
        let input = format!(
            "# a comment\n{}\n{patch}\nnot json\n{twin}\n{telemetry}\n",
            std::str::from_utf8(UPDATE).unwrap_or_default()
        );
        let mut reader = EventReader::new(input.as_bytes(), "e.jsonl");
        assert_eq!(reader.skipped(), 0);
        let read: Vec<_> = reader
            .by_ref()
            .map(|e| e.map(|e| e.line).map_err(|e| e.to_string()))
            .collect();
        assert_eq!(read, [Ok(2)]);
        assert_eq!(reader.skipped(), 2);
        assert_eq!(
            reader.skipped_events(),
            SkipCounts {
                telemetry: 1,
                digital_twin: 2
            }
        );
        assert_eq!(
            format!("{reader:?}"),
            r#"EventReader { file: "e.jsonl", envelope: Some(Canonical), skips: SkipCounts { telemetry: 1, digital_twin: 2 }, .. }"#
        );
    }

    /// Ops, skipped records and events are shown by name: an error says
    /// which record a reader skips, and an event shows its fields.
    #[test]
    fn ops_skips_and_events_show_their_names() {
        assert_eq!(Op::UpdateTwin.to_string(), "updateTwin");
        assert_eq!(
            Op::Connection("deviceDisconnected".into()).to_string(),
            "deviceDisconnected"
        );
        assert_eq!(Skipped::Telemetry.to_string(), "telemetry");
        assert_eq!(
            Skipped::DigitalTwinChange.to_string(),
            "a digital-twin change"
        );
        let text = line(
            r#""deviceId":"d1","opType":"deleteDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z""#,
            "{}",
        );
        let event = parse_event_line("e", 4, &text).map_err(|e| e.to_string());
        let shown = event.map(|e| format!("{e:?}"));
        assert_eq!(
            shown.as_deref().map(|s| s.split(", twin").next()),
            Ok(Some(
                r#"Event { line: 4, hub: None, device_id: "d1", module_id: None, op: DeleteDevice, correlation_id: Some("c"), time: Some(1709294400000)"#
            ))
        );
    }

    /// A connection-state record reads any `opType` as a connection
    /// event, and writes back with its correlation-id beside its source.
    #[test]
    fn a_connection_record_takes_any_op_and_writes_back_the_same() {
        let text = r#"{"properties":{"deviceId":"d1","opType":"deviceConnectionChanged"},"systemProperties":{"correlation-id":"c9","iothub-message-source":"deviceConnectionStateEvents"},"body":{}}"#;
        let event = parse_event_line("e", 1, text).map_err(|e| e.to_string());
        let event = event.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(event.op, Op::Connection("deviceConnectionChanged".into()));
        let mut out = Vec::new();
        write_event_line(&mut out, &event).unwrap_or_default();
        let written = String::from_utf8(out).unwrap_or_default();
        assert_eq!(
            written,
            concat!(
                r#"{"properties":{"deviceId":"d1","opType":"deviceConnectionChanged"},"#,
                r#""systemProperties":{"correlation-id":"c9","iothub-message-source":"deviceConnectionStateEvents"}}"#,
                "\n"
            )
        );
        assert_eq!(
            parse_event_line("e", 1, written.trim_end()).map_err(|e| e.to_string()),
            Ok(event)
        );
    }

    /// Event Grid's connection events are read as the canonical ones.
    #[test]
    fn event_grid_connection_events_are_connection_ops() {
        for (kind, op) in [
            ("DeviceConnected", "deviceConnected"),
            ("DeviceDisconnected", "deviceDisconnected"),
        ] {
            let text = format!(
                r#"{{"eventType":"Microsoft.Devices.{kind}","subject":"devices/d1","eventTime":"2024-03-01T12:00:00Z","data":{{"deviceId":"d1"}}}}"#
            );
            let read = parse_event_record("e", 1, &text, None).map_err(|e| e.to_string());
            let op_of = |p: Parsed| match p {
                Parsed::Event(e) => Some(e.op),
                Parsed::Skipped(_) => None,
            };
            assert_eq!(read.map(op_of), Ok(Some(Op::Connection(op.into()))));
        }
    }

    /// A record that names its schema or a change source says what it
    /// is: without an `opType` it is an error, not telemetry. A device's
    /// lifecycle event naming a module is an error too.
    #[test]
    fn change_records_need_their_op_and_device_ops_no_module() {
        let cases = [
            (
                r#"{"properties":{"deviceId":"d1","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"iothub-message-schema":"twinChangeNotification"},"body":{}}"#,
                r#"e:1: device "d1" field "properties.opType": missing field"#,
            ),
            (
                r#"{"properties":{"deviceId":"d1","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"iothub-message-source":"twinChangeEvents"},"body":{}}"#,
                r#"e:1: device "d1" field "properties.opType": missing field"#,
            ),
            (
                r#"{"properties":{"deviceId":"d1","moduleId":"m1","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"body":{}}"#,
                r#"e:1: device "d1" module "m1" field "properties.moduleId": differs from properties.opType"#,
            ),
            (
                r#"{"properties":{"deviceId":"d1","moduleId":"m1","opType":"deleteDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"body":{}}"#,
                r#"e:1: device "d1" module "m1" field "properties.moduleId": differs from properties.opType"#,
            ),
        ];
        for (text, expected) in cases {
            let err = parse_event_line("e", 1, text)
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert_eq!(err, Err(expected.to_owned()), "{text}");
        }
    }

    /// A body the JSON reader refuses is named by its column in the
    /// record: where the body starts in it, plus the column in the body.
    #[test]
    fn a_bad_body_is_named_by_its_column_in_the_record() {
        let props = r#""properties":{"deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:00Z"}"#;
        let body = r#"{"tags":{"\ud800x":1}}"#;
        let column = |text: &str| match parse_event_line("e", 1, text).map_err(|e| e.kind) {
            Err(ReadErrorKind::InvalidJson { column, .. }) => Some(column),
            _ => None,
        };
        let first = format!(r#"{{"body":{body},{props}}}"#);
        let last = format!(r#"{{{props},"body":{body}}}"#);
        // The column of the character after `\ud800` in the body.
        let within = body.find("x").map(|x| x + 1);
        assert_eq!(column(&first), within.map(|c| c + 8));
        assert_eq!(
            column(&last),
            within.map(|c| c + last.len() - body.len() - 1)
        );
    }
}
