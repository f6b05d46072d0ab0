//! Bounded reading of JSON lines: one line at a time, never more than a
//! fixed number of bytes in memory, hub warning lines skipped and counted.

use std::fmt;
use std::io::{BufRead, ErrorKind};
use std::marker::PhantomData;

use super::{ReadError, ReadErrorKind};

/// The default bound on one line: 1 MiB, far above the largest twin
/// (8 KB of tags, 2 × 32 KB of properties and their metadata).
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

/// What one line is.
enum Line {
    /// JSON, between these byte offsets of the buffer.
    Json(usize, usize),
    /// A warning or blank line.
    Skip,
    /// A JSON line that is not UTF-8, valid up to this offset.
    BadUtf8(usize),
}

/// Splits a stream into JSON lines.
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
        }
    }

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
        self.span
    }

    /// The next line that starts with `{`, with its number, trimmed.
    /// After an I/O error, ends.
    pub(crate) fn next_json(&mut self) -> Option<Result<(u64, &str), ReadError>> {
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
        let text = self
            .buf
            .get(start..end)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or_default();
        Some(Ok((self.line, text)))
    }

    /// What the line in `buf` is.
    fn classify(&self) -> Line {
        let bom = if self.line == 1 && self.buf.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        let bytes = self.buf.get(bom..).unwrap_or_default();
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                let trimmed = text.trim_start();
                let start = bom + (text.len() - trimmed.len());
                let end = bom + text.trim_end().len();
                if trimmed.starts_with('{') {
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
            let (taken, end) = match chunk.iter().position(|&b| b == b'\n') {
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
}
