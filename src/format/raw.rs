//! What both readers share: parsing one line with serde straight into typed
//! fields, and turning serde's errors into [`ReadErrorKind`]s that name the
//! field and never quote the input.
//!
//! The line visitors are written by hand rather than derived with
//! `#[serde(flatten)]`: flatten buffers the whole line into an untyped tree
//! first, while a visitor reads each field once into its final type. A
//! visitor also knows which field it is reading when something fails, and
//! records it in a [`Ctx`] beside serde's error.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::canon::SectionText;
use super::{ReadError, ReadErrorKind};
use crate::doc::{
    AuthType, Authentication, MetaTree, SectionMap, Status, SymmetricKey, X509Thumbprint,
};

/// What a visitor knew when parsing failed.
#[derive(Default)]
pub(crate) struct Ctx {
    /// The field being read.
    field: Cell<Option<&'static str>>,
    /// A typed error found by a visitor, which serde's error only carries
    /// as an empty message.
    error: RefCell<Option<(String, ReadErrorKind)>>,
    /// The device id, once read.
    pub(crate) device: RefCell<Option<String>>,
    /// The module id, once read.
    pub(crate) module: RefCell<Option<String>>,
}

impl Ctx {
    /// Records a typed error for `field` and returns the serde error that
    /// stops parsing.
    pub(crate) fn fail<E: de::Error>(&self, field: impl Into<String>, kind: ReadErrorKind) -> E {
        *self.error.borrow_mut() = Some((field.into(), kind));
        E::custom("")
    }

    /// Reads one field's value, noting the field in case it fails; a second
    /// occurrence of the field is an error.
    pub(crate) fn value<'de, A, T>(
        &self,
        map: &mut A,
        field: &'static str,
        seen: &mut bool,
    ) -> Result<T, A::Error>
    where
        A: MapAccess<'de>,
        T: Deserialize<'de>,
    {
        self.value_seed(map, field, seen, std::marker::PhantomData)
    }

    /// Reads the device id field `field`, noting the id for errors.
    pub(crate) fn device_id<'de, A: MapAccess<'de>>(
        &self,
        map: &mut A,
        field: &'static str,
        seen: &mut bool,
    ) -> Result<Option<String>, A::Error> {
        let id: String = self.value(map, field, seen)?;
        *self.device.borrow_mut() = Some(id.clone());
        Ok(Some(id))
    }

    /// Reads the module id field `field`, noting the id for errors.
    pub(crate) fn module_id<'de, A: MapAccess<'de>>(
        &self,
        map: &mut A,
        field: &'static str,
        seen: &mut bool,
    ) -> Result<Option<String>, A::Error> {
        let id: Option<String> = self.value(map, field, seen)?;
        self.module.borrow_mut().clone_from(&id);
        Ok(id)
    }

    /// As [`Ctx::value`], with a seed.
    pub(crate) fn value_seed<'de, A, S>(
        &self,
        map: &mut A,
        field: &'static str,
        seen: &mut bool,
        seed: S,
    ) -> Result<S::Value, A::Error>
    where
        A: MapAccess<'de>,
        S: DeserializeSeed<'de>,
    {
        if std::mem::replace(seen, true) {
            return Err(self.fail(field, ReadErrorKind::DuplicateField));
        }
        self.field.set(Some(field));
        let value = map.next_value_seed(seed)?;
        self.field.set(None);
        Ok(value)
    }

    /// Turns a failed parse into a [`ReadError`] for `file` and `line`.
    pub(crate) fn error(&self, file: &str, line: u64, err: &serde_json::Error) -> ReadError {
        let (field, kind) = match self.error.borrow_mut().take() {
            Some((field, kind)) => (Some(field), kind),
            None => {
                let (field, kind) = classify(err);
                (field.or_else(|| self.field.get().map(str::to_owned)), kind)
            }
        };
        let device = self.device.borrow();
        let module = self.module.borrow();
        // A record that spans lines (a pretty-printed object): the line
        // the error is on, not the one the record starts on.
        let line = line + (err.line() as u64).saturating_sub(1);
        let mut error =
            ReadError::new(file, line, kind).with_device(device.as_deref(), module.as_deref());
        error.field = field;
        error
    }
}

/// Parses `text` as one JSON object with `seed`, nothing after it.
pub(crate) fn parse<'de, S>(text: &'de str, seed: S) -> Result<S::Value, serde_json::Error>
where
    S: DeserializeSeed<'de>,
{
    let mut de = serde_json::Deserializer::from_str(text);
    let value = seed.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// The error of `text` if it is not JSON at all.
pub(crate) fn syntax_error(text: &str) -> Option<ReadErrorKind> {
    serde_json::from_str::<IgnoredAny>(text)
        .err()
        .map(|e| classify(&e).1)
}

/// serde's error as a kind, and the field it names, if any. Messages that
/// could quote the input are rebuilt from their parts.
fn classify(err: &serde_json::Error) -> (Option<String>, ReadErrorKind) {
    let full = err.to_string();
    let message = match full.rfind(" at line ") {
        Some(at) => full.get(..at).unwrap_or(&full),
        None => &full,
    };
    let column = err.column();
    match err.classify() {
        serde_json::error::Category::Data => {}
        // Syntax and end-of-input messages are fixed texts of serde_json's
        // that never quote the input.
        _ => {
            return (
                None,
                ReadErrorKind::InvalidJson {
                    column,
                    message: message.to_owned(),
                },
            );
        }
    }
    for (prefix, invalid_value) in [("invalid type: ", false), ("invalid value: ", true)] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some(sep) = rest.rfind(", expected ") {
                let found = rest.get(..sep).unwrap_or_default();
                let expected = rest.get(sep + ", expected ".len()..).unwrap_or_default();
                let mut found = found_name(found).to_owned();
                if invalid_value {
                    found = format!("an out-of-range {}", found.trim_start_matches("a "));
                }
                return (
                    None,
                    ReadErrorKind::WrongType {
                        expected: expected_name(expected),
                        found,
                    },
                );
            }
        }
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.trim_end_matches('`');
        return (Some(name.to_owned()), ReadErrorKind::MissingField);
    }
    (
        None,
        ReadErrorKind::InvalidJson {
            column,
            message: "unexpected value".to_owned(),
        },
    )
}

/// Parses `text` as one JSON value in which every object holds each key
/// once, at any depth. On a second occurrence of a key, the error is
/// `Err(Ok(path))`, `path` naming it from the top (`tags.site`); any other
/// failure is serde's error. Which of two values the writer meant would be
/// a guess, so neither is taken.
pub(crate) fn parse_unique_keys(text: &str) -> Result<Value, Result<String, serde_json::Error>> {
    let duplicate = RefCell::new(None);
    let seed = UniqueKeys {
        at: None,
        duplicate: &duplicate,
    };
    parse(text, seed).map_err(|e| duplicate.into_inner().ok_or(e))
}

/// A seed reading a JSON value as [`parse_unique_keys`] does, inside a
/// larger document: an object with a repeated key is an error (its path
/// in `duplicate`).
pub(crate) fn unique_value(duplicate: &RefCell<Option<String>>) -> UniqueKeys<'_> {
    UniqueKeys {
        at: None,
        duplicate,
    }
}

/// Where a value sits: its key or index, and its parent's place.
struct Place<'p> {
    step: Step<'p>,
    parent: Option<&'p Place<'p>>,
}

enum Step<'p> {
    Key(&'p str),
    Index(usize),
}

impl Place<'_> {
    fn path(&self) -> String {
        let step = match self.step {
            Step::Key(key) => key.to_owned(),
            Step::Index(index) => index.to_string(),
        };
        match self.parent {
            Some(parent) => format!("{}.{step}", parent.path()),
            None => step,
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct UniqueKeys<'p> {
    at: Option<&'p Place<'p>>,
    duplicate: &'p RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for UniqueKeys<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON text has no non-finite number, so this never gives null.
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        let mut index = 0usize;
        loop {
            let place = Place {
                step: Step::Index(index),
                parent: self.at,
            };
            let seed = UniqueKeys {
                at: Some(&place),
                duplicate: self.duplicate,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => break,
            }
            index += 1;
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let place = Place {
                step: Step::Key(&key),
                parent: self.at,
            };
            let seed = UniqueKeys {
                at: Some(&place),
                duplicate: self.duplicate,
            };
            let value = map.next_value_seed(seed)?;
            if out.contains_key(&key) {
                *self.duplicate.borrow_mut() = Some(place.path());
                return Err(de::Error::custom("duplicate field"));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// The JSON type of `value`, in the words of [`ReadErrorKind::WrongType`].
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The JSON type of a value's text (as serde_json's `RawValue` holds it,
/// valid JSON without leading whitespace), in the same words.
pub(crate) fn kind_of_text(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// The JSON type serde's "unexpected" text names, without the value it
/// quotes.
fn found_name(unexpected: &str) -> &'static str {
    let word = unexpected
        .split(['`', '"'])
        .next()
        .unwrap_or_default()
        .trim();
    match word {
        "string" | "character" => "a string",
        "integer" | "floating point" | "number" => "a number",
        "boolean" => "a boolean",
        "sequence" => "an array",
        "map" => "an object",
        "unit value" | "Option value" | "null" => "null",
        _ => "another value",
    }
}

/// serde's "expected" text, which comes from this crate's types, in the
/// words of JSON.
fn expected_name(expected: &str) -> String {
    if expected.starts_with("struct ") || expected == "a map" || expected == "map" {
        "an object".to_owned()
    } else if matches!(
        expected,
        "u8" | "u16" | "u32" | "u64" | "i8" | "i16" | "i32" | "i64"
    ) {
        "an integer".to_owned()
    } else {
        expected.to_owned()
    }
}

/// `status`, read as a string so a bad value gets its own error. The hub
/// reads enums in any case (the Java SDK writes `Enabled`); the value is
/// written back in its canonical form.
pub(crate) fn status(value: &str) -> Result<Status, (String, ReadErrorKind)> {
    match value {
        _ if value.eq_ignore_ascii_case("enabled") => Ok(Status::Enabled),
        _ if value.eq_ignore_ascii_case("disabled") => Ok(Status::Disabled),
        _ => Err((
            "status".to_owned(),
            ReadErrorKind::InvalidStatus {
                value: super::error::safe_value(value),
            },
        )),
    }
}

/// An object key, borrowed from the line when it has no escapes.
pub(crate) struct Key<'de>(pub(crate) std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// A line's typed fields as a [`Record`] reads them: each known field by
/// name, each other key as the format wants (kept, or skipped).
pub(crate) trait Fields<'de>: Default {
    /// The known fields, in the order the writer writes them.
    const NAMES: &'static [&'static str];

    /// Reads the known field `name`; `seen` refuses a second occurrence
    /// (see [`Ctx::value`]).
    fn field<A: MapAccess<'de>>(
        &mut self,
        ctx: &Ctx,
        name: &'static str,
        seen: &mut bool,
        map: &mut A,
    ) -> Result<(), A::Error>;

    /// Reads or skips the value of a key that is not in
    /// [`NAMES`](Fields::NAMES).
    fn other<A: MapAccess<'de>>(
        &mut self,
        ctx: &Ctx,
        key: std::borrow::Cow<'de, str>,
        map: &mut A,
    ) -> Result<(), A::Error>;
}

/// The most known fields a [`Fields`] type may have.
const MAX_FIELDS: usize = 16;

/// Reads one JSON object into `T` by its [`Fields`], straight from the
/// line's text.
pub(crate) struct Record<'c, T> {
    ctx: &'c Ctx,
    fields: std::marker::PhantomData<T>,
}

impl<'c, T> Record<'c, T> {
    /// A reader recording what fails in `ctx`.
    pub(crate) fn new(ctx: &'c Ctx) -> Self {
        Record {
            ctx,
            fields: std::marker::PhantomData,
        }
    }
}

impl<'de, T: Fields<'de>> DeserializeSeed<'de> for Record<'_, T> {
    type Value = T;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Fields<'de>> Visitor<'de> for Record<'_, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        const { assert!(T::NAMES.len() <= MAX_FIELDS) };
        let mut fields = T::default();
        let mut seen = [false; MAX_FIELDS];
        while let Some(Key(key)) = map.next_key()? {
            let known = T::NAMES.iter().position(|name| *name == key);
            match known.and_then(|i| Some((*T::NAMES.get(i)?, seen.get_mut(i)?))) {
                Some((name, seen)) => fields.field(self.ctx, name, seen, &mut map)?,
                None => fields.other(self.ctx, key, &mut map)?,
            }
        }
        Ok(fields)
    }
}

/// A twin section (`tags`, `desired`, `reported`): `null` is empty,
/// `$version` is dropped, `$metadata` is kept raw when asked for and
/// dropped otherwise, a key given twice is an error.
pub(crate) struct SectionSeed<'c> {
    pub(crate) ctx: &'c Ctx,
    pub(crate) path: &'static str,
    pub(crate) metadata: bool,
}

/// A section read by [`SectionSeed`].
#[derive(Default)]
pub(crate) struct RawSection {
    pub(crate) section: SectionMap,
    pub(crate) meta: Option<RawMeta>,
    /// `$metadata` already read into its tree (by a reader that parsed
    /// its times itself): taken before `meta`.
    pub(crate) tree: Option<MetaTree>,
    /// Whether the section was given at all (a patch covers only those).
    pub(crate) present: bool,
}

impl<'de> DeserializeSeed<'de> for SectionSeed<'_> {
    type Value = RawSection;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<RawSection, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SectionSeed<'_> {
    type Value = RawSection;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawSection, E> {
        Ok(RawSection {
            present: true,
            ..RawSection::default()
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSection, A::Error> {
        let mut section = RawSection {
            present: true,
            ..RawSection::default()
        };
        let mut text = SectionText::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match &*key {
                // Service metadata, never merged nor written: `$version`
                // of a section, and the `$etag` Microsoft's own twin
                // samples carry in `tags`.
                "$version" => {
                    map.next_value::<IgnoredAny>()?;
                }
                "$etag" | "$metadata" if self.path == "tags" => {
                    map.next_value::<IgnoredAny>()?;
                }
                "$metadata" if self.path != "tags" => {
                    if self.metadata {
                        section.meta = Some(map.next_value::<RawMeta>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                _ => {
                    if !text.property(key.clone(), &mut map)? {
                        return Err(self.ctx.fail(
                            format!("{}.{key}", self.path),
                            ReadErrorKind::DuplicateField,
                        ));
                    }
                }
            }
        }
        section.section = text.finish();
        Ok(section)
    }
}

/// `properties`: `desired` and `reported`; other keys are ignored.
pub(crate) struct PropertiesSeed<'c> {
    pub(crate) ctx: &'c Ctx,
    pub(crate) metadata: bool,
}

/// `properties` as read by [`PropertiesSeed`].
#[derive(Default)]
pub(crate) struct RawProperties {
    pub(crate) desired: RawSection,
    pub(crate) reported: RawSection,
}

impl<'de> DeserializeSeed<'de> for PropertiesSeed<'_> {
    type Value = RawProperties;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<RawProperties, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PropertiesSeed<'_> {
    type Value = RawProperties;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawProperties, E> {
        Ok(RawProperties::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawProperties, A::Error> {
        let mut props = RawProperties::default();
        let (mut seen_desired, mut seen_reported) = (false, false);
        while let Some(key) = map.next_key::<String>()? {
            let (path, seen, slot) = match key.as_str() {
                "desired" => ("properties.desired", &mut seen_desired, &mut props.desired),
                "reported" => (
                    "properties.reported",
                    &mut seen_reported,
                    &mut props.reported,
                ),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let seed = SectionSeed {
                ctx: self.ctx,
                path,
                metadata: self.metadata,
            };
            *slot = self.ctx.value_seed(&mut map, path, seen, seed)?;
        }
        Ok(props)
    }
}

/// `$metadata` as read: `$lastUpdated` strings, parsed afterwards so that a
/// bad one gets a typed error with its path.
#[derive(Default)]
pub(crate) struct RawMeta {
    last_updated: Option<String>,
    children: BTreeMap<String, RawMeta>,
}

impl<'de> Deserialize<'de> for RawMeta {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MetaVisitor)
            .map(Option::unwrap_or_default)
    }
}

/// Reads a metadata node; anything but an object is no metadata.
struct MetaVisitor;

impl<'de> Visitor<'de> for MetaVisitor {
    type Value = Option<RawMeta>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("metadata")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut node = RawMeta::default();
        while let Some(key) = map.next_key::<String>()? {
            if key == "$lastUpdated" {
                node.last_updated = map.next_value()?;
            } else if key.starts_with('$') {
                map.next_value::<IgnoredAny>()?;
            } else {
                let child: RawMeta = map.next_value()?;
                node.children.insert(key, child);
            }
        }
        Ok(Some(node))
    }
}

impl RawMeta {
    /// The metadata tree in milliseconds, or the path of the first
    /// unparseable `$lastUpdated`. Sets `zoneless` when a time had no zone
    /// (read as UTC).
    pub(crate) fn into_tree(
        self,
        path: &str,
        zoneless: &mut bool,
    ) -> Result<MetaTree, (String, ReadErrorKind)> {
        let place = Place {
            step: Step::Key(path),
            parent: None,
        };
        self.into_tree_at(&place, zoneless)
    }

    /// As [`RawMeta::into_tree`], the node at `place`: its path is
    /// written out only for an error.
    fn into_tree_at(
        self,
        place: &Place<'_>,
        zoneless: &mut bool,
    ) -> Result<MetaTree, (String, ReadErrorKind)> {
        let last_updated = match self.last_updated {
            Some(text) => {
                let (ms, no_zone) = parse_time_zone(&text)
                    .map_err(|kind| (format!("{}.$lastUpdated", place.path()), kind))?;
                *zoneless |= no_zone;
                ms
            }
            None => None,
        };
        let mut children = BTreeMap::new();
        for (key, child) in self.children {
            let at = Place {
                step: Step::Key(&key),
                parent: Some(place),
            };
            let tree = child.into_tree_at(&at, zoneless)?;
            children.insert(key, tree);
        }
        Ok(MetaTree {
            last_updated,
            children,
        })
    }
}

/// `$metadata` read from a parsed JSON value, by move, as [`RawMeta`]
/// and [`RawMeta::into_tree`] read it: anything but an object is an
/// empty node, `$lastUpdated` a string or null, other `$` keys ignored.
/// `None` where those would fail (a `$lastUpdated` of another type, or
/// no time): the caller reads the text again the checked way, for its
/// error.
pub(crate) fn meta_of_value(value: Value, zoneless: &mut bool) -> Option<MetaTree> {
    let Value::Object(map) = value else {
        return Some(MetaTree::default());
    };
    let mut node = MetaTree::default();
    for (key, value) in map {
        if key == "$lastUpdated" {
            node.last_updated = match value {
                Value::Null => None,
                Value::String(text) => {
                    let (ms, no_zone) = parse_time_zone(&text).ok()?;
                    *zoneless |= no_zone;
                    ms
                }
                _ => return None,
            };
        } else if !key.starts_with('$') {
            let child = meta_of_value(value, zoneless)?;
            node.children.insert(key, child);
        }
    }
    Some(node)
}

/// A twin section read from a parsed JSON value, by move, as
/// [`SectionSeed`] reads it from text (`metadata` read into its tree);
/// `None` where that would fail.
pub(crate) fn section_of_value(
    value: Value,
    tags: bool,
    zoneless: &mut bool,
) -> Option<RawSection> {
    let mut section = RawSection {
        present: true,
        ..RawSection::default()
    };
    let mut map = match value {
        Value::Null => return Some(section),
        Value::Object(map) => map,
        _ => return None,
    };
    // The keys that are no properties, taken out of the map in place.
    map.remove("$version");
    if tags {
        map.remove("$etag");
        map.remove("$metadata");
    } else if let Some(meta) = map.remove("$metadata") {
        section.tree = Some(meta_of_value(meta, zoneless)?);
    }
    section.section = map.into();
    Some(section)
}

/// An ISO-8601 / RFC 3339 time in milliseconds since the epoch. .NET's
/// `DateTime.MinValue` (`0001-01-01T00:00:00Z`), which IoT Hub writes for
/// "never", is no time.
pub(crate) fn parse_time(text: &str) -> Result<Option<i64>, ReadErrorKind> {
    parse_time_zone(text).map(|(ms, _)| ms)
}

/// As [`parse_time`], and whether the time had no zone (it is then read
/// as UTC, as IoT Hub means it).
pub(crate) fn parse_time_zone(text: &str) -> Result<(Option<i64>, bool), ReadErrorKind> {
    if let Some(ms) = parse_utc_fast(text) {
        return Ok(((ms != NEVER_MS).then_some(ms), false));
    }
    let bad = || ReadErrorKind::InvalidTimestamp {
        value: super::error::safe_value(text),
    };
    let (time, zoneless) = match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(time) => (time.to_utc(), false),
        // Without an offset: UTC, as IoT Hub means it.
        Err(_) => (
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .map_err(|_| bad())?
                .and_utc(),
            true,
        ),
    };
    // RFC 3339 years have four digits: a time outside them would be
    // written in a form no reader takes back.
    if !(0..=9999).contains(&chrono::Datelike::year(&time)) {
        return Err(bad());
    }
    let ms = time.timestamp_millis();
    if ms == NEVER_MS {
        // "Never" says nothing of a zone.
        return Ok((None, false));
    }
    Ok((Some(ms), zoneless))
}

/// The time of `YYYY-MM-DDTHH:MM:SS[.f]Z` (1 to 9 digits of fraction), the
/// shape IoT Hub writes, in milliseconds, read directly; `None` for any
/// other text, which chrono then reads (or refuses). Gives what chrono
/// gives for the texts it takes.
fn parse_utc_fast(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = b.get(from..to)?;
        digits.iter().try_fold(0i64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if b.len() < 20 || !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':'))
    {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let nanos = match b.len() {
        20 if at(19, b'Z') => 0,
        22..=30 if at(19, b'.') && at(b.len() - 1, b'Z') => {
            let digits = b.len() - 21;
            num(20, b.len() - 1)? * 10i64.pow(9 - digits as u32)
        }
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    // A leap second (60) is chrono's to read.
    if day < 1 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days since 1970-01-01 of a civil date (Howard Hinnant's
    // `days_from_civil`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400_000 + (hour * 3600 + minute * 60 + second) * 1000 + nanos / 1_000_000)
}

/// `0001-01-01T00:00:00Z` in milliseconds.
const NEVER_MS: i64 = -62_135_596_800_000;

pub(crate) use crate::clock::format_time;

/// `authentication` as read: the type as a string, for its own error.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawAuth {
    #[serde(default)]
    symmetric_key: Option<SymmetricKey>,
    #[serde(default)]
    x509_thumbprint: Option<X509Thumbprint>,
    #[serde(rename = "type", default)]
    auth_type: Option<String>,
}

impl RawAuth {
    /// The authentication, or an error naming `authentication.type`.
    ///
    /// SAS without both keys ([`Authentication::lacks_keys`]) is read as
    /// `"authentication": null`, keys not shown: an export made without
    /// keys shows its SAS devices so, and taking it as written would plan
    /// an import that makes the hub generate new keys. Unknown keys are
    /// filled from what another input knows, or the plan is refused.
    pub(crate) fn into_auth(self) -> Result<Option<Authentication>, (String, ReadErrorKind)> {
        // In any case, as the hub reads it; `SELF_SIGNED` (an old Java
        // SDK's) is no name the hub takes, and stays an error.
        let named = |name: &str| {
            self.auth_type
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(name))
        };
        let auth_type = match self.auth_type.as_deref() {
            None => None,
            Some(_) if named("sas") => Some(AuthType::Sas),
            Some(_) if named("selfSigned") => Some(AuthType::SelfSigned),
            Some(_) if named("certificateAuthority") => Some(AuthType::CertificateAuthority),
            Some(_) if named("none") => Some(AuthType::None),
            Some(other) => {
                return Err((
                    "authentication.type".to_owned(),
                    ReadErrorKind::InvalidAuthType {
                        value: super::error::safe_value(other),
                    },
                ));
            }
        };
        if let Some(keys) = &self.symmetric_key {
            for (name, key) in [
                ("primaryKey", &keys.primary_key),
                ("secondaryKey", &keys.secondary_key),
            ] {
                if let Some(length) = key.as_ref().and_then(|k| wrong_key_length(k.expose())) {
                    return Err((
                        format!("authentication.symmetricKey.{name}"),
                        ReadErrorKind::InvalidKeyLength { length },
                    ));
                }
            }
        }
        let auth = Authentication {
            symmetric_key: self.symmetric_key,
            x509_thumbprint: self.x509_thumbprint,
            auth_type,
        };
        Ok((!auth.lacks_keys()).then_some(auth))
    }
}

/// The decoded length of a symmetric key the hub would refuse, if it is
/// one.
///
/// The hub takes keys of 16 to 64 bytes, base64-encoded. `""` (the hub
/// generates the key) is taken. Text with a character outside the base64
/// alphabet (`<base64Key>`, `<GetKey()>`) is a placeholder in a sample,
/// not a key of the wrong length: it is read as written, and the hub is
/// the one to refuse it if it is ever imported. Base64 text that is
/// malformed (a stray `=`, a length no encoding gives) counts as 0 bytes.
fn wrong_key_length(key: &str) -> Option<usize> {
    if key.is_empty()
        || key
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')))
    {
        return None;
    }
    let body = key.trim_end_matches('=');
    let padding = key.len() - body.len();
    let length = if body.contains('=') || padding > 2 || key.len() % 4 != 0 {
        0
    } else {
        body.len() * 3 / 4
    };
    (!(16..=64).contains(&length)).then_some(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lengths_the_hub_takes() {
        // 16, 32 and 64 bytes.
        assert_eq!(wrong_key_length("AAAAAAAAAAAAAAAAAAAAAA=="), None);
        assert_eq!(wrong_key_length(&format!("{}=", "A".repeat(43))), None);
        assert_eq!(wrong_key_length(&format!("{}==", "A".repeat(86))), None);
        // 15 and 65 bytes.
        assert_eq!(wrong_key_length("AAAAAAAAAAAAAAAAAAAA"), Some(15));
        assert_eq!(wrong_key_length(&format!("{}=", "A".repeat(87))), Some(65));
        // Malformed base64.
        assert_eq!(wrong_key_length("AAAAAAAAAAAAAAAAAAAAAAA"), Some(0));
        assert_eq!(wrong_key_length("AAAAAAAAAA=AAAAAAAAAAAA="), Some(0));
        assert_eq!(wrong_key_length("AAAAAAAAAAAAAAAAAAAA===="), Some(0));
        // Generated by the hub; placeholders in samples.
        assert_eq!(wrong_key_length(""), None);
        assert_eq!(wrong_key_length("<base64Key>"), None);
        assert_eq!(wrong_key_length("<GetKey()>"), None);
    }

    #[test]
    fn the_direct_time_reader_reads_what_chrono_reads() {
        let chrono = |text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.to_utc().timestamp_millis())
        };
        let mut texts: Vec<String> = [
            "2024-03-01T12:00:00Z",
            "2024-03-01T12:00:00.1Z",
            "2024-03-01T12:00:00.1234567Z",
            "2024-03-01T12:00:00.123456789Z",
            "2024-03-01T12:00:00.1234567891Z",
            "2024-02-29T23:59:59.999Z",
            "2023-02-29T00:00:00Z",
            "2000-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "1969-12-31T23:59:59.999Z",
            "2024-13-01T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-04-00T00:00:00Z",
            "2024-03-01T24:00:00Z",
            "2024-03-01T23:60:00Z",
            "2024-03-01T23:59:60Z",
            "2024-03-01T12:00:00.Z",
            "2024-03-01T12:00:00z",
            "2024-03-01t12:00:00Z",
            "2024-03-01 12:00:00Z",
            "2024-03-01T12:00:00+01:00",
            "2024-03-01T12:00:00",
            "2024-3-01T12:00:00Z",
            "+2024-03-01T12:00:00Z",
            "2024-03-01T12:00:00.12a4Z",
            "2024-03-01T1a:00:00Z",
            "2024-03-01T12:00:00.000Z ",
        ]
        .map(str::to_owned)
        .to_vec();
        let mut x: u64 = 7;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let r = |n: u64, s: u32| (x >> s) % n;
            texts.push(format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}Z",
                r(10_000, 1),
                r(14, 15),
                r(33, 20),
                r(25, 26),
                r(61, 32),
                r(61, 38),
                match r(4, 44) {
                    0 => String::new(),
                    1 => format!(".{:03}", r(1000, 46)),
                    2 => format!(".{:07}", r(10_000_000, 40)),
                    _ => format!(".{}", r(10, 50)),
                }
            ));
        }
        for text in &texts {
            assert_eq!(
                parse_utc_fast(text).or_else(|| chrono(text)),
                chrono(text),
                "{text}"
            );
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z").ok(), Some(Some(1500)));
        assert_eq!(
            parse_time("2024-03-01T12:00:00.1234567Z").ok(),
            Some(Some(1_709_294_400_123))
        );
        assert_eq!(
            parse_time("2024-03-01T13:00:00+01:00").ok(),
            Some(Some(1_709_294_400_000))
        );
        assert_eq!(
            parse_time("2024-03-01T12:00:00").ok(),
            Some(Some(1_709_294_400_000))
        );
        assert_eq!(parse_time("0001-01-01T00:00:00Z").ok(), Some(None));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("+10000-01-01T00:00:00").is_err());
        assert!(parse_time("-0001-12-31T23:59:59").is_err());
        assert_eq!(
            parse_time("9999-12-31T23:59:59.999Z")
                .ok()
                .flatten()
                .and_then(format_time)
                .as_deref(),
            Some("9999-12-31T23:59:59.999Z")
        );
        assert_eq!(
            format_time(1_709_294_400_123).as_deref(),
            Some("2024-03-01T12:00:00.123Z")
        );
    }

    #[test]
    fn serde_messages_lose_the_values_they_quote() {
        let err = serde_json::from_str::<bool>("\"c2VjcmV0\"").unwrap_err();
        let (_, kind) = classify(&err);
        let shown = kind.to_string();
        assert_eq!(shown, "expected a boolean, found a string");
        let err = serde_json::from_str::<u8>("300").unwrap_err();
        assert_eq!(
            classify(&err).1.to_string(),
            "expected an integer, found an out-of-range number"
        );
        let err = serde_json::from_str::<Value>("{\"a\":").unwrap_err();
        assert_eq!(
            classify(&err).1.to_string(),
            "invalid JSON at column 5: EOF while parsing a value"
        );
    }
    #[test]
    fn each_json_type_is_named_in_wrong_type_errors() {
        let found = |text: &str| {
            let err = serde_json::from_str::<String>(text).unwrap_err();
            classify(&err).1.to_string()
        };
        assert_eq!(found("true"), "expected a string, found a boolean");
        assert_eq!(found("{}"), "expected a string, found an object");
        assert_eq!(found("null"), "expected a string, found null");
        assert_eq!(found("[1]"), "expected a string, found an array");
        assert_eq!(found("1.5"), "expected a string, found a number");
    }

    #[test]
    fn expected_types_are_named_in_the_words_of_json() {
        assert_eq!(expected_name("struct RawAuth"), "an object");
        assert_eq!(expected_name("a map"), "an object");
        assert_eq!(expected_name("map"), "an object");
        assert_eq!(expected_name("u32"), "an integer");
        assert_eq!(expected_name("a string"), "a string");
    }

    #[test]
    fn syntax_errors_are_told_from_valid_json() {
        assert_eq!(
            syntax_error("{oops").map(|k| k.to_string()).as_deref(),
            Some("invalid JSON at column 2: key must be a string")
        );
        assert!(syntax_error(r#"{"hello":1}"#).is_none());
    }

    #[test]
    fn both_statuses_are_read() {
        assert_eq!(status("enabled").ok(), Some(Status::Enabled));
        assert_eq!(status("disabled").ok(), Some(Status::Disabled));
        assert_eq!(status("Disabled").ok(), Some(Status::Disabled));
        assert_eq!(status("ENABLED").ok(), Some(Status::Enabled));
        assert!(status("enable").is_err());
    }

    #[test]
    fn dollar_keys_the_service_writes_are_metadata_and_others_refused() {
        // `$etag` in tags is in Microsoft's own twin samples.
        let line = super::super::parse_export_line(
            "f",
            1,
            r#"{"id":"d","status":"enabled","tags":{"$etag":"AAE=","$version":1,"$metadata":{},"a":1}}"#,
        )
        .map(|l| l.entity.tags.keys().cloned().collect::<Vec<_>>());
        assert_eq!(line.ok(), Some(vec!["a".to_owned()]));
        for (text, field) in [
            (
                r#"{"id":"d","status":"enabled","tags":{"$mine":1}}"#,
                "tags.$mine",
            ),
            (
                r#"{"id":"d","status":"enabled","properties":{"desired":{"$etag":1}}}"#,
                "properties.desired.$etag",
            ),
            (
                r#"{"id":"d","status":"enabled","tags":{"a":{"$etag":1}}}"#,
                "tags.a.$etag",
            ),
        ] {
            let err = super::super::parse_export_line("f", 1, text).err();
            assert_eq!(err.and_then(|e| e.field).as_deref(), Some(field));
        }
        let line = super::super::parse_export_line(
            "f",
            1,
            r#"{"id":"d","status":"enabled","properties":{"desired":{"$version":3,"$metadata":{},"a":1}}}"#,
        )
        .map(|l| l.entity.desired.keys().cloned().collect::<Vec<_>>());
        assert_eq!(line.ok(), Some(vec!["a".to_owned()]));
    }
    #[test]
    fn properties_and_sections_must_be_objects_or_null() {
        let parse = |text: &str| {
            super::super::parse_export_line("f", 1, text)
                .map(|l| (l.entity.desired.len(), l.entity.reported.len()))
                .map_err(|e| (e.field, e.kind.to_string()))
        };
        let head = r#"{"id":"d","status":"enabled","#;
        assert_eq!(
            parse(&format!(r#"{head}"properties":5}}"#)),
            Err((
                Some("properties".to_owned()),
                "expected an object, found a number".to_owned()
            ))
        );
        assert_eq!(
            parse(&format!(r#"{head}"properties":{{"desired":"x"}}}}"#)),
            Err((
                Some("properties.desired".to_owned()),
                "expected an object, found a string".to_owned()
            ))
        );
        assert_eq!(
            parse(&format!(r#"{head}"properties":null,"tags":null}}"#)),
            Ok((0, 0))
        );
        assert_eq!(
            parse(&format!(
                r#"{head}"properties":{{"desired":{{"a":1}},"reported":{{"b":2,"c":3}},"other":1}}}}"#
            )),
            Ok((1, 2))
        );
    }

    #[test]
    fn a_key_given_twice_at_any_depth_is_named_by_its_path() {
        let dup = |text: &str| parse_unique_keys(text).err().and_then(Result::ok);
        assert_eq!(
            dup(r#"{"version":1,"version":2}"#).as_deref(),
            Some("version")
        );
        assert_eq!(
            dup(r#"{"tags":{"a":[{"x":1},{"y":1,"y":1}]}}"#).as_deref(),
            Some("tags.a.1.y")
        );
        let value = parse_unique_keys(r#"{"a":[1,2.5,"x",null,true],"b":{"a":{}}}"#).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"a":[1,2.5,"x",null,true],"b":{"a":{}}})
        );
        assert!(matches!(parse_unique_keys(r#"{"a":1} x"#), Err(Err(_))));
        assert!(matches!(parse_unique_keys(r#"{"a":"#), Err(Err(_))));
    }
}
