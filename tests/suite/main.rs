//! The integration tests, one module per subject, linked as one binary
//! (`cargo test --test suite`): one link of the crate and its
//! dependencies instead of one per file, which was most of CI's build.
//!
//! Run one subject with a filter, e.g. `cargo test --test suite ingest::`.

mod common;

mod appmeta;
mod c2d;
mod cli;
mod compaction;
mod crash;
mod doc_laws;
#[cfg(feature = "drill")]
mod drill;
mod envelopes;
mod formats;
mod fuzz_regressions;
mod hostile;
mod ingest;
mod jobs_appmeta;
mod kernel_laws;
mod patch;
#[cfg(feature = "drill")]
mod plans;
mod policies;
mod queues;
mod real_files;
mod streaming;
