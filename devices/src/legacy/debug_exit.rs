//! QEMU's `isa-debug-exit` device: a guest write ends the VM, and the VMM
//! exits with status `(value << 1) | 1`, so no guest can fake a clean 0.
//!
//! As in QEMU (`hw/misc/debugexit.c`) the port is `iobase` (0xf4 by default)
//! with a configurable width; any write inside it, of any size, ends the VM
//! with the written value (little-endian). QEMU registers no read handler;
//! reads here return all ones, like an empty port.

use std::sync::Arc;

use vm_device::bus::{PioAddress, PioAddressOffset};
use vm_device::DevicePio;

use crate::vm_event::{VmEvent, VmEventSink};

/// The conventional port.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
/// The port range width this VMM registers (QEMU's `iosize` set to 4, so
/// 32-bit `out` works).
pub const DEBUG_EXIT_WIDTH: u16 = 4;

/// The isa-debug-exit device.
pub struct DebugExit {
    sink: Arc<dyn VmEventSink>,
}

impl DebugExit {
    /// A device that reports exits to `sink`.
    pub fn new(sink: Arc<dyn VmEventSink>) -> Self {
        DebugExit { sink }
    }

    /// The exit status a VMM should use for a written `value`: QEMU's
    /// `(value << 1) | 1`. Process statuses keep only the low 8 bits.
    pub fn exit_status(value: u32) -> u32 {
        (value << 1) | 1
    }
}

impl DevicePio for DebugExit {
    fn pio_read(&self, _: PioAddress, _: PioAddressOffset, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn pio_write(&self, _: PioAddress, _: PioAddressOffset, data: &[u8]) {
        let mut le = [0u8; 4];
        let n = data.len().min(4);
        le[..n].copy_from_slice(&data[..n]);
        self.sink
            .vm_event(VmEvent::DebugExit(u32::from_le_bytes(le)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm_event::RecordingSink;

    #[test]
    fn test_debug_exit_reports_value_of_any_width() {
        let sink = Arc::new(RecordingSink::default());
        let dev = DebugExit::new(sink.clone());
        dev.pio_write(PioAddress(0xf4), 0, &[0x31]);
        dev.pio_write(PioAddress(0xf4), 0, &[0x34, 0x12]);
        dev.pio_write(PioAddress(0xf4), 0, &[0x78, 0x56, 0x34, 0x12]);
        assert_eq!(
            sink.events(),
            vec![
                VmEvent::DebugExit(0x31),
                VmEvent::DebugExit(0x1234),
                VmEvent::DebugExit(0x1234_5678)
            ]
        );
        let mut d = [0u8; 2];
        dev.pio_read(PioAddress(0xf4), 0, &mut d);
        assert_eq!(d, [0xff, 0xff]);
    }

    #[test]
    fn test_debug_exit_status_is_odd() {
        assert_eq!(DebugExit::exit_status(0), 1);
        assert_eq!(DebugExit::exit_status(0x31), 0x63);
    }
}
