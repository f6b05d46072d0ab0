//! The oracle: every write of a cycle, what it set, and which hub state it
//! was made on.
//!
//! Whether one write *saw* another is decided by causal knowledge, never by
//! timestamps: a write sees the earlier writes of its own hub (unless the
//! hub lost them and was restored to an earlier point), the secondary sees
//! the primary's writes that were in the backup it was seeded from, and
//! every write of a cycle sees the state the previous failback left.

use serde_json::Value;

use super::paths;
use crate::doc::{Authentication, DeviceSnapshot, Entity, Section, StatusValue};

/// One of the drill's two hubs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hub {
    /// The hub of the primary region.
    Primary,
    /// The hub of the secondary region.
    Secondary,
}

impl Hub {
    /// Both hubs, primary first.
    pub const BOTH: [Hub; 2] = [Hub::Primary, Hub::Secondary];

    /// The hub's replica name.
    pub fn name(self) -> &'static str {
        match self {
            Hub::Primary => "primary",
            Hub::Secondary => "secondary",
        }
    }

    /// The other hub.
    pub fn other(self) -> Hub {
        match self {
            Hub::Primary => Hub::Secondary,
            Hub::Secondary => Hub::Primary,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Hub::Primary => 0,
            Hub::Secondary => 1,
        }
    }
}

/// A part of a device or module that a write can set.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Field {
    /// `status` with `statusReason`.
    Status,
    /// `authentication`, one whole value.
    Auth,
    /// Another identity field, by name (`capabilities`, `deviceScope`).
    Identity(&'static str),
    /// A twin leaf.
    Twin(Section, Vec<String>),
}

impl Field {
    /// The field's path as conflict records write it.
    pub(crate) fn path(&self) -> String {
        match self {
            Field::Status => "status".into(),
            Field::Auth => "authentication".into(),
            Field::Identity(name) => (*name).into(),
            Field::Twin(section, path) => format!("{}.{}", section.path(), path.join(".")),
        }
    }

    /// Whether writing one of the two fields replaces the other: the same
    /// field, or twin paths one under the other.
    pub(crate) fn overlaps(&self, other: &Field) -> bool {
        match (self, other) {
            (Field::Twin(sa, a), Field::Twin(sb, b)) => {
                sa == sb && (paths::is_prefix(a, b) || paths::is_prefix(b, a))
            }
            (a, b) => a == b,
        }
    }
}

/// A value a write set; `Null` for a removal.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    /// A status with its reason.
    Status(StatusValue),
    /// A whole authentication.
    Auth(Authentication),
    /// A JSON value (identity field or twin leaf).
    Json(Value),
    /// A twin removal (PATCH with `null`), with what it removed.
    Removed(Value),
    /// Nothing (an absent field).
    Null,
}

/// One value set by one write, on the device (`module: None`) or a module.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Fact {
    pub module: Option<String>,
    pub field: Field,
    pub value: Val,
}

/// What a write did to the device's life.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Op {
    /// Created an incarnation (provisioned, or re-created after a delete).
    Create { inc: u64 },
    /// Deleted incarnation `inc` with its modules.
    Delete { inc: u64 },
    /// Added a module incarnation.
    ModuleCreate { module: String, inc: u64 },
    /// Removed a module incarnation.
    ModuleDelete { module: String, inc: u64 },
    /// Changed fields of the live incarnation.
    Update,
}

/// The kinds of writes, for the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    Provision,
    Recreate,
    Delete,
    Disable,
    Enable,
    Rotate,
    Desired,
    Reported,
    Tags,
    ModuleAdd,
    ModuleRemove,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Provision => "provision",
            Kind::Recreate => "re-create",
            Kind::Delete => "delete",
            Kind::Disable => "disable",
            Kind::Enable => "enable",
            Kind::Rotate => "rotate-keys",
            Kind::Desired => "desired",
            Kind::Reported => "reported",
            Kind::Tags => "tags",
            Kind::ModuleAdd => "module-add",
            Kind::ModuleRemove => "module-remove",
        }
    }
}

/// One write, as the oracle saw it.
#[derive(Clone, Debug)]
pub(crate) struct Write {
    pub hub: Hub,
    /// Simulated time, ms since the epoch (true time, not the hub's clock).
    pub time: i64,
    /// Position in its hub's history this cycle.
    pub seq: u32,
    /// A primary write that was in the backup the secondary was seeded
    /// from.
    pub in_backup: bool,
    /// A primary write made after the point the primary was restored to:
    /// the primary lost it when its region failed.
    pub ghost: bool,
    /// A primary write whose events reached the secondary's replica by the
    /// failover, which seeded the secondary with it.
    pub replicated: bool,
    /// A write no hub holds: made on the primary's lost branch and not
    /// replicated.
    pub lost: bool,
    pub kind: Kind,
    pub op: Op,
    /// The device incarnation the write was made on (after it, for
    /// creates).
    pub inc: u64,
    pub facts: Vec<Fact>,
}

impl Write {
    /// Whether `self` was made on a hub state that held `earlier`.
    pub(crate) fn saw(&self, earlier: &Write) -> bool {
        if earlier.lost && !self.lost {
            return false;
        }
        match (self.hub, earlier.hub) {
            // The primary restored to an earlier point never saw what it
            // lost, replicated or not.
            (Hub::Primary, Hub::Primary) if earlier.ghost && !self.ghost => false,
            (a, b) if a == b => earlier.seq < self.seq,
            (Hub::Secondary, Hub::Primary) => earlier.in_backup || earlier.replicated,
            _ => false,
        }
    }

    /// Whether the write is a status write that set `disabled`.
    pub(crate) fn disables(&self) -> bool {
        self.facts.iter().any(|f| {
            f.module.is_none()
                && matches!(&f.value, Val::Status(s) if s.status == crate::doc::Status::Disabled)
        })
    }

    /// Whether the write set the device's status to `enabled`.
    pub(crate) fn enables(&self) -> bool {
        self.facts.iter().any(|f| {
            f.module.is_none()
                && matches!(&f.value, Val::Status(s) if s.status == crate::doc::Status::Enabled)
        })
    }
}

/// Every value of an entity as facts.
pub(crate) fn entity_facts(module: Option<&str>, e: &Entity, out: &mut Vec<Fact>) {
    facts_of(module, e, true, out);
}

/// The values of an entity's identity fields as facts: the first of
/// [`entity_facts`], without the twin leaves.
pub(crate) fn identity_facts(module: Option<&str>, e: &Entity, out: &mut Vec<Fact>) {
    facts_of(module, e, false, out);
}

fn facts_of(module: Option<&str>, e: &Entity, twin: bool, out: &mut Vec<Fact>) {
    let module = module.map(str::to_owned);
    let mut push = |field, value| {
        out.push(Fact {
            module: module.clone(),
            field,
            value,
        })
    };
    if let Some(s) = &e.status {
        push(Field::Status, Val::Status(s.clone()));
    }
    if let Some(a) = &e.authentication {
        push(Field::Auth, Val::Auth(a.clone()));
    }
    if let Some(c) = &e.capabilities {
        push(Field::Identity("capabilities"), Val::Json(c.clone()));
    }
    if let Some(s) = &e.device_scope {
        push(
            Field::Identity("deviceScope"),
            Val::Json(Value::String(s.clone())),
        );
    }
    if twin {
        for section in SECTIONS {
            for (path, value) in paths::leaves(section_of(e, section)) {
                push(Field::Twin(section, path), Val::Json(value));
            }
        }
    }
}

/// The twin sections, in the order facts list them.
pub(crate) const SECTIONS: [Section; 3] = [Section::Tags, Section::Desired, Section::Reported];

/// Every value of a device and its modules as facts.
pub(crate) fn device_facts(d: &DeviceSnapshot) -> Vec<Fact> {
    let mut out = Vec::new();
    entity_facts(None, &d.device, &mut out);
    for (m, e) in &d.modules {
        entity_facts(Some(m), e, &mut out);
    }
    out
}

/// The entity a fact is about.
pub(crate) fn entity_of<'a>(d: &'a DeviceSnapshot, module: Option<&str>) -> Option<&'a Entity> {
    match module {
        None => Some(&d.device),
        Some(m) => d.modules.get(m),
    }
}

/// An entity's twin section.
pub(crate) fn section_of(e: &Entity, section: Section) -> &crate::doc::JsonMap {
    match section {
        Section::Tags => &e.tags,
        Section::Desired => &e.desired,
        Section::Reported => &e.reported,
    }
}

/// Whether the entity holds `value` at `field` (`Null`: nothing there),
/// compared where the entity holds it.
pub(crate) fn value_is(e: &Entity, field: &Field, value: &Val) -> bool {
    fn json_is(found: Option<&Value>, value: &Val) -> bool {
        match (found, value) {
            (None, Val::Null) => true,
            (Some(found), Val::Json(v)) => found == v,
            _ => false,
        }
    }
    match field {
        Field::Status => match (&e.status, value) {
            (None, Val::Null) => true,
            (Some(s), Val::Status(v)) => s == v,
            _ => false,
        },
        Field::Auth => match (&e.authentication, value) {
            (None, Val::Null) => true,
            (Some(a), Val::Auth(v)) => a == v,
            _ => false,
        },
        Field::Identity("capabilities") => json_is(e.capabilities.as_ref(), value),
        Field::Identity("deviceScope") => match (&e.device_scope, value) {
            (None, Val::Null) => true,
            (Some(s), Val::Json(Value::String(v))) => s == v,
            _ => false,
        },
        Field::Identity(name) => json_is(e.extra.get(*name), value),
        Field::Twin(section, path) => json_is(paths::get(section_of(e, *section), path), value),
    }
}

impl Val {
    /// The value as conflict records show it: secrets as fingerprints.
    pub(crate) fn shown(&self) -> Value {
        match self {
            Val::Status(s) => serde_json::to_value(s).unwrap_or(Value::Null),
            Val::Auth(a) => a.redacted(),
            Val::Json(v) => v.clone(),
            Val::Removed(_) | Val::Null => Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(hub: Hub, seq: u32, in_backup: bool, lost: bool) -> Write {
        Write {
            hub,
            time: 0,
            seq,
            in_backup,
            ghost: lost,
            replicated: false,
            lost,
            kind: Kind::Desired,
            op: Op::Update,
            inc: 0,
            facts: Vec::new(),
        }
    }

    #[test]
    fn seeing_follows_hub_history_and_the_backup_only() {
        let p1 = write(Hub::Primary, 1, true, false);
        let p2 = write(Hub::Primary, 2, false, false);
        let p3_lost = write(Hub::Primary, 3, false, true);
        let p4 = write(Hub::Primary, 4, false, false);
        let s1 = write(Hub::Secondary, 1, false, false);
        assert!(p2.saw(&p1) && !p1.saw(&p2));
        assert!(s1.saw(&p1), "the backup held p1");
        assert!(!s1.saw(&p2), "p2 came after the backup");
        assert!(!p4.saw(&p3_lost), "the primary was restored without p3");
        assert!(p3_lost.saw(&p2));
        assert!(!p2.saw(&s1) && !p4.saw(&s1));
    }

    #[test]
    fn fields_overlap_along_twin_paths() {
        let p = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        let a = Field::Twin(Section::Desired, p("cfg"));
        let b = Field::Twin(Section::Desired, p("cfg.rate"));
        let c = Field::Twin(Section::Reported, p("cfg.rate"));
        assert!(a.overlaps(&b) && b.overlaps(&a) && !b.overlaps(&c));
        assert!(Field::Auth.overlaps(&Field::Auth) && !Field::Auth.overlaps(&Field::Status));
        assert_eq!(b.path(), "properties.desired.cfg.rate");
    }
}
