//! The hybrid logical clock that issues stamps, with a bound on clock drift.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use super::{ReplicaId, Stamp};

/// Where a clock takes its physical time from.
///
/// Injected so that tests and simulations are deterministic; merges never
/// read a clock at all.
///
/// # Example
///
/// ```
/// use failback::clock::TimeSource;
/// use failback::{HybridClock, ReplicaId};
///
/// /// A clock stopped at 2024-03-01T12:00:00Z.
/// struct Frozen;
/// impl TimeSource for Frozen {
///     fn now_ms(&self) -> i64 {
///         1_709_294_400_000
///     }
/// }
///
/// let mut clock = HybridClock::new(ReplicaId::new("primary")?, Frozen);
/// assert_eq!(clock.tick().ms(), 1_709_294_400_000);
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
pub trait TimeSource {
    /// Milliseconds since the Unix epoch.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::clock::{SystemTime, TimeSource};
    ///
    /// let year_2024 = 1_704_067_200_000;
    /// assert!(SystemTime.now_ms() > year_2024);
    /// ```
    fn now_ms(&self) -> i64;
}

/// The machine's wall clock.
///
/// # Example
///
/// ```
/// use failback::clock::{SystemTime, TimeSource};
/// use failback::{HybridClock, ReplicaId};
///
/// let before = SystemTime.now_ms();
/// let mut clock = HybridClock::new(ReplicaId::new("primary")?, SystemTime);
/// assert!(clock.tick().ms() >= before);
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemTime;

impl TimeSource for SystemTime {
    fn now_ms(&self) -> i64 {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
        }
    }
}

/// A clock that only moves when told to: for tests and simulations.
///
/// Clones share the same time.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::clock::{ManualTime, TimeSource};
///
/// let time = ManualTime::new(1_000);
/// let view = time.clone();
/// time.advance(500);
/// assert_eq!(view.now_ms(), 1_500);
/// ```
#[derive(Debug, Clone, Default)]
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub struct ManualTime(Arc<AtomicI64>);

#[cfg_attr(not(feature = "internals"), allow(dead_code))]
impl ManualTime {
    /// A clock showing `ms`.
    pub fn new(ms: i64) -> Self {
        Self(Arc::new(AtomicI64::new(ms)))
    }

    /// Moves the clock to `ms` (backwards too: clocks misbehave).
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl TimeSource for ManualTime {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The default bound on how far ahead a remote stamp may be: 5 minutes.
pub const DEFAULT_MAX_DRIFT_MS: i64 = 5 * 60 * 1000;

/// A stamp further ahead of the local clock than the allowed drift.
///
/// # Example
///
/// ```
/// use failback::clock::{SystemTime, TimeSource};
/// use failback::{HybridClock, ReplicaId, Stamp};
///
/// let mut clock = HybridClock::new(ReplicaId::new("primary")?, SystemTime);
/// let next_year = SystemTime.now_ms() + 365 * 24 * 3600 * 1000;
/// let far = Stamp::new(next_year, 0, ReplicaId::new("secondary")?);
/// let err = clock.observe(&far).unwrap_err();
/// assert_eq!(err.replica.as_str(), "secondary");
/// assert_eq!(err.max_drift_ms, 5 * 60 * 1000);
/// assert!(err.ahead_ms > err.max_drift_ms);
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "stamp {stamp} from {replica} is {ahead_ms} ms ahead of the local clock, more than the allowed {max_drift_ms} ms"
)]
pub struct DriftError {
    /// The rejected stamp's time, RFC 3339 where representable.
    pub stamp: String,
    /// The replica that issued it.
    pub replica: ReplicaId,
    /// How far ahead of the local clock it was.
    pub ahead_ms: i64,
    /// The bound in force.
    pub max_drift_ms: i64,
}

/// Checks `stamp` against the local time `now_ms` and the bound `max_drift_ms`.
///
/// # Errors
///
/// [`DriftError`] when the stamp is more than `max_drift_ms` ahead of `now_ms`.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::clock::{check_drift, DEFAULT_MAX_DRIFT_MS};
/// use failback::{ReplicaId, Stamp};
///
/// let hub = ReplicaId::new("secondary")?;
/// let now = 1_700_000_000_000;
/// let two_hours = 2 * 3600 * 1000;
/// assert!(check_drift(&Stamp::new(now + 1000, 0, hub.clone()), now, DEFAULT_MAX_DRIFT_MS).is_ok());
/// assert!(check_drift(&Stamp::new(now + two_hours, 0, hub), now, DEFAULT_MAX_DRIFT_MS).is_err());
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
pub fn check_drift(stamp: &Stamp, now_ms: i64, max_drift_ms: i64) -> Result<(), DriftError> {
    let ahead_ms = stamp.ms().saturating_sub(now_ms);
    if ahead_ms > max_drift_ms {
        Err(DriftError {
            stamp: stamp.to_rfc3339().unwrap_or_else(|| stamp.ms().to_string()),
            replica: stamp.replica().clone(),
            ahead_ms,
            max_drift_ms,
        })
    } else {
        Ok(())
    }
}

/// A hybrid logical clock: physical time from an injected [`TimeSource`],
/// never going backwards, advanced past every remote stamp it observes.
///
/// # Example
///
/// ```
/// use failback::clock::{HybridClock, TimeSource};
/// use failback::{ReplicaId, Stamp};
///
/// struct Stopped; // a wall clock that shows 10 s after the epoch, always
/// impl TimeSource for Stopped {
///     fn now_ms(&self) -> i64 { 10_000 }
/// }
///
/// let mut clock = HybridClock::new(ReplicaId::new("primary")?, Stopped);
/// let a = clock.tick();
/// let b = clock.tick(); // same millisecond: the logical counter moves
/// assert!(a < b);
///
/// // A remote stamp two hours ahead is refused with the default bound.
/// let far = Stamp::new(10_000 + 2 * 3600 * 1000, 0, ReplicaId::new("secondary")?);
/// assert!(clock.observe(&far).is_err());
/// # Ok::<(), failback::clock::InvalidReplicaId>(())
/// ```
#[derive(Debug, Clone)]
pub struct HybridClock<T: TimeSource> {
    replica: ReplicaId,
    source: T,
    last_ms: i64,
    logical: u32,
    max_drift_ms: i64,
}

impl<T: TimeSource> HybridClock<T> {
    /// A clock for `replica` with the default drift bound of 5 minutes.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::clock::SystemTime;
    /// use failback::{HybridClock, ReplicaId};
    ///
    /// let mut clock = HybridClock::new(ReplicaId::new("primary")?, SystemTime);
    /// assert_eq!(clock.tick().replica().as_str(), "primary");
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn new(replica: ReplicaId, source: T) -> Self {
        Self {
            replica,
            source,
            last_ms: i64::MIN,
            logical: 0,
            max_drift_ms: DEFAULT_MAX_DRIFT_MS,
        }
    }

    /// The same clock with another drift bound.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::clock::{SystemTime, TimeSource};
    /// use failback::{HybridClock, ReplicaId, Stamp};
    ///
    /// let mut clock = HybridClock::new(ReplicaId::new("primary")?, SystemTime)
    ///     .with_max_drift_ms(1_000);
    /// let a_minute_ahead = Stamp::new(SystemTime.now_ms() + 60_000, 0, ReplicaId::new("secondary")?);
    /// let err = clock.observe(&a_minute_ahead).unwrap_err(); // within 5 minutes, beyond 1 s
    /// assert_eq!(err.max_drift_ms, 1_000);
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn with_max_drift_ms(mut self, max_drift_ms: i64) -> Self {
        self.max_drift_ms = max_drift_ms;
        self
    }

    /// The replica this clock stamps for.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::clock::SystemTime;
    /// use failback::{HybridClock, ReplicaId};
    ///
    /// let clock = HybridClock::new(ReplicaId::new("secondary")?, SystemTime);
    /// assert_eq!(clock.replica().as_str(), "secondary");
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn replica(&self) -> &ReplicaId {
        &self.replica
    }

    /// A new stamp, greater than every stamp issued or observed before.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::clock::SystemTime;
    /// use failback::{HybridClock, ReplicaId};
    ///
    /// let mut clock = HybridClock::new(ReplicaId::new("primary")?, SystemTime);
    /// let stamps: Vec<_> = (0..3).map(|_| clock.tick()).collect();
    /// assert!(stamps[0] < stamps[1] && stamps[1] < stamps[2]);
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn tick(&mut self) -> Stamp {
        let now = self.source.now_ms();
        if now > self.last_ms {
            self.last_ms = now;
            self.logical = 0;
        } else {
            self.bump_logical();
        }
        Stamp::new(self.last_ms, self.logical, self.replica.clone())
    }

    /// Takes a remote stamp into account so later ticks are greater.
    ///
    /// # Errors
    ///
    /// [`DriftError`] when the stamp is more than the drift bound ahead of
    /// the local physical time; the clock is then left unchanged, so a
    /// replica with a clock set to next year cannot drag this one along.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::clock::{SystemTime, TimeSource};
    /// use failback::{HybridClock, ReplicaId, Stamp};
    ///
    /// let mut clock = HybridClock::new(ReplicaId::new("primary")?, SystemTime);
    /// // The secondary's clock runs a minute fast: within the 5-minute bound.
    /// let remote = Stamp::new(SystemTime.now_ms() + 60_000, 0, ReplicaId::new("secondary")?);
    /// clock.observe(&remote)?;
    /// assert!(clock.tick() > remote);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn observe(&mut self, remote: &Stamp) -> Result<(), DriftError> {
        check_drift(remote, self.source.now_ms(), self.max_drift_ms)?;
        match remote.ms().cmp(&self.last_ms) {
            std::cmp::Ordering::Greater => {
                self.last_ms = remote.ms();
                self.logical = remote.logical();
            }
            std::cmp::Ordering::Equal => self.logical = self.logical.max(remote.logical()),
            std::cmp::Ordering::Less => {}
        }
        Ok(())
    }

    fn bump_logical(&mut self) {
        match self.logical.checked_add(1) {
            Some(next) => self.logical = next,
            None => {
                // Four billion writes in one millisecond: borrow the next one.
                self.last_ms = self.last_ms.saturating_add(1);
                self.logical = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(name: &str) -> ReplicaId {
        ReplicaId::new(name).unwrap()
    }

    #[test]
    fn ticks_are_strictly_increasing_even_when_time_goes_back() {
        let time = ManualTime::new(5_000);
        let mut clock = HybridClock::new(hub("a"), time.clone());
        let first = clock.tick();
        time.set(1_000);
        let second = clock.tick();
        assert!(second > first);
        assert_eq!(second.ms(), 5_000);
        assert_eq!(second.logical(), 1);
        time.set(9_000);
        let third = clock.tick();
        assert_eq!((third.ms(), third.logical()), (9_000, 0));
    }

    #[test]
    fn observe_moves_past_remote_stamps_within_the_bound() {
        let time = ManualTime::new(10_000);
        let mut clock = HybridClock::new(hub("a"), time);
        let remote = Stamp::new(12_000, 7, hub("b"));
        clock.observe(&remote).unwrap();
        let next = clock.tick();
        assert!(next > remote);
        assert_eq!((next.ms(), next.logical()), (12_000, 8));
    }

    #[test]
    fn stamps_beyond_the_drift_are_rejected_and_ignored() {
        let time = ManualTime::new(0);
        let mut clock = HybridClock::new(hub("a"), time).with_max_drift_ms(1_000);
        assert!(clock.observe(&Stamp::new(1_000, 0, hub("b"))).is_ok());
        let err = clock.observe(&Stamp::new(1_001, 0, hub("b"))).unwrap_err();
        assert_eq!(err.ahead_ms, 1_001);
        assert_eq!(clock.tick().ms(), 1_000);
    }

    #[test]
    fn two_hours_ahead_is_rejected_by_default() {
        let now = 1_800_000_000_000;
        let far = Stamp::new(now + 2 * 3600 * 1000, 0, hub("b"));
        let err = check_drift(&far, now, DEFAULT_MAX_DRIFT_MS).unwrap_err();
        assert!(err.to_string().contains("ahead of the local clock"));
        let edge = Stamp::new(now + DEFAULT_MAX_DRIFT_MS, 0, hub("b"));
        assert!(check_drift(&edge, now, DEFAULT_MAX_DRIFT_MS).is_ok());
    }

    #[test]
    fn logical_overflow_borrows_a_millisecond() {
        let mut clock = HybridClock::new(hub("a"), ManualTime::new(7));
        clock.tick();
        clock.logical = u32::MAX;
        let next = clock.tick();
        assert_eq!((next.ms(), next.logical()), (8, 0));
    }

    #[test]
    fn system_time_reads_a_plausible_wall_clock() {
        let now = SystemTime.now_ms();
        let year_2020 = 1_577_836_800_000;
        let year_3000 = 32_503_680_000_000;
        assert!(now > year_2020 && now < year_3000, "{now}");
    }

    #[test]
    fn manual_time_moves_only_when_told() {
        let time = ManualTime::new(5);
        time.set(-3);
        assert_eq!(time.now_ms(), -3);
        time.advance(10);
        assert_eq!(time.now_ms(), 7);
    }

    #[test]
    fn the_default_drift_bound_is_five_minutes() {
        assert_eq!(DEFAULT_MAX_DRIFT_MS, 300_000);
        let mut clock = HybridClock::new(hub("a"), ManualTime::new(0));
        assert_eq!(clock.replica(), &hub("a"));
        assert!(clock.observe(&Stamp::new(4 * 60_000, 0, hub("b"))).is_ok());
        assert!(clock.observe(&Stamp::new(6 * 60_000, 0, hub("b"))).is_err());
    }

    #[test]
    fn ticks_in_the_same_millisecond_move_the_logical_counter() {
        let mut clock = HybridClock::new(hub("a"), ManualTime::new(3));
        let stamps: Vec<_> = (0..3).map(|_| clock.tick()).collect();
        let parts: Vec<_> = stamps.iter().map(|s| (s.ms(), s.logical())).collect();
        assert_eq!(parts, [(3, 0), (3, 1), (3, 2)]);
        assert!(stamps.iter().all(|s| s.replica() == &hub("a")));
    }
}
