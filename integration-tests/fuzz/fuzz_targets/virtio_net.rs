//! virtio-net on its virtio-mmio transport, driven as a hostile driver
//! would (`vmm_fuzz::virtio_net` decodes the input): descriptors with any
//! address, length, flags and next index, heads made available in any
//! order, notifies of real and missing queues, resets with any features,
//! configuration reads, next to a fake tap that queues frames with any
//! header and length and can fail its reads, writes and offload settings.
//!
//! Checked after every operation, beyond "no panic, no hang":
//! - the device never uses more chains than were made available, and
//!   returns only heads that exist; transmit chains come back with used
//!   length 0, receive chains with at most 65562 bytes;
//! - every frame written to the tap is between header + Ethernet header
//!   and 64 KiB + header long, asks only for host offloads the driver
//!   accepted, and is counted (`tx_frames`);
//! - each frame taken from the tap is delivered or dropped (at a reset
//!   and a NEEDS_RESET too), and counted, but for the one pending frame;
//! - after queue work on an active device, the tap has exactly the
//!   offloads the driver's features ask for (unless the tap refused them).
#![no_main]

use std::collections::VecDeque;
use std::io;
use std::os::unix::io::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};

use libfuzzer_sys::fuzz_target;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_bindings::virtio_mmio::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_devices::virtio::net::offload::{check_tx, host_offloads, tun_offload_flags};
use vmm_devices::virtio::net::rx::RX_FRAME_MAX;
use vmm_devices::virtio::net::tx::TX_FRAME_MAX;
use vmm_devices::virtio::net::{MacAddr, NetMetrics, TapIo, VirtioNet, ETH_HLEN, VNET_HDR_LEN};
use vmm_devices::virtio::MmioTransport;
use vmm_devices::IrqLine;
use vmm_fuzz::virtio_net::{
    buf_addr, decode, queue_size, Op, Setup, RAM_SIZE, RINGS, TAP_QUEUE_MAX,
};

const VERSION_1: u64 = 1 << 32;

#[derive(Default)]
struct TapState {
    incoming: VecDeque<Vec<u8>>,
    /// Frames handed to the device so far.
    taken: u64,
    /// Each written frame's length and header.
    written: Vec<(usize, [u8; VNET_HDR_LEN])>,
    /// Offloads the tap has now.
    offloads: u32,
    fail_reads: bool,
    fail_writes: bool,
    refuse_offloads: bool,
    /// Whether an offload setting was refused since the last activation.
    refused: bool,
}

#[derive(Clone, Default)]
struct FakeTap(Arc<Mutex<TapState>>);

impl FakeTap {
    fn state(&self) -> MutexGuard<'_, TapState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl TapIo for FakeTap {
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.state();
        if s.fail_reads {
            return Err(io::Error::other("fake tap: EIO"));
        }
        let Some(f) = s.incoming.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        s.taken += 1;
        let n = f.len().min(buf.len());
        buf[..n].copy_from_slice(&f[..n]);
        Ok(n)
    }
    fn write_frame(&mut self, frame: &[u8]) -> io::Result<usize> {
        let mut s = self.state();
        if s.fail_writes {
            return Err(io::Error::other("fake tap: EIO"));
        }
        let mut hdr = [0u8; VNET_HDR_LEN];
        let n = frame.len().min(VNET_HDR_LEN);
        hdr[..n].copy_from_slice(&frame[..n]);
        s.written.push((frame.len(), hdr));
        Ok(frame.len())
    }
    fn set_offload(&mut self, flags: u32) -> io::Result<()> {
        let mut s = self.state();
        if s.refuse_offloads {
            s.refused = true;
            return Err(io::Error::other("fake tap: EINVAL"));
        }
        s.offloads = flags;
        Ok(())
    }
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }
}

/// The driver side: registers, rings, and what it has made available.
struct Driver {
    t: MmioTransport,
    mem: GuestMemoryMmap,
    sizes: [u16; 2],
    /// Available index published, per queue.
    avail: [u16; 2],
    /// Used index seen, per queue.
    used: [u16; 2],
    /// Next descriptor index `Chain` uses, per queue.
    cursor: [u16; 2],
    accepted: u64,
    offered: u64,
}

impl Driver {
    fn read32(&mut self, reg: u32) -> u32 {
        let mut b = [0u8; 4];
        self.t.read(u64::from(reg), &mut b);
        u32::from_le_bytes(b)
    }
    fn write32(&mut self, reg: u32, v: u32) {
        self.t.write(u64::from(reg), &v.to_le_bytes());
    }
    fn status(&mut self) -> u32 {
        self.read32(VIRTIO_MMIO_STATUS)
    }
    fn needs_reset(&mut self) -> bool {
        self.status() & VIRTIO_CONFIG_S_NEEDS_RESET != 0
    }

    /// Reset, then the whole set-up of 3.1.1 with `features`.
    fn setup(&mut self, features: u64) {
        self.write32(VIRTIO_MMIO_STATUS, 0);
        for (desc, avail, used) in RINGS {
            let zero = vec![0u8; 0x1000];
            for a in [desc, avail, used] {
                let _ = self.mem.write_slice(&zero, GuestAddress(a));
            }
        }
        self.avail = [0; 2];
        self.used = [0; 2];
        self.cursor = [0; 2];
        self.write32(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
        let s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
        self.write32(VIRTIO_MMIO_STATUS, s);
        let mut f = features & self.offered;
        if features & (1 << 63) == 0 {
            f |= VERSION_1;
        }
        self.accepted = f;
        self.write32(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        self.write32(VIRTIO_MMIO_DRIVER_FEATURES, f as u32);
        self.write32(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        self.write32(VIRTIO_MMIO_DRIVER_FEATURES, (f >> 32) as u32);
        self.write32(VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_FEATURES_OK);
        for (i, (desc, avail, used)) in RINGS.into_iter().enumerate() {
            self.write32(VIRTIO_MMIO_QUEUE_SEL, i as u32);
            self.write32(VIRTIO_MMIO_QUEUE_NUM, u32::from(self.sizes[i]));
            for (low, a) in [
                (VIRTIO_MMIO_QUEUE_DESC_LOW, desc),
                (VIRTIO_MMIO_QUEUE_AVAIL_LOW, avail),
                (VIRTIO_MMIO_QUEUE_USED_LOW, used),
            ] {
                self.write32(low, a as u32);
                self.write32(low + 4, (a >> 32) as u32);
            }
            self.write32(VIRTIO_MMIO_QUEUE_READY, 1);
        }
        let st = self.status();
        self.write32(VIRTIO_MMIO_STATUS, st | VIRTIO_CONFIG_S_DRIVER_OK);
    }

    /// A queue's size as the device uses it (1 if the driver's was bad:
    /// then the device is not active and uses nothing anyway).
    fn size(&self, q: usize) -> u16 {
        let s = self.sizes[q];
        if s.is_power_of_two() && s <= 256 {
            s
        } else {
            1
        }
    }

    fn store_desc(&self, q: usize, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = RINGS[q].0 + 16 * u64::from(index % 256);
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        let _ = self.mem.write_slice(&d, GuestAddress(at));
    }

    /// Publishes `head` unless the ring already holds `size` outstanding.
    fn publish(&mut self, q: usize, head: u16) {
        let size = self.size(q);
        if self.avail[q].wrapping_sub(self.used[q]) >= size {
            return;
        }
        let (_, avail, _) = RINGS[q];
        let slot = avail + 4 + 2 * u64::from(self.avail[q] % size);
        let _ = self.mem.write_obj(head, GuestAddress(slot));
        self.avail[q] = self.avail[q].wrapping_add(1);
        let _ = self.mem.write_obj(self.avail[q], GuestAddress(avail + 2));
    }

    /// Checks the used rings against what was made available.
    fn check_used(&mut self) {
        for q in 0..2 {
            let (_, _, used) = RINGS[q];
            let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap_or(0);
            let new = idx.wrapping_sub(self.used[q]);
            let outstanding = self.avail[q].wrapping_sub(self.used[q]);
            assert!(
                new <= outstanding,
                "queue {q}: {new} used entries, {outstanding} available"
            );
            let size = self.size(q);
            for i in 0..new {
                let slot = used + 4 + 8 * u64::from(self.used[q].wrapping_add(i) % size);
                let id: u32 = self.mem.read_obj(GuestAddress(slot)).unwrap_or(0);
                let len: u32 = self.mem.read_obj(GuestAddress(slot + 4)).unwrap_or(0);
                assert!(id < u32::from(size), "queue {q}: used head {id} of {size}");
                if q == 1 {
                    assert_eq!(len, 0, "transmit used length");
                } else {
                    assert!(len as usize <= RX_FRAME_MAX, "receive used length {len}");
                }
            }
            self.used[q] = idx;
        }
    }
}

fn run(data: &[u8]) {
    let (setup, ops): (Setup, Vec<Op>) = decode(data);
    let mem = match GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM_SIZE as usize)]) {
        Ok(m) => m,
        Err(e) => panic!("fuzz harness: guest memory: {e}"),
    };
    let tap = FakeTap::default();
    tap.state().refuse_offloads = setup.tap & 1 != 0;
    let dev = match VirtioNet::new(Box::new(tap.clone()), MacAddr([2, 0, 0, 0, 0, 1])) {
        Ok(d) => d,
        Err(e) => panic!("fuzz harness: device: {e}"),
    };
    let metrics: Arc<NetMetrics> = dev.metrics();
    let t = match MmioTransport::new(Box::new(dev), mem.clone(), IrqLine::None) {
        Ok(t) => t,
        Err(e) => panic!("fuzz harness: transport: {e}"),
    };
    let mut d = Driver {
        t,
        mem,
        sizes: [queue_size(setup.sizes[0]), queue_size(setup.sizes[1])],
        avail: [0; 2],
        used: [0; 2],
        cursor: [0; 2],
        accepted: 0,
        offered: 0,
    };
    d.write32(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    let lo = d.read32(VIRTIO_MMIO_DEVICE_FEATURES);
    d.write32(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    let hi = d.read32(VIRTIO_MMIO_DEVICE_FEATURES);
    d.offered = u64::from(lo) | (u64::from(hi) << 32);
    d.setup(setup.features);
    tap.state().refused = false;
    let retry_fd = d.t.host_fds().first().copied().unwrap_or(-1);
    let mut checked = 0;
    for op in ops {
        vmm_fuzz::trace(&op);
        let mut queue_work = false;
        match op {
            Op::Desc {
                q,
                index,
                addr,
                len,
                flags,
                next,
            } => {
                let q = usize::from(q & 1);
                d.store_desc(
                    q,
                    u16::from(index),
                    buf_addr(addr),
                    len,
                    u16::from(flags & 7),
                    u16::from(next),
                );
            }
            Op::Avail { q, head } => d.publish(usize::from(q & 1), u16::from(head)),
            Op::Notify { q } => {
                d.t.process_queue(usize::from(q % 3));
                queue_work = q % 3 < 2;
            }
            Op::TapFrame { flags, gso, len } => {
                let mut s = tap.state();
                if s.incoming.len() < TAP_QUEUE_MAX {
                    let len = (len as usize) % (RX_FRAME_MAX + 64);
                    let mut f = vec![0u8; VNET_HDR_LEN + len];
                    f[0] = flags;
                    f[1] = gso;
                    for (i, b) in f.iter_mut().enumerate().skip(VNET_HDR_LEN) {
                        *b = i as u8;
                    }
                    s.incoming.push_back(f);
                }
            }
            Op::TapEvent => {
                d.t.process_host_fd(retry_fd);
                queue_work = true;
            }
            Op::Frame {
                addr,
                len,
                flags,
                gso,
            } => {
                let mut f = vec![0u8; VNET_HDR_LEN + usize::from(len)];
                f[0] = flags;
                f[1] = gso;
                let _ = d.mem.write_slice(&f, GuestAddress(buf_addr(addr)));
            }
            Op::Reset { features } => {
                d.setup(features);
                tap.state().refused = false;
            }
            Op::TapFail { bits } => {
                let mut s = tap.state();
                s.fail_reads = bits & 1 != 0;
                s.fail_writes = bits & 2 != 0;
                s.refuse_offloads = bits & 4 != 0;
            }
            Op::Config { off, len } => {
                let mut b = vec![0u8; usize::from(len % 16)];
                d.t.read(u64::from(VIRTIO_MMIO_CONFIG) + u64::from(off), &mut b);
                if off == 0 && b.len() >= 6 {
                    assert_eq!(&b[..6], &[2, 0, 0, 0, 0, 1], "MAC");
                }
            }
            Op::Chain { q, n, addr, len } => {
                let q = usize::from(q & 1);
                // 1 to 4 (0 reads as 4).
                let n = u16::from(n.wrapping_sub(1) % 4) + 1;
                let size = d.size(q);
                let head = d.cursor[q] % size;
                let write = if q == 0 { 2 } else { 0 };
                let mut a = buf_addr(addr);
                for i in 0..n {
                    let index = (head + i) % size;
                    let last = i + 1 == n;
                    let flags = write | if last { 0 } else { 1 };
                    d.store_desc(q, index, a, len, flags, (index + 1) % size);
                    a = a.wrapping_add(u64::from(len));
                }
                d.cursor[q] = (head + n) % size;
                d.publish(q, head);
            }
        }
        d.check_used();
        let now_reset = d.needs_reset();
        let s = tap.state();
        // Transmit: bounded, asking only for accepted offloads (frames
        // are written during this operation, under these features), and
        // counted.
        for (len, hdr) in s.written.get(checked..).unwrap_or_default() {
            assert!(
                (VNET_HDR_LEN + ETH_HLEN..=TX_FRAME_MAX).contains(len),
                "a {len}-byte frame reached the tap"
            );
            assert!(
                check_tx(hdr, host_offloads(d.accepted)).is_ok(),
                "header {hdr:?} with features {:#x}",
                d.accepted
            );
        }
        checked = s.written.len();
        assert_eq!(s.written.len() as u64, metrics.tx_frames());
        // Receive: every frame taken is delivered or dropped, counted,
        // except the one pending.
        let accounted = metrics.rx_frames() + metrics.rx_dropped();
        assert!(
            accounted == s.taken || accounted + 1 == s.taken,
            "{} taken, {accounted} counted",
            s.taken
        );
        // Offloads follow the driver once the device thread has worked.
        if queue_work && d.t.is_active() && !s.refused && !now_reset {
            assert_eq!(
                s.offloads,
                tun_offload_flags(d.accepted),
                "tap offloads for features {:#x}",
                d.accepted
            );
        }
    }
    let reset = d.needs_reset();
    vmm_fuzz::trace(&format!(
        "end: rx {} frames, {} dropped; tx {} frames, {} dropped; {} tap errors; needs reset {reset}",
        metrics.rx_frames(),
        metrics.rx_dropped(),
        metrics.tx_frames(),
        metrics.tx_dropped(),
        metrics.tap_errors()
    ));
}

fuzz_target!(|data: &[u8]| {
    run(data);
});
