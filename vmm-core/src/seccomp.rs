//! Seccomp filters, one per kind of VMM thread, installed before any guest
//! code runs. A system call outside a thread's list raises SIGSYS; the
//! handler here reports the call's number and ends the process with status
//! 128 + SIGSYS (159), so a violation is never a silent failure.
//!
//! Snapshots add the state-reading KVM ioctls: on vCPU threads (which save
//! their own vCPU while parked) and on the main thread (irqchip, PIT,
//! dirty log), plus pwrite/ftruncate for the memory file there. Restores
//! happen before any thread is confined.
//!
//! The lists were taken from strace of every feature the VMM has (console to
//! stdout/file, tracing, metrics files, kicks, teardown) and are kept as
//! short as that allows. `ioctl` is limited to KVM_RUN and the snapshot
//! state reads on vCPU threads, plus the state setters a vCPU needs to load
//! its reset state at an ACPI S3 wake (on its own thread, on its own fd),
//! the few register and event writes of the emulation fallback, and with a
//! debugger attached KVM_SET_GUEST_DEBUG ([`ThreadRole::VcpuDebugged`]).

use std::collections::BTreeMap;

use libc::{c_int, c_void, siginfo_t};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule,
    TargetArch,
};
use vmm_sys_util::signal::register_signal_handler;

use crate::seccomp_tree::tree_program;

/// KVM_RUN = _IO(KVMIO, 0x80).
const KVM_RUN: u64 = 0xae80;

/// `_IOR(KVMIO, nr, T)`, `_IOW`, `_IOWR` (asm-generic/ioctl.h).
const fn ior<T>(nr: u64) -> u64 {
    (2 << 30) | ((std::mem::size_of::<T>() as u64) << 16) | 0xae00 | nr
}
const fn iow<T>(nr: u64) -> u64 {
    (1 << 30) | ((std::mem::size_of::<T>() as u64) << 16) | 0xae00 | nr
}
const fn iowr<T>(nr: u64) -> u64 {
    (3 << 30) | ((std::mem::size_of::<T>() as u64) << 16) | 0xae00 | nr
}

/// The state reads a parked vCPU thread makes for a snapshot
/// (vmm_cpu::snapshot::save), plus KVM_RUN for completing a pending I/O
/// instruction (already allowed).
const VCPU_SNAPSHOT_IOCTLS: [u64; 12] = [
    ior::<kvm_bindings::kvm_regs>(0x81),        // KVM_GET_REGS
    ior::<kvm_bindings::kvm_sregs>(0x83),       // KVM_GET_SREGS
    ior::<kvm_bindings::kvm_fpu>(0x8c),         // KVM_GET_FPU
    iowr::<kvm_bindings::kvm_msrs>(0x88),       // KVM_GET_MSRS
    iowr::<kvm_bindings::kvm_cpuid2>(0x91),     // KVM_GET_CPUID2
    ior::<kvm_bindings::kvm_lapic_state>(0x8e), // KVM_GET_LAPIC
    ior::<kvm_bindings::kvm_mp_state>(0x98),    // KVM_GET_MP_STATE
    ior::<kvm_bindings::kvm_vcpu_events>(0x9f), // KVM_GET_VCPU_EVENTS
    ior::<kvm_bindings::kvm_debugregs>(0xa1),   // KVM_GET_DEBUGREGS
    ior::<kvm_bindings::kvm_xsave>(0xa4),       // KVM_GET_XSAVE
    ior::<kvm_bindings::kvm_xcrs>(0xa6),        // KVM_GET_XCRS
    0xaea3,                                     // KVM_GET_TSC_KHZ = _IO(KVMIO, 0xa3)
];

/// What the emulation fallback adds at an emulation failure
/// (`vmm_cpu::fallback`): writing the registers back and injecting an
/// exception (KVM_SET_SREGS for CR2). The reads it makes (registers,
/// special registers, MSRs, vCPU events) are snapshot reads already.
const FALLBACK_IOCTLS: [u64; 3] = [
    iow::<kvm_bindings::kvm_regs>(0x82),        // KVM_SET_REGS
    iow::<kvm_bindings::kvm_sregs>(0x84),       // KVM_SET_SREGS
    iow::<kvm_bindings::kvm_vcpu_events>(0xa0), // KVM_SET_VCPU_EVENTS
];

/// What a vCPU thread adds while a debugger is attached (`--gdb`,
/// `vmm-core/src/gdb/`): turning guest debugging (single step, DR0-DR7
/// breakpoints) on and off. Its other reads and writes (registers,
/// special registers, x87/SSE) are snapshot reads, fallback and S3-wake
/// writes already.
const GDB_VCPU_IOCTLS: [u64; 1] = [
    iow::<kvm_bindings::kvm_guest_debug>(0x9b), // KVM_SET_GUEST_DEBUG
];

/// The VM-wide state reads the main thread makes for a snapshot.
const MAIN_SNAPSHOT_IOCTLS: [u64; 3] = [
    iowr::<kvm_bindings::kvm_irqchip>(0x62),   // KVM_GET_IRQCHIP
    ior::<kvm_bindings::kvm_pit_state2>(0x9f), // KVM_GET_PIT2
    iow::<kvm_bindings::kvm_dirty_log>(0x42),  // KVM_GET_DIRTY_LOG
];
/// Size of `struct kvm_clock_data`, in the two clock ioctls' numbers.
const CLOCK_DATA_LEN: u64 = std::mem::size_of::<kvm_bindings::kvm_clock_data>() as u64;
/// KVM_GET_CLOCK = _IOR(KVMIO, 0x7c, struct kvm_clock_data).
const KVM_GET_CLOCK: u64 = (2 << 30) | (CLOCK_DATA_LEN << 16) | 0xae7c;
/// KVM_SET_CLOCK = _IOW(KVMIO, 0x7b, struct kvm_clock_data).
const KVM_SET_CLOCK: u64 = (1 << 30) | (CLOCK_DATA_LEN << 16) | 0xae7b;

/// The vCPU ioctls of an S3 wake (`vmm_cpu::Vcpu::reset_for_wake`):
/// KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS, KVM_SET_FPU, KVM_GET_LAPIC,
/// KVM_SET_LAPIC, KVM_SET_MP_STATE, KVM_SET_VCPU_EVENTS.
const VCPU_WAKE_IOCTLS: [u64; 8] = [
    iow::<kvm_bindings::kvm_regs>(0x82),
    ior::<kvm_bindings::kvm_sregs>(0x83),
    iow::<kvm_bindings::kvm_sregs>(0x84),
    iow::<kvm_bindings::kvm_fpu>(0x8d),
    ior::<kvm_bindings::kvm_lapic_state>(0x8e),
    iow::<kvm_bindings::kvm_lapic_state>(0x8f),
    iow::<kvm_bindings::kvm_mp_state>(0x99),
    iow::<kvm_bindings::kvm_vcpu_events>(0xa0),
];

/// KVM_SET_IRQCHIP = _IOR(KVMIO, 0x63, struct kvm_irqchip) (sic: the
/// kernel declares it as a read): the main loop puts the PIC and IOAPIC
/// back in their start state at an S3 wake.
const KVM_SET_IRQCHIP: u64 = ior::<kvm_bindings::kvm_irqchip>(0x63);

/// Exit status after a seccomp violation: 128 + SIGSYS.
pub const SECCOMP_VIOLATION_STATUS: i32 = 128 + libc::SIGSYS;

/// Which thread a filter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadRole {
    /// A vCPU thread: KVM_RUN, device emulation, console output.
    Vcpu,
    /// A vCPU thread under `--explain`: it reads KVM_GET_REGS for the final
    /// register state it shows, which the vCPU list already allows (a
    /// snapshot read); a role of its own so the two lists cannot drift
    /// apart unnoticed (a test compares them).
    VcpuExplained,
    /// A vCPU thread of a VM with a debugger attached: the vCPU list plus
    /// KVM_SET_GUEST_DEBUG (the `--explain` read is in both).
    VcpuDebugged,
    /// The thread that runs the watchdog, signals and teardown.
    Main,
    /// The virtio device thread: its event loop, disk I/O, entropy, host
    /// sockets.
    Device,
    /// A front end's control-API thread: accepting and serving clients on
    /// an already bound Unix socket, and acting on the VM through its
    /// handle (eventfd writes, futex waits). It opens no files.
    Api,
    /// The GDB stub thread (`vmm-core/src/gdb/`): accepting gdb on an
    /// already bound Unix socket, reading and writing it, polling it and
    /// an eventfd. No ioctl: vCPUs are touched only by their own threads,
    /// guest memory through its mapping.
    Gdb,
}

/// Errors building or installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// seccompiler rejected the rules (a bug in this file).
    #[error("building the {role:?} seccomp filter failed: {source}")]
    Build {
        /// For which thread.
        role: ThreadRole,
        /// seccompiler's error.
        source: seccompiler::BackendError,
    },
    /// The filter could not be laid out as a search tree.
    #[error("laying out the {role:?} seccomp filter failed: {source}")]
    Tree {
        /// For which thread.
        role: ThreadRole,
        /// What went wrong.
        source: crate::seccomp_tree::TreeError,
    },
    /// The kernel refused the filter.
    #[error("installing the {role:?} seccomp filter failed: {source}")]
    Apply {
        /// For which thread.
        role: ThreadRole,
        /// seccompiler's error.
        source: seccompiler::Error,
    },
    /// The SIGSYS handler could not be installed.
    #[error("installing the SIGSYS handler failed: {0}")]
    Handler(vmm_sys_util::errno::Error),
}

/// System calls every VMM thread may make: memory management by the
/// allocator, locks, signal returns, time, output, and thread exit.
const COMMON: &[i64] = &[
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_clock_gettime,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_fcntl,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// What the main thread adds: kicking vCPU threads, its event loop (epoll,
/// reading console input), writing metrics files (create, write, rename),
/// writing snapshots (the memory file is sized with ftruncate and written
/// with pwrite, page runs at their offsets).
const MAIN_ONLY: &[i64] = &[
    libc::SYS_pwrite64,
    libc::SYS_ftruncate,
    libc::SYS_read,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_tgkill,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_openat,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_lseek,
    libc::SYS_unlink,
    // Arming the devices' timers (RTC interrupts, PM timer carry); the
    // timerfds are created before confinement.
    libc::SYS_timerfd_settime,
];

/// What the virtio device thread adds: its event loop, positioned disk I/O
/// and durability, discard/write-zeroes, entropy, tap frames for
/// virtio-net (`read`, `write`, plus `ioctl(TUNSETOFFLOAD)` in `rules_for`),
/// and vsock's host side ([`VSOCK`], plus `socket(2)` for `AF_UNIX` only, in
/// [`rules_for`]).
const DEVICE_ONLY: &[i64] = &[
    // Queue eventfds, the block device's re-arm eventfd, host input.
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    // virtio-blk: vectored reads/writes straight between the image and
    // guest memory, FLUSH and shutdown, DISCARD/WRITE_ZEROES.
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_fdatasync,
    libc::SYS_fallocate,
    libc::SYS_getrandom,
    libc::SYS_lseek,
    libc::SYS_fstat,
];

/// What the API thread adds: accepting connections on its listening
/// socket, waiting for readiness, reading requests and writing responses
/// (std's Unix sockets use recvfrom/sendto; `read`/`write` as well). The
/// send timeout on accepted sockets is the one `setsockopt` allowed below.
const API_ONLY: &[i64] = &[
    libc::SYS_accept4,
    libc::SYS_read,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_shutdown,
];

/// What the GDB stub thread adds: taking a connection from its listening
/// socket, waiting on it and on the debug-exit eventfd, reading gdb's
/// packets (`write` for the answers is common).
const GDB_ONLY: &[i64] = &[
    libc::SYS_accept4,
    libc::SYS_read,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_poll,
    libc::SYS_ppoll,
];

/// vsock's host side on the device thread (devices/src/virtio/vsock):
/// the device's own epoll instance takes each connection's socket
/// (`epoll_ctl`, `epoll_wait`, above); `accept4` takes host processes from
/// the listening socket; `connect` reaches `<path>_<port>` for guest
/// connections; `shutdown` half-closes a host socket when the guest will
/// send no more; `timerfd_settime` arms and disarms the connect timeout
/// (the timer is never read: re-arming clears it). Socket data moves with
/// read(2)/write(2) (vm-memory's volatile I/O), so no send/recv calls.
const VSOCK: &[i64] = &[
    libc::SYS_accept4,
    libc::SYS_connect,
    libc::SYS_shutdown,
    libc::SYS_timerfd_settime,
];

/// What virtio-blk calls on the device thread (a test keeps the list and
/// the device in step).
pub const BLOCK_SYSCALLS: &[i64] = &[
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_fdatasync,
    libc::SYS_fallocate,
    libc::SYS_read,
    libc::SYS_write,
];

/// A rule allowing `ioctl` request `req` (the second argument).
fn ioctl_rule(req: u64) -> Result<SeccompRule, seccompiler::BackendError> {
    SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, req)
        .and_then(|c| SeccompRule::new(vec![c]))
}

fn rules_for(
    role: ThreadRole,
) -> Result<BTreeMap<i64, Vec<SeccompRule>>, seccompiler::BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = COMMON.iter().map(|s| (*s, vec![])).collect();
    match role {
        // KVM_GET_REGS, which `--explain` reads for the final state, is among
        // the snapshot reads: the explained vCPU needs nothing more.
        ThreadRole::Vcpu | ThreadRole::VcpuExplained | ThreadRole::VcpuDebugged => {
            let debugged = role == ThreadRole::VcpuDebugged;
            let allowed = std::iter::once(KVM_RUN)
                .chain(VCPU_SNAPSHOT_IOCTLS)
                .chain(FALLBACK_IOCTLS)
                .chain(VCPU_WAKE_IOCTLS)
                .chain(GDB_VCPU_IOCTLS.into_iter().filter(|_| debugged))
                // One rule per request: the lists share a few reads.
                .collect::<std::collections::BTreeSet<u64>>()
                .into_iter()
                .map(ioctl_rule)
                .collect::<Result<Vec<_>, _>>()?;
            rules.insert(libc::SYS_ioctl, allowed);
        }
        ThreadRole::Gdb => {
            rules.extend(GDB_ONLY.iter().map(|s| (*s, vec![])));
        }
        ThreadRole::Main => {
            rules.extend(MAIN_ONLY.iter().map(|s| (*s, vec![])));
            // Restoring the terminal from raw mode at the end (and reading
            // its mode): TCGETS and TCSETS; saving and restoring the guest
            // clock around a pause: KVM_GET_CLOCK and KVM_SET_CLOCK; the
            // VM's state and dirty log for snapshots; the irqchip reset at
            // an S3 wake: KVM_SET_IRQCHIP.
            let allowed = [
                libc::TCGETS,
                libc::TCSETS,
                KVM_GET_CLOCK,
                KVM_SET_CLOCK,
                KVM_SET_IRQCHIP,
            ]
            .into_iter()
            .chain(MAIN_SNAPSHOT_IOCTLS)
            .map(ioctl_rule)
            .collect::<Result<Vec<_>, _>>()?;
            rules.insert(libc::SYS_ioctl, allowed);
        }
        ThreadRole::Device => {
            rules.extend(DEVICE_ONLY.iter().chain(VSOCK).map(|s| (*s, vec![])));
            // virtio-net gives its tap the offloads the driver accepted
            // once the driver is up, which only the device thread can do
            // (activation runs on a vCPU thread). Frames go through
            // read/write, already allowed. No other ioctl.
            let offload = SeccompCondition::new(
                1,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                libc::TUNSETOFFLOAD,
            )?;
            rules.insert(libc::SYS_ioctl, vec![SeccompRule::new(vec![offload])?]);
            // vsock's connections to `<path>_<port>`: Unix sockets only.
            let unix = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                libc::AF_UNIX as u64,
            )?;
            rules.insert(libc::SYS_socket, vec![SeccompRule::new(vec![unix])?]);
        }
        ThreadRole::Api => {
            rules.extend(API_ONLY.iter().map(|s| (*s, vec![])));
            // setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, ...) only: a client
            // that stops reading cannot hold the thread for ever.
            let level = SeccompCondition::new(
                1,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                libc::SOL_SOCKET as u64,
            )?;
            let name = SeccompCondition::new(
                2,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                libc::SO_SNDTIMEO as u64,
            )?;
            rules.insert(
                libc::SYS_setsockopt,
                vec![SeccompRule::new(vec![level, name])?],
            );
        }
    }
    Ok(rules)
}

/// The compiled filter for `role`: seccompiler's code for each call's
/// rules, found through a search tree on the call number (see
/// [`crate::seccomp_tree`]: loading it costs the kernel about half).
pub fn filter_for(role: ThreadRole) -> Result<BpfProgram, SeccompError> {
    let rules = rules_for(role).map_err(|source| SeccompError::Build { role, source })?;
    tree_program(
        rules,
        SeccompAction::Trap,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|source| SeccompError::Tree { role, source })
}

/// Confines the calling thread to `role`'s list (for good: seccomp filters
/// cannot be removed).
pub fn confine_current_thread(role: ThreadRole) -> Result<(), SeccompError> {
    apply(role, &filter_for(role)?)
}

/// Confines the calling thread to `program`, compiled for `role` by
/// [`filter_for`] (perhaps on another thread, ahead of time).
///
/// Every thread but the main one also blocks SIGINT and SIGTERM first, so
/// that a stop signal sent to the process is always taken by the main
/// thread: Linux hands a process signal to another thread when the main
/// one already has one pending, and a handler run on a confined thread
/// could make calls its list forbids (a second Ctrl-C's clean-up unlinks
/// files).
pub fn apply(role: ThreadRole, program: &BpfProgram) -> Result<(), SeccompError> {
    if role != ThreadRole::Main {
        block_stop_signals();
    }
    seccompiler::apply_filter(program).map_err(|source| SeccompError::Apply { role, source })
}

fn block_stop_signals() {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before
    // use; pthread_sigmask only changes this thread's mask. It cannot fail
    // with valid arguments.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

extern "C" fn on_sigsys(_: c_int, info: *mut siginfo_t, _: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; for
    // SIGSYS from seccomp, the syscall number sits right after si_addr
    // (`_sigsys._call_addr`, then `_syscall`), at byte offset 24 on x86_64.
    let nr = unsafe { info.cast::<u8>().add(24).cast::<c_int>().read_unaligned() };
    let mut msg = *b"vmm-bin: seccomp: blocked forbidden system call 000000 (SIGSYS); see README, Security and limits\n";
    let digits_at = 48;
    let mut n = nr.unsigned_abs();
    for i in (0..6).rev() {
        msg[digits_at + i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    // SAFETY: write(2) and _exit(2) are async-signal-safe and allowed by
    // every filter; the buffer outlives the call.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(SECCOMP_VIOLATION_STATUS);
    }
}

/// Installs the SIGSYS reporter. Call once before confining any thread.
pub fn install_sigsys_handler() -> Result<(), SeccompError> {
    register_signal_handler(libc::SIGSYS, on_sigsys).map_err(SeccompError::Handler)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_fallback_ioctl_numbers() {
        // The values from <linux/kvm.h> on x86_64.
        assert_eq!(FALLBACK_IOCTLS, [0x4090_ae82, 0x4138_ae84, 0x4040_aea0]);
        // Its reads are snapshot reads: KVM_GET_REGS, _SREGS, _MSRS and
        // _VCPU_EVENTS.
        for read in [0x8090_ae81, 0x8138_ae83, 0xc008_ae88, 0x8040_ae9f] {
            assert!(VCPU_SNAPSHOT_IOCTLS.contains(&read), "{read:#x}");
        }
    }

    /// Every role's tree filter gives seccompiler's linear filter's verdict
    /// for every call number and for arguments made of the constants the
    /// filter compares with (so every rule's allowed values are tried).
    #[test]
    fn test_tree_filters_decide_as_the_linear_ones() {
        use crate::seccomp_tree::tests::{linear_program, run};
        for role in [
            ThreadRole::Vcpu,
            ThreadRole::VcpuExplained,
            ThreadRole::Main,
            ThreadRole::Device,
            ThreadRole::Api,
        ] {
            let linear = linear_program(rules_for(role).unwrap());
            let tree = filter_for(role).unwrap();
            // Jumps and loads compare against offsets and masks too; as
            // values they do no harm.
            let mut values: Vec<u64> = linear.iter().map(|i| u64::from(i.k)).collect();
            values.extend([0, 1, u64::from(u32::MAX)]);
            values.sort_unstable();
            values.dedup();
            let mut checked = 0u64;
            for nr in 0..512 {
                let same = |args: &[u64; 6]| {
                    assert_eq!(
                        run(&tree, nr, args),
                        run(&linear, nr, args),
                        "{role:?}: call {nr} with {args:x?}"
                    );
                };
                same(&[0; 6]);
                for arg in 0..6 {
                    for &v in &values {
                        let mut args = [0; 6];
                        args[arg] = v;
                        same(&args);
                        checked += 1;
                    }
                }
            }
            assert!(checked > 10_000, "{role:?}: {checked}");
            // Shorter lookups, barely longer programs.
            assert!(
                tree.len() <= linear.len() + linear.len() / 5,
                "{role:?}: {} vs {}",
                tree.len(),
                linear.len()
            );
        }
    }

    #[test]
    fn test_confined_worker_threads_block_stop_signals_main_does_not() {
        fn blocked(role: ThreadRole) -> (bool, bool) {
            std::thread::spawn(move || {
                // An allow-everything program: only the mask is under test.
                let allow_all: BpfProgram = vec![seccompiler::sock_filter {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k: 0x7fff_0000,
                }];
                apply(role, &allow_all).unwrap();
                // SAFETY: as in `block_stop_signals`; a null new set only
                // reads the mask.
                unsafe {
                    let mut now: libc::sigset_t = std::mem::zeroed();
                    libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut now);
                    (
                        libc::sigismember(&now, libc::SIGINT) == 1,
                        libc::sigismember(&now, libc::SIGTERM) == 1,
                    )
                }
            })
            .join()
            .unwrap()
        }
        assert_eq!(blocked(ThreadRole::Vcpu), (true, true));
        assert_eq!(blocked(ThreadRole::Device), (true, true));
        assert_eq!(blocked(ThreadRole::Main), (false, false));
    }

    #[test]
    fn test_filters_compile_for_every_role() {
        for role in [
            ThreadRole::Vcpu,
            ThreadRole::VcpuExplained,
            ThreadRole::Main,
            ThreadRole::Device,
            ThreadRole::Api,
            ThreadRole::VcpuDebugged,
            ThreadRole::Gdb,
        ] {
            let p = filter_for(role).unwrap();
            assert!(!p.is_empty());
        }
    }

    #[test]
    fn test_vcpu_thread_may_not_open_files_or_spawn() {
        let vcpu = rules_for(ThreadRole::Vcpu).unwrap();
        for forbidden in [
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_clone3,
            libc::SYS_socket,
            libc::SYS_tgkill,
        ] {
            assert!(
                !vcpu.contains_key(&forbidden),
                "vCPU list allows {forbidden}"
            );
        }
        let main = rules_for(ThreadRole::Main).unwrap();
        assert_eq!(
            main[&libc::SYS_ioctl].len(),
            8,
            "main thread: the terminal ioctls (TCGETS, TCSETS), the clock ones, the \
             snapshot reads and KVM_SET_IRQCHIP only"
        );
        assert_eq!(
            vcpu[&libc::SYS_ioctl].len(),
            // 1 + 12 reads + 6 wake setters not among them; the fallback's
            // three writes are wake setters too.
            19,
            "KVM_RUN, the state reads, the fallback's writes and the wake state's setters"
        );
        let explained = rules_for(ThreadRole::VcpuExplained).unwrap();
        assert_eq!(
            explained[&libc::SYS_ioctl].len(),
            vcpu[&libc::SYS_ioctl].len(),
            "the explained vCPU reads KVM_GET_REGS, already a snapshot read"
        );
        // The numbers the kernel headers give (linux/kvm.h, printed by a C
        // program on x86_64).
        assert_eq!(KVM_GET_CLOCK, 0x8030_ae7c);
        assert_eq!(KVM_SET_CLOCK, 0x4030_ae7b);
        assert_eq!(KVM_SET_IRQCHIP, 0x8208_ae63);
        assert_eq!(
            VCPU_WAKE_IOCTLS,
            [
                0x4090_ae82,
                0x8138_ae83,
                0x4138_ae84,
                0x41a0_ae8d,
                0x8400_ae8e,
                0x4400_ae8f,
                0x4004_ae99,
                0x4040_aea0
            ]
        );
        assert_eq!(
            VCPU_SNAPSHOT_IOCTLS,
            [
                0x8090_ae81,
                0x8138_ae83,
                0x81a0_ae8c,
                0xc008_ae88,
                0xc008_ae91,
                0x8400_ae8e,
                0x8004_ae98,
                0x8040_ae9f,
                0x8080_aea1,
                0x9000_aea4,
                0x8188_aea6,
                0xaea3
            ]
        );
        assert_eq!(
            MAIN_SNAPSHOT_IOCTLS,
            [0xc208_ae62, 0x8070_ae9f, 0x4010_ae42]
        );
        assert!(!main.contains_key(&libc::SYS_execve));
        let device = rules_for(ThreadRole::Device).unwrap();
        assert_eq!(
            device[&libc::SYS_ioctl].len(),
            1,
            "device thread: TUNSETOFFLOAD only"
        );
    }

    #[test]
    fn test_debugged_vcpu_adds_exactly_guest_debug() {
        // The value from <linux/kvm.h> on x86_64.
        assert_eq!(GDB_VCPU_IOCTLS, [0x4048_ae9b]);
        let vcpu = rules_for(ThreadRole::Vcpu).unwrap();
        let debugged = rules_for(ThreadRole::VcpuDebugged).unwrap();
        assert_eq!(
            debugged[&libc::SYS_ioctl].len(),
            vcpu[&libc::SYS_ioctl].len() + GDB_VCPU_IOCTLS.len()
        );
        let mut others = debugged.clone();
        others.remove(&libc::SYS_ioctl);
        let mut plain = vcpu.clone();
        plain.remove(&libc::SYS_ioctl);
        assert_eq!(
            others.keys().collect::<Vec<_>>(),
            plain.keys().collect::<Vec<_>>(),
            "no system call but the ioctl is added"
        );
        // KVM_GET_REGS, _SREGS, _FPU, KVM_SET_REGS and _FPU (what gdb reads
        // and writes) are there already.
        for read in [0x8090_ae81, 0x8138_ae83, 0x81a0_ae8c] {
            assert!(VCPU_SNAPSHOT_IOCTLS.contains(&read), "{read:#x}");
        }
        assert!(FALLBACK_IOCTLS.contains(&0x4090_ae82));
        assert!(VCPU_WAKE_IOCTLS.contains(&0x41a0_ae8d));
    }

    #[test]
    fn test_gdb_thread_has_a_socket_and_no_ioctl() {
        let gdb = rules_for(ThreadRole::Gdb).unwrap();
        for needed in [
            libc::SYS_accept4,
            libc::SYS_poll,
            libc::SYS_read,
            libc::SYS_write,
        ] {
            assert!(gdb.contains_key(&needed), "gdb list lacks {needed}");
        }
        for forbidden in [
            libc::SYS_ioctl,
            libc::SYS_openat,
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_execve,
            libc::SYS_tgkill,
            libc::SYS_unlink,
        ] {
            assert!(!gdb.contains_key(&forbidden), "gdb list allows {forbidden}");
        }
    }

    #[test]
    fn test_api_thread_serves_sockets_but_opens_nothing() {
        let api = rules_for(ThreadRole::Api).unwrap();
        for needed in [
            libc::SYS_accept4,
            libc::SYS_recvfrom,
            libc::SYS_sendto,
            libc::SYS_poll,
            libc::SYS_futex,
            libc::SYS_close,
        ] {
            assert!(api.contains_key(&needed), "API list lacks {needed}");
        }
        for forbidden in [
            libc::SYS_openat,
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_execve,
            libc::SYS_clone3,
            libc::SYS_ioctl,
            libc::SYS_unlink,
        ] {
            assert!(!api.contains_key(&forbidden), "API list allows {forbidden}");
        }
        assert_eq!(api[&libc::SYS_setsockopt].len(), 1, "SO_SNDTIMEO only");
    }

    #[test]
    fn test_api_filter_blocks_opening_files() {
        // An API thread that tries to open a file is killed by SIGSYS.
        let status = confined_child_status(ThreadRole::Api, || {
            // SAFETY: a raw openat(2) call in the forked child.
            unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, c"/".as_ptr(), 0) };
            0
        });
        assert!(libc::WIFSIGNALED(status), "child status {status:#x}");
        assert_eq!(libc::WTERMSIG(status), libc::SIGSYS);
    }

    /// Runs `body` in a forked child confined to `role` (so the test runner
    /// itself stays unconfined), SIGSYS at its default so a blocked call
    /// kills the child; returns the child's wait status. `body` returns the
    /// exit code for "got through"; 3 means confinement failed.
    fn confined_child_status(role: ThreadRole, body: impl FnOnce() -> i32) -> i32 {
        // SAFETY: fork in a test; the child only makes raw syscalls and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = match confine_current_thread(role) {
                Ok(()) => {
                    // SAFETY: plain libc call in the forked child.
                    unsafe { libc::signal(libc::SIGSYS, libc::SIG_DFL) };
                    body()
                }
                Err(_) => 3,
            };
            // SAFETY: leaving the forked child without running destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        status
    }

    #[test]
    fn test_device_thread_may_open_unix_sockets_only() {
        // SAFETY: raw socket(2) calls in the forked child.
        let status = confined_child_status(ThreadRole::Device, || unsafe {
            let unix = libc::syscall(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_STREAM, 0);
            if unix < 0 {
                4
            } else {
                libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0);
                0
            }
        });
        assert!(
            libc::WIFSIGNALED(status),
            "AF_INET allowed, or AF_UNIX refused: status {status:#x}"
        );
        assert_eq!(libc::WTERMSIG(status), libc::SIGSYS);
    }

    #[test]
    fn test_device_thread_allows_what_virtio_blk_calls_and_no_more_disk_calls() {
        let device = rules_for(ThreadRole::Device).unwrap();
        for nr in BLOCK_SYSCALLS {
            assert!(device.contains_key(nr), "device list lacks {nr}");
        }
        // The disk is read and written with preadv/pwritev, made durable
        // with fdatasync; the single-buffer and full-sync variants stay out.
        for nr in [libc::SYS_pread64, libc::SYS_pwrite64, libc::SYS_fsync] {
            assert!(!device.contains_key(&nr), "device list allows {nr}");
        }
        // Opening and locking images happens before the thread is confined.
        for nr in [libc::SYS_openat, libc::SYS_flock, libc::SYS_ftruncate] {
            assert!(!device.contains_key(&nr), "device list allows {nr}");
        }
        let vcpu = rules_for(ThreadRole::Vcpu).unwrap();
        for nr in [libc::SYS_preadv, libc::SYS_pwritev, libc::SYS_fdatasync] {
            assert!(!vcpu.contains_key(&nr), "vCPU list allows {nr}");
        }
    }

    #[test]
    fn test_confined_thread_is_blocked() {
        let status = confined_child_status(ThreadRole::Vcpu, || {
            // SAFETY: a raw socket(2) call in the forked child.
            unsafe { libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0) };
            0
        });
        assert!(libc::WIFSIGNALED(status), "child status {status:#x}");
        assert_eq!(libc::WTERMSIG(status), libc::SIGSYS);
    }

    #[test]
    fn test_device_thread_may_set_tap_offloads_and_nothing_else() {
        // SAFETY: ioctls on fd -1 in the forked child: every allowed one
        // fails with EBADF.
        let status = confined_child_status(ThreadRole::Device, || unsafe {
            let rc = libc::ioctl(-1, libc::TUNSETOFFLOAD, 0);
            if rc != -1 || *libc::__errno_location() != libc::EBADF {
                return 4;
            }
            libc::ioctl(-1, libc::TUNSETIFF, 0);
            0
        });
        assert!(
            libc::WIFSIGNALED(status),
            "TUNSETIFF must be blocked; child status {status:#x}"
        );
        assert_eq!(libc::WTERMSIG(status), libc::SIGSYS);
    }
}
