//! Registry identity JSON, as `GET /devices/{id}` and `az iot hub
//! device-identity show` / `list` print it: `deviceId`, `generationId`,
//! `etag`, `authentication`, ..., one object per device or module.
//!
//! An identity carries the keys and the `generationId` an export lacks,
//! and no twin. It is read into an [`ExportLine`] (its `etag` as the
//! identity's `eTag`) so that identity files serve wherever exports do;
//! the runtime fields (`connectionState`, `lastActivityTime`,
//! `statusUpdatedTime`, `cloudToDeviceMessageCount`, `managedBy`, ...) are
//! read past, never checked and never written, and so is any field this
//! crate does not know: an identity is no import line, and what it holds
//! beyond the registry's fields is the tool's that printed it.

use std::borrow::Cow;

use serde::de::{IgnoredAny, MapAccess};
use serde_json::Value;

use super::export::unquote;
use super::group::DeviceLine;
use super::lines::{JsonlReader, ParseLine};
use super::raw::{self, Ctx, Fields, RawAuth, Record};
use super::{ExportLine, Format, ImportMode, ReadError, ReadErrorKind};
use crate::doc::{Entity, StatusValue};
use crate::validate::validate_entity;

/// One registry identity: a device's, or a module's of its device.
///
/// The fields are an [`ExportLine`]'s, with no twin and `importMode`
/// `createOrUpdate`; [`ExportLine::generation_id`] holds `generationId`.
#[derive(Clone, Debug, PartialEq)]
pub struct IdentityLine(pub ExportLine);

/// A streaming reader of registry identities: JSON lines, one JSON array
/// (as `az iot hub device-identity list` prints it) or pretty-printed
/// objects, as every reader takes them.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::format::IdentityReader;
///
/// let input = r#"[
///   {
///     "deviceId": "d1",
///     "generationId": "638000000000000000",
///     "etag": "MQ==",
///     "status": "Enabled",
///     "connectionState": "Disconnected",
///     "lastActivityTime": "0001-01-01T00:00:00",
///     "authentication": {
///       "symmetricKey": {"primaryKey": null, "secondaryKey": null},
///       "x509Thumbprint": {"primaryThumbprint": "AB12", "secondaryThumbprint": null},
///       "type": "selfSigned"
///     }
///   }
/// ]"#;
/// let mut reader = IdentityReader::new(input.as_bytes(), "devices.json");
/// let identity = reader.next().unwrap()?.0;
/// assert_eq!(identity.id, "d1");
/// assert_eq!(identity.etag.as_deref(), Some("MQ=="));
/// assert_eq!(identity.generation_id.as_deref(), Some("638000000000000000"));
/// assert!(identity.entity.authentication.is_some());
/// # Ok::<(), failback::format::ReadError>(())
/// ```
pub type IdentityReader<R> = JsonlReader<R, IdentityLine>;

impl ParseLine for IdentityLine {
    fn parse_line(file: &str, line: u64, text: &str) -> Result<Self, ReadError> {
        parse_identity_line(file, line, text).map(IdentityLine)
    }
}

impl DeviceLine for IdentityLine {
    fn line(&self) -> u64 {
        self.0.line
    }
    fn device_id(&self) -> &str {
        &self.0.id
    }
    fn module_id(&self) -> Option<&str> {
        self.0.module_id.as_deref()
    }
}

/// Parses one registry identity (`text` must be one JSON object) and
/// checks it.
///
/// # Errors
///
/// A [`ReadError`] on `file` and `line` for invalid JSON, wrong types, a
/// missing `deviceId`, an invalid `status` or `authentication.type`, or a
/// broken limit.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::format::parse_identity_line;
///
/// let text = r#"{"deviceId":"d1","moduleId":"m1","etag":"\"Mg==\"","managedBy":"iotEdge","authentication":{"type":"none"}}"#;
/// let line = parse_identity_line("modules.json", 1, text)?;
/// assert_eq!(line.module_id.as_deref(), Some("m1"));
/// assert_eq!(line.etag.as_deref(), Some("Mg=="));
/// assert!(line.entity.extra.is_empty());
/// # Ok::<(), failback::format::ReadError>(())
/// ```
pub fn parse_identity_line(file: &str, line: u64, text: &str) -> Result<ExportLine, ReadError> {
    let ctx = Ctx::default();
    let raw = raw::parse(text, Record::<RawIdentity>::new(&ctx))
        .map_err(|e| ctx.error(file, line, &e))?;
    let (device, module) = (raw.device_id.clone(), raw.module_id.clone());
    let fail = |field: &str, kind| {
        ReadError::new(file, line, kind)
            .with_device(device.as_deref(), module.as_deref())
            .with_field(field)
    };
    let Some(id) = raw.device_id.clone() else {
        let kind = if raw.saw_id {
            ReadErrorKind::FormatMismatch {
                expected: Format::Identity,
                found: Format::Export,
            }
        } else {
            ReadErrorKind::MissingField
        };
        return Err(fail("deviceId", kind));
    };
    let out = convert(raw, id).map_err(|(field, kind)| fail(&field, kind))?;
    validate_entity(&out.id, out.module_id.as_deref(), &out.entity)
        .map_err(|e| ReadError::invalid(file, line, e))?;
    Ok(ExportLine { line, ..out })
}

/// Writes one registry identity as `az iot hub device-identity list`
/// prints it (fields sorted by name, the runtime fields of a device that
/// never connected), ending in `\n`: `authentication`, `capabilities`,
/// `cloudToDeviceMessageCount`, `connectionState`, `deviceId`,
/// `deviceScope`, `etag`, `lastActivityTime`, `moduleId`, `parentScopes`,
/// `status`, `statusReason`. No twin, no `generationId` (none is known
/// here), no unknown fields: what an identity shows. Keys in clear, as
/// the registry gives them.
///
/// # Errors
///
/// Any error of `w`.
#[cfg(feature = "drill")]
pub(crate) fn write_identity_line<W: std::io::Write>(
    w: &mut W,
    device_id: &str,
    module_id: Option<&str>,
    etag: Option<&str>,
    entity: &Entity,
) -> std::io::Result<()> {
    let mut obj = super::write::Obj::open(w)?;
    obj.auth("authentication", entity.authentication.as_ref())?;
    obj.opt("capabilities", entity.capabilities.as_ref())?;
    obj.field("cloudToDeviceMessageCount", &0)?;
    obj.text("connectionState", "Disconnected")?;
    obj.text("deviceId", device_id)?;
    obj.opt_text("deviceScope", entity.device_scope.as_deref())?;
    obj.opt_text("etag", etag)?;
    obj.text("lastActivityTime", "0001-01-01T00:00:00")?;
    obj.opt_text("moduleId", module_id)?;
    obj.opt("parentScopes", entity.parent_scopes.as_ref())?;
    if let Some(status) = &entity.status {
        obj.field("status", &status.status)?;
        obj.opt_text("statusReason", status.reason.as_deref())?;
    }
    obj.close_line()
}

/// An identity as read, before its values are checked.
#[derive(Default)]
struct RawIdentity {
    device_id: Option<String>,
    module_id: Option<String>,
    generation_id: Option<String>,
    etag: Option<String>,
    status: Option<String>,
    status_reason: Option<String>,
    authentication: Option<RawAuth>,
    capabilities: Option<Value>,
    device_scope: Option<String>,
    parent_scopes: Option<Value>,
    saw_id: bool,
}

/// The fields an identity is read from.
const FIELDS: [&str; 10] = [
    "deviceId",
    "moduleId",
    "generationId",
    "etag",
    "status",
    "statusReason",
    "authentication",
    "capabilities",
    "deviceScope",
    "parentScopes",
];

fn convert(raw: RawIdentity, id: String) -> Result<ExportLine, (String, ReadErrorKind)> {
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
        twin_etag: None,
        import_mode: ImportMode::CreateOrUpdate,
        generation_id: raw.generation_id,
        entity: Entity {
            status,
            authentication,
            capabilities: raw.capabilities,
            device_scope: raw.device_scope,
            parent_scopes: raw.parent_scopes,
            ..Entity::default()
        },
    })
}

impl<'de> Fields<'de> for RawIdentity {
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
            "generationId" => self.generation_id = ctx.value(map, name, seen)?,
            "etag" => self.etag = ctx.value(map, name, seen)?,
            "status" => self.status = ctx.value(map, name, seen)?,
            "statusReason" => self.status_reason = ctx.value(map, name, seen)?,
            "authentication" => self.authentication = ctx.value(map, name, seen)?,
            "capabilities" => self.capabilities = ctx.value(map, name, seen)?,
            "deviceScope" => self.device_scope = ctx.value(map, name, seen)?,
            _ => self.parent_scopes = ctx.value(map, name, seen)?,
        }
        Ok(())
    }

    /// Every other field (what the service computes) is skipped.
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

#[cfg(all(test, feature = "drill"))]
mod tests {
    use super::*;
    use crate::doc::{Authentication, Secret, Status};

    /// What the writer writes, the reader reads back: the identity fields,
    /// the etag, the keys; the runtime fields are read past.
    #[test]
    fn an_identity_written_reads_back_as_it_was() {
        let entity = Entity {
            status: Some(StatusValue {
                status: Status::Disabled,
                reason: Some("stolen".into()),
            }),
            authentication: Some(Authentication::sas(
                Secret::from_key_bytes(&[1; 32]),
                Secret::from_key_bytes(&[2; 32]),
            )),
            capabilities: Some(serde_json::json!({"iotEdge": true})),
            device_scope: Some("ms-azure-iot-edge://gw-1".into()),
            ..Entity::default()
        };
        let mut out = Vec::new();
        write_identity_line(&mut out, "gw", None, Some("abc"), &entity)
            .unwrap_or_else(|e| panic!("{e}"));
        write_identity_line(&mut out, "gw", Some("m1"), Some("def"), &Entity::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(text.starts_with(r#"{"authentication":{"#), "{text}");
        let mut lines = text.lines();
        let device = parse_identity_line("ids.json", 1, lines.next().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (device.id.as_str(), device.etag.as_deref()),
            ("gw", Some("abc"))
        );
        assert_eq!(device.entity, entity);
        let module = parse_identity_line("ids.json", 2, lines.next().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(module.module_id.as_deref(), Some("m1"));
        assert_eq!(module.entity, Entity::default());
    }
}
