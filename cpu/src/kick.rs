//! Kicking a vCPU thread out of KVM_RUN at any moment, even while the guest
//! spins without exits.
//!
//! The kick is a real-time signal whose handler sets `immediate_exit` in the
//! kvm_run area of the vCPU running on that thread. The signal interrupts a
//! KVM_RUN in progress (EINTR); `immediate_exit` closes the race where the
//! signal lands just before the next KVM_RUN, which then returns EINTR at
//! once. Firecracker and Cloud Hypervisor use the same pair.

use std::cell::Cell;
use std::sync::Once;

use libc::{c_int, c_void, siginfo_t};
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

thread_local! {
    // Const-initialised with no destructor, so reading it from a signal
    // handler never allocates or registers anything.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

/// Errors installing the kick handler.
#[derive(Debug, thiserror::Error)]
pub enum KickError {
    /// sigaction failed.
    #[error("installing the vCPU kick signal handler (signal {signal}) failed: {source}")]
    Register {
        /// Signal number.
        signal: c_int,
        /// The error.
        source: vmm_sys_util::errno::Error,
    },
}

/// The signal used to kick vCPU threads (`SIGRTMIN`).
pub fn kick_signal() -> c_int {
    SIGRTMIN()
}

extern "C" fn handle_kick(_: c_int, _: *mut siginfo_t, _: *mut c_void) {
    let _ = IMMEDIATE_EXIT.try_with(|p| {
        let p = p.get();
        if !p.is_null() {
            // SAFETY: a non-null pointer is only stored by `KickTarget` while
            // the vCPU it points into is alive and owned by this thread; the
            // byte is `kvm_run.immediate_exit`, which KVM reads at KVM_RUN.
            unsafe { std::ptr::write_volatile(p, 1) };
        }
    });
}

/// Installs the process-wide kick handler. Idempotent; call before starting
/// vCPU threads.
pub fn install_kick_handler() -> Result<(), KickError> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        let signal = kick_signal();
        result = register_signal_handler(signal, handle_kick)
            .map_err(|source| KickError::Register { signal, source });
    });
    result
}

/// While alive, routes kicks on this thread to one vCPU's `immediate_exit`.
pub(crate) struct KickTarget;

impl KickTarget {
    /// # Safety
    ///
    /// `immediate_exit` must point into a kvm_run mapping that stays mapped
    /// until the returned guard is dropped, on this thread.
    pub(crate) unsafe fn install(immediate_exit: *mut u8) -> Self {
        IMMEDIATE_EXIT.with(|p| p.set(immediate_exit));
        KickTarget
    }
}

impl Drop for KickTarget {
    fn drop(&mut self) {
        IMMEDIATE_EXIT.with(|p| p.set(std::ptr::null_mut()));
    }
}
