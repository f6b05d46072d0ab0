//! Shared by the benches: a typical device and an allocation counter.

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use failback::doc::{Authentication, DeviceSnapshot, Secret, Status, StatusValue};
use serde_json::json;

/// Counts live heap bytes, so a bench can report memory per device.
///
/// Counting costs two atomic operations per allocation, which threads
/// allocating at once contend on: a bench that times parallel code turns
/// it off with [`stop_counting`] before allocating anything.
pub struct Counting;

/// Where the count starts, so that frees of memory allocated while the
/// count was off never take it below zero.
const ORIGIN: usize = 1 << 48;

static LIVE: AtomicUsize = AtomicUsize::new(ORIGIN);
static PEAK: AtomicUsize = AtomicUsize::new(ORIGIN);
static OFF: AtomicBool = AtomicBool::new(false);

// SAFETY: forwards every call to the system allocator unchanged; only
// counts the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !OFF.load(Ordering::Relaxed) {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !OFF.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
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
