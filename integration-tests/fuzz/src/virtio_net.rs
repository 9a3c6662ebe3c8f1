//! The `virtio_net` target's input: a driver's set-up (features, queue
//! sizes) and a sequence of driver and tap actions, in a plain byte format
//! (fixed-width little-endian fields; a missing byte reads as 0), so the
//! seed generator can write meaningful inputs with [`encode`].
//!
//! Layout of guest RAM the target uses ([`RAM_SIZE`] bytes at 0): the
//! receiveq's descriptor table, available and used rings at 0x0000,
//! 0x1000, 0x2000, the transmitq's at 0x3000, 0x4000, 0x5000, buffers from
//! [`BUF_BASE`] up. Buffer addresses the input picks reach up to 64 KiB
//! past the end of RAM, never the rings (the device writes receive buffers,
//! and the target's checks read the used rings).

/// Guest RAM: enough for a 64 KiB frame in several places.
pub const RAM_SIZE: u64 = 0x8_0000;
/// Where buffers may start.
pub const BUF_BASE: u64 = 0x6000;
/// Ring addresses: (descriptor table, available ring, used ring) per queue.
pub const RINGS: [(u64, u64, u64); 2] = [(0x0000, 0x1000, 0x2000), (0x3000, 0x4000, 0x5000)];
/// Most operations one input runs.
pub const MAX_OPS: usize = 1024;
/// Frames the fake tap holds at most (more are not queued).
pub const TAP_QUEUE_MAX: usize = 8;

/// A buffer address from an input word: `BUF_BASE` up to 64 KiB past RAM.
pub fn buf_addr(word: u32) -> u64 {
    BUF_BASE + u64::from(word) % (RAM_SIZE + 0x1_0000 - BUF_BASE)
}

/// A queue size from a code: a power of two 1 to 256 (the device's
/// maximum), or an invalid 3 or 512.
pub fn queue_size(code: u8) -> u16 {
    match code % 11 {
        9 => 3,
        10 => 512,
        n => 1 << n,
    }
}

/// The driver's set-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Setup {
    /// Features the driver accepts (masked with the offered ones by the
    /// target; `VIRTIO_F_VERSION_1` is added unless bit 63 is set).
    pub features: u64,
    /// Queue size codes ([`queue_size`]): receiveq, transmitq.
    pub sizes: [u8; 2],
    /// Bit 0: the tap refuses offloads from the start.
    pub tap: u8,
}

/// One action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Writes descriptor `index` of queue `q`.
    Desc {
        /// Queue (0 receiveq, 1 transmitq).
        q: u8,
        /// Index in the table (modulo 256).
        index: u8,
        /// Address word ([`buf_addr`]).
        addr: u32,
        /// Length.
        len: u32,
        /// `VRING_DESC_F_*` bits (low 3).
        flags: u8,
        /// The next field.
        next: u8,
    },
    /// Makes head `head` available on queue `q` (not beyond the ring).
    Avail {
        /// Queue.
        q: u8,
        /// Head index (any value).
        head: u8,
    },
    /// Notifies queue `q` (2: one the device does not have).
    Notify {
        /// Queue.
        q: u8,
    },
    /// Queues a frame on the tap: header `flags`/`gso`, then `len` bytes.
    TapFrame {
        /// Header flags.
        flags: u8,
        /// Header gso_type.
        gso: u8,
        /// Frame length after the header (beyond the tap's maximum too).
        len: u32,
    },
    /// The tap's descriptor fires.
    TapEvent,
    /// Writes a transmit frame into guest RAM at `addr`: a header with
    /// `flags`/`gso`, then `len` bytes.
    Frame {
        /// Address word ([`buf_addr`]).
        addr: u32,
        /// Bytes after the header.
        len: u16,
        /// Header flags.
        flags: u8,
        /// Header gso_type.
        gso: u8,
    },
    /// Resets the device and sets it up again with `features`.
    Reset {
        /// Driver features, as in [`Setup`].
        features: u64,
    },
    /// Tap failures: bit 0 reads, bit 1 writes, bit 2 offloads.
    TapFail {
        /// Which.
        bits: u8,
    },
    /// Reads `len` configuration bytes at `off`.
    Config {
        /// Offset in the configuration space.
        off: u8,
        /// Bytes.
        len: u8,
    },
    /// A well-formed chain of `n` (1 to 4) descriptors on queue `q`, each
    /// `len` bytes from `addr` on (writable on the receiveq), at the
    /// queue's next free indices, made available.
    Chain {
        /// Queue.
        q: u8,
        /// Descriptors.
        n: u8,
        /// Address word of the first ([`buf_addr`]).
        addr: u32,
        /// Length of each.
        len: u32,
    },
}

/// Reads fixed-width fields; 0 once the input runs out.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let n = N.min(self.0.len());
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        b
    }
    fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }
}

/// The input's set-up and operations (at most [`MAX_OPS`]).
pub fn decode(data: &[u8]) -> (Setup, Vec<Op>) {
    let mut c = Cursor(data);
    let setup = Setup {
        features: c.u64(),
        sizes: [c.u8(), c.u8()],
        tap: c.u8(),
    };
    let mut ops = Vec::new();
    while !c.0.is_empty() && ops.len() < MAX_OPS {
        let op = match c.u8() % 10 {
            0 => Op::Desc {
                q: c.u8(),
                index: c.u8(),
                addr: c.u32(),
                len: c.u32(),
                flags: c.u8(),
                next: c.u8(),
            },
            1 => Op::Avail {
                q: c.u8(),
                head: c.u8(),
            },
            2 => Op::Notify { q: c.u8() },
            3 => Op::TapFrame {
                flags: c.u8(),
                gso: c.u8(),
                len: c.u32(),
            },
            4 => Op::TapEvent,
            5 => Op::Frame {
                addr: c.u32(),
                len: c.u16(),
                flags: c.u8(),
                gso: c.u8(),
            },
            6 => Op::Reset { features: c.u64() },
            7 => Op::TapFail { bits: c.u8() },
            8 => Op::Config {
                off: c.u8(),
                len: c.u8(),
            },
            _ => Op::Chain {
                q: c.u8(),
                n: c.u8(),
                addr: c.u32(),
                len: c.u32(),
            },
        };
        ops.push(op);
    }
    (setup, ops)
}

/// The bytes [`decode`] turns into `setup` and `ops`.
pub fn encode(setup: &Setup, ops: &[Op]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&setup.features.to_le_bytes());
    v.extend_from_slice(&setup.sizes);
    v.push(setup.tap);
    for op in ops {
        match *op {
            Op::Desc {
                q,
                index,
                addr,
                len,
                flags,
                next,
            } => {
                v.extend_from_slice(&[0, q, index]);
                v.extend_from_slice(&addr.to_le_bytes());
                v.extend_from_slice(&len.to_le_bytes());
                v.extend_from_slice(&[flags, next]);
            }
            Op::Avail { q, head } => v.extend_from_slice(&[1, q, head]),
            Op::Notify { q } => v.extend_from_slice(&[2, q]),
            Op::TapFrame { flags, gso, len } => {
                v.extend_from_slice(&[3, flags, gso]);
                v.extend_from_slice(&len.to_le_bytes());
            }
            Op::TapEvent => v.push(4),
            Op::Frame {
                addr,
                len,
                flags,
                gso,
            } => {
                v.push(5);
                v.extend_from_slice(&addr.to_le_bytes());
                v.extend_from_slice(&len.to_le_bytes());
                v.extend_from_slice(&[flags, gso]);
            }
            Op::Reset { features } => {
                v.push(6);
                v.extend_from_slice(&features.to_le_bytes());
            }
            Op::TapFail { bits } => v.extend_from_slice(&[7, bits]),
            Op::Config { off, len } => v.extend_from_slice(&[8, off, len]),
            Op::Chain { q, n, addr, len } => {
                v.extend_from_slice(&[9, q, n]);
                v.extend_from_slice(&addr.to_le_bytes());
                v.extend_from_slice(&len.to_le_bytes());
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_encode_decode_round_trip() {
        let setup = Setup {
            features: 0x1_0001_8020,
            sizes: [4, 5],
            tap: 1,
        };
        let ops = vec![
            Op::Chain {
                q: 0,
                n: 2,
                addr: 0x100,
                len: 1526,
            },
            Op::TapFrame {
                flags: 0,
                gso: 0,
                len: 60,
            },
            Op::TapEvent,
            Op::Frame {
                addr: 0x2000,
                len: 60,
                flags: 1,
                gso: 0,
            },
            Op::Desc {
                q: 1,
                index: 3,
                addr: 7,
                len: 9,
                flags: 1,
                next: 3,
            },
            Op::Avail { q: 1, head: 3 },
            Op::Notify { q: 1 },
            Op::Reset { features: 5 },
            Op::TapFail { bits: 7 },
            Op::Config { off: 2, len: 8 },
        ];
        assert_eq!(decode(&encode(&setup, &ops)), (setup, ops));
    }
}
