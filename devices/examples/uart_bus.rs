//! An `IoBus` with the 8250 UART (COM1) and the debug console on it, driven
//! the way a guest's polled serial driver would drive them, with no KVM:
//!
//! ```sh
//! cargo run -p vmm-devices --example uart_bus
//! ```
//!
//! It programs the line control register (divisor latch, 8N1), polls the
//! line status register before each transmitted byte, writes to the debug
//! console port, reads a port nobody claims (all ones), and prints what the
//! console received and what the bus counted.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;

use vm_device::bus::PioAddress;
use vmm_devices::bus::{Access, BusKey, IoBus};
use vmm_devices::console::Console;
use vmm_devices::legacy::debugcon::{DEBUGCON_PORT, DEBUGCON_READBACK};
use vmm_devices::legacy::uart8250::{COM1_PORT, UART_REGISTER_COUNT};
use vmm_devices::legacy::{DebugCon, NoIrq, Uart8250};

/// Transmit holding register (divisor latch low byte while LCR.DLAB is set).
const THR_OFFSET: u16 = 0;
/// Interrupt enable register (divisor latch high byte while LCR.DLAB is set).
const IER_OFFSET: u16 = 1;
/// Line control register.
const LCR_OFFSET: u16 = 3;
/// Line status register.
const LSR_OFFSET: u16 = 5;
/// LCR: divisor latch access.
const LCR_DLAB_BIT: u8 = 1 << 7;
/// LCR: 8 data bits, no parity, 1 stop bit.
const LCR_8N1: u8 = 0x03;
/// LSR: the transmit holding register is empty.
const LSR_THRE_BIT: u8 = 1 << 5;
/// LSR: the transmitter is idle.
const LSR_TEMT_BIT: u8 = 1 << 6;
/// Divisor for 115200 baud from the 1.8432 MHz clock.
const DIVISOR_115200: u16 = 1;
/// COM2's base port: nothing is registered there.
const UNCLAIMED_PORT: u16 = 0x2f8;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uart_bus: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    // One in-memory console shared by both devices, so what they printed can
    // be shown (and checked) afterwards. `Console::writer(Box::new(stdout))`
    // would print directly instead.
    let console = Console::memory();
    let mut bus = IoBus::new();
    bus.register_pio(
        "com1",
        PioAddress(COM1_PORT),
        UART_REGISTER_COUNT,
        Arc::new(Uart8250::new(NoIrq, console.clone())),
    )?;
    bus.register_pio(
        "debugcon",
        PioAddress(DEBUGCON_PORT),
        1,
        Arc::new(DebugCon::new(console.clone())),
    )?;

    let com1 = |offset: u16| PioAddress(COM1_PORT + offset);

    // Line set-up, as a guest's serial driver does it: divisor latch on,
    // divisor, then 8N1 with the latch off again.
    bus.pio_write(com1(LCR_OFFSET), &[LCR_DLAB_BIT | LCR_8N1]);
    let [dll, dlm] = DIVISOR_115200.to_le_bytes();
    bus.pio_write(com1(THR_OFFSET), &[dll]);
    bus.pio_write(com1(IER_OFFSET), &[dlm]);
    bus.pio_write(com1(LCR_OFFSET), &[LCR_8N1]);
    let lcr = read_byte(&bus, com1(LCR_OFFSET));
    println!("COM1 LCR = {lcr:#04x} (8N1, divisor latch off)");

    // Transmit, polling LSR.THRE before each byte.
    let message = b"hello from COM1\n";
    for &byte in message {
        let mut polls = 0u32;
        while read_byte(&bus, com1(LSR_OFFSET)) & LSR_THRE_BIT == 0 {
            polls += 1;
            if polls > 1000 {
                return Err("COM1 never reported its transmitter empty".into());
            }
        }
        bus.pio_write(com1(THR_OFFSET), &[byte]);
    }
    let lsr = read_byte(&bus, com1(LSR_OFFSET));
    println!(
        "COM1 LSR = {lsr:#04x} (THRE {}, TEMT {})",
        lsr & LSR_THRE_BIT != 0,
        lsr & LSR_TEMT_BIT != 0
    );

    // The debug console prints each byte written to port 0xe9; reads return
    // 0xe9 so a guest can detect it.
    for &byte in b"hello from port 0xe9\n" {
        bus.pio_write(PioAddress(DEBUGCON_PORT), &[byte]);
    }
    let readback = read_byte(&bus, PioAddress(DEBUGCON_PORT));
    println!("debugcon reads {readback:#04x}");
    if readback != DEBUGCON_READBACK {
        return Err(
            format!("debugcon read {readback:#04x}, expected {DEBUGCON_READBACK:#04x}").into(),
        );
    }

    // Nobody is at COM2: the read returns all ones, like an empty ISA bus.
    let mut byte = [0u8];
    let access = bus.pio_read(PioAddress(UNCLAIMED_PORT), &mut byte);
    println!(
        "port {UNCLAIMED_PORT:#x} reads {:#04x} ({access:?})",
        byte[0]
    );
    if access != Access::Unclaimed || byte[0] != 0xff {
        return Err(format!("unclaimed port read {:#04x} ({access:?})", byte[0]).into());
    }

    let out = console.captured();
    println!("console received {} bytes:", out.len());
    for line in String::from_utf8_lossy(&out).lines() {
        println!("  | {line}");
    }
    if !out.starts_with(message) {
        return Err("the console did not receive the UART's message first".into());
    }

    println!("bus access counts:");
    for row in bus.access_counts() {
        let key = match row.key {
            BusKey::Port(port) => format!("port {port:#06x}"),
            BusKey::Mmio(base) | BusKey::UnclaimedMmioPage(base) => format!("mmio {base:#x}"),
            BusKey::UnclaimedMmioOther => "other mmio".to_string(),
        };
        let c = row.count;
        println!(
            "  {key} {:<9} reads {:>2}, writes {:>2}, unclaimed reads {}, unclaimed writes {}",
            row.device.as_deref().unwrap_or("(none)"),
            c.reads,
            c.writes,
            c.unclaimed_reads,
            c.unclaimed_writes
        );
    }
    Ok(())
}

/// A one-byte port read, as `in al, dx`.
fn read_byte(bus: &IoBus, port: PioAddress) -> u8 {
    let mut byte = [0u8];
    bus.pio_read(port, &mut byte);
    byte[0]
}
