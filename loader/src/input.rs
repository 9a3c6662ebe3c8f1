//! Reading the files a VMM hands a loader (the kernel image, an initrd,
//! modules) from the host: refusing anything that is not a regular file
//! (a FIFO would block the open forever; a device or a /proc file has no
//! size to check) and files larger than guest RAM before reading anything,
//! and a file that changes size while it is read.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Which kind of input file is being read, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// The kernel image.
    Kernel,
    /// An initrd or module.
    Module,
}

impl std::fmt::Display for InputKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InputKind::Kernel => "kernel image",
            InputKind::Module => "initrd/module",
        })
    }
}

/// Errors reading an input file.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// An input file cannot be opened or read.
    #[error("cannot read {kind} {path}: {source}")]
    Open {
        /// Kernel or module.
        kind: InputKind,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An input path is a directory.
    #[error("{kind} {path} is a directory, not a file")]
    IsDirectory {
        /// Kernel or module.
        kind: InputKind,
        /// The path.
        path: PathBuf,
    },
    /// An input path is not a regular file (a FIFO, a device, a socket, a
    /// file of /proc or /sys).
    #[error("{kind} {path} is not a regular file ({what})")]
    NotRegular {
        /// Kernel or module.
        kind: InputKind,
        /// The path.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// An input file is larger than guest RAM.
    #[error("{kind} {path} is {size} bytes, larger than guest RAM ({ram} bytes)")]
    TooLarge {
        /// Kernel or module.
        kind: InputKind,
        /// The path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// RAM size.
        ram: u64,
    },
    /// An input file changed size while being read.
    #[error("{kind} {path} changed while being read: expected {expected} bytes, read {read}")]
    Changed {
        /// Kernel or module.
        kind: InputKind,
        /// The path.
        path: PathBuf,
        /// Size before reading.
        expected: u64,
        /// Bytes read.
        read: u64,
    },
}

impl InputError {
    /// An I/O error on the `kind` file at `path`.
    pub fn open(kind: InputKind, path: &Path, source: std::io::Error) -> Self {
        InputError::Open {
            kind,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Opens an input file, refusing directories and files larger than `limit`
/// (guest RAM) before reading anything. Returns the file and its size.
pub fn open_input(path: &Path, limit: u64, kind: InputKind) -> Result<(File, u64), InputError> {
    let open_err = |source| InputError::open(kind, path, source);
    // O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer,
    // forever, before anything can be checked. It changes nothing for the
    // regular files that pass the checks below.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    let file_type = meta.file_type();
    if file_type.is_dir() {
        return Err(InputError::IsDirectory {
            kind,
            path: path.to_path_buf(),
        });
    }
    let not_regular = |what| InputError::NotRegular {
        kind,
        path: path.to_path_buf(),
        what,
    };
    if !file_type.is_file() {
        return Err(not_regular(if file_type.is_fifo() {
            "a FIFO"
        } else if file_type.is_char_device() {
            "a character device"
        } else if file_type.is_block_device() {
            "a block device"
        } else if file_type.is_socket() {
            "a socket"
        } else {
            "not a file"
        }));
    }
    if let Some(what) = pseudo_filesystem(&file) {
        return Err(not_regular(what));
    }
    if meta.len() > limit {
        return Err(InputError::TooLarge {
            kind,
            path: path.to_path_buf(),
            size: meta.len(),
            ram: limit,
        });
    }
    Ok((file, meta.len()))
}

/// Files of /proc and /sys look regular but report sizes that are not
/// their contents' (0, or 4096): name the filesystem instead of reading.
fn pseudo_filesystem(file: &File) -> Option<&'static str> {
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    const SYSFS_MAGIC: i64 = 0x6265_6572;
    // SAFETY: fstatfs fills the zeroed struct for an open descriptor.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the descriptor stays open for the call.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) } != 0 {
        return None;
    }
    match fs.f_type as i64 {
        PROC_SUPER_MAGIC => Some("a file of /proc"),
        SYSFS_MAGIC => Some("a file of /sys"),
        _ => None,
    }
}

/// Reads the rest of a `len`-byte input file after the `head` already read
/// from it, refusing a file that changes size meanwhile.
pub fn read_rest(
    file: &File,
    len: u64,
    head: Vec<u8>,
    path: &Path,
    kind: InputKind,
) -> Result<Vec<u8>, InputError> {
    let mut data = head;
    data.reserve_exact((len as usize).saturating_sub(data.len()));
    // Kernels are tens of MiB, touched once: huge pages mean 512 times fewer
    // first-touch page faults (a best-effort hint).
    vmm_memory::guest_ram::advise_huge_pages_in(data.spare_capacity_mut());
    let have = data.len() as u64;
    file.take((len + 1).saturating_sub(have))
        .read_to_end(&mut data)
        .map_err(|source| InputError::open(kind, path, source))?;
    if data.len() as u64 != len {
        return Err(InputError::Changed {
            kind,
            path: path.to_path_buf(),
            expected: len,
            read: data.len() as u64,
        });
    }
    Ok(data)
}

/// Reads a whole input file (see [`open_input`] and [`read_rest`]).
pub fn read_input(path: &Path, limit: u64, kind: InputKind) -> Result<Vec<u8>, InputError> {
    let (file, len) = open_input(path, limit, kind)?;
    read_rest(&file, len, Vec::new(), path, kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_file(tag: &str, bytes: &[u8]) -> PathBuf {
        let p = std::env::temp_dir().join(format!("vmm-loader-input-{tag}-{}", std::process::id()));
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        p
    }

    #[test]
    fn test_input_reads_whole_files_and_continues_after_a_head() {
        let p = temp_file("whole", b"hello world");
        assert_eq!(
            read_input(&p, 100, InputKind::Module).unwrap(),
            b"hello world"
        );
        let (mut file, len) = open_input(&p, 100, InputKind::Kernel).unwrap();
        let mut head = vec![0u8; 5];
        file.read_exact(&mut head).unwrap();
        let all = read_rest(&file, len, head, &p, InputKind::Kernel).unwrap();
        assert_eq!(all, b"hello world");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn test_input_errors_name_the_file_and_the_problem() {
        let dir = std::env::temp_dir();
        let e = read_input(&dir, 100, InputKind::Kernel).unwrap_err();
        assert!(matches!(e, InputError::IsDirectory { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            format!("kernel image {} is a directory, not a file", dir.display())
        );

        let p = temp_file("big", &[1; 10]);
        let e = read_input(&p, 9, InputKind::Module).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "initrd/module {} is 10 bytes, larger than guest RAM (9 bytes)",
                p.display()
            )
        );
        // A file that grew after it was measured.
        let (file, _) = open_input(&p, 100, InputKind::Module).unwrap();
        let e = read_rest(&file, 8, Vec::new(), &p, InputKind::Module).unwrap_err();
        assert!(
            e.to_string()
                .contains("changed while being read: expected 8 bytes, read 9"),
            "{e}"
        );
        std::fs::remove_file(&p).unwrap();

        let e = read_input(&p, 100, InputKind::Kernel).unwrap_err();
        assert!(matches!(e, InputError::Open { .. }), "{e}");

        // Not regular files: refused by what they are, before any read
        // (a FIFO with no writer would block a plain open forever).
        let fifo = std::env::temp_dir().join(format!("vmm-loader-fifo-{}", std::process::id()));
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let fifo_error = read_input(&fifo, 100, InputKind::Kernel).unwrap_err();
        assert_eq!(
            fifo_error.to_string(),
            format!(
                "kernel image {} is not a regular file (a FIFO)",
                fifo.display()
            )
        );
        std::fs::remove_file(&fifo).unwrap();
        for (path, what) in [
            ("/dev/zero", "a character device"),
            ("/proc/self/status", "a file of /proc"),
            ("/proc/cpuinfo", "a file of /proc"),
        ] {
            let e = read_input(Path::new(path), 1 << 20, InputKind::Module).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("initrd/module {path} is not a regular file ({what})"),
            );
        }
        assert!(
            e.to_string().starts_with("cannot read kernel image "),
            "{e}"
        );
    }
}
