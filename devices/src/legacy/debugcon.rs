//! The Bochs/QEMU debug console ("port 0xe9 hack"): each byte written is
//! printed; a read returns 0xe9 so a guest can detect the port.
//!
//! As in QEMU's `isa-debugcon` the device is one port wide; the bus splits a
//! wider write into byte cycles, so only its low byte lands here.

use std::io::Write;
use std::sync::Mutex;

use vm_device::bus::{PioAddress, PioAddressOffset};
use vm_device::DevicePio;

use crate::console::Console;
use crate::lock;

/// The conventional port.
pub const DEBUGCON_PORT: u16 = 0xe9;
/// What a read returns (Bochs' and QEMU's `readback` value).
pub const DEBUGCON_READBACK: u8 = 0xe9;

/// The debug console device.
pub struct DebugCon {
    out: Mutex<Console>,
}

impl DebugCon {
    /// A debug console writing to `out`.
    pub fn new(out: Console) -> Self {
        DebugCon {
            out: Mutex::new(out),
        }
    }
}

impl DevicePio for DebugCon {
    fn pio_read(&self, _: PioAddress, _: PioAddressOffset, data: &mut [u8]) {
        data.fill(DEBUGCON_READBACK);
    }

    fn pio_write(&self, _: PioAddress, _: PioAddressOffset, data: &[u8]) {
        let mut out = lock(&self.out);
        // Console errors (a closed pipe) must not stop the guest.
        if out.write_all(&data[..data.len().min(1)]).is_err() || out.flush().is_err() {
            log::debug!("debugcon: console write failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_debugcon_prints_and_reads_back_e9() {
        let c = Console::memory();
        let dev = DebugCon::new(c.clone());
        dev.pio_write(PioAddress(0xe9), 0, b"h");
        dev.pio_write(PioAddress(0xe9), 0, b"i");
        dev.pio_write(PioAddress(0xe9), 0, &[]);
        assert_eq!(c.captured(), b"hi");
        let mut d = [0u8];
        dev.pio_read(PioAddress(0xe9), 0, &mut d);
        assert_eq!(d[0], 0xe9);
    }
}
