//! Continuous replication between two sites: each has its own hybrid
//! logical clock and a replica id minted as a time-ordered UUID (v7), takes
//! writes, and sends the other what it lacks as bytes. After one exchange
//! both hold the same state, byte for byte, whatever the order.
//!
//! Run with `cargo run --example two_sites`.

use std::error::Error;

use failback::ReplicaId;
use failback::clock::{HybridClock, SystemTime};
use failback::doc::{DeviceSnapshot, HubDelta, HubState, Policies, Section, TwinPatch};
use serde_json::json;

/// One site: its state and the clock that stamps its writes.
struct Site {
    clock: HybridClock<SystemTime>,
    state: HubState,
}

impl Site {
    fn new() -> Self {
        Self {
            clock: HybridClock::new(ReplicaId::new_v7(), SystemTime),
            state: HubState::new(),
        }
    }

    /// What `peer` lacks, as the bytes a channel would carry.
    fn delta_for(&self, peer: &Site) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&self.state.delta_since(peer.state.version_vector()))
    }

    /// Joins bytes a peer sent. Receiving them twice changes nothing.
    fn receive(&mut self, bytes: &[u8]) -> Result<(), Box<dyn Error>> {
        let delta: HubDelta = serde_json::from_slice(bytes)?;
        self.state.apply_delta(&delta)?;
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut east = Site::new();
    let mut west = Site::new();
    println!(
        "east is {}, west is {}",
        east.clock.replica(),
        west.clock.replica()
    );

    // East provisions a device; west learns of it.
    let device = DeviceSnapshot::enabled_sas("pump-1", "cHJpbWFyeQ==", "c2Vjb25kYXJ5");
    let stamp = east.clock.tick(); // names east: the write is east's
    east.state.put_device(&device, &stamp, None);
    west.receive(&east.delta_for(&west)?)?;

    // Then both write the same desired property, concurrently.
    for (site, rate) in [(&mut east, 10), (&mut west, 20)] {
        let patch = json!({ "rate": rate });
        let stamp = site.clock.tick();
        let patch = TwinPatch {
            id: "pump-1",
            module_id: None,
            section: Section::Desired,
            patch: patch.as_object().ok_or("an object")?,
        };
        site.state.patch_twin(&patch, &stamp, None);
    }

    // Exchange deltas over a byte channel, in both directions.
    let to_west = east.delta_for(&west)?;
    let to_east = west.delta_for(&east)?;
    west.receive(&to_west)?;
    east.receive(&to_east)?;
    east.receive(&to_east)?; // a retransmission changes nothing

    assert_eq!(east.state, west.state);
    let policies = Policies::default();
    let mut conflicts = Vec::new();
    let merged = east.state.read_device("pump-1", &policies, &mut conflicts);
    let merged = merged.ok_or("pump-1 is live")?;
    println!("converged: desired = {}", json!(merged.device.desired));
    for conflict in &conflicts {
        println!("conflict: {}", serde_json::to_string(conflict)?);
    }
    assert_eq!(conflicts.len(), 1, "rate was written on both sites");
    Ok(())
}
