//! The process exit statuses, one per way a run can end. Listed in `--help`
//! and the README; tests rely on them.

use vmm_core::{ErrorClass, VmOutcome, VmmError};

/// The guest halted.
pub const HALTED: i32 = 0;
/// Bad usage or bad input (arguments, image, sizes, addresses).
pub const BAD_INPUT: i32 = 2;
/// The guest triple-faulted (KVM_EXIT_SHUTDOWN).
pub const TRIPLE_FAULT: i32 = 4;
/// A limit was reached (`--max-exits`, `--timeout`).
pub const LIMIT_REACHED: i32 = 6;
/// /dev/kvm is missing, not accessible, or the wrong API version.
pub const KVM_UNAVAILABLE: i32 = 8;
/// A vCPU hit something KVM or the VMM cannot handle (emulation failure,
/// failed entry, unhandled exit).
pub const VCPU_FAULT: i32 = 10;
/// The VMM itself failed (a KVM call, a thread).
pub const VMM_FAILURE: i32 = 12;
/// The guest requested a reset (i8042 CPU-reset command); the VM ends.
pub const GUEST_RESET: i32 = 14;

/// Text for `--help`.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0              the guest halted, or powered off through ACPI (S5)
  (v << 1) | 1   the guest wrote v to the debug-exit port 0xf4 (low 8 bits; always odd)
  2              bad usage or bad input
  4              the guest triple-faulted
  6              --max-exits or --timeout reached
  8              /dev/kvm missing, not accessible, not a KVM device, or wrong API version
  10             vCPU fault: emulation failure, failed entry, unhandled exit
  12             VMM failure
  14             the guest requested a reset (i8042 0xFE); the VM is not rebooted
  130, 143       stopped by SIGINT (Ctrl-C) or SIGTERM; a second one forces an immediate exit
  159            a VMM thread made a system call outside its seccomp list (SIGSYS)";

/// The status for a finished run; `signal` is the stop signal that made
/// the front end stop the VM, if one did.
pub fn for_outcome(outcome: &VmOutcome, signal: Option<i32>) -> i32 {
    match outcome {
        VmOutcome::Halted { .. } | VmOutcome::PowerOff => HALTED,
        VmOutcome::Reset => GUEST_RESET,
        VmOutcome::DebugExit { value } => debug_exit_status(*value),
        VmOutcome::TripleFault { .. } => TRIPLE_FAULT,
        VmOutcome::MaxExits { .. } | VmOutcome::Timeout { .. } => LIMIT_REACHED,
        VmOutcome::VcpuFault { .. } => VCPU_FAULT,
        VmOutcome::Stopped => signal.map_or(VMM_FAILURE, |s| 128 + s),
    }
}

/// QEMU isa-debug-exit's `(v << 1) | 1`, as the 8 bits a process status
/// keeps.
pub fn debug_exit_status(value: u32) -> i32 {
    (((value << 1) | 1) & 0xff) as i32
}

/// The status for an error.
pub fn for_error(e: &VmmError) -> i32 {
    match e.class() {
        ErrorClass::BadInput => BAD_INPUT,
        ErrorClass::KvmUnavailable => KVM_UNAVAILABLE,
        ErrorClass::Internal => VMM_FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_debug_exit_status_matches_qemu() {
        assert_eq!(debug_exit_status(0), 1);
        assert_eq!(debug_exit_status(0x10), 0x21);
        assert_eq!(debug_exit_status(0x7f), 0xff);
        assert_eq!(debug_exit_status(0x80), 1);
    }

    #[test]
    fn test_statuses_are_distinct_and_even() {
        let all = [
            BAD_INPUT,
            TRIPLE_FAULT,
            LIMIT_REACHED,
            KVM_UNAVAILABLE,
            VCPU_FAULT,
            VMM_FAILURE,
            GUEST_RESET,
        ];
        for (i, a) in all.iter().enumerate() {
            assert_eq!(a % 2, 0, "odd statuses belong to debug-exit");
            assert!(all[i + 1..].iter().all(|b| b != a));
        }
    }
}
