//! Putting a file's pages into guest RAM copy-on-write instead of copying
//! them.
//!
//! A kernel image tens of MiB large is mostly read by the guest, some of it
//! never. Mapping its pages `MAP_PRIVATE` over the guest's anonymous RAM
//! costs one `mmap` instead of a copy of every byte: the host page cache
//! serves the guest's first reads, and the first write to a page gives the
//! guest its own copy, so the file never changes. The guest sees the page
//! cache until it writes a page, so nobody may write the file while it is
//! mapped: that is the caller's promise (see [`map_file_pages`]).
//!
//! Only memory this crate knows how it was mapped can take file pages:
//! vm-memory's [`GuestMemoryMmap`] whose region is a private anonymous
//! mapping (what [`crate::GuestRam`] makes). Any other backend, or a shared
//! or file-backed region, gets [`FilePagesError::Unsupported`] and the
//! caller copies instead.

use std::any::Any;
use std::fs::File;
use std::os::fd::AsRawFd;

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Page size the mappings are made in.
pub const PAGE_SIZE: u64 = 4096;

/// Why file pages could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum FilePagesError {
    /// The memory is not one this module can remap; copy the bytes instead.
    #[error("guest memory at {gpa:#x} is not a private anonymous vm-memory mapping: {why}")]
    Unsupported {
        /// Start of the range asked for.
        gpa: u64,
        /// What is different.
        why: &'static str,
    },
    /// An address, length or file offset is not page-aligned.
    #[error("guest address {gpa:#x}, length {len:#x} and file offset {offset:#x} must all be multiples of {PAGE_SIZE:#x}")]
    Unaligned {
        /// Guest address.
        gpa: u64,
        /// Length.
        len: u64,
        /// File offset.
        offset: u64,
    },
    /// The range is not inside one RAM region.
    #[error("guest range [{gpa:#x}, +{len:#x}) is not inside one guest RAM region")]
    OutsideRegion {
        /// Guest address.
        gpa: u64,
        /// Length.
        len: u64,
    },
    /// The file ends before the range to map does.
    #[error("file range [{offset:#x}, +{len:#x}) runs past the end of the {file_len}-byte file")]
    PastEndOfFile {
        /// File offset.
        offset: u64,
        /// Length.
        len: u64,
        /// The file's length.
        file_len: u64,
    },
    /// The host refused the mapping.
    #[error("mmap of {len:#x} file bytes at offset {offset:#x} over guest address {gpa:#x} failed: {source}")]
    Mmap {
        /// Guest address.
        gpa: u64,
        /// Length.
        len: u64,
        /// File offset.
        offset: u64,
        /// The host's error.
        source: std::io::Error,
    },
}

/// Maps `len` bytes of `file` from `offset` over guest RAM at `gpa`,
/// private and copy-on-write. All three must be multiples of
/// [`PAGE_SIZE`], the file must hold the whole range, and the range must
/// lie in one region of a [`GuestMemoryMmap`] that vm-memory mapped itself,
/// read-write, private and anonymous; anything else is an error and leaves
/// the memory as it was.
///
/// The caller promises that nobody writes or truncates `file` while the
/// guest memory lives: pages the guest has not written yet still show the
/// file's current contents, and a truncated file turns reads of the cut-off
/// pages into `SIGBUS`. Files that are written once and renamed into place,
/// as the kernel cache in vmm-loader does, keep that promise.
///
/// ```
/// use std::io::Write;
/// use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
/// use vmm_memory::file_pages::map_file_pages;
///
/// let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
/// let mut file = tempfile_with(&[0xabu8; 8192]);
/// map_file_pages(&mem, GuestAddress(0x4000), 0x1000, &file, 0x1000).unwrap();
/// assert_eq!(mem.read_obj::<u8>(GuestAddress(0x4000)).unwrap(), 0xab);
/// // The guest's writes stay in guest memory.
/// mem.write_obj(0u8, GuestAddress(0x4000)).unwrap();
/// assert_eq!(mem.read_obj::<u8>(GuestAddress(0x4000)).unwrap(), 0);
/// # fn tempfile_with(bytes: &[u8]) -> std::fs::File {
/// #     let path = std::env::temp_dir().join(format!("file-pages-doc-{}", std::process::id()));
/// #     std::fs::File::create(&path).unwrap().write_all(bytes).unwrap();
/// #     let f = std::fs::File::open(&path).unwrap();
/// #     std::fs::remove_file(&path).unwrap();
/// #     f
/// # }
/// ```
pub fn map_file_pages<M: GuestMemoryBackend + 'static>(
    mem: &M,
    gpa: GuestAddress,
    len: u64,
    file: &File,
    offset: u64,
) -> Result<(), FilePagesError> {
    let mem: &dyn Any = mem;
    let Some(mem) = mem.downcast_ref::<GuestMemoryMmap<()>>() else {
        return Err(FilePagesError::Unsupported {
            gpa: gpa.0,
            why: "not a vm-memory GuestMemoryMmap",
        });
    };
    if ![gpa.0, len, offset]
        .iter()
        .all(|v| v.is_multiple_of(PAGE_SIZE))
    {
        return Err(FilePagesError::Unaligned {
            gpa: gpa.0,
            len,
            offset,
        });
    }
    let region = mem
        .find_region(gpa)
        .ok_or(FilePagesError::OutsideRegion { gpa: gpa.0, len })?;
    let in_region = gpa.0 - region.start_addr().0;
    if len == 0
        || in_region
            .checked_add(len)
            .is_none_or(|end| end > region.len())
    {
        return Err(FilePagesError::OutsideRegion { gpa: gpa.0, len });
    }
    let private_anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    let flags = region.flags();
    // A region vm-memory did not map itself reports default flags, so only
    // owned mappings are trusted to be what their flags say.
    if !region.owned()
        || region.file_offset().is_some()
        || flags & private_anon != private_anon
        || flags & (libc::MAP_SHARED | libc::MAP_HUGETLB) != 0
        || region.prot() != libc::PROT_READ | libc::PROT_WRITE
    {
        return Err(FilePagesError::Unsupported {
            gpa: gpa.0,
            why: "the region is not a read-write private anonymous mapping of vm-memory's own",
        });
    }
    // Pages past the end of the file would raise SIGBUS when touched.
    let file_len = file.metadata().map_or(0, |m| m.len());
    if offset.checked_add(len).is_none_or(|end| end > file_len) {
        return Err(FilePagesError::PastEndOfFile {
            offset,
            len,
            file_len,
        });
    }
    let (Ok(len_usize), Ok(off), Ok(in_region)) = (
        usize::try_from(len),
        libc::off_t::try_from(offset),
        usize::try_from(in_region),
    ) else {
        return Err(FilePagesError::OutsideRegion { gpa: gpa.0, len });
    };
    // SAFETY: [in_region, in_region + len) lies inside the region's own
    // mapping (checked above), so the pointer stays in memory this process
    // mapped and MAP_FIXED replaces only those pages, with the same size
    // and protection the region was made with. The region still unmaps the
    // whole range when it drops. No Rust reference into guest memory
    // exists: vm-memory hands out only volatile slices, so the contents
    // changing underneath is the same as a guest write.
    let ret = unsafe {
        libc::mmap(
            region.as_ptr().add(in_region).cast(),
            len_usize,
            region.prot(),
            libc::MAP_PRIVATE | libc::MAP_FIXED | (region.flags() & libc::MAP_NORESERVE),
            file.as_raw_fd(),
            off,
        )
    };
    if ret == libc::MAP_FAILED {
        return Err(FilePagesError::Mmap {
            gpa: gpa.0,
            len,
            offset,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use vm_memory::{Bytes, GuestRegionMmap, MmapRegion};

    fn file_with(bytes: &[u8]) -> File {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("vmm-memory-file-pages-{}-{n}", std::process::id()));
        File::create(&path).unwrap().write_all(bytes).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    #[test]
    fn test_file_pages_appear_in_guest_memory_and_writes_stay_private() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        mem.write_slice(&[0x11; 0x3000], GuestAddress(0x10000))
            .unwrap();
        let data = pattern(0x5000);
        let file = file_with(&data);
        map_file_pages(&mem, GuestAddress(0x11000), 0x1000, &file, 0x2000).unwrap();
        let mut got = vec![0u8; 0x3000];
        mem.read_slice(&mut got, GuestAddress(0x10000)).unwrap();
        // Only the mapped page changed.
        assert_eq!(&got[..0x1000], &[0x11; 0x1000][..]);
        assert_eq!(&got[0x1000..0x2000], &data[0x2000..0x3000]);
        assert_eq!(&got[0x2000..], &[0x11; 0x1000][..]);
        mem.write_slice(&[0xee; 16], GuestAddress(0x11000)).unwrap();
        let mut back = vec![0u8; 0x1000];
        mem.read_slice(&mut back, GuestAddress(0x11000)).unwrap();
        assert_eq!(&back[..16], &[0xee; 16]);
        assert_eq!(&back[16..], &data[0x2010..0x3000]);
        // The file itself is untouched.
        let mut on_disk = vec![0u8; 16];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut on_disk, 0x2000).unwrap();
        assert_eq!(on_disk, &data[0x2000..0x2010]);
    }

    #[test]
    fn test_file_pages_refuse_bad_ranges_and_leave_memory_alone() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0), 0x10000),
            (GuestAddress(0x20000), 0x10000),
        ])
        .unwrap();
        mem.write_slice(&[0x5a; 0x10000], GuestAddress(0)).unwrap();
        let file = file_with(&pattern(0x20000));
        let cases = [
            (0x1001, 0x1000, 0),
            (0x1000, 0x1001, 0),
            (0x1000, 0x1000, 0x10),
            (0xf000, 0x2000, 0),       // runs off the first region
            (0x10000, 0x1000, 0),      // in the gap
            (0x1000, 0, 0),            // empty
            (0x1000, 0x1000, 0x20000), // past the end of the file
        ];
        for (gpa, len, off) in cases {
            let err = map_file_pages(&mem, GuestAddress(gpa), len, &file, off).unwrap_err();
            assert!(
                matches!(
                    err,
                    FilePagesError::Unaligned { .. }
                        | FilePagesError::OutsideRegion { .. }
                        | FilePagesError::PastEndOfFile { .. }
                ),
                "{gpa:#x}+{len:#x}@{off:#x}: {err}"
            );
        }
        let mut all = vec![0u8; 0x10000];
        mem.read_slice(&mut all, GuestAddress(0)).unwrap();
        assert!(all.iter().all(|&b| b == 0x5a));
    }

    #[test]
    fn test_file_pages_refuse_file_backed_regions() {
        let backing = file_with(&[0u8; 0x4000]);
        let file = file_with(&pattern(0x4000));
        let shared = MmapRegion::<()>::from_file(
            vm_memory::FileOffset::new(backing.try_clone().unwrap(), 0),
            0x4000,
        );
        // A file-backed region: remapping it would cut it off its file.
        let region = shared.expect("a file-backed region for the test");
        {
            let mem = GuestMemoryMmap::<()>::from_regions(vec![GuestRegionMmap::new(
                region,
                GuestAddress(0),
            )
            .unwrap()])
            .unwrap();
            let err = map_file_pages(&mem, GuestAddress(0), 0x1000, &file, 0).unwrap_err();
            assert!(matches!(err, FilePagesError::Unsupported { .. }), "{err}");
        }
    }
}
