//! Folded twin changes: an entity incarnation's twin changes
//! (`updateTwin`, `replaceTwin`) kept as a last-writer-wins tree instead of
//! as events.
//!
//! # The law
//!
//! Replay applies an incarnation's twin changes in one order: twin
//! `version`, then time, kind, dot (a change's [`Stamp`]). A [`Twin`] keeps,
//! for every node a change wrote, only the writes that order can still
//! let win:
//!
//! - a scalar or `null` written at a node is a **kill**: it removes what
//!   was below the node, so every write below it with an older stamp can
//!   never show again and is pruned; a `null` stays as a tombstone with
//!   its stamp, so a late older write under it loses;
//! - an object written at a node merges into it; the node is an object
//!   when its newest object write is newer than its newest kill;
//! - a section a `replaceTwin` gives (a create's or seed's base, at the
//!   lowest stamp) is a kill of everything older in the section;
//! - identity fields and the etag are registers: the newest stamp wins;
//!   the version is the highest.
//!
//! So the tree is a function of the *set* of changes folded, never of
//! their order: [`Twin::join`] is commutative, associative and
//! idempotent, and folding a change is joining the tree of that one
//! change. Rendered over the incarnation's base, it gives what replay in
//! stamp order gives: the same values, etag, version and status, and the
//! same times where the changes carry `$metadata` for the nodes they
//! write (as a hub's change notifications do).
//!
//! # Where times differ from replay
//!
//! Replay keeps some `$metadata` shapes that depend on the order the
//! changes met the state; the tree keeps their order-free equivalent:
//!
//! - an object a patch creates where none was gets its children's times
//!   from the patch's `$metadata`; where that names no time for a child,
//!   replay writes no time (the child inherits its parent's) and the tree
//!   writes the parent's time: the same time, written out;
//! - a `null` raises its parent's time (the section's, at the top) to its
//!   own even when the key was already absent, where replay raises it only
//!   when something was removed;
//! - `$metadata` entries for keys a change does not set are not kept.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::doc::{Entity, EntityTimes, JsonMap, MetaTree, StatusValue};
use crate::format::{Event, EventTwin, Op};

/// Where a twin change stands among its entity's changes: replay's
/// order, version first, then time, kind and dot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Stamp {
    pub(super) version: u64,
    pub(super) time: i64,
    pub(super) rank: u8,
    pub(super) dot: Box<str>,
}

/// A stamp shared by every node one change wrote.
pub(super) type At = Arc<Stamp>;

/// The stamp of a base (a create's or seed's state): before every change.
pub(super) fn base_stamp() -> At {
    Arc::new(Stamp {
        version: 0,
        time: i64::MIN,
        rank: 0,
        dot: Box::from(""),
    })
}

/// What `$metadata` holds for a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Meta {
    /// No entry.
    Absent,
    /// An entry without `$lastUpdated`.
    Unset,
    /// `$lastUpdated`, ms since the epoch.
    At(i64),
}

/// One node of a section, by key.
pub(super) type Children = Vec<(String, Node)>;

/// A node of a twin section and the writes that still matter to it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Node {
    /// The newest scalar or `null` written here: nothing older below it
    /// is kept.
    pub(super) kill: Option<At>,
    pub(super) state: NodeState,
}

/// What a node is: the newest of its writes.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum NodeState {
    /// A scalar or array, written at the node's `kill`.
    Leaf(Value, Meta),
    /// Removed by a `null` at the node's `kill`.
    Gone,
    /// An object, last written at `at` (newer than `kill`).
    Object {
        at: At,
        meta: Meta,
        children: Children,
    },
}

impl Node {
    /// The stamp of the write the node shows.
    fn shown(&self) -> Option<&At> {
        match &self.state {
            NodeState::Object { at, .. } => Some(at),
            _ => self.kill.as_ref(),
        }
    }

    /// Drops every write older than `floor`; `false` when nothing is left.
    fn prune(&mut self, floor: &Stamp) -> bool {
        if self.shown().is_none_or(|s| **s < *floor) {
            return false;
        }
        if self.kill.as_ref().is_some_and(|k| **k < *floor) {
            self.kill = None;
        }
        if let NodeState::Object { children, .. } = &mut self.state {
            children.retain_mut(|(_, c)| c.prune(floor));
        }
        true
    }

    /// Joins `other` into this node, both already pruned to `floor`.
    fn join(&mut self, other: &Node) {
        let kill = match (&self.kill, &other.kill) {
            (Some(a), Some(b)) => Some(if b > a { b.clone() } else { a.clone() }),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        let other_wins = match (self.shown(), other.shown()) {
            (Some(a), Some(b)) => b > a,
            (None, Some(_)) => true,
            _ => false,
        };
        match (&mut self.state, &other.state) {
            (
                NodeState::Object {
                    at,
                    meta,
                    children: mine,
                },
                NodeState::Object {
                    at: their_at,
                    meta: their_meta,
                    children: theirs,
                },
            ) => {
                if other_wins {
                    *at = their_at.clone();
                    *meta = *their_meta;
                }
                join_children(mine, theirs, kill.as_deref());
            }
            (_, their_state) if other_wins => {
                self.state = their_state.clone();
                if let (NodeState::Object { children, .. }, Some(k)) = (&mut self.state, &kill) {
                    children.retain_mut(|(_, c)| c.prune(k));
                }
            }
            (NodeState::Object { children, .. }, _) => {
                if let Some(k) = &kill {
                    children.retain_mut(|(_, c)| c.prune(k));
                }
            }
            _ => {}
        }
        self.kill = kill;
    }
}

/// Joins `theirs` into `mine` (both sorted by key), pruning both to
/// `floor` first.
fn join_children(mine: &mut Children, theirs: &Children, floor: Option<&Stamp>) {
    if let Some(floor) = floor {
        mine.retain_mut(|(_, c)| c.prune(floor));
    }
    for (key, node) in theirs {
        let mut node = node.clone();
        if let Some(floor) = floor {
            if !node.prune(floor) {
                continue;
            }
        }
        match mine.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            Ok(i) => {
                if let Some((_, m)) = mine.get_mut(i) {
                    m.join(&node);
                }
            }
            Err(i) => mine.insert(i, (key.clone(), node)),
        }
    }
}

fn shrink_children(children: &mut Children) {
    children.shrink_to_fit();
    for (_, node) in children {
        if let NodeState::Object { children, .. } = &mut node.state {
            shrink_children(children);
        }
    }
}

/// One twin section (`tags`, `properties.desired` or
/// `properties.reported`).
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Section {
    /// The newest write of the whole section (a base or a `replaceTwin`)
    /// and the section's time it gave.
    pub(super) whole: Option<(At, Meta)>,
    /// `null`s at the top after `whole`: their stamps and times, newest
    /// stamp last, each time greater than every later one's.
    pub(super) nulls: Vec<(At, i64)>,
    pub(super) children: Children,
}

impl Section {
    /// Joins `other` into this section.
    fn join(&mut self, other: &Section) {
        if let Some((at, meta)) = &other.whole {
            if self.whole.as_ref().is_none_or(|(mine, _)| at > mine) {
                self.whole = Some((at.clone(), *meta));
            }
        }
        for null in &other.nulls {
            if !self.nulls.contains(null) {
                self.nulls.push(null.clone());
            }
        }
        let floor = self.whole.as_ref().map(|(at, _)| at.clone());
        if let Some(floor) = &floor {
            self.nulls.retain(|(at, _)| at > floor);
        }
        self.nulls = newest_nulls(std::mem::take(&mut self.nulls));
        join_children(&mut self.children, &other.children, floor.as_deref());
    }

    /// The section written whole at `at` (a base or a `replaceTwin`):
    /// its values, and the times its `$metadata` gives.
    fn whole(map: &JsonMap, meta: Option<&MetaTree>, root: Meta, at: &At) -> Self {
        Section {
            whole: Some((at.clone(), root)),
            nulls: Vec::new(),
            children: whole_nodes(map, meta, at),
        }
    }

    /// A patch of the section at `at`, its times from `meta`, else `time`.
    fn patch(map: &JsonMap, meta: &MetaTree, at: &At, time: i64) -> Self {
        let mut nulls = Vec::new();
        let children = patch_nodes(map, meta, at, time, &mut nulls);
        let newest = nulls.into_iter().max();
        Section {
            whole: None,
            nulls: newest.map(|t| (at.clone(), t)).into_iter().collect(),
            children,
        }
    }

    /// The section's values and times.
    fn render(&self) -> (JsonMap, MetaTree) {
        let mut map = JsonMap::new();
        let mut meta = MetaTree::default();
        render_children(&self.children, &mut map, &mut meta);
        meta.last_updated = match self.whole.as_ref().map(|(_, m)| *m) {
            Some(Meta::At(t)) => Some(t),
            _ => None,
        };
        for (_, t) in &self.nulls {
            meta.last_updated = Some(meta.last_updated.map_or(*t, |m| m.max(*t)));
        }
        (map, meta)
    }
}

/// `nulls` by stamp, keeping only those no newer one outdoes in time: a
/// section's time is the newest null's, and a later `whole` prunes an
/// older null of the same time whenever it prunes the newer.
fn newest_nulls(mut nulls: Vec<(At, i64)>) -> Vec<(At, i64)> {
    nulls.sort_by(|a, b| a.0.cmp(&b.0));
    let mut kept: Vec<(At, i64)> = Vec::with_capacity(nulls.len());
    for (at, time) in nulls.into_iter().rev() {
        if kept.last().is_none_or(|(_, t)| time > *t) {
            kept.push((at, time));
        }
    }
    kept.reverse();
    kept
}

fn meta_of(given: Option<&MetaTree>) -> Meta {
    match given {
        None => Meta::Absent,
        Some(g) => g.last_updated.map_or(Meta::Unset, Meta::At),
    }
}

fn whole_nodes(map: &JsonMap, given: Option<&MetaTree>, at: &At) -> Children {
    let mut out = Vec::with_capacity(map.len());
    for (key, value) in map {
        let child = given.and_then(|g| g.children.get(key));
        let meta = meta_of(child);
        let node = match value {
            Value::Null => continue,
            Value::Object(inner) => Node {
                kill: None,
                state: NodeState::Object {
                    at: at.clone(),
                    meta,
                    children: whole_nodes(inner, child, at),
                },
            },
            other => Node {
                kill: Some(at.clone()),
                state: NodeState::Leaf(other.clone(), meta),
            },
        };
        out.push((key.clone(), node));
    }
    out
}

fn patch_nodes(
    map: &JsonMap,
    given: &MetaTree,
    at: &At,
    time: i64,
    nulls: &mut Vec<i64>,
) -> Children {
    let none = MetaTree::default();
    let mut out = Vec::with_capacity(map.len());
    for (key, value) in map {
        let child = given.children.get(key).unwrap_or(&none);
        let t = child.last_updated.unwrap_or(time);
        let node = match value {
            Value::Null => {
                nulls.push(t);
                Node {
                    kill: Some(at.clone()),
                    state: NodeState::Gone,
                }
            }
            Value::Object(inner) => {
                let mut below = Vec::new();
                let children = patch_nodes(inner, child, at, t, &mut below);
                let t = below.into_iter().fold(t, i64::max);
                Node {
                    kill: None,
                    state: NodeState::Object {
                        at: at.clone(),
                        meta: Meta::At(t),
                        children,
                    },
                }
            }
            other => Node {
                kill: Some(at.clone()),
                state: NodeState::Leaf(other.clone(), Meta::At(t)),
            },
        };
        out.push((key.clone(), node));
    }
    out
}

fn render_children(children: &Children, map: &mut JsonMap, meta: &mut MetaTree) {
    for (key, node) in children {
        match &node.state {
            NodeState::Gone => {}
            NodeState::Leaf(value, m) => {
                map.insert(key.clone(), value.clone());
                if let Some(tree) = meta_node(*m, MetaTree::default()) {
                    meta.children.insert(key.clone(), tree);
                }
            }
            NodeState::Object {
                meta: m, children, ..
            } => {
                let mut inner = JsonMap::new();
                let mut inner_meta = MetaTree::default();
                render_children(children, &mut inner, &mut inner_meta);
                map.insert(key.clone(), Value::Object(inner));
                if let Some(tree) = meta_node(*m, inner_meta) {
                    meta.children.insert(key.clone(), tree);
                }
            }
        }
    }
}

/// A node's `$metadata` entry: none when it has neither a time nor
/// children with one.
fn meta_node(meta: Meta, mut tree: MetaTree) -> Option<MetaTree> {
    match meta {
        Meta::At(t) => tree.last_updated = Some(t),
        Meta::Unset => {}
        Meta::Absent if tree.children.is_empty() => return None,
        Meta::Absent => {}
    }
    Some(tree)
}

/// A register: the value of the newest write.
pub(super) type Register<T> = Option<(At, T)>;

fn join_register<T: Clone>(mine: &mut Register<T>, theirs: &Register<T>) {
    if let Some((at, value)) = theirs {
        if mine.as_ref().is_none_or(|(m, _)| at > m) {
            *mine = Some((at.clone(), value.clone()));
        }
    }
}

/// An entity's identity fields as the changes give them.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Identity {
    /// The status, with its `statusUpdateTime` (a base may have either
    /// alone).
    pub(super) status: Register<(Option<StatusValue>, Option<i64>)>,
    pub(super) capabilities: Register<Value>,
    pub(super) device_scope: Register<String>,
    pub(super) parent_scopes: Register<Value>,
    pub(super) extra: BTreeMap<String, (At, Value)>,
    pub(super) etag: Register<String>,
    /// The highest twin version.
    pub(super) version: u64,
}

impl Identity {
    fn join(&mut self, other: &Identity) {
        join_register(&mut self.status, &other.status);
        join_register(&mut self.capabilities, &other.capabilities);
        join_register(&mut self.device_scope, &other.device_scope);
        join_register(&mut self.parent_scopes, &other.parent_scopes);
        for (key, theirs) in &other.extra {
            let mine = self
                .extra
                .entry(key.clone())
                .or_insert_with(|| theirs.clone());
            if theirs.0 > mine.0 {
                *mine = theirs.clone();
            }
        }
        join_register(&mut self.etag, &other.etag);
        self.version = self.version.max(other.version);
    }

    /// What one change (or a base) gives, at `at`; `time` for the status
    /// when the change names no `statusUpdateTime`.
    fn of(
        entity: &Entity,
        status_time: Option<i64>,
        etag: Option<&String>,
        version: u64,
        at: &At,
    ) -> Self {
        let reg = |v: Option<&Value>| v.map(|v| (at.clone(), v.clone()));
        Identity {
            status: entity
                .status
                .as_ref()
                .map(|s| (at.clone(), (Some(s.clone()), status_time))),
            capabilities: reg(entity.capabilities.as_ref()),
            device_scope: entity
                .device_scope
                .as_ref()
                .map(|s| (at.clone(), s.clone())),
            parent_scopes: reg(entity.parent_scopes.as_ref()),
            extra: entity
                .extra
                .iter()
                .map(|(k, v)| (k.clone(), (at.clone(), v.clone())))
                .collect(),
            etag: etag.map(|e| (at.clone(), e.clone())),
            version,
        }
    }
}

/// An entity incarnation's twin changes, folded. See the [module
/// docs](self).
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Twin {
    pub(super) identity: Identity,
    pub(super) tags: Section,
    pub(super) desired: Section,
    pub(super) reported: Section,
}

/// What replay derives for an entity: its state before or after changes.
pub(super) struct Base<'a> {
    pub(super) entity: &'a Entity,
    pub(super) times: &'a EntityTimes,
    pub(super) etag: Option<&'a String>,
    pub(super) version: u64,
}

impl Twin {
    /// The base's tree: everything at the lowest stamp.
    pub(super) fn of_base(base: &Base<'_>) -> Self {
        let at = base_stamp();
        let mut identity = Identity::of(base.entity, None, base.etag, base.version, &at);
        identity.status = Some((at.clone(), (base.entity.status.clone(), base.times.status)));
        Twin {
            identity,
            tags: Section::whole(&base.entity.tags, None, Meta::Absent, &at),
            desired: Section::whole(
                &base.entity.desired,
                Some(&base.times.desired),
                meta_of(Some(&base.times.desired)),
                &at,
            ),
            reported: Section::whole(
                &base.entity.reported,
                Some(&base.times.reported),
                meta_of(Some(&base.times.reported)),
                &at,
            ),
        }
    }

    /// The tree of one twin change (`updateTwin` or `replaceTwin`) with
    /// stamp `at`.
    pub(super) fn of_change(op: &Op, twin: &EventTwin, time: i64, at: &At) -> Self {
        let identity = Identity::of(
            &twin.entity,
            Some(twin.times.status.unwrap_or(time)),
            twin.etag.as_ref(),
            twin.version.unwrap_or(0),
            at,
        );
        let (entity, times) = (&twin.entity, &twin.times);
        let mut out = Twin {
            identity,
            ..Twin::default()
        };
        if *op == Op::ReplaceTwin {
            let stamped = |m: &MetaTree| Meta::At(m.last_updated.unwrap_or(time));
            if twin.has_tags {
                out.tags = Section::whole(&entity.tags, None, Meta::Absent, at);
            }
            if twin.has_desired {
                out.desired = Section::whole(
                    &entity.desired,
                    Some(&times.desired),
                    stamped(&times.desired),
                    at,
                );
            }
            if twin.has_reported {
                out.reported = Section::whole(
                    &entity.reported,
                    Some(&times.reported),
                    stamped(&times.reported),
                    at,
                );
            }
        } else {
            if twin.has_tags {
                out.tags = Section::patch(&entity.tags, &MetaTree::default(), at, time);
                out.tags.nulls.clear();
            }
            if twin.has_desired {
                let at_time = times.desired.last_updated.unwrap_or(time);
                out.desired = Section::patch(&entity.desired, &times.desired, at, at_time);
            }
            if twin.has_reported {
                let at_time = times.reported.last_updated.unwrap_or(time);
                out.reported = Section::patch(&entity.reported, &times.reported, at, at_time);
            }
        }
        out
    }

    /// Frees the room its vectors do not use.
    pub(super) fn shrink_to_fit(&mut self) {
        for section in [&mut self.tags, &mut self.desired, &mut self.reported] {
            section.nulls.shrink_to_fit();
            shrink_children(&mut section.children);
        }
    }

    /// Joins `other` into this tree: commutative, associative, idempotent.
    pub(super) fn join(&mut self, other: &Twin) {
        self.identity.join(&other.identity);
        self.tags.join(&other.tags);
        self.desired.join(&other.desired);
        self.reported.join(&other.reported);
    }

    /// The entity, times and etag the tree shows over `base` (whose
    /// other fields, such as `authentication`, are kept).
    pub(super) fn render(&self, base: &Entity) -> (Entity, EntityTimes, Option<String>) {
        let mut entity = Entity {
            authentication: base.authentication.clone(),
            ..Entity::default()
        };
        let mut times = EntityTimes::default();
        let id = &self.identity;
        if let Some((_, (status, time))) = &id.status {
            entity.status.clone_from(status);
            times.status = *time;
        }
        entity.capabilities = id.capabilities.as_ref().map(|(_, v)| v.clone());
        entity.device_scope = id.device_scope.as_ref().map(|(_, v)| v.clone());
        entity.parent_scopes = id.parent_scopes.as_ref().map(|(_, v)| v.clone());
        entity.extra = id
            .extra
            .iter()
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect();
        entity.tags = self.tags.render().0.into();
        let (desired, reported) = (self.desired.render(), self.reported.render());
        (entity.desired, times.desired) = (desired.0.into(), desired.1);
        (entity.reported, times.reported) = (reported.0.into(), reported.1);
        (entity, times, id.etag.as_ref().map(|(_, e)| e.clone()))
    }
}

/// The stamp replay orders a twin change by.
pub(super) fn stamp_of(dot: &str, event: &Event) -> At {
    Arc::new(Stamp {
        version: event.version(),
        time: event.time.unwrap_or(i64::MIN),
        rank: super::replay::rank(&event.op),
        dot: Box::from(dot),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::parse_event_line;
    use serde_json::json;

    /// The tree of one twin change `op` of device `d`, version `version`,
    /// at `second` past 12:00, with `body` (its version added).
    fn change(op: &str, version: u64, second: u32, mut body: Value) -> Twin {
        body["version"] = json!(version);
        let line = json!({
            "properties": {"deviceId": "d", "opType": op,
                "operationTimestamp": format!("2024-03-01T12:00:{second:02}Z")},
            "systemProperties": {"correlation-id": format!("c{version}")},
            "body": body,
        })
        .to_string();
        let event = parse_event_line("e.jsonl", 1, &line).expect("a valid event");
        let twin = event.twin.as_deref().expect("a twin change");
        let at = stamp_of(&format!("id:c{version}"), &event);
        Twin::of_change(&event.op, twin, event.time.unwrap_or(0), &at)
    }

    /// `second` past 2024-03-01T12:00:00Z, in ms.
    fn ms(second: i64) -> i64 {
        1_709_294_400_000 + 1000 * second
    }

    fn joined(changes: &[&Twin]) -> Twin {
        let mut tree = Twin::default();
        for change in changes {
            tree.join(change);
        }
        tree
    }

    #[test]
    fn a_null_no_newer_null_outdoes_in_time_is_not_kept() {
        // Two removals at the top of `desired`, at the same time: the
        // section's time is the newer one's, and the older adds nothing
        // a later replace could need (it prunes both or neither).
        let older = change(
            "updateTwin",
            2,
            5,
            json!({"properties": {"desired": {"fan": null}}}),
        );
        let newer = change(
            "updateTwin",
            3,
            5,
            json!({"properties": {"desired": {"mode": null}}}),
        );
        for tree in [joined(&[&older, &newer]), joined(&[&newer, &older])] {
            let versions: Vec<u64> = tree
                .desired
                .nulls
                .iter()
                .map(|(at, _)| at.version)
                .collect();
            assert_eq!(versions, [3]);
        }
        // An older removal at a later time is kept beside the newer.
        let late = change(
            "updateTwin",
            1,
            9,
            json!({"properties": {"desired": {"x": null}}}),
        );
        let tree = joined(&[&newer, &late, &older]);
        let kept: Vec<(u64, i64)> = tree
            .desired
            .nulls
            .iter()
            .map(|(at, t)| (at.version, *t))
            .collect();
        assert_eq!(kept, [(1, ms(9)), (3, ms(5))]);
    }

    /// A tree whose only write is identity field `key` set to `value`
    /// at version `version`.
    fn extra(key: &str, value: &str, version: u64) -> Twin {
        let at = Arc::new(Stamp {
            version,
            time: 0,
            rank: 3,
            dot: Box::from(format!("id:c{version}")),
        });
        let mut tree = Twin::default();
        tree.identity
            .extra
            .insert(key.to_owned(), (at, json!(value)));
        tree
    }

    #[test]
    fn an_identity_field_shows_its_newest_write_in_any_join_order() {
        // Changes read from events carry no unknown identity field, but a
        // fold read from a state file may, and joins as a register.
        let (older, newer) = (extra("k", "old", 2), extra("k", "new", 3));
        for tree in [joined(&[&older, &newer]), joined(&[&newer, &older])] {
            let (entity, _, _) = tree.render(&Entity::default());
            assert_eq!(entity.extra.get("k"), Some(&json!("new")));
        }
    }
}
