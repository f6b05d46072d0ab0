//! Continuous replication in the drill: the secondary's site keeps a
//! replica of the primary built from the primary's change events, and at
//! failover the secondary is seeded from it rather than from the last
//! export backup.
//!
//! Each primary write after the backup makes the events the hub emits for
//! it: a `createDeviceIdentity` (and a `createModuleIdentity` per module)
//! for a creation, `deleteDeviceIdentity` / `deleteModuleIdentity`, and an
//! `updateTwin` per changed device or module with the changed parts (tags,
//! desired and reported leaves, `null` for a removal, status). A key
//! rotation makes none: events never carry keys. The events of a write
//! reach the secondary's site after a lag drawn up to the cycle's
//! replication lag, some twice, in the order they arrive (so reordered),
//! in the envelope of a real endpoint drawn per device (lifecycle events
//! through Event Grid or CloudEvents go with twin changes through a
//! route). What arrives by the failover is written as the endpoint writes
//! it, read back by [`EventReader`], and ingested into a
//! [`Replica`] seeded from the backup export; what is still in flight is
//! lost.
//!
//! Devices never interact, so each device has its own replica, built only
//! when an event of it arrived: the secondary is then seeded with the
//! replica's device, its keys from the backup. A device the replica holds
//! a creation of since the backup is not seeded from it: its keys are in
//! no event and no backup, and creating it without them would make the
//! hub generate new ones. It keeps the backup's state, and is counted.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::oracle::{Hub, Op};
use super::rng::Rng;
use super::sim::stream;
use crate::clock::ReplicaId;
use crate::doc::{DeviceSnapshot, Entity, JsonMap, base64};
use crate::format::{
    DeviceEtags, Envelope, EventReader, ExportReader, Op as EventOp, collect_export, format_time,
    write_device,
};
use crate::replica::{Replica, Seed};

/// How the secondary is kept in step with the primary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Replication {
    /// From the last export backup only (the platform's RPO).
    Export,
    /// From a replica of the primary's change events, seeded from the
    /// backup.
    Events,
    /// As `Events`, and the loss the export backup alone would have given
    /// is reported beside it.
    #[default]
    Both,
}

impl Replication {
    /// Every mode, in the order of their names.
    pub const ALL: [Replication; 3] = [Replication::Export, Replication::Events, Replication::Both];

    /// The mode's name, as `--replication` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Replication::Export => "export",
            Replication::Events => "events",
            Replication::Both => "both",
        }
    }

    /// Whether the secondary is seeded from the event replica.
    pub fn uses_events(self) -> bool {
        self != Replication::Export
    }
}

impl std::fmt::Display for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A name that is no [`Replication`] mode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown replication {0:?}, expected export, events or both")]
pub struct UnknownReplication(pub String);

impl FromStr for Replication {
    type Err = UnknownReplication;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Replication::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| UnknownReplication(name.to_owned()))
    }
}

/// Writes and values lost with the primary's region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loss {
    /// Writes no hub holds after failback.
    pub writes: u64,
    /// The values they set (a delete counts one).
    pub values: u64,
}

impl Loss {
    fn add(&mut self, o: &Loss) {
        self.writes += o.writes;
        self.values += o.values;
    }

    pub(crate) fn count(&mut self, values: usize) {
        self.writes += 1;
        self.values += values.max(1) as u64;
    }
}

/// What continuous replication did, over the fleet and every cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicationCounts {
    /// Events the primary emitted between the backup and the failover.
    pub events: u64,
    /// Records the secondary's site received by the failover, duplicates
    /// included.
    pub delivered: u64,
    /// Of those, second deliveries of an event.
    pub duplicates: u64,
    /// Events still in flight at the failover: lost.
    pub in_flight: u64,
    /// Records received per envelope.
    pub envelopes: BTreeMap<&'static str, u64>,
    /// Devices the secondary was seeded with from the event replica.
    pub seeded: u64,
    /// Devices the replica held a creation of since the backup, so with
    /// keys no event carries: seeded from the backup instead.
    pub keyless: u64,
    /// What the export backup alone loses: every primary write after the
    /// point its region was restored to.
    pub lost_export: Loss,
    /// What is lost with the event replica (zero unless events are used).
    pub lost_events: Loss,
    /// Of `lost_events`, writes whose events were in flight at failover.
    pub lost_in_flight: Loss,
    /// Of `lost_events`, writes no event carries (key rotations).
    pub lost_no_event: Loss,
    /// Of `lost_events`, writes of devices seeded from the backup for
    /// want of keys.
    pub lost_keyless: Loss,
}

impl ReplicationCounts {
    /// Adds another part's counts.
    pub fn add(&mut self, o: &ReplicationCounts) {
        self.events += o.events;
        self.delivered += o.delivered;
        self.duplicates += o.duplicates;
        self.in_flight += o.in_flight;
        for (k, v) in &o.envelopes {
            *self.envelopes.entry(k).or_default() += v;
        }
        self.seeded += o.seeded;
        self.keyless += o.keyless;
        self.lost_export.add(&o.lost_export);
        self.lost_events.add(&o.lost_events);
        self.lost_in_flight.add(&o.lost_in_flight);
        self.lost_no_event.add(&o.lost_no_event);
        self.lost_keyless.add(&o.lost_keyless);
    }
}

/// The replication lag of cycle `c`: events arrive up to this long after
/// their write.
pub(crate) fn cycle_lag(seed: u64, c: usize) -> i64 {
    let mut rng = Rng::derive(seed, &[stream::EVENTS, c as u64]);
    rng.range(2_000, 60_001)
}

/// One event on its way: canonical parts, written in an envelope when it
/// arrives.
struct Record {
    module: Option<String>,
    op: EventOp,
    time: i64,
    correlation: String,
    body: Value,
    /// When it reaches the secondary's site.
    arrives: i64,
}

/// One device's events over one cycle, from the backup to the failover.
pub(crate) struct Feed {
    rng: Rng,
    lag: i64,
    fail: i64,
    /// The time of the last event of a write the primary kept.
    kept_until: i64,
    version: u64,
    last_time: i64,
    records: Vec<Record>,
    /// A creation of the device or a module arrived: the replica's device
    /// has an entity whose keys no event gave.
    created: bool,
    pub(crate) counts: ReplicationCounts,
}

/// A device as the event replica seeds the secondary with it.
pub(crate) struct Seeded {
    /// The replica's device, keys from the backup.
    pub seed: Option<DeviceSnapshot>,
    /// The replica's device from the events of writes the primary kept:
    /// the state both the seeded secondary and the restored primary
    /// descend from, the base of the merge.
    pub base: Option<DeviceSnapshot>,
}

/// What the replica made of a device at failover.
pub(crate) struct Derived {
    /// The replica's device (without keys), for the checks.
    pub replica: Option<DeviceSnapshot>,
    /// What to seed the secondary with; `None` when it keeps the backup.
    pub seeded: Option<Seeded>,
}

fn hub_name() -> &'static str {
    Hub::Primary.name()
}

/// The twin body of an entity as a lifecycle event carries it.
fn twin_body(id: &str, module: Option<&str>, e: &Entity, version: u64) -> Value {
    let mut m = Map::new();
    m.insert("deviceId".into(), json!(id));
    if let Some(module) = module {
        m.insert("moduleId".into(), json!(module));
    }
    m.insert("version".into(), json!(version));
    identity_fields(&mut m, e);
    m.insert("tags".into(), Value::Object(JsonMap::clone(&e.tags)));
    m.insert(
        "properties".into(),
        json!({"desired": e.desired, "reported": e.reported}),
    );
    Value::Object(m)
}

fn identity_fields(m: &mut Map<String, Value>, e: &Entity) {
    if let Some(s) = &e.status {
        m.insert(
            "status".into(),
            serde_json::to_value(s.status).unwrap_or(Value::Null),
        );
        if let Some(reason) = &s.reason {
            m.insert("statusReason".into(), json!(reason));
        }
    }
    if let Some(c) = &e.capabilities {
        m.insert("capabilities".into(), c.clone());
    }
    if let Some(s) = &e.device_scope {
        m.insert("deviceScope".into(), json!(s));
    }
    if let Some(p) = &e.parent_scopes {
        m.insert("parentScopes".into(), p.clone());
    }
}

/// The JSON merge patch from `before` to `after`: changed leaves, `null`
/// for a removed key. `None` when they are equal.
fn patch(before: &JsonMap, after: &JsonMap) -> Option<JsonMap> {
    let mut out = JsonMap::new();
    for (k, v) in after {
        match (before.get(k), v) {
            (Some(old), new) if old == new => {}
            (Some(Value::Object(old)), Value::Object(new)) if !new.is_empty() => {
                if let Some(inner) = patch(old, new) {
                    out.insert(k.clone(), Value::Object(inner));
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    for k in before.keys().filter(|k| !after.contains_key(*k)) {
        out.insert(k.clone(), Value::Null);
    }
    (!out.is_empty()).then_some(out)
}

/// The `updateTwin` body of one entity's change: `None` when nothing an
/// event carries changed (a key rotation).
fn update_body(before: &Entity, after: &Entity, version: u64) -> Option<Value> {
    let mut m = Map::new();
    if before.status != after.status
        || before.capabilities != after.capabilities
        || before.device_scope != after.device_scope
        || before.parent_scopes != after.parent_scopes
    {
        identity_fields(&mut m, after);
    }
    if let Some(p) = patch(&before.tags, &after.tags) {
        m.insert("tags".into(), Value::Object(p));
    }
    let desired = patch(&before.desired, &after.desired);
    let reported = patch(&before.reported, &after.reported);
    if desired.is_some() || reported.is_some() {
        let mut props = Map::new();
        if let Some(p) = desired {
            props.insert("desired".into(), Value::Object(p));
        }
        if let Some(p) = reported {
            props.insert("reported".into(), Value::Object(p));
        }
        m.insert("properties".into(), Value::Object(props));
    }
    if m.is_empty() {
        return None;
    }
    m.insert("version".into(), json!(version));
    Some(Value::Object(m))
}

impl Feed {
    /// The feed of device `index` in cycle `c`.
    pub(crate) fn new(seed: u64, c: usize, index: u64, lag: i64, fail: i64) -> Self {
        Self {
            rng: Rng::derive(seed, &[stream::EVENTS, c as u64, index]),
            lag,
            fail,
            kept_until: i64::MIN,
            version: 0,
            last_time: i64::MIN,
            records: Vec::new(),
            created: false,
            counts: ReplicationCounts::default(),
        }
    }

    /// The events of one primary write, from the device `before` and
    /// `after` it; `ghost` for a write the primary then lost with its
    /// region. Returns whether they all arrive by the failover (`None`
    /// when the write makes no event: a key rotation).
    pub(crate) fn write(
        &mut self,
        id: &str,
        change: (Option<&DeviceSnapshot>, Option<&DeviceSnapshot>),
        op: &Op,
        time: i64,
        ghost: bool,
    ) -> Option<bool> {
        let (before, after) = change;
        let written = time;
        // Lifecycle events are ordered by their time: two writes of one
        // device in one millisecond keep their order.
        let time = time.max(self.last_time.saturating_add(1));
        self.last_time = time;
        if !ghost {
            self.kept_until = time;
        }
        let mut made: Vec<(Option<String>, EventOp, Value)> = Vec::new();
        let next = |v: &mut u64| {
            *v += 1;
            *v
        };
        match (op, after) {
            (Op::Create { .. }, Some(d)) => {
                let v = next(&mut self.version);
                made.push((
                    None,
                    EventOp::CreateDevice,
                    twin_body(id, None, &d.device, v),
                ));
                for (m, e) in &d.modules {
                    let v = next(&mut self.version);
                    made.push((
                        Some(m.clone()),
                        EventOp::CreateModule,
                        twin_body(id, Some(m), e, v),
                    ));
                }
            }
            (Op::Delete { .. }, _) => {
                let v = next(&mut self.version);
                made.push((
                    None,
                    EventOp::DeleteDevice,
                    json!({"deviceId": id, "version": v}),
                ));
            }
            (Op::ModuleCreate { module, .. }, Some(d)) => {
                if let Some(e) = d.modules.get(module) {
                    let v = next(&mut self.version);
                    made.push((
                        Some(module.clone()),
                        EventOp::CreateModule,
                        twin_body(id, Some(module), e, v),
                    ));
                }
            }
            (Op::ModuleDelete { module, .. }, _) => {
                let v = next(&mut self.version);
                made.push((
                    Some(module.clone()),
                    EventOp::DeleteModule,
                    json!({"deviceId": id, "moduleId": module, "version": v}),
                ));
            }
            (_, Some(after)) => {
                let none = Entity::default();
                let before_device = before.map_or(&none, |b| &b.device);
                let v = self.version + 1;
                if let Some(body) = update_body(before_device, &after.device, v) {
                    self.version = v;
                    made.push((None, EventOp::UpdateTwin, body));
                }
                for (m, e) in &after.modules {
                    let old = before.and_then(|b| b.modules.get(m)).unwrap_or(&none);
                    let v = self.version + 1;
                    if let Some(body) = update_body(old, e, v) {
                        self.version = v;
                        made.push((Some(m.clone()), EventOp::UpdateTwin, body));
                    }
                }
            }
            _ => {}
        }
        if made.is_empty() {
            return None;
        }
        // The events of one write travel together; a share of them is
        // delivered a second time, later.
        let arrives = written + self.rng.range(0, self.lag + 1);
        let delivered = arrives <= self.fail;
        for (module, op, body) in made {
            self.counts.events += 1;
            if !delivered {
                self.counts.in_flight += 1;
            }
            if matches!(op, EventOp::CreateDevice | EventOp::CreateModule) && delivered {
                self.created = true;
            }
            let n = self.records.len();
            let correlation = format!("{id}-{time}-{n}");
            let again = self
                .rng
                .chance(150)
                .then(|| arrives + self.rng.range(0, self.lag + 1));
            for at in std::iter::once(arrives).chain(again) {
                self.records.push(Record {
                    module: module.clone(),
                    op: op.clone(),
                    time,
                    correlation: correlation.clone(),
                    body: body.clone(),
                    arrives: at,
                });
            }
        }
        Some(delivered)
    }

    /// Whether any event of the device arrived by the failover.
    pub(crate) fn any_arrived(&self) -> bool {
        self.records.iter().any(|r| r.arrives <= self.fail)
    }

    /// At the failover: what arrived is written in the device's envelopes,
    /// read back and ingested into a replica seeded from the backup's
    /// device; the secondary's seed and the merge base are derived from
    /// it.
    ///
    /// # Errors
    ///
    /// What the readers or the replica refused: a drill inconsistency.
    pub(crate) fn failover(
        &mut self,
        id: &str,
        backup: Option<&DeviceSnapshot>,
    ) -> Result<Derived, String> {
        let mut arrived: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| r.arrives <= self.fail)
            .collect();
        arrived.sort_by_key(|r| r.arrives);
        let lifecycle_envelope = *self
            .rng
            .pick(&Envelope::ALL)
            .unwrap_or(&Envelope::Canonical);
        let routed = [
            Envelope::Canonical,
            Envelope::StorageJson,
            Envelope::Avro,
            Envelope::MonitorEvents,
        ];
        let twin_envelope = if routed.contains(&lifecycle_envelope) {
            lifecycle_envelope
        } else {
            *self.rng.pick(&routed).unwrap_or(&Envelope::Canonical)
        };
        let mut files: Vec<(Envelope, Vec<&Record>)> = vec![(lifecycle_envelope, Vec::new())];
        if twin_envelope != lifecycle_envelope {
            files.push((twin_envelope, Vec::new()));
        }
        for r in &arrived {
            let lifecycle = r.op != EventOp::UpdateTwin;
            let slot = if lifecycle || files.len() == 1 { 0 } else { 1 };
            if let Some((_, list)) = files.get_mut(slot) {
                list.push(r);
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for r in &arrived {
            if !seen.insert(r.correlation.as_str()) {
                self.counts.duplicates += 1;
            }
        }
        self.counts.delivered += arrived.len() as u64;

        let hub = ReplicaId::new(hub_name()).map_err(|e| e.to_string())?;
        let mut replica = Replica::new(hub.clone());
        let mut kept = Replica::new(hub);
        if let Some(device) = backup {
            let seed = export_seed(device)?;
            replica.seed(seed.clone()).map_err(|e| e.to_string())?;
            kept.seed(seed).map_err(|e| e.to_string())?;
        }
        for (envelope, records) in &files {
            if records.is_empty() {
                continue;
            }
            *self.counts.envelopes.entry(envelope.as_str()).or_default() += records.len() as u64;
            let bytes = write_records(id, *envelope, records)?;
            let name = format!("{id}.{}", envelope.as_str());
            read_into(
                &bytes,
                &name,
                *envelope,
                self.kept_until,
                &mut replica,
                &mut kept,
            )?;
        }
        let derived = replica.device(id).map(|d| with_id(d.snapshot, id));
        if self.created {
            self.counts.keyless += 1;
            return Ok(Derived {
                replica: derived,
                seeded: None,
            });
        }
        self.counts.seeded += 1;
        let base = kept.device(id).map(|d| with_id(d.snapshot, id));
        let seed = derived.clone().map(|d| keys_from(d, backup));
        let base = base.map(|d| keys_from(d, backup));
        Ok(Derived {
            replica: derived,
            seeded: Some(Seeded { seed, base }),
        })
    }
}

fn with_id(mut d: DeviceSnapshot, id: &str) -> DeviceSnapshot {
    d.id = id.to_owned();
    d
}

/// The device with every entity's keys from the backup's (the replica's
/// entities are all the backup's incarnations: no creation arrived).
fn keys_from(mut d: DeviceSnapshot, backup: Option<&DeviceSnapshot>) -> DeviceSnapshot {
    d.device.authentication = backup.and_then(|b| b.device.authentication.clone());
    for (m, e) in &mut d.modules {
        e.authentication = backup
            .and_then(|b| b.modules.get(m))
            .and_then(|e| e.authentication.clone());
    }
    d
}

/// The backup's device as the replica's seed: written as export lines and
/// read back by the export reader.
fn export_seed(device: &DeviceSnapshot) -> Result<Seed, String> {
    let mut buf = Vec::new();
    write_device(&mut buf, device, DeviceEtags::default()).map_err(|e| e.to_string())?;
    let file = collect_export(ExportReader::new(buf.as_slice(), "backup.jsonl"))
        .map_err(|e| e.to_string())?;
    let read = file
        .devices
        .get(&device.id)
        .ok_or_else(|| format!("the backup of {} does not read back", device.id))?;
    Ok(Seed::from_export(read))
}

/// Reads `bytes` with the event reader and ingests every event into
/// `replica`, and those of writes the primary kept (made at or before
/// `kept_until`) into `kept`.
fn read_into(
    bytes: &[u8],
    name: &str,
    envelope: Envelope,
    kept_until: i64,
    replica: &mut Replica,
    kept: &mut Replica,
) -> Result<(), String> {
    let mut reader = EventReader::new(bytes, name).held();
    for event in reader.by_ref() {
        let event = event.map_err(|e| format!("the replica's events do not read back: {e}"))?;
        if event.time.is_some_and(|t| t <= kept_until) {
            kept.ingest(event.clone())
                .map_err(|e| format!("the replica refused an event: {e}"))?;
        }
        replica
            .ingest(event)
            .map_err(|e| format!("the replica refused an event: {e}"))?;
    }
    if reader.envelope() != Some(envelope) {
        return Err(format!(
            "the events written as {envelope} were read as {:?}",
            reader.envelope()
        ));
    }
    Ok(())
}

fn time_text(ms: i64) -> Result<String, String> {
    format_time(ms).ok_or_else(|| format!("time {ms} out of range"))
}

fn schema(op: &EventOp) -> (&'static str, &'static str) {
    match op {
        EventOp::CreateModule | EventOp::DeleteModule => {
            ("moduleLifecycleNotification", "deviceLifecycleEvents")
        }
        EventOp::UpdateTwin | EventOp::ReplaceTwin => {
            ("twinChangeNotification", "twinChangeEvents")
        }
        _ => ("deviceLifecycleNotification", "deviceLifecycleEvents"),
    }
}

/// The application properties of an event.
fn properties(id: &str, r: &Record) -> Result<Value, String> {
    let mut props = Map::new();
    props.insert("hubName".into(), json!(hub_name()));
    props.insert("deviceId".into(), json!(id));
    if let Some(m) = &r.module {
        props.insert("moduleId".into(), json!(m));
    }
    props.insert("opType".into(), json!(r.op.as_str()));
    props.insert("operationTimestamp".into(), json!(time_text(r.time)?));
    props.insert("iothub-message-schema".into(), json!(schema(&r.op).0));
    Ok(Value::Object(props))
}

const STORAGE_SCHEMA: &str = r#"{"type":"record","name":"Message","namespace":"Microsoft.Azure.Devices","fields":[
  {"name":"EnqueuedTimeUtc","type":"string"},
  {"name":"Properties","type":{"type":"map","values":"string"}},
  {"name":"SystemProperties","type":{"type":"map","values":"string"}},
  {"name":"Body","type":["null","bytes"]}]}"#;

fn storage_schema() -> Result<&'static apache_avro::Schema, String> {
    static SCHEMA: OnceLock<Result<apache_avro::Schema, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| apache_avro::Schema::parse_str(STORAGE_SCHEMA).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

/// The records as the endpoint of `envelope` writes them.
fn write_records(id: &str, envelope: Envelope, records: &[&Record]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    if envelope == Envelope::Avro {
        let schema = storage_schema()?;
        let mut writer = apache_avro::Writer::new(schema, &mut out);
        for r in records {
            use apache_avro::types::Value as Avro;
            let strings = |v: &Value| {
                Avro::Map(
                    v.as_object()
                        .into_iter()
                        .flatten()
                        .filter_map(|(k, v)| {
                            Some((k.clone(), Avro::String(v.as_str()?.to_owned())))
                        })
                        .collect(),
                )
            };
            let enqueued = time_text(r.arrives)?;
            let system = json!({
                "correlationId": r.correlation,
                "enqueuedTime": enqueued,
                "iothub-message-source": schema_source(r),
                "contentType": "application/json",
                "contentEncoding": "utf-8",
            });
            let record = Avro::Record(vec![
                ("EnqueuedTimeUtc".into(), Avro::String(enqueued)),
                ("Properties".into(), strings(&properties(id, r)?)),
                ("SystemProperties".into(), strings(&system)),
                (
                    "Body".into(),
                    Avro::Union(1, Box::new(Avro::Bytes(r.body.to_string().into_bytes()))),
                ),
            ]);
            writer.append(record).map_err(|e| e.to_string())?;
        }
        writer.flush().map_err(|e| e.to_string())?;
        drop(writer);
        return Ok(out);
    }
    let mut grid: Vec<Value> = Vec::new();
    for r in records {
        let props = properties(id, r)?;
        let enqueued = time_text(r.arrives)?;
        let line = match envelope {
            Envelope::Canonical => json!({
                "properties": props,
                "systemProperties": {
                    "correlation-id": r.correlation,
                    "iothub-message-source": schema_source(r),
                    "iothub-enqueuedtime": enqueued,
                },
                "body": r.body,
            }),
            Envelope::StorageJson => json!({
                "EnqueuedTimeUtc": enqueued,
                "Properties": props,
                "SystemProperties": {
                    "correlationId": r.correlation,
                    "connectionDeviceId": id,
                    "enqueuedTime": enqueued,
                    "iothub-message-source": schema_source(r),
                },
                "Body": base64(r.body.to_string().as_bytes()),
            }),
            Envelope::MonitorEvents => json!({"event": {
                "origin": id,
                "module": r.module.as_deref().unwrap_or(""),
                "interface": "",
                "component": "",
                "properties": {
                    "system": {"correlation_id": r.correlation, "content_type": "application/json", "content_encoding": "utf-8"},
                    "application": props,
                },
                "annotations": {"iothub-message-source": schema_source(r), "iothub-enqueuedtime": r.arrives},
                "payload": r.body,
            }}),
            Envelope::EventGrid | Envelope::CloudEvents => {
                let kind = match r.op {
                    EventOp::CreateDevice | EventOp::CreateModule => "DeviceCreated",
                    EventOp::DeleteDevice | EventOp::DeleteModule => "DeviceDeleted",
                    _ => return Err(format!("{} has no Event Grid event type", r.op)),
                };
                let subject = match &r.module {
                    Some(m) => format!("devices/{id}/{m}"),
                    None => format!("devices/{id}"),
                };
                let mut data = Map::new();
                data.insert("hubName".into(), json!(hub_name()));
                data.insert("deviceId".into(), json!(id));
                if let Some(m) = &r.module {
                    data.insert("moduleId".into(), json!(m));
                }
                data.insert("operationTimestamp".into(), json!(time_text(r.time)?));
                data.insert("opType".into(), json!(kind));
                data.insert("twin".into(), r.body.clone());
                let topic = "/SUBSCRIPTIONS/0000/RESOURCEGROUPS/DRILL/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/PRIMARY";
                if envelope == Envelope::EventGrid {
                    grid.push(json!({
                        "id": r.correlation,
                        "topic": topic,
                        "subject": subject,
                        "eventType": format!("Microsoft.Devices.{kind}"),
                        "eventTime": enqueued,
                        "data": data,
                        "dataVersion": "",
                        "metadataVersion": "1",
                    }));
                    continue;
                }
                json!({
                    "id": r.correlation,
                    "source": topic,
                    "specversion": "1.0",
                    "type": format!("Microsoft.Devices.{kind}"),
                    "subject": subject,
                    "time": enqueued,
                    "data": data,
                })
            }
            Envelope::Avro => unreachable_avro()?,
        };
        let text = if envelope == Envelope::MonitorEvents {
            serde_json::to_string_pretty(&line)
        } else {
            serde_json::to_string(&line)
        }
        .map_err(|e| e.to_string())?;
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    }
    if envelope == Envelope::EventGrid {
        let text = serde_json::to_string_pretty(&grid).map_err(|e| e.to_string())?;
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    }
    Ok(out)
}

fn unreachable_avro() -> Result<Value, String> {
    Err("avro records are written by the avro writer".into())
}

fn schema_source(r: &Record) -> &'static str {
    schema(&r.op).1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::write_event_line;

    fn map(v: Value) -> JsonMap {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_patch_carries_changed_leaves_and_nulls_for_removals() {
        let before = map(json!({"a": {"x": 1, "y": 2}, "b": 3, "c": {"z": 1}}));
        let after = map(json!({"a": {"x": 1, "y": 5}, "c": {}, "d": {"e": 1}}));
        let p = patch(&before, &after).map(Value::Object);
        assert_eq!(
            p,
            Some(json!({"a": {"y": 5}, "b": null, "c": {}, "d": {"e": 1}}))
        );
        assert_eq!(patch(&before, &before), None);
    }

    fn record(module: Option<&str>, op: EventOp, time: i64, body: Value) -> Record {
        Record {
            module: module.map(str::to_owned),
            op,
            time,
            correlation: format!("c-{time}"),
            body,
            arrives: time + 5,
        }
    }

    /// What a file's events read back as, canonically.
    fn read_back(bytes: &[u8], envelope: Envelope) -> Vec<String> {
        let mut reader = EventReader::new(bytes, "t");
        let mut out = Vec::new();
        for event in reader.by_ref() {
            let mut event = event.unwrap_or_else(|e| panic!("{envelope}: {e}"));
            // Event Grid carries no correlation id.
            event.correlation_id = None;
            event.line = 0;
            let mut line = Vec::new();
            write_event_line(&mut line, &event).unwrap_or_default();
            out.push(String::from_utf8_lossy(&line).into_owned());
        }
        assert_eq!(reader.envelope(), Some(envelope));
        out
    }

    #[test]
    fn every_envelope_reads_back_as_the_same_events() {
        let t = crate::drill::EPOCH_MS;
        let entity = Entity {
            tags: map(json!({"site": "Bülach"})).into(),
            desired: map(json!({"fan": 2})).into(),
            ..Entity::default()
        };
        let lifecycle = [
            record(
                None,
                EventOp::CreateDevice,
                t,
                twin_body("d1", None, &entity, 1),
            ),
            record(
                Some("m1"),
                EventOp::CreateModule,
                t + 1,
                twin_body("d1", Some("m1"), &entity, 2),
            ),
            record(
                Some("m1"),
                EventOp::DeleteModule,
                t + 3,
                json!({"deviceId": "d1", "moduleId": "m1", "version": 4}),
            ),
        ];
        let update = record(
            None,
            EventOp::UpdateTwin,
            t + 2,
            json!({"version": 3, "properties": {"desired": {"fan": null, "mode": "eco"}}}),
        );
        let all: Vec<&Record> = lifecycle.iter().chain([&update]).collect();
        let only_lifecycle: Vec<&Record> = lifecycle.iter().collect();
        let canonical = write_records("d1", Envelope::Canonical, &all).unwrap_or_default();
        let expected = read_back(&canonical, Envelope::Canonical);
        assert_eq!(expected.len(), 4);
        for envelope in Envelope::ALL {
            let grid = matches!(envelope, Envelope::EventGrid | Envelope::CloudEvents);
            let records = if grid { &only_lifecycle } else { &all };
            let bytes = write_records("d1", envelope, records).unwrap_or_default();
            let want: Vec<&String> = expected
                .iter()
                .filter(|e| !grid || !e.contains("updateTwin"))
                .collect();
            let got = read_back(&bytes, envelope);
            assert_eq!(got.iter().collect::<Vec<_>>(), want, "{envelope}");
        }
        assert!(write_records("d1", Envelope::EventGrid, &all).is_err());
    }
}
