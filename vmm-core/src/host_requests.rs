//! What a control plane asks of a running VM besides stopping it, served
//! by the VM's own pieces: key presses go to the i8042 the VM built, and a
//! metrics flush is written by the run loop (the only place that can read
//! every vCPU's counters), which wakes for it through the VM's eventfd.
//! [`crate::VmHandle::send_ctrl_alt_del`] and
//! [`crate::VmHandle::flush_metrics`] are the public side.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use vmm_devices::legacy::I8042;
use vmm_devices::IrqLine;

use crate::lock;

/// Ctrl, Alt, Delete pressed, in scancode set 2 (the keyboard's own set:
/// the 8042 translates to set 1 if the guest asked): left Ctrl 0x14, left
/// Alt 0x11, Delete E0 71. Only the make codes, as Firecracker sends.
pub const CTRL_ALT_DEL: [u8; 4] = [0x14, 0x11, 0xe0, 0x71];

/// Flush requests asked for and served, as counters: a waiter holds the
/// count it asked at and is released once `done` reaches it.
#[derive(Debug, Default)]
struct FlushCount {
    asked: u64,
    done: u64,
}

/// The shared slots (one per VM, in its [`crate::control::VmControl`]).
#[derive(Debug, Default)]
pub struct HostRequests {
    keyboard: Mutex<Option<Arc<I8042<IrqLine>>>>,
    flush: Mutex<FlushCount>,
    flushed: Condvar,
}

impl HostRequests {
    /// The keyboard controller of the devices just attached (`None` on the
    /// minimal platform).
    pub(crate) fn set_keyboard(&self, keyboard: Option<Arc<I8042<IrqLine>>>) {
        *lock(&self.keyboard) = keyboard;
    }

    /// The attached keyboard controller.
    pub(crate) fn keyboard(&self) -> Option<Arc<I8042<IrqLine>>> {
        lock(&self.keyboard).clone()
    }

    /// Records a flush request; returns the ticket to wait for.
    pub(crate) fn ask_flush(&self) -> u64 {
        let mut c = lock(&self.flush);
        c.asked += 1;
        c.asked
    }

    /// Whether a flush was asked for and not served yet.
    pub(crate) fn flush_pending(&self) -> bool {
        let c = lock(&self.flush);
        c.asked > c.done
    }

    /// Marks every request so far served (a report was written, or the run
    /// ended) and releases the waiters.
    pub(crate) fn flush_served(&self) {
        let mut c = lock(&self.flush);
        c.done = c.asked;
        self.flushed.notify_all();
    }

    /// Waits until `ticket` is served; false after `timeout`.
    pub(crate) fn wait_flushed(&self, ticket: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut c = lock(&self.flush);
        while c.done < ticket {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            c = match self.flushed.wait_timeout(c, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_flush_tickets_are_served_in_bulk() {
        let h = Arc::new(HostRequests::default());
        assert!(!h.flush_pending());
        let t1 = h.ask_flush();
        let t2 = h.ask_flush();
        assert!(h.flush_pending());
        assert!(!h.wait_flushed(t1, Duration::from_millis(10)));
        let server = {
            let h = h.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                h.flush_served();
            })
        };
        assert!(h.wait_flushed(t2, Duration::from_secs(10)));
        assert!(h.wait_flushed(t1, Duration::ZERO));
        assert!(!h.flush_pending());
        server.join().unwrap();
    }
}
