//! virtio-net (virtio 1.2 section 5.1) on a host tap: one receiveq
//! (queue 0) and one transmitq (queue 1), no control queue, no
//! multiqueue.
//!
//! Features offered (5.1.3): `VIRTIO_NET_F_MAC` (the MAC in the
//! configuration space), `VIRTIO_NET_F_STATUS` (the link is always up),
//! `VIRTIO_NET_F_MRG_RXBUF`, the host-bound offloads `VIRTIO_NET_F_CSUM`,
//! `HOST_TSO4`, `HOST_TSO6`, `HOST_UFO` (the tap's kernel side completes
//! them), and, when the tap accepts `TUNSETOFFLOAD` with them, the
//! guest-bound ones `GUEST_CSUM`, `GUEST_TSO4`, `GUEST_TSO6`,
//! `GUEST_UFO`. Every frame carries the 12-byte `virtio_net_hdr_v1` of a
//! VERSION_1 device, which is also the tap's header (see [`tap`]), so
//! frames pass through unchanged apart from `num_buffers`.
//!
//! Offloads: the tap starts with none, which is correct for a driver that
//! accepts none. [`VirtioDevice::activate`] runs on a vCPU thread, whose
//! seccomp list has no `ioctl`, so it only records what the driver
//! accepted; the device thread sets the tap's offloads (`TUNSETOFFLOAD`)
//! before it touches a queue after activation, and only if they differ
//! from what the tap has. Each received header is still checked against
//! the offloads in force ([`offload`]), so a frame the tap queued under an
//! earlier driver's settings never reaches a driver that cannot take it.
//!
//! The paths: [`rx`] (tap to receiveq: bounded, one pending frame at
//! most, frames too large for the driver's buffers dropped) and [`tx`]
//! (transmitq to tap: chains gathered up to 64 KiB plus the header). What
//! the guest controls is checked there. The host side is a [`TapIo`], so
//! tests and fuzzing run the device on in-memory fakes.
//!
//! Counters ([`NetMetrics`]): frames and bytes each way, drops each way,
//! failed tap reads and writes.

pub mod offload;
pub mod rx;
pub mod tap;
pub mod tx;

use std::fmt;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_HOST_UFO,
    VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP,
};
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use super::device::{DeviceError, QueueContext, VirtioDevice};
use super::identity::BackendIdentity;
use offload::{tun_offload_flags, TUN_F_ALL};
use rx::{Rx, RxEnd};
pub use tap::{Tap, TapError, TapIo, VNET_HDR_LEN};
use tx::Tx;

/// Each queue's maximum size.
pub const NET_QUEUE_SIZE: u16 = 256;
/// receiveq1.
pub const RXQ: usize = 0;
/// transmitq1.
pub const TXQ: usize = 1;
/// Bytes of an Ethernet header: the shortest frame passed either way.
pub const ETH_HLEN: usize = 14;

const fn bit(b: u32) -> u64 {
    1 << b
}

/// The guest-bound offload features, offered when the tap takes them.
const GUEST_OFFLOADS: u64 = bit(VIRTIO_NET_F_GUEST_CSUM)
    | bit(VIRTIO_NET_F_GUEST_TSO4)
    | bit(VIRTIO_NET_F_GUEST_TSO6)
    | bit(VIRTIO_NET_F_GUEST_UFO);
/// The features offered whatever the tap.
const BASE_FEATURES: u64 = bit(VIRTIO_NET_F_MAC)
    | bit(VIRTIO_NET_F_STATUS)
    | bit(VIRTIO_NET_F_MRG_RXBUF)
    | bit(VIRTIO_NET_F_CSUM)
    | bit(VIRTIO_NET_F_HOST_TSO4)
    | bit(VIRTIO_NET_F_HOST_TSO6)
    | bit(VIRTIO_NET_F_HOST_UFO);

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A random, locally administered, unicast address (the host kernel's
    /// random pool).
    pub fn random() -> std::io::Result<MacAddr> {
        let mut b = [0u8; 6];
        // SAFETY: the kernel writes at most 6 bytes into `b`, a live local
        // array of that length; flags 0 reads the urandom pool.
        let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
        if n != 6 {
            return Err(std::io::Error::last_os_error());
        }
        // Unicast (bit 0 clear), locally administered (bit 1 set).
        b[0] = (b[0] & !0x01) | 0x02;
        Ok(MacAddr(b))
    }

    /// Whether it is a group address (bit 0 of the first byte), which no
    /// interface may have.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Errors creating a network device.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The tap cannot be used.
    #[error("virtio-net: {0}")]
    Tap(#[from] TapError),
    /// The MAC is a multicast address.
    #[error("virtio-net: MAC {0} is a multicast address (low bit of the first byte set); an interface needs a unicast one")]
    MulticastMac(MacAddr),
    /// No random MAC could be made.
    #[error("virtio-net: generating a random MAC failed: {0}")]
    RandomMac(std::io::Error),
    /// The tap refused to go back to no offloads after the probe.
    #[error("virtio-net: resetting the tap's offloads (TUNSETOFFLOAD 0) failed: {0}")]
    Offload(std::io::Error),
    /// The retry eventfd could not be created.
    #[error("virtio-net: creating an eventfd failed: {0}")]
    EventFd(std::io::Error),
}

/// The device's counters, shared with the VMM (relaxed atomics).
#[derive(Debug, Default)]
pub struct NetMetrics {
    rx_frames: AtomicU64,
    rx_bytes: AtomicU64,
    rx_dropped: AtomicU64,
    tx_frames: AtomicU64,
    tx_bytes: AtomicU64,
    tx_dropped: AtomicU64,
    tap_errors: AtomicU64,
}

impl NetMetrics {
    /// Frames delivered to the guest.
    pub fn rx_frames(&self) -> u64 {
        self.rx_frames.load(Ordering::Relaxed)
    }

    /// Bytes of those frames (Ethernet header and payload, no virtio-net
    /// header).
    pub fn rx_bytes(&self) -> u64 {
        self.rx_bytes.load(Ordering::Relaxed)
    }

    /// Frames from the tap not delivered: too large for the driver's
    /// buffers, too short, using an offload not in force, or pending when
    /// the device was reset or the driver broke the contract.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_dropped.load(Ordering::Relaxed)
    }

    /// Frames written to the tap.
    pub fn tx_frames(&self) -> u64 {
        self.tx_frames.load(Ordering::Relaxed)
    }

    /// Bytes of those frames (no virtio-net header).
    pub fn tx_bytes(&self) -> u64 {
        self.tx_bytes.load(Ordering::Relaxed)
    }

    /// Transmit chains not sent: malformed, too large, outside RAM, using
    /// an offload the driver did not accept, or refused by the tap.
    pub fn tx_dropped(&self) -> u64 {
        self.tx_dropped.load(Ordering::Relaxed)
    }

    /// Tap reads, writes and offload settings that failed.
    pub fn tap_errors(&self) -> u64 {
        self.tap_errors.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The tap's offloads: what the driver's features ask for, and what the
/// tap has (set only on the device thread).
#[derive(Debug, Clone, Copy)]
struct Offloads {
    wanted: u32,
    current: u32,
}

/// A virtio network device.
pub struct VirtioNet {
    tap: Box<dyn TapIo>,
    mac: MacAddr,
    features: u64,
    offloads: Offloads,
    rx: Rx,
    tx: Tx,
    /// Written when the receive budget ran out with frames left, so the
    /// device thread comes back after serving the others.
    retry: EventFd,
    metrics: Arc<NetMetrics>,
}

impl fmt::Debug for VirtioNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtioNet")
            .field("mac", &self.mac)
            .field("features", &self.features)
            .field("offloads", &self.offloads)
            .finish()
    }
}

impl VirtioNet {
    /// A device on `tap` (which starts with no offloads, as [`Tap::open`]
    /// leaves it) with guest address `mac`. Offers the guest-bound
    /// offloads if the tap accepts them: probed here, on the thread that
    /// builds devices, not on the device thread.
    pub fn new(mut tap: Box<dyn TapIo>, mac: MacAddr) -> Result<Self, NetError> {
        if mac.is_multicast() {
            return Err(NetError::MulticastMac(mac));
        }
        let mut features = BASE_FEATURES;
        if tap.set_offload(TUN_F_ALL).is_ok() {
            features |= GUEST_OFFLOADS;
            tap.set_offload(0).map_err(NetError::Offload)?;
        }
        Ok(VirtioNet {
            tap,
            mac,
            features,
            offloads: Offloads {
                wanted: 0,
                current: 0,
            },
            rx: Rx::new(),
            tx: Tx::new(),
            retry: EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(NetError::EventFd)?,
            metrics: Arc::default(),
        })
    }

    /// The guest's MAC address.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// The device's counters.
    pub fn metrics(&self) -> Arc<NetMetrics> {
        self.metrics.clone()
    }

    /// Whether a received frame waits for guest buffers.
    pub fn has_pending_frame(&self) -> bool {
        self.rx.has_pending()
    }

    /// The TUN offload flags the tap has now.
    pub fn tap_offloads(&self) -> u32 {
        self.offloads.current
    }

    /// Gives the tap the offloads the driver accepted, if it does not
    /// have them yet (device thread only: an ioctl).
    fn sync_offloads(&mut self) {
        let Offloads { wanted, current } = self.offloads;
        if wanted == current {
            return;
        }
        match self.tap.set_offload(wanted) {
            Ok(()) => {
                log::info!("virtio-net {}: tap offloads set to {wanted:#x}", self.mac);
                self.offloads.current = wanted;
            }
            Err(e) => {
                // The tap keeps its offloads; each received header is
                // still checked against what the driver accepted. Not
                // retried, so a broken tap costs one warning.
                log::warn!("virtio-net: TUNSETOFFLOAD {wanted:#x} failed: {e}");
                NetMetrics::add(&self.metrics.tap_errors, 1);
                self.offloads.wanted = current;
            }
        }
    }

    fn receive(&mut self, ctx: &mut QueueContext<'_>) -> Result<(), DeviceError> {
        // A received frame may use what the driver accepted and the tap
        // was told, both.
        let offloads = tun_offload_flags(ctx.features) & self.offloads.current;
        let end = self
            .rx
            .receive(self.tap.as_mut(), ctx, offloads, &self.metrics)?;
        if end == RxEnd::Budget {
            // A full non-blocking eventfd already has an event pending.
            let _ = self.retry.write(1);
        }
        Ok(())
    }
}

impl VirtioDevice for VirtioNet {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[NET_QUEUE_SIZE, NET_QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        self.features
    }

    /// `struct virtio_net_config` up to `max_virtqueue_pairs`: the MAC,
    /// the status (link up), one queue pair.
    fn config_space(&self) -> Vec<u8> {
        let mut c = Vec::with_capacity(10);
        c.extend_from_slice(&self.mac.0);
        c.extend_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        c.extend_from_slice(&1u16.to_le_bytes());
        c
    }

    /// Records what the driver accepted; the tap is told on the device
    /// thread (see the module docs). No system call here.
    fn activate(&mut self, features: u64) -> Result<(), DeviceError> {
        // The transport accepted only offered features.
        self.offloads.wanted = tun_offload_flags(features);
        self.rx.reset(&self.metrics);
        Ok(())
    }

    fn process_queue(
        &mut self,
        index: usize,
        ctx: &mut QueueContext<'_>,
    ) -> Result<(), DeviceError> {
        self.sync_offloads();
        match index {
            // New receive buffers: deliver the pending frame and whatever
            // the tap has.
            RXQ => self.receive(ctx),
            TXQ => self.tx.transmit(self.tap.as_mut(), ctx, &self.metrics),
            _ => Ok(()),
        }
    }

    /// The tap, and the receive retry eventfd.
    fn host_fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.tap.raw_fd().into_iter().collect();
        fds.push(self.retry.as_raw_fd());
        fds
    }

    fn process_host_fd(
        &mut self,
        fd: RawFd,
        ctx: &mut QueueContext<'_>,
    ) -> Result<(), DeviceError> {
        if fd == self.retry.as_raw_fd() {
            // EAGAIN: nothing was pending.
            let _ = self.retry.read();
        } else if Some(fd) != self.tap.raw_fd() {
            return Ok(());
        }
        self.sync_offloads();
        self.receive(ctx)
    }

    /// The tap's name and the guest's MAC. No guest request is held
    /// between calls: a frame the tap delivered and no receive buffer took
    /// yet is host data, lost with the snapshot as a frame on a wire is;
    /// transmit chains are written to the tap in the call that takes them.
    /// A restored device gets the same MAC (the VMM rebuilds it with the
    /// saved one) and sets the tap's offloads again on its first turn.
    fn snapshot_identity(&self) -> BackendIdentity {
        match self.tap.name() {
            Some(tap) => BackendIdentity::Net {
                tap: tap.to_string(),
                mac: self.mac.0,
            },
            None => {
                BackendIdentity::Unsupported("its tap backend has no host interface name".into())
            }
        }
    }

    /// Drops the pending frame; the tap's offloads are reconciled after
    /// the next activation (an ioctl cannot run here).
    fn reset(&mut self) {
        self.rx.reset(&self.metrics);
        self.offloads.wanted = 0;
    }

    fn shutdown(&mut self) {
        let m = &self.metrics;
        log::info!(
            "virtio-net {}: rx {} frames ({} bytes, {} dropped), tx {} frames ({} bytes, {} dropped), {} tap errors",
            self.mac,
            m.rx_frames(),
            m.rx_bytes(),
            m.rx_dropped(),
            m.tx_frames(),
            m.tx_bytes(),
            m.tx_dropped(),
            m.tap_errors()
        );
    }
}

#[cfg(test)]
mod tests;
