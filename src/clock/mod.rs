//! Clocks: who wrote what ([`Dot`]), what has been seen ([`VersionVector`])
//! and when ([`Stamp`], issued by a [`HybridClock`]).

mod dot;
mod hlc;
mod replica;
mod stamp;
mod version_vector;

pub use dot::Dot;
pub use hlc::{DriftError, HybridClock, SystemTime, TimeSource};
internals!(hlc::{DEFAULT_MAX_DRIFT_MS, ManualTime, check_drift});
pub use replica::{InvalidReplicaId, ReplicaId};
pub use stamp::Stamp;
pub(crate) use stamp::format_time;
pub use version_vector::VersionVector;
