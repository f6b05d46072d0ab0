//! The conflict log: every concurrent write that lost, and why.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::{ReplicaId, Stamp};
use crate::kernel::Entry;

/// The rule that decided a conflict.
///
/// # Example
///
/// ```
/// use failback::doc::{DeviceSnapshot, HubState, Policies, Rule, Status, StatusValue};
/// use failback::{ReplicaId, Stamp};
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let device = DeviceSnapshot::enabled_sas("thermostat-7", "cHJpbWFyeQAAAAAAAAAAAA==", "c2Vjb25kYXJ5AAAAAAAAAA==");
/// let mut primary = HubState::new();
/// primary.put_device(&device, &Stamp::new(1, 0, p.clone()), None);
/// let mut secondary = primary.clone();
///
/// // Concurrently, the secondary disables it and the primary re-enables it with a reason.
/// let mut disabled = device.clone();
/// disabled.device.status = Some(StatusValue { status: Status::Disabled, reason: Some("stolen".into()) });
/// secondary.put_device(&disabled, &Stamp::new(2, 0, s), None);
/// let mut enabled = device.clone();
/// enabled.device.status = Some(StatusValue { status: Status::Enabled, reason: Some("checked".into()) });
/// primary.put_device(&enabled, &Stamp::new(3, 0, p), None);
///
/// primary.try_merge(&secondary)?;
/// let conflicts = primary.conflicts(&Policies::default());
/// assert_eq!(conflicts[0].rule, Rule::DisabledWins);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Rule {
    /// A concurrent `disabled` beat `enabled` (policy 1).
    DisabledWins,
    /// A delete beat a concurrent update (policy 2).
    DeleteWins,
    /// A concurrent update beat a delete (the alternative to policy 2).
    UpdateWins,
    /// Concurrent writes of `authentication`: one whole value by stamp
    /// (policy 3).
    WholeValue,
    /// Concurrent writes of one field or twin leaf: the highest stamp wins
    /// (policy 4).
    LatestWins,
    /// A scalar against an object at one twin path: one value by stamp.
    Shape,
    /// Two replicas created the same device (or module) independently: the
    /// latest creation wins as a whole; nothing of the other is mixed in.
    ConcurrentCreate,
}

impl Rule {
    /// The rule's name as written in `conflicts.jsonl` and reports.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::doc::Rule;
    ///
    /// assert_eq!(Rule::DisabledWins.name(), "disabled-wins");
    /// assert_eq!(serde_json::to_string(&Rule::ConcurrentCreate)?, r#""concurrent-create""#);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Rule::DisabledWins => "disabled-wins",
            Rule::DeleteWins => "delete-wins",
            Rule::UpdateWins => "update-wins",
            Rule::WholeValue => "whole-value",
            Rule::LatestWins => "latest-wins",
            Rule::Shape => "shape",
            Rule::ConcurrentCreate => "concurrent-create",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// One side of a conflict: who wrote what, when. Secrets appear only as
/// fingerprints.
///
/// # Example
///
/// ```
/// use failback::doc::{DeviceSnapshot, HubState, Policies, Section, TwinPatch};
/// use failback::{ReplicaId, Stamp};
/// use serde_json::json;
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let mut primary = HubState::new();
/// let device = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
/// primary.put_device(&device, &Stamp::new(1, 0, p.clone()), None);
/// let mut secondary = primary.clone();
/// for (state, hub, ms, fan) in [(&mut primary, &p, 10, 3), (&mut secondary, &s, 20, 5)] {
///     let patch = json!({ "fan": fan });
///     let patch = TwinPatch { id: "thermostat-7", module_id: None, section: Section::Desired, patch: patch.as_object().ok_or("an object")? };
///     state.patch_twin(&patch, &Stamp::new(ms, 0, hub.clone()), None);
/// }
/// primary.try_merge(&secondary)?;
/// let conflict = &primary.conflicts(&Policies::default())[0];
/// let (winner, loser) = (&conflict.winner, &conflict.losers[0]);
/// assert_eq!((winner.hub.as_str(), &winner.value, winner.stamp.ms()), ("secondary", &json!(5), 20));
/// assert_eq!((loser.hub.as_str(), &loser.value), ("primary", &json!(3)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// The replica that made the write.
    pub hub: ReplicaId,
    /// The value written (`null` for a removal or a delete).
    pub value: Value,
    /// The write's stamp.
    pub stamp: Stamp,
}

/// Concurrent writes to one field, the winner the policy picked and every
/// loser.
///
/// # Example
///
/// ```
/// use failback::doc::{DeviceSnapshot, HubState, Policies, Rule};
/// use failback::{ReplicaId, Stamp};
///
/// let (p, s) = (ReplicaId::new("primary")?, ReplicaId::new("secondary")?);
/// let mut primary = HubState::new();
/// let mut device = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
/// primary.put_device(&device, &Stamp::new(1, 0, p.clone()), None);
/// let mut secondary = primary.clone();
/// device.device.tags.insert("site".into(), "lyon".into());
/// primary.put_device(&device, &Stamp::new(10, 0, p), None);
/// device.device.tags.insert("site".into(), "berlin".into());
/// secondary.put_device(&device, &Stamp::new(20, 0, s), None);
///
/// primary.try_merge(&secondary)?;
/// let conflicts = primary.conflicts(&Policies::default());
/// assert_eq!(conflicts.len(), 1);
/// let c = &conflicts[0];
/// assert_eq!((c.id.as_str(), c.module_id.as_deref(), c.path.as_str()), ("thermostat-7", None, "tags.site"));
/// assert_eq!(c.rule, Rule::LatestWins);
/// assert_eq!((&c.winner.value, &c.losers[0].value), (&"berlin".into(), &"lyon".into()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// The device id.
    pub id: String,
    /// The module id, for conflicts inside a module.
    #[serde(rename = "moduleId", default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// The field: `status`, `authentication`, `tags.a.b`,
    /// `properties.desired.x`, or `` for the whole device.
    pub path: String,
    /// The rule that decided.
    pub rule: Rule,
    /// The write that won.
    pub winner: Side,
    /// The writes that lost, best first.
    pub losers: Vec<Side>,
}

/// Collects the conflicts of one device or module while it is read.
pub(crate) struct ConflictSink<'a> {
    id: &'a str,
    module_id: Option<&'a str>,
    out: &'a mut Vec<Conflict>,
}

impl<'a> ConflictSink<'a> {
    pub(crate) fn new(id: &'a str, module_id: Option<&'a str>, out: &'a mut Vec<Conflict>) -> Self {
        Self { id, module_id, out }
    }

    /// Logs a conflict of this sink's device or module.
    pub(crate) fn record(&mut self, path: &str, rule: Rule, winner: Side, losers: Vec<Side>) {
        self.out.push(Conflict {
            id: self.id.to_owned(),
            module_id: self.module_id.map(str::to_owned),
            path: path.to_owned(),
            rule,
            winner,
            losers,
        });
    }

    /// Logs a register's siblings when they disagree on the value.
    pub(crate) fn siblings<V: PartialEq>(
        &mut self,
        path: &str,
        rule: Rule,
        winner: &Entry<V>,
        losers: &[&Entry<V>],
        side: impl Fn(&Entry<V>) -> Side,
    ) {
        let differing: Vec<Side> = losers
            .iter()
            .filter(|e| e.value != winner.value)
            .map(|e| side(e))
            .collect();
        if differing.is_empty() {
            return;
        }
        self.record(path, rule, side(winner), differing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each rule is shown by the name `conflicts.jsonl` gives it.
    #[test]
    fn a_rule_shows_the_name_it_is_written_with() {
        for rule in [
            Rule::DisabledWins,
            Rule::DeleteWins,
            Rule::UpdateWins,
            Rule::WholeValue,
            Rule::LatestWins,
            Rule::Shape,
            Rule::ConcurrentCreate,
        ] {
            let written = serde_json::to_value(rule).unwrap_or_default();
            assert_eq!(written.as_str(), Some(rule.name()));
            assert_eq!(rule.to_string(), rule.name());
        }
        assert_eq!(Rule::ConcurrentCreate.to_string(), "concurrent-create");
        // A width pads it, as a report's columns ask.
        assert_eq!(format!("{:<14}|", Rule::Shape), "shape         |");
    }
}
