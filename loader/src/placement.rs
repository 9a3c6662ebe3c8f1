//! Finding room in guest RAM for what a boot protocol hands the kernel
//! besides the kernel itself (modules, initrds): shared by the Multiboot and
//! PVH loaders so both place things by the same rules.

use vmm_memory::{MapEntry, MapKind};

/// `v` rounded up to a multiple of `align` (a power of two), or `None` on
/// overflow.
pub fn align_up(v: u64, align: u64) -> Option<u64> {
    Some(v.checked_add(align - 1)? & !(align - 1))
}

/// The lowest `align`-aligned address at or above `from` where `len` bytes
/// lie inside one usable entry of `map` and end at or below `limit`. `map`
/// is the memory map the kernel gets, which reserves the VMM's boot
/// structures (`BootPlan::memory_map`), so what is placed stays clear of
/// them. `None` if nothing fits.
pub fn place_in_ram(map: &[MapEntry], from: u64, len: u64, align: u64, limit: u64) -> Option<u64> {
    let from = align_up(from, align)?;
    map.iter().filter(|e| e.kind == MapKind::Ram).find_map(|e| {
        let entry_end = e.start.saturating_add(e.len).min(limit);
        let addr = align_up(from.max(e.start), align)?;
        let end = addr.checked_add(len)?;
        (addr < entry_end && end <= entry_end).then_some(addr)
    })
}
