//! Telling an export file from a twin file by its first JSON line.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::str::FromStr;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use super::lines::Lines;
use super::raw::Key;
use super::{
    ExportFile, ExportReader, ReadError, ReadErrorKind, TwinFile, TwinReader, collect_export,
    collect_twins,
};

/// The two line formats a hub's state comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// Bulk export / import lines: `id`, `moduleId`, `eTag`, ...
    Export,
    /// Twin lines of the query and get-twin APIs: `deviceId`, `etag`,
    /// `$metadata`, ...
    Twin,
}

impl Format {
    /// `export` or `twin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Export => "export",
            Format::Twin => "twin",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is neither `export` nor `twin`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {0:?}, expected \"export\" or \"twin\"")]
pub struct UnknownFormatName(pub String);

impl FromStr for Format {
    type Err = UnknownFormatName;

    /// Parses `export` or `twin`, as a command line forces a format.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "export" => Ok(Format::Export),
            "twin" => Ok(Format::Twin),
            _ => Err(UnknownFormatName(name.to_owned())),
        }
    }
}

/// The format of one JSON line: [`Format::Twin`] when its object has a
/// top-level `deviceId`, [`Format::Export`] when it has `id`, `None` when
/// it has neither or is not a JSON object.
///
/// Only the top-level keys are looked at; values are skipped unparsed.
///
/// # Example
///
/// ```
/// use failback::format::{detect_format, Format};
///
/// assert_eq!(detect_format(r#"{"id":"d1","status":"enabled"}"#), Some(Format::Export));
/// assert_eq!(detect_format(r#"{"properties":{},"deviceId":"d1"}"#), Some(Format::Twin));
/// assert_eq!(detect_format(r#"{"hello":1}"#), None);
/// ```
pub fn detect_format(line: &str) -> Option<Format> {
    let mut de = serde_json::Deserializer::from_str(line);
    de::Deserializer::deserialize_map(&mut de, KeysVisitor)
        .ok()
        .flatten()
}

struct KeysVisitor;

impl<'de> Visitor<'de> for KeysVisitor {
    type Value = Option<Format>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut device_id, mut id) = (false, false);
        while let Some(Key(key)) = map.next_key()? {
            device_id |= key == "deviceId";
            id |= key == "id";
            map.next_value::<IgnoredAny>()?;
        }
        Ok(match (device_id, id) {
            (true, _) => Some(Format::Twin),
            (false, true) => Some(Format::Export),
            (false, false) => None,
        })
    }
}

/// The device id of one JSON line of a file in `format` (its `id`, or its
/// `deviceId` in a twin file), without parsing the rest: what grouping
/// lines by device needs before they are parsed.
///
/// Lines as hubs write them start with the id (`{"id":"...`), which is
/// then taken as it stands when it holds no escape; other lines are
/// scanned with serde, skipping every value but the id. `None` when the
/// line is not a JSON object with a string id: parsing it fully then says
/// what is wrong.
pub(crate) fn line_id(text: &str, format: Format) -> Option<std::borrow::Cow<'_, str>> {
    let prefix = match format {
        Format::Export => "{\"id\":\"",
        Format::Twin => "{\"deviceId\":\"",
    };
    if let Some(rest) = text.strip_prefix(prefix) {
        // An id without escapes ends at the first quote; a valid line has
        // no second `id`, so this is the line's id if the line is valid.
        if let Some(end) = rest.find(['"', '\\']) {
            if rest.as_bytes().get(end) == Some(&b'"') {
                return rest.get(..end).map(std::borrow::Cow::Borrowed);
            }
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de::Deserializer::deserialize_map(&mut de, IdVisitor { format })
        .ok()
        .flatten()
}

struct IdVisitor {
    format: Format,
}

impl<'de> Visitor<'de> for IdVisitor {
    type Value = Option<std::borrow::Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let wanted = match self.format {
            Format::Export => "id",
            Format::Twin => "deviceId",
        };
        let mut id = None;
        while let Some(Key(key)) = map.next_key()? {
            if key == wanted && id.is_none() {
                id = Some(map.next_value::<Key<'de>>()?.0);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(id)
    }
}

/// The format of a stream: `forced` if given, else that of its first line
/// that starts with `{`. `None` for a stream with no such line.
///
/// # Errors
///
/// A [`ReadError`] naming `file` when the stream cannot be read or its
/// first JSON line has neither `id` nor `deviceId`.
///
/// # Example
///
/// ```
/// use failback::format::{sniff_format, Format};
///
/// let input = "Warning: export started\n{\"deviceId\":\"d1\"}\n";
/// assert_eq!(sniff_format(input.as_bytes(), "x.jsonl", None)?, Some(Format::Twin));
/// assert_eq!(sniff_format(input.as_bytes(), "x.jsonl", Some(Format::Export))?, Some(Format::Export));
/// # Ok::<(), failback::format::ReadError>(())
/// ```
pub fn sniff_format<R: BufRead>(
    reader: R,
    file: &str,
    forced: Option<Format>,
) -> Result<Option<Format>, ReadError> {
    if forced.is_some() {
        return Ok(forced);
    }
    let mut lines = Lines::new(reader, file.to_owned());
    match lines.next_json() {
        None => Ok(None),
        Some(Err(error)) => Err(error),
        Some(Ok((line, text))) => match detect_format(text) {
            Some(format) => Ok(Some(format)),
            None => {
                let kind = super::raw::syntax_error(text).unwrap_or(ReadErrorKind::UnknownFormat);
                Err(ReadError::new(file, line, kind))
            }
        },
    }
}

/// A file read in its format.
#[derive(Clone, Debug, PartialEq)]
pub enum InputFile {
    /// A bulk export or import file.
    Export(ExportFile),
    /// A twin file.
    Twin(TwinFile),
}

/// Reads a file of either format: `forced`, or the format of its first
/// JSON line. A file with no JSON line at all is an empty export.
///
/// # Errors
///
/// As [`sniff_format`], then as [`read_export`](super::read_export) or
/// [`read_twins`](super::read_twins).
///
/// # Example
///
/// ```no_run
/// use failback::format::{read_input, InputFile};
///
/// match read_input("hub-a.jsonl", None)? {
///     InputFile::Export(export) => println!("export of {} devices", export.devices.len()),
///     InputFile::Twin(twins) => println!("twins of {} devices", twins.devices.len()),
/// }
/// # Ok::<(), failback::format::ReadError>(())
/// ```
pub fn read_input(path: impl AsRef<Path>, forced: Option<Format>) -> Result<InputFile, ReadError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let open = || {
        File::open(path)
            .map(BufReader::new)
            .map_err(|e| ReadError::io(name.clone(), e))
    };
    match sniff_format(open()?, &name, forced)? {
        Some(Format::Twin) => {
            collect_twins(TwinReader::new(open()?, name.clone())).map(InputFile::Twin)
        }
        Some(Format::Export) | None => {
            collect_export(ExportReader::new(open()?, name.clone())).map(InputFile::Export)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_id_reads_the_id_however_the_line_is_written() {
        let id = |text, format| line_id(text, format).map(|c| c.into_owned());
        assert_eq!(
            id(r#"{"id":"d1","status":"enabled"}"#, Format::Export).as_deref(),
            Some("d1")
        );
        assert_eq!(
            id(r#"{"moduleId":"m","id":"d2"}"#, Format::Export).as_deref(),
            Some("d2")
        );
        assert_eq!(
            id(r#"{"id":"a\"b","x":1}"#, Format::Export).as_deref(),
            Some("a\"b")
        );
        assert_eq!(
            id(r#"{ "tags":{"id":"no"}, "id" : "d3" }"#, Format::Export).as_deref(),
            Some("d3")
        );
        assert_eq!(
            id(r#"{"deviceId":"t1","id":"x"}"#, Format::Twin).as_deref(),
            Some("t1")
        );
        assert_eq!(id(r#"{"deviceId":"t1"}"#, Format::Export), None);
        assert_eq!(id(r#"{"id":7}"#, Format::Export), None);
        assert_eq!(id(r#"{"id":"x""#, Format::Export).as_deref(), Some("x"));
        assert_eq!(id("{\"id\":\"trunc", Format::Export), None);
    }
    #[test]
    fn format_names_parse_and_display() {
        for format in [Format::Export, Format::Twin] {
            assert_eq!(format.as_str().parse::<Format>(), Ok(format));
            assert_eq!(format.to_string(), format.as_str());
        }
        assert_eq!(Format::Export.as_str(), "export");
        assert_eq!(
            "Twin".parse::<Format>().map_err(|e| e.to_string()),
            Err(r#"unknown format "Twin", expected "export" or "twin""#.to_owned())
        );
    }

    #[test]
    fn a_stream_takes_the_format_of_its_first_json_line() {
        let sniff =
            |text: &str| sniff_format(text.as_bytes(), "f", None).map_err(|e| e.to_string());
        assert_eq!(
            sniff("note\n{\"id\":\"d\"}\n{\"deviceId\":\"d\"}\n"),
            Ok(Some(Format::Export))
        );
        assert_eq!(sniff("{\"deviceId\":\"d\"}\n"), Ok(Some(Format::Twin)));
        assert_eq!(sniff("only warnings\n"), Ok(None));
        assert_eq!(
            sniff("{\"hello\":1}\n"),
            Err(r#"f:1: cannot tell the format: the first JSON line has neither "id" nor "deviceId""#.to_owned())
        );
        assert_eq!(
            sniff("\n{oops\n"),
            Err("f:2: invalid JSON at column 2: key must be a string".to_owned())
        );
    }
}
