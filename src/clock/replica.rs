//! Replica identifiers.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The name of one hub or replica: 1-64 characters of `[A-Za-z0-9._-]`.
///
/// Cheap to clone (a shared pointer) and ordered by its text, so every
/// structure keyed by replica iterates in the same order on every machine.
///
/// # Example
///
/// ```
/// use failback::ReplicaId;
///
/// let primary = ReplicaId::new("primary")?;
/// let secondary = ReplicaId::new("secondary")?;
/// assert!(primary < secondary);
/// assert!(ReplicaId::new("no spaces").is_err());
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId(Arc<str>);

/// A replica name that breaks the rules of [`ReplicaId`].
///
/// # Example
///
/// ```
/// use failback::ReplicaId;
///
/// let err = ReplicaId::new("primary hub").unwrap_err();
/// assert_eq!(err.name, "primary hub");
/// assert!(err.to_string().contains("[A-Za-z0-9._-]"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid replica id {name:?}: expected 1-64 characters of [A-Za-z0-9._-]")]
pub struct InvalidReplicaId {
    /// The rejected name (truncated to 80 characters).
    pub name: String,
}

impl ReplicaId {
    /// The longest accepted replica name.
    pub const MAX_LEN: usize = 64;

    /// Validates and wraps a replica name.
    ///
    /// # Errors
    ///
    /// [`InvalidReplicaId`] when the name is empty, longer than 64 characters
    /// or holds a character outside `[A-Za-z0-9._-]`.
    ///
    /// # Example
    ///
    /// ```
    /// let hub = failback::ReplicaId::new("contoso-hub.azure-devices.net")?;
    /// assert_eq!(hub.as_str(), "contoso-hub.azure-devices.net");
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn new(name: &str) -> Result<Self, InvalidReplicaId> {
        let valid = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(Self(Arc::from(name)))
        } else {
            Err(InvalidReplicaId {
                name: name.chars().take(80).collect(),
            })
        }
    }

    /// The replica id of a UUID, in its hyphenated lowercase form (36
    /// characters, always valid).
    ///
    /// # Example
    ///
    /// ```
    /// let uuid = uuid::Uuid::from_u128(0x0190_9a1e_2f3b_7c4d_8e5f_6a7b_8c9d_0e1f);
    /// let site = failback::ReplicaId::from_uuid(uuid);
    /// assert_eq!(site.as_str(), "01909a1e-2f3b-7c4d-8e5f-6a7b8c9d0e1f");
    /// ```
    pub fn from_uuid(uuid: uuid::Uuid) -> Self {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        Self(Arc::from(&*uuid.hyphenated().encode_lower(&mut text)))
    }

    /// A fresh replica id: a version 7 UUID, minted from the system clock
    /// and random bits. Ids minted later sort later (by their millisecond),
    /// so a site's id says roughly when it was set up, and two sites never
    /// mint the same one.
    ///
    /// Stamps break ties between concurrent writes of the same time by
    /// replica id, so with v7 ids the younger site wins such exact ties:
    /// a deterministic rule, like any other fixed order.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::ReplicaId;
    ///
    /// let a = ReplicaId::new_v7();
    /// let b = ReplicaId::new_v7();
    /// assert_ne!(a, b);
    /// assert_eq!(ReplicaId::new(a.as_str()), Ok(a));
    /// ```
    pub fn new_v7() -> Self {
        Self::from_uuid(uuid::Uuid::now_v7())
    }

    /// The name as text.
    ///
    /// # Example
    ///
    /// ```
    /// let hub = failback::ReplicaId::new("secondary")?;
    /// assert_eq!(hub.as_str(), "secondary");
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl std::str::FromStr for ReplicaId {
    type Err = InvalidReplicaId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for ReplicaId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ReplicaId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        Self::new(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet_and_bounds() {
        assert!(ReplicaId::new("a").is_ok());
        assert!(ReplicaId::new(&"x".repeat(64)).is_ok());
        assert!(ReplicaId::new("Hub_1.west-eu").is_ok());
        assert!(ReplicaId::new("").is_err());
        assert!(ReplicaId::new(&"x".repeat(65)).is_err());
        for bad in ["a b", "a/b", "é", "a:b", "a\n"] {
            assert!(ReplicaId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_round_trip_validates() {
        let id = ReplicaId::new("primary").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"primary\"");
        assert_eq!(serde_json::from_str::<ReplicaId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<ReplicaId>("\"bad id\"").is_err());
    }

    #[test]
    fn reads_back_as_text_and_parses() {
        let id: ReplicaId = "hub-1".parse().unwrap();
        assert_eq!(id.as_str(), "hub-1");
        assert_eq!(id.to_string(), "hub-1");
        assert_eq!(format!("{id:?}"), "\"hub-1\"");
        assert!("hub 1".parse::<ReplicaId>().is_err());
    }
}
