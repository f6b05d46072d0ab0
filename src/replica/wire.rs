//! A fold as a state file writes it, and the checks that read it back.
//!
//! ```text
//! {"module":null,"base":"id:c1","versions":[[2,9]],
//!  "first":[time,rank],"last":[time,rank],
//!  "stamps":[[version,time,rank,"dot"],...],
//!  "identity":{"status":[s,{"status":"enabled"},time],"etag":[s,"AAAA"],"version":9,...},
//!  "tags":SECTION,"desired":SECTION,"reported":SECTION}
//! ```
//!
//! Every write names its stamp by index `s` into `stamps` (sorted, each
//! once). A SECTION is `{"whole":[s,META],"nulls":[[s,time],...],
//! "children":{KEY:NODE}}`; a NODE is `{"kill":s,"leaf":VALUE,"meta":META}`
//! (a scalar), `{"kill":s}` (removed) or `{"at":s,"meta":META,"kill":s,
//! "children":{...}}` (an object; `kill` when a scalar or `null` was
//! written before it). META is a time in ms, `"unset"` (an entry without
//! `$lastUpdated`), or `null` (no entry); a node's `meta` is left out
//! where it is the time of the node's own stamp (`kill` for a value, `at`
//! for an object), as a change's `$metadata` nearly always gives it.
//!
//! That is version 3 of the state file. Version 2 wrote each position
//! with the dot of its change (`[time,rank,"dot"]`, read and the dot
//! dropped: see `Folded`), and a node's `meta` always, left out when
//! absent; both are still read.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::Folded;
use super::fold::{At, Children, Identity, Meta, Node, NodeState, Section, Stamp, Twin};
use super::versions::Versions;
use crate::doc::StatusValue;

/// The stamps a fold's writes use, sorted, each once.
fn collect_stamps(twin: &Twin) -> Vec<At> {
    let mut out: Vec<At> = Vec::new();
    let id = &twin.identity;
    out.extend(id.status.iter().map(|(a, _)| a.clone()));
    out.extend(id.capabilities.iter().map(|(a, _)| a.clone()));
    out.extend(id.device_scope.iter().map(|(a, _)| a.clone()));
    out.extend(id.parent_scopes.iter().map(|(a, _)| a.clone()));
    out.extend(id.extra.values().map(|(a, _)| a.clone()));
    out.extend(id.etag.iter().map(|(a, _)| a.clone()));
    for section in [&twin.tags, &twin.desired, &twin.reported] {
        out.extend(section.whole.iter().map(|(a, _)| a.clone()));
        out.extend(section.nulls.iter().map(|(a, _)| a.clone()));
        node_stamps(&section.children, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

fn node_stamps(children: &Children, out: &mut Vec<At>) {
    for (_, node) in children {
        out.extend(node.kill.iter().cloned());
        if let NodeState::Object { at, children, .. } = &node.state {
            out.push(at.clone());
            node_stamps(children, out);
        }
    }
}

/// A node's `meta` in version 3: `None` (left out) when it is `stamp`'s
/// time.
fn node_meta(meta: Meta, stamp: &At) -> Option<Value> {
    match meta {
        Meta::At(t) if t == stamp.time => None,
        other => Some(meta_json(other)),
    }
}

/// A fold as JSON.
pub(super) fn write(key: &super::FoldKey, fold: &Folded) -> Value {
    let stamps = collect_stamps(&fold.twin);
    let index = |at: &At| stamps.binary_search(at).unwrap_or_default();
    let id = &fold.twin.identity;
    let mut identity = Map::new();
    if let Some((at, (status, time))) = &id.status {
        identity.insert("status".into(), json!([index(at), status, time]));
    }
    let mut reg = |name: &str, r: Option<(&At, Value)>| {
        if let Some((at, v)) = r {
            identity.insert(name.into(), json!([index(at), v]));
        }
    };
    reg(
        "capabilities",
        id.capabilities.as_ref().map(|(a, v)| (a, v.clone())),
    );
    reg(
        "deviceScope",
        id.device_scope
            .as_ref()
            .map(|(a, v)| (a, Value::String(v.clone()))),
    );
    reg(
        "parentScopes",
        id.parent_scopes.as_ref().map(|(a, v)| (a, v.clone())),
    );
    reg(
        "etag",
        id.etag.as_ref().map(|(a, v)| (a, Value::String(v.clone()))),
    );
    if !id.extra.is_empty() {
        let extra: Map<String, Value> = id
            .extra
            .iter()
            .map(|(k, (a, v))| (k.clone(), json!([index(a), v])))
            .collect();
        identity.insert("extra".into(), Value::Object(extra));
    }
    identity.insert("version".into(), json!(id.version));
    let section = |s: &Section| {
        let mut out = Map::new();
        if let Some((at, meta)) = &s.whole {
            out.insert("whole".into(), json!([index(at), meta_json(*meta)]));
        }
        if !s.nulls.is_empty() {
            let nulls: Vec<Value> = s.nulls.iter().map(|(a, t)| json!([index(a), t])).collect();
            out.insert("nulls".into(), Value::Array(nulls));
        }
        out.insert("children".into(), children_json(&s.children, &index));
        Value::Object(out)
    };
    let ranges: Vec<Value> = fold
        .versions
        .ranges()
        .iter()
        .map(|(lo, hi)| json!([lo, hi]))
        .collect();
    json!({
        "module": key.0,
        "base": key.1,
        "versions": ranges,
        "first": [fold.first.0, fold.first.1],
        "last": [fold.last.0, fold.last.1],
        "stamps": stamps.iter().map(|s| json!([s.version, s.time, s.rank, s.dot])).collect::<Vec<_>>(),
        "identity": identity,
        "tags": section(&fold.twin.tags),
        "desired": section(&fold.twin.desired),
        "reported": section(&fold.twin.reported),
    })
}

fn meta_json(meta: Meta) -> Value {
    match meta {
        Meta::Absent => Value::Null,
        Meta::Unset => Value::String("unset".into()),
        Meta::At(t) => json!(t),
    }
}

fn children_json(children: &Children, index: &dyn Fn(&At) -> usize) -> Value {
    let mut out = Map::new();
    for (key, node) in children {
        let mut n = Map::new();
        if let Some(kill) = &node.kill {
            n.insert("kill".into(), json!(index(kill)));
        }
        match &node.state {
            NodeState::Leaf(value, meta) => {
                n.insert("leaf".into(), value.clone());
                // A value always has its kill.
                if let Some(m) = node.kill.as_ref().and_then(|k| node_meta(*meta, k)) {
                    n.insert("meta".into(), m);
                }
            }
            NodeState::Gone => {}
            NodeState::Object { at, meta, children } => {
                n.insert("at".into(), json!(index(at)));
                if let Some(m) = node_meta(*meta, at) {
                    n.insert("meta".into(), m);
                }
                n.insert("children".into(), children_json(children, index));
            }
        }
        out.insert(key.clone(), Value::Object(n));
    }
    Value::Object(out)
}

/// Reads a fold written by [`write`] in state file `version` (2 or 3),
/// checking every invariant it carries; the error names the field that
/// is wrong.
pub(super) fn read(value: &Value, version: u64) -> Result<(super::FoldKey, Folded), String> {
    let v2 = version == 2;
    let obj = value.as_object().ok_or("a fold is not an object")?;
    let opt_str = |name: &str| match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{name} is not a string")),
    };
    let key = (opt_str("module")?, opt_str("base")?);
    let ranges = obj
        .get("versions")
        .and_then(Value::as_array)
        .ok_or("versions is not an array")?
        .iter()
        .map(|r| match r.as_array().map(Vec::as_slice) {
            Some([lo, hi]) => lo.as_u64().zip(hi.as_u64()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .ok_or("versions holds a range that is not [low, high]")?;
    if ranges.is_empty() {
        return Err("versions is empty".into());
    }
    let versions = Versions::from_ranges(ranges)
        .ok_or("versions are not sorted, apart ranges of low <= high")?;
    let pos = |name: &str| {
        let bad = || {
            if v2 {
                format!("{name} is not [time, rank, dot]")
            } else {
                format!("{name} is not [time, rank]")
            }
        };
        let (t, r) = match obj.get(name).and_then(Value::as_array).map(Vec::as_slice) {
            Some([t, r, d]) if v2 && d.is_string() => (t, r),
            Some([t, r]) if !v2 => (t, r),
            _ => return Err(bad()),
        };
        match (t.as_i64(), r.as_u64().and_then(|r| u8::try_from(r).ok())) {
            // A twin change's rank: replaceTwin or updateTwin.
            (Some(t), Some(r @ 2..=3)) => Ok((t, r)),
            _ => Err(bad()),
        }
    };
    let (first, last) = (pos("first")?, pos("last")?);
    if first > last {
        return Err("first is after last".into());
    }
    let mut stamps: Vec<At> = Vec::new();
    for s in obj
        .get("stamps")
        .and_then(Value::as_array)
        .ok_or("stamps is not an array")?
    {
        let stamp = match s.as_array().map(Vec::as_slice) {
            Some([v, t, r, d]) => match (
                v.as_u64(),
                t.as_i64(),
                r.as_u64().and_then(|r| u8::try_from(r).ok()),
                d.as_str(),
            ) {
                (Some(version), Some(time), Some(rank), Some(dot)) => Stamp {
                    version,
                    time,
                    rank,
                    dot: Box::from(dot),
                },
                _ => return Err("stamps holds one that is not [version, time, rank, dot]".into()),
            },
            _ => return Err("stamps holds one that is not [version, time, rank, dot]".into()),
        };
        if !versions.contains(stamp.version) {
            return Err(format!(
                "stamps holds version {}, not among the versions folded",
                stamp.version
            ));
        }
        if stamps.last().is_some_and(|l| **l >= stamp) {
            return Err("stamps are not sorted, each once".into());
        }
        stamps.push(Arc::new(stamp));
    }
    let stamp = |v: &Value, what: &str| {
        v.as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| stamps.get(i))
            .cloned()
            .ok_or_else(|| format!("{what}: not the index of a stamp"))
    };
    let identity = read_identity(obj.get("identity").ok_or("identity is missing")?, &stamp)?;
    let mut twin = Twin {
        identity,
        ..Twin::default()
    };
    for (name, section) in [
        ("tags", &mut twin.tags),
        ("desired", &mut twin.desired),
        ("reported", &mut twin.reported),
    ] {
        *section = read_section(obj.get(name), name, &stamp, v2)?;
    }
    Ok((
        key,
        Folded {
            versions,
            first,
            last,
            twin,
        },
    ))
}

type StampOf<'a> = dyn Fn(&Value, &str) -> Result<At, String> + 'a;

fn pair<'v>(v: &'v Value, what: &str) -> Result<(&'v Value, &'v Value), String> {
    match v.as_array().map(Vec::as_slice) {
        Some([a, b]) => Ok((a, b)),
        _ => Err(format!("{what} is not [stamp, value]")),
    }
}

fn read_identity(v: &Value, stamp: &StampOf<'_>) -> Result<Identity, String> {
    let obj = v.as_object().ok_or("identity is not an object")?;
    let mut id = Identity {
        version: obj
            .get("version")
            .and_then(Value::as_u64)
            .ok_or("identity.version is not a number")?,
        ..Identity::default()
    };
    if let Some(s) = obj.get("status") {
        let bad = || "identity.status is not [stamp, status, time]".to_owned();
        let [at, status, time] = s.as_array().map(Vec::as_slice).ok_or_else(bad)? else {
            return Err(bad());
        };
        let status: Option<StatusValue> =
            serde_json::from_value(status.clone()).map_err(|_| bad())?;
        let time = match time {
            Value::Null => None,
            t => Some(t.as_i64().ok_or_else(bad)?),
        };
        id.status = Some((stamp(at, "identity.status")?, (status, time)));
    }
    for (name, slot) in [
        ("capabilities", &mut id.capabilities),
        ("parentScopes", &mut id.parent_scopes),
    ] {
        if let Some(v) = obj.get(name) {
            let (at, value) = pair(v, &format!("identity.{name}"))?;
            *slot = Some((stamp(at, name)?, value.clone()));
        }
    }
    for (name, slot) in [
        ("deviceScope", &mut id.device_scope),
        ("etag", &mut id.etag),
    ] {
        if let Some(v) = obj.get(name) {
            let (at, value) = pair(v, &format!("identity.{name}"))?;
            let value = value
                .as_str()
                .ok_or_else(|| format!("identity.{name} is not a string"))?;
            *slot = Some((stamp(at, name)?, value.to_owned()));
        }
    }
    if let Some(extra) = obj.get("extra") {
        let extra = extra.as_object().ok_or("identity.extra is not an object")?;
        let mut out = BTreeMap::new();
        for (k, v) in extra {
            let (at, value) = pair(v, "identity.extra")?;
            out.insert(k.clone(), (stamp(at, "identity.extra")?, value.clone()));
        }
        id.extra = out;
    }
    Ok(id)
}

fn read_meta(v: Option<&Value>, what: &str) -> Result<Meta, String> {
    match v {
        None | Some(Value::Null) => Ok(Meta::Absent),
        Some(Value::String(s)) if s == "unset" => Ok(Meta::Unset),
        Some(v) => v
            .as_i64()
            .map(Meta::At)
            .ok_or_else(|| format!("{what}: meta is not a time or \"unset\"")),
    }
}

fn read_section(
    v: Option<&Value>,
    name: &str,
    stamp: &StampOf<'_>,
    v2: bool,
) -> Result<Section, String> {
    let obj = v
        .and_then(Value::as_object)
        .ok_or_else(|| format!("{name} is not an object"))?;
    let mut section = Section::default();
    if let Some(w) = obj.get("whole") {
        let (at, meta) = pair(w, &format!("{name}.whole"))?;
        section.whole = Some((stamp(at, name)?, read_meta(Some(meta), name)?));
    }
    if let Some(nulls) = obj.get("nulls") {
        let nulls = nulls
            .as_array()
            .ok_or_else(|| format!("{name}.nulls is not an array"))?;
        for n in nulls {
            let (at, t) = pair(n, &format!("{name}.nulls"))?;
            let t = t
                .as_i64()
                .ok_or_else(|| format!("{name}.nulls holds a time that is not a number"))?;
            let at = stamp(at, name)?;
            let in_order = section
                .nulls
                .last()
                .is_none_or(|(a, lt)| *a < at && *lt > t);
            let after_whole = section.whole.as_ref().is_none_or(|(w, _)| *w < at);
            if !in_order || !after_whole {
                return Err(format!(
                    "{name}.nulls are not after the whole write, by stamp with falling times"
                ));
            }
            section.nulls.push((at, t));
        }
    }
    let floor = section.whole.as_ref().map(|(a, _)| a.clone());
    section.children = read_children(obj.get("children"), name, stamp, floor.as_ref(), None, v2)?;
    Ok(section)
}

/// Children of a node whose writes must be newer than `floor` and no
/// newer than `ceiling` (their parent's object write).
fn read_children(
    v: Option<&Value>,
    path: &str,
    stamp: &StampOf<'_>,
    floor: Option<&At>,
    ceiling: Option<&At>,
    v2: bool,
) -> Result<Children, String> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let obj = v
        .as_object()
        .ok_or_else(|| format!("{path}.children is not an object"))?;
    let mut out = Vec::with_capacity(obj.len());
    for (key, node) in obj {
        let here = format!("{path}.{key}");
        let n = node
            .as_object()
            .ok_or_else(|| format!("{here} is not an object"))?;
        let kill = n.get("kill").map(|k| stamp(k, &here)).transpose()?;
        // Version 3 leaves out a meta that is the node's own stamp's time.
        let meta_at = |own: &At| match n.get("meta") {
            None if !v2 => Ok(Meta::At(own.time)),
            m => read_meta(m, &here),
        };
        let state = match (n.get("leaf"), n.get("at"), &kill) {
            (Some(value), None, Some(k)) => NodeState::Leaf(value.clone(), meta_at(k)?),
            (None, None, Some(_)) if !n.contains_key("meta") => NodeState::Gone,
            (None, Some(at), _) => {
                let at = stamp(at, &here)?;
                let meta = meta_at(&at)?;
                if kill.as_ref().is_some_and(|k| *k >= at) {
                    return Err(format!("{here}: its object write is not after its kill"));
                }
                let inner_floor = kill.as_ref().or(floor);
                let children =
                    read_children(n.get("children"), &here, stamp, inner_floor, Some(&at), v2)?;
                NodeState::Object { at, meta, children }
            }
            _ => {
                return Err(format!(
                    "{here} is neither a value, a removal nor an object"
                ));
            }
        };
        let node = Node { kill, state };
        for s in node.kill.iter().chain(match &node.state {
            NodeState::Object { at, .. } => Some(at),
            _ => None,
        }) {
            if floor.is_some_and(|f| s < f) || ceiling.is_some_and(|c| s > c) {
                return Err(format!(
                    "{here}: a write outside its parent's (older than a removal above it, or newer than its parent)"
                ));
            }
        }
        out.push((key.clone(), node));
    }
    Ok(out)
}
