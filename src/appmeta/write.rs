//! Writing JSON into an automerge transaction: only what differs.

use automerge::transaction::Transactable;
use automerge::{AutomergeError, ObjId, ObjType, Prop, ScalarValue, Value as AmValue};
use serde_json::{Map, Value};

use super::AppMetaError;
use super::read::child_path;

/// The automerge scalar for a JSON number: `i64` first, then `u64`, then a
/// finite `f64`.
pub(super) fn scalar_number(n: &serde_json::Number) -> Option<ScalarValue> {
    if let Some(i) = n.as_i64() {
        Some(ScalarValue::Int(i))
    } else if let Some(u) = n.as_u64() {
        Some(ScalarValue::Uint(u))
    } else {
        n.as_f64().filter(|f| f.is_finite()).map(ScalarValue::F64)
    }
}

fn scalar(value: &Value, path: &str) -> Result<ScalarValue, AppMetaError> {
    Ok(match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(*b),
        Value::String(s) => ScalarValue::Str(s.as_str().into()),
        Value::Number(n) => scalar_number(n).ok_or_else(|| AppMetaError::UnsupportedNumber {
            path: path.to_owned(),
        })?,
        // Containers are written by `write` through `hydrate`.
        Value::Array(_) | Value::Object(_) => ScalarValue::Null,
    })
}

fn rejected(path: &str) -> impl FnOnce(AutomergeError) -> AppMetaError + '_ {
    move |error| AppMetaError::WriteRejected {
        path: path.to_owned(),
        source: Box::new(error),
    }
}

/// `value` as automerge's tree of new values, for writing a whole subtree
/// in one batch. Depth is bounded by [`check_input`].
fn hydrate(value: &Value, path: &str) -> Result<automerge::hydrate::Value, AppMetaError> {
    use automerge::hydrate;
    Ok(match value {
        Value::Object(map) => {
            let mut entries = std::collections::HashMap::with_capacity(map.len());
            for (key, child) in map {
                entries.insert(key.clone(), hydrate(child, &child_path(path, key))?);
            }
            // Automerge writes the keys of a batch in sorted order, so the
            // map's own order does not reach the change.
            hydrate::Value::Map(hydrate::Map::from(entries))
        }
        Value::Array(items) => {
            let mut list = Vec::with_capacity(items.len());
            for (index, child) in items.iter().enumerate() {
                list.push(hydrate(child, &child_path(path, &index.to_string()))?);
            }
            hydrate::Value::List(hydrate::List::from(list))
        }
        scalar_value => hydrate::Value::Scalar(scalar(scalar_value, path)?),
    })
}

/// Writes `value` whole at a map key or over a list element, or inserts it
/// as a new list element at `Prop::Seq(index)` when `insert` is set.
fn write<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    prop: Prop,
    value: &Value,
    insert: bool,
    path: &str,
) -> Result<(), AppMetaError> {
    let result = match (value, &prop) {
        (Value::Object(_) | Value::Array(_), _) => tx
            .batch_create_object(obj, prop, &hydrate(value, path)?, insert)
            .map(drop),
        (_, Prop::Seq(index)) if insert => tx.insert(obj, *index, scalar(value, path)?),
        _ => tx.put(obj, prop, scalar(value, path)?),
    };
    result.map_err(rejected(path))
}

/// What is visible at `prop`: an object (map or list), a text object, a
/// counter, or anything else.
enum Slot {
    Object(ObjId),
    Text(ObjId),
    Counter,
    Other,
}

fn slot<T: Transactable>(tx: &T, obj: &ObjId, prop: Prop) -> Slot {
    match tx.get(obj, prop) {
        Ok(Some((AmValue::Object(ObjType::Text), id))) => Slot::Text(id),
        Ok(Some((AmValue::Object(_), id))) => Slot::Object(id),
        Ok(Some((AmValue::Scalar(s), _))) if matches!(s.as_ref(), ScalarValue::Counter(_)) => {
            Slot::Counter
        }
        _ => Slot::Other,
    }
}

/// Writes `new` over `old` at `prop`: edits in place when both are objects
/// or both arrays, otherwise replaces. A string written over a text object
/// edits the text (the characters that differ), and an integer written
/// over a counter increments it by the difference, so that concurrent
/// edits of either merge as automerge merges them instead of one
/// overwriting the other.
fn update_at<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    prop: Prop,
    old: &Value,
    new: &Value,
    path: &str,
) -> Result<(), AppMetaError> {
    if old == new {
        return Ok(());
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            if let Slot::Object(child) = slot(tx, obj, prop.clone()) {
                return update_map(tx, &child, o, n, path);
            }
        }
        (Value::Array(o), Value::Array(n)) => {
            if let Slot::Object(child) = slot(tx, obj, prop.clone()) {
                return update_list(tx, &child, o, n, path);
            }
        }
        (Value::String(_), Value::String(n)) => {
            if let Slot::Text(text) = slot(tx, obj, prop.clone()) {
                return tx.update_text(&text, n).map_err(rejected(path));
            }
        }
        (Value::Number(o), Value::Number(n)) => {
            let by = o
                .as_i64()
                .zip(n.as_i64())
                .and_then(|(o, n)| n.checked_sub(o));
            if let (Some(by), Slot::Counter) = (by, slot(tx, obj, prop.clone())) {
                return tx.increment(obj, prop, by).map_err(rejected(path));
            }
        }
        _ => {}
    }
    write(tx, obj, prop, new, false, path)
}

pub(super) fn update_map<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    path: &str,
) -> Result<(), AppMetaError> {
    for key in old.keys().filter(|key| !new.contains_key(*key)) {
        let child = child_path(path, key);
        tx.delete(obj, key.as_str()).map_err(rejected(&child))?;
    }
    for (key, value) in new {
        let child = child_path(path, key);
        match old.get(key) {
            Some(previous) => update_at(tx, obj, Prop::Map(key.clone()), previous, value, &child)?,
            None => write(tx, obj, Prop::Map(key.clone()), value, false, &child)?,
        }
    }
    Ok(())
}

fn update_list<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    old: &[Value],
    new: &[Value],
    path: &str,
) -> Result<(), AppMetaError> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let old = &old[prefix..old.len() - suffix];
    let new = &new[prefix..new.len() - suffix];
    let script = shortest_edit(old, new, MAX_LIST_EDITS).unwrap_or_else(|| {
        // Too different to diff cheaply: replace the middle pairwise.
        let deletes = (0..old.len()).map(Edit::Delete);
        deletes.chain((0..new.len()).map(Edit::Insert)).collect()
    });
    let mut gap = Gap {
        pos: prefix,
        deletes: Vec::new(),
        inserts: Vec::new(),
    };
    for edit in script {
        match edit {
            Edit::Delete(i) => gap.deletes.push(i),
            Edit::Insert(j) => gap.inserts.push(j),
            Edit::Keep => {
                gap.flush(tx, obj, old, new, path)?;
                gap.pos += 1;
            }
        }
    }
    gap.flush(tx, obj, old, new, path)
}

/// The longest list edit script [`shortest_edit`] looks for before
/// falling back to replacing elements pairwise.
const MAX_LIST_EDITS: usize = 1024;

/// One step of an edit script turning `old` into `new`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Edit {
    /// The next elements of both are equal.
    Keep,
    /// `old[i]` goes.
    Delete(usize),
    /// `new[j]` comes.
    Insert(usize),
}

/// The deletions and insertions between two kept elements of a list, and
/// the index in the automerge list where they apply.
struct Gap {
    pos: usize,
    deletes: Vec<usize>,
    inserts: Vec<usize>,
}

impl Gap {
    /// Applies the gap: deleted and inserted elements pair up and are
    /// edited in place, the surplus is deleted or inserted. Leaves `pos`
    /// after the gap.
    fn flush<T: Transactable>(
        &mut self,
        tx: &mut T,
        obj: &ObjId,
        old: &[Value],
        new: &[Value],
        path: &str,
    ) -> Result<(), AppMetaError> {
        let paired = self.deletes.len().min(self.inserts.len());
        for (&i, &j) in self.deletes.iter().zip(&self.inserts) {
            let child = child_path(path, &self.pos.to_string());
            update_at(tx, obj, Prop::Seq(self.pos), &old[i], &new[j], &child)?;
            self.pos += 1;
        }
        for _ in paired..self.deletes.len() {
            let child = child_path(path, &self.pos.to_string());
            tx.delete(obj, self.pos).map_err(rejected(&child))?;
        }
        for &j in &self.inserts[paired..] {
            let child = child_path(path, &self.pos.to_string());
            write(tx, obj, Prop::Seq(self.pos), &new[j], true, &child)?;
            self.pos += 1;
        }
        self.deletes.clear();
        self.inserts.clear();
        Ok(())
    }
}

/// A shortest edit script from `old` to `new` (Myers' O(ND) diff), or
/// `None` when it needs more than `max_edits` deletions and insertions.
fn shortest_edit(old: &[Value], new: &[Value], max_edits: usize) -> Option<Vec<Edit>> {
    let (n, m) = (old.len() as isize, new.len() as isize);
    let max = old.len() + new.len();
    let offset = max as isize + 1;
    // v[offset + k]: the furthest x reached on diagonal k = x - y.
    let mut v = vec![0isize; 2 * max + 3];
    // trace[d]: v on diagonals -d-1..=d+1 before step d.
    let mut trace: Vec<Vec<isize>> = Vec::new();
    for d in 0..=max.min(max_edits) as isize {
        trace.push(v[(offset - d - 1) as usize..=(offset + d + 1) as usize].to_vec());
        for k in (-d..=d).step_by(2) {
            let i = (offset + k) as usize;
            let mut x = if k == -d || (k != d && v[i - 1] < v[i + 1]) {
                v[i + 1]
            } else {
                v[i - 1] + 1
            };
            let mut y = x - k;
            while x < n && y < m && old[x as usize] == new[y as usize] {
                x += 1;
                y += 1;
            }
            v[i] = x;
            if x >= n && y >= m {
                return Some(backtrack(&trace, n, m));
            }
        }
    }
    None
}

fn backtrack(trace: &[Vec<isize>], n: isize, m: isize) -> Vec<Edit> {
    let mut edits = Vec::new();
    let (mut x, mut y) = (n, m);
    for (d, v) in trace.iter().enumerate().rev() {
        let d = d as isize;
        let at = |k: isize| v[(k + d + 1) as usize];
        let k = x - y;
        let prev_k = if k == -d || (k != d && at(k - 1) < at(k + 1)) {
            k + 1
        } else {
            k - 1
        };
        let prev_x = at(prev_k);
        let prev_y = prev_x - prev_k;
        while x > prev_x && y > prev_y {
            edits.push(Edit::Keep);
            x -= 1;
            y -= 1;
        }
        if d > 0 {
            edits.push(if x == prev_x {
                Edit::Insert((y - 1) as usize)
            } else {
                Edit::Delete((x - 1) as usize)
            });
        }
        (x, y) = (prev_x, prev_y);
    }
    edits.reverse();
    edits
}
