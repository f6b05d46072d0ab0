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
use std::io::{self, BufRead, Write};

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::lines::Lines;
use super::raw::{self, Ctx};
use super::twin::{Covers, parse_twin_body};
use super::{ReadError, ReadErrorKind};
use crate::doc::{Entity, EntityTimes};

/// What an event does.
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
    pub fn is_module_op(&self) -> bool {
        matches!(self, Op::CreateModule | Op::DeleteModule)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The twin an event carries: the whole twin of a create or replace, the
/// changed parts of an update.
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

/// One change event.
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
    /// The body's twin (none for connection events).
    pub twin: Option<EventTwin>,
    /// The body as canonical JSON (keys sorted), without any
    /// `authentication`.
    body: Option<String>,
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
    pub fn body_json(&self) -> Option<&str> {
        self.body.as_deref()
    }

    /// The twin version the event carries, 0 when none.
    pub fn version(&self) -> u64 {
        self.twin.as_ref().and_then(|t| t.version).unwrap_or(0)
    }
}

/// A streaming reader of change-event lines.
///
/// As [`ExportReader`](super::ExportReader): bounded lines, lines that do
/// not start with `{` skipped and counted, every line checked, an error
/// does not end it.
///
/// # Example
///
/// ```
/// use failback::format::{EventReader, Op};
///
/// let input = concat!(
///     r#"{"properties":{"hubName":"hub1","deviceId":"d1","opType":"updateTwin","#,
///     r#""operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"#,
///     r#""body":{"version":3,"properties":{"desired":{"fan":2,"$metadata":{"fan":{"$lastUpdated":"2024-03-01T12:00:00Z"}}}}}}"#,
/// );
/// let mut reader = EventReader::new(input.as_bytes(), "events.jsonl");
/// let event = reader.next().unwrap()?;
/// assert_eq!(event.op, Op::UpdateTwin);
/// assert_eq!(event.version(), 3);
/// assert_eq!(event.twin.unwrap().entity.desired["fan"], 2);
/// # Ok::<(), failback::format::ReadError>(())
/// ```
#[derive(Debug)]
pub struct EventReader<R> {
    lines: Lines<R>,
    file: String,
}

impl<R: BufRead> EventReader<R> {
    /// Reads `reader`, naming it `file` in errors.
    pub fn new(reader: R, file: impl Into<String>) -> Self {
        let file = file.into();
        Self {
            lines: Lines::new(reader, file.clone()),
            file,
        }
    }

    /// How many lines were skipped so far because they do not start with
    /// `{`.
    pub fn skipped(&self) -> u64 {
        self.lines.skipped()
    }
}

impl<R: BufRead> Iterator for EventReader<R> {
    type Item = Result<Event, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.lines.next_json()? {
            Ok((line, text)) => parse_event_line(&self.file, line, text),
            Err(error) => Err(error),
        })
    }
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(default)]
    properties: RawProps,
    #[serde(rename = "systemProperties", default)]
    system: RawSystem,
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
}

#[derive(Default, Deserialize)]
struct RawProps {
    #[serde(rename = "hubName", default)]
    hub: Option<String>,
    #[serde(rename = "deviceId", default)]
    device_id: Option<String>,
    #[serde(rename = "moduleId", default)]
    module_id: Option<String>,
    #[serde(rename = "operationTimestamp", default)]
    time: Option<String>,
    #[serde(rename = "opType", default)]
    op: Option<String>,
    #[serde(rename = "iothub-message-schema", default)]
    schema: Option<String>,
}

#[derive(Default, Deserialize)]
struct RawSystem {
    #[serde(rename = "correlation-id", default)]
    correlation_id: Option<String>,
    #[serde(rename = "iothub-message-source", default)]
    source: Option<String>,
}

/// Parses one event line (`text` must be one JSON object) and checks it.
///
/// # Errors
///
/// A [`ReadError`] on `file` and `line`: invalid JSON, wrong types, a
/// missing `deviceId`, `opType` or `operationTimestamp`, an unknown
/// `opType`, a module operation without `moduleId`, a body naming another
/// device, or a twin that breaks a limit (its fields named `body.<path>`).
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
    let raw: RawEvent<'_> = {
        let ctx = Ctx::default();
        raw::parse(text, std::marker::PhantomData).map_err(|e| ctx.error(file, line, &e))?
    };
    let props = raw.properties;
    let device = props.device_id.as_deref();
    let module = props.module_id.as_deref();
    let fail = |field: &str, kind| {
        ReadError::new(file, line, kind)
            .with_device(device, module)
            .with_field(field)
    };
    let connection = raw.system.source.as_deref() == Some("deviceConnectionStateEvents")
        || props.schema.as_deref() == Some("deviceConnectionStateNotification");
    let Some(op_text) = props.op.as_deref() else {
        return Err(fail("properties.opType", ReadErrorKind::MissingField));
    };
    let Some(op) = Op::parse(op_text, connection) else {
        let value = super::error::safe_value(op_text);
        return Err(fail(
            "properties.opType",
            ReadErrorKind::UnknownOpType { value },
        ));
    };
    let time = match props.time.as_deref() {
        Some(text) => {
            raw::parse_time(text).map_err(|kind| fail("properties.operationTimestamp", kind))?
        }
        None => None,
    };
    let Some(device_id) = props.device_id.clone() else {
        return Err(fail("properties.deviceId", ReadErrorKind::MissingField));
    };
    let mut event = Event {
        line,
        hub: props.hub.clone(),
        device_id,
        module_id: props.module_id.clone(),
        op,
        correlation_id: raw.system.correlation_id,
        time,
        twin: None,
        body: None,
    };
    if let Op::Connection(_) = event.op {
        return Ok(event);
    }
    if event.time.is_none() {
        return Err(fail(
            "properties.operationTimestamp",
            ReadErrorKind::MissingField,
        ));
    }
    match (&event.module_id, event.op.is_module_op()) {
        (None, true) => return Err(fail("properties.moduleId", ReadErrorKind::MissingField)),
        (Some(_), false) if matches!(event.op, Op::CreateDevice | Op::DeleteDevice) => {
            return Err(fail(
                "properties.moduleId",
                ReadErrorKind::Mismatch {
                    other: "properties.opType".to_owned(),
                },
            ));
        }
        _ => {}
    }
    let body = raw.body.map_or("{}", RawValue::get);
    let (twin, covers) = parse_twin_body(
        file,
        line,
        body,
        &event.device_id,
        event.module_id.as_deref(),
    )?;
    let Covers {
        tags,
        desired,
        reported,
    } = covers;
    // The body as canonical JSON: what the writer writes and duplicates
    // are compared by. It parsed as a twin, so it is an object; but the
    // twin reader skips what it does not use unchecked (a lone surrogate
    // in an unknown section's key, say), which must fail here, not vanish.
    let mut value: Value = serde_json::from_str(body).map_err(|e| {
        // The body is a slice of the line: its column there.
        let offset = (body.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
        let offset = if offset < text.len() { offset } else { 0 };
        let full = e.to_string();
        let message = full.rfind(" at line ").map_or(&*full, |at| &full[..at]);
        fail(
            "body",
            ReadErrorKind::InvalidJson {
                column: offset + e.column(),
                message: message.to_owned(),
            },
        )
    })?;
    if let Value::Object(map) = &mut value {
        map.remove("authentication");
    }
    event.body = Some(value.to_string());
    event.twin = Some(EventTwin {
        version: twin.version,
        etag: twin.etag,
        entity: twin.entity,
        times: twin.times,
        has_tags: tags,
        has_desired: desired,
        has_reported: reported,
    });
    Ok(event)
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
pub fn write_event_line<W: Write>(w: &mut W, event: &Event) -> io::Result<()> {
    w.write_all(&event_bytes(event))?;
    w.write_all(b"\n")
}

/// The canonical text of an event, without a line end.
pub(crate) fn event_bytes(event: &Event) -> Vec<u8> {
    use serde_json::Map;
    let mut out = Vec::with_capacity(64 + event.body.as_ref().map_or(0, String::len));
    out.extend_from_slice(b"{");
    if let Some(body) = &event.body {
        out.extend_from_slice(b"\"body\":");
        out.extend_from_slice(body.as_bytes());
        out.extend_from_slice(b",");
    }
    let mut props = Map::new();
    props.insert("deviceId".into(), Value::from(event.device_id.as_str()));
    if let Some(hub) = &event.hub {
        props.insert("hubName".into(), Value::from(hub.as_str()));
    }
    if let Some(module) = &event.module_id {
        props.insert("moduleId".into(), Value::from(module.as_str()));
    }
    props.insert("opType".into(), Value::from(event.op.as_str()));
    if let Some(time) = event.time.and_then(raw::format_time) {
        props.insert("operationTimestamp".into(), Value::from(time));
    }
    let mut system = Map::new();
    if let Some(id) = &event.correlation_id {
        system.insert("correlation-id".into(), Value::from(id.as_str()));
    }
    if let Op::Connection(_) = event.op {
        system.insert(
            "iothub-message-source".into(),
            Value::from("deviceConnectionStateEvents"),
        );
    }
    out.extend_from_slice(b"\"properties\":");
    out.extend_from_slice(Value::Object(props).to_string().as_bytes());
    out.extend_from_slice(b",\"systemProperties\":");
    out.extend_from_slice(Value::Object(system).to_string().as_bytes());
    out.extend_from_slice(b"}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
            r#"{"version":1,"authentication":{"symmetricKey":{"primaryKey":"c2VjcmV0LWtleS0x"}}}"#,
        );
        let event = parse_event_line("e", 1, &text).map_err(|e| e.to_string());
        let event = event.unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        write_event_line(&mut out, &event).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&out).contains("c2VjcmV0"));
        assert!(!format!("{event:?}").contains("c2VjcmV0"));
    }
}
