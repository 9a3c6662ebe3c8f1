//! Waking a VM from ACPI S3, on the thread running [`crate::Vm::run`]: what
//! a PC's firmware does on the resume path, for a VMM that has no firmware
//! in the guest.
//!
//! Entering S3 needs nothing here: the guest's PM1_CNT write makes the
//! vCPU that wrote it stop before its next instruction
//! ([`crate::control::VmControl::request_suspend`]), the main loop parks
//! the others as for a pause ([`crate::pause::Pauser`], without saving the
//! clock: time passes in S3), and RAM stays as it is. The devices' timers
//! keep running on the main loop, so the RTC alarm can fire.
//!
//! At the wake ([`Suspender::wake`]): the FACS waking vector is read from
//! guest memory ([`crate::firmware::acpi::facs`]); the in-kernel PIC and
//! IOAPIC are put back in the state they had when the VM started (the
//! state firmware hands an OS: all IOAPIC pins masked, the PICs as KVM
//! created them); every vCPU thread then loads the reset state of
//! [`vmm_cpu::wake_state`] (the boot processor at the vector, the others
//! waiting for SIPI); the device thread takes requests again. The PIT is
//! left running (an OS reprograms its clock events on resume). With no
//! usable vector, firmware would boot afresh: this VMM ends the VM as a
//! reset ([`VmOutcome::Reset`]).

use kvm_bindings::kvm_irqchip;
use kvm_ioctls::VmFd;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::control::{RunState, VmControl};
use crate::error::VmmError;
use crate::firmware::acpi::facs::read_wake_entry;
use crate::outcome::VmOutcome;
use crate::virtio::DeviceThread;

/// KVM's irqchip numbers: the two 8259s and the IOAPIC.
const IRQCHIPS: [u32; 3] = [0, 1, 2];

/// What the wake needs: where the FACS is and the interrupt controllers'
/// start state.
pub(crate) struct Suspender {
    facs: Option<GuestAddress>,
    irqchips: Vec<kvm_irqchip>,
}

impl Suspender {
    /// Saves the irqchip state (when the VM has one) before the guest runs.
    pub fn new(vm_fd: &VmFd, irqchip: bool, facs: Option<GuestAddress>) -> Result<Self, VmmError> {
        let mut irqchips = Vec::new();
        if irqchip {
            for chip in IRQCHIPS {
                let mut state = kvm_irqchip {
                    chip_id: chip,
                    ..Default::default()
                };
                vm_fd
                    .get_irqchip(&mut state)
                    .map_err(|source| VmmError::GetIrqchip { chip, source })?;
                irqchips.push(state);
            }
        }
        Ok(Suspender { facs, irqchips })
    }

    /// Wakes the suspended VM (every vCPU is parked): see the module docs.
    pub fn wake(
        &self,
        control: &VmControl,
        vm_fd: &VmFd,
        mem: &GuestMemoryMmap,
        devices: Option<&DeviceThread>,
    ) {
        let entry = match read_wake_entry(mem, self.facs) {
            Ok(entry) => entry,
            Err(e) => {
                log::warn!("S3 wake: {e}; firmware would boot afresh, so the VM ends as a reset");
                control.stop(VmOutcome::Reset);
                control.wake_waiters();
                return;
            }
        };
        for chip in &self.irqchips {
            if let Err(e) = vm_fd.set_irqchip(chip) {
                log::warn!(
                    "S3 wake: restoring irqchip {} failed ({e}); interrupts may stay as the guest left them",
                    chip.chip_id
                );
            }
        }
        log::info!("S3 wake: boot processor resumes at {entry:?}");
        control.publish_wake(entry);
        if let Some(d) = devices {
            d.resume();
        }
        control.set_run_state(RunState::Running);
    }
}
