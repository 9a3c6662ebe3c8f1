//! A cache entry on disk: the vmlinux, then a trailer (magic, format, CRC32,
//! length, boot ID) written last; checked when it is opened, written under
//! a temporary name and renamed into place when it is complete.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::evict;
use super::key::{marker_path, ImageKey, TEMP_PREFIX};

/// Version of the entry format and of the decompressors behind it; bumping
/// it orphans older entries (they age out through eviction).
pub const CACHE_FORMAT: u32 = 2;
/// Magic at the start of an entry's trailer.
const TRAILER_MAGIC: &[u8; 8] = b"VMMVMLNX";
/// Length of a boot ID (`/proc/sys/kernel/random/boot_id`, a UUID string).
pub(super) const BOOT_ID_LEN: usize = 36;
/// Bytes of trailer after the vmlinux: magic 8, format 4, CRC32 4, length
/// 8, boot ID 36, padding 4.
pub const TRAILER_LEN: u64 = 64;
/// A boot ID: which boot of the host a page cache belongs to.
pub(super) type BootId = [u8; BOOT_ID_LEN];

/// This boot's ID, if the host says.
pub(super) fn boot_id() -> Option<BootId> {
    let text = std::fs::read("/proc/sys/kernel/random/boot_id").ok()?;
    text.get(..BOOT_ID_LEN)?.try_into().ok()
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
    pub(super) fn open(path: PathBuf, boot: Option<BootId>) -> Option<Self> {
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
    /// Starts the entry for `key` in `dir` (which exists and is usable):
    /// a new temporary file, renamed into place by [`Self::commit`].
    pub(super) fn create(dir: &Path, key: &ImageKey) -> std::io::Result<Self> {
        let temp = dir.join(format!(
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
            path: dir.join(key.file_name()),
            dir: dir.to_path_buf(),
        })
    }

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
