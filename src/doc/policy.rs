//! The failback policies: how concurrent writes to each field resolve.
//!
//! Merging never applies a policy: registers keep concurrent writes as
//! siblings and the policy is applied when the state is read. So a policy
//! can be changed per run without touching the state, the merge stays a
//! plain join, and the conflict log is a function of the merged state.

use serde::{Deserialize, Serialize};

/// How concurrent `status` writes resolve.
///
/// # Example
///
/// ```
/// use failback::doc::{DeviceSnapshot, HubState, Policies, Status, StatusPolicy, StatusValue};
/// use failback::{ReplicaId, Stamp};
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let device = DeviceSnapshot::enabled_sas("thermostat-7", "cHJpbWFyeQAAAAAAAAAAAA==", "c2Vjb25kYXJ5AAAAAAAAAA==");
/// let mut primary = HubState::new();
/// primary.put_device(&device, &Stamp::new(1, 0, p.clone()), None);
/// let mut secondary = primary.clone();
/// let mut disabled = device.clone();
/// disabled.device.status = Some(StatusValue { status: Status::Disabled, reason: None });
/// secondary.put_device(&disabled, &Stamp::new(2, 0, s), None);
/// let mut enabled = device.clone();
/// enabled.device.status = Some(StatusValue { status: Status::Enabled, reason: Some("repaired".into()) });
/// primary.put_device(&enabled, &Stamp::new(3, 0, p), None); // concurrent, and later
/// primary.try_merge(&secondary)?;
///
/// let status = |policy| {
///     let policies = Policies { status: policy, ..Policies::default() };
///     primary.read_device("thermostat-7", &policies, &mut Vec::new())?.device.status.map(|s| s.status)
/// };
/// assert_eq!(status(StatusPolicy::DisabledWins), Some(Status::Disabled));
/// assert_eq!(status(StatusPolicy::LatestWins), Some(Status::Enabled));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
///
/// # Example
///
/// ```
/// use failback::doc::{DeletePolicy, DeviceSnapshot, HubState, Policies};
/// use failback::{ReplicaId, Stamp};
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let mut device = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
/// let mut primary = HubState::new();
/// primary.put_device(&device, &Stamp::new(1, 0, p.clone()), None);
/// let mut secondary = primary.clone();
/// primary.delete_device("thermostat-7", &Stamp::new(2, 0, p));
/// device.device.tags.insert("site".into(), "lyon".into());
/// secondary.put_device(&device, &Stamp::new(3, 0, s), None); // concurrent update
/// primary.try_merge(&secondary)?;
///
/// let update_wins = Policies { delete: DeletePolicy::UpdateWins, ..Policies::default() };
/// assert!(primary.read_device("thermostat-7", &Policies::default(), &mut Vec::new()).is_none());
/// let kept = primary.read_device("thermostat-7", &update_wins, &mut Vec::new());
/// assert_eq!(kept.map(|d| d.device.tags["site"].clone()), Some("lyon".into()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
