//! What identifies a kernel file ([`ImageKey`]) and what the cache's files
//! are called: entries, their boot markers and temporary files. Nothing not
//! named this way is ever removed.

use std::fs::{File, Metadata};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::entry::CACHE_FORMAT;
use super::SETTLE;

/// Prefix of every entry's file name.
pub(super) const ENTRY_PREFIX: &str = "vmlinux-";
/// Prefix of files being written (followed by the entry or marker name).
pub(super) const TEMP_PREFIX: &str = ".tmp-";
/// Suffix of an entry's boot marker.
pub(super) const MARKER_SUFFIX: &str = ".boot";
/// What identifies a kernel file's contents without reading all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageKey {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) size: u64,
    pub(super) mtime_ns: i128,
    pub(super) ctime_ns: i128,
    pub(super) tail: u32,
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

    pub(super) fn file_name(&self) -> String {
        format!(
            "{ENTRY_PREFIX}{:x}-{:x}-{:x}-{:x}-{:x}-{:08x}-f{CACHE_FORMAT}",
            self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns, self.tail
        )
    }
}

/// Whether `name` is an entry's name as [`ImageKey`] makes them (any
/// format version).
pub(super) fn is_entry_name(name: &str) -> bool {
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
pub(super) fn is_temp_name(name: &str) -> bool {
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
pub(super) fn marker_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(MARKER_SUFFIX);
    path.with_file_name(name)
}
