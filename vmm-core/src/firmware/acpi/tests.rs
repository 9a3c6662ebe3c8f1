//! The ACPI tables parsed back and checked field by field.

use std::collections::BTreeMap;

use vm_memory::{Bytes, GuestMemoryMmap};

use super::*;
use crate::firmware::ResetRegister;

pub(crate) fn guest(start: u64, len: u64) -> GuestMemoryMmap<()> {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(start), len as usize)]).unwrap()
}

pub(crate) fn read(mem: &GuestMemoryMmap<()>, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
    buf
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn sums_to_zero(b: &[u8]) -> bool {
    b.iter().fold(0u8, |s, x| s.wrapping_add(*x)) == 0
}

/// What an OS learns from the tables.
#[derive(Debug)]
pub(crate) struct Acpi {
    pub rsdp: u64,
    /// Signature → (address, bytes) of each table the XSDT lists.
    pub tables: BTreeMap<[u8; 4], (u64, Vec<u8>)>,
    pub facs: (u64, Vec<u8>),
    pub dsdt: (u64, Vec<u8>),
    /// (ACPI processor UID, APIC ID, flags) per Processor Local APIC.
    pub lapics: Vec<(u8, u8, u32)>,
    /// (ID, address, GSI base) per I/O APIC.
    pub ioapics: Vec<(u8, u32, u32)>,
    /// (bus, source, GSI, flags) per Interrupt Source Override.
    pub overrides: Vec<(u8, u8, u32, u16)>,
    /// (UID, flags, LINT#) per Local APIC NMI.
    pub nmis: Vec<(u8, u16, u8)>,
}

impl Acpi {
    pub(crate) fn fadt(&self) -> &[u8] {
        &self.tables[b"FACP"].1
    }

    pub(crate) fn madt(&self) -> &[u8] {
        &self.tables[b"APIC"].1
    }
}

/// Reads a description table at `addr`, checking it lies in the ACPI
/// area and that its checksum holds.
fn table(mem: &GuestMemoryMmap<()>, addr: u64) -> ([u8; 4], Vec<u8>) {
    assert!(addr >= ACPI_TABLES_START.0, "table at {addr:#x}");
    let header = read(mem, addr, 36);
    let len = u32_at(&header, 4) as usize;
    assert!(len >= 36, "table at {addr:#x} has length {len}");
    assert!(
        addr + len as u64 <= ACPI_TABLES_END.0,
        "table at {addr:#x} too long"
    );
    let bytes = read(mem, addr, len);
    let sig: [u8; 4] = bytes[..4].try_into().unwrap();
    assert!(
        sums_to_zero(&bytes),
        "bad checksum in {:?}",
        String::from_utf8_lossy(&sig)
    );
    (sig, bytes)
}

/// Finds the RSDP as an OS does (16-byte boundaries of the BIOS area
/// 0xe0000-0xfffff, signature and checksum), then walks everything.
pub(crate) fn parse(mem: &GuestMemoryMmap<()>) -> Acpi {
    let area = read(mem, 0xe0000, 0x20000);
    let at = (0..area.len() - 36)
        .step_by(16)
        .find(|&o| &area[o..o + 8] == b"RSD PTR " && sums_to_zero(&area[o..o + 20]))
        .expect("no RSDP");
    let rsdp = &area[at..at + 36];
    assert_eq!(rsdp[15], 2, "RSDP revision");
    assert_eq!(u32_at(rsdp, 20), 36, "RSDP length");
    assert!(sums_to_zero(rsdp), "RSDP extended checksum");

    let (sig, xsdt) = table(mem, u64_at(rsdp, 24));
    assert_eq!(&sig, b"XSDT");
    assert_eq!(xsdt[8], 1, "XSDT revision");
    let entries: Vec<u64> = (36..xsdt.len())
        .step_by(8)
        .map(|o| u64_at(&xsdt, o))
        .collect();
    let (sig, rsdt) = table(mem, u64::from(u32_at(rsdp, 16)));
    assert_eq!(&sig, b"RSDT");
    let rsdt_entries: Vec<u64> = (36..rsdt.len())
        .step_by(4)
        .map(|o| u64::from(u32_at(&rsdt, o)))
        .collect();
    assert_eq!(entries, rsdt_entries, "RSDT and XSDT disagree");

    let mut tables = BTreeMap::new();
    for addr in entries {
        let (sig, bytes) = table(mem, addr);
        assert!(tables.insert(sig, (addr, bytes)).is_none(), "{sig:?} twice");
        assert_eq!(&tables[&sig].1[16..24], &xsdt[16..24], "OEM table ID");
    }

    let fadt = &tables[b"FACP"].1;
    let facs_addr = u64::from(u32_at(fadt, 36));
    assert_eq!(facs_addr % 64, 0, "FACS alignment");
    let facs = read(mem, facs_addr, 64);
    assert_eq!(&facs[..4], b"FACS");
    assert_eq!(u32_at(&facs, 4), 64);
    let dsdt_addr = u64_at(fadt, 140);
    assert_eq!(u64::from(u32_at(fadt, 40)), dsdt_addr, "DSDT vs X_DSDT");
    let (sig, dsdt) = table(mem, dsdt_addr);
    assert_eq!(&sig, b"DSDT");

    let madt = &tables[b"APIC"].1;
    let (mut lapics, mut ioapics, mut overrides, mut nmis) = (vec![], vec![], vec![], vec![]);
    let mut o = 44;
    while o < madt.len() {
        let (kind, len) = (madt[o], madt[o + 1] as usize);
        assert!(len >= 2 && o + len <= madt.len(), "MADT entry at {o}");
        let e = &madt[o..o + len];
        match kind {
            0 => {
                assert_eq!(len, 8);
                lapics.push((e[2], e[3], u32_at(e, 4)));
            }
            1 => {
                assert_eq!(len, 12);
                ioapics.push((e[2], u32_at(e, 4), u32_at(e, 8)));
            }
            2 => {
                assert_eq!(len, 10);
                overrides.push((e[2], e[3], u32_at(e, 4), u16_at(e, 8)));
            }
            4 => {
                assert_eq!(len, 6);
                nmis.push((e[2], u16_at(e, 3), e[5]));
            }
            other => panic!("unexpected MADT entry type {other}"),
        }
        o += len;
    }
    assert_eq!(o, madt.len());
    Acpi {
        rsdp: ACPI_TABLES_START.0 + at as u64,
        tables,
        facs: (facs_addr, facs),
        dsdt: (dsdt_addr, dsdt),
        lapics,
        ioapics,
        overrides,
        nmis,
    }
}

/// The integers of the package named `name` in `aml`.
fn package(aml: &[u8], name: &[u8; 4]) -> Option<Vec<u64>> {
    let at = aml.windows(4).position(|w| w == name)?;
    assert_eq!(aml[at - 1], 0x08, "NameOp before {name:?}");
    let mut p = at + 4;
    assert_eq!(aml[p], 0x12, "PackageOp");
    p += 1;
    // PkgLength: bits 7-6 of the lead byte count the bytes that follow.
    p += 1 + (aml[p] >> 6) as usize;
    let count = aml[p];
    p += 1;
    let mut values = Vec::new();
    for _ in 0..count {
        let (v, n) = match aml[p] {
            0x00 => (0, 1),
            0x01 => (1, 1),
            0xff => (u64::MAX, 1),
            0x0a => (u64::from(aml[p + 1]), 2),
            0x0b => (u64::from(u16_at(aml, p + 1)), 3),
            0x0c => (u64::from(u32_at(aml, p + 1)), 5),
            other => panic!("unexpected package element opcode {other:#x}"),
        };
        values.push(v);
        p += n;
    }
    Some(values)
}

/// A compressed EISA ID ("PNP0501") as the DWordConst AML encodes it.
fn eisa_id(id: &[u8; 7]) -> [u8; 5] {
    let c = |i: usize| id[i] - b'@';
    let h = |i: usize| (id[i] as char).to_digit(16).unwrap() as u8;
    [
        0x0c,
        (c(0) << 2) | (c(1) >> 3),
        ((c(1) & 7) << 5) | c(2),
        (h(3) << 4) | h(4),
        (h(5) << 4) | h(6),
    ]
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

fn written(info: &PlatformInfo) -> (GuestMemoryMmap<()>, Acpi, GuestAddress) {
    let mem = guest(0, 2 << 20);
    let rsdp = write_acpi_tables(&mem, info).unwrap();
    let acpi = parse(&mem);
    (mem, acpi, rsdp)
}

#[test]
fn test_eisa_id_encoding() {
    // PNP0501 is the well-known 0x0105D041.
    assert_eq!(eisa_id(b"PNP0501"), [0x0c, 0x41, 0xd0, 0x05, 0x01]);
}

#[test]
fn test_tables_parse_back() {
    for cpus in [1u8, 4, 254] {
        let info = PlatformInfo::pc(cpus, 5);
        let (_, acpi, rsdp) = written(&info);
        assert_eq!(rsdp, ACPI_TABLES_START);
        assert_eq!(acpi.rsdp, rsdp.0);
        assert_eq!(
            acpi.tables.keys().collect::<Vec<_>>(),
            vec![b"APIC", b"FACP"],
            "{cpus} CPUs"
        );
        for (addr, bytes) in acpi.tables.values().chain([&acpi.dsdt]) {
            assert!(addr + bytes.len() as u64 <= ACPI_TABLES_END.0);
        }

        // MADT: every CPU enabled, UID = APIC ID = index, BSP first.
        let expected: Vec<(u8, u8, u32)> = (0..cpus).map(|i| (i, i, 1)).collect();
        assert_eq!(acpi.lapics, expected);
        assert_eq!(u32_at(acpi.madt(), 36), 0xfee0_0000);
        assert_eq!(u32_at(acpi.madt(), 40) & 1, 1, "PCAT_COMPAT");
        assert_eq!(acpi.madt()[8], 6, "MADT revision");
        assert_eq!(acpi.ioapics, vec![(0, 0xfec0_0000, 0)]);
        assert_eq!(acpi.overrides, vec![(0, 0, 2, 0), (0, 9, 9, 0x0d)]);
        assert_eq!(acpi.nmis, vec![(0xff, 0, 1)]);

        // DSDT: one processor device per CPU.
        assert_eq!(count(&acpi.dsdt.1, b"ACPI0007\0"), cpus as usize);
    }
}

#[test]
fn test_fadt_describes_pm_hardware() {
    let (_, acpi, _) = written(&PlatformInfo::pc(2, 5));
    let f = acpi.fadt();
    assert_eq!(f.len(), 276, "ACPI 6.5 FADT length");
    assert_eq!((f[8], f[131]), (6, 5), "FADT revision 6.5");
    assert_eq!(u64_at(f, 132), 0, "X_FIRMWARE_CTRL");
    assert_eq!(u16_at(f, 46), 9, "SCI_INT");
    assert_eq!((u32_at(f, 48), f[52], f[53]), (0, 0, 0), "no SMI_CMD");
    assert_eq!(u32_at(f, 56), 0x600, "PM1a_EVT_BLK");
    assert_eq!(u32_at(f, 60), 0, "PM1b_EVT_BLK");
    assert_eq!(u32_at(f, 64), 0x604, "PM1a_CNT_BLK");
    assert_eq!(u32_at(f, 68), 0, "PM1b_CNT_BLK");
    assert_eq!(u32_at(f, 76), 0x608, "PM_TMR_BLK");
    assert_eq!(u32_at(f, 80), 0, "GPE0_BLK");
    assert_eq!(
        &f[88..92],
        &[4, 2, 0, 4],
        "PM1_EVT/PM1_CNT/PM2_CNT/PM_TMR_LEN"
    );
    assert!(u16_at(f, 96) > 100 && u16_at(f, 98) > 1000, "no C2/C3");
    let flags = u32_at(f, 112);
    assert_eq!(flags & (1 << 20), 0, "not HW_REDUCED_ACPI");
    assert_eq!(flags & (1 << 8), 0, "24-bit PM timer");
    assert_ne!(flags & (1 << 2), 0, "PROC_C1");
    assert_eq!(
        flags & (1 << 6),
        0,
        "FIX_RTC clear: RTC_STS/RTC_EN are fixed"
    );
    assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
    let boot_arch = u16_at(f, 109);
    assert_eq!(
        boot_arch & 0b10_0011,
        0b11,
        "legacy devices, 8042, RTC present"
    );
    // RESET_REG: system I/O, 8 bits at port 0x64; value 0xfe.
    assert_eq!(&f[116..120], &[1, 8, 0, 1]);
    assert_eq!((u64_at(f, 120), f[128]), (0x64, 0xfe));
    // X_PM1a_EVT_BLK, X_PM1a_CNT_BLK, X_PM_TMR_BLK: system I/O GASes
    // whose widths match the legacy lengths.
    for (off, width, port) in [(148, 32, 0x600), (172, 16, 0x604), (208, 32, 0x608)] {
        assert_eq!(
            (f[off], f[off + 1], f[off + 2]),
            (1, width, 0),
            "GAS at {off}"
        );
        assert_eq!(u64_at(f, off + 4), port, "GAS at {off}");
    }
    for off in [160, 184, 196, 220, 232, 244, 256] {
        assert_eq!(&f[off..off + 12], &[0; 12], "unused GAS at {off}");
    }
    assert_eq!(acpi.facs.1[32], 2, "FACS version");
    assert_eq!(acpi.dsdt.1[8], 2, "DSDT revision");
}

#[test]
fn test_dsdt_s5_and_devices() {
    for s5 in [5u16, 7, 0] {
        let (_, acpi, _) = written(&PlatformInfo::pc(1, s5));
        let dsdt = &acpi.dsdt.1;
        let s5 = u64::from(s5);
        assert_eq!(package(dsdt, b"_S5_"), Some(vec![s5, s5, 0, 0]));
        assert_eq!(package(dsdt, b"_S3_"), Some(vec![1, 1, 0, 0]));
        for hid in [b"PNP0501", b"PNP0303", b"PNP0B00"] {
            assert_eq!(count(dsdt, &eisa_id(hid)), 1, "{hid:?}");
        }
        // COM1's resources: I/O 0x3f8-0x3f8 length 8, IRQ 4 (mask 1 << 4).
        assert_eq!(count(dsdt, &[0x47, 1, 0xf8, 3, 0xf8, 3, 1, 8]), 1);
        assert_eq!(count(dsdt, &[0x22, 0x10, 0x00]), 1);
        // The RTC on IRQ 8, the keyboard on IRQ 1.
        assert_eq!(count(dsdt, &[0x22, 0x00, 0x01]), 1);
        assert_eq!(count(dsdt, &[0x22, 0x02, 0x00]), 1);
    }
}

#[test]
fn test_options_change_the_tables() {
    let info = PlatformInfo {
        pm_timer_32bit: true,
        irq0_to_gsi2: false,
        reset: None,
        i8042: false,
        rtc: false,
        com1: None,
        sci_irq: 10,
        ioapic_id: 3,
        pm_base: 0xb000,
        ..PlatformInfo::pc(3, 5)
    };
    let (_, acpi, _) = written(&info);
    let f = acpi.fadt();
    assert_ne!(u32_at(f, 112) & (1 << 8), 0, "TMR_VAL_EXT");
    assert_eq!(u32_at(f, 112) & (1 << 10), 0, "no RESET_REG_SUP");
    assert_eq!(&f[116..129], &[0; 13], "no RESET_REG");
    assert_eq!(u16_at(f, 109) & 0b10_0011, 0b10_0001, "no 8042, no RTC");
    assert_eq!(u16_at(f, 46), 10);
    assert_eq!(
        (u32_at(f, 56), u32_at(f, 64), u32_at(f, 76)),
        (0xb000, 0xb004, 0xb008)
    );
    assert_eq!(acpi.overrides, vec![(0, 10, 10, 0x0d)]);
    assert_eq!(acpi.ioapics[0].0, 3);
    assert_eq!(acpi.lapics.len(), 3);
    for hid in [b"PNP0501", b"PNP0303", b"PNP0B00"] {
        assert_eq!(count(&acpi.dsdt.1, &eisa_id(hid)), 0, "{hid:?}");
    }

    let info = PlatformInfo {
        reset: Some(ResetRegister {
            port: 0xcf9,
            value: 6,
        }),
        ..PlatformInfo::pc(1, 5)
    };
    let (_, acpi, _) = written(&info);
    assert_eq!((u64_at(acpi.fadt(), 120), acpi.fadt()[128]), (0xcf9, 6));
}

#[test]
fn test_too_small_area_writes_nothing() {
    let mem = guest(0, 2 << 20);
    let info = PlatformInfo::pc(4, 5);
    let e =
        write_acpi_tables_in(&mem, &info, ACPI_TABLES_START, GuestAddress(0xe0100)).unwrap_err();
    assert!(
        matches!(e, FirmwareError::NoRoom { limit: 0xe0100, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("past 0xe0100"), "{e}");
    assert_eq!(read(&mem, 0xe0000, 0x100), vec![0; 0x100]);
}

#[test]
fn test_errors() {
    // No RAM under the ACPI area.
    let mem = guest(1 << 20, 1 << 20);
    let e = write_acpi_tables(&mem, &PlatformInfo::pc(1, 5)).unwrap_err();
    assert!(
        matches!(e, FirmwareError::GuestMemory { addr: 0xe0000, .. }),
        "{e}"
    );
    // Invalid descriptions are refused before anything is written.
    let mem = guest(0, 2 << 20);
    let e = write_acpi_tables(&mem, &PlatformInfo::pc(0, 5)).unwrap_err();
    assert!(matches!(e, FirmwareError::NoCpus), "{e}");
    let e = write_acpi_tables(&mem, &PlatformInfo::pc(1, 9)).unwrap_err();
    assert!(matches!(e, FirmwareError::SleepType { value: 9 }), "{e}");
    assert_eq!(read(&mem, 0xe0000, 0x10000), vec![0; 0x10000]);
}

#[test]
fn test_dsdt_describes_virtio_mmio_devices() {
    let info = PlatformInfo {
        virtio_mmio: vec![
            VirtioMmio {
                base: 0xfeb0_0000,
                gsi: 5,
            },
            VirtioMmio {
                base: 0xfeb0_1000,
                gsi: 16,
            },
        ],
        ..PlatformInfo::pc(1, 5)
    };
    let (_, acpi, _) = written(&info);
    let dsdt = &acpi.dsdt.1;
    // _HID "LNRO0005" as a string, once per device, named VR00, VR01.
    assert_eq!(count(dsdt, b"\x0dLNRO0005\x00"), 2);
    assert_eq!(count(dsdt, b"VR00"), 1);
    assert_eq!(count(dsdt, b"VR01"), 1);
    // _CCA One: DMA is cache-coherent.
    assert_eq!(count(dsdt, b"_CCA\x01"), 2);
    // Memory32Fixed, read-write, the 4 KiB window.
    assert_eq!(
        count(dsdt, &[0x86, 9, 0, 1, 0, 0, 0xb0, 0xfe, 0, 0x10, 0, 0]),
        1
    );
    assert_eq!(
        count(dsdt, &[0x86, 9, 0, 1, 0, 0x10, 0xb0, 0xfe, 0, 0x10, 0, 0]),
        1
    );
    // Extended interrupt: consumer, edge, active-high, exclusive, one GSI.
    assert_eq!(count(dsdt, &[0x89, 6, 0, 0x03, 1, 5, 0, 0, 0]), 1);
    assert_eq!(count(dsdt, &[0x89, 6, 0, 0x03, 1, 16, 0, 0, 0]), 1);
    // Without devices, none is described.
    let (_, plain, _) = written(&PlatformInfo::pc(1, 5));
    assert_eq!(count(&plain.dsdt.1, b"LNRO0005"), 0);
}

#[test]
fn test_largest_machine_fits() {
    // The most CPUs and every virtio slot of the PC platform at once.
    let info = PlatformInfo {
        virtio_mmio: (0..vmm_devices::pc::VIRTIO_GSIS.len())
            .filter_map(vmm_devices::pc::virtio_slot)
            .map(|(base, gsi)| VirtioMmio {
                base,
                gsi: gsi as u8,
            })
            .collect(),
        ..PlatformInfo::pc(crate::firmware::MAX_CPUS, 5)
    };
    let slots = vmm_devices::pc::VIRTIO_GSIS.len();
    assert_eq!(info.virtio_mmio.len(), slots);
    let (_, acpi, _) = written(&info);
    assert_eq!(count(&acpi.dsdt.1, b"LNRO0005"), slots);
    crate::firmware::write_firmware_tables(&guest(0, 2 << 20), &info).unwrap();
}
