//! The failback policies: how concurrent writes to each field resolve.
//!
//! Merging never applies a policy: registers keep concurrent writes as
//! siblings and the policy is applied when the state is read. So a policy
//! can be changed per run without touching the state, the merge stays a
//! plain join, and the conflict log is a function of the merged state.

use serde::{Deserialize, Serialize};

/// How concurrent `status` writes resolve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatusPolicy {
    /// Policy 1: a concurrent `disabled` beats `enabled`; a device leaves
    /// `disabled` only through a write that had seen the disable.
    #[default]
    DisabledWins,
    /// The write with the highest stamp wins.
    LatestWins,
}

/// How a delete and a concurrent update of the same device resolve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeletePolicy {
    /// Policy 2: the device stays deleted; the update is logged.
    #[default]
    DeleteWins,
    /// The device survives with the update; the delete is logged.
    UpdateWins,
}

/// The policies a read applies. `Policies::default()` is the
/// [contract](crate::contract#policies).
///
/// `authentication` always resolves as one whole value by stamp and twin
/// leaves by stamp: those are not choices, they are what keeps keys from
/// being mixed and trees valid.
///
/// # Example
///
/// ```
/// use failback::doc::{DeletePolicy, Policies};
///
/// let team = Policies { delete: DeletePolicy::UpdateWins, ..Policies::default() };
/// assert_ne!(team, Policies::default());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policies {
    /// For `status`.
    pub status: StatusPolicy,
    /// For deletes against concurrent updates.
    pub delete: DeletePolicy,
}
