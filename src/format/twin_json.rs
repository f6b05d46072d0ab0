//! One twin held as a JSON string, for callers that got it from the
//! service (get-twin, a registry query) rather than from a file.

use std::collections::BTreeMap;

use super::DeviceRecord;
use super::twin::{parse_twin_line, twin_device};
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
        if line.module_id.is_some() {
            return Err(ReadError::new(SOURCE, 1, ReadErrorKind::NotDeviceTwin)
                .with_device(Some(&line.device_id), line.module_id.as_deref())
                .with_field("moduleId"));
        }
        Ok(twin_device(line.device_id.clone(), line, BTreeMap::new()))
    }
}
