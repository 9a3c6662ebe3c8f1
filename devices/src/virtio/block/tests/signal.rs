//! When the device interrupts: every turn that returned buffers signals,
//! also one that re-arms (so the guest reaps while the rest are served), a
//! queue kept full interrupts every turn, and with VIRTIO_RING_F_EVENT_IDX
//! the driver's `used_event` decides and the device publishes
//! `avail_event`.

use super::*;
use crate::virtio::VIRTIO_RING_F_EVENT_IDX;

/// Where the 64 KiB read buffers go.
const BUFS: u64 = 0x10_0000;
/// 64 KiB: four reads per turn's budget.
const READ: u32 = 64 << 10;

/// The features the bench guest takes (no EVENT_IDX).
fn plain() -> u64 {
    v1(f(VIRTIO_BLK_F_SEG_MAX) | f(VIRTIO_BLK_F_BLK_SIZE) | f(VIRTIO_BLK_F_FLUSH))
}

fn big_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap()
}

/// Makes `n` 64 KiB reads of sector 0 available (without notifying).
fn post_reads(r: &mut Rig<'_>, n: u64) {
    for i in 0..n {
        let at = u64::from(r.ring.used_idx()) + i;
        r.ring.add_chain(&[
            (HDR, 16, 0),
            (BUFS + (at % 16) * u64::from(READ), READ, W),
            (STATUS + at % 64, 1, W),
        ]);
    }
}

/// A 64-entry queue on `img` with `features` taken, its request header
/// set to read sector 0.
fn reading<'a>(mem: &'a GuestMemoryMmap, img: &TempImage, features: u64) -> Rig<'a> {
    let r = Rig::new(mem, &BlockConfig::new(img.path()), Some(features), 64);
    r.header(VIRTIO_BLK_T_IN, 0);
    r
}

fn per_turn() -> u16 {
    (TURN_BYTE_BUDGET / u64::from(READ)) as u16
}

#[test]
fn test_block_rearming_turn_signals_what_it_served() {
    let (mem, img) = (big_memory(), TempImage::patterned(1024));
    let mut r = reading(&mem, &img, plain());
    post_reads(&mut r, 2 * u64::from(per_turn()));
    r.t.process_queue(0);
    assert_eq!(r.ring.used_idx(), per_turn(), "one budget's worth served");
    assert_eq!(r.counters.rearms(), 1);
    assert_eq!(
        r.interrupts(),
        1,
        "the guest hears of the first part before the rest is served"
    );
    r.host_event();
    assert_eq!(r.ring.used_idx(), 2 * per_turn());
    assert_eq!(r.interrupts(), 1, "and of the rest");
    assert_eq!(r.counters.interrupts(), 2);
    // Nothing new: a spurious wake-up says nothing.
    r.host_event();
    assert_eq!(r.interrupts(), 0);
}

#[test]
fn test_block_queue_kept_full_interrupts_every_turn() {
    let (mem, img) = (big_memory(), TempImage::patterned(1024));
    let mut r = reading(&mem, &img, plain());
    // Two turns' worth in flight; after each turn the driver tops it up,
    // so every turn ends with more available and re-arms.
    post_reads(&mut r, 2 * u64::from(per_turn()));
    r.t.process_queue(0);
    let turns = 12u16;
    for turn in 1..=turns {
        if turn > 1 {
            r.host_event();
        }
        post_reads(&mut r, u64::from(per_turn()));
        assert_eq!(r.interrupts(), 1, "turn {turn}");
    }
    assert_eq!(r.counters.rearms(), u64::from(turns), "every turn re-armed");
    assert_eq!(r.ring.used_idx(), turns * per_turn());
}

#[test]
fn test_block_event_idx_follows_used_event_and_publishes_avail_event() {
    let mem = big_memory();
    let img = TempImage::patterned(1024);
    let features = plain() | VIRTIO_RING_F_EVENT_IDX;
    assert_ne!(
        BlockConfig::new(img.path()).open().unwrap().features() & VIRTIO_RING_F_EVENT_IDX,
        0,
        "EVENT_IDX offered"
    );
    let mut r = reading(&mem, &img, features);
    // used_event 0: interrupt for the first used buffer.
    r.ring.set_used_event(0);
    post_reads(&mut r, 1);
    r.t.process_queue(0);
    assert_eq!(r.ring.used_idx(), 1);
    assert_eq!(r.interrupts(), 1);
    assert_eq!(r.ring.avail_event(), 1, "notify me for chain 1 on");
    // The driver wants to hear only once buffer 5 (the sixth) is used,
    // and it is not.
    r.ring.set_used_event(5);
    post_reads(&mut r, 2);
    r.t.process_queue(0);
    assert_eq!(r.ring.used_idx(), 3);
    assert_eq!(r.interrupts(), 0, "used_event not reached");
    assert_eq!(r.ring.avail_event(), 3);
    // Two turns: the first re-arms (no avail_event: it will be back) and
    // its signal stops short of used_event; the second passes it.
    r.ring.set_used_event(3 + per_turn());
    post_reads(&mut r, u64::from(per_turn()) + 1);
    r.t.process_queue(0);
    assert_eq!(r.ring.used_idx(), 3 + per_turn());
    assert_eq!(r.interrupts(), 0);
    assert_eq!(r.ring.avail_event(), 3, "still serving: no notify wanted");
    r.host_event();
    assert_eq!(r.ring.used_idx(), 4 + per_turn());
    assert_eq!(r.interrupts(), 1, "used index passed used_event");
    assert_eq!(r.ring.avail_event(), 4 + per_turn());
}
