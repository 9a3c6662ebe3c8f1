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
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::VsockError;

/// Listens at `path`. A socket file already there is a previous run's
/// (Firecracker replaces it too); any other file is refused, never removed.
pub fn listen(path: &Path) -> Result<UnixListener, VsockError> {
    let owned = || path.to_path_buf();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|source| VsockError::RemoveStale {
                path: owned(),
                source,
            })?;
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
    let listener = UnixListener::bind(path).map_err(|source| VsockError::Listen {
        path: owned(),
        source,
    })?;
    // Not yet confined here: std's ioctl is fine.
    listener
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
        drop(listen(&sock).unwrap());
        assert!(sock.exists(), "the socket file stays behind");
        let l = listen(&sock).unwrap();
        let c = connect(&sock).unwrap();
        assert!(accept(&l).unwrap().is_some());
        assert!(accept(&l).unwrap().is_none(), "non-blocking");
        drop(c);
        let file = dir.join("plain");
        std::fs::write(&file, b"keep").unwrap();
        let e = listen(&file).unwrap_err();
        assert!(matches!(e, VsockError::NotASocket { .. }), "{e}");
        assert!(e.to_string().contains("plain"), "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
        let e = listen(&dir.join("missing/v.sock")).unwrap_err();
        assert!(e.to_string().contains("missing/v.sock"), "{e}");
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
