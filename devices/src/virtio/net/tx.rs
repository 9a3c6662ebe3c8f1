//! The transmit path (virtio 1.2 section 5.1.6.2): frames from the
//! driver's transmitq chains to the tap.
//!
//! Each chain's readable bytes (header, then the Ethernet frame, in any
//! split across descriptors) are gathered into one host buffer and written
//! to the tap in one `write(2)`, which the tap takes as one frame. What
//! the guest controls, and how it is checked:
//! - A chain longer than the queue, looping, leaving the descriptor table
//!   or describing more than 4 GiB is a broken contract: NEEDS_RESET.
//! - A frame larger than [`TX_FRAME_MAX`] (64 KiB plus the header), one
//!   shorter than the header plus an Ethernet header, one with a buffer
//!   outside guest RAM, or one whose header asks for an offload the driver
//!   did not accept is dropped and counted; its chain is returned.
//! - Writable descriptors are ignored (the driver must not send any); the
//!   used length is always 0.

use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestMemoryMmap};

use super::offload::{check_tx, host_offloads};
use super::tap::{TapIo, VNET_HDR_LEN};
use super::{NetMetrics, ETH_HLEN, TXQ};
use crate::virtio::device::{DeviceError, QueueContext};

/// The largest transmitted frame: the header and 64 KiB (a GSO frame's
/// IP packet is at most 64 KiB; a plain one is at most the MTU).
pub const TX_FRAME_MAX: usize = VNET_HDR_LEN + (64 << 10);

/// What one chain held.
#[derive(Debug, PartialEq, Eq)]
enum Gathered {
    /// A frame of this many bytes (header included) is in the buffer.
    Frame(usize),
    /// Not a frame to send; why.
    Drop(&'static str),
}

/// The transmit side's state.
pub(super) struct Tx {
    buf: Vec<u8>,
}

impl Tx {
    pub(super) fn new() -> Tx {
        Tx {
            buf: vec![0; TX_FRAME_MAX],
        }
    }

    /// Sends every available transmit chain, then interrupts once.
    pub(super) fn transmit(
        &mut self,
        tap: &mut dyn TapIo,
        ctx: &mut QueueContext<'_>,
        metrics: &NetMetrics,
    ) -> Result<(), DeviceError> {
        let host = host_offloads(ctx.features);
        let mut used = false;
        let mut result = Ok(());
        while let Some(chain) = ctx.pop(TXQ) {
            let head = chain.head_index();
            let gathered = match gather(chain, ctx.mem, &mut self.buf) {
                Ok(g) => g,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let outcome = match gathered {
                Gathered::Frame(len) => {
                    let frame = self.buf.get(..len).unwrap_or_default();
                    match check_tx(frame, host) {
                        Ok(()) => send(tap, frame, metrics),
                        Err(why) => {
                            log::debug!("virtio-net: transmit header refused: {why:?}");
                            Err(())
                        }
                    }
                }
                Gathered::Drop(why) => {
                    log::debug!("virtio-net: transmit chain {head} dropped: {why}");
                    Err(())
                }
            };
            if outcome.is_err() {
                NetMetrics::add(&metrics.tx_dropped, 1);
            }
            // The device writes nothing into transmit buffers.
            ctx.add_used(TXQ, head, 0)?;
            used = true;
        }
        if used {
            ctx.signal_used(TXQ)?;
        }
        result
    }
}

/// Writes one frame to the tap, counting it.
fn send(tap: &mut dyn TapIo, frame: &[u8], metrics: &NetMetrics) -> Result<(), ()> {
    loop {
        match tap.write_frame(frame) {
            Ok(_) => {
                NetMetrics::add(&metrics.tx_frames, 1);
                NetMetrics::add(&metrics.tx_bytes, (frame.len() - VNET_HDR_LEN) as u64);
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // The tap is down, or refused the header: the frame is
                // lost, as on a wire.
                log::debug!("virtio-net: writing a frame to the tap failed: {e}");
                NetMetrics::add(&metrics.tap_errors, 1);
                return Err(());
            }
        }
    }
}

/// Copies the readable bytes of `chain` into `buf` (up to its length).
fn gather(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    buf: &mut [u8],
) -> Result<Gathered, DeviceError> {
    let head = chain.head_index();
    let mut seen = 0usize;
    let mut more = false;
    let mut total = 0u64;
    let mut len = 0usize;
    let mut outside = false;
    for desc in chain {
        seen += 1;
        more = desc.has_next();
        if desc.is_write_only() {
            continue;
        }
        total += u64::from(desc.len());
        if outside || total > buf.len() as u64 {
            // Keep walking: the chain's shape is still checked.
            continue;
        }
        let n = desc.len() as usize;
        let copied = buf
            .get_mut(len..len + n)
            .is_some_and(|dst| mem.read_slice(dst, desc.addr()).is_ok());
        if copied {
            len += n;
        } else {
            outside = true;
        }
    }
    if seen == 0 {
        return Err(DeviceError::NeedsReset(format!(
            "transmit chain head {head} is not a valid descriptor"
        )));
    }
    if more {
        return Err(DeviceError::NeedsReset(format!(
            "transmit chain {head} is longer than the queue, loops, or leaves the descriptor table"
        )));
    }
    Ok(if outside {
        Gathered::Drop("a buffer is outside guest RAM")
    } else if total > buf.len() as u64 {
        Gathered::Drop("larger than 64 KiB plus the header")
    } else if len < VNET_HDR_LEN + ETH_HLEN {
        Gathered::Drop("shorter than the header and an Ethernet header")
    } else {
        Gathered::Frame(len)
    })
}
