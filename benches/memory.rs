//! Memory per device: a hub state of typical devices, measured with a
//! counting allocator. Run: `cargo bench --bench memory`.

mod common;

use failback::doc::HubState;
use failback::{ReplicaId, Stamp};

#[global_allocator]
static ALLOC: common::Counting = common::Counting;

fn main() {
    // `cargo bench` passes --bench; under `cargo test` (or with --test) a
    // small fleet is enough to prove the bench runs.
    let quick =
        std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench");
    let n = if quick { 1_000 } else { 100_000 };
    let devices: Vec<_> = (0..n).map(common::typical_device).collect();
    let export_bytes: usize = devices.iter().map(export_len).sum();
    let hub = ReplicaId::new("base").expect("valid literal");
    let stamp = Stamp::new(0, 0, hub.clone());
    let before = common::live_bytes();
    let mut state = HubState::new();
    for device in &devices {
        state.put_device(device, &stamp, None);
    }
    let after = common::live_bytes();
    let per_device = (after - before) as f64 / n as f64;
    println!(
        "hub state: {n} typical devices ({:.0} B of export JSON each): {:.0} B per device in memory",
        export_bytes as f64 / n as f64,
        per_device
    );
    std::hint::black_box(&state);
}

fn export_len(d: &failback::doc::DeviceSnapshot) -> usize {
    let auth = serde_json::to_string(&d.device.authentication).map_or(0, |s| s.len());
    let twin = serde_json::to_string(&d.device.tags).map_or(0, |s| s.len())
        + serde_json::to_string(&d.device.desired).map_or(0, |s| s.len())
        + serde_json::to_string(&d.device.reported).map_or(0, |s| s.len());
    auth + twin + d.id.len() + 120
}
