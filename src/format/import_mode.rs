//! `importMode`: what a hub does with one line of an import file.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `importMode` of an import line: what the hub does with it.
///
/// All nine modes are read; plans use the guarded ones (`...IfMatchETag`),
/// so a hub that changed again meanwhile is not clobbered.
///
/// # Example
///
/// ```
/// use failback::format::ImportMode;
///
/// let mode: ImportMode = serde_json::from_str(r#""updateTwinIfMatchETag""#)?;
/// assert_eq!(mode, ImportMode::UpdateTwinIfMatchETag);
/// assert_eq!(ImportMode::default(), ImportMode::CreateOrUpdate);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum ImportMode {
    /// Create, or overwrite without an etag check. The default.
    #[default]
    CreateOrUpdate,
    /// Create; an error if the device exists.
    Create,
    /// Overwrite without an etag check; an error if the device is absent.
    Update,
    /// Overwrite if `eTag` matches.
    UpdateIfMatchETag,
    /// Create, or overwrite if `eTag` matches.
    CreateOrUpdateIfMatchETag,
    /// Delete.
    Delete,
    /// Delete if `eTag` matches.
    DeleteIfMatchETag,
    /// Overwrite the twin without an etag check.
    UpdateTwin,
    /// Overwrite the twin if `twinETag` matches.
    UpdateTwinIfMatchETag,
}

impl ImportMode {
    /// Every mode, in declaration order.
    pub const ALL: [ImportMode; 9] = [
        ImportMode::CreateOrUpdate,
        ImportMode::Create,
        ImportMode::Update,
        ImportMode::UpdateIfMatchETag,
        ImportMode::CreateOrUpdateIfMatchETag,
        ImportMode::Delete,
        ImportMode::DeleteIfMatchETag,
        ImportMode::UpdateTwin,
        ImportMode::UpdateTwinIfMatchETag,
    ];

    /// The name in an import file, such as `updateTwinIfMatchETag`.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::ImportMode;
    ///
    /// assert_eq!(ImportMode::DeleteIfMatchETag.as_str(), "deleteIfMatchETag");
    /// assert_eq!(ImportMode::UpdateTwin.to_string(), "updateTwin");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ImportMode::CreateOrUpdate => "createOrUpdate",
            ImportMode::Create => "create",
            ImportMode::Update => "update",
            ImportMode::UpdateIfMatchETag => "updateIfMatchETag",
            ImportMode::CreateOrUpdateIfMatchETag => "createOrUpdateIfMatchETag",
            ImportMode::Delete => "delete",
            ImportMode::DeleteIfMatchETag => "deleteIfMatchETag",
            ImportMode::UpdateTwin => "updateTwin",
            ImportMode::UpdateTwinIfMatchETag => "updateTwinIfMatchETag",
        }
    }

    /// The mode named `name`, in any case, as the hub reads it (the Node
    /// SDK writes `UpdateIfMatchETag`).
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::ImportMode;
    ///
    /// assert_eq!(ImportMode::from_name("deleteIfMatchETag"), Some(ImportMode::DeleteIfMatchETag));
    /// assert_eq!(ImportMode::from_name("DeleteIfMatchETag"), Some(ImportMode::DeleteIfMatchETag));
    /// assert_eq!(ImportMode::from_name("deleteIfMatch"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|mode| mode.as_str().eq_ignore_ascii_case(name))
    }

    /// Whether a line in this mode carries a whole identity, so that
    /// `status` is required on a device line.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::format::ImportMode;
    ///
    /// assert!(ImportMode::CreateOrUpdateIfMatchETag.writes_identity());
    /// assert!(!ImportMode::UpdateTwinIfMatchETag.writes_identity());
    /// assert!(!ImportMode::Delete.writes_identity());
    /// ```
    pub fn writes_identity(self) -> bool {
        matches!(
            self,
            ImportMode::CreateOrUpdate
                | ImportMode::Create
                | ImportMode::Update
                | ImportMode::UpdateIfMatchETag
                | ImportMode::CreateOrUpdateIfMatchETag
        )
    }
}

impl fmt::Display for ImportMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_import_mode_has_its_name() {
        for mode in ImportMode::ALL {
            let json = serde_json::to_string(&mode).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", mode.as_str()));
            assert_eq!(ImportMode::from_name(mode.as_str()), Some(mode));
        }
    }
}
