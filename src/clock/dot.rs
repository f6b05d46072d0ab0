//! Dots: the unique identity of one write.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ReplicaId;

/// `(replica, counter)`: the unique id of one write. Counters start at 1.
///
/// # Example
///
/// ```
/// use failback::{Dot, ReplicaId};
///
/// let a = ReplicaId::new("primary")?;
/// let dot = Dot::new(a.clone(), 3);
/// assert_eq!(dot.replica(), &a);
/// assert_eq!(dot.counter(), 3);
/// assert_eq!(dot.to_string(), "primary:3");
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
///
/// Serialized as the text `replica:counter`, so dots can key JSON maps.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dot {
    replica: ReplicaId,
    counter: u64,
}

impl Dot {
    /// The dot of write number `counter` of `replica`. Counters start at 1
    /// (a [`VersionVector`](crate::VersionVector) entry of 0 means nothing
    /// seen): nothing here issues a dot of counter 0, and one read back
    /// from JSON is refused.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::{Dot, ReplicaId};
    ///
    /// let primary = ReplicaId::new("primary")?;
    /// let first = Dot::new(primary.clone(), 1);
    /// assert!(first < Dot::new(primary, 2));
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn new(replica: ReplicaId, counter: u64) -> Self {
        Self { replica, counter }
    }

    /// The replica that made the write.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::{Dot, ReplicaId};
    ///
    /// let dot = Dot::new(ReplicaId::new("secondary")?, 4);
    /// assert_eq!(dot.replica().as_str(), "secondary");
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn replica(&self) -> &ReplicaId {
        &self.replica
    }

    /// The write's sequence number at its replica.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::{Dot, ReplicaId};
    ///
    /// let dot = Dot::new(ReplicaId::new("primary")?, 12);
    /// assert_eq!(dot.counter(), 12);
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn counter(&self) -> u64 {
        self.counter
    }
}

impl fmt::Debug for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.replica, self.counter)
    }
}

impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.replica, self.counter)
    }
}

impl Serialize for Dot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        let (replica, counter) = text.rsplit_once(':').ok_or_else(|| {
            D::Error::custom(format!("invalid dot {text:?}: expected replica:counter"))
        })?;
        let replica = ReplicaId::new(replica).map_err(D::Error::custom)?;
        let counter = counter
            .parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| D::Error::custom(format!("invalid dot counter in {text:?}")))?;
        Ok(Self::new(replica, counter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_text_and_back() {
        let dot = Dot::new(ReplicaId::new("hub-1.west").unwrap(), 42);
        let json = serde_json::to_string(&dot).unwrap();
        assert_eq!(json, "\"hub-1.west:42\"");
        assert_eq!(serde_json::from_str::<Dot>(&json).unwrap(), dot);
        for bad in ["\"nocolon\"", "\"a:0\"", "\"a:-1\"", "\"a b:1\"", "\":1\""] {
            assert!(serde_json::from_str::<Dot>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exposes_its_parts_and_formats_like_its_text() {
        let dot = Dot::new(ReplicaId::new("a").unwrap(), 7);
        assert_eq!(dot.replica().as_str(), "a");
        assert_eq!(dot.counter(), 7);
        assert_eq!(format!("{dot:?}"), "a:7");
    }
}
