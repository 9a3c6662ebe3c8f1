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
//! the DSDT carries `\_S5_` so OSPM can power the machine off and `\_S3_`
//! so it can suspend to RAM (waking through the RTC alarm: FIX_RTC is
//! clear, RTC_STS/RTC_EN are in the fixed PM1 registers; see [`facs`] for
//! how the waking vector is entered).

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

pub mod facs;

use super::{
    address32, checksum, write_bytes, FirmwareError, Placer, PlatformInfo, VirtioMmio,
    PM1A_CNT_OFFSET, PM_TMR_OFFSET, SCI_INTI_FLAGS,
};
use vmm_devices::pc::{self, PcDevice};
use vmm_devices::virtio::VIRTIO_MMIO_WINDOW;

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
        // fixed power or sleep button. FIX_RTC stays clear: the RTC alarm's
        // wake status and enable are PM1_STS.RTC_STS / PM1_EN.RTC_EN.
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
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

/// A virtio-mmio device as Linux's virtio_mmio driver matches it under ACPI
/// (`LNRO0005`, drivers/virtio/virtio_mmio.c), the way QEMU microvm and
/// Cloud Hypervisor describe theirs: its window and its interrupt
/// (edge-triggered, active-high: a KVM irqfd pulses the line).
fn virtio_mmio_device(out: &mut Vec<u8>, uid: usize, dev: &VirtioMmio) {
    let name = format!("VR{uid:02X}");
    // validate() keeps the window below 4 GiB.
    let window = aml::Memory32Fixed::new(true, dev.base as u32, VIRTIO_MMIO_WINDOW as u32);
    let irq = aml::Interrupt::new(true, true, false, false, u32::from(dev.gsi));
    let uid = uid as u32;
    aml::Device::new(
        name.as_str().into(),
        vec![
            &aml::Name::new("_HID".into(), &"LNRO0005"),
            &aml::Name::new("_UID".into(), &uid),
            &aml::Name::new("_CCA".into(), &aml::ONE),
            &aml::Name::new(
                "_CRS".into(),
                &aml::ResourceTemplate::new(vec![&window, &irq]),
            ),
        ],
    )
    .to_aml_bytes(out);
}

/// `\_S5_` for soft-off, `\_S3_` for suspend to RAM (if the platform has
/// it), and under `\_SB_` a processor device per CPU (its
/// _UID is the MADT's ACPI Processor UID), the ISA devices and the
/// virtio-mmio devices.
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
    for (uid, dev) in info.virtio_mmio.iter().enumerate() {
        virtio_mmio_device(&mut sb, uid, dev);
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
    if let Some(s3) = info.s3_slp_typ {
        let s3 = (s3 & 7) as u8;
        aml::Name::new(
            "_S3_".into(),
            &aml::Package::new(vec![&s3, &s3, &aml::ZERO, &aml::ZERO]),
        )
        .to_aml_bytes(&mut body);
    }

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
pub(super) mod tests;
