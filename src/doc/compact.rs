//! JSON values as the state holds them: compact, converted to and from
//! `serde_json::Value` at the edges.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Number, Value};

/// A JSON value held in a register: a twin leaf or an identity field.
///
/// `serde_json::Value` costs 32 bytes and an object in it a B-tree node of
/// over 600 bytes, whatever it holds; a device holds dozens of values, most
/// of them small scalars and short strings. This one costs 16 bytes, holds
/// strings of up to 14 bytes inline, longer ones and arrays in exactly
/// sized boxes, and objects as their entries sorted by key (the order
/// `serde_json` keeps them in).
///
/// It converts to and from `Value` without loss: numbers keep the kind
/// `serde_json` gave them (unsigned, negative, float), so a value reads,
/// compares and serializes exactly as the `Value` it came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct CompactJson(Repr);

#[derive(Clone, Debug, Default, PartialEq)]
enum Repr {
    #[default]
    Null,
    Bool(bool),
    /// A number `serde_json` reads as unsigned.
    PosInt(u64),
    /// A negative integer.
    NegInt(i64),
    /// Any other number.
    Float(f64),
    Short(Short),
    Long(Box<Long>),
    Array(Box<Items>),
    Object(Box<Entries>),
}

/// The longest string held inline.
const SHORT_MAX: usize = 14;

/// A string of up to [`SHORT_MAX`] bytes, inline.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Short {
    len: u8,
    bytes: [u8; SHORT_MAX],
}

impl Short {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).expect("made from a whole str")
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Long(Box<str>);

#[derive(Clone, Debug, PartialEq)]
struct Items(Box<[CompactJson]>);

#[derive(Clone, Debug, PartialEq)]
struct Entries(Box<[(Box<str>, CompactJson)]>);

impl CompactJson {
    /// `null`: in a twin, a removal.
    pub(crate) const NULL: Self = Self(Repr::Null);

    /// Whether the value is `null`.
    pub(crate) fn is_null(&self) -> bool {
        matches!(self.0, Repr::Null)
    }

    /// Whether the value is an object without entries.
    pub(crate) fn is_empty_object(&self) -> bool {
        matches!(&self.0, Repr::Object(entries) if entries.0.is_empty())
    }

    /// The string, when the value is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.0 {
            Repr::Short(s) => Some(s.as_str()),
            Repr::Long(s) => Some(&s.0),
            _ => None,
        }
    }

    fn string(text: &str) -> Self {
        match u8::try_from(text.len()) {
            Ok(len) if text.len() <= SHORT_MAX => {
                let mut bytes = [0; SHORT_MAX];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                Self(Repr::Short(Short { len, bytes }))
            }
            _ => Self(Repr::Long(Box::new(Long(text.into())))),
        }
    }

    /// The value as `serde_json` holds it.
    pub(crate) fn to_value(&self) -> Value {
        match &self.0 {
            Repr::Null => Value::Null,
            Repr::Bool(b) => Value::Bool(*b),
            Repr::PosInt(n) => Value::Number(Number::from(*n)),
            Repr::NegInt(n) => Value::Number(Number::from(*n)),
            Repr::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Repr::Short(s) => Value::String(s.as_str().to_owned()),
            Repr::Long(s) => Value::String(s.0.to_string()),
            Repr::Array(items) => Value::Array(items.0.iter().map(Self::to_value).collect()),
            Repr::Object(entries) => Value::Object(
                entries
                    .0
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect(),
            ),
        }
    }

    fn from_number(n: &Number) -> Self {
        Self(if let Some(u) = n.as_u64() {
            Repr::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Repr::NegInt(i)
        } else {
            // Without `arbitrary_precision` a number is one of the three.
            Repr::Float(n.as_f64().unwrap_or_default())
        })
    }
}

impl From<&Value> for CompactJson {
    fn from(value: &Value) -> Self {
        match value {
            Value::Null => Self::NULL,
            Value::Bool(b) => Self(Repr::Bool(*b)),
            Value::Number(n) => Self::from_number(n),
            Value::String(s) => Self::string(s),
            Value::Array(items) => Self(Repr::Array(Box::new(Items(
                items.iter().map(Self::from).collect(),
            )))),
            // A `serde_json` map iterates in key order: the entries stay
            // sorted.
            Value::Object(map) => Self(Repr::Object(Box::new(Entries(
                map.iter()
                    .map(|(k, v)| (k.as_str().into(), Self::from(v)))
                    .collect(),
            )))),
        }
    }
}

impl Serialize for CompactJson {
    /// Serializes as the `Value` it stands for would, call for call.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Null => s.serialize_unit(),
            Repr::Bool(b) => s.serialize_bool(*b),
            Repr::PosInt(n) => s.serialize_u64(*n),
            Repr::NegInt(n) => s.serialize_i64(*n),
            Repr::Float(f) => s.serialize_f64(*f),
            Repr::Short(text) => s.serialize_str(text.as_str()),
            Repr::Long(text) => s.serialize_str(&text.0),
            Repr::Array(items) => s.collect_seq(items.0.iter()),
            Repr::Object(entries) => s.collect_map(entries.0.iter().map(|(k, v)| (&**k, v))),
        }
    }
}

impl<'de> Deserialize<'de> for CompactJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(|v| Self::from(&v))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn converts_to_and_from_value_without_loss() {
        let value = serde_json::json!({"interval": 30, "mode": "eco", "limits": [1.5, -2]});
        let compact = CompactJson::from(&value);
        assert_eq!(compact.to_value(), value);
        assert_eq!(
            serde_json::to_string(&compact).unwrap_or_else(|e| panic!("{e}")),
            value.to_string()
        );
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_every_kind_exactly() {
        let value = json!({
            "z": null, "b": true, "u": 18446744073709551615u64, "i": -9223372036854775808i64,
            "f": 0.1, "whole": 1.0, "s": "text", "a": [1, "x", [], {}], "o": {"k": {"n": -1}},
            "empty": {}, "": "", "fourteen bytes": "fourteen bytes", "fifteen bytes!!": "fifteen bytes!!",
            "wide": "ääääääää"
        });
        let compact = CompactJson::from(&value);
        assert_eq!(compact.to_value(), value);
        let text = serde_json::to_string(&compact).unwrap();
        assert_eq!(text, serde_json::to_string(&value).unwrap());
        let back: CompactJson = serde_json::from_str(&text).unwrap();
        assert_eq!(back, compact);
    }

    #[test]
    fn equality_follows_value_equality() {
        let pairs = [
            (json!(1), json!(1.0)),
            (json!(1), json!(-1)),
            (json!("a"), json!(["a"])),
            (json!({"a": 1}), json!({"a": 1, "b": 2})),
            (json!({"a": 1}), json!({"b": 1})),
            (json!([1, 2]), json!([1])),
            (json!(null), json!(false)),
        ];
        for (a, b) in pairs {
            let (ca, cb) = (CompactJson::from(&a), CompactJson::from(&b));
            assert_eq!(ca == cb, a == b, "{a} {b}");
        }
    }

    #[test]
    fn reads_its_shape() {
        assert!(CompactJson::from(&json!(null)).is_null());
        assert!(CompactJson::from(&json!({})).is_empty_object());
        assert!(!CompactJson::from(&json!({"a": 1})).is_empty_object());
        assert_eq!(CompactJson::from(&json!("x")).as_str(), Some("x"));
        assert_eq!(CompactJson::from(&json!(1)).as_str(), None);
        assert_eq!(CompactJson::default(), CompactJson::NULL);
    }

    #[test]
    fn takes_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<CompactJson>(), 16);
        for text in ["", "short", "fourteen bytes", "fifteen bytes!!", "ääääääää"] {
            let compact = CompactJson::from(&json!(text));
            assert_eq!(compact.as_str(), Some(text));
        }
    }
}
