//! Application metadata: free-form JSON documents of the solution (asset
//! catalogues, routing tables), each merged as an [automerge] document.
//!
//! An [`AppDocument`] is one such document; its *name* is the key the hub
//! state stores it under. Replicas edit it by handing [`AppDocument::set_json`]
//! the whole new JSON value: the document diffs it against what it holds and
//! records only the paths that changed, so concurrent edits of different
//! keys on different hubs both survive the merge.
//!
//! ```
//! use failback::ReplicaId;
//! use failback::appmeta::AppDocument;
//! use serde_json::json;
//!
//! let primary = ReplicaId::new("primary")?;
//! let secondary = ReplicaId::new("secondary")?;
//!
//! // One hub creates the document; the other starts from its bytes.
//! let mut a = AppDocument::from_json(&primary, &json!({"routes": {"alerts": "queue-1"}}))?;
//! let mut b = AppDocument::load(&a.save())?;
//!
//! // During the outage both hubs edit different routes.
//! a.set_json(&primary, &json!({"routes": {"alerts": "queue-2"}}))?;
//! b.set_json(&secondary, &json!({"routes": {"alerts": "queue-1", "billing": "queue-9"}}))?;
//!
//! // Failback: merge in either order, get the same document and bytes.
//! let mut ab = a.clone();
//! ab.try_merge(&b)?;
//! let mut ba = b.clone();
//! ba.try_merge(&a)?;
//! assert_eq!(ab.to_json(), json!({"routes": {"alerts": "queue-2", "billing": "queue-9"}}));
//! assert_eq!(ab.save(), ba.save());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How automerge resolves conflicts
//!
//! Every write is an operation with an id `(counter, actor)`: the counter is
//! one more than the highest counter the writer had seen or used, a Lamport
//! clock that counts *operations* (a change writing five values uses five
//! counters); the actor names the writer. Each rule below is checked by a
//! test in `tests/suite/appmeta.rs`.
//!
//! - **Concurrent writes to one map key** (or one list element) are all
//!   kept. The visible value is the one with the highest operation id:
//!   highest counter first, then highest actor bytes. The write preceded by
//!   more operations (seen, or made earlier in the same change) therefore
//!   wins; among equals the actor decides. Wall clocks play no part (every
//!   change here is committed with time `0`).
//!   The other values stay in the document as *conflicts*, listed by
//!   [`AppDocument::conflicts`], until a write that has seen them replaces
//!   them all.
//! - **Different keys** never conflict: each `set_json` writes only the
//!   paths that changed.
//! - **Concurrent list inserts** all survive. Elements inserted at the same
//!   place are ordered by operation id, highest first, and a run of elements
//!   one replica inserted in a row stays contiguous: runs from two replicas
//!   do not interleave element by element.
//! - **Delete against a concurrent update of the same key or list element**:
//!   the update survives. A delete removes only the values its writer had
//!   seen.
//! - **Delete of an object against a concurrent update inside it**: the
//!   delete wins and the nested update disappears with the object, without
//!   being listed as a conflict.
//! - **Text and counters**, which a document loaded from automerge bytes
//!   may hold, read as a JSON string and integer. [`AppDocument::set_json`]
//!   edits them in place: a new string is spliced into the text (only the
//!   characters that differ), a new integer increments the counter by the
//!   difference. So concurrent edits of one text both survive, merged
//!   character by character, and concurrent increments add up; a value of
//!   another kind replaces the text or counter whole.
//! - **Concurrent creation of one key as two objects** (two hubs each
//!   building `"routes": {...}` from scratch) gives two distinct objects in
//!   conflict: one is visible whole, the other is a loser. Create a document
//!   once and copy its bytes (as in the example above) before several
//!   replicas edit it.
//!
//! # How this differs from failback's twin rules
//!
//! Twin leaves (DESIGN policy 4) are registers ranked by *hybrid-clock stamp*:
//! the latest write wins, and each loser goes to the conflict log with its
//! replica and stamp. Setting a twin property to `null` deletes it, and that
//! delete is itself a stamped write, so a later delete beats an earlier
//! update and a later update beats an earlier delete. Automerge ranks by
//! causal history and actor instead of by time; an update always beats a
//! concurrent delete of the same key, while a deleted parent object silently
//! takes concurrent nested updates with it; and `null` is an ordinary value
//! here, never a delete (a key is deleted by leaving it out of the value
//! given to `set_json`). Concurrent writes of a scalar and an object at one
//! path behave alike in both: one wins whole and the other is kept as a
//! loser.
//!
//! # Actors
//!
//! Automerge requires that an actor never writes two different changes with
//! the same sequence number. A deterministic actor per replica would break
//! that as soon as one hub's document is rebuilt twice (say, from two
//! exports) and the copies are merged. So every change gets its own actor,
//! derived from what determines its content: the replica name, a zero byte,
//! then the first 16 bytes of a SHA-256 over the replica, the document's
//! heads and the new value. The same inputs always give the same change
//! (merging it twice is a no-op) and different changes do not share an
//! actor, short of a SHA-256 collision. The replica name leads the actor bytes, so conflicts report who
//! wrote each value, and among concurrent writes with equal counters the
//! replica whose name sorts last wins.
//!
//! # Canonical bytes
//!
//! Automerge's own `save` depends on the order in which changes arrived:
//! the same set of changes merged in two orders saves to different bytes
//! (a test pins this). The set of changes, identified by their hashes, is
//! what is order-independent.
//! [`AppDocument::save`] therefore rebuilds the document by applying its
//! changes in a canonical order (topological, ready changes taken by
//! ascending hash) and saves that without DEFLATE, whose output would depend
//! on the compressor's implementation. Equal change sets give equal bytes
//! whatever the merge order, and fixed inputs give the same bytes on every
//! run (a test pins their SHA-256).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use automerge::transaction::CommitOptions;
use automerge::{
    ActorId, Automerge, AutomergeError, Change, ChangeHash, LoadOptions, ObjType, OnPartialLoad,
    ROOT, ReadDoc,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::clock::ReplicaId;

mod dirs;
mod read;
mod write;

internals!(dirs::{AppMetaMerge, merge_dirs});

use read::{check_input, check_object, collect_conflicts, kind_of, read_map};
use write::update_map;

/// An error's underlying cause, kept for [`std::error::Error::source`]
/// without exposing the dependency's type.
type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong building, editing, loading or merging an
/// [`AppDocument`].
///
/// Paths are JSON Pointers (RFC 6901), `""` being the root.
///
/// # Example
///
/// ```
/// use failback::ReplicaId;
/// use failback::appmeta::{AppDocument, AppMetaError};
///
/// let hub = ReplicaId::new("primary")?;
/// let err = AppDocument::from_json(&hub, &serde_json::json!([1, 2])).unwrap_err();
/// assert!(matches!(err, AppMetaError::RootNotObject { found: "array" }));
/// assert_eq!(err.to_string(), "an application document must be a json object, not an array");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppMetaError {
    /// The value given for a whole document is not a JSON object.
    #[error(
        "an application document must be a json object, not {}",
        article(found)
    )]
    RootNotObject {
        /// The JSON kind found instead (`"array"`, `"string"`, ...).
        found: &'static str,
    },
    /// Objects and arrays nest deeper than [`AppDocument::MAX_DEPTH`].
    #[error("value at {path:?} nests deeper than {limit} levels")]
    TooDeep {
        /// Where the limit was crossed.
        path: String,
        /// The limit, [`AppDocument::MAX_DEPTH`].
        limit: usize,
    },
    /// A number that is neither an `i64`, a `u64` nor a finite `f64`.
    #[error("number at {path:?} is not an i64, a u64 or a finite f64")]
    UnsupportedNumber {
        /// Where the number is.
        path: String,
    },
    /// A loaded document holds a value JSON cannot represent (table object,
    /// timestamp, bytes, non-finite number, ...). Text objects read as
    /// strings and counters as integers.
    #[error("loaded document holds a {kind} at {path:?}, which is not json")]
    NotJson {
        /// Where the value is.
        path: String,
        /// What it is.
        kind: &'static str,
    },
    /// The bytes are not an automerge document.
    #[error("not a valid automerge document")]
    InvalidBytes {
        /// Automerge's description of the problem.
        #[source]
        source: Cause,
    },
    /// The serialized form is not hex text or a byte string.
    #[error("serialized application document is not hex: {reason}")]
    InvalidHex {
        /// What is wrong with the text.
        reason: &'static str,
    },
    /// A loaded document holds changes whose dependencies it lacks.
    #[error("loaded document lacks {missing} change(s) its history depends on")]
    MissingDependencies {
        /// How many dependencies are missing.
        missing: usize,
    },
    /// Two documents hold different changes under one actor and sequence
    /// number, which never happens to documents built by this module.
    #[error("two different changes claim sequence number {seq} of actor {actor}")]
    ActorReused {
        /// The actor, in hex.
        actor: String,
        /// The sequence number both changes claim.
        seq: u64,
    },
    /// Automerge refused to apply the other document's changes.
    #[error("the other document's changes could not be applied")]
    MergeRejected {
        /// Automerge's description of the problem.
        #[source]
        source: Cause,
    },
    /// Automerge refused a write while applying a new value.
    #[error("could not write {path:?}")]
    WriteRejected {
        /// The path being written.
        path: String,
        /// Automerge's description of the problem.
        #[source]
        source: Cause,
    },
}

fn article(kind: &str) -> String {
    let an = matches!(
        kind.as_bytes().first(),
        Some(b'a' | b'e' | b'i' | b'o' | b'u')
    );
    format!("{} {kind}", if an { "an" } else { "a" })
}

/// One free-form JSON document of the solution, held as an automerge
/// document with its full change history.
///
/// The root is always a JSON object. Objects are automerge maps, arrays are
/// automerge lists, and strings, numbers (`i64`, `u64`, `f64`), booleans and
/// `null` are scalars.
///
/// # Invariants
///
/// Checked by [`AppDocument::check_invariants`]: every change's dependencies
/// are present, every visible value (conflict losers included) is JSON, and
/// nothing nests deeper than [`AppDocument::MAX_DEPTH`]. Building, editing
/// and loading keep them, and merging two documents that hold them keeps
/// them too, because a merge only adds values visible on one side.
///
/// # Laws
///
/// [`try_merge`](Self::try_merge) is commutative, associative and
/// idempotent, comparing [`to_json`](Self::to_json) and the canonical bytes
/// of [`save`](Self::save). Two documents are equal (`==`) when they hold
/// the same set of changes. The laws assume no two changes share an actor
/// and sequence number, which every change this module writes guarantees
/// (see the module docs on actors); only crafted bytes can break it, and
/// `try_merge` then reports [`AppMetaError::ActorReused`]. That is why an
/// `AppDocument` has no infallible [`Merge`](crate::kernel::Merge): its
/// merge says in its type that it can fail.
///
/// # Example
///
/// ```
/// use failback::ReplicaId;
/// use failback::appmeta::AppDocument;
/// use serde_json::json;
///
/// let hub = ReplicaId::new("primary")?;
/// let doc = AppDocument::from_json(&hub, &json!({"assets": [{"id": "pump-1"}]}))?;
/// assert_eq!(doc.to_json()["assets"][0]["id"], "pump-1");
/// assert_eq!(AppDocument::load(&doc.save())?, doc);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AppDocument {
    doc: Automerge,
}

/// One value written to a conflicted path, and who wrote it.
///
/// # Example
///
/// ```
/// use failback::appmeta::AppWrite;
///
/// let write = AppWrite { replica: failback::ReplicaId::new("primary").ok(), value: 1.into() };
/// assert_eq!(write.replica.unwrap().as_str(), "primary");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppWrite {
    /// The replica that wrote it, when its actor follows this module's
    /// layout (changes made by other automerge programs have none).
    pub replica: Option<ReplicaId>,
    /// The value written, with its whole subtree.
    pub value: Value,
}

/// A path holding concurrent values: the visible winner and the losers
/// automerge keeps beside it.
///
/// # Example
///
/// ```
/// use failback::ReplicaId;
/// use failback::appmeta::AppDocument;
/// use serde_json::json;
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let mut a = AppDocument::new();
/// let mut b = a.clone();
/// a.set_json(&p, &json!({"mode": "eco"}))?;
/// b.set_json(&s, &json!({"mode": "boost"}))?;
/// a.try_merge(&b)?;
/// let conflicts = a.conflicts();
/// assert_eq!(conflicts.len(), 1);
/// assert_eq!(conflicts[0].path, "/mode");
/// assert_eq!(conflicts[0].winner.value, a.to_json()["mode"]);
/// assert_eq!(conflicts[0].losers.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppConflict {
    /// The JSON Pointer of the conflicted key or list element.
    pub path: String,
    /// The value [`AppDocument::to_json`] shows.
    pub winner: AppWrite,
    /// The other concurrent values, lowest operation id first.
    pub losers: Vec<AppWrite>,
}

impl Default for AppDocument {
    fn default() -> Self {
        Self::new()
    }
}

impl AppDocument {
    /// The deepest nesting of objects and arrays accepted, the root object
    /// counting as one level (serde_json's own parsing limit).
    ///
    /// # Example
    ///
    /// ```
    /// use failback::ReplicaId;
    /// use failback::appmeta::AppDocument;
    ///
    /// let mut deep = serde_json::json!(1);
    /// for _ in 0..AppDocument::MAX_DEPTH {
    ///     deep = serde_json::json!({ "x": deep });
    /// }
    /// let hub = ReplicaId::new("primary")?;
    /// assert!(AppDocument::from_json(&hub, &deep).is_ok());
    /// assert!(AppDocument::from_json(&hub, &serde_json::json!({ "x": deep })).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const MAX_DEPTH: usize = 128;

    /// An empty document, `{}`, with no history.
    ///
    /// # Example
    ///
    /// ```
    /// let doc = failback::appmeta::AppDocument::new();
    /// assert_eq!(doc.to_json(), serde_json::json!({}));
    /// ```
    pub fn new() -> Self {
        Self {
            doc: Automerge::new(),
        }
    }

    /// A document holding `value`, written as one change by `replica`.
    ///
    /// The same replica and value always give the same document, byte for
    /// byte. Two replicas that each build a document from scratch share no
    /// objects: merging them makes every top-level key both set a conflict
    /// (see the module docs); create once and copy the bytes instead.
    ///
    /// # Errors
    ///
    /// [`AppMetaError::RootNotObject`] unless `value` is an object,
    /// [`AppMetaError::TooDeep`] past [`Self::MAX_DEPTH`] and
    /// [`AppMetaError::UnsupportedNumber`] for a number automerge cannot
    /// hold.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::ReplicaId;
    /// use failback::appmeta::AppDocument;
    /// use serde_json::json;
    ///
    /// let hub = ReplicaId::new("primary")?;
    /// let value = json!({"n": -1, "big": u64::MAX, "x": 0.5, "on": true, "none": null, "l": []});
    /// let doc = AppDocument::from_json(&hub, &value)?;
    /// assert_eq!(doc.to_json(), value);
    /// assert_eq!(doc.save(), AppDocument::from_json(&hub, &value)?.save());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_json(replica: &ReplicaId, value: &Value) -> Result<Self, AppMetaError> {
        let mut doc = Self::new();
        doc.set_json(replica, value)?;
        Ok(doc)
    }

    /// The document as JSON: at each key and list element the winning value
    /// (see the module docs), object keys sorted.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::ReplicaId;
    /// use failback::appmeta::AppDocument;
    /// use serde_json::json;
    ///
    /// let hub = ReplicaId::new("primary")?;
    /// let doc = AppDocument::from_json(&hub, &json!({"b": 1, "a": [true]}))?;
    /// assert_eq!(doc.to_json().to_string(), r#"{"a":[true],"b":1}"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_json(&self) -> Value {
        Value::Object(read_map(&self.doc, &ROOT))
    }

    /// Makes the document read `value`, writing as `replica` only what
    /// differs: keys removed, keys added, scalars changed; objects and
    /// arrays present on both sides are edited in place. Arrays are diffed
    /// element by element (a shortest edit script): elements that stay are
    /// untouched, so a concurrent edit of them survives; between them,
    /// removed and added elements pair up and are edited in place, the
    /// surplus deleted or inserted. Past 1024 differing elements the diff
    /// gives up and edits the differing middle pairwise.
    ///
    /// Returns whether anything was written: `false` when the document
    /// already reads `value` (existing conflicts are then left alone).
    ///
    /// # Errors
    ///
    /// As [`Self::from_json`]; then the document is unchanged. Also
    /// [`AppMetaError::WriteRejected`] should automerge refuse a write,
    /// which the invariants rule out.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::ReplicaId;
    /// use failback::appmeta::AppDocument;
    /// use serde_json::json;
    ///
    /// let hub = ReplicaId::new("primary")?;
    /// let mut doc = AppDocument::from_json(&hub, &json!({"routes": ["a", "c"], "v": 1}))?;
    /// assert!(doc.set_json(&hub, &json!({"routes": ["a", "b", "c"], "v": 1}))?);
    /// assert!(!doc.set_json(&hub, &json!({"routes": ["a", "b", "c"], "v": 1}))?);
    /// assert_eq!(doc.to_json()["routes"], json!(["a", "b", "c"]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_json(&mut self, replica: &ReplicaId, value: &Value) -> Result<bool, AppMetaError> {
        check_input(value)?;
        let Value::Object(new) = value else {
            return Err(AppMetaError::RootNotObject {
                found: kind_of(value),
            });
        };
        let old = read_map(&self.doc, &ROOT);
        if old == *new {
            return Ok(false);
        }
        let actor = actor_for(replica, &self.doc.get_heads(), value);
        self.doc.set_actor(actor);
        self.doc
            .transact_with(
                |_| CommitOptions::default().with_time(0),
                |tx| update_map(tx, &ROOT, &old, new, ""),
            )
            .map_err(|failure| failure.error)?;
        Ok(true)
    }

    /// The merge: adds every change of `other` that `self` lacks. On error
    /// `self` is unchanged.
    ///
    /// # Errors
    ///
    /// [`AppMetaError::ActorReused`] when the two documents hold different
    /// changes under one actor and sequence number (only crafted documents
    /// do), [`AppMetaError::MergeRejected`] for any other refusal.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::ReplicaId;
    /// use failback::appmeta::AppDocument;
    /// use serde_json::json;
    ///
    /// let hub = ReplicaId::new("secondary")?;
    /// let base = AppDocument::new();
    /// let mut edited = base.clone();
    /// edited.set_json(&hub, &json!({"k": 1}))?;
    /// let mut merged = base.clone();
    /// merged.try_merge(&edited)?;
    /// assert_eq!(merged, edited);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_merge(&mut self, other: &Self) -> Result<(), AppMetaError> {
        let changes = self.doc.get_changes_added(&other.doc);
        if changes.is_empty() {
            return Ok(());
        }
        let mut next = self.doc.clone();
        next.apply_changes(changes).map_err(|error| match error {
            AutomergeError::DuplicateSeqNumber(seq, actor) => AppMetaError::ActorReused {
                actor: actor.to_hex_string(),
                seq,
            },
            other => AppMetaError::MergeRejected {
                source: Box::new(other),
            },
        })?;
        self.doc = next;
        Ok(())
    }

    /// The canonical bytes of the document: an uncompressed automerge
    /// document holding its changes in canonical order (see the module
    /// docs), so equal documents give equal bytes. [`Self::load`] and any
    /// automerge implementation read them.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::ReplicaId;
    /// use failback::appmeta::AppDocument;
    ///
    /// let hub = ReplicaId::new("primary")?;
    /// let doc = AppDocument::from_json(&hub, &serde_json::json!({"k": "v"}))?;
    /// let bytes = doc.save();
    /// assert_eq!(AppDocument::load(&bytes)?.save(), bytes);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save(&self) -> Vec<u8> {
        canonical(&self.doc).save_nocompress()
    }

    /// Reads a document saved by [`Self::save`] (or by automerge, compressed
    /// or not), checking it holds only JSON and its whole history.
    ///
    /// # Errors
    ///
    /// [`AppMetaError::InvalidBytes`] when the bytes are not an automerge
    /// document or fail its integrity checks,
    /// [`AppMetaError::MissingDependencies`] when changes lack their
    /// history, [`AppMetaError::NotJson`] for a value JSON cannot represent
    /// and [`AppMetaError::TooDeep`] past [`Self::MAX_DEPTH`].
    ///
    /// # Example
    ///
    /// ```
    /// use failback::appmeta::{AppDocument, AppMetaError};
    ///
    /// let err = AppDocument::load(b"not automerge").unwrap_err();
    /// assert!(matches!(err, AppMetaError::InvalidBytes { .. }));
    /// assert_eq!(AppDocument::load(&AppDocument::new().save())?, AppDocument::new());
    /// # Ok::<(), AppMetaError>(())
    /// ```
    pub fn load(bytes: &[u8]) -> Result<Self, AppMetaError> {
        let options = LoadOptions::new().on_partial_load(OnPartialLoad::Error);
        let doc = Automerge::load_with_options(bytes, options).map_err(|error| {
            AppMetaError::InvalidBytes {
                source: Box::new(error),
            }
        })?;
        let doc = Self { doc };
        doc.check_invariants()?;
        Ok(doc)
    }

    /// Every key and list element holding concurrent values, in document
    /// order, looking inside winning values only (a losing subtree is
    /// reported whole as one loser).
    ///
    /// # Example
    ///
    /// ```
    /// use failback::ReplicaId;
    /// use failback::appmeta::AppDocument;
    /// use serde_json::json;
    ///
    /// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
    /// let mut a = AppDocument::new();
    /// let mut b = a.clone();
    /// a.set_json(&p, &json!({"k": 1}))?;
    /// b.set_json(&s, &json!({"k": 2}))?;
    /// a.try_merge(&b)?;
    /// // Equal counters: the replica whose name sorts last wins.
    /// let conflict = &a.conflicts()[0];
    /// assert_eq!(conflict.winner.replica.as_ref(), Some(&s));
    /// assert_eq!(conflict.losers[0].value, json!(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn conflicts(&self) -> Vec<AppConflict> {
        let mut out = Vec::new();
        collect_conflicts(&self.doc, &ROOT, ObjType::Map, "", &mut out);
        out
    }

    /// Checks the invariants every [`AppDocument`] keeps, as
    /// [`Self::load`] does for untrusted bytes: every change has its
    /// dependencies, every visible value is JSON (text and counters
    /// included), and the document nests at most [`Self::MAX_DEPTH`] deep.
    ///
    /// # Errors
    ///
    /// [`AppMetaError::MissingDependencies`], [`AppMetaError::NotJson`] or
    /// [`AppMetaError::TooDeep`], naming what is wrong.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::ReplicaId;
    /// use failback::appmeta::AppDocument;
    ///
    /// let hub = ReplicaId::new("primary")?;
    /// AppDocument::from_json(&hub, &serde_json::json!({"a": [1, {"b": null}]}))?.check_invariants()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_invariants(&self) -> Result<(), AppMetaError> {
        let missing = self.doc.get_missing_deps(&[]);
        if !missing.is_empty() {
            return Err(AppMetaError::MissingDependencies {
                missing: missing.len(),
            });
        }
        check_object(&self.doc, &ROOT, ObjType::Map, "", 1)
    }
}

impl PartialEq for AppDocument {
    fn eq(&self, other: &Self) -> bool {
        // Heads name the whole change graph: equal heads, equal changes.
        self.doc.get_heads() == other.doc.get_heads()
    }
}

impl Eq for AppDocument {}

impl fmt::Debug for AppDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let heads: Vec<String> = self
            .doc
            .get_heads()
            .iter()
            .map(|h| hex_encode(&h.0))
            .collect();
        f.debug_struct("AppDocument")
            .field("heads", &heads)
            .field("value", &self.to_json())
            .finish()
    }
}

/// Lowercase hex of [`AppDocument::save`] in human-readable formats (JSON),
/// the raw bytes in binary ones: canonical either way.
impl Serialize for AppDocument {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = self.save();
        if s.is_human_readable() {
            s.serialize_str(&hex_encode(&bytes))
        } else {
            s.serialize_bytes(&bytes)
        }
    }
}

/// Reads what [`Serialize`] writes, through [`AppDocument::load`].
impl<'de> Deserialize<'de> for AppDocument {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an automerge document as hex text or bytes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                hex_decode(v).map_err(E::custom)
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(byte) = a.next_element::<u8>()? {
                    out.push(byte);
                }
                Ok(out)
            }
        }
        let bytes = if d.is_human_readable() {
            d.deserialize_str(Visit)?
        } else {
            d.deserialize_bytes(Visit)?
        };
        Self::load(&bytes).map_err(serde::de::Error::custom)
    }
}

// ---- actors ----------------------------------------------------------------

/// The actor of the change `replica` makes writing `value` over `heads`:
/// the replica name, a zero byte, then 16 bytes of digest.
fn actor_for(replica: &ReplicaId, heads: &[ChangeHash], value: &Value) -> ActorId {
    let mut hash = Sha256::new();
    hash.update(b"failback.appmeta.actor.v1\0");
    hash.update(replica.as_str().as_bytes());
    hash.update([0]);
    hash.update((heads.len() as u64).to_be_bytes());
    for head in heads {
        hash.update(head.0);
    }
    hash_value(&mut hash, value);
    let digest = hash.finalize();
    let mut bytes = replica.as_str().as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(&digest[..16]);
    ActorId::from(bytes)
}

/// Feeds `value` to `hash` unambiguously, object keys in sorted order
/// whatever the map's own order. Depth is bounded by [`check_input`].
fn hash_value(hash: &mut Sha256, value: &Value) {
    match value {
        Value::Object(map) => {
            hash.update(b"{");
            hash.update((map.len() as u64).to_be_bytes());
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            for (key, child) in sorted {
                hash.update((key.len() as u64).to_be_bytes());
                hash.update(key.as_bytes());
                hash_value(hash, child);
            }
        }
        Value::Array(items) => {
            hash.update(b"[");
            hash.update((items.len() as u64).to_be_bytes());
            for child in items {
                hash_value(hash, child);
            }
        }
        scalar => {
            let text = scalar.to_string();
            hash.update(b"s");
            hash.update((text.len() as u64).to_be_bytes());
            hash.update(text.as_bytes());
        }
    }
}

/// The replica whose name leads `actor`, per [`actor_for`]'s layout.
fn replica_of(actor: &ActorId) -> Option<ReplicaId> {
    let bytes = actor.to_bytes();
    let end = bytes.iter().position(|&b| b == 0)?;
    if bytes.len() != end + 17 {
        return None;
    }
    let name = std::str::from_utf8(&bytes[..end]).ok()?;
    ReplicaId::new(name).ok()
}

// ---- canonical bytes -------------------------------------------------------

/// `doc` rebuilt by applying its changes in topological order, ties taken
/// by ascending hash.
fn canonical(doc: &Automerge) -> Automerge {
    let changes: BTreeMap<ChangeHash, Change> = doc
        .get_changes(&[])
        .into_iter()
        .map(|c| (c.hash(), c))
        .collect();
    let mut waiting: BTreeMap<ChangeHash, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<ChangeHash, Vec<ChangeHash>> = BTreeMap::new();
    let mut ready = BTreeSet::new();
    for (hash, change) in &changes {
        waiting.insert(*hash, change.deps().len());
        for dep in change.deps() {
            dependents.entry(*dep).or_default().push(*hash);
        }
        if change.deps().is_empty() {
            ready.insert(*hash);
        }
    }
    let mut out = Automerge::new();
    let mut applied = 0;
    while let Some(hash) = ready.pop_first() {
        let Some(change) = changes.get(&hash) else {
            continue;
        };
        if out.apply_changes([change.clone()]).is_err() {
            break;
        }
        applied += 1;
        for next in dependents.get(&hash).into_iter().flatten() {
            if let Some(count) = waiting.get_mut(next) {
                *count -= 1;
                if *count == 0 {
                    ready.insert(*next);
                }
            }
        }
    }
    if applied == changes.len() {
        out
    } else {
        // Unreachable while the invariants hold (every dependency present);
        // keep the document rather than lose changes.
        debug_assert!(
            false,
            "canonical rebuild applied {applied} of {}",
            changes.len()
        );
        doc.clone()
    }
}

// ---- hex -------------------------------------------------------------------

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

fn hex_decode(text: &str) -> Result<Vec<u8>, AppMetaError> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if bytes.len() % 2 != 0 {
        return Err(AppMetaError::InvalidHex {
            reason: "odd number of digits",
        });
    }
    bytes
        .chunks_exact(2)
        .map(|pair| match (nibble(pair[0]), nibble(pair[1])) {
            (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
            _ => Err(AppMetaError::InvalidHex {
                reason: "a character is not a hex digit",
            }),
        })
        .collect()
}
