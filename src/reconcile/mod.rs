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
pub use plan::{
    Action, PlanOp, SYSTEM_MODULES, device_plan, identity_differs, import_lines, is_system_module,
    not_carried, twin_differs, write_import_line,
};
pub(crate) use plan::{every_op, is_edge, split_plan, write_import};
pub use stamps::{HubTiming, StampError, default_order, hub_stamps};
