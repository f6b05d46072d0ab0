//! Cloud-to-device settlement (`failback::c2d`, `failback c2d`): the
//! fixtures end to end through the library and the binary, the laws on
//! whole files (any order, split and duplication of the same records gives
//! the same bytes; a message completed anywhere is never sent again; every
//! message lands in exactly one place), hostile input, and outputs that a
//! kill leaves old or new.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use failback::ReplicaId;
use failback::c2d::{AsOf, Inputs};
use failback::format::ReadError;
use proptest::prelude::*;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/c2d");
/// 2026-11-28T12:00:00Z.
const NOON: i64 = 1_795_867_200_000;

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

fn scratch(name: &str) -> PathBuf {
    crate::common::scratch("c2d", name)
}

/// The three outputs, as bytes.
#[derive(Debug, PartialEq, Eq)]
struct Outputs {
    to_send: String,
    settled: String,
    report: String,
}

fn settle(
    outboxes: &[(&str, &[u8])],
    feedback: &[(&str, &str, &[u8])],
    as_of: i64,
) -> Result<Outputs, Box<ReadError>> {
    let mut inputs = Inputs::new();
    for (name, bytes) in outboxes {
        inputs.read_outbox(*bytes, name).map_err(Box::new)?;
    }
    for (hub, name, bytes) in feedback {
        let hub = ReplicaId::new(hub).unwrap();
        inputs.read_feedback(&hub, *bytes, name).map_err(Box::new)?;
    }
    let settlement = inputs.settle(AsOf::Given(as_of));
    let mut out = [Vec::new(), Vec::new(), Vec::new()];
    settlement.write_to_send(&mut out[0]).unwrap();
    settlement.write_settled(&mut out[1]).unwrap();
    settlement.write_report(&mut out[2]).unwrap();
    let [to_send, settled, report] = out.map(|b| String::from_utf8(b).unwrap());
    Ok(Outputs {
        to_send,
        settled,
        report,
    })
}

fn fixtures(primary_first: bool) -> Outputs {
    let outbox = std::fs::read(fixture("outbox.jsonl")).unwrap();
    let primary = std::fs::read(fixture("primary-feedback.json")).unwrap();
    let secondary = std::fs::read(fixture("secondary-feedback.jsonl")).unwrap();
    let mut feedback = vec![
        ("primary", "primary-feedback.json", primary.as_slice()),
        (
            "secondary",
            "secondary-feedback.jsonl",
            secondary.as_slice(),
        ),
    ];
    if !primary_first {
        feedback.reverse();
    }
    settle(&[("outbox.jsonl", &outbox)], &feedback, NOON).unwrap()
}

fn ids(jsonl: &str) -> Vec<(String, String)> {
    jsonl
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            (
                v["deviceId"].as_str().unwrap().to_owned(),
                v["messageId"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(d, m)| ((*d).to_owned(), (*m).to_owned()))
        .collect()
}

#[test]
fn the_fixtures_settle_as_the_readme_says() {
    let out = fixtures(true);
    assert_eq!(
        ids(&out.to_send),
        pairs(&[
            ("pump-1", "m-003"),
            ("valve-7", "m-007"),
            ("valve-7", "m-006")
        ])
    );
    // Records as written, fields sorted, body untouched.
    assert!(out.to_send.contains(
        r#"{"ack":"Positive","body":[1,2,3],"deviceId":"valve-7","enqueuedTimeUtc":"2026-11-28T10:15:00Z","messageId":"m-007","properties":{"correlationId":"job-42"}}"#
    ));
    assert!(out.to_send.contains(r#""body":{"setpoint":21.50}"#));
    assert_eq!(
        out.settled,
        concat!(
            r#"{"deviceId":"pump-1","hub":"primary","messageId":"m-001","outcome":"Success","outcomes":{"Success":["primary"]}}"#,
            "\n",
            r#"{"deviceId":"pump-1","hub":"secondary","messageId":"m-002","outcome":"Rejected","outcomes":{"Rejected":["secondary"]}}"#,
            "\n",
            r#"{"deviceId":"pump-2","hub":"secondary","messageId":"m-005","outcome":"Success","outcomes":{"DeliveryCountExceeded":["primary"],"Success":["secondary"]}}"#,
            "\n",
        )
    );
    let report: Value = serde_json::from_str(&out.report).unwrap();
    assert_eq!(report["asOf"], "2026-11-28T12:00:00.000Z");
    assert_eq!(report["asOfFrom"], "given");
    assert_eq!(report["messages"], 7);
    assert_eq!(report["feedback"], 6);
    assert_eq!(report["toSend"], 3);
    assert_eq!(
        report["settled"],
        serde_json::json!({"Rejected": 1, "Success": 2})
    );
    assert_eq!(report["expired"], serde_json::json!({"pump-2": ["m-004"]}));
    assert_eq!(report["overLimit"], serde_json::json!({}));
    assert_eq!(
        report["unconfirmable"],
        serde_json::json!({"valve-7": ["m-006"]})
    );
    assert_eq!(
        report["unmatchedFeedback"],
        serde_json::json!([
            {"deviceId": "pump-3", "hub": "primary", "messageId": "m-999", "outcome": "Success"},
            {"deviceId": "pump-9", "hub": "secondary", "messageId": "m-003",
             "outboxDevices": ["pump-1"], "outcome": "Success"},
        ])
    );
    assert_eq!(fixtures(false), out, "the order of the feedback files");
}

#[test]
fn a_device_gets_at_most_fifty_and_the_rest_is_reported_in_enqueue_order() {
    let mut outbox = String::new();
    for i in 0..53 {
        // Enqueued newest first, so enqueue order is not line order.
        outbox.push_str(&format!(
            "{{\"messageId\":\"m{i:02}\",\"deviceId\":\"d1\",\"enqueuedTimeUtc\":\"2026-11-28T10:{:02}:00Z\",\"ack\":\"full\"}}\n",
            59 - i
        ));
    }
    outbox.push_str(
        r#"{"messageId":"x","deviceId":"d0","enqueuedTimeUtc":"2026-11-28T10:00:00Z","ack":"full"}"#,
    );
    let out = settle(&[("o", outbox.as_bytes())], &[], NOON).unwrap();
    let sent = ids(&out.to_send);
    assert_eq!(sent.len(), 51);
    assert_eq!(sent[0], ("d0".to_owned(), "x".to_owned()));
    assert_eq!(sent[1].1, "m52");
    assert_eq!(sent[50].1, "m03");
    let report: Value = serde_json::from_str(&out.report).unwrap();
    assert_eq!(
        report["overLimit"],
        serde_json::json!({"d1": ["m02", "m01", "m00"]})
    );
    assert_eq!(report["toSend"], 51);
}

#[test]
fn the_same_message_twice_is_one_and_a_different_one_is_refused() {
    let a = r#"{"messageId":"m1","deviceId":"d1","enqueuedTimeUtc":"2026-11-28T10:00:00Z","body":{"a":[1, 2]}}"#;
    // The same record, pretty-printed with its fields in another order.
    let same = "[\n  {\n    \"body\": {\"a\": [1,2]},\n    \"deviceId\": \"d1\",\n    \"enqueuedTimeUtc\": \"2026-11-28T10:00:00Z\",\n    \"messageId\": \"m1\"\n  }\n]\n";
    let once = settle(&[("a", a.as_bytes())], &[], NOON).unwrap();
    let twice = settle(&[("a", a.as_bytes()), ("b", same.as_bytes())], &[], NOON).unwrap();
    assert_eq!(once, twice);
    // The same message id for another device is another message.
    let other_device = a.replace("d1", "d2");
    let both = settle(
        &[("a", a.as_bytes()), ("b", other_device.as_bytes())],
        &[],
        NOON,
    )
    .unwrap();
    assert_eq!(ids(&both.to_send).len(), 2);
    let different = a.replace("[1, 2]", "[2, 1]");
    let error = settle(
        &[("a.jsonl", a.as_bytes()), ("b.jsonl", different.as_bytes())],
        &[],
        NOON,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"b.jsonl:1: device "d1" message "m1": differs from the record of this message at a.jsonl:1"#
    );
    assert_eq!(error.message_id.as_deref(), Some("m1"));
}

#[test]
fn a_failed_read_leaves_the_inputs_as_they_were() {
    let good = r#"{"messageId":"m1","deviceId":"d1","enqueuedTimeUtc":"2026-11-28T10:00:00Z"}"#;
    let mut inputs = Inputs::new();
    let bad = format!("{}\n{{\"messageId\":1}}\n", good.replace("m1", "m2"));
    assert!(inputs.read_outbox(bad.as_bytes(), "bad").is_err());
    let hub = ReplicaId::new("a").unwrap();
    let fb = r#"{"originalMessageId":"m1","deviceId":"d1","statusCode":"Success"}
{"originalMessageId":"m1","deviceId":"d1","statusCode":"Done"}"#;
    assert!(inputs.read_feedback(&hub, fb.as_bytes(), "fb").is_err());
    inputs.read_outbox(good.as_bytes(), "good").unwrap();
    let report = inputs.settle(AsOf::Clock(NOON)).report().clone();
    assert_eq!(
        (report.messages, report.feedback, report.to_send),
        (1, 0, 1)
    );
    assert_eq!(report.as_of_from, "clock");
}

/// Each input and what its reader must say of it.
fn hostile_cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let rec = r#"{"messageId":"m1","deviceId":"d1","enqueuedTimeUtc":"2026-11-28T10:00:00Z"}"#;
    vec![
        (
            "truncated",
            rec.as_bytes()[..40].to_vec(),
            "x:1: invalid JSON",
        ),
        (
            "truncated array",
            format!("[{rec},\n{}", &rec[..30]).into_bytes(),
            "x:2: invalid JSON",
        ),
        (
            "unclosed array",
            format!("[{rec},\n").into_bytes(),
            "invalid JSON",
        ),
        (
            "not UTF-8",
            b"{\"messageId\":\"m\xff1\",\"deviceId\":\"d1\"}".to_vec(),
            "x:1: invalid UTF-8",
        ),
        (
            "wrong type",
            rec.replace("\"d1\"", "[\"d1\"]").into_bytes(),
            r#"x:1: message "m1" field "deviceId": expected a string, found an array"#,
        ),
        (
            "number for a time",
            rec.replace("\"2026-11-28T10:00:00Z\"", "1e999999")
                .into_bytes(),
            r#"x:1: device "d1" message "m1" field "enqueuedTimeUtc": expected a string, found a number"#,
        ),
        (
            "time out of range",
            rec.replace("2026", "99999").into_bytes(),
            r#"field "enqueuedTimeUtc": unparseable timestamp"#,
        ),
        (
            "id too long",
            rec.replace("m1", &"m".repeat(129)).into_bytes(),
            r#"field "messageId": id is 129 characters long"#,
        ),
        (
            "empty id",
            rec.replace("\"d1\"", "\"\"").into_bytes(),
            r#"field "deviceId": id is empty"#,
        ),
        (
            "duplicate key",
            rec.replace("{", r#"{"messageId":"m2","#).into_bytes(),
            r#"field "messageId": duplicate field"#,
        ),
        (
            "a number in the array",
            format!("[{rec}, 1]").into_bytes(),
            "x:1: invalid JSON at column",
        ),
        (
            "deeply nested and cut short",
            format!("{{\"a\":{}}}", "[".repeat(200)).into_bytes(),
            "x:1: invalid JSON",
        ),
    ]
}

#[test]
fn hostile_outboxes_get_one_line_naming_file_line_and_field() {
    for (name, bytes, expected) in hostile_cases() {
        let error = Inputs::new()
            .read_outbox(bytes.as_slice(), "x")
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{name}: {error}");
        assert!(!error.contains('\n'), "{name}: {error}");
    }
    // Empty files and warning lines hold no messages; a BOM is skipped.
    for empty in [&b""[..], b"\n\n", b"[]", b"[\n]\n", b"Warning: nothing\n"] {
        assert_eq!(Inputs::new().read_outbox(empty, "x").unwrap(), 0);
    }
    let bom = "\u{feff}{\"messageId\":\"m1\",\"deviceId\":\"d1\",\"enqueuedTimeUtc\":\"2026-11-28T10:00:00Z\"}";
    assert_eq!(Inputs::new().read_outbox(bom.as_bytes(), "x").unwrap(), 1);
}

#[test]
fn hostile_feedback_gets_one_line_naming_file_line_and_field() {
    let hub = ReplicaId::new("primary").unwrap();
    let fb = |code: &str| {
        format!(r#"[{{"originalMessageId":"m1","deviceId":"d1","statusCode":{code}}}]"#)
    };
    for (input, expected) in [
        (
            fb("\"Completed\""),
            r#"x:1: device "d1" message "m1" field "statusCode": unknown statusCode "Completed""#,
        ),
        (fb("5"), r#"field "statusCode": unknown statusCode "5""#),
        // A long number might be a key in the wrong field: not shown.
        (
            fb("18446744073709551617"),
            r#"field "statusCode": unknown statusCode (not shown)"#,
        ),
        (fb("-0"), r#"field "statusCode": unknown statusCode "-0""#),
        (
            fb("{}"),
            r#"field "statusCode": expected a string or an integer, found an object"#,
        ),
        (
            r#"[{"originalMessageId":"m1","deviceId":"d1"}]"#.to_owned(),
            r#"field "statusCode": missing field"#,
        ),
        (
            r#"{"deviceId":"d1","statusCode":0}"#.to_owned(),
            r#"x:1: device "d1" field "originalMessageId": missing field"#,
        ),
        (
            fb("0").replace("}]", r#","enqueuedTimeUtc":"yesterday"}]"#),
            r#"field "enqueuedTimeUtc": unparseable timestamp "yesterday""#,
        ),
        (
            fb("0").replace("}]", r#","description":false}]"#),
            r#"field "description": expected a string, found a boolean"#,
        ),
        (
            fb("0").replace("}]", r#","statusCode":"Success"}]"#),
            r#"field "statusCode": duplicate field"#,
        ),
        (
            format!(
                "[\n{},\n{}",
                fb("0").trim_matches(['[', ']']),
                "{\"original"
            ),
            "x:3: invalid JSON",
        ),
    ] {
        let error = Inputs::new()
            .read_feedback(&hub, input.as_bytes(), "x")
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{input}: {error}");
        assert!(!error.contains('\n'), "{error}");
    }
    // A key put in the wrong field is not shown.
    let key = "c2VjcmV0LWtleS0xAAAAAA==";
    let error = Inputs::new()
        .read_feedback(&hub, fb(&format!("\"{key}\"")).as_bytes(), "x")
        .unwrap_err()
        .to_string();
    assert!(!error.contains(key), "{error}");
}

// --- The laws on whole files -------------------------------------------

/// A small deterministic generator, seeded by proptest.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

const OUTCOMES: [&str; 5] = [
    "Success",
    "Expired",
    "DeliveryCountExceeded",
    "Rejected",
    "Purged",
];
const ACKS: [&str; 5] = ["full", "positive", "negative", "none", ""];

#[derive(Clone, Debug)]
struct Message {
    device: usize,
    id: usize,
    enqueued_min: u32,
    expiry_min: Option<u32>,
    ack: usize,
    body: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Feedback {
    hub: usize,
    device: usize,
    id: usize,
    outcome: usize,
}

fn message() -> impl Strategy<Value = Message> {
    (
        0..3usize,
        0..6usize,
        0..30u32,
        proptest::option::of(0..200u32),
        0..ACKS.len(),
        any::<u8>(),
    )
        .prop_map(
            |(device, id, enqueued_min, expiry_min, ack, body)| Message {
                device,
                id,
                enqueued_min,
                expiry_min,
                ack,
                body,
            },
        )
}

fn feedback() -> impl Strategy<Value = Feedback> {
    // Devices and ids one wider than the outbox's: some feedback matches
    // no message.
    (0..3usize, 0..4usize, 0..7usize, 0..5usize).prop_map(|(hub, device, id, outcome)| Feedback {
        hub,
        device,
        id,
        outcome,
    })
}

fn time(min: u32) -> String {
    format!("2026-11-28T{:02}:{:02}:00Z", 10 + min / 60, min % 60)
}

/// An outbox record, its fields in an order and spacing `style` picks.
fn message_json(m: &Message, style: u64) -> String {
    let mut fields = vec![
        format!("\"messageId\":\"m{}\"", m.id),
        format!("\"deviceId\":\"d{}\"", m.device),
        format!("\"enqueuedTimeUtc\":\"{}\"", time(m.enqueued_min)),
        format!("\"body\":{{\"n\":{},\"s\":\"x y\"}}", m.body),
    ];
    if let Some(e) = m.expiry_min {
        fields.push(format!("\"expiryTimeUtc\":\"{}\"", time(e)));
    }
    if !ACKS[m.ack].is_empty() {
        fields.push(format!("\"ack\":\"{}\"", ACKS[m.ack]));
    }
    if style & 1 == 1 {
        fields.reverse();
    }
    let sep = if style & 2 == 2 { ",\n  " } else { "," };
    format!("{{{}}}", fields.join(sep))
}

/// A feedback record, `statusCode` as a name in some case or a number.
fn feedback_json(f: &Feedback, style: u64) -> String {
    let name = OUTCOMES[f.outcome];
    let code = match style % 4 {
        0 => format!("\"{name}\""),
        1 => format!("\"{}\"", name.to_ascii_lowercase()),
        2 => format!("\"{}\"", name.to_ascii_uppercase()),
        _ => f.outcome.to_string(),
    };
    let mut fields = [
        format!("\"originalMessageId\":\"m{}\"", f.id),
        format!("\"deviceId\":\"d{}\"", f.device),
        format!("\"statusCode\":{code}"),
        "\"deviceGenerationId\":\"6389\"".to_owned(),
        "\"enqueuedTimeUtc\":\"2026-11-28T10:00:00.1234567Z\"".to_owned(),
        format!("\"description\":\"{name}\""),
    ];
    if style & 4 == 4 {
        fields.reverse();
    }
    let sep = if style & 8 == 8 { ",\n    " } else { ", " };
    format!("{{{}}}", fields.join(sep))
}

/// Records written as one file: JSON lines (when none spans lines) or
/// JSON arrays, one per batch.
fn file(records: &[String], rng: &mut Rng) -> Vec<u8> {
    let one_line = records.iter().all(|r| !r.contains('\n'));
    let mut out = String::new();
    if one_line && rng.below(2) == 0 {
        for r in records {
            out.push_str(r);
            out.push('\n');
        }
    } else {
        let mut rest = records;
        while !rest.is_empty() || out.is_empty() {
            let take = 1 + rng.below(rest.len());
            let (batch, tail) = rest.split_at(take.min(rest.len()));
            out.push_str("[\n  ");
            out.push_str(&batch.join(",\n  "));
            out.push_str("\n]\n");
            rest = tail;
        }
    }
    out.into_bytes()
}

/// Splits `records` into 1 to 3 files at random.
fn split(mut records: Vec<String>, rng: &mut Rng) -> Vec<Vec<u8>> {
    let files = 1 + rng.below(3);
    let mut parts = vec![Vec::new(); files];
    for r in records.drain(..) {
        parts[rng.below(files)].push(r);
    }
    parts.iter().map(|p| file(p, rng)).collect()
}

/// The outbox with one record per message (the first generated wins, so
/// there are no conflicting duplicates).
fn distinct(messages: &[Message]) -> Vec<Message> {
    let mut seen = BTreeSet::new();
    messages
        .iter()
        .filter(|m| seen.insert((m.device, m.id)))
        .cloned()
        .collect()
}

/// The outputs from the records laid out as `seed` says: each record
/// written zero or more extra times, in any order and style, split across
/// files given in any order.
fn arranged(messages: &[Message], feedback: &[Feedback], seed: Option<u64>) -> Outputs {
    let hubs = ["alpha", "beta", "gamma"];
    let Some(seed) = seed else {
        // Canonical: one file each, sorted, one record a line.
        let outbox: Vec<String> = messages.iter().map(|m| message_json(m, 0)).collect();
        let outbox = file(&outbox, &mut Rng(2));
        let mut per_hub: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for f in feedback {
            per_hub.entry(f.hub).or_default().push(feedback_json(f, 0));
        }
        let files: Vec<(usize, Vec<u8>)> = per_hub
            .into_iter()
            .map(|(hub, records)| (hub, file(&records, &mut Rng(2))))
            .collect();
        let fb: Vec<(&str, &str, &[u8])> = files
            .iter()
            .map(|(hub, bytes)| (hubs[*hub], "fb", bytes.as_slice()))
            .collect();
        return settle(&[("outbox", &outbox)], &fb, NOON).unwrap();
    };
    let mut rng = Rng(seed | 1);
    let mut outbox = Vec::new();
    for m in messages {
        for _ in 0..1 + rng.below(3) {
            outbox.push(message_json(m, rng.next()));
        }
    }
    rng.shuffle(&mut outbox);
    let outbox_files = split(outbox, &mut rng);
    let mut files: Vec<(usize, Vec<u8>)> = Vec::new();
    for hub in 0..hubs.len() {
        let mut records = Vec::new();
        for f in feedback.iter().filter(|f| f.hub == hub) {
            for _ in 0..1 + rng.below(3) {
                records.push(feedback_json(f, rng.next()));
            }
        }
        if records.is_empty() && rng.below(2) == 0 {
            continue;
        }
        rng.shuffle(&mut records);
        for part in split(records, &mut rng) {
            files.push((hub, part));
        }
    }
    rng.shuffle(&mut files);
    let ob: Vec<(&str, &[u8])> = outbox_files
        .iter()
        .map(|b| ("outbox", b.as_slice()))
        .collect();
    let fb: Vec<(&str, &str, &[u8])> = files
        .iter()
        .map(|(hub, bytes)| (hubs[*hub], "fb", bytes.as_slice()))
        .collect();
    settle(&ob, &fb, NOON).unwrap()
}

proptest! {
    #[test]
    fn any_order_split_and_duplication_of_the_files_gives_the_same_bytes(
        messages in proptest::collection::vec(message(), 0..14),
        feedback in proptest::collection::vec(feedback(), 0..24),
        seeds in proptest::collection::vec(any::<u64>(), 2),
    ) {
        let messages = distinct(&messages);
        let expected = arranged(&messages, &feedback, None);
        for seed in seeds {
            let got = arranged(&messages, &feedback, Some(seed));
            prop_assert_eq!(&got, &expected, "seed {}", seed);
        }
    }

    #[test]
    fn a_message_completed_anywhere_is_never_sent_and_each_lands_once(
        messages in proptest::collection::vec(message(), 0..14),
        feedback in proptest::collection::vec(feedback(), 0..24),
    ) {
        let messages = distinct(&messages);
        let out = arranged(&messages, &feedback, None);
        let key = |d: usize, m: usize| (format!("d{d}"), format!("m{m}"));
        let outbox: BTreeSet<(String, String)> =
            messages.iter().map(|m| key(m.device, m.id)).collect();
        let completed: BTreeSet<(String, String)> = feedback
            .iter()
            .filter(|f| f.outcome == 0)
            .map(|f| key(f.device, f.id))
            .collect();
        let sent = ids(&out.to_send);
        for s in &sent {
            prop_assert!(!completed.contains(s), "{:?} completed, yet sent", s);
        }
        let report: Value = serde_json::from_str(&out.report).unwrap();
        let listed = |name: &str| -> Vec<(String, String)> {
            report[name]
                .as_object()
                .unwrap()
                .iter()
                .flat_map(|(d, ms)| {
                    ms.as_array().unwrap().iter().map(move |m| {
                        (d.clone(), m.as_str().unwrap().to_owned())
                    })
                })
                .collect()
        };
        let mut everywhere: Vec<(String, String)> = sent.clone();
        everywhere.extend(ids(&out.settled));
        everywhere.extend(listed("expired"));
        everywhere.extend(listed("overLimit"));
        everywhere.sort();
        let all: Vec<(String, String)> = outbox.iter().cloned().collect();
        prop_assert_eq!(everywhere, all);
        // Settled messages are those some hub gave an outcome for, and
        // `Success` wins wherever it was given.
        for line in out.settled.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let k = (v["deviceId"].as_str().unwrap().to_owned(), v["messageId"].as_str().unwrap().to_owned());
            prop_assert_eq!(v["outcome"] == "Success", completed.contains(&k));
        }
        // Sent at most 50 a device, sorted by device.
        let devices: Vec<&String> = sent.iter().map(|(d, _)| d).collect();
        let mut sorted = devices.clone();
        sorted.sort();
        prop_assert_eq!(devices, sorted);
    }
}

// --- The binary --------------------------------------------------------

fn failback(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_failback"))
        .args(args)
        .env_remove("FAILBACK_CRASH_AT")
        .output()
        .expect("the binary runs")
}

fn c2d_args(out: &Path, swap: bool) -> Vec<String> {
    let mut feedback = vec![
        format!("primary={}", fixture("primary-feedback.json")),
        format!("secondary={}", fixture("secondary-feedback.jsonl")),
    ];
    if swap {
        feedback.reverse();
    }
    let mut args = vec![
        "c2d".to_owned(),
        "--outbox".into(),
        fixture("outbox.jsonl"),
        "--as-of".into(),
        "2026-11-28T12:00:00Z".into(),
        "--out".into(),
        out.display().to_string(),
    ];
    for f in feedback {
        args.push("--feedback".into());
        args.push(f);
    }
    args
}

fn run(args: &[String]) -> Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    failback(&refs)
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_command_writes_the_library_outputs_whatever_the_flag_order() {
    let dir = scratch("cli");
    let (a, b) = (dir.join("a"), dir.join("b"));
    let run_a = run(&c2d_args(&a, false));
    assert!(
        run_a.status.success(),
        "{}",
        String::from_utf8_lossy(&run_a.stderr)
    );
    let run_b = run(&c2d_args(&b, true));
    assert!(run_b.status.success());
    assert_eq!(files(&a), files(&b));
    let expected = fixtures(true);
    let written = files(&a);
    assert_eq!(written["to-send.jsonl"], expected.to_send.as_bytes());
    assert_eq!(written["settled.jsonl"], expected.settled.as_bytes());
    assert_eq!(written["report.json"], expected.report.as_bytes());
    let stdout = String::from_utf8(run_a.stdout).unwrap();
    assert!(
        stdout.contains("outbox: 7 messages, as of 2026-11-28T12:00:00.000Z (given by --as-of)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  settled      3 (Rejected 1, Success 2)"),
        "{stdout}"
    );
    assert!(stdout.contains("  to send      3"), "{stdout}");
    assert!(
        stdout.contains("feedback: 7 records from 2 hubs, 6 distinct; 2 for no outbox message"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_as_of_the_clock_is_used_and_said() {
    let dir = scratch("clock");
    let out = dir.join("out");
    let mut args = c2d_args(&out, false);
    let at = args.iter().position(|a| a == "--as-of").unwrap();
    args.drain(at..at + 2);
    let result = run(&args);
    assert!(result.status.success());
    let stdout = String::from_utf8(result.stdout).unwrap();
    assert!(stdout.contains("this machine's clock"), "{stdout}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["asOfFrom"], "clock");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_exits_2_with_one_line_and_leaves_the_outputs_as_they_were() {
    let dir = scratch("bad");
    let out = dir.join("out");
    assert!(run(&c2d_args(&out, false)).status.success());
    let before = files(&out);
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        "[\n{\"originalMessageId\":\"m-001\",\"deviceId\":\"pump-1\",\"statusCode\":\"Done\"}\n]\n",
    )
    .unwrap();
    let mut args = c2d_args(&out, false);
    args.push("--feedback".into());
    args.push(format!("primary={}", bad.display()));
    let result = run(&args);
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8(result.stderr).unwrap();
    assert_eq!(
        stderr,
        format!(
            "failback: {}:2: device \"pump-1\" message \"m-001\" field \"statusCode\": unknown statusCode \"Done\", expected Success, Expired, DeliveryCountExceeded, Rejected, Purged or 0-4\n",
            bad.display()
        )
    );
    assert_eq!(files(&out), before);
    let x = dir.join("x").display().to_string();
    for (args, needle) in [
        (
            vec!["c2d", "--outbox", "/nonexistent/outbox"],
            "/nonexistent/outbox: cannot read",
        ),
        (
            vec!["c2d", "--outbox", "o", "--feedback", "primary"],
            "expected NAME=FILE",
        ),
        (
            vec!["c2d", "--outbox", "o", "--feedback", "bad name=f"],
            "--feedback",
        ),
        (
            vec!["c2d", "--outbox", "o", "--as-of", "noon"],
            "invalid time",
        ),
        (vec!["c2d", "--feedback", "a=b"], "--outbox"),
    ] {
        let mut args = args;
        args.extend(["--out", x.as_str()]);
        let result = failback(&args);
        assert_eq!(result.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(result.stderr).unwrap();
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    assert!(!dir.join("x").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--out` naming a directory that holds other files is refused as bad
/// usage (exit 2, one line naming it), the directory left as it was; a
/// previous output of `c2d` is replaced.
#[test]
fn an_out_directory_holding_other_files_is_refused_not_replaced() {
    let dir = scratch("taken");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "keep me\n").unwrap();
    let result = run(&c2d_args(&out, false));
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8(result.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&out.display().to_string()), "{stderr}");
    assert!(stderr.contains("notes.txt"), "{stderr}");
    assert_eq!(
        files(&out),
        BTreeMap::from([("notes.txt".to_owned(), b"keep me\n".to_vec())])
    );
    std::fs::remove_file(out.join("notes.txt")).unwrap();
    assert!(run(&c2d_args(&out, false)).status.success());
    let first = files(&out);
    assert!(run(&c2d_args(&out, true)).status.success());
    assert_eq!(files(&out), first);
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn a_kill_after_any_step_leaves_the_old_outputs_or_the_new() {
    use std::os::unix::process::ExitStatusExt;
    let dir = scratch("crash");
    let out = dir.join("out");
    let mut old_args = c2d_args(&out, false);
    let at = old_args.iter().position(|a| a == "--as-of").unwrap();
    old_args[at + 1] = "2026-11-28T10:30:00Z".into();
    let new_args = c2d_args(&out, true);
    assert!(run(&new_args).status.success());
    let new = files(&out);
    let mut step = 1;
    loop {
        assert!(run(&old_args).status.success());
        let old = files(&out);
        assert_ne!(old, new);
        let refs: Vec<&str> = new_args.iter().map(String::as_str).collect();
        let status = Command::new(env!("CARGO_BIN_EXE_failback"))
            .args(&refs)
            .env("FAILBACK_CRASH_AT", step.to_string())
            .output()
            .unwrap()
            .status;
        let seen = files(&out);
        if status.signal().is_none() {
            assert_eq!(seen, new);
            break;
        }
        assert!(
            seen == old || seen == new,
            "killed after step {step}: a mix"
        );
        assert!(run(&new_args).status.success());
        assert_eq!(files(&out), new, "rerun after a kill at step {step}");
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["out"], "left behind after a kill at step {step}");
        step += 1;
    }
    assert!(step > 5, "only {step} steps");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_readme_example_is_what_the_command_prints_and_writes() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("$ failback c2d --outbox tests/fixtures/c2d/outbox.jsonl")
        .expect("the README shows the command");
    let block = &readme[start..];
    let block = &block[..block.find("```").unwrap()];
    let dir = scratch("readme");
    let out = dir.join("c2d-out").display().to_string();
    let block = block.replace("c2d-out", &out);
    // The command and what it prints, then each `$ cat FILE` and the file.
    let parts: Vec<Vec<&str>> = block
        .split("\n$ ")
        .map(|part| part.lines().collect())
        .collect();
    let head = &parts[0];
    let n = head.iter().position(|l| !l.ends_with('\\')).unwrap() + 1;
    let args: Vec<&str> = head[..n]
        .iter()
        .flat_map(|l| l.split_whitespace())
        .filter(|a| !matches!(*a, "$" | "failback" | "\\"))
        .collect();
    let run = Command::new(env!("CARGO_BIN_EXE_failback"))
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("FAILBACK_CRASH_AT")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8(run.stdout).unwrap(),
        head[n..].join("\n") + "\n"
    );
    let written = files(Path::new(&out));
    assert_eq!(parts.len(), 3);
    for part in &parts[1..] {
        let name = part[0].rsplit('/').next().unwrap();
        let shown = part[1..].join("\n") + "\n";
        assert_eq!(
            String::from_utf8(written[name].clone()).unwrap(),
            shown,
            "{name}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
