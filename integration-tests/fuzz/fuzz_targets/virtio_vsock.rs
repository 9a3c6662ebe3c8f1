//! virtio-vsock on its MMIO transport, driven by a fuzzer-played guest
//! driver and host side: transmit packets with chosen headers (CIDs,
//! ports, ops, flags, lengths, credit) in chosen chain layouts, raw
//! descriptor chains (any address, length, flags, next), receive buffers
//! of any shape, notifies of any queue, resets; on the host side,
//! processes that connect to the device's socket and send `CONNECT`
//! lines or garbage, and peers listening at `<path>_5000`/`_5001` that
//! write, read, half-close and close; optionally a 1 ms connect timeout
//! and waits that let it expire.
//!
//! Checked after every step: transmit chains are returned with used length
//! 0; every filled receive buffer holds a packet from the host CID to the
//! guest's, of a known op the device sends, whose used length is the
//! header plus its `len` and fits the buffer; payload only in RW packets,
//! at most the largest `buf_alloc` the guest ever advertised for that
//! connection and only on a connection the guest opened or accepted;
//! the device never uses more chains than were made available; and the
//! transport is still active at the end (nothing here breaks the rings).
#![no_main]

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK,
};
use virtio_bindings::virtio_mmio::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_devices::virtio::vsock::packet::{
    HEADER_LEN, HOST_CID, MAX_PKT_DATA, OP_CREDIT_UPDATE, OP_REQUEST, OP_RESPONSE, OP_RST, OP_RW,
    OP_SHUTDOWN,
};
use vmm_devices::virtio::vsock::{VirtioVsock, RXQ, TXQ};
use vmm_devices::virtio::{MmioTransport, VIRTIO_F_VERSION_1};
use vmm_devices::IrqLine;

const CID: u64 = 3;
/// Queue size the driver sets.
const SIZE: u16 = 16;
const MEM: u64 = 1 << 20;
/// Rings: queue q's descriptor table at RINGS + q * 0x1000, its available
/// ring 0x400 after it, its used ring 0x800 after it.
const RINGS: u64 = 0x1_0000;
/// Receive buffers: RX_BASE + slot * RX_STRIDE.
const RX_BASE: u64 = 0x2_0000;
const RX_STRIDE: u64 = 0x1000;
/// Transmit packets are written here.
const TX_BASE: u64 = 0x4_0000;
/// Host ports with a listening peer.
const PEER_PORTS: [u32; 2] = [5000, 5001];
const MAX_OPS: usize = 256;

/// A CID: mostly the right ones.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum Cid {
    Guest,
    Host,
    Any(u64),
}

impl Cid {
    fn value(self) -> u64 {
        match self {
            Cid::Guest => CID,
            Cid::Host => HOST_CID,
            Cid::Any(c) => c,
        }
    }
}

/// A port: a listening peer's, a guest port the host side connects to,
/// a host-side port the device allocated (2^30 + k), or any.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum Port {
    Peer(u8),
    Guest(u8),
    Local(u8),
    Any(u32),
}

impl Port {
    fn value(self) -> u32 {
        match self {
            Port::Peer(i) => PEER_PORTS[usize::from(i) % PEER_PORTS.len()],
            Port::Guest(i) => 1234 + u32::from(i % 4),
            Port::Local(k) => (1 << 30) + u32::from(k % 8),
            Port::Any(p) => p,
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Hdr {
    src_cid: Cid,
    dst_cid: Cid,
    src_port: Port,
    dst_port: Port,
    /// `None`: the payload's length.
    len: Option<u32>,
    /// `None`: STREAM.
    type_: Option<u16>,
    op: u8,
    flags: u32,
    buf_alloc: u32,
    fwd_cnt: u32,
}

/// How a transmit packet sits in its chain.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum Layout {
    /// Header and payload in one descriptor.
    One,
    /// Header, then payload.
    Two,
    /// The header split over two descriptors.
    SplitHeader,
    /// A device-writable header.
    Writable,
    /// Two descriptors, the second `extra` bytes longer than the payload.
    Longer(u8),
}

/// A descriptor of a raw chain.
#[derive(Debug, Arbitrary)]
struct RawDesc {
    /// Offset into guest memory (or beyond it, from the top bit).
    addr: u32,
    len: u32,
    flags: u16,
    next: u8,
}

/// How a receive buffer is made.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum RxLayout {
    /// One writable descriptor of header + `room` bytes.
    One(u16),
    /// A header descriptor and a payload descriptor.
    Two(u16),
    /// A header-only buffer (too small for the crate).
    HeaderOnly,
    /// A device-readable buffer.
    Readable,
    /// Beyond guest RAM.
    Outside,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Tx {
        hdr: Hdr,
        payload: Vec<u8>,
        layout: Layout,
    },
    TxRaw {
        descs: Vec<RawDesc>,
        bytes: Vec<u8>,
    },
    Rx {
        n: u8,
        layout: RxLayout,
    },
    Notify(u8),
    HostConnect {
        port: Option<Port>,
        raw: Vec<u8>,
    },
    HostWrite {
        i: u8,
        data: Vec<u8>,
    },
    HostRead(u8),
    HostShutdown(u8),
    HostClose(u8),
    HostEvent,
    Reset,
    /// Lets the connect timeout (1 ms in runs that ask for it) expire.
    Wait,
}

/// A chain made available and not used yet.
#[derive(Debug, Clone, Copy)]
struct Chain {
    head: u16,
    descs: u16,
    /// For receive chains: the buffer's size (header and payload room).
    room: u32,
}

/// The fuzzer's guest driver: ring positions and the chains in flight.
/// This device returns chains in the order they were made available, so
/// descriptors are handed out as a ring and freed in the same order.
struct Driver {
    avail: [u16; 3],
    used: [u16; 3],
    next_desc: [u16; 3],
    in_flight: [std::collections::VecDeque<Chain>; 3],
    rx_slot: u64,
}

fn w32(t: &mut MmioTransport, reg: u32, v: u32) {
    t.write(u64::from(reg), &v.to_le_bytes());
}

fn r32(t: &mut MmioTransport, reg: u32) -> u32 {
    let mut b = [0u8; 4];
    t.read(u64::from(reg), &mut b);
    u32::from_le_bytes(b)
}

fn desc_addr(q: usize) -> u64 {
    RINGS + q as u64 * 0x1000
}

/// Negotiates VERSION_1, sets up the three queues, DRIVER_OK.
fn bring_up(t: &mut MmioTransport, mem: &GuestMemoryMmap) {
    // Fresh rings: zeroed indices.
    mem.write_slice(&[0u8; 0x3000], GuestAddress(RINGS))
        .expect("rings in RAM");
    w32(t, VIRTIO_MMIO_STATUS, 0);
    let s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    w32(t, VIRTIO_MMIO_STATUS, s);
    w32(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    w32(
        t,
        VIRTIO_MMIO_DRIVER_FEATURES,
        (VIRTIO_F_VERSION_1 >> 32) as u32,
    );
    w32(t, VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_FEATURES_OK);
    for q in 0..3u32 {
        let base = desc_addr(q as usize);
        w32(t, VIRTIO_MMIO_QUEUE_SEL, q);
        w32(t, VIRTIO_MMIO_QUEUE_NUM, u32::from(SIZE));
        w32(t, VIRTIO_MMIO_QUEUE_DESC_LOW, base as u32);
        w32(t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (base + 0x400) as u32);
        w32(t, VIRTIO_MMIO_QUEUE_USED_LOW, (base + 0x800) as u32);
        w32(t, VIRTIO_MMIO_QUEUE_READY, 1);
    }
    let s = r32(t, VIRTIO_MMIO_STATUS);
    w32(t, VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_DRIVER_OK);
    assert!(t.is_active(), "vsock did not activate");
}

impl Driver {
    fn new() -> Self {
        Driver {
            avail: [0; 3],
            used: [0; 3],
            next_desc: [0; 3],
            in_flight: Default::default(),
            rx_slot: 0,
        }
    }

    /// Writes a chain of (addr, len, flags) at the next free descriptors
    /// (with `next`: those raw next fields and flags as given) and makes
    /// it available; false if there is no room.
    fn push(
        &mut self,
        mem: &GuestMemoryMmap,
        q: usize,
        bufs: &[(u64, u32, u16)],
        next: Option<&[u8]>,
        room: u32,
    ) -> bool {
        let busy: u16 = self.in_flight[q].iter().map(|c| c.descs).sum();
        let n = bufs.len() as u16;
        if bufs.is_empty() || busy + n > SIZE {
            return false;
        }
        let head = self.next_desc[q];
        for (k, &(addr, len, flags)) in bufs.iter().enumerate() {
            let i = (head + k as u16) % SIZE;
            let chained = k + 1 < bufs.len();
            let (f, nxt) = match next {
                Some(raw) => (flags, u16::from(raw[k]) % (SIZE + 2)),
                None => (flags | u16::from(chained), (i + 1) % SIZE),
            };
            let at = desc_addr(q) + 16 * u64::from(i);
            let mut d = [0u8; 16];
            d[0..8].copy_from_slice(&addr.to_le_bytes());
            d[8..12].copy_from_slice(&len.to_le_bytes());
            d[12..14].copy_from_slice(&f.to_le_bytes());
            d[14..16].copy_from_slice(&nxt.to_le_bytes());
            mem.write_slice(&d, GuestAddress(at)).expect("ring in RAM");
        }
        self.next_desc[q] = (head + n) % SIZE;
        let avail = desc_addr(q) + 0x400;
        let slot = avail + 4 + 2 * u64::from(self.avail[q] % SIZE);
        mem.write_obj(head, GuestAddress(slot))
            .expect("ring in RAM");
        self.avail[q] = self.avail[q].wrapping_add(1);
        mem.write_obj(self.avail[q], GuestAddress(avail + 2))
            .expect("ring in RAM");
        self.in_flight[q].push_back(Chain {
            head,
            descs: n,
            room,
        });
        true
    }

    /// New used entries of queue q, each with the chain it returns.
    fn take_used(&mut self, mem: &GuestMemoryMmap, q: usize) -> Vec<(Chain, u32)> {
        let used = desc_addr(q) + 0x800;
        let idx: u16 = mem.read_obj(GuestAddress(used + 2)).expect("ring in RAM");
        let mut out = Vec::new();
        while self.used[q] != idx {
            let at = used + 4 + 8 * u64::from(self.used[q] % SIZE);
            let id: u32 = mem.read_obj(GuestAddress(at)).expect("ring in RAM");
            let len: u32 = mem.read_obj(GuestAddress(at + 4)).expect("ring in RAM");
            let chain = self.in_flight[q].pop_front().unwrap_or_else(|| {
                panic!("queue {q}: more used entries than chains made available")
            });
            assert_eq!(
                id,
                u32::from(chain.head),
                "queue {q}: chains used out of order"
            );
            out.push((chain, len));
            self.used[q] = self.used[q].wrapping_add(1);
        }
        out
    }
}

fn le_header(h: &Hdr, len: u32) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[0..8].copy_from_slice(&h.src_cid.value().to_le_bytes());
    b[8..16].copy_from_slice(&h.dst_cid.value().to_le_bytes());
    b[16..20].copy_from_slice(&h.src_port.value().to_le_bytes());
    b[20..24].copy_from_slice(&h.dst_port.value().to_le_bytes());
    b[24..28].copy_from_slice(&h.len.unwrap_or(len).to_le_bytes());
    b[28..30].copy_from_slice(&h.type_.unwrap_or(1).to_le_bytes());
    b[30..32].copy_from_slice(&u16::from(h.op % 9).to_le_bytes());
    b[32..36].copy_from_slice(&h.flags.to_le_bytes());
    b[36..40].copy_from_slice(&h.buf_alloc.to_le_bytes());
    b[40..44].copy_from_slice(&h.fwd_cnt.to_le_bytes());
    b
}

/// What the guest learnt about each connection, for the checks.
#[derive(Default)]
struct Model {
    /// Keys (host-side port, guest port) the guest opened (REQUEST) or
    /// accepted (RESPONSE), with the largest buf_alloc it advertised there.
    opened: HashMap<(u32, u32), u32>,
}

/// Checks and recycles everything the device used.
fn collect(d: &mut Driver, mem: &GuestMemoryMmap, model: &Model) {
    for (_, len) in d.take_used(mem, TXQ) {
        assert_eq!(len, 0, "transmit buffers are not written");
    }
    for (chain, len) in d.take_used(mem, RXQ) {
        if len == 0 {
            continue;
        }
        let head = chain.head;
        assert!(len <= chain.room, "used {len} > buffer {}", chain.room);
        assert!(len as usize >= HEADER_LEN, "used {len}");
        // The head descriptor's address, as the driver wrote it.
        let at = desc_addr(RXQ) + 16 * u64::from(head);
        let addr: u64 = mem.read_obj(GuestAddress(at)).expect("ring in RAM");
        let mut h = [0u8; HEADER_LEN];
        mem.read_slice(&mut h, GuestAddress(addr))
            .expect("header in RAM");
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8"));
        let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4"));
        let u16_at = |i: usize| u16::from_le_bytes(h[i..i + 2].try_into().expect("2"));
        let (src_cid, dst_cid) = (u64_at(0), u64_at(8));
        let (src_port, dst_port, plen) = (u32_at(16), u32_at(20), u32_at(24));
        let (type_, op) = (u16_at(28), u16_at(30));
        assert_eq!((src_cid, dst_cid), (HOST_CID, CID), "packet addresses");
        assert_eq!(len, HEADER_LEN as u32 + plen, "used length vs len");
        assert!(
            [
                OP_REQUEST,
                OP_RESPONSE,
                OP_RST,
                OP_SHUTDOWN,
                OP_RW,
                OP_CREDIT_UPDATE
            ]
            .contains(&op),
            "op {op}"
        );
        if op != OP_RST {
            assert_eq!(type_, 1, "stream packets only");
        }
        if op == OP_RW {
            assert!(plen > 0 && plen <= MAX_PKT_DATA, "RW len {plen}");
            let key = (src_port, dst_port);
            let buf_alloc = model.opened.get(&key).copied().unwrap_or_else(|| {
                panic!("payload on {key:?}, which the guest never opened or accepted")
            });
            assert!(
                plen <= buf_alloc,
                "RW of {plen} with a buf_alloc of {buf_alloc}"
            );
        } else {
            assert_eq!(plen, 0, "op {op} with payload");
        }
    }
}

struct Host {
    path: PathBuf,
    peers: Vec<UnixListener>,
    streams: Vec<UnixStream>,
}

impl Host {
    fn new() -> Self {
        // One directory per fuzzing process; each run replaces the socket
        // (the stale-socket path) and the peers' listeners.
        static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        let dir = DIR
            .get_or_init(|| {
                let d = std::env::temp_dir().join(format!("vsock-fuzz-{}", std::process::id()));
                std::fs::create_dir_all(&d).expect("scratch directory");
                d
            })
            .clone();
        let path = dir.join("v.sock");
        let peers = PEER_PORTS
            .iter()
            .map(|p| {
                let at = dir.join(format!("v.sock_{p}"));
                let _ = std::fs::remove_file(&at);
                let l = UnixListener::bind(&at).expect("peer listener");
                l.set_nonblocking(true).expect("non-blocking");
                l
            })
            .collect();
        Host {
            path,
            peers,
            streams: Vec::new(),
        }
    }

    fn accept(&mut self) {
        for l in &self.peers {
            while let Ok((s, _)) = l.accept() {
                s.set_nonblocking(true).expect("non-blocking");
                if self.streams.len() < 64 {
                    self.streams.push(s);
                }
            }
        }
    }

    fn stream(&mut self, i: u8) -> Option<&mut UnixStream> {
        let n = self.streams.len();
        if n == 0 {
            return None;
        }
        self.streams.get_mut(usize::from(i) % n)
    }
}

fn host_event(t: &mut MmioTransport) {
    for fd in t.host_fds() {
        t.process_host_fd(fd);
    }
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM as usize)])
        .expect("guest memory");
    let mut host = Host::new();
    // Runs that ask for it get a 1 ms connect timeout, so `Wait` reaches
    // the timer's path; others keep the default 2 s (deterministic runs).
    let short_timeout = bool::arbitrary(u)?;
    let mut dev = VirtioVsock::new(CID, &host.path).expect("the socket can be made");
    if short_timeout {
        dev = dev.with_connect_timeout(Duration::from_millis(1));
    }
    let metrics = dev.metrics();
    let mut t = MmioTransport::new(Box::new(dev), mem.clone(), IrqLine::None).expect("transport");
    bring_up(&mut t, &mem);
    let mut d = Driver::new();
    let mut model = Model::default();
    let mut seen_local: HashSet<u32> = HashSet::new();
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = Op::arbitrary(u) else { break };
        vmm_fuzz::trace(&op);
        match op {
            Op::Tx {
                hdr,
                mut payload,
                layout,
            } => {
                payload.truncate(0x1_0000);
                let plen = payload.len() as u32;
                let header = le_header(&hdr, plen);
                let op = u16::from(hdr.op % 9);
                let key = (hdr.dst_port.value(), hdr.src_port.value());
                if (op == OP_REQUEST || op == OP_RESPONSE)
                    && hdr.src_cid.value() == CID
                    && hdr.dst_cid.value() == HOST_CID
                {
                    let e = model.opened.entry(key).or_insert(0);
                    *e = (*e).max(hdr.buf_alloc);
                } else if let Some(e) = model.opened.get_mut(&key) {
                    // Any packet on the connection updates its credit.
                    *e = (*e).max(hdr.buf_alloc);
                }
                let h = TX_BASE;
                let p = TX_BASE + 0x100;
                mem.write_slice(&header, GuestAddress(h)).expect("in RAM");
                let bufs: Vec<(u64, u32, u16)> = match layout {
                    Layout::One => {
                        mem.write_slice(&payload, GuestAddress(h + HEADER_LEN as u64))
                            .expect("in RAM");
                        vec![(h, HEADER_LEN as u32 + plen, 0)]
                    }
                    Layout::Two | Layout::Longer(_) => {
                        mem.write_slice(&payload, GuestAddress(p)).expect("in RAM");
                        let extra = match layout {
                            Layout::Longer(x) => u32::from(x),
                            _ => 0,
                        };
                        vec![(h, HEADER_LEN as u32, 0), (p, plen + extra, 0)]
                    }
                    Layout::SplitHeader => vec![(h, 20, 0), (h + 20, 24 + plen, 0)],
                    Layout::Writable => vec![(h, HEADER_LEN as u32 + plen, 2)],
                };
                d.push(&mem, TXQ, &bufs, None, 0);
                t.process_queue(TXQ);
            }
            Op::TxRaw { descs, bytes } => {
                let descs: Vec<RawDesc> = descs.into_iter().take(8).collect();
                mem.write_slice(&bytes[..bytes.len().min(0x1000)], GuestAddress(TX_BASE))
                    .expect("in RAM");
                let bufs: Vec<(u64, u32, u16)> = descs
                    .iter()
                    .map(|r| {
                        let addr = if r.addr & 0x8000_0000 != 0 {
                            u64::from(r.addr) << 12
                        } else {
                            TX_BASE + u64::from(r.addr % 0x2_0000)
                        };
                        (addr, r.len, r.flags)
                    })
                    .collect();
                let next: Vec<u8> = descs.iter().map(|r| r.next).collect();
                d.push(&mem, TXQ, &bufs, Some(&next), 0);
                t.process_queue(TXQ);
            }
            Op::Rx { n, layout } => {
                for _ in 0..(n % 8) {
                    let slot = RX_BASE + (d.rx_slot % 24) * RX_STRIDE;
                    d.rx_slot += 1;
                    let (bufs, room) = match layout {
                        RxLayout::One(r) => {
                            let r = u32::from(r) % (RX_STRIDE as u32 - HEADER_LEN as u32);
                            (
                                vec![(slot, HEADER_LEN as u32 + r, 2)],
                                HEADER_LEN as u32 + r,
                            )
                        }
                        RxLayout::Two(r) => {
                            let r = u32::from(r) % 0x800;
                            let data = slot + 0x400;
                            (
                                vec![(slot, HEADER_LEN as u32, 2), (data, r, 2)],
                                HEADER_LEN as u32 + r,
                            )
                        }
                        RxLayout::HeaderOnly => {
                            (vec![(slot, HEADER_LEN as u32, 2)], HEADER_LEN as u32)
                        }
                        RxLayout::Readable => (vec![(slot, 0x200, 0)], 0x200),
                        RxLayout::Outside => (vec![(MEM - 8, 0x200, 2)], 0x200),
                    };
                    d.push(&mem, RXQ, &bufs, None, room);
                }
                t.process_queue(RXQ);
            }
            Op::Notify(q) => {
                // The driver's notify without an ioeventfd: the register
                // write, then the device thread's wake-up.
                w32(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, u32::from(q % 4));
                t.process_queue(usize::from(q % 4));
            }
            Op::HostConnect { port, raw } => {
                if let Ok(mut s) = UnixStream::connect(&host.path) {
                    s.set_nonblocking(true).expect("non-blocking");
                    let line = match port {
                        Some(p) => format!("CONNECT {}\n", p.value()).into_bytes(),
                        None => raw.into_iter().take(64).collect(),
                    };
                    let _ = s.write(&line);
                    if host.streams.len() < 64 {
                        host.streams.push(s);
                    }
                }
                host_event(&mut t);
            }
            Op::HostWrite { i, data } => {
                if let Some(s) = host.stream(i) {
                    let _ = s.write(&data[..data.len().min(0x4000)]);
                }
                host_event(&mut t);
            }
            Op::HostRead(i) => {
                if let Some(s) = host.stream(i) {
                    let mut b = vec![0u8; 0x2_0000];
                    if let Ok(n) = s.read(&mut b) {
                        // An OK line names the host-side port to use.
                        if let Some(port) = std::str::from_utf8(&b[..n.min(20)])
                            .ok()
                            .and_then(|l| l.strip_prefix("OK "))
                            .and_then(|l| l.split('\n').next())
                            .and_then(|p| p.parse::<u32>().ok())
                        {
                            seen_local.insert(port);
                        }
                    }
                }
                host_event(&mut t);
            }
            Op::HostShutdown(i) => {
                if let Some(s) = host.stream(i) {
                    let _ = s.shutdown(std::net::Shutdown::Write);
                }
                host_event(&mut t);
            }
            Op::HostClose(i) => {
                let n = host.streams.len();
                if n > 0 {
                    host.streams.remove(usize::from(i) % n);
                }
                host_event(&mut t);
            }
            Op::HostEvent => host_event(&mut t),
            Op::Wait => {
                if short_timeout {
                    std::thread::sleep(Duration::from_millis(2));
                }
                host_event(&mut t);
            }
            Op::Reset => {
                collect(&mut d, &mem, &model);
                bring_up(&mut t, &mem);
                d = Driver::new();
                model = Model::default();
            }
        }
        host.accept();
        collect(&mut d, &mem, &model);
    }
    assert!(t.is_active(), "status {:#x}", t.status());
    assert!(seen_local.iter().all(|p| *p >= 1 << 30), "{seen_local:?}");
    let _ = format!("{t:?}");
    vmm_fuzz::trace(&metrics);
    t.shutdown();
    drop(t);
    drop(host);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
