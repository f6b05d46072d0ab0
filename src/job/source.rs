//! One input file, device by device in id order: streamed when the file is
//! sorted by id, or re-read by offset from an index when it is not.
//!
//! A source yields each device's lines as text ([`RawDevice`]), read but
//! not yet parsed: only the id is read from each line. Parsing waits for
//! the merge, which parses lines that are byte for byte another input's
//! of the same format once (most devices are the same in the base and
//! every hub).
//!
//! In a stream, a device's lines are the run of consecutive lines with its
//! id: its own line and its modules' lines, in any order among themselves
//! (hubs write a module line before its device's at times). The stream
//! checks that each run's id is greater than the last one's, byte by byte
//! as `str` orders; the first that is not stops it with
//! [`SourceError::Unsorted`], and the caller falls back to the index.

// A `ReadError` carries file, line, device, module and field by contract;
// it is returned once per failed read, on a cold path, as in `format`.
// `SourceError`, which crosses threads with every device, boxes it.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use super::inputs::Newest;
use crate::doc::DeviceSnapshot;
use crate::format::{
    DeviceLine, DeviceRecord, ExportLine, ExportReader, Format, IdentityLine, IdentityReader,
    Lines, ReadError, ReadErrorKind, TwinLine, TwinReader, export_device, group, line_id,
    parse_export_line, parse_identity_line, parse_twin_line, sniff_format, twin_device,
};
use crate::reconcile::{HubInput, fill_unknowns};

/// One device of one input, with what its plans are guarded by.
#[derive(Clone, Debug)]
pub(super) struct DeviceInput {
    /// The device, its modules, their etags and times, as the input gave
    /// them.
    pub record: DeviceRecord,
    /// Whether the input carries twins: an identity file does not, and its
    /// empty sections mean "not known", not "empty".
    pub knows_twin: bool,
}

impl DeviceInput {
    /// The device with what its input cannot know taken from the base:
    /// the keys an input without keys (a twin file, an export without
    /// keys) says nothing about, the twin an identity file says nothing
    /// about. An unknown is not a change: the hub is taken to hold what the
    /// base held. `None` when nothing is unknown, or the base does not say.
    pub(super) fn filled_from(&self, base: &DeviceSnapshot) -> Option<DeviceInput> {
        let snapshot = fill_unknowns(&self.record.snapshot, base, |_| !self.knows_twin)?;
        // Everything but the snapshot, which is replaced: cloning the
        // record whole would copy the old snapshot only to drop it.
        let DeviceRecord {
            meta,
            modules,
            times,
            ..
        } = &self.record;
        Some(DeviceInput {
            record: DeviceRecord {
                snapshot,
                meta: meta.clone(),
                modules: modules.clone(),
                times: times.clone(),
            },
            knows_twin: self.knows_twin,
        })
    }

    /// The device as its hub's plan is made from it.
    pub(super) fn plan_input(&self) -> HubInput<'_> {
        HubInput {
            snapshot: &self.record.snapshot,
            etag: self.record.meta.etag.as_deref(),
            twin_etag: self.record.meta.twin_etag.as_deref(),
            modules: &self.record.modules,
            knows_twin: self.knows_twin,
        }
    }
}

/// Why a source stopped before its end.
#[derive(Debug)]
pub(super) enum SourceError {
    /// A device came after one with a greater id: the file is not sorted.
    Unsorted,
    /// A bad line, or the file could not be read.
    Read(Box<ReadError>),
}

impl From<ReadError> for SourceError {
    fn from(error: ReadError) -> Self {
        SourceError::Read(Box::new(error))
    }
}

type FileReader = BufReader<File>;

/// The buffer of a reader: large, since files are read from end to end.
const READ_BUFFER: usize = 1 << 18;

/// Opens `path` and tells its format: `forced`, or that of its first JSON
/// line (a file without one reads as an empty export).
fn open(path: &Path, forced: Option<Format>) -> Result<(String, Format), ReadError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| ReadError::io(name.clone(), e))?;
    let format = sniff_format(BufReader::new(file), &name, forced)?.unwrap_or(Format::Export);
    Ok((name, format))
}

fn reopen(path: &Path, name: &str) -> Result<FileReader, ReadError> {
    File::open(path)
        .map(|f| BufReader::with_capacity(READ_BUFFER, f))
        .map_err(|e| ReadError::io(name, e))
}

/// One device's lines in one input, read but not parsed.
#[derive(Clone, Debug, Default)]
pub(super) struct RawDevice {
    id: String,
    /// The JSON text of the records, one after another.
    text: String,
    /// Each record's line in its file and where its text ends in `text`.
    /// (A pretty-printed record holds line breaks of its own.)
    lines: Vec<(u64, usize)>,
    /// A device of a replica state: derived already, no lines.
    derived: Option<Arc<DeviceInput>>,
}

impl RawDevice {
    fn push(&mut self, line: u64, text: &str) {
        self.text.push_str(text);
        self.lines.push((line, self.text.len()));
    }

    /// A device of one line so far, whose text is `text` as it is.
    fn starting(id: String, line: u64, text: String) -> Self {
        Self {
            id,
            lines: vec![(line, text.len())],
            text,
            derived: None,
        }
    }

    /// The device id.
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// Whether the two have the same lines, byte for byte, in the same
    /// order: read in one format, they then parse to the same device with
    /// the same etags. (In two formats they need not: a twin's `etag` is
    /// not an identity's.)
    pub(super) fn same_lines(&self, other: &RawDevice) -> bool {
        self.text == other.text
            && self
                .lines
                .iter()
                .map(|l| l.1)
                .eq(other.lines.iter().map(|l| l.1))
    }

    /// Each record's text with its line number.
    fn records(&self) -> impl Iterator<Item = (&str, u64)> {
        let mut start = 0;
        self.lines.iter().map(move |&(line, end)| {
            let text = self.text.get(start..end).unwrap_or_default();
            start = end;
            (text, line)
        })
    }

    /// Parses and checks the lines, and groups them as a whole file's
    /// would be.
    ///
    /// # Errors
    ///
    /// A bad line; two lines for the device or a module; a module without
    /// its device's line.
    pub(super) fn parse(&self, file: &str, format: Format) -> Result<DeviceInput, ReadError> {
        if let Some(derived) = &self.derived {
            return Ok(DeviceInput::clone(derived));
        }
        let texts = self.records();
        let device = match format {
            Format::Export => {
                let mut lines = Vec::with_capacity(self.lines.len());
                for (text, line) in texts {
                    lines.push(parse_export_line(file, line, text)?);
                }
                export_input(file, lines)?
            }
            Format::Twin => {
                let mut lines = Vec::with_capacity(self.lines.len());
                for (text, line) in texts {
                    lines.push(parse_twin_line(file, line, text)?);
                }
                twin_input(file, lines)?
            }
            Format::Identity => {
                let mut lines = Vec::with_capacity(self.lines.len());
                for (text, line) in texts {
                    lines.push(IdentityLine(parse_identity_line(file, line, text)?));
                }
                let (id, device, modules) = group_one(file, lines)?;
                let modules = modules.into_iter().map(|(m, l)| (m, l.0)).collect();
                DeviceInput {
                    record: export_device(id, device.0, modules),
                    knows_twin: false,
                }
            }
        };
        if device.record.snapshot.id == self.id {
            Ok(device)
        } else {
            // The file changed since its index was made.
            let kind = ReadErrorKind::ChangedWhileRead;
            Err(ReadError::new(
                file,
                self.lines.first().map_or(0, |l| l.0),
                kind,
            ))
        }
    }
}

/// One device's lines grouped as a whole file would be: one device line,
/// modules by id, no duplicate and no orphan.
fn group_one<T: DeviceLine>(
    file: &str,
    lines: Vec<T>,
) -> Result<(String, T, BTreeMap<String, T>), ReadError> {
    let grouped = group(file, lines.into_iter().map(Ok))?;
    let (id, (device, modules)) = grouped
        .into_iter()
        .next()
        .ok_or_else(|| ReadError::new(file, 0, ReadErrorKind::MissingField))?;
    Ok((id, device, modules))
}

fn export_input(file: &str, lines: Vec<ExportLine>) -> Result<DeviceInput, ReadError> {
    let (id, device, modules) = group_one(file, lines)?;
    Ok(DeviceInput {
        record: export_device(id, device, modules),
        knows_twin: true,
    })
}

fn twin_input(file: &str, lines: Vec<TwinLine>) -> Result<DeviceInput, ReadError> {
    let (id, device, modules) = group_one(file, lines)?;
    Ok(DeviceInput {
        record: twin_device(id, device, modules),
        knows_twin: true,
    })
}

/// The error of a line whose id cannot be read: that of parsing it.
fn unreadable(file: &str, format: Format, line: u64, text: &str) -> ReadError {
    let parsed = match format {
        Format::Export => parse_export_line(file, line, text).map(|_| ()),
        Format::Twin => parse_twin_line(file, line, text).map(|_| ()),
        Format::Identity => parse_identity_line(file, line, text).map(|_| ()),
    };
    parsed
        .err()
        .unwrap_or_else(|| ReadError::new(file, line, ReadErrorKind::MissingField))
}

/// A file read from start to end, one device at a time.
pub(super) struct Stream {
    lines: Lines<FileReader>,
    name: String,
    format: Format,
    /// The first line of the next device.
    pending: Option<(String, String, u64)>,
    last: Option<String>,
}

impl Stream {
    /// Opens a file to stream it.
    pub(super) fn open(path: &Path, forced: Option<Format>) -> Result<(Self, Format), ReadError> {
        let (name, format) = open(path, forced)?;
        let file = reopen(path, &name)?;
        let stream = Self {
            lines: Lines::new(file, name.clone()),
            name,
            format,
            pending: None,
            last: None,
        };
        Ok((stream, format))
    }

    fn next(&mut self) -> Option<Result<RawDevice, SourceError>> {
        // The line read ahead, if any, is the device's first.
        let mut device = match self.pending.take() {
            Some((id, text, line)) => RawDevice::starting(id, line, text),
            None => RawDevice::default(),
        };
        loop {
            let (line, text) = match self.lines.next_json() {
                None => break,
                Some(Err(error)) => return Some(Err(error.into())),
                Some(Ok(next)) => next,
            };
            let Some(id) = line_id(text, self.format) else {
                return Some(Err(unreadable(&self.name, self.format, line, text).into()));
            };
            if device.lines.is_empty() {
                device.id = id.into_owned();
            } else if id != device.id {
                self.pending = Some((id.into_owned(), text.to_owned(), line));
                break;
            }
            device.push(line, text);
        }
        if device.lines.is_empty() {
            return None;
        }
        if self
            .last
            .as_deref()
            .is_some_and(|last| device.id.as_str() <= last)
        {
            return Some(Err(SourceError::Unsorted));
        }
        self.last = Some(device.id.clone());
        Some(Ok(device))
    }

    fn skipped(&self) -> u64 {
        self.lines.skipped()
    }
}

/// Where one line is in its file.
#[derive(Clone, Copy, Debug)]
struct Span {
    offset: u64,
    len: u32,
    line: u64,
}

/// A line located, for grouping: what [`group`] needs and where the line is.
struct Located {
    line: u64,
    id: String,
    module_id: Option<String>,
    span: Span,
}

impl DeviceLine for Located {
    fn line(&self) -> u64 {
        self.line
    }
    fn device_id(&self) -> &str {
        &self.id
    }
    fn module_id(&self) -> Option<&str> {
        self.module_id.as_deref()
    }
}

/// A device of an index: its id and where its lines are, device first.
#[derive(Debug)]
struct Entry {
    id: Box<str>,
    spans: Box<[Span]>,
}

/// A whole file read once and checked, as a sorted list of where each
/// device's lines are: what reading an unsorted file in id order needs,
/// a few dozen bytes a device instead of the device.
#[derive(Debug)]
pub(super) struct Index {
    name: String,
    format: Format,
    entries: Vec<Entry>,
    skipped: u64,
    newest: Newest,
}

impl Index {
    /// Reads and checks every line of `path`, as
    /// [`read_input`](crate::format::read_input) does, keeping where each
    /// device's lines are and the newest time the file carries.
    ///
    /// # Errors
    ///
    /// Those of `read_input`, the same for the same file.
    pub(super) fn build(path: &Path, forced: Option<Format>) -> Result<Self, ReadError> {
        let (name, format) = open(path, forced)?;
        let file = reopen(path, &name)?;
        let mut newest = Newest::default();
        let (grouped, skipped) = match format {
            Format::Export => {
                let mut lines = ExportReader::new(file, name.clone());
                let located = std::iter::from_fn(|| {
                    let line = lines.next()?;
                    Some(line.map(|l| locate(l.line, l.id, l.module_id, lines.span())))
                });
                let grouped = group(&name, located)?;
                (grouped, lines.skipped())
            }
            Format::Twin => {
                let mut lines = TwinReader::new(file, name.clone());
                let located = std::iter::from_fn(|| {
                    let line = lines.next()?;
                    Some(line.map(|l| {
                        newest.offer_entity(&l.device_id, l.module_id.as_deref(), &l.times);
                        locate(l.line, l.device_id, l.module_id, lines.span())
                    }))
                });
                let grouped = group(&name, located)?;
                (grouped, lines.skipped())
            }
            Format::Identity => {
                let mut lines = IdentityReader::new(file, name.clone());
                let located = std::iter::from_fn(|| {
                    let line = lines.next()?;
                    Some(line.map(|l| locate(l.0.line, l.0.id, l.0.module_id, lines.span())))
                });
                let grouped = group(&name, located)?;
                (grouped, lines.skipped())
            }
        };
        let entries = grouped
            .into_iter()
            .map(|(id, (device, modules))| Entry {
                id: id.into_boxed_str(),
                spans: std::iter::once(device.span)
                    .chain(modules.into_values().map(|m| m.span))
                    .collect(),
            })
            .collect();
        Ok(Self {
            name,
            format,
            entries,
            skipped,
            newest,
        })
    }

    /// The file, as errors name it.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// The file's format.
    pub(super) fn format(&self) -> Format {
        self.format
    }

    /// The newest time the file carries.
    pub(super) fn newest(&self) -> &Newest {
        &self.newest
    }

    /// Opens the file again to read its devices in id order.
    pub(super) fn reader(self, path: &Path) -> Result<Indexed, ReadError> {
        let file = File::open(path).map_err(|e| ReadError::io(self.name.clone(), e))?;
        Ok(Indexed {
            file,
            name: self.name,
            format: self.format,
            entries: self.entries.into_iter(),
            skipped: self.skipped,
            buf: Vec::new(),
        })
    }
}

fn locate(line: u64, id: String, module_id: Option<String>, span: (u64, usize)) -> Located {
    Located {
        line,
        id,
        module_id,
        span: Span {
            offset: span.0,
            // A line is at most `DEFAULT_MAX_LINE` bytes, far below 4 GiB.
            len: u32::try_from(span.1).unwrap_or(u32::MAX),
            line,
        },
    }
}

/// A file read device by device in id order, by offset from its index.
pub(super) struct Indexed {
    file: File,
    name: String,
    format: Format,
    entries: std::vec::IntoIter<Entry>,
    skipped: u64,
    buf: Vec<u8>,
}

impl Indexed {
    fn next(&mut self) -> Option<Result<RawDevice, SourceError>> {
        let entry = self.entries.next()?;
        let mut device = RawDevice {
            id: entry.id.into_string(),
            ..RawDevice::default()
        };
        for span in &entry.spans {
            match read_line(&mut self.file, &self.name, &mut self.buf, *span) {
                Ok(text) => device.push(span.line, text),
                Err(error) => return Some(Err(error.into())),
            }
        }
        Some(Ok(device))
    }
}

/// The text of one line of `file`, read again into `buf`.
fn read_line<'b>(
    file: &mut File,
    name: &str,
    buf: &'b mut Vec<u8>,
    span: Span,
) -> Result<&'b str, ReadError> {
    buf.resize(span.len as usize, 0);
    read_at(file, span.offset, buf)
        .map_err(|e| ReadError::new(name, span.line, ReadErrorKind::Io(e)))?;
    std::str::from_utf8(buf).map_err(|e| {
        let kind = ReadErrorKind::InvalidUtf8 {
            valid_up_to: e.valid_up_to(),
        };
        ReadError::new(name, span.line, kind)
    })
}

#[cfg(unix)]
fn read_at(file: &mut File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_at(file: &mut File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// An input read device by device in id order.
pub(super) enum Source {
    /// Streamed: the file is sorted, as far as read.
    Stream(Box<Stream>),
    /// Re-read by offset from its index.
    Indexed(Indexed),
    /// A replica state file, read whole and derived.
    Replica {
        /// The file, as errors name it.
        name: String,
        /// Its devices in id order.
        devices: std::vec::IntoIter<RawDevice>,
    },
}

/// A replica state file as an input: its devices derived, in id order, as
/// a twin file's would be read (real per-leaf times), and the newest
/// time it holds. `Ok(None)` when the file is no state file.
///
/// # Errors
///
/// Those of [`read_state`](crate::replica::read_state).
pub(super) fn replica_source(path: &Path) -> Result<Option<(Source, Newest)>, ReadError> {
    if !crate::replica::is_state_file(path) {
        return Ok(None);
    }
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| ReadError::io(name.clone(), e))?;
    let replica = crate::replica::read_state(BufReader::new(file), &name)?;
    let mut newest = Newest::default();
    let mut devices = Vec::new();
    for id in replica.device_ids() {
        let Some(device) = replica.device(id) else {
            continue;
        };
        if let Some(times) = &device.times {
            newest.offer_device(id, times);
        }
        let input = DeviceInput {
            record: device,
            knows_twin: true,
        };
        devices.push(RawDevice {
            id: id.to_owned(),
            // Unlike any file's lines: never taken for another input's.
            text: format!("\0{name}\0{id}"),
            lines: Vec::new(),
            derived: Some(Arc::new(input)),
        });
    }
    let source = Source::Replica {
        name,
        devices: devices.into_iter(),
    };
    Ok(Some((source, newest)))
}

impl Source {
    /// The next device's lines, `None` at the end.
    pub(super) fn next(&mut self) -> Option<Result<RawDevice, SourceError>> {
        match self {
            Source::Stream(s) => s.next(),
            Source::Indexed(i) => i.next(),
            Source::Replica { devices, .. } => devices.next().map(Ok),
        }
    }

    /// The file, as errors name it, and its format.
    pub(super) fn file(&self) -> (&str, Format) {
        match self {
            Source::Stream(s) => (&s.name, s.format),
            Source::Indexed(i) => (&i.name, i.format),
            Source::Replica { name, .. } => (name, Format::Twin),
        }
    }

    /// Lines skipped as hub warnings (so far, for a stream).
    pub(super) fn skipped(&self) -> u64 {
        match self {
            Source::Stream(s) => s.skipped(),
            Source::Indexed(i) => i.skipped,
            Source::Replica { .. } => 0,
        }
    }
}
