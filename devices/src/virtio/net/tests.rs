use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;

use virtio_bindings::virtio_config::VIRTIO_CONFIG_S_NEEDS_RESET;
use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_CONFIG, VIRTIO_MMIO_DEVICE_ID};
use virtio_bindings::virtio_net::{VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM};
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::offload::{TUN_F_CSUM, TUN_F_TSO4};
use super::rx::{RX_BUDGET, RX_FRAME_MAX};
use super::tx::TX_FRAME_MAX;
use super::*;
use crate::virtio::testing::*;
use crate::virtio::{MmioTransport, VIRTIO_F_VERSION_1};
use crate::IrqLine;

const W: u32 = VRING_DESC_F_WRITE;
const N: u32 = VRING_DESC_F_NEXT;
const SIZE: u16 = 16;
const MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
/// What a minimal driver accepts.
const PLAIN: u64 = VIRTIO_F_VERSION_1 | bit(VIRTIO_NET_F_MAC);
const MRG: u64 = PLAIN | bit(VIRTIO_NET_F_MRG_RXBUF);

type Mock<'a> = MockSplitQueue<'a, GuestMemoryMmap>;

/// The tap's side of a [`FakeTap`], shared with the test.
#[derive(Default)]
struct FakeState {
    /// Frames the tap will hand the device, in order.
    incoming: VecDeque<Vec<u8>>,
    /// Frames the device wrote.
    written: Vec<Vec<u8>>,
    /// Every TUNSETOFFLOAD the device made.
    offloads: Vec<u32>,
    refuse_offloads: bool,
    fail_reads: bool,
    fail_writes: bool,
}

/// An in-memory tap.
#[derive(Clone, Default)]
struct FakeTap(Arc<Mutex<FakeState>>);

impl FakeTap {
    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.0.lock().unwrap()
    }
    fn push(&self, frame: Vec<u8>) {
        self.state().incoming.push_back(frame);
    }
}

impl TapIo for FakeTap {
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.state();
        if s.fail_reads {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let Some(f) = s.incoming.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let n = f.len().min(buf.len());
        buf[..n].copy_from_slice(&f[..n]);
        Ok(n)
    }
    fn write_frame(&mut self, frame: &[u8]) -> io::Result<usize> {
        let mut s = self.state();
        if s.fail_writes {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        s.written.push(frame.to_vec());
        Ok(frame.len())
    }
    fn set_offload(&mut self, flags: u32) -> io::Result<()> {
        let mut s = self.state();
        if s.refuse_offloads && flags != 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        s.offloads.push(flags);
        Ok(())
    }
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }
}

/// A [`FakeTap`] with a host interface name, as a real tap has.
struct NamedTap(FakeTap, String);

impl TapIo for NamedTap {
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_frame(buf)
    }
    fn write_frame(&mut self, frame: &[u8]) -> io::Result<usize> {
        self.0.write_frame(frame)
    }
    fn set_offload(&mut self, flags: u32) -> io::Result<()> {
        self.0.set_offload(flags)
    }
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }
    fn name(&self) -> Option<&str> {
        Some(&self.1)
    }
}

#[test]
fn test_net_snapshot_identity_is_the_tap_and_the_mac() {
    let dev = VirtioNet::new(Box::new(NamedTap(FakeTap::default(), "tap7".into())), MAC).unwrap();
    let id = dev.snapshot_identity();
    assert_eq!(
        id,
        BackendIdentity::Net {
            tap: "tap7".into(),
            mac: MAC.0,
        }
    );
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(serde_json::from_str::<BackendIdentity>(&json).unwrap(), id);
    // A backend that cannot name its interface cannot be snapshotted.
    let dev = VirtioNet::new(Box::new(FakeTap::default()), MAC).unwrap();
    assert!(
        matches!(dev.snapshot_identity(), BackendIdentity::Unsupported(why) if why.contains("name")),
    );
}

fn desc(addr: u64, len: u32, flags: u32, next: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags as u16, next))
}

/// A frame as the tap hands it: a zero header (num_buffers left as
/// garbage, as the kernel leaves it) and `len` bytes of Ethernet frame.
fn frame(len: usize, seed: u8) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f[10] = 0xee;
    f[11] = 0xee;
    f.extend((0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)));
    f
}

struct Rig<'a> {
    mem: &'a GuestMemoryMmap,
    t: MmioTransport,
    rx: Mock<'a>,
    tx: Mock<'a>,
    tap: FakeTap,
    metrics: Arc<NetMetrics>,
}

/// A net transport over a fake tap, not yet activated. The mocks are 4
/// times the queue size (virtio-queue 0.18's mock lays its used ring over
/// the available ring otherwise; see the rng tests), so each test posts
/// fewer than `SIZE` chains per queue.
fn rig_with(mem: &GuestMemoryMmap, tap: FakeTap) -> Rig<'_> {
    let dev = VirtioNet::new(Box::new(tap.clone()), MAC).unwrap();
    let metrics = dev.metrics();
    let t = MmioTransport::new(Box::new(dev), mem.clone(), IrqLine::None).unwrap();
    // The offload probe is not a setting the tests look at.
    tap.state().offloads.clear();
    Rig {
        mem,
        t,
        rx: MockSplitQueue::create(mem, GuestAddress(0x1_0000), 4 * SIZE),
        tx: MockSplitQueue::create(mem, GuestAddress(0x1_8000), 4 * SIZE),
        tap,
        metrics,
    }
}

fn active(mem: &GuestMemoryMmap, features: u64) -> Rig<'_> {
    let mut r = rig_with(mem, FakeTap::default());
    activate(&mut r.t, features, &[&r.rx, &r.tx], u32::from(SIZE));
    r
}

impl Rig<'_> {
    /// The receive retry eventfd: the fake tap has no descriptor, so this
    /// is how a test makes the device look at the tap.
    fn tap_event(&mut self) {
        let fds = self.t.host_fds();
        assert_eq!(
            fds.len(),
            1,
            "the fake tap has no fd: only the retry eventfd"
        );
        self.t.process_host_fd(fds[0]);
    }
    fn used(mock: &Mock<'_>, i: usize) -> (u32, u32) {
        let e = mock.used().ring().ref_at(i).unwrap().load();
        (e.id(), e.len())
    }
    fn rx_used(&self, i: usize) -> (u32, u32) {
        Self::used(&self.rx, i)
    }
    fn rx_used_idx(&self) -> u16 {
        self.rx.used().idx().load()
    }
    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }
    fn needs_reset(&self) -> bool {
        self.t.status() & VIRTIO_CONFIG_S_NEEDS_RESET != 0
    }
}

/// `f` with num_buffers set to `n`, as the guest should see it.
fn delivered(f: &[u8], n: u16) -> Vec<u8> {
    let mut f = f.to_vec();
    f[10..12].copy_from_slice(&n.to_le_bytes());
    f
}

#[test]
fn test_net_identity_features_and_config_space() {
    let mem = memory();
    let mut r = rig_with(&mem, FakeTap::default());
    assert_eq!(read32(&mut r.t, VIRTIO_MMIO_DEVICE_ID), 1);
    let f = device_features(&mut r.t);
    for b in [
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_STATUS,
        VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_GUEST_TSO6,
        VIRTIO_NET_F_GUEST_UFO,
        VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_HOST_TSO6,
        VIRTIO_NET_F_HOST_UFO,
    ] {
        assert_ne!(f & bit(b), 0, "feature {b} offered");
    }
    assert_eq!(
        f,
        BASE_FEATURES | GUEST_OFFLOADS | VIRTIO_F_VERSION_1,
        "nothing else"
    );
    let mut cfg = [0u8; 10];
    for (i, b) in cfg.iter_mut().enumerate() {
        let mut one = [0u8];
        r.t.read(u64::from(VIRTIO_MMIO_CONFIG) + i as u64, &mut one);
        *b = one[0];
    }
    assert_eq!(&cfg[..6], &MAC.0);
    assert_eq!(u16::from_le_bytes([cfg[6], cfg[7]]), 1, "LINK_UP");
    assert_eq!(u16::from_le_bytes([cfg[8], cfg[9]]), 1, "one queue pair");
    // Config writes (a legacy driver setting the MAC) change nothing.
    r.t.write(u64::from(VIRTIO_MMIO_CONFIG), &[0xaa; 6]);
    let mut mac = [0u8; 6];
    r.t.read(u64::from(VIRTIO_MMIO_CONFIG), &mut mac);
    assert_eq!(mac, MAC.0);
}

#[test]
fn test_net_guest_offloads_not_offered_when_the_tap_refuses_them() {
    let mem = memory();
    let tap = FakeTap::default();
    tap.state().refuse_offloads = true;
    let mut r = rig_with(&mem, tap);
    let f = device_features(&mut r.t);
    assert_eq!(f & GUEST_OFFLOADS, 0);
    assert_eq!(f & BASE_FEATURES, BASE_FEATURES);
}

#[test]
fn test_net_mac_checks_and_random_mac() {
    let e = VirtioNet::new(Box::new(FakeTap::default()), MacAddr([1, 2, 3, 4, 5, 6])).unwrap_err();
    assert!(matches!(e, NetError::MulticastMac(_)));
    assert!(e.to_string().contains("01:02:03:04:05:06"), "{e}");
    let a = MacAddr::random().unwrap();
    let b = MacAddr::random().unwrap();
    assert_ne!(
        a, b,
        "two random MACs (a 1 in 2^46 chance of a false failure)"
    );
    for m in [a, b] {
        assert_eq!(m.0[0] & 0x03, 0x02, "{m}: unicast, locally administered");
        assert!(!m.is_multicast());
    }
    assert_eq!(MAC.to_string(), "52:54:00:12:34:56");
}

#[test]
fn test_net_tx_gathers_a_split_chain_into_one_frame() {
    let mem = memory();
    let mut r = active(&mem, PLAIN);
    let f = frame(60, 3);
    mem.write_slice(&f[..VNET_HDR_LEN], GuestAddress(0x2_0000))
        .unwrap();
    mem.write_slice(&f[VNET_HDR_LEN..30], GuestAddress(0x3_0000))
        .unwrap();
    mem.write_slice(&f[30..], GuestAddress(0x4_0000)).unwrap();
    r.tx.add_desc_chains(
        &[
            desc(0x2_0000, VNET_HDR_LEN as u32, N, 1),
            desc(0x3_0000, 30 - VNET_HDR_LEN as u32, N, 2),
            // A writable descriptor in a transmit chain is ignored.
            desc(0x6_0000, 100, W | N, 3),
            desc(0x4_0000, (f.len() - 30) as u32, 0, 0),
        ],
        0,
    )
    .unwrap();
    r.t.process_queue(TXQ);
    assert_eq!(r.tap.state().written, vec![f.clone()]);
    assert_eq!(Rig::used(&r.tx, 0), (0, 0), "used length 0");
    assert_eq!(r.tx.used().idx().load(), 1);
    assert_eq!((r.metrics.tx_frames(), r.metrics.tx_bytes()), (1, 60));
    assert_eq!(r.t.interrupt().status(), 1);
    assert_eq!(r.read(0x6_0000, 100), vec![0; 100], "not written");
}

#[test]
fn test_net_tx_drops_bad_frames_and_keeps_serving() {
    let mem = memory();
    let mut r = active(&mem, PLAIN);
    let good = frame(50, 1);
    mem.write_slice(&good, GuestAddress(0x2_0000)).unwrap();
    let mut gso = good.clone();
    gso[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM as u8;
    mem.write_slice(&gso, GuestAddress(0x2_1000)).unwrap();
    let mut tso = good.clone();
    tso[1] = 1; // GSO_TCPV4 without HOST_TSO4
    mem.write_slice(&tso, GuestAddress(0x2_2000)).unwrap();
    let half = (TX_FRAME_MAX / 2 + 1) as u32;
    r.tx.add_desc_chains(
        &[
            // Shorter than header + Ethernet header.
            desc(0x2_0000, 25, 0, 0),
            // Larger than 64 KiB + header, in two buffers.
            desc(0x4_0000, half, N, 2),
            desc(0x4_0000 + u64::from(half), half, 0, 0),
            // A buffer beyond RAM.
            desc(0x2_0000, 12, N, 4),
            desc(0xf_ff00, 0x200, 0, 0),
            // Offloads the driver did not accept.
            desc(0x2_1000, good.len() as u32, 0, 0),
            desc(0x2_2000, good.len() as u32, 0, 0),
            // Only writable: no frame at all.
            desc(0x2_0000, 64, W, 0),
            // And a good one after them.
            desc(0x2_0000, good.len() as u32, 0, 0),
        ],
        0,
    )
    .unwrap();
    r.t.process_queue(TXQ);
    assert_eq!(r.tx.used().idx().load(), 7, "every chain returned");
    assert_eq!(r.tap.state().written, vec![good]);
    assert_eq!(r.metrics.tx_dropped(), 6);
    assert_eq!(r.metrics.tx_frames(), 1);
    assert!(!r.needs_reset());
}

#[test]
fn test_net_tx_with_host_offloads_passes_gso_headers() {
    let mem = memory();
    let features = PLAIN | bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_HOST_TSO4);
    let mut r = active(&mem, features);
    let mut f = frame(1000, 9);
    f[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM as u8;
    f[1] = 1;
    mem.write_slice(&f, GuestAddress(0x2_0000)).unwrap();
    r.tx.add_desc_chains(&[desc(0x2_0000, f.len() as u32, 0, 0)], 0)
        .unwrap();
    r.t.process_queue(TXQ);
    assert_eq!(r.tap.state().written, vec![f]);
}

#[test]
fn test_net_tx_looping_or_overlong_chain_needs_reset() {
    let mem = memory();
    let mut r = active(&mem, PLAIN);
    r.tx.add_desc_chains(&[desc(0x2_0000, 100, N, 1), desc(0x2_0000, 100, N, 0)], 0)
        .unwrap();
    r.t.process_queue(TXQ);
    assert!(r.needs_reset(), "a loop is a broken chain");
    assert!(r.tap.state().written.is_empty());

    // A chain of SIZE + 1 descriptors through an index past the table.
    let mut r = active(&mem, PLAIN);
    r.tx.add_desc_chains(&[desc(0x2_0000, 100, N, SIZE)], 0)
        .unwrap();
    r.t.process_queue(TXQ);
    assert!(r.needs_reset(), "next beyond the table");
}

#[test]
fn test_net_tx_tap_write_failure_is_counted() {
    let mem = memory();
    let mut r = active(&mem, PLAIN);
    r.tap.state().fail_writes = true;
    mem.write_slice(&frame(50, 0), GuestAddress(0x2_0000))
        .unwrap();
    r.tx.add_desc_chains(&[desc(0x2_0000, 62, 0, 0)], 0)
        .unwrap();
    r.t.process_queue(TXQ);
    assert_eq!(r.tx.used().idx().load(), 1);
    assert_eq!((r.metrics.tap_errors(), r.metrics.tx_dropped()), (1, 1));
    assert!(r.t.is_active());
}

#[test]
fn test_net_rx_delivers_a_frame_with_num_buffers_1() {
    let mem = memory();
    let mut r = active(&mem, PLAIN);
    r.rx.add_desc_chains(&[desc(0x2_0000, 1526, W, 0)], 0)
        .unwrap();
    // Frames before any buffer notify: nothing read until the tap fires.
    r.t.process_queue(RXQ);
    assert_eq!(r.rx_used_idx(), 0);
    let f = frame(64, 5);
    r.tap.push(f.clone());
    r.tap_event();
    assert_eq!(r.rx_used_idx(), 1);
    assert_eq!(r.rx_used(0), (0, f.len() as u32));
    assert_eq!(r.read(0x2_0000, f.len()), delivered(&f, 1));
    assert_eq!((r.metrics.rx_frames(), r.metrics.rx_bytes()), (1, 64));
    assert_eq!(r.t.interrupt().status(), 1);
}

#[test]
fn test_net_rx_header_split_across_descriptors_gets_num_buffers() {
    let mem = memory();
    let mut r = active(&mem, PLAIN);
    // 11 + 1 + rest: num_buffers straddles two buffers.
    r.rx.add_desc_chains(
        &[
            desc(0x2_0000, 11, W | N, 1),
            desc(0x3_0000, 1, W | N, 2),
            desc(0x4_0000, 2000, W, 0),
        ],
        0,
    )
    .unwrap();
    let f = frame(100, 2);
    r.tap.push(f.clone());
    r.tap_event();
    let got = [
        r.read(0x2_0000, 11),
        r.read(0x3_0000, 1),
        r.read(0x4_0000, 100),
    ]
    .concat();
    assert_eq!(got, delivered(&f, 1));
    assert_eq!(r.rx_used(0), (0, 112));
}

#[test]
fn test_net_rx_keeps_one_pending_frame_until_buffers_arrive() {
    let mem = memory();
    let mut r = active(&mem, PLAIN);
    let frames: Vec<_> = (0..3).map(|i| frame(60 + i, i as u8)).collect();
    for f in &frames {
        r.tap.push(f.clone());
    }
    r.tap_event();
    assert!(r.rx_used_idx() == 0);
    assert_eq!(r.tap.state().incoming.len(), 2, "one frame taken, held");
    // A buffer arrives: the held frame, then the next one while buffers
    // last; the third waits in the device, not lost.
    r.rx.add_desc_chains(&[desc(0x2_0000, 1526, W, 0), desc(0x2_1000, 1526, W, 0)], 0)
        .unwrap();
    r.t.process_queue(RXQ);
    assert_eq!(r.rx_used_idx(), 2);
    assert_eq!(r.read(0x2_0000, 72), delivered(&frames[0], 1));
    assert_eq!(r.read(0x2_1000, 73), delivered(&frames[1], 1));
    assert!(r.tap.state().incoming.is_empty());
    r.rx.add_desc_chains(&[desc(0x2_2000, 1526, W, 2)], 2)
        .unwrap();
    r.t.process_queue(RXQ);
    assert_eq!(r.rx_used_idx(), 3);
    assert_eq!(r.read(0x2_2000, 74), delivered(&frames[2], 1));
    assert_eq!(r.metrics.rx_frames(), 3);
    assert_eq!(r.metrics.rx_dropped(), 0);
}

#[test]
fn test_net_rx_mergeable_spreads_a_frame_over_chains() {
    let mem = memory();
    let mut r = active(&mem, MRG);
    r.rx.add_desc_chains(
        &[
            desc(0x2_0000, 1024, W, 0),
            desc(0x3_0000, 1024, W, 0),
            desc(0x4_0000, 1024, W, 0),
            desc(0x5_0000, 1024, W, 0),
        ],
        0,
    )
    .unwrap();
    let f = frame(3000 - VNET_HDR_LEN, 4);
    r.tap.push(f.clone());
    r.tap_event();
    assert_eq!(r.rx_used_idx(), 3);
    assert_eq!(r.rx_used(0), (0, 1024));
    assert_eq!(r.rx_used(1), (1, 1024));
    assert_eq!(r.rx_used(2), (2, 952));
    let got = [
        r.read(0x2_0000, 1024),
        r.read(0x3_0000, 1024),
        r.read(0x4_0000, 952),
    ]
    .concat();
    assert_eq!(got, delivered(&f, 3));
    // The fourth chain is still available for the next frame.
    let g = frame(100, 8);
    r.tap.push(g.clone());
    r.tap_event();
    assert_eq!(r.rx_used(3), (3, 112));
    assert_eq!(r.read(0x5_0000, 112), delivered(&g, 1));
}

#[test]
fn test_net_rx_mergeable_waits_for_enough_buffers_then_delivers() {
    let mem = memory();
    let mut r = active(&mem, MRG);
    r.rx.add_desc_chains(&[desc(0x2_0000, 1024, W, 0)], 0)
        .unwrap();
    let f = frame(2000, 6);
    r.tap.push(f.clone());
    r.tap_event();
    assert_eq!(r.rx_used_idx(), 0, "one chain is not enough: wait");
    // The chain was put back: with a second one the frame fits from the
    // first.
    r.rx.add_desc_chains(&[desc(0x3_0000, 1024, W, 1)], 1)
        .unwrap();
    r.t.process_queue(RXQ);
    assert_eq!(r.rx_used_idx(), 2);
    assert_eq!(r.rx_used(0), (0, 1024));
    assert_eq!(r.rx_used(1), (1, 988));
    let got = [r.read(0x2_0000, 1024), r.read(0x3_0000, 988)].concat();
    assert_eq!(got, delivered(&f, 2));
    assert_eq!(r.metrics.rx_dropped(), 0);
}

#[test]
fn test_net_rx_mergeable_frame_larger_than_the_ring_is_dropped() {
    let mem = memory();
    let mut r = active(&mem, MRG);
    // A whole ring (SIZE chains) of 64-byte buffers: 1 KiB in all. The
    // mock's avail entries stay within the first SIZE slots.
    let chains: Vec<_> = (0..SIZE)
        .map(|i| desc(0x2_0000 + u64::from(i) * 0x100, 64, W, 0))
        .collect();
    r.rx.add_desc_chains(&chains, 0).unwrap();
    r.tap.push(frame(2000, 1));
    let small = frame(40, 2);
    r.tap.push(small.clone());
    r.tap_event();
    assert_eq!(r.metrics.rx_dropped(), 1);
    // The ring was kept for the next frame, which fits in one chain.
    assert_eq!(r.rx_used_idx(), 1);
    assert_eq!(r.rx_used(0), (0, 52));
    assert_eq!(r.read(0x2_0000, 52), delivered(&small, 1));
}

#[test]
fn test_net_rx_frame_too_large_for_one_chain_is_dropped_and_chain_returned() {
    let mem = memory();
    let mut r = active(&mem, PLAIN);
    r.rx.add_desc_chains(&[desc(0x2_0000, 100, W, 0), desc(0x3_0000, 1526, W, 0)], 0)
        .unwrap();
    r.tap.push(frame(200, 1));
    let g = frame(60, 2);
    r.tap.push(g.clone());
    r.tap_event();
    assert_eq!(r.rx_used_idx(), 2);
    assert_eq!(r.rx_used(0), (0, 0), "too small: returned empty");
    assert_eq!(r.rx_used(1), (1, 72));
    assert_eq!(r.read(0x3_0000, 72), delivered(&g, 1));
    assert_eq!((r.metrics.rx_dropped(), r.metrics.rx_frames()), (1, 1));
}

#[test]
fn test_net_rx_drops_short_truncated_and_unnegotiated_offload_frames() {
    let mem = memory();
    let mut r = active(&mem, PLAIN);
    r.rx.add_desc_chains(&[desc(0x4_0000, 0x1_0000, W, 0)], 0)
        .unwrap();
    let mut csum = frame(60, 0);
    csum[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM as u8;
    let mut tso = frame(60, 0);
    tso[1] = 1;
    for bad in [
        frame(13 - VNET_HDR_LEN, 0)[..13].to_vec(),
        frame(RX_FRAME_MAX, 0),
        csum,
        tso,
    ] {
        r.tap.push(bad);
    }
    // DATA_VALID is cleared for a driver without GUEST_CSUM.
    let mut valid = frame(60, 7);
    valid[0] = VIRTIO_NET_HDR_F_DATA_VALID as u8;
    r.tap.push(valid.clone());
    r.tap_event();
    assert_eq!(r.metrics.rx_dropped(), 4);
    assert_eq!(r.rx_used_idx(), 1);
    valid[0] = 0;
    assert_eq!(r.read(0x4_0000, 72), delivered(&valid, 1));
}

#[test]
fn test_net_rx_buffer_outside_ram_needs_reset() {
    let mem = memory();
    let mut r = active(&mem, PLAIN);
    r.rx.add_desc_chains(&[desc(0xf_ff00, 0x1000, W, 0)], 0)
        .unwrap();
    r.tap.push(frame(1000, 0));
    r.tap_event();
    assert!(r.needs_reset());
    assert_eq!(r.rx_used_idx(), 0);
    assert_eq!(r.metrics.rx_dropped(), 1, "the frame is lost, and counted");
}

#[test]
fn test_net_rx_budget_then_retry_event() {
    let mem = memory();
    let mut r = active(&mem, PLAIN);
    // Frames the device drops still count against the budget.
    for _ in 0..RX_BUDGET + 10 {
        r.tap.push(vec![0; 5]);
    }
    let fds = r.t.host_fds();
    r.t.process_host_fd(fds[0]);
    assert_eq!(r.metrics.rx_dropped(), RX_BUDGET as u64);
    assert_eq!(r.tap.state().incoming.len(), 10);
    // The device asked to be called again: its eventfd is readable...
    let mut fd = libc::pollfd {
        fd: fds[0],
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd on the stack, zero timeout.
    assert_eq!(unsafe { libc::poll(&mut fd, 1, 0) }, 1, "retry pending");
    // ...and the call drains the rest.
    r.t.process_host_fd(fds[0]);
    assert_eq!(r.metrics.rx_dropped(), RX_BUDGET as u64 + 10);
    assert!(r.tap.state().incoming.is_empty());
}

#[test]
fn test_net_rx_tap_read_error_is_counted_and_device_stays_up() {
    let mem = memory();
    let mut r = active(&mem, PLAIN);
    r.tap.state().fail_reads = true;
    r.tap_event();
    assert_eq!(r.metrics.tap_errors(), 1);
    assert!(r.t.is_active());
}

#[test]
fn test_net_reset_drops_the_pending_frame() {
    let mem = memory();
    let mut r = active(&mem, PLAIN);
    r.tap.push(frame(60, 1));
    r.tap_event();
    // Reset and set up again; the old session's frame is gone.
    activate(&mut r.t, PLAIN, &[&r.rx, &r.tx], u32::from(SIZE));
    r.rx.add_desc_chains(&[desc(0x2_0000, 1526, W, 0)], 0)
        .unwrap();
    r.t.process_queue(RXQ);
    assert_eq!(r.rx.used().idx().load(), 0);
    assert_eq!(r.metrics.rx_frames(), 0);
    assert_eq!(r.metrics.rx_dropped(), 1, "counted as dropped");
}

#[test]
fn test_net_offloads_set_lazily_on_the_device_thread() {
    let mem = memory();
    let mut r = rig_with(&mem, FakeTap::default());
    let features = PLAIN | bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_TSO4);
    activate(&mut r.t, features, &[&r.rx, &r.tx], u32::from(SIZE));
    assert!(
        r.tap.state().offloads.is_empty(),
        "activation (a vCPU thread) makes no ioctl"
    );
    r.t.process_queue(TXQ);
    assert_eq!(r.tap.state().offloads, vec![TUN_F_CSUM | TUN_F_TSO4]);
    r.t.process_queue(TXQ);
    assert_eq!(r.tap.state().offloads.len(), 1, "set once");
    // A GSO frame now reaches the driver, its header intact.
    r.rx.add_desc_chains(&[desc(0x4_0000, 0x1_0000, W, 0)], 0)
        .unwrap();
    let mut f = frame(3000, 1);
    f[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM as u8;
    f[1] = 1;
    r.tap.push(f.clone());
    r.tap_event();
    assert_eq!(r.read(0x4_0000, f.len()), delivered(&f, 1));
    // A new driver that accepts no offloads: back to 0 before any frame.
    activate(&mut r.t, PLAIN, &[&r.rx, &r.tx], u32::from(SIZE));
    r.tap.push(f.clone());
    r.tap_event();
    assert_eq!(r.tap.state().offloads, vec![TUN_F_CSUM | TUN_F_TSO4, 0]);
    assert_eq!(r.metrics.rx_dropped(), 1, "the GSO frame is refused");
}

#[test]
fn test_net_driver_without_offloads_never_needs_the_ioctl() {
    let mem = memory();
    let mut r = active(&mem, MRG);
    r.tap.push(frame(60, 1));
    r.tap_event();
    r.t.process_queue(TXQ);
    assert!(r.tap.state().offloads.is_empty());
}

#[test]
fn test_net_offload_failure_is_counted_and_frames_stay_plain() {
    let mem = memory();
    let tap = FakeTap::default();
    let mut r = rig_with(&mem, tap);
    let features = PLAIN | bit(VIRTIO_NET_F_GUEST_CSUM);
    activate(&mut r.t, features, &[&r.rx, &r.tx], u32::from(SIZE));
    r.tap.state().refuse_offloads = true;
    r.rx.add_desc_chains(&[desc(0x4_0000, 2000, W, 0)], 0)
        .unwrap();
    let mut f = frame(60, 1);
    f[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM as u8;
    r.tap.push(f);
    r.tap_event();
    assert_eq!(r.metrics.tap_errors(), 1);
    assert_eq!(
        r.metrics.rx_dropped(),
        1,
        "the tap was not told: no partial checksums"
    );
    r.tap_event();
    assert_eq!(r.metrics.tap_errors(), 1, "not retried");
}
