//! Identity-mapped page tables for long-mode entry: the first 4 GiB with
//! 2 MiB pages (one PML4 entry, four PDPT entries, four page directories).
//!
//! 2 MiB pages need no CPUID feature (1 GiB pages do), so every guest CPU
//! model can walk these tables.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_memory::boot_plan::PAGE_TABLES_LEN;
use vmm_memory::layout::PDE_COUNT;

/// Present + writable.
const PTE_PRESENT_RW: u64 = 0x3;
/// Present + writable + page size (a 2 MiB leaf in a page directory).
const PDE_LARGE_PAGE: u64 = 0x83;
/// Bytes covered by one page-directory entry.
const LARGE_PAGE_SIZE: u64 = 2 << 20;

/// Bytes of one table.
const TABLE: u64 = 0x1000;

// The PML4, the PDPT and the page directories, one page each.
const _: () = assert!(PAGE_TABLES_LEN == (2 + PDE_COUNT) * TABLE);

/// Writes the identity map into guest memory at `base` (4 KiB aligned: the
/// PML4, the PDPT at +0x1000, the page directories from +0x2000, all
/// [`PAGE_TABLES_LEN`] bytes of it written) and returns the CR3 value.
pub fn write_identity_map<M: GuestMemoryBackend>(
    mem: &M,
    base: GuestAddress,
) -> Result<u64, vm_memory::GuestMemoryError> {
    let pml4 = base.0;
    let pdpt = pml4 + TABLE;
    let mut first = [0u8; TABLE as usize];
    first[..8].copy_from_slice(&(pdpt | PTE_PRESENT_RW).to_le_bytes());
    mem.write_slice(&first, GuestAddress(pml4))?;
    let mut pdpt_table = [0u8; TABLE as usize];
    for (dir, slot) in pdpt_table
        .chunks_exact_mut(8)
        .take(PDE_COUNT as usize)
        .enumerate()
    {
        let pd = pdpt + TABLE * (1 + dir as u64);
        slot.copy_from_slice(&(pd | PTE_PRESENT_RW).to_le_bytes());
    }
    mem.write_slice(&pdpt_table, GuestAddress(pdpt))?;
    for dir in 0..PDE_COUNT {
        let pd = pdpt + TABLE * (1 + dir);
        let mut table = [0u8; 4096];
        for (i, slot) in table.chunks_exact_mut(8).enumerate() {
            let page = (dir * 512 + i as u64) * LARGE_PAGE_SIZE;
            slot.copy_from_slice(&(page | PDE_LARGE_PAGE).to_le_bytes());
        }
        mem.write_slice(&table, GuestAddress(pd))?;
    }
    Ok(pml4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    /// Walks the tables like the MMU does for a 2 MiB mapping.
    fn translate(mem: &GuestMemoryMmap, cr3: u64, va: u64) -> Option<u64> {
        let pml4e: u64 = mem
            .read_obj(GuestAddress(cr3 + ((va >> 39) & 0x1ff) * 8))
            .ok()?;
        if pml4e & 1 == 0 {
            return None;
        }
        let pdpte: u64 = mem
            .read_obj(GuestAddress((pml4e & !0xfff) + ((va >> 30) & 0x1ff) * 8))
            .ok()?;
        if pdpte & 1 == 0 {
            return None;
        }
        let pde: u64 = mem
            .read_obj(GuestAddress((pdpte & !0xfff) + ((va >> 21) & 0x1ff) * 8))
            .ok()?;
        if pde & 0x81 != 0x81 {
            return None;
        }
        Some((pde & !0x1f_ffff & !(1 << 63)) | (va & 0x1f_ffff))
    }

    #[test]
    fn test_identity_map_covers_4gib() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        // Stale bytes where the tables go must not survive as entries.
        mem.write_slice(&[0xffu8; 0x8000], GuestAddress(0x3_0000))
            .unwrap();
        let cr3 = write_identity_map(&mem, GuestAddress(0x3_1000)).unwrap();
        assert_eq!(cr3, 0x3_1000);
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x3_1008)).unwrap(), 0);
        assert_eq!(
            mem.read_obj::<u64>(GuestAddress(0x3_2000 + 4 * 8)).unwrap(),
            0
        );
        // Only the tables' bytes are touched.
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x3_0fff)).unwrap(), 0xff);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x3_7000)).unwrap(), 0xff);
        for va in [
            0u64,
            0x1000,
            0x20_0000 + 5,
            0xbfff_ffff,
            0xfee0_0000,
            0xffff_ffff,
        ] {
            assert_eq!(translate(&mem, cr3, va), Some(va), "va {va:#x}");
        }
        assert_eq!(translate(&mem, cr3, 1 << 32), None);
    }
}
