//! Shared by the benches: a typical device and an allocation counter.

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mimalloc::MiMalloc;

use failback::doc::{Authentication, DeviceSnapshot, Secret, Status, StatusValue};
use serde_json::json;

/// Counts live heap bytes, so a bench can report memory per device, and
/// allocates with mimalloc, the allocator the `failback` binary links,
/// for what a bench times on both sides of a ratio (the baselines too).
/// Built with `FAILBACK_BENCH_ALLOCATOR=system` in the environment, it
/// allocates with the system allocator instead, to compare.
///
/// Counting costs two atomic operations per allocation, which threads
/// allocating at once contend on: a bench that times parallel code turns
/// it off with [`stop_counting`] before allocating anything.
pub struct Counting;

/// Whether this build allocates with the system allocator: fixed when the
/// bench is compiled, so that no block is freed by another allocator than
/// the one that gave it.
const SYSTEM: bool = match option_env!("FAILBACK_BENCH_ALLOCATOR") {
    Some(name) => is_system(name.as_bytes()),
    None => false,
};

/// Whether `name` is `system` (a `const` comparison of bytes).
const fn is_system(name: &[u8]) -> bool {
    let want = b"system";
    if name.len() != want.len() {
        return false;
    }
    let mut i = 0;
    while i < want.len() {
        if name[i] != want[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The allocator's name, for the bench's output.
pub fn allocator() -> &'static str {
    if SYSTEM { "system" } else { "mimalloc" }
}

/// Where the count starts, so that frees of memory allocated while the
/// count was off never take it below zero.
const ORIGIN: usize = 1 << 48;

static LIVE: AtomicUsize = AtomicUsize::new(ORIGIN);
static PEAK: AtomicUsize = AtomicUsize::new(ORIGIN);
static OFF: AtomicBool = AtomicBool::new(false);

/// The allocator every call goes to: a constant for the process.
fn inner() -> &'static dyn GlobalAlloc {
    if SYSTEM { &System } else { &MiMalloc }
}

/// Counts `size` bytes allocated, unless counting is off.
fn count_alloc(size: usize) {
    if !OFF.load(Ordering::Relaxed) {
        let now = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

/// Counts `size` bytes freed, unless counting is off.
fn count_free(size: usize) {
    if !OFF.load(Ordering::Relaxed) {
        LIVE.fetch_sub(size, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to one allocator, the same for the whole
// process (`SYSTEM` is a constant), unchanged, so every block is freed or
// grown by the allocator that gave it; only counts the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { inner().alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count_free(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { inner().dealloc(ptr, layout) }
    }
    // Forwarded, not left to the trait's defaults: those allocate anew and
    // copy on every growth of a `Vec` or `String` (and write zeros
    // themselves), which the allocators do in place, and which made a
    // merge in this bench take 40% more CPU than the binary.
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { inner().alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_alloc(new_size);
        count_free(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { inner().realloc(ptr, layout, new_size) }
    }
}

/// Live heap bytes now (counted since the start of the process).
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed).wrapping_sub(ORIGIN)
}

/// The most live heap bytes since the last [`reset_peak`].
pub fn peak_bytes() -> usize {
    PEAK.load(Ordering::Relaxed).wrapping_sub(ORIGIN)
}

/// Starts a new peak from the live bytes now.
pub fn reset_peak() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Stops counting for the rest of the process.
pub fn stop_counting() {
    OFF.store(true, Ordering::Relaxed);
}

/// A typical device of about 1 KB of export JSON: two keys, a few tags,
/// ten desired and ten reported leaves.
pub fn typical_device(i: usize) -> DeviceSnapshot {
    let mut d = DeviceSnapshot {
        id: format!("device-{i:07}"),
        ..Default::default()
    };
    d.device.status = Some(StatusValue {
        status: Status::Enabled,
        reason: None,
    });
    d.device.authentication = Some(Authentication::sas(
        Secret::new(&format!("c2VjcmV0LXByaW1hcnkta2V5LWZvci0{i:07}QUJD")),
        Secret::new(&format!("c2VjcmV0LXNlY29uZGFyeS1rZXktZm9y{i:07}REVG")),
    ));
    d.device.capabilities = Some(json!({"iotEdge": false}));
    let tags =
        json!({"site": "berlin-03", "floor": i % 12, "owner": "facilities", "model": "th-200"});
    d.device.tags = tags.as_object().cloned().unwrap_or_default().into();
    let desired = json!({
        "telemetry": {"interval": 30, "batch": 10, "enabled": true},
        "firmware": {"version": "4.2.1", "channel": "stable"},
        "thresholds": {"temp": {"high": 28.5, "low": 16.0}, "humidity": 70},
        "mode": "eco", "rev": i
    });
    d.device.desired = desired.as_object().cloned().unwrap_or_default().into();
    let reported = json!({
        "firmware": {"version": "4.2.1", "installed": "2026-10-01T10:00:00Z"},
        "telemetry": {"interval": 30, "lastSent": "2026-11-26T06:00:00Z"},
        "battery": 87, "rssi": -61, "uptime": 123456, "temp": 22.4, "humidity": 41,
        "errors": 0
    });
    d.device.reported = reported.as_object().cloned().unwrap_or_default().into();
    d
}
