//! virtio-vsock (virtio 1.2 section 5.10), stream sockets only, with the
//! host side on Unix sockets in Firecracker's convention.
//!
//! Queues: 0 rx (device to driver), 1 tx (driver to device), 2 event
//! (written once after a snapshot restore: `VIRTIO_VSOCK_EVENT_TRANSPORT_RESET`,
//! since the snapshot's connections have no host sockets in the new
//! process; the driver drops them, as with Firecracker). The configuration
//! space is `le64 guest_cid`. No feature bits beyond `VIRTIO_F_VERSION_1`, so the
//! stream type is implied (5.10.3).
//!
//! # Host convention (Firecracker's)
//!
//! The device listens on a Unix socket at `PATH` (`--vsock cid=N,socket=PATH`),
//! created when the backend is built and removed when the device is
//! dropped ([`unix::Listener`]). A stale socket file there (one nobody
//! listens on: connecting is refused) is replaced; a live socket or any
//! other file is an error naming the path.
//! - Host to guest: a host process connects to `PATH` and writes
//!   `CONNECT <port>\n`. The device sends the guest a REQUEST from the host
//!   (CID 2) to that guest port, from a host-side port of its own (from
//!   2^30 up). On the guest's RESPONSE it writes `OK <host-side port>\n` to
//!   the host process, and the socket carries the stream from then on. If
//!   the guest answers with an RST (nobody listens there), or not at all
//!   within [`muxer::CONNECT_TIMEOUT`], the host process's socket is
//!   closed; so is it if the line does not come within that time.
//! - Guest to host: a guest connection to CID 2 port `P` connects to the
//!   Unix socket `PATH_P` (`/tmp/v.sock_5678` for port 5678). Nobody
//!   listening there is an RST to the guest.
//!
//! # What the guest controls, and how it is checked
//! - Transmit chains are parsed by rust-vmm's `virtio-vsock` ([`packet`]):
//!   a header in the head descriptor, payload (at most
//!   [`packet::MAX_PKT_DATA`]) in it or the next one, in guest RAM. A
//!   malformed chain is returned unread and counted.
//! - A packet whose source is not the guest's CID or whose destination is
//!   not the host is dropped; one of another type than STREAM, or for no
//!   connection, gets an RST (never an RST for an RST).
//! - Credit (5.10.6.3, [`credit`]): the device never sends a connection
//!   more payload than the guest's `buf_alloc` and `fwd_cnt` leave room for,
//!   and advertises [`credit::BUF_ALLOC`] per connection; guest bytes a host
//!   socket does not take at once wait in that buffer and no more: a guest
//!   that sends beyond its credit has the connection reset.
//! - Connections are at most [`MAX_CONNECTIONS`] (host processes still
//!   sending their `CONNECT` line included); RSTs for packets with no
//!   connection wait in a queue of [`muxer::MAX_STRAY_RSTS`], and while it
//!   is full the device leaves transmit chains in their queue (5.10.6.1:
//!   the driver must keep serving the rx queue).
//!
//! # Threads
//! Sockets are opened, read and written only on the device thread
//! (`process_queue`, `process_host_fd`). Every host descriptor sits in the
//! muxer's own epoll instance, whose descriptor is the device's one host
//! fd (see [`muxer`] for why). Reset runs on a vCPU thread and only closes
//! sockets and frees memory.

pub mod connection;
pub mod credit;
pub mod muxer;
pub mod packet;
pub mod unix;

use std::os::unix::io::RawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use virtio_bindings::virtio_ids::VIRTIO_ID_VSOCK;
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::Bytes;

use super::device::{DeviceError, QueueContext, VirtioDevice};
use super::identity::BackendIdentity;
use muxer::Muxer;
use packet::{parse_tx, RxPacket};

/// Each queue's maximum size.
pub const VSOCK_QUEUE_SIZE: u16 = 256;
/// The rx queue (packets to the guest).
pub const RXQ: usize = 0;
/// The tx queue (packets from the guest).
pub const TXQ: usize = 1;
/// The event queue.
pub const EVENTQ: usize = 2;
/// The most connections at once (each may hold
/// [`credit::BUF_ALLOC`] bytes for its host socket).
pub const MAX_CONNECTIONS: usize = 256;
/// `VIRTIO_VSOCK_EVENT_TRANSPORT_RESET` (5.10.6.6): the event's `le32 id`.
pub const EVENT_TRANSPORT_RESET: u32 = 0;
/// `struct virtio_vsock_event`'s size.
const EVENT_LEN: u32 = 4;

/// Errors building a vsock backend (before the guest runs).
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// Something other than a socket is at the path.
    #[error("vsock socket {path}: the path exists and is not a socket (not replacing it)")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// A process listens on the socket at the path.
    #[error("vsock socket {path}: another process is listening there (not replacing it)")]
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// Connecting to the socket at the path, to see whether it is stale,
    /// failed other than by being refused (no permission, say).
    #[error("vsock socket {path}: cannot tell whether the socket there is in use: {source}")]
    Probe {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A stale socket file could not be removed.
    #[error("vsock socket {path}: removing the stale socket failed: {source}")]
    RemoveStale {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Binding or listening failed (a missing directory, no permission, a
    /// path too long for a Unix socket).
    #[error("vsock socket {path}: cannot listen there: {source}")]
    Listen {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The device's epoll instance or timer could not be made.
    #[error("vsock: creating the device's epoll instance or timer failed: {0}")]
    Epoll(std::io::Error),
}

impl VsockError {
    /// Whether the user's input (the path) is at fault.
    pub fn is_bad_path(&self) -> bool {
        !matches!(self, VsockError::Epoll(_))
    }
}

/// The device's counters, shared with the VMM (relaxed atomics).
#[derive(Debug, Default)]
pub struct VsockMetrics {
    tx_packets: AtomicU64,
    rx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    rx_bytes: AtomicU64,
    invalid_chains: AtomicU64,
    dropped_packets: AtomicU64,
    resets: AtomicU64,
    stray_resets: AtomicU64,
    refused: AtomicU64,
    host_connections: AtomicU64,
    guest_connections: AtomicU64,
    credit_violations: AtomicU64,
    protocol_errors: AtomicU64,
    bad_handshakes: AtomicU64,
    timeouts: AtomicU64,
    host_errors: AtomicU64,
}

macro_rules! getters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        impl VsockMetrics {
            $($(#[$doc])* pub fn $name(&self) -> u64 {
                self.$name.load(Ordering::Relaxed)
            })*
        }
    };
}

getters! {
    /// Packets taken from the tx queue (well-formed chains).
    tx_packets,
    /// Packets written into rx buffers.
    rx_packets,
    /// Guest payload bytes written to host sockets.
    tx_bytes,
    /// Host bytes written into guest buffers.
    rx_bytes,
    /// Chains that were not a packet (returned unread or unfilled).
    invalid_chains,
    /// Packets dropped: wrong CIDs, or no room left to answer them.
    dropped_packets,
    /// Connections the device reset (protocol or credit violation, host
    /// socket error, end of a clean disconnect).
    resets,
    /// RSTs sent for packets with no connection.
    stray_resets,
    /// Connections refused: nobody listening at `PATH_<port>`, or too
    /// many connections.
    refused,
    /// Host-initiated connections the guest accepted.
    host_connections,
    /// Guest-initiated connections to a listening host socket.
    guest_connections,
    /// Connections reset because the guest sent beyond its credit.
    credit_violations,
    /// Connections reset because the guest broke the protocol.
    protocol_errors,
    /// Host processes whose first line was not `CONNECT <port>`.
    bad_handshakes,
    /// Host processes that did not send their `CONNECT` line, and
    /// REQUESTs the guest did not answer, within the connect timeout.
    timeouts,
    /// Host socket calls that failed.
    host_errors,
}

impl VsockMetrics {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A virtio socket device with its host side on Unix sockets.
#[derive(Debug)]
pub struct VirtioVsock {
    cid: u64,
    muxer: Muxer,
    metrics: Arc<VsockMetrics>,
    /// The tx queue was left with chains in it for want of room to answer.
    tx_stalled: bool,
    /// Restored from a snapshot: the driver is still to be told its
    /// connections are gone.
    reset_event: bool,
}

impl VirtioVsock {
    /// A device for guest CID `cid`, listening at `path` (see the module
    /// docs). Call before the guest runs: the socket is made here.
    pub fn new(cid: u64, path: &Path) -> Result<Self, VsockError> {
        let metrics = Arc::new(VsockMetrics::default());
        Ok(VirtioVsock {
            cid,
            muxer: Muxer::new(path, cid, metrics.clone())?,
            metrics,
            tx_stalled: false,
            reset_event: false,
        })
    }

    /// The device's counters.
    pub fn metrics(&self) -> Arc<VsockMetrics> {
        self.metrics.clone()
    }

    /// Sets how long a host process may take to send its `CONNECT` line
    /// and the guest to answer the REQUEST
    /// ([`muxer::CONNECT_TIMEOUT`] by default).
    pub fn with_connect_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.muxer.set_connect_timeout(timeout);
        self
    }

    /// Takes every transmit packet the device can answer.
    fn transmit(&mut self, ctx: &mut QueueContext<'_>) -> Result<(), DeviceError> {
        let mut used = false;
        self.tx_stalled = false;
        loop {
            if !self.muxer.can_take_tx() {
                self.tx_stalled = true;
                break;
            }
            let Some(mut chain) = ctx.pop(TXQ) else {
                break;
            };
            let head = chain.head_index();
            match parse_tx(ctx.mem, &mut chain) {
                Ok(pkt) => self.muxer.tx_packet(&pkt.header, pkt.data),
                Err(e) => {
                    log::debug!("vsock: tx: {e}");
                    VsockMetrics::add(&self.metrics.invalid_chains, 1);
                }
            }
            // The device writes nothing into transmit buffers.
            ctx.add_used(TXQ, head, 0)?;
            used = true;
        }
        if used {
            ctx.signal_used(TXQ)?;
        }
        Ok(())
    }

    /// Fills receive buffers while packets and buffers last.
    fn deliver(&mut self, ctx: &mut QueueContext<'_>) -> Result<(), DeviceError> {
        if !ctx.queues.get(RXQ).is_some_and(|q| q.ready()) {
            return Ok(());
        }
        let mut used = false;
        while self.muxer.has_rx() {
            let Some(mut chain) = ctx.pop(RXQ) else {
                break;
            };
            let head = chain.head_index();
            let len = match RxPacket::new(ctx.mem, &mut chain) {
                Ok(rx) => match self.muxer.next_rx(&rx) {
                    Some(h) => rx.finish(&h),
                    None => {
                        // Nothing to say after all: the buffer stays posted.
                        if let Some(q) = ctx.queues.get_mut(RXQ) {
                            q.go_to_previous_position();
                        }
                        break;
                    }
                },
                Err(e) => {
                    log::debug!("vsock: rx: {e}");
                    VsockMetrics::add(&self.metrics.invalid_chains, 1);
                    0
                }
            };
            ctx.add_used(RXQ, head, len)?;
            used = true;
        }
        if used {
            ctx.signal_used(RXQ)?;
        }
        Ok(())
    }

    /// After a restore: tells the driver, once, that every connection is
    /// gone (`VIRTIO_VSOCK_EVENT_TRANSPORT_RESET` in an event buffer). With
    /// no event buffer posted yet it waits: the driver's notify of the
    /// event queue brings the device back here.
    fn announce_transport_reset(&mut self, ctx: &mut QueueContext<'_>) -> Result<(), DeviceError> {
        if !self.reset_event || !ctx.queues.get(EVENTQ).is_some_and(|q| q.ready()) {
            return Ok(());
        }
        let Some(chain) = ctx.pop(EVENTQ) else {
            return Ok(());
        };
        let head = chain.head_index();
        let mem = ctx.mem;
        let written = match chain.writable().next() {
            Some(d) if d.len() >= EVENT_LEN => mem
                .write_obj(EVENT_TRANSPORT_RESET.to_le(), d.addr())
                .is_ok(),
            _ => false,
        };
        if written {
            self.reset_event = false;
            log::info!("vsock: restored; the driver was told its connections are gone");
        } else {
            // Returned empty; the next buffer is tried at the next turn.
            VsockMetrics::add(&self.metrics.invalid_chains, 1);
        }
        ctx.add_used(EVENTQ, head, if written { EVENT_LEN } else { 0 })?;
        ctx.signal_used(EVENTQ).map(|_| ())
    }

    /// Host events, transmit (if `tx`), delivery; transmit again while
    /// delivery makes room for the answers a stalled tx queue waits for.
    fn run(&mut self, ctx: &mut QueueContext<'_>, tx: bool) -> Result<(), DeviceError> {
        self.announce_transport_reset(ctx)?;
        self.muxer.host_events();
        if tx || self.tx_stalled {
            self.transmit(ctx)?;
        }
        self.deliver(ctx)?;
        while self.tx_stalled && self.muxer.can_take_tx() {
            self.transmit(ctx)?;
            self.deliver(ctx)?;
        }
        Ok(())
    }
}

impl VirtioDevice for VirtioVsock {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[VSOCK_QUEUE_SIZE; 3]
    }

    fn features(&self) -> u64 {
        0
    }

    /// `struct virtio_vsock_config { le64 guest_cid; }`.
    fn config_space(&self) -> Vec<u8> {
        self.cid.to_le_bytes().to_vec()
    }

    fn process_queue(
        &mut self,
        index: usize,
        ctx: &mut QueueContext<'_>,
    ) -> Result<(), DeviceError> {
        // Every notification also sweeps the host side: events that came
        // while the device was inactive are still queued there.
        self.run(ctx, index == TXQ)
    }

    /// The muxer's epoll descriptor.
    fn host_fds(&self) -> Vec<RawFd> {
        vec![self.muxer.epoll_fd()]
    }

    fn process_host_fd(
        &mut self,
        fd: RawFd,
        ctx: &mut QueueContext<'_>,
    ) -> Result<(), DeviceError> {
        if fd != self.muxer.epoll_fd() {
            return Ok(());
        }
        self.run(ctx, false)
    }

    /// Ends every connection (host sockets closed); keeps listening.
    fn reset(&mut self) {
        self.muxer.reset();
        self.tx_stalled = false;
        // A new driver session has no connections to be told about.
        self.reset_event = false;
    }

    /// The guest's CID and the listening socket. Connections are not
    /// saved (their host sockets belong to this process): the restored
    /// device announces a transport reset ([`Self::restored`]), so the
    /// driver drops them, as Firecracker's does. Transmit chains the
    /// device has not taken stay in their queue for the restored device.
    fn snapshot_identity(&self) -> BackendIdentity {
        BackendIdentity::Vsock {
            cid: self.cid,
            socket: self.muxer.path().to_path_buf(),
        }
    }

    /// Tells the driver, at the device's first turn, that the snapshot's
    /// connections are gone. No system call here (the VMM's main thread).
    fn restored(&mut self) {
        self.reset_event = true;
    }

    fn shutdown(&mut self) {
        self.muxer.reset();
    }
}

#[cfg(test)]
mod tests;
