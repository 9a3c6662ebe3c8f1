//! Maps the guest's RAM into the VMM process.

use std::fs::File;

use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    GuestRegionMmap,
};

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
    /// The memory file's size is not the layout's RAM size.
    #[error("the memory file holds {found} bytes, the guest's RAM is {expected} bytes")]
    FileSize {
        /// The layout's RAM size.
        expected: u64,
        /// The file's size.
        found: u64,
    },
    /// The memory file could not be inspected or cloned.
    #[error("the memory file cannot be used: {0}")]
    File(std::io::Error),
    /// Mapping a region of the memory file failed.
    #[error("mapping {len:#x} bytes of the memory file at offset {offset:#x} failed: {source}")]
    MapFile {
        /// File offset of the region.
        offset: u64,
        /// Region length.
        len: u64,
        /// vm-memory's error.
        source: vm_memory::mmap::MmapRegionError,
    },
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

    /// Maps guest RAM from `file`, which holds every RAM range of `layout`
    /// back to back in guest-physical order (a snapshot's memory file),
    /// private and copy-on-write: nothing is read now, each page faults in
    /// from the file (through the page cache) the first time it is
    /// touched, and the guest's writes stay in this process. So mapping
    /// costs the same for any RAM size.
    ///
    /// The file must be exactly [`MemoryLayout::size`] bytes. The caller
    /// promises nobody truncates it while the mapping lives (a cut-off page
    /// raises SIGBUS when touched); writing it is harmless only for pages
    /// the guest has already written (which no longer read the file).
    pub fn from_file(layout: &MemoryLayout, file: &File) -> Result<Self, GuestRamError> {
        let found = file.metadata().map_err(GuestRamError::File)?.len();
        if found != layout.size() {
            return Err(GuestRamError::FileSize {
                expected: layout.size(),
                found,
            });
        }
        let mut regions = Vec::new();
        let mut offset = 0u64;
        for r in layout.ram_ranges() {
            let len = usize::try_from(r.len).map_err(|_| GuestRamError::RangeTooLarge(r.len))?;
            let fd = file.try_clone().map_err(GuestRamError::File)?;
            let map = MmapRegionBuilder::new(len)
                .with_file_offset(FileOffset::new(fd, offset))
                .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
                .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
                .build()
                .map_err(|source| GuestRamError::MapFile {
                    offset,
                    len: r.len,
                    source,
                })?;
            let region =
                GuestRegionMmap::new(map, r.start).ok_or(GuestRamError::RangeTooLarge(r.len))?;
            regions.push(region);
            offset += r.len;
        }
        let memory = GuestMemoryMmap::from_regions(regions).map_err(|e| GuestRamError::Mmap {
            size: layout.size(),
            mib: layout.size() / crate::layout::MIB,
            source: vm_memory::mmap::FromRangesError::Collection(e),
        })?;
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

    fn memory_file(bytes: &[u8]) -> File {
        use std::io::Write;
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("vmm-memory-ram-{}-{n}", std::process::id()));
        File::create(&path).unwrap().write_all(bytes).unwrap();
        let f = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    #[test]
    fn test_guest_ram_from_file_maps_private_and_checks_size() {
        let layout = MemoryLayout::with_phys_bits(2, 40).unwrap();
        let size = layout.size() as usize;
        let bytes: Vec<u8> = (0..size).map(|i| (i / 4096) as u8 ^ (i as u8)).collect();
        let file = memory_file(&bytes);
        let ram = GuestRam::from_file(&layout, &file).unwrap();
        let mut got = vec![0u8; 8192];
        ram.memory()
            .read_slice(&mut got, GuestAddress(0x10_0000))
            .unwrap();
        assert_eq!(&got[..], &bytes[0x10_0000..0x10_0000 + 8192]);
        // The guest's writes stay private: the file keeps its bytes.
        ram.memory()
            .write_obj(0xdeadu16, GuestAddress(0x10_0000))
            .unwrap();
        assert_eq!(
            ram.memory()
                .read_obj::<u16>(GuestAddress(0x10_0000))
                .unwrap(),
            0xdead
        );
        let mut on_disk = [0u8; 2];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut on_disk, 0x10_0000).unwrap();
        assert_eq!(on_disk, [bytes[0x10_0000], bytes[0x10_0001]]);
        // A file of any other size is refused, naming both sizes.
        let short = memory_file(&bytes[..size - 4096]);
        let e = GuestRam::from_file(&layout, &short).unwrap_err();
        assert!(
            matches!(e, GuestRamError::FileSize { expected, found }
            if expected == size as u64 && found == (size - 4096) as u64),
            "{e}"
        );
    }

    #[test]
    fn test_guest_ram_from_file_splits_regions_in_file_order() {
        // 3 GiB + 4 MiB: two regions, the second at 4 GiB reading the
        // file from offset 3 GiB. The file is sparse; only the pages read
        // are touched.
        let layout = MemoryLayout::with_phys_bits(3 * 1024 + 4, 40).unwrap();
        let path = std::env::temp_dir().join(format!("vmm-memory-ram-big-{}", std::process::id()));
        let f = File::create(&path).unwrap();
        f.set_len(layout.size()).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"high", crate::layout::MMIO_HOLE_START)
            .unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"low!", 0x1000).unwrap();
        drop(f);
        let file = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let ram = GuestRam::from_file(&layout, &file).unwrap();
        assert_eq!(ram.memory().num_regions(), 2);
        let mut b = [0u8; 4];
        ram.memory()
            .read_slice(&mut b, GuestAddress(1 << 32))
            .unwrap();
        assert_eq!(&b, b"high");
        ram.memory()
            .read_slice(&mut b, GuestAddress(0x1000))
            .unwrap();
        assert_eq!(&b, b"low!");
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
