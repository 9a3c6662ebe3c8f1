//! SIGINT and SIGTERM for the front end: the first one stops the VM through
//! its [`VmHandle`] (every vCPU is kicked at once and joined; the run ends
//! with [`vmm_core::VmOutcome::Stopped`], reported as status 128 + signal);
//! a second one restores the terminal and ends the process at once, for a
//! VMM that does not stop. A signal that arrives before the VM exists is
//! remembered and ends the process as soon as start-up returns.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::OnceLock;

use libc::{c_int, c_void, siginfo_t};
use vmm_core::VmHandle;
use vmm_sys_util::signal::register_signal_handler;

static HANDLE: OnceLock<VmHandle> = OnceLock::new();
static RECEIVED: AtomicU32 = AtomicU32::new(0);
static FIRST: AtomicI32 = AtomicI32::new(0);

/// Errors installing the handlers.
#[derive(Debug, thiserror::Error)]
#[error("installing the handler for signal {signal} failed: {source}")]
pub struct SignalError {
    /// The signal.
    pub signal: c_int,
    /// The error.
    pub source: vmm_sys_util::errno::Error,
}

extern "C" fn on_stop_signal(signal: c_int, _: *mut siginfo_t, _: *mut c_void) {
    // Only async-signal-safe operations: atomics, VmHandle::stop (atomics
    // and write(2)), tcsetattr and _exit.
    if RECEIVED.fetch_add(1, Ordering::SeqCst) >= 1 {
        crate::terminal::restore_terminal();
        // SAFETY: _exit is async-signal-safe and ends the process at once.
        unsafe { libc::_exit(128 + signal) };
    }
    FIRST.store(signal, Ordering::SeqCst);
    if let Some(handle) = HANDLE.get() {
        handle.stop();
    }
}

/// Installs the SIGINT/SIGTERM handlers for this process.
pub fn install_stop_signal_handlers() -> Result<(), SignalError> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        register_signal_handler(signal, on_stop_signal)
            .map_err(|source| SignalError { signal, source })?;
    }
    Ok(())
}

/// Points the handlers at the VM about to run. A signal received before
/// this call is returned (the caller should not start the VM).
pub fn stop_on_signal(handle: VmHandle) -> Option<c_int> {
    let _ = HANDLE.set(handle);
    stop_signal()
}

/// The first stop signal received, if any.
pub fn stop_signal() -> Option<c_int> {
    match FIRST.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The signal's name for messages.
pub fn signal_name(signal: c_int) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}
