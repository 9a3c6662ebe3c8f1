//! A cache of decompressed bzImage payloads, so that starting the same
//! kernel again costs a few `mmap`s instead of reading, decompressing and
//! copying tens of MiB.
//!
//! [`read_kernel`] is the protocol a VMM follows to read a kernel file with
//! the cache: it keys the file, reads only its setup part on a hit, and
//! says whether the loader fills an entry ([`KernelCacheUse`]); the loader
//! then maps a hit's pages or decompresses into a new entry.
//!
//! An entry is the payload's vmlinux exactly as decompressed, followed by a
//! [`TRAILER_LEN`]-byte trailer written last: magic, format version, the
//! vmlinux's CRC32 and length, and the host's boot ID at the time. Its name
//! is the bzImage's [`ImageKey`]: device, inode, size, modification and
//! change times to the nanosecond (the way make and ccache's direct mode
//! tell a file is unchanged without reading it) and the file's last four
//! bytes (a bzImage's own CRC32), so two builds with equal stat data still
//! differ. A kernel file changed less than [`SETTLE`] ago is not cached,
//! because a second change within the file system's timestamp tick would
//! keep its times; a file that changes while it is read is not cached
//! either.
//!
//! Entries are not fsynced (that would cost the first start about 200 ms
//! here). Instead, an entry written during this boot of the host is trusted
//! as it is (the page cache holds what was written), and one written before
//! a reboot, when a crash may have torn it, has its CRC32 checked once; the
//! boot ID it was checked in goes into a small `<entry>.boot` marker. A torn
//! entry is removed and the payload decompressed again.
//!
//! Entries are written to a temporary name, made read-only and renamed
//! into place, and never written again: that is what lets the loader map
//! their pages into guest RAM copy-on-write
//! ([`vmm_memory::file_pages::map_file_pages`]). Two VMMs filling the same
//! entry at once each write their own file; the last rename wins and the
//! other's mapping keeps its (identical) inode alive. That holds on local
//! file systems only, so a directory on a network or FUSE file system is
//! not used. After each fill the least recently used entries beyond
//! [`MAX_ENTRIES`] or [`MAX_BYTES`] are removed; a hit marks an entry used by
//! setting its modification time. Only files named exactly as entries,
//! their markers and temporary files are ever removed, so a directory
//! shared with other files is safe.
//!
//! The directory must belong to the user and be writable by nobody else
//! (whoever can write an entry picks the kernel); it is created mode 0700,
//! and entries must be regular files of the user that nobody else can
//! write. A cache that cannot be used or written (such a directory, a full
//! disk, a torn or foreign entry) makes the loader decompress as if there
//! were no cache. An entry that passes these checks but cannot be read
//! when it is loaded fails that start, naming the entry.
//!
//! Here: the directory's rules, lookup, eviction and [`read_kernel`]; an
//! entry's on-disk format and writing in `entry`; the key and file names in
//! `key`.

mod entry;
mod key;
#[cfg(test)]
mod tests;

use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::detect::is_bzimage;
use crate::input::{open_input, read_rest, InputError, InputKind};
use crate::request::KernelCacheUse;
use entry::boot_id;
pub use entry::{CachedVmlinux, EntryWriter, CACHE_FORMAT, TRAILER_LEN};
pub use key::ImageKey;
use key::{is_entry_name, is_temp_name, MARKER_SUFFIX};

/// A kernel file changed more recently than this is not cached.
pub const SETTLE: Duration = Duration::from_secs(1);
/// Entries kept at most.
pub const MAX_ENTRIES: usize = 8;
/// Bytes of entries kept at most.
pub const MAX_BYTES: u64 = 1 << 30;
/// Temporary files older than this are leftovers of a VMM that died.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// File systems whose files can change or vanish under a mapping when
/// another host acts on them (NFS, SMB/CIFS, FUSE, 9p, Ceph, AFS, Coda).
const REMOTE_FS_MAGIC: [i64; 9] = [
    0x6969,
    0x517b,
    0xff53_4d42,
    0xfe53_4d42,
    0x6573_5546,
    0x0102_1997,
    0x00c3_6400,
    0x5346_414f,
    0x7375_7245,
];

/// Whether `dir` is on a file system where another host may change files.
fn on_remote_fs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: statfs is plain data, for which all zeroes is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs reads the NUL-terminated path and writes only into the
    // struct it is given, which lives across the call.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return true;
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs.
    let magic = st.f_type as i64;
    REMOTE_FS_MAGIC.contains(&magic)
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

    /// Why the directory cannot be used, if it cannot: it must be a local
    /// directory of this user that nobody else can write.
    fn unusable(&self) -> Option<String> {
        let Ok(meta) = std::fs::metadata(&self.dir) else {
            return Some("it cannot be read".to_string());
        };
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        if !meta.is_dir() {
            Some("it is not a directory".to_string())
        } else if meta.uid() != uid {
            Some(format!("it belongs to uid {}, not {uid}", meta.uid()))
        } else if meta.permissions().mode() & 0o022 != 0 {
            Some(format!(
                "others can write it (mode {:o})",
                meta.permissions().mode() & 0o777
            ))
        } else if on_remote_fs(&self.dir) {
            Some("it is on a network or FUSE file system, where cached pages could change under a running guest".to_string())
        } else {
            None
        }
    }

    /// The entry for `key`, if there is an intact one; marks it used.
    pub fn lookup(&self, key: &ImageKey) -> Option<CachedVmlinux> {
        if !self.dir.exists() {
            return None;
        }
        if let Some(why) = self.unusable() {
            log::warn!("kernel cache: not using {}: {why}", self.dir.display());
            return None;
        }
        let hit = CachedVmlinux::open(self.dir.join(key.file_name()), boot_id())?;
        // For eviction only: failing to mark it costs nothing else.
        let _ = hit.file().set_modified(SystemTime::now());
        Some(hit)
    }

    /// Starts writing the entry for `key`.
    pub fn begin(&self, key: &ImageKey) -> std::io::Result<EntryWriter> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        if let Some(why) = self.unusable() {
            return Err(std::io::Error::other(why));
        }
        EntryWriter::create(&self.dir, key)
    }
}

/// Removes the least recently used entries beyond [`MAX_ENTRIES`] and
/// [`MAX_BYTES`] (never `keep`), markers whose entry is gone, and temporary
/// files a dead VMM left. Touches nothing not named as this module names
/// its files.
fn evict(dir: &Path, keep: &Path) {
    let Ok(list) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    let mut entries: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
    let mut markers = Vec::new();
    for item in list.flatten() {
        let name = item.file_name();
        let name = name.to_string_lossy();
        let Ok(meta) = item.metadata() else { continue };
        let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if is_temp_name(&name) {
            if now.duration_since(used).is_ok_and(|age| age > STALE_TEMP) {
                let _ = std::fs::remove_file(item.path());
            }
        } else if name.strip_suffix(MARKER_SUFFIX).is_some_and(is_entry_name) {
            markers.push(item.path());
        } else if is_entry_name(&name) && meta.is_file() && item.path() != keep {
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
    for marker in markers {
        let entry = marker.with_file_name(
            marker
                .file_name()
                .map(|n| {
                    n.to_string_lossy()
                        .trim_end_matches(MARKER_SUFFIX)
                        .to_string()
                })
                .unwrap_or_default(),
        );
        if !entry.exists() {
            let _ = std::fs::remove_file(marker);
        }
    }
}

/// The most a bzImage's setup part can be: `(setup_sects + 1) * 512` with
/// the one-byte `setup_sects` at 255.
pub const BZIMAGE_SETUP_MAX: u64 = 256 * 512;

/// Reads the kernel file at `path` (at most `limit` bytes, guest RAM), or on
/// a kernel cache hit only its setup part, and says how the loader uses the
/// cache ([`LoadRequest::kernel_cache`](crate::LoadRequest::kernel_cache)):
///
/// - no `cache`, or not a bzImage, or no key: the whole file, no cache;
/// - an entry for the file's [`ImageKey`] no larger than `max_vmlinux` (the
///   most its payload may decompress to; a larger entry, filled for more
///   RAM, is not a hit, so decompression reports the error it would
///   without the cache): the first [`BZIMAGE_SETUP_MAX`] bytes and
///   [`KernelCacheUse::Hit`];
/// - otherwise the whole file and [`KernelCacheUse::Fill`], unless the file
///   changed less than [`SETTLE`] ago or while it was read (then no cache).
pub fn read_kernel(
    path: &Path,
    limit: u64,
    max_vmlinux: u64,
    cache: Option<&VmlinuxCache>,
) -> Result<(Vec<u8>, KernelCacheUse), InputError> {
    let kind = InputKind::Kernel;
    let (file, len) = open_input(path, limit, kind)?;
    let Some(cache) = cache else {
        return Ok((
            read_rest(&file, len, Vec::new(), path, kind)?,
            KernelCacheUse::Off,
        ));
    };
    let mut head = Vec::new();
    (&file)
        .take(BZIMAGE_SETUP_MAX.min(len))
        .read_to_end(&mut head)
        .map_err(|source| InputError::open(kind, path, source))?;
    let key = match ImageKey::read(&file) {
        Ok(key) if is_bzimage(&head) => key,
        _ => {
            return Ok((
                read_rest(&file, len, head, path, kind)?,
                KernelCacheUse::Off,
            ))
        }
    };
    if let Some(hit) = cache.lookup(&key).filter(|hit| hit.len() <= max_vmlinux) {
        return Ok((head, KernelCacheUse::Hit(hit)));
    }
    let data = read_rest(&file, len, head, path, kind)?;
    if !key.settled(SystemTime::now()) {
        log::info!(
            "kernel cache: {} changed less than {SETTLE:?} ago; not caching it",
            path.display()
        );
        return Ok((data, KernelCacheUse::Off));
    }
    // Changed while it was read: what was read may match neither key.
    if ImageKey::read(&file).ok() != Some(key) {
        log::info!(
            "kernel cache: {} changed while it was read; not caching it",
            path.display()
        );
        return Ok((data, KernelCacheUse::Off));
    }
    Ok((
        data,
        KernelCacheUse::Fill {
            cache: cache.clone(),
            key,
        },
    ))
}
