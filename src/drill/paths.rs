//! Twin sections as leaves at paths: what the drill's writes set and what
//! its checks compare.

use serde_json::Value;

use crate::doc::JsonMap;

/// Every leaf of `map` as (path, value): scalars, arrays and empty objects
/// are leaves; a non-empty object is expressed by its children.
pub(crate) fn leaves(map: &JsonMap) -> Vec<(Vec<String>, Value)> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    walk(map, &mut path, &mut out);
    out
}

fn walk(map: &JsonMap, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    for (key, value) in map {
        path.push(key.clone());
        match value {
            Value::Object(child) if !child.is_empty() => walk(child, path, out),
            leaf => out.push((path.clone(), leaf.clone())),
        }
        path.pop();
    }
}

/// [`leaves`], borrowed: the same leaves in the same order, each path's
/// keys and value where the map holds them.
pub(crate) fn leaf_refs(map: &JsonMap) -> Vec<(Vec<&str>, &Value)> {
    fn walk_refs<'a>(
        map: &'a JsonMap,
        path: &mut Vec<&'a str>,
        out: &mut Vec<(Vec<&'a str>, &'a Value)>,
    ) {
        for (key, value) in map {
            path.push(key);
            match value {
                Value::Object(child) if !child.is_empty() => walk_refs(child, path, out),
                leaf => out.push((path.clone(), leaf)),
            }
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk_refs(map, &mut Vec::new(), &mut out);
    out
}

/// A borrowed path as an owned one.
pub(crate) fn owned(path: &[&str]) -> Vec<String> {
    path.iter().map(|k| (*k).to_owned()).collect()
}

/// The value at `path`, if any.
pub(crate) fn get<'a, S: AsRef<str>>(map: &'a JsonMap, path: &[S]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut node = map;
    for key in parents {
        node = node.get(key.as_ref())?.as_object()?;
    }
    node.get(last.as_ref())
}

/// Sets `path` to `value` as a twin PATCH does: missing or scalar parents
/// become objects.
pub(crate) fn set(map: &mut JsonMap, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = map;
    for key in parents {
        let slot = node
            .entry(key.clone())
            .or_insert_with(|| Value::Object(JsonMap::new()));
        if !slot.is_object() {
            *slot = Value::Object(JsonMap::new());
        }
        let Value::Object(child) = slot else {
            return;
        };
        node = child;
    }
    node.insert(last.clone(), value);
}

/// Removes `path` (a PATCH with `null`); `true` when it was there.
pub(crate) fn remove(map: &mut JsonMap, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = map;
    for key in parents {
        match node.get_mut(key) {
            Some(Value::Object(child)) => node = child,
            _ => return false,
        }
    }
    node.remove(last).is_some()
}

/// Every object node of `map` below the root, as paths, with its number of
/// children.
pub(crate) fn objects(map: &JsonMap) -> Vec<(Vec<String>, usize)> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    walk_objects(map, &mut path, &mut out);
    out
}

fn walk_objects(map: &JsonMap, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, usize)>) {
    for (key, value) in map {
        if let Value::Object(child) = value {
            path.push(key.clone());
            out.push((path.clone(), child.len()));
            walk_objects(child, path, out);
            path.pop();
        }
    }
}

/// Whether `a` is `b` or lies under it, segment by segment.
pub(crate) fn is_prefix(a: &[String], b: &[String]) -> bool {
    a.len() <= b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> JsonMap {
        v.as_object().cloned().unwrap_or_default()
    }

    fn p(s: &str) -> Vec<String> {
        s.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn leaves_get_set_remove() {
        let mut m = map(json!({"a": {"b": 1, "c": [1, 2]}, "d": {}, "e": "x"}));
        let paths: Vec<String> = leaves(&m).iter().map(|(p, _)| p.join(".")).collect();
        assert_eq!(paths, ["a.b", "a.c", "d", "e"]);
        assert_eq!(get(&m, &p("a.b")), Some(&json!(1)));
        set(&mut m, &p("e.f"), json!(2));
        assert_eq!(m["e"], json!({"f": 2}));
        assert!(remove(&mut m, &p("a.b")));
        assert!(!remove(&mut m, &p("a.zz")));
        assert_eq!(objects(&m).len(), 3);
        assert!(is_prefix(&p("a"), &p("a.b")) && !is_prefix(&p("a.b"), &p("a")));
        assert!(!is_prefix(&p("a.b"), &p("a.bc")));
    }
}
