//! Carrying out a pause or a resume that a [`crate::VmHandle`] asked for, on
//! the thread running [`crate::Vm::run`] (the only one that holds the vCPU
//! threads, the KVM VM and the device thread).
//!
//! Pause: stop the device thread taking requests, kick vCPU threads until
//! every one is parked outside KVM_RUN, save the KVM clock, publish Paused.
//! Resume: restore the clock (so the guest sees no time pass while it was
//! paused, as QEMU and Cloud Hypervisor do), let the devices serve what
//! arrived meanwhile, publish Running, which releases the vCPUs.
//!
//! A suspension to ACPI S3 parks the vCPUs the same way but publishes
//! Suspended and keeps the clock running; [`crate::suspend`] wakes it.

use std::sync::mpsc::{Receiver, TryRecvError};
use std::thread::JoinHandle;
use std::time::Duration;

use kvm_bindings::kvm_clock_data;
use kvm_ioctls::VmFd;
use vmm_cpu::kick::kick_signal;
use vmm_sys_util::signal::Killable;

use crate::control::{RunState, VmControl};
use crate::virtio::DeviceThread;

/// How long to wait for parked vCPUs between kicks.
const KICK_RETRY: Duration = Duration::from_millis(5);

/// How a pause attempt ended.
pub(crate) enum PauseEnd {
    /// Every vCPU is parked; the VM is paused.
    Paused,
    /// The pause was withdrawn or the VM is stopping before every vCPU
    /// parked.
    Abandoned,
    /// vCPU `index` left its run loop for good (it halted, faulted...):
    /// the VM ends.
    VcpuEnded(u64),
}

/// The state a pause keeps for its resume.
#[derive(Default)]
pub(crate) struct Pauser {
    clock: Option<kvm_clock_data>,
}

impl Pauser {
    /// A pauser for a VM that starts paused with `clock` (a restored VM:
    /// the snapshot's clock) as the clock to restore on resume.
    pub fn with_clock(clock: Option<kvm_clock_data>) -> Self {
        Pauser { clock }
    }

    /// The clock the pause saved, if any.
    pub fn clock(&self) -> Option<kvm_clock_data> {
        self.clock
    }

    /// Pauses the VM: see the module docs.
    pub fn pause<T>(
        &mut self,
        control: &VmControl,
        vm_fd: &VmFd,
        threads: &[JoinHandle<T>],
        done: &Receiver<u64>,
        devices: Option<&DeviceThread>,
    ) -> PauseEnd {
        if let Some(d) = devices {
            d.pause();
        }
        loop {
            if !control.pause_wanted() || control.is_stopping() {
                if let Some(d) = devices {
                    d.resume();
                }
                return PauseEnd::Abandoned;
            }
            match done.try_recv() {
                Ok(index) => return PauseEnd::VcpuEnded(index),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return PauseEnd::Abandoned,
            }
            if control.parked() >= threads.len() {
                break;
            }
            for t in threads.iter().filter(|t| !t.is_finished()) {
                // A parked thread just retries its wait; ESRCH is fine.
                let _ = t.kill(kick_signal());
            }
            control.wait_parked(threads.len(), KICK_RETRY);
        }
        if control.suspend_wanted() {
            // ACPI S3: time goes on for the guest (its RTC and kvmclock
            // show the sleep), so the clock is not saved.
            control.set_run_state(RunState::Suspended);
            log::info!("VM suspended (ACPI S3)");
            return PauseEnd::Paused;
        }
        self.clock = match vm_fd.get_clock() {
            Ok(c) => Some(c),
            Err(e) => {
                log::warn!("pause: KVM_GET_CLOCK failed ({e}); the guest clock will jump");
                None
            }
        };
        control.set_run_state(RunState::Paused);
        log::info!("VM paused");
        PauseEnd::Paused
    }

    /// Resumes a paused VM.
    pub fn resume(&mut self, control: &VmControl, vm_fd: &VmFd, devices: Option<&DeviceThread>) {
        if let Some(mut clock) = self.clock.take() {
            // Only the value: the flags KVM_GET_CLOCK reports (TSC_STABLE,
            // REALTIME...) are not inputs KVM_SET_CLOCK should act on here.
            clock.flags = 0;
            if let Err(e) = vm_fd.set_clock(&clock) {
                log::warn!("resume: KVM_SET_CLOCK failed ({e}); the guest clock jumps");
            }
        }
        if let Some(d) = devices {
            d.resume();
        }
        control.set_run_state(RunState::Running);
        log::info!("VM resumed");
    }
}
