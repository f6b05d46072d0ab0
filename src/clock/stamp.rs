//! Hybrid logical clock stamps: when a write happened.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::ReplicaId;

/// When a write happened: physical milliseconds since the Unix epoch, a
/// logical counter for writes within the same millisecond, and the writing
/// replica as the final tiebreak.
///
/// Stamps are totally ordered by `(ms, logical, replica)`. They only *rank*
/// concurrent writes; causality (dots) decides whether writes conflict.
///
/// # Example
///
/// ```
/// use failback::{ReplicaId, Stamp};
///
/// let p = ReplicaId::new("primary")?;
/// let s = ReplicaId::new("secondary")?;
/// let early = Stamp::new(1_000, 0, s.clone());
/// let late = Stamp::new(1_000, 1, p.clone());
/// assert!(early < late);
/// // Same time and counter: the replica name breaks the tie.
/// assert!(Stamp::new(5, 0, p) < Stamp::new(5, 0, s));
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    ms: i64,
    #[serde(rename = "l")]
    logical: u32,
    #[serde(rename = "r")]
    replica: ReplicaId,
}

impl Stamp {
    /// A stamp at `ms` milliseconds since the epoch.
    pub fn new(ms: i64, logical: u32, replica: ReplicaId) -> Self {
        Self {
            ms,
            logical,
            replica,
        }
    }

    /// Milliseconds since the Unix epoch (or, for inputs that carry no time,
    /// the position on the activation-order scale).
    pub fn ms(&self) -> i64 {
        self.ms
    }

    /// The logical counter within one millisecond.
    pub fn logical(&self) -> u32 {
        self.logical
    }

    /// The replica that made the write.
    pub fn replica(&self) -> &ReplicaId {
        &self.replica
    }

    /// The physical part as an RFC 3339 time, when it is a representable time.
    pub fn to_rfc3339(&self) -> Option<String> {
        format_time(self.ms)
    }
}

/// `ms` since the Unix epoch as an RFC 3339 UTC time with milliseconds,
/// as IoT Hub writes times; `None` when it is no representable time.
pub(crate) fn format_time(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

impl fmt::Debug for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}@{}", self.ms, self.logical, self.replica)
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_ms_logical_at_replica() {
        let stamp = Stamp::new(1_500, 2, ReplicaId::new("hub-a").unwrap());
        assert_eq!(format!("{stamp:?}"), "1500.2@hub-a");
        assert_eq!(stamp.to_string(), "1500.2@hub-a");
    }

    #[test]
    fn rfc3339_only_for_representable_times() {
        let hub = ReplicaId::new("a").unwrap();
        let epoch = Stamp::new(1_234, 0, hub.clone());
        assert_eq!(
            epoch.to_rfc3339().as_deref(),
            Some("1970-01-01T00:00:01.234Z")
        );
        assert_eq!(Stamp::new(i64::MAX, 0, hub).to_rfc3339(), None);
    }
}
