//! Everything that can go wrong taking or loading a snapshot, each naming
//! the problem and the offending value.

use std::path::PathBuf;

use vmm_cpu::snapshot::{CpuidMismatch, VcpuStateError};

/// Errors creating or restoring a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A snapshot was asked of a VM that is not paused.
    #[error("the VM must be paused to take a snapshot (pause it first)")]
    NotPaused,
    /// Another snapshot of this VM is being taken.
    #[error("another snapshot of this VM is being taken")]
    Busy,
    /// A diff snapshot of a VM created without dirty-page tracking.
    #[error("a diff snapshot needs dirty-page tracking, which this VM was created without (HostOptions::track_dirty_pages, --track-dirty-pages)")]
    DiffNotTracked,
    /// A diff snapshot with no full memory file to apply it to.
    #[error("a diff snapshot needs a base: take a full snapshot of this VM first (or restore it from one)")]
    DiffWithoutBase,
    /// The memory file a diff snapshot goes into has the wrong size.
    #[error("diff snapshot: the existing memory file {path} is {found} bytes, the guest's RAM is {expected} bytes (a diff is written into the full memory file of the last snapshot)")]
    DiffTargetSize {
        /// The file.
        path: PathBuf,
        /// The RAM size.
        expected: u64,
        /// The file's size.
        found: u64,
    },
    /// A device cannot be put in a snapshot.
    #[error("cannot snapshot {device}: {why}")]
    Unsupported {
        /// The device (a virtio slot, an extra bus device).
        device: String,
        /// Why.
        why: String,
    },
    /// Reading a file failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file ends before a part of it does.
    #[error(
        "the snapshot file is truncated: its {what} needs {expected} bytes, the file has {found}"
    )]
    Truncated {
        /// The header or the body.
        what: &'static str,
        /// Bytes needed (from the start of the file).
        expected: u64,
        /// Bytes the file has.
        found: u64,
    },
    /// The file does not start with the magic.
    #[error(
        "not a snapshot file: it starts with {found:02x?}, a snapshot starts with \"RVMMSNAP\""
    )]
    Magic {
        /// The first 8 bytes (zero-padded when the file is shorter).
        found: [u8; 8],
    },
    /// The format version is not this build's.
    #[error(
        "snapshot format version {found} is not supported (this build reads version {supported})"
    )]
    Version {
        /// The file's version.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A reserved header field is not zero.
    #[error("snapshot header: the reserved field at offset {offset} is {value:#x}, must be 0")]
    HeaderReserved {
        /// Byte offset in the file.
        offset: usize,
        /// Its value.
        value: u32,
    },
    /// The body is larger than any snapshot this build writes.
    #[error("the snapshot body is {len} bytes, more than the {max} bytes allowed")]
    TooLarge {
        /// The length the header gives (or the file has).
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The body's checksum is wrong: the file was damaged.
    #[error("the snapshot body's CRC32 is {found:#010x}, the header says {expected:#010x}: the file is damaged")]
    Checksum {
        /// The header's CRC.
        expected: u32,
        /// The body's CRC.
        found: u32,
    },
    /// Bytes follow the body.
    #[error("the snapshot file has {found} bytes, its header accounts for {expected}")]
    TrailingBytes {
        /// Bytes header and body need.
        expected: u64,
        /// Bytes the file has.
        found: u64,
    },
    /// A section of the body does not parse.
    #[error("the snapshot's {section} section does not parse: {source}")]
    Body {
        /// The section (`vcpus`, `devices`, ...), or `body` for the whole.
        section: &'static str,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// The body parses but contradicts itself.
    #[error("the snapshot is inconsistent: {field} is {found}, expected {expected}")]
    Inconsistent {
        /// What (`vcpus[1].index`, `memory`, ...).
        field: String,
        /// What it should be.
        expected: String,
        /// What it is.
        found: String,
    },
    /// The memory file's size is not the snapshot's RAM size.
    #[error(
        "the memory file {path} is {found} bytes, the snapshot's guest RAM is {expected} bytes"
    )]
    MemoryFileSize {
        /// The file.
        path: PathBuf,
        /// The RAM size the snapshot records.
        expected: u64,
        /// The file's size.
        found: u64,
    },
    /// The host cannot give a vCPU the features its CPUID advertises.
    #[error("vCPU {vcpu}: {mismatch}")]
    Cpuid {
        /// The vCPU.
        vcpu: u64,
        /// The missing feature.
        mismatch: CpuidMismatch,
    },
    /// A restored backend is not the one the snapshot recorded.
    #[error("virtio slot {slot} ({kind}): the snapshot recorded {saved}, the rebuilt backend is {rebuilt}")]
    BackendChanged {
        /// Slot index.
        slot: usize,
        /// Its kind.
        kind: String,
        /// What the snapshot holds.
        saved: String,
        /// What was rebuilt.
        rebuilt: String,
    },
    /// A device's saved state is unusable.
    #[error("{what}: {source}")]
    DeviceState {
        /// Which device.
        what: String,
        /// The device's error.
        source: vmm_devices::state::StateError,
    },
    /// Saving or restoring a vCPU's state failed.
    #[error(transparent)]
    Vcpu(#[from] VcpuStateError),
    /// Completing a vCPU's pending I/O before saving it failed.
    #[error("saving a vCPU: {0}")]
    PendingIo(vmm_cpu::VcpuError),
    /// Not every vCPU thread handed back its state in time.
    #[error("{saved} of {expected} vCPUs handed back their state within {waited:?}")]
    VcpuTimeout {
        /// vCPUs that answered.
        saved: usize,
        /// vCPUs there are.
        expected: usize,
        /// How long the main loop waited.
        waited: std::time::Duration,
    },
    /// The VM stopped while the snapshot was being taken or waited for.
    #[error("the VM stopped before the snapshot was taken")]
    Stopped,
    /// A VM-level KVM state ioctl failed.
    #[error("{op} failed: {source}")]
    Kvm {
        /// The ioctl.
        op: &'static str,
        /// Its error.
        source: kvm_ioctls::Error,
    },
}

impl SnapshotError {
    /// Whether the error is the caller's input (a bad file, a request the
    /// VM cannot take), rather than a failure of the VMM or KVM.
    pub fn is_bad_input(&self) -> bool {
        use SnapshotError as E;
        matches!(
            self,
            E::NotPaused
                | E::Busy
                | E::DiffNotTracked
                | E::DiffWithoutBase
                | E::DiffTargetSize { .. }
                | E::Unsupported { .. }
                | E::Read { .. }
                | E::Truncated { .. }
                | E::Magic { .. }
                | E::Version { .. }
                | E::HeaderReserved { .. }
                | E::TooLarge { .. }
                | E::Checksum { .. }
                | E::TrailingBytes { .. }
                | E::Body { .. }
                | E::Inconsistent { .. }
                | E::MemoryFileSize { .. }
                | E::Cpuid { .. }
                | E::BackendChanged { .. }
                | E::DeviceState { .. }
        )
    }

    /// A mismatch between what the snapshot says and what it should.
    pub(crate) fn inconsistent(
        field: impl Into<String>,
        expected: impl std::fmt::Display,
        found: impl std::fmt::Display,
    ) -> Self {
        SnapshotError::Inconsistent {
            field: field.into(),
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }
}
