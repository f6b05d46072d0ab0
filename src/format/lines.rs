//! Bounded reading of JSON records: one JSON object at a time, never more
//! than a fixed number of bytes in memory, hub warning lines skipped and
//! counted.
//!
//! A file is read in one of two layouts, told by its first JSON line:
//!
//! - **JSON lines**, one object a line, as import/export jobs write them.
//!   Lines that do not start with `{` are hub warnings.
//! - **JSON values**: one JSON array of objects (what `az iot hub query`,
//!   `az iot hub device-twin list` and `az iot hub device-identity list`
//!   print, pretty-printed or not), or objects one after another that span
//!   several lines (`az ... show`, `az iot hub monitor-events`). The first
//!   JSON line starts with `[`, or is a lone `{`: pretty-printers always
//!   break the line after an opening brace, and a JSON line never does.
//!   Each object of the array, or each top-level object, is one record,
//!   read by scanning its brackets and strings, so a million-device array
//!   is still read one object at a time.
//!
//! A record's line is the line it starts on; its span is its bytes in the
//! stream, line breaks included, so it can be read again by offset.

use std::fmt;
use std::io::{BufRead, ErrorKind};
use std::marker::PhantomData;

use super::{ReadError, ReadErrorKind};

/// The default bound on one line: 1 MiB, far above the largest twin
/// (8 KB of tags, 2 × 32 KB of properties and their metadata).
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

/// What scanning JSON values found.
enum Found {
    /// Nothing yet: every byte given was used.
    More,
    /// A record closed with the last byte used.
    Record,
    /// A byte that is no part of an array of objects, at this column.
    Unexpected(usize),
}

/// Splits JSON values into records: each top-level object, or each
/// object of a top-level array, by its brackets and strings.
#[derive(Debug, Default)]
struct Scanner {
    /// Nesting of `{` and `[` inside the record; 0 between records.
    depth: u32,
    /// Inside a string.
    string: bool,
    /// After a backslash inside a string.
    escape: bool,
    /// Inside a top-level array.
    array: bool,
    /// Skipping a line of text between objects (a warning).
    skip_line: bool,
    /// The current record is over the bound: its bytes are not kept.
    too_long: bool,
    /// The bound on a record.
    max: usize,
    /// The record being read, and where it starts: line and offset.
    record: Vec<u8>,
    start: (u64, u64),
    /// Where the current line starts in the stream.
    line_start: u64,
}

impl Scanner {
    /// Scans `bytes`, which start at offset `at` of the stream, counting
    /// lines in `line` and skipped text lines in `skipped`. Returns how
    /// many bytes were used and what was found.
    fn scan(&mut self, bytes: &[u8], at: u64, line: &mut u64, skipped: &mut u64) -> (usize, Found) {
        let mut kept_from = (self.depth > 0).then_some(0);
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                *line += 1;
                self.line_start = at + i as u64 + 1;
                if self.skip_line {
                    self.skip_line = false;
                    continue;
                }
            }
            if self.skip_line {
                continue;
            }
            if self.depth == 0 {
                match b {
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    b'[' if !self.array => self.array = true,
                    b',' | b']' if self.array => self.array = b == b',',
                    b'{' => {
                        self.depth = 1;
                        self.start = (*line, at + i as u64);
                        self.record.clear();
                        self.too_long = false;
                        kept_from = Some(i);
                    }
                    // Text between objects that are not in an array: a
                    // warning line, as in JSON lines.
                    _ if !self.array => {
                        *skipped += 1;
                        self.skip_line = true;
                    }
                    _ => {
                        let column = at + i as u64 + 1 - self.line_start;
                        // The stream ends here: the rest is not read.
                        return (bytes.len(), Found::Unexpected(column as usize));
                    }
                }
                continue;
            }
            if self.string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.string = false;
                }
                continue;
            }
            match b {
                b'"' => self.string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        self.keep(bytes.get(kept_from.unwrap_or(0)..=i).unwrap_or_default());
                        return (i + 1, Found::Record);
                    }
                }
                _ => {}
            }
        }
        if let Some(from) = kept_from {
            self.keep(bytes.get(from..).unwrap_or_default());
        }
        (bytes.len(), Found::More)
    }

    /// Keeps `bytes` in the record, within the bound.
    fn keep(&mut self, bytes: &[u8]) {
        if self.too_long {
            return;
        }
        if self.record.len() + bytes.len() > self.max {
            self.too_long = true;
            self.record = Vec::new();
        } else {
            self.record.extend_from_slice(bytes);
        }
    }

    /// The record just closed: its line and text.
    fn record(&self, file: &str) -> Result<(u64, &str), ReadError> {
        let line = self.start.0;
        if self.too_long {
            let kind = ReadErrorKind::LineTooLong { limit: self.max };
            return Err(ReadError::new(file, line, kind));
        }
        std::str::from_utf8(&self.record)
            .map(|text| (line, text))
            .map_err(|e| {
                let kind = ReadErrorKind::InvalidUtf8 {
                    valid_up_to: e.valid_up_to(),
                };
                ReadError::new(file, line, kind)
            })
    }

    /// The end of the stream at `line`: a record cut short is returned as
    /// it is (its parse names what is missing); an array never closed is
    /// an error, since records may be missing.
    fn end(&mut self, file: &str, line: u64) -> Option<Result<(u64, &str), ReadError>> {
        if self.depth > 0 {
            self.depth = 0;
            // Its parse error is then on the record's last line.
            let end = self.record.trim_ascii_end().len();
            self.record.truncate(end);
            return Some(self.record(file));
        }
        if self.array {
            self.array = false;
            let kind = ReadErrorKind::InvalidJson {
                column: 1,
                message: "EOF while parsing a list".to_owned(),
            };
            return Some(Err(ReadError::new(file, line, kind)));
        }
        None
    }

    /// Where the last record starts in the stream and its length.
    fn span(&self) -> (u64, usize) {
        (self.start.1, self.record.len())
    }
}

/// What one line is.
enum Line {
    /// JSON, between these byte offsets of the buffer.
    Json(usize, usize),
    /// A warning or blank line.
    Skip,
    /// A JSON line that is not UTF-8, valid up to this offset.
    BadUtf8(usize),
}

/// How the stream is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// No JSON line seen yet.
    Unknown,
    /// One object a line.
    Lines,
    /// JSON values spanning lines: an array, or objects one after another.
    Values,
}

/// Splits a stream into JSON records.
#[derive(Debug)]
pub(crate) struct Lines<R> {
    reader: R,
    file: String,
    line: u64,
    skipped: u64,
    max_line: usize,
    buf: Vec<u8>,
    done: bool,
    /// Bytes consumed from `reader` so far.
    pos: u64,
    /// Where the line in `buf` starts in the stream.
    line_start: u64,
    /// Where the last JSON text returned starts, and its length.
    span: (u64, usize),
    layout: Layout,
    /// Whether the line in `buf` ended with a line break.
    line_ended: bool,
    /// In [`Layout::Values`]: where in `buf` scanning goes on, for the
    /// line that told the layout.
    cursor: Option<usize>,
    scanner: Scanner,
}

impl<R: BufRead> Lines<R> {
    pub(crate) fn new(reader: R, file: String) -> Self {
        Self {
            reader,
            file,
            line: 0,
            skipped: 0,
            max_line: DEFAULT_MAX_LINE,
            buf: Vec::new(),
            done: false,
            pos: 0,
            line_start: 0,
            span: (0, 0),
            layout: Layout::Unknown,
            line_ended: false,
            cursor: None,
            scanner: Scanner::default(),
        }
    }

    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub(crate) fn set_max_line(&mut self, max_line: usize) {
        self.max_line = max_line;
    }

    pub(crate) fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Where the text the last [`Lines::next_json`] returned starts in the
    /// stream, in bytes, and its length: what reading it again by offset
    /// needs.
    pub(crate) fn span(&self) -> (u64, usize) {
        match self.layout {
            Layout::Values => self.scanner.span(),
            _ => self.span,
        }
    }

    /// The next JSON record (an object, trimmed) with the number of the
    /// line it starts on. After an I/O error, or a syntax error between the
    /// records of a JSON array, ends.
    pub(crate) fn next_json(&mut self) -> Option<Result<(u64, &str), ReadError>> {
        if self.layout == Layout::Values {
            return self.next_value();
        }
        let (start, end) = loop {
            if self.done {
                return None;
            }
            match self.fill() {
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Ok(true) => {}
                Err(kind) => {
                    if matches!(kind, ReadErrorKind::Io(_)) {
                        self.done = true;
                    }
                    return Some(Err(ReadError::new(self.file.clone(), self.line, kind)));
                }
            }
            match self.classify() {
                Line::Json(start, end) => {
                    if self.layout == Layout::Unknown && self.starts_values(start, end) {
                        self.layout = Layout::Values;
                        self.cursor = Some(start);
                        self.scanner.max = self.max_line;
                        self.scanner.line_start = self.line_start;
                        return self.next_value();
                    }
                    self.span = (self.line_start + start as u64, end - start);
                    break (start, end);
                }
                Line::Skip => self.skipped += 1,
                Line::BadUtf8(valid_up_to) => {
                    let kind = ReadErrorKind::InvalidUtf8 { valid_up_to };
                    return Some(Err(ReadError::new(self.file.clone(), self.line, kind)));
                }
            }
        };
        // A line `classify` took at a glance is checked here, once.
        match std::str::from_utf8(self.buf.get(start..end).unwrap_or_default()) {
            Ok(text) => {
                if self.layout == Layout::Unknown {
                    self.layout = Layout::Lines;
                }
                Some(Ok((self.line, text)))
            }
            Err(e) => {
                let valid_up_to = start - self.bom() + e.valid_up_to();
                let kind = ReadErrorKind::InvalidUtf8 { valid_up_to };
                Some(Err(ReadError::new(self.file.clone(), self.line, kind)))
            }
        }
    }

    /// Whether the first JSON line, `buf[start..end]`, opens JSON values
    /// rather than being one: an array of objects (`[` then `{`, `]` or
    /// the end of the line), or a lone `{`. A line such as `[Warning] ...`
    /// stays a warning line.
    fn starts_values(&self, start: usize, end: usize) -> bool {
        match self.buf.get(start..end) {
            Some(b"{") => true,
            Some([b'[', rest @ ..]) => {
                matches!(rest.trim_ascii_start().first(), None | Some(b'{' | b']'))
            }
            _ => false,
        }
    }

    /// The next record of [`Layout::Values`], scanned from the stream's
    /// chunks: a line may be as long as the file (a compact array), so
    /// only the record, within the bound, is ever held.
    fn next_value(&mut self) -> Option<Result<(u64, &str), ReadError>> {
        if self.done {
            return None;
        }
        if let Some(cursor) = self.cursor.take() {
            // The rest of the line that told the layout, then its end.
            let rest = std::mem::take(&mut self.buf);
            let bytes = rest.get(cursor..).unwrap_or_default();
            let at = self.line_start + cursor as u64;
            let (used, found) = self
                .scanner
                .scan(bytes, at, &mut self.line, &mut self.skipped);
            if !matches!(found, Found::More) {
                // Records after the first on this line: scanned again
                // from where this one ended.
                self.cursor = Some(cursor + used);
                self.buf = rest;
                return self.found(found);
            }
            self.buf = rest;
            if self.line_ended {
                let end_at = self.line_start + self.buf.len() as u64;
                let (_, found) =
                    self.scanner
                        .scan(b"\n", end_at, &mut self.line, &mut self.skipped);
                if !matches!(found, Found::More) {
                    return self.found(found);
                }
            }
        }
        loop {
            if self.done {
                return None;
            }
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.done = true;
                    let kind = ReadErrorKind::Io(e);
                    return Some(Err(ReadError::new(self.file.clone(), self.line, kind)));
                }
            };
            if chunk.is_empty() {
                self.done = true;
                // A file that ends with a line break ends on the line
                // before the empty one.
                let at_line_start = self.scanner.line_start == self.pos && self.line > 1;
                let line = self.line - u64::from(at_line_start);
                return self.scanner.end(&self.file, line);
            }
            let (used, found) =
                self.scanner
                    .scan(chunk, self.pos, &mut self.line, &mut self.skipped);
            self.reader.consume(used);
            self.pos += used as u64;
            if !matches!(found, Found::More) {
                return self.found(found);
            }
        }
    }

    /// What the scanner found, as a record or an error.
    fn found(&mut self, found: Found) -> Option<Result<(u64, &str), ReadError>> {
        match found {
            Found::More => None,
            Found::Record => Some(self.scanner.record(&self.file)),
            Found::Unexpected(column) => {
                self.done = true;
                let kind = ReadErrorKind::InvalidJson {
                    column,
                    message: "expected an object".to_owned(),
                };
                Some(Err(ReadError::new(self.file.clone(), self.line, kind)))
            }
        }
    }

    /// What the line in `buf` is.
    fn classify(&self) -> Line {
        let bom = self.bom();
        let bytes = self.buf.get(bom..).unwrap_or_default();
        // What export jobs write: an object from the line's first byte to
        // its last (or to a carriage return), its UTF-8 checked as it is
        // read.
        let body = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if body.first() == Some(&b'{') && body.last() == Some(&b'}') {
            return Line::Json(bom, bom + body.len());
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                let trimmed = text.trim_start();
                let start = bom + (text.len() - trimmed.len());
                let end = bom + text.trim_end().len();
                let array = trimmed.strip_prefix('[').is_some_and(|rest| {
                    matches!(rest.trim_start().chars().next(), None | Some('{' | ']'))
                });
                if trimmed.starts_with('{') || (self.layout == Layout::Unknown && array) {
                    Line::Json(start, end)
                } else {
                    Line::Skip
                }
            }
            // A warning line in another encoding is still a warning line;
            // a JSON line with a bad byte is an error.
            Err(e) if bytes.trim_ascii_start().first() == Some(&b'{') => {
                Line::BadUtf8(e.valid_up_to())
            }
            Err(_) => Line::Skip,
        }
    }

    /// The length of the byte order mark the line in `buf` starts with:
    /// one is allowed on the first line only.
    fn bom(&self) -> usize {
        if self.line == 1 && self.buf.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        }
    }

    /// Reads the next line into `buf`, without its end. `Ok(false)` at the
    /// end of the stream.
    fn fill(&mut self) -> Result<bool, ReadErrorKind> {
        self.buf.clear();
        self.line_start = self.pos;
        let mut too_long = false;
        let mut any = false;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.line += 1;
                    return Err(ReadErrorKind::Io(e));
                }
            };
            if chunk.is_empty() {
                if !any {
                    return Ok(false);
                }
                break;
            }
            any = true;
            let (taken, end) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            if !too_long {
                if self.buf.len() + taken > self.max_line {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf
                        .extend_from_slice(chunk.get(..taken).unwrap_or(chunk));
                }
            }
            self.reader.consume(taken + usize::from(end));
            self.pos += (taken + usize::from(end)) as u64;
            self.line_ended = end;
            if end {
                break;
            }
        }
        self.line += 1;
        if too_long {
            return Err(ReadErrorKind::LineTooLong {
                limit: self.max_line,
            });
        }
        Ok(true)
    }
}

/// One line of a JSONL format, parsed from the text of one JSON object.
pub trait ParseLine: Sized {
    /// Parses `text`, line `line` of `file`, and checks it.
    ///
    /// # Errors
    ///
    /// A [`ReadError`] naming `file`, `line` and what is wrong.
    fn parse_line(file: &str, line: u64, text: &str) -> Result<Self, ReadError>;
}

/// Streams the lines of one JSONL format as `T`s: each line bounded in
/// size (1 MiB unless [`JsonlReader::with_max_line`] says otherwise), lines
/// that do not start with `{` skipped and counted. A bad line is an error
/// and the stream goes on with the next one.
///
/// [`ExportReader`](super::ExportReader) and
/// [`TwinReader`](super::TwinReader) are this reader for their lines.
pub struct JsonlReader<R, T> {
    lines: Lines<R>,
    file: String,
    parsed: PhantomData<fn() -> T>,
}

impl<R, T> fmt::Debug for JsonlReader<R, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlReader")
            .field("file", &self.file)
            .field("line", &self.lines.line)
            .finish_non_exhaustive()
    }
}

impl<R: BufRead, T: ParseLine> JsonlReader<R, T> {
    /// Reads `reader`, naming it `file` in errors.
    pub fn new(reader: R, file: impl Into<String>) -> Self {
        let file = file.into();
        Self {
            lines: Lines::new(reader, file.clone()),
            file,
            parsed: PhantomData,
        }
    }

    /// Bounds each line to `bytes` instead of 1 MiB.
    #[must_use]
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn with_max_line(mut self, bytes: usize) -> Self {
        self.lines.set_max_line(bytes);
        self
    }

    /// How many lines were skipped so far because they do not start with
    /// `{`.
    pub fn skipped(&self) -> u64 {
        self.lines.skipped()
    }

    /// The file's name, as errors give it.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Where the last line read starts in the stream and its length.
    pub(crate) fn span(&self) -> (u64, usize) {
        self.lines.span()
    }
}

impl<R: BufRead, T: ParseLine> Iterator for JsonlReader<R, T> {
    type Item = Result<T, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.lines.next_json()? {
            Ok((line, text)) => T::parse_line(&self.file, line, text),
            Err(error) => Err(error),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Read = Vec<Result<(u64, String), String>>;

    fn all(input: &[u8], max: usize) -> (Read, u64) {
        let mut lines = Lines::new(input, "f".into());
        lines.set_max_line(max);
        let mut out = Vec::new();
        while let Some(next) = lines.next_json() {
            out.push(
                next.map(|(n, t)| (n, t.to_owned()))
                    .map_err(|e| e.to_string()),
            );
        }
        (out, lines.skipped())
    }

    #[test]
    fn skips_and_counts_warning_lines() {
        let (out, skipped) = all(
            b"\xEF\xBB\xBF{\"a\":1}\r\n\nwarning: x\n  {} \n\xFFoops\n{",
            100,
        );
        assert_eq!(
            out,
            vec![
                Ok((1, "{\"a\":1}".to_owned())),
                Ok((4, "{}".to_owned())),
                Ok((6, "{".to_owned()))
            ]
        );
        assert_eq!(skipped, 3);
    }

    #[test]
    fn spans_locate_the_json_text_in_the_stream() {
        let input = b"\xEF\xBB\xBF{\"a\":1}\r\nwarning\n  {\"b\":2} \n";
        let mut lines = Lines::new(&input[..], "f".into());
        let mut spans = Vec::new();
        while let Some(Ok((_, text))) = lines.next_json() {
            let text = text.to_owned();
            let (offset, len) = lines.span();
            let at = usize::try_from(offset).unwrap();
            assert_eq!(&input[at..at + len], text.as_bytes());
            spans.push((offset, len));
        }
        assert_eq!(spans, vec![(3, 7), (22, 7)]);
    }

    #[test]
    fn bounds_a_line_and_goes_on() {
        let (out, _) = all(b"{\"a\":\"xxxxxxxxxxxxxxxx\"}\n{}\n", 8);
        assert_eq!(
            out,
            vec![
                Err("f:1: line is longer than 8 bytes".to_owned()),
                Ok((2, "{}".to_owned()))
            ]
        );
    }

    #[test]
    fn invalid_utf8_in_a_json_line_is_an_error() {
        let (out, _) = all(b"{\"id\":\"\xC3\x28\"}\n", 100);
        assert_eq!(out, vec![Err("f:1: invalid UTF-8 after byte 7".to_owned())]);
    }

    /// The first JSON line decides the layout: after an object line, a
    /// line opening an array is a warning, not values; and an object line
    /// with blanks after it is trimmed as any other.
    #[test]
    fn an_object_line_fixes_the_layout_and_is_trimmed() {
        let (out, skipped) = all(b"{\"a\":1} \t\r\n[{\"b\":2}]\n{\"c\":3}", 100);
        assert_eq!(
            out,
            vec![
                Ok((1, "{\"a\":1}".to_owned())),
                Ok((3, "{\"c\":3}".to_owned()))
            ]
        );
        assert_eq!(skipped, 1);
    }

    /// An object filling its line is taken at a glance and its UTF-8
    /// checked as it is returned: the same texts, errors and offsets as a
    /// line trimmed first, and a first line that is not UTF-8 still leaves
    /// the layout to the next one.
    #[test]
    fn a_line_that_is_one_object_reads_as_any_other() {
        let (out, _) = all(
            b"\xEF\xBB\xBF{\"id\":\"\xC3\x28\"}\r\n[\n{\"a\":1}\n]\n",
            100,
        );
        assert_eq!(
            out,
            vec![
                Err("f:1: invalid UTF-8 after byte 7".to_owned()),
                Ok((3, "{\"a\":1}".to_owned()))
            ]
        );
        let (out, _) = all(
            b"{\"a\":\"\xC3\xA9\"}\r\n \t{\"b\":\"\xC3\"} \n{\"c\":0}",
            100,
        );
        assert_eq!(
            out,
            vec![
                Ok((1, "{\"a\":\"\u{e9}\"}".to_owned())),
                Err("f:2: invalid UTF-8 after byte 8".to_owned()),
                Ok((3, "{\"c\":0}".to_owned()))
            ]
        );
    }
    /// A reader that fails once with `kind` before `at` bytes, then reads
    /// on, a few bytes at a time.
    struct Flaky {
        data: Vec<u8>,
        pos: usize,
        at: usize,
        kind: Option<ErrorKind>,
    }

    impl std::io::Read for Flaky {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let mut buf = self.fill_buf()?;
            let n = std::io::Read::read(&mut buf, out)?;
            self.consume(n);
            Ok(n)
        }
    }

    impl BufRead for Flaky {
        fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
            if self.pos >= self.at {
                if let Some(kind) = self.kind.take() {
                    return Err(std::io::Error::new(kind, "flaky"));
                }
            }
            let end = (self.pos + 3).min(self.data.len());
            Ok(self.data.get(self.pos..end).unwrap_or_default())
        }
        fn consume(&mut self, n: usize) {
            self.pos += n;
        }
    }

    fn flaky(data: &[u8], at: usize, kind: ErrorKind) -> Flaky {
        Flaky {
            data: data.to_vec(),
            pos: 0,
            at,
            kind: Some(kind),
        }
    }

    fn read_all<R: BufRead>(mut lines: Lines<R>) -> (Read, Vec<(u64, usize)>) {
        let mut out = Vec::new();
        let mut spans = Vec::new();
        while let Some(next) = lines.next_json() {
            out.push(
                next.map(|(n, t)| (n, t.to_owned()))
                    .map_err(|e| e.to_string()),
            );
            spans.push(lines.span());
        }
        (out, spans)
    }

    #[test]
    fn an_interrupted_read_is_retried() {
        let input = b"{\"a\":1}\n{\"b\":22}\n";
        let lines = Lines::new(flaky(input, 9, ErrorKind::Interrupted), "f".into());
        let (out, spans) = read_all(lines);
        assert_eq!(
            out,
            vec![
                Ok((1, "{\"a\":1}".to_owned())),
                Ok((2, "{\"b\":22}".to_owned()))
            ]
        );
        // Lines arrive 3 bytes at a time: offsets still count every byte.
        assert_eq!(spans, vec![(0, 7), (8, 8)]);
    }

    #[test]
    fn an_io_error_names_its_line_and_ends_the_stream() {
        let input = b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n";
        let lines = Lines::new(flaky(input, 10, ErrorKind::BrokenPipe), "f".into());
        let (out, _) = read_all(lines);
        assert_eq!(
            out,
            vec![
                Ok((1, "{\"a\":1}".to_owned())),
                Err("f:2: cannot read: flaky".to_owned())
            ]
        );
    }

    /// The JSON-values layout reads through interruptions, stops at an
    /// I/O error naming its line, counts columns from the line after the
    /// first, and names the last line of a file that ends without a line
    /// break.
    #[test]
    fn json_values_read_through_interruptions_and_end_at_errors() {
        let input = b"[\n{\"a\":1},\n{\"b\":22}\n]\n";
        let lines = Lines::new(flaky(input, 9, ErrorKind::Interrupted), "f".into());
        let (out, _) = read_all(lines);
        assert_eq!(
            out,
            vec![
                Ok((2, "{\"a\":1}".to_owned())),
                Ok((3, "{\"b\":22}".to_owned()))
            ]
        );
        let lines = Lines::new(flaky(input, 12, ErrorKind::BrokenPipe), "f".into());
        let (out, _) = read_all(lines);
        assert_eq!(
            out,
            vec![
                Ok((2, "{\"a\":1}".to_owned())),
                Err("f:3: cannot read: flaky".to_owned())
            ]
        );
        let (out, _) = all(b"[\n 7]", 100);
        assert_eq!(
            out,
            vec![Err(
                "f:2: invalid JSON at column 2: expected an object".to_owned()
            )]
        );
        let (out, _) = all(b"[\n{\"a\":1}", 100);
        assert_eq!(
            out,
            vec![
                Ok((2, "{\"a\":1}".to_owned())),
                Err("f:2: invalid JSON at column 1: EOF while parsing a list".to_owned())
            ]
        );
    }

    #[test]
    fn a_reader_shows_its_file_and_line_and_nothing_it_read() {
        let mut reader: crate::format::ExportReader<&[u8]> = JsonlReader::new(
            br#"{"id":"d1","authentication":{"symmetricKey":{"primaryKey":"c2VjcmV0LWtleS1zaXh0ZWVu"}}}"#
                .as_slice(),
            "devices.txt",
        );
        assert!(reader.next().is_some());
        assert_eq!(
            format!("{reader:?}"),
            r#"JsonlReader { file: "devices.txt", line: 1, .. }"#
        );
    }

    #[test]
    fn a_line_of_exactly_the_bound_passes() {
        let (out, _) = all(b"{\"a\":12}\n{\"a\":123}\n{}", 8);
        assert_eq!(
            out,
            vec![
                Ok((1, "{\"a\":12}".to_owned())),
                Err("f:2: line is longer than 8 bytes".to_owned()),
                Ok((3, "{}".to_owned()))
            ]
        );
    }

    #[test]
    fn a_byte_order_mark_counts_on_the_first_line_only() {
        let (out, skipped) = all(b"{}\n\xEF\xBB\xBF{\"a\":1}\n", 100);
        assert_eq!(out, vec![Ok((1, "{}".to_owned()))]);
        assert_eq!(skipped, 1);
    }

    #[test]
    fn a_bad_byte_in_a_json_line_after_spaces_is_an_error() {
        let (out, skipped) = all(b"  {\"id\":\"\xFF\"}\n{}\n", 100);
        assert_eq!(
            out,
            vec![
                Err("f:1: invalid UTF-8 after byte 9".to_owned()),
                Ok((2, "{}".to_owned()))
            ]
        );
        assert_eq!(skipped, 0);
    }

    #[test]
    fn a_pretty_printed_array_gives_one_record_per_object() {
        let input = b"\xEF\xBB\xBF[\n  {\n    \"deviceId\": \"a\",\n    \"tags\": {\"s\": \"}]{\\\"\"}\n  },\r\n  {\"deviceId\": \"b\"}\n]\n";
        let mut lines = Lines::new(&input[..], "f".into());
        let mut out = Vec::new();
        while let Some(next) = lines.next_json() {
            let (line, text) = next.map_err(|e| e.to_string()).unwrap();
            let text = text.to_owned();
            let (offset, len) = lines.span();
            let at = usize::try_from(offset).unwrap();
            assert_eq!(&input[at..at + len], text.as_bytes());
            serde_json::from_str::<serde_json::Value>(&text).unwrap();
            out.push((line, text));
        }
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, 2);
        assert!(out[0].1.starts_with('{') && out[0].1.ends_with('}'));
        assert_eq!(out[1], (6, "{\"deviceId\": \"b\"}".to_owned()));
        assert_eq!(lines.skipped(), 0);
    }

    #[test]
    fn a_compact_array_on_one_line_and_an_empty_array() {
        let (out, _) = all(b"[{\"a\":1},{\"b\":[2,{}]}]", 100);
        assert_eq!(
            out,
            vec![
                Ok((1, "{\"a\":1}".to_owned())),
                Ok((1, "{\"b\":[2,{}]}".to_owned()))
            ]
        );
        let (out, _) = all(b"[]\n", 100);
        assert_eq!(out, vec![]);
        let (out, _) = all(b"[\n]\n", 100);
        assert_eq!(out, vec![]);
    }

    #[test]
    fn pretty_printed_objects_one_after_another() {
        let input =
            b"{\n  \"event\": {\"a\": 1}\n}\nStarting monitor\n{\n  \"event\": {}\n}{\"x\":2}\n";
        let (out, skipped) = all(input, 100);
        assert_eq!(
            out,
            vec![
                Ok((1, "{\n  \"event\": {\"a\": 1}\n}".to_owned())),
                Ok((5, "{\n  \"event\": {}\n}".to_owned())),
                Ok((7, "{\"x\":2}".to_owned()))
            ]
        );
        assert_eq!(skipped, 1);
    }

    /// Commas and closing brackets between objects that are in no array
    /// are text, skipped as warning lines; an array inside the top-level
    /// array holds no records.
    #[test]
    fn brackets_out_of_place_are_text_or_an_error() {
        let (out, skipped) = all(b"{\n\"a\": 1\n}\n,\n{\n\"b\": 2\n}\n]\n{\"c\":3}\n", 100);
        assert_eq!(
            out,
            vec![
                Ok((1, "{\n\"a\": 1\n}".to_owned())),
                Ok((5, "{\n\"b\": 2\n}".to_owned())),
                Ok((9, "{\"c\":3}".to_owned()))
            ]
        );
        assert_eq!(skipped, 2);
        let (out, _) = all(b"[\n[{\"a\":1}]\n]", 100);
        assert_eq!(
            out,
            vec![Err(
                "f:2: invalid JSON at column 1: expected an object".to_owned()
            )]
        );
    }

    /// An error ends the stream, also on the line that told the layout.
    #[test]
    fn nothing_is_read_after_an_error_on_the_first_line() {
        let (out, _) = all(b"[{\"a\":1}, 1, {\"c\":3}]\n{\"b\":2}\n", 100);
        assert_eq!(
            out,
            vec![
                Ok((1, "{\"a\":1}".to_owned())),
                Err("f:1: invalid JSON at column 11: expected an object".to_owned())
            ]
        );
    }

    /// Columns count from the line's start, also when the line that told
    /// the layout is not the file's first.
    #[test]
    fn a_column_on_the_first_json_line_after_a_warning() {
        let (out, skipped) = all(b"Warning: x\n[{\"a\":1}, 7]\n", 100);
        assert_eq!(
            out,
            vec![
                Ok((2, "{\"a\":1}".to_owned())),
                Err("f:2: invalid JSON at column 11: expected an object".to_owned())
            ]
        );
        assert_eq!(skipped, 1);
    }

    #[test]
    fn an_array_cut_short_or_holding_no_objects_is_an_error() {
        let (out, _) = all(b"[\n{\"a\":1},\n{\"b\":", 100);
        assert_eq!(
            out,
            vec![
                Ok((2, "{\"a\":1}".to_owned())),
                Ok((3, "{\"b\":".to_owned()))
            ]
        );
        let (out, _) = all(b"[\n{\"a\":1}\n", 100);
        assert_eq!(
            out,
            vec![
                Ok((2, "{\"a\":1}".to_owned())),
                Err("f:2: invalid JSON at column 1: EOF while parsing a list".to_owned())
            ]
        );
        let (out, _) = all(b"[\n{\"a\":1},\n 7,\n{}]", 100);
        assert_eq!(
            out,
            vec![
                Ok((2, "{\"a\":1}".to_owned())),
                Err("f:3: invalid JSON at column 2: expected an object".to_owned())
            ]
        );
    }

    #[test]
    fn a_record_over_the_bound_is_an_error_and_the_next_is_read() {
        let (out, _) = all(b"[\n{\"a\":\n\"xxxxxxxxxxxx\"},\n{}\n]", 8);
        assert_eq!(
            out,
            vec![
                Err("f:2: line is longer than 8 bytes".to_owned()),
                Ok((4, "{}".to_owned()))
            ]
        );
        // A record of exactly the bound passes; one byte more does not.
        let (out, _) = all(b"[\n{\"a\":12},\n{\"a\":123}\n]", 8);
        assert_eq!(
            out,
            vec![
                Ok((2, "{\"a\":12}".to_owned())),
                Err("f:3: line is longer than 8 bytes".to_owned())
            ]
        );
        let (out, _) = all(b"[\n{\"a\":\"\xFF\"}]", 100);
        assert_eq!(out, vec![Err("f:2: invalid UTF-8 after byte 6".to_owned())]);
    }

    #[test]
    fn a_json_line_cut_short_stays_a_json_line() {
        // Only a lone `{` opens pretty-printed objects: a truncated JSON
        // line is an error of its own line, and the next line is read.
        let (out, _) = all(b"{\"id\":\"a\",\n{\"id\":\"b\"}\n[1]\n", 100);
        assert_eq!(
            out,
            vec![
                Ok((1, "{\"id\":\"a\",".to_owned())),
                Ok((2, "{\"id\":\"b\"}".to_owned()))
            ]
        );
    }

    #[test]
    fn a_warning_line_in_brackets_is_no_array() {
        let (out, skipped) = all(b"[Warning] 2 devices skipped\n{\"a\":1}\n[1]\n", 100);
        assert_eq!(out, vec![Ok((2, "{\"a\":1}".to_owned()))]);
        assert_eq!(skipped, 2);
    }
}
