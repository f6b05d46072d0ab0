//! IoT Hub's bulk export / import lines (`devices.txt`): a streaming
//! reader, a reader of whole files grouped by device, and a canonical
//! writer.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use serde::de::MapAccess;
use serde_json::Value;

use super::group::{DeviceLine, collect};
use super::lines::{JsonlReader, ParseLine};
use super::raw::{
    self, Ctx, Fields, PropertiesSeed, RawAuth, RawProperties, RawSection, Record, SectionSeed,
};
use super::write::{Obj, Properties, Section};
use super::{
    DeviceEtags, DeviceFile, DeviceRecord, Format, ImportMode, ReadError, ReadErrorKind, RecordMeta,
};
use crate::doc::{DeviceSnapshot, Entity, Extra, StatusValue};
use crate::validate::validate_entity;

/// One line of an export or import file: a device, or a module of the
/// device `id`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportLine {
    /// The line number in the file, from 1.
    pub line: u64,
    /// `id`: the device id (on a module line, its device's).
    pub id: String,
    /// `moduleId`, on a module line.
    pub module_id: Option<String>,
    /// `eTag`, without the pair of `"` it may arrive wrapped in.
    pub etag: Option<String>,
    /// `twinETag`.
    pub twin_etag: Option<String>,
    /// `importMode`; `createOrUpdate` when absent.
    pub import_mode: ImportMode,
    /// `generationId`: one incarnation of the id. Exports never carry it;
    /// registry identities do. Read, never written.
    pub generation_id: Option<String>,
    /// Identity and twin.
    pub entity: Entity,
}

/// A streaming reader of export lines.
///
/// Reads one line at a time, each bounded (1 MiB by default), skips and
/// counts lines that do not start with `{` (hub warnings, blank lines),
/// and checks every line against IoT Hub's limits. It goes on after an
/// error in a line; after an I/O error it ends.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::format::{ExportReader, ImportMode};
///
/// let input = "Warning: 1 device skipped\n\
///     {\"id\":\"d1\",\"eTag\":\"\\\"AAAA\\\"\",\"status\":\"enabled\",\"importMode\":\"delete\"}\n";
/// let mut reader = ExportReader::new(input.as_bytes(), "devices.txt");
/// let line = reader.next().unwrap()?;
/// assert_eq!((line.line, line.id.as_str()), (2, "d1"));
/// assert_eq!(line.etag.as_deref(), Some("AAAA"));
/// assert_eq!(line.import_mode, ImportMode::Delete);
/// assert!(reader.next().is_none());
/// assert_eq!(reader.skipped(), 1);
/// # Ok::<(), failback::format::ReadError>(())
/// ```
pub type ExportReader<R> = JsonlReader<R, ExportLine>;

impl ParseLine for ExportLine {
    fn parse_line(file: &str, line: u64, text: &str) -> Result<Self, ReadError> {
        parse_export_line(file, line, text)
    }
}

/// Parses one export line (`text` must be one JSON object) and checks it.
///
/// # Errors
///
/// A [`ReadError`] on `file` and `line` for invalid JSON, wrong types, an
/// unknown `importMode` or `status`, a missing `id` or `status`, or a
/// broken limit.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::format::{parse_export_line, ReadErrorKind};
///
/// let err = parse_export_line("devices.txt", 7, r#"{"id":"d1","importMode":"upsert"}"#).unwrap_err();
/// assert!(matches!(err.kind, ReadErrorKind::UnknownImportMode { .. }));
/// assert_eq!(err.to_string(), r#"devices.txt:7: device "d1" field "importMode": unknown importMode "upsert""#);
/// ```
pub fn parse_export_line(file: &str, line: u64, text: &str) -> Result<ExportLine, ReadError> {
    let ctx = Ctx::default();
    let mut raw =
        raw::parse(text, Record::<RawExport>::new(&ctx)).map_err(|e| ctx.error(file, line, &e))?;
    let (device, module) = (raw.id.clone(), raw.module_id.clone());
    let fail = |field: &str, kind| {
        ReadError::new(file, line, kind)
            .with_device(device.as_deref(), module.as_deref())
            .with_field(field)
    };
    let Some(id) = raw.id.take() else {
        return Err(if raw.saw_device_id {
            fail(
                "id",
                ReadErrorKind::FormatMismatch {
                    expected: Format::Export,
                    found: Format::Twin,
                },
            )
        } else {
            fail("id", ReadErrorKind::MissingField)
        });
    };
    let line_out = convert(raw, id).map_err(|(field, kind)| fail(&field, kind))?;
    validate_entity(
        &line_out.id,
        line_out.module_id.as_deref(),
        &line_out.entity,
    )
    .map_err(|e| ReadError::invalid(file, line, e))?;
    Ok(ExportLine { line, ..line_out })
}

/// An export line as read, before its values are checked.
#[derive(Default)]
struct RawExport {
    id: Option<String>,
    module_id: Option<String>,
    etag: Option<String>,
    import_mode: Option<String>,
    status: Option<String>,
    status_reason: Option<String>,
    authentication: Option<RawAuth>,
    twin_etag: Option<String>,
    tags: RawSection,
    properties: RawProperties,
    capabilities: Option<Value>,
    device_scope: Option<String>,
    parent_scopes: Option<Value>,
    extra: Extra,
    saw_device_id: bool,
}

/// The fields of an export line, in the order the writer writes them.
const FIELDS: [&str; 13] = [
    "id",
    "moduleId",
    "eTag",
    "importMode",
    "status",
    "statusReason",
    "authentication",
    "twinETag",
    "tags",
    "properties",
    "capabilities",
    "deviceScope",
    "parentScopes",
];

fn convert(raw: RawExport, id: String) -> Result<ExportLine, (String, ReadErrorKind)> {
    let import_mode = match raw.import_mode.as_deref() {
        None => ImportMode::CreateOrUpdate,
        Some(name) => ImportMode::from_name(name).ok_or_else(|| {
            (
                "importMode".to_owned(),
                ReadErrorKind::UnknownImportMode {
                    value: super::error::safe_value(name),
                },
            )
        })?,
    };
    let status = match raw.status.as_deref() {
        Some(status) => Some(StatusValue {
            status: raw::status(status)?,
            reason: raw.status_reason,
        }),
        None if raw.module_id.is_none() && import_mode.writes_identity() => {
            return Err(("status".to_owned(), ReadErrorKind::MissingField));
        }
        // A reason with no status to follow has nowhere to go.
        None if raw.status_reason.as_deref().is_some_and(|r| !r.is_empty()) => {
            return Err(("status".to_owned(), ReadErrorKind::MissingField));
        }
        None => None,
    };
    let authentication = raw
        .authentication
        .map(RawAuth::into_auth)
        .transpose()?
        .flatten();
    Ok(ExportLine {
        line: 0,
        id,
        module_id: raw.module_id,
        etag: raw.etag.map(unquote),
        twin_etag: raw.twin_etag,
        import_mode,
        generation_id: None,
        entity: Entity {
            status,
            authentication,
            capabilities: raw.capabilities,
            device_scope: raw.device_scope,
            parent_scopes: raw.parent_scopes,
            extra: raw.extra,
            tags: raw.tags.section,
            desired: raw.properties.desired.section,
            reported: raw.properties.reported.section,
        },
    })
}

/// Strips one surrounding pair of `"`.
pub(crate) fn unquote(etag: String) -> String {
    match etag.strip_prefix('"').and_then(|e| e.strip_suffix('"')) {
        Some(inner) => inner.to_owned(),
        None => etag,
    }
}

impl<'de> Fields<'de> for RawExport {
    const NAMES: &'static [&'static str] = &FIELDS;

    fn field<A: MapAccess<'de>>(
        &mut self,
        ctx: &Ctx,
        name: &'static str,
        seen: &mut bool,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match name {
            "id" => self.id = ctx.device_id(map, name, seen)?,
            "moduleId" => self.module_id = ctx.module_id(map, name, seen)?,
            "eTag" => self.etag = ctx.value(map, name, seen)?,
            "importMode" => self.import_mode = ctx.value(map, name, seen)?,
            "status" => self.status = ctx.value(map, name, seen)?,
            "statusReason" => self.status_reason = ctx.value(map, name, seen)?,
            "authentication" => self.authentication = ctx.value(map, name, seen)?,
            "twinETag" => self.twin_etag = ctx.value(map, name, seen)?,
            "tags" => {
                let seed = SectionSeed {
                    ctx,
                    path: "tags",
                    metadata: false,
                };
                self.tags = ctx.value_seed(map, name, seen, seed)?;
            }
            "properties" => {
                let seed = PropertiesSeed {
                    ctx,
                    metadata: false,
                };
                self.properties = ctx.value_seed(map, name, seen, seed)?;
            }
            "capabilities" => self.capabilities = ctx.value(map, name, seen)?,
            "deviceScope" => self.device_scope = ctx.value(map, name, seen)?,
            _ => self.parent_scopes = ctx.value(map, name, seen)?,
        }
        Ok(())
    }

    /// Every other field is kept, verbatim, once.
    fn other<A: MapAccess<'de>>(
        &mut self,
        ctx: &Ctx,
        key: Cow<'de, str>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        self.saw_device_id |= key == "deviceId";
        let value = map.next_value::<Value>()?;
        if self.extra.contains_key(key.as_ref()) {
            return Err(ctx.fail(key, ReadErrorKind::DuplicateField));
        }
        self.extra.insert(key.into_owned(), value);
        Ok(())
    }
}

/// Reads a whole export file and groups module lines under their device.
///
/// The file is named in errors as `path` displays.
///
/// # Errors
///
/// The first [`ReadError`] in file order: the file cannot be read, a line
/// is bad, or a device or module has two lines (naming both). A module
/// whose device has no line is reported last, at the first such module.
///
/// # Example
///
/// ```no_run
/// let export = failback::format::read_export("devices.txt")?;
/// for (id, device) in &export.devices {
///     println!("{id}: {} modules", device.snapshot.modules.len());
/// }
/// # Ok::<(), failback::format::ReadError>(())
/// ```
pub fn read_export(path: impl AsRef<Path>) -> Result<DeviceFile, ReadError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| ReadError::io(name.clone(), e))?;
    collect_export(ExportReader::new(BufReader::new(file), name))
}

/// Groups the lines of `reader` as [`read_export`] does.
///
/// # Errors
///
/// As [`read_export`].
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::format::{collect_export, ExportReader};
///
/// let input = concat!(
///     r#"{"id":"edge-1","status":"enabled","capabilities":{"iotEdge":true}}"#, "\n",
///     r#"{"id":"edge-1","moduleId":"$edgeAgent","eTag":"MQ=="}"#, "\n",
/// );
/// let file = collect_export(ExportReader::new(input.as_bytes(), "devices.txt"))?;
/// let device = &file.devices["edge-1"];
/// assert!(device.snapshot.modules.contains_key("$edgeAgent"));
/// assert_eq!(device.modules["$edgeAgent"].etag.as_deref(), Some("MQ=="));
/// # Ok::<(), failback::format::ReadError>(())
/// ```
pub fn collect_export<R: BufRead>(reader: ExportReader<R>) -> Result<DeviceFile, ReadError> {
    collect(reader, export_device)
}

/// Reads a whole file of registry identities, grouped by device as
/// [`collect_export`] groups an export: the same devices, keys and etags,
/// with `generationId` and without twins.
///
/// # Errors
///
/// As [`read_export`].
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::format::{collect_identities, IdentityReader};
///
/// let input = r#"[{"deviceId":"gw","etag":"MQ==","status":"enabled","authentication":{"type":"sas","symmetricKey":{"primaryKey":"cHJpbWFyeWtleXByaW1hcnk=","secondaryKey":"c2Vjb25kYXJ5a2V5c2Vjb25k"}}},
///                 {"deviceId":"gw","moduleId":"$edgeAgent","etag":"Mg==","authentication":{"type":"sas"}}]"#;
/// let file = collect_identities(IdentityReader::new(input.as_bytes(), "ids.json"))?;
/// let device = &file.devices["gw"];
/// assert!(device.snapshot.device.authentication.is_some());
/// assert_eq!(device.modules["$edgeAgent"].etag.as_deref(), Some("Mg=="));
/// # Ok::<(), failback::format::ReadError>(())
/// ```
pub fn collect_identities<R: BufRead>(
    reader: super::IdentityReader<R>,
) -> Result<DeviceFile, ReadError> {
    collect(reader, |id, device, modules| {
        let modules = modules.into_iter().map(|(m, l)| (m, l.0)).collect();
        export_device(id, device.0, modules)
    })
}

/// A device from its line and its modules' lines, grouped.
pub(crate) fn export_device(
    id: String,
    device: ExportLine,
    modules: BTreeMap<String, ExportLine>,
) -> DeviceRecord {
    let mut metas = BTreeMap::new();
    let mut entities = BTreeMap::new();
    for (module, line) in modules {
        metas.insert(
            module.clone(),
            line_meta(line.line, line.etag, line.twin_etag, None),
        );
        entities.insert(module, line.entity);
    }
    let meta = line_meta(
        device.line,
        device.etag,
        device.twin_etag,
        device.generation_id,
    );
    DeviceRecord {
        snapshot: DeviceSnapshot {
            id,
            device: device.entity,
            modules: entities,
        },
        meta,
        modules: metas,
        times: None,
    }
}

/// What an export or identity line says besides its entity.
fn line_meta(
    line: u64,
    etag: Option<String>,
    twin_etag: Option<String>,
    generation_id: Option<String>,
) -> RecordMeta {
    RecordMeta {
        etag,
        twin_etag,
        generation_id,
        line,
        ..RecordMeta::default()
    }
}

impl DeviceLine for ExportLine {
    fn line(&self) -> u64 {
        self.line
    }
    fn device_id(&self) -> &str {
        &self.id
    }
    fn module_id(&self) -> Option<&str> {
        self.module_id.as_deref()
    }
}

/// One line to write, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct ExportLineRef<'a> {
    /// `id`: the device id.
    pub id: &'a str,
    /// `moduleId`, for a module line.
    pub module_id: Option<&'a str>,
    /// `eTag`, written as given.
    pub etag: Option<&'a str>,
    /// `twinETag`.
    pub twin_etag: Option<&'a str>,
    /// `importMode`; not written when `None`, except on a device line
    /// without `status`, which is written as `updateTwin` (see
    /// [`write_export_line`]).
    pub import_mode: Option<ImportMode>,
    /// Identity and twin.
    pub entity: &'a Entity,
}

impl<'a> From<&'a ExportLine> for ExportLineRef<'a> {
    fn from(line: &'a ExportLine) -> Self {
        Self {
            id: &line.id,
            module_id: line.module_id.as_deref(),
            etag: line.etag.as_deref(),
            twin_etag: line.twin_etag.as_deref(),
            import_mode: Some(line.import_mode),
            entity: &line.entity,
        }
    }
}

/// Writes one canonical export line, ending in `\n`.
///
/// Fields come in a fixed order: `id`, `moduleId`, `eTag`, `importMode`,
/// `status`, `statusReason`, `authentication`, `twinETag`, `tags`,
/// `properties` (`desired`, `reported`), `capabilities`, `deviceScope`,
/// `parentScopes`, then unknown fields sorted by name. Absent optional
/// fields are left out; `tags` and both sections are always written, so an
/// import replaces them whole. Keys are written in clear: this is an export.
///
/// A device line without `importMode` and without `status` is written with
/// `"importMode":"updateTwin"`. IoT Hub requires `status` on a line that
/// writes an identity (`createOrUpdate`, the mode of a line without
/// `importMode`, among them), so such a line would be rejected, by the
/// hub and by [`ExportReader`] alike. A device whose status is not known
/// (read from an `updateTwin` or `delete` line, or from a twin without
/// `status`) is therefore written as the one thing its line can say: its
/// twin, leaving the identity (keys, status) of a hub that imports it as
/// it is, rather than inventing `enabled` or fresh keys.
///
/// # Errors
///
/// Any error of `w`.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::doc::{Entity, Status, StatusValue};
/// use failback::format::{write_export_line, ExportLineRef, ImportMode};
///
/// let entity = Entity {
///     status: Some(StatusValue { status: Status::Disabled, reason: Some("stolen".into()) }),
///     ..Entity::default()
/// };
/// let mut out = Vec::new();
/// write_export_line(&mut out, &ExportLineRef {
///     id: "d1",
///     module_id: None,
///     etag: Some("AAAABQ=="),
///     twin_etag: None,
///     import_mode: Some(ImportMode::UpdateIfMatchETag),
///     entity: &entity,
/// })?;
/// assert_eq!(
///     String::from_utf8(out).unwrap(),
///     concat!(
///         r#"{"id":"d1","eTag":"AAAABQ==","importMode":"updateIfMatchETag","status":"disabled","#,
///         r#""statusReason":"stolen","tags":{},"properties":{"desired":{},"reported":{}}}"#,
///         "\n"
///     )
/// );
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_export_line<W: Write>(w: &mut W, line: &ExportLineRef<'_>) -> io::Result<()> {
    write_line(w, line, false)
}

/// Writes `line` as [`write_export_line`] does; with `twin_only`, as if
/// its entity held only its twin sections (`tags`, `desired`, `reported`).
pub(crate) fn write_line<W: Write>(
    w: &mut W,
    line: &ExportLineRef<'_>,
    twin_only: bool,
) -> io::Result<()> {
    let entity = line.entity;
    let identity = |e: &'_ Entity| !twin_only && e.status.is_some();
    let mut obj = Obj::open(w)?;
    obj.text("id", line.id)?;
    obj.opt_text("moduleId", line.module_id)?;
    obj.opt_text("eTag", line.etag)?;
    let import_mode = line.import_mode.or_else(|| {
        (line.module_id.is_none() && !identity(entity)).then_some(ImportMode::UpdateTwin)
    });
    obj.opt("importMode", import_mode)?;
    if let Some(status) = entity.status.as_ref().filter(|_| !twin_only) {
        obj.field("status", &status.status)?;
        obj.opt_text("statusReason", status.reason.as_deref())?;
    }
    if !twin_only {
        obj.auth("authentication", entity.authentication.as_ref())?;
    }
    obj.opt_text("twinETag", line.twin_etag)?;
    obj.section("tags", &entity.tags)?;
    obj.properties(&Properties {
        desired: Section {
            map: &entity.desired,
            meta: None,
        },
        reported: Section {
            map: &entity.reported,
            meta: None,
        },
    })?;
    if twin_only {
        return obj.close_line();
    }
    obj.opt("capabilities", entity.capabilities.as_ref())?;
    obj.opt_text("deviceScope", entity.device_scope.as_deref())?;
    obj.opt("parentScopes", entity.parent_scopes.as_ref())?;
    for (key, value) in &entity.extra {
        // The reader never puts a known field here; a caller who did would
        // otherwise write a line with the key twice.
        if !FIELDS.contains(&key.as_str()) {
            obj.value(key, value)?;
        }
    }
    obj.close_line()
}

/// Writes a device line then its module lines sorted by `moduleId`, with no
/// `importMode`: the shape of `merged.jsonl`. A device without `status` is
/// the exception: it is written as an `updateTwin` line, as
/// `write_export_line` says, so that the reader takes it back.
///
/// # Errors
///
/// Any error of `w`.
///
/// # Example
///
/// ```
/// use failback::doc::{DeviceSnapshot, Entity, Status, StatusValue};
/// use failback::format::{parse_input, write_device, DeviceEtags, InputFile};
///
/// let mut snapshot = DeviceSnapshot { id: "edge-1".into(), ..Default::default() };
/// snapshot.device.status = Some(StatusValue { status: Status::Enabled, reason: None });
/// snapshot.modules.insert("$edgeHub".into(), Entity::default());
/// snapshot.modules.insert("$edgeAgent".into(), Entity::default());
/// let mut out = Vec::new();
/// write_device(&mut out, &snapshot, DeviceEtags::default())?;
/// let text = String::from_utf8(out)?;
/// let lines: Vec<&str> = text.lines().collect();
/// assert!(lines[0].starts_with(r#"{"id":"edge-1","status":"enabled""#));
/// assert!(lines[1].contains(r#""moduleId":"$edgeAgent""#), "modules sorted");
/// let InputFile::Export(file) = parse_input("merged.jsonl", text.as_bytes(), None)? else {
///     panic!("an export");
/// };
/// assert_eq!(file.devices["edge-1"].snapshot, snapshot);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_device<W: Write>(
    w: &mut W,
    snapshot: &DeviceSnapshot,
    etags: DeviceEtags<'_>,
) -> io::Result<()> {
    write_export_line(
        w,
        &ExportLineRef {
            id: &snapshot.id,
            module_id: None,
            etag: etags.etag,
            twin_etag: etags.twin_etag,
            import_mode: None,
            entity: &snapshot.device,
        },
    )?;
    for (module, entity) in &snapshot.modules {
        let (etag, twin_etag) = etags
            .modules
            .and_then(|m| m.get(module))
            .map_or((None, None), |m| {
                (m.etag.as_deref(), m.twin_etag.as_deref())
            });
        write_export_line(
            w,
            &ExportLineRef {
                id: &snapshot.id,
                module_id: Some(module),
                etag,
                twin_etag,
                import_mode: None,
                entity,
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::AuthType;

    fn parse(text: &str) -> Result<ExportLine, ReadError> {
        parse_export_line("devices.txt", 3, text)
    }

    #[test]
    fn absent_and_null_authentication_are_none() {
        for text in [
            r#"{"id":"d","status":"enabled"}"#,
            r#"{"id":"d","status":"enabled","authentication":null}"#,
        ] {
            let line = parse(text).map_err(|e| e.to_string());
            assert_eq!(line.map(|l| l.entity.authentication), Ok(None));
        }
    }

    /// SAS without both keys is how an export made without keys shows a
    /// SAS device: keys not shown, read as `null`, never as keys to write
    /// (importing it would make the hub generate new ones). An identity
    /// that needs no keys (a certificate's, `none`) is read as written.
    #[test]
    fn sas_without_both_keys_is_read_as_keys_not_shown() {
        let key = "cHJpbWFyeS1rZXktMDEyMzQ1Njc4OWFi";
        let nulls = r#""x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null}"#;
        for auth in [
            format!(
                r#"{{"symmetricKey":{{"primaryKey":null,"secondaryKey":null}},{nulls},"type":"sas"}}"#
            ),
            format!(
                r#"{{"symmetricKey":{{"primaryKey":"","secondaryKey":""}},{nulls},"type":"SAS"}}"#
            ),
            format!(
                r#"{{"symmetricKey":{{"primaryKey":"{key}","secondaryKey":null}},{nulls},"type":"sas"}}"#
            ),
            r#"{"symmetricKey":null,"type":"sas"}"#.to_owned(),
            r#"{"type":"sas"}"#.to_owned(),
            // Old REST responses give no type: SAS, unless a thumbprint says otherwise.
            r#"{"symmetricKey":{"primaryKey":null,"secondaryKey":null}}"#.to_owned(),
            "{}".to_owned(),
        ] {
            let text = format!(r#"{{"id":"d","status":"enabled","authentication":{auth}}}"#);
            let line = parse(&text).map_err(|e| e.to_string());
            assert_eq!(line.map(|l| l.entity.authentication), Ok(None), "{auth}");
        }
        for (auth, kind) in [
            (
                format!(r#"{{"symmetricKey":{{"primaryKey":null,"secondaryKey":null}},{nulls},"type":"selfSigned"}}"#),
                Some(AuthType::SelfSigned),
            ),
            (
                format!(r#"{{"symmetricKey":{{"primaryKey":null,"secondaryKey":null}},{nulls},"type":"certificateAuthority"}}"#),
                Some(AuthType::CertificateAuthority),
            ),
            (r#"{"type":"none"}"#.to_owned(), Some(AuthType::None)),
            (
                r#"{"x509Thumbprint":{"primaryThumbprint":"ABCDEF0123","secondaryThumbprint":null}}"#.to_owned(),
                None,
            ),
            (
                format!(r#"{{"symmetricKey":{{"primaryKey":"{key}","secondaryKey":"{key}"}},"type":"sas"}}"#),
                Some(AuthType::Sas),
            ),
        ] {
            let text = format!(r#"{{"id":"d","status":"enabled","authentication":{auth}}}"#);
            let read = parse(&text).map_err(|e| e.to_string());
            let read = read.map(|l| l.entity.authentication.map(|a| a.auth_type));
            assert_eq!(read, Ok(Some(kind)), "{auth}");
        }
    }

    #[test]
    fn metadata_in_an_export_is_ignored() {
        let line = parse(
            r#"{"id":"d","status":"enabled","properties":{"desired":{"a":1,"$metadata":{"$lastUpdated":"x"},"$version":4}}}"#,
        );
        let desired = line
            .map(|l| l.entity.desired.into_map())
            .map_err(|e| e.to_string());
        assert_eq!(
            desired,
            Ok(serde_json::json!({"a":1})
                .as_object()
                .cloned()
                .unwrap_or_default())
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse(r#"{"id":"d","status":"enabled","authentication":{"type":"token"}}"#)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                r#"devices.txt:3: device "d" field "authentication.type": invalid authentication type "token""#
            )
        );
        let err = parse(r#"{"id":"d","status":"enabled","tags":[]}"#)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(r#"devices.txt:3: device "d" field "tags": expected an object, found an array"#)
        );
        let err = parse(r#"{"id":"d","status":"enabled","status":"enabled"}"#)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(r#"devices.txt:3: device "d" field "status": duplicate field"#)
        );
        let err = parse(r#"{"deviceId":"d"}"#).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                r#"devices.txt:3: field "id": line is in twin format, the file is read as export"#
            )
        );
    }

    fn written(line: &ExportLineRef<'_>) -> String {
        let mut out = Vec::new();
        write_export_line(&mut out, line).unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn a_device_without_status_is_written_as_an_update_twin_line() {
        let line = parse(r#"{"id":"d","importMode":"delete","tags":{"a":1}}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(line.entity.status, None);
        let mut out = Vec::new();
        let snapshot = DeviceSnapshot {
            id: "d".into(),
            device: line.entity.clone(),
            modules: BTreeMap::from([("m".to_owned(), Entity::default())]),
        };
        write_device(&mut out, &snapshot, DeviceEtags::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            String::from_utf8_lossy(&out),
            concat!(
                r#"{"id":"d","importMode":"updateTwin","tags":{"a":1},"properties":{"desired":{},"reported":{}}}"#,
                "\n",
                // A module line needs no status: no importMode either.
                r#"{"id":"d","moduleId":"m","tags":{},"properties":{"desired":{},"reported":{}}}"#,
                "\n",
            )
        );
        let again = collect_export(ExportReader::new(out.as_slice(), "again"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.devices["d"].snapshot, snapshot);
    }

    #[test]
    fn an_explicit_import_mode_is_kept_without_status() {
        let entity = Entity::default();
        let line = |import_mode| ExportLineRef {
            id: "d",
            module_id: None,
            etag: None,
            twin_etag: None,
            import_mode,
            entity: &entity,
        };
        assert_eq!(
            written(&line(Some(ImportMode::DeleteIfMatchETag))),
            "{\"id\":\"d\",\"importMode\":\"deleteIfMatchETag\",\"tags\":{},\"properties\":{\"desired\":{},\"reported\":{}}}\n"
        );
        let enabled = Entity {
            status: Some(StatusValue {
                status: crate::doc::Status::Enabled,
                reason: None,
            }),
            ..Entity::default()
        };
        let with_status = ExportLineRef {
            entity: &enabled,
            ..line(None)
        };
        assert_eq!(
            written(&with_status),
            "{\"id\":\"d\",\"status\":\"enabled\",\"tags\":{},\"properties\":{\"desired\":{},\"reported\":{}}}\n"
        );
    }
    #[test]
    fn a_line_that_is_not_an_object_is_a_wrong_type() {
        let err = parse("[1]").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("devices.txt:3: expected an object, found an array")
        );
    }

    #[test]
    fn the_reader_counts_skipped_lines_and_locates_each_line() {
        let input = "Warning: x\n\n{\"id\":\"d1\",\"status\":\"enabled\"}\r\nnote\n  {\"id\":\"d2\",\"status\":\"disabled\"}\n";
        let mut reader = ExportReader::new(input.as_bytes(), "f");
        let mut seen = Vec::new();
        while let Some(line) = reader.next() {
            let line = line.unwrap_or_else(|e| panic!("{e}"));
            let (offset, len) = reader.span();
            let at = usize::try_from(offset).unwrap_or(usize::MAX);
            let text = input.get(at..at + len).unwrap_or_default();
            seen.push((line.line, line.id, text.to_owned(), reader.skipped()));
        }
        assert_eq!(
            seen,
            vec![
                (
                    3,
                    "d1".to_owned(),
                    r#"{"id":"d1","status":"enabled"}"#.to_owned(),
                    2
                ),
                (
                    5,
                    "d2".to_owned(),
                    r#"{"id":"d2","status":"disabled"}"#.to_owned(),
                    3
                ),
            ]
        );
    }
    #[test]
    fn status_is_required_only_where_a_line_writes_an_identity() {
        let status_of = |text: &str| {
            parse(text)
                .map(|l| l.entity.status.map(|s| (s.status, s.reason)))
                .map_err(|e| (e.kind.to_string(), e.field))
        };
        let missing = Err(("missing field".to_owned(), Some("status".to_owned())));
        for mode in ImportMode::ALL {
            let line = format!(r#"{{"id":"d","importMode":"{mode}"}}"#);
            let writes_identity = matches!(
                mode,
                ImportMode::CreateOrUpdate
                    | ImportMode::Create
                    | ImportMode::Update
                    | ImportMode::UpdateIfMatchETag
                    | ImportMode::CreateOrUpdateIfMatchETag
            );
            assert_eq!(mode.writes_identity(), writes_identity, "{mode}");
            let expected = if writes_identity {
                missing.clone()
            } else {
                Ok(None)
            };
            assert_eq!(status_of(&line), expected, "{mode}");
            // A module line never needs one.
            let module = format!(r#"{{"id":"d","moduleId":"m","importMode":"{mode}"}}"#);
            assert_eq!(status_of(&module), Ok(None), "{mode}");
        }
        // A reason needs a status to follow, on any line; an empty one is
        // no reason.
        assert_eq!(
            status_of(r#"{"id":"d","importMode":"delete","statusReason":"stolen"}"#),
            missing
        );
        assert_eq!(
            status_of(r#"{"id":"d","moduleId":"m","statusReason":"x"}"#),
            missing
        );
        assert_eq!(
            status_of(r#"{"id":"d","importMode":"delete","statusReason":""}"#),
            Ok(None)
        );
        assert_eq!(
            status_of(r#"{"id":"d","status":"disabled","statusReason":"stolen"}"#),
            Ok(Some((
                crate::doc::Status::Disabled,
                Some("stolen".to_owned())
            )))
        );
    }
    #[test]
    fn every_field_of_an_export_line_is_read_into_its_place() {
        let text = concat!(
            r#"{"id":"d","moduleId":"m","eTag":"\"MQ==\"","importMode":"updateIfMatchETag","#,
            r#""status":"disabled","statusReason":"lost","authentication":null,"twinETag":"AAE=","#,
            r#""tags":{"site":"lyon"},"properties":{"desired":{"d":1},"reported":{"r":2}},"#,
            r#""capabilities":{"iotEdge":false},"deviceScope":"scope-1","parentScopes":["p-1"],"#,
            r#""managedBy":"x"}"#
        );
        let line = parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(line.line, 3);
        assert_eq!(
            (line.id.as_str(), line.module_id.as_deref()),
            ("d", Some("m"))
        );
        assert_eq!(
            (line.etag.as_deref(), line.twin_etag.as_deref()),
            (Some("MQ=="), Some("AAE="))
        );
        assert_eq!(line.import_mode, ImportMode::UpdateIfMatchETag);
        let e = &line.entity;
        assert_eq!(
            e.status.as_ref().map(|s| (s.status, s.reason.as_deref())),
            Some((crate::doc::Status::Disabled, Some("lost")))
        );
        assert_eq!(e.capabilities, Some(serde_json::json!({"iotEdge": false})));
        assert_eq!(e.device_scope.as_deref(), Some("scope-1"));
        assert_eq!(e.parent_scopes, Some(serde_json::json!(["p-1"])));
        let map = |m: &crate::doc::JsonMap| serde_json::to_value(m).ok();
        assert_eq!(map(&e.tags), Some(serde_json::json!({"site": "lyon"})));
        assert_eq!(map(&e.desired), Some(serde_json::json!({"d": 1})));
        assert_eq!(map(&e.reported), Some(serde_json::json!({"r": 2})));
        assert_eq!(
            serde_json::to_value(&e.extra).ok(),
            Some(serde_json::json!({"managedBy": "x"}))
        );
        // An eTag in one pair of quotes loses them; others stay as given.
        for (given, read) in [(r#""\"a\"""#, "a"), (r#""a""#, "a"), (r#""\"a""#, "\"a")] {
            let line = parse(&format!(
                r#"{{"id":"d","status":"enabled","eTag":{given}}}"#
            ));
            assert_eq!(
                line.ok().and_then(|l| l.etag).as_deref(),
                Some(read),
                "{given}"
            );
        }
    }
}
