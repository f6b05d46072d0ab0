//! Merge two hubs' versions of one device, given as twin JSON (what
//! get-twin returns), and print the merged twin and its conflicts.
//!
//! Twins carry a `$lastUpdated` per leaf, so no common base is needed:
//! each leaf is a register, concurrent writes to one leaf resolve by time
//! (policy 4), and the losers are kept in the conflict log.
//!
//! Run with `cargo run --example merge_twins`.

use std::error::Error;

use failback::doc::Policies;
use failback::format::DeviceRecord;
use failback::reconcile::{Base, HubDevice, HubTiming, hub_clocks, merge_device};
use failback::{ReplicaId, Stamp};

const PRIMARY: &str = r#"{
  "deviceId": "thermostat-7",
  "tags": {"site": "lyon", "$metadata": {"site": {"$lastUpdated": "2024-03-01T11:00:00Z"}}},
  "properties": {
    "desired": {
      "fan": 3,
      "mode": "eco",
      "$metadata": {
        "fan": {"$lastUpdated": "2024-03-01T12:00:00Z"},
        "mode": {"$lastUpdated": "2024-03-01T12:00:00Z"}
      }
    },
    "reported": {}
  }
}"#;

const SECONDARY: &str = r#"{
  "deviceId": "thermostat-7",
  "tags": {"site": "lyon", "$metadata": {"site": {"$lastUpdated": "2024-03-01T11:00:00Z"}}},
  "properties": {
    "desired": {
      "fan": 5,
      "mode": "eco",
      "$metadata": {
        "fan": {"$lastUpdated": "2024-03-01T12:03:00Z"},
        "mode": {"$lastUpdated": "2024-03-01T12:00:00Z"}
      }
    },
    "reported": {
      "temp": 21.5,
      "$metadata": {"temp": {"$lastUpdated": "2024-03-01T12:04:00Z"}}
    }
  }
}"#;

fn main() -> Result<(), Box<dyn Error>> {
    let hubs = [
        (
            ReplicaId::new("primary")?,
            DeviceRecord::from_twin_json(PRIMARY)?,
        ),
        (
            ReplicaId::new("secondary")?,
            DeviceRecord::from_twin_json(SECONDARY)?,
        ),
    ];

    // Every write in a twin carries its own time; a hub's stamp only
    // covers what has none, and is the newest time it holds (policy 5).
    let timings: Vec<HubTiming> = hubs
        .iter()
        .map(|(hub, twin)| HubTiming {
            hub: hub.clone(),
            real_times: true,
            as_of: None,
            newest: twin.newest(),
        })
        .collect();
    let now_ms = 1_709_294_700_000; // 2024-03-01T12:05:00Z: the drift check's "now"
    let clocks = hub_clocks(&timings, None, now_ms, 5 * 60_000)?;
    let stamps: Vec<Stamp> = hubs
        .iter()
        .map(|(hub, _)| clocks.stamp(hub))
        .collect::<Result<_, _>>()?;

    let views: Vec<HubDevice<'_>> = hubs
        .iter()
        .zip(&stamps)
        .map(|((hub, twin), stamp)| HubDevice {
            hub,
            device: Some(&twin.snapshot),
            times: twin.times.as_ref(),
            stamp,
            recreated: false,
        })
        .collect();
    let merge = merge_device(Base::Unknown, &views, &Policies::default());

    let merged = DeviceRecord {
        snapshot: merge.merged.ok_or("the device ended deleted")?,
        ..DeviceRecord::default()
    };
    // A record is serde in the twin shape (never with keys).
    println!("merged twin:\n{}", serde_json::to_string_pretty(&merged)?);
    println!("conflicts:");
    for conflict in &merge.conflicts {
        println!("{}", serde_json::to_string(conflict)?);
    }
    assert_eq!(merge.conflicts.len(), 1, "fan was written on both sides");
    Ok(())
}
