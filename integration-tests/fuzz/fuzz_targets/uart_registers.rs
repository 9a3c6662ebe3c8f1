//! The 16550A UART (COM1) on its own: arbitrary register reads and writes
//! of any width at offsets 0-9 (8 and 9 are past its last register),
//! interleaved with host input (`Uart8250::receive`), with each kind of
//! interrupt line the VMM uses.
//!
//! Checked: the receive FIFO never holds more than it did free at start
//! (`rx_room()` never grows past it), host input is accepted only up to the
//! room there was and takes exactly that room (outside loopback, where the
//! chip's input is disconnected), guest reads free at most one byte and
//! writes never free any, lanes past the last register read 0xff, and the
//! console never gets more bytes than were written to THR.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use vm_device::bus::PioAddress;
use vm_device::DevicePio;
use vmm_devices::legacy::uart8250::{COM1_PORT, UART_REGISTER_COUNT};
use vmm_devices::legacy::Uart8250;
use vmm_devices::{Console, IrqLine};
use vmm_fuzz::ports::{self, MAX_OPS};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const MCR: u16 = 4;
const MCR_LOOP: u8 = 0x10;

#[derive(Debug, Arbitrary)]
enum Op {
    Read {
        off: u8,
        width: u8,
    },
    Write {
        off: u8,
        width: u8,
    },
    Receive(Vec<u8>),
    /// As much input as fits, then some.
    Flood(u8),
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let line_kind = u8::arbitrary(u)? % 3;
    let irq = match line_kind {
        0 => IrqLine::None,
        _ => match IrqLine::eventfd() {
            Ok(l) => l,
            Err(e) => panic!("fuzz harness: eventfd: {e}"),
        },
    };
    let console = Console::memory();
    let uart = if line_kind == 2 {
        let drained = match EventFd::new(EFD_NONBLOCK) {
            Ok(e) => e,
            Err(e) => panic!("fuzz harness: eventfd: {e}"),
        };
        Uart8250::with_rx_drained(irq, console.clone(), drained)
    } else {
        Uart8250::new(irq, console.clone())
    };
    let base = PioAddress(COM1_PORT);
    let capacity = uart.rx_room();
    let mut thr_writes = 0usize;
    let loopback = |uart: &Uart8250<IrqLine>| {
        let mut mcr = [0u8];
        uart.pio_read(base, MCR, &mut mcr);
        mcr[0] & MCR_LOOP != 0
    };
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let before = uart.rx_room();
        let Ok(op) = Op::arbitrary(u) else { break };
        vmm_fuzz::trace(&op);
        match op {
            Op::Read { off, width } => {
                let off = u16::from(off % 10);
                let mut data = vec![0u8; ports::width(width)];
                uart.pio_read(base, off, &mut data);
                for (i, b) in data.iter().enumerate() {
                    if u64::from(off) + i as u64 >= u64::from(UART_REGISTER_COUNT) {
                        assert_eq!(*b, 0xff, "lane {i} at offset {off}");
                    }
                }
                let after = uart.rx_room();
                assert!(
                    after >= before && after - before <= 1,
                    "a read moved rx_room from {before} to {after}"
                );
            }
            Op::Write { off, width } => {
                let off = u16::from(off % 10);
                let data = ports::data(u, width)?;
                if off == 0 && !data.is_empty() {
                    thr_writes += 1;
                }
                uart.pio_write(base, off, &data);
                let after = uart.rx_room();
                assert!(
                    after <= before,
                    "a write freed rx room: {before} -> {after}"
                );
            }
            Op::Receive(bytes) => {
                let looped = loopback(&uart);
                let n = uart.receive(&bytes);
                assert!(n <= before.min(bytes.len()), "took {n} of {}", bytes.len());
                let after = uart.rx_room();
                if looped {
                    assert_eq!(n, 0, "loopback: the host keeps its input");
                    assert_eq!(after, before, "loopback input reached the FIFO");
                } else {
                    assert_eq!(after, before - n, "took {n}, room {before} -> {after}");
                }
            }
            Op::Flood(extra) => {
                let bytes = vec![b'x'; capacity + usize::from(extra)];
                let n = uart.receive(&bytes);
                assert!(n <= before);
            }
        }
        assert!(
            uart.rx_room() <= capacity,
            "rx_room {} > FIFO size {capacity}",
            uart.rx_room()
        );
        assert!(console.captured().len() <= thr_writes);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
