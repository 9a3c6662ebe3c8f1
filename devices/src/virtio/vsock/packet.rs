//! vsock packets on the virtqueues (virtio 1.2 section 5.10.6): the
//! 44-byte `struct virtio_vsock_hdr` and its payload, parsed from transmit
//! chains and written into receive chains with rust-vmm's `virtio-vsock`
//! crate ([`VsockPacket`]), which checks the chain's shape (header in the
//! head descriptor, payload in the same or the next one, the right
//! direction, in guest RAM, no longer than the limit).
//!
//! The header is copied out once ([`Header`]): the guest can rewrite its
//! buffers at any time, so every decision is taken on the copy.

use virtio_queue::DescriptorChain;
use virtio_vsock::packet::{VsockPacket, PKT_HEADER_SIZE};
use vm_memory::{GuestMemoryMmap, VolatileSlice};

/// Bytes of `struct virtio_vsock_hdr`.
pub const HEADER_LEN: usize = PKT_HEADER_SIZE;

/// The host's well-known CID.
pub const HOST_CID: u64 = 2;

/// `VIRTIO_VSOCK_TYPE_STREAM`, the only socket type offered.
pub const TYPE_STREAM: u16 = 1;

/// `VIRTIO_VSOCK_OP_REQUEST`: open a connection.
pub const OP_REQUEST: u16 = 1;
/// `VIRTIO_VSOCK_OP_RESPONSE`: the connection is accepted.
pub const OP_RESPONSE: u16 = 2;
/// `VIRTIO_VSOCK_OP_RST`: refuse or abort a connection.
pub const OP_RST: u16 = 3;
/// `VIRTIO_VSOCK_OP_SHUTDOWN`: the sender stops receiving and/or sending.
pub const OP_SHUTDOWN: u16 = 4;
/// `VIRTIO_VSOCK_OP_RW`: payload.
pub const OP_RW: u16 = 5;
/// `VIRTIO_VSOCK_OP_CREDIT_UPDATE`: the sender's buffer space.
pub const OP_CREDIT_UPDATE: u16 = 6;
/// `VIRTIO_VSOCK_OP_CREDIT_REQUEST`: asks for a credit update.
pub const OP_CREDIT_REQUEST: u16 = 7;

/// `VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE`: the sender will receive no more data.
pub const SHUTDOWN_F_RECEIVE: u32 = 1 << 0;
/// `VIRTIO_VSOCK_SHUTDOWN_F_SEND`: the sender will send no more data.
pub const SHUTDOWN_F_SEND: u32 = 1 << 1;
/// Both shutdown flags.
pub const SHUTDOWN_F_BOTH: u32 = SHUTDOWN_F_RECEIVE | SHUTDOWN_F_SEND;

/// The most payload one packet carries either way (Linux's
/// `VIRTIO_VSOCK_MAX_PKT_BUF_SIZE`). A transmit packet claiming more is
/// malformed.
pub const MAX_PKT_DATA: u32 = 64 << 10;

/// A copy of a packet header, in host byte order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// Source CID.
    pub src_cid: u64,
    /// Destination CID.
    pub dst_cid: u64,
    /// Source port.
    pub src_port: u32,
    /// Destination port.
    pub dst_port: u32,
    /// Payload length.
    pub len: u32,
    /// Socket type.
    pub type_: u16,
    /// Operation (`OP_*`).
    pub op: u16,
    /// Operation flags (`SHUTDOWN_F_*`).
    pub flags: u32,
    /// The sender's receive buffer size for this connection.
    pub buf_alloc: u32,
    /// The sender's free-running count of bytes it has consumed.
    pub fwd_cnt: u32,
}

impl Header {
    /// The header of `pkt`.
    fn of(pkt: &VsockPacket<'_, ()>) -> Header {
        Header {
            src_cid: pkt.src_cid(),
            dst_cid: pkt.dst_cid(),
            src_port: pkt.src_port(),
            dst_port: pkt.dst_port(),
            len: pkt.len(),
            type_: pkt.type_(),
            op: pkt.op(),
            flags: pkt.flags(),
            buf_alloc: pkt.buf_alloc(),
            fwd_cnt: pkt.fwd_cnt(),
        }
    }

    /// The RST answering `self` (addresses swapped, same type).
    pub fn rst_reply(&self) -> Header {
        Header {
            src_cid: self.dst_cid,
            dst_cid: self.src_cid,
            src_port: self.dst_port,
            dst_port: self.src_port,
            type_: self.type_,
            op: OP_RST,
            ..Header::default()
        }
    }
}

/// Why a chain is not a packet (the crate's error, as text: it is only
/// logged and counted).
#[derive(Debug, thiserror::Error)]
#[error("malformed vsock packet: {0}")]
pub struct PacketError(String);

/// A transmit packet: its header and, for a payload, the guest buffer that
/// holds exactly `header.len` bytes.
pub struct TxPacket<'a> {
    /// The header, copied.
    pub header: Header,
    /// The payload in guest memory (`None` when `len` is 0).
    pub data: Option<VolatileSlice<'a, ()>>,
}

/// Parses the transmit chain `chain`.
pub fn parse_tx<'a>(
    mem: &'a GuestMemoryMmap,
    chain: &mut DescriptorChain<&'a GuestMemoryMmap>,
) -> Result<TxPacket<'a>, PacketError> {
    let pkt = VsockPacket::from_tx_virtq_chain(mem, chain, MAX_PKT_DATA)
        .map_err(|e| PacketError(e.to_string()))?;
    Ok(TxPacket {
        header: Header::of(&pkt),
        data: pkt.data_slice().copied(),
    })
}

/// A receive chain being filled: the header goes in last, once the
/// payload is known.
pub struct RxPacket<'a> {
    pkt: VsockPacket<'a, ()>,
}

impl<'a> RxPacket<'a> {
    /// Takes the receive chain `chain` (device-writable: a header
    /// descriptor and room for payload).
    pub fn new(
        mem: &'a GuestMemoryMmap,
        chain: &mut DescriptorChain<&'a GuestMemoryMmap>,
    ) -> Result<Self, PacketError> {
        // The payload is limited by the caller (credit and MAX_PKT_DATA);
        // a larger buffer is fine, only its front is used.
        let pkt = VsockPacket::from_rx_virtq_chain(mem, chain, u32::MAX)
            .map_err(|e| PacketError(e.to_string()))?;
        Ok(RxPacket { pkt })
    }

    /// Room for payload, at most [`MAX_PKT_DATA`].
    pub fn room(&self) -> usize {
        self.pkt
            .data_slice()
            .map_or(0, |d| d.len().min(MAX_PKT_DATA as usize))
    }

    /// The first `len` bytes of the payload buffer (`len` <= [`Self::room`]).
    pub fn data(&self, len: usize) -> Option<VolatileSlice<'a, ()>> {
        self.pkt.data_slice()?.subslice(0, len).ok()
    }

    /// Writes `h` as the packet's header; returns the used length (header
    /// plus `h.len` payload bytes, already written through [`Self::data`]).
    pub fn finish(mut self, h: &Header) -> u32 {
        self.pkt
            .set_src_cid(h.src_cid)
            .set_dst_cid(h.dst_cid)
            .set_src_port(h.src_port)
            .set_dst_port(h.dst_port)
            .set_len(h.len)
            .set_type(h.type_)
            .set_op(h.op)
            .set_flags(h.flags)
            .set_buf_alloc(h.buf_alloc)
            .set_fwd_cnt(h.fwd_cnt);
        // HEADER_LEN is 44 and h.len at most MAX_PKT_DATA.
        HEADER_LEN as u32 + h.len
    }
}
