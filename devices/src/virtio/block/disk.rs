//! Opening a disk image: [`BlockConfig`] checks the serial, the file's
//! type, takes the image lock, sizes it and probes discard/write-zeroes;
//! [`Disk`] is the open image the request code reads and writes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use vm_memory::bitmap::BitmapSlice;
use vm_memory::VolatileSlice;

use super::io::{self as host, Lock};
use super::probe::{probe_block_device, probe_file, RangeSupport};
use super::VirtioBlock;

/// Bytes per sector: the unit of `capacity` and of every request's
/// `sector`, whatever the image's block size (section 5.2.6).
pub const SECTOR_SIZE: u64 = 512;
/// The longest serial GET_ID can return (`VIRTIO_BLK_ID_BYTES`).
pub const SERIAL_MAX: usize = 20;

/// Errors opening a disk image. Each names the image (or the serial).
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The serial does not fit GET_ID's 20 bytes.
    #[error("disk serial {serial:?} is {len} bytes long; GET_ID returns at most 20")]
    SerialTooLong {
        /// The serial.
        serial: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The serial contains a NUL byte (the driver would cut it there).
    #[error("disk serial {serial:?} contains a NUL byte")]
    SerialNul {
        /// The serial.
        serial: String,
    },
    /// The image cannot be examined (missing, no permission...).
    #[error("disk image {}: {source}", path.display())]
    Stat {
        /// The image.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The path is neither a regular file nor a block device.
    #[error("disk image {} is {kind}, not a regular file or a block device", path.display())]
    NotADisk {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// The image cannot be opened as asked.
    #[error("opening disk image {} {} failed: {source}", path.display(), if *read_only { "read-only" } else { "read-write" })]
    Open {
        /// The image.
        path: PathBuf,
        /// Whether it was opened read-only.
        read_only: bool,
        /// The error.
        source: io::Error,
    },
    /// Another process (or another disk of this VM) holds a conflicting
    /// lock on the image.
    #[error("disk image {} is in use: another process holds a lock on it (is another VM using it{}?)", path.display(), if *read_only { " read-write" } else { "" })]
    InUse {
        /// The image.
        path: PathBuf,
        /// Whether this open asked for a shared (read-only) lock.
        read_only: bool,
    },
    /// A writable disk on a read-only block device (`losetup -r`, a
    /// write-protected disk): every write would fail.
    #[error("disk {} is a read-only block device: add readonly=on", path.display())]
    ReadOnlyDevice {
        /// The device.
        path: PathBuf,
    },
    /// Locking failed for another reason.
    #[error("locking disk image {} failed: {source}", path.display())]
    Lock {
        /// The image.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The image holds no whole sector.
    #[error("disk image {} is {bytes} bytes, less than one 512-byte sector", path.display())]
    Size {
        /// The image.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// The device's wake-up eventfd could not be created.
    #[error("creating the eventfd of disk {}: {source}", path.display())]
    EventFd {
        /// The image.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// How to open a disk: the image, read-only or not, its serial.
///
/// ```no_run
/// use vmm_devices::virtio::block::BlockConfig;
///
/// let disk = BlockConfig::new("/var/lib/vm/root.img")
///     .read_only(true)
///     .serial("root")
///     .open()?;
/// println!("{} sectors", disk.capacity());
/// # Ok::<(), vmm_devices::virtio::block::BlockError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockConfig {
    path: PathBuf,
    read_only: bool,
    serial: Option<String>,
}

impl BlockConfig {
    /// A writable disk on the image at `path`, without a serial.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        BlockConfig {
            path: path.into(),
            read_only: false,
            serial: None,
        }
    }

    /// Opens the image read-only (never writable), offers
    /// `VIRTIO_BLK_F_RO` and answers writes with IOERR.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// The ID string GET_ID returns (at most [`SERIAL_MAX`] bytes, no NUL).
    pub fn serial(mut self, serial: impl Into<String>) -> Self {
        self.serial = Some(serial.into());
        self
    }

    /// Opens and locks the image: an exclusive `flock` for a writable disk,
    /// a shared one for a read-only disk, so two VMs never have the image
    /// open writable together (nor one writable and one read-only).
    ///
    /// The capacity is the size in whole sectors (a block device's from
    /// `BLKGETSIZE64`): a size that is not a multiple of 512 is rounded
    /// down (with a warning) and the tail is never read or written; an
    /// image smaller than one sector is refused, and so is a writable disk
    /// on a read-only block device ([`BlockError::ReadOnlyDevice`]).
    pub fn open(&self) -> Result<VirtioBlock, BlockError> {
        let serial = self.checked_serial()?;
        let disk = self.open_disk()?;
        VirtioBlock::new(disk, serial).map_err(|source| BlockError::EventFd {
            path: self.path.clone(),
            source,
        })
    }

    fn checked_serial(&self) -> Result<Vec<u8>, BlockError> {
        let Some(serial) = &self.serial else {
            return Ok(Vec::new());
        };
        if serial.len() > SERIAL_MAX {
            return Err(BlockError::SerialTooLong {
                serial: serial.clone(),
                len: serial.len(),
            });
        }
        if serial.contains('\0') {
            return Err(BlockError::SerialNul {
                serial: serial.clone(),
            });
        }
        Ok(serial.as_bytes().to_vec())
    }

    fn open_disk(&self) -> Result<Disk, BlockError> {
        let path = &self.path;
        let stat = |source| BlockError::Stat {
            path: path.clone(),
            source,
        };
        // Before opening: opening a FIFO would block, a directory fail
        // with a less helpful error.
        check_kind(path, &std::fs::metadata(path).map_err(stat)?)?;
        let file = OpenOptions::new()
            .read(true)
            .write(!self.read_only)
            .open(path)
            .map_err(|source| BlockError::Open {
                path: path.clone(),
                read_only: self.read_only,
                source,
            })?;
        // What was opened, in case the path changed in between.
        let meta = file.metadata().map_err(stat)?;
        check_kind(path, &meta)?;
        match host::flock(&file, self.read_only) {
            Ok(Lock::Taken) => {}
            Ok(Lock::Held) => {
                return Err(BlockError::InUse {
                    path: path.clone(),
                    read_only: self.read_only,
                })
            }
            Err(source) => {
                return Err(BlockError::Lock {
                    path: path.clone(),
                    source,
                })
            }
        }
        let block_device = meta.file_type().is_block_device();
        if block_device && !self.read_only && host::block_device_read_only(&file).map_err(stat)? {
            return Err(BlockError::ReadOnlyDevice { path: path.clone() });
        }
        let bytes = if block_device {
            host::block_device_bytes(&file).map_err(stat)?
        } else {
            meta.len()
        };
        let capacity = bytes / SECTOR_SIZE;
        if capacity == 0 {
            return Err(BlockError::Size {
                path: path.clone(),
                bytes,
            });
        }
        if bytes % SECTOR_SIZE != 0 {
            log::warn!(
                "disk image {}: {bytes} bytes is not a multiple of 512; the last {} bytes are not part of the disk",
                path.display(),
                bytes % SECTOR_SIZE
            );
        }
        let ranges = match (self.read_only, block_device) {
            (true, _) => RangeSupport::default(),
            (false, true) => probe_block_device(meta.rdev()),
            (false, false) => probe_file(&file, bytes, meta.blksize()),
        };
        Ok(Disk {
            file,
            path: path.clone(),
            capacity,
            read_only: self.read_only,
            ranges,
            unsynced: false,
        })
    }
}

/// Refuses anything but a regular file or a block device.
fn check_kind(path: &Path, meta: &std::fs::Metadata) -> Result<(), BlockError> {
    let t = meta.file_type();
    let kind = if t.is_file() || t.is_block_device() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(BlockError::NotADisk {
        path: path.to_path_buf(),
        kind,
    })
}

/// An open, locked disk image. The lock is released when it is dropped
/// (closing the file).
#[derive(Debug)]
pub struct Disk {
    file: File,
    path: PathBuf,
    capacity: u64,
    read_only: bool,
    ranges: RangeSupport,
    /// Writes completed since the last `fdatasync`.
    unsynced: bool,
}

impl Disk {
    /// The size in sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whether the image was opened read-only.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What discard/write-zeroes the image supports.
    pub fn ranges(&self) -> RangeSupport {
        self.ranges
    }

    /// Reads at byte `offset` into `slices`; all-or-error (the end of the
    /// file inside the capacity, after someone truncated it, is an error).
    pub fn read<B: BitmapSlice>(
        &self,
        offset: u64,
        slices: &[VolatileSlice<'_, B>],
    ) -> io::Result<()> {
        let want: usize = slices.iter().map(|s| s.len()).sum();
        let got = host::read_into(&self.file, offset, slices)?;
        if got < want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the image ends {got} bytes into a {want}-byte read at {offset}"),
            ));
        }
        Ok(())
    }

    /// Writes `slices` at byte `offset`.
    pub fn write<B: BitmapSlice>(
        &mut self,
        offset: u64,
        slices: &[VolatileSlice<'_, B>],
    ) -> io::Result<()> {
        self.unsynced = true;
        host::write_from(&self.file, offset, slices)
    }

    /// `fallocate(mode)` on `[offset, offset + len)`.
    pub fn fallocate(&mut self, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
        self.unsynced = true;
        host::fallocate(&self.file, mode, offset, len)
    }

    /// Makes every completed write durable (`fdatasync`); nothing to do
    /// when nothing was written since the last time. Returns whether it
    /// called `fdatasync`.
    pub fn flush(&mut self) -> io::Result<bool> {
        if !self.unsynced {
            return Ok(false);
        }
        host::fdatasync(&self.file)?;
        self.unsynced = false;
        Ok(true)
    }
}
