//! Cloud-to-device queues: the union of messages, each message's state
//! only moving forward.
//!
//! A message is known by `(deviceId, message-id)`: the same message seen on
//! two hubs, or twice on one (a retried send, a restored backup), is one
//! message. Its state is a forward-only lattice: pending (enqueued or
//! locked, with the most deliveries any hub counted) below every outcome of
//! the feedback channel. Outcomes resolve by a fixed order, `Success`
//! first: a message completed anywhere is never delivered again, whatever a
//! hub that missed the completion still holds; then `Rejected`,
//! `DeliveryCountExceeded`, `Expired`, `Purged`. Every outcome seen is kept.
//!
//! After a merge, [`C2dQueues::to_deliver`] lists what devices must still
//! receive, each message once, oldest first, at most IoT Hub's 50 per
//! device; what does not fit is reported by [`C2dQueues::over_limit`], never
//! dropped silently.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::kernel::Merge;

/// How many messages IoT Hub holds in one device's queue.
pub const QUEUE_LIMIT: usize = 50;

/// A feedback `statusCode`: how a message ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Outcome {
    /// `Purged`: the queue was cleared.
    Purged,
    /// `Expired`: its time to live passed.
    Expired,
    /// `DeliveryCountExceeded`: dead-lettered after too many deliveries.
    DeliveryCountExceeded,
    /// `Rejected` by the device.
    Rejected,
    /// `Success`: completed by the device.
    Success,
}

/// One message as the hubs together know it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct C2dMessage {
    /// When it was enqueued (ms since the epoch): the earliest seen.
    pub enqueued_ms: i64,
    /// `absolute-expiry-time` (ms), when set: the earliest seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_ms: Option<i64>,
    /// Deliveries any hub counted: the most.
    pub delivery_count: u32,
    /// Every outcome any hub recorded.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub outcomes: BTreeSet<Outcome>,
}

impl C2dMessage {
    /// A message enqueued at `enqueued_ms`, not yet delivered.
    pub fn enqueued(enqueued_ms: i64) -> Self {
        Self {
            enqueued_ms,
            expiry_ms: None,
            delivery_count: 0,
            outcomes: BTreeSet::new(),
        }
    }

    /// How the message ended, when it did: of different outcomes, the
    /// first in the order `Success`, `Rejected`, `DeliveryCountExceeded`,
    /// `Expired`, `Purged`.
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcomes.last().copied()
    }

    /// Whether a device may still have to receive it at `now_ms`.
    pub fn is_pending(&self, now_ms: i64) -> bool {
        self.outcomes.is_empty() && self.expiry_ms.is_none_or(|e| e > now_ms)
    }
}

impl Merge for C2dMessage {
    fn merge(&mut self, other: &Self) {
        self.enqueued_ms = self.enqueued_ms.min(other.enqueued_ms);
        self.expiry_ms = match (self.expiry_ms, other.expiry_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.delivery_count = self.delivery_count.max(other.delivery_count);
        self.outcomes.extend(other.outcomes.iter().copied());
    }
}

/// Every device's cloud-to-device messages, by device id then message id.
///
/// # Example
///
#[cfg_attr(not(feature = "internals"), doc = "```ignore")]
#[cfg_attr(feature = "internals", doc = "```")]
/// use failback::doc::{C2dMessage, C2dQueues, Outcome};
/// use failback::kernel::Merge;
///
/// // The primary delivered and completed m1 just before it failed; the
/// // secondary, seeded from an older backup, still holds it enqueued.
/// let mut primary = C2dQueues::default();
/// primary.record("d1", "m1", C2dMessage::enqueued(1_000));
/// primary.complete("d1", "m1", Outcome::Success);
/// let mut secondary = C2dQueues::default();
/// secondary.record("d1", "m1", C2dMessage::enqueued(1_000));
/// secondary.record("d1", "m2", C2dMessage::enqueued(2_000));
///
/// let mut merged = primary.clone();
/// merged.merge(&secondary);
/// // m1 is never delivered again; m2 once.
/// let due: Vec<_> = merged.to_deliver(3_000).map(|(d, m, _)| (d, m)).collect();
/// assert_eq!(due, [("d1", "m2")]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct C2dQueues {
    devices: BTreeMap<String, BTreeMap<String, C2dMessage>>,
}

impl C2dQueues {
    /// Adds a hub's view of one message, merged with what is known of it.
    pub fn record(&mut self, device: &str, message_id: &str, message: C2dMessage) {
        let queue = self.devices.entry(device.to_owned()).or_default();
        match queue.get_mut(message_id) {
            Some(known) => known.merge(&message),
            None => {
                queue.insert(message_id.to_owned(), message);
            }
        }
    }

    /// Records a feedback outcome for a message (known or not yet).
    pub fn complete(&mut self, device: &str, message_id: &str, outcome: Outcome) {
        let queue = self.devices.entry(device.to_owned()).or_default();
        let message = queue
            .entry(message_id.to_owned())
            .or_insert_with(|| C2dMessage::enqueued(i64::MAX));
        message.outcomes.insert(outcome);
    }

    /// The message `message_id` of `device`.
    pub fn get(&self, device: &str, message_id: &str) -> Option<&C2dMessage> {
        self.devices.get(device)?.get(message_id)
    }

    /// What devices must still receive at `now_ms`: each pending message
    /// once, per device oldest first (by enqueue time, then id), at most
    /// [`QUEUE_LIMIT`] per device.
    pub fn to_deliver(&self, now_ms: i64) -> impl Iterator<Item = (&str, &str, &C2dMessage)> {
        self.devices.iter().flat_map(move |(device, queue)| {
            pending(queue, now_ms)
                .into_iter()
                .take(QUEUE_LIMIT)
                .map(move |(id, m)| (device.as_str(), id, m))
        })
    }

    /// The pending messages that do not fit in their device's queue, by
    /// device: an operator must resend them after the queue drains.
    pub fn over_limit(&self, now_ms: i64) -> BTreeMap<&str, Vec<&str>> {
        self.devices
            .iter()
            .filter_map(|(device, queue)| {
                let rest: Vec<&str> = pending(queue, now_ms)
                    .into_iter()
                    .skip(QUEUE_LIMIT)
                    .map(|(id, _)| id)
                    .collect();
                (!rest.is_empty()).then_some((device.as_str(), rest))
            })
            .collect()
    }
}

fn pending(queue: &BTreeMap<String, C2dMessage>, now_ms: i64) -> Vec<(&str, &C2dMessage)> {
    let mut due: Vec<(&str, &C2dMessage)> = queue
        .iter()
        .filter(|(_, m)| m.is_pending(now_ms))
        .map(|(id, m)| (id.as_str(), m))
        .collect();
    due.sort_by_key(|(id, m)| (m.enqueued_ms, *id));
    due
}

impl Merge for C2dQueues {
    fn merge(&mut self, other: &Self) {
        for (device, queue) in &other.devices {
            for (id, message) in queue {
                self.record(device, id, message.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_beats_every_other_outcome() {
        let mut m = C2dMessage::enqueued(1);
        m.outcomes.insert(Outcome::Expired);
        m.outcomes.insert(Outcome::Success);
        m.outcomes.insert(Outcome::Rejected);
        assert_eq!(m.outcome(), Some(Outcome::Success));
        assert!(!m.is_pending(0));
    }

    #[test]
    fn expired_messages_are_not_delivered() {
        let mut m = C2dMessage::enqueued(1);
        m.expiry_ms = Some(100);
        assert!(m.is_pending(99));
        assert!(!m.is_pending(100));
    }

    #[test]
    fn a_full_queue_reports_what_does_not_fit() {
        let mut q = C2dQueues::default();
        for i in 0..(QUEUE_LIMIT as i64 + 3) {
            q.record("d", &format!("m{i:03}"), C2dMessage::enqueued(i));
        }
        assert_eq!(q.to_deliver(0).count(), QUEUE_LIMIT);
        assert_eq!(q.over_limit(0)["d"], ["m050", "m051", "m052"]);
    }
}
