//! Finding room in guest RAM for what a boot protocol hands the kernel
//! besides the kernel itself (modules, initrds): shared by the Multiboot and
//! PVH loaders so both place things by the same rules.

use vmm_memory::layout::overlapping_boot_structure;
use vmm_memory::{MapEntry, MapKind};

/// `v` rounded up to a multiple of `align` (a power of two), or `None` on
/// overflow.
pub fn align_up(v: u64, align: u64) -> Option<u64> {
    Some(v.checked_add(align - 1)? & !(align - 1))
}

/// The lowest `align`-aligned address at or above `from` where `len` bytes
/// lie inside one usable entry of `map`, end at or below `limit`, and stay
/// clear of the VMM's boot structures. `None` if nothing fits.
pub fn place_in_ram(map: &[MapEntry], from: u64, len: u64, align: u64, limit: u64) -> Option<u64> {
    let mut addr = align_up(from, align)?;
    for e in map.iter().filter(|e| e.kind == MapKind::Ram) {
        let entry_end = e.start.saturating_add(e.len).min(limit);
        if addr < e.start {
            addr = align_up(e.start, align)?;
        }
        loop {
            let end = addr.checked_add(len)?;
            if addr >= entry_end || end > entry_end {
                break;
            }
            match overlapping_boot_structure(addr, len.max(1)) {
                Some((_, structure_end)) => addr = align_up(structure_end, align)?,
                None => return Some(addr),
            }
        }
    }
    None
}
