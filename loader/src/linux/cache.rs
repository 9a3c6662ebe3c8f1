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

use std::fs::{File, Metadata, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::detect::is_bzimage;
use crate::input::{open_input, read_rest, InputError, InputKind};
use crate::request::KernelCacheUse;

/// Version of the entry format and of the decompressors behind it; bumping
/// it orphans older entries (they age out through eviction).
pub const CACHE_FORMAT: u32 = 2;
/// Magic at the start of an entry's trailer.
const TRAILER_MAGIC: &[u8; 8] = b"VMMVMLNX";
/// Length of a boot ID (`/proc/sys/kernel/random/boot_id`, a UUID string).
const BOOT_ID_LEN: usize = 36;
/// Bytes of trailer after the vmlinux: magic 8, format 4, CRC32 4, length
/// 8, boot ID 36, padding 4.
pub const TRAILER_LEN: u64 = 64;
/// A kernel file changed more recently than this is not cached.
pub const SETTLE: Duration = Duration::from_secs(1);
/// Entries kept at most.
pub const MAX_ENTRIES: usize = 8;
/// Bytes of entries kept at most.
pub const MAX_BYTES: u64 = 1 << 30;
/// Prefix of every entry's file name.
const ENTRY_PREFIX: &str = "vmlinux-";
/// Prefix of files being written (followed by the entry or marker name).
const TEMP_PREFIX: &str = ".tmp-";
/// Suffix of an entry's boot marker.
const MARKER_SUFFIX: &str = ".boot";
/// Temporary files older than this are leftovers of a VMM that died.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// A boot ID: which boot of the host a page cache belongs to.
type BootId = [u8; BOOT_ID_LEN];

/// This boot's ID, if the host says.
fn boot_id() -> Option<BootId> {
    let text = std::fs::read("/proc/sys/kernel/random/boot_id").ok()?;
    text.get(..BOOT_ID_LEN)?.try_into().ok()
}

/// What identifies a kernel file's contents without reading all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    tail: u32,
}

fn ns(secs: i64, nsecs: i64) -> i128 {
    i128::from(secs) * 1_000_000_000 + i128::from(nsecs)
}

impl ImageKey {
    /// The key of the file `meta` describes, without its last bytes.
    pub fn of(meta: &Metadata) -> Self {
        ImageKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            tail: 0,
        }
    }

    /// The key of an open file: its stat data and its last four bytes.
    pub fn read(file: &File) -> std::io::Result<Self> {
        let meta = file.metadata()?;
        let mut tail = [0u8; 4];
        if let Some(at) = meta.len().checked_sub(4) {
            file.read_exact_at(&mut tail, at)?;
        }
        Ok(ImageKey {
            tail: u32::from_le_bytes(tail),
            ..ImageKey::of(&meta)
        })
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
            "{ENTRY_PREFIX}{:x}-{:x}-{:x}-{:x}-{:x}-{:08x}-f{CACHE_FORMAT}",
            self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns, self.tail
        )
    }
}

/// Whether `name` is an entry's name as [`ImageKey`] makes them (any
/// format version).
fn is_entry_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(ENTRY_PREFIX) else {
        return false;
    };
    let fields: Vec<&str> = rest.split('-').collect();
    let hex = |f: &&str| !f.is_empty() && f.bytes().all(|b| b.is_ascii_hexdigit());
    fields.len() == 7
        && fields[..6].iter().all(hex)
        && fields[6]
            .strip_prefix('f')
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `name` is a temporary file this module writes: the prefix, an
/// entry's or marker's name, then `-<pid>-<hex>`.
fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
        return false;
    };
    let mut parts = rest.rsplitn(3, '-');
    let (Some(nonce), Some(pid), Some(target)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let target = target.strip_suffix(MARKER_SUFFIX).unwrap_or(target);
    !nonce.is_empty()
        && nonce.bytes().all(|b| b.is_ascii_hexdigit())
        && !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && is_entry_name(target)
}

/// The boot marker of the entry at `path`.
fn marker_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(MARKER_SUFFIX);
    path.with_file_name(name)
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

/// An entry's trailer, decoded.
struct Trailer {
    crc: u32,
    len: u64,
    boot: BootId,
}

impl Trailer {
    fn encode(&self) -> [u8; TRAILER_LEN as usize] {
        let mut t = [0u8; TRAILER_LEN as usize];
        t[..8].copy_from_slice(TRAILER_MAGIC);
        t[8..12].copy_from_slice(&CACHE_FORMAT.to_le_bytes());
        t[12..16].copy_from_slice(&self.crc.to_le_bytes());
        t[16..24].copy_from_slice(&self.len.to_le_bytes());
        t[24..24 + BOOT_ID_LEN].copy_from_slice(&self.boot);
        t
    }

    fn decode(t: &[u8; TRAILER_LEN as usize]) -> Option<Trailer> {
        let u32_at = |at: usize| u32::from_le_bytes([t[at], t[at + 1], t[at + 2], t[at + 3]]);
        if &t[..8] != TRAILER_MAGIC || u32_at(8) != CACHE_FORMAT {
            return None;
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&t[16..24]);
        let mut boot = [0u8; BOOT_ID_LEN];
        boot.copy_from_slice(&t[24..24 + BOOT_ID_LEN]);
        Some(Trailer {
            crc: u32_at(12),
            len: u64::from_le_bytes(len),
            boot,
        })
    }
}

/// Whether `meta` is a regular file of this user that nobody else can
/// write.
fn owned_regular_file(meta: &Metadata) -> bool {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    meta.is_file() && meta.uid() == uid && meta.permissions().mode() & 0o022 == 0
}

/// The CRC32 of the first `len` bytes of `file`.
fn crc_of(file: &File, len: u64) -> std::io::Result<u32> {
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut reader = file.take(len);
    let mut seen = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                seen += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if seen != len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(hasher.finalize())
}

/// Writes `bytes` to `path` atomically (a temporary file renamed over it).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = path.with_file_name(format!(
        "{TEMP_PREFIX}{name}-{}-{:x}",
        std::process::id(),
        nonce()
    ));
    let done = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&temp, path));
    if done.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    done
}

/// Something unlikely to repeat between two temporary files of one process.
fn nonce() -> u32 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

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

    /// Opens `path` as an entry if it is the user's, its trailer is intact,
    /// and it was written in this boot of the host or its CRC32 matches.
    /// A torn entry is removed.
    fn open(path: PathBuf, boot: Option<BootId>) -> Option<Self> {
        // No blocking on a FIFO, no following a planted symlink.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(&path)
            .ok()?;
        let meta = file.metadata().ok()?;
        let ignore = |why: &str| {
            log::warn!("kernel cache: ignoring {}: {why}", path.display());
        };
        if !owned_regular_file(&meta) {
            ignore("not a regular file of this user that only it can write");
            return None;
        }
        let Some(len) = meta.len().checked_sub(TRAILER_LEN) else {
            ignore("too short to hold a trailer");
            return None;
        };
        let mut raw = [0u8; TRAILER_LEN as usize];
        file.read_exact_at(&mut raw, len).ok()?;
        let Some(trailer) = Trailer::decode(&raw).filter(|t| t.len == len) else {
            ignore("no valid trailer (cut short, or another format version)");
            return None;
        };
        let marker = || std::fs::read(marker_path(&path)).ok();
        let this_boot = boot.is_some_and(|b| {
            trailer.boot == b || marker().is_some_and(|m| m.as_slice() == b.as_slice())
        });
        if !this_boot {
            // Written before a reboot: a crash may have left holes.
            if crc_of(&file, len).ok() != Some(trailer.crc) {
                ignore("its CRC32 does not match (torn by a crash?); removing it");
                let _ = std::fs::remove_file(&path);
                return None;
            }
            if let Some(b) = boot {
                let _ = write_atomically(&marker_path(&path), &b);
            }
            log::info!("kernel cache: {} checked after a reboot", path.display());
        }
        Some(CachedVmlinux {
            file: Arc::new(file),
            len,
            path,
        })
    }
}

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
        let _ = hit.file.set_modified(SystemTime::now());
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
        let temp = self.dir.join(format!(
            "{TEMP_PREFIX}{}-{}-{:x}",
            key.file_name(),
            std::process::id(),
            nonce()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        Ok(EntryWriter {
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            crc: crc32fast::Hasher::new(),
            len: 0,
            committed: false,
            temp,
            path: self.dir.join(key.file_name()),
            dir: self.dir.clone(),
        })
    }
}

/// An entry being written: the vmlinux in consecutive pieces, then
/// [`EntryWriter::commit`]. Dropped without a successful commit, it removes
/// its file.
#[derive(Debug)]
pub struct EntryWriter {
    out: Option<BufWriter<File>>,
    crc: crc32fast::Hasher,
    len: u64,
    committed: bool,
    temp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
}

impl EntryWriter {
    /// Appends the next piece of the vmlinux.
    pub fn write(&mut self, piece: &[u8]) -> std::io::Result<()> {
        let out = self.out.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?;
        out.write_all(piece)?;
        self.crc.update(piece);
        self.len += piece.len() as u64;
        Ok(())
    }

    /// Ends the entry: trailer, read-only, renamed into place, reopened as
    /// a [`CachedVmlinux`]. Then evicts what is beyond the cache's limits.
    pub fn commit(mut self) -> std::io::Result<CachedVmlinux> {
        let mut out = self.out.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
        let boot = boot_id();
        let trailer = Trailer {
            crc: self.crc.clone().finalize(),
            len: self.len,
            boot: boot.unwrap_or([0; BOOT_ID_LEN]),
        };
        out.write_all(&trailer.encode())?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.set_permissions(std::fs::Permissions::from_mode(0o444))?;
        drop(file);
        std::fs::rename(&self.temp, &self.path)?;
        self.committed = true;
        let entry = CachedVmlinux::open(self.path.clone(), boot).ok_or_else(|| {
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
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
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
        let read = |max: u64, cache: Option<&VmlinuxCache>| {
            read_kernel(&path, 1 << 20, max, cache).unwrap()
        };
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
}
