//! A cache of decompressed bzImage payloads, so that starting the same
//! kernel again costs a few `mmap`s instead of reading, decompressing and
//! copying tens of MiB.
//!
//! An entry is the payload's vmlinux exactly as decompressed, followed by a
//! [`TRAILER_LEN`]-byte trailer (magic, format version, vmlinux length)
//! written last, so a file cut short by a crash is not taken for an entry.
//! Its name is the bzImage's [`ImageKey`]: device, inode, size, and
//! modification and change times to the nanosecond, the way make and
//! ccache's direct mode tell a file is unchanged without reading it. A
//! kernel file changed less than [`SETTLE`] ago is not cached, because a
//! second change within the file system's timestamp tick would keep its
//! times.
//!
//! Entries are written to a temporary name, made read-only and renamed
//! into place, and never written again: that is what lets the loader map
//! their pages into guest RAM copy-on-write
//! ([`vmm_memory::file_pages::map_file_pages`]). Two VMMs filling the same
//! entry at once each write their own file; the last rename wins and the
//! other's mapping keeps its (identical) inode alive. After each fill the
//! least recently used entries beyond [`MAX_ENTRIES`] or [`MAX_BYTES`] are
//! removed; a hit marks an entry used by setting its modification time.
//!
//! The directory must belong to the user and be writable by nobody else
//! (whoever can write an entry picks the kernel); it is created mode 0700.
//! Every cache failure (such a directory, a full disk, a corrupt entry)
//! makes the loader decompress as if there were no cache; none fails a
//! load.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Version of the entry format and of the decompressors behind it; bumping
/// it orphans older entries (they age out through eviction).
pub const CACHE_FORMAT: u32 = 1;
/// Magic at the start of an entry's trailer.
const TRAILER_MAGIC: &[u8; 8] = b"VMMVMLNX";
/// Bytes of trailer after the vmlinux: magic, format, reserved, length.
pub const TRAILER_LEN: u64 = 24;
/// A kernel file changed more recently than this is not cached.
pub const SETTLE: Duration = Duration::from_secs(1);
/// Entries kept at most.
pub const MAX_ENTRIES: usize = 8;
/// Bytes of entries kept at most.
pub const MAX_BYTES: u64 = 1 << 30;
/// Prefix of every entry's file name.
const ENTRY_PREFIX: &str = "vmlinux-";
/// Prefix of files being written.
const TEMP_PREFIX: &str = ".tmp-";
/// Temporary files older than this are leftovers of a VMM that died.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// What identifies a kernel file's contents without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

fn ns(secs: i64, nsecs: i64) -> i128 {
    i128::from(secs) * 1_000_000_000 + i128::from(nsecs)
}

impl ImageKey {
    /// The key of the file `meta` describes.
    pub fn of(meta: &Metadata) -> Self {
        ImageKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether the file last changed at least [`SETTLE`] before `now`.
    pub fn settled(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let limit = i128::try_from(now.saturating_sub(SETTLE).as_nanos()).unwrap_or(i128::MAX);
        self.mtime_ns <= limit && self.ctime_ns <= limit
    }

    fn file_name(&self) -> String {
        format!(
            "{ENTRY_PREFIX}{:x}-{:x}-{:x}-{:x}-{:x}-f{CACHE_FORMAT}",
            self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns
        )
    }
}

/// A decompressed kernel in the cache, open and checked.
#[derive(Debug, Clone)]
pub struct CachedVmlinux {
    file: Arc<File>,
    len: u64,
    path: PathBuf,
}

impl PartialEq for CachedVmlinux {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.len == other.len
    }
}

impl Eq for CachedVmlinux {}

impl CachedVmlinux {
    /// The open entry. It is never written, so its pages may be mapped.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Length of the vmlinux (the entry without its trailer).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the vmlinux is empty (never, for an entry that was checked).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the entry is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `path` as an entry if its trailer is intact.
    fn open(path: PathBuf) -> Option<Self> {
        let file = File::open(&path).ok()?;
        let total = file.metadata().ok()?.len();
        let len = total.checked_sub(TRAILER_LEN)?;
        let mut trailer = [0u8; TRAILER_LEN as usize];
        file.read_exact_at(&mut trailer, len).ok()?;
        if trailer != make_trailer(len) {
            log::warn!(
                "kernel cache: {} has no valid trailer; ignoring it",
                path.display()
            );
            return None;
        }
        Some(CachedVmlinux {
            file: Arc::new(file),
            len,
            path,
        })
    }
}

fn make_trailer(len: u64) -> [u8; TRAILER_LEN as usize] {
    let mut t = [0u8; TRAILER_LEN as usize];
    t[..8].copy_from_slice(TRAILER_MAGIC);
    t[8..12].copy_from_slice(&CACHE_FORMAT.to_le_bytes());
    t[16..24].copy_from_slice(&len.to_le_bytes());
    t
}

/// A directory of decompressed kernels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmlinuxCache {
    dir: PathBuf,
}

impl VmlinuxCache {
    /// A cache in `dir`, created (mode 0700) when the first entry is written.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        VmlinuxCache { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the directory is one only this user can write: anyone who
    /// can put a file there chooses the kernel the next guest runs.
    fn trusted(&self) -> bool {
        let Ok(meta) = std::fs::metadata(&self.dir) else {
            return false;
        };
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let ok = meta.is_dir() && meta.uid() == uid && meta.permissions().mode() & 0o022 == 0;
        if !ok {
            log::warn!(
                "kernel cache: not using {}: it must be a directory owned by uid {uid} that nobody else can write",
                self.dir.display()
            );
        }
        ok
    }

    /// The entry for `key`, if there is an intact one; marks it used.
    pub fn lookup(&self, key: &ImageKey) -> Option<CachedVmlinux> {
        if !self.dir.exists() || !self.trusted() {
            return None;
        }
        let hit = CachedVmlinux::open(self.dir.join(key.file_name()))?;
        // For eviction only: failing to mark it costs nothing else.
        let _ = hit.file.set_modified(SystemTime::now());
        Some(hit)
    }

    /// Starts writing the entry for `key`.
    pub fn begin(&self, key: &ImageKey) -> std::io::Result<EntryWriter> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        if !self.trusted() {
            return Err(std::io::Error::other(format!(
                "{} is writable by others",
                self.dir.display()
            )));
        }
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let temp = self.dir.join(format!(
            "{TEMP_PREFIX}{}-{}-{nanos:x}",
            key.file_name(),
            std::process::id()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        Ok(EntryWriter {
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            len: 0,
            temp,
            path: self.dir.join(key.file_name()),
            dir: self.dir.clone(),
        })
    }
}

/// An entry being written: the vmlinux in consecutive pieces, then
/// [`EntryWriter::commit`]. Dropped without a commit, it removes its file.
#[derive(Debug)]
pub struct EntryWriter {
    out: Option<BufWriter<File>>,
    len: u64,
    temp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
}

impl EntryWriter {
    /// Appends the next piece of the vmlinux.
    pub fn write(&mut self, piece: &[u8]) -> std::io::Result<()> {
        let out = self.out.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?;
        out.write_all(piece)?;
        self.len += piece.len() as u64;
        Ok(())
    }

    /// Ends the entry: trailer, read-only, renamed into place, reopened as
    /// a [`CachedVmlinux`]. Then evicts what is beyond the cache's limits.
    pub fn commit(mut self) -> std::io::Result<CachedVmlinux> {
        let mut out = self.out.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
        out.write_all(&make_trailer(self.len))?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.set_permissions(std::fs::Permissions::from_mode(0o444))?;
        drop(file);
        std::fs::rename(&self.temp, &self.path)?;
        let entry = CachedVmlinux::open(self.path.clone()).ok_or_else(|| {
            std::io::Error::other(format!(
                "{} changed after it was written",
                self.path.display()
            ))
        })?;
        evict(&self.dir, &self.path);
        Ok(entry)
    }
}

impl Drop for EntryWriter {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Removes the least recently used entries beyond [`MAX_ENTRIES`] and
/// [`MAX_BYTES`], never `keep`, and temporary files a dead VMM left.
fn evict(dir: &Path, keep: &Path) {
    let Ok(list) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    let mut entries: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
    for item in list.flatten() {
        let name = item.file_name();
        let name = name.to_string_lossy();
        let Ok(meta) = item.metadata() else { continue };
        let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if name.starts_with(TEMP_PREFIX) {
            if now.duration_since(used).is_ok_and(|age| age > STALE_TEMP) {
                let _ = std::fs::remove_file(item.path());
            }
        } else if name.starts_with(ENTRY_PREFIX) && item.path() != keep {
            entries.push((used, meta.len(), item.path()));
        }
    }
    // Newest first; `keep` counts as the newest.
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut count = 1;
    let mut bytes = std::fs::metadata(keep).map_or(0, |m| m.len());
    for (_, len, path) in entries {
        count += 1;
        bytes = bytes.saturating_add(len);
        if count > MAX_ENTRIES || bytes > MAX_BYTES {
            log::info!("kernel cache: evicting {}", path.display());
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(count, MAX_ENTRIES);
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
}
