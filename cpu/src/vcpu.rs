//! One vCPU and its run loop: KVM_RUN, decode the exit, hand I/O to an
//! [`ExitHandler`], repeat until something ends the loop.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_bindings::{
    kvm_cpuid_entry2, kvm_run, CpuId, KVM_INTERNAL_ERROR_EMULATION,
    KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES,
};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use vm_device::bus::{MmioAddress, PioAddress};

use crate::exit_handler::{ExitAction, ExitHandler, ExitKind};
use crate::exit_record::{handle_observed_exit, observe_errno};
use crate::fallback::{describe, Described, EmulationFallback, FallbackOutcome, NotHandled};
use crate::kick::KickTarget;
use crate::metrics::VcpuMetrics;

/// Errors creating or running a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// KVM_CREATE_VCPU failed.
    #[error("KVM_CREATE_VCPU {index} failed: {source}")]
    Create {
        /// vCPU index.
        index: u64,
        /// The ioctl's error.
        source: kvm_ioctls::Error,
    },
    /// KVM_RUN failed with an error other than EINTR/EAGAIN.
    #[error("KVM_RUN on vCPU {index} failed: {source}")]
    Run {
        /// vCPU index.
        index: u64,
        /// The ioctl's error.
        source: kvm_ioctls::Error,
    },
    /// Completing the instruction a vCPU left KVM_RUN in the middle of
    /// (see [`Vcpu::complete_pending_io`]) took more exits than allowed: a
    /// string I/O instruction with a huge count.
    #[error("vCPU {index}: its pending I/O instruction did not complete within {limit} exits")]
    PendingIo {
        /// vCPU index.
        index: u64,
        /// The exits allowed.
        limit: usize,
    },
    /// Completing the pending instruction ended the vCPU's run instead.
    #[error("vCPU {index}: completing its pending I/O instruction ended it: {stop}")]
    PendingIoStopped {
        /// vCPU index.
        index: u64,
        /// Why it ended (boxed: an internal error carries its decoded
        /// instruction, and this variant is rare).
        stop: Box<VcpuStop>,
    },
}

/// Details of KVM_EXIT_INTERNAL_ERROR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalError {
    /// `KVM_INTERNAL_ERROR_*` suberror (1 = emulation failure).
    pub suberror: u32,
    /// The raw data words KVM attached.
    pub data: Vec<u64>,
    /// The instruction bytes that failed to emulate, when KVM provided them.
    pub insn: Option<Vec<u8>>,
    /// For an emulation failure with bytes: the instruction decoded at the
    /// vCPU's RIP (filled in by [`Vcpu::run`]).
    pub decoded: Option<Described>,
    /// Why the emulation fallback left it to stop the VM.
    pub not_handled: Option<NotHandled>,
}

fn hex_bytes(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for (i, b) in bytes.iter().enumerate() {
        let sep = if i == 0 { "" } else { " " };
        write!(f, "{sep}{b:02x}")?;
    }
    Ok(())
}

impl fmt::Display for InternalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.decoded {
            write!(f, "emulation failure at rip {:#x}: ", d.rip)?;
            write!(f, "{} (", d.text.as_deref().unwrap_or("undecodable bytes"))?;
            hex_bytes(f, &d.bytes)?;
            write!(f, ")")?;
            if let Some(why) = &self.not_handled {
                write!(f, ": {why}")?;
            }
            return Ok(());
        }
        let what = match self.suberror {
            1 => "emulation failure",
            2 => "simultaneous exceptions",
            3 => "delivery event failure",
            4 => "unexpected exit reason",
            _ => "unknown suberror",
        };
        write!(f, "KVM internal error, suberror {} ({what})", self.suberror)?;
        if let Some(insn) = &self.insn {
            write!(f, ", instruction bytes: ")?;
            hex_bytes(f, insn)?;
        }
        if !self.data.is_empty() {
            write!(f, ", data:")?;
            for d in &self.data {
                write!(f, " {d:#x}")?;
            }
        }
        Ok(())
    }
}

/// Why a vCPU's run loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuStop {
    /// The guest executed `hlt` with no in-kernel irqchip to wait for.
    Halted,
    /// KVM_EXIT_SHUTDOWN: a triple fault (or another shutdown condition).
    Shutdown,
    /// The handler asked to stop, or the VMM did (kick + `should_stop`).
    StopRequested,
    /// KVM_EXIT_INTERNAL_ERROR.
    InternalError(InternalError),
    /// KVM_EXIT_FAIL_ENTRY: the hardware refused to enter the guest.
    FailEntry {
        /// Hardware entry failure reason.
        reason: u64,
        /// Physical CPU it happened on.
        cpu: u32,
    },
    /// KVM_EXIT_DEBUG: a single step or hardware breakpoint set through
    /// KVM_SET_GUEST_DEBUG. A debugger (vmm-core's GDB stub) takes it;
    /// without one it ends the VM.
    Debug {
        /// Guest PC at the debug exit.
        pc: u64,
        /// Exception vector (1 for #DB).
        exception: u32,
        /// DR6 as KVM reports it: B0-B3 (bits 0-3) name the breakpoint
        /// that hit, BS (bit 14) a completed single step.
        dr6: u64,
    },
    /// KVM_EXIT_SYSTEM_EVENT (reset, shutdown, crash requested through KVM).
    SystemEvent {
        /// `KVM_SYSTEM_EVENT_*` type.
        kind: u32,
    },
    /// KVM_EXIT_MEMORY_FAULT.
    MemoryFault {
        /// Faulting guest-physical address.
        gpa: u64,
        /// Size of the access.
        size: u64,
    },
    /// An exit this loop does not handle (named after its KVM reason).
    Unhandled(String),
}

impl fmt::Display for VcpuStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VcpuStop::Halted => write!(f, "guest halted"),
            VcpuStop::Shutdown => write!(f, "guest triple fault (KVM_EXIT_SHUTDOWN)"),
            VcpuStop::StopRequested => write!(f, "stop requested"),
            VcpuStop::InternalError(e) => write!(f, "{e}"),
            VcpuStop::FailEntry { reason, cpu } => write!(
                f,
                "KVM_EXIT_FAIL_ENTRY: hardware entry failure reason {reason:#x} on host CPU {cpu}"
            ),
            VcpuStop::Debug { pc, exception, .. } => write!(
                f,
                "KVM_EXIT_DEBUG at pc {pc:#x} (exception {exception}) with no debugger attached"
            ),
            VcpuStop::SystemEvent { kind } => write!(f, "KVM_EXIT_SYSTEM_EVENT type {kind}"),
            VcpuStop::MemoryFault { gpa, size } => {
                write!(f, "KVM_EXIT_MEMORY_FAULT at {gpa:#x} ({size} bytes)")
            }
            VcpuStop::Unhandled(what) => write!(f, "unhandled vCPU exit {what}"),
        }
    }
}

/// Time and exit counts of one vCPU's run loop (a snapshot of its
/// [`VcpuMetrics`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VcpuStats {
    /// Exits seen, including interrupted KVM_RUN calls.
    pub exits: u64,
    /// Wall time spent inside KVM_RUN.
    pub run_time: Duration,
    /// Wall time spent handling exits in userspace.
    pub handle_time: Duration,
}

/// A vCPU: its KVM file descriptor, index and metrics.
pub struct Vcpu {
    fd: VcpuFd,
    index: u64,
    metrics: Arc<VcpuMetrics>,
    fallback: Option<Arc<EmulationFallback>>,
    /// The CPUID last set through [`Vcpu::set_cpuid2`]: what a snapshot
    /// saves, because KVM_GET_CPUID2 may report what the guest sees
    /// instead (on the nested hosts of the project notes, leaf 1 and 7
    /// bits come from the host).
    cpuid: Option<Vec<kvm_cpuid_entry2>>,
}

impl fmt::Debug for Vcpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vcpu").field("index", &self.index).finish()
    }
}

impl Vcpu {
    /// Creates vCPU `index` on `vm`.
    pub fn new(vm: &VmFd, index: u64) -> Result<Self, VcpuError> {
        let fd = vm
            .create_vcpu(index)
            .map_err(|source| VcpuError::Create { index, source })?;
        Ok(Vcpu {
            fd,
            index,
            metrics: Arc::new(VcpuMetrics::default()),
            fallback: None,
            cpuid: None,
        })
    }

    /// Lets [`Vcpu::run`] finish the instructions KVM fails to emulate
    /// through `fallback` (see [`crate::fallback`]) instead of stopping.
    pub fn set_emulation_fallback(&mut self, fallback: Arc<EmulationFallback>) {
        self.fallback = Some(fallback);
    }

    /// An emulation failure: handed to the fallback when there is one;
    /// otherwise (or when it declines) the stop, with the instruction named.
    fn on_emulation_failure(&self, mut e: InternalError) -> Option<VcpuStop> {
        let Some(insn) = e.insn.clone() else {
            return Some(VcpuStop::InternalError(e));
        };
        let why = match &self.fallback {
            Some(fb) => match fb.handle(&self.fd, &insn) {
                FallbackOutcome::Completed | FallbackOutcome::Injected(_) => return None,
                FallbackOutcome::NotHandled(why) => why,
            },
            None => NotHandled::Off,
        };
        e.decoded = describe(&self.fd, &insn);
        e.not_handled = Some(why);
        Some(VcpuStop::InternalError(e))
    }

    /// KVM_SET_CPUID2, remembering the table (see [`Vcpu::cpuid`]).
    pub fn set_cpuid2(&mut self, cpuid: &CpuId) -> Result<(), kvm_ioctls::Error> {
        self.fd.set_cpuid2(cpuid)?;
        self.cpuid = Some(cpuid.as_slice().to_vec());
        Ok(())
    }

    /// The CPUID last set with [`Vcpu::set_cpuid2`], if any.
    pub fn cpuid(&self) -> Option<&[kvm_cpuid_entry2]> {
        self.cpuid.as_deref()
    }

    /// The KVM vCPU, for state set-up before running.
    pub fn fd(&self) -> &VcpuFd {
        &self.fd
    }

    /// The host address of this vCPU's mapped `kvm_run` area (for a VMM
    /// that shows its steps).
    pub fn kvm_run_address(&mut self) -> usize {
        std::ptr::from_mut(self.fd.get_kvm_run()) as usize
    }

    /// This vCPU's index (and APIC ID).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Statistics accumulated by [`Vcpu::run`].
    pub fn stats(&self) -> VcpuStats {
        VcpuStats {
            exits: self.metrics.exits(),
            run_time: self.metrics.run_time(),
            handle_time: self.metrics.handle_time(),
        }
    }

    /// The live metrics, readable from other threads while the vCPU runs.
    pub fn metrics(&self) -> Arc<VcpuMetrics> {
        self.metrics.clone()
    }

    /// Runs the guest until an exit ends the loop, `handler` asks to stop, or
    /// the thread is kicked while `handler.should_stop()` is true.
    ///
    /// EINTR and EAGAIN from KVM_RUN are retried (EAGAIN is what an AP woken
    /// from wait-for-SIPI returns). Must run on the thread that is kicked, and
    /// [`crate::kick::install_kick_handler`] must have been called for kicks to
    /// reach it.
    pub fn run<H: ExitHandler + ?Sized>(&mut self, handler: &H) -> Result<VcpuStop, VcpuError> {
        let run_area: *mut kvm_run = self.fd.get_kvm_run();
        // SAFETY: the kvm_run area is mapped for as long as `self.fd` lives,
        // which outlasts this function and so the guard; the guard is created
        // and dropped on this thread.
        let _kick =
            unsafe { KickTarget::install(std::ptr::addr_of_mut!((*run_area).immediate_exit)) };
        // Two clock reads per exit: the end of handling one exit doubles as
        // the start of the next KVM_RUN (only the stop check lies between).
        let mut mark = Instant::now();
        loop {
            if handler.should_stop() {
                return Ok(VcpuStop::StopRequested);
            }
            let entered = mark;
            let result = self.fd.run();
            let exited = Instant::now();
            self.metrics.record_run(exited - entered);
            let (kind, stop) = match result {
                // One predictable branch: handlers that never observe
                // return a constant false and this arm folds away.
                Ok(exit) if handler.observes_exits() => {
                    handle_observed_exit(exit, run_area, handler, self.index, exited)
                }
                Ok(exit) => handle_exit(exit, run_area, handler),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.fd.set_kvm_immediate_exit(0);
                    if handler.observes_exits() {
                        observe_errno(handler, self.index, exited, e.errno());
                    }
                    (ExitKind::Interrupted, None)
                }
                Err(source) => {
                    return Err(VcpuError::Run {
                        index: self.index,
                        source,
                    })
                }
            };
            let stop = match stop {
                Some(VcpuStop::InternalError(e)) if e.suberror == KVM_INTERNAL_ERROR_EMULATION => {
                    self.on_emulation_failure(e)
                }
                other => other,
            };
            let action = handler.exit_handled(kind);
            mark = Instant::now();
            self.metrics.record_exit(kind, mark - exited);
            if let Some(stop) = stop {
                return Ok(stop);
            }
            if action == ExitAction::Stop {
                return Ok(VcpuStop::StopRequested);
            }
        }
    }
}

/// How many exits [`Vcpu::complete_pending_io`] handles before giving up:
/// one per element of a string I/O instruction still running (a `rep
/// outsb` exits once per byte on nested KVM), so a 64 KiB transfer fits.
pub const PENDING_IO_LIMIT: usize = 1 << 16;

impl Vcpu {
    /// Completes the instruction this vCPU left KVM_RUN in the middle of,
    /// without running any further guest instruction, so its registers
    /// can be saved consistently.
    ///
    /// After a port or MMIO exit the guest's state is final only once the
    /// next KVM_RUN has run (KVM copies an `in`'s data into RAX and moves
    /// RIP past the instruction then); saved before that, a restored guest
    /// would execute the instruction again. KVM's API documentation gives
    /// the way out: re-enter with `immediate_exit` set, which finishes the
    /// pending operation and returns EINTR at once. A string instruction
    /// that continues exits again; those exits go to `handler` like any
    /// other, up to [`PENDING_IO_LIMIT`].
    pub fn complete_pending_io<H: ExitHandler + ?Sized>(
        &mut self,
        handler: &H,
    ) -> Result<(), VcpuError> {
        let run_area: *mut kvm_run = self.fd.get_kvm_run();
        for _ in 0..PENDING_IO_LIMIT {
            self.fd.set_kvm_immediate_exit(1);
            let result = self.fd.run();
            match result {
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.fd.set_kvm_immediate_exit(0);
                    return Ok(());
                }
                Err(source) => {
                    self.fd.set_kvm_immediate_exit(0);
                    return Err(VcpuError::Run {
                        index: self.index,
                        source,
                    });
                }
                Ok(exit) => {
                    let (kind, stop) = handle_exit(exit, run_area, handler);
                    handler.exit_handled(kind);
                    if let Some(stop) = stop {
                        self.fd.set_kvm_immediate_exit(0);
                        return Err(VcpuError::PendingIoStopped {
                            index: self.index,
                            stop: Box::new(stop),
                        });
                    }
                }
            }
        }
        self.fd.set_kvm_immediate_exit(0);
        Err(VcpuError::PendingIo {
            index: self.index,
            limit: PENDING_IO_LIMIT,
        })
    }
}

/// Width of one element of the current port I/O exit.
pub(crate) fn io_access_size(run: *const kvm_run) -> usize {
    // SAFETY: only called for KVM_EXIT_IO, so `io` is the live union member;
    // `run` points to the mapped kvm_run area, and the field read does not
    // overlap the data slice the exit borrows.
    let size = unsafe { std::ptr::addr_of!((*run).__bindgen_anon_1.io.size).read() };
    usize::from(size.max(1))
}

fn internal_error(run: *const kvm_run) -> InternalError {
    // SAFETY: only called for KVM_EXIT_INTERNAL_ERROR, so `internal` is the
    // live union member of the mapped kvm_run area.
    let internal = unsafe { std::ptr::addr_of!((*run).__bindgen_anon_1.internal).read() };
    let ndata = (internal.ndata as usize).min(internal.data.len());
    let mut insn = None;
    if internal.suberror == KVM_INTERNAL_ERROR_EMULATION {
        // SAFETY: as above; for an emulation failure KVM lays the same bytes
        // out as `emulation_failure`, and every bit pattern is a valid value.
        let emu = unsafe { std::ptr::addr_of!((*run).__bindgen_anon_1.emulation_failure).read() };
        if ndata >= 1
            && emu.flags & u64::from(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) != 0
        {
            // SAFETY: plain bytes inside the union just read.
            let bytes = unsafe { emu.__bindgen_anon_1.__bindgen_anon_1 };
            let len = usize::from(bytes.insn_size).min(bytes.insn_bytes.len());
            insn = Some(bytes.insn_bytes[..len].to_vec());
        }
    }
    InternalError {
        suberror: internal.suberror,
        data: internal.data[..ndata].to_vec(),
        insn,
        decoded: None,
        not_handled: None,
    }
}

/// Decodes one exit and performs it through `handler`. Returns the exit kind
/// and, for exits that end the loop, why.
pub(crate) fn handle_exit<H: ExitHandler + ?Sized>(
    exit: VcpuExit<'_>,
    run: *const kvm_run,
    handler: &H,
) -> (ExitKind, Option<VcpuStop>) {
    match exit {
        VcpuExit::IoIn(port, data) => {
            let size = io_access_size(run);
            for element in data.chunks_mut(size) {
                element.fill(0);
                handler.pio_read(PioAddress(port), element);
            }
            (ExitKind::IoIn, None)
        }
        VcpuExit::IoOut(port, data) => {
            let size = io_access_size(run);
            for element in data.chunks(size) {
                handler.pio_write(PioAddress(port), element);
            }
            (ExitKind::IoOut, None)
        }
        VcpuExit::MmioRead(addr, data) => {
            data.fill(0);
            handler.mmio_read(MmioAddress(addr), data);
            (ExitKind::MmioRead, None)
        }
        VcpuExit::MmioWrite(addr, data) => {
            handler.mmio_write(MmioAddress(addr), data);
            (ExitKind::MmioWrite, None)
        }
        VcpuExit::Hlt => (ExitKind::Hlt, Some(VcpuStop::Halted)),
        VcpuExit::Shutdown => (ExitKind::Shutdown, Some(VcpuStop::Shutdown)),
        VcpuExit::InternalError => (
            ExitKind::InternalError,
            Some(VcpuStop::InternalError(internal_error(run))),
        ),
        VcpuExit::FailEntry(reason, cpu) => (
            ExitKind::FailEntry,
            Some(VcpuStop::FailEntry { reason, cpu }),
        ),
        VcpuExit::Debug(arch) => (
            ExitKind::Debug,
            Some(VcpuStop::Debug {
                pc: arch.pc,
                exception: arch.exception,
                dr6: arch.dr6,
            }),
        ),
        VcpuExit::SystemEvent(kind, _) => {
            (ExitKind::SystemEvent, Some(VcpuStop::SystemEvent { kind }))
        }
        VcpuExit::MemoryFault { gpa, size, .. } => {
            (ExitKind::Other, Some(VcpuStop::MemoryFault { gpa, size }))
        }
        VcpuExit::Intr => (ExitKind::Interrupted, None),
        VcpuExit::Unsupported(reason) => (
            ExitKind::Other,
            Some(VcpuStop::Unhandled(format!("reason {reason}"))),
        ),
        other => (
            ExitKind::Other,
            Some(VcpuStop::Unhandled(format!("{other:?}"))),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder {
        ops: Mutex<Vec<String>>,
    }

    impl ExitHandler for Recorder {
        fn pio_read(&self, port: PioAddress, data: &mut [u8]) {
            assert!(data.iter().all(|b| *b == 0), "read buffers arrive zeroed");
            self.ops
                .lock()
                .unwrap()
                .push(format!("in {:#x} {}", port.0, data.len()));
            data.fill(0xab);
        }
        fn pio_write(&self, port: PioAddress, data: &[u8]) {
            self.ops
                .lock()
                .unwrap()
                .push(format!("out {:#x} {:?}", port.0, data));
        }
        fn mmio_read(&self, addr: MmioAddress, data: &mut [u8]) {
            self.ops
                .lock()
                .unwrap()
                .push(format!("mr {:#x} {}", addr.0, data.len()));
            data.fill(0xcd);
        }
        fn mmio_write(&self, addr: MmioAddress, data: &[u8]) {
            self.ops
                .lock()
                .unwrap()
                .push(format!("mw {:#x} {:?}", addr.0, data));
        }
    }

    fn run_with_io_size(size: u8) -> kvm_run {
        let mut run = kvm_run::default();
        run.__bindgen_anon_1.io.size = size;
        run
    }

    #[test]
    fn test_handle_exit_splits_string_out_into_elements() {
        let run = run_with_io_size(2);
        let h = Recorder::default();
        let data = [1u8, 0, 2, 0, 3, 0];
        let (kind, stop) = handle_exit(VcpuExit::IoOut(0x10, &data), &run, &h);
        assert_eq!((kind, stop), (ExitKind::IoOut, None));
        assert_eq!(
            *h.ops.lock().unwrap(),
            vec!["out 0x10 [1, 0]", "out 0x10 [2, 0]", "out 0x10 [3, 0]"]
        );
    }

    #[test]
    fn test_handle_exit_fills_string_in_per_element() {
        let run = run_with_io_size(4);
        let h = Recorder::default();
        let mut data = [0x55u8; 8];
        handle_exit(VcpuExit::IoIn(0x64, &mut data), &run, &h);
        assert_eq!(data, [0xab; 8]);
        assert_eq!(*h.ops.lock().unwrap(), vec!["in 0x64 4", "in 0x64 4"]);
    }

    #[test]
    fn test_handle_exit_mmio_and_terminal_exits() {
        let run = run_with_io_size(1);
        let h = Recorder::default();
        let mut data = [0u8; 8];
        assert_eq!(
            handle_exit(VcpuExit::MmioRead(0xd000_0000, &mut data), &run, &h),
            (ExitKind::MmioRead, None)
        );
        assert_eq!(data, [0xcd; 8]);
        assert_eq!(
            handle_exit(VcpuExit::Hlt, &run, &h),
            (ExitKind::Hlt, Some(VcpuStop::Halted))
        );
        assert_eq!(
            handle_exit(VcpuExit::Shutdown, &run, &h),
            (ExitKind::Shutdown, Some(VcpuStop::Shutdown))
        );
        let (kind, stop) = handle_exit(VcpuExit::Unsupported(999), &run, &h);
        assert_eq!(kind, ExitKind::Other);
        assert!(stop.unwrap().to_string().contains("999"));
    }

    #[test]
    fn test_internal_error_reports_instruction_bytes() {
        let mut run = kvm_run::default();
        // SAFETY: writing plain integers into a default-initialised union.
        unsafe {
            run.__bindgen_anon_1.emulation_failure.suberror = KVM_INTERNAL_ERROR_EMULATION;
            run.__bindgen_anon_1.emulation_failure.ndata = 3;
            run.__bindgen_anon_1.emulation_failure.flags =
                u64::from(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES);
            let b = &mut run
                .__bindgen_anon_1
                .emulation_failure
                .__bindgen_anon_1
                .__bindgen_anon_1;
            b.insn_size = 3;
            b.insn_bytes[..3].copy_from_slice(&[0x0f, 0x01, 0xc1]);
        }
        let h = Recorder::default();
        let (kind, stop) = handle_exit(VcpuExit::InternalError, &run, &h);
        assert_eq!(kind, ExitKind::InternalError);
        let msg = stop.unwrap().to_string();
        assert!(msg.contains("emulation failure"), "{msg}");
        assert!(msg.contains("0f 01 c1"), "{msg}");
    }
}
