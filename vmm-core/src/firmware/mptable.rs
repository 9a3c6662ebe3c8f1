//! The Intel MultiProcessor Specification 1.4 tables
//! (<https://web.archive.org/web/20121002210153/http://download.intel.com/design/archives/processors/pro/docs/24201606.pdf>),
//! for guests that look for CPUs and interrupt routing without ACPI.
//!
//! The MP floating pointer structure (chapter 4.1) goes where the boot plan
//! puts it ([`MpPlacement`]): 16-byte aligned inside the BIOS ROM area
//! `[0xf0000, 0xfffff]` or the EBDA's first KiB, which §4 tells operating
//! systems to search (preferably at [`MPTABLE_START`]); the configuration
//! table (§4.2, §4.3, [`table_len`] bytes) anywhere below 4 GiB,
//! preferably right after it. The configuration describes
//! the same machine as the ACPI MADT: one processor entry per CPU, the ISA
//! bus, the I/O APIC, the ISA IRQs' I/O APIC inputs (IRQ 0 on input 2 when
//! the overrides say so) and the local APICs' LINT0 (ExtINT) and LINT1
//! (NMI). The platform runs in virtual-wire mode (no IMCR).

use vm_memory::{GuestAddress, GuestMemoryBackend};
use vmm_memory::layout::MPTABLE_START;

use super::{
    address32, checksum, write_bytes, FirmwareError, Placer, PlatformInfo, IOAPIC_VERSION,
    LAPIC_VERSION,
};

/// Specification revision 1.4.
const SPEC_REV: u8 = 4;
/// Floating pointer length, in 16-byte paragraphs.
const FLOATING_POINTER_PARAGRAPHS: u8 = 1;
const FLOATING_POINTER_LEN: usize = 16;
const HEADER_LEN: usize = 44;
const OEM_ID: [u8; 8] = *b"RVMM    ";
const PRODUCT_ID: [u8; 12] = *b"PC          ";

/// Entry types (Table 4-3), in the ascending order the table must keep.
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;

/// Processor entry CPU flags: EN (usable), BP (the bootstrap processor).
const CPU_ENABLED: u8 = 1;
const CPU_BOOTSTRAP: u8 = 2;
/// I/O APIC entry flag EN.
const IOAPIC_ENABLED: u8 = 1;
/// The one bus, ISA, and its type string (Table 4-8).
const ISA_BUS_ID: u8 = 0;
const ISA_BUS_TYPE: [u8; 6] = *b"ISA   ";
/// Interrupt types (Table 4-10).
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
/// Destination local APIC ID meaning "every local APIC".
const ALL_LOCAL_APICS: u8 = 0xff;

/// Where the MP structures go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MpPlacement {
    /// The floating pointer (16-byte aligned, where a guest searches).
    pub pointer: GuestAddress,
    /// The configuration table.
    pub table: GuestAddress,
    /// The bytes reserved for the table ([`table_len`]).
    pub len: u64,
}

impl MpPlacement {
    /// The layout's preferred place: the pointer at [`MPTABLE_START`], the
    /// table right after it.
    pub fn preferred(len: u64) -> Self {
        MpPlacement {
            pointer: MPTABLE_START,
            table: GuestAddress(MPTABLE_START.0 + FLOATING_POINTER_LEN as u64),
            len,
        }
    }
}

/// Bytes of the configuration table describing `info`: what the boot plan
/// reserves for it.
pub fn table_len(info: &PlatformInfo) -> Result<u64, FirmwareError> {
    info.validate()?;
    Ok(config_table(info)?.len() as u64)
}

/// Writes the MP floating pointer and configuration table describing
/// `info` into `mem` where `at` says and returns the floating pointer's
/// address. Builds both first, so nothing is written when the table does
/// not fit.
pub fn write_mptable<M: GuestMemoryBackend>(
    mem: &M,
    info: &PlatformInfo,
    at: MpPlacement,
) -> Result<GuestAddress, FirmwareError> {
    info.validate()?;
    let limit = GuestAddress(at.table.0.saturating_add(at.len));
    let mut placer = Placer::new("MP table structures", at.table, limit);
    let table = config_table(info)?;
    let table_addr = placer.place("MP configuration table", table.len(), 16)?;
    let pointer = floating_pointer(address32("MP configuration table address", table_addr)?);
    write_bytes(mem, at.pointer.0, &pointer)?;
    write_bytes(mem, table_addr, &table)?;
    Ok(at.pointer)
}

/// §4.1: signature, configuration table address, length, revision,
/// checksum, and feature bytes that are all zero: a configuration table is
/// present (no default configuration) and IMCRP is clear (virtual-wire
/// mode, there is no IMCR to switch from PIC mode).
fn floating_pointer(table_addr: u32) -> [u8; FLOATING_POINTER_LEN] {
    let mut fp = [0u8; FLOATING_POINTER_LEN];
    fp[..4].copy_from_slice(b"_MP_");
    fp[4..8].copy_from_slice(&table_addr.to_le_bytes());
    fp[8] = FLOATING_POINTER_PARAGRAPHS;
    fp[9] = SPEC_REV;
    fp[10] = checksum(&fp);
    fp
}

/// §4.2 header followed by the §4.3 base table entries.
fn config_table(info: &PlatformInfo) -> Result<Vec<u8>, FirmwareError> {
    let mut entries = Vec::new();
    let mut count: u16 = 0;

    for id in 0..info.cpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BOOTSTRAP } else { 0 };
        entries.extend_from_slice(&[ENTRY_PROCESSOR, id, LAPIC_VERSION, flags]);
        entries.extend_from_slice(&info.cpu_signature.to_le_bytes());
        entries.extend_from_slice(&info.cpu_features.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }

    entries.extend_from_slice(&[ENTRY_BUS, ISA_BUS_ID]);
    entries.extend_from_slice(&ISA_BUS_TYPE);
    count += 1;

    entries.extend_from_slice(&[ENTRY_IOAPIC, info.ioapic_id, IOAPIC_VERSION, IOAPIC_ENABLED]);
    entries.extend_from_slice(&address32("I/O APIC base", info.ioapic_base)?.to_le_bytes());
    count += 1;

    for (irq, flags) in info.isa_irqs() {
        entries.extend_from_slice(&[ENTRY_IO_INTERRUPT, INT_TYPE_INT]);
        entries.extend_from_slice(&flags.to_le_bytes());
        entries.extend_from_slice(&[ISA_BUS_ID, irq, info.ioapic_id, info.isa_irq_gsi(irq)]);
        count += 1;
    }

    // Lines above the ISA range are otherwise unknown to a guest that reads
    // only this table; each gets an entry naming its pin, as Firecracker's
    // MP table does for every virtio GSI.
    for dev in info.virtio_mmio.iter().filter(|d| d.gsi >= 16) {
        entries.extend_from_slice(&[ENTRY_IO_INTERRUPT, INT_TYPE_INT]);
        entries.extend_from_slice(&super::VIRTIO_INTI_FLAGS.to_le_bytes());
        entries.extend_from_slice(&[ISA_BUS_ID, dev.gsi, info.ioapic_id, dev.gsi]);
        count += 1;
    }

    // The VMM programs every vCPU's LINT0 as ExtINT and LINT1 as NMI, so
    // both lines are described for all local APICs. Polarity and trigger
    // mode conform to the bus (flags 0).
    for (kind, lint) in [(INT_TYPE_EXTINT, 0), (INT_TYPE_NMI, 1)] {
        entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, kind, 0, 0]);
        entries.extend_from_slice(&[ISA_BUS_ID, 0, ALL_LOCAL_APICS, lint]);
        count += 1;
    }

    let total = HEADER_LEN + entries.len();
    let base_len = u16::try_from(total).map_err(|_| FirmwareError::NoRoom {
        area: "MP table structures",
        table: "MP configuration table (its 16-bit length field)",
        end: total as u64,
        limit: u64::from(u16::MAX),
    })?;
    let mut table = Vec::with_capacity(total);
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&base_len.to_le_bytes());
    table.push(SPEC_REV);
    table.push(0); // checksum, below
    table.extend_from_slice(&OEM_ID);
    table.extend_from_slice(&PRODUCT_ID);
    table.extend_from_slice(&0u32.to_le_bytes()); // no OEM table
    table.extend_from_slice(&0u16.to_le_bytes()); // its size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&address32("local APIC base", info.lapic_base)?.to_le_bytes());
    table.extend_from_slice(&0u16.to_le_bytes()); // no extended table
    table.push(0); // its checksum
    table.push(0); // reserved
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);
    Ok(table)
}

/// An independent reader of the tables, as an OS would walk them.
#[cfg(test)]
pub(super) mod tests {
    use vm_memory::GuestMemoryMmap;

    use super::*;
    use crate::firmware::acpi::tests::{guest, read};

    fn u16_at(b: &[u8], off: usize) -> u16 {
        u16::from_le_bytes([b[off], b[off + 1]])
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn sums_to_zero(b: &[u8]) -> bool {
        b.iter().fold(0u8, |s, x| s.wrapping_add(*x)) == 0
    }

    /// What an OS learns from the MP table.
    #[derive(Debug)]
    pub(crate) struct Mp {
        pub pointer: u64,
        pub lapic_base: u32,
        /// (APIC ID, version, flags, signature, features) per processor.
        pub cpus: Vec<(u8, u8, u8, u32, u32)>,
        /// (bus ID, type string) per bus.
        pub buses: Vec<(u8, [u8; 6])>,
        /// (ID, version, flags, address) per I/O APIC.
        pub ioapics: Vec<(u8, u8, u8, u32)>,
        /// (type, flags, bus, bus IRQ, I/O APIC ID, input) per I/O
        /// interrupt assignment.
        pub io_ints: Vec<(u8, u16, u8, u8, u8, u8)>,
        /// (type, flags, bus, bus IRQ, local APIC ID, LINTIN#) per local
        /// interrupt assignment.
        pub local_ints: Vec<(u8, u16, u8, u8, u8, u8)>,
    }

    /// Finds the floating pointer as an OS does (16-byte boundaries of the
    /// BIOS ROM area 0xf0000-0xfffff, signature, length, checksum), then
    /// walks the configuration table.
    pub(crate) fn parse(mem: &GuestMemoryMmap<()>) -> Mp {
        let area = read(mem, 0xf0000, 0x10000);
        let at = (0..area.len())
            .step_by(16)
            .find(|&o| {
                &area[o..o + 4] == b"_MP_" && area[o + 8] == 1 && sums_to_zero(&area[o..o + 16])
            })
            .expect("no MP floating pointer");
        let fp = &area[at..at + 16];
        assert_eq!(fp[9], 4, "spec revision");
        assert_eq!(
            fp[11], 0,
            "a configuration table, not a default configuration"
        );
        assert_eq!(fp[12] & 0x80, 0, "virtual-wire mode");

        let table_addr = u64::from(u32_at(fp, 4));
        let header = read(mem, table_addr, 44);
        assert_eq!(&header[..4], b"PCMP");
        assert_eq!(header[6], 4, "spec revision");
        let len = u16_at(&header, 4) as usize;
        assert!(
            table_addr + len as u64 <= 0x10_0000,
            "table runs past 1 MiB"
        );
        let table = read(mem, table_addr, len);
        assert!(sums_to_zero(&table), "base table checksum");
        assert_eq!((u16_at(&table, 40), table[42]), (0, 0), "no extended table");

        let mut mp = Mp {
            pointer: 0xf0000 + at as u64,
            lapic_base: u32_at(&table, 36),
            cpus: vec![],
            buses: vec![],
            ioapics: vec![],
            io_ints: vec![],
            local_ints: vec![],
        };
        let declared = u16_at(&table, 34);
        let (mut o, mut entries, mut last_type) = (44, 0u16, 0u8);
        while o < table.len() {
            let kind = table[o];
            assert!(kind >= last_type, "entries must be sorted by type");
            last_type = kind;
            let len = if kind == 0 { 20 } else { 8 };
            assert!(o + len <= table.len(), "entry at {o} runs past the table");
            let e = &table[o..o + len];
            match kind {
                0 => mp.cpus.push((e[1], e[2], e[3], u32_at(e, 4), u32_at(e, 8))),
                1 => mp.buses.push((e[1], e[2..8].try_into().unwrap())),
                2 => mp.ioapics.push((e[1], e[2], e[3], u32_at(e, 4))),
                3 => mp
                    .io_ints
                    .push((e[1], u16_at(e, 2), e[4], e[5], e[6], e[7])),
                4 => mp
                    .local_ints
                    .push((e[1], u16_at(e, 2), e[4], e[5], e[6], e[7])),
                other => panic!("unexpected entry type {other}"),
            }
            o += len;
            entries += 1;
        }
        assert_eq!(entries, declared, "entry count");
        mp
    }

    /// Writes at the preferred place.
    pub(crate) fn write_preferred(
        mem: &GuestMemoryMmap<()>,
        info: &PlatformInfo,
    ) -> Result<GuestAddress, FirmwareError> {
        let len = table_len(info)?;
        write_mptable(mem, info, MpPlacement::preferred(len))
    }

    fn written(info: &PlatformInfo) -> (GuestAddress, Mp) {
        let mem = guest(0, 2 << 20);
        let fp = write_preferred(&mem, info).unwrap();
        (fp, parse(&mem))
    }

    #[test]
    fn test_mptable_goes_where_it_is_placed() {
        let mem = guest(0, 2 << 20);
        let info = PlatformInfo::pc(2, 5);
        let at = MpPlacement {
            pointer: GuestAddress(0xf_8000),
            table: GuestAddress(0x3_0000),
            len: table_len(&info).unwrap(),
        };
        assert_eq!(write_mptable(&mem, &info, at).unwrap(), at.pointer);
        let mp = parse(&mem);
        assert_eq!((mp.pointer, mp.cpus.len()), (0xf_8000, 2));
        assert_eq!(
            read(&mem, 0xf_0000, 16),
            vec![0; 16],
            "nothing at the preferred place"
        );
        let table = read(&mem, 0x3_0000, 4);
        assert_eq!(&table, b"PCMP");
    }

    #[test]
    fn test_mptable_parses_back() {
        for cpus in [1u8, 4, 254] {
            let info = PlatformInfo::pc(cpus, 5);
            let (fp, mp) = written(&info);
            assert_eq!(fp, MPTABLE_START);
            assert_eq!(mp.pointer, fp.0);
            assert_eq!(mp.lapic_base, 0xfee0_0000);

            assert_eq!(mp.cpus.len(), cpus as usize);
            for (i, &(id, version, flags, sig, features)) in mp.cpus.iter().enumerate() {
                assert_eq!(id as usize, i);
                assert_eq!(version, 0x14);
                let bsp = if i == 0 { 2 } else { 0 };
                assert_eq!(flags, 1 | bsp, "CPU {i} flags");
                assert_eq!((sig, features), (0x600, 0x201));
            }
            assert_eq!(mp.buses, vec![(0, *b"ISA   ")]);
            assert_eq!(mp.ioapics, vec![(0, 0x11, 1, 0xfec0_0000)]);

            // ISA IRQs 0-15 but the cascade, IRQ 0 on input 2, the SCI
            // (IRQ 9) level-triggered active-high, the rest as ISA says.
            let mut expected = vec![];
            for irq in (0..16u8).filter(|&i| i != 2) {
                let pin = if irq == 0 { 2 } else { irq };
                let flags = if irq == 9 { 0x0d } else { 0 };
                expected.push((0, flags, 0, irq, 0, pin));
            }
            assert_eq!(mp.io_ints, expected);
            assert_eq!(
                mp.local_ints,
                vec![(3, 0, 0, 0, 0xff, 0), (1, 0, 0, 0, 0xff, 1)],
                "LINT0 ExtINT, LINT1 NMI"
            );
        }
    }

    #[test]
    fn test_virtio_lines_above_the_isa_range_get_entries() {
        let info = PlatformInfo {
            virtio_mmio: vec![
                crate::firmware::VirtioMmio {
                    base: 0xfeb0_0000,
                    gsi: 5,
                },
                crate::firmware::VirtioMmio {
                    base: 0xfeb0_1000,
                    gsi: 16,
                },
            ],
            ..PlatformInfo::pc(1, 5)
        };
        let (_, mp) = written(&info);
        let (_, plain) = written(&PlatformInfo::pc(1, 5));
        // GSI 5 is an ISA IRQ the table already routes; 16 is new, edge,
        // active-high, on its own pin.
        assert_eq!(mp.io_ints.len(), plain.io_ints.len() + 1);
        assert_eq!(mp.io_ints.last(), Some(&(0, 0x05, 0, 16, 0, 16)));
    }

    #[test]
    fn test_options_change_the_table() {
        let info = PlatformInfo {
            irq0_to_gsi2: false,
            sci_irq: 11,
            ioapic_id: 5,
            cpu_signature: 0x6a7,
            cpu_features: 0xbfeb_fbff,
            ..PlatformInfo::pc(2, 5)
        };
        let (_, mp) = written(&info);
        assert_eq!(mp.cpus[1].3, 0x6a7);
        assert_eq!(mp.cpus[1].4, 0xbfeb_fbff);
        assert_eq!(mp.ioapics[0].0, 5);
        assert_eq!(mp.io_ints[0], (0, 0, 0, 0, 5, 0), "IRQ 0 on input 0");
        let levels: Vec<u8> = mp
            .io_ints
            .iter()
            .filter(|e| e.1 == 0x0d)
            .map(|e| e.3)
            .collect();
        assert_eq!(levels, vec![11]);
    }

    #[test]
    fn test_errors() {
        let mem = guest(0, 2 << 20);
        let e = write_mptable(
            &mem,
            &PlatformInfo::pc(4, 5),
            MpPlacement {
                len: 0x30,
                ..MpPlacement::preferred(0)
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("MP configuration table would end"),
            "{e}"
        );
        assert_eq!(
            read(&mem, 0xf0000, 0x100),
            vec![0; 0x100],
            "nothing written"
        );

        let e = write_preferred(&mem, &PlatformInfo::pc(255, 5)).unwrap_err();
        assert!(
            matches!(
                e,
                FirmwareError::TooManyCpus {
                    cpus: 255,
                    max: 254
                }
            ),
            "{e}"
        );

        let mem = guest(1 << 20, 1 << 20);
        let e = write_preferred(&mem, &PlatformInfo::pc(1, 5)).unwrap_err();
        assert!(
            matches!(e, FirmwareError::GuestMemory { addr: 0xf0000, .. }),
            "{e}"
        );
    }
}
