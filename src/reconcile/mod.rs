//! Reconciliation: from hub snapshots to the merged state and the plans
//! that bring each hub to it.

#[cfg(feature = "drill")]
mod apply;
mod fleet;
mod merge;
mod plan;
mod stamps;
mod unknown;

#[cfg(feature = "drill")]
pub use apply::{HeldDevice, HubImage, ImportError, ImportLine, Record};
pub(crate) use fleet::classify;
pub use fleet::{DeviceOutcome, HubSnapshots, Outcome, merge_fleet};
internals!(fleet::ResolvedOutcome);
#[cfg(feature = "internals")]
pub use fleet::resolve_fleet;
pub use merge::{Base, DeviceMerge, HubDevice, merge_device};
internals!(merge::BASE);
internals!(merge::recreated);
internals!(merge::{Resolved, resolve_device});
pub use plan::{Action, PlanOp, device_plan};
internals!(plan::{SYSTEM_MODULES, identity_differs, is_system_module, twin_differs});
#[cfg(feature = "internals")]
pub use plan::not_carried;
pub(crate) use plan::write_import;
#[cfg(feature = "drill")]
pub(crate) use plan::{every_op, is_edge};
#[cfg(feature = "drill")]
pub use plan::{import_lines, write_import_line};
pub use stamps::{HubClocks, HubTiming, StampError, hub_clocks};
internals!(stamps::default_order);
#[cfg(feature = "drill")]
pub(crate) use unknown::fill_in_place;
pub(crate) use unknown::{HubInput, fill_unknowns, hub_plan, writes_keyless};
