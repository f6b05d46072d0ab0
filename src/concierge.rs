//! The concierge's register of the active hub.
//!
//! The concierge tells each device which hub to connect to. Each of its
//! replicas (one per region, say) keeps an [`ActiveHub`]: an **epoch** and
//! the hub made active at that epoch. A failover or a failback is a switch:
//! it bumps the epoch past every epoch the switching replica has seen, so
//! replicas that exchange their registers in any order, any number of
//! times, agree on the last switch. Two replicas that switched at the same
//! epoch without hearing of each other (a split brain) keep both claims;
//! the register resolves them deterministically (the least hub id) and
//! says so ([`ActiveHub::split_brain`]), until the next switch settles it.
//!
//! The register is a join-semilattice: the higher epoch wins whole, equal
//! epochs take the union of their claims. Its merge is commutative,
//! associative and idempotent.
//!
//! # Example
//!
//! ```
//! use failback::concierge::ActiveHub;
//! use failback::kernel::Merge;
//! use failback::ReplicaId;
//!
//! let primary = ReplicaId::new("primary")?;
//! let secondary = ReplicaId::new("secondary")?;
//! let mut west = ActiveHub::new(primary.clone());
//! let mut east = west.clone();
//!
//! // The east site fails over; the west site hears of it later.
//! east.switch_to(secondary.clone());
//! west.merge(&east);
//! assert_eq!(west.active(), &secondary);
//!
//! // A split brain: both switch at the same epoch, unaware of each other.
//! west.switch_to(primary.clone());
//! east.switch_to(secondary.clone());
//! let mut seen = west.clone();
//! seen.merge(&east);
//! assert_eq!(seen.split_brain().map(|c| c.len()), Some(2));
//! assert_eq!(seen.active(), &primary); // the least id, the same everywhere
//!
//! // The failback settles it.
//! seen.switch_to(primary.clone());
//! assert!(seen.split_brain().is_none());
//! # Ok::<(), failback::clock::InvalidReplicaId>(())
//! ```

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::clock::ReplicaId;
use crate::kernel::Merge;

/// Which hub is active, as one concierge replica knows it: the epoch of
/// the last switch it has seen and the hub made active at that epoch, with
/// the rivals claimed at the same epoch after a split brain (all greater
/// than the hub, so every replica that has seen the same claims names the
/// same hub).
///
/// # Example
///
/// ```
/// use failback::concierge::ActiveHub;
/// use failback::ReplicaId;
///
/// // Serialized as the concierge stores it: rivals only after a split brain.
/// let register: ActiveHub = serde_json::from_str(r#"{"epoch":4,"hub":"secondary"}"#)?;
/// assert_eq!(register.epoch(), 4);
/// assert_eq!(register.active(), &ReplicaId::new("secondary")?);
/// assert_eq!(serde_json::to_string(&register)?, r#"{"epoch":4,"hub":"secondary"}"#);
///
/// // A rival not after the hub was written by something else: refused.
/// let bad = r#"{"epoch":4,"hub":"secondary","rivals":["primary"]}"#;
/// assert!(serde_json::from_str::<ActiveHub>(bad).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawActiveHub")]
pub struct ActiveHub {
    epoch: u64,
    hub: ReplicaId,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    rivals: BTreeSet<ReplicaId>,
}

/// An [`ActiveHub`] as read, before it is checked.
#[derive(Deserialize)]
struct RawActiveHub {
    epoch: u64,
    hub: ReplicaId,
    #[serde(default)]
    rivals: BTreeSet<ReplicaId>,
}

/// A register read from a file whose rivals are not all greater than its
/// hub: written by something else than [`ActiveHub`], or corrupted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("active-hub register at epoch {epoch}: rival {rival} is not after hub {hub}")]
pub(crate) struct InvalidActiveHub {
    /// The epoch read.
    epoch: u64,
    /// The hub read.
    hub: ReplicaId,
    /// The first rival that is not greater than the hub.
    rival: ReplicaId,
}

impl TryFrom<RawActiveHub> for ActiveHub {
    type Error = InvalidActiveHub;

    fn try_from(raw: RawActiveHub) -> Result<Self, Self::Error> {
        if let Some(rival) = raw.rivals.first().filter(|r| **r <= raw.hub) {
            return Err(InvalidActiveHub {
                epoch: raw.epoch,
                hub: raw.hub.clone(),
                rival: rival.clone(),
            });
        }
        Ok(Self {
            epoch: raw.epoch,
            hub: raw.hub,
            rivals: raw.rivals,
        })
    }
}

impl ActiveHub {
    /// The register as first set up: `hub` active at epoch 0.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::concierge::ActiveHub;
    /// use failback::ReplicaId;
    ///
    /// let register = ActiveHub::new(ReplicaId::new("primary")?);
    /// assert_eq!((register.epoch(), register.active().as_str()), (0, "primary"));
    /// assert!(register.split_brain().is_none());
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn new(hub: ReplicaId) -> Self {
        Self {
            epoch: 0,
            hub,
            rivals: BTreeSet::new(),
        }
    }

    /// The epoch of the last switch this replica has seen.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::concierge::ActiveHub;
    /// use failback::ReplicaId;
    ///
    /// let mut register = ActiveHub::new(ReplicaId::new("primary")?);
    /// register.switch_to(ReplicaId::new("secondary")?);
    /// assert_eq!(register.epoch(), 1);
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The active hub: the one made active at [`epoch`](Self::epoch), or,
    /// after a split brain, the least of the hubs claimed at it.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::concierge::ActiveHub;
    /// use failback::kernel::Merge;
    /// use failback::ReplicaId;
    ///
    /// let mut west = ActiveHub::new(ReplicaId::new("primary")?);
    /// let mut east = west.clone();
    /// west.switch_to(ReplicaId::new("west-hub")?);
    /// east.switch_to(ReplicaId::new("east-hub")?);
    /// west.merge(&east);
    /// assert_eq!(west.active().as_str(), "east-hub"); // the least of the claims
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn active(&self) -> &ReplicaId {
        &self.hub
    }

    /// Every hub claimed at the current epoch, when there are several: two
    /// replicas switched at the same epoch without seeing each other.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::concierge::ActiveHub;
    /// use failback::kernel::Merge;
    /// use failback::ReplicaId;
    ///
    /// let (primary, secondary) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
    /// let mut west = ActiveHub::new(primary.clone());
    /// let mut east = west.clone();
    /// west.switch_to(primary.clone());
    /// east.switch_to(secondary.clone());
    /// assert!(west.split_brain().is_none());
    /// west.merge(&east);
    /// let claims: Vec<_> = west.split_brain().into_iter().flatten().collect();
    /// assert_eq!(claims, [&primary, &secondary]);
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn split_brain(&self) -> Option<BTreeSet<&ReplicaId>> {
        (!self.rivals.is_empty()).then(|| std::iter::once(&self.hub).chain(&self.rivals).collect())
    }

    /// A failover or a failback: makes `hub` active at an epoch above every
    /// one this replica has seen (saturating at `u64::MAX`), and returns
    /// that epoch.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::concierge::ActiveHub;
    /// use failback::ReplicaId;
    ///
    /// let primary = ReplicaId::new("primary")?;
    /// let mut register = ActiveHub::new(primary.clone());
    /// assert_eq!(register.switch_to(ReplicaId::new("secondary")?), 1); // failover
    /// assert_eq!(register.switch_to(primary.clone()), 2); // failback
    /// assert_eq!(register.active(), &primary);
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn switch_to(&mut self, hub: ReplicaId) -> u64 {
        self.epoch = self.epoch.saturating_add(1);
        self.hub = hub;
        self.rivals.clear();
        self.epoch
    }

    /// Whether `self` has seen every switch `other` has: merging `other`
    /// into it would change nothing.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::concierge::ActiveHub;
    /// use failback::kernel::Merge;
    /// use failback::ReplicaId;
    ///
    /// let mut west = ActiveHub::new(ReplicaId::new("primary")?);
    /// let mut east = west.clone();
    /// east.switch_to(ReplicaId::new("secondary")?);
    /// assert!(east.dominates(&west) && !west.dominates(&east));
    /// west.merge(&east);
    /// assert!(west.dominates(&east) && east.dominates(&west));
    /// # Ok::<(), failback::clock::InvalidReplicaId>(())
    /// ```
    pub fn dominates(&self, other: &Self) -> bool {
        self.epoch > other.epoch
            || (self.epoch == other.epoch
                && std::iter::once(&other.hub)
                    .chain(&other.rivals)
                    .all(|h| *h == self.hub || self.rivals.contains(h)))
    }
}

impl Merge for ActiveHub {
    /// The higher epoch wins whole; at the same epoch, the claims of both,
    /// the least of them active.
    fn merge(&mut self, other: &Self) {
        match other.epoch.cmp(&self.epoch) {
            std::cmp::Ordering::Greater => self.clone_from(other),
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => {
                let mut all = std::mem::take(&mut self.rivals);
                all.insert(self.hub.clone());
                all.insert(other.hub.clone());
                all.extend(other.rivals.iter().cloned());
                if let Some(least) = all.pop_first() {
                    self.hub = least;
                }
                self.rivals = all;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn hub(n: u8) -> ReplicaId {
        ReplicaId::new(&format!("hub-{n}")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A register reached by a few switches and merges from the start.
    fn register() -> impl Strategy<Value = ActiveHub> {
        (0u8..3, prop::collection::vec((0u64..4, 0u8..3), 0..4)).prop_map(|(first, claims)| {
            let mut r = ActiveHub::new(hub(first));
            for (epoch, h) in claims {
                let other = ActiveHub {
                    epoch,
                    hub: hub(h),
                    rivals: BTreeSet::new(),
                };
                r.merge(&other);
            }
            r
        })
    }

    fn merged(a: &ActiveHub, b: &ActiveHub) -> ActiveHub {
        let mut out = a.clone();
        out.merge(b);
        out
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in register(), b in register()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        }

        #[test]
        fn merge_is_associative(a in register(), b in register(), c in register()) {
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        }

        #[test]
        fn merge_is_idempotent_and_an_upper_bound(a in register(), b in register()) {
            prop_assert_eq!(merged(&a, &a), a.clone());
            let m = merged(&a, &b);
            prop_assert!(m.dominates(&a) && m.dominates(&b));
            prop_assert_eq!(merged(&m, &a), m.clone());
        }

        /// `dominates` says exactly whether a merge would change nothing.
        #[test]
        fn dominates_is_a_merge_that_changes_nothing(a in register(), b in register()) {
            prop_assert_eq!(a.dominates(&b), merged(&a, &b) == a);
        }

        /// A replica that has merged every other's register and switches
        /// wins everywhere: the last switch seen is the one obeyed.
        #[test]
        fn a_switch_after_seeing_everything_wins(
            a in register(), b in register(), to in 0u8..3,
        ) {
            let mut r = merged(&a, &b);
            let epoch = r.switch_to(hub(to));
            prop_assert!(epoch > a.epoch() && epoch > b.epoch());
            for other in [&a, &b] {
                let mut there = other.clone();
                there.merge(&r);
                prop_assert_eq!(there.active(), &hub(to));
                prop_assert!(there.split_brain().is_none());
            }
        }
    }

    #[test]
    fn a_split_brain_resolves_to_the_least_hub_everywhere() {
        let start = ActiveHub::new(hub(0));
        let (mut x, mut y) = (start.clone(), start);
        x.switch_to(hub(2));
        y.switch_to(hub(1));
        let (xy, yx) = (merged(&x, &y), merged(&y, &x));
        assert_eq!(xy, yx);
        assert_eq!(xy.active(), &hub(1));
        assert_eq!(
            xy.split_brain()
                .map(|c| c.into_iter().cloned().collect::<Vec<_>>()),
            Some(vec![hub(1), hub(2)])
        );
    }

    #[test]
    fn a_register_whose_rivals_precede_its_hub_is_refused_when_read() {
        let good: Result<ActiveHub, _> =
            serde_json::from_str(r#"{"epoch":3,"hub":"primary","rivals":["secondary"]}"#);
        assert_eq!(good.map(|r| r.epoch()).ok(), Some(3));
        let bad = serde_json::from_str::<ActiveHub>(
            r#"{"epoch":3,"hub":"secondary","rivals":["primary"]}"#,
        );
        let message = bad.map(|_| ()).unwrap_err().to_string();
        assert!(
            message.contains("rival primary is not after hub secondary"),
            "{message}"
        );
        let r = ActiveHub::new(hub(0));
        let text = serde_json::to_string(&r).unwrap_or_default();
        assert_eq!(text, r#"{"epoch":0,"hub":"hub-0"}"#);
        assert_eq!(serde_json::from_str::<ActiveHub>(&text).ok(), Some(r));
    }
}
