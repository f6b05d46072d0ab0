//! Real files as Azure, its CLI and its SDKs write them: one fixture per
//! shape in `tests/fixtures/real/` (written for this project, reproducing
//! what `az iot hub query`, `device-identity list/show`, the SDKs and the
//! 2016 API print), each read, and each merged with itself to an empty
//! plan. Identity lines are never planned without their keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use failback::ReplicaId;
use failback::doc::{AuthType, Status};
use failback::format::{DeviceFile, InputFile, read_input};
use failback::job::{MergeJob, run_merge};
use proptest::prelude::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    crate::common::scratch("real_files", name)
}

fn failback(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_failback"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn identities(name: &str) -> DeviceFile {
    match read_input(fixture(name), None) {
        Ok(InputFile::Identity(file)) => file,
        Ok(other) => panic!("{name} read as another format: {other:?}"),
        Err(e) => panic!("{e}"),
    }
}

fn twins(path: &Path) -> DeviceFile {
    match read_input(path, None) {
        Ok(InputFile::Twin(file)) => file,
        Ok(other) => panic!("{} read as another format: {other:?}", path.display()),
        Err(e) => panic!("{e}"),
    }
}

fn auth_type(file: &DeviceFile, id: &str) -> Option<AuthType> {
    file.devices[id]
        .snapshot
        .device
        .authentication
        .as_ref()
        .and_then(|a| a.auth_type)
}

#[test]
fn an_az_identity_list_reads_as_identities_with_keys_and_generation_ids() {
    let file = identities("identities-az-list.json");
    assert_eq!(
        file.devices.keys().collect::<Vec<_>>(),
        ["ca-device", "gateway-1", "sensor@plant-7"]
    );
    let gateway = &file.devices["gateway-1"];
    assert_eq!(gateway.meta.etag.as_deref(), Some("NzY1NDMyMQ=="));
    assert_eq!(
        gateway.meta.generation_id.as_deref(),
        Some("637987654321234567")
    );
    assert_eq!(gateway.meta.twin_etag, None);
    assert_eq!(
        gateway.snapshot.device.status.as_ref().map(|s| s.status),
        Some(Status::Enabled)
    );
    assert_eq!(
        gateway.snapshot.modules.keys().collect::<Vec<_>>(),
        ["$edgeAgent", "filter"]
    );
    assert_eq!(gateway.modules["$edgeAgent"].etag.as_deref(), Some("MQ=="));
    // Runtime fields and `managedBy` are read past, never kept.
    assert!(gateway.snapshot.modules["filter"].extra.is_empty());
    assert!(gateway.snapshot.device.extra.is_empty());
    // No twin: an identity file says nothing of it.
    assert!(gateway.snapshot.device.tags.is_empty());
    let sensor = &file.devices["sensor@plant-7"];
    assert_eq!(
        sensor.meta.etag.as_deref(),
        Some("MTIzNDU2Nzg="),
        "quotes stripped"
    );
    assert_eq!(
        sensor.snapshot.device.status.as_ref().map(|s| s.status),
        Some(Status::Disabled)
    );
    assert_eq!(
        sensor.snapshot.device.parent_scopes,
        Some(serde_json::json!([
            "ms-azure-iot-edge://gateway-1-637987654321234567"
        ]))
    );
    assert_eq!(
        auth_type(&file, "sensor@plant-7"),
        Some(AuthType::SelfSigned)
    );
    assert_eq!(
        auth_type(&file, "ca-device"),
        Some(AuthType::CertificateAuthority)
    );
    // Keys are kept, and never shown.
    let shown = format!("{file:?}");
    assert!(!shown.contains("c2FzLXByaW1hcnkta2V5"), "{shown}");
}

#[test]
fn an_az_identity_show_object_with_a_bom_reads() {
    let file = identities("identity-az-show.json");
    let device = &file.devices["DALLAS1"];
    assert_eq!(device.meta.etag.as_deref(), Some("Mzc4OTAxMjM0"));
    // An old REST response omits `type`: the keys are still the keys.
    let auth = device.snapshot.device.authentication.as_ref();
    assert!(auth.is_some_and(|a| a.symmetric_key.is_some() && a.auth_type.is_none()));
}

#[test]
fn an_az_query_twin_array_reads_with_device_etags_and_service_metadata_dropped() {
    let file = twins(&fixture("twins-az-query.json"));
    let dallas = &file.devices["DALLAS1"];
    assert_eq!(dallas.meta.twin_etag.as_deref(), Some("AAAAAAAAAAk="));
    assert_eq!(dallas.meta.etag.as_deref(), Some("Mzc4OTAxMjM0"));
    assert_eq!(dallas.meta.version, Some(22446));
    let device = &dallas.snapshot.device;
    // `tags.$etag` is the service's; `modelId` the device's.
    assert_eq!(
        device.tags.keys().collect::<Vec<_>>(),
        ["building", "config"]
    );
    assert!(device.extra.is_empty(), "{:?}", device.extra);
    assert!(device.authentication.is_none());
    // A reported property named like a runtime field is a property.
    assert_eq!(device.reported["connectionState"], "online");
    assert_eq!(device.reported["location"], "Bülach");
    // `-06:00` and no zone at all (UTC) both land on 17:00Z.
    let times = match &dallas.times {
        Some(times) => &times.device,
        None => panic!("a twin file gives times"),
    };
    let at = |path: &[&str]| times.reported.time_at(path);
    assert_eq!(at(&["location"]), Some(1_709_312_400_000));
    assert_eq!(
        at(&["thermostat1", "targetTemperature", "ac"]),
        Some(1_709_312_400_000)
    );
    assert_eq!(dallas.modules["telemetry"].etag.as_deref(), Some("MQ=="));
    let x509 = &file.devices["x509-dev@site"];
    assert_eq!(x509.meta.etag.as_deref(), Some("NDU2"));
    assert_eq!(
        x509.snapshot.device.status.as_ref().map(|s| s.status),
        Some(Status::Disabled)
    );
    // `2015-02-30`, a runtime time, is no time, not an error.
    assert_eq!(x509.times.as_ref().and_then(|t| t.device.status), None);
    assert_eq!(x509.snapshot.device.tags["custom"], serde_json::json!({}));
}

#[test]
fn the_2016_twin_shape_reads_as_twins() {
    let file = twins(&fixture("twins-2016.jsonl"));
    let legacy = &file.devices["legacy-1"];
    assert_eq!(
        legacy.meta.generation_id.as_deref(),
        Some("636000000000000001")
    );
    assert_eq!(legacy.meta.twin_etag, None);
    assert_eq!(legacy.snapshot.device.desired["fan"], 2);
    assert_eq!(
        file.devices["legacy-2"]
            .snapshot
            .device
            .status
            .as_ref()
            .map(|s| s.status),
        Some(Status::Disabled)
    );
}

#[test]
fn sdk_export_lines_with_a_bom_and_enums_in_any_case_read() {
    let file = match read_input(fixture("export-sdk.jsonl"), None) {
        Ok(InputFile::Export(file)) => file,
        other => panic!("{other:?}"),
    };
    let node = &file.devices["node-1"];
    assert_eq!(node.meta.etag.as_deref(), Some("MjM0"));
    assert_eq!(auth_type(&file, "node-1"), Some(AuthType::Sas));
    assert_eq!(
        node.snapshot.device.tags.keys().collect::<Vec<_>>(),
        ["site"]
    );
}

#[test]
fn an_export_array_reads_like_its_lines() {
    let array = match read_input(fixture("export-array.json"), None) {
        Ok(InputFile::Export(file)) => file,
        other => panic!("{other:?}"),
    };
    assert_eq!(array.devices.len(), 2);
    let dir = scratch("array");
    let lines = dir.join("lines.jsonl");
    let mut out = Vec::new();
    for device in array.devices.values() {
        failback::format::write_device(&mut out, &device.snapshot, device.etags())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(&lines, out).unwrap_or_else(|e| panic!("{e}"));
    let again = match read_input(&lines, None) {
        Ok(InputFile::Export(file)) => file,
        other => panic!("{other:?}"),
    };
    assert_eq!(again.devices.len(), array.devices.len());
    for (id, device) in &array.devices {
        let back = &again.devices[id];
        assert_eq!(back.snapshot, device.snapshot, "{id}");
        assert_eq!(
            (&back.meta.etag, &back.meta.twin_etag),
            (&device.meta.etag, &device.meta.twin_etag),
            "{id}"
        );
    }
    // Each record's line is the line it starts on.
    assert_eq!(
        (
            array.devices["arr-1"].meta.line,
            array.devices["arr-2"].meta.line
        ),
        (2, 18)
    );
    assert_eq!(
        array.devices["arr-1"].snapshot.device.tags["note"],
        "brackets ] and { in a string, and a \" quote"
    );
}

/// Every file a merge wrote into `out`, by name.
fn outputs(out: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(out)
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|e| e.unwrap_or_else(|e| panic!("{e}")))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(e.path()).unwrap_or_default())
        })
        .collect()
}

#[test]
fn every_shape_merged_with_itself_plans_nothing() {
    let dir = scratch("itself");
    for (name, base) in [
        ("identities-az-list.json", true),
        ("identity-az-show.json", true),
        ("twins-az-query.json", false),
        ("twins-2016.jsonl", false),
        ("export-sdk.jsonl", true),
        ("export-array.json", true),
    ] {
        let file = fixture(name);
        let file = file.to_str().unwrap_or_default();
        let out = dir.join(name);
        let out = out.to_str().unwrap_or_default();
        let mut args = vec!["merge"];
        if base {
            args.extend(["--base", file]);
        }
        let (a, b) = (format!("primary={file}"), format!("secondary={file}"));
        args.extend(["--hub", &a, "--hub", &b, "--out", out]);
        let run = failback(&args);
        assert!(run.status.success(), "{name}: {}", text(&run.stderr));
        let files = outputs(Path::new(out));
        for (file, body) in &files {
            if file.ends_with(".import.jsonl") || file == "conflicts.jsonl" {
                assert_eq!(body, "", "{name}: {file}");
            }
        }
        // Times without a zone are read as UTC, and the report says so
        // once per file.
        let zoneless = files["report.json"]
            .matches("times without a zone were read as UTC")
            .count();
        assert_eq!(
            zoneless,
            usize::from(name == "twins-az-query.json"),
            "{name}"
        );
    }
}

#[test]
fn a_twin_file_hub_is_refused_keyless_identity_lines_then_guarded_by_device_etag() {
    let dir = scratch("twin-disabled");
    let original = std::fs::read_to_string(fixture("twins-az-query.json")).unwrap_or_default();
    // DALLAS1 disabled on the secondary, later than anything else.
    let disabled = original.replacen(
        "\"status\": \"enabled\",\n    \"statusUpdateTime\": \"0001-01-01T00:00:00Z\"",
        "\"status\": \"disabled\",\n    \"statusUpdateTime\": \"2024-03-01T12:00:00Z\"",
        1,
    );
    assert_ne!(disabled, original);
    let secondary = dir.join("secondary.json");
    std::fs::write(&secondary, disabled).unwrap_or_else(|e| panic!("{e}"));
    let out = dir.join("out");
    let merge = |extra: &[&str]| {
        let primary = format!("primary={}", fixture("twins-az-query.json").display());
        let secondary = format!("secondary={}", secondary.display());
        let out = out.display().to_string();
        let mut args = vec![
            "merge", "--hub", &primary, "--hub", &secondary, "--out", &out,
        ];
        args.extend(extra);
        failback(&args)
    };
    let run = merge(&[]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
    let stderr = text(&run.stderr);
    assert!(
        stderr.contains(r#"primary: device "DALLAS1" (updateIfMatchETag)"#),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");
    let run = merge(&["--allow-new-keys"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let files = outputs(&out);
    let plan = &files["primary.import.jsonl"];
    let line: serde_json::Value =
        serde_json::from_str(plan.lines().next().unwrap_or_default()).unwrap_or_default();
    assert_eq!(line["id"], "DALLAS1");
    assert_eq!(line["eTag"], "Mzc4OTAxMjM0", "guarded by deviceEtag");
    assert_eq!(line["status"], "disabled");
    for computed in ["modelId", "generationId", "deviceEtag", "configurations"] {
        assert!(line.get(computed).is_none(), "{computed} in {line}");
    }
    assert_eq!(files["secondary.import.jsonl"], "");
    assert!(files["report.json"].contains("generate new keys"));
}

const KEYS: &str = r#""authentication":{"symmetricKey":{"primaryKey":"YmFzZS1wcmltYXJ5LWtleS0wMDAwMDAwMDAwMDA=","secondaryKey":"YmFzZS1zZWNvbmRhcnkta2V5LTAwMDAwMDAwMDAw"},"x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"type":"sas"}"#;

#[test]
fn keys_known_from_the_base_go_with_the_identity_line_a_twin_hub_made_needed() {
    let dir = scratch("base-keys");
    let base = dir.join("base.jsonl");
    let line = format!(
        r#"{{"id":"d1","eTag":"MQ==","status":"enabled",{KEYS},"twinETag":"AAE=","tags":{{}},"properties":{{"desired":{{}},"reported":{{}}}}}}"#
    );
    std::fs::write(&base, format!("{line}\n")).unwrap_or_else(|e| panic!("{e}"));
    let twins = dir.join("twins.json");
    std::fs::write(
        &twins,
        r#"[{"deviceId":"d1","etag":"AAI=","deviceEtag":"Mg==","status":"disabled","statusUpdateTime":"2024-03-01T12:00:00Z","tags":{},"properties":{"desired":{},"reported":{}}}]"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = dir.join("out");
    let run = failback(&[
        "merge",
        "--base",
        base.to_str().unwrap_or_default(),
        "--hub",
        &format!("exports={}", base.display()),
        "--hub",
        &format!("twins={}", twins.display()),
        "--as-of",
        "exports=2024-03-01T11:00:00Z",
        "--max-drift",
        "1000000h",
        "--out",
        out.to_str().unwrap_or_default(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let files = outputs(&out);
    let plan = &files["exports.import.jsonl"];
    assert!(plan.contains(r#""status":"disabled""#), "{plan}");
    assert!(plan.contains(KEYS), "the base's keys are written: {plan}");
    assert!(plan.contains(r#""eTag":"MQ==""#), "{plan}");
    // The twin hub already holds the result; its keys were never unknown
    // to anyone but its file.
    assert_eq!(files["twins.import.jsonl"], "");
    assert!(files["merged.jsonl"].contains(KEYS));
}

#[test]
fn an_identity_hub_gets_twin_changes_in_a_whole_identity_line_with_its_keys() {
    let dir = scratch("identity-hub");
    let base = dir.join("base.jsonl");
    let export = |site: &str| {
        format!(
            r#"{{"id":"d1","eTag":"MQ==","status":"enabled",{KEYS},"twinETag":"AAE=","tags":{{"site":"{site}"}},"properties":{{"desired":{{}},"reported":{{}}}}}}"#
        )
    };
    std::fs::write(&base, format!("{}\n", export("a"))).unwrap_or_else(|e| panic!("{e}"));
    let changed = dir.join("secondary.jsonl");
    std::fs::write(&changed, format!("{}\n", export("b"))).unwrap_or_else(|e| panic!("{e}"));
    let ids = dir.join("primary.json");
    let keys = KEYS.trim_start_matches(r#""authentication":"#);
    std::fs::write(
        &ids,
        format!(
            r#"{{"deviceId":"d1","etag":"ZXRhZw==","generationId":"1","status":"enabled","connectionState":"Connected","authentication":{keys}}}"#
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = dir.join("out");
    let run = failback(&[
        "merge",
        "--base",
        base.to_str().unwrap_or_default(),
        "--hub",
        &format!("primary={}", ids.display()),
        "--hub",
        &format!("secondary={}", changed.display()),
        "--out",
        out.to_str().unwrap_or_default(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let files = outputs(&out);
    // The identity file said nothing of the twin: taken as the base's,
    // so the secondary's change wins and nothing of the twin is lost.
    assert!(files["merged.jsonl"].contains(r#""site":"b""#));
    let plan = &files["primary.import.jsonl"];
    let line: serde_json::Value = serde_json::from_str(plan.trim()).unwrap_or_default();
    assert_eq!(line["importMode"], "updateIfMatchETag", "{plan}");
    assert_eq!(line["eTag"], "ZXRhZw==");
    assert_eq!(line["tags"]["site"], "b");
    assert!(plan.contains(KEYS), "{plan}");
    assert_eq!(files["secondary.import.jsonl"], "");
}

/// One device of a generated identity file: its id, whether disabled,
/// and its authentication as JSON.
#[derive(Clone, Debug)]
struct Identity {
    id: usize,
    disabled: bool,
    auth: usize,
}

fn auth_json(n: usize) -> String {
    match n % 4 {
        0 => format!(
            r#"{{"symmetricKey":{{"primaryKey":"a2V5LXByaW1hcnktMDAwMDAwMDAwMDAwMDAw{n:03}=","secondaryKey":"a2V5LXNlY29uZGFyeS0wMDAwMDAwMDAwMDAw{n:03}="}},"type":"sas"}}"#
        ),
        1 => format!(
            r#"{{"x509Thumbprint":{{"primaryThumbprint":"{:040X}","secondaryThumbprint":null}},"type":"selfSigned"}}"#,
            n
        ),
        2 => r#"{"type":"certificateAuthority"}"#.to_owned(),
        _ => r#"{"symmetricKey":{},"x509Thumbprint":{},"type":"none"}"#.to_owned(),
    }
}

fn identity_file(path: &Path, devices: &[Identity]) {
    let mut lines = Vec::new();
    for d in devices {
        let status = if d.disabled { "Disabled" } else { "enabled" };
        lines.push(format!(
            r#"  {{"deviceId":"d{}","etag":"ZXRhZy0{}","generationId":"6380","status":"{status}","connectionState":"Disconnected","authentication":{}}}"#,
            d.id,
            d.auth,
            auth_json(d.auth)
        ));
    }
    std::fs::write(path, format!("[\n{}\n]\n", lines.join(",\n")))
        .unwrap_or_else(|e| panic!("{e}"));
}

fn hub_of(base: Vec<Identity>) -> impl Strategy<Value = Vec<Identity>> {
    (
        prop::collection::vec((0..4usize, any::<bool>(), 0..12usize), base.len()),
        prop::collection::vec((4..8usize, any::<bool>(), 0..12usize), 0..3),
    )
        .prop_map(move |(changes, created)| {
            let mut hub = Vec::new();
            for (d, (change, flag, auth)) in base.iter().zip(changes) {
                match change {
                    0 => hub.push(d.clone()),
                    1 => hub.push(Identity {
                        disabled: flag,
                        ..d.clone()
                    }),
                    2 => hub.push(Identity { auth, ..d.clone() }),
                    _ => {} // deleted
                }
            }
            for (id, disabled, auth) in created {
                if !hub.iter().any(|d| d.id == id) {
                    hub.push(Identity { id, disabled, auth });
                }
            }
            hub.sort_by_key(|d| d.id);
            hub
        })
}

fn fleet() -> impl Strategy<Value = (Vec<Identity>, Vec<Identity>, Vec<Identity>)> {
    prop::collection::vec((any::<bool>(), 0..12usize), 1..4)
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(id, (disabled, auth))| Identity { id, disabled, auth })
                .collect::<Vec<_>>()
        })
        .prop_flat_map(|base| (Just(base.clone()), hub_of(base.clone()), hub_of(base)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Identity files always carry keys, so a merge of them never needs
    /// new ones and never plans an identity line without
    /// `authentication`, whatever each hub changed.
    #[test]
    fn an_identity_file_merge_never_plans_an_identity_without_keys(
        (base, primary, secondary) in fleet(),
    ) {
        let dir = scratch("prop");
        let paths = ["base.json", "primary.json", "secondary.json"].map(|n| dir.join(n));
        for (path, devices) in paths.iter().zip([&base, &primary, &secondary]) {
            identity_file(path, devices);
        }
        let out = dir.join("out");
        let job = MergeJob {
            base: Some(paths[0].clone()),
            hubs: vec![
                (ReplicaId::new("primary").unwrap_or_else(|e| panic!("{e}")), paths[1].clone()),
                (ReplicaId::new("secondary").unwrap_or_else(|e| panic!("{e}")), paths[2].clone()),
            ],
            ..MergeJob::new(&out, 1_800_000_000_000)
        };
        let report = run_merge(&job);
        prop_assert!(report.is_ok(), "{:?}", report.err());
        for hub in ["primary", "secondary"] {
            let plan = std::fs::read_to_string(out.join(format!("{hub}.import.jsonl")))
                .unwrap_or_default();
            for line in plan.lines() {
                let value: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{e}: {line}"));
                let mode = value["importMode"].as_str().unwrap_or_default();
                if mode != "deleteIfMatchETag" && mode != "updateTwinIfMatchETag" {
                    prop_assert!(
                        value["authentication"].is_object(),
                        "{hub}: {line}"
                    );
                }
            }
        }
        // Merging the merged registry with itself as every hub plans
        // nothing: identical inputs, any format.
        let merged = out.join("merged.jsonl");
        let again = dir.join("again");
        let job = MergeJob {
            base: Some(merged.clone()),
            hubs: vec![
                (ReplicaId::new("primary").unwrap_or_else(|e| panic!("{e}")), merged.clone()),
                (ReplicaId::new("secondary").unwrap_or_else(|e| panic!("{e}")), merged),
            ],
            out: again.clone(),
            ..job
        };
        prop_assert!(run_merge(&job).is_ok());
        for hub in ["primary", "secondary"] {
            let plan = std::fs::read_to_string(again.join(format!("{hub}.import.jsonl")))
                .unwrap_or_default();
            prop_assert_eq!(plan, "");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Plans carry no twin `$metadata` (README, "Import files as the hub
/// reads them"): a plan applied to a hub known by its twins brings it to
/// the merged state, and merging the hubs again, with the merged
/// registry as their base, plans nothing.
#[test]
fn twin_file_plans_applied_converge_and_merge_again_to_nothing() {
    let dir = scratch("twins-apply");
    let twins = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/twins");
    let out = dir.join("out");
    let run = failback(&[
        "merge",
        "--hub",
        &format!("primary={twins}/primary.jsonl"),
        "--hub",
        &format!("secondary={twins}/secondary.jsonl"),
        "--allow-new-keys",
        "--out",
        out.to_str().unwrap_or_default(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let merged = out.join("merged.jsonl");
    let mut applied = Vec::new();
    for hub in ["primary", "secondary"] {
        let after = dir.join(format!("{hub}.after.jsonl"));
        let run = failback(&[
            "apply",
            "--hub",
            &format!("{twins}/{hub}.jsonl"),
            "--plan",
            out.join(format!("{hub}.import.jsonl"))
                .to_str()
                .unwrap_or_default(),
            "--out",
            after.to_str().unwrap_or_default(),
        ]);
        assert!(run.status.success(), "{hub}: {}", text(&run.stderr));
        assert!(
            text(&run.stderr).contains(", 0 failed"),
            "{hub}: {}",
            text(&run.stderr)
        );
        let diff = failback(&[
            "diff",
            after.to_str().unwrap_or_default(),
            merged.to_str().unwrap_or_default(),
        ]);
        assert!(diff.status.success(), "{hub}: {}", text(&diff.stdout));
        applied.push(after);
    }
    let again = dir.join("again");
    let run = failback(&[
        "merge",
        "--base",
        merged.to_str().unwrap_or_default(),
        "--hub",
        &format!("primary={}", applied[0].display()),
        "--hub",
        &format!("secondary={}", applied[1].display()),
        "--allow-new-keys",
        "--out",
        again.to_str().unwrap_or_default(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let files = outputs(&again);
    assert_eq!(files["primary.import.jsonl"], "");
    assert_eq!(files["secondary.import.jsonl"], "");
}

/// Import files as the hub reads them: an edge device's system modules are
/// the hub's (it makes them with the device) and the deployment's (their
/// desired properties). A plan writes no line for them and the report says
/// what it left out; `apply` creates them with the device.
#[test]
fn edge_system_modules_get_no_plan_line_and_the_report_says_so() {
    let dir = scratch("edge");
    let module_keys = r#""authentication":{"symmetricKey":{"primaryKey":"bW9kdWxlLXByaW1hcnkta2V5LTAwMDAwMDA=","secondaryKey":"bW9kdWxlLXNlY29uZGFyeS1rZXktMDAwMDA="},"x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"type":"sas"}"#;
    let export = |schema: &str, filter: bool| {
        let mut lines = vec![
            format!(
                r#"{{"id":"gw","eTag":"MQ==","status":"enabled",{KEYS},"capabilities":{{"iotEdge":true}},"twinETag":"AAE=","tags":{{}},"properties":{{"desired":{{}},"reported":{{}}}}}}"#
            ),
            format!(
                r#"{{"id":"gw","moduleId":"$edgeAgent","eTag":"Mg==",{module_keys},"twinETag":"AAI=","properties":{{"desired":{{"schemaVersion":"{schema}"}},"reported":{{}}}}}}"#
            ),
            format!(
                r#"{{"id":"gw","moduleId":"$edgeHub","eTag":"Mw==",{module_keys},"twinETag":"AAM=","properties":{{"desired":{{}},"reported":{{}}}}}}"#
            ),
        ];
        if filter {
            lines.push(format!(
                r#"{{"id":"gw","moduleId":"filter","eTag":"NA==",{module_keys},"twinETag":"AAQ=","properties":{{"desired":{{"threshold":{}}},"reported":{{}}}}}}"#,
                if schema == "1.0" { 1 } else { 2 }
            ));
        }
        lines.join("\n") + "\n"
    };
    let write = |name: &str, body: String| {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap_or_else(|e| panic!("{e}"));
        path.to_str().unwrap_or_default().to_owned()
    };
    let base = write("base.jsonl", export("1.0", true));
    let primary = write("primary.jsonl", export("1.0", true));
    // The secondary's deployment moved on and a custom module changed.
    let secondary = write("secondary.jsonl", export("1.1", true));
    let out = dir.join("out");
    let run = failback(&[
        "merge",
        "--base",
        &base,
        "--hub",
        &format!("primary={primary}"),
        "--hub",
        &format!("secondary={secondary}"),
        "--out",
        out.to_str().unwrap_or_default(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let files = outputs(&out);
    let plan = &files["primary.import.jsonl"];
    // The custom module's change is carried; the $edgeAgent one is not.
    assert_eq!(plan.lines().count(), 1, "{plan}");
    assert!(plan.contains(r#""moduleId":"filter""#), "{plan}");
    assert!(!plan.contains("$edgeAgent"), "{plan}");
    assert!(
        files["report.json"].contains("1 changes to edge system modules"),
        "{}",
        files["report.json"]
    );
    // An empty hub gets the device and its custom module; `apply` makes
    // the system modules as the hub does, and merging again plans nothing
    // for them.
    let empty = write("empty.jsonl", String::new());
    let out2 = dir.join("out2");
    let merge = |secondary: &str, out: &Path| {
        let run = failback(&[
            "merge",
            "--base",
            &empty,
            "--hub",
            &format!("primary={primary}"),
            "--hub",
            &format!("secondary={secondary}"),
            "--out",
            out.to_str().unwrap_or_default(),
        ]);
        assert!(run.status.success(), "{}", text(&run.stderr));
        outputs(out)
    };
    let files = merge(&empty, &out2);
    let plan = &files["secondary.import.jsonl"];
    assert_eq!(plan.lines().count(), 2, "{plan}");
    assert!(!plan.contains("$edge"), "{plan}");
    let applied = dir.join("secondary-after.jsonl");
    let run = failback(&[
        "apply",
        "--hub",
        &empty,
        "--plan",
        out2.join("secondary.import.jsonl")
            .to_str()
            .unwrap_or_default(),
        "--out",
        applied.to_str().unwrap_or_default(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let after = std::fs::read_to_string(&applied).unwrap_or_default();
    assert!(after.contains(r#""moduleId":"$edgeAgent""#), "{after}");
    assert!(after.contains(r#""moduleId":"$edgeHub""#), "{after}");
    let files = merge(applied.to_str().unwrap_or_default(), &dir.join("out3"));
    assert_eq!(files["secondary.import.jsonl"], "");
    assert_eq!(files["primary.import.jsonl"], "");
}

/// Errors in an identity file name the lines of the records they are
/// about, as in every other format.
#[test]
fn identity_file_errors_name_their_records_lines() {
    let read = |input: &str| {
        failback::format::collect_identities(failback::format::IdentityReader::new(
            input.as_bytes(),
            "ids.json",
        ))
        .map(|_| ())
        .unwrap_err()
    };
    let e = read(concat!(
        "[\n",
        "  {\"deviceId\": \"d1\", \"etag\": \"MQ==\"},\n",
        "  {\"deviceId\": \"d2\"},\n",
        "  {\"deviceId\": \"d1\"}\n",
        "]\n"
    ));
    assert_eq!(e.line, 4, "{e}");
    assert!(
        matches!(
            e.kind,
            failback::format::ReadErrorKind::DuplicateDevice { first_line: 2 }
        ),
        "{e}"
    );
    let e = read(concat!(
        "[\n",
        "  {\"deviceId\": \"d1\"},\n",
        "  {\"deviceId\": \"d9\", \"moduleId\": \"m\"}\n",
        "]\n"
    ));
    assert_eq!((e.line, e.device.as_deref()), (3, Some("d9")), "{e}");
}

/// What an identity line holds and what it may not: the identity fields
/// the merge keeps, a `statusReason` without a `status`, an export line
/// read as an identity, and a record that is no object.
#[test]
fn identity_lines_keep_their_fields_and_refuse_what_is_not_one() {
    use failback::format::{Format, ReadErrorKind, parse_identity_line};
    let line = parse_identity_line(
        "ids.json",
        7,
        r#"{"deviceId":"gw","status":"enabled","statusReason":"","capabilities":{"iotEdge":true},"deviceScope":"ms-azure-iot-edge://gw-1","parentScopes":["ms-azure-iot-edge://root-2"]}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(line.line, 7);
    assert_eq!(
        line.entity.capabilities,
        Some(serde_json::json!({"iotEdge": true}))
    );
    assert_eq!(
        line.entity.device_scope.as_deref(),
        Some("ms-azure-iot-edge://gw-1")
    );
    assert_eq!(
        line.entity.parent_scopes,
        Some(serde_json::json!(["ms-azure-iot-edge://root-2"]))
    );
    // An empty reason says nothing; a reason without a status is refused.
    assert!(parse_identity_line("f", 1, r#"{"deviceId":"d","statusReason":""}"#).is_ok());
    let e = parse_identity_line("f", 1, r#"{"deviceId":"d","statusReason":"stolen"}"#)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("status"), "{e}");
    assert!(matches!(e.kind, ReadErrorKind::MissingField), "{e}");
    // An export line (`id`, not `deviceId`) read as an identity.
    let e = parse_identity_line("f", 1, r#"{"id":"d","status":"enabled"}"#)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(
            e.kind,
            ReadErrorKind::FormatMismatch {
                expected: Format::Identity,
                found: Format::Export
            }
        ),
        "{e}"
    );
    let e = parse_identity_line("f", 1, r#"{"status":"enabled"}"#)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e.kind, ReadErrorKind::MissingField), "{e}");
    // A record that is no object.
    let e = parse_identity_line("f", 1, "[1]").map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("an object"), "{e}");
}
