//! What this host's KVM does for a debugger, found out once, before the
//! VM runs, with two throwaway VMs of one vCPU and 1 MiB of RAM each.
//!
//! On the nested paravirtual KVM of the project's machines (see the README,
//! "Debugging with GDB") guest kernel code runs in KVM's instruction
//! emulator, which reports single steps and instruction breakpoints but no
//! data breakpoint, and guest user code (CPL3) runs natively, where a
//! single step's #DB goes to the guest's own handler instead of ending
//! KVM_RUN and breakpoints never fire. The stub asks the host rather than
//! assuming:
//! - a real-mode `mov` under a write watchpoint either ends KVM_RUN with
//!   KVM_EXIT_DEBUG or runs on to its `hlt`. Where it does not fire, the
//!   stub watches by single-stepping (see `gdb/target.rs`);
//! - one `nop` single-stepped at CPL3 in long mode either ends KVM_RUN
//!   with KVM_EXIT_DEBUG after it or (with no IDT) triple-faults. Where it
//!   does not exit, the stub refuses to step a vCPU at CPL3 (the #DB would
//!   land in the guest).

use kvm_bindings::{
    kvm_guest_debug, kvm_segment, KVM_GUESTDBG_BLOCKIRQ, KVM_GUESTDBG_ENABLE,
    KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress};
use vmm_memory::{register_memory_slots, GuestRam, MemoryLayout, ThpHint};

use super::GdbError;

/// KVM_CAP_SET_GUEST_DEBUG2: the KVM_GUESTDBG_* flags the host accepts.
const KVM_CAP_SET_GUEST_DEBUG2: libc::c_ulong = 195;
/// Where the probes' code and watched byte sit.
const CODE: u64 = 0x8000;
const WATCHED: u64 = 0x9000;
/// `mov byte [0x9000], 1; hlt` (16-bit code).
const WATCH_CODE: [u8; 6] = [0xc6, 0x06, 0x00, 0x90, 0x01, 0xf4];
/// `nop; nop` (64-bit code at CPL3; anything after faults).
const USER_CODE: [u8; 2] = [0x90, 0x90];
/// Long-mode tables of the CPL3 probe: PML4, PDPT, PD (one 2 MiB user
/// page at 0), and a GDT with a user code and a user data segment.
const PML4: u64 = 0x1000;
const PDPT: u64 = 0x2000;
const PD: u64 = 0x3000;
const GDT: u64 = 0x500;
const GDT_ENTRIES: [u64; 3] = [0, 0x00af_fb00_0000_ffff, 0x00cf_f300_0000_ffff];
/// How many KVM_RUN calls a probe makes at most (EINTR retries).
const MAX_RUNS: usize = 16;

/// What the host does for a debugger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostDebug {
    /// A write to a watched address ends KVM_RUN with KVM_EXIT_DEBUG.
    pub data_breakpoints: bool,
    /// A single step of guest user code (CPL3) ends KVM_RUN with
    /// KVM_EXIT_DEBUG (rather than raising #DB in the guest).
    pub user_mode_debug: bool,
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
    Ok(HostDebug {
        data_breakpoints: probe_data_breakpoint(kvm)?,
        user_mode_debug: probe_user_step(kvm)?,
        step_flags,
    })
}

fn kvm_err(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> GdbError {
    move |source| GdbError::Probe { what, source }
}

fn memory_err(e: impl std::fmt::Display) -> GdbError {
    GdbError::ProbeMemory(e.to_string())
}

/// Runs `setup` on a fresh one-vCPU VM whose RAM holds `writes`, then
/// KVM_RUN until an exit; whether that exit is KVM_EXIT_DEBUG.
fn debug_exit_after(
    kvm: &Kvm,
    writes: &[(u64, &[u8])],
    setup: impl FnOnce(&VcpuFd) -> Result<(), GdbError>,
) -> Result<bool, GdbError> {
    let layout = MemoryLayout::new(1).map_err(memory_err)?;
    // Declared first, dropped last: KVM maps it for as long as `vm` lives.
    let ram = GuestRam::new(&layout, ThpHint::Off).map_err(memory_err)?;
    for (at, bytes) in writes {
        ram.memory()
            .write_slice(bytes, GuestAddress(*at))
            .map_err(memory_err)?;
    }
    let vm: VmFd = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
    // SAFETY: `ram` is declared before `vm`, so it is dropped after it and
    // outlives every use KVM makes of its mapping.
    unsafe { register_memory_slots(&vm, &ram, 1) }.map_err(memory_err)?;
    let mut vcpu = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
    setup(&vcpu)?;
    for _ in 0..MAX_RUNS {
        match vcpu.run() {
            Ok(VcpuExit::Debug(_)) => return Ok(true),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
            Err(e) => return Err(kvm_err("KVM_RUN")(e)),
            // A `hlt`, a triple fault, anything else: no debug exit.
            Ok(_) => return Ok(false),
        }
    }
    Ok(false)
}

/// The real-mode write watchpoint (see the module docs).
fn probe_data_breakpoint(kvm: &Kvm) -> Result<bool, GdbError> {
    debug_exit_after(kvm, &[(CODE, &WATCH_CODE)], |vcpu| {
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
            .map_err(kvm_err("KVM_SET_GUEST_DEBUG"))
    })
}

/// The CPL3 single step (see the module docs).
fn probe_user_step(kvm: &Kvm) -> Result<bool, GdbError> {
    let tables: [(u64, u64); 3] = [(PML4, PDPT | 7), (PDPT, PD | 7), (PD, 0x87)];
    let mut bytes: Vec<(u64, Vec<u8>)> = tables
        .iter()
        .map(|(at, e)| (*at, e.to_le_bytes().to_vec()))
        .collect();
    let gdt: Vec<u8> = GDT_ENTRIES.iter().flat_map(|e| e.to_le_bytes()).collect();
    bytes.push((GDT, gdt));
    bytes.push((CODE, USER_CODE.to_vec()));
    let writes: Vec<(u64, &[u8])> = bytes.iter().map(|(a, b)| (*a, b.as_slice())).collect();
    debug_exit_after(kvm, &writes, |vcpu| {
        let mut sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
        let code = kvm_segment {
            base: 0,
            limit: 0xffff_ffff,
            selector: 0x08 | 3,
            type_: 11,
            present: 1,
            dpl: 3,
            db: 0,
            s: 1,
            l: 1,
            g: 1,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        let data = kvm_segment {
            selector: 0x10 | 3,
            type_: 3,
            db: 1,
            l: 0,
            ..code
        };
        sregs.cs = code;
        (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
        sregs.gdt.base = GDT;
        sregs.gdt.limit = (GDT_ENTRIES.len() * 8 - 1) as u16;
        sregs.cr3 = PML4;
        sregs.cr4 = 1 << 5; // PAE
        sregs.cr0 = 0x8000_0011; // PG, ET, PE
        sregs.efer = 0x500; // LMA, LME
        vcpu.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))?;
        let mut regs = vcpu.get_regs().map_err(kvm_err("KVM_GET_REGS"))?;
        regs.rip = CODE;
        regs.rsp = 0x7000;
        regs.rflags = 2;
        vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))?;
        let debug = kvm_guest_debug {
            control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP,
            ..Default::default()
        };
        vcpu.set_guest_debug(&debug)
            .map_err(kvm_err("KVM_SET_GUEST_DEBUG"))
    })
}
