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
/// use failback::doc::{DeviceSnapshot, HubState};
/// use failback::kernel::InvariantError;
/// use failback::{Dot, ReplicaId, Stamp};
///
/// let primary = ReplicaId::new("primary")?;
/// let mut state = HubState::new();
/// let device = DeviceSnapshot { id: "thermostat-7".into(), ..Default::default() };
/// state.put_device(&device, &Stamp::new(1, 0, primary.clone()), None);
///
/// // A state file whose causal context forgot the write its device holds.
/// let text = String::from_utf8(state.to_canonical_json()?)?;
/// let corrupted = text.replace(r#""ctx":{"vv":{"primary":1}}"#, r#""ctx":{"vv":{}}"#);
/// let err = serde_json::from_str::<HubState>(&corrupted).unwrap_err();
/// let broken = InvariantError::DeviceUnseenDot {
///     device: "thermostat-7".into(),
///     dot: Dot::new(primary, 1),
/// };
/// assert!(err.to_string().contains(&broken.to_string()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
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
