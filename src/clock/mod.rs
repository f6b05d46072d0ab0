//! Clocks: who wrote what ([`Dot`]), what has been seen ([`VersionVector`])
//! and when ([`Stamp`], issued by a [`HybridClock`]).

mod dot;
mod hlc;
mod replica;
mod stamp;
mod version_vector;

pub use dot::Dot;
pub(crate) use hlc::check_drift;
pub use hlc::{DriftError, HybridClock, ManualTime, SystemTime, TimeSource};
pub use replica::{InvalidReplicaId, ReplicaId};
pub use stamp::Stamp;
pub use version_vector::VersionVector;
