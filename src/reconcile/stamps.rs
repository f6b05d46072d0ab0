//! Policy 5: stamping writes that carry no time of their own.

use std::collections::BTreeMap;

use crate::clock::{ReplicaId, Stamp, check_drift};

/// What a caller knows about when one hub took its writes: what
/// [`hub_clocks`] places the hubs' untimed writes in time by.
///
/// # Example
///
/// ```
/// use failback::reconcile::{hub_clocks, HubClocks, HubTiming};
/// use failback::ReplicaId;
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let hubs = [
///     // A twin file: stamped at the newest time it carries.
///     HubTiming { hub: p.clone(), real_times: true, as_of: None, newest: Some(1_795_860_000_000) },
///     // An export: no times of its own, so its as-of time.
///     HubTiming { hub: s.clone(), real_times: false, as_of: Some(1_795_867_200_000), newest: None },
/// ];
/// let clocks = hub_clocks(&hubs, None, 1_795_867_200_000, 300_000)?;
/// assert_eq!(clocks, HubClocks::Times([(p, 1_795_860_000_000), (s, 1_795_867_200_000)].into()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubTiming {
    /// The hub.
    pub hub: ReplicaId,
    /// Whether its input carries real per-field times (twin files).
    pub real_times: bool,
    /// The end of the period in which the hub was active, in ms, if given.
    pub as_of: Option<i64>,
    /// For inputs with real times: the newest time they carry.
    pub newest: Option<i64>,
}

/// Why the hubs' writes cannot be put on one time scale.
///
/// # Example
///
/// ```
/// use failback::reconcile::{hub_clocks, HubTiming, StampError};
/// use failback::ReplicaId;
///
/// let hubs = ["primary", "secondary"].map(|h| HubTiming {
///     hub: ReplicaId::new(h).unwrap(), real_times: false, as_of: None, newest: None,
/// });
/// let error = hub_clocks(&hubs, None, 0, 300_000).unwrap_err();
/// assert_eq!(error, StampError::NeedOrder);
/// assert!(error.to_string().starts_with("the hubs carry no times"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StampError {
    /// Inputs with real times mixed with inputs that have no time at all.
    #[error(
        "hub {hub} has no per-field times and no as-of time while other inputs carry real times"
    )]
    MissingAsOf {
        /// The hub without time.
        hub: ReplicaId,
    },
    /// Some export hubs have an as-of time and some do not.
    #[error("hub {hub} has no as-of time while other hubs have one")]
    PartialAsOf {
        /// The hub without an as-of time.
        hub: ReplicaId,
    },
    /// No input has a time and no activation order was given.
    #[error(
        "the hubs carry no times: an activation order (most recent last) or an as-of time for each hub is needed"
    )]
    NeedOrder,
    /// The activation order does not name exactly the hubs given.
    #[error("the activation order must name each hub exactly once; {hub} is missing or repeated")]
    BadOrder {
        /// The hub missing from, or repeated in, the order.
        hub: ReplicaId,
    },
    /// A time beyond the allowed clock drift.
    #[error(transparent)]
    Drift(#[from] crate::clock::DriftError),
    /// A hub to merge has no stamp: its writes could not be placed in time,
    /// and merging without them would lose them.
    #[error("hub {hub} has no stamp")]
    Unstamped {
        /// The hub without a stamp.
        hub: ReplicaId,
    },
}

/// Where each hub's untimed writes sit in time ([policy 5](crate::contract#policies)):
/// either the order the hubs were active in, or a time per hub, never a mix.
///
/// Stamps made from an activation order are ranks, not times; a conflict
/// record says which scale its stamps are on from [`is_real_time`](Self::is_real_time),
/// not from how large a number is.
///
/// # Example
///
/// ```
/// use failback::reconcile::HubClocks;
/// use failback::ReplicaId;
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let clocks = HubClocks::Order(vec![p.clone(), s.clone()]);
/// assert!(!clocks.is_real_time());
/// assert!(clocks.stamp(&p)? < clocks.stamp(&s)?);
/// assert_eq!(clocks.stamp(&p)?.ms(), 1); // the first hub active is rank 1
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubClocks {
    /// No input carries a time: the hubs in the order they were active,
    /// most recent last. The first is rank 1, the next 2, and so on.
    Order(Vec<ReplicaId>),
    /// A time per hub, in ms since the Unix epoch: its as-of time, or the
    /// newest time its input carries (0 when it carries none).
    Times(BTreeMap<ReplicaId, i64>),
}

impl HubClocks {
    /// Whether the stamps are real times (else activation ranks).
    ///
    /// # Example
    ///
    /// ```
    /// use failback::reconcile::HubClocks;
    /// use failback::ReplicaId;
    ///
    /// let primary = ReplicaId::new("primary")?;
    /// assert!(HubClocks::Times([(primary.clone(), 1_795_867_200_000)].into()).is_real_time());
    /// assert!(!HubClocks::Order(vec![primary]).is_real_time());
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn is_real_time(&self) -> bool {
        matches!(self, Self::Times(_))
    }

    /// The stamp of `hub`'s untimed writes.
    ///
    /// # Errors
    ///
    /// [`StampError::Unstamped`] when `hub` has no clock here: merging
    /// without its writes would lose them.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::reconcile::{HubClocks, StampError};
    /// use failback::ReplicaId;
    ///
    /// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
    /// let clocks = HubClocks::Times([(p.clone(), 1_795_867_200_000)].into());
    /// assert_eq!(clocks.stamp(&p)?.ms(), 1_795_867_200_000);
    /// assert_eq!(clocks.stamp(&s), Err(StampError::Unstamped { hub: s.clone() }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stamp(&self, hub: &ReplicaId) -> Result<Stamp, StampError> {
        let ms = match self {
            Self::Order(order) => order
                .iter()
                .position(|h| h == hub)
                .map(|rank| i64::try_from(rank).unwrap_or(i64::MAX - 1) + 1),
            Self::Times(times) => times.get(hub).copied(),
        };
        ms.map(|ms| Stamp::new(ms, 0, hub.clone()))
            .ok_or_else(|| StampError::Unstamped { hub: hub.clone() })
    }

    /// Every hub's stamp, by hub: what [`merge_fleet`](super::merge_fleet)
    /// takes.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::reconcile::HubClocks;
    /// use failback::ReplicaId;
    ///
    /// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
    /// // Failed over to the secondary, then back: the primary is active last.
    /// let stamps = HubClocks::Order(vec![s.clone(), p.clone()]).stamps();
    /// assert_eq!((stamps[&s].ms(), stamps[&p].ms()), (1, 2));
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn stamps(&self) -> BTreeMap<ReplicaId, Stamp> {
        let hubs: Vec<&ReplicaId> = match self {
            Self::Order(order) => order.iter().collect(),
            Self::Times(times) => times.keys().collect(),
        };
        hubs.into_iter()
            .filter_map(|hub| Some((hub.clone(), self.stamp(hub).ok()?)))
            .collect()
    }
}

/// The stamp of `hub`'s writes.
///
/// # Errors
///
/// [`StampError::Unstamped`] when `stamps` has none for it.
pub(crate) fn stamp_of<'a>(
    stamps: &'a BTreeMap<ReplicaId, Stamp>,
    hub: &ReplicaId,
) -> Result<&'a Stamp, StampError> {
    stamps
        .get(hub)
        .ok_or_else(|| StampError::Unstamped { hub: hub.clone() })
}

/// The clock each hub's untimed writes take ([policy 5](crate::contract#policies)).
///
/// With as-of times, a hub's writes are stamped at its as-of time. When no
/// input carries any time, the activation order serves as time: the first
/// hub active is 1, the next 2. Real-time inputs without an as-of time are
/// stamped at the newest time they carry. Every time is checked against
/// `now_ms` and `max_drift_ms`.
///
/// # Errors
///
/// [`StampError`] when the hubs' times cannot be put on one scale, saying
/// what to add, or when a time is beyond the drift bound.
///
/// # Example
///
/// ```
/// use failback::reconcile::{hub_clocks, HubClocks, HubTiming};
/// use failback::ReplicaId;
///
/// let hubs = ["primary", "secondary"].map(|h| HubTiming {
///     hub: ReplicaId::new(h).unwrap(), real_times: false, as_of: None, newest: None,
/// });
/// let order = [ReplicaId::new("primary")?, ReplicaId::new("secondary")?];
/// let clocks = hub_clocks(&hubs, Some(&order), 0, 300_000)?;
/// assert_eq!(clocks, HubClocks::Order(order.to_vec()));
/// assert!(clocks.stamp(&order[0])? < clocks.stamp(&order[1])?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn hub_clocks(
    hubs: &[HubTiming],
    active_order: Option<&[ReplicaId]>,
    now_ms: i64,
    max_drift_ms: i64,
) -> Result<HubClocks, StampError> {
    let any_real = hubs.iter().any(|h| h.real_times);
    let untimed: Vec<&HubTiming> = hubs.iter().filter(|h| !h.real_times).collect();
    let with_as_of = untimed.iter().filter(|h| h.as_of.is_some()).count();
    if with_as_of == 0 && !any_real {
        let order = active_order.ok_or(StampError::NeedOrder)?;
        for hub in hubs {
            if order.iter().filter(|h| **h == hub.hub).count() != 1 {
                return Err(StampError::BadOrder {
                    hub: hub.hub.clone(),
                });
            }
        }
        if let Some(extra) = order.iter().find(|h| !hubs.iter().any(|x| x.hub == **h)) {
            return Err(StampError::BadOrder { hub: extra.clone() });
        }
        return Ok(HubClocks::Order(order.to_vec()));
    }
    for hub in &untimed {
        if hub.as_of.is_none() {
            return Err(if any_real {
                StampError::MissingAsOf {
                    hub: hub.hub.clone(),
                }
            } else {
                StampError::PartialAsOf {
                    hub: hub.hub.clone(),
                }
            });
        }
    }
    let mut times = BTreeMap::new();
    for hub in hubs {
        let ms = hub.as_of.or(hub.newest).unwrap_or(0);
        check_drift(&Stamp::new(ms, 0, hub.hub.clone()), now_ms, max_drift_ms)?;
        times.insert(hub.hub.clone(), ms);
    }
    Ok(HubClocks::Times(times))
}

/// The default activation order: `primary` then `secondary`, when those are
/// exactly the hubs given.
pub fn default_order(hubs: &[ReplicaId]) -> Option<Vec<ReplicaId>> {
    let mut names: Vec<&str> = hubs.iter().map(ReplicaId::as_str).collect();
    names.sort_unstable();
    (names == ["primary", "secondary"]).then(|| {
        ["primary", "secondary"]
            .iter()
            .filter_map(|n| ReplicaId::new(n).ok())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(name: &str, real: bool, as_of: Option<i64>) -> HubTiming {
        HubTiming {
            hub: ReplicaId::new(name).unwrap(),
            real_times: real,
            as_of,
            newest: real.then_some(1_000),
        }
    }

    #[test]
    fn mixing_real_times_with_untimed_hubs_says_what_to_add() {
        let hubs = [timing("a", true, None), timing("b", false, None)];
        let err = hub_clocks(&hubs, None, 10_000, 1).unwrap_err();
        assert_eq!(
            err,
            StampError::MissingAsOf {
                hub: hubs[1].hub.clone()
            },
            "{err}"
        );
        let hubs = [timing("a", false, Some(5)), timing("b", false, None)];
        assert!(matches!(
            hub_clocks(&hubs, None, 10_000, 1),
            Err(StampError::PartialAsOf { .. })
        ));
    }

    #[test]
    fn order_is_required_and_checked_when_nothing_has_time() {
        let hubs = [timing("x", false, None), timing("y", false, None)];
        assert_eq!(hub_clocks(&hubs, None, 0, 1), Err(StampError::NeedOrder));
        let [x, y, z] = ["x", "y", "z"].map(|n| ReplicaId::new(n).unwrap());
        let bad = |order: &[&ReplicaId]| {
            let order: Vec<ReplicaId> = order.iter().map(|h| (*h).clone()).collect();
            match hub_clocks(&hubs, Some(&order), 0, 1) {
                Err(StampError::BadOrder { hub }) => Some(hub),
                _ => None,
            }
        };
        // Each hub once, and no other: the error names the hub at fault.
        assert_eq!(bad(&[&x]), Some(y.clone()), "a hub the order leaves out");
        assert_eq!(bad(&[&x, &y, &x]), Some(x.clone()), "a hub named twice");
        assert_eq!(bad(&[&x, &y, &z]), Some(z), "a hub no input gives");
        assert_eq!(bad(&[&y, &x]), None);
        assert_eq!(
            hub_clocks(&hubs, Some(&[y.clone(), x.clone()]), 0, 1),
            Ok(HubClocks::Order(vec![y, x]))
        );
        let ids: Vec<ReplicaId> = hubs.iter().map(|h| h.hub.clone()).collect();
        assert_eq!(default_order(&ids), None);
    }

    #[test]
    fn as_of_times_beyond_the_drift_are_rejected() {
        let hubs = [
            timing("a", false, Some(10_000)),
            timing("b", false, Some(100)),
        ];
        assert!(matches!(
            hub_clocks(&hubs, None, 0, 5_000),
            Err(StampError::Drift(_))
        ));
        let clocks = hub_clocks(&hubs, None, 10_000, 5_000).unwrap();
        assert_eq!(clocks.stamps().len(), 2);
        assert!(clocks.is_real_time());
        assert_eq!(clocks.stamp(&hubs[1].hub).unwrap().ms(), 100);
    }

    #[test]
    fn an_as_of_time_near_the_epoch_is_still_a_time() {
        // Nothing but the clock's kind tells ranks from times: an as-of
        // time of 2 ms past the epoch is a time, and rank 2 is a rank.
        let hubs = [timing("a", false, Some(1)), timing("b", false, Some(2))];
        let clocks = hub_clocks(&hubs, None, 10, 5_000).unwrap();
        assert!(clocks.is_real_time());
        let order = [hubs[0].hub.clone(), hubs[1].hub.clone()];
        let ranks = hub_clocks(
            &[timing("a", false, None), timing("b", false, None)],
            Some(&order),
            10,
            5_000,
        )
        .unwrap();
        assert!(!ranks.is_real_time());
        assert_eq!(clocks.stamps(), ranks.stamps());
    }

    #[test]
    fn a_hub_without_a_clock_is_unstamped() {
        let (a, z) = (ReplicaId::new("a").unwrap(), ReplicaId::new("z").unwrap());
        for clocks in [
            HubClocks::Order(vec![a.clone()]),
            HubClocks::Times(BTreeMap::from([(a.clone(), 5)])),
        ] {
            assert!(clocks.stamp(&a).is_ok());
            assert_eq!(
                clocks.stamp(&z),
                Err(StampError::Unstamped { hub: z.clone() })
            );
            assert_eq!(clocks.stamps().len(), 1);
        }
    }
}
