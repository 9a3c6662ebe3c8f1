//! The machine around the vCPUs: the in-kernel interrupt controllers and
//! timer (PC platform only), and the devices on the bus with their
//! interrupt lines. Ports and IRQs come from [`crate::layout`].

use std::sync::Arc;
use std::time::Instant;

use kvm_bindings::{kvm_pit_config, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::VmFd;
use vm_device::bus::PioAddress;
use vmm_devices::legacy::{DebugCon, DebugExit, PostCodePort, Uart8250};
use vmm_devices::{Console, IoBus, IrqLine};
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

/// Creates the in-kernel irqchip (PIC, IOAPIC, a LAPIC per vCPU created
/// afterwards; KVM installs the default GSI routing: IRQs 0-15 to both PIC
/// and IOAPIC pins, 16-23 to the IOAPIC) and the PIT. Must run before any
/// vCPU is created.
pub(crate) fn create_irqchip(vm_fd: &VmFd) -> Result<(), VmmError> {
    vm_fd.create_irq_chip().map_err(VmmError::CreateIrqchip)?;
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
    Ok(Devices {
        bus,
        post,
        uart_input: drained.map(|d| (uart, d)),
    })
}
