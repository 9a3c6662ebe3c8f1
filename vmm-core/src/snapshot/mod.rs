//! Snapshots: a paused VM's whole state to a file, its guest RAM to a
//! second file, and a new VM built from the two in another process.
//!
//! **Create** ([`crate::VmHandle::snapshot`]): the VM must be paused. The
//! handle posts a [`SnapshotRequest`]; the thread running the VM (the only
//! one holding the KVM VM, the vCPU threads and the devices) takes it:
//! every parked vCPU thread completes its pending I/O instruction and
//! saves its own state ([`vmm_cpu::snapshot`]); the main loop saves the
//! in-kernel irqchip and PIT, takes the KVM clock the pause saved, the
//! platform devices' and virtio transports' state and each virtio
//! backend's [`BackendIdentity`](vmm_devices::virtio::BackendIdentity),
//! writes guest RAM ([`memory`]), and last the snapshot file
//! ([`mod@format`]), each through a temporary file renamed into place.
//! [`SnapshotKind::Diff`] writes only the pages written since the last
//! snapshot (KVM's dirty log plus the pages virtio devices wrote) into
//! the existing memory file, as Firecracker does.
//!
//! **Restore** ([`crate::Vm::restore`]): everything is checked before
//! KVM is touched (format, checksum, the body's consistency, the memory
//! file's size, this host's CPUID against every vCPU's); then the VM is
//! built with guest RAM mapped private from the memory file, the VM and
//! vCPU state set, the devices rebuilt from their state and the virtio
//! transports attached with theirs. It starts paused, as Firecracker's
//! `resume_vm: false`, unless [`crate::Vm::resume_on_start`] is called.
//! A failed restore leaves nothing behind.

mod body;
pub(crate) mod create;
mod error;
pub mod format;
pub mod memory;
mod restore;
pub(crate) mod slot;
mod validate;
mod vm_state;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

pub use body::{
    Irqchip, IrqchipState, MemoryRegion, MemoryState, SnapshotBody, VirtioState, VmState,
};
pub use error::SnapshotError;
pub use format::{decode, encode, FORMAT_VERSION, MAGIC};
pub use validate::validate;

/// Which snapshot to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum SnapshotKind {
    /// Every page of guest RAM, to a new memory file.
    #[default]
    Full,
    /// Only the pages written since the last snapshot (or the restore),
    /// into the existing memory file of that snapshot (needs
    /// [`crate::HostOptions::track_dirty_pages`]).
    Diff,
}

/// A snapshot to take ([`crate::VmHandle::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// Where the VM's state goes (replaced atomically).
    pub snapshot_path: PathBuf,
    /// Where guest RAM goes: replaced for a full snapshot, updated in
    /// place for a diff.
    pub mem_file_path: PathBuf,
    /// Full or diff.
    pub kind: SnapshotKind,
}

/// What a snapshot wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The kind taken.
    pub kind: SnapshotKind,
    /// The snapshot file's size.
    pub snapshot_bytes: u64,
    /// Guest RAM in bytes (the memory file's size).
    pub memory_bytes: u64,
    /// Bytes of guest RAM written to the memory file (all-zero pages of a
    /// full snapshot are left as holes, so this can be less than
    /// `memory_bytes`).
    pub memory_bytes_written: u64,
    /// How long taking it took (the VM stays paused meanwhile).
    pub elapsed: Duration,
}

/// How long the main loop waits for every parked vCPU thread to hand
/// back its state (each takes well under a millisecond).
pub const VCPU_SAVE_TIMEOUT: Duration = Duration::from_secs(10);
