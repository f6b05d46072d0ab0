//! The values of identity fields: status and authentication.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, LazyLock, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Secret;

/// Whether a device may connect.
///
/// # Example
///
/// ```
/// use failback::doc::{DeviceSnapshot, Status};
///
/// let device = DeviceSnapshot::enabled_sas("thermostat-7", "cHJpbWFyeQAAAAAAAAAAAA==", "c2Vjb25kYXJ5AAAAAAAAAA==");
/// assert_eq!(device.device.status.map(|s| s.status), Some(Status::Enabled));
/// assert_eq!(serde_json::to_string(&Status::Disabled)?, r#""disabled""#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The device may connect.
    Enabled,
    /// The device is shut out.
    Disabled,
}

/// A device's status with the reason given for it: one value, so the
/// reason always follows the status that won.
///
/// # Example
///
/// ```
/// use failback::doc::{Status, StatusValue};
///
/// let shut_out = StatusValue { status: Status::Disabled, reason: Some("stolen".into()) };
/// assert_eq!(serde_json::to_string(&shut_out)?, r#"{"status":"disabled","reason":"stolen"}"#);
/// let read: StatusValue = serde_json::from_str(r#"{"status":"enabled"}"#)?;
/// assert_eq!((read.status, read.reason), (Status::Enabled, None));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StatusValue {
    /// The status.
    pub status: Status,
    /// `statusReason`, up to 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `authentication.type`.
///
/// # Example
///
/// ```
/// use failback::doc::{AuthType, Authentication};
///
/// let auth: Authentication = serde_json::from_str(r#"{"type":"selfSigned","x509Thumbprint":{"primaryThumbprint":"9C5E1A8A"}}"#)?;
/// assert_eq!(auth.auth_type, Some(AuthType::SelfSigned));
/// assert_eq!(serde_json::to_string(&AuthType::CertificateAuthority)?, r#""certificateAuthority""#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AuthType {
    /// Shared access signature keys.
    #[serde(rename = "sas")]
    Sas,
    /// Self-signed X.509 certificates, by thumbprint.
    #[serde(rename = "selfSigned")]
    SelfSigned,
    /// Certificates signed by a certificate authority.
    #[serde(rename = "certificateAuthority")]
    CertificateAuthority,
    /// No authentication (modules managed by the edge runtime).
    #[serde(rename = "none")]
    None,
}

/// `authentication.symmetricKey`.
///
/// # Example
///
/// ```
/// use failback::doc::{Secret, SymmetricKey};
///
/// let keys: SymmetricKey = serde_json::from_str(r#"{"primaryKey":"cHJpbWFyeQAAAAAAAAAAAA==","secondaryKey":null}"#)?;
/// let primary = keys.primary_key.as_ref().map(Secret::expose);
/// assert_eq!(primary, Some("cHJpbWFyeQAAAAAAAAAAAA=="));
/// assert!(keys.secondary_key.is_none());
/// assert!(!format!("{keys:?}").contains("cHJpbWFyeQ")); // Debug shows fingerprints
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKey {
    /// The primary key, base64.
    pub primary_key: Option<Secret>,
    /// The secondary key, base64.
    pub secondary_key: Option<Secret>,
}

/// `authentication.x509Thumbprint`.
///
/// # Example
///
/// ```
/// use failback::doc::{Secret, X509Thumbprint};
///
/// let prints = X509Thumbprint {
///     primary_thumbprint: Some(Secret::new("9C5E1A8A3F6B0D2E4C7A1B3D5F7E9A0C2B4D6F81")),
///     secondary_thumbprint: None,
/// };
/// let json = serde_json::to_value(&prints)?;
/// assert_eq!(json["primaryThumbprint"], "9C5E1A8A3F6B0D2E4C7A1B3D5F7E9A0C2B4D6F81");
/// assert!(json["secondaryThumbprint"].is_null());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Thumbprint {
    /// The primary thumbprint, hex.
    pub primary_thumbprint: Option<Secret>,
    /// The secondary thumbprint, hex.
    pub secondary_thumbprint: Option<Secret>,
}

/// A device's or module's `authentication`: one whole value, so keys from
/// two replicas are never mixed.
///
/// Serializes in IoT Hub's export shape with clear keys; its `Debug` shows
/// fingerprints only. Use [`Authentication::redacted`] for anything a
/// person or a log will read.
///
/// # Example
///
/// ```
/// use failback::doc::{Authentication, Secret};
///
/// let auth = Authentication::sas(Secret::new("cHJpbWFyeQAAAAAAAAAAAA=="), Secret::new("c2Vjb25kYXJ5AAAAAAAAAA=="));
/// let shown = auth.redacted().to_string();
/// assert!(shown.contains("sha256:"));
/// assert!(!shown.contains("cHJpbWFyeQAAAAAAAAAAAA=="));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    /// SAS keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKey>,
    /// X.509 thumbprints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_thumbprint: Option<X509Thumbprint>,
    /// The kind of authentication.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub auth_type: Option<AuthType>,
}

impl Authentication {
    /// SAS authentication with the two keys.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{AuthType, Authentication, Secret};
    ///
    /// let auth = Authentication::sas(Secret::new("cHJpbWFyeQAAAAAAAAAAAA=="), Secret::new("c2Vjb25kYXJ5AAAAAAAAAA=="));
    /// assert_eq!(auth.auth_type, Some(AuthType::Sas));
    /// let keys = auth.symmetric_key.ok_or("SAS keys")?;
    /// assert_eq!(keys.secondary_key.as_ref().map(Secret::expose), Some("c2Vjb25kYXJ5AAAAAAAAAA=="));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sas(primary: Secret, secondary: Secret) -> Self {
        Self {
            symmetric_key: Some(SymmetricKey {
                primary_key: Some(primary),
                secondary_key: Some(secondary),
            }),
            x509_thumbprint: Some(X509Thumbprint::default()),
            auth_type: Some(AuthType::Sas),
        }
    }

    /// Whether the hub would make new keys to import it: SAS (named, or no
    /// type and no thumbprint) without both keys. A hub never holds such a
    /// device; a file shows one only where its keys were left out (an
    /// export without keys, a listing that hides them).
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{AuthType, Authentication, Secret, SymmetricKey};
    ///
    /// let keys = Authentication::sas(
    ///     Secret::new("cHJpbWFyeS1rZXktMDEyMzQ1Njc4OWFi"),
    ///     Secret::new("c2Vjb25kYXJ5LWtleS0wMTIzNDU2Nzg5"),
    /// );
    /// assert!(!keys.lacks_keys());
    /// let hidden = Authentication {
    ///     symmetric_key: Some(SymmetricKey::default()),
    ///     x509_thumbprint: None,
    ///     auth_type: Some(AuthType::Sas),
    /// };
    /// assert!(hidden.lacks_keys());
    /// let x509 = Authentication { auth_type: Some(AuthType::SelfSigned), ..hidden };
    /// assert!(!x509.lacks_keys(), "a certificate's identity has no keys to lack");
    /// ```
    pub fn lacks_keys(&self) -> bool {
        let given = |s: &Option<Secret>| s.as_ref().is_some_and(|s| !s.expose().is_empty());
        let sas = match self.auth_type {
            Some(AuthType::Sas) => true,
            None => !self
                .x509_thumbprint
                .as_ref()
                .is_some_and(|t| given(&t.primary_thumbprint) || given(&t.secondary_thumbprint)),
            Some(_) => false,
        };
        sas && !self
            .symmetric_key
            .as_ref()
            .is_some_and(|k| given(&k.primary_key) && given(&k.secondary_key))
    }

    /// Every key and thumbprint it holds.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{Authentication, Secret};
    ///
    /// let auth = Authentication::sas(Secret::new("cHJpbWFyeQAAAAAAAAAAAA=="), Secret::new("c2Vjb25kYXJ5AAAAAAAAAA=="));
    /// let fingerprints: Vec<String> = auth.secrets().map(Secret::fingerprint).collect();
    /// assert_eq!(fingerprints.len(), 2); // the two keys; no thumbprint
    /// assert!(fingerprints.iter().all(|f| f.starts_with("sha256:")));
    /// ```
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> + '_ {
        let keys = self
            .symmetric_key
            .iter()
            .flat_map(|k| [&k.primary_key, &k.secondary_key]);
        let prints = self
            .x509_thumbprint
            .iter()
            .flat_map(|t| [&t.primary_thumbprint, &t.secondary_thumbprint]);
        keys.chain(prints).flatten()
    }

    /// The export shape with every secret replaced by its fingerprint: what
    /// conflict records and reports show.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::{Authentication, Secret};
    ///
    /// let primary = Secret::new("cHJpbWFyeQAAAAAAAAAAAA==");
    /// let auth = Authentication::sas(primary.clone(), Secret::new("c2Vjb25kYXJ5AAAAAAAAAA=="));
    /// let shown = auth.redacted();
    /// assert_eq!(shown["symmetricKey"]["primaryKey"], primary.fingerprint());
    /// assert_eq!(shown["type"], "sas"); // the type is no secret
    /// ```
    pub fn redacted(&self) -> Value {
        let mut json = serde_json::to_value(self).unwrap_or(Value::Null);
        redact_strings(&mut json);
        json
    }
}

/// Replaces every string but a `type` field with its fingerprint, at any
/// depth, arrays included. The export shape of `authentication` is objects
/// of strings; a field a later API version adds is hidden all the same.
fn redact_strings(value: &mut Value) {
    match value {
        Value::String(clear) => {
            let fingerprint = super::secret::fingerprint(clear.as_bytes());
            *value = Value::String(fingerprint);
        }
        Value::Object(map) => map
            .iter_mut()
            .filter(|(key, _)| *key != "type")
            .for_each(|(_, field)| redact_strings(field)),
        Value::Array(items) => items.iter_mut().for_each(redact_strings),
        _ => {}
    }
}

/// A JSON object with keys in sorted order.
pub type JsonMap = serde_json::Map<String, Value>;

/// A twin section's JSON object (`tags`, `properties.desired`,
/// `properties.reported`), shared between copies of an [`Entity`] until one
/// of them writes to it.
///
/// Entities are copied far more often than their twins change: a hub's
/// record, a plan line, an export read back and the merged state often hold
/// the same section. Cloning a `SectionMap` counts a reference instead of
/// copying the tree, two copies compare equal without walking it, and a
/// write through [`DerefMut`] copies it first only when it is shared.
/// Everything else reads it as the [`serde_json::Map`] it dereferences to. An
/// empty section allocates nothing.
///
/// A section the readers in [`format`](crate::format) read is held as the
/// JSON text its object is written as (keys sorted, no spaces), checked
/// against IoT Hub's limits as it was read, and its object is built the
/// first time something reads it: a merge compares most sections byte for
/// byte and writes them as they came, without ever building them.
///
/// [`Entity`]: super::Entity
///
/// # Example
///
/// ```
/// use failback::doc::SectionMap;
/// use serde_json::json;
///
/// let mut tags = SectionMap::new();
/// tags.insert("site".into(), json!("lyon"));
/// let copy = tags.clone();
/// tags.insert("floor".into(), json!(2));
/// assert_eq!(copy.len(), 1, "the copy kept what it was given");
/// assert_eq!(tags.get("floor"), Some(&json!(2)));
/// assert_ne!(tags, copy);
/// ```
#[derive(Clone, Default)]
pub struct SectionMap(Option<Arc<Held>>);

/// What a non-empty section holds: the object, or the text it is written
/// as, or both.
///
/// A section read from a file is kept as the text a writer gives its object
/// (keys sorted, no spaces: the bytes `serde_json::to_writer` writes), and
/// the object is built from it only when something reads it: a merge
/// compares most sections without reading them (equal objects have equal
/// texts, compared byte by byte) and writes them as they came. A write
/// through [`DerefMut`] builds the object and drops the text.
#[derive(Clone)]
struct Held {
    /// The object as written, `{...}`, when known.
    text: Option<Box<[u8]>>,
    /// The object: set from the start, or built from `text` when first read.
    map: OnceLock<JsonMap>,
    /// The section's size as IoT Hub counts it, when its reader found every
    /// limit kept (see `validate`); `None` when unknown.
    size: Option<usize>,
}

impl Held {
    fn map(&self) -> &JsonMap {
        self.map.get_or_init(|| {
            let text = self.text.as_deref().unwrap_or(b"{}");
            // The text was written from an object: it reads back to it.
            serde_json::from_slice(text)
                .expect("a section's text is the object it was written from")
        })
    }
}

impl SectionMap {
    /// An empty section.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::SectionMap;
    ///
    /// let tags = SectionMap::new();
    /// assert!(tags.is_empty());
    /// assert_eq!(tags, SectionMap::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The section's object, copied only when another copy shares it.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::SectionMap;
    /// use serde_json::json;
    ///
    /// let mut desired = SectionMap::new();
    /// desired.insert("setpoint".into(), json!(21.5));
    /// let map: serde_json::Map<String, serde_json::Value> = desired.into_map();
    /// assert_eq!(serde_json::Value::Object(map), json!({ "setpoint": 21.5 }));
    /// ```
    pub fn into_map(self) -> JsonMap {
        match self.0 {
            Some(held) => match Arc::try_unwrap(held) {
                Ok(held) => {
                    held.map();
                    held.map.into_inner().unwrap_or_default()
                }
                Err(shared) => shared.map().clone(),
            },
            None => JsonMap::new(),
        }
    }

    /// Whether the section holds no property (without building its object).
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::SectionMap;
    /// use serde_json::json;
    ///
    /// let mut tags = SectionMap::new();
    /// assert!(tags.is_empty());
    /// tags.insert("site".into(), json!("lyon"));
    /// assert!(!tags.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        match &self.0 {
            None => true,
            // A text is never that of an empty object.
            Some(held) => held.text.is_none() && held.map().is_empty(),
        }
    }

    /// A section from the text of a non-empty object as `write_map` writes
    /// it (keys sorted, each once), and its size when every limit was
    /// found kept. `{}` is the empty section.
    pub(crate) fn from_text(text: Box<[u8]>, size: Option<usize>) -> Self {
        if *text == *b"{}" {
            return Self::new();
        }
        Self(Some(Arc::new(Held {
            text: Some(text),
            map: OnceLock::new(),
            size,
        })))
    }

    /// The object as written, when the section still holds its text.
    pub(crate) fn text(&self) -> Option<&[u8]> {
        self.0.as_ref().and_then(|held| held.text.as_deref())
    }

    /// The size its reader counted, when it found every limit kept; an
    /// empty section's is 0.
    pub(crate) fn checked_size(&self) -> Option<usize> {
        match &self.0 {
            Some(held) => held.size,
            None => Some(0),
        }
    }
}

impl Deref for SectionMap {
    type Target = JsonMap;

    fn deref(&self) -> &JsonMap {
        static EMPTY: LazyLock<JsonMap> = LazyLock::new(JsonMap::new);
        self.0.as_deref().map_or(&EMPTY, Held::map)
    }
}

impl DerefMut for SectionMap {
    fn deref_mut(&mut self) -> &mut JsonMap {
        let held = Arc::make_mut(self.0.get_or_insert_with(|| {
            Arc::new(Held {
                text: None,
                map: OnceLock::from(JsonMap::new()),
                size: None,
            })
        }));
        held.map();
        // The object is about to change: its text and size no longer hold.
        held.text = None;
        held.size = None;
        held.map.get_mut().expect("built just above")
    }
}

impl PartialEq for SectionMap {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => true,
            (None, None) => true,
            (Some(a), Some(b)) => match (&a.text, &b.text) {
                // Written alike exactly when equal.
                (Some(x), Some(y)) => x == y,
                _ => a.map() == b.map(),
            },
            _ => **self == **other,
        }
    }
}

impl PartialEq<JsonMap> for SectionMap {
    fn eq(&self, other: &JsonMap) -> bool {
        **self == *other
    }
}

impl fmt::Debug for SectionMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl From<JsonMap> for SectionMap {
    fn from(map: JsonMap) -> Self {
        Self((!map.is_empty()).then(|| {
            Arc::new(Held {
                text: None,
                map: OnceLock::from(map),
                size: None,
            })
        }))
    }
}

impl From<SectionMap> for JsonMap {
    fn from(section: SectionMap) -> Self {
        section.into_map()
    }
}

impl FromIterator<(String, Value)> for SectionMap {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Self::from(iter.into_iter().collect::<JsonMap>())
    }
}

impl Serialize for SectionMap {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl<'a> IntoIterator for &'a SectionMap {
    type Item = (&'a String, &'a Value);
    type IntoIter = serde_json::map::Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        (**self).iter()
    }
}

/// Unknown identity fields, kept verbatim so nothing a newer hub sends is
/// dropped.
pub(crate) type Extra = BTreeMap<String, Value>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redaction_reaches_every_string_but_type_at_any_depth() {
        let mut value = json!({
            "type": "sas",
            "keys": ["k1", {"primaryKey": "k2", "type": "x"}],
            "n": 1,
        });
        redact_strings(&mut value);
        let fp = |s: &str| super::super::secret::fingerprint(s.as_bytes());
        assert_eq!(
            value,
            json!({"type": "sas", "keys": [fp("k1"), {"primaryKey": fp("k2"), "type": "x"}], "n": 1})
        );
    }

    #[test]
    fn redacted_hides_every_secret_but_keeps_the_shape() {
        let auth = Authentication {
            symmetric_key: Some(SymmetricKey {
                primary_key: Some(Secret::new("AAAA")),
                secondary_key: None,
            }),
            x509_thumbprint: Some(X509Thumbprint {
                primary_thumbprint: Some(Secret::new("ABCDEF")),
                secondary_thumbprint: None,
            }),
            auth_type: Some(AuthType::Sas),
        };
        let shown = auth.redacted().to_string();
        assert!(
            !shown.contains("AAAA") && !shown.contains("ABCDEF"),
            "{shown}"
        );
        assert!(shown.contains("\"type\":\"sas\""));
        assert!(shown.contains("\"secondaryKey\":null"));
        assert_eq!(auth.secrets().count(), 2);
        assert!(!format!("{auth:?}").contains("AAAA"));
    }

    #[test]
    fn export_shape_round_trips() {
        let json = r#"{"symmetricKey":{"primaryKey":"a","secondaryKey":"b"},"x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"type":"sas"}"#;
        let auth: Authentication = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&auth).unwrap(), json);
    }

    /// One edit of a section: insert `key` = `value`, or remove `key`.
    fn edit() -> impl proptest::strategy::Strategy<Value = (u8, Option<i64>)> {
        (0u8..6, proptest::option::of(0i64..3))
    }

    fn apply(map: &mut JsonMap, (key, value): (u8, Option<i64>)) {
        let key = format!("k{key}");
        match value {
            Some(v) => map.insert(key, json!(v)),
            None => map.remove(&key),
        };
    }

    proptest::proptest! {
        /// A section is the map it holds, whatever its copies do: a copy
        /// written to is copied first and never changes the others; copies
        /// compare as their maps do, shared or not; the map taken out is
        /// the one built by the same edits.
        #[test]
        fn a_section_behaves_as_its_map_and_copies_never_see_each_others_writes(
            first in proptest::collection::vec(edit(), 0..8),
            second in proptest::collection::vec(edit(), 0..8),
        ) {
            let mut model = JsonMap::new();
            let mut section = SectionMap::new();
            for &e in &first {
                apply(&mut model, e);
                apply(&mut section, e);
            }
            proptest::prop_assert_eq!(&section, &model);
            let copy = section.clone();
            proptest::prop_assert!(copy == section);
            let mut other = model.clone();
            for &e in &second {
                apply(&mut other, e);
                apply(&mut section, e);
            }
            proptest::prop_assert_eq!(&copy, &model, "the copy kept its map");
            proptest::prop_assert_eq!(&section, &other);
            proptest::prop_assert_eq!(section == copy, other == model);
            proptest::prop_assert_eq!(copy == other, model == other, "against a map");
            let collected: SectionMap = other.clone().into_iter().collect();
            proptest::prop_assert_eq!(&collected, &other, "collected");
            proptest::prop_assert_eq!(format!("{section:?}"), format!("{other:?}"));
            proptest::prop_assert_eq!(
                serde_json::to_string(&section).ok(),
                serde_json::to_string(&other).ok()
            );
            proptest::prop_assert_eq!((&section).into_iter().count(), other.len());
            proptest::prop_assert_eq!(SectionMap::from(other.clone()), section.clone());
            proptest::prop_assert_eq!(section.into_map(), other);
            proptest::prop_assert_eq!(JsonMap::from(copy), model);
        }
    }
}
