//! The PC platform's device set, declared once: which device sits at which
//! ports and raises which interrupt (GSI). The bus is built from this table
//! ([`build_devices`]), and a VMM's firmware tables (ACPI DSDT, MP table)
//! describe the same rows, so a port or IRQ number is written down here and
//! nowhere else.
//!
//! To add a device: a [`PcDevice`] variant, a row in [`PC_DEVICES`], and its
//! construction in [`build_devices`] (`build.rs`).
//!
//! ```
//! use vmm_devices::pc::{device, PcDevice, PC_DEVICES};
//!
//! let com1 = device(PcDevice::Com1);
//! assert_eq!((com1.ports[0].base, com1.ports[0].len), (0x3f8, 8));
//! assert_eq!(com1.gsis, &[4]);
//! assert_eq!(PC_DEVICES.iter().filter(|d| d.minimal).count(), 4);
//! ```

mod build;
mod state;

pub use build::{
    build_devices, build_devices_from_state, BuiltDevices, DeviceHandles, DeviceSetError,
    DeviceSetOptions, InterruptLines, NoInterrupts,
};
pub use state::PcDeviceStates;

use crate::legacy::{acpi_pm, cmos, debug_exit, debugcon, i8042, post_code, uart8250};

/// One device of the PC platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcDevice {
    /// 8250/16550A UART at COM1.
    Com1,
    /// QEMU's isa-debug-exit.
    DebugExit,
    /// Bochs/QEMU debug console (port 0xe9).
    DebugCon,
    /// POST-code port 0x80.
    PostCode,
    /// i8042 keyboard controller.
    I8042,
    /// MC146818 RTC and CMOS RAM.
    RtcCmos,
    /// ACPI PM register block (PM1a_EVT, PM1a_CNT, PM_TMR).
    AcpiPm,
}

/// A range of I/O ports a device decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub base: u16,
    /// Number of ports.
    pub len: u16,
}

/// Where one device of the platform sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceDesc {
    /// Which device.
    pub device: PcDevice,
    /// Its name on the bus (`--stats`, `--trace-io` counters).
    pub name: &'static str,
    /// The ports it decodes.
    pub ports: &'static [PortRange],
    /// The GSIs (ISA IRQs) it raises, in the device's own order (the
    /// i8042: keyboard, then mouse).
    pub gsis: &'static [u32],
    /// Present on the minimal platform too. The others are PC-only: a raw
    /// program poking 0x64 or 0x604 should not reset or power off its VM.
    pub minimal: bool,
}

/// ACPI PM register block base, laid out as on QEMU's ICH9: PM1a_EVT
/// (status + enable) at +0, PM1a_CNT at +4, PM_TMR at +8.
pub const ACPI_PM_BASE: u16 = 0x600;
/// The ACPI SCI's GSI (ISA IRQ 9, level-triggered, active high).
pub const ACPI_SCI_GSI: u32 = 9;
/// The RTC's GSI (ISA IRQ 8).
pub const RTC_GSI: u32 = 8;

/// The PC platform, one row per device.
pub const PC_DEVICES: [DeviceDesc; 7] = [
    DeviceDesc {
        device: PcDevice::Com1,
        name: "uart8250",
        ports: &[PortRange {
            base: uart8250::COM1_PORT,
            len: uart8250::UART_REGISTER_COUNT,
        }],
        gsis: &[uart8250::COM1_IRQ],
        minimal: true,
    },
    DeviceDesc {
        device: PcDevice::DebugExit,
        name: "debug-exit",
        ports: &[PortRange {
            base: debug_exit::DEBUG_EXIT_PORT,
            len: debug_exit::DEBUG_EXIT_WIDTH,
        }],
        gsis: &[],
        minimal: true,
    },
    DeviceDesc {
        device: PcDevice::DebugCon,
        name: "debugcon",
        ports: &[PortRange {
            base: debugcon::DEBUGCON_PORT,
            len: 1,
        }],
        gsis: &[],
        minimal: true,
    },
    DeviceDesc {
        device: PcDevice::PostCode,
        name: "post-code",
        ports: &[PortRange {
            base: post_code::POST_CODE_PORT,
            len: 1,
        }],
        gsis: &[],
        minimal: true,
    },
    DeviceDesc {
        device: PcDevice::I8042,
        name: "i8042",
        // Two single ports, not 0x60-0x64: 0x61 is the PIT's speaker port.
        ports: &[
            PortRange {
                base: i8042::I8042_DATA_PORT,
                len: 1,
            },
            PortRange {
                base: i8042::I8042_COMMAND_PORT,
                len: 1,
            },
        ],
        gsis: &[i8042::I8042_KBD_IRQ, i8042::I8042_AUX_IRQ],
        minimal: false,
    },
    DeviceDesc {
        device: PcDevice::RtcCmos,
        name: "rtc-cmos",
        ports: &[PortRange {
            base: cmos::CMOS_INDEX_PORT,
            len: cmos::CMOS_PORT_COUNT,
        }],
        gsis: &[RTC_GSI],
        minimal: false,
    },
    DeviceDesc {
        device: PcDevice::AcpiPm,
        name: "acpi-pm",
        ports: &[PortRange {
            base: ACPI_PM_BASE,
            len: acpi_pm::ACPI_PM_BLOCK_LEN,
        }],
        gsis: &[ACPI_SCI_GSI],
        minimal: false,
    },
];

/// The row of `device` in [`PC_DEVICES`].
pub const fn device(device: PcDevice) -> &'static DeviceDesc {
    let mut i = 0;
    while i < PC_DEVICES.len() {
        if PC_DEVICES[i].device as u8 == device as u8 {
            return &PC_DEVICES[i];
        }
        i += 1;
    }
    // Every variant has a row (checked by a test); unreachable.
    &PC_DEVICES[0]
}

/// The first GSI of `device` (0 if it has none).
pub const fn gsi(device: PcDevice) -> u32 {
    match self::device(device).gsis.first() {
        Some(g) => *g,
        None => 0,
    }
}

/// The first port of `device`.
pub const fn port(device: PcDevice) -> u16 {
    self::device(device).ports[0].base
}

/// Where the virtio-mmio windows start: one 4 KiB window per device, in the
/// 32-bit MMIO hole below the IOAPIC (QEMU's microvm uses the same area).
pub const VIRTIO_MMIO_BASE: u64 = 0xfeb0_0000;
/// The GSIs virtio devices get, in slot order: the ISA IRQs no PC device
/// uses (so a PIC-only guest can take them too), then IOAPIC inputs 16-23.
pub const VIRTIO_GSIS: [u32; 13] = [5, 6, 7, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23];

/// The window and GSI of virtio slot `index`, if there is such a slot.
pub fn virtio_slot(index: usize) -> Option<(u64, u32)> {
    let gsi = *VIRTIO_GSIS.get(index)?;
    let base = VIRTIO_MMIO_BASE + index as u64 * crate::virtio::VIRTIO_MMIO_WINDOW;
    Some((base, gsi))
}

/// Which rows a VM gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceSet {
    /// The rows marked `minimal`: console, debug-exit, debugcon, POST port.
    Minimal,
    /// Every row.
    Pc,
}

impl DeviceSet {
    /// The rows of this set, in table order.
    pub fn rows(self) -> impl Iterator<Item = &'static DeviceDesc> {
        PC_DEVICES
            .iter()
            .filter(move |d| self == DeviceSet::Pc || d.minimal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_pc_devices_every_variant_has_one_row() {
        let all = [
            PcDevice::Com1,
            PcDevice::DebugExit,
            PcDevice::DebugCon,
            PcDevice::PostCode,
            PcDevice::I8042,
            PcDevice::RtcCmos,
            PcDevice::AcpiPm,
        ];
        for d in all {
            assert_eq!(PC_DEVICES.iter().filter(|r| r.device == d).count(), 1);
            assert_eq!(device(d).device, d);
        }
    }

    #[test]
    fn test_pc_devices_ports_and_isa_irqs_do_not_collide() {
        let ports: Vec<(u32, u32)> = PC_DEVICES
            .iter()
            .flat_map(|d| d.ports.iter())
            .map(|p| (u32::from(p.base), u32::from(p.base) + u32::from(p.len)))
            .collect();
        for (i, a) in ports.iter().enumerate() {
            for b in &ports[i + 1..] {
                assert!(a.1 <= b.0 || b.1 <= a.0, "{a:x?} overlaps {b:x?}");
            }
        }
        let mut gsis: Vec<u32> = PC_DEVICES.iter().flat_map(|d| d.gsis).copied().collect();
        assert!(gsis.iter().all(|g| *g < 16 && *g != 0 && *g != 2));
        let all = gsis.len();
        gsis.sort_unstable();
        gsis.dedup();
        assert_eq!(gsis.len(), all, "an ISA IRQ is used twice");
        assert_eq!(gsis, [1, 4, 8, 9, 12]);
    }

    #[test]
    fn test_device_set_minimal_rows() {
        let names: Vec<_> = DeviceSet::Minimal.rows().map(|d| d.name).collect();
        assert_eq!(names, ["uart8250", "debug-exit", "debugcon", "post-code"]);
        assert_eq!(DeviceSet::Pc.rows().count(), PC_DEVICES.len());
        assert_eq!(gsi(PcDevice::I8042), 1);
        assert_eq!(port(PcDevice::AcpiPm), 0x600);
    }

    #[test]
    fn test_virtio_slots_avoid_the_pc_devices_and_the_ioapic() {
        let used: Vec<u32> = PC_DEVICES.iter().flat_map(|d| d.gsis).copied().collect();
        for (i, gsi) in VIRTIO_GSIS.iter().enumerate() {
            assert!(!used.contains(gsi) && *gsi != 0 && *gsi != 2 && *gsi < 24);
            assert!(!VIRTIO_GSIS[i + 1..].contains(gsi));
        }
        assert_eq!(virtio_slot(0), Some((0xfeb0_0000, 5)));
        let (last, _) = virtio_slot(VIRTIO_GSIS.len() - 1).unwrap();
        assert!(last + 0x1000 <= 0xfec0_0000, "below the IOAPIC");
        assert_eq!(virtio_slot(VIRTIO_GSIS.len()), None);
    }
}
