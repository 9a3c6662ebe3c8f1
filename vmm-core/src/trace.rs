//! The `--trace-io` line format, one line per port/MMIO access:
//!
//! ```text
//! io out port=0x0010 size=2 value=0x0001
//! io in port=0x0064 size=1 value=0xff
//! mmio write addr=0xd0000000 size=4 value=0x12345678
//! mmio read addr=0xd0000000 size=4 value=0xffffffff
//! ```
//!
//! Values are the little-endian integer of the access, `2 * size` hex digits.

use std::fmt::Write;

/// Direction of an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Guest reads.
    Read,
    /// Guest writes.
    Write,
}

fn value_hex(data: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * data.len());
    s.push_str("0x");
    for b in data.iter().rev() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A port-I/O trace line.
pub fn io_line(dir: Dir, port: u16, data: &[u8]) -> String {
    let d = match dir {
        Dir::Read => "in",
        Dir::Write => "out",
    };
    format!(
        "io {d} port={port:#06x} size={} value={}",
        data.len(),
        value_hex(data)
    )
}

/// An MMIO trace line.
pub fn mmio_line(dir: Dir, addr: u64, data: &[u8]) -> String {
    let d = match dir {
        Dir::Read => "read",
        Dir::Write => "write",
    };
    format!(
        "mmio {d} addr={addr:#x} size={} value={}",
        data.len(),
        value_hex(data)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_trace_lines_match_documented_format() {
        assert_eq!(
            io_line(Dir::Write, 0x10, &[1, 0]),
            "io out port=0x0010 size=2 value=0x0001"
        );
        assert_eq!(
            io_line(Dir::Read, 0x64, &[0xff]),
            "io in port=0x0064 size=1 value=0xff"
        );
        assert_eq!(
            mmio_line(Dir::Write, 0xd000_0000, &0x1234_5678u32.to_le_bytes()),
            "mmio write addr=0xd0000000 size=4 value=0x12345678"
        );
        assert_eq!(
            mmio_line(Dir::Read, 0xd000_0000, &[0xff; 4]),
            "mmio read addr=0xd0000000 size=4 value=0xffffffff"
        );
        assert_eq!(
            io_line(Dir::Write, 0xffff, &[0x78, 0x56, 0x34, 0x12]),
            "io out port=0xffff size=4 value=0x12345678"
        );
    }
}
