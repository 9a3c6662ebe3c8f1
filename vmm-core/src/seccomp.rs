//! Seccomp filters, one per kind of VMM thread, installed before any guest
//! code runs. A system call outside a thread's list raises SIGSYS; the
//! handler here reports the call's number and ends the process with status
//! 128 + SIGSYS (159), so a violation is never a silent failure.
//!
//! The lists were taken from strace of every feature the VMM has (console to
//! stdout/file, tracing, metrics files, kicks, teardown) and are kept as
//! short as that allows. `ioctl` is limited to KVM_RUN on vCPU threads.

use std::collections::BTreeMap;

use libc::{c_int, c_void, siginfo_t};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use vmm_sys_util::signal::register_signal_handler;

/// KVM_RUN = _IO(KVMIO, 0x80).
const KVM_RUN: u64 = 0xae80;
/// KVM_GET_REGS = _IOR(KVMIO, 0x81, struct kvm_regs).
const KVM_GET_REGS: u64 =
    (2 << 30) | ((std::mem::size_of::<kvm_bindings::kvm_regs>() as u64) << 16) | 0xae81;
/// Size of `struct kvm_clock_data`, in the two clock ioctls' numbers.
const CLOCK_DATA_LEN: u64 = std::mem::size_of::<kvm_bindings::kvm_clock_data>() as u64;
/// KVM_GET_CLOCK = _IOR(KVMIO, 0x7c, struct kvm_clock_data).
const KVM_GET_CLOCK: u64 = (2 << 30) | (CLOCK_DATA_LEN << 16) | 0xae7c;
/// KVM_SET_CLOCK = _IOW(KVMIO, 0x7b, struct kvm_clock_data).
const KVM_SET_CLOCK: u64 = (1 << 30) | (CLOCK_DATA_LEN << 16) | 0xae7b;

/// Exit status after a seccomp violation: 128 + SIGSYS.
pub const SECCOMP_VIOLATION_STATUS: i32 = 128 + libc::SIGSYS;

/// Which thread a filter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadRole {
    /// A vCPU thread: KVM_RUN, device emulation, console output.
    Vcpu,
    /// A vCPU thread under `--explain`: also KVM_GET_REGS, for the final
    /// register state it shows.
    VcpuExplained,
    /// The thread that runs the watchdog, signals and teardown.
    Main,
    /// The virtio device thread: its event loop, disk I/O, entropy, host
    /// sockets.
    Device,
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
/// reading console input), writing metrics files (create, write, rename).
const MAIN_ONLY: &[i64] = &[
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
];

/// What the virtio device thread adds: its event loop, positioned disk I/O
/// and durability, discard/write-zeroes, entropy, Unix-socket traffic for
/// vsock (connecting to and accepting from the host side).
const DEVICE_ONLY: &[i64] = &[
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_fdatasync,
    libc::SYS_fsync,
    libc::SYS_fallocate,
    libc::SYS_getrandom,
    libc::SYS_lseek,
    libc::SYS_fstat,
    libc::SYS_socket,
    libc::SYS_connect,
    libc::SYS_accept4,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_shutdown,
];

fn rules_for(
    role: ThreadRole,
) -> Result<BTreeMap<i64, Vec<SeccompRule>>, seccompiler::BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = COMMON.iter().map(|s| (*s, vec![])).collect();
    match role {
        ThreadRole::Vcpu | ThreadRole::VcpuExplained => {
            let mut ioctls = vec![KVM_RUN];
            if role == ThreadRole::VcpuExplained {
                ioctls.push(KVM_GET_REGS);
            }
            let allowed = ioctls
                .into_iter()
                .map(|req| {
                    SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, req)
                        .and_then(|c| SeccompRule::new(vec![c]))
                })
                .collect::<Result<Vec<_>, _>>()?;
            rules.insert(libc::SYS_ioctl, allowed);
        }
        ThreadRole::Main => {
            rules.extend(MAIN_ONLY.iter().map(|s| (*s, vec![])));
            // Restoring the terminal from raw mode at the end (and reading
            // its mode): TCGETS and TCSETS; saving and restoring the guest
            // clock around a pause: KVM_GET_CLOCK and KVM_SET_CLOCK.
            let allowed = [libc::TCGETS, libc::TCSETS, KVM_GET_CLOCK, KVM_SET_CLOCK]
                .into_iter()
                .map(|req| {
                    SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, req)
                        .and_then(|c| SeccompRule::new(vec![c]))
                })
                .collect::<Result<Vec<_>, _>>()?;
            rules.insert(libc::SYS_ioctl, allowed);
        }
        ThreadRole::Device => {
            rules.extend(DEVICE_ONLY.iter().map(|s| (*s, vec![])));
        }
    }
    Ok(rules)
}

/// The compiled filter for `role`.
pub fn filter_for(role: ThreadRole) -> Result<BpfProgram, SeccompError> {
    let build = || -> Result<BpfProgram, seccompiler::BackendError> {
        let filter = SeccompFilter::new(
            rules_for(role)?,
            SeccompAction::Trap,
            SeccompAction::Allow,
            TargetArch::x86_64,
        )?;
        filter.try_into()
    };
    build().map_err(|source| SeccompError::Build { role, source })
}

/// Confines the calling thread to `role`'s list (for good: seccomp filters
/// cannot be removed).
pub fn confine_current_thread(role: ThreadRole) -> Result<(), SeccompError> {
    let program = filter_for(role)?;
    seccompiler::apply_filter(&program).map_err(|source| SeccompError::Apply { role, source })
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
    fn test_filters_compile_for_every_role() {
        for role in [
            ThreadRole::Vcpu,
            ThreadRole::VcpuExplained,
            ThreadRole::Main,
            ThreadRole::Device,
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
            4,
            "main thread: the terminal ioctls (TCGETS, TCSETS) and the clock ones only"
        );
        assert_eq!(vcpu[&libc::SYS_ioctl].len(), 1, "vCPU: KVM_RUN only");
        let explained = rules_for(ThreadRole::VcpuExplained).unwrap();
        assert_eq!(
            explained[&libc::SYS_ioctl].len(),
            2,
            "KVM_RUN, KVM_GET_REGS"
        );
        // The numbers the kernel headers give.
        assert_eq!(KVM_GET_REGS, 0x8090_ae81);
        assert_eq!(KVM_GET_CLOCK, 0x8030_ae7c);
        assert_eq!(KVM_SET_CLOCK, 0x4030_ae7b);
        assert!(!main.contains_key(&libc::SYS_execve));
    }

    #[test]
    fn test_confined_thread_is_blocked() {
        // In a child process, so the test runner itself is not confined.
        // SAFETY: fork in a test; the child only makes raw syscalls and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = match confine_current_thread(ThreadRole::Vcpu) {
                Ok(()) => {
                    // Reset SIGSYS to its default so the blocked call kills us.
                    // SAFETY: plain libc calls in the forked child.
                    unsafe {
                        libc::signal(libc::SIGSYS, libc::SIG_DFL);
                        libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0);
                    }
                    0
                }
                Err(_) => 3,
            };
            // SAFETY: leaving the forked child without running destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFSIGNALED(status), "child status {status:#x}");
        assert_eq!(libc::WTERMSIG(status), libc::SIGSYS);
    }
}
