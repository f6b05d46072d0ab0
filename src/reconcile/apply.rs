//! Import-mode semantics: what IoT Hub does with each line of an import
//! job, so plans can be dry-run and proved right.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::plan::{SYSTEM_MODULES, is_edge};
use crate::doc::{Authentication, DeviceSnapshot, Entity, Secret};
use crate::format::ImportMode;

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
    records: BTreeMap<(String, Option<String>), Record>,
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
    let digest = Sha256::digest(format!("{previous}\u{0}{salt}").as_bytes());
    digest[..9].iter().map(|b| format!("{b:02x}")).collect()
}

impl HubImage {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a record as read from an export.
    pub fn insert(&mut self, id: &str, module_id: Option<&str>, record: Record) {
        self.records
            .insert((id.to_owned(), module_id.map(str::to_owned)), record);
    }

    /// The record of a device or module.
    pub fn get(&self, id: &str, module_id: Option<&str>) -> Option<&Record> {
        self.records
            .get(&(id.to_owned(), module_id.map(str::to_owned)))
    }

    /// Every record in (id, module id) order, devices before their modules.
    pub fn records(&self) -> impl Iterator<Item = (&str, Option<&str>, &Record)> + '_ {
        self.records
            .iter()
            .map(|((id, m), r)| (id.as_str(), m.as_deref(), r))
    }

    /// The hub as device snapshots (etags dropped).
    pub fn snapshots(&self) -> BTreeMap<String, DeviceSnapshot> {
        let mut out: BTreeMap<String, DeviceSnapshot> = BTreeMap::new();
        for ((id, module), record) in &self.records {
            let device = out.entry(id.clone()).or_insert_with(|| DeviceSnapshot {
                id: id.clone(),
                ..Default::default()
            });
            match module {
                None => device.device = record.entity.clone(),
                Some(m) => {
                    device.modules.insert(m.clone(), record.entity.clone());
                }
            }
        }
        out
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
            if let Err((code, status)) = self.apply_line(line) {
                errors.push(ImportError {
                    device_id: line.id.clone(),
                    module_id: line.module_id.clone(),
                    error_code: code,
                    error_status: status,
                });
            }
        }
        errors
    }

    fn apply_line(&mut self, line: &ImportLine) -> Result<(), (&'static str, String)> {
        use ImportMode as M;
        let key = (line.id.clone(), line.module_id.clone());
        let what = match &line.module_id {
            Some(m) => format!("module {}/{m}", line.id),
            None => format!("device {}", line.id),
        };
        let not_found = || ("DeviceNotFound", format!("{what} not found"));
        let etag_mismatch = || ("PreconditionFailed", format!("{what}: etag does not match"));
        let present = self.records.get(&key);
        if line.module_id.is_some()
            && present.is_none()
            && !self.records.contains_key(&(line.id.clone(), None))
        {
            return Err(not_found());
        }
        let etag_ok = |r: &Record| line.etag.as_deref() == Some(r.etag.as_str());
        match (line.mode, present) {
            (M::Create | M::CreateOrUpdate | M::CreateOrUpdateIfMatchETag, None) => {
                self.write_identity(key, line);
                Ok(())
            }
            (M::Create, Some(_)) => Err(("DeviceAlreadyExists", format!("{what} already exists"))),
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
                self.write_identity(key, line);
                Ok(())
            }
            (M::Delete | M::DeleteIfMatchETag, Some(_)) => {
                if line.module_id.is_none() {
                    self.records.retain(|(id, _), _| *id != line.id);
                } else {
                    self.records.remove(&key);
                }
                Ok(())
            }
            (M::UpdateTwin | M::UpdateTwinIfMatchETag, Some(_)) => {
                if let Some(record) = self.records.get_mut(&key) {
                    let twin = &line.entity;
                    record.entity.tags = twin.tags.clone();
                    record.entity.desired = twin.desired.clone();
                    record.entity.reported = twin.reported.clone();
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
            let key = (id.to_owned(), Some(module.to_owned()));
            if !self.records.contains_key(&key) {
                let line = ImportLine {
                    mode: ImportMode::Create,
                    id: id.to_owned(),
                    module_id: Some(module.to_owned()),
                    ..ImportLine::default()
                };
                self.write_identity(key, &line);
            }
        }
    }

    /// Writes a whole identity (and the twin sections the line carries). An
    /// identity without `authentication` gets fresh SAS keys, as IoT Hub
    /// generates them; here they are derived from the etag so runs repeat.
    fn write_identity(&mut self, key: (String, Option<String>), line: &ImportLine) {
        if key.1.is_none() && is_edge(&line.entity) {
            self.create_system_modules(&line.id);
        }
        let previous = self.records.get(&key);
        let etag = next_etag(previous.map_or("", |r| r.etag.as_str()), &key.0);
        let twin_etag = next_etag(previous.map_or("", |r| r.twin_etag.as_str()), "twin");
        let mut entity = line.entity.clone();
        if entity.authentication.is_none() {
            let seed = format!("{}/{}/{etag}", key.0, key.1.as_deref().unwrap_or(""));
            let key = |salt: &str| {
                Secret::from_key_bytes(&Sha256::digest(format!("{seed}\u{0}{salt}").as_bytes()))
            };
            entity.authentication = Some(Authentication::sas(key("primary"), key("secondary")));
        }
        self.records.insert(
            key,
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
    /// The hub a file of any format describes, etags included: for a twin
    /// file, `deviceEtag` is the identity's etag and `etag` the twin's
    /// (its devices carry no keys); an identity file has no twin etags.
    pub fn from_input(input: &crate::format::InputFile) -> Self {
        use crate::format::InputFile;
        match input {
            InputFile::Export(export) | InputFile::Identity(export) => Self::from_export(export),
            InputFile::Twin(twins) => {
                let mut image = Self::new();
                for (id, device) in &twins.devices {
                    let record = |entity: &Entity, info: &crate::format::TwinInfo| Record {
                        entity: entity.clone(),
                        etag: info.device_etag.clone().unwrap_or_default(),
                        twin_etag: info.etag.clone().unwrap_or_default(),
                    };
                    image.insert(id, None, record(&device.snapshot.device, &device.twin));
                    let none = crate::format::TwinInfo::default();
                    for (module_id, entity) in &device.snapshot.modules {
                        let info = device.modules.get(module_id).unwrap_or(&none);
                        image.insert(id, Some(module_id), record(entity, info));
                    }
                }
                image
            }
        }
    }

    /// The hub an export file describes, etags included.
    pub fn from_export(export: &crate::format::ExportFile) -> Self {
        let mut image = Self::new();
        for (id, device) in &export.devices {
            let record = |entity: &Entity, etags: (Option<&String>, Option<&String>)| Record {
                entity: entity.clone(),
                etag: etags.0.cloned().unwrap_or_default(),
                twin_etag: etags.1.cloned().unwrap_or_default(),
            };
            let etags = (device.etag.as_ref(), device.twin_etag.as_ref());
            image.insert(id, None, record(&device.snapshot.device, etags));
            for (module_id, entity) in &device.snapshot.modules {
                let etags = device
                    .module_etags
                    .get(module_id)
                    .map_or((None, None), |(e, t)| (e.as_ref(), t.as_ref()));
                image.insert(id, Some(module_id), record(entity, etags));
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
        for (id, module_id, record) in self.records() {
            let line = crate::format::ExportLineRef {
                id,
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
}
