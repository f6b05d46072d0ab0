//! One device or module incarnation as a CRDT document.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::conflict::{ConflictSink, Rule, Side};
use super::policy::{DeletePolicy, Policies, StatusPolicy};
use super::twin::{self, Section, Stamps, TwinTree};
use super::write::{Write, stamp_at};
use super::{Authentication, CompactJson, Entity, EntityTimes, StatusValue};
use crate::clock::{Dot, Stamp, VersionVector};
use crate::kernel::{CausalContext, DotStore, Entry, MvReg, OrMap, Rank};

/// Whether an incarnation exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Life {
    /// Created and not deleted.
    Alive,
    /// Deleted by a replica that had seen the writes in `seen`; writes
    /// outside it were concurrent with the delete.
    Deleted {
        /// What the deleting replica had seen, boxed: every incarnation
        /// holds a life register, and few are deleted.
        seen: Box<VersionVector>,
    },
}

impl Life {
    fn is_deleted(&self) -> bool {
        matches!(self, Life::Deleted { .. })
    }

    fn is_alive(&self) -> bool {
        matches!(self, Life::Alive)
    }
}

/// An identity field.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum IdField {
    /// `status` with `statusReason`.
    Status,
    /// `authentication`.
    Authentication,
    /// `capabilities`.
    Capabilities,
    /// `deviceScope`.
    DeviceScope,
    /// `parentScopes`.
    ParentScopes,
    /// Any other identity field, by name.
    Extra(Box<str>),
}

impl IdField {
    /// The field's name in IoT Hub's formats.
    pub(crate) fn name(&self) -> &str {
        match self {
            IdField::Status => "status",
            IdField::Authentication => "authentication",
            IdField::Capabilities => "capabilities",
            IdField::DeviceScope => "deviceScope",
            IdField::ParentScopes => "parentScopes",
            IdField::Extra(name) => name,
        }
    }

    fn from_name(name: &str) -> Self {
        match name {
            "status" => IdField::Status,
            "authentication" => IdField::Authentication,
            "capabilities" => IdField::Capabilities,
            "deviceScope" => IdField::DeviceScope,
            "parentScopes" => IdField::ParentScopes,
            other => IdField::Extra(other.into()),
        }
    }
}

impl Serialize for IdField {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for IdField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(Self::from_name(&name))
    }
}

/// The value of an identity field. `None` and `null` mean absent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum IdValue {
    /// `status` and `statusReason`.
    Status(Option<StatusValue>),
    /// `authentication`, boxed: most values of the register's type are
    /// small, and a value costs the size of the largest.
    Auth(Option<Box<Authentication>>),
    /// Any other field, verbatim.
    Json(CompactJson),
}

impl IdValue {
    fn is_absent(&self) -> bool {
        match self {
            IdValue::Status(s) => s.is_none(),
            IdValue::Auth(a) => a.is_none(),
            IdValue::Json(v) => v.is_null(),
        }
    }

    fn is_disabled(&self) -> bool {
        matches!(self, IdValue::Status(Some(s)) if s.status == super::Status::Disabled)
    }

    /// The value as conflict records show it: secrets as fingerprints.
    pub(crate) fn shown(&self) -> Value {
        match self {
            IdValue::Status(s) => serde_json::to_value(s).unwrap_or(Value::Null),
            IdValue::Auth(Some(a)) => a.redacted(),
            IdValue::Auth(None) => Value::Null,
            IdValue::Json(v) => v.to_value(),
        }
    }
}

/// One incarnation of a device or module: its life, identity and twin.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct EntityDoc {
    #[serde(default, skip_serializing_if = "MvReg::is_empty")]
    life: MvReg<Life>,
    #[serde(rename = "id", default, skip_serializing_if = "OrMap::is_empty")]
    identity: OrMap<IdField, MvReg<IdValue>>,
    #[serde(default, skip_serializing_if = "OrMap::is_empty")]
    tags: TwinTree,
    #[serde(default, skip_serializing_if = "OrMap::is_empty")]
    desired: TwinTree,
    #[serde(default, skip_serializing_if = "OrMap::is_empty")]
    reported: TwinTree,
}

impl DotStore for EntityDoc {
    fn is_bottom(&self) -> bool {
        self.life.is_empty()
            && self.identity.is_empty()
            && self.tags.is_empty()
            && self.desired.is_empty()
            && self.reported.is_empty()
    }

    fn join(&mut self, ctx: &CausalContext, other: &Self, other_ctx: &CausalContext) {
        self.life.join(ctx, &other.life, other_ctx);
        self.identity.join(ctx, &other.identity, other_ctx);
        self.tags.join(ctx, &other.tags, other_ctx);
        self.desired.join(ctx, &other.desired, other_ctx);
        self.reported.join(ctx, &other.reported, other_ctx);
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(&Dot)) {
        self.life.for_each_dot(f);
        self.identity.for_each_dot(f);
        self.tags.for_each_dot(f);
        self.desired.for_each_dot(f);
        self.reported.for_each_dot(f);
    }
}

/// Where the stamps of an entity's writes come from.
#[derive(Clone, Copy)]
pub(crate) struct EntityStamps<'a> {
    /// The stamp of writes with no better time.
    pub fixed: &'a Stamp,
    /// Per-field times from a twin file.
    pub times: Option<&'a EntityTimes>,
}

impl<'a> EntityStamps<'a> {
    fn status(&self) -> Stamp {
        match self.times.and_then(|t| t.status) {
            Some(ms) => stamp_at(ms, self.fixed.replica()),
            None => self.fixed.clone(),
        }
    }

    fn section(&self, which: Section) -> Stamps<'a> {
        match (self.times, which) {
            (Some(t), Section::Desired) => Stamps::Meta(&t.desired, self.fixed),
            (Some(t), Section::Reported) => Stamps::Meta(&t.reported, self.fixed),
            _ => Stamps::Fixed(self.fixed),
        }
    }
}

impl EntityDoc {
    fn section_mut(&mut self, which: Section) -> &mut TwinTree {
        match which {
            Section::Tags => &mut self.tags,
            Section::Desired => &mut self.desired,
            Section::Reported => &mut self.reported,
        }
    }

    /// Whether the incarnation reads as deleted under `policy`.
    pub(crate) fn is_dead(&self, policy: DeletePolicy) -> bool {
        let Some(winner) = self.life.value(&Rank::Prefer(Life::is_deleted)) else {
            return true;
        };
        match (winner, policy) {
            (Life::Alive, _) => false,
            (Life::Deleted { .. }, DeletePolicy::DeleteWins) => true,
            (Life::Deleted { seen }, DeletePolicy::UpdateWins) => self.unseen(seen).is_empty(),
        }
    }

    /// The stamp of the creation, for ranking concurrent incarnations.
    pub(crate) fn created(&self) -> Option<&Stamp> {
        self.life
            .entries()
            .iter()
            .filter(|e| e.value.is_alive())
            .map(Entry::stamp)
            .max()
            .or_else(|| self.life.max_stamp())
    }

    /// Marks the incarnation created (alive) by the operation `w`.
    pub(crate) fn create(&mut self, w: &mut Write<'_>, stamp: &Stamp) {
        self.life.set_tagged(w.tag(stamp), Life::Alive);
    }

    /// Deletes the incarnation; the writes it holds stay as the tombstone's
    /// content, so concurrent updates can be logged (or win, by policy).
    pub(crate) fn mark_deleted(&mut self, w: &mut Write<'_>, stamp: &Stamp) {
        let tag = w.tag(stamp);
        let seen = Box::new(w.seen().version_vector().clone());
        self.life.set_tagged(tag, Life::Deleted { seen });
    }

    /// Makes the live incarnation equal to `target`, writing only what
    /// differs. Its life is not written: the incarnation a write goes to
    /// was live or was just made so by [`EntityDoc::create`].
    pub(crate) fn set_exact(
        &mut self,
        target: &Entity,
        w: &mut Write<'_>,
        stamps: EntityStamps<'_>,
    ) {
        let wanted = identity_of(target);
        let present: Vec<IdField> = self.identity.keys().cloned().collect();
        for field in present {
            if !wanted.iter().any(|(f, _)| *f == field) {
                let absent = absent_value(&field);
                self.set_field(field, absent, w, stamps);
            }
        }
        for (field, value) in wanted {
            self.set_field(field, value, w, stamps);
        }
        let mut path = Vec::new();
        for (which, map) in [
            (Section::Tags, &target.tags),
            (Section::Desired, &target.desired),
            (Section::Reported, &target.reported),
        ] {
            let section_stamps = stamps.section(which);
            twin::set_exact(self.section_mut(which), map, w, section_stamps, &mut path);
        }
    }

    fn set_field(
        &mut self,
        field: IdField,
        value: IdValue,
        w: &mut Write<'_>,
        stamps: EntityStamps<'_>,
    ) {
        let reg = self.identity.entry_mut(field.clone());
        // Compared with what reads now (default ranks), not with the
        // siblings: an unchanged field takes no write, so it cannot
        // resurrect a sibling another replica has since replaced.
        let unchanged = match reg.value(&default_rank(&field)) {
            None => value.is_absent(),
            Some(current) => *current == value,
        };
        if !unchanged {
            let stamp = match field {
                IdField::Status => stamps.status(),
                _ => stamps.fixed.clone(),
            };
            reg.set_tagged(w.tag(&stamp), value);
        }
        self.identity.prune();
    }

    /// Applies a twin PATCH to one section.
    pub(crate) fn patch_section(
        &mut self,
        which: Section,
        patch: &super::JsonMap,
        w: &mut Write<'_>,
        stamps: EntityStamps<'_>,
    ) {
        let section_stamps = stamps.section(which);
        twin::patch(
            self.section_mut(which),
            patch,
            w,
            section_stamps,
            &mut Vec::new(),
        );
    }

    /// Reads the incarnation as a plain entity, logging its conflicts.
    pub(crate) fn resolve(&self, policies: &Policies, sink: &mut ConflictSink<'_>) -> Entity {
        let mut entity = Entity::default();
        for (field, reg) in self.identity.iter() {
            let rank = match (field, policies.status) {
                (IdField::Status, StatusPolicy::DisabledWins) => Rank::Prefer(IdValue::is_disabled),
                _ => Rank::HighestStamp,
            };
            let Some(read) = reg.resolve(&rank) else {
                continue;
            };
            let rule = match field {
                IdField::Status
                    if read.winner.value.is_disabled()
                        && read.losers.iter().any(|l| !l.value.is_disabled()) =>
                {
                    Rule::DisabledWins
                }
                IdField::Authentication => Rule::WholeValue,
                _ => Rule::LatestWins,
            };
            sink.siblings(field.name(), rule, read.winner, &read.losers, id_side);
            put_field(&mut entity, field, &read.winner.value);
        }
        entity.tags = twin::resolve(&self.tags, Section::Tags.path(), sink).into();
        entity.desired = twin::resolve(&self.desired, Section::Desired.path(), sink).into();
        entity.reported = twin::resolve(&self.reported, Section::Reported.path(), sink).into();
        entity
    }

    /// The winning delete, if the life register holds one: what it had
    /// seen and who made it, as a conflict side.
    pub(crate) fn delete(&self) -> Option<(&VersionVector, Side)> {
        let read = self.life.resolve(&Rank::Prefer(Life::is_deleted))?;
        match &read.winner.value {
            Life::Deleted { seen } => Some((
                seen,
                Side {
                    hub: read.winner.stamp().replica().clone(),
                    value: Value::Null,
                    stamp: read.winner.stamp().clone(),
                },
            )),
            Life::Alive => None,
        }
    }

    /// Every write of the incarnation that `seen` does not cover (writes
    /// concurrent with a delete), as (path, side) pairs. Tombstones are left
    /// out: a concurrent removal lost nothing.
    pub(crate) fn unseen(&self, seen: &VersionVector) -> Vec<(String, Side)> {
        let mut out = Vec::new();
        for (field, reg) in self.identity.iter() {
            for entry in reg.entries() {
                if !seen.contains(entry.dot()) && !entry.value.is_absent() {
                    out.push((field.name().to_owned(), id_side(entry)));
                }
            }
        }
        for (section, tree) in [
            (Section::Tags, &self.tags),
            (Section::Desired, &self.desired),
            (Section::Reported, &self.reported),
        ] {
            twin::for_each_entry(tree, section.path(), &mut |path, entry| {
                if !seen.contains(entry.dot()) && !entry.value.is_null() {
                    out.push((
                        path.to_owned(),
                        Side {
                            hub: entry.stamp().replica().clone(),
                            value: entry.value.to_value(),
                            stamp: entry.stamp().clone(),
                        },
                    ));
                }
            });
        }
        out
    }
}

/// The rank of a field under the default policies.
fn default_rank(field: &IdField) -> Rank<IdValue> {
    match field {
        IdField::Status => Rank::Prefer(IdValue::is_disabled),
        _ => Rank::HighestStamp,
    }
}

fn id_side(entry: &Entry<IdValue>) -> Side {
    Side {
        hub: entry.stamp().replica().clone(),
        value: entry.value.shown(),
        stamp: entry.stamp().clone(),
    }
}

fn absent_value(field: &IdField) -> IdValue {
    match field {
        IdField::Status => IdValue::Status(None),
        IdField::Authentication => IdValue::Auth(None),
        _ => IdValue::Json(CompactJson::NULL),
    }
}

/// The identity fields of a plain entity, absent ones left out.
fn identity_of(entity: &Entity) -> Vec<(IdField, IdValue)> {
    let mut fields = Vec::new();
    if entity.status.is_some() {
        fields.push((IdField::Status, IdValue::Status(entity.status.clone())));
    }
    if entity.authentication.is_some() {
        fields.push((
            IdField::Authentication,
            IdValue::Auth(entity.authentication.clone().map(Box::new)),
        ));
    }
    let json_fields = [
        (IdField::Capabilities, entity.capabilities.clone()),
        (
            IdField::DeviceScope,
            entity.device_scope.clone().map(Value::String),
        ),
        (IdField::ParentScopes, entity.parent_scopes.clone()),
    ];
    for (field, value) in json_fields {
        if let Some(value) = value.filter(|v| !v.is_null()) {
            fields.push((field, IdValue::Json(CompactJson::from(&value))));
        }
    }
    for (name, value) in &entity.extra {
        if !value.is_null() {
            fields.push((
                IdField::from_name(name),
                IdValue::Json(CompactJson::from(value)),
            ));
        }
    }
    fields
}

fn put_field(entity: &mut Entity, field: &IdField, value: &IdValue) {
    match (field, value) {
        (IdField::Status, IdValue::Status(s)) => entity.status = s.clone(),
        (IdField::Authentication, IdValue::Auth(a)) => {
            entity.authentication = a.as_deref().cloned();
        }
        (_, IdValue::Json(v)) if v.is_null() => {}
        (IdField::Capabilities, IdValue::Json(v)) => entity.capabilities = Some(v.to_value()),
        // A `deviceScope` that is not a string reads as absent.
        (IdField::DeviceScope, IdValue::Json(v)) => {
            entity.device_scope = v.as_str().map(str::to_owned)
        }
        (IdField::ParentScopes, IdValue::Json(v)) => entity.parent_scopes = Some(v.to_value()),
        (IdField::Extra(name), IdValue::Json(v)) => {
            entity.extra.insert(name.to_string(), v.to_value());
        }
        // A value of the wrong kind for its field cannot be produced by the
        // writers; a hand-edited state file gets it ignored, not a panic.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ReplicaId;
    use crate::doc::DeviceSnapshot;

    /// The DotStore contract the maps holding incarnations prune by: a
    /// document is bottom exactly when it holds no write, as it is when a
    /// join with a side that saw its writes and dropped them takes them.
    #[test]
    fn an_incarnation_is_bottom_when_it_holds_no_write() {
        assert!(EntityDoc::default().is_bottom());
        let hub = ReplicaId::new("a").unwrap();
        let mut ctx = CausalContext::new();
        let mut doc = EntityDoc::default();
        let stamp = Stamp::new(1, 0, hub.clone());
        let mut w = Write::new(&hub, &mut ctx);
        doc.create(&mut w, &stamp);
        let mut device = DeviceSnapshot::enabled_sas("d", "p", "s").device;
        device.tags.insert("t".into(), serde_json::json!(1));
        let stamps = EntityStamps {
            fixed: &stamp,
            times: None,
        };
        doc.set_exact(&device, &mut w, stamps);
        assert!(!doc.is_bottom());
        let mut joined = doc.clone();
        joined.join(&ctx, &EntityDoc::default(), &ctx);
        assert!(joined.is_bottom(), "{joined:?}");
        let mut kept = doc.clone();
        kept.join(&ctx, &EntityDoc::default(), &CausalContext::new());
        assert_eq!(kept, doc);
    }

    /// A removed `status` or `authentication` is held as that field's
    /// absent value, as state files hold it, not as JSON `null`.
    #[test]
    fn a_removed_field_holds_its_own_absent_value() {
        let hub = ReplicaId::new("a").unwrap();
        let mut ctx = CausalContext::new();
        let mut doc = EntityDoc::default();
        let full = DeviceSnapshot::enabled_sas("d", "p", "s").device;
        let mut capabilities = full.clone();
        capabilities.capabilities = Some(serde_json::json!({"iotEdge": true}));
        for (ms, target) in [(1, &capabilities), (2, &Entity::default())] {
            let stamp = Stamp::new(ms, 0, hub.clone());
            let mut w = Write::new(&hub, &mut ctx);
            if ms == 1 {
                doc.create(&mut w, &stamp);
            }
            let stamps = EntityStamps {
                fixed: &stamp,
                times: None,
            };
            doc.set_exact(target, &mut w, stamps);
        }
        let held = |field: IdField| {
            doc.identity
                .get(&field)
                .and_then(|reg| reg.value(&Rank::HighestStamp))
                .cloned()
        };
        assert_eq!(held(IdField::Status), Some(IdValue::Status(None)));
        assert_eq!(held(IdField::Authentication), Some(IdValue::Auth(None)));
        assert_eq!(
            held(IdField::Capabilities),
            Some(IdValue::Json(CompactJson::NULL))
        );
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["id"]["status"][0]["status"], Value::Null, "{json}");
    }
}
