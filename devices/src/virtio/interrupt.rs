//! The interrupt side of a virtio-mmio device: the InterruptStatus
//! register's bits and the line that tells the guest to look at them.

use std::sync::atomic::{AtomicU32, Ordering};

use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};
use vm_superio::Trigger;

use crate::IrqLine;

/// InterruptStatus plus the device's interrupt line. Shared by the
/// transport (which reads and acknowledges the bits on vCPU threads) and the
/// device work (which sets them).
#[derive(Debug)]
pub struct VirtioInterrupt {
    status: AtomicU32,
    line: IrqLine,
}

impl VirtioInterrupt {
    /// An interrupt raising `line`.
    pub fn new(line: IrqLine) -> Self {
        VirtioInterrupt {
            status: AtomicU32::new(0),
            line,
        }
    }

    /// The line (for a VMM that registers its eventfd as an irqfd).
    pub fn line(&self) -> &IrqLine {
        &self.line
    }

    /// "Used buffer notification": a queue has new used buffers.
    pub fn signal_used_queue(&self) {
        self.raise(VIRTIO_MMIO_INT_VRING);
    }

    /// "Configuration change notification" (also how NEEDS_RESET is
    /// announced).
    pub fn signal_config_change(&self) {
        self.raise(VIRTIO_MMIO_INT_CONFIG);
    }

    fn raise(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::SeqCst);
        if let Err(e) = self.line.trigger() {
            log::warn!("virtio: raising the interrupt failed: {e}");
        }
    }

    /// InterruptStatus.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// InterruptACK: clears the bits in `bits`.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Sets InterruptStatus to a saved value without raising the line
    /// (the interrupt controller's saved state holds what was raised).
    pub fn restore_status(&self, bits: u32) {
        self.status.store(bits, Ordering::SeqCst);
    }

    /// Device reset: no interrupt pending.
    pub fn clear(&self) {
        self.status.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_interrupt_bits_set_ack_and_trigger() {
        let i = VirtioInterrupt::new(IrqLine::eventfd().unwrap());
        i.signal_used_queue();
        i.signal_config_change();
        assert_eq!(i.status(), 3);
        assert_eq!(i.line().as_eventfd().unwrap().read().unwrap(), 2);
        i.ack(1);
        assert_eq!(i.status(), 2);
        i.clear();
        assert_eq!(i.status(), 0);
    }
}
