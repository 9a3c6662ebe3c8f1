//! A transport as the MMIO bus sees it, shared with the device thread.
//!
//! Every register access locks the transport, except the two an interrupt
//! handler makes: InterruptStatus reads and InterruptACK writes go straight
//! to the shared [`VirtioInterrupt`] atomics. The device thread holds the
//! transport's lock for a whole turn of request work (a quarter of a MiB
//! of disk reads, say); a guest handling the interrupt of a previous turn
//! would otherwise wait for that turn to end before it could read which
//! interrupt it got, and the device's work and the guest's could never
//! overlap.

use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INTERRUPT_STATUS};
use vm_device::bus::{MmioAddress, MmioAddressOffset};
use vm_device::DeviceMmio;

use super::interrupt::VirtioInterrupt;
use super::mmio::MmioTransport;

/// The bus side of a shared [`MmioTransport`] (register this instead of
/// the `Mutex` itself).
#[derive(Debug)]
pub struct MmioWindow {
    transport: Arc<Mutex<MmioTransport>>,
    interrupt: Arc<VirtioInterrupt>,
}

impl MmioWindow {
    /// The window of `transport`.
    pub fn new(transport: Arc<Mutex<MmioTransport>>) -> Self {
        let interrupt = crate::lock(&transport).interrupt().clone();
        MmioWindow {
            transport,
            interrupt,
        }
    }
}

impl DeviceMmio for MmioWindow {
    fn mmio_read(&self, _base: MmioAddress, offset: MmioAddressOffset, data: &mut [u8]) {
        // The transport's own rule for registers: 32 bits, aligned.
        if offset == u64::from(VIRTIO_MMIO_INTERRUPT_STATUS) && data.len() == 4 {
            data.copy_from_slice(&self.interrupt.status().to_le_bytes());
            return;
        }
        crate::lock(&self.transport).read(offset, data);
    }

    fn mmio_write(&self, _base: MmioAddress, offset: MmioAddressOffset, data: &[u8]) {
        if offset == u64::from(VIRTIO_MMIO_INTERRUPT_ACK) {
            if let Ok(bytes) = <[u8; 4]>::try_from(data) {
                self.interrupt.ack(u32::from_le_bytes(bytes));
                return;
            }
        }
        crate::lock(&self.transport).write(offset, data);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INT_VRING, VIRTIO_MMIO_MAGIC_VALUE};

    use super::*;
    use crate::virtio::mmio::MMIO_MAGIC_VALUE;
    use crate::virtio::testing::memory;
    use crate::virtio::VirtioRng;
    use crate::IrqLine;

    fn window() -> (Arc<Mutex<MmioTransport>>, Arc<MmioWindow>) {
        let rng = Box::new(VirtioRng::new());
        let t = MmioTransport::new(rng, memory(), IrqLine::None).unwrap();
        let t = Arc::new(Mutex::new(t));
        let w = Arc::new(MmioWindow::new(t.clone()));
        (t, w)
    }

    fn read32(w: &MmioWindow, offset: u32) -> u32 {
        let mut b = [0u8; 4];
        w.mmio_read(MmioAddress(0), u64::from(offset), &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn test_window_interrupt_registers_do_not_wait_for_the_transport() {
        let (t, w) = window();
        let interrupt = t.lock().unwrap().interrupt().clone();
        interrupt.signal_used_queue();
        // The device thread is in a turn: it holds the transport.
        let turn = t.lock().unwrap();
        let (tx, rx) = mpsc::channel();
        let handler = {
            let w = w.clone();
            std::thread::spawn(move || {
                let status = read32(&w, VIRTIO_MMIO_INTERRUPT_STATUS);
                w.mmio_write(
                    MmioAddress(0),
                    u64::from(VIRTIO_MMIO_INTERRUPT_ACK),
                    &status.to_le_bytes(),
                );
                tx.send(status).unwrap();
            })
        };
        let status = rx.recv_timeout(Duration::from_secs(10));
        drop(turn);
        handler.join().unwrap();
        assert_eq!(
            status,
            Ok(VIRTIO_MMIO_INT_VRING),
            "the handler waited for the turn"
        );
        assert_eq!(interrupt.status(), 0, "acknowledged");
    }

    #[test]
    fn test_window_other_accesses_reach_the_transport() {
        let (t, w) = window();
        assert_eq!(read32(&w, VIRTIO_MMIO_MAGIC_VALUE), MMIO_MAGIC_VALUE);
        let before = t.lock().unwrap().ignored_accesses();
        // A 2-byte ACK is not the register: the transport counts it.
        w.mmio_write(
            MmioAddress(0),
            u64::from(VIRTIO_MMIO_INTERRUPT_ACK),
            &[1, 0],
        );
        let mut b = [0u8; 2];
        w.mmio_read(
            MmioAddress(0),
            u64::from(VIRTIO_MMIO_INTERRUPT_STATUS),
            &mut b,
        );
        assert_eq!(t.lock().unwrap().ignored_accesses(), before + 2);
    }
}
