//! Loading a vmlinux that is whole in a file (an entry of the kernel cache)
//! by mapping its segments' pages copy-on-write into guest memory instead
//! of copying them.

use std::fs::File;
use std::os::unix::fs::FileExt;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_memory::file_pages::{map_file_pages, PAGE_SIZE};
use vmm_memory::MemoryLayout;

use super::vmlinux::{check_in_file, missing_headers, parse_headers, zero_bss, HEADERS_MAX};
use super::{LinuxError, LoadedKernel};

/// How much of a vmlinux loaded from a file was mapped rather than copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileLoad {
    /// Bytes whose pages were mapped copy-on-write.
    pub mapped: u64,
    /// Bytes copied.
    pub copied: u64,
}

/// Loads a vmlinux that is whole in the first `len` bytes of `file` (an
/// entry of the kernel cache, say): the same checks as a stream, then each
/// segment's page-aligned middle mapped copy-on-write
/// ([`vmm_memory::file_pages::map_file_pages`]) and its ragged ends copied;
/// where pages cannot be mapped (file offset and address not congruent
/// modulo the page size, or memory that is not vm-memory's anonymous
/// mmap), the whole segment is copied. `file` must never be written while
/// the guest memory lives (see `map_file_pages`).
pub fn load_from_file<M: GuestMemoryBackend + 'static>(
    mem: &M,
    layout: &MemoryLayout,
    file: &File,
    len: u64,
    what: &str,
) -> Result<(LoadedKernel, FileLoad), LinuxError> {
    let read_err = |e: std::io::Error| LinuxError::FileRead {
        what: what.to_string(),
        source: e,
    };
    // A vmlinux's headers fit in its first page; read more only if not.
    let mut head = Vec::new();
    let mut headers = None;
    for want in [PAGE_SIZE, HEADERS_MAX] {
        head.resize(len.min(want) as usize, 0);
        file.read_exact_at(&mut head, 0).map_err(read_err)?;
        if !head.starts_with(b"\x7fELF") {
            break;
        }
        headers = parse_headers(&head, layout)?;
        if headers.is_some() || len <= want {
            break;
        }
    }
    let headers = headers.ok_or_else(|| missing_headers(&head, len, what))?;
    check_in_file(&headers, len)?;
    let mut done = FileLoad::default();
    let mut buf = Vec::new();
    for (_, s) in &headers.segments {
        let end = s.paddr + s.filesz;
        let first = s.paddr.next_multiple_of(PAGE_SIZE);
        let last = end - end % PAGE_SIZE;
        let file_first = s.offset + (first - s.paddr).min(s.filesz);
        let mapped = first < last
            && file_first % PAGE_SIZE == 0
            && match map_file_pages(mem, GuestAddress(first), last - first, file, file_first) {
                Ok(()) => true,
                Err(e) => {
                    log::debug!("{what}: copying instead of mapping: {e}");
                    false
                }
            };
        let copies = if mapped {
            done.mapped += last - first;
            [(s.paddr, first), (last, end)]
        } else {
            [(s.paddr, end), (end, end)]
        };
        for (from, to) in copies {
            copy_from_file(
                mem,
                file,
                s.offset + (from - s.paddr),
                from,
                to - from,
                &mut buf,
            )
            .map_err(|e| match e {
                CopyError::Read(e) => read_err(e),
                CopyError::Write(e) => LinuxError::KernelWrite(e),
            })?;
            done.copied += to - from;
        }
    }
    zero_bss(mem, &headers)?;
    Ok((headers.loaded(), done))
}

#[cfg(feature = "bzimage-payloads")]
enum CopyError {
    Read(std::io::Error),
    Write(vm_memory::GuestMemoryError),
}

/// Copies `len` bytes at `offset` in `file` to guest address `gpa`, through
/// `buf` in pieces of at most 1 MiB.
fn copy_from_file<M: GuestMemoryBackend>(
    mem: &M,
    file: &File,
    offset: u64,
    gpa: u64,
    len: u64,
    buf: &mut Vec<u8>,
) -> Result<(), CopyError> {
    const PIECE: u64 = 1 << 20;
    let mut done = 0;
    while done < len {
        let n = (len - done).min(PIECE) as usize;
        buf.resize(n, 0);
        file.read_exact_at(&mut buf[..n], offset + done)
            .map_err(CopyError::Read)?;
        mem.write_slice(&buf[..n], GuestAddress(gpa + done))
            .map_err(CopyError::Write)?;
        done += n as u64;
    }
    Ok(())
}
