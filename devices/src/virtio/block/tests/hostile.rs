//! What a broken or hostile driver gets: IOERR, a returned chain, or
//! DEVICE_NEEDS_RESET; never a panic, a spin or a touched buffer. And the
//! per-turn budget that keeps one busy disk from holding the device thread.

use virtio_bindings::virtio_config::VIRTIO_CONFIG_S_NEEDS_RESET;

use super::*;

fn rig<'a>(mem: &'a GuestMemoryMmap, img: &TempImage) -> Rig<'a> {
    Rig::new(mem, &BlockConfig::new(img.path()), None, 16)
}

fn needs_reset(r: &Rig<'_>) -> bool {
    r.t.status() & VIRTIO_CONFIG_S_NEEDS_RESET != 0
}

#[test]
fn test_block_malformed_layouts_get_ioerr() {
    let mem = memory();
    let img = TempImage::patterned(4);
    let mut r = rig(&mem, &img);
    r.header(VIRTIO_BLK_T_IN, 0);
    r.fill(DATA, 0xaa, 512);
    let cases: &[&[(u64, u32, u16)]] = &[
        // Header of 8 bytes.
        &[(HDR, 8, 0), (DATA, 512, W), (STATUS, 1, W)],
        // Only a status byte.
        &[(STATUS, 1, W)],
        // A readable buffer after a writable one.
        &[
            (HDR, 16, 0),
            (DATA, 512, W),
            (DATA + 0x1000, 512, 0),
            (STATUS, 1, W),
        ],
        // Data beyond the end of RAM, or wrapping the address space.
        &[(HDR, 16, 0), (0xf_ff00, 512, W), (STATUS, 1, W)],
        &[(HDR, 16, 0), (u64::MAX - 100, 512, W), (STATUS, 1, W)],
        // The header outside RAM.
        &[(0x7fff_0000_0000, 16, 0), (DATA, 512, W), (STATUS, 1, W)],
    ];
    for bufs in cases {
        r.mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
        assert_eq!(r.submit(bufs), (IOERR, 1), "{bufs:x?}");
        assert_eq!(r.read(DATA, 512), vec![0xaa; 512], "{bufs:x?}");
    }
    assert!(!needs_reset(&r));
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, Some((512, W))), (OK, 513));
}

#[test]
fn test_block_chains_without_a_usable_status_are_returned_empty() {
    let mem = memory();
    let img = TempImage::patterned(4);
    let mut r = rig(&mem, &img);
    r.header(VIRTIO_BLK_T_OUT, 0);
    r.fill(DATA, 0x11, 512);
    for bufs in [
        // Nothing writable.
        &[(HDR, 16, 0), (DATA, 512, 0)][..],
        // The status byte outside RAM.
        &[(HDR, 16, 0), (DATA, 512, 0), (0x20_0000, 1, W)][..],
        // A zero-length writable descriptor is no status byte.
        &[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 0, W)][..],
    ] {
        let (_, used) = r.submit(bufs);
        assert_eq!(used, 0, "{bufs:x?}");
    }
    assert_eq!(r.counters.invalid_chains(), 3);
    assert_eq!(
        img.contents(),
        TempImage::patterned(4).contents(),
        "not written"
    );
    assert!(!needs_reset(&r));
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 1, Some((512, W))), (OK, 513));
}

#[test]
fn test_block_descriptor_loop_needs_reset() {
    let mem = memory();
    let img = TempImage::patterned(4);
    let mut r = rig(&mem, &img);
    r.header(VIRTIO_BLK_T_IN, 0);
    let next = virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16;
    r.ring.write_desc(0, HDR, 16, next, 1);
    r.ring.write_desc(1, DATA, 512, W | next, 0);
    r.ring.publish(0);
    r.t.process_queue(0);
    assert!(needs_reset(&r), "a loop is a broken driver");
    assert_eq!(r.ring.used_idx(), 0);
    // Nothing more is served until a reset.
    r.t.process_queue(0);
    assert_eq!(r.ring.used_idx(), 0);
}

#[test]
fn test_block_next_outside_the_table_needs_reset() {
    let mem = memory();
    let img = TempImage::patterned(4);
    let mut r = rig(&mem, &img);
    r.header(VIRTIO_BLK_T_IN, 0);
    let next = virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16;
    r.ring.write_desc(0, HDR, 16, next, 200);
    r.ring.publish(0);
    r.t.process_queue(0);
    assert!(needs_reset(&r));
}

#[test]
fn test_block_head_outside_the_table_needs_reset() {
    let mem = memory();
    let img = TempImage::patterned(4);
    let mut r = rig(&mem, &img);
    r.ring.publish(40);
    r.t.process_queue(0);
    assert!(needs_reset(&r));
}

#[test]
fn test_block_available_index_far_ahead_needs_reset_without_spinning() {
    let mem = memory();
    let img = TempImage::patterned(4);
    let mut r = rig(&mem, &img);
    r.ring.set_avail_idx(1000);
    r.t.process_queue(0);
    assert!(needs_reset(&r));
    assert_eq!(r.counters.rearms(), 0, "no self-wake-up for a broken ring");
}

#[test]
fn test_block_budget_yields_and_rearms() {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
    let img = TempImage::patterned(1024);
    let mut r = Rig::new(&mem, &BlockConfig::new(img.path()), None, 64);
    r.header(VIRTIO_BLK_T_IN, 0);
    // Eight 64 KiB reads: four fit a turn's budget.
    for i in 0..8u64 {
        r.ring.add_chain(&[
            (HDR, 16, 0),
            (0x10_0000 + i * 0x1_0000, 64 << 10, W),
            (STATUS + i, 1, W),
        ]);
    }
    r.t.process_queue(0);
    let per_turn = (TURN_BYTE_BUDGET / (64 << 10)) as u16;
    assert_eq!(r.ring.used_idx(), per_turn);
    assert_eq!(r.counters.rearms(), 1);
    let pending = r.t.host_fds()[0];
    let mut count = 0u64;
    // SAFETY: reading 8 bytes into a local from the device's eventfd.
    let n = unsafe { libc::read(pending, (&mut count as *mut u64).cast(), 8) };
    assert_eq!((n, count), (8, 1), "the device woke itself");
    // SAFETY: as above, putting the count back for the device to consume.
    unsafe { libc::write(pending, (&count as *const u64).cast(), 8) };
    r.host_event();
    assert_eq!(r.ring.used_idx(), 8);
    assert_eq!(r.counters.rearms(), 1, "nothing left: no wake-up");
    for i in 0..8u16 {
        assert_eq!(r.ring.used_entry(i), (u32::from(i) * 3, (64 << 10) + 1));
    }
}

#[test]
fn test_block_small_requests_share_a_turn_and_flush_ends_it() {
    let mem = memory();
    let img = TempImage::patterned(16);
    let mut r = rig(&mem, &img);
    r.header(VIRTIO_BLK_T_IN, 0);
    for _ in 0..5 {
        r.ring
            .add_chain(&[(HDR, 16, 0), (DATA, 512, W), (STATUS, 1, W)]);
    }
    r.t.process_queue(0);
    assert_eq!(r.ring.used_idx(), 5, "small reads: one turn");
    assert_eq!(r.counters.rearms(), 0);
    // A flush spends the turn.
    mem.write_slice(&VIRTIO_BLK_T_FLUSH.to_le_bytes(), GuestAddress(HDR))
        .unwrap();
    r.ring.add_chain(&[(HDR, 16, 0), (STATUS, 1, W)]);
    r.ring.add_chain(&[(HDR, 16, 0), (STATUS, 1, W)]);
    r.t.process_queue(0);
    assert_eq!(r.ring.used_idx(), 6);
    assert_eq!(r.counters.rearms(), 1);
    r.host_event();
    assert_eq!(r.ring.used_idx(), 7);
}

#[test]
fn test_block_full_queue_of_256_is_served() {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
    let img = TempImage::patterned(16);
    let mut r = Rig::new(&mem, &BlockConfig::new(img.path()), None, QUEUE_SIZE);
    r.header(VIRTIO_BLK_T_IN, 0);
    // 128 reads whose 513-byte buffer holds the data and then the status
    // byte: two descriptors each, all 256 descriptors in use.
    for i in 0..128u64 {
        r.ring
            .add_chain(&[(HDR, 16, 0), (0x10_0000 + i * 0x400, 513, W)]);
    }
    r.t.process_queue(0);
    while r.ring.used_idx() < 128 {
        let before = r.ring.used_idx();
        r.host_event();
        assert!(r.ring.used_idx() > before, "stalled at {before}");
    }
    for i in 0..128u16 {
        assert_eq!(r.ring.used_entry(i), (u32::from(i) * 2, 513));
    }
    let status: u8 = mem
        .read_obj(GuestAddress(0x10_0000 + 127 * 0x400 + 512))
        .unwrap();
    assert_eq!(status, OK);
    assert!(!needs_reset(&r));
}

#[test]
fn test_block_notify_of_another_queue_is_ignored() {
    let mem = memory();
    let img = TempImage::patterned(4);
    let mut r = rig(&mem, &img);
    r.header(VIRTIO_BLK_T_IN, 0);
    r.ring
        .add_chain(&[(HDR, 16, 0), (DATA, 512, W), (STATUS, 1, W)]);
    r.t.process_queue(5);
    assert_eq!(r.ring.used_idx(), 0);
    r.t.process_queue(0);
    assert_eq!(r.ring.used_idx(), 1);
}
