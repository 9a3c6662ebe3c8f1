//! The VM as gdbstub's `Target`: one gdb thread per vCPU (thread id =
//! vCPU index + 1), registers and memory of a stopped vCPU, resume
//! actions (continue, step, stay stopped), and breakpoints and
//! watchpoints in the debug registers ([`super::debugregs`]).
//!
//! Every vCPU access is a job run on that vCPU's parked thread
//! ([`Vcpus::call`]); nothing here touches a vCPU fd. Guest debugging
//! (KVM_SET_GUEST_DEBUG) is set on each vCPU just before a resume, and
//! only when it changed.
//!
//! Watchpoints where the host reports no data breakpoint
//! ([`super::probe::HostDebug::data_breakpoints`]): every running vCPU
//! single-steps, and after each step the watched bytes are compared with
//! their last value; a change is the watchpoint's hit, reported on the
//! vCPU that stepped. Only write watchpoints can be kept that way.
//!
//! Where the host cannot single-step guest user code
//! ([`HostDebug::user_mode_debug`]; the step's #DB would be delivered to
//! the guest's own handler), a vCPU at CPL3 is never stepped: the resume
//! is refused and gdb told SIGSTOP on that vCPU, with the reason logged.

use std::num::NonZeroUsize;

use gdbstub::common::{Signal, Tid};
use gdbstub::stub::MultiThreadStopReason;
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps,
    SwBreakpoint, SwBreakpointOps, WatchKind,
};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::reg::X86_64CoreRegs;
use gdbstub_arch::x86::X86_64_SSE;
use kvm_bindings::kvm_guest_debug;
use vm_memory::GuestMemoryMmap;
use vmm_cpu::fallback::cpl;

use super::debugregs::{HwSlots, Slot, DR6_BS};
use super::events::{DebugExit, DebugExits};
use super::memory::GuestView;
use super::probe::HostDebug;
use super::regs::{from_gdb, to_gdb, VcpuRegs};
use super::vcpus::Vcpus;
use super::GdbError;
use std::sync::Arc;

/// What a vCPU does at the next resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// No action given: continues, unless gdb locked the scheduler.
    Unset,
    Continue,
    Step,
}

/// A watchpoint kept by single-stepping: its slot and the bytes last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SteppedWatch {
    slot: Slot,
    last: Vec<u8>,
}

/// What a stop means for gdb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopVerdict {
    /// Tell gdb.
    Report(MultiThreadStopReason<u64>),
    /// A step only the stub asked for (stepped watchpoints) and nothing
    /// changed: resume as before without telling gdb.
    Resume,
}

/// The VM, debugged.
pub(crate) struct VmTarget {
    vcpus: Vcpus,
    mem: GuestMemoryMmap,
    /// MAXPHYADDR of each vCPU (from its CPUID).
    phys_bits: Vec<u32>,
    host: HostDebug,
    slots: HwSlots,
    actions: Vec<Action>,
    locked: bool,
    /// The guest debugging last set on each vCPU (`None`: never set).
    applied: Vec<Option<kvm_guest_debug>>,
    /// Watchpoints kept by stepping (hosts without data breakpoints).
    stepped: Vec<SteppedWatch>,
    exits: Arc<DebugExits>,
    /// A resume refused because it would step user code the host cannot
    /// step: the vCPU, reported to gdb instead of running.
    refused: Option<u64>,
}

fn tid_of(vcpu: usize) -> Tid {
    // vCPU indices are small (the VM's vCPU count): +1 cannot overflow.
    NonZeroUsize::MIN.saturating_add(vcpu)
}

impl VmTarget {
    pub fn new(
        vcpus: Vcpus,
        mem: GuestMemoryMmap,
        phys_bits: Vec<u32>,
        host: HostDebug,
        exits: Arc<DebugExits>,
    ) -> Self {
        let n = vcpus.count();
        VmTarget {
            vcpus,
            mem,
            phys_bits,
            host,
            slots: HwSlots::default(),
            actions: vec![Action::Unset; n],
            locked: false,
            applied: vec![None; n],
            stepped: Vec::new(),
            exits,
            refused: None,
        }
    }

    /// The vCPUs (for the session: pausing, the VM's end).
    pub fn vcpus(&self) -> &Vcpus {
        &self.vcpus
    }

    /// The exits of the current stop.
    pub fn exits(&self) -> &Arc<DebugExits> {
        &self.exits
    }

    /// The vCPU index of gdb thread `tid`, if there is one.
    fn vcpu_of(&self, tid: Tid) -> Result<u64, TargetError<GdbError>> {
        let i = tid.get() - 1;
        if i < self.vcpus.count() {
            Ok(i as u64)
        } else {
            Err(TargetError::NonFatal)
        }
    }

    fn fatal(e: GdbError) -> TargetError<GdbError> {
        TargetError::Fatal(e)
    }

    /// A vCPU's registers, read on its thread ([`Self::settle`] has made
    /// them final).
    fn get_regs(&self, vcpu: u64) -> Result<VcpuRegs, GdbError> {
        self.vcpus.call(vcpu, move |v, _| {
            let kvm = |what| move |source| GdbError::Kvm { vcpu, what, source };
            Ok(VcpuRegs {
                regs: v.fd().get_regs().map_err(kvm("KVM_GET_REGS"))?,
                sregs: v.fd().get_sregs().map_err(kvm("KVM_GET_SREGS"))?,
                fpu: v.fd().get_fpu().map_err(kvm("KVM_GET_FPU"))?,
            })
        })?
    }

    /// Completes, on every vCPU, the I/O instruction it may have left
    /// KVM_RUN in the middle of (a pause can catch a vCPU between an `in`
    /// exit and the KVM_RUN that finishes it), so the registers gdb sees
    /// and writes are final. Called once per stop.
    pub fn settle(&self) -> Result<(), GdbError> {
        for vcpu in 0..self.vcpus.count() as u64 {
            self.vcpus.call(vcpu, move |v, handler| {
                if let Err(e) = v.complete_pending_io(handler) {
                    // A pending step trap ends it with a debug stop: the
                    // instruction did complete.
                    log::debug!("gdb: vCPU {vcpu}: completing its pending I/O: {e}");
                }
            })?;
        }
        Ok(())
    }

    fn sregs(&self, vcpu: u64) -> Result<kvm_bindings::kvm_sregs, GdbError> {
        self.vcpus.call(vcpu, move |v, _| {
            v.fd().get_sregs().map_err(|source| GdbError::Kvm {
                vcpu,
                what: "KVM_GET_SREGS",
                source,
            })
        })?
    }

    fn view_read(&self, vcpu: u64, addr: u64, buf: &mut [u8]) -> Result<usize, GdbError> {
        let sregs = self.sregs(vcpu)?;
        let view = GuestView {
            mem: &self.mem,
            sregs: &sregs,
            phys_bits: self.phys_bits.get(vcpu as usize).copied().unwrap_or(36),
        };
        Ok(view.read(addr, buf))
    }

    /// The guest's current bytes of a watchpoint (zeros where unreadable).
    fn watched_bytes(&self, slot: Slot) -> Result<Vec<u8>, GdbError> {
        let Slot::Watch { addr, len, .. } = slot else {
            return Ok(Vec::new());
        };
        let mut buf = vec![0u8; len as usize];
        self.view_read(0, addr, &mut buf)?;
        Ok(buf)
    }

    /// Whether the VM steps for watchpoints instead of trusting DR0-DR3.
    fn stepping_for_watch(&self) -> bool {
        !self.stepped.is_empty()
    }

    /// Sets each vCPU's guest debugging for the next resume and lets the
    /// VM run: the vCPUs gdb left without action stay parked if gdb locked
    /// the scheduler.
    fn do_resume(&mut self) -> Result<(), GdbError> {
        // Per vCPU: None stays parked, Some(step) runs (single-stepping).
        let plan: Vec<Option<bool>> = self
            .actions
            .iter()
            .map(|a| match a {
                Action::Unset if self.locked => None,
                Action::Unset | Action::Continue => Some(self.stepping_for_watch()),
                Action::Step => Some(true),
            })
            .collect();
        if !self.host.user_mode_debug {
            for (i, _) in plan.iter().enumerate().filter(|(_, p)| **p == Some(true)) {
                let vcpu = i as u64;
                let (regs, sregs) = self.vcpus.call(vcpu, move |v, _| {
                    let kvm = |what| move |source| GdbError::Kvm { vcpu, what, source };
                    Ok::<_, GdbError>((
                        v.fd().get_regs().map_err(kvm("KVM_GET_REGS"))?,
                        v.fd().get_sregs().map_err(kvm("KVM_GET_SREGS"))?,
                    ))
                })??;
                if cpl(&regs, &sregs) == 3 {
                    let why = if self.actions[i] == Action::Step {
                        "gdb asked for a step"
                    } else {
                        "a watchpoint is kept by stepping: delete it to run user code"
                    };
                    log::warn!(
                        "gdb: vCPU {vcpu} runs user code (CPL3), which this host's KVM cannot \
                         single-step (the step's #DB would go to the guest): not resumed ({why})"
                    );
                    self.refused = Some(vcpu);
                    return Ok(());
                }
            }
        }
        let mut held = Vec::new();
        for (i, p) in plan.into_iter().enumerate() {
            let Some(step) = p else {
                held.push(i as u64);
                continue;
            };
            let want = self.slots.guest_debug(step, self.host.step_flags);
            if self.applied[i] != Some(want) {
                let vcpu = i as u64;
                self.vcpus.call(vcpu, move |v, _| {
                    v.fd()
                        .set_guest_debug(&want)
                        .map_err(|source| GdbError::Kvm {
                            vcpu,
                            what: "KVM_SET_GUEST_DEBUG",
                            source,
                        })
                })??;
                self.applied[i] = Some(want);
            }
        }
        self.exits.clear();
        self.vcpus.resume(held);
        Ok(())
    }

    /// The vCPU whose resume was refused (see the module docs), once.
    pub fn take_refused(&mut self) -> Option<MultiThreadStopReason<u64>> {
        self.refused
            .take()
            .map(|vcpu| MultiThreadStopReason::SignalWithThread {
                tid: tid_of(vcpu as usize),
                signal: Signal::SIGSTOP,
            })
    }

    /// Resumes again with the same actions (after a [`StopVerdict::Resume`]).
    pub fn resume_again(&mut self) -> Result<(), GdbError> {
        self.do_resume()
    }

    /// Turns guest debugging off on every vCPU and forgets gdb's
    /// breakpoints (gdb detached): the VM then runs as without a debugger.
    pub fn release(&mut self) -> Result<(), GdbError> {
        self.slots.clear();
        self.stepped.clear();
        self.actions.fill(Action::Unset);
        self.locked = false;
        for i in 0..self.vcpus.count() {
            if self.applied[i].is_some_and(|d| d.control != 0) {
                let vcpu = i as u64;
                let off = kvm_guest_debug::default();
                self.vcpus.call(vcpu, move |v, _| {
                    v.fd()
                        .set_guest_debug(&off)
                        .map_err(|source| GdbError::Kvm {
                            vcpu,
                            what: "KVM_SET_GUEST_DEBUG",
                            source,
                        })
                })??;
            }
            self.applied[i] = None;
        }
        Ok(())
    }

    /// What the first debug exit of a stop means.
    pub fn verdict(&mut self, exit: DebugExit) -> Result<StopVerdict, GdbError> {
        let tid = tid_of(exit.vcpu as usize);
        if let Some(slot) = self.slots.hit(exit.dr6) {
            return Ok(StopVerdict::Report(match slot {
                Slot::Breakpoint { software: true, .. } => MultiThreadStopReason::SwBreak(tid),
                Slot::Breakpoint {
                    software: false, ..
                } => MultiThreadStopReason::HwBreak(tid),
                Slot::Watch { addr, kind, .. } => {
                    // Keep the stepped copy in step with what gdb saw.
                    self.refresh_stepped()?;
                    MultiThreadStopReason::Watch { tid, kind, addr }
                }
            }));
        }
        if exit.dr6 & DR6_BS != 0 && self.stepping_for_watch() {
            for i in 0..self.stepped.len() {
                let now = self.watched_bytes(self.stepped[i].slot)?;
                if now != self.stepped[i].last {
                    self.stepped[i].last = now;
                    if let Slot::Watch { addr, kind, .. } = self.stepped[i].slot {
                        return Ok(StopVerdict::Report(MultiThreadStopReason::Watch {
                            tid,
                            kind,
                            addr,
                        }));
                    }
                }
            }
            let asked = self.actions.get(exit.vcpu as usize) == Some(&Action::Step);
            if !asked {
                return Ok(StopVerdict::Resume);
            }
        }
        Ok(StopVerdict::Report(
            MultiThreadStopReason::SignalWithThread {
                tid,
                signal: Signal::SIGTRAP,
            },
        ))
    }

    /// The stop reason for an interrupt (Ctrl-C): SIGINT on the first vCPU.
    pub fn interrupted(&self) -> MultiThreadStopReason<u64> {
        MultiThreadStopReason::SignalWithThread {
            tid: tid_of(0),
            signal: Signal::SIGINT,
        }
    }

    fn refresh_stepped(&mut self) -> Result<(), GdbError> {
        for i in 0..self.stepped.len() {
            self.stepped[i].last = self.watched_bytes(self.stepped[i].slot)?;
        }
        Ok(())
    }
}

impl Target for VmTarget {
    type Arch = X86_64_SSE;
    type Error = GdbError;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    // Every breakpoint is a hardware one (see debugregs): gdb must not
    // write int3 into guest memory behind the stub's back.
    fn guard_rail_implicit_sw_breakpoints(&self) -> bool {
        false
    }
}

impl MultiThreadBase for VmTarget {
    fn read_registers(&mut self, regs: &mut X86_64CoreRegs, tid: Tid) -> TargetResult<(), Self> {
        let vcpu = self.vcpu_of(tid)?;
        *regs = to_gdb(&self.get_regs(vcpu).map_err(Self::fatal)?);
        Ok(())
    }

    fn write_registers(&mut self, regs: &X86_64CoreRegs, tid: Tid) -> TargetResult<(), Self> {
        let vcpu = self.vcpu_of(tid)?;
        let now = self.get_regs(vcpu).map_err(Self::fatal)?;
        let new = match from_gdb(&now, regs) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("gdb: vCPU {vcpu}: {e}");
                return Err(TargetError::NonFatal);
            }
        };
        let (regs_changed, fpu_changed) = (new.regs != now.regs, new.fpu != now.fpu);
        self.vcpus
            .call(vcpu, move |v, _| {
                let kvm = |what| move |source| GdbError::Kvm { vcpu, what, source };
                if regs_changed {
                    v.fd().set_regs(&new.regs).map_err(kvm("KVM_SET_REGS"))?;
                }
                if fpu_changed {
                    v.fd().set_fpu(&new.fpu).map_err(kvm("KVM_SET_FPU"))?;
                }
                Ok(())
            })
            .and_then(|r| r)
            .map_err(Self::fatal)
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        let vcpu = self.vcpu_of(tid)?;
        match self.view_read(vcpu, start, data).map_err(Self::fatal)? {
            0 if !data.is_empty() => Err(TargetError::NonFatal),
            n => Ok(n),
        }
    }

    fn write_addrs(&mut self, start: u64, data: &[u8], tid: Tid) -> TargetResult<(), Self> {
        let vcpu = self.vcpu_of(tid)?;
        let sregs = self.sregs(vcpu).map_err(Self::fatal)?;
        let view = GuestView {
            mem: &self.mem,
            sregs: &sregs,
            phys_bits: self.phys_bits.get(vcpu as usize).copied().unwrap_or(36),
        };
        view.write(start, data).map_err(|e| {
            log::info!("gdb: memory write: {e}");
            TargetError::NonFatal
        })?;
        // gdb's own writes are not the guest's: a stepped watchpoint
        // compares against them from now on.
        self.refresh_stepped().map_err(Self::fatal)
    }

    fn list_active_threads(
        &mut self,
        thread_is_active: &mut dyn FnMut(Tid),
    ) -> Result<(), Self::Error> {
        for i in 0..self.vcpus.count() {
            thread_is_active(tid_of(i));
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadResume for VmTarget {
    fn resume(&mut self) -> Result<(), Self::Error> {
        self.do_resume()
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        self.actions.fill(Action::Unset);
        self.locked = false;
        Ok(())
    }

    fn set_resume_action_continue(
        &mut self,
        tid: Tid,
        signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        let i = tid.get() - 1;
        if signal.is_some() {
            // A signal has no meaning for a vCPU; gdb passes one on only
            // when told to (`signal N`).
            log::warn!("gdb: vCPU {i}: signals are not delivered to the guest; continuing without");
        }
        if let Some(a) = self.actions.get_mut(i) {
            *a = Action::Continue;
        }
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadSingleStep for VmTarget {
    fn set_resume_action_step(
        &mut self,
        tid: Tid,
        _signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        if let Some(a) = self.actions.get_mut(tid.get() - 1) {
            *a = Action::Step;
        }
        Ok(())
    }
}

impl MultiThreadSchedulerLocking for VmTarget {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Self::Error> {
        self.locked = true;
        Ok(())
    }
}

impl Breakpoints for VmTarget {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for VmTarget {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.slots.add(Slot::Breakpoint {
            addr,
            software: true,
        }))
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.slots.remove(Slot::Breakpoint {
            addr,
            software: true,
        }))
    }
}

impl HwBreakpoint for VmTarget {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.slots.add(Slot::Breakpoint {
            addr,
            software: false,
        }))
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.slots.remove(Slot::Breakpoint {
            addr,
            software: false,
        }))
    }
}

impl HwWatchpoint for VmTarget {
    fn add_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        let slot = Slot::Watch { addr, len, kind };
        let stepped = !self.host.data_breakpoints;
        // Stepping sees writes only.
        if stepped && kind != WatchKind::Write {
            return Ok(false);
        }
        if !self.slots.add(slot) {
            return Ok(false);
        }
        if stepped {
            let last = self.watched_bytes(slot).map_err(Self::fatal)?;
            self.stepped.push(SteppedWatch { slot, last });
        }
        Ok(true)
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        let slot = Slot::Watch { addr, len, kind };
        self.stepped.retain(|w| w.slot != slot);
        Ok(self.slots.remove(slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::VmControl;
    use crate::dispatch::ExitDispatcher;
    use crate::handle::VmHandle;
    use vm_memory::GuestAddress;
    use vmm_devices::IoBus;
    use vmm_sys_util::eventfd::EventFd;

    /// A target over a VM with `n` vCPUs and no vCPU threads: what needs
    /// no job on a vCPU can be checked.
    fn target(n: usize, host: HostDebug) -> VmTarget {
        let control = Arc::new(VmControl::new(None));
        let wake = Arc::new(EventFd::new(0).unwrap());
        let handle = VmHandle::new(control.clone(), wake);
        let dispatcher = Arc::new(ExitDispatcher::new(IoBus::new(), control, false));
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        VmTarget::new(
            Vcpus::new(handle, dispatcher, n),
            mem,
            vec![36; n],
            host,
            Arc::new(DebugExits::new().unwrap()),
        )
    }

    const HW: HostDebug = HostDebug {
        data_breakpoints: true,
        user_mode_debug: true,
        step_flags: 0,
    };

    fn exit(vcpu: u64, dr6: u64) -> DebugExit {
        DebugExit { vcpu, pc: 0, dr6 }
    }

    #[test]
    fn test_verdict_names_the_slot_and_the_thread() {
        let mut t = target(2, HW);
        assert_eq!(t.add_sw_breakpoint(0x1000, 1).ok(), Some(true));
        assert_eq!(t.add_hw_breakpoint(0x2000, 1).ok(), Some(true));
        assert_eq!(
            t.add_hw_watchpoint(0x3000, 8, WatchKind::Write).ok(),
            Some(true)
        );
        let two = NonZeroUsize::new(2).unwrap();
        assert_eq!(
            t.verdict(exit(1, 0xffff_0ff1)).unwrap(),
            StopVerdict::Report(MultiThreadStopReason::SwBreak(two)),
            "Z0 is reported as gdb's software breakpoint"
        );
        assert_eq!(
            t.verdict(exit(1, 0xffff_0ff2)).unwrap(),
            StopVerdict::Report(MultiThreadStopReason::HwBreak(two))
        );
        assert_eq!(
            t.verdict(exit(0, 0xffff_0ff4)).unwrap(),
            StopVerdict::Report(MultiThreadStopReason::Watch {
                tid: NonZeroUsize::MIN,
                kind: WatchKind::Write,
                addr: 0x3000
            })
        );
        // A single step is SIGTRAP on the thread that stepped.
        assert_eq!(
            t.verdict(exit(1, 0xffff_4ff0)).unwrap(),
            StopVerdict::Report(MultiThreadStopReason::SignalWithThread {
                tid: two,
                signal: Signal::SIGTRAP
            })
        );
    }

    #[test]
    fn test_breakpoints_share_four_slots_and_read_watches_are_refused() {
        let mut t = target(1, HW);
        assert_eq!(
            t.add_hw_watchpoint(0x3000, 4, WatchKind::Read).ok(),
            Some(false)
        );
        for i in 0..4 {
            assert_eq!(t.add_sw_breakpoint(0x1000 + i, 1).ok(), Some(true));
        }
        assert_eq!(
            t.add_hw_watchpoint(0x3000, 4, WatchKind::Write).ok(),
            Some(false)
        );
        assert_eq!(t.remove_sw_breakpoint(0x1002, 1).ok(), Some(true));
        assert_eq!(
            t.remove_hw_breakpoint(0x1003, 1).ok(),
            Some(false),
            "inserted as Z0"
        );
        assert_eq!(
            t.add_hw_watchpoint(0x3000, 4, WatchKind::ReadWrite).ok(),
            Some(true)
        );
        // Stepped watchpoints (no data breakpoints) see writes only.
        let mut s = target(
            1,
            HostDebug {
                data_breakpoints: false,
                ..HW
            },
        );
        assert_eq!(
            s.add_hw_watchpoint(0x3000, 4, WatchKind::ReadWrite).ok(),
            Some(false)
        );
    }

    #[test]
    fn test_threads_are_vcpus_plus_one() {
        let mut t = target(3, HW);
        let mut tids = Vec::new();
        t.list_active_threads(&mut |tid| tids.push(tid.get()))
            .unwrap();
        assert_eq!(tids, [1, 2, 3]);
        assert_eq!(t.vcpu_of(NonZeroUsize::new(3).unwrap()).ok(), Some(2));
        assert!(t.vcpu_of(NonZeroUsize::new(4).unwrap()).is_err());
        assert_eq!(t.take_refused(), None);
        assert_eq!(
            t.interrupted(),
            MultiThreadStopReason::SignalWithThread {
                tid: NonZeroUsize::MIN,
                signal: Signal::SIGINT
            }
        );
    }
}
