//! Plain, resolved device state: what readers produce and writers consume.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Authentication, Extra, JsonMap, SectionMap, StatusValue};

/// The resolved state of one device or module: identity fields and twin.
///
/// Readers fill it from a file; the three-way import compares snapshots;
/// the merged state is read back into snapshots for the writers.
///
/// # Example
///
/// ```
/// use failback::doc::{Entity, Status, StatusValue};
/// use serde_json::json;
///
/// let mut entity = Entity {
///     status: Some(StatusValue { status: Status::Enabled, reason: None }),
///     ..Entity::default()
/// };
/// entity.tags.insert("site".into(), json!("lyon"));
/// entity.desired.insert("setpoint".into(), json!(21.5));
/// assert_eq!(entity.redacted_json()["properties"]["desired"], json!({ "setpoint": 21.5 }));
/// assert!(entity.authentication.is_none() && entity.reported.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entity {
    /// `status` and `statusReason` (modules usually have none).
    pub status: Option<StatusValue>,
    /// `authentication`; `None` when absent or `null`.
    pub authentication: Option<Authentication>,
    /// `capabilities`, verbatim.
    pub capabilities: Option<Value>,
    /// `deviceScope`.
    pub device_scope: Option<String>,
    /// `parentScopes`, verbatim.
    pub parent_scopes: Option<Value>,
    /// Every other identity field, verbatim (`managedBy`, fields of newer
    /// API versions).
    pub extra: Extra,
    /// Twin `tags`.
    pub tags: SectionMap,
    /// Twin `properties.desired`, without `$metadata` and `$version`.
    pub desired: SectionMap,
    /// Twin `properties.reported`, without `$metadata` and `$version`.
    pub reported: SectionMap,
}

/// The resolved state of one device with its modules.
///
/// # Example
///
/// ```
/// use failback::doc::{DeviceSnapshot, Entity};
/// use serde_json::json;
///
/// let mut gateway = DeviceSnapshot { id: "gateway-1".into(), ..Default::default() };
/// let mut sensor = Entity::default();
/// sensor.reported.insert("temperature".into(), json!(19.5));
/// gateway.modules.insert("sensor".into(), sensor);
/// assert_eq!(gateway.modules["sensor"].reported["temperature"], 19.5);
/// assert!(gateway.device.status.is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceSnapshot {
    /// The device id.
    pub id: String,
    /// The device's own identity and twin.
    pub device: Entity,
    /// Its modules by `moduleId`.
    pub modules: BTreeMap<String, Entity>,
}

/// A twin section as a tree of `$lastUpdated` times (milliseconds since the
/// epoch), mirroring `$metadata`: the time of each node, objects included.
///
/// # Example
///
/// ```
/// use failback::format::DeviceRecord;
///
/// let twin = DeviceRecord::from_twin_json(r#"{"deviceId": "thermostat-7",
///     "properties": {"desired": {"fan": 3, "$metadata": {
///         "$lastUpdated": "2024-03-01T12:00:00Z",
///         "fan": {"$lastUpdated": "2024-03-01T11:00:00Z"}}}}}"#)?;
/// let desired = &twin.times.ok_or("a twin gives times")?.device.desired;
/// assert_eq!(desired.last_updated, Some(1_709_294_400_000));
/// assert_eq!(desired.children["fan"].last_updated, Some(1_709_290_800_000));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetaTree {
    /// `$lastUpdated` of this node, when given.
    pub last_updated: Option<i64>,
    /// The metadata of the node's children.
    pub children: BTreeMap<String, MetaTree>,
}

impl DeviceSnapshot {
    /// A device as a hub holds it right after `create`: enabled, with
    /// SAS keys, an empty twin and no modules.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{DeviceSnapshot, Status};
    ///
    /// let d = DeviceSnapshot::enabled_sas("d1", "cHJpbWFyeQAAAAAAAAAAAA==", "c2Vjb25kYXJ5AAAAAAAAAA==");
    /// assert_eq!(d.device.status.as_ref().map(|s| s.status), Some(Status::Enabled));
    /// assert!(d.device.tags.is_empty() && d.modules.is_empty());
    /// assert!(!format!("{d:?}").contains("cHJpbWFyeQAAAAAAAAAAAA=="));
    /// ```
    pub fn enabled_sas(id: impl Into<String>, primary: &str, secondary: &str) -> Self {
        Self {
            id: id.into(),
            device: Entity {
                status: Some(StatusValue {
                    status: super::Status::Enabled,
                    reason: None,
                }),
                authentication: Some(Authentication::sas(
                    super::Secret::new(primary),
                    super::Secret::new(secondary),
                )),
                ..Entity::default()
            },
            modules: BTreeMap::new(),
        }
    }
}

impl MetaTree {
    /// The time of the node at `path`, or of its nearest ancestor that
    /// has one.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::MetaTree;
    ///
    /// let mut desired = MetaTree { last_updated: Some(1_000), ..MetaTree::default() };
    /// let fan = MetaTree { last_updated: Some(2_000), ..MetaTree::default() };
    /// desired.children.insert("fan".into(), fan);
    /// assert_eq!(desired.time_at(&["fan"]), Some(2_000));
    /// assert_eq!(desired.time_at(&["fan", "speed"]), Some(2_000)); // its nearest ancestor's
    /// assert_eq!(desired.time_at(&["mode"]), Some(1_000));
    /// ```
    pub fn time_at(&self, path: &[&str]) -> Option<i64> {
        let mut node = self;
        let mut best = self.last_updated;
        for key in path {
            match node.children.get(*key) {
                Some(child) => {
                    node = child;
                    best = child.last_updated.or(best);
                }
                None => break,
            }
        }
        best
    }
}

/// When the parts of an entity were last written, as a twin file tells.
///
/// # Example
///
/// ```
/// use failback::format::DeviceRecord;
///
/// let twin = DeviceRecord::from_twin_json(r#"{"deviceId": "thermostat-7",
///     "status": "enabled", "statusUpdateTime": "2024-03-01T12:00:00Z",
///     "properties": {"reported": {"temperature": 19.5, "$metadata": {
///         "temperature": {"$lastUpdated": "2024-03-01T12:05:00Z"}}}}}"#)?;
/// let times = twin.times.ok_or("a twin gives times")?.device;
/// assert_eq!(times.status, Some(1_709_294_400_000));
/// assert_eq!(times.reported.time_at(&["temperature"]), Some(1_709_294_700_000));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntityTimes {
    /// `statusUpdateTime`.
    pub status: Option<i64>,
    /// `properties.desired.$metadata`.
    pub desired: MetaTree,
    /// `properties.reported.$metadata`.
    pub reported: MetaTree,
}

/// When the parts of a device and its modules were last written.
///
/// # Example
///
/// ```
/// use failback::doc::{DeviceSnapshot, DeviceTimes, HubState, Policies};
/// use failback::{ReplicaId, Stamp};
///
/// // The twin file says the device's status was set at 12:00.
/// let mut times = DeviceTimes::default();
/// times.device.status = Some(1_709_294_400_000);
/// assert!(times.modules.is_empty());
///
/// let device = DeviceSnapshot::enabled_sas("thermostat-7", "cHJpbWFyeQAAAAAAAAAAAA==", "c2Vjb25kYXJ5AAAAAAAAAA==");
/// let mut state = HubState::new();
/// assert!(state.put_device(&device, &Stamp::new(0, 0, ReplicaId::new("primary")?), Some(&times)));
/// assert!(state.read_device("thermostat-7", &Policies::default(), &mut Vec::new()).is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceTimes {
    /// The device's own times.
    pub device: EntityTimes,
    /// Each module's times.
    pub modules: BTreeMap<String, EntityTimes>,
}

impl Entity {
    /// Whether writing its identity makes the hub generate keys: no
    /// `authentication`, or SAS without both keys
    /// ([`Authentication::lacks_keys`]).
    pub(crate) fn lacks_keys(&self) -> bool {
        self.authentication
            .as_ref()
            .is_none_or(Authentication::lacks_keys)
    }

    /// The entity in export shape (identity fields, `tags`, `properties`),
    /// with secrets as fingerprints: what conflict records show of a whole
    /// losing device.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::DeviceSnapshot;
    ///
    /// let key = "cHJpbWFyeQAAAAAAAAAAAA==";
    /// let device = DeviceSnapshot::enabled_sas("thermostat-7", key, "c2Vjb25kYXJ5AAAAAAAAAA==");
    /// let shown = device.device.redacted_json();
    /// assert_eq!(shown["status"], "enabled");
    /// let primary = shown["authentication"]["symmetricKey"]["primaryKey"].as_str().ok_or("a key")?;
    /// assert!(primary.starts_with("sha256:"));
    /// assert!(!shown.to_string().contains(key));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn redacted_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        if let Some(status) = &self.status {
            out.insert(
                "status".into(),
                serde_json::to_value(status.status).unwrap_or(Value::Null),
            );
            if let Some(reason) = &status.reason {
                out.insert("statusReason".into(), Value::String(reason.clone()));
            }
        }
        out.insert(
            "authentication".into(),
            self.authentication
                .as_ref()
                .map_or(Value::Null, Authentication::redacted),
        );
        if let Some(v) = &self.capabilities {
            out.insert("capabilities".into(), v.clone());
        }
        if let Some(v) = &self.device_scope {
            out.insert("deviceScope".into(), Value::String(v.clone()));
        }
        if let Some(v) = &self.parent_scopes {
            out.insert("parentScopes".into(), v.clone());
        }
        for (k, v) in &self.extra {
            out.insert(k.clone(), v.clone());
        }
        out.insert("tags".into(), Value::Object(JsonMap::clone(&self.tags)));
        let mut props = serde_json::Map::new();
        props.insert(
            "desired".into(),
            Value::Object(JsonMap::clone(&self.desired)),
        );
        props.insert(
            "reported".into(),
            Value::Object(JsonMap::clone(&self.reported)),
        );
        out.insert("properties".into(), Value::Object(props));
        Value::Object(out)
    }
}
