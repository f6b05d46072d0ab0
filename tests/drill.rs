//! The drill on small fleets: every invariant holds for a handful of seeds
//! and fault mixes, and a seed replays to the same report bytes.

use failback::drill::{DrillConfig, INVARIANTS, run};

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
