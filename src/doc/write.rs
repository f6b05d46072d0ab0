//! One local operation in progress: the replica, its stamp and its dot.

use crate::clock::{Dot, ReplicaId, Stamp};
use crate::kernel::{CausalContext, Tag};

/// A local operation of one replica on one document.
///
/// Every register the operation writes takes the same dot, drawn from the
/// state's context the first time one is needed: an operation that changes
/// nothing uses no dot, so importing an unchanged device writes nothing.
pub(crate) struct Write<'a> {
    replica: &'a ReplicaId,
    ctx: &'a mut CausalContext,
    dot: Option<Dot>,
    /// The tags handed out, newest last: the registers one operation
    /// writes at one stamp share one tag.
    tags: Vec<Tag>,
}

impl<'a> Write<'a> {
    pub(crate) fn new(replica: &'a ReplicaId, ctx: &'a mut CausalContext) -> Self {
        Self {
            replica,
            ctx,
            dot: None,
            tags: Vec::new(),
        }
    }

    /// The operation's dot, recorded as seen on first use.
    pub(crate) fn dot(&mut self) -> Dot {
        if let Some(dot) = &self.dot {
            return dot.clone();
        }
        let dot = self.ctx.next_dot(self.replica);
        self.ctx.insert(dot.clone());
        self.dot = Some(dot.clone());
        dot
    }

    /// The operation's tag at `stamp`: its dot with that stamp, shared with
    /// the other registers written at the same stamp.
    pub(crate) fn tag(&mut self, stamp: &Stamp) -> Tag {
        // Twin files give each leaf its own time, but most leaves share a
        // few: looking back a little finds them without a map.
        const LOOK_BACK: usize = 8;
        if let Some(tag) = self
            .tags
            .iter()
            .rev()
            .take(LOOK_BACK)
            .find(|t| t.stamp() == stamp)
        {
            return tag.clone();
        }
        let tag = Tag::new(self.dot(), stamp.clone());
        self.tags.push(tag.clone());
        tag
    }

    /// Whether the operation wrote anything.
    pub(crate) fn wrote(&self) -> bool {
        self.dot.is_some()
    }

    /// What the state had seen, this operation included.
    pub(crate) fn seen(&self) -> &CausalContext {
        self.ctx
    }
}

/// A stamp at `ms` for `replica`.
pub(crate) fn stamp_at(ms: i64, replica: &ReplicaId) -> Stamp {
    Stamp::new(ms, 0, replica.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Registers written at one stamp share a tag; a register written at
    /// another stamp gets a tag of its own stamp, never a neighbour's.
    #[test]
    fn a_tag_holds_the_stamp_it_was_asked_for() {
        let replica = ReplicaId::new("a").expect("valid literal");
        let mut ctx = CausalContext::default();
        let mut w = Write::new(&replica, &mut ctx);
        let (first, second) = (stamp_at(1, &replica), stamp_at(2, &replica));
        let a = w.tag(&first);
        let b = w.tag(&second);
        assert_eq!((a.stamp(), b.stamp()), (&first, &second));
        assert!(w.tag(&first) == a);
        assert!(w.tag(&second) == b);
    }
}
