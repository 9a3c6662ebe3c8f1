//! The UART's snapshot state: vm-superio's `SerialState` (every register
//! and the receive FIFO), mirrored here because vm-superio 0.8 does not
//! serialise it.

use serde::{Deserialize, Serialize};
use vm_superio::serial::SerialState;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::{RxDrained, Uart8250};
use crate::console::Console;
use crate::lock;
use crate::state::StateError;

/// The 16550A's receive FIFO depth (vm-superio's `FIFO_SIZE`).
pub const UART_FIFO_SIZE: usize = 64;

/// The UART's registers and receive FIFO.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UartState {
    /// DLL.
    pub baud_divisor_low: u8,
    /// DLM.
    pub baud_divisor_high: u8,
    /// IER.
    pub interrupt_enable: u8,
    /// IIR.
    pub interrupt_identification: u8,
    /// LCR.
    pub line_control: u8,
    /// LSR.
    pub line_status: u8,
    /// MCR.
    pub modem_control: u8,
    /// MSR.
    pub modem_status: u8,
    /// SCR.
    pub scratch: u8,
    /// Bytes received and not yet read by the guest, oldest first.
    pub in_buffer: Vec<u8>,
}

impl From<SerialState> for UartState {
    fn from(s: SerialState) -> Self {
        UartState {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer,
        }
    }
}

impl From<&UartState> for SerialState {
    fn from(s: &UartState) -> Self {
        SerialState {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer.clone(),
        }
    }
}

impl<T: Trigger> Uart8250<T> {
    /// The UART's registers and receive FIFO.
    pub fn state(&self) -> UartState {
        lock(&self.serial).state().into()
    }

    /// A UART in `state`, raising `irq`, transmitting to `out` and, with
    /// `drained`, writing it when the guest empties the receive FIFO. An
    /// interrupt the state shows pending is raised again (vm-superio's
    /// `from_state`), so the guest's driver sees it.
    pub fn from_state(
        state: &UartState,
        irq: T,
        out: Console,
        drained: Option<EventFd>,
    ) -> Result<Self, StateError>
    where
        T::E: std::fmt::Debug,
    {
        if state.in_buffer.len() > UART_FIFO_SIZE {
            return Err(StateError::TooLong {
                device: "uart8250",
                field: "the receive FIFO",
                found: state.in_buffer.len(),
                max: UART_FIFO_SIZE,
            });
        }
        let events = RxDrained { notify: drained };
        let serial = Serial::from_state(&state.into(), irq, events, out).map_err(|e| {
            StateError::Interrupt {
                device: "uart8250",
                why: format!("{e:?}"),
            }
        })?;
        Ok(Uart8250 {
            serial: std::sync::Mutex::new(serial),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::uart8250::{NoIrq, COM1_PORT};
    use vm_device::bus::PioAddress;
    use vm_device::DevicePio;

    #[test]
    fn test_uart_state_round_trips_registers_and_fifo() {
        let uart = Uart8250::new(NoIrq, Console::discard());
        // LCR with DLAB, divisor 0x0c01, LCR 8N1, IER, SCR, two bytes in.
        uart.pio_write(PioAddress(COM1_PORT), 3, &[0x80]);
        uart.pio_write(PioAddress(COM1_PORT), 0, &[0x01]);
        uart.pio_write(PioAddress(COM1_PORT), 1, &[0x0c]);
        uart.pio_write(PioAddress(COM1_PORT), 3, &[0x03]);
        uart.pio_write(PioAddress(COM1_PORT), 1, &[0x05]);
        uart.pio_write(PioAddress(COM1_PORT), 7, &[0x5a]);
        assert_eq!(uart.receive(b"hi"), 2);
        let state = uart.state();
        assert_eq!(state.in_buffer, b"hi");
        let json = serde_json::to_string(&state).unwrap();
        let back: UartState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
        let copy = Uart8250::from_state(&back, NoIrq, Console::discard(), None).unwrap();
        assert_eq!(copy.state(), state);
        let mut d = [0u8];
        copy.pio_read(PioAddress(COM1_PORT), 7, &mut d);
        assert_eq!(d[0], 0x5a);
        copy.pio_read(PioAddress(COM1_PORT), 0, &mut d);
        assert_eq!(d[0], b'h', "the FIFO continues where it was");
    }

    #[test]
    fn test_uart_from_state_refuses_an_overfull_fifo() {
        let state = UartState {
            in_buffer: vec![0; UART_FIFO_SIZE + 1],
            ..Default::default()
        };
        let e = Uart8250::from_state(&state, NoIrq, Console::discard(), None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("65"), "{e}");
    }
}
