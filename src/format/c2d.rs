//! Cloud-to-device files: the application's outbox of the messages it sent,
//! and the feedback records the hubs returned for them.
//!
//! Both are JSON lines or JSON arrays (feedback comes in batches, one array
//! each, as the service SDKs receive them), read one record at a time by
//! [`JsonlReader`](super::JsonlReader).
//!
//! - An **outbox** record: `messageId`, `deviceId`, `enqueuedTimeUtc`
//!   (required), `expiryTimeUtc` (absent, `null` or `0001-01-01T00:00:00Z`:
//!   none), `ack` (`none`, `positive`, `negative`, `full` in any case;
//!   absent or `null`: `none`), `body` (any JSON value) and any other field.
//!   Every field is kept as written, but for the whitespace between JSON
//!   tokens: the record is written back with its top-level fields sorted and
//!   that whitespace dropped, so `body` is never re-encoded (a number keeps
//!   its digits, a string its escapes).
//! - A **feedback** record: `originalMessageId`, `deviceId`, `statusCode`
//!   (required), `deviceGenerationId`, `description`, `enqueuedTimeUtc`
//!   (checked when given) and any other field (ignored). `statusCode` is
//!   the name in any case, or the .NET SDK's `FeedbackStatusCode` number:
//!   `Success` 0, `Expired` 1, `DeliveryCountExceeded` 2, `Rejected` 3,
//!   `Purged` 4.
//!
//! Ids are checked as IoT Hub documents them (1-128 characters of ASCII
//! letters, digits and `- : . + % _ # * ? ! ( ) , = @ ; $ '`), times as the
//! other readers take them (RFC 3339, seven fractional digits, no zone
//! meaning UTC). A field given twice is an error.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::raw::{self, Ctx, Key};
use super::{ParseLine, ReadError, ReadErrorKind};
use crate::doc::Outcome;
use crate::validate::validate_id;

/// What feedback a message asked its hub for (`iothub-ack`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ack {
    /// No feedback (the default).
    None,
    /// Feedback on completion only.
    Positive,
    /// Feedback on the negative outcomes only.
    Negative,
    /// Feedback on every outcome.
    Full,
}

impl Ack {
    /// Whether a hub reports a completion of the message: without it, no
    /// `Success` feedback says nothing.
    pub(crate) fn reports_success(self) -> bool {
        matches!(self, Ack::Positive | Ack::Full)
    }
}

/// One record of an outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OutboxRecord {
    /// The line it starts on.
    pub(crate) line: u64,
    pub(crate) message_id: String,
    pub(crate) device_id: String,
    /// `enqueuedTimeUtc`, in ms since the epoch.
    pub(crate) enqueued_ms: i64,
    /// `expiryTimeUtc`, in ms, when set.
    pub(crate) expiry_ms: Option<i64>,
    pub(crate) ack: Ack,
    /// The record as written back: top-level fields sorted by name, no
    /// whitespace between tokens, one line.
    pub(crate) canonical: String,
}

/// One feedback record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FeedbackRecord {
    /// The line it starts on.
    pub(crate) line: u64,
    /// `originalMessageId`.
    pub(crate) message_id: String,
    pub(crate) device_id: String,
    /// `statusCode`.
    pub(crate) outcome: Outcome,
}

impl ParseLine for OutboxRecord {
    fn parse_line(file: &str, line: u64, text: &str) -> Result<Self, ReadError> {
        let fields = Fields::parse(file, line, text)?;
        let at = Place {
            file,
            line,
            device: fields.text("deviceId"),
            message: fields.text("messageId"),
        };
        let message_id = id(&at, &fields, "messageId")?;
        let device_id = id(&at, &fields, "deviceId")?;
        let enqueued_ms = match time(&at, &fields, "enqueuedTimeUtc")? {
            Some(Some(ms)) => ms,
            Some(None) => {
                let value = fields.text("enqueuedTimeUtc").unwrap_or_default();
                let kind = ReadErrorKind::InvalidTimestamp {
                    value: super::safe_value(value),
                };
                return Err(at.error("enqueuedTimeUtc", kind));
            }
            None => return Err(at.error("enqueuedTimeUtc", ReadErrorKind::MissingField)),
        };
        let expiry_ms = time(&at, &fields, "expiryTimeUtc")?.flatten();
        let ack = match string(&at, &fields, "ack")? {
            None => Ack::None,
            Some(text) => parse_ack(&text).ok_or_else(|| {
                let value = super::safe_value(&text);
                at.error("ack", ReadErrorKind::UnknownAck { value })
            })?,
        };
        Ok(OutboxRecord {
            line,
            message_id,
            device_id,
            enqueued_ms,
            expiry_ms,
            ack,
            canonical: fields.canonical(),
        })
    }
}

impl ParseLine for FeedbackRecord {
    fn parse_line(file: &str, line: u64, text: &str) -> Result<Self, ReadError> {
        let fields = Fields::parse(file, line, text)?;
        let at = Place {
            file,
            line,
            device: fields.text("deviceId"),
            message: fields.text("originalMessageId"),
        };
        let message_id = id(&at, &fields, "originalMessageId")?;
        let device_id = id(&at, &fields, "deviceId")?;
        let outcome = status_code(&at, &fields)?;
        time(&at, &fields, "enqueuedTimeUtc")?;
        string(&at, &fields, "deviceGenerationId")?;
        string(&at, &fields, "description")?;
        Ok(FeedbackRecord {
            line,
            message_id,
            device_id,
            outcome,
        })
    }
}

/// `ack`, in any case.
fn parse_ack(text: &str) -> Option<Ack> {
    [
        ("none", Ack::None),
        ("positive", Ack::Positive),
        ("negative", Ack::Negative),
        ("full", Ack::Full),
    ]
    .into_iter()
    .find_map(|(name, ack)| text.eq_ignore_ascii_case(name).then_some(ack))
}

/// The names of the outcomes, as the hub writes `statusCode`, in the order
/// of the .NET SDK's `FeedbackStatusCode` numbers.
const STATUS_CODES: [(&str, Outcome); 5] = [
    ("Success", Outcome::Success),
    ("Expired", Outcome::Expired),
    ("DeliveryCountExceeded", Outcome::DeliveryCountExceeded),
    ("Rejected", Outcome::Rejected),
    ("Purged", Outcome::Purged),
];

/// The name `statusCode` has for `outcome`.
pub(crate) fn outcome_name(outcome: Outcome) -> &'static str {
    STATUS_CODES
        .iter()
        .find(|(_, o)| *o == outcome)
        .map_or("Success", |(name, _)| name)
}

/// `statusCode`: a name in any case, or the SDK enum's number.
fn status_code(at: &Place<'_>, fields: &Fields<'_>) -> Result<Outcome, ReadError> {
    const FIELD: &str = "statusCode";
    let raw = fields
        .get(FIELD)
        .ok_or_else(|| at.error(FIELD, ReadErrorKind::MissingField))?;
    let text = raw.get();
    let found = match text.as_bytes().first() {
        Some(b'"') => match serde_json::from_str::<Cow<'_, str>>(text) {
            Ok(name) => STATUS_CODES
                .iter()
                .find(|(n, _)| name.eq_ignore_ascii_case(n))
                .map(|(_, o)| *o)
                .ok_or_else(|| super::safe_value(&name)),
            Err(_) => Err(None),
        },
        Some(b'-' | b'0'..=b'9') => text
            .parse::<usize>()
            .ok()
            .and_then(|n| STATUS_CODES.get(n))
            .map(|(_, o)| *o)
            .ok_or_else(|| super::safe_value(text)),
        _ => {
            let kind = ReadErrorKind::WrongType {
                expected: "a string or an integer".to_owned(),
                found: raw::kind_of_text(text).to_owned(),
            };
            return Err(at.error(FIELD, kind));
        }
    };
    found.map_err(|value| at.error(FIELD, ReadErrorKind::UnknownStatusCode { value }))
}

/// Where a record is, and what it said of its message, for errors.
struct Place<'a> {
    file: &'a str,
    line: u64,
    device: Option<&'a str>,
    message: Option<&'a str>,
}

impl Place<'_> {
    fn error(&self, field: &str, kind: ReadErrorKind) -> ReadError {
        ReadError::new(self.file, self.line, kind)
            .with_device(self.device, None)
            .with_message_id(self.message)
            .with_field(field)
    }
}

/// A required id: a string IoT Hub takes as a device or message id.
fn id(at: &Place<'_>, fields: &Fields<'_>, field: &str) -> Result<String, ReadError> {
    let id =
        string(at, fields, field)?.ok_or_else(|| at.error(field, ReadErrorKind::MissingField))?;
    validate_id(&id).map_err(|kind| at.error(field, ReadErrorKind::Invalid(kind)))?;
    Ok(id.into_owned())
}

/// A string field: `None` when absent or `null`.
fn string<'a>(
    at: &Place<'_>,
    fields: &'a Fields<'_>,
    field: &str,
) -> Result<Option<Cow<'a, str>>, ReadError> {
    let Some(raw) = fields.get(field) else {
        return Ok(None);
    };
    serde_json::from_str::<Option<Cow<'a, str>>>(raw.get()).map_err(|_| {
        let kind = ReadErrorKind::WrongType {
            expected: "a string".to_owned(),
            found: raw::kind_of_text(raw.get()).to_owned(),
        };
        at.error(field, kind)
    })
}

/// A time field: `None` when absent or `null`, `Some(None)` for
/// `0001-01-01T00:00:00Z` ("never").
fn time(
    at: &Place<'_>,
    fields: &Fields<'_>,
    field: &str,
) -> Result<Option<Option<i64>>, ReadError> {
    let Some(text) = string(at, fields, field)? else {
        return Ok(None);
    };
    raw::parse_time(&text)
        .map(Some)
        .map_err(|kind| at.error(field, kind))
}

/// A record's top-level fields, each value as written, sorted by name.
struct Fields<'de>(Vec<(Cow<'de, str>, &'de RawValue)>);

impl<'de> Fields<'de> {
    /// Reads `text`, line `line` of `file`: one JSON object whose fields
    /// each appear once.
    fn parse(file: &str, line: u64, text: &'de str) -> Result<Self, ReadError> {
        let mut fields: Fields<'de> = raw::parse(text, std::marker::PhantomData)
            .map_err(|e| Ctx::default().error(file, line, &e))?;
        fields.0.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = fields.0.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            // Which of two values to name would be a guess: neither.
            let field = &pair[0].0;
            let named = |name: &str| (field != name).then(|| fields.text(name)).flatten();
            let at = Place {
                file,
                line,
                device: named("deviceId"),
                message: named("messageId").or_else(|| named("originalMessageId")),
            };
            return Err(at.error(field, ReadErrorKind::DuplicateField));
        }
        Ok(fields)
    }

    fn get(&self, name: &str) -> Option<&'de RawValue> {
        self.0
            .binary_search_by(|(key, _)| key.as_ref().cmp(name))
            .ok()
            .and_then(|i| self.0.get(i))
            .map(|(_, raw)| *raw)
    }

    /// A field's text when it is a string without escapes, for errors.
    fn text(&self, name: &str) -> Option<&'de str> {
        let text = self.get(name)?.get();
        let inner = text.strip_prefix('"')?.strip_suffix('"')?;
        (!inner.contains('\\')).then_some(inner)
    }

    /// `{"name":value,...}`, fields sorted, no whitespace between tokens.
    fn canonical(&self) -> String {
        let mut out = String::from("{");
        for (i, (key, raw)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // A key is a string: its JSON text cannot fail.
            out.push_str(&serde_json::to_string(key.as_ref()).unwrap_or_default());
            out.push(':');
            minify(raw.get(), &mut out);
        }
        out.push('}');
        out
    }
}

/// Appends the JSON text `json` without the whitespace between its tokens.
fn minify(json: &str, out: &mut String) {
    let (mut string, mut escape) = (false, false);
    for c in json.chars() {
        if string {
            out.push(c);
            if escape {
                escape = false;
            } else if c == '\\' {
                escape = true;
            } else if c == '"' {
                string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            string = c == '"';
            out.push(c);
        }
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Vec::new();
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    fields.push((key, value));
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(text: &str) -> Result<OutboxRecord, String> {
        OutboxRecord::parse_line("outbox.jsonl", 3, text).map_err(|e| e.to_string())
    }

    fn feedback(text: &str) -> Result<FeedbackRecord, String> {
        FeedbackRecord::parse_line("feedback.json", 7, text).map_err(|e| e.to_string())
    }

    #[test]
    fn an_outbox_record_is_kept_as_written_but_for_whitespace_and_field_order() {
        let record = outbox(
            "{\"messageId\":\"m1\", \"deviceId\":\"d1\",\"enqueuedTimeUtc\":\"2026-11-28T10:00:00.1234567Z\",\
             \"body\": {\"n\": 1.50e3, \"big\": 123456789012345678901234567890, \"s\": \"a b\\u0041\"},\
             \"ack\":\"FULL\",\"expiryTimeUtc\":\"0001-01-01T00:00:00Z\",\"properties\":{\"k\":\"v\"}}",
        )
        .unwrap();
        assert_eq!(
            record.canonical,
            "{\"ack\":\"FULL\",\"body\":{\"n\":1.50e3,\"big\":123456789012345678901234567890,\
             \"s\":\"a b\\u0041\"},\"deviceId\":\"d1\",\"enqueuedTimeUtc\":\"2026-11-28T10:00:00.1234567Z\",\
             \"expiryTimeUtc\":\"0001-01-01T00:00:00Z\",\"messageId\":\"m1\",\"properties\":{\"k\":\"v\"}}"
        );
        assert_eq!(record.ack, Ack::Full);
        assert_eq!(record.expiry_ms, None);
        assert_eq!(record.enqueued_ms, 1_795_860_000_123);
        let again = outbox(&record.canonical).unwrap();
        assert_eq!(again.canonical, record.canonical);
    }

    #[test]
    fn bad_outbox_records_name_file_line_device_message_and_field() {
        let base = r#""messageId":"m1","deviceId":"d1","enqueuedTimeUtc":"2026-11-28T10:00:00Z""#;
        for (extra, error) in [
            (
                r#","ack":"sometimes""#,
                r#"outbox.jsonl:3: device "d1" message "m1" field "ack": unknown ack "sometimes", expected none, positive, negative or full"#,
            ),
            (
                r#","expiryTimeUtc":"tomorrow""#,
                r#"outbox.jsonl:3: device "d1" message "m1" field "expiryTimeUtc": unparseable timestamp "tomorrow""#,
            ),
            (
                r#","expiryTimeUtc":5"#,
                r#"outbox.jsonl:3: device "d1" message "m1" field "expiryTimeUtc": expected a string, found a number"#,
            ),
            (
                r#","deviceId":"d2""#,
                r#"outbox.jsonl:3: message "m1" field "deviceId": duplicate field"#,
            ),
        ] {
            assert_eq!(outbox(&format!("{{{base}{extra}}}")).unwrap_err(), error);
        }
        assert_eq!(
            outbox(
                r#"{"messageId":"m 1","deviceId":"d1","enqueuedTimeUtc":"2026-11-28T10:00:00Z"}"#
            )
            .unwrap_err(),
            r#"outbox.jsonl:3: device "d1" message "m 1" field "messageId": id contains the forbidden character ' '"#
        );
        assert_eq!(
            outbox(r#"{"messageId":"m1","deviceId":"d1"}"#).unwrap_err(),
            r#"outbox.jsonl:3: device "d1" message "m1" field "enqueuedTimeUtc": missing field"#
        );
        assert_eq!(
            outbox(r#"{"messageId":"m1","deviceId":"d1","enqueuedTimeUtc":"0001-01-01T00:00:00"}"#)
                .unwrap_err(),
            r#"outbox.jsonl:3: device "d1" message "m1" field "enqueuedTimeUtc": unparseable timestamp "0001-01-01T00:00:00""#
        );
        assert!(
            outbox(r#"{"messageId":"m1","deviceId":"d1""#)
                .unwrap_err()
                .starts_with("outbox.jsonl:3: invalid JSON")
        );
    }

    #[test]
    fn status_codes_are_names_in_any_case_or_the_sdk_numbers() {
        let record = |code: &str| {
            feedback(&format!(
                r#"{{"originalMessageId":"m1","deviceId":"d1","statusCode":{code},"description":"x","deviceGenerationId":"6371","enqueuedTimeUtc":"2026-11-28T10:00:00.1234567Z"}}"#
            ))
        };
        for (code, outcome) in [
            ("\"Success\"", Outcome::Success),
            ("\"expired\"", Outcome::Expired),
            ("\"DELIVERYCOUNTEXCEEDED\"", Outcome::DeliveryCountExceeded),
            ("\"Rejected\"", Outcome::Rejected),
            ("\"purged\"", Outcome::Purged),
            ("0", Outcome::Success),
            ("1", Outcome::Expired),
            ("2", Outcome::DeliveryCountExceeded),
            ("3", Outcome::Rejected),
            ("4", Outcome::Purged),
        ] {
            assert_eq!(record(code).unwrap().outcome, outcome, "{code}");
        }
        assert_eq!(
            STATUS_CODES.map(|(_, o)| outcome_name(o)),
            [
                "Success",
                "Expired",
                "DeliveryCountExceeded",
                "Rejected",
                "Purged"
            ]
        );
        let field = r#"feedback.json:7: device "d1" message "m1" field "statusCode": "#;
        for (code, error) in [
            ("\"Completed\"", "unknown statusCode \"Completed\""),
            ("5", "unknown statusCode \"5\""),
            ("-1", "unknown statusCode \"-1\""),
            ("1.0", "unknown statusCode \"1.0\""),
            (
                "99999999999999999999999999",
                "unknown statusCode (not shown)",
            ),
            ("true", "expected a string or an integer, found a boolean"),
            ("null", "expected a string or an integer, found null"),
        ] {
            let error_text = record(code).unwrap_err();
            assert!(
                error_text.starts_with(&format!("{field}{error}")),
                "{code}: {error_text}"
            );
        }
        assert_eq!(
            feedback(r#"{"originalMessageId":"m1","deviceId":"d1"}"#).unwrap_err(),
            format!("{field}missing field")
        );
    }

    #[test]
    fn a_line_break_inside_a_string_is_refused_so_a_record_stays_one_line() {
        let text = "{\"messageId\":\"m1\",\"deviceId\":\"d1\",\n\"enqueuedTimeUtc\":\"2026-11-28T10:00:00Z\",\"body\":\"a\nb\"}";
        let error = outbox(text).unwrap_err();
        assert!(error.starts_with("outbox.jsonl:4: invalid JSON"), "{error}");
    }
}
