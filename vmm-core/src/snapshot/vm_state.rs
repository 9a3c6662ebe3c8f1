//! The VM-wide KVM state: the in-kernel PIC pair and IOAPIC
//! (KVM_GET/SET_IRQCHIP), the PIT (KVM_GET/SET_PIT2) and the KVM clock.

use kvm_bindings::{kvm_clock_data, kvm_irqchip};
use kvm_ioctls::VmFd;

use super::body::{Irqchip, IrqchipState, VmState};
use super::error::SnapshotError;

/// KVM's irqchip IDs (`KVM_IRQCHIP_*`).
const PIC_MASTER: u32 = 0;
const PIC_SLAVE: u32 = 1;
const IOAPIC: u32 = 2;

fn get_chip(vm_fd: &VmFd, chip_id: u32) -> Result<Irqchip, SnapshotError> {
    let mut chip = kvm_irqchip {
        chip_id,
        ..Default::default()
    };
    vm_fd
        .get_irqchip(&mut chip)
        .map_err(|source| SnapshotError::Kvm {
            op: "KVM_GET_IRQCHIP",
            source,
        })?;
    Ok(Irqchip(chip))
}

/// The VM's state; `irqchip` says whether it has the PC platform's
/// interrupt controllers and PIT, `clock` is the clock the pause saved
/// (read now if the pause could not).
pub(crate) fn save_vm_state(
    vm_fd: &VmFd,
    irqchip: bool,
    clock: Option<kvm_clock_data>,
) -> Result<VmState, SnapshotError> {
    let (chips, pit) = if irqchip {
        let chips = IrqchipState {
            pic_master: get_chip(vm_fd, PIC_MASTER)?,
            pic_slave: get_chip(vm_fd, PIC_SLAVE)?,
            ioapic: get_chip(vm_fd, IOAPIC)?,
        };
        let pit = vm_fd.get_pit2().map_err(|source| SnapshotError::Kvm {
            op: "KVM_GET_PIT2",
            source,
        })?;
        (Some(chips), Some(pit))
    } else {
        (None, None)
    };
    let clock = match clock {
        Some(c) => Some(c),
        None => vm_fd.get_clock().ok(),
    };
    Ok(VmState {
        irqchip: chips,
        pit,
        clock,
    })
}

/// Sets the irqchip and PIT state on a new VM whose irqchip and PIT were
/// just created (before any vCPU's LAPIC is restored). The clock is set
/// later, just before the vCPUs run (see [`crate::Vm::resume_on_start`]).
pub(crate) fn restore_vm_state(vm_fd: &VmFd, state: &VmState) -> Result<(), SnapshotError> {
    if let Some(chips) = &state.irqchip {
        // `validate` checked each chip carries its own ID.
        for chip in [&chips.pic_master, &chips.pic_slave, &chips.ioapic] {
            vm_fd
                .set_irqchip(&chip.0)
                .map_err(|source| SnapshotError::Kvm {
                    op: "KVM_SET_IRQCHIP",
                    source,
                })?;
        }
    }
    if let Some(pit) = &state.pit {
        vm_fd.set_pit2(pit).map_err(|source| SnapshotError::Kvm {
            op: "KVM_SET_PIT2",
            source,
        })?;
    }
    Ok(())
}

/// The IDs the saved chips carry, in field order.
pub(crate) fn chip_ids(state: &IrqchipState) -> [u32; 3] {
    [
        state.pic_master.0.chip_id,
        state.pic_slave.0.chip_id,
        state.ioapic.0.chip_id,
    ]
}

/// The IDs [`chip_ids`] must give.
pub(crate) const CHIP_IDS: [u32; 3] = [PIC_MASTER, PIC_SLAVE, IOAPIC];
