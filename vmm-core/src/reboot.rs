//! Rebooting: a guest reset (the i8042's 0xFE pulse, which is also the
//! ACPI reset register) ends a boot with [`VmOutcome::Reset`];
//! [`run_rebooting`] then tears that VM down and builds the next boot from
//! the same configuration, in this process, until the guest ends the run
//! another way.
//!
//! Why a new VM rather than a reset in place: everything a boot owns (the
//! KVM VM and vCPUs, guest RAM, the devices and their host resources, the
//! threads) is released by dropping it, exactly as when a VM ends, so a
//! reboot cannot leak memory, descriptors or threads, and cannot carry
//! state over that a reset should clear (a device model, an MSR, a queue
//! the guest left half set up): the next boot is a VM built as the first
//! was. What must survive lives outside the boot and is handed on
//! ([`NextBoot`]): the control block behind every [`crate::VmHandle`] (so
//! the control API and signal handlers keep working), the exit budget and
//! the timeout's deadline (limits are the whole run's), the metrics sink,
//! the reboot count (`reboots` in the statistics), and what a PC keeps
//! across a reset: the CMOS RAM and the RTC (battery-backed).
//!
//! Each boot runs on a thread of its own: [`crate::Vm::run`] confines the
//! thread it runs on with seccomp, and building the next boot (opening
//! `/dev/kvm`, the image, a tap) is what that filter forbids. The calling
//! thread therefore stays unconfined; it only builds boots and waits for
//! them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vmm_devices::legacy::cmos::CmosState;
use vmm_sys_util::eventfd::EventFd;

use crate::control::VmControl;
use crate::error::VmmError;
use crate::outcome::VmOutcome;
use crate::vm::{MetricsSink, RunReport, Vm};

/// What a guest reset does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnReset {
    /// The run ends with [`VmOutcome::Reset`] (vmm-bin: status 14).
    #[default]
    Exit,
    /// The VM is built again from its configuration and boots anew
    /// ([`run_rebooting`]).
    Reboot,
}

impl std::str::FromStr for OnReset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "exit" => Ok(OnReset::Exit),
            "reboot" => Ok(OnReset::Reboot),
            _ => Err(format!(
                "unknown reset action '{s}' (expected exit or reboot)"
            )),
        }
    }
}

/// What the previous boot hands the next: give it to
/// [`crate::Vm::create_next`] (or [`crate::VmBuilder::next_boot`]).
pub struct NextBoot {
    pub(crate) control: Arc<VmControl>,
    pub(crate) wake: Arc<EventFd>,
    pub(crate) metrics: Option<(Duration, MetricsSink)>,
    pub(crate) deadline: Option<Instant>,
    /// The CMOS's RAM and clock, which a PC keeps across a reset.
    pub(crate) cmos: Option<CmosState>,
}

impl std::fmt::Debug for NextBoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NextBoot")
            .field("reboots", &self.reboots())
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl NextBoot {
    /// Reboots so far, this one included.
    pub fn reboots(&self) -> u64 {
        self.control.reboots()
    }
}

/// Runs `first`; each time the guest resets it, builds the next boot with
/// `rebuild` (from the same configuration, with [`crate::Vm::create_next`]
/// so that the handles of `first` keep working) and runs that, until a
/// boot ends for another reason, which is the run's outcome. A reset after
/// a stop was asked for ends the run. See the module docs for what carries
/// over and why each boot runs on a thread of its own.
///
/// ```no_run
/// use vmm_core::reboot::run_rebooting;
/// use vmm_core::VmBuilder;
///
/// let boot = || VmBuilder::new().kernel_path("guest.elf");
/// let report = run_rebooting(boot().build()?, |next| boot().next_boot(next).build())?;
/// println!("{} after {} reboots", report.outcome, report.stats.reboots);
/// # Ok::<(), vmm_core::VmmError>(())
/// ```
pub fn run_rebooting<F>(first: Vm, mut rebuild: F) -> Result<RunReport, VmmError>
where
    F: FnMut(NextBoot) -> Result<Vm, VmmError>,
{
    let mut vm = first;
    loop {
        let boot = std::thread::Builder::new()
            .name("vmm-boot".into())
            .spawn(move || vm.run_boot())
            .map_err(VmmError::SpawnBootThread)?;
        let (result, left) = boot.join().map_err(|_| VmmError::BootThreadPanicked)?;
        let report = result?;
        if report.outcome != VmOutcome::Reset || left.control.stop_requested() {
            return Ok(report);
        }
        left.control.reset_for_reboot();
        log::info!("the guest reset the VM: reboot {}", left.control.reboots());
        vm = rebuild(NextBoot {
            control: left.control,
            wake: left.wake,
            metrics: left.metrics,
            deadline: left.deadline,
            cmos: left.cmos,
        })?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_on_reset_parses_its_two_names_only() {
        assert_eq!("exit".parse(), Ok(OnReset::Exit));
        assert_eq!("reboot".parse(), Ok(OnReset::Reboot));
        assert_eq!(OnReset::default(), OnReset::Exit);
        let e = "Reboot".parse::<OnReset>().unwrap_err();
        assert!(e.contains("'Reboot'"), "{e}");
    }
}
