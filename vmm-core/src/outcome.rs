//! How a VM run ended.

use std::fmt;
use std::time::Duration;

use vmm_cpu::VcpuStop;

/// The end of a VM run that was not a VMM failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmOutcome {
    /// A vCPU executed `hlt` with no interrupt controller to wake it.
    Halted {
        /// Which vCPU.
        vcpu: u64,
    },
    /// The guest wrote `value` to the isa-debug-exit port.
    DebugExit {
        /// The value written.
        value: u32,
    },
    /// A vCPU triple-faulted (KVM_EXIT_SHUTDOWN).
    TripleFault {
        /// Which vCPU.
        vcpu: u64,
    },
    /// `max_exits` exits were handled.
    MaxExits {
        /// The limit.
        limit: u64,
    },
    /// The run lasted longer than the timeout.
    Timeout {
        /// The timeout.
        after: Duration,
    },
    /// The guest requested a reset (i8042 0xFE, triple fault excluded).
    Reset,
    /// The guest powered off through ACPI (S5).
    PowerOff,
    /// Someone holding the VM's [`crate::VmHandle`] asked it to stop (a
    /// front end on SIGINT/SIGTERM, a control API).
    Stopped,
    /// A vCPU stopped on something neither the guest nor the VMM can recover
    /// from: an emulation failure, a failed VM entry, a debug exit with no
    /// debugger, an exit the VMM does not handle.
    VcpuFault {
        /// Which vCPU.
        vcpu: u64,
        /// What happened.
        stop: VcpuStop,
    },
}

impl fmt::Display for VmOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmOutcome::Halted { vcpu } => write!(f, "guest halted (vCPU {vcpu})"),
            VmOutcome::DebugExit { value } => {
                write!(f, "guest wrote {value:#x} to the debug-exit port")
            }
            VmOutcome::TripleFault { vcpu } => {
                write!(f, "guest triple fault on vCPU {vcpu} (KVM_EXIT_SHUTDOWN)")
            }
            VmOutcome::MaxExits { limit } => write!(f, "exit limit reached ({limit} exits)"),
            VmOutcome::Timeout { after } => {
                write!(f, "timeout reached after {:.3}s", after.as_secs_f64())
            }
            VmOutcome::Reset => write!(f, "guest requested a reset"),
            VmOutcome::PowerOff => write!(f, "guest powered off (ACPI S5)"),
            VmOutcome::Stopped => write!(f, "stopped on request"),
            VmOutcome::VcpuFault { vcpu, stop } => write!(f, "vCPU {vcpu}: {stop}"),
        }
    }
}
