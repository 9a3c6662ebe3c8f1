//! Atomic operations on guest RAM through its host mapping, so they are
//! atomic against the guest's other vCPUs (which access the same pages
//! natively or through KVM) exactly as the locked instruction would be.
//!
//! Every address is checked against guest RAM and its alignment before the
//! host pointer is formed; nothing else in the fallback touches raw memory.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// The host address of `len` bytes of guest RAM at `gpa`, if they are RAM
/// in one region and `gpa` is `align`-aligned.
fn host_ptr(mem: &GuestMemoryMmap, gpa: u64, len: usize, align: u64) -> Option<*mut u8> {
    if !gpa.is_multiple_of(align) {
        return None;
    }
    let last = gpa.checked_add(len as u64 - 1)?;
    let (region, _) = mem.to_region_addr(GuestAddress(gpa))?;
    let (last_region, _) = mem.to_region_addr(GuestAddress(last))?;
    if !std::ptr::eq(region, last_region) {
        return None;
    }
    mem.get_host_address(GuestAddress(gpa)).ok()
}

/// Atomically ORs `bits` into the 4- or 8-byte paging entry at `gpa` (the
/// MMU's accessed/dirty updates). Entries outside RAM are left alone.
pub(crate) fn fetch_or(mem: &GuestMemoryMmap, gpa: u64, size: usize, bits: u64) {
    let Some(ptr) = host_ptr(mem, gpa, size, size as u64) else {
        return;
    };
    if size == 8 {
        // SAFETY: `ptr` is the host mapping of 8 bytes of guest RAM, 8-byte
        // aligned (checked above); the mapping lives as long as `mem`, and
        // every other access to it (guest vCPUs, other threads) is either
        // atomic or tolerates a concurrent atomic update, as with the MMU.
        let entry = unsafe { AtomicU64::from_ptr(ptr.cast::<u64>()) };
        entry.fetch_or(bits, Ordering::SeqCst);
    } else {
        // SAFETY: as above, for a 4-byte aligned 32-bit entry.
        let entry = unsafe { AtomicU32::from_ptr(ptr.cast::<u32>()) };
        entry.fetch_or(bits as u32, Ordering::SeqCst);
    }
}

/// Why [`cmpxchg16b`] did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostAccessError {
    /// The operand is not 16-byte aligned.
    Misaligned,
    /// The operand is not guest RAM.
    NotRam,
}

/// `lock cmpxchg16b` on the 16 bytes of guest RAM at `gpa`: if they equal
/// `expected` (low, high) they become `new` and the result is
/// `(true, expected)`, otherwise they are left as they are (hardware writes
/// them back unchanged) and the result is `(false, current)`.
pub(crate) fn cmpxchg16b(
    mem: &GuestMemoryMmap,
    gpa: u64,
    expected: (u64, u64),
    new: (u64, u64),
) -> Result<(bool, (u64, u64)), HostAccessError> {
    if !gpa.is_multiple_of(16) {
        return Err(HostAccessError::Misaligned);
    }
    let ptr = host_ptr(mem, gpa, 16, 16).ok_or(HostAccessError::NotRam)?;
    let (mut lo, mut hi) = expected;
    let ok: u8;
    // SAFETY: `ptr` is the host mapping of 16 bytes of guest RAM, 16-byte
    // aligned (as cmpxchg16b requires), valid while `mem` lives. The
    // instruction is atomic against every other access to those bytes. RBX
    // cannot be an asm operand, so the new low half is swapped into it and
    // RBX restored afterwards; `mov` and `xchg` leave ZF alone.
    unsafe {
        std::arch::asm!(
            "xchg {new_lo}, rbx",
            "lock cmpxchg16b xmmword ptr [{ptr}]",
            "sete {ok}",
            "mov rbx, {new_lo}",
            ptr = in(reg) ptr,
            new_lo = inout(reg) new.0 => _,
            ok = out(reg_byte) ok,
            in("rcx") new.1,
            inout("rax") lo,
            inout("rdx") hi,
            options(nostack),
        );
    }
    Ok((ok != 0, (lo, hi)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    fn ram() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x2000)]).unwrap()
    }

    #[test]
    fn test_cmpxchg16b_exchanges_on_match_only() {
        let mem = ram();
        mem.write_obj(0x1111u64, GuestAddress(0x100)).unwrap();
        mem.write_obj(0x2222u64, GuestAddress(0x108)).unwrap();
        let (ok, seen) = cmpxchg16b(&mem, 0x100, (0x1111, 0x2222), (7, 8)).unwrap();
        assert_eq!((ok, seen), (true, (0x1111, 0x2222)));
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x100)).unwrap(), 7);
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x108)).unwrap(), 8);
        let (ok, seen) = cmpxchg16b(&mem, 0x100, (1, 2), (3, 4)).unwrap();
        assert_eq!((ok, seen), (false, (7, 8)));
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x100)).unwrap(), 7);
    }

    #[test]
    fn test_cmpxchg16b_checks_alignment_and_ram() {
        let mem = ram();
        assert_eq!(
            cmpxchg16b(&mem, 0x108, (0, 0), (0, 0)),
            Err(HostAccessError::Misaligned)
        );
        assert_eq!(
            cmpxchg16b(&mem, 0x2000, (0, 0), (0, 0)),
            Err(HostAccessError::NotRam)
        );
        assert!(cmpxchg16b(&mem, 0x1ff0, (0, 0), (0, 0)).is_ok());
    }

    #[test]
    fn test_fetch_or_sets_bits_in_ram_only() {
        let mem = ram();
        mem.write_obj(1u64, GuestAddress(0x800)).unwrap();
        fetch_or(&mem, 0x800, 8, 0x60);
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x800)).unwrap(), 0x61);
        fetch_or(&mem, 0x900, 4, 0x20);
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x900)).unwrap(), 0x20);
        fetch_or(&mem, 0x5000, 8, 0x20); // outside RAM: ignored
    }
}
