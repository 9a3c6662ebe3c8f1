//! What this host's KVM does for a debugger, found out once, before the
//! VM runs, with a throwaway VM of one vCPU and 1 MiB of RAM.
//!
//! On the nested paravirtual KVM of the project's machines (see the README,
//! "Debugging with GDB") guest kernel code runs in KVM's instruction
//! emulator, which reports single steps and instruction breakpoints but
//! no data breakpoint: a write watchpoint in DR0-DR3 never fires there.
//! The stub asks the host rather than assuming: a real-mode `mov` under a
//! write watchpoint either ends KVM_RUN with KVM_EXIT_DEBUG or runs on to
//! its `hlt`. Where it does not fire, the stub watches by single-stepping
//! (see [`super::target`]).

use kvm_bindings::{
    kvm_guest_debug, KVM_GUESTDBG_BLOCKIRQ, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_USE_HW_BP,
};
use kvm_ioctls::{Kvm, VcpuExit};
use vm_memory::{Bytes, GuestAddress};
use vmm_memory::{register_memory_slots, GuestRam, MemoryLayout, ThpHint};

use super::GdbError;

/// KVM_CAP_SET_GUEST_DEBUG2: the KVM_GUESTDBG_* flags the host accepts.
const KVM_CAP_SET_GUEST_DEBUG2: libc::c_ulong = 195;
/// Where the probe's code and watched byte sit.
const CODE: u64 = 0x1000;
const WATCHED: u64 = 0x2000;
/// `mov byte [0x2000], 1; hlt` (16-bit code).
const PROBE_CODE: [u8; 6] = [0xc6, 0x06, 0x00, 0x20, 0x01, 0xf4];
/// How many KVM_RUN calls the probe makes at most (EINTR retries).
const MAX_RUNS: usize = 16;

/// What the host does for a debugger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostDebug {
    /// A write to a watched address ends KVM_RUN with KVM_EXIT_DEBUG.
    pub data_breakpoints: bool,
    /// Flags added to single steps: KVM_GUESTDBG_BLOCKIRQ where the host
    /// has it, so a step does not land in an interrupt handler.
    pub step_flags: u32,
}

/// Asks the host (see the module docs).
pub fn probe(kvm: &Kvm) -> Result<HostDebug, GdbError> {
    let flags = kvm.check_extension_raw(KVM_CAP_SET_GUEST_DEBUG2);
    let step_flags = if flags > 0 && (flags as u32) & KVM_GUESTDBG_BLOCKIRQ != 0 {
        KVM_GUESTDBG_BLOCKIRQ
    } else {
        0
    };
    let kvm_err = |what: &'static str| move |source| GdbError::Probe { what, source };
    let layout = MemoryLayout::new(1).map_err(|e| GdbError::ProbeMemory(e.to_string()))?;
    // Declared first, dropped last: KVM maps it for as long as `vm` lives.
    let ram =
        GuestRam::new(&layout, ThpHint::Off).map_err(|e| GdbError::ProbeMemory(e.to_string()))?;
    ram.memory()
        .write_slice(&PROBE_CODE, GuestAddress(CODE))
        .map_err(|e| GdbError::ProbeMemory(e.to_string()))?;
    let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
    // SAFETY: `ram` is declared before `vm`, so it is dropped after it and
    // outlives every use KVM makes of its mapping.
    unsafe { register_memory_slots(&vm, &ram, 1) }
        .map_err(|e| GdbError::ProbeMemory(e.to_string()))?;
    let mut vcpu = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
    let mut sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))?;
    let mut regs = vcpu.get_regs().map_err(kvm_err("KVM_GET_REGS"))?;
    regs.rip = CODE;
    regs.rflags = 2;
    vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))?;
    let mut debug = kvm_guest_debug {
        control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP,
        ..Default::default()
    };
    debug.arch.debugreg[0] = WATCHED;
    // L0, R/W0 = 01 (writes), LEN0 = 00 (one byte).
    debug.arch.debugreg[7] = 1 | (0b01 << 16);
    vcpu.set_guest_debug(&debug)
        .map_err(kvm_err("KVM_SET_GUEST_DEBUG"))?;
    for _ in 0..MAX_RUNS {
        match vcpu.run() {
            Ok(VcpuExit::Debug(_)) => {
                return Ok(HostDebug {
                    data_breakpoints: true,
                    step_flags,
                })
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
            Err(e) => {
                return Err(GdbError::Probe {
                    what: "KVM_RUN",
                    source: e,
                })
            }
            // The `hlt` after the write, or anything else: no data
            // breakpoint fired.
            Ok(_) => break,
        }
    }
    Ok(HostDebug {
        data_breakpoints: false,
        step_flags,
    })
}
