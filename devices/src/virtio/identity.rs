//! What a snapshot records about a virtio backend, so that a restore can
//! check that the backend it rebuilt from the VM's configuration is the
//! same device on the same host resource (see
//! [`super::VirtioDevice::snapshot_identity`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A backend's identity in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendIdentity {
    /// Only the device type: for backends with no host resource whose
    /// identity matters and no state beyond the transport's (entropy, a
    /// console). The default; a VMM refuses to snapshot a block, network
    /// or vsock device that reports only this, because a restore could not
    /// check it got the same disk, tap or socket back.
    DeviceType(u32),
    /// A disk: its image, size and mode.
    Disk {
        /// The image file.
        path: PathBuf,
        /// Its size in bytes, in whole sectors (the capacity the guest
        /// sees, times 512).
        size: u64,
        /// Opened read-only.
        read_only: bool,
        /// The GET_ID serial, if any.
        #[serde(default)]
        serial: Option<String>,
    },
    /// A network interface on a tap.
    Net {
        /// The tap's name.
        tap: String,
        /// The guest's MAC address.
        mac: [u8; 6],
    },
    /// A vsock device.
    Vsock {
        /// The guest's context ID.
        cid: u64,
        /// The host-side Unix socket.
        socket: PathBuf,
    },
    /// The backend cannot be snapshotted now (requests in flight that its
    /// state cannot carry, say), and why.
    Unsupported(String),
}
