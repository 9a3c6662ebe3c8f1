//! The host's Unix sockets: the listening socket, bound while the backend
//! is built (before the guest runs, with every system call still allowed),
//! and the non-blocking accepts and connects the device thread makes.
//!
//! The device thread's seccomp list has no `ioctl`, and std's
//! `set_nonblocking` on a socket is `ioctl(FIONBIO)`: accepted and
//! connected sockets are made non-blocking when they are created instead
//! (`SOCK_NONBLOCK`), with plain `accept4(2)`, `socket(2)` and `connect(2)`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::VsockError;

/// The listening socket and the file its bind made at `path`. Dropping it
/// removes the file, as Firecracker's and vhost-device-vsock's backends do
/// when they end, but only if the file there is still the one this bind
/// made (same device and inode): a socket another process put in its place
/// is left alone.
#[derive(Debug)]
pub struct Listener {
    socket: UnixListener,
    path: PathBuf,
    /// `(st_dev, st_ino)` of the socket file right after the bind.
    file: Option<(u64, u64)>,
}

impl Listener {
    /// The listening socket.
    pub fn socket(&self) -> &UnixListener {
        &self.socket
    }

    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Runs on the thread that drops the last device reference: the
        // VMM's main thread, whose seccomp list has statx and unlink.
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta)
                if meta.file_type().is_socket() && self.file == Some((meta.dev(), meta.ino())) =>
            {
                match std::fs::remove_file(&self.path) {
                    Ok(()) => log::debug!("vsock: removed {}", self.path.display()),
                    Err(e) => log::warn!("vsock: removing {}: {e}", self.path.display()),
                }
            }
            Ok(_) => log::warn!(
                "vsock: {} is no longer the socket this VMM made; leaving it",
                self.path.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("vsock: {}: {e}", self.path.display()),
        }
    }
}

/// Whether a process listens on the Unix socket file at `path`: connecting
/// is refused (ECONNREFUSED) only when none does. `Ok(false)` also when the
/// file went away meanwhile.
pub fn is_live(path: &Path) -> io::Result<bool> {
    match connect(path) {
        // Accepted, or queued (EAGAIN: a full backlog): someone listens.
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Listens at `path`. A socket file already there that nobody listens on
/// is a previous run's and is replaced; a live socket (another VMM's, or
/// any server's) and any other kind of file are refused, never removed.
/// (Firecracker refuses any existing file, EADDRINUSE from bind(2); this
/// VMM removes its socket when it ends, so a stale one is left only by a
/// VMM that was killed.)
pub fn listen(path: &Path) -> Result<Listener, VsockError> {
    let owned = || path.to_path_buf();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match is_live(path) {
                Ok(false) => {}
                Ok(true) => return Err(VsockError::InUse { path: owned() }),
                Err(source) => {
                    return Err(VsockError::Probe {
                        path: owned(),
                        source,
                    })
                }
            }
            // The window between the probe and the bind is not closed: a
            // process binding here meanwhile loses its file. Sharing a
            // socket path with a process started at the same moment is a
            // configuration error the bind below cannot always catch.
            match std::fs::remove_file(path) {
                Ok(()) => log::info!("vsock: replacing the stale socket {}", path.display()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(VsockError::RemoveStale {
                        path: owned(),
                        source,
                    })
                }
            }
        }
        Ok(_) => return Err(VsockError::NotASocket { path: owned() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(VsockError::Listen {
                path: owned(),
                source,
            })
        }
    }
    let socket = UnixListener::bind(path).map_err(|source| VsockError::Listen {
        path: owned(),
        source,
    })?;
    // From here on the file is ours: dropping `listener` removes it, also
    // when what follows fails.
    let file = std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let listener = Listener {
        socket,
        path: owned(),
        file,
    };
    // Not yet confined here: std's ioctl is fine.
    listener
        .socket
        .set_nonblocking(true)
        .map_err(|source| VsockError::Listen {
            path: owned(),
            source,
        })?;
    Ok(listener)
}

/// The next pending connection on `listener`, non-blocking (`None`: no
/// more for now).
pub fn accept(listener: &UnixListener) -> io::Result<Option<UnixStream>> {
    loop {
        // SAFETY: accept4 with null address pointers writes no memory; the
        // listener's descriptor is valid while it is borrowed; the result
        // is checked before it is used as a descriptor.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            // SAFETY: accept4 returned a new descriptor that nothing else
            // owns.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            return Ok(Some(UnixStream::from(owned)));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) => return Ok(None),
            // The client gave up before we took it, or a signal: next.
            Some(libc::EINTR | libc::ECONNABORTED) => continue,
            _ => return Err(e),
        }
    }
}

/// The path of the host socket for guest connections to host port `port`:
/// `<path>_<port>` (Firecracker's convention).
pub fn port_path(path: &Path, port: u32) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!("_{port}"));
    PathBuf::from(s)
}

/// Connects to the Unix socket at `path` without blocking: a listener
/// whose backlog is full refuses (EAGAIN) rather than stalling the device
/// thread.
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    // One byte is left for the terminating NUL (zeroed above).
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: socket(2) takes no pointers; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket returned a new descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    loop {
        // SAFETY: `addr` is a live sockaddr_un of `len` bytes that connect
        // only reads; the descriptor is owned by `sock`.
        let r = unsafe {
            libc::connect(
                sock.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        };
        if r == 0 {
            return Ok(UnixStream::from(sock));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vsock-unix-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn test_unix_listen_replaces_a_stale_socket_and_refuses_other_files() {
        let dir = scratch("listen");
        let sock = dir.join("v.sock");
        // A socket file nobody listens on (a killed VMM's): replaced.
        drop(UnixListener::bind(&sock).unwrap());
        assert!(sock.exists());
        assert!(!is_live(&sock).unwrap());
        let l = listen(&sock).unwrap();
        assert_eq!(l.path(), sock);
        let c = connect(&sock).unwrap();
        assert!(accept(l.socket()).unwrap().is_some());
        assert!(accept(l.socket()).unwrap().is_none(), "non-blocking");
        drop(c);
        let file = dir.join("plain");
        std::fs::write(&file, b"keep").unwrap();
        let e = listen(&file).unwrap_err();
        assert!(matches!(e, VsockError::NotASocket { .. }), "{e}");
        assert!(e.to_string().contains("plain"), "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
        let e = listen(&dir.join("missing/v.sock")).unwrap_err();
        assert!(e.to_string().contains("missing/v.sock"), "{e}");
        drop(l);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn test_unix_listen_refuses_a_live_socket_and_keeps_it() {
        let dir = scratch("live");
        let sock = dir.join("v.sock");
        let theirs = UnixListener::bind(&sock).unwrap();
        assert!(is_live(&sock).unwrap());
        let e = listen(&sock).unwrap_err();
        assert!(matches!(e, VsockError::InUse { .. }), "{e}");
        assert!(e.to_string().contains("v.sock"), "{e}");
        assert!(e.is_bad_path());
        // Their socket still works.
        let _c = UnixStream::connect(&sock).unwrap();
        assert!(theirs.accept().is_ok());
        // Another VMM's listener counts as live too.
        drop(theirs);
        let ours = listen(&sock).unwrap();
        assert!(matches!(listen(&sock), Err(VsockError::InUse { .. })));
        drop(ours);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn test_unix_listener_drop_removes_its_own_file_only() {
        let dir = scratch("drop");
        let sock = dir.join("v.sock");
        drop(listen(&sock).unwrap());
        assert!(!sock.exists(), "the socket file is removed at drop");
        // Replaced by someone else's socket meanwhile: left alone.
        let l = listen(&sock).unwrap();
        std::fs::remove_file(&sock).unwrap();
        let theirs = UnixListener::bind(&sock).unwrap();
        drop(l);
        assert!(
            sock.exists(),
            "another process's socket is not ours to remove"
        );
        drop(theirs);
        // Or by a regular file.
        std::fs::remove_file(&sock).unwrap();
        let l = listen(&sock).unwrap();
        std::fs::remove_file(&sock).unwrap();
        std::fs::write(&sock, b"keep").unwrap();
        drop(l);
        assert_eq!(std::fs::read(&sock).unwrap(), b"keep");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn test_unix_connect_refused_and_too_long() {
        let dir = scratch("connect");
        let e = connect(&dir.join("nobody")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let long = dir.join("x".repeat(200));
        assert_eq!(
            connect(&long).unwrap_err().raw_os_error(),
            Some(libc::ENAMETOOLONG)
        );
        assert_eq!(
            port_path(Path::new("/run/v.sock"), 5678),
            Path::new("/run/v.sock_5678")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
