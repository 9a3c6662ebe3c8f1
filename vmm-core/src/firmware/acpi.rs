//! ACPI tables (ACPI Specification 6.5, section 5.2,
//! <https://uefi.org/specs/ACPI/6.5/05_ACPI_Software_Programming_Model.html>),
//! encoded with the rust-vmm `acpi_tables` crate.
//!
//! From [`ACPI_TABLES_START`]: the RSDP (at the start: 16-byte aligned and
//! inside `[0xe0000, 0xfffff]`, where OSPM searches for it, §5.2.5.1), the
//! FACS (64-byte aligned, §5.2.10), then DSDT, FADT, MADT, RSDT and XSDT,
//! each 16-byte aligned. All of them must end before [`ACPI_TABLES_END`].
//!
//! The platform is a full ACPI (not hardware-reduced) PC: the FADT points at
//! the fixed PM1a event/control blocks and the PM timer, there is no SMI
//! command port (ACPI mode is always on, so PM1_CNT.SCI_EN must read 1), and
//! the DSDT carries `\_S5_` so OSPM can power the machine off.

use acpi_tables::aml;
use acpi_tables::facs::FACS;
use acpi_tables::fadt::{FADTBuilder, Flags, PmProfile};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{EnabledStatus, IoApic, ProcessorLocalApic};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{Aml, AmlSink};
use vm_memory::{GuestAddress, GuestMemoryBackend};
use vmm_memory::layout::{ACPI_TABLES_END, ACPI_TABLES_START};

use super::{
    address32, checksum, write_bytes, FirmwareError, Placer, PlatformInfo, PM1A_CNT_OFFSET,
    PM_TMR_OFFSET, SCI_INTI_FLAGS,
};
use vmm_devices::pc::{self, PcDevice};

/// OEMID of every table.
pub const OEM_ID: [u8; 6] = *b"RVMM  ";
/// OEM Table ID of every table (the XSDT's must match the FADT's).
pub const OEM_TABLE_ID: [u8; 8] = *b"RVMMPC  ";
/// OEM Revision of every table.
pub const OEM_REVISION: u32 = 1;

/// Table revisions of ACPI 6.5 (the FADT's, 6.5, is set by `acpi_tables`).
const DSDT_REVISION: u8 = 2;
const MADT_REVISION: u8 = 6;
const RSDT_REVISION: u8 = 1;
const FACS_VERSION: u8 = 2;

/// Size of the common description header (§5.2.6).
const HEADER_LEN: u32 = 36;
/// MADT: header, Local Interrupt Controller Address, Flags (§5.2.12).
const MADT_FIXED_LEN: u32 = 44;
const MADT_LAPIC_ADDRESS_OFFSET: usize = 36;
const MADT_FLAGS_OFFSET: usize = 40;
/// MADT flag: the platform also has dual 8259s (OSPM must mask them before
/// using the APICs).
const MADT_PCAT_COMPAT: u32 = 1;
const MADT_INTERRUPT_SOURCE_OVERRIDE: u8 = 2;
const MADT_LOCAL_APIC_NMI: u8 = 4;
/// ACPI Processor UID meaning "every processor" in a Local APIC NMI entry.
const ALL_PROCESSORS: u8 = 0xff;
/// The ISA bus in an Interrupt Source Override.
const ISA_BUS: u8 = 0;

/// FADT IAPC_BOOT_ARCH flags (Table 5.11).
const BOOT_ARCH_LEGACY_DEVICES: u16 = 1 << 0;
const BOOT_ARCH_8042: u16 = 1 << 1;
const BOOT_ARCH_VGA_NOT_PRESENT: u16 = 1 << 2;
const BOOT_ARCH_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;

/// P_LVL2_LAT above 100 and P_LVL3_LAT above 1000 say "C2/C3 not
/// supported": there is no P_BLK.
const P_LVL2_LAT_NONE: u16 = 101;
const P_LVL3_LAT_NONE: u16 = 1001;

/// Bytes of the PM1 event block (status + enable, two 16-bit registers),
/// the PM1 control block and the PM timer.
const PM1_EVT_LEN: u8 = 4;
const PM1_CNT_LEN: u8 = 2;
const PM_TMR_LEN: u8 = 4;

/// Offsets in the RSDP (§5.2.5.3).
const RSDP_CHECKSUM_OFFSET: usize = 8;
const RSDP_RSDT_OFFSET: usize = 16;
const RSDP_V1_LEN: usize = 20;
const RSDP_EXTENDED_CHECKSUM_OFFSET: usize = 32;

/// Writes the ACPI tables describing `info` into `mem` and returns the
/// address of the RSDP ([`ACPI_TABLES_START`]).
pub fn write_acpi_tables<M: GuestMemoryBackend>(
    mem: &M,
    info: &PlatformInfo,
) -> Result<GuestAddress, FirmwareError> {
    write_acpi_tables_in(mem, info, ACPI_TABLES_START, ACPI_TABLES_END)
}

/// Builds every table first, so nothing is written when one does not fit.
fn write_acpi_tables_in<M: GuestMemoryBackend>(
    mem: &M,
    info: &PlatformInfo,
    start: GuestAddress,
    limit: GuestAddress,
) -> Result<GuestAddress, FirmwareError> {
    info.validate()?;
    let tables = build_tables(info, start, limit)?;
    for (addr, bytes) in &tables {
        write_bytes(mem, *addr, bytes)?;
    }
    // The RSDP is placed first.
    Ok(GuestAddress(tables[0].0))
}

/// Every table with its address, the RSDP first.
fn build_tables(
    info: &PlatformInfo,
    start: GuestAddress,
    limit: GuestAddress,
) -> Result<Vec<(u64, Vec<u8>)>, FirmwareError> {
    let mut placer = Placer::new("ACPI tables", start, limit);
    let rsdp_addr = placer.place("RSDP", Rsdp::len(), 16)?;
    let facs = facs();
    let facs_addr = placer.place("FACS", facs.len(), 64)?;
    let dsdt = dsdt(info);
    let dsdt_addr = placer.place("DSDT", dsdt.len(), 16)?;
    let fadt = fadt(
        info,
        address32("FACS address", facs_addr)?,
        address32("DSDT address", dsdt_addr)?,
    )?;
    let fadt_addr = placer.place("FADT", fadt.len(), 16)?;
    let madt = madt(info)?;
    let madt_addr = placer.place("MADT", madt.len(), 16)?;
    let entries = [fadt_addr, madt_addr];
    let rsdt = rsdt(&entries)?;
    let rsdt_addr = placer.place("RSDT", rsdt.len(), 16)?;
    let xsdt = xsdt(&entries);
    let xsdt_addr = placer.place("XSDT", xsdt.len(), 16)?;
    let rsdp = rsdp(xsdt_addr, address32("RSDT address", rsdt_addr)?);
    Ok(vec![
        (rsdp_addr, rsdp),
        (facs_addr, facs),
        (dsdt_addr, dsdt),
        (fadt_addr, fadt),
        (madt_addr, madt),
        (rsdt_addr, rsdt),
        (xsdt_addr, xsdt),
    ])
}

fn aml_bytes(object: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    object.to_aml_bytes(&mut bytes);
    bytes
}

/// Revision 2 RSDP pointing at both the XSDT (ACPI 2.0+ OSPM) and the RSDT
/// (for guests that only know ACPI 1.0). `acpi_tables` leaves the RSDT
/// address zero, so it is filled in and both checksums are redone.
fn rsdp(xsdt_addr: u64, rsdt_addr: u32) -> Vec<u8> {
    let mut bytes = aml_bytes(&Rsdp::new(OEM_ID, xsdt_addr));
    bytes[RSDP_RSDT_OFFSET..RSDP_RSDT_OFFSET + 4].copy_from_slice(&rsdt_addr.to_le_bytes());
    bytes[RSDP_CHECKSUM_OFFSET] = 0;
    bytes[RSDP_EXTENDED_CHECKSUM_OFFSET] = 0;
    bytes[RSDP_CHECKSUM_OFFSET] = checksum(&bytes[..RSDP_V1_LEN]);
    bytes[RSDP_EXTENDED_CHECKSUM_OFFSET] = checksum(&bytes);
    bytes
}

fn xsdt(entries: &[u64]) -> Vec<u8> {
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for &entry in entries {
        xsdt.add_entry(entry);
    }
    aml_bytes(&xsdt)
}

fn rsdt(entries: &[u64]) -> Result<Vec<u8>, FirmwareError> {
    let mut body = Vec::new();
    for &entry in entries {
        body.extend_from_slice(&address32("table address", entry)?.to_le_bytes());
    }
    let mut rsdt = Sdt::new(
        *b"RSDT",
        HEADER_LEN,
        RSDT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    rsdt.append_slice(&body);
    Ok(rsdt.as_slice().to_vec())
}

/// Required on a platform that is not hardware-reduced; nothing in it is
/// used (no S4BIOS, no wake from sleep states, the global lock starts free).
fn facs() -> Vec<u8> {
    let mut facs = FACS::new();
    facs.version = FACS_VERSION;
    aml_bytes(&facs)
}

/// A fixed-hardware register block in system I/O space: `bits` wide,
/// accessed `access` at a time.
fn io_gas(port: u16, bits: u8, access: AccessSize) -> GAS {
    GAS::new(AddressSpace::SystemIo, bits, 0, access, u64::from(port))
}

fn fadt(info: &PlatformInfo, facs_addr: u32, dsdt_addr: u32) -> Result<Vec<u8>, FirmwareError> {
    let pm1a_evt = info.pm_base;
    let pm1a_cnt = info.pm_base + PM1A_CNT_OFFSET;
    let pm_tmr = info.pm_base + PM_TMR_OFFSET;

    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .preferred_pm_profile(PmProfile::Unspecified)
        // WBINVD flushes caches; C1 (HLT) works on every CPU; there is no
        // fixed power or sleep button and no RTC wake status in PM1_STS.
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::FixRtc);
    if info.pm_timer_32bit {
        fadt = fadt.flag(Flags::TmrValExt);
    }
    if let Some(reset) = info.reset {
        fadt = fadt.flag(Flags::ResetRegSup);
        fadt.reset_reg = io_gas(reset.port, 8, AccessSize::ByteAccess);
        fadt.reset_value = reset.value;
    }
    // The FACS is below 4 GiB, so only the 32-bit field is used (the spec
    // wants X_FIRMWARE_CTRL zero then). Both DSDT fields hold the same
    // address, for ACPI 1.0 and 2.0+ readers alike.
    fadt.firmware_ctrl = facs_addr.into();
    fadt.dsdt = dsdt_addr.into();
    fadt.x_dsdt = u64::from(dsdt_addr).into();
    fadt.sci_int = u16::from(info.sci_irq).into();
    // SMI_CMD, ACPI_ENABLE and ACPI_DISABLE stay 0: there is no SMM, the
    // platform is always in ACPI mode.
    fadt.pm1a_evt_blk = u32::from(pm1a_evt).into();
    fadt.pm1a_cnt_blk = u32::from(pm1a_cnt).into();
    fadt.pm_tmr_blk = u32::from(pm_tmr).into();
    fadt.pm1_evt_len = PM1_EVT_LEN;
    fadt.pm1_cnt_len = PM1_CNT_LEN;
    fadt.pm_tmr_len = PM_TMR_LEN;
    fadt.p_lvl2_lat = P_LVL2_LAT_NONE.into();
    fadt.p_lvl3_lat = P_LVL3_LAT_NONE.into();
    fadt.century = info.rtc_century_index;
    fadt.iapc_boot_arch = boot_arch(info).into();
    // The PM1 event block holds two 16-bit registers (status, enable).
    fadt.x_pm1a_evt_blk = io_gas(pm1a_evt, PM1_EVT_LEN * 8, AccessSize::WordAccess);
    fadt.x_pm1a_cnt_blk = io_gas(pm1a_cnt, PM1_CNT_LEN * 8, AccessSize::WordAccess);
    fadt.x_pm_tmr_blk = io_gas(pm_tmr, PM_TMR_LEN * 8, AccessSize::DwordAccess);
    Ok(aml_bytes(&fadt.finalize()))
}

/// There is no VGA; the ISA-style devices are the ones `info` lists.
fn boot_arch(info: &PlatformInfo) -> u16 {
    let mut flags = BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_VGA_NOT_PRESENT;
    if info.i8042 {
        flags |= BOOT_ARCH_8042;
    }
    if !info.rtc {
        flags |= BOOT_ARCH_CMOS_RTC_NOT_PRESENT;
    }
    flags
}

fn madt(info: &PlatformInfo) -> Result<Vec<u8>, FirmwareError> {
    let mut body = Vec::new();
    // The boot processor comes first, as §5.2.12.2 asks.
    for id in 0..info.cpus {
        ProcessorLocalApic::new(id, id, EnabledStatus::Enabled).to_aml_bytes(&mut body);
    }
    IoApic::new(
        info.ioapic_id,
        address32("I/O APIC base", info.ioapic_base)?,
        0,
    )
    .to_aml_bytes(&mut body);
    if info.irq0_to_gsi2 {
        interrupt_source_override(&mut body, 0, info.isa_irq_gsi(0), 0);
    }
    // The SCI keeps its GSI but is level-triggered, unlike ISA's default.
    interrupt_source_override(
        &mut body,
        info.sci_irq,
        info.isa_irq_gsi(info.sci_irq),
        SCI_INTI_FLAGS,
    );
    local_apic_nmi(&mut body, ALL_PROCESSORS, 0, 1);

    let mut madt = Sdt::new(
        *b"APIC",
        MADT_FIXED_LEN,
        MADT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    madt.write_u32(
        MADT_LAPIC_ADDRESS_OFFSET,
        address32("local APIC base", info.lapic_base)?,
    );
    madt.write_u32(MADT_FLAGS_OFFSET, MADT_PCAT_COMPAT);
    madt.append_slice(&body);
    Ok(madt.as_slice().to_vec())
}

/// Interrupt Source Override (§5.2.12.5), which `acpi_tables` lacks.
fn interrupt_source_override(out: &mut Vec<u8>, source: u8, gsi: u8, flags: u16) {
    out.extend_from_slice(&[MADT_INTERRUPT_SOURCE_OVERRIDE, 10, ISA_BUS, source]);
    out.extend_from_slice(&u32::from(gsi).to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
}

/// Local APIC NMI (§5.2.12.7), which `acpi_tables` lacks.
fn local_apic_nmi(out: &mut Vec<u8>, uid: u8, flags: u16, lint: u8) {
    out.extend_from_slice(&[MADT_LOCAL_APIC_NMI, 6, uid]);
    out.extend_from_slice(&flags.to_le_bytes());
    out.push(lint);
}

/// The short IRQ resource descriptor without its information byte
/// (§6.4.2.1): edge-triggered, active-high, exclusive, as ISA IRQs are.
/// `acpi_tables` only has the extended descriptor.
struct IrqNoFlags(u8);

impl Aml for IrqNoFlags {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        // Small item, type 4 (IRQ), length 2.
        sink.byte(0x22);
        sink.word(1 << self.0);
    }
}

/// An ISA device with its I/O ranges (base, length) and IRQ.
/// The port ranges of `device`'s row in the PC platform table.
fn port_ranges(device: PcDevice) -> Vec<(u16, u8)> {
    pc::device(device)
        .ports
        .iter()
        .map(|p| (p.base, u8::try_from(p.len).unwrap_or(u8::MAX)))
        .collect()
}

fn isa_device(out: &mut Vec<u8>, name: &str, hid: &str, uid: u8, ports: &[(u16, u8)], irq: u8) {
    let ios: Vec<aml::IO> = ports
        .iter()
        .map(|&(base, len)| aml::IO::new(base, base, 1, len))
        .collect();
    let irq = IrqNoFlags(irq);
    let mut resources: Vec<&dyn Aml> = ios.iter().map(|io| io as &dyn Aml).collect();
    resources.push(&irq);
    aml::Device::new(
        name.into(),
        vec![
            &aml::Name::new("_HID".into(), &aml::EISAName::new(hid)),
            &aml::Name::new("_UID".into(), &uid),
            &aml::Name::new("_CRS".into(), &aml::ResourceTemplate::new(resources)),
        ],
    )
    .to_aml_bytes(out);
}

/// `\_S5_` for soft-off, and under `\_SB_` a processor device per CPU (its
/// _UID is the MADT's ACPI Processor UID) and the ISA devices.
fn dsdt(info: &PlatformInfo) -> Vec<u8> {
    let mut sb = Vec::new();
    for uid in 0..info.cpus {
        let name = format!("C{uid:03X}");
        aml::Device::new(
            name.as_str().into(),
            vec![
                &aml::Name::new("_HID".into(), &"ACPI0007"),
                &aml::Name::new("_UID".into(), &uid),
            ],
        )
        .to_aml_bytes(&mut sb);
    }
    if let Some(com1) = info.com1 {
        isa_device(&mut sb, "COM1", "PNP0501", 1, &[(com1.port, 8)], com1.irq);
    }
    if info.i8042 {
        isa_device(
            &mut sb,
            "PS2K",
            "PNP0303",
            0,
            &port_ranges(PcDevice::I8042),
            pc::gsi(PcDevice::I8042) as u8,
        );
    }
    if info.rtc {
        isa_device(
            &mut sb,
            "RTC_",
            "PNP0B00",
            0,
            &port_ranges(PcDevice::RtcCmos),
            pc::gsi(PcDevice::RtcCmos) as u8,
        );
    }

    let mut body = aml::Scope::raw("\\_SB_".into(), sb);
    // {PM1a_CNT.SLP_TYP, PM1b_CNT.SLP_TYP, reserved, reserved}; validate()
    // keeps the value within SLP_TYP's three bits.
    let slp_typ = (info.s5_slp_typ & 7) as u8;
    aml::Name::new(
        "_S5_".into(),
        &aml::Package::new(vec![&slp_typ, &slp_typ, &aml::ZERO, &aml::ZERO]),
    )
    .to_aml_bytes(&mut body);

    let mut dsdt = Sdt::new(
        *b"DSDT",
        HEADER_LEN,
        DSDT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    dsdt.append_slice(&body);
    dsdt.as_slice().to_vec()
}

/// An independent reader of the tables, as an OS would walk them.
#[cfg(test)]
pub(super) mod tests {
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
        let e = write_acpi_tables_in(&mem, &info, ACPI_TABLES_START, GuestAddress(0xe0100))
            .unwrap_err();
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
}
