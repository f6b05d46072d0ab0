//! Reconciliation: from hub snapshots to the merged state and the plans
//! that bring each hub to it.

mod apply;
mod fleet;
mod merge;
mod plan;
mod stamps;

pub use apply::{HubImage, ImportError, ImportLine, Record};
pub(crate) use fleet::classify;
pub use fleet::{
    DeviceOutcome, HubSnapshots, Outcome, ResolvedOutcome, merge_fleet, resolve_fleet,
};
pub use merge::{
    BASE, Base, DeviceMerge, HubDevice, Resolved, base_replica, merge_device, recreated,
    resolve_device,
};
pub(crate) use plan::write_import;
pub use plan::{
    Action, PlanOp, device_plan, identity_differs, import_lines, twin_differs, write_import_line,
};
pub use stamps::{HubTiming, StampError, default_order, hub_stamps};
