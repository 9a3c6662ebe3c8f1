//! Device state for snapshots: each stateful device has a serialisable
//! `<Device>State`, a `state()` that captures it and a `from_state()` (or
//! `restore()`) that rebuilds the device from it. A state read back from
//! a file is untrusted input: every `from_state` checks lengths and
//! values and answers with a [`StateError`] instead of building a device
//! that could misbehave.

/// Why a device cannot be rebuilt from a saved state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A queue or buffer holds more than the device allows.
    #[error("{device}: {field} holds {found} entries, at most {max} are allowed")]
    TooLong {
        /// The device.
        device: &'static str,
        /// The field.
        field: &'static str,
        /// Entries found.
        found: usize,
        /// The device's limit.
        max: usize,
    },
    /// A fixed-size field has the wrong size.
    #[error("{device}: {field} has {found} bytes, expected {expected}")]
    WrongLength {
        /// The device.
        device: &'static str,
        /// The field.
        field: &'static str,
        /// Bytes found.
        found: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// A field's value is impossible for the device.
    #[error("{device}: {field} = {value:#x} is invalid: {why}")]
    Invalid {
        /// The device.
        device: &'static str,
        /// The field.
        field: &'static str,
        /// The value.
        value: u64,
        /// Why.
        why: &'static str,
    },
    /// A virtio queue's saved set-up is unusable.
    #[error("{device}: queue {index}: {why}")]
    Queue {
        /// The device.
        device: &'static str,
        /// The queue index.
        index: usize,
        /// What is wrong.
        why: String,
    },
    /// The backend refused to take up its restored state.
    #[error("{device}: the backend refused its restored state: {why}")]
    Backend {
        /// The device.
        device: &'static str,
        /// Its error.
        why: String,
    },
    /// Re-raising a pending interrupt failed.
    #[error("{device}: raising its pending interrupt failed: {why}")]
    Interrupt {
        /// The device.
        device: &'static str,
        /// The error.
        why: String,
    },
}
