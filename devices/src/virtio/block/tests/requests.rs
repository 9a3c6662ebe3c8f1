//! Requests a correct driver sends, and the answers they get.

use super::*;

fn rig<'a>(mem: &'a GuestMemoryMmap, img: &TempImage) -> Rig<'a> {
    Rig::new(
        mem,
        &BlockConfig::new(img.path()).serial("disk-7"),
        None,
        16,
    )
}

#[test]
fn test_block_read_returns_the_sector_and_used_len_counts_status() {
    let mem = memory();
    let img = TempImage::patterned(8);
    let mut r = rig(&mem, &img);
    r.fill(DATA, 0, 1024);
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 3, Some((1024, W))), (OK, 1025));
    assert_eq!(r.read(DATA, 512), vec![4u8; 512]);
    assert_eq!(r.read(DATA + 512, 512), vec![5u8; 512]);
    assert_eq!((r.counters.reads(), r.counters.bytes_read()), (1, 1024));
    assert_eq!(r.t.interrupt().status(), 1, "used-buffer interrupt");
}

#[test]
fn test_block_write_lands_in_the_file() {
    let mem = memory();
    let img = TempImage::patterned(8);
    let mut r = rig(&mem, &img);
    r.fill(DATA, 0xab, 512);
    assert_eq!(r.request(VIRTIO_BLK_T_OUT, 1, Some((512, 0))), (OK, 1));
    let file = img.contents();
    assert_eq!(&file[512..1024], &[0xab; 512][..]);
    assert_eq!(&file[0..512], &[1; 512][..], "sector 0 untouched");
    assert_eq!(&file[1024..1536], &[3; 512][..], "sector 2 untouched");
    assert_eq!(r.counters.bytes_written(), 512);
}

#[test]
fn test_block_flexible_framing_split_header_and_status_in_data() {
    let mem = memory();
    let img = TempImage::patterned(8);
    let mut r = rig(&mem, &img);
    // Header in two descriptors (8 + 8), data in three of odd sizes, the
    // status byte as the last byte of the last data descriptor, and a
    // zero-length descriptor in between.
    r.header(VIRTIO_BLK_T_IN, 2);
    let (_, used) = r.submit(&[
        (HDR, 8, 0),
        (HDR + 8, 8, 0),
        (DATA, 0, W),
        (DATA, 100, W),
        (DATA + 0x1000, 900, W),
        (DATA + 0x2000, 25, W),
    ]);
    assert_eq!(used, 1025);
    let status: u8 = mem.read_obj(GuestAddress(DATA + 0x2000 + 24)).unwrap();
    assert_eq!(status, OK);
    let data = [
        r.read(DATA, 100),
        r.read(DATA + 0x1000, 900),
        r.read(DATA + 0x2000, 24),
    ]
    .concat();
    assert_eq!(&data[..512], &[3u8; 512][..]);
    assert_eq!(&data[512..], &[4u8; 512][..]);
    // A write whose data follows the header in the same descriptor.
    let mut buf = vec![0u8; 16 + 512];
    buf[0..4].copy_from_slice(&VIRTIO_BLK_T_OUT.to_le_bytes());
    buf[8..16].copy_from_slice(&5u64.to_le_bytes());
    buf[16..].fill(0x77);
    mem.write_slice(&buf, GuestAddress(DATA)).unwrap();
    let (s, used) = r.submit(&[(DATA, 528, 0), (STATUS, 1, W)]);
    assert_eq!((s, used), (OK, 1));
    assert_eq!(&img.contents()[5 * 512..6 * 512], &[0x77; 512][..]);
}

#[test]
fn test_block_flush_is_fdatasync_and_only_when_needed() {
    let mem = memory();
    let img = TempImage::patterned(4);
    let mut r = rig(&mem, &img);
    assert_eq!(r.request(VIRTIO_BLK_T_FLUSH, 0, None), (OK, 1));
    assert_eq!(r.counters.syncs(), 0, "nothing written yet");
    r.request(VIRTIO_BLK_T_OUT, 0, Some((512, 0)));
    assert_eq!(
        r.counters.syncs(),
        0,
        "FLUSH accepted: writes are write-back"
    );
    assert_eq!(r.request(VIRTIO_BLK_T_FLUSH, 0, None), (OK, 1));
    assert_eq!((r.counters.syncs(), r.counters.flushes()), (1, 2));
}

#[test]
fn test_block_without_flush_feature_is_write_through() {
    let mem = memory();
    let img = TempImage::patterned(4);
    let features = v1(f(VIRTIO_BLK_F_SEG_MAX) | f(VIRTIO_BLK_F_BLK_SIZE));
    let mut r = Rig::new(&mem, &BlockConfig::new(img.path()), Some(features), 16);
    r.request(VIRTIO_BLK_T_OUT, 0, Some((512, 0)));
    r.request(VIRTIO_BLK_T_OUT, 1, Some((512, 0)));
    assert_eq!(r.counters.syncs(), 2, "each write synced before completing");
}

#[test]
fn test_block_shutdown_syncs_acknowledged_writes() {
    let mem = memory();
    let img = TempImage::patterned(4);
    let mut r = rig(&mem, &img);
    r.request(VIRTIO_BLK_T_OUT, 2, Some((512, 0)));
    assert_eq!(r.counters.syncs(), 0);
    r.t.shutdown();
    assert_eq!(r.counters.syncs(), 1);
    r.t.shutdown();
    assert_eq!(r.counters.syncs(), 1, "nothing new to sync");
}

#[test]
fn test_block_get_id_returns_the_serial() {
    let mem = memory();
    let img = TempImage::patterned(1);
    let mut r = rig(&mem, &img);
    r.fill(DATA, 0xff, 64);
    assert_eq!(r.request(VIRTIO_BLK_T_GET_ID, 0, Some((20, W))), (OK, 21));
    let mut want = b"disk-7".to_vec();
    want.resize(20, 0);
    assert_eq!(r.read(DATA, 20), want);
    // A bigger buffer gets 20 bytes; a smaller one what fits.
    r.fill(DATA, 0xff, 64);
    assert_eq!(r.request(VIRTIO_BLK_T_GET_ID, 0, Some((64, W))), (OK, 21));
    assert_eq!(r.read(DATA + 20, 4), vec![0xff; 4], "nothing past 20 bytes");
    r.fill(DATA, 0xff, 64);
    assert_eq!(r.request(VIRTIO_BLK_T_GET_ID, 0, Some((4, W))), (OK, 5));
    assert_eq!(r.read(DATA, 5), b"disk\xff");
    assert_eq!(r.counters.get_ids(), 3);
}

#[test]
fn test_block_get_id_full_length_serial_and_none() {
    let mem = memory();
    let img = TempImage::patterned(1);
    let serial = "abcdefghijklmnopqrst";
    let mut r = Rig::new(&mem, &BlockConfig::new(img.path()).serial(serial), None, 16);
    r.fill(DATA, 0xff, 32);
    assert_eq!(r.request(VIRTIO_BLK_T_GET_ID, 0, Some((20, W))), (OK, 21));
    assert_eq!(r.read(DATA, 21), [serial.as_bytes(), &[0xff]].concat());
    drop(r);
    let mut r = Rig::new(&mem, &BlockConfig::new(img.path()), None, 16);
    r.fill(DATA, 0xff, 32);
    assert_eq!(r.request(VIRTIO_BLK_T_GET_ID, 0, Some((20, W))), (OK, 21));
    assert_eq!(r.read(DATA, 20), vec![0; 20], "no serial: an empty ID");
}

#[test]
fn test_block_beyond_capacity_is_ioerr_and_touches_nothing() {
    let mem = memory();
    let img = TempImage::patterned(8);
    let mut r = rig(&mem, &img);
    for (sector, len) in [(8, 512), (7, 1024), (u64::MAX, 512), (u64::MAX / 512, 512)] {
        r.fill(DATA, 0xaa, 2048);
        assert_eq!(
            r.request(VIRTIO_BLK_T_IN, sector, Some((len, W))),
            (IOERR, 1),
            "read at {sector}"
        );
        assert_eq!(r.read(DATA, 2048), vec![0xaa; 2048], "buffer untouched");
        assert_eq!(
            r.request(VIRTIO_BLK_T_OUT, sector, Some((len, 0))),
            (IOERR, 1)
        );
    }
    assert_eq!(img.contents(), TempImage::patterned(8).contents());
    // The last sector itself is fine.
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 7, Some((512, W))), (OK, 513));
    assert_eq!(r.counters.io_errors(), 8);
}

#[test]
fn test_block_lengths_not_whole_sectors_or_too_big_are_ioerr() {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 20 << 20)]).unwrap();
    let img = TempImage::patterned(64 << 10);
    let mut r = rig(&mem, &img);
    r.fill(DATA, 0xaa, 1024);
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, Some((100, W))), (IOERR, 1));
    assert_eq!(r.request(VIRTIO_BLK_T_OUT, 0, Some((513, 0))), (IOERR, 1));
    assert_eq!(r.read(DATA, 1024), vec![0xaa; 1024]);
    let too_big = REQUEST_DATA_MAX as u32 + 512;
    assert_eq!(
        r.request(VIRTIO_BLK_T_IN, 0, Some((too_big, W))),
        (IOERR, 1)
    );
    assert_eq!(r.read(DATA, 1024), vec![0xaa; 1024]);
    // At the limit it is served.
    let max = REQUEST_DATA_MAX as u32;
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, Some((max, W))), (OK, max + 1));
    assert_eq!(r.read(DATA, 512), vec![1; 512]);
}

#[test]
fn test_block_wrong_direction_data_is_ioerr() {
    let mem = memory();
    let img = TempImage::patterned(4);
    let mut r = rig(&mem, &img);
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, Some((512, 0))), (IOERR, 1));
    assert_eq!(r.request(VIRTIO_BLK_T_OUT, 0, Some((512, W))), (IOERR, 1));
    assert_eq!(r.request(VIRTIO_BLK_T_GET_ID, 0, Some((20, 0))), (IOERR, 1));
    assert_eq!(r.request(VIRTIO_BLK_T_GET_ID, 0, None), (IOERR, 1));
    assert_eq!(img.contents(), TempImage::patterned(4).contents());
}

#[test]
fn test_block_unsupported_types_get_unsupp() {
    let mem = memory();
    let img = TempImage::patterned(4);
    let mut r = rig(&mem, &img);
    for t in [
        0x7777,
        2,
        3,
        VIRTIO_BLK_T_SECURE_ERASE,
        VIRTIO_BLK_T_ZONE_REPORT,
    ] {
        assert_eq!(r.request(t, 0, Some((512, W))), (UNSUPP, 1), "type {t}");
    }
    assert_eq!(r.counters.unsupported(), 5);
}

#[test]
fn test_block_read_only_disk_refuses_writes() {
    let mem = memory();
    let img = TempImage::patterned(4);
    let cfg = BlockConfig::new(img.path()).read_only(true);
    let mut r = Rig::new(&mem, &cfg, None, 16);
    r.fill(DATA, 0x55, 512);
    assert_eq!(r.request(VIRTIO_BLK_T_OUT, 1, Some((512, 0))), (IOERR, 1));
    assert_eq!(img.contents(), TempImage::patterned(4).contents());
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 1, Some((512, W))), (OK, 513));
    assert_eq!(r.read(DATA, 512), vec![2; 512]);
    assert_eq!(r.request(VIRTIO_BLK_T_FLUSH, 0, None), (OK, 1));
    // Discard was not offered, so not accepted: unsupported.
    assert_eq!(
        r.request(VIRTIO_BLK_T_DISCARD, 0, Some((16, 0))),
        (UNSUPP, 1)
    );
}

/// Writes `ranges` (sector, sectors, flags) at DATA; returns their length.
fn put_ranges(mem: &GuestMemoryMmap, ranges: &[(u64, u32, u32)]) -> u32 {
    let mut b = Vec::new();
    for &(s, n, fl) in ranges {
        b.extend_from_slice(&s.to_le_bytes());
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(&fl.to_le_bytes());
    }
    mem.write_slice(&b, GuestAddress(DATA)).unwrap();
    b.len() as u32
}

#[test]
fn test_block_discard_and_write_zeroes_zero_the_ranges() {
    let mem = memory();
    let img = TempImage::patterned(64);
    let mut r = rig(&mem, &img);
    assert!(
        r.config.max_discard_seg > 0 && r.config.max_write_zeroes_seg > 0,
        "the temp dir's filesystem lacks PUNCH_HOLE/ZERO_RANGE (see open tests)"
    );
    let len = put_ranges(&mem, &[(8, 8, 0), (32, 1, 0)]);
    assert_eq!(r.request(VIRTIO_BLK_T_DISCARD, 0, Some((len, 0))), (OK, 1));
    let len = put_ranges(
        &mem,
        &[(20, 4, 0), (40, 8, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)],
    );
    assert_eq!(
        r.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, Some((len, 0))),
        (OK, 1)
    );
    let file = img.contents();
    assert_eq!(file.len(), 64 * 512, "size unchanged");
    for s in 0..64usize {
        let zeroed =
            (8..16).contains(&s) || s == 32 || (20..24).contains(&s) || (40..48).contains(&s);
        let want = if zeroed { 0 } else { (s + 1) as u8 };
        assert!(
            file[s * 512..(s + 1) * 512].iter().all(|&b| b == want),
            "sector {s}"
        );
    }
    assert_eq!((r.counters.discards(), r.counters.write_zeroes()), (1, 1));
}

#[test]
fn test_block_discard_write_zeroes_checks() {
    let mem = memory();
    let img = TempImage::patterned(64);
    let mut r = rig(&mem, &img);
    let unmap = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
    type Case<'a> = (u32, &'a [(u64, u32, u32)], u8);
    let cases: &[Case<'_>] = &[
        // Unmap on a discard, unknown flags: UNSUPP.
        (VIRTIO_BLK_T_DISCARD, &[(0, 1, unmap)], UNSUPP),
        (VIRTIO_BLK_T_DISCARD, &[(0, 1, 2)], UNSUPP),
        (VIRTIO_BLK_T_WRITE_ZEROES, &[(0, 1, 1 << 31)], UNSUPP),
        // Beyond the capacity, over max sectors: IOERR.
        (VIRTIO_BLK_T_DISCARD, &[(60, 5, 0)], IOERR),
        (VIRTIO_BLK_T_WRITE_ZEROES, &[(u64::MAX, 2, 0)], IOERR),
        (
            VIRTIO_BLK_T_DISCARD,
            &[(0, RANGE_SECTORS_MAX + 1, 0)],
            IOERR,
        ),
        // A good range with a bad one: nothing is done.
        (VIRTIO_BLK_T_WRITE_ZEROES, &[(0, 1, 0), (64, 1, 0)], IOERR),
    ];
    for (t, ranges, want) in cases {
        let len = put_ranges(&mem, ranges);
        assert_eq!(r.request(*t, 0, Some((len, 0))).0, *want, "{t} {ranges:?}");
    }
    // Too many segments, and lengths that are not whole segments.
    let many: Vec<_> = (0..=RANGE_SEGMENTS_MAX as u64).map(|i| (i, 1, 0)).collect();
    let len = put_ranges(&mem, &many);
    assert_eq!(r.request(VIRTIO_BLK_T_DISCARD, 0, Some((len, 0))).0, IOERR);
    assert_eq!(r.request(VIRTIO_BLK_T_DISCARD, 0, Some((15, 0))).0, IOERR);
    assert_eq!(r.request(VIRTIO_BLK_T_DISCARD, 0, None).0, IOERR);
    assert_eq!(img.contents(), TempImage::patterned(64).contents());
}

#[test]
fn test_block_reset_and_reactivate_keeps_serving() {
    let mem = memory();
    let img = TempImage::patterned(4);
    let mut r = rig(&mem, &img);
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, Some((512, W))).0, OK);
    write32(
        &mut r.t,
        virtio_bindings::virtio_mmio::VIRTIO_MMIO_STATUS,
        0,
    );
    assert!(!r.t.is_active());
    let offered = device_features(&mut r.t);
    assert!(negotiate(&mut r.t, offered));
    r.ring = TestRing::new(&mem, GuestAddress(RING), 16);
    setup_queue_at(&mut r.t, 0, &r.ring);
    driver_ok(&mut r.t);
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 3, Some((512, W))), (OK, 513));
    assert_eq!(r.read(DATA, 512), vec![4; 512]);
}
