//! The concierge in the drill: the register of the active hub
//! ([`ActiveHub`]), one replica per region, which devices consult to know
//! where to connect. Writes are routed by it: a device writes to the hub
//! the replica it consulted names at that moment.
//!
//! Each cycle:
//!
//! - **Normal operation**: both replicas agree on the primary.
//! - **Failover**: the secondary region's replica (`east`) switches to the
//!   secondary. Without a split brain the primary region's replica
//!   (`west`) hears of it at once, so every device moves. In a split brain
//!   it does not: `west` instead re-asserts the primary at the same epoch
//!   (its region saw its hub come back), so the devices that consult it
//!   keep writing to the primary, and the two replicas hold two claims at
//!   one epoch.
//! - **Failback**: the replicas exchange their registers (the merge reports
//!   the split brain, if any, and resolves it to the least hub id), then
//!   `west` switches back to the primary, past every epoch seen, and `east`
//!   hears of it: the final epoch names the primary everywhere.

use std::collections::BTreeSet;

use serde::Serialize;

use super::oracle::Hub;
use super::sim::Cycle;
use crate::clock::ReplicaId;
use crate::concierge::ActiveHub;
use crate::kernel::Merge;

/// The two regions' registers over one cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CycleConcierge {
    /// What both replicas hold before the failover.
    pub(crate) before: ActiveHub,
    /// Each region's replica during the outage, primary region first.
    pub(crate) outage: [ActiveHub; 2],
    /// The registers exchanged at failback, before the switch back: the
    /// claims of a split brain show here.
    pub(crate) exchanged: ActiveHub,
    /// What every replica holds after failback.
    pub(crate) after: ActiveHub,
}

/// The registers of every cycle, in order.
pub(crate) fn plan(cycles: &[Cycle]) -> Vec<CycleConcierge> {
    let name = |hub: Hub| ReplicaId::new(hub.name()).expect("hub names are valid replica ids");
    let (primary, secondary) = (name(Hub::Primary), name(Hub::Secondary));
    let mut agreed = ActiveHub::new(primary.clone());
    cycles
        .iter()
        .map(|cycle| {
            let before = agreed.clone();
            let (mut west, mut east) = (before.clone(), before.clone());
            east.switch_to(secondary.clone());
            if cycle.split_brain {
                west.switch_to(primary.clone());
            } else {
                west.merge(&east);
            }
            let outage = [west.clone(), east.clone()];
            west.merge(&east);
            let exchanged = west.clone();
            west.switch_to(primary.clone());
            east.merge(&west);
            debug_assert_eq!(east, west);
            agreed = west;
            CycleConcierge {
                before,
                outage,
                exchanged,
                after: agreed.clone(),
            }
        })
        .collect()
}

/// The hub a register names.
fn hub_of(register: &ActiveHub) -> Hub {
    if register.active().as_str() == Hub::Primary.name() {
        Hub::Primary
    } else {
        Hub::Secondary
    }
}

impl CycleConcierge {
    /// Where a device that consults the replica of `region` at `time`
    /// writes.
    pub(crate) fn route(&self, cycle: &Cycle, region: Hub, time: i64) -> Hub {
        if time <= cycle.fail {
            hub_of(&self.before)
        } else if time >= cycle.failback {
            hub_of(&self.after)
        } else {
            hub_of(&self.outage[region.index()])
        }
    }

    /// The hub of the highest epoch any replica held at `time`: where the
    /// concierge had moved devices to.
    pub(crate) fn latest(&self, cycle: &Cycle, time: i64) -> Hub {
        if time <= cycle.fail {
            return hub_of(&self.before);
        }
        let [west, east] = &self.outage;
        if west.epoch() > east.epoch() {
            hub_of(west)
        } else {
            hub_of(east)
        }
    }

    /// The report's view of the cycle.
    pub(crate) fn summary(&self) -> ConciergeCycle {
        ConciergeCycle {
            epoch_before: self.before.epoch(),
            epoch_outage: self.outage.iter().map(ActiveHub::epoch).max().unwrap_or(0),
            split_brain: self
                .exchanged
                .split_brain()
                .map(|claims| claims.into_iter().map(|h| h.as_str().to_owned()).collect()),
            epoch_after: self.after.epoch(),
            active_after: self.after.active().as_str().to_owned(),
        }
    }
}

/// One cycle of the concierge, as the report gives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConciergeCycle {
    /// The epoch before the failover.
    pub epoch_before: u64,
    /// The highest epoch during the outage.
    pub epoch_outage: u64,
    /// The hubs claimed at one epoch, when the replicas split.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split_brain: Option<BTreeSet<String>>,
    /// The epoch after failback.
    pub epoch_after: u64,
    /// The hub active after failback.
    pub active_after: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::sim::plan_cycles;

    #[test]
    fn the_concierge_moves_devices_and_brings_them_back() {
        for split_brain in [false, true] {
            let cycles = plan_cycles(7, 3, 300_000, split_brain, None);
            let plans = plan(&cycles);
            for (n, (cycle, cc)) in cycles.iter().zip(&plans).enumerate() {
                let mid = (cycle.fail + cycle.failback) / 2;
                assert_eq!(cc.route(cycle, Hub::Primary, cycle.fail), Hub::Primary);
                assert_eq!(cc.route(cycle, Hub::Secondary, mid), Hub::Secondary);
                let west = cc.route(cycle, Hub::Primary, mid);
                assert_eq!(west == Hub::Primary, split_brain);
                assert_eq!(cc.latest(cycle, mid), Hub::Secondary);
                assert_eq!(cc.after.active().as_str(), "primary");
                assert!(cc.after.split_brain().is_none());
                // Two switches a cycle: failover, failback.
                assert_eq!(cc.after.epoch(), 2 * (n as u64 + 1));
                let summary = cc.summary();
                assert_eq!(summary.split_brain.is_some(), split_brain);
            }
        }
    }
}
