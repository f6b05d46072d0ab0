//! Twin sections (`tags`, `desired`, `reported`) as trees of registers.
//!
//! Every node of a section holds a register for the value written *at* that
//! node and a map of children. A scalar, an array or an empty object is a
//! value; a non-empty object is expressed by its children. Setting a
//! property to `null` writes the tombstone `null` to every node it removes
//! (each leaf, and each object above one), so a removal is a write that is
//! ranked by stamp like any other, also against a scalar written
//! concurrently where the removing hub saw an object, and a concurrent edit
//! of a sibling key is untouched.

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::conflict::{ConflictSink, Rule, Side};
use super::write::Write;
use super::{CompactJson, Key};
use super::{JsonMap, MetaTree, merge_patch};
use crate::clock::{Dot, Stamp};
use crate::kernel::{CausalContext, DotStore, MvReg, OrMap, Rank};

/// One of the three sections of a twin.
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
/// let body = json!({ "temperature": 19.5 });
/// let patch = TwinPatch { id: "thermostat-7", module_id: None, section: Section::Reported, patch: body.as_object().ok_or("an object")? };
/// state.patch_twin(&patch, &Stamp::new(2, 0, p), None);
/// let read = state.read_device("thermostat-7", &Policies::default(), &mut Vec::new()).ok_or("live")?;
/// assert_eq!(read.device.reported["temperature"], 19.5);
/// assert!(read.device.desired.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    /// `tags`, written by the back end.
    Tags,
    /// `properties.desired`, written by the back end.
    Desired,
    /// `properties.reported`, written by the device.
    Reported,
}

impl Section {
    /// The section's path in a twin: `tags`, `properties.desired` or
    /// `properties.reported`.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::Section;
    ///
    /// assert_eq!(Section::Tags.path(), "tags");
    /// assert_eq!(Section::Desired.path(), "properties.desired");
    /// ```
    pub fn path(self) -> &'static str {
        match self {
            Section::Tags => "tags",
            Section::Desired => "properties.desired",
            Section::Reported => "properties.reported",
        }
    }
}

/// A twin section: property name to node.
pub(crate) type TwinTree = OrMap<Key, TwinNode>;

/// The tree every leaf reads as its children.
static NO_CHILDREN: TwinTree = OrMap::new();

/// The register every object node without a value of its own reads as.
static NO_VALUE: MvReg<CompactJson> = MvReg::new();

/// One property of a twin section: a register for the value written at
/// the node and, when it is an object, its children.
///
/// Almost every node of a twin is a leaf, so a leaf is held as its register
/// alone (24 bytes), an object node as a box of its children, and only a
/// node with both pays for both. The forms are one value: a node takes the
/// smallest form that holds what it has, and equality and serialization
/// see only the register and the children.
#[derive(Clone, Debug)]
pub(crate) struct TwinNode(Node);

#[derive(Clone, Debug)]
enum Node {
    /// A value and no children.
    Leaf(MvReg<CompactJson>),
    /// Children and no value.
    Object(Box<TwinTree>),
    /// Both.
    Branch(Box<Branch>),
}

#[derive(Clone, Debug)]
struct Branch {
    value: MvReg<CompactJson>,
    children: TwinTree,
}

impl Default for TwinNode {
    fn default() -> Self {
        Self(Node::Leaf(MvReg::new()))
    }
}

impl PartialEq for TwinNode {
    fn eq(&self, other: &Self) -> bool {
        self.value() == other.value() && self.children() == other.children()
    }
}

impl Serialize for TwinNode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (value, children) = (self.value(), self.children());
        let len = usize::from(!value.is_empty()) + usize::from(!children.is_empty());
        let mut st = s.serialize_struct("TwinNode", len)?;
        if !value.is_empty() {
            st.serialize_field("v", value)?;
        }
        if !children.is_empty() {
            st.serialize_field("c", children)?;
        }
        st.end()
    }
}

impl<'de> Deserialize<'de> for TwinNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(rename = "v", default)]
            value: MvReg<CompactJson>,
            #[serde(rename = "c", default)]
            children: TwinTree,
        }
        let raw = Raw::deserialize(d)?;
        let mut node = Self(Node::Branch(Box::new(Branch {
            value: raw.value,
            children: raw.children,
        })));
        node.settle();
        Ok(node)
    }
}

impl TwinNode {
    /// What was written at this node; `null` is a removal.
    fn value(&self) -> &MvReg<CompactJson> {
        match &self.0 {
            Node::Leaf(value) => value,
            Node::Object(_) => &NO_VALUE,
            Node::Branch(branch) => &branch.value,
        }
    }

    /// The register, to write to. Call [`TwinNode::settle`] when done.
    fn value_mut(&mut self) -> &mut MvReg<CompactJson> {
        if let Node::Object(children) = &mut self.0 {
            let children = std::mem::take(&mut **children);
            self.0 = Node::Branch(Box::new(Branch {
                value: MvReg::new(),
                children,
            }));
        }
        match &mut self.0 {
            Node::Leaf(value) => value,
            Node::Branch(branch) => &mut branch.value,
            Node::Object(_) => unreachable!("made a branch above"),
        }
    }

    /// The node's children (none for a leaf).
    fn children(&self) -> &TwinTree {
        match &self.0 {
            Node::Leaf(_) => &NO_CHILDREN,
            Node::Object(children) => children,
            Node::Branch(branch) => &branch.children,
        }
    }

    /// The children, to add to. Call [`TwinNode::settle`] when done.
    fn children_mut(&mut self) -> &mut TwinTree {
        if let Node::Leaf(value) = &mut self.0 {
            self.0 = if value.is_empty() {
                Node::Object(Box::default())
            } else {
                Node::Branch(Box::new(Branch {
                    value: std::mem::take(value),
                    children: TwinTree::new(),
                }))
            };
        }
        match &mut self.0 {
            Node::Object(children) => children,
            Node::Branch(branch) => &mut branch.children,
            Node::Leaf(_) => unreachable!("made an object above"),
        }
    }

    /// The children when there are any, to change in place.
    fn existing_children_mut(&mut self) -> Option<&mut TwinTree> {
        match &mut self.0 {
            Node::Leaf(_) => None,
            Node::Object(children) => Some(children),
            Node::Branch(branch) => Some(&mut branch.children),
        }
    }

    /// Takes the smallest form that holds what the node has.
    fn settle(&mut self) {
        let next = match &mut self.0 {
            Node::Leaf(_) => return,
            Node::Object(children) if children.is_empty() => Node::Leaf(MvReg::new()),
            Node::Object(_) => return,
            Node::Branch(branch) if branch.children.is_empty() => {
                Node::Leaf(std::mem::take(&mut branch.value))
            }
            Node::Branch(branch) if branch.value.is_empty() => {
                Node::Object(Box::new(std::mem::take(&mut branch.children)))
            }
            Node::Branch(_) => return,
        };
        self.0 = next;
    }
}

impl DotStore for TwinNode {
    fn is_bottom(&self) -> bool {
        self.value().is_empty() && self.children().is_empty()
    }

    fn join(&mut self, ctx: &CausalContext, other: &Self, other_ctx: &CausalContext) {
        if !(self.value().is_empty() && other.value().is_empty()) {
            self.value_mut().join(ctx, other.value(), other_ctx);
        }
        if !other.children().is_empty() {
            self.children_mut().join(ctx, other.children(), other_ctx);
        } else if let Some(children) = self.existing_children_mut() {
            children.join(ctx, &NO_CHILDREN, other_ctx);
        }
        self.settle();
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(&Dot)) {
        self.value().for_each_dot(f);
        self.children().for_each_dot(f);
    }
}

fn is_live(value: &CompactJson) -> bool {
    !value.is_null()
}

fn has_live_entry(reg: &MvReg<CompactJson>) -> bool {
    reg.entries().iter().any(|e| is_live(&e.value))
}

/// Writes the tombstone to every node of `tree` that reads as something;
/// says whether it wrote any.
fn remove_all(tree: &mut TwinTree, w: &mut Write<'_>, stamp: &Stamp) -> bool {
    let mut removed = false;
    for node in tree.values_mut() {
        removed |= node.remove(w, stamp);
    }
    removed
}

impl TwinNode {
    /// Writes the tombstone to the node and every node beneath it that
    /// reads as something: each leaf, and each object above one. The
    /// tombstone on an object is what ranks the removal by stamp against a
    /// value another hub wrote concurrently at the object's own path (a
    /// scalar where this hub saw an object); a child another hub added
    /// concurrently is a leaf this removal never saw, and stays.
    fn remove(&mut self, w: &mut Write<'_>, stamp: &Stamp) -> bool {
        let below = match self.existing_children_mut() {
            Some(children) => remove_all(children, w, stamp),
            None => false,
        };
        let removed = below || has_live_entry(self.value());
        if removed {
            self.value_mut().set_tagged(w.tag(stamp), CompactJson::NULL);
        }
        removed
    }
}

/// Where the stamps of a section's writes come from: one stamp for every
/// write (exports, by [policy 5](crate::contract#policies)), or per-node `$lastUpdated` times.
#[derive(Clone, Copy)]
pub(crate) enum Stamps<'a> {
    /// Every write gets this stamp.
    Fixed(&'a Stamp),
    /// Each node gets the time of its nearest `$metadata` node, falling back
    /// to the stamp given.
    Meta(&'a MetaTree, &'a Stamp),
}

impl Stamps<'_> {
    fn at(&self, path: &[&str]) -> Stamp {
        match self {
            Stamps::Fixed(stamp) => (*stamp).clone(),
            Stamps::Meta(meta, fallback) => match meta.time_at(path) {
                Some(ms) => Stamp::new(ms, 0, fallback.replica().clone()),
                None => (*fallback).clone(),
            },
        }
    }
}

/// Makes the section equal to `target`, writing only where it differs.
pub(crate) fn set_exact(
    tree: &mut TwinTree,
    target: &JsonMap,
    w: &mut Write<'_>,
    stamps: Stamps<'_>,
    path: &mut Vec<String>,
) {
    let gone: Vec<Key> = tree
        .keys()
        .filter(|k| !target.contains_key(k.as_str()))
        .cloned()
        .collect();
    for key in gone {
        path.push(key.to_string());
        set_node(tree.entry_mut(key), &Value::Null, w, stamps, path);
        path.pop();
    }
    for (key, value) in target {
        path.push(key.clone());
        let node = tree.entry_mut_by(key.as_str(), Key::new);
        set_node(node, value, w, stamps, path);
        path.pop();
    }
    tree.prune();
}

fn set_node(
    node: &mut TwinNode,
    value: &Value,
    w: &mut Write<'_>,
    stamps: Stamps<'_>,
    path: &mut Vec<String>,
) {
    // Only what reads differently is written: a write never re-stamps a
    // value it did not change, so it cannot resurrect a sibling someone
    // else has since replaced.
    let current = resolve_node(node, "", None).map(|(v, _)| v);
    if current.as_ref() == Some(value) || (current.is_none() && value.is_null()) {
        return;
    }
    match value {
        Value::Null => {
            let stamp = stamps.at(&as_strs(path));
            node.remove(w, &stamp);
        }
        Value::Object(object) if !object.is_empty() => {
            if has_live_entry(node.value()) {
                let stamp = stamps.at(&as_strs(path));
                node.value_mut()
                    .set_tagged(w.tag(&stamp), CompactJson::NULL);
            }
            set_exact(node.children_mut(), object, w, stamps, path);
            node.settle();
        }
        _ => {
            // Not what the node reads (that returned above): the value is
            // written, and any children it replaces are removed.
            let stamp = stamps.at(&as_strs(path));
            node.value_mut()
                .set_tagged(w.tag(&stamp), CompactJson::from(value));
            if let Some(children) = node.existing_children_mut() {
                remove_all(children, w, &stamp);
            }
        }
    }
}

/// Applies a twin PATCH ([`merge_patch`], JSON Merge Patch): the section
/// is made what the patch gives over what it reads now, writing only the
/// nodes that read differently, each a write ranked by stamp like any
/// other.
pub(crate) fn patch(
    tree: &mut TwinTree,
    patch: &JsonMap,
    w: &mut Write<'_>,
    stamps: Stamps<'_>,
    path: &mut Vec<String>,
) {
    let mut target = JsonMap::new();
    for (key, node) in tree.iter() {
        if let Some((value, _)) = resolve_node(node, "", None) {
            target.insert(key.to_string(), value);
        }
    }
    let no_times = MetaTree::default();
    merge_patch(&mut target, &mut MetaTree::default(), patch, &no_times, 0);
    set_exact(tree, &target, w, stamps, path);
}

fn as_strs(path: &[String]) -> Vec<&str> {
    path.iter().map(String::as_str).collect()
}

/// Reads a section into plain JSON, logging every conflict met on the way.
pub(crate) fn resolve(tree: &TwinTree, path: &str, sink: &mut ConflictSink<'_>) -> JsonMap {
    let mut out = JsonMap::new();
    for (key, node) in tree.iter() {
        let node_path = format!("{path}.{key}");
        if let Some((value, _)) = resolve_node(node, &node_path, Some(sink)) {
            out.insert(key.to_string(), value);
        }
    }
    out
}

/// The node's value and the highest stamp among the writes that made it,
/// logging conflicts into `sink` when one is given.
fn resolve_node(
    node: &TwinNode,
    path: &str,
    mut sink: Option<&mut ConflictSink<'_>>,
) -> Option<(Value, Stamp)> {
    let own = node.value().resolve(&Rank::HighestStamp);
    if let (Some(read), Some(sink)) = (&own, sink.as_deref_mut()) {
        sink.siblings(path, Rule::LatestWins, read.winner, &read.losers, side_of);
    }
    let own = own.map(|r| r.winner).filter(|e| is_live(&e.value));
    let mut children = JsonMap::new();
    let mut newest_child: Option<Stamp> = None;
    for (key, child) in node.children().iter() {
        let child_path = match sink {
            Some(_) => format!("{path}.{key}"),
            None => String::new(),
        };
        if let Some((value, stamp)) = resolve_node(child, &child_path, sink.as_deref_mut()) {
            children.insert(key.to_string(), value);
            newest_child = newest_child.max(Some(stamp));
        }
    }
    match (own, newest_child) {
        (None, None) => None,
        (Some(entry), None) => Some((entry.value.to_value(), entry.stamp().clone())),
        (Some(entry), Some(child_stamp)) if entry.value.is_empty_object() => {
            let stamp = child_stamp.max(entry.stamp().clone());
            Some((Value::Object(children), stamp))
        }
        (Some(entry), Some(child_stamp)) => {
            // A scalar where the other side built an object: one value by
            // stamp, the losing shape logged.
            let object = Value::Object(children);
            if *entry.stamp() > child_stamp {
                let loser = Side {
                    hub: child_stamp.replica().clone(),
                    value: object,
                    stamp: child_stamp,
                };
                if let Some(sink) = sink {
                    sink.record(path, Rule::Shape, side_of(entry), vec![loser]);
                }
                Some((entry.value.to_value(), entry.stamp().clone()))
            } else {
                let winner = Side {
                    hub: child_stamp.replica().clone(),
                    value: object.clone(),
                    stamp: child_stamp.clone(),
                };
                if let Some(sink) = sink {
                    sink.record(path, Rule::Shape, winner, vec![side_of(entry)]);
                }
                Some((object, child_stamp))
            }
        }
        (None, Some(stamp)) => Some((Value::Object(children), stamp)),
    }
}

fn side_of(entry: &crate::kernel::Entry<CompactJson>) -> Side {
    Side {
        hub: entry.stamp().replica().clone(),
        value: entry.value.to_value(),
        stamp: entry.stamp().clone(),
    }
}

/// Calls `f` with the path and every entry of every register of the section.
pub(crate) fn for_each_entry(
    tree: &TwinTree,
    path: &str,
    f: &mut dyn FnMut(&str, &crate::kernel::Entry<CompactJson>),
) {
    for (key, node) in tree.iter() {
        let node_path = format!("{path}.{key}");
        for entry in node.value().entries() {
            f(&node_path, entry);
        }
        for_each_entry(node.children(), &node_path, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReplicaId;
    use serde_json::json;

    fn form(node: &TwinNode) -> &'static str {
        match node.0 {
            Node::Leaf(_) => "leaf",
            Node::Object(_) => "object",
            Node::Branch(_) => "branch",
        }
    }

    fn put(tree: &mut TwinTree, ctx: &mut CausalContext, ms: i64, target: Value) {
        let hub = ReplicaId::new("a").unwrap();
        let stamp = Stamp::new(ms, 0, hub.clone());
        let mut w = Write::new(&hub, ctx);
        let target = target.as_object().cloned().unwrap_or_default();
        set_exact(
            tree,
            &target,
            &mut w,
            Stamps::Fixed(&stamp),
            &mut Vec::new(),
        );
    }

    #[test]
    fn nodes_take_the_smallest_form_that_holds_them() {
        let (mut tree, mut ctx) = (TwinTree::new(), CausalContext::new());
        let a = Key::new("a");
        put(&mut tree, &mut ctx, 1, json!({"a": {"b": 1}}));
        assert_eq!(form(tree.get(&a).unwrap()), "object");
        // A scalar over the object: a value, and the removed child kept as
        // a tombstone.
        put(&mut tree, &mut ctx, 2, json!({"a": 5}));
        assert_eq!(form(tree.get(&a).unwrap()), "branch");
        put(&mut tree, &mut ctx, 3, json!({"a": {"c": "x"}}));
        let node = tree.get(&a).unwrap();
        assert_eq!(form(node), "branch");
        assert_eq!(form(node.children().get(&Key::new("c")).unwrap()), "leaf");
        let json = serde_json::to_string(&tree).unwrap();
        let back: TwinTree = serde_json::from_str(&json).unwrap();
        assert_eq!(back, tree);
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        // The empty forms all read, compare and serialize alike.
        let forms = [
            TwinNode(Node::Leaf(MvReg::new())),
            TwinNode(Node::Object(Box::default())),
            TwinNode(Node::Branch(Box::new(Branch {
                value: MvReg::new(),
                children: TwinTree::new(),
            }))),
        ];
        for node in &forms {
            assert_eq!(node, &TwinNode::default());
            assert_eq!(serde_json::to_string(node).unwrap(), "{}");
            let mut settled = node.clone();
            settled.settle();
            assert_eq!(form(&settled), "leaf");
        }
    }

    #[test]
    fn a_node_read_back_takes_the_smallest_form_too() {
        let (mut tree, mut ctx) = (TwinTree::new(), CausalContext::new());
        let a = Key::new("a");
        put(&mut tree, &mut ctx, 1, json!({"a": 5}));
        put(&mut tree, &mut ctx, 2, json!({"a": {"b": 1}}));
        // The scalar's tombstone is kept beside the children: a branch.
        assert_eq!(form(tree.get(&a).unwrap()), "branch");
        let json = serde_json::to_string(&tree).unwrap();
        let back: TwinTree = serde_json::from_str(&json).unwrap();
        assert_eq!(form(back.get(&a).unwrap()), "branch");
        // Children alone, as a state file holds an object, read back as an
        // object, not as a branch with an empty register.
        let fresh = {
            let (mut tree, mut ctx) = (TwinTree::new(), CausalContext::new());
            put(&mut tree, &mut ctx, 1, json!({"a": {"b": 1}}));
            tree
        };
        let json = serde_json::to_string(&fresh).unwrap();
        let back: TwinTree = serde_json::from_str(&json).unwrap();
        assert_eq!(form(back.get(&a).unwrap()), "object");
    }

    #[test]
    fn removing_an_object_tombstones_it_and_every_node_beneath() {
        let (mut tree, mut ctx) = (TwinTree::new(), CausalContext::new());
        put(
            &mut tree,
            &mut ctx,
            1,
            json!({"a": {"b": 1, "c": {"d": 2}}, "e": 3}),
        );
        put(&mut tree, &mut ctx, 2, json!({"e": 3}));
        let mut tombstones = Vec::new();
        for_each_entry(&tree, "tags", &mut |path, entry| {
            if entry.value.is_null() {
                tombstones.push(path.to_owned());
            }
        });
        assert_eq!(tombstones, ["tags.a", "tags.a.b", "tags.a.c", "tags.a.c.d"]);
        // Removing what is already removed writes nothing.
        let before = ctx.version_vector().clone();
        put(&mut tree, &mut ctx, 3, json!({"e": 3}));
        assert_eq!(ctx.version_vector(), &before);
    }

    #[test]
    fn a_null_or_absent_key_leaves_no_node() {
        let (mut tree, mut ctx) = (TwinTree::new(), CausalContext::new());
        put(&mut tree, &mut ctx, 1, json!({"a": null}));
        assert!(tree.is_empty());
        assert!(ctx.version_vector().is_empty(), "nothing was written");
        put(&mut tree, &mut ctx, 2, json!({"a": 1, "b": null}));
        assert_eq!(tree.keys().collect::<Vec<_>>(), [&Key::new("a")]);
    }

    #[test]
    fn nodes_are_equal_when_their_values_and_children_are() {
        let tree_of = |target: Value| {
            let (mut tree, mut ctx) = (TwinTree::new(), CausalContext::new());
            put(&mut tree, &mut ctx, 1, target);
            tree
        };
        let a = Key::new("a");
        let node = |target: Value| tree_of(target).get(&a).cloned().unwrap();
        assert_eq!(node(json!({"a": 1})), node(json!({"a": 1})));
        assert_ne!(node(json!({"a": 1})), node(json!({"a": 2})));
        assert_ne!(node(json!({"a": {"b": 1}})), node(json!({"a": {"c": 1}})));
        assert_ne!(node(json!({"a": 1})), node(json!({"a": {"b": 1}})));
    }

    #[test]
    fn sections_are_named_by_their_path_in_a_twin() {
        assert_eq!(Section::Tags.path(), "tags");
        assert_eq!(Section::Desired.path(), "properties.desired");
        assert_eq!(Section::Reported.path(), "properties.reported");
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_leaf_costs_its_slot_alone() {
        // The memory budget of a typical device (`cargo bench --bench
        // memory`) rests on these.
        assert_eq!(std::mem::size_of::<TwinNode>(), 24);
        assert_eq!(std::mem::size_of::<(Key, TwinNode)>(), 32);
        assert_eq!(std::mem::size_of::<MvReg<CompactJson>>(), 24);
    }
}
