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
}
