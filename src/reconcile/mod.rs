//! Reconciliation: from hub snapshots to the merged state and the plans
//! that bring each hub to it.

#[cfg(feature = "drill")]
mod apply;
mod fleet;
mod merge;
mod plan;
mod stamps;

#[cfg(feature = "drill")]
pub use apply::{HeldDevice, HubImage, ImportError, ImportLine, Record};
pub(crate) use fleet::classify;
pub use fleet::{
    DeviceOutcome, HubSnapshots, Outcome, ResolvedOutcome, merge_fleet, resolve_fleet,
};
pub use merge::{
    BASE, Base, DeviceMerge, HubDevice, Resolved, merge_device, recreated, resolve_device,
};
pub use plan::{
    Action, PlanOp, SYSTEM_MODULES, device_plan, identity_differs, is_system_module, not_carried,
    twin_differs,
};
#[cfg(feature = "drill")]
pub(crate) use plan::{every_op, import_guard, is_edge};
#[cfg(feature = "drill")]
pub use plan::{import_lines, write_import_line};
pub(crate) use plan::{split_plan, write_import};
pub use stamps::{HubClocks, HubTiming, StampError, default_order, hub_clocks};
