//! The machine around the vCPUs: the in-kernel interrupt controllers and
//! timer (PC platform only) and the KVM side of the devices' interrupt
//! lines. Which device sits where is [`vmm_devices::pc`]'s.

use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1, kvm_irq_routing_irqchip,
    kvm_irqchip, kvm_pic_state, kvm_pit_config, kvm_pit_state2, KvmIrqRouting,
    KVM_IRQ_ROUTING_IRQCHIP, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::VmFd;
use vmm_devices::pc::InterruptLines;
use vmm_devices::IrqLine;

use std::sync::Arc;

use crate::error::VmmError;
use crate::explain::{say, Explainer};

/// Which machine the guest gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// The 8259 interrupt mask a BIOS leaves, `(master, slave)`: SeaBIOS masks
/// everything but the cascade (`PIC_IRQMASK_DEFAULT`, 0xfffb), then unmasks
/// each IRQ it installs a handler for. On this machine's devices (no floppy,
/// no ATA): the timer (IRQ 0), the keyboard (1), the cascade (2), the RTC
/// (8) and the PS/2 mouse (12).
pub const BIOS_PIC_MASKS: (u8, u8) = (!0b0000_0111, !0b0001_0001);

/// Puts one 8259's state where a BIOS's initialisation leaves it: ICW1-4
/// done (edge triggered, cascade, 8086 mode, normal EOI), vectors from
/// `vector_base`, mask `imr`, nothing pending or in service.
pub fn bios_pic_state(s: &mut kvm_pic_state, vector_base: u8, imr: u8) {
    s.irq_base = vector_base;
    s.imr = imr;
    s.irr = 0;
    s.last_irr = 0;
    s.isr = 0;
    s.priority_add = 0;
    s.read_reg_select = 0;
    s.poll = 0;
    s.special_mask = 0;
    s.init_state = 0;
    s.auto_eoi = 0;
    s.rotate_on_auto_eoi = 0;
    s.special_fully_nested_mode = 0;
    s.init4 = 1;
    s.elcr = 0;
}

/// PIT channel 0 as a BIOS programs it: mode 3 (square wave), lobyte/hibyte
/// access, divisor 0 = 65536, so IRQ 0 fires at 1193182 / 65536 = 18.2 Hz.
pub fn bios_pit_state(s: &mut kvm_pit_state2) {
    let ch = &mut s.channels[0];
    ch.count = 0x1_0000;
    ch.mode = 3;
    ch.rw_mode = 3;
    ch.read_state = 3;
    ch.write_state = 3;
    ch.bcd = 0;
    ch.gate = 1;
    ch.count_latched = 0;
    ch.status_latched = 0;
}

/// Sets the in-kernel PICs ([`bios_pic_state`]: vectors 0x08 and 0x70,
/// [`BIOS_PIC_MASKS`]) and PIT ([`bios_pit_state`]) as a PC BIOS leaves
/// them, for a real-mode program started on the PC platform.
pub(crate) fn set_bios_pic_and_pit(vm_fd: &VmFd) -> Result<(), VmmError> {
    use crate::firmware::real_mode::{MASTER_VECTOR_BASE, SLAVE_VECTOR_BASE};
    for (chip, base, imr) in [
        (IRQCHIP_PIC_MASTER, MASTER_VECTOR_BASE, BIOS_PIC_MASKS.0),
        (IRQCHIP_PIC_SLAVE, SLAVE_VECTOR_BASE, BIOS_PIC_MASKS.1),
    ] {
        let mut state = kvm_irqchip {
            chip_id: chip,
            ..Default::default()
        };
        vm_fd.get_irqchip(&mut state).map_err(VmmError::PicState)?;
        // SAFETY: chips 0 and 1 are the PICs, whose state is the `pic` member.
        bios_pic_state(unsafe { &mut state.chip.pic }, base, imr);
        vm_fd.set_irqchip(&state).map_err(VmmError::PicState)?;
    }
    let mut pit = vm_fd.get_pit2().map_err(VmmError::PitState)?;
    bios_pit_state(&mut pit);
    vm_fd.set_pit2(&pit).map_err(VmmError::PitState)
}

/// Interrupt lines for the devices of [`vmm_devices::pc`]: with the PC
/// platform each GSI gets an eventfd registered as a KVM irqfd, so raising
/// it injects the interrupt without a trip through userspace; without an
/// irqchip the lines are unconnected.
pub struct KvmInterruptLines<'a> {
    vm_fd: &'a VmFd,
    irqchip: bool,
    explain: Option<Arc<Explainer>>,
}

impl<'a> KvmInterruptLines<'a> {
    /// Lines on `vm_fd`; `irqchip` says whether the in-kernel irqchip exists.
    pub fn new(vm_fd: &'a VmFd, irqchip: bool) -> Self {
        KvmInterruptLines {
            vm_fd,
            irqchip,
            explain: None,
        }
    }

    /// Tells each KVM_IRQFD registered to `explain`.
    pub fn explained(mut self, explain: Option<Arc<Explainer>>) -> Self {
        self.explain = explain;
        self
    }
}

impl InterruptLines for KvmInterruptLines<'_> {
    fn line(&mut self, gsi: u32) -> std::io::Result<IrqLine> {
        if !self.irqchip {
            return Ok(IrqLine::None);
        }
        let line = IrqLine::eventfd()?;
        if let Some(fd) = line.as_eventfd() {
            self.vm_fd
                .register_irqfd(fd, gsi)
                .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
            say(&self.explain, || {
                format!("KVM_IRQFD: an eventfd now raises GSI {gsi} in the in-kernel irqchip, with no exit")
            });
        }
        Ok(line)
    }
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
    fn test_bios_pic_and_pit_state() {
        let mut pic = kvm_pic_state {
            isr: 0x01,
            irq_base: 0x20,
            init_state: 2,
            ..Default::default()
        };
        bios_pic_state(&mut pic, 0x08, BIOS_PIC_MASKS.0);
        assert_eq!(
            (pic.irq_base, pic.imr, pic.isr, pic.init_state),
            (0x08, 0xf8, 0, 0)
        );
        assert_eq!((pic.init4, pic.elcr, pic.auto_eoi), (1, 0, 0));
        assert_eq!(BIOS_PIC_MASKS.1, 0xee, "slave: RTC and mouse open");
        let mut pit = kvm_pit_state2::default();
        bios_pit_state(&mut pit);
        let ch = pit.channels[0];
        assert_eq!((ch.count, ch.mode, ch.rw_mode, ch.gate), (65536, 3, 3, 1));
        assert_eq!(pit.channels[1].count, 0, "other channels untouched");
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
