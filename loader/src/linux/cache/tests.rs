use std::fs::File;
use std::os::unix::fs::FileExt;

use super::entry::BOOT_ID_LEN;
use super::key::marker_path;
use super::*;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmm-loader-cache-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn key(n: u64) -> ImageKey {
    ImageKey {
        dev: 1,
        ino: n,
        size: 100,
        mtime_ns: 5,
        ctime_ns: 6,
        tail: 7,
    }
}

#[test]
fn test_cache_round_trip_and_miss() {
    let dir = temp_dir("round-trip");
    let cache = VmlinuxCache::new(&dir);
    assert!(cache.lookup(&key(1)).is_none());
    let mut w = cache.begin(&key(1)).unwrap();
    w.write(b"\x7fELFhello").unwrap();
    w.write(b" world").unwrap();
    let entry = w.commit().unwrap();
    assert_eq!(entry.len(), 15);
    let hit = cache.lookup(&key(1)).unwrap();
    assert_eq!(hit, entry);
    let mut back = vec![0u8; 15];
    hit.file().read_exact_at(&mut back, 0).unwrap();
    assert_eq!(back, b"\x7fELFhello world");
    assert!(cache.lookup(&key(2)).is_none());
    let mode = std::fs::metadata(hit.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o444);
    let dmode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(dmode & 0o777, 0o700);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn test_cache_refuses_a_directory_others_can_write() {
    let dir = temp_dir("open-dir");
    let cache = VmlinuxCache::new(&dir);
    let mut w = cache.begin(&key(1)).unwrap();
    w.write(b"x").unwrap();
    w.commit().unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(cache.lookup(&key(1)).is_none());
    assert!(cache.begin(&key(2)).is_err());
    // Never chmods a directory it did not create.
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o777);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(cache.lookup(&key(1)).is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn test_cache_ignores_cut_short_or_foreign_entries() {
    let dir = temp_dir("corrupt");
    let cache = VmlinuxCache::new(&dir);
    let mut w = cache.begin(&key(1)).unwrap();
    w.write(&[7u8; 1000]).unwrap();
    let entry = w.commit().unwrap();
    let path = entry.path().to_path_buf();
    drop(entry);
    let full = std::fs::read(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    // Cut short, as by a crash before the data reached the disk.
    for len in [0, 10, 1000, full.len() - 1] {
        std::fs::write(&path, &full[..len]).unwrap();
        assert!(cache.lookup(&key(1)).is_none(), "{len} bytes");
    }
    // A different format version.
    let mut other = full.clone();
    other[1000 + 8] ^= 1;
    std::fs::write(&path, &other).unwrap();
    assert!(cache.lookup(&key(1)).is_none());
    std::fs::write(&path, &full).unwrap();
    assert!(cache.lookup(&key(1)).is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Rewrites the trailer of the entry at `path` as `edit` says.
fn edit_trailer(path: &Path, edit: impl FnOnce(&mut [u8])) {
    let mut all = std::fs::read(path).unwrap();
    let at = all.len() - TRAILER_LEN as usize;
    edit(&mut all[at..]);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, &all).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
}

#[test]
fn test_cache_checks_entries_from_an_earlier_boot_once() {
    if boot_id().is_none() {
        panic!("this test needs /proc/sys/kernel/random/boot_id, which this host lacks");
    }
    let dir = temp_dir("reboot");
    let cache = VmlinuxCache::new(&dir);
    let mut w = cache.begin(&key(1)).unwrap();
    w.write(&[0x42u8; 5000]).unwrap();
    let path = w.commit().unwrap().path().to_path_buf();
    // As if written before a reboot, intact: checked, then trusted
    // through the marker.
    edit_trailer(&path, |t| t[24..24 + BOOT_ID_LEN].fill(b'x'));
    assert!(cache.lookup(&key(1)).is_some());
    let marker = std::fs::read(marker_path(&path)).expect("a boot marker");
    assert_eq!(
        Some(marker.as_slice()),
        boot_id().as_ref().map(|b| b.as_slice())
    );
    assert!(cache.lookup(&key(1)).is_some());
    // Torn by a crash before the reboot: the data no longer matches the
    // CRC. The marker is for this boot, so drop it as a reboot would.
    std::fs::remove_file(marker_path(&path)).unwrap();
    let mut all = std::fs::read(&path).unwrap();
    all[100] = 0;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&path, &all).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    assert!(cache.lookup(&key(1)).is_none());
    assert!(!path.exists(), "a torn entry is removed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn test_cache_entries_must_be_the_users_regular_files() {
    let dir = temp_dir("foreign");
    let cache = VmlinuxCache::new(&dir);
    let mut w = cache.begin(&key(1)).unwrap();
    w.write(b"x").unwrap();
    let path = w.commit().unwrap().path().to_path_buf();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert!(cache.lookup(&key(1)).is_none(), "others can write it");
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", &path).unwrap();
    assert!(cache.lookup(&key(1)).is_none(), "a symlink");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn test_cache_names_are_recognised_exactly() {
    let name = key(1).file_name();
    assert!(is_entry_name(&name));
    assert!(is_temp_name(&format!(".tmp-{name}-123-abc")));
    assert!(is_temp_name(&format!(".tmp-{name}.boot-123-abc")));
    for other in [
        "vmlinux-6.1",
        "vmlinux-6.1.0-56-cloud-amd64",
        "vmlinux",
        "notes.txt",
        ".tmp-vmlinux-6.1-1-a",
        ".tmp-notes",
    ] {
        assert!(!is_entry_name(other) && !is_temp_name(other), "{other}");
    }
}

#[test]
fn test_cache_eviction_leaves_other_files_alone() {
    let dir = temp_dir("shared");
    let cache = VmlinuxCache::new(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mine = ["vmlinux-6.1", "vmlinux-6.6", "notes.txt", ".tmp-x"];
    for f in mine {
        std::fs::write(dir.join(f), [1u8; 10]).unwrap();
        let old = SystemTime::now() - Duration::from_secs(10 * 3600);
        File::options()
            .write(true)
            .open(dir.join(f))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    for n in 0..MAX_ENTRIES as u64 + 2 {
        let mut w = cache.begin(&key(n)).unwrap();
        w.write(&[n as u8; 10]).unwrap();
        w.commit().unwrap();
    }
    for f in mine {
        assert!(dir.join(f).exists(), "{f} was removed");
    }
    let entries = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| is_entry_name(&e.as_ref().unwrap().file_name().to_string_lossy()))
        .count();
    assert_eq!(entries, MAX_ENTRIES);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn test_cache_uncommitted_writer_leaves_nothing() {
    let dir = temp_dir("drop");
    let cache = VmlinuxCache::new(&dir);
    let mut w = cache.begin(&key(1)).unwrap();
    w.write(&[1u8; 100]).unwrap();
    drop(w);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    assert!(cache.lookup(&key(1)).is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn test_cache_evicts_least_recently_used_beyond_the_limit() {
    let dir = temp_dir("evict");
    let cache = VmlinuxCache::new(&dir);
    let t0 = SystemTime::now() - Duration::from_secs(1000);
    for n in 0..MAX_ENTRIES as u64 {
        let mut w = cache.begin(&key(n)).unwrap();
        w.write(&[n as u8; 10]).unwrap();
        let e = w.commit().unwrap();
        // Entry n last used at t0 + n s; entry 0 is the oldest.
        e.file().set_modified(t0 + Duration::from_secs(n)).unwrap();
    }
    // Using entry 0 makes entry 1 the least recently used.
    assert!(cache.lookup(&key(0)).is_some());
    let mut w = cache.begin(&key(100)).unwrap();
    w.write(&[9u8; 10]).unwrap();
    w.commit().unwrap();
    assert!(cache.lookup(&key(1)).is_none());
    for n in [0, 2, 3, 100] {
        assert!(cache.lookup(&key(n)).is_some(), "entry {n}");
    }
    let count = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        count, MAX_ENTRIES,
        "entries only: no markers, no temporary files"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn test_key_changes_with_the_file_and_waits_to_settle() {
    let dir = temp_dir("key");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("k");
    std::fs::write(&p, b"one").unwrap();
    let a = ImageKey::of(&std::fs::metadata(&p).unwrap());
    assert!(!a.settled(SystemTime::now()));
    assert!(a.settled(SystemTime::now() + SETTLE + Duration::from_millis(10)));
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&p, b"two").unwrap();
    let b = ImageKey::of(&std::fs::metadata(&p).unwrap());
    assert_ne!(a, b, "same size, rewritten: the times differ");
    assert_ne!(a.file_name(), b.file_name());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn test_read_kernel_reads_the_setup_part_on_a_hit_only() {
    use crate::linux::test_image::{bzimage, BzImageSpec};
    let dir = temp_dir("read-kernel");
    std::fs::create_dir_all(&dir).unwrap();
    let cache = VmlinuxCache::new(dir.join("cache"));
    // Larger than the setup part, so a hit reads less than the file.
    let img = bzimage(&BzImageSpec::default(), &vec![7u8; 200_000]);
    let path = dir.join("bzImage");
    std::fs::write(&path, &img).unwrap();
    let read =
        |max: u64, cache: Option<&VmlinuxCache>| read_kernel(&path, 1 << 20, max, cache).unwrap();
    assert_eq!(read(1 << 20, None), (img.clone(), KernelCacheUse::Off));
    // Just written: it may change again within a timestamp tick.
    assert_eq!(
        read(1 << 20, Some(&cache)),
        (img.clone(), KernelCacheUse::Off)
    );
    let raw = dir.join("raw");
    std::fs::write(&raw, [0xf4u8; 100]).unwrap();
    std::thread::sleep(SETTLE + Duration::from_millis(100));
    let (data, how) = read_kernel(&raw, 1 << 20, 1 << 20, Some(&cache)).unwrap();
    assert_eq!(
        (data, how),
        (vec![0xf4; 100], KernelCacheUse::Off),
        "not a bzImage"
    );

    let (data, how) = read(1 << 20, Some(&cache));
    assert_eq!(data, img);
    let KernelCacheUse::Fill { cache: filled, key } = how else {
        panic!("a settled bzImage without an entry is filled: {how:?}");
    };
    let mut w = filled.begin(&key).unwrap();
    w.write(b"\x7fELF the vmlinux").unwrap();
    let entry = w.commit().unwrap();
    let (head, how) = read(1 << 20, Some(&cache));
    assert_eq!(head, &img[..BZIMAGE_SETUP_MAX as usize]);
    assert_eq!(how, KernelCacheUse::Hit(entry));
    // An entry larger than the payload may decompress to is no hit.
    let (data, how) = read(3, Some(&cache));
    assert_eq!(data, img);
    assert!(matches!(how, KernelCacheUse::Fill { .. }), "{how:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
