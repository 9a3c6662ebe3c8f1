//! The machine around the vCPUs: the in-kernel interrupt controllers and
//! timer (PC platform only), and the devices on the bus with their
//! interrupt lines. Ports and IRQs come from [`crate::layout`].

use std::sync::Arc;
use std::time::Instant;

use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1, kvm_irq_routing_irqchip,
    kvm_pit_config, KvmIrqRouting, KVM_IRQ_ROUTING_IRQCHIP, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::VmFd;
use vm_device::bus::PioAddress;
use vmm_devices::legacy::{
    AcpiPm, Cmos, CmosMemorySizes, DebugCon, DebugExit, InstantClock, PostCodePort, SystemClock,
    Uart8250, I8042,
};
use vmm_devices::{Console, IoBus, IrqLine};
use vmm_memory::MemoryLayout;
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use crate::control::VmControl;
use crate::error::VmmError;
use crate::layout;

/// Which machine the guest gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Platform {
    /// [`Platform::Pc`] for operating-system kernels (Multiboot, Linux,
    /// PVH), [`Platform::Minimal`] for raw binaries and plain ELF programs
    /// (so the classic examples keep ending on `hlt`).
    #[default]
    Auto,
    /// No interrupt controller or timer: `hlt` ends the VM, one vCPU.
    Minimal,
    /// In-kernel PIC/IOAPIC/LAPIC and PIT, interrupt-driven devices,
    /// firmware tables, SMP.
    Pc,
}

impl std::str::FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Platform::Auto),
            "minimal" => Ok(Platform::Minimal),
            "pc" => Ok(Platform::Pc),
            _ => Err(format!(
                "unknown platform '{s}' (expected auto, minimal or pc)"
            )),
        }
    }
}

/// KVM irqchip numbers for routing entries.
const IRQCHIP_PIC_MASTER: u32 = 0;
const IRQCHIP_PIC_SLAVE: u32 = 1;
const IRQCHIP_IOAPIC: u32 = 2;
/// IOAPIC inputs.
const IOAPIC_PINS: u32 = 24;

fn route(gsi: u32, irqchip: u32, pin: u32) -> kvm_irq_routing_entry {
    kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        u: kvm_irq_routing_entry__bindgen_ty_1 {
            irqchip: kvm_irq_routing_irqchip { irqchip, pin },
        },
        ..Default::default()
    }
}

/// GSI routing as a PC chipset wires it, and as the firmware tables
/// describe it (MADT interrupt source override IRQ0 -> GSI2): ISA IRQs 0-15
/// reach the 8259 pins of the same number, the PIT's IRQ 0 reaches IOAPIC
/// input 2 (input 0 is unused, IRQ 2 is the PIC cascade), every other IRQ the
/// IOAPIC input of the same number. QEMU installs the same table.
pub fn pc_gsi_routes() -> Vec<kvm_irq_routing_entry> {
    let mut routes = Vec::new();
    for irq in (0..16).filter(|i| *i != 2) {
        let (chip, pin) = if irq < 8 {
            (IRQCHIP_PIC_MASTER, irq)
        } else {
            (IRQCHIP_PIC_SLAVE, irq - 8)
        };
        routes.push(route(irq, chip, pin));
    }
    for gsi in (0..IOAPIC_PINS).filter(|g| *g != 2) {
        let pin = if gsi == 0 { 2 } else { gsi };
        routes.push(route(gsi, IRQCHIP_IOAPIC, pin));
    }
    routes
}

/// Creates the in-kernel irqchip (PIC, IOAPIC, a LAPIC per vCPU created
/// afterwards) with the PC routing of [`pc_gsi_routes`], and the PIT. Must
/// run before any vCPU is created.
pub(crate) fn create_irqchip(vm_fd: &VmFd) -> Result<(), VmmError> {
    vm_fd.create_irq_chip().map_err(VmmError::CreateIrqchip)?;
    let routes = KvmIrqRouting::from_entries(&pc_gsi_routes())
        .map_err(|e| VmmError::GsiRouting(format!("{e:?}")))?;
    vm_fd
        .set_gsi_routing(&routes)
        .map_err(|e| VmmError::GsiRouting(e.to_string()))?;
    let pit = kvm_pit_config {
        // Port 0x61's speaker bits are emulated in the kernel too.
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm_fd.create_pit2(pit).map_err(VmmError::CreatePit)
}

/// An interrupt line for `gsi`: an irqfd with the PC platform, nothing
/// without an irqchip.
fn irq_line(vm_fd: &VmFd, pc: bool, gsi: u32) -> Result<IrqLine, VmmError> {
    if !pc {
        return Ok(IrqLine::None);
    }
    let line = IrqLine::eventfd().map_err(VmmError::EventFd)?;
    if let Some(fd) = line.as_eventfd() {
        vm_fd
            .register_irqfd(fd, gsi)
            .map_err(|source| VmmError::RegisterIrqfd { gsi, source })?;
    }
    Ok(line)
}

/// The PC platform's own devices: the i8042 (its reset line ends the VM),
/// the RTC/CMOS with the memory sizes firmware would store, and the ACPI PM
/// block (PM timer, S5 power-off). Not on the minimal platform, where a raw
/// program poking 0x64 or 0x604 should not reset or power off the VM.
fn add_pc_devices(
    bus: &mut IoBus,
    vm_fd: &VmFd,
    control: &Arc<VmControl>,
    ram: &MemoryLayout,
) -> Result<(), VmmError> {
    let kbc = Arc::new(I8042::new(
        control.clone(),
        irq_line(vm_fd, true, layout::I8042_KBD_IRQ)?,
        irq_line(vm_fd, true, layout::I8042_AUX_IRQ)?,
    ));
    bus.register_pio("i8042", PioAddress(layout::I8042_DATA_PORT), 1, kbc.clone())?;
    bus.register_pio("i8042", PioAddress(layout::I8042_COMMAND_PORT), 1, kbc)?;
    let below_4g_end = ram.low_ram_end();
    let sizes = CmosMemorySizes {
        below_4g_end,
        above_4g_size: ram.size() - below_4g_end,
    };
    bus.register_pio(
        "rtc-cmos",
        PioAddress(layout::CMOS_PORT),
        layout::CMOS_WIDTH,
        Arc::new(Cmos::new(sizes, Arc::new(SystemClock))),
    )?;
    bus.register_pio(
        "acpi-pm",
        PioAddress(layout::ACPI_PM_BASE),
        layout::ACPI_PM_LEN,
        Arc::new(AcpiPm::new(control.clone(), Arc::new(InstantClock::new()))),
    )?;
    Ok(())
}

/// The devices every VM has, on a fresh bus.
pub(crate) struct Devices {
    pub bus: IoBus,
    pub post: Arc<PostCodePort>,
    /// With console input: the UART and the eventfd it writes when the
    /// guest empties its receive FIFO.
    pub uart_input: Option<(Arc<Uart8250<IrqLine>>, EventFd)>,
}

/// Builds the bus with the UART, debug-exit, debug console and POST port.
pub(crate) fn build_devices(
    vm_fd: &VmFd,
    pc: bool,
    console: Console,
    control: &Arc<VmControl>,
    print_post_codes: bool,
    with_input: bool,
    ram: &MemoryLayout,
) -> Result<Devices, VmmError> {
    let mut bus = IoBus::new();
    let irq = irq_line(vm_fd, pc, layout::COM1_IRQ)?;
    let (uart, drained) = if with_input {
        let drained = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(VmmError::EventFd)?;
        let notify = drained.try_clone().map_err(VmmError::EventFd)?;
        (
            Arc::new(Uart8250::with_rx_drained(irq, console.clone(), notify)),
            Some(drained),
        )
    } else {
        (Arc::new(Uart8250::new(irq, console.clone())), None)
    };
    bus.register_pio(
        "uart8250",
        PioAddress(layout::COM1_PORT),
        layout::COM1_WIDTH,
        uart.clone(),
    )?;
    bus.register_pio(
        "debug-exit",
        PioAddress(layout::DEBUG_EXIT_PORT),
        layout::DEBUG_EXIT_WIDTH,
        Arc::new(DebugExit::new(control.clone())),
    )?;
    bus.register_pio(
        "debugcon",
        PioAddress(layout::DEBUGCON_PORT),
        1,
        Arc::new(DebugCon::new(console)),
    )?;
    let post = Arc::new(PostCodePort::new(Instant::now(), print_post_codes));
    bus.register_pio(
        "post-code",
        PioAddress(layout::POST_CODE_PORT),
        1,
        post.clone(),
    )?;
    if pc {
        add_pc_devices(&mut bus, vm_fd, control, ram)?;
    }
    Ok(Devices {
        bus,
        post,
        uart_input: drained.map(|d| (uart, d)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ioapic_pin(routes: &[kvm_irq_routing_entry], gsi: u32) -> Option<u32> {
        routes
            .iter()
            .filter(|r| r.gsi == gsi)
            // SAFETY: every entry built here is an irqchip route.
            .map(|r| unsafe { r.u.irqchip })
            .find(|c| c.irqchip == IRQCHIP_IOAPIC)
            .map(|c| c.pin)
    }

    #[test]
    fn test_pit_reaches_ioapic_pin_2_and_others_identity() {
        let routes = pc_gsi_routes();
        assert_eq!(ioapic_pin(&routes, 0), Some(2));
        assert_eq!(ioapic_pin(&routes, 2), None);
        for gsi in [1, 4, 9, 12, 23] {
            assert_eq!(ioapic_pin(&routes, gsi), Some(gsi));
        }
        // SAFETY: irqchip routes only.
        let pic: Vec<_> = routes
            .iter()
            .filter(|r| unsafe { r.u.irqchip.irqchip } != IRQCHIP_IOAPIC)
            .collect();
        assert_eq!(pic.len(), 15, "ISA IRQs but the cascade");
    }
}
