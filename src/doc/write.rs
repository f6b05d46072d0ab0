//! One local operation in progress: the replica, its stamp and its dot.

use crate::clock::{Dot, ReplicaId, Stamp};
use crate::kernel::CausalContext;

/// A local operation of one replica on one document.
///
/// Every register the operation writes takes the same dot, drawn from the
/// state's context the first time one is needed: an operation that changes
/// nothing uses no dot, so importing an unchanged device writes nothing.
pub(crate) struct Write<'a> {
    replica: &'a ReplicaId,
    ctx: &'a mut CausalContext,
    dot: Option<Dot>,
}

impl<'a> Write<'a> {
    pub(crate) fn new(replica: &'a ReplicaId, ctx: &'a mut CausalContext) -> Self {
        Self {
            replica,
            ctx,
            dot: None,
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
