//! Cloud-to-device messages after a failover: which ones to send again.
//!
//! The service cannot read a hub's C2D queue, and a manual failover does
//! not carry the queues over, so what devices still have to receive is
//! known from two things only: the application's **outbox** (every message
//! it sent, with its device, enqueue and expiry times) and the **feedback**
//! each hub returned (how each message ended: `Success`, `Expired`,
//! `DeliveryCountExceeded`, `Rejected` or `Purged`). The file formats are
//! described in the README ("Cloud-to-device messages").
//!
//! [`Inputs`] reads both, one record at a time; [`Inputs::settle`] joins
//! them in the C2D lattice (`C2dQueues`: one message per `deviceId` and
//! `messageId`, an outcome beats pending, `Success` beats every other
//! outcome) and gives a [`Settlement`]:
//!
//! - `to-send.jsonl`: the outbox record of every message no hub gave an
//!   outcome for and that has not expired at the as-of time, per device at
//!   most `QUEUE_LIMIT` (a device queue's capacity), sorted by device,
//!   then enqueue time, then message id. A message completed anywhere is
//!   never in it.
//! - `settled.jsonl`: every outbox message a hub gave an outcome for: its
//!   final outcome, the hub that gave it (the least hub name when several
//!   did) and every outcome each hub gave.
//! - `report.json`: the counts, the messages that expired unsent, those
//!   over a device's limit (to send once its queue drains), those whose
//!   `ack` asks for no completion feedback, and feedback that matches no
//!   outbox message.
//!
//! Each outbox message lands in exactly one of `to-send.jsonl`,
//! `settled.jsonl`, the expired list and the over-limit list. Feedback is a
//! set: the same record twice, in any file, changes nothing; the outputs
//! are the same bytes for any order of files and of the records in them.
//! Feedback whose `deviceId` and `originalMessageId` match no outbox
//! message is reported, never fatal and never applied: feedback for another
//! device proves nothing about this one's message.
//!
//! # Example
//!
//! ```
//! use failback::ReplicaId;
//! use failback::c2d::{AsOf, Inputs};
//!
//! let outbox = r#"
//! {"messageId":"m1","deviceId":"pump-1","enqueuedTimeUtc":"2026-11-28T10:00:00Z","ack":"full","body":{"open":true}}
//! {"messageId":"m2","deviceId":"pump-1","enqueuedTimeUtc":"2026-11-28T10:01:00Z","ack":"full","body":{"open":false}}
//! "#;
//! // A batch of feedback as the service SDKs receive it.
//! let feedback = r#"[{"originalMessageId":"m1","deviceId":"pump-1","statusCode":"Success",
//!                     "description":"Success","enqueuedTimeUtc":"2026-11-28T10:00:05Z"}]"#;
//! let mut inputs = Inputs::new();
//! inputs.read_outbox(outbox.as_bytes(), "outbox.jsonl")?;
//! let primary = ReplicaId::new("primary")?;
//! inputs.read_feedback(&primary, feedback.as_bytes(), "feedback.json")?;
//!
//! // 2026-11-28T12:00:00Z, in ms since the epoch.
//! let settlement = inputs.settle(AsOf::Given(1_795_867_200_000));
//! let mut to_send = Vec::new();
//! settlement.write_to_send(&mut to_send)?;
//! // m1 was completed: only m2 is sent again, as the outbox wrote it.
//! assert_eq!(
//!     String::from_utf8(to_send)?,
//!     "{\"ack\":\"full\",\"body\":{\"open\":false},\"deviceId\":\"pump-1\",\
//!      \"enqueuedTimeUtc\":\"2026-11-28T10:01:00Z\",\"messageId\":\"m2\"}\n"
//! );
//! assert_eq!(settlement.report().settled["Success"], 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// A `ReadError` carries file, line, device, message and field by contract
// (the CLI prints them); it is returned once, on a cold path, when a read
// fails: not worth boxing.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, Write};
use std::path::Path;

use serde::Serialize;

use crate::ReplicaId;
use crate::doc::{C2dMessage, C2dQueues, Outcome};
use crate::format::{
    Ack, FeedbackRecord, JsonlReader, OutboxRecord, ReadError, ReadErrorKind, format_time,
    outcome_name,
};
use crate::fsio::DirWriter;

/// The files [`Settlement::write_dir`] writes.
const FILES: [&str; 3] = ["to-send.jsonl", "settled.jsonl", "report.json"];

/// The time at which messages are judged expired, in ms since the epoch,
/// and where it came from. The library never reads the clock: a caller
/// that does says so, and the report repeats it.
///
/// # Example
///
/// ```
/// use std::time::{SystemTime, UNIX_EPOCH};
/// use failback::c2d::{AsOf, Inputs};
///
/// let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
/// let inputs = Inputs::new();
/// let settlement = inputs.settle(AsOf::Clock(i64::try_from(now)?));
/// assert_eq!(settlement.report().as_of_from, "clock");
///
/// let given = inputs.settle(AsOf::Given(1_795_867_200_000));
/// assert_eq!(given.report().as_of, "2026-11-28T12:00:00.000Z");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsOf {
    /// Given by the operator: the outputs are a function of the inputs.
    Given(i64),
    /// Read from the clock of the machine that ran the settlement.
    Clock(i64),
}

impl AsOf {
    fn ms(self) -> i64 {
        match self {
            AsOf::Given(ms) | AsOf::Clock(ms) => ms,
        }
    }
}

/// An outbox message as read.
#[derive(Debug)]
struct Sent {
    enqueued_ms: i64,
    expiry_ms: Option<i64>,
    ack: Ack,
    canonical: String,
    /// Where it was first read (`file:line`), for a conflicting record.
    first: String,
}

/// The outbox and the feedback read so far: a set of messages keyed by
/// `(deviceId, messageId)`, and a set of feedback records.
///
/// Reading is order-free: the same records in any order, any number of
/// times, in any files, give the same inputs.
///
/// # Example
///
/// ```
/// use failback::c2d::{AsOf, Inputs};
///
/// let m1 = r#"{"messageId":"m1","deviceId":"pump-1","enqueuedTimeUtc":"2026-11-28T10:00:00Z"}"#;
/// let m2 = r#"{"messageId":"m2","deviceId":"pump-1","enqueuedTimeUtc":"2026-11-28T10:01:00Z"}"#;
/// let (mut one, mut other) = (Inputs::new(), Inputs::new());
/// one.read_outbox(format!("{m1}\n{m2}").as_bytes(), "outbox.jsonl")?;
/// other.read_outbox(m2.as_bytes(), "retry.jsonl")?;
/// other.read_outbox(format!("{m2}\n{m1}").as_bytes(), "outbox.jsonl")?;
/// let to_send = |inputs: &Inputs| -> std::io::Result<Vec<u8>> {
///     let mut out = Vec::new();
///     inputs.settle(AsOf::Given(1_795_867_200_000)).write_to_send(&mut out)?;
///     Ok(out)
/// };
/// assert_eq!(to_send(&one)?, to_send(&other)?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct Inputs {
    outbox: BTreeMap<(String, String), Sent>,
    /// `(deviceId, messageId, outcome, hub)`.
    feedback: BTreeSet<(String, String, Outcome, ReplicaId)>,
}

impl Inputs {
    /// No messages, no feedback.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::c2d::{AsOf, Inputs};
    ///
    /// let inputs = Inputs::new();
    /// let report = inputs.settle(AsOf::Given(1_795_867_200_000)).report().clone();
    /// assert_eq!((report.messages, report.feedback, report.to_send), (0, 0, 0));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads an outbox (JSON lines, or one JSON array), naming it `file` in
    /// errors. Returns how many records the file held. A message read
    /// before (here or in another file) with the same record, whitespace
    /// and field order aside, is the same message.
    ///
    /// # Errors
    ///
    /// The first bad record, as a [`ReadError`] naming `file`, the line,
    /// the device, the message and the field; a record for a message read
    /// before with other contents is [`ReadErrorKind::ConflictingMessage`].
    /// The inputs are then as they were before the call.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::c2d::Inputs;
    ///
    /// let line = r#"{"messageId":"m1","deviceId":"d1","enqueuedTimeUtc":"2026-11-28T10:00:00Z"}"#;
    /// let other = line.replace("10:00", "11:00");
    /// let mut inputs = Inputs::new();
    /// assert_eq!(inputs.read_outbox(format!("{line}\n{line}\n").as_bytes(), "a.jsonl")?, 2);
    /// let error = inputs.read_outbox(other.as_bytes(), "b.jsonl").unwrap_err();
    /// assert_eq!(
    ///     error.to_string(),
    ///     r#"b.jsonl:1: device "d1" message "m1": differs from the record of this message at a.jsonl:1"#
    /// );
    /// # Ok::<(), failback::format::ReadError>(())
    /// ```
    pub fn read_outbox<R: BufRead>(&mut self, reader: R, file: &str) -> Result<usize, ReadError> {
        let mut read: BTreeMap<(String, String), Sent> = BTreeMap::new();
        let mut count = 0;
        for record in JsonlReader::<R, OutboxRecord>::new(reader, file) {
            let record = record?;
            count += 1;
            let key = (record.device_id, record.message_id);
            let known = self.outbox.get(&key).or_else(|| read.get(&key));
            match known {
                Some(sent) if sent.canonical == record.canonical => {}
                Some(sent) => {
                    let kind = ReadErrorKind::ConflictingMessage {
                        first: sent.first.clone(),
                    };
                    return Err(ReadError::new(file, record.line, kind)
                        .with_device(Some(&key.0), None)
                        .with_message_id(Some(&key.1)));
                }
                None => {
                    let sent = Sent {
                        enqueued_ms: record.enqueued_ms,
                        expiry_ms: record.expiry_ms,
                        ack: record.ack,
                        canonical: record.canonical,
                        first: format!("{file}:{}", record.line),
                    };
                    read.insert(key, sent);
                }
            }
        }
        self.outbox.append(&mut read);
        Ok(count)
    }

    /// Reads feedback that `hub` returned (batches as JSON arrays, or JSON
    /// lines), naming it `file` in errors. Returns how many records the
    /// file held.
    ///
    /// # Errors
    ///
    /// The first bad record, as a [`ReadError`] naming `file`, the line,
    /// the device, the message and the field (`statusCode` none of the five
    /// names nor 0-4, for instance). The inputs are then as they were
    /// before the call.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::ReplicaId;
    /// use failback::c2d::Inputs;
    ///
    /// let hub = ReplicaId::new("secondary")?;
    /// let batch = r#"[{"originalMessageId":"m1","deviceId":"d1","statusCode":7}]"#;
    /// let error = Inputs::new().read_feedback(&hub, batch.as_bytes(), "fb.json").unwrap_err();
    /// assert!(error.to_string().starts_with(
    ///     r#"fb.json:1: device "d1" message "m1" field "statusCode": unknown statusCode "7""#
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_feedback<R: BufRead>(
        &mut self,
        hub: &ReplicaId,
        reader: R,
        file: &str,
    ) -> Result<usize, ReadError> {
        let mut read = BTreeSet::new();
        let mut count = 0;
        for record in JsonlReader::<R, FeedbackRecord>::new(reader, file) {
            let record = record?;
            count += 1;
            read.insert((
                record.device_id,
                record.message_id,
                record.outcome,
                hub.clone(),
            ));
        }
        self.feedback.append(&mut read);
        Ok(count)
    }

    /// Settles the messages at `as_of`: what to send, what ended how, and
    /// the report. Messages whose `expiryTimeUtc` is at or before `as_of`
    /// are expired.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::c2d::{AsOf, Inputs};
    ///
    /// // Pretty-printed, as `az` and most serializers print it.
    /// let outbox = r#"{
    ///   "messageId": "m1", "deviceId": "d1", "enqueuedTimeUtc": "2026-11-28T10:00:00Z",
    ///   "expiryTimeUtc": "2026-11-28T11:00:00Z"
    /// }"#;
    /// let mut inputs = Inputs::new();
    /// inputs.read_outbox(outbox.as_bytes(), "outbox.json")?;
    /// let at_ten_thirty = inputs.settle(AsOf::Given(1_795_861_800_000));
    /// assert_eq!(at_ten_thirty.report().to_send, 1);
    /// let at_noon = inputs.settle(AsOf::Given(1_795_867_200_000));
    /// assert_eq!(at_noon.report().expired["d1"], ["m1"]);
    /// # Ok::<(), failback::format::ReadError>(())
    /// ```
    pub fn settle(&self, as_of: AsOf) -> Settlement<'_> {
        let now = as_of.ms();
        let mut queues = C2dQueues::default();
        for ((device, id), sent) in &self.outbox {
            let message = C2dMessage {
                expiry_ms: sent.expiry_ms,
                ..C2dMessage::enqueued(sent.enqueued_ms)
            };
            queues.record(device, id, message);
        }
        // Which devices' outboxes hold each message id, for feedback that
        // names another device.
        let mut devices_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (device, id) in self.outbox.keys() {
            devices_of.entry(id).or_default().push(device);
        }
        let mut hubs: Outcomes<'_> = BTreeMap::new();
        let mut unmatched = Vec::new();
        for (device, id, outcome, hub) in &self.feedback {
            if self.outbox.contains_key(&(device.clone(), id.clone())) {
                queues.complete(device, id, *outcome);
                hubs.entry((device, id))
                    .or_default()
                    .entry(*outcome)
                    .or_default()
                    .insert(hub);
            } else {
                unmatched.push(UnmatchedFeedback {
                    device_id: device.clone(),
                    hub: hub.to_string(),
                    message_id: id.clone(),
                    outbox_devices: devices_of
                        .get(id.as_str())
                        .map(|ds| ds.iter().map(|d| (*d).to_owned()).collect())
                        .unwrap_or_default(),
                    outcome: outcome_name(*outcome).to_owned(),
                });
            }
        }

        let to_send: Vec<&Sent> = queues
            .to_deliver(now)
            .filter_map(|(d, m, _)| self.outbox.get(&(d.to_owned(), m.to_owned())))
            .collect();
        let over_limit = owned(queues.over_limit(now));
        let mut expired: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut unconfirmable: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut settled_counts: BTreeMap<String, usize> = BTreeMap::new();
        for ((device, id), sent) in &self.outbox {
            let Some(message) = queues.get(device, id) else {
                continue;
            };
            if let Some(outcome) = message.outcome() {
                *settled_counts
                    .entry(outcome_name(outcome).to_owned())
                    .or_default() += 1;
            } else if !message.is_pending(now) {
                expired.entry(device.clone()).or_default().push(id.clone());
            } else if !sent.ack.reports_success() {
                unconfirmable
                    .entry(device.clone())
                    .or_default()
                    .push(id.clone());
            }
        }
        let report = Report {
            as_of: format_time(now).unwrap_or_else(|| now.to_string()),
            as_of_from: match as_of {
                AsOf::Given(_) => "given",
                AsOf::Clock(_) => "clock",
            }
            .to_owned(),
            expired,
            feedback: self.feedback.len(),
            messages: self.outbox.len(),
            over_limit,
            settled: settled_counts,
            to_send: to_send.len(),
            unconfirmable,
            unmatched_feedback: unmatched,
        };
        Settlement {
            queues,
            hubs,
            to_send,
            report,
        }
    }
}

/// Per message, the hubs that gave each outcome.
type Outcomes<'a> = BTreeMap<(&'a str, &'a str), BTreeMap<Outcome, BTreeSet<&'a ReplicaId>>>;

fn owned(map: BTreeMap<&str, Vec<&str>>) -> BTreeMap<String, Vec<String>> {
    map.into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
        .collect()
}

/// The settled messages: what to send again, how each message ended, and
/// the report. Every output is a function of the set of inputs and the
/// as-of time.
///
/// # Example
///
/// ```
/// use failback::c2d::{AsOf, Inputs};
///
/// let outbox = r#"{"messageId":"m1","deviceId":"pump-1","enqueuedTimeUtc":"2026-11-28T10:00:00Z","expiryTimeUtc":"2026-11-28T11:00:00Z"}"#;
/// let mut inputs = Inputs::new();
/// inputs.read_outbox(outbox.as_bytes(), "outbox.json")?;
/// // At noon, m1 had expired unsent: not sent again, reported.
/// let settlement = inputs.settle(AsOf::Given(1_795_867_200_000));
/// let mut to_send = Vec::new();
/// settlement.write_to_send(&mut to_send)?;
/// assert!(to_send.is_empty());
/// assert_eq!(settlement.report().expired["pump-1"], ["m1"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Settlement<'a> {
    queues: C2dQueues,
    hubs: Outcomes<'a>,
    to_send: Vec<&'a Sent>,
    report: Report,
}

/// One line of `settled.jsonl`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SettledLine<'a> {
    device_id: &'a str,
    hub: &'a str,
    message_id: &'a str,
    outcome: &'static str,
    /// Every outcome given, with the hubs that gave it.
    outcomes: BTreeMap<&'static str, Vec<&'a str>>,
}

impl Settlement<'_> {
    /// The report: counts and lists, as `report.json` holds them.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::ReplicaId;
    /// use failback::c2d::{AsOf, Inputs};
    ///
    /// let outbox = r#"{"messageId":"m1","deviceId":"pump-1","enqueuedTimeUtc":"2026-11-28T10:00:00Z","body":{"open":true}}"#;
    /// let feedback = r#"{"originalMessageId":"m1","deviceId":"pump-1","statusCode":"Rejected"}"#;
    /// let mut inputs = Inputs::new();
    /// inputs.read_outbox(outbox.as_bytes(), "outbox.jsonl")?;
    /// inputs.read_feedback(&ReplicaId::new("secondary")?, feedback.as_bytes(), "feedback.jsonl")?;
    /// let settlement = inputs.settle(AsOf::Given(1_795_867_200_000));
    /// let report = settlement.report();
    /// assert_eq!((report.messages, report.feedback, report.to_send), (1, 1, 0));
    /// assert_eq!(report.settled["Rejected"], 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Writes `to-send.jsonl`: one outbox record a line, as read but for
    /// whitespace and field order, sorted by device, enqueue time and
    /// message id, at most `QUEUE_LIMIT` per device.
    ///
    /// # Errors
    ///
    /// The writer's.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::c2d::{AsOf, Inputs};
    ///
    /// let outbox = r#"[
    ///   {"messageId":"m9","deviceId":"valve-2","enqueuedTimeUtc":"2026-11-28T09:00:00Z"},
    ///   {"messageId":"m2","deviceId":"pump-1","enqueuedTimeUtc":"2026-11-28T10:01:00Z"},
    ///   {"messageId":"m3","deviceId":"pump-1","enqueuedTimeUtc":"2026-11-28T10:00:00Z"}
    /// ]"#;
    /// let mut inputs = Inputs::new();
    /// inputs.read_outbox(outbox.as_bytes(), "outbox.json")?;
    /// let mut out = Vec::new();
    /// inputs.settle(AsOf::Given(1_795_867_200_000)).write_to_send(&mut out)?;
    /// let ids = String::from_utf8(out)?
    ///     .lines()
    ///     .map(|line| serde_json::from_str::<serde_json::Value>(line).map(|record| record["messageId"].clone()))
    ///     .collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(ids, ["m3", "m2", "m9"]); // pump-1 by enqueue time, then valve-2
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_to_send(&self, out: &mut dyn Write) -> io::Result<()> {
        for sent in &self.to_send {
            out.write_all(sent.canonical.as_bytes())?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Writes `settled.jsonl`: for each message a hub gave an outcome for,
    /// sorted by device then message id, `{"deviceId", "hub", "messageId",
    /// "outcome", "outcomes"}`: the final outcome (`Success` first, then
    /// `Rejected`, `DeliveryCountExceeded`, `Expired`, `Purged`), the least
    /// hub name that gave it, and every outcome with the hubs that gave it.
    ///
    /// # Errors
    ///
    /// The writer's.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::ReplicaId;
    /// use failback::c2d::{AsOf, Inputs};
    ///
    /// let outbox = r#"{"messageId":"m1","deviceId":"pump-1","enqueuedTimeUtc":"2026-11-28T10:00:00Z","body":{"open":true}}"#;
    /// let outcome = |code: &str| format!(r#"{{"originalMessageId":"m1","deviceId":"pump-1","statusCode":"{code}"}}"#);
    /// let mut inputs = Inputs::new();
    /// inputs.read_outbox(outbox.as_bytes(), "outbox.jsonl")?;
    /// inputs.read_feedback(&ReplicaId::new("primary")?, outcome("DeliveryCountExceeded").as_bytes(), "p.jsonl")?;
    /// inputs.read_feedback(&ReplicaId::new("secondary")?, outcome("Success").as_bytes(), "s.jsonl")?;
    /// let mut out = Vec::new();
    /// inputs.settle(AsOf::Given(1_795_867_200_000)).write_settled(&mut out)?;
    /// assert_eq!(
    ///     String::from_utf8(out)?,
    ///     "{\"deviceId\":\"pump-1\",\"hub\":\"secondary\",\"messageId\":\"m1\",\"outcome\":\"Success\",\
    ///      \"outcomes\":{\"DeliveryCountExceeded\":[\"primary\"],\"Success\":[\"secondary\"]}}\n"
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_settled(&self, out: &mut dyn Write) -> io::Result<()> {
        for ((device, id), given) in &self.hubs {
            let Some(outcome) = self.queues.get(device, id).and_then(C2dMessage::outcome) else {
                continue;
            };
            let hub = given
                .get(&outcome)
                .and_then(|hubs| hubs.first())
                .map_or("", |hub| hub.as_str());
            let line = SettledLine {
                device_id: device,
                hub,
                message_id: id,
                outcome: outcome_name(outcome),
                outcomes: given
                    .iter()
                    .map(|(o, hubs)| (outcome_name(*o), hubs.iter().map(|h| h.as_str()).collect()))
                    .collect(),
            };
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Writes `report.json`: the [`Report`], pretty-printed, keys sorted.
    ///
    /// # Errors
    ///
    /// The writer's.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::c2d::{AsOf, Inputs};
    ///
    /// let outbox = r#"{"messageId":"m1","deviceId":"pump-1","enqueuedTimeUtc":"2026-11-28T10:00:00Z","body":{"open":true}}"#;
    /// let mut inputs = Inputs::new();
    /// inputs.read_outbox(outbox.as_bytes(), "outbox.jsonl")?;
    /// let mut out = Vec::new();
    /// inputs.settle(AsOf::Given(1_795_867_200_000)).write_report(&mut out)?;
    /// let report: serde_json::Value = serde_json::from_slice(&out)?;
    /// assert_eq!(report["asOf"], "2026-11-28T12:00:00.000Z");
    /// assert_eq!(report["toSend"], 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_report(&self, out: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, &self.report)?;
        out.write_all(b"\n")
    }

    /// Writes the three files into the directory `out`, all or nothing: a
    /// kill at any point leaves at `out` either its previous contents or
    /// the new ones (see the README, "Crash-safe and private outputs").
    /// `out`, when it exists, must hold only these files.
    ///
    /// # Errors
    ///
    /// The file system's; `out` is then as it was.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::c2d::{AsOf, Inputs};
    ///
    /// let out = std::env::temp_dir().join(format!("failback-doc-{}-c2d", std::process::id()));
    /// let outbox = r#"{"messageId":"m1","deviceId":"pump-1","enqueuedTimeUtc":"2026-11-28T10:00:00Z","body":{"open":true}}"#;
    /// let mut inputs = Inputs::new();
    /// inputs.read_outbox(outbox.as_bytes(), "outbox.jsonl")?;
    /// inputs.settle(AsOf::Given(1_795_867_200_000)).write_dir(&out)?;
    /// let to_send = std::fs::read_to_string(out.join("to-send.jsonl"))?;
    /// let settled = std::fs::read_to_string(out.join("settled.jsonl"))?;
    /// let has_report = out.join("report.json").is_file();
    /// std::fs::remove_dir_all(&out)?;
    /// assert_eq!((to_send.lines().count(), settled.len(), has_report), (1, 0, true));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_dir(&self, out: &Path) -> io::Result<()> {
        let dir = DirWriter::begin(out, &|name| FILES.contains(&name))?;
        for name in FILES {
            let mut file = dir.create(name)?;
            match name {
                "to-send.jsonl" => self.write_to_send(file.writer())?,
                "settled.jsonl" => self.write_settled(file.writer())?,
                _ => self.write_report(file.writer())?,
            }
            file.finish()?;
        }
        dir.commit()
    }
}

/// What [`Inputs::settle`] found, as `report.json` holds it (keys sorted).
/// Lists are by device id, then in message-id order.
///
/// # Example
///
/// ```
/// use failback::c2d::{AsOf, Inputs};
///
/// // `ack` none: the hub reports no completion, so no feedback proves it undelivered.
/// let outbox = r#"{"messageId":"m1","deviceId":"pump-1","enqueuedTimeUtc":"2026-11-28T10:00:00Z","ack":"none"}"#;
/// let mut inputs = Inputs::new();
/// inputs.read_outbox(outbox.as_bytes(), "outbox.jsonl")?;
/// let settlement = inputs.settle(AsOf::Given(1_795_867_200_000));
/// let report = settlement.report();
/// assert_eq!((report.to_send, report.as_of_from.as_str()), (1, "given"));
/// assert_eq!(report.unconfirmable["pump-1"], ["m1"]);
/// assert!(report.expired.is_empty() && report.over_limit.is_empty());
/// # Ok::<(), failback::format::ReadError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Report {
    /// The as-of time, RFC 3339 UTC with milliseconds.
    pub as_of: String,
    /// `given` or `clock`: see [`AsOf`].
    pub as_of_from: String,
    /// Messages no hub gave an outcome for that had expired at the as-of
    /// time: not sent.
    pub expired: BTreeMap<String, Vec<String>>,
    /// Distinct feedback records: hub, device, message and outcome.
    pub feedback: usize,
    /// Distinct outbox messages.
    pub messages: usize,
    /// Messages to send that do not fit in their device's queue
    /// (`QUEUE_LIMIT` each), in enqueue order: send them once the
    /// messages of `to-send.jsonl` are delivered.
    pub over_limit: BTreeMap<String, Vec<String>>,
    /// Settled messages by final outcome (`Success`, `Rejected`, ...).
    pub settled: BTreeMap<String, usize>,
    /// Lines of `to-send.jsonl`.
    pub to_send: usize,
    /// Messages to send (in `to-send.jsonl` or over the limit) whose `ack`
    /// is `none` or `negative`: a hub reports no completion of those, so no
    /// `Success` feedback does not prove them undelivered, and a device may
    /// receive them twice.
    pub unconfirmable: BTreeMap<String, Vec<String>>,
    /// Feedback for no outbox message, sorted by device, message, outcome
    /// and hub: reported, not applied.
    pub unmatched_feedback: Vec<UnmatchedFeedback>,
}

/// A feedback record whose `deviceId` and `originalMessageId` match no
/// outbox message.
///
/// # Example
///
/// ```
/// use failback::ReplicaId;
/// use failback::c2d::{AsOf, Inputs};
///
/// let outbox = r#"{"messageId":"m1","deviceId":"pump-1","enqueuedTimeUtc":"2026-11-28T10:00:00Z","body":{"open":true}}"#;
/// // The feedback names another device than the outbox does.
/// let feedback = r#"{"originalMessageId":"m1","deviceId":"pump-2","statusCode":"Success"}"#;
/// let mut inputs = Inputs::new();
/// inputs.read_outbox(outbox.as_bytes(), "outbox.jsonl")?;
/// inputs.read_feedback(&ReplicaId::new("primary")?, feedback.as_bytes(), "feedback.jsonl")?;
/// let settlement = inputs.settle(AsOf::Given(1_795_867_200_000));
/// let unmatched = &settlement.report().unmatched_feedback[0];
/// assert_eq!((unmatched.device_id.as_str(), unmatched.hub.as_str()), ("pump-2", "primary"));
/// assert_eq!(unmatched.outbox_devices, ["pump-1"]);
/// assert_eq!(settlement.report().to_send, 1, "never applied");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UnmatchedFeedback {
    /// Its `deviceId`.
    pub device_id: String,
    /// The hub that returned it.
    pub hub: String,
    /// Its `originalMessageId`.
    pub message_id: String,
    /// The devices the outbox holds this message id for, when it holds it
    /// for another device than the feedback names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outbox_devices: Vec<String>,
    /// Its `statusCode`.
    pub outcome: String,
}
