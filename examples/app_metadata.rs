//! Merge two hubs' versions of an application-metadata document (a free-form
//! JSON document of the solution: here, a routing table) and list its
//! conflicts.
//!
//! Both sides start from the same document, then edit it apart. Edits to
//! different keys both survive; concurrent edits to one key keep one
//! visible winner and every loser.
//!
//! Run with `cargo run --example app_metadata`.

use std::error::Error;

use failback::ReplicaId;
use failback::appmeta::AppDocument;
use serde_json::json;

fn main() -> Result<(), Box<dyn Error>> {
    let primary = ReplicaId::new("primary")?;
    let secondary = ReplicaId::new("secondary")?;

    let base = json!({
        "routes": {"telemetry": "eventhub-1", "alerts": "servicebus-1"},
        "retentionDays": 7
    });
    let mut on_primary = AppDocument::from_json(&primary, &base)?;
    // The secondary was seeded from the primary: same history.
    let mut on_secondary = AppDocument::load(&on_primary.save())?;

    on_primary.set_json(
        &primary,
        &json!({
            "routes": {"telemetry": "eventhub-2", "alerts": "servicebus-1"},
            "retentionDays": 7
        }),
    )?;
    on_secondary.set_json(
        &secondary,
        &json!({
            "routes": {"telemetry": "eventhub-3", "alerts": "servicebus-1", "audit": "blob-1"},
            "retentionDays": 30
        }),
    )?;

    // Merge both ways: the result is the same document.
    let mut merged = on_primary.clone();
    merged.try_merge(&on_secondary)?;
    let mut other_way = on_secondary.clone();
    other_way.try_merge(&on_primary)?;
    assert_eq!(merged.to_json(), other_way.to_json());

    println!(
        "merged: {}",
        serde_json::to_string_pretty(&merged.to_json())?
    );
    for conflict in merged.conflicts() {
        let who = |w: &failback::appmeta::AppWrite| {
            w.replica
                .as_ref()
                .map_or("?".to_owned(), ToString::to_string)
        };
        println!(
            "conflict at {}: {} ({}) won over {}",
            conflict.path,
            conflict.winner.value,
            who(&conflict.winner),
            conflict
                .losers
                .iter()
                .map(|l| format!("{} ({})", l.value, who(l)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
