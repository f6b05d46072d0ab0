//! Twin PATCH semantics, written once: JSON Merge Patch (RFC 7396), as IoT
//! Hub applies an `updateTwin`.
//!
//! A `null` removes its key; an object merges into an object (so an empty
//! one changes nothing there) and replaces anything else, its `null`s
//! dropped; any other value replaces. Replay of change events applies it
//! with the times the change gives; the CRDT twin (`twin::patch`) reads
//! its section, applies it here and writes only the nodes that differ.
//! The compacted fold (`replica/fold.rs`) keeps the same meaning as an
//! order-free tree; `tests/suite/patch.rs` checks all three against the
//! RFC.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{JsonMap, MetaTree};

/// Patches `map` (with times `meta`) by `patch` (with times `given`).
///
/// A node's time is its own `$lastUpdated` in `given`, else its
/// parent's (`at`). A `null` that removes a key is a write to its parent,
/// whose time rises to the removal's.
pub(crate) fn merge_patch(
    map: &mut JsonMap,
    meta: &mut MetaTree,
    patch: &JsonMap,
    given: &MetaTree,
    at: i64,
) {
    let none = MetaTree::default();
    for (key, value) in patch {
        let child_given = given.children.get(key).unwrap_or(&none);
        let time = child_given.last_updated.unwrap_or(at);
        match value {
            Value::Null => {
                if map.remove(key).is_some() {
                    meta.children.remove(key);
                    meta.last_updated = Some(meta.last_updated.map_or(time, |t| t.max(time)));
                }
            }
            Value::Object(inner) => {
                if let Some(Value::Object(existing)) = map.get_mut(key) {
                    let node = meta.children.entry(key.clone()).or_default();
                    node.last_updated = Some(time);
                    merge_patch(existing, node, inner, child_given, time);
                } else {
                    map.insert(key.clone(), Value::Object(without_nulls(inner)));
                    meta.children
                        .insert(key.clone(), stamped(child_given, time));
                }
            }
            other => {
                map.insert(key.clone(), other.clone());
                meta.children.insert(
                    key.clone(),
                    MetaTree {
                        last_updated: Some(time),
                        children: BTreeMap::new(),
                    },
                );
            }
        }
    }
}

/// A metadata tree whose root has a time (`time` when it had none).
pub(crate) fn stamped(meta: &MetaTree, time: i64) -> MetaTree {
    let mut out = meta.clone();
    out.last_updated.get_or_insert(time);
    out
}

/// `map` without its `null`s, at any depth of objects: what a section
/// written whole (or an object patched onto a non-object) holds.
pub(crate) fn without_nulls(map: &JsonMap) -> JsonMap {
    map.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let v = match v {
                Value::Object(inner) => Value::Object(without_nulls(inner)),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}
