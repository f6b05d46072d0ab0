//! Reading an automerge document as JSON: values, checks, conflicts.

use automerge::{
    Automerge, AutomergeError, ObjId, ObjType, Prop, ReadDoc, ScalarValue, Value as AmValue,
};
use serde_json::{Map, Value};

use super::write::scalar_number;
use super::{AppConflict, AppDocument, AppMetaError, AppWrite, replica_of};

pub(super) fn read_map<R: ReadDoc>(doc: &R, obj: &ObjId) -> Map<String, Value> {
    doc.map_range(obj, ..)
        .map(|item| {
            let id = item.id();
            (
                item.key.into_owned(),
                read_value(doc, &item.value.into_value(), &id),
            )
        })
        .collect()
}

fn read_object<R: ReadDoc>(doc: &R, obj: &ObjId, kind: ObjType) -> Value {
    match kind {
        ObjType::Map | ObjType::Table => Value::Object(read_map(doc, obj)),
        ObjType::List => Value::Array(
            doc.list_range(obj, ..)
                .map(|item| {
                    let id = item.id();
                    read_value(doc, &item.value.into_value(), &id)
                })
                .collect(),
        ),
        // Text reads as the string it holds: automerge merges concurrent
        // edits of it character by character.
        ObjType::Text => Value::String(doc.text(obj).unwrap_or_default()),
    }
}

pub(super) fn read_value<R: ReadDoc>(doc: &R, value: &AmValue<'_>, id: &ObjId) -> Value {
    match value {
        AmValue::Object(kind) => read_object(doc, id, *kind),
        AmValue::Scalar(scalar) => match scalar.as_ref() {
            ScalarValue::Str(s) => Value::String(s.to_string()),
            ScalarValue::Int(i) => Value::from(*i),
            ScalarValue::Uint(u) => Value::from(*u),
            ScalarValue::F64(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            ScalarValue::Boolean(b) => Value::Bool(*b),
            // A counter reads as its value: the sum of every increment.
            ScalarValue::Counter(c) => Value::from(i64::from(c)),
            // Null, and the kinds the invariants rule out.
            _ => Value::Null,
        },
    }
}

// ---- checking --------------------------------------------------------------

pub(super) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// JSON Pointer of `key` under `parent`.
pub(super) fn child_path(parent: &str, key: &str) -> String {
    format!("{parent}/{}", key.replace('~', "~0").replace('/', "~1"))
}

/// Checks a value before writing it: an object root, bounded depth,
/// numbers automerge can hold. Iterative, so any depth is safe to check.
pub(super) fn check_input(value: &Value) -> Result<(), AppMetaError> {
    if !value.is_object() {
        return Err(AppMetaError::RootNotObject {
            found: kind_of(value),
        });
    }
    let too_deep = |path: String| AppMetaError::TooDeep {
        path,
        limit: AppDocument::MAX_DEPTH,
    };
    let mut stack = vec![(value, String::new(), 1)];
    while let Some((value, path, depth)) = stack.pop() {
        match value {
            Value::Object(map) => {
                if depth > AppDocument::MAX_DEPTH {
                    return Err(too_deep(path));
                }
                for (key, child) in map {
                    stack.push((child, child_path(&path, key), depth + 1));
                }
            }
            Value::Array(items) => {
                if depth > AppDocument::MAX_DEPTH {
                    return Err(too_deep(path));
                }
                for (index, child) in items.iter().enumerate() {
                    stack.push((child, child_path(&path, &index.to_string()), depth + 1));
                }
            }
            Value::Number(n) if scalar_number(n).is_none() => {
                return Err(AppMetaError::UnsupportedNumber { path });
            }
            _ => {}
        }
    }
    Ok(())
}

/// One key or list element of an object: its winning value, and whether
/// concurrent values sit beside it.
struct Entry {
    prop: Prop,
    value: AmValue<'static>,
    id: ObjId,
    conflict: bool,
}

/// The entries of a map or list, in order; none for text and tables.
fn entries(doc: &Automerge, obj: &ObjId, kind: ObjType) -> Vec<Entry> {
    match kind {
        ObjType::Map => doc
            .map_range(obj, ..)
            .map(|item| Entry {
                id: item.id(),
                prop: Prop::Map(item.key.into_owned()),
                value: item.value.into_value(),
                conflict: item.conflict,
            })
            .collect(),
        ObjType::List => doc
            .list_range(obj, ..)
            .map(|item| Entry {
                id: item.id(),
                prop: Prop::Seq(item.index),
                value: item.value.into_value(),
                conflict: item.conflict,
            })
            .collect(),
        ObjType::Text | ObjType::Table => Vec::new(),
    }
}

/// Every value visible at `entry`: the winner, and the losers when in
/// conflict.
fn all_values(
    doc: &Automerge,
    obj: &ObjId,
    entry: Entry,
) -> Result<Vec<(AmValue<'static>, ObjId)>, AutomergeError> {
    if !entry.conflict {
        return Ok(vec![(entry.value, entry.id)]);
    }
    Ok(doc
        .get_all(obj, entry.prop)?
        .into_iter()
        .map(|(value, id)| (value.to_owned(), id))
        .collect())
}

/// Checks every visible value under `obj`, conflict losers included.
pub(super) fn check_object(
    doc: &Automerge,
    obj: &ObjId,
    kind: ObjType,
    path: &str,
    depth: usize,
) -> Result<(), AppMetaError> {
    if depth > AppDocument::MAX_DEPTH {
        return Err(AppMetaError::TooDeep {
            path: path.to_owned(),
            limit: AppDocument::MAX_DEPTH,
        });
    }
    match kind {
        ObjType::Map | ObjType::List => {}
        // Its characters have no conflicts to check: it reads as a string.
        ObjType::Text => return Ok(()),
        ObjType::Table => return Err(not_json(path, "table object")),
    }
    for entry in entries(doc, obj, kind) {
        let child = prop_path(path, &entry.prop);
        let values = all_values(doc, obj, entry).map_err(|error| AppMetaError::InvalidBytes {
            source: Box::new(error),
        })?;
        for (value, id) in values {
            let scalar = match value {
                AmValue::Object(kind) => {
                    check_object(doc, &id, kind, &child, depth + 1)?;
                    continue;
                }
                AmValue::Scalar(scalar) => scalar,
            };
            let kind = match scalar.as_ref() {
                ScalarValue::Null
                | ScalarValue::Boolean(_)
                | ScalarValue::Str(_)
                | ScalarValue::Int(_)
                | ScalarValue::Uint(_)
                | ScalarValue::Counter(_) => continue,
                ScalarValue::F64(f) if f.is_finite() => continue,
                ScalarValue::F64(_) => "non-finite number",
                ScalarValue::Bytes(_) => "byte string",
                ScalarValue::Timestamp(_) => "timestamp",
                ScalarValue::Unknown { .. } => "value of unknown type",
            };
            return Err(not_json(&child, kind));
        }
    }
    Ok(())
}

fn not_json(path: &str, kind: &'static str) -> AppMetaError {
    AppMetaError::NotJson {
        path: path.to_owned(),
        kind,
    }
}

fn prop_path(parent: &str, prop: &Prop) -> String {
    match prop {
        Prop::Map(key) => child_path(parent, key),
        Prop::Seq(index) => child_path(parent, &index.to_string()),
    }
}

// ---- conflicts -------------------------------------------------------------

pub(super) fn collect_conflicts(
    doc: &Automerge,
    obj: &ObjId,
    kind: ObjType,
    path: &str,
    out: &mut Vec<AppConflict>,
) {
    let write = |value: &AmValue<'_>, id: &ObjId| AppWrite {
        replica: match id {
            ObjId::Id(_, actor, _) => replica_of(actor),
            ObjId::Root => None,
        },
        value: read_value(doc, value, id),
    };
    for entry in entries(doc, obj, kind) {
        let child = prop_path(path, &entry.prop);
        let inner = match entry.value {
            AmValue::Object(kind) => Some((entry.id.clone(), kind)),
            AmValue::Scalar(_) => None,
        };
        if entry.conflict {
            let winner = write(&entry.value, &entry.id);
            let winner_id = entry.id.clone();
            let losers = all_values(doc, obj, entry)
                .unwrap_or_default()
                .iter()
                .filter(|(_, id)| *id != winner_id)
                .map(|(value, id)| write(value, id))
                .collect();
            out.push(AppConflict {
                path: child.clone(),
                winner,
                losers,
            });
        }
        if let Some((id, kind)) = inner {
            collect_conflicts(doc, &id, kind, &child, out);
        }
    }
}
