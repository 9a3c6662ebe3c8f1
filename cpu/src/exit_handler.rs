//! The contract between the vCPU run loop and whoever emulates devices.
//!
//! The run loop knows KVM; the handler knows devices. Keeping them apart (as
//! Cloud Hypervisor's `VmOps` does) lets another VMM drive this loop with its
//! own bus, and lets the loop be tested with a mock handler.

use vm_device::bus::{MmioAddress, PioAddress};

use crate::exit_record::ExitRecord;

/// What the loop should do after an exit was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitAction {
    /// Enter the guest again.
    Continue,
    /// Leave the run loop with [`crate::VcpuStop::StopRequested`].
    Stop,
}

/// The kinds of exit the loop reports to [`ExitHandler::exit_handled`], for
/// counting and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExitKind {
    /// Port read (`in`, `ins`).
    IoIn,
    /// Port write (`out`, `outs`).
    IoOut,
    /// MMIO read outside RAM.
    MmioRead,
    /// MMIO write outside RAM.
    MmioWrite,
    /// `hlt` with no in-kernel irqchip.
    Hlt,
    /// Triple fault or other shutdown condition.
    Shutdown,
    /// KVM could not handle something (emulation failure...).
    InternalError,
    /// VM entry failed.
    FailEntry,
    /// A debug exit (single step, breakpoint).
    Debug,
    /// A system event (reset, shutdown, crash) reported by KVM.
    SystemEvent,
    /// KVM_RUN was interrupted by a signal (a kick) or asked to retry.
    Interrupted,
    /// Any other exit reason.
    Other,
}

impl ExitKind {
    /// Every kind, in display order.
    pub const ALL: [ExitKind; 12] = [
        ExitKind::IoIn,
        ExitKind::IoOut,
        ExitKind::MmioRead,
        ExitKind::MmioWrite,
        ExitKind::Hlt,
        ExitKind::Shutdown,
        ExitKind::InternalError,
        ExitKind::FailEntry,
        ExitKind::Debug,
        ExitKind::SystemEvent,
        ExitKind::Interrupted,
        ExitKind::Other,
    ];

    /// A short stable name (`io_in`, `mmio_write`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ExitKind::IoIn => "io_in",
            ExitKind::IoOut => "io_out",
            ExitKind::MmioRead => "mmio_read",
            ExitKind::MmioWrite => "mmio_write",
            ExitKind::Hlt => "hlt",
            ExitKind::Shutdown => "shutdown",
            ExitKind::InternalError => "internal_error",
            ExitKind::FailEntry => "fail_entry",
            ExitKind::Debug => "debug",
            ExitKind::SystemEvent => "system_event",
            ExitKind::Interrupted => "interrupted",
            ExitKind::Other => "other",
        }
    }

    /// Position in [`ExitKind::ALL`], for array-indexed counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Emulates what a vCPU exit asks for.
///
/// Data slices are exactly one access wide (1, 2 or 4 bytes for ports, 1 to 8
/// for MMIO); string I/O is split into one call per element by the loop. Read
/// buffers arrive zero-filled. Implementations must not panic on any port,
/// address or size: all of them are guest-controlled.
pub trait ExitHandler: Sync {
    /// A port read; fill `data`.
    fn pio_read(&self, port: PioAddress, data: &mut [u8]);
    /// A port write.
    fn pio_write(&self, port: PioAddress, data: &[u8]);
    /// An MMIO read; fill `data`.
    fn mmio_read(&self, addr: MmioAddress, data: &mut [u8]);
    /// An MMIO write.
    fn mmio_write(&self, addr: MmioAddress, data: &[u8]);
    /// Called once per exit after it was handled (or, for exits that end the
    /// loop, before the loop returns). Returning [`ExitAction::Stop`] ends the
    /// loop; this is where exit limits and device-requested stops are applied.
    fn exit_handled(&self, _kind: ExitKind) -> ExitAction {
        ExitAction::Continue
    }
    /// Checked before every KVM_RUN: `true` ends the loop. A VMM that wants to
    /// stop a vCPU sets what this reads, then kicks the thread
    /// ([`crate::kick`]).
    fn should_stop(&self) -> bool {
        false
    }
    /// Whether [`Self::observe_exit`] wants every exit. Asked once per exit:
    /// keep it a constant or a single field read. The default `false`
    /// leaves the loop exactly as without observation.
    fn observes_exits(&self) -> bool {
        false
    }
    /// Called for every exit while [`Self::observes_exits`] is true, with
    /// its `kvm_run` fields: before the handler performs a write, after it
    /// performs a read (see [`crate::exit_record`]), before
    /// [`Self::exit_handled`].
    fn observe_exit(&self, _exit: &ExitRecord<'_>) {}
}
