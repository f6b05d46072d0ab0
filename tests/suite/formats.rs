//! The readers and writers of export and twin files against hand-written
//! fixtures, round trips, and the bad inputs of RELIABILITY.md.

use std::collections::BTreeMap;
use std::path::PathBuf;

use failback::doc::{AuthType, DeviceSnapshot, Entity, Status};
use failback::format::{
    DeviceFile, DeviceRecord, ExportLine, ExportLineRef, ExportReader, Format, ImportMode,
    InputFile, ReadError, ReadErrorKind, RecordMeta, TwinReader, collect_export, collect_twins,
    detect_format, read_export, read_input, read_twins, write_device, write_export_line,
    write_twin_device,
};
use failback::validate::{Section, ValidationErrorKind};
use serde_json::json;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn export_fixture() -> DeviceFile {
    match read_export(fixture("export.jsonl")) {
        Ok(file) => file,
        Err(e) => panic!("{e}"),
    }
}

/// Every key and thumbprint in the fixtures.
const SECRETS: [&str; 12] = [
    "UWaSl1f+BjX8a+7iW60sSZvbhjYbbG+pLDK1EeDq56w=",
    "Jo1/yUOC83gkSX8zdNv8p6n9owWja706xMNDeUzImNw=",
    "WcD7PXDjiNs63ywiw5fnGE5ZoDUdpvEbi5wyTPFny0E=",
    "SoNesghWNSSxoj2WQ34CxTme6gPvvg8ZA/FNtm+kEMk=",
    "v6MhPnHz5r+YNB834kp+aoEIPZQKsSymjd/Xu8IdFbk=",
    "mZLS3kIeDI1D6bEiegyR2eI+TD5E0nnYUQrWfyk+uEQ=",
    "Jp7gFWltHVedrhqaCbNm8VTytbuWZnJZvZN36igeHKw=",
    "ZjMSk/59IzKVt7mro4EJV26Kghzl7ppKxyEz6sIbRgc=",
    "6FDAC291C47F01F7C559651F1E2EDE017582085A",
    "2C0F29BBE5340F48FBCFC3FCBBB166D9F0A89B2E",
    "A0740BFC0E901F02F80C1C98B1DB68C4D2E8657B",
    "82AFD20A574A3B884856E5E788918F362A4742E2",
];

fn write_all(file: &DeviceFile) -> Vec<u8> {
    let mut out = Vec::new();
    for device in file.devices.values() {
        if let Err(e) = write_device(&mut out, &device.snapshot, device.etags()) {
            panic!("{e}");
        }
    }
    out
}

/// A device's etags and its modules' (by module), without the lines they
/// were read at.
fn etags_of(device: &DeviceRecord) -> Vec<(Option<&str>, Option<&str>, Option<&str>)> {
    fn etags<'a>(
        module: Option<&'a str>,
        meta: &'a RecordMeta,
    ) -> (Option<&'a str>, Option<&'a str>, Option<&'a str>) {
        (module, meta.etag.as_deref(), meta.twin_etag.as_deref())
    }
    std::iter::once(etags(None, &device.meta))
        .chain(device.modules.iter().map(|(m, meta)| etags(Some(m), meta)))
        .collect()
}

#[test]
fn reads_a_realistic_export() {
    let file = export_fixture();
    assert_eq!(
        file.devices.keys().collect::<Vec<_>>(),
        [
            "cam-17",
            "edge-gw-1",
            "gw-ca-3",
            "leaf-sensor-9",
            "thermo-001"
        ]
    );
    // Two warning lines and a blank line.
    assert_eq!(file.skipped, 3);

    let thermo = &file.devices["thermo-001"];
    assert_eq!(thermo.meta.line, 2);
    assert_eq!(
        thermo.meta.etag.as_deref(),
        Some("MTA0NzQ2NjM1"),
        "quoted etag unwrapped"
    );
    assert_eq!(thermo.meta.twin_etag.as_deref(), Some("AAAAAAAAAAE="));
    let device = &thermo.snapshot.device;
    assert_eq!(
        device.status.as_ref().map(|s| s.status),
        Some(Status::Enabled)
    );
    assert_eq!(device.tags["zones"], json!(["a", "b"]));
    assert_eq!(device.desired["schedule"]["weekday"]["on"], json!("07:00"));
    assert_eq!(device.reported["firmware"]["version"], json!("1.4.2"));
    let auth = device.authentication.as_ref();
    assert_eq!(auth.and_then(|a| a.auth_type), Some(AuthType::Sas));
    assert_eq!(auth.map(|a| a.secrets().count()), Some(2));

    let cam = &file.devices["cam-17"].snapshot.device;
    let status = cam.status.as_ref();
    assert_eq!(status.map(|s| s.status), Some(Status::Disabled));
    assert_eq!(
        status.and_then(|s| s.reason.as_deref()),
        Some("stolen from site lyon-2")
    );
    assert_eq!(cam.extra["someNewField"], json!({"since": "2025-01"}));
    assert_eq!(
        cam.authentication.as_ref().and_then(|a| a.auth_type),
        Some(AuthType::SelfSigned)
    );

    let leaf = &file.devices["leaf-sensor-9"].snapshot.device;
    assert_eq!(leaf.authentication, None, "authentication: null");
    assert_eq!(leaf.reported["readings"], json!([1, 2, {"k": 3}]));
    assert_eq!(
        leaf.parent_scopes,
        Some(json!(["ms-azure-iot-edge://edge-gw-1-637812345678901234"]))
    );
}

#[test]
fn edge_modules_group_under_their_device_whatever_the_order() {
    let file = export_fixture();
    let edge = &file.devices["edge-gw-1"];
    // After a blank line: lines are counted as in the file.
    assert_eq!(edge.meta.line, 7);
    assert_eq!(
        edge.snapshot.modules.keys().collect::<Vec<_>>(),
        ["$edgeAgent", "$edgeHub", "filter"]
    );
    let agent = &edge.modules["$edgeAgent"];
    assert_eq!(
        (agent.etag.as_deref(), agent.twin_etag.as_deref()),
        (Some("MTIzNDU="), Some("AAAAAAAAAAU="))
    );
    let filter = &edge.snapshot.modules["filter"];
    assert_eq!(filter.extra["managedBy"], json!("IotEdge"));
    assert_eq!(
        filter.authentication.as_ref().and_then(|a| a.auth_type),
        Some(AuthType::None)
    );
    assert_eq!(
        edge.snapshot.device.capabilities,
        Some(json!({"iotEdge": true}))
    );
}

#[test]
fn export_round_trips_and_writing_is_canonical() {
    let file = export_fixture();
    let written = write_all(&file);
    let again = match collect_export(ExportReader::new(written.as_slice(), "merged.jsonl")) {
        Ok(again) => again,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(again.skipped, 0);
    assert_eq!(again.devices.len(), file.devices.len());
    for (id, device) in &file.devices {
        let back = &again.devices[id];
        assert_eq!(back.snapshot, device.snapshot, "{id}");
        assert_eq!(etags_of(back), etags_of(device), "{id}");
    }
    assert_eq!(
        write_all(&again),
        written,
        "a second write gives the same bytes"
    );

    let text = String::from_utf8(written).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    // Device line, then its modules by moduleId.
    let edge: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with(r#"{"id":"edge-gw-1""#))
        .copied()
        .collect();
    assert!(!edge.first().is_some_and(|l| l.contains("moduleId")));
    assert!(
        edge.get(1)
            .is_some_and(|l| l.contains(r#""moduleId":"$edgeAgent""#))
    );
    assert!(
        edge.get(3)
            .is_some_and(|l| l.contains(r#""moduleId":"filter""#))
    );
    // Unknown fields come back, after the known ones.
    assert!(
        text.contains(r#""capabilities":{"iotEdge":false},"someNewField":{"since":"2025-01"}}"#)
    );
    assert!(text.contains(r#""managedBy":"IotEdge""#));
    // The export carries keys in clear: that is its purpose.
    assert!(text.contains(SECRETS[0]));
    assert!(text.starts_with(
        r#"{"id":"cam-17","eTag":"MjU1MjAzMTk=","status":"disabled","statusReason":"stolen from site lyon-2","authentication":{"#
    ));
}

#[test]
fn every_import_mode_is_read() {
    let file = fixture("import-modes.jsonl");
    let text = std::fs::read(&file).unwrap_or_default();
    let lines: Vec<_> = ExportReader::new(text.as_slice(), "import-modes.jsonl").collect();
    let mut modes = Vec::new();
    for line in lines {
        let line = match line {
            Ok(line) => line,
            Err(e) => panic!("{e}"),
        };
        let named = line.id.trim_start_matches("d-");
        let expected = if named == "default" {
            ImportMode::CreateOrUpdate
        } else {
            ImportMode::from_name(named).unwrap_or_default()
        };
        assert_eq!(line.import_mode, expected, "{}", line.id);
        assert_eq!(line.import_mode.as_str(), line.import_mode.to_string());
        modes.push(line.import_mode);
        if line.id == "d-updateIfMatchETag" {
            assert_eq!(line.etag.as_deref(), Some("MTA0NzQ2NjM1"));
        }
    }
    for mode in ImportMode::ALL {
        assert!(modes.contains(&mode), "{mode}");
    }
}

#[test]
fn reads_twins_with_their_times() {
    let file = match read_twins(fixture("twins.jsonl")) {
        Ok(file) => file,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(file.devices.len(), 3);
    let thermo = &file.devices["thermo-001"];
    assert_eq!(thermo.meta.twin_etag.as_deref(), Some("AAAAAAAAAAE="));
    assert_eq!(thermo.meta.version, Some(7));
    let times = |id: &str| match &file.devices[id].times {
        Some(times) => times.device.clone(),
        None => panic!("a twin file gives times"),
    };
    // 0001-01-01 is IoT Hub's "never".
    assert_eq!(times("thermo-001").status, None);
    let device = &thermo.snapshot.device;
    assert!(
        device.extra.is_empty(),
        "runtime fields and modelId (the device's) dropped"
    );
    assert_eq!(device.authentication, None);
    assert_eq!(device.tags["zones"], json!(["a", "b"]));
    assert!(!device.desired.contains_key("$metadata") && !device.desired.contains_key("$version"));
    let desired = &times("thermo-001").desired;
    assert_eq!(desired.last_updated, Some(1_709_287_200_500));
    assert_eq!(desired.time_at(&["targetTemp"]), Some(1_709_287_200_500));
    assert_eq!(
        desired.time_at(&["schedule", "weekday", "on"]),
        Some(1_706_774_400_000)
    );
    assert_eq!(
        times("thermo-001").reported.time_at(&["temp"]),
        Some(1_709_294_398_123)
    );

    let cam = &file.devices["cam-17"];
    assert_eq!(times("cam-17").status, Some(1_709_285_400_000));
    assert_eq!(
        cam.snapshot
            .device
            .status
            .as_ref()
            .and_then(|s| s.reason.as_deref()),
        Some("stolen from site lyon-2")
    );

    let edge = &file.devices["edge-gw-1"];
    assert_eq!(edge.modules["$edgeAgent"].line, 3);
    assert_eq!(edge.modules["$edgeAgent"].version, Some(9));
    assert_eq!(
        edge.snapshot.modules["$edgeAgent"].reported["lastDesiredVersion"],
        json!(5)
    );
    assert_eq!(
        edge.snapshot.device.device_scope.as_deref(),
        Some("ms-azure-iot-edge://edge-gw-1-637812345678901234")
    );
}

#[test]
fn twins_round_trip() {
    let file = match read_twins(fixture("twins.jsonl")) {
        Ok(file) => file,
        Err(e) => panic!("{e}"),
    };
    let mut out = Vec::new();
    for device in file.devices.values() {
        if let Err(e) = write_twin_device(&mut out, device) {
            panic!("{e}");
        }
    }
    let again = match collect_twins(TwinReader::new(out.as_slice(), "twins-out.jsonl")) {
        Ok(again) => again,
        Err(e) => panic!("{e}"),
    };
    for (id, device) in &file.devices {
        let back = &again.devices[id];
        assert_eq!(back.snapshot, device.snapshot, "{id}");
        assert_eq!(etags_of(back), etags_of(device), "{id}");
        assert_eq!(back.meta.version, device.meta.version);
        for (module, meta) in &device.modules {
            assert_eq!(back.modules[module].version, meta.version);
        }
        // Times survive at millisecond precision, the unit of MetaTree.
        assert_eq!(back.times, device.times);
    }
}

#[test]
fn formats_are_detected_or_forced() {
    assert_eq!(detect_format(r#"{"id":"d1"}"#), Some(Format::Export));
    assert_eq!(
        detect_format(r#"{"deviceId":"d1","id":"x"}"#),
        Some(Format::Twin)
    );
    assert_eq!("twin".parse::<Format>().ok(), Some(Format::Twin));
    assert!("jsonl".parse::<Format>().is_err());
    assert!(matches!(
        read_input(fixture("export.jsonl"), None),
        Ok(InputFile::Export(_))
    ));
    assert!(matches!(
        read_input(fixture("twins.jsonl"), None),
        Ok(InputFile::Twin(_))
    ));
    // Forced to the other format, every line says so.
    let err = read_input(fixture("twins.jsonl"), Some(Format::Export)).err();
    assert!(matches!(
        err.map(|e| (e.line, e.kind)),
        Some((
            1,
            ReadErrorKind::FormatMismatch {
                expected: Format::Export,
                found: Format::Twin
            }
        ))
    ));
}

// ---------------------------------------------------------------------------
// Bad input: each case a typed error on the right line, naming the device.

/// Reads `bad` as line 3 of an export, after a good line and a warning.
fn bad_export(bad: &str) -> ReadError {
    let input = format!("{{\"id\":\"good\",\"status\":\"enabled\"}}\nWarning: x\n{bad}\n");
    let result = collect_export(ExportReader::new(input.as_bytes(), "devices.txt"));
    match result {
        Err(e) => {
            assert_eq!(e.line, 3, "{e}");
            assert_eq!(e.file, "devices.txt");
            assert!(!e.to_string().contains('\n'), "{e}");
            e
        }
        Ok(_) => panic!("accepted: {}", short(bad)),
    }
}

/// The start of a long input, for a failure message.
fn short(text: &str) -> &str {
    text.get(..120).unwrap_or(text)
}

/// Reads `bad` as line 2 of a twin file.
fn bad_twin(bad: &str) -> ReadError {
    let input = format!("{{\"deviceId\":\"good\"}}\n{bad}\n");
    match collect_twins(TwinReader::new(input.as_bytes(), "twins.jsonl")) {
        Err(e) => {
            assert_eq!(e.line, 2, "{e}");
            e
        }
        Ok(_) => panic!("accepted: {}", short(bad)),
    }
}

fn invalid(e: &ReadError) -> Option<&ValidationErrorKind> {
    match &e.kind {
        ReadErrorKind::Invalid(kind) => Some(kind),
        _ => None,
    }
}

fn nested(depth: usize) -> serde_json::Value {
    let mut value = json!(1);
    for _ in 0..depth {
        value = json!({ "k": value });
    }
    value
}

#[test]
fn truncated_line() {
    let e = match read_export(fixture("truncated.jsonl")) {
        Err(e) => e,
        Ok(_) => panic!("accepted"),
    };
    assert_eq!(e.line, 2);
    assert!(matches!(e.kind, ReadErrorKind::InvalidJson { .. }), "{e}");
    let shown = e.to_string();
    assert!(
        shown.contains(
            "truncated.jsonl:2: device \"d2\" field \"status\": invalid JSON at column 24: EOF"
        ),
        "{e}"
    );
}

#[test]
fn invalid_utf8() {
    let e = match read_export(fixture("invalid-utf8.jsonl")) {
        Err(e) => e,
        Ok(_) => panic!("accepted"),
    };
    assert_eq!(e.line, 2);
    assert!(
        matches!(e.kind, ReadErrorKind::InvalidUtf8 { valid_up_to: 50 }),
        "{e}"
    );
}

#[test]
fn wrong_types() {
    for (line, field, expected, found) in [
        (
            r#"{"id":"d1","status":1}"#,
            "status",
            "a string",
            "a number",
        ),
        (
            r#"{"id":"d1","status":"enabled","tags":"x"}"#,
            "tags",
            "an object",
            "a string",
        ),
        (
            r#"{"id":7,"status":"enabled"}"#,
            "id",
            "a string",
            "a number",
        ),
        (
            r#"{"id":"d1","status":"enabled","properties":{"desired":[1]}}"#,
            "properties.desired",
            "an object",
            "an array",
        ),
        (
            r#"{"id":"d1","status":"enabled","authentication":{"symmetricKey":{"primaryKey":12}}}"#,
            "authentication",
            "a string",
            "a number",
        ),
        (
            r#"{"id":"d1","status":"enabled","eTag":true}"#,
            "eTag",
            "a string",
            "a boolean",
        ),
        (
            r#"{"id":null,"status":"enabled"}"#,
            "id",
            "a string",
            "null",
        ),
    ] {
        let e = bad_export(line);
        assert_eq!(e.field.as_deref(), Some(field), "{e}");
        match &e.kind {
            ReadErrorKind::WrongType {
                expected: exp,
                found: fnd,
            } => assert_eq!((exp.as_str(), fnd.as_str()), (expected, found), "{e}"),
            _ => panic!("{e}"),
        }
    }
    let e = bad_twin(r#"{"deviceId":"d1","version":"7"}"#);
    assert_eq!(e.field.as_deref(), Some("version"));
    assert_eq!(e.device.as_deref(), Some("d1"));
    assert!(matches!(e.kind, ReadErrorKind::WrongType { .. }), "{e}");
}

#[test]
fn unknown_import_mode_status_and_auth_type() {
    let e = bad_export(r#"{"id":"d1","importMode":"Upsert","status":"enabled"}"#);
    assert!(
        matches!(e.kind, ReadErrorKind::UnknownImportMode { .. }),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        r#"devices.txt:3: device "d1" field "importMode": unknown importMode "Upsert""#
    );
    let e = bad_export(r#"{"id":"d1","status":"Enable"}"#);
    assert!(matches!(e.kind, ReadErrorKind::InvalidStatus { .. }), "{e}");
    // The Java SDK's `SELF_SIGNED` is refused by the hub too.
    let e = bad_export(r#"{"id":"d1","status":"enabled","authentication":{"type":"SELF_SIGNED"}}"#);
    assert!(
        matches!(e.kind, ReadErrorKind::InvalidAuthType { .. }),
        "{e}"
    );
    assert_eq!(e.field.as_deref(), Some("authentication.type"));
}

#[test]
fn keys_of_a_length_the_hub_refuses_are_refused_without_showing_them() {
    // 12 bytes: too short; the key never appears in the error.
    let e = bad_export(
        r#"{"id":"d1","status":"enabled","authentication":{"type":"sas","symmetricKey":{"primaryKey":"c2hvcnQta2V5LTEy","secondaryKey":null}}}"#,
    );
    assert!(
        matches!(e.kind, ReadErrorKind::InvalidKeyLength { length: 12 }),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        r#"devices.txt:3: device "d1" field "authentication.symmetricKey.primaryKey": symmetric key of 12 bytes, the hub takes 16 to 64"#
    );
    // 65 bytes, and malformed base64, in the secondary key.
    let long = format!("{}=", "Q".repeat(87));
    let e = bad_export(&format!(
        r#"{{"id":"d1","status":"enabled","authentication":{{"symmetricKey":{{"primaryKey":"","secondaryKey":"{long}"}}}}}}"#
    ));
    assert_eq!(
        e.field.as_deref(),
        Some("authentication.symmetricKey.secondaryKey")
    );
    assert!(!e.to_string().contains("QQQQ"), "{e}");
    let e = bad_identity_key("a2V5=LXByaW1hcnktMDAwMDAwMDAw");
    assert!(
        matches!(e.kind, ReadErrorKind::InvalidKeyLength { length: 0 }),
        "{e}"
    );
    // Empty keys (the hub generates them) and a sample's placeholders read.
    let input = concat!(
        r#"{"id":"d1","status":"enabled","authentication":{"symmetricKey":{"primaryKey":"","secondaryKey":null}}}"#,
        "\n",
        r#"{"id":"d2","status":"enabled","authentication":{"symmetricKey":{"primaryKey":"<base64Key>","secondaryKey":"<GetKey()>"}}}"#,
        "\n",
    );
    assert!(collect_export(ExportReader::new(input.as_bytes(), "f")).is_ok());
}

/// An identity file (the `az iot hub device-identity show` shape) with
/// this primary key.
fn bad_identity_key(key: &str) -> ReadError {
    let input = format!(
        r#"{{"deviceId":"d1","etag":"MQ==","status":"enabled","authentication":{{"type":"sas","symmetricKey":{{"primaryKey":"{key}","secondaryKey":null}}}}}}"#
    );
    let read: Result<Vec<_>, _> =
        failback::format::IdentityReader::new(input.as_bytes(), "ids.json").collect();
    match read {
        Err(e) => {
            assert_eq!(e.device.as_deref(), Some("d1"), "{e}");
            assert!(!e.to_string().contains(key), "{e}");
            e
        }
        Ok(_) => panic!("accepted key {key}"),
    }
}

#[test]
fn enums_are_read_in_any_case_and_written_back_canonically() {
    let input = concat!(
        r#"{"id":"d1","importMode":"UpdateIfMatchETag","eTag":"MQ==","status":"Enabled","authentication":{"type":"SAS","symmetricKey":{"primaryKey":"cHJpbWFyeS1rZXktMDEyMzQ1Njc4OWFi","secondaryKey":"c2Vjb25kYXJ5LWtleS0wMTIzNDU2Nzg5"}}}"#,
        "\n",
        r#"{"id":"d2","importMode":"Update","status":"DISABLED","authentication":{"type":"CertificateAuthority"}}"#,
        "\n",
    );
    let lines: Vec<ExportLine> = ExportReader::new(input.as_bytes(), "f")
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lines[0].import_mode, ImportMode::UpdateIfMatchETag);
    assert_eq!(lines[1].import_mode, ImportMode::Update);
    let mut out = Vec::new();
    for line in &lines {
        write_export_line(&mut out, &ExportLineRef::from(line)).unwrap_or_else(|e| panic!("{e}"));
    }
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.contains(r#""importMode":"updateIfMatchETag","status":"enabled""#),
        "{out}"
    );
    assert!(out.contains(r#""status":"disabled""#), "{out}");
    assert!(out.contains(r#""type":"sas""#), "{out}");
    assert!(out.contains(r#""type":"certificateAuthority""#), "{out}");
}

#[test]
fn missing_and_duplicate_fields() {
    let e = bad_export(r#"{"status":"enabled"}"#);
    assert!(matches!(e.kind, ReadErrorKind::MissingField), "{e}");
    assert_eq!(e.field.as_deref(), Some("id"));
    let e = bad_export(r#"{"id":"d1","eTag":"MQ=="}"#);
    assert!(matches!(e.kind, ReadErrorKind::MissingField), "{e}");
    assert_eq!(e.field.as_deref(), Some("status"));
    let e = bad_export(r#"{"id":"d1","status":"enabled","tags":{"a":1,"a":2}}"#);
    assert!(matches!(e.kind, ReadErrorKind::DuplicateField), "{e}");
    assert_eq!(e.field.as_deref(), Some("tags.a"));
    // Given again after another key, and in a twin's properties.
    let e = bad_export(r#"{"id":"d1","status":"enabled","tags":{"b":1,"a":2,"b":3}}"#);
    assert!(matches!(e.kind, ReadErrorKind::DuplicateField), "{e}");
    assert_eq!(e.field.as_deref(), Some("tags.b"));
    let e = bad_twin(r#"{"deviceId":"d1","properties":{"desired":{"y":1,"x":2,"y":3}}}"#);
    assert!(matches!(e.kind, ReadErrorKind::DuplicateField), "{e}");
    assert_eq!(e.field.as_deref(), Some("properties.desired.y"));
    // The key serde_json's raw values use, nested: a typed error, not a
    // section that could not be read back.
    let e = bad_export(
        r#"{"id":"d1","status":"enabled","tags":{"a":{"$serde_json::private::RawValue":"x"}}}"#,
    );
    assert!(matches!(e.kind, ReadErrorKind::InvalidJson { .. }), "{e}");
    assert_eq!(e.field.as_deref(), Some("tags"));
    let e = bad_twin(r#"{"moduleId":"m"}"#);
    assert!(matches!(e.kind, ReadErrorKind::MissingField), "{e}");
    assert_eq!(e.field.as_deref(), Some("deviceId"));
}

#[test]
fn bad_ids() {
    let e = bad_export(r#"{"id":"room 12/sensor","status":"enabled"}"#);
    assert_eq!(
        invalid(&e),
        Some(&ValidationErrorKind::IdChar { ch: ' ' }),
        "{e}"
    );
    assert_eq!(e.field.as_deref(), Some("id"));
    let long = "a".repeat(129);
    let e = bad_export(&format!(r#"{{"id":"{long}","status":"enabled"}}"#));
    assert_eq!(
        invalid(&e),
        Some(&ValidationErrorKind::IdTooLong { chars: 129 })
    );
    let e = bad_export(r#"{"id":"d1","moduleId":"m/1"}"#);
    assert_eq!(e.field.as_deref(), Some("moduleId"));
    assert_eq!(e.module.as_deref(), Some("m/1"));
    // Legacy characters are read.
    let input = r#"{"id":"old#1;+","status":"enabled"}"#;
    assert!(collect_export(ExportReader::new(input.as_bytes(), "f")).is_ok());
}

#[test]
fn depth_eleven() {
    let line = json!({"id": "d1", "status": "enabled", "properties": {"desired": nested(11)}});
    let e = bad_export(&line.to_string());
    assert_eq!(invalid(&e), Some(&ValidationErrorKind::TooDeep), "{e}");
    assert!(
        e.field
            .as_deref()
            .is_some_and(|f| f.starts_with("properties.desired.k.k"))
    );
    let ok = json!({"id": "d1", "status": "enabled", "tags": nested(10)});
    assert!(collect_export(ExportReader::new(ok.to_string().as_bytes(), "f")).is_ok());
}

#[test]
fn oversized_sections() {
    let big = "x".repeat(3000);
    let tags = json!({"a": big, "b": big, "c": big});
    let e = bad_export(&json!({"id": "d1", "status": "enabled", "tags": tags}).to_string());
    assert!(
        matches!(
            invalid(&e),
            Some(ValidationErrorKind::SectionTooLarge {
                section: Section::Tags,
                limit: 8192,
                ..
            })
        ),
        "{e}"
    );
    let reported: serde_json::Map<_, _> = (0..12).map(|i| (format!("r{i}"), json!(big))).collect();
    let e = bad_twin(&json!({"deviceId": "d1", "properties": {"reported": reported}}).to_string());
    assert!(matches!(
        invalid(&e),
        Some(ValidationErrorKind::SectionTooLarge {
            section: Section::Reported,
            ..
        })
    ));
    let e = bad_export(
        &json!({"id": "d1", "status": "enabled", "tags": {"s": "x".repeat(4097)}}).to_string(),
    );
    assert!(matches!(
        invalid(&e),
        Some(ValidationErrorKind::StringTooLong { bytes: 4097 })
    ));
}

#[test]
fn forbidden_key_characters() {
    for (key, ch) in [
        ("a.b", '.'),
        ("$foo", '$'),
        ("a b", ' '),
        ("a\u{1}", '\u{1}'),
    ] {
        let line =
            json!({"id": "d1", "status": "enabled", "properties": {"reported": {"ok": {key: 1}}}});
        let e = bad_export(&line.to_string());
        assert_eq!(
            invalid(&e),
            Some(&ValidationErrorKind::KeyChar { ch }),
            "{e}"
        );
        assert_eq!(e.device.as_deref(), Some("d1"));
        assert_eq!(e.field, Some(format!("properties.reported.ok.{key}")));
    }
}

#[test]
fn out_of_range_integers() {
    for n in [
        "4503599627370496",
        "-4503599627370497",
        "18446744073709551615",
    ] {
        let e = bad_export(&format!(
            r#"{{"id":"d1","status":"enabled","tags":{{"n":{n}}}}}"#
        ));
        assert_eq!(
            invalid(&e),
            Some(&ValidationErrorKind::IntegerOutOfRange),
            "{e}"
        );
        assert_eq!(e.field.as_deref(), Some("tags.n"));
    }
    let ok =
        r#"{"id":"d1","status":"enabled","tags":{"hi":4503599627370495,"lo":-4503599627370496}}"#;
    assert!(collect_export(ExportReader::new(ok.as_bytes(), "f")).is_ok());
}

#[test]
fn status_reason_over_128() {
    let e = bad_export(&format!(
        r#"{{"id":"d1","status":"disabled","statusReason":"{}"}}"#,
        "r".repeat(129)
    ));
    assert_eq!(
        invalid(&e),
        Some(&ValidationErrorKind::StatusReasonTooLong { chars: 129 })
    );
}

#[test]
fn duplicate_lines_name_both() {
    let e = match read_export(fixture("duplicate-device.jsonl")) {
        Err(e) => e,
        Ok(_) => panic!("accepted"),
    };
    assert_eq!(e.line, 4);
    assert!(
        matches!(e.kind, ReadErrorKind::DuplicateDevice { first_line: 1 }),
        "{e}"
    );
    assert!(
        e.to_string().ends_with(
            r#"duplicate-device.jsonl:4: device "d1": duplicate device line, first on line 1"#
        ),
        "{e}"
    );
    let e = bad_export(r#"{"id":"good","status":"disabled"}"#);
    assert!(
        matches!(e.kind, ReadErrorKind::DuplicateDevice { first_line: 1 }),
        "{e}"
    );
    let input = "{\"id\":\"d\",\"status\":\"enabled\"}\n{\"id\":\"d\",\"moduleId\":\"m\"}\n{\"id\":\"d\",\"moduleId\":\"m\"}\n";
    let e = collect_export(ExportReader::new(input.as_bytes(), "f")).err();
    assert!(matches!(
        e.map(|e| (e.line, e.kind)),
        Some((3, ReadErrorKind::DuplicateModule { first_line: 2 }))
    ));
    let e = bad_twin(r#"{"deviceId":"good"}"#);
    assert!(matches!(
        e.kind,
        ReadErrorKind::DuplicateDevice { first_line: 1 }
    ));
}

#[test]
fn module_without_its_device() {
    let input = "{\"id\":\"d\",\"status\":\"enabled\"}\n{\"id\":\"e\",\"moduleId\":\"m\"}\n{\"id\":\"f\",\"moduleId\":\"m\"}\n";
    let e = collect_export(ExportReader::new(input.as_bytes(), "f")).err();
    let e = e.map(|e| (e.line, e.device, e.module, e.kind));
    assert!(matches!(
        e,
        Some((2, Some(d), Some(m), ReadErrorKind::OrphanModule)) if d == "e" && m == "m"
    ));
}

#[test]
fn unparseable_timestamps() {
    let e = bad_twin(
        r#"{"deviceId":"d1","properties":{"desired":{"a":1,"$metadata":{"a":{"$lastUpdated":"2024-02-30T00:00:00Z"}}}}}"#,
    );
    assert!(
        matches!(e.kind, ReadErrorKind::InvalidTimestamp { .. }),
        "{e}"
    );
    assert_eq!(
        e.field.as_deref(),
        Some("properties.desired.$metadata.a.$lastUpdated")
    );
    assert_eq!(e.device.as_deref(), Some("d1"));
    // A runtime time the merge does not need fails no read, whatever it
    // holds (doc samples have `2015-02-30`).
    let input = "{\"deviceId\":\"d1\",\"statusUpdateTime\":\"last tuesday\",\"lastActivityTime\":\"2015-02-30T00:00:00\"}\n";
    let file = collect_twins(TwinReader::new(input.as_bytes(), "twins.jsonl"));
    assert_eq!(
        file.map(|f| f.devices["d1"].times.as_ref().and_then(|t| t.device.status))
            .map_err(|e| e.to_string()),
        Ok(None)
    );
}

#[test]
fn line_too_long_is_bounded_and_reading_goes_on() {
    let input = format!(
        "{{\"id\":\"d1\",\"status\":\"enabled\",\"tags\":{{\"a\":\"{}\"}}}}\n{{\"id\":\"d2\",\"status\":\"enabled\"}}\n",
        "x".repeat(200)
    );
    let mut reader = ExportReader::new(input.as_bytes(), "f").with_max_line(100);
    let first = reader.next().map(|r| r.map_err(|e| (e.line, e.kind)));
    assert!(matches!(
        first,
        Some(Err((1, ReadErrorKind::LineTooLong { limit: 100 })))
    ));
    let second = reader.next().map(|r| r.map(|l| (l.line, l.id)).ok());
    assert_eq!(second, Some(Some((2, "d2".to_owned()))));
}

#[test]
fn missing_file() {
    let e = read_export(fixture("no-such-file.jsonl")).err();
    assert!(matches!(
        e.map(|e| (e.line, e.kind)),
        Some((0, ReadErrorKind::Io(_)))
    ));
}

// ---------------------------------------------------------------------------
// Secrets never show.

#[test]
fn no_error_or_debug_output_shows_a_key() {
    let k = SECRETS[0];
    let t = SECRETS[8];
    let auth = format!(
        r#""authentication":{{"symmetricKey":{{"primaryKey":"{k}","secondaryKey":null}},"x509Thumbprint":{{"primaryThumbprint":"{t}","secondaryThumbprint":null}},"type":"sas"}}"#
    );
    let cases = [
        format!(r#"{{"id":"d1","status":"enabled",{auth},"tags":{{"a.b":1}}}}"#),
        format!(r#"{{"id":"d1","status":"enabled",{auth},"tags":5}}"#),
        format!(r#"{{"id":"d1","status":"{k}",{auth}}}"#),
        format!(r#"{{"id":"d1","status":"enabled","importMode":"{k}"}}"#),
        format!(r#"{{"id":"d1","status":"enabled","authentication":{{"type":"{k}"}}}}"#),
        format!(r#"{{"id":"d1","status":"enabled","authentication":{{"symmetricKey":"{k}"}}}}"#),
        format!(
            r#"{{"id":"d1","status":"enabled","authentication":{{"symmetricKey":{{"primaryKey":["{k}"]}}}}}}"#
        ),
        format!(r#"{{"id":"d1","status":"enabled",{auth},"status":"enabled"}}"#),
        format!(r#"{{"id":"d1","status":"enabled",{auth}"#),
        format!(r#"{{"id":"d1","status":"enabled",{auth},}}"#),
        format!(r#"{{"id":"d1","status":"enabled",{auth}}} trailing {k}"#),
        format!(r#"{{"id":"d1","statusReason":"{k}",{auth}}}"#),
        format!(
            r#"{{"id":"d1","status":"enabled","statusReason":"{}",{auth}}}"#,
            k.repeat(3)
        ),
    ];
    for case in &cases {
        let e = bad_export(case);
        let shown = format!("{e} {e:?}");
        for secret in SECRETS {
            assert!(!shown.contains(secret), "{shown}");
        }
        // Not even a long piece of one.
        assert!(!shown.contains(k.get(..12).unwrap_or(k)), "{shown}");
    }
    let twin_cases = [
        format!(
            r#"{{"deviceId":"d1","x509Thumbprint":{{"primaryThumbprint":"{t}"}},"properties":{{"reported":{{"$metadata":{{"$lastUpdated":"{t}"}}}}}}}}"#
        ),
        format!(r#"{{"deviceId":"d1","etag":"{k}","version":"{k}"}}"#),
        format!(
            r#"{{"deviceId":"d1","properties":{{"desired":{{"$metadata":{{"$lastUpdated":"{k}"}}}}}}}}"#
        ),
    ];
    for case in &twin_cases {
        let e = bad_twin(case);
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains(k) && !shown.contains(t), "{shown}");
    }
    // What was read successfully shows only fingerprints in Debug.
    let file = export_fixture();
    let shown = format!("{file:?}");
    for secret in SECRETS {
        assert!(!shown.contains(secret));
    }
    assert!(shown.contains("sha256:"));
}

// ---------------------------------------------------------------------------
// No input panics; every truncation of a good line is a typed error.

#[test]
fn every_truncation_of_every_fixture_line_is_an_error_not_a_panic() {
    for name in ["export.jsonl", "twins.jsonl", "import-modes.jsonl"] {
        let text = std::fs::read_to_string(fixture(name)).unwrap_or_default();
        for line in text.lines().filter(|l| l.starts_with('{')) {
            for cut in (1..line.len()).filter(|&c| line.is_char_boundary(c)) {
                let part = line.get(..cut).unwrap_or_default();
                let input = format!("{part}\n");
                let export = ExportReader::new(input.as_bytes(), "f").next();
                let twin = TwinReader::new(input.as_bytes(), "f").next();
                for result in [export.map(|r| r.err()), twin.map(|r| r.err())] {
                    let Some(Some(e)) = result else {
                        panic!("a cut line was accepted: {part}")
                    };
                    assert_eq!(e.line, 1);
                    let shown = format!("{e} {e:?}");
                    for secret in SECRETS {
                        assert!(!shown.contains(secret), "{shown}");
                    }
                }
            }
        }
    }
}

mod arbitrary {
    use proptest::prelude::*;

    use super::*;

    fn read_everything(bytes: &[u8]) {
        for result in ExportReader::new(bytes, "f").with_max_line(4096) {
            if let Err(e) = result {
                let _ = e.to_string();
            }
        }
        for result in TwinReader::new(bytes, "f").with_max_line(4096) {
            if let Err(e) = result {
                let _ = e.to_string();
            }
        }
        let _ = collect_export(ExportReader::new(bytes, "f"));
        let _ = collect_twins(TwinReader::new(bytes, "f"));
    }

    /// JSON-ish bytes, so that the parsers get past the first byte.
    fn jsonish() -> impl Strategy<Value = Vec<u8>> {
        let atoms = prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            "\"id\"",
            "\"deviceId\"",
            "\"moduleId\"",
            "\"status\"",
            "\"enabled\"",
            "\"tags\"",
            "\"properties\"",
            "\"desired\"",
            "\"$metadata\"",
            "\"$lastUpdated\"",
            "\"authentication\"",
            "\"type\"",
            "\"importMode\"",
            "null",
            "true",
            "1",
            "-4503599627370497",
            "1e999",
            "\"a.b\"",
            "\"\\u0000\"",
            "\n",
            " ",
            "\u{85}",
            "\"x\"",
        ]);
        prop::collection::vec(atoms, 0..60).prop_map(|parts| parts.concat().into_bytes())
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            read_everything(&bytes);
        }

        #[test]
        fn json_like_input_never_panics(bytes in jsonish()) {
            read_everything(&bytes);
        }
    }
}

// ---------------------------------------------------------------------------
// Round trip of generated snapshots.

mod round_trip {
    use failback::doc::{Authentication, Secret, StatusValue, SymmetricKey, X509Thumbprint};
    use failback::format::DeviceEtags;
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    fn key() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_é-]{1,6}"
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-4_503_599_627_370_496_i64..=4_503_599_627_370_495).prop_map(Value::from),
            // Few digits: serde_json's default float parsing is exact for these.
            (-100_000_i32..100_000).prop_map(|i| Value::from(f64::from(i) / 100.0)),
            "[ -~é\\n\"\\\\]{0,12}".prop_map(Value::String),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn section() -> impl Strategy<Value = serde_json::Map<String, Value>> {
        prop::collection::btree_map(key(), value(), 0..4).prop_map(|m| m.into_iter().collect())
    }

    fn secret() -> impl Strategy<Value = Option<Secret>> {
        prop::option::of("[A-Za-z0-9+/]{43}=".prop_map(|s| Secret::new(&s)))
    }

    fn authentication() -> impl Strategy<Value = Option<Authentication>> {
        let auth_type = prop::option::of(prop::sample::select(vec![
            AuthType::Sas,
            AuthType::SelfSigned,
            AuthType::CertificateAuthority,
            AuthType::None,
        ]));
        prop::option::of(
            (
                secret(),
                secret(),
                secret(),
                secret(),
                auth_type,
                any::<(bool, bool)>(),
            )
                .prop_map(|(p, s, pt, st, auth_type, (keys, prints))| Authentication {
                    symmetric_key: keys.then_some(SymmetricKey {
                        primary_key: p,
                        secondary_key: s,
                    }),
                    x509_thumbprint: prints.then_some(X509Thumbprint {
                        primary_thumbprint: pt,
                        secondary_thumbprint: st,
                    }),
                    auth_type,
                }),
        )
    }

    fn entity(device: bool) -> impl Strategy<Value = Entity> {
        let status = prop::option::of((
            any::<bool>(),
            prop::option::of("[ -~]{0,20}".prop_map(String::from)),
        ))
        .prop_map(|s| {
            s.map(|(disabled, reason)| StatusValue {
                status: if disabled {
                    Status::Disabled
                } else {
                    Status::Enabled
                },
                reason,
            })
        });
        let status = status.prop_filter("a device line has a status", move |s| {
            !device || s.is_some()
        });
        let extra = prop::collection::btree_map("x[a-zA-Z]{0,5}", value(), 0..3);
        (
            status,
            authentication(),
            prop::option::of(any::<bool>().prop_map(|e| json!({"iotEdge": e}))),
            prop::option::of("[a-z:/0-9-]{1,20}"),
            prop::option::of(
                prop::collection::vec("[a-z:/0-9-]{1,20}", 0..3).prop_map(|v| json!(v)),
            ),
            extra,
            (section(), section(), section()),
        )
            .prop_map(
                |(
                    status,
                    authentication,
                    capabilities,
                    device_scope,
                    parent_scopes,
                    extra,
                    (tags, desired, reported),
                )| Entity {
                    status,
                    authentication,
                    capabilities,
                    device_scope,
                    parent_scopes,
                    extra,
                    tags: tags.into(),
                    desired: desired.into(),
                    reported: reported.into(),
                },
            )
    }

    fn snapshot() -> impl Strategy<Value = DeviceSnapshot> {
        (
            "[a-zA-Z0-9._%*?!(),:=@$'-]{1,20}",
            entity(true),
            prop::collection::btree_map("[$a-zA-Z0-9_-]{1,12}", entity(false), 0..3),
        )
            .prop_map(|(id, device, modules)| DeviceSnapshot {
                id,
                device,
                modules,
            })
    }

    proptest! {
        #[test]
        fn write_then_read_gives_the_same_snapshot(snapshot in snapshot(), etag in prop::option::of("\"?[A-Za-z0-9=]{4,12}\"?")) {
            let mut modules = BTreeMap::new();
            for id in snapshot.modules.keys() {
                let meta = RecordMeta { etag: Some(format!("m-{id}")), ..RecordMeta::default() };
                modules.insert(id.clone(), meta);
            }
            let etags = DeviceEtags { etag: etag.as_deref(), twin_etag: Some("AAAAAAAAAAE="), modules: Some(&modules) };
            let mut out = Vec::new();
            write_device(&mut out, &snapshot, etags).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let file = collect_export(ExportReader::new(out.as_slice(), "f"))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let device = &file.devices[&snapshot.id];
            // SAS without both keys reads as keys not shown: the hub would
            // make new keys for it, never import it as written.
            let mut expected = snapshot.clone();
            for e in std::iter::once(&mut expected.device).chain(expected.modules.values_mut()) {
                if e.authentication.as_ref().is_some_and(Authentication::lacks_keys) {
                    e.authentication = None;
                }
            }
            prop_assert_eq!(&device.snapshot, &expected);
            let read: BTreeMap<_, _> = device.modules.iter().map(|(m, r)| (m, &r.etag)).collect();
            let written: BTreeMap<_, _> = modules.iter().map(|(m, r)| (m, &r.etag)).collect();
            prop_assert_eq!(read, written);
            // One pair of quotes is stripped on read.
            let unquoted = etag.as_deref().map(|e| {
                e.strip_prefix('"').and_then(|e| e.strip_suffix('"')).unwrap_or(e).to_owned()
            });
            prop_assert_eq!(&device.meta.etag, &unquoted);
            // Canonical: writing what was read gives the bytes of what it
            // reads as (the same bytes, keys not shown aside).
            let mut again = Vec::new();
            write_device(&mut again, &device.snapshot, DeviceEtags { etag: etag.as_deref(), ..device.etags() })
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut canonical = Vec::new();
            write_device(&mut canonical, &expected, etags)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&again, &canonical);
            if expected == snapshot {
                prop_assert_eq!(again, out);
            }
        }

        /// `DeviceRecord`'s serde is the twin shape: what a twin can carry
        /// comes back (status, scopes, tags, both sections, etags, version,
        /// generation, per-node times), keys and unknown identity fields
        /// never do, and a second trip changes nothing.
        #[test]
        fn a_record_survives_its_twin_shape(snapshot in snapshot(), version in prop::option::of(0_u64..1 << 40), status_time in prop::option::of(0_i64..4_102_444_800_000)) {
            let meta = |etag: &str| RecordMeta {
                etag: Some(format!("{etag}-identity")),
                twin_etag: Some(format!("{etag}-twin")),
                generation_id: Some("638000000000000000".into()),
                version,
                times_without_zone: false,
                line: 1,
            };
            let mut times = failback::doc::DeviceTimes::default();
            times.device.status = status_time;
            for key in snapshot.device.reported.keys() {
                times.device.reported.children.entry(key.clone()).or_default().last_updated = status_time;
            }
            let record = DeviceRecord {
                meta: meta("d"),
                modules: snapshot.modules.keys().map(|m| (m.clone(), meta(m))).collect(),
                times: Some(times),
                snapshot: snapshot.clone(),
            };
            let json = serde_json::to_string(&record).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: DeviceRecord = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
            let mut expected = record.clone();
            for entity in std::iter::once(&mut expected.snapshot.device).chain(expected.snapshot.modules.values_mut()) {
                entity.authentication = None;
                entity.extra.clear();
            }
            if let Some(times) = expected.times.as_mut() {
                for module in snapshot.modules.keys() {
                    times.modules.entry(module.clone()).or_default();
                }
            }
            prop_assert_eq!(&back, &expected);
            prop_assert_eq!(serde_json::to_string(&back).ok(), Some(json.clone()));
            // The text of a twin reads as the same record as its serde.
            prop_assert_eq!(DeviceRecord::from_twin_json(&json).ok(), Some(back));
            prop_assert!(!json.contains("authentication") && !json.contains("primaryKey"));
        }
    }

    #[test]
    fn a_module_twin_under_modules_must_be_an_object_of_its_device() {
        let cases = [
            (
                r#"{"deviceId":"d1","modules":[]}"#,
                "modules",
                "expected an object, found an array",
            ),
            (
                r#"{"deviceId":"d1","modules":{"m1":3}}"#,
                "modules.m1",
                "expected an object, found a number",
            ),
            (
                r#"{"deviceId":"d1","modules":{"m1":{"deviceId":"d2"}}}"#,
                "modules",
                "modules.m1.deviceId",
            ),
            (
                r#"{"deviceId":"d1","modules":{"m1":{"moduleId":"m2"}}}"#,
                "modules",
                "modules.m1.moduleId",
            ),
            (
                r#"{"deviceId":"d1","modules":{"m1":{"status":"off"}}}"#,
                "modules.m1.status",
                "status",
            ),
            (
                r#"{"deviceId":"d1","moduleId":"m1"}"#,
                "moduleId",
                "where a device twin was expected",
            ),
        ];
        for (text, field, words) in cases {
            let err = DeviceRecord::from_twin_json(text).err();
            assert_eq!(
                err.as_ref().and_then(|e| e.field.as_deref()),
                Some(field),
                "{text}"
            );
            let message = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains(words), "{text}: {message}");
            let serde = serde_json::from_str::<DeviceRecord>(text)
                .err()
                .map(|e| e.to_string());
            assert_eq!(serde.as_deref(), Some(message.as_str()), "{text}");
        }
        let ok = DeviceRecord::from_twin_json(
            r#"{"deviceId":"d1","modules":{"m1":{"properties":{"reported":{"t":1}}}}}"#,
        );
        let ok = ok
            .map(|r| r.snapshot.modules["m1"].reported["t"].clone())
            .ok();
        assert_eq!(ok, Some(json!(1)));
    }
}

/// `parse_input` reads bytes as `read_input` reads the file holding them:
/// the same devices, or the same error, for every shape the fixtures hold
/// (exports, twins, identities, arrays, pretty-printed, bad lines).
#[test]
fn parse_input_reads_bytes_as_read_input_reads_their_file() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["", "real", "failback", "twins"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        files.extend(
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file() && p.extension().is_some_and(|e| e == "json" || e == "jsonl")
                }),
        );
    }
    files.sort();
    assert!(files.len() > 10, "{files:?}");
    let (mut read, mut refused) = (0, 0);
    for path in &files {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).unwrap();
        for forced in [None, Some(Format::Twin), Some(Format::Export)] {
            let from_file = failback::format::read_input(path, forced);
            let from_bytes = failback::format::parse_input(&name, &bytes, forced);
            match (&from_file, &from_bytes) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "{name} {forced:?}");
                    read += 1;
                }
                (Err(a), Err(b)) => {
                    assert_eq!(a.to_string(), b.to_string(), "{name} {forced:?}");
                    refused += 1;
                }
                _ => panic!("{name} {forced:?}: {from_file:?} vs {from_bytes:?}"),
            }
        }
    }
    assert!(read > 10 && refused > 3, "read {read}, refused {refused}");
}
