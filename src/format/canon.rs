//! A twin section read straight into the text it is written as.
//!
//! A merge reads three copies of most twins and writes one, and most of
//! them it never looks into: built as trees, they cost most of the reading
//! (a node, a key and a value allocated per property, then dropped), and
//! comparing them walks every node. [`SectionText`] writes a section as it
//! is read, in the bytes [`write_map`](super::write::write_map) gives the
//! object serde_json would build from it (keys sorted, each once, the last
//! of a repeated nested key kept, numbers and strings as serde_json writes
//! them), and checks the limits [`validate`](crate::validate) checks on the
//! way, counting the size it would count. The object is built from the text
//! only when something reads it.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use super::raw::Key;
use super::write::write_str;
use crate::doc::SectionMap;
use crate::validate::{MAX_DEPTH, MAX_INTEGER, MAX_STRING_BYTES, MIN_INTEGER, validate_key};

/// A section being written as it is read: its top-level properties are
/// added one by one with [`SectionText::property`].
pub(crate) struct SectionText<'de> {
    /// The text so far, from its `{`.
    out: Vec<u8>,
    /// `[start, key end, end]` in `out` of each property of the objects
    /// being written, outermost first.
    entries: Vec<[usize; 3]>,
    /// The size of the top-level properties, as `validate` counts it.
    size: usize,
    /// Whether every limit held (when not, `validate` finds which).
    ok: bool,
    /// Whether the top-level keys came in order.
    sorted: bool,
    /// The last top-level key.
    last: Option<Cow<'de, str>>,
}

impl<'de> SectionText<'de> {
    pub(crate) fn new() -> Self {
        let mut out = Vec::with_capacity(512);
        out.push(b'{');
        Self {
            out,
            entries: Vec::new(),
            size: 0,
            ok: true,
            sorted: true,
            last: None,
        }
    }

    /// Reads the value of top-level property `key` from `map` and adds it;
    /// `Ok(false)` when the section already holds `key` (nothing added).
    pub(crate) fn property<A: MapAccess<'de>>(
        &mut self,
        key: Cow<'de, str>,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        let mark = self.out.len();
        // Top-level keys are at depth 1, never too deep.
        let ([start, key_end, end], size) = self.entry(&key, 1, 0, map)?;
        // Once the keys are out of order, any of them may come again.
        if !self.sorted || self.last.as_ref().is_some_and(|last| *key <= **last) {
            // Keys are written alike exactly when they are equal.
            let new = &self.out[start..key_end];
            if self.entries.iter().any(|e| &self.out[e[0]..e[1]] == new) {
                self.out.truncate(mark);
                return Ok(false);
            }
            self.sorted = false;
        }
        self.size = self.size.saturating_add(size);
        self.entries.push([start, key_end, end]);
        self.last = Some(key);
        Ok(true)
    }

    /// Writes `key` and the value `map` holds for it as a property of the
    /// object whose properties start at `entries[base]` (after a comma
    /// unless it is the first), a key at `depth`: its `[start, key end,
    /// end]` in `out`, and its size as `validate` counts it.
    fn entry<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        depth: usize,
        base: usize,
        map: &mut A,
    ) -> Result<([usize; 3], usize), A::Error> {
        if self.entries.len() > base {
            self.out.push(b',');
        }
        let start = self.out.len();
        push_str(&mut self.out, key);
        let key_end = self.out.len();
        self.out.push(b':');
        if depth > MAX_DEPTH || validate_key(key).is_err() {
            self.ok = false;
        }
        let value = map.next_value_seed(Canon {
            text: &mut *self,
            depth,
        })?;
        let size = key.len().saturating_add(value);
        Ok(([start, key_end, self.out.len()], size))
    }

    /// The section: its text, and its size when every limit held.
    pub(crate) fn finish(mut self) -> SectionMap {
        if !self.sorted {
            self.sort_object(1, 0);
        }
        self.out.push(b'}');
        SectionMap::from_text(self.out.into_boxed_slice(), self.ok.then_some(self.size))
    }

    /// Puts the properties `entries[base..]` of the object whose text
    /// starts at `out[from]` (after its `{`) in key order, keeping the last
    /// of equal keys; whether there were equal keys.
    fn sort_object(&mut self, from: usize, base: usize) -> bool {
        let mut order: Vec<[usize; 3]> = self.entries[base..].to_vec();
        // Stable: equal keys keep their reading order, the last one last.
        order.sort_by(|a, b| key_order(&self.out[a[0]..a[1]], &self.out[b[0]..b[1]]));
        let before = order.len();
        // Of a run of equal keys, keep the last.
        let mut kept: Vec<[usize; 3]> = Vec::with_capacity(before);
        for entry in order {
            let key = &self.out[entry[0]..entry[1]];
            match kept.last_mut() {
                Some(last) if self.out[last[0]..last[1]] == *key => *last = entry,
                _ => kept.push(entry),
            }
        }
        let mut sorted = Vec::with_capacity(self.out.len() - from);
        for (i, &[start, _, end]) in kept.iter().enumerate() {
            if i > 0 {
                sorted.push(b',');
            }
            sorted.extend_from_slice(&self.out[start..end]);
        }
        self.out.truncate(from);
        self.out.extend_from_slice(&sorted);
        kept.len() != before
    }
}

/// The order of two keys written as JSON strings: that of the keys.
fn key_order(a: &[u8], b: &[u8]) -> Ordering {
    if !a.contains(&b'\\') && !b.contains(&b'\\') {
        // Written between quotes, unescaped.
        return a[1..a.len() - 1].cmp(&b[1..b.len() - 1]);
    }
    let decode = |text: &[u8]| serde_json::from_slice::<String>(text).unwrap_or_default();
    decode(a).cmp(&decode(b))
}

/// Writes `s` as `write_str` does, into a buffer that cannot fail.
fn push_str(out: &mut Vec<u8>, s: &str) {
    write_str(out, s).expect("a Vec takes every write");
}

/// Writes a number as serde_json writes it.
fn push_number(out: &mut Vec<u8>, n: &Number) {
    serde_json::to_writer(out, n).expect("a Vec takes every write");
}

/// The key serde_json's `raw_value` feature gives a meaning: an object
/// holding it, read as a `Value` (as a section's object is built from its
/// text), is the JSON its string holds, or an error. Such an object is
/// refused (IoT Hub refuses keys with `$` too), so that every text written
/// here reads back to the object it was written from.
const RAW_VALUE_KEY: &str = "$serde_json::private::RawValue";

/// One value of a section, written as it is read; its size as `validate`
/// counts it, a value at `depth` (the depth of the key holding it).
struct Canon<'t, 'de> {
    text: &'t mut SectionText<'de>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Canon<'_, 'de> {
    type Value = usize;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Canon<'_, 'de> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<usize, E> {
        self.text
            .out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(4)
    }

    fn visit_i64<E>(self, v: i64) -> Result<usize, E> {
        push_number(&mut self.text.out, &Number::from(v));
        if !(MIN_INTEGER..=MAX_INTEGER).contains(&v) {
            self.text.ok = false;
        }
        Ok(8)
    }

    fn visit_u64<E>(self, v: u64) -> Result<usize, E> {
        push_number(&mut self.text.out, &Number::from(v));
        if v > MAX_INTEGER.unsigned_abs() {
            self.text.ok = false;
        }
        Ok(8)
    }

    fn visit_f64<E>(self, v: f64) -> Result<usize, E> {
        // As serde_json's `Value`: a number it cannot hold is `null`.
        match Number::from_f64(v) {
            Some(n) => {
                push_number(&mut self.text.out, &n);
                Ok(8)
            }
            None => {
                self.text.out.extend_from_slice(b"null");
                Ok(0)
            }
        }
    }

    fn visit_str<E>(self, v: &str) -> Result<usize, E> {
        push_str(&mut self.text.out, v);
        if v.len() > MAX_STRING_BYTES {
            self.text.ok = false;
        }
        Ok(v.len())
    }

    fn visit_unit<E>(self) -> Result<usize, E> {
        self.text.out.extend_from_slice(b"null");
        Ok(0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let Canon { text, depth } = self;
        text.out.push(b'[');
        let mut size = 0usize;
        let mut first = true;
        loop {
            let mark = text.out.len();
            if !std::mem::replace(&mut first, false) {
                text.out.push(b',');
            }
            let seed = Canon {
                text: &mut *text,
                depth,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => size = size.saturating_add(item),
                None => {
                    text.out.truncate(mark);
                    break;
                }
            }
        }
        text.out.push(b']');
        Ok(size)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        let Canon { text, depth } = self;
        let depth = depth + 1;
        text.out.push(b'{');
        let from = text.out.len();
        let base = text.entries.len();
        let mut size = 0usize;
        let mut sorted = true;
        let mut last: Option<Cow<'de, str>> = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key == RAW_VALUE_KEY {
                return Err(de::Error::custom(format_args!(
                    "a key IoT Hub refuses: {RAW_VALUE_KEY}"
                )));
            }
            let (entry, entry_size) = text.entry(&key, depth, base, &mut map)?;
            size = size.saturating_add(entry_size);
            if last.as_ref().is_some_and(|last| *key <= **last) {
                sorted = false;
            }
            text.entries.push(entry);
            last = Some(key);
        }
        // A key given twice: the object keeps the last value, and the size
        // counted both (`validate` counts again from the object).
        if !sorted && text.sort_object(from, base) {
            text.ok = false;
        }
        text.entries.truncate(base);
        text.out.push(b'}');
        Ok(size)
    }
}

/// Writes a whole JSON object as [`SectionText`] does, for tests.
#[cfg(test)]
pub(crate) fn section_of_text(json: &str) -> Result<SectionMap, serde_json::Error> {
    struct Whole;
    impl<'de> Visitor<'de> for Whole {
        type Value = SectionMap;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SectionMap, A::Error> {
            let mut text = SectionText::new();
            while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                if !text.property(key.clone(), &mut map)? {
                    return Err(de::Error::custom(format!("duplicate key {key}")));
                }
            }
            Ok(text.finish())
        }
    }
    let mut de = serde_json::Deserializer::from_str(json);
    let section = de::Deserializer::deserialize_map(&mut de, Whole)?;
    de.end()?;
    Ok(section)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::JsonMap;
    use crate::format::write::write_map;
    use serde_json::Value;

    fn written(map: &JsonMap) -> String {
        let mut out = Vec::new();
        write_map(&mut out, map).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_section_is_written_sorted_with_the_last_of_a_nested_key_given_twice() {
        let json = r#"{ "b": {"y": 1, "x": [true, null, -2, 1.5e3, "\u00e9\n"], "y": 2},
                        "a\"q": "v", "A": {} }"#;
        let section = section_of_text(json).unwrap();
        let map: JsonMap = serde_json::from_str(json).unwrap();
        assert_eq!(section.text(), Some(written(&map).as_bytes()));
        assert_eq!(*section, map);
        // The repeated nested key leaves the size to `validate`.
        assert_eq!(section.checked_size(), None);
        // serde_json reads an object holding this key as the JSON its
        // string holds: refused, nested (a top-level key is only a key).
        for json in [
            r#"{"a": {"$serde_json::private::RawValue": "nope"}}"#,
            r#"{"a": [{"b": 1, "$serde_json::private::RawValue": "{}"}]}"#,
        ] {
            assert!(section_of_text(json).is_err(), "{json}");
        }
        let top = section_of_text(r#"{"$serde_json::private::RawValue": "nope"}"#).unwrap();
        assert_eq!(top.checked_size(), None);
        assert_eq!(top.len(), 1);
        for twice in [
            r#"{"a": 1, "b": 2, "a": 3}"#,
            r#"{"b": 1, "a": 2, "b": 3}"#,
            r#"{"c": 1, "a": 2, "b": 3, "c": 4}"#,
            r#"{"a": 1, "\u0061": 2}"#,
        ] {
            assert!(section_of_text(twice).is_err(), "{twice}");
        }
        // Sorted as the keys read, not as written: `b"` is written `"b\""`,
        // and `\` sorts after `0`; `b` comes before `b!`.
        for json in [
            r#"{"b0": 1, "b\"": 2, "b!": 3, "b": 4}"#,
            r#"{"x": {"b0": 1, "b\"": 2, "b!": 3, "b": 4}}"#,
            r#"{"c": 0, "b\"": 1, "b0": 2}"#,
        ] {
            let map: JsonMap = serde_json::from_str(json).unwrap();
            assert_eq!(
                section_of_text(json).unwrap().text(),
                Some(written(&map).as_bytes())
            );
        }
        assert!(section_of_text("{}").unwrap().is_empty());
    }

    #[test]
    fn limits_broken_anywhere_leave_the_size_unknown() {
        let deep = format!("{{\"a\":{}1{}}}", "{\"b\":".repeat(10), "}".repeat(10));
        for json in [
            r#"{"a.b": 1}"#.to_owned(),
            r#"{"a": {"$b": 1}}"#.to_owned(),
            r#"{"a": [9007199254740992]}"#.to_owned(),
            r#"{"a": -4503599627370497}"#.to_owned(),
            format!(r#"{{"a": "{}"}}"#, "x".repeat(4097)),
            deep,
        ] {
            assert_eq!(
                section_of_text(&json).unwrap().checked_size(),
                None,
                "{json}"
            );
        }
        let kept = section_of_text(r#"{"ab": {"c": [1, "xyz", true, null, 2.5]}}"#).unwrap();
        assert_eq!(kept.checked_size(), Some(2 + 1 + 8 + 3 + 4 + 8));
    }

    #[test]
    fn limits_kept_at_their_bounds_leave_the_size_known() {
        let deep = format!("{}1{}", "{\"b\":".repeat(9), "}".repeat(9));
        let json = format!(
            r#"{{"s": "{}", "n": 4503599627370495, "m": -4503599627370496, "d": {deep}}}"#,
            "x".repeat(4096)
        );
        let map: JsonMap = serde_json::from_str(&json).unwrap();
        let size = crate::validate::section_size(&map);
        assert_eq!(
            size,
            Some(4097 + 9 + 9 + 18),
            "every limit kept, a key at depth 10"
        );
        assert_eq!(section_of_text(&json).unwrap().checked_size(), size);
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        // Keys whose written and read forms sort apart (`b"` is written
        // `"b\""`, and `\` sorts after `0`), and a key that is a prefix of
        // another with a byte below `"` after it.
        let key = prop_oneof![
            "[a-c]{1,2}",
            Just("$x".to_owned()),
            Just("é\"".to_owned()),
            Just("b\"".to_owned()),
            Just("b0".to_owned()),
            Just("b!".to_owned()),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e20f64..1e20).prop_map(Value::from),
            "[a-z\\\\\"\n é]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(12, 64, 5, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((key.clone(), inner), 0..5)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Whatever the order of its keys and however deep, a section read
        /// as text is written as its object is, reads back to it, and
        /// knows its size exactly when `validate` finds every limit kept,
        /// the size `validate` counts.
        #[test]
        fn a_section_read_as_text_is_its_object_written_and_checked(
            value in json_value(),
            reverse in proptest::bool::ANY,
        ) {
            let map = match value {
                Value::Object(map) => map,
                other => JsonMap::from_iter([("k".to_owned(), other)]),
            };
            // The keys in reverse order at every level, or sorted.
            fn text_of(value: &Value, reverse: bool) -> String {
                match value {
                    Value::Object(map) => {
                        let mut entries: Vec<String> = map
                            .iter()
                            .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), text_of(v, reverse)))
                            .collect();
                        if reverse {
                            entries.reverse();
                        }
                        format!("{{ {} }}", entries.join(" , "))
                    }
                    Value::Array(items) => format!(
                        "[{}]",
                        items.iter().map(|v| text_of(v, reverse)).collect::<Vec<_>>().join(",")
                    ),
                    other => other.to_string(),
                }
            }
            let json = text_of(&Value::Object(map.clone()), reverse);
            let section = section_of_text(&json).unwrap();
            let expected = written(&map);
            proptest::prop_assert_eq!(section.text().unwrap_or(b"{}"), expected.as_bytes());
            proptest::prop_assert_eq!(&*section, &map);
            let checked = crate::validate::section_size(&map);
            proptest::prop_assert_eq!(section.checked_size(), checked);
        }
    }
}
