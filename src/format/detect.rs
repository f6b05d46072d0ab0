//! Telling the shape of a device file by its first JSON record: an export
//! (or import) line, a twin, or a registry identity.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::str::FromStr;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use super::lines::Lines;
use super::raw::Key;
use super::{
    DeviceFile, ExportReader, IdentityReader, ReadError, ReadErrorKind, TwinReader, collect_export,
    collect_identities, collect_twins,
};

/// The shapes a hub's devices come in.
///
/// [`read_input`] tells a file's format by its first JSON line, or takes
/// one forced by name, as a command line gives it.
///
/// # Example
///
/// ```
/// use failback::format::Format;
///
/// let forced: Format = "twin".parse()?;
/// assert_eq!(forced, Format::Twin);
/// assert_eq!(forced.to_string(), "twin");
/// assert!("devices".parse::<Format>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// Bulk export / import lines: `id`, `moduleId`, `eTag`, ...
    Export,
    /// Twins, as the query and get-twin APIs return them (the 2016 shape,
    /// with `generationId` and no `etag`, included): `deviceId`, `etag`,
    /// `deviceEtag`, `$metadata`, ... No keys.
    Twin,
    /// Registry identities, as `GET /devices/{id}` and `az iot hub
    /// device-identity show` / `list` return them: `deviceId`,
    /// `generationId`, `etag`, `authentication`, ... No twin.
    Identity,
}

impl Format {
    /// `export`, `twin` or `identity`.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::Format;
    ///
    /// assert_eq!(Format::Export.as_str(), "export");
    /// assert_eq!(Format::Identity.as_str(), "identity");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Export => "export",
            Format::Twin => "twin",
            Format::Identity => "identity",
        }
    }

    /// Whether the format carries keys (`authentication`).
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::Format;
    ///
    /// assert!(Format::Export.carries_keys() && Format::Identity.carries_keys());
    /// assert!(!Format::Twin.carries_keys());
    /// ```
    pub fn carries_keys(self) -> bool {
        !matches!(self, Format::Twin)
    }

    /// Whether the format carries twins (`tags`, `properties`).
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::Format;
    ///
    /// assert!(Format::Export.carries_twins() && Format::Twin.carries_twins());
    /// assert!(!Format::Identity.carries_twins());
    /// ```
    pub fn carries_twins(self) -> bool {
        !matches!(self, Format::Identity)
    }

    /// The key that holds a record's device id.
    pub(crate) fn id_key(self) -> &'static str {
        match self {
            Format::Export => "id",
            Format::Twin | Format::Identity => "deviceId",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A name that is none of `export`, `twin`, `identity`: the error of
/// parsing a [`Format`].
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::format::{Format, UnknownFormatName};
///
/// let err = "devices".parse::<Format>().unwrap_err();
/// assert_eq!(err, UnknownFormatName("devices".into()));
/// assert_eq!(err.to_string(), r#"unknown format "devices", expected "export", "twin" or "identity""#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {0:?}, expected \"export\", \"twin\" or \"identity\"")]
pub struct UnknownFormatName(pub String);

impl FromStr for Format {
    type Err = UnknownFormatName;

    /// Parses `export`, `twin` or `identity`, as a command line forces a
    /// format.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "export" => Ok(Format::Export),
            "twin" => Ok(Format::Twin),
            "identity" => Ok(Format::Identity),
            _ => Err(UnknownFormatName(name.to_owned())),
        }
    }
}

/// The format of one JSON record: [`Format::Export`] when its object has
/// a top-level `id` and no `deviceId`; with `deviceId`,
/// [`Format::Identity`] when it has `authentication` (twins have
/// `authenticationType`), or no twin sections but a field only identities
/// have (`generationId`, `statusUpdatedTime`, `connectionStateUpdatedTime`),
/// and [`Format::Twin`] otherwise; `None` when it has neither id or is not
/// a JSON object.
///
/// Only the top-level keys are looked at; values are skipped unparsed.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::format::{detect_format, Format};
///
/// assert_eq!(detect_format(r#"{"id":"d1","status":"enabled"}"#), Some(Format::Export));
/// assert_eq!(detect_format(r#"{"properties":{},"deviceId":"d1"}"#), Some(Format::Twin));
/// assert_eq!(detect_format(r#"{"deviceId":"d1","authentication":{"type":"sas"}}"#), Some(Format::Identity));
/// assert_eq!(detect_format(r#"{"deviceId":"d1","generationId":"6","properties":{}}"#), Some(Format::Twin));
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
        let (mut device_id, mut id, mut auth, mut twin, mut identity_only) =
            (false, false, false, false, false);
        while let Some(Key(key)) = map.next_key()? {
            match key.as_ref() {
                "deviceId" => device_id = true,
                "id" => id = true,
                "authentication" => auth = true,
                "tags" | "properties" | "version" | "$version" => twin = true,
                "generationId" | "statusUpdatedTime" | "connectionStateUpdatedTime" => {
                    identity_only = true;
                }
                _ => {}
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(match (device_id, id) {
            (true, _) if auth || (identity_only && !twin) => Some(Format::Identity),
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
        Format::Twin | Format::Identity => "{\"deviceId\":\"",
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
        let wanted = self.format.id_key();
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
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
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

/// A file read in its format, as [`read_input`] returns it.
///
/// # Example
///
/// ```
/// use failback::format::{parse_input, InputFile};
///
/// let text = r#"{"deviceId":"thermostat-7","etag":"AAAAAAAAAAE=","version":2}"#;
/// let InputFile::Twin(twins) = parse_input("twins.jsonl", text.as_bytes(), None)? else {
///     panic!("a twin file");
/// };
/// assert_eq!(twins.devices["thermostat-7"].meta.version, Some(2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum InputFile {
    /// A bulk export or import file.
    Export(DeviceFile),
    /// A twin file.
    Twin(DeviceFile),
    /// A file of registry identities, grouped as an export (no twins).
    Identity(DeviceFile),
}

/// Reads a file of either format: `forced`, or the format of its first
/// JSON line. A file with no JSON line at all is an empty export.
///
/// # Errors
///
/// A [`ReadError`](super::ReadError) naming the file when it cannot be
/// opened or read, or its first JSON line has neither `id` nor
/// `deviceId`; then as [`read_export`](super::read_export) or
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
///     InputFile::Identity(ids) => println!("identities of {} devices", ids.devices.len()),
/// }
/// # Ok::<(), failback::format::ReadError>(())
/// ```
pub fn read_input(path: impl AsRef<Path>, forced: Option<Format>) -> Result<InputFile, ReadError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    read_twice(&name, forced, || {
        File::open(path)
            .map(BufReader::new)
            .map_err(|e| ReadError::io(name.clone(), e))
    })
}

/// Reads the text of a whole file held in memory, named `file` in errors,
/// as [`read_input`] reads a file: in the format `forced`, or that of its
/// first JSON line.
///
/// # Errors
///
/// As [`read_input`], but for opening a file.
///
/// # Example
///
/// ```
/// use failback::format::{parse_input, Format, InputFile};
///
/// let text = concat!(
///     "Warning: export started\n",
///     r#"{"id":"thermostat-7","eTag":"MQ==","status":"disabled","statusReason":"stolen"}"#, "\n",
/// );
/// let InputFile::Export(export) = parse_input("devices.txt", text.as_bytes(), None)? else {
///     panic!("an export");
/// };
/// assert_eq!(export.skipped, 1);
/// assert_eq!(export.devices["thermostat-7"].meta.etag.as_deref(), Some("MQ=="));
///
/// let err = parse_input("twins.jsonl", text.as_bytes(), Some(Format::Twin)).unwrap_err();
/// assert!(err.to_string().starts_with("twins.jsonl:2:"));
/// # Ok::<(), failback::format::ReadError>(())
/// ```
pub fn parse_input(
    file: &str,
    text: &[u8],
    forced: Option<Format>,
) -> Result<InputFile, ReadError> {
    read_twice(file, forced, || Ok(text))
}

/// Reads the stream `open` gives twice: once for its format, once in it.
fn read_twice<R: BufRead>(
    name: &str,
    forced: Option<Format>,
    open: impl Fn() -> Result<R, ReadError>,
) -> Result<InputFile, ReadError> {
    let name = name.to_owned();
    match sniff_format(open()?, &name, forced)? {
        Some(Format::Twin) => collect_twins(TwinReader::new(open()?, name)).map(InputFile::Twin),
        Some(Format::Identity) => {
            collect_identities(IdentityReader::new(open()?, name)).map(InputFile::Identity)
        }
        Some(Format::Export) | None => {
            collect_export(ExportReader::new(open()?, name)).map(InputFile::Export)
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
        for format in [Format::Export, Format::Twin, Format::Identity] {
            assert_eq!(format.as_str().parse::<Format>(), Ok(format));
            assert_eq!(format.to_string(), format.as_str());
        }
        assert_eq!(Format::Export.as_str(), "export");
        assert_eq!(
            "Twin".parse::<Format>().map_err(|e| e.to_string()),
            Err(r#"unknown format "Twin", expected "export", "twin" or "identity""#.to_owned())
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
