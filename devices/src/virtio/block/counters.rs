//! The block device's counters, shared with the VMM (relaxed atomics:
//! written by the device thread, readable from any thread at any time).

use std::sync::atomic::{AtomicU64, Ordering};

/// What a disk has served.
#[derive(Debug, Default)]
pub struct BlockCounters {
    reads: AtomicU64,
    writes: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    flushes: AtomicU64,
    get_ids: AtomicU64,
    discards: AtomicU64,
    write_zeroes: AtomicU64,
    io_errors: AtomicU64,
    unsupported: AtomicU64,
    invalid_chains: AtomicU64,
    host_errors: AtomicU64,
    rearms: AtomicU64,
    interrupts: AtomicU64,
    syncs: AtomicU64,
}

/// Which counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    Reads,
    Writes,
    BytesRead,
    BytesWritten,
    Flushes,
    GetIds,
    Discards,
    WriteZeroes,
    IoErrors,
    Unsupported,
    InvalidChains,
    HostErrors,
    Rearms,
    Interrupts,
    Syncs,
}

impl BlockCounters {
    fn counter(&self, c: Counter) -> &AtomicU64 {
        match c {
            Counter::Reads => &self.reads,
            Counter::Writes => &self.writes,
            Counter::BytesRead => &self.bytes_read,
            Counter::BytesWritten => &self.bytes_written,
            Counter::Flushes => &self.flushes,
            Counter::GetIds => &self.get_ids,
            Counter::Discards => &self.discards,
            Counter::WriteZeroes => &self.write_zeroes,
            Counter::IoErrors => &self.io_errors,
            Counter::Unsupported => &self.unsupported,
            Counter::InvalidChains => &self.invalid_chains,
            Counter::HostErrors => &self.host_errors,
            Counter::Rearms => &self.rearms,
            Counter::Interrupts => &self.interrupts,
            Counter::Syncs => &self.syncs,
        }
    }

    pub(crate) fn add(&self, c: Counter, n: u64) {
        self.counter(c).fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self, c: Counter) -> u64 {
        self.counter(c).load(Ordering::Relaxed)
    }

    /// Successful VIRTIO_BLK_T_IN requests.
    pub fn reads(&self) -> u64 {
        self.get(Counter::Reads)
    }

    /// Successful VIRTIO_BLK_T_OUT requests.
    pub fn writes(&self) -> u64 {
        self.get(Counter::Writes)
    }

    /// Bytes read from the image into guest memory.
    pub fn bytes_read(&self) -> u64 {
        self.get(Counter::BytesRead)
    }

    /// Bytes written from guest memory to the image.
    pub fn bytes_written(&self) -> u64 {
        self.get(Counter::BytesWritten)
    }

    /// Successful VIRTIO_BLK_T_FLUSH requests.
    pub fn flushes(&self) -> u64 {
        self.get(Counter::Flushes)
    }

    /// Answered VIRTIO_BLK_T_GET_ID requests.
    pub fn get_ids(&self) -> u64 {
        self.get(Counter::GetIds)
    }

    /// Successful VIRTIO_BLK_T_DISCARD requests.
    pub fn discards(&self) -> u64 {
        self.get(Counter::Discards)
    }

    /// Successful VIRTIO_BLK_T_WRITE_ZEROES requests.
    pub fn write_zeroes(&self) -> u64 {
        self.get(Counter::WriteZeroes)
    }

    /// Requests answered VIRTIO_BLK_S_IOERR (malformed, out of range,
    /// read-only, host failure).
    pub fn io_errors(&self) -> u64 {
        self.get(Counter::IoErrors)
    }

    /// Requests answered VIRTIO_BLK_S_UNSUPP.
    pub fn unsupported(&self) -> u64 {
        self.get(Counter::Unsupported)
    }

    /// Chains returned without a status (no writable byte, or the status
    /// byte outside guest RAM).
    pub fn invalid_chains(&self) -> u64 {
        self.get(Counter::InvalidChains)
    }

    /// Host I/O calls that failed (each answered IOERR).
    pub fn host_errors(&self) -> u64 {
        self.get(Counter::HostErrors)
    }

    /// Times the device stopped with requests left (its per-turn budget
    /// spent) and woke itself for the next turn.
    pub fn rearms(&self) -> u64 {
        self.get(Counter::Rearms)
    }

    /// Used-buffer interrupts raised (with VIRTIO_RING_F_EVENT_IDX, only
    /// those the driver's `used_event` asked for).
    pub fn interrupts(&self) -> u64 {
        self.get(Counter::Interrupts)
    }

    /// `fdatasync` calls made (FLUSH, write-through writes, shutdown).
    pub fn syncs(&self) -> u64 {
        self.get(Counter::Syncs)
    }
}
