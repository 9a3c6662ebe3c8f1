//! SIGINT and SIGTERM for the front end: the first one stops the VM through
//! its [`VmHandle`] (every vCPU is kicked at once and joined; the run ends
//! with [`vmm_core::VmOutcome::Stopped`], reported as status 128 + signal);
//! a second one restores the terminal and ends the process at once, for a
//! VMM that does not stop (removing the files [`remove_at_forced_exit`]
//! names, such as the vsock socket, which the orderly way out removes when
//! the device is dropped). A signal that arrives before the VM exists is
//! remembered and ends the process as soon as start-up returns.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::OnceLock;

use libc::{c_int, c_void, siginfo_t};
use vmm_core::VmHandle;
use vmm_sys_util::signal::register_signal_handler;

static HANDLE: OnceLock<VmHandle> = OnceLock::new();
static RECEIVED: AtomicU32 = AtomicU32::new(0);
static FIRST: AtomicI32 = AtomicI32::new(0);
static FORCED_EXIT_REMOVES: OnceLock<Vec<CString>> = OnceLock::new();

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
        remove_files_now();
        // SAFETY: _exit is async-signal-safe and ends the process at once.
        unsafe { libc::_exit(128 + signal) };
    }
    FIRST.store(signal, Ordering::SeqCst);
    if let Some(handle) = HANDLE.get() {
        handle.stop();
    }
}

/// The forced exit's clean-up: unlinks the files named to
/// [`remove_at_forced_exit`]. Only on the main thread, the one a signal
/// sent to the process goes to unless it is busy with another: the vCPU
/// and device threads' seccomp lists have no unlink(2), and a call there
/// would end the process with the seccomp status instead.
fn remove_files_now() {
    // SAFETY: getpid and gettid take no arguments and are async-signal-safe.
    let main_thread = unsafe { libc::gettid() == libc::getpid() };
    if !main_thread {
        return;
    }
    for path in FORCED_EXIT_REMOVES.get().map_or(&[][..], |v| v.as_slice()) {
        // SAFETY: unlink is async-signal-safe; `path` is a NUL-terminated
        // string that lives for the rest of the process (a static).
        unsafe { libc::unlink(path.as_ptr()) };
    }
}

/// Names files (the vsock socket) that a forced exit (a second signal)
/// removes before it ends the process; the first call wins. Call it once
/// the files exist and are this process's.
pub fn remove_at_forced_exit(paths: &[PathBuf]) {
    let c: Vec<CString> = paths
        .iter()
        .filter_map(|p| CString::new(p.as_os_str().as_bytes()).ok())
        .collect();
    let _ = FORCED_EXIT_REMOVES.set(c);
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
