//! Starting a bzImage through its own 64-bit entry: the protected-mode part
//! loaded where the header asks, so the kernel's own decompressor runs in
//! the guest.

use std::io::Cursor;

use linux_loader::loader::{BzImage, KernelLoader};
use vm_memory::{GuestAddress, GuestMemoryBackend};
use vmm_memory::layout::HIGH_MEMORY_START;
use vmm_memory::MemoryLayout;

use super::setup_header::{self, BzImageHeader, PROTO_XLOADFLAGS};
use super::{LinuxError, LoadedKernel, ENTRY_64_OFFSET};

/// Loads a bzImage's protected-mode part for its own 64-bit entry.
pub(super) fn load_own_entry<M: GuestMemoryBackend>(
    mem: &M,
    layout: &MemoryLayout,
    image: &[u8],
    bz: &BzImageHeader,
) -> Result<LoadedKernel, LinuxError> {
    let version = bz.version();
    if bz.xloadflags().is_none() {
        return Err(LinuxError::ProtocolTooOld {
            version,
            required: PROTO_XLOADFLAGS,
            why: "only xloadflags' XLF_KERNEL_64 says a kernel has the 64-bit entry point at 0x200",
        });
    }
    let hdr = bz.hdr;
    let pref = if version >= setup_header::PROTO_PREF_ADDRESS {
        hdr.pref_address
    } else {
        0
    };
    let load = if pref != 0 {
        pref
    } else {
        u64::from(hdr.code32_start)
    };
    let pm_len = (image.len() - bz.setup_size) as u64;
    let align = u64::from(hdr.kernel_alignment);
    // boot.rst, init_size: where the kernel runs while it decompresses.
    let runtime_start = if hdr.relocatable_kernel != 0 && align.is_power_of_two() {
        load.checked_add(align - 1).map(|a| a & !(align - 1))
    } else if pref != 0 {
        Some(pref)
    } else {
        Some(load)
    };
    let ram_end = layout.low_ram_end();
    let outside = |end| LinuxError::KernelOutsideRam {
        start: load,
        end,
        ram_end,
    };
    let end = runtime_start
        .and_then(|r| r.checked_add(bz.init_size()))
        .zip(load.checked_add(pm_len))
        .map(|(a, b)| a.max(b))
        .ok_or_else(|| outside(u64::MAX))?;
    if load < HIGH_MEMORY_START.0
        || end > ram_end
        || !layout.contains_range(GuestAddress(load), end - load)
    {
        return Err(outside(end));
    }
    BzImage::load(
        mem,
        Some(GuestAddress(load)),
        &mut Cursor::new(image),
        Some(HIGH_MEMORY_START),
    )
    .map_err(LinuxError::KernelLoad)?;
    Ok(LoadedKernel {
        segments: vec![(GuestAddress(load), pm_len)],
        entry: load + ENTRY_64_OFFSET,
        start: load,
        end: load + pm_len,
        footprint_end: end,
    })
}
