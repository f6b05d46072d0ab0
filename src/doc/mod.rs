//! The IoT domain: devices, modules and their twins as CRDT documents, the
//! failback policies, and the conflict log.
//!
//! Where to find a rule: `status` (disabled wins) and `authentication`
//! (one whole value) in `entity`; deletes, re-creates and
//! modules in `device`; twin leaves and `null` in `twin`; the choices a
//! caller can change in [`Policies`]; jobs (status only moves forward) in
//! `JobDoc`; cloud-to-device queues (once per message id, completed
//! anywhere means never redelivered) in `C2dQueues`.

mod c2d;
mod compact;
mod conflict;
mod device;
mod entity;
mod hub;
mod job;
mod key;
mod patch;
mod policy;
mod secret;
mod snapshot;
mod twin;
mod values;
mod write;

internals!(c2d::{C2dMessage, C2dQueues, Outcome, QUEUE_LIMIT});
pub(crate) use compact::CompactJson;
pub use conflict::{Conflict, Rule, Side};
pub use hub::{AppMergeError, EncodeError, HubDelta, HubState, TwinPatch};
internals!(job::{JobDoc, JobSet, JobStatistics, JobStatus});
pub(crate) use key::Key;
pub(crate) use patch::{merge_patch, stamped, without_nulls};
pub use policy::{DeletePolicy, Policies, StatusPolicy};
pub use secret::Secret;
#[cfg(feature = "drill")]
pub(crate) use secret::base64;
pub use snapshot::{DeviceSnapshot, DeviceTimes, Entity, EntityTimes, MetaTree};
pub use twin::Section;
pub(crate) use values::Extra;
pub use values::{
    AuthType, Authentication, SectionMap, Status, StatusValue, SymmetricKey, X509Thumbprint,
};
internals!(values::JsonMap);
