//! Firmware tables describing the PC platform, written into guest RAM where
//! a PC BIOS leaves them, so an operating system finds its CPUs, interrupt
//! controllers, interrupt routing and power-management registers:
//!
//! - [`acpi`]: RSDP, RSDT/XSDT, FADT, FACS, MADT and DSDT (ACPI 6.5), from
//!   [`ACPI_TABLES_START`](vmm_memory::layout::ACPI_TABLES_START);
//! - [`mptable`]: the Intel MultiProcessor Specification 1.4 floating pointer
//!   and configuration table, from
//!   [`MPTABLE_START`](vmm_memory::layout::MPTABLE_START).
//!
//! Both are generated from one [`PlatformInfo`], so the two descriptions
//! cannot disagree with each other. For real-mode programs, [`real_mode`]
//! adds what a BIOS leaves in low memory (IVT, handler stubs, BDA).

pub mod acpi;
pub mod mptable;
pub mod real_mode;

pub use acpi::write_acpi_tables;
pub use mptable::write_mptable;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryError};

use vmm_devices::legacy::acpi_pm::{ACPI_PM_BLOCK_LEN, S3_SLP_TYP};
use vmm_devices::pc::{self, PcDevice};
use vmm_devices::virtio::VIRTIO_MMIO_WINDOW;
use vmm_memory::layout::{IOAPIC_BASE, LAPIC_BASE};

/// Most CPUs the tables describe. xAPIC IDs are 8 bits and 0xff is the
/// broadcast ID; the VMM gives CPU `i` APIC ID `i` and keeps one ID spare.
pub const MAX_CPUS: u8 = 254;

/// Inputs of KVM's in-kernel IOAPIC (`IOAPIC_NUM_PINS`); GSIs `0..24`.
pub const IOAPIC_PINS: u8 = 24;

/// Version register value of KVM's in-kernel IOAPIC (82093AA-compatible).
pub const IOAPIC_VERSION: u8 = 0x11;

/// Version register value of KVM's in-kernel local APIC (an integrated
/// xAPIC); the MP table repeats it per processor.
pub const LAPIC_VERSION: u8 = 0x14;

/// Offset of PM1a_CNT in the PM register block.
pub const PM1A_CNT_OFFSET: u16 = 4;
/// Offset of PM_TMR in the PM register block.
pub const PM_TMR_OFFSET: u16 = 8;

/// An ISA 16550-compatible UART.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsaSerial {
    /// First of its eight ports.
    pub port: u16,
    /// Its ISA IRQ (1-15, not 2).
    pub irq: u8,
}

/// An I/O-port register that resets the machine when `value` is written to
/// it (the FADT's RESET_REG / RESET_VALUE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetRegister {
    /// The port.
    pub port: u16,
    /// The byte that resets the machine.
    pub value: u8,
}

/// A virtio-mmio device's register window and interrupt, described in the
/// DSDT (`LNRO0005`, as QEMU microvm and Cloud Hypervisor do) and, for GSIs
/// above the ISA range, in the MP table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioMmio {
    /// Base of its [`vmm_devices::virtio::VIRTIO_MMIO_WINDOW`]-byte window.
    pub base: u64,
    /// Its GSI (IOAPIC input, 1-23); the line is edge-triggered,
    /// active-high (a KVM irqfd pulses it).
    pub gsi: u8,
}

/// What the firmware tables describe. [`PlatformInfo::pc`] fills it from
/// [`vmm_devices::pc`]; every field is checked by [`PlatformInfo::validate`]
/// before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformInfo {
    /// Number of CPUs: CPU `i` has APIC ID `i` and ACPI processor UID `i`;
    /// CPU 0 is the bootstrap processor. 1 to [`MAX_CPUS`].
    pub cpus: u8,
    /// Local APIC MMIO base (below 4 GiB).
    pub lapic_base: u64,
    /// I/O APIC ID (0-15: the ID register holds four bits). It should be
    /// what the IOAPIC's ID register reads; KVM's reads 0 after reset.
    pub ioapic_id: u8,
    /// I/O APIC MMIO base (below 4 GiB). Its inputs are GSIs 0-23.
    pub ioapic_base: u64,
    /// ACPI PM register block: PM1a_EVT (status, enable) at +0 (4 bytes),
    /// PM1a_CNT at +4 (2 bytes), PM_TMR at +8 (4 bytes).
    pub pm_base: u16,
    /// Whether the PM timer counts 32 bits (FADT TMR_VAL_EXT) rather than 24.
    pub pm_timer_32bit: bool,
    /// ISA IRQ of the SCI; described as level-triggered, active-high.
    pub sci_irq: u8,
    /// PM1_CNT.SLP_TYP value that enters S5 (soft off), 0-7.
    pub s5_slp_typ: u16,
    /// PM1_CNT.SLP_TYP value that enters S3 (suspend to RAM), 0-7 and not
    /// S5's, if the platform supports S3 (the DSDT then has `\_S3_`).
    pub s3_slp_typ: Option<u16>,
    /// Whether ISA IRQ 0 (the PIT) is wired to IOAPIC input 2, as on PCs
    /// (an Interrupt Source Override), rather than to input 0.
    pub irq0_to_gsi2: bool,
    /// The reset register, if the platform has one.
    pub reset: Option<ResetRegister>,
    /// COM1, if present.
    pub com1: Option<IsaSerial>,
    /// Whether an i8042 keyboard controller sits at ports 0x60/0x64 on IRQ 1.
    pub i8042: bool,
    /// Whether an MC146818 RTC/CMOS sits at ports 0x70/0x71 on IRQ 8.
    pub rtc: bool,
    /// CMOS RAM index of the RTC's century byte (FADT CENTURY); 0 if the
    /// RTC keeps none.
    pub rtc_century_index: u8,
    /// CPUID signature for the MP table's processor entries: CPUID.1:EAX
    /// bits 0-11 (stepping, model, family).
    pub cpu_signature: u32,
    /// CPUID.1:EDX feature flags for the MP table's processor entries.
    pub cpu_features: u32,
    /// The virtio-mmio devices, in slot order.
    pub virtio_mmio: Vec<VirtioMmio>,
}

/// CPUID.1:EDX bits the default processor entries advertise: an FPU and an
/// on-chip APIC.
const DEFAULT_CPU_FEATURES: u32 = (1 << 0) | (1 << 9);
/// Family 6, model 0, stepping 0.
const DEFAULT_CPU_SIGNATURE: u32 = 0x600;
/// The value the i8042 takes on its command port to pulse the CPU reset line.
pub const I8042_RESET_VALUE: u8 = 0xfe;

// The ISA IRQs of `vmm_devices::pc` are narrowed to bytes below.
const _: () = assert!(pc::ACPI_SCI_GSI < 16 && pc::gsi(PcDevice::Com1) < 16);
const _: () = assert!(pc::gsi(PcDevice::I8042) < 16 && pc::RTC_GSI < 16);

impl PlatformInfo {
    /// The PC platform of [`vmm_devices::pc`] with `cpus` CPUs, whose ACPI
    /// power-off writes `s5_slp_typ` to PM1a_CNT.SLP_TYP.
    pub fn pc(cpus: u8, s5_slp_typ: u16) -> Self {
        PlatformInfo {
            cpus,
            lapic_base: LAPIC_BASE,
            ioapic_id: 0,
            ioapic_base: IOAPIC_BASE,
            pm_base: pc::ACPI_PM_BASE,
            pm_timer_32bit: false,
            sci_irq: pc::ACPI_SCI_GSI as u8,
            s5_slp_typ,
            s3_slp_typ: Some(S3_SLP_TYP),
            irq0_to_gsi2: true,
            reset: Some(ResetRegister {
                port: pc::device(PcDevice::I8042).ports[1].base,
                value: I8042_RESET_VALUE,
            }),
            com1: Some(IsaSerial {
                port: pc::port(PcDevice::Com1),
                irq: pc::gsi(PcDevice::Com1) as u8,
            }),
            i8042: true,
            rtc: true,
            rtc_century_index: 0,
            cpu_signature: DEFAULT_CPU_SIGNATURE,
            cpu_features: DEFAULT_CPU_FEATURES,
            virtio_mmio: Vec::new(),
        }
    }

    /// Checks that the description is one the tables can express.
    pub fn validate(&self) -> Result<(), FirmwareError> {
        if self.cpus == 0 {
            return Err(FirmwareError::NoCpus);
        }
        if self.cpus > MAX_CPUS {
            return Err(FirmwareError::TooManyCpus {
                cpus: self.cpus,
                max: MAX_CPUS,
            });
        }
        address32("local APIC base", self.lapic_base)?;
        address32("I/O APIC base", self.ioapic_base)?;
        if self.ioapic_id > 0x0f {
            return Err(FirmwareError::IoApicId { id: self.ioapic_id });
        }
        if self.pm_base == 0 || self.pm_base.checked_add(ACPI_PM_BLOCK_LEN - 1).is_none() {
            return Err(FirmwareError::PmBlock {
                base: self.pm_base,
                len: ACPI_PM_BLOCK_LEN,
            });
        }
        if self.s5_slp_typ > 7 {
            return Err(FirmwareError::SleepType {
                value: self.s5_slp_typ,
            });
        }
        if let Some(value) = self.s3_slp_typ.filter(|&t| t > 7 || t == self.s5_slp_typ) {
            return Err(FirmwareError::S3SleepType { value });
        }
        if self.rtc_century_index != 0
            && (!self.rtc || !(0x0e..0x80).contains(&self.rtc_century_index))
        {
            return Err(FirmwareError::CenturyIndex {
                index: self.rtc_century_index,
            });
        }
        if let Some(com1) = self.com1 {
            if com1.port.checked_add(7).is_none() {
                return Err(FirmwareError::SerialPort { port: com1.port });
            }
        }
        let mut used: Vec<(&'static str, u8)> = vec![("the PIT", 0)];
        used.push(("the SCI", self.sci_irq));
        if let Some(com1) = self.com1 {
            used.push(("COM1", com1.irq));
        }
        if self.i8042 {
            used.push(("the i8042", pc::gsi(PcDevice::I8042) as u8));
        }
        if self.rtc {
            used.push(("the RTC", pc::RTC_GSI as u8));
        }
        let isa = used.len();
        for dev in &self.virtio_mmio {
            let end = dev.base.saturating_add(VIRTIO_MMIO_WINDOW - 1);
            address32("virtio-mmio window end", end)?;
            used.push(("a virtio-mmio device", dev.gsi));
        }
        for (i, &(user, irq)) in used.iter().enumerate().skip(1) {
            let bad = if i < isa {
                irq == 0 || irq == 2 || irq > 15
            } else {
                irq == 0 || irq == 2 || irq >= IOAPIC_PINS
            };
            if bad && i < isa {
                return Err(FirmwareError::IsaIrq { user, irq });
            }
            if bad {
                return Err(FirmwareError::VirtioGsi { gsi: irq });
            }
            if let Some(&(other, _)) = used[..i].iter().find(|&&(_, o)| o == irq) {
                return Err(FirmwareError::IrqConflict {
                    irq,
                    first: other,
                    second: user,
                });
            }
        }
        Ok(())
    }

    /// IOAPIC input (= GSI, the IOAPIC's GSI base being 0) of ISA `irq`.
    fn isa_irq_gsi(&self, irq: u8) -> u8 {
        if irq == 0 && self.irq0_to_gsi2 {
            2
        } else {
            irq
        }
    }

    /// ISA IRQs with their MPS INTI flags (polarity bits 0-1, trigger mode
    /// bits 2-3; 0 = as the ISA bus specifies: edge, active high), skipping
    /// IRQ 2, the 8259 cascade. The SCI is the one level-triggered line.
    fn isa_irqs(&self) -> impl Iterator<Item = (u8, u16)> + '_ {
        (0..16u8).filter(|&irq| irq != 2).map(move |irq| {
            (
                irq,
                if irq == self.sci_irq {
                    SCI_INTI_FLAGS
                } else {
                    0
                },
            )
        })
    }
}

/// MPS INTI flags of a virtio-mmio line: active high (01) in bits 0-1,
/// edge-triggered (01) in bits 2-3.
const VIRTIO_INTI_FLAGS: u16 = 0x05;

/// MPS INTI flags: active high (01) in bits 0-1, level-triggered (11) in
/// bits 2-3. The same encoding serves the MADT and the MP table.
const SCI_INTI_FLAGS: u16 = 0x0d;

/// The addresses a guest is told about (boot_params.acpi_rsdp_addr,
/// hvm_start_info.rsdp_paddr), after [`write_firmware_tables`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareTables {
    /// The ACPI RSDP.
    pub rsdp: GuestAddress,
    /// The MP floating pointer structure.
    pub mp_floating_pointer: GuestAddress,
}

/// Writes the ACPI tables and the MP table for `info` into `mem`.
pub fn write_firmware_tables<M: GuestMemoryBackend>(
    mem: &M,
    info: &PlatformInfo,
) -> Result<FirmwareTables, FirmwareError> {
    Ok(FirmwareTables {
        rsdp: write_acpi_tables(mem, info)?,
        mp_floating_pointer: write_mptable(mem, info)?,
    })
}

/// Why firmware tables could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// The platform has no CPU.
    #[error("the firmware tables need at least one CPU, got 0")]
    NoCpus,
    /// More CPUs than the tables can describe.
    #[error("{cpus} CPUs requested, but the firmware tables describe at most {max}")]
    TooManyCpus {
        /// CPUs requested.
        cpus: u8,
        /// The most the tables take.
        max: u8,
    },
    /// An MMIO base the tables hold in 32 bits lies above 4 GiB.
    #[error(
        "{what} {addr:#x} is not below 4 GiB, where the firmware tables' 32-bit fields can point"
    )]
    AddressAbove4G {
        /// Which address.
        what: &'static str,
        /// Its value.
        addr: u64,
    },
    /// The I/O APIC ID does not fit its four-bit ID register.
    #[error("I/O APIC ID {id} does not fit the IOAPIC's 4-bit ID register (0-15)")]
    IoApicId {
        /// The ID.
        id: u8,
    },
    /// The PM register block is at port 0 or runs past port 0xffff.
    #[error("ACPI PM register block at port {base:#x} ({len} ports) is not a valid I/O range")]
    PmBlock {
        /// Its base.
        base: u16,
        /// Its length.
        len: u16,
    },
    /// The S5 sleep type does not fit PM1_CNT.SLP_TYP (3 bits).
    #[error("S5 sleep type {value} does not fit the 3-bit PM1_CNT.SLP_TYP field (0-7)")]
    SleepType {
        /// The value.
        value: u16,
    },
    /// The S3 sleep type does not fit SLP_TYP or equals S5's.
    #[error("S3 sleep type {value} is not a 3-bit PM1_CNT.SLP_TYP value (0-7) distinct from S5's")]
    S3SleepType {
        /// The value.
        value: u16,
    },
    /// The century CMOS index is a clock register, out of CMOS RAM, or
    /// given without an RTC.
    #[error("RTC century index {index:#x} is not a CMOS RAM byte (0x0e-0x7f) of a present RTC")]
    CenturyIndex {
        /// The index.
        index: u8,
    },
    /// The UART's eight ports run past 0xffff.
    #[error("COM1 at port {port:#x} runs past port 0xffff")]
    SerialPort {
        /// Its base port.
        port: u16,
    },
    /// A device is given an IRQ that is not a free ISA IRQ.
    #[error("{user} is given IRQ {irq}, not an ISA IRQ a device can use (1, 3-15)")]
    IsaIrq {
        /// The device.
        user: &'static str,
        /// The IRQ.
        irq: u8,
    },
    /// A virtio-mmio device is given a GSI the I/O APIC has no free input
    /// for.
    #[error(
        "a virtio-mmio device is given GSI {gsi}, not an I/O APIC input a device can use (1, 3-23)"
    )]
    VirtioGsi {
        /// The GSI.
        gsi: u8,
    },
    /// Two devices share an edge-triggered IRQ.
    #[error("{first} and {second} are both given IRQ {irq}")]
    IrqConflict {
        /// The IRQ.
        irq: u8,
        /// One device.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
    /// The tables do not fit the room the memory layout gives them.
    #[error("the {area} do not fit: the {table} would end at {end:#x}, past {limit:#x}")]
    NoRoom {
        /// ACPI tables or MP table.
        area: &'static str,
        /// The structure that overflows.
        table: &'static str,
        /// Where it would end.
        end: u64,
        /// The end of the room.
        limit: u64,
    },
    /// Guest RAM does not back the tables' address range.
    #[error("cannot write {len} bytes of firmware tables at guest address {addr:#x}: {source}")]
    GuestMemory {
        /// Where.
        addr: u64,
        /// How much.
        len: usize,
        /// The error.
        source: GuestMemoryError,
    },
}

fn address32(what: &'static str, addr: u64) -> Result<u32, FirmwareError> {
    u32::try_from(addr).map_err(|_| FirmwareError::AddressAbove4G { what, addr })
}

/// The byte that makes `bytes` sum to zero (mod 256), as both specifications
/// define their checksums.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)))
}

/// Hands out addresses in `[next, limit)`, each aligned, refusing to go
/// past the end.
struct Placer {
    area: &'static str,
    next: u64,
    limit: u64,
}

impl Placer {
    fn new(area: &'static str, start: GuestAddress, limit: GuestAddress) -> Self {
        Placer {
            area,
            next: start.0,
            limit: limit.0,
        }
    }

    /// `align` must be a power of two.
    fn place(&mut self, table: &'static str, len: usize, align: u64) -> Result<u64, FirmwareError> {
        let start = self.next.checked_add(align - 1).map(|a| a & !(align - 1));
        let end = start.and_then(|s| s.checked_add(len as u64));
        match (start, end) {
            (Some(start), Some(end)) if end <= self.limit => {
                self.next = end;
                Ok(start)
            }
            _ => Err(FirmwareError::NoRoom {
                area: self.area,
                table,
                end: end.unwrap_or(u64::MAX),
                limit: self.limit,
            }),
        }
    }
}

fn write_bytes<M: GuestMemoryBackend>(
    mem: &M,
    addr: u64,
    bytes: &[u8],
) -> Result<(), FirmwareError> {
    mem.write_slice(bytes, GuestAddress(addr))
        .map_err(|source| FirmwareError::GuestMemory {
            addr,
            len: bytes.len(),
            source,
        })
}

#[cfg(test)]
mod tests;
