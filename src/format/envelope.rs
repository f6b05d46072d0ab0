//! The envelopes one change notification reaches an operator in, and
//! their reading into one [`Message`]: the properties this crate reads,
//! found under whichever name and in whichever map a client put them, and
//! the body as JSON text.
//!
//! | [`Envelope`] | where it comes from |
//! |---|---|
//! | `canonical` | Event Hubs / Service Bus consumers, this crate's own lines: `{"properties", "systemProperties", "body"}` |
//! | `storage-json` | IoT Hub routing to Azure Storage, JSON encoding: `{"EnqueuedTimeUtc", "Properties", "SystemProperties", "Body"}`, `Body` base64 text or a JSON value |
//! | `avro` | IoT Hub routing to Azure Storage, Avro encoding, and Event Hubs Capture: Avro object container files (`Obj\x01`), records `Properties`, `SystemProperties` (maps), `Body` (bytes) |
//! | `monitor-events` | `az iot hub monitor-events --properties all --output json`: `{"event": {"origin", "module", "properties": {"system", "application"}, "annotations", "payload"}}` |
//! | `event-grid` | Event Grid schema: `{"id", "subject", "eventType", "eventTime", "data": {"twin", "hubName", "deviceId", "moduleId", ...}}` |
//! | `cloud-events` | CloudEvents 1.0: `{"specversion", "id", "source", "type", "subject", "time", "data"}` |

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::raw::{self, Ctx};
use super::{ReadError, ReadErrorKind};

/// The envelope a file's change events come in. See the
/// [`EventReader`](super::EventReader) for how a file's envelope is told.
///
/// # Example
///
/// ```
/// use failback::format::{Envelope, EventReader};
///
/// // Routed to Azure Storage with JSON encoding: told by the first record's keys.
/// let stored = r#"{"EnqueuedTimeUtc":"2026-11-28T10:00:00Z","Properties":{"deviceId":"thermostat-7","opType":"deleteDeviceIdentity","operationTimestamp":"2026-11-28T10:00:00Z"},"SystemProperties":{},"Body":{}}"#;
/// let mut reader = EventReader::new(stored.as_bytes(), "routed.json");
/// assert!(reader.next().is_some());
/// assert_eq!(reader.envelope(), Some(Envelope::StorageJson));
/// assert_eq!("storage-json".parse::<Envelope>().ok(), Some(Envelope::StorageJson));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Envelope {
    /// `{"properties": {...}, "systemProperties": {...}, "body": {...}}`,
    /// as Event Hubs and Service Bus consumers print it and as
    /// `write_event_line` writes it.
    Canonical,
    /// IoT Hub routing to Azure Storage, JSON encoding: `{"EnqueuedTimeUtc",
    /// "Properties", "SystemProperties", "Body"}`, `Body` base64 text of
    /// the body, or the body itself as a JSON value.
    StorageJson,
    /// Avro object container files of IoT Hub routing to Azure Storage
    /// (the default encoding) and of Event Hubs Capture: records with
    /// `Properties` and `SystemProperties` maps and `Body` bytes.
    Avro,
    /// `az iot hub monitor-events --properties all --output json`:
    /// `{"event": {"origin", "module", "properties": {"system",
    /// "application"}, "annotations", "payload"}}`.
    MonitorEvents,
    /// Event Grid schema: `{"id", "subject", "eventType", "eventTime",
    /// "data"}`.
    EventGrid,
    /// CloudEvents 1.0 schema of Event Grid: `{"specversion", "id",
    /// "type", "subject", "time", "data"}`.
    CloudEvents,
}

impl Envelope {
    /// Every envelope, in the order of their names in
    /// [`Envelope::as_str`].
    pub const ALL: [Envelope; 6] = [
        Envelope::Canonical,
        Envelope::StorageJson,
        Envelope::Avro,
        Envelope::MonitorEvents,
        Envelope::EventGrid,
        Envelope::CloudEvents,
    ];

    /// The envelope's name, as `failback ingest --envelope` takes it.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::Envelope;
    ///
    /// assert_eq!(Envelope::MonitorEvents.as_str(), "monitor-events");
    /// for envelope in Envelope::ALL {
    ///     assert_eq!(envelope.as_str().parse::<Envelope>().ok(), Some(envelope));
    /// }
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Envelope::Canonical => "canonical",
            Envelope::StorageJson => "storage-json",
            Envelope::Avro => "avro",
            Envelope::MonitorEvents => "monitor-events",
            Envelope::EventGrid => "event-grid",
            Envelope::CloudEvents => "cloud-events",
        }
    }

    /// Where the envelope keeps the application properties and the body:
    /// the prefixes of the fields errors name.
    pub(crate) fn paths(self) -> Paths {
        let (app, body) = match self {
            Envelope::Canonical => ("properties", "body"),
            Envelope::StorageJson | Envelope::Avro => ("Properties", "Body"),
            Envelope::MonitorEvents => ("event.properties.application", "event.payload"),
            Envelope::EventGrid | Envelope::CloudEvents => ("data", "data.twin"),
        };
        Paths { app, body }
    }
}

impl fmt::Display for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A name that is no [`Envelope`]: the error of parsing one.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::format::{Envelope, UnknownEnvelope};
///
/// let err = "json".parse::<Envelope>().unwrap_err();
/// assert_eq!(err, UnknownEnvelope("json".into()));
/// assert!(err.to_string().starts_with(r#"unknown envelope "json", expected canonical"#));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown envelope {0:?}, expected canonical, storage-json, avro, monitor-events, event-grid or cloud-events"
)]
pub struct UnknownEnvelope(pub String);

impl FromStr for Envelope {
    type Err = UnknownEnvelope;

    /// Parses an envelope's [name](Envelope::as_str).
    ///
    /// ```
    /// use failback::format::Envelope;
    ///
    /// assert_eq!("storage-json".parse(), Ok(Envelope::StorageJson));
    /// assert!("json".parse::<Envelope>().is_err());
    /// ```
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Envelope::ALL
            .into_iter()
            .find(|e| e.as_str() == name)
            .ok_or_else(|| UnknownEnvelope(name.to_owned()))
    }
}

/// The prefixes of an envelope's fields.
#[derive(Clone, Copy)]
pub(crate) struct Paths {
    pub(crate) app: &'static str,
    pub(crate) body: &'static str,
}

/// A property this crate reads, whatever name a client gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Hub,
    Device,
    Module,
    Op,
    Time,
    Schema,
    Source,
    Correlation,
    ContentType,
    ConnectionDevice,
    ConnectionModule,
}

const SLOTS: usize = 11;

impl Slot {
    /// Application properties are looked for first among the application
    /// properties, system ones first among the system properties: either
    /// may sit in the other map (some clients put every key among the
    /// application properties).
    fn is_application(self) -> bool {
        matches!(
            self,
            Slot::Hub | Slot::Device | Slot::Module | Slot::Op | Slot::Time | Slot::Schema
        )
    }
}

/// The slot of a property name, and that name: the spellings of the
/// clients (`correlation-id` on AMQP, `correlationId` in routing to
/// storage, `correlation_id` in the CLI's Python).
fn slot_of(key: &str) -> Option<(Slot, &'static str)> {
    Some(match key {
        "hubName" => (Slot::Hub, "hubName"),
        "deviceId" => (Slot::Device, "deviceId"),
        "moduleId" => (Slot::Module, "moduleId"),
        "opType" => (Slot::Op, "opType"),
        "operationTimestamp" => (Slot::Time, "operationTimestamp"),
        "iothub-message-schema" => (Slot::Schema, "iothub-message-schema"),
        "iothub-message-source" => (Slot::Source, "iothub-message-source"),
        "correlation-id" => (Slot::Correlation, "correlation-id"),
        "correlationId" => (Slot::Correlation, "correlationId"),
        "correlation_id" => (Slot::Correlation, "correlation_id"),
        "content-type" => (Slot::ContentType, "content-type"),
        "contentType" => (Slot::ContentType, "contentType"),
        "content_type" => (Slot::ContentType, "content_type"),
        "iothub-content-type" => (Slot::ContentType, "iothub-content-type"),
        "iothub-connection-device-id" => (Slot::ConnectionDevice, "iothub-connection-device-id"),
        "connectionDeviceId" => (Slot::ConnectionDevice, "connectionDeviceId"),
        "iothub-connection-module-id" => (Slot::ConnectionModule, "iothub-connection-module-id"),
        "connectionModuleId" => (Slot::ConnectionModule, "connectionModuleId"),
        _ => return None,
    })
}

/// A property's value as read: only text is of use; anything else is
/// kept as the name of its type, an error only if the property is used.
/// Text is borrowed from the record when it has no escapes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PropValue<'a> {
    Text(Cow<'a, str>),
    Other(&'static str),
}

/// The path a property is named by in errors: `path.name`, or `path`
/// alone. Kept as its parts, and written out only when an error names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    path: &'static str,
    name: Option<&'static str>,
}

impl Field {
    /// The field `path.name`.
    pub(crate) fn new(path: &'static str, name: &'static str) -> Self {
        Self {
            path,
            name: Some(name),
        }
    }

    /// The field as errors name it.
    pub(crate) fn path(self) -> String {
        match self.name {
            Some(name) => format!("{}.{name}", self.path),
            None => self.path.to_owned(),
        }
    }
}

/// One property read, with the field path errors name it by.
#[derive(Clone, Debug)]
pub(crate) struct Prop<'a> {
    pub(crate) field: Field,
    pub(crate) value: PropValue<'a>,
}

impl Prop<'_> {
    /// The property's text.
    ///
    /// # Errors
    ///
    /// `WrongType` on its field when it is not a string.
    pub(crate) fn text(&self) -> Result<&str, (String, ReadErrorKind)> {
        match &self.value {
            PropValue::Text(text) => Ok(text),
            PropValue::Other(found) => Err((
                self.field.path(),
                ReadErrorKind::WrongType {
                    expected: "a string".to_owned(),
                    found: (*found).to_owned(),
                },
            )),
        }
    }
}

/// The properties of one map that this crate reads.
#[derive(Clone, Debug, Default)]
pub(crate) struct Props<'a> {
    slots: [Option<Prop<'a>>; SLOTS],
    /// `twin`, in an Event Grid `data`.
    pub(crate) twin: Option<&'a RawValue>,
}

impl<'a> Props<'a> {
    /// Sets a slot; the same property twice under two names must agree.
    fn set(
        &mut self,
        path: &'static str,
        slot: Slot,
        name: &'static str,
        value: PropValue<'a>,
    ) -> Result<(), (String, ReadErrorKind)> {
        let field = Field {
            path,
            name: Some(name),
        };
        let entry = &mut self.slots[slot as usize];
        match entry {
            Some(old) if old.value != value => Err((
                field.path(),
                ReadErrorKind::Mismatch {
                    other: old.field.path(),
                },
            )),
            Some(_) => Ok(()),
            None => {
                *entry = Some(Prop { field, value });
                Ok(())
            }
        }
    }

    pub(crate) fn get(&self, slot: Slot) -> Option<&Prop<'a>> {
        self.slots[slot as usize].as_ref()
    }
}

/// A body as the envelope holds it.
#[derive(Clone, Debug)]
pub(crate) enum Body<'a> {
    /// No body, or `null`.
    Absent,
    /// JSON text, a slice of the record.
    Borrowed(&'a str),
    /// JSON text decoded from base64 or Avro bytes.
    Owned(String),
}

impl Body<'_> {
    pub(crate) fn text(&self) -> &str {
        match self {
            Body::Absent => "{}",
            Body::Borrowed(text) => text,
            Body::Owned(text) => text,
        }
    }

    /// Whether the body is a JSON array (a digital-twin JSON Patch).
    pub(crate) fn is_array(&self) -> bool {
        self.text().trim_start().starts_with('[')
    }
}

/// What an Event Grid or CloudEvents event says outside its `data`.
#[derive(Clone, Debug)]
pub(crate) struct Grid<'a> {
    /// `eventType` or `type`.
    pub(crate) event_type: Option<Prop<'a>>,
    /// `subject`: `devices/<id>[/<module>]`.
    pub(crate) subject: Option<Prop<'a>>,
    /// `eventTime` or `time`.
    pub(crate) time: Option<Prop<'a>>,
}

/// One record of any envelope, read.
#[derive(Clone, Debug)]
pub(crate) struct Message<'a> {
    pub(crate) envelope: Envelope,
    pub(crate) app: Props<'a>,
    pub(crate) sys: Props<'a>,
    /// `event.annotations` of monitor-events.
    pub(crate) annotations: Props<'a>,
    /// The device and module the envelope names outside the properties
    /// (monitor-events' `origin` and `module`).
    pub(crate) origin: Option<(Prop<'a>, Option<Prop<'a>>)>,
    pub(crate) grid: Option<Grid<'a>>,
    pub(crate) body: Body<'a>,
}

impl<'a> Message<'a> {
    fn new(envelope: Envelope) -> Self {
        Self {
            envelope,
            app: Props::default(),
            sys: Props::default(),
            annotations: Props::default(),
            origin: None,
            grid: None,
            body: Body::Absent,
        }
    }

    /// A property, from the map it belongs in first, then the others.
    pub(crate) fn get(&self, slot: Slot) -> Option<&Prop<'a>> {
        let order = if slot.is_application() {
            [&self.app, &self.sys, &self.annotations]
        } else {
            [&self.sys, &self.annotations, &self.app]
        };
        order.into_iter().find_map(|props| props.get(slot))
    }
}

/// The envelope a JSON record is in, by its top-level keys; `None` when
/// it has no key of any.
fn detect(top: &Top<'_>) -> Option<Envelope> {
    Some(if top.event.is_some() {
        Envelope::MonitorEvents
    } else if top.specversion.is_some() {
        Envelope::CloudEvents
    } else if top.event_type.is_some() {
        Envelope::EventGrid
    } else if top.storage_properties.is_some()
        || top.storage_system.is_some()
        || top.storage_body.is_some()
        || top.enqueued.is_some()
    {
        Envelope::StorageJson
    } else if top.properties.is_some() || top.system.is_some() || top.body.is_some() {
        Envelope::Canonical
    } else {
        return None;
    })
}

/// Every top-level key of every JSON envelope.
#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow, default)]
    properties: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "systemProperties")]
    system: Option<&'a RawValue>,
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "Properties")]
    storage_properties: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "SystemProperties")]
    storage_system: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "Body")]
    storage_body: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "EnqueuedTimeUtc")]
    enqueued: Option<&'a RawValue>,
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(borrow, default)]
    specversion: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "eventType")]
    event_type: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    subject: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "eventTime")]
    event_time: Option<&'a RawValue>,
    #[serde(borrow, default)]
    time: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MonitorEvent<'a> {
    #[serde(borrow, default)]
    origin: Option<&'a RawValue>,
    #[serde(borrow, default)]
    module: Option<&'a RawValue>,
    #[serde(borrow, default)]
    properties: Option<&'a RawValue>,
    #[serde(borrow, default)]
    annotations: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MonitorProperties<'a> {
    #[serde(borrow, default)]
    system: Option<&'a RawValue>,
    #[serde(borrow, default)]
    application: Option<&'a RawValue>,
}

/// Reads one JSON record (`text`, one object) in the envelope its keys
/// tell, which must be `expected` when given (a record with no key of any
/// envelope is read in `expected`, else as canonical).
pub(crate) fn read_json<'a>(
    file: &str,
    line: u64,
    text: &'a str,
    expected: Option<Envelope>,
) -> Result<Message<'a>, ReadError> {
    let fail = |field: &str, kind| ReadError::new(file, line, kind).with_field(field);
    let top: Top<'a> = parse_object(file, line, text, None)?;
    let envelope = match (expected, detect(&top)) {
        (Some(Envelope::Avro), Some(Envelope::StorageJson)) => Envelope::StorageJson,
        (Some(expected), Some(found)) if found != expected => {
            return Err(ReadError::new(
                file,
                line,
                ReadErrorKind::EnvelopeMismatch { expected, found },
            ));
        }
        (_, Some(found)) => found,
        (Some(expected), None) => expected,
        (None, None) => Envelope::Canonical,
    };
    let mut msg = Message::new(envelope);
    match envelope {
        Envelope::Canonical => {
            msg.app = props(file, line, top.properties, "properties")?;
            msg.sys = props(file, line, top.system, "systemProperties")?;
            msg.body = json_body(top.body);
        }
        Envelope::StorageJson | Envelope::Avro => {
            msg.envelope = Envelope::StorageJson;
            msg.app = props(file, line, top.storage_properties, "Properties")?;
            msg.sys = props(file, line, top.storage_system, "SystemProperties")?;
            msg.body = match top.storage_body {
                Some(raw) if raw.get().starts_with('"') => {
                    let encoded: String = parse_object(file, line, raw.get(), Some("Body"))?;
                    let bytes = decode_base64(&encoded)
                        .ok_or_else(|| fail("Body", ReadErrorKind::InvalidBase64))?;
                    Body::Owned(utf8(bytes).map_err(|kind| fail("Body", kind))?)
                }
                other => json_body(other),
            };
        }
        Envelope::MonitorEvents => {
            let Some(event) = top.event else {
                return Err(fail("event", ReadErrorKind::MissingField));
            };
            let event: MonitorEvent<'a> = parse_object(file, line, event.get(), Some("event"))?;
            if let Some(properties) = event.properties {
                let properties: MonitorProperties<'a> =
                    parse_object(file, line, properties.get(), Some("event.properties"))?;
                msg.app = props(
                    file,
                    line,
                    properties.application,
                    "event.properties.application",
                )?;
                msg.sys = props(file, line, properties.system, "event.properties.system")?;
            }
            msg.annotations = props(file, line, event.annotations, "event.annotations")?;
            let origin = text_prop(file, line, event.origin, "event.origin")?;
            let module = text_prop(file, line, event.module, "event.module")?;
            msg.origin = origin.map(|o| (o, module));
            msg.body = match event.payload {
                // The CLI prints a payload it could not decode as JSON as
                // text: the body's JSON text, if anything.
                Some(raw) if raw.get().starts_with('"') => {
                    Body::Owned(parse_object(file, line, raw.get(), Some("event.payload"))?)
                }
                other => json_body(other),
            };
        }
        Envelope::EventGrid | Envelope::CloudEvents => {
            let (kind, kind_field, time, time_field) = if envelope == Envelope::EventGrid {
                (top.event_type, "eventType", top.event_time, "eventTime")
            } else {
                (top.kind, "type", top.time, "time")
            };
            msg.app = props(file, line, top.data, "data")?;
            msg.body = json_body(msg.app.twin);
            msg.grid = Some(Grid {
                event_type: text_prop(file, line, kind, kind_field)?,
                subject: text_prop(file, line, top.subject, "subject")?,
                time: text_prop(file, line, time, time_field)?,
            });
        }
    }
    Ok(msg)
}

/// A record in the canonical envelope read in one pass, its body parsed
/// as it is met (`{}` when absent or `null`), where [`read_json`] first
/// finds each top-level value and then parses the properties and the
/// body again. `None` for anything else: a key of another envelope, a
/// key given twice or written with escapes, invalid JSON, properties that
/// break a rule, a repeated key in the body. The caller then reads the
/// record with [`read_json`], which gives the same message for what this
/// accepts, and the error for the rest.
pub(crate) fn read_canonical(text: &str) -> Option<(Message<'_>, serde_json::Value)> {
    let ctx = Ctx::default();
    let duplicate = std::cell::RefCell::new(None);
    let parts = raw::parse(
        text,
        OnePass {
            ctx: &ctx,
            duplicate: &duplicate,
        },
    )
    .ok()?;
    let mut msg = Message::new(Envelope::Canonical);
    msg.app = parts.app.unwrap_or_default();
    msg.sys = parts.sys.unwrap_or_default();
    let body = match parts.body {
        None | Some(serde_json::Value::Null) => serde_json::Value::Object(Default::default()),
        Some(body) => body,
    };
    Some((msg, body))
}

/// Every top-level key [`Top`] reads.
const TOP_KEYS: [&str; 15] = [
    "properties",
    "systemProperties",
    "body",
    "Properties",
    "SystemProperties",
    "Body",
    "EnqueuedTimeUtc",
    "event",
    "specversion",
    "eventType",
    "type",
    "subject",
    "eventTime",
    "time",
    "data",
];

struct OnePass<'c> {
    ctx: &'c Ctx,
    duplicate: &'c std::cell::RefCell<Option<String>>,
}

#[derive(Default)]
struct OnePassParts<'a> {
    app: Option<Props<'a>>,
    sys: Option<Props<'a>>,
    body: Option<serde_json::Value>,
}

impl<'de> DeserializeSeed<'de> for OnePass<'_> {
    type Value = OnePassParts<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OnePass<'_> {
    type Value = OnePassParts<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a canonical event")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut parts = OnePassParts::default();
        let props = |path| PropsSeed {
            ctx: self.ctx,
            path,
        };
        // A key written with escapes is no borrowed `&str`: an error, and
        // the record is read the checked way.
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "properties" if parts.app.is_none() => {
                    parts.app = Some(map.next_value_seed(props("properties"))?);
                }
                "systemProperties" if parts.sys.is_none() => {
                    parts.sys = Some(map.next_value_seed(props("systemProperties"))?);
                }
                "body" if parts.body.is_none() => {
                    parts.body = Some(map.next_value_seed(raw::unique_value(self.duplicate))?);
                }
                key if TOP_KEYS.contains(&key) => {
                    return Err(de::Error::custom("not for the one-pass reader"));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(parts)
    }
}

/// The body of a JSON envelope: `null` is none.
fn json_body(raw: Option<&RawValue>) -> Body<'_> {
    match raw {
        Some(raw) if raw.get() != "null" => Body::Borrowed(raw.get()),
        _ => Body::Absent,
    }
}

fn utf8(bytes: Vec<u8>) -> Result<String, ReadErrorKind> {
    String::from_utf8(bytes).map_err(|e| ReadErrorKind::InvalidUtf8 {
        valid_up_to: e.utf8_error().valid_up_to(),
    })
}

/// Parses `text` as a `T`; errors name the field under `path`.
fn parse_object<'a, T: Deserialize<'a>>(
    file: &str,
    line: u64,
    text: &'a str,
    path: Option<&str>,
) -> Result<T, ReadError> {
    let ctx = Ctx::default();
    raw::parse(text, std::marker::PhantomData).map_err(|e| {
        let mut error = ctx.error(file, line, &e);
        error.field = match (path, error.field.take()) {
            (Some(path), Some(field)) => Some(format!("{path}.{field}")),
            (Some(path), None) => Some(path.to_owned()),
            (None, field) => field,
        };
        error
    })
}

/// A string field of an envelope (`event.origin`, `subject`), `null` none.
fn text_prop<'a>(
    file: &str,
    line: u64,
    raw: Option<&'a RawValue>,
    field: &'static str,
) -> Result<Option<Prop<'a>>, ReadError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let value: PropValue<'a> = parse_object(file, line, raw.get(), Some(field))?;
    Ok(match value {
        PropValue::Other("null") => None,
        value => Some(Prop {
            field: Field {
                path: field,
                name: None,
            },
            value,
        }),
    })
}

/// Reads one properties object (`null` or absent: none).
fn props<'a>(
    file: &str,
    line: u64,
    raw: Option<&'a RawValue>,
    path: &'static str,
) -> Result<Props<'a>, ReadError> {
    let Some(raw) = raw else {
        return Ok(Props::default());
    };
    if raw.get() == "null" {
        return Ok(Props::default());
    }
    let ctx = Ctx::default();
    raw::parse(raw.get(), PropsSeed { ctx: &ctx, path }).map_err(|e| {
        let mut error = ctx.error(file, line, &e);
        if error.field.is_none() {
            error.field = Some(path.to_owned());
        }
        error
    })
}

struct PropsSeed<'c> {
    ctx: &'c Ctx,
    path: &'static str,
}

impl<'de> DeserializeSeed<'de> for PropsSeed<'_> {
    type Value = Props<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PropsSeed<'_> {
    type Value = Props<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut props = Props::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Slot(slot, name) => {
                    let value: PropValue<'de> = map.next_value()?;
                    if value == PropValue::Other("null") {
                        continue;
                    }
                    props
                        .set(self.path, slot, name, value)
                        .map_err(|(field, kind)| self.ctx.fail(field, kind))?;
                }
                Key::Twin if props.twin.is_none() => props.twin = Some(map.next_value()?),
                Key::Twin => {
                    let field = format!("{}.twin", self.path);
                    return Err(self.ctx.fail(field, ReadErrorKind::DuplicateField));
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(props)
    }
}

/// A property name, read without allocating.
enum Key {
    Slot(Slot, &'static str),
    Twin,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a property name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match slot_of(key) {
                    Some((slot, name)) => Key::Slot(slot, name),
                    None if key == "twin" => Key::Twin,
                    None => Key::Other,
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for PropValue<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = PropValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a property value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<PropValue<'de>, E> {
                Ok(PropValue::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PropValue<'de>, E> {
                Ok(PropValue::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<PropValue<'de>, E> {
                Ok(PropValue::Text(Cow::Owned(v)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<PropValue<'de>, E> {
                Ok(PropValue::Other("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<PropValue<'de>, E> {
                Ok(PropValue::Other("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<PropValue<'de>, E> {
                Ok(PropValue::Other("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<PropValue<'de>, E> {
                Ok(PropValue::Other("a number"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<PropValue<'de>, E> {
                Ok(PropValue::Other("null"))
            }
            fn visit_none<E: de::Error>(self) -> Result<PropValue<'de>, E> {
                Ok(PropValue::Other("null"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PropValue<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(PropValue::Other("an object"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PropValue<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(PropValue::Other("an array"))
            }
        }
        d.deserialize_any(ValueVisitor)
    }
}

/// Standard base64 (RFC 4648, `+` and `/`), padding optional; `None` on
/// any other character or a dangling bit.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero, or the text is not what an encoder wrote.
    (acc == 0).then_some(out)
}

/// Reads one Avro record of IoT Hub's storage routing or Event Hubs
/// Capture: `Properties` and `SystemProperties` maps (of strings, or of a
/// union with strings), `Body` bytes (or null). Other fields are not
/// used.
pub(crate) fn read_avro(
    file: &str,
    record: u64,
    value: apache_avro::types::Value,
) -> Result<Message<'static>, ReadError> {
    use apache_avro::types::Value as Avro;
    let fail = |field: &str, kind| ReadError::new(file, record, kind).with_field(field);
    let Avro::Record(fields) = value else {
        return Err(ReadError::new(
            file,
            record,
            ReadErrorKind::InvalidAvro {
                reason: "a record that is no record".to_owned(),
            },
        ));
    };
    let mut msg = Message::new(Envelope::Avro);
    for (name, value) in fields {
        match name.as_str() {
            "Properties" => {
                msg.app = avro_props(value, "Properties").map_err(|(f, k)| fail(&f, k))?
            }
            "SystemProperties" => {
                msg.sys = avro_props(value, "SystemProperties").map_err(|(f, k)| fail(&f, k))?
            }
            "Body" => {
                msg.body = match unwrap_union(value) {
                    Avro::Null => Body::Absent,
                    Avro::Bytes(bytes) | Avro::Fixed(_, bytes) => {
                        Body::Owned(utf8(bytes).map_err(|kind| fail("Body", kind))?)
                    }
                    Avro::String(text) => Body::Owned(text),
                    other => {
                        return Err(fail(
                            "Body",
                            ReadErrorKind::WrongType {
                                expected: "bytes".to_owned(),
                                found: avro_type(&other).to_owned(),
                            },
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(msg)
}

fn unwrap_union(value: apache_avro::types::Value) -> apache_avro::types::Value {
    match value {
        apache_avro::types::Value::Union(_, inner) => unwrap_union(*inner),
        other => other,
    }
}

fn avro_type(value: &apache_avro::types::Value) -> &'static str {
    use apache_avro::types::Value as Avro;
    match value {
        Avro::Null => "null",
        Avro::Boolean(_) => "a boolean",
        Avro::Int(_) | Avro::Long(_) | Avro::Float(_) | Avro::Double(_) => "a number",
        Avro::Bytes(_) | Avro::Fixed(..) => "bytes",
        Avro::String(_) | Avro::Enum(..) | Avro::Uuid(_) => "a string",
        Avro::Array(_) => "an array",
        Avro::Map(_) | Avro::Record(_) => "an object",
        _ => "another value",
    }
}

fn avro_props(
    value: apache_avro::types::Value,
    path: &'static str,
) -> Result<Props<'static>, (String, ReadErrorKind)> {
    use apache_avro::types::Value as Avro;
    let map = match unwrap_union(value) {
        Avro::Map(map) => map,
        Avro::Null => return Ok(Props::default()),
        other => {
            return Err((
                path.to_owned(),
                ReadErrorKind::WrongType {
                    expected: "a map".to_owned(),
                    found: avro_type(&other).to_owned(),
                },
            ));
        }
    };
    // Sorted, so which of two spellings an error names does not depend
    // on a hash map's order.
    let sorted: BTreeMap<String, Avro> = map.into_iter().collect();
    let mut props = Props::default();
    for (key, value) in sorted {
        let Some((slot, name)) = slot_of(&key) else {
            continue;
        };
        let value = match unwrap_union(value) {
            Avro::Null => continue,
            Avro::String(text) => PropValue::Text(Cow::Owned(text)),
            Avro::Bytes(bytes) => match String::from_utf8(bytes) {
                Ok(text) => PropValue::Text(Cow::Owned(text)),
                Err(_) => PropValue::Other("bytes"),
            },
            other => PropValue::Other(avro_type(&other)),
        };
        props.set(path, slot, name, value)?;
    }
    Ok(props)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_what_encoders_write_and_nothing_else() {
        assert_eq!(decode_base64("e30=").as_deref(), Some(&b"{}"[..]));
        assert_eq!(decode_base64("e30").as_deref(), Some(&b"{}"[..]));
        assert_eq!(decode_base64("").as_deref(), Some(&b""[..]));
        // Four to seven characters: only a length of 1 modulo 4 is short.
        assert_eq!(decode_base64("eyB9").as_deref(), Some(&b"{ }"[..]));
        assert_eq!(decode_base64("eyAgfQ").as_deref(), Some(&b"{  }"[..]));
        assert_eq!(
            decode_base64("eyJhIjoxfQ==").as_deref(),
            Some(&br#"{"a":1}"#[..])
        );
        // The two characters past the alphanumerics.
        assert_eq!(
            decode_base64("+/+/").as_deref(),
            Some(&[0xfb, 0xff, 0xbf][..])
        );
        // One character past a whole group is short, even with zero bits.
        for bad in ["e", "A", "AAAAA", "e31=", "e3$=", "{}", "e30=\n"] {
            assert_eq!(decode_base64(bad), None, "{bad}");
        }
    }

    #[test]
    fn avro_values_of_the_wrong_type_are_named_as_json_names_them() {
        use apache_avro::types::Value as Avro;
        let cases = [
            (Avro::Null, "null"),
            (Avro::Boolean(true), "a boolean"),
            (Avro::Int(1), "a number"),
            (Avro::Long(1), "a number"),
            (Avro::Double(1.5), "a number"),
            (Avro::Bytes(vec![1]), "bytes"),
            (Avro::Fixed(1, vec![1]), "bytes"),
            (Avro::String("s".into()), "a string"),
            (Avro::Enum(0, "A".into()), "a string"),
            (Avro::Array(vec![]), "an array"),
            (Avro::Map(Default::default()), "an object"),
            (Avro::Record(vec![]), "an object"),
            (Avro::Date(1), "another value"),
        ];
        for (value, name) in cases {
            assert_eq!(avro_type(&value), name, "{value:?}");
        }
    }

    #[test]
    fn each_envelope_is_told_by_its_keys() {
        let cases = [
            (r#"{"properties":{},"body":{}}"#, Envelope::Canonical),
            (
                r#"{"EnqueuedTimeUtc":"x","Body":"e30="}"#,
                Envelope::StorageJson,
            ),
            (r#"{"event":{"origin":"d1"}}"#, Envelope::MonitorEvents),
            (
                r#"{"eventType":"Microsoft.Devices.DeviceCreated","data":{}}"#,
                Envelope::EventGrid,
            ),
            (
                r#"{"specversion":"1.0","type":"x","data":{}}"#,
                Envelope::CloudEvents,
            ),
        ];
        for (text, envelope) in cases {
            let msg = read_json("e", 1, text, None).map_err(|e| e.to_string());
            assert_eq!(msg.map(|m| m.envelope), Ok(envelope), "{text}");
        }
    }

    #[test]
    fn two_spellings_of_one_property_must_agree() {
        let text = r#"{"systemProperties":{"correlation-id":"a","correlationId":"a"}}"#;
        assert!(read_json("e", 1, text, None).is_ok());
        let text = r#"{"systemProperties":{"correlation-id":"a","correlationId":"b"}}"#;
        let err = read_json("e", 1, text, None).map(|_| ()).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"e:1: field "systemProperties.correlationId": differs from systemProperties.correlation-id"#
        );
    }
}
