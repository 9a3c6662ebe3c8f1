//! The 8250/16550A UART (COM1 at 0x3f8), on rust-vmm's vm-superio `Serial`,
//! which implements the register file (DLAB, IER, IIR, LCR, MCR, LSR, MSR,
//! SCR, loopback) per the National Semiconductor PC16550D datasheet.
//!
//! This file adapts it to the bus: it checks offsets, splits a multi-byte
//! access into byte cycles at consecutive registers (the UART sits on an 8-bit
//! ISA bus), and keeps a console error from ever reaching the guest.
//! Interrupts go through vm-superio's `Trigger` trait, so the same device
//! works polled ([`NoIrq`]) or with an irqfd.

use std::sync::Mutex;

use vm_device::bus::{PioAddress, PioAddressOffset};
use vm_device::DevicePio;
use vm_superio::serial::SerialEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::console::Console;
use crate::lock;

mod state;
pub use state::{UartState, UART_FIFO_SIZE};

/// COM1's base port.
pub const COM1_PORT: u16 = 0x3f8;
/// COM1's legacy IRQ line.
pub const COM1_IRQ: u32 = 4;
/// Modem control register offset (PC16550D datasheet).
const MCR_OFFSET: u8 = 4;
/// MCR bit 4: loopback.
const MCR_LOOP_BIT: u8 = 1 << 4;

/// Registers (ports) the UART decodes.
pub const UART_REGISTER_COUNT: u16 = 8;

/// A trigger for a UART with no interrupt line wired (polled guests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoIrq;

impl Trigger for NoIrq {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        Ok(())
    }
}

/// Tells the host side when the guest has emptied the receive FIFO, so
/// queued input can be fed in without polling (flow control).
#[derive(Debug, Default)]
pub struct RxDrained {
    notify: Option<EventFd>,
}

impl SerialEvents for RxDrained {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        if let Some(e) = &self.notify {
            // Non-blocking eventfd: a full counter only means a wake-up is
            // already pending.
            let _ = e.write(1);
        }
    }
}

/// A 16550A UART writing what the guest transmits to a [`Console`].
pub struct Uart8250<T: Trigger> {
    serial: Mutex<Serial<T, RxDrained, Console>>,
}

impl<T: Trigger> Uart8250<T> {
    /// A UART raising `irq` and transmitting to `out`.
    pub fn new(irq: T, out: Console) -> Self {
        Uart8250 {
            serial: Mutex::new(Serial::with_events(irq, RxDrained::default(), out)),
        }
    }

    /// Like [`Uart8250::new`], and writes `drained` each time the guest
    /// empties the receive FIFO.
    pub fn with_rx_drained(irq: T, out: Console, drained: EventFd) -> Self {
        Uart8250 {
            serial: Mutex::new(Serial::with_events(
                irq,
                RxDrained {
                    notify: Some(drained),
                },
                out,
            )),
        }
    }

    /// Free space in the receive FIFO.
    pub fn rx_room(&self) -> usize {
        lock(&self.serial).fifo_capacity()
    }

    /// Queues bytes the guest will receive (RBR), as if typed; returns how
    /// many fit in the receive FIFO.
    /// In loopback mode (MCR bit 4) the UART's serial input is
    /// disconnected, as on the chip, and nothing is taken: the host keeps the
    /// bytes until the guest leaves loopback.
    pub fn receive(&self, bytes: &[u8]) -> usize {
        let mut s = lock(&self.serial);
        // Reading MCR has no side effects.
        if s.read(MCR_OFFSET) & MCR_LOOP_BIT != 0 {
            return 0;
        }
        let room = s.fifo_capacity();
        let n = bytes.len().min(room);
        if n > 0 && s.enqueue_raw_bytes(&bytes[..n]).is_err() {
            log::debug!("uart8250: raising the receive interrupt failed");
        }
        n
    }
}

impl<T: Trigger> DevicePio for Uart8250<T> {
    fn pio_read(&self, _: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        let mut s = lock(&self.serial);
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = match register(offset, i) {
                Some(reg) => s.read(reg),
                None => 0xff,
            };
        }
    }

    fn pio_write(&self, _: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        let mut s = lock(&self.serial);
        for (i, &byte) in data.iter().enumerate() {
            if let Some(reg) = register(offset, i) {
                // A failed console write or interrupt is the host's problem,
                // not the guest's: the byte counts as sent (vm-superio still
                // raises THRE), as on a UART with nothing attached.
                if let Err(e) = s.write(reg, byte) {
                    log::debug!("uart8250: register {reg} write failed: {e:?}");
                }
            }
        }
    }
}

fn register(offset: PioAddressOffset, i: usize) -> Option<u8> {
    u64::from(offset)
        .checked_add(i as u64)
        .filter(|r| *r < u64::from(UART_REGISTER_COUNT))
        .map(|r| r as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const THR: u16 = 0;
    const LCR: u16 = 3;
    const LSR: u16 = 5;
    const SCR: u16 = 7;

    #[test]
    fn test_uart_transmits_to_console() {
        let c = Console::memory();
        let uart = Uart8250::new(NoIrq, c.clone());
        for b in b"4\n" {
            uart.pio_write(PioAddress(COM1_PORT), THR, &[*b]);
        }
        assert_eq!(c.captured(), b"4\n");
    }

    #[test]
    fn test_uart_lsr_reports_transmitter_empty() {
        let uart = Uart8250::new(NoIrq, Console::discard());
        let mut d = [0u8];
        uart.pio_read(PioAddress(COM1_PORT), LSR, &mut d);
        // THRE (bit 5) and TEMT (bit 6): polled drivers wait for these.
        assert_eq!(d[0] & 0x60, 0x60);
    }

    #[test]
    fn test_uart_wide_access_hits_consecutive_registers() {
        let uart = Uart8250::new(NoIrq, Console::discard());
        // 16-bit write at LCR (offset 3): LCR=0x03, MCR=0x0b.
        uart.pio_write(PioAddress(COM1_PORT), LCR, &[0x03, 0x0b]);
        let mut d = [0u8; 2];
        uart.pio_read(PioAddress(COM1_PORT), LCR, &mut d);
        assert_eq!(d, [0x03, 0x0b]);
        // A read running past the last register gets all ones there.
        let mut d = [0u8; 2];
        uart.pio_write(PioAddress(COM1_PORT), SCR, &[0x5a]);
        uart.pio_read(PioAddress(COM1_PORT), SCR, &mut d);
        assert_eq!(d, [0x5a, 0xff]);
    }

    #[test]
    fn test_uart_signals_when_guest_drains_rx_fifo() {
        let drained = EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).unwrap();
        let uart =
            Uart8250::with_rx_drained(NoIrq, Console::discard(), drained.try_clone().unwrap());
        let room = uart.rx_room();
        assert_eq!(uart.receive(&vec![b'x'; room + 10]), room, "FIFO bounded");
        assert_eq!(uart.rx_room(), 0);
        let mut d = [0u8];
        for _ in 0..room {
            uart.pio_read(PioAddress(COM1_PORT), THR, &mut d);
        }
        assert_eq!(drained.read().unwrap(), 1);
        assert_eq!(uart.rx_room(), room);
    }

    #[test]
    fn test_uart_holds_host_input_in_loopback() {
        let uart = Uart8250::new(NoIrq, Console::discard());
        uart.pio_write(PioAddress(COM1_PORT), 4, &[0x10]);
        assert_eq!(uart.receive(b"abc"), 0, "input is disconnected in loopback");
        uart.pio_write(PioAddress(COM1_PORT), 4, &[0x00]);
        assert_eq!(uart.receive(b"abc"), 3);
    }

    #[test]
    fn test_uart_receive_fills_rbr() {
        let uart = Uart8250::new(NoIrq, Console::discard());
        assert_eq!(uart.receive(b"ok"), 2);
        let mut d = [0u8];
        uart.pio_read(PioAddress(COM1_PORT), LSR, &mut d);
        assert_eq!(d[0] & 1, 1, "data ready");
        uart.pio_read(PioAddress(COM1_PORT), THR, &mut d);
        assert_eq!(d[0], b'o');
    }
}
