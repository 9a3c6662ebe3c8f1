//! Decoding of register accesses: which port, how wide, what data.

use arbitrary::{Arbitrary, Result, Unstructured};

/// Access widths a width code picks: mostly the 1, 2 and 4 bytes KVM
/// produces for `in`/`out`, sometimes 0, 3, 8, 9 or 16 (no CPU makes those
/// for port I/O, but the bus and devices take any slice and must cope).
pub const WIDTHS: [usize; 16] = [1, 1, 1, 1, 1, 2, 2, 2, 4, 4, 4, 0, 3, 8, 9, 16];

/// Most register sequences a single input may run: long enough for any
/// protocol a device speaks, short enough to keep runs fast.
pub const MAX_OPS: usize = 4096;

/// The width [`WIDTHS`] gives `code`.
pub fn width(code: u8) -> usize {
    WIDTHS[usize::from(code % WIDTHS.len() as u8)]
}

/// `width(code)` bytes of write data from the input, zero-padded when the
/// input runs out (so the access keeps its width and the run its checks).
pub fn data(u: &mut Unstructured<'_>, code: u8) -> Result<Vec<u8>> {
    let n = width(code);
    let mut out = u.bytes(n.min(u.len()))?.to_vec();
    out.resize(n, 0);
    Ok(out)
}

/// Base ports of the devices the VMM registers (vmm-core's layout): COM1,
/// debug-exit, debugcon, POST code, i8042 data and command, CMOS, ACPI PM.
pub const DEVICE_PORTS: [u16; 8] = [0x3f8, 0xf4, 0xe9, 0x80, 0x60, 0x64, 0x70, 0x600];

/// A port: usually near a device (two below its base to 13 above, so edges
/// and straddling accesses are common), sometimes any port at all.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum PortSel {
    /// `DEVICE_PORTS[dev % 8] - 2 + off % 16`.
    Near {
        /// Which device.
        dev: u8,
        /// Offset code.
        off: u8,
    },
    /// Any port.
    Any(u16),
}

impl PortSel {
    /// The port number.
    pub fn port(self) -> u16 {
        match self {
            PortSel::Near { dev, off } => DEVICE_PORTS[usize::from(dev) % DEVICE_PORTS.len()]
                .wrapping_add(u16::from(off % 16))
                .wrapping_sub(2),
            PortSel::Any(p) => p,
        }
    }
}
