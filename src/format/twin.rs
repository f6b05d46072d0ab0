//! Twin JSON lines, as the registry query and get-twin APIs return them:
//! a streaming reader that keeps the per-node times of `$metadata`, a
//! reader of whole files grouped by device, and a writer.
//!
//! Fields the hub computes or the device reports about itself
//! (`connectionState`, `lastActivityTime`, `cloudToDeviceMessageCount`,
//! `configurations`, `authenticationType`, `x509Thumbprint`, `modelId`,
//! ...) are not identity state: they are read past unchecked, so a value
//! the merge has no use for never fails a read, and never written into an
//! import line. `deviceEtag` (the identity's etag, which guards identity
//! writes to a hub known by its twins) and `generationId` (the 2016 shape)
//! are kept beside the twin. Fields this crate does not know are dropped
//! too: a twin is no import line, and they have nowhere to go.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess};
use serde::ser::{Serialize, SerializeMap};
use serde_json::Value;

use super::group::{DeviceLine, collect};
use super::lines::{JsonlReader, ParseLine};
use super::raw::{
    self, Ctx, Fields, PropertiesSeed, RawProperties, RawSection, Record, SectionSeed,
};
use super::write::{Properties, Section};
use super::{DeviceFile, DeviceRecord, Format, ReadError, ReadErrorKind, RecordMeta};
use crate::doc::{DeviceSnapshot, DeviceTimes, Entity, EntityTimes, Extra, MetaTree, StatusValue};
use crate::validate::validate_entity;

/// One twin: a device's, or a module's of `device_id`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TwinLine {
    /// The line number in the file, from 1.
    pub line: u64,
    /// `deviceId`.
    pub device_id: String,
    /// `moduleId`, for a module twin.
    pub module_id: Option<String>,
    /// `etag`: the twin's etag.
    pub etag: Option<String>,
    /// `deviceEtag`: the etag of the device's (or module's) identity;
    /// `None` when absent or the string `"null"`.
    pub device_etag: Option<String>,
    /// `generationId`, which the 2016 twin shape carries.
    pub generation_id: Option<String>,
    /// `version`: the twin's version.
    pub version: Option<u64>,
    /// Identity fields the twin shows (status, capabilities, scopes) and
    /// the twin itself. Never authentication.
    pub entity: Entity,
    /// `statusUpdateTime` and the `$lastUpdated` of every node.
    pub times: EntityTimes,
    /// Whether a `$lastUpdated` had no zone: read as UTC, which a merge
    /// report says once per file.
    pub times_without_zone: bool,
}

/// The fields of a twin line, in the order the writer writes them.
const FIELDS: [&str; 14] = [
    "deviceId",
    "moduleId",
    "etag",
    "deviceEtag",
    "generationId",
    "version",
    "status",
    "statusReason",
    "statusUpdateTime",
    "capabilities",
    "deviceScope",
    "parentScopes",
    "tags",
    "properties",
];

/// A streaming reader of twin lines.
///
/// As [`ExportReader`](super::ExportReader): bounded lines, warning lines
/// skipped and counted, every line checked, errors do not end it.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::format::TwinReader;
///
/// let input = concat!(
///     r#"{"deviceId":"d1","etag":"AAAAAAAAAAI=","version":4,"status":"enabled","#,
///     r#""connectionState":"Disconnected","properties":{"desired":{"fan":2,"#,
///     r#""$metadata":{"$lastUpdated":"2024-03-01T12:00:00Z","fan":{"$lastUpdated":"2024-03-01T12:00:00.5Z"}},"$version":3}}}"#,
/// );
/// let mut reader = TwinReader::new(input.as_bytes(), "twins.jsonl");
/// let twin = reader.next().unwrap()?;
/// assert_eq!(twin.version, Some(4));
/// assert_eq!(twin.times.desired.time_at(&["fan"]), Some(1_709_294_400_500));
/// assert!(twin.entity.extra.is_empty());
/// # Ok::<(), failback::format::ReadError>(())
/// ```
pub type TwinReader<R> = JsonlReader<R, TwinLine>;

impl ParseLine for TwinLine {
    fn parse_line(file: &str, line: u64, text: &str) -> Result<Self, ReadError> {
        parse_twin_line(file, line, text)
    }
}

/// Parses one twin line (`text` must be one JSON object) and checks it.
///
/// # Errors
///
/// A [`ReadError`] on `file` and `line` for invalid JSON, wrong types, an
/// invalid `status`, an unparseable time, a missing `deviceId`, or a
/// broken limit.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::format::{parse_twin_line, ReadErrorKind};
///
/// let text = r#"{"deviceId":"d1","properties":{"reported":{"$metadata":{"t":{"$lastUpdated":"soon"}}}}}"#;
/// let err = parse_twin_line("twins.jsonl", 2, text).unwrap_err();
/// assert!(matches!(err.kind, ReadErrorKind::InvalidTimestamp { .. }));
/// assert_eq!(err.field.as_deref(), Some("properties.reported.$metadata.t.$lastUpdated"));
/// ```
pub fn parse_twin_line(file: &str, line: u64, text: &str) -> Result<TwinLine, ReadError> {
    let ctx = Ctx::default();
    let mut raw =
        raw::parse(text, Record::<RawTwin>::new(&ctx)).map_err(|e| ctx.error(file, line, &e))?;
    let (device, module) = (raw.device_id.clone(), raw.module_id.clone());
    let fail = |field: &str, kind| {
        ReadError::new(file, line, kind)
            .with_device(device.as_deref(), module.as_deref())
            .with_field(field)
    };
    let Some(device_id) = raw.device_id.take() else {
        let kind = if raw.saw_id {
            ReadErrorKind::FormatMismatch {
                expected: Format::Twin,
                found: Format::Export,
            }
        } else {
            ReadErrorKind::MissingField
        };
        return Err(fail("deviceId", kind));
    };
    let twin = convert(raw, device_id).map_err(|(field, kind)| fail(&field, kind))?;
    validate_entity(&twin.device_id, twin.module_id.as_deref(), &twin.entity)
        .map_err(|e| ReadError::invalid(file, line, e))?;
    Ok(TwinLine { line, ..twin })
}

/// Which sections of a twin a body gives: a patch or a replace covers
/// only those.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Covers {
    /// `tags` is given.
    pub(crate) tags: bool,
    /// `properties.desired` is given.
    pub(crate) desired: bool,
    /// `properties.reported` is given.
    pub(crate) reported: bool,
}

/// Parses the twin `body` of a change event for `device` (and `module`):
/// `deviceId` and `moduleId` may be absent, and must name the same entity
/// when given. Errors name the body's fields as `body.<path>`.
///
/// The body comes already parsed as a JSON value: a change event's body
/// is parsed once, for its canonical text and its twin both.
pub(crate) fn twin_body_of_value(
    file: &str,
    line: u64,
    body: &Value,
    device: &str,
    module: Option<&str>,
) -> Result<(TwinLine, Covers), ReadError> {
    twin_body(file, line, device, module, |ctx| {
        Record::<RawTwin>::new(ctx).deserialize(body)
    })
}

/// As [`twin_body_of_value`], taking the parsed body by move: its
/// sections become the twin's without a copy. `text` is the body's text,
/// read again the checked way when the value holds what the twin reader
/// refuses, for the same error; without it, that is an error of its own
/// (the caller has the text and reads it the checked way).
pub(crate) fn twin_body_of_owned(
    file: &str,
    line: u64,
    body: Value,
    text: Option<&str>,
    device: &str,
    module: Option<&str>,
) -> Result<(TwinLine, Covers), ReadError> {
    match RawTwin::of_value(body) {
        Some(raw) => twin_body(file, line, device, module, |_| Ok(raw)),
        None => {
            let Some(text) = text else {
                // Never shown: the caller reads the text again.
                let kind = ReadErrorKind::InvalidJson {
                    column: 0,
                    message: "a body to read again as text".to_owned(),
                };
                return Err(ReadError::new(file, line, kind).with_field("body"));
            };
            let value = raw::parse_unique_keys(text).unwrap_or(Value::Null);
            twin_body_of_value(file, line, &value, device, module)
        }
    }
}

/// The version of the twin `body` gives `device` (and `module`), where
/// [`twin_body_of_owned`] reads it without an error: the same checks
/// (field types, ids, `status`, every `$metadata` time, every limit),
/// but nothing built, for a reader that keeps only the version (a
/// replica holds an event by its text, and reads its twin again when it
/// replays it). `None` where it would fail, or where this check does not
/// follow it (a `deviceId` of `null`, say): the caller then reads the
/// twin in full, for its error or its twin. It never answers where the
/// full reading fails, nor with another version (the suite's property
/// `events::a_held_event_is_the_event_read_in_full` and the `parse_events`
/// fuzz target compare the two).
pub(crate) fn held_body_version(
    body: &Value,
    device: &str,
    module: Option<&str>,
) -> Option<Option<u64>> {
    use crate::validate::{validate_id, validate_section_entries, validate_status_reason};
    fn text(value: &Value) -> Option<Option<&str>> {
        match value {
            Value::Null => Some(None),
            Value::String(text) => Some(Some(text)),
            _ => None,
        }
    }
    /// The section as `raw::section_of_value` reads it and validation
    /// checks it.
    fn section(value: &Value, section: crate::doc::Section) -> Option<()> {
        let tags = section == crate::doc::Section::Tags;
        let map = match value {
            Value::Null => return Some(()),
            Value::Object(map) => map,
            _ => return None,
        };
        if !tags {
            if let Some(meta) = map.get("$metadata") {
                meta_times(meta)?;
            }
        }
        let properties = map.iter().filter(move |(key, _)| {
            !(*key == "$version" || (*key == "$metadata") || (tags && *key == "$etag"))
        });
        validate_section_entries(section, properties).ok()
    }
    /// Every `$lastUpdated` of `meta` read as `raw::meta_of_value` reads
    /// it.
    fn meta_times(meta: &Value) -> Option<()> {
        let Value::Object(map) = meta else {
            return Some(());
        };
        for (key, value) in map {
            if key == "$lastUpdated" {
                match value {
                    Value::Null => {}
                    Value::String(text) => {
                        raw::parse_time_zone(text).ok()?;
                    }
                    _ => return None,
                }
            } else if !key.starts_with('$') {
                meta_times(value)?;
            }
        }
        Some(())
    }
    let Value::Object(map) = body else {
        return None;
    };
    validate_id(device).ok()?;
    if let Some(module) = module {
        validate_id(module).ok()?;
    }
    let (mut version, mut status, mut reason) = (None, None, None);
    for (key, value) in map {
        match key.as_str() {
            "deviceId" if text(value)?? != device => return None,
            "moduleId" => {
                if let Some(id) = text(value)? {
                    if Some(id) != module {
                        return None;
                    }
                }
            }
            "etag" | "deviceEtag" | "generationId" | "statusUpdateTime" | "deviceScope" => {
                text(value)?;
            }
            "status" => status = text(value)?,
            "statusReason" => reason = text(value)?,
            "version" => {
                version = match value {
                    Value::Null => None,
                    Value::Number(n) => Some(n.as_u64()?),
                    _ => return None,
                }
            }
            "tags" => section(value, crate::doc::Section::Tags)?,
            "properties" => {
                let map = match value {
                    Value::Null => continue,
                    Value::Object(map) => map,
                    _ => return None,
                };
                for (key, value) in map {
                    match key.as_str() {
                        "desired" => section(value, crate::doc::Section::Desired)?,
                        "reported" => section(value, crate::doc::Section::Reported)?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    match (status, reason) {
        (Some(status), reason) => {
            raw::status(status).ok()?;
            if let Some(reason) = reason {
                validate_status_reason(reason).ok()?;
            }
        }
        (None, Some(reason)) if !reason.is_empty() => return None,
        (None, _) => {}
    }
    Some(version)
}

fn twin_body(
    file: &str,
    line: u64,
    device: &str,
    module: Option<&str>,
    parse: impl FnOnce(&Ctx) -> Result<RawTwin, serde_json::Error>,
) -> Result<(TwinLine, Covers), ReadError> {
    let ctx = Ctx::default();
    *ctx.device.borrow_mut() = Some(device.to_owned());
    ctx.module
        .borrow_mut()
        .clone_from(&module.map(str::to_owned));
    let in_body = |mut e: ReadError| {
        e.field = e.field.map(|f| format!("body.{f}"));
        e.with_device(Some(device), module)
    };
    let raw = parse(&ctx).map_err(|e| in_body(ctx.error(file, line, &e)))?;
    let fail = |field: &str, kind| in_body(ReadError::new(file, line, kind).with_field(field));
    if raw.device_id.as_deref().is_some_and(|d| d != device) {
        return Err(fail(
            "deviceId",
            ReadErrorKind::Mismatch {
                other: "properties.deviceId".to_owned(),
            },
        ));
    }
    if raw.module_id.is_some() && raw.module_id.as_deref() != module {
        return Err(fail(
            "moduleId",
            ReadErrorKind::Mismatch {
                other: "properties.moduleId".to_owned(),
            },
        ));
    }
    let covers = Covers {
        tags: raw.tags.present,
        desired: raw.properties.desired.present,
        reported: raw.properties.reported.present,
    };
    let mut twin = convert(raw, device.to_owned()).map_err(|(field, kind)| fail(&field, kind))?;
    twin.module_id = module.map(str::to_owned);
    // A twin carries no keys: a body's stray `authentication` is dropped
    // rather than kept in clear among the unknown fields.
    twin.entity.extra.remove("authentication");
    validate_entity(device, module, &twin.entity)
        .map_err(|e| in_body(ReadError::invalid(file, line, e)))?;
    // Its `line` stays 0: the event that carried it has the line.
    Ok((twin, covers))
}

/// A twin line as read, before its values are checked.
#[derive(Default)]
struct RawTwin {
    device_id: Option<String>,
    module_id: Option<String>,
    etag: Option<String>,
    device_etag: Option<String>,
    generation_id: Option<String>,
    version: Option<u64>,
    status: Option<String>,
    status_reason: Option<String>,
    status_update_time: Option<String>,
    capabilities: Option<Value>,
    device_scope: Option<String>,
    parent_scopes: Option<Value>,
    tags: RawSection,
    properties: RawProperties,
    saw_id: bool,
    /// Whether a `$lastUpdated` already read into a tree had no zone.
    zoneless: bool,
}

impl RawTwin {
    /// A twin read from a parsed JSON value, by move, as [`Record`]
    /// reads it; `None` where that would fail (a field of another type,
    /// a bad time in `$metadata`), for the caller to read it that way and
    /// get its error.
    fn of_value(value: Value) -> Option<RawTwin> {
        fn text(value: Value) -> Option<Option<String>> {
            match value {
                Value::Null => Some(None),
                Value::String(text) => Some(Some(text)),
                _ => None,
            }
        }
        let Value::Object(map) = value else {
            return None;
        };
        let mut raw = RawTwin::default();
        for (key, value) in map {
            match key.as_str() {
                "deviceId" => raw.device_id = Some(text(value)??),
                "moduleId" => raw.module_id = text(value)?,
                "etag" => raw.etag = text(value)?,
                "deviceEtag" => raw.device_etag = text(value)?,
                "generationId" => raw.generation_id = text(value)?,
                "version" => {
                    raw.version = match value {
                        Value::Null => None,
                        Value::Number(n) => Some(n.as_u64()?),
                        _ => return None,
                    }
                }
                "status" => raw.status = text(value)?,
                "statusReason" => raw.status_reason = text(value)?,
                "statusUpdateTime" => raw.status_update_time = text(value)?,
                "capabilities" => raw.capabilities = Some(value).filter(|v| !v.is_null()),
                "deviceScope" => raw.device_scope = text(value)?,
                "parentScopes" => raw.parent_scopes = Some(value).filter(|v| !v.is_null()),
                "tags" => raw.tags = raw::section_of_value(value, true, &mut raw.zoneless)?,
                "properties" => {
                    let map = match value {
                        Value::Null => continue,
                        Value::Object(map) => map,
                        _ => return None,
                    };
                    for (key, value) in map {
                        let slot = match key.as_str() {
                            "desired" => &mut raw.properties.desired,
                            "reported" => &mut raw.properties.reported,
                            _ => continue,
                        };
                        *slot = raw::section_of_value(value, false, &mut raw.zoneless)?;
                    }
                }
                "id" => raw.saw_id = true,
                _ => {}
            }
        }
        Some(raw)
    }
}

fn convert(mut raw: RawTwin, device_id: String) -> Result<TwinLine, (String, ReadErrorKind)> {
    let status = match raw.status.as_deref() {
        Some(status) => Some(StatusValue {
            status: raw::status(status)?,
            reason: raw.status_reason,
        }),
        None if raw.status_reason.as_deref().is_some_and(|r| !r.is_empty()) => {
            return Err(("status".to_owned(), ReadErrorKind::MissingField));
        }
        None => None,
    };
    // A runtime field: a value that is no time (doc samples hold
    // `2015-02-30`) is no time, not a bad twin.
    let status_time = raw
        .status_update_time
        .as_deref()
        .and_then(|text| raw::parse_time(text).ok().flatten());
    let mut zoneless = raw.zoneless;
    let mut meta =
        |section: &mut RawSection, path: &str| match (section.tree.take(), section.meta.take()) {
            (Some(tree), _) => Ok(tree),
            (None, Some(meta)) => meta.into_tree(path, &mut zoneless),
            (None, None) => Ok(MetaTree::default()),
        };
    let desired_meta = meta(&mut raw.properties.desired, "properties.desired.$metadata")?;
    let reported_meta = meta(
        &mut raw.properties.reported,
        "properties.reported.$metadata",
    )?;
    Ok(TwinLine {
        line: 0,
        device_id,
        module_id: raw.module_id,
        etag: raw.etag,
        // Event Grid writes `"deviceEtag": "null"` for "none".
        device_etag: raw
            .device_etag
            .map(super::export::unquote)
            .filter(|e| e != "null" && !e.is_empty()),
        generation_id: raw.generation_id,
        version: raw.version,
        entity: Entity {
            status,
            authentication: None,
            capabilities: raw.capabilities,
            device_scope: raw.device_scope,
            parent_scopes: raw.parent_scopes,
            extra: Extra::new(),
            tags: raw.tags.section,
            desired: raw.properties.desired.section,
            reported: raw.properties.reported.section,
        },
        times: EntityTimes {
            status: status_time,
            desired: desired_meta,
            reported: reported_meta,
        },
        times_without_zone: zoneless,
    })
}

impl<'de> Fields<'de> for RawTwin {
    const NAMES: &'static [&'static str] = &FIELDS;

    fn field<A: MapAccess<'de>>(
        &mut self,
        ctx: &Ctx,
        name: &'static str,
        seen: &mut bool,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match name {
            "deviceId" => self.device_id = ctx.device_id(map, name, seen)?,
            "moduleId" => self.module_id = ctx.module_id(map, name, seen)?,
            "etag" => self.etag = ctx.value(map, name, seen)?,
            "deviceEtag" => self.device_etag = ctx.value(map, name, seen)?,
            "generationId" => self.generation_id = ctx.value(map, name, seen)?,
            "version" => self.version = ctx.value(map, name, seen)?,
            "status" => self.status = ctx.value(map, name, seen)?,
            "statusReason" => self.status_reason = ctx.value(map, name, seen)?,
            "statusUpdateTime" => self.status_update_time = ctx.value(map, name, seen)?,
            "capabilities" => self.capabilities = ctx.value(map, name, seen)?,
            "deviceScope" => self.device_scope = ctx.value(map, name, seen)?,
            "parentScopes" => self.parent_scopes = ctx.value(map, name, seen)?,
            "tags" => {
                let seed = SectionSeed {
                    ctx,
                    path: "tags",
                    metadata: false,
                };
                self.tags = ctx.value_seed(map, name, seen, seed)?;
            }
            _ => {
                let seed = PropertiesSeed {
                    ctx,
                    metadata: true,
                };
                self.properties = ctx.value_seed(map, name, seen, seed)?;
            }
        }
        Ok(())
    }

    /// Every other field (what the service computes or reports) is
    /// skipped.
    fn other<A: MapAccess<'de>>(
        &mut self,
        _: &Ctx,
        key: Cow<'de, str>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        self.saw_id |= key == "id";
        map.next_value::<IgnoredAny>()?;
        Ok(())
    }
}

/// Reads a whole twin file and groups module twins under their device.
///
/// # Errors
///
/// As [`read_export`](super::read_export): the first bad line, a device or
/// module twice (naming both lines), a module twin without its device's.
///
/// # Example
///
/// ```no_run
/// let twins = failback::format::read_twins("twins.jsonl")?;
/// println!("{} devices", twins.devices.len());
/// # Ok::<(), failback::format::ReadError>(())
/// ```
pub fn read_twins(path: impl AsRef<Path>) -> Result<DeviceFile, ReadError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| ReadError::io(name.clone(), e))?;
    collect_twins(TwinReader::new(BufReader::new(file), name))
}

/// Groups the lines of `reader` as [`read_twins`] does.
///
/// # Errors
///
/// As [`read_twins`].
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::format::{collect_twins, TwinReader};
///
/// let input = concat!(
///     r#"{"deviceId":"d1","moduleId":"m1","version":2}"#, "\n",
///     r#"{"deviceId":"d1","version":7,"status":"enabled"}"#, "\n",
/// );
/// let file = collect_twins(TwinReader::new(input.as_bytes(), "twins.jsonl"))?;
/// assert_eq!(file.devices["d1"].modules["m1"].line, 1);
/// assert_eq!(file.devices["d1"].meta.version, Some(7));
/// # Ok::<(), failback::format::ReadError>(())
/// ```
pub fn collect_twins<R: BufRead>(reader: TwinReader<R>) -> Result<DeviceFile, ReadError> {
    collect(reader, twin_device)
}

/// A device from its twin and its modules' twins, grouped. A twin's
/// `deviceEtag` is its identity's etag: what guards an identity write to a
/// hub known by its twins.
pub(crate) fn twin_device(
    id: String,
    mut device: TwinLine,
    modules: BTreeMap<String, TwinLine>,
) -> DeviceRecord {
    fn meta(twin: &mut TwinLine) -> RecordMeta {
        RecordMeta {
            etag: twin.device_etag.take(),
            twin_etag: twin.etag.take(),
            generation_id: twin.generation_id.take(),
            version: twin.version,
            times_without_zone: twin.times_without_zone,
            line: twin.line,
        }
    }
    let mut metas = BTreeMap::new();
    let mut entities = BTreeMap::new();
    let mut times = DeviceTimes::default();
    for (module, mut twin) in modules {
        metas.insert(module.clone(), meta(&mut twin));
        times.modules.insert(module.clone(), twin.times);
        entities.insert(module, twin.entity);
    }
    let own = meta(&mut device);
    times.device = device.times;
    DeviceRecord {
        snapshot: DeviceSnapshot {
            id,
            device: device.entity,
            modules: entities,
        },
        meta: own,
        modules: metas,
        times: Some(times),
    }
}

impl DeviceLine for TwinLine {
    fn line(&self) -> u64 {
        self.line
    }
    fn device_id(&self) -> &str {
        &self.device_id
    }
    fn module_id(&self) -> Option<&str> {
        self.module_id.as_deref()
    }
}

/// Writes one twin line, ending in `\n`, for fixtures and tests.
///
/// Fields in order: `deviceId`, `moduleId`, `etag`, `deviceEtag`,
/// `generationId`, `version`, `status`, `statusReason`, `statusUpdateTime`,
/// `capabilities`, `deviceScope`, `parentScopes`, `tags`, `properties` with
/// each section's `$metadata` (times in milliseconds, UTC). A twin has no
/// keys: `authentication` is not written, nor are fields the reader
/// dropped.
///
/// # Errors
///
/// Any error of `w`.
///
/// # Example
///
/// ```
/// use failback::format::{parse_twin_line, write_twin_line, TwinLine};
///
/// let mut twin = TwinLine { line: 1, device_id: "d1".into(), version: Some(3), ..Default::default() };
/// twin.entity.reported.insert("temp".into(), 21.5.into());
/// twin.times.reported.children.entry("temp".into()).or_default().last_updated = Some(1_709_294_400_000);
/// let mut out = Vec::new();
/// write_twin_line(&mut out, &twin)?;
/// let text = String::from_utf8(out).unwrap();
/// assert!(text.contains(r#""$metadata":{"temp":{"$lastUpdated":"2024-03-01T12:00:00.000Z"}}"#));
/// assert_eq!(parse_twin_line("t", 1, text.trim()).unwrap(), twin);
/// # Ok::<(), std::io::Error>(())
/// ```
#[cfg(feature = "internals")]
pub fn write_twin_line<W: Write>(w: &mut W, twin: &TwinLine) -> io::Result<()> {
    let meta = RecordMeta {
        etag: twin.device_etag.clone(),
        twin_etag: twin.etag.clone(),
        generation_id: twin.generation_id.clone(),
        version: twin.version,
        times_without_zone: twin.times_without_zone,
        line: twin.line,
    };
    write_twin(
        w,
        &TwinRef {
            device_id: &twin.device_id,
            module_id: twin.module_id.as_deref(),
            meta: &meta,
            times: &twin.times,
            entity: &twin.entity,
        },
    )
}

/// Writes a device twin then its module twins sorted by `moduleId`.
///
/// # Errors
///
/// Any error of `w`.
///
/// # Example
///
/// ```
/// use failback::format::{parse_input, write_twin_device, DeviceRecord, InputFile};
///
/// let mut device = DeviceRecord::default();
/// device.snapshot.id = "edge-1".into();
/// device.snapshot.modules.insert("$edgeAgent".into(), Default::default());
/// let mut out = Vec::new();
/// write_twin_device(&mut out, &device)?;
/// assert_eq!(String::from_utf8(out.clone())?.lines().count(), 2);
/// let InputFile::Twin(file) = parse_input("twins.jsonl", &out, None)? else {
///     panic!("a twin file");
/// };
/// assert_eq!(file.devices["edge-1"].snapshot, device.snapshot);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_twin_device<W: Write>(w: &mut W, device: &DeviceRecord) -> io::Result<()> {
    twins(device).try_for_each(|twin| write_twin(w, &twin))
}

/// Writes the twin of one device or module (`module_id`) as the registry
/// query gives it, ending in `\n`: `etag` the twin's, `deviceEtag` the
/// identity's, no keys, no `$metadata` (no per-leaf time is known here).
///
/// # Errors
///
/// Any error of `w`.
#[cfg(feature = "drill")]
pub(crate) fn write_twin_record<W: Write>(
    w: &mut W,
    device_id: &str,
    module_id: Option<&str>,
    etag: &str,
    device_etag: &str,
    entity: &Entity,
) -> io::Result<()> {
    let meta = RecordMeta {
        etag: Some(device_etag.to_owned()),
        twin_etag: Some(etag.to_owned()),
        ..RecordMeta::default()
    };
    write_twin(
        w,
        &TwinRef {
            device_id,
            module_id,
            meta: &meta,
            times: &NO_TIMES,
            entity,
        },
    )
}

fn write_twin<W: Write>(w: &mut W, twin: &TwinRef<'_>) -> io::Result<()> {
    serde_json::to_writer(&mut *w, twin)?;
    w.write_all(b"\n")
}

/// One twin, borrowed, as the registry query gives it: what the writers
/// write and [`DeviceRecord`]'s `Serialize` gives. `etag` is the twin's,
/// `deviceEtag` the identity's; no keys.
pub(crate) struct TwinRef<'a> {
    pub(crate) device_id: &'a str,
    pub(crate) module_id: Option<&'a str>,
    pub(crate) meta: &'a RecordMeta,
    pub(crate) times: &'a EntityTimes,
    pub(crate) entity: &'a Entity,
}

/// The times of a twin the record has none for.
static NO_TIMES: EntityTimes = EntityTimes {
    status: None,
    desired: MetaTree {
        last_updated: None,
        children: BTreeMap::new(),
    },
    reported: MetaTree {
        last_updated: None,
        children: BTreeMap::new(),
    },
};
/// What a file said of a module the record has no entry for.
static NO_META: RecordMeta = RecordMeta {
    etag: None,
    twin_etag: None,
    generation_id: None,
    version: None,
    times_without_zone: false,
    line: 0,
};

/// The twins of a device: its own, then its modules' sorted by `moduleId`.
pub(crate) fn twins(device: &DeviceRecord) -> impl Iterator<Item = TwinRef<'_>> {
    let id = device.snapshot.id.as_str();
    let times = device.times.as_ref();
    let own = TwinRef {
        device_id: id,
        module_id: None,
        meta: &device.meta,
        times: times.map_or(&NO_TIMES, |t| &t.device),
        entity: &device.snapshot.device,
    };
    let modules = device
        .snapshot
        .modules
        .iter()
        .map(move |(module, entity)| TwinRef {
            device_id: id,
            module_id: Some(module),
            meta: device.modules.get(module).unwrap_or(&NO_META),
            times: times
                .and_then(|t| t.modules.get(module))
                .unwrap_or(&NO_TIMES),
            entity,
        });
    std::iter::once(own).chain(modules)
}

impl TwinRef<'_> {
    /// Writes the twin's fields into `map`, in the order the registry
    /// query gives them.
    pub(crate) fn fields<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        let (meta, entity) = (self.meta, self.entity);
        map.serialize_entry("deviceId", self.device_id)?;
        if let Some(module) = self.module_id {
            map.serialize_entry("moduleId", module)?;
        }
        opt(map, "etag", meta.twin_etag.as_deref())?;
        opt(map, "deviceEtag", meta.etag.as_deref())?;
        opt(map, "generationId", meta.generation_id.as_deref())?;
        opt(map, "version", meta.version)?;
        if let Some(status) = &entity.status {
            map.serialize_entry("status", &status.status)?;
            opt(map, "statusReason", status.reason.as_deref())?;
        }
        opt(
            map,
            "statusUpdateTime",
            self.times.status.and_then(raw::format_time),
        )?;
        opt(map, "capabilities", entity.capabilities.as_ref())?;
        opt(map, "deviceScope", entity.device_scope.as_deref())?;
        opt(map, "parentScopes", entity.parent_scopes.as_ref())?;
        map.serialize_entry("tags", &entity.tags)?;
        map.serialize_entry(
            "properties",
            &Properties {
                desired: Section {
                    map: &entity.desired,
                    meta: Some(&self.times.desired),
                },
                reported: Section {
                    map: &entity.reported,
                    meta: Some(&self.times.reported),
                },
            },
        )
    }
}

fn opt<M: SerializeMap, T: Serialize>(
    map: &mut M,
    key: &str,
    value: Option<T>,
) -> Result<(), M::Error> {
    match value {
        Some(value) => map.serialize_entry(key, &value),
        None => Ok(()),
    }
}

impl Serialize for TwinRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        self.fields(&mut map)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bodies hubs write take the check, not the full reading: a
    /// replica's ingest builds no twin for them. What the check refuses
    /// (or does not follow) goes to the full reading, which the suite's
    /// `ingest::a_held_event_is_the_event_read_in_full` compares.
    #[test]
    fn the_bodies_hubs_write_are_held_without_a_twin_built() {
        let at = "2024-03-01T12:00:00.1234567Z";
        let bodies = [
            json(&format!(
                r#"{{"deviceId":"d1","etag":"AAAAAAAAAAE=","deviceEtag":"MTIz","version":7,"status":"enabled","statusReason":null,"statusUpdateTime":"0001-01-01T00:00:00Z","connectionState":"Disconnected","capabilities":{{"iotEdge":false}},"tags":{{"site":{{"floor":3}},"$etag":"x"}},"properties":{{"desired":{{"fan":2,"$metadata":{{"$lastUpdated":"{at}","fan":{{"$lastUpdated":"{at}","$lastUpdatedVersion":6}}}},"$version":6}},"reported":{{"$metadata":{{"$lastUpdated":"{at}"}},"$version":1}}}}}}"#
            )),
            json(r#"{"version":3,"properties":{"reported":{"temp":21.5,"list":[1,{"a":null}]}}}"#),
            json(r#"{"moduleId":"m1","version":2,"tags":null}"#),
            // `null`s where the reader takes them, and an empty reason
            // without a status.
            json(r#"{"version":null,"statusReason":"","properties":null}"#),
            json(
                r#"{"properties":{"desired":{"x":1,"$metadata":{"$lastUpdated":null,"x":{"$lastUpdated":null}}}}}"#,
            ),
        ];
        for (body, module) in bodies.iter().zip([None, None, Some("m1"), None, None]) {
            let held = held_body_version(body, "d1", module);
            let full = twin_body_of_owned("e", 1, body.clone(), None, "d1", module)
                .map(|(twin, _)| twin.version);
            assert_eq!(held, full.ok(), "{body}");
            assert!(held.is_some(), "{body}");
        }
        // A status no hub writes, a key no hub takes, a time that is no
        // time: the check leaves each to the full reading, which refuses
        // it.
        for body in [
            json(r#"{"status":"paused"}"#),
            json(r#"{"tags":{"a.b":1}}"#),
            json(r#"{"properties":{"desired":{"$metadata":{"$lastUpdated":"soon"}}}}"#),
            json(r#"{"deviceId":"d2"}"#),
            json(r#"{"statusReason":"why"}"#),
        ] {
            assert_eq!(held_body_version(&body, "d1", None), None, "{body}");
            assert!(twin_body_of_owned("e", 1, body.clone(), None, "d1", None).is_err());
        }
    }

    /// A body read from its value by the line reader's seeds (the path
    /// taken when the owned reading gives up) gives the twin and the
    /// sections covered the owned reading gives.
    #[test]
    fn a_body_read_by_either_path_covers_the_same_sections() {
        let cases = [
            (
                r#"{"version":2,"tags":{"site":"lyon"}}"#,
                (true, false, false),
            ),
            (r#"{"version":2,"tags":null}"#, (true, false, false)),
            (
                r#"{"version":3,"properties":{"desired":{"fan":1},"reported":null}}"#,
                (false, true, true),
            ),
            (r#"{"version":4,"properties":{}}"#, (false, false, false)),
            (r#"{"version":5}"#, (false, false, false)),
        ];
        for (text, (tags, desired, reported)) in cases {
            let body = json(text);
            let by_value = twin_body_of_value("e", 1, &body, "d1", None);
            let owned = twin_body_of_owned("e", 1, body, None, "d1", None);
            let (Ok((twin, covers)), Ok((owned_twin, owned_covers))) = (by_value, owned) else {
                panic!("{text}: both read");
            };
            let expected = Covers {
                tags,
                desired,
                reported,
            };
            assert_eq!(covers, expected, "{text}");
            assert_eq!(owned_covers, expected, "{text}");
            assert_eq!(twin.entity, owned_twin.entity, "{text}");
        }
    }

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_default()
    }

    #[test]
    fn runtime_fields_are_dropped_and_the_device_etag_kept() {
        let text = r#"{"deviceId":"d1","etag":"AAAAAAAAAAE=","deviceEtag":"MTIz","version":2,"status":"enabled","statusUpdateTime":"0001-01-01T00:00:00Z","connectionState":"Connected","lastActivityTime":"2024-03-01T12:00:00Z","cloudToDeviceMessageCount":0,"authenticationType":"sas","x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"modelId":"dtmi:com:example:Thermostat;1","configurations":{},"tags":{}}"#;
        let twin = parse_twin_line("t", 1, text).map_err(|e| e.to_string());
        let twin = twin.unwrap_or_default();
        assert_eq!(twin.etag.as_deref(), Some("AAAAAAAAAAE="));
        assert_eq!(twin.device_etag.as_deref(), Some("MTIz"));
        assert_eq!(twin.times.status, None);
        // `modelId` is the device's to report: never an identity field.
        assert!(twin.entity.extra.is_empty());
    }

    #[test]
    fn a_runtime_time_that_is_no_time_is_no_error() {
        for time in [
            "2024-13-01T00:00:00Z",
            "2015-02-30T00:00:00",
            "current_time",
        ] {
            let text = format!(
                r#"{{"deviceId":"d1","statusUpdateTime":"{time}","lastActivityTime":"{time}","connectionStateUpdatedTime":7}}"#
            );
            let twin = parse_twin_line("t", 4, &text).map_err(|e| e.to_string());
            assert_eq!(twin.map(|t| t.times.status), Ok(None), "{time}");
        }
        let twin = parse_twin_line(
            "t",
            4,
            r#"{"deviceId":"d1","statusUpdateTime":"2018-05-30T07:13:01.2055269"}"#,
        );
        assert_eq!(
            twin.ok().and_then(|t| t.times.status),
            Some(1_527_664_381_205)
        );
    }

    #[test]
    fn a_device_etag_of_null_text_is_none_and_the_2016_shape_reads() {
        let text = r#"{"deviceId":"d1","generationId":"636000000000000000","deviceEtag":"null","status":"Disabled","properties":{"desired":{"a":1,"$version":2},"reported":{"$version":1}}}"#;
        let twin = parse_twin_line("t", 1, text).unwrap_or_default();
        assert_eq!(twin.device_etag, None);
        assert_eq!(twin.generation_id.as_deref(), Some("636000000000000000"));
        assert_eq!(
            twin.entity.status.map(|s| s.status),
            Some(crate::doc::Status::Disabled)
        );
        assert_eq!(twin.entity.desired.len(), 1);
    }
    #[test]
    fn a_line_that_is_not_an_object_is_a_wrong_type() {
        let err = parse_twin_line("t", 2, "\"d1\"")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("t:2: expected an object, found a string")
        );
    }

    #[test]
    fn the_reader_counts_skipped_lines_and_locates_each_line() {
        let input = "Warning\n{\"deviceId\":\"d1\"}\n\n {\"deviceId\":\"d2\",\"moduleId\":\"m\"}\n";
        let mut reader = TwinReader::new(input.as_bytes(), "t");
        let mut seen = Vec::new();
        while let Some(line) = reader.next() {
            let line = line.unwrap_or_else(|e| panic!("{e}"));
            let (offset, len) = reader.span();
            let at = usize::try_from(offset).unwrap_or(usize::MAX);
            let text = input.get(at..at + len).unwrap_or_default();
            seen.push((line.line, line.device_id, text.to_owned(), reader.skipped()));
        }
        assert_eq!(
            seen,
            vec![
                (2, "d1".to_owned(), r#"{"deviceId":"d1"}"#.to_owned(), 1),
                (
                    4,
                    "d2".to_owned(),
                    r#"{"deviceId":"d2","moduleId":"m"}"#.to_owned(),
                    2
                ),
            ]
        );
    }
    #[test]
    fn a_status_reason_needs_a_status() {
        let status_of = |text: &str| {
            parse_twin_line("t", 1, text)
                .map(|l| l.entity.status.map(|s| (s.status, s.reason)))
                .map_err(|e| (e.kind.to_string(), e.field))
        };
        assert_eq!(status_of(r#"{"deviceId":"d"}"#), Ok(None));
        assert_eq!(
            status_of(r#"{"deviceId":"d","statusReason":"stolen"}"#),
            Err(("missing field".to_owned(), Some("status".to_owned())))
        );
        assert_eq!(status_of(r#"{"deviceId":"d","statusReason":""}"#), Ok(None));
        assert_eq!(
            status_of(r#"{"deviceId":"d","status":"disabled","statusReason":"stolen"}"#),
            Ok(Some((
                crate::doc::Status::Disabled,
                Some("stolen".to_owned())
            )))
        );
    }
    #[test]
    fn metadata_nodes_that_are_not_objects_are_no_metadata() {
        let text = concat!(
            r#"{"deviceId":"d","properties":{"desired":{"a":{"b":1},"$metadata":{"#,
            r#""$lastUpdated":"2024-03-01T12:00:00Z","$lastUpdatedVersion":3,"#,
            r#""a":{"$lastUpdated":"2024-03-01T12:00:01Z","b":[1,{"c":2}],"x":true,"y":7,"z":-1,"w":1.5,"v":"s","u":null}}}}}"#
        );
        let twin = parse_twin_line("t", 1, text).unwrap_or_else(|e| panic!("{e}"));
        let meta = &twin.times.desired;
        assert_eq!(meta.last_updated, Some(1_709_294_400_000));
        let a = meta.children.get("a");
        assert_eq!(a.and_then(|a| a.last_updated), Some(1_709_294_401_000));
        // Each non-object node reads as a node with no time and no children.
        let children = a.map(|a| a.children.clone()).unwrap_or_default();
        assert_eq!(
            children.keys().map(String::as_str).collect::<Vec<_>>(),
            ["b", "u", "v", "w", "x", "y", "z"]
        );
        assert!(
            children
                .values()
                .all(|c| *c == crate::doc::MetaTree::default())
        );
        assert_eq!(meta.time_at(&["a", "b"]), Some(1_709_294_401_000));
    }
    #[test]
    fn an_export_line_in_a_twin_file_says_so() {
        let err = parse_twin_line("t", 3, r#"{"id":"d1","status":"enabled"}"#).err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some(r#"t:3: field "deviceId": line is in export format, the file is read as twin"#)
        );
        let err = parse_twin_line("t", 3, r#"{"moduleId":"m"}"#).err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some(r#"t:3: module "m" field "deviceId": missing field"#)
        );
    }
    #[test]
    fn every_identity_field_of_a_twin_is_read_into_its_place() {
        let text = concat!(
            r#"{"deviceId":"d","moduleId":"m","etag":"AAE=","version":9,"status":"disabled","#,
            r#""statusReason":"lost","statusUpdateTime":"2024-03-01T12:00:00Z","#,
            r#""capabilities":{"iotEdge":true},"deviceScope":"ms-azure-iot-edge://e-1","#,
            r#""parentScopes":["ms-azure-iot-edge://p-1"],"tags":{"site":"lyon"},"#,
            r#""properties":{"desired":{"d":1},"reported":{"r":2}}}"#
        );
        let twin = parse_twin_line("t", 5, text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(twin.line, 5);
        assert_eq!(
            (twin.device_id.as_str(), twin.module_id.as_deref()),
            ("d", Some("m"))
        );
        assert_eq!(
            (twin.etag.as_deref(), twin.version),
            (Some("AAE="), Some(9))
        );
        assert_eq!(twin.times.status, Some(1_709_294_400_000));
        let e = &twin.entity;
        assert_eq!(
            e.status.as_ref().map(|s| (s.status, s.reason.as_deref())),
            Some((crate::doc::Status::Disabled, Some("lost")))
        );
        assert_eq!(e.capabilities, Some(serde_json::json!({"iotEdge": true})));
        assert_eq!(e.device_scope.as_deref(), Some("ms-azure-iot-edge://e-1"));
        assert_eq!(
            e.parent_scopes,
            Some(serde_json::json!(["ms-azure-iot-edge://p-1"]))
        );
        let map = |m: &crate::doc::JsonMap| serde_json::to_value(m).ok();
        assert_eq!(map(&e.tags), Some(serde_json::json!({"site": "lyon"})));
        assert_eq!(map(&e.desired), Some(serde_json::json!({"d": 1})));
        assert_eq!(map(&e.reported), Some(serde_json::json!({"r": 2})));
        assert!(e.extra.is_empty() && e.authentication.is_none());
    }
    #[test]
    fn the_twin_writer_writes_its_fields_in_order_and_drops_runtime_state() {
        let mut twin = TwinLine {
            line: 1,
            device_id: "d".into(),
            module_id: Some("m".into()),
            etag: Some("AAE=".into()),
            device_etag: Some("MQ==".into()),
            version: Some(4),
            ..TwinLine::default()
        };
        twin.times.status = Some(1_709_294_400_000);
        twin.entity.status = Some(crate::doc::StatusValue {
            status: crate::doc::Status::Enabled,
            reason: Some("ok".into()),
        });
        twin.entity.device_scope = Some("s".into());
        for (key, value) in [
            ("modelId", serde_json::json!("dtmi:x;1")),
            ("connectionState", serde_json::json!("Connected")),
            ("status", serde_json::json!("disabled")),
        ] {
            twin.entity.extra.insert(key.into(), value);
        }
        // Reported is empty but has a time; desired has values, no time.
        twin.entity.desired.insert("a".into(), serde_json::json!(1));
        twin.times.reported.last_updated = Some(1_709_294_400_000);
        let mut out = Vec::new();
        write_twin_line(&mut out, &twin).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            String::from_utf8_lossy(&out),
            concat!(
                r#"{"deviceId":"d","moduleId":"m","etag":"AAE=","deviceEtag":"MQ==","version":4,"status":"enabled","#,
                r#""statusReason":"ok","statusUpdateTime":"2024-03-01T12:00:00.000Z","#,
                r#""deviceScope":"s","tags":{},"properties":{"desired":{"a":1},"#,
                r#""reported":{"$metadata":{"$lastUpdated":"2024-03-01T12:00:00.000Z"}}}}"#,
                "\n"
            )
        );
    }

    #[cfg(feature = "drill")]
    #[test]
    fn a_twin_record_shows_no_keys_and_both_etags() {
        let entity = Entity {
            status: Some(crate::doc::StatusValue {
                status: crate::doc::Status::Enabled,
                reason: None,
            }),
            authentication: Some(crate::doc::Authentication::sas(
                crate::doc::Secret::from_key_bytes(&[1; 32]),
                crate::doc::Secret::from_key_bytes(&[2; 32]),
            )),
            ..Entity::default()
        };
        let mut out = Vec::new();
        write_twin_record(&mut out, "d", Some("m"), "tw", "id", &entity)
            .unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(
            !text.contains("authentication") && !text.contains("$metadata"),
            "{text}"
        );
        let twin = parse_twin_line("t", 1, text.trim()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(twin.etag.as_deref(), Some("tw"));
        assert_eq!(twin.device_etag.as_deref(), Some("id"));
        assert_eq!(twin.module_id.as_deref(), Some("m"));
        let keyless = Entity {
            authentication: None,
            ..entity
        };
        assert_eq!(twin.entity, keyless);
    }
}
