//! Turning a descriptor chain into a block request (virtio 1.2 section
//! 5.2.6), checking everything the driver controls.
//!
//! The layout is taken from the descriptors' flags, not their number
//! (section 2.6.4, message framing): the device-readable bytes come first,
//! and their first 16 are the header (`type`, `reserved`, `sector`); the
//! rest are the data of a write, discard or write-zeroes. Then come the
//! device-writable bytes: all but the last are the data of a read or
//! GET_ID, and the last byte of the last writable descriptor is the
//! status. Zero-length descriptors carry nothing and are skipped.

use std::fmt;

use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Bytes of `struct virtio_blk_req`'s header.
pub const HEADER_LEN: usize = 16;

/// A guest buffer: where it starts and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical start.
    pub addr: GuestAddress,
    /// Length in bytes (never 0).
    pub len: u32,
}

/// The request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `VIRTIO_BLK_T_*`.
    pub request_type: u32,
    /// The first 512-byte sector (IN/OUT).
    pub sector: u64,
}

/// Why a request that has a status byte is answered with IOERR before the
/// device looks at its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Fewer than 16 device-readable bytes.
    ShortHeader(u64),
    /// A device-readable descriptor after a device-writable one.
    ReadableAfterWritable,
    /// A buffer (header or data) is not all in guest RAM.
    OutsideRam(GuestAddress, u32),
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::ShortHeader(n) => write!(f, "header of {n} bytes (16 needed)"),
            Malformed::ReadableAfterWritable => {
                f.write_str("a device-readable buffer follows a device-writable one")
            }
            Malformed::OutsideRam(a, n) => {
                write!(
                    f,
                    "buffer [{:#x}, +{n:#x}) is not in guest RAM",
                    a.raw_value()
                )
            }
        }
    }
}

/// A chain the device cannot answer with a status byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unanswerable {
    /// The chain does not end: a loop, a `next` outside the table, more
    /// descriptors than the queue has, or over 4 GiB. The driver broke the
    /// split-ring contract (section 2.7.5.2): NEEDS_RESET.
    Broken(String),
    /// No device-writable byte to put the status in.
    NoStatus,
    /// The status byte is not in guest RAM.
    StatusOutsideRam(GuestAddress),
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Where the status byte goes (checked to be in guest RAM).
    pub status: GuestAddress,
    /// The header and data, or why the request gets IOERR.
    pub body: Result<Body, Malformed>,
}

/// A well-formed request's header and data buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// The header.
    pub header: Header,
    /// Device-readable data after the header (in RAM).
    pub readable: Vec<Segment>,
    /// Device-writable data before the status byte (in RAM).
    pub writable: Vec<Segment>,
}

impl Body {
    /// Total bytes of `segments`.
    pub fn len(segments: &[Segment]) -> u64 {
        segments.iter().map(|s| u64::from(s.len)).sum()
    }
}

/// Walks `chain` (at most `max_descriptors` of them) and parses it.
pub fn parse(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    max_descriptors: usize,
) -> Result<Request, Unanswerable> {
    let mut readable: Vec<Segment> = Vec::new();
    let mut writable: Vec<Segment> = Vec::new();
    let mut order_broken = false;
    let mut count = 0usize;
    let mut last_has_next = false;
    for desc in chain {
        count += 1;
        if count > max_descriptors {
            return Err(Unanswerable::Broken(format!(
                "a chain of more than {max_descriptors} descriptors"
            )));
        }
        last_has_next = desc.has_next();
        if desc.len() == 0 {
            continue;
        }
        let seg = Segment {
            addr: desc.addr(),
            len: desc.len(),
        };
        if desc.is_write_only() {
            writable.push(seg);
        } else if writable.is_empty() {
            readable.push(seg);
        } else {
            order_broken = true;
        }
    }
    if last_has_next {
        // The iterator stopped at a descriptor that says there is more: it
        // ran out of its budget (a loop) or could not read the next one.
        return Err(Unanswerable::Broken(format!(
            "the chain does not end after {count} descriptors (a loop, or a next index outside the table)"
        )));
    }
    let last = writable.pop().ok_or(Unanswerable::NoStatus)?;
    let status = last
        .addr
        .checked_add(u64::from(last.len) - 1)
        .filter(|a| mem.address_in_range(*a))
        .ok_or(Unanswerable::StatusOutsideRam(last.addr))?;
    if last.len > 1 {
        writable.push(Segment {
            addr: last.addr,
            len: last.len - 1,
        });
    }
    let body = if order_broken {
        Err(Malformed::ReadableAfterWritable)
    } else {
        body(mem, readable, writable)
    };
    Ok(Request { status, body })
}

/// Splits the readable bytes into header and data, and checks that every
/// buffer is in guest RAM.
fn body(
    mem: &GuestMemoryMmap,
    readable: Vec<Segment>,
    writable: Vec<Segment>,
) -> Result<Body, Malformed> {
    for s in readable.iter().chain(&writable) {
        if !GuestMemoryBackend::check_range(mem, s.addr, s.len as usize) {
            return Err(Malformed::OutsideRam(s.addr, s.len));
        }
    }
    let total = Body::len(&readable);
    if total < HEADER_LEN as u64 {
        return Err(Malformed::ShortHeader(total));
    }
    // Gather the header (it may span descriptors) and keep what follows.
    let mut raw = [0u8; HEADER_LEN];
    let mut got = 0usize;
    let mut data = Vec::with_capacity(readable.len());
    for s in readable {
        let take = (HEADER_LEN - got).min(s.len as usize);
        if take > 0 {
            let dst = raw.get_mut(got..got + take).unwrap_or_default();
            mem.read_slice(dst, s.addr)
                .map_err(|_| Malformed::OutsideRam(s.addr, s.len))?;
            got += take;
        }
        if (take as u32) < s.len {
            data.push(Segment {
                addr: GuestAddress(s.addr.raw_value() + take as u64),
                len: s.len - take as u32,
            });
        }
    }
    let [t0, t1, t2, t3, _, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7] = raw;
    Ok(Body {
        header: Header {
            request_type: u32::from_le_bytes([t0, t1, t2, t3]),
            sector: u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
        },
        readable: data,
        writable,
    })
}
