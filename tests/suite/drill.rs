//! The drill on small fleets: every invariant holds for a handful of seeds
//! and fault mixes, and a seed replays to the same report bytes.

use failback::drill::{DrillConfig, INVARIANTS, Replication, run};

fn small(seed: u64) -> DrillConfig {
    DrillConfig {
        threads: 2,
        ..DrillConfig::varied(seed, 24)
    }
}

#[test]
fn every_invariant_holds_for_a_handful_of_seeds() {
    for seed in 1..=12 {
        let config = small(seed);
        let outcome = run(&config, &|_| {}).unwrap();
        let report = &outcome.report;
        assert!(report.passed(), "{}", report.table(None));
        assert_eq!(report.failed(), Vec::<&str>::new());
        assert!(report.writes.secondary > 0, "seed {seed} wrote nothing");
    }
}

#[test]
fn split_brain_with_skew_conflicts_and_still_holds() {
    let config = DrillConfig {
        devices: 300,
        split_brain: true,
        skew_ms: Some(150_000),
        cycles: 2,
        threads: 2,
        ..DrillConfig::new(5)
    };
    let report = run(&config, &|_| {}).unwrap().report;
    assert!(report.passed(), "{}", report.table(None));
    for rule in ["delete-wins", "latest-wins", "whole-value"] {
        assert!(
            report.conflicts.get(rule).is_some_and(|n| *n > 0),
            "no {rule} conflict: {:?}",
            report.conflicts
        );
    }
    assert!(report.writes.primary_split > 0);
}

#[test]
fn the_same_seed_gives_the_same_report_bytes_whatever_the_threads() {
    let config = DrillConfig {
        devices: 600,
        cycles: 1,
        threads: 2,
        ..DrillConfig::new(9)
    };
    let one = run(&config, &|_| {}).unwrap().report;
    let single = DrillConfig {
        threads: 1,
        ..config.clone()
    };
    let two = run(&single, &|_| {}).unwrap().report;
    assert_eq!(config.replication, Replication::Both);
    assert!(one.replication.delivered > 0, "the replica took no event");
    assert_eq!(one.to_json(), two.to_json());
    assert_eq!(one.to_html(), two.to_html());
    let other = run(&DrillConfig { seed: 10, ..config }, &|_| {})
        .unwrap()
        .report;
    assert_ne!(one.to_json(), other.to_json());
}

#[test]
fn the_report_names_every_invariant_and_holds_no_secret() {
    let report = run(&small(3), &|_| {}).unwrap().report;
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    let names: Vec<&str> = json["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = INVARIANTS.iter().map(|i| i.name).collect();
    assert_eq!(names, expected);
    assert_eq!(json["seed"], 3);
    let html = report.to_html();
    assert!(html.contains("<svg") && html.contains("RPO window"));
    for text in [report.to_json(), html, report.table(None)] {
        assert!(!text.contains("=="), "something base64 leaked");
    }
}

/// A drill whose RPO window holds writes the primary then lost. One
/// cycle: the next would start from merged states that differ by what the
/// replica saved, so only the first compares with an export run exactly.
fn lossy(replication: Replication) -> DrillConfig {
    DrillConfig {
        devices: 400,
        cycles: 1,
        threads: 2,
        replication,
        ..DrillConfig::new(7)
    }
}

#[test]
fn events_lose_only_what_was_in_flight_and_less_than_the_export() {
    let both = run(&lossy(Replication::Both), &|_| {}).unwrap().report;
    assert!(both.passed(), "{}", both.table(None));
    let r = &both.replication;
    assert!(
        r.lost_export.writes > 0,
        "no write in the lost window: pick another seed"
    );
    // What the run lost is what the replica lost, and it is made only of
    // writes still in flight, writes no event carries (keys) and devices
    // whose keys the replica could not know.
    assert_eq!(both.accounting.rpo_lost, r.lost_events.values);
    assert_eq!(
        r.lost_events.writes,
        r.lost_in_flight.writes + r.lost_no_event.writes + r.lost_keyless.writes
    );
    assert!(r.lost_events.values < r.lost_export.values, "{r:?}");
    assert!(r.seeded > 0 && r.delivered > r.in_flight);
    for cycle in &both.cycles {
        assert!(cycle.replication_lag.is_some_and(|ms| ms > 0));
    }
    // The export figure beside it is what the export backup alone loses:
    // the primary's writes do not depend on how the secondary is seeded.
    let export = run(&lossy(Replication::Export), &|_| {}).unwrap().report;
    assert!(export.passed(), "{}", export.table(None));
    assert_eq!(export.accounting.rpo_lost, r.lost_export.values);
    assert_eq!(export.writes.primary_lost, r.lost_export.writes);
    assert_eq!(export.replication.delivered, 0);
    assert!(export.cycles.iter().all(|c| c.replication_lag.is_none()));
    // Events only: the same run, without the export figure in the report.
    let events = run(&lossy(Replication::Events), &|_| {}).unwrap().report;
    assert_eq!(events.accounting, both.accounting);
    let json: serde_json::Value = serde_json::from_str(&events.to_json()).unwrap();
    assert_eq!(json["config"]["replication"], "events");
}

#[test]
fn the_report_shows_both_losses_and_the_lag() {
    let report = run(&lossy(Replication::Both), &|_| {}).unwrap().report;
    let r = &report.replication;
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    let loss = &json["rpoLoss"];
    assert_eq!(loss["exportBackup"]["writes"], r.lost_export.writes);
    assert_eq!(loss["exportBackup"]["values"], r.lost_export.values);
    assert_eq!(loss["eventReplica"]["writes"], r.lost_events.writes);
    assert_eq!(loss["eventReplica"]["values"], r.lost_events.values);
    assert_eq!(json["replication"]["mode"], "both");
    assert!(json["cycles"][0]["replicationLagMs"].as_i64().is_some());
    let table = report.table(None);
    assert!(table.contains("RPO loss, export backup"), "{table}");
    assert!(table.contains("RPO loss, event replica"), "{table}");
    let html = report.to_html();
    assert!(html.contains("RPO loss with the export backup (values)"));
    assert!(html.contains("RPO loss with the event replica (values)"));
    assert!(html.contains("replication lag"));
    for text in [report.to_json(), html, table] {
        assert!(!text.contains("=="), "something base64 leaked");
    }
}
