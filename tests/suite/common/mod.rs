//! What the suite's modules share: generic law tests for the kernel's
//! CRDTs, written once and instantiated per type by
//! `tests/suite/kernel_laws.rs`, scratch directories, and the times event
//! tests write.
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

/// An empty directory for one test's files: `SUBJECT/NAME` under cargo's
/// temporary directory for integration tests (`target/tmp`), emptied
/// first, so a rerun starts clean and nothing is left in the system's
/// temporary directory.
pub fn scratch(subject: &str, name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(subject)
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// The names in `dir`, hidden ones included, sorted.
pub fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// 2024-03-01T12:00:00Z, where the event tests' histories start.
pub const T0: i64 = 1_709_294_400_000;

/// `ms` as an `operationTimestamp` or `$lastUpdated` is written, to the
/// millisecond.
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
