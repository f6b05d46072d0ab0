//! The IoT domain: devices, modules and their twins as CRDT documents, the
//! failback policies, and the conflict log.

mod secret;
mod snapshot;
mod values;

pub use secret::Secret;
pub use snapshot::{DeviceSnapshot, Entity, EntityTimes, MetaTree};
pub use values::{
    AuthType, Authentication, Extra, JsonMap, Status, StatusValue, SymmetricKey, X509Thumbprint,
};
