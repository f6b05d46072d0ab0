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
    /// A stamp at `ms` milliseconds since the epoch, the `logical`-th
    /// write of `replica` within that millisecond.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::{ReplicaId, Stamp};
    ///
    /// let stamp = Stamp::new(1_709_294_400_000, 2, ReplicaId::new("primary")?);
    /// assert_eq!(stamp.to_string(), "1709294400000.2@primary");
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn new(ms: i64, logical: u32, replica: ReplicaId) -> Self {
        Self {
            ms,
            logical,
            replica,
        }
    }

    /// Milliseconds since the Unix epoch (or, for inputs that carry no time,
    /// the position on the activation-order scale).
    ///
    /// # Example
    ///
    /// ```
    /// use failback::{ReplicaId, Stamp};
    ///
    /// let stamp = Stamp::new(1_709_294_400_000, 0, ReplicaId::new("primary")?);
    /// assert_eq!(stamp.ms(), 1_709_294_400_000);
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn ms(&self) -> i64 {
        self.ms
    }

    /// The logical counter within one millisecond.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::{ReplicaId, Stamp};
    ///
    /// let hub = ReplicaId::new("primary")?;
    /// let third = Stamp::new(1_000, 2, hub.clone());
    /// assert_eq!(third.logical(), 2);
    /// assert!(Stamp::new(1_000, 1, hub) < third); // same millisecond, earlier write
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn logical(&self) -> u32 {
        self.logical
    }

    /// The replica that made the write.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::{ReplicaId, Stamp};
    ///
    /// let secondary = ReplicaId::new("secondary")?;
    /// let stamp = Stamp::new(1_000, 0, secondary.clone());
    /// assert_eq!(stamp.replica(), &secondary);
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn replica(&self) -> &ReplicaId {
        &self.replica
    }

    /// The physical part as an RFC 3339 time, when it is a representable time.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::{ReplicaId, Stamp};
    ///
    /// let hub = ReplicaId::new("primary")?;
    /// let stamp = Stamp::new(1_709_294_400_000, 0, hub.clone());
    /// assert_eq!(stamp.to_rfc3339().as_deref(), Some("2024-03-01T12:00:00.000Z"));
    /// assert_eq!(Stamp::new(i64::MAX, 0, hub).to_rfc3339(), None);
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn to_rfc3339(&self) -> Option<String> {
        format_time(self.ms)
    }
}

/// `ms` since the Unix epoch as an RFC 3339 UTC time with milliseconds,
/// as IoT Hub writes times; `None` when it is no representable time.
pub(crate) fn format_time(ms: i64) -> Option<String> {
    if let Some(text) = format_four_digit_year(ms) {
        return Some(text);
    }
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// `0000-01-01T00:00:00.000Z` and `9999-12-31T23:59:59.999Z` in ms.
const FOUR_DIGIT_YEARS: std::ops::RangeInclusive<i64> = -62_167_219_200_000..=253_402_300_799_999;

/// [`format_time`] for a time in years 0 to 9999, written directly (the
/// same text as chrono's, without its formatting machinery: event
/// times are written once per event of every state file); `None`
/// outside them.
fn format_four_digit_year(ms: i64) -> Option<String> {
    if !FOUR_DIGIT_YEARS.contains(&ms) {
        return None;
    }
    let days = ms.div_euclid(86_400_000);
    let of_day = ms.rem_euclid(86_400_000);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's
    // `civil_from_days`), in the proleptic Gregorian calendar chrono uses.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = [0u8; 24];
    let mut put = |at: usize, width: usize, mut value: i64| {
        for i in (at..at + width).rev() {
            if let Some(b) = out.get_mut(i) {
                *b = b'0' + (value % 10) as u8;
            }
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, of_day / 3_600_000);
    put(14, 2, of_day / 60_000 % 60);
    put(17, 2, of_day / 1000 % 60);
    put(20, 3, of_day % 1000);
    for (at, sep) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        if let Some(b) = out.get_mut(at) {
            *b = sep;
        }
    }
    String::from_utf8(out.to_vec()).ok()
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

    #[test]
    fn times_in_four_digit_years_are_written_as_chrono_writes_them() {
        let chrono = |ms: i64| {
            DateTime::<Utc>::from_timestamp_millis(ms)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        };
        let (lo, hi) = (*FOUR_DIGIT_YEARS.start(), *FOUR_DIGIT_YEARS.end());
        let mut samples = vec![
            lo - 1,
            lo,
            lo + 1,
            0,
            -1,
            1,
            951_782_400_000,
            hi - 1,
            hi,
            hi + 1,
        ];
        // Every day boundary of 1600-2400 (leap years, centuries), and a
        // spread of instants across the whole range.
        let day = 86_400_000;
        let mut t = -11_676_096_000_000;
        while t < 13_569_465_600_000 {
            samples.extend([t - 1, t, t + 43_199_999]);
            t += day;
        }
        let mut x: i64 = 12_345;
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            samples.push(lo + (x >> 1).rem_euclid(hi - lo + 1));
        }
        for ms in samples {
            assert_eq!(
                format_four_digit_year(ms).or_else(|| chrono(ms)),
                chrono(ms),
                "{ms}"
            );
            assert_eq!(format_time(ms), chrono(ms), "{ms}");
        }
    }
}
