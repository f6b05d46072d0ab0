//! One twin held as a JSON string, for callers that got it from the
//! service (get-twin, a registry query) rather than from a file, and
//! [`DeviceRecord`]'s serde, which is that twin's shape.

use std::collections::BTreeMap;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::DeviceRecord;
use super::raw::kind_of;
use super::twin::{TwinLine, parse_twin_line, twin_device, twins};
use super::{ReadError, ReadErrorKind};

/// The name errors give a twin that came from a string.
const SOURCE: &str = "<twin json>";

impl DeviceRecord {
    /// Parses one device twin as get-twin returns it (`deviceId`, `etag`,
    /// `version`, `tags`, `properties` with `$metadata`), compact or
    /// pretty-printed, with no module twins.
    ///
    /// # Errors
    ///
    /// A [`ReadError`] (file `<twin json>`, line 1) naming the field that is
    /// not a valid twin, as for a line of a twin file; a module twin
    /// (`moduleId` given) is [`ReadErrorKind::NotDeviceTwin`].
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::DeviceRecord;
    ///
    /// let twin = DeviceRecord::from_twin_json(r#"{
    ///     "deviceId": "d1",
    ///     "properties": {"desired": {"fan": 3, "$metadata": {
    ///         "fan": {"$lastUpdated": "2024-03-01T12:00:00Z"}}}}
    /// }"#)?;
    /// assert_eq!(twin.snapshot.device.desired["fan"], 3);
    /// assert_eq!(twin.newest(), Some(1_709_294_400_000));
    /// # Ok::<(), failback::format::ReadError>(())
    /// ```
    pub fn from_twin_json(text: &str) -> Result<Self, ReadError> {
        let line = parse_twin_line(SOURCE, 1, text.trim())?;
        device_twin(&line)?;
        // Module twins ride under `modules` (this crate's serde shape); the
        // strict read above has checked the text, duplicates included.
        if text.contains("\"modules\"") {
            let value = serde_json::from_str(text).map_err(|e| {
                let kind = ReadErrorKind::InvalidJson {
                    column: e.column(),
                    message: e.to_string(),
                };
                ReadError::new(SOURCE, 1, kind)
            })?;
            return Self::from_twin_value(value);
        }
        Ok(twin_device(line.device_id.clone(), line, BTreeMap::new()))
    }

    /// [`from_twin_json`](Self::from_twin_json) of a twin already parsed,
    /// with its module twins under `modules` (what `Serialize` writes).
    fn from_twin_value(mut value: Value) -> Result<Self, ReadError> {
        let modules = match &mut value {
            Value::Object(fields) => fields.remove("modules"),
            _ => None,
        };
        let device = parse_twin_line(SOURCE, 1, &value.to_string())?;
        device_twin(&device)?;
        let id = device.device_id.clone();
        let mut twins = BTreeMap::new();
        match modules {
            None | Some(Value::Null) => {}
            Some(Value::Object(modules)) => {
                for (module, twin) in modules {
                    let line = module_twin(&id, &module, twin)?;
                    twins.insert(module, line);
                }
            }
            Some(other) => return Err(wrong(&id, "modules", &other)),
        }
        Ok(twin_device(id, device, twins))
    }
}

/// The twin of `module` of device `id`, as `modules` holds it: its
/// `deviceId` and `moduleId` may be left out, and must match if given.
fn module_twin(id: &str, module: &str, mut twin: Value) -> Result<TwinLine, ReadError> {
    let field = format!("modules.{module}");
    let Value::Object(fields) = &mut twin else {
        return Err(wrong(id, &field, &twin));
    };
    fields.entry("deviceId").or_insert_with(|| id.into());
    fields.entry("moduleId").or_insert_with(|| module.into());
    let line = parse_twin_line(SOURCE, 1, &twin.to_string()).map_err(|mut e| {
        e.field = Some(match e.field.take() {
            Some(inner) => format!("{field}.{inner}"),
            None => field.clone(),
        });
        e
    })?;
    if line.device_id == id && line.module_id.as_deref() == Some(module) {
        return Ok(line);
    }
    let other = if line.device_id == id {
        "moduleId"
    } else {
        "deviceId"
    };
    let kind = ReadErrorKind::Mismatch {
        other: format!("{field}.{other}"),
    };
    Err(ReadError::new(SOURCE, 1, kind)
        .with_device(Some(id), Some(module))
        .with_field("modules"))
}

/// Refuses a module twin where a device twin is wanted.
fn device_twin(line: &TwinLine) -> Result<(), ReadError> {
    match &line.module_id {
        None => Ok(()),
        Some(module) => Err(ReadError::new(SOURCE, 1, ReadErrorKind::NotDeviceTwin)
            .with_device(Some(&line.device_id), Some(module))
            .with_field("moduleId")),
    }
}

fn wrong(device: &str, field: &str, value: &Value) -> ReadError {
    let kind = ReadErrorKind::WrongType {
        expected: "an object".to_owned(),
        found: kind_of(value).to_owned(),
    };
    ReadError::new(SOURCE, 1, kind)
        .with_device(Some(device), None)
        .with_field(field)
}

/// The device's twin as get-twin returns it, and, where the record has
/// modules, their twins under `modules` by `moduleId` (a field of this
/// shape, not the service's: the service gives each module twin apart).
///
/// Keys are never written, as no twin carries them: a record read back
/// from this shape has no `authentication`. For a line an import job
/// takes, keys included, use [`write_device`](super::write_device).
///
/// # Example
///
/// ```
/// use failback::format::DeviceRecord;
///
/// let record = DeviceRecord::from_twin_json(
///     r#"{"deviceId":"d1","etag":"AAAAAAAAAAI=","version":2,"tags":{"site":"north"}}"#,
/// )?;
/// let json = serde_json::to_string(&record)?;
/// assert_eq!(
///     json,
///     r#"{"deviceId":"d1","etag":"AAAAAAAAAAI=","version":2,"tags":{"site":"north"},"properties":{"desired":{},"reported":{}}}"#
/// );
/// let back: DeviceRecord = serde_json::from_str(&json)?;
/// assert_eq!(back, record);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl Serialize for DeviceRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut twins = twins(self);
        let mut map = s.serialize_map(None)?;
        if let Some(own) = twins.next() {
            own.fields(&mut map)?;
        }
        if !self.snapshot.modules.is_empty() {
            let modules: BTreeMap<&str, _> = twins
                .map(|t| (t.module_id.unwrap_or_default(), t))
                .collect();
            map.serialize_entry("modules", &modules)?;
        }
        map.end()
    }
}

/// Reads what `Serialize` writes, and any device twin as get-twin returns
/// it: the same checks as [`DeviceRecord::from_twin_json`], errors worded
/// as its [`ReadError`]s.
impl<'de> Deserialize<'de> for DeviceRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Self::from_twin_value(value).map_err(serde::de::Error::custom)
    }
}
