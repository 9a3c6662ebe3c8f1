//! When a turn tells the driver about the buffers it returned.
//!
//! Every interrupt is expensive for the guest: it wakes from HLT, reads
//! InterruptStatus and writes InterruptACK (two exits), and runs its
//! handler. A turn that stops because its budget is spent, with more
//! requests available, re-arms itself and serves them on the device
//! thread's next turn, typically a few microseconds later: interrupting at
//! its end would make the guest take one interrupt for the first part of a
//! batch and another for the rest. So such a turn defers the interrupt to
//! the turn that drains the queue, but at most [`SIGNAL_TURNS_MAX`] turns
//! in a row, so that a driver that keeps the queue full still hears of its
//! completions at least every `SIGNAL_TURNS_MAX * TURN_BYTE_BUDGET` bytes.
//! A turn that drains the queue always signals what is unsignalled.
//!
//! (Whether the signal then becomes an interrupt is the driver's choice:
//! `used_event` with VIRTIO_RING_F_EVENT_IDX; virtio-queue counts every
//! entry added since the last signal, so deferred ones are included.)

/// The most consecutive turns whose used buffers go unsignalled: the
/// turn that reaches this count signals even if more requests wait.
pub const SIGNAL_TURNS_MAX: u32 = 4;

/// The deferral state of one queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Coalescer {
    /// Turns since the last signal that left used buffers unsignalled,
    /// this one included once [`Coalescer::end_turn`] counts it.
    unsignalled_turns: u32,
}

impl Coalescer {
    /// A turn ended; `served` whether it returned any buffer, `more`
    /// whether requests are left for a re-armed turn. Returns whether to
    /// signal the used ring now.
    pub(crate) fn end_turn(&mut self, served: bool, more: bool) -> bool {
        if !served && self.unsignalled_turns == 0 {
            return false;
        }
        self.unsignalled_turns = self.unsignalled_turns.saturating_add(1);
        if more && self.unsignalled_turns < SIGNAL_TURNS_MAX {
            return false;
        }
        self.unsignalled_turns = 0;
        true
    }

    /// Device reset: nothing returned, nothing to signal.
    pub(crate) fn reset(&mut self) {
        self.unsignalled_turns = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_coalescer_draining_turn_signals() {
        let mut c = Coalescer::default();
        assert!(c.end_turn(true, false));
        assert!(
            !c.end_turn(false, false),
            "nothing returned, nothing to say"
        );
    }

    #[test]
    fn test_coalescer_rearming_turn_defers_to_the_draining_one() {
        let mut c = Coalescer::default();
        assert!(!c.end_turn(true, true));
        // The re-armed turn finds the rest already served (by a notify's
        // turn in between): it still owes the signal.
        assert!(c.end_turn(false, false));
        assert_eq!(c, Coalescer::default());
    }

    #[test]
    fn test_coalescer_full_queue_signals_every_max_turns() {
        let mut c = Coalescer::default();
        for round in 0..3 {
            for turn in 1..SIGNAL_TURNS_MAX {
                assert!(!c.end_turn(true, true), "round {round} turn {turn}");
            }
            assert!(c.end_turn(true, true), "round {round}: the bound");
        }
    }

    #[test]
    fn test_coalescer_reset_forgets_deferred_turns() {
        let mut c = Coalescer::default();
        assert!(!c.end_turn(true, true));
        c.reset();
        assert!(!c.end_turn(false, false));
    }
}
