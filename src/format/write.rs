//! Writing one JSON object with its fields in a fixed order.
//!
//! Strings, maps and values are written directly, in the bytes
//! `serde_json::to_writer` gives them: a merge writes every twin of the
//! fleet, and serde_json looks each byte of each string up in its escape
//! table (7% of a merge's instructions, callgrind at 10k devices), where
//! the strings of a twin almost never hold anything to escape.

use std::io::{self, Write};

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::Value;

use crate::doc::{AuthType, Authentication, JsonMap, MetaTree, Secret, SectionMap};

use super::raw::format_time;

/// An object being written, field by field.
pub(crate) struct Obj<'w, W: Write> {
    w: &'w mut W,
    first: bool,
}

impl<'w, W: Write> Obj<'w, W> {
    pub(crate) fn open(w: &'w mut W) -> io::Result<Self> {
        w.write_all(b"{")?;
        Ok(Self { w, first: true })
    }

    pub(crate) fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> io::Result<()> {
        self.name(name)?;
        serde_json::to_writer(&mut *self.w, value)?;
        Ok(())
    }

    /// A field holding a string.
    pub(crate) fn text(&mut self, name: &str, value: &str) -> io::Result<()> {
        self.name(name)?;
        write_str(self.w, value)
    }

    /// A field holding a string, when there is one.
    pub(crate) fn opt_text(&mut self, name: &str, value: Option<&str>) -> io::Result<()> {
        match value {
            Some(value) => self.text(name, value),
            None => Ok(()),
        }
    }

    /// A field holding any JSON value.
    pub(crate) fn value(&mut self, name: &str, value: &Value) -> io::Result<()> {
        self.name(name)?;
        write_value(self.w, value)
    }

    /// A field holding a twin section: its text when it has one.
    pub(crate) fn section(&mut self, name: &str, section: &SectionMap) -> io::Result<()> {
        self.name(name)?;
        write_section(self.w, section)
    }

    /// The `properties` field.
    pub(crate) fn properties(&mut self, properties: &Properties<'_>) -> io::Result<()> {
        self.name("properties")?;
        properties.write(self.w)
    }

    /// The separator before a field, if any, and its name.
    fn name(&mut self, name: &str) -> io::Result<()> {
        if !std::mem::replace(&mut self.first, false) {
            self.w.write_all(b",")?;
        }
        write_str(self.w, name)?;
        self.w.write_all(b":")
    }

    /// A field holding `authentication`, when there is one.
    pub(crate) fn auth(&mut self, name: &str, auth: Option<&Authentication>) -> io::Result<()> {
        match auth {
            Some(auth) => {
                self.name(name)?;
                write_auth(self.w, auth)
            }
            None => Ok(()),
        }
    }

    pub(crate) fn opt<T: Serialize>(&mut self, name: &str, value: Option<T>) -> io::Result<()> {
        match value {
            Some(value) => self.field(name, &value),
            None => Ok(()),
        }
    }

    /// Closes the object and ends the line.
    pub(crate) fn close_line(self) -> io::Result<()> {
        self.w.write_all(b"}\n")
    }
}

/// Writes `s` as a JSON string, in the bytes serde_json writes. A string
/// with nothing to escape (no quote, backslash or control character) is
/// copied whole; any other goes through serde_json.
pub(crate) fn write_str<W: Write + ?Sized>(w: &mut W, s: &str) -> io::Result<()> {
    // Without a short cut, so that the compiler checks many bytes at once.
    let escapes = s
        .bytes()
        .fold(false, |any, b| any | (b < 0x20 || b == b'"' || b == b'\\'));
    if escapes {
        return Ok(serde_json::to_writer(w, s)?);
    }
    w.write_all(b"\"")?;
    w.write_all(s.as_bytes())?;
    w.write_all(b"\"")
}

/// Writes `value` in the bytes `serde_json::to_writer` gives it.
pub(crate) fn write_value<W: Write + ?Sized>(w: &mut W, value: &Value) -> io::Result<()> {
    match value {
        Value::Null => w.write_all(b"null"),
        Value::Bool(true) => w.write_all(b"true"),
        Value::Bool(false) => w.write_all(b"false"),
        Value::Number(n) => Ok(serde_json::to_writer(w, n)?),
        Value::String(s) => write_str(w, s),
        Value::Array(items) => {
            w.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                write_value(w, item)?;
            }
            w.write_all(b"]")
        }
        Value::Object(map) => write_map(w, map),
    }
}

/// Writes `auth` in the bytes its `Serialize` gives: every device line
/// holds one, with two keys serde_json would look up byte by byte.
pub(crate) fn write_auth<W: Write + ?Sized>(w: &mut W, auth: &Authentication) -> io::Result<()> {
    fn pair<W: Write + ?Sized>(
        w: &mut W,
        names: [&[u8]; 2],
        secrets: [&Option<Secret>; 2],
    ) -> io::Result<()> {
        for (name, secret) in names.into_iter().zip(secrets) {
            w.write_all(name)?;
            match secret {
                Some(secret) => write_str(w, secret.expose())?,
                None => w.write_all(b"null")?,
            }
        }
        w.write_all(b"}")
    }
    let mut comma: &[u8] = b"";
    w.write_all(b"{")?;
    if let Some(keys) = &auth.symmetric_key {
        let names: [&[u8]; 2] = [b"\"symmetricKey\":{\"primaryKey\":", b",\"secondaryKey\":"];
        pair(w, names, [&keys.primary_key, &keys.secondary_key])?;
        comma = b",";
    }
    if let Some(prints) = &auth.x509_thumbprint {
        w.write_all(comma)?;
        let names: [&[u8]; 2] = [
            b"\"x509Thumbprint\":{\"primaryThumbprint\":",
            b",\"secondaryThumbprint\":",
        ];
        pair(
            w,
            names,
            [&prints.primary_thumbprint, &prints.secondary_thumbprint],
        )?;
        comma = b",";
    }
    if let Some(kind) = auth.auth_type {
        w.write_all(comma)?;
        w.write_all(match kind {
            AuthType::Sas => b"\"type\":\"sas\"",
            AuthType::SelfSigned => b"\"type\":\"selfSigned\"",
            AuthType::CertificateAuthority => b"\"type\":\"certificateAuthority\"",
            AuthType::None => b"\"type\":\"none\"",
        })?;
    }
    w.write_all(b"}")
}

/// Writes `map` in the bytes `serde_json::to_writer` gives it.
pub(crate) fn write_map<W: Write + ?Sized>(w: &mut W, map: &JsonMap) -> io::Result<()> {
    w.write_all(b"{")?;
    write_entries(w, map)?;
    w.write_all(b"}")
}

/// Writes a twin section as [`write_map`] writes its object: the text it
/// was read as, when it still holds it, is those bytes.
pub(crate) fn write_section<W: Write + ?Sized>(w: &mut W, section: &SectionMap) -> io::Result<()> {
    match section.text() {
        Some(text) => w.write_all(text),
        None => write_map(w, section),
    }
}

/// Writes the entries of `map`, comma-separated, without braces.
fn write_entries<W: Write + ?Sized>(w: &mut W, map: &JsonMap) -> io::Result<()> {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        write_str(w, key)?;
        w.write_all(b":")?;
        write_value(w, value)?;
    }
    Ok(())
}

/// `properties` with its two sections, each with its metadata when given.
pub(crate) struct Properties<'a> {
    pub(crate) desired: Section<'a>,
    pub(crate) reported: Section<'a>,
}

impl Properties<'_> {
    /// Writes the object, in the bytes its `Serialize` gives.
    pub(crate) fn write<W: Write + ?Sized>(&self, w: &mut W) -> io::Result<()> {
        w.write_all(b"{\"desired\":")?;
        self.desired.write(w)?;
        w.write_all(b",\"reported\":")?;
        self.reported.write(w)?;
        w.write_all(b"}")
    }
}

impl Serialize for Properties<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("desired", &self.desired)?;
        map.serialize_entry("reported", &self.reported)?;
        map.end()
    }
}

/// A twin section followed by its `$metadata`, if any.
pub(crate) struct Section<'a> {
    pub(crate) map: &'a SectionMap,
    pub(crate) meta: Option<&'a MetaTree>,
}

impl Serialize for Section<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let meta = self.meta.filter(|m| **m != MetaTree::default());
        let mut map = s.serialize_map(Some(self.map.len() + usize::from(meta.is_some())))?;
        for (key, value) in self.map.iter() {
            map.serialize_entry(key, value)?;
        }
        if let Some(meta) = meta {
            map.serialize_entry("$metadata", &Meta(meta))?;
        }
        map.end()
    }
}

impl Section<'_> {
    fn write<W: Write + ?Sized>(&self, w: &mut W) -> io::Result<()> {
        let meta = self.meta.filter(|m| **m != MetaTree::default());
        let Some(meta) = meta else {
            return write_section(w, self.map);
        };
        match self.map.text() {
            // `{...}` without its `}`.
            Some(text) => w.write_all(&text[..text.len() - 1])?,
            None => {
                w.write_all(b"{")?;
                write_entries(w, self.map)?;
            }
        }
        if !self.map.is_empty() {
            w.write_all(b",")?;
        }
        w.write_all(b"\"$metadata\":")?;
        Meta(meta).write(w)?;
        w.write_all(b"}")
    }
}

/// A metadata node: `$lastUpdated` then its children.
struct Meta<'a>(&'a MetaTree);

impl Meta<'_> {
    fn write<W: Write + ?Sized>(&self, w: &mut W) -> io::Result<()> {
        w.write_all(b"{")?;
        let mut first = true;
        if let Some(time) = self.0.last_updated.and_then(format_time) {
            first = false;
            w.write_all(b"\"$lastUpdated\":")?;
            write_str(w, &time)?;
        }
        for (key, child) in &self.0.children {
            if !std::mem::replace(&mut first, false) {
                w.write_all(b",")?;
            }
            write_str(w, key)?;
            w.write_all(b":")?;
            Meta(child).write(w)?;
        }
        w.write_all(b"}")
    }
}

impl Serialize for Meta<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(time) = self.0.last_updated.and_then(format_time) {
            map.serialize_entry("$lastUpdated", &time)?;
        }
        for (key, child) in &self.0.children {
            map.serialize_entry(key, &Meta(child))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            // Any character, control characters and quotes most often.
            "[\\x00-\\x1f\"\\\\/\\x7f a-zé€😀]{0,12}".prop_map(Value::String),
            any::<String>().prop_map(Value::String),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("[\\x00-\\x7f]{0,4}|\\PC{0,4}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn auth() -> impl Strategy<Value = Authentication> {
        let secret = || {
            prop::option::of(
                prop_oneof!["[A-Za-z0-9+/=]{0,44}", "[\\x00-\\x1f\"\\\\a-z€]{0,6}"]
                    .prop_map(|s| Secret::new(&s)),
            )
        };
        let kind = prop_oneof![
            Just(AuthType::Sas),
            Just(AuthType::SelfSigned),
            Just(AuthType::CertificateAuthority),
            Just(AuthType::None),
        ];
        (
            prop::option::of((secret(), secret())),
            prop::option::of((secret(), secret())),
            prop::option::of(kind),
        )
            .prop_map(|(keys, prints, auth_type)| Authentication {
                symmetric_key: keys.map(|(primary_key, secondary_key)| crate::doc::SymmetricKey {
                    primary_key,
                    secondary_key,
                }),
                x509_thumbprint: prints.map(|(primary_thumbprint, secondary_thumbprint)| {
                    crate::doc::X509Thumbprint {
                        primary_thumbprint,
                        secondary_thumbprint,
                    }
                }),
                auth_type,
            })
    }

    fn meta() -> impl Strategy<Value = MetaTree> {
        let node = prop::option::of(0_i64..4_102_444_800_000).prop_map(|last_updated| MetaTree {
            last_updated,
            children: BTreeMap::new(),
        });
        node.prop_recursive(3, 16, 3, |inner| {
            (
                prop::option::of(0_i64..4_102_444_800_000),
                prop::collection::btree_map("[a-z\"\\\\\\x01]{1,3}", inner, 0..3),
            )
                .prop_map(|(last_updated, children)| MetaTree {
                    last_updated,
                    children,
                })
        })
    }

    fn object(value: Value) -> JsonMap {
        match value {
            Value::Object(map) => map,
            other => JsonMap::from_iter([("v".to_owned(), other)]),
        }
    }

    /// What `write` wrote, against what serde_json writes for `value`.
    fn as_serde_writes<T: Serialize>(
        value: &T,
        write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
    ) -> Result<(), TestCaseError> {
        let mut direct = Vec::new();
        write(&mut direct).unwrap();
        prop_assert_eq!(
            String::from_utf8(direct).unwrap(),
            serde_json::to_string(value).unwrap()
        );
        Ok(())
    }

    proptest! {
        /// The direct writers give the bytes serde_json gives, whatever
        /// the value holds.
        #[test]
        fn values_are_written_as_serde_json_writes_them(value in value()) {
            as_serde_writes(&value, |w| write_value(w, &value))?;
        }

        /// So does the authentication writer, with or without each part.
        #[test]
        fn authentication_is_written_as_serde_writes_it(auth in auth()) {
            as_serde_writes(&auth, |w| write_auth(w, &auth))?;
        }

        #[test]
        fn properties_are_written_as_their_serialize_writes_them(
            desired in value(),
            reported in value(),
            desired_meta in prop::option::of(meta()),
            reported_meta in prop::option::of(meta()),
        ) {
            let (desired, reported) = (object(desired), object(reported));
            // Each section as an object, then as the text it is read as.
            let texts = |map: &JsonMap| {
                let json = serde_json::to_string(map).unwrap();
                [SectionMap::from(map.clone()), crate::format::canon::section_of_text(&json).unwrap()]
            };
            for (desired, reported) in texts(&desired).into_iter().zip(texts(&reported)) {
                let properties = Properties {
                    desired: Section { map: &desired, meta: desired_meta.as_ref() },
                    reported: Section { map: &reported, meta: reported_meta.as_ref() },
                };
                as_serde_writes(&properties, |w| properties.write(w))?;
            }
        }
    }

    #[test]
    fn every_ascii_character_is_written_as_serde_json_writes_it() {
        for b in 0_u8..0x80 {
            let text = format!("a{}b", char::from(b));
            let mut direct = Vec::new();
            write_str(&mut direct, &text).unwrap();
            assert_eq!(direct, serde_json::to_vec(&text).unwrap(), "byte {b:#04x}");
        }
    }

    #[test]
    fn fields_are_written_in_order_with_their_separators() {
        let mut out = Vec::new();
        let mut obj = Obj::open(&mut out).unwrap();
        obj.text("id", "d\"1").unwrap();
        obj.opt_text("moduleId", None).unwrap();
        obj.opt_text("eTag", Some("AAA=")).unwrap();
        obj.section(
            "tags",
            &object(serde_json::json!({"b": [1, 2.5], "a": null})).into(),
        )
        .unwrap();
        obj.value("x", &Value::Bool(true)).unwrap();
        obj.close_line().unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"id\":\"d\\\"1\",\"eTag\":\"AAA=\",\"tags\":{\"a\":null,\"b\":[1,2.5]},\"x\":true}\n"
        );
    }
}
