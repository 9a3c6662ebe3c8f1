//! Whether an image can deallocate and zero ranges, found without
//! changing what the guest could read from it.
//!
//! - A regular file: `fallocate` with the mode a request would use, on a
//!   range past the end of the file (`KEEP_SIZE`, so the size stays). A
//!   filesystem without the mode answers EOPNOTSUPP. Zeroing past the end
//!   may preallocate a block there; truncating the file to its own size
//!   releases it again. Neither touches a byte inside the image.
//! - A block device: the kernel's queue limits in sysfs
//!   (`write_zeroes_max_bytes`, `discard_granularity`). Both requests are
//!   offered only when the device zeroes in hardware: the kernel serves a
//!   block device's `FALLOC_FL_PUNCH_HOLE` (used for discard) only then,
//!   and its `FALLOC_FL_ZERO_RANGE` would otherwise write zero pages for
//!   seconds while the device thread waits.

use std::fs::File;
use std::path::Path;

use super::io::{fallocate, PUNCH_HOLE, ZERO_RANGE};

/// What the image supports for discard and write-zeroes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RangeSupport {
    /// Deallocating ranges (VIRTIO_BLK_T_DISCARD, and WRITE_ZEROES with
    /// the unmap flag).
    pub punch_hole: bool,
    /// Zeroing ranges (VIRTIO_BLK_T_WRITE_ZEROES).
    pub zero_range: bool,
    /// The most bytes one range may cover (0: no limit of the host's).
    pub max_bytes: u64,
    /// The deallocation granularity in bytes (the filesystem block).
    pub granularity: u64,
}

/// Probes a regular file of `size` bytes opened read-write, whose
/// filesystem block is `block` bytes.
pub fn probe_file(file: &File, size: u64, block: u64) -> RangeSupport {
    let block = block.clamp(512, 1 << 20);
    let punch_hole = fallocate(file, PUNCH_HOLE, size, block).is_ok();
    let zero_range = fallocate(file, ZERO_RANGE, size, block).is_ok();
    if zero_range {
        // Drop the block the probe may have preallocated past the end.
        if let Err(e) = file.set_len(size) {
            log::debug!("virtio-blk: releasing the zero-range probe's block: {e}");
        }
    }
    RangeSupport {
        punch_hole,
        zero_range,
        max_bytes: 0,
        granularity: block,
    }
}

/// Probes the block device `rdev` (`st_rdev`) through sysfs.
pub fn probe_block_device(rdev: u64) -> RangeSupport {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let dev = format!("/sys/dev/block/{major}:{minor}");
    // A partition has no queue directory of its own: its disk's applies.
    let queue = ["queue", "../queue"]
        .iter()
        .map(|q| Path::new(&dev).join(q))
        .find(|q| q.is_dir());
    let Some(queue) = queue else {
        return RangeSupport::default();
    };
    let read = |name: &str| -> u64 {
        std::fs::read_to_string(queue.join(name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let max_bytes = read("write_zeroes_max_bytes");
    let hardware = max_bytes > 0;
    RangeSupport {
        punch_hole: hardware,
        zero_range: hardware,
        max_bytes,
        granularity: read("discard_granularity").max(512),
    }
}
