//! The drill on small fleets: every invariant holds for a handful of seeds
//! and fault mixes, and a seed replays to the same report bytes.

use std::collections::BTreeSet;

use failback::drill::{
    DrillConfig, ExportFormat, ExportFormats, INVARIANTS, Invariant, Replication, Report, run,
};

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

fn invariant(name: &str) -> Invariant {
    *INVARIANTS
        .iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("no invariant {name}"))
}

fn plan_lines(report: &Report, hub: &str, action: &str) -> u64 {
    report.plans.lines.get(&(hub, action)).copied().unwrap_or(0)
}

/// Seed 4 reads its hubs from a twin file and an export with keys in its
/// first cycle, from an export with keys and an identity file in its
/// second: every reader, and every invariant holds. Of the first cycle's
/// three shards, one merge was refused (a device the twin-file primary
/// created has keys no file shows) and merged again from an export with
/// keys; the other two went through on the twin file.
#[test]
fn a_seed_whose_hubs_use_each_format_passes() {
    let config = DrillConfig {
        devices: 1200,
        threads: 2,
        ..DrillConfig::new(4)
    };
    assert_eq!(config.export_formats, ExportFormats::Mixed);
    let report = run(&config, &|_| {}).unwrap().report;
    assert!(report.passed(), "{}", report.table(None));
    let drawn: Vec<[ExportFormat; 2]> = report.cycles.iter().map(|c| c.formats).collect();
    assert_eq!(
        drawn,
        [
            [ExportFormat::Twin, ExportFormat::Keys],
            [ExportFormat::Keys, ExportFormat::Identity]
        ]
    );
    let used: BTreeSet<ExportFormat> = drawn.iter().flatten().copied().collect();
    assert_eq!(used.len(), ExportFormat::ALL.len());
    let first = report.formats.cycles[0];
    assert_eq!((first.shards, first.refused), (3, 1), "{first:?}");
    assert_eq!(first.reexported, [1, 0]);
    assert!(first.keyless_lines > 0);
    let second = report.formats.cycles[1];
    assert_eq!((second.refused, second.reexported), (0, [0, 0]));
    // The identity-file secondary's twin writes of the outage: no file
    // showed them, and they are counted apart, not lost unseen.
    assert!(report.accounting.unshown > 0);
    assert_eq!(report.findings.count(invariant("nothing-lost")), 0);
}

/// A hub read from a twin file shows no keys. Seed 26 reads the primary
/// from one in both cycles, and no merge is refused: every identity line
/// the primary is sent carries the keys the other inputs know (keys-kept
/// checks each line applied), and those it rotated itself in the RPO
/// window, which no file showed, are counted apart.
#[test]
fn a_twin_only_hub_is_never_sent_an_identity_without_keys() {
    let config = DrillConfig {
        devices: 300,
        threads: 2,
        ..DrillConfig::new(26)
    };
    let report = run(&config, &|_| {}).unwrap().report;
    assert!(report.passed(), "{}", report.table(None));
    for cycle in &report.cycles {
        assert_eq!(cycle.formats, [ExportFormat::Twin, ExportFormat::Keys]);
    }
    assert!(report.formats.cycles.iter().all(|c| c.refused == 0));
    assert!(plan_lines(&report, "primary", "update-identity") > 0);
    assert!(plan_lines(&report, "primary", "create") > 0);
    assert_eq!(report.findings.count(invariant("keys-kept")), 0);
    assert!(report.accounting.unshown > 0);
}

/// Both hubs read from twin files: a device or module one of them created
/// has keys no file shows. The merge is refused (its plans would make the
/// other hub generate new keys), and run again with both hubs exported with
/// keys; nothing is lost and no key is regenerated.
#[test]
fn keys_no_file_shows_refuse_the_merge_and_the_hubs_are_exported_with_keys() {
    let config = DrillConfig {
        devices: 600,
        cycles: 1,
        threads: 2,
        export_formats: ExportFormats::Only(ExportFormat::Twin),
        ..DrillConfig::new(3)
    };
    let report = run(&config, &|_| {}).unwrap().report;
    assert!(report.passed(), "{}", report.table(None));
    let cycle = report.formats.cycles[0];
    assert!(cycle.refused > 0 && cycle.keyless_lines > 0, "{cycle:?}");
    assert_eq!(cycle.reexported, [cycle.refused; 2]);
    assert_eq!(report.findings.count(invariant("keys-kept")), 0);
    assert!(config.command().ends_with("--export-formats twin"));
}

/// The report says which file each hub was read from in each cycle, in
/// `report.json`, the table and the HTML timeline; `keys` alone is the
/// drill as it was before formats were mixed: nothing refused, nothing
/// unshown.
#[test]
fn the_format_each_hub_used_is_in_the_report() {
    let config = DrillConfig {
        devices: 60,
        threads: 2,
        ..DrillConfig::new(4)
    };
    let report = run(&config, &|_| {}).unwrap().report;
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["config"]["exportFormats"], "mixed");
    for (i, cycle) in report.cycles.iter().enumerate() {
        let formats = &json["cycles"][i]["exportFormats"];
        assert_eq!(formats["primary"]["format"], cycle.formats[0].name());
        assert_eq!(formats["secondary"]["format"], cycle.formats[1].name());
        assert_eq!(formats["shards"], 1);
    }
    assert_eq!(
        json["cycles"][0]["exportFormats"]["primary"]["format"],
        "twin"
    );
    assert_eq!(json["values"]["notShownByFile"], report.accounting.unshown);
    let table = report.table(None);
    assert!(
        table.contains("export formats (mixed: primary, secondary)"),
        "{table}"
    );
    assert!(table.contains("twin, keys"), "{table}");
    assert!(table.contains("keys, identity"), "{table}");
    assert!(report.to_html().contains("files twin/keys"));

    let keys = DrillConfig {
        export_formats: ExportFormats::Only(ExportFormat::Keys),
        ..config
    };
    let report = run(&keys, &|_| {}).unwrap().report;
    assert!(report.passed(), "{}", report.table(None));
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(
        json["cycles"][1]["exportFormats"]["secondary"]["format"],
        "keys"
    );
    assert_eq!(report.accounting.unshown, 0);
    assert!(report.formats.cycles.iter().all(|c| c.refused == 0));
    assert!(keys.command().ends_with("--export-formats keys"));
}
