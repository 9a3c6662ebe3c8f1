//! SIGINT and SIGTERM: the first asks the running VM to stop cleanly (the
//! watchdog kicks and joins every vCPU and reports
//! [`crate::VmOutcome::Interrupted`]); a second one forces the process out
//! at once with status 128 + signal, for a VMM that does not stop.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use libc::{c_int, c_void, siginfo_t};
use vmm_sys_util::signal::register_signal_handler;

static PENDING: AtomicI32 = AtomicI32::new(0);
static RECEIVED: AtomicU32 = AtomicU32::new(0);

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
    // Only async-signal-safe operations: atomics and _exit.
    if RECEIVED.fetch_add(1, Ordering::SeqCst) >= 1 {
        crate::terminal::restore_terminal();
        // SAFETY: _exit is async-signal-safe and ends the process at once.
        unsafe { libc::_exit(128 + signal) };
    }
    PENDING.store(signal, Ordering::SeqCst);
}

/// Installs the SIGINT/SIGTERM handlers for this process.
pub fn install_stop_signal_handlers() -> Result<(), SignalError> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        register_signal_handler(signal, on_stop_signal)
            .map_err(|source| SignalError { signal, source })?;
    }
    Ok(())
}

/// The stop signal received, if any (0 = none).
pub fn pending_stop_signal() -> Option<c_int> {
    match PENDING.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}
