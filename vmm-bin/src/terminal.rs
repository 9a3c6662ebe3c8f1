//! Raw mode for a terminal on stdin while the guest owns the console, and
//! restoring it on every way out: normal return (guard drop), panic (call
//! [`restore_terminal`] from a panic hook), and the forced exit of a second
//! Ctrl-C (the signal handler calls it; tcsetattr is async-signal-safe).
//!
//! "Raw" here keeps ISIG, so Ctrl-C and Ctrl-\ still reach the VMM and stop
//! the VM cleanly; everything else (line editing, echo, CR/NL translation)
//! is the guest's business.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static SAVED: OnceLock<libc::termios> = OnceLock::new();
static RAW: AtomicBool = AtomicBool::new(false);

/// Errors switching the terminal mode.
#[derive(Debug, thiserror::Error)]
#[error("cannot put the terminal on stdin in raw mode: {0}")]
pub struct TerminalError(std::io::Error);

/// While alive, stdin's terminal is in raw mode.
#[derive(Debug)]
pub struct RawTerminal(());

impl RawTerminal {
    /// Switches stdin to raw mode if it is a terminal (`None` otherwise).
    pub fn enable() -> Result<Option<RawTerminal>, TerminalError> {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
            return Ok(None);
        }
        // SAFETY: an all-zero termios is a valid value to be filled in.
        let mut original: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `original` is a valid, writable termios.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut original) } != 0 {
            return Err(TerminalError(std::io::Error::last_os_error()));
        }
        let saved = *SAVED.get_or_init(|| original);
        let mut raw = saved;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ECHONL | libc::IEXTEN);
        raw.c_iflag &= !(libc::IXON | libc::ICRNL | libc::INLCR | libc::IGNCR | libc::ISTRIP);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: `raw` is a valid termios derived from the current one.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } != 0 {
            return Err(TerminalError(std::io::Error::last_os_error()));
        }
        RAW.store(true, Ordering::SeqCst);
        Ok(Some(RawTerminal(())))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Puts the terminal back as it was, if raw mode is on. Idempotent and
/// async-signal-safe (an atomic swap and tcsetattr).
pub fn restore_terminal() {
    if RAW.swap(false, Ordering::SeqCst) {
        if let Some(saved) = SAVED.get() {
            // SAFETY: `saved` is the termios read from this terminal.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
        }
    }
}
