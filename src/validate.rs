//! IoT Hub's limits on identities and twins, checked before anything is
//! merged.
//!
//! Every reader runs `validate_entity` on each line, so state that a hub
//! would refuse never enters a merge and never reaches an import plan. The
//! limits are IoT Hub's:
//!
//! - device and module ids: 1-128 characters of ASCII letters, digits and
//!   `- . % _ * ? ! ( ) , : = @ $ '`; `+ # ;` of older API versions are
//!   accepted on read but never generated
//!   ([`validate_new_id`]);
//! - twin keys: UTF-8, up to 1 KB, no control characters (C0, C1), no `.`,
//!   `$` or space;
//! - twin values: integers within −4503599627370496..=4503599627370495,
//!   strings up to 4 KB; arrays are accepted;
//! - depth at most 10 in `tags`, `desired` and `reported`;
//! - section size (the sum of key and value lengths, numbers 8 bytes,
//!   booleans 4): `tags` 8 KB, `desired` and `reported` 32 KB each;
//! - `statusReason` up to 128 characters.
//!
//! Errors name the device, the module and the path, never a value: twin
//! values and keys of `authentication` stay out of messages.

use std::fmt;

use serde_json::Value;
use thiserror::Error;

use crate::doc::{DeviceSnapshot, Entity, JsonMap};

/// The longest device or module id, in characters.
pub(crate) const MAX_ID_CHARS: usize = 128;
/// The longest twin key, in bytes of UTF-8.
pub(crate) const MAX_KEY_BYTES: usize = 1024;
/// The longest twin string value, in bytes of UTF-8.
pub(crate) const MAX_STRING_BYTES: usize = 4096;
/// The largest twin integer.
pub(crate) const MAX_INTEGER: i64 = 4_503_599_627_370_495;
/// The smallest twin integer.
pub(crate) const MIN_INTEGER: i64 = -4_503_599_627_370_496;
/// The deepest nesting of objects in a twin section (a key directly in the
/// section is at depth 1).
pub(crate) const MAX_DEPTH: usize = 10;
/// The longest `statusReason`, in characters.
pub(crate) const MAX_STATUS_REASON_CHARS: usize = 128;

pub use crate::doc::Section;

/// The size limit of a twin section in bytes, counted as IoT Hub counts
/// it (see `check_entries`): `tags` 8 KB, `desired` and `reported` 32 KB
/// each.
pub(crate) fn max_section_bytes(section: Section) -> usize {
    match section {
        Section::Tags => 8 * 1024,
        Section::Desired | Section::Reported => 32 * 1024,
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.path())
    }
}

/// What is wrong, without saying where: [`ValidationError`] adds the
/// device, module and path.
///
/// # Example
///
/// ```
/// use failback::validate::{validate_new_id, ValidationErrorKind};
///
/// assert_eq!(validate_new_id(""), Err(ValidationErrorKind::EmptyId));
/// let error = validate_new_id("thermostat 7").unwrap_err();
/// assert_eq!(error, ValidationErrorKind::IdChar { ch: ' ' });
/// assert_eq!(error.to_string(), "id contains the forbidden character ' '");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ValidationErrorKind {
    /// A device or module id is empty.
    #[error("id is empty")]
    EmptyId,
    /// A device or module id is longer than 128 characters.
    #[error("id is {chars} characters long, the limit is {MAX_ID_CHARS}")]
    IdTooLong {
        /// Its length in characters.
        chars: usize,
    },
    /// A device or module id holds a character IoT Hub does not allow.
    #[error("id contains the forbidden character {ch:?}")]
    IdChar {
        /// The first forbidden character.
        ch: char,
    },
    /// A twin key is longer than 1 KB.
    #[error("key is {bytes} bytes long, the limit is {MAX_KEY_BYTES}")]
    KeyTooLong {
        /// Its length in bytes.
        bytes: usize,
    },
    /// A twin key holds `.`, `$`, a space or a control character.
    #[error("key contains the forbidden character {ch:?}")]
    KeyChar {
        /// The first forbidden character.
        ch: char,
    },
    /// A twin integer is beyond ±4503599627370495.
    #[error("integer is outside {MIN_INTEGER}..={MAX_INTEGER}")]
    IntegerOutOfRange,
    /// A twin string value is longer than 4 KB.
    #[error("string value is {bytes} bytes long, the limit is {MAX_STRING_BYTES}")]
    StringTooLong {
        /// Its length in bytes.
        bytes: usize,
    },
    /// Objects nest deeper than 10 levels.
    #[error("nesting is deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A twin section is over its size limit.
    #[error("{section} is {bytes} bytes, the limit is {limit}")]
    SectionTooLarge {
        /// The section.
        section: Section,
        /// Its size, counted as IoT Hub counts it.
        bytes: usize,
        /// Its limit.
        limit: usize,
    },
    /// `statusReason` is longer than 128 characters.
    #[error("statusReason is {chars} characters long, the limit is {MAX_STATUS_REASON_CHARS}")]
    StatusReasonTooLong {
        /// Its length in characters.
        chars: usize,
    },
}

/// A limit broken by one device or module, with the path where.
///
/// Displays as `device "d1" module "m1" field "properties.desired.a": <reason>`.
///
/// # Example
///
/// ```
/// use failback::doc::{DeviceSnapshot, Entity};
/// use failback::validate::{validate_snapshot, ValidationErrorKind};
///
/// let mut snapshot = DeviceSnapshot { id: "edge-gw".into(), ..Default::default() };
/// let mut camera = Entity::default();
/// camera.desired.insert("fps.max".into(), 30.into());
/// snapshot.modules.insert("camera".into(), camera);
/// let error = validate_snapshot(&snapshot).unwrap_err();
/// assert_eq!((error.module.as_deref(), error.path.as_str()), (Some("camera"), "properties.desired.fps.max"));
/// assert_eq!(error.kind, ValidationErrorKind::KeyChar { ch: '.' });
/// assert_eq!(error.to_string(), r#"device "edge-gw" module "camera" field "properties.desired.fps.max": key contains the forbidden character '.'"#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{}", self.display())]
pub struct ValidationError {
    /// The device id.
    pub device: String,
    /// The module id, for a module.
    pub module: Option<String>,
    /// Where: `id`, `moduleId`, `statusReason`, or a dotted twin path such
    /// as `properties.desired.a.b` (array elements as `[i]`).
    pub path: String,
    /// What is wrong.
    pub kind: ValidationErrorKind,
}

impl ValidationError {
    fn display(&self) -> String {
        let mut out = format!("device {}", shown_id(&self.device));
        if let Some(module) = &self.module {
            out.push_str(&format!(" module {}", shown_id(module)));
        }
        out.push_str(&format!(" field {:?}: {}", self.path, self.kind));
        out
    }
}

/// An id for a message: quoted and escaped, cut after 128 characters so a
/// too-long id stays readable.
pub(crate) fn shown_id(id: &str) -> String {
    match id.char_indices().nth(MAX_ID_CHARS) {
        Some((cut, _)) => format!("{:?}...", id.get(..cut).unwrap_or(id)),
        None => format!("{id:?}"),
    }
}

/// Checks a device or module id as read from a hub: 1-128 characters of
/// ASCII letters, digits and `- . % _ * ? ! ( ) , : = @ $ '`, plus the
/// `+ # ;` of older API versions.
///
/// # Errors
///
/// [`ValidationErrorKind::EmptyId`], [`ValidationErrorKind::IdTooLong`] or
/// [`ValidationErrorKind::IdChar`].
pub(crate) fn validate_id(id: &str) -> Result<(), ValidationErrorKind> {
    check_id(id, |c| is_new_id_char(c) || matches!(c, '+' | '#' | ';'))
}

/// Checks an id this crate would create: as `validate_id` but without the
/// legacy `+ # ;`.
///
/// # Errors
///
/// As `validate_id`.
///
/// # Example
///
/// ```
/// use failback::validate::validate_new_id;
///
/// assert!(validate_new_id("sensor-01").is_ok());
/// assert!(validate_new_id("legacy#1").is_err());
/// ```
pub fn validate_new_id(id: &str) -> Result<(), ValidationErrorKind> {
    check_id(id, is_new_id_char)
}

fn is_new_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.'
                | '%'
                | '_'
                | '*'
                | '?'
                | '!'
                | '('
                | ')'
                | ','
                | ':'
                | '='
                | '@'
                | '$'
                | '\''
        )
}

fn check_id(id: &str, allowed: impl Fn(char) -> bool) -> Result<(), ValidationErrorKind> {
    if id.is_empty() {
        return Err(ValidationErrorKind::EmptyId);
    }
    if let Some(ch) = id.chars().find(|&c| !allowed(c)) {
        return Err(ValidationErrorKind::IdChar { ch });
    }
    // Every allowed character is ASCII, so bytes are characters here.
    if id.len() > MAX_ID_CHARS {
        return Err(ValidationErrorKind::IdTooLong { chars: id.len() });
    }
    Ok(())
}

/// Checks one twin key: up to 1 KB of UTF-8, no control character (C0,
/// C1), no `.`, `$` or space.
///
/// # Errors
///
/// [`ValidationErrorKind::KeyTooLong`] or [`ValidationErrorKind::KeyChar`].
pub(crate) fn validate_key(key: &str) -> Result<(), ValidationErrorKind> {
    if key.len() > MAX_KEY_BYTES {
        return Err(ValidationErrorKind::KeyTooLong { bytes: key.len() });
    }
    // Most keys are plain ASCII: checked a byte at a time, not decoded.
    if key
        .bytes()
        .all(|b| b > b' ' && b < 0x7f && b != b'.' && b != b'$')
    {
        return Ok(());
    }
    match key
        .chars()
        .find(|&c| c.is_control() || matches!(c, '.' | '$' | ' '))
    {
        Some(ch) => Err(ValidationErrorKind::KeyChar { ch }),
        None => Ok(()),
    }
}

/// Checks one twin section: keys, values, depth and size.
///
/// The section must not hold `$metadata` or `$version` any more: readers
/// take them out first. The first error in key order is returned, with its
/// path from the twin's root (`tags.a.b`, `properties.desired.x[2].y`).
///
/// # Errors
///
/// The path and the [`ValidationErrorKind`] of the first broken limit.
pub(crate) fn validate_section(
    section: Section,
    map: &JsonMap,
) -> Result<(), (String, ValidationErrorKind)> {
    validate_section_entries(section, map.iter())
}

/// [`validate_section`] on a section's properties as `entries`, in key
/// order: a reader checking a section it has not built yet passes the
/// entries of the value it would build it from, `$metadata` and the
/// like left out.
pub(crate) fn validate_section_entries<'a>(
    section: Section,
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
) -> Result<(), (String, ValidationErrorKind)> {
    let bytes = check_entries(entries, 1).map_err(|broken| broken.at(section.path()))?;
    section_fits(section, bytes)
}

/// Whether a section of `bytes` (as [`check_entries`] counts them) is
/// within its limit.
fn section_fits(section: Section, bytes: usize) -> Result<(), (String, ValidationErrorKind)> {
    let limit = max_section_bytes(section);
    if bytes > limit {
        return Err((
            section.path().to_owned(),
            ValidationErrorKind::SectionTooLarge {
                section,
                bytes,
                limit,
            },
        ));
    }
    Ok(())
}

/// Checks every entry (keys, values, depth) and returns their size as IoT
/// Hub counts it: the sum over every property of its key's length and its
/// value's length (strings by their UTF-8 bytes, numbers 8, booleans 4,
/// `null` 0, objects and arrays by what they hold). One walk of the tree
/// does both.
fn check_entries<'a>(
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
    depth: usize,
) -> Result<usize, Broken> {
    let mut size = 0usize;
    for (key, value) in entries {
        let checked = match validate_key(key) {
            Err(kind) => Err(Broken::new(kind)),
            Ok(()) if depth > MAX_DEPTH => Err(Broken::new(ValidationErrorKind::TooDeep)),
            Ok(()) => check_value(value, depth),
        };
        let value_size = checked.map_err(|broken| broken.in_key(key))?;
        size = size.saturating_add(key.len().saturating_add(value_size));
    }
    Ok(size)
}

/// The size of a section as [`check_entries`] counts it, when it breaks
/// no limit but its size.
#[cfg(test)]
pub(crate) fn section_size(map: &JsonMap) -> Option<usize> {
    check_entries(map.iter(), 1).ok()
}

/// Checks `value` and returns its size, as [`check_entries`] counts it.
fn check_value(value: &Value, depth: usize) -> Result<usize, Broken> {
    match value {
        Value::Null => Ok(0),
        Value::Bool(_) => Ok(4),
        Value::Number(n) => {
            let in_range = match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => (MIN_INTEGER..=MAX_INTEGER).contains(&i),
                (None, Some(_)) => false,
                // A float: the integer limit does not apply.
                (None, None) => true,
            };
            if !in_range {
                return Err(Broken::new(ValidationErrorKind::IntegerOutOfRange));
            }
            Ok(8)
        }
        Value::String(s) if s.len() > MAX_STRING_BYTES => {
            Err(Broken::new(ValidationErrorKind::StringTooLong {
                bytes: s.len(),
            }))
        }
        Value::String(s) => Ok(s.len()),
        Value::Array(items) => {
            let mut size = 0usize;
            for (i, item) in items.iter().enumerate() {
                let item_size = check_value(item, depth).map_err(|broken| broken.in_item(i))?;
                size = size.saturating_add(item_size);
            }
            Ok(size)
        }
        Value::Object(map) => check_entries(map.iter(), depth + 1),
    }
}

/// A broken limit inside a section, and the path to it, written as the
/// error unwinds (so a valid twin builds no path): the innermost part
/// first.
struct Broken {
    kind: ValidationErrorKind,
    path: Vec<String>,
}

impl Broken {
    fn new(kind: ValidationErrorKind) -> Self {
        Self {
            kind,
            path: Vec::new(),
        }
    }

    fn in_key(mut self, key: &str) -> Self {
        self.path.push(format!(".{key}"));
        self
    }

    fn in_item(mut self, index: usize) -> Self {
        self.path.push(format!("[{index}]"));
        self
    }

    /// The path from `root`, and the kind.
    fn at(self, root: &str) -> (String, ValidationErrorKind) {
        let mut path = root.to_owned();
        for part in self.path.iter().rev() {
            path.push_str(part);
        }
        (path, self.kind)
    }
}

/// Checks a `statusReason`: at most 128 characters.
///
/// # Errors
///
/// [`ValidationErrorKind::StatusReasonTooLong`].
pub(crate) fn validate_status_reason(reason: &str) -> Result<(), ValidationErrorKind> {
    let chars = reason.chars().count();
    if chars > MAX_STATUS_REASON_CHARS {
        return Err(ValidationErrorKind::StatusReasonTooLong { chars });
    }
    Ok(())
}

/// Checks one device or module: its ids, `statusReason` and the three twin
/// sections.
///
/// # Errors
///
/// The first broken limit, naming the device, the module and the path.
pub(crate) fn validate_entity(
    device: &str,
    module: Option<&str>,
    entity: &Entity,
) -> Result<(), ValidationError> {
    let error = |path: String, kind| ValidationError {
        device: device.to_owned(),
        module: module.map(str::to_owned),
        path,
        kind,
    };
    validate_id(device).map_err(|kind| error("id".into(), kind))?;
    if let Some(module) = module {
        validate_id(module).map_err(|kind| error("moduleId".into(), kind))?;
    }
    if let Some(reason) = entity.status.as_ref().and_then(|s| s.reason.as_deref()) {
        validate_status_reason(reason).map_err(|kind| error("statusReason".into(), kind))?;
    }
    for (section, map) in [
        (Section::Tags, &entity.tags),
        (Section::Desired, &entity.desired),
        (Section::Reported, &entity.reported),
    ] {
        let checked = match map.checked_size() {
            // Its reader found every other limit kept, and counted it.
            Some(bytes) => section_fits(section, bytes),
            None => validate_section(section, map),
        };
        checked.map_err(|(path, kind)| error(path, kind))?;
    }
    Ok(())
}

/// Checks a device and each of its modules with `validate_entity`.
///
/// # Errors
///
/// The first broken limit, the device before its modules, modules in id
/// order.
///
/// # Example
///
/// ```
/// use failback::doc::DeviceSnapshot;
/// use failback::validate::validate_snapshot;
///
/// let snapshot = DeviceSnapshot { id: "x".repeat(129), ..Default::default() };
/// assert!(validate_snapshot(&snapshot).is_err());
/// ```
pub fn validate_snapshot(snapshot: &DeviceSnapshot) -> Result<(), ValidationError> {
    validate_entity(&snapshot.id, None, &snapshot.device)?;
    for (module, entity) in &snapshot.modules {
        validate_entity(&snapshot.id, Some(module), entity)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// The size of a section as IoT Hub counts it, written apart from the
    /// checks: what the one walk of `check_entries` must give.
    fn section_size(section: &JsonMap) -> usize {
        section
            .iter()
            .map(|(key, value)| key.len().saturating_add(value_size(value)))
            .fold(0, usize::saturating_add)
    }

    fn value_size(value: &Value) -> usize {
        match value {
            Value::Null => 0,
            Value::Bool(_) => 4,
            Value::Number(_) => 8,
            Value::String(s) => s.len(),
            Value::Array(items) => items.iter().map(value_size).fold(0, usize::saturating_add),
            Value::Object(map) => section_size(map),
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-1000i64..1000).prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-zé]{1,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn one_walk_counts_what_the_size_rule_counts(
            section in prop::collection::btree_map("[a-zé_]{1,6}", json_value(), 0..6)
        ) {
            let section: JsonMap = section.into_iter().collect();
            let counted = check_entries(section.iter(), 1).map_err(|b| b.at("tags"));
            prop_assert_eq!(counted, Ok(section_size(&section)));
        }

        #[test]
        fn the_ascii_short_cut_judges_keys_as_the_characters_do(key in "[\\x00-\\x7f]{0,6}|\\PC{0,4}") {
            let by_chars = match key.chars().find(|&c| c.is_control() || matches!(c, '.' | '$' | ' ')) {
                Some(ch) => Err(ValidationErrorKind::KeyChar { ch }),
                None => Ok(()),
            };
            prop_assert_eq!(validate_key(&key), by_chars);
        }
    }

    fn map(value: Value) -> JsonMap {
        match value {
            Value::Object(map) => map,
            _ => JsonMap::new(),
        }
    }

    fn nested(depth: usize) -> JsonMap {
        let mut value = json!(1);
        for _ in 0..depth {
            value = json!({ "k": value });
        }
        map(value)
    }

    #[test]
    fn ids() {
        assert!(validate_id(&"a".repeat(128)).is_ok());
        assert_eq!(
            validate_id(&"a".repeat(129)),
            Err(ValidationErrorKind::IdTooLong { chars: 129 })
        );
        assert_eq!(validate_id(""), Err(ValidationErrorKind::EmptyId));
        assert!(validate_id("a-.%_*?!(),:=@$'Z9").is_ok());
        for legacy in ["+", "#", ";"] {
            assert!(validate_id(legacy).is_ok());
            assert!(validate_new_id(legacy).is_err());
        }
        for bad in ["a/b", "é", "a\u{0}", "a\"b"] {
            assert!(
                matches!(validate_id(bad), Err(ValidationErrorKind::IdChar { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys() {
        assert!(validate_key(&"é".repeat(512)).is_ok());
        assert_eq!(
            validate_key(&"é".repeat(513)),
            Err(ValidationErrorKind::KeyTooLong { bytes: 1026 })
        );
        for (key, ch) in [
            ("a.b", '.'),
            ("$x", '$'),
            ("a b", ' '),
            ("a\u{85}", '\u{85}'),
            ("é\u{1}", '\u{1}'),
            ("é.", '.'),
            ("a\u{7f}", '\u{7f}'),
            ("a\tb", '\t'),
            ("ab\u{0}", '\u{0}'),
        ] {
            assert_eq!(validate_key(key), Err(ValidationErrorKind::KeyChar { ch }));
        }
    }

    #[test]
    fn integers_at_the_limits() {
        let ok = map(json!({"hi": MAX_INTEGER, "lo": MIN_INTEGER, "f": 1e300}));
        assert!(validate_section(Section::Tags, &ok).is_ok());
        for bad in [
            json!({"v": MAX_INTEGER + 1}),
            json!({"v": MIN_INTEGER - 1}),
            json!({"v": u64::MAX}),
        ] {
            assert_eq!(
                validate_section(Section::Tags, &map(bad)),
                Err(("tags.v".into(), ValidationErrorKind::IntegerOutOfRange))
            );
        }
    }

    #[test]
    fn depth_ten_passes_eleven_fails() {
        assert!(validate_section(Section::Desired, &nested(10)).is_ok());
        let (path, kind) = validate_section(Section::Desired, &nested(11)).unwrap_err();
        assert_eq!(kind, ValidationErrorKind::TooDeep);
        assert_eq!(path, format!("properties.desired{}", ".k".repeat(11)));
    }

    #[test]
    fn arrays_are_values_and_their_objects_are_checked() {
        let ok = map(json!({"a": [1, "x", {"b": [true]}]}));
        assert!(validate_section(Section::Reported, &ok).is_ok());
        let bad = map(json!({"a": [1, {"b.c": 1}]}));
        assert_eq!(
            validate_section(Section::Reported, &bad),
            Err((
                "properties.reported.a[1].b.c".into(),
                ValidationErrorKind::KeyChar { ch: '.' }
            ))
        );
    }

    #[test]
    fn strings_and_sections() {
        let at_limit = map(json!({"s": "x".repeat(MAX_STRING_BYTES)}));
        assert!(validate_section(Section::Desired, &at_limit).is_ok());
        let over = map(json!({"s": "x".repeat(MAX_STRING_BYTES + 1)}));
        assert!(matches!(
            validate_section(Section::Desired, &over),
            Err((_, ValidationErrorKind::StringTooLong { bytes: 4097 }))
        ));
        // Two 4000-byte values with 1-byte keys: 8002 bytes, under 8192.
        let mut tags = JsonMap::new();
        tags.insert("a".into(), json!("x".repeat(4000)));
        tags.insert("b".into(), json!("x".repeat(4000)));
        assert!(validate_section(Section::Tags, &tags).is_ok());
        tags.insert("c".into(), json!("x".repeat(200)));
        assert_eq!(
            validate_section(Section::Tags, &tags),
            Err((
                "tags".into(),
                ValidationErrorKind::SectionTooLarge {
                    section: Section::Tags,
                    bytes: 8203,
                    limit: 8192
                }
            ))
        );
        assert!(validate_section(Section::Desired, &tags).is_ok());
    }

    #[test]
    fn entity_errors_name_device_module_and_path() {
        let entity = Entity {
            status: Some(crate::doc::StatusValue {
                status: crate::doc::Status::Disabled,
                reason: Some("r".repeat(129)),
            }),
            ..Entity::default()
        };
        let err = validate_entity("d1", None, &entity).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"device "d1" field "statusReason": statusReason is 129 characters long, the limit is 128"#
        );
        let err = validate_entity("d1", Some("bad/module"), &Entity::default()).unwrap_err();
        assert_eq!(err.path, "moduleId");
        assert_eq!(err.module.as_deref(), Some("bad/module"));
    }
    #[test]
    fn a_section_exactly_at_its_limit_passes() {
        // "a" (1 byte) + 8191 bytes of string = 8192, the tags limit; but a
        // string is at most 4096 bytes, so split it over two keys.
        let mut tags = JsonMap::new();
        tags.insert("a".into(), json!("x".repeat(4095)));
        tags.insert("b".into(), json!("x".repeat(4095)));
        assert_eq!(section_size(&tags), 8192);
        assert_eq!(validate_section(Section::Tags, &tags), Ok(()));
        tags.insert("c".into(), Value::Null);
        assert_eq!(
            validate_section(Section::Tags, &tags),
            Err((
                "tags".into(),
                ValidationErrorKind::SectionTooLarge {
                    section: Section::Tags,
                    bytes: 8193,
                    limit: 8192
                }
            ))
        );
    }

    #[test]
    fn section_size_counts_each_kind_of_value() {
        // "n" 1 + null 0, "b" 1 + 4, "i" 1 + 8, "s" 1 + 3,
        // "a" 1 + (8 + 4), "o" 1 + ("k" 1 + "vv" 2)
        let section = map(json!({
            "n": null, "b": false, "i": 1.5, "s": "abc", "a": [7, true], "o": {"k": "vv"}
        }));
        assert_eq!(
            section_size(&section),
            1 + 1 + 4 + 1 + 8 + 1 + 3 + 1 + 12 + 1 + 3
        );
    }

    #[test]
    fn a_status_reason_of_128_characters_passes() {
        assert_eq!(validate_status_reason(&"é".repeat(128)), Ok(()));
        assert_eq!(
            validate_status_reason(&"é".repeat(129)),
            Err(ValidationErrorKind::StatusReasonTooLong { chars: 129 })
        );
    }

    #[test]
    fn a_section_displays_as_its_path() {
        assert_eq!(Section::Tags.to_string(), "tags");
        assert_eq!(Section::Desired.to_string(), "properties.desired");
        assert_eq!(
            ValidationErrorKind::SectionTooLarge {
                section: Section::Reported,
                bytes: 40000,
                limit: 32768
            }
            .to_string(),
            "properties.reported is 40000 bytes, the limit is 32768"
        );
    }

    #[test]
    fn a_snapshot_is_checked_device_first_then_modules_in_order() {
        let mut snapshot = DeviceSnapshot {
            id: "edge-1".into(),
            ..DeviceSnapshot::default()
        };
        assert_eq!(validate_snapshot(&snapshot), Ok(()));
        let mut bad = Entity::default();
        bad.tags.insert("a.b".into(), json!(1));
        snapshot.modules.insert("m2".into(), bad.clone());
        snapshot.modules.insert("m1".into(), Entity::default());
        snapshot.modules.insert("m3".into(), bad.clone());
        let err = validate_snapshot(&snapshot).unwrap_err();
        assert_eq!(
            (err.module.as_deref(), err.path.as_str()),
            (Some("m2"), "tags.a.b")
        );
        snapshot.device = bad;
        let err = validate_snapshot(&snapshot).unwrap_err();
        assert_eq!((err.module, err.path.as_str()), (None, "tags.a.b"));
    }
}
