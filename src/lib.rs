//! # failback
//!
//! Merge the diverged state of two or more IoT hubs after a regional
//! failover, so that failback loses nothing, lets no shut-out device back
//! in, and gives the same answer however the changes arrived.
//!
//! ```
//! use failback::doc::Policies;
//! use failback::format::DeviceRecord;
//! use failback::reconcile::{Base, HubDevice, merge_device};
//! use failback::{ReplicaId, Stamp};
//!
//! let twin = |fan: u8, at: &str| format!(
//!     r#"{{"deviceId":"d1","properties":{{"desired":{{"fan":{fan},
//!         "$metadata":{{"fan":{{"$lastUpdated":"{at}"}}}}}}}}}}"#);
//! let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
//! let a = DeviceRecord::from_twin_json(&twin(3, "2024-03-01T12:00:00Z"))?;
//! let b = DeviceRecord::from_twin_json(&twin(5, "2024-03-01T12:03:00Z"))?;
//! let (sa, sb) = (Stamp::new(0, 0, p.clone()), Stamp::new(0, 0, s.clone()));
//! let hubs = [
//!     HubDevice { hub: &p, device: Some(&a.snapshot), times: a.times.as_ref(), stamp: &sa, recreated: false },
//!     HubDevice { hub: &s, device: Some(&b.snapshot), times: b.times.as_ref(), stamp: &sb, recreated: false },
//! ];
//! let merge = merge_device(Base::Unknown, &hubs, &Policies::default());
//! assert_eq!(merge.merged.unwrap().device.desired["fan"], 5); // the later write
//! assert_eq!(merge.conflicts[0].losers[0].value, 3); // and the loser, kept
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The model
//!
//! Each device identity with its twin, each module, each job, each
//! cloud-to-device queue and each application-metadata document is a
//! **document**: a CRDT whose merge is commutative, associative and
//! idempotent, so every replica that has seen the same writes holds the same
//! bytes, whatever the order and however often it saw them.
//!
//! - A **dot** ([`Dot`]: replica and counter) names one write. A **version
//!   vector** ([`VersionVector`]) says which writes a replica has seen. Two
//!   writes are **concurrent** when neither saw the other: causality, never
//!   wall-clock time, decides whether there is a conflict.
//! - A **stamp** ([`Stamp`]: milliseconds, logical counter, replica, issued
//!   by a [`HybridClock`] or taken from the hub's own
//!   times) only *ranks* concurrent writes, to pick a winner.
//! - Concurrent writes to one field are kept side by side; the field's
//!   **policy** picks the one shown when the state is read:
//!   1. *disabled wins* over a concurrent enable;
//!   2. *delete wins* over a concurrent update, and a re-created device
//!      starts empty;
//!   3. *authentication is one value*: keys are never mixed across hubs;
//!   4. *twin leaves* merge one by one, by stamp, `null` removing;
//!   5. writes without a time of their own (bulk exports) take the hub's
//!      *as-of time*, or the order in which the hubs were active;
//!   6. a stamp too far ahead of the clock is refused (*bounded drift*);
//!   7. one device id *created on several hubs* is one device, merged field
//!      by field.
//! - **Nothing lost**: every value written is either in the merged state or
//!   a loser of a [`Conflict`] in the conflict log, with its
//!   replica, stamp and the rule that decided. Keys appear there only as
//!   fingerprints.
//!
//! The whole contract, with every field's rule, is in [`contract`].
//!
//! # Where to start
//!
//! | to | use |
//! |---|---|
//! | merge one device held as twins or snapshots | [`reconcile::merge_device`], [`format::DeviceRecord::from_twin_json`] (example `merge_twins`); a [`format::DeviceRecord`] is serde in the twin shape (module twins under `modules`, never keys) |
//! | merge whole hubs' files and get import plans | [`job::run_merge`], or [`reconcile::merge_fleet`] in memory |
//! | replicate between two live sites | [`doc::HubState`]: writes, [`delta_since`](doc::HubState::delta_since), [`apply_delta`](doc::HubState::apply_delta) (example `two_sites`) |
//! | build a hub's state from change events | [`replica::Replica`] |
//! | merge application metadata | [`appmeta::AppDocument`] (example `app_metadata`), whole directories by a [`job::MergeJob`] (`appmeta_base`, `appmeta`) |
//! | merge hubs' jobs and find those a failover lost | a [`job::MergeJob`] with `jobs_files` |
//! | keep the concierge's view of the active hub | [`concierge::ActiveHub`] |
//! | settle cloud-to-device messages: what to send again | [`c2d::Inputs`] |
//! | read and write IoT Hub's files | [`format`](mod@format) |
//! | write a CRDT of your own | [`kernel`] |
//!
//! The examples are in the crate's `examples/` folder: `cargo run --example
//! merge_twins`, `two_sites`, `app_metadata`.
//!
//! # Features
//!
//! - `cli` (default): the `failback` command-line tool; turns on `drill`.
//! - `drill`: the failover drill (`failback::drill`) and the import
//!   simulator (`reconcile::HubImage`) that dry-runs plans: test tooling;
//!   turns on `internals`.
//! - `internals`: the building blocks under the API, public for the CLI,
//!   the drill, the tests and the fuzz targets (single-line parsers and
//!   writers, the streaming line readers, the borrowing fleet merge, the
//!   plan's comparisons, the CRDT kernel's building blocks, the C2D and
//!   jobs lattices, the crash-safe output writers of `fsio`). Not covered
//!   by semver.
//!
//! Library users depend on `failback` with `default-features = false`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub)]
// Without `internals`, its items stay `pub` in private modules, reached
// through `pub(crate)` re-exports (see `internals!`).
#![cfg_attr(not(feature = "internals"), allow(unreachable_pub))]

/// Re-exports items public with the `internals` feature and
/// crate-private without it: `internals!(module::{A, b});`.
macro_rules! internals {
    ($($tree:tt)*) => {
        #[cfg(feature = "internals")]
        pub use $($tree)*;
        #[cfg(not(feature = "internals"))]
        #[allow(unused_imports)]
        pub(crate) use $($tree)*;
    };
}

pub mod appmeta;
pub mod c2d;
#[doc = include_str!("../docs/contract.md")]
pub mod contract {}
pub mod clock;
pub mod concierge;
pub mod doc;
#[cfg(feature = "drill")]
pub mod drill;
pub mod format;
#[cfg(feature = "internals")]
pub mod fsio;
#[cfg(not(feature = "internals"))]
mod fsio;
pub mod job;
pub mod kernel;
pub mod reconcile;
pub mod replica;
pub mod validate;

pub use clock::{Dot, HybridClock, ReplicaId, Stamp, VersionVector};
pub use doc::{Conflict, DeviceSnapshot, HubState, Policies};
pub use kernel::Merge;
pub use reconcile::{merge_device, merge_fleet};
