//! Guest pages the VMM's devices may have written, for diff snapshots.
//!
//! KVM's dirty log (KVM_GET_DIRTY_LOG) records only the guest's own
//! writes; a virtio device writes guest memory through the VMM's mapping,
//! which KVM never sees. With tracking on, [`super::QueueContext::pop`]
//! marks every device-writable buffer of each chain it hands out, which
//! covers every write a device may make to a buffer (a superset: a device
//! may write less), and the VMM marks the used rings itself when it takes
//! a snapshot. A diff snapshot writes the union of both.
//!
//! One bitmap per guest memory region (in the regions' order, the order
//! KVM memory slots are registered in), one bit per 4 KiB page, atomic so
//! the device thread marks while another thread drains.

use std::sync::atomic::{AtomicU64, Ordering};

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// The page size tracked.
pub const DIRTY_PAGE_SIZE: u64 = 4096;

struct RegionBits {
    start: u64,
    len: u64,
    words: Vec<AtomicU64>,
}

/// A bitmap of possibly written pages over guest RAM.
pub struct DirtyPages {
    regions: Vec<RegionBits>,
}

impl std::fmt::Debug for DirtyPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirtyPages")
            .field("regions", &self.regions.len())
            .finish()
    }
}

impl DirtyPages {
    /// An empty bitmap covering every region of `mem`.
    pub fn new(mem: &GuestMemoryMmap) -> Self {
        let regions = mem
            .iter()
            .map(|r| {
                let pages = r.len().div_ceil(DIRTY_PAGE_SIZE);
                RegionBits {
                    start: r.start_addr().0,
                    len: r.len(),
                    words: (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
                }
            })
            .collect();
        DirtyPages { regions }
    }

    /// Marks every page of `[addr, addr + len)` that is guest RAM; the rest
    /// of the range (guest-controlled, possibly bogus) is ignored.
    pub fn mark(&self, addr: GuestAddress, len: u64) {
        if len == 0 {
            return;
        }
        let end = addr.0.saturating_add(len);
        for r in &self.regions {
            let (s, e) = (addr.0.max(r.start), end.min(r.start + r.len));
            if s >= e {
                continue;
            }
            let first = (s - r.start) / DIRTY_PAGE_SIZE;
            let last = (e - 1 - r.start) / DIRTY_PAGE_SIZE;
            let mut page = first;
            while page <= last {
                let word = (page / 64) as usize;
                let bit = page % 64;
                // Whole words at once where the range covers them.
                let upto = last.min(page - bit + 63);
                let n = upto - page + 1;
                let mask = if n == 64 {
                    u64::MAX
                } else {
                    ((1u64 << n) - 1) << bit
                };
                if let Some(w) = r.words.get(word) {
                    w.fetch_or(mask, Ordering::Relaxed);
                }
                page = upto + 1;
            }
        }
    }

    /// Region `index`'s bitmap words (bit `i` of word `w`: page `64w + i`),
    /// cleared as they are read; empty for a region that does not exist.
    pub fn take(&self, index: usize) -> Vec<u64> {
        self.regions.get(index).map_or_else(Vec::new, |r| {
            r.words
                .iter()
                .map(|w| w.swap(0, Ordering::Relaxed))
                .collect()
        })
    }

    /// Clears every bit (after a full snapshot).
    pub fn clear(&self) {
        for r in &self.regions {
            for w in &r.words {
                w.store(0, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0), 1 << 20),
            (GuestAddress(1 << 32), 1 << 20),
        ])
        .unwrap()
    }

    fn pages(words: &[u64]) -> Vec<u64> {
        let mut v = Vec::new();
        for (w, bits) in words.iter().enumerate() {
            for b in 0..64 {
                if bits & (1 << b) != 0 {
                    v.push(w as u64 * 64 + b);
                }
            }
        }
        v
    }

    #[test]
    fn test_dirty_pages_marks_exactly_the_pages_touched() {
        let d = DirtyPages::new(&mem());
        d.mark(GuestAddress(0x1fff), 2); // pages 1 and 2
        d.mark(GuestAddress(0x40_000), 0); // nothing
        d.mark(GuestAddress((1 << 32) + 0x3000), 0x1000); // region 1, page 3
        assert_eq!(pages(&d.take(0)), [1, 2]);
        assert_eq!(pages(&d.take(1)), [3]);
        // Taking clears.
        assert!(pages(&d.take(0)).is_empty());
        assert!(d.take(7).is_empty());
    }

    #[test]
    fn test_dirty_pages_large_and_bogus_ranges() {
        let d = DirtyPages::new(&mem());
        // 130 pages from page 60: spans three words.
        d.mark(GuestAddress(60 * 4096), 130 * 4096);
        assert_eq!(pages(&d.take(0)), (60..190).collect::<Vec<_>>());
        // Past RAM, across the gap, overflowing: only RAM pages count.
        d.mark(GuestAddress((1 << 20) - 4096), u64::MAX);
        assert_eq!(pages(&d.take(0)), [255]);
        assert_eq!(pages(&d.take(1)).len(), 256);
        d.mark(GuestAddress(u64::MAX - 10), 100);
        d.clear();
        assert!(pages(&d.take(1)).is_empty());
    }
}
