//! The vsock device driven as a guest driver and a host process would: mock
//! split queues on one side, real Unix sockets in a scratch directory on
//! the other. The device thread's part is played by calling
//! `process_queue`/`process_host_fd` after each step.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_DEVICE_ID, VIRTIO_MMIO_STATUS};
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

use super::credit::BUF_ALLOC;
use super::muxer::{parse_connect, LOCAL_PORT_FIRST, MAX_STRAY_RSTS};
use super::packet::*;
use super::*;
use crate::virtio::testing::{activate, device_features, read32, write32};
use crate::virtio::{MmioTransport, VIRTIO_F_VERSION_1};
use crate::IrqLine;

const SIZE: u16 = 16;
const CID: u64 = 3;
const RX_BASE: u64 = 0x8_0000;
const RX_STRIDE: u64 = 0x2000;
const RX_DATA: u32 = 4096;
const TX_BASE: u64 = 0x10_0000;
const TX_STRIDE: u64 = 0x1_1000;
const W: u16 = VRING_DESC_F_WRITE as u16;

type Mock<'a> = MockSplitQueue<'a, GuestMemoryMmap>;

fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap()
}

/// A fresh scratch directory for one test's sockets.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vsock-dev-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One queue as the driver sees it. The mock is 4 times the queue size
/// (virtio-queue 0.18's mock lays its used ring over the available ring
/// otherwise; see the rng tests); entries are written modulo the size the
/// device uses.
struct Q<'a> {
    mock: Mock<'a>,
    next_desc: u16,
    avail: u16,
    used: u16,
}

impl<'a> Q<'a> {
    fn new(mem: &'a GuestMemoryMmap, at: u64) -> Self {
        Q {
            mock: MockSplitQueue::create(mem, GuestAddress(at), 4 * SIZE),
            next_desc: 0,
            avail: 0,
            used: 0,
        }
    }

    /// Stores a chain at descriptor `head` and up, and makes it available.
    fn post(&mut self, mem: &GuestMemoryMmap, head: u16, bufs: &[(u64, u32, u16)]) {
        for (k, &(addr, len, flags)) in bufs.iter().enumerate() {
            let i = (head + k as u16) % SIZE;
            let more = if k + 1 < bufs.len() {
                VRING_DESC_F_NEXT as u16
            } else {
                0
            };
            let d = SplitDescriptor::new(addr, len, flags | more, (i + 1) % SIZE);
            self.mock
                .desc_table()
                .store(i, RawDescriptor::from(d))
                .unwrap();
        }
        let avail = self.mock.avail_addr();
        let slot = avail.unchecked_add(4 + 2 * u64::from(self.avail % SIZE));
        mem.write_obj(head, slot).unwrap();
        self.avail = self.avail.wrapping_add(1);
        mem.write_obj(self.avail, avail.unchecked_add(2)).unwrap();
    }

    /// Like [`Self::post`] at the next descriptors in turn.
    fn push(&mut self, mem: &GuestMemoryMmap, bufs: &[(u64, u32, u16)]) {
        let head = self.next_desc;
        self.next_desc = (head + bufs.len() as u16) % SIZE;
        self.post(mem, head, bufs);
    }

    /// Used entries not seen yet: (head, len).
    fn take_used(&mut self, mem: &GuestMemoryMmap) -> Vec<(u32, u32)> {
        let used = self.mock.used_addr();
        let idx: u16 = mem.read_obj(used.unchecked_add(2)).unwrap();
        let mut out = Vec::new();
        while self.used != idx {
            let at = used.unchecked_add(4 + 8 * u64::from(self.used % SIZE));
            let id: u32 = mem.read_obj(at).unwrap();
            let len: u32 = mem.read_obj(at.unchecked_add(4)).unwrap();
            out.push((id, len));
            self.used = self.used.wrapping_add(1);
        }
        out
    }
}

fn encode(h: &Header) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[0..8].copy_from_slice(&h.src_cid.to_le_bytes());
    b[8..16].copy_from_slice(&h.dst_cid.to_le_bytes());
    b[16..20].copy_from_slice(&h.src_port.to_le_bytes());
    b[20..24].copy_from_slice(&h.dst_port.to_le_bytes());
    b[24..28].copy_from_slice(&h.len.to_le_bytes());
    b[28..30].copy_from_slice(&h.type_.to_le_bytes());
    b[30..32].copy_from_slice(&h.op.to_le_bytes());
    b[32..36].copy_from_slice(&h.flags.to_le_bytes());
    b[36..40].copy_from_slice(&h.buf_alloc.to_le_bytes());
    b[40..44].copy_from_slice(&h.fwd_cnt.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> Header {
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let u16_at = |i: usize| u16::from_le_bytes(b[i..i + 2].try_into().unwrap());
    Header {
        src_cid: u64_at(0),
        dst_cid: u64_at(8),
        src_port: u32_at(16),
        dst_port: u32_at(20),
        len: u32_at(24),
        type_: u16_at(28),
        op: u16_at(30),
        flags: u32_at(32),
        buf_alloc: u32_at(36),
        fwd_cnt: u32_at(40),
    }
}

/// A guest packet from `(CID, src_port)` to `(host, dst_port)`.
fn guest(src_port: u32, dst_port: u32, op: u16) -> Header {
    Header {
        src_cid: CID,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        type_: TYPE_STREAM,
        op,
        buf_alloc: 1 << 20,
        ..Header::default()
    }
}

struct Rig<'a> {
    mem: &'a GuestMemoryMmap,
    t: MmioTransport,
    rx: Q<'a>,
    tx: Q<'a>,
    ev: Q<'a>,
    metrics: Arc<VsockMetrics>,
    path: PathBuf,
    dir: PathBuf,
    tx_slot: u64,
}

impl<'a> Rig<'a> {
    /// A vsock transport listening in a scratch directory, not activated.
    fn new(mem: &'a GuestMemoryMmap, name: &str) -> Self {
        Self::with_timeout(mem, name, super::muxer::CONNECT_TIMEOUT)
    }

    fn with_timeout(mem: &'a GuestMemoryMmap, name: &str, timeout: Duration) -> Self {
        let dir = scratch(name);
        let path = dir.join("v.sock");
        let dev = VirtioVsock::new(CID, &path)
            .unwrap()
            .with_connect_timeout(timeout);
        let metrics = dev.metrics();
        let t = MmioTransport::new(Box::new(dev), mem.clone(), IrqLine::None).unwrap();
        Rig {
            mem,
            t,
            rx: Q::new(mem, 0x1_0000),
            tx: Q::new(mem, 0x1_8000),
            ev: Q::new(mem, 0x2_0000),
            metrics,
            path,
            dir,
            tx_slot: 0,
        }
    }

    fn activate(&mut self) {
        activate(
            &mut self.t,
            VIRTIO_F_VERSION_1,
            &[&self.rx.mock, &self.tx.mock, &self.ev.mock],
            u32::from(SIZE),
        );
    }

    /// Active, with `n` receive buffers posted (not notified).
    fn active(mem: &'a GuestMemoryMmap, name: &str, n: u16) -> Self {
        let mut r = Self::new(mem, name);
        r.activate();
        for k in 0..n {
            r.post_rx(k);
        }
        r
    }

    fn post_rx(&mut self, k: u16) {
        let addr = RX_BASE + u64::from(k) * RX_STRIDE;
        self.rx
            .post(self.mem, k, &[(addr, HEADER_LEN as u32 + RX_DATA, W)]);
    }

    /// The guest sends `h` with `data` (header and payload in one
    /// descriptor) and notifies the tx queue.
    fn send(&mut self, mut h: Header, data: &[u8]) {
        h.len = data.len() as u32;
        let addr = TX_BASE + (self.tx_slot % u64::from(SIZE)) * TX_STRIDE;
        self.tx_slot += 1;
        self.mem
            .write_slice(&encode(&h), GuestAddress(addr))
            .unwrap();
        self.mem
            .write_slice(data, GuestAddress(addr + HEADER_LEN as u64))
            .unwrap();
        let len = (HEADER_LEN + data.len()) as u32;
        self.tx.push(self.mem, &[(addr, len, 0)]);
        self.t.process_queue(TXQ);
    }

    /// The device thread saw the epoll descriptor fire.
    fn host(&mut self) {
        let fds = self.t.host_fds();
        assert_eq!(fds.len(), 1);
        self.t.process_host_fd(fds[0]);
    }

    /// Packets the device put in receive buffers since the last call; each
    /// buffer is posted again.
    fn received(&mut self) -> Vec<(Header, Vec<u8>)> {
        let mut out = Vec::new();
        for (id, len) in self.rx.take_used(self.mem) {
            let addr = RX_BASE + u64::from(id) * RX_STRIDE;
            let mut b = [0u8; HEADER_LEN];
            self.mem.read_slice(&mut b, GuestAddress(addr)).unwrap();
            let h = decode(&b);
            assert_eq!(len, HEADER_LEN as u32 + h.len, "used length of {h:?}");
            let mut data = vec![0u8; h.len as usize];
            self.mem
                .read_slice(&mut data, GuestAddress(addr + HEADER_LEN as u64))
                .unwrap();
            out.push((h, data));
            self.post_rx(id as u16);
        }
        out
    }

    /// The one packet received since the last call.
    fn one(&mut self) -> (Header, Vec<u8>) {
        let mut p = self.received();
        assert_eq!(p.len(), 1, "{p:?}");
        p.remove(0)
    }

    /// A host process connects to the device's socket and asks for guest
    /// port `port`; returns it and the REQUEST the guest got.
    fn host_connect(&mut self, port: u32) -> (UnixStream, Header) {
        let mut s = UnixStream::connect(&self.path).unwrap();
        s.write_all(format!("CONNECT {port}\n").as_bytes()).unwrap();
        self.host();
        let (h, data) = self.one();
        assert!(data.is_empty());
        (s, h)
    }

    /// A host-initiated connection to guest port `port`, accepted by the
    /// guest with `buf_alloc`; returns the host socket and the host-side
    /// port.
    fn established(&mut self, port: u32, buf_alloc: u32) -> (UnixStream, u32) {
        let (mut s, req) = self.host_connect(port);
        let mut resp = guest(port, req.src_port, OP_RESPONSE);
        resp.buf_alloc = buf_alloc;
        self.send(resp, &[]);
        let ok = format!("OK {}\n", req.src_port);
        let mut line = vec![0u8; ok.len()];
        s.read_exact(&mut line).unwrap();
        assert_eq!(line, ok.as_bytes());
        (s, req.src_port)
    }
}

impl Drop for Rig<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the device closed the host socket: end of file, or a reset if
/// it closed with bytes unread.
fn closed(s: &mut UnixStream) -> bool {
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

fn read_some(s: &mut UnixStream) -> Vec<u8> {
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut b = vec![0u8; 256 << 10];
    let n = s.read(&mut b).unwrap();
    b.truncate(n);
    b
}

#[test]
fn test_vsock_identity_queues_and_config() {
    let mem = memory();
    let mut r = Rig::new(&mem, "identity");
    assert_eq!(read32(&mut r.t, VIRTIO_MMIO_DEVICE_ID), 19);
    assert_eq!(device_features(&mut r.t), VIRTIO_F_VERSION_1);
    let mut cfg = [0u8; 8];
    r.t.read(0x100, &mut cfg);
    assert_eq!(u64::from_le_bytes(cfg), CID);
    r.t.write(0x100, &[9; 8]);
    r.t.read(0x100, &mut cfg);
    assert_eq!(u64::from_le_bytes(cfg), CID, "read-only");
    let dev = VirtioVsock::new(7, &r.dir.join("other.sock")).unwrap();
    assert_eq!(dev.queue_max_sizes(), &[256, 256, 256]);
}

/// Where the snapshot test's event buffer is.
const EV_BUF: u64 = 0x3_0000;

#[test]
fn test_vsock_snapshot_identity_and_transport_reset_after_restore() {
    let mem = memory();
    let mut r = Rig::active(&mem, "restore", 4);
    let (mut host, local) = r.established(5000, 1 << 16);
    let id = r.t.backend_identity();
    assert_eq!(
        id,
        BackendIdentity::Vsock {
            cid: CID,
            socket: r.path.clone(),
        }
    );
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(serde_json::from_str::<BackendIdentity>(&json).unwrap(), id);
    let state = r.t.state();

    // "Another process": a new device and transport given the saved state.
    let dev = VirtioVsock::new(CID, &r.dir.join("restored.sock")).unwrap();
    r.t = MmioTransport::new(Box::new(dev), mem.clone(), IrqLine::None).unwrap();
    r.t.restore(&state).unwrap();
    // The old device is gone, and its host socket with it.
    let mut b = [0u8; 1];
    assert_eq!(host.read(&mut b).unwrap(), 0, "old connection closed");
    // No event buffer yet: the announcement waits.
    r.t.process_queue(RXQ);
    assert!(r.ev.take_used(&mem).is_empty());
    mem.write_obj(0xffff_ffffu32, GuestAddress(EV_BUF)).unwrap();
    r.ev.push(&mem, &[(EV_BUF, 4, W)]);
    r.t.process_queue(EVENTQ);
    let used = r.ev.take_used(&mem);
    assert_eq!(used, [(0, 4)], "one event, 4 bytes");
    let event: u32 = mem.read_obj(GuestAddress(EV_BUF)).unwrap();
    assert_eq!(event, EVENT_TRANSPORT_RESET);
    // Once only.
    r.ev.push(&mem, &[(EV_BUF, 4, W)]);
    r.t.process_queue(EVENTQ);
    assert!(r.ev.take_used(&mem).is_empty());
    // A packet of the old connection now has nobody behind it: RST.
    r.send(guest(5000, local, OP_RW), b"after");
    assert_eq!(r.one().0.op, OP_RST);
}

#[test]
fn test_vsock_bad_socket_paths_are_refused_by_name() {
    let dir = scratch("paths");
    let file = dir.join("not-a-socket");
    std::fs::write(&file, b"x").unwrap();
    let e = VirtioVsock::new(CID, &file).unwrap_err();
    assert!(e.is_bad_path());
    assert!(e.to_string().contains("not-a-socket"), "{e}");
    let e = VirtioVsock::new(CID, &dir.join("no/such/dir.sock")).unwrap_err();
    assert!(e.to_string().contains("no/such/dir.sock"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn test_vsock_host_initiated_connection_end_to_end() {
    let mem = memory();
    let mut r = Rig::active(&mem, "host-init", 8);
    let (mut s, req) = r.host_connect(1234);
    assert_eq!(
        (req.src_cid, req.dst_cid, req.dst_port, req.op, req.type_),
        (HOST_CID, CID, 1234, OP_REQUEST, TYPE_STREAM)
    );
    assert_eq!(req.src_port, LOCAL_PORT_FIRST);
    assert_eq!((req.buf_alloc, req.fwd_cnt), (BUF_ALLOC, 0));
    // The guest accepts: the host reads OK <its port>.
    r.send(guest(1234, req.src_port, OP_RESPONSE), &[]);
    assert_eq!(
        read_some(&mut s),
        format!("OK {}\n", req.src_port).as_bytes()
    );
    // Host to guest.
    s.write_all(b"ping from host").unwrap();
    r.host();
    let (h, data) = r.one();
    assert_eq!((h.op, h.src_port, h.dst_port), (OP_RW, req.src_port, 1234));
    assert_eq!(data, b"ping from host");
    // Guest to host.
    r.send(guest(1234, req.src_port, OP_RW), b"PING FROM HOST");
    assert_eq!(read_some(&mut s), b"PING FROM HOST");
    assert_eq!(r.metrics.tx_bytes(), 14);
    assert_eq!(r.metrics.rx_bytes(), 14);
    // The host closes: the guest is told both ways are shut, then reset.
    drop(s);
    r.host();
    let p = r.received();
    let ops: Vec<(u16, u32)> = p.iter().map(|(h, _)| (h.op, h.flags)).collect();
    assert_eq!(ops, [(OP_SHUTDOWN, SHUTDOWN_F_BOTH), (OP_RST, 0)]);
    assert_eq!(r.metrics.host_connections(), 1);
    // The connection is gone: its port's packets get an RST now.
    r.send(guest(1234, req.src_port, OP_RW), b"late");
    assert_eq!(r.one().0.op, OP_RST);
    assert_eq!(r.metrics.stray_resets(), 1);
}

#[test]
fn test_vsock_host_connect_to_a_port_the_guest_refuses_closes_the_socket() {
    let mem = memory();
    let mut r = Rig::active(&mem, "host-refused", 4);
    let (mut s, req) = r.host_connect(9999);
    r.send(guest(9999, req.src_port, OP_RST), &[]);
    assert!(read_some(&mut s).is_empty(), "end of file, no OK line");
    assert!(r.received().is_empty(), "no RST for an RST");
    assert_eq!(r.metrics.host_connections(), 0);
}

#[test]
fn test_vsock_host_handshake_errors_close_the_socket() {
    let mem = memory();
    let mut r = Rig::active(&mem, "handshake", 4);
    for bad in [
        &b"HELLO 12\n"[..],
        b"CONNECT\n",
        b"CONNECT 99999999999\n",
        &[b'C'; 40],
    ] {
        let mut s = UnixStream::connect(&r.path).unwrap();
        s.write_all(bad).unwrap();
        r.host();
        assert!(closed(&mut s), "{bad:?}");
    }
    assert_eq!(r.metrics.bad_handshakes(), 4);
    assert!(r.received().is_empty());
    // A line in pieces works.
    let mut s = UnixStream::connect(&r.path).unwrap();
    s.write_all(b"CONN").unwrap();
    r.host();
    assert!(r.received().is_empty());
    s.write_all(b"ECT 77\nearly").unwrap();
    r.host();
    let (req, _) = r.one();
    assert_eq!((req.op, req.dst_port), (OP_REQUEST, 77));
    // Bytes sent before the OK are the stream's first.
    r.send(guest(77, req.src_port, OP_RESPONSE), &[]);
    let (h, data) = r.one();
    assert_eq!((h.op, data.as_slice()), (OP_RW, &b"early"[..]));
    assert_eq!(parse_connect(b"CONNECT 5"), Some(5));
}

#[test]
fn test_vsock_guest_initiated_connection_end_to_end() {
    let mem = memory();
    let mut r = Rig::active(&mem, "guest-init", 8);
    let listener = UnixListener::bind(unix::port_path(&r.path, 5678)).unwrap();
    r.send(guest(40000, 5678, OP_REQUEST), &[]);
    let (h, _) = r.one();
    assert_eq!(
        (h.op, h.src_cid, h.dst_cid, h.src_port, h.dst_port),
        (OP_RESPONSE, HOST_CID, CID, 5678, 40000)
    );
    let (mut s, _) = listener.accept().unwrap();
    r.send(guest(40000, 5678, OP_RW), b"hello from guest");
    assert_eq!(read_some(&mut s), b"hello from guest");
    s.write_all(b"hello from host").unwrap();
    r.host();
    let (h, data) = r.one();
    assert_eq!((h.op, data.as_slice()), (OP_RW, &b"hello from host"[..]));
    // The guest half-closes: the host reads end of file, and may still
    // send.
    let mut sd = guest(40000, 5678, OP_SHUTDOWN);
    sd.flags = SHUTDOWN_F_SEND;
    r.send(sd, &[]);
    assert!(read_some(&mut s).is_empty());
    s.write_all(b"more").unwrap();
    r.host();
    assert_eq!(r.one().1, b"more");
    // Both ways shut: the device resets the connection and closes the
    // host socket.
    sd.flags = SHUTDOWN_F_RECEIVE;
    r.send(sd, &[]);
    assert_eq!(r.one().0.op, OP_RST);
    assert_eq!(
        s.write(b"x").unwrap_err().kind(),
        std::io::ErrorKind::BrokenPipe
    );
    assert_eq!(r.metrics.guest_connections(), 1);
}

#[test]
fn test_vsock_guest_connect_with_no_listener_gets_rst() {
    let mem = memory();
    let mut r = Rig::active(&mem, "no-listener", 4);
    r.send(guest(40001, 5679, OP_REQUEST), &[]);
    let (h, _) = r.one();
    assert_eq!(
        (h.op, h.src_port, h.dst_port, h.dst_cid),
        (OP_RST, 5679, 40001, CID)
    );
    assert_eq!(r.metrics.refused(), 1);
}

#[test]
fn test_vsock_never_sends_the_guest_more_than_its_credit() {
    let mem = memory();
    let mut r = Rig::active(&mem, "credit-rx", 8);
    let (mut s, port) = r.established(1234, 4096);
    let sent: Vec<u8> = (0..16384u32).map(|i| (i * 7 % 251) as u8).collect();
    s.write_all(&sent).unwrap();
    r.host();
    let mut got = Vec::new();
    let mut fwd_cnt = 0u32;
    for _ in 0..4 {
        let before = got.len();
        for (h, data) in r.received() {
            assert_eq!(h.op, OP_RW);
            got.extend(data);
        }
        assert_eq!(
            got.len() - before,
            4096,
            "exactly the credit, 8 buffers posted"
        );
        // Nothing more arrives on another event without new credit.
        r.host();
        r.t.process_queue(RXQ);
        assert!(r.received().is_empty());
        // The guest consumed it all.
        fwd_cnt += 4096;
        let mut up = guest(1234, port, OP_CREDIT_UPDATE);
        up.buf_alloc = 4096;
        up.fwd_cnt = fwd_cnt;
        r.send(up, &[]);
    }
    assert_eq!(got, sent);
    assert!(r.received().is_empty());
    // A credit request gets an update with the device's counters.
    r.send(guest(1234, port, OP_CREDIT_REQUEST), &[]);
    let (h, _) = r.one();
    assert_eq!(
        (h.op, h.buf_alloc, h.fwd_cnt),
        (OP_CREDIT_UPDATE, BUF_ALLOC, 0)
    );
}

#[test]
fn test_vsock_guest_to_host_buffering_is_bounded_by_the_credit() {
    let mem = memory();
    let mut r = Rig::active(&mem, "credit-tx", 8);
    let listener = UnixListener::bind(unix::port_path(&r.path, 7000)).unwrap();
    r.send(guest(40002, 7000, OP_REQUEST), &[]);
    assert_eq!(r.one().0.op, OP_RESPONSE);
    let (mut s, _) = listener.accept().unwrap();
    // The host does not read. The guest sends within the credit it was
    // given (each packet it gets carries the device's fwd_cnt).
    let chunk: Vec<u8> = (0..MAX_PKT_DATA).map(|i| (i % 253) as u8).collect();
    let (mut tx_cnt, mut fwd_cnt) = (0u32, 0u32);
    let mut rounds = 0;
    loop {
        let room = BUF_ALLOC - (tx_cnt - fwd_cnt);
        if room == 0 {
            break;
        }
        let n = room.min(MAX_PKT_DATA) as usize;
        r.send(guest(40002, 7000, OP_RW), &chunk[..n]);
        tx_cnt += n as u32;
        for (h, _) in r.received() {
            assert_eq!(h.op, OP_CREDIT_UPDATE);
            fwd_cnt = h.fwd_cnt;
        }
        rounds += 1;
        assert!(rounds < 1000, "the host socket never filled");
    }
    // The device holds at most what it advertised.
    assert_eq!(tx_cnt - fwd_cnt, BUF_ALLOC);
    assert!(r.metrics.tx_bytes() < u64::from(tx_cnt));
    // One byte beyond the credit resets the connection.
    r.send(guest(40002, 7000, OP_RW), b"!");
    assert_eq!(r.one().0.op, OP_RST);
    assert_eq!(r.metrics.credit_violations(), 1);
    // The host gets everything up to the reset, in order.
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got.len() as u64, r.metrics.tx_bytes());
    for (i, b) in got.iter().enumerate() {
        assert_eq!(*b, chunk[i % MAX_PKT_DATA as usize], "byte {i}");
    }
}

#[test]
fn test_vsock_host_socket_drains_and_credit_updates_follow() {
    let mem = memory();
    let mut r = Rig::active(&mem, "drain", 8);
    let listener = UnixListener::bind(unix::port_path(&r.path, 7001)).unwrap();
    r.send(guest(40003, 7001, OP_REQUEST), &[]);
    assert_eq!(r.one().0.op, OP_RESPONSE);
    let (mut s, _) = listener.accept().unwrap();
    let chunk = vec![0x5au8; MAX_PKT_DATA as usize];
    let mut tx_cnt = 0u32;
    let mut fwd_cnt = 0u32;
    // Fill the host socket and the device's buffer.
    while BUF_ALLOC - (tx_cnt - fwd_cnt) > 0 {
        let n = (BUF_ALLOC - (tx_cnt - fwd_cnt)) as usize;
        r.send(guest(40003, 7001, OP_RW), &chunk[..n]);
        tx_cnt += n as u32;
        for (h, _) in r.received() {
            fwd_cnt = h.fwd_cnt;
        }
    }
    // The host reads everything; the device flushes on EPOLLOUT and tells
    // the guest.
    s.set_nonblocking(true).unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..100 {
        while let Ok(n) = s.read(&mut buf) {
            total += n;
        }
        r.host();
        for (h, _) in r.received() {
            assert_eq!(h.op, OP_CREDIT_UPDATE);
            fwd_cnt = h.fwd_cnt;
        }
        if total == tx_cnt as usize {
            break;
        }
    }
    assert_eq!(total, tx_cnt as usize);
    assert_eq!(fwd_cnt, tx_cnt, "the guest learnt everything was forwarded");
}

#[test]
fn test_vsock_bad_packets_are_dropped_or_reset_never_fatal() {
    let mem = memory();
    let mut r = Rig::active(&mem, "bad", 8);
    // Not from the guest's CID, not for the host: dropped silently.
    let mut h = guest(1, 2, OP_REQUEST);
    h.src_cid = 4;
    r.send(h, &[]);
    let mut h = guest(1, 2, OP_REQUEST);
    h.dst_cid = 1;
    r.send(h, &[]);
    let mut h = guest(1, 2, OP_REQUEST);
    h.dst_cid = HOST_CID | 1 << 32;
    r.send(h, &[]);
    assert!(r.received().is_empty());
    assert_eq!(r.metrics.dropped_packets(), 3);
    // SEQPACKET (not offered): RST of the same type.
    let mut h = guest(1, 2, OP_REQUEST);
    h.type_ = 2;
    r.send(h, &[]);
    let (rst, _) = r.one();
    assert_eq!(
        (rst.op, rst.type_, rst.src_port, rst.dst_port),
        (OP_RST, 2, 2, 1)
    );
    // Data, shutdown, credit ops and unknown ops for no connection: RST;
    // an RST for none: nothing.
    for op in [
        OP_RW,
        OP_RESPONSE,
        OP_SHUTDOWN,
        OP_CREDIT_UPDATE,
        OP_CREDIT_REQUEST,
        0,
        99,
    ] {
        r.send(guest(1, 2, op), b"x");
        assert_eq!(r.one().0.op, OP_RST, "op {op}");
    }
    r.send(guest(1, 2, OP_RST), &[]);
    assert!(r.received().is_empty());
    // Malformed chains: a header shorter than 44 bytes, a device-writable
    // header, a length beyond the buffer or the limit, a buffer outside RAM.
    r.tx.push(&mem, &[(TX_BASE, 20, 0)]);
    r.tx.push(&mem, &[(TX_BASE, 44, W)]);
    let mut h = guest(1, 2, OP_RW);
    h.len = 100;
    mem.write_slice(&encode(&h), GuestAddress(TX_BASE)).unwrap();
    r.tx.push(&mem, &[(TX_BASE, 60, 0)]);
    h.len = MAX_PKT_DATA + 1;
    mem.write_slice(&encode(&h), GuestAddress(TX_BASE + 0x1000))
        .unwrap();
    r.tx.push(
        &mem,
        &[
            (TX_BASE + 0x1000, 44, 0),
            (TX_BASE + 0x2000, MAX_PKT_DATA + 1, 0),
        ],
    );
    r.tx.push(&mem, &[((4 << 20) - 8, 44, 0)]);
    r.t.process_queue(TXQ);
    assert_eq!(r.metrics.invalid_chains(), 5);
    let used = r.tx.take_used(&mem);
    assert!(used.iter().all(|&(_, len)| len == 0), "{used:?}");
    assert!(r.received().is_empty());
    // A receive buffer the device cannot use is returned empty.
    r.rx.post(&mem, 15, &[(RX_BASE, 20, W)]);
    r.send(guest(1, 2, OP_RW), b"x");
    assert_eq!(
        r.metrics.invalid_chains(),
        5,
        "the posted buffers come first"
    );
    assert!(r.t.is_active());
}

#[test]
fn test_vsock_protocol_errors_reset_the_connection() {
    let mem = memory();
    let mut r = Rig::active(&mem, "protocol", 8);
    // Data before the RESPONSE.
    let (mut s, req) = r.host_connect(1234);
    r.send(guest(1234, req.src_port, OP_RW), b"too early");
    assert_eq!(r.one().0.op, OP_RST);
    assert!(
        read_some(&mut s).is_empty(),
        "host socket closed, nothing written"
    );
    // A second REQUEST on an established connection.
    let (mut s, port) = r.established(1235, 4096);
    r.send(guest(1235, port, OP_REQUEST), &[]);
    assert_eq!(r.one().0.op, OP_RST);
    assert!(read_some(&mut s).is_empty());
    // Data after the guest's SHUTDOWN(SEND).
    let (mut s, port) = r.established(1236, 4096);
    let mut sd = guest(1236, port, OP_SHUTDOWN);
    sd.flags = SHUTDOWN_F_SEND;
    r.send(sd, &[]);
    assert!(read_some(&mut s).is_empty(), "half-closed");
    r.send(guest(1236, port, OP_RW), b"after");
    assert_eq!(r.one().0.op, OP_RST);
    assert_eq!(r.metrics.protocol_errors(), 3);
}

#[test]
fn test_vsock_full_stray_rst_queue_stalls_tx_until_rx_buffers_come() {
    let mem = memory();
    let mut r = Rig::active(&mem, "stall", 0);
    let mut sent = 0;
    let mut used = 0;
    // No receive buffers: each junk packet's RST waits.
    for _ in 0..5 {
        for _ in 0..SIZE {
            r.send(guest(1, 2, OP_RW), b"?");
            sent += 1;
        }
        used += r.tx.take_used(&mem).len();
    }
    assert_eq!(used, MAX_STRAY_RSTS, "the device stopped taking tx chains");
    assert_eq!(sent - used, SIZE as usize, "a full queue of chains waits");
    // Receive buffers and a notify: the RSTs go out and tx resumes.
    let mut rsts = 0;
    for k in 0..SIZE {
        r.post_rx(k);
    }
    for _ in 0..10 {
        // Each round's buffers are posted again by `received`.
        r.t.process_queue(RXQ);
        rsts += r.received().len();
        if rsts == sent {
            break;
        }
    }
    assert_eq!(rsts, sent);
    assert_eq!(r.tx.take_used(&mem).len(), SIZE as usize);
}

#[test]
fn test_vsock_connections_are_bounded() {
    let mem = memory();
    let mut r = Rig::active(&mem, "bounded", 8);
    let listener = UnixListener::bind(unix::port_path(&r.path, 6000)).unwrap();
    let mut hosts = Vec::new();
    for i in 0..MAX_CONNECTIONS as u32 {
        r.send(guest(10_000 + i, 6000, OP_REQUEST), &[]);
        assert_eq!(r.one().0.op, OP_RESPONSE, "connection {i}");
        hosts.push(listener.accept().unwrap().0);
    }
    r.send(guest(20_000, 6000, OP_REQUEST), &[]);
    assert_eq!(r.one().0.op, OP_RST);
    // A host process beyond the limit is closed at once.
    let mut s = UnixStream::connect(&r.path).unwrap();
    r.host();
    assert!(read_some(&mut s).is_empty());
    assert_eq!(r.metrics.refused(), 2);
    // One ends: there is room again.
    r.send(guest(10_000, 6000, OP_RST), &[]);
    r.send(guest(20_000, 6000, OP_REQUEST), &[]);
    assert_eq!(r.one().0.op, OP_RESPONSE);
}

#[test]
fn test_vsock_host_events_before_driver_ok_wait_for_the_first_notify() {
    let mem = memory();
    let mut r = Rig::new(&mem, "early");
    let mut s = UnixStream::connect(&r.path).unwrap();
    s.write_all(b"CONNECT 1234\n").unwrap();
    // The device thread's event, while inactive: dropped by the transport.
    r.host();
    r.activate();
    for k in 0..4 {
        r.post_rx(k);
    }
    r.t.process_queue(RXQ);
    let (h, _) = r.one();
    assert_eq!((h.op, h.dst_port), (OP_REQUEST, 1234));
    r.send(guest(1234, h.src_port, OP_RESPONSE), &[]);
    assert_eq!(read_some(&mut s), format!("OK {}\n", h.src_port).as_bytes());
}

#[test]
fn test_vsock_reset_closes_connections_and_keeps_listening() {
    let mem = memory();
    let mut r = Rig::active(&mem, "reset", 8);
    let (mut s, _) = r.established(1234, 4096);
    write32(&mut r.t, VIRTIO_MMIO_STATUS, 0);
    assert!(read_some(&mut s).is_empty(), "the host socket is closed");
    // The next driver: fresh queues; the listener still works.
    r.rx = Q::new(&mem, 0x1_0000);
    r.tx = Q::new(&mem, 0x1_8000);
    r.ev = Q::new(&mem, 0x2_0000);
    r.tx_slot = 0;
    r.activate();
    for k in 0..4 {
        r.post_rx(k);
    }
    let (_s, port) = r.established(4321, 4096);
    assert_eq!(
        port,
        LOCAL_PORT_FIRST + 1,
        "host-side ports are not reused at once"
    );
}

#[test]
fn test_vsock_unanswered_request_and_slow_handshake_time_out() {
    let mem = memory();
    let mut r = Rig::with_timeout(&mem, "timeout", Duration::from_millis(50));
    r.activate();
    for k in 0..8 {
        r.post_rx(k);
    }
    // A guest that never answers the REQUEST.
    let (mut silent, req) = r.host_connect(1234);
    // A host process that never finishes its line.
    let mut slow = UnixStream::connect(&r.path).unwrap();
    slow.write_all(b"CONN").unwrap();
    r.host();
    // One the guest answers in time is not touched.
    let (mut live, port) = r.established(1235, 4096);
    std::thread::sleep(Duration::from_millis(120));
    r.host();
    let (h, _) = r.one();
    assert_eq!((h.op, h.src_port, h.dst_port), (OP_RST, req.src_port, 1234));
    assert!(closed(&mut silent));
    assert!(closed(&mut slow));
    assert_eq!(r.metrics.timeouts(), 2);
    live.write_all(b"still here").unwrap();
    r.host();
    let (h, data) = r.one();
    assert_eq!(
        (h.op, h.src_port, data.as_slice()),
        (OP_RW, port, &b"still here"[..])
    );
    // A late RESPONSE finds no connection.
    r.send(guest(1234, req.src_port, OP_RESPONSE), &[]);
    assert_eq!(r.one().0.op, OP_RST);
}
