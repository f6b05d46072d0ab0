//! # failback
//!
//! Merge the diverged state of two or more IoT hubs after a regional
//! failover, so that failback loses nothing, lets no shut-out device back
//! in, and gives the same answer however the changes arrived.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod appmeta;
pub mod clock;
pub mod doc;
#[cfg(feature = "drill")]
pub mod drill;
pub mod format;
mod fsio;
pub mod job;
pub mod kernel;
pub mod reconcile;
pub mod replica;
pub mod validate;

pub use clock::{Dot, ReplicaId, Stamp, VersionVector};
