//! Where the VMM's devices live: ports, widths and IRQ lines, in one place.
//! (The guest RAM map lives in `vmm_memory::layout`.)

use vmm_devices::legacy::{acpi_pm, cmos, debug_exit, debugcon, i8042, post_code, uart8250};

/// COM1 8250/16550A UART base port.
pub const COM1_PORT: u16 = uart8250::COM1_PORT;
/// COM1's IRQ (ISA IRQ 4 = GSI 4).
pub const COM1_IRQ: u32 = uart8250::COM1_IRQ;
/// Ports the UART decodes.
pub const COM1_WIDTH: u16 = uart8250::UART_REGISTER_COUNT;
/// QEMU isa-debug-exit port.
pub const DEBUG_EXIT_PORT: u16 = debug_exit::DEBUG_EXIT_PORT;
/// Its width.
pub const DEBUG_EXIT_WIDTH: u16 = debug_exit::DEBUG_EXIT_WIDTH;
/// Bochs/QEMU debug console port.
pub const DEBUGCON_PORT: u16 = debugcon::DEBUGCON_PORT;
/// POST-code port.
pub const POST_CODE_PORT: u16 = post_code::POST_CODE_PORT;

/// i8042 keyboard controller data port.
pub const I8042_DATA_PORT: u16 = i8042::I8042_DATA_PORT;
/// i8042 status/command port.
pub const I8042_COMMAND_PORT: u16 = i8042::I8042_COMMAND_PORT;
/// i8042 keyboard IRQ.
pub const I8042_KBD_IRQ: u32 = i8042::I8042_KBD_IRQ;
/// i8042 auxiliary (mouse) IRQ.
pub const I8042_AUX_IRQ: u32 = i8042::I8042_AUX_IRQ;
/// MC146818 RTC/CMOS index port (0x71 is data).
pub const CMOS_PORT: u16 = cmos::CMOS_INDEX_PORT;
/// Ports the RTC decodes.
pub const CMOS_WIDTH: u16 = cmos::CMOS_PORT_COUNT;
/// RTC IRQ.
pub const RTC_IRQ: u32 = 8;
/// ACPI PM register block base, laid out as on QEMU's ICH9: PM1a_EVT
/// (status + enable) at +0, PM1a_CNT at +4, PM_TMR at +8.
pub const ACPI_PM_BASE: u16 = 0x600;
/// Length of the ACPI PM register block.
pub const ACPI_PM_LEN: u16 = acpi_pm::ACPI_PM_BLOCK_LEN;
/// ACPI SCI interrupt line (ISA IRQ 9, level-triggered, active high).
pub const ACPI_SCI_IRQ: u32 = 9;
/// IOAPIC MMIO base.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Local APIC MMIO base.
pub const LAPIC_BASE: u64 = 0xfee0_0000;
