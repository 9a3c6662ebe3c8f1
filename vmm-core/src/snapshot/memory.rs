//! Guest RAM to and from the memory file: the RAM regions back to back in
//! guest-physical order, so byte `file_offset + i` of a region's entry is
//! its guest byte `guest_addr + i`.
//!
//! A full snapshot writes a new file (a temporary renamed into place, so
//! a VM whose RAM is mapped from the old file keeps its pages) in which
//! all-zero pages are holes: a mostly idle guest's file costs little disk
//! and little time. A diff snapshot writes the dirty pages, zero or not,
//! into the existing file at their offsets.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::body::{MemoryRegion, MemoryState};
use super::error::SnapshotError;

/// The page size written and tracked.
pub const PAGE_SIZE: u64 = 4096;
/// How much guest RAM is copied out at a time.
const CHUNK: u64 = 2 << 20;

/// The layout of `mem` in a memory file.
pub fn memory_state(mem: &GuestMemoryMmap) -> MemoryState {
    let mut regions = Vec::new();
    let mut offset = 0;
    for r in mem.iter() {
        regions.push(MemoryRegion {
            guest_addr: r.start_addr().0,
            len: r.len(),
            file_offset: offset,
        });
        offset += r.len();
    }
    MemoryState {
        regions,
        size: offset,
    }
}

/// A file name next to `path` for writing before the rename.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn write_err(path: &Path) -> impl Fn(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Copies guest RAM `[addr, addr + buf.len())` out (the VM is paused, so
/// nothing changes it meanwhile).
fn read_guest(mem: &GuestMemoryMmap, addr: u64, buf: &mut [u8]) -> Result<(), SnapshotError> {
    mem.read_slice(buf, GuestAddress(addr))
        .map_err(|e| SnapshotError::Write {
            path: PathBuf::from("<guest memory>"),
            source: std::io::Error::other(format!("reading guest RAM at {addr:#x}: {e}")),
        })
}

/// Writes the non-zero runs of pages in `buf` (guest bytes from file
/// offset `at`); returns the bytes written.
fn write_nonzero(file: &File, path: &Path, buf: &[u8], at: u64) -> Result<u64, SnapshotError> {
    let mut written = 0;
    let mut run: Option<usize> = None;
    let pages = buf.len().div_ceil(PAGE_SIZE as usize);
    for i in 0..=pages {
        let page = buf.get(i * PAGE_SIZE as usize..((i + 1) * PAGE_SIZE as usize).min(buf.len()));
        let zero = page.is_none_or(|p| p.iter().all(|&b| b == 0));
        match (run, zero) {
            (None, false) => run = Some(i),
            (Some(start), true) => {
                let bytes =
                    &buf[start * PAGE_SIZE as usize..(i * PAGE_SIZE as usize).min(buf.len())];
                file.write_all_at(bytes, at + (start as u64) * PAGE_SIZE)
                    .map_err(write_err(path))?;
                written += bytes.len() as u64;
                run = None;
            }
            _ => {}
        }
    }
    Ok(written)
}

/// Writes all of guest RAM to a new memory file at `path`; returns the
/// bytes written (all-zero pages are left as holes).
pub fn write_full(mem: &GuestMemoryMmap, path: &Path) -> Result<u64, SnapshotError> {
    let state = memory_state(mem);
    let tmp = temp_path(path);
    let result = (|| {
        // Errors name the file asked for, not the temporary one.
        let file = File::create(&tmp).map_err(write_err(path))?;
        file.set_len(state.size).map_err(write_err(path))?;
        let mut buf = vec![0u8; CHUNK as usize];
        let mut written = 0;
        for r in &state.regions {
            let mut done = 0;
            while done < r.len {
                let n = (r.len - done).min(CHUNK) as usize;
                read_guest(mem, r.guest_addr + done, &mut buf[..n])?;
                written += write_nonzero(&file, path, &buf[..n], r.file_offset + done)?;
                done += n as u64;
            }
        }
        Ok(written)
    })();
    match result {
        Ok(written) => {
            std::fs::rename(&tmp, path).map_err(write_err(path))?;
            Ok(written)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes the pages marked in `dirty` (one bitmap per region, in region
/// order, bit `i` of word `w` = page `64w + i`) into the existing memory
/// file at `path`, which must be exactly RAM-sized; returns the bytes
/// written.
pub fn write_diff(
    mem: &GuestMemoryMmap,
    path: &Path,
    dirty: &[Vec<u64>],
) -> Result<u64, SnapshotError> {
    let state = memory_state(mem);
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(write_err(path))?;
    let found = file.metadata().map_err(write_err(path))?.len();
    if found != state.size {
        return Err(SnapshotError::DiffTargetSize {
            path: path.to_path_buf(),
            expected: state.size,
            found,
        });
    }
    let mut buf = vec![0u8; CHUNK as usize];
    let mut written = 0;
    for (r, words) in state.regions.iter().zip(dirty) {
        let pages = r.len.div_ceil(PAGE_SIZE);
        let is_dirty = |p: u64| {
            words
                .get((p / 64) as usize)
                .is_some_and(|w| w & (1 << (p % 64)) != 0)
        };
        let mut p = 0;
        while p < pages {
            if !is_dirty(p) {
                p += 1;
                continue;
            }
            // A run of dirty pages, at most one chunk long.
            let start = p;
            while p < pages && is_dirty(p) && (p - start) * PAGE_SIZE < CHUNK {
                p += 1;
            }
            let off = start * PAGE_SIZE;
            let len = ((p - start) * PAGE_SIZE).min(r.len - off) as usize;
            read_guest(mem, r.guest_addr + off, &mut buf[..len])?;
            file.write_all_at(&buf[..len], r.file_offset + off)
                .map_err(write_err(path))?;
            written += len as u64;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0), 1 << 20),
            (GuestAddress(1 << 32), 1 << 20),
        ])
        .unwrap()
    }

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("vmm-core-mem-{}-{name}", std::process::id()))
    }

    #[test]
    fn test_memory_file_holds_regions_back_to_back_with_zero_holes() {
        let m = mem();
        m.write_slice(b"low", GuestAddress(0x1234)).unwrap();
        m.write_slice(b"high", GuestAddress((1 << 32) + 0x5000))
            .unwrap();
        let path = tmp("full");
        let written = write_full(&m, &path).unwrap();
        assert_eq!(written, 2 * PAGE_SIZE, "two non-zero pages");
        let f = File::open(&path).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 2 << 20);
        let mut b = [0u8; 4];
        f.read_exact_at(&mut b[..3], 0x1234).unwrap();
        assert_eq!(&b[..3], b"low");
        f.read_exact_at(&mut b, (1 << 20) + 0x5000).unwrap();
        assert_eq!(&b, b"high");
        assert!(!temp_path(&path).exists());
        let st = memory_state(&m);
        assert_eq!(st.regions[1].file_offset, 1 << 20);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn test_diff_writes_only_the_marked_pages_in_place() {
        let m = mem();
        let path = tmp("diff");
        write_full(&m, &path).unwrap();
        // Two pages change; only page 2 of region 1 is marked.
        m.write_slice(b"new!", GuestAddress(0x3000)).unwrap();
        m.write_slice(b"mark", GuestAddress((1 << 32) + 0x2000))
            .unwrap();
        let mut words = vec![vec![0u64; 4], vec![0u64; 4]];
        words[1][0] = 1 << 2;
        assert_eq!(write_diff(&m, &path, &words).unwrap(), PAGE_SIZE);
        let f = File::open(&path).unwrap();
        let mut b = [0u8; 4];
        f.read_exact_at(&mut b, (1 << 20) + 0x2000).unwrap();
        assert_eq!(&b, b"mark");
        f.read_exact_at(&mut b, 0x3000).unwrap();
        assert_eq!(b, [0; 4], "unmarked pages are not written");
        // A file of another size is refused.
        let short = tmp("short");
        File::create(&short).unwrap().set_len(4096).unwrap();
        let e = write_diff(&m, &short, &words).unwrap_err();
        assert!(
            matches!(e, SnapshotError::DiffTargetSize { found: 4096, .. }),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(&short).unwrap();
    }
}
