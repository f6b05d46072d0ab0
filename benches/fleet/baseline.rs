//! The yardstick: serde_json into typed structs, no merge. Reads the three
//! files line by line into [`Line`]s and writes one of them back, either
//! holding every line in memory or one line at a time.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An export line as typed structs; twin sections stay JSON maps (they
/// are free-form in IoT Hub too).
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    module_id: Option<String>,
    #[serde(rename = "eTag", default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authentication: Option<Auth>,
    #[serde(rename = "twinETag", default, skip_serializing_if = "Option::is_none")]
    twin_etag: Option<String>,
    #[serde(default)]
    tags: Map<String, Value>,
    #[serde(default)]
    properties: Properties,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    capabilities: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent_scopes: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct Properties {
    #[serde(default)]
    desired: Map<String, Value>,
    #[serde(default)]
    reported: Map<String, Value>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Capabilities {
    iot_edge: bool,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Auth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    symmetric_key: Option<Keys>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x509_thumbprint: Option<Thumbprints>,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Keys {
    primary_key: Option<String>,
    secondary_key: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Thumbprints {
    primary_thumbprint: Option<String>,
    secondary_thumbprint: Option<String>,
}

/// Calls `f` with each typed line of `path` (warning lines skipped).
fn each_line(path: &Path, mut f: impl FnMut(Line)) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(1 << 16, File::open(path)?);
    let mut text = String::new();
    loop {
        text.clear();
        if reader.read_line(&mut text)? == 0 {
            return Ok(());
        }
        if !text.starts_with('{') {
            continue;
        }
        f(serde_json::from_str(&text).map_err(std::io::Error::other)?);
    }
}

/// Reads the three files whole, then writes the first hub back.
pub fn in_memory(inputs: &[&Path; 3], out: &Path) -> std::io::Result<usize> {
    let mut files: Vec<Vec<Line>> = Vec::new();
    for path in inputs {
        let mut lines = Vec::new();
        each_line(path, |l| lines.push(l))?;
        files.push(lines);
    }
    let mut w = BufWriter::with_capacity(1 << 16, File::create(out)?);
    let written = files[1].len();
    for line in &files[1] {
        serde_json::to_writer(&mut w, line)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(written)
}

/// Reads the three files one line at a time, writing the first hub's
/// lines back as they come.
pub fn streaming(inputs: &[&Path; 3], out: &Path) -> std::io::Result<usize> {
    let mut w = BufWriter::with_capacity(1 << 16, File::create(out)?);
    let mut written = 0;
    for (n, path) in inputs.iter().enumerate() {
        let mut result = Ok(());
        each_line(path, |line| {
            if n == 1 && result.is_ok() {
                written += 1;
                result = serde_json::to_writer(&mut w, &line)
                    .map_err(std::io::Error::other)
                    .and_then(|()| w.write_all(b"\n"));
            }
            std::hint::black_box(&line);
        })?;
        result?;
    }
    w.flush()?;
    Ok(written)
}
