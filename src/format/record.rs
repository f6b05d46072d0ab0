//! One device as any hub file gives it: the device and its modules, and
//! beside each what the file said of it that is not the entity itself
//! (etags, generation, twin version, line, per-field times).
//!
//! Every reader groups its records into this one type: an export with
//! keys, a file of registry identities and a twin file differ only in what
//! they fill in (an identity file has no twin etag and no times, an export
//! no times, a twin file no keys).

use std::collections::BTreeMap;

use crate::doc::{DeviceSnapshot, DeviceTimes, EntityTimes, MetaTree};

/// What a file says of one device or module besides its entity.
///
/// The names are the registry's, whatever the file calls them: `etag` is
/// always the identity's (an export's `eTag`, a twin's `deviceEtag`, an
/// identity's `etag`) and `twin_etag` the twin's (an export's `twinETag`, a
/// twin's `etag`).
///
/// # Example
///
/// ```
/// use failback::format::DeviceRecord;
///
/// let input = r#"{"deviceId":"d1","etag":"AAAAAAAAAAE=","deviceEtag":"NzU5","version":4}"#;
/// let meta = DeviceRecord::from_twin_json(input)?.meta;
/// assert_eq!(meta.etag.as_deref(), Some("NzU5"));
/// assert_eq!(meta.twin_etag.as_deref(), Some("AAAAAAAAAAE="));
/// assert_eq!(meta.version, Some(4));
/// # Ok::<(), failback::format::ReadError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordMeta {
    /// The identity's etag, unquoted.
    pub etag: Option<String>,
    /// The twin's etag (none in an identity file).
    pub twin_etag: Option<String>,
    /// `generationId`, where the file gives it: one incarnation of the id.
    pub generation_id: Option<String>,
    /// The twin's `version` (twin files).
    pub version: Option<u64>,
    /// Whether a `$lastUpdated` or `statusUpdateTime` had no zone (read as
    /// UTC).
    pub times_without_zone: bool,
    /// The line of the record, counted from 1.
    pub line: u64,
}

/// A device of a hub file, with its modules.
///
/// # Example
///
/// ```
/// use failback::format::{parse_input, InputFile};
///
/// let text = concat!(
///     r#"{"id":"edge-1","eTag":"MQ==","status":"enabled","capabilities":{"iotEdge":true}}"#, "\n",
///     r#"{"id":"edge-1","moduleId":"$edgeAgent","eTag":"Mg=="}"#, "\n",
/// );
/// let InputFile::Export(file) = parse_input("devices.txt", text.as_bytes(), None)? else {
///     panic!("an export");
/// };
/// let device = &file.devices["edge-1"];
/// assert_eq!(device.meta.etag.as_deref(), Some("MQ=="));
/// assert_eq!(device.modules["$edgeAgent"].etag.as_deref(), Some("Mg=="));
/// assert!(device.snapshot.modules.contains_key("$edgeAgent"));
/// assert!(device.times.is_none(), "an export gives no per-field times");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceRecord {
    /// The device and its modules.
    pub snapshot: DeviceSnapshot,
    /// What the file said of the device.
    pub meta: RecordMeta,
    /// What it said of each module, by `moduleId`: a module of the
    /// snapshot has an entry.
    pub modules: BTreeMap<String, RecordMeta>,
    /// `statusUpdateTime` and `$metadata` of the device and its modules,
    /// where the file gives them (twin files): what
    /// [`HubDevice::times`](crate::reconcile::HubDevice::times) wants.
    pub times: Option<DeviceTimes>,
}

impl DeviceRecord {
    /// The etags to write the device with, for [`write_device`](super::write_device).
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::DeviceRecord;
    ///
    /// let twin = r#"{"deviceId":"thermostat-7","etag":"AAAAAAAAAAM=","deviceEtag":"NzU5"}"#;
    /// let record = DeviceRecord::from_twin_json(twin)?;
    /// let etags = record.etags();
    /// assert_eq!(etags.etag, Some("NzU5")); // the identity's: a twin's deviceEtag
    /// assert_eq!(etags.twin_etag, Some("AAAAAAAAAAM="));
    /// # Ok::<(), failback::format::ReadError>(())
    /// ```
    pub fn etags(&self) -> DeviceEtags<'_> {
        DeviceEtags {
            etag: self.meta.etag.as_deref(),
            twin_etag: self.meta.twin_etag.as_deref(),
            modules: Some(&self.modules),
        }
    }

    /// Whether a time of the device or a module had no zone (read as UTC).
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::DeviceRecord;
    ///
    /// let twin = |at: &str| format!(
    ///     r#"{{"deviceId":"thermostat-7","properties":{{"desired":{{"setpoint":21,
    ///         "$metadata":{{"setpoint":{{"$lastUpdated":"{at}"}}}}}}}}}}"#);
    /// assert!(DeviceRecord::from_twin_json(&twin("2026-11-28T10:00:00"))?.times_without_zone());
    /// assert!(!DeviceRecord::from_twin_json(&twin("2026-11-28T10:00:00Z"))?.times_without_zone());
    /// # Ok::<(), failback::format::ReadError>(())
    /// ```
    pub fn times_without_zone(&self) -> bool {
        self.meta.times_without_zone || self.modules.values().any(|m| m.times_without_zone)
    }

    /// The newest time the record carries (`statusUpdateTime` or a
    /// `$lastUpdated`), in milliseconds since the epoch: what
    /// [`HubTiming::newest`](crate::reconcile::HubTiming::newest) wants.
    /// `None` for a file without times.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::DeviceRecord;
    ///
    /// let record = DeviceRecord::from_twin_json(r#"{
    ///     "deviceId": "thermostat-7", "statusUpdateTime": "2026-11-28T09:00:00Z",
    ///     "properties": {"reported": {"temp": 21.5, "$metadata": {
    ///         "temp": {"$lastUpdated": "2026-11-28T10:00:00Z"}}}}
    /// }"#)?;
    /// assert_eq!(record.newest(), Some(1_795_860_000_000)); // 10:00, the later
    /// assert_eq!(DeviceRecord::default().newest(), None);
    /// # Ok::<(), failback::format::ReadError>(())
    /// ```
    pub fn newest(&self) -> Option<i64> {
        let times = self.times.as_ref()?;
        std::iter::once(&times.device)
            .chain(times.modules.values())
            .filter_map(newest_of)
            .max()
    }
}

fn newest_of(times: &EntityTimes) -> Option<i64> {
    fn tree(t: &MetaTree) -> Option<i64> {
        t.children
            .values()
            .filter_map(tree)
            .chain(t.last_updated)
            .max()
    }
    [times.status, tree(&times.desired), tree(&times.reported)]
        .into_iter()
        .flatten()
        .max()
}

/// A whole hub file, grouped by device.
///
/// # Example
///
/// ```
/// use failback::format::{parse_input, InputFile};
///
/// let text = concat!(
///     "Warning: query results may be incomplete\n",
///     r#"{"deviceId":"thermostat-7","etag":"AAAAAAAAAAE=","version":3}"#, "\n",
///     r#"{"deviceId":"valve-2","etag":"AAAAAAAAAAI=","version":8}"#, "\n",
/// );
/// let InputFile::Twin(twins) = parse_input("twins.jsonl", text.as_bytes(), None)? else {
///     panic!("a twin file");
/// };
/// assert_eq!(twins.devices.keys().collect::<Vec<_>>(), ["thermostat-7", "valve-2"]);
/// assert_eq!(twins.skipped, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceFile {
    /// The devices by id.
    pub devices: BTreeMap<String, DeviceRecord>,
    /// How many lines were skipped because they do not start with `{`.
    pub skipped: u64,
}

/// The etags to write with a device and its modules: a
/// [`DeviceRecord::etags`], or none for a device to create.
///
/// # Example
///
/// ```
/// use failback::doc::DeviceSnapshot;
/// use failback::format::{write_device, DeviceEtags};
///
/// let snapshot = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
/// let etags = DeviceEtags { etag: Some("NzU5"), ..Default::default() };
/// let mut out = Vec::new();
/// write_device(&mut out, &snapshot, etags)?;
/// assert!(String::from_utf8(out)?.contains(r#""eTag":"NzU5""#));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceEtags<'a> {
    /// The device's `eTag`.
    pub etag: Option<&'a str>,
    /// The device's `twinETag`.
    pub twin_etag: Option<&'a str>,
    /// Each module's `eTag` and `twinETag`.
    pub modules: Option<&'a BTreeMap<String, RecordMeta>>,
}
