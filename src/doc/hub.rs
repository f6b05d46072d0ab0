//! The state of one hub replica: every device document and the context of
//! every write seen.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::conflict::Conflict;
use super::device::{self, DeviceDoc, Lineage};
use super::entity::EntityStamps;
use super::policy::Policies;
use super::twin::Section;
use super::write::Write;
use super::{DeviceSnapshot, DeviceTimes, EntityTimes, JsonMap};
use crate::appmeta::AppDocument;
use crate::clock::{ReplicaId, Stamp, VersionVector};
use crate::kernel::{Causal, CausalContext, DotStore, Merge};

/// All device documents of a hub replica, with the causal context of every
/// write seen.
///
/// Local writes ([`HubState::put_device`], [`HubState::delete_device`],
/// [`HubState::patch_twin`]) take a fresh dot of the writing replica and
/// supersede everything the state has seen. [`Merge::merge`] joins two
/// states; [`HubState::read_device`] applies the policies.
///
/// # Laws
///
/// Merge is commutative, associative and idempotent; the serialized form
/// ([`HubState::to_canonical_json`]) is a function of the state alone.
///
/// # Example
///
/// ```
/// use failback::doc::{DeviceSnapshot, HubState, Policies, Status, StatusValue};
/// use failback::kernel::Merge;
/// use failback::{ReplicaId, Stamp};
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let mut device = DeviceSnapshot { id: "d1".into(), ..Default::default() };
/// device.device.status = Some(StatusValue { status: Status::Enabled, reason: None });
///
/// let base_hub = ReplicaId::new("base")?;
/// let mut base = HubState::new();
/// base.put_device(&base_hub, &device, &Stamp::new(0, 0, base_hub.clone()), None);
///
/// // The secondary disables the device; the primary concurrently writes a tag.
/// let mut secondary = base.clone();
/// let mut disabled = device.clone();
/// disabled.device.status = Some(StatusValue { status: Status::Disabled, reason: Some("stolen".into()) });
/// secondary.put_device(&s, &disabled, &Stamp::new(2, 0, s.clone()), None);
/// let mut primary = base.clone();
/// let mut tagged = device.clone();
/// tagged.device.tags.insert("site".into(), "berlin".into());
/// primary.put_device(&p, &tagged, &Stamp::new(1, 0, p.clone()), None);
///
/// primary.merge(&secondary);
/// let mut conflicts = Vec::new();
/// let merged = primary.read_device("d1", &Policies::default(), &mut conflicts).unwrap();
/// assert_eq!(merged.device.status.unwrap().status, Status::Disabled);
/// assert_eq!(merged.device.tags["site"], "berlin");
/// assert!(conflicts.is_empty()); // different fields never conflict
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HubState {
    #[serde(flatten)]
    doc: Causal<Devices>,
    /// The solution's application-metadata documents by name, each merged
    /// by automerge.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    apps: BTreeMap<String, AppDocument>,
}

/// The devices of a hub by id: a B-tree, unlike a document's small maps,
/// because a hub holds up to a million and takes them in any order. Ids are
/// boxed `str`s, a third smaller than `String`s in the tree's nodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
struct Devices(BTreeMap<Box<str>, Lineage<DeviceDoc>>);

impl Devices {
    fn entry_mut(&mut self, id: &str) -> &mut Lineage<DeviceDoc> {
        if !self.0.contains_key(id) {
            self.0.insert(id.into(), Lineage::default());
        }
        self.0.get_mut(id).expect("inserted above")
    }

    fn get(&self, id: &str) -> Option<&Lineage<DeviceDoc>> {
        self.0.get(id)
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut Lineage<DeviceDoc>> {
        self.0.get_mut(id)
    }

    fn prune(&mut self) {
        self.0.retain(|_, lineage| !lineage.is_bottom());
    }
}

impl DotStore for Devices {
    fn is_bottom(&self) -> bool {
        self.0.is_empty()
    }

    fn join(&mut self, ctx: &CausalContext, other: &Self, other_ctx: &CausalContext) {
        let empty = Lineage::default();
        for (id, mine) in self.0.iter_mut() {
            match other.0.get(id) {
                Some(theirs) => mine.join(ctx, theirs, other_ctx),
                None => mine.join(ctx, &empty, other_ctx),
            }
        }
        for (id, theirs) in &other.0 {
            if !self.0.contains_key(id) {
                let mut fresh = Lineage::default();
                fresh.join(ctx, theirs, other_ctx);
                if !fresh.is_bottom() {
                    self.0.insert(id.clone(), fresh);
                }
            }
        }
        self.prune();
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(&crate::clock::Dot)) {
        for lineage in self.0.values() {
            lineage.for_each_dot(f);
        }
    }
}

/// A twin PATCH addressed to one section of a device or module.
#[derive(Clone, Copy, Debug)]
pub struct TwinPatch<'a> {
    /// The device id.
    pub id: &'a str,
    /// The module id, for a module twin.
    pub module_id: Option<&'a str>,
    /// The section patched.
    pub section: Section,
    /// The patch: listed properties are set, `null` removes.
    pub patch: &'a JsonMap,
}

/// What one replica has that another lacks: every device with a write
/// beyond a version vector, whole, and the sender's context.
///
/// Apply with [`HubState::apply_delta`], never with `merge`: a delta leaves
/// out devices it says nothing about.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HubDelta {
    ctx: CausalContext,
    devices: BTreeMap<String, Lineage<DeviceDoc>>,
    /// Application documents travel whole: they are small, and merging one
    /// twice changes nothing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    apps: BTreeMap<String, AppDocument>,
}

impl HubDelta {
    /// Whether the delta carries no device.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The number of devices it carries.
    pub fn len(&self) -> usize {
        self.devices.len()
    }
}

impl HubState {
    /// The empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes device `snapshot.id` equal to `snapshot` as one write of
    /// `replica`, creating it if it is absent or deleted. Only the fields
    /// that differ are written, each stamped with `stamp` or, when `times`
    /// are given, with the time the twin file gives for it. Returns whether
    /// anything was written.
    pub fn put_device(
        &mut self,
        replica: &ReplicaId,
        snapshot: &DeviceSnapshot,
        stamp: &Stamp,
        times: Option<&DeviceTimes>,
    ) -> bool {
        let mut w = Write::new(replica, &mut self.doc.ctx);
        let lineage = self.doc.store.entry_mut(&snapshot.id);
        device::put_device(lineage, snapshot, &mut w, stamp, times);
        let wrote = w.wrote();
        self.doc.store.prune();
        wrote
    }

    /// Deletes device `id` (with its modules) as one write of `replica`.
    /// Returns whether it was live.
    pub fn delete_device(&mut self, replica: &ReplicaId, id: &str, stamp: &Stamp) -> bool {
        let mut w = Write::new(replica, &mut self.doc.ctx);
        let Some(lineage) = self.doc.store.get_mut(id) else {
            return false;
        };
        device::delete_device(lineage, &mut w, stamp);
        w.wrote()
    }

    /// Applies a twin PATCH to a live device or module, as one write.
    /// Returns `false`, writing nothing, when the device or module is not
    /// live.
    pub fn patch_twin(
        &mut self,
        replica: &ReplicaId,
        patch: &TwinPatch<'_>,
        stamp: &Stamp,
        times: Option<&EntityTimes>,
    ) -> bool {
        let mut w = Write::new(replica, &mut self.doc.ctx);
        let Some(lineage) = self.doc.store.get_mut(patch.id) else {
            return false;
        };
        let stamps = EntityStamps {
            fixed: stamp,
            times,
        };
        device::patch_twin(
            lineage,
            patch.module_id,
            patch.section,
            patch.patch,
            &mut w,
            stamps,
        )
    }

    /// Device `id` as `policies` read it, `None` when deleted or unknown;
    /// its conflicts are appended to `conflicts`.
    pub fn read_device(
        &self,
        id: &str,
        policies: &Policies,
        conflicts: &mut Vec<Conflict>,
    ) -> Option<DeviceSnapshot> {
        let lineage = self.doc.store.get(id)?;
        device::read_device(id, lineage, policies, conflicts)
    }

    /// Every device id the state knows, live or deleted, in order.
    pub fn device_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.doc.store.0.keys().map(|id| &**id)
    }

    /// Every conflict of the state under `policies`, by device.
    ///
    /// A function of the state: the same for any order of merges.
    pub fn conflicts(&self, policies: &Policies) -> Vec<Conflict> {
        let mut out = Vec::new();
        for (id, lineage) in &self.doc.store.0 {
            device::read_device(id, lineage, policies, &mut out);
        }
        out
    }

    /// The contiguous part of the context: what this replica has seen.
    pub fn version_vector(&self) -> &VersionVector {
        self.doc.ctx.version_vector()
    }

    /// The causal context: every write seen.
    pub fn context(&self) -> &CausalContext {
        &self.doc.ctx
    }

    /// What a replica that has seen `seen` lacks: every device holding a
    /// write outside `seen`, whole.
    pub fn delta_since(&self, seen: &VersionVector) -> HubDelta {
        let mut devices = BTreeMap::new();
        for (id, lineage) in &self.doc.store.0 {
            let mut newer = false;
            lineage.for_each_dot(&mut |dot| newer |= !seen.contains(dot));
            if newer {
                devices.insert(id.to_string(), lineage.clone());
            }
        }
        HubDelta {
            ctx: self.doc.ctx.clone(),
            devices,
            apps: self.apps.clone(),
        }
    }

    /// Joins a delta from [`HubState::delta_since`]. Applying the same delta
    /// twice changes nothing.
    pub fn apply_delta(&mut self, delta: &HubDelta) {
        for (id, theirs) in &delta.devices {
            let mine = self.doc.store.entry_mut(id);
            mine.join(&self.doc.ctx, theirs, &delta.ctx);
        }
        self.doc.store.prune();
        self.doc.ctx.join(&delta.ctx);
        merge_apps(&mut self.apps, &delta.apps);
    }

    /// The application-metadata document `name`.
    pub fn app(&self, name: &str) -> Option<&AppDocument> {
        self.apps.get(name)
    }

    /// The names of the application-metadata documents, in order.
    pub fn app_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.apps.keys().map(String::as_str)
    }

    /// Sets application-metadata document `name` to `value` as an edit of
    /// `replica`: only what differs is written, so concurrent edits of other
    /// keys survive the merge.
    ///
    /// # Errors
    ///
    /// As [`AppDocument::set_json`].
    pub fn set_app(
        &mut self,
        replica: &ReplicaId,
        name: &str,
        value: &serde_json::Value,
    ) -> Result<bool, crate::appmeta::AppMetaError> {
        match self.apps.get_mut(name) {
            Some(doc) => doc.set_json(replica, value),
            None => {
                let doc = AppDocument::from_json(replica, value)?;
                self.apps.insert(name.to_owned(), doc);
                Ok(true)
            }
        }
    }

    /// The canonical serialization: the same state always gives the same
    /// bytes.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Panics when an invariant is broken: every stored dot is in the
    /// context, registers are sorted, no empty value is stored.
    ///
    /// # Panics
    ///
    /// As said.
    pub fn check_invariants(&self) {
        self.doc.check_invariants();
        for lineage in self.doc.store.0.values() {
            assert!(!lineage.is_bottom(), "empty lineage stored");
        }
    }
}

impl Merge for HubState {
    fn merge(&mut self, other: &Self) {
        self.doc.merge(&other.doc);
        merge_apps(&mut self.apps, &other.apps);
    }
}

fn merge_apps(mine: &mut BTreeMap<String, AppDocument>, theirs: &BTreeMap<String, AppDocument>) {
    for (name, doc) in theirs {
        match mine.get_mut(name) {
            Some(existing) => existing.merge(doc),
            None => {
                mine.insert(name.clone(), doc.clone());
            }
        }
    }
}
