//! Whole directories of documents merged three-way: the base's, and one
//! per hub, each holding documents by name as `NAME.json` or
//! `NAME.automerge`.

// A `ReadError` carries the file, line and field by contract (the CLI
// prints them), as in `format`; it is returned once, on a cold path.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{AppConflict, AppDocument, AppMetaError, AppWrite};
use crate::clock::ReplicaId;
use crate::format::{ReadError, ReadErrorKind};
use crate::reconcile::BASE;

/// The largest document file read.
const MAX_FILE: u64 = 16 << 20;

/// The longest document name.
const MAX_NAME: usize = 128;

/// The rule of a conflict between concurrent writes to one key or list
/// element, as `conflicts.jsonl` names it.
const RULE_SET: &str = "appmeta-concurrent-set";

/// The rule of a document deleted on a hub while another changed it.
const RULE_DELETE: &str = "appmeta-delete-wins";

/// How a document is given.
enum Form {
    Json,
    Automerge,
}

/// One document file of a directory.
struct DocFile {
    path: PathBuf,
    form: Form,
}

/// A document read from its file: as JSON, or as an automerge document.
enum Source {
    Json(Value),
    Automerge(Box<AppDocument>),
}

/// What became of one document.
#[derive(Debug)]
struct Merged {
    /// `created`, `merged`, `unchanged` or `deleted`.
    outcome: &'static str,
    /// The merged document; `None` when deleted.
    doc: Option<AppDocument>,
    /// The conflicts, with their rule.
    conflicts: Vec<(&'static str, AppConflict)>,
}

/// The application-metadata documents of several hubs merged, by name:
/// what [`merge_dirs`] returns.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::ReplicaId;
/// use failback::appmeta::merge_dirs;
///
/// let dir = std::env::temp_dir().join(format!("appmeta-doc-{}", std::process::id()));
/// let hub = dir.join("primary");
/// std::fs::create_dir_all(&hub)?;
/// std::fs::write(hub.join("routes.json"), r#"{"alerts": "queue-1"}"#)?;
/// let merged = merge_dirs(None, &[(ReplicaId::new("primary")?, hub)])?;
/// let (name, doc) = merged.documents().next().unwrap();
/// assert_eq!((name, doc.to_json()), ("routes", serde_json::json!({"alerts": "queue-1"})));
/// assert_eq!(merged.deleted().count(), 0);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct AppMetaMerge {
    docs: BTreeMap<String, Merged>,
}

impl AppMetaMerge {
    /// The documents the merge keeps, by name.
    pub fn documents(&self) -> impl Iterator<Item = (&str, &AppDocument)> {
        self.docs
            .iter()
            .filter_map(|(name, merged)| Some((name.as_str(), merged.doc.as_ref()?)))
    }

    /// The documents the base held and a hub deleted, by name: delete wins
    /// over a concurrent change, which [`AppMetaMerge::conflicts`] keeps.
    pub fn deleted(&self) -> impl Iterator<Item = &str> {
        self.docs
            .iter()
            .filter(|(_, merged)| merged.doc.is_none())
            .map(|(name, _)| name.as_str())
    }

    /// Every conflict, by document name then in document order, with its
    /// rule: `appmeta-concurrent-set` (concurrent values of one key or list
    /// element: the winner is the value the document shows, see the module
    /// docs) or `appmeta-delete-wins` (a document deleted on a hub while
    /// another changed it: the winner is the delete, a `null` value, and
    /// each loser a changed hub's whole document). Losers equal to their
    /// winner (the same value written on two hubs) are left out.
    pub fn conflicts(&self) -> impl Iterator<Item = (&str, &'static str, &AppConflict)> {
        self.docs.iter().flat_map(|(name, merged)| {
            merged
                .conflicts
                .iter()
                .map(move |(rule, conflict)| (name.as_str(), *rule, conflict))
        })
    }

    /// The number of documents of each outcome: `created` (in no base),
    /// `merged` (changed by a hub), `unchanged`, `deleted`.
    pub(crate) fn outcomes(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for merged in self.docs.values() {
            *counts.entry(merged.outcome).or_default() += 1;
        }
        counts
    }
}

/// Merges the application-metadata documents of `hubs`, three-way from
/// `base` when given. Each directory holds documents by name, as plain JSON
/// (`NAME.json`) or as automerge documents (`NAME.automerge`); `NAME` is 1
/// to 128 characters of `[A-Za-z0-9._-]`, not starting with `.`. Anything
/// else in a directory is refused, so no file is silently left out and no
/// name can lead outside an output directory.
///
/// For each name:
///
/// - The **base document** is the base's `NAME.automerge`, or its
///   `NAME.json` written as one change of the replica `base`, or an empty
///   document when the base has none.
/// - A hub's `NAME.json` is a **fork** of the base document with the hub's
///   differences from it written as changes of that hub
///   ([`AppDocument::set_json`]); a hub's `NAME.automerge` is taken as it
///   is, history and all.
/// - The result is the merge of every hub's document
///   ([`AppDocument::try_merge`]): the same bytes for any order of hubs.
///   An automerge document that does not descend from the base document
///   (a base given as JSON is rebuilt here, so none does) shares no
///   history with the forks, and automerge then keeps both creations of
///   each key: one shown, the other a conflict.
/// - A name the base holds and some hub lacks was **deleted** on that hub:
///   delete wins (the contract's policy 2), and each other hub whose
///   document differs from the base's is a loser of an
///   `appmeta-delete-wins` conflict. A name the base lacks was created on
///   the hubs that hold it. Without a base, a hub lacking a name never had
///   it.
///
/// # Errors
///
/// A [`ReadError`] naming the file (and for JSON the line): a directory
/// that cannot be read, a file that is no document
/// ([`ReadErrorKind::NotAppDocument`]), JSON that does not parse or is no
/// object, an automerge document that does not load or holds what JSON
/// cannot, or changes automerge refuses to merge
/// ([`ReadErrorKind::AppMeta`]).
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::ReplicaId;
/// use failback::appmeta::merge_dirs;
/// use serde_json::json;
///
/// let dir = std::env::temp_dir().join(format!("appmeta-three-way-{}", std::process::id()));
/// let write = |hub: &str, text: &str| -> std::io::Result<std::path::PathBuf> {
///     let path = dir.join(hub);
///     std::fs::create_dir_all(&path)?;
///     std::fs::write(path.join("routes.json"), text)?;
///     Ok(path)
/// };
/// let base = write("base", r#"{"alerts": "queue-1", "billing": "queue-2"}"#)?;
/// let p = write("primary", r#"{"alerts": "queue-7", "billing": "queue-2"}"#)?;
/// let s = write("secondary", r#"{"alerts": "queue-1", "billing": "queue-9"}"#)?;
/// let hubs = [(ReplicaId::new("primary")?, p), (ReplicaId::new("secondary")?, s)];
/// let merged = merge_dirs(Some(&base), &hubs)?;
/// let (_, doc) = merged.documents().next().unwrap();
/// // Each hub changed another key: both changes survive, no conflict.
/// assert_eq!(doc.to_json(), json!({"alerts": "queue-7", "billing": "queue-9"}));
/// assert_eq!(merged.conflicts().count(), 0);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn merge_dirs(
    base: Option<&Path>,
    hubs: &[(ReplicaId, PathBuf)],
) -> Result<AppMetaMerge, ReadError> {
    let base_files = base.map(list).transpose()?.unwrap_or_default();
    let mut hub_files = Vec::new();
    for (hub, dir) in hubs {
        hub_files.push((hub, list(dir)?));
    }
    hub_files.sort_by(|a, b| a.0.cmp(b.0));
    let names: BTreeSet<&String> = base_files
        .keys()
        .chain(hub_files.iter().flat_map(|(_, files)| files.keys()))
        .collect();
    let base_replica = ReplicaId::new(BASE).expect("a valid literal");
    let mut merge = AppMetaMerge::default();
    for name in names {
        let base_doc = match base_files.get(name) {
            None => None,
            Some(file) => Some(match read(file)? {
                Source::Automerge(doc) => *doc,
                Source::Json(value) => AppDocument::from_json(&base_replica, &value)
                    .map_err(|e| app_error(&file.path, e))?,
            }),
        };
        let mut sources = Vec::new();
        for (hub, files) in &hub_files {
            let source = match files.get(name) {
                Some(file) => Some((read(file)?, &file.path)),
                None => None,
            };
            sources.push((*hub, source));
        }
        let merged = merge_one(base_doc, sources)?;
        merge.docs.insert(name.clone(), merged);
    }
    Ok(merge)
}

/// Merges one document: `base` and each hub's, sorted by hub.
fn merge_one(
    base: Option<AppDocument>,
    hubs: Vec<(&ReplicaId, Option<(Source, &PathBuf)>)>,
) -> Result<Merged, ReadError> {
    let base_json = base.as_ref().map(AppDocument::to_json);
    let mut contributions = Vec::new();
    let mut deleted_on = Vec::new();
    for (hub, source) in hubs {
        let Some((source, path)) = source else {
            deleted_on.push(hub);
            continue;
        };
        let doc = match source {
            Source::Automerge(doc) => *doc,
            Source::Json(value) => {
                let mut fork = base.clone().unwrap_or_default();
                fork.set_json(hub, &value).map_err(|e| app_error(path, e))?;
                fork
            }
        };
        contributions.push((hub, doc, path));
    }
    let changed = |doc: &AppDocument| Some(doc.to_json()) != base_json;
    if let (Some(_), Some(deleter)) = (&base_json, deleted_on.first()) {
        // Delete wins; the changes it overrides are its losers.
        let losers: Vec<AppWrite> = contributions
            .iter()
            .filter(|(_, doc, _)| changed(doc))
            .map(|(hub, doc, _)| AppWrite {
                replica: Some((*hub).clone()),
                value: doc.to_json(),
            })
            .collect();
        let conflicts = if losers.is_empty() {
            Vec::new()
        } else {
            let winner = AppWrite {
                replica: Some((*deleter).clone()),
                value: Value::Null,
            };
            let path = String::new();
            vec![(
                RULE_DELETE,
                AppConflict {
                    path,
                    winner,
                    losers,
                },
            )]
        };
        return Ok(Merged {
            outcome: "deleted",
            doc: None,
            conflicts,
        });
    }
    let outcome = match &base {
        None => "created",
        Some(_) if contributions.iter().any(|(_, doc, _)| changed(doc)) => "merged",
        Some(_) => "unchanged",
    };
    let mut merged = match (contributions.first(), &base) {
        (Some((_, first, _)), _) => first.clone(),
        // No hub at all: the base as it is.
        (None, Some(base)) => base.clone(),
        (None, None) => AppDocument::new(),
    };
    for (_, doc, path) in contributions.iter().skip(1) {
        merged.try_merge(doc).map_err(|e| app_error(path, e))?;
    }
    let conflicts = merged
        .conflicts()
        .into_iter()
        .filter_map(|mut conflict| {
            conflict
                .losers
                .retain(|loser| loser.value != conflict.winner.value);
            (!conflict.losers.is_empty()).then_some((RULE_SET, conflict))
        })
        .collect();
    Ok(Merged {
        outcome,
        doc: Some(merged),
        conflicts,
    })
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

fn app_error(path: &Path, error: AppMetaError) -> ReadError {
    ReadError::new(shown(path), 0, ReadErrorKind::AppMeta(error))
}

fn not_a_document(path: &Path, reason: &'static str) -> ReadError {
    ReadError::new(shown(path), 0, ReadErrorKind::NotAppDocument { reason })
}

/// Whether `name` may name a document: 1 to 128 of `[A-Za-z0-9._-]`, not
/// starting with `.` (no hidden file, no `.` or `..`).
fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The documents of `dir`, by name.
fn list(dir: &Path) -> Result<BTreeMap<String, DocFile>, ReadError> {
    let io = |e| ReadError::io(shown(dir), e);
    let mut files = BTreeMap::new();
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        entries.push(entry.map_err(io)?);
    }
    // The first bad entry in name order, whatever the directory's order.
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let file_name = entry.file_name();
        let text = file_name.to_str().unwrap_or_default();
        let (name, form) = match (text.strip_suffix(".json"), text.strip_suffix(".automerge")) {
            (Some(name), _) => (name, Form::Json),
            (_, Some(name)) => (name, Form::Automerge),
            _ => ("", Form::Json),
        };
        if !valid_name(name) {
            let reason = "expected NAME.json or NAME.automerge, NAME of 1 to 128 characters of [A-Za-z0-9._-] not starting with '.'";
            return Err(not_a_document(&path, reason));
        }
        if !std::fs::metadata(&path).map_err(io)?.is_file() {
            return Err(not_a_document(&path, "not a file"));
        }
        if files.contains_key(name) {
            let reason = "the directory holds both NAME.json and NAME.automerge";
            return Err(not_a_document(&path, reason));
        }
        files.insert(name.to_owned(), DocFile { path, form });
    }
    Ok(files)
}

/// Reads one document file.
fn read(file: &DocFile) -> Result<Source, ReadError> {
    let path = &file.path;
    let opened = std::fs::File::open(path).map_err(|e| ReadError::io(shown(path), e))?;
    let mut bytes = Vec::new();
    opened
        .take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::io(shown(path), e))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(not_a_document(path, "larger than 16 MiB"));
    }
    match file.form {
        Form::Automerge => AppDocument::load(&bytes)
            .map(|doc| Source::Automerge(Box::new(doc)))
            .map_err(|e| app_error(path, e)),
        Form::Json => {
            let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
            let text = std::str::from_utf8(text).map_err(|e| {
                let kind = ReadErrorKind::InvalidUtf8 {
                    valid_up_to: e.valid_up_to(),
                };
                ReadError::new(shown(path), 0, kind)
            })?;
            let value: Value = serde_json::from_str(text).map_err(|e| {
                let kind = ReadErrorKind::InvalidJson {
                    column: e.column(),
                    message: json_message(&e),
                };
                ReadError::new(shown(path), e.line() as u64, kind)
            })?;
            if !value.is_object() {
                return Err(app_error(
                    path,
                    AppMetaError::RootNotObject {
                        found: super::read::kind_of(&value),
                    },
                ));
            }
            Ok(Source::Json(value))
        }
    }
}

/// serde_json's message without its position, which the error gives
/// apart. A document is free-form: no message quotes it (syntax errors
/// name what was expected, never the input).
fn json_message(error: &serde_json::Error) -> String {
    let full = error.to_string();
    match full.rfind(" at line ") {
        Some(at) => full[..at].to_owned(),
        None => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_a_directory_are_refused() {
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "é", "a\nb"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        for good in ["routes", "asset-catalogue_v2", "a.b", "0"] {
            assert!(valid_name(good), "{good:?}");
        }
        assert!(valid_name(&"n".repeat(128)));
        assert!(!valid_name(&"n".repeat(129)));
    }

    #[test]
    fn each_document_is_counted_once_by_what_became_of_it() {
        let dir = std::env::temp_dir().join(format!("failback-outcomes-{}", std::process::id()));
        let docs = |name: &str, files: &[(&str, &str)]| {
            let path = dir.join(name);
            std::fs::create_dir_all(&path).unwrap();
            for (file, text) in files {
                std::fs::write(path.join(file), text).unwrap();
            }
            path
        };
        let base = docs(
            "base",
            &[
                ("same.json", "{}"),
                ("changed.json", "{}"),
                ("gone.json", "{}"),
            ],
        );
        let p = docs(
            "p",
            &[
                ("same.json", "{}"),
                ("changed.json", r#"{"k": 1}"#),
                ("gone.json", "{}"),
                ("new.json", "{}"),
            ],
        );
        let s = docs("s", &[("same.json", "{}"), ("changed.json", "{}")]);
        let hubs = [
            (ReplicaId::new("p").unwrap(), p),
            (ReplicaId::new("s").unwrap(), s),
        ];
        let merged = merge_dirs(Some(&base), &hubs).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let want = [
            ("created", 1),
            ("deleted", 1),
            ("merged", 1),
            ("unchanged", 1),
        ];
        assert_eq!(merged.outcomes(), BTreeMap::from(want));
        let outcome = |name: &str| merged.docs[name].outcome;
        assert_eq!(
            ["same", "changed", "gone", "new"].map(outcome),
            ["unchanged", "merged", "deleted", "created"]
        );
    }
}
