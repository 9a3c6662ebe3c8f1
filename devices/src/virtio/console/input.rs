//! The host-to-guest side of a virtio console: a bounded byte queue shared
//! by the VMM thread that reads host input (stdin) and the device thread
//! that copies it into the guest's receive buffers.
//!
//! The VMM holds a [`ConsoleInput`] handle and calls
//! [`ConsoleInput::push`]; the device, inside its transport's mutex, takes
//! the bytes. The two meet only here:
//! - `push` takes what fits (at most [`INPUT_QUEUE_MAX`] bytes queued) and
//!   returns how much it took, so the VMM stops reading its input when the
//!   queue is full and the kernel's pipe or tty buffer holds the rest (flow
//!   control, as for the UART in `vmm-core`'s `host_input`, which feeds both).
//! - Bytes pushed while the device is live make the *pending* eventfd
//!   readable. It is the device's one host descriptor
//!   (`VirtioDevice::host_fds`): the device thread watches it and calls
//!   `MmioTransport::process_host_fd`, and the device delivers.
//! - When a delivery empties the queue the device writes the *drained*
//!   eventfd the VMM passed in (like `Uart8250::with_rx_drained`), so the
//!   VMM resumes reading without polling.
//!
//! Lock order: the device thread holds the transport's mutex and then takes
//! this queue's; the VMM side takes only this queue's (never the
//! transport's while holding it), so the two cannot deadlock.
//!
//! The pending eventfd is written only while the device is live (between
//! activation and reset), and reset consumes a pending count, so a device
//! thread that watches it level-triggered never spins on an event the
//! transport will not pass to an inactive device.

use std::collections::VecDeque;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use crate::lock;

/// The most host bytes queued for the guest.
pub const INPUT_QUEUE_MAX: usize = 64 << 10;

/// A handle on a virtio console's input queue. Clones share the queue.
#[derive(Clone)]
pub struct ConsoleInput {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Written when bytes are pushed to a live device.
    pending: EventFd,
    /// Written when a delivery empties the queue.
    drained: Option<EventFd>,
}

/// The queue and whether the device is live, under one lock so `push` and
/// reset agree on whether `pending` may be written.
pub(super) struct State {
    pub(super) bytes: VecDeque<u8>,
    live: bool,
}

impl std::fmt::Debug for ConsoleInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleInput")
            .field("queued", &self.queued())
            .finish()
    }
}

impl ConsoleInput {
    pub(super) fn new(drained: Option<EventFd>) -> std::io::Result<Self> {
        Ok(ConsoleInput {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    bytes: VecDeque::new(),
                    live: false,
                }),
                pending: EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?,
                drained,
            }),
        })
    }

    /// Queues host bytes for the guest, as many as fit; returns how many
    /// were taken (the rest stay with the caller, who should stop reading
    /// its input until the drained eventfd fires).
    pub fn push(&self, bytes: &[u8]) -> usize {
        let mut s = lock(&self.shared.state);
        let n = bytes
            .len()
            .min(INPUT_QUEUE_MAX.saturating_sub(s.bytes.len()));
        if let Some(taken) = bytes.get(..n).filter(|t| !t.is_empty()) {
            s.bytes.extend(taken);
            if s.live {
                self.signal_pending();
            }
        }
        n
    }

    /// Bytes queued and not yet in guest buffers.
    pub fn queued(&self) -> usize {
        lock(&self.shared.state).bytes.len()
    }

    /// Free room in the queue: what the next [`Self::push`] would take.
    pub fn room(&self) -> usize {
        INPUT_QUEUE_MAX.saturating_sub(self.queued())
    }

    /// The pending eventfd's descriptor (the device's host fd).
    pub(super) fn pending_fd(&self) -> RawFd {
        self.shared.pending.as_raw_fd()
    }

    /// Consumes the pending count (the device is about to deliver).
    pub(super) fn clear_pending(&self) {
        // EAGAIN: nothing was pending.
        let _ = self.shared.pending.read();
    }

    fn signal_pending(&self) {
        // A non-blocking eventfd whose counter is full already has an
        // event pending.
        let _ = self.shared.pending.write(1);
    }

    /// The queue, for the device to deliver from.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }

    /// The device went live (DRIVER_OK): queued bytes are announced, in
    /// case the driver posted receive buffers without a notify.
    pub(super) fn go_live(&self) {
        let mut s = lock(&self.shared.state);
        s.live = true;
        if !s.bytes.is_empty() {
            self.signal_pending();
        }
    }

    /// The device stopped (reset, or it needs one): no more pending events
    /// until it is live again. Queued bytes are kept.
    pub(super) fn stop(&self) {
        // The pending count is left for the device thread to consume:
        // this runs on a vCPU thread (a status write), which may not read(2).
        lock(&self.shared.state).live = false;
    }

    /// The pending count, consumed (`None`: nothing pending).
    #[cfg(test)]
    pub(super) fn take_pending(&self) -> Option<u64> {
        self.shared.pending.read().ok()
    }

    /// Tells the VMM the queue emptied.
    pub(super) fn notify_drained(&self) {
        if let Some(e) = &self.shared.drained {
            let _ = e.write(1);
        }
    }
}
