//! Reconciliation: from hub snapshots to the merged state.

mod merge;

pub use merge::{BASE, Base, DeviceMerge, HubDevice, base_replica, merge_device};
