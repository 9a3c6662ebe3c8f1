//! Finding the ACPI RSDP in guest memory the way OSPM does (ACPI 6.5
//! §5.2.5.1): a 16-byte aligned "RSD PTR " whose first 20 bytes (and, from
//! revision 2, all `Length` bytes) sum to zero, in the first KiB of the
//! EBDA (its segment at BDA word 0x40e) or in `[0xe0000, 0x100000)`.
//!
//! The boot plan may move the RSDP within those ranges when the image
//! needs its preferred address; code that did not place it (a restored VM,
//! a wake from S3 after a restore) finds it here, from guest memory, which
//! is what the guest itself was told.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

/// The RSDP signature.
const SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// Bytes the ACPI 1.0 checksum covers.
const V1_LEN: usize = 20;
/// Offset of the revision byte and of the 2.0+ length.
const REVISION: usize = 15;
const LENGTH: usize = 20;
/// The 2.0+ structure's size.
const V2_LEN: usize = 36;
/// BDA word holding the EBDA's real-mode segment.
const BDA_EBDA_SEGMENT: u64 = 0x40e;
/// The BIOS read-only area searched after the EBDA.
const BIOS_AREA: (u64, u64) = (0xe_0000, 0x10_0000);

fn sums_to_zero(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b)) == 0
}

/// Whether `bytes` (at least 36 of them) start a valid RSDP.
fn is_rsdp(bytes: &[u8]) -> bool {
    if bytes.len() < V2_LEN || &bytes[..8] != SIGNATURE || !sums_to_zero(&bytes[..V1_LEN]) {
        return false;
    }
    if bytes[REVISION] < 2 {
        return true;
    }
    let len = u32::from_le_bytes([
        bytes[LENGTH],
        bytes[LENGTH + 1],
        bytes[LENGTH + 2],
        bytes[LENGTH + 3],
    ]) as usize;
    len >= V2_LEN && len <= bytes.len() && sums_to_zero(&bytes[..len])
}

/// The first valid RSDP at a 16-byte boundary of `[start, end)`.
fn scan<M: GuestMemoryBackend>(mem: &M, start: u64, end: u64) -> Option<GuestAddress> {
    let len = usize::try_from(end.checked_sub(start)?).ok()?;
    let mut area = vec![0u8; len];
    mem.read_slice(&mut area, GuestAddress(start)).ok()?;
    (0..len.saturating_sub(V2_LEN - 1))
        .step_by(16)
        .find(|&off| is_rsdp(&area[off..]))
        .map(|off| GuestAddress(start + off as u64))
}

/// Where the guest finds the RSDP: the EBDA's first KiB first, then the
/// BIOS area. `None` if there is none.
pub fn find_rsdp<M: GuestMemoryBackend>(mem: &M) -> Option<GuestAddress> {
    let ebda = mem
        .read_obj::<u16>(GuestAddress(BDA_EBDA_SEGMENT))
        .ok()
        .map(|seg| u64::from(seg) << 4)
        .filter(|&at| at != 0);
    ebda.and_then(|at| scan(mem, at, at + 1024))
        .or_else(|| scan(mem, BIOS_AREA.0, BIOS_AREA.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware::acpi::{tables_len, write_acpi_tables, AcpiPlacement};
    use crate::firmware::PlatformInfo;
    use vm_memory::GuestMemoryMmap;

    fn guest() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    #[test]
    fn test_find_rsdp_where_the_plan_put_it() {
        let info = PlatformInfo::pc(2, 5);
        let len = tables_len(&info).unwrap();
        // The preferred place.
        let mem = guest();
        assert_eq!(find_rsdp(&mem), None);
        write_acpi_tables(&mem, &info, AcpiPlacement::preferred(len)).unwrap();
        assert_eq!(find_rsdp(&mem), Some(GuestAddress(0xe_0000)));
        // Moved up in the BIOS area.
        let mem = guest();
        let at = AcpiPlacement {
            rsdp: GuestAddress(0xf_8010),
            tables: GuestAddress(0x3_0000),
            len,
        };
        write_acpi_tables(&mem, &info, at).unwrap();
        assert_eq!(find_rsdp(&mem), Some(GuestAddress(0xf_8010)));
        // In the EBDA, which the BDA points at: found before the BIOS area.
        let ebda = 0x9_fc00u64;
        mem.write_obj((ebda >> 4) as u16, GuestAddress(0x40e))
            .unwrap();
        let at = AcpiPlacement {
            rsdp: GuestAddress(ebda + 0x10),
            tables: GuestAddress(0x4_0000),
            len,
        };
        write_acpi_tables(&mem, &info, at).unwrap();
        assert_eq!(find_rsdp(&mem), Some(GuestAddress(ebda + 0x10)));
    }

    #[test]
    fn test_find_rsdp_ignores_bad_checksums_and_misalignment() {
        let info = PlatformInfo::pc(1, 5);
        let len = tables_len(&info).unwrap();
        let mem = guest();
        let at = AcpiPlacement {
            rsdp: GuestAddress(0xe_0100),
            tables: GuestAddress(0x3_0000),
            len,
        };
        write_acpi_tables(&mem, &info, at).unwrap();
        // A signature with a wrong checksum before it, and one off the
        // 16-byte grid: neither counts.
        mem.write_slice(b"RSD PTR \x01", GuestAddress(0xe_0000))
            .unwrap();
        mem.write_slice(b"RSD PTR ", GuestAddress(0xe_0048))
            .unwrap();
        assert_eq!(find_rsdp(&mem), Some(GuestAddress(0xe_0100)));
        // A corrupted extended checksum disqualifies a revision 2 RSDP.
        let b: u8 = mem.read_obj(GuestAddress(0xe_0100 + 33)).unwrap();
        mem.write_obj(b.wrapping_add(1), GuestAddress(0xe_0100 + 33))
            .unwrap();
        assert_eq!(find_rsdp(&mem), None);
        // Guest memory without the BIOS area.
        let small = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        assert_eq!(find_rsdp(&small), None);
    }
}
