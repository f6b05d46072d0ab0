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
use crate::appmeta::{AppDocument, AppMetaError};
use crate::clock::{ReplicaId, Stamp, VersionVector};
use crate::kernel::{Causal, CausalContext, DotStore, InvariantError, Merge};

/// All device documents of a hub replica, with the causal context of every
/// write seen.
///
/// Local writes ([`HubState::put_device`], [`HubState::delete_device`],
/// [`HubState::patch_twin`]) take a fresh dot of the writing replica and
/// supersede everything the state has seen. [`HubState::try_merge`] joins
/// two states; [`HubState::read_device`] applies the policies.
///
/// # Laws
///
/// [`HubState::try_merge`] is commutative, associative and idempotent; the
/// serialized form ([`HubState::to_canonical_json`]) is a function of the
/// state alone. The devices always merge; the application documents merge
/// as [`AppDocument::try_merge`] does, which refuses only crafted
/// documents, so a state has no infallible [`Merge`].
///
/// # Example
///
/// ```
/// use failback::doc::{DeviceSnapshot, HubState, Policies, Status, StatusValue};
/// use failback::{ReplicaId, Stamp};
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let mut device = DeviceSnapshot { id: "d1".into(), ..Default::default() };
/// device.device.status = Some(StatusValue { status: Status::Enabled, reason: None });
///
/// let base_hub = ReplicaId::new("base")?;
/// let mut base = HubState::new();
/// base.put_device(&device, &Stamp::new(0, 0, base_hub.clone()), None);
///
/// // The secondary disables the device; the primary concurrently writes a tag.
/// let mut secondary = base.clone();
/// let mut disabled = device.clone();
/// disabled.device.status = Some(StatusValue { status: Status::Disabled, reason: Some("stolen".into()) });
/// secondary.put_device(&disabled, &Stamp::new(2, 0, s.clone()), None);
/// let mut primary = base.clone();
/// let mut tagged = device.clone();
/// tagged.device.tags.insert("site".into(), "berlin".into());
/// primary.put_device(&tagged, &Stamp::new(1, 0, p.clone()), None);
///
/// primary.try_merge(&secondary)?;
/// let mut conflicts = Vec::new();
/// let merged = primary.read_device("d1", &Policies::default(), &mut conflicts).unwrap();
/// assert_eq!(merged.device.status.unwrap().status, Status::Disabled);
/// assert_eq!(merged.device.tags["site"], "berlin");
/// assert!(conflicts.is_empty()); // different fields never conflict
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Invariants
///
/// Every dot a device holds is in the state's causal context, each
/// register's siblings are in dot order with no dot twice, and no device
/// is stored without a write. Deserializing checks them
/// ([`HubState::check_invariants`]): a corrupted state file is an error
/// naming the device and the dot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawHubState")]
pub struct HubState {
    #[serde(flatten)]
    doc: Causal<Devices>,
    /// The solution's application-metadata documents by name, each merged
    /// by automerge.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    apps: BTreeMap<String, AppDocument>,
}

/// A [`HubState`] as read, before its invariants are checked: the same
/// fields under the same names.
#[derive(Deserialize)]
struct RawHubState {
    store: Devices,
    ctx: CausalContext,
    #[serde(default)]
    apps: BTreeMap<String, AppDocument>,
}

impl TryFrom<RawHubState> for HubState {
    type Error = InvariantError;

    fn try_from(raw: RawHubState) -> Result<Self, InvariantError> {
        let state = Self {
            doc: Causal {
                store: raw.store,
                ctx: raw.ctx,
            },
            apps: raw.apps,
        };
        state.check_invariants()?;
        Ok(state)
    }
}

/// The first dot of `lineage` that `ctx` has not seen, named with its
/// device.
fn unseen_dot(
    id: &str,
    lineage: &Lineage<DeviceDoc>,
    ctx: &CausalContext,
) -> Result<(), InvariantError> {
    let mut unseen = None;
    lineage.for_each_dot(&mut |dot| {
        if unseen.is_none() && !ctx.contains(dot) {
            unseen = Some(dot.clone());
        }
    });
    match unseen {
        Some(dot) => Err(InvariantError::DeviceUnseenDot {
            device: id.to_owned(),
            dot,
        }),
        None => Ok(()),
    }
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
///
/// # Example
///
/// ```
/// use failback::doc::{DeviceSnapshot, HubState, Policies, Section, TwinPatch};
/// use failback::{ReplicaId, Stamp};
/// use serde_json::json;
///
/// let p = ReplicaId::new("primary")?;
/// let mut state = HubState::new();
/// let device = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
/// state.put_device(&device, &Stamp::new(1, 0, p.clone()), None);
///
/// let body = json!({ "setpoint": 21.5, "mode": null });
/// let patch = TwinPatch { id: "thermostat-7", module_id: None, section: Section::Desired, patch: body.as_object().ok_or("an object")? };
/// assert!(state.patch_twin(&patch, &Stamp::new(2, 0, p), None));
/// let read = state.read_device("thermostat-7", &Policies::default(), &mut Vec::new()).ok_or("live")?;
/// assert_eq!(read.device.desired["setpoint"], 21.5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TwinPatch<'a> {
    /// The device id.
    pub id: &'a str,
    /// The module id, for a module twin.
    pub module_id: Option<&'a str>,
    /// The section patched.
    pub section: Section,
    /// The patch, read as IoT Hub reads an `updateTwin` (JSON Merge
    /// Patch, RFC 7396): a `null` removes its key, an object merges into
    /// an object (an empty one changes nothing there) and replaces
    /// anything else, any other value replaces.
    pub patch: &'a JsonMap,
}

/// What one replica has that another lacks: every device with a write
/// beyond a version vector, whole, and the sender's context.
///
/// Apply with [`HubState::apply_delta`], never with `try_merge`: a delta
/// leaves out devices it says nothing about.
///
/// Deserializing checks that every dot it carries is in its context.
///
/// # Example
///
/// ```
/// use failback::doc::{DeviceSnapshot, HubDelta, HubState};
/// use failback::{ReplicaId, Stamp};
///
/// let p = ReplicaId::new("primary")?;
/// let mut primary = HubState::new();
/// let device = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
/// primary.put_device(&device, &Stamp::new(1, 0, p), None);
///
/// // Sent as bytes to the secondary site, which has seen nothing yet.
/// let mut secondary = HubState::new();
/// let bytes = serde_json::to_vec(&primary.delta_since(secondary.version_vector()))?;
/// let delta: HubDelta = serde_json::from_slice(&bytes)?;
/// secondary.apply_delta(&delta)?;
/// assert_eq!(secondary, primary);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawHubDelta")]
pub struct HubDelta {
    ctx: CausalContext,
    devices: BTreeMap<String, Lineage<DeviceDoc>>,
    /// Application documents travel whole: they are small, and merging one
    /// twice changes nothing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    apps: BTreeMap<String, AppDocument>,
}

/// A [`HubDelta`] as read, before its dots are checked.
#[derive(Deserialize)]
struct RawHubDelta {
    ctx: CausalContext,
    devices: BTreeMap<String, Lineage<DeviceDoc>>,
    #[serde(default)]
    apps: BTreeMap<String, AppDocument>,
}

impl TryFrom<RawHubDelta> for HubDelta {
    type Error = InvariantError;

    fn try_from(raw: RawHubDelta) -> Result<Self, InvariantError> {
        for (id, lineage) in &raw.devices {
            unseen_dot(id, lineage, &raw.ctx)?;
        }
        Ok(Self {
            ctx: raw.ctx,
            devices: raw.devices,
            apps: raw.apps,
        })
    }
}

impl HubDelta {
    /// Whether the delta carries no device.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{DeviceSnapshot, HubState};
    /// use failback::{ReplicaId, Stamp};
    ///
    /// let mut state = HubState::new();
    /// let device = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
    /// state.put_device(&device, &Stamp::new(1, 0, ReplicaId::new("primary")?), None);
    /// // A peer that has seen everything is sent nothing.
    /// assert!(state.delta_since(state.version_vector()).is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The number of devices it carries.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{DeviceSnapshot, HubState};
    /// use failback::{ReplicaId, Stamp, VersionVector};
    ///
    /// let p = ReplicaId::new("primary")?;
    /// let mut state = HubState::new();
    /// for (ms, id) in [(1, "thermostat-7"), (2, "valve-3")] {
    ///     let device = DeviceSnapshot { id: id.into(), ..Default::default() };
    ///     state.put_device(&device, &Stamp::new(ms, 0, p.clone()), None);
    /// }
    /// assert_eq!(state.delta_since(&VersionVector::new()).len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.devices.len()
    }
}

impl HubState {
    /// The empty state.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::HubState;
    ///
    /// let state = HubState::new();
    /// assert_eq!(state.device_ids().count(), 0);
    /// assert!(state.version_vector().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes device `snapshot.id` equal to `snapshot` as one write of the
    /// replica `stamp` names, creating it if it is absent or deleted. Only
    /// the fields that differ are written, each stamped with `stamp` or,
    /// when `times` are given, with the time the twin file gives for it.
    /// Returns whether anything was written.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{DeviceSnapshot, HubState, Policies};
    /// use failback::{ReplicaId, Stamp};
    ///
    /// let p = ReplicaId::new("primary")?;
    /// let mut state = HubState::new();
    /// let device = DeviceSnapshot::enabled_sas("thermostat-7", "cHJpbWFyeQAAAAAAAAAAAA==", "c2Vjb25kYXJ5AAAAAAAAAA==");
    /// assert!(state.put_device(&device, &Stamp::new(1, 0, p.clone()), None));
    /// assert!(!state.put_device(&device, &Stamp::new(2, 0, p), None)); // nothing differs
    /// let read = state.read_device("thermostat-7", &Policies::default(), &mut Vec::new());
    /// assert_eq!(read, Some(device));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_device(
        &mut self,
        snapshot: &DeviceSnapshot,
        stamp: &Stamp,
        times: Option<&DeviceTimes>,
    ) -> bool {
        self.put_device_as(stamp.replica(), snapshot, stamp, times)
    }

    /// [`put_device`](Self::put_device) with the write's dots taken from
    /// `replica`, whatever replica `stamp` names: the merge writes an
    /// incarnation several hubs share with the base's dots and one hub's
    /// stamp, the same in every hub's state.
    pub(crate) fn put_device_as(
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

    /// Deletes device `id` (with its modules) as one write of the replica
    /// `stamp` names. Returns whether it was live.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{DeviceSnapshot, HubState, Policies};
    /// use failback::{ReplicaId, Stamp};
    ///
    /// let p = ReplicaId::new("primary")?;
    /// let mut state = HubState::new();
    /// let device = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
    /// state.put_device(&device, &Stamp::new(1, 0, p.clone()), None);
    /// assert!(state.delete_device("thermostat-7", &Stamp::new(2, 0, p.clone())));
    /// assert!(state.read_device("thermostat-7", &Policies::default(), &mut Vec::new()).is_none());
    /// assert!(!state.delete_device("valve-3", &Stamp::new(3, 0, p))); // never known
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_device(&mut self, id: &str, stamp: &Stamp) -> bool {
        self.delete_device_as(stamp.replica(), id, stamp)
    }

    /// [`delete_device`](Self::delete_device) with the write's dots taken
    /// from `replica`.
    pub(crate) fn delete_device_as(
        &mut self,
        replica: &ReplicaId,
        id: &str,
        stamp: &Stamp,
    ) -> bool {
        let mut w = Write::new(replica, &mut self.doc.ctx);
        let Some(lineage) = self.doc.store.get_mut(id) else {
            return false;
        };
        device::delete_device(lineage, &mut w, stamp);
        w.wrote()
    }

    /// Applies a twin PATCH to a live device or module, as one write of
    /// the replica `stamp` names. Returns `false`, writing nothing, when
    /// the device or module is not live.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{DeviceSnapshot, HubState, Policies, Section, TwinPatch};
    /// use failback::{ReplicaId, Stamp};
    /// use serde_json::json;
    ///
    /// let p = ReplicaId::new("primary")?;
    /// let mut state = HubState::new();
    /// let mut device = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
    /// device.device.tags.insert("site".into(), json!({ "city": "lyon", "floor": 2 }));
    /// state.put_device(&device, &Stamp::new(1, 0, p.clone()), None);
    ///
    /// let body = json!({ "site": { "floor": 3 } }); // merges into the object
    /// let patch = TwinPatch { id: "thermostat-7", module_id: None, section: Section::Tags, patch: body.as_object().ok_or("an object")? };
    /// assert!(state.patch_twin(&patch, &Stamp::new(2, 0, p.clone()), None));
    /// let read = state.read_device("thermostat-7", &Policies::default(), &mut Vec::new()).ok_or("live")?;
    /// assert_eq!(read.device.tags["site"], json!({ "city": "lyon", "floor": 3 }));
    ///
    /// let absent = TwinPatch { id: "valve-3", ..patch };
    /// assert!(!state.patch_twin(&absent, &Stamp::new(3, 0, p), None));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn patch_twin(
        &mut self,
        patch: &TwinPatch<'_>,
        stamp: &Stamp,
        times: Option<&EntityTimes>,
    ) -> bool {
        let mut w = Write::new(stamp.replica(), &mut self.doc.ctx);
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
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{DeviceSnapshot, HubState, Policies};
    /// use failback::{ReplicaId, Stamp};
    ///
    /// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
    /// let mut primary = HubState::new();
    /// let mut device = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
    /// primary.put_device(&device, &Stamp::new(1, 0, p.clone()), None);
    /// let mut secondary = primary.clone();
    /// device.device.tags.insert("site".into(), "lyon".into());
    /// primary.put_device(&device, &Stamp::new(10, 0, p), None);
    /// device.device.tags.insert("site".into(), "berlin".into());
    /// secondary.put_device(&device, &Stamp::new(20, 0, s), None);
    /// primary.try_merge(&secondary)?;
    ///
    /// let mut conflicts = Vec::new();
    /// let read = primary.read_device("thermostat-7", &Policies::default(), &mut conflicts).ok_or("live")?;
    /// assert_eq!(read.device.tags["site"], "berlin");
    /// assert_eq!(conflicts[0].losers[0].value, "lyon");
    /// assert!(primary.read_device("valve-3", &Policies::default(), &mut conflicts).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{DeviceSnapshot, HubState};
    /// use failback::{ReplicaId, Stamp};
    ///
    /// let p = ReplicaId::new("primary")?;
    /// let mut state = HubState::new();
    /// for (ms, id) in [(1, "valve-3"), (2, "thermostat-7")] {
    ///     let device = DeviceSnapshot { id: id.into(), ..Default::default() };
    ///     state.put_device(&device, &Stamp::new(ms, 0, p.clone()), None);
    /// }
    /// state.delete_device("valve-3", &Stamp::new(3, 0, p));
    /// assert_eq!(state.device_ids().collect::<Vec<_>>(), ["thermostat-7", "valve-3"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn device_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.doc.store.0.keys().map(|id| &**id)
    }

    /// Every conflict of the state under `policies`, by device.
    ///
    /// A function of the state: the same for any order of merges.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{DeviceSnapshot, HubState, Policies};
    /// use failback::{ReplicaId, Stamp};
    ///
    /// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
    /// let mut primary = HubState::new();
    /// let mut device = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
    /// primary.put_device(&device, &Stamp::new(1, 0, p.clone()), None);
    /// let mut secondary = primary.clone();
    /// device.device.desired.insert("fan".into(), 3.into());
    /// primary.put_device(&device, &Stamp::new(10, 0, p), None);
    /// device.device.desired.insert("fan".into(), 5.into());
    /// secondary.put_device(&device, &Stamp::new(20, 0, s), None);
    ///
    /// let mut other_way = secondary.clone();
    /// other_way.try_merge(&primary)?;
    /// primary.try_merge(&secondary)?;
    /// let conflicts = primary.conflicts(&Policies::default());
    /// assert_eq!(conflicts.len(), 1);
    /// assert_eq!(conflicts[0].path, "properties.desired.fan");
    /// assert_eq!(other_way.conflicts(&Policies::default()), conflicts);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn conflicts(&self, policies: &Policies) -> Vec<Conflict> {
        let mut out = Vec::new();
        for (id, lineage) in &self.doc.store.0 {
            device::read_device(id, lineage, policies, &mut out);
        }
        out
    }

    /// The contiguous part of the context: what this replica has seen.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{DeviceSnapshot, HubState};
    /// use failback::{ReplicaId, Stamp};
    ///
    /// let p = ReplicaId::new("primary")?;
    /// let mut state = HubState::new();
    /// let device = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
    /// state.put_device(&device, &Stamp::new(1, 0, p.clone()), None);
    /// state.delete_device("thermostat-7", &Stamp::new(2, 0, p.clone()));
    /// assert_eq!(state.version_vector().get(&p), 2); // two writes of the primary
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn version_vector(&self) -> &VersionVector {
        self.doc.ctx.version_vector()
    }

    /// The causal context: every write seen. Public with the `internals`
    /// feature, as [`CausalContext`] is; [`HubState::version_vector`] is
    /// its contiguous part.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{DeviceSnapshot, HubState};
    /// use failback::{Dot, ReplicaId, Stamp};
    ///
    /// let p = ReplicaId::new("primary")?;
    /// let mut state = HubState::new();
    /// let device = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
    /// state.put_device(&device, &Stamp::new(1, 0, p.clone()), None);
    /// assert!(state.context().contains(&Dot::new(p.clone(), 1)));
    /// assert!(!state.context().contains(&Dot::new(p, 2)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "internals")]
    pub fn context(&self) -> &CausalContext {
        &self.doc.ctx
    }

    /// What a replica that has seen `seen` lacks: every device holding a
    /// write outside `seen`, whole.
    ///
    /// This is the replication API for sites that write a `HubState`
    /// themselves (see `examples/two_sites.rs`): send the delta, the peer
    /// joins it with [`apply_delta`](Self::apply_delta). A replica kept
    /// from one hub's change events replicates its events instead, with
    /// [`Replica::delta_since`](crate::replica::Replica::delta_since)
    /// (what `failback replica delta` does); the two are not mixed.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{DeviceSnapshot, HubState};
    /// use failback::{ReplicaId, Stamp};
    ///
    /// let p = ReplicaId::new("primary")?;
    /// let mut primary = HubState::new();
    /// let device = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
    /// primary.put_device(&device, &Stamp::new(1, 0, p.clone()), None);
    /// let secondary = primary.clone(); // in sync so far
    /// let device = DeviceSnapshot { id: "valve-3".into(), ..Default::default() };
    /// primary.put_device(&device, &Stamp::new(2, 0, p), None);
    ///
    /// let delta = primary.delta_since(secondary.version_vector());
    /// assert_eq!(delta.len(), 1); // only valve-3 is new to the secondary
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    ///
    /// # Errors
    ///
    /// [`AppMergeError`] when one of the delta's application documents
    /// cannot be merged (see [`AppDocument::try_merge`]); the state is then
    /// unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{DeviceSnapshot, HubState};
    /// use failback::{ReplicaId, Stamp};
    ///
    /// let p = ReplicaId::new("primary")?;
    /// let mut primary = HubState::new();
    /// let device = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
    /// primary.put_device(&device, &Stamp::new(1, 0, p), None);
    ///
    /// let mut secondary = HubState::new();
    /// let delta = primary.delta_since(secondary.version_vector());
    /// secondary.apply_delta(&delta)?;
    /// secondary.apply_delta(&delta)?; // a retransmission changes nothing
    /// assert_eq!(secondary, primary);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply_delta(&mut self, delta: &HubDelta) -> Result<(), AppMergeError> {
        let apps = merged_apps(&self.apps, &delta.apps)?;
        for (id, theirs) in &delta.devices {
            let mine = self.doc.store.entry_mut(id);
            mine.join(&self.doc.ctx, theirs, &delta.ctx);
        }
        self.doc.store.prune();
        self.doc.ctx.join(&delta.ctx);
        self.apps = apps;
        Ok(())
    }

    /// Joins `other` into this state: the merge of the two replicas.
    ///
    /// # Errors
    ///
    /// [`AppMergeError`] when an application document of `other` cannot be
    /// merged into this one's (see [`AppDocument::try_merge`]: only crafted
    /// documents); the state is then unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{DeviceSnapshot, HubState};
    /// use failback::{ReplicaId, Stamp};
    ///
    /// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
    /// let (mut primary, mut secondary) = (HubState::new(), HubState::new());
    /// let device = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
    /// primary.put_device(&device, &Stamp::new(1, 0, p), None);
    /// let device = DeviceSnapshot { id: "valve-3".into(), ..Default::default() };
    /// secondary.put_device(&device, &Stamp::new(1, 0, s), None);
    ///
    /// let mut merged = primary.clone();
    /// merged.try_merge(&secondary)?;
    /// secondary.try_merge(&primary)?; // the other way round: the same state
    /// assert_eq!(merged, secondary);
    /// assert_eq!(merged.device_ids().collect::<Vec<_>>(), ["thermostat-7", "valve-3"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_merge(&mut self, other: &Self) -> Result<(), AppMergeError> {
        let apps = merged_apps(&self.apps, &other.apps)?;
        self.doc.merge(&other.doc);
        self.apps = apps;
        Ok(())
    }

    /// Joins the devices of `other`, which holds no application document
    /// (as the states the reconciliation builds): a merge that cannot fail.
    pub(crate) fn merge_devices(&mut self, other: &Self) {
        debug_assert!(
            other.apps.is_empty(),
            "a state with documents merged as devices only"
        );
        self.doc.merge(&other.doc);
    }

    /// The application-metadata document `name`.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::HubState;
    /// use failback::ReplicaId;
    /// use serde_json::json;
    ///
    /// let mut state = HubState::new();
    /// state.set_app(&ReplicaId::new("primary")?, "routing", &json!({ "region": "westeurope" }))?;
    /// let routing = state.app("routing").ok_or("set above")?;
    /// assert_eq!(routing.to_json(), json!({ "region": "westeurope" }));
    /// assert!(state.app("billing").is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn app(&self, name: &str) -> Option<&AppDocument> {
        self.apps.get(name)
    }

    /// The names of the application-metadata documents, in order.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::HubState;
    /// use failback::ReplicaId;
    /// use serde_json::json;
    ///
    /// let p = ReplicaId::new("primary")?;
    /// let mut state = HubState::new();
    /// state.set_app(&p, "routing", &json!({ "region": "westeurope" }))?;
    /// state.set_app(&p, "alerts", &json!({ "email": "ops@contoso.com" }))?;
    /// assert_eq!(state.app_names().collect::<Vec<_>>(), ["alerts", "routing"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::HubState;
    /// use failback::ReplicaId;
    /// use serde_json::json;
    ///
    /// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
    /// let mut primary = HubState::new();
    /// assert!(primary.set_app(&p, "routing", &json!({ "region": "westeurope", "retries": 3 }))?);
    /// let mut secondary = primary.clone();
    /// // Concurrent edits of different keys both survive the merge.
    /// primary.set_app(&p, "routing", &json!({ "region": "northeurope", "retries": 3 }))?;
    /// secondary.set_app(&s, "routing", &json!({ "region": "westeurope", "retries": 5 }))?;
    /// primary.try_merge(&secondary)?;
    /// let merged = primary.app("routing").ok_or("set above")?.to_json();
    /// assert_eq!(merged, json!({ "region": "northeurope", "retries": 5 }));
    /// assert!(!primary.set_app(&p, "routing", &merged)?); // nothing differs
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_app(
        &mut self,
        replica: &ReplicaId,
        name: &str,
        value: &serde_json::Value,
    ) -> Result<bool, AppMetaError> {
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
    /// bytes, and [`serde_json::from_slice`] reads them back.
    ///
    /// # Errors
    ///
    /// [`EncodeError`] should the JSON writer refuse the state; it is an
    /// error, never empty bytes.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::HubState;
    ///
    /// let bytes = HubState::new().to_canonical_json()?;
    /// assert_eq!(bytes, br#"{"store":{},"ctx":{"vv":{}}}"#);
    /// assert_eq!(serde_json::from_slice::<HubState>(&bytes)?, HubState::new());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_canonical_json(&self) -> Result<Vec<u8>, EncodeError> {
        serde_json::to_vec(self).map_err(|e| EncodeError(Box::new(e)))
    }

    /// Checks the invariants documented on the type. Deserializing checks
    /// them too.
    ///
    /// # Errors
    ///
    /// [`InvariantError::DeviceUnseenDot`] naming the device and the dot,
    /// [`InvariantError::EmptyDevice`], or a register's or the context's
    /// error.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{DeviceSnapshot, HubState};
    /// use failback::{ReplicaId, Stamp};
    ///
    /// let mut state = HubState::new();
    /// let device = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
    /// state.put_device(&device, &Stamp::new(1, 0, ReplicaId::new("primary")?), None);
    /// assert!(state.check_invariants().is_ok());
    ///
    /// // A state file whose context forgot the write its device holds.
    /// let text = String::from_utf8(state.to_canonical_json()?)?;
    /// let corrupted = text.replace(r#""ctx":{"vv":{"primary":1}}"#, r#""ctx":{"vv":{}}"#);
    /// let err = serde_json::from_str::<HubState>(&corrupted).unwrap_err();
    /// assert!(err.to_string().contains("dot primary:1 is stored but missing from the causal context"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        self.doc.ctx.check_invariants()?;
        for (id, lineage) in &self.doc.store.0 {
            if lineage.is_bottom() {
                return Err(InvariantError::EmptyDevice {
                    device: id.to_string(),
                });
            }
            unseen_dot(id, lineage, &self.doc.ctx)?;
        }
        Ok(())
    }
}

/// Why a state could not be written as JSON.
///
/// # Example
///
/// ```
/// use failback::doc::{EncodeError, HubState};
///
/// fn save(state: &HubState) -> Result<Vec<u8>, EncodeError> {
///     state.to_canonical_json()
/// }
/// assert_eq!(save(&HubState::new())?, br#"{"store":{},"ctx":{"vv":{}}}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[error("the state cannot be written as JSON")]
pub struct EncodeError(#[source] Box<dyn std::error::Error + Send + Sync>);

/// Why two states' application documents could not be merged.
///
/// Documents this crate wrote always merge; only crafted ones are refused
/// (see [`AppDocument::try_merge`]).
///
/// # Example
///
/// ```
/// use failback::appmeta::AppMetaError;
/// use failback::doc::{AppMergeError, HubState};
/// use failback::ReplicaId;
/// use serde_json::json;
///
/// let mut primary = HubState::new();
/// primary.set_app(&ReplicaId::new("primary")?, "routing", &json!({ "region": "westeurope" }))?;
/// let mut secondary = HubState::new();
/// secondary.set_app(&ReplicaId::new("secondary")?, "routing", &json!({ "retries": 3 }))?;
/// let merged: Result<(), AppMergeError> = primary.try_merge(&secondary);
/// assert!(merged.is_ok());
///
/// // What a refusal says: the document, and why.
/// let err = AppMergeError { name: "routing".into(), source: AppMetaError::ActorReused { actor: "7072696d617279".into(), seq: 1 } };
/// assert_eq!(err.to_string(), r#"application document "routing" cannot be merged"#);
/// assert!(matches!(err.source, AppMetaError::ActorReused { seq: 1, .. }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[error("application document {name:?} cannot be merged")]
pub struct AppMergeError {
    /// The document's name.
    pub name: String,
    /// Why, as [`AppDocument::try_merge`] said.
    #[source]
    pub source: AppMetaError,
}

/// `mine` with `theirs` merged in, or the first document that cannot be.
fn merged_apps(
    mine: &BTreeMap<String, AppDocument>,
    theirs: &BTreeMap<String, AppDocument>,
) -> Result<BTreeMap<String, AppDocument>, AppMergeError> {
    let mut out = mine.clone();
    for (name, doc) in theirs {
        match out.get_mut(name) {
            Some(existing) => existing.try_merge(doc).map_err(|source| AppMergeError {
                name: name.clone(),
                source,
            })?,
            None => {
                out.insert(name.clone(), doc.clone());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written() -> HubState {
        let p = ReplicaId::new("primary").unwrap();
        let mut state = HubState::new();
        let device = DeviceSnapshot {
            id: "d1".into(),
            ..Default::default()
        };
        state.put_device(&device, &Stamp::new(1, 0, p.clone()), None);
        state
    }

    #[test]
    fn canonical_json_is_a_result_that_reads_back() {
        let state = written();
        let bytes = state.to_canonical_json().unwrap();
        assert!(!bytes.is_empty());
        assert_eq!(bytes, serde_json::to_vec(&state).unwrap());
        assert_eq!(serde_json::from_slice::<HubState>(&bytes).unwrap(), state);
    }

    #[test]
    fn a_corrupted_state_file_names_the_device_and_the_dot() {
        let state = written();
        assert_eq!(state.check_invariants(), Ok(()));
        let text = String::from_utf8(state.to_canonical_json().unwrap()).unwrap();
        // The context forgets the write the device holds.
        let forgot = text.replace(r#""ctx":{"vv":{"primary":1}}"#, r#""ctx":{"vv":{}}"#);
        assert_ne!(forgot, text);
        let err = serde_json::from_str::<HubState>(&forgot).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "device \"d1\": dot primary:1 is stored but missing from the causal context"
            ),
            "{err}"
        );
        // A delta carrying it is refused alike.
        let delta = serde_json::to_string(&state.delta_since(&VersionVector::new())).unwrap();
        let forgot = delta.replace(r#""ctx":{"vv":{"primary":1}}"#, r#""ctx":{"vv":{}}"#);
        assert_ne!(forgot, delta);
        let err = serde_json::from_str::<HubDelta>(&forgot).unwrap_err();
        assert!(
            err.to_string().starts_with("device \"d1\": dot primary:1"),
            "{err}"
        );
    }
}
