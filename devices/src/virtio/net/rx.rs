//! The receive path (virtio 1.2 section 5.1.6.4): frames from the tap into
//! the driver's receiveq buffers.
//!
//! A frame is read from the tap into a host buffer, its header checked
//! ([`super::offload::check_rx`]), then copied into the guest's writable
//! buffers:
//! - without `VIRTIO_NET_F_MRG_RXBUF`, into one chain; a frame larger than
//!   that chain is dropped and counted, and the chain returned with used
//!   length 0 (the spec asks drivers for 1526-byte, or with guest TSO
//!   65562-byte, buffers: a smaller one is the driver's mistake);
//! - with it, across as many chains as it takes, `num_buffers` telling the
//!   driver how many. A frame larger than a whole ring of the driver's
//!   buffers is dropped; until the driver posts enough, it waits.
//!
//! When the driver has no buffer for it, the frame stays in the host
//! buffer (one frame at most: the tap's kernel queue holds the rest, and
//! drops beyond its length) and the device stops reading the tap. It
//! retries when the receiveq is notified. The tap is watched
//! edge-triggered, so every retry reads until `EAGAIN` or until buffers run
//! out again; at most [`RX_BUDGET`] frames per call, so one busy tap cannot
//! keep the device thread from its other devices (the device then asks to
//! be called again through its retry eventfd).

use std::io;

use virtio_queue::{DescriptorChain, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::offload::{check_rx, NUM_BUFFERS_OFFSET};
use super::tap::{TapIo, VNET_HDR_LEN};
use super::{NetMetrics, ETH_HLEN, RXQ};
use crate::virtio::device::{DeviceError, QueueContext};

/// The largest frame the tap can hand over: a 64 KiB IP packet (GSO) with
/// its Ethernet and VLAN headers, and the virtio-net header (65562, the
/// receive buffer size the spec asks of drivers using guest TSO).
pub const RX_FRAME_MAX: usize = VNET_HDR_LEN + 65550;
/// Frames moved per call at most (see the module docs).
pub const RX_BUDGET: usize = 256;

/// How far a call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RxEnd {
    /// The tap has nothing more (or the receiveq is not set up).
    Drained,
    /// The driver has no buffer for the pending frame.
    NoBuffers,
    /// [`RX_BUDGET`] frames were moved and the tap may have more.
    Budget,
}

/// Where one frame went.
enum Placed {
    Delivered,
    NoBuffers,
    /// Dropped; `returned`: a chain went back to the driver with length 0.
    TooLarge {
        returned: bool,
    },
}

/// The receive side's state.
pub(super) struct Rx {
    /// The frame being delivered; one byte longer than [`RX_FRAME_MAX`]
    /// so a truncated read shows.
    buf: Vec<u8>,
    /// Length of the frame in `buf` waiting for guest buffers.
    pending: Option<usize>,
    /// The chains (head, bytes written) one frame is spread over.
    chains: Vec<(u16, u32)>,
}

impl Rx {
    pub(super) fn new() -> Rx {
        Rx {
            buf: vec![0; RX_FRAME_MAX + 1],
            pending: None,
            chains: Vec::new(),
        }
    }

    /// Whether a frame waits for guest buffers.
    pub(super) fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Drops the pending frame (a device reset: it belonged to the old
    /// driver's session), counting it.
    pub(super) fn reset(&mut self, metrics: &NetMetrics) {
        if self.pending.take().is_some() {
            NetMetrics::add(&metrics.rx_dropped, 1);
        }
    }

    /// Moves frames from `tap` into the receiveq while both last.
    pub(super) fn receive(
        &mut self,
        tap: &mut dyn TapIo,
        ctx: &mut QueueContext<'_>,
        offloads: u32,
        metrics: &NetMetrics,
    ) -> Result<RxEnd, DeviceError> {
        // The tap fires whatever the driver set up: without a ready
        // receiveq there is nowhere to deliver.
        if !ctx.queues.get(RXQ).is_some_and(|q| q.ready()) {
            return Ok(RxEnd::Drained);
        }
        let mrg =
            ctx.features & super::bit(virtio_bindings::virtio_net::VIRTIO_NET_F_MRG_RXBUF) != 0;
        let mut used = false;
        let mut moved = 0;
        let result = loop {
            if moved == RX_BUDGET {
                break Ok(RxEnd::Budget);
            }
            let len = match self.pending.take() {
                Some(len) => len,
                None => match self.read(tap, offloads, metrics) {
                    Ok(Some(len)) => len,
                    Ok(None) => {
                        // Dropped: it counts against the budget too.
                        moved += 1;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(RxEnd::Drained),
                    Err(e) => {
                        NetMetrics::add(&metrics.tap_errors, 1);
                        break Err(DeviceError::Host(e));
                    }
                },
            };
            moved += 1;
            match self.place(len, mrg, ctx) {
                Ok(Placed::Delivered) => {
                    used = true;
                    NetMetrics::add(&metrics.rx_frames, 1);
                    NetMetrics::add(&metrics.rx_bytes, (len - VNET_HDR_LEN) as u64);
                }
                Ok(Placed::TooLarge { returned }) => {
                    used |= returned;
                    NetMetrics::add(&metrics.rx_dropped, 1);
                    log::debug!(
                        "virtio-net: a {len}-byte frame does not fit the driver's buffers; dropped"
                    );
                }
                Ok(Placed::NoBuffers) => {
                    self.pending = Some(len);
                    break Ok(RxEnd::NoBuffers);
                }
                Err(e) => {
                    // The driver broke the contract while this frame was
                    // placed: it is lost with the device's state.
                    NetMetrics::add(&metrics.rx_dropped, 1);
                    break Err(e);
                }
            }
        };
        if used {
            ctx.signal_used(RXQ)?;
        }
        result
    }

    /// Reads one frame from the tap into `buf`: `Some(len)` if it is one
    /// to deliver, `None` if it was dropped (counted).
    fn read(
        &mut self,
        tap: &mut dyn TapIo,
        offloads: u32,
        metrics: &NetMetrics,
    ) -> io::Result<Option<usize>> {
        let n = loop {
            match tap.read_frame(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            // Not a frame; a tap never returns this. Stop, as on EAGAIN.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let header_ok = match self.buf.get_mut(..VNET_HDR_LEN) {
            Some(hdr) if (VNET_HDR_LEN + ETH_HLEN..=RX_FRAME_MAX).contains(&n) => {
                check_rx(hdr, offloads)
                    .map_err(|why| log::debug!("virtio-net: tap frame refused: {why:?}"))
                    .is_ok()
            }
            _ => {
                log::debug!("virtio-net: tap frame of {n} bytes refused (too short or too long)");
                false
            }
        };
        if !header_ok {
            NetMetrics::add(&metrics.rx_dropped, 1);
            return Ok(None);
        }
        Ok(Some(n))
    }

    /// Copies the frame of `len` bytes in `buf` into receive chains.
    fn place(
        &mut self,
        len: usize,
        mrg: bool,
        ctx: &mut QueueContext<'_>,
    ) -> Result<Placed, DeviceError> {
        let size = ctx.queues.get(RXQ).map_or(0, |q| q.size());
        let frame = self.buf.get(..len).unwrap_or_default();
        let mut off = 0;
        let mut num_buffers_at = [None; 2];
        self.chains.clear();
        while off < len {
            if self.chains.len() >= usize::from(size) {
                // A whole ring of buffers is not enough: it never will be.
                rewind(ctx, self.chains.len());
                return Ok(Placed::TooLarge { returned: false });
            }
            let Some(chain) = ctx.pop(RXQ) else {
                rewind(ctx, self.chains.len());
                return Ok(Placed::NoBuffers);
            };
            let head = chain.head_index();
            let before = off;
            fill_chain(chain, ctx.mem, frame, &mut off, &mut num_buffers_at)?;
            let written = u32::try_from(off - before).unwrap_or(u32::MAX);
            if !mrg && off < len {
                ctx.add_used(RXQ, head, 0)?;
                return Ok(Placed::TooLarge { returned: true });
            }
            self.chains.push((head, written));
        }
        // Every byte was written, so both bytes of num_buffers were.
        let count = u16::try_from(self.chains.len()).unwrap_or(u16::MAX);
        for (at, byte) in num_buffers_at.iter().zip(count.to_le_bytes()) {
            if let Some(addr) = at {
                ctx.mem
                    .write_obj(byte, *addr)
                    .map_err(|e| DeviceError::NeedsReset(format!("receive buffer: {e}")))?;
            }
        }
        for &(head, written) in &self.chains {
            ctx.add_used(RXQ, head, written)?;
        }
        Ok(Placed::Delivered)
    }
}

/// Puts `n` popped chains back: they stay available for the next frame.
fn rewind(ctx: &mut QueueContext<'_>, n: usize) {
    if let Some(q) = ctx.queues.get_mut(RXQ) {
        for _ in 0..n {
            q.go_to_previous_position();
        }
    }
}

/// Writes `frame[*off..]` into the writable buffers of `chain` while both
/// last, advancing `off`; notes where bytes 10 and 11 (`num_buffers`) went.
/// The rest of a chain the frame does not reach is not looked at.
fn fill_chain(
    mut chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    frame: &[u8],
    off: &mut usize,
    num_buffers_at: &mut [Option<GuestAddress>; 2],
) -> Result<(), DeviceError> {
    let head = chain.head_index();
    let mut seen = 0usize;
    let mut more = false;
    while *off < frame.len() {
        let Some(desc) = chain.next() else {
            break;
        };
        seen += 1;
        more = desc.has_next();
        // Readable descriptors have no place in a receive chain: skipped.
        if !desc.is_write_only() || desc.len() == 0 {
            continue;
        }
        let n = (frame.len() - *off).min(desc.len() as usize);
        let bytes = frame.get(*off..*off + n).unwrap_or_default();
        mem.write_slice(bytes, desc.addr()).map_err(|_| {
            DeviceError::NeedsReset(format!(
                "receive chain {head}: a {}-byte buffer at {:#x} is not in guest RAM",
                desc.len(),
                desc.addr().0
            ))
        })?;
        for (i, slot) in num_buffers_at.iter_mut().enumerate() {
            let at = NUM_BUFFERS_OFFSET + i;
            if (*off..*off + n).contains(&at) {
                *slot = desc
                    .addr()
                    .0
                    .checked_add((at - *off) as u64)
                    .map(GuestAddress);
            }
        }
        *off += n;
    }
    if seen == 0 {
        return Err(DeviceError::NeedsReset(format!(
            "receive chain head {head} is not a valid descriptor"
        )));
    }
    if *off < frame.len() && more {
        return Err(DeviceError::NeedsReset(format!(
            "receive chain {head} is longer than the queue, loops, or leaves the descriptor table"
        )));
    }
    Ok(())
}
