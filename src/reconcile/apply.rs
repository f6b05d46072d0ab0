//! Import-mode semantics: what IoT Hub does with each line of an import
//! job, so plans can be dry-run and proved right.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::plan::{SYSTEM_MODULES, is_edge};
use crate::doc::{Authentication, DeviceSnapshot, Entity, Secret};
use crate::format::{DeviceEtags, ImportMode};

/// One line of an import job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportLine {
    /// The mode.
    pub mode: ImportMode,
    /// The device id.
    pub id: String,
    /// The module id, for a module line.
    pub module_id: Option<String>,
    /// `eTag`, checked by the identity `IfMatchETag` modes.
    pub etag: Option<String>,
    /// `twinETag`, checked by `updateTwinIfMatchETag`.
    pub twin_etag: Option<String>,
    /// The identity and twin the line carries.
    pub entity: Entity,
}

/// One record of a hub: a device or a module with its etags.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    /// Identity and twin.
    pub entity: Entity,
    /// The identity etag.
    pub etag: String,
    /// The twin etag.
    pub twin_etag: String,
}

/// A hub's registry as an import job sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HubImage {
    /// The records by device id: looked up by borrowed ids, and a device
    /// deleted with its modules in one step. No entry is ever empty, so
    /// that two hubs holding the same records are equal.
    devices: BTreeMap<String, Held>,
}

/// The records of one device id: the device's, and its modules'.
#[derive(Clone, Debug, Default, PartialEq)]
struct Held {
    device: Option<Record>,
    modules: BTreeMap<String, Record>,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.device.is_none() && self.modules.is_empty()
    }
}

/// A device of a [`HubImage`], borrowed: its record, if the hub holds one,
/// and its modules' records by module id.
#[derive(Clone, Copy, Debug)]
pub struct HeldDevice<'a> {
    /// The device id.
    pub id: &'a str,
    /// The device's own record; `None` for modules inserted without it.
    pub device: Option<&'a Record>,
    /// Its modules' records by module id.
    pub modules: &'a BTreeMap<String, Record>,
}

/// One line of `importErrors.log`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportError {
    /// The device the failed line named.
    pub device_id: String,
    /// The module, for a module line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// IoT Hub's error code.
    pub error_code: &'static str,
    /// A human description.
    pub error_status: String,
}

fn next_etag(previous: &str, salt: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(previous.as_bytes());
    hasher.update([0]);
    hasher.update(salt.as_bytes());
    let digest = hasher.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(18);
    for b in &digest[..9] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

impl HubImage {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a record as read from an export.
    pub fn insert(&mut self, id: &str, module_id: Option<&str>, record: Record) {
        self.put(id, module_id, record);
    }

    fn put(&mut self, id: &str, module_id: Option<&str>, record: Record) {
        let held = match self.devices.get_mut(id) {
            Some(held) => held,
            None => self.devices.entry(id.to_owned()).or_default(),
        };
        match module_id {
            None => held.device = Some(record),
            Some(m) => match held.modules.get_mut(m) {
                Some(slot) => *slot = record,
                None => {
                    held.modules.insert(m.to_owned(), record);
                }
            },
        }
    }

    /// The record of a device or module.
    pub fn get(&self, id: &str, module_id: Option<&str>) -> Option<&Record> {
        let held = self.devices.get(id)?;
        match module_id {
            None => held.device.as_ref(),
            Some(m) => held.modules.get(m),
        }
    }

    fn get_mut(&mut self, id: &str, module_id: Option<&str>) -> Option<&mut Record> {
        let held = self.devices.get_mut(id)?;
        match module_id {
            None => held.device.as_mut(),
            Some(m) => held.modules.get_mut(m),
        }
    }

    /// Every record in (id, module id) order, devices before their modules.
    pub fn records(&self) -> impl Iterator<Item = (&str, Option<&str>, &Record)> + '_ {
        self.devices.iter().flat_map(|(id, held)| {
            let id = id.as_str();
            held.device.iter().map(move |r| (id, None, r)).chain(
                held.modules
                    .iter()
                    .map(move |(m, r)| (id, Some(m.as_str()), r)),
            )
        })
    }

    /// The device `id` with its modules, borrowed; `None` when the hub
    /// holds no record of it.
    pub fn device(&self, id: &str) -> Option<HeldDevice<'_>> {
        let (id, held) = self.devices.get_key_value(id)?;
        Some(HeldDevice {
            id,
            device: held.device.as_ref(),
            modules: &held.modules,
        })
    }

    /// Every device with its modules, borrowed, in id order.
    pub fn devices(&self) -> impl Iterator<Item = HeldDevice<'_>> + '_ {
        self.devices.iter().map(|(id, held)| HeldDevice {
            id,
            device: held.device.as_ref(),
            modules: &held.modules,
        })
    }

    /// The hub as device snapshots (etags dropped).
    pub fn snapshots(&self) -> BTreeMap<String, DeviceSnapshot> {
        self.devices
            .iter()
            .map(|(id, held)| {
                let device = DeviceSnapshot {
                    id: id.clone(),
                    device: held
                        .device
                        .as_ref()
                        .map(|r| r.entity.clone())
                        .unwrap_or_default(),
                    modules: held
                        .modules
                        .iter()
                        .map(|(m, r)| (m.clone(), r.entity.clone()))
                        .collect(),
                };
                (id.clone(), device)
            })
            .collect()
    }

    /// Runs an import job: each line in order, a failed line logged and
    /// skipped, as IoT Hub does. Returns the error log. An edge device
    /// (`capabilities.iotEdge`) written without its system modules gets them
    /// ([`SYSTEM_MODULES`](super::SYSTEM_MODULES)) with empty twins and
    /// keys of their own, as the hub creates them.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::ImportMode;
    /// use failback::reconcile::{HubImage, ImportLine};
    ///
    /// let mut hub = HubImage::new();
    /// let create = ImportLine { mode: ImportMode::Create, id: "d1".into(), ..Default::default() };
    /// assert!(hub.apply(&[create.clone()]).is_empty());
    /// let errors = hub.apply(&[create]); // already there
    /// assert_eq!(errors[0].error_code, "DeviceAlreadyExists");
    /// ```
    pub fn apply(&mut self, lines: &[ImportLine]) -> Vec<ImportError> {
        let mut errors = Vec::new();
        for line in lines {
            if let Err(e) = self.apply_line(line, Cow::Borrowed(&line.entity)) {
                errors.push(e);
            }
        }
        errors
    }

    /// [`HubImage::apply`] taking the lines: each written entity is moved
    /// into the hub instead of copied.
    ///
    /// ```
    /// use failback::format::ImportMode;
    /// use failback::reconcile::{HubImage, ImportLine};
    ///
    /// let (mut one, mut two) = (HubImage::new(), HubImage::new());
    /// let create = ImportLine { mode: ImportMode::Create, id: "d1".into(), ..Default::default() };
    /// assert!(one.apply(&[create.clone()]).is_empty());
    /// assert!(two.apply_owned(vec![create]).is_empty());
    /// assert_eq!(one, two);
    /// ```
    pub fn apply_owned(&mut self, lines: Vec<ImportLine>) -> Vec<ImportError> {
        let mut errors = Vec::new();
        for mut line in lines {
            let entity = std::mem::take(&mut line.entity);
            if let Err(e) = self.apply_line(&line, Cow::Owned(entity)) {
                errors.push(e);
            }
        }
        errors
    }

    /// Applies one line whose entity is `entity` (`line.entity` is not
    /// read): a failed line changes nothing.
    fn apply_line(
        &mut self,
        line: &ImportLine,
        entity: Cow<'_, Entity>,
    ) -> Result<(), ImportError> {
        use ImportMode as M;
        let id = line.id.as_str();
        let module_id = line.module_id.as_deref();
        let fail = |code: &'static str, status: String| ImportError {
            device_id: line.id.clone(),
            module_id: line.module_id.clone(),
            error_code: code,
            error_status: status,
        };
        let what = || match module_id {
            Some(m) => format!("module {id}/{m}"),
            None => format!("device {id}"),
        };
        let not_found = || fail("DeviceNotFound", format!("{} not found", what()));
        let etag_mismatch = || {
            fail(
                "PreconditionFailed",
                format!("{}: etag does not match", what()),
            )
        };
        let present = self.get(id, module_id);
        if module_id.is_some() && present.is_none() && self.get(id, None).is_none() {
            return Err(not_found());
        }
        let etag_ok = |r: &Record| line.etag.as_deref() == Some(r.etag.as_str());
        match (line.mode, present) {
            (M::Create | M::CreateOrUpdate | M::CreateOrUpdateIfMatchETag, None) => {
                self.write_identity(id, module_id, entity);
                Ok(())
            }
            (M::Create, Some(_)) => Err(fail(
                "DeviceAlreadyExists",
                format!("{} already exists", what()),
            )),
            (
                M::Update
                | M::UpdateIfMatchETag
                | M::Delete
                | M::DeleteIfMatchETag
                | M::UpdateTwin
                | M::UpdateTwinIfMatchETag,
                None,
            ) => Err(not_found()),
            (
                M::UpdateIfMatchETag | M::CreateOrUpdateIfMatchETag | M::DeleteIfMatchETag,
                Some(r),
            ) if !etag_ok(r) => Err(etag_mismatch()),
            (M::UpdateTwinIfMatchETag, Some(r))
                if line.twin_etag.as_deref() != Some(r.twin_etag.as_str()) =>
            {
                Err(etag_mismatch())
            }
            (
                M::Update | M::UpdateIfMatchETag | M::CreateOrUpdate | M::CreateOrUpdateIfMatchETag,
                Some(_),
            ) => {
                self.write_identity(id, module_id, entity);
                Ok(())
            }
            (M::Delete | M::DeleteIfMatchETag, Some(_)) => {
                match module_id {
                    // A device goes with its modules.
                    None => {
                        self.devices.remove(id);
                    }
                    Some(m) => {
                        if let Some(held) = self.devices.get_mut(id) {
                            held.modules.remove(m);
                            if held.is_empty() {
                                self.devices.remove(id);
                            }
                        }
                    }
                }
                Ok(())
            }
            (M::UpdateTwin | M::UpdateTwinIfMatchETag, Some(_)) => {
                if let Some(record) = self.get_mut(id, module_id) {
                    match entity {
                        Cow::Borrowed(twin) => {
                            record.entity.tags.clone_from(&twin.tags);
                            record.entity.desired.clone_from(&twin.desired);
                            record.entity.reported.clone_from(&twin.reported);
                        }
                        Cow::Owned(twin) => {
                            record.entity.tags = twin.tags;
                            record.entity.desired = twin.desired;
                            record.entity.reported = twin.reported;
                        }
                    }
                    record.twin_etag = next_etag(&record.twin_etag, "twin");
                }
                Ok(())
            }
        }
    }

    /// Creates the system modules an edge device lacks, as the hub does:
    /// empty twins and keys of their own.
    fn create_system_modules(&mut self, id: &str) {
        for module in SYSTEM_MODULES {
            if self.get(id, Some(module)).is_none() {
                self.write_identity(id, Some(module), Cow::Owned(Entity::default()));
            }
        }
    }

    /// Writes a whole identity (and the twin sections the line carries). An
    /// identity without keys (no `authentication`, or SAS without both
    /// keys) gets fresh SAS keys, as IoT Hub generates them; here they are
    /// derived from the etag so runs repeat.
    fn write_identity(&mut self, id: &str, module_id: Option<&str>, entity: Cow<'_, Entity>) {
        if module_id.is_none() && is_edge(&entity) {
            self.create_system_modules(id);
        }
        let previous = self.get(id, module_id);
        let etag = next_etag(previous.map_or("", |r| r.etag.as_str()), id);
        let twin_etag = next_etag(previous.map_or("", |r| r.twin_etag.as_str()), "twin");
        let mut entity = entity.into_owned();
        if entity.lacks_keys() {
            let seed = format!("{id}/{}/{etag}", module_id.unwrap_or(""));
            let key = |salt: &str| {
                Secret::from_key_bytes(&Sha256::digest(format!("{seed}\u{0}{salt}").as_bytes()))
            };
            entity.authentication = Some(Authentication::sas(key("primary"), key("secondary")));
        }
        self.put(
            id,
            module_id,
            Record {
                entity,
                etag,
                twin_etag,
            },
        );
    }
}

impl From<crate::format::ExportLine> for ImportLine {
    fn from(line: crate::format::ExportLine) -> Self {
        Self {
            mode: line.import_mode,
            id: line.id,
            module_id: line.module_id,
            etag: line.etag,
            twin_etag: line.twin_etag,
            entity: line.entity,
        }
    }
}

impl HubImage {
    /// The hub a file of any format describes, etags included (a twin
    /// file's devices carry no keys; an identity file has no twin etags).
    pub fn from_input(input: &crate::format::InputFile) -> Self {
        use crate::format::InputFile;
        match input {
            InputFile::Export(file) | InputFile::Identity(file) | InputFile::Twin(file) => {
                Self::from_file(file)
            }
        }
    }

    /// The hub a file's devices describe, etags included.
    pub fn from_file(file: &crate::format::DeviceFile) -> Self {
        let mut image = Self::new();
        let none = crate::format::RecordMeta::default();
        for (id, device) in &file.devices {
            let record = |entity: &Entity, meta: &crate::format::RecordMeta| Record {
                entity: entity.clone(),
                etag: meta.etag.clone().unwrap_or_default(),
                twin_etag: meta.twin_etag.clone().unwrap_or_default(),
            };
            image.insert(id, None, record(&device.snapshot.device, &device.meta));
            for (module_id, entity) in &device.snapshot.modules {
                let meta = device.modules.get(module_id).unwrap_or(&none);
                image.insert(id, Some(module_id), record(entity, meta));
            }
        }
        image
    }

    /// Writes the hub as an export file: devices before their modules,
    /// with etags.
    ///
    /// # Errors
    ///
    /// Any error of `w`.
    pub fn write_export<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        self.devices().try_for_each(|d| d.write_export(w))
    }
}

impl HeldDevice<'_> {
    /// Whether these are the records an export line of `device` with
    /// `etags` describes ([`HubImage::from_file`]): the device's record
    /// and exactly the modules', entities and etags equal (an etag not
    /// given is empty).
    pub fn is(&self, device: &DeviceSnapshot, etags: DeviceEtags<'_>) -> bool {
        fn same(r: &Record, entity: &Entity, etag: Option<&str>, twin: Option<&str>) -> bool {
            r.etag == etag.unwrap_or("") && r.twin_etag == twin.unwrap_or("") && r.entity == *entity
        }
        let modules = &device.modules;
        self.device
            .is_some_and(|r| same(r, &device.device, etags.etag, etags.twin_etag))
            && self.modules.len() == modules.len()
            && self.modules.iter().zip(modules).all(|((m, r), (em, e))| {
                let of = etags.modules.and_then(|t| t.get(em));
                m == em
                    && same(
                        r,
                        e,
                        of.and_then(|t| t.etag.as_deref()),
                        of.and_then(|t| t.twin_etag.as_deref()),
                    )
            })
    }

    /// Writes the device's lines of an export file, as
    /// [`HubImage::write_export`] does: the device's, then its modules'.
    ///
    /// # Errors
    ///
    /// Any error of `w`.
    pub fn write_export<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        let records = self
            .device
            .map(|r| (None, r))
            .into_iter()
            .chain(self.modules.iter().map(|(m, r)| (Some(m.as_str()), r)));
        for (module_id, record) in records {
            let line = crate::format::ExportLineRef {
                id: self.id,
                module_id,
                etag: Some(&record.etag),
                twin_etag: Some(&record.twin_etag),
                import_mode: None,
                entity: &record.entity,
            };
            crate::format::write_export_line(w, &line)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::RecordMeta;

    fn module_etags(etag: &str, twin_etag: &str) -> BTreeMap<String, RecordMeta> {
        let meta = RecordMeta {
            etag: Some(etag.to_owned()),
            twin_etag: Some(twin_etag.to_owned()),
            ..RecordMeta::default()
        };
        [("probe".to_owned(), meta)].into()
    }

    /// The hub creates an edge device's system modules with it (and when a
    /// device becomes one), empty, with keys of their own; deleting the
    /// device deletes them.
    #[test]
    fn an_edge_device_gets_its_system_modules() {
        let mut hub = HubImage::new();
        let mut line = ImportLine {
            mode: ImportMode::Create,
            id: "gw".into(),
            ..ImportLine::default()
        };
        line.entity.capabilities = Some(serde_json::json!({"iotEdge": true}));
        assert!(hub.apply(std::slice::from_ref(&line)).is_empty());
        let made: Vec<_> = hub.records().map(|(_, m, _)| m).collect();
        assert_eq!(made, [None, Some("$edgeAgent"), Some("$edgeHub")]);
        let agent = hub.get("gw", Some("$edgeAgent")).map(|r| &r.entity);
        assert!(agent.is_some_and(|e| e.authentication.is_some() && e.desired.is_empty()));
        let delete = ImportLine {
            mode: ImportMode::Delete,
            id: "gw".into(),
            ..ImportLine::default()
        };
        assert!(hub.apply(&[delete]).is_empty());
        assert_eq!(hub.records().count(), 0);
        // A plain device gets none; made an edge device, it gets them.
        line.entity.capabilities = None;
        assert!(hub.apply(std::slice::from_ref(&line)).is_empty());
        assert_eq!(hub.records().count(), 1);
        line.mode = ImportMode::Update;
        line.entity.capabilities = Some(serde_json::json!({"iotEdge": true}));
        assert!(hub.apply(&[line]).is_empty());
        assert_eq!(hub.records().count(), 3);
    }

    /// A module read before (or without) its device is held alone; deleting
    /// it leaves nothing behind, so the hub equals one that never held it.
    #[test]
    fn deleting_a_module_held_alone_leaves_an_empty_hub() {
        let mut hub = HubImage::new();
        let record = Record {
            entity: Entity::default(),
            etag: "e1".into(),
            twin_etag: "t1".into(),
        };
        hub.insert("pump", Some("probe"), record);
        assert!(hub.device("pump").is_some_and(|d| d.device.is_none()));
        let delete = ImportLine {
            mode: ImportMode::Delete,
            id: "pump".into(),
            module_id: Some("probe".into()),
            ..ImportLine::default()
        };
        assert!(hub.apply(&[delete]).is_empty());
        assert!(hub.device("pump").is_none());
        assert_eq!(hub, HubImage::new());
    }

    /// A held device is what an export gave only when its entity and both
    /// its etags, and each module's, are the export's.
    #[test]
    fn a_held_device_is_an_export_device_only_with_the_same_etags() {
        let mut hub = HubImage::new();
        let record = |etag: &str, twin: &str| Record {
            entity: Entity::default(),
            etag: etag.into(),
            twin_etag: twin.into(),
        };
        hub.insert("pump", None, record("e1", "t1"));
        hub.insert("pump", Some("probe"), record("m1", "mt1"));
        let snapshot = &hub.snapshots()["pump"];
        let held = hub.device("pump").unwrap();
        let modules = module_etags("m1", "mt1");
        let etags = |etag, twin_etag| DeviceEtags {
            etag,
            twin_etag,
            modules: Some(&modules),
        };
        assert!(held.is(snapshot, etags(Some("e1"), Some("t1"))));
        assert!(!held.is(snapshot, etags(Some("e2"), Some("t1"))));
        assert!(!held.is(snapshot, etags(Some("e1"), Some("t2"))));
        assert!(!held.is(snapshot, etags(None, Some("t1"))));
        let other = module_etags("m1", "mt2");
        let module_differs = DeviceEtags {
            modules: Some(&other),
            ..etags(Some("e1"), Some("t1"))
        };
        assert!(!held.is(snapshot, module_differs));
        let mut changed = snapshot.clone();
        changed
            .device
            .desired
            .insert("fan".into(), serde_json::json!(2));
        assert!(!held.is(&changed, etags(Some("e1"), Some("t1"))));
    }
}
