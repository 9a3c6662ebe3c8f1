//! The host calls a disk makes, each a thin wrapper that retries after a
//! signal: positioned vectored I/O between the image and guest memory
//! (`preadv`/`pwritev`, no bounce buffer), `fdatasync`, `fallocate`,
//! `flock` for the image lock, and a block device's size and read-only
//! flag (`BLKGETSIZE64`, `BLKROGET`).
//!
//! Guest memory is reached only through `vm_memory::VolatileSlice`s that
//! the caller got from `GuestMemoryBackend::get_slices`, i.e. ranges that
//! are inside guest RAM and stay mapped while the slices live.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

use vm_memory::bitmap::BitmapSlice;
use vm_memory::volatile_memory::PtrGuardMut;
use vm_memory::VolatileSlice;

/// The most `iovec`s one call takes (Linux's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// Runs `call` until it does not fail with EINTR.
fn retry<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// A libc return value as `io::Result` (negative: errno).
fn check(ret: libc::ssize_t) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// Which way data moves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Image to guest memory.
    Read,
    /// Guest memory to image.
    Write,
}

/// Moves all of `slices` (in order) from/to `file` at `offset`; returns
/// the bytes moved, fewer only when a read hit the end of the file.
fn transfer<B: BitmapSlice>(
    file: &File,
    offset: u64,
    slices: &[VolatileSlice<'_, B>],
    dir: Direction,
) -> io::Result<usize> {
    let total: usize = slices.iter().map(|s| s.len()).sum();
    let mut done = 0usize;
    while done < total {
        // The iovecs for what is left: skip the slices (and the part of
        // one) already moved, at most IOV_MAX of them. The guards keep each
        // slice's mapping alive until the call returns.
        let mut skip = done;
        let mut guards: Vec<(PtrGuardMut, usize)> = Vec::with_capacity(slices.len().min(IOV_MAX));
        for s in slices {
            if guards.len() == IOV_MAX {
                break;
            }
            if skip >= s.len() {
                skip -= s.len();
                continue;
            }
            guards.push((s.ptr_guard_mut(), skip));
            skip = 0;
        }
        let iovs: Vec<libc::iovec> = guards
            .iter()
            .map(|(g, skip)| libc::iovec {
                // SAFETY: `skip < g.len()` (checked above), so the pointer
                // stays inside the slice, which maps guest RAM while its
                // guard lives.
                iov_base: unsafe { g.as_ptr().add(*skip) }.cast(),
                iov_len: g.len() - skip,
            })
            .collect();
        let at = offset
            .checked_add(done as u64)
            .and_then(|o| libc::off_t::try_from(o).ok())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let count = libc::c_int::try_from(iovs.len()).unwrap_or(libc::c_int::MAX);
        let n = retry(|| {
            // SAFETY: every iovec points into guest RAM kept mapped by its
            // guard, with the length left in its slice (built above); the
            // kernel reads or writes at most those bytes. The fd is open
            // for the whole call.
            check(unsafe {
                match dir {
                    Direction::Read => libc::preadv(file.as_raw_fd(), iovs.as_ptr(), count, at),
                    Direction::Write => libc::pwritev(file.as_raw_fd(), iovs.as_ptr(), count, at),
                }
            })
        })?;
        if n == 0 {
            if dir == Direction::Write {
                return Err(io::Error::from(io::ErrorKind::WriteZero));
            }
            break;
        }
        done += n;
    }
    if dir == Direction::Read {
        // The kernel wrote guest memory behind the slices' backs: tell
        // their dirty bitmaps (for live migration and snapshots).
        let mut left = done;
        for s in slices {
            let n = left.min(s.len());
            s.bitmap().mark_dirty(0, n);
            left -= n;
        }
    }
    Ok(done)
}

/// Reads `file` from `offset` into `slices`; returns the bytes read (fewer
/// than the slices hold only at the end of the file).
pub(crate) fn read_into<B: BitmapSlice>(
    file: &File,
    offset: u64,
    slices: &[VolatileSlice<'_, B>],
) -> io::Result<usize> {
    transfer(file, offset, slices, Direction::Read)
}

/// Writes all of `slices` to `file` at `offset`.
pub(crate) fn write_from<B: BitmapSlice>(
    file: &File,
    offset: u64,
    slices: &[VolatileSlice<'_, B>],
) -> io::Result<()> {
    transfer(file, offset, slices, Direction::Write).map(|_| ())
}

/// `fdatasync(2)`: the file's data (and the metadata needed to read it
/// back) reach stable storage.
pub(crate) fn fdatasync(file: &File) -> io::Result<()> {
    // SAFETY: a plain system call on an fd that is open for the call.
    retry(|| check(unsafe { libc::fdatasync(file.as_raw_fd()) } as libc::ssize_t)).map(|_| ())
}

/// `fallocate(2)` with `mode` on `[offset, offset + len)`.
pub(crate) fn fallocate(file: &File, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    retry(|| {
        // SAFETY: a plain system call on an fd that is open for the call;
        // no memory is passed.
        let ret = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, len) };
        check(ret as libc::ssize_t)
    })
    .map(|_| ())
}

/// `fallocate` mode that deallocates a range (reads return zeroes), the
/// size unchanged.
pub(crate) const PUNCH_HOLE: libc::c_int = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
/// `fallocate` mode that zeroes a range (possibly as unwritten extents),
/// the size unchanged.
pub(crate) const ZERO_RANGE: libc::c_int = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;

/// `BLKGETSIZE64` (`_IOR(0x12, 114, size_t)`).
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
/// `BLKROGET` (`_IO(0x12, 94)`).
const BLKROGET: libc::c_ulong = 0x125e;

/// A block device's size in bytes (`ioctl(BLKGETSIZE64)`; its `st_size`
/// is 0). ENOTTY for anything but a block device.
pub(crate) fn block_device_bytes(file: &File) -> io::Result<u64> {
    let mut bytes: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points
    // at a live local; the fd is open for the call.
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut bytes as *mut u64) };
    check(ret as libc::ssize_t).map(|_| bytes)
}

/// Whether a block device is read-only (`ioctl(BLKROGET)`: a `losetup -r`
/// loop device, a write-protected disk). Opening such a device O_RDWR
/// succeeds; its writes then fail with EPERM.
pub(crate) fn block_device_read_only(file: &File) -> io::Result<bool> {
    let mut ro: libc::c_int = 0;
    // SAFETY: BLKROGET writes one int through the pointer, which points at
    // a live local; the fd is open for the call.
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), BLKROGET as _, &mut ro as *mut libc::c_int) };
    check(ret as libc::ssize_t).map(|_| ro != 0)
}

/// How a lock attempt ended.
pub(crate) enum Lock {
    /// Taken.
    Taken,
    /// Another open file description holds a conflicting lock.
    Held,
}

/// `flock(2)` without blocking: exclusive, or shared when `shared`.
pub(crate) fn flock(file: &File, shared: bool) -> io::Result<Lock> {
    let op = if shared { libc::LOCK_SH } else { libc::LOCK_EX } | libc::LOCK_NB;
    // SAFETY: a plain system call on an fd that is open for the call.
    match retry(|| check(unsafe { libc::flock(file.as_raw_fd(), op) } as libc::ssize_t)) {
        Ok(_) => Ok(Lock::Taken),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(Lock::Held),
        Err(e) => Err(e),
    }
}
