//! One stream connection between a guest port and a host Unix socket: its
//! state (virtio 1.2 section 5.10.6.5), what it owes the guest, the bytes
//! waiting for the host socket, and its credit ([`Credit`]).
//!
//! The host socket is non-blocking and watched edge-triggered, so the
//! connection remembers what an edge told it (`readable`) until a read
//! says `EAGAIN`; it is read only when the guest has credit and a receive
//! buffer is at hand, straight into that buffer, so host-to-guest bytes
//! are never held by the device. Guest-to-host bytes the host socket does
//! not take at once wait in `to_host`, which the credit the device
//! advertises ([`super::credit::BUF_ALLOC`]) bounds.
//!
//! A connection ends in one of two ways: the guest resets it (it is removed
//! at once), or the device does (the host socket is closed at once and an
//! RST is owed to the guest; the connection is removed once it is sent).

use std::collections::VecDeque;
use std::io;
use std::os::unix::net::UnixStream;

use vm_memory::{ReadVolatile, VolatileMemoryError, VolatileSlice, WriteVolatile};
use vmm_sys_util::epoll::EventSet;

use super::credit::Credit;
use super::packet::{
    Header, RxPacket, HOST_CID, OP_CREDIT_REQUEST, OP_CREDIT_UPDATE, OP_REQUEST, OP_RESPONSE,
    OP_RST, OP_RW, OP_SHUTDOWN, SHUTDOWN_F_BOTH, SHUTDOWN_F_RECEIVE, SHUTDOWN_F_SEND, TYPE_STREAM,
};
use super::VsockMetrics;

/// A connection's addresses: the host side's port and the guest's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The host side's port (the destination of the guest's packets).
    pub local_port: u32,
    /// The guest's port.
    pub peer_port: u32,
}

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Host-initiated: waiting for the guest's RESPONSE to our REQUEST.
    LocalInit,
    /// Both sides may exchange data.
    Established,
}

/// What the muxer does with a connection after a guest packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it.
    Keep,
    /// Remove it now (the guest reset it, or it ended before the guest
    /// heard of it): no reply.
    Remove,
}

/// Control packets owed to the guest (bits).
const OWE_REQUEST: u8 = 1 << 0;
const OWE_RESPONSE: u8 = 1 << 1;
const OWE_SHUTDOWN: u8 = 1 << 2;
const OWE_CREDIT_UPDATE: u8 = 1 << 3;
const OWE_RST: u8 = 1 << 4;

/// One connection.
#[derive(Debug)]
pub struct Connection {
    /// The host socket; `None` once the device has reset the connection.
    stream: Option<UnixStream>,
    state: State,
    credit: Credit,
    /// Bytes for the host socket: first `preamble` bytes of our own (the
    /// `OK <port>` line), then guest payload.
    to_host: VecDeque<u8>,
    preamble: usize,
    owed: u8,
    /// Whether the guest has been sent anything (a host-initiated
    /// connection the guest never heard of ends without an RST).
    announced: bool,
    /// Shutdown flags the guest sent (sticky, section 5.10.6.5).
    peer_shutdown: u32,
    /// Shutdown flags sent (or owed) to the guest for the host side.
    host_shutdown: u32,
    /// The host socket read end of file.
    host_eof: bool,
    /// The host socket's peer closed both ways (EPOLLHUP).
    host_hup: bool,
    /// An edge said the host socket may be read; cleared on EAGAIN.
    readable: bool,
    /// The write side of the host socket was shut down.
    host_write_shut: bool,
    /// In the muxer's queue of connections with packets for the guest.
    pub(super) queued: bool,
    /// The socket's epoll token (set by the muxer).
    pub(super) token: u64,
    /// A host-initiated connection is reset if the guest has not answered
    /// its REQUEST by then (set by the muxer).
    pub(super) deadline: Option<std::time::Instant>,
}

impl Connection {
    fn new(stream: UnixStream, state: State, credit: Credit, owed: u8) -> Self {
        Connection {
            stream: Some(stream),
            state,
            credit,
            to_host: VecDeque::new(),
            preamble: 0,
            owed,
            announced: false,
            peer_shutdown: 0,
            host_shutdown: 0,
            host_eof: false,
            host_hup: false,
            // Bytes may have come before the socket was watched (after a
            // CONNECT line, say): one read finds out.
            readable: true,
            host_write_shut: false,
            queued: false,
            token: 0,
            deadline: None,
        }
    }

    /// A host process asked (`CONNECT <port>`) for a guest port: a REQUEST
    /// is owed. The guest's credit is unknown until its RESPONSE.
    pub fn host_initiated(stream: UnixStream) -> Self {
        Self::new(stream, State::LocalInit, Credit::new(0, 0), OWE_REQUEST)
    }

    /// The guest's REQUEST `h` reached a listening host socket: a RESPONSE
    /// is owed.
    pub fn guest_initiated(stream: UnixStream, h: &Header) -> Self {
        let mut c = Self::new(
            stream,
            State::Established,
            Credit::new(h.buf_alloc, h.fwd_cnt),
            OWE_RESPONSE,
        );
        // The REQUEST was the guest's own first word.
        c.announced = true;
        c
    }

    /// The connection's state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The host socket (for the epoll registration).
    pub fn stream(&self) -> Option<&UnixStream> {
        self.stream.as_ref()
    }

    /// Bytes waiting for the host socket (ours and the guest's).
    pub fn pending_to_host(&self) -> usize {
        self.to_host.len()
    }

    /// Resets the connection from the device's side: the host socket is
    /// closed now, an RST is owed to the guest. Returns whether the
    /// connection can go at once (the guest never heard of it).
    pub fn kill(&mut self, metrics: &VsockMetrics) -> Verdict {
        self.stream = None;
        self.to_host = VecDeque::new();
        self.preamble = 0;
        if !self.announced {
            return Verdict::Remove;
        }
        if self.owed & OWE_RST == 0 {
            VsockMetrics::add(&metrics.resets, 1);
        }
        self.owed = OWE_RST;
        Verdict::Keep
    }

    /// Whether the device has reset it (an RST is owed, the host socket is
    /// gone).
    pub fn is_killed(&self) -> bool {
        self.owed & OWE_RST != 0
    }

    /// A packet from the guest for this connection.
    pub fn on_guest(
        &mut self,
        key: Key,
        h: &Header,
        data: Option<VolatileSlice<'_, ()>>,
        metrics: &VsockMetrics,
    ) -> Verdict {
        if h.op == OP_RST {
            return Verdict::Remove;
        }
        if self.is_killed() {
            // An RST is on its way; the guest's packets cross it.
            return Verdict::Keep;
        }
        // Every packet of a stream carries valid credit (5.10.6.3).
        self.credit.update_peer(h.buf_alloc, h.fwd_cnt);
        match (self.state, h.op) {
            (State::LocalInit, OP_RESPONSE) => {
                self.state = State::Established;
                VsockMetrics::add(&metrics.host_connections, 1);
                // Firecracker's reply to the host: the connection's port on
                // the host side.
                let line = format!("OK {}\n", key.local_port);
                self.preamble = line.len();
                self.to_host.extend(line.as_bytes());
                self.flush(metrics)
            }
            (State::Established, OP_RW) => self.take_payload(data, metrics),
            (State::Established, OP_CREDIT_UPDATE) => Verdict::Keep,
            (State::Established, OP_CREDIT_REQUEST) => {
                self.owed |= OWE_CREDIT_UPDATE;
                Verdict::Keep
            }
            (State::Established, OP_SHUTDOWN) => {
                self.peer_shutdown |= h.flags & SHUTDOWN_F_BOTH;
                self.wind_down(metrics)
            }
            // A REQUEST or RESPONSE on a live connection, data before the
            // RESPONSE, or an unknown op: the guest broke the protocol.
            _ => {
                VsockMetrics::add(&metrics.protocol_errors, 1);
                self.kill(metrics)
            }
        }
    }

    /// Guest payload for the host socket.
    fn take_payload(
        &mut self,
        data: Option<VolatileSlice<'_, ()>>,
        metrics: &VsockMetrics,
    ) -> Verdict {
        let Some(data) = data else {
            return Verdict::Keep;
        };
        if self.peer_shutdown & SHUTDOWN_F_SEND != 0 || self.host_hup {
            // Data after the guest said it would send none, or for a host
            // that is gone.
            VsockMetrics::add(&metrics.protocol_errors, 1);
            return self.kill(metrics);
        }
        // The packet parser bounds a payload to MAX_PKT_DATA.
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        if let Err(e) = self.credit.take_from_guest(len) {
            log::debug!("vsock: {e}; resetting the connection");
            VsockMetrics::add(&metrics.credit_violations, 1);
            return self.kill(metrics);
        }
        let Some(stream) = &self.stream else {
            return Verdict::Keep;
        };
        let mut written = 0;
        let queued_before = !self.to_host.is_empty();
        if !queued_before {
            let mut s: &UnixStream = stream;
            match s.write_volatile(&data) {
                Ok(n) => written = n,
                Err(e) if would_block(&e) => {}
                Err(e) => {
                    log::debug!("vsock: writing to the host socket: {e}");
                    VsockMetrics::add(&metrics.host_errors, 1);
                    return self.kill(metrics);
                }
            }
            self.forwarded(written, metrics);
        }
        if written < data.len() {
            // Within the credit checked above: at most BUF_ALLOC buffered.
            let mut rest = vec![0u8; data.len() - written];
            if let Ok(tail) = data.subslice(written, rest.len()) {
                tail.copy_to(&mut rest[..]);
            }
            self.to_host.extend(rest);
        }
        if queued_before {
            // Behind older bytes: try them all now rather than wait for the
            // next writable edge.
            return self.flush(metrics);
        }
        Verdict::Keep
    }

    /// `n` bytes of guest payload reached the host socket.
    fn forwarded(&mut self, n: usize, metrics: &VsockMetrics) {
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        self.credit.forwarded(n32);
        VsockMetrics::add(&metrics.tx_bytes, n as u64);
        if self.credit.update_due() {
            self.owed |= OWE_CREDIT_UPDATE;
        }
    }

    /// Writes what waits for the host socket, as far as it takes it.
    fn flush(&mut self, metrics: &VsockMetrics) -> Verdict {
        while !self.to_host.is_empty() {
            let Some(stream) = &self.stream else {
                return Verdict::Keep;
            };
            let mut s: &UnixStream = stream;
            let front = self.to_host.as_mut_slices().0;
            let written = match s.write_volatile(&VolatileSlice::from(front)) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if would_block(&e) => break,
                Err(e) => {
                    log::debug!("vsock: writing to the host socket: {e}");
                    VsockMetrics::add(&metrics.host_errors, 1);
                    return self.kill(metrics);
                }
            };
            self.to_host.drain(..written);
            let ours = written.min(self.preamble);
            self.preamble -= ours;
            self.forwarded(written - ours, metrics);
        }
        self.wind_down(metrics)
    }

    /// Applies the shutdowns both sides announced, once what they sent has
    /// been passed on: half-closes the host socket when the guest will send
    /// no more, and resets the connection when nothing can flow either way
    /// (the end of a clean disconnect, 5.10.6.5).
    fn wind_down(&mut self, metrics: &VsockMetrics) -> Verdict {
        if !self.to_host.is_empty() || self.state != State::Established {
            return Verdict::Keep;
        }
        let guest_done = self.peer_shutdown & SHUTDOWN_F_SEND != 0 || self.host_hup;
        let host_done = self.host_eof || self.peer_shutdown & SHUTDOWN_F_RECEIVE != 0;
        if guest_done && host_done {
            return self.kill(metrics);
        }
        if self.peer_shutdown & SHUTDOWN_F_SEND != 0 && !self.host_write_shut {
            self.host_write_shut = true;
            if let Some(s) = &self.stream {
                // The host reads end of file; it may still send.
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
        }
        Verdict::Keep
    }

    /// The host socket reported `events`.
    pub fn on_host(&mut self, events: EventSet, metrics: &VsockMetrics) -> Verdict {
        if self.stream.is_none() {
            return Verdict::Keep;
        }
        if events.intersects(EventSet::HANG_UP | EventSet::ERROR) {
            self.host_hup = true;
            if self.state == State::LocalInit {
                // The host gave up before the guest answered.
                return self.kill(metrics);
            }
        }
        if events
            .intersects(EventSet::IN | EventSet::READ_HANG_UP | EventSet::HANG_UP | EventSet::ERROR)
        {
            // A read tells data, end of file or the error.
            self.readable = true;
        }
        if self.host_eof && self.host_hup && self.host_shutdown & SHUTDOWN_F_RECEIVE == 0 {
            // After a half-close, the host closed for good.
            self.owed |= OWE_SHUTDOWN;
        }
        if events.intersects(EventSet::OUT | EventSet::HANG_UP | EventSet::ERROR)
            && !self.to_host.is_empty()
        {
            return self.flush(metrics);
        }
        self.wind_down(metrics)
    }

    /// Whether the host socket may have bytes the guest has room for.
    fn can_read(&self) -> bool {
        self.state == State::Established
            && self.readable
            && !self.host_eof
            && self.peer_shutdown & SHUTDOWN_F_RECEIVE == 0
            && self.stream.is_some()
            && self.credit.guest_room() > 0
    }

    /// Whether the connection has a packet for the guest.
    pub fn wants_rx(&self) -> bool {
        self.owed != 0 || self.can_read()
    }

    /// Fills `rx` with the connection's next packet for the guest (a
    /// control packet, or payload read from the host socket straight into
    /// the buffer); `None` if it had nothing after all (the read found no
    /// data).
    pub fn fill_rx(
        &mut self,
        key: Key,
        guest_cid: u64,
        rx: &RxPacket<'_>,
        metrics: &VsockMetrics,
    ) -> Option<Header> {
        let mut h = Header {
            src_cid: HOST_CID,
            dst_cid: guest_cid,
            src_port: key.local_port,
            dst_port: key.peer_port,
            type_: TYPE_STREAM,
            ..Header::default()
        };
        if self.owed & OWE_RST != 0 {
            h.op = OP_RST;
            return Some(h);
        }
        if self.owed & OWE_REQUEST != 0 {
            h.op = OP_REQUEST;
        } else if self.owed & OWE_RESPONSE != 0 {
            h.op = OP_RESPONSE;
        } else if self.can_read() {
            self.read_into(&mut h, rx, metrics);
            if self.is_killed() {
                h.op = OP_RST;
                return Some(h);
            }
        }
        if h.op == 0 && self.owed & OWE_SHUTDOWN != 0 {
            h.op = OP_SHUTDOWN;
            h.flags = self.host_shutdown_flags();
            self.host_shutdown = h.flags;
        } else if h.op == 0 && self.owed & OWE_CREDIT_UPDATE != 0 {
            h.op = OP_CREDIT_UPDATE;
        }
        if h.op == 0 {
            return None;
        }
        self.owed &= !match h.op {
            OP_REQUEST => OWE_REQUEST,
            OP_RESPONSE => OWE_RESPONSE,
            OP_SHUTDOWN => OWE_SHUTDOWN,
            _ => 0,
        };
        // Every packet carries the device's credit.
        (h.buf_alloc, h.fwd_cnt) = self.credit.advertise();
        self.owed &= !OWE_CREDIT_UPDATE;
        self.announced = true;
        Some(h)
    }

    /// Reads host bytes into `rx` within the guest's credit; sets `h` to an
    /// RW packet if any came. End of file owes the guest a SHUTDOWN.
    fn read_into(&mut self, h: &mut Header, rx: &RxPacket<'_>, metrics: &VsockMetrics) {
        let room = rx.room().min(self.credit.guest_room() as usize);
        let (Some(stream), Some(mut buf)) = (&self.stream, rx.data(room)) else {
            return;
        };
        if room == 0 {
            return;
        }
        let mut s: &UnixStream = stream;
        match s.read_volatile(&mut buf) {
            Ok(0) => {
                self.host_eof = true;
                self.owed |= OWE_SHUTDOWN;
            }
            Ok(n) => {
                // n <= room <= MAX_PKT_DATA.
                let n = u32::try_from(n).unwrap_or(0);
                h.op = OP_RW;
                h.len = n;
                self.credit.sent_to_guest(n);
                VsockMetrics::add(&metrics.rx_bytes, u64::from(n));
            }
            Err(e) if would_block(&e) => self.readable = false,
            Err(e) => {
                log::debug!("vsock: reading the host socket: {e}");
                VsockMetrics::add(&metrics.host_errors, 1);
                self.kill(metrics);
            }
        }
    }

    /// The host side's shutdown flags: no more data from it after end of
    /// file; none taken either once it closed both ways.
    fn host_shutdown_flags(&self) -> u32 {
        let mut f = 0;
        if self.host_eof {
            f |= SHUTDOWN_F_SEND;
        }
        if self.host_hup {
            f |= SHUTDOWN_F_RECEIVE;
        }
        f
    }

    /// After a packet went to the guest: whether a SHUTDOWN it carried (or
    /// the end of data) closes the connection.
    pub fn after_rx(&mut self, metrics: &VsockMetrics) -> Verdict {
        self.wind_down(metrics)
    }
}

/// Whether a volatile read or write failed only because the socket had
/// nothing (or no room) for now.
fn would_block(e: &VolatileMemoryError) -> bool {
    matches!(e, VolatileMemoryError::IOError(io) if io.kind() == io::ErrorKind::WouldBlock)
}
