//! The guest-physical memory map: RAM ranges, the 32-bit MMIO hole, and the
//! preferred addresses of the boot structures the VMM writes into RAM
//! (where [`crate::boot_plan`] puts them when the image leaves room).
//!
//! Every other crate asks this module where things go, so the map is written
//! down in exactly one place.

use vm_memory::GuestAddress;

/// One mebibyte.
pub const MIB: u64 = 1 << 20;
/// One gibibyte.
pub const GIB: u64 = 1 << 30;

/// Start of the 32-bit MMIO hole: no RAM is placed in `[MMIO_HOLE_START, 4 GiB)`
/// so 32-bit devices (IOAPIC, LAPIC, PCI BARs, test devices) have room.
pub const MMIO_HOLE_START: u64 = 3 * GIB;
/// I/O APIC MMIO base, in the MMIO hole.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Local APIC MMIO base, in the MMIO hole.
pub const LAPIC_BASE: u64 = 0xfee0_0000;
/// End of the 32-bit MMIO hole (exclusive); RAM beyond the hole resumes here.
pub const MMIO_HOLE_END: u64 = 4 * GIB;

/// Where the boot GDT for protected and long mode entry goes when the image
/// leaves room (the same low address Firecracker uses); the planner
/// ([`crate::boot_plan`]) moves it otherwise.
pub const BOOT_GDT_START: GuestAddress = GuestAddress(0x500);
/// Room for the boot GDT (null, two code, data and TSS descriptors).
pub const BOOT_GDT_MAX_ENTRIES: u64 = 5;
/// Preferred address of the level-4 page map of the identity-mapped
/// long-mode page tables; the PDPT follows at +0x1000, the page
/// directories at +0x2000 (the tables move as one block).
pub const PML4_START: GuestAddress = GuestAddress(0x9000);
/// Page-directory-pointer table of the identity map at its preferred place.
pub const PDPTE_START: GuestAddress = GuestAddress(0xa000);
/// First of the four page directories (2 MiB pages) of the identity map at
/// its preferred place; they cover the first 4 GiB and end at
/// [`BOOT_PAGE_TABLES_END`].
pub const PDE_START: GuestAddress = GuestAddress(0xb000);
/// How many page directories the identity map uses (one per GiB mapped).
pub const PDE_COUNT: u64 = 4;
/// First byte after the long-mode page tables at their preferred place.
pub const BOOT_PAGE_TABLES_END: GuestAddress = GuestAddress(0xb000 + PDE_COUNT * 0x1000);

/// The largest memory slot KVM accepts (`KVM_MEM_MAX_NR_PAGES` 4 KiB pages);
/// the RAM above 4 GiB is one slot, so it bounds the guest's size too.
pub const KVM_MAX_SLOT_BYTES: u64 = ((1 << 31) - 1) * 4096;

/// Where Linux's zero page (`struct boot_params`) goes when the image
/// leaves room (as in Firecracker).
pub const ZERO_PAGE_START: GuestAddress = GuestAddress(0x7000);
/// Preferred address of the boot information (Multiboot info / PVH
/// start_info, their memory maps, module lists and strings).
pub const BOOT_INFO_START: GuestAddress = GuestAddress(0x1_0000);
/// The most bytes the boot information may take (it is sized to what it
/// holds; this bounds what a long module list can ask for).
pub const BOOT_INFO_MAX_SIZE: u64 = 0x1_0000;
/// Preferred address of the kernel command line.
pub const CMDLINE_START: GuestAddress = GuestAddress(0x2_0000);
/// The longest command line, terminating NUL included (what is placed is
/// the line's own length).
pub const CMDLINE_MAX_SIZE: u64 = 0x1_0000;
/// Start of the legacy hole (VGA memory, option and BIOS ROMs) that firmware
/// reports as reserved even though RAM backs it here.
pub const LEGACY_HOLE_START: u64 = 0xa_0000;
/// End of the legacy hole: where "high" memory begins (1 MiB).
pub const LEGACY_HOLE_END: u64 = 0x10_0000;
/// Preferred address of the ACPI RSDP (the start of the spec's search range
/// `[0xe0000, 0x100000)`, 16-byte aligned); the tables it leads to follow
/// it when there is room. Where they really went is in the boot plan (and
/// a guest, or a restored VM, finds the RSDP by the spec's search).
pub const ACPI_TABLES_START: GuestAddress = GuestAddress(0xe_0000);
/// Preferred address of the Intel MP floating pointer (the start of the
/// BIOS ROM area `[0xf0000, 0x100000)` that MP-spec searches cover); the
/// configuration table follows it when there is room.
pub const MPTABLE_START: GuestAddress = GuestAddress(0xf_0000);
/// Preferred address of the real-mode interrupt handlers a PC firmware
/// would leave (`iret` stubs, the timer and IRQ stubs sending EOIs), which
/// the interrupt vector table points at when a real-mode image starts on
/// the PC platform. They stay in segment 0xf000.
pub const BIOS_STUBS_START: GuestAddress = GuestAddress(0xf_f000);
/// Bytes of the BIOS stub area (the stubs, the rest `hlt`).
pub const BIOS_STUBS_LEN: u64 = 0x100;
/// The real-mode interrupt vector table: 256 far pointers at address 0.
pub const IVT_START: GuestAddress = GuestAddress(0);
/// The BIOS data area (segment 0x40), right after the IVT.
pub const BDA_START: GuestAddress = GuestAddress(0x400);
/// End of the BIOS data area (exclusive).
pub const BDA_END: GuestAddress = GuestAddress(0x500);

/// Where ELF kernels conventionally load (1 MiB), the lowest address
/// linux-loader accepts for a kernel.
pub const HIGH_MEMORY_START: GuestAddress = GuestAddress(LEGACY_HOLE_END);

/// The smallest guest the layout accepts: 1 MiB holds the boot structures
/// at their preferred addresses.
pub const MIN_MEMORY_MIB: u64 = 1;

// The boot structures must fit in the smallest guest.
const _: () = assert!(BOOT_PAGE_TABLES_END.0 <= MIN_MEMORY_MIB * MIB);

/// What a firmware memory-map entry describes (the E820 types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapKind {
    /// Usable RAM (E820 type 1).
    Ram,
    /// Reserved (E820 type 2).
    Reserved,
}

impl MapKind {
    /// The E820 / Multiboot / PVH type number.
    pub fn e820_type(self) -> u32 {
        match self {
            MapKind::Ram => 1,
            MapKind::Reserved => 2,
        }
    }
}

/// One entry of the memory map a guest is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapEntry {
    /// First address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// RAM or reserved.
    pub kind: MapKind,
}

/// Errors describing a memory size that cannot be laid out.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    /// The guest was given no memory at all.
    #[error("guest memory size must be at least {MIN_MEMORY_MIB} MiB, got 0")]
    ZeroSize,
    /// The size in bytes overflows, the last RAM range would end past what
    /// the host's physical address width can address, or it is larger than
    /// one KVM memory slot can be.
    #[error("guest memory size {mib} MiB is more than this host can map (at most {max_mib} MiB with {phys_bits}-bit guest physical addresses and KVM's slot size limit)")]
    TooLarge {
        /// Requested size in MiB.
        mib: u64,
        /// Largest size that fits.
        max_mib: u64,
        /// Guest physical address width used for the check.
        phys_bits: u8,
    },
}

/// A contiguous range of guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamRange {
    /// First guest-physical address of the range.
    pub start: GuestAddress,
    /// Length in bytes.
    pub len: u64,
}

impl RamRange {
    /// One past the last address of the range.
    pub fn end(&self) -> u64 {
        // Cannot overflow: `MemoryLayout::new` rejects layouts ending past the
        // physical address width.
        self.start.0 + self.len
    }
}

/// The guest memory map for a given RAM size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLayout {
    size: u64,
    ranges: Vec<RamRange>,
}

impl MemoryLayout {
    /// Lays out `mib` MiB of RAM, checked against the host's physical address
    /// width (see [`host_phys_bits`]).
    pub fn new(mib: u64) -> Result<Self, LayoutError> {
        Self::with_phys_bits(mib, host_phys_bits())
    }

    /// Lays out `mib` MiB of RAM for a guest with `phys_bits`-bit physical
    /// addresses. Exposed so the arithmetic can be tested for any width.
    pub fn with_phys_bits(mib: u64, phys_bits: u8) -> Result<Self, LayoutError> {
        if mib == 0 {
            return Err(LayoutError::ZeroSize);
        }
        let phys_bits = phys_bits.clamp(32, 63);
        let limit = 1u64 << phys_bits;
        // RAM above the hole is shifted up by the hole's size, so that is the
        // most RAM a guest can have below `limit`.
        let max_bytes =
            (limit - (MMIO_HOLE_END - MMIO_HOLE_START)).min(MMIO_HOLE_START + KVM_MAX_SLOT_BYTES);
        let too_large = LayoutError::TooLarge {
            mib,
            max_mib: max_bytes / MIB,
            phys_bits,
        };
        let size = mib.checked_mul(MIB).ok_or(too_large.clone())?;
        if size > max_bytes {
            return Err(too_large);
        }
        let low = size.min(MMIO_HOLE_START);
        let mut ranges = vec![RamRange {
            start: GuestAddress(0),
            len: low,
        }];
        if size > low {
            ranges.push(RamRange {
                start: GuestAddress(MMIO_HOLE_END),
                len: size - low,
            });
        }
        Ok(MemoryLayout { size, ranges })
    }

    /// Total RAM in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The RAM ranges, sorted by address and never overlapping the MMIO hole.
    pub fn ram_ranges(&self) -> &[RamRange] {
        &self.ranges
    }

    /// Whether `[addr, addr + len)` lies entirely inside one RAM range.
    /// Overflowing ranges are never in RAM.
    pub fn contains_range(&self, addr: GuestAddress, len: u64) -> bool {
        let Some(end) = addr.0.checked_add(len) else {
            return false;
        };
        self.ranges
            .iter()
            .any(|r| addr.0 >= r.start.0 && end <= r.end())
    }

    /// Whether `addr` is a RAM address.
    pub fn is_ram(&self, addr: GuestAddress) -> bool {
        self.contains_range(addr, 1)
    }

    /// The memory map every boot protocol reports (E820, Multiboot mmap,
    /// PVH memmap), derived from the RAM ranges: RAM below 640 KiB, the
    /// legacy hole `[0xa0000, 1 MiB)` reserved, then the rest of RAM. Sorted,
    /// non-overlapping, covering exactly the RAM ranges.
    pub fn firmware_map(&self) -> Vec<MapEntry> {
        let mut map = Vec::new();
        for r in &self.ranges {
            let (start, end) = (r.start.0, r.end());
            let mut push = |s: u64, e: u64, kind| {
                if e > s {
                    map.push(MapEntry {
                        start: s,
                        len: e - s,
                        kind,
                    });
                }
            };
            let hole_s = LEGACY_HOLE_START.clamp(start, end);
            let hole_e = LEGACY_HOLE_END.clamp(start, end);
            push(start, hole_s, MapKind::Ram);
            push(hole_s, hole_e, MapKind::Reserved);
            push(hole_e, end, MapKind::Ram);
        }
        map
    }

    /// End of the RAM below 4 GiB (exclusive).
    pub fn low_ram_end(&self) -> u64 {
        self.ranges[0].end()
    }
}

/// The host CPU's physical address width (CPUID 0x8000_0008), which bounds
/// the guest-physical addresses KVM can map. Falls back to 36 bits, the
/// architectural minimum with PAE, when the leaf is absent.
pub fn host_phys_bits() -> u8 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        // CPUID is always available on x86_64 and has no side effects.
        let max_ext = __cpuid(0x8000_0000).eax;
        if max_ext >= 0x8000_0008 {
            let bits = (__cpuid(0x8000_0008).eax & 0xff) as u8;
            if bits >= 32 {
                return bits;
            }
        }
    }
    36
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn test_layout_zero_is_rejected() {
        assert_eq!(
            MemoryLayout::with_phys_bits(0, 40),
            Err(LayoutError::ZeroSize)
        );
    }

    #[test]
    fn test_layout_small_is_one_range() {
        let l = MemoryLayout::with_phys_bits(128, 40).unwrap();
        assert_eq!(
            l.ram_ranges(),
            &[RamRange {
                start: GuestAddress(0),
                len: 128 * MIB
            }]
        );
        assert!(l.is_ram(GuestAddress(128 * MIB - 1)));
        assert!(!l.is_ram(GuestAddress(128 * MIB)));
    }

    #[test]
    fn test_layout_large_skips_hole() {
        let l = MemoryLayout::with_phys_bits(5 * 1024, 40).unwrap();
        let r = l.ram_ranges();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].end(), MMIO_HOLE_START);
        assert_eq!(r[1].start.0, MMIO_HOLE_END);
        assert_eq!(r[1].len, 2 * GIB);
        assert!(!l.is_ram(GuestAddress(MMIO_HOLE_START)));
        assert!(!l.contains_range(GuestAddress(MMIO_HOLE_START - 1), 2));
    }

    #[test]
    fn test_layout_too_large_names_the_value() {
        let e = MemoryLayout::with_phys_bits(u64::MAX, 40).unwrap_err();
        assert!(e.to_string().contains(&u64::MAX.to_string()), "{e}");
        let e = MemoryLayout::with_phys_bits(1 << 20, 36).unwrap_err();
        assert!(matches!(e, LayoutError::TooLarge { mib, .. } if mib == 1 << 20));
    }

    #[test]
    fn test_firmware_map_reserves_legacy_hole() {
        let l = MemoryLayout::with_phys_bits(4096 + 512, 40).unwrap();
        let m = l.firmware_map();
        let kinds: Vec<(u64, u64, MapKind)> = m.iter().map(|e| (e.start, e.len, e.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (0, 0xa_0000, MapKind::Ram),
                (0xa_0000, 0x6_0000, MapKind::Reserved),
                (0x10_0000, MMIO_HOLE_START - 0x10_0000, MapKind::Ram),
                (MMIO_HOLE_END, GIB + 512 * MIB, MapKind::Ram),
            ]
        );
        // A 1 MiB guest: RAM then the hole, nothing above.
        let small = MemoryLayout::with_phys_bits(1, 40).unwrap().firmware_map();
        assert_eq!(small.len(), 2);
        assert_eq!(small[1].start + small[1].len, MIB);
    }

    #[test]
    fn test_layout_contains_range_overflow_is_false() {
        let l = MemoryLayout::with_phys_bits(16, 40).unwrap();
        assert!(!l.contains_range(GuestAddress(u64::MAX), 2));
    }

    proptest! {
        #[test]
        fn prop_firmware_map_covers_ram_exactly(mib in 1u64..8192) {
            let l = MemoryLayout::with_phys_bits(mib, 40).unwrap();
            let m = l.firmware_map();
            let total: u64 = m.iter().map(|e| e.len).sum();
            prop_assert_eq!(total, l.size());
            for w in m.windows(2) {
                prop_assert!(w[0].start + w[0].len <= w[1].start);
            }
            for e in &m {
                prop_assert!(l.contains_range(GuestAddress(e.start), e.len));
            }
        }

        #[test]
        fn prop_layout_preserves_size_and_avoids_hole(mib in 1u64..(1 << 22), bits in 32u8..52) {
            if let Ok(l) = MemoryLayout::with_phys_bits(mib, bits) {
                let total: u64 = l.ram_ranges().iter().map(|r| r.len).sum();
                prop_assert_eq!(total, mib * MIB);
                for r in l.ram_ranges() {
                    prop_assert!(r.end() <= MMIO_HOLE_START || r.start.0 >= MMIO_HOLE_END);
                    prop_assert!(r.end() <= 1u64 << bits);
                }
            }
        }

        #[test]
        fn prop_contains_range_matches_bytewise(mib in 1u64..16, addr in 0u64..(20 * MIB), len in 0u64..(2 * MIB)) {
            let l = MemoryLayout::with_phys_bits(mib, 40).unwrap();
            let expect = addr + len <= mib * MIB;
            prop_assert_eq!(l.contains_range(GuestAddress(addr), len), expect);
        }
    }
}
