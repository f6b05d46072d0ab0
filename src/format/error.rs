//! The one error of every reader: what is wrong, in which file, on which
//! line, for which device, module and field.

use std::fmt;
use std::io;

use thiserror::Error;

use crate::validate::{ValidationError, ValidationErrorKind, shown_id};

/// Bad input: a line a reader could not take.
///
/// Displays on one line, as the CLI prints it before exiting with status 2:
///
/// ```text
/// devices.txt:12: device "d1" field "properties.desired.a": key contains the forbidden character '.'
/// ```
///
/// Neither `Display` nor `Debug` ever shows a key, a thumbprint or a twin
/// value: only ids, field paths, and short values of enumerated fields
/// (`status`, `importMode`, timestamps).
#[derive(Debug, Error)]
#[error("{}", self.display())]
pub struct ReadError {
    /// The file, as the caller named it.
    pub file: String,
    /// The line, counted from 1; 0 for an error about the whole file.
    pub line: u64,
    /// The device id, when the line told it.
    pub device: Option<String>,
    /// The module id, for a module line.
    pub module: Option<String>,
    /// The message id, for a cloud-to-device outbox or feedback record.
    pub message_id: Option<String>,
    /// The field, as a dotted path (`properties.desired.a`), when known.
    pub field: Option<String>,
    /// What is wrong.
    #[source]
    pub kind: ReadErrorKind,
}

/// What is wrong with a line: the [`ReadError::kind`] of every error a
/// reader returns, to match on.
///
/// # Example
///
/// ```
/// use failback::format::{DeviceRecord, ReadErrorKind};
///
/// let error = DeviceRecord::from_twin_json(r#"{"deviceId":"thermostat-7","version":"two"}"#).unwrap_err();
/// assert!(matches!(&error.kind, ReadErrorKind::WrongType { found, .. } if found == "a string"));
/// assert_eq!(error.field.as_deref(), Some("version"));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReadErrorKind {
    /// The file could not be opened or read.
    #[error("cannot read: {0}")]
    Io(#[source] io::Error),
    /// A line is longer than the reader's bound (1 MiB by default).
    #[error("line is longer than {limit} bytes")]
    LineTooLong {
        /// The bound, in bytes.
        limit: usize,
    },
    /// A line is not UTF-8.
    #[error("invalid UTF-8 after byte {valid_up_to}")]
    InvalidUtf8 {
        /// How many bytes of the line are valid.
        valid_up_to: usize,
    },
    /// A line is not JSON (truncated, for instance).
    #[error("invalid JSON at column {column}: {message}")]
    InvalidJson {
        /// The column of the error, counted from 1.
        column: usize,
        /// The parser's message, which never quotes the input.
        message: String,
    },
    /// A field has the wrong JSON type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the field must be (`a string`, `an object`).
        expected: String,
        /// What it is (`a number`, `null`).
        found: String,
    },
    /// A required field is absent.
    #[error("missing field")]
    MissingField,
    /// A field appears twice in one object.
    #[error("duplicate field")]
    DuplicateField,
    /// `importMode` is none of the nine modes.
    #[error("unknown importMode {}", shown(.value))]
    UnknownImportMode {
        /// The value read; `None` when it might be a secret.
        value: Option<String>,
    },
    /// `status` is neither `enabled` nor `disabled`.
    #[error("invalid status {}, expected \"enabled\" or \"disabled\"", shown(.value))]
    InvalidStatus {
        /// The value read; `None` when it might be a secret.
        value: Option<String>,
    },
    /// `authentication.type` is none of `sas`, `selfSigned`,
    /// `certificateAuthority`, `none`.
    #[error("invalid authentication type {}", shown(.value))]
    InvalidAuthType {
        /// The value read; `None` when it might be a secret.
        value: Option<String>,
    },
    /// A symmetric key is base64 text but not of a length the hub takes
    /// (16 to 64 bytes once decoded). The key itself is never shown.
    #[error("symmetric key of {length} bytes, the hub takes 16 to 64")]
    InvalidKeyLength {
        /// The decoded length in bytes; 0 when the text is no valid base64.
        length: usize,
    },
    /// A timestamp is not ISO-8601 / RFC 3339.
    #[error("unparseable timestamp {}", shown(.value))]
    InvalidTimestamp {
        /// The value read; `None` when it might be a secret.
        value: Option<String>,
    },
    /// A limit of IoT Hub is broken.
    #[error("{0}")]
    Invalid(#[source] ValidationErrorKind),
    /// A second line for a device.
    #[error("duplicate device line, first on line {first_line}")]
    DuplicateDevice {
        /// The line of the first one.
        first_line: u64,
    },
    /// A second line for a module.
    #[error("duplicate module line, first on line {first_line}")]
    DuplicateModule {
        /// The line of the first one.
        first_line: u64,
    },
    /// A module line whose device has no line in the file.
    #[error("module line without a line for its device")]
    OrphanModule,
    /// The first JSON line has neither `id` nor `deviceId`.
    #[error("cannot tell the format: the first JSON line has neither \"id\" nor \"deviceId\"")]
    UnknownFormat,
    /// A field says otherwise than another that must agree with it.
    #[error("differs from {other}")]
    Mismatch {
        /// The other field.
        other: String,
    },
    /// A replica state file of another format or version.
    #[error("not a replica state file: {reason}")]
    NotReplicaState {
        /// What is wrong with it.
        reason: String,
    },
    /// `opType` of a change event is none this crate knows.
    #[error("unknown opType {}", shown(.value))]
    UnknownOpType {
        /// The value read; `None` when it might be a secret.
        value: Option<String>,
    },
    /// The same event id arrived with another payload.
    #[error("event id {} arrived before with another payload", shown(.id))]
    ConflictingEvent {
        /// The event id (`correlation-id`); `None` when it might be a secret.
        id: Option<String>,
    },
    /// A base64 field (`Body` of routing to storage) is not base64.
    #[error("invalid base64")]
    InvalidBase64,
    /// An Avro file is corrupt, or its records are not messages.
    #[error("invalid Avro: {reason}")]
    InvalidAvro {
        /// What is wrong, in words of this crate's (never the data).
        reason: String,
    },
    /// A record is in another envelope than the file is read in.
    #[error("record is in the {found} envelope, the file is read as {expected}")]
    EnvelopeMismatch {
        /// The envelope the file is read in.
        expected: super::Envelope,
        /// The envelope of the record.
        found: super::Envelope,
    },
    /// A record that readers skip and count (telemetry, a digital-twin
    /// change), given where one change event is expected.
    #[error("not a change event: {0}, which readers skip")]
    NotChangeEvent(super::Skipped),
    /// The line is of the other format than the one being read.
    #[error("line is in {found} format, the file is read as {expected}")]
    FormatMismatch {
        /// The format the file is read as.
        expected: super::Format,
        /// The format the line is in.
        found: super::Format,
    },
    /// A file's lines differ from what an earlier pass over it found: it
    /// changed while it was read.
    #[error("the file changed while it was read")]
    ChangedWhileRead,
    /// A module twin where a device twin was expected.
    #[error("a module twin, where a device twin was expected")]
    NotDeviceTwin,
    /// A feedback `statusCode` is none of `Success`, `Expired`,
    /// `DeliveryCountExceeded`, `Rejected`, `Purged` (in any case) or the
    /// SDK enum's numbers 0-4.
    #[error(
        "unknown statusCode {}, expected Success, Expired, DeliveryCountExceeded, Rejected, Purged or 0-4",
        shown(.value)
    )]
    UnknownStatusCode {
        /// The value read; `None` when it might be a secret.
        value: Option<String>,
    },
    /// A cloud-to-device message's `ack` is none of `none`, `positive`,
    /// `negative`, `full` (in any case).
    #[error("unknown ack {}, expected none, positive, negative or full", shown(.value))]
    UnknownAck {
        /// The value read; `None` when it might be a secret.
        value: Option<String>,
    },
    /// A second outbox record for a message (the same `deviceId` and
    /// `messageId`) that differs from the first.
    #[error("differs from the record of this message at {first}")]
    ConflictingMessage {
        /// Where the first record is: `file:line`.
        first: String,
    },
    /// A replica refused the line (a seed conflicting with an earlier one,
    /// a delta of another hub).
    #[error(transparent)]
    Replica(crate::replica::ReplicaError),
    /// A job's `status` is none of IoT Hub's (`queued`, `enqueued`,
    /// `scheduled`, `running`, `completed`, `failed`, `cancelled`,
    /// `unknown`, in any case; `canceled` and `pending` too).
    #[error("unknown job status {}", shown(.value))]
    UnknownJobStatus {
        /// The value read; `None` when it might be a secret.
        value: Option<String>,
    },
    /// A job record no hub would list: its id is empty, too long or holds
    /// a control character, or it carries a field of the merge's output.
    #[error("invalid job: {reason}")]
    InvalidJob {
        /// What is wrong.
        reason: &'static str,
    },
    /// A file of an application-metadata directory that is no document:
    /// not `NAME.json` or `NAME.automerge` with `NAME` of 1 to 128 of
    /// `[A-Za-z0-9._-]` (not starting with `.`), both forms of one name, or
    /// too large.
    #[error("not an application document: {reason}")]
    NotAppDocument {
        /// What is wrong.
        reason: &'static str,
    },
    /// An application-metadata document that cannot be taken: not a JSON
    /// object, nested too deep, an automerge document holding what JSON
    /// cannot, or changes automerge refuses to merge.
    #[error(transparent)]
    AppMeta(crate::appmeta::AppMetaError),
}

/// The longest value of an enumerated field an error keeps.
const SHOWN_VALUE_MAX: usize = 64;

/// A value of an enumerated field (`status`, `importMode`, a timestamp)
/// to keep in an error, or `None` when it might be a key or thumbprint
/// put in the wrong field: long, or 16 characters or more of the base64
/// alphabet with a digit, `+`, `/` or `=` (hex thumbprints and base64 keys
/// always are; `Enabled`, `CreateOrUpdate` or a timestamp never are).
pub(crate) fn safe_value(value: &str) -> Option<String> {
    let chars = value.chars().count();
    let base64 = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | '_'));
    let marked = value
        .chars()
        .any(|c| c.is_ascii_digit() || matches!(c, '+' | '/' | '='));
    let secret_like = chars >= 16 && base64 && marked;
    (chars <= SHOWN_VALUE_MAX && !secret_like).then(|| value.to_owned())
}

fn shown(value: &Option<String>) -> String {
    match value {
        Some(value) => format!("{value:?}"),
        None => "(not shown)".to_owned(),
    }
}

impl ReadError {
    /// An error on `line` of `file`, about no device yet.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::{ReadError, ReadErrorKind};
    ///
    /// let error = ReadError::new("devices.txt", 12, ReadErrorKind::MissingField);
    /// assert_eq!(error.to_string(), "devices.txt:12: missing field");
    /// ```
    pub fn new(file: impl Into<String>, line: u64, kind: ReadErrorKind) -> Self {
        Self {
            file: file.into(),
            line,
            device: None,
            module: None,
            message_id: None,
            field: None,
            kind,
        }
    }

    /// An error about a whole file: it could not be opened or read.
    ///
    /// # Example
    ///
    /// ```
    /// use std::io;
    /// use failback::format::{ReadError, ReadErrorKind};
    ///
    /// let error = ReadError::io("devices.txt", io::Error::from(io::ErrorKind::NotFound));
    /// assert_eq!(error.line, 0);
    /// assert!(matches!(error.kind, ReadErrorKind::Io(_)));
    /// assert_eq!(error.to_string(), "devices.txt: cannot read: entity not found");
    /// ```
    pub fn io(file: impl Into<String>, error: io::Error) -> Self {
        Self::new(file, 0, ReadErrorKind::Io(error))
    }

    /// An error from validation, with the device, module and path it
    /// names.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::DeviceSnapshot;
    /// use failback::format::ReadError;
    /// use failback::validate::validate_snapshot;
    ///
    /// let snapshot = DeviceSnapshot { id: "thermostat 7".into(), ..Default::default() };
    /// let invalid = validate_snapshot(&snapshot).unwrap_err();
    /// let error = ReadError::invalid("devices.txt", 3, invalid);
    /// assert_eq!(error.device.as_deref(), Some("thermostat 7"));
    /// assert_eq!(error.to_string(), r#"devices.txt:3: device "thermostat 7" field "id": id contains the forbidden character ' '"#);
    /// ```
    pub fn invalid(file: impl Into<String>, line: u64, error: ValidationError) -> Self {
        Self {
            file: file.into(),
            line,
            device: Some(error.device),
            module: error.module,
            message_id: None,
            field: Some(error.path),
            kind: ReadErrorKind::Invalid(error.kind),
        }
    }

    /// Names the device (and the module) the error is about.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::{ReadError, ReadErrorKind};
    ///
    /// let error = ReadError::new("devices.txt", 4, ReadErrorKind::OrphanModule)
    ///     .with_device(Some("edge-gw"), Some("$edgeHub"));
    /// assert_eq!(error.module.as_deref(), Some("$edgeHub"));
    /// assert_eq!(
    ///     error.to_string(),
    ///     r#"devices.txt:4: device "edge-gw" module "$edgeHub": module line without a line for its device"#
    /// );
    /// ```
    #[must_use]
    pub fn with_device(mut self, device: Option<&str>, module: Option<&str>) -> Self {
        self.device = device.map(str::to_owned);
        self.module = module.map(str::to_owned);
        self
    }

    /// Names the cloud-to-device message the error is about.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::{ReadError, ReadErrorKind};
    ///
    /// let error = ReadError::new("outbox.jsonl", 2, ReadErrorKind::MissingField)
    ///     .with_device(Some("thermostat-7"), None)
    ///     .with_message_id(Some("m-42"));
    /// assert_eq!(error.to_string(), r#"outbox.jsonl:2: device "thermostat-7" message "m-42": missing field"#);
    /// ```
    #[must_use]
    pub fn with_message_id(mut self, message_id: Option<&str>) -> Self {
        self.message_id = message_id.map(str::to_owned);
        self
    }

    /// Names the field the error is about.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::{ReadError, ReadErrorKind};
    ///
    /// let error = ReadError::new("devices.txt", 7, ReadErrorKind::MissingField).with_field("status");
    /// assert_eq!(error.field.as_deref(), Some("status"));
    /// assert_eq!(error.to_string(), r#"devices.txt:7: field "status": missing field"#);
    /// ```
    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    fn display(&self) -> String {
        use fmt::Write;
        let mut out = self.file.clone();
        if self.line > 0 {
            let _ = write!(out, ":{}", self.line);
        }
        out.push(':');
        if let Some(device) = &self.device {
            let _ = write!(out, " device {}", shown_id(device));
        }
        if let Some(module) = &self.module {
            let _ = write!(out, " module {}", shown_id(module));
        }
        if let Some(message_id) = &self.message_id {
            let _ = write!(out, " message {}", shown_id(message_id));
        }
        if let Some(field) = &self.field {
            let _ = write!(out, " field {field:?}");
        }
        if self.device.is_some() || self.message_id.is_some() || self.field.is_some() {
            out.push(':');
        }
        let _ = write!(out, " {}", self.kind);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_on_one_line_like_the_cli_prints_it() {
        let err = ReadError::new(
            "devices.txt",
            12,
            ReadErrorKind::Invalid(ValidationErrorKind::KeyChar { ch: '.' }),
        )
        .with_device(Some("d1"), None)
        .with_field("properties.desired.a");
        assert_eq!(
            err.to_string(),
            r#"devices.txt:12: device "d1" field "properties.desired.a": key contains the forbidden character '.'"#
        );
        let err = ReadError::new("t.jsonl", 3, ReadErrorKind::LineTooLong { limit: 10 });
        assert_eq!(err.to_string(), "t.jsonl:3: line is longer than 10 bytes");
        let err = ReadError::io("x", io::Error::other("gone"));
        assert_eq!(err.to_string(), "x: cannot read: gone");
    }

    #[test]
    fn long_values_and_ids_are_not_shown_whole() {
        for secret in [
            "UWaSl1f+BjX8a+7iW60sSZvbhjYbbG+pLDK1EeDq56w=",
            "6FDAC291C47F01F7C559651F1E2EDE017582085A",
            "c2VjcmV0LWtleS0xAAAAAA==",
        ] {
            let kind = ReadErrorKind::InvalidStatus {
                value: safe_value(secret),
            };
            assert_eq!(
                kind.to_string(),
                r#"invalid status (not shown), expected "enabled" or "disabled""#
            );
            assert!(!format!("{kind:?}").contains(secret));
        }
        for shown in [
            "Enabled",
            "createOrUpdateIfMatchEtag",
            "2024-02-30T00:00:00.1234567Z",
        ] {
            assert_eq!(safe_value(shown).as_deref(), Some(shown));
        }
        let err = ReadError::new("f", 1, ReadErrorKind::MissingField)
            .with_device(Some(&"a\n".repeat(100)), None);
        let shown = err.to_string();
        assert!(!shown.contains('\n'));
        assert!(shown.contains("..."));
    }
}
