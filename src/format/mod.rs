//! Reading and writing IoT Hub's files: bulk export / import lines, twin
//! lines and change-event lines; and the cloud-to-device outbox and
//! feedback records [`crate::c2d`] settles.
//!
//! Readers stream: one line at a time, each bounded in size, lines that do
//! not start with `{` (hub warnings) skipped and counted, every line parsed
//! with serde into typed fields and checked against IoT Hub's limits
//! ([`crate::validate`]). Bad input is a [`ReadError`] naming the file, the
//! line, the device, the module and the field, never quoting a key.
//! `read_*` and `collect_*` group a whole file of any format by device into
//! one type, [`DeviceRecord`]: the device and its modules as
//! [`DeviceSnapshot`](crate::doc::DeviceSnapshot), and beside each what the
//! file said of it (etags, generation, version, line, times). Writers produce
//! canonical lines: fixed field order, sorted keys, so equal states are
//! equal bytes.
//!
//! # Example
//!
//! ```
//! use failback::format::{parse_input, write_device, InputFile};
//!
//! let input = concat!(
//!     "Warning: hub export started\n",
//!     r#"{"id":"d1","eTag":"\"MQ==\"","status":"enabled","authentication":{"symmetricKey":{"primaryKey":"cHJpbWFyeQAAAAAAAAAAAA==","secondaryKey":"c2Vjb25kYXJ5AAAAAAAAAA=="},"x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"type":"sas"},"twinETag":"AAAAAAAAAAE=","tags":{"site":"lyon"},"properties":{"desired":{},"reported":{}}}"#,
//!     "\n",
//! );
//! let InputFile::Export(export) = parse_input("devices.txt", input.as_bytes(), None)? else {
//!     panic!("an export");
//! };
//! assert_eq!(export.skipped, 1);
//! let device = &export.devices["d1"];
//! assert_eq!(device.meta.etag.as_deref(), Some("MQ=="));
//!
//! let mut out = Vec::new();
//! write_device(&mut out, &device.snapshot, device.etags())?;
//! let InputFile::Export(again) = parse_input("merged.jsonl", &out, None)? else {
//!     panic!("an export");
//! };
//! assert_eq!(again.devices["d1"].snapshot, device.snapshot);
//! assert_eq!(again.devices["d1"].etags().etag, Some("MQ=="));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// A `ReadError` carries file, line, device, module and field by contract
// (the CLI prints them); it is returned once per failed read, on a cold
// path, so its size costs nothing worth boxing it for.
#![allow(clippy::result_large_err)]

mod c2d;
mod canon;
mod detect;
mod envelope;
mod error;
mod events;
mod export;
mod group;
mod identity;
mod import_mode;
mod jobs;
mod lines;
mod raw;
mod record;
mod twin;
mod twin_json;
mod write;

pub(crate) use c2d::{Ack, FeedbackRecord, OutboxRecord, outcome_name};
pub(crate) use detect::line_id;
pub use detect::{Format, InputFile, parse_input, read_input};
internals!(detect::UnknownFormatName);
internals!(detect::detect_format);
internals!(detect::sniff_format);
pub use envelope::Envelope;
internals!(envelope::UnknownEnvelope);
pub(crate) use error::safe_value;
pub use error::{ReadError, ReadErrorKind};
pub use events::{
    Event, EventReader, EventTwin, Op, SkipCounts, parse_event_line, parse_held_event_line,
};
pub(crate) use events::{event_bytes, twin_of_body, write_event_bytes};
internals!(events::{Parsed, Skipped});
internals!(events::{parse_event_record, parse_event_record_checked});
#[cfg(feature = "internals")]
pub use events::write_event_line;
pub use export::{read_export, write_device};
internals!(export::{ExportLine, ExportReader, collect_export});
internals!(export::{ExportLineRef, collect_identities, parse_export_line, write_export_line});
pub(crate) use export::{export_device, write_line};
pub(crate) use group::{DeviceLine, group};
internals!(identity::{IdentityLine, IdentityReader, parse_identity_line});
#[cfg(feature = "drill")]
pub(crate) use identity::write_identity_line;
pub use import_mode::ImportMode;
pub use record::{DeviceEtags, DeviceFile, DeviceRecord, RecordMeta};
internals!(jobs::read_jobs);
pub(crate) use jobs::read_jobs_counted;
internals!(lines::DEFAULT_MAX_LINE);
pub(crate) use lines::Lines;
internals!(lines::{JsonlReader, ParseLine});
pub(crate) use raw::format_time;
pub(crate) use twin::twin_device;
#[cfg(feature = "drill")]
pub(crate) use twin::write_twin_record;
pub use twin::{read_twins, write_twin_device};
internals!(twin::{TwinLine, TwinReader, collect_twins});
internals!(twin::parse_twin_line);
#[cfg(feature = "internals")]
pub use twin::write_twin_line;
