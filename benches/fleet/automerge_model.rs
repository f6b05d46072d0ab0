//! The anchor model: one automerge document per device. Each device's
//! lines (device and modules) become one JSON object; the base is built
//! once and forked for each hub, each hub writes its version, and the two
//! forks are merged.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

use failback::ReplicaId;
use failback::appmeta::AppDocument;
use serde_json::{Map, Value};

/// The devices of a file sorted by id, one at a time: `(id, lines)`.
struct Devices {
    lines: std::io::Lines<BufReader<File>>,
    pending: Option<(String, Value)>,
}

impl Devices {
    fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            lines: BufReader::with_capacity(1 << 16, File::open(path)?).lines(),
            pending: None,
        })
    }

    fn next_line(&mut self) -> Option<(String, Value)> {
        for text in self.lines.by_ref() {
            let text = text.ok()?;
            if !text.starts_with('{') {
                continue;
            }
            let mut value: Value = serde_json::from_str(&text).ok()?;
            let obj = value.as_object_mut()?;
            let id = obj.remove("id")?.as_str()?.to_owned();
            let key = match obj.remove("moduleId") {
                Some(Value::String(m)) => m,
                _ => "device".to_owned(),
            };
            let mut one = Map::new();
            one.insert(key, value);
            return Some((id, Value::Object(one)));
        }
        None
    }

    /// The next device: its lines as one object keyed by module id
    /// (`device` for the device line).
    fn next_device(&mut self) -> Option<(String, Value)> {
        let (id, mut doc) = self.pending.take().or_else(|| self.next_line())?;
        while let Some((next, line)) = self.next_line() {
            if next != id {
                self.pending = Some((next, line));
                break;
            }
            if let (Some(all), Value::Object(one)) = (doc.as_object_mut(), line) {
                all.extend(one);
            }
        }
        Some((id, doc))
    }
}

/// What the model cost.
pub struct Figures {
    /// Building the base documents and forking them into the hubs' edits.
    pub build: Duration,
    /// Merging the forks and reading each merged document.
    pub merge: Duration,
    /// Live heap bytes the forks hold, per device.
    pub heap_per_device: f64,
    /// Device ids merged.
    pub devices: usize,
}

/// Runs the model on the three sorted files. `live` reads live heap bytes.
pub fn run(inputs: &[&Path; 3], live: impl Fn() -> usize) -> std::io::Result<Figures> {
    let replicas = ["base", "primary", "secondary"].map(|n| ReplicaId::new(n).expect("valid"));
    let mut files = Vec::new();
    for path in inputs {
        files.push(Devices::open(path)?);
    }
    let mut heads: Vec<Option<(String, Value)>> =
        files.iter_mut().map(Devices::next_device).collect();
    let empty = Value::Object(Map::new());
    let before = live();
    let start = Instant::now();
    let mut forks: Vec<(AppDocument, AppDocument)> = Vec::new();
    while let Some(id) = heads.iter().flatten().map(|(id, _)| id.clone()).min() {
        let mut docs: Vec<Option<Value>> = Vec::new();
        for (head, file) in heads.iter_mut().zip(files.iter_mut()) {
            if head.as_ref().is_some_and(|(h, _)| *h == id) {
                docs.push(head.take().map(|(_, doc)| doc));
                *head = file.next_device();
            } else {
                docs.push(None);
            }
        }
        let base = match &docs[0] {
            Some(doc) => {
                AppDocument::from_json(&replicas[0], doc).map_err(std::io::Error::other)?
            }
            None => AppDocument::new(),
        };
        let mut sides = [base.clone(), base];
        for (side, doc) in sides.iter_mut().enumerate() {
            let value = docs[side + 1].as_ref().unwrap_or(&empty);
            doc.set_json(&replicas[side + 1], value)
                .map_err(std::io::Error::other)?;
        }
        let [p, s] = sides;
        forks.push((p, s));
    }
    let build = start.elapsed();
    let held = live().saturating_sub(before);
    let start = Instant::now();
    for (p, s) in &mut forks {
        p.try_merge(s).map_err(std::io::Error::other)?;
        std::hint::black_box(p.to_json());
    }
    let merge = start.elapsed();
    Ok(Figures {
        build,
        merge,
        heap_per_device: held as f64 / forks.len().max(1) as f64,
        devices: forks.len(),
    })
}
