//! Maps the guest's RAM into the VMM process.

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::layout::MemoryLayout;

/// Whether to ask the host kernel to back guest RAM with transparent huge
/// pages (`madvise(MADV_HUGEPAGE)`). Fewer TLB misses in the guest; the hint is
/// best-effort and is ignored where THP is disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThpHint {
    /// Leave the host's default policy alone.
    #[default]
    Off,
    /// Advise `MADV_HUGEPAGE` on every RAM region.
    On,
}

/// Errors creating guest RAM.
#[derive(Debug, thiserror::Error)]
pub enum GuestRamError {
    /// The host refused to map the requested amount of memory.
    #[error("cannot map {size} bytes ({mib} MiB) of guest memory: {source}")]
    Mmap {
        /// Total bytes requested.
        size: u64,
        /// The same in MiB, for the message.
        mib: u64,
        /// What vm-memory reported.
        source: vm_memory::mmap::FromRangesError,
    },
    /// A range length does not fit in this host's address space.
    #[error("guest memory range of {0} bytes does not fit in the host address space")]
    RangeTooLarge(u64),
    /// `madvise(MADV_HUGEPAGE)` failed.
    #[error("madvise(MADV_HUGEPAGE) on guest memory failed: {0}")]
    Madvise(std::io::Error),
}

/// Guest RAM: the layout it was built from and the mapping backing it.
#[derive(Debug)]
pub struct GuestRam {
    layout: MemoryLayout,
    memory: GuestMemoryMmap,
}

impl GuestRam {
    /// Maps anonymous memory for every RAM range of `layout`.
    pub fn new(layout: &MemoryLayout, thp: ThpHint) -> Result<Self, GuestRamError> {
        let ranges = layout
            .ram_ranges()
            .iter()
            .map(|r| {
                usize::try_from(r.len)
                    .map(|len| (r.start, len))
                    .map_err(|_| GuestRamError::RangeTooLarge(r.len))
            })
            .collect::<Result<Vec<(GuestAddress, usize)>, _>>()?;
        let memory =
            GuestMemoryMmap::<()>::from_ranges(&ranges).map_err(|source| GuestRamError::Mmap {
                size: layout.size(),
                mib: layout.size() / crate::layout::MIB,
                source,
            })?;
        if thp == ThpHint::On {
            advise_huge_pages(&memory)?;
        }
        Ok(GuestRam {
            layout: layout.clone(),
            memory,
        })
    }

    /// The layout this RAM was built from.
    pub fn layout(&self) -> &MemoryLayout {
        &self.layout
    }

    /// The mapping, for use with vm-memory's `Bytes` and friends.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }
}

/// Size of a transparent huge page on x86-64.
pub const HUGE_PAGE_SIZE: usize = 2 << 20;

/// Asks the host kernel to back the 2 MiB-aligned part of `buf` with
/// transparent huge pages (`madvise(MADV_HUGEPAGE)`), so that touching it the
/// first time costs one page fault per 2 MiB instead of 512. Only whole huge
/// pages inside `buf` are advised; the ragged ends keep normal pages. Returns
/// whether any part was advised: the hint is best-effort (THP may be
/// disabled, or `buf` smaller than a huge page) and never changes contents.
///
/// Works on any memory the caller owns, initialised or not (a `Vec`'s
/// `spare_capacity_mut()` too), so a large buffer can be advised before it is
/// filled.
pub fn advise_huge_pages_in<T>(buf: &mut [T]) -> bool {
    let addr = buf.as_mut_ptr() as usize;
    let len = std::mem::size_of_val(buf);
    let Some(start) = addr.checked_next_multiple_of(HUGE_PAGE_SIZE) else {
        return false;
    };
    let end = (addr + len) & !(HUGE_PAGE_SIZE - 1);
    if end <= start {
        return false;
    }
    // SAFETY: [start, end) lies inside `buf`, which the caller borrows
    // mutably for this call, so no one else relies on the mapping's flags
    // meanwhile. MADV_HUGEPAGE only changes how the kernel backs these pages
    // (it may split the VMA); it never changes their contents or unmaps them.
    let ret =
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    ret == 0
}

/// A zero-initialised heap buffer for large temporary data (such as a kernel
/// being decompressed), backed by transparent huge pages where the host
/// allows: see [`advise_huge_pages_in`]. Its slice starts on a 2 MiB boundary
/// so that all of it can use huge pages.
pub struct HugePageBuffer {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl std::fmt::Debug for HugePageBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HugePageBuffer")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl HugePageBuffer {
    /// A zeroed buffer of `len` bytes. The allocation is up to 2 MiB larger
    /// (to align it); the zeroes come from the allocator's fresh mapping, so
    /// pages are touched only when used.
    pub fn new(len: usize) -> Self {
        let mut buf = vec![0u8; len.saturating_add(HUGE_PAGE_SIZE - 1)];
        let addr = buf.as_ptr() as usize;
        let start = addr
            .checked_next_multiple_of(HUGE_PAGE_SIZE)
            .map_or(0, |a| a - addr);
        let len = len.min(buf.len() - start);
        advise_huge_pages_in(&mut buf[start..start + len]);
        HugePageBuffer { buf, start, len }
    }

    /// The buffer.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }

    /// The buffer, read-only.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

fn advise_huge_pages(memory: &GuestMemoryMmap) -> Result<(), GuestRamError> {
    for region in memory.iter() {
        let Ok(host) = region.get_host_address(vm_memory::MemoryRegionAddress(0)) else {
            continue;
        };
        let len = usize::try_from(region.len())
            .map_err(|_| GuestRamError::RangeTooLarge(region.len()))?;
        // SAFETY: `host` and `len` describe exactly one mapping owned by
        // `memory`, which outlives this call; MADV_HUGEPAGE only changes the
        // kernel's backing policy and never the contents or the mapping.
        let ret = unsafe { libc::madvise(host.cast(), len, libc::MADV_HUGEPAGE) };
        if ret != 0 {
            return Err(GuestRamError::Madvise(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn test_guest_ram_maps_every_range() {
        let layout = MemoryLayout::with_phys_bits(4, 40).unwrap();
        let ram = GuestRam::new(&layout, ThpHint::On).unwrap();
        assert_eq!(ram.memory().num_regions(), 1);
        ram.memory()
            .write_obj(0x1234_5678u32, GuestAddress(4 * crate::layout::MIB - 4))
            .unwrap();
        assert!(ram
            .memory()
            .write_obj(0u32, GuestAddress(4 * crate::layout::MIB - 2))
            .is_err());
    }

    #[test]
    fn test_huge_page_buffer_is_aligned_zeroed_and_advised() {
        let mut b = HugePageBuffer::new(3 * HUGE_PAGE_SIZE + 5);
        assert_eq!(b.as_slice().len(), 3 * HUGE_PAGE_SIZE + 5);
        assert_eq!(b.as_slice().as_ptr() as usize % HUGE_PAGE_SIZE, 0);
        assert!(b.as_slice().iter().all(|&x| x == 0));
        b.as_mut_slice()[HUGE_PAGE_SIZE] = 7;
        assert_eq!(b.as_slice()[HUGE_PAGE_SIZE], 7);
        // The advice covers whole huge pages inside the buffer only.
        let mut small = vec![0u8; 4096];
        assert!(!advise_huge_pages_in(&mut small));
        assert!(advise_huge_pages_in(b.as_mut_slice()));
        assert_eq!(HugePageBuffer::new(0).as_slice().len(), 0);
    }
}
