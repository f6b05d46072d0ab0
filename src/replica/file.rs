//! Replica state files: a versioned, canonical serialization.
//!
//! # Format (version 1)
//!
//! One JSON document, written canonically (fixed key order, devices sorted
//! by id, each device's events sorted by dot, every JSON object inside an
//! event or seed line with sorted keys), so equal replicas are equal
//! bytes. One device a line:
//!
//! ```text
//! {"format":"failback-replica","version":1,"hub":"primary","devices":[
//! {"id":"d1","seed":{"format":"export","lines":[{...export line...}]},"events":[{"dot":"id:c1","event":{...event line...}},...],"parked":["id:c9"],"version":4,"modules":{"m1":2}},
//! {"id":"d2",...}
//! ]}
//! ```
//!
//! - `hub`: the replica's hub name;
//! - per device, `seed` (optional): its starting snapshot, as the export
//!   or twin lines it came from (an export's keys in clear, as exports
//!   hold them);
//! - `events`: the set of its change events, each with its **dot**
//!   (`id:` + `correlation-id`, or `sha256:` + 32 hex digits of the
//!   event's canonical text) and the event as a canonical event line; a
//!   reader recomputes each dot and refuses a file whose stored dot
//!   differs (a corrupted or hand-edited file);
//! - derived, written for operators and ignored when read: `parked` (the
//!   dots still waiting for a predecessor), and the device's **version
//!   vector**: `version`, its twin's version, and `modules`, each live
//!   module twin's version (absent for a device that does not exist).
//!
//! # Format (version 3): folds
//!
//! A replica [compacted](super::Replica::compact) is written as version
//! 3: the same, and per device that has them, `folded` (after `events`):
//! the twin changes of each entity incarnation folded into a tree, with
//! the versions folded and the positions in time of the first and last
//! change folded (the shape is in `wire.rs`). A reader checks every fold:
//! its shape, its stamps and that each write lies within its parent's,
//! that its base is a create of the device it holds (or its seed), and
//! that the device's creates and deletes still place its first and last
//! change in that incarnation. Version 1 is written whenever nothing is
//! folded, so a replica never compacted keeps its bytes.
//!
//! Version 2, the folds as this crate wrote them before, is still read
//! (each position with its change's dot, and a node's `meta` always
//! written; see `wire.rs`), and written again as version 3.
//!
//! A reader takes only `format` `failback-replica` and `version` 1, 2 or
//! 3.
//!
//! # Compressed state files
//!
//! [`write_state_gzip`] ([`Replica::write_gzip`]) writes the same bytes
//! through gzip, as one member without a name or time, so equal replicas
//! are still equal bytes; `failback` writes a state file so whenever its
//! path ends in `.gz`. [`read_state`] reads either, telling gzip by its
//! magic bytes (`1f 8b`) whatever the name; an error's line is a line of
//! the decompressed text, which `zcat STATE.json.gz` shows.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Replica, Seed};
use crate::clock::ReplicaId;
use crate::format::{
    ExportReader, Format, ReadError, ReadErrorKind, TwinReader, collect_export, collect_twins,
    parse_held_event_line,
};

/// The `format` of a state file.
pub(crate) const FORMAT_NAME: &str = "failback-replica";
/// The `version` of the state file format this crate writes for a
/// replica without folds; it reads it and [`FOLDED_VERSION`].
pub(crate) const FORMAT_VERSION: u64 = 1;
/// The `version` written for a replica with folds (see
/// [`Replica::compact`]).
pub(crate) const FOLDED_VERSION: u64 = 3;
/// The `version` folds were written as before [`FOLDED_VERSION`]: still
/// read.
pub(crate) const FOLDED_VERSION_2: u64 = 2;
/// The first two bytes of a gzip member.
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
/// The gzip level [`write_state_gzip`] writes at: zlib's default (a
/// compacted state file of 2.3 MB: 103 KB at level 6, 96 KB at 9, 123 KB
/// at 1, by `gzip`). Public under `internals` for the bench that compares
/// a compressed state file with an export compressed alike.
pub const STATE_GZIP_LEVEL: u32 = 6;

impl Replica {
    /// Reads a state file written by [`Replica::write`] or
    /// [`Replica::write_gzip`] (gzip told by its magic bytes), checking
    /// every event and seed line as the event, export and twin readers
    /// do, and every fold of a compacted replica.
    ///
    /// # Errors
    ///
    /// A [`ReadError`] naming `file` and the line: gzip cut short or
    /// holding something else, not JSON, not a state file of version 1,
    /// 2 or 3, an invalid hub name, a bad event or seed
    /// line, an event under another device's id, an event whose stored dot
    /// is not its own, two events with one id and different payloads, a
    /// corrupted fold.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::replica::Replica;
    /// use failback::ReplicaId;
    ///
    /// let replica = Replica::new(ReplicaId::new("primary")?);
    /// let mut out = Vec::new();
    /// replica.write(&mut out)?;
    /// assert_eq!(Replica::read(out.as_slice(), "state.json")?, replica);
    ///
    /// let v4 = br#"{"format":"failback-replica","version":4,"hub":"p","devices":[]}"#;
    /// let err = Replica::read(&v4[..], "s.json").unwrap_err();
    /// assert_eq!(err.to_string(), "s.json:1: field \"version\": not a replica state file: version 4, expected 1, 2 or 3");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read<R: Read>(reader: R, file: &str) -> Result<Self, ReadError> {
        read_state(reader, file)
    }

    /// Writes the replica as its state file: one canonical JSON document,
    /// one device a line, the same bytes for the same replica however it
    /// was fed (see [`Replica::read`] for an example).
    ///
    /// # Errors
    ///
    /// Any error of `w`.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::parse_event_line;
    /// use failback::replica::Replica;
    /// use failback::ReplicaId;
    ///
    /// let create = r#"{"properties":{"deviceId":"thermostat-7","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"},"systemProperties":{"correlation-id":"c1"},"body":{"version":1,"status":"enabled"}}"#;
    /// let mut replica = Replica::new(ReplicaId::new("primary")?);
    /// replica.ingest(parse_event_line("events.jsonl", 1, create)?)?;
    /// let mut state = Vec::new();
    /// replica.write(&mut state)?;
    /// let text = String::from_utf8(state)?;
    /// assert!(text.contains(r#""id":"thermostat-7""#));
    /// assert_eq!(text.lines().count(), 3); // header, one device a line, footer
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write<W: Write>(&self, w: &mut W) -> io::Result<()> {
        write_state(w, self)
    }

    /// Writes the replica's state file gzip-compressed: the bytes of
    /// [`Replica::write`] through gzip, the same bytes for the same
    /// replica. [`Replica::read`] reads it back.
    ///
    /// # Errors
    ///
    /// Any error of `w`.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::replica::Replica;
    /// use failback::ReplicaId;
    ///
    /// let replica = Replica::new(ReplicaId::new("primary")?);
    /// let mut gz = Vec::new();
    /// replica.write_gzip(&mut gz)?;
    /// assert_eq!(&gz[..2], [0x1f, 0x8b]);
    /// assert_eq!(Replica::read(gz.as_slice(), "state.json.gz")?, replica);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_gzip<W: Write>(&self, w: &mut W) -> io::Result<()> {
        write_state_gzip(w, self)
    }
}

/// Writes `replica` as a gzip-compressed state file (see the module's
/// docs): [`write_state`]'s bytes through gzip; [`Replica::write_gzip`].
///
/// # Errors
///
/// Any error of `w`.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::replica::{read_state, write_state_gzip, Replica};
/// use failback::ReplicaId;
///
/// let replica = Replica::new(ReplicaId::new("primary")?);
/// let mut gz = Vec::new();
/// write_state_gzip(&mut gz, &replica)?;
/// let mut again = Vec::new();
/// write_state_gzip(&mut again, &replica)?;
/// assert_eq!(gz, again, "no name or time in the header");
/// assert_eq!(read_state(gz.as_slice(), "state.json.gz")?, replica);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_state_gzip<W: Write>(w: &mut W, replica: &Replica) -> io::Result<()> {
    // Buffered ahead of the encoder: the state is written in small pieces.
    let mut out = BufWriter::with_capacity(
        1 << 16,
        GzEncoder::new(w, Compression::new(STATE_GZIP_LEVEL)),
    );
    write_state(&mut out, replica)?;
    out.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .finish()?;
    Ok(())
}

/// The text of a state file, plain or gzip-compressed, and whether it
/// was compressed.
fn state_text<R: Read>(mut reader: R) -> io::Result<(String, bool)> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes)?;
    if bytes.starts_with(GZIP_MAGIC) {
        let mut text = String::new();
        MultiGzDecoder::new(bytes.as_slice())
            .read_to_string(&mut text)
            .map_err(|e| io::Error::new(e.kind(), format!("gzip: {e}")))?;
        return Ok((text, true));
    }
    String::from_utf8(bytes)
        .map(|text| (text, false))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 (nor gzip)"))
}

/// Writes `replica` as a state file (see [`read_state`]); [`Replica::write`].
///
/// # Errors
///
/// Any error of `w`.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::replica::{read_state, write_state, Replica};
/// use failback::ReplicaId;
///
/// let replica = Replica::new(ReplicaId::new("primary")?);
/// let mut out = Vec::new();
/// write_state(&mut out, &replica)?;
/// assert_eq!(
///     String::from_utf8(out.clone())?,
///     "{\"format\":\"failback-replica\",\"version\":1,\"hub\":\"primary\",\"devices\":[\n]}\n"
/// );
/// assert_eq!(read_state(out.as_slice(), "state.json")?, replica);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_state<W: Write>(w: &mut W, replica: &Replica) -> io::Result<()> {
    let version = if replica.folded.is_empty() {
        FORMAT_VERSION
    } else {
        FOLDED_VERSION
    };
    write!(
        w,
        "{{\"format\":{},\"version\":{version},\"hub\":{},\"devices\":[",
        serde_json::to_string(FORMAT_NAME)?,
        serde_json::to_string(replica.hub.as_str())?
    )?;
    let mut first = true;
    // One event's line at a time, in one buffer.
    let mut line = Vec::new();
    for id in replica.device_ids() {
        w.write_all(if first { b"\n" } else { b",\n" })?;
        first = false;
        write!(w, "{{\"id\":{}", serde_json::to_string(id)?)?;
        if let Some(seed) = replica.seeds.get(id) {
            write!(
                w,
                ",\"seed\":{{\"format\":\"{}\",\"lines\":[",
                seed.format.as_str()
            )?;
            for (i, line) in seed.lines.lines().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                w.write_all(line.as_bytes())?;
            }
            w.write_all(b"]}")?;
        }
        w.write_all(b",\"events\":[")?;
        // Looked up once, for the lines and the versions both.
        let events = replica.device_events(id);
        for (i, (dot, event)) in events.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            w.write_all(b"{\"dot\":")?;
            serde_json::to_writer(&mut *w, dot)?;
            line.clear();
            line.extend_from_slice(b",\"event\":");
            crate::format::write_event_bytes(&mut line, event);
            line.push(b'}');
            w.write_all(&line)?;
        }
        w.write_all(b"]")?;
        if let Some(folds) = replica.folded.get(id) {
            w.write_all(b",\"folded\":[")?;
            for (i, (key, fold)) in folds.iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                serde_json::to_writer(&mut *w, &super::wire::write(key, fold))?;
            }
            w.write_all(b"]")?;
        }
        // Versions and parked events only: the twins are not written.
        let replayed = super::replay::versions_of(replica, id, events);
        let parked: Vec<&str> = replayed.parked.iter().map(|g| g.dot.as_str()).collect();
        write!(w, ",\"parked\":{}", serde_json::to_string(&parked)?)?;
        if let Some(device) = &replayed.device {
            let modules: BTreeMap<&str, u64> = device
                .modules
                .iter()
                .map(|(m, meta)| (m.as_str(), meta.version.unwrap_or(0)))
                .collect();
            write!(
                w,
                ",\"version\":{},\"modules\":{}",
                device.meta.version.unwrap_or(0),
                serde_json::to_string(&modules)?
            )?;
        }
        w.write_all(b"}")?;
    }
    w.write_all(b"\n]}\n")
}

#[derive(Deserialize)]
struct RawState<'a> {
    format: String,
    version: u64,
    hub: String,
    #[serde(borrow)]
    devices: Vec<RawDevice<'a>>,
}

#[derive(Deserialize)]
struct RawDevice<'a> {
    id: String,
    #[serde(borrow, default)]
    seed: Option<RawSeed<'a>>,
    #[serde(borrow, default)]
    events: Vec<RawEvent<'a>>,
    #[serde(borrow, default)]
    folded: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawSeed<'a> {
    format: String,
    #[serde(borrow)]
    lines: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    /// The dot written beside the event: checked against the event's own.
    #[serde(default)]
    dot: Option<String>,
    #[serde(borrow)]
    event: &'a RawValue,
}

/// Line numbers of positions in a text, for positions met in order.
struct LineCounter<'t> {
    text: &'t str,
    offset: usize,
    line: u64,
}

impl LineCounter<'_> {
    /// The line `part` (a slice of the text, after the last one asked
    /// about) starts on.
    fn line_of(&mut self, part: &str) -> u64 {
        let at = (part.as_ptr() as usize).saturating_sub(self.text.as_ptr() as usize);
        if at >= self.offset {
            let between = self.text.get(self.offset..at).unwrap_or_default();
            self.line += between.bytes().filter(|b| *b == b'\n').count() as u64;
            self.offset = at;
        }
        self.line
    }
}

fn json_error(file: &str, error: &serde_json::Error) -> ReadError {
    let message = match error.classify() {
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Eof => "EOF while parsing",
        serde_json::error::Category::Data => {
            "not a replica state: a field is missing or has the wrong type"
        }
        serde_json::error::Category::Io => "cannot read",
    };
    ReadError::new(
        file,
        error.line() as u64,
        ReadErrorKind::InvalidJson {
            column: error.column(),
            message: message.to_owned(),
        },
    )
}

/// Reads a state file written by [`write_state`] or [`write_state_gzip`]
/// ([`Replica::read`]), checking every event and seed line as the event,
/// export and twin readers do.
///
/// # Errors
///
/// A [`ReadError`] naming `file` and the line: gzip cut short or holding
/// something else, not JSON, not a state
/// file of version 1, 2 or 3, an invalid hub name, a bad event or seed line, an
/// event under another device's id, an event whose stored dot is not its
/// own, two events with one id and different payloads.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::replica::read_state;
///
/// let err = read_state(&br#"{"format":"failback-replica","version":4,"hub":"p","devices":[]}"#[..], "s.json").unwrap_err();
/// assert_eq!(err.to_string(), "s.json:1: field \"version\": not a replica state file: version 4, expected 1, 2 or 3");
/// ```
pub fn read_state<R: Read>(reader: R, file: &str) -> Result<Replica, ReadError> {
    let (text, gzipped) = state_text(reader).map_err(|e| ReadError::io(file, e))?;
    if gzipped && !opens_as_state(text.as_bytes()) {
        return Err(ReadError::new(
            file,
            1,
            ReadErrorKind::NotReplicaState {
                reason: "gzip holding something else: only state files are read compressed"
                    .to_owned(),
            },
        ));
    }
    let raw: RawState<'_> = serde_json::from_str(&text).map_err(|e| json_error(file, &e))?;
    let not_state = |field: &str, reason: String| {
        ReadError::new(file, 1, ReadErrorKind::NotReplicaState { reason }).with_field(field)
    };
    if raw.format != FORMAT_NAME {
        return Err(not_state(
            "format",
            format!("format {:?}, expected {FORMAT_NAME:?}", raw.format),
        ));
    }
    if ![FORMAT_VERSION, FOLDED_VERSION_2, FOLDED_VERSION].contains(&raw.version) {
        return Err(not_state(
            "version",
            format!(
                "version {}, expected {FORMAT_VERSION}, {FOLDED_VERSION_2} or {FOLDED_VERSION}",
                raw.version
            ),
        ));
    }
    let hub = ReplicaId::new(&raw.hub).map_err(|e| not_state("hub", e.to_string()))?;
    let mut replica = Replica::new(hub);
    let mut lines = LineCounter {
        text: &text,
        offset: 0,
        line: 1,
    };
    for device in &raw.devices {
        if let Some(seed) = &device.seed {
            let first = seed.lines.first().map_or(1, |l| lines.line_of(l.get()));
            let joined: String = seed
                .lines
                .iter()
                .map(|l| format!("{}\n", l.get()))
                .collect();
            let at_line = |mut e: ReadError| {
                e.file = file.to_owned();
                e.line = first;
                e
            };
            let seeded = match seed.format.as_str() {
                "export" => collect_export(ExportReader::new(joined.as_bytes(), file))
                    .map_err(at_line)?
                    .devices
                    .into_values()
                    .map(|d| Seed::from_export(&d))
                    .collect::<Vec<_>>(),
                "twin" => collect_twins(TwinReader::new(joined.as_bytes(), file))
                    .map_err(at_line)?
                    .devices
                    .into_values()
                    .map(|d| Seed::from_twin(&d))
                    .collect(),
                other => {
                    return Err(ReadError::new(
                        file,
                        first,
                        ReadErrorKind::NotReplicaState {
                            reason: format!(
                                "seed format {:?}, expected {} or {}",
                                crate::format::safe_value(other).unwrap_or_default(),
                                Format::Export,
                                Format::Twin
                            ),
                        },
                    )
                    .with_device(Some(&device.id), None)
                    .with_field("seed.format"));
                }
            };
            let mismatch = || {
                ReadError::new(
                    file,
                    first,
                    ReadErrorKind::Mismatch {
                        other: "id".to_owned(),
                    },
                )
                .with_device(Some(&device.id), None)
                .with_field("seed.lines")
            };
            let [seed] = <[Seed; 1]>::try_from(seeded).map_err(|_| mismatch())?;
            if seed.record.snapshot.id != device.id {
                return Err(mismatch());
            }
            replica
                .seed(seed)
                .map_err(|e| e.at_line(file, first).with_device(Some(&device.id), None))?;
        }
        for raw_event in &device.events {
            let text = raw_event.event.get();
            let line = lines.line_of(text);
            let event = parse_held_event_line(file, line, text)?;
            if event.device_id != device.id {
                return Err(ReadError::new(
                    file,
                    line,
                    ReadErrorKind::Mismatch {
                        other: "id".to_owned(),
                    },
                )
                .with_device(Some(&event.device_id), None)
                .with_field("properties.deviceId"));
            }
            if let (Some(stored), Some(own)) = (&raw_event.dot, super::event_dot(&event)) {
                if *stored != own {
                    return Err(ReadError::new(
                        file,
                        line,
                        ReadErrorKind::NotReplicaState {
                            reason: format!("dot {stored:?} is not its event's dot {own:?}"),
                        },
                    )
                    .with_device(Some(&device.id), None)
                    .with_field("dot"));
                }
            }
            replica.ingest(event).map_err(|e| e.at_line(file, line))?;
        }
    }
    // Folds last: they are checked against every event and seed.
    for device in &raw.devices {
        for fold in &device.folded {
            let line = lines.line_of(fold.get());
            let bad = |reason: String| {
                ReadError::new(file, line, ReadErrorKind::NotReplicaState { reason })
                    .with_device(Some(&device.id), None)
                    .with_field("folded")
            };
            if raw.version == FORMAT_VERSION {
                return Err(bad(format!("folds in a file of version {}", raw.version)));
            }
            let value: serde_json::Value =
                serde_json::from_str(fold.get()).map_err(|e| json_error(file, &e))?;
            let (key, fold) = super::wire::read(&value, raw.version).map_err(bad)?;
            replica
                .add_fold(&device.id, key, fold)
                .map_err(|e| bad(e.to_owned()))?;
        }
    }
    Ok(replica)
}

/// Whether the file at `path` is a replica state file: it starts with
/// `{"format":"failback-replica"`, as [`write_state`] writes it, or is
/// gzip (the only compressed input failback reads: [`read_state`] then
/// names what is wrong with one cut short or holding something else).
pub(crate) fn is_state_file(path: &Path) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < head.len() {
        match file.read(head.get_mut(got..).unwrap_or_default()) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let head = head.get(..got).unwrap_or_default();
    head.starts_with(GZIP_MAGIC) || opens_as_state(head)
}

/// Whether `text` opens as [`write_state`] writes it,
/// `{"format":"failback-replica"`, after any blanks.
fn opens_as_state(text: &[u8]) -> bool {
    let expected = format!("{{\"format\":\"{FORMAT_NAME}\"");
    text.trim_ascii_start().starts_with(expected.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::parse_event_line;
    use std::path::PathBuf;

    /// A replica of a device created, changed five times and compacted
    /// half way (folds and events both), and a second device's create.
    fn replica() -> Replica {
        let mut replica = Replica::new(ReplicaId::new("primary").expect("valid"));
        let ingest = |replica: &mut Replica, line: String| {
            let event = parse_event_line("e.jsonl", 1, &line).expect("a valid event");
            replica.ingest(event).expect("no conflict");
        };
        let create = |device: &str, id: &str| {
            format!(
                r#"{{"properties":{{"deviceId":"{device}","opType":"createDeviceIdentity","operationTimestamp":"2024-03-01T12:00:00Z"}},"systemProperties":{{"correlation-id":"{id}"}},"body":{{"version":1,"status":"enabled"}}}}"#
            )
        };
        ingest(&mut replica, create("d1", "c1"));
        ingest(&mut replica, create("d2", "c2"));
        for version in 2..7 {
            ingest(
                &mut replica,
                format!(
                    r#"{{"properties":{{"deviceId":"d1","opType":"updateTwin","operationTimestamp":"2024-03-01T12:00:0{version}Z"}},"systemProperties":{{"correlation-id":"u{version}"}},"body":{{"version":{version},"properties":{{"desired":{{"fan":{version}}}}}}}}}"#
                ),
            );
            if version == 4 {
                replica.compact();
            }
        }
        replica
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut text = Vec::new();
        MultiGzDecoder::new(bytes)
            .read_to_end(&mut text)
            .expect("gzip");
        text
    }

    #[test]
    fn a_compressed_state_file_is_the_plain_one_through_gzip_and_reads_back() {
        let replica = replica();
        assert!(replica.folded_count() > 0 && replica.event_count() > 2);
        let mut plain = Vec::new();
        write_state(&mut plain, &replica).expect("to a Vec");
        let (mut gz, mut again) = (Vec::new(), Vec::new());
        replica.write_gzip(&mut gz).expect("to a Vec");
        write_state_gzip(&mut again, &replica).expect("to a Vec");
        assert!(gz.starts_with(GZIP_MAGIC));
        assert_eq!(gz, again, "the same bytes each time");
        assert!(gz.len() < plain.len());
        assert_eq!(gunzip(&gz), plain);
        assert_eq!(read_state(gz.as_slice(), "s.json.gz").ok(), Some(replica));
    }

    fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("failback-state-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).expect("scratch file");
        path
    }

    #[test]
    fn a_state_file_is_told_plain_or_gzip_and_nothing_else_is() {
        let replica = replica();
        let (mut plain, mut gz) = (Vec::new(), Vec::new());
        write_state(&mut plain, &replica).expect("to a Vec");
        write_state_gzip(&mut gz, &replica).expect("to a Vec");
        let mut spaced = b"\n  ".to_vec();
        spaced.extend_from_slice(&plain);
        let cases: [(&str, &[u8], bool); 7] = [
            ("plain", &plain, true),
            ("spaced", &spaced, true),
            ("gz", &gz, true),
            // Gzip cut short is still taken: reading it names the error.
            ("cut", gz.get(..12).unwrap_or_default(), true),
            ("export", br#"{"id":"d1","status":"enabled"}"#, false),
            ("other", br#"{"format":"something-else"}"#, false),
            ("empty", b"", false),
        ];
        for (name, bytes, expected) in cases {
            let path = scratch(name, bytes);
            assert_eq!(is_state_file(&path), expected, "{name}");
            std::fs::remove_file(&path).expect("scratch file");
        }
        assert!(!is_state_file(Path::new("/nonexistent/failback-state")));
    }

    #[test]
    fn gzip_cut_short_or_holding_another_file_is_refused_by_name() {
        let mut gz = Vec::new();
        write_state_gzip(&mut gz, &replica()).expect("to a Vec");
        let cut = gz.get(..gz.len() - 9).unwrap_or_default();
        let err = read_state(cut, "s.json.gz").expect_err("cut short");
        let shown = err.to_string();
        assert!(
            shown.starts_with("s.json.gz: cannot read: gzip: "),
            "{shown}"
        );

        let mut other = GzEncoder::new(Vec::new(), Compression::fast());
        other
            .write_all(b"{\"id\":\"d1\",\"status\":\"enabled\"}\n")
            .expect("to a Vec");
        let other = other.finish().expect("to a Vec");
        let err = read_state(other.as_slice(), "export.jsonl.gz").expect_err("not a state");
        assert_eq!(
            err.to_string(),
            "export.jsonl.gz:1: not a replica state file: gzip holding something else: only state files are read compressed"
        );
        // Not gzip, not UTF-8.
        let err = read_state(&[0xff, 0xfe, 0x00][..], "s.json").expect_err("binary");
        assert_eq!(err.to_string(), "s.json: cannot read: not UTF-8 (nor gzip)");
    }
}
