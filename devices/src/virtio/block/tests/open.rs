//! Opening images: what is refused, the lock, the size, read-only opens.

use std::os::unix::fs::MetadataExt;

use super::*;

fn open_err(cfg: BlockConfig) -> BlockError {
    cfg.open().expect_err("the open should fail")
}

#[test]
fn test_block_open_capacity_and_identity() {
    let img = TempImage::patterned(8);
    let dev = BlockConfig::new(img.path()).open().unwrap();
    assert_eq!(dev.capacity(), 8);
    assert!(!dev.read_only());
    assert_eq!(dev.device_type(), 2);
    assert_eq!(dev.queue_max_sizes(), &[QUEUE_SIZE]);
    let cfg = dev.config_space();
    assert_eq!(cfg.len(), CONFIG_LEN);
    assert_eq!(u64::from_le_bytes(cfg[0..8].try_into().unwrap()), 8);
    assert_eq!(u32::from_le_bytes(cfg[12..16].try_into().unwrap()), 254);
    assert_eq!(u32::from_le_bytes(cfg[20..24].try_into().unwrap()), 512);
}

#[test]
fn test_block_size_not_a_multiple_of_512_is_rounded_down() {
    let img = TempImage::new(&[7u8; 1000]);
    let dev = BlockConfig::new(img.path()).open().unwrap();
    assert_eq!(dev.capacity(), 1, "1000 bytes: one whole sector");
}

#[test]
fn test_block_smaller_than_a_sector_is_refused() {
    let img = TempImage::new(&[0u8; 100]);
    let e = open_err(BlockConfig::new(img.path()));
    assert!(matches!(e, BlockError::Size { bytes: 100, .. }), "{e:?}");
    assert!(
        e.to_string().contains(&img.path().display().to_string()),
        "{e}"
    );
    let empty = TempImage::new(&[]);
    assert!(matches!(
        open_err(BlockConfig::new(empty.path())),
        BlockError::Size { bytes: 0, .. }
    ));
}

#[test]
fn test_block_serial_checks() {
    let img = TempImage::patterned(1);
    let e = open_err(BlockConfig::new(img.path()).serial("x".repeat(21)));
    assert!(
        matches!(e, BlockError::SerialTooLong { len: 21, .. }),
        "{e:?}"
    );
    let e = open_err(BlockConfig::new(img.path()).serial("a\0b"));
    assert!(matches!(e, BlockError::SerialNul { .. }), "{e:?}");
    BlockConfig::new(img.path())
        .serial("x".repeat(20))
        .open()
        .unwrap();
}

#[test]
fn test_block_not_a_disk_missing_and_unreadable() {
    let dir = std::env::temp_dir();
    let e = open_err(BlockConfig::new(&dir));
    assert!(
        matches!(
            e,
            BlockError::NotADisk {
                kind: "a directory",
                ..
            }
        ),
        "{e:?}"
    );
    let e = open_err(BlockConfig::new("/dev/null"));
    assert!(
        matches!(
            e,
            BlockError::NotADisk {
                kind: "a character device",
                ..
            }
        ),
        "{e:?}"
    );
    let missing = dir.join("vmm-blk-unit-does-not-exist.img");
    let e = open_err(BlockConfig::new(&missing));
    assert!(matches!(e, BlockError::Stat { .. }), "{e:?}");
    assert!(
        e.to_string().contains("vmm-blk-unit-does-not-exist.img"),
        "{e}"
    );
}

#[test]
fn test_block_lock_exclusive_for_writable_shared_for_read_only() {
    let img = TempImage::patterned(2);
    let first = BlockConfig::new(img.path()).open().unwrap();
    let e = open_err(BlockConfig::new(img.path()));
    assert!(
        matches!(
            e,
            BlockError::InUse {
                read_only: false,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains(&img.path().display().to_string()),
        "{e}"
    );
    assert!(e.to_string().contains("in use"), "{e}");
    let e = open_err(BlockConfig::new(img.path()).read_only(true));
    assert!(
        matches!(
            e,
            BlockError::InUse {
                read_only: true,
                ..
            }
        ),
        "{e:?}"
    );
    drop(first);
    // Released on drop; two readers share.
    let r1 = BlockConfig::new(img.path()).read_only(true).open().unwrap();
    let r2 = BlockConfig::new(img.path()).read_only(true).open().unwrap();
    assert!(matches!(
        open_err(BlockConfig::new(img.path())),
        BlockError::InUse { .. }
    ));
    drop((r1, r2));
    BlockConfig::new(img.path()).open().unwrap();
}

/// The access mode of the descriptor this process has open on `path`.
fn open_access_modes(path: &Path) -> Vec<i32> {
    let mut modes = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if std::fs::read_link(entry.path()).ok().as_deref() != Some(path) {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            entry.file_name().to_string_lossy()
        ))
        .unwrap();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|v| i32::from_str_radix(v.trim(), 8).unwrap())
            .unwrap();
        modes.push(flags & libc::O_ACCMODE);
    }
    modes
}

#[test]
fn test_block_read_only_never_opens_writable_and_offers_ro() {
    let img = TempImage::patterned(4);
    let path = std::fs::canonicalize(img.path()).unwrap();
    let dev = BlockConfig::new(&path).read_only(true).open().unwrap();
    assert!(dev.read_only());
    assert_eq!(open_access_modes(&path), vec![libc::O_RDONLY]);
    let feat = dev.features();
    assert_ne!(feat & f(VIRTIO_BLK_F_RO), 0);
    assert_eq!(
        feat & (f(VIRTIO_BLK_F_DISCARD) | f(VIRTIO_BLK_F_WRITE_ZEROES)),
        0,
        "no discard/write-zeroes on a read-only disk"
    );
    drop(dev);
    let rw = BlockConfig::new(&path).open().unwrap();
    assert_eq!(open_access_modes(&path), vec![libc::O_RDWR]);
    assert_eq!(rw.features() & f(VIRTIO_BLK_F_RO), 0);
}

#[test]
fn test_block_features_follow_the_probe() {
    let img = TempImage::patterned(4);
    let dev = BlockConfig::new(img.path()).open().unwrap();
    let base = f(VIRTIO_BLK_F_SEG_MAX) | f(VIRTIO_BLK_F_BLK_SIZE) | f(VIRTIO_BLK_F_FLUSH);
    assert_eq!(dev.features() & base, base);
    let ranges = dev.disk.ranges();
    assert_eq!(
        dev.features() & f(VIRTIO_BLK_F_DISCARD) != 0,
        ranges.punch_hole
    );
    assert_eq!(
        dev.features() & f(VIRTIO_BLK_F_WRITE_ZEROES) != 0,
        ranges.zero_range
    );
    let c = dev.config();
    if ranges.punch_hole {
        assert_eq!(c.max_discard_sectors, RANGE_SECTORS_MAX);
        assert_eq!(c.max_discard_seg, RANGE_SEGMENTS_MAX as u32);
        assert!(c.discard_sector_alignment >= 1);
    } else {
        assert_eq!((c.max_discard_sectors, c.max_discard_seg), (0, 0));
    }
    assert_eq!(
        c.write_zeroes_may_unmap,
        ranges.zero_range && ranges.punch_hole
    );
}

#[test]
fn test_block_temp_dir_supports_discard_and_write_zeroes() {
    // The discard/write-zeroes request tests need a filesystem with
    // fallocate PUNCH_HOLE and ZERO_RANGE (ext4, xfs, btrfs) under the
    // temporary directory.
    let img = TempImage::patterned(4);
    let dev = BlockConfig::new(img.path()).open().unwrap();
    let r = dev.disk.ranges();
    assert!(
        r.punch_hole && r.zero_range,
        "{}: this filesystem lacks fallocate PUNCH_HOLE or ZERO_RANGE ({r:?}); \
         set TMPDIR to an ext4/xfs directory",
        std::env::temp_dir().display()
    );
}

#[test]
fn test_block_probe_changes_neither_size_contents_nor_allocation() {
    let img = TempImage::patterned(64);
    let before = std::fs::metadata(img.path()).unwrap();
    let contents = img.contents();
    let dev = BlockConfig::new(img.path()).open().unwrap();
    let after = std::fs::metadata(img.path()).unwrap();
    assert_eq!(after.len(), before.len());
    assert_eq!(
        after.blocks(),
        before.blocks(),
        "the zero-range probe's block past the end was released"
    );
    assert_eq!(img.contents(), contents);
    drop(dev);
}

#[test]
fn test_block_snapshot_identity_names_image_size_mode_and_serial() {
    let img = TempImage::new(&[0u8; 1000]);
    let dev = BlockConfig::new(img.path())
        .serial("disk-7")
        .open()
        .unwrap();
    assert_eq!(
        dev.snapshot_identity(),
        BackendIdentity::Disk {
            path: img.path().to_path_buf(),
            // Whole sectors: what the guest sees.
            size: 512,
            read_only: false,
            serial: Some("disk-7".into()),
        }
    );
    drop(dev);
    let dev = BlockConfig::new(img.path()).read_only(true).open().unwrap();
    let id = dev.snapshot_identity();
    assert!(
        matches!(
            &id,
            BackendIdentity::Disk {
                read_only: true,
                serial: None,
                ..
            }
        ),
        "{id:?}"
    );
    // It reads back as it was written (what a snapshot stores).
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(serde_json::from_str::<BackendIdentity>(&json).unwrap(), id);
}

#[test]
fn test_block_device_ioctls_refuse_a_regular_file() {
    // BLKGETSIZE64 and BLKROGET are for block devices (a loop device in
    // the integration tests): a regular file is ENOTTY, never a size of 0.
    let img = TempImage::patterned(4);
    let file = std::fs::File::open(img.path()).unwrap();
    let e = io::block_device_bytes(&file).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTTY), "{e}");
    let e = io::block_device_read_only(&file).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTTY), "{e}");
}
