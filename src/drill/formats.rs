//! The file each hub's state is read from at failback, drawn per hub and
//! cycle from the seed: an export with keys (an import/export job with
//! `--include-keys`), a twin file (`az iot hub query`: no keys) or an
//! identity file (`az iot hub device-identity list`: no twin).
//!
//! What a file cannot show is what the merge cannot know: the drill feeds
//! the merge what the file carries, fills what it lacks from the base as
//! `failback merge` does ([`fill_in_place`](crate::reconcile)), and checks
//! the invariants on every value some input could show.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use super::oracle::{Field, Hub};
use super::rng::Rng;
use super::sim::stream;
use crate::doc::{DeviceSnapshot, Entity};
use crate::format::{DeviceEtags, write_identity_line, write_twin_record};
use crate::reconcile::{HeldDevice, Record};

/// The file a hub's state is read from at failback.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExportFormat {
    /// A bulk export with keys (JSON lines): every field.
    #[default]
    Keys,
    /// Twins as the registry query prints them (one JSON array): no keys.
    Twin,
    /// Registry identities as `az iot hub device-identity list` prints
    /// them (one JSON array): keys, no twin.
    Identity,
}

impl ExportFormat {
    /// Every format, in the order draws index them.
    pub const ALL: [ExportFormat; 3] = [Self::Keys, Self::Twin, Self::Identity];

    /// The format's name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Keys => "keys",
            Self::Twin => "twin",
            Self::Identity => "identity",
        }
    }

    /// Whether the file carries `authentication`.
    pub fn carries_keys(self) -> bool {
        self != Self::Twin
    }

    /// Whether the file carries twins (`tags`, `desired`, `reported`) and
    /// their etags.
    pub fn carries_twin(self) -> bool {
        self != Self::Identity
    }

    /// Whether the file shows a value written at `field`.
    pub(crate) fn shows(self, field: &Field) -> bool {
        match field {
            Field::Auth => self.carries_keys(),
            Field::Twin(..) => self.carries_twin(),
            Field::Status | Field::Identity(_) => true,
        }
    }

    /// Writes the opening of a file of this format.
    pub(crate) fn begin(self, w: &mut Vec<u8>) {
        if self != Self::Keys {
            w.extend_from_slice(b"[\n");
        }
    }

    /// Writes the end of a file of this format.
    pub(crate) fn end(self, w: &mut Vec<u8>) {
        if self != Self::Keys {
            w.extend_from_slice(b"]\n");
        }
    }

    /// Writes the records of one device as a file of this format holds
    /// them: the device's, then its modules'. `first` says whether none
    /// was written yet (array files separate records with commas).
    pub(crate) fn write(
        self,
        w: &mut Vec<u8>,
        device: &HeldDevice<'_>,
        first: &mut bool,
    ) -> io::Result<()> {
        if self == Self::Keys {
            return device.write_export(w);
        }
        let records = device
            .device
            .map(|r| (None, r))
            .into_iter()
            .chain(device.modules.iter().map(|(m, r)| (Some(m.as_str()), r)));
        for (module, record) in records {
            if !std::mem::replace(first, false) {
                w.write_all(b",")?;
            }
            match self {
                Self::Twin => write_twin_record(
                    w,
                    device.id,
                    module,
                    &record.twin_etag,
                    &record.etag,
                    &record.entity,
                )?,
                _ => write_identity_line(w, device.id, module, Some(&record.etag), &record.entity)?,
            }
        }
        Ok(())
    }

    /// Whether `held`'s records are what a file of this format shows of
    /// `device` with `etags`: each record's etags the file carries, and its
    /// entity in every field the file shows. `device` may hold more where
    /// the file shows nothing (what the merge was told from the base).
    pub(crate) fn shows_as(
        self,
        held: &HeldDevice<'_>,
        device: &DeviceSnapshot,
        etags: DeviceEtags<'_>,
    ) -> bool {
        let same = |r: &Record, entity: &Entity, etag: Option<&str>, twin: Option<&str>| {
            r.etag == etag.unwrap_or("")
                && (!self.carries_twin() || r.twin_etag == twin.unwrap_or(""))
                && self.same_shown(&r.entity, entity)
        };
        let modules = &device.modules;
        held.device
            .is_some_and(|r| same(r, &device.device, etags.etag, etags.twin_etag))
            && held.modules.len() == modules.len()
            && held.modules.iter().zip(modules).all(|((m, r), (em, e))| {
                let of = etags.modules.and_then(|t| t.get(em));
                m == em
                    && same(
                        r,
                        e,
                        of.and_then(|t| t.etag.as_deref()),
                        of.and_then(|t| t.twin_etag.as_deref()),
                    )
            })
    }

    /// Whether two entities agree on every field this format shows.
    pub(crate) fn same_shown(self, a: &Entity, b: &Entity) -> bool {
        match self {
            Self::Keys => a == b,
            _ => {
                a.status == b.status
                    && a.capabilities == b.capabilities
                    && a.device_scope == b.device_scope
                    && a.parent_scopes == b.parent_scopes
                    && (!self.carries_keys() || a.authentication == b.authentication)
                    && (!self.carries_twin() || !crate::reconcile::twin_differs(a, b))
            }
        }
    }

    /// Whether a device read from a file of this format holds nothing the
    /// file cannot show: no keys in a twin file, no twin in an identity
    /// file, no unknown fields in either.
    pub(crate) fn holds_only_shown(self, device: &DeviceSnapshot) -> bool {
        let shown = |e: &Entity| {
            (self.carries_keys() || e.authentication.is_none())
                && (self.carries_twin()
                    || (e.tags.is_empty() && e.desired.is_empty() && e.reported.is_empty()))
                && (self == Self::Keys || e.extra.is_empty())
        };
        shown(&device.device) && device.modules.values().all(shown)
    }

    /// Forgets, in place, what a file of this format does not show: what
    /// was filled in from the base. The device is then as the file gave
    /// it, to be filled again from another base.
    pub(crate) fn forget_unshown(self, device: &mut DeviceSnapshot) {
        let forget = |e: &mut Entity| {
            if !self.carries_keys() {
                e.authentication = None;
            }
            if !self.carries_twin() {
                e.tags.clear();
                e.desired.clear();
                e.reported.clear();
            }
        };
        forget(&mut device.device);
        device.modules.values_mut().for_each(forget);
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Which files the hubs' states are read from at failback:
/// `--export-formats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExportFormats {
    /// Every hub, every cycle, one format.
    Only(ExportFormat),
    /// Each hub's format drawn per cycle from the seed.
    #[default]
    Mixed,
}

impl ExportFormats {
    /// The name on the command line: a format's, or `mixed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Only(format) => format.name(),
            Self::Mixed => "mixed",
        }
    }

    /// The formats of each hub in cycle `c`, primary first.
    pub(crate) fn draw(self, seed: u64, c: usize) -> [ExportFormat; 2] {
        match self {
            Self::Only(format) => [format; 2],
            Self::Mixed => {
                let mut rng = Rng::derive(seed, &[stream::FORMATS, c as u64]);
                Hub::BOTH.map(|_| {
                    let all = ExportFormat::ALL;
                    rng.pick(&all).copied().unwrap_or_default()
                })
            }
        }
    }
}

impl fmt::Display for ExportFormats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// An `--export-formats` value that is none of the known ones.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown export format {0:?}: expected keys, twin, identity or mixed")]
pub struct UnknownExportFormats(pub String);

impl FromStr for ExportFormats {
    type Err = UnknownExportFormats;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "mixed" {
            return Ok(Self::Mixed);
        }
        ExportFormat::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .map(Self::Only)
            .ok_or_else(|| UnknownExportFormats(s.to_owned()))
    }
}

/// How the hubs' files went at each failback, summed over the fleet's
/// shards (the drill merges a fleet by shards of [`SHARD`](super::SHARD)
/// devices, each as a merge of its own).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FormatCounts {
    /// Per cycle.
    pub cycles: Vec<CycleFormats>,
}

/// How the hubs' files went at one failback.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CycleFormats {
    /// Shards merged.
    pub shards: u64,
    /// Shards whose merge was refused: its plans would have written
    /// identities whose keys no input knew.
    pub refused: u64,
    /// The import lines those plans would have written without keys.
    pub keyless_lines: u64,
    /// Per hub, primary first: the shards in which it was exported again,
    /// with keys, after a refusal.
    pub reexported: [u64; 2],
}

impl FormatCounts {
    /// Counts one shard's failback of cycle `c`.
    pub(crate) fn count(&mut self, c: usize, refusal: &super::failback::Refusal) {
        if self.cycles.len() <= c {
            self.cycles.resize(c + 1, CycleFormats::default());
        }
        if let Some(cycle) = self.cycles.get_mut(c) {
            cycle.shards += 1;
            if refusal.lines > 0 {
                cycle.refused += 1;
                cycle.keyless_lines += refusal.lines;
            }
            for (n, again) in cycle.reexported.iter_mut().zip(refusal.reexported) {
                *n += u64::from(again);
            }
        }
    }

    /// Adds another part's counts.
    pub fn add(&mut self, other: &FormatCounts) {
        if self.cycles.len() < other.cycles.len() {
            self.cycles
                .resize(other.cycles.len(), CycleFormats::default());
        }
        for (mine, theirs) in self.cycles.iter_mut().zip(&other.cycles) {
            mine.shards += theirs.shards;
            mine.refused += theirs.refused;
            mine.keyless_lines += theirs.keyless_lines;
            for (a, b) in mine.reexported.iter_mut().zip(theirs.reexported) {
                *a += b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_draws_every_format_for_each_hub_and_repeats_from_the_seed() {
        let drawn: std::collections::BTreeSet<(usize, ExportFormat)> = (0..30)
            .flat_map(|seed| {
                let formats = ExportFormats::Mixed.draw(seed, 0);
                assert_eq!(formats, ExportFormats::Mixed.draw(seed, 0));
                formats.into_iter().enumerate()
            })
            .collect();
        assert_eq!(drawn.len(), 6, "{drawn:?}");
        assert_eq!(
            ExportFormats::Only(ExportFormat::Twin).draw(3, 1),
            [ExportFormat::Twin; 2]
        );
        for name in ["keys", "twin", "identity", "mixed"] {
            assert_eq!(name.parse::<ExportFormats>().map(|f| f.as_str()), Ok(name));
        }
        assert!("json".parse::<ExportFormats>().is_err());
    }
}
