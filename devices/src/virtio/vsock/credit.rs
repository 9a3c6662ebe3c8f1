//! Credit-based flow control of one stream (virtio 1.2 section 5.10.6.3),
//! both ways, as plain counters.
//!
//! Each side publishes `buf_alloc` (its receive buffer for the stream) and
//! `fwd_cnt` (a free-running count of bytes it has consumed) in every
//! packet. A sender may have at most `peer_buf_alloc - (tx_cnt -
//! peer_fwd_cnt)` bytes in flight.
//!
//! - Guest to host: the device's receive buffer is the connection's
//!   bounded buffer for bytes the host socket did not take yet
//!   ([`BUF_ALLOC`]). `fwd_cnt` counts bytes written to the host socket, so
//!   what is buffered (`rx_cnt - fwd_cnt`) never exceeds what was
//!   advertised unless the guest breaks the rule, which
//!   [`Credit::take_from_guest`] catches.
//! - Host to guest: the device reads from the host socket only as many
//!   bytes as the guest has room for ([`Credit::guest_room`]), so nothing
//!   is ever buffered on that side.
//!
//! All counters wrap (u32), as the spec's are.

/// The receive buffer the device advertises per connection: the most guest
/// bytes it holds for a host socket that is not reading.
pub const BUF_ALLOC: u32 = 64 << 10;

/// The device tells the guest about freed space as soon as the guest's view
/// of it drops below this (the guest may be waiting for credit); above it
/// the `fwd_cnt` of ordinary packets is enough.
pub const CREDIT_UPDATE_THRESHOLD: u32 = BUF_ALLOC / 2;

/// Both directions' counters of one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credit {
    /// Guest payload bytes received (free-running).
    rx_cnt: u32,
    /// Guest payload bytes written to the host socket (free-running).
    fwd_cnt: u32,
    /// The `fwd_cnt` last sent to the guest.
    fwd_cnt_sent: u32,
    /// Payload bytes sent to the guest (free-running).
    tx_cnt: u32,
    /// The guest's receive buffer for the stream.
    peer_buf_alloc: u32,
    /// The guest's count of bytes it consumed.
    peer_fwd_cnt: u32,
}

/// The guest sent more than its credit allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the guest sent {len} bytes with only {room} of credit")]
pub struct CreditViolation {
    /// The packet's payload.
    pub len: u32,
    /// The room it had.
    pub room: u32,
}

impl Credit {
    /// Counters of a new connection whose guest side advertised
    /// `buf_alloc` and `fwd_cnt`.
    pub fn new(buf_alloc: u32, fwd_cnt: u32) -> Self {
        Credit {
            peer_buf_alloc: buf_alloc,
            peer_fwd_cnt: fwd_cnt,
            ..Credit::default()
        }
    }

    /// Records the credit fields of a packet from the guest.
    pub fn update_peer(&mut self, buf_alloc: u32, fwd_cnt: u32) {
        self.peer_buf_alloc = buf_alloc;
        self.peer_fwd_cnt = fwd_cnt;
    }

    /// How many bytes the guest has room for. A guest that shrank its
    /// buffer below what is in flight, or reports consuming more than it was
    /// sent, has none (saturating: the guest can only stall itself).
    pub fn guest_room(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// `n` bytes were sent to the guest (at most [`Self::guest_room`]).
    pub fn sent_to_guest(&mut self, n: u32) {
        self.tx_cnt = self.tx_cnt.wrapping_add(n);
    }

    /// Bytes from the guest not yet written to the host socket.
    pub fn buffered(&self) -> u32 {
        self.rx_cnt.wrapping_sub(self.fwd_cnt)
    }

    /// Accepts `len` payload bytes from the guest, or refuses them if they
    /// exceed the room the device advertised.
    pub fn take_from_guest(&mut self, len: u32) -> Result<(), CreditViolation> {
        let room = BUF_ALLOC.saturating_sub(self.buffered());
        if len > room {
            return Err(CreditViolation { len, room });
        }
        self.rx_cnt = self.rx_cnt.wrapping_add(len);
        Ok(())
    }

    /// `n` guest bytes reached the host socket.
    pub fn forwarded(&mut self, n: u32) {
        self.fwd_cnt = self.fwd_cnt.wrapping_add(n);
    }

    /// The fields the device puts in a packet to the guest
    /// (`buf_alloc`, `fwd_cnt`), noting the `fwd_cnt` as sent.
    pub fn advertise(&mut self) -> (u32, u32) {
        self.fwd_cnt_sent = self.fwd_cnt;
        (BUF_ALLOC, self.fwd_cnt)
    }

    /// Whether the guest should be sent a credit update now: space was
    /// freed since the last `fwd_cnt` it saw, and in its view little is
    /// left.
    pub fn update_due(&self) -> bool {
        let guest_view_used = self.rx_cnt.wrapping_sub(self.fwd_cnt_sent);
        self.fwd_cnt != self.fwd_cnt_sent
            && BUF_ALLOC.saturating_sub(guest_view_used) < CREDIT_UPDATE_THRESHOLD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_credit_guest_room_follows_the_peer_counters() {
        let mut c = Credit::new(4096, 0);
        assert_eq!(c.guest_room(), 4096);
        c.sent_to_guest(3000);
        assert_eq!(c.guest_room(), 1096);
        c.update_peer(4096, 1000);
        assert_eq!(c.guest_room(), 2096);
        // The guest shrank its buffer below what is in flight: no room.
        c.update_peer(1000, 1000);
        assert_eq!(c.guest_room(), 0);
        // A guest claiming to have consumed more than it got: no room.
        c.update_peer(4096, 5000);
        assert_eq!(c.guest_room(), 0);
    }

    #[test]
    fn test_credit_counters_wrap() {
        let mut c = Credit::new(100, u32::MAX - 9);
        c.tx_cnt = u32::MAX - 9;
        c.sent_to_guest(50);
        assert_eq!(c.tx_cnt, 40);
        assert_eq!(c.guest_room(), 50);
        c.update_peer(100, 40);
        assert_eq!(c.guest_room(), 100);
        c.rx_cnt = u32::MAX;
        c.fwd_cnt = u32::MAX;
        c.take_from_guest(10).unwrap();
        assert_eq!(c.buffered(), 10);
        c.forwarded(10);
        assert_eq!((c.buffered(), c.fwd_cnt), (0, 9));
    }

    #[test]
    fn test_credit_guest_may_not_exceed_the_advertised_buffer() {
        let mut c = Credit::new(0, 0);
        c.take_from_guest(BUF_ALLOC - 10).unwrap();
        assert_eq!(
            c.take_from_guest(11),
            Err(CreditViolation { len: 11, room: 10 })
        );
        assert_eq!(
            c.buffered(),
            BUF_ALLOC - 10,
            "a refused packet is not counted"
        );
        c.forwarded(100);
        c.take_from_guest(110).unwrap();
        assert_eq!(c.buffered(), BUF_ALLOC);
    }

    #[test]
    fn test_credit_update_due_only_when_the_guest_runs_low() {
        let mut c = Credit::new(0, 0);
        assert_eq!(c.advertise(), (BUF_ALLOC, 0));
        c.take_from_guest(1000).unwrap();
        c.forwarded(1000);
        assert!(!c.update_due(), "the guest still sees plenty of room");
        // A packet to the guest carried fwd_cnt 1000.
        assert_eq!(c.advertise(), (BUF_ALLOC, 1000));
        c.take_from_guest(BUF_ALLOC).unwrap();
        assert!(!c.update_due(), "nothing freed since");
        c.forwarded(10);
        assert!(
            c.update_due(),
            "the guest sees 1000 bytes left, 10 more freed"
        );
        assert_eq!(c.advertise(), (BUF_ALLOC, 1010));
        assert!(!c.update_due(), "sent");
    }
}
