//! The host side of the vsock device: the listening Unix socket, the
//! connections to host sockets, and the order in which their packets reach
//! the guest.
//!
//! Every host descriptor (the listener, each connection's socket) is
//! registered edge-triggered in the muxer's own epoll instance, whose one
//! descriptor is the device's only host fd. Connections come and go while
//! the guest runs; the VMM's device thread registers a device's host fds
//! once, when it starts. Owning an epoll instance lets the device add and
//! remove sockets at run time with `epoll_ctl(2)` on its own thread,
//! without changing the `VirtioDevice` trait or the device thread, and the
//! outer watch stays edge-triggered: a nested epoll descriptor signals each
//! new event on any socket inside it.
//!
//! Events the device thread drops while the device is not active (before
//! DRIVER_OK, after a reset) stay queued in this epoll instance, so every
//! queue notification sweeps it too ([`Muxer::host_events`]).
//!
//! A timerfd in the same instance bounds the waits Firecracker bounds: a
//! host process that has not sent its whole `CONNECT` line, and a REQUEST
//! the guest has not answered, after [`CONNECT_TIMEOUT`] (the host
//! process's socket is closed; the guest gets an RST for the REQUEST). The
//! timer is armed for the earliest deadline and re-armed when it fires
//! (`timerfd_settime` also clears its count, so it is never read).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vm_memory::{ReadVolatile, VolatileMemoryError, VolatileSlice};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::timerfd::TimerFd;

use super::connection::{Connection, Key, State, Verdict};
use super::packet::{Header, RxPacket, HOST_CID, OP_REQUEST, OP_RST, TYPE_STREAM};
use super::unix;
use super::{VsockError, VsockMetrics, MAX_CONNECTIONS};

/// The listener's epoll token; connections and handshakes get 1, 2, ...
const LISTENER: u64 = 0;
/// The timer's epoll token.
const TIMER: u64 = u64::MAX;
/// How long a host process may take to send its `CONNECT` line, and the
/// guest to answer the REQUEST that follows (Firecracker's 2 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Events taken per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 32;
/// The longest `CONNECT <port>` line read from a host process, newline
/// included (Firecracker reads at most 32 bytes too).
pub const CONNECT_LINE_MAX: usize = 32;
/// Host-side ports of host-initiated connections start here (as in
/// Firecracker), well above the ports host services listen on.
pub const LOCAL_PORT_FIRST: u32 = 1 << 30;
/// RSTs for packets with no connection that wait for a receive buffer.
/// When they are this many the device stops taking transmit packets (each
/// may need one) until the guest posts receive buffers (5.10.6.1).
pub const MAX_STRAY_RSTS: usize = 64;

/// A host process that connected to the listening socket and has not sent
/// its whole `CONNECT <port>` line yet.
#[derive(Debug)]
struct Handshake {
    stream: UnixStream,
    line: Vec<u8>,
    deadline: Instant,
}

/// The host side of one vsock device.
#[derive(Debug)]
pub struct Muxer {
    path: PathBuf,
    guest_cid: u64,
    listener: unix::Listener,
    epoll: Epoll,
    conns: BTreeMap<Key, Connection>,
    /// Epoll token of each connection's socket.
    streams: HashMap<u64, Key>,
    handshakes: HashMap<u64, Handshake>,
    next_token: u64,
    next_local_port: u32,
    /// Connections with packets for the guest, served in turn.
    turns: VecDeque<Key>,
    /// RSTs answering packets that had no connection.
    stray: VecDeque<Header>,
    timer: TimerFd,
    /// The deadline the timer is armed for.
    timer_at: Option<Instant>,
    connect_timeout: Duration,
    metrics: Arc<VsockMetrics>,
}

impl Muxer {
    /// Listens at `path` for host processes (see [`unix::listen`]).
    pub fn new(
        path: &Path,
        guest_cid: u64,
        metrics: Arc<VsockMetrics>,
    ) -> Result<Self, VsockError> {
        let listener = unix::listen(path)?;
        let epoll = Epoll::new().map_err(VsockError::Epoll)?;
        let timer = TimerFd::new().map_err(|e| VsockError::Epoll(e.into()))?;
        let m = Muxer {
            path: path.to_path_buf(),
            guest_cid,
            listener,
            epoll,
            conns: BTreeMap::new(),
            streams: HashMap::new(),
            handshakes: HashMap::new(),
            next_token: LISTENER + 1,
            next_local_port: LOCAL_PORT_FIRST,
            turns: VecDeque::new(),
            stray: VecDeque::new(),
            timer,
            timer_at: None,
            connect_timeout: CONNECT_TIMEOUT,
            metrics,
        };
        m.watch(m.listener.socket().as_raw_fd(), LISTENER)
            .map_err(VsockError::Epoll)?;
        m.watch(m.timer.as_raw_fd(), TIMER)
            .map_err(VsockError::Epoll)?;
        Ok(m)
    }

    /// Sets how long a `CONNECT` line and the guest's answer may take
    /// ([`CONNECT_TIMEOUT`] by default).
    pub fn set_connect_timeout(&mut self, timeout: Duration) {
        self.connect_timeout = timeout;
    }

    /// The earliest deadline of a handshake or an unanswered REQUEST.
    fn next_deadline(&self) -> Option<Instant> {
        let conns = self
            .conns
            .values()
            .filter(|c| c.state() == State::LocalInit && !c.is_killed())
            .filter_map(|c| c.deadline);
        let lines = self.handshakes.values().map(|h| h.deadline);
        conns.chain(lines).min()
    }

    /// Arms the timer for the earliest deadline, unless it already fires
    /// sooner; disarms it when nothing waits.
    fn arm_timer(&mut self) {
        let next = self.next_deadline();
        let result = match (next, self.timer_at) {
            (None, None) => return,
            (Some(n), Some(at)) if at <= n => return,
            (None, Some(_)) => self.timer.clear(),
            (Some(n), _) => {
                // A zero duration would disarm it.
                let after = n
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                self.timer.reset(after, None)
            }
        };
        match result {
            Ok(()) => self.timer_at = next,
            Err(e) => {
                log::warn!("vsock: arming the connect timer: {e}");
                VsockMetrics::add(&self.metrics.host_errors, 1);
            }
        }
    }

    /// The timer fired: ends the handshakes and REQUESTs past their
    /// deadline.
    fn on_timer(&mut self) {
        let now = Instant::now();
        let before = self.handshakes.len();
        self.handshakes.retain(|_, h| h.deadline > now);
        let mut expired = (before - self.handshakes.len()) as u64;
        let late: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.state() == State::LocalInit
                    && !c.is_killed()
                    && c.deadline.is_some_and(|d| d <= now)
            })
            .map(|(k, _)| *k)
            .collect();
        for key in late {
            if let Some(conn) = self.conns.get_mut(&key) {
                let v = conn.kill(&self.metrics);
                self.settle(key, v);
                expired += 1;
            }
        }
        VsockMetrics::add(&self.metrics.timeouts, expired);
        self.timer_at = None;
        self.arm_timer();
    }

    /// The epoll descriptor (the device's host fd).
    pub fn epoll_fd(&self) -> i32 {
        self.epoll.as_raw_fd()
    }

    /// Connections (established, opening or waiting to send their RST).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Host processes still sending their `CONNECT` line.
    pub fn handshakes(&self) -> usize {
        self.handshakes.len()
    }

    fn watch(&self, fd: i32, token: u64) -> std::io::Result<()> {
        let set = EventSet::IN | EventSet::OUT | EventSet::READ_HANG_UP | EventSet::EDGE_TRIGGERED;
        self.epoll
            .ctl(ControlOperation::Add, fd, EpollEvent::new(set, token))
    }

    fn token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    fn full(&self) -> bool {
        self.conns.len() + self.handshakes.len() >= MAX_CONNECTIONS
    }

    /// The Unix socket the device listens on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Handles every event queued in the epoll instance.
    pub fn host_events(&mut self) {
        let mut events = [EpollEvent::default(); EVENTS_PER_WAIT];
        loop {
            let n = match self.epoll.wait(0, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("vsock: epoll_wait: {e}");
                    VsockMetrics::add(&self.metrics.host_errors, 1);
                    return;
                }
            };
            if n == 0 {
                return;
            }
            // Handling may queue new events (a socket registered while
            // readable is reported at once): wait again until none is left.
            for ev in events.iter().take(n) {
                self.host_event(ev.data(), ev.event_set());
            }
        }
    }

    fn host_event(&mut self, token: u64, set: EventSet) {
        if token == LISTENER {
            self.accept_all();
        } else if token == TIMER {
            self.on_timer();
        } else if self.handshakes.contains_key(&token) {
            self.advance_handshake(token);
        } else if let Some(&key) = self.streams.get(&token) {
            let Some(conn) = self.conns.get_mut(&key) else {
                self.streams.remove(&token);
                return;
            };
            let v = conn.on_host(set, &self.metrics);
            self.settle(key, v);
        }
    }

    fn accept_all(&mut self) {
        loop {
            let stream = match unix::accept(self.listener.socket()) {
                Ok(Some(s)) => s,
                Ok(None) => return,
                Err(e) => {
                    // Out of descriptors, say: the rest wait in the backlog
                    // for the next connection's edge.
                    log::warn!("vsock: accepting a host connection: {e}");
                    VsockMetrics::add(&self.metrics.host_errors, 1);
                    return;
                }
            };
            if self.full() {
                // Closed at once: the host process reads end of file.
                VsockMetrics::add(&self.metrics.refused, 1);
                continue;
            }
            let token = self.token();
            if let Err(e) = self.watch(stream.as_raw_fd(), token) {
                log::warn!("vsock: watching a host connection: {e}");
                VsockMetrics::add(&self.metrics.host_errors, 1);
                continue;
            }
            // A line already sent is reported by the registration itself
            // (epoll reports the current state on ADD).
            self.handshakes.insert(
                token,
                Handshake {
                    stream,
                    line: Vec::new(),
                    deadline: Instant::now() + self.connect_timeout,
                },
            );
            self.arm_timer();
        }
    }

    /// Reads a handshake's line byte by byte (what follows the newline is
    /// the guest's data); at its end opens the connection.
    fn advance_handshake(&mut self, token: u64) {
        let Some(hs) = self.handshakes.get_mut(&token) else {
            return;
        };
        loop {
            let mut byte = [0u8; 1];
            let mut s: &UnixStream = &hs.stream;
            match s.read_volatile(&mut VolatileSlice::from(&mut byte[..])) {
                Ok(0) => {
                    self.handshakes.remove(&token);
                    return;
                }
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => {
                    hs.line.push(byte[0]);
                    if hs.line.len() >= CONNECT_LINE_MAX {
                        VsockMetrics::add(&self.metrics.bad_handshakes, 1);
                        self.handshakes.remove(&token);
                        return;
                    }
                }
                Err(VolatileMemoryError::IOError(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock =>
                {
                    return
                }
                Err(_) => {
                    self.handshakes.remove(&token);
                    return;
                }
            }
        }
        let Some(hs) = self.handshakes.remove(&token) else {
            return;
        };
        match parse_connect(&hs.line) {
            Some(port) => self.host_connect(token, hs.stream, port),
            None => {
                log::debug!(
                    "vsock: a host process sent {:?}, not CONNECT <port>",
                    String::from_utf8_lossy(&hs.line)
                );
                VsockMetrics::add(&self.metrics.bad_handshakes, 1);
            }
        }
    }

    /// Opens a host-initiated connection to guest port `port`.
    fn host_connect(&mut self, token: u64, stream: UnixStream, port: u32) {
        let Some(local_port) = self.allocate_local_port() else {
            VsockMetrics::add(&self.metrics.refused, 1);
            return;
        };
        let key = Key {
            local_port,
            peer_port: port,
        };
        let mut conn = Connection::host_initiated(stream);
        conn.token = token;
        conn.deadline = Some(Instant::now() + self.connect_timeout);
        self.conns.insert(key, conn);
        self.streams.insert(token, key);
        self.schedule(key);
        self.arm_timer();
    }

    /// A host-side port no connection uses. With at most
    /// [`MAX_CONNECTIONS`] connections, one of that many + 1 candidates is
    /// free.
    fn allocate_local_port(&mut self) -> Option<u32> {
        for _ in 0..=MAX_CONNECTIONS {
            let p = self.next_local_port;
            self.next_local_port = p.checked_add(1).unwrap_or(LOCAL_PORT_FIRST);
            if !self.conns.keys().any(|k| k.local_port == p) {
                return Some(p);
            }
        }
        None
    }

    /// Whether a transmit packet can be taken now (its answer might need a
    /// place in the stray-RST queue).
    pub fn can_take_tx(&self) -> bool {
        self.stray.len() < MAX_STRAY_RSTS
    }

    fn reply_rst(&mut self, h: &Header) {
        if h.op == OP_RST {
            // Never answer an RST: two devices would bounce them forever.
            return;
        }
        if self.stray.len() < MAX_STRAY_RSTS {
            self.stray.push_back(h.rst_reply());
        } else {
            VsockMetrics::add(&self.metrics.dropped_packets, 1);
        }
    }

    /// A packet from the guest (`data` is its payload in guest memory).
    pub fn tx_packet(&mut self, h: &Header, data: Option<VolatileSlice<'_, ()>>) {
        VsockMetrics::add(&self.metrics.tx_packets, 1);
        if h.src_cid != self.guest_cid || h.dst_cid != HOST_CID {
            // Not from this guest, or not for the host: nobody to answer
            // for (Firecracker drops these too).
            log::debug!(
                "vsock: dropping a packet from CID {} to CID {}",
                h.src_cid,
                h.dst_cid
            );
            VsockMetrics::add(&self.metrics.dropped_packets, 1);
            return;
        }
        if h.type_ != TYPE_STREAM {
            // An unknown type gets an RST (5.10.6.4).
            self.reply_rst(h);
            return;
        }
        let key = Key {
            local_port: h.dst_port,
            peer_port: h.src_port,
        };
        if let Some(conn) = self.conns.get_mut(&key) {
            let v = conn.on_guest(key, h, data, &self.metrics);
            self.settle(key, v);
            return;
        }
        match h.op {
            OP_REQUEST => self.guest_connect(h),
            // A packet for no connection (a stale one's, or junk): RST.
            _ => self.reply_rst(h),
        }
    }

    /// The guest's REQUEST to host port `h.dst_port`: connects to
    /// `<path>_<port>`; refused (nobody listening, too many connections)
    /// is an RST.
    fn guest_connect(&mut self, h: &Header) {
        if self.full() {
            VsockMetrics::add(&self.metrics.refused, 1);
            self.reply_rst(h);
            return;
        }
        let path = unix::port_path(&self.path, h.dst_port);
        let stream = match unix::connect(&path) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("vsock: guest connection to {}: {e}", path.display());
                VsockMetrics::add(&self.metrics.refused, 1);
                self.reply_rst(h);
                return;
            }
        };
        let token = self.token();
        if let Err(e) = self.watch(stream.as_raw_fd(), token) {
            log::warn!("vsock: watching {}: {e}", path.display());
            VsockMetrics::add(&self.metrics.host_errors, 1);
            self.reply_rst(h);
            return;
        }
        let key = Key {
            local_port: h.dst_port,
            peer_port: h.src_port,
        };
        let mut conn = Connection::guest_initiated(stream, h);
        conn.token = token;
        VsockMetrics::add(&self.metrics.guest_connections, 1);
        self.conns.insert(key, conn);
        self.streams.insert(token, key);
        self.schedule(key);
    }

    /// Applies a connection's verdict and queues it if it has packets.
    fn settle(&mut self, key: Key, v: Verdict) {
        if v == Verdict::Remove {
            self.remove(key);
            return;
        }
        if let Some(conn) = self.conns.get(&key) {
            if conn.is_killed() {
                // Its socket is closed (and so out of the epoll instance).
                self.streams.remove(&conn.token);
            }
        }
        self.schedule(key);
    }

    fn remove(&mut self, key: Key) {
        if let Some(conn) = self.conns.remove(&key) {
            self.streams.remove(&conn.token);
        }
    }

    fn schedule(&mut self, key: Key) {
        if let Some(conn) = self.conns.get_mut(&key) {
            if !conn.queued && conn.wants_rx() {
                conn.queued = true;
                self.turns.push_back(key);
            }
        }
    }

    /// Whether a packet may be waiting for a receive buffer.
    pub fn has_rx(&self) -> bool {
        !self.stray.is_empty() || !self.turns.is_empty()
    }

    /// Fills `rx` with the next packet for the guest: stray RSTs first,
    /// then each connection in turn, one packet per turn. `None`: nothing
    /// after all (reads found no data); the buffer stays the guest's.
    pub fn next_rx(&mut self, rx: &RxPacket<'_>) -> Option<Header> {
        if let Some(h) = self.stray.pop_front() {
            VsockMetrics::add(&self.metrics.stray_resets, 1);
            VsockMetrics::add(&self.metrics.rx_packets, 1);
            return Some(h);
        }
        while let Some(key) = self.turns.pop_front() {
            let Some(conn) = self.conns.get_mut(&key) else {
                continue;
            };
            conn.queued = false;
            let Some(h) = conn.fill_rx(key, self.guest_cid, rx, &self.metrics) else {
                continue;
            };
            VsockMetrics::add(&self.metrics.rx_packets, 1);
            if h.op == OP_RST {
                // The connection's last word.
                self.remove(key);
            } else {
                let v = conn.after_rx(&self.metrics);
                self.settle(key, v);
            }
            return Some(h);
        }
        None
    }

    /// The driver reset the device: every connection ends (their host
    /// sockets are closed, which also takes them out of the epoll
    /// instance); the listener stays. Only close(2) and memory calls: this
    /// runs on a vCPU thread (a timer still armed fires for nothing and is
    /// disarmed then, on the device thread).
    pub fn reset(&mut self) {
        self.conns.clear();
        self.streams.clear();
        self.handshakes.clear();
        self.turns.clear();
        self.stray.clear();
    }
}

/// The port of a `CONNECT <port>` line (without its newline).
pub fn parse_connect(line: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(line).ok()?;
    let mut words = s.split_ascii_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("CONNECT"), Some(port), None) => port.parse().ok(),
        _ => None,
    }
}
