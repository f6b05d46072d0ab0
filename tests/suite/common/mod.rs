//! Generic law tests for the kernel's CRDTs, written once and
//! instantiated per type by `tests/suite/kernel_laws.rs`.
//!
//! - [`stores`]: the stores under test, each with the operations that build
//!   it ([`Store`]) and the invariants its states keep ([`stores::Invariants`]);
//! - [`script`]: generated histories of operations and state exchanges
//!   between a few replicas, replayed into states and deltas;
//! - [`laws`]: the laws, as functions over any [`Store`] or [`Merge`]
//!   type, returning a proptest failure that names the law broken.
//!
//! [`Merge`]: failback::kernel::Merge

pub mod laws;
pub mod script;
pub mod stores;

pub use stores::Store;
