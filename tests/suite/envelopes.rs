//! Change events in every envelope real endpoints write (routing to
//! storage as JSON and Avro, Event Hubs Capture, `az iot hub
//! monitor-events`, Event Grid, CloudEvents): the same events give the
//! same state file, byte for byte; telemetry and digital-twin changes are
//! skipped and counted; errors name the field as the envelope names it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use failback::ReplicaId;
use failback::format::{Envelope, EventReader, ReadErrorKind};
use failback::replica::Replica;
use proptest::prelude::*;
use serde_json::{Value, json};

const STORAGE_SCHEMA: &str = r#"{"type":"record","name":"Message","namespace":"Microsoft.Azure.Devices","fields":[
  {"name":"EnqueuedTimeUtc","type":"string"},
  {"name":"Properties","type":{"type":"map","values":"string"}},
  {"name":"SystemProperties","type":{"type":"map","values":"string"}},
  {"name":"Body","type":["null","bytes"]}]}"#;

const CAPTURE_SCHEMA: &str = r#"{"type":"record","name":"EventData","namespace":"Microsoft.ServiceBus.Messaging","fields":[
  {"name":"SequenceNumber","type":"long"},
  {"name":"Offset","type":"string"},
  {"name":"EnqueuedTimeUtc","type":"string"},
  {"name":"SystemProperties","type":{"type":"map","values":["long","double","string","bytes"]}},
  {"name":"Properties","type":{"type":"map","values":["long","double","string","bytes","null"]}},
  {"name":"Body","type":["null","bytes"]}]}"#;

const ENQUEUED: &str = "2024-03-01T13:00:00.0000000Z";

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A system property under another client's name.
fn renamed(system: &Value, names: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for (key, value) in system.as_object().into_iter().flatten() {
        let key = names
            .iter()
            .find(|(from, _)| from == key)
            .map_or(key.as_str(), |(_, to)| to);
        out.insert(key.to_owned(), value.clone());
    }
    out
}

fn body_text(event: &Value) -> Option<String> {
    event.get("body").map(Value::to_string)
}

/// A canonical event line as routing to storage writes it as JSON: the
/// body base64, or as a JSON value when `json_body`.
fn storage_json(event: &Value, json_body: bool) -> String {
    let mut system = renamed(
        &event["systemProperties"],
        &[
            ("correlation-id", "correlationId"),
            ("content-type", "contentType"),
            ("iothub-connection-device-id", "connectionDeviceId"),
        ],
    );
    system.insert("enqueuedTime".into(), json!(ENQUEUED));
    let body = match body_text(event) {
        Some(_) if json_body => event["body"].clone(),
        Some(text) => json!(base64(text.as_bytes())),
        None => Value::Null,
    };
    json!({"EnqueuedTimeUtc": ENQUEUED, "Properties": event["properties"], "SystemProperties": system, "Body": body})
        .to_string()
}

/// A canonical event line as `az iot hub monitor-events --properties all`
/// prints it (on one line, or pretty-printed).
fn monitor_event(event: &Value, pretty: bool) -> String {
    let system = renamed(
        &event["systemProperties"],
        &[
            ("correlation-id", "correlation_id"),
            ("content-type", "content_type"),
        ],
    );
    let mut annotations = serde_json::Map::new();
    let mut sys = serde_json::Map::new();
    for (key, value) in system {
        if key.starts_with("iothub-") {
            annotations.insert(key, value);
        } else {
            sys.insert(key, value);
        }
    }
    annotations.insert("iothub-enqueuedtime".into(), json!(1_709_298_000_000_i64));
    let props = &event["properties"];
    let value = json!({"event": {
        "origin": props["deviceId"],
        "module": props.get("moduleId").cloned().unwrap_or(json!("")),
        "interface": "",
        "component": "",
        "properties": {"system": sys, "application": props},
        "annotations": annotations,
        "payload": event.get("body").cloned().unwrap_or(Value::Null),
    }});
    if pretty {
        serde_json::to_string_pretty(&value).unwrap_or_default()
    } else {
        value.to_string()
    }
}

fn string_map(value: &Value, union: Option<usize>) -> Avro {
    let map = value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let text = Avro::String(v.as_str()?.to_owned());
            let value = match union {
                Some(index) => Avro::Union(index as u32, Box::new(text)),
                None => text,
            };
            Some((k.clone(), value))
        })
        .collect();
    Avro::Map(map)
}

/// Canonical event lines as an Avro object container file of routing to
/// storage, or of Event Hubs Capture when `capture`.
fn avro_file(events: &[Value], capture: bool) -> Vec<u8> {
    let schema = Schema::parse_str(if capture {
        CAPTURE_SCHEMA
    } else {
        STORAGE_SCHEMA
    })
    .expect("schema");
    let mut writer = apache_avro::Writer::builder()
        .schema(&schema)
        .writer(Vec::new())
        .marker(*b"failback-fixture")
        .block_size(512)
        .build();
    for (n, event) in events.iter().enumerate() {
        let body = match body_text(event) {
            Some(text) => Avro::Union(1, Box::new(Avro::Bytes(text.into_bytes()))),
            None => Avro::Union(0, Box::new(Avro::Null)),
        };
        let record = if capture {
            let mut system = string_map(&event["systemProperties"], Some(2));
            if let Avro::Map(map) = &mut system {
                map.insert(
                    "x-opt-sequence-number".into(),
                    Avro::Union(0, Box::new(Avro::Long(n as i64))),
                );
                map.insert(
                    "iothub-enqueuedtime".into(),
                    Avro::Union(0, Box::new(Avro::Long(1_709_298_000_000))),
                );
            }
            Avro::Record(vec![
                ("SequenceNumber".into(), Avro::Long(n as i64)),
                ("Offset".into(), Avro::String(format!("{}", n * 1024))),
                ("EnqueuedTimeUtc".into(), Avro::String(ENQUEUED.into())),
                ("SystemProperties".into(), system),
                (
                    "Properties".into(),
                    string_map(&event["properties"], Some(2)),
                ),
                ("Body".into(), body),
            ])
        } else {
            let system = json!(renamed(
                &event["systemProperties"],
                &[
                    ("correlation-id", "correlationId"),
                    ("content-type", "contentType")
                ],
            ));
            Avro::Record(vec![
                ("EnqueuedTimeUtc".into(), Avro::String(ENQUEUED.into())),
                ("Properties".into(), string_map(&event["properties"], None)),
                ("SystemProperties".into(), string_map(&system, None)),
                ("Body".into(), body),
            ])
        };
        writer.append(record).expect("a record of the schema");
    }
    writer.into_inner().expect("written")
}

/// The same events in each envelope ingest shapes can carry all of.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Canonical,
    StorageBase64,
    StorageJsonBody,
    StorageAvro,
    CaptureAvro,
    Monitor,
    MonitorPretty,
}

const SHAPES: [Shape; 7] = [
    Shape::Canonical,
    Shape::StorageBase64,
    Shape::StorageJsonBody,
    Shape::StorageAvro,
    Shape::CaptureAvro,
    Shape::Monitor,
    Shape::MonitorPretty,
];

fn file_of(events: &[Value], shape: Shape) -> Vec<u8> {
    let lines = |f: &dyn Fn(&Value) -> String| {
        let mut out = String::new();
        for event in events {
            out.push_str(&f(event));
            out.push('\n');
        }
        out.into_bytes()
    };
    match shape {
        Shape::Canonical => lines(&Value::to_string),
        Shape::StorageBase64 => lines(&|e| storage_json(e, false)),
        Shape::StorageJsonBody => lines(&|e| storage_json(e, true)),
        Shape::StorageAvro => avro_file(events, false),
        Shape::CaptureAvro => avro_file(events, true),
        Shape::Monitor => lines(&|e| monitor_event(e, false)),
        Shape::MonitorPretty => lines(&|e| monitor_event(e, true)),
    }
}

/// Reads a file of events into a fresh replica: its bytes, and the counts
/// of events read, telemetry and digital-twin changes skipped.
fn ingest_bytes(data: &[u8], name: &str) -> (Vec<u8>, [u64; 3]) {
    let mut replica = Replica::new(ReplicaId::new("primary").expect("valid"));
    let mut reader = EventReader::new(data, name);
    let mut read = 0;
    for event in reader.by_ref() {
        let event = event.unwrap_or_else(|e| panic!("{e}"));
        read += 1;
        replica.ingest(event).expect("no conflicting ids");
    }
    let skips = reader.skipped_events();
    (
        replica.to_bytes(),
        [read, skips.telemetry, skips.digital_twin],
    )
}

const T0: i64 = 1_709_294_400_000;

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// Canonical event lines of a generated history: lifecycle, twin
/// changes, connection events, telemetry, digital-twin patches.
fn history(steps: &[(u8, u8, u8, u8, bool)]) -> Vec<Value> {
    let mut versions = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for (n, &(kind, device, module, value, with_id)) in steps.iter().enumerate() {
        let device = format!("dev-{device}@site");
        let module = format!("m{module}");
        let at = time(T0 + 1000 * n as i64 + 7);
        let (op, module, source, schema) = match kind {
            0 => (
                "createDeviceIdentity",
                None,
                "deviceLifecycleEvents",
                "deviceLifecycleNotification",
            ),
            1 => (
                "deleteDeviceIdentity",
                None,
                "deviceLifecycleEvents",
                "deviceLifecycleNotification",
            ),
            2 | 3 => (
                "updateTwin",
                None,
                "twinChangeEvents",
                "twinChangeNotification",
            ),
            4 => (
                "createModuleIdentity",
                Some(module),
                "deviceLifecycleEvents",
                "moduleLifecycleNotification",
            ),
            5 => (
                "deleteModuleIdentity",
                Some(module),
                "deviceLifecycleEvents",
                "moduleLifecycleNotification",
            ),
            6 => (
                "deviceConnected",
                None,
                "deviceConnectionStateEvents",
                "deviceConnectionStateNotification",
            ),
            7 => (
                "updateTwin",
                None,
                "digitalTwinChangeEvents",
                "digitalTwinChangeNotification",
            ),
            _ => ("", None, "Telemetry", ""),
        };
        let mut system = json!({"iothub-message-source": source});
        if with_id {
            system["correlation-id"] = json!(format!("c{n}"));
        }
        if source == "Telemetry" {
            out.push(json!({"properties": {"batch": n.to_string()}, "systemProperties": system, "body": {"t": value}}));
            continue;
        }
        if source == "digitalTwinChangeEvents" {
            system["content-type"] = json!("application/json-patch+json");
        }
        let version = versions
            .entry((device.clone(), module.clone()))
            .or_insert(0u64);
        *version = if op.starts_with("create") {
            1
        } else {
            *version + 1
        };
        let body = match kind {
            0 => {
                json!({"deviceId": device, "version": 1, "status": "enabled", "tags": {"n": n}})
            }
            2 => json!({"version": *version, "tags": {"k": value, "ü": "Zürich"}}),
            3 => json!({"version": *version, "properties": {"desired": {
                "k": value, "$metadata": {"k": {"$lastUpdated": at}}}}}),
            4 => json!({"deviceId": device, "moduleId": module, "version": 1}),
            6 => json!({"sequenceNumber": format!("{n:064X}")}),
            7 => json!([{"op": "replace", "path": "/k", "value": value}]),
            _ => json!({"version": *version}),
        };
        let mut props = json!({
            "hubName": "hub-1",
            "deviceId": device,
            "opType": op,
            "operationTimestamp": at,
            "iothub-message-schema": schema,
        });
        if let Some(module) = &module {
            props["moduleId"] = json!(module);
        }
        out.push(json!({"properties": props, "systemProperties": system, "body": body}));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The same events in every envelope give the same state bytes and the
    /// same counts.
    #[test]
    fn the_same_events_in_every_envelope_give_identical_state_bytes(
        steps in prop::collection::vec((0u8..9, 0u8..3, 0u8..2, 0u8..4, prop::bool::weighted(0.8)), 1..20),
    ) {
        let events = history(&steps);
        let (expected, counts) = ingest_bytes(&file_of(&events, Shape::Canonical), "canonical.jsonl");
        for shape in SHAPES {
            let (bytes, shown) = ingest_bytes(&file_of(&events, shape), "events");
            prop_assert_eq!(&shown, &counts, "{:?}", shape);
            prop_assert!(bytes == expected, "{:?} gives other bytes", shape);
        }
    }
}

#[test]
fn each_avro_file_is_told_by_its_magic_and_its_records_numbered() {
    let events = history(&[(0, 0, 0, 1, true), (9, 0, 0, 1, true), (3, 0, 0, 2, true)]);
    for capture in [false, true] {
        let data = avro_file(&events, capture);
        assert!(data.starts_with(b"Obj\x01"));
        let mut reader = EventReader::new(data.as_slice(), "capture.avro");
        let read: Vec<u64> = reader
            .by_ref()
            .map(|e| e.map(|e| e.line).unwrap_or(0))
            .collect();
        assert_eq!(read, [1, 3], "the telemetry record is the second");
        assert_eq!(reader.envelope(), Some(Envelope::Avro));
        assert_eq!(reader.skipped_events().telemetry, 1);
    }
}

#[test]
fn a_corrupt_avro_file_is_one_error_naming_the_file() {
    let events = history(&[(0, 0, 0, 1, true), (3, 0, 0, 2, true)]);
    let mut data = avro_file(&events, false);
    let at = data.len() - 20;
    data.truncate(at);
    let errors: Vec<String> = EventReader::new(data.as_slice(), "cut.avro")
        .filter_map(Result::err)
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors, ["cut.avro:1: invalid Avro: corrupt data block"]);
    let errors: Vec<String> = EventReader::new(&b"Obj\x01garbage"[..], "bad.avro")
        .filter_map(Result::err)
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        errors,
        ["bad.avro: invalid Avro: the file's header is cut short or too long"]
    );
}

#[test]
fn errors_name_the_field_as_the_envelope_names_it() {
    let storage = concat!(
        r#"{"EnqueuedTimeUtc":"2024-03-01T12:00:00Z","Properties":{"deviceId":"d1","opType":"updateTwin","#,
        r#""operationTimestamp":"2024-03-01T12:00:00Z"},"SystemProperties":{"correlationId":"c1"},"#,
    );
    let cases = [
        (
            format!(r#"{storage}"Body":"not base64!"}}"#),
            r#"e:1: field "Body": invalid base64"#,
        ),
        (
            format!(r#"{storage}"Body":{{"version":2,"properties":{{"desired":{{"a.b":1}}}}}}}}"#),
            r#"e:1: device "d1" field "Body.properties.desired.a.b": key contains the forbidden character '.'"#,
        ),
        (
            format!(r#"{storage}"Body":{{"deviceId":"d2"}}}}"#),
            r#"e:1: device "d1" field "Body.deviceId": differs from Properties.deviceId"#,
        ),
        (
            r#"{"event":{"origin":"d1","properties":{"application":{"opType":"updateTwin","deviceId":"d1"}},"payload":{}}}"#.to_owned(),
            r#"e:1: device "d1" field "event.properties.application.operationTimestamp": missing field"#,
        ),
        (
            r#"{"eventType":"Microsoft.Devices.DeviceRenamed","subject":"devices/d1","data":{}}"#.to_owned(),
            r#"e:1: device "d1" field "eventType": unknown opType "Microsoft.Devices.DeviceRenamed""#,
        ),
        (
            r#"{"properties":{"deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlationId":7}}"#.to_owned(),
            r#"e:1: field "systemProperties.correlationId": expected a string, found a number"#,
        ),
    ];
    for (text, expected) in cases {
        let errors: Vec<String> = EventReader::new(text.as_bytes(), "e")
            .filter_map(Result::err)
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errors, [expected], "{text}");
    }
}

#[test]
fn a_record_in_another_envelope_than_the_file_is_refused() {
    let event = &history(&[(0, 0, 0, 1, true)])[0];
    let text = format!("{event}\n{}\n", storage_json(event, true));
    let errors: Vec<_> = EventReader::new(text.as_bytes(), "mixed.jsonl")
        .filter_map(Result::err)
        .collect();
    assert_eq!(errors.len(), 1);
    assert!(matches!(
        errors[0].kind,
        ReadErrorKind::EnvelopeMismatch {
            expected: Envelope::Canonical,
            found: Envelope::StorageJson
        }
    ));
    assert_eq!(
        errors[0].to_string(),
        "mixed.jsonl:2: record is in the storage-json envelope, the file is read as canonical"
    );
    // Forced, every record must be in that envelope.
    let forced: Vec<_> = EventReader::new(text.as_bytes(), "mixed.jsonl")
        .with_envelope(Envelope::StorageJson)
        .collect();
    assert!(forced[0].is_err() && forced[1].is_ok());
    // A record with no key of any envelope is read in the file's.
    let text = format!("{}\n{{}}\n", storage_json(event, false));
    let mut reader = EventReader::new(text.as_bytes(), "s.json");
    assert!(reader.by_ref().all(|e| e.is_ok()));
    assert_eq!(reader.skipped_events().telemetry, 1);
}

#[test]
fn secrets_in_an_enveloped_body_stay_out_of_events_and_errors() {
    let key = "c2VjcmV0LWtleS0xMjM0NTY3OA==";
    let body = json!({"deviceId": "d1", "version": 1, "authentication": {"symmetricKey": {"primaryKey": key}}});
    let event = json!({"properties": {"deviceId": "d1", "opType": "createDeviceIdentity", "operationTimestamp": "2024-03-01T12:00:00Z"}, "body": body});
    for shape in SHAPES {
        let data = file_of(std::slice::from_ref(&event), shape);
        for event in EventReader::new(data.as_slice(), "k") {
            let event = event.unwrap_or_else(|e| panic!("{e}"));
            assert!(!format!("{event:?}").contains(key));
            assert!(!event.body_json().unwrap_or_default().contains(key));
        }
    }
}

// The command line, on fixtures of each shape: the same eight records
// (device and module lifecycle, twin changes, a connection event, a
// telemetry message, a digital-twin patch) in each envelope.

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/events/envelopes/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn scratch(name: &str) -> PathBuf {
    crate::common::scratch("envelopes", name)
}

fn ingest(state: &Path, files: &[&str], envelope: Option<&str>) -> Output {
    let state = state.display().to_string();
    let mut args = vec!["ingest", "--hub", "primary", "--state", state.as_str()];
    if let Some(envelope) = envelope {
        args.extend(["--envelope", envelope]);
    }
    args.extend(files);
    Command::new(env!("CARGO_BIN_EXE_failback"))
        .args(&args)
        .output()
        .expect("runs")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// Ingests `file` into a fresh state; its bytes.
fn state_of(dir: &Path, file: &str, envelope: Option<&str>) -> Vec<u8> {
    let name = Path::new(file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let state = dir.join(format!("{name}.{}.state.json", envelope.unwrap_or("auto")));
    let out = ingest(&state, &[file], envelope);
    assert!(out.status.success(), "{file}: {}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("applied      5\n"), "{file}: {shown}");
    assert!(
        shown.contains("connection events ignored 1\n"),
        "{file}: {shown}"
    );
    assert!(
        shown.contains("skipped 1 telemetry messages\n"),
        "{file}: {shown}"
    );
    assert!(
        shown.contains("skipped 1 digital-twin change events\n"),
        "{file}: {shown}"
    );
    std::fs::read(&state).unwrap_or_default()
}

#[test]
fn cli_every_envelope_of_the_same_events_gives_the_same_state_file() {
    let dir = scratch("same");
    let expected = state_of(&dir, &fixture("canonical.jsonl"), None);
    // The Avro files are written from the canonical fixture here.
    let canonical = std::fs::read_to_string(fixture("canonical.jsonl")).unwrap_or_default();
    let events: Vec<Value> = canonical
        .lines()
        .map(|l| serde_json::from_str(l).expect("fixture JSON"))
        .collect();
    let (storage, capture) = (dir.join("routing.avro"), dir.join("capture.avro"));
    std::fs::write(&storage, avro_file(&events, false)).expect("written");
    std::fs::write(&capture, avro_file(&events, true)).expect("written");
    for (file, envelope) in [
        (fixture("storage-json.json"), None),
        (fixture("storage-json.json"), Some("storage-json")),
        (fixture("monitor-events-compact.json"), None),
        (fixture("all-in-application.jsonl"), None),
        (storage.display().to_string(), None),
        (capture.display().to_string(), Some("avro")),
    ] {
        assert!(
            state_of(&dir, &file, envelope) == expected,
            "{file} gives another state"
        );
    }
}

#[test]
fn cli_pretty_printed_monitor_events_give_the_same_state_file() {
    let dir = scratch("pretty");
    let expected = state_of(&dir, &fixture("canonical.jsonl"), None);
    assert!(state_of(&dir, &fixture("monitor-events.json"), None) == expected);
}

/// Event Grid has no correlation-id: its events are the routed ones
/// without theirs (the content hash is their id).
#[test]
fn cli_cloud_events_lifecycle_equals_the_routed_lifecycle_without_ids() {
    let dir = scratch("cloud");
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    let out = ingest(&a, &[&fixture("lifecycle-without-ids.jsonl")], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = ingest(&b, &[&fixture("cloud-events.jsonl")], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("applied      3\n"), "{shown}");
    assert!(shown.contains("connection events ignored 1\n"), "{shown}");
    assert!(shown.contains("skipped 1 telemetry messages\n"), "{shown}");
    assert_eq!(std::fs::read(&a).ok(), std::fs::read(&b).ok());
    // Delivered again (Event Grid is at least once): nothing changes.
    let out = ingest(&b, &[&fixture("cloud-events.jsonl")], None);
    assert!(text(&out.stdout).contains("duplicates   3\n"));
    assert_eq!(std::fs::read(&a).ok(), std::fs::read(&b).ok());
}

#[test]
fn cli_an_event_grid_array_equals_the_routed_lifecycle_without_ids() {
    let dir = scratch("grid");
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    assert!(
        ingest(&a, &[&fixture("lifecycle-without-ids.jsonl")], None)
            .status
            .success()
    );
    let out = ingest(&b, &[&fixture("event-grid.json")], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("applied      3\n"));
    assert_eq!(std::fs::read(&a).ok(), std::fs::read(&b).ok());
}

#[test]
fn cli_a_forced_envelope_that_does_not_fit_is_refused_by_name() {
    let dir = scratch("forced");
    let state = dir.join("s.json");
    let out = ingest(&state, &[&fixture("canonical.jsonl")], Some("avro"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("canonical.jsonl: invalid Avro: no Avro magic"),
        "{}",
        text(&out.stderr)
    );
    assert!(!state.exists());
    let out = ingest(&state, &[&fixture("canonical.jsonl")], Some("json"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown envelope \"json\""));
}

/// Writes the Avro seeds of the `parse_events` fuzz target (which reads
/// Avro files by their magic, as the reader does): run by hand with
/// `cargo test --test suite -- --ignored write_avro_fuzz_seeds`.
#[test]
#[ignore = "writes fuzz/corpus/parse_events; run by hand"]
fn write_avro_fuzz_seeds() {
    use sha2::{Digest, Sha256};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse_events");
    let events = history(&[
        (0, 0, 0, 1, true),
        (2, 0, 0, 2, true),
        (4, 0, 1, 0, false),
        (7, 0, 0, 3, true),
        (8, 0, 0, 1, true),
        (6, 0, 0, 0, true),
        (5, 0, 1, 0, true),
    ]);
    for capture in [false, true] {
        let data = avro_file(&events, capture);
        let name: String = Sha256::digest(&data)
            .iter()
            .take(20)
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(dir.join(name), data).expect("written");
    }
}

/// A canonical record with these application and system properties and an
/// `updateTwin` body.
fn record(app: Value, system: Value) -> String {
    let mut props = json!({
        "deviceId": "d1",
        "opType": "updateTwin",
        "operationTimestamp": "2024-03-01T12:00:00Z",
    });
    if let (Some(props), Some(extra)) = (props.as_object_mut(), app.as_object()) {
        props.extend(extra.clone());
    }
    json!({"properties": props, "systemProperties": system, "body": {"version": 2}}).to_string()
}

fn parsed(text: &str) -> failback::format::Parsed {
    failback::format::parse_event_record("e.json", 1, text, None).expect("a record")
}

fn event(text: &str) -> failback::format::Event {
    match parsed(text) {
        failback::format::Parsed::Event(event) => event,
        other => panic!("an event, got {other:?}"),
    }
}

#[test]
fn every_property_spelling_is_read() {
    use failback::format::{Parsed, Skipped};
    let e = event(&record(json!({"hubName": "contoso"}), json!({})));
    assert_eq!(e.hub.as_deref(), Some("contoso"));
    for name in ["correlation-id", "correlationId", "correlation_id"] {
        let e = event(&record(json!({}), json!({ name: "c7" })));
        assert_eq!(e.correlation_id.as_deref(), Some("c7"), "{name}");
    }
    // A JSON Patch body's content type marks a digital-twin change, under
    // every client's spelling, even when its body is not an array.
    for name in [
        "content-type",
        "contentType",
        "content_type",
        "iothub-content-type",
    ] {
        let text = record(json!({}), json!({ name: "application/json-patch+json" }));
        assert_eq!(
            parsed(&text),
            Parsed::Skipped(Skipped::DigitalTwinChange),
            "{name}"
        );
    }
    let schema = record(
        json!({"iothub-message-schema": "digitalTwinChangeNotification"}),
        json!({}),
    );
    assert_eq!(parsed(&schema), Parsed::Skipped(Skipped::DigitalTwinChange));
    let telemetry = record(json!({}), json!({"iothub-message-source": "Telemetry"}));
    assert_eq!(parsed(&telemetry), Parsed::Skipped(Skipped::Telemetry));
}

#[test]
fn a_property_in_both_maps_is_read_from_the_map_it_belongs_in() {
    // Application properties first among the application properties,
    // system ones first among the system properties.
    let text = json!({
        "properties": {
            "deviceId": "app-device",
            "opType": "updateTwin",
            "operationTimestamp": "2024-03-01T12:00:00Z",
            "correlation-id": "app-corr",
        },
        "systemProperties": {
            "deviceId": "sys-device",
            "correlation-id": "sys-corr",
        },
        "body": {"version": 2},
    })
    .to_string();
    let e = event(&text);
    assert_eq!(e.device_id, "app-device");
    assert_eq!(e.correlation_id.as_deref(), Some("sys-corr"));
}

#[test]
fn a_connection_event_names_its_device_by_the_connection_properties() {
    use failback::format::Op;
    for (device, module) in [
        ("iothub-connection-device-id", "iothub-connection-module-id"),
        ("connectionDeviceId", "connectionModuleId"),
    ] {
        let text = json!({
            "properties": {"opType": "deviceConnected", "operationTimestamp": "2024-03-01T12:00:00Z"},
            "systemProperties": {
                "iothub-message-source": "deviceConnectionStateEvents",
                device: "d9",
                module: "m1",
            },
        })
        .to_string();
        let e = event(&text);
        assert_eq!(
            (e.device_id.as_str(), e.module_id.as_deref()),
            ("d9", Some("m1")),
            "{device}"
        );
        assert_eq!(e.op, Op::Connection("deviceConnected".into()));
    }
}

#[test]
fn an_update_twin_whose_body_is_an_array_is_a_digital_twin_change() {
    use failback::format::{Parsed, Skipped};
    let text = json!({
        "properties": {"deviceId": "d1", "opType": "updateTwin", "operationTimestamp": "2024-03-01T12:00:00Z"},
        "body": [{"op": "add", "path": "/fan", "value": 2}],
    })
    .to_string();
    assert_eq!(parsed(&text), Parsed::Skipped(Skipped::DigitalTwinChange));
}

#[test]
fn one_key_of_an_envelope_is_enough_to_tell_it() {
    use failback::format::parse_event_record;
    let props = json!({"deviceId": "d1", "opType": "updateTwin", "operationTimestamp": "2024-03-01T12:00:00Z"});
    // Routing to storage, told by `Properties` alone.
    let storage = json!({ "Properties": props }).to_string();
    assert_eq!(event(&storage).device_id, "d1");
    // Canonical, told by `properties` alone: not the storage envelope a
    // file read as storage-json expects.
    let canonical = json!({ "properties": props }).to_string();
    assert_eq!(event(&canonical).device_id, "d1");
    let err = parse_event_record("e.json", 1, &canonical, Some(Envelope::StorageJson)).unwrap_err();
    assert!(
        matches!(
            err.kind,
            ReadErrorKind::EnvelopeMismatch {
                expected: Envelope::StorageJson,
                found: Envelope::Canonical
            }
        ),
        "{err}"
    );
    // Each other key alone tells its envelope too.
    for (key, found, other) in [
        (
            "SystemProperties",
            Envelope::StorageJson,
            Envelope::Canonical,
        ),
        ("Body", Envelope::StorageJson, Envelope::Canonical),
        (
            "EnqueuedTimeUtc",
            Envelope::StorageJson,
            Envelope::Canonical,
        ),
        (
            "systemProperties",
            Envelope::Canonical,
            Envelope::StorageJson,
        ),
        ("body", Envelope::Canonical, Envelope::StorageJson),
    ] {
        let value = if key == "EnqueuedTimeUtc" {
            json!(ENQUEUED)
        } else {
            json!({})
        };
        let text = json!({ key: value }).to_string();
        let err = parse_event_record("e.json", 1, &text, Some(other)).unwrap_err();
        assert!(
            matches!(err.kind, ReadErrorKind::EnvelopeMismatch { expected, found: f } if expected == other && f == found),
            "{key}: {err}"
        );
    }
}

#[test]
fn a_monitor_payload_printed_as_text_is_read_as_its_json() {
    // `az iot hub monitor-events` prints a payload it could not decode as
    // JSON as a string: the body's text.
    let text = json!({"event": {
        "origin": "d1",
        "properties": {"application": {"opType": "updateTwin", "operationTimestamp": "2024-03-01T12:00:00Z"}},
        "payload": "{\"version\":4}",
    }})
    .to_string();
    assert_eq!(event(&text).version(), 4);
}

#[test]
fn a_null_body_is_no_body() {
    let text = json!({
        "properties": {"deviceId": "d1", "opType": "updateTwin", "operationTimestamp": "2024-03-01T12:00:00Z"},
        "body": null,
    })
    .to_string();
    let e = event(&text);
    assert_eq!((e.version(), e.body_json()), (0, Some("{}")));
}

#[test]
fn an_event_grid_twin_of_null_is_no_twin() {
    let text = r#"{"eventType":"Microsoft.Devices.DeviceCreated","subject":"devices/d1","eventTime":"2024-03-01T12:00:00Z","data":{"deviceId":"d1","twin":null}}"#;
    let e = event(text);
    assert_eq!((e.version(), e.body_json()), (0, Some("{}")));
}

#[test]
fn an_event_grid_twin_given_twice_is_refused() {
    let text = r#"{"eventType":"Microsoft.Devices.DeviceCreated","subject":"devices/d1","eventTime":"2024-03-01T12:00:00Z","data":{"deviceId":"d1","twin":{"version":2},"twin":{"version":3}}}"#;
    let err = failback::format::parse_event_record("grid.json", 3, text, None).unwrap_err();
    assert!(matches!(err.kind, ReadErrorKind::DuplicateField), "{err}");
    assert_eq!(err.field.as_deref(), Some("data.twin"));
}

#[test]
fn properties_that_are_no_map_are_named_with_what_they_are() {
    let text = r#"{"properties":"deviceId=d1","body":{}}"#;
    let err = failback::format::parse_event_record("e.json", 2, text, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"e.json:2: field "properties": expected an object, found a string"#
    );
}

/// A record with no key of any envelope is read in the file's: an Event
/// Grid record without its `eventType`, or a CloudEvents one without its
/// `type`, is refused naming the field as its envelope names it.
#[test]
fn a_record_without_its_event_type_is_refused_by_its_envelopes_name() {
    for (envelope, field) in [
        (Envelope::EventGrid, "eventType"),
        (Envelope::CloudEvents, "type"),
    ] {
        let text = r#"{"subject":"devices/d1","data":{}}"#;
        let errors: Vec<String> = EventReader::new(text.as_bytes(), "e")
            .with_envelope(envelope)
            .filter_map(Result::err)
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            errors,
            [format!(
                r#"e:1: device "d1" field "{field}": missing field"#
            )]
        );
    }
}
