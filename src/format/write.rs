//! Writing one JSON object with its fields in a fixed order.

use std::io::{self, Write};

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::doc::{JsonMap, MetaTree};

use super::raw::format_time;

/// An object being written, field by field.
pub(crate) struct Obj<'w, W: Write> {
    w: &'w mut W,
    first: bool,
}

impl<'w, W: Write> Obj<'w, W> {
    pub(crate) fn open(w: &'w mut W) -> io::Result<Self> {
        w.write_all(b"{")?;
        Ok(Self { w, first: true })
    }

    pub(crate) fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> io::Result<()> {
        if !std::mem::replace(&mut self.first, false) {
            self.w.write_all(b",")?;
        }
        serde_json::to_writer(&mut *self.w, name)?;
        self.w.write_all(b":")?;
        serde_json::to_writer(&mut *self.w, value)?;
        Ok(())
    }

    pub(crate) fn opt<T: Serialize>(&mut self, name: &str, value: Option<T>) -> io::Result<()> {
        match value {
            Some(value) => self.field(name, &value),
            None => Ok(()),
        }
    }

    /// Closes the object and ends the line.
    pub(crate) fn close_line(self) -> io::Result<()> {
        self.w.write_all(b"}\n")
    }
}

/// `properties` with its two sections, each with its metadata when given.
pub(crate) struct Properties<'a> {
    pub(crate) desired: Section<'a>,
    pub(crate) reported: Section<'a>,
}

impl Serialize for Properties<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("desired", &self.desired)?;
        map.serialize_entry("reported", &self.reported)?;
        map.end()
    }
}

/// A twin section followed by its `$metadata`, if any.
pub(crate) struct Section<'a> {
    pub(crate) map: &'a JsonMap,
    pub(crate) meta: Option<&'a MetaTree>,
}

impl Serialize for Section<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let meta = self.meta.filter(|m| **m != MetaTree::default());
        let mut map = s.serialize_map(Some(self.map.len() + usize::from(meta.is_some())))?;
        for (key, value) in self.map {
            map.serialize_entry(key, value)?;
        }
        if let Some(meta) = meta {
            map.serialize_entry("$metadata", &Meta(meta))?;
        }
        map.end()
    }
}

/// A metadata node: `$lastUpdated` then its children.
struct Meta<'a>(&'a MetaTree);

impl Serialize for Meta<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(time) = self.0.last_updated.and_then(format_time) {
            map.serialize_entry("$lastUpdated", &time)?;
        }
        for (key, child) in &self.0.children {
            map.serialize_entry(key, &Meta(child))?;
        }
        map.end()
    }
}
