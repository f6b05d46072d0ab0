//! What a state read from outside can get wrong.

use crate::clock::Dot;

/// A broken invariant of a kernel or document state: what a corrupted or
/// hand-edited state file holds that no merge or write produces.
///
/// Deserializing a `MvReg`, a `Causal`
/// state or a [`HubState`](crate::doc::HubState) checks them, so such a
/// file is refused instead of joining wrongly.
///
/// # Example
///
/// ```
/// use failback::kernel::MvReg;
///
/// let twice = r#"[{"dot":"a:1","stamp":{"ms":1,"l":0,"r":"a"},"value":1},
///                 {"dot":"a:1","stamp":{"ms":1,"l":0,"r":"a"},"value":2}]"#;
/// let err = serde_json::from_str::<MvReg<u8>>(twice).unwrap_err();
/// assert!(err.to_string().starts_with("dot a:1 is held twice by one register"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvariantError {
    /// A register holds two entries with one dot: a dot names one write.
    #[error("dot {dot} is held twice by one register")]
    DuplicateDot {
        /// The dot.
        dot: Dot,
    },
    /// A register's entries are not in dot order.
    #[error("register entries out of order at dot {dot}")]
    Unsorted {
        /// The first dot out of order.
        dot: Dot,
    },
    /// A stored dot the causal context has not seen.
    #[error("dot {dot} is stored but missing from the causal context")]
    UnseenDot {
        /// The dot.
        dot: Dot,
    },
    /// A device holding a dot its state's causal context has not seen.
    #[error("device {device:?}: dot {dot} is stored but missing from the causal context")]
    DeviceUnseenDot {
        /// The device id.
        device: String,
        /// The dot.
        dot: Dot,
    },
    /// A device stored without any write.
    #[error("device {device:?} is stored with no write")]
    EmptyDevice {
        /// The device id.
        device: String,
    },
    /// A dot of the context's cloud covered by, or next to, its version
    /// vector.
    #[error("dot {dot} is in the causal context's cloud but not beyond a gap")]
    CloudNotBeyondGap {
        /// The dot.
        dot: Dot,
    },
}
